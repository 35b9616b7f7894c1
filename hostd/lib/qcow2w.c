/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "qcow2w.h"

#include <endian.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CLUSTER_BITS 16
#define CLUSTER      (1u << CLUSTER_BITS)
#define L2_ENTRIES   (CLUSTER / 8)
#define OFLAG_COPIED (1ull << 63)
#define REFCOUNT_ORDER 4                    /* 16-bit refcounts */
#define REFS_PER_BLOCK (CLUSTER * 8 / 16)

struct vb_q2w {
    int fd;
    char *path;
    uint64_t size;
    uint64_t l1_entries;
    uint64_t l1_clusters;
    uint64_t next_free;      /* host offset of the next free cluster */
    uint64_t **l2;           /* per L1 entry, host-endian data offsets (0 = unallocated) */
};

static uint64_t div_up(uint64_t a, uint64_t b)
{
    return (a + b - 1) / b;
}

uint32_t vb_q2w_cluster_size(const struct vb_q2w *w)
{
    (void)w;
    return CLUSTER;
}

int vb_q2w_create(int fd, const char *path, uint64_t size, struct vb_q2w **out, vb_error *e)
{
    struct vb_q2w *w = calloc(1, sizeof(*w));

    if (!w)
        return vb_seterr(e, -ENOMEM, "out of memory");
    w->fd = fd;
    w->path = strdup(path);
    w->size = size;
    w->l1_entries = VB_MAX(div_up(size, (uint64_t)CLUSTER * L2_ENTRIES), 1u);
    w->l1_clusters = div_up(w->l1_entries * 8, CLUSTER);
    w->next_free = (1 + w->l1_clusters) * CLUSTER;
    w->l2 = calloc(w->l1_entries, sizeof(*w->l2));
    if (!w->l2) {
        vb_q2w_free(w);
        return vb_seterr(e, -ENOMEM, "out of memory");
    }
    *out = w;
    return 0;
}

int vb_q2w_alloc(struct vb_q2w *w, uint64_t guest_off, uint64_t *host_off, vb_error *e)
{
    uint64_t c = guest_off >> CLUSTER_BITS, l1 = c / L2_ENTRIES, l2 = c % L2_ENTRIES;

    if (guest_off % CLUSTER || guest_off >= w->size)
        return vb_seterr(e, -EINVAL, "qcow2 writer: bad guest offset %#llx",
                         (unsigned long long)guest_off);
    if (!w->l2[l1]) {
        w->l2[l1] = calloc(L2_ENTRIES, sizeof(uint64_t));
        if (!w->l2[l1])
            return vb_seterr(e, -ENOMEM, "out of memory");
    }
    if (w->l2[l1][l2])
        return vb_seterr(e, -EEXIST, "qcow2 writer: guest cluster %#llx written twice",
                         (unsigned long long)guest_off);
    w->l2[l1][l2] = w->next_free;
    *host_off = w->next_free;
    w->next_free += CLUSTER;
    return 0;
}

static int pwrite_all(struct vb_q2w *w, const void *buf, size_t len, uint64_t off, vb_error *e)
{
    const uint8_t *p = buf;

    while (len) {
        ssize_t n = pwrite(w->fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return vb_seterr(e, -errno, "write %s: %s", w->path, strerror(errno));
        }
        p += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return 0;
}

int vb_q2w_finish(struct vb_q2w *w, vb_error *e)
{
    uint64_t *l1 = calloc(w->l1_clusters * L2_ENTRIES, 8);
    uint64_t *tbl = malloc(CLUSTER);
    uint64_t used, rb = 0, rt = 0, total, rt_off, rb_off;
    uint8_t hdr[CLUSTER];
    int ret = 0;

    if (!l1 || !tbl) {
        ret = vb_seterr(e, -ENOMEM, "out of memory");
        goto out;
    }
    /* L2 tables after the data */
    for (uint64_t i = 0; i < w->l1_entries && !ret; i++) {
        if (!w->l2[i])
            continue;
        for (unsigned j = 0; j < L2_ENTRIES; j++)
            tbl[j] = w->l2[i][j] ? htobe64(w->l2[i][j] | OFLAG_COPIED) : 0;
        l1[i] = htobe64(w->next_free | OFLAG_COPIED);
        ret = pwrite_all(w, tbl, CLUSTER, w->next_free, e);
        w->next_free += CLUSTER;
    }
    if (ret)
        goto out;
    ret = pwrite_all(w, l1, w->l1_clusters * CLUSTER, CLUSTER, e);
    if (ret)
        goto out;

    /* refcount structures cover themselves: iterate to a fixed point */
    used = w->next_free / CLUSTER;
    for (;;) {
        uint64_t t = used + rb + rt;
        uint64_t nrb = div_up(t, REFS_PER_BLOCK), nrt = div_up(nrb * 8, CLUSTER);
        if (nrb == rb && nrt == rt)
            break;
        rb = nrb;
        rt = nrt;
    }
    total = used + rb + rt;
    rt_off = w->next_free;
    rb_off = rt_off + rt * CLUSTER;
    {
        uint64_t *rtab = calloc(rt * L2_ENTRIES, 8);
        uint16_t *blk = malloc(CLUSTER);
        if (!rtab || !blk) {
            free(rtab);
            free(blk);
            ret = vb_seterr(e, -ENOMEM, "out of memory");
            goto out;
        }
        for (uint64_t b = 0; b < rb && !ret; b++) {
            rtab[b] = htobe64(rb_off + b * CLUSTER);
            for (unsigned k = 0; k < REFS_PER_BLOCK; k++)
                blk[k] = b * REFS_PER_BLOCK + k < total ? htobe16(1) : 0;
            ret = pwrite_all(w, blk, CLUSTER, rb_off + b * CLUSTER, e);
        }
        if (!ret)
            ret = pwrite_all(w, rtab, rt * CLUSTER, rt_off, e);
        free(rtab);
        free(blk);
        if (ret)
            goto out;
    }

    memset(hdr, 0, sizeof(hdr));
#define PUT32(o, v) do { uint32_t x_ = htobe32(v); memcpy(hdr + (o), &x_, 4); } while (0)
#define PUT64(o, v) do { uint64_t x_ = htobe64(v); memcpy(hdr + (o), &x_, 8); } while (0)
    PUT32(0, 0x514649fbu);
    PUT32(4, 3);
    PUT32(20, CLUSTER_BITS);
    PUT64(24, w->size);
    PUT32(36, (uint32_t)w->l1_entries);
    PUT64(40, CLUSTER);
    PUT64(48, rt_off);
    PUT32(56, (uint32_t)rt);
    PUT32(96, REFCOUNT_ORDER);
    PUT32(100, 104);
#undef PUT32
#undef PUT64
    ret = pwrite_all(w, hdr, CLUSTER, 0, e);
    if (ret)
        goto out;
    if (ftruncate(w->fd, (off_t)(total * CLUSTER)) < 0) {
        ret = vb_seterr(e, -errno, "truncate %s: %s", w->path, strerror(errno));
        goto out;
    }
    if (fsync(w->fd) < 0)
        ret = vb_seterr(e, -errno, "fsync %s: %s", w->path, strerror(errno));
out:
    free(l1);
    free(tbl);
    return ret;
}

void vb_q2w_free(struct vb_q2w *w)
{
    if (!w)
        return;
    for (uint64_t i = 0; w->l2 && i < w->l1_entries; i++)
        free(w->l2[i]);
    free(w->l2);
    free(w->path);
    free(w);
}
