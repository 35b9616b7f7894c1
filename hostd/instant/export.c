/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vbackupctl export: a disk snapshot served read-only over NBD by nbdkit
 * and nbdkit-vbackup-plugin.so (export.h, docs/instant-access.md).
 */
#include "export.h"

#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proc.h"
#include "resolve.h"
#include "util.h"

#define PLUGIN_NAME "nbdkit-vbackup-plugin.so"

/* The plugin: $VBACKUP_NBDKIT_PLUGIN, else the one built next to this
 * vbackupctl (a build tree: hostd/instant/), else the installed one. */
static char *plugin_path(void)
{
    const char *env = getenv("VBACKUP_NBDKIT_PLUGIN");
    char exe[PATH_MAX], *dir, *p;
    ssize_t n;

    if (env && *env)
        return g_strdup(env);
    n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        exe[n] = 0;
        dir = g_path_get_dirname(exe);
        p = g_build_filename(dir, "instant", PLUGIN_NAME, NULL);
        g_free(dir);
        if (access(p, R_OK) == 0)
            return p;
        g_free(p);
    }
    return g_strdup(VB_NBDKIT_PLUGIN);
}

/* RFC 3986 percent-encoding of everything but unreserved characters and '/' */
static void uri_append(GString *s, const char *v)
{
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (g_ascii_isalnum(*p) || strchr("-._~/:", *p))
            g_string_append_c(s, (char)*p);
        else
            g_string_append_printf(s, "%%%02X", *p);
    }
}

static char *make_uri(const struct vbi_export_opts *o, const char *socket, const char *id)
{
    GString *s = g_string_new(NULL);

    if (socket) {
        g_string_append(s, "nbd+unix:///");
        uri_append(s, id);
        g_string_append(s, "?socket=");
        uri_append(s, socket);
    } else {
        bool v6 = strchr(o->address, ':') != NULL;
        g_string_append_printf(s, "nbd://%s%s%s:%d/", v6 ? "[" : "", o->address, v6 ? "]" : "",
                               o->port);
        uri_append(s, id);
    }
    return g_string_free(s, FALSE);
}

int vbi_export_option(int opt, const char *arg, struct vbi_export_opts *o, const char *prog)
{
    char *end;
    long v;

    switch (opt) {
    case 'd': o->disk = arg; return 1;
    case 'U': o->unix_path = arg; return 1;
    case 'G': o->socket_group = arg; return 1;
    case 'a': o->address = arg; return 1;
    case 'C': o->cache = arg; return 1;
    case 'v': o->verbose = true; return 1;
    case 'p': case 'R': case 't':
        v = strtol(arg, &end, 10);
        if (!*arg || *end || v < (opt == 'p' ? 1 : 0) || v > (opt == 'p' ? 65535 : 1024)) {
            fprintf(stderr, "%s: --%s: a number%s, not '%s'\n", prog,
                    opt == 'p' ? "port" : opt == 'R' ? "readahead" : "threads",
                    opt == 'p' ? " from 1 to 65535" : "", arg);
            return -1;
        }
        if (opt == 'p')
            o->port = (int)v;
        else if (opt == 'R')
            o->readahead = (int)v;
        else
            o->threads = (int)v;
        return 1;
    }
    return 0;
}

/* A socket left by an export that ended (nbdkit does not remove it) is
 * removed; one that answers, or anything that is not a socket, is not. */
static int clear_socket(const char *path, vb_error *e)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct stat st;
    int fd, err;

    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : vb_seterr(e, -errno, "--unix %s: %s", path, strerror(errno));
    if (!S_ISSOCK(st.st_mode))
        return vb_seterr(e, -EEXIST, "--unix %s exists and is not a socket", path);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return vb_seterr(e, -errno, "socket: %s", strerror(errno));
    err = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 ? 0 : errno;
    close(fd);
    if (!err)
        return vb_seterr(e, -EADDRINUSE, "--unix %s: a server answers there already", path);
    if (err != ECONNREFUSED)
        return vb_seterr(e, -err, "--unix %s: %s", path, strerror(err));
    if (unlink(path) < 0)
        return vb_seterr(e, -errno, "remove the old socket %s: %s", path, strerror(errno));
    return 0;
}

/* The group named (or a number), for --socket-group. */
static int group_id(const char *name, gid_t *gid, vb_error *e)
{
    struct group *g;
    char *end;
    unsigned long v;

    errno = 0;
    g = getgrnam(name);
    if (g) {
        *gid = g->gr_gid;
        return 0;
    }
    v = strtoul(name, &end, 10);
    if (*name && !*end && name[0] != '-' && v < (gid_t)-1) {
        *gid = (gid_t)v;
        return 0;
    }
    return vb_seterr(e, errno ? -errno : -ENOENT, "--socket-group %s: no such group", name);
}

/* nbdkit makes its socket 0755: only its owner may connect (connecting
 * needs write permission).  --socket-group hands it to a group, 0660, so
 * that a QEMU run as another user (libvirt's) can connect.  The socket is
 * changed through an O_PATH descriptor of what nbdkit made, never through a
 * symlink put in its place. */
static int share_socket(const char *path, const char *group, gid_t gid, vb_error *e)
{
    char proc[64];
    struct stat st;
    int fd, ret = 0;

    fd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return vb_seterr(e, -errno, "open %s: %s", path, strerror(errno));
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
    if (fstat(fd, &st) < 0)
        ret = vb_seterr(e, -errno, "stat %s: %s", path, strerror(errno));
    else if (!S_ISSOCK(st.st_mode) || st.st_uid != geteuid())
        ret = vb_seterr(e, -EPERM, "%s is not the socket nbdkit made", path);
    else if (chown(proc, (uid_t)-1, gid) < 0 || chmod(proc, 0660) < 0)
        ret = vb_seterr(e, -errno, "--socket-group %s: chown/chmod %s: %s", group, path,
                        strerror(errno));
    close(fd);
    return ret;
}

static bool file_ready(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 && st.st_size > 0;
}

int vbi_export_start(const struct vbi_ctx *c, const struct vbi_export_opts *o,
                     struct vbi_export *x, vb_error *e)
{
    GPtrArray *av = g_ptr_array_new_with_free_func(g_free);
    g_autofree char *plugin = plugin_path(), *repo = NULL, *pidfile = NULL;
    struct vb_sr *sr;
    gid_t gid = (gid_t)-1;
    int ret, status = 0;

    memset(x, 0, sizeof(*x));
    x->pid = -1;
    /* a folder by its real path (nbdkit runs elsewhere); a bucket by its URL */
    if (!strncmp(c->repo, "s3://", 5))
        repo = g_strdup(c->repo);
    else if (!(repo = realpath(c->repo, NULL))) {
        ret = vb_seterr(e, -errno, "repository %s: %s", c->repo, strerror(errno));
        goto out;
    }
    /* the snapshot as the command line names it; the plugin opens it again */
    ret = vb_sr_open(repo, true, &sr, e);
    if (ret)
        goto out;
    ret = vbi_resolve_disk(sr, o->spec, o->disk, &x->info, e);
    vb_sr_close(sr);
    if (ret)
        goto out;
    /* from here on SIGINT, SIGTERM, SIGHUP are taken by vbi_wait */
    vbi_signals_block();
    if (vb_interrupted) {
        ret = vb_seterr(e, -EINTR, "interrupted");
        goto out;
    }
    if (access(plugin, R_OK) < 0) {
        ret = vb_seterr(e, -ENOENT, "the nbdkit plugin %s is missing (install vbackup, or set "
                        "VBACKUP_NBDKIT_PLUGIN)", plugin);
        goto out;
    }
    if (o->unix_path) {
        char *dir = g_path_get_dirname(o->unix_path), *abs = realpath(dir, NULL);
        char *base = g_path_get_basename(o->unix_path);
        g_free(dir);
        if (!abs) {
            ret = vb_seterr(e, -errno, "--unix %s: its folder: %s", o->unix_path, strerror(errno));
            g_free(base);
            goto out;
        }
        x->socket = g_build_filename(abs, base, NULL);
        free(abs);
        g_free(base);
        if (strlen(x->socket) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
            ret = vb_seterr(e, -ENAMETOOLONG, "--unix %s: a socket path must be shorter than "
                            "%zu bytes", x->socket, sizeof(((struct sockaddr_un *)0)->sun_path));
            goto out;
        }
    }
    if (o->socket_group && (ret = group_id(o->socket_group, &gid, e)))
        goto out;
    if (x->socket && (ret = clear_socket(x->socket, e)))
        goto out;
    x->uri = make_uri(o, x->socket, x->info->id);
    x->tmpdir = g_dir_make_tmp("vbackup-export.XXXXXX", NULL);
    if (!x->tmpdir) {
        ret = vb_seterr(e, -EIO, "cannot make a temporary folder");
        goto out;
    }
    pidfile = g_build_filename(x->tmpdir, "nbdkit.pid", NULL);

    g_ptr_array_add(av, g_strdup(getenv("VBACKUP_NBDKIT") ? getenv("VBACKUP_NBDKIT")
                                                          : "nbdkit"));
    g_ptr_array_add(av, g_strdup("--exit-with-parent"));     /* implies --foreground */
    g_ptr_array_add(av, g_strdup("--readonly"));
    g_ptr_array_add(av, g_strdup_printf("--pidfile=%s", pidfile));
    if (x->socket) {
        g_ptr_array_add(av, g_strdup_printf("--unix=%s", x->socket));
    } else {
        g_ptr_array_add(av, g_strdup_printf("--port=%d", o->port));
        g_ptr_array_add(av, g_strdup_printf("--ipaddr=%s", o->address));
    }
    if (o->threads)
        g_ptr_array_add(av, g_strdup_printf("--threads=%d", o->threads));
    if (o->verbose)
        g_ptr_array_add(av, g_strdup("--verbose"));
    g_ptr_array_add(av, g_strdup(plugin));
    g_ptr_array_add(av, g_strdup_printf("repo=%s", repo));
    g_ptr_array_add(av, g_strdup_printf("snapshot=%s", x->info->id));
    if (o->cache)
        g_ptr_array_add(av, g_strdup_printf("cache=%s", o->cache));
    if (o->readahead >= 0)
        g_ptr_array_add(av, g_strdup_printf("readahead=%d", o->readahead));
    g_ptr_array_add(av, NULL);
    ret = vbi_spawn((char **)av->pdata, &x->pid, e);
    if (ret)
        goto out;
    /* nbdkit writes its pid file once it accepts connections */
    while (!file_ready(pidfile)) {
        int sig = vbi_wait(x->pid, 20, &status);
        if (sig == SIGCHLD) {
            char how[64];
            x->pid = -1;
            ret = vb_seterr(e, -EIO, "nbdkit %s before it served the snapshot (its messages "
                            "are above)", vbi_status_str(status, how, sizeof(how)));
            goto out;
        }
        if (sig) {
            ret = vb_seterr(e, -EINTR, "interrupted");
            goto out;
        }
    }
    x->own_socket = x->socket != NULL;
    if (o->socket_group && (ret = share_socket(x->socket, o->socket_group, gid, e)))
        goto out;
    ret = 0;
out:
    g_ptr_array_free(av, TRUE);
    if (ret)
        vbi_export_clear(x);
    return ret;
}

int vbi_export_serve(const struct vbi_ctx *c, struct vbi_export *x)
{
    int status = 0, sig;
    char how[64];

    while (!(sig = vbi_wait(x->pid, 1000, &status)))
        ;
    if (sig == SIGCHLD) {
        x->pid = -1;                 /* its socket is removed by vbi_export_clear */
        fprintf(stderr, "%s: nbdkit %s; the export has stopped\n", c->prog,
                vbi_status_str(status, how, sizeof(how)));
        return 1;
    }
    status = vbi_stop(x->pid);
    x->pid = -1;
    if (!c->quiet)
        printf("stopped the export of %s\n", x->info->id);
    return 0;
}

void vbi_export_clear(struct vbi_export *x)
{
    if (x->pid > 0)
        vbi_stop(x->pid);
    x->pid = -1;
    if (x->own_socket)
        unlink(x->socket);
    if (x->tmpdir) {
        char *p = g_build_filename(x->tmpdir, "nbdkit.pid", NULL);
        unlink(p);
        g_free(p);
        rmdir(x->tmpdir);
    }
    g_free(x->tmpdir);
    g_free(x->uri);
    g_free(x->socket);
    vb_sr_info_free(x->info);
    memset(x, 0, sizeof(*x));
    x->pid = -1;
}

int vbi_cmd_export(const struct vbi_ctx *c, int argc, char **argv)
{
    static const struct option lo[] = { VBI_EXPORT_LONGOPTS, { 0 } };
    struct vbi_export_opts o = { .address = "127.0.0.1", .readahead = -1 };
    struct vbi_export x;
    vb_error e = { 0 };
    char sz[32];
    int opt, r;

    while ((opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        r = vbi_export_option(opt, optarg, &o, c->prog);
        if (r <= 0)
            return 2;
    }
    if (optind + 1 != argc || !!o.unix_path == !!o.port || (o.socket_group && !o.unix_path)) {
        fprintf(stderr, "usage: %s --repo DIR export SNAPSHOT|VM [--disk SERIAL] "
                "(--unix SOCKET [--socket-group GROUP] | --port N [--address ADDR]) "
                "[--cache SIZE] [--readahead N] [--threads N] [--verbose]\n", c->prog);
        return 2;
    }
    if (!c->repo) {
        fprintf(stderr, "%s: export: no repository: give --repo DIR or set VBACKUP_REPO\n",
                c->prog);
        return 2;
    }
    o.spec = argv[optind];
    if (vbi_export_start(c, &o, &x, &e)) {
        fprintf(stderr, "%s: export: %s\n", c->prog, vb_strerror(&e));
        return 1;
    }
    printf("exporting %s (disk %s, %s) read-only at %s\n", x.info->id, x.info->disk,
           vb_fmt_bytes(x.info->size, sz, sizeof(sz)), x.uri);
    fflush(stdout);
    r = vbi_export_serve(c, &x);
    vbi_export_clear(&x);
    return r;
}
