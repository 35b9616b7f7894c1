/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "snapshot.h"

#include <dirent.h>
#include <endian.h>
#include <fcntl.h>
#include <openssl/sha.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define INDEX_MAX (64u << 20)

const char *vb_snap_type_name(enum vb_snap_type t)
{
    return t == VB_SNAP_DISK ? "disk" : t == VB_SNAP_FILES ? "files" : "?";
}

const char *vb_json_str(json_object *o, const char *key)
{
    json_object *v;

    if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

int64_t vb_json_int(json_object *o, const char *key, int64_t dflt)
{
    json_object *v;

    if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
        return dflt;
    return json_object_get_int64(v);
}

static bool valid_time_part(const char *t)
{
    size_t n = 0;

    if (!*t || *t == '.' || *t == '-')
        return false;
    for (; *t; t++, n++)
        if (!((*t >= '0' && *t <= '9') || *t == 'T' || *t == 'Z' || *t == ':' || *t == '-'))
            return false;
    return n <= 40;
}

bool vb_snap_valid_id(const char *id)
{
    const char *slash = id ? strchr(id, '/') : NULL;
    char vm[72];

    if (!slash || (size_t)(slash - id) >= sizeof(vm))
        return false;
    memcpy(vm, id, (size_t)(slash - id));
    vm[slash - id] = 0;
    return vb_valid_name(vm) && valid_time_part(slash + 1);
}

void vb_snap_free(struct vb_snapshot *s)
{
    if (!s)
        return;
    free(s->id);
    free(s->vm);
    free(s->parent);
    free(s->group);
    free(s->ids);
    json_object_put(s->json);
    free(s);
}

static void snap_free_cb(gpointer p)
{
    vb_snap_free(p);
}

int vb_snap_load(struct vb_repo *r, const char *id, struct vb_snapshot **out, vb_error *e)
{
    char path[PATH_MAX], *data = NULL;
    struct vb_snapshot *s;
    json_object *o;
    const char *type, *created, *named;
    int ret;

    if (!vb_snap_valid_id(id))
        return vb_seterr(e, -EINVAL, "'%s' is not a valid snapshot id (VM/TIME)", id);
    snprintf(path, sizeof(path), "snapshots/%s/index.json", id);
    ret = vb_repo_read(r, r->dirfd, path, &data, NULL, INDEX_MAX, NULL);
    if (ret == -ENOENT) {
        int fd;
        snprintf(path, sizeof(path), "snapshots/%s", id);
        fd = vb_repo_openat(r->dirfd, path, O_PATH, 0);
        if (fd >= 0) {
            close(fd);
            return vb_seterr(e, -EBADMSG, "snapshot %s: index.json is missing", id);
        }
        if (fd != -ENOENT)
            return vb_seterr(e, fd, "snapshot %s: %s: %s", id, path, vb_repo_strerror(fd));
        return vb_seterr(e, ret, "snapshot %s not found", id);
    }
    if (ret)
        return vb_seterr(e, ret, "snapshot %s: read %s/%s: %s", id, r->path, path,
                         vb_repo_strerror(ret));
    o = json_tokener_parse(data);
    free(data);
    if (!o || !json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        return vb_seterr(e, -EBADMSG, "snapshot %s: index.json is damaged", id);
    }
    /* the folder's name is the id: a folder renamed by hand is not this snapshot */
    named = vb_json_str(o, "id");
    if (!named || strcmp(named, id)) {
        ret = named ? vb_seterr(e, -EBADMSG, "snapshot %s: index.json belongs to snapshot %s "
                                "(a renamed folder?)", id, named)
                    : vb_seterr(e, -EBADMSG, "snapshot %s: index.json is damaged (no id)", id);
        json_object_put(o);
        return ret;
    }
    s = calloc(1, sizeof(*s));
    s->json = o;
    s->id = strdup(id);
    s->vm = strndup(id, (size_t)(strchr(id, '/') - id));
    type = vb_json_str(o, "type");
    s->type = type && !strcmp(type, "disk") ? VB_SNAP_DISK
            : type && !strcmp(type, "files") ? VB_SNAP_FILES : 0;
    created = vb_json_str(o, "created");
    s->created_ns = vb_json_int(o, "created_ns", 0);
    if (!s->created_ns && created)
        vb_parse_time(created, &s->created_ns);
    if (vb_json_str(o, "parent"))
        s->parent = strdup(vb_json_str(o, "parent"));
    s->group = strdup(vb_json_str(o, "group") ? vb_json_str(o, "group") : "");
    s->gc_generation = vb_json_int(o, "gc_generation", -1);
    {
        json_object *g;
        vb_error ge = { 0 };
        if (json_object_object_get_ex(o, "dedup_group", &g) &&
            (!json_object_is_type(g, json_type_string) ||
             vb_idspace_init(&s->space, json_object_get_string(g), &ge) ||
             !s->space.tagged)) {
            vb_snap_free(s);
            return vb_seterr(e, -EBADMSG, "snapshot %s: index.json has an invalid dedup_group",
                             id);
        }
    }
    if (!s->type) {
        vb_snap_free(s);
        return vb_seterr(e, -EBADMSG, "snapshot %s: unknown type in index.json", id);
    }
    if (!s->created_ns) {
        vb_snap_free(s);
        return vb_seterr(e, -EBADMSG, "snapshot %s: index.json has no creation time", id);
    }
    *out = s;
    return 0;
}

static gint by_created(gconstpointer a, gconstpointer b)
{
    const struct vb_snapshot *x = *(struct vb_snapshot *const *)a;
    const struct vb_snapshot *y = *(struct vb_snapshot *const *)b;

    if (x->created_ns != y->created_ns)
        return x->created_ns < y->created_ns ? -1 : 1;
    return strcmp(x->id, y->id);
}

void vb_snap_problem_free(struct vb_snap_problem *p)
{
    if (!p)
        return;
    g_free(p->where);
    g_free(p->error);
    g_free(p);
}

/* A listing.  Strict (problems != NULL): everything in snapshots/ that is not
 * a readable snapshot or a leftover of an interrupted operation is a
 * problem, and so is a folder that cannot be listed to its end.  Lenient:
 * such entries are skipped (unreadable snapshots with a warning), and a
 * folder that cannot be listed to its end is an error. */
struct scan {
    struct vb_repo *r;
    GPtrArray *snaps;
    GPtrArray *problems;     /* struct vb_snap_problem *, or NULL: lenient */
};

static void problem(struct scan *sc, const char *where, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void problem(struct scan *sc, const char *where, const char *fmt, ...)
{
    struct vb_snap_problem *p = g_new0(struct vb_snap_problem, 1);
    va_list ap;

    va_start(ap, fmt);
    p->error = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    p->where = g_strdup(where);
    g_ptr_array_add(sc->problems, p);
}

/* A listing error: a problem when strict, else an error. */
static int list_error(struct scan *sc, const char *rel, int err, vb_error *e)
{
    if (sc->problems) {
        problem(sc, rel, "list %s: %s", rel, strerror(err));
        return 0;
    }
    return vb_seterr(e, -err, "list %s/%s: %s", sc->r->path, rel, strerror(err));
}

static int scan_vm(struct scan *sc, const char *vm, vb_error *e)
{
    char rel[PATH_MAX];
    DIR *d;
    struct dirent *de;
    int fd, ret = 0;

    snprintf(rel, sizeof(rel), "snapshots/%s", vm);
    fd = vb_repo_openat(sc->r->dirfd, rel, O_RDONLY | O_DIRECTORY, 0);
    if (fd == -ENOENT)
        return 0;                       /* no snapshot of this VM */
    if (fd < 0 || !(d = fdopendir(fd))) {
        int err = fd < 0 ? -fd : errno;
        if (fd >= 0)
            close(fd);
        if (sc->problems && (err == ENOTDIR || err == ELOOP)) {
            problem(sc, rel, "%s: not a VM folder (%s)", rel,
                    err == ELOOP ? "a symlink" : "a stray file?");
            return 0;
        }
        if (err == ELOOP || err == EXDEV)
            return vb_seterr(e, -err, "list %s/%s: %s", sc->r->path, rel, vb_repo_strerror(err));
        return list_error(sc, rel, err, e);
    }
    for (;;) {
        char id[400];
        struct vb_snapshot *s;
        vb_error le = { 0 };

        errno = 0;
        if (!(de = readdir(d))) {
            if (errno)                  /* not the end of the folder */
                ret = list_error(sc, rel, errno, e);
            break;
        }
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        /* leftovers of interrupted backups and deletions: gc removes them */
        if (!strncmp(de->d_name, ".tmp-", 5) || !strncmp(de->d_name, ".del-", 5))
            continue;
        snprintf(id, sizeof(id), "%s/%s", vm, de->d_name);
        if (de->d_name[0] == '.' || !vb_snap_valid_id(id)) {
            if (sc->problems)
                problem(sc, id, "%s: not a snapshot (a stray entry or a renamed folder?)", id);
            continue;
        }
        if (vb_snap_load(sc->r, id, &s, &le) == 0) {
            g_ptr_array_add(sc->snaps, s);
        } else if (sc->problems) {
            problem(sc, id, "%s", vb_strerror(&le));
        } else if (!sc->r->quiet) {
            fprintf(stderr, "warning: %s\n", vb_strerror(&le));
        }
    }
    closedir(d);
    return ret;
}

static int scan_all(struct scan *sc, const char *vm, vb_error *e)
{
    DIR *d;
    struct dirent *de;
    int fd, ret = 0;

    if (vm)
        return scan_vm(sc, vm, e);
    fd = vb_repo_openat(sc->r->dirfd, "snapshots", O_RDONLY | O_DIRECTORY, 0);
    if (fd < 0 || !(d = fdopendir(fd))) {
        int err = fd < 0 ? -fd : errno;
        ret = vb_seterr(e, -err, "open %s/snapshots: %s", sc->r->path, vb_repo_strerror(err));
        if (fd >= 0)
            close(fd);
        return ret;
    }
    while (!ret) {
        struct stat st = { .st_mode = 0 };
        char rel[PATH_MAX];

        errno = 0;
        if (!(de = readdir(d))) {
            if (errno)
                ret = list_error(sc, "snapshots", errno, e);
            break;
        }
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        snprintf(rel, sizeof(rel), "snapshots/%s", de->d_name);
        if (!vb_valid_name(de->d_name) ||
            fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode)) {
            if (sc->problems)
                problem(sc, rel, "%s: not a VM folder (%s)", rel,
                        vb_valid_name(de->d_name) && S_ISLNK(st.st_mode) ? "a symlink"
                                                                         : "a stray entry?");
            continue;
        }
        ret = scan_vm(sc, de->d_name, e);
    }
    closedir(d);
    return ret;
}

int vb_snap_list(struct vb_repo *r, const char *vm, GPtrArray **out, vb_error *e)
{
    struct scan sc = { .r = r, .snaps = g_ptr_array_new_with_free_func(snap_free_cb) };
    int ret = scan_all(&sc, vm, e);

    if (ret) {
        g_ptr_array_free(sc.snaps, TRUE);
        return ret;
    }
    g_ptr_array_sort(sc.snaps, by_created);
    *out = sc.snaps;
    return 0;
}

int vb_snap_scan(struct vb_repo *r, const char *vm, GPtrArray **out, GPtrArray **problems,
                 vb_error *e)
{
    struct scan sc = {
        .r = r,
        .snaps = g_ptr_array_new_with_free_func(snap_free_cb),
        .problems = g_ptr_array_new_with_free_func((GDestroyNotify)vb_snap_problem_free),
    };
    int ret = scan_all(&sc, vm, e);

    if (ret) {
        g_ptr_array_free(sc.snaps, TRUE);
        g_ptr_array_free(sc.problems, TRUE);
        return ret;
    }
    g_ptr_array_sort(sc.snaps, by_created);
    *out = sc.snaps;
    *problems = sc.problems;
    return 0;
}

uint8_t *vb_fidx_build(uint64_t size, uint32_t chunk_size, uint64_t n_chunks,
                       const uint8_t *ids, size_t *len)
{
    size_t n = VB_FIDX_HDR + n_chunks * VB_ID_LEN;
    uint8_t *p = calloc(1, n);
    uint32_t v32;
    uint64_t v64;

    if (!p)
        return NULL;
    memcpy(p, VB_FIDX_MAGIC, 8);
    v32 = htole32(1); memcpy(p + 8, &v32, 4);
    v32 = htole32(chunk_size); memcpy(p + 12, &v32, 4);
    v64 = htole64(size); memcpy(p + 16, &v64, 8);
    v64 = htole64(n_chunks); memcpy(p + 24, &v64, 8);
    memcpy(p + VB_FIDX_HDR, ids, n_chunks * VB_ID_LEN);
    *len = n;
    return p;
}

int vb_snap_load_fidx(struct vb_repo *r, struct vb_snapshot *s, vb_error *e)
{
    char path[PATH_MAX], *data = NULL, hex[VB_ID_HEX];
    const char *want;
    json_object *disk;
    uint8_t sum[32];
    uint32_t v32;
    uint64_t v64, n;
    size_t len;
    int ret;

    if (s->type != VB_SNAP_DISK)
        return vb_seterr(e, -EINVAL, "snapshot %s is not a disk snapshot", s->id);
    if (!json_object_object_get_ex(s->json, "disk", &disk) ||
        !json_object_is_type(disk, json_type_object))
        return vb_seterr(e, -EBADMSG, "snapshot %s: index.json lacks \"disk\" (an object)",
                         s->id);
    want = vb_json_str(disk, "index_sha256");
    if (!want)
        return vb_seterr(e, -EBADMSG, "snapshot %s: index.json lacks \"disk\": "
                         "\"index_sha256\" (a string)", s->id);
    snprintf(path, sizeof(path), "snapshots/%s/disk.fidx", s->id);
    ret = vb_repo_read(r, r->dirfd, path, &data, &len, (size_t)1 << 34, NULL);
    if (ret == -ENOENT)
        return vb_seterr(e, -EBADMSG, "snapshot %s: disk.fidx is missing", s->id);
    if (ret)
        return vb_seterr(e, ret, "snapshot %s: read disk.fidx: %s", s->id, vb_repo_strerror(ret));
    SHA256((uint8_t *)data, len, sum);
    vb_hex(sum, 32, hex);
    if (strcmp(want, hex) != 0) {
        free(data);
        return vb_seterr(e, -EBADMSG, "snapshot %s: disk.fidx is damaged (SHA-256 mismatch)",
                         s->id);
    }
    if (len < VB_FIDX_HDR || memcmp(data, VB_FIDX_MAGIC, 8) != 0) {
        free(data);
        return vb_seterr(e, -EBADMSG, "snapshot %s: disk.fidx has a bad header", s->id);
    }
    memcpy(&v32, data + 12, 4); s->chunk_size = le32toh(v32);
    memcpy(&v64, data + 16, 8); s->size = le64toh(v64);
    memcpy(&v64, data + 24, 8); n = le64toh(v64);
    if (!s->chunk_size || s->chunk_size > VB_CHUNK_MAX ||
        n != (s->size + s->chunk_size - 1) / s->chunk_size ||
        n > (len - VB_FIDX_HDR) / VB_ID_LEN || len != VB_FIDX_HDR + n * VB_ID_LEN) {
        free(data);
        return vb_seterr(e, -EBADMSG, "snapshot %s: disk.fidx sizes are inconsistent", s->id);
    }
    s->n_chunks = n;
    free(s->ids);
    s->ids = malloc(VB_MAX(n * VB_ID_LEN, (uint64_t)1));
    memcpy(s->ids, data + VB_FIDX_HDR, n * VB_ID_LEN);
    free(data);
    return 0;
}

/* The folder snapshots/<vm>, opened beneath the repository; an fd or -errno. */
static int vm_dir(struct vb_repo *r, const char *vm, size_t len)
{
    char rel[PATH_MAX];

    snprintf(rel, sizeof(rel), "snapshots/%.*s", (int)len, vm);
    return vb_repo_openat(r->dirfd, rel, O_RDONLY | O_DIRECTORY, 0);
}

int vb_snap_delete(struct vb_repo *r, const char *id, vb_error *e)
{
    const char *time = id ? strchr(id, '/') + 1 : NULL;
    char tmp[PATH_MAX];
    int ret, vfd;

    if (!vb_snap_valid_id(id))
        return vb_seterr(e, -EINVAL, "'%s' is not a valid snapshot id", id);
    vfd = vm_dir(r, id, (size_t)(time - 1 - id));
    if (vfd < 0)
        return vb_seterr(e, vfd, "delete snapshot %s: %s", id,
                         vfd == -ENOENT ? "not found" : vb_repo_strerror(vfd));
    /* rename out of sight first: a half-deleted snapshot is never visible */
    snprintf(tmp, sizeof(tmp), ".del-%s", time);
    if (renameat(vfd, time, vfd, tmp) < 0) {
        ret = vb_seterr(e, -errno, "delete snapshot %s: %s", id,
                        errno == ENOENT ? "not found" : strerror(errno));
        close(vfd);
        return ret;
    }
    /* gone from sight, for good once the VM's folder is on disk (should this
     * fsync fail, a power cut could bring the complete snapshot back) */
    vb_fsync_dirfd(vfd);
    ret = vb_rm_rf_at(vfd, tmp);
    close(vfd);
    if (ret)
        return vb_seterr(e, ret, "remove %s/snapshots/%.*s/%s: %s", r->path,
                         (int)(time - 1 - id), id, tmp, strerror(-ret));
    return 0;
}

int vb_snap_begin(struct vb_repo *r, const char *vm, struct vb_snap_writer *w, vb_error *e)
{
    int sfd, vfd, ret;

    memset(w, 0, sizeof(*w));
    if (!vb_valid_name(vm))
        return vb_seterr(e, -EINVAL, "'%s' is not a valid VM name (letters, digits, . _ -; at "
                         "most 64)", vm);
    w->r = r;
    snprintf(w->vm, sizeof(w->vm), "%s", vm);
    w->created_ns = vb_wall_ns();
    /* snapshots/ and snapshots/<vm>/, never through a symlink */
    sfd = vb_repo_openat(r->dirfd, "snapshots", O_RDONLY | O_DIRECTORY, 0);
    if (sfd < 0)
        return vb_seterr(e, sfd, "open %s/snapshots: %s", r->path, vb_repo_strerror(sfd));
    if (mkdirat(sfd, vm, 0700) < 0 && errno != EEXIST) {
        ret = vb_seterr(e, -errno, "mkdir %s/snapshots/%s: %s", r->path, vm, strerror(errno));
        close(sfd);
        return ret;
    }
    close(sfd);
    vfd = vm_dir(r, vm, strlen(vm));
    if (vfd < 0)
        return vb_seterr(e, vfd, "open %s/snapshots/%s: %s", r->path, vm, vb_repo_strerror(vfd));
    snprintf(w->tmpdir, sizeof(w->tmpdir), "snapshots/%s/.tmp-%d-%lx", vm, (int)getpid(),
             (unsigned long)(w->created_ns ^ random()));
    if (mkdirat(vfd, strrchr(w->tmpdir, '/') + 1, 0700) < 0) {
        ret = vb_seterr(e, -errno, "mkdir %s/%s: %s", r->path, w->tmpdir, strerror(errno));
        close(vfd);
        return ret;
    }
    close(vfd);
    w->open = true;
    return 0;
}

int vb_snap_write_file(struct vb_snap_writer *w, const char *name, const void *data,
                       size_t len, uint8_t sha256[32], vb_error *e)
{
    char rel[PATH_MAX];
    int fd, ret;

    snprintf(rel, sizeof(rel), "%s/%s", w->tmpdir, name);
    fd = vb_repo_openat(w->r->dirfd, rel, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return vb_seterr(e, fd, "create %s/%s: %s", w->r->path, rel, vb_repo_strerror(fd));
    ret = vb_write_all(fd, data, len);
    if (!ret && fsync(fd) < 0)
        ret = -errno;
    if (close(fd) < 0 && !ret)
        ret = -errno;
    if (ret)
        return vb_seterr(e, ret, "write %s/%s: %s", w->r->path, rel, strerror(-ret));
    if (sha256)
        SHA256(data, len, sha256);
    return 0;
}

int vb_snap_commit(struct vb_snap_writer *w, json_object *index, char **id_out, vb_error *e)
{
    char t[48], id[160];
    const char *s, *tmpname = strrchr(w->tmpdir, '/') + 1;
    int ret, fd, vfd;

    vb_fmt_time(w->created_ns, t, sizeof(t));
    json_object_object_add(index, "format", json_object_new_int(1));
    json_object_object_add(index, "vm", json_object_new_string(w->vm));
    json_object_object_add(index, "created", json_object_new_string(t));
    json_object_object_add(index, "created_ns", json_object_new_int64(w->created_ns));

    /* every chunk this snapshot names must be durable before it appears */
    ret = vb_repo_sync(w->r, e);
    if (ret)
        return ret;
    vfd = vm_dir(w->r, w->vm, strlen(w->vm));
    if (vfd < 0)
        return vb_seterr(e, vfd, "open %s/snapshots/%s: %s", w->r->path, w->vm,
                         vb_repo_strerror(vfd));
    for (int attempt = 1; attempt < 1000; attempt++) {
        if (attempt == 1)
            snprintf(id, sizeof(id), "%s/%s", w->vm, t);
        else
            snprintf(id, sizeof(id), "%s/%s-%d", w->vm, t, attempt);
        json_object_object_add(index, "id", json_object_new_string(id));
        s = json_object_to_json_string_ext(index, JSON_C_TO_STRING_PRETTY |
                                                  JSON_C_TO_STRING_NOSLASHESCAPE);
        ret = vb_snap_write_file(w, "index.json", s, strlen(s), NULL, e);
        if (ret)
            break;
        /* the folder's entries, and the folder in snapshots/<vm>/: durable
         * before the commit point, and any failure fails the commit */
        fd = vb_repo_openat(vfd, tmpname, O_RDONLY | O_DIRECTORY, 0);
        if (fd < 0) {
            ret = vb_seterr(e, fd, "open %s/%s: %s", w->r->path, w->tmpdir,
                            vb_repo_strerror(fd));
            break;
        }
        ret = vb_fsync_dirfd(fd);
        close(fd);
        if (ret) {
            vb_seterr(e, ret, "fsync %s/%s: %s", w->r->path, w->tmpdir, strerror(-ret));
            break;
        }
        if ((ret = vb_fsync_dirfd(vfd))) {
            vb_seterr(e, ret, "fsync %s/snapshots/%s: %s", w->r->path, w->vm, strerror(-ret));
            break;
        }
        /* the commit point; an abort that came first wins (w->gate serializes them) */
        if (w->gate)
            g_mutex_lock(w->gate);
        if (w->cancel && *w->cancel) {
            if (w->gate)
                g_mutex_unlock(w->gate);
            ret = vb_seterr(e, -ECANCELED, "commit snapshot: the backup was aborted");
            break;
        }
        ret = renameat2(vfd, tmpname, vfd, strchr(id, '/') + 1, RENAME_NOREPLACE) == 0
                  ? 0 : -errno;
        if (w->gate)
            g_mutex_unlock(w->gate);
        if (ret == 0) {
            /* The snapshot exists: nothing after this point fails the commit.
             * This fsync makes the rename durable; should it fail, the rename
             * reaches the disk with the file system's next sync, and only a
             * power cut before that can take it back (its chunks and files
             * are durable already).  Said, not failed. */
            int fr = vb_fsync_dirfd(vfd);
            close(vfd);
            w->open = false;
            *id_out = strdup(id);
            if (fr)
                snprintf(w->warning, sizeof(w->warning), "snapshot %s is committed, but fsync "
                         "%s/snapshots/%s: %s; until the file system syncs, a power cut could "
                         "undo the commit", id, w->r->path, w->vm, strerror(-fr));
            return 0;
        }
        if (ret != -EEXIST && ret != -ENOTEMPTY) {
            vb_seterr(e, ret, "commit snapshot %s: %s", id, strerror(-ret));
            break;
        }
        ret = vb_seterr(e, -EEXIST, "commit snapshot: no free id for %s/%s", w->vm, t);
    }
    close(vfd);
    return ret;
}

void vb_snap_abort(struct vb_snap_writer *w)
{
    int vfd;

    if (w->open && (vfd = vm_dir(w->r, w->vm, strlen(w->vm))) >= 0) {
        vb_rm_rf_at(vfd, strrchr(w->tmpdir, '/') + 1);
        close(vfd);
    }
    w->open = false;
}

/* The stamp of REL beneath the repository, opened as every path in it is:
 * never through a symlink (vb_repo_openat).  Missing: exists = false. */
static int stamp_at(struct vb_repo *r, const char *rel, struct vb_snap_stamp *out, vb_error *e)
{
    struct stat st;
    int fd;

    memset(out, 0, sizeof(*out));
    fd = vb_repo_openat(r->dirfd, rel, O_PATH, 0);
    if (fd == -ENOENT) {
        out->settled = true;
        return 0;
    }
    if (fd < 0)
        return vb_seterr(e, fd, "%s/%s: %s", r->path, rel, vb_repo_strerror(fd));
    if (fstat(fd, &st) < 0) {
        int ret = -errno;
        close(fd);
        return vb_seterr(e, ret, "stat %s/%s: %s", r->path, rel, strerror(-ret));
    }
    close(fd);
    out->exists = true;
    out->ino = (uint64_t)st.st_ino;
    out->nlink = (uint64_t)st.st_nlink;
    out->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    out->ctime_ns = (int64_t)st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec;
    out->settled = vb_wall_ns() - out->ctime_ns > 2000000000ll;
    return 0;
}

int vb_snap_stamp(struct vb_repo *r, const char *vm, struct vb_snap_stamp *out, vb_error *e)
{
    char rel[PATH_MAX];

    memset(out, 0, sizeof(*out));
    if (!vb_valid_name(vm))
        return vb_seterr(e, -EINVAL, "'%s' is not a valid VM name", vm);
    snprintf(rel, sizeof(rel), "snapshots/%s", vm);
    return stamp_at(r, rel, out, e);
}

int vb_snap_index_stamp(struct vb_repo *r, const char *id, struct vb_snap_stamp *out,
                        vb_error *e)
{
    char rel[PATH_MAX];

    memset(out, 0, sizeof(*out));
    if (!vb_snap_valid_id(id))
        return vb_seterr(e, -EINVAL, "'%s' is not a valid snapshot id (VM/TIME)", id);
    snprintf(rel, sizeof(rel), "snapshots/%s/index.json", id);
    return stamp_at(r, rel, out, e);
}

bool vb_snap_stamp_equal(const struct vb_snap_stamp *a, const struct vb_snap_stamp *b)
{
    return a->exists == b->exists && a->ino == b->ino && a->nlink == b->nlink &&
           a->mtime_ns == b->mtime_ns && a->ctime_ns == b->ctime_ns;
}
