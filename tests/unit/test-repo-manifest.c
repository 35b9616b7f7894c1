/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests: snapshot manifests (hostd/repo/manifest.c): the schema's
 * checks on every field, sealing, ids.  VB_TEST_SEED=N repeats a run;
 * VB_TEST_FUZZ_ROUNDS sets the mutation loop's length (default 5000).
 */
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "manifest.h"

static const enum vb_aead all_aeads[] = { VB_AEAD_NONE, VB_AEAD_AES256GCM,
                                          VB_AEAD_CHACHA20POLY1305 };
static guint32 seed;

#define T0 INT64_C(1795000000123456789)      /* 2026-11-18T... */

static void fill_ref(GRand *r, struct vb_stream_ref *ref, uint64_t length)
{
    ref->length = length;
    ref->nblobs = (uint32_t)((length + VB_STREAM_AVG - 1) / VB_STREAM_AVG);
    ref->blobs = g_malloc(VB_MAX((size_t)ref->nblobs * 32, (size_t)1));
    for (size_t i = 0; i < (size_t)ref->nblobs * 32; i++)
        ref->blobs[i] = (uint8_t)g_rand_int(r);
    for (int i = 0; i < 32; i++)
        ref->sha256[i] = (uint8_t)g_rand_int(r);
}

static struct vb_manifest *make(GRand *r, enum vb_mf_type t)
{
    struct vb_manifest *m = vb_manifest_new();
    vb_error e = { 0 };

    snprintf(m->object, sizeof(m->object), "0123456789abcdef0123456789abcdef");
    snprintf(m->vm, sizeof(m->vm), "web1");
    m->type = t;
    m->created_ns = T0;
    g_assert_cmpint(vb_snap_id_make("web1", T0, 0, m->id, &e), ==, 0);
    m->group = g_strdup(t == VB_MF_DISK ? "disk:web1.qcow2" : "files");
    m->mode = g_strdup("full");
    m->parent = g_strdup("web1/2026-11-17T10:00:00Z");
    m->dedup_group = t == VB_MF_FILES ? g_strdup("tenant-a") : NULL;
    m->source = json_tokener_parse("{\"image\": \"/var/lib/x.qcow2\", \"chain\": [\"a\", \"b\"],"
                                   " \"format\": \"qcow2\"}");
    m->stats = json_tokener_parse("{\"bytes_read\": 12345, \"seconds\": 1.5}");
    if (t == VB_MF_DISK) {
        m->disk.name = g_strdup("vda");
        m->disk.size = (10u << 20) + 1;
        m->disk.chunk_size = 4u << 20;
        m->disk.chunk_count = 3;
        fill_ref(r, &m->chunks, 3 * 32);
    } else {
        m->files.nroots = 2;
        m->files.roots = g_new0(char *, 2);
        m->files.roots[0] = g_strdup("/");
        m->files.roots[1] = g_strdup("/home/ünïcode");
        m->files.entries = 1000;
        m->files.bytes = 123456789;
        fill_ref(r, &m->chunks, 32 * 5000);
        fill_ref(r, &m->catalog, 1 << 20);
    }
    return m;
}

static void expect_same(const struct vb_manifest *a, const struct vb_manifest *b)
{
    g_assert_cmpstr(a->object, ==, b->object);
    g_assert_cmpstr(a->id, ==, b->id);
    g_assert_cmpstr(a->vm, ==, b->vm);
    g_assert_cmpint(a->type, ==, b->type);
    g_assert_cmpint(a->created_ns, ==, b->created_ns);
    g_assert_cmpstr(a->group, ==, b->group);
    g_assert_cmpstr(a->mode, ==, b->mode);
    g_assert_cmpstr(a->parent, ==, b->parent);
    g_assert_cmpstr(a->dedup_group, ==, b->dedup_group);
    g_assert_true(json_object_equal(a->source, b->source));
    g_assert_true(json_object_equal(a->stats, b->stats));
    g_assert_cmpuint(a->chunks.length, ==, b->chunks.length);
    g_assert_cmpuint(a->chunks.nblobs, ==, b->chunks.nblobs);
    g_assert_true(memcmp(a->chunks.sha256, b->chunks.sha256, 32) == 0);
    g_assert_true(!a->chunks.nblobs ||
                  memcmp(a->chunks.blobs, b->chunks.blobs, 32 * (size_t)a->chunks.nblobs) == 0);
    if (a->type == VB_MF_DISK) {
        g_assert_cmpstr(a->disk.name, ==, b->disk.name);
        g_assert_cmpuint(a->disk.size, ==, b->disk.size);
        g_assert_cmpuint(a->disk.chunk_size, ==, b->disk.chunk_size);
        g_assert_cmpuint(a->disk.chunk_count, ==, b->disk.chunk_count);
    } else {
        g_assert_cmpuint(a->files.nroots, ==, b->files.nroots);
        for (size_t i = 0; i < a->files.nroots; i++)
            g_assert_cmpstr(a->files.roots[i], ==, b->files.roots[i]);
        g_assert_cmpuint(a->files.entries, ==, b->files.entries);
        g_assert_cmpuint(a->files.bytes, ==, b->files.bytes);
        g_assert_cmpuint(a->catalog.nblobs, ==, b->catalog.nblobs);
        g_assert_true(memcmp(a->catalog.blobs, b->catalog.blobs,
                             32 * (size_t)a->catalog.nblobs) == 0);
    }
}

static void test_ids(void)
{
    char id[VB_SNAP_ID_MAX];
    vb_error e = { 0 };

    g_assert_true(vb_snap_id_valid("web1/2026-11-25T13:45:00Z"));
    g_assert_true(vb_snap_id_valid("a/1970-01-01T00:00:00Z-2"));
    g_assert_true(vb_snap_id_valid("a.b_c-d/2026-02-28T23:59:59Z-99999"));
    g_assert_false(vb_snap_id_valid("web1/2026-11-25T13:45:00Z-1"));
    g_assert_false(vb_snap_id_valid("web1/2026-11-25T13:45:00Z-02"));
    g_assert_false(vb_snap_id_valid("web1/2026-11-25T13:45:00Z-100000"));
    g_assert_false(vb_snap_id_valid("web1/2026-11-25T13:45:00Z-"));
    g_assert_false(vb_snap_id_valid("web1/2026-11-25T13:45:00.5Z"));
    g_assert_false(vb_snap_id_valid("web1/2026-11-25 13:45:00Z"));
    g_assert_false(vb_snap_id_valid("web1/2026-02-30T13:45:00Z"));
    g_assert_false(vb_snap_id_valid("web1/2026-11-25T25:45:00Z"));
    g_assert_false(vb_snap_id_valid("web1/2026-11-25T13:45:00z"));
    g_assert_false(vb_snap_id_valid(".web/2026-11-25T13:45:00Z"));
    g_assert_false(vb_snap_id_valid("/2026-11-25T13:45:00Z"));
    g_assert_false(vb_snap_id_valid("web1"));
    g_assert_false(vb_snap_id_valid("we/b1/2026-11-25T13:45:00Z"));
    g_assert_false(vb_snap_id_valid("web1/../../2026-11-25T13:45:00Z"));
    g_assert_cmpint(vb_snap_id_make("web1", T0, 0, id, &e), ==, 0);
    g_assert_cmpstr(id, ==, "web1/2026-11-18T11:06:40Z");
    g_assert_cmpint(vb_snap_id_make("web1", T0, 3, id, &e), ==, 0);
    g_assert_cmpstr(id, ==, "web1/2026-11-18T11:06:40Z-3");
    g_assert_true(vb_snap_id_valid(id));
    g_assert_cmpint(vb_snap_id_make("../x", T0, 0, id, &e), ==, -EINVAL);
    g_assert_cmpint(vb_snap_id_make("x", -1, 0, id, &e), ==, -EINVAL);
}

static void test_roundtrip(void)
{
    GRand *r = g_rand_new_with_seed(seed);
    vb_error e = { 0 };

    for (size_t a = 0; a < G_N_ELEMENTS(all_aeads); a++) {
        struct vb_keys k;
        g_assert_cmpint(vb_keys_generate(&k, all_aeads[a], &e), ==, 0);
        for (int t = VB_MF_DISK; t <= VB_MF_FILES; t++) {
            struct vb_manifest *m = make(r, t), *back;
            uint8_t *stored;
            size_t len;

            g_assert_cmpint(vb_manifest_seal(&k, m, &stored, &len, &e), ==, 0);
            g_assert_cmpint(vb_manifest_open(&k, stored, len, m->object, &back, &e), ==, 0);
            expect_same(m, back);
            vb_manifest_free(back);
            /* NULL: no object to compare with */
            g_assert_cmpint(vb_manifest_open(&k, stored, len, NULL, &back, &e), ==, 0);
            vb_manifest_free(back);
            /* under another object's name */
            g_assert_cmpint(vb_manifest_open(&k, stored, len, "ffffffffffffffffffffffffffffffff",
                                             &back, &e), ==, -EBADMSG);
            g_assert_nonnull(strstr(e.msg, "it says it is snapshots/0123456789abcdef"));
            /* every byte flipped: a clear error, never a crash or a success */
            for (size_t i = 0; i < len; i += len > 4000 ? 7 : 1) {
                stored[i] ^= 0x20;
                g_assert_cmpint(vb_manifest_open(&k, stored, len, m->object, &back, &e), ==,
                                -EBADMSG);
                g_assert_nonnull(strstr(e.msg, "snapshots/"));
                stored[i] ^= 0x20;
            }
            for (size_t n = 0; n < len; n += 1 + n / 8)
                g_assert_cmpint(vb_manifest_open(&k, stored, n, m->object, &back, &e), ==,
                                -EBADMSG);
            free(stored);
            vb_manifest_free(m);
        }
        vb_keys_wipe(&k);
    }
    g_rand_free(r);
}

/* Fields the builder refuses (one checker for writing and reading). */
static void test_build_refuses(void)
{
    GRand *r = g_rand_new_with_seed(seed + 1);
    struct vb_keys k;
    uint8_t *stored;
    size_t len;
    vb_error e = { 0 };

    g_assert_cmpint(vb_keys_generate(&k, VB_AEAD_NONE, &e), ==, 0);
#define REFUSE(type, change, what) do { \
        struct vb_manifest *m = make(r, type); \
        change; \
        g_assert_cmpint(vb_manifest_seal(&k, m, &stored, &len, &e), ==, -EBADMSG); \
        if (!strstr(e.msg, what)) \
            g_error("%s: expected '%s' in '%s'", #change, what, e.msg); \
        vb_manifest_free(m); \
    } while (0)
    REFUSE(VB_MF_DISK, m->disk.chunk_count = 4, "disk.chunk_count");
    REFUSE(VB_MF_DISK, m->disk.chunk_size = 3000, "disk.chunk_size");
    REFUSE(VB_MF_DISK, m->disk.chunk_size = 32u << 20, "chunk_size");
    REFUSE(VB_MF_DISK, m->chunks.length = 2 * 32, "streams.chunks");
    REFUSE(VB_MF_DISK, m->chunks.length = 3 * 32 + 1, "streams.chunks");
    REFUSE(VB_MF_DISK, snprintf(m->vm, sizeof(m->vm), "-x"), "'vm'");
    REFUSE(VB_MF_DISK, snprintf(m->id, sizeof(m->id), "other/2026-11-18T11:06:40Z"), "'id'");
    REFUSE(VB_MF_DISK, snprintf(m->object, sizeof(m->object), "0123"), "'object'");
    REFUSE(VB_MF_DISK, m->created_ns = -5, "created_ns");
    REFUSE(VB_MF_DISK, free(m->parent); m->parent = g_strdup("nope"), "'parent'");
    REFUSE(VB_MF_DISK, free(m->mode); m->mode = g_strdup("a\nb"), "'mode'");
    REFUSE(VB_MF_DISK, free(m->dedup_group); m->dedup_group = g_strdup(""), "dedup_group");
    REFUSE(VB_MF_DISK, json_object_put(m->stats);
           m->stats = json_tokener_parse("{\"x\": -1}"), "stats");
    REFUSE(VB_MF_DISK, json_object_put(m->stats);
           m->stats = json_tokener_parse("{\"X\": 1}"), "stats");
    REFUSE(VB_MF_DISK, json_object_put(m->stats);
           m->stats = json_tokener_parse("{\"x\": \"1\"}"), "stats");
    REFUSE(VB_MF_DISK, json_object_put(m->source);
           m->source = json_tokener_parse("{\"a\": {\"b\": {\"c\": {\"d\": [1]}}}}"), "source");
    REFUSE(VB_MF_FILES, free(m->files.roots[1]); m->files.roots[1] = g_strdup(""), "roots");
    REFUSE(VB_MF_FILES, m->catalog.nblobs = 1, "streams.catalog");
    REFUSE(VB_MF_FILES, m->chunks.length = 33, "streams.chunks");
#undef REFUSE
    g_rand_free(r);
}

/* JSON that a correct seal carries but that breaks the schema. */
static void test_hostile_json(void)
{
    GRand *r = g_rand_new_with_seed(seed + 2);
    struct vb_manifest *m = make(r, VB_MF_DISK), *out;
    json_object *good;
    vb_error e = { 0 };
    static const struct {
        const char *path;        /* "a" or "a.b" */
        const char *value;       /* JSON, NULL: remove */
        const char *what;
        int code;
    } cases[] = {
        { "format", "3", "format 3 is not supported", -EPROTONOSUPPORT },
        { "format", "\"2\"", "'format' is a string", -EBADMSG },
        { "format", NULL, "no field 'format'", -EBADMSG },
        { "object", "\"0123456789ABCDEF0123456789abcdef\"", "'object'", -EBADMSG },
        { "vm", "null", "'vm' is null", -EBADMSG },
        { "vm", "\"web2\"", "'id'", -EBADMSG },
        { "id", "\"web1/2026-11-18T11:06:40Z/../x\"", "'id'", -EBADMSG },
        { "type", "\"tape\"", "'type'", -EBADMSG },
        { "type", "\"files\"", "no field 'files'", -EBADMSG },
        { "created_ns", "1.5", "'created_ns' is a number", -EBADMSG },
        { "created_ns", "-1", "'created_ns' is out of range", -EBADMSG },
        { "created_ns", "99999999999999999999", "'created_ns'", -EBADMSG },
        { "group", "7", "'group'", -EBADMSG },
        { "group", "\"a\\u0000b\"", "'group'", -EBADMSG },
        { "parent", "\"\"", "'parent'", -EBADMSG },
        { "source", "[]", "'source' is an array", -EBADMSG },
        { "stats", "{\"a\": true}", "'stats'", -EBADMSG },
        { "disk", "[]", "'disk'", -EBADMSG },
        { "disk.size", "-4", "'size'", -EBADMSG },
        { "disk.size", "99999999999", "disk.chunk_count", -EBADMSG },
        { "disk.chunk_size", "0", "disk.chunk_size", -EBADMSG },
        { "disk.chunk_count", "18446744073709551615", "chunk_count", -EBADMSG },
        { "streams", "{}", "no field 'chunks'", -EBADMSG },
        { "streams.catalog", "{}", "streams.catalog", -EBADMSG },
        { "streams.chunks", "{\"length\": 96, \"sha256\": \"00\", \"blobs\": []}", "sha256",
          -EBADMSG },
        { "streams.chunks", "{\"length\": 96, \"sha256\": "
          "\"0000000000000000000000000000000000000000000000000000000000000000\", "
          "\"blobs\": []}", "cannot be 0 blobs", -EBADMSG },
        { "streams.chunks", "{\"length\": 96, \"sha256\": "
          "\"0000000000000000000000000000000000000000000000000000000000000000\", "
          "\"blobs\": [\"xyz\"]}", "blob 0", -EBADMSG },
        { "streams.chunks", "{\"length\": 96, \"sha256\": "
          "\"0000000000000000000000000000000000000000000000000000000000000000\", "
          "\"blobs\": [7]}", "blob 0", -EBADMSG },
    };

    good = vb_manifest_to_json(m, &e);
    g_assert_nonnull(good);
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        json_object *j = NULL, *parent;
        char *path = g_strdup(cases[i].path), *dot = strchr(path, '.');
        const char *key = path;
        int ret;

        g_assert_cmpint(json_object_deep_copy(good, &j, NULL), ==, 0);
        parent = j;
        if (dot) {
            *dot = 0;
            g_assert_true(json_object_object_get_ex(j, path, &parent));
            key = dot + 1;
        }
        if (cases[i].value)
            json_object_object_add(parent, key, json_tokener_parse(cases[i].value));
        else
            json_object_object_del(parent, key);
        ret = vb_manifest_from_json(j, "snapshots/x", &out, &e);
        if (ret != cases[i].code || !strstr(e.msg, cases[i].what))
            g_error("case %zu (%s = %s): %d '%s', expected %d '%s'", i, cases[i].path,
                    cases[i].value ? cases[i].value : "(removed)", ret, e.msg, cases[i].code,
                    cases[i].what);
        json_object_put(j);
        g_free(path);
    }
    /* unknown members are ignored */
    json_object_object_add(good, "future", json_object_new_int(1));
    g_assert_cmpint(vb_manifest_from_json(good, "x", &out, &e), ==, 0);
    vb_manifest_free(out);
    json_object_put(good);
    vb_manifest_free(m);
    g_rand_free(r);
}

/* Random edits to the JSON text (sealed correctly): a clear error or a
 * manifest that passes every check; never a crash (run it under ASan). */
static void test_fuzz(void)
{
    const char *env = getenv("VB_TEST_FUZZ_ROUNDS");
    unsigned rounds = env ? (unsigned)strtoul(env, NULL, 0) : 5000, ok = 0;
    GRand *r = g_rand_new_with_seed(seed + 3);
    struct vb_keys k;
    vb_error e = { 0 };
    static const char *const junk[] = { "0", "-1", "1e400", "\"\"", "null", "[", "]", "{", "}",
                                        ",", ":", "\\u0000", "true", "\"x\"", "18446744073709551616",
                                        "ff", "/" };

    g_assert_cmpint(vb_keys_generate(&k, VB_AEAD_AES256GCM, &e), ==, 0);
    for (unsigned i = 0; i < rounds; i++) {
        struct vb_manifest *m = make(r, g_rand_boolean(r) ? VB_MF_DISK : VB_MF_FILES), *out;
        json_object *j = vb_manifest_to_json(m, &e);
        GString *text = g_string_new(json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN));
        uint8_t *stored;
        int edits = g_rand_int_range(r, 1, 4), ret;

        for (int ed = 0; ed < edits; ed++) {
            gsize pos = (gsize)g_rand_int_range(r, 0, (gint32)text->len);
            gsize cut = (gsize)g_rand_int_range(r, 1, 20);
            switch (g_rand_int_range(r, 0, 3)) {
            case 0:
                text->str[pos] = (char)g_rand_int_range(r, 1, 256);
                break;
            case 1:
                g_string_erase(text, (gssize)pos, (gssize)VB_MIN(cut, text->len - pos));
                break;
            default:
                g_string_insert(text, (gssize)pos, junk[g_rand_int_range(r, 0,
                                                                         G_N_ELEMENTS(junk))]);
            }
        }
        stored = g_malloc(text->len + 28);
        g_assert_cmpint(vb_seal(&k, "vbackup manifest", 16, text->str, text->len, stored, &e),
                        ==, 0);
        ret = vb_manifest_open(&k, stored, text->len + 28, NULL, &out, &e);
        if (ret == 0) {
            ok++;
            vb_manifest_free(out);
        } else {
            g_assert_true(ret == -EBADMSG || ret == -EPROTONOSUPPORT);
            g_assert_cmpstr(e.msg, !=, "");
        }
        g_free(stored);
        g_string_free(text, TRUE);
        json_object_put(j);
        vb_manifest_free(m);
    }
    printf("# %u rounds, %u still valid\n", rounds, ok);
    g_rand_free(r);
}

int main(int argc, char **argv)
{
    const char *s = getenv("VB_TEST_SEED");

    g_test_init(&argc, &argv, NULL);
    seed = s ? (guint32)strtoul(s, NULL, 0) : (guint32)g_random_int();
    printf("# seed %u (VB_TEST_SEED=%u repeats this run)\n", seed, seed);
    g_test_add_func("/repo-manifest/ids", test_ids);
    g_test_add_func("/repo-manifest/roundtrip", test_roundtrip);
    g_test_add_func("/repo-manifest/build-refuses", test_build_refuses);
    g_test_add_func("/repo-manifest/hostile-json", test_hostile_json);
    g_test_add_func("/repo-manifest/fuzz", test_fuzz);
    return g_test_run();
}
