/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The S3 store (hostd/repo/store-s3.c) against a real radosgw: the
 * conformance cases every store runs (store-conformance.c), each under a
 * prefix of its own in one bucket, once with path-style and once with
 * virtual-host addressing (the bucket's host name pinned to 127.0.0.1), plus
 * what only S3 has: credentials from files and systemd credentials, wrong
 * keys, unfinished multipart uploads.
 *
 * Run by tests/s3/s3-suite.sh, which starts the cluster and sets
 * AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION.
 */
#include <errno.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "s3.h"
#include "store-backend.h"
#include "store-conformance.h"

#define BUCKET "vbtest"
#define LOCKED_BUCKET "vblocked"        /* made with Object Lock */

struct backend {
    const char *const *opts;
    const char *bucket;              /* NULL: BUCKET */
};

static char endpoint_virtual[300], resolve[300];

static char *prefix_in(const char *bucket)
{
    return g_strdup_printf("s3://%s/t%08x%08x", bucket, g_random_int(), g_random_int());
}

static char *random_prefix(void)
{
    return prefix_in(BUCKET);
}

static struct vb_store *open_s3(void *opaque)
{
    const struct backend *b = opaque;
    char *loc = prefix_in(b->bucket ? b->bucket : BUCKET);
    struct vb_store *s = NULL;
    vb_error e = { 0 };

    if (vb_store_open_opts(loc, VB_STORE_CREATE, b->opts, &s, &e))
        g_error("open %s: %s", loc, vb_strerror(&e));
    g_assert_cmpstr(vb_store_kind(s), ==, "s3");
    g_assert_true(vb_store_caps(s) & VB_STORE_NOREPLACE);
    g_free(loc);
    return s;
}

static void close_s3(struct vb_store *s, void *opaque)
{
    vb_store_close(s);
}

#define assert_fails(call, code, word)                                          \
    do {                                                                        \
        vb_error e_ = { 0 };                                                    \
        int r_ = (call);                                                        \
        if (r_ != (code) || !strstr(e_.msg, (word)))                            \
            g_error("%s: got %d (%s), want %d and '%s'", #call, r_,             \
                    vb_strerror(&e_), (code), (word));                          \
    } while (0)
#define ERR (&e_)

static void test_wrong_secret(void)
{
    const char *secret = getenv("AWS_SECRET_ACCESS_KEY");
    char *wrong = g_strdup_printf("%sx", secret);
    struct vb_store *s;
    vb_error e = { 0 };
    int ret;

    g_setenv("AWS_SECRET_ACCESS_KEY", wrong, TRUE);
    ret = vb_store_open("s3://" BUCKET "/x", 0, &s, &e);
    g_setenv("AWS_SECRET_ACCESS_KEY", secret, TRUE);
    g_assert_cmpint(ret, ==, -EACCES);
    g_assert_nonnull(strstr(e.msg, "access denied"));
    g_assert_null(strstr(e.msg, secret));
    g_assert_null(strstr(e.msg, wrong));
    g_free(wrong);
}

static void test_no_bucket(void)
{
    struct vb_store *s;

    assert_fails(vb_store_open("s3://vb-missing-bucket/x", 0, &s, ERR), -ENOENT,
                 "no such bucket");
}

static void test_options(void)
{
    static const char *const unknown[] = { "colour=blue", NULL };
    static const char *const bad_addr[] = { "addressing=sideways", NULL };
    static const char *const both[] = { "credentials_file=/x", "credential=y", NULL };
    struct vb_store *s;

    assert_fails(vb_store_open_opts("s3://" BUCKET "/x", 0, unknown, &s, ERR), -EINVAL,
                 "unknown option 'colour'");
    assert_fails(vb_store_open_opts("s3://" BUCKET "/x", 0, bad_addr, &s, ERR), -EINVAL,
                 "addressing");
    assert_fails(vb_store_open_opts("s3://" BUCKET "/x", 0, both, &s, ERR), -EINVAL,
                 "not both");
    assert_fails(vb_store_open_opts("s3://a/x", 0, NULL, &s, ERR), -EINVAL, "bucket name");
    assert_fails(vb_store_open_opts("s3://" BUCKET "/../x", 0, NULL, &s, ERR), -EINVAL,
                 "component");
}

/* Keys from a credentials file, then from a systemd credential; the AWS_*
 * key variables unset meanwhile. */
static void test_credentials_file(void)
{
    char *dir = g_dir_make_tmp("vb-s3-cred-XXXXXX", NULL), *file, *text, *opt;
    char *id = g_strdup(getenv("AWS_ACCESS_KEY_ID"));
    char *secret = g_strdup(getenv("AWS_SECRET_ACCESS_KEY"));
    const char *opts[3] = { NULL };
    struct vb_store *s;
    vb_error e = { 0 };

    file = g_build_filename(dir, "s3-keys", NULL);
    text = g_strdup_printf("[default]\naws_access_key_id = nobody\naws_secret_access_key = "
                           "nothing\n\n[vb]\naws_access_key_id = %s\n"
                           "aws_secret_access_key = %s\n", id, secret);
    g_assert_true(g_file_set_contents(file, text, -1, NULL));
    g_unsetenv("AWS_ACCESS_KEY_ID");
    g_unsetenv("AWS_SECRET_ACCESS_KEY");

    assert_fails(vb_store_open("s3://" BUCKET "/x", 0, &s, ERR), -ENOKEY, "no S3 credentials");
    opt = g_strdup_printf("credentials_file=%s", file);
    opts[0] = opt;
    opts[1] = "profile=vb";
    if (vb_store_open_opts("s3://" BUCKET "/x", 0, opts, &s, &e))
        g_error("open with a credentials file: %s", vb_strerror(&e));
    vb_store_close(s);
    opts[1] = NULL;         /* [default] holds wrong keys */
    assert_fails(vb_store_open_opts("s3://" BUCKET "/x", 0, opts, &s, ERR), -EACCES,
                 "credentials from");

    /* a systemd credential: $CREDENTIALS_DIRECTORY/NAME */
    opts[0] = "credential=s3-keys";
    opts[1] = "profile=vb";
    g_unsetenv("CREDENTIALS_DIRECTORY");
    assert_fails(vb_store_open_opts("s3://" BUCKET "/x", 0, opts, &s, ERR), -ENOKEY,
                 "LoadCredential=s3-keys");
    g_setenv("CREDENTIALS_DIRECTORY", dir, TRUE);
    if (vb_store_open_opts("s3://" BUCKET "/x", 0, opts, &s, &e))
        g_error("open with a systemd credential: %s", vb_strerror(&e));
    vb_store_close(s);
    opts[0] = "credential=../s3-keys";
    assert_fails(vb_store_open_opts("s3://" BUCKET "/x", 0, opts, &s, ERR), -EINVAL,
                 "not a file name");
    g_unsetenv("CREDENTIALS_DIRECTORY");

    g_setenv("AWS_ACCESS_KEY_ID", id, TRUE);
    g_setenv("AWS_SECRET_ACCESS_KEY", secret, TRUE);
    unlink(file);
    rmdir(dir);
    g_free(opt);
    g_free(text);
    g_free(file);
    g_free(dir);
    g_free(id);
    g_free(secret);
}

/* What an interrupted multipart upload leaves is found and aborted by
 * vb_store_clean_temp, once older than the cutoff. */
static void test_clean_temp(void)
{
    char *loc = random_prefix(), bucket[VB_S3_BUCKET_MAX], prefix[VB_S3_PREFIX_MAX];
    struct vb_s3_config cfg;
    struct vb_s3_http *http;
    struct vb_s3_call *c;
    struct vb_obj_info info;
    struct vb_store *s;
    unsigned removed = 99;
    vb_error e = { 0 };
    char *key;

    if (vb_store_open(loc, VB_STORE_CREATE, &s, &e))
        g_error("open: %s", vb_strerror(&e));
    g_assert_cmpint(vb_s3_config_load(loc, NULL, &cfg, &e), ==, 0);
    g_assert_cmpint(vb_s3_parse_location(loc, bucket, prefix, &e), ==, 0);
    g_assert_cmpint(vb_s3_http_new(&cfg, &http, &e), ==, 0);
    key = g_strconcat(prefix, "data/ab/unfinished", NULL);
    c = vb_s3_call_new("POST", key, "uploads=");
    c->want_body = true;
    vb_s3_run(http, c);
    g_assert_cmpint(c->ret, ==, 0);
    g_assert_cmpint(c->status, ==, 200);
    vb_s3_call_free(c);
    vb_s3_http_free(http);
    vb_s3_config_wipe(&cfg);

    g_assert_cmpint(vb_store_put(s, "config", "x", 1, 0, &e), ==, 0);
    g_assert_cmpint(vb_store_stat(s, "config", &info, &e), ==, 0);
    /* not older than a cutoff in the past: kept */
    g_assert_cmpint(vb_store_clean_temp(s, info.mtime_ns - 3600 * INT64_C(1000000000),
                                        &removed, &e), ==, 0);
    g_assert_cmpuint(removed, ==, 0);
    g_assert_cmpint(vb_store_clean_temp(s, info.mtime_ns + 2 * INT64_C(1000000000), &removed,
                                        &e), ==, 0);
    g_assert_cmpuint(removed, ==, 1);
    g_assert_cmpint(vb_store_clean_temp(s, info.mtime_ns + 2 * INT64_C(1000000000), &removed,
                                        &e), ==, 0);
    g_assert_cmpuint(removed, ==, 0);
    vb_store_close(s);
    g_free(key);
    g_free(loc);
}

/* S3 request c on key, run to its end on a client of the suite's keys. */
static struct vb_s3_call *raw_call(const char *method, const char *key, const char *query)
{
    struct vb_s3_config cfg;
    struct vb_s3_http *http;
    struct vb_s3_call *c;
    vb_error e = { 0 };

    g_assert_cmpint(vb_s3_config_load("s3://" LOCKED_BUCKET, NULL, &cfg, &e), ==, 0);
    g_assert_cmpint(vb_s3_http_new(&cfg, &http, &e), ==, 0);
    c = vb_s3_call_new(method, key, query);
    c->want_body = true;
    vb_s3_run(http, c);
    vb_s3_http_free(http);
    vb_s3_config_wipe(&cfg);
    return c;
}

/* The retention mode of key's current version ("" when it has none). */
static void retention_of(const char *key, char mode[16])
{
    struct vb_s3_call *c = raw_call("GET", key, "retention=");
    const char *m;

    mode[0] = 0;
    g_assert_cmpint(c->ret, ==, 0);
    if (c->status == 200) {
        g_assert_nonnull(m = strstr((const char *)c->resp->data, "<Mode>"));
        snprintf(mode, 16, "%.*s", (int)strcspn(m + 6, "<"), m + 6);
    } else if (c->status != 404) {
        g_error("GET %s?retention: HTTP %ld", key, c->status);
    }
    vb_s3_call_free(c);
}

/* object_lock: a new bucket is made with Object Lock, every put but a
 * transient one (and the big, multipart one too) is locked, a remove hides
 * the object and leaves its locked version, which S3 then refuses to
 * delete; a bucket without Object Lock is refused */
static void test_object_lock(void)
{
    static const char *const lock_opts[] = { "object_lock=1", "multipart_threshold=5M",
                                             "part_size=5M", NULL };
    static const char *const comp_opts[] = { "object_lock=1,compliance", NULL };
    char *loc = prefix_in(LOCKED_BUCKET), bucket[VB_S3_BUCKET_MAX], prefix[VB_S3_PREFIX_MAX];
    char *key, *q, mode[16], vid[128];
    size_t big = 6 << 20;
    uint8_t *buf = g_malloc(big);
    struct vb_s3_call *c;
    struct vb_obj_info info;
    struct vb_store *s;
    vb_error e = { 0 };

    for (size_t i = 0; i < big; i++)
        buf[i] = (uint8_t)(i * 7);
    g_assert_cmpint(vb_s3_parse_location(loc, bucket, prefix, &e), ==, 0);
    if (vb_store_open_opts(loc, 0, lock_opts, &s, &e))
        g_error("open %s with object_lock: %s", loc, vb_strerror(&e));
    g_assert_true(vb_store_caps(s) & VB_STORE_OBJECT_LOCK);
    g_assert_cmpint(vb_store_put(s, "data/ab/pack", "pack", 4, VB_PUT_NOREPLACE, &e), ==, 0);
    g_assert_cmpint(vb_store_put(s, "data/cd/big", buf, big, 0, &e), ==, 0);
    g_assert_cmpint(vb_store_put(s, "leases/0123", "{}", 2, VB_PUT_NOREPLACE | VB_PUT_TRANSIENT,
                                 &e), ==, 0);
    vb_store_close(s);
    if (vb_store_open_opts(loc, 0, comp_opts, &s, &e))
        g_error("open %s with object_lock compliance: %s", loc, vb_strerror(&e));
    g_assert_cmpint(vb_store_put(s, "snapshots/0123", "m", 1, VB_PUT_NOREPLACE, &e), ==, 0);

    key = g_strconcat(prefix, "data/ab/pack", NULL);
    retention_of(key, mode);
    g_assert_cmpstr(mode, ==, "GOVERNANCE");
    g_free(key);
    key = g_strconcat(prefix, "data/cd/big", NULL);
    retention_of(key, mode);
    g_assert_cmpstr(mode, ==, "GOVERNANCE");
    g_free(key);
    key = g_strconcat(prefix, "snapshots/0123", NULL);
    retention_of(key, mode);
    g_assert_cmpstr(mode, ==, "COMPLIANCE");
    g_free(key);
    key = g_strconcat(prefix, "leases/0123", NULL);
    retention_of(key, mode);
    g_assert_cmpstr(mode, ==, "");
    g_free(key);

    /* remove: a delete marker; the locked version stays and cannot be deleted */
    g_assert_cmpint(vb_store_remove(s, "data/ab/pack", &e), ==, 0);
    assert_fails(vb_store_stat(s, "data/ab/pack", &info, ERR), -ENOENT, "no such object");
    g_assert_cmpint(vb_store_remove(s, "leases/0123", &e), ==, 0);
    g_assert_cmpint(vb_store_check_remove(s, &e), ==, 0);
    vb_store_close(s);
    {
        GString *qs = g_string_new(NULL);
        char *kp = g_strconcat(prefix, "data/ab/pack", NULL);
        vb_s3_query(qs, (const char *const[]){ "prefix", kp, "versions", NULL, NULL });
        q = g_string_free(qs, FALSE);
        g_free(kp);
    }
    c = raw_call("GET", "", q);
    g_assert_cmpint(c->status, ==, 200);
    {
        const char *v = strstr((const char *)c->resp->data, "<Version>"), *id;
        g_assert_nonnull(v);
        g_assert_nonnull(strstr((const char *)c->resp->data, "<DeleteMarker>"));
        g_assert_nonnull(id = strstr(v, "<VersionId>"));
        snprintf(vid, sizeof(vid), "versionId=%.*s", (int)strcspn(id + 11, "<"), id + 11);
    }
    vb_s3_call_free(c);
    key = g_strconcat(prefix, "data/ab/pack", NULL);
    c = raw_call("DELETE", key, vid);
    g_assert_cmpint(c->status, ==, 403);
    g_assert_cmpstr(c->s3_code, ==, "AccessDenied");
    vb_s3_call_free(c);

    /* a bucket without Object Lock: refused at open, naming why */
    assert_fails(vb_store_open_opts("s3://" BUCKET "/x", 0, lock_opts, &s, ERR), -ENOTSUP,
                 "has no Object Lock");
    g_free(key);
    g_free(q);
    g_free(loc);
    g_free(buf);
}

/* A read-only store refuses writes before sending anything. */
static void test_readonly(void)
{
    char *loc = random_prefix();
    struct vb_store *s;
    GByteArray *out = g_byte_array_new();
    vb_error e = { 0 };

    g_assert_cmpint(vb_store_open(loc, VB_STORE_CREATE, &s, &e), ==, 0);
    g_assert_cmpint(vb_store_put(s, "config", "cfg", 3, 0, &e), ==, 0);
    vb_store_close(s);
    g_assert_cmpint(vb_store_open(loc, VB_STORE_READONLY, &s, &e), ==, 0);
    assert_fails(vb_store_put(s, "config", "x", 1, 0, ERR), -EROFS, "read-only");
    assert_fails(vb_store_remove(s, "config", ERR), -EROFS, "read-only");
    g_assert_cmpint(vb_store_get(s, "config", 0, 3, out, &e), ==, 0);
    g_assert_cmpmem(out->data, out->len, "cfg", 3);
    vb_store_close(s);
    g_byte_array_free(out, TRUE);
    g_free(loc);
}

int main(int argc, char **argv)
{
    static const char *const path_opts[] = { "addressing=path", "multipart_threshold=16M",
                                             "part_size=5M", NULL };
    static const char *virt_opts[] = { "addressing=virtual", NULL, NULL,
                                       "multipart_threshold=16M", "part_size=5M", NULL };
    static const char *const locked_opts[] = { "addressing=path", "object_lock=1",
                                               "multipart_threshold=16M", "part_size=5M",
                                               NULL };
    static struct backend path_style = { path_opts, NULL }, virtual_host = { virt_opts, NULL },
                          locked = { locked_opts, LOCKED_BUCKET };
    static const struct vb_conformance locked_c = { "/repo-store-s3/locked", open_s3,
                                                    close_s3, &locked };
    static const struct vb_conformance path_c = { "/repo-store-s3/path", open_s3, close_s3,
                                                  &path_style };
    static const struct vb_conformance virt_c = { "/repo-store-s3/virtual", open_s3, close_s3,
                                                  &virtual_host };
    const char *ep = getenv("AWS_ENDPOINT_URL");
    struct vb_s3_endpoint e;

    g_test_init(&argc, &argv, NULL);
    if (!ep || !getenv("AWS_ACCESS_KEY_ID") || !getenv("AWS_SECRET_ACCESS_KEY")) {
        fprintf(stderr, "test-repo-store-s3: needs AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (tests/s3/s3-suite.sh starts a cluster and sets them)\n");
        return 1;
    }
    /* virtual hosts: BUCKET.s3.test (radosgw's rgw dns name) pinned to the endpoint */
    g_assert_cmpint(vb_s3_parse_endpoint(ep, &e, NULL), ==, 0);
    snprintf(endpoint_virtual, sizeof(endpoint_virtual), "endpoint=http://s3.test:%u", e.port);
    snprintf(resolve, sizeof(resolve), "resolve=" BUCKET ".s3.test:%u:%s", e.port, e.host);
    virt_opts[1] = endpoint_virtual;
    virt_opts[2] = resolve;

    /* the bucket every case uses */
    {
        struct vb_store *s;
        vb_error err = { 0 };
        if (vb_store_open("s3://" BUCKET, VB_STORE_CREATE, &s, &err))
            g_error("create the bucket: %s", vb_strerror(&err));
        vb_store_close(s);
        if (vb_store_open_opts("s3://" LOCKED_BUCKET, VB_STORE_CREATE, locked_opts, &s, &err))
            g_error("create the bucket with Object Lock: %s", vb_strerror(&err));
        vb_store_close(s);
    }
    vb_conformance_add(&path_c);
    vb_conformance_add(&virt_c);
    vb_conformance_add(&locked_c);
    g_test_add_func("/repo-store-s3/wrong-secret", test_wrong_secret);
    g_test_add_func("/repo-store-s3/no-bucket", test_no_bucket);
    g_test_add_func("/repo-store-s3/options", test_options);
    g_test_add_func("/repo-store-s3/credentials-file", test_credentials_file);
    g_test_add_func("/repo-store-s3/clean-temp", test_clean_temp);
    g_test_add_func("/repo-store-s3/readonly", test_readonly);
    g_test_add_func("/repo-store-s3/object-lock", test_object_lock);
    return g_test_run();
}
