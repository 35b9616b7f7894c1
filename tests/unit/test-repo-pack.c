/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests: blobs and packs of a version 2 repository (hostd/repo/pack.c).
 * Random sizes and mutations come from one seed, printed at the start;
 * VB_TEST_SEED=N repeats a run.  VB_TEST_FUZZ_ROUNDS sets the fuzz loop's
 * length (default 20000).
 */
#include <endian.h>
#include <glib.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "pack.h"

static const enum vb_aead all_aeads[] = { VB_AEAD_NONE, VB_AEAD_AES256GCM,
                                          VB_AEAD_CHACHA20POLY1305 };
static guint32 seed;
static struct vb_codec codec;

static void keys_for(struct vb_keys *k, enum vb_aead a)
{
    vb_error e = { 0 };
    g_assert_cmpint(vb_keys_generate(k, a, &e), ==, 0);
}

/* Data that compresses (text-like runs) or not (random), by choice. */
static void fill(GRand *r, uint8_t *p, size_t n, bool compressible)
{
    for (size_t i = 0; i < n; i++)
        p[i] = compressible ? (uint8_t)("abcdefgh"[(i / 7) % 8] + (g_rand_int(r) % 3 == 0))
                            : (uint8_t)g_rand_int(r);
}

static void make_id(const struct vb_keys *k, const void *p, size_t n, uint8_t id[32])
{
    g_assert_cmpint(vb_keyed_id(k->id_key, p, n, id), ==, 0);
}

static uint32_t le32_at(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return le32toh(v);
}

/* ---- blobs ----------------------------------------------------------------- */

static void test_blob(void)
{
    static const size_t sizes[] = { 0, 1, 100, 4096, 100000, 1 << 20 };
    GRand *r = g_rand_new_with_seed(seed);
    uint8_t *plain = g_malloc(1 << 20), *stored = g_malloc((1 << 20) + 64),
            *back = g_malloc((1 << 20) + 1), id[32], other[32];
    vb_error e = { 0 };

    for (size_t a = 0; a < G_N_ELEMENTS(all_aeads); a++) {
        struct vb_keys k;
        keys_for(&k, all_aeads[a]);
        for (size_t s = 0; s < G_N_ELEMENTS(sizes); s++) {
            for (int compressible = 0; compressible <= 1; compressible++) {
                size_t n = sizes[s], slen;
                uint8_t comp;

                fill(r, plain, n, compressible);
                make_id(&k, plain, n, id);
                g_assert_cmpint(vb_blob_encode(&codec, &k, id, plain, n, stored,
                                               vb_blob_bound(&k, n), &slen, &comp, &e), ==, 0);
                g_assert_cmpuint(slen, <=, vb_blob_bound(&k, n));
                if (compressible && n >= 4096)
                    g_assert_cmpint(comp, ==, VB_CC_ZSTD);
                if (!compressible && n >= 100)
                    g_assert_cmpint(comp, ==, VB_CC_NONE);   /* zstd is not smaller */
                g_assert_true(comp == VB_CC_ZSTD ? slen - vb_blob_overhead(&k) < n
                                                 : slen - vb_blob_overhead(&k) == n);
                memset(back, 0xee, n + 1);
                g_assert_cmpint(vb_blob_decode(&codec, &k, id, k.id_key, stored, slen, n, back,
                                               n, &e), ==, 0);
                g_assert_true(memcmp(back, plain, n) == 0);
                g_assert_cmpint(back[n], ==, 0xee);
                /* a plain length other than the real one */
                g_assert_cmpint(vb_blob_decode(&codec, &k, id, k.id_key, stored, slen, n + 1,
                                               back, n + 1, &e), ==, -EBADMSG);
                if (n)
                    g_assert_cmpint(vb_blob_decode(&codec, &k, id, k.id_key, stored, slen,
                                                   n - 1, back, n, &e), ==, -EBADMSG);
                /* a buffer too small: refused before anything is written */
                if (n) {
                    memset(back, 0xee, n);
                    g_assert_cmpint(vb_blob_decode(&codec, &k, id, NULL, stored, slen, n, back,
                                                   n - 1, &e), ==, -ENOBUFS);
                    g_assert_cmpint(back[0], ==, 0xee);
                }
                /* under another id: the seal's associated data, or the id check */
                memcpy(other, id, 32);
                other[31] ^= 1;
                g_assert_cmpint(vb_blob_decode(&codec, &k, other, k.id_key, stored, slen, n,
                                               back, n, &e), ==, -EBADMSG);
                /* every flipped byte, for the smaller ones */
                if (n <= 4096) {
                    for (size_t i = 0; i < slen; i++) {
                        stored[i] ^= 0x10;
                        g_assert_cmpint(vb_blob_decode(&codec, &k, id, k.id_key, stored, slen,
                                                       n, back, n, &e), ==, -EBADMSG);
                        stored[i] ^= 0x10;
                    }
                }
                /* short */
                for (size_t m = 0; m < VB_MIN(slen, (size_t)40); m++)
                    g_assert_cmpint(vb_blob_decode(&codec, &k, id, k.id_key, stored, m, n, back,
                                                   n, &e), ==, -EBADMSG);
            }
        }
        /* too large, too small a buffer */
        size_t slen;
        uint8_t comp;
        g_assert_cmpint(vb_blob_encode(&codec, &k, id, plain, VB_BLOB_MAX + 1, stored, SIZE_MAX,
                                       &slen, &comp, &e), ==, -EFBIG);
        g_assert_cmpint(vb_blob_encode(&codec, &k, id, plain, 100, stored,
                                       vb_blob_bound(&k, 100) - 1, &slen, &comp, &e), ==,
                        -ENOBUFS);
        g_assert_cmpint(vb_blob_decode(&codec, &k, id, NULL, stored, 100, VB_BLOB_MAX + 1, back,
                                       SIZE_MAX, &e), ==, -EBADMSG);
        vb_keys_wipe(&k);
    }
    /* the same blob does not open under another repository's keys */
    struct vb_keys k1, k2;
    size_t slen;
    uint8_t comp;
    keys_for(&k1, VB_AEAD_AES256GCM);
    keys_for(&k2, VB_AEAD_AES256GCM);
    fill(r, plain, 5000, true);
    make_id(&k1, plain, 5000, id);
    g_assert_cmpint(vb_blob_encode(&codec, &k1, id, plain, 5000, stored, 6000, &slen, &comp, &e),
                    ==, 0);
    g_assert_cmpint(vb_blob_decode(&codec, &k2, id, NULL, stored, slen, 5000, back, 5000, &e),
                    ==, -EBADMSG);
    g_assert_nonnull(strstr(e.msg, "authentication failed"));
    vb_keys_wipe(&k1);
    vb_keys_wipe(&k2);
    g_rand_free(r);
    g_free(plain);
    g_free(stored);
    g_free(back);
}

/* ---- packs ------------------------------------------------------------------ */

struct built {
    uint8_t *pack;
    size_t len;
    uint8_t pack_id[32];
    uint32_t count;
    uint8_t **plains;
    size_t *sizes;
};

static void built_free(struct built *b)
{
    for (uint32_t i = 0; i < b->count; i++)
        g_free(b->plains[i]);
    g_free(b->plains);
    g_free(b->sizes);
    free(b->pack);
    memset(b, 0, sizeof(*b));
}

/* A pack of n blobs of random sizes up to max (some empty, some 1 MiB). */
static void build(GRand *r, const struct vb_keys *k, uint32_t n, size_t max, struct built *b)
{
    struct vb_pack_writer *w = vb_pack_writer_new(k, 64u << 20);
    const struct vb_pack_entry *ents;
    vb_error e = { 0 };
    uint32_t count;

    g_assert_nonnull(w);
    memset(b, 0, sizeof(*b));
    b->plains = g_new0(uint8_t *, n);
    b->sizes = g_new0(size_t, n);
    for (uint32_t i = 0; i < n; i++) {
        size_t sz;
        uint8_t id[32];
        switch (g_rand_int_range(r, 0, 10)) {
        case 0: sz = 0; break;
        case 1: sz = VB_MIN(max, (size_t)1 << 20); break;
        default: sz = (size_t)g_rand_int_range(r, 1, (gint32)max + 1); break;
        }
        b->sizes[i] = sz;
        b->plains[i] = g_malloc(sz + 1);
        fill(r, b->plains[i], sz, g_rand_boolean(r));
        make_id(k, b->plains[i], sz, id);
        g_assert_cmpint(vb_pack_add(w, &codec, g_rand_boolean(r) ? VB_BLOB_DATA : VB_BLOB_META,
                                    id, b->plains[i], sz, &e), ==, 0);
        b->count++;
    }
    ents = vb_pack_entries(w, &count);
    g_assert_cmpuint(count, ==, n);
    g_assert_true(n == 0 || ents[0].offset == VB_PACK_HDR);
    size_t predicted = vb_pack_size(w);
    g_assert_cmpint(vb_pack_finish(w, &b->pack, &b->len, b->pack_id, &e), ==, 0);
    g_assert_cmpuint(b->len, ==, predicted);
    /* finished: takes no more */
    g_assert_cmpint(vb_pack_add(w, &codec, VB_BLOB_DATA, b->pack_id, "x", 1, &e), ==, -EINVAL);
    g_assert_cmpint(vb_pack_finish(w, &b->pack, &b->len, b->pack_id, &e), ==, -EINVAL);
    vb_pack_writer_free(w);
}

/* Every blob of a parsed pack decodes to what was put in. */
static void check_all(const struct vb_keys *k, const struct built *b,
                      const struct vb_pack_info *info)
{
    vb_error e = { 0 };

    g_assert_cmpuint(info->count, ==, b->count);
    g_assert_cmpuint(info->size, ==, b->len);
    for (uint32_t i = 0; i < info->count; i++) {
        const struct vb_pack_entry *ent = &info->entries[i];
        uint8_t *out = g_malloc(ent->plain_len + 1);
        g_assert_cmpuint(ent->plain_len, ==, b->sizes[i]);
        g_assert_cmpint(vb_blob_decode(&codec, k, ent->id, k->id_key, b->pack + ent->offset,
                                       ent->stored_len, ent->plain_len, out, ent->plain_len,
                                       &e), ==, 0);
        g_assert_true(memcmp(out, b->plains[i], b->sizes[i]) == 0);
        g_free(out);
    }
}

static void test_roundtrip(void)
{
    GRand *r = g_rand_new_with_seed(seed);
    vb_error e = { 0 };

    for (size_t a = 0; a < G_N_ELEMENTS(all_aeads); a++) {
        struct vb_keys k;
        struct built b;
        struct vb_pack_info info;
        uint8_t hash[32];
        size_t need = 0;

        keys_for(&k, all_aeads[a]);
        build(r, &k, 200, 200000, &b);
        SHA256(b.pack, b.len, hash);
        g_assert_true(memcmp(hash, b.pack_id, 32) == 0);
        g_assert_true(memcmp(b.pack, "VBPK\x02\0\0\0", 8) == 0);
        g_assert_true(memcmp(b.pack + b.len - 4, "VBPT", 4) == 0);

        /* the whole pack */
        g_assert_cmpint(vb_pack_parse(&k, b.pack, b.len, &info, &e), ==, 0);
        check_all(&k, &b, &info);
        vb_pack_info_free(&info);

        /* from its end: 8 bytes first, then what the tail asks for */
        g_assert_cmpint(vb_pack_parse_end(&k, b.pack + b.len - 8, 8, b.len, &info, &need, &e),
                        ==, -EAGAIN);
        g_assert_cmpuint(need, ==, 8 + le32_at(b.pack + b.len - 8));
        g_assert_cmpint(vb_pack_parse_end(&k, b.pack + b.len - need + 1, need - 1, b.len, &info,
                                          &need, &e), ==, -EAGAIN);
        g_assert_cmpint(vb_pack_parse_end(&k, b.pack + b.len - need, need, b.len, &info, &need,
                                          &e), ==, 0);
        check_all(&k, &b, &info);
        vb_pack_info_free(&info);
        g_assert_cmpint(vb_pack_parse_end(&k, b.pack + b.len - 3, 3, b.len, &info, &need, &e),
                        ==, -EAGAIN);
        g_assert_cmpuint(need, ==, 8);

        /* the wrong keys, or the wrong kind of repository */
        struct vb_keys other;
        keys_for(&other, all_aeads[a] == VB_AEAD_NONE ? VB_AEAD_AES256GCM : all_aeads[a]);
        g_assert_cmpint(vb_pack_parse(&other, b.pack, b.len, &info, &e), ==, -EBADMSG);
        vb_keys_wipe(&other);
        built_free(&b);

        /* an empty pack */
        build(r, &k, 0, 1, &b);
        g_assert_cmpint(vb_pack_parse(&k, b.pack, b.len, &info, &e), ==, 0);
        g_assert_cmpuint(info.count, ==, 0);
        vb_pack_info_free(&info);
        built_free(&b);
        vb_keys_wipe(&k);
    }
    g_rand_free(r);
}

/* Each flipped byte of the header, trailer or tail fails the parse; each of a
 * blob fails that blob and no other. */
static void test_flips(void)
{
    GRand *r = g_rand_new_with_seed(seed + 1);
    uint8_t *out = g_malloc(4096 + 1);
    vb_error e = { 0 };

    for (size_t a = 0; a < G_N_ELEMENTS(all_aeads); a++) {
        struct vb_keys k;
        struct built b;
        struct vb_pack_info info;
        uint32_t tlen;

        keys_for(&k, all_aeads[a]);
        build(r, &k, 12, 4096, &b);
        tlen = le32_at(b.pack + b.len - 8);
        g_assert_cmpint(vb_pack_parse(&k, b.pack, b.len, &info, &e), ==, 0);
        /* header */
        for (size_t i = 0; i < VB_PACK_HDR; i++) {
            struct vb_pack_info bad;
            b.pack[i] ^= 0x01;
            g_assert_cmpint(vb_pack_parse(&k, b.pack, b.len, &bad, &e), ==, -EBADMSG);
            g_assert_null(bad.entries);
            b.pack[i] ^= 0x01;
        }
        /* trailer and tail */
        for (size_t i = b.len - 8 - tlen; i < b.len; i++) {
            for (int bit = 0; bit < 8; bit++) {
                struct vb_pack_info bad;
                b.pack[i] ^= (uint8_t)(1 << bit);
                e.msg[0] = 0;
                g_assert_cmpint(vb_pack_parse(&k, b.pack, b.len, &bad, &e), ==, -EBADMSG);
                g_assert_cmpuint(strlen(e.msg), >, 0);
                g_assert_null(bad.entries);
                b.pack[i] ^= (uint8_t)(1 << bit);
            }
        }
        /* blobs: the changed one fails, its neighbours still decode */
        uint32_t j = 0;
        for (size_t i = VB_PACK_HDR; i < b.len - 8 - tlen; i++) {
            while (i >= info.entries[j].offset + info.entries[j].stored_len)
                j++;
            g_assert_cmpuint(i, >=, info.entries[j].offset);
            b.pack[i] ^= 0x80;
            for (uint32_t n = j ? j - 1 : 0; n <= j + 1 && n < info.count; n++) {
                const struct vb_pack_entry *ent = &info.entries[n];
                int ret = vb_blob_decode(&codec, &k, ent->id, k.id_key, b.pack + ent->offset,
                                         ent->stored_len, ent->plain_len, out, 4096, &e);
                g_assert_cmpint(ret, ==, n == j ? -EBADMSG : 0);
            }
            b.pack[i] ^= 0x80;
        }
        g_assert_cmpuint(j, ==, info.count - 1);
        vb_pack_info_free(&info);
        built_free(&b);
        vb_keys_wipe(&k);
    }
    g_free(out);
    g_rand_free(r);
}

/* Every truncation, and every wrong total size, is refused. */
static void test_truncated(void)
{
    GRand *r = g_rand_new_with_seed(seed + 2);
    vb_error e = { 0 };

    for (size_t a = 0; a < G_N_ELEMENTS(all_aeads); a++) {
        struct vb_keys k;
        struct built b;
        struct vb_pack_info info;
        size_t need;

        keys_for(&k, all_aeads[a]);
        build(r, &k, 6, 3000, &b);
        for (size_t n = 0; n < b.len; n++) {
            /* a prefix: what an interrupted upload leaves */
            g_assert_cmpint(vb_pack_parse(&k, b.pack, n, &info, &e), ==, -EBADMSG);
            /* the right end bytes of a pack said to be another size */
            if (n >= 8) {
                int ret = vb_pack_parse_end(&k, b.pack + b.len - VB_MIN(n, b.len),
                                            VB_MIN(n, b.len), n, &info, &need, &e);
                g_assert_true(ret == -EBADMSG || ret == -EINVAL || ret == -EAGAIN);
                g_assert_null(info.entries);
            }
        }
        /* a pack with bytes appended */
        uint8_t *longer = g_malloc(b.len + 1);
        memcpy(longer, b.pack, b.len);
        longer[b.len] = 0;
        g_assert_cmpint(vb_pack_parse(&k, longer, b.len + 1, &info, &e), ==, -EBADMSG);
        g_free(longer);
        built_free(&b);
        vb_keys_wipe(&k);
    }
    g_rand_free(r);
}

/* ---- hostile trailers: structure checks behind a valid CRC ------------------ */

/* An unencrypted pack from a list of raw entries, its trailer CRC correct. */
static uint8_t *forge(const uint8_t *entries, uint32_t count, uint32_t claimed_count,
                      size_t blob_bytes, size_t *len)
{
    size_t tplain = 4 + (size_t)count * VB_PACK_ENTRY, tlen = tplain + 4;
    uint8_t *p;
    uint32_t v;

    *len = VB_PACK_HDR + blob_bytes + tlen + VB_PACK_TAIL;
    p = g_malloc0(*len);
    memcpy(p, "VBPK\x02\0\0\0", 8);
    uint8_t *t = p + VB_PACK_HDR + blob_bytes;
    v = htole32(claimed_count);
    memcpy(t, &v, 4);
    memcpy(t + 4, entries, (size_t)count * VB_PACK_ENTRY);
    v = htole32((uint32_t)crc32(0, t, (uInt)tplain));
    memcpy(t + tplain, &v, 4);
    v = htole32((uint32_t)tlen);
    memcpy(t + tlen, &v, 4);
    memcpy(t + tlen + 4, "VBPT", 4);
    return p;
}

static void entry(uint8_t *p, uint8_t type, uint8_t comp, uint16_t res, uint32_t plain,
                  uint32_t stored, uint64_t off)
{
    uint32_t v;
    uint64_t o = htole64(off);
    p[0] = type;
    p[1] = comp;
    memcpy(p + 2, &res, 2);
    v = htole32(plain); memcpy(p + 4, &v, 4);
    v = htole32(stored); memcpy(p + 8, &v, 4);
    memcpy(p + 12, &o, 8);
    memset(p + 20, 0xab, 32);
}

static void test_hostile(void)
{
    struct vb_keys k;
    struct vb_pack_info info;
    uint8_t ents[3 * VB_PACK_ENTRY];
    vb_error e = { 0 };
    size_t len;
    uint8_t *p;
    static const struct {
        uint8_t type, comp;
        uint16_t res;
        uint32_t plain, stored;
        uint64_t off;
        const char *msg;
    } bad[] = {
        { 3, 0, 0, 96, 100, 8, "unknown blob type" },
        { 0, 0, 0, 96, 100, 8, "unknown blob type" },
        { 1, 2, 0, 96, 100, 8, "unknown blob compression" },
        { 1, 0, 1, 96, 100, 8, "reserved" },
        { 1, 0, 0, 97, 100, 8, "disagree" },              /* plain stored, lengths differ */
        { 1, 1, 0, 96, 100, 8, "disagree" },              /* zstd but not smaller */
        { 1, 0, 0, 0, 3, 8, "overhead" },                 /* shorter than its CRC */
        { 1, 1, 0, VB_BLOB_MAX + 1, 100, 8, "plain bytes" },
        { 1, 0, 0, 96, 100, 9, "back to back" },          /* a gap */
        { 1, 0, 0, 96, 100, 0, "back to back" },          /* inside the header */
        { 1, 0, 0, 96, 100, UINT64_MAX - 50, "back to back" },
        { 1, 0, 0, 196, 200, 8, "runs past" },            /* past the blob area */
        { 1, 0, 0, 0xfffffffb, 0xffffffff, 8, "plain bytes" },
    };

    keys_for(&k, VB_AEAD_NONE);
    /* the well-formed base case: one 100-byte blob at 8 */
    entry(ents, 1, 0, 0, 96, 100, 8);
    p = forge(ents, 1, 1, 100, &len);
    g_assert_cmpint(vb_pack_parse(&k, p, len, &info, &e), ==, 0);
    vb_pack_info_free(&info);
    g_free(p);

    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        entry(ents, bad[i].type, bad[i].comp, bad[i].res, bad[i].plain, bad[i].stored,
              bad[i].off);
        p = forge(ents, 1, 1, 100, &len);
        g_assert_cmpint(vb_pack_parse(&k, p, len, &info, &e), ==, -EBADMSG);
        if (!strstr(e.msg, bad[i].msg))
            g_error("case %zu: '%s' lacks '%s'", i, e.msg, bad[i].msg);
        g_free(p);
    }
    /* overlapping and out-of-order pairs */
    entry(ents, 1, 0, 0, 46, 50, 8);
    entry(ents + VB_PACK_ENTRY, 1, 0, 0, 46, 50, 40);
    p = forge(ents, 2, 2, 100, &len);
    g_assert_cmpint(vb_pack_parse(&k, p, len, &info, &e), ==, -EBADMSG);
    g_assert_nonnull(strstr(e.msg, "entry 1"));
    g_free(p);
    entry(ents, 1, 0, 0, 46, 50, 58);
    entry(ents + VB_PACK_ENTRY, 1, 0, 0, 46, 50, 8);
    p = forge(ents, 2, 2, 100, &len);
    g_assert_cmpint(vb_pack_parse(&k, p, len, &info, &e), ==, -EBADMSG);
    g_free(p);
    /* blobs that stop short of the trailer: unaccounted bytes */
    entry(ents, 1, 0, 0, 46, 50, 8);
    p = forge(ents, 1, 1, 100, &len);
    g_assert_cmpint(vb_pack_parse(&k, p, len, &info, &e), ==, -EBADMSG);
    g_assert_nonnull(strstr(e.msg, "blobs end at"));
    g_free(p);
    /* counts that do not match the trailer's size, huge ones included */
    static const uint32_t counts[] = { 0, 2, 3, 0x7fffffff, 0xffffffff };
    entry(ents, 1, 0, 0, 96, 100, 8);
    for (size_t i = 0; i < G_N_ELEMENTS(counts); i++) {
        p = forge(ents, 1, counts[i], 100, &len);
        g_assert_cmpint(vb_pack_parse(&k, p, len, &info, &e), ==, -EBADMSG);
        g_assert_nonnull(strstr(e.msg, "cannot hold"));
        g_free(p);
    }
    /* tail lengths: zero, one short of the least, past the pack, all ones */
    static const uint32_t tlens[] = { 0, 7, 61, 0x7fffffff, 0xffffffff };
    for (size_t i = 0; i < G_N_ELEMENTS(tlens); i++) {
        uint32_t v = htole32(tlens[i]);
        p = forge(ents, 1, 1, 100, &len);
        memcpy(p + len - 8, &v, 4);
        g_assert_cmpint(vb_pack_parse(&k, p, len, &info, &e), ==, -EBADMSG);
        g_assert_nonnull(strstr(e.msg, "trailer"));
        g_free(p);
    }
    /* sizes beyond the limit are refused before anything is read */
    size_t need;
    uint8_t tail[8] = { 0 };
    g_assert_cmpint(vb_pack_parse_end(&k, tail, 8, (uint64_t)VB_PACK_MAX + 1, &info, &need, &e),
                    ==, -EBADMSG);
    g_assert_cmpint(vb_pack_parse_end(&k, tail, 8, UINT64_MAX, &info, &need, &e), ==, -EBADMSG);
    vb_keys_wipe(&k);
}

/* ---- fuzz: random mutations never crash, and give 0 or -EBADMSG ------------ */

static void fix_crc(uint8_t *p, size_t len)
{
    uint32_t tlen, v;

    if (len < 16)
        return;
    tlen = le32_at(p + len - 8);
    if (tlen < 8 || tlen > len - 16)
        return;
    uint8_t *t = p + len - 8 - tlen;
    v = htole32((uint32_t)crc32(0, t, tlen - 4));
    memcpy(t + tlen - 4, &v, 4);
}

static void test_fuzz(void)
{
    GRand *r = g_rand_new_with_seed(seed + 3);
    const char *env = getenv("VB_TEST_FUZZ_ROUNDS");
    unsigned rounds = env ? (unsigned)atoi(env) : 20000, accepted = 0;
    uint8_t *out = g_malloc(VB_BLOB_MAX);
    vb_error e = { 0 };

    for (size_t a = 0; a < G_N_ELEMENTS(all_aeads); a++) {
        struct vb_keys k;
        struct built b;

        keys_for(&k, all_aeads[a]);
        build(r, &k, 8, 3000, &b);
        for (unsigned round = 0; round < rounds; round++) {
            size_t len = b.len;
            uint8_t *p = g_malloc(len + 64);
            struct vb_pack_info info;
            unsigned nmut = (unsigned)g_rand_int_range(r, 1, 5);

            memcpy(p, b.pack, len);
            for (unsigned m = 0; m < nmut; m++) {
                size_t at = (size_t)g_rand_int_range(r, 0, (gint32)len);
                uint32_t v;
                switch (g_rand_int_range(r, 0, 7)) {
                case 0:        /* flip bits anywhere */
                    p[at] ^= (uint8_t)g_rand_int_range(r, 1, 256);
                    break;
                case 1:        /* flip in the last 300 bytes: trailer and tail */
                    p[len - 1 - (size_t)g_rand_int_range(r, 0, (gint32)VB_MIN(len, 300u))] ^=
                        (uint8_t)g_rand_int_range(r, 1, 256);
                    break;
                case 2:        /* truncate */
                    len = at;
                    break;
                case 3:        /* grow by up to 64 bytes of noise */
                    for (unsigned i = (unsigned)g_rand_int_range(r, 1, 65); i && len < b.len + 64;
                         i--)
                        p[len++] = (uint8_t)g_rand_int(r);
                    break;
                case 4:        /* a random trailer length, or one near the real one */
                    if (len < 8)
                        break;
                    v = g_rand_boolean(r) ? g_rand_int(r)
                                          : le32_at(p + len - 8) +
                                                (uint32_t)g_rand_int_range(r, -60, 60);
                    memcpy(p + len - 8, &v, 4);
                    break;
                case 5:        /* an extreme value in a trailer field */
                    if (len >= 8 + 76 + 4) {   /* the field lies inside the pack */
                        static const uint32_t vals[] = { 0, 1, 0x7fffffff, 0xffffffff, 8, 4 };
                        v = vals[g_rand_int_range(r, 0, G_N_ELEMENTS(vals))];
                        memcpy(p + len - 8 - (size_t)g_rand_int_range(r, 4, 76), &v, 4);
                    }
                    break;
                default:       /* unencrypted: make the CRC agree, reach the structure checks */
                    if (k.aead == VB_AEAD_NONE)
                        fix_crc(p, len);
                    break;
                }
                if (len < 1)
                    break;
            }
            int ret = vb_pack_parse(&k, p, len, &info, &e);
            g_assert_true(ret == 0 || ret == -EBADMSG);
            if (ret == 0) {
                /* parsed: every entry lies inside the pack, every blob decodes or is refused */
                accepted++;
                for (uint32_t i = 0; i < info.count; i++) {
                    const struct vb_pack_entry *ent = &info.entries[i];
                    g_assert_cmpuint(ent->offset + ent->stored_len, <=, info.blobs_end);
                    int d = vb_blob_decode(&codec, &k, ent->id, k.id_key, p + ent->offset,
                                           ent->stored_len, ent->plain_len, out, VB_BLOB_MAX,
                                           &e);
                    g_assert_true(d == 0 || d == -EBADMSG);
                }
                vb_pack_info_free(&info);
            } else {
                g_assert_null(info.entries);
            }
            g_free(p);
        }
        built_free(&b);
        vb_keys_wipe(&k);
    }
    g_test_message("fuzz: %u rounds per encryption, %u mutated packs still parsed", rounds,
                   accepted);
    g_free(out);
    g_rand_free(r);
}

/* ---- writer ----------------------------------------------------------------- */

static void test_writer(void)
{
    GRand *r = g_rand_new_with_seed(seed + 4);
    uint8_t *buf = g_malloc(1 << 20), id[32];
    vb_error e = { 0 };

    for (size_t a = 0; a < G_N_ELEMENTS(all_aeads); a++) {
        struct vb_keys k;
        struct vb_pack_writer *w, *w2;
        struct vb_pack_info info, info2;
        uint8_t *pack, *pack2, pid[32], pid2[32];
        size_t len, len2;
        unsigned n = 0;

        keys_for(&k, all_aeads[a]);
        /* fills to the target with incompressible 1 MiB blobs */
        w = vb_pack_writer_new(&k, 4u << 20);
        while (!vb_pack_full(w)) {
            fill(r, buf, 1 << 20, false);
            make_id(&k, buf, 1 << 20, id);
            g_assert_cmpint(vb_pack_add(w, &codec, VB_BLOB_DATA, id, buf, 1 << 20, &e), ==, 0);
            n++;
        }
        g_assert_cmpuint(n, ==, 4);
        g_assert_cmpuint(vb_pack_size(w), >=, 4u << 20);
        g_assert_cmpint(vb_pack_add(w, &codec, 9, id, buf, 1, &e), ==, -EINVAL);
        g_assert_cmpint(vb_pack_add(w, &codec, VB_BLOB_DATA, id, buf, VB_BLOB_MAX + 1, &e), ==,
                        -EFBIG);
        g_assert_cmpint(vb_pack_finish(w, &pack, &len, pid, &e), ==, 0);
        vb_pack_writer_free(w);

        /* repack: every blob moved as it is into a new pack */
        g_assert_cmpint(vb_pack_parse(&k, pack, len, &info, &e), ==, 0);
        w2 = vb_pack_writer_new(&k, 0);
        for (uint32_t i = info.count; i-- > 0;)
            g_assert_cmpint(vb_pack_add_encoded(w2, &info.entries[i],
                                                pack + info.entries[i].offset, &e), ==, 0);
        struct vb_pack_entry bogus = info.entries[0];
        bogus.comp = VB_CC_ZSTD;    /* lengths say plain */
        g_assert_cmpint(vb_pack_add_encoded(w2, &bogus, pack + bogus.offset, &e), ==, -EBADMSG);
        g_assert_cmpint(vb_pack_finish(w2, &pack2, &len2, pid2, &e), ==, 0);
        vb_pack_writer_free(w2);
        g_assert_cmpuint(len2, ==, len);
        g_assert_false(memcmp(pid, pid2, 32) == 0);     /* other order: other bytes */
        g_assert_cmpint(vb_pack_parse(&k, pack2, len2, &info2, &e), ==, 0);
        for (uint32_t i = 0; i < info2.count; i++) {
            const struct vb_pack_entry *ent = &info2.entries[i];
            g_assert_true(memcmp(ent->id, info.entries[info.count - 1 - i].id, 32) == 0);
            g_assert_cmpint(vb_blob_decode(&codec, &k, ent->id, k.id_key, pack2 + ent->offset,
                                           ent->stored_len, ent->plain_len, buf, 1 << 20, &e),
                            ==, 0);
        }
        vb_pack_info_free(&info);
        vb_pack_info_free(&info2);
        free(pack);
        free(pack2);

        /* the largest blob, alone in a pack */
        uint8_t *big = g_malloc(VB_BLOB_MAX), *back = g_malloc(VB_BLOB_MAX);
        fill(r, big, VB_BLOB_MAX, true);
        make_id(&k, big, VB_BLOB_MAX, id);
        w = vb_pack_writer_new(&k, 0);
        g_assert_cmpint(vb_pack_add(w, &codec, VB_BLOB_META, id, big, VB_BLOB_MAX, &e), ==, 0);
        g_assert_cmpint(vb_pack_finish(w, &pack, &len, pid, &e), ==, 0);
        vb_pack_writer_free(w);
        g_assert_cmpint(vb_pack_parse(&k, pack, len, &info, &e), ==, 0);
        g_assert_cmpuint(info.count, ==, 1);
        g_assert_cmpint(info.entries[0].type, ==, VB_BLOB_META);
        g_assert_cmpint(vb_blob_decode(&codec, &k, id, k.id_key, pack + info.entries[0].offset,
                                       info.entries[0].stored_len, info.entries[0].plain_len,
                                       back, VB_BLOB_MAX, &e), ==, 0);
        g_assert_true(memcmp(back, big, VB_BLOB_MAX) == 0);
        vb_pack_info_free(&info);
        free(pack);
        g_free(big);
        g_free(back);
        vb_keys_wipe(&k);
    }
    g_free(buf);
    g_rand_free(r);
}

int main(int argc, char **argv)
{
    const char *s = getenv("VB_TEST_SEED");
    int ret;

    g_test_init(&argc, &argv, NULL);
    seed = s ? (guint32)strtoul(s, NULL, 0) : (guint32)g_random_int();
    printf("# seed %u (VB_TEST_SEED=%u repeats this run)\n", seed, seed);
    g_assert_cmpint(vb_codec_init(&codec, 3), ==, 0);
    g_test_add_func("/repo-pack/blob", test_blob);
    g_test_add_func("/repo-pack/roundtrip", test_roundtrip);
    g_test_add_func("/repo-pack/flips", test_flips);
    g_test_add_func("/repo-pack/truncated", test_truncated);
    g_test_add_func("/repo-pack/hostile", test_hostile);
    g_test_add_func("/repo-pack/fuzz", test_fuzz);
    g_test_add_func("/repo-pack/writer", test_writer);
    ret = g_test_run();
    vb_codec_free(&codec);
    return ret;
}
