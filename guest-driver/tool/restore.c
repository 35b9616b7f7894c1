/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A file restore:
 *
 *   RESTORE_BEGIN -> job; RESTORE_LIST every entry; check them all;
 *   1. directories (parents first; mode 0700 while we fill them)
 *   2. regular files: created under a temporary name, RESTORE_READ in pieces
 *      by VBC_RESTORE_THREADS workers (holes skipped, so sparse files stay
 *      sparse; written zeros written, or left as holes with sparse; 4 KiB
 *      blocks of zeros in data too; preallocated ranges fallocated, past the
 *      size too; the size set with ftruncate), owner, extended attributes,
 *      mode, times (checked), renamed into place
 *   3. symlinks, fifos, sockets, device nodes (temporary name, rename)
 *   4. hard links (to the first link, by entry index)
 *   5. inode flags and project ids of regular files (after their links:
 *      immutable and append-only forbid links and times)
 *   6. directories' owner, extended attributes (default ACLs last, so that
 *      nothing restored inherits them), mode, times, flags, deepest first
 *   RESTORE_END.
 *
 * Nothing is created outside the destination, whatever the snapshot holds
 * and whatever a user of the guest planted in the destination: entry paths
 * are checked (relative, no "." or ".."), every entry's parent must be a
 * directory entry restored before it, and every path below the destination
 * is resolved without following any symlink (beneath.c: openat2 with
 * RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, or O_NOFOLLOW per component), the
 * folders above the restored entries included.  Entries are made and
 * changed relative to their parent's fd, never through a path that a symlink
 * could redirect; a hard link only points at a file this restore wrote.
 */
#include "vbc.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "beneath.h"
#include "fsmeta.h"

#define CHUNK           (8u << 20)       /* bytes of a file per work item */
#define QUEUE_MAX       64

struct rfile {
    int fd;
    int pfd;                     /* parent directory */
    size_t entry;
    char *name;                  /* last component */
    char tmp[64];
    unsigned pending;            /* chunks not yet done */
    bool failed;
};

struct chunk {
    struct rfile *f;
    uint64_t start, end;
};

struct rctx {
    struct vbc_conn *c;
    uint64_t job;
    struct vbc_entry *v;
    size_t n;
    int destfd;
    const char *dest;
    bool root;
    /* per entry */
    size_t *prefix;              /* index into pfx */
    const char **sub;            /* path below its prefix */
    bool *bad;                   /* refused or failed */
    dev_t *fdev;                 /* regular files: the file this restore wrote */
    ino_t *fino;
    /* prefixes: directories outside the entries that hold them */
    int *pfx_fd;
    char **pfx_path;
    size_t n_pfx;
    /* the parent directory opened last (entries come sorted: siblings follow
     * each other), so that a file in it costs one dup(), not one openat()
     * per path component */
    int pc_fd;
    size_t pc_prefix, pc_len;
    char *pc_key;
    /* work */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct chunk q[QUEUE_MAX];
    size_t qh, qn;
    bool closing;
    int fatal;
    struct vbc_err fatal_e;
    uint64_t bytes_done, errors, total;
    uint32_t piece;
    bool sparse;
    struct vbc_progress prog;
};

static void entry_error(struct rctx *r, size_t i, const char *what, int err)
{
    size_t pl = strlen(r->v[i].path);
    char *safe = malloc(pl * 4 + 1);

    if (safe)
        vbc_sanitize(safe, pl * 4 + 1, r->v[i].path, pl);
    pthread_mutex_lock(&r->lock);
    r->errors++;
    r->bad[i] = true;
    pthread_mutex_unlock(&r->lock);
    vbc_progress_clear(&r->prog);
    if (err)
        vbc_error("%s/%s: %s: %s", r->dest, safe ? safe : "?", what, strerror(err));
    else
        vbc_error("%s/%s: %s", r->dest, safe ? safe : "?", what);
    free(safe);
}

/* Gives FD (O_PATH when OPATH) the extended attributes of entry X, all
 * namespaces; 0, or -errno with a message in WHAT. */
static int set_xattrs(const struct vbc_entry *x, int fd, bool opath, char *what, size_t len)
{
    struct vb_xa xs[512], *v = xs;
    struct vb_xattr_view xv;
    size_t off = 0, n = 0;
    const char *step;
    char which[VB_MAX_XATTR_NAME + 1], shown[VB_MAX_XATTR_NAME * 4 + 1];
    int ret;

    if (x->n_xattrs > sizeof(xs) / sizeof(xs[0]) &&
        !(v = malloc(x->n_xattrs * sizeof(*v)))) {
        snprintf(what, len, "out of memory");
        return -ENOMEM;
    }
    while (x->xattrs && n < x->n_xattrs && vb_xattr_next(x->xattrs, x->xattr_len, &off, &xv)) {
        v[n].name = xv.name;
        v[n].name_len = xv.name_len;
        v[n].value = xv.value;
        v[n].value_len = xv.value_len;
        n++;
    }
    ret = vb_xa_apply(fd, opath, v, n, VB_XA_ALL, &step, which, sizeof(which));
    if (ret) {
        vbc_sanitize(shown, sizeof(shown), which, strlen(which));
        snprintf(what, len, "%s%s%s: %s", step, which[0] ? " " : "", shown, strerror(-ret));
    }
    if (v != xs)
        free(v);
    return ret;
}

static const char *times_error(int ret)
{
    return ret == -ERANGE ? "a time this file system cannot hold (it stored another)"
                          : "utimensat";
}

/* ---- paths ---------------------------------------------------------------------- */

struct ptab {
    const char **key;
    size_t *val;
    size_t cap;
};

static uint64_t fnv(const char *s)
{
    uint64_t h = 1469598103934665603ull;

    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static int ptab_init(struct ptab *t, size_t n)
{
    t->cap = 16;
    while (t->cap < n * 2)
        t->cap *= 2;
    t->key = calloc(t->cap, sizeof(*t->key));
    t->val = calloc(t->cap, sizeof(*t->val));
    return t->key && t->val ? 0 : -ENOMEM;
}

/* returns the existing value, or SIZE_MAX after inserting */
static size_t ptab_put(struct ptab *t, const char *k, size_t v)
{
    for (size_t i = fnv(k) & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
        if (!t->key[i]) {
            t->key[i] = k;
            t->val[i] = v;
            return SIZE_MAX;
        }
        if (strcmp(t->key[i], k) == 0)
            return t->val[i];
    }
}

static size_t ptab_get(const struct ptab *t, const char *k)
{
    for (size_t i = fnv(k) & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
        if (!t->key[i])
            return SIZE_MAX;
        if (strcmp(t->key[i], k) == 0)
            return t->val[i];
    }
}

/* mkdir -p REL under DIRFD, following existing symlinks: only for the
 * --into DIR the user named; returns an fd or -errno. */
static int open_prefix(int dirfd, const char *rel)
{
    char *copy = strdup(rel), *save = NULL, *comp;
    int fd = dup(dirfd);

    if (!copy || fd < 0) {
        free(copy);
        if (fd >= 0)
            close(fd);
        return -ENOMEM;
    }
    for (comp = strtok_r(copy, "/", &save); comp; comp = strtok_r(NULL, "/", &save)) {
        int nfd;

        if (mkdirat(fd, comp, 0755) < 0 && errno != EEXIST) {
            int err = errno;

            close(fd);
            free(copy);
            return -err;
        }
        nfd = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        close(fd);
        if (nfd < 0) {
            free(copy);
            return -errno;
        }
        fd = nfd;
    }
    free(copy);
    return fd;
}

/* The folder REL of the destination above the restored entries, made when
 * missing; never through a symlink (a user of the guest may have planted
 * one).  Returns an fd or -errno (-ELOOP: a symlink is in the way). */
static int open_dest_dir(int destfd, const char *rel)
{
    int fd;

    if (*rel)
        return vb_beneath_mkdirs(destfd, rel, strlen(rel), 0755);
    fd = dup(destfd);
    return fd < 0 ? -errno : fd;
}

static void parent_error(struct rctx *r, size_t i, int err)
{
    if (err == ELOOP)
        entry_error(r, i, "a symlink is in the way of its parent (not followed)", 0);
    else
        entry_error(r, i, "opening its parent", err);
}

/* The parent directory of entry I, opened without following any symlink
 * below its prefix; *name = its last component.  Returns an fd (to close)
 * or -errno. */
static int open_parent(struct rctx *r, size_t i, const char **name)
{
    const char *sub = r->sub[i], *slash = strrchr(sub, '/');
    size_t l = slash ? (size_t)(slash - sub) : 0;
    int fd;

    *name = slash ? slash + 1 : sub;
    if (slash && r->pc_fd >= 0 && r->pc_prefix == r->prefix[i] && r->pc_len == l &&
        !memcmp(r->pc_key, sub, l)) {
        fd = dup(r->pc_fd);
        return fd < 0 ? -errno : fd;
    }
    fd = dup(r->pfx_fd[r->prefix[i]]);
    if (fd < 0)
        return -errno;
    if (!slash)
        return fd;
    {
        int nfd = vb_beneath_open(fd, sub, l, O_RDONLY | O_DIRECTORY);

        close(fd);
        if (nfd < 0)
            return nfd;
        fd = nfd;
    }
    /* remember it: its path was resolved without following a symlink */
    if (r->pc_fd >= 0)
        close(r->pc_fd);
    free(r->pc_key);
    r->pc_key = strndup(sub, l);
    r->pc_fd = r->pc_key ? dup(fd) : -1;
    r->pc_len = l;
    r->pc_prefix = r->prefix[i];
    return fd;
}

static void ts_of(struct timespec ts[2], const struct vbc_entry *x)
{
    ts[0].tv_sec = (time_t)x->atime.sec;
    ts[0].tv_nsec = (long)x->atime.nsec;
    ts[1].tv_sec = (time_t)x->mtime.sec;
    ts[1].tv_nsec = (long)x->mtime.nsec;
}

/* Owner, extended attributes, mode, times of NAME in PFD, a symlink or
 * special file this restore just made with its mode (never following a
 * symlink).  -errno with WHAT set (a whole message when *shown). */
static int set_meta(struct rctx *r, int pfd, const char *name, const struct vbc_entry *x,
                    char *what, size_t len, bool *shown)
{
    struct timespec ts[2];
    int ret, fd;

    *shown = false;
    if (fchownat(pfd, name, x->uid, x->gid, AT_SYMLINK_NOFOLLOW) < 0 &&
        (r->root || (errno != EPERM && errno != EINVAL))) {
        snprintf(what, len, "chown");
        return -errno;
    }
    fd = openat(pfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        snprintf(what, len, "opening it for its extended attributes");
        return -errno;
    }
    ret = set_xattrs(x, fd, true, what, len);
    close(fd);
    if (ret) {
        *shown = true;
        return ret;
    }
    /* chown drops setuid/setgid bits: set them again, on NAME itself */
    if (x->type != VB_FT_SYMLINK && (x->mode & 06000) &&
        fchmodat(pfd, name, x->mode, AT_SYMLINK_NOFOLLOW) < 0) {
        snprintf(what, len, "chmod");
        return -errno;
    }
    ts_of(ts, x);
    if ((ret = vb_times_apply(pfd, name, ts))) {
        snprintf(what, len, "%s", times_error(ret));
        *shown = ret == -ERANGE;
        return ret;
    }
    return 0;
}

/* ---- check the entries ---------------------------------------------------------------- */

static int plan(struct rctx *r, struct vbc_err *e)
{
    struct ptab t, pt;
    size_t i;

    r->prefix = calloc(r->n ? r->n : 1, sizeof(*r->prefix));
    r->sub = calloc(r->n ? r->n : 1, sizeof(*r->sub));
    r->bad = calloc(r->n ? r->n : 1, sizeof(*r->bad));
    r->fdev = calloc(r->n ? r->n : 1, sizeof(*r->fdev));
    r->fino = calloc(r->n ? r->n : 1, sizeof(*r->fino));
    r->pfx_fd = calloc(r->n + 1, sizeof(*r->pfx_fd));
    r->pfx_path = calloc(r->n + 1, sizeof(*r->pfx_path));
    if (!r->prefix || !r->sub || !r->bad || !r->fdev || !r->fino || !r->pfx_fd || !r->pfx_path ||
        ptab_init(&t, r->n) < 0 || ptab_init(&pt, r->n + 1) < 0)
        return vbc_seterr(e, -ENOMEM, "out of memory");

    for (i = 0; i < r->n; i++) {
        struct vbc_entry *x = &r->v[i];
        const char *slash = strrchr(x->path, '/');
        char *parent = slash ? strndup(x->path, (size_t)(slash - x->path)) : strdup("");
        size_t pj;

        if (!parent)
            return vbc_seterr(e, -ENOMEM, "out of memory");
        if (ptab_put(&t, x->path, i) != SIZE_MAX) {
            entry_error(r, i, "listed twice; skipped", 0);
            free(parent);
            continue;
        }
        if (x->link_of != VB_NO_LINK &&
            (x->link_of >= i || r->v[x->link_of].type != VB_FT_REG || x->type != VB_FT_REG ||
             r->v[x->link_of].link_of != VB_NO_LINK)) {
            entry_error(r, i, "hard link to an entry that is not an earlier file; skipped", 0);
            free(parent);
            continue;
        }
        if (!x->path[0] && x->type != VB_FT_DIR) {
            entry_error(r, i, "the root of the snapshot is not a directory; refused", 0);
            free(parent);
            continue;
        }
        pj = x->path[0] ? ptab_get(&t, parent) : SIZE_MAX;
        if (pj != SIZE_MAX) {
            /* inside the restored tree: the parent must be a directory
             * entry that was restored */
            if (r->v[pj].type != VB_FT_DIR || r->bad[pj]) {
                entry_error(r, i, "parent is not a restored directory; refused", 0);
                free(parent);
                continue;
            }
            r->prefix[i] = r->prefix[pj];
            r->sub[i] = x->path + strlen(r->pfx_path[r->prefix[i]]) +
                        (r->pfx_path[r->prefix[i]][0] ? 1 : 0);
            free(parent);
        } else {
            /* a top entry: its parent directory is outside the entries */
            size_t k = ptab_put(&pt, parent, r->n_pfx);

            if (k == SIZE_MAX) {
                int fd;

                fd = open_dest_dir(r->destfd, parent);
                if (fd < 0) {
                    if (fd == -ELOOP)
                        entry_error(r, i, "a symlink in the destination is in the way of its "
                                    "parent (not followed)", 0);
                    else
                        entry_error(r, i, "cannot create its parent directory", -fd);
                    r->pfx_fd[r->n_pfx] = -1;
                } else {
                    r->pfx_fd[r->n_pfx] = fd;
                }
                r->pfx_path[r->n_pfx] = parent;
                k = r->n_pfx++;
            } else {
                free(parent);
            }
            if (r->pfx_fd[k] < 0) {
                r->bad[i] = true;
                continue;
            }
            r->prefix[i] = k;
            r->sub[i] = x->path + strlen(r->pfx_path[k]) + (r->pfx_path[k][0] ? 1 : 0);
        }
    }
    free(t.key);
    free(t.val);
    free(pt.key);
    free(pt.val);
    return 0;
}

/* ---- 1. directories --------------------------------------------------------------------- */

static void make_dirs(struct rctx *r)
{
    for (size_t i = 0; i < r->n; i++) {
        const char *name;
        struct stat st;
        int pfd;

        if (r->v[i].type != VB_FT_DIR || r->bad[i] || !r->sub[i][0])
            continue;
        if ((pfd = open_parent(r, i, &name)) < 0) {
            parent_error(r, i, -pfd);
            continue;
        }
        if (mkdirat(pfd, name, 0700) == 0) {
            /* casefolding is set on an empty folder, before what it holds */
            if (r->v[i].fsflags & VB_FSFL_CASEFOLD) {
                const char *what;
                int fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                int err = fd < 0 ? -errno : vb_fsflags_apply(fd, VB_FSFL_CASEFOLD, 0, &what);

                if (fd >= 0)
                    close(fd);
                if (err)
                    entry_error(r, i, "setting casefolding (F)", -err);
            }
        } else {
            if (errno != EEXIST) {
                entry_error(r, i, "mkdir", errno);
            } else if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                entry_error(r, i, "stat", errno);
            } else if (!S_ISDIR(st.st_mode)) {
                /* a file or symlink where the snapshot has a directory */
                if (unlinkat(pfd, name, 0) < 0 || mkdirat(pfd, name, 0700) < 0)
                    entry_error(r, i, "replacing with a directory", errno);
            } else if (!r->root && (st.st_mode & 0700) != 0700) {
                /* on the folder itself: a name could be swapped for a symlink */
                int fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

                if (fd < 0 || fchmod(fd, (st.st_mode & 07777) | 0700) < 0)
                    entry_error(r, i, "making it writable", errno);
                if (fd >= 0)
                    close(fd);
            }
        }
        close(pfd);
    }
}

/* ---- 2. regular files -------------------------------------------------------------------- */

static void finish_file(struct rctx *r, struct rfile *f)
{
    const struct vbc_entry *x = &r->v[f->entry];
    const char *what = NULL;
    struct timespec ts[2];
    struct stat st;
    int err = 0;

    if (!f->failed) {
        char xwhat[VB_MAX_XATTR_NAME * 4 + 160];
        int ret;

        if (fchown(f->fd, x->uid, x->gid) < 0 && (r->root || errno != EPERM))
            err = errno, what = "chown";
        else if ((ret = set_xattrs(x, f->fd, false, xwhat, sizeof(xwhat))))
            err = -ret, what = xwhat;
        else if (fchmod(f->fd, x->mode) < 0)
            err = errno, what = "chmod";
        else if (ts_of(ts, x), (ret = vb_times_apply(f->fd, "", ts)))
            err = -ret, what = times_error(ret);
        else if (fstat(f->fd, &st) < 0)
            err = errno, what = "stat";
        else if (renameat(f->pfd, f->tmp, f->pfd, f->name) < 0)
            err = errno, what = "rename into place";
        if (err) {
            /* the attribute's and the time's messages say it all */
            entry_error(r, f->entry, what, what == xwhat || err == ERANGE ? 0 : err);
        } else {
            /* what a hard link may point at */
            r->fdev[f->entry] = st.st_dev;
            r->fino[f->entry] = st.st_ino;
        }
    }
    if (f->failed || err)
        unlinkat(f->pfd, f->tmp, 0);
    close(f->fd);
    close(f->pfd);
    free(f);
}

static bool fatal_status(int rc)
{
    return rc < 0 || rc == VB_S_UNAVAILABLE || rc == VB_S_SHUTTING_DOWN || rc == VB_S_NO_JOB ||
           rc == VB_S_BAD_FRAME || rc == VB_S_BAD_VERSION || rc == VB_S_INTERNAL;
}

/* The file's data from ch->start to ch->end (UINT64_MAX: to the end, past
 * the size: preallocated space there). */
static int read_chunk(struct rctx *r, struct vbc_reply *rep, struct chunk *ch, struct vbc_err *e)
{
    const struct vbc_entry *x = &r->v[ch->f->entry];
    uint64_t off = ch->start;

    while (off < ch->end) {
        struct vbc_rdata d;
        uint64_t left = ch->end - off;
        uint32_t want = left < r->piece ? (uint32_t)left : r->piece;
        int rc, tries = 0;

        if (vbc_interrupted)
            return vbc_seterr(e, -EINTR, "interrupted");
        while ((rc = vbc_restore_read(r->c, rep, r->job, ch->f->entry, off, want, &d, e)) ==
                   VB_S_BUSY && tries++ < 100)
            vbc_sleep_ms(50);
        if (rc)
            return rc;
        if (d.flags & (VB_RD_HOLE | VB_RD_ZERO | VB_RD_UNWRITTEN)) {
            uint64_t l = d.len < left ? d.len : left;

            if (d.flags & VB_RD_ZERO)
                rc = vb_write_zeros(ch->f->fd, l, off, r->sparse);
            else if (d.flags & VB_RD_UNWRITTEN)
                rc = vb_prealloc(ch->f->fd, off, l);
            if (rc)
                return vbc_seterr(e, rc, "%s: %s", d.flags & VB_RD_ZERO ? "write" : "fallocate",
                                  strerror(-rc));
            off += l;
            if (off <= x->size)
                __atomic_add_fetch(&r->bytes_done, d.flags & VB_RD_ZERO ? l : 0,
                                   __ATOMIC_RELAXED);
            continue;
        }
        if (d.len) {
            if (off + d.len > x->size)
                return vbc_seterr(e, -EPROTO, "the host sent data past the file's size");
            if ((rc = vb_write_sparse(ch->f->fd, d.data, d.len, off, r->sparse)))
                return vbc_seterr(e, rc, "write: %s", strerror(-rc));
            off += d.len;
            __atomic_add_fetch(&r->bytes_done, d.len, __ATOMIC_RELAXED);
        }
        if (d.flags & VB_RD_EOF) {
            if (ch->end == UINT64_MAX && off >= x->size)
                break;
            if (off < ch->end)
                return vbc_seterr(e, -EPROTO, "the host ended the file at %llu of %llu bytes",
                                  (unsigned long long)off, (unsigned long long)x->size);
        }
    }
    return 0;
}

static void *worker(void *arg)
{
    struct rctx *r = arg;
    struct vbc_reply rep;

    if (vbc_reply_init(&rep, r->piece + sizeof(struct vb_restore_data)) < 0) {
        pthread_mutex_lock(&r->lock);
        if (!r->fatal) {
            r->fatal = -ENOMEM;
            vbc_seterr(&r->fatal_e, -ENOMEM, "out of memory");
        }
        pthread_cond_broadcast(&r->cond);
        pthread_mutex_unlock(&r->lock);
        return NULL;
    }
    for (;;) {
        struct chunk ch;
        struct vbc_err e = { 0 };
        bool last;
        int rc;

        pthread_mutex_lock(&r->lock);
        while (!r->qn && !r->closing)
            pthread_cond_wait(&r->cond, &r->lock);
        if (!r->qn) {
            pthread_mutex_unlock(&r->lock);
            break;
        }
        ch = r->q[r->qh];
        r->qh = (r->qh + 1) % QUEUE_MAX;
        r->qn--;
        pthread_cond_broadcast(&r->cond);
        pthread_mutex_unlock(&r->lock);

        rc = (ch.f->failed || r->fatal) ? 0 : read_chunk(r, &rep, &ch, &e);
        pthread_mutex_lock(&r->lock);
        if (rc) {
            ch.f->failed = true;
            if (fatal_status(rc) && !r->fatal) {
                r->fatal = rc;
                r->fatal_e = e;
            }
        }
        if (r->fatal)
            ch.f->failed = true;
        last = --ch.f->pending == 0;
        pthread_mutex_unlock(&r->lock);
        if (rc && !fatal_status(rc))
            entry_error(r, ch.f->entry, e.msg, 0);
        if (last)
            finish_file(r, ch.f);
    }
    vbc_reply_free(&rep);
    return NULL;
}

/* Wait (lock held) a quarter second for the workers, then refresh the
 * progress line without the lock. */
static void wait_showing_progress(struct rctx *r)
{
    vbc_cond_wait_ms(&r->cond, &r->lock, 250);
    pthread_mutex_unlock(&r->lock);
    vbc_progress_show(&r->prog, "restoring:", __atomic_load_n(&r->bytes_done, __ATOMIC_RELAXED),
                      r->total);
    pthread_mutex_lock(&r->lock);
}

static void enqueue(struct rctx *r, struct chunk ch)
{
    pthread_mutex_lock(&r->lock);
    while (r->qn == QUEUE_MAX) {
        wait_showing_progress(r);
    }
    r->q[(r->qh + r->qn) % QUEUE_MAX] = ch;
    r->qn++;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
}

static int restore_files(struct rctx *r, uint64_t total)
{
    r->total = total;
    pthread_t th[VBC_RESTORE_THREADS];
    size_t nth = 0;
    sigset_t all, old;

    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    for (; nth < VBC_RESTORE_THREADS; nth++)
        if (pthread_create(&th[nth], NULL, worker, r))
            break;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!nth)
        return -EAGAIN;

    for (size_t i = 0; i < r->n && !r->fatal && !vbc_interrupted; i++) {
        const struct vbc_entry *x = &r->v[i];
        struct rfile *f;
        const char *name;
        int pfd;

        if (x->type != VB_FT_REG || x->link_of != VB_NO_LINK || r->bad[i])
            continue;
        if ((pfd = open_parent(r, i, &name)) < 0) {
            parent_error(r, i, -pfd);
            continue;
        }
        f = calloc(1, sizeof(*f));
        if (!f) {
            close(pfd);
            entry_error(r, i, "out of memory", 0);
            continue;
        }
        f->pfd = pfd;
        f->entry = i;
        f->name = (char *)name;
        snprintf(f->tmp, sizeof(f->tmp), ".vbrestore.%d.%zu", (int)getpid(), i);
        f->fd = openat(pfd, f->tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (f->fd < 0) {
            entry_error(r, i, "create", errno);
            close(pfd);
            free(f);
            continue;
        }
        if (ftruncate(f->fd, (off_t)x->size) < 0) {
            entry_error(r, i, "ftruncate", errno);
            f->failed = true;
            finish_file(r, f);
            continue;
        }
        if (x->size == 0 && !(x->flags & VB_RF_PREALLOC)) {
            finish_file(r, f);
            continue;
        }
        /* preallocated space past the size: the last piece reads on to the end */
        f->pending = x->size ? (unsigned)((x->size + CHUNK - 1) / CHUNK) : 1;
        {
            /* f belongs to the workers once its last chunk is queued */
            unsigned total_chunks = f->pending, queued = 0;
            bool last;

            for (uint64_t off = 0; queued < total_chunks && !r->fatal && !vbc_interrupted;
                 off += CHUNK) {
                struct chunk ch = { f, off, off + CHUNK < x->size ? off + CHUNK : x->size };

                if (queued + 1 == total_chunks && (x->flags & VB_RF_PREALLOC))
                    ch.end = UINT64_MAX;
                enqueue(r, ch);
                queued++;
                vbc_progress_show(&r->prog, "restoring:",
                                  __atomic_load_n(&r->bytes_done, __ATOMIC_RELAXED), total);
            }
            if (queued == total_chunks)
                continue;
            /* stopped in the middle of the file: it is not restored */
            pthread_mutex_lock(&r->lock);
            f->failed = true;
            f->pending -= total_chunks - queued;
            last = f->pending == 0;
            pthread_mutex_unlock(&r->lock);
            if (last)
                finish_file(r, f);
        }
    }
    pthread_mutex_lock(&r->lock);
    r->closing = true;
    pthread_cond_broadcast(&r->cond);
    while (r->qn) {
        wait_showing_progress(r);
    }
    pthread_mutex_unlock(&r->lock);
    for (size_t k = 0; k < nth; k++)
        pthread_join(th[k], NULL);
    return 0;
}

/* ---- 3. other entries, 4. hard links ---------------------------------------------------- */

static void make_others(struct rctx *r)
{
    for (size_t i = 0; i < r->n; i++) {
        const struct vbc_entry *x = &r->v[i];
        const char *name, *what = NULL;
        char tmp[64], mwhat[VB_MAX_XATTR_NAME * 4 + 160];
        bool shown;
        int pfd, rc = 0;

        if (x->type == VB_FT_REG || x->type == VB_FT_DIR || x->link_of != VB_NO_LINK ||
            r->bad[i])
            continue;
        if ((pfd = open_parent(r, i, &name)) < 0) {
            parent_error(r, i, -pfd);
            continue;
        }
        snprintf(tmp, sizeof(tmp), ".vbrestore.%d.%zu", (int)getpid(), i);
        switch (x->type) {
        case VB_FT_SYMLINK:
            rc = symlinkat(x->link, pfd, tmp);
            what = "symlink";
            break;
        /* made with their mode (the umask is 0 during a restore) */
        case VB_FT_FIFO:
            rc = mknodat(pfd, tmp, S_IFIFO | (x->mode & 07777), 0);
            what = "mkfifo";
            break;
        case VB_FT_SOCK:
            rc = mknodat(pfd, tmp, S_IFSOCK | (x->mode & 07777), 0);
            what = "mknod (socket)";
            break;
        default: {
            unsigned maj = (x->rdev >> 8) & 0xfff;
            unsigned mnr = (x->rdev & 0xff) | ((x->rdev >> 12) & 0xfff00);

            rc = mknodat(pfd, tmp, (x->type == VB_FT_CHR ? S_IFCHR : S_IFBLK) | (x->mode & 07777),
                         makedev(maj, mnr));
            what = "mknod (device nodes need root)";
            break;
        }
        }
        if (rc < 0) {
            entry_error(r, i, what, errno);
            close(pfd);
            continue;
        }
        if ((rc = set_meta(r, pfd, tmp, x, mwhat, sizeof(mwhat), &shown)) < 0) {
            entry_error(r, i, mwhat, shown ? 0 : -rc);
            unlinkat(pfd, tmp, 0);
        } else if (renameat(pfd, tmp, pfd, name) < 0) {
            entry_error(r, i, "rename into place", errno);
            unlinkat(pfd, tmp, 0);
        }
        close(pfd);
    }
}

/* A link named NAME in PFD to the file open as FD (O_PATH); -1 with errno. */
static int link_fd(int fd, int pfd, const char *name)
{
    char proc[64];

    if (linkat(fd, "", pfd, name, AT_EMPTY_PATH) == 0)
        return 0;
    if (errno != ENOENT)        /* ENOENT: not allowed without CAP_DAC_READ_SEARCH */
        return -1;
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
    return linkat(AT_FDCWD, proc, pfd, name, AT_SYMLINK_FOLLOW);
}

static void make_links(struct rctx *r)
{
    for (size_t i = 0; i < r->n; i++) {
        const struct vbc_entry *x = &r->v[i];
        const char *name, *tname;
        struct stat st;
        char tmp[64];
        int pfd, tfd, fd;

        if (x->link_of == VB_NO_LINK || r->bad[i])
            continue;
        if (r->bad[x->link_of]) {
            entry_error(r, i, "its first link was not restored", 0);
            continue;
        }
        if ((pfd = open_parent(r, i, &name)) < 0) {
            parent_error(r, i, -pfd);
            continue;
        }
        if ((tfd = open_parent(r, x->link_of, &tname)) < 0) {
            entry_error(r, i, "opening the first link's parent", -tfd);
            close(pfd);
            continue;
        }
        snprintf(tmp, sizeof(tmp), ".vbrestore.%d.%zu", (int)getpid(), i);
        /* the file this restore wrote, and nothing else: by its fd */
        fd = openat(tfd, tname, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
            st.st_dev != r->fdev[x->link_of] || st.st_ino != r->fino[x->link_of])
            entry_error(r, i, "its first link is no longer the file this restore wrote; refused", 0);
        else if (link_fd(fd, pfd, tmp) < 0)
            entry_error(r, i, "link", errno);
        else if (renameat(pfd, tmp, pfd, name) < 0)
            entry_error(r, i, "rename into place", errno);
        unlinkat(pfd, tmp, 0);   /* left over when NAME was already this file */
        if (fd >= 0)
            close(fd);
        close(tfd);
        close(pfd);
    }
}

/* ---- 5. inode flags of regular files ----------------------------------------------------- */

static void files_flags(struct rctx *r)
{
    for (size_t i = 0; i < r->n; i++) {
        const struct vbc_entry *x = &r->v[i];
        const char *name, *what;
        struct stat st;
        int pfd, fd, err;

        if (x->type != VB_FT_REG || x->link_of != VB_NO_LINK || r->bad[i] ||
            (!x->fsflags && !x->projid))
            continue;
        if ((pfd = open_parent(r, i, &name)) < 0) {
            parent_error(r, i, -pfd);
            continue;
        }
        /* the file this restore wrote, and nothing else */
        fd = openat(pfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_dev != r->fdev[i] ||
            st.st_ino != r->fino[i])
            entry_error(r, i, "no longer the file this restore wrote; its inode flags are not set",
                        0);
        else if ((err = vb_fsflags_apply(fd, x->fsflags, x->projid, &what)))
            entry_error(r, i, what, -err);
        if (fd >= 0)
            close(fd);
        close(pfd);
    }
}

/* ---- 6. directory metadata, deepest first ------------------------------------------------ */

static size_t depth(const char *p)
{
    size_t d = *p ? 1 : 0;

    for (; *p; p++)
        d += *p == '/';
    return d;
}

static int deeper_first(const void *a, const void *b, void *base)
{
    const struct vbc_entry *v = base;
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    size_t dx = depth(v[x].path), dy = depth(v[y].path);

    return dx != dy ? (dx < dy ? 1 : -1) : (x < y ? 1 : -1);
}

static void dir_meta(struct rctx *r)
{
    size_t *idx = malloc((r->n ? r->n : 1) * sizeof(*idx)), n = 0;

    if (!idx) {
        vbc_error("out of memory setting directory metadata");
        r->errors++;
        return;
    }
    for (size_t i = 0; i < r->n; i++)
        if (r->v[i].type == VB_FT_DIR && !r->bad[i])
            idx[n++] = i;
    qsort_r(idx, n, sizeof(*idx), deeper_first, r->v);
    for (size_t k = 0; k < n; k++) {
        size_t i = idx[k];
        const struct vbc_entry *x = &r->v[i];
        const char *name, *fwhat;
        char xwhat[VB_MAX_XATTR_NAME * 4 + 160];
        struct timespec ts[2];
        int pfd = -1, fd, err;

        if (!r->sub[i][0]) {
            /* the destination directory itself (the snapshot's root) */
            fd = dup(r->pfx_fd[r->prefix[i]]);
        } else if ((pfd = open_parent(r, i, &name)) < 0) {
            parent_error(r, i, -pfd);
            continue;
        } else {
            /* on the folder itself: its name could have been swapped for a symlink */
            fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        }
        ts_of(ts, x);
        if (fd < 0)
            entry_error(r, i, errno == ELOOP || errno == ENOTDIR ? "no longer a folder" : "open",
                        errno == ELOOP || errno == ENOTDIR ? 0 : errno);
        else if (fchown(fd, x->uid, x->gid) < 0 && (r->root || errno != EPERM))
            entry_error(r, i, "chown", errno);
        else if (set_xattrs(x, fd, false, xwhat, sizeof(xwhat)))
            entry_error(r, i, xwhat, 0);
        else if (fchmod(fd, x->mode) < 0)
            entry_error(r, i, "chmod", errno);
        else if ((err = vb_times_apply(fd, "", ts)))
            entry_error(r, i, times_error(err), err == -ERANGE ? 0 : -err);
        else if ((err = vb_fsflags_apply(fd, x->fsflags, x->projid, &fwhat)))
            entry_error(r, i, fwhat, -err);
        if (fd >= 0)
            close(fd);
        if (pfd >= 0)
            close(pfd);
    }
    free(idx);
}

/* ---- the flow ------------------------------------------------------------------------------- */

int vbc_restore(const char *device, const struct vbc_restore_opts *o)
{
    struct rctx r;
    struct vbc_err e = { 0 };
    struct vbc_hello hello;
    struct vbc_restore_info ri;
    struct vbc_reply lr = { 0 };
    size_t cap = 0;
    int64_t t0 = vbc_now_ns();
    bool begun = false;
    mode_t old_umask;
    int rc, status = 1;

    memset(&r, 0, sizeof(r));
    r.pc_fd = -1;
    pthread_mutex_init(&r.lock, NULL);
    vbc_cond_init(&r.cond);
    r.root = geteuid() == 0;
    r.sparse = !o->no_sparse;
    r.dest = o->into ? o->into : "";
    /* entries are made with their modes exactly */
    old_umask = umask(0);
    vbc_progress_init(&r.prog);

    r.destfd = open(o->into ? o->into : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (r.destfd < 0 && errno == ENOENT && o->into) {
        /* --into DIR: made if missing, with its parents */
        int cwd = open(o->into[0] == '/' ? "/" : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        if (cwd >= 0) {
            r.destfd = open_prefix(cwd, o->into);
            close(cwd);
            if (r.destfd < 0)
                errno = -r.destfd;
        }
    }
    if (r.destfd < 0) {
        vbc_seterr(&e, -errno, "%s: %s", o->into ? o->into : "/", strerror(errno));
        goto out;
    }
    if ((rc = vbc_connect(device, &r.c, &e)) || (rc = vbc_hello(r.c, vbc_prog, &hello, &e)))
        goto out;
    r.piece = vbc_conn_limits(r.c)->max_payload - (uint32_t)sizeof(struct vb_restore_data);
    if ((rc = vbc_restore_begin(r.c, o->target, o->snapshot ? o->snapshot : "latest",
                                (const char *const *)o->paths, o->n_paths, &ri, &e)))
        goto out;
    begun = true;
    r.job = ri.job;
    if (!vbc_quiet) {
        char b[32];

        vbc_human(b, sizeof(b), ri.bytes_total);
        vbc_info("restoring %llu entries (%s) from snapshot %s into %s",
                 (unsigned long long)ri.n_entries, b, ri.snapshot, o->into ? o->into : "/");
    }

    if ((rc = vbc_reply_init(&lr, VB_MAX_PAYLOAD)) < 0) {
        vbc_seterr(&e, rc, "out of memory");
        goto out;
    }
    while (r.n < ri.n_entries) {
        size_t added;

        if ((rc = vbc_restore_list(r.c, r.job, r.n, &lr, &r.v, &r.n, &cap, &added, &e)))
            goto out;
        if (!added) {
            vbc_seterr(&e, -EPROTO, "the host listed %zu of %llu entries", r.n,
                       (unsigned long long)ri.n_entries);
            goto out;
        }
        vbc_progress_text(&r.prog, "listing entries");
    }
    vbc_reply_free(&lr);
    if (r.n != ri.n_entries) {
        vbc_seterr(&e, -EPROTO, "the host listed %zu entries, announced %llu", r.n,
                   (unsigned long long)ri.n_entries);
        goto out;
    }
    if ((rc = plan(&r, &e)))
        goto out;
    make_dirs(&r);
    if ((rc = restore_files(&r, ri.bytes_total)) < 0) {
        vbc_seterr(&e, rc, "cannot start the restore threads");
        goto out;
    }
    vbc_progress_clear(&r.prog);
    if (vbc_interrupted) {
        vbc_seterr(&e, -EINTR, "interrupted by signal %d", (int)vbc_interrupted);
        goto out;
    }
    if (r.fatal) {
        e = r.fatal_e;
        goto out;
    }
    make_others(&r);
    make_links(&r);
    files_flags(&r);
    dir_meta(&r);
    if (r.errors) {
        /* done, but not all: each is listed above */
        vbc_seterr(&e, -EIO, "%llu of %zu entries could not be restored (see above)",
                   (unsigned long long)r.errors, r.n);
        status = VBC_EXIT_INCOMPLETE;
        goto out;
    }
    status = 0;
    if (!vbc_quiet) {
        char b[32], d[32];

        vbc_human(b, sizeof(b), ri.bytes_total);
        vbc_duration(d, sizeof(d), (double)(vbc_now_ns() - t0) / 1e9);
        printf("restore done: %zu entries, %s from snapshot %s into %s in %s\n", r.n, b,
               ri.snapshot, o->into ? o->into : "/", d);
    }
out:
    vbc_progress_clear(&r.prog);
    vbc_reply_free(&lr);
    if (begun) {
        sig_atomic_t sig = vbc_interrupted;
        struct vbc_err ee;

        vbc_interrupted = 0;
        if (vbc_restore_end(r.c, r.job, &ee) && status == 0)
            vbc_warn("closing restore job %llu: %s", (unsigned long long)r.job, ee.msg);
        if (!vbc_interrupted)
            vbc_interrupted = sig;
    }
    if (status)
        vbc_error("restore %s: %s", status == VBC_EXIT_INCOMPLETE ? "incomplete" : "failed",
                  e.msg);
    for (size_t i = 0; i < r.n; i++) {
        free(r.v[i].path);
        free(r.v[i].link);
        free(r.v[i].xattrs);
    }
    free(r.v);
    for (size_t i = 0; i < r.n_pfx; i++) {
        if (r.pfx_fd[i] >= 0)
            close(r.pfx_fd[i]);
        free(r.pfx_path[i]);
    }
    free(r.pfx_fd);
    free(r.pfx_path);
    if (r.pc_fd >= 0)
        close(r.pc_fd);
    free(r.pc_key);
    free(r.prefix);
    free(r.sub);
    free(r.bad);
    free(r.fdev);
    free(r.fino);
    if (r.destfd >= 0)
        close(r.destfd);
    vbc_disconnect(r.c);
    umask(old_umask);
    return status;
}
