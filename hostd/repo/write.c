/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Write sessions of the version 2 engine (repo2.h): begin → put → commit or
 * abort.  docs/repository-v2.md, "Write sessions" and "Concurrency".
 *
 * Hot path: a put computes the keyed id and looks it up in the mapped
 * index (no lock, no allocation); a new blob is compressed and sealed into
 * the caller's codec buffer outside any lock, then copied into the open
 * pack of its type under the session's mutex.  A full pack is finished
 * (trailer, SHA-256) by the put that filled it, outside the mutex, and
 * queued for the upload threads; at most upload_threads + 1 packs are in
 * flight, so memory is bounded by that many packs.
 */
#include "repo2-int.h"

#include <malloc.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- a set of ids, open addressing, ids inline (no allocation per id) ------------------ */

struct idset {
    uint8_t *ids;                /* cap x 32 */
    uint8_t *used;               /* cap bits */
    size_t cap, n;
};

static size_t idset_slot(const struct idset *s, const uint8_t id[VB_HASH_LEN])
{
    uint64_t h;

    memcpy(&h, id, 8);           /* keyed ids are uniform */
    return (size_t)h & (s->cap - 1);
}

static bool idset_has(const struct idset *s, const uint8_t id[VB_HASH_LEN])
{
    if (!s->cap)
        return false;
    for (size_t i = idset_slot(s, id);; i = (i + 1) & (s->cap - 1)) {
        if (!(s->used[i / 8] & (1u << (i % 8))))
            return false;
        if (!memcmp(s->ids + i * VB_HASH_LEN, id, VB_HASH_LEN))
            return true;
    }
}

static void idset_put_raw(struct idset *s, const uint8_t id[VB_HASH_LEN])
{
    size_t i = idset_slot(s, id);

    while (s->used[i / 8] & (1u << (i % 8)))
        i = (i + 1) & (s->cap - 1);
    memcpy(s->ids + i * VB_HASH_LEN, id, VB_HASH_LEN);
    s->used[i / 8] |= (uint8_t)(1u << (i % 8));
    s->n++;
}

/* Add id (not present); -ENOMEM. */
static int idset_add(struct idset *s, const uint8_t id[VB_HASH_LEN])
{
    if ((s->n + 1) * 10 > s->cap * 7) {
        struct idset bigger = { .cap = s->cap ? 2 * s->cap : 1024 };
        bigger.ids = malloc(bigger.cap * VB_HASH_LEN);
        bigger.used = calloc(bigger.cap / 8, 1);
        if (!bigger.ids || !bigger.used) {
            free(bigger.ids);
            free(bigger.used);
            return -ENOMEM;
        }
        for (size_t i = 0; i < s->cap; i++)
            if (s->used[i / 8] & (1u << (i % 8)))
                idset_put_raw(&bigger, s->ids + i * VB_HASH_LEN);
        free(s->ids);
        free(s->used);
        *s = bigger;
    }
    idset_put_raw(s, id);
    return 0;
}

/* Remove id (a failed put); backward-shift deletion keeps probes intact. */
static void idset_del(struct idset *s, const uint8_t id[VB_HASH_LEN])
{
    size_t i, j;

    if (!s->cap)
        return;
    for (i = idset_slot(s, id);; i = (i + 1) & (s->cap - 1)) {
        if (!(s->used[i / 8] & (1u << (i % 8))))
            return;
        if (!memcmp(s->ids + i * VB_HASH_LEN, id, VB_HASH_LEN))
            break;
    }
    s->used[i / 8] &= (uint8_t)~(1u << (i % 8));
    s->n--;
    for (j = (i + 1) & (s->cap - 1); s->used[j / 8] & (1u << (j % 8));
         j = (j + 1) & (s->cap - 1)) {
        uint8_t moving[VB_HASH_LEN];
        memcpy(moving, s->ids + j * VB_HASH_LEN, VB_HASH_LEN);
        s->used[j / 8] &= (uint8_t)~(1u << (j % 8));
        s->n--;
        idset_put_raw(s, moving);
    }
}

static void idset_free(struct idset *s)
{
    free(s->ids);
    free(s->used);
    memset(s, 0, sizeof(*s));
}

/* ---- the session ------------------------------------------------------------------------ */

struct upload {
    uint8_t *data;
    size_t len;
    uint8_t id[VB_OBJ_ID_LEN];
    struct vb_pack_entry *ents;
    uint32_t count;
    unsigned ep;                      /* the epoch it was queued in (commit_one) */
};

struct vb2_write {
    struct vb2_repo *r;
    uint8_t idkey[VB_KEY_LEN];
    char vm[65];
    char *group;
    int64_t started_ns;
    struct vb_index_view *view;       /* the index at begin */
    uint8_t *skip;                    /* its condemned packs (bitmap), or NULL */

    GMutex mu;                        /* everything below */
    GCond cond;                       /* uploads done, room in flight, timer */
    int refs;
    unsigned puts;                    /* puts running */
    unsigned writing;                 /* commit running */
    bool ended, abort_wanted, failed;
    vb_error fail_err;
    struct vb_lease lease;
    bool lease_held, lease_lost;
    struct idset own;                 /* blobs stored (or being stored) here */
    struct vb_pack_writer *open[2];   /* data, meta */
    GArray *packs;                    /* struct vb_pack_id: uploaded, not yet indexed */
    GArray *ents;                     /* struct vb_index_entry, pack = ordinal into packs */
    unsigned index_files;
    GQueue queue;                     /* struct upload * waiting */
    unsigned inflight;                /* queued + uploading */
    unsigned max_inflight;
    bool stop_threads;
    GThread **uploaders;
    unsigned nuploaders;
    GThread *timer;
    bool timer_stop;
    GPtrArray *sinks;                 /* stream sinks of vb2_write_stream_new */
    GPtrArray *spare;                 /* buffers of uploaded packs, for the next ones: a
                                       * fresh pack-sized buffer costs a page fault per
                                       * page, more than the copy into it */
    struct vb2_write_stats st;        /* blobs_known: __atomic; the rest under mu */
    /* the budget (vb2_write_set_charge): called outside mu */
    int (*charge)(void *opaque, int64_t bytes, vb_error *e);
    void *charge_opaque;
    void (*charge_release)(void *opaque);
    uint64_t manifest_bytes;          /* the committed manifest's stored length */
    /* shared sessions (vb2_write_commit_one) */
    bool shared;
    bool draining;                    /* a commit waits for running puts: new ones wait */
    unsigned epoch;                   /* commits so far; uploads queued in epoch e count in */
    unsigned inflight_ep[2];          /* inflight_ep[e & 1] (commits take turns: at most
                                       * two epochs have uploads in flight) */
    GMutex commit_mu;                 /* commits take turns */
};

/* Under mu: remember the first failure; the session can no longer commit. */
static void fail_locked(struct vb2_write *w, int ret, const vb_error *e)
{
    if (!w->failed) {
        w->failed = true;
        if (e)
            w->fail_err = *e;
        else
            vb_seterr(&w->fail_err, ret, "%s", strerror(-ret));
    }
}

static void upload_free(struct upload *u)
{
    if (!u)
        return;
    free(u->data);
    free(u->ents);
    free(u);
}

/* Under mu: an upload is over (done, failed or dropped). */
static void upload_over_locked(struct vb2_write *w, struct upload *u)
{
    w->inflight--;
    w->inflight_ep[u->ep & 1]--;
    g_cond_broadcast(&w->cond);
}

/* Put the uploaded packs' entries into an index file now (bounded memory).
 * Called with mu held; drops it while writing. */
static void spill_locked(struct vb2_write *w)
{
    GArray *packs = w->packs, *ents = w->ents;
    vb_error e = { 0 };
    unsigned n = 0;
    int ret;

    w->packs = g_array_new(FALSE, FALSE, sizeof(struct vb_pack_id));
    w->ents = g_array_new(FALSE, FALSE, sizeof(struct vb_index_entry));
    w->inflight++;                    /* the commit waits for this too */
    g_mutex_unlock(&w->mu);
    ret = vb2_put_index(w->r, (struct vb_index_entry *)ents->data, ents->len,
                        (const struct vb_pack_id *)packs->data, packs->len, &n, &e);
    g_mutex_lock(&w->mu);
    w->index_files += n;
    if (ret)
        fail_locked(w, ret, &e);
    w->inflight--;
    g_cond_broadcast(&w->cond);
    g_array_free(packs, TRUE);
    g_array_free(ents, TRUE);
}

static gpointer uploader(gpointer opaque)
{
    struct vb2_write *w = opaque;

    g_mutex_lock(&w->mu);
    for (;;) {
        struct upload *u;
        char name[VB_OBJ_NAME_MAX];
        vb_error e = { 0 };
        int ret;

        while (!w->stop_threads && g_queue_is_empty(&w->queue))
            g_cond_wait(&w->cond, &w->mu);
        if (g_queue_is_empty(&w->queue))
            break;
        u = g_queue_pop_head(&w->queue);
        if (w->ended && !w->writing) {
            /* aborted: what is queued is garbage anyway */
            upload_over_locked(w, u);
            upload_free(u);
            continue;
        }
        g_mutex_unlock(&w->mu);
        vb_obj_name(VB_OBJ_PACK, u->id, name);
        ret = vb_store_put(w->r->s, name, u->data, u->len, VB_PUT_NOREPLACE, &e);
        if (ret == -EEXIST)
            ret = 0;                  /* the same bytes: its name is their hash */
        g_mutex_lock(&w->mu);
        if (ret) {
            vb_prefixerr(&e, "upload pack");
            fail_locked(w, ret, &e);
        } else {
            uint32_t ord = w->packs->len;
            g_array_append_vals(w->packs, u->id, 1);
            for (uint32_t i = 0; i < u->count; i++) {
                const struct vb_pack_entry *pe = &u->ents[i];
                struct vb_index_entry x = { .pack = ord, .offset = (uint32_t)pe->offset,
                                            .stored_len = pe->stored_len,
                                            .plain_len = pe->plain_len, .type = pe->type };
                memcpy(x.id, pe->id, VB_HASH_LEN);
                g_array_append_val(w->ents, x);
            }
            w->st.packs++;
            /* a shared session's commits write its index files (a commit
             * waits for its epoch's uploads, not for spills) */
            if (!w->shared && w->ents->len >= w->r->index_file_records)
                spill_locked(w);
        }
        /* its buffer serves the next pack */
        if (u->data && w->spare->len < 2) {        /* the open packs and one more */
            g_ptr_array_add(w->spare, u->data);
            u->data = NULL;
        }
        upload_over_locked(w, u);
        upload_free(u);
    }
    g_mutex_unlock(&w->mu);
    return NULL;
}

/* Finish a full (or last) pack and queue it; waits while too many are in
 * flight.  Not under mu. */
static int ship(struct vb2_write *w, struct vb_pack_writer *pw, vb_error *e)
{
    struct upload *u = calloc(1, sizeof(*u));
    const struct vb_pack_entry *ents;
    int ret;

    if (!u) {
        vb_pack_writer_free(pw);
        return vb_seterr(e, -ENOMEM, "out of memory");
    }
    ents = vb_pack_entries(pw, &u->count);
    u->ents = malloc(VB_MAX(u->count, 1u) * sizeof(*u->ents));
    if (!u->ents) {
        vb_pack_writer_free(pw);
        upload_free(u);
        return vb_seterr(e, -ENOMEM, "out of memory");
    }
    memcpy(u->ents, ents, u->count * sizeof(*u->ents));
    ret = vb_pack_finish(pw, &u->data, &u->len, u->id, e);
    vb_pack_writer_free(pw);
    if (ret) {
        upload_free(u);
        return ret;
    }
    g_mutex_lock(&w->mu);
    while (w->inflight >= w->max_inflight && !(w->ended && !w->writing))
        g_cond_wait(&w->cond, &w->mu);
    if (w->ended && !w->writing) {
        g_mutex_unlock(&w->mu);
        upload_free(u);
        return vb_seterr(e, -ECANCELED, "the backup was aborted");
    }
    w->inflight++;
    u->ep = w->epoch;
    w->inflight_ep[u->ep & 1]++;
    g_queue_push_tail(&w->queue, u);
    g_cond_broadcast(&w->cond);
    g_mutex_unlock(&w->mu);
    return 0;
}

/*
 * After the manifest's put: the lease must still be safe.  The put may take
 * long (an S3 put retried for minutes while the store is unwell); if the
 * lease could have expired meanwhile, a gc elsewhere may have judged this
 * writer gone and deleted packs only this snapshot uses.  Safe now and never
 * lost means safe all along (a refresh is refused once the lease is unsafe,
 * and that marks it lost), so the snapshot stands; otherwise it is withdrawn
 * (a committed snapshot must restore), or, when even that fails, named for
 * verify.
 */
static int check_lease_after_put(struct vb2_write *w, const char *name, const char *id,
                                 vb_error *e)
{
    struct vb2_repo *r = w->r;
    vb_error re = { 0 };
    bool safe;

    g_mutex_lock(&w->mu);
    safe = !w->lease_lost && vb_lease_safe(&w->lease, vb_lease_mono_now(), r->lease_expiry_ns,
                                           r->lease_margin_ns);
    g_mutex_unlock(&w->mu);
    if (safe)
        return 0;
    if (!vb_store_remove(r->s, name, &re) && !vb_store_sync(r->s, &re))
        return vb_seterr(e, -ESTALE, "the snapshot's manifest was stored only after the "
                         "session's lease %s may have expired (a gc may have removed its "
                         "data meanwhile): withdrawn, not committed", w->lease.name);
    return vb_seterr(e, -ESTALE, "the snapshot's manifest was stored only after the session's "
                     "lease %s may have expired (a gc may have removed its data meanwhile), "
                     "and withdrawing it failed (%s): snapshot %s may not restore; check it "
                     "with verify --read-data", w->lease.name, vb_strerror(&re), id);
}

static gpointer lease_timer(gpointer opaque)
{
    struct vb2_write *w = opaque;
    struct vb2_repo *r = w->r;

    g_mutex_lock(&w->mu);
    while (!w->timer_stop) {
        gint64 deadline = g_get_monotonic_time() + r->lease_refresh_ns / 1000;
        struct vb_lease copy;
        vb_error e = { 0 };
        int ret;

        while (!w->timer_stop && g_get_monotonic_time() < deadline)
            g_cond_wait_until(&w->cond, &w->mu, deadline);
        if (w->timer_stop || !w->lease_held)
            break;
        copy = w->lease;
        g_mutex_unlock(&w->mu);
        ret = vb_lease_refresh(r->s, &copy, r->lease_expiry_ns, r->lease_margin_ns, &e);
        g_mutex_lock(&w->mu);
        if (!ret && w->lease_held) {
            w->lease.stamp_ns = copy.stamp_ns;
            w->lease.mono_ns = copy.mono_ns;
        } else if (ret == -ESTALE) {
            /* it may have expired, or is gone: never commit now */
            w->lease_lost = true;
            fail_locked(w, ret, &e);
            break;
        }
        /* other errors: try again next time; vb_lease_safe decides at commit */
    }
    g_mutex_unlock(&w->mu);
    return NULL;
}

/* Stop the lease timer; the lease is then never refreshed again. */
static void stop_timer(struct vb2_write *w)
{
    GThread *t;

    g_mutex_lock(&w->mu);
    w->timer_stop = true;
    t = w->timer;
    w->timer = NULL;
    g_cond_broadcast(&w->cond);
    g_mutex_unlock(&w->mu);
    if (t)
        g_thread_join(t);
}

/* Stop the threads (after the last upload the caller waited for). */
static void stop_threads(struct vb2_write *w)
{
    GThread **th;
    unsigned n;

    stop_timer(w);
    g_mutex_lock(&w->mu);
    w->stop_threads = true;
    th = w->uploaders;
    n = w->nuploaders;
    w->nuploaders = 0;
    g_cond_broadcast(&w->cond);
    g_mutex_unlock(&w->mu);
    for (unsigned i = 0; i < n; i++)
        if (th[i])
            g_thread_join(th[i]);
}

int vb2_write_begin(struct vb2_repo *r, const struct vb2_write_opts *o, struct vb2_write **out,
                    vb_error *e)
{
    struct vb2_write *w;
    GPtrArray *condemned = NULL;
    int ret;

    *out = NULL;
    if (r->readonly)
        return vb_seterr(e, -EROFS, "begin a backup: the repository was opened read-only");
    char probe[VB_SNAP_ID_MAX];

    if (!o || (!o->shared && (!o->vm || vb_snap_id_make(o->vm, 0, 0, probe, NULL))))
        return vb_seterr(e, -EINVAL, "begin a backup: '%s' is not a valid VM name (letters, "
                         "digits, . _ -; at most 64)", o && o->vm ? o->vm : "(none)");
    w = calloc(1, sizeof(*w));
    if (!w)
        return vb_seterr(e, -ENOMEM, "out of memory");
    w->r = r;
    w->shared = o->shared;
    g_mutex_init(&w->commit_mu);
    snprintf(w->vm, sizeof(w->vm), "%s", o->vm ? o->vm : "(shared)");
    if (o->dedup_group && *o->dedup_group)
        w->group = strdup(o->dedup_group);
    g_mutex_init(&w->mu);
    g_cond_init(&w->cond);
    w->refs = 1;
    w->started_ns = vb_wall_ns();
    w->packs = g_array_new(FALSE, FALSE, sizeof(struct vb_pack_id));
    w->ents = g_array_new(FALSE, FALSE, sizeof(struct vb_index_entry));
    g_queue_init(&w->queue);
    w->sinks = g_ptr_array_new_with_free_func(free);
    w->spare = g_ptr_array_new_with_free_func(free);
    w->max_inflight = r->upload_threads + 1;
    ret = vb2_group_key(r, w->group, w->idkey, e);
    if (ret)
        goto fail;

    /* 1. the lease is visible ... */
    ret = vb_lease_create(r->s, "backup", &w->lease, e);
    if (ret)
        goto fail;
    w->lease_held = true;
    /* 2. ... before the condemned lists are read (one that vanished while
     * being read: gc deleted its packs; read them all again) ... */
    for (int tries = 0;; tries++) {
        ret = vb_condemned_read_all(r->s, &condemned, e);
        if (ret != -EAGAIN || tries >= 10)
            break;
    }
    if (ret)
        goto fail;
    /* 3. ... and the index is read after them */
    ret = vb_index_cache_refresh(r->cache, r->s, &r->keys, NULL, e);
    if (!ret)
        ret = vb_index_cache_view(r->cache, &w->view, e);
    if (ret)
        goto fail;
    w->skip = vb_index_view_skip_condemned(w->view, condemned);
    g_ptr_array_free(condemned, TRUE);
    condemned = NULL;

    w->uploaders = calloc(r->upload_threads, sizeof(*w->uploaders));
    if (!w->uploaders) {
        ret = vb_seterr(e, -ENOMEM, "out of memory");
        goto fail;
    }
    for (unsigned i = 0; i < r->upload_threads; i++)
        w->uploaders[w->nuploaders++] = g_thread_new("vb-upload", uploader, w);
    w->timer = g_thread_new("vb-lease", lease_timer, w);
    *out = w;
    return 0;
fail:
    vb_prefixerr(e, "begin a backup of %s", o->vm);
    if (condemned)
        g_ptr_array_free(condemned, TRUE);
    if (w->lease_held)
        vb_lease_remove(r->s, &w->lease, NULL);
    w->lease_held = false;
    w->ended = true;
    w->refs = 0;
    vb2_write_unref(w);
    return ret;
}

struct vb2_write *vb2_write_ref(struct vb2_write *w)
{
    g_mutex_lock(&w->mu);
    w->refs++;
    g_mutex_unlock(&w->mu);
    return w;
}

/* Under mu: the session ends without a snapshot. */
static void end_locked(struct vb2_write *w)
{
    struct upload *u;

    w->ended = true;
    /* what is still queued is garbage: drop it */
    while ((u = g_queue_pop_head(&w->queue))) {
        upload_over_locked(w, u);
        upload_free(u);
    }
    for (int t = 0; t < 2; t++) {
        vb_pack_writer_free(w->open[t]);
        w->open[t] = NULL;
    }
    g_cond_broadcast(&w->cond);
}

/* The lease goes once the session ended (abort); not under mu. */
static void release_lease(struct vb2_write *w)
{
    struct vb_lease l;
    bool held;

    stop_timer(w);            /* a refresh in flight must not put it back */
    g_mutex_lock(&w->mu);
    held = w->lease_held;
    w->lease_held = false;
    l = w->lease;
    g_mutex_unlock(&w->mu);
    if (held)
        vb_lease_remove(w->r->s, &l, NULL);
}

void vb2_write_unref(struct vb2_write *w)
{
    bool last;

    if (!w)
        return;
    g_mutex_lock(&w->mu);
    last = w->refs <= 1;
    if (w->refs > 0)
        w->refs--;
    if (last && !w->ended)
        end_locked(w);
    g_mutex_unlock(&w->mu);
    if (!last)
        return;
    stop_threads(w);
    release_lease(w);
    {
        struct upload *u;
        while ((u = g_queue_pop_head(&w->queue)))
            upload_free(u);
    }
    for (int t = 0; t < 2; t++)
        vb_pack_writer_free(w->open[t]);
    vb_index_view_unref(w->view);
    free(w->skip);
    idset_free(&w->own);
    g_array_free(w->packs, TRUE);
    g_array_free(w->ents, TRUE);
    free(w->uploaders);
    g_ptr_array_free(w->sinks, TRUE);
    g_ptr_array_free(w->spare, TRUE);
    free(w->group);
    if (w->charge_release)
        w->charge_release(w->charge_opaque);
    OPENSSL_cleanse(w->idkey, sizeof(w->idkey));
    g_cond_clear(&w->cond);
    g_mutex_clear(&w->mu);
    g_mutex_clear(&w->commit_mu);
    free(w);
}

void vb2_write_set_charge(struct vb2_write *w,
                          int (*charge)(void *opaque, int64_t bytes, vb_error *e), void *opaque,
                          void (*release)(void *opaque))
{
    void (*old_release)(void *) = NULL;
    void *old_opaque = NULL;

    g_mutex_lock(&w->mu);
    old_release = w->charge_release;
    old_opaque = w->charge_opaque;
    w->charge = charge;
    w->charge_opaque = opaque;
    w->charge_release = release;
    g_mutex_unlock(&w->mu);
    /* the budget replaced is never released at the session's end: now */
    if (old_release)
        old_release(old_opaque);
}

uint64_t vb2_write_added(struct vb2_write *w)
{
    uint64_t n;

    g_mutex_lock(&w->mu);
    n = w->st.stored_new + w->manifest_bytes;
    g_mutex_unlock(&w->mu);
    return n;
}

/* Charge bytes: 0, or the refusal (a negative errno) with its reason in e. */
static int charge_now(int (*charge)(void *, int64_t, vb_error *), void *opaque, int64_t bytes,
                      vb_error *e)
{
    vb_error why = { 0 };
    int ret = charge(opaque, bytes, &why);

    if (ret >= 0)
        return 0;
    if (why.code || why.msg[0]) {
        if (e) {
            *e = why;
            e->code = ret;
        }
        return ret;
    }
    return vb_seterr(e, ret, "the budget refused %lld bytes: %s", (long long)bytes,
                     strerror(-ret));
}

/* Give back bytes charged for what was not added (never refused). */
static void give_back(int (*charge)(void *, int64_t, vb_error *), void *opaque, int64_t bytes)
{
    vb_error ignored = { 0 };

    if (charge && bytes > 0)
        charge(opaque, -bytes, &ignored);
}

void vb2_write_abort(struct vb2_write *w)
{
    bool ended_now = false;

    if (!w)
        return;
    g_mutex_lock(&w->mu);
    if (!w->ended) {
        if (w->writing) {
            w->abort_wanted = true;   /* refused at the commit point */
        } else {
            end_locked(w);
            ended_now = true;
        }
    }
    g_mutex_unlock(&w->mu);
    if (ended_now)
        release_lease(w);
}

int vb2_write_id(struct vb2_write *w, const void *data, size_t len, uint8_t id[VB_HASH_LEN])
{
    return vb_keyed_id(w->idkey, data, len, id);
}

bool vb2_write_has(struct vb2_write *w, const uint8_t id[VB_HASH_LEN])
{
    bool has;

    if (vb_index_view_find(w->view, id, w->skip, NULL) == 1)
        return true;
    g_mutex_lock(&w->mu);
    has = idset_has(&w->own, id);
    g_mutex_unlock(&w->mu);
    return has;
}

/* The codec's second buffer holds the encoded blob (pack.c uses c->buf). */
static int encode_room(struct vb_codec *c, size_t need)
{
    uint8_t *p;

    if (c->rcap >= need)
        return 0;
    p = realloc(c->rbuf, need);
    if (!p)
        return -ENOMEM;
    c->rbuf = p;
    c->rcap = need;
    return 0;
}

/* b: the caller's budget, or NULL: the session's. */
static int put_blob(struct vb2_write *w, struct vb_codec *c, enum vb_blob_type t,
                    const void *data, size_t len, uint8_t id[VB_HASH_LEN], uint32_t *stored,
                    const struct vb2_budget *b, vb_error *e)
{
    struct vb_pack_entry ent = { .type = (uint8_t)t };
    struct vb_pack_writer *full = NULL;
    int (*charge)(void *, int64_t, vb_error *);
    void *charge_opaque;
    int64_t charged = 0;
    size_t slen = 0;
    bool refused = false;
    int ret, slot = t == VB_BLOB_META;

    if (stored)
        *stored = 0;
    if (t != VB_BLOB_DATA && t != VB_BLOB_META)
        return vb_seterr(e, -EINVAL, "put: unknown blob type %d", (int)t);
    if (len > VB_BLOB_MAX)
        return vb_seterr(e, -EFBIG, "put: blob of %zu bytes (at most %u)", len, VB_BLOB_MAX);
    ret = vb_keyed_id(w->idkey, data, len, id);
    if (ret)
        return vb_seterr(e, ret, "put: keyed id: libcrypto failed");
    /* known to the index, in a pack that is not condemned: no lock needed */
    if (vb_index_view_find(w->view, id, w->skip, NULL) == 1) {
        __atomic_fetch_add(&w->st.blobs_known, 1, __ATOMIC_RELAXED);
        return 0;
    }
    g_mutex_lock(&w->mu);
    /* a commit of a shared session is making every blob in `own` reach a
     * pack: none may join it until then */
    while (w->draining && !w->ended)
        g_cond_wait(&w->cond, &w->mu);
    if (w->ended || w->abort_wanted) {
        g_mutex_unlock(&w->mu);
        return vb_seterr(e, -ECANCELED, "the backup was aborted");
    }
    if (idset_has(&w->own, id)) {
        /* stored or being stored here (should that fail, the session fails) */
        __atomic_fetch_add(&w->st.blobs_known, 1, __ATOMIC_RELAXED);
        g_mutex_unlock(&w->mu);
        return 0;
    }
    if (idset_add(&w->own, id)) {
        g_mutex_unlock(&w->mu);
        return vb_seterr(e, -ENOMEM, "out of memory");
    }
    w->puts++;
    charge = b ? b->charge : w->charge;
    charge_opaque = b ? b->opaque : w->charge_opaque;
    g_mutex_unlock(&w->mu);

    /* the budget: the most this blob can add, before anything is spent on
     * it; what encoding saves is given back below */
    ret = 0;
    if (charge) {
        charged = (int64_t)vb_blob_bound(&w->r->keys, len);
        ret = charge_now(charge, charge_opaque, charged, e);
        if (ret) {
            charged = 0;
            refused = true;
        }
    }
    vb_codec_set_level(c, w->r->zstd_level);
    if (!ret && encode_room(c, vb_blob_bound(&w->r->keys, len)))
        ret = vb_seterr(e, -ENOMEM, "out of memory");
    if (!ret)
        ret = vb_blob_encode(c, &w->r->keys, id, data, len, c->rbuf, c->rcap, &slen, &ent.comp,
                             e);

    g_mutex_lock(&w->mu);
    if (!ret && (w->ended || w->abort_wanted))
        ret = vb_seterr(e, -ECANCELED, "the backup was aborted");
    if (!ret && !w->open[slot]) {
        uint8_t *buf = w->spare->len ? g_ptr_array_steal_index_fast(w->spare,
                                                                     w->spare->len - 1) : NULL;
        w->open[slot] = vb2_pack_new_buf(w->r, c, buf, buf ? malloc_usable_size(buf) : 0, e);
        if (!w->open[slot])
            ret = e && e->code ? e->code : -ENOMEM;
    }
    if (!ret) {
        ent.plain_len = (uint32_t)len;
        ent.stored_len = (uint32_t)slen;
        memcpy(ent.id, id, VB_HASH_LEN);
        ret = vb_pack_add_encoded(w->open[slot], &ent, c->rbuf, e);
    }
    if (!ret) {
        w->st.blobs_new++;
        w->st.bytes_new += len;
        w->st.stored_new += slen;
        if (stored)
            *stored = (uint32_t)slen;
        if (vb_pack_full(w->open[slot])) {
            full = w->open[slot];
            w->open[slot] = NULL;
        }
    }
    g_mutex_unlock(&w->mu);
    /* in a pack now: the charge stands for its stored bytes; otherwise it
     * was not added and all of it goes back.  (A pack that then fails to
     * upload fails the session; its blobs stay charged.) */
    give_back(charge, charge_opaque, ret ? charged : charged - (int64_t)slen);

    if (full)
        ret = ship(w, full, e);

    g_mutex_lock(&w->mu);
    if (ret) {
        /* a refused charge added nothing: in a shared session it is the
         * job's failure, not the session's */
        if (ret != -ECANCELED && !(refused && w->shared))
            fail_locked(w, ret, e);
        idset_del(&w->own, id);
    }
    w->puts--;
    if (w->draining && !w->puts)      /* otherwise nobody waits: no wake-up, no syscall */
        g_cond_broadcast(&w->cond);
    g_mutex_unlock(&w->mu);
    return ret ? ret : 1;
}

int vb2_write_put(struct vb2_write *w, struct vb_codec *c, enum vb_blob_type t,
                  const void *data, size_t len, uint8_t id[VB_HASH_LEN], uint32_t *stored,
                  vb_error *e)
{
    return put_blob(w, c, t, data, len, id, stored, NULL, e);
}

int vb2_write_put_budget(struct vb2_write *w, struct vb_codec *c, enum vb_blob_type t,
                         const void *data, size_t len, uint8_t id[VB_HASH_LEN],
                         uint32_t *stored, const struct vb2_budget *b, vb_error *e)
{
    static const struct vb2_budget none = { 0 };

    return put_blob(w, c, t, data, len, id, stored, b ? b : &none, e);
}

/* ---- streams ---------------------------------------------------------------------------------- */

struct stream_sink {
    struct vb2_write *w;
    struct vb_codec *c;
};

static int stream_put(void *opaque, const void *data, size_t len, uint8_t id[VB_HASH_LEN],
                      vb_error *e)
{
    struct stream_sink *s = opaque;
    int ret = vb2_write_put(s->w, s->c, VB_BLOB_META, data, len, id, NULL, e);

    return ret < 0 ? ret : 0;
}

int vb2_write_stream(struct vb2_write *w, struct vb_codec *c, const void *data, size_t len,
                     struct vb_stream_ref *out, vb_error *e)
{
    struct stream_sink sink = { w, c };

    return vb_stream_put_all(data, len, stream_put, &sink, out, e);
}

struct vb_stream_writer *vb2_write_stream_new(struct vb2_write *w, struct vb_codec *c)
{
    /* the sink lives as long as the session, which outlives its writers */
    struct stream_sink *sink = malloc(sizeof(*sink));
    struct vb_stream_writer *sw;

    if (!sink)
        return NULL;
    sink->w = w;
    sink->c = c;
    sw = vb_stream_writer_new(stream_put, sink);
    if (!sw) {
        free(sink);
        return NULL;
    }
    g_mutex_lock(&w->mu);
    g_ptr_array_add(w->sinks, sink);
    g_mutex_unlock(&w->mu);
    return sw;
}

/* ---- commit ---------------------------------------------------------------------------------- */

/* Pick the first free "<vm>/<time>[-n]" among the snapshots listed now. */
static int pick_id(struct vb2_write *w, const char *vm, int64_t created_ns, char *id,
                   vb_error *e)
{
    GPtrArray *list;
    int ret = vb2_snap_list(w->r, vm, &list, NULL, e);

    if (ret)
        return ret;
    for (unsigned n = 1; n <= 99999; n++) {
        bool taken = false;
        ret = vb_snap_id_make(vm, created_ns, n, id, e);
        if (ret)
            break;
        for (guint i = 0; i < list->len && !taken; i++)
            taken = !strcmp(((struct vb_manifest *)list->pdata[i])->id, id);
        if (!taken)
            break;
        ret = -EEXIST;
    }
    g_ptr_array_free(list, TRUE);
    if (ret == -EEXIST)
        ret = vb_seterr(e, -EEXIST, "too many snapshots of %s in one second", vm);
    return ret;
}

/* The caller's id (a copy keeps its snapshot's): valid, of this VM, and free. */
static int keep_id(struct vb2_write *w, const char *id, vb_error *e)
{
    size_t n = strlen(w->vm);
    GPtrArray *list;
    int ret;

    if (!vb_snap_id_valid(id) || strncmp(id, w->vm, n) || id[n] != '/')
        return vb_seterr(e, -EINVAL, "'%s' is not a snapshot id of VM %s", id, w->vm);
    if ((ret = vb2_snap_list(w->r, w->vm, &list, NULL, e)))
        return ret;
    for (guint i = 0; i < list->len && !ret; i++)
        if (!strcmp(((struct vb_manifest *)list->pdata[i])->id, id))
            ret = vb_seterr(e, -EEXIST, "snapshot %s exists already", id);
    g_ptr_array_free(list, TRUE);
    return ret;
}

/* Ship the packs a commit took from the session (after a failure: free them). */
static int ship_last(struct vb2_write *w, struct vb_pack_writer *last[2], vb_error *e)
{
    int ret = 0;

    for (int t = 0; t < 2; t++) {
        if (last[t] && !ret)
            ret = ship(w, last[t], e);
        else
            vb_pack_writer_free(last[t]);
    }
    return ret;
}

int vb2_write_commit(struct vb2_write *w, struct vb_manifest *m, char **id_out, vb_error *e)
{
    struct vb2_repo *r = w->r;
    struct vb_pack_writer *last[2];
    uint8_t obj[16], *stored = NULL;
    char name[VB_OBJ_NAME_MAX];
    int (*charge)(void *, int64_t, vb_error *);
    void *charge_opaque;
    int64_t charged = 0;
    size_t len = 0;
    unsigned n = 0;
    int ret = 0;

    if (id_out)
        *id_out = NULL;
    if (w->shared)
        return vb_seterr(e, -EINVAL, "commit: a shared session commits with commit_one");
    g_mutex_lock(&w->mu);
    if (!m && !w->ended && !w->abort_wanted)
        ret = vb_seterr(e, -EINVAL, "commit without a manifest");
    else if (w->ended || w->abort_wanted)
        ret = vb_seterr(e, -ECANCELED, "the backup was aborted");
    else if (w->failed)
        ret = vb_seterr(e, w->fail_err.code ? w->fail_err.code : -EIO,
                        "a blob of this backup could not be stored: %s",
                        vb_strerror(&w->fail_err));
    else if (w->puts)
        ret = vb_seterr(e, -EBUSY, "commit while blobs are being stored");
    if (ret) {
        bool abort_now = !w->ended && !w->writing;
        if (abort_now)
            end_locked(w);
        g_mutex_unlock(&w->mu);
        if (abort_now)
            release_lease(w);
        return ret;
    }
    w->writing++;
    last[0] = w->open[0];
    last[1] = w->open[1];
    w->open[0] = w->open[1] = NULL;
    g_mutex_unlock(&w->mu);

    /* 1. the last packs, and every upload */
    ret = ship_last(w, last, e);
    g_mutex_lock(&w->mu);
    while (w->inflight)
        g_cond_wait(&w->cond, &w->mu);
    if (!ret && w->failed)
        ret = vb_seterr(e, w->fail_err.code ? w->fail_err.code : -EIO, "%s",
                        vb_strerror(&w->fail_err));
    g_mutex_unlock(&w->mu);

    /* 2. the session's index file(s), then everything durable */
    if (!ret)
        ret = vb2_put_index(r, (struct vb_index_entry *)w->ents->data, w->ents->len,
                            (const struct vb_pack_id *)w->packs->data, w->packs->len, &n, e);
    if (!ret)
        ret = vb_store_sync(r->s, e);

    /* 3. the manifest */
    if (!ret) {
        free(m->dedup_group);
        m->dedup_group = w->group ? strdup(w->group) : NULL;
        snprintf(m->vm, sizeof(m->vm), "%s", w->vm);
        if (!m->created_ns)
            m->created_ns = w->started_ns;
        ret = m->id[0] ? keep_id(w, m->id, e) : pick_id(w, w->vm, m->created_ns, m->id, e);
    }
    if (!ret)
        ret = vb2_random(obj, sizeof(obj), e);
    if (!ret) {
        vb_hex(obj, sizeof(obj), m->object);
        ret = vb_manifest_seal(&r->keys, m, &stored, &len, e);
    }
    /* the manifest is charged as blobs are, before it is written */
    g_mutex_lock(&w->mu);
    charge = w->charge;
    charge_opaque = w->charge_opaque;
    g_mutex_unlock(&w->mu);
    if (!ret && charge && !(ret = charge_now(charge, charge_opaque, (int64_t)len, e)))
        charged = (int64_t)len;
    if (!ret) {
        vb_obj_name(VB_OBJ_SNAPSHOT, obj, name);
        g_mutex_lock(&w->mu);
        /* the commit point, refused when an abort came first or the lease
         * may have expired (gc may have judged this writer gone).  The put
         * runs without the lock, so that the lease timer keeps refreshing
         * while it takes long (an abort asked meanwhile is too late). */
        if (w->abort_wanted)
            ret = vb_seterr(e, -ECANCELED, "the backup was aborted");
        else if (w->lease_lost ||
                 !vb_lease_safe(&w->lease, vb_lease_mono_now(), r->lease_expiry_ns,
                                r->lease_margin_ns))
            ret = vb_seterr(e, -ESTALE, "the session's lease %s may have expired: not "
                            "committing", w->lease.name);
        g_mutex_unlock(&w->mu);
        if (!ret)
            ret = vb_store_put(r->s, name, stored, len, VB_PUT_NOREPLACE | VB_PUT_SYNC, e);
        if (!ret)
            ret = check_lease_after_put(w, name, m->id, e);
    }
    if (!ret) {
        /* our own manifest goes to the cache as it is: nobody fetches it again */
        GByteArray b = { .data = stored, .len = (guint)len };
        vb2_snap_cache_put(r, m->object, &b);
        g_mutex_lock(&w->mu);
        w->manifest_bytes = len;
        g_mutex_unlock(&w->mu);
    } else {
        give_back(charge, charge_opaque, charged);
    }
    free(stored);
    if (!ret && id_out)
        *id_out = strdup(m->id);

    g_mutex_lock(&w->mu);
    w->index_files += n;
    w->writing--;
    end_locked(w);
    g_mutex_unlock(&w->mu);
    stop_threads(w);
    release_lease(w);
    if (ret)
        vb_prefixerr(e, "commit the backup of %s", w->vm);
    return ret;
}

int vb2_write_commit_one(struct vb2_write *w, struct vb_manifest *m, const char *vm,
                         const struct vb2_budget *b, char **id_out, vb_error *e)
{
    struct vb2_repo *r = w->r;
    struct vb_pack_writer *last[2] = { NULL, NULL };
    GArray *packs = NULL, *ents = NULL;
    uint8_t obj[16], *stored = NULL;
    char name[VB_OBJ_NAME_MAX], probe[VB_SNAP_ID_MAX];
    int64_t charged = 0;
    size_t len = 0;
    unsigned n = 0, old;
    int ret = 0;

    if (id_out)
        *id_out = NULL;
    if (!w->shared)
        return vb_seterr(e, -EINVAL, "commit_one: the session is not shared");
    if (!m || !vm || vb_snap_id_make(vm, 0, 0, probe, NULL))
        return vb_seterr(e, -EINVAL, "commit a backup: '%s' is not a valid VM name",
                         vm ? vm : "(none)");
    g_mutex_lock(&w->commit_mu);
    g_mutex_lock(&w->mu);
    if (w->ended || w->abort_wanted)
        ret = vb_seterr(e, -ECANCELED, "the backup was aborted");
    else if (w->failed)
        ret = vb_seterr(e, w->fail_err.code ? w->fail_err.code : -EIO,
                        "a blob of this backup could not be stored: %s",
                        vb_strerror(&w->fail_err));
    if (!ret) {
        /* 1. every blob in `own` reaches a pack: puts running finish, new
         * ones wait; then the open packs are this commit's to upload */
        w->draining = true;
        while (w->puts && !w->ended)
            g_cond_wait(&w->cond, &w->mu);
        last[0] = w->open[0];
        last[1] = w->open[1];
        w->open[0] = w->open[1] = NULL;
        w->draining = false;
        g_cond_broadcast(&w->cond);
        w->writing++;
    }
    g_mutex_unlock(&w->mu);
    if (ret) {
        g_mutex_unlock(&w->commit_mu);
        vb_prefixerr(e, "commit the backup of %s", vm);
        return ret;
    }

    /* 2. the open packs, and every upload queued before (not the ones
     * other jobs' puts queue meanwhile: their epoch is the next) */
    ret = ship_last(w, last, e);
    g_mutex_lock(&w->mu);
    old = w->epoch & 1;
    w->epoch++;
    while (w->inflight_ep[old] && !w->failed)
        g_cond_wait(&w->cond, &w->mu);
    if (!ret && w->failed)
        ret = vb_seterr(e, w->fail_err.code ? w->fail_err.code : -EIO, "%s",
                        vb_strerror(&w->fail_err));
    if (!ret) {
        packs = w->packs;
        ents = w->ents;
        w->packs = g_array_new(FALSE, FALSE, sizeof(struct vb_pack_id));
        w->ents = g_array_new(FALSE, FALSE, sizeof(struct vb_index_entry));
    }
    g_mutex_unlock(&w->mu);

    /* 3. an index file for what was uploaded since the last commit, then
     * everything durable */
    if (!ret && ents->len)
        ret = vb2_put_index(r, (struct vb_index_entry *)ents->data, ents->len,
                            (const struct vb_pack_id *)packs->data, packs->len, &n, e);
    if (!ret)
        ret = vb_store_sync(r->s, e);
    if (ret && ents) {
        /* uploaded, not indexed: a store that fails fails the session (its
         * packs are gc's) */
        g_mutex_lock(&w->mu);
        fail_locked(w, ret, e);
        g_mutex_unlock(&w->mu);
    }

    /* 4. the manifest */
    if (!ret) {
        free(m->dedup_group);
        m->dedup_group = w->group ? strdup(w->group) : NULL;
        snprintf(m->vm, sizeof(m->vm), "%s", vm);
        if (!m->created_ns)
            m->created_ns = vb_wall_ns();
        ret = m->id[0] ? vb_seterr(e, -EINVAL, "a shared session picks the snapshot's id")
                       : pick_id(w, vm, m->created_ns, m->id, e);
    }
    if (!ret)
        ret = vb2_random(obj, sizeof(obj), e);
    if (!ret) {
        vb_hex(obj, sizeof(obj), m->object);
        ret = vb_manifest_seal(&r->keys, m, &stored, &len, e);
    }
    if (!ret && b && b->charge && !(ret = charge_now(b->charge, b->opaque, (int64_t)len, e)))
        charged = (int64_t)len;
    if (!ret) {
        vb_obj_name(VB_OBJ_SNAPSHOT, obj, name);
        /* the commit point, refused when the lease may have expired (gc may
         * have judged this writer gone).  Nothing can abort a shared session
         * meanwhile: the caller holds a reference. */
        g_mutex_lock(&w->mu);
        if (w->lease_lost ||
            !vb_lease_safe(&w->lease, vb_lease_mono_now(), r->lease_expiry_ns,
                           r->lease_margin_ns))
            ret = vb_seterr(e, -ESTALE, "the session's lease %s may have expired: not "
                            "committing", w->lease.name);
        g_mutex_unlock(&w->mu);
        if (!ret)
            ret = vb_store_put(r->s, name, stored, len, VB_PUT_NOREPLACE | VB_PUT_SYNC, e);
        if (!ret)
            ret = check_lease_after_put(w, name, m->id, e);
    }
    if (!ret) {
        GByteArray gb = { .data = stored, .len = (guint)len };
        vb2_snap_cache_put(r, m->object, &gb);
        g_mutex_lock(&w->mu);
        w->manifest_bytes += len;
        g_mutex_unlock(&w->mu);
    } else if (b) {
        give_back(b->charge, b->opaque, charged);
    }
    free(stored);
    if (!ret && id_out)
        *id_out = strdup(m->id);
    if (packs)
        g_array_free(packs, TRUE);
    if (ents)
        g_array_free(ents, TRUE);

    g_mutex_lock(&w->mu);
    w->index_files += n;
    w->writing--;
    g_mutex_unlock(&w->mu);
    g_mutex_unlock(&w->commit_mu);
    if (ret)
        vb_prefixerr(e, "commit the backup of %s", vm);
    return ret;
}


void vb2_write_stats(struct vb2_write *w, struct vb2_write_stats *st)
{
    g_mutex_lock(&w->mu);
    *st = w->st;
    st->blobs_known = __atomic_load_n(&w->st.blobs_known, __ATOMIC_RELAXED);
    g_mutex_unlock(&w->mu);
}
