/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "repo.h"

#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define REPO_MARKER "vbackup-repo.json"

/* ---- paths beneath the repository ---------------------------------------------- */

/* openat of one component that is not followed if it is a symlink: -ELOOP
 * then, as openat2 says it (O_NOFOLLOW with O_DIRECTORY says -ENOTDIR) */
static int open_step(int fd, const char *name, int flags, mode_t mode)
{
    struct stat st;
    int ret;

    if (!strcmp(name, ".."))
        return -EXDEV;
    ret = openat(fd, *name ? name : ".", flags | O_NOFOLLOW | O_CLOEXEC, mode);
    if (ret >= 0)
        return ret;
    ret = -errno;
    if ((ret == -ENOTDIR || ret == -ELOOP) &&
        fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
        ret = -ELOOP;
    return ret;
}

/* Without openat2 (ENOSYS): one component at a time, none a symlink, none "..". */
static int openat_steps(int dirfd, const char *rel, int flags, mode_t mode)
{
    char buf[PATH_MAX];
    char *p = buf, *slash;
    int fd = dirfd, next;

    if (strlen(rel) >= sizeof(buf))
        return -ENAMETOOLONG;
    strcpy(buf, rel);
    while ((slash = strchr(p, '/'))) {
        *slash = 0;
        if (*p && strcmp(p, "."))
            next = open_step(fd, p, O_RDONLY | O_DIRECTORY, 0);
        else if ((next = dup(fd)) < 0)
            next = -errno;
        if (fd != dirfd)
            close(fd);
        if (next < 0)
            return next;
        fd = next;
        p = slash + 1;
    }
    next = open_step(fd, p, flags, mode);
    if (fd != dirfd)
        close(fd);
    return next;
}

int vb_repo_openat(int dirfd, const char *rel, int flags, mode_t mode)
{
    static volatile int no_openat2;
    struct open_how how = {
        /* a trailing symlink is refused by RESOLVE_NO_SYMLINKS (-ELOOP) */
        .flags = (uint64_t)(flags | O_CLOEXEC),
        .mode = flags & O_CREAT ? mode : 0,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    long fd;

    if (!no_openat2) {
        do {
            fd = syscall(SYS_openat2, dirfd, rel, &how, sizeof(how));
        } while (fd < 0 && (errno == EINTR || errno == EAGAIN));
        if (fd >= 0)
            return (int)fd;
        if (errno != ENOSYS)
            return -errno;
        no_openat2 = 1;
    }
    return openat_steps(dirfd, rel, flags, mode);
}

const char *vb_repo_strerror(int err)
{
    if (err < 0)
        err = -err;
    if (err == ELOOP)
        return "a symlink, which a repository never holds (refused: tampered with?)";
    if (err == EXDEV)
        return "leads outside the repository (refused)";
    return strerror(err);
}

int vb_repo_read(struct vb_repo *r, int dirfd, const char *rel, char **data, size_t *len,
                 size_t max, vb_error *e)
{
    char name[PATH_MAX];
    int fd = vb_repo_openat(dirfd, rel, O_RDONLY, 0);

    snprintf(name, sizeof(name), "%s/%s", r->path, rel);
    if (fd < 0)
        return vb_seterr(e, fd, "open %s: %s", name, vb_repo_strerror(fd));
    return vb_read_fd(fd, name, data, len, max, e);
}

int vb_repo_init(const char *path, int level, vb_error *e)
{
    char buf[PATH_MAX], t[40];
    json_object *o;
    struct stat st;
    int ret;

    if (stat(path, &st) == 0) {
        if (!S_ISDIR(st.st_mode))
            return vb_seterr(e, -ENOTDIR, "%s exists and is not a folder", path);
        snprintf(buf, sizeof(buf), "%s/" REPO_MARKER, path);
        if (access(buf, F_OK) == 0)
            return vb_seterr(e, -EEXIST, "%s is already a vbackup repository", path);
    }
    ret = vb_mkdir_p(path, 0700);
    if (ret)
        return vb_seterr(e, ret, "mkdir %s: %s", path, strerror(-ret));
    const char *dirs[] = { "chunks", "snapshots" };
    for (size_t i = 0; i < VB_ARRAY_SIZE(dirs); i++) {
        snprintf(buf, sizeof(buf), "%s/%s", path, dirs[i]);
        if (mkdir(buf, 0700) < 0 && errno != EEXIST)
            return vb_seterr(e, -errno, "mkdir %s: %s", buf, strerror(errno));
    }
    snprintf(buf, sizeof(buf), "%s/lock", path);
    ret = open(buf, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (ret < 0)
        return vb_seterr(e, -errno, "create %s: %s", buf, strerror(errno));
    close(ret);

    vb_fmt_time(vb_wall_ns(), t, sizeof(t));
    o = json_object_new_object();
    json_object_object_add(o, "vbackup_repository", json_object_new_int(VB_REPO_FORMAT));
    json_object_object_add(o, "created", json_object_new_string(t));
    json_object_object_add(o, "disk_chunk_size", json_object_new_int(VB_DISK_CHUNK));
    json_object_object_add(o, "compression", json_object_new_string("zstd"));
    json_object_object_add(o, "level", json_object_new_int(level));
    const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY);
    snprintf(buf, sizeof(buf), "%s/" REPO_MARKER, path);
    ret = vb_write_file_atomic(buf, s, strlen(s), true, e);
    json_object_put(o);
    if (ret == -EEXIST)
        return vb_seterr(e, ret, "%s is already a vbackup repository", path);
    if (ret == 0)
        ret = vb_fsync_dir(path);
    return ret;
}

/* flock fd: shared or exclusive; without wait, -EBUSY when the other kind is held */
static int take_lock(struct vb_repo *r, int fd, enum vb_lock lock, bool wait, vb_error *e)
{
    int op = lock == VB_LOCK_EXCLUSIVE ? LOCK_EX : LOCK_SH;

    if (lock == VB_LOCK_NONE)
        return 0;
    if (flock(fd, op | LOCK_NB) == 0)
        return 0;
    if (errno != EWOULDBLOCK)
        return vb_seterr(e, -errno, "flock %s/lock: %s", r->path, strerror(errno));
    if (!wait)
        return vb_seterr(e, -EBUSY, "repository %s is busy (%s)", r->path,
                         lock == VB_LOCK_EXCLUSIVE ? "other operations are running"
                                                   : "garbage collection is running");
    if (!r->quiet)
        fprintf(stderr, "waiting for the repository lock (%s)...\n",
                lock == VB_LOCK_EXCLUSIVE ? "other operations are running"
                                          : "garbage collection is running");
    while (flock(fd, op) < 0) {
        if (errno != EINTR)
            return vb_seterr(e, -errno, "flock %s/lock: %s", r->path, strerror(errno));
    }
    return 0;
}

/*
 * The lock file, for flock (which takes any open file).  On a read-only
 * repository (a read-only mount, ext4 after a journal abort) it is opened
 * read-only: listing, verify and restores still work there; whatever writes
 * fails where it writes, saying so.
 */
static int open_lock(struct vb_repo *r, bool create)
{
    /* beneath the repository, never through a symlink (vb_repo_openat) */
    int fd = vb_repo_openat(r->dirfd, "lock", O_RDWR | (create ? O_CREAT : 0), 0600);

    if (fd == -EROFS || fd == -EACCES)
        fd = vb_repo_openat(r->dirfd, "lock", O_RDONLY, 0);
    return fd;        /* or -errno */
}

int vb_repo_open(const char *path, enum vb_lock lock, bool quiet, struct vb_repo **out,
                 vb_error *e)
{
    struct vb_repo *r = calloc(1, sizeof(*r));
    char *data = NULL;
    json_object *o = NULL, *v;
    int ret;

    if (!r)
        return vb_seterr(e, -ENOMEM, "out of memory");
    r->dirfd = r->chunks_fd = r->lock_fd = -1;
    r->quiet = quiet;
    r->path = strdup(path);
    r->dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (r->dirfd < 0)
        ret = -errno;
    else
        ret = vb_repo_read(r, r->dirfd, REPO_MARKER, &data, NULL, 1 << 20, NULL);
    if (ret) {
        ret = vb_seterr(e, ret, "%s is not a vbackup repository (%s/" REPO_MARKER ": %s); "
                        "create one with 'vbackupctl --repo %s init'", path, path,
                        vb_repo_strerror(ret), path);
        goto fail;
    }
    /* the marker: each field of the type it must have, or the repository is refused */
    o = json_tokener_parse(data);
    if (!o || !json_object_is_type(o, json_type_object) ||
        !json_object_object_get_ex(o, "vbackup_repository", &v) ||
        !json_object_is_type(v, json_type_int) || json_object_get_int64(v) != VB_REPO_FORMAT) {
        ret = vb_seterr(e, -EINVAL, "%s: unsupported or damaged repository marker %s/"
                        REPO_MARKER " (\"vbackup_repository\" must be the number %d)", path,
                        path, VB_REPO_FORMAT);
        goto fail;
    }
    r->level = 1;
    if (json_object_object_get_ex(o, "level", &v)) {
        if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 1 ||
            json_object_get_int64(v) > 22) {
            ret = vb_seterr(e, -EINVAL, "%s: damaged repository marker %s/" REPO_MARKER
                            " (\"level\" must be a number from 1 to 22)", path, path);
            goto fail;
        }
        r->level = (int)json_object_get_int64(v);
    }
    r->chunks_fd = vb_repo_openat(r->dirfd, "chunks", O_RDONLY | O_DIRECTORY, 0);
    if (r->chunks_fd < 0) {
        ret = vb_seterr(e, r->chunks_fd, "open %s/chunks: %s", path,
                        vb_repo_strerror(r->chunks_fd));
        goto fail;
    }
    r->lock_fd = open_lock(r, true);
    if (r->lock_fd < 0) {
        ret = vb_seterr(e, r->lock_fd, "open %s/lock: %s", path, vb_repo_strerror(r->lock_fd));
        goto fail;
    }
    ret = take_lock(r, r->lock_fd, lock, true, e);
    if (ret)
        goto fail;
    json_object_put(o);
    free(data);
    *out = r;
    return 0;
fail:
    json_object_put(o);
    free(data);
    vb_repo_close(r);
    return ret;
}

void vb_repo_close(struct vb_repo *r)
{
    if (!r)
        return;
    if (r->lock_fd >= 0)
        close(r->lock_fd);
    if (r->chunks_fd >= 0)
        close(r->chunks_fd);
    if (r->dirfd >= 0)
        close(r->dirfd);
    free(r->path);
    free(r);
}

/* ---- claims ------------------------------------------------------------------ */

struct vb_claim {
    int fd;                  /* its own open file description: flock is per description */
};

static int claim(struct vb_repo *r, enum vb_lock kind, bool wait, struct vb_claim **out,
                 vb_error *e);

int vb_repo_claim(struct vb_repo *r, bool wait, struct vb_claim **out, vb_error *e)
{
    return claim(r, VB_LOCK_SHARED, wait, out, e);
}

int vb_repo_claim_exclusive(struct vb_repo *r, struct vb_claim **out, vb_error *e)
{
    return claim(r, VB_LOCK_EXCLUSIVE, false, out, e);
}

static int claim(struct vb_repo *r, enum vb_lock kind, bool wait, struct vb_claim **out,
                 vb_error *e)
{
    struct vb_claim *c = calloc(1, sizeof(*c));
    int ret;

    if (!c)
        return vb_seterr(e, -ENOMEM, "out of memory");
    c->fd = open_lock(r, false);
    if (c->fd < 0) {
        ret = vb_seterr(e, c->fd, "open %s/lock: %s", r->path, vb_repo_strerror(c->fd));
        free(c);
        return ret;
    }
    ret = take_lock(r, c->fd, kind, wait, e);
    if (ret) {
        close(c->fd);
        free(c);
        return ret;
    }
    *out = c;
    return 0;
}

void vb_repo_release(struct vb_claim *c)
{
    if (!c)
        return;
    close(c->fd);
    free(c);
}

/* ---- gc generation -------------------------------------------------------------- */

#define GC_FILE "gc.json"

int vb_repo_gc_generation(struct vb_repo *r, uint64_t *gen, vb_error *e)
{
    char path[PATH_MAX], *data = NULL;
    json_object *o, *v;
    int ret;

    *gen = 0;
    snprintf(path, sizeof(path), "%s/" GC_FILE, r->path);
    ret = vb_repo_read(r, r->dirfd, GC_FILE, &data, NULL, 1 << 16, NULL);
    if (ret == -ENOENT)
        return 0;                       /* no gc has run yet */
    if (ret)
        return vb_seterr(e, ret, "read %s: %s", path, vb_repo_strerror(ret));
    o = json_tokener_parse(data);
    free(data);
    if (!o || !json_object_object_get_ex(o, "generation", &v) ||
        !json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0) {
        json_object_put(o);
        return vb_seterr(e, -EBADMSG, "%s is damaged (no gc generation)", path);
    }
    *gen = (uint64_t)json_object_get_int64(v);
    json_object_put(o);
    return 0;
}

int vb_repo_gc_advance(struct vb_repo *r, uint64_t *gen, vb_error *e)
{
    int ret = vb_repo_gc_generation(r, gen, e);

    if (ret)
        return ret;
    return vb_repo_gc_set(r, ++*gen, e);
}

int vb_repo_gc_set(struct vb_repo *r, uint64_t gen, vb_error *e)
{
    char path[PATH_MAX], t[40];
    json_object *o;
    int ret;

    vb_fmt_time(vb_wall_ns(), t, sizeof(t));
    o = json_object_new_object();
    json_object_object_add(o, "generation", json_object_new_int64((int64_t)gen));
    json_object_object_add(o, "started", json_object_new_string(t));
    snprintf(path, sizeof(path), "%s/" GC_FILE, r->path);
    ret = vb_write_file_atomic(path, json_object_to_json_string(o),
                               strlen(json_object_to_json_string(o)), false, e);
    json_object_put(o);
    return ret;
}

/* ---- chunks ----------------------------------------------------------------------- */

void vb_repo_chunk_relpath(const uint8_t id[VB_ID_LEN], char out[80])
{
    char hex[VB_ID_HEX];

    vb_hex(id, VB_ID_LEN, hex);
    snprintf(out, 80, "%.*s/%s", VB_FANOUT, hex, hex);
}

bool vb_repo_has_chunk(struct vb_repo *r, const uint8_t id[VB_ID_LEN])
{
    struct stat st;
    char rel[80];
    bool has;
    int fd;

    /* a file longer than a header: not an empty name left by a crash; and
     * in the repository, not behind a symlinked fan-out folder */
    vb_repo_chunk_relpath(id, rel);
    fd = vb_repo_openat(r->chunks_fd, rel, O_PATH, 0);
    if (fd < 0)
        return false;
    has = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > VB_CHUNK_HDR;
    close(fd);
    return has;
}

/* The fan-out folder of a chunk (chunks/ab), made when missing; an fd or -errno. */
static int fanout_dir(struct vb_repo *r, const char *rel, bool create)
{
    char dir[VB_FANOUT + 1];
    int fd;

    memcpy(dir, rel, VB_FANOUT);
    dir[VB_FANOUT] = 0;
    fd = vb_repo_openat(r->chunks_fd, dir, O_RDONLY | O_DIRECTORY, 0);
    if (fd == -ENOENT && create) {
        if (mkdirat(r->chunks_fd, dir, 0700) < 0 && errno != EEXIST)
            return -errno;
        fd = vb_repo_openat(r->chunks_fd, dir, O_RDONLY | O_DIRECTORY, 0);
    }
    return fd;
}

int vb_repo_put_chunk(struct vb_repo *r, const uint8_t id[VB_ID_LEN], const uint8_t *enc,
                      size_t enc_len, bool *added, vb_error *e)
{
    char rel[80], tmp[128];
    const char *name = rel + VB_FANOUT + 1;
    static __thread unsigned long seq;
    int dfd, fd, ret;

    *added = false;
    vb_repo_chunk_relpath(id, rel);
    /* everything happens in the fan-out folder, opened without following a symlink */
    dfd = fanout_dir(r, rel, true);
    if (dfd < 0)
        return vb_seterr(e, dfd, "open %s/chunks/%.*s: %s", r->path, VB_FANOUT, rel,
                         vb_repo_strerror(dfd));
    snprintf(tmp, sizeof(tmp), ".tmp-%.16s-%d-%lx-%lu", name, (int)getpid(),
             (unsigned long)gettid(), seq++);
    fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        ret = vb_seterr(e, -errno, "create %s/chunks/%.*s/%s: %s", r->path, VB_FANOUT, rel, tmp,
                        strerror(errno));
        close(dfd);
        return ret;
    }
    ret = vb_write_all(fd, enc, enc_len);
    /* start writeback now, so the syncfs before the commit has little left */
    if (!ret)
        sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
    if (close(fd) < 0 && !ret)
        ret = -errno;
    if (ret) {
        unlinkat(dfd, tmp, 0);
        close(dfd);
        return vb_seterr(e, ret, "write %s/chunks/%s: %s", r->path, rel, strerror(-ret));
    }
    if (renameat2(dfd, tmp, dfd, name, RENAME_NOREPLACE) < 0) {
        ret = -errno;
        /* a file too short to be a chunk is what a power cut leaves of one
         * whose data never reached the disk: replaced by this complete one */
        if (ret == -EEXIST && !vb_repo_has_chunk(r, id)) {
            if (renameat(dfd, tmp, dfd, name) == 0) {
                close(dfd);
                *added = true;
                return 0;
            }
            ret = -errno;
        }
        unlinkat(dfd, tmp, 0);
        close(dfd);
        if (ret == -EEXIST)
            return 0;       /* written by a concurrent backup meanwhile */
        return vb_seterr(e, ret, "rename %s/chunks/%s: %s", r->path, rel, strerror(-ret));
    }
    close(dfd);
    *added = true;
    return 0;
}

int vb_repo_set_aside_chunk(struct vb_repo *r, const uint8_t id[VB_ID_LEN], char *name,
                            size_t name_len, vb_error *e)
{
    char rel[80], bad[96];
    const char *base = rel + VB_FANOUT + 1;
    int dfd, ret;

    vb_repo_chunk_relpath(id, rel);
    /* in the fan-out folder, opened without following a symlink */
    dfd = fanout_dir(r, rel, false);
    if (dfd < 0)
        return vb_seterr(e, dfd, "open %s/chunks/%.*s: %s", r->path, VB_FANOUT, rel,
                         vb_repo_strerror(dfd));
    for (int n = 1; n < 1000; n++) {
        if (n == 1)
            snprintf(bad, sizeof(bad), "%s.bad", base);
        else
            snprintf(bad, sizeof(bad), "%s.bad-%d", base, n);
        if (renameat2(dfd, base, dfd, bad, RENAME_NOREPLACE) == 0) {
            if (name)
                snprintf(name, name_len, "chunks/%.*s/%s", VB_FANOUT, rel, bad);
            close(dfd);
            return 0;
        }
        if (errno != EEXIST) {
            ret = vb_seterr(e, -errno, "rename %s/chunks/%s to %s: %s", r->path, rel, bad,
                            strerror(errno));
            close(dfd);
            return ret;
        }
    }
    close(dfd);
    return vb_seterr(e, -EEXIST, "rename %s/chunks/%s: 999 damaged copies are kept already",
                     r->path, rel);
}

int vb_repo_read_chunk(struct vb_repo *r, const uint8_t id[VB_ID_LEN], uint8_t **buf,
                       size_t *cap, size_t *len, vb_error *e)
{
    char rel[80];
    struct stat st;
    int fd, ret;

    vb_repo_chunk_relpath(id, rel);
    fd = vb_repo_openat(r->chunks_fd, rel, O_RDONLY, 0);
    if (fd < 0)
        return vb_seterr(e, fd, "chunk %s: %s", rel + VB_FANOUT + 1,
                         fd == -ENOENT ? "missing from the repository" : vb_repo_strerror(fd));
    if (fstat(fd, &st) < 0) {
        ret = vb_seterr(e, -errno, "stat chunk %s: %s", rel + VB_FANOUT + 1, strerror(errno));
        close(fd);
        return ret;
    }
    if ((uint64_t)st.st_size > VB_CHUNK_HDR + (uint64_t)VB_CHUNK_MAX + 1024) {
        close(fd);
        return vb_seterr(e, -EBADMSG, "chunk %s: file of %lld bytes is too large", rel + VB_FANOUT + 1,
                         (long long)st.st_size);
    }
    if (*cap < (size_t)st.st_size || !*buf) {
        uint8_t *p = realloc(*buf, VB_MAX((size_t)st.st_size, (size_t)1));
        if (!p) {
            close(fd);
            return vb_seterr(e, -ENOMEM, "out of memory");
        }
        *buf = p;
        *cap = VB_MAX((size_t)st.st_size, (size_t)1);
    }
    ret = vb_pread_all(fd, *buf, (size_t)st.st_size, 0);
    close(fd);
    if (ret)
        return vb_seterr(e, ret, "read chunk %s: %s", rel + VB_FANOUT + 1, strerror(-ret));
    *len = (size_t)st.st_size;
    return 0;
}

int vb_repo_get_chunk(struct vb_repo *r, struct vb_codec *c, const struct vb_idspace *sp,
                      const uint8_t id[VB_ID_LEN], void *out, size_t cap, size_t *plain_len,
                      vb_error *e)
{
    size_t len;
    int ret = vb_repo_read_chunk(r, id, &c->rbuf, &c->rcap, &len, e);

    if (ret)
        return ret;
    ret = vb_chunk_decode(c, c->rbuf, len, sp, id, out, cap, plain_len, e);
    if (ret) {
        char hex[VB_ID_HEX];
        vb_hex(id, VB_ID_LEN, hex);
        vb_prefixerr(e, "chunk %s", hex);
    }
    return ret;
}

int vb_repo_sync(struct vb_repo *r, vb_error *e)
{
    if (syncfs(r->dirfd) < 0)
        return vb_seterr(e, -errno, "syncfs %s: %s", r->path, strerror(errno));
    return 0;
}
