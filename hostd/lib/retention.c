/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "retention.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const rule_names[VB_KEEP_N_RULES] = {
    "last", "hourly", "daily", "weekly", "monthly", "yearly",
};

const char *vb_keep_rule_name(enum vb_keep_rule r)
{
    return (unsigned)r < VB_KEEP_N_RULES ? rule_names[r] : "?";
}

int vb_retention_any(const struct vb_retention *p)
{
    for (int k = 0; k < VB_KEEP_N_RULES; k++)
        if (p->keep[k])
            return 1;
    return 0;
}

int vb_retention_bucket(enum vb_keep_rule r, int64_t t_ns, char *out, size_t len)
{
    /* floor division: -1 ns is the last second of 1969, not 1970-01-01T00:00:00 */
    int64_t sec = t_ns / 1000000000 - (t_ns % 1000000000 < 0);
    time_t t = (time_t)sec;
    struct tm tm;

    if (!localtime_r(&t, &tm))
        return -ERANGE;
    switch (r) {
    case VB_KEEP_HOURLY:
        /* tm_isdst separates the two 01:xx hours of a fall-back night */
        snprintf(out, len, "%04lld-%02d-%02dT%02d%s", (long long)tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_isdst > 0 ? "+dst" : "");
        return 0;
    case VB_KEEP_DAILY:
        snprintf(out, len, "%04lld-%02d-%02d", (long long)tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday);
        return 0;
    case VB_KEEP_WEEKLY:
        /* %G/%V: the ISO week-numbering year and week (Jan 1 may be in the
         * previous year's week 52/53, Dec 31 in the next year's week 1) */
        if (!strftime(out, len, "%G-W%V", &tm))
            return -ERANGE;
        return 0;
    case VB_KEEP_MONTHLY:
        snprintf(out, len, "%04lld-%02d", (long long)tm.tm_year + 1900, tm.tm_mon + 1);
        return 0;
    case VB_KEEP_YEARLY:
        snprintf(out, len, "%04lld", (long long)tm.tm_year + 1900);
        return 0;
    default:
        return -EINVAL;
    }
}

void vb_retention_plan(const struct vb_retention *p, const int64_t *times_ns, size_t n,
                       unsigned *keeps)
{
    memset(keeps, 0, n * sizeof(*keeps));
    for (size_t i = 0; i < n; i++)
        if (p->keep[VB_KEEP_LAST] < 0 || i < (size_t)p->keep[VB_KEEP_LAST])
            keeps[i] |= 1u << VB_KEEP_LAST;

    for (int k = VB_KEEP_HOURLY; k < VB_KEEP_N_RULES; k++) {
        char prev[48] = "", b[48];
        long seen = 0;
        int have_prev = 0;

        if (!p->keep[k])
            continue;
        /* newest first: the first snapshot of each new bucket is that
         * bucket's newest; keep it while fewer than N buckets were seen */
        for (size_t i = 0; i < n; i++) {
            if (vb_retention_bucket((enum vb_keep_rule)k, times_ns[i], b, sizeof(b)) < 0) {
                keeps[i] |= 1u << k;
                continue;
            }
            if (have_prev && !strcmp(b, prev))
                continue;
            have_prev = 1;
            snprintf(prev, sizeof(prev), "%s", b);
            seen++;
            if (p->keep[k] < 0 || seen <= p->keep[k])
                keeps[i] |= 1u << k;
        }
    }
}

/* snapshots of one group together (byte order of vm, type, group), each
 * group newest first */
static int cmp_group_newest(const void *a, const void *b)
{
    const struct vb_retention_snap *x = *(const struct vb_retention_snap *const *)a;
    const struct vb_retention_snap *y = *(const struct vb_retention_snap *const *)b;
    int c = strcmp(x->vm, y->vm);

    if (!c)
        c = strcmp(x->type, y->type);
    if (!c)
        c = strcmp(x->group, y->group);
    if (!c && x->created_ns != y->created_ns)
        c = x->created_ns > y->created_ns ? -1 : 1;
    if (!c && x != y)
        c = x > y ? -1 : 1;                 /* later in snaps: newer */
    return c;
}

static int same_group(const struct vb_retention_snap *x, const struct vb_retention_snap *y)
{
    return !strcmp(x->vm, y->vm) && !strcmp(x->type, y->type) && !strcmp(x->group, y->group);
}

json_object *vb_retention_plan_groups(const struct vb_retention *p,
                                      const struct vb_retention_snap *snaps, size_t n,
                                      unsigned *keeps)
{
    const struct vb_retention_snap **order = calloc(n ? n : 1, sizeof(*order));
    int64_t *times = calloc(n ? n : 1, sizeof(*times));
    unsigned *k = calloc(n ? n : 1, sizeof(*k));
    json_object *out = json_object_new_array();

    if (!order || !times || !k || !out) {
        free(order);
        free(times);
        free(k);
        json_object_put(out);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        order[i] = &snaps[i];
    qsort(order, n, sizeof(*order), cmp_group_newest);
    for (size_t start = 0, end; start < n; start = end) {
        for (end = start; end < n && same_group(order[start], order[end]); end++)
            times[end - start] = order[end]->created_ns;
        vb_retention_plan(p, times, end - start, k + start);
    }
    for (size_t i = 0; i < n; i++) {
        json_object *reasons = json_object_new_array(), *o = json_object_new_object();

        for (int r = 0; r < VB_KEEP_N_RULES; r++)
            if (k[i] & (1u << r))
                json_object_array_add(reasons, json_object_new_string(
                    vb_keep_rule_name((enum vb_keep_rule)r)));
        json_object_object_add(o, "id", json_object_new_string(order[i]->id));
        json_object_object_add(o, "keep", json_object_new_boolean(k[i] != 0));
        json_object_object_add(o, "reasons", reasons);
        json_object_array_add(out, o);
        if (keeps)
            keeps[order[i] - snaps] = k[i];
    }
    free(order);
    free(times);
    free(k);
    return out;
}
