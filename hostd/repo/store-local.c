/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A store in a local folder (store.h has the semantics every store keeps).
 *
 * Confinement.  Everything is reached from one directory fd of the
 * repository's root, through openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
 * RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV), or, on a kernel without openat2
 * (ENOSYS only), one component at a time with O_NOFOLLOW | O_DIRECTORY and a
 * check of the file system.  Objects are created, renamed and removed only
 * by a single name relative to a folder fd resolved that way.  So a symbolic
 * link, a mount point, a file where a folder belongs or a folder, FIFO or
 * device where an object belongs is an error that names it, and nothing
 * outside the root is ever read, written or removed.  The root path itself
 * is the administrator's and may go through links.
 *
 * Writes.  put writes a unique temporary file ".tmp-<16 hex>" in the
 * object's folder (created on demand, 0700), then renames it into place
 * (renameat2(RENAME_NOREPLACE) for VB_PUT_NOREPLACE, else renameat).  Every
 * failure removes the temporary file; one left by a crash is skipped by
 * list and removed by vb_store_clean_temp.
 *
 * Durability (the v1 rule, docs/repository.md "Crash safety": one flush per
 * commit, not one per object):
 *   - when put returns 0 the object is visible, whole, to every reader; but
 *     after a crash (power loss, kernel panic; not a killed process) before
 *     the next successful sync it may be missing, or present and empty or
 *     shorter;
 *   - when sync returns 0, every put and remove that returned before sync
 *     was called is durable: syncfs() of the root's file system (which
 *     reports write-back errors since the store was opened, Linux >= 5.8),
 *     then fsync() of each folder whose entries changed since the last
 *     successful sync;
 *   - VB_PUT_SYNC: the file is fsynced before the rename and its folder and
 *     every folder above it after, so the object is durable, whole, when
 *     put returns, and after a crash its name holds all of it or nothing;
 *   - a failed sync (or VB_PUT_SYNC put) means objects written since the
 *     last successful sync may be lost; retrying it proves nothing (the
 *     kernel reports a write-back error once).
 *
 * Read-only repositories (a read-only mount, no write permission) open and
 * serve get, stat and list; writes fail with the file system's error, EROFS
 * as "repository is read-only".
 */
#include "store-backend.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "names.h"

#define TMP_PREFIX   ".tmp-"
#define RESOLVE_FLAGS (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | \
                       RESOLVE_NO_XDEV)

struct lo {
    int root;                /* O_RDONLY | O_DIRECTORY fd of the repository folder */
    dev_t dev;               /* its file system; nothing beneath it is on another */
    char *path;              /* for messages */
    bool openat2;            /* the kernel has openat2 */
    GMutex lock;             /* guards dirty */
    GHashTable *dirty;       /* folders ("" = root) whose entries changed since the last sync */
};

static bool test_no_openat2;

void vb_store_local_test_no_openat2(bool on)
{
    test_no_openat2 = on;
}

static const char *type_name(mode_t m)
{
    switch (m & S_IFMT) {
    case S_IFDIR: return "a folder";
    case S_IFLNK: return "a symbolic link";
    case S_IFIFO: return "a FIFO";
    case S_IFSOCK: return "a socket";
    case S_IFCHR: return "a character device";
    case S_IFBLK: return "a block device";
    case S_IFREG: return "a file";
    }
    return "of an unknown type";
}

static int64_t mtime_ns(const struct stat *st)
{
    return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

/* Split "a/b/c" into folder "a/b" and leaf "c" ("config": "" and "config"). */
static void split_name(const char *name, char dir[VB_OBJ_NAME_MAX], const char **leaf)
{
    const char *slash = strrchr(name, '/');
    size_t n = slash ? (size_t)(slash - name) : 0;

    memcpy(dir, name, n);
    dir[n] = 0;
    *leaf = slash ? slash + 1 : name;
}

/* ---- resolving names beneath the root ---------------------------------- */

static int open_beneath_openat2(int base, const char *rel, int flags)
{
    struct open_how how = {
        .flags = (uint64_t)(flags | O_CLOEXEC),
        .resolve = RESOLVE_FLAGS,
    };

    for (int tries = 0;; tries++) {
        long fd = syscall(SYS_openat2, base, rel, &how, sizeof(how));
        if (fd >= 0)
            return (int)fd;
        /* EAGAIN: a rename or mount raced with the lookup */
        if ((errno != EAGAIN || tries >= 8) && errno != EINTR)
            return -errno;
    }
}

static int check_fs(struct lo *lo, int fd, bool allow_link)
{
    struct stat st;

    if (fstat(fd, &st) < 0)
        return -errno;
    if (st.st_dev != lo->dev)
        return -EXDEV;
    if (!allow_link && S_ISLNK(st.st_mode))
        return -ELOOP;
    return 0;
}

/* Without openat2: one component at a time, never following a link. */
static int open_beneath_walk(struct lo *lo, int base, const char *rel, int flags)
{
    char comp[VB_OBJ_NAME_MAX];
    const char *p = rel;
    int cur = base, fd, ret;

    for (;;) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        bool last = !slash;

        if (n >= sizeof(comp)) {
            ret = -ENAMETOOLONG;
            break;
        }
        memcpy(comp, p, n);
        comp[n] = 0;
        if (last)
            fd = openat(cur, comp, flags | O_NOFOLLOW | O_CLOEXEC);
        else
            fd = openat(cur, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        ret = fd < 0 ? -errno : check_fs(lo, fd, false);
        if (ret == -ENOTDIR) {
            /* O_DIRECTORY | O_NOFOLLOW on a link says ENOTDIR; openat2 says ELOOP */
            struct stat st;
            if (fstatat(cur, comp, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
                ret = -ELOOP;
        }
        if (ret && fd >= 0)
            close(fd);
        if (cur != base)
            close(cur);
        if (ret)
            return ret;
        if (last)
            return fd;
        cur = fd;
        p = slash + 1;
    }
    if (cur != base)
        close(cur);
    return ret;
}

/* Open rel (a name or folder relative to base, "" for base itself). */
static int open_beneath(struct lo *lo, int base, const char *rel, int flags)
{
    if (!rel[0])
        rel = ".";
    if (lo->openat2)
        return open_beneath_openat2(base, rel, flags);
    return open_beneath_walk(lo, base, rel, flags);
}

/*
 * Why name could not be opened: the first component that is a symbolic
 * link, on another file system, or not a folder; or the last one when it is
 * not what was wanted (an object: a regular file; else a folder).
 */
static bool explain(struct lo *lo, const char *name, bool want_object, char *why, size_t cap)
{
    char part[VB_OBJ_NAME_MAX], comp[VB_OBJ_NAME_MAX];
    const char *p = name;
    int cur = lo->root;
    bool found = false;
    struct stat st;

    while (*name) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        size_t upto = (size_t)(p - name) + n;
        bool last = !slash;
        int next;

        if (n >= sizeof(comp) || upto >= sizeof(part))
            break;
        memcpy(comp, p, n);
        comp[n] = 0;
        memcpy(part, name, upto);
        part[upto] = 0;
        if (fstatat(cur, comp, &st, AT_SYMLINK_NOFOLLOW) < 0)
            break;
        if (S_ISLNK(st.st_mode)) {
            snprintf(why, cap, "%s is a symbolic link, which a repository never follows", part);
            found = true;
        } else if (st.st_dev != lo->dev) {
            snprintf(why, cap, "%s is a mount point (a repository is one file system)", part);
            found = true;
        } else if ((!last || !want_object) && !S_ISDIR(st.st_mode)) {
            snprintf(why, cap, "%s is %s, not a folder", part, type_name(st.st_mode));
            found = true;
        } else if (last && want_object && !S_ISREG(st.st_mode)) {
            snprintf(why, cap, "%s is %s, not an object", part, type_name(st.st_mode));
            found = true;
        }
        if (found || last)
            break;
        next = openat(cur, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (cur != lo->root)
            close(cur);
        cur = next;
        if (cur < 0)
            return false;
        p = slash + 1;
    }
    if (cur != lo->root)
        close(cur);
    return found;
}

/* Fill e for a failure of op on name (an object, or a folder when !object). */
static int fail(struct lo *lo, vb_error *e, int err, const char *op, const char *name,
                bool object)
{
    char why[300];

    if (err == -EROFS)
        return vb_seterr(e, err, "%s %s: repository is read-only", op, name);
    if (err == -EACCES || err == -EPERM)
        return vb_seterr(e, err, "%s %s: permission denied", op, name);
    if (err == -ENOENT && object)
        return vb_seterr(e, err, "%s %s: no such object", op, name);
    if (err != -ENOENT && explain(lo, name, object, why, sizeof(why)))
        return vb_seterr(e, err, "%s %s: %s", op, name, why);
    return vb_seterr(e, err, "%s %s: %s", op, name, strerror(-err));
}

/*
 * Open an object: an O_PATH fd (!for_read) or one to read, and its stat.
 * O_PATH first, so that a FIFO or a device in place of an object is never
 * opened; then the object is opened again and must be the same file (an
 * object replaced meanwhile by a put is simply tried again).
 */
static int open_object(struct lo *lo, const char *op, const char *name, struct stat *st,
                       bool for_read, vb_error *e)
{
    for (int tries = 0;; tries++) {
        struct stat st2;
        int fd, rfd;

        fd = open_beneath(lo, lo->root, name, O_PATH);
        if (fd < 0)
            return fail(lo, e, fd, op, name, true);
        if (fstat(fd, st) < 0) {
            int ret = vb_seterr(e, -errno, "%s %s: fstat: %s", op, name, strerror(errno));
            close(fd);
            return ret;
        }
        if (!S_ISREG(st->st_mode)) {
            close(fd);
            return vb_seterr(e, -EBADMSG, "%s %s: %s is %s, not an object", op, name, name,
                             type_name(st->st_mode));
        }
        if (!for_read)
            return fd;
        rfd = open_beneath(lo, lo->root, name, O_RDONLY | O_NONBLOCK | O_NOCTTY);
        close(fd);
        if (rfd < 0 && rfd != -ENOENT)
            return fail(lo, e, rfd, op, name, true);
        if (rfd >= 0 && fstat(rfd, &st2) == 0 && st2.st_ino == st->st_ino &&
            st2.st_dev == st->st_dev) {
            *st = st2;
            return rfd;
        }
        if (rfd >= 0)
            close(rfd);
        if (tries >= 3)
            return vb_seterr(e, -EAGAIN, "%s %s: replaced again and again while being opened",
                             op, name);
    }
}

/* ---- folders changed since the last sync -------------------------------- */

static void mark_dirty(struct lo *lo, const char *dir)
{
    g_mutex_lock(&lo->lock);
    if (!g_hash_table_contains(lo->dirty, dir))
        g_hash_table_add(lo->dirty, g_strdup(dir));
    g_mutex_unlock(&lo->lock);
}

/*
 * Open folder dir ("" = root) of object name, creating what is missing
 * (0700) when create.  Each new folder's parent is marked for the next sync.
 */
static int open_folder(struct lo *lo, const char *op, const char *name, const char *dir,
                       bool create, vb_error *e)
{
    char comp[VB_OBJ_NAME_MAX], parent[VB_OBJ_NAME_MAX];
    const char *p = dir;
    int fd, cur;

    fd = open_beneath(lo, lo->root, dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0)
        return fd;
    if (fd != -ENOENT || !create)
        return fail(lo, e, fd, op, name, true);
    /* create it one component at a time, each resolved like any other name */
    cur = lo->root;
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        int next;

        memcpy(comp, p, n);
        comp[n] = 0;
        next = open_beneath(lo, cur, comp, O_RDONLY | O_DIRECTORY);
        if (next == -ENOENT) {
            if (mkdirat(cur, comp, 0700) == 0) {
                size_t plen = p > dir ? (size_t)(p - dir) - 1 : 0;
                memcpy(parent, dir, plen);
                parent[plen] = 0;
                mark_dirty(lo, parent);
                next = open_beneath(lo, cur, comp, O_RDONLY | O_DIRECTORY);
            } else if (errno == EEXIST) {
                next = open_beneath(lo, cur, comp, O_RDONLY | O_DIRECTORY);
            } else {
                next = -errno;
            }
        }
        if (cur != lo->root)
            close(cur);
        if (next < 0)
            return fail(lo, e, next, op, name, true);
        cur = next;
        if (!slash)
            return cur;
        p = slash + 1;
    }
}

/* fsync folder dir ("" = root) */
static int fsync_folder(struct lo *lo, const char *dir, vb_error *e)
{
    int fd = open_beneath(lo, lo->root, dir, O_RDONLY | O_DIRECTORY), ret = 0;

    if (fd < 0)
        return fail(lo, e, fd, "sync", dir[0] ? dir : ".", false);
    if (fsync(fd) < 0)
        ret = vb_seterr(e, -errno, "sync: fsync %s/%s: %s", lo->path, dir, strerror(errno));
    close(fd);
    return ret;
}

/* ---- operations ---------------------------------------------------------- */

static int random_hex(char *out, size_t bytes)
{
    uint8_t r[32];

    if (bytes > sizeof(r))
        return -EINVAL;
    for (size_t got = 0; got < bytes;) {
        ssize_t n = getrandom(r + got, bytes - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        got += (size_t)n;
    }
    vb_hex(r, bytes, out);
    return 0;
}

static int lo_put(void *h, const char *name, const void *buf, size_t len, unsigned flags,
                  vb_error *e)
{
    struct lo *lo = h;
    char dir[VB_OBJ_NAME_MAX], tmp[sizeof(TMP_PREFIX) + 16];
    const char *leaf;
    struct stat st;
    int dfd, fd, ret;

    split_name(name, dir, &leaf);
    dfd = open_folder(lo, "put", name, dir, true, e);
    if (dfd < 0)
        return dfd;
    /* what is there already: never replace anything but an object */
    if (fstatat(dfd, leaf, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (!S_ISREG(st.st_mode)) {
            ret = vb_seterr(e, S_ISLNK(st.st_mode) ? -ELOOP : -EBADMSG,
                            "put %s: %s is %s%s", name, name, type_name(st.st_mode),
                            S_ISLNK(st.st_mode) ? ", which a repository never follows"
                                                : ", not an object");
            goto out;
        }
        if (flags & VB_PUT_NOREPLACE) {
            ret = vb_seterr(e, -EEXIST, "put %s: object exists", name);
            goto out;
        }
    } else if (errno != ENOENT) {
        ret = vb_seterr(e, -errno, "put %s: %s", name, strerror(errno));
        goto out;
    }
    memcpy(tmp, TMP_PREFIX, strlen(TMP_PREFIX));
    for (int tries = 0;; tries++) {
        ret = random_hex(tmp + strlen(TMP_PREFIX), 8);
        if (ret) {
            vb_seterr(e, ret, "put %s: getrandom: %s", name, strerror(-ret));
            goto out;
        }
        fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd >= 0)
            break;
        /* EEXIST here is a temporary name taken (never "object exists") */
        if (errno != EEXIST || tries >= 3) {
            ret = fail(lo, e, errno == EEXIST ? -EIO : -errno, "put", name, true);
            goto out;
        }
    }
    ret = vb_write_all(fd, buf, len);
    if (!ret && (flags & VB_PUT_SYNC) && fsync(fd) < 0)
        ret = -errno;
    /* otherwise start write-back now, so that sync has little left to do */
    if (!ret && !(flags & VB_PUT_SYNC) && len &&
        sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE) < 0)
        ret = -errno;
    if (close(fd) < 0 && !ret)
        ret = -errno;
    if (ret) {
        unlinkat(dfd, tmp, 0);
        fail(lo, e, ret, "put", name, true);
        goto out;
    }
    if (flags & VB_PUT_NOREPLACE) {
        ret = renameat2(dfd, tmp, dfd, leaf, RENAME_NOREPLACE) < 0 ? -errno : 0;
        if (ret == -EINVAL) {
            /* a file system without RENAME_NOREPLACE: link does not replace either */
            ret = linkat(dfd, tmp, dfd, leaf, 0) < 0 ? -errno : 0;
            unlinkat(dfd, tmp, 0);
        }
    } else {
        ret = renameat(dfd, tmp, dfd, leaf) < 0 ? -errno : 0;
    }
    if (ret)
        unlinkat(dfd, tmp, 0);
    if (ret == -EEXIST) {
        vb_seterr(e, ret, "put %s: object exists", name);
        goto out;
    }
    if (ret) {
        vb_seterr(e, ret, "put %s: rename: %s", name,
                  ret == -EROFS ? "repository is read-only" : strerror(-ret));
        goto out;
    }
    mark_dirty(lo, dir);
    if (flags & VB_PUT_SYNC) {
        /* the object's folder and every folder above it */
        if (fsync(dfd) < 0) {
            ret = vb_seterr(e, -errno, "put %s: fsync %s/%s: %s", name, lo->path, dir,
                            strerror(errno));
            goto out;
        }
        while (dir[0]) {
            char *slash = strrchr(dir, '/');
            if (slash)
                *slash = 0;
            else
                dir[0] = 0;
            ret = fsync_folder(lo, dir, e);
            if (ret) {
                vb_prefixerr(e, "put %s", name);
                goto out;
            }
        }
    }
out:
    close(dfd);
    return ret;
}

static int lo_get(void *h, const char *name, uint64_t off, size_t len, GByteArray *out,
                  vb_error *e)
{
    struct lo *lo = h;
    struct stat st;
    int fd = open_object(lo, "get", name, &st, true, e), ret;

    if (fd < 0)
        return fd;
    if (off > (uint64_t)st.st_size || len > (uint64_t)st.st_size - off) {
        ret = vb_seterr(e, -EIO, "get %s: object is shorter than expected (%lld bytes, "
                        "%zu wanted at %llu)", name, (long long)st.st_size, len,
                        (unsigned long long)off);
        goto out;
    }
    g_byte_array_set_size(out, (guint)len);
    ret = vb_pread_all(fd, out->data, len, off);
    if (ret == -EIO)
        vb_seterr(e, ret, "get %s: object is shorter than expected (it shrank while read)",
                  name);
    else if (ret)
        vb_seterr(e, ret, "get %s: read: %s", name, strerror(-ret));
out:
    close(fd);
    return ret;
}

static int lo_stat(void *h, const char *name, struct vb_obj_info *info, vb_error *e)
{
    struct lo *lo = h;
    struct stat st;
    int fd = open_object(lo, "stat", name, &st, false, e);

    if (fd < 0)
        return fd;
    close(fd);
    info->size = (uint64_t)st.st_size;
    info->mtime_ns = mtime_ns(&st);
    return 0;
}

static int lo_remove(void *h, const char *name, vb_error *e)
{
    struct lo *lo = h;
    char dir[VB_OBJ_NAME_MAX];
    const char *leaf;
    struct stat st;
    int dfd, ret = 0;

    split_name(name, dir, &leaf);
    dfd = open_beneath(lo, lo->root, dir, O_RDONLY | O_DIRECTORY);
    if (dfd < 0)
        return fail(lo, e, dfd, "remove", name, true);
    if (fstatat(dfd, leaf, &st, AT_SYMLINK_NOFOLLOW) < 0)
        ret = fail(lo, e, -errno, "remove", name, true);
    else if (!S_ISREG(st.st_mode))
        ret = vb_seterr(e, S_ISLNK(st.st_mode) ? -ELOOP : -EBADMSG, "remove %s: %s is %s, %s",
                        name, name, type_name(st.st_mode),
                        S_ISLNK(st.st_mode) ? "which a repository never follows or removes"
                                            : "not an object");
    else if (unlinkat(dfd, leaf, 0) < 0)
        ret = fail(lo, e, -errno, "remove", name, true);
    else
        mark_dirty(lo, dir);
    close(dfd);
    return ret;
}

static int lo_sync(void *h, vb_error *e)
{
    struct lo *lo = h;
    GHashTable *dirty;
    GHashTableIter it;
    gpointer dir;
    int ret = 0;

    g_mutex_lock(&lo->lock);
    dirty = lo->dirty;
    lo->dirty = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    g_mutex_unlock(&lo->lock);

    if (syncfs(lo->root) < 0)
        ret = vb_seterr(e, -errno, "sync: syncfs %s: %s", lo->path, strerror(errno));
    g_hash_table_iter_init(&it, dirty);
    while (!ret && g_hash_table_iter_next(&it, &dir, NULL))
        ret = fsync_folder(lo, dir, e);
    if (ret) {
        /* keep them for the next sync */
        g_mutex_lock(&lo->lock);
        g_hash_table_iter_init(&it, dirty);
        while (g_hash_table_iter_next(&it, &dir, NULL))
            if (!g_hash_table_contains(lo->dirty, dir))
                g_hash_table_add(lo->dirty, g_strdup(dir));
        g_mutex_unlock(&lo->lock);
    }
    g_hash_table_destroy(dirty);
    return ret;
}

/* ---- walking folders: list and clean_temp ------------------------------- */

struct walk {
    struct lo *lo;
    const char *op;          /* "list PREFIX" or "clean" */
    const char *leafpre;     /* entries of the first folder must start with this */
    vb_list_fn fn;           /* list */
    void *opaque;
    bool clean;              /* clean_temp */
    int64_t cutoff_ns;
    unsigned *removed;
};

/* Walk the folder open as fd (closed here), whose name is dir ("" = root). */
static int walk_folder(struct walk *w, int fd, const char *dir, bool top, vb_error *e)
{
    DIR *d = fdopendir(fd);
    int ret = 0;

    if (!d) {
        ret = vb_seterr(e, -errno, "%s: %s: %s", w->op, dir[0] ? dir : ".", strerror(errno));
        close(fd);
        return ret;
    }
    for (;;) {
        char child[VB_OBJ_NAME_MAX];
        struct dirent *de;
        struct stat st;
        bool is_tmp;
        int n;

        errno = 0;
        de = readdir(d);
        if (!de) {
            if (errno)
                ret = vb_seterr(e, -errno, "%s: read folder %s: %s", w->op, dir[0] ? dir : ".",
                                strerror(errno));
            break;
        }
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        is_tmp = !strncmp(de->d_name, TMP_PREFIX, strlen(TMP_PREFIX));
        if (!w->clean && is_tmp)
            continue;
        if (top && !w->clean && strncmp(de->d_name, w->leafpre, strlen(w->leafpre)))
            continue;
        n = snprintf(child, sizeof(child), "%s%s%s", dir, dir[0] ? "/" : "", de->d_name);
        if (n < 0 || (size_t)n >= sizeof(child)) {
            ret = vb_seterr(e, -EBADMSG, "%s: %s/%.40s...: name too long for an object",
                            w->op, dir[0] ? dir : ".", de->d_name);
            break;
        }
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            if (errno == ENOENT)
                continue;       /* removed since readdir */
            ret = vb_seterr(e, -errno, "%s: %s: %s", w->op, child, strerror(errno));
            break;
        }
        if (st.st_dev != w->lo->dev) {
            ret = vb_seterr(e, -EXDEV, "%s: %s is a mount point (a repository is one file "
                            "system)", w->op, child);
            break;
        }
        if (S_ISDIR(st.st_mode) && !is_tmp) {
            int sub = openat(dirfd(d), de->d_name,
                             O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0 && errno == ENOENT)
                continue;
            if (sub < 0) {
                ret = vb_seterr(e, -errno, "%s: open folder %s: %s", w->op, child,
                                strerror(errno));
                break;
            }
            ret = walk_folder(w, sub, child, false, e);
            if (ret)
                break;
            continue;
        }
        if (!S_ISREG(st.st_mode)) {
            ret = vb_seterr(e, S_ISLNK(st.st_mode) ? -ELOOP : -EBADMSG, "%s: %s is %s, %s",
                            w->op, child, type_name(st.st_mode),
                            S_ISLNK(st.st_mode) ? "which a repository never follows"
                                                : "not an object");
            break;
        }
        if (w->clean) {
            if (!is_tmp || mtime_ns(&st) >= w->cutoff_ns)
                continue;
            if (unlinkat(dirfd(d), de->d_name, 0) < 0 && errno != ENOENT) {
                ret = vb_seterr(e, -errno, "%s: remove %s: %s", w->op, child,
                                errno == EROFS ? "repository is read-only" : strerror(errno));
                break;
            }
            mark_dirty(w->lo, dir);
            (*w->removed)++;
            continue;
        }
        ret = w->fn(w->opaque, child, &(struct vb_obj_info){ (uint64_t)st.st_size,
                                                              mtime_ns(&st) }, e);
        if (ret)
            break;
    }
    closedir(d);
    return ret;
}

static int lo_list(void *h, const char *prefix, vb_list_fn fn, void *opaque, vb_error *e)
{
    struct lo *lo = h;
    char dir[VB_OBJ_NAME_MAX], op[VB_OBJ_NAME_MAX + 8];
    struct walk w = { .lo = lo, .op = op, .fn = fn, .opaque = opaque };
    int fd;

    snprintf(op, sizeof(op), "list %s", prefix[0] ? prefix : "(everything)");
    split_name(prefix, dir, &w.leafpre);
    fd = open_beneath(lo, lo->root, dir, O_RDONLY | O_DIRECTORY);
    if (fd == -ENOENT)
        return 0;       /* no folder, no objects (as on object storage) */
    if (fd < 0)
        return fail(lo, e, fd, "list", dir, false);
    return walk_folder(&w, fd, dir, true, e);
}

static int lo_clean_temp(void *h, int64_t cutoff_ns, unsigned *removed, vb_error *e)
{
    struct lo *lo = h;
    struct walk w = { .lo = lo, .op = "clean", .leafpre = "", .clean = true,
                      .cutoff_ns = cutoff_ns, .removed = removed };
    int fd = open_beneath(lo, lo->root, "", O_RDONLY | O_DIRECTORY);

    if (fd < 0)
        return vb_seterr(e, fd, "clean: open %s: %s", lo->path, strerror(-fd));
    return walk_folder(&w, fd, "", true, e);
}

static void lo_close(void *h)
{
    struct lo *lo = h;

    if (!lo)
        return;
    if (lo->root >= 0)
        close(lo->root);
    if (lo->dirty)
        g_hash_table_destroy(lo->dirty);
    g_mutex_clear(&lo->lock);
    free(lo->path);
    free(lo);
}

static const struct vb_store_ops local_ops = {
    .name = "local",
    .put = lo_put,
    .get = lo_get,
    .stat = lo_stat,
    .list = lo_list,
    .remove = lo_remove,
    .sync = lo_sync,
    .clean_temp = lo_clean_temp,
    .close = lo_close,
    .caps = VB_STORE_NOREPLACE,
};

int vb_store_local_open(const char *path, unsigned flags, const struct vb_store_ops **ops,
                        void **h, vb_error *e)
{
    struct lo *lo = calloc(1, sizeof(*lo));
    struct stat st;
    int ret;

    if (!lo)
        return vb_seterr(e, -ENOMEM, "open repository %s: out of memory", path);
    lo->root = -1;
    g_mutex_init(&lo->lock);
    lo->dirty = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    lo->path = strdup(path);
    if (!lo->path) {
        ret = vb_seterr(e, -ENOMEM, "open repository %s: out of memory", path);
        goto fail;
    }
    if (flags & VB_STORE_CREATE) {
        ret = vb_mkdir_p(path, 0700);
        if (ret) {
            vb_seterr(e, ret, ret == -EROFS ? "create repository %s: read-only file system"
                      : "create repository %s: %s", path, strerror(-ret));
            goto fail;
        }
    }
    /* O_RDONLY: a read-only repository opens; writes fail one by one */
    lo->root = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (lo->root < 0) {
        ret = vb_seterr(e, -errno, "open repository %s: %s", path,
                        errno == ENOTDIR ? "not a folder" : strerror(errno));
        goto fail;
    }
    if (fstat(lo->root, &st) < 0) {
        ret = vb_seterr(e, -errno, "open repository %s: fstat: %s", path, strerror(errno));
        goto fail;
    }
    lo->dev = st.st_dev;
    lo->openat2 = !test_no_openat2;
    if (lo->openat2) {
        ret = open_beneath_openat2(lo->root, ".", O_PATH);
        if (ret == -ENOSYS) {
            lo->openat2 = false;
        } else if (ret < 0) {
            vb_seterr(e, ret, "open repository %s: openat2: %s", path, strerror(-ret));
            goto fail;
        } else {
            close(ret);
        }
    }
    *ops = &local_ops;
    *h = lo;
    return 0;
fail:
    lo_close(lo);
    return ret;
}
