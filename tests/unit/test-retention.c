/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of the retention planner (hostd/lib/retention.c): fixed cases
 * on leap days, year and ISO-week boundaries and DST changes, then every
 * day of a leap year as "today" in several time zones against a reference
 * that knows each snapshot's calendar date because it built it.  No test
 * here reads the clock.
 */
#include <glib.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "retention.h"

#define B(rule) (1u << (rule))

static void set_tz(const char *tz)
{
    setenv("TZ", tz, 1);
    tzset();
}

/* seconds since the epoch of a local time; tm_isdst as given (-1: let mktime decide) */
static int64_t local_ns(int y, int mo, int d, int h, int mi, int isdst, struct tm *norm)
{
    struct tm tm = { .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h,
                     .tm_min = mi, .tm_isdst = isdst };
    time_t t = mktime(&tm);

    g_assert_true(t != (time_t)-1);
    if (norm)
        *norm = tm;
    return (int64_t)t * 1000000000;
}

static void plan(const struct vb_retention *p, const int64_t *t, size_t n, unsigned *k)
{
    /* the planner wants newest first: check the caller's fixture is */
    for (size_t i = 1; i < n; i++)
        g_assert_cmpint(t[i - 1], >=, t[i]);
    vb_retention_plan(p, t, n, k);
}

static void test_leap_day(void)
{
    struct vb_retention p = { .keep = { [VB_KEEP_DAILY] = 3 } };
    int64_t t[5];
    unsigned k[5];

    set_tz("UTC");
    t[0] = local_ns(2028, 3, 1, 0, 10, -1, NULL);
    t[1] = local_ns(2028, 2, 29, 22, 0, -1, NULL);
    t[2] = local_ns(2028, 2, 29, 1, 0, -1, NULL);
    t[3] = local_ns(2028, 2, 28, 23, 0, -1, NULL);
    t[4] = local_ns(2028, 2, 27, 23, 0, -1, NULL);
    plan(&p, t, 5, k);
    g_assert_cmpuint(k[0], ==, B(VB_KEEP_DAILY));
    g_assert_cmpuint(k[1], ==, B(VB_KEEP_DAILY));
    g_assert_cmpuint(k[2], ==, 0);       /* same day as k[1], older */
    g_assert_cmpuint(k[3], ==, B(VB_KEEP_DAILY));
    g_assert_cmpuint(k[4], ==, 0);       /* a fourth day */

    /* monthly: Feb 29 is February's newest once March has its own */
    struct vb_retention m = { .keep = { [VB_KEEP_MONTHLY] = 2 } };
    plan(&m, t, 5, k);
    g_assert_cmpuint(k[0], ==, B(VB_KEEP_MONTHLY));
    g_assert_cmpuint(k[1], ==, B(VB_KEEP_MONTHLY));
    g_assert_cmpuint(k[2] | k[3] | k[4], ==, 0);
}

static void test_iso_weeks_across_years(void)
{
    struct vb_retention p = { .keep = { [VB_KEEP_WEEKLY] = 2, [VB_KEEP_YEARLY] = 2 } };
    int64_t t[4];
    unsigned k[4];
    char b[48];

    set_tz("UTC");
    /* 2027-01-03 is a Sunday in ISO week 2026-W53, like 2026-12-28 (Monday) */
    t[0] = local_ns(2027, 1, 4, 9, 0, -1, NULL);   /* Monday: 2027-W01 */
    t[1] = local_ns(2027, 1, 3, 9, 0, -1, NULL);   /* 2026-W53 */
    t[2] = local_ns(2026, 12, 31, 9, 0, -1, NULL); /* 2026-W53 */
    t[3] = local_ns(2026, 12, 27, 9, 0, -1, NULL); /* Sunday: 2026-W52 */
    g_assert_cmpint(vb_retention_bucket(VB_KEEP_WEEKLY, t[1], b, sizeof(b)), ==, 0);
    g_assert_cmpstr(b, ==, "2026-W53");
    g_assert_cmpint(vb_retention_bucket(VB_KEEP_WEEKLY, t[0], b, sizeof(b)), ==, 0);
    g_assert_cmpstr(b, ==, "2027-W01");
    plan(&p, t, 4, k);
    g_assert_cmpuint(k[0], ==, B(VB_KEEP_WEEKLY) | B(VB_KEEP_YEARLY));
    g_assert_cmpuint(k[1], ==, B(VB_KEEP_WEEKLY));  /* 2026-W53's newest, though in 2027 */
    g_assert_cmpuint(k[2], ==, B(VB_KEEP_YEARLY));  /* 2026's newest */
    g_assert_cmpuint(k[3], ==, 0);
}

static void test_dst_fall_back(void)
{
    /* New York, 2028-11-05: 01:00-01:59 happens twice (EDT, then EST) */
    struct vb_retention p = { .keep = { [VB_KEEP_HOURLY] = 3, [VB_KEEP_DAILY] = 1 } };
    int64_t t[4];
    unsigned k[4];
    char b1[48], b2[48];

    set_tz("America/New_York");
    t[3] = local_ns(2028, 11, 5, 1, 10, 1, NULL);  /* 01:10 EDT */
    t[2] = local_ns(2028, 11, 5, 1, 40, 1, NULL);  /* 01:40 EDT */
    t[1] = local_ns(2028, 11, 5, 1, 20, 0, NULL);  /* 01:20 EST, an hour later than 01:20 EDT */
    t[0] = local_ns(2028, 11, 5, 2, 5, 0, NULL);
    g_assert_cmpint(t[1] - t[3], ==, (int64_t)(3600 + 600) * 1000000000);
    vb_retention_bucket(VB_KEEP_HOURLY, t[2], b1, sizeof(b1));
    vb_retention_bucket(VB_KEEP_HOURLY, t[1], b2, sizeof(b2));
    g_assert_cmpstr(b1, !=, b2);
    plan(&p, t, 4, k);
    g_assert_cmpuint(k[0], ==, B(VB_KEEP_HOURLY) | B(VB_KEEP_DAILY));
    g_assert_cmpuint(k[1], ==, B(VB_KEEP_HOURLY));   /* the second 01:xx hour */
    g_assert_cmpuint(k[2], ==, B(VB_KEEP_HOURLY));   /* the first 01:xx hour's newest */
    g_assert_cmpuint(k[3], ==, 0);
}

static void test_dst_spring_forward(void)
{
    /* Berlin, 2028-03-26: 02:00 -> 03:00, a 23-hour day */
    struct vb_retention p = { .keep = { [VB_KEEP_DAILY] = 2 } };
    int64_t t[4];
    unsigned k[4];

    set_tz("Europe/Berlin");
    t[0] = local_ns(2028, 3, 26, 23, 30, -1, NULL);
    t[1] = local_ns(2028, 3, 26, 0, 30, -1, NULL);
    t[2] = local_ns(2028, 3, 25, 23, 59, -1, NULL);
    t[3] = local_ns(2028, 3, 25, 0, 1, -1, NULL);
    g_assert_cmpint(t[0] - t[1], ==, (int64_t)22 * 3600 * 1000000000);
    plan(&p, t, 4, k);
    g_assert_cmpuint(k[0], ==, B(VB_KEEP_DAILY));
    g_assert_cmpuint(k[1], ==, 0);
    g_assert_cmpuint(k[2], ==, B(VB_KEEP_DAILY));
    g_assert_cmpuint(k[3], ==, 0);

    /* the same instants in UTC fall on other days: the zone decides */
    char b[48];
    set_tz("UTC");
    vb_retention_bucket(VB_KEEP_DAILY, t[1], b, sizeof(b));
    g_assert_cmpstr(b, ==, "2028-03-25");
}

static void test_before_1970_and_last(void)
{
    struct vb_retention p = { .keep = { [VB_KEEP_LAST] = 1, [VB_KEEP_YEARLY] = -1 } };
    int64_t t[3] = { 1000000000, -1, -(int64_t)86400 * 366 * 1000000000 - 1 };
    unsigned k[3];
    char b[48];

    set_tz("UTC");
    g_assert_cmpint(vb_retention_bucket(VB_KEEP_DAILY, -1, b, sizeof(b)), ==, 0);
    g_assert_cmpstr(b, ==, "1969-12-31");
    g_assert_cmpint(vb_retention_bucket(VB_KEEP_DAILY, 0, b, sizeof(b)), ==, 0);
    g_assert_cmpstr(b, ==, "1970-01-01");
    g_assert_cmpint(vb_retention_bucket(VB_KEEP_LAST, 0, b, sizeof(b)), <, 0);
    plan(&p, t, 3, k);
    g_assert_cmpuint(k[0], ==, B(VB_KEEP_LAST) | B(VB_KEEP_YEARLY));
    g_assert_cmpuint(k[1], ==, B(VB_KEEP_YEARLY));   /* 1969 */
    g_assert_cmpuint(k[2], ==, B(VB_KEEP_YEARLY));   /* 1968 */

    struct vb_retention none = { 0 };
    g_assert_false(vb_retention_any(&none));
    g_assert_true(vb_retention_any(&p));
}

/* ---- the plan of many groups (prune on either repository format) ------------- */

static void test_plan_groups(void)
{
    struct vb_retention p = { .keep = { [VB_KEEP_LAST] = 1, [VB_KEEP_DAILY] = 2 } };
    const int64_t h = INT64_C(3600) * 1000000000, day = 24 * h;
    /* oldest first as listed, but not sorted; two VMs, two disks of one, a
     * files group whose name equals a disk's, and two snapshots of one time */
    const struct vb_retention_snap s[] = {
        { "a/1", "a", "disk", "disk:vda", 10 * day + 12 * h },
        { "b/1", "b", "disk", "disk:vda", 10 * day + 12 * h },
        { "a/2", "a", "disk", "disk:vda", 11 * day + 12 * h },
        { "a/3", "a", "disk", "disk:vdb", 11 * day + 13 * h },
        { "a/4", "a", "disk", "disk:vda", 12 * day + 10 * h },
        { "a/5", "a", "disk", "disk:vda", 12 * day + 11 * h },
        { "a/6", "a", "files", "disk:vda", 1 * day + 12 * h },
        { "a/7", "a", "disk", "disk:vdb", 11 * day + 13 * h },   /* the same time as a/3 */
        { "a/8", "a", "disk", "disk:vda", 9 * day },
    };
    /* in byte order of (vm, type, group), each group newest first */
    const struct { const char *id; unsigned keep; } want[] = {
        { "a/5", B(VB_KEEP_LAST) | B(VB_KEEP_DAILY) },
        { "a/4", 0 },                                     /* day 12 has a/5 */
        { "a/2", B(VB_KEEP_DAILY) },
        { "a/1", 0 },                                     /* a third day */
        { "a/8", 0 },
        { "a/7", B(VB_KEEP_LAST) | B(VB_KEEP_DAILY) },    /* later in the list: newer */
        { "a/3", 0 },
        { "a/6", B(VB_KEEP_LAST) | B(VB_KEEP_DAILY) },
        { "b/1", B(VB_KEEP_LAST) | B(VB_KEEP_DAILY) },
    };
    unsigned keeps[G_N_ELEMENTS(s)];
    json_object *plan;

    for (int pass = 0; pass < 2; pass++) {
        /* the same answer in a zone far from UTC: no time is near midnight there */
        set_tz(pass ? "JST-9" : "UTC0");
        memset(keeps, 0xff, sizeof(keeps));
        plan = vb_retention_plan_groups(&p, s, G_N_ELEMENTS(s), keeps);
        g_assert_nonnull(plan);
        g_assert_cmpuint(json_object_array_length(plan), ==, G_N_ELEMENTS(want));
        for (size_t i = 0; i < G_N_ELEMENTS(want); i++) {
            json_object *x = json_object_array_get_idx(plan, i), *v;
            unsigned bits = 0;

            g_assert_true(json_object_object_get_ex(x, "id", &v));
            g_assert_cmpstr(json_object_get_string(v), ==, want[i].id);
            g_assert_true(json_object_object_get_ex(x, "keep", &v));
            g_assert_cmpint(json_object_get_boolean(v), ==, want[i].keep != 0);
            g_assert_true(json_object_object_get_ex(x, "reasons", &v));
            for (size_t j = 0; j < json_object_array_length(v); j++) {
                const char *r = json_object_get_string(json_object_array_get_idx(v, j));
                for (int k = 0; k < VB_KEEP_N_RULES; k++)
                    if (!strcmp(r, vb_keep_rule_name((enum vb_keep_rule)k)))
                        bits |= B(k);
            }
            g_assert_cmpuint(bits, ==, want[i].keep);
            /* keeps[] in the caller's order says the same */
            for (size_t j = 0; j < G_N_ELEMENTS(s); j++)
                if (!strcmp(s[j].id, want[i].id))
                    g_assert_cmpuint(keeps[j], ==, want[i].keep);
        }
        json_object_put(plan);
    }

    /* nothing to plan: an empty array */
    plan = vb_retention_plan_groups(&p, NULL, 0, NULL);
    g_assert_nonnull(plan);
    g_assert_cmpuint(json_object_array_length(plan), ==, 0);
    json_object_put(plan);
}

/* ---- every day of 2028 as "today", several zones ---------------------------- */

struct snap {
    int64_t t;
    int y, mo, d, h, isdst, wy, wk;   /* as built: local calendar fields */
};

static void iso_week(int y, int mo, int d, int *wy, int *wk)
{
    GDate *g = g_date_new_dmy((GDateDay)d, (GDateMonth)mo, (GDateYear)y);

    *wk = (int)g_date_get_iso8601_week_of_year(g);
    *wy = y;
    if (*wk >= 52 && mo == 1)
        *wy = y - 1;
    else if (*wk == 1 && mo == 12)
        *wy = y + 1;
    g_date_free(g);
}

static int cmp_newest_first(const void *a, const void *b)
{
    const struct snap *x = a, *y = b;

    return x->t < y->t ? 1 : x->t > y->t ? -1 : 0;
}

/* the reference: newest of each of the last n distinct keys (keys compare as tuples) */
static void reference(const struct snap *s, size_t n, int rule, int keep, unsigned *k)
{
    int seen = 0;

    for (size_t i = 0; i < n; i++) {
        bool newbucket = true;
        if (i > 0) {
            const struct snap *a = &s[i - 1], *b = &s[i];
            switch (rule) {
            case VB_KEEP_HOURLY:
                newbucket = !(a->y == b->y && a->mo == b->mo && a->d == b->d && a->h == b->h &&
                              a->isdst == b->isdst);
                break;
            case VB_KEEP_DAILY:
                newbucket = !(a->y == b->y && a->mo == b->mo && a->d == b->d);
                break;
            case VB_KEEP_WEEKLY:
                newbucket = !(a->wy == b->wy && a->wk == b->wk);
                break;
            case VB_KEEP_MONTHLY:
                newbucket = !(a->y == b->y && a->mo == b->mo);
                break;
            default:
                newbucket = a->y != b->y;
            }
        }
        if (newbucket && ++seen <= keep)
            k[i] |= 1u << rule;
    }
}

static void test_every_day_of_a_year(void)
{
    static const char *zones[] = { "UTC", "Europe/Berlin", "America/New_York",
                                   "Australia/Lord_Howe", "Asia/Kolkata", "Pacific/Chatham" };
    /* snapshot times relative to "today": days back, hour, minute */
    static const int rel[][3] = {
        { 400, 12, 0 }, { 370, 0, 5 }, { 40, 12, 0 }, { 35, 23, 59 }, { 12, 12, 0 },
        { 11, 12, 0 }, { 8, 0, 0 }, { 7, 23, 59 }, { 2, 10, 0 }, { 2, 23, 30 }, { 1, 1, 30 },
        { 1, 2, 30 }, { 1, 3, 30 }, { 0, 0, 30 }, { 0, 1, 15 }, { 0, 1, 45 }, { 0, 23, 59 },
    };
    const size_t n = G_N_ELEMENTS(rel);
    const int rules[][2] = { { VB_KEEP_HOURLY, 4 }, { VB_KEEP_DAILY, 3 }, { VB_KEEP_WEEKLY, 2 },
                             { VB_KEEP_MONTHLY, 2 }, { VB_KEEP_YEARLY, 1 } };
    unsigned checked = 0;

    for (size_t z = 0; z < G_N_ELEMENTS(zones); z++) {
        set_tz(zones[z]);
        for (int day = 0; day < 366; day++) {      /* 2028 is a leap year */
            struct snap s[G_N_ELEMENTS(rel)];
            int64_t t[G_N_ELEMENTS(rel)];
            unsigned got[G_N_ELEMENTS(rel)], want[G_N_ELEMENTS(rel)];

            for (size_t i = 0; i < n; i++) {
                struct tm tm;
                s[i].t = local_ns(2028, 1, 1 + day - rel[i][0], rel[i][1], rel[i][2], -1, &tm);
                s[i].y = tm.tm_year + 1900;
                s[i].mo = tm.tm_mon + 1;
                s[i].d = tm.tm_mday;
                s[i].h = tm.tm_hour;
                s[i].isdst = tm.tm_isdst > 0;
                iso_week(s[i].y, s[i].mo, s[i].d, &s[i].wy, &s[i].wk);
            }
            qsort(s, n, sizeof(s[0]), cmp_newest_first);
            for (size_t i = 0; i < n; i++)
                t[i] = s[i].t;
            for (size_t r = 0; r < G_N_ELEMENTS(rules); r++) {
                struct vb_retention p = { 0 };
                p.keep[rules[r][0]] = rules[r][1];
                memset(want, 0, sizeof(want));
                reference(s, n, rules[r][0], rules[r][1], want);
                plan(&p, t, n, got);
                for (size_t i = 0; i < n; i++) {
                    if (got[i] != want[i]) {
                        g_printerr("zone %s, today 2028 day %d, rule %s %d: snapshot "
                                   "%04d-%02d-%02d %02d h (dst %d, week %d-W%02d): kept %u, "
                                   "expected %u\n",
                                   zones[z], day + 1, vb_keep_rule_name(rules[r][0]),
                                   rules[r][1], s[i].y, s[i].mo, s[i].d, s[i].h, s[i].isdst,
                                   s[i].wy, s[i].wk, got[i], want[i]);
                        g_assert_not_reached();
                    }
                }
                checked++;
            }
        }
    }
    g_assert_cmpuint(checked, ==, G_N_ELEMENTS(zones) * 366 * G_N_ELEMENTS(rules));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/retention/leap-day", test_leap_day);
    g_test_add_func("/retention/iso-weeks-across-years", test_iso_weeks_across_years);
    g_test_add_func("/retention/dst-fall-back", test_dst_fall_back);
    g_test_add_func("/retention/dst-spring-forward", test_dst_spring_forward);
    g_test_add_func("/retention/before-1970-and-last", test_before_1970_and_last);
    g_test_add_func("/retention/every-day-of-2028", test_every_day_of_a_year);
    g_test_add_func("/retention/plan-groups", test_plan_groups);
    return g_test_run();
}
