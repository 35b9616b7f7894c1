/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vbclient's source of files: an ext2/3/4 file system inside a raw copy of
 * a guest disk, read with libext2fs.  The same records as the guest's
 * FIEMAP walk (guest-driver/tool/walk.c), without a kernel: paths from the
 * directory tree (sorted), metadata from the inodes (times with their
 * nanoseconds from the extra fields, as the kernel decodes them), extents
 * from the extent tree or the block map (uninit extents -> unwritten),
 * inline data through the fallback stream.
 */
#include "ext2map.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ext2fs/ext2_fs.h>
#include <ext2fs/ext2fs.h>

struct img {
    struct vbc_backup_opts *o;
    const struct vbc_image_opts *io;
    ext2_filsys fs;
    uint64_t offset;
    char *mnt;                   /* the mount point, "/x/y" or "" for "/" */
    struct { char *abs; ext2_ino_t ino; } roots[VB_MAX_ROOTS];
    size_t n_roots;
    int (*emit)(void *, const struct vbc_file *, const struct vbc_fb *, struct vbc_err *);
    void *ctx;
    char *path;
    size_t path_cap;
    struct vbc_extent *ext;
    size_t n_ext, ext_cap;
    struct vbc_xattr_in *xin;
    size_t n_xin, xin_cap;
    struct vbc_xattrs xs;
};

struct dfile {
    ext2_file_t f;
};

static int e2err(struct vbc_err *e, errcode_t err, const char *what, const char *obj)
{
    return vbc_seterr(e, -EIO, "%s %s: %s", what, obj, error_message(err));
}

/* ---- partition tables -------------------------------------------------------- */

static uint64_t le(const uint8_t *p, int n)
{
    uint64_t v = 0;

    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* Byte offset of partition N (1-based) from an MBR or GPT. */
static int partition_offset(const char *image, int n, uint64_t *off, struct vbc_err *e)
{
    uint8_t s0[512], hdr[512], ent[512];
    int fd = open(image, O_RDONLY | O_CLOEXEC), rc = 0;

    if (fd < 0)
        return vbc_seterr(e, -errno, "open %s: %s", image, strerror(errno));
    if (pread(fd, s0, 512, 0) != 512 || s0[510] != 0x55 || s0[511] != 0xaa) {
        rc = vbc_seterr(e, -EINVAL, "%s has no partition table", image);
        goto out;
    }
    if (s0[446 + 4] == 0xee) {
        uint64_t lba, count, esz;

        if (pread(fd, hdr, 512, 512) != 512 || memcmp(hdr, "EFI PART", 8) != 0) {
            rc = vbc_seterr(e, -EINVAL, "%s: bad GPT header", image);
            goto out;
        }
        lba = le(hdr + 72, 8);
        count = le(hdr + 80, 4);
        esz = le(hdr + 84, 4);
        if (n < 1 || (uint64_t)n > count || esz < 128 || esz > 512) {
            rc = vbc_seterr(e, -EINVAL, "%s: no GPT partition %d", image, n);
            goto out;
        }
        if (pread(fd, ent, esz, (off_t)(lba * 512 + (uint64_t)(n - 1) * esz)) != (ssize_t)esz ||
            le(ent, 8) == 0) {
            rc = vbc_seterr(e, -EINVAL, "%s: no GPT partition %d", image, n);
            goto out;
        }
        *off = le(ent + 32, 8) * 512;
    } else {
        const uint8_t *p = s0 + 446 + 16 * (n - 1);

        if (n < 1 || n > 4 || p[4] == 0) {
            rc = vbc_seterr(e, -EINVAL, "%s: no primary MBR partition %d", image, n);
            goto out;
        }
        *off = le(p + 8, 4) * 512;
    }
out:
    close(fd);
    return rc;
}

/* ---- prepare ------------------------------------------------------------------ */

static int img_prepare(void *s, struct vbc_backup_opts *o, struct vbc_err *e)
{
    struct img *g = s;
    const struct vbc_image_opts *io = g->io;
    char opts[64];
    errcode_t err;
    int rc;

    g->o = o;
    if (!io->image || !io->serial)
        return vbc_seterr(e, -EINVAL, "a backup with vbclient needs --fs-image RAW --serial S");
    if (strlen(io->serial) == 0 || strlen(io->serial) > VB_MAX_SERIAL)
        return vbc_seterr(e, -EINVAL, "--serial must be 1 to %u bytes", VB_MAX_SERIAL);
    g->offset = io->offset;
    if (io->partition && (rc = partition_offset(io->image, io->partition, &g->offset, e)))
        return rc;
    snprintf(opts, sizeof(opts), "offset=%llu", (unsigned long long)g->offset);
    err = ext2fs_open2(io->image, opts, EXT2_FLAG_64BITS | EXT2_FLAG_IGNORE_CSUM_ERRORS, 0, 0,
                       unix_io_manager, &g->fs);
    if (err)
        return vbc_seterr(e, -EIO, "opening the ext2/3/4 file system in %s at %llu: %s",
                          io->image, (unsigned long long)g->offset, error_message(err));
    if (!(o->serials[0] = strdup(io->serial)))
        return vbc_seterr(e, -ENOMEM, "out of memory");
    o->n_serials = 1;

    {
        char *m = vbc_abspath(NULL, io->mount_point ? io->mount_point : "/");

        if (!m)
            return vbc_seterr(e, -ENOMEM, "out of memory");
        if (strcmp(m, "/") == 0)
            m[0] = 0;
        g->mnt = m;
    }
    if (o->n_paths > VB_MAX_ROOTS)
        return vbc_seterr(e, -E2BIG, "%zu paths given (at most %u)", o->n_paths, VB_MAX_ROOTS);
    o->roots_rel = calloc(o->n_paths ? o->n_paths : 1, sizeof(char *));
    if (!o->roots_rel)
        return vbc_seterr(e, -ENOMEM, "out of memory");
    for (size_t i = 0; i < o->n_paths; i++) {
        const char *p = o->paths[i];
        size_t ml = strlen(g->mnt);
        char *abs, *inside;
        ext2_ino_t ino;
        bool dup = false;

        /* absolute: a guest path under the mount point; relative: inside it */
        if (p[0] == '/') {
            abs = vbc_abspath(NULL, p);
            if (abs && ml && strcmp(abs, g->mnt) != 0 &&
                (strncmp(abs, g->mnt, ml) != 0 || abs[ml] != '/')) {
                rc = vbc_seterr(e, -EINVAL, "%s is not under the mount point %s", p, g->mnt);
                free(abs);
                return rc;
            }
        } else {
            char *t = malloc(strlen(g->mnt) + strlen(p) + 2);

            if (!t)
                return vbc_seterr(e, -ENOMEM, "out of memory");
            sprintf(t, "%s/%s", g->mnt, p);
            abs = vbc_abspath(NULL, t);
            free(t);
        }
        if (!abs)
            return vbc_seterr(e, -ENOMEM, "out of memory");
        inside = abs + ml;
        while (*inside == '/')
            inside++;
        if (!*inside) {
            ino = EXT2_ROOT_INO;
        } else if ((err = ext2fs_namei(g->fs, EXT2_ROOT_INO, EXT2_ROOT_INO, inside, &ino))) {
            rc = vbc_seterr(e, -ENOENT, "%s: not in the file system image (%s)", p,
                            error_message(err));
            free(abs);
            return rc;
        }
        if (!vbc_path_valid(abs + 1, strlen(abs + 1), true)) {
            free(abs);
            return vbc_seterr(e, -EINVAL, "%s: not a valid path for a backup", p);
        }
        for (size_t k = 0; k < g->n_roots; k++)
            dup |= strcmp(g->roots[k].abs, abs) == 0;
        if (dup) {
            free(abs);
            continue;
        }
        g->roots[g->n_roots].abs = abs;
        g->roots[g->n_roots].ino = ino;
        o->roots_rel[g->n_roots] = abs + 1;
        g->n_roots++;
    }
    o->n_roots = g->n_roots;
    if (!o->n_roots)
        return vbc_seterr(e, -EINVAL, "nothing to back up");
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

static int read_inode(struct img *g, ext2_ino_t ino, struct ext2_inode_large *in,
                      struct vbc_err *e)
{
    errcode_t err;

    memset(in, 0, sizeof(*in));
    err = ext2fs_read_inode_full(g->fs, ino, (struct ext2_inode *)in, sizeof(*in));
    if (err)
        return e2err(e, err, "reading inode of", g->path);
    return 0;
}

static void fill(struct img *g, struct vbc_file *f, const struct ext2_inode_large *in,
                 ext2_ino_t ino)
{
    size_t isize = EXT2_INODE_SIZE(g->fs->super);
    bool largedir = ext2fs_has_feature_largedir(g->fs->super);

    memset(f, 0, sizeof(*f));
    f->type = ftype_of(in->i_mode);
    f->disk = 0;
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
    f->path = g->path + 1;
    f->path_len = strlen(g->path + 1);
    f->fsid = 1;                 /* one file system */
}

static int add_ext(struct img *g, uint64_t logical, uint64_t physical, uint64_t length,
                   uint32_t flags)
{
    struct vbc_extent *p = g->n_ext ? &g->ext[g->n_ext - 1] : NULL;

    if (p && p->logical + p->length == logical && p->physical + p->length == physical &&
        p->flags == flags) {
        p->length += length;
        return 0;
    }
    if (g->n_ext == g->ext_cap) {
        size_t nc = g->ext_cap ? g->ext_cap * 2 : 1024;
        struct vbc_extent *nv = realloc(g->ext, nc * sizeof(*nv));

        if (!nv)
            return -ENOMEM;
        g->ext = nv;
        g->ext_cap = nc;
    }
    g->ext[g->n_ext++] = (struct vbc_extent){ logical, physical, length, flags };
    return 0;
}

struct biter {
    struct img *g;
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
    if (add_ext(b->g, (uint64_t)blockcnt * bs, *blocknr * bs + b->g->offset, bs, 0) < 0) {
        b->err = -ENOMEM;
        return BLOCK_ABORT;
    }
    return 0;
}

/* Extents of a regular file into g->ext; false: not mappable. */
static int map_file(struct img *g, ext2_ino_t ino, struct ext2_inode_large *in, uint64_t size,
                    bool *ok, struct vbc_err *e)
{
    uint64_t bs = g->fs->blocksize;
    errcode_t err;

    g->n_ext = 0;
    *ok = false;
    if (in->i_flags & (EXT4_INLINE_DATA_FL | EXT4_ENCRYPT_FL))
        return 0;
    if (in->i_flags & EXT4_EXTENTS_FL) {
        ext2_extent_handle_t h;
        struct ext2fs_extent ex;

        err = ext2fs_extent_open2(g->fs, ino, (struct ext2_inode *)in, &h);
        if (err)
            return e2err(e, err, "extent tree of", g->path);
        err = ext2fs_extent_get(h, EXT2_EXTENT_ROOT, &ex);
        while (!err) {
            if ((ex.e_flags & EXT2_EXTENT_FLAGS_LEAF) && ex.e_len &&
                add_ext(g, ex.e_lblk * bs, ex.e_pblk * bs + g->offset, (uint64_t)ex.e_len * bs,
                        (ex.e_flags & EXT2_EXTENT_FLAGS_UNINIT) ? VB_EXT_UNWRITTEN : 0) < 0) {
                ext2fs_extent_free(h);
                return vbc_seterr(e, -ENOMEM, "out of memory");
            }
            err = ext2fs_extent_get(h, EXT2_EXTENT_NEXT, &ex);
        }
        ext2fs_extent_free(h);
        if (err != EXT2_ET_EXTENT_NO_NEXT && err != EXT2_ET_NO_CURRENT_NODE)
            return e2err(e, err, "extent tree of", g->path);
    } else {
        struct biter b = { g, 0 };

        err = ext2fs_block_iterate3(g->fs, ino, BLOCK_FLAG_DATA_ONLY | BLOCK_FLAG_READ_ONLY,
                                    NULL, block_cb, &b);
        if (b.err)
            return vbc_seterr(e, b.err, "out of memory");
        if (err)
            return e2err(e, err, "block map of", g->path);
    }
    *ok = vbc_extents_normalize(g->ext, &g->n_ext, size);
    return 0;
}

static int problem(struct img *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Something of the entry at g->path could not be backed up. */
static int problem(struct img *g, const char *fmt, ...)
{
    char reason[VB_MAX_MESSAGE];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    return vbc_problem_add(g->o->problems, g->path + 1, strlen(g->path + 1), "%s", reason)
               ? -ENOMEM : 0;
}

static int xattr_name_cb(char *name, char *value, size_t value_len, void *data)
{
    struct img *g = data;

    (void)value;
    (void)value_len;
    if (g->n_xin == g->xin_cap) {
        size_t nc = g->xin_cap ? g->xin_cap * 2 : 32;
        struct vbc_xattr_in *nv = realloc(g->xin, nc * sizeof(*nv));

        if (!nv)
            return XATTR_ABORT;
        g->xin = nv;
        g->xin_cap = nc;
    }
    g->xin[g->n_xin].name = strdup(name);
    g->xin[g->n_xin].name_len = strlen(name);
    g->xin[g->n_xin].value = NULL;
    g->xin[g->n_xin].value_len = 0;
    if (!g->xin[g->n_xin].name)
        return XATTR_ABORT;
    g->n_xin++;
    return 0;
}

/* The extended attributes of inode INO into g->xs, with their values as the
 * kernel gives them (ACLs in the xattr format, values in EA inodes). */
static int read_xattrs(struct img *g, ext2_ino_t ino, struct vbc_err *e)
{
    struct ext2_xattr_handle *h = NULL;
    size_t total = 0, keep = 0;
    errcode_t err;
    int rc = 0;

    g->xs.len = g->xs.n = 0;
    g->n_xin = 0;
    if (!ext2fs_has_feature_xattr(g->fs->super))
        return 0;
    if ((err = ext2fs_xattrs_open(g->fs, ino, &h)))
        return e2err(e, err, "extended attributes of", g->path);
    if ((err = ext2fs_xattrs_read(h)) || (err = ext2fs_xattrs_iterate(h, xattr_name_cb, g))) {
        ext2fs_xattrs_close(&h);
        return e2err(e, err, "extended attributes of", g->path);
    }
    for (size_t i = 0; i < g->n_xin; i++) {
        struct vbc_xattr_in x = g->xin[i];
        void *v = NULL;
        size_t vl = 0;

        g->xin[i].name = NULL;
        if (rc || !strcmp(x.name, "system.data")) {
            free(x.name);           /* system.data: ext4's inline data, not an attribute */
            continue;
        }
        if (!vb_xattr_name_ok(x.name, x.name_len)) {
            rc = problem(g, "extended attribute '%.*s' is of a namespace a backup does not "
                         "keep", (int)(x.name_len > 64 ? 64 : x.name_len), x.name);
            free(x.name);
            continue;
        }
        if ((err = ext2fs_xattr_get(h, x.name, &v, &vl))) {
            rc = problem(g, "extended attribute %s not backed up: %s", x.name,
                         error_message(err));
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
        g->xin[keep++] = x;
    }
    ext2fs_xattrs_close(&h);
    g->n_xin = keep;
    if (!rc && total > VB_MAX_XATTR_BYTES)
        rc = problem(g, "extended attributes of %zu bytes, more than the %u a file may carry; "
                     "none backed up", total, VB_MAX_XATTR_BYTES);
    else if (!rc && keep)
        rc = vbc_xattrs_build(&g->xs, g->xin, keep);
    for (size_t i = 0; i < keep; i++) {
        free(g->xin[i].name);
        free(g->xin[i].value);
    }
    g->n_xin = 0;
    if (!rc && total > VB_MAX_XATTR_BYTES)
        g->xs.len = g->xs.n = 0;
    return rc ? vbc_seterr(e, rc, "out of memory") : 0;
}

static int read_link(struct img *g, ext2_ino_t ino, struct ext2_inode_large *in, char *buf,
                     size_t *len, struct vbc_err *e)
{
    uint64_t size = in->i_size;
    errcode_t err;

    if (size == 0 || size > VB_MAX_LINK)
        return vbc_seterr(e, -EINVAL, "%s: bad symlink size %llu", g->path,
                          (unsigned long long)size);
    if (in->i_flags & EXT4_INLINE_DATA_FL) {
        size_t sz = 0;
        char tmp[VB_MAX_LINK + 128];

        if ((err = ext2fs_inline_data_size(g->fs, ino, &sz)) || sz > sizeof(tmp) ||
            (err = ext2fs_inline_data_get(g->fs, ino, (struct ext2_inode *)in, tmp, &sz)))
            return e2err(e, err ? err : EXT2_ET_INLINE_DATA_NO_SPACE, "inline symlink", g->path);
        if (sz < size)
            return vbc_seterr(e, -EIO, "%s: short inline symlink", g->path);
        memcpy(buf, tmp, size);
    } else if (ext2fs_is_fast_symlink((struct ext2_inode *)in)) {
        memcpy(buf, in->i_block, size);
    } else {
        ext2_file_t f;
        unsigned got = 0;

        if ((err = ext2fs_file_open2(g->fs, ino, (struct ext2_inode *)in, 0, &f)))
            return e2err(e, err, "opening symlink", g->path);
        err = ext2fs_file_read(f, buf, (unsigned)size, &got);
        ext2fs_file_close(f);
        if (err || got != size)
            return e2err(e, err ? err : EXT2_ET_SHORT_READ, "reading symlink", g->path);
    }
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

static bool is_other_root(struct img *g, const char *abs)
{
    for (size_t i = 0; i < g->n_roots; i++)
        if (strcmp(g->roots[i].abs, abs) == 0)
            return true;
    return false;
}

static int visit(struct img *g, ext2_ino_t ino, size_t plen, struct vbc_err *e);

static int walk_dir(struct img *g, ext2_ino_t dir, size_t plen, struct vbc_err *e)
{
    struct dlist l = { 0 };
    errcode_t err;
    int rc = 0;

    err = ext2fs_dir_iterate(g->fs, dir, 0, NULL, dir_cb, &l);
    if (l.err)
        rc = vbc_seterr(e, l.err, "out of memory");
    else if (err)
        rc = e2err(e, err, "reading directory", g->path);
    if (!rc && l.n)
        qsort(l.v, l.n, sizeof(*l.v), dent_cmp);
    for (size_t i = 0; i < l.n && !rc; i++) {
        size_t nl = strlen(l.v[i].name), cl = plen + (plen > 1) + nl;

        if ((rc = vbc_path_child(&g->path, &g->path_cap, plen, l.v[i].name, e)))
            break;
        if (vbc_excluded(g->o, g->path, l.v[i].name) || is_other_root(g, g->path)) {
            /* skipped */
        } else if (cl - 1 > VB_MAX_PATH) {
            rc = problem(g, "path longer than %u bytes; not backed up", VB_MAX_PATH);
            if (rc)
                rc = vbc_seterr(e, rc, "out of memory");
        } else {
            rc = visit(g, l.v[i].ino, cl, e);
        }
        g->path[plen] = 0;
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

static int visit(struct img *g, ext2_ino_t ino, size_t plen, struct vbc_err *e)
{
    struct ext2_inode_large in;
    struct vbc_file f;
    struct vbc_fb fb;
    char link[VB_MAX_LINK + 1];
    const char *name = strrchr(g->path, '/') ? strrchr(g->path, '/') + 1 : g->path;
    int rc;

    if ((rc = read_inode(g, ino, &in, e)))
        return rc;
    fill(g, &f, &in, ino);
    memset(&fb, 0, sizeof(fb));
    if (!f.type)
        return problem(g, "of an unknown file type; not backed up")
                   ? vbc_seterr(e, -ENOMEM, "out of memory") : 0;
    if ((rc = read_xattrs(g, ino, e)))
        return rc;
    f.xattrs = g->xs.len ? g->xs.buf : NULL;
    f.xattr_len = g->xs.len;
    f.n_xattrs = g->xs.n;
    if (f.type == VB_FT_REG) {
        bool ok = false;

        if (in.i_flags & EXT4_ENCRYPT_FL)
            return problem(g, "encrypted; not backed up") ? vbc_seterr(e, -ENOMEM, "out of memory")
                                                          : 0;
        if ((rc = map_file(g, ino, &in, f.size, &ok, e)))
            return rc;
        if (!ok)
            g->n_ext = 0;
        if (f.size == 0)
            f.data = VB_FD_NONE;
        else if (!ok || vbc_force_fallback(g->o, g->path, name))
            f.data = VB_FD_FALLBACK;
        else
            f.data = VB_FD_EXTENTS;
        if (f.data != VB_FD_EXTENTS)
            g->n_ext = only_prealloc(g->ext, g->n_ext, f.size);
        f.ext = g->n_ext ? g->ext : NULL;
        f.n_ext = g->n_ext;
        if (f.data == VB_FD_FALLBACK) {
            fb.size = f.size;
            fb.ino = ino;
            fb.path = g->path;
        }
        return g->emit(g->ctx, &f, f.data == VB_FD_FALLBACK ? &fb : NULL, e);
    }
    if (f.type == VB_FT_SYMLINK) {
        size_t l = 0;

        if ((rc = read_link(g, ino, &in, link, &l, e)))
            return rc;
        f.link = link;
        f.link_len = l;
        f.size = l;
    }
    if ((rc = g->emit(g->ctx, &f, NULL, e)))
        return rc;
    if (f.type == VB_FT_DIR)
        return walk_dir(g, ino, plen, e);
    return 0;
}

static int img_walk(void *s, int (*emit)(void *, const struct vbc_file *, const struct vbc_fb *,
                                         struct vbc_err *),
                    void *ctx, struct vbc_err *e)
{
    struct img *g = s;
    int rc = 0;

    g->emit = emit;
    g->ctx = ctx;
    for (size_t i = 0; i < g->n_roots && !rc; i++) {
        size_t l = strlen(g->roots[i].abs);

        if ((rc = vbc_path_child(&g->path, &g->path_cap, 0, g->roots[i].abs, e)))
            return rc;
        rc = visit(g, g->roots[i].ino, l, e);
    }
    return rc;
}

/* ---- fallback data ----------------------------------------------------------------------- */

static int img_open_data(void *s, const struct vbc_fb *fb, void **h, struct vbc_err *e)
{
    struct img *g = s;
    ext2_file_t f;
    errcode_t err = ext2fs_file_open2(g->fs, (ext2_ino_t)fb->ino, NULL, 0, &f);

    if (err)
        return vbc_seterr(e, -EIO, "opening inode %llu: %s", (unsigned long long)fb->ino,
                          error_message(err));
    *h = f;
    return 0;
}

static int img_read_data(void *s, void *h, uint64_t off, void *buf, size_t len, size_t *got,
                         struct vbc_err *e)
{
    ext2_file_t f = h;
    unsigned n = 0;
    errcode_t err;

    (void)s;
    if (len > (1u << 30))
        len = 1u << 30;
    if ((err = ext2fs_file_llseek(f, off, EXT2_SEEK_SET, NULL)) ||
        (err = ext2fs_file_read(f, buf, (unsigned)len, &n)))
        return vbc_seterr(e, -EIO, "reading file data: %s", error_message(err));
    *got = n;
    return 0;
}

static void img_close_data(void *s, void *h)
{
    (void)s;
    ext2fs_file_close((ext2_file_t)h);
}

const struct vbc_source_ops vbc_image_ops = {
    .prepare = img_prepare,
    .walk = img_walk,
    .open_data = img_open_data,
    .read_data = img_read_data,
    .close_data = img_close_data,
};

void *vbc_image_new(const struct vbc_image_opts *io)
{
    struct img *g = calloc(1, sizeof(*g));

    if (g)
        g->io = io;
    return g;
}

void vbc_image_free(void *s)
{
    struct img *g = s;

    if (!g)
        return;
    if (g->fs)
        ext2fs_close_free(&g->fs);
    for (size_t i = 0; i < g->n_roots; i++)
        free(g->roots[i].abs);
    free(g->mnt);
    free(g->path);
    free(g->ext);
    free(g->xin);
    free(g->xs.buf);
    free(g);
}
