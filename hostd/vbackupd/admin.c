/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The admin socket (mode 0600, root only): one JSON object per line in,
 * one per line out.  Commands: {"cmd":"vms"}, {"cmd":"jobs"},
 * {"cmd":"job","id":N}, {"cmd":"snapshots"[,"vm":V][,"target":T]},
 * {"cmd":"stats"}, {"cmd":"reload"}.
 * vbackupctl vms / jobs / job ID / snapshots / daemon-stats are its clients.
 */
#include "vbackupd.h"

#include "repo2.h"
#include "vbackup/protolib.h"
#include "sink2.h"

#include <glib-unix.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define ADMIN_MAX_LINE 4096

struct admin_conn {
    struct vbd *d;
    int fd;
    guint src;
    GString *in;
};

void vbd_reload(struct vbd *d, char *msg, size_t len);

static json_object *cmd_vms(struct vbd *d)
{
    json_object *a = json_object_new_array();
    GHashTableIter it;
    gpointer k, v;

    g_hash_table_iter_init(&it, d->vms);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        struct vbd_vm *vm = v;
        json_object *o = json_object_new_object();
        json_object_object_add(o, "name", json_object_new_string(vm->name));
        json_object_object_add(o, "socket", json_object_new_string(vm->socket_path));
        json_object_object_add(o, "connected", json_object_new_boolean(vm->conns != NULL));
        json_object_object_add(o, "connections", json_object_new_int((int)g_list_length(vm->conns)));
        json_object_object_add(o, "qmp", vm->qmp ? json_object_new_string(vm->qmp) : NULL);
        json_object_object_add(o, "requests", json_object_new_int64((int64_t)vm->requests));
        json_object_object_add(o, "errors", json_object_new_int64((int64_t)vm->errors));
        json_object_object_add(o, "disks", vbd_disks_json(vm->disks));
        json_object_object_add(o, "memory", vbd_mem_json(vm));
        json_object_object_add(o, "throttled", json_object_new_int((int)vbd_vm_throttled(vm)));
        json_object_object_add(o, "pidfile", vm->pidfile ? json_object_new_string(vm->pidfile)
                                                          : NULL);
        json_object_object_add(o, "quota", vbd_quota_json(d, vm));
        json_object_array_add(a, o);
    }
    return a;
}

static gint by_id(gconstpointer a, gconstpointer b)
{
    const struct vbd_job *x = *(struct vbd_job *const *)a, *y = *(struct vbd_job *const *)b;

    return x->id < y->id ? -1 : x->id > y->id;
}

static json_object *cmd_jobs(struct vbd *d)
{
    json_object *a = json_object_new_array();
    GPtrArray *all = g_ptr_array_new();
    GHashTableIter it;
    gpointer k, v;

    if (d->jobs) {
        g_hash_table_iter_init(&it, d->jobs);
        while (g_hash_table_iter_next(&it, &k, &v))
            g_ptr_array_add(all, v);
    }
    g_ptr_array_sort(all, by_id);
    for (guint i = 0; i < all->len; i++)
        json_object_array_add(a, vbd_job_json(all->pdata[i], false));
    g_ptr_array_free(all, TRUE);
    return a;
}

static json_object *cmd_stats(struct vbd *d)
{
    json_object *o = json_object_new_object(), *files = json_object_new_object();
    GHashTableIter it;
    gpointer k, v;

    g_hash_table_iter_init(&it, d->bytes_by_file);
    while (g_hash_table_iter_next(&it, &k, &v))
        json_object_object_add(files, k, json_object_new_int64((int64_t)*(uint64_t *)v));
    json_object_object_add(o, "bytes_read_by_file", files);
    json_object_object_add(o, "bytes_read", json_object_new_int64((int64_t)d->bytes_read_total));
    json_object_object_add(o, "batches", json_object_get(d->batches));
    json_object_object_add(o, "pending_jobs", json_object_new_int((int)g_queue_get_length(&d->pending)));
    json_object_object_add(o, "plans_running", json_object_new_int((int)g_list_length(d->plans)));
    json_object_object_add(o, "buffers_in_use", json_object_new_int((int)d->bufs_in_use));
    json_object_object_add(o, "memory_in_use", json_object_new_int64((int64_t)vbd_mem_total(d)));
    json_object_object_add(o, "version", json_object_new_string(VBD_VERSION));
    return o;
}

static json_object *admin_error(const char *fmt, ...) G_GNUC_PRINTF(1, 2);
static json_object *admin_error(const char *fmt, ...)
{
    json_object *o = json_object_new_object();
    va_list ap;
    char *msg;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    json_object_object_add(o, "error", json_object_new_string(msg));
    g_free(msg);
    return o;
}

/* A format 2 target's snapshots: each manifest as JSON (manifest.h's
 * schema) with the target's name; 0, or the error in e. */
static int list_v2(struct vbd_target *t, const char *vm, json_object *a, vb_error *e)
{
    GPtrArray *list, *problems = NULL;
    int ret;

    if ((ret = vb2_snap_list(t->repo2, vm, &list, &problems, e)))
        return ret;
    for (guint i = 0; i < list->len; i++) {
        struct vb_manifest *m = list->pdata[i];
        json_object *o = vb_manifest_to_json(m, NULL);
        if (!o)
            continue;
        if (m->type == VB_MF_FILES) {
            /* as a format 1 index.json has them: the guest's bytes, which
             * whoever shows them escapes once */
            g_autofree char *g = vb2_files_group_raw(m);
            json_object *roots = json_object_new_array();
            json_object_object_add(o, "group", json_object_new_string(g));
            for (size_t r = 0; r < m->files.nroots; r++) {
                g_autofree char *raw = vb2_files_root_raw(m, r);
                g_autofree char *esc = vb_utf8_valid(raw, strlen(raw)) ? NULL
                                     : vb_escape(raw, strlen(raw));
                json_object_array_add(roots, json_object_new_string(esc ? esc : raw));
            }
            json_object_object_add(o, "roots", roots);
            json_object_object_add(o, "bytes", json_object_new_int64((int64_t)m->files.bytes));
        }
        /* what the guest could not back up, where format 1 has it */
        if (m->notes && json_object_object_get(m->notes, "incomplete"))
            json_object_object_add(o, "incomplete",
                                   json_object_get(json_object_object_get(m->notes,
                                                                          "incomplete")));
        json_object_object_add(o, "target", json_object_new_string(t->name));
        json_object_array_add(a, o);
    }
    for (guint i = 0; problems && i < problems->len; i++) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "target", json_object_new_string(t->name));
        json_object_object_add(o, "error", json_object_new_string(problems->pdata[i]));
        json_object_array_add(a, o);
    }
    g_ptr_array_free(list, TRUE);
    if (problems)
        g_ptr_array_free(problems, TRUE);
    return 0;
}

/* Every snapshot of every target (or of one), oldest first within a target;
 * each carries the name of its target. */
static json_object *cmd_snapshots(struct vbd *d, json_object *req)
{
    const char *vm = vb_json_str(req, "vm"), *want = vb_json_str(req, "target");
    GList *names = g_list_sort(g_hash_table_get_keys(d->targets), (GCompareFunc)strcmp);
    json_object *a = json_object_new_array(), *err = NULL;
    char known[256];

    if (vm && !vb_valid_name(vm)) {
        err = admin_error("'%s' is not a valid VM name", vm);
    } else if (want && !g_hash_table_lookup(d->targets, want)) {
        vbd_known_targets(d, known, sizeof(known));
        err = admin_error("unknown target '%s' (known: %s)", want, known);
    }
    for (GList *l = names; l && !err; l = l->next) {
        struct vbd_target *t = g_hash_table_lookup(d->targets, l->data);
        GPtrArray *snaps;
        vb_error e = { 0 };

        if (want && strcmp(want, t->name))
            continue;
        if (!vbd_target_open(t, &e) && g_atomic_pointer_get(&t->repo2)) {
            if (!list_v2(t, vm, a, &e))
                continue;
        }
        if (e.code || !vbd_target_repo(t, &e) || vb_snap_list(t->repo, vm, &snaps, &e)) {
            g_autofree char *why = vbd_target_broken(t);
            json_object *o;

            if (why)        /* the administrator sees the cause */
                vb_seterr(&e, e.code, "target '%s' is unavailable: %s", t->name, why);

            if (want) {
                err = admin_error("cannot list target '%s': %s", t->name, vb_strerror(&e));
                break;
            }
            /* the others are listed: one broken target hides nothing else */
            o = json_object_new_object();
            json_object_object_add(o, "target", json_object_new_string(t->name));
            json_object_object_add(o, "error", json_object_new_string(vb_strerror(&e)));
            json_object_array_add(a, o);
            continue;
        }
        for (guint i = 0; i < snaps->len; i++) {
            json_object *o = json_object_get(((struct vb_snapshot *)snaps->pdata[i])->json);
            json_object_object_add(o, "target", json_object_new_string(t->name));
            json_object_array_add(a, o);
        }
        g_ptr_array_free(snaps, TRUE);
    }
    g_list_free(names);
    if (err) {
        json_object_put(a);
        return err;
    }
    return a;
}

static json_object *handle(struct vbd *d, const char *line)
{
    json_object *req = json_tokener_parse(line), *out = NULL, *idv;
    const char *cmd = req ? vb_json_str(req, "cmd") : NULL;

    if (!cmd) {
        out = admin_error("expected a JSON object with \"cmd\" (vms, jobs, job, snapshots, "
                          "stats, reload)");
    } else if (!strcmp(cmd, "vms")) {
        out = cmd_vms(d);
    } else if (!strcmp(cmd, "jobs")) {
        out = cmd_jobs(d);
    } else if (!strcmp(cmd, "job")) {
        uint64_t id = json_object_object_get_ex(req, "id", &idv) ? (uint64_t)json_object_get_int64(idv) : 0;
        struct vbd_job *j = d->jobs ? g_hash_table_lookup(d->jobs, &id) : NULL;
        if (j) {
            out = vbd_job_json(j, true);
        } else {
            out = admin_error("no such job");
        }
    } else if (!strcmp(cmd, "snapshots")) {
        out = cmd_snapshots(d, req);
    } else if (!strcmp(cmd, "stats")) {
        out = cmd_stats(d);
    } else if (!strcmp(cmd, "reload")) {
        char msg[512] = "";
        vbd_reload(d, msg, sizeof(msg));
        out = json_object_new_object();
        json_object_object_add(out, msg[0] ? "error" : "ok",
                               msg[0] ? json_object_new_string(msg) : json_object_new_boolean(1));
    } else {
        out = admin_error("unknown command '%s'", cmd);
    }
    json_object_put(req);
    return out;
}

static void admin_close(struct admin_conn *c)
{
    c->d->admin_conns = g_list_remove(c->d->admin_conns, c);
    if (c->src)
        g_source_remove(c->src);
    close(c->fd);
    g_string_free(c->in, TRUE);
    g_free(c);
}

static gboolean on_admin_in(gint fd, GIOCondition cond, gpointer opaque)
{
    struct admin_conn *c = opaque;
    char buf[4096];
    ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    char *nl;

    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return G_SOURCE_CONTINUE;
        c->src = 0;
        admin_close(c);
        return G_SOURCE_REMOVE;
    }
    g_string_append_len(c->in, buf, n);
    while ((nl = memchr(c->in->str, '\n', c->in->len))) {
        json_object *out;
        const char *s;
        *nl = 0;
        out = handle(c->d, c->in->str);
        s = json_object_to_json_string_ext(out, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        /* the admin socket is local and small: blocking writes are fine */
        if (vb_write_all(fd, s, strlen(s)) || vb_write_all(fd, "\n", 1)) {
            json_object_put(out);
            c->src = 0;
            admin_close(c);
            return G_SOURCE_REMOVE;
        }
        json_object_put(out);
        g_string_erase(c->in, 0, (gssize)(nl - c->in->str) + 1);
    }
    if (c->in->len > ADMIN_MAX_LINE) {
        c->src = 0;
        admin_close(c);
        return G_SOURCE_REMOVE;
    }
    return G_SOURCE_CONTINUE;
}

static gboolean on_admin_accept(gint fd, GIOCondition cond, gpointer opaque)
{
    struct vbd *d = opaque;
    int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
    struct admin_conn *c;

    if (cfd < 0)
        return G_SOURCE_CONTINUE;
    c = g_new0(struct admin_conn, 1);
    c->d = d;
    c->fd = cfd;
    c->in = g_string_new(NULL);
    c->src = g_unix_fd_add(cfd, G_IO_IN, on_admin_in, c);
    d->admin_conns = g_list_prepend(d->admin_conns, c);
    return G_SOURCE_CONTINUE;
}

int vbd_admin_init(struct vbd *d, vb_error *e)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    const char *path = d->cfg->admin_socket;
    g_autofree char *dir = g_path_get_dirname(path);
    int fd, r;

    if (strlen(path) >= sizeof(sa.sun_path))
        return vb_seterr(e, -ENAMETOOLONG, "admin socket path %s is too long", path);
    r = vb_mkdir_p(dir, 0750);
    if (r)
        return vb_seterr(e, r, "mkdir %s: %s", dir, strerror(-r));
    unlink(path);
    strcpy(sa.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(path, 0600) < 0 ||
        listen(fd, 8) < 0) {
        r = vb_seterr(e, -errno, "admin socket %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return r;
    }
    d->admin_fd = fd;
    d->admin_src = g_unix_fd_add(fd, G_IO_IN, on_admin_accept, d);
    return 0;
}

void vbd_admin_fini(struct vbd *d)
{
    while (d->admin_conns)
        admin_close(d->admin_conns->data);
    if (d->admin_src)
        g_source_remove(d->admin_src);
    if (d->admin_fd >= 0) {
        close(d->admin_fd);
        unlink(d->cfg->admin_socket);
    }
}
