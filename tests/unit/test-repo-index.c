/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests: index files and the local lookup table (hostd/repo/index.c).
 * Random ids come from one seed, printed at the start; VB_TEST_SEED=N
 * repeats a run.  VB_TEST_INDEX_RSS_RECORDS sets the size of the memory
 * test (default 300000; bench/index-bench measures 1 and 10 million).
 */
#include <glib.h>
#include <limits.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "bytes.h"
#include "index.h"
#include "pack.h"
#include "repo-teststore.h"

static const enum vb_aead all_aeads[] = { VB_AEAD_NONE, VB_AEAD_AES256GCM,
                                          VB_AEAD_CHACHA20POLY1305 };
static guint32 seed;
static const uint8_t repo_id[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };

static void keys_for(struct vb_keys *k, enum vb_aead a)
{
    vb_error e = { 0 };
    g_assert_cmpint(vb_keys_generate(k, a, &e), ==, 0);
}

static void rand_bytes(GRand *r, uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)g_rand_int(r);
}

/* n random entries over npacks random packs, with valid lengths */
static struct vb_index_entry *rand_entries(GRand *r, const struct vb_keys *k, size_t n,
                                           uint32_t npacks)
{
    struct vb_index_entry *x = g_new0(struct vb_index_entry, VB_MAX(n, (size_t)1));
    size_t over = vb_blob_overhead(k);

    for (size_t i = 0; i < n; i++) {
        rand_bytes(r, x[i].id, 32);
        x[i].pack = g_rand_int_range(r, 0, (gint32)npacks);
        x[i].type = g_rand_boolean(r) ? VB_BLOB_DATA : VB_BLOB_META;
        x[i].plain_len = (uint32_t)g_rand_int_range(r, 0, 1 << 20);
        x[i].stored_len = (uint32_t)(over + g_rand_int_range(r, 0, (gint32)x[i].plain_len + 1));
        x[i].offset = (uint32_t)g_rand_int_range(r, VB_PACK_HDR, 1 << 28);
    }
    return x;
}

static struct vb_pack_id *rand_packs(GRand *r, uint32_t n)
{
    struct vb_pack_id *p = g_new(struct vb_pack_id, n);
    for (uint32_t i = 0; i < n; i++)
        rand_bytes(r, p[i].b, 32);
    return p;
}

/* ---- index files ---------------------------------------------------------------- */

static void test_roundtrip(void)
{
    GRand *r = g_rand_new_with_seed(seed);
    vb_error e = { 0 };

    for (size_t a = 0; a < G_N_ELEMENTS(all_aeads); a++) {
        static const size_t sizes[] = { 0, 1, 2, 100, 5000 };
        struct vb_keys k;
        keys_for(&k, all_aeads[a]);
        for (size_t si = 0; si < G_N_ELEMENTS(sizes); si++) {
            size_t n = sizes[si];
            struct vb_pack_id *packs = rand_packs(r, 7);
            struct vb_index_entry *x = rand_entries(r, &k, n, 7), *copy;
            struct vb_index_file f;
            uint8_t *out, fid[32], sha[32];
            size_t len;

            /* a duplicate (same id, same pack) is dropped; same id in another pack stays */
            if (n >= 2) {
                x[1] = x[0];
                if (n >= 100) {
                    x[2] = x[0];
                    x[2].pack = (x[0].pack + 1) % 7;
                }
            }
            copy = g_memdup2(x, sizeof(*x) * VB_MAX(n, (size_t)1));
            g_assert_cmpint(vb_index_build(&k, x, n, packs, 7, &out, &len, fid, &e), ==, 0);
            SHA256(out, len, sha);
            g_assert_true(memcmp(sha, fid, 32) == 0);
            g_assert_cmpint(vb_index_parse(&k, out, len, &f, &e), ==, 0);
            g_assert_cmpuint(f.count, ==, n >= 2 ? n - 1 : n);
            for (uint32_t i = 1; i < f.npacks; i++)
                g_assert_cmpint(memcmp(f.packs[i - 1].b, f.packs[i].b, 32), <, 0);
            /* every input entry is found with its pack and fields */
            for (size_t i = 0; i < n; i++) {
                bool found = false;
                for (size_t j = 0; j < f.count && !found; j++) {
                    const struct vb_index_entry *y = &f.ents[j];
                    found = !memcmp(y->id, copy[i].id, 32) &&
                            !memcmp(f.packs[y->pack].b, packs[copy[i].pack].b, 32) &&
                            y->offset == copy[i].offset && y->type == copy[i].type &&
                            y->stored_len == copy[i].stored_len &&
                            y->plain_len == copy[i].plain_len;
                }
                g_assert_true(found);
            }
            for (size_t j = 1; j < f.count; j++)
                g_assert_cmpint(memcmp(f.ents[j - 1].id, f.ents[j].id, 32), <=, 0);
            /* another key does not open it */
            if (all_aeads[a] != VB_AEAD_NONE) {
                struct vb_keys k2;
                struct vb_index_file f2;
                keys_for(&k2, all_aeads[a]);
                g_assert_cmpint(vb_index_parse(&k2, out, len, &f2, &e), ==, -EBADMSG);
                g_assert_nonnull(strstr(e.msg, "index file"));
            }
            vb_index_file_free(&f);
            free(out);
            g_free(x);
            g_free(copy);
            g_free(packs);
        }
    }
    g_rand_free(r);
}

static void test_build_refuses(void)
{
    struct vb_keys k;
    struct vb_pack_id packs[2] = { { { 1 } }, { { 1 } } };
    struct vb_index_entry x = { .pack = 0, .type = VB_BLOB_DATA, .offset = 8,
                                .stored_len = 10, .plain_len = 6 };
    uint8_t *out, fid[32];
    size_t len;
    vb_error e = { 0 };

    keys_for(&k, VB_AEAD_NONE);
    x.pack = 2;
    g_assert_cmpint(vb_index_build(&k, &x, 1, packs, 2, &out, &len, fid, &e), ==, -EINVAL);
    x.pack = 0;
    x.type = 3;
    g_assert_cmpint(vb_index_build(&k, &x, 1, packs, 2, &out, &len, fid, &e), ==, -EINVAL);
    x.type = VB_BLOB_DATA;
    x.offset = 4;
    g_assert_cmpint(vb_index_build(&k, &x, 1, packs, 2, &out, &len, fid, &e), ==, -EINVAL);
    x.offset = 8;
    x.stored_len = 2;     /* less than the CRC */
    g_assert_cmpint(vb_index_build(&k, &x, 1, packs, 2, &out, &len, fid, &e), ==, -EINVAL);
    x.stored_len = 11;    /* payload longer than plain */
    g_assert_cmpint(vb_index_build(&k, &x, 1, packs, 2, &out, &len, fid, &e), ==, -EINVAL);
    x.stored_len = 10;
    /* one pack id given twice and both used */
    {
        struct vb_index_entry two[2] = { x, x };
        two[1].pack = 1;
        two[1].id[0] = 1;
        g_assert_cmpint(vb_index_build(&k, two, 2, packs, 2, &out, &len, fid, &e), ==,
                        -EINVAL);
    }
    g_assert_cmpint(vb_index_build(&k, &x, 1, packs, 2, &out, &len, fid, &e), ==, 0);
    free(out);
}

static void test_flips(void)
{
    GRand *r = g_rand_new_with_seed(seed + 1);
    vb_error e = { 0 };

    for (size_t a = 0; a < G_N_ELEMENTS(all_aeads); a++) {
        struct vb_keys k;
        struct vb_pack_id *packs = rand_packs(r, 3);
        struct vb_index_entry *x;
        struct vb_index_file f;
        uint8_t *out, fid[32];
        size_t len;

        keys_for(&k, all_aeads[a]);
        x = rand_entries(r, &k, 6, 3);
        g_assert_cmpint(vb_index_build(&k, x, 6, packs, 3, &out, &len, fid, &e), ==, 0);
        for (size_t i = 0; i < len; i++) {
            for (int bit = 0; bit < 8; bit++) {
                out[i] ^= (uint8_t)(1u << bit);
                g_assert_cmpint(vb_index_parse(&k, out, len, &f, &e), ==, -EBADMSG);
                g_assert_cmpstr(e.msg, !=, "");
                out[i] ^= (uint8_t)(1u << bit);
            }
        }
        for (size_t m = 0; m < len; m++)
            g_assert_cmpint(vb_index_parse(&k, out, m, &f, &e), ==, -EBADMSG);
        g_assert_cmpint(vb_index_parse(&k, out, len, &f, &e), ==, 0);
        vb_index_file_free(&f);
        free(out);
        g_free(x);
        g_free(packs);
    }
    g_rand_free(r);
}

/* Unencrypted files re-sealed with a correct CRC after a change: the field checks. */
struct forged {
    uint8_t *p;       /* plain */
    size_t len;
};

static void reseal_expect(const struct vb_keys *k, struct forged *f, const char *what)
{
    uint8_t *s = g_malloc(f->len + 4);
    struct vb_index_file out;
    vb_error e = { 0 };

    memcpy(s, f->p, f->len);
    vb_put_le32(s + f->len, vb_crc32_more(0, f->p, f->len));
    g_assert_cmpint(vb_index_parse(k, s, f->len + 4, &out, &e), ==, -EBADMSG);
    if (!strstr(e.msg, what))
        g_error("forged index: expected '%s' in '%s'", what, e.msg);
    g_free(s);
}

static void test_hostile(void)
{
    struct vb_keys k;
    struct vb_pack_id packs[2];
    struct vb_index_entry x[3];
    uint8_t *out, fid[32];
    size_t len;
    vb_error e = { 0 };
    struct forged f;
    uint8_t *rec;

    keys_for(&k, VB_AEAD_NONE);
    memset(packs, 0, sizeof(packs));
    packs[0].b[0] = 0x10;
    packs[1].b[0] = 0x20;
    memset(x, 0, sizeof(x));
    for (int i = 0; i < 3; i++) {
        x[i].id[0] = (uint8_t)(0x40 + i);
        x[i].pack = i == 2;
        x[i].type = VB_BLOB_DATA;
        x[i].offset = 8 + 100 * i;
        x[i].plain_len = 100;
        x[i].stored_len = 50;
    }
    g_assert_cmpint(vb_index_build(&k, x, 3, packs, 2, &out, &len, fid, &e), ==, 0);
    f.len = len - 4;
    f.p = g_malloc(f.len);
#define RESET() memcpy(f.p, out, f.len)
#define REC(i) (f.p + VB_INDEX_HDR + 2 * 32 + (i) * VB_INDEX_REC)
    RESET();
    f.p[0] = 'X';
    reseal_expect(&k, &f, "magic");
    RESET();
    f.p[4] = 2;
    reseal_expect(&k, &f, "version");
    RESET();
    f.p[6] = 1;
    reseal_expect(&k, &f, "reserved");
    RESET();
    vb_put_le32(f.p + 8, 3);
    reseal_expect(&k, &f, "cannot hold");
    RESET();
    vb_put_le32(f.p + 12, 0xffffffff);
    reseal_expect(&k, &f, "cannot hold");
    RESET();
    f.p[VB_INDEX_HDR] = 0x30;                 /* packs out of order */
    reseal_expect(&k, &f, "pack table entry 1");
    RESET();
    rec = REC(1);
    vb_put_le32(rec + 32, 2);
    reseal_expect(&k, &f, "record 1: pack ordinal 2");
    RESET();
    REC(2)[36] = 9;
    reseal_expect(&k, &f, "record 2: unknown blob type");
    RESET();
    REC(0)[38] = 1;
    reseal_expect(&k, &f, "record 0: reserved");
    RESET();
    vb_put_le64(REC(0) + 40, 4);
    reseal_expect(&k, &f, "does not fit a pack");
    RESET();
    vb_put_le64(REC(0) + 40, (uint64_t)1 << 40);
    reseal_expect(&k, &f, "does not fit a pack");
    RESET();
    vb_put_le32(REC(0) + 48, 2);
    reseal_expect(&k, &f, "less than the blob overhead");
    RESET();
    vb_put_le32(REC(0) + 48, 105);
    reseal_expect(&k, &f, "more than plain length");
    RESET();
    vb_put_le32(REC(0) + 52, VB_BLOB_MAX + 1);
    reseal_expect(&k, &f, "more than 16777216");
    RESET();
    REC(1)[0] = 0x40;                          /* same id, same pack as record 0 */
    reseal_expect(&k, &f, "record 1: not after record 0");
    RESET();
    REC(2)[0] = 0x01;
    reseal_expect(&k, &f, "record 2: not after record 1");
    RESET();
    vb_put_le32(REC(2) + 32, 0);               /* pack 1 named by none */
    reseal_expect(&k, &f, "named by no record");
#undef REC
#undef RESET
    g_free(f.p);
    free(out);
}

/* ---- the cache ------------------------------------------------------------------------ */

struct fx {
    struct teststore *t;
    char *cachedir;
    struct vb_keys k;
    GRand *r;
};

static void fx_setup(struct fx *f, enum vb_aead a)
{
    f->t = teststore_new(NULL);
    f->cachedir = g_dir_make_tmp("vb-cache-XXXXXX", NULL);
    keys_for(&f->k, a);
    f->r = g_rand_new_with_seed(seed + 2);
}

static void fx_teardown(struct fx *f)
{
    teststore_free(f->t, false);
    g_assert_cmpint(vb_rm_rf_at(AT_FDCWD, f->cachedir), ==, 0);
    g_free(f->cachedir);
    g_rand_free(f->r);
}

/* Put an index file of n random entries; *ents gets them (sorted by id). */
static void put_index(struct fx *f, size_t n, uint32_t npacks, struct vb_index_entry **ents,
                      struct vb_pack_id **packs_out, uint8_t fid[32])
{
    struct vb_pack_id *packs = rand_packs(f->r, npacks);
    struct vb_index_entry *x = rand_entries(f->r, &f->k, n, npacks);
    char name[VB_OBJ_NAME_MAX];
    uint8_t *out;
    size_t len;
    vb_error e = { 0 };

    g_assert_cmpint(vb_index_build(&f->k, x, n, packs, npacks, &out, &len, fid, &e), ==, 0);
    vb_obj_name(VB_OBJ_INDEX, fid, name);
    g_assert_cmpint(vb_store_put(f->t->s, name, out, len, 0, &e), ==, 0);
    free(out);
    *ents = x;                /* sorted by build; pack ordinals into packs */
    *packs_out = packs;
}

static void expect_found(struct vb_index_view *v, const struct vb_index_entry *x, size_t n,
                         const struct vb_pack_id *packs, bool present)
{
    for (size_t i = 0; i < n; i++) {
        struct vb_blob_loc loc;
        int ret = vb_index_view_find(v, x[i].id, NULL, &loc);
        g_assert_cmpint(ret, ==, present ? 1 : 0);
        if (!present)
            continue;
        g_assert_true(memcmp(loc.pack, packs[x[i].pack].b, 32) == 0);
        g_assert_cmpuint(loc.offset, ==, x[i].offset);
        g_assert_cmpuint(loc.stored_len, ==, x[i].stored_len);
        g_assert_cmpuint(loc.plain_len, ==, x[i].plain_len);
        g_assert_cmpuint(loc.type, ==, x[i].type);
    }
}

/* Only the repository's own cache folder is private: the folders made above
 * it (/var/cache/vbackup, shared with the tests' QEMU, which libvirt runs as
 * another user) are not. */
static void test_cache_modes(void)
{
    g_autofree char *top = g_dir_make_tmp("vb-cachemode-XXXXXX", NULL);
    g_autofree char *shared = g_build_filename(top, "vbackup", NULL);
    g_autofree char *repos = g_build_filename(shared, "repos", NULL);
    g_autofree char *dir = g_build_filename(repos, "0123abcd", NULL);
    struct vb_index_cache *c;
    struct stat st;
    vb_error e = { 0 };
    mode_t old = umask(022);

    g_assert_cmpint(vb_index_cache_open(dir, repo_id, &c, &e), ==, 0);
    vb_index_cache_close(c);
    umask(old);
    g_assert_cmpint(stat(shared, &st), ==, 0);
    g_assert_cmpint(st.st_mode & 0777, ==, 0755);
    g_assert_cmpint(stat(repos, &st), ==, 0);
    g_assert_cmpint(st.st_mode & 0777, ==, 0755);
    g_assert_cmpint(stat(dir, &st), ==, 0);
    g_assert_cmpint(st.st_mode & 0777, ==, 0700);
    g_assert_cmpint(vb_rm_rf_at(AT_FDCWD, top), ==, 0);
}

static void test_cache(void)
{
    for (size_t a = 0; a < G_N_ELEMENTS(all_aeads); a++) {
        struct fx f;
        struct vb_index_cache *c;
        struct vb_index_view *v;
        struct vb_index_refresh_info info;
        struct vb_index_entry *x1, *x2, *x3;
        struct vb_pack_id *p1, *p2, *p3;
        uint8_t f1[32], f2[32], f3[32], miss[32] = { 0 };
        char name[VB_OBJ_NAME_MAX];
        vb_error e = { 0 };

        fx_setup(&f, all_aeads[a]);
        g_assert_cmpint(vb_index_cache_open(f.cachedir, repo_id, &c, &e), ==, 0);
        /* empty before anything */
        g_assert_cmpint(vb_index_cache_view(c, &v, &e), ==, 0);
        g_assert_cmpuint(vb_index_view_count(v), ==, 0);
        g_assert_cmpint(vb_index_view_find(v, miss, NULL, NULL), ==, 0);
        vb_index_view_unref(v);

        put_index(&f, 1000, 5, &x1, &p1, f1);
        put_index(&f, 3000, 9, &x2, &p2, f2);
        g_assert_cmpint(vb_index_cache_refresh(c, f.t->s, &f.k, &info, &e), ==, 0);
        g_assert_cmpuint(info.listed, ==, 2);
        g_assert_cmpuint(info.fetched, ==, 2);
        g_assert_cmpuint(info.records, ==, 4000);
        g_assert_cmpint(vb_index_cache_view(c, &v, &e), ==, 0);
        expect_found(v, x1, 1000, p1, true);
        expect_found(v, x2, 3000, p2, true);
        g_assert_cmpuint(vb_index_view_npacks(v), ==, 14);
        g_assert_cmpuint(vb_index_view_nsources(v), ==, 2);
        for (uint64_t i = 1; i < vb_index_view_count(v); i++) {
            uint8_t id0[32], id1[32];
            g_assert_cmpint(vb_index_view_rec(v, i - 1, id0, NULL, NULL, NULL), ==, 0);
            g_assert_cmpint(vb_index_view_rec(v, i, id1, NULL, NULL, NULL), ==, 0);
            g_assert_cmpint(memcmp(id0, id1, 32), <=, 0);
        }

        /* unchanged: one listing, nothing else */
        teststore_zero(f.t);
        g_assert_cmpint(vb_index_cache_refresh(c, f.t->s, &f.k, &info, &e), ==, 0);
        g_assert_cmpint(teststore_total(f.t), ==, 1);
        g_assert_cmpint(f.t->count[TS_LIST], ==, 1);
        g_assert_cmpuint(info.fetched + info.dropped, ==, 0);
        g_assert_false(info.rebuilt);

        /* a second cache object on the same folder (another process) reads the table */
        {
            struct vb_index_cache *c2;
            struct vb_index_view *v2;
            g_assert_cmpint(vb_index_cache_open(f.cachedir, repo_id, &c2, &e), ==, 0);
            g_assert_cmpint(vb_index_cache_view(c2, &v2, &e), ==, 0);
            g_assert_cmpuint(vb_index_view_count(v2), ==, 4000);
            vb_index_view_unref(v2);
            vb_index_cache_close(c2);
        }

        /* one goes, one comes; the old view stays usable */
        vb_obj_name(VB_OBJ_INDEX, f1, name);
        g_assert_cmpint(vb_store_remove(f.t->s, name, &e), ==, 0);
        put_index(&f, 500, 2, &x3, &p3, f3);
        g_assert_cmpint(vb_index_cache_refresh(c, f.t->s, &f.k, &info, &e), ==, 0);
        g_assert_cmpuint(info.fetched, ==, 1);
        g_assert_cmpuint(info.dropped, ==, 1);
        g_assert_cmpuint(info.records, ==, 3500);
        expect_found(v, x1, 1000, p1, true);
        vb_index_view_unref(v);
        g_assert_cmpint(vb_index_cache_view(c, &v, &e), ==, 0);
        expect_found(v, x1, 1000, p1, false);
        expect_found(v, x2, 3000, p2, true);
        expect_found(v, x3, 500, p3, true);
        g_assert_cmpuint(vb_index_view_npacks(v), ==, 11);
        vb_index_view_unref(v);

        /* a damaged table is rebuilt from the store */
        {
            char *p = g_build_filename(f.cachedir, "lookup.tbl", NULL);
            gchar *data;
            gsize len;
            g_assert_true(g_file_get_contents(p, &data, &len, NULL));
            data[len / 2] ^= 1;
            g_assert_true(g_file_set_contents(p, data, (gssize)len, NULL));
            g_free(data);
            g_free(p);
        }
        vb_index_cache_close(c);
        g_assert_cmpint(vb_index_cache_open(f.cachedir, repo_id, &c, &e), ==, 0);
        g_assert_cmpint(vb_index_cache_view(c, &v, &e), ==, 0);
        g_assert_cmpuint(vb_index_view_count(v), ==, 0);       /* damaged: not used */
        vb_index_view_unref(v);
        g_assert_cmpint(vb_index_cache_refresh(c, f.t->s, &f.k, &info, &e), ==, 0);
        g_assert_true(info.rebuilt);
        g_assert_cmpuint(info.fetched, ==, 2);
        g_assert_cmpint(vb_index_cache_view(c, &v, &e), ==, 0);
        expect_found(v, x2, 3000, p2, true);
        expect_found(v, x3, 500, p3, true);
        vb_index_view_unref(v);
        vb_index_cache_close(c);

        /* another repository's table in the folder is not used */
        {
            uint8_t other[16] = { 9 };
            g_assert_cmpint(vb_index_cache_open(f.cachedir, other, &c, &e), ==, 0);
            g_assert_cmpint(vb_index_cache_refresh(c, f.t->s, &f.k, &info, &e), ==, 0);
            g_assert_true(info.rebuilt);
            vb_index_cache_close(c);
        }

        /* a damaged index file in the store fails the refresh, naming it */
        {
            GBytes *b;
            gsize len;
            uint8_t *d;
            vb_obj_name(VB_OBJ_INDEX, f2, name);
            b = teststore_read_raw(f.t, name);
            {
                gconstpointer raw = g_bytes_get_data(b, &len);
                d = g_memdup2(raw, len);
            }
            d[len - 1] ^= 0x80;
            teststore_write_raw(f.t, name, d, len);
            g_assert_cmpint(vb_index_cache_open(f.cachedir, repo_id, &c, &e), ==, 0);
            {
                char *tbl = g_build_filename(f.cachedir, "lookup.tbl", NULL);
                unlink(tbl);
                g_free(tbl);
            }
            g_assert_cmpint(vb_index_cache_refresh(c, f.t->s, &f.k, &info, &e), ==, -EBADMSG);
            g_assert_nonnull(strstr(e.msg, name));
            vb_index_cache_close(c);
            g_free(d);
            g_bytes_unref(b);
        }

        g_free(x1);
        g_free(x2);
        g_free(x3);
        g_free(p1);
        g_free(p2);
        g_free(p3);
        fx_teardown(&f);
    }
}

/* Many small runs (a tiny budget) merge to the same table as one. */
static void test_cache_runs(void)
{
    struct fx f;
    struct vb_index_cache *c;
    struct vb_index_view *v;
    struct vb_index_refresh_info info;
    struct vb_index_entry *x[6];
    struct vb_pack_id *p[6];
    uint8_t fid[32];
    vb_error e = { 0 };

    fx_setup(&f, VB_AEAD_AES256GCM);
    for (int i = 0; i < 6; i++)
        put_index(&f, 700 + 100 * (size_t)i, 4, &x[i], &p[i], fid);
    g_assert_cmpint(vb_index_cache_open(f.cachedir, repo_id, &c, &e), ==, 0);
    vb_index_cache_set_budget(c, 56 * 333);
    g_assert_cmpint(vb_index_cache_refresh(c, f.t->s, &f.k, &info, &e), ==, 0);
    g_assert_cmpuint(info.records, ==, 700 * 6 + 100 * 15);
    g_assert_cmpint(vb_index_cache_view(c, &v, &e), ==, 0);
    for (int i = 0; i < 6; i++)
        expect_found(v, x[i], 700 + 100 * (size_t)i, p[i], true);
    for (uint64_t i = 1; i < vb_index_view_count(v); i++) {
        uint8_t id0[32], id1[32];
        g_assert_cmpint(vb_index_view_rec(v, i - 1, id0, NULL, NULL, NULL), ==, 0);
        g_assert_cmpint(vb_index_view_rec(v, i, id1, NULL, NULL, NULL), ==, 0);
        g_assert_cmpint(memcmp(id0, id1, 32), <, 0);
    }
    vb_index_view_unref(v);
    vb_index_cache_close(c);
    for (int i = 0; i < 6; i++) {
        g_free(x[i]);
        g_free(p[i]);
    }
    fx_teardown(&f);
}

/* A file that vanishes between the listing and its get: list again. */
static int vanish_hook(struct teststore *t, enum ts_op op, const char *name)
{
    if (op == TS_STAT && name && g_str_has_prefix(name, "index/") && t->opaque) {
        vb_error e = { 0 };
        t->opaque = NULL;
        t->lops->remove(t->lh, name, &e);
    }
    return 0;
}

static void test_cache_vanish(void)
{
    struct fx f;
    struct vb_index_cache *c;
    struct vb_index_view *v;
    struct vb_index_refresh_info info;
    struct vb_index_entry *x1, *x2;
    struct vb_pack_id *p1, *p2;
    uint8_t f1[32], f2[32];
    vb_error e = { 0 };

    fx_setup(&f, VB_AEAD_NONE);
    put_index(&f, 100, 2, &x1, &p1, f1);
    put_index(&f, 100, 2, &x2, &p2, f2);
    g_assert_cmpint(vb_index_cache_open(f.cachedir, repo_id, &c, &e), ==, 0);
    f.t->hook = vanish_hook;
    f.t->opaque = &f;
    teststore_zero(f.t);
    g_assert_cmpint(vb_index_cache_refresh(c, f.t->s, &f.k, &info, &e), ==, 0);
    g_assert_cmpint(f.t->count[TS_LIST], ==, 2);
    g_assert_cmpuint(info.fetched, ==, 1);
    g_assert_cmpuint(info.records, ==, 100);
    g_assert_cmpint(vb_index_cache_view(c, &v, &e), ==, 0);
    g_assert_cmpuint(vb_index_view_nsources(v), ==, 1);
    vb_index_view_unref(v);
    vb_index_cache_close(c);
    g_free(x1);
    g_free(x2);
    g_free(p1);
    g_free(p2);
    fx_teardown(&f);
}

/* The same id in two packs: a skip bitmap (condemned packs) picks the other. */
static void test_cache_skip(void)
{
    struct fx f;
    struct vb_index_cache *c;
    struct vb_index_view *v;
    struct vb_pack_id packs[2];
    struct vb_index_entry x[2];
    struct vb_blob_loc loc;
    struct vb_condemned cd = { 0 };
    GPtrArray *list = g_ptr_array_new();
    uint8_t *out, fid[32], *skip;
    char name[VB_OBJ_NAME_MAX];
    size_t len;
    uint32_t ord;
    vb_error e = { 0 };

    fx_setup(&f, VB_AEAD_NONE);
    memset(packs, 0, sizeof(packs));
    packs[0].b[0] = 0xaa;
    packs[1].b[0] = 0xbb;
    memset(x, 0, sizeof(x));
    for (int i = 0; i < 2; i++) {
        memset(x[i].id, 0x55, 32);
        x[i].pack = (uint32_t)i;
        x[i].type = VB_BLOB_DATA;
        x[i].offset = 8;
        x[i].plain_len = 10;
        x[i].stored_len = 14;
    }
    g_assert_cmpint(vb_index_build(&f.k, x, 2, packs, 2, &out, &len, fid, &e), ==, 0);
    vb_obj_name(VB_OBJ_INDEX, fid, name);
    g_assert_cmpint(vb_store_put(f.t->s, name, out, len, 0, &e), ==, 0);
    free(out);
    g_assert_cmpint(vb_index_cache_open(f.cachedir, repo_id, &c, &e), ==, 0);
    g_assert_cmpint(vb_index_cache_refresh(c, f.t->s, &f.k, NULL, &e), ==, 0);
    g_assert_cmpint(vb_index_cache_view(c, &v, &e), ==, 0);
    g_assert_cmpint(vb_index_view_find(v, x[0].id, NULL, &loc), ==, 1);
    g_assert_cmpint(loc.pack[0], ==, 0xaa);
    /* none of them condemned: no bitmap */
    g_assert_null(vb_index_view_skip_condemned(v, list));
    cd.packs = g_array_new(FALSE, FALSE, sizeof(struct vb_pack_id));
    g_array_append_val(cd.packs, packs[0]);
    g_ptr_array_add(list, &cd);
    skip = vb_index_view_skip_condemned(v, list);
    g_assert_nonnull(skip);
    g_assert_cmpint(vb_index_view_find(v, x[0].id, skip, &loc), ==, 1);
    g_assert_cmpint(loc.pack[0], ==, 0xbb);
    g_array_append_val(cd.packs, packs[1]);
    free(skip);
    skip = vb_index_view_skip_condemned(v, list);
    g_assert_cmpint(vb_index_view_find(v, x[0].id, skip, &loc), ==, 0);
    g_assert_cmpint(vb_index_view_pack_ord(v, packs[1].b, &ord), ==, 0);
    g_assert_true(memcmp(vb_index_view_pack(v, ord), packs[1].b, 32) == 0);
    free(skip);
    g_array_free(cd.packs, TRUE);
    g_ptr_array_free(list, TRUE);
    vb_index_view_unref(v);
    vb_index_cache_close(c);
    fx_teardown(&f);
}

static void test_cache_dir(void)
{
    char out[PATH_MAX];
    vb_error e = { 0 };
    char *old = g_strdup(g_getenv("VBACKUP_CACHE"));

    g_assert_cmpint(vb_cache_dir("/x/y", repo_id, out, &e), ==, 0);
    g_assert_cmpstr(out, ==, "/x/y");
    g_setenv("VBACKUP_CACHE", "/tmp/c", TRUE);
    g_assert_cmpint(vb_cache_dir(NULL, repo_id, out, &e), ==, 0);
    g_assert_cmpstr(out, ==, "/tmp/c/0102030405060708090a0b0c0d0e0f10");
    g_unsetenv("VBACKUP_CACHE");
    g_assert_cmpint(vb_cache_dir(NULL, repo_id, out, &e), ==, 0);
    g_assert_true(g_str_has_suffix(out, "/vbackup/repos/0102030405060708090a0b0c0d0e0f10"));
    if (old)
        g_setenv("VBACKUP_CACHE", old, TRUE);
    g_free(old);
}

/* ---- memory ----------------------------------------------------------------------------- */

static long status_kb(const char *key)
{
    char *s = NULL, *p;
    long v = -1;

    g_assert_true(g_file_get_contents("/proc/self/status", &s, NULL, NULL));
    p = strstr(s, key);
    if (p)
        v = strtol(p + strlen(key) + 1, NULL, 10);
    g_free(s);
    return v;
}

/*
 * A synthetic index of N records in files of VB_INDEX_FILE_RECORDS: the
 * refresh's heap stays within its budget and one file, lookups allocate
 * nothing, and the table is mapped, not copied.
 */
static void test_cache_memory(void)
{
    const char *env = getenv("VB_TEST_INDEX_RSS_RECORDS");
    size_t n = env ? strtoul(env, NULL, 0) : 300000, per = VB_INDEX_FILE_RECORDS / 4;
    struct fx f;
    struct vb_index_cache *c;
    struct vb_index_view *v;
    struct vb_index_refresh_info info;
    GArray *probe = g_array_new(FALSE, FALSE, 32);
    long anon0, anon1, hwm;
    double t0;
    vb_error e = { 0 };

    fx_setup(&f, VB_AEAD_AES256GCM);
    for (size_t done = 0; done < n; done += per) {
        size_t m = VB_MIN(per, n - done);
        struct vb_index_entry *x;
        struct vb_pack_id *p;
        uint8_t fid[32];
        put_index(&f, m, 64, &x, &p, fid);
        for (size_t i = 0; i < m; i += 97)
            g_array_append_vals(probe, x[i].id, 1);
        g_free(x);
        g_free(p);
    }
    anon0 = status_kb("RssAnon:");
    g_assert_cmpint(vb_index_cache_open(f.cachedir, repo_id, &c, &e), ==, 0);
    vb_index_cache_set_budget(c, 8u << 20);
    t0 = vb_now();
    g_assert_cmpint(vb_index_cache_refresh(c, f.t->s, &f.k, &info, &e), ==, 0);
    printf("# %zu records: refresh %.2f s\n", n, vb_now() - t0);
    g_assert_cmpuint(info.records, ==, n);
    g_assert_cmpint(vb_index_cache_view(c, &v, &e), ==, 0);
    t0 = vb_now();
    for (guint i = 0; i < probe->len; i++)
        g_assert_cmpint(vb_index_view_find(v, &g_array_index(probe, uint8_t, 32 * i), NULL,
                                           NULL), ==, 1);
    for (guint i = 0; i < probe->len; i++) {
        uint8_t id[32];
        memcpy(id, &g_array_index(probe, uint8_t, 32 * i), 32);
        id[31] ^= 1;
        g_assert_cmpint(vb_index_view_find(v, id, NULL, NULL), ==, 0);
    }
    printf("# %u lookups: %.0f ns each\n", 2 * probe->len,
           (vb_now() - t0) * 1e9 / (2 * probe->len));
    anon1 = status_kb("RssAnon:");
    hwm = status_kb("VmHWM:");
    printf("# RssAnon before %ld KiB, after %ld KiB; RssFile %ld KiB; VmHWM %ld KiB\n",
           anon0, anon1, status_kb("RssFile:"), hwm);
    /* nothing per record stays on the heap: far less than 56 bytes a record
     * (not under a sanitizer, whose allocator keeps what is freed) */
#ifndef __SANITIZE_ADDRESS__
    g_assert_cmpint(anon1 - anon0, <, (long)(n * 56 / 1024 / 4) + 4096);
#endif
    vb_index_view_unref(v);
    vb_index_cache_close(c);
    g_array_free(probe, TRUE);
    fx_teardown(&f);
}

int main(int argc, char **argv)
{
    const char *s = getenv("VB_TEST_SEED");

    g_test_init(&argc, &argv, NULL);
    seed = s ? (guint32)strtoul(s, NULL, 0) : (guint32)g_random_int();
    printf("# seed %u (VB_TEST_SEED=%u repeats this run)\n", seed, seed);
    g_test_add_func("/repo-index/roundtrip", test_roundtrip);
    g_test_add_func("/repo-index/build-refuses", test_build_refuses);
    g_test_add_func("/repo-index/flips", test_flips);
    g_test_add_func("/repo-index/hostile", test_hostile);
    g_test_add_func("/repo-index/cache", test_cache);
    g_test_add_func("/repo-index/cache-modes", test_cache_modes);
    g_test_add_func("/repo-index/cache-runs", test_cache_runs);
    g_test_add_func("/repo-index/cache-vanish", test_cache_vanish);
    g_test_add_func("/repo-index/cache-skip", test_cache_skip);
    g_test_add_func("/repo-index/cache-dir", test_cache_dir);
    g_test_add_func("/repo-index/cache-memory", test_cache_memory);
    return g_test_run();
}
