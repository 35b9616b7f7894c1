/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vbclient's source of files: an ext2/3/4 file system inside a raw copy of
 * a guest disk (at an offset or in a partition), opened with libext2fs's
 * unix_io_manager.  The walk itself, the same records as the guest's FIEMAP
 * walk, is the host mapper's (hostd/mapper/ext2walk.c).
 */
#include "ext2map.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ext2walk.h"

struct img {
    const struct vbc_image_opts *io;
    ext2_filsys fs;
    struct vb_e2walk *walk;
    uint64_t offset;
    char *mnt;                   /* the mount point, "/x/y" or "" for "/" */
    struct { char *abs; ext2_ino_t ino; } roots[VB_MAX_ROOTS];
    size_t n_roots;
};

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

static bool is_other_root(void *ctx, const char *abs)
{
    struct img *g = ctx;

    for (size_t i = 0; i < g->n_roots; i++)
        if (strcmp(g->roots[i].abs, abs) == 0)
            return true;
    return false;
}

/* ---- prepare ------------------------------------------------------------------ */

static int img_prepare(void *s, struct vbc_backup_opts *o, struct vbc_err *e)
{
    struct img *g = s;
    const struct vbc_image_opts *io = g->io;
    char opts[64];
    errcode_t err;
    int rc;

    if (!io->image || !io->serial)
        return vbc_seterr(e, -EINVAL, "a backup with vbclient needs --fs-image RAW --serial S");
    if (strlen(io->serial) == 0 || strlen(io->serial) > VB_MAX_SERIAL)
        return vbc_seterr(e, -EINVAL, "--serial must be 1 to %u bytes", VB_MAX_SERIAL);
    g->offset = io->offset;
    if (io->partition && (rc = partition_offset(io->image, io->partition, &g->offset, e)))
        return rc;
    initialize_ext2_error_table();     /* error_message() knows libext2fs's codes */
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
        struct vb_e2walk_opts wo = {
            .o = o, .disk = 0, .disk_offset = g->offset, .fsid = 1, .skip = is_other_root,
            .ctx = g,
        };

        if ((rc = vb_e2walk_new(g->fs, &wo, &g->walk, e)))
            return rc;
    }

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
        if ((rc = vb_e2walk_lookup(g->walk, inside, strlen(inside), &ino, e))) {
            vbc_prefixerr(e, "%s", p);
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

/* ---- walk and data ------------------------------------------------------------------ */

static int img_walk(void *s, int (*emit)(void *, const struct vbc_file *, const struct vbc_fb *,
                                         struct vbc_err *),
                    void *ctx, struct vbc_err *e)
{
    struct img *g = s;
    int rc = 0;

    for (size_t i = 0; i < g->n_roots && !rc; i++)
        rc = vb_e2walk_visit(g->walk, g->roots[i].ino, g->roots[i].abs, emit, ctx, e);
    return rc;
}

static int img_open_data(void *s, const struct vbc_fb *fb, void **h, struct vbc_err *e)
{
    struct img *g = s;

    return vb_e2walk_open_data(g->walk, fb, h, e);
}

static int img_read_data(void *s, void *h, uint64_t off, void *buf, size_t len, size_t *got,
                         struct vbc_err *e)
{
    (void)s;
    return vb_e2walk_read_data(h, off, buf, len, got, e);
}

static void img_close_data(void *s, void *h)
{
    (void)s;
    vb_e2walk_close_data(h);
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
    vb_e2walk_free(g->walk);
    if (g->fs)
        ext2fs_close_free(&g->fs);
    for (size_t i = 0; i < g->n_roots; i++)
        free(g->roots[i].abs);
    free(g->mnt);
    free(g);
}
