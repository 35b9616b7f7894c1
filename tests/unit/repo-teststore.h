/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * For unit tests of hostd/repo: a local store in a temporary folder, wrapped
 * so that a test can count the requests made (per operation) and inject a
 * hook before each one (to remove an object between a listing and a get,
 * to fail an operation).  Header-only; every function static.
 */
#ifndef VB_TEST_REPO_TESTSTORE_H
#define VB_TEST_REPO_TESTSTORE_H

#include <fcntl.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store-backend.h"

enum ts_op { TS_PUT, TS_GET, TS_STAT, TS_LIST, TS_REMOVE, TS_SYNC, TS_NOPS };

struct teststore {
    char *dir;
    const struct vb_store_ops *lops;
    void *lh;
    struct vb_store_ops ops;
    struct vb_store *s;
    gint count[TS_NOPS];
    /* called before each operation; a negative return fails it with that code */
    int (*hook)(struct teststore *t, enum ts_op op, const char *name);
    void *opaque;
};

static inline int ts_hook(struct teststore *t, enum ts_op op, const char *name, vb_error *e)
{
    int ret;

    g_atomic_int_inc(&t->count[op]);
    if (!t->hook)
        return 0;
    ret = t->hook(t, op, name);
    if (ret < 0)
        return vb_seterr(e, ret, "test hook fails %s", name ? name : "");
    return 0;
}

static inline int ts_put(void *h, const char *name, const void *buf, size_t len, unsigned flags,
                  vb_error *e)
{
    struct teststore *t = h;
    int ret = ts_hook(t, TS_PUT, name, e);
    return ret ? ret : t->lops->put(t->lh, name, buf, len, flags, e);
}

static inline int ts_get(void *h, const char *name, uint64_t off, size_t len, GByteArray *out,
                  vb_error *e)
{
    struct teststore *t = h;
    int ret = ts_hook(t, TS_GET, name, e);
    return ret ? ret : t->lops->get(t->lh, name, off, len, out, e);
}

static inline int ts_stat(void *h, const char *name, struct vb_obj_info *info, vb_error *e)
{
    struct teststore *t = h;
    int ret = ts_hook(t, TS_STAT, name, e);
    return ret ? ret : t->lops->stat(t->lh, name, info, e);
}

static inline int ts_list(void *h, const char *prefix, vb_list_fn fn, void *opaque, vb_error *e)
{
    struct teststore *t = h;
    int ret = ts_hook(t, TS_LIST, prefix, e);
    return ret ? ret : t->lops->list(t->lh, prefix, fn, opaque, e);
}

static inline int ts_remove(void *h, const char *name, vb_error *e)
{
    struct teststore *t = h;
    int ret = ts_hook(t, TS_REMOVE, name, e);
    return ret ? ret : t->lops->remove(t->lh, name, e);
}

static inline int ts_sync(void *h, vb_error *e)
{
    struct teststore *t = h;
    int ret = ts_hook(t, TS_SYNC, NULL, e);
    return ret ? ret : t->lops->sync(t->lh, e);
}

static inline int ts_clean_temp(void *h, int64_t cutoff_ns, unsigned *removed, vb_error *e)
{
    struct teststore *t = h;
    return t->lops->clean_temp ? t->lops->clean_temp(t->lh, cutoff_ns, removed, e) : 0;
}

static inline void ts_close(void *h)
{
    struct teststore *t = h;
    t->lops->close(t->lh);
}

/* A new store in a new temporary folder (or in dir, when given). */
static struct teststore *teststore_new(const char *dir)
{
    struct teststore *t = g_new0(struct teststore, 1);
    vb_error e = { 0 };

    t->dir = dir ? g_strdup(dir) : g_dir_make_tmp("vb-repo-XXXXXX", NULL);
    g_assert_nonnull(t->dir);
    g_assert_cmpint(vb_store_local_open(t->dir, VB_STORE_CREATE, &t->lops, &t->lh, &e), ==, 0);
    t->ops = *t->lops;
    t->ops.put = ts_put;
    t->ops.get = ts_get;
    t->ops.stat = ts_stat;
    t->ops.list = ts_list;
    t->ops.remove = ts_remove;
    t->ops.sync = ts_sync;
    t->ops.clean_temp = ts_clean_temp;
    t->ops.close = ts_close;
    t->s = vb_store_new(&t->ops, t, 0);
    g_assert_nonnull(t->s);
    return t;
}

static inline void teststore_zero(struct teststore *t)
{
    for (int i = 0; i < TS_NOPS; i++)
        g_atomic_int_set(&t->count[i], 0);
}

static inline int teststore_total(struct teststore *t)
{
    int n = 0;
    for (int i = 0; i < TS_NOPS; i++)
        n += g_atomic_int_get(&t->count[i]);
    return n;
}

/* Close the store; remove the folder unless keep. */
static inline void teststore_free(struct teststore *t, bool keep)
{
    vb_store_close(t->s);
    if (!keep)
        g_assert_cmpint(vb_rm_rf_at(AT_FDCWD, t->dir), ==, 0);
    g_free(t->dir);
    g_free(t);
}

/* The bytes of an object file, read or replaced directly. */
static inline GBytes *teststore_read_raw(struct teststore *t, const char *name)
{
    char *p = g_build_filename(t->dir, name, NULL), *data;
    gsize len;

    g_assert_true(g_file_get_contents(p, &data, &len, NULL));
    g_free(p);
    return g_bytes_new_take(data, len);
}

static inline void teststore_write_raw(struct teststore *t, const char *name, const void *data,
                                size_t len)
{
    char *p = g_build_filename(t->dir, name, NULL);

    g_assert_true(g_file_set_contents(p, data, (gssize)len, NULL));
    chmod(p, 0600);
    g_free(p);
}

#endif
