/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Space of failed jobs, reclaimed without an administrator.  A backup that
 * fails or is cancelled after its session stored chunks leaves them
 * unreferenced: a guest could fill a repository with backups it never
 * finishes.  So the daemon runs a gc of that target itself (reclaim = yes,
 * the default), the same gc as `vbackupctl gc` with its fail-safe rules
 * (hostd/lib/maint.c), when
 *
 *   - no unfinished job of this daemon uses the target (a job that begins
 *     while the gc runs waits for it, as it waits for an administrator's);
 *   - no one else holds a claim on it: the gc takes the repository's lock
 *     exclusively without waiting (vb_repo_claim_exclusive), and tries
 *     again later when it cannot;
 *   - at least reclaim_interval seconds passed since the last such gc of
 *     the target (the first one runs at once).
 *
 * The gc runs on a thread of its own; the main loop looks for its end.
 *
 * A format 2 target takes no claim: its gc (repo2.h, vb2_gc) runs beside
 * other writers by its leases, condemns the packs that only failed sessions
 * named and deletes them once no lease that began before may still use
 * them (at once when none is live, else at a later gc).
 */
#include "vbackupd.h"

#include <stdio.h>
#include <string.h>

#include "maint.h"
#include "repo2.h"

#define POLL_MS 250

struct vbd_reclaim {
    struct vbd_target *t;
    GThread *thread;
    struct vb_claim *claim;  /* exclusive */
    struct vb_gc_result res;
    struct vb2_gc_report rep2;   /* format 2 */
    int err;
    vb_error e;
    gint finished;
};

static gboolean on_reclaim(gpointer opaque);

void vbd_reclaim_want(struct vbd *d, struct vbd_target *t)
{
    if (!d->cfg->reclaim || d->stopping)
        return;
    t->reclaim_wanted = true;
    if (!d->reclaim_timer)
        d->reclaim_timer = g_timeout_add(POLL_MS, on_reclaim, d);
}

static gpointer reclaim_thread(gpointer opaque)
{
    struct vbd_reclaim *run = opaque;

    if (run->t->repo2)
        run->err = vb2_gc(run->t->repo2, NULL, &run->rep2, &run->e);
    else
        run->err = vb_gc(run->t->repo, false, &run->res, &run->e);
    g_atomic_int_set(&run->finished, 1);
    return NULL;
}

/* The end of a gc (waits for it): the claim goes, the result to the log. */
static void reclaim_done(struct vbd *d, struct vbd_reclaim *run)
{
    struct vbd_target *t = run->t;
    char a[32], b[32];

    g_thread_join(run->thread);
    d->reclaims = g_list_remove(d->reclaims, run);
    t->reclaim_run = NULL;
    vb_repo_release(run->claim);
    t->reclaim_last = vb_now();
    if (run->err)
        vbd_log("target %s: gc after failed jobs: %s", t->name, vb_strerror(&run->e));
    else if (t->repo2)
        vbd_log("target %s: gc after failed jobs removed %llu packs (%s)%s%s%s", t->name,
                (unsigned long long)run->rep2.packs_deleted,
                vb_fmt_bytes(run->rep2.bytes_deleted, a, sizeof(a)),
                run->rep2.lists_waiting ? "; condemned " : "",
                run->rep2.lists_waiting ? vb_fmt_bytes(run->rep2.bytes_condemned, b, sizeof(b))
                                        : "",
                run->rep2.lists_waiting ? " wait for writers that were running" : "");
    else
        vbd_log("target %s: gc after failed jobs removed %llu chunks (%s) and %llu leftovers",
                t->name, (unsigned long long)run->res.chunks_removed,
                vb_fmt_bytes(run->res.bytes_removed, a, sizeof(a)),
                (unsigned long long)run->res.temp_removed);
    g_free(run);
}

static bool target_used(struct vbd *d, struct vbd_target *t)
{
    GHashTableIter it;
    gpointer k, v;

    g_hash_table_iter_init(&it, d->jobs);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        struct vbd_job *j = v;
        if (j->target == t && j->state != VB_JOB_DONE && j->state != VB_JOB_FAILED &&
            j->state != VB_JOB_CANCELLED)
            return true;
    }
    return false;
}

static gboolean on_reclaim(gpointer opaque)
{
    struct vbd *d = opaque;
    GHashTableIter it;
    gpointer k, v;
    bool more = false;

    for (GList *l = d->reclaims, *next; l; l = next) {
        struct vbd_reclaim *run = l->data;
        next = l->next;
        if (g_atomic_int_get(&run->finished))
            reclaim_done(d, run);
        else
            more = true;
    }
    g_hash_table_iter_init(&it, d->targets);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        struct vbd_target *t = v;
        struct vbd_reclaim *run;
        vb_error e = { 0 };

        if (!t->reclaim_wanted || t->reclaim_run || d->stopping)
            continue;
        more = true;
        if (t->reclaim_last && vb_now() - t->reclaim_last < d->cfg->reclaim_interval)
            continue;
        if (target_used(d, t))
            continue;           /* a job's claim, or one about to be: later */
        if (!g_atomic_pointer_get(&t->repo) && !g_atomic_pointer_get(&t->repo2)) {
            t->reclaim_wanted = false;      /* broken (targets.c): nothing to reclaim there */
            continue;
        }
        run = g_new0(struct vbd_reclaim, 1);
        run->t = t;
        if (!t->repo2 && vb_repo_claim_exclusive(t->repo, &run->claim, &e)) {
            g_free(run);        /* held by someone else (a restore, vbackupctl): later */
            continue;
        }
        t->reclaim_wanted = false;
        t->reclaim_run = run;
        d->reclaims = g_list_prepend(d->reclaims, run);
        more = true;
        vbd_log("target %s: failed jobs left chunks behind; running gc", t->name);
        run->thread = g_thread_new("reclaim", reclaim_thread, run);
    }
    if (!more)
        d->reclaim_timer = 0;
    return more ? G_SOURCE_CONTINUE : G_SOURCE_REMOVE;
}

void vbd_reclaim_fini(struct vbd *d)
{
    if (d->reclaim_timer)
        g_source_remove(d->reclaim_timer);
    d->reclaim_timer = 0;
    while (d->reclaims)
        reclaim_done(d, d->reclaims->data);
}
