/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The FUSE file system of `vbackupctl mount` (vbfs.h).  Requests run on
 * libfuse's worker threads: the VM and snapshot tables are guarded by one
 * mutex, each snapshot is opened (index checked, tree built) under its own
 * mutex on first use, and everything read after that is immutable; file and
 * image data come through the shared chunk cache.
 */
#include "vbfs.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "diskread.h"
#include "fstree.h"
#include "vbackup/proto.h"

#define SNAP_SHIFT  40
#define NODE_MASK   ((UINT64_C(1) << SNAP_SHIFT) - 1)
#define LIST_TTL    1.0          /* the lists of VMs and snapshots */
#define STABLE_TTL  86400.0      /* a snapshot's contents never change */

struct vm {
    char *name;
    uint64_t no;
    GPtrArray *snaps;        /* struct snap *, oldest first, as listed last */
    int64_t newest_ns;
};

struct snap {
    uint64_t no;
    struct vb_sr_info *info;
    GMutex lock;             /* loading */
    bool loaded;
    int err;                 /* negative errno of a failed load */
    struct vb_sr_snap *s;
    struct vbi_fstree *tree; /* files */
    struct vb_diskread *dr;  /* disk */
    char *image;             /* disk: the image's name */
};

struct vbi_fs {
    struct vb_sr *sr;
    struct vb_ccache *cache;
    unsigned readahead;
    uid_t uid;
    gid_t gid;
    int64_t mounted_ns;
    GMutex lock;
    GHashTable *vm_by_name;  /* name -> struct vm * (owned) */
    GPtrArray *vm_by_no;     /* index no - 1 */
    GPtrArray *vm_order;     /* VMs with snapshots, by name, as listed last */
    GHashTable *snap_by_id;  /* id -> struct snap * */
    GPtrArray *snap_by_no;   /* index no - 1 (owned) */
    double listed_at;
    bool listed;
};

/* A folder listing taken at opendir (the root, a VM): name, inode, type. */
struct dent {
    char *name;
    fuse_ino_t ino;
    mode_t type;
};

static struct vbi_fs *fs_of(fuse_req_t req)
{
    return fuse_req_userdata(req);
}

static void snap_free(struct snap *s)
{
    vb_diskread_free(s->dr);
    vbi_fstree_free(s->tree);
    vb_sr_snap_close(s->s);
    vb_sr_info_free(s->info);
    g_free(s->image);
    g_mutex_clear(&s->lock);
    g_free(s);
}

static void vm_free(struct vm *v)
{
    g_ptr_array_free(v->snaps, TRUE);
    g_free(v->name);
    g_free(v);
}

struct vbi_fs *vbi_fs_new(struct vb_sr *sr, struct vb_ccache *cache, unsigned readahead)
{
    struct vbi_fs *fs = g_new0(struct vbi_fs, 1);

    fs->sr = sr;
    fs->cache = cache;
    fs->readahead = readahead;
    fs->uid = getuid();
    fs->gid = getgid();
    fs->mounted_ns = vb_wall_ns();
    g_mutex_init(&fs->lock);
    fs->vm_by_name = g_hash_table_new(g_str_hash, g_str_equal);
    fs->vm_by_no = g_ptr_array_new_with_free_func((GDestroyNotify)vm_free);
    fs->vm_order = g_ptr_array_new();
    fs->snap_by_id = g_hash_table_new(g_str_hash, g_str_equal);
    fs->snap_by_no = g_ptr_array_new_with_free_func((GDestroyNotify)snap_free);
    return fs;
}

void vbi_fs_free(struct vbi_fs *fs)
{
    if (!fs)
        return;
    g_hash_table_destroy(fs->vm_by_name);
    g_hash_table_destroy(fs->snap_by_id);
    g_ptr_array_free(fs->vm_order, TRUE);
    g_ptr_array_free(fs->vm_by_no, TRUE);
    g_ptr_array_free(fs->snap_by_no, TRUE);
    g_mutex_clear(&fs->lock);
    g_free(fs);
}

static gint vm_cmp(gconstpointer a, gconstpointer b)
{
    return strcmp((*(struct vm *const *)a)->name, (*(struct vm *const *)b)->name);
}

/* Reads the lists again when they are older than LIST_TTL (fs->lock held).
 * A listing that fails keeps the previous one. */
static void refresh_locked(struct vbi_fs *fs)
{
    GPtrArray *list;
    vb_error e = { 0 };

    if (fs->listed && vb_now() - fs->listed_at < LIST_TTL)
        return;
    if (vb_sr_list(fs->sr, NULL, &list, &e)) {
        fuse_log(FUSE_LOG_ERR, "vbackup: listing the snapshots: %s\n", vb_strerror(&e));
        return;
    }
    for (guint i = 0; i < fs->vm_by_no->len; i++) {
        struct vm *v = fs->vm_by_no->pdata[i];
        g_ptr_array_set_size(v->snaps, 0);
        v->newest_ns = 0;
    }
    g_ptr_array_set_size(fs->vm_order, 0);
    for (guint i = 0; i < list->len; i++) {
        struct vb_sr_info *info = list->pdata[i];
        struct vm *v = g_hash_table_lookup(fs->vm_by_name, info->vm);
        struct snap *s = g_hash_table_lookup(fs->snap_by_id, info->id);

        if (!v) {
            v = g_new0(struct vm, 1);
            v->name = g_strdup(info->vm);
            v->snaps = g_ptr_array_new();
            g_ptr_array_add(fs->vm_by_no, v);
            v->no = fs->vm_by_no->len;
            g_hash_table_insert(fs->vm_by_name, v->name, v);
        }
        if (!s) {
            s = g_new0(struct snap, 1);
            g_mutex_init(&s->lock);
            s->info = list->pdata[i];
            list->pdata[i] = NULL;
            g_ptr_array_add(fs->snap_by_no, s);
            s->no = fs->snap_by_no->len;
            g_hash_table_insert(fs->snap_by_id, s->info->id, s);
        }
        if (!v->snaps->len)
            g_ptr_array_add(fs->vm_order, v);
        g_ptr_array_add(v->snaps, s);
        v->newest_ns = VB_MAX(v->newest_ns, s->info->created_ns);
    }
    g_ptr_array_sort(fs->vm_order, vm_cmp);
    g_ptr_array_set_free_func(list, (GDestroyNotify)vb_sr_info_free);
    g_ptr_array_free(list, TRUE);
    fs->listed = true;
    fs->listed_at = vb_now();
}

static struct vm *vm_by_ino(struct vbi_fs *fs, fuse_ino_t ino)
{
    struct vm *v = NULL;

    g_mutex_lock(&fs->lock);
    if (ino >= 2 && ino - 2 < fs->vm_by_no->len)
        v = fs->vm_by_no->pdata[ino - 2];
    g_mutex_unlock(&fs->lock);
    return v;
}

/* The snapshot of an inode, opened; NULL with *err set. */
static struct snap *snap_by_ino(struct vbi_fs *fs, fuse_ino_t ino, int *err)
{
    uint64_t no = (uint64_t)ino >> SNAP_SHIFT;
    struct snap *s = NULL;

    g_mutex_lock(&fs->lock);
    if (no >= 1 && no - 1 < fs->snap_by_no->len)
        s = fs->snap_by_no->pdata[no - 1];
    g_mutex_unlock(&fs->lock);
    if (!s) {
        *err = ENOENT;
        return NULL;
    }
    g_mutex_lock(&s->lock);
    if (!s->loaded) {
        vb_error e = { 0 };
        int ret = vb_sr_snap_open(fs->sr, s->info->id, &s->s, &e);
        if (!ret && s->info->kind == VB_SR_FILES)
            ret = vbi_fstree_build(vb_sr_files_catalog(s->s), &s->tree, &e);
        if (ret) {
            fuse_log(FUSE_LOG_ERR, "vbackup: %s\n", vb_strerror(&e));
            s->err = ret;
        } else if (s->info->kind == VB_SR_DISK) {
            s->dr = vb_diskread_new(s->s, fs->cache, fs->readahead);
            s->image = g_strdup_printf("%s.raw", s->info->disk);
        } else if (s->tree->left_out) {
            fuse_log(FUSE_LOG_WARNING, "vbackup: snapshot %s: %llu entries of its catalog "
                     "cannot be shown safely and are left out\n", s->info->id,
                     (unsigned long long)s->tree->left_out);
        }
        s->loaded = true;
    }
    g_mutex_unlock(&s->lock);
    if (s->err) {
        *err = s->err == -ENOENT ? ENOENT : EIO;
        return NULL;
    }
    return s;
}

static void ts_set(struct timespec *t, int64_t ns)
{
    int64_t sec = ns / 1000000000, rem = ns % 1000000000;

    if (rem < 0) {                /* before 1970: round down */
        sec--;
        rem += 1000000000;
    }
    t->tv_sec = sec;
    t->tv_nsec = rem;
}

static void folder_attr(struct vbi_fs *fs, fuse_ino_t ino, int64_t ns, struct stat *st)
{
    memset(st, 0, sizeof(*st));
    st->st_ino = ino;
    st->st_mode = S_IFDIR | 0555;
    st->st_nlink = 2;
    st->st_uid = fs->uid;
    st->st_gid = fs->gid;
    st->st_blksize = 4096;
    ts_set(&st->st_mtim, ns);
    st->st_atim = st->st_ctim = st->st_mtim;
}

static const mode_t fmt_of[] = {
    [VB_FT_REG] = S_IFREG, [VB_FT_DIR] = S_IFDIR, [VB_FT_SYMLINK] = S_IFLNK,
    [VB_FT_FIFO] = S_IFIFO, [VB_FT_CHR] = S_IFCHR, [VB_FT_BLK] = S_IFBLK, [VB_FT_SOCK] = S_IFSOCK,
};

static uint64_t allocated(const struct vb_catalog *cat, uint64_t i)
{
    const struct vb_cat_entry *x = &cat->e[i];
    uint64_t sum = 0;

    for (uint64_t k = 0; k < x->n_chunks; k++) {
        const struct vb_cat_chunk *c = &cat->c[x->first_chunk + k];
        if (c->offset < x->size)
            sum += VB_MIN((uint64_t)c->len, x->size - c->offset);
    }
    return sum;
}

static void node_attr(struct vbi_fs *fs, struct snap *s, uint64_t node, struct stat *st)
{
    const struct vbi_fsnode *n;
    const struct vb_catalog *cat;
    const struct vb_cat_entry *x;
    fuse_ino_t base = (fuse_ino_t)(s->no << SNAP_SHIFT);

    if (s->info->kind == VB_SR_DISK) {
        folder_attr(fs, base, s->info->created_ns, st);
        if (node == 1) {
            st->st_ino = base + 1;
            st->st_mode = S_IFREG | 0444;
            st->st_nlink = 1;
            st->st_size = (off_t)vb_diskread_size(s->dr);
            st->st_blocks = (blkcnt_t)(st->st_size / 512);
        }
        return;
    }
    n = &s->tree->nodes[node];
    if (n->entry == VB_CAT_NONE) {
        folder_attr(fs, base + n->ino_node, s->info->created_ns, st);
        return;
    }
    cat = vb_sr_files_catalog(s->s);
    x = &cat->e[n->data];
    memset(st, 0, sizeof(*st));
    st->st_ino = base + n->ino_node;
    st->st_mode = fmt_of[x->type] | (x->mode & 07777);
    st->st_nlink = x->nlink ? x->nlink : 1;
    st->st_uid = x->uid;
    st->st_gid = x->gid;
    st->st_blksize = 4096;
    if (x->type == VB_FT_CHR || x->type == VB_FT_BLK)
        st->st_rdev = x->rdev;
    if (x->type == VB_FT_REG) {
        st->st_size = (off_t)VB_MIN(x->size, (uint64_t)INT64_MAX);
        st->st_blocks = (blkcnt_t)((allocated(cat, n->data) + 511) / 512);
    } else if (x->type == VB_FT_SYMLINK) {
        st->st_size = x->link_len;
    } else if (x->type == VB_FT_DIR) {
        st->st_size = (off_t)VB_MIN(x->size, (uint64_t)INT64_MAX);
    }
    /* catalog version 2 keeps seconds and nanoseconds apart (times past 2262) */
    st->st_mtim = (struct timespec){ .tv_sec = x->mtime_sec, .tv_nsec = x->mtime_nsec };
    st->st_atim = (struct timespec){ .tv_sec = x->atime_sec, .tv_nsec = x->atime_nsec };
    st->st_ctim = (struct timespec){ .tv_sec = x->ctime_sec, .tv_nsec = x->ctime_nsec };
}

static void reply_entry(fuse_req_t req, const struct stat *st, double ttl)
{
    struct fuse_entry_param ep = { .ino = st->st_ino, .attr = *st, .attr_timeout = ttl,
                                   .entry_timeout = ttl };

    fuse_reply_entry(req, &ep);
}

/* ---- lookup, getattr ----------------------------------------------------- */

static void vbfs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct vbi_fs *fs = fs_of(req);
    size_t len = strlen(name);
    struct stat st;
    int err = 0;

    if (parent == FUSE_ROOT_ID) {
        struct vm *v;
        bool found;
        g_mutex_lock(&fs->lock);
        refresh_locked(fs);
        v = g_hash_table_lookup(fs->vm_by_name, name);
        found = v && v->snaps->len;
        if (found)
            folder_attr(fs, v->no + 1, v->newest_ns, &st);
        g_mutex_unlock(&fs->lock);
        if (!found) {
            fuse_reply_err(req, ENOENT);
            return;
        }
        reply_entry(req, &st, LIST_TTL);
        return;
    }
    if (parent < (UINT64_C(1) << SNAP_SHIFT)) {
        struct vm *v = vm_by_ino(fs, parent);
        struct snap *s = NULL;
        if (v) {
            g_mutex_lock(&fs->lock);
            refresh_locked(fs);
            for (guint i = 0; i < v->snaps->len && !s; i++)
                if (!strcmp(((struct snap *)v->snaps->pdata[i])->info->time, name))
                    s = v->snaps->pdata[i];
            if (s)
                folder_attr(fs, s->no << SNAP_SHIFT, s->info->created_ns, &st);
            g_mutex_unlock(&fs->lock);
        }
        if (!s) {
            fuse_reply_err(req, ENOENT);
            return;
        }
        /* a files snapshot's folder is the root of its tree, with the root's metadata */
        if (s->info->kind == VB_SR_FILES) {
            if (!snap_by_ino(fs, st.st_ino, &err)) {
                fuse_reply_err(req, err);
                return;
            }
            node_attr(fs, s, 0, &st);
        }
        reply_entry(req, &st, LIST_TTL);
        return;
    }
    {
        struct snap *s = snap_by_ino(fs, parent, &err);
        uint64_t node = (uint64_t)parent & NODE_MASK, child;

        if (!s) {
            fuse_reply_err(req, err);
            return;
        }
        if (s->info->kind == VB_SR_DISK) {
            child = node == 0 && !strcmp(name, s->image) ? 1 : VBI_NODE_NONE;
        } else {
            /* the parent's number may be a hard link's shared one: only folders are asked */
            if (node >= s->tree->n || !vbi_fstree_is_dir(s->tree, vb_sr_files_catalog(s->s),
                                                         node)) {
                fuse_reply_err(req, ENOTDIR);
                return;
            }
            child = vbi_fstree_lookup(s->tree, node, name, len);
        }
        if (child == VBI_NODE_NONE) {
            fuse_reply_err(req, ENOENT);
            return;
        }
        node_attr(fs, s, child, &st);
        reply_entry(req, &st, STABLE_TTL);
    }
}

static void vbfs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct vbi_fs *fs = fs_of(req);
    struct stat st;
    int err = 0;

    if (ino == FUSE_ROOT_ID) {
        folder_attr(fs, ino, fs->mounted_ns, &st);
        fuse_reply_attr(req, &st, LIST_TTL);
    } else if (ino < (UINT64_C(1) << SNAP_SHIFT)) {
        struct vm *v = vm_by_ino(fs, ino);
        if (!v) {
            fuse_reply_err(req, ENOENT);
            return;
        }
        g_mutex_lock(&fs->lock);
        folder_attr(fs, ino, v->newest_ns, &st);
        g_mutex_unlock(&fs->lock);
        fuse_reply_attr(req, &st, LIST_TTL);
    } else {
        struct snap *s = snap_by_ino(fs, ino, &err);
        uint64_t node = (uint64_t)ino & NODE_MASK;
        if (!s || node >= (s->tree ? s->tree->n : 2)) {
            fuse_reply_err(req, s ? ENOENT : err);
            return;
        }
        node_attr(fs, s, node, &st);
        fuse_reply_attr(req, &st, STABLE_TTL);
    }
}

/* ---- folders ------------------------------------------------------------- */

static void dents_free(GPtrArray *a)
{
    for (guint i = 0; i < a->len; i++) {
        g_free(((struct dent *)a->pdata[i])->name);
        g_free(a->pdata[i]);
    }
    g_ptr_array_free(a, TRUE);
}

static void dent_add(GPtrArray *a, const char *name, size_t len, fuse_ino_t ino, mode_t type)
{
    struct dent *d = g_new(struct dent, 1);

    d->name = g_strndup(name, len);
    d->ino = ino;
    d->type = type;
    g_ptr_array_add(a, d);
}

static void vbfs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct vbi_fs *fs = fs_of(req);
    GPtrArray *a = g_ptr_array_new();
    int err = 0;

    dent_add(a, ".", 1, ino, S_IFDIR);
    if (ino == FUSE_ROOT_ID) {
        dent_add(a, "..", 2, ino, S_IFDIR);
        g_mutex_lock(&fs->lock);
        refresh_locked(fs);
        for (guint i = 0; i < fs->vm_order->len; i++) {
            struct vm *v = fs->vm_order->pdata[i];
            dent_add(a, v->name, strlen(v->name), v->no + 1, S_IFDIR);
        }
        g_mutex_unlock(&fs->lock);
    } else if (ino < (UINT64_C(1) << SNAP_SHIFT)) {
        struct vm *v = vm_by_ino(fs, ino);
        if (!v) {
            dents_free(a);
            fuse_reply_err(req, ENOENT);
            return;
        }
        dent_add(a, "..", 2, FUSE_ROOT_ID, S_IFDIR);
        g_mutex_lock(&fs->lock);
        refresh_locked(fs);
        for (guint i = 0; i < v->snaps->len; i++) {
            struct snap *s = v->snaps->pdata[i];
            dent_add(a, s->info->time, strlen(s->info->time), s->no << SNAP_SHIFT, S_IFDIR);
        }
        g_mutex_unlock(&fs->lock);
    } else {
        struct snap *s = snap_by_ino(fs, ino, &err);
        uint64_t node = (uint64_t)ino & NODE_MASK;
        if (!s || (s->tree && (node >= s->tree->n ||
                               !vbi_fstree_is_dir(s->tree, vb_sr_files_catalog(s->s), node))) ||
            (!s->tree && node != 0)) {
            dents_free(a);
            fuse_reply_err(req, s ? ENOTDIR : err);
            return;
        }
        if (s->dr) {
            dent_add(a, "..", 2, FUSE_ROOT_ID, S_IFDIR);
            dent_add(a, s->image, strlen(s->image), ino + 1, S_IFREG);
        } else {
            const struct vbi_fstree *t = s->tree;
            const struct vbi_fsnode *d = &t->nodes[node];
            const struct vb_catalog *cat = vb_sr_files_catalog(s->s);
            fuse_ino_t base = (fuse_ino_t)(s->no << SNAP_SHIFT);
            dent_add(a, "..", 2, node ? base + d->parent : FUSE_ROOT_ID, S_IFDIR);
            for (uint64_t k = 0; k < d->n_children; k++) {
                const struct vbi_fsnode *c = &t->nodes[t->children[d->first_child + k]];
                mode_t type = c->entry == VB_CAT_NONE ? S_IFDIR : fmt_of[cat->e[c->data].type];
                dent_add(a, c->name, c->name_len, base + c->ino_node, type);
            }
        }
    }
    fi->fh = (uint64_t)(uintptr_t)a;
    fi->cache_readdir = ino >= (UINT64_C(1) << SNAP_SHIFT);
    if (fuse_reply_open(req, fi) == -ENOENT)
        dents_free(a);       /* the request was interrupted */
}

static void vbfs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                         struct fuse_file_info *fi)
{
    GPtrArray *a = (GPtrArray *)(uintptr_t)fi->fh;
    char *buf = g_malloc(size);
    size_t pos = 0;

    for (guint i = (guint)VB_MAX(off, 0); i < a->len; i++) {
        struct dent *d = a->pdata[i];
        struct stat st = { .st_ino = d->ino, .st_mode = d->type };
        size_t n = fuse_add_direntry(req, buf + pos, size - pos, d->name, &st, (off_t)i + 1);
        if (n > size - pos)
            break;
        pos += n;
    }
    fuse_reply_buf(req, buf, pos);
    g_free(buf);
}

static void vbfs_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    dents_free((GPtrArray *)(uintptr_t)fi->fh);
    fuse_reply_err(req, 0);
}

/* ---- files ---------------------------------------------------------------- */

static void vbfs_readlink(fuse_req_t req, fuse_ino_t ino)
{
    int err = 0;
    struct snap *s = snap_by_ino(fs_of(req), ino, &err);
    uint64_t node = (uint64_t)ino & NODE_MASK;
    const struct vb_catalog *cat;
    const struct vb_cat_entry *x;
    char *target;

    if (!s || !s->tree || node >= s->tree->n || s->tree->nodes[node].entry == VB_CAT_NONE) {
        fuse_reply_err(req, s ? EINVAL : err);
        return;
    }
    cat = vb_sr_files_catalog(s->s);
    x = &cat->e[s->tree->nodes[node].data];
    if (x->type != VB_FT_SYMLINK) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    /* the target's bytes as the guest wrote them, up to a NUL (as a kernel would) */
    target = g_strndup(cat->str + x->link_off, x->link_len);
    fuse_reply_readlink(req, target);
    g_free(target);
}

static void vbfs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    int err = 0;
    struct snap *s = snap_by_ino(fs_of(req), ino, &err);
    uint64_t node = (uint64_t)ino & NODE_MASK;

    if (!s) {
        fuse_reply_err(req, err);
        return;
    }
    if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
        fuse_reply_err(req, EROFS);
        return;
    }
    if (s->dr ? node != 1
              : node >= s->tree->n || s->tree->nodes[node].entry == VB_CAT_NONE ||
                vb_sr_files_catalog(s->s)->e[s->tree->nodes[node].data].type != VB_FT_REG) {
        fuse_reply_err(req, EISDIR);
        return;
    }
    fi->keep_cache = 1;      /* the data never changes */
    fuse_reply_open(req, fi);
}

/* Bytes [off, off + len) of regular file entry i (len already within its size). */
static int file_read(struct vbi_fs *fs, const struct vb_sr_snap *s, uint64_t i, uint8_t *buf,
                     size_t len, uint64_t off, vb_error *e)
{
    const struct vb_catalog *cat = vb_sr_files_catalog(s);
    const struct vb_idspace *sp = vb_sr_snap_space(s);
    uint64_t end = off + len;

    while (off < end) {
        uint64_t k = vb_cat_chunk_at(cat, i, off), stop;
        const struct vb_cat_chunk *c = k == VB_CAT_NONE ? NULL : &cat->c[k];
        struct vb_cchunk *ch;
        int ret;

        if (!c || c->offset > off) {             /* a hole up to the next chunk */
            stop = c ? VB_MIN(c->offset, end) : end;
            memset(buf, 0, stop - off);
            buf += stop - off;
            off = stop;
            continue;
        }
        ret = vb_ccache_get(fs->cache, sp, c->id, c->len, &ch, e);
        if (ret)
            return ret;
        stop = VB_MIN(c->offset + c->len, end);
        memcpy(buf, vb_cchunk_data(ch) + (off - c->offset), stop - off);
        vb_cchunk_release(fs->cache, ch);
        buf += stop - off;
        off = stop;
        /* the file's next chunk is read ahead while this one is copied out */
        if (fs->readahead && k + 1 < cat->e[i].first_chunk + cat->e[i].n_chunks)
            vb_ccache_prefetch(fs->cache, sp, cat->c[k + 1].id, cat->c[k + 1].len);
    }
    return 0;
}

static void vbfs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                      struct fuse_file_info *fi)
{
    struct vbi_fs *fs = fs_of(req);
    int err = 0, ret;
    struct snap *s = snap_by_ino(fs, ino, &err);
    uint64_t node = (uint64_t)ino & NODE_MASK, fsize, data = 0;
    vb_error e = { 0 };
    uint8_t *buf;

    if (!s) {
        fuse_reply_err(req, err);
        return;
    }
    if (s->dr ? node != 1 : node >= s->tree->n || s->tree->nodes[node].entry == VB_CAT_NONE) {
        fuse_reply_err(req, EISDIR);
        return;
    }
    if (s->dr) {
        fsize = vb_diskread_size(s->dr);
    } else {
        data = s->tree->nodes[node].data;
        fsize = vb_sr_files_catalog(s->s)->e[data].size;
    }
    if (off < 0 || (uint64_t)off >= fsize) {
        fuse_reply_buf(req, NULL, 0);
        return;
    }
    size = (size_t)VB_MIN((uint64_t)size, fsize - (uint64_t)off);
    buf = g_try_malloc(VB_MAX(size, 1u));
    if (!buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    ret = s->dr ? vb_diskread_pread(s->dr, buf, size, (uint64_t)off, &e)
                : file_read(fs, s->s, data, buf, size, (uint64_t)off, &e);
    if (ret) {
        fuse_log(FUSE_LOG_ERR, "vbackup: snapshot %s: read of %zu bytes at %lld: %s\n",
                 s->info->id, size, (long long)off, vb_strerror(&e));
        fuse_reply_err(req, EIO);
    } else {
        fuse_reply_buf(req, (const char *)buf, size);
    }
    g_free(buf);
}

/* SEEK_DATA / SEEK_HOLE: gaps between a file's chunks and a disk's holes are holes. */
static void vbfs_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
                       struct fuse_file_info *fi)
{
    int err = 0;
    struct snap *s = snap_by_ino(fs_of(req), ino, &err);
    uint64_t node = (uint64_t)ino & NODE_MASK, size, o = (uint64_t)off;

    if (!s) {
        fuse_reply_err(req, err);
        return;
    }
    if (whence != SEEK_DATA && whence != SEEK_HOLE) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    if (s->dr ? node != 1 : node >= s->tree->n || s->tree->nodes[node].entry == VB_CAT_NONE) {
        fuse_reply_err(req, EISDIR);
        return;
    }
    if (s->dr) {
        size = vb_diskread_size(s->dr);
        if (off < 0 || o >= size) {
            fuse_reply_err(req, ENXIO);
            return;
        }
        for (;;) {
            uint64_t len;
            bool hole;
            vb_diskread_extent(s->dr, o, size - o, &len, &hole);
            if (hole == (whence == SEEK_HOLE)) {
                fuse_reply_lseek(req, (off_t)o);
                return;
            }
            o += len;
            if (o >= size) {
                if (whence == SEEK_HOLE)
                    fuse_reply_lseek(req, (off_t)size);
                else
                    fuse_reply_err(req, ENXIO);
                return;
            }
        }
    } else {
        const struct vb_catalog *cat = vb_sr_files_catalog(s->s);
        uint64_t i = s->tree->nodes[node].data, k;
        size = cat->e[i].size;
        if (off < 0 || o >= size) {
            fuse_reply_err(req, ENXIO);
            return;
        }
        k = vb_cat_chunk_at(cat, i, o);
        if (whence == SEEK_DATA) {
            if (k == VB_CAT_NONE || cat->c[k].offset >= size)
                fuse_reply_err(req, ENXIO);
            else
                fuse_reply_lseek(req, (off_t)VB_MAX(o, cat->c[k].offset));
            return;
        }
        /* SEEK_HOLE: the end of the run of touching chunks that holds o */
        while (k != VB_CAT_NONE && cat->c[k].offset <= o) {
            o = cat->c[k].offset + cat->c[k].len;
            k = k + 1 < cat->e[i].first_chunk + cat->e[i].n_chunks ? k + 1 : VB_CAT_NONE;
        }
        fuse_reply_lseek(req, (off_t)VB_MIN(o, size));
    }
}

static void vbfs_statfs(fuse_req_t req, fuse_ino_t ino)
{
    struct statvfs sv = { .f_bsize = 4096, .f_frsize = 4096, .f_namemax = NAME_MAX,
                          .f_flag = ST_RDONLY | ST_NOSUID | ST_NODEV };

    fuse_reply_statfs(req, &sv);
}

static const struct fuse_lowlevel_ops ops = {
    .lookup = vbfs_lookup,
    .getattr = vbfs_getattr,
    .readlink = vbfs_readlink,
    .open = vbfs_open,
    .read = vbfs_read,
    .opendir = vbfs_opendir,
    .readdir = vbfs_readdir,
    .releasedir = vbfs_releasedir,
    .statfs = vbfs_statfs,
    .lseek = vbfs_lseek,
};

const struct fuse_lowlevel_ops *vbi_fs_ops(void)
{
    return &ops;
}
