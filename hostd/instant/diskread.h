/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Random access to the bytes of a disk snapshot, through a chunk cache:
 * reads of any offset and length (holes read as zeros), the map of data and
 * holes, and read-ahead for readers that go through the disk in order.  Used
 * by the NBD export (nbdkit plugin) and by the disk images of the FUSE mount;
 * thread-safe.
 */
#ifndef VB_DISKREAD_H
#define VB_DISKREAD_H

#include <stdbool.h>
#include <stdint.h>

#include "chunkcache.h"
#include "snapread.h"

struct vb_diskread;

/* readahead: chunks read ahead of a sequential reader (0: none). */
struct vb_diskread *vb_diskread_new(const struct vb_sr_snap *s, struct vb_ccache *c,
                                    unsigned readahead);
void vb_diskread_free(struct vb_diskread *d);
uint64_t vb_diskread_size(const struct vb_diskread *d);

/* [off, off + len) must lie inside the disk (-EINVAL otherwise). */
int vb_diskread_pread(struct vb_diskread *d, void *buf, size_t len, uint64_t off,
                      vb_error *e);

/* The run of the disk that starts at off (< size) and is all data or all
 * holes: *len bytes, *hole says which.  The run is looked for up to at
 * least off + max (max >= 1): it may end there although the same kind goes
 * on, or go further. */
void vb_diskread_extent(const struct vb_diskread *d, uint64_t off, uint64_t max,
                        uint64_t *len, bool *hole);

/* Ask for [off, off + len) to be read into the cache in the background. */
void vb_diskread_prefetch(struct vb_diskread *d, uint64_t off, uint64_t len);

#endif
