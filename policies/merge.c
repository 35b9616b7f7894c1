/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * merge: read shared bytes once and coalesce nearby ranges.
 *
 * Reads of the same file (vbackupd gives each host file, by dev/ino, one
 * index) that overlap, touch or lie within max_gap bytes of each other become
 * one read; every consumer of the inputs moves into it, its offset rebased on
 * the new start.  Ranges several jobs want (clones sharing a base image) thus
 * become one read with several consumers.  A merged read never grows past
 * max_read; an input read already larger than that stays as it is (reads it
 * contains still join it, which does not grow it).
 *
 * Reads whose consumers all belong to jobs an earlier policy deferred (the
 * default chain is schedule, then merge) are left as they are, apart: the
 * executor drops them, and merging them would only make the others longer.
 *
 * Sort by (file, offset), one sweep to form the groups, one sort and sweep of
 * the consumers for the report: O(n log n) in reads plus consumers.
 */
#include "vbp-common.h"

#define MERGE_DEFAULT_MAX_READ (4ull << 20)
#define MERGE_DEFAULT_MAX_GAP (64ull << 10)
#define MERGE_PARTNERS 8         /* other jobs named per job note */
#define MERGE_SCAN 16            /* active jobs looked at per consumer start */
#define MERGE_LIST_JOBS 8        /* jobs named in the batch note */

struct merge {
    uint64_t max_read;           /* 0: the batch's max_read_bytes (or 4 MiB) */
    uint64_t max_gap;
    bool enabled;
};

static void *merge_create(void)
{
    struct merge *m = calloc(1, sizeof(*m));

    if (m) {
        m->max_gap = MERGE_DEFAULT_MAX_GAP;
        m->enabled = true;
    }
    return m;
}

static void merge_destroy(void *state)
{
    free(state);
}

static int merge_config(void *state, const char *key, const char *value, char *err,
                        size_t err_len)
{
    struct merge *m = state;

    if (strcmp(key, "max_read") == 0) {
        if (vbp_parse_size(value, &m->max_read) < 0 || m->max_read == 0)
            return vbp_err(err, err_len, "max_read: expected a size > 0 such as 4M, got "
                           "\"%s\"", value);
        return 0;
    }
    if (strcmp(key, "max_gap") == 0) {
        if (vbp_parse_size(value, &m->max_gap) < 0)
            return vbp_err(err, err_len, "max_gap: expected a size such as 64k or 0, got "
                           "\"%s\"", value);
        return 0;
    }
    if (strcmp(key, "enabled") == 0) {
        if (vbp_parse_bool(value, &m->enabled) < 0)
            return vbp_err(err, err_len, "enabled: expected yes or no, got \"%s\"", value);
        return 0;
    }
    return vbp_err(err, err_len, "merge: unknown key \"%s\" (keys: max_read, max_gap, "
                   "enabled)", key);
}

/* ------------------------------------------------------------------ */

struct rkey {                    /* an input read, sorted by file and offset */
    uint64_t off, len;
    uint32_t file, idx;
    uint32_t deferred;           /* every consumer's job is deferred */
};

static int rkey_cmp(const void *a, const void *b)
{
    const struct rkey *x = a, *y = b;

    if (x->deferred != y->deferred)      /* reads that run now come first */
        return x->deferred < y->deferred ? -1 : 1;
    if (x->file != y->file)
        return x->file < y->file ? -1 : 1;
    if (x->off != y->off)
        return x->off < y->off ? -1 : 1;
    if (x->len != y->len)                /* longest first: the others may fit inside */
        return x->len > y->len ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

struct group {                   /* an output read: sorted inputs [k0, k1) */
    uint64_t start, end;
    uint32_t file, flags, k0, k1;
    uint64_t n_consumers;
};

struct jmap {                    /* job id → index in batch->jobs */
    uint64_t id;
    uint32_t idx;
};

static int jmap_cmp(const void *a, const void *b)
{
    const struct jmap *x = a, *y = b;

    return x->id < y->id ? -1 : x->id > y->id;
}

struct event {                   /* a consumer's start or end within its output read */
    uint64_t pos;
    uint32_t group, job;         /* job: dense index, n_jobs = not a known job */
    uint32_t is_start;
};

static int event_cmp(const void *a, const void *b)
{
    const struct event *x = a, *y = b;

    if (x->group != y->group)
        return x->group < y->group ? -1 : 1;
    if (x->pos != y->pos)
        return x->pos < y->pos ? -1 : 1;
    if (x->is_start != y->is_start)      /* ends first: touching ranges share nothing */
        return x->is_start < y->is_start ? -1 : 1;
    return x->job < y->job ? -1 : x->job > y->job;
}

struct jstat {                   /* per job, for the report */
    uint64_t wanted, shared, clock_at_start;
    uint32_t active;             /* its consumers covering the sweep position */
    uint32_t prev, next;         /* list of jobs with active > 0 */
    uint32_t n_partners;
    bool more_partners;
    uint32_t partners[MERGE_PARTNERS];
};

#define NIL UINT32_MAX

static uint32_t job_index(const struct jmap *map, uint32_t n, uint64_t id)
{
    struct jmap key = { .id = id };
    const struct jmap *hit = bsearch(&key, map, n, sizeof(*map), jmap_cmp);

    return hit ? hit->idx : n;
}

static void add_partner(struct jstat *s, uint32_t other)
{
    for (uint32_t i = 0; i < s->n_partners; i++)
        if (s->partners[i] == other)
            return;
    if (s->n_partners < MERGE_PARTNERS)
        s->partners[s->n_partners++] = other;
    else
        s->more_partners = true;
}

static const char *job_label(const struct vbp_batch *b, uint32_t ji, char *buf, size_t len)
{
    if (ji < b->n_jobs)
        snprintf(buf, len, "%llu", (unsigned long long)b->jobs[ji].id);
    else
        snprintf(buf, len, "?");
    return buf;
}

/* The report: per output read, sweep its consumers' ranges. */
static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

static void merge_report(struct vbp_batch *b, uint32_t n_in, uint32_t n_groups,
                         uint32_t n_deferred, struct event *ev, uint64_t n_ev,
                         struct jstat *js, uint32_t n_js, uint64_t to_read)
{
    uint64_t wanted = 0, unique = 0, clock = 0, prev = 0;
    uint32_t head = NIL, distinct = 0, n_active = 0, cur_group = NIL;
    char line[1024], a[32], c[32], d[32], num[24];
    size_t used = 0;
    uint32_t listed = 0, sharing = 0;

    if (n_in == 0) {
        b->note(b, "merge", 0, "all %u reads belong to deferred jobs: left as they are",
                n_deferred);
        return;
    }
    qsort(ev, n_ev, sizeof(*ev), event_cmp);
    for (uint32_t j = 0; j < n_js; j++)
        js[j].prev = js[j].next = NIL;
    for (uint64_t i = 0; i < n_ev; i++) {
        struct event *e = &ev[i];
        struct jstat *s = &js[e->job];

        if (e->group != cur_group) {
            cur_group = e->group;
            prev = e->pos;
        }
        if (n_active > 0)
            unique += e->pos - prev;
        if (distinct >= 2)
            clock += e->pos - prev;
        prev = e->pos;
        if (e->is_start) {
            n_active++;
            if (s->active++ > 0)
                continue;
            /* the job becomes active: it shares bytes with every active job */
            uint32_t o = head;
            for (uint32_t scanned = 0; o != NIL && scanned < MERGE_SCAN; scanned++) {
                add_partner(s, o);
                add_partner(&js[o], e->job);
                o = js[o].next;
            }
            if (o != NIL)
                s->more_partners = true;
            s->clock_at_start = clock;
            s->prev = NIL;
            s->next = head;
            if (head != NIL)
                js[head].prev = e->job;
            head = e->job;
            distinct++;
        } else {
            n_active--;
            if (--s->active > 0)
                continue;
            s->shared += clock - s->clock_at_start;
            if (s->prev != NIL)
                js[s->prev].next = s->next;
            else
                head = s->next;
            if (s->next != NIL)
                js[s->next].prev = s->prev;
            distinct--;
        }
    }

    for (uint32_t j = 0; j < n_js; j++)
        wanted += js[j].wanted;
    vbp_append(line, sizeof(line), &used, "merged %u reads into %u; %s wanted, %s to read",
               n_in, n_groups, vbp_fmt_bytes(wanted, a, sizeof(a)),
               vbp_fmt_bytes(to_read, c, sizeof(c)));
    for (uint32_t j = 0; j < n_js; j++)
        if (js[j].shared)
            sharing++;
    if (wanted > unique) {
        vbp_fmt_bytes(wanted - unique, d, sizeof(d));
        if (sharing) {
            vbp_append(line, sizeof(line), &used, " (%s shared between jobs ", d);
            for (uint32_t j = 0; j < n_js && listed < MERGE_LIST_JOBS; j++) {
                if (!js[j].shared)
                    continue;
                vbp_append(line, sizeof(line), &used, "%s%s", listed ? ", " : "",
                           job_label(b, j, num, sizeof(num)));
                listed++;
            }
            if (sharing > listed)
                vbp_append(line, sizeof(line), &used, " and %u more", sharing - listed);
            vbp_append(line, sizeof(line), &used, ")");
        } else {
            vbp_append(line, sizeof(line), &used, " (%s asked for more than once)", d);
        }
    }
    if (to_read > unique)
        vbp_append(line, sizeof(line), &used, "; %s of gaps read and dropped",
                   vbp_fmt_bytes(to_read - unique, a, sizeof(a)));
    if (n_deferred)
        vbp_append(line, sizeof(line), &used, "; %u reads of deferred jobs left apart",
                   n_deferred);
    b->note(b, "merge", 0, "%s", line);

    for (uint32_t j = 0; j < b->n_jobs && j < n_js; j++) {
        const struct jstat *s = &js[j];
        uint64_t ids[MERGE_PARTNERS];
        uint32_t n_ids = 0;

        if (!s->shared)
            continue;
        used = 0;
        vbp_append(line, sizeof(line), &used, "%s of its %s read once with job%s",
                   vbp_fmt_bytes(s->shared, a, sizeof(a)), vbp_fmt_bytes(s->wanted, c, sizeof(c)),
                   s->n_partners > 1 || s->more_partners ? "s" : "");
        for (uint32_t p = 0; p < s->n_partners; p++)
            if (s->partners[p] < b->n_jobs)
                ids[n_ids++] = b->jobs[s->partners[p]].id;
        qsort(ids, n_ids, sizeof(ids[0]), u64_cmp);
        for (uint32_t p = 0; p < n_ids; p++)
            vbp_append(line, sizeof(line), &used, "%s%llu", p ? ", " : " ",
                       (unsigned long long)ids[p]);
        if (s->more_partners)
            vbp_append(line, sizeof(line), &used, " and others");
        b->note(b, "merge", b->jobs[j].id, "%s", line);
    }
}

static int merge_optimize(void *state, struct vbp_batch *b)
{
    struct merge *m = state;
    uint64_t max_read = m->max_read, max_gap = m->max_gap, n_cons = 0, to_read = 0, pos;
    uint64_t n_ev = 0;
    uint32_t n = b->n_reads, n_groups = 0, n_deferred = 0;
    struct rkey *keys = NULL;
    struct group *groups = NULL;
    struct jmap *map = NULL;
    struct event *ev = NULL;
    struct jstat *js = NULL;
    struct vbp_read *out;
    struct vbp_consumer *cons;
    int ret = -ENOMEM;

    if (!m->enabled) {
        b->note(b, "merge", 0, "disabled (enabled=no): plan left as it is");
        return 0;
    }
    if (n == 0)
        return 0;
    if (b->max_read_bytes && (!max_read || max_read > b->max_read_bytes))
        max_read = b->max_read_bytes;     /* the executor's limit wins */
    if (!max_read)
        max_read = MERGE_DEFAULT_MAX_READ;

    keys = malloc(sizeof(*keys) * n);
    groups = malloc(sizeof(*groups) * n);
    map = malloc(sizeof(*map) * (b->n_jobs + 1u));
    js = calloc(b->n_jobs + 1u, sizeof(*js));
    if (!keys || !groups || !map || !js)
        goto out;

    for (uint32_t j = 0; j < b->n_jobs; j++)
        map[j] = (struct jmap){ .id = b->jobs[j].id, .idx = j };
    qsort(map, b->n_jobs, sizeof(*map), jmap_cmp);

    for (uint32_t i = 0; i < n; i++) {
        const struct vbp_read *r = &b->reads[i];
        uint32_t deferred = r->n_consumers > 0;

        if (r->offset + r->length < r->offset) {
            ret = -ERANGE;
            goto out;
        }
        for (uint32_t c = 0; c < r->n_consumers && deferred; c++) {
            uint32_t ji = job_index(map, b->n_jobs, r->consumers[c].job);

            if (ji == b->n_jobs || b->jobs[ji].defer_until_ns <= b->load.now_ns)
                deferred = 0;
        }
        keys[i] = (struct rkey){ .off = r->offset, .len = r->length, .file = r->file, .idx = i,
                                 .deferred = deferred };
        n_deferred += deferred;
        n_cons += r->n_consumers;
    }
    qsort(keys, n, sizeof(*keys), rkey_cmp);

    /* the groups */
    for (uint32_t k = 0; k < n; k++) {
        const struct rkey *r = &keys[k];
        struct group *g = n_groups ? &groups[n_groups - 1] : NULL;
        uint64_t r_end = r->off + r->len;

        if (g && !r->deferred && g->file == r->file &&
            (r->off <= g->end || r->off - g->end <= max_gap)) {
            uint64_t end = VBP_MAX(g->end, r_end);

            /* join unless that grows the read past max_read */
            if (end == g->end || end - g->start <= max_read) {
                g->end = end;
                g->k1 = k + 1;
                g->flags |= b->reads[r->idx].flags;
                g->n_consumers += b->reads[r->idx].n_consumers;
                continue;
            }
        }
        groups[n_groups++] = (struct group){
            .start = r->off, .end = r_end, .file = r->file, .flags = b->reads[r->idx].flags,
            .k0 = k, .k1 = k + 1, .n_consumers = b->reads[r->idx].n_consumers,
        };
    }
    for (uint32_t g = 0; g < n_groups; g++)
        if (groups[g].n_consumers > UINT32_MAX) {
            ret = -E2BIG;
            goto out;
        }

    ev = malloc(sizeof(*ev) * (n_cons ? 2 * n_cons : 1));
    out = b->alloc(b, sizeof(*out) * n_groups);
    cons = b->alloc(b, sizeof(*cons) * (n_cons ? n_cons : 1));
    if (!ev || !out || !cons)
        goto out;

    /* the new plan */
    pos = 0;
    for (uint32_t g = 0; g < n_groups; g++) {
        const struct group *gr = &groups[g];
        struct vbp_read *o = &out[g];

        o->file = gr->file;
        o->flags = gr->flags;
        o->offset = gr->start;
        o->length = gr->end - gr->start;
        o->n_consumers = (uint32_t)gr->n_consumers;
        o->consumers = &cons[pos];
        if (!keys[gr->k0].deferred)
            to_read += o->length;
        for (uint32_t k = gr->k0; k < gr->k1; k++) {
            const struct vbp_read *r = &b->reads[keys[k].idx];

            for (uint32_t c = 0; c < r->n_consumers; c++) {
                struct vbp_consumer *nc = &cons[pos];
                uint32_t ji;

                *nc = r->consumers[c];
                nc->offset += r->offset - gr->start;
                pos++;
                if (keys[gr->k0].deferred)
                    continue;            /* not in the report */
                ji = job_index(map, b->n_jobs, nc->job);
                js[ji].wanted += nc->length;
                ev[n_ev++] = (struct event){ .pos = nc->offset, .group = g, .job = ji,
                                             .is_start = 1 };
                ev[n_ev++] = (struct event){ .pos = nc->offset + nc->length, .group = g,
                                             .job = ji, .is_start = 0 };
            }
        }
    }

    merge_report(b, n - n_deferred, n_groups - n_deferred, n_deferred, ev, n_ev, js,
                 b->n_jobs + 1u, to_read);
    b->reads = out;
    b->n_reads = n_groups;
    ret = 0;
out:
    free(keys);
    free(groups);
    free(map);
    free(ev);
    free(js);
    return ret;
}

static struct vbp_plugin plugin = {
    .name = "merge",
    .description = "reads bytes several jobs want once, coalesces nearby ranges",
    .config_help =
        "max_read=SIZE: largest merged read (default: the executor's, 4M)\n"
        "max_gap=SIZE: coalesce ranges at most this far apart (default 64k)\n"
        "enabled=yes|no: no leaves the plan as it is (default yes)",
    .create = merge_create,
    .config = merge_config,
    .destroy = merge_destroy,
    .optimize = merge_optimize,
};

VBP_REGISTER(plugin)
