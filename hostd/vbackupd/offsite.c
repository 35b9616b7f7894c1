/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Offsite copies: a target with copy_to = LOCATION (a format 2 repository,
 * a folder or s3://BUCKET/PREFIX, made beforehand with `vbackupctl init
 * --format 2`) has each snapshot committed to it copied there, by the engine
 * `vbackupctl copy` uses (hostd/repo/copy.h): same id, only the chunks the
 * copy lacks stored.
 *
 *   - A copy copies every snapshot of the target that copy_to lacks, so
 *     that after a failure or a restart the next one catches up; one runs
 *     at startup and on reload, and one after each commit.  A commit that comes while a
 *     copy of its target runs makes one more run after it (coalesced): at
 *     most one copy per target at a time.
 *   - It runs on a thread of its own (as reclaim.c's gc): a copy can take
 *     as long as the upload, and the CPU workers stay with the backups.  It
 *     reads the target, of either format, through the snapshot door
 *     (snapread.h, vb_sr_over): on format 1 that holds a claim, so that its
 *     gc waits for it (a job's own claims are shared and do not); format 2's
 *     gc keeps what manifests reference.
 *   - The log says "copy of ID to NAME's copy_to: started", then "...: done
 *     (N new)" or the failure with its reason.  It never fails a backup:
 *     the snapshot is done in the target.
 *   - copy_to is opened with its secret (copy_password_file or
 *     copy_credential, read anew each time, never kept) when the
 *     configuration is loaded, to check it, and again for each copy: a
 *     secret changed on disk needs no restart, and a repository another
 *     host writes is seen as it is now.
 *   - On shutdown a running copy is cancelled: its write session is
 *     aborted (vb2_write_abort), nothing of it visible in copy_to.
 */
#include "vbackupd.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "copy.h"
#include "keyfile.h"
#include "repo2.h"

#define POLL_MS 250

struct vbd_copy {
    struct vbd_target *t;
    GThread *thread;
    int cancel;              /* atomic: shutdown */
    gint finished;           /* atomic */
};

int vbd_copy_open(const struct vbd_target *t, struct vb2_repo **out, vb_error *e)
{
    g_autofree char *what = g_strdup_printf("target %s: copy_to %s", t->name, t->copy_to);
    int ret = vbd_open_v2(t->copy_to, t->copy_password_file, t->copy_credential, NULL, what,
                          out, e);

    if (ret == -ENOKEY)
        vb_seterr(e, ret, "%s: it is encrypted: give copy_password_file or copy_credential",
                  what);
    return ret;
}

bool vbd_copy_config_error(int err)
{
    switch (err) {
    case -EACCES:            /* a wrong password, a password file not readable */
    case -EPERM:
    case -ENOKEY:            /* encrypted, and no secret */
    case -ENOENT:            /* no repository there, no password file */
    case -ENOTDIR:
    case -EPROTONOSUPPORT:   /* version 1, or a format unknown */
    case -EBADMSG:           /* a damaged config or key file */
    case -EINVAL:
        return true;
    default:
        return false;
    }
}

static void copy_log_fail(const char *id, const char *name, const vb_error *e)
{
    vbd_log("copy of %s to %s's copy_to: failed: %s", id, name, vb_strerror(e));
}

static gpointer copy_thread(gpointer opaque)
{
    struct vbd_copy *run = opaque;
    struct vbd_target *t = run->t;
    struct vb2_repo *r2 = NULL;
    struct vb_sr *sr = NULL;
    GPtrArray *list = NULL;
    unsigned copied = 0, failed = 0;
    bool cancelled = false;
    vb_error e = { 0 };
    guint i;

    /* either format: read through the snapshot door (format 1 holds a claim) */
    if (vbd_target_open(t, &e) ||
        vb_sr_over(g_atomic_pointer_get(&t->repo), g_atomic_pointer_get(&t->repo2), true, &sr,
                   &e) ||
        vb_sr_list(sr, NULL, &list, &e) || vbd_copy_open(t, &r2, &e)) {
        vbd_log("copy of target %s to its copy_to: failed: %s", t->name, vb_strerror(&e));
        goto out;
    }
    for (i = 0; i < list->len && !g_atomic_int_get(&run->cancel); i++) {
        const struct vb_sr_info *s = list->pdata[i];
        struct vb_manifest *there = NULL;
        char *new_id = NULL;
        uint64_t done = 0, added = 0;
        char a[32];
        int ret;

        if (vb2_snap_load(r2, s->id, &there, NULL) == 0) {
            vb_manifest_free(there);
            continue;           /* there already (vb_copy_snap would say -EEXIST) */
        }
        vbd_log("copy of %s to %s's copy_to: started", s->id, t->name);
        memset(&e, 0, sizeof(e));
        ret = vb_copy_snap(sr, s->id, r2, &run->cancel, NULL, &done, &new_id, &added, &e);
        if (ret == -EEXIST)
            continue;           /* there already */
        if (ret == -ECANCELED) {
            vbd_log("copy of %s to %s's copy_to: cancelled (vbackupd is stopping); nothing of "
                    "it is in the copy", s->id, t->name);
            cancelled = true;
        } else if (ret) {
            failed++;
            copy_log_fail(s->id, t->name, &e);
        } else {
            copied++;
            vbd_log("copy of %s to %s's copy_to: done (%s new)", s->id, t->name,
                    vb_fmt_bytes(added, a, sizeof(a)));
        }
        free(new_id);
        if (cancelled)
            break;
    }
    if (!cancelled && i < list->len)
        vbd_log("copy of target %s to its copy_to: cancelled before it ended (vbackupd is "
                "stopping)", t->name);
    if (failed)
        vbd_log("copy of target %s to its copy_to: %u copied, %u failed (tried again after "
                "the next commit, or at the next start)", t->name, copied, failed);
out:
    if (list)
        g_ptr_array_free(list, TRUE);
    if (r2)
        vb2_repo_close(r2);
    vb_sr_close(sr);
    g_atomic_int_set(&run->finished, 1);
    return NULL;
}

static gboolean on_copies(gpointer opaque);

static void copy_start(struct vbd *d, struct vbd_target *t)
{
    struct vbd_copy *run = g_new0(struct vbd_copy, 1);

    run->t = t;
    t->copy_wanted = false;
    t->copy_run = run;
    d->copies = g_list_prepend(d->copies, run);
    run->thread = g_thread_new("copy", copy_thread, run);
    if (!d->copy_timer)
        d->copy_timer = g_timeout_add(POLL_MS, on_copies, d);
}

/* The end of a copy (waits for it). */
static void copy_done(struct vbd *d, struct vbd_copy *run)
{
    g_thread_join(run->thread);
    d->copies = g_list_remove(d->copies, run);
    run->t->copy_run = NULL;
    g_free(run);
}

static gboolean on_copies(gpointer opaque)
{
    struct vbd *d = opaque;

    for (GList *l = d->copies, *next; l; l = next) {
        struct vbd_copy *run = l->data;
        struct vbd_target *t = run->t;
        next = l->next;
        if (!g_atomic_int_get(&run->finished))
            continue;
        copy_done(d, run);
        if (t->copy_wanted && !d->stopping)
            copy_start(d, t);           /* a commit came meanwhile */
    }
    if (d->copies)
        return G_SOURCE_CONTINUE;
    d->copy_timer = 0;
    return G_SOURCE_REMOVE;
}

void vbd_copy_want(struct vbd *d, struct vbd_target *t)
{
    if (!t->copy_to || d->stopping)
        return;
    if (t->copy_run)
        t->copy_wanted = true;
    else
        copy_start(d, t);
}

void vbd_copy_want_all(struct vbd *d)
{
    GHashTableIter it;
    gpointer k, v;

    g_hash_table_iter_init(&it, d->targets);
    while (g_hash_table_iter_next(&it, &k, &v))
        vbd_copy_want(d, v);
}

void vbd_copy_fini(struct vbd *d)
{
    if (d->copy_timer)
        g_source_remove(d->copy_timer);
    d->copy_timer = 0;
    for (GList *l = d->copies; l; l = l->next)
        g_atomic_int_set(&((struct vbd_copy *)l->data)->cancel, 1);
    while (d->copies)
        copy_done(d, d->copies->data);
}
