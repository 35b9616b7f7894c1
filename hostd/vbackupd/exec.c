/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Executing plans.  Each running files job advances window by window (4 MiB
 * of one file's data).  Opening a window asks the plan's reads for its
 * pieces: a read is issued once (io_uring, O_DIRECT when aligned) and its
 * bytes go to every window that needs them, so data that several jobs share
 * (clones on one base image) is read once; a read whose other consumers are
 * not yet open stays in a bounded cache.  A window whose pieces are all in
 * goes to a worker, in file order, for content-defined chunking, hashing,
 * deduplication, compression and storing.  When a job's last window is done,
 * a worker writes its catalog and commits the snapshot.
 */
#include "vbackupd.h"

#include <fcntl.h>
#include <glib-unix.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "diskbackup.h"
#include "disksink.h"
#include "escape.h"
#include "vbackup/protolib.h"

#define WINDOW (4u << 20)
#define FB_BUSY_MAX 2       /* fallback windows of one job with the workers at once */

static void pump(struct vbd *d);
static void check_job_done(struct vbd_job *j);
static void release_from_plan(struct vbd_job *j);
static void window_free_fb(struct vbd_window *w);

/* ---- buffers and counters --------------------------------------------------------- */

/* The shared pool of 4 MiB window buffers of plans: at most max_bufs in use. */
uint8_t *vbd_buf_get(struct vbd *d)
{
    uint8_t *b;

    if (d->bufs_in_use >= d->max_bufs)
        return NULL;
    b = g_queue_pop_head(&d->free_bufs);
    if (!b && !(b = aligned_alloc(4096, WINDOW)))
        return NULL;
    d->bufs_in_use++;
    return b;
}

void vbd_buf_put(struct vbd *d, uint8_t *b)
{
    if (!b)
        return;
    g_assert(d->bufs_in_use > 0);
    d->bufs_in_use--;
    g_queue_push_head(&d->free_bufs, b);
}

/* Work for the CPU workers, counted so that a shutdown waits for it. */
void vbd_work_push(struct vbd *d, struct vbd_task *t)
{
    d->tasks_out++;
    vb_workers_push(&d->wk, &t->work);
}

json_object *vbd_disks_json(GPtrArray *disks)
{
    json_object *a = json_object_new_array();

    for (guint i = 0; i < disks->len; i++) {
        struct vbd_disk *dk = disks->pdata[i];
        json_object *o = json_object_new_object();

        json_object_object_add(o, "serial", json_object_new_string(dk->serial));
        json_object_object_add(o, "image", json_object_new_string(dk->image));
        json_object_object_add(o, "format", json_object_new_string(dk->format));
        if (dk->backing_format)
            json_object_object_add(o, "backing_format", json_object_new_string(dk->backing_format));
        json_object_array_add(a, o);
    }
    return a;
}

void vbd_count_read(struct vbd *d, const char *path, uint64_t n)
{
    uint64_t *c = g_hash_table_lookup(d->bytes_by_file, path);

    if (!c) {
        c = g_new0(uint64_t, 1);
        g_hash_table_insert(d->bytes_by_file, g_strdup(path), c);
    }
    *c += n;
    d->bytes_read_total += n;
}

/* ---- the repository claim of a job ---------------------------------------------------- */

/* Begin a write session: it takes the repository's claim or lease and may
 * wait for the store, so it runs on a worker. */
int vbd_claim_work(struct vbd_target *t, const struct vbd_vm *vm, struct vb_sink **ws,
                   vb_error *e)
{
    return vbd_target_begin(t, vm, ws, e);
}

/* Whatever ends the job: the session ends (a commit already ended it) and the
 * claim goes once the puts still running come back. */
void vbd_job_unclaim(struct vbd_job *j)
{
    if (!j->ws)
        return;
    vb_sink_abort(j->ws);
    vb_sink_unref(j->ws);
    j->ws = NULL;
}

/* A job that waits (deferred) lets go of the repository, unless it has
 * stored chunks already (fallback data): those must survive a gc. */
void vbd_job_unclaim_idle(struct vbd_job *j)
{
    for (guint i = 0; j->entries && i < j->entries->len; i++) {
        struct vbd_entry *en = &g_array_index(j->entries, struct vbd_entry, i);
        if (en->data == VB_FD_FALLBACK && en->windows)
            return;
    }
    vbd_job_unclaim(j);
}

/* ---- chunking (worker threads) ---------------------------------------------------------- */

/* Store one chunk through the job's session (unless it is zeros: those are
 * recorded as written zeros, nothing stored); record it. */
static int emit_chunk(struct vbd_window *w, struct vb_codec *c, const uint8_t *data,
                      uint32_t len, uint64_t off, vb_error *e)
{
    struct vb_cat_chunk ch = { .offset = off, .len = len };
    uint32_t stored;
    int ret;

    if (vb_is_zero(data, len)) {
        ch.flags = VB_CATC_ZERO;
        g_array_append_val(w->chunks, ch);
        return 0;
    }
    ret = vb_sink_put(w->ws, c, data, len, ch.id, &stored, e);
    if (ret < 0)
        return ret;
    if (ret == 1) {
        w->bytes_new += len;
        w->stored += stored;
    } else {
        w->bytes_reused += len;
    }
    g_array_append_val(w->chunks, ch);
    return 0;
}

static void process_window(struct vb_work *work, struct vb_codec *c)
{
    struct vbd_window *w = (struct vbd_window *)work;
    const struct vb_cdc *cdc = &w->job->d->cdc;
    uint8_t *data, *tmp = NULL;
    uint32_t total, pos = 0;
    vb_error e = { 0 };
    int ret = 0;

    w->chunks = g_array_new(FALSE, FALSE, sizeof(struct vb_cat_chunk));
    if (w->err)
        return;
    /* compressed clusters of qcow2 images */
    for (uint32_t i = 0; w->plan && i < w->n_pieces && !ret; i++) {
        struct vbd_piece *pc = &g_array_index(w->job->pieces, struct vbd_piece, w->first_piece + i);
        uint32_t cs;
        if (pc->kind != P_COMP)
            continue;
        cs = vb_image_layer_cluster_size(w->img, pc->depth);
        tmp = tmp ? tmp : g_malloc(2u << 20);
        ret = vb_image_inflate(w->img, pc->depth, pc->comp, pc->comp_len, tmp, &e);
        if (!ret)
            memcpy(w->buf + pc->win_off, tmp + pc->cluster_off,
                   VB_MIN(pc->len, (uint32_t)(cs - pc->cluster_off)));
        g_free(pc->comp);
        pc->comp = NULL;
    }
    g_free(tmp);
    if (ret) {
        w->err = ret;
        w->emsg = g_strdup(vb_strerror(&e));
        return;
    }
    /* the carry from the previous window of the file, then this window */
    total = w->carry_len + w->len;
    if (w->carry_len) {
        data = g_malloc(total);
        memcpy(data, w->carry, w->carry_len);
        memcpy(data + w->carry_len, w->buf, w->len);
    } else {
        data = w->buf;
        w->carry_off = w->off;
    }
    while (pos < total && !ret) {
        uint32_t avail = total - pos, n = (uint32_t)vb_cdc_cut(cdc, data + pos, avail);
        if (n == avail && !w->region_end && avail < cdc->max)
            break;                      /* wait for the next window */
        ret = emit_chunk(w, c, data + pos, n, w->carry_off + pos, &e);
        pos += n;
    }
    if (ret) {
        w->err = ret;
        w->emsg = g_strdup(vb_strerror(&e));
    }
    g_free(w->carry);
    w->carry = NULL;
    if (!ret && pos < total) {
        w->carry = g_memdup2(data + pos, total - pos);
        w->carry_off += pos;
        w->carry_len = total - pos;
    } else {
        w->carry_len = 0;
    }
    if (data != w->buf)
        g_free(data);
}

/* ---- windows, main thread ---------------------------------------------------------------- */

static struct vbd_entry *entry_of(struct vbd_window *w)
{
    return &g_array_index(w->job->entries, struct vbd_entry, w->file);
}

static gint by_seq(gconstpointer a, gconstpointer b, gpointer u)
{
    const struct vbd_window *x = a, *y = b;

    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void window_done(struct vbd_task *t);
static void drop_ready(struct vbd_job *j);
static void try_submit(struct vbd_job *j, struct vbd_entry *en);

static bool job_over(const struct vbd_job *j)
{
    return j->state == VB_JOB_FAILED || j->state == VB_JOB_CANCELLED || !j->entries;
}

static gboolean on_claim_retry(gpointer opaque);
static void fb_resubmit(struct vbd_job *j);

struct claim_task {
    struct vbd_task task;    /* first */
    struct vbd_job *job;     /* a reference */
    struct vb_sink *ws;
    int err;
    vb_error e;
};

static void claim_work(struct vb_work *work, struct vb_codec *c)
{
    struct claim_task *ct = (struct claim_task *)work;

    ct->err = vbd_claim_work(ct->job->target, ct->job->vm, &ct->ws, &ct->e);
}

static void claim_done(struct vbd_task *t)
{
    struct claim_task *ct = (struct claim_task *)t;
    struct vbd_job *j = ct->job;
    struct vbd *d = j->d;

    j->claiming = false;
    if (job_over(j) || j->ws) {
        if (ct->ws) {
            vb_sink_abort(ct->ws);
            vb_sink_unref(ct->ws);
        }
    } else if (!ct->err) {
        j->ws = ct->ws;
        vbd_quota_attach(j);            /* what it stores counts against the VM's quotas */
        vbd_journal_running(j);         /* names the session: a restart finds its snapshot */
        if (j->claim_waited)
            vbd_log("job %llu: repository %s claimed, fallback data goes on",
                    (unsigned long long)j->id, j->target->name);
        fb_resubmit(j);
    } else if (ct->err == -EBUSY) {
        if (!j->claim_waited)
            vbd_log("job %llu: fallback data waits: %s", (unsigned long long)j->id,
                    vb_strerror(&ct->e));
        j->claim_waited = true;
        j->claim_waiting = true;
        if (!d->claim_timer)
            d->claim_timer = g_timeout_add(200, on_claim_retry, d);
    } else {
        /* a broken or read-only target says what is wrong with it */
        char what[160];
        if (!vbd_target_cannot_write(j->target, ct->err, what, sizeof(what)))
            snprintf(what, sizeof(what), "target '%s' could not be claimed on the host",
                     j->target->name);
        vbd_job_fail_host(j, VB_JOB_FAILED, what, vb_strerror(&ct->e));
    }
    vbd_batch_schedule(d);          /* a sealed job may wait for this claim */
    vbd_job_unref(j);
    g_free(ct);
    pump(d);
}

/* Fallback data is stored as it arrives, before the job is sealed: its first
 * window claims the repository, on a worker.  While gc holds it, the windows
 * wait (and with them the guest's DATA requests); another failure fails the
 * job. */
static bool job_claimed(struct vbd_job *j)
{
    struct claim_task *ct;

    if (j->ws)
        return true;
    if (j->claiming || j->claim_waiting)
        return false;                   /* the task or the timer comes back */
    ct = g_new0(struct claim_task, 1);
    ct->task.work.fn = claim_work;
    ct->task.done = claim_done;
    ct->job = j;
    j->refs++;
    j->claiming = true;
    vbd_work_push(j->d, &ct->task);
    return false;
}

static gboolean on_claim_retry(gpointer opaque)
{
    struct vbd *d = opaque;
    GPtrArray *waiting = g_ptr_array_new();
    GHashTableIter it;
    gpointer k, v;

    d->claim_timer = 0;
    g_hash_table_iter_init(&it, d->jobs);
    while (g_hash_table_iter_next(&it, &k, &v))
        if (((struct vbd_job *)v)->claim_waiting)
            g_ptr_array_add(waiting, v);
    for (guint i = 0; i < waiting->len; i++) {
        struct vbd_job *j = waiting->pdata[i];
        j->claim_waiting = false;
        if (job_over(j))
            continue;
        j->last_activity = vb_now();    /* waiting for gc is not the guest's silence */
        job_claimed(j);
    }
    g_ptr_array_free(waiting, TRUE);
    return G_SOURCE_REMOVE;
}

/* Hand the file's next window to a worker, in order.  A job has at most
 * FB_BUSY_MAX fallback windows with the workers, so that one guest's data
 * cannot fill the workers' queue; the others wait, in memory it is charged
 * for, and so do the DATA requests they answer. */
static void try_submit(struct vbd_job *j, struct vbd_entry *en)
{
    struct vbd_window *w;

    if (en->busy || !(w = g_queue_peek_head(&en->ready)) || w->seq != en->next_seq)
        return;
    if (!w->plan && (!job_claimed(j) || j->fb_busy >= FB_BUSY_MAX)) {
        if (!en->fb_queued) {
            en->fb_queued = true;
            g_queue_push_tail(&j->fb_waiting, GUINT_TO_POINTER(w->file));
        }
        return;
    }
    if (!job_claimed(j))
        return;
    g_queue_pop_head(&en->ready);
    en->busy = true;
    if (!w->plan)
        j->fb_busy++;
    w->carry = en->carry;
    w->carry_len = en->carry_len;
    w->carry_off = en->carry_off;
    en->carry = NULL;
    en->carry_len = 0;
    w->ws = vb_sink_ref(j->ws);
    w->task.work.fn = process_window;
    w->task.done = window_done;
    vbd_work_push(j->d, &w->task);
}

/* Files whose fallback windows wait for a worker, in the order they came. */
static void fb_resubmit(struct vbd_job *j)
{
    while (!job_over(j) && j->ws && j->fb_busy < FB_BUSY_MAX &&
           !g_queue_is_empty(&j->fb_waiting)) {
        guint f = GPOINTER_TO_UINT(g_queue_pop_head(&j->fb_waiting));
        struct vbd_entry *en = &g_array_index(j->entries, struct vbd_entry, f);
        en->fb_queued = false;
        try_submit(j, en);
    }
}

/* A window's buffer goes back: to the pool (plans), or freed (fallback). */
static void window_put_buf(struct vbd_window *w)
{
    if (w->plan) {
        if (w->buf)
            w->job->vm->pool_bufs--;
        vbd_buf_put(w->job->d, w->buf);
    } else if (w->buf) {
        g_free(w->buf);
        vbd_mem_give(w->job, VBD_MEM_FALLBACK, w->cap);
    }
    w->buf = NULL;
    w->cap = 0;
}

/* A window of a job that failed or was cancelled: its buffer goes back, its
 * request (fallback data) is answered, and the plan lets go of the job once
 * its last window is gone.  Frees a fallback window. */
static void window_drop(struct vbd_window *w)
{
    struct vbd_job *j = w->job;

    vb_sink_unref(w->ws);
    w->ws = NULL;
    window_put_buf(w);
    g_free(w->carry);
    w->carry = NULL;
    if (w->plan)
        j->windows_open--;
    else
        j->fb_windows_pending--;
    if (w->reply)
        vbd_req_answer_err(w->reply, j->over_quota ? VB_S_QUOTA : VB_S_JOB_FAILED,
                           "job %llu %s: %s", (unsigned long long)j->id,
                           vbd_state_name(j->state), j->reason);
    w->reply = NULL;
    if (w->plan && !j->windows_open && !j->committing)
        release_from_plan(j);
    if (!w->plan)
        window_free_fb(w);
}

/* Windows waiting for their turn in a file of a job that is over would wait
 * for ever (the file's earlier window will never be chunked): drop them. */
static void drop_ready(struct vbd_job *j)
{
    struct vbd_window *w;

    for (guint i = 0; j->entries && i < j->entries->len; i++) {
        struct vbd_entry *en = &g_array_index(j->entries, struct vbd_entry, i);
        while ((w = g_queue_pop_head(&en->ready)))
            window_drop(w);
        en->fb_queued = false;
    }
    g_queue_clear(&j->fb_waiting);
}

/* Whatever ends a job (vbd_job_release): its fallback windows, full ones
 * waiting for a worker or the repository and half-full ones, are freed and
 * their DATA requests answered.  Windows with a worker come back to
 * window_done, which drops them. */
void vbd_exec_drop_fallback(struct vbd_job *j)
{
    drop_ready(j);
    for (guint i = 0; j->entries && i < j->entries->len; i++) {
        struct vbd_entry *en = &g_array_index(j->entries, struct vbd_entry, i);
        struct vbd_window *w = en->fb_win;
        if (w) {
            en->fb_win = NULL;
            window_put_buf(w);
            window_free_fb(w);
        }
    }
}

static void window_ready(struct vbd_window *w)
{
    struct vbd_job *j = w->job;
    struct vbd_entry *en;

    if (job_over(j)) {
        drop_ready(j);
        window_drop(w);                 /* frees a fallback window: last */
        return;
    }
    en = entry_of(w);
    w->ready = true;
    if (w->plan) {
        j->windows_ready++;
        if (j->windows && j->windows_ready == j->windows->len)
            j->flags |= VB_JOB_FLAG_READ_DONE;
    }
    g_queue_insert_sorted(&en->ready, w, by_seq, NULL);
    try_submit(j, en);
}

static void window_done(struct vbd_task *t)
{
    struct vbd_window *w = (struct vbd_window *)t;
    struct vbd_job *j = w->job;
    struct vbd *d = j->d;
    struct vbd_entry *en;

    if (!w->plan)
        j->fb_busy--;
    if (job_over(j)) {
        drop_ready(j);
        window_drop(w);                 /* frees a fallback window */
        goto out;
    }
    vb_sink_unref(w->ws);
    w->ws = NULL;
    window_put_buf(w);
    if (w->plan)
        j->windows_open--;
    else
        j->fb_windows_pending--;
    en = entry_of(w);
    en->busy = false;
    en->next_seq++;
    en->carry = w->carry;
    en->carry_len = w->carry_len;
    en->carry_off = w->carry_off;
    w->carry = NULL;
    if (w->err) {
        char what[sizeof(j->reason)];
        g_autofree char *shown = vb_escape(en->path, strlen(en->path));
        if (!vbd_quota_failed(j, w->err)) {     /* else the reason names the quota */
            if (w->err == -ENOSPC)
                snprintf(what, sizeof(what), "target '%s' has no space left for file '%s'",
                         j->target->name, shown);
            else
                snprintf(what, sizeof(what), "file '%s' could not be read or stored on the "
                         "host", shown);
            vbd_job_fail_host(j, VB_JOB_FAILED, what, w->emsg ? w->emsg : strerror(-w->err));
        }
        if (w->reply)
            vbd_req_answer_err(w->reply, w->err == -ENOSPC ? VB_S_NO_SPACE :
                               w->err == -EDQUOT ? VB_S_QUOTA : VB_S_IO, "%s", j->reason);
        w->reply = NULL;
        /* the window's buffer and place are already given back */
        if (w->plan && !j->windows_open && !j->committing)
            release_from_plan(j);
        drop_ready(j);
        if (!w->plan)
            window_free_fb(w);
        goto out;
    }
    if (!en->chunks)
        en->chunks = g_array_new(FALSE, FALSE, sizeof(struct vb_cat_chunk));
    g_array_append_vals(en->chunks, w->chunks->data, w->chunks->len);
    j->bytes_new += w->bytes_new;
    j->bytes_reused += w->bytes_reused;
    j->stored_new += w->stored;
    j->bytes_done += w->len;
    en->done_windows++;
    if (w->file_end)
        j->files_done++;
    if (w->reply) {
        vbd_req_answer(w->reply, VB_S_OK, NULL, 0);
        w->reply = NULL;
    }
    if (w->plan)
        j->windows_done++;
    try_submit(j, en);
    if (!w->plan)
        fb_resubmit(j);
    check_job_done(j);
    if (!w->plan)
        window_free_fb(w);              /* may let go of the job: last */
out:
    pump(d);
}

/* ---- fallback data --------------------------------------------------------------------------- */

static void window_free_fb(struct vbd_window *w)
{
    struct vbd_job *j = w->job;

    if (w->chunks)
        g_array_free(w->chunks, TRUE);
    g_free(w->carry);
    g_free(w->emsg);
    g_free(w);
    vbd_mem_give(j, VBD_MEM_FALLBACK, sizeof(*w));
    vbd_job_unref(j);                   /* the window's reference */
}

/* A fallback window holds the job, and is counted against its VM. */
static struct vbd_window *fb_window_new(struct vbd_job *j, uint32_t file, struct vbd_entry *en)
{
    struct vbd_window *w;

    if (vbd_mem_take(j, VBD_MEM_FALLBACK, sizeof(*w)))
        return NULL;
    w = g_new0(struct vbd_window, 1);
    w->job = j;
    j->refs++;
    w->file = file;
    w->seq = en->windows++;
    return w;
}

/* Room for need bytes: the buffer grows with the data, up to a window, so a
 * piece of one byte costs a byte. */
static int fb_reserve(struct vbd_window *w, uint32_t need)
{
    uint32_t cap;
    uint8_t *b;

    if (need <= w->cap)
        return 0;
    cap = VB_MIN(WINDOW, VB_MAX(need, w->cap * 2));
    if (vbd_mem_take(w->job, VBD_MEM_FALLBACK, cap - w->cap))
        return -ENOMEM;
    b = g_try_realloc(w->buf, cap);
    if (!b) {
        vbd_mem_give(w->job, VBD_MEM_FALLBACK, cap - w->cap);
        return -ENOMEM;
    }
    w->buf = b;
    w->cap = cap;
    return 0;
}

void vbd_fallback_data(struct vbd_job *j, uint64_t file, const uint8_t *data, uint32_t len,
                       bool last, struct vbd_req *reply)
{
    struct vbd_entry *en = &g_array_index(j->entries, struct vbd_entry, file);
    struct vbd_window *w = en->fb_win;
    g_autofree char *shown = NULL;
    char what[VB_MAX_PATH + 64];

    while (len || last) {
        uint32_t n;
        if (!w) {
            if (!(w = fb_window_new(j, (uint32_t)file, en)))
                goto nomem;
            en->fb_win = w;
            /* fb_received already counts this whole piece */
            w->off = en->fb_received - len;
        }
        n = VB_MIN(len, WINDOW - w->len);
        if (fb_reserve(w, w->len + n))
            goto nomem;
        memcpy(w->buf + w->len, data, n);
        w->len += n;
        data += n;
        len -= n;
        if (w->len == WINDOW || (last && !len)) {
            /* full, or the file's end: chunk it (in file order) */
            w->region_end = last && !len;
            w->file_end = w->region_end;
            en->fb_win = NULL;
            j->fb_windows_pending++;
            /* the piece that completes a window is answered once the window is
             * stored: back-pressure on a guest that sends faster than that */
            if (reply) {
                w->reply = reply;
                reply = NULL;
            }
            window_ready(w);
            w = NULL;
            if (!len)
                break;
        }
    }
    if (reply)
        vbd_req_answer(reply, VB_S_OK, NULL, 0);
    return;
nomem:
    shown = vb_escape(en->path, strlen(en->path));     /* the guest's bytes, for the reason */
    snprintf(what, sizeof(what), "fallback data of file '%s'", shown);
    vbd_mem_fail(j, what);              /* frees the job's windows */
    if (reply)
        vbd_req_answer_err(reply, VB_S_TOO_LARGE, "%s", j->reason);
}

/* ---- reads ------------------------------------------------------------------------------------ */

static void deliver(struct vbd_read *r, struct vbd_window *w, uint32_t piece)
{
    struct vbd_piece *pc = &g_array_index(w->job->pieces, struct vbd_piece, piece);

    if (r->err) {
        if (!w->err) {
            w->err = r->err;
            w->emsg = g_strdup_printf("read %s at %#llx: %s", r->plan->batch->files[r->file].path,
                                      (unsigned long long)r->off, strerror(-r->err));
        }
    } else if (pc->kind == P_DATA) {
        memcpy(w->buf + pc->win_off, r->buf + pc->read_off, pc->len);
    } else {
        pc->comp = g_memdup2(r->buf + pc->read_off, pc->comp_len);
    }
    if (r->consumers_left)
        r->consumers_left--;
    if (!r->consumers_left && r->buf) {
        if (r->cached)
            w->job->d->cache_used -= r->len;
        free(r->buf);
        r->buf = NULL;
        r->cached = false;
    }
}

static void read_done(struct vb_io *io, int res)
{
    struct vbd_read *r = (struct vbd_read *)io;
    struct vbd *d = r->d;

    r->state = R_DONE;
    if (res < 0)
        r->err = res;
    else {
        if ((uint64_t)res < r->len)
            memset(r->buf + res, 0, r->len - (uint64_t)res);   /* past the file's end */
        vbd_count_read(d, r->plan->batch->files[r->file].path, (uint64_t)res);
    }
    for (guint i = 0; i < r->waiters->len; i++) {
        struct vbd_window *w = r->waiters->pdata[i];
        if (!w->job->bytes_read || i == 0)
            w->job->bytes_read += i == 0 && res > 0 ? (uint64_t)res : 0;
        deliver(r, w, g_array_index(r->waiter_pieces, uint32_t, i));
        if (--w->pending == 0)
            window_ready(w);
    }
    g_ptr_array_set_size(r->waiters, 0);
    g_array_set_size(r->waiter_pieces, 0);
    if (r->buf && r->consumers_left) {
        /* other windows want these bytes later: keep them, within the budget */
        r->cached = true;
        d->cache_used += r->len;
        if (d->cache_used > d->cfg->cache_bytes) {
            d->cache_used -= r->len;
            free(r->buf);
            r->buf = NULL;
            r->cached = false;
            r->state = R_NEW;           /* read again when needed */
            r->err = 0;
        }
    }
    pump(d);
}

/* A read that cannot be issued (no memory for its buffer) fails its waiters
 * at once; the caller's window keeps its own guard. */
static void read_fail_now(struct vbd_read *r, int err)
{
    r->state = R_DONE;
    r->err = err;
    for (guint i = 0; i < r->waiters->len; i++) {
        struct vbd_window *w = r->waiters->pdata[i];
        deliver(r, w, g_array_index(r->waiter_pieces, uint32_t, i));
        if (--w->pending == 0)
            window_ready(w);
    }
    g_ptr_array_set_size(r->waiters, 0);
    g_array_set_size(r->waiter_pieces, 0);
}

static void issue_read(struct vbd_plan *p, struct vbd_read *r)
{
    struct vbd *d = r->d;
    int fd = p->fd[r->file], dfd = p->dfd[r->file];
    size_t cap = VB_ALIGN_UP(r->len, 4096);
    bool direct;

    r->buf = aligned_alloc(4096, VB_MAX(cap, (size_t)4096));
    if (!r->buf) {
        read_fail_now(r, -ENOMEM);
        return;
    }
    direct = dfd >= 0 && r->off % p->off_align[r->file] == 0 && r->len % p->off_align[r->file] == 0;
    memset(&r->io, 0, sizeof(r->io));
    r->io.op = VB_IO_READ;
    r->io.fd = direct ? dfd : fd;
    r->io.fd_fallback = fd;
    r->io.off = r->off;
    r->io.buf = r->buf;
    r->io.len = (uint32_t)r->len;
    r->io.cb = read_done;
    r->state = R_INFLIGHT;
    p->rate_bytes += r->len;
    vb_ring_queue(&d->ring, &r->io);
}

/* Returns false when the rate limit says "not yet". */
static bool open_window(struct vbd_plan *p, struct vbd_job *j, struct vbd_window *w)
{
    uint8_t *buf = vbd_buf_get(j->d);

    if (!buf)
        return false;
    w->buf = buf;
    j->vm->pool_bufs++;
    w->opened = true;
    w->img = ((struct vbd_disk *)j->disks->pdata[entry_of(w)->disk])->img;
    memset(buf, 0, w->len);
    j->windows_open++;
    w->pending = 1;                     /* guard while pieces are added */
    for (uint32_t i = 0; i < w->n_pieces; i++) {
        uint32_t pi = w->first_piece + i;
        struct vbd_piece *pc = &g_array_index(j->pieces, struct vbd_piece, pi);
        struct vbd_read *r;

        if (pc->kind == P_ZERO)
            continue;
        r = &p->reads[pc->read];
        if (r->state == R_DONE && (r->buf || r->err)) {
            deliver(r, w, pi);
            continue;
        }
        g_ptr_array_add(r->waiters, w);
        g_array_append_val(r->waiter_pieces, pi);
        w->pending++;
        if (r->state == R_NEW || (r->state == R_DONE && !r->buf))
            issue_read(p, r);
    }
    if (--w->pending == 0)
        window_ready(w);
    return true;
}

static bool rate_ok(struct vbd *d, struct vbd_plan *p)
{
    double allowed;

    if (!p->rate_limit_bps)
        return true;
    allowed = (vb_now() - p->rate_t0) * (double)p->rate_limit_bps + (double)(4u << 20);
    return (double)p->rate_bytes < allowed;
}

static gboolean on_rate_timer(gpointer opaque)
{
    pump(opaque);
    return G_SOURCE_REMOVE;
}

static bool wants_window(const struct vbd_job *j)
{
    return j->state == VB_JOB_RUNNING && j->kind == VB_KIND_FILES && j->windows &&
           j->next_window < j->windows->len;
}

/* Open windows round-robin over running jobs while buffers last.  A VM gets
 * at most its share of the pool (max_bufs over the VMs whose jobs want
 * windows, at least 2), so one VM's jobs cannot hold every buffer. */
static void pump(struct vbd *d)
{
    bool progress = true, limited = false;
    GHashTable *vms = g_hash_table_new(NULL, NULL);
    unsigned share;

    for (GList *l = d->plans; l; l = l->next) {
        struct vbd_plan *p = l->data;
        for (guint i = 0; i < p->jobs->len; i++)
            if (wants_window(p->jobs->pdata[i]))
                g_hash_table_add(vms, ((struct vbd_job *)p->jobs->pdata[i])->vm);
    }
    share = VB_MAX(2u, d->max_bufs / VB_MAX(1u, g_hash_table_size(vms)));
    g_hash_table_destroy(vms);
    while (progress) {
        progress = false;
        for (GList *l = d->plans; l; l = l->next) {
            struct vbd_plan *p = l->data;
            for (guint i = 0; i < p->jobs->len; i++) {
                struct vbd_job *j = p->jobs->pdata[i];
                if (!wants_window(j))
                    continue;
                /* keep each job's windows few, so that all jobs advance together */
                if (j->windows_open >= 6 || j->vm->pool_bufs >= share)
                    continue;
                if (!rate_ok(d, p)) {
                    limited = true;
                    continue;
                }
                if (!open_window(p, j, j->windows->pdata[j->next_window])) {
                    if (!d->bufs_in_use)    /* not even one buffer could be allocated */
                        vbd_job_fail_host(j, VB_JOB_FAILED, "the host is out of memory",
                                          "no memory for a 4 MiB read buffer");
                    goto out;
                }
                j->next_window++;
                progress = true;
            }
        }
    }
out:
    if (limited)
        g_timeout_add(50, on_rate_timer, d);
    vb_ring_submit(&d->ring);
}

void vbd_exec_kick(struct vbd *d)
{
    pump(d);
}

/* ---- committing ---------------------------------------------------------------------------------- */

struct commit_task {
    struct vbd_task task;
    struct vbd_job *job;
    struct vb_sink *ws;     /* a reference: an abort may come meanwhile */
    int err;
    vb_error e;
    char *id;
};

char *vbd_job_group(struct vbd_job *j);

/* What a record said beyond the entry's metadata: its extended attributes
 * and, for a file holding data, its chunks and preallocated ranges. */
static void vbd_catalog_entry(struct vb_catb *cb, uint64_t idx, const struct vbd_entry *en)
{
    struct vb_xattr_view x;
    size_t off = 0;

    while (en->xattrs && vb_xattr_next(en->xattrs, en->xattr_len, &off, &x))
        vb_catb_add_xattr(cb, idx, x.name, x.name_len, x.value, x.value_len);
    if (en->m.type != VB_FT_REG || en->master != UINT64_MAX)
        return;
    for (guint k = 0; en->chunks && k < en->chunks->len; k++)
        vb_catb_add_chunk(cb, idx, &g_array_index(en->chunks, struct vb_cat_chunk, k));
    for (guint k = 0; en->extents && k < en->extents->len; k++) {
        const struct vb_extent *e = &g_array_index(en->extents, struct vb_extent, k);
        if (e->flags & VB_EXT_UNWRITTEN)
            vb_catb_add_range(cb, idx, e->logical, e->length);
    }
}

static void commit_work(struct vb_work *work, struct vb_codec *c)
{
    struct commit_task *ct = (struct commit_task *)work;
    struct vbd_job *j = ct->job;
    struct vb_catb *cb = vb_catb_new();
    struct vb_files_commit fc = { 0 };
    json_object *stats, *inc = NULL;
    uint64_t *newidx = g_new(uint64_t, VB_MAX(j->entries->len, 1u));
    uint8_t *blob;
    g_autofree char *group = vbd_job_group(j);

    (void)c;
    for (guint i = 0; i < j->entries->len; i++) {
        struct vbd_entry *en = &g_array_index(j->entries, struct vbd_entry, i);
        struct vb_cat_entry m = en->m;
        m.flags = 0;   /* how this backup got the data is not the catalog's (catalog.h) */
        newidx[i] = vb_catb_add(cb, &m, en->path, strlen(en->path), en->link,
                                en->link ? strlen(en->link) : 0);
        vbd_catalog_entry(cb, newidx[i], en);
    }
    for (guint i = 0; i < j->entries->len; i++) {
        struct vbd_entry *en = &g_array_index(j->entries, struct vbd_entry, i);
        if (en->master != UINT64_MAX)
            vb_catb_set_hardlink(cb, newidx[i], newidx[en->master]);
    }
    g_free(newidx);
    blob = vb_catb_serialize(cb, &fc.catalog_len, &fc.entries, &fc.chunks, &fc.bytes);
    vb_catb_free(cb);
    fc.catalog = blob;

    fc.group = group;
    fc.mode = j->mode == VB_MODE_FULL || !j->parent ? "full" :
              j->mode == VB_MODE_INCREMENTAL ? "incremental" : "differential";
    fc.mode_note = j->mode_note;
    fc.parent = j->parent;
    fc.roots = (const char *const *)j->roots->pdata;
    fc.nroots = j->roots->len;
    fc.disks = vbd_disks_json(j->disks);
    stats = json_object_new_object();
    json_object_object_add(stats, "bytes_read", json_object_new_int64((int64_t)j->bytes_read));
    json_object_object_add(stats, "bytes_new", json_object_new_int64((int64_t)j->bytes_new));
    json_object_object_add(stats, "bytes_reused", json_object_new_int64((int64_t)j->bytes_reused));
    json_object_object_add(stats, "stored_new", json_object_new_int64((int64_t)j->stored_new));
    json_object_object_add(stats, "seconds", json_object_new_double(
        (double)(vb_wall_ns() - j->started_ns) / 1e9));
    json_object_object_add(stats, "job", json_object_new_int64((int64_t)j->id));
    json_object_object_add(stats, "batch", json_object_new_int64((int64_t)j->batch));
    fc.stats = stats;
    fc.plan = j->plan_notes;
    if (j->n_problems) {
        /* what the guest could not back up: the snapshot says so */
        inc = json_object_new_object();
        json_object_object_add(inc, "problems", json_object_new_int64((int64_t)j->n_problems));
        json_object_object_add(inc, "listed", json_object_get(j->problems));
    }
    fc.incomplete = inc;
    /* created: the point in time the snapshot shows */
    fc.created_ns = j->sealed_ns;
    ct->err = vb_sink_files_commit(ct->ws, &fc, &ct->id, &ct->e);
    g_free(blob);
    json_object_put(fc.disks);
    json_object_put(stats);
    json_object_put(inc);
}

static void commit_done(struct vbd_task *t)
{
    struct commit_task *ct = (struct commit_task *)t;
    struct vbd_job *j = ct->job;
    char what[160] = "";

    j->committing = false;
    if (ct->err) {
        vb_prefixerr(&ct->e, "commit");
        snprintf(what, sizeof(what), ct->err == -ENOSPC ? "target '%s' has no space left "
                 "for the snapshot" : "the snapshot could not be committed to target '%s'",
                 j->target->name);
    }
    /* the commit's answer decides, also for a job stopped meanwhile */
    vbd_job_committed(j, ct->err ? NULL : g_steal_pointer(&ct->id), ct->err, what, &ct->e,
                      vb_sink_warning(ct->ws));
    g_free(ct->id);
    vb_sink_unref(ct->ws);
    release_from_plan(j);
    g_free(ct);
}

static void start_commit(struct vbd_job *j)
{
    struct commit_task *ct;

    if (!j->ws) {                       /* claimed when its batch was cut: cannot happen */
        vbd_job_fail(j, VB_JOB_FAILED, "internal error: the job holds no claim on %s",
                     j->target->name);
        return;
    }
    j->committing = true;
    ct = g_new0(struct commit_task, 1);
    ct->task.work.fn = commit_work;
    ct->task.done = commit_done;
    ct->job = j;
    ct->ws = vb_sink_ref(j->ws);
    vbd_work_push(j->d, &ct->task);
}

static void check_job_done(struct vbd_job *j)
{
    if (j->state != VB_JOB_RUNNING || j->kind != VB_KIND_FILES || !j->windows ||
        j->windows_done < j->windows->len || j->fb_windows_pending || j->windows_open)
        return;
    if (j->committing)
        return;
    j->flags |= VB_JOB_FLAG_READ_DONE;
    if (j->view_op) {
        /* everything is read: fold the view back and check it first, so
         * that "done" means the VM runs on its own images, untouched */
        j->committing = true;
        vbd_view_finish(j);
        return;
    }
    start_commit(j);
}

static void disk_view_done(struct vbd_job *j, int err, const char *summary);

void vbd_exec_view_done(struct vbd_job *j, int err, const char *summary)
{
    if (j->kind == VB_KIND_DISK) {
        /* a job that ended (or was stopped) meanwhile commits nothing */
        disk_view_done(j, err ? err : j->state != VB_JOB_RUNNING || j->ending ? -ECANCELED : 0,
                       err ? summary : "the job ended");
        return;
    }
    j->committing = false;
    if (j->ending && j->state == VB_JOB_RUNNING) {
        /* stopped while its view was folded back: it ends as asked, nothing committed */
        vbd_job_committed(j, NULL, -ECANCELED, NULL, NULL, NULL);
        release_from_plan(j);
        return;
    }
    if (err)
        vbd_job_fail(j, VB_JOB_FAILED, "point-in-time view: %s (vbackupd's log says more)",
                     summary);
    if (j->state != VB_JOB_RUNNING) {
        release_from_plan(j);
        return;
    }
    start_commit(j);
}

/* ---- plans ----------------------------------------------------------------------------------------- */

static void plan_free(struct vbd *d, struct vbd_plan *p)
{
    for (uint32_t i = 0; i < p->n_reads; i++) {
        struct vbd_read *r = &p->reads[i];
        if (r->cached)
            d->cache_used -= r->len;
        free(r->buf);
        g_ptr_array_free(r->waiters, TRUE);
        g_array_free(r->waiter_pieces, TRUE);
    }
    g_free(p->reads);
    for (uint32_t i = 0; i < p->batch->n_files; i++) {
        if (p->fd[i] >= 0)
            close(p->fd[i]);
        if (p->dfd[i] >= 0)
            close(p->dfd[i]);
    }
    g_free(p->fd);
    g_free(p->dfd);
    g_free(p->mem_align);
    g_free(p->off_align);
    g_ptr_array_free(p->jobs, TRUE);
    vbd_batch_free(p->batch);
    d->plans = g_list_remove(d->plans, p);
    g_free(p);
}

static struct vbd_plan *plan_of(struct vbd_job *j)
{
    for (GList *l = j->d->plans; l; l = l->next) {
        struct vbd_plan *p = l->data;
        for (guint i = 0; i < p->jobs->len; i++)
            if (p->jobs->pdata[i] == j)
                return p;
    }
    return NULL;
}

static gboolean release_cb(gpointer opaque)
{
    struct vbd_job *j = opaque;
    struct vbd_plan *p = plan_of(j);
    struct vbd *d = j->d;

    vbd_job_unclaim(j);
    j->in_plan = false;
    if (j->state == VB_JOB_DONE || j->state == VB_JOB_FAILED || j->state == VB_JOB_CANCELLED)
        vbd_job_release(j);
    if (p && --p->jobs_left == 0) {
        for (guint i = 0; i < p->jobs->len; i++)
            vbd_job_unref(p->jobs->pdata[i]);
        g_ptr_array_set_size(p->jobs, 0);
        plan_free(d, p);
    }
    vbd_job_unref(j);
    pump(d);
    return G_SOURCE_REMOVE;
}

/* The job is over for its plan: once, from the main loop (no re-entry). */
static void release_from_plan(struct vbd_job *j)
{
    if (j->plan_released)
        return;
    j->plan_released = true;
    j->refs++;
    g_idle_add(release_cb, j);
}

void vbd_exec_start(struct vbd *d, struct vbd_plan *p)
{
    struct vbp_batch *b = p->batch;
    GHashTable *byid = g_hash_table_new(g_int64_hash, g_int64_equal);

    p->fd = g_new(int, VB_MAX(b->n_files, 1u));
    p->dfd = g_new(int, VB_MAX(b->n_files, 1u));
    p->mem_align = g_new(uint32_t, VB_MAX(b->n_files, 1u));
    p->off_align = g_new(uint32_t, VB_MAX(b->n_files, 1u));
    for (uint32_t i = 0; i < b->n_files; i++) {
        struct stat st;
        struct statx stx;
        p->fd[i] = open(b->files[i].path, O_RDONLY | O_CLOEXEC);
        p->dfd[i] = open(b->files[i].path, O_RDONLY | O_DIRECT | O_CLOEXEC);
        p->mem_align[i] = p->off_align[i] = 4096;
        if (p->fd[i] >= 0 && (fstat(p->fd[i], &st) < 0 || (uint64_t)st.st_dev != b->files[i].dev ||
                              (uint64_t)st.st_ino != b->files[i].ino)) {
            vbd_log("batch %llu: %s changed since it was planned", (unsigned long long)p->id,
                    b->files[i].path);
            close(p->fd[i]);
            p->fd[i] = -1;
        }
        if (p->dfd[i] >= 0 &&
            statx(p->dfd[i], "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
            (stx.stx_mask & STATX_DIOALIGN) && stx.stx_dio_offset_align) {
            p->mem_align[i] = stx.stx_dio_mem_align;
            p->off_align[i] = stx.stx_dio_offset_align;
        }
        if (p->fd[i] < 0 && p->dfd[i] >= 0) {
            close(p->dfd[i]);
            p->dfd[i] = -1;
        }
    }
    p->n_reads = b->n_reads;
    p->reads = g_new0(struct vbd_read, VB_MAX(b->n_reads, 1u));
    for (guint i = 0; i < p->jobs->len; i++) {
        struct vbd_job *j = p->jobs->pdata[i];
        g_hash_table_insert(byid, &j->id, j);
    }
    for (uint32_t i = 0; i < b->n_reads; i++) {
        struct vbp_read *br = &b->reads[i];
        struct vbd_read *r = &p->reads[i];
        r->d = d;
        r->plan = p;
        r->index = i;
        r->file = br->file;
        r->off = br->offset;
        r->len = br->length;
        r->consumers_left = br->n_consumers;
        r->waiters = g_ptr_array_new();
        r->waiter_pieces = g_array_new(FALSE, FALSE, sizeof(uint32_t));
        if (p->fd[r->file] < 0) {
            r->state = R_DONE;
            r->err = -ESTALE;
        }
        for (uint32_t k = 0; k < br->n_consumers; k++) {
            struct vbp_consumer *c = &br->consumers[k];
            struct vbd_job *j = g_hash_table_lookup(byid, &c->job);
            struct vbd_piece *pc;
            if (!j || !j->pieces || c->token >= j->pieces->len)
                continue;
            pc = &g_array_index(j->pieces, struct vbd_piece, c->token);
            pc->read = i;
            pc->read_off = c->offset;
        }
    }
    g_hash_table_destroy(byid);
    p->rate_t0 = vb_now();
    p->jobs_left = p->jobs->len;
    d->plans = g_list_append(d->plans, p);
    for (guint i = 0; i < p->jobs->len; i++) {
        struct vbd_job *j = p->jobs->pdata[i];
        j->in_plan = true;
        if (j->kind == VB_KIND_DISK) {
            vbd_disk_job_start(j);
            continue;
        }
        for (guint k = 0; j->windows && k < j->windows->len; k++)
            ((struct vbd_window *)j->windows->pdata[k])->plan = p;
        j->next_window = 0;
        j->windows_ready = j->windows_done = j->windows_open = 0;
        if (j->windows && !j->windows->len)
            j->flags |= VB_JOB_FLAG_READ_DONE;
        check_job_done(j);
    }
    pump(d);
}

void vbd_exec_cancel_job(struct vbd_job *j)
{
    /* open windows finish and their results are dropped; no new windows
     * open for a job that is no longer running (pump checks); a disk
     * backup stops at its next chunk */
    j->cancel = true;
    j->cancel_flag = 1;
    if (j->state != VB_JOB_RUNNING || !plan_of(j))
        return;
    if (j->kind == VB_KIND_FILES && !j->windows_open && !j->committing)
        release_from_plan(j);
}

/* ---- disk jobs --------------------------------------------------------------------------------------- */

struct vbd_disk_run {
    struct vbd_job *job;
    struct vb_sink *ws;     /* a reference to the job's session, which the backup ends */
    struct vb_disk_stats st;
    char *id;
    int err;
    vb_error e;
    char *repo;              /* real path of the target's repository */
    char *cbt_why;           /* why the tracking proves nothing, known before the read */
    char bound[320];         /* what became of the tracking, for the plan */
    /* the view is folded back before the snapshot is committed */
    GMutex lock;
    GCond cond;
    bool view_done;
    int view_err;
    char view_summary[160];
};

static void disk_view_done(struct vbd_job *j, int err, const char *summary)
{
    struct vbd_disk_run *dr = j->disk_run;

    g_mutex_lock(&dr->lock);
    dr->view_err = err;
    snprintf(dr->view_summary, sizeof(dr->view_summary), "%s", summary ? summary : "");
    dr->view_done = true;
    g_cond_signal(&dr->cond);
    g_mutex_unlock(&dr->lock);
}

/* main thread: the disk thread has read everything */
static gboolean disk_view_finish(gpointer opaque)
{
    struct vbd_disk_run *dr = opaque;
    struct vbd_job *j = dr->job;
    bool running = j->state == VB_JOB_RUNNING && !j->ending;     /* not being stopped */

    if (j->view_op && running)
        vbd_view_finish(j);         /* vbd_exec_view_done() answers */
    else
        disk_view_done(j, running ? 0 : -ECANCELED, "the job ended");
    return G_SOURCE_REMOVE;
}

/* disk thread, before the snapshot is committed: wait for the view's release */
static int disk_before_commit(void *opaque, vb_error *e)
{
    struct vbd_disk_run *dr = opaque;
    int err;

    g_idle_add(disk_view_finish, dr);
    g_mutex_lock(&dr->lock);
    while (!dr->view_done)
        g_cond_wait(&dr->cond, &dr->lock);
    err = dr->view_err;
    if (err)
        vb_seterr(e, err, "point-in-time view: %s (vbackupd's log says more)",
                  dr->view_summary);
    g_mutex_unlock(&dr->lock);
    return err;
}

static void disk_progress(void *opaque, uint64_t done, uint64_t total)
{
    struct vbd_job *j = opaque;

    j->disk_done = done;
    j->disk_total = total;
}

/* What the backup read and why: "full read: REASON" or the change set. */
static void disk_notes(struct vbd_job *j, const struct vb_disk_stats *st)
{
    char buf[512], a[32], b[32];

    if (st->tracked)
        snprintf(buf, sizeof(buf), "tracking: read only the %s in %llu runs written since "
                 "snapshot %s (%s read; %llu chunks changed, %llu reused, %llu read whole)",
                 vb_fmt_bytes(st->changed_bytes, a, sizeof(a)),
                 (unsigned long long)st->changed_runs, st->basis,
                 vb_fmt_bytes(st->bytes_read, b, sizeof(b)),
                 (unsigned long long)st->chunks_changed, (unsigned long long)st->chunks_reused,
                 (unsigned long long)st->chunks_reread);
    else
        snprintf(buf, sizeof(buf), "full read: %s", st->why);
    json_object_array_add(j->plan_notes, json_object_new_string(buf));
}

/* disk thread: the snapshot is committed; bind the disk's new tracking
 * overlay to it, so that the next backup reads only what is written to it */
static void bind_tracking(struct vbd_disk_run *dr)
{
    struct vbd_job *j = dr->job;
    struct vb_cbt_record *r = j->cbt_next;
    vb_error e = { 0 };

    if (!r)
        return;
    r->ready = true;
    g_free(r->previous);
    r->previous = NULL;
    g_free(r->basis);
    g_free(r->basis_repo);
    r->basis = g_strdup(dr->id);
    r->basis_repo = g_strdup(dr->repo);
    if (!dr->repo || vb_cbt_save(j->d->cfg->state_dir, r, &e))
        snprintf(dr->bound, sizeof(dr->bound), "tracking: the record of disk %s cannot be "
                 "written (%s): the next backup reads everything", r->disk,
                 dr->repo ? vb_strerror(&e) : "no repository path");
    else
        snprintf(dr->bound, sizeof(dr->bound), "tracking: disk %s runs on a new overlay, bound "
                 "to snapshot %s: the next incremental reads only what is written to it",
                 r->disk, dr->id);
}

static gboolean disk_finished(gpointer opaque)
{
    struct vbd_disk_run *dr = opaque;
    struct vbd_job *j = dr->job;
    char what[160] = "";

    g_thread_join(j->disk_thread);
    j->disk_thread = NULL;
    /* what was read: everything allocated, or the tracked change set */
    j->bytes_done = dr->st.tracked ? dr->st.changed_bytes : dr->st.allocated;
    j->bytes_total = j->bytes_done;
    j->bytes_new = dr->st.bytes_new;
    j->bytes_reused = dr->st.bytes_dedup;
    j->bytes_read = dr->st.bytes_read;
    j->stored_new = dr->st.stored_new;
    j->flags |= VB_JOB_FLAG_READ_DONE;
    vbd_count_read(j->d, ((struct vbd_disk *)j->disks->pdata[0])->image, dr->st.bytes_read);
    if (!dr->err)
        disk_notes(j, &dr->st);
    if (dr->bound[0]) {
        vbd_log("job %llu: %s", (unsigned long long)j->id, dr->bound);
        json_object_array_add(j->plan_notes, json_object_new_string(dr->bound));
    }
    if (dr->err) {
        struct vbd_disk *dk = j->disks->pdata[0];
        if (dr->err == -ENOSPC)
            snprintf(what, sizeof(what), "target '%s' has no space left for disk '%s'",
                     j->target->name, dk->serial);
        else
            snprintf(what, sizeof(what), "disk '%s' could not be read or stored on the host",
                     dk->serial);
    }
    /* the backup's answer decides, also for a job stopped meanwhile */
    vbd_job_committed(j, dr->err ? NULL : g_steal_pointer(&dr->id), dr->err, what, &dr->e,
                      vb_sink_warning(dr->ws));
    g_free(dr->id);
    vb_sink_unref(dr->ws);
    g_free(dr->repo);
    g_free(dr->cbt_why);
    j->disk_run = NULL;
    g_mutex_clear(&dr->lock);
    g_cond_clear(&dr->cond);
    g_free(dr);
    release_from_plan(j);
    return G_SOURCE_REMOVE;
}

static gpointer disk_thread(gpointer opaque)
{
    struct vbd_disk_run *dr = opaque;
    struct vbd_job *j = dr->job;
    struct vbd_disk *dk = j->disks->pdata[0];
    struct vb_disk_backup_opts o = {
        .vm = j->vm->name,
        .image = dk->image,
        .format = dk->format,
        .backing_format = dk->backing_format,
        .name = dk->serial,
        .threads = j->d->cfg->workers,
        .progress_cb = disk_progress,
        .progress_opaque = j,
        .cancel = &j->cancel_flag,
        .before_commit = disk_before_commit,
        .before_commit_opaque = dr,
        .mode = j->mode,
        .cbt = j->cbt_rec,
        .cbt_why = dr->cbt_why,
    };

    /* a disk on its tracking overlay is read through it (docs/cbt.md) */
    if (dk->top) {
        o.image = dk->top;
        o.format = "qcow2";
    }
    {
        struct vb_disk_sink sk;

        vb_sink_disk(dr->ws, &sk);
        dr->err = vb_disk_backup(&sk, &o, &dr->st, &dr->id, &dr->e);
        vb_disk_sink_clear(&sk);
    }
    if (!dr->err)
        bind_tracking(dr);
    g_idle_add(disk_finished, dr);
    return NULL;
}

void vbd_disk_job_start(struct vbd_job *j)
{
    struct vbd_disk_run *dr = g_new0(struct vbd_disk_run, 1);

    dr->job = j;
    dr->ws = vb_sink_ref(j->ws);       /* claimed when the batch was cut */
    {
        char *real = realpath(j->target->path, NULL);
        dr->repo = real ? g_strdup(real) : NULL;
        free(real);
    }
    /* what keeps the tracking from proving anything, known now */
    if (j->view != VB_VIEW_SNAPSHOT)
        dr->cbt_why = g_strdup(j->cbt_why ? j->cbt_why :
                               "no point-in-time view of the disk (the VM has no QMP socket "
                               "and is not a libvirt domain)");
    else if (!j->vm->cbt)
        dr->cbt_why = g_strdup("changed-block tracking is off for this VM (cbt = true in its "
                               "configuration)");
    else if (j->cbt_why)
        dr->cbt_why = g_strdup(j->cbt_why);
    g_mutex_init(&dr->lock);
    g_cond_init(&dr->cond);
    j->disk_run = dr;
    j->disk_thread = g_thread_new("disk-backup", disk_thread, dr);
}

/* ---- set-up ---------------------------------------------------------------------------------------- */

static gboolean on_ring(gint fd, GIOCondition cond, gpointer opaque)
{
    struct vbd *d = opaque;
    uint64_t v;

    if (read(fd, &v, sizeof(v)) < 0) {
        /* EAGAIN: nothing new */
    }
    while (io_uring_cq_ready(&d->ring.ring))
        vb_ring_run(&d->ring, false);
    return G_SOURCE_CONTINUE;
}

static gboolean on_workers(gint fd, GIOCondition cond, gpointer opaque)
{
    struct vbd *d = opaque;
    struct vb_work *w;

    while ((w = vb_workers_pop(&d->wk))) {
        struct vbd_task *t = (struct vbd_task *)w;
        d->tasks_out--;
        t->done(t);
    }
    return G_SOURCE_CONTINUE;
}

int vbd_exec_init(struct vbd *d, vb_error *e)
{
    int ret = vb_ring_init(&d->ring, 256);

    if (ret)
        return vb_seterr(e, ret, "io_uring_queue_init: %s", strerror(-ret));
    d->ring_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (d->ring_efd < 0 || io_uring_register_eventfd(&d->ring.ring, d->ring_efd) < 0)
        return vb_seterr(e, -errno, "io_uring eventfd: %s", strerror(errno));
    d->ring_src = g_unix_fd_add(d->ring_efd, G_IO_IN, on_ring, d);
    ret = vb_workers_start(&d->wk, d->cfg->workers, 1);
    if (ret)
        return vb_seterr(e, ret, "start workers: %s", strerror(-ret));
    d->wk_src = g_unix_fd_add(d->wk.efd, G_IO_IN, on_workers, d);
    vb_cdc_init(&d->cdc, VB_CDC_AVG);
    g_queue_init(&d->free_bufs);
    d->max_bufs = (unsigned)d->wk.n * 4 + 8;
    d->bytes_by_file = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    return 0;
}

void vbd_exec_fini(struct vbd *d)
{
    uint8_t *b;

    if (d->wk_src)
        g_source_remove(d->wk_src);
    vb_workers_stop(&d->wk);
    if (d->ring_src)
        g_source_remove(d->ring_src);
    vb_ring_exit(&d->ring);
    if (d->ring_efd >= 0)
        close(d->ring_efd);
    while ((b = g_queue_pop_head(&d->free_bufs)))
        free(b);
    if (d->claim_timer)
        g_source_remove(d->claim_timer);
    if (d->bytes_by_file)
        g_hash_table_destroy(d->bytes_by_file);
}
