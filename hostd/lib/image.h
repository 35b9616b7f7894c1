/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Disk image readers: raw and qcow2 (v2, v3), backing chains of any mix.
 *
 * An image is the chain top → base.  vb_image_map() tells, for a guest
 * range, where every byte comes from: a data range of one file of the
 * chain, a compressed cluster, explicit zeros, or nothing (a hole through
 * the whole chain).  Data moves separately (io_uring, see uring.h and
 * reader.h); mapping reads only metadata, with plain pread and a cache.
 *
 * Every offset and size read from an image is checked against the file
 * and the format's limits where it is parsed; a damaged or hostile image
 * gets an error naming the file and the fault, never a read outside it.
 */
#ifndef VB_IMAGE_H
#define VB_IMAGE_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

#include "util.h"

#define VB_MAX_CHAIN 64

enum vb_fmt { VB_FMT_RAW = 1, VB_FMT_QCOW2 = 2 };

enum vb_ext_kind {
    VB_X_DATA = 1,          /* bytes at host_off of layer `depth` */
    VB_X_ZERO = 2,          /* reads as zeros (zero flag, raw hole, past a backing file's end) */
    VB_X_HOLE = 3,          /* allocated nowhere in the chain: zeros */
    VB_X_COMPRESSED = 4,    /* one compressed cluster of layer `depth` */
};

struct vb_extent_map {
    uint64_t off;           /* guest offset */
    uint64_t len;
    uint8_t kind;           /* vb_ext_kind */
    uint8_t depth;          /* index of the layer in the chain (0 = top); HOLE: chain length */
    uint16_t pad;
    uint32_t comp_len;      /* COMPRESSED: compressed bytes at host_off (clipped to the file) */
    uint64_t host_off;      /* DATA: file offset of `off`; COMPRESSED: offset of the compressed data */
    uint64_t cluster_off;   /* COMPRESSED: offset of `off` inside the decompressed cluster */
};

struct vb_qcow2;

struct vb_layer {
    char *path;             /* as opened (absolute or relative to the cwd) */
    int fd;                 /* buffered, read-only */
    int dfd;                /* O_DIRECT, or -1 */
    uint32_t dio_mem_align;
    uint32_t dio_off_align;
    uint64_t file_size;
    uint64_t virtual_size;
    dev_t dev;
    ino_t ino;
    enum vb_fmt fmt;
    struct vb_qcow2 *q;     /* qcow2 state, NULL for raw */
    bool has_holes;         /* raw: SEEK_HOLE reports holes */
};

struct vb_image {
    int n;                  /* layers in the chain */
    struct vb_layer layer[VB_MAX_CHAIN];
    uint64_t size;          /* virtual size of the top */
    uint32_t cluster_size;  /* top layer's cluster size (raw: 64 KiB, for planning) */
};

/*
 * Formats are never guessed from an image's content: a guest owns every byte
 * of its raw disk and could write a qcow2 header naming any host file as its
 * backing file (CVE-2008-2004).  The top image's format is given by the
 * caller (the host's configuration); each backing file's format is the one
 * its overlay's header names (the backing format extension, written by
 * qemu-img or QEMU, never by the guest), else backing_format, else the
 * chain is refused.
 */
struct vb_image_opts {
    const char *format;         /* "raw" or "qcow2": required */
    const char *backing_format; /* "raw", "qcow2" or NULL: backing files whose
                                 * overlay names no format have this one */
    bool no_direct;             /* don't open O_DIRECT descriptors */
};

/* "raw" and "qcow2" are the formats the readers know */
bool vb_fmt_valid(const char *name);

int vb_image_open(const char *path, const struct vb_image_opts *opts,
                  struct vb_image **out, vb_error *e);
void vb_image_close(struct vb_image *img);

/*
 * The chain FDS[0] (top) .. FDS[N-1] (base), opened by someone else (the
 * fds are taken over, also on failure), each in the format FMTS[i].  Nothing
 * is opened by name: each layer but the last must name a backing file (whose
 * name is not used) and the last none; a backing format an overlay names must
 * be the next layer's.  Layers are named "layer I" in messages.  No O_DIRECT.
 */
int vb_image_open_fds(const int *fds, const enum vb_fmt *fmts, int n, struct vb_image **out,
                      vb_error *e);

/*
 * Map [off, off+len) (clipped to the image size).  Appends extents in
 * ascending order to out (a GArray of struct vb_extent_map), merging
 * neighbours of the same kind and source.  Returns 0 or -errno.
 */
int vb_image_map(struct vb_image *img, uint64_t off, uint64_t len,
                 GArray *out, vb_error *e);

/* Inflate one compressed cluster of layer `depth`: in (comp_len bytes)
 * into out (the layer's cluster size).  Thread-safe. */
int vb_image_inflate(const struct vb_image *img, int depth,
                     const uint8_t *in, size_t in_len, uint8_t *out, vb_error *e);
uint32_t vb_image_layer_cluster_size(const struct vb_image *img, int depth);

const char *vb_fmt_name(enum vb_fmt f);

#endif
