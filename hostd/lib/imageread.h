/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Synchronous reads of an image's guest ranges with plain pread: for a
 * reader that wants a few blocks at a time (the file system mapper's
 * io_manager), not for the data mover (reader.h, io_uring).
 */
#ifndef VB_IMAGEREAD_H
#define VB_IMAGEREAD_H

#include "image.h"

/* Reads [off, off + len) of the guest disk into BUF: data from the layer
 * that holds it, zeros for holes, unallocated and zero clusters and past the
 * image's end, compressed clusters inflated.  0 or -errno with E set. */
int vb_image_pread(struct vb_image *img, void *buf, size_t len, uint64_t off, vb_error *e);

#endif
