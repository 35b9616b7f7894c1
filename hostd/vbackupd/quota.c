/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Quotas: what each VM may add to the repositories ([vm NAME] keys, and
 * [libvirt] for the domains found there; 0 is no limit):
 *
 *   max_job_bytes      repository bytes one backup job may add
 *   max_total_bytes    bytes the VM's snapshots in one target may hold, all
 *                      told (what each added when it was made), with its
 *                      running jobs
 *   max_bytes_per_day  repository bytes its jobs may add in any 24 hours
 *   max_jobs_per_day   backup jobs it may begin in any 24 hours
 *
 * "Bytes added" are what a job's write session stores: new chunks as
 * written (compressed) and the snapshot's files (catalog, index), charged
 * before they are written (session.h), so a refused chunk never reaches the
 * disk.  A job over a quota fails saying which; BEGIN is refused (status
 * VB_S_QUOTA) when a daily quota is used up or the total reached.
 *
 * A day is the last 24 hours, counted in hour-long buckets (a job's bytes
 * leave the count between 23 and 24 hours later), by one clock:
 * vbd_quota_now(), the wall clock, which tests may shift
 * (VBACKUPD_TEST_CLOCK_OFFSET, seconds).  For VMs with a daily quota the
 * buckets are kept in <state_dir>/quota/<vm>.json, replaced atomically
 * (write, fsync, rename): when a job begins and ends, and while it stores
 * data, ahead of use (by a sixteenth of the daily quota, at most 64 MiB), so
 * a crash never counts less than was written.  The total is the sum of what
 * the VM's snapshots in the target added ("added_bytes"), taken from the
 * snapshot index (snapindex.c, listed on a worker) when a job begins: BEGIN
 * of a VM with max_total_bytes is answered once that came back.
 * docs/vbackupd.md, "Quotas".
 */
#include "vbackupd.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HOUR_NS (3600LL * 1000000000)
#define DAY_HOURS 24
#define RESERVE (64ull << 20)

struct hour {
    int64_t hour;            /* hours since the epoch */
    uint64_t jobs, bytes;
};

/* One VM's use, by name (a VM removed and added again keeps it). */
struct vbd_acct {
    gint refs;
    char *vm;
    char *path;              /* <state_dir>/quota/<vm>.json */
    GMutex mu;               /* everything below: charges come from worker threads */
    GArray *hours;           /* struct hour, oldest first */
    uint64_t written;        /* day bytes the file counts (use + reserve) */
    bool persist;            /* the VM has a daily quota: its use is written down */
    GHashTable *running;     /* target name → uint64_t * bytes of unfinished jobs */
    GHashTable *committed;   /* target name → uint64_t * bytes its snapshots there hold */
    uint64_t commits;        /* jobs that ended done: a listing older than one lacks it */
};

/* One job's charges. */
struct vbd_charge {
    gint refs;
    struct vbd_acct *a;
    struct vbd_quota q;
    char *target;
    uint64_t used;           /* bytes the job added (under a->mu) */
    bool ended;
    char why[256];           /* the quota that refused it */
};

static int64_t clock_offset_ns;

int64_t vbd_quota_now(void)
{
    return vb_wall_ns() + clock_offset_ns;
}

/* ---- accounts -------------------------------------------------------------------- */

static void acct_unref(struct vbd_acct *a)
{
    if (!g_atomic_int_dec_and_test(&a->refs))
        return;
    g_free(a->vm);
    g_free(a->path);
    g_mutex_clear(&a->mu);
    g_array_free(a->hours, TRUE);
    g_hash_table_destroy(a->running);
    g_hash_table_destroy(a->committed);
    g_free(a);
}

static uint64_t *per_target(GHashTable *h, const char *target)
{
    uint64_t *v = g_hash_table_lookup(h, target);

    if (!v) {
        v = g_new0(uint64_t, 1);
        g_hash_table_insert(h, g_strdup(target), v);
    }
    return v;
}

/* Under a->mu: drop hours older than a day; the use of the last 24 hours. */
static void day_use(struct vbd_acct *a, int64_t now, uint64_t *jobs, uint64_t *bytes)
{
    int64_t h = now / HOUR_NS;
    guint keep = 0;

    while (keep < a->hours->len &&
           g_array_index(a->hours, struct hour, keep).hour <= h - DAY_HOURS)
        keep++;
    g_array_remove_range(a->hours, 0, keep);
    *jobs = *bytes = 0;
    /* hours after now (a clock set back) count too */
    for (guint i = 0; i < a->hours->len; i++) {
        *jobs += g_array_index(a->hours, struct hour, i).jobs;
        *bytes += g_array_index(a->hours, struct hour, i).bytes;
    }
}

/* Under a->mu: the bucket of this hour. */
static struct hour *this_hour(struct vbd_acct *a, int64_t now)
{
    struct hour x = { .hour = now / HOUR_NS };

    for (guint i = a->hours->len; i-- > 0;)
        if (g_array_index(a->hours, struct hour, i).hour == x.hour)
            return &g_array_index(a->hours, struct hour, i);
    g_array_append_val(a->hours, x);
    return &g_array_index(a->hours, struct hour, a->hours->len - 1);
}

/* Under a->mu: write the buckets down, this hour's bytes RESERVE ahead. */
static void acct_write(struct vbd_acct *a, uint64_t reserve)
{
    json_object *o = json_object_new_object(), *hs = json_object_new_array();
    int64_t now = vbd_quota_now();
    uint64_t jobs, bytes;
    g_autofree char *dir = g_path_get_dirname(a->path);
    vb_error e = { 0 };
    const char *s;
    int ret;

    day_use(a, now, &jobs, &bytes);
    this_hour(a, now);
    for (guint i = 0; i < a->hours->len; i++) {
        struct hour *x = &g_array_index(a->hours, struct hour, i);
        json_object *t = json_object_new_array();
        json_object_array_add(t, json_object_new_int64(x->hour));
        json_object_array_add(t, json_object_new_int64((int64_t)x->jobs));
        json_object_array_add(t, json_object_new_int64((int64_t)(x->bytes +
                                  (i == a->hours->len - 1 ? reserve : 0))));
        json_object_array_add(hs, t);
    }
    json_object_object_add(o, "vm", json_object_new_string(a->vm));
    json_object_object_add(o, "hours", hs);
    s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
    ret = vb_mkdir_p(dir, 0700);
    if (ret)
        vb_seterr(&e, ret, "mkdir %s: %s", dir, strerror(-ret));
    else
        ret = vb_write_file_atomic(a->path, s, strlen(s), false, &e);
    json_object_put(o);
    if (ret) {
        /* the quota still holds while vbackupd runs; a restart would forget */
        vbd_log("VM %s: the quota's use cannot be written down: %s", a->vm, vb_strerror(&e));
        return;
    }
    a->written = bytes + reserve;
}

static void acct_read(struct vbd_acct *a)
{
    char *data = NULL;
    json_object *o, *hs;
    int ret = vb_read_file(a->path, &data, NULL, 1 << 20, NULL);

    if (ret == -ENOENT)
        return;
    o = ret ? NULL : json_tokener_parse(data);
    free(data);
    if (!o || !json_object_object_get_ex(o, "hours", &hs) ||
        !json_object_is_type(hs, json_type_array)) {
        vbd_log("VM %s: %s cannot be read; its use of the daily quotas starts from zero",
                a->vm, a->path);
        json_object_put(o);
        return;
    }
    for (size_t i = 0; i < json_object_array_length(hs); i++) {
        json_object *t = json_object_array_get_idx(hs, i);
        struct hour x;
        bool ok = json_object_is_type(t, json_type_array) && json_object_array_length(t) == 3;
        for (size_t k = 0; ok && k < 3; k++)
            ok = json_object_is_type(json_object_array_get_idx(t, k), json_type_int) &&
                 json_object_get_int64(json_object_array_get_idx(t, k)) >= 0;
        if (!ok)
            continue;
        x.hour = json_object_get_int64(json_object_array_get_idx(t, 0));
        x.jobs = (uint64_t)json_object_get_int64(json_object_array_get_idx(t, 1));
        x.bytes = (uint64_t)json_object_get_int64(json_object_array_get_idx(t, 2));
        if (a->hours->len && x.hour <= g_array_index(a->hours, struct hour,
                                                      a->hours->len - 1).hour)
            continue;           /* not in order: not written by us */
        g_array_append_val(a->hours, x);
    }
    json_object_put(o);
}

static struct vbd_acct *acct_of(struct vbd *d, const char *vm)
{
    struct vbd_acct *a = g_hash_table_lookup(d->accts, vm);

    if (a)
        return a;
    a = g_new0(struct vbd_acct, 1);
    a->refs = 1;
    a->vm = g_strdup(vm);
    a->path = g_strdup_printf("%s/quota/%s.json", d->cfg->state_dir, vm);
    g_mutex_init(&a->mu);
    a->hours = g_array_new(FALSE, FALSE, sizeof(struct hour));
    a->running = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    a->committed = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    acct_read(a);
    g_hash_table_insert(d->accts, a->vm, a);
    return a;
}

/* ---- charges ---------------------------------------------------------------------- */

static void charge_unref(void *opaque)
{
    struct vbd_charge *c = opaque;

    if (!g_atomic_int_dec_and_test(&c->refs))
        return;
    acct_unref(c->a);
    g_free(c->target);
    g_free(c);
}

static int refuse(struct vbd_charge *c, vb_error *e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int refuse(struct vbd_charge *c, vb_error *e, const char *fmt, ...)
{
    va_list ap;

    if (!c->why[0]) {
        va_start(ap, fmt);
        vsnprintf(c->why, sizeof(c->why), fmt, ap);
        va_end(ap);
    }
    return vb_seterr(e, -EDQUOT, "%s", c->why);
}

/* The session's budget (session.h): on worker threads. */
static int charge(void *opaque, int64_t bytes, vb_error *e)
{
    struct vbd_charge *c = opaque;
    struct vbd_acct *a = c->a;
    int64_t now = vbd_quota_now();
    uint64_t jobs, day, *running, *committed, n;
    char x[32], y[32];
    int ret = 0;

    g_mutex_lock(&a->mu);
    running = per_target(a->running, c->target);
    committed = per_target(a->committed, c->target);
    if (bytes < 0) {
        /* given back: a chunk that was not added after all */
        struct hour *h = this_hour(a, now);
        n = VB_MIN((uint64_t)-bytes, c->used);
        if (!c->ended) {
            c->used -= n;
            *running -= VB_MIN(n, *running);
        }
        h->bytes -= VB_MIN(n, h->bytes);
        goto out;
    }
    if (c->ended) {
        ret = vb_seterr(e, -ECANCELED, "the job has ended");
        goto out;
    }
    n = (uint64_t)bytes;
    day_use(a, now, &jobs, &day);
    if (c->q.job_bytes && c->used + n > c->q.job_bytes) {
        ret = refuse(c, e, "quota: VM %s may add at most %s to a target in one backup "
                     "(max_job_bytes)", a->vm, vb_fmt_bytes(c->q.job_bytes, x, sizeof(x)));
    } else if (c->q.total_bytes && *committed + *running + n > c->q.total_bytes) {
        ret = refuse(c, e, "quota: VM %s may keep at most %s in target '%s' "
                     "(max_total_bytes); its snapshots and backups there hold %s", a->vm,
                     vb_fmt_bytes(c->q.total_bytes, x, sizeof(x)), c->target,
                     vb_fmt_bytes(*committed + *running, y, sizeof(y)));
    } else if (c->q.day_bytes && day + n > c->q.day_bytes) {
        ret = refuse(c, e, "quota: VM %s may add at most %s in 24 hours (max_bytes_per_day); "
                     "it has added %s", a->vm, vb_fmt_bytes(c->q.day_bytes, x, sizeof(x)),
                     vb_fmt_bytes(day, y, sizeof(y)));
    } else {
        c->used += n;
        *running += n;
        this_hour(a, now)->bytes += n;
        /* written down ahead of use: a crash never counts less than was stored
         * (and at most a sixteenth of the day's quota, or 64 MiB, more) */
        if (a->persist && c->q.day_bytes && day + n > a->written)
            acct_write(a, VB_MIN(RESERVE, c->q.day_bytes / 16 + 1));
    }
out:
    g_mutex_unlock(&a->mu);
    return ret;
}

/* ---- jobs ------------------------------------------------------------------------------ */

uint64_t vbd_quota_commits(struct vbd *d, struct vbd_vm *vm)
{
    struct vbd_acct *a = acct_of(d, vm->name);
    uint64_t n;

    g_mutex_lock(&a->mu);
    n = a->commits;
    g_mutex_unlock(&a->mu);
    return n;
}

uint64_t vbd_quota_committed(GPtrArray *snaps)
{
    uint64_t n = 0;

    for (guint i = 0; snaps && i < snaps->len; i++)
        n += ((const struct vbd_snapinfo *)snaps->pdata[i])->added;
    return n;
}

int vbd_quota_begin(struct vbd_job *j, uint64_t committed, char *why, size_t len)
{
    const struct vbd_quota *q = &j->vm->quota;
    struct vbd_acct *a = acct_of(j->d, j->vm->name);
    struct vbd_charge *c;
    uint64_t jobs, day, total = committed;
    int64_t now = vbd_quota_now();
    char x[32], y[32];
    int ret = 0;

    g_mutex_lock(&a->mu);
    a->persist = q->day_bytes || q->day_jobs;
    day_use(a, now, &jobs, &day);
    if (q->total_bytes)
        *per_target(a->committed, j->target->name) = total;
    total += *per_target(a->running, j->target->name);
    if (q->day_jobs && jobs >= q->day_jobs) {
        snprintf(why, len, "quota: VM %s may begin at most %llu backups in 24 hours "
                 "(max_jobs_per_day)", a->vm, (unsigned long long)q->day_jobs);
        ret = -EDQUOT;
    } else if (q->day_bytes && day >= q->day_bytes) {
        snprintf(why, len, "quota: VM %s may add at most %s in 24 hours (max_bytes_per_day); "
                 "it has added %s", a->vm, vb_fmt_bytes(q->day_bytes, x, sizeof(x)),
                 vb_fmt_bytes(day, y, sizeof(y)));
        ret = -EDQUOT;
    } else if (q->total_bytes && total >= q->total_bytes) {
        snprintf(why, len, "quota: VM %s may keep at most %s in target '%s' (max_total_bytes); "
                 "its snapshots and backups there hold %s", a->vm,
                 vb_fmt_bytes(q->total_bytes, x, sizeof(x)), j->target->name,
                 vb_fmt_bytes(total, y, sizeof(y)));
        ret = -EDQUOT;
    } else {
        this_hour(a, now)->jobs++;
        if (a->persist)
            acct_write(a, 0);
    }
    g_mutex_unlock(&a->mu);
    if (ret)
        return ret;
    c = g_new0(struct vbd_charge, 1);
    c->refs = 1;
    c->a = a;
    g_atomic_int_inc(&a->refs);
    c->q = *q;
    c->target = g_strdup(j->target->name);
    j->charge = c;
    return 0;
}

void vbd_quota_attach(struct vbd_job *j)
{
    if (!j->charge || !j->ws)
        return;
    g_atomic_int_inc(&j->charge->refs);
    vb_sink_set_charge(j->ws, charge, j->charge, charge_unref);
}

uint64_t vbd_quota_added(struct vbd_job *j)
{
    uint64_t n = 0;

    if (j->charge) {
        g_mutex_lock(&j->charge->a->mu);
        n = j->charge->used;
        g_mutex_unlock(&j->charge->a->mu);
    }
    return n;
}

bool vbd_quota_failed(struct vbd_job *j, int err)
{
    char why[sizeof(j->charge->why)] = "quota: over a quota the host set for this VM";

    if (err != -EDQUOT)
        return false;
    if (j->charge) {
        g_mutex_lock(&j->charge->a->mu);
        if (j->charge->why[0])
            memcpy(why, j->charge->why, sizeof(why));
        g_mutex_unlock(&j->charge->a->mu);
    }
    j->over_quota = true;
    vbd_job_fail(j, VB_JOB_FAILED, "%s", why);
    return true;
}

void vbd_quota_end(struct vbd_job *j)
{
    struct vbd_charge *c = j->charge;
    struct vbd_acct *a;
    uint64_t used;

    if (!c)
        return;
    a = c->a;
    g_mutex_lock(&a->mu);
    used = c->used;
    if (!c->ended) {
        uint64_t *running = per_target(a->running, c->target);
        c->ended = true;
        *running -= VB_MIN(used, *running);
        if (j->state == VB_JOB_DONE) {
            *per_target(a->committed, c->target) += used;
            a->commits++;
        }
        if (a->persist)
            acct_write(a, 0);
    }
    g_mutex_unlock(&a->mu);
    j->charge = NULL;
    charge_unref(c);
    /* what a failed job stored is garbage: a gc of the target frees it */
    if (used && j->state != VB_JOB_DONE)
        vbd_reclaim_want(j->d, j->target);
}

json_object *vbd_quota_json(struct vbd *d, struct vbd_vm *vm)
{
    json_object *o = json_object_new_object();
    struct vbd_acct *a = acct_of(d, vm->name);      /* read from the state folder */
    uint64_t jobs = 0, day = 0;

    json_object_object_add(o, "max_job_bytes", json_object_new_int64((int64_t)vm->quota.job_bytes));
    json_object_object_add(o, "max_total_bytes",
                           json_object_new_int64((int64_t)vm->quota.total_bytes));
    json_object_object_add(o, "max_bytes_per_day",
                           json_object_new_int64((int64_t)vm->quota.day_bytes));
    json_object_object_add(o, "max_jobs_per_day",
                           json_object_new_int64((int64_t)vm->quota.day_jobs));
    g_mutex_lock(&a->mu);
    day_use(a, vbd_quota_now(), &jobs, &day);
    g_mutex_unlock(&a->mu);
    json_object_object_add(o, "jobs_24h", json_object_new_int64((int64_t)jobs));
    json_object_object_add(o, "bytes_24h", json_object_new_int64((int64_t)day));
    return o;
}

void vbd_quota_init(struct vbd *d)
{
    const char *off = getenv("VBACKUPD_TEST_CLOCK_OFFSET");

    /* for tests: a day later (or earlier), without waiting for it */
    if (off && *off) {
        clock_offset_ns = (int64_t)(g_ascii_strtod(off, NULL) * 1e9);
        vbd_log("quota clock shifted by %s s (VBACKUPD_TEST_CLOCK_OFFSET)", off);
    }
    d->accts = g_hash_table_new_full(g_str_hash, g_str_equal, NULL,
                                     (GDestroyNotify)acct_unref);
}

void vbd_quota_fini(struct vbd *d)
{
    if (d->accts)
        g_hash_table_destroy(d->accts);
    d->accts = NULL;
}
