/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A bounded cache of decoded chunks (least recently used out first), shared
 * by the threads that serve one repository: a chunk asked for by several
 * threads at once is read once, the others wait for it; a reference keeps a
 * chunk's bytes alive while its user copies from them, also when it is
 * evicted meanwhile.  Prefetch threads read chunks that a reader is about
 * to need (sequential read-ahead, NBD_CMD_CACHE) into the cache.
 */
#ifndef VB_CHUNKCACHE_H
#define VB_CHUNKCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "snapread.h"

struct vb_ccache;
struct vb_cchunk;            /* one cached chunk, referenced */

/* max_bytes: how much decoded data the cache keeps (chunks in use by a
 * reader are kept on top of that until released). */
struct vb_ccache *vb_ccache_new(struct vb_sr *src, size_t max_bytes);
/* Start n prefetch threads (none until this is called). */
int vb_ccache_start_prefetch(struct vb_ccache *c, int n, vb_error *e);
/* Stops the prefetch threads (their queued work is dropped); every chunk
 * reference must have been released. */
void vb_ccache_free(struct vb_ccache *c);

/* The chunk id of len bytes, read (and checked: id in space sp, the
 * snapshot's) unless cached.  A chunk cached under another space is -EBADMSG
 * (ids of two dedup groups never meet unless an index was tampered with). */
int vb_ccache_get(struct vb_ccache *c, const struct vb_idspace *sp, const uint8_t id[VB_ID_LEN],
                  uint32_t len, struct vb_cchunk **out, vb_error *e);
const uint8_t *vb_cchunk_data(const struct vb_cchunk *ch);
void vb_cchunk_release(struct vb_ccache *c, struct vb_cchunk *ch);

/* Read the chunk into the cache in the background unless it is there or on
 * its way; does nothing without prefetch threads or when they are busy. */
void vb_ccache_prefetch(struct vb_ccache *c, const struct vb_idspace *sp,
                        const uint8_t id[VB_ID_LEN], uint32_t len);

struct vb_ccache_stats {
    uint64_t hits, misses, waits, prefetched, evicted, errors;
    size_t bytes;            /* decoded bytes held now */
};
void vb_ccache_stats(struct vb_ccache *c, struct vb_ccache_stats *st);

#endif
