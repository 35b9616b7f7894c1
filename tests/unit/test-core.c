/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Unit tests: chunk codec, ids and names, sizes, zero detection, catalogs. */
#include <glib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "catalog.h"
#include "chunk.h"
#include "escape.h"
#include "snapshot.h"
#include "util.h"
#include "vbackup/proto.h"

static void fill_random(uint8_t *p, size_t n, guint32 seed)
{
    GRand *r = g_rand_new_with_seed(seed);

    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)g_rand_int(r);
    g_rand_free(r);
}

static void roundtrip(const uint8_t *data, size_t len, int expect_comp)
{
    struct vb_codec c;
    const uint8_t *enc;
    size_t enc_len, got;
    uint8_t id[VB_ID_LEN], *out = g_malloc(len + 1);
    struct vb_chunk_hdr h;
    vb_error e = { 0 };

    g_assert_cmpint(vb_codec_init(&c, 1), ==, 0);
    vb_chunk_id(data, len, id);
    g_assert_cmpint(vb_chunk_encode(&c, data, len, &enc, &enc_len), ==, 0);
    g_assert_cmpint(vb_chunk_parse_hdr(enc, enc_len, &h, &e), ==, 0);
    g_assert_cmpint(h.comp, ==, expect_comp);
    g_assert_cmpuint(h.plain_len, ==, len);
    g_assert_cmpint(vb_chunk_decode(&c, enc, enc_len, NULL, id, out, len, &got, &e), ==, 0);
    g_assert_cmpuint(got, ==, len);
    g_assert_true(memcmp(out, data, len) == 0);

    /* every single-byte flip is caught: header CRC, payload CRC, or the hash */
    uint8_t *bad = g_memdup2(enc, enc_len);
    for (size_t i = 0; i < enc_len; i += enc_len / 97 + 1) {
        bad[i] ^= 0x40;
        g_assert_cmpint(vb_chunk_decode(&c, bad, enc_len, NULL, id, out, len, &got, &e), <, 0);
        bad[i] ^= 0x40;
    }
    /* truncated, and a wrong id */
    g_assert_cmpint(vb_chunk_decode(&c, enc, enc_len - 1, NULL, id, out, len, &got, &e), <, 0);
    g_assert_cmpint(vb_chunk_decode(&c, enc, 10, NULL, id, out, len, &got, &e), <, 0);
    id[0] ^= 1;
    g_assert_cmpint(vb_chunk_decode(&c, enc, enc_len, NULL, id, out, len, &got, &e), ==, -EBADMSG);
    g_assert_nonnull(strstr(e.msg, "does not match its id"));
    /* a buffer too small is refused, never overrun */
    if (len > 1)
        g_assert_cmpint(vb_chunk_decode(&c, enc, enc_len, NULL, NULL, out, len - 1, &got, &e), <, 0);
    g_free(bad);
    g_free(out);
    vb_codec_free(&c);
}

static void test_chunk_compressible(void)
{
    size_t n = 4u << 20;
    uint8_t *p = g_malloc(n);

    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)("vbackup chunk "[i % 14]);
    roundtrip(p, n, VB_CC_ZSTD);
    g_free(p);
}

static void test_chunk_incompressible(void)
{
    size_t n = 1u << 20;
    uint8_t *p = g_malloc(n);

    fill_random(p, n, 42);
    roundtrip(p, n, VB_CC_NONE);
    g_free(p);
}

static void test_chunk_tiny(void)
{
    uint8_t one = 7;

    roundtrip(&one, 1, VB_CC_NONE);
}

static void test_chunk_id_known(void)
{
    uint8_t id[VB_ID_LEN];
    char hex[VB_ID_HEX];

    vb_chunk_id("abc", 3, id);
    vb_hex(id, VB_ID_LEN, hex);
    g_assert_cmpstr(hex, ==, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

/* Dedup groups: the same data has unrelated ids in two groups, a chunk is
 * only accepted under the id of the space it was stored in, and the
 * derivation is pinned (docs/threat-model.md gives it). */
static void test_chunk_idspace(void)
{
    static const char data[] = "one guest's secret file";
    struct vb_idspace def, a, a2, b;
    struct vb_codec c;
    const uint8_t *enc;
    size_t enc_len, got;
    uint8_t id_def[VB_ID_LEN], id_a[VB_ID_LEN], id_b[VB_ID_LEN], out[64];
    char hex[VB_ID_HEX];
    vb_error e = { 0 };

    g_assert_cmpint(vb_idspace_init(&def, NULL, &e), ==, 0);
    g_assert_false(def.tagged);
    g_assert_cmpint(vb_idspace_init(&a, "tenant-a", &e), ==, 0);
    g_assert_cmpint(vb_idspace_init(&a2, "tenant-a", &e), ==, 0);
    g_assert_cmpint(vb_idspace_init(&b, "tenant-b", &e), ==, 0);
    g_assert_true(vb_idspace_same(&a, &a2));
    g_assert_false(vb_idspace_same(&a, &b));
    g_assert_false(vb_idspace_same(&a, &def));
    g_assert_true(vb_idspace_same(NULL, &def));

    vb_idspace_id(&a, "abc", 3, id_a);
    vb_hex(id_a, VB_ID_LEN, hex);
    g_assert_cmpstr(hex, ==, "ebcf2fd17301798d82225d6433f1781c6df3d2e5c51f1777baa236934e7df13d");
    vb_idspace_id(&def, data, sizeof(data), id_def);
    vb_idspace_id(&a, data, sizeof(data), id_a);
    vb_idspace_id(&b, data, sizeof(data), id_b);
    g_assert_true(memcmp(id_def, id_a, VB_ID_LEN) != 0);
    g_assert_true(memcmp(id_a, id_b, VB_ID_LEN) != 0);
    vb_chunk_id(data, sizeof(data), out);
    g_assert_true(memcmp(out, id_def, VB_ID_LEN) == 0);     /* the default is plain SHA-256 */

    g_assert_cmpint(vb_codec_init(&c, 1), ==, 0);
    g_assert_cmpint(vb_chunk_encode(&c, data, sizeof(data), &enc, &enc_len), ==, 0);
    g_assert_cmpint(vb_chunk_decode(&c, enc, enc_len, &a, id_a, out, sizeof(out), &got, &e), ==, 0);
    g_assert_cmpint(vb_chunk_decode(&c, enc, enc_len, &b, id_a, out, sizeof(out), &got, &e), ==,
                    -EBADMSG);
    g_assert_nonnull(strstr(e.msg, "dedup group tenant-b"));
    g_assert_cmpint(vb_chunk_decode(&c, enc, enc_len, NULL, id_a, out, sizeof(out), &got, &e), ==,
                    -EBADMSG);
    g_assert_cmpint(vb_chunk_decode(&c, enc, enc_len, &a, id_def, out, sizeof(out), &got, &e), ==,
                    -EBADMSG);
    vb_codec_free(&c);

    /* names as VM names are: no paths, no control characters, at most 64 */
    g_assert_cmpint(vb_idspace_init(&b, "a/b", &e), ==, -EINVAL);
    g_assert_nonnull(strstr(e.msg, "not a valid dedup group"));
    g_assert_cmpint(vb_idspace_init(&b, "..", &e), ==, -EINVAL);
    g_assert_cmpint(vb_idspace_init(&b, "x\n", &e), ==, -EINVAL);
    g_assert_cmpint(vb_idspace_init(&b, "0123456789012345678901234567890123456789012345678901234567890123", &e), ==, 0);
    g_assert_cmpint(vb_idspace_init(&b, "01234567890123456789012345678901234567890123456789012345678901234", &e), ==, -EINVAL);
}

static void test_names(void)
{
    g_assert_true(vb_valid_name("web-01.example_vm"));
    g_assert_false(vb_valid_name(""));
    g_assert_false(vb_valid_name(".."));
    g_assert_false(vb_valid_name(".hidden"));
    g_assert_false(vb_valid_name("a/b"));
    g_assert_false(vb_valid_name("-rf"));
    g_assert_false(vb_valid_name("sp ace"));
    g_assert_false(vb_valid_name("ünï"));
    g_assert_true(vb_snap_valid_id("vm1/2026-11-25T13:45:00Z"));
    g_assert_true(vb_snap_valid_id("vm1/2026-11-25T13:45:00Z-2"));
    g_assert_false(vb_snap_valid_id("vm1/../../etc"));
    g_assert_false(vb_snap_valid_id("../x/2026-11-25T13:45:00Z"));
    g_assert_false(vb_snap_valid_id("vm1"));
    g_assert_false(vb_snap_valid_id("vm1/"));
    g_assert_false(vb_snap_valid_id("vm1/.tmp-1"));
    g_assert_false(vb_snap_valid_id("vm1/2026/x"));
}

static void test_sizes(void)
{
    uint64_t v;

    g_assert_cmpint(vb_parse_size("4M", &v), ==, 0);
    g_assert_cmpuint(v, ==, 4u << 20);
    g_assert_cmpint(vb_parse_size("1GiB", &v), ==, 0);
    g_assert_cmpuint(v, ==, 1u << 30);
    g_assert_cmpint(vb_parse_size("512", &v), ==, 0);
    g_assert_cmpuint(v, ==, 512);
    g_assert_cmpint(vb_parse_size("x", &v), <, 0);
    g_assert_cmpint(vb_parse_size("5Q", &v), <, 0);
    g_assert_cmpint(vb_parse_size("99999999999T", &v), ==, -ERANGE);
}

static void test_is_zero(void)
{
    uint8_t buf[4096] = { 0 };

    g_assert_true(vb_is_zero(buf, sizeof(buf)));
    g_assert_true(vb_is_zero(buf, 3));
    for (size_t i = 0; i < sizeof(buf); i += 511) {
        buf[i] = 1;
        g_assert_false(vb_is_zero(buf, sizeof(buf)));
        buf[i] = 0;
    }
    buf[4095] = 9;
    g_assert_false(vb_is_zero(buf, sizeof(buf)));
    g_assert_true(vb_is_zero(buf, 4095));
}

static void test_hex(void)
{
    uint8_t in[3] = { 0x00, 0xab, 0xff }, out[3];
    char hex[7];

    vb_hex(in, 3, hex);
    g_assert_cmpstr(hex, ==, "00abff");
    g_assert_cmpint(vb_unhex(hex, out, 3), ==, 0);
    g_assert_true(memcmp(in, out, 3) == 0);
    g_assert_cmpint(vb_unhex("00ABff", out, 3), <, 0);   /* ids are lower case */
    g_assert_cmpint(vb_unhex("00abf", out, 3), <, 0);
    g_assert_cmpint(vb_unhex("00abff0", out, 3), <, 0);
}

/* Snapshot ids and "created" are UTC whatever the zone: the tests run in UTC
 * (tests/meson.build), so a zone east of it is set here as well. */
static void test_time(void)
{
    static const char *const zones[] = { "UTC0", "IST-5:30" };
    char *saved = g_strdup(g_getenv("TZ"));
    char buf[40];
    int64_t ns;

    for (size_t i = 0; i < G_N_ELEMENTS(zones); i++) {
        g_setenv("TZ", zones[i], TRUE);
        tzset();
        vb_fmt_time(1795616211144707008LL, buf, sizeof(buf));
        g_assert_cmpstr(buf, ==, "2026-11-25T14:16:51Z");
        g_assert_cmpint(vb_parse_time(buf, &ns), ==, 0);
        g_assert_cmpint(ns, ==, 1795616211000000000LL);
        g_assert_cmpint(vb_parse_time("2026-13-45", &ns), <, 0);
        /* outside what nanoseconds in an int64_t hold: an error, not a wrap */
        g_assert_cmpint(vb_parse_time("3026-01-01T00:00:00Z", &ns), ==, -ERANGE);
        g_assert_cmpint(vb_parse_time("1600-01-01T00:00:00Z", &ns), ==, -ERANGE);
    }
    if (saved)
        g_setenv("TZ", saved, TRUE);
    else
        g_unsetenv("TZ");
    tzset();
    g_free(saved);
    /* before 1970: rounded down, the fraction counts forward */
    vb_fmt_time(-1500000000LL, buf, sizeof(buf));
    g_assert_cmpstr(buf, ==, "1969-12-31T23:59:58Z");
    vb_fmt_time_ns(-1500000000LL, buf, sizeof(buf));
    g_assert_cmpstr(buf, ==, "1969-12-31T23:59:58.500000000Z");
    vb_fmt_time_ns(-1LL, buf, sizeof(buf));
    g_assert_cmpstr(buf, ==, "1969-12-31T23:59:59.999999999Z");
    vb_fmt_time_ns(1795616211144707008LL, buf, sizeof(buf));
    g_assert_cmpstr(buf, ==, "2026-11-25T14:16:51.144707008Z");
}

static void check_escape(const char *in, size_t n, const char *want)
{
    char *got = vb_escape(in, n);

    g_assert_cmpstr(got, ==, want);
    g_free(got);
}

static void test_escape(void)
{
    check_escape("plain/name.txt", 14, "plain/name.txt");
    check_escape("", 0, "");
    check_escape("a b\\c", 5, "a\\ b\\\\c");
    check_escape("new\nline\ttab\r\a\b\v\f", 17, "new\\nline\\ttab\\r\\a\\b\\v\\f");
    check_escape("\x1b[31mred\x7f", 9, "\\033[31mred\\177");
    check_escape("nul\0in", 6, "nul\\000in");
    /* UTF-8 as it is; not UTF-8 byte by byte */
    check_escape("\xc3\xbc" "n" "\xc3\xaf" "c" "\xc3\xb6" "d" "\xc3\xa9 \xe2\x9c\x93", 15,
                 "\xc3\xbc" "n" "\xc3\xaf" "c" "\xc3\xb6" "d" "\xc3\xa9\\ \xe2\x9c\x93");
    check_escape("bad\xff\xc3", 5, "bad\\377\\303");
    check_escape("\xc0\xaf", 2, "\\300\\257");                     /* overlong '/' */
    check_escape("\xed\xa0\x80", 3, "\\355\\240\\200");         /* a surrogate */
    check_escape("\xf4\x90\x80\x80", 4, "\\364\\220\\200\\200"); /* above U+10FFFF */
    /* C1 controls, line separators and bidi overrides are escaped too */
    check_escape("\xc2\x85", 2, "\\302\\205");
    check_escape("\xe2\x80\xa8", 3, "\\342\\200\\250");
    check_escape("\xe2\x80\xae", 3, "\\342\\200\\256");
    /* whatever the bytes, the result holds no control character */
    for (int i = 0; i < 256; i++) {
        char in[3] = { 'x', (char)i, 'y' };
        char *got = vb_escape(in, 3);
        for (const char *q = got; *q; q++)
            g_assert_true((unsigned char)*q >= 0x20 && *q != 0x7f);
        g_free(got);
    }
}

static void test_errors(void)
{
    vb_error e = { 0 };

    g_assert_cmpint(vb_seterr(&e, -ENOENT, "open %s", "x"), ==, -ENOENT);
    vb_prefixerr(&e, "layer %d", 2);
    g_assert_cmpstr(vb_strerror(&e), ==, "layer 2: open x");
    memset(&e, 0, sizeof(e));
    e.code = -EIO;
    g_assert_cmpstr(vb_strerror(&e), ==, "Input/output error");
}

static void test_proto_sizes(void)
{
    /* the wire format is fixed: these sizes are part of the protocol */
    g_assert_cmpuint(sizeof(struct vb_hdr), ==, 32);
    g_assert_cmpuint(sizeof(struct vb_file_rec), ==, 120);
    g_assert_cmpuint(sizeof(struct vb_time), ==, 16);
    g_assert_cmpuint(sizeof(struct vb_xattr), ==, 8);
    g_assert_cmpuint(VB_PROTO_VERSION, ==, 2);
    g_assert_cmpuint(sizeof(struct vb_extent), ==, 32);
    g_assert_cmpuint(VB_PCI_DEVICE_ID, ==, 0x107f);
}

/* A catalog of n files under prefix, added in reverse order, serialized. */
static uint8_t *cat_bytes(const char *prefix, unsigned n, size_t *len)
{
    struct vb_catb *b = vb_catb_new();
    struct vb_cat_entry m = { .type = VB_FT_REG, .mode = 0644, .size = 1 };
    uint64_t ne, nc, bytes;
    uint8_t *out;

    for (unsigned i = n; i-- > 0;) {
        char path[64];
        int pl = snprintf(path, sizeof(path), "%s/f%05u", prefix, i);
        vb_catb_add(b, &m, path, (size_t)pl, NULL, 0);
    }
    out = vb_catb_serialize(b, len, &ne, &nc, &bytes);
    g_assert_cmpuint(ne, ==, n);
    g_assert_cmpuint(bytes, ==, n);
    vb_catb_free(b);
    return out;
}

struct cat_thread {
    const char *prefix;
    const uint8_t *want;
    size_t want_len;
    unsigned mismatches;
};

static gpointer cat_thread_main(gpointer opaque)
{
    struct cat_thread *t = opaque;

    for (int round = 0; round < 40; round++) {
        size_t len;
        uint8_t *got = cat_bytes(t->prefix, 3000, &len);
        t->mismatches += len != t->want_len || memcmp(got, t->want, len) != 0;
        g_free(got);
    }
    return NULL;
}

/* the daemon serializes several jobs' catalogs at once, on worker threads:
 * each must come out sorted by its own paths, byte for byte as when alone */
static void test_catalog_threads(void)
{
    struct cat_thread t[2] = { { .prefix = "alpha" }, { .prefix = "beta/x" } };
    GThread *th[2];

    for (int i = 0; i < 2; i++)
        t[i].want = cat_bytes(t[i].prefix, 3000, &t[i].want_len);
    for (int i = 0; i < 2; i++)
        th[i] = g_thread_new("catalog", cat_thread_main, &t[i]);
    for (int i = 0; i < 2; i++) {
        g_thread_join(th[i]);
        g_assert_cmpuint(t[i].mismatches, ==, 0);
        g_free((void *)t[i].want);
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/chunk/compressible", test_chunk_compressible);
    g_test_add_func("/chunk/incompressible", test_chunk_incompressible);
    g_test_add_func("/chunk/tiny", test_chunk_tiny);
    g_test_add_func("/chunk/id", test_chunk_id_known);
    g_test_add_func("/chunk/idspace", test_chunk_idspace);
    g_test_add_func("/util/names", test_names);
    g_test_add_func("/util/sizes", test_sizes);
    g_test_add_func("/util/is-zero", test_is_zero);
    g_test_add_func("/util/hex", test_hex);
    g_test_add_func("/util/time", test_time);
    g_test_add_func("/util/escape", test_escape);
    g_test_add_func("/util/errors", test_errors);
    g_test_add_func("/proto/sizes", test_proto_sizes);
    g_test_add_func("/catalog/threads", test_catalog_threads);
    return g_test_run();
}
