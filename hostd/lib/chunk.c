/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "chunk.h"

#include <endian.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

int vb_codec_init(struct vb_codec *c, int level)
{
    memset(c, 0, sizeof(*c));
    c->level = level;
    c->cctx = ZSTD_createCCtx();
    c->dctx = ZSTD_createDCtx();
    if (!c->cctx || !c->dctx) {
        vb_codec_free(c);
        return -ENOMEM;
    }
    ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_compressionLevel, level);
    ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_checksumFlag, 0);
    return 0;
}

void vb_codec_set_level(struct vb_codec *c, int level)
{
    if (c->level != level) {
        ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_compressionLevel, level);
        c->level = level;
    }
}

void vb_codec_free(struct vb_codec *c)
{
    ZSTD_freeCCtx(c->cctx);
    ZSTD_freeDCtx(c->dctx);
    free(c->buf);
    free(c->rbuf);
    memset(c, 0, sizeof(*c));
}

static int reserve(struct vb_codec *c, size_t need)
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

void vb_chunk_id(const void *data, size_t len, uint8_t id[VB_ID_LEN])
{
    SHA256(data, len, id);
}

int vb_idspace_init(struct vb_idspace *sp, const char *group, vb_error *e)
{
    static const char domain[] = "vbackup dedup group";   /* and its NUL */
    EVP_MD_CTX *ctx;
    int ok;

    memset(sp, 0, sizeof(*sp));
    if (!group || !*group)
        return 0;
    if (strlen(group) > VB_GROUP_MAX || !vb_valid_name(group))
        return vb_seterr(e, -EINVAL, "'%.80s' is not a valid dedup group (1..%d letters, "
                         "digits, '.', '_', '-')", group, VB_GROUP_MAX);
    ctx = EVP_MD_CTX_new();
    ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) &&
         EVP_DigestUpdate(ctx, domain, sizeof(domain)) &&
         EVP_DigestUpdate(ctx, group, strlen(group)) && EVP_DigestFinal_ex(ctx, sp->tag, NULL);
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return vb_seterr(e, -ENOMEM, "SHA-256 of a dedup group's tag failed");
    sp->tagged = true;
    snprintf(sp->group, sizeof(sp->group), "%s", group);
    return 0;
}

void vb_idspace_id(const struct vb_idspace *sp, const void *data, size_t len,
                   uint8_t id[VB_ID_LEN])
{
    EVP_MD_CTX *ctx;

    if (!sp || !sp->tagged) {
        SHA256(data, len, id);
        return;
    }
    ctx = EVP_MD_CTX_new();
    if (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) ||
        !EVP_DigestUpdate(ctx, sp->tag, sizeof(sp->tag)) || !EVP_DigestUpdate(ctx, data, len) ||
        !EVP_DigestFinal_ex(ctx, id, NULL))
        abort();            /* only out of memory: nothing sane to name the chunk */
    EVP_MD_CTX_free(ctx);
}

bool vb_idspace_same(const struct vb_idspace *a, const struct vb_idspace *b)
{
    bool ta = a && a->tagged, tb = b && b->tagged;

    if (ta != tb)
        return false;
    return !ta || !memcmp(a->tag, b->tag, sizeof(a->tag));
}

unsigned int vb_id_hash(const void *id)
{
    unsigned int h;

    memcpy(&h, id, sizeof(h));      /* a SHA-256 is uniform: any 4 bytes will do */
    return h;
}

int vb_id_equal(const void *a, const void *b)
{
    return memcmp(a, b, VB_ID_LEN) == 0;
}

static void put_hdr(uint8_t *p, const struct vb_chunk_hdr *h)
{
    uint32_t v;
    uint16_t r = 0;

    v = htole32(h->magic); memcpy(p, &v, 4);
    p[4] = h->version;
    p[5] = h->comp;
    memcpy(p + 6, &r, 2);
    v = htole32(h->plain_len); memcpy(p + 8, &v, 4);
    v = htole32(h->stored_len); memcpy(p + 12, &v, 4);
    v = htole32(h->payload_crc); memcpy(p + 16, &v, 4);
    v = htole32((uint32_t)crc32(0, p, 20)); memcpy(p + 20, &v, 4);
}

int vb_chunk_encode(struct vb_codec *c, const void *data, size_t len,
                    const uint8_t **out, size_t *out_len)
{
    size_t bound = ZSTD_compressBound(len), n;
    struct vb_chunk_hdr h = { .magic = VB_CHUNK_MAGIC, .version = VB_CHUNK_VERSION };
    int ret;

    if (len > VB_CHUNK_MAX)
        return -EFBIG;
    ret = reserve(c, VB_CHUNK_HDR + VB_MAX(bound, len));
    if (ret)
        return ret;
    n = ZSTD_compress2(c->cctx, c->buf + VB_CHUNK_HDR, bound, data, len);
    if (!ZSTD_isError(n) && n < len) {
        h.comp = VB_CC_ZSTD;
        h.stored_len = (uint32_t)n;
    } else {
        /* incompressible: store it plain */
        memcpy(c->buf + VB_CHUNK_HDR, data, len);
        h.comp = VB_CC_NONE;
        h.stored_len = (uint32_t)len;
    }
    h.plain_len = (uint32_t)len;
    h.payload_crc = (uint32_t)crc32(0, c->buf + VB_CHUNK_HDR, h.stored_len);
    put_hdr(c->buf, &h);
    *out = c->buf;
    *out_len = VB_CHUNK_HDR + h.stored_len;
    return 0;
}

int vb_chunk_parse_hdr(const uint8_t *p, size_t n, struct vb_chunk_hdr *h, vb_error *e)
{
    uint32_t v;

    if (n < VB_CHUNK_HDR)
        return vb_seterr(e, -EBADMSG, "chunk is %zu bytes, shorter than its header", n);
    memcpy(&v, p, 4); h->magic = le32toh(v);
    h->version = p[4];
    h->comp = p[5];
    memcpy(&v, p + 8, 4); h->plain_len = le32toh(v);
    memcpy(&v, p + 12, 4); h->stored_len = le32toh(v);
    memcpy(&v, p + 16, 4); h->payload_crc = le32toh(v);
    memcpy(&v, p + 20, 4); h->header_crc = le32toh(v);
    if (h->magic != VB_CHUNK_MAGIC)
        return vb_seterr(e, -EBADMSG, "bad chunk magic");
    if ((uint32_t)crc32(0, p, 20) != h->header_crc)
        return vb_seterr(e, -EBADMSG, "chunk header checksum mismatch");
    if (h->version != VB_CHUNK_VERSION)
        return vb_seterr(e, -EBADMSG, "unknown chunk format version %u", h->version);
    if (h->comp > VB_CC_ZSTD)
        return vb_seterr(e, -EBADMSG, "unknown chunk compression %u", h->comp);
    if (h->plain_len > VB_CHUNK_MAX || h->stored_len != n - VB_CHUNK_HDR)
        return vb_seterr(e, -EBADMSG, "chunk length mismatch (header says %u stored bytes, "
                         "file has %zu)", h->stored_len, n - VB_CHUNK_HDR);
    if (h->comp == VB_CC_NONE && h->stored_len != h->plain_len)
        return vb_seterr(e, -EBADMSG, "uncompressed chunk length mismatch");
    return 0;
}

int vb_chunk_decode(struct vb_codec *c, const uint8_t *enc, size_t enc_len,
                    const struct vb_idspace *sp, const uint8_t *id, void *out, size_t cap,
                    size_t *plain_len, vb_error *e)
{
    struct vb_chunk_hdr h;
    int ret = vb_chunk_parse_hdr(enc, enc_len, &h, e);

    if (ret)
        return ret;
    if ((uint32_t)crc32(0, enc + VB_CHUNK_HDR, h.stored_len) != h.payload_crc)
        return vb_seterr(e, -EBADMSG, "chunk payload checksum mismatch");
    if (h.plain_len > cap)
        return vb_seterr(e, -EBADMSG, "chunk of %u bytes does not fit a %zu byte buffer",
                         h.plain_len, cap);
    if (h.comp == VB_CC_ZSTD) {
        size_t n = ZSTD_decompressDCtx(c->dctx, out, h.plain_len, enc + VB_CHUNK_HDR,
                                       h.stored_len);
        if (ZSTD_isError(n))
            return vb_seterr(e, -EBADMSG, "chunk does not decompress: %s", ZSTD_getErrorName(n));
        if (n != h.plain_len)
            return vb_seterr(e, -EBADMSG, "chunk decompresses to %zu bytes, header says %u",
                             n, h.plain_len);
    } else {
        memcpy(out, enc + VB_CHUNK_HDR, h.plain_len);
    }
    if (id) {
        uint8_t got[VB_ID_LEN];
        vb_idspace_id(sp, out, h.plain_len, got);
        if (memcmp(got, id, VB_ID_LEN) != 0)
            return sp && sp->tagged
                       ? vb_seterr(e, -EBADMSG, "chunk content does not match its id (SHA-256 "
                                   "in dedup group %s)", sp->group)
                       : vb_seterr(e, -EBADMSG, "chunk content does not match its id (SHA-256)");
    }
    *plain_len = h.plain_len;
    return 0;
}
