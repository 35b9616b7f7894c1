/* SPDX-License-Identifier: GPL-2.0-or-later */
/* qcow2 metadata: header, L1, L2 (standard and extended entries). */
#ifndef VB_QCOW2_H
#define VB_QCOW2_H

#include <stdint.h>

#include "image.h"

#define QCOW2_MAGIC 0x514649fbu   /* "QFI\xfb" */

enum vb_q2_comp { VB_Q2_ZLIB = 0, VB_Q2_ZSTD = 1 };

/* Classification of one (sub)cluster run inside one layer. */
enum vb_q2_kind {
    VB_Q2_DATA = 1,
    VB_Q2_ZERO = 2,
    VB_Q2_UNALLOC = 3,      /* look in the backing file */
    VB_Q2_COMPRESSED = 4,
};

struct vb_q2_run {
    uint64_t len;           /* bytes from the asked offset (never past the cluster) */
    uint8_t kind;
    uint64_t host_off;      /* DATA: host offset of the asked offset; COMPRESSED: data offset */
    uint32_t comp_len;
    uint64_t cluster_off;   /* COMPRESSED: offset in the cluster */
};

/* Parse the header of an open file; fills the layer's qcow2 state,
 * virtual size and backing file name (malloc'd, NULL if none) and its
 * format ("raw", "qcow2" or NULL if the image does not say). */
int vb_q2_open(struct vb_layer *l, char **backing, char **backing_fmt, vb_error *e);
void vb_q2_close(struct vb_layer *l);
/* Classify the run of bytes starting at guest offset off (< virtual size),
 * at most len bytes and never crossing a (sub)cluster of a different kind. */
int vb_q2_lookup(struct vb_layer *l, uint64_t off, uint64_t len, struct vb_q2_run *run,
                 vb_error *e);
uint32_t vb_q2_cluster_size(const struct vb_layer *l);
int vb_q2_inflate(const struct vb_layer *l, const uint8_t *in, size_t in_len,
                  uint8_t *out, vb_error *e);

#endif
