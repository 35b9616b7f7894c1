/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests: leases, condemned lists and the maintenance lock
 * (hostd/repo/lease.c).  The decisions are driven with explicit times; the
 * store operations run against a temporary folder, where an object is made
 * older by setting its mtime (no sleeping, no wall clock).
 */
#include <fcntl.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lease.h"

#define S        INT64_C(1000000000)
#define MINUTE   (60 * S)

struct fx {
    char *dir;
    struct vb_store *s;
};

static void setup(struct fx *f, gconstpointer data)
{
    vb_error e = { 0 };

    f->dir = g_dir_make_tmp("vb-lease-XXXXXX", NULL);
    g_assert_nonnull(f->dir);
    g_assert_cmpint(vb_store_open(f->dir, 0, &f->s, &e), ==, 0);
}

static void teardown(struct fx *f, gconstpointer data)
{
    vb_store_close(f->s);
    g_assert_cmpint(vb_rm_rf_at(AT_FDCWD, f->dir), ==, 0);
    g_free(f->dir);
}

/* Make object name look last written at ns (store clock). */
static void set_mtime(struct fx *f, const char *name, int64_t ns)
{
    struct timespec ts[2] = { { ns / S, ns % S }, { ns / S, ns % S } };
    char *p = g_build_filename(f->dir, name, NULL);

    g_assert_cmpint(utimensat(AT_FDCWD, p, ts, AT_SYMLINK_NOFOLLOW), ==, 0);
    g_free(p);
}

static void write_raw(struct fx *f, const char *name, const char *content)
{
    vb_error e = { 0 };

    g_assert_cmpint(vb_store_put(f->s, name, content, strlen(content), 0, &e), ==, 0);
}

static struct vb_lease_info info(const char *hex_id, int64_t mtime)
{
    struct vb_lease_info li = { .mtime_ns = mtime };

    snprintf(li.name, sizeof(li.name), "leases/%s", hex_id);
    g_assert_cmpint(vb_unhex(hex_id, li.id, VB_LEASE_ID_LEN), ==, 0);
    return li;
}

#define LA "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define LB "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define LC "cccccccccccccccccccccccccccccccc"

/* ---- decisions, explicit times --------------------------------------------- */

static void test_live(void)
{
    const int64_t t = 1700000000 * S;

    g_assert_true(vb_lease_live(t, t, 15 * MINUTE));
    g_assert_true(vb_lease_live(t, t + 15 * MINUTE - 1, 15 * MINUTE));
    g_assert_false(vb_lease_live(t, t + 15 * MINUTE, 15 * MINUTE));
    g_assert_false(vb_lease_live(t, t + 24 * 60 * MINUTE, 15 * MINUTE));
    /* refreshed after the reading of now: live */
    g_assert_true(vb_lease_live(t + MINUTE, t, 15 * MINUTE));
    g_assert_true(vb_lease_live(t + MINUTE, t, 0));
    g_assert_false(vb_lease_live(t, t + 1, 0));
    /* no overflow at the ends of the clock */
    g_assert_false(vb_lease_live(INT64_MIN, INT64_MAX, 15 * MINUTE));
    g_assert_false(vb_lease_live(INT64_MIN, INT64_MAX, INT64_MAX));
    g_assert_true(vb_lease_live(INT64_MAX, INT64_MIN, 1));
    g_assert_true(vb_lease_live(-5 * S, -4 * S, 2 * S));   /* before 1970 */
}

static void test_safe(void)
{
    struct vb_lease l = { .mono_ns = 1000 * S };

    g_assert_true(vb_lease_safe(&l, 1000 * S, 15 * MINUTE, 3 * MINUTE));
    g_assert_true(vb_lease_safe(&l, 1000 * S + 12 * MINUTE - 1, 15 * MINUTE, 3 * MINUTE));
    g_assert_false(vb_lease_safe(&l, 1000 * S + 12 * MINUTE, 15 * MINUTE, 3 * MINUTE));
    g_assert_false(vb_lease_safe(&l, INT64_MAX, 15 * MINUTE, 3 * MINUTE));
    g_assert_true(vb_lease_safe(&l, 0, 15 * MINUTE, 3 * MINUTE));    /* clock before: 0 elapsed */
    /* a margin as large as the expiry leaves no time at all */
    g_assert_false(vb_lease_safe(&l, 1000 * S, 15 * MINUTE, 15 * MINUTE));
    g_assert_false(vb_lease_safe(&l, 1000 * S, 15 * MINUTE, -1));
}

static struct vb_condemned *condemned(const char *const *seen, size_t n, int64_t mtime)
{
    struct vb_condemned *c = calloc(1, sizeof(*c));    /* vb_condemned_free: free() */

    snprintf(c->name, sizeof(c->name), "gc/condemned-%s", LC);
    c->mtime_ns = mtime;
    c->packs = g_array_new(FALSE, TRUE, sizeof(struct vb_pack_id));
    g_array_set_size(c->packs, 2);
    if (seen) {
        c->leases_seen = g_array_new(FALSE, FALSE, sizeof(struct vb_lease_id));
        for (size_t i = 0; i < n; i++) {
            struct vb_lease_id id;
            g_assert_cmpint(vb_unhex(seen[i], id.b, sizeof(id.b)), ==, 0);
            g_array_append_val(c->leases_seen, id);
        }
    }
    return c;
}

static void test_may_delete(void)
{
    static const char *const seen[] = { LA, LB };
    const int64_t t = 1700000000 * S, x = 15 * MINUTE;
    struct vb_condemned *c = condemned(seen, 2, t), *pending = condemned(NULL, 0, t);
    struct vb_condemned *none = condemned(seen, 0, t);
    const struct vb_lease_info *blocker;
    struct vb_lease_info l[3];

    /* both writers still there and live */
    l[0] = info(LA, t - MINUTE);
    l[1] = info(LB, t);
    g_assert_false(vb_condemned_may_delete(c, l, 2, t, x, &blocker));
    g_assert_true(blocker == &l[0]);
    /* A gone, B live */
    g_assert_false(vb_condemned_may_delete(c, &l[1], 1, t + MINUTE, x, &blocker));
    g_assert_true(blocker == &l[1]);
    /* A gone, B expired by the store's clock */
    g_assert_true(vb_condemned_may_delete(c, &l[1], 1, t + x, x, &blocker));
    g_assert_null(blocker);
    g_assert_false(vb_condemned_may_delete(c, &l[1], 1, t + x - 1, x, NULL));
    /* A expired, B refreshed after now was read: still live */
    l[1].mtime_ns = t + 20 * MINUTE;
    g_assert_false(vb_condemned_may_delete(c, l, 2, t + 16 * MINUTE, x, NULL));
    /* both gone; a writer that began after the list was written does not count */
    l[2] = info(LC, t + 16 * MINUTE);
    g_assert_true(vb_condemned_may_delete(c, &l[2], 1, t + 16 * MINUTE, x, NULL));
    g_assert_true(vb_condemned_may_delete(c, NULL, 0, t, x, NULL));
    /* no lease when it was written */
    g_assert_true(vb_condemned_may_delete(none, l, 3, t, x, NULL));
    /* gc had not named the leases yet: never */
    g_assert_false(vb_condemned_may_delete(pending, NULL, 0, INT64_MAX, x, &blocker));
    g_assert_null(blocker);
    vb_condemned_free(c);
    vb_condemned_free(pending);
    vb_condemned_free(none);
}

/* ---- leases in a store ------------------------------------------------------ */

static struct vb_lease_info *find(GArray *a, const char *name)
{
    for (guint i = 0; i < a->len; i++)
        if (!strcmp(g_array_index(a, struct vb_lease_info, i).name, name))
            return &g_array_index(a, struct vb_lease_info, i);
    return NULL;
}

static void test_lease_store(struct fx *f, gconstpointer data)
{
    struct vb_lease l, l2;
    struct vb_lease_owner o;
    struct vb_obj_info oi;
    char host[256] = "";
    GArray *a;
    vb_error e = { 0 };
    int64_t old;

    g_assert_cmpint(vb_lease_create(f->s, "backup", &l, &e), ==, 0);
    g_assert_true(g_str_has_prefix(l.name, "leases/"));
    g_assert_cmpuint(strlen(l.name), ==, 7 + 32);
    g_assert_cmpint(vb_store_stat(f->s, l.name, &oi, &e), ==, 0);
    g_assert_cmpint(l.stamp_ns, ==, oi.mtime_ns);
    g_assert_cmpint(vb_lease_create(f->s, "copy", &l2, &e), ==, 0);
    g_assert_cmpstr(l.name, !=, l2.name);
    g_assert_cmpint(vb_lease_create(f->s, "Bad Kind", &l2, &e), ==, -EINVAL);

    /* its content */
    g_assert_cmpint(vb_lease_read(f->s, l.name, &o, &e), ==, 0);
    gethostname(host, sizeof(host) - 1);
    g_assert_cmpstr(o.host, ==, host);
    g_assert_cmpint(o.pid, ==, getpid());
    g_assert_cmpstr(o.kind, ==, "backup");
    g_assert_cmpint(o.created_ns / S, ==, l.created_ns / S);

    /* listing: both, with the store's mtimes; foreign names ignored */
    write_raw(f, "leases/notes", "x");
    g_assert_cmpint(vb_lease_list(f->s, &a, &e), ==, 0);
    g_assert_cmpuint(a->len, ==, 2);
    g_assert_nonnull(find(a, l.name));
    g_assert_cmpint(find(a, l.name)->mtime_ns, ==, l.stamp_ns);
    g_array_free(a, TRUE);

    /* refresh moves the store's mtime on */
    old = l.stamp_ns - 10 * MINUTE;
    set_mtime(f, l.name, old);
    g_assert_cmpint(vb_lease_refresh(f->s, &l, 15 * MINUTE, 3 * MINUTE, &e), ==, 0);
    g_assert_cmpint(l.stamp_ns, >, old);
    g_assert_cmpint(vb_store_stat(f->s, l.name, &oi, &e), ==, 0);
    g_assert_cmpint(oi.mtime_ns, ==, l.stamp_ns);
    g_assert_cmpint(vb_lease_read(f->s, l.name, &o, &e), ==, 0);
    g_assert_cmpstr(o.kind, ==, "backup");

    /* a holder that may have expired by its own clock stops, without writing */
    set_mtime(f, l.name, old);
    l.mono_ns = vb_lease_mono_now() - 13 * MINUTE;
    g_assert_cmpint(vb_lease_refresh(f->s, &l, 15 * MINUTE, 3 * MINUTE, &e), ==, -ESTALE);
    g_assert_nonnull(strstr(e.msg, "may have expired"));
    g_assert_cmpint(vb_store_stat(f->s, l.name, &oi, &e), ==, 0);
    g_assert_cmpint(oi.mtime_ns, ==, old);

    /* removed; a refresh of a lease that is gone fails */
    l.mono_ns = vb_lease_mono_now();
    g_assert_cmpint(vb_lease_remove(f->s, &l, &e), ==, 0);
    g_assert_cmpint(vb_lease_remove(f->s, &l, &e), ==, -ENOENT);
    g_assert_cmpint(vb_lease_refresh(f->s, &l, 15 * MINUTE, 3 * MINUTE, &e), ==, -ESTALE);
    g_assert_nonnull(strstr(e.msg, "gone"));
    g_assert_cmpint(vb_lease_list(f->s, &a, &e), ==, 0);
    g_assert_cmpuint(a->len, ==, 1);
    g_array_free(a, TRUE);
}

static void test_lease_damaged(struct fx *f, gconstpointer data)
{
    static const struct {
        const char *content, *why;
    } bad[] = {
        { "", "not JSON" },
        { "{\"host\":", "not JSON" },
        { "[1,2]", "not a JSON object" },
        { "{\"host\":\"h\",\"pid\":1,\"kind\":\"backup\",\"created\":\"2026-01-01T00:00:00Z\"}x",
          "bytes after the JSON" },
        { "{\"pid\":1,\"kind\":\"backup\",\"created\":\"2026-01-01T00:00:00Z\"}", "no field 'host'" },
        { "{\"host\":7,\"pid\":1,\"kind\":\"backup\",\"created\":\"2026-01-01T00:00:00Z\"}",
          "field 'host' is an integer, not a string" },
        { "{\"host\":\"h\",\"pid\":\"1\",\"kind\":\"backup\",\"created\":\"2026-01-01T00:00:00Z\"}",
          "field 'pid' is a string, not an integer" },
        { "{\"host\":\"h\",\"pid\":-4,\"kind\":\"backup\",\"created\":\"2026-01-01T00:00:00Z\"}",
          "field 'pid' out of range" },
        { "{\"host\":\"h\",\"pid\":1,\"kind\":\"backup\",\"created\":\"yesterday\"}",
          "field 'created' is not an RFC 3339 time" },
    };
    const char *name = "leases/" LA;
    struct vb_lease_owner o;
    vb_error e = { 0 };

    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        write_raw(f, name, bad[i].content);
        g_assert_cmpint(vb_lease_read(f->s, name, &o, &e), ==, -EBADMSG);
        if (!strstr(e.msg, bad[i].why) || !strstr(e.msg, name))
            g_error("case %zu: '%s' does not say '%s'", i, e.msg, bad[i].why);
    }
    /* control characters in a host name are not passed on */
    write_raw(f, name, "{\"host\":\"h\\u001b[2Jx\",\"pid\":1,\"kind\":\"backup\","
                       "\"created\":\"2026-01-01T00:00:00Z\"}");
    g_assert_cmpint(vb_lease_read(f->s, name, &o, &e), ==, 0);
    g_assert_cmpstr(o.host, ==, "h?[2Jx");
}

static void test_store_now(struct fx *f, gconstpointer data)
{
    struct vb_obj_info oi;
    int64_t now;
    GArray *a;
    vb_error e = { 0 };

    write_raw(f, "config", "x");
    g_assert_cmpint(vb_store_stat(f->s, "config", &oi, &e), ==, 0);
    g_assert_cmpint(vb_lease_store_now(f->s, &now, &e), ==, 0);
    g_assert_cmpint(now, >=, oi.mtime_ns);
    g_assert_cmpint(vb_lease_list(f->s, &a, &e), ==, 0);
    g_assert_cmpuint(a->len, ==, 0);                 /* the probe is gone */
    g_array_free(a, TRUE);
}

/* ---- condemned lists in a store ---------------------------------------------- */

static void test_condemn(struct fx *f, gconstpointer data)
{
    struct vb_pack_id packs[3];
    struct vb_lease la, lb, lc;
    struct vb_condemned *c;
    GPtrArray *all;
    GArray *leases;
    vb_error e = { 0 };
    int64_t now;

    for (int i = 0; i < 3; i++)
        memset(packs[i].b, 0x11 * (i + 1), sizeof(packs[i].b));
    g_assert_cmpint(vb_lease_create(f->s, "backup", &la, &e), ==, 0);
    g_assert_cmpint(vb_lease_create(f->s, "backup", &lb, &e), ==, 0);

    g_assert_cmpint(vb_condemn(f->s, packs, 3, &c, &e), ==, 0);
    g_assert_true(g_str_has_prefix(c->name, "gc/condemned-"));
    g_assert_cmpuint(c->packs->len, ==, 3);
    g_assert_nonnull(c->leases_seen);
    g_assert_cmpuint(c->leases_seen->len, ==, 2);
    g_assert_cmpint(c->mtime_ns, >=, lb.stamp_ns);
    now = c->mtime_ns;

    /* read back as written */
    g_assert_cmpint(vb_condemned_read_all(f->s, &all, &e), ==, 0);
    g_assert_cmpuint(all->len, ==, 1);
    {
        struct vb_condemned *r = all->pdata[0];
        g_assert_cmpstr(r->name, ==, c->name);
        g_assert_cmpint(r->mtime_ns, ==, c->mtime_ns);
        g_assert_cmpint(r->created_ns / S, ==, c->created_ns / S);
        g_assert_cmpmem(r->packs->data, 3 * sizeof(struct vb_pack_id), packs, sizeof(packs));
        g_assert_cmpmem(r->leases_seen->data, 2 * VB_LEASE_ID_LEN, c->leases_seen->data,
                        2 * VB_LEASE_ID_LEN);
    }
    g_ptr_array_free(all, TRUE);

    /* phase 2 waits for both writers */
    g_assert_cmpint(vb_lease_list(f->s, &leases, &e), ==, 0);
    g_assert_false(vb_condemned_may_delete(c, (struct vb_lease_info *)leases->data, leases->len,
                                           now, 15 * MINUTE, NULL));
    g_array_free(leases, TRUE);
    /* one ends, the other stops refreshing; a new writer does not matter */
    g_assert_cmpint(vb_lease_remove(f->s, &la, &e), ==, 0);
    set_mtime(f, lb.name, now - 16 * MINUTE);
    g_assert_cmpint(vb_lease_create(f->s, "backup", &lc, &e), ==, 0);
    g_assert_cmpint(vb_lease_list(f->s, &leases, &e), ==, 0);
    g_assert_cmpuint(leases->len, ==, 2);
    g_assert_true(vb_condemned_may_delete(c, (struct vb_lease_info *)leases->data, leases->len,
                                          now, 15 * MINUTE, NULL));
    g_array_free(leases, TRUE);

    g_assert_cmpint(vb_condemned_remove(f->s, c, &e), ==, 0);
    g_assert_cmpint(vb_condemned_read_all(f->s, &all, &e), ==, 0);
    g_assert_cmpuint(all->len, ==, 0);
    g_ptr_array_free(all, TRUE);
    vb_condemned_free(c);
}

static void test_condemned_read(struct fx *f, gconstpointer data)
{
    static const struct {
        const char *content, *why;
    } bad[] = {
        { "{\"leases_seen\":[],\"created\":\"2026-01-01T00:00:00Z\"}", "no field 'packs'" },
        { "{\"packs\":[\"00\"],\"leases_seen\":[],\"created\":\"2026-01-01T00:00:00Z\"}",
          "'packs' entry 0 is not 64 hex digits" },
        { "{\"packs\":[],\"leases_seen\":[\"" LA "\", 3],\"created\":\"2026-01-01T00:00:00Z\"}",
          "'leases_seen' entry 1 is not 32 hex digits" },
        { "{\"packs\":[],\"leases_seen\":[\"" LA "\"]}", "no field 'created'" },
        { "{\"packs\":{},\"leases_seen\":[],\"created\":\"2026-01-01T00:00:00Z\"}",
          "field 'packs' is an object, not an array" },
        { "{\"packs\":[],\"created\":\"2026-01-01T00:00:00Z\"}", "no field 'leases_seen'" },
    };
    const char *name = "gc/condemned-" LC;
    GPtrArray *all;
    vb_error e = { 0 };

    /* still being written: leases_seen null */
    write_raw(f, name, "{\"packs\":[\"" LA LA "\"],\"leases_seen\":null,"
                       "\"created\":\"2026-01-01T00:00:00Z\"}");
    write_raw(f, "gc/other", "not ours");
    g_assert_cmpint(vb_condemned_read_all(f->s, &all, &e), ==, 0);
    g_assert_cmpuint(all->len, ==, 1);
    g_assert_null(((struct vb_condemned *)all->pdata[0])->leases_seen);
    g_assert_false(vb_condemned_may_delete(all->pdata[0], NULL, 0, INT64_MAX, 1, NULL));
    g_ptr_array_free(all, TRUE);

    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        write_raw(f, name, bad[i].content);
        g_assert_cmpint(vb_condemned_read_all(f->s, &all, &e), ==, -EBADMSG);
        g_assert_null(all);
        if (!strstr(e.msg, bad[i].why) || !strstr(e.msg, name))
            g_error("case %zu: '%s' does not say '%s'", i, e.msg, bad[i].why);
    }
}

/* ---- the maintenance lock ------------------------------------------------------ */

static void test_maint_lock(struct fx *f, gconstpointer data)
{
    struct vb_maint_lock l, l2;
    struct vb_maint_holder h;
    struct vb_obj_info oi;
    vb_error e = { 0 };
    char token[33];

    g_assert_cmpint(vb_maint_lock_take(f->s, "gc", 30 * MINUTE, &l, &h, &e), ==, 0);
    g_assert_cmpint(vb_store_stat(f->s, "locks/maintenance", &oi, &e), ==, 0);
    g_assert_cmpint(l.stamp_ns, ==, oi.mtime_ns);

    /* held and live: busy, naming the holder */
    g_assert_cmpint(vb_maint_lock_take(f->s, "prune", 30 * MINUTE, &l2, &h, &e), ==, -EBUSY);
    g_assert_cmpstr(h.owner.kind, ==, "gc");
    g_assert_cmpint(h.owner.pid, ==, getpid());
    g_assert_cmpstr(h.token, ==, l.token);
    g_assert_cmpint(h.expiry_ns, ==, 30 * MINUTE);
    g_assert_false(h.stale);
    g_assert_nonnull(strstr(e.msg, "maintenance is running: gc by host"));
    g_assert_cmpint(vb_maint_lock_break(f->s, l.token, &e), ==, -EBUSY);

    /* the holder refreshes */
    set_mtime(f, "locks/maintenance", l.stamp_ns - 20 * MINUTE);
    g_assert_cmpint(vb_maint_lock_refresh(f->s, &l, 5 * MINUTE, &e), ==, 0);
    g_assert_cmpint(vb_store_stat(f->s, "locks/maintenance", &oi, &e), ==, 0);
    g_assert_cmpint(oi.mtime_ns, ==, l.stamp_ns);

    /* it stops refreshing: stale, reported, never broken by take */
    set_mtime(f, "locks/maintenance", l.stamp_ns - 31 * MINUTE);
    g_assert_cmpint(vb_maint_lock_take(f->s, "prune", 30 * MINUTE, &l2, &h, &e), ==, -ESTALE);
    g_assert_true(h.stale);
    g_assert_cmpint(h.age_ns, >=, 31 * MINUTE);
    g_assert_nonnull(strstr(e.msg, "stale"));
    g_assert_nonnull(strstr(e.msg, l.token));
    g_assert_cmpint(vb_maint_lock_take(f->s, "prune", 30 * MINUTE, &l2, NULL, &e), ==, -ESTALE);

    /* broken only explicitly, and only the lock that was reported */
    memcpy(token, h.token, sizeof(token));
    g_assert_cmpint(vb_maint_lock_break(f->s, "00000000000000000000000000000000", &e), ==,
                    -ESTALE);
    g_assert_cmpint(vb_maint_lock_break(f->s, token, &e), ==, 0);
    g_assert_cmpint(vb_maint_lock_break(f->s, token, &e), ==, -ENOENT);
    g_assert_cmpint(vb_maint_lock_take(f->s, "prune", 30 * MINUTE, &l2, &h, &e), ==, 0);

    /* the old holder finds out */
    g_assert_cmpint(vb_maint_lock_refresh(f->s, &l, 5 * MINUTE, &e), ==, -ESTALE);
    g_assert_nonnull(strstr(e.msg, "now held by prune"));
    g_assert_cmpint(vb_maint_lock_release(f->s, &l, &e), ==, -ESTALE);
    /* and a holder that may have expired by its own clock stops */
    l2.mono_ns = vb_lease_mono_now() - 26 * MINUTE;
    g_assert_cmpint(vb_maint_lock_refresh(f->s, &l2, 5 * MINUTE, &e), ==, -ESTALE);
    g_assert_cmpint(vb_maint_lock_release(f->s, &l2, &e), ==, 0);
    g_assert_cmpint(vb_maint_lock_release(f->s, &l2, &e), ==, -ESTALE);
    g_assert_cmpint(vb_store_stat(f->s, "locks/maintenance", &oi, &e), ==, -ENOENT);
}

static void test_maint_lock_damaged(struct fx *f, gconstpointer data)
{
    struct vb_maint_lock l;
    vb_error e = { 0 };

    write_raw(f, "locks/maintenance", "{\"host\":\"h\",\"pid\":1,\"kind\":\"gc\","
              "\"created\":\"2026-01-01T00:00:00Z\",\"token\":\"xyz\",\"expiry_s\":60}");
    g_assert_cmpint(vb_maint_lock_take(f->s, "gc", MINUTE, &l, NULL, &e), ==, -EBADMSG);
    g_assert_nonnull(strstr(e.msg, "locks/maintenance: damaged (field 'token'"));
    write_raw(f, "locks/maintenance", "{\"host\":\"h\",\"pid\":1,\"kind\":\"gc\","
              "\"created\":\"2026-01-01T00:00:00Z\",\"token\":\"" LA "\",\"expiry_s\":0}");
    g_assert_cmpint(vb_maint_lock_take(f->s, "gc", MINUTE, &l, NULL, &e), ==, -EBADMSG);
    g_assert_nonnull(strstr(e.msg, "'expiry_s' out of range"));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/repo-lease/live", test_live);
    g_test_add_func("/repo-lease/safe", test_safe);
    g_test_add_func("/repo-lease/may-delete", test_may_delete);
    g_test_add("/repo-lease/store/lease", struct fx, NULL, setup, test_lease_store, teardown);
    g_test_add("/repo-lease/store/lease-damaged", struct fx, NULL, setup, test_lease_damaged,
               teardown);
    g_test_add("/repo-lease/store/store-now", struct fx, NULL, setup, test_store_now, teardown);
    g_test_add("/repo-lease/store/condemn", struct fx, NULL, setup, test_condemn, teardown);
    g_test_add("/repo-lease/store/condemned-read", struct fx, NULL, setup, test_condemned_read,
               teardown);
    g_test_add("/repo-lease/store/maint-lock", struct fx, NULL, setup, test_maint_lock,
               teardown);
    g_test_add("/repo-lease/store/maint-lock-damaged", struct fx, NULL, setup,
               test_maint_lock_damaged, teardown);
    return g_test_run();
}
