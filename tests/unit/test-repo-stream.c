/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests: metadata streams (hostd/repo/stream.c), against an in-memory
 * blob store whose ids are SHA-256.  VB_TEST_SEED=N repeats a run.
 */
#include <glib.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stream.h"

static guint32 seed;

struct mem {
    GHashTable *blobs;           /* id (32 bytes) -> GBytes */
    unsigned puts, gets;
    int fail_put_at;             /* fail the n-th put (1-based), 0: never */
    /* get: hand back something else for one id */
    const uint8_t *swap_id;
    GBytes *swap_with;
};

static void mem_init(struct mem *m)
{
    memset(m, 0, sizeof(*m));
    m->blobs = g_hash_table_new_full(g_bytes_hash, g_bytes_equal, (GDestroyNotify)g_bytes_unref,
                                     (GDestroyNotify)g_bytes_unref);
}

static void mem_free(struct mem *m)
{
    g_hash_table_destroy(m->blobs);
}

static int mem_put(void *opaque, const void *data, size_t len, uint8_t id[32], vb_error *e)
{
    struct mem *m = opaque;

    m->puts++;
    if (m->fail_put_at && m->puts == (unsigned)m->fail_put_at)
        return vb_seterr(e, -EIO, "put fails on purpose");
    g_assert_cmpuint(len, >=, 1);
    g_assert_cmpuint(len, <=, VB_STREAM_MAX);
    SHA256(data, len, id);
    g_hash_table_replace(m->blobs, g_bytes_new(id, 32), g_bytes_new(data, len));
    return 0;
}

static int mem_get(void *opaque, const uint8_t id[32], GByteArray *out, vb_error *e)
{
    struct mem *m = opaque;
    GBytes *k = g_bytes_new_static(id, 32), *v;
    gsize n;
    const void *d;

    m->gets++;
    v = m->swap_id && !memcmp(id, m->swap_id, 32) ? m->swap_with
                                                   : g_hash_table_lookup(m->blobs, k);
    g_bytes_unref(k);
    if (!v)
        return vb_seterr(e, -ENOENT, "no such blob");
    d = g_bytes_get_data(v, &n);
    g_byte_array_set_size(out, 0);
    g_byte_array_append(out, d, (guint)n);
    return 0;
}

/* Catalog-like data: lines that repeat with small changes, so that it is not
 * all the same and not all random. */
static uint8_t *make_data(GRand *r, size_t n)
{
    uint8_t *p = g_malloc(VB_MAX(n, (size_t)1));
    for (size_t i = 0; i < n; i++)
        p[i] = (i % 61 == 0) ? (uint8_t)g_rand_int(r) : (uint8_t)('a' + (i * 7 + i / 13) % 26);
    return p;
}

static void test_roundtrip(void)
{
    static const size_t sizes[] = { 0, 1, 100, VB_STREAM_MIN, VB_STREAM_MAX - 1, VB_STREAM_MAX,
                                    VB_STREAM_MAX + 1, 1 << 20, 5 << 20 };
    GRand *r = g_rand_new_with_seed(seed);
    vb_error e = { 0 };

    for (size_t s = 0; s < G_N_ELEMENTS(sizes); s++) {
        size_t n = sizes[s];
        uint8_t *data = make_data(r, n), sha[32];
        struct vb_stream_ref ref, ref2;
        struct mem m;
        GByteArray *back = g_byte_array_new();

        mem_init(&m);
        /* written in pieces of random sizes */
        {
            struct vb_stream_writer *w = vb_stream_writer_new(mem_put, &m);
            size_t off = 0;
            while (off < n) {
                size_t want = (size_t)g_rand_int_range(r, 1, 300000);
                size_t step = VB_MIN(n - off, want);
                g_assert_cmpint(vb_stream_write(w, data + off, step, &e), ==, 0);
                off += step;
            }
            g_assert_cmpint(vb_stream_finish(w, &ref, &e), ==, 0);
            g_assert_cmpint(vb_stream_write(w, "x", 1, &e), !=, 0);
            vb_stream_writer_free(w);
        }
        SHA256(data, n, sha);
        if (memcmp(sha, ref.sha256, 32))
            g_error("size %zu: SHA-256 differs", n);
        g_assert_cmpuint(ref.length, ==, n);
        g_assert_cmpint(vb_stream_ref_check(&ref, &e), ==, 0);
        if (n > 1 << 20)
            g_assert_cmpuint(ref.nblobs, >, n / VB_STREAM_MAX);
        /* the same cut whole, and whatever the write sizes were */
        g_assert_cmpint(vb_stream_put_all(data, n, mem_put, &m, &ref2, &e), ==, 0);
        g_assert_cmpuint(ref2.nblobs, ==, ref.nblobs);
        g_assert_true(ref.nblobs == 0 ||
                      memcmp(ref.blobs, ref2.blobs, (size_t)ref.nblobs * 32) == 0);
        /* read back whole */
        g_assert_cmpint(vb_stream_get_all(&ref, mem_get, &m, back, &e), ==, 0);
        g_assert_cmpuint(back->len, ==, n);
        g_assert_true(n == 0 || memcmp(back->data, data, n) == 0);
        /* and iterated in small reads */
        {
            struct vb_stream_reader *rd = vb_stream_reader_new(&ref, mem_get, &m);
            uint8_t buf[7777];
            size_t got, off = 0;
            for (;;) {
                g_assert_cmpint(vb_stream_read(rd, buf, sizeof(buf), &got, &e), ==, 0);
                if (!got)
                    break;
                g_assert_true(memcmp(buf, data + off, got) == 0);
                off += got;
            }
            g_assert_cmpuint(off, ==, n);
            vb_stream_reader_free(rd);
        }
        vb_stream_ref_free(&ref);
        vb_stream_ref_free(&ref2);
        g_byte_array_free(back, TRUE);
        mem_free(&m);
        g_free(data);
    }
    g_rand_free(r);
}

/* An insertion in the middle changes the blobs around it only. */
static void test_locality(void)
{
    GRand *r = g_rand_new_with_seed(seed + 1);
    size_t n = 8 << 20;
    uint8_t *a = make_data(r, n), *b = g_malloc(n + 10);
    struct vb_stream_ref ra, rb;
    struct mem m;
    vb_error e = { 0 };
    unsigned shared = 0;

    memcpy(b, a, n / 2);
    memcpy(b + n / 2, "0123456789", 10);
    memcpy(b + n / 2 + 10, a + n / 2, n - n / 2);
    mem_init(&m);
    g_assert_cmpint(vb_stream_put_all(a, n, mem_put, &m, &ra, &e), ==, 0);
    g_assert_cmpint(vb_stream_put_all(b, n + 10, mem_put, &m, &rb, &e), ==, 0);
    for (uint32_t i = 0; i < rb.nblobs; i++)
        for (uint32_t j = 0; j < ra.nblobs; j++)
            if (!memcmp(rb.blobs + 32 * i, ra.blobs + 32 * j, 32)) {
                shared++;
                break;
            }
    printf("# %u blobs, %u shared after an insertion\n", rb.nblobs, shared);
    g_assert_cmpuint(shared + 3, >=, rb.nblobs);
    /* average size near 64 KiB */
    g_assert_cmpuint(n / ra.nblobs, >, 32 << 10);
    g_assert_cmpuint(n / ra.nblobs, <, 128 << 10);
    vb_stream_ref_free(&ra);
    vb_stream_ref_free(&rb);
    mem_free(&m);
    g_free(a);
    g_free(b);
    g_rand_free(r);
}

static void test_damage(void)
{
    GRand *r = g_rand_new_with_seed(seed + 2);
    size_t n = 1 << 20;
    uint8_t *data = make_data(r, n);
    struct vb_stream_ref ref, bad;
    GByteArray *back = g_byte_array_new();
    struct mem m;
    vb_error e = { 0 };

    mem_init(&m);
    g_assert_cmpint(vb_stream_put_all(data, n, mem_put, &m, &ref, &e), ==, 0);
    g_assert_cmpuint(ref.nblobs, >=, 3);

    /* wrong SHA-256 */
    g_assert_cmpint(vb_stream_ref_copy(&bad, &ref), ==, 0);
    bad.sha256[0] ^= 1;
    g_assert_cmpint(vb_stream_get_all(&bad, mem_get, &m, back, &e), ==, -EBADMSG);
    g_assert_nonnull(strstr(e.msg, "SHA-256"));
    g_assert_cmpuint(back->len, ==, 0);
    vb_stream_ref_free(&bad);

    /* two blobs swapped */
    g_assert_cmpint(vb_stream_ref_copy(&bad, &ref), ==, 0);
    memcpy(bad.blobs, ref.blobs + 32, 32);
    memcpy(bad.blobs + 32, ref.blobs, 32);
    g_assert_cmpint(vb_stream_get_all(&bad, mem_get, &m, back, &e), ==, -EBADMSG);
    vb_stream_ref_free(&bad);

    /* a blob missing: the length disagrees */
    g_assert_cmpint(vb_stream_ref_copy(&bad, &ref), ==, 0);
    bad.nblobs--;
    g_assert_cmpint(vb_stream_get_all(&bad, mem_get, &m, back, &e), ==, -EBADMSG);
    vb_stream_ref_free(&bad);

    /* a length that no cut makes with this many blobs */
    g_assert_cmpint(vb_stream_ref_copy(&bad, &ref), ==, 0);
    bad.length = (uint64_t)bad.nblobs * VB_STREAM_MAX + 1;
    g_assert_cmpint(vb_stream_ref_check(&bad, &e), ==, -EBADMSG);
    g_assert_cmpint(vb_stream_get_all(&bad, mem_get, &m, back, &e), ==, -EBADMSG);
    g_assert_nonnull(strstr(e.msg, "cannot be"));
    bad.length = 0;
    g_assert_cmpint(vb_stream_ref_check(&bad, &e), ==, -EBADMSG);
    vb_stream_ref_free(&bad);

    /* the store hands back a short blob in the middle, an empty one, a huge one */
    {
        static const size_t lens[] = { 10, 0, VB_STREAM_MAX + 1 };
        for (size_t i = 0; i < G_N_ELEMENTS(lens); i++) {
            uint8_t *junk = g_malloc0(lens[i] + 1);
            m.swap_id = ref.blobs + 32;
            m.swap_with = g_bytes_new(junk, lens[i]);
            g_assert_cmpint(vb_stream_get_all(&ref, mem_get, &m, back, &e), ==, -EBADMSG);
            g_assert_nonnull(strstr(e.msg, "stream blob 1"));
            g_bytes_unref(m.swap_with);
            m.swap_id = NULL;
            g_free(junk);
        }
    }
    /* a blob missing from the store */
    g_hash_table_remove(m.blobs, g_bytes_new_static(ref.blobs + 64, 32));
    {
        struct vb_stream_reader *rd = vb_stream_reader_new(&ref, mem_get, &m);
        uint8_t *buf = g_malloc(n);
        size_t got;
        g_assert_cmpint(vb_stream_read(rd, buf, n, &got, &e), ==, -ENOENT);
        g_assert_nonnull(strstr(e.msg, "stream blob 2"));
        vb_stream_reader_free(rd);
        g_free(buf);
    }

    /* a put that fails fails the stream, and stays failed */
    {
        struct mem m2;
        struct vb_stream_writer *w;
        mem_init(&m2);
        m2.fail_put_at = 2;
        w = vb_stream_writer_new(mem_put, &m2);
        g_assert_cmpint(vb_stream_write(w, data, n, &e), ==, -EIO);
        g_assert_cmpint(vb_stream_write(w, data, 10, &e), ==, -EIO);
        g_assert_cmpint(vb_stream_finish(w, &bad, &e), ==, -EIO);
        vb_stream_writer_free(w);
        mem_free(&m2);
    }

    vb_stream_ref_free(&ref);
    g_byte_array_free(back, TRUE);
    mem_free(&m);
    g_free(data);
    g_rand_free(r);
}

int main(int argc, char **argv)
{
    const char *s = getenv("VB_TEST_SEED");

    g_test_init(&argc, &argv, NULL);
    seed = s ? (guint32)strtoul(s, NULL, 0) : (guint32)g_random_int();
    printf("# seed %u (VB_TEST_SEED=%u repeats this run)\n", seed, seed);
    g_test_add_func("/repo-stream/roundtrip", test_roundtrip);
    g_test_add_func("/repo-stream/locality", test_locality);
    g_test_add_func("/repo-stream/damage", test_damage);
    return g_test_run();
}
