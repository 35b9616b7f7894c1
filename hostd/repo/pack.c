/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "pack.h"

#include <endian.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static const char blob_ad[] = "vbackup blob";              /* || chunk id */
static const char trailer_ad[] = "vbackup pack trailer";
static const uint8_t pack_magic[4] = { 'V', 'B', 'P', 'K' };
static const uint8_t tail_magic[4] = { 'V', 'B', 'P', 'T' };

#define BLOB_AD_LEN (sizeof(blob_ad) - 1 + VB_HASH_LEN)

static void put_le32(uint8_t *p, uint32_t v)
{
    v = htole32(v);
    memcpy(p, &v, 4);
}

static void put_le64(uint8_t *p, uint64_t v)
{
    v = htole64(v);
    memcpy(p, &v, 8);
}

static uint32_t get_le32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return le32toh(v);
}

static uint64_t get_le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return le64toh(v);
}

/* CRC-32 (zlib) of any length: zlib takes uInt lengths. */
static uint32_t crc32_all(const uint8_t *p, size_t n)
{
    uLong c = crc32(0, Z_NULL, 0);

    while (n) {
        uInt step = (uInt)VB_MIN(n, (size_t)1 << 30);
        c = crc32(c, p, step);
        p += step;
        n -= step;
    }
    return (uint32_t)c;
}

static void blob_ad_make(uint8_t ad[BLOB_AD_LEN], const uint8_t id[VB_HASH_LEN])
{
    memcpy(ad, blob_ad, sizeof(blob_ad) - 1);
    memcpy(ad + sizeof(blob_ad) - 1, id, VB_HASH_LEN);
}

/* Grow the codec's scratch buffer (the same one chunk.c encodes into). */
static int scratch(struct vb_codec *c, size_t need)
{
    uint8_t *p;

    if (c->cap >= need)
        return 0;
    p = realloc(c->buf, need);
    if (!p)
        return -ENOMEM;
    c->buf = p;
    c->cap = need;
    return 0;
}

/* ---- blobs ----------------------------------------------------------------- */

size_t vb_blob_overhead(const struct vb_keys *k)
{
    return k->aead == VB_AEAD_NONE ? VB_BLOB_CRC : vb_seal_overhead(k->aead);
}

size_t vb_blob_bound(const struct vb_keys *k, size_t plain_len)
{
    /* zstd is kept only when smaller, so the payload never exceeds plain_len */
    return plain_len + vb_blob_overhead(k);
}

int vb_blob_encode(struct vb_codec *c, const struct vb_keys *k, const uint8_t id[VB_HASH_LEN],
                   const void *plain, size_t len, uint8_t *out, size_t cap, size_t *stored_len,
                   uint8_t *comp, vb_error *e)
{
    size_t bound = ZSTD_compressBound(len), n;
    const uint8_t *payload = plain;
    size_t plen = len;
    uint8_t ad[BLOB_AD_LEN];
    int ret;

    if (len > VB_BLOB_MAX)
        return vb_seterr(e, -EFBIG, "blob of %zu bytes (at most %u)", len, VB_BLOB_MAX);
    if (cap < vb_blob_bound(k, len))
        return vb_seterr(e, -ENOBUFS, "blob buffer of %zu bytes, %zu needed", cap,
                         vb_blob_bound(k, len));
    if (scratch(c, bound))
        return vb_seterr(e, -ENOMEM, "out of memory");
    n = ZSTD_compress2(c->cctx, c->buf, bound, plain, len);
    *comp = VB_CC_NONE;
    if (!ZSTD_isError(n) && n < len) {
        payload = c->buf;
        plen = n;
        *comp = VB_CC_ZSTD;
    }
    if (k->aead == VB_AEAD_NONE) {
        memcpy(out, payload, plen);
        put_le32(out + plen, crc32_all(out, plen));
        *stored_len = plen + VB_BLOB_CRC;
        return 0;
    }
    blob_ad_make(ad, id);
    ret = vb_seal(k, ad, sizeof(ad), payload, plen, out, e);
    if (ret)
        return ret;
    *stored_len = plen + vb_seal_overhead(k->aead);
    return 0;
}

int vb_blob_decode(struct vb_codec *c, const struct vb_keys *k, const uint8_t id[VB_HASH_LEN],
                   const uint8_t *idkey, const uint8_t *stored, size_t stored_len,
                   size_t plain_len, void *out, size_t cap, vb_error *e)
{
    size_t over = vb_blob_overhead(k), plen;
    const uint8_t *payload = stored;
    uint8_t ad[BLOB_AD_LEN];
    int ret;

    if (plain_len > VB_BLOB_MAX)
        return vb_seterr(e, -EBADMSG, "blob of %zu plain bytes (at most %u)", plain_len,
                         VB_BLOB_MAX);
    if (plain_len > cap)
        return vb_seterr(e, -ENOBUFS, "blob of %zu bytes does not fit a %zu byte buffer",
                         plain_len, cap);
    if (stored_len < over)
        return vb_seterr(e, -EBADMSG, "blob of %zu stored bytes is shorter than its %s (%zu)",
                         stored_len, k->aead == VB_AEAD_NONE ? "CRC" : "nonce and tag", over);
    plen = stored_len - over;
    if (plen > plain_len)
        return vb_seterr(e, -EBADMSG, "blob payload of %zu bytes is longer than its plain "
                         "length %zu", plen, plain_len);

    if (k->aead == VB_AEAD_NONE) {
        if (crc32_all(stored, plen) != get_le32(stored + plen))
            return vb_seterr(e, -EBADMSG, "blob CRC-32 mismatch");
    } else {
        /* a plain payload opens straight into out, a compressed one into scratch */
        uint8_t *dst = out;
        if (plen < plain_len) {
            if (scratch(c, VB_MAX(plen, 1)))
                return vb_seterr(e, -ENOMEM, "out of memory");
            dst = c->buf;
        }
        blob_ad_make(ad, id);
        ret = vb_open(k, ad, sizeof(ad), stored, stored_len, dst, e);
        if (ret) {
            vb_prefixerr(e, "blob");
            return ret;
        }
        payload = dst;
    }

    if (plen < plain_len) {
        size_t n = ZSTD_decompressDCtx(c->dctx, out, plain_len, payload, plen);
        if (ZSTD_isError(n))
            return vb_seterr(e, -EBADMSG, "blob does not decompress: %s", ZSTD_getErrorName(n));
        if (n != plain_len)
            return vb_seterr(e, -EBADMSG, "blob decompresses to %zu bytes, its entry says %zu",
                             n, plain_len);
    } else if (payload != out) {
        memcpy(out, payload, plain_len);
    }
    if (idkey) {
        uint8_t got[VB_HASH_LEN];
        ret = vb_keyed_id(idkey, out, plain_len, got);
        if (ret)
            return vb_seterr(e, ret, "blob id: libcrypto failed");
        if (CRYPTO_memcmp(got, id, VB_HASH_LEN) != 0)
            return vb_seterr(e, -EBADMSG, "blob content does not match its id");
    }
    return 0;
}

/* ---- pack writer ------------------------------------------------------------ */

struct vb_pack_writer {
    const struct vb_keys *k;
    size_t target;
    uint8_t *buf;                /* header and blobs so far */
    size_t len, cap;
    struct vb_pack_entry *ents;
    uint32_t count, ents_cap;
    bool finished;
};

/* Stored bytes of the trailer for count entries. */
static size_t trailer_stored(const struct vb_keys *k, uint64_t count)
{
    size_t plain = 4 + (size_t)count * VB_PACK_ENTRY;
    return plain + (k->aead == VB_AEAD_NONE ? VB_BLOB_CRC : vb_seal_overhead(k->aead));
}

struct vb_pack_writer *vb_pack_writer_new(const struct vb_keys *k, size_t target)
{
    return vb_pack_writer_new_buf(k, target, NULL, 0);
}

struct vb_pack_writer *vb_pack_writer_new_buf(const struct vb_keys *k, size_t target,
                                              uint8_t *buf, size_t cap)
{
    struct vb_pack_writer *w = calloc(1, sizeof(*w));

    if (!w) {
        free(buf);
        return NULL;
    }
    w->k = k;
    w->target = VB_MIN(target ? target : VB_PACK_TARGET, (size_t)VB_PACK_MAX / 2);
    if (buf && cap >= VB_PACK_HDR) {
        w->buf = buf;
        w->cap = cap;
    } else {
        free(buf);
        /* a pack usually ends a little past its target: one allocation, no
         * growth (each realloc step of a pack-sized buffer may copy it) */
        w->cap = VB_ALIGN_UP(w->target + (w->target >> 3), (size_t)1 << 20);
        w->buf = malloc(w->cap);
    }
    if (!w->buf) {
        free(w);
        return NULL;
    }
    memcpy(w->buf, pack_magic, 4);
    w->buf[4] = VB_PACK_VERSION;
    memset(w->buf + 5, 0, 3);
    w->len = VB_PACK_HDR;
    return w;
}

void vb_pack_writer_free(struct vb_pack_writer *w)
{
    if (!w)
        return;
    free(w->buf);
    free(w->ents);
    free(w);
}

/* Room for one more blob of at most `bytes` stored bytes. */
static int writer_reserve(struct vb_pack_writer *w, size_t bytes, vb_error *e)
{
    size_t need = w->len + bytes;

    if (w->finished)
        return vb_seterr(e, -EINVAL, "pack already finished");
    if ((uint64_t)need + trailer_stored(w->k, (uint64_t)w->count + 1) + VB_PACK_TAIL >
        VB_PACK_MAX)
        return vb_seterr(e, -EFBIG, "pack would exceed %u bytes", VB_PACK_MAX);
    if (need > w->cap) {
        /* grow in whole MiB, at least by a quarter: large reallocs are mremap() */
        size_t ncap = VB_MAX(VB_ALIGN_UP(need, (size_t)1 << 20), w->cap + w->cap / 4);
        uint8_t *p = realloc(w->buf, ncap);
        if (!p)
            return vb_seterr(e, -ENOMEM, "out of memory");
        w->buf = p;
        w->cap = ncap;
    }
    if (w->count == w->ents_cap) {
        uint32_t ncap = w->ents_cap ? 2 * w->ents_cap : 64;
        struct vb_pack_entry *p = realloc(w->ents, (size_t)ncap * sizeof(*p));
        if (!p)
            return vb_seterr(e, -ENOMEM, "out of memory");
        w->ents = p;
        w->ents_cap = ncap;
    }
    return 0;
}

int vb_pack_add(struct vb_pack_writer *w, struct vb_codec *c, enum vb_blob_type type,
                const uint8_t id[VB_HASH_LEN], const void *plain, size_t len, vb_error *e)
{
    struct vb_pack_entry *ent;
    size_t stored;
    uint8_t comp;
    int ret;

    if (type != VB_BLOB_DATA && type != VB_BLOB_META)
        return vb_seterr(e, -EINVAL, "unknown blob type %d", (int)type);
    if (len > VB_BLOB_MAX)
        return vb_seterr(e, -EFBIG, "blob of %zu bytes (at most %u)", len, VB_BLOB_MAX);
    ret = writer_reserve(w, vb_blob_bound(w->k, len), e);
    if (ret)
        return ret;
    ret = vb_blob_encode(c, w->k, id, plain, len, w->buf + w->len, w->cap - w->len, &stored,
                         &comp, e);
    if (ret)
        return ret;
    ent = &w->ents[w->count++];
    ent->type = (uint8_t)type;
    ent->comp = comp;
    ent->plain_len = (uint32_t)len;
    ent->stored_len = (uint32_t)stored;
    ent->offset = w->len;
    memcpy(ent->id, id, VB_HASH_LEN);
    w->len += stored;
    return 0;
}

/* The checks every entry passes, whether read from a trailer or handed to
 * add_encoded: known type and compression, lengths that agree with them. */
static int entry_check(const struct vb_keys *k, const struct vb_pack_entry *ent, vb_error *e)
{
    size_t over = vb_blob_overhead(k);

    if (ent->type != VB_BLOB_DATA && ent->type != VB_BLOB_META)
        return vb_seterr(e, -EBADMSG, "unknown blob type %u", ent->type);
    if (ent->comp != VB_CC_NONE && ent->comp != VB_CC_ZSTD)
        return vb_seterr(e, -EBADMSG, "unknown blob compression %u", ent->comp);
    if (ent->plain_len > VB_BLOB_MAX)
        return vb_seterr(e, -EBADMSG, "blob of %u plain bytes (at most %u)", ent->plain_len,
                         VB_BLOB_MAX);
    if (ent->stored_len < over)
        return vb_seterr(e, -EBADMSG, "blob of %u stored bytes, less than its %zu bytes of "
                         "overhead", ent->stored_len, over);
    if (ent->comp == VB_CC_NONE ? ent->stored_len - over != ent->plain_len
                                : ent->stored_len - over >= ent->plain_len)
        return vb_seterr(e, -EBADMSG, "blob lengths (%u stored, %u plain) disagree with its "
                         "compression (%s)", ent->stored_len, ent->plain_len,
                         ent->comp == VB_CC_NONE ? "none" : "zstd");
    return 0;
}

int vb_pack_add_encoded(struct vb_pack_writer *w, const struct vb_pack_entry *ent,
                        const uint8_t *stored, vb_error *e)
{
    int ret = entry_check(w->k, ent, e);

    if (ret)
        return ret;
    ret = writer_reserve(w, ent->stored_len, e);
    if (ret)
        return ret;
    memcpy(w->buf + w->len, stored, ent->stored_len);
    w->ents[w->count] = *ent;
    w->ents[w->count].offset = w->len;
    w->count++;
    w->len += ent->stored_len;
    return 0;
}

size_t vb_pack_size(const struct vb_pack_writer *w)
{
    return w->len + trailer_stored(w->k, w->count) + VB_PACK_TAIL;
}

bool vb_pack_full(const struct vb_pack_writer *w)
{
    return vb_pack_size(w) >= w->target;
}

const struct vb_pack_entry *vb_pack_entries(const struct vb_pack_writer *w, uint32_t *count)
{
    *count = w->count;
    return w->ents;
}

static void entry_put(uint8_t *p, const struct vb_pack_entry *ent)
{
    p[0] = ent->type;
    p[1] = ent->comp;
    p[2] = p[3] = 0;
    put_le32(p + 4, ent->plain_len);
    put_le32(p + 8, ent->stored_len);
    put_le64(p + 12, ent->offset);
    memcpy(p + 20, ent->id, VB_HASH_LEN);
}

int vb_pack_finish(struct vb_pack_writer *w, uint8_t **data, size_t *len,
                   uint8_t pack_id[VB_HASH_LEN], vb_error *e)
{
    size_t plain_len = 4 + (size_t)w->count * VB_PACK_ENTRY;
    size_t tlen = trailer_stored(w->k, w->count), total = w->len + tlen + VB_PACK_TAIL;
    uint8_t *plain, *p;
    int ret;

    if (w->finished)
        return vb_seterr(e, -EINVAL, "pack already finished");
    /* writer_reserve kept total within VB_PACK_MAX */
    if (total > w->cap) {
        p = realloc(w->buf, total);
        if (!p)
            return vb_seterr(e, -ENOMEM, "out of memory");
        w->buf = p;
        w->cap = total;
    }
    plain = malloc(plain_len);
    if (!plain)
        return vb_seterr(e, -ENOMEM, "out of memory");
    put_le32(plain, w->count);
    for (uint32_t i = 0; i < w->count; i++)
        entry_put(plain + 4 + (size_t)i * VB_PACK_ENTRY, &w->ents[i]);
    p = w->buf + w->len;
    if (w->k->aead == VB_AEAD_NONE) {
        memcpy(p, plain, plain_len);
        put_le32(p + plain_len, crc32_all(plain, plain_len));
        ret = 0;
    } else {
        ret = vb_seal(w->k, trailer_ad, sizeof(trailer_ad) - 1, plain, plain_len, p, e);
    }
    free(plain);
    if (ret) {
        vb_prefixerr(e, "pack trailer");
        return ret;
    }
    put_le32(p + tlen, (uint32_t)tlen);
    memcpy(p + tlen + 4, tail_magic, 4);
    SHA256(w->buf, total, pack_id);
    *data = w->buf;
    *len = total;
    w->buf = NULL;
    w->len = w->cap = 0;
    w->finished = true;
    return 0;
}

/* ---- pack reader ------------------------------------------------------------ */

void vb_pack_info_free(struct vb_pack_info *info)
{
    free(info->entries);
    memset(info, 0, sizeof(*info));
}

/* The tail: the trailer's stored length, within the pack. */
static int tail_parse(const struct vb_keys *k, const uint8_t *tail, uint64_t pack_size,
                      uint32_t *tlen, vb_error *e)
{
    uint64_t min_trailer = trailer_stored(k, 0);

    if (memcmp(tail + 4, tail_magic, 4))
        return vb_seterr(e, -EBADMSG, "pack tail magic is not VBPT (not a pack, or truncated)");
    *tlen = get_le32(tail);
    if (*tlen < min_trailer)
        return vb_seterr(e, -EBADMSG, "pack trailer length %u is less than the least possible "
                         "(%llu)", *tlen, (unsigned long long)min_trailer);
    if ((uint64_t)*tlen > pack_size - VB_PACK_HDR - VB_PACK_TAIL)
        return vb_seterr(e, -EBADMSG, "pack trailer length %u does not fit a pack of %llu "
                         "bytes", *tlen, (unsigned long long)pack_size);
    return 0;
}

static int trailer_parse(const struct vb_keys *k, const uint8_t *trailer, uint32_t tlen,
                         uint64_t pack_size, struct vb_pack_info *info, vb_error *e)
{
    size_t over = k->aead == VB_AEAD_NONE ? VB_BLOB_CRC : vb_seal_overhead(k->aead);
    size_t plain_len = tlen - over;            /* tail_parse: tlen >= over + 4 */
    uint64_t blobs_end = pack_size - VB_PACK_TAIL - tlen, pos = VB_PACK_HDR;
    uint8_t *plain;
    uint32_t count;
    int ret = 0;

    plain = malloc(plain_len);
    if (!plain)
        return vb_seterr(e, -ENOMEM, "out of memory");
    if (k->aead == VB_AEAD_NONE) {
        memcpy(plain, trailer, plain_len);
        if (crc32_all(plain, plain_len) != get_le32(trailer + plain_len))
            ret = vb_seterr(e, -EBADMSG, "pack trailer CRC-32 mismatch");
    } else {
        ret = vb_open(k, trailer_ad, sizeof(trailer_ad) - 1, trailer, tlen, plain, e);
        if (ret)
            vb_prefixerr(e, "pack trailer");
    }
    if (ret)
        goto out;
    count = get_le32(plain);
    if ((uint64_t)count * VB_PACK_ENTRY + 4 != plain_len) {
        ret = vb_seterr(e, -EBADMSG, "pack trailer of %zu bytes cannot hold %u entries",
                        plain_len, count);
        goto out;
    }
    memset(info, 0, sizeof(*info));
    /* count <= tlen / 52 < pack_size / 52: bounded by bytes the caller holds */
    info->entries = calloc(VB_MAX(count, 1u), sizeof(*info->entries));
    if (!info->entries) {
        ret = vb_seterr(e, -ENOMEM, "out of memory");
        goto out;
    }
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *p = plain + 4 + (size_t)i * VB_PACK_ENTRY;
        struct vb_pack_entry *ent = &info->entries[i];

        ent->type = p[0];
        ent->comp = p[1];
        ent->plain_len = get_le32(p + 4);
        ent->stored_len = get_le32(p + 8);
        ent->offset = get_le64(p + 12);
        memcpy(ent->id, p + 20, VB_HASH_LEN);
        if (p[2] || p[3])
            ret = vb_seterr(e, -EBADMSG, "reserved bytes are not zero");
        else
            ret = entry_check(k, ent, e);
        if (!ret && ent->offset != pos)
            ret = vb_seterr(e, -EBADMSG, "blob at offset %llu, expected %llu (entries must be "
                            "back to back, in offset order)", (unsigned long long)ent->offset,
                            (unsigned long long)pos);
        if (!ret && ent->stored_len > blobs_end - pos)
            ret = vb_seterr(e, -EBADMSG, "blob of %u bytes at offset %llu runs past the blob "
                            "area (ends at %llu)", ent->stored_len,
                            (unsigned long long)pos, (unsigned long long)blobs_end);
        if (ret) {
            vb_prefixerr(e, "pack trailer entry %u", i);
            goto out;
        }
        pos += ent->stored_len;
    }
    if (pos != blobs_end) {
        ret = vb_seterr(e, -EBADMSG, "pack trailer's blobs end at %llu, the trailer starts at "
                        "%llu", (unsigned long long)pos, (unsigned long long)blobs_end);
        goto out;
    }
    info->size = pack_size;
    info->blobs_end = blobs_end;
    info->trailer_len = tlen;
    info->count = count;
out:
    if (ret)
        vb_pack_info_free(info);
    free(plain);
    return ret;
}

int vb_pack_parse_end(const struct vb_keys *k, const uint8_t *end, size_t end_len,
                      uint64_t pack_size, struct vb_pack_info *info, size_t *need, vb_error *e)
{
    uint64_t least = VB_PACK_HDR + trailer_stored(k, 0) + VB_PACK_TAIL;
    uint32_t tlen = 0;
    int ret;

    memset(info, 0, sizeof(*info));
    if (pack_size > VB_PACK_MAX)
        return vb_seterr(e, -EBADMSG, "pack of %llu bytes (at most %u)",
                         (unsigned long long)pack_size, VB_PACK_MAX);
    if (pack_size < least)
        return vb_seterr(e, -EBADMSG, "pack of %llu bytes is shorter than the least possible "
                         "(%llu)", (unsigned long long)pack_size, (unsigned long long)least);
    if (end_len > pack_size)
        return vb_seterr(e, -EINVAL, "%zu end bytes of a pack of %llu bytes", end_len,
                         (unsigned long long)pack_size);
    if (end_len < VB_PACK_TAIL) {
        *need = VB_PACK_TAIL;
        return -EAGAIN;
    }
    ret = tail_parse(k, end + end_len - VB_PACK_TAIL, pack_size, &tlen, e);
    if (ret)
        return ret;
    if (end_len < (size_t)tlen + VB_PACK_TAIL) {
        *need = (size_t)tlen + VB_PACK_TAIL;
        return -EAGAIN;
    }
    return trailer_parse(k, end + end_len - VB_PACK_TAIL - tlen, tlen, pack_size, info, e);
}

int vb_pack_parse(const struct vb_keys *k, const uint8_t *pack, size_t len,
                  struct vb_pack_info *info, vb_error *e)
{
    size_t need;
    int ret;

    memset(info, 0, sizeof(*info));
    if (len < VB_PACK_HDR || memcmp(pack, pack_magic, 4))
        return vb_seterr(e, -EBADMSG, "pack header magic is not VBPK");
    if (pack[4] != VB_PACK_VERSION)
        return vb_seterr(e, -EBADMSG, "unknown pack version %u", pack[4]);
    if (pack[5] || pack[6] || pack[7])
        return vb_seterr(e, -EBADMSG, "pack header's reserved bytes are not zero");
    ret = vb_pack_parse_end(k, pack, len, len, info, &need, e);
    if (ret == -EAGAIN)      /* cannot happen: the whole pack was given */
        ret = vb_seterr(e, -EBADMSG, "pack trailer does not fit the pack");
    return ret;
}
