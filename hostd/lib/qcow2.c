/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qcow2 reader (docs/interop/qcow2.txt in QEMU): header, header extensions,
 * L1 and L2 tables (standard 8-byte and extended 16-byte entries), zero,
 * unallocated and compressed clusters.  Metadata is read with pread and
 * cached; data is never read here.
 */
#include "qcow2.h"

#include <endian.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#define QCOW2_MAX_L1_BYTES     (32u << 20)   /* QEMU's QCOW_MAX_L1_SIZE */
#define QCOW2_MAX_BACKING_NAME 1023u
#define QCOW2_MIN_CLUSTER_BITS 9
#define QCOW2_MAX_CLUSTER_BITS 21
#define L2_CACHE_BYTES         (32u << 20)

#define INCOMPAT_DIRTY         (1ull << 0)
#define INCOMPAT_CORRUPT       (1ull << 1)
#define INCOMPAT_DATA_FILE     (1ull << 2)
#define INCOMPAT_COMPRESSION   (1ull << 3)
#define INCOMPAT_EXTL2         (1ull << 4)
#define INCOMPAT_KNOWN         0x1full

#define EXT_END                0x00000000u
#define EXT_BACKING_FORMAT     0xe2792acau
#define EXT_DATA_FILE          0x44415441u
#define EXT_CRYPTO             0x0537be77u

#define L1E_OFFSET_MASK        0x00fffffffffffe00ull
#define L2E_OFFSET_MASK        0x00fffffffffffe00ull
#define L2E_COMPRESSED         (1ull << 62)
#define L2E_ZERO               (1ull << 0)

struct l2_slot {
    uint64_t offset;        /* host offset of the table; 0 = empty slot */
    uint64_t used;          /* LRU clock */
    uint8_t *table;
};

struct vb_q2 {
    uint32_t version;
    uint32_t cluster_bits;
    uint32_t cluster_size;
    uint32_t l2_bits;        /* log2 entries per L2 table */
    uint32_t l2_entry_size;  /* 8, or 16 with extended L2 */
    uint32_t subcluster_size;
    bool extl2;
    enum vb_q2_comp comp;
    uint64_t l1_size;
    uint64_t *l1;            /* host-endian */
    uint64_t csize_shift, csize_mask, coffset_mask;
    unsigned n_slots;
    struct l2_slot *slots;
    uint64_t clock;
};

struct vb_qcow2 { struct vb_q2 s; };

static inline uint32_t be32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return be32toh(v); }
static inline uint64_t be64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return be64toh(v); }

uint32_t vb_q2_cluster_size(const struct vb_layer *l)
{
    return l->q->s.cluster_size;
}

static int read_meta(struct vb_layer *l, void *buf, size_t len, uint64_t off,
                     const char *what, vb_error *e)
{
    int ret;

    if (off > l->file_size || len > l->file_size - off)
        return vb_seterr(e, -EINVAL, "%s: %s at offset %#llx (%zu bytes) is past the end "
                         "of the file (%llu bytes)", l->path, what,
                         (unsigned long long)off, len, (unsigned long long)l->file_size);
    ret = vb_pread_all(l->fd, buf, len, off);
    if (ret)
        return vb_seterr(e, ret, "%s: read %s at %#llx: %s", l->path, what,
                         (unsigned long long)off, strerror(-ret));
    return 0;
}

static int parse_extensions(struct vb_layer *l, uint64_t start, uint64_t end,
                            char **backing_fmt, vb_error *e)
{
    uint64_t off = start;
    uint8_t h[8];

    while (off + 8 <= end) {
        uint32_t type, len;
        int ret = read_meta(l, h, 8, off, "header extension", e);
        if (ret)
            return ret;
        type = be32(h);
        len = be32(h + 4);
        off += 8;
        if (type == EXT_END)
            return 0;
        if (len > end - off)
            return vb_seterr(e, -EINVAL, "%s: header extension %#x at %#llx is %u bytes long, "
                             "past the end of the header cluster", l->path, type,
                             (unsigned long long)off - 8, len);
        if (type == EXT_BACKING_FORMAT && backing_fmt) {
            char name[32];
            if (len >= sizeof(name))
                return vb_seterr(e, -EINVAL, "%s: backing format name of %u bytes", l->path, len);
            ret = read_meta(l, name, len, off, "backing format name", e);
            if (ret)
                return ret;
            name[len] = 0;
            free(*backing_fmt);
            *backing_fmt = strdup(name);
        } else if (type == EXT_DATA_FILE) {
            return vb_seterr(e, -ENOTSUP, "%s: images with an external data file are not "
                             "supported", l->path);
        } else if (type == EXT_CRYPTO) {
            return vb_seterr(e, -ENOTSUP, "%s: encrypted images are not supported", l->path);
        }
        off += (len + 7u) & ~7ull;
    }
    return 0;
}

int vb_q2_open(struct vb_layer *l, char **backing, char **backing_fmt, vb_error *e)
{
    uint8_t h[112];
    struct vb_q2 *s;
    uint64_t incompat = 0, bf_off, l1_off, need, l2_span_bits;
    uint32_t bf_size, crypt, hdr_len = 72;
    int ret;

    *backing = NULL;
    *backing_fmt = NULL;
    if (l->file_size < 72)
        return vb_seterr(e, -EINVAL, "%s: qcow2 header truncated (file is %llu bytes, the "
                         "header needs 72)", l->path, (unsigned long long)l->file_size);
    memset(h, 0, sizeof(h));
    ret = read_meta(l, h, VB_MIN(sizeof(h), l->file_size), 0, "header", e);
    if (ret)
        return ret;
    if (be32(h) != QCOW2_MAGIC)
        return vb_seterr(e, -EINVAL, "%s: not a qcow2 image (bad magic)", l->path);

    s = calloc(1, sizeof(struct vb_qcow2));
    if (!s)
        return vb_seterr(e, -ENOMEM, "out of memory");
    l->q = (struct vb_qcow2 *)s;

    s->version = be32(h + 4);
    if (s->version != 2 && s->version != 3)
        return vb_seterr(e, -ENOTSUP, "%s: qcow2 version %u is not supported (only 2 and 3)",
                         l->path, s->version);
    bf_off = be64(h + 8);
    bf_size = be32(h + 16);
    s->cluster_bits = be32(h + 20);
    l->virtual_size = be64(h + 24);
    crypt = be32(h + 32);
    s->l1_size = be32(h + 36);
    l1_off = be64(h + 40);

    if (s->cluster_bits < QCOW2_MIN_CLUSTER_BITS || s->cluster_bits > QCOW2_MAX_CLUSTER_BITS)
        return vb_seterr(e, -EINVAL, "%s: cluster size 2^%u is outside 512 B .. 2 MiB",
                         l->path, s->cluster_bits);
    s->cluster_size = 1u << s->cluster_bits;

    if (s->version == 3) {
        if (l->file_size < 104)
            return vb_seterr(e, -EINVAL, "%s: qcow2 v3 header truncated (file is %llu bytes)",
                             l->path, (unsigned long long)l->file_size);
        incompat = be64(h + 72);
        hdr_len = be32(h + 100);
        if (hdr_len < 104 || hdr_len > s->cluster_size || hdr_len % 8)
            return vb_seterr(e, -EINVAL, "%s: qcow2 header length %u is invalid", l->path,
                             hdr_len);
        if (incompat & ~INCOMPAT_KNOWN)
            return vb_seterr(e, -ENOTSUP, "%s: unknown incompatible qcow2 features %#llx",
                             l->path, (unsigned long long)(incompat & ~INCOMPAT_KNOWN));
        if (incompat & INCOMPAT_DATA_FILE)
            return vb_seterr(e, -ENOTSUP, "%s: images with an external data file are not "
                             "supported", l->path);
        if (hdr_len > 104) {
            uint8_t ct = h[104];
            if (ct > VB_Q2_ZSTD)
                return vb_seterr(e, -ENOTSUP, "%s: unknown compression type %u", l->path, ct);
            if (ct != VB_Q2_ZLIB && !(incompat & INCOMPAT_COMPRESSION))
                return vb_seterr(e, -EINVAL, "%s: compression type %u without the compression "
                                 "feature bit", l->path, ct);
            s->comp = ct;
        } else if (incompat & INCOMPAT_COMPRESSION) {
            return vb_seterr(e, -EINVAL, "%s: compression feature bit set but the header has "
                             "no compression type", l->path);
        }
        s->extl2 = !!(incompat & INCOMPAT_EXTL2);
    }
    if (crypt != 0)
        return vb_seterr(e, -ENOTSUP, "%s: encrypted images are not supported (method %u)",
                         l->path, crypt);
    if (s->extl2 && s->cluster_bits < 14)
        return vb_seterr(e, -EINVAL, "%s: extended L2 entries need clusters of 16 KiB or "
                         "more (cluster size is %u)", l->path, s->cluster_size);

    s->l2_entry_size = s->extl2 ? 16 : 8;
    s->l2_bits = s->cluster_bits - (s->extl2 ? 4 : 3);
    s->subcluster_size = s->extl2 ? s->cluster_size / 32 : s->cluster_size;
    s->csize_shift = 62 - (s->cluster_bits - 8);
    s->csize_mask = (1ull << (s->cluster_bits - 8)) - 1;
    s->coffset_mask = (1ull << s->csize_shift) - 1;

    /* L1: big enough for the virtual size, bounded, aligned, inside the file */
    l2_span_bits = s->cluster_bits + s->l2_bits;
    if (l->virtual_size > (1ull << 61))
        return vb_seterr(e, -EINVAL, "%s: virtual size %llu is absurd", l->path,
                         (unsigned long long)l->virtual_size);
    need = (l->virtual_size + (1ull << l2_span_bits) - 1) >> l2_span_bits;
    if (s->l1_size < need)
        return vb_seterr(e, -EINVAL, "%s: L1 table has %llu entries, the virtual size needs %llu",
                         l->path, (unsigned long long)s->l1_size, (unsigned long long)need);
    if (s->l1_size > QCOW2_MAX_L1_BYTES / 8)
        return vb_seterr(e, -EINVAL, "%s: L1 table of %llu entries is larger than 32 MiB",
                         l->path, (unsigned long long)s->l1_size);
    if (s->l1_size && (l1_off % s->cluster_size))
        return vb_seterr(e, -EINVAL, "%s: L1 table offset %#llx is not cluster aligned",
                         l->path, (unsigned long long)l1_off);
    if (s->l1_size) {
        s->l1 = malloc(s->l1_size * 8);
        if (!s->l1)
            return vb_seterr(e, -ENOMEM, "out of memory");
        ret = read_meta(l, s->l1, s->l1_size * 8, l1_off, "L1 table", e);
        if (ret)
            return ret;
        for (uint64_t i = 0; i < s->l1_size; i++)
            s->l1[i] = be64toh(s->l1[i]);
    }

    /* header extensions live in the first cluster after the header */
    ret = parse_extensions(l, hdr_len, VB_MIN((uint64_t)s->cluster_size, l->file_size),
                           backing_fmt, e);
    if (ret)
        return ret;

    if (bf_off) {
        if (bf_size == 0 || bf_size > QCOW2_MAX_BACKING_NAME || bf_off >= s->cluster_size ||
            bf_size > s->cluster_size - bf_off)
            return vb_seterr(e, -EINVAL, "%s: backing file name (%u bytes at %#llx) is invalid",
                             l->path, bf_size, (unsigned long long)bf_off);
        *backing = calloc(1, bf_size + 1);
        if (!*backing)
            return vb_seterr(e, -ENOMEM, "out of memory");
        ret = read_meta(l, *backing, bf_size, bf_off, "backing file name", e);
        if (ret)
            return ret;
        if (memchr(*backing, 0, bf_size))
            return vb_seterr(e, -EINVAL, "%s: backing file name contains a NUL byte", l->path);
    }

    s->n_slots = VB_MAX(4u, VB_MIN(64u, L2_CACHE_BYTES / s->cluster_size));
    s->slots = calloc(s->n_slots, sizeof(*s->slots));
    if (!s->slots)
        return vb_seterr(e, -ENOMEM, "out of memory");
    return 0;
}

void vb_q2_close(struct vb_layer *l)
{
    struct vb_q2 *s = l->q ? &l->q->s : NULL;

    if (!s)
        return;
    for (unsigned i = 0; s->slots && i < s->n_slots; i++)
        free(s->slots[i].table);
    free(s->slots);
    free(s->l1);
    free(l->q);
    l->q = NULL;
}

static int get_l2(struct vb_layer *l, uint64_t l2_off, uint8_t **table, vb_error *e)
{
    struct vb_q2 *s = &l->q->s;
    struct l2_slot *victim = &s->slots[0];
    int ret;

    for (unsigned i = 0; i < s->n_slots; i++) {
        if (s->slots[i].offset == l2_off) {
            s->slots[i].used = ++s->clock;
            *table = s->slots[i].table;
            return 0;
        }
        if (s->slots[i].used < victim->used)
            victim = &s->slots[i];
    }
    if (!victim->table) {
        victim->table = malloc(s->cluster_size);
        if (!victim->table)
            return vb_seterr(e, -ENOMEM, "out of memory");
    }
    victim->offset = 0;
    ret = read_meta(l, victim->table, s->cluster_size, l2_off, "L2 table", e);
    if (ret)
        return ret;
    victim->offset = l2_off;
    victim->used = ++s->clock;
    *table = victim->table;
    return 0;
}

int vb_q2_lookup(struct vb_layer *l, uint64_t off, uint64_t len, struct vb_q2_run *run,
                 vb_error *e)
{
    struct vb_q2 *s = &l->q->s;
    uint64_t l1_idx = off >> (s->cluster_bits + s->l2_bits);
    uint64_t l2_idx = (off >> s->cluster_bits) & ((1ull << s->l2_bits) - 1);
    uint64_t in_cluster = off & (s->cluster_size - 1);
    uint64_t l1e, l2_off, entry, bitmap = 0, host;
    uint8_t *table = NULL;
    int ret;

    memset(run, 0, sizeof(*run));
    if (l1_idx >= s->l1_size)
        return vb_seterr(e, -EINVAL, "%s: offset %#llx is beyond the L1 table", l->path,
                         (unsigned long long)off);
    l1e = s->l1[l1_idx];
    l2_off = l1e & L1E_OFFSET_MASK;
    if (!l2_off) {
        /* a whole L2 table's span is unallocated */
        uint64_t span = 1ull << (s->cluster_bits + s->l2_bits);
        run->kind = VB_Q2_UNALLOC;
        run->len = VB_MIN(len, span - (off & (span - 1)));
        return 0;
    }
    if (l2_off % s->cluster_size)
        return vb_seterr(e, -EINVAL, "%s: L1 entry %llu points to an unaligned L2 table at %#llx",
                         l->path, (unsigned long long)l1_idx, (unsigned long long)l2_off);
    if (l2_off >= l->file_size || s->cluster_size > l->file_size - l2_off)
        return vb_seterr(e, -EINVAL, "%s: L1 entry %llu points to an L2 table at %#llx, past the "
                         "end of the file (%llu bytes)", l->path, (unsigned long long)l1_idx,
                         (unsigned long long)l2_off, (unsigned long long)l->file_size);
    ret = get_l2(l, l2_off, &table, e);
    if (ret)
        return ret;
    entry = be64(table + l2_idx * s->l2_entry_size);
    if (s->extl2)
        bitmap = be64(table + l2_idx * s->l2_entry_size + 8);

    if (entry & L2E_COMPRESSED) {
        uint64_t coff = entry & s->coffset_mask;
        uint64_t nsec = ((entry >> s->csize_shift) & s->csize_mask) + 1;
        uint64_t csize = nsec * 512 - (coff & 511);
        if (coff >= l->file_size)
            return vb_seterr(e, -EINVAL, "%s: compressed cluster for guest offset %#llx is at "
                             "%#llx, past the end of the file (%llu bytes)", l->path,
                             (unsigned long long)off, (unsigned long long)coff,
                             (unsigned long long)l->file_size);
        run->kind = VB_Q2_COMPRESSED;
        run->host_off = coff;
        run->comp_len = (uint32_t)VB_MIN(csize, l->file_size - coff);
        run->cluster_off = in_cluster;
        run->len = VB_MIN(len, s->cluster_size - in_cluster);
        return 0;
    }

    host = entry & L2E_OFFSET_MASK;
    if (!s->extl2) {
        run->len = VB_MIN(len, s->cluster_size - in_cluster);
        if (entry & L2E_ZERO) {
            run->kind = VB_Q2_ZERO;
            return 0;
        }
        if (!host) {
            run->kind = VB_Q2_UNALLOC;
            return 0;
        }
    } else {
        uint32_t sc = (uint32_t)(in_cluster / s->subcluster_size);
        uint32_t alloc = (uint32_t)bitmap, zero = (uint32_t)(bitmap >> 32);
        uint32_t bit = 1u << sc, k;
        int kind;

        if (alloc & zero & bit)
            return vb_seterr(e, -EINVAL, "%s: subcluster %u of guest offset %#llx is marked "
                             "both allocated and zero", l->path, sc, (unsigned long long)off);
        if (zero & bit)
            kind = VB_Q2_ZERO;
        else if (alloc & bit) {
            if (!host)
                return vb_seterr(e, -EINVAL, "%s: subcluster %u of guest offset %#llx is "
                                 "allocated in an unallocated cluster", l->path, sc,
                                 (unsigned long long)off);
            kind = VB_Q2_DATA;
        } else
            kind = VB_Q2_UNALLOC;
        /* extend over following subclusters of the same kind */
        for (k = sc + 1; k < 32; k++) {
            uint32_t b = 1u << k;
            int kk = (zero & b) ? VB_Q2_ZERO : (alloc & b) ? VB_Q2_DATA : VB_Q2_UNALLOC;
            if (kk != kind || (alloc & zero & b))
                break;
        }
        run->kind = (uint8_t)kind;
        run->len = VB_MIN(len, (uint64_t)k * s->subcluster_size - in_cluster);
        if (kind != VB_Q2_DATA)
            return 0;
    }
    if (host % s->cluster_size)
        return vb_seterr(e, -EINVAL, "%s: data cluster for guest offset %#llx is at an unaligned "
                         "host offset %#llx", l->path, (unsigned long long)off,
                         (unsigned long long)host);
    if (host >= l->file_size)
        return vb_seterr(e, -EINVAL, "%s: data cluster for guest offset %#llx is at %#llx, past "
                         "the end of the file (%llu bytes)", l->path, (unsigned long long)off,
                         (unsigned long long)host, (unsigned long long)l->file_size);
    run->kind = VB_Q2_DATA;
    run->host_off = host + in_cluster;
    return 0;
}

static int inflate_zlib(const struct vb_layer *l, const uint8_t *in, size_t in_len,
                        uint8_t *out, uint32_t out_len, vb_error *e)
{
    z_stream z;
    int ret;

    memset(&z, 0, sizeof(z));
    if (inflateInit2(&z, -12) != Z_OK)
        return vb_seterr(e, -ENOMEM, "inflateInit2 failed");
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)in_len;
    z.next_out = out;
    z.avail_out = out_len;
    ret = inflate(&z, Z_FINISH);
    inflateEnd(&z);
    /* QEMU accepts Z_BUF_ERROR too when the output is full: the compressed
     * size is rounded up to sectors and may include trailing bytes. */
    if ((ret == Z_STREAM_END || ret == Z_BUF_ERROR) && z.avail_out == 0)
        return 0;
    return vb_seterr(e, -EIO, "%s: compressed cluster does not inflate (zlib: %s)", l->path,
                     z.msg ? z.msg : ret == Z_STREAM_END ? "data too short" : "corrupt data");
}

static int inflate_zstd(const struct vb_layer *l, const uint8_t *in, size_t in_len,
                        uint8_t *out, uint32_t out_len, vb_error *e)
{
    ZSTD_DCtx *d = ZSTD_createDCtx();
    ZSTD_inBuffer ib = { in, in_len, 0 };
    ZSTD_outBuffer ob = { out, out_len, 0 };
    int ret = 0;

    if (!d)
        return vb_seterr(e, -ENOMEM, "ZSTD_createDCtx failed");
    while (ob.pos < ob.size) {
        size_t r = ZSTD_decompressStream(d, &ob, &ib);
        if (ZSTD_isError(r)) {
            ret = vb_seterr(e, -EIO, "%s: compressed cluster does not inflate (zstd: %s)",
                            l->path, ZSTD_getErrorName(r));
            break;
        }
        if (r == 0 || ib.pos == ib.size) {
            if (ob.pos < ob.size)
                ret = vb_seterr(e, -EIO, "%s: compressed cluster inflates to %zu bytes, "
                                "expected %u", l->path, ob.pos, out_len);
            break;
        }
    }
    ZSTD_freeDCtx(d);
    return ret;
}

int vb_q2_inflate(const struct vb_layer *l, const uint8_t *in, size_t in_len,
                  uint8_t *out, vb_error *e)
{
    const struct vb_q2 *s = &l->q->s;

    if (s->comp == VB_Q2_ZSTD)
        return inflate_zstd(l, in, in_len, out, s->cluster_size, e);
    return inflate_zlib(l, in, in_len, out, s->cluster_size, e);
}
