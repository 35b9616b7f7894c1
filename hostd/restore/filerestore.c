/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Restore a files snapshot into a folder of the host (vbackupctl
 * restore-files): for a VM that cannot boot, or to look into a backup.
 *
 * The catalog is the guest's, and hostile (DESIGN.md, "Trust boundary"):
 *  - every path is resolved beneath the destination without following any
 *    symlink (beneath.c), entries are made relative to their parent's fd;
 *  - an entry's parent is a directory of the catalog that this run made,
 *    or, for a top entry (no ancestor in the catalog), a plain folder made
 *    beneath the destination; anything else is refused;
 *  - a hard link only ever points at a file this run wrote (checked by
 *    device and inode when it is linked);
 *  - device nodes (devices), owners, setuid and setgid bits (same_owner) and
 *    security. and trusted. attributes (xattrs) only on request: the host is
 *    not the guest.
 * An entry that fails is reported and the others are restored.  A regular
 * file gets its name only when complete (O_TMPFILE then linkat, or a
 * temporary name then renameat); other entries are made under a temporary
 * name with their metadata and renamed into place.  Folders get their modes
 * and times last, deepest first, also after an interruption.  Holes stay
 * holes, preallocated ranges are preallocated again, blocks of zeros become
 * holes unless no_sparse; times to the nanosecond (a time the destination
 * cannot hold is a failure); extended attributes and ACLs as xattrs; inode
 * flags and project ids once every link of a file is made (fsmeta.h); chunks
 * are checked (CRC, SHA-256).
 */
#include "filerestore.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "beneath.h"
#include "escape.h"
#include "progress.h"
#include "vbackup/proto.h"

enum { ST_OUT = 0, ST_SELECTED, ST_DONE, ST_FAILED };

#define LEVELS_MAX 32        /* open ancestor folders kept */

struct written {             /* a file this run wrote: what a hard link may point at */
    uint64_t holder;         /* the entry it was written for */
    dev_t dev;
    ino_t ino;
};

struct rs {
    struct vb_sr *r;
    const struct vb_files_restore_opts *o;
    struct vb_files_restore_stats *st;
    const struct vb_catalog *cat;
    uint8_t *state;          /* ST_* per catalog entry */
    GHashTable *written;     /* index of an entry holding data (uint64_t *) -> struct written */
    int destfd;
    uid_t uid;
    gid_t gid;
    bool tmpfile;            /* O_TMPFILE files can be given a name (root, or /proc) */
    /* open folders along the path of the last parent (prefixes of lpath,
     * ends at component boundaries, deepest last): entries come sorted, so
     * each folder is opened once, relative to the nearest open ancestor */
    struct { size_t end; int fd; } lv[LEVELS_MAX];
    size_t nlv;
    const char *lpath;
    const struct vb_idspace *space;  /* the snapshot's chunk ids */
    uint8_t *buf;
    size_t cap;
    uint64_t done;
    struct vb_progress prog;
    unsigned long seq;       /* temporary names */
    GArray *flags_later;     /* uint64_t: files whose inode flags are set at the end */
};

static void fail_entry(struct rs *s, uint64_t idx, const char *what, int err)
{
    size_t pl;
    const char *p = vb_cat_path(s->cat, idx, &pl);
    g_autofree char *q = vb_escape(p, pl);

    g_ptr_array_add(s->st->failures, err ? g_strdup_printf("/%s: %s: %s", q, what, strerror(err))
                                         : g_strdup_printf("/%s: %s", q, what));
    s->state[idx] = ST_FAILED;
}

static void tmp_name(struct rs *s, char tmp[64])
{
    snprintf(tmp, 64, ".vbrestore.%d.%lu", (int)getpid(), ++s->seq);
}

static void ts_of(struct timespec ts[2], const struct vb_cat_entry *m)
{
    ts[0] = vb_cat_atime(m);
    ts[1] = vb_cat_mtime(m);
}

/* The extended attributes of entry M; counts what is not restored. */
static struct vb_xa *xattrs_of(struct rs *s, const struct vb_cat_entry *m, size_t *n)
{
    struct vb_xa *xs = g_new0(struct vb_xa, VB_MAX(m->n_xattrs, 1u));
    bool skipped = false;

    for (uint32_t k = 0; k < m->n_xattrs; k++) {
        const struct vb_cat_xattr *x = &s->cat->x[m->first_xattr + k];
        xs[k].name = s->cat->str + x->off;
        xs[k].name_len = x->name_len;
        xs[k].value = s->cat->str + x->off + x->name_len;
        xs[k].value_len = x->value_len;
        skipped |= !(vb_xa_class(xs[k].name, xs[k].name_len) & s->o->xattrs);
    }
    if (skipped)
        s->st->xattrs_skipped++;
    *n = m->n_xattrs;
    return xs;
}

/* Gives FD the extended attributes of entry M; 0 or -errno with *what set. */
static int set_xattrs(struct rs *s, const struct vb_cat_entry *m, int fd, bool opath,
                      char *what, size_t what_len)
{
    size_t n;
    g_autofree struct vb_xa *xs = xattrs_of(s, m, &n);
    const char *step;
    char which[VB_MAX_XATTR_NAME + 1];
    int ret = vb_xa_apply(fd, opath, xs, n, s->o->xattrs, &step, which, sizeof(which));

    if (ret) {
        g_autofree char *q = vb_escape(which, strlen(which));
        snprintf(what, what_len, "%s%s%s: %s", step, which[0] ? " " : "", q, strerror(-ret));
    }
    return ret;
}

static const char *times_error(int ret)
{
    return ret == -ERANGE ? "a time the destination cannot hold (it stored another)"
                          : "set times";
}

/* The permission bits to give entry M; counts what is dropped. */
static mode_t perm_of(struct rs *s, const struct vb_cat_entry *m)
{
    mode_t p = m->mode & 07777;

    if (!s->o->same_owner) {
        if (m->type != VB_FT_DIR && (p & (S_ISUID | S_ISGID))) {
            p &= ~(mode_t)(S_ISUID | S_ISGID);
            s->st->setid_dropped++;
        }
        if (m->uid != s->uid || m->gid != s->gid)
            s->st->owners_dropped++;
    }
    return p;
}

/* ---- the parent directory ------------------------------------------------------- */

static bool has_catalog_ancestor(struct rs *s, const char *p, size_t len)
{
    while (len) {
        const char *slash = memrchr(p, '/', len);
        len = slash ? (size_t)(slash - p) : 0;
        if (len && vb_cat_find(s->cat, p, len) != VB_CAT_NONE)
            return true;
    }
    return false;
}

/* The directory that holds entry IDX (an fd owned by the cache), or -1
 * with *why set and *err the errno to show (0: none).  *name gets the
 * entry's last component. */
static int parent_fd(struct rs *s, uint64_t idx, char **name, const char **why, int *err)
{
    size_t pl, ppl, common = 0, base_end;
    const char *p = vb_cat_path(s->cat, idx, &pl);
    const char *slash = memrchr(p, '/', pl);
    uint64_t pi;
    int fd, base_fd;

    *name = slash ? g_strndup(slash + 1, pl - (size_t)(slash + 1 - p)) : g_strndup(p, pl);
    if (!slash)
        return s->destfd;
    ppl = (size_t)(slash - p);
    /* keep the open folders that are ancestors of (or are) the parent */
    if (s->nlv) {
        size_t top = s->lv[s->nlv - 1].end;
        while (common < top && common < ppl && s->lpath[common] == p[common])
            common++;
    }
    while (s->nlv) {
        size_t end = s->lv[s->nlv - 1].end;
        if (end <= common && (end == ppl || p[end] == '/'))
            break;
        close(s->lv[--s->nlv].fd);
    }
    if (s->nlv && s->lv[s->nlv - 1].end == ppl)
        return s->lv[s->nlv - 1].fd;
    base_end = s->nlv ? s->lv[s->nlv - 1].end + 1 : 0;
    base_fd = s->nlv ? s->lv[s->nlv - 1].fd : s->destfd;
    pi = vb_cat_find(s->cat, p, ppl);
    *err = 0;
    if (pi != VB_CAT_NONE && s->cat->e[pi].type != VB_FT_DIR) {
        *why = "its parent is not a directory in the snapshot; refused";
        return -1;
    }
    if (pi != VB_CAT_NONE && s->state[pi] == ST_DONE) {
        fd = vb_beneath_open(base_fd, p + base_end, ppl - base_end, O_RDONLY | O_DIRECTORY);
        *why = "opening its parent";
    } else if (pi != VB_CAT_NONE && s->state[pi] != ST_OUT) {
        *why = "its parent was not restored";
        return -1;
    } else if (pi == VB_CAT_NONE && has_catalog_ancestor(s, p, ppl)) {
        *why = "its parent is not in the snapshot; refused";
        return -1;
    } else {
        /* above the selected entries: plain folders beneath the destination */
        fd = vb_beneath_mkdirs(base_fd, p + base_end, ppl - base_end, 0755);
        *why = "making its parent folders";
    }
    if (fd == -ELOOP)
        *why = "a symlink in the destination is in the way of its parent (not followed)";
    if (fd < 0) {
        *err = fd == -ELOOP ? 0 : -fd;
        return -1;
    }
    if (s->nlv == LEVELS_MAX) {      /* very deep: forget the outermost */
        close(s->lv[0].fd);
        memmove(&s->lv[0], &s->lv[1], (LEVELS_MAX - 1) * sizeof(s->lv[0]));
        s->nlv--;
    }
    s->lv[s->nlv].end = ppl;
    s->lv[s->nlv++].fd = fd;
    s->lpath = p;
    return fd;
}

/* ---- making entries --------------------------------------------------------------- */

/* Gives NAME in PFD to FD's file: a link to it (an O_TMPFILE file, or a
 * file opened O_PATH), replacing what is there unless it is a folder. */
static int link_fd(int fd, int pfd, const char *name)
{
    char proc[64];

    if (linkat(fd, "", pfd, name, AT_EMPTY_PATH) == 0)
        return 0;
    if (errno != ENOENT)            /* ENOENT: not allowed without CAP_DAC_READ_SEARCH */
        return -errno;
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
    return linkat(AT_FDCWD, proc, pfd, name, AT_SYMLINK_FOLLOW) < 0 ? -errno : 0;
}

/* Renames TMP to NAME in PFD; an empty folder in the way is removed. */
static int rename_into_place(int pfd, const char *tmp, const char *name)
{
    if (renameat(pfd, tmp, pfd, name) == 0)
        return 0;
    if ((errno == EISDIR || errno == ENOTEMPTY || errno == EEXIST) &&
        unlinkat(pfd, name, AT_REMOVEDIR) == 0 && renameat(pfd, tmp, pfd, name) == 0)
        return 0;
    return errno == ENOTEMPTY || errno == EEXIST ? -EISDIR : -errno;
}

static int publish_fd(struct rs *s, int fd, int pfd, const char *name)
{
    char tmp[64];
    int ret = link_fd(fd, pfd, name);

    if (ret != -EEXIST)
        return ret;
    /* something is there: link under a temporary name, rename over it */
    do {
        tmp_name(s, tmp);
        ret = link_fd(fd, pfd, tmp);
    } while (ret == -EEXIST);
    if (!ret && (ret = rename_into_place(pfd, tmp, name)) < 0)
        unlinkat(pfd, tmp, 0);
    return ret;
}

static int write_data(struct rs *s, const struct vb_cat_entry *src, int fd, vb_error *e)
{
    bool sparse = !s->o->no_sparse;

    for (uint64_t k = 0; k < src->n_chunks; k++) {
        const struct vb_cat_chunk *ch = &s->cat->c[src->first_chunk + k];
        int ret;

        if (vb_interrupted)
            return -EINTR;
        if (ch->offset > src->size || ch->len > src->size - ch->offset)
            return vb_seterr(e, -EBADMSG, "the catalog puts a chunk past the file's size");
        if (ch->flags & VB_CATC_ZERO) {
            /* written zeros: a hole when sparse */
            if ((ret = vb_write_zeros(fd, ch->len, ch->offset, sparse)))
                return vb_seterr(e, ret, "write: %s", strerror(-ret));
            continue;
        }
        if (s->cap < ch->len) {
            g_free(s->buf);
            s->buf = g_malloc(ch->len);
            s->cap = ch->len;
        }
        /* exactly the length the catalog gives it, checked */
        ret = vb_sr_read_chunk(s->r, s->space, ch->id, s->buf, ch->len, e);
        if (ret)
            return ret;
        if ((ret = vb_write_sparse(fd, s->buf, ch->len, ch->offset, sparse)))
            return vb_seterr(e, ret, "write: %s", strerror(-ret));
        s->done += ch->len;
        vb_progress_update(&s->prog, s->done);
    }
    if (ftruncate(fd, (off_t)src->size) < 0)     /* the tail hole */
        return vb_seterr(e, -errno, "truncate: %s", strerror(errno));
    for (uint64_t k = 0; k < src->n_ranges; k++) {
        const struct vb_cat_range *r = &s->cat->rg[src->first_range + k];
        int ret = vb_prealloc(fd, r->offset, r->len);

        if (ret)
            return vb_seterr(e, ret, "preallocating %llu bytes at %llu: %s",
                             (unsigned long long)r->len, (unsigned long long)r->offset,
                             strerror(-ret));
    }
    return 0;
}

/* Entry IDX: a regular file with the data and metadata of entry SRC_IDX (itself,
 * or the first link of a hard link whose first link this run did not write),
 * named NAME in PFD. */
static int make_file(struct rs *s, uint64_t idx, uint64_t src_idx, int pfd, const char *name)
{
    const struct vb_cat_entry *m = &s->cat->e[src_idx];
    struct timespec ts[2];
    struct stat st;
    vb_error e = { 0 };
    char tmp[64] = "";
    mode_t perm = perm_of(s, m);
    int fd = -1, ret;

    if (s->tmpfile) {
        fd = openat(pfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
        if (fd < 0 && errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL) {
            ret = -errno;
            fail_entry(s, idx, "create", -ret);
            return ret;
        }
    }
    while (fd < 0) {
        tmp_name(s, tmp);
        fd = openat(pfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0 && errno != EEXIST) {
            ret = -errno;
            fail_entry(s, idx, "create", -ret);
            return ret;
        }
    }
    ret = write_data(s, m, fd, &e);
    if (!ret) {
        char what[VB_MAX_XATTR_NAME * 4 + 128];

        ts_of(ts, m);
        if (s->o->same_owner && fchown(fd, m->uid, m->gid) < 0)
            ret = vb_seterr(&e, -errno, "chown: %s", strerror(errno));
        else if ((ret = set_xattrs(s, m, fd, false, what, sizeof(what))))
            vb_seterr(&e, ret, "%s", what);
        else if (fchmod(fd, perm) < 0)
            ret = vb_seterr(&e, -errno, "chmod: %s", strerror(errno));
        else if ((ret = vb_times_apply(fd, "", ts)))
            vb_seterr(&e, ret, "%s%s%s", times_error(ret), ret == -ERANGE ? "" : ": ",
                      ret == -ERANGE ? "" : strerror(-ret));
        else if (fstat(fd, &st) < 0)
            ret = vb_seterr(&e, -errno, "stat: %s", strerror(errno));
    }
    if (!ret) {
        ret = tmp[0] ? rename_into_place(pfd, tmp, name) : publish_fd(s, fd, pfd, name);
        if (ret)
            vb_seterr(&e, ret, "%s: %s", ret == -EISDIR ? "a folder is in the way"
                                                        : "giving it its name", strerror(-ret));
    }
    close(fd);
    if (ret && tmp[0])
        unlinkat(pfd, tmp, 0);
    if (ret == -EINTR && vb_interrupted)
        return ret;          /* not a failure of this entry: the restore stops */
    if (ret) {
        fail_entry(s, idx, e.msg, 0);
        return ret;
    }
    {
        /* later hard links to SRC link to this file */
        uint64_t *key = g_new(uint64_t, 1);
        struct written *w = g_new(struct written, 1);
        *key = src_idx;
        w->holder = idx;
        w->dev = st.st_dev;
        w->ino = st.st_ino;
        g_hash_table_insert(s->written, key, w);
    }
    if (m->fsflags || m->projid)
        g_array_append_val(s->flags_later, idx);
    return 0;
}

/* Entry IDX is a hard link to entry M (a regular file holding the data). */
static int make_link(struct rs *s, uint64_t idx, uint64_t mi, int pfd, const char *name)
{
    const struct vb_cat_entry *m = &s->cat->e[mi];
    const struct written *w = g_hash_table_lookup(s->written, &mi);
    size_t ml;
    const char *mp;
    struct stat st;
    int fd, ret;

    if (m->type != VB_FT_REG || m->hardlink != VB_CAT_NONE) {
        fail_entry(s, idx, "a hard link to an entry that is not a regular file; refused", 0);
        return -EINVAL;
    }
    if (!w)     /* no file of this group written by this run: the data goes here */
        return make_file(s, idx, mi, pfd, name);
    mp = vb_cat_path(s->cat, w->holder, &ml);
    fd = vb_beneath_open(s->destfd, mp, ml, O_PATH);
    if (fd < 0) {
        fail_entry(s, idx, "opening the file it links to", -fd);
        return fd;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_dev != w->dev || st.st_ino != w->ino) {
        close(fd);
        fail_entry(s, idx, "the file it links to is no longer the one this restore wrote; refused", 0);
        return -ESTALE;
    }
    ret = publish_fd(s, fd, pfd, name);
    close(fd);
    if (ret)
        fail_entry(s, idx, ret == -EISDIR ? "a folder is in the way" : "link", -ret);
    return ret;
}

static int make_dir(struct rs *s, uint64_t idx, int pfd, const char *name)
{
    struct stat st;
    int fd, err;

    if (mkdirat(pfd, name, 0700) == 0) {
        const struct vb_cat_entry *m = &s->cat->e[idx];
        const char *what;

        /* casefolding is set on an empty folder, before what it holds */
        if (m->fsflags & VB_FSFL_CASEFOLD) {
            fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            err = fd < 0 ? -errno : vb_fsflags_apply(fd, VB_FSFL_CASEFOLD, 0, &what);
            if (fd >= 0)
                close(fd);
            if (err) {
                fail_entry(s, idx, "setting casefolding (F)", -err);
                return err;
            }
        }
        return 0;
    }
    if (errno != EEXIST || fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        err = errno;
        fail_entry(s, idx, "mkdir", err);
        return -err;
    }
    if (!S_ISDIR(st.st_mode)) {
        /* a file, symlink or other where the snapshot has a folder: replaced */
        if (unlinkat(pfd, name, 0) < 0 || mkdirat(pfd, name, 0700) < 0) {
            err = errno;
            fail_entry(s, idx, "replacing it with a folder", err);
            return -err;
        }
        return 0;
    }
    /* a folder that is there already: kept, writable for us while we fill it */
    if ((st.st_mode & 0700) != 0700 && geteuid() != 0) {
        fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 || fchmod(fd, (st.st_mode & 07777) | 0700) < 0) {
            err = errno;
            if (fd >= 0)
                close(fd);
            fail_entry(s, idx, "making it writable", err);
            return -err;
        }
        close(fd);
    }
    return 0;
}

/* Symlinks, fifos, sockets, device nodes: made under a temporary name with
 * their metadata, then renamed into place. */
static int other_xattrs(struct rs *s, const struct vb_cat_entry *m, int pfd, const char *tmp,
                        char *what, size_t what_len)
{
    int fd, ret;

    if (!m->n_xattrs && !(s->o->xattrs & ~(VB_XA_USER | VB_XA_ACL)))
        return 0;       /* nothing to set, and none of ours can be there already */
    fd = openat(pfd, tmp, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        snprintf(what, what_len, "opening it for its extended attributes");
        return -errno;
    }
    ret = set_xattrs(s, m, fd, true, what, what_len);
    close(fd);
    return ret;
}

static int make_other(struct rs *s, uint64_t idx, int pfd, const char *name)
{
    const struct vb_cat_entry *m = &s->cat->e[idx];
    const char *what;
    char xwhat[VB_MAX_XATTR_NAME * 4 + 128];
    struct timespec ts[2];
    char tmp[64];
    g_autofree char *target = NULL;
    mode_t perm = perm_of(s, m), t = 0;
    dev_t dev = 0;
    int rc;

    if (m->type == VB_FT_SYMLINK) {
        if (!m->link_len || memchr(s->cat->str + m->link_off, 0, m->link_len)) {
            fail_entry(s, idx, "a symlink with an empty target or a NUL byte in it; refused", 0);
            return -EINVAL;
        }
        target = g_strndup(s->cat->str + m->link_off, m->link_len);
        what = "symlink";
    } else {
        unsigned maj = (m->rdev >> 8) & 0xfff, mnr = (m->rdev & 0xff) | ((m->rdev >> 12) & 0xfff00);
        t = m->type == VB_FT_FIFO ? S_IFIFO : m->type == VB_FT_SOCK ? S_IFSOCK
          : m->type == VB_FT_CHR ? S_IFCHR : S_IFBLK;
        dev = t == S_IFCHR || t == S_IFBLK ? makedev(maj, mnr) : 0;
        what = t == S_IFIFO ? "mkfifo" : t == S_IFSOCK ? "mknod (socket)" : "mknod";
    }
    do {
        tmp_name(s, tmp);
        rc = target ? symlinkat(target, pfd, tmp) : mknodat(pfd, tmp, t | perm, dev);
    } while (rc < 0 && errno == EEXIST);
    if (rc < 0) {
        rc = -errno;
        fail_entry(s, idx, what, -rc);
        return rc;
    }
    ts_of(ts, m);
    if (s->o->same_owner && fchownat(pfd, tmp, m->uid, m->gid, AT_SYMLINK_NOFOLLOW) < 0)
        rc = -errno, what = "chown";
    else if ((rc = other_xattrs(s, m, pfd, tmp, xwhat, sizeof(xwhat))) < 0)
        what = xwhat;
    /* chown drops setuid/setgid bits: set them again (the kernel's own
     * check refuses a symlink, which has none) */
    else if (s->o->same_owner && (perm & 06000) &&
             fchmodat(pfd, tmp, perm, AT_SYMLINK_NOFOLLOW) < 0)
        rc = -errno, what = "chmod";
    else if ((rc = vb_times_apply(pfd, tmp, ts)) < 0)
        what = times_error(rc);
    else if ((rc = rename_into_place(pfd, tmp, name)) < 0)
        what = rc == -EISDIR ? "a folder is in the way" : "rename into place";
    if (rc < 0) {
        unlinkat(pfd, tmp, 0);
        /* the attribute's and the time's messages say it all */
        fail_entry(s, idx, what, what == xwhat || rc == -ERANGE ? 0 : -rc);
        return rc;
    }
    return 0;
}

/* ---- inode flags of files, once their links are made ------------------------------------ */

static void files_flags(struct rs *s)
{
    for (guint i = 0; i < s->flags_later->len; i++) {
        uint64_t idx = g_array_index(s->flags_later, uint64_t, i);
        const uint64_t src = s->cat->e[idx].hardlink != VB_CAT_NONE ? s->cat->e[idx].hardlink
                                                                    : idx;
        const struct vb_cat_entry *m = &s->cat->e[src];
        const char *what;
        size_t pl;
        const char *p = vb_cat_path(s->cat, idx, &pl);
        int fd, err;

        if (s->state[idx] != ST_DONE)
            continue;
        fd = vb_beneath_open(s->destfd, p, pl, O_RDONLY | O_NONBLOCK);
        if (fd < 0) {
            fail_entry(s, idx, "opening it to set its inode flags", -fd);
            continue;
        }
        if ((err = vb_fsflags_apply(fd, m->fsflags, m->projid, &what)))
            fail_entry(s, idx, what, -err);
        close(fd);
    }
}

/* ---- folders' metadata, deepest first -------------------------------------------------- */

static void dir_meta(struct rs *s, GArray *sel)
{
    /* every descendant sorts after its folder: backwards, contents come first */
    for (guint i = sel->len; i-- > 0;) {
        uint64_t idx = g_array_index(sel, uint64_t, i);
        const struct vb_cat_entry *m = &s->cat->e[idx];
        const char *what = NULL, *fwhat;
        char xwhat[VB_MAX_XATTR_NAME * 4 + 128];
        struct timespec ts[2];
        size_t pl;
        const char *p;
        mode_t perm;
        int fd, err;

        if (m->type != VB_FT_DIR || s->state[idx] != ST_DONE)
            continue;
        p = vb_cat_path(s->cat, idx, &pl);
        fd = pl ? vb_beneath_open(s->destfd, p, pl, O_RDONLY | O_DIRECTORY) : dup(s->destfd);
        if (fd < 0) {
            fail_entry(s, idx, "opening it to set its mode and times", pl ? -fd : errno);
            continue;
        }
        perm = perm_of(s, m);
        ts_of(ts, m);
        err = 0;
        if (s->o->same_owner && fchown(fd, m->uid, m->gid) < 0)
            what = "chown", err = errno;
        else if ((err = -set_xattrs(s, m, fd, false, xwhat, sizeof(xwhat))))
            what = xwhat, err = 0;
        else if (fchmod(fd, perm) < 0)
            what = "chmod", err = errno;
        else if ((err = -vb_times_apply(fd, "", ts)))
            what = times_error(-err), err = err == ERANGE ? 0 : err;
        else if ((err = -vb_fsflags_apply(fd, m->fsflags, m->projid, &fwhat)))
            what = fwhat;
        if (what)
            fail_entry(s, idx, what, err);
        close(fd);
    }
}

/* ---- the flow ----------------------------------------------------------------------------- */

static void restore_entry(struct rs *s, uint64_t idx, uint64_t prev)
{
    const struct vb_cat_entry *m = &s->cat->e[idx];
    const char *why = NULL;
    g_autofree char *name = NULL;
    size_t pl, ql = 0;
    const char *p = vb_cat_path(s->cat, idx, &pl);
    const char *q = prev != VB_CAT_NONE ? vb_cat_path(s->cat, prev, &ql) : NULL;
    int pfd, err = 0;

    if (q && ql == pl && !memcmp(q, p, pl)) {
        fail_entry(s, idx, "listed twice in the catalog; refused", 0);
        return;
    }
    if (!pl) {
        /* the snapshot's root (a backup of /): the destination itself */
        if (m->type != VB_FT_DIR)
            fail_entry(s, idx, "the root of the snapshot is not a directory; refused", 0);
        else
            s->state[idx] = ST_DONE;
        return;
    }
    if (!vb_beneath_valid(p, pl)) {
        fail_entry(s, idx, "not a valid relative path; refused", 0);
        return;
    }
    if (m->type < VB_FT_REG || m->type > VB_FT_SOCK) {
        fail_entry(s, idx, "unknown file type; refused", 0);
        return;
    }
    if ((m->type == VB_FT_CHR || m->type == VB_FT_BLK) && !s->o->devices) {
        s->st->devices_skipped++;
        return;
    }
    pfd = parent_fd(s, idx, &name, &why, &err);
    if (pfd < 0) {
        fail_entry(s, idx, why, err);
        return;
    }
    switch (m->type) {
    case VB_FT_DIR:
        if (make_dir(s, idx, pfd, name) == 0)
            s->st->dirs++;
        break;
    case VB_FT_REG:
        if ((m->hardlink != VB_CAT_NONE ? make_link(s, idx, m->hardlink, pfd, name)
                                        : make_file(s, idx, idx, pfd, name)) == 0)
            s->st->files++;
        break;
    default:
        if (make_other(s, idx, pfd, name) == 0) {
            if (m->type == VB_FT_SYMLINK)
                s->st->symlinks++;
            else
                s->st->others++;
        }
        break;
    }
    if (s->state[idx] == ST_SELECTED)
        s->state[idx] = ST_DONE;
}

int vb_files_restore(struct vb_sr *r, const struct vb_files_restore_opts *o,
                     struct vb_files_restore_stats *st, vb_error *e)
{
    struct vb_sr_snap *snap = NULL;
    struct rs s = { .r = r, .o = o, .st = st, .destfd = -1 };
    GArray *sel = NULL;
    uint64_t total = 0, prev = VB_CAT_NONE;
    mode_t old_umask;
    int ret;

    memset(st, 0, sizeof(*st));
    st->failures = g_ptr_array_new_with_free_func(g_free);
    ret = vb_sr_snap_open(r, o->snapshot, &snap, e);
    if (ret)
        return ret;
    if (vb_sr_snap_info(snap)->kind != VB_SR_FILES) {
        vb_sr_snap_close(snap);
        return vb_seterr(e, -EINVAL, "snapshot %s is a disk snapshot, not files (restore-disk "
                         "restores it)", o->snapshot);
    }
    s.cat = vb_sr_files_catalog(snap);
    s.space = vb_sr_snap_space(snap);
    ret = vb_files_select(s.cat, o->paths, o->n_paths, &sel, e);
    if (ret)
        goto out;
    if (vb_mkdir_p(o->to, 0755) ||
        (s.destfd = open(o->to, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        ret = vb_seterr(e, -errno, "%s: %s", o->to, strerror(errno));
        goto out;
    }
    s.uid = geteuid();
    s.gid = getegid();
    s.tmpfile = s.uid == 0 || access("/proc/self/fd", X_OK) == 0;
    s.state = g_malloc0(VB_MAX(s.cat->n, 1));
    s.written = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, g_free);
    s.flags_later = g_array_new(FALSE, FALSE, sizeof(uint64_t));
    for (guint i = 0; i < sel->len; i++) {
        uint64_t idx = g_array_index(sel, uint64_t, i);
        const struct vb_cat_entry *m = &s.cat->e[idx];
        s.state[idx] = ST_SELECTED;
        if (m->type == VB_FT_REG && m->hardlink == VB_CAT_NONE)
            total += vb_cat_data_bytes(s.cat, idx);
    }
    st->entries = sel->len;
    vb_progress_init(&s.prog, "restore", total, o->progress);
    /* modes are set exactly as the snapshot (or the options) say */
    old_umask = umask(0);
    for (guint i = 0; i < sel->len && !vb_interrupted; i++) {
        uint64_t idx = g_array_index(sel, uint64_t, i);
        restore_entry(&s, idx, prev);
        prev = idx;
    }
    files_flags(&s);
    dir_meta(&s, sel);
    umask(old_umask);
    vb_progress_end(&s.prog);
    st->bytes = s.done;
    if (vb_interrupted)
        ret = vb_seterr(e, -EINTR, "interrupted");
out:
    while (s.nlv)
        close(s.lv[--s.nlv].fd);
    if (s.destfd >= 0)
        close(s.destfd);
    if (s.written)
        g_hash_table_destroy(s.written);
    if (s.flags_later)
        g_array_free(s.flags_later, TRUE);
    g_free(s.state);
    g_free(s.buf);
    if (sel)
        g_array_free(sel, TRUE);
    vb_sr_snap_close(snap);
    return ret;
}

void vb_files_restore_stats_clear(struct vb_files_restore_stats *st)
{
    if (st->failures)
        g_ptr_array_free(st->failures, TRUE);
    st->failures = NULL;
}
