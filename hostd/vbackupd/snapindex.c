/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The snapshots of each VM in each target, as LIST, RESTORE_BEGIN "latest"
 * and the total quota need them: id, time, kind, mode, counts, roots and
 * bytes added, newest last.  Kept in memory per (target, VM) with the stamp
 * of the VM's snapshot folder (vb_snap_stamp) and of each snapshot's
 * index.json (vb_snap_index_stamp), and listed again, on a worker, only when
 * a stamp shows a change (a commit, a prune, a gc, a hand edit of the folder
 * or of an index) or is not settled yet; otherwise a refresh costs a stat
 * per snapshot.  Neither a LIST nor a "latest" reads a catalog or an
 * index.json on the main loop; one guest's requests for its index share one
 * refresh at a time, and each is answered by a refresh that began after it
 * was asked (it sees every snapshot committed before).
 */
#include "vbackupd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "repo2.h"
#include "vbackup/protolib.h"
#include "sink2.h"

struct idx {
    struct vbd *d;
    struct vbd_target *t;    /* targets outlive a reload (main.c keeps them) */
    char *vm;
    GPtrArray *snaps;        /* struct vbd_snapinfo *, oldest first; NULL: never listed */
    struct vb_snap_stamp stamp;
    bool refreshing;
    GQueue waiters;          /* struct waiter * */
};

struct waiter {
    vbd_snapindex_cb cb;
    void *opaque;
};

struct refresh {
    struct vbd_task task;    /* first */
    struct idx *x;
    struct vb_snap_stamp have, stamp;
    bool had;                /* x->snaps was there when the refresh began */
    GQueue waiters;          /* those who asked before it began: it answers them */
    GPtrArray *snaps;        /* new listing, or NULL: unchanged */
    int err;
    vb_error e;
};

static void info_free(gpointer p)
{
    struct vbd_snapinfo *s = p;

    g_free(s->id);
    g_free(s->roots);
    g_free(s);
}

static void idx_free(gpointer p)
{
    struct idx *x = p;

    if (x->snaps)
        g_ptr_array_free(x->snaps, TRUE);
    g_free(x->vm);
    g_free(x);
}

static struct vbd_snapinfo *info_of(const struct vb_snapshot *s)
{
    struct vbd_snapinfo *i = g_new0(struct vbd_snapinfo, 1);
    const char *mode = vb_json_str(s->json, "mode");
    json_object *roots = NULL;
    GString *rs = g_string_new(NULL);

    i->id = g_strdup(s->id);
    i->created_ns = s->created_ns;
    i->kind = s->type == VB_SNAP_DISK ? VB_KIND_DISK : VB_KIND_FILES;
    i->mode = mode && !strcmp(mode, "incremental") ? VB_MODE_INCREMENTAL
            : mode && !strcmp(mode, "differential") ? VB_MODE_DIFFERENTIAL : VB_MODE_FULL;
    i->files = (uint64_t)vb_json_int(s->json, "files", 0);
    if (json_object_object_get(s->json, "incomplete"))
        i->flags = VB_SNAP_INCOMPLETE;
    i->bytes = (uint64_t)(s->type == VB_SNAP_DISK
                              ? vb_json_int(json_object_object_get(s->json, "disk"), "size", 0)
                              : vb_json_int(s->json, "bytes", 0));
    if (json_object_object_get_ex(s->json, "roots", &roots) &&
        json_object_is_type(roots, json_type_array))
        for (size_t r = 0; r < json_object_array_length(roots); r++) {
            json_object *x = json_object_array_get_idx(roots, r);
            if (json_object_is_type(x, json_type_string))
                g_string_append_printf(rs, "%s%s", rs->len ? "\n" : "",
                                       json_object_get_string(x));
        }
    /* index.json is the repository's, and may be damaged: roots that are not a
     * list count as none (json-c asserts on an array operation on another type) */
    i->n_roots = s->type == VB_SNAP_FILES && roots && json_object_is_type(roots, json_type_array)
                     ? json_object_array_length(roots) : 0;
    i->roots = g_string_free(rs, FALSE);
    {
        /* what it added; snapshots from before added_bytes: their new chunks */
        int64_t n = vb_json_int(s->json, "added_bytes", -1);
        json_object *st = NULL;
        if (n < 0 && json_object_object_get_ex(s->json, "stats", &st) &&
            json_object_is_type(st, json_type_object))
            n = vb_json_int(st, "stored_new", 0);
        i->added = (uint64_t)VB_MAX(n, (int64_t)0);
    }
    return i;
}

/* A format 2 manifest (manifest.h): the same things from its fields, what
 * it added from its stats (stored_new: the bytes its new blobs took). */
static struct vbd_snapinfo *info_of_v2(const struct vb_manifest *m)
{
    struct vbd_snapinfo *i = g_new0(struct vbd_snapinfo, 1);
    GString *rs = g_string_new(NULL);
    int64_t n = m->stats ? vb_json_int(m->stats, "stored_new", 0) : 0;

    i->id = g_strdup(m->id);
    i->created_ns = m->created_ns;
    i->kind = m->type == VB_MF_DISK ? VB_KIND_DISK : VB_KIND_FILES;
    i->mode = m->mode && !strcmp(m->mode, "incremental") ? VB_MODE_INCREMENTAL
            : m->mode && !strcmp(m->mode, "differential") ? VB_MODE_DIFFERENTIAL : VB_MODE_FULL;
    if (m->notes && json_object_object_get(m->notes, "incomplete"))
        i->flags = VB_SNAP_INCOMPLETE;
    if (m->type == VB_MF_DISK) {
        i->bytes = m->disk.size;
    } else {
        i->files = m->files.entries;
        i->bytes = m->files.bytes;
        for (size_t r = 0; r < m->files.nroots; r++) {
            /* as format 1 records a root: the guest's bytes, escaped when not UTF-8 */
            g_autofree char *raw = vb2_files_root_raw(m, r);
            g_autofree char *esc = vb_utf8_valid(raw, strlen(raw)) ? NULL
                                 : vb_escape(raw, strlen(raw));
            g_string_append_printf(rs, "%s%s", rs->len ? "\n" : "", esc ? esc : raw);
        }
        i->n_roots = m->files.nroots;
    }
    i->roots = g_string_free(rs, FALSE);
    i->added = (uint64_t)VB_MAX(n, (int64_t)0);
    return i;
}

/* Format 2: its listing (manifests are cached on the host; a damaged one is
 * left out, as verify names it). */
static void refresh_v2(struct refresh *rf, struct vb2_repo *r2)
{
    GPtrArray *list, *problems = NULL;

    if ((rf->err = vb2_snap_list(r2, rf->x->vm, &list, &problems, &rf->e)))
        return;
    rf->snaps = g_ptr_array_new_full(list->len, info_free);
    for (guint i = 0; i < list->len; i++)
        g_ptr_array_add(rf->snaps, info_of_v2(list->pdata[i]));
    g_ptr_array_free(list, TRUE);
    if (problems)
        g_ptr_array_free(problems, TRUE);
}

/* On the worker: whether every index.json of the listing is as it was read
 * (each stamp settled and the same). */
static bool indexes_unchanged(struct vb_repo *r, GPtrArray *snaps)
{
    for (guint i = 0; i < snaps->len; i++) {
        const struct vbd_snapinfo *s = snaps->pdata[i];
        struct vb_snap_stamp now;
        if (!s->istamp.settled || vb_snap_index_stamp(r, s->id, &now, NULL) ||
            !vb_snap_stamp_equal(&s->istamp, &now))
            return false;
    }
    return true;
}

static void refresh_work(struct vb_work *work, struct vb_codec *c)
{
    struct refresh *rf = (struct refresh *)work;
    struct vb_repo *r;
    GPtrArray *snaps;
    int64_t t0;

    (void)c;
    /* a broken target: tried again */
    if ((rf->err = vbd_target_open(rf->x->t, &rf->e)))
        return;
    if (g_atomic_pointer_get(&rf->x->t->repo2)) {
        refresh_v2(rf, rf->x->t->repo2);
        return;
    }
    if (!(r = vbd_target_repo(rf->x->t, &rf->e))) {
        rf->err = rf->e.code ? rf->e.code : -EIO;
        return;
    }
    rf->err = vb_snap_stamp(r, rf->x->vm, &rf->stamp, &rf->e);
    if (rf->err)
        return;
    /* x->snaps is replaced only on the main loop, when this refresh is done */
    if (rf->had && rf->have.settled && vb_snap_stamp_equal(&rf->have, &rf->stamp) &&
        indexes_unchanged(r, rf->x->snaps))
        return;                         /* unchanged */
    t0 = vb_wall_ns();
    if ((rf->err = vb_snap_list(r, rf->x->vm, &snaps, &rf->e)))
        return;
    rf->snaps = g_ptr_array_new_full(snaps->len, info_free);
    for (guint i = 0; i < snaps->len; i++) {
        struct vbd_snapinfo *si = info_of(snaps->pdata[i]);
        /* stamped after it was read: settled only if it was before the read
         * began (a change meanwhile is read again next time) */
        if (!vb_snap_index_stamp(r, si->id, &si->istamp, NULL))
            si->istamp.settled = t0 - si->istamp.ctime_ns > 2000000000ll;
        g_ptr_array_add(rf->snaps, si);
    }
    g_ptr_array_free(snaps, TRUE);
}

static void refresh_start(struct idx *x);

static void refresh_done(struct vbd_task *task)
{
    struct refresh *rf = (struct refresh *)task;
    struct idx *x = rf->x;
    struct waiter *w;

    x->refreshing = false;
    if (!rf->err) {
        if (rf->snaps) {
            if (x->snaps)
                g_ptr_array_free(x->snaps, TRUE);
            x->snaps = rf->snaps;
        }
        x->stamp = rf->stamp;
    }
    /* the callbacks may ask again: they queue for the next refresh, as did
     * those who asked while this one ran (it may have listed before a
     * change they know of: their own commit) */
    while ((w = g_queue_pop_head(&rf->waiters))) {
        w->cb(w->opaque, rf->err ? NULL : x->snaps, rf->err ? vb_strerror(&rf->e) : NULL);
        g_free(w);
    }
    g_free(rf);
    if (!g_queue_is_empty(&x->waiters))
        refresh_start(x);
}

static void refresh_start(struct idx *x)
{
    struct refresh *rf = g_new0(struct refresh, 1);

    rf->task.work.fn = refresh_work;
    rf->task.done = refresh_done;
    rf->x = x;
    rf->had = x->snaps != NULL;
    rf->have = x->stamp;
    rf->waiters = x->waiters;
    g_queue_init(&x->waiters);
    x->refreshing = true;
    vbd_work_push(x->d, &rf->task);
}

void vbd_snapindex_get(struct vbd *d, struct vbd_target *t, const char *vm, vbd_snapindex_cb cb,
                       void *opaque)
{
    g_autofree char *key = g_strdup_printf("%p/%s", (void *)t, vm);
    struct idx *x;
    struct waiter *w = g_new0(struct waiter, 1);

    if (!d->snapindex)
        d->snapindex = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, idx_free);
    x = g_hash_table_lookup(d->snapindex, key);
    if (!x) {
        x = g_new0(struct idx, 1);
        x->d = d;
        x->t = t;
        x->vm = g_strdup(vm);
        g_queue_init(&x->waiters);
        g_hash_table_insert(d->snapindex, g_steal_pointer(&key), x);
    }
    w->cb = cb;
    w->opaque = opaque;
    g_queue_push_tail(&x->waiters, w);
    if (!x->refreshing)
        refresh_start(x);
}

void vbd_snapindex_fini(struct vbd *d)
{
    if (d->snapindex)
        g_hash_table_destroy(d->snapindex);
    d->snapindex = NULL;
}

/* Whether a snapshot whose roots are s->roots may hold path: a root is the
 * path, an ancestor of it, or below it.  "" (the root) holds everything. */
bool vbd_snapinfo_may_hold(const struct vbd_snapinfo *s, const char *path)
{
    size_t pl = strlen(path);
    const char *r = s->roots;

    if (!pl || !s->n_roots)
        return s->n_roots > 0;
    while (r) {
        const char *nl = strchr(r, '\n');
        size_t rl = nl ? (size_t)(nl - r) : strlen(r);
        size_t m = VB_MIN(rl, pl);
        if (!rl || (!memcmp(r, path, m) && (rl == pl || (rl < pl && path[rl] == '/') ||
                                            (pl < rl && r[pl] == '/'))))
            return true;
        r = nl ? nl + 1 : NULL;
    }
    return false;
}
