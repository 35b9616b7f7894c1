/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Random access to a disk snapshot (diskread.h).  A read is cut at chunk
 * boundaries; each piece is copied out of the cached chunk, or zeroed for a
 * hole.  Read-ahead: when a read begins in the chunk where the previous one
 * ended (or the one after), the next chunks are handed to the cache's
 * prefetch threads, so that one client reading in order (a VM booting,
 * qemu-img convert, cp of the image) finds them decoded.
 */
#include "diskread.h"

#include <string.h>

struct vb_diskread {
    const struct vb_sr_snap *s;
    struct vb_ccache *c;
    uint64_t size;
    uint32_t chunk;
    uint64_t n;
    unsigned readahead;
    gint64 last;             /* chunk in which the last read ended; -1: none */
    gint64 ahead;            /* highest chunk handed to prefetch */
};

struct vb_diskread *vb_diskread_new(const struct vb_sr_snap *s, struct vb_ccache *c,
                                    unsigned readahead)
{
    struct vb_diskread *d = g_new0(struct vb_diskread, 1);

    d->s = s;
    d->c = c;
    d->size = vb_sr_disk_size(s);
    d->chunk = vb_sr_disk_chunk_size(s);
    d->n = vb_sr_disk_chunks(s);
    d->readahead = readahead;
    d->last = -1;
    d->ahead = -1;
    return d;
}

void vb_diskread_free(struct vb_diskread *d)
{
    g_free(d);
}

uint64_t vb_diskread_size(const struct vb_diskread *d)
{
    return d->size;
}

static uint32_t chunk_len(const struct vb_diskread *d, uint64_t i)
{
    uint64_t start = i * d->chunk;

    return (uint32_t)VB_MIN((uint64_t)d->chunk, d->size - start);
}

static void prefetch_range(struct vb_diskread *d, uint64_t first, uint64_t last)
{
    for (uint64_t i = first; i <= last && i < d->n; i++) {
        const uint8_t *id = vb_sr_disk_chunk(d->s, i);
        if (id)
            vb_ccache_prefetch(d->c, vb_sr_snap_space(d->s), id, chunk_len(d, i));
    }
}

/* Sequential readers get the next chunks read ahead; each chunk is handed
 * over once per pass (racing readers may hand one over twice: harmless). */
static void read_ahead(struct vb_diskread *d, uint64_t first, uint64_t last)
{
    gint64 prev = __atomic_exchange_n(&d->last, (gint64)last, __ATOMIC_RELAXED);
    gint64 ahead, from, to;

    if (!d->readahead || prev < 0 || (uint64_t)prev + 1 < first || (uint64_t)prev > last)
        return;
    to = (gint64)last + d->readahead;
    ahead = __atomic_load_n(&d->ahead, __ATOMIC_RELAXED);
    from = ahead >= (gint64)last && ahead < to ? ahead + 1 : (gint64)last + 1;
    if (from > to)
        return;
    __atomic_store_n(&d->ahead, to, __ATOMIC_RELAXED);
    prefetch_range(d, (uint64_t)from, (uint64_t)to);
}

int vb_diskread_pread(struct vb_diskread *d, void *buf, size_t len, uint64_t off,
                      vb_error *e)
{
    uint8_t *p = buf;
    uint64_t end;

    if (off > d->size || len > d->size - off)
        return vb_seterr(e, -EINVAL, "read of %zu bytes at %llu is beyond the disk's end "
                         "(%llu)", len, (unsigned long long)off, (unsigned long long)d->size);
    if (!len)
        return 0;
    end = off + len;
    read_ahead(d, off / d->chunk, (end - 1) / d->chunk);
    while (off < end) {
        uint64_t i = off / d->chunk;
        uint32_t in = (uint32_t)(off - i * d->chunk);
        size_t n = (size_t)VB_MIN(end - off, (uint64_t)chunk_len(d, i) - in);
        const uint8_t *id = vb_sr_disk_chunk(d->s, i);

        if (!id) {
            memset(p, 0, n);
        } else {
            struct vb_cchunk *ch;
            int ret = vb_ccache_get(d->c, vb_sr_snap_space(d->s), id, chunk_len(d, i),
                                     &ch, e);
            if (ret)
                return ret;
            memcpy(p, vb_cchunk_data(ch) + in, n);
            vb_cchunk_release(d->c, ch);
        }
        p += n;
        off += n;
    }
    return 0;
}

void vb_diskread_extent(const struct vb_diskread *d, uint64_t off, uint64_t max,
                        uint64_t *len, bool *hole)
{
    uint64_t i = off / d->chunk, k = i + 1;
    uint64_t stop = max > d->size - off ? d->n : (off + max - 1) / d->chunk + 1;

    *hole = vb_sr_disk_chunk(d->s, i) == NULL;
    while (k < stop && (vb_sr_disk_chunk(d->s, k) == NULL) == *hole)
        k++;
    *len = VB_MIN(k * (uint64_t)d->chunk, d->size) - off;
}

void vb_diskread_prefetch(struct vb_diskread *d, uint64_t off, uint64_t len)
{
    if (off >= d->size || !len)
        return;
    len = VB_MIN(len, d->size - off);
    prefetch_range(d, off / d->chunk, (off + len - 1) / d->chunk);
}
