/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The files of an ext2/3/4 file system as records (ext2walk.h). */
#include "ext2walk.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct vb_e2walk {
    struct vb_e2walk_opts wo;
    ext2_filsys fs;
    vb_e2walk_emit emit;
    void *ctx;
    char *path;                  /* guest path of the entry being visited, "/a/b" */
    size_t path_cap;
    unsigned depth;
    char link[VB_MAX_LINK + 1];
    struct vbc_extent *ext;
    size_t n_ext, ext_cap;
    struct vbc_xattr_in *xin;
    size_t n_xin, xin_cap;
    struct vbc_xattrs xs;
    /* folders visited: a second visit is a loop or a folder linked twice */
    ext2_ino_t *dirs;
    size_t n_dirs, dirs_cap;     /* open addressing, cap a power of two */
};

static int e2err(struct vbc_err *e, errcode_t err, const char *what, const char *obj)
{
    return vbc_seterr(e, -EIO, "%s %s: %s", what, obj, error_message(err));
}

static const char *shown(struct vb_e2walk *w)
{
    return w->path[0] ? w->path : "/";
}

int vb_e2walk_new(ext2_filsys fs, const struct vb_e2walk_opts *wo, struct vb_e2walk **out,
                  struct vbc_err *e)
{
    struct vb_e2walk *w = calloc(1, sizeof(*w));

    initialize_ext2_error_table();     /* error_message() knows libext2fs's codes */
    if (!w)
        return vbc_seterr(e, -ENOMEM, "out of memory");
    w->wo = *wo;
    w->fs = fs;
    *out = w;
    return 0;
}

void vb_e2walk_free(struct vb_e2walk *w)
{
    if (!w)
        return;
    free(w->path);
    free(w->ext);
    free(w->xin);
    free(w->xs.buf);
    free(w->dirs);
    free(w);
}

/* ---- folders seen ------------------------------------------------------------ */

static uint32_t ino_hash(ext2_ino_t ino)
{
    return (uint32_t)ino * 0x9e3779b1u;
}

/* false: seen before.  -ENOMEM as *err. */
static bool dir_first_visit(struct vb_e2walk *w, ext2_ino_t ino, int *err)
{
    size_t mask;

    if ((w->n_dirs + 1) * 2 > w->dirs_cap) {
        size_t nc = w->dirs_cap ? w->dirs_cap * 2 : 1024;
        ext2_ino_t *nd = calloc(nc, sizeof(*nd));

        if (!nd) {
            *err = -ENOMEM;
            return false;
        }
        for (size_t i = 0; i < w->dirs_cap; i++) {
            if (!w->dirs[i])
                continue;
            for (size_t k = ino_hash(w->dirs[i]) & (nc - 1);; k = (k + 1) & (nc - 1)) {
                if (!nd[k]) {
                    nd[k] = w->dirs[i];
                    break;
                }
            }
        }
        free(w->dirs);
        w->dirs = nd;
        w->dirs_cap = nc;
    }
    mask = w->dirs_cap - 1;
    for (size_t k = ino_hash(ino) & mask;; k = (k + 1) & mask) {
        if (w->dirs[k] == ino)
            return false;
        if (!w->dirs[k]) {
            w->dirs[k] = ino;
            w->n_dirs++;
            return true;
        }
    }
}

/* ---- lookup ------------------------------------------------------------------- */

int vb_e2walk_lookup(struct vb_e2walk *w, const char *path, size_t len, ext2_ino_t *ino,
                     struct vbc_err *e)
{
    ext2_ino_t cur = EXT2_ROOT_INO;
    size_t i = 0;

    while (i < len) {
        struct ext2_inode in;
        size_t j = i;
        errcode_t err;

        while (j < len && path[j] != '/')
            j++;
        if (j == i || j - i > VB_MAX_NAME)
            return vbc_seterr(e, -EINVAL, "not a path inside the file system");
        if ((err = ext2fs_read_inode(w->fs, cur, &in)))
            return vbc_seterr(e, -EIO, "reading inode %u: %s", cur, error_message(err));
        if (!LINUX_S_ISDIR(in.i_mode))
            return vbc_seterr(e, -ENOTDIR, "a component of the path is not a folder");
        if (in.i_flags & EXT4_ENCRYPT_FL)
            return vbc_seterr(e, -EOPNOTSUPP, "a folder of the path is encrypted");
        err = ext2fs_lookup(w->fs, cur, path + i, (int)(j - i), NULL, &cur);
        if (err == EXT2_ET_FILE_NOT_FOUND)
            return vbc_seterr(e, -ENOENT, "not in the file system");
        if (err)
            return vbc_seterr(e, -EIO, "looking up a name in folder inode %u: %s", cur,
                              error_message(err));
        i = j + 1;
    }
    *ino = cur;
    return 0;
}

/* ---- inodes ---------------------------------------------------------------------- */

static uint8_t ftype_of(unsigned mode)
{
    switch (mode & LINUX_S_IFMT) {
    case LINUX_S_IFREG: return VB_FT_REG;
    case LINUX_S_IFDIR: return VB_FT_DIR;
    case LINUX_S_IFLNK: return VB_FT_SYMLINK;
    case LINUX_S_IFIFO: return VB_FT_FIFO;
    case LINUX_S_IFCHR: return VB_FT_CHR;
    case LINUX_S_IFBLK: return VB_FT_BLK;
    case LINUX_S_IFSOCK: return VB_FT_SOCK;
    default: return 0;
    }
}

/* The kernel's EXT4_INODE_GET_XTIME: seconds signed 32 bit, extended by the
 * two epoch bits of the extra field, nanoseconds above them. */
static struct vb_ts xtime(const struct ext2_inode_large *in, size_t isize, uint32_t base,
                          const uint32_t *extra)
{
    struct vb_ts t = { (int32_t)base, 0 };
    size_t end = (size_t)((const char *)extra - (const char *)in) + sizeof(*extra);

    if (isize > EXT2_GOOD_OLD_INODE_SIZE &&
        end <= EXT2_GOOD_OLD_INODE_SIZE + (size_t)in->i_extra_isize) {
        if (*extra & 3)
            t.sec += (int64_t)(*extra & 3) << 32;
        t.nsec = *extra >> 2;
        if (t.nsec > 999999999)
            t.nsec = 999999999;      /* as no kernel writes it: keep the record valid */
    }
    return t;
}

/* A field of the large inode, if this inode has it. */
static bool has_field(const struct ext2_inode_large *in, size_t isize, const void *field,
                      size_t size)
{
    size_t end = (size_t)((const char *)field - (const char *)in) + size;

    return isize > EXT2_GOOD_OLD_INODE_SIZE &&
           end <= EXT2_GOOD_OLD_INODE_SIZE + (size_t)in->i_extra_isize;
}

static int read_inode(struct vb_e2walk *w, ext2_ino_t ino, struct ext2_inode_large *in,
                      struct vbc_err *e)
{
    errcode_t err;

    memset(in, 0, sizeof(*in));
    err = ext2fs_read_inode_full(w->fs, ino, (struct ext2_inode *)in, sizeof(*in));
    if (err)
        return e2err(e, err, "reading the inode of", shown(w));
    return 0;
}

static void fill(struct vb_e2walk *w, struct vbc_file *f, const struct ext2_inode_large *in,
                 ext2_ino_t ino)
{
    size_t isize = EXT2_INODE_SIZE(w->fs->super);
    bool largedir = ext2fs_has_feature_largedir(w->fs->super);

    memset(f, 0, sizeof(*f));
    f->type = ftype_of(in->i_mode);
    f->disk = w->wo.disk;
    f->mode = in->i_mode & 07777;
    f->uid = inode_uid(*in);
    f->gid = inode_gid(*in);
    f->nlink = in->i_links_count;
    if (f->type == VB_FT_REG || (f->type == VB_FT_DIR && largedir))
        f->size = in->i_size | (uint64_t)in->i_size_high << 32;
    else if (f->type == VB_FT_DIR || f->type == VB_FT_SYMLINK)
        f->size = in->i_size;
    f->ino = ino;
    if (f->type == VB_FT_CHR || f->type == VB_FT_BLK)
        f->rdev = in->i_block[0] ? (in->i_block[0] & 0xffff) : in->i_block[1];
    f->mtime = xtime(in, isize, in->i_mtime, &in->i_mtime_extra);
    f->ctime = xtime(in, isize, in->i_ctime, &in->i_ctime_extra);
    f->atime = xtime(in, isize, in->i_atime, &in->i_atime_extra);
    /* as FS_IOC_GETFLAGS shows them (only regular files and folders have them) */
    if (f->type == VB_FT_REG || f->type == VB_FT_DIR) {
        f->fsflags = in->i_flags & VB_FSFL_MASK;
        if (has_field(in, isize, &in->i_projid, sizeof(in->i_projid)))
            f->projid = in->i_projid;
    }
    f->path = w->path + 1;
    f->path_len = strlen(w->path + 1);
    f->fsid = w->wo.fsid;
}

static int add_ext(struct vb_e2walk *w, uint64_t logical, uint64_t physical, uint64_t length,
                   uint32_t flags)
{
    struct vbc_extent *p = w->n_ext ? &w->ext[w->n_ext - 1] : NULL;

    if (p && p->logical + p->length == logical && p->physical + p->length == physical &&
        p->flags == flags) {
        p->length += length;
        return 0;
    }
    if (w->n_ext == w->ext_cap) {
        size_t nc = w->ext_cap ? w->ext_cap * 2 : 1024;
        struct vbc_extent *nv = realloc(w->ext, nc * sizeof(*nv));

        if (!nv)
            return -ENOMEM;
        w->ext = nv;
        w->ext_cap = nc;
    }
    w->ext[w->n_ext++] = (struct vbc_extent){ logical, physical, length, flags };
    return 0;
}

struct biter {
    struct vb_e2walk *w;
    int err;
};

static int block_cb(ext2_filsys fs, blk64_t *blocknr, e2_blkcnt_t blockcnt, blk64_t ref_blk,
                    int ref_offset, void *priv)
{
    struct biter *b = priv;
    uint64_t bs = fs->blocksize;

    (void)ref_blk;
    (void)ref_offset;
    if (blockcnt < 0 || !*blocknr)
        return 0;
    if (add_ext(b->w, (uint64_t)blockcnt * bs, *blocknr * bs + b->w->wo.disk_offset, bs, 0) < 0) {
        b->err = -ENOMEM;
        return BLOCK_ABORT;
    }
    return 0;
}

/* Extents of a regular file into w->ext; *ok false: not mappable (inline
 * data, or extents that overlap: the data goes through the stream). */
static int map_file(struct vb_e2walk *w, ext2_ino_t ino, struct ext2_inode_large *in,
                    uint64_t size, bool *ok, struct vbc_err *e)
{
    uint64_t bs = w->fs->blocksize;
    errcode_t err;

    w->n_ext = 0;
    *ok = false;
    if (in->i_flags & (EXT4_INLINE_DATA_FL | EXT4_ENCRYPT_FL))
        return 0;
    if (in->i_flags & EXT4_EXTENTS_FL) {
        ext2_extent_handle_t h;
        struct ext2fs_extent ex;

        err = ext2fs_extent_open2(w->fs, ino, (struct ext2_inode *)in, &h);
        if (err)
            return e2err(e, err, "the extent tree of", shown(w));
        err = ext2fs_extent_get(h, EXT2_EXTENT_ROOT, &ex);
        while (!err) {
            if ((ex.e_flags & EXT2_EXTENT_FLAGS_LEAF) && ex.e_len &&
                add_ext(w, ex.e_lblk * bs, ex.e_pblk * bs + w->wo.disk_offset,
                        (uint64_t)ex.e_len * bs,
                        (ex.e_flags & EXT2_EXTENT_FLAGS_UNINIT) ? VB_EXT_UNWRITTEN : 0) < 0) {
                ext2fs_extent_free(h);
                return vbc_seterr(e, -ENOMEM, "out of memory");
            }
            err = ext2fs_extent_get(h, EXT2_EXTENT_NEXT, &ex);
        }
        ext2fs_extent_free(h);
        if (err != EXT2_ET_EXTENT_NO_NEXT && err != EXT2_ET_NO_CURRENT_NODE)
            return e2err(e, err, "the extent tree of", shown(w));
    } else {
        struct biter b = { w, 0 };

        err = ext2fs_block_iterate3(w->fs, ino, BLOCK_FLAG_DATA_ONLY | BLOCK_FLAG_READ_ONLY,
                                    NULL, block_cb, &b);
        if (b.err)
            return vbc_seterr(e, b.err, "out of memory");
        if (err)
            return e2err(e, err, "the block map of", shown(w));
    }
    *ok = vbc_extents_normalize(w->ext, &w->n_ext, size);
    return 0;
}

static int problem(struct vb_e2walk *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Something of the entry at w->path could not be backed up. */
static int problem(struct vb_e2walk *w, const char *fmt, ...)
{
    char reason[VB_MAX_MESSAGE];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    return vbc_problem_add(w->wo.o->problems, w->path + 1, strlen(w->path + 1), "%s", reason)
               ? -ENOMEM : 0;
}

/* An entry the host cannot map: the walk fails (strict: the guest maps the
 * files itself), or a problem is reported. */
static int unmappable(struct vb_e2walk *w, const char *why, struct vbc_err *e)
{
    if (w->wo.strict)
        return vbc_seterr(e, -EOPNOTSUPP, "%s is %s", shown(w), why);
    return problem(w, "%s; not backed up", why) ? vbc_seterr(e, -ENOMEM, "out of memory") : 0;
}

static int xattr_name_cb(char *name, char *value, size_t value_len, void *data)
{
    struct vb_e2walk *w = data;

    (void)value;
    (void)value_len;
    if (w->n_xin == w->xin_cap) {
        size_t nc = w->xin_cap ? w->xin_cap * 2 : 32;
        struct vbc_xattr_in *nv = realloc(w->xin, nc * sizeof(*nv));

        if (!nv)
            return XATTR_ABORT;
        w->xin = nv;
        w->xin_cap = nc;
    }
    w->xin[w->n_xin].name = strdup(name);
    w->xin[w->n_xin].name_len = strlen(name);
    w->xin[w->n_xin].value = NULL;
    w->xin[w->n_xin].value_len = 0;
    if (!w->xin[w->n_xin].name)
        return XATTR_ABORT;
    w->n_xin++;
    return 0;
}

/* The extended attributes of inode INO into w->xs, with their values as the
 * kernel gives them (ACLs in the xattr format, values in EA inodes). */
static int read_xattrs(struct vb_e2walk *w, ext2_ino_t ino, struct vbc_err *e)
{
    struct ext2_xattr_handle *h = NULL;
    size_t total = 0, keep = 0;
    errcode_t err;
    int rc = 0;

    w->xs.len = w->xs.n = 0;
    w->n_xin = 0;
    if (!ext2fs_has_feature_xattr(w->fs->super))
        return 0;
    if ((err = ext2fs_xattrs_open(w->fs, ino, &h)))
        return e2err(e, err, "the extended attributes of", shown(w));
    if ((err = ext2fs_xattrs_read(h)) || (err = ext2fs_xattrs_iterate(h, xattr_name_cb, w))) {
        for (size_t i = 0; i < w->n_xin; i++)
            free(w->xin[i].name);
        w->n_xin = 0;
        ext2fs_xattrs_close(&h);
        return e2err(e, err, "the extended attributes of", shown(w));
    }
    for (size_t i = 0; i < w->n_xin; i++) {
        struct vbc_xattr_in x = w->xin[i];
        void *v = NULL;
        size_t vl = 0;

        w->xin[i].name = NULL;
        if (rc || !strcmp(x.name, "system.data")) {
            free(x.name);           /* system.data: ext4's inline data, not an attribute */
            continue;
        }
        if (!vb_xattr_name_ok(x.name, x.name_len)) {
            rc = problem(w, "extended attribute '%.*s' is of a namespace a backup does not "
                         "keep", (int)(x.name_len > 64 ? 64 : x.name_len), x.name);
            free(x.name);
            continue;
        }
        if ((err = ext2fs_xattr_get(h, x.name, &v, &vl))) {
            rc = problem(w, "extended attribute %s not backed up: %s", x.name,
                         error_message(err));
            free(x.name);
            continue;
        }
        if (vl > VB_MAX_XATTR_VALUE) {
            ext2fs_free_mem(&v);
            rc = problem(w, "extended attribute %s: %zu bytes, more than a value may hold; "
                         "not backed up", x.name, vl);
            free(x.name);
            continue;
        }
        x.value = malloc(vl ? vl : 1);
        if (x.value && vl)
            memcpy(x.value, v, vl);
        /* ACLs as the kernel gives them (libext2fs leaves 0 in unnamed ids) */
        if (x.value)
            vb_acl_canonical(x.name, x.name_len, x.value, vl);
        x.value_len = vl;
        ext2fs_free_mem(&v);
        if (!x.value) {
            free(x.name);
            rc = -ENOMEM;
            continue;
        }
        total += vb_xattr_size(x.name_len, vl);
        w->xin[keep++] = x;
    }
    ext2fs_xattrs_close(&h);
    w->n_xin = keep;
    if (!rc && total > VB_MAX_XATTR_BYTES)
        rc = problem(w, "extended attributes of %zu bytes, more than the %u a file may carry; "
                     "none backed up", total, VB_MAX_XATTR_BYTES);
    else if (!rc && keep)
        rc = vbc_xattrs_build(&w->xs, w->xin, keep);
    for (size_t i = 0; i < keep; i++) {
        free(w->xin[i].name);
        free(w->xin[i].value);
    }
    w->n_xin = 0;
    if (!rc && total > VB_MAX_XATTR_BYTES)
        w->xs.len = w->xs.n = 0;
    return rc ? vbc_seterr(e, rc, "out of memory") : 0;
}

static int read_link(struct vb_e2walk *w, ext2_ino_t ino, struct ext2_inode_large *in,
                     size_t *len, struct vbc_err *e)
{
    uint64_t size = in->i_size;
    errcode_t err;

    if (size == 0 || size > VB_MAX_LINK)
        return vbc_seterr(e, -EINVAL, "%s: bad symlink size %llu", shown(w),
                          (unsigned long long)size);
    if (in->i_flags & EXT4_INLINE_DATA_FL) {
        size_t sz = 0;
        char *tmp;

        if ((err = ext2fs_inline_data_size(w->fs, ino, &sz)))
            return e2err(e, err, "the inline symlink", shown(w));
        if (sz < size || sz > VB_MAX_LINK + 256)
            return vbc_seterr(e, -EIO, "%s: inline symlink of %zu bytes, size %llu", shown(w),
                              sz, (unsigned long long)size);
        if (!(tmp = malloc(sz)))
            return vbc_seterr(e, -ENOMEM, "out of memory");
        err = ext2fs_inline_data_get(w->fs, ino, (struct ext2_inode *)in, tmp, &sz);
        if (!err && sz >= size)
            memcpy(w->link, tmp, size);
        free(tmp);
        if (err)
            return e2err(e, err, "the inline symlink", shown(w));
        if (sz < size)
            return vbc_seterr(e, -EIO, "%s: short inline symlink", shown(w));
    } else if (ext2fs_is_fast_symlink((struct ext2_inode *)in)) {
        if (size > sizeof(in->i_block))
            return vbc_seterr(e, -EIO, "%s: fast symlink of %llu bytes", shown(w),
                              (unsigned long long)size);
        memcpy(w->link, in->i_block, size);
    } else {
        ext2_file_t f;
        unsigned got = 0;

        if ((err = ext2fs_file_open2(w->fs, ino, (struct ext2_inode *)in, 0, &f)))
            return e2err(e, err, "opening the symlink", shown(w));
        err = ext2fs_file_read(f, w->link, (unsigned)size, &got);
        ext2fs_file_close(f);
        if (err || got != size)
            return e2err(e, err ? err : EXT2_ET_SHORT_READ, "reading the symlink", shown(w));
    }
    if (memchr(w->link, 0, size))
        return vbc_seterr(e, -EIO, "%s: a symlink target with a NUL byte", shown(w));
    *len = size;
    return 0;
}

/* ---- walk ----------------------------------------------------------------------------- */

struct dent {
    char *name;
    ext2_ino_t ino;
};

struct dlist {
    struct dent *v;
    size_t n, cap;
    int err;
};

static int dir_cb(struct ext2_dir_entry *de, int offset, int blocksize, char *buf, void *priv)
{
    struct dlist *l = priv;
    int nl = ext2fs_dirent_name_len(de);

    (void)offset;
    (void)blocksize;
    (void)buf;
    if (!de->inode || (nl == 1 && de->name[0] == '.') ||
        (nl == 2 && de->name[0] == '.' && de->name[1] == '.'))
        return 0;
    if (nl == 0 || memchr(de->name, 0, (size_t)nl) || memchr(de->name, '/', (size_t)nl)) {
        l->err = -EIO;               /* no kernel writes such a name */
        return DIRENT_ABORT;
    }
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 64;
        struct dent *nv = realloc(l->v, nc * sizeof(*nv));

        if (!nv) {
            l->err = -ENOMEM;
            return DIRENT_ABORT;
        }
        l->v = nv;
        l->cap = nc;
    }
    l->v[l->n].name = strndup(de->name, (size_t)nl);
    if (!l->v[l->n].name) {
        l->err = -ENOMEM;
        return DIRENT_ABORT;
    }
    l->v[l->n++].ino = de->inode;
    return 0;
}

static int dent_cmp(const void *a, const void *b)
{
    return strcmp(((const struct dent *)a)->name, ((const struct dent *)b)->name);
}

static int visit(struct vb_e2walk *w, ext2_ino_t ino, size_t plen, struct vbc_err *e);

static int walk_dir(struct vb_e2walk *w, ext2_ino_t dir, size_t plen, struct vbc_err *e)
{
    struct dlist l = { 0 };
    errcode_t err;
    int rc = 0;

    err = ext2fs_dir_iterate(w->fs, dir, 0, NULL, dir_cb, &l);
    if (l.err == -ENOMEM)
        rc = vbc_seterr(e, l.err, "out of memory");
    else if (l.err)
        rc = vbc_seterr(e, l.err, "reading the folder %s: a name with a NUL or '/' byte",
                        shown(w));
    else if (err)
        rc = e2err(e, err, "reading the folder", shown(w));
    if (!rc && l.n)
        qsort(l.v, l.n, sizeof(*l.v), dent_cmp);
    for (size_t i = 1; i < l.n && !rc; i++)
        if (!strcmp(l.v[i - 1].name, l.v[i].name))
            rc = vbc_seterr(e, -EIO, "the folder %s holds a name twice", shown(w));
    for (size_t i = 0; i < l.n && !rc; i++) {
        size_t nl = strlen(l.v[i].name), cl = plen + (plen > 1) + nl;
        const char *abs;

        if ((rc = vbc_path_child(&w->path, &w->path_cap, plen, l.v[i].name, e)))
            break;
        abs = w->path;
        if (vbc_excluded(w->wo.o, abs, l.v[i].name) || (w->wo.skip && w->wo.skip(w->wo.ctx, abs))) {
            /* left out */
        } else if (cl - 1 > VB_MAX_PATH) {
            rc = problem(w, "path longer than %u bytes; not backed up", VB_MAX_PATH);
            if (rc)
                rc = vbc_seterr(e, rc, "out of memory");
        } else {
            rc = visit(w, l.v[i].ino, cl, e);
        }
        w->path[plen] = 0;
    }
    for (size_t i = 0; i < l.n; i++)
        free(l.v[i].name);
    free(l.v);
    return rc;
}

/* Keeps only preallocated space past the size (inside it, the data stream
 * says it all). */
static size_t only_prealloc(struct vbc_extent *ext, size_t n, uint64_t size)
{
    size_t o = 0;

    for (size_t i = 0; i < n; i++)
        if ((ext[i].flags & VB_EXT_UNWRITTEN) && ext[i].logical >= size)
            ext[o++] = ext[i];
    return o;
}

static int visit(struct vb_e2walk *w, ext2_ino_t ino, size_t plen, struct vbc_err *e)
{
    struct ext2_inode_large in;
    struct vbc_file f;
    struct vbc_fb fb;
    const char *name = strrchr(w->path, '/') ? strrchr(w->path, '/') + 1 : w->path;
    int rc;

    if (ino < EXT2_ROOT_INO || ino > w->fs->super->s_inodes_count)
        return vbc_seterr(e, -EIO, "%s: inode %u is outside the file system", shown(w), ino);
    if ((rc = read_inode(w, ino, &in, e)))
        return rc;
    fill(w, &f, &in, ino);
    memset(&fb, 0, sizeof(fb));
    if (!f.type)
        return problem(w, "of an unknown file type; not backed up")
                   ? vbc_seterr(e, -ENOMEM, "out of memory") : 0;
    if (in.i_flags & EXT4_ENCRYPT_FL)
        return unmappable(w, f.type == VB_FT_DIR ? "an encrypted folder" : "encrypted", e);
    if ((rc = read_xattrs(w, ino, e)))
        return rc;
    f.xattrs = w->xs.len ? w->xs.buf : NULL;
    f.xattr_len = w->xs.len;
    f.n_xattrs = w->xs.n;
    if (f.type == VB_FT_REG) {
        bool ok = false;

        if ((rc = map_file(w, ino, &in, f.size, &ok, e)))
            return rc;
        if (!ok)
            w->n_ext = 0;
        if (f.size == 0)
            f.data = VB_FD_NONE;
        else if (!ok || vbc_force_fallback(w->wo.o, w->path, name))
            f.data = VB_FD_FALLBACK;
        else
            f.data = VB_FD_EXTENTS;
        if (f.data != VB_FD_EXTENTS)
            w->n_ext = only_prealloc(w->ext, w->n_ext, f.size);
        f.ext = w->n_ext ? w->ext : NULL;
        f.n_ext = w->n_ext;
        if (f.data == VB_FD_FALLBACK) {
            fb.size = f.size;
            fb.ino = ino;
            fb.path = w->path;
        }
        return w->emit(w->ctx, &f, f.data == VB_FD_FALLBACK ? &fb : NULL, e);
    }
    if (f.type == VB_FT_SYMLINK) {
        size_t l = 0;

        if ((rc = read_link(w, ino, &in, &l, e)))
            return rc;
        f.link = w->link;
        f.link_len = l;
        f.size = l;
    }
    if (f.type == VB_FT_DIR) {
        int err = 0;

        if (!dir_first_visit(w, ino, &err))
            return err ? vbc_seterr(e, err, "out of memory")
                       : vbc_seterr(e, -ELOOP, "%s: folder inode %u is reached twice (a loop, "
                                    "or a folder linked in two places)", shown(w), ino);
    }
    if ((rc = w->emit(w->ctx, &f, NULL, e)))
        return rc;
    if (f.type != VB_FT_DIR || (w->wo.no_descend && w->wo.no_descend(w->wo.ctx, w->path)))
        return 0;
    if (w->depth >= VB_E2WALK_MAX_DEPTH)
        return vbc_seterr(e, -ELOOP, "%s: folders nested deeper than %u levels", shown(w),
                          VB_E2WALK_MAX_DEPTH);
    w->depth++;
    rc = walk_dir(w, ino, plen, e);
    w->depth--;
    return rc;
}

int vb_e2walk_visit(struct vb_e2walk *w, ext2_ino_t ino, const char *abs, vb_e2walk_emit emit,
                    void *ctx, struct vbc_err *e)
{
    int rc;

    w->emit = emit;
    w->ctx = ctx;
    w->depth = 0;
    if ((rc = vbc_path_child(&w->path, &w->path_cap, 0, abs, e)))
        return rc;
    return visit(w, ino, strlen(abs), e);
}

/* ---- fallback data ----------------------------------------------------------------------- */

int vb_e2walk_open_data(struct vb_e2walk *w, const struct vbc_fb *fb, void **h,
                        struct vbc_err *e)
{
    ext2_file_t f;
    errcode_t err;

    if (fb->ino < EXT2_ROOT_INO || fb->ino > w->fs->super->s_inodes_count)
        return vbc_seterr(e, -EINVAL, "inode %llu is outside the file system",
                          (unsigned long long)fb->ino);
    err = ext2fs_file_open2(w->fs, (ext2_ino_t)fb->ino, NULL, 0, &f);
    if (err)
        return vbc_seterr(e, -EIO, "opening inode %llu: %s", (unsigned long long)fb->ino,
                          error_message(err));
    *h = f;
    return 0;
}

int vb_e2walk_read_data(void *h, uint64_t off, void *buf, size_t len, size_t *got,
                        struct vbc_err *e)
{
    ext2_file_t f = h;
    unsigned n = 0;
    errcode_t err;

    if (len > (1u << 30))
        len = 1u << 30;
    if ((err = ext2fs_file_llseek(f, off, EXT2_SEEK_SET, NULL)) ||
        (err = ext2fs_file_read(f, buf, (unsigned)len, &n)))
        return vbc_seterr(e, -EIO, "reading file data: %s", error_message(err));
    *got = n;
    return 0;
}

void vb_e2walk_close_data(void *h)
{
    ext2fs_file_close((ext2_file_t)h);
}
