/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Read a guest range of an image into a buffer: map it, zero what is not
 * allocated, queue io_uring reads for data (O_DIRECT when aligned) and for
 * compressed clusters, and inflate those afterwards (vb_rd_finish, on a
 * worker thread).
 */
#ifndef VB_READER_H
#define VB_READER_H

#include "image.h"
#include "uring.h"

struct vb_rd_comp {
    int depth;
    uint64_t cluster_off;
    uint32_t dst_off;        /* where the guest bytes go in rd->buf */
    uint32_t dst_len;
    uint32_t comp_len;
    uint8_t *cbuf;           /* compressed bytes */
};

struct vb_rd {
    struct vb_image *img;
    uint64_t off;
    uint32_t len;
    uint8_t *buf;            /* len bytes; page aligned for O_DIRECT */
    void (*done)(struct vb_rd *rd);   /* all reads finished (ring thread) */
    void *opaque;
    /* only what the top layer holds: its data and compressed clusters are
     * read and its zeros written; bytes the layers under it would give are
     * left as they are in buf (changed-block tracking, cbt.h) */
    bool top_only;

    /* results */
    uint64_t data_bytes;     /* guest bytes mapped as data or compressed */
    int err;                 /* first I/O error */
    vb_error e;

    /* internal */
    unsigned pending;
    unsigned n_ios, n_comps;
    struct vb_io *ios;
    struct vb_rd_comp *comps;
};

/*
 * Start reading.  Returns 1 if the range holds no data at all (only zeros
 * and holes: buf is left untouched, except for the top layer's zeros with
 * top_only, and done is NOT called), 0 if reads were
 * queued (done will be called once they finish), or -errno (mapping failed).
 */
int vb_rd_start(struct vb_ring *ring, struct vb_rd *rd, GArray *scratch, vb_error *e);
/* Inflate compressed clusters into the buffer; call once reads are done. */
int vb_rd_finish(struct vb_rd *rd, vb_error *e);
void vb_rd_clear(struct vb_rd *rd);

#endif
