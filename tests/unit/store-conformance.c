/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Store conformance cases (store-conformance.h): round trips, NOREPLACE
 * races from threads, range reads, listings past 1000 objects, remove,
 * stat, big objects, queued requests, and the lease / condemned-list /
 * maintenance-lock protocol of lease.c driven by the store's own clock
 * (short expiries; the test waits for the store's clock to pass them, never
 * for a fixed time).
 */
#include "store-conformance.h"

#include <errno.h>
#include <glib.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lease.h"

#define PACK "data/ab/ab00000000000000000000000000000000000000000000000000000000000001"
#define S    INT64_C(1000000000)

struct cfx {
    struct vb_store *s;
};

#define ERR (&e_)
#define assert_fails(call, code, word)                                          \
    do {                                                                        \
        vb_error e_ = { 0 };                                                    \
        int r_ = (call);                                                        \
        if (r_ != (code) || !strstr(e_.msg, (word)))                            \
            g_error("%s: got %d (%s), want %d and '%s'", #call, r_,             \
                    vb_strerror(&e_), (code), (word));                          \
    } while (0)

#define assert_ok(call)                                                         \
    do {                                                                        \
        vb_error e_ = { 0 };                                                    \
        int r_ = (call);                                                        \
        if (r_)                                                                 \
            g_error("%s: %d (%s)", #call, r_, vb_strerror(&e_));                \
    } while (0)

static int cmp_str(gconstpointer a, gconstpointer b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int collect(void *opaque, const char *name, const struct vb_obj_info *info, vb_error *e)
{
    g_ptr_array_add(opaque, g_strdup_printf("%s:%llu", name, (unsigned long long)info->size));
    return 0;
}

static char *list(struct vb_store *s, const char *prefix)
{
    GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
    vb_error e = { 0 };
    char *out;
    int ret = vb_store_list(s, prefix, collect, names, &e);

    if (ret)
        g_error("list %s: %s", prefix, vb_strerror(&e));
    g_ptr_array_sort(names, cmp_str);
    g_ptr_array_add(names, NULL);
    out = g_strjoinv(",", (char **)names->pdata);
    g_ptr_array_free(names, TRUE);
    return out;
}

static void assert_list(struct vb_store *s, const char *prefix, const char *want)
{
    char *got = list(s, prefix);

    g_assert_cmpstr(got, ==, want);
    g_free(got);
}

static void assert_get(struct vb_store *s, const char *name, uint64_t off, size_t len,
                       const void *want)
{
    GByteArray *out = g_byte_array_new();
    vb_error e = { 0 };
    int ret = vb_store_get(s, name, off, len, out, &e);

    if (ret)
        g_error("get %s %llu+%zu: %s", name, (unsigned long long)off, len, vb_strerror(&e));
    g_assert_cmpmem(out->data, out->len, want, len);
    g_byte_array_free(out, TRUE);
}

static uint8_t *pattern(size_t len, unsigned seed)
{
    uint8_t *b = g_malloc(len ? len : 1);
    uint32_t x = seed * 2654435761u + 1;

    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        b[i] = (uint8_t)x;
    }
    return b;
}

/* ---- cases ---------------------------------------------------------------------- */

static void test_roundtrip(struct cfx *f, gconstpointer data)
{
    struct vb_store *s = f->s;
    GByteArray *out = g_byte_array_new();
    struct vb_obj_info info;

    assert_ok(vb_store_put(s, "config", "{\"v\":2}", 7, VB_PUT_SYNC, ERR));
    assert_ok(vb_store_put(s, PACK, "0123456789", 10, 0, ERR));
    assert_ok(vb_store_put(s, "index/aa", "", 0, 0, ERR));
    assert_ok(vb_store_put(s, "gc/condemned-01", "c", 1, 0, ERR));
    assert_ok(vb_store_put(s, "snapshots/a.b_c-d", "x", 1, VB_PUT_NOREPLACE, ERR));
    assert_get(s, "config", 0, 7, "{\"v\":2}");
    assert_get(s, PACK, 0, 10, "0123456789");
    assert_get(s, PACK, 3, 4, "3456");
    assert_get(s, PACK, 9, 1, "9");
    assert_get(s, PACK, 10, 0, "");
    assert_get(s, PACK, 0, 0, "");
    assert_get(s, "index/aa", 0, 0, "");
    assert_get(s, "snapshots/a.b_c-d", 0, 1, "x");

    assert_ok(vb_store_stat(s, PACK, &info, ERR));
    g_assert_cmpuint(info.size, ==, 10);
    g_assert_cmpint(info.mtime_ns, >, 1600000000 * S);
    assert_ok(vb_store_stat(s, "index/aa", &info, ERR));
    g_assert_cmpuint(info.size, ==, 0);

    assert_list(s, "", "config:7," PACK ":10,gc/condemned-01:1,index/aa:0,"
                "snapshots/a.b_c-d:1");
    assert_list(s, "data/", PACK ":10");
    assert_list(s, "data/ab", PACK ":10");
    assert_list(s, "data/ac", "");
    assert_list(s, "gc/condemned-", "gc/condemned-01:1");
    assert_list(s, "gc/x", "");
    assert_list(s, "keys/", "");
    assert_list(s, "config", "config:7");

    /* replace: the whole new object */
    assert_ok(vb_store_put(s, "config", "{}", 2, 0, ERR));
    assert_get(s, "config", 0, 2, "{}");
    assert_ok(vb_store_stat(s, "config", &info, ERR));
    g_assert_cmpuint(info.size, ==, 2);

    /* remove */
    assert_ok(vb_store_remove(s, PACK, ERR));
    assert_fails(vb_store_get(s, PACK, 0, 1, out, ERR), -ENOENT, "no such object");
    g_assert_cmpuint(out->len, ==, 0);
    assert_fails(vb_store_get(s, PACK, 0, 0, out, ERR), -ENOENT, PACK);
    assert_fails(vb_store_stat(s, PACK, &info, ERR), -ENOENT, "no such object");
    assert_fails(vb_store_remove(s, PACK, ERR), -ENOENT, "no such object");
    assert_fails(vb_store_remove(s, "keys/00", ERR), -ENOENT, "keys/00");
    assert_list(s, "data/", "");

    assert_ok(vb_store_sync(s, ERR));
    assert_ok(vb_store_sync(s, ERR));
    g_byte_array_free(out, TRUE);
}

struct racer {
    struct vb_store *s;
    pthread_barrier_t *go;
    char content[16];
    int ret;
};

/* On a store with Object Lock (a versioned bucket) only transient NOREPLACE
 * puts are checked for a writer that came first (radosgw 16.2 ignores
 * If-None-Match there; store-s3.c); the others are content-addressed or
 * have random names, and are locked so that a loser could not undo its
 * version anyway. */
static unsigned noreplace_extra(struct vb_store *s)
{
    return vb_store_caps(s) & VB_STORE_OBJECT_LOCK ? VB_PUT_TRANSIENT : 0;
}

static void *race_put(void *opaque)
{
    struct racer *r = opaque;

    pthread_barrier_wait(r->go);
    r->ret = vb_store_put(r->s, "snapshots/00", r->content, strlen(r->content),
                          VB_PUT_NOREPLACE | noreplace_extra(r->s), NULL);
    return NULL;
}

static void test_noreplace(struct cfx *f, gconstpointer data)
{
    struct vb_store *s = f->s;
    pthread_barrier_t go;
    struct racer r[8];
    pthread_t t[8];
    unsigned won = 0;

    assert_ok(vb_store_put(s, "keys/01", "first", 5, VB_PUT_NOREPLACE | noreplace_extra(s),
                           ERR));
    assert_fails(vb_store_put(s, "keys/01", "second", 6, VB_PUT_NOREPLACE | noreplace_extra(s),
                              ERR), -EEXIST, "keys/01: object exists");
    assert_get(s, "keys/01", 0, 5, "first");

    /* eight writers of one name at once: exactly one wins, its content stays */
    pthread_barrier_init(&go, NULL, 8);
    for (int i = 0; i < 8; i++) {
        r[i].s = s;
        r[i].go = &go;
        snprintf(r[i].content, sizeof(r[i].content), "writer %d", i);
        g_assert_cmpint(pthread_create(&t[i], NULL, race_put, &r[i]), ==, 0);
    }
    for (int i = 0; i < 8; i++)
        g_assert_cmpint(pthread_join(t[i], NULL), ==, 0);
    for (int i = 0; i < 8; i++) {
        if (r[i].ret == 0) {
            won++;
            assert_get(s, "snapshots/00", 0, strlen(r[i].content), r[i].content);
        } else {
            g_assert_cmpint(r[i].ret, ==, -EEXIST);
        }
    }
    g_assert_cmpuint(won, ==, 1);
    pthread_barrier_destroy(&go);
}

static void test_ranges(struct cfx *f, gconstpointer data)
{
    struct vb_store *s = f->s;
    GByteArray *out = g_byte_array_new();
    uint8_t *d = pattern(100, 1);

    assert_ok(vb_store_put(s, PACK, d, 100, 0, ERR));
    for (size_t off = 0; off < 100; off += 7)
        assert_get(s, PACK, off, 100 - off < 13 ? 100 - off : 13, d + off);
    assert_get(s, PACK, 0, 100, d);
    assert_get(s, PACK, 100, 0, "");
    /* past the end: -EIO, never a short read, the buffer emptied */
    g_byte_array_append(out, (const guint8 *)"old", 3);
    assert_fails(vb_store_get(s, PACK, 40, 70, out, ERR), -EIO, "shorter than expected");
    g_assert_cmpuint(out->len, ==, 0);
    assert_fails(vb_store_get(s, PACK, 99, 2, out, ERR), -EIO, "shorter than expected");
    assert_fails(vb_store_get(s, PACK, 100, 1, out, ERR), -EIO, "shorter than expected");
    assert_fails(vb_store_get(s, PACK, 150, 10, out, ERR), -EIO, PACK);
    assert_fails(vb_store_get(s, PACK, 101, 0, out, ERR), -EIO, "shorter than expected");
    assert_fails(vb_store_get(s, PACK, 0, 101, out, ERR), -EIO, "shorter than expected");
    g_assert_cmpuint(out->len, ==, 0);
    g_free(d);
    g_byte_array_free(out, TRUE);
}

static void test_list_many(struct cfx *f, gconstpointer data)
{
    const unsigned n = 1234;
    struct vb_store *s = f->s;
    struct vb_store_queue *q;
    struct vb_store_done d;
    char (*names)[VB_OBJ_NAME_MAX] = g_malloc_n(n, VB_OBJ_NAME_MAX);
    GPtrArray *got = g_ptr_array_new_with_free_func(g_free);
    unsigned under_0a = 0;
    char *l;

    assert_ok(vb_store_queue_new(s, 32, &q, ERR));
    for (unsigned i = 0; i < n; i++) {
        uint8_t id[VB_OBJ_ID_LEN] = { 0 };
        id[0] = (uint8_t)(i * 7);
        id[1] = (uint8_t)(i >> 8);
        id[2] = (uint8_t)i;
        vb_obj_name(VB_OBJ_PACK, id, names[i]);
        under_0a += id[0] == 0x0a;
        while (vb_store_queue_pending(q) >= 32) {
            g_assert_cmpint(vb_store_queue_reap(q, true, &d), ==, 1);
            if (d.ret)
                g_error("put: %s", vb_strerror(&d.err));
        }
        assert_ok(vb_store_queue_put(q, names[i], names[i], i % 5, 0, NULL, ERR));
    }
    while (vb_store_queue_reap(q, true, &d) == 1)
        if (d.ret)
            g_error("put: %s", vb_strerror(&d.err));
    vb_store_queue_free(q);
    assert_ok(vb_store_put(s, "index/01", "i", 1, 0, ERR));

    /* more than one page of 1000: every object exactly once */
    assert_ok(vb_store_list(s, "data/", collect, got, ERR));
    g_assert_cmpuint(got->len, ==, n);
    g_ptr_array_sort(got, cmp_str);
    for (guint i = 1; i < got->len; i++)
        g_assert_cmpstr(got->pdata[i - 1], <, got->pdata[i]);
    for (unsigned i = 0; i < n; i += 97) {
        char *want = g_strdup_printf("%s:%u", names[i], i % 5);
        g_assert_true(g_ptr_array_find_with_equal_func(got, want, g_str_equal, NULL));
        g_free(want);
    }
    g_ptr_array_set_size(got, 0);
    assert_ok(vb_store_list(s, "", collect, got, ERR));
    g_assert_cmpuint(got->len, ==, n + 1);
    g_ptr_array_set_size(got, 0);
    assert_ok(vb_store_list(s, "data/0a", collect, got, ERR));
    g_assert_cmpuint(got->len, ==, under_0a);
    l = list(s, "index/");
    g_assert_cmpstr(l, ==, "index/01:1");
    g_free(l);
    g_ptr_array_free(got, TRUE);
    g_free(names);
}

static int fail_at_third(void *opaque, const char *name, const struct vb_obj_info *info,
                         vb_error *e)
{
    return ++*(unsigned *)opaque == 3 ? vb_seterr(e, -ECANCELED, "stop here") : 0;
}

static void test_list_stops(struct cfx *f, gconstpointer data)
{
    unsigned calls = 0;

    for (int i = 0; i < 5; i++) {
        char name[32];
        snprintf(name, sizeof(name), "index/%02d", i);
        assert_ok(vb_store_put(f->s, name, "x", 1, 0, ERR));
    }
    assert_fails(vb_store_list(f->s, "index/", fail_at_third, &calls, ERR), -ECANCELED,
                 "stop here");
    g_assert_cmpuint(calls, ==, 3);
}

static int find_mtime(void *opaque, const char *name, const struct vb_obj_info *info,
                      vb_error *e)
{
    if (!strcmp(name, "index/01"))
        *(int64_t *)opaque = info->mtime_ns;
    return 0;
}

static void test_stat(struct cfx *f, gconstpointer data)
{
    struct vb_obj_info a, b;
    int64_t listed = -1;

    assert_ok(vb_store_put(f->s, "index/01", "abc", 3, 0, ERR));
    assert_ok(vb_store_stat(f->s, "index/01", &a, ERR));
    g_assert_cmpuint(a.size, ==, 3);
    /* list and stat read the store's clock alike */
    assert_ok(vb_store_list(f->s, "index/", find_mtime, &listed, ERR));
    g_assert_cmpint(listed, ==, a.mtime_ns);
    /* a later put is not older */
    assert_ok(vb_store_put(f->s, "index/02", "abcd", 4, 0, ERR));
    assert_ok(vb_store_stat(f->s, "index/02", &b, ERR));
    g_assert_cmpuint(b.size, ==, 4);
    g_assert_cmpint(b.mtime_ns, >=, a.mtime_ns);
    assert_fails(vb_store_stat(f->s, "index/03", &b, ERR), -ENOENT, "index/03");
}

static void test_big(struct cfx *f, gconstpointer data)
{
    const size_t len = 41 * 1024 * 1024 + 12345;
    uint8_t *d = pattern(len, 7), *d2;
    GByteArray *out = g_byte_array_new();
    struct vb_obj_info info;

    assert_ok(vb_store_put(f->s, PACK, d, len, 0, ERR));
    assert_ok(vb_store_stat(f->s, PACK, &info, ERR));
    g_assert_cmpuint(info.size, ==, len);
    assert_ok(vb_store_get(f->s, PACK, 0, len, out, ERR));
    g_assert_true(out->len == len && !memcmp(out->data, d, len));
    for (uint64_t off = 1; off < len; off = off * 3 + 4095) {
        size_t n = (size_t)VB_MIN(len - off, 6 * 1024 * 1024 + 1);
        assert_ok(vb_store_get(f->s, PACK, off, n, out, ERR));
        g_assert_true(out->len == n && !memcmp(out->data, d + off, n));
    }
    assert_fails(vb_store_get(f->s, PACK, len - 10, 11, out, ERR), -EIO, "shorter");
    /* replaced by another big object: whole new content */
    d2 = pattern(len - 1, 8);
    assert_ok(vb_store_put(f->s, PACK, d2, len - 1, 0, ERR));
    assert_ok(vb_store_get(f->s, PACK, 0, len - 1, out, ERR));
    g_assert_true(out->len == len - 1 && !memcmp(out->data, d2, len - 1));
    /* NOREPLACE of a big object */
    assert_ok(vb_store_put(f->s, "snapshots/big", d, 33 * 1024 * 1024,
                           VB_PUT_NOREPLACE | noreplace_extra(f->s), ERR));
    assert_fails(vb_store_put(f->s, "snapshots/big", d2, 33 * 1024 * 1024,
                              VB_PUT_NOREPLACE | noreplace_extra(f->s), ERR), -EEXIST,
                 "object exists");
    assert_ok(vb_store_get(f->s, "snapshots/big", 0, 33 * 1024 * 1024, out, ERR));
    g_assert_true(!memcmp(out->data, d, 33 * 1024 * 1024));
    g_free(d);
    g_free(d2);
    g_byte_array_free(out, TRUE);
}

static void test_queue(struct cfx *f, gconstpointer data)
{
    struct vb_store *s = f->s;
    struct vb_store_queue *q;
    struct vb_store_done d;
    GByteArray *out[6];
    uint8_t *buf[4];
    unsigned seen = 0;

    assert_fails(vb_store_queue_new(s, 0, &q, ERR), -EINVAL, "depth");
    assert_ok(vb_store_queue_new(s, 4, &q, ERR));
    g_assert_cmpint(vb_store_queue_reap(q, true, &d), ==, 0);     /* nothing in flight */
    for (int i = 0; i < 4; i++) {
        char name[32];
        buf[i] = pattern(100000 + (size_t)i, (unsigned)i);
        snprintf(name, sizeof(name), "index/%02d", i);
        assert_ok(vb_store_queue_put(q, name, buf[i], 100000 + (size_t)i, 0,
                                     GINT_TO_POINTER(i + 1), ERR));
    }
    g_assert_cmpuint(vb_store_queue_pending(q), ==, 4);
    assert_fails(vb_store_queue_put(q, "index/09", "x", 1, 0, NULL, ERR), -EBUSY, "reap");
    /* an invalid request fails at once and takes no slot */
    while (vb_store_queue_reap(q, true, &d) == 1) {
        g_assert_cmpint(d.ret, ==, 0);
        seen |= 1u << GPOINTER_TO_INT(d.tag);
    }
    g_assert_cmpuint(seen, ==, 0x1e);
    assert_fails(vb_store_queue_put(q, "Bad", "x", 1, 0, NULL, ERR), -EINVAL, "invalid");
    g_assert_cmpuint(vb_store_queue_pending(q), ==, 0);

    /* gets: whole, a range, a missing object, a range past the end */
    for (int i = 0; i < 6; i++)
        out[i] = g_byte_array_new();
    assert_ok(vb_store_queue_get(q, "index/00", 0, 100000, out[0], GINT_TO_POINTER(0), ERR));
    assert_ok(vb_store_queue_get(q, "index/03", 5, 1000, out[1], GINT_TO_POINTER(1), ERR));
    assert_ok(vb_store_queue_get(q, "index/77", 0, 10, out[2], GINT_TO_POINTER(2), ERR));
    assert_ok(vb_store_queue_get(q, "index/01", 100000, 2, out[3], GINT_TO_POINTER(3), ERR));
    seen = 0;
    while (vb_store_queue_reap(q, true, &d) == 1) {
        int i = GPOINTER_TO_INT(d.tag);
        seen |= 1u << i;
        switch (i) {
        case 0:
            g_assert_cmpint(d.ret, ==, 0);
            g_assert_cmpmem(out[0]->data, out[0]->len, buf[0], 100000);
            break;
        case 1:
            g_assert_cmpint(d.ret, ==, 0);
            g_assert_cmpmem(out[1]->data, out[1]->len, buf[3] + 5, 1000);
            break;
        case 2:
            g_assert_cmpint(d.ret, ==, -ENOENT);
            g_assert_nonnull(strstr(d.err.msg, "index/77"));
            g_assert_cmpuint(out[2]->len, ==, 0);
            break;
        case 3:
            g_assert_cmpint(d.ret, ==, -EIO);
            g_assert_nonnull(strstr(d.err.msg, "shorter than expected"));
            g_assert_cmpuint(out[3]->len, ==, 0);
            break;
        }
    }
    g_assert_cmpuint(seen, ==, 0xf);
    /* freed with requests in flight: it waits for them */
    assert_ok(vb_store_queue_put(q, "index/05", buf[0], 100000, 0, NULL, ERR));
    assert_ok(vb_store_queue_get(q, "index/01", 0, 10, out[4], NULL, ERR));
    vb_store_queue_free(q);
    assert_get(s, "index/05", 0, 100000, buf[0]);
    for (int i = 0; i < 4; i++)
        g_free(buf[i]);
    for (int i = 0; i < 6; i++)
        g_byte_array_free(out[i], TRUE);
}

/* ---- the lease protocol, by the store's clock ------------------------------------------- */

/* Wait until the store's clock reads at least t (an object written now is
 * not older than t); bounded. */
static int64_t wait_store_clock(struct vb_store *s, int64_t t)
{
    int64_t now = 0;

    for (int i = 0; i < 300; i++) {
        assert_ok(vb_lease_store_now(s, &now, ERR));
        if (now >= t)
            return now;
        g_usleep(100000);
    }
    g_error("the store's clock did not reach %lld (it reads %lld)", (long long)t,
            (long long)now);
}

static struct vb_lease_info *find_lease(GArray *a, const char *name)
{
    for (guint i = 0; i < a->len; i++)
        if (!strcmp(g_array_index(a, struct vb_lease_info, i).name, name))
            return &g_array_index(a, struct vb_lease_info, i);
    return NULL;
}

static void test_leases(struct cfx *f, gconstpointer data)
{
    const int64_t expiry = 2 * S;
    struct vb_store *s = f->s;
    struct vb_lease la, lb, lc;
    struct vb_lease_owner o;
    struct vb_pack_id packs[2];
    struct vb_condemned *c;
    struct vb_obj_info oi;
    GArray *leases;
    GPtrArray *all;
    int64_t now, old;

    assert_ok(vb_lease_create(s, "backup", &la, ERR));
    assert_ok(vb_lease_create(s, "backup", &lb, ERR));
    assert_ok(vb_store_stat(s, la.name, &oi, ERR));
    g_assert_cmpint(la.stamp_ns, ==, oi.mtime_ns);
    assert_ok(vb_lease_read(s, la.name, &o, ERR));
    g_assert_cmpstr(o.kind, ==, "backup");
    assert_ok(vb_lease_list(s, &leases, ERR));
    g_assert_cmpuint(leases->len, ==, 2);
    g_assert_cmpint(find_lease(leases, la.name)->mtime_ns, ==, la.stamp_ns);
    g_array_free(leases, TRUE);

    /* a refresh moves the store's mtime on (once the store's clock has) */
    old = la.stamp_ns;
    wait_store_clock(s, old + S);
    assert_ok(vb_lease_refresh(s, &la, 15 * 60 * S, 3 * 60 * S, ERR));
    g_assert_cmpint(la.stamp_ns, >, old);

    /* gc condemns two packs while both writers hold leases */
    memset(packs, 0x5a, sizeof(packs));
    assert_ok(vb_condemn(s, packs, 2, &c, ERR));
    g_assert_cmpuint(c->leases_seen->len, ==, 2);
    assert_ok(vb_condemned_read_all(s, &all, ERR));
    g_assert_cmpuint(all->len, ==, 1);
    g_assert_cmpuint(((struct vb_condemned *)all->pdata[0])->leases_seen->len, ==, 2);
    g_ptr_array_free(all, TRUE);
    assert_ok(vb_lease_list(s, &leases, ERR));
    g_assert_false(vb_condemned_may_delete(c, (struct vb_lease_info *)leases->data,
                                           leases->len, c->mtime_ns, expiry, NULL));
    g_array_free(leases, TRUE);

    /* A ends; a writer that starts now does not matter; B must expire by the
     * store's clock */
    assert_ok(vb_lease_remove(s, &la, ERR));
    assert_fails(vb_lease_remove(s, &la, ERR), -ENOENT, la.name);
    assert_ok(vb_lease_create(s, "backup", &lc, ERR));
    assert_ok(vb_lease_list(s, &leases, ERR));
    g_assert_cmpuint(leases->len, ==, 2);
    now = wait_store_clock(s, 0);
    if (now - lb.stamp_ns < expiry)
        g_assert_false(vb_condemned_may_delete(c, (struct vb_lease_info *)leases->data,
                                               leases->len, now, expiry, NULL));
    now = wait_store_clock(s, lb.stamp_ns + expiry);
    g_assert_true(vb_condemned_may_delete(c, (struct vb_lease_info *)leases->data, leases->len,
                                          now, expiry, NULL));
    g_array_free(leases, TRUE);
    assert_ok(vb_condemned_remove(s, c, ERR));
    vb_condemned_free(c);
    assert_ok(vb_condemned_read_all(s, &all, ERR));
    g_assert_cmpuint(all->len, ==, 0);
    g_ptr_array_free(all, TRUE);
    assert_ok(vb_lease_remove(s, &lb, ERR));
    assert_ok(vb_lease_remove(s, &lc, ERR));
}

static void test_maint_lock(struct cfx *f, gconstpointer data)
{
    const int64_t expiry = 2 * S;
    struct vb_store *s = f->s;
    struct vb_maint_lock l, l2;
    struct vb_maint_holder h;
    char token[33];

    assert_ok(vb_maint_lock_take(s, "gc", expiry, &l, &h, ERR));
    assert_fails(vb_maint_lock_take(s, "prune", expiry, &l2, &h, ERR), -EBUSY,
                 "maintenance is running: gc by host");
    g_assert_cmpstr(h.token, ==, l.token);
    /* its holder stops refreshing: stale by the store's clock, never broken by take */
    wait_store_clock(s, l.stamp_ns + expiry);
    assert_fails(vb_maint_lock_take(s, "prune", expiry, &l2, &h, ERR), -ESTALE, l.token);
    g_assert_true(h.stale);
    memcpy(token, h.token, sizeof(token));
    assert_fails(vb_maint_lock_break(s, "00000000000000000000000000000000", ERR), -ESTALE,
                 "another one");
    assert_ok(vb_maint_lock_break(s, token, ERR));
    assert_ok(vb_maint_lock_take(s, "prune", 60 * S, &l2, &h, ERR));
    assert_fails(vb_maint_lock_release(s, &l, ERR), -ESTALE, "now held by prune");
    assert_ok(vb_maint_lock_refresh(s, &l2, 10 * S, ERR));
    assert_ok(vb_maint_lock_release(s, &l2, ERR));
    assert_fails(vb_maint_lock_release(s, &l2, ERR), -ESTALE, "already removed");
}

/* ---- registration ------------------------------------------------------------------------ */

static void setup(struct cfx *f, gconstpointer data)
{
    const struct vb_conformance *c = data;

    f->s = c->open(c->opaque);
    g_assert_nonnull(f->s);
}

static void teardown(struct cfx *f, gconstpointer data)
{
    const struct vb_conformance *c = data;

    c->close(f->s, c->opaque);
}

void vb_conformance_add(const struct vb_conformance *c)
{
    static const struct {
        const char *name;
        void (*fn)(struct cfx *, gconstpointer);
    } cases[] = {
        { "roundtrip", test_roundtrip },
        { "noreplace-race", test_noreplace },
        { "ranges", test_ranges },
        { "list-many", test_list_many },
        { "list-stops", test_list_stops },
        { "stat", test_stat },
        { "big", test_big },
        { "queue", test_queue },
        { "leases", test_leases },
        { "maint-lock", test_maint_lock },
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        char *name = g_strdup_printf("%s/%s", c->path, cases[i].name);
        g_test_add(name, struct cfx, c, setup, cases[i].fn, teardown);
        g_free(name);
    }
}
