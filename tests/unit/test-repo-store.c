/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests: the storage interface's own checks (hostd/repo/store.c), with
 * a fake backend that records what reaches it.
 */
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store-backend.h"

struct fake {
    unsigned calls;
    char last[256];
    size_t short_by;             /* get returns this many bytes too few */
    const char *list_names[4];   /* what list reports */
};

static int fake_put(void *h, const char *name, const void *buf, size_t len, unsigned flags,
                    vb_error *e)
{
    struct fake *f = h;

    f->calls++;
    snprintf(f->last, sizeof(f->last), "%s", name);
    return 0;
}

static int fake_get(void *h, const char *name, uint64_t off, size_t len, GByteArray *out,
                    vb_error *e)
{
    struct fake *f = h;

    f->calls++;
    snprintf(f->last, sizeof(f->last), "%s", name);
    g_byte_array_set_size(out, (guint)(len - VB_MIN(len, f->short_by)));
    memset(out->data, 'x', out->len);
    return 0;
}

static int fake_stat(void *h, const char *name, struct vb_obj_info *info, vb_error *e)
{
    struct fake *f = h;

    f->calls++;
    snprintf(f->last, sizeof(f->last), "%s", name);
    info->size = 1;
    info->mtime_ns = 2;
    return 0;
}

static int fake_list(void *h, const char *prefix, vb_list_fn fn, void *opaque, vb_error *e)
{
    struct fake *f = h;
    struct vb_obj_info info = { 1, 2 };

    f->calls++;
    snprintf(f->last, sizeof(f->last), "%s", prefix);
    for (size_t i = 0; i < G_N_ELEMENTS(f->list_names) && f->list_names[i]; i++) {
        int ret = fn(opaque, f->list_names[i], &info, e);
        if (ret)
            return ret;
    }
    return 0;
}

static int fake_remove(void *h, const char *name, vb_error *e)
{
    struct fake *f = h;

    f->calls++;
    snprintf(f->last, sizeof(f->last), "%s", name);
    return 0;
}

static int fake_sync(void *h, vb_error *e)
{
    ((struct fake *)h)->calls++;
    return 0;
}

static void fake_close(void *h)
{
}

static const struct vb_store_ops fake_ops = {
    .name = "fake", .put = fake_put, .get = fake_get, .stat = fake_stat, .list = fake_list,
    .remove = fake_remove, .sync = fake_sync, .close = fake_close, .caps = VB_STORE_NOREPLACE,
};

static const struct vb_store_ops fake_ops_plain = {
    .name = "plain", .put = fake_put, .get = fake_get, .stat = fake_stat, .list = fake_list,
    .remove = fake_remove, .sync = fake_sync, .close = fake_close, .caps = 0,
};

static int count(void *opaque, const char *name, const struct vb_obj_info *info, vb_error *e)
{
    (*(unsigned *)opaque)++;
    return 0;
}

static void test_open_dispatch(void)
{
    struct vb_store *s = (struct vb_store *)1;
    char *dir = g_dir_make_tmp("vb-store-XXXXXX", NULL), *file, *sub;
    vb_error e = { 0 };

    /* s3://: configured from options and AWS_* variables, checked before any request */
    g_unsetenv("AWS_ACCESS_KEY_ID");
    g_unsetenv("AWS_SECRET_ACCESS_KEY");
    g_unsetenv("AWS_SHARED_CREDENTIALS_FILE");
    g_assert_cmpint(vb_store_open("s3://bucket/prefix", 0, &s, &e), ==, -ENOKEY);
    g_assert_null(s);
    g_assert_nonnull(strstr(e.msg, "no S3 credentials"));
    g_assert_nonnull(strstr(e.msg, "s3://bucket/prefix"));
    g_assert_cmpint(vb_store_open("s3://b/prefix", 0, &s, &e), ==, -EINVAL);
    g_assert_nonnull(strstr(e.msg, "invalid bucket name"));
    g_assert_cmpint(vb_store_open_opts("s3://bucket/p", 0, (const char *const[]){ "x=1", NULL },
                                       &s, &e), ==, -EINVAL);
    g_assert_nonnull(strstr(e.msg, "unknown option 'x'"));
    g_assert_cmpint(vb_store_open_opts("s3://bucket/p", 0,
                                       (const char *const[]){ "endpoint=ftp://h", NULL }, &s,
                                       &e), ==, -EINVAL);
    g_assert_nonnull(strstr(e.msg, "not an http:// or https:// URL"));
    g_assert_null(s);
    /* a local folder takes no options */
    g_assert_cmpint(vb_store_open_opts(dir, 0, (const char *const[]){ "region=x", NULL }, &s,
                                       &e), ==, -EINVAL);
    g_assert_nonnull(strstr(e.msg, "takes no options"));
    g_assert_cmpint(vb_store_open("sftp://host/x", 0, &s, &e), ==, -EINVAL);
    g_assert_nonnull(strstr(e.msg, "unknown kind of storage 'sftp://'"));
    g_assert_cmpint(vb_store_open("", 0, &s, &e), ==, -EINVAL);
    g_assert_cmpint(vb_store_open(dir, VB_STORE_CREATE | VB_STORE_READONLY, &s, &e), ==,
                    -EINVAL);

    /* a path: the local folder */
    sub = g_build_filename(dir, "missing", NULL);
    g_assert_cmpint(vb_store_open(sub, 0, &s, &e), ==, -ENOENT);
    g_assert_nonnull(strstr(e.msg, sub));
    g_assert_cmpint(vb_store_open(sub, VB_STORE_CREATE, &s, &e), ==, 0);
    g_assert_cmpstr(vb_store_kind(s), ==, "local");
    g_assert_true(vb_store_caps(s) & VB_STORE_NOREPLACE);
    vb_store_close(s);
    g_assert_true(g_file_test(sub, G_FILE_TEST_IS_DIR));
    file = g_build_filename(dir, "file", NULL);
    g_assert_true(g_file_set_contents(file, "x", 1, NULL));
    g_assert_cmpint(vb_store_open(file, 0, &s, &e), ==, -ENOTDIR);
    g_assert_nonnull(strstr(e.msg, "not a folder"));
    unlink(file);
    rmdir(sub);
    rmdir(dir);
    g_free(file);
    g_free(sub);
    g_free(dir);
}

static void test_names_checked(void)
{
    static const char *bad[] = { "", "/config", "../x", "data/../config", "a//b", "data/",
                                 "Config", "a b", "x/./y", "data/ab/\n" };
    struct fake f = { 0 };
    struct vb_store *s = vb_store_new(&fake_ops, &f, 0);
    GByteArray *out = g_byte_array_new();
    struct vb_obj_info info;
    vb_error e = { 0 };

    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_assert_cmpint(vb_store_put(s, bad[i], "x", 1, 0, &e), ==, -EINVAL);
        g_assert_nonnull(strstr(e.msg, "invalid object name"));
        g_assert_cmpint(vb_store_get(s, bad[i], 0, 1, out, &e), ==, -EINVAL);
        g_assert_cmpint(vb_store_stat(s, bad[i], &info, &e), ==, -EINVAL);
        g_assert_cmpint(vb_store_remove(s, bad[i], &e), ==, -EINVAL);
    }
    g_assert_cmpint(vb_store_put(s, NULL, "x", 1, 0, &e), ==, -EINVAL);
    /* a name with a newline is printed escaped */
    g_assert_cmpint(vb_store_put(s, "data/ab/\n", "x", 1, 0, &e), ==, -EINVAL);
    g_assert_null(strchr(e.msg, '\n'));
    g_assert_cmpuint(f.calls, ==, 0);

    g_assert_cmpint(vb_store_put(s, "data/ab/cd", "x", 1, VB_PUT_NOREPLACE, &e), ==, 0);
    g_assert_cmpstr(f.last, ==, "data/ab/cd");
    g_assert_cmpint(vb_store_put(s, "config", "x", 1, 1u << 7, &e), ==, -EINVAL);
    g_assert_cmpuint(f.calls, ==, 1);
    g_byte_array_free(out, TRUE);
    vb_store_close(s);
}

static void test_short_read(void)
{
    struct fake f = { .short_by = 3 };
    struct vb_store *s = vb_store_new(&fake_ops, &f, 0);
    GByteArray *out = g_byte_array_new();
    vb_error e = { 0 };

    g_byte_array_append(out, (const guint8 *)"old", 3);
    g_assert_cmpint(vb_store_get(s, "config", 0, 10, out, &e), ==, -EIO);
    g_assert_cmpuint(out->len, ==, 0);
    g_assert_nonnull(strstr(e.msg, "config"));
    f.short_by = 0;
    g_assert_cmpint(vb_store_get(s, "config", 5, 10, out, &e), ==, 0);
    g_assert_cmpuint(out->len, ==, 10);
    /* a range that wraps around */
    g_assert_cmpint(vb_store_get(s, "config", UINT64_MAX - 2, 10, out, &e), ==, -EINVAL);
    g_byte_array_free(out, TRUE);
    vb_store_close(s);
}

static void test_list_checked(void)
{
    static const char *bad_prefix[] = { "/", "../", "data//", "Data/", "a/./", "//" };
    static const char *good_prefix[] = { "", "data/", "data/ab", "gc/condemned-", "config" };
    struct fake f = { .list_names = { "data/ab/cd", "data/ab/ef" } };
    struct vb_store *s = vb_store_new(&fake_ops, &f, 0);
    unsigned n = 0;
    vb_error e = { 0 };

    for (size_t i = 0; i < G_N_ELEMENTS(bad_prefix); i++)
        g_assert_cmpint(vb_store_list(s, bad_prefix[i], count, &n, &e), ==, -EINVAL);
    g_assert_cmpuint(f.calls, ==, 0);
    f.list_names[0] = NULL;
    for (size_t i = 0; i < G_N_ELEMENTS(good_prefix); i++)
        g_assert_cmpint(vb_store_list(s, good_prefix[i], count, &n, &e), ==, 0);
    f.list_names[0] = "data/ab/cd";
    g_assert_cmpint(vb_store_list(s, "data/", count, &n, &e), ==, 0);
    g_assert_cmpuint(n, ==, 2);

    /* a backend that reports a name outside the prefix, or one that is no name */
    f.list_names[1] = "index/ab";
    g_assert_cmpint(vb_store_list(s, "data/", count, &n, &e), ==, -EBADMSG);
    g_assert_nonnull(strstr(e.msg, "'index/ab'"));
    f.list_names[1] = "data/AB\x1b[2J";
    g_assert_cmpint(vb_store_list(s, "data/", count, &n, &e), ==, -EBADMSG);
    g_assert_nonnull(strstr(e.msg, "data/AB\\x1b[2J"));
    g_assert_null(strchr(e.msg, '\x1b'));
    vb_store_close(s);
}

static void test_flags(void)
{
    struct fake f = { 0 };
    struct vb_store *plain = vb_store_new(&fake_ops_plain, &f, 0);
    struct vb_store *ro = vb_store_new(&fake_ops, &f, VB_STORE_READONLY);
    GByteArray *out = g_byte_array_new();
    vb_error e = { 0 };
    unsigned n = 0;

    g_assert_cmpint(vb_store_put(plain, "config", "x", 1, VB_PUT_NOREPLACE, &e), ==, -ENOTSUP);
    g_assert_cmpint(vb_store_put(plain, "config", "x", 1, VB_PUT_SYNC, &e), ==, 0);
    g_assert_cmpuint(f.calls, ==, 1);

    g_assert_cmpint(vb_store_put(ro, "config", "x", 1, 0, &e), ==, -EROFS);
    g_assert_nonnull(strstr(e.msg, "read-only"));
    g_assert_cmpint(vb_store_remove(ro, "config", &e), ==, -EROFS);
    g_assert_cmpint(vb_store_clean_temp(ro, 0, NULL, &e), ==, 0);   /* nothing to clean */
    g_assert_cmpuint(f.calls, ==, 1);
    g_assert_cmpint(vb_store_get(ro, "config", 0, 1, out, &e), ==, 0);
    g_assert_cmpint(vb_store_list(ro, "", count, &n, &e), ==, 0);
    g_assert_cmpint(vb_store_sync(ro, &e), ==, 0);
    g_assert_cmpuint(f.calls, ==, 3);
    g_byte_array_free(out, TRUE);
    vb_store_close(plain);
    vb_store_close(ro);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/repo-store/open-dispatch", test_open_dispatch);
    g_test_add_func("/repo-store/names-checked", test_names_checked);
    g_test_add_func("/repo-store/short-read", test_short_read);
    g_test_add_func("/repo-store/list-checked", test_list_checked);
    g_test_add_func("/repo-store/flags", test_flags);
    return g_test_run();
}
