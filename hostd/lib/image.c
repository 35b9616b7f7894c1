/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Image chains: open each layer in the format the host stated, follow
 * backing files, map ranges.  No format is ever probed (see image.h).
 */
#include "image.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qcow2.h"

#define RAW_PLAN_CLUSTER (64u << 10)

const char *vb_fmt_name(enum vb_fmt f)
{
    return f == VB_FMT_QCOW2 ? "qcow2" : f == VB_FMT_RAW ? "raw" : "?";
}

bool vb_fmt_valid(const char *name)
{
    return name && (!strcmp(name, "raw") || !strcmp(name, "qcow2"));
}

static void dio_alignment(struct vb_layer *l)
{
    struct statx stx;

    l->dio_mem_align = 4096;
    l->dio_off_align = 4096;
#ifdef STATX_DIOALIGN
    if (statx(l->fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
        (stx.stx_mask & STATX_DIOALIGN) && stx.stx_dio_mem_align && stx.stx_dio_offset_align) {
        l->dio_mem_align = stx.stx_dio_mem_align;
        l->dio_off_align = stx.stx_dio_offset_align;
    }
#else
    (void)stx;
#endif
}

/* Layer L from the open FD (taken over), named NAME in messages. */
static int init_layer(struct vb_layer *l, int fd, const char *name, const char *fmt,
                      char **backing, char **backing_fmt, vb_error *e)
{
    struct stat st;
    int ret;

    memset(l, 0, sizeof(*l));
    l->fd = fd;
    l->dfd = -1;
    l->path = strdup(name);
    if (!l->path)
        return vb_seterr(e, -ENOMEM, "out of memory");
    if (fstat(l->fd, &st) < 0)
        return vb_seterr(e, -errno, "stat %s: %s", name, strerror(errno));
    if (S_ISBLK(st.st_mode)) {
        off_t end = lseek(l->fd, 0, SEEK_END);
        if (end < 0)
            return vb_seterr(e, -errno, "lseek %s: %s", name, strerror(errno));
        l->file_size = (uint64_t)end;
    } else if (S_ISREG(st.st_mode)) {
        l->file_size = (uint64_t)st.st_size;
    } else {
        return vb_seterr(e, -EINVAL, "%s: not a regular file or block device", name);
    }
    l->dev = st.st_dev;
    l->ino = st.st_ino;

    if (strcmp(fmt, "qcow2") == 0) {
        l->fmt = VB_FMT_QCOW2;
        ret = vb_q2_open(l, backing, backing_fmt, e);
        if (ret)
            return ret;
    } else if (strcmp(fmt, "raw") == 0) {
        l->fmt = VB_FMT_RAW;
        /* QEMU sizes disks in 512-byte sectors: a raw file's tail reads as zeros */
        l->virtual_size = VB_ALIGN_UP(l->file_size, 512);
        /* only files with holes need the slower SEEK_DATA walk */
        l->has_holes = S_ISREG(st.st_mode) &&
                       (uint64_t)st.st_blocks * 512 < (uint64_t)st.st_size;
    } else {
        return vb_seterr(e, -ENOTSUP, "%s: image format '%s' is not supported (raw, qcow2)",
                         name, fmt);
    }
    return 0;
}

static int open_layer(struct vb_layer *l, const char *path, const char *fmt,
                      const struct vb_image_opts *opts, char **backing, char **backing_fmt,
                      vb_error *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC), ret;

    if (fd < 0) {
        memset(l, 0, sizeof(*l));
        l->fd = l->dfd = -1;
        return vb_seterr(e, -errno, "open %s: %s", path, strerror(errno));
    }
    ret = init_layer(l, fd, path, fmt, backing, backing_fmt, e);
    if (ret)
        return ret;
    if (!opts || !opts->no_direct) {
        l->dfd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
        if (l->dfd >= 0)
            dio_alignment(l);
    }
    return 0;
}

static void close_layer(struct vb_layer *l)
{
    if (l->q)
        vb_q2_close(l);
    if (l->fd >= 0)
        close(l->fd);
    if (l->dfd >= 0)
        close(l->dfd);
    free(l->path);
    memset(l, 0, sizeof(*l));
    l->fd = l->dfd = -1;
}

void vb_image_close(struct vb_image *img)
{
    if (!img)
        return;
    for (int i = 0; i < img->n; i++)
        close_layer(&img->layer[i]);
    free(img);
}

/* Backing names are relative to the folder of the image that names them. */
static char *resolve_backing(const char *image, const char *backing)
{
    const char *slash;
    char *out;

    if (backing[0] == '/' || !(slash = strrchr(image, '/')))
        return strdup(backing);
    if (asprintf(&out, "%.*s/%s", (int)(slash - image), image, backing) < 0)
        return NULL;
    return out;
}

int vb_image_open(const char *path, const struct vb_image_opts *opts,
                  struct vb_image **out, vb_error *e)
{
    struct vb_image *img = calloc(1, sizeof(*img));
    char *cur = strdup(path), *fmt = NULL;
    int ret = 0;

    if (!img || !cur) {
        ret = vb_seterr(e, -ENOMEM, "out of memory");
        goto fail;
    }
    if (!opts || !opts->format) {
        ret = vb_seterr(e, -EINVAL, "%s: the image's format (raw or qcow2) is required; it is "
                        "never guessed from the image's content, which a VM may have written",
                        path);
        goto fail;
    }
    if (opts->backing_format && !vb_fmt_valid(opts->backing_format)) {
        ret = vb_seterr(e, -EINVAL, "%s: backing format must be raw or qcow2, not '%s'", path,
                        opts->backing_format);
        goto fail;
    }
    fmt = strdup(opts->format);
    if (!fmt) {
        ret = vb_seterr(e, -ENOMEM, "out of memory");
        goto fail;
    }
    for (;;) {
        struct vb_layer *l;
        char *backing = NULL, *bfmt = NULL;

        if (img->n == VB_MAX_CHAIN) {
            ret = vb_seterr(e, -ELOOP, "%s: backing chain deeper than %d images", path,
                            VB_MAX_CHAIN);
            goto fail;
        }
        l = &img->layer[img->n++];
        ret = open_layer(l, cur, fmt, opts, &backing, &bfmt, e);
        free(fmt);
        fmt = NULL;
        if (ret && img->n > 1)
            vb_prefixerr(e, "backing file of %s", img->layer[img->n - 2].path);
        if (ret) {
            free(backing);
            free(bfmt);
            goto fail;
        }
        for (int i = 0; i + 1 < img->n; i++) {
            if (img->layer[i].dev == l->dev && img->layer[i].ino == l->ino) {
                ret = vb_seterr(e, -ELOOP, "%s: backing chain loops: %s is also layer %d (%s)",
                                path, l->path, i, img->layer[i].path);
                free(backing);
                free(bfmt);
                goto fail;
            }
        }
        if (!backing) {
            free(bfmt);
            break;
        }
        /* the backing file's format: as the overlay's header names it, or as
         * the host pinned it; never guessed from the backing file itself */
        if (!bfmt && opts->backing_format && !(bfmt = strdup(opts->backing_format))) {
            free(backing);
            ret = vb_seterr(e, -ENOMEM, "out of memory");
            goto fail;
        }
        if (!bfmt) {
            ret = vb_seterr(e, -EINVAL, "%s names its backing file %s without a format, and "
                            "formats are never guessed from an image's content (a VM may have "
                            "written it): record it with 'qemu-img rebase -u -b %s -F raw|qcow2 "
                            "%s', or pin it (backing_format=, --backing-format)", l->path,
                            backing, backing, l->path);
            free(backing);
            goto fail;
        }
        free(cur);
        cur = resolve_backing(l->path, backing);
        free(backing);
        fmt = bfmt;
        if (!cur) {
            ret = vb_seterr(e, -ENOMEM, "out of memory");
            goto fail;
        }
    }
    img->size = img->layer[0].virtual_size;
    img->cluster_size = img->layer[0].fmt == VB_FMT_QCOW2 ? vb_q2_cluster_size(&img->layer[0])
                                                          : RAW_PLAN_CLUSTER;
    free(cur);
    *out = img;
    return 0;
fail:
    free(cur);
    free(fmt);
    vb_image_close(img);
    return ret;
}

int vb_image_open_fds(const int *fds, const enum vb_fmt *fmts, int n, struct vb_image **out,
                      vb_error *e)
{
    struct vb_image *img;
    int ret = 0, i;

    if (n < 1 || n > VB_MAX_CHAIN) {
        for (i = 0; i < n; i++)
            close(fds[i]);
        return vb_seterr(e, -EINVAL, "a chain of %d images (1..%d)", n, VB_MAX_CHAIN);
    }
    img = calloc(1, sizeof(*img));
    if (!img) {
        for (i = 0; i < n; i++)
            close(fds[i]);
        return vb_seterr(e, -ENOMEM, "out of memory");
    }
    for (i = 0; i < n; i++)
        img->layer[i].fd = img->layer[i].dfd = -1;
    for (i = 0; i < n; i++) {
        struct vb_layer *l = &img->layer[i];
        char name[32], *backing = NULL, *bfmt = NULL;

        snprintf(name, sizeof(name), "layer %d", i);
        img->n = i + 1;
        if (fmts[i] != VB_FMT_RAW && fmts[i] != VB_FMT_QCOW2) {
            for (int k = i; k < n; k++)
                close(fds[k]);
            ret = vb_seterr(e, -EINVAL, "%s: unknown format %d", name, (int)fmts[i]);
            goto fail;
        }
        ret = init_layer(l, fds[i], name, vb_fmt_name(fmts[i]), &backing, &bfmt, e);
        if (!ret && !backing != (i == n - 1))
            ret = vb_seterr(e, -EINVAL, "%s %s a backing file, but the chain given %s", name,
                            backing ? "names" : "does not name",
                            i == n - 1 ? "ends here" : "goes on");
        if (!ret && bfmt && (!vb_fmt_valid(bfmt) || strcmp(bfmt, vb_fmt_name(fmts[i + 1]))))
            ret = vb_seterr(e, -EINVAL, "%s names its backing file's format '%s', but layer %d "
                            "is %s", name, bfmt, i + 1, vb_fmt_name(fmts[i + 1]));
        free(backing);
        free(bfmt);
        if (ret) {
            for (int k = i + 1; k < n; k++)
                close(fds[k]);
            goto fail;
        }
    }
    img->size = img->layer[0].virtual_size;
    img->cluster_size = img->layer[0].fmt == VB_FMT_QCOW2 ? vb_q2_cluster_size(&img->layer[0])
                                                          : RAW_PLAN_CLUSTER;
    *out = img;
    return 0;
fail:
    vb_image_close(img);
    return ret;
}

static void push(GArray *out, uint64_t off, uint64_t len, uint8_t kind, uint8_t depth,
                 uint64_t host_off, uint32_t comp_len, uint64_t cluster_off)
{
    if (out->len && kind != VB_X_COMPRESSED) {
        struct vb_extent_map *p = &g_array_index(out, struct vb_extent_map, out->len - 1);
        if (p->kind == kind && p->depth == depth && p->off + p->len == off &&
            (kind != VB_X_DATA || p->host_off + p->len == host_off)) {
            p->len += len;
            return;
        }
    }
    struct vb_extent_map m = {
        .off = off, .len = len, .kind = kind, .depth = depth,
        .comp_len = comp_len, .host_off = host_off, .cluster_off = cluster_off,
    };
    g_array_append_val(out, m);
}

static int map_raw(struct vb_image *img, int d, uint64_t off, uint64_t len, GArray *out,
                   vb_error *e)
{
    struct vb_layer *l = &img->layer[d];
    uint64_t end = off + len;

    if (end > l->file_size) {       /* the sector-rounding tail past the file's end */
        uint64_t tail = VB_MAX(off, l->file_size);
        if (off < tail) {
            int ret = map_raw(img, d, off, tail - off, out, e);
            if (ret)
                return ret;
        }
        push(out, tail, end - tail, VB_X_ZERO, (uint8_t)d, 0, 0, 0);
        return 0;
    }
    if (!l->has_holes) {
        push(out, off, len, VB_X_DATA, (uint8_t)d, off, 0, 0);
        return 0;
    }
    while (off < end) {
        off_t data = lseek(l->fd, (off_t)off, SEEK_DATA), hole;
        if (data < 0 && errno != ENXIO)
            return vb_seterr(e, -errno, "lseek %s: %s", l->path, strerror(errno));
        if (data < 0 || (uint64_t)data >= end) {
            push(out, off, end - off, VB_X_ZERO, (uint8_t)d, 0, 0, 0);
            return 0;
        }
        if ((uint64_t)data > off)
            push(out, off, (uint64_t)data - off, VB_X_ZERO, (uint8_t)d, 0, 0, 0);
        hole = lseek(l->fd, data, SEEK_HOLE);
        if (hole < 0)
            return vb_seterr(e, -errno, "lseek %s: %s", l->path, strerror(errno));
        if ((uint64_t)hole > end)
            hole = (off_t)end;
        push(out, (uint64_t)data, (uint64_t)(hole - data), VB_X_DATA, (uint8_t)d,
             (uint64_t)data, 0, 0);
        off = (uint64_t)hole;
    }
    return 0;
}

static int map_layer(struct vb_image *img, int d, uint64_t off, uint64_t len, GArray *out,
                     vb_error *e)
{
    struct vb_layer *l;
    uint64_t end = off + len;
    int ret;

    if (d == img->n) {
        push(out, off, len, VB_X_HOLE, (uint8_t)d, 0, 0, 0);
        return 0;
    }
    l = &img->layer[d];
    if (off >= l->virtual_size) {
        /* a backing file shorter than its overlay reads as zeros */
        push(out, off, len, VB_X_ZERO, (uint8_t)d, 0, 0, 0);
        return 0;
    }
    if (end > l->virtual_size) {
        ret = map_layer(img, d, off, l->virtual_size - off, out, e);
        if (ret)
            return ret;
        push(out, l->virtual_size, end - l->virtual_size, VB_X_ZERO, (uint8_t)d, 0, 0, 0);
        return 0;
    }
    if (l->fmt == VB_FMT_RAW)
        return map_raw(img, d, off, len, out, e);

    while (off < end) {
        struct vb_q2_run run;
        ret = vb_q2_lookup(l, off, end - off, &run, e);
        if (ret)
            return ret;
        switch (run.kind) {
        case VB_Q2_DATA:
            push(out, off, run.len, VB_X_DATA, (uint8_t)d, run.host_off, 0, 0);
            break;
        case VB_Q2_ZERO:
            push(out, off, run.len, VB_X_ZERO, (uint8_t)d, 0, 0, 0);
            break;
        case VB_Q2_COMPRESSED:
            push(out, off, run.len, VB_X_COMPRESSED, (uint8_t)d, run.host_off, run.comp_len,
                 run.cluster_off);
            break;
        case VB_Q2_UNALLOC:
            ret = map_layer(img, d + 1, off, run.len, out, e);
            if (ret)
                return ret;
            break;
        }
        off += run.len;
    }
    return 0;
}

int vb_image_map(struct vb_image *img, uint64_t off, uint64_t len, GArray *out, vb_error *e)
{
    if (off >= img->size)
        return 0;
    len = VB_MIN(len, img->size - off);
    return map_layer(img, 0, off, len, out, e);
}

uint32_t vb_image_layer_cluster_size(const struct vb_image *img, int depth)
{
    const struct vb_layer *l = &img->layer[depth];

    return l->fmt == VB_FMT_QCOW2 ? vb_q2_cluster_size(l) : RAW_PLAN_CLUSTER;
}

int vb_image_inflate(const struct vb_image *img, int depth, const uint8_t *in, size_t in_len,
                     uint8_t *out, vb_error *e)
{
    const struct vb_layer *l = &img->layer[depth];

    if (l->fmt != VB_FMT_QCOW2)
        return vb_seterr(e, -EINVAL, "%s: compressed data in a raw image", l->path);
    return vb_q2_inflate(l, in, in_len, out, e);
}
