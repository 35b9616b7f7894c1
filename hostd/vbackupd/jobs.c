/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Backup jobs as the guest drives them: BEGIN, FILES, DATA, SEAL, and
 * STATUS, CANCEL, LIST.  A job belongs to the VM whose socket created it;
 * another VM asking about it gets "no such job".
 */
#include "vbackupd.h"

#include "snapread.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "escape.h"
#include "wire.h"

#define KEEP_FINISHED_SECONDS 3600
#define KEEP_FINISHED_PER_VM 32
/* what an entry costs besides its path, link and extents: the entry, the
 * path's key in the job's table, allocation overhead */
#define ENTRY_COST (sizeof(struct vbd_entry) + 64)
/* a kept problem: its JSON object and strings, besides the escaped path and reason */
#define PROBLEM_COST 256u
#define PROBLEM_PATH ((size_t)4096)     /* bytes of a problem's path that are kept */

const char *vbd_state_name(int state)
{
    switch (state) {
    case VB_JOB_COLLECTING: return "collecting";
    case VB_JOB_QUEUED: return "queued";
    case VB_JOB_DEFERRED: return "deferred";
    case VB_JOB_RUNNING: return "running";
    case VB_JOB_DONE: return "done";
    case VB_JOB_FAILED: return "failed";
    case VB_JOB_CANCELLED: return "cancelled";
    case VB_JOB_RESTORING: return "restoring";
    case VB_JOB_MAPPING: return "mapping";
    }
    return "?";
}

static bool finished(const struct vbd_job *j)
{
    return j->state == VB_JOB_DONE || j->state == VB_JOB_FAILED || j->state == VB_JOB_CANCELLED;
}

bool vbd_job_finished(const struct vbd_job *j)
{
    return finished(j);
}

void vbd_entry_clear(struct vbd_entry *en)
{
    g_free(en->path);
    g_free(en->link);
    g_free(en->xattrs);
    if (en->extents)
        g_array_free(en->extents, TRUE);
    if (en->chunks)
        g_array_free(en->chunks, TRUE);
    g_free(en->carry);
    memset(en, 0, sizeof(*en));
}

static void disk_copy_free(gpointer p)
{
    struct vbd_disk *d = p;

    vb_image_close(d->img);
    g_free(d->serial);
    g_free(d->image);
    g_free(d->format);
    g_free(d->backing_format);
    g_free(d->target);
    g_free(d->top);
    g_free(d);
}

/* Free what a finished job no longer needs; its summary stays for STATUS.
 * Whatever ended the job, what it held is given back to its VM here: its
 * entries and extents, plan and catalogs, and its fallback windows (freed,
 * their DATA requests answered; those with a worker when they come back). */
void vbd_job_release(struct vbd_job *j)
{
    vbd_exec_drop_fallback(j);
    if (j->entries) {
        for (guint i = 0; i < j->entries->len; i++)
            vbd_entry_clear(&g_array_index(j->entries, struct vbd_entry, i));
        g_array_free(j->entries, TRUE);
        j->entries = NULL;
    }
    if (j->paths) {
        g_hash_table_destroy(j->paths);
        j->paths = NULL;
    }
    if (j->pieces) {
        g_array_free(j->pieces, TRUE);
        j->pieces = NULL;
    }
    if (j->windows) {
        g_ptr_array_free(j->windows, TRUE);
        j->windows = NULL;
    }
    if (j->disks) {
        g_ptr_array_free(j->disks, TRUE);
        j->disks = NULL;
    }
    vb_cat_free(j->parent_cat);
    j->parent_cat = NULL;
    /* restore jobs */
    j->cat = NULL;
    vb_sr_snap_close(j->snap);
    j->snap = NULL;
    if (j->sel) {
        g_array_free(j->sel, TRUE);
        j->sel = NULL;
    }
    for (unsigned s = 0; s < 2; s++) {
        g_free(j->cache_buf[s]);
        j->cache_buf[s] = NULL;
    }
    vbd_job_unclaim(j);
    vb_sr_close(j->sr);
    j->sr = NULL;
    vbd_mem_give_all(j, VBD_MEM_FILES);
    vbd_mem_give_all(j, VBD_MEM_PLAN);
    vbd_mem_give_all(j, VBD_MEM_CATALOG);
    vbd_mem_give_all(j, VBD_MEM_RESTORE);
}

void vbd_job_unref(struct vbd_job *j)
{
    if (--j->refs > 0)
        return;
    vbd_job_release(j);
    for (int k = 0; k < VBD_MEM__N; k++)
        vbd_mem_give_all(j, (enum vbd_mem)k);
    if (j->serials)
        g_ptr_array_free(j->serials, TRUE);
    if (j->roots)
        g_ptr_array_free(j->roots, TRUE);
    json_object_put(j->plan_notes);
    json_object_put(j->problems);
    if (j->inflight)
        g_hash_table_destroy(j->inflight);
    g_free(j->snapshot);
    g_free(j->detail);
    g_free(j->parent);
    g_free(j->mode_note);
    vb_cbt_free(j->cbt_rec);
    vb_cbt_free(j->cbt_next);
    g_free(j->cbt_why);
    vbd_vm_unref(j->vm);
    g_free(j);
}

struct vbd_job *vbd_job_find(struct vbd *d, struct vbd_vm *vm, uint64_t id)
{
    struct vbd_job *j = g_hash_table_lookup(d->jobs, &id);

    /* another VM's job does not exist for this VM */
    return j && j->vm == vm ? j : NULL;
}

static void job_end(struct vbd_job *j, int state)
{
    struct vbd *d = j->d;

    j->state = state;
    j->finished_ns = vb_wall_ns();
    vbd_quota_end(j);           /* its bytes, counted; a gc if it left garbage */
    if (g_queue_remove(&d->pending, j))
        j->refs--;          /* the queue's reference; the job table still holds one */
    vbd_map_stop(j);        /* a mapper still running is killed */
    /* how it ended, also after a restart; a view being folded back keeps its
     * record as it is until it is back (vbd_view_released writes it then) */
    if (!j->view_busy)
        vbd_journal_running(j);
    if (j->view_op)
        vbd_view_release(j);    /* commit the snapshot back; the record keeps it until then */
    /* the session ends now: a commit in progress is refused at its commit
     * point, running puts fail; the claim goes when they are back */
    if (j->ws)
        vb_sink_abort(j->ws);
    /* a plan still using the job's windows releases it when they are back,
     * and so does a cut planning it on a worker */
    if (!j->in_plan && !j->planning)
        vbd_job_release(j);
    vbd_log("job %llu (%s, %s): %s%s%s%s%s", (unsigned long long)j->id, j->vm->name,
            j->kind == VB_KIND_DISK ? "disk" : "files", vbd_state_name(state),
            j->reason[0] ? ": " : "", j->reason, j->detail ? ": " : "",
            j->detail ? j->detail : "");
}

/* A reason holds guest bytes (paths) only escaped where they were put in;
 * one that still holds control characters or stray bytes is escaped whole:
 * the guest, the log and vbackupctl all show it. */
static void plain_reason(struct vbd_job *j)
{
    char *esc;

    if (vb_text_plain(j->reason, strlen(j->reason)))
        return;
    esc = vb_escape(j->reason, strlen(j->reason));
    g_strlcpy(j->reason, esc, sizeof(j->reason));
    g_free(esc);
    if (!g_utf8_validate(j->reason, -1, NULL))   /* cut inside a character */
        *(char *)g_utf8_find_prev_char(j->reason, j->reason + strlen(j->reason)) = 0;
}

/* End the job as state (its reason set), or, while its commit (or disk
 * backup) runs, once that comes back.  Abort and commit are serialized
 * (session.h): if the commit point is not passed yet, the commit is refused
 * and the job ends as asked when it comes back; if it is, the snapshot
 * exists and the job is done.  Either way the commit's answer decides,
 * never a guess (vbd_job_committed). */
static void stop(struct vbd_job *j, int state)
{
    vbd_exec_cancel_job(j);
    if (j->committing || j->disk_thread) {
        j->ending = (uint8_t)state;
        if (j->ws)
            vb_sink_abort(j->ws);
        vbd_log("job %llu (%s): %s; waiting for its commit to come back", (unsigned long long)j->id,
                j->vm->name, j->reason);
        return;
    }
    job_end(j, state);
}

void vbd_job_fail(struct vbd_job *j, int state, const char *fmt, ...)
{
    va_list ap;

    if (finished(j) || j->ending)
        return;
    va_start(ap, fmt);
    vsnprintf(j->reason, sizeof(j->reason), fmt, ap);
    va_end(ap);
    plain_reason(j);
    stop(j, state);
}

void vbd_job_fail_host(struct vbd_job *j, int state, const char *what, const char *detail)
{
    if (finished(j) || j->ending)
        return;
    snprintf(j->reason, sizeof(j->reason), "%s; the host's log has details (job %llu)", what,
             (unsigned long long)j->id);
    plain_reason(j);
    g_free(j->detail);
    j->detail = g_strdup(detail);
    stop(j, state);
}

void vbd_job_fail_late(struct vbd_job *j, const char *fmt, ...)
{
    char why[sizeof(j->reason)], was[sizeof(j->reason)];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    if (!finished(j)) {
        vbd_job_fail(j, VB_JOB_FAILED, "%s", why);
        return;
    }
    snprintf(was, sizeof(was), "%s%s%s", vbd_state_name(j->state), j->reason[0] ? ": " : "",
             j->reason);
    snprintf(j->reason, sizeof(j->reason), "%s (the job had ended %s)", why, was);
    j->state = VB_JOB_FAILED;
    vbd_log("job %llu (%s): failed: %s", (unsigned long long)j->id, j->vm->name, j->reason);
}

void vbd_job_finish_ok(struct vbd_job *j)
{
    j->reason[0] = 0;
    job_end(j, VB_JOB_DONE);
}

void vbd_job_committed(struct vbd_job *j, char *snapshot, int err, const char *what,
                       const vb_error *e, const char *warning)
{
    uint8_t ending = j->ending;

    j->ending = 0;
    if (j->state != VB_JOB_RUNNING) {
        if (snapshot)                   /* stop() waits for commits: never */
            vbd_log("job %llu (%s): ended %s, but its commit made %s", (unsigned long long)j->id,
                    j->vm->name, vbd_state_name(j->state), snapshot);
        g_free(snapshot);
        return;
    }
    if (snapshot) {
        if (ending)
            vbd_log("job %llu (%s): committed as %s before it could be stopped (%s): done",
                    (unsigned long long)j->id, j->vm->name, snapshot, j->reason);
        g_free(j->snapshot);
        j->snapshot = snapshot;
        j->reason[0] = 0;
        g_free(j->detail);
        j->detail = NULL;
        if (warning) {
            /* done, and the guest is told the one thing to know (no path) */
            vbd_log("job %llu (%s): warning: %s", (unsigned long long)j->id, j->vm->name, warning);
            snprintf(j->reason, sizeof(j->reason), "committed, but the target could not confirm "
                     "that the commit is on disk (an fsync failed); a power cut before its next "
                     "sync could undo it");
        }
        job_end(j, VB_JOB_DONE);
        vbd_copy_want(j->d, j->target);        /* copy_to: offsite.c, never the job's fate */
    } else if (ending) {
        job_end(j, ending);                     /* with the reason it was stopped for */
    } else if (!vbd_quota_failed(j, err)) {
        vbd_job_fail_host(j, VB_JOB_FAILED, what, vb_strerror(e));
    }
}

unsigned vbd_unfinished_jobs(struct vbd *d, struct vbd_vm *vm)
{
    GHashTableIter it;
    gpointer k, v;
    unsigned n = 0;

    g_hash_table_iter_init(&it, d->jobs);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        struct vbd_job *j = v;
        if (j->vm == vm && !finished(j))
            n++;
    }
    return n;
}

struct vbd_job *vbd_job_new(struct vbd *d, struct vbd_vm *vm)
{
    struct vbd_job *j = g_new0(struct vbd_job, 1);

    j->refs = 1;
    j->d = d;
    j->vm = vm;
    vm->refs++;
    j->id = d->next_job++;
    j->created_ns = vb_wall_ns();
    j->last_activity = vb_now();
    j->serials = g_ptr_array_new_with_free_func(g_free);
    j->roots = g_ptr_array_new_with_free_func(g_free);
    j->plan_notes = json_object_new_array();
    g_hash_table_insert(d->jobs, &j->id, j);
    return j;
}

/* ---- BEGIN ----------------------------------------------------------------- */

void vbd_known_targets(struct vbd *d, char *buf, size_t len)
{
    GHashTableIter it;
    gpointer k, v;
    size_t o = 0;

    buf[0] = 0;
    g_hash_table_iter_init(&it, d->targets);
    while (g_hash_table_iter_next(&it, &k, &v) && o + 2 < len)
        o += (size_t)snprintf(buf + o, len - o, "%s%s", o ? ", " : "", (const char *)k);
}

/*
 * The VM's quotas (quota.c), then BEGIN's answer.  A VM with a total quota
 * in the target needs what its snapshots there added: from the snapshot
 * index, on a worker, never by reading the repository on the main loop; its
 * BEGIN is answered when that came back.  Meanwhile the job exists but takes
 * no request (j->opening): nothing it stores could escape its charges.
 */
struct begin_wait {
    struct vbd_job *job;     /* a reference */
    struct vbd_req *req;
    uint32_t features;
    uint64_t commits;        /* vbd_quota_commits when the index was asked */
};

static void begin_finish(struct begin_wait *bw, uint64_t committed)
{
    struct vbd_job *j = bw->job;
    struct vb_backup_begin_reply r;
    char msg[VBD_MSG];

    j->opening = false;
    if (j->state != VB_JOB_COLLECTING) {
        /* cancelled meanwhile (the VM's last connection closed, a shutdown) */
        vbd_req_answer_err(bw->req, VB_S_JOB_FAILED, "job %llu %s: %s", (unsigned long long)j->id,
                           vbd_state_name(j->state), j->reason);
    } else if (vbd_quota_begin(j, committed, msg, sizeof(msg))) {
        /* the VM's quotas: jobs per day, bytes left, its total */
        vbd_job_fail(j, VB_JOB_FAILED, "%s", msg);
        vbd_req_answer_err(bw->req, VB_S_QUOTA, "%s", j->reason);
    } else {
        vbd_log("job %llu: %s begins %s %s backup to %s%s", (unsigned long long)j->id,
                j->vm->name, j->mode == VB_MODE_FULL ? "a full"
                             : j->mode == VB_MODE_INCREMENTAL ? "an incremental"
                                                             : "a differential",
                j->kind == VB_KIND_DISK ? "disk" : "file", j->target->name,
                j->host_map ? " (the host maps the files)" : "");
        memset(&r, 0, sizeof(r));
        r.job = j->id;
        r.features = bw->features;
        vbd_req_answer(bw->req, VB_S_OK, &r, sizeof(r));
    }
    vbd_job_unref(j);
    g_free(bw);
}

static void begin_total(void *opaque, GPtrArray *snaps, const char *err)
{
    struct begin_wait *bw = opaque;
    struct vbd_job *j = bw->job;
    uint64_t commits = vbd_quota_commits(j->d, j->vm);
    char msg[VBD_MSG];

    if (!snaps && j->state == VB_JOB_COLLECTING) {
        j->opening = false;
        vbd_host_error(j->vm, msg, sizeof(msg), "the VM's use of its quota could not be read",
                       err);
        vbd_job_fail(j, VB_JOB_FAILED, "%s", msg);
        vbd_req_answer_err(bw->req, VB_S_IO, "%s", j->reason);
        vbd_job_unref(j);
        g_free(bw);
        return;
    }
    if (snaps && commits != bw->commits && j->state == VB_JOB_COLLECTING) {
        /* a job of the VM was committed meanwhile: a listing that lacks its
         * snapshot would undercount; the next one begins after it */
        bw->commits = commits;
        vbd_snapindex_get(j->d, j->target, j->vm->name, begin_total, bw);
        return;
    }
    begin_finish(bw, vbd_quota_committed(snaps));
}

static void handle_begin(struct vbd_conn *c, const struct vb_hdr *h, const uint8_t *p, size_t n)
{
    struct vbd *d = c->vm->d;
    struct vbd_begin b;
    struct vbd_target *t;
    struct vbd_job *j;
    struct begin_wait *bw;
    char msg[VBD_MSG], known[256];
    int st = vbd_parse_begin(p, n, &b, msg);

    if (st) {
        vbd_reply_err(c, h, st, "%s", msg);
        return;
    }
    t = g_hash_table_lookup(d->targets, b.target);
    if (!t) {
        vbd_known_targets(d, known, sizeof(known));
        vbd_reply_err(c, h, VB_S_UNKNOWN_TARGET, "unknown target '%s' (known: %s)", b.target,
                      known);
        goto out;
    }
    {
        /* a broken or read-only target says so now, not after the guest sent it all */
        vb_error te = { 0 };
        if (vbd_target_writable(t, &te)) {
            vbd_reply_err(c, h, VB_S_IO, "%s", vb_strerror(&te));
            goto out;
        }
    }
    for (unsigned i = 0; i < b.n_disks; i++) {
        if (!vbd_vm_disk(c->vm, b.serials[i])) {
            vbd_reply_err(c, h, VB_S_NOT_OWNED, "disk '%s' is not attached to VM %s",
                          b.serials[i], c->vm->name);
            goto out;
        }
    }
    if (vbd_unfinished_jobs(d, c->vm) >= d->cfg->max_jobs_per_vm) {
        vbd_reply_err(c, h, VB_S_BUSY, "VM %s already has %u unfinished jobs", c->vm->name,
                      d->cfg->max_jobs_per_vm);
        goto out;
    }
    j = vbd_job_new(d, c->vm);
    j->target = t;
    j->kind = b.kind;
    j->mode = b.mode;
    j->unfrozen = b.flags & VB_BEGIN_UNFROZEN;
    j->state = VB_JOB_COLLECTING;
    j->disks = g_ptr_array_new_with_free_func(disk_copy_free);
    for (unsigned i = 0; i < b.n_disks; i++) {
        struct vbd_disk *vd = vbd_vm_disk(c->vm, b.serials[i]);
        struct vbd_disk *dk = g_new0(struct vbd_disk, 1);
        struct vb_image_opts io = { .format = vd->format,
                                    .backing_format = vd->backing_format };
        vb_error e = { 0 };

        dk->serial = g_strdup(vd->serial);
        dk->image = g_strdup(vd->image);
        dk->format = g_strdup(vd->format);
        dk->backing_format = g_strdup(vd->backing_format);
        dk->target = g_strdup(vd->target);
        g_ptr_array_add(j->disks, dk);
        g_ptr_array_add(j->serials, g_strdup(vd->serial));
        if (vb_image_open(vd->image, &io, &dk->img, &e)) {
            char what[128];
            snprintf(what, sizeof(what), "disk '%s' could not be opened on the host", vd->serial);
            vbd_job_fail_host(j, VB_JOB_FAILED, what, vb_strerror(&e));
            vbd_reply_err(c, h, VB_S_IO, "%s", j->reason);
            goto out;
        }
    }
    for (unsigned i = 0; i < b.n_roots; i++)
        g_ptr_array_add(j->roots, g_strdup(b.roots[i]));
    j->entries = g_array_new(FALSE, TRUE, sizeof(struct vbd_entry));
    j->paths = g_hash_table_new(g_str_hash, g_str_equal);
    if (b.flags & VB_BEGIN_HOST_MAP) {
        char why[256], note[320];

        j->host_map = vbd_map_offer(j, &b, why, sizeof(why));
        if (j->host_map)
            snprintf(note, sizeof(note), "map: the host maps the files in its view");
        else
            snprintf(note, sizeof(note), "map: the guest walks (the host does not map: %s)", why);
        json_object_array_add(j->plan_notes, json_object_new_string(note));
    }
    vbd_journal_running(j);     /* a restart reports it, whatever happens */
    bw = g_new0(struct begin_wait, 1);
    bw->job = j;
    j->refs++;
    bw->req = vbd_req_hold(c, h);
    bw->features = c->vm->qmp || c->vm->libvirt ? VB_FEAT_SNAPSHOT_VIEW : 0;
    if (j->host_map)
        bw->features |= VB_FEAT_HOST_MAPS;
    if (c->vm->quota.total_bytes) {
        j->opening = true;
        bw->commits = vbd_quota_commits(d, c->vm);
        vbd_snapindex_get(d, t, c->vm->name, begin_total, bw);
    } else {
        begin_finish(bw, 0);
    }
out:
    vbd_begin_clear(&b);
}

/* ---- FILES ------------------------------------------------------------------ */

static struct vbd_job *collecting_job(struct vbd_conn *c, const struct vb_hdr *h, uint64_t id)
{
    struct vbd_job *j = vbd_job_find(c->vm->d, c->vm, id);

    if (!j) {
        vbd_reply_err(c, h, VB_S_NO_JOB, "no job %llu for VM %s", (unsigned long long)id,
                      c->vm->name);
        return NULL;
    }
    if (j->state == VB_JOB_FAILED) {
        /* the guest learns why (a quota, a full target) from the request it sends next */
        vbd_reply_err(c, h, j->over_quota ? VB_S_QUOTA : VB_S_JOB_FAILED, "job %llu failed: %s",
                      (unsigned long long)id, j->reason);
        return NULL;
    }
    if (j->state != VB_JOB_COLLECTING || j->opening) {
        vbd_reply_err(c, h, VB_S_BAD_STATE, "job %llu is %s, not collecting files",
                      (unsigned long long)id, j->opening ? "still beginning"
                                                         : vbd_state_name(j->state));
        return NULL;
    }
    j->last_activity = vb_now();
    return j;
}

/* A FILES payload for job J, from its guest or from the host's mapper: checked
 * whole (wire.c, the job's bounds, paths sent twice) before any record is
 * taken.  VB_S_OK, or a status with MSG (the job may have failed: a bound). */
int vbd_job_files(struct vbd_job *j, const uint8_t *p, size_t n, char *msg)
{
    struct vbd_files_ctx ctx;
    struct vbd_files f;
    uint64_t id = j->id, sizes[VB_MAX_DISKS];
    const char *names[VB_MAX_DISKS];
    struct vbd_entry *last = NULL;
    GHashTable *fresh;
    int st;

    if (j->kind != VB_KIND_FILES) {
        snprintf(msg, VBD_MSG, "job %llu is a disk backup", (unsigned long long)id);
        return VB_S_BAD_STATE;
    }
    memset(&ctx, 0, sizeof(ctx));
    ctx.n_disks = j->disks->len;
    for (guint i = 0; i < j->disks->len; i++) {
        struct vbd_disk *dk = j->disks->pdata[i];
        sizes[i] = dk->img->size;
        names[i] = dk->serial;
    }
    ctx.disk_sizes = sizes;
    ctx.disk_names = names;
    ctx.files_left = j->d->cfg->max_files_per_job - j->entries->len;
    if (j->entries->len) {
        last = &g_array_index(j->entries, struct vbd_entry, j->entries->len - 1);
        ctx.prev_path = last->path;
        ctx.prev_path_len = strlen(last->path);
        ctx.prev_can_continue = last->m.type == VB_FT_REG;
        ctx.prev_mapped = last->data == VB_FD_EXTENTS;
        ctx.prev_disk = last->disk;
        if (last->extents && last->extents->len) {
            struct vb_extent *x = &g_array_index(last->extents, struct vb_extent,
                                                 last->extents->len - 1);
            ctx.prev_ext_end = x->logical + x->length;
        }
    }
    st = vbd_parse_files(p, n, &ctx, &f, msg);
    if (st) {
        char m[VBD_MSG];

        snprintf(m, sizeof(m), "job %llu: %s", (unsigned long long)id, msg);
        snprintf(msg, VBD_MSG, "%s", m);
        return st;
    }
    /* what the job would hold: bounded per job (extents) and per VM (memory);
     * a job over either fails, it cannot be completed */
    {
        uint64_t ext = 0, bytes = 0;
        for (uint32_t i = 0; i < f.n; i++) {
            ext += f.recs[i].r.n_extents;
            bytes += (uint64_t)f.recs[i].r.n_extents * sizeof(struct vb_extent);
            if (f.recs[i].r.data != VB_FD_MORE)
                bytes += ENTRY_COST + f.recs[i].r.path_len + f.recs[i].r.link_len +
                         f.recs[i].r.xattr_len;     /* kept as sent (en.xattrs) */
        }
        if (j->n_extents + ext > j->d->cfg->max_extents_per_job) {
            vbd_files_clear(&f);
            vbd_job_fail(j, VB_JOB_FAILED, "job %llu: more than %llu extents "
                         "(max_extents_per_job on the host)", (unsigned long long)id,
                         (unsigned long long)j->d->cfg->max_extents_per_job);
            snprintf(msg, VBD_MSG, "%s", j->reason);
            return VB_S_TOO_LARGE;
        }
        if (vbd_mem_take(j, VBD_MEM_FILES, bytes)) {
            char what[96];
            vbd_files_clear(&f);
            snprintf(what, sizeof(what), "the files of job %llu", (unsigned long long)id);
            vbd_mem_fail(j, what);
            snprintf(msg, VBD_MSG, "%s", j->reason);
            return VB_S_TOO_LARGE;
        }
        j->n_extents += ext;
    }
    /* duplicates, checked before anything is taken */
    fresh = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    for (uint32_t i = 0; i < f.n; i++) {
        char *path;
        if (f.recs[i].r.data == VB_FD_MORE)
            continue;
        path = g_strndup(f.recs[i].r.path, f.recs[i].r.path_len);
        if (g_hash_table_contains(j->paths, path) || g_hash_table_contains(fresh, path)) {
            g_autofree char *shown = vb_escape(path, strlen(path));
            snprintf(msg, VBD_MSG, "job %llu: record %u: path '%s' sent twice",
                     (unsigned long long)id, i, shown);
            g_free(path);
            g_hash_table_destroy(fresh);
            vbd_files_clear(&f);
            return VB_S_BAD_REQUEST;
        }
        g_hash_table_add(fresh, path);
    }
    g_hash_table_destroy(fresh);
    for (uint32_t i = 0; i < f.n; i++) {
        struct vbd_prec *x = &f.recs[i];
        struct vbd_entry en, *dst;

        if (x->r.data == VB_FD_MORE) {
            dst = &g_array_index(j->entries, struct vbd_entry, j->entries->len - 1);
            if (!dst->extents)
                dst->extents = g_array_new(FALSE, FALSE, sizeof(struct vb_extent));
            g_array_append_vals(dst->extents, x->ext, x->r.n_extents);
            continue;
        }
        memset(&en, 0, sizeof(en));
        en.m.type = x->r.type;
        en.m.mode = x->r.mode;
        en.m.uid = x->r.uid;
        en.m.gid = x->r.gid;
        en.m.nlink = x->r.nlink;
        en.m.rdev = x->r.rdev;
        en.m.size = x->r.type == VB_FT_REG ? x->r.size : 0;
        en.m.ino = x->r.ino;
        en.m.mtime_sec = x->r.mtime.sec;
        en.m.mtime_nsec = x->r.mtime.nsec;
        en.m.ctime_sec = x->r.ctime.sec;
        en.m.ctime_nsec = x->r.ctime.nsec;
        en.m.atime_sec = x->r.atime.sec;
        en.m.atime_nsec = x->r.atime.nsec;
        en.m.fsflags = x->r.fsflags;
        en.m.projid = x->r.projid;
        en.m.hardlink = VB_CAT_NONE;
        en.master = UINT64_MAX;
        en.path = g_strndup(x->r.path, x->r.path_len);
        en.link = x->r.link_len ? g_strndup(x->r.link, x->r.link_len) : NULL;
        if (x->r.n_xattrs) {
            en.xattrs = g_memdup2(x->r.xattrs, x->r.xattr_len);
            en.xattr_len = (uint32_t)x->r.xattr_len;
            en.n_xattrs = (uint16_t)x->r.n_xattrs;
        }
        en.disk = x->r.disk;
        en.data = x->r.data;
        /* not EXTENTS: only unwritten extents (preallocation), checked by the parser */
        if (en.data == VB_FD_EXTENTS || x->r.n_extents) {
            en.extents = g_array_new(FALSE, FALSE, sizeof(struct vb_extent));
            g_array_append_vals(en.extents, x->ext, x->r.n_extents);
        }
        if (en.data == VB_FD_FALLBACK && en.m.size == 0)
            en.fb_done = true;
        else if (en.data == VB_FD_FALLBACK)
            j->fb_open++;
        g_array_append_val(j->entries, en);
        g_hash_table_insert(j->paths, g_array_index(j->entries, struct vbd_entry,
                                                    j->entries->len - 1).path,
                            GUINT_TO_POINTER(j->entries->len));
        j->files_total++;
        if (en.m.type == VB_FT_REG)
            j->bytes_total += en.m.size;
    }
    vbd_files_clear(&f);
    return VB_S_OK;
}

static void handle_files(struct vbd_conn *c, const struct vb_hdr *h, const uint8_t *p, size_t n)
{
    struct vbd_job *j;
    uint64_t id;
    char msg[VBD_MSG];
    int st = vbd_peek_job(p, n, &id, msg);

    if (st) {
        vbd_reply_err(c, h, st, "%s", msg);
        return;
    }
    if (!(j = collecting_job(c, h, id)))
        return;
    if (j->host_map) {
        vbd_reply_err(c, h, VB_S_BAD_STATE, "job %llu: the host maps its files",
                      (unsigned long long)id);
        return;
    }
    if ((st = vbd_job_files(j, p, n, msg)))
        vbd_reply_err(c, h, st, "%s", msg);
    else
        vbd_reply(c, h, VB_S_OK, NULL, 0);
}

/* ---- PROBLEMS ---------------------------------------------------------------------- */

/* Parsed PROBLEMS for job J, from its guest or from the host's mapper: counted,
 * the first VBD_PROBLEMS_KEPT kept (the path escaped as ls -b shows it), and
 * said in the snapshot. */
int vbd_job_problems(struct vbd_job *j, const struct vbd_problems *pr, char *msg)
{
    if (j->kind != VB_KIND_FILES) {
        snprintf(msg, VBD_MSG, "job %llu is a disk backup", (unsigned long long)j->id);
        return VB_S_BAD_STATE;
    }
    if (pr->job != j->id) {
        snprintf(msg, VBD_MSG, "problems of job %llu sent for job %llu",
                 (unsigned long long)pr->job, (unsigned long long)j->id);
        return VB_S_NO_JOB;
    }
    /* the kept ones (the paths escaped) are counted against the VM before
     * anything is kept */
    {
        size_t kept = j->problems ? json_object_array_length(j->problems) : 0;
        uint32_t n_keep = (uint32_t)VB_MIN((size_t)pr->n, VBD_PROBLEMS_KEPT - VB_MIN(kept,
                                                                         VBD_PROBLEMS_KEPT));
        g_autofree char **paths = g_new0(char *, n_keep + 1);
        uint64_t bytes = 0;

        for (uint32_t i = 0; i < n_keep; i++) {
            paths[i] = vb_escape(pr->items[i].path, VB_MIN(pr->items[i].path_len, PROBLEM_PATH));
            bytes += PROBLEM_COST + strlen(paths[i]) + pr->items[i].reason_len;
        }
        if (vbd_mem_take(j, VBD_MEM_FILES, bytes)) {
            char what[96];
            for (uint32_t i = 0; i < n_keep; i++)
                g_free(paths[i]);
            snprintf(what, sizeof(what), "the problems of job %llu", (unsigned long long)j->id);
            vbd_mem_fail(j, what);
            snprintf(msg, VBD_MSG, "%s", j->reason);
            return VB_S_TOO_LARGE;
        }
        if (n_keep && !j->problems)
            j->problems = json_object_new_array();
        for (uint32_t i = 0; i < n_keep; i++) {
            const struct vbd_problem *x = &pr->items[i];
            json_object *o = json_object_new_object();

            json_object_object_add(o, "path", json_object_new_string(paths[i]));
            json_object_object_add(o, "reason",
                                   json_object_new_string_len(x->reason, (int)x->reason_len));
            json_object_array_add(j->problems, o);
            g_free(paths[i]);
        }
        j->n_problems += pr->n;
    }
    j->flags |= VB_JOB_FLAG_INCOMPLETE;
    return VB_S_OK;
}

static void handle_problems(struct vbd_conn *c, const struct vb_hdr *h, const uint8_t *p,
                            size_t n)
{
    struct vbd_problems pr;
    struct vbd_job *j;
    char msg[VBD_MSG];
    int st = vbd_parse_problems(p, n, &pr, msg);

    if (st) {
        vbd_reply_err(c, h, st, "%s", msg);
        return;
    }
    if ((j = collecting_job(c, h, pr.job))) {
        if ((st = vbd_job_problems(j, &pr, msg)))
            vbd_reply_err(c, h, st, "%s", msg);
        else
            vbd_reply(c, h, VB_S_OK, NULL, 0);
    }
    vbd_problems_clear(&pr);
}

/* ---- DATA (fallback) ---------------------------------------------------------- */

/* A DATA piece for job J, from its guest or from the host's mapper: checked
 * (vbd_job_data_check), then taken; REPLY (held) is answered once the piece
 * is chunked, which makes its sender wait. */
int vbd_job_data_check(struct vbd_job *j, const struct vbd_data *dt, char *msg)
{
    struct vbd_entry *en;
    g_autofree char *shown = NULL;

    if (dt->job != j->id) {
        snprintf(msg, VBD_MSG, "data of job %llu sent for job %llu",
                 (unsigned long long)dt->job, (unsigned long long)j->id);
        return VB_S_NO_JOB;
    }
    if (dt->file >= j->entries->len) {
        snprintf(msg, VBD_MSG, "job %llu has no file %llu", (unsigned long long)dt->job,
                 (unsigned long long)dt->file);
        return VB_S_BAD_REQUEST;
    }
    en = &g_array_index(j->entries, struct vbd_entry, dt->file);
    shown = vb_escape(en->path, strlen(en->path));     /* the guest's bytes, for messages */
    if (en->data != VB_FD_FALLBACK) {
        snprintf(msg, VBD_MSG, "file %llu ('%s') does not take fallback data",
                 (unsigned long long)dt->file, shown);
        return VB_S_BAD_REQUEST;
    }
    if (en->fb_done) {
        snprintf(msg, VBD_MSG, "file '%s' is already complete", shown);
        return VB_S_BAD_STATE;
    }
    if (dt->offset != en->fb_received) {
        snprintf(msg, VBD_MSG, "file '%s': data at offset %llu, expected %llu (pieces come in "
                 "order)", shown, (unsigned long long)dt->offset,
                 (unsigned long long)en->fb_received);
        return VB_S_BAD_REQUEST;
    }
    if (dt->offset + dt->len > en->m.size ||
        ((dt->flags & VB_DATA_LAST) && dt->offset + dt->len != en->m.size)) {
        snprintf(msg, VBD_MSG, "file '%s': data up to %llu, but the file's size is %llu", shown,
                 (unsigned long long)(dt->offset + dt->len), (unsigned long long)en->m.size);
        return VB_S_OUT_OF_RANGE;
    }
    return VB_S_OK;
}

void vbd_job_data_take(struct vbd_job *j, const struct vbd_data *dt, struct vbd_req *reply)
{
    struct vbd_entry *en = &g_array_index(j->entries, struct vbd_entry, dt->file);

    en->fb_received += dt->len;
    if (dt->flags & VB_DATA_LAST) {
        en->fb_done = true;
        j->fb_open--;
    }
    vbd_fallback_data(j, dt->file, dt->bytes, dt->len, en->fb_done, reply);
}

static void handle_data(struct vbd_conn *c, const struct vb_hdr *h, const uint8_t *p, size_t n)
{
    struct vbd_data dt;
    struct vbd_job *j;
    char msg[VBD_MSG];
    int st = vbd_parse_data(p, n, &dt, msg);

    if (st) {
        vbd_reply_err(c, h, st, "%s", msg);
        return;
    }
    if (!(j = collecting_job(c, h, dt.job)))
        return;
    if (j->host_map) {
        vbd_reply_err(c, h, VB_S_BAD_STATE, "job %llu: the host maps its files",
                      (unsigned long long)dt.job);
        return;
    }
    if ((st = vbd_job_data_check(j, &dt, msg))) {
        vbd_reply_err(c, h, st, "%s", msg);
        return;
    }
    vbd_job_data_take(j, &dt, vbd_req_hold(c, h));
}

/* ---- SEAL ---------------------------------------------------------------------- */

bool vbd_job_roots_sent(struct vbd_job *j, char *msg)
{
    for (guint i = 0; i < j->roots->len; i++) {
        if (!g_hash_table_contains(j->paths, j->roots->pdata[i]) && j->kind == VB_KIND_FILES) {
            const char *root = j->roots->pdata[i];
            g_autofree char *shown = vb_escape(root, strlen(root));

            snprintf(msg, VBD_MSG, "job %llu: root '%s' was not sent as a record",
                     (unsigned long long)j->id, shown);
            return false;
        }
    }
    return true;
}

static void handle_seal(struct vbd_conn *c, const struct vb_hdr *h, const uint8_t *p, size_t n)
{
    struct vb_seal_reply r;
    struct vbd_job *j;
    uint64_t id;
    char msg[VBD_MSG];
    int st = vbd_parse_job_ref(p, n, &id, msg);

    if (st) {
        vbd_reply_err(c, h, st, "%s", msg);
        return;
    }
    if (!(j = collecting_job(c, h, id)))
        return;
    /* the roots and fallback data: of a job the host maps, once it has mapped */
    if (!j->host_map && !vbd_job_roots_sent(j, msg)) {
        vbd_reply_err(c, h, VB_S_BAD_STATE, "%s", msg);
        return;
    }
    /* the first fallback file that lacks data: a cursor that only moves on, so
     * repeated SEALs cost no more than one look at each entry */
    for (; j->fb_open && j->fb_first_open < j->entries->len; j->fb_first_open++) {
        struct vbd_entry *en = &g_array_index(j->entries, struct vbd_entry, j->fb_first_open);
        if (en->data == VB_FD_FALLBACK && !en->fb_done) {
            g_autofree char *shown = vb_escape(en->path, strlen(en->path));
            vbd_reply_err(c, h, VB_S_BAD_STATE, "job %llu: file '%s' still lacks fallback data "
                          "(%llu of %llu bytes)", (unsigned long long)id, shown,
                          (unsigned long long)en->fb_received, (unsigned long long)en->m.size);
            return;
        }
    }
    j->sealed_ns = vb_wall_ns();
    j->state = VB_JOB_QUEUED;
    /* a snapshot view (QMP) lets the guest thaw now and the job wait for a
     * quiet host; without it the guest stays frozen until the data is read */
    if (c->vm->qmp || c->vm->libvirt) {
        j->view_pending = true;
        vbd_view_take(j, vbd_req_hold(c, h));   /* answered in vbd_seal_done */
        return;
    }
    j->view = VB_VIEW_FROZEN;
    memset(&r, 0, sizeof(r));
    r.view = j->view;
    vbd_reply(c, h, VB_S_OK, &r, sizeof(r));
    if (j->host_map)
        vbd_map_start(j);
    else
        vbd_batch_enqueue(j->d, j);
}

void vbd_seal_done(struct vbd_job *j, struct vbd_req *reply)
{
    struct vb_seal_reply r = { .view = j->view };

    if (j->state != VB_JOB_QUEUED) {
        /* cancelled or failed while the snapshot was taken */
        if (reply)
            vbd_req_answer_err(reply, VB_S_BAD_STATE, "job %llu is %s%s%s",
                               (unsigned long long)j->id, vbd_state_name(j->state),
                               j->reason[0] ? ": " : "", j->reason);
        if (j->view_op)
            vbd_view_release(j);
        return;
    }
    if (reply)
        vbd_req_answer(reply, VB_S_OK, &r, sizeof(r));
    if (j->host_map)
        vbd_map_start(j);       /* QUEUED once the files are mapped */
    else
        vbd_batch_enqueue(j->d, j);
}

/* ---- STATUS / CANCEL ------------------------------------------------------------ */

static gint newest_first(gconstpointer a, gconstpointer b)
{
    const struct vbd_job *x = *(struct vbd_job *const *)a, *y = *(struct vbd_job *const *)b;

    return x->id < y->id ? 1 : x->id > y->id ? -1 : 0;
}

static size_t put_status(uint8_t *out, size_t cap, struct vbd_job *j)
{
    struct vb_job_status s;
    size_t rl = strlen(j->reason), sl = j->snapshot ? strlen(j->snapshot) : 0;

    if (sizeof(s) + rl + sl > cap)
        return 0;
    memset(&s, 0, sizeof(s));
    s.job = j->id;
    s.state = j->state;
    s.flags = j->flags;
    s.kind = j->kind;
    s.mode = j->mode;
    s.reason_len = (uint16_t)rl;
    s.snap_len = (uint16_t)sl;
    if (j->kind == VB_KIND_DISK && j->disk_thread) {
        s.bytes_done = j->disk_done;
        s.bytes_total = j->disk_total;
    } else {
        s.bytes_done = j->bytes_done;
        s.bytes_total = j->bytes_total;
    }
    s.files_done = j->files_done;
    s.files_total = j->files_total;
    s.bytes_new = j->bytes_new;
    s.bytes_reused = j->bytes_reused;
    s.started_ns = j->started_ns;
    s.finished_ns = j->finished_ns;
    memcpy(out, &s, sizeof(s));
    memcpy(out + sizeof(s), j->reason, rl);
    if (sl)
        memcpy(out + sizeof(s) + rl, j->snapshot, sl);
    return sizeof(s) + rl + sl;
}

static void handle_status(struct vbd_conn *c, const struct vb_hdr *h, const uint8_t *p, size_t n)
{
    struct vbd *d = c->vm->d;
    uint32_t cap = h->reply_max ? h->reply_max : VB_MAX_PAYLOAD;
    GPtrArray *list = g_ptr_array_new();
    uint8_t *out;
    size_t off = 8;
    uint32_t count = 0;
    uint64_t id;
    char msg[VBD_MSG];
    int st = vbd_parse_job_ref(p, n, &id, msg);

    if (st) {
        vbd_reply_err(c, h, st, "%s", msg);
        g_ptr_array_free(list, TRUE);
        return;
    }
    if (id) {
        struct vbd_job *j = vbd_job_find(d, c->vm, id);
        if (!j) {
            vbd_reply_err(c, h, VB_S_NO_JOB, "no job %llu for VM %s", (unsigned long long)id,
                          c->vm->name);
            g_ptr_array_free(list, TRUE);
            return;
        }
        j->last_activity = vb_now();
        g_ptr_array_add(list, j);
    } else {
        GHashTableIter it;
        gpointer k, v;
        g_hash_table_iter_init(&it, d->jobs);
        while (g_hash_table_iter_next(&it, &k, &v))
            if (((struct vbd_job *)v)->vm == c->vm)
                g_ptr_array_add(list, v);
        g_ptr_array_sort(list, newest_first);
    }
    cap = VB_MIN(cap, VB_MAX_PAYLOAD);
    out = g_malloc(cap);
    for (guint i = 0; i < list->len; i++) {
        size_t w = put_status(out + off, cap - off, list->pdata[i]);
        if (!w)
            break;
        off += w;
        count++;
    }
    if (list->len && !count) {
        vbd_reply_err(c, h, VB_S_REPLY_TOO_SMALL, "a status record does not fit %u bytes", cap);
    } else {
        memcpy(out, &count, 4);
        memset(out + 4, 0, 4);
        vbd_reply(c, h, VB_S_OK, out, off);
    }
    g_free(out);
    g_ptr_array_free(list, TRUE);
}

static void handle_cancel(struct vbd_conn *c, const struct vb_hdr *h, const uint8_t *p, size_t n)
{
    struct vbd_job *j;
    uint64_t id;
    char msg[VBD_MSG];
    int st = vbd_parse_job_ref(p, n, &id, msg);

    if (st) {
        vbd_reply_err(c, h, st, "%s", msg);
        return;
    }
    j = vbd_job_find(c->vm->d, c->vm, id);
    if (!j) {
        vbd_reply_err(c, h, VB_S_NO_JOB, "no job %llu for VM %s", (unsigned long long)id,
                      c->vm->name);
        return;
    }
    if (finished(j)) {
        vbd_reply_err(c, h, VB_S_BAD_STATE, "job %llu is already %s", (unsigned long long)id,
                      vbd_state_name(j->state));
        return;
    }
    if (j->state == VB_JOB_RESTORING) {
        vbd_restore_close(j);
    } else {
        vbd_job_fail(j, VB_JOB_CANCELLED, "cancelled by the guest");
    }
    vbd_reply(c, h, VB_S_OK, NULL, 0);
}

/* ---- LIST -------------------------------------------------------------------------- */

/* LIST is answered from the snapshot index (snapindex.c): never a read of
 * the repository on the main loop. */
struct list_ctx {
    struct vbd_req *req;
    struct vbd_vm *vm;       /* a reference */
    char target[VB_MAX_TARGET + 1];
    uint32_t start, cap;
};

static void list_answer(void *opaque, GPtrArray *snaps, const char *err)
{
    struct list_ctx *lc = opaque;
    uint32_t total, count = 0;
    size_t off = 8;
    uint8_t *out;
    char msg[VBD_MSG];

    if (!snaps) {
        char what[160];
        snprintf(what, sizeof(what), "the snapshots in target '%s' could not be listed on the "
                 "host", lc->target);
        vbd_host_error(lc->vm, msg, sizeof(msg), what, err);
        vbd_req_answer_err(lc->req, VB_S_IO, "%s", msg);
        goto out;
    }
    total = snaps->len;
    out = g_malloc(lc->cap);
    for (guint k = lc->start; k < total; k++) {
        const struct vbd_snapinfo *s = snaps->pdata[total - 1 - k];     /* newest first */
        struct vb_snap_info si;

        memset(&si, 0, sizeof(si));
        si.created_ns = s->created_ns;
        si.kind = s->kind;
        si.mode = s->mode;
        si.files = s->files;
        si.flags = s->flags;
        si.bytes = s->bytes;
        si.id_len = (uint16_t)strlen(s->id);
        si.roots_len = (uint16_t)VB_MIN(strlen(s->roots), 4096u);
        if (off + sizeof(si) + si.id_len + si.roots_len > lc->cap)
            break;
        memcpy(out + off, &si, sizeof(si));
        memcpy(out + off + sizeof(si), s->id, si.id_len);
        memcpy(out + off + sizeof(si) + si.id_len, s->roots, si.roots_len);
        off += sizeof(si) + si.id_len + si.roots_len;
        count++;
    }
    if (count == 0 && lc->start < total) {
        vbd_req_answer_err(lc->req, VB_S_REPLY_TOO_SMALL, "a snapshot record does not fit %u "
                           "bytes", lc->cap);
    } else {
        memcpy(out, &total, 4);
        memcpy(out + 4, &count, 4);
        vbd_req_answer(lc->req, VB_S_OK, out, off);
    }
    g_free(out);
out:
    vbd_vm_unref(lc->vm);
    g_free(lc);
}

static void handle_list(struct vbd_conn *c, const struct vb_hdr *h, const uint8_t *p, size_t n)
{
    struct vbd *d = c->vm->d;
    struct vbd_list l;
    struct vbd_target *t;
    struct list_ctx *lc;
    char msg[VBD_MSG], known[256];
    int st = vbd_parse_list(p, n, &l, msg);

    if (st) {
        vbd_reply_err(c, h, st, "%s", msg);
        return;
    }
    if (!l.target[0] && g_hash_table_size(d->targets) == 1) {
        GHashTableIter it;
        gpointer k, v;
        g_hash_table_iter_init(&it, d->targets);
        g_hash_table_iter_next(&it, &k, &v);
        t = v;
    } else {
        t = g_hash_table_lookup(d->targets, l.target);
    }
    if (!t) {
        vbd_known_targets(d, known, sizeof(known));
        if (!l.target[0])
            vbd_reply_err(c, h, VB_S_UNKNOWN_TARGET, "the host has several targets: name one "
                          "(%s)", known);
        else
            vbd_reply_err(c, h, VB_S_UNKNOWN_TARGET, "unknown target '%s' (known: %s)",
                          l.target, known);
        return;
    }
    lc = g_new0(struct list_ctx, 1);
    lc->req = vbd_req_hold(c, h);
    lc->vm = c->vm;
    c->vm->refs++;
    snprintf(lc->target, sizeof(lc->target), "%s", t->name);
    lc->start = l.start;
    lc->cap = VB_MIN(h->reply_max ? h->reply_max : VB_MAX_PAYLOAD, VB_MAX_PAYLOAD);
    vbd_snapindex_get(d, t, c->vm->name, list_answer, lc);
}

void vbd_handle_backup(struct vbd_conn *c, const struct vb_hdr *h, const uint8_t *p, size_t n)
{
    switch (h->type) {
    case VB_OP_BACKUP_BEGIN: handle_begin(c, h, p, n); break;
    case VB_OP_BACKUP_FILES: handle_files(c, h, p, n); break;
    case VB_OP_BACKUP_DATA: handle_data(c, h, p, n); break;
    case VB_OP_BACKUP_SEAL: handle_seal(c, h, p, n); break;
    case VB_OP_STATUS: handle_status(c, h, p, n); break;
    case VB_OP_CANCEL: handle_cancel(c, h, p, n); break;
    case VB_OP_LIST: handle_list(c, h, p, n); break;
    case VB_OP_BACKUP_PROBLEMS: handle_problems(c, h, p, n); break;
    }
}

/* ---- lifecycle ----------------------------------------------------------------------- */

void vbd_jobs_vm_gone(struct vbd *d, struct vbd_vm *vm)
{
    GHashTableIter it;
    gpointer k, v;
    GPtrArray *victims = g_ptr_array_new();

    if (!d->jobs)
        goto out;
    g_hash_table_iter_init(&it, d->jobs);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        struct vbd_job *j = v;
        if (j->vm == vm && (j->state == VB_JOB_COLLECTING || j->state == VB_JOB_RESTORING))
            g_ptr_array_add(victims, j);
    }
    for (guint i = 0; i < victims->len; i++) {
        struct vbd_job *j = victims->pdata[i];
        if (j->state == VB_JOB_RESTORING)
            vbd_restore_close(j);
        else
            vbd_job_fail(j, VB_JOB_FAILED, "the guest went away before sealing the job");
    }
out:
    g_ptr_array_free(victims, TRUE);
}

void vbd_jobs_tick(struct vbd *d)
{
    GHashTableIter it;
    gpointer k, v;
    GPtrArray *idle = g_ptr_array_new();
    GHashTable *per_vm = g_hash_table_new(NULL, NULL);
    double now = vb_now();
    int64_t wall = vb_wall_ns();

    if (!d->jobs)
        goto out;
    g_hash_table_iter_init(&it, d->jobs);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        struct vbd_job *j = v;
        if ((j->state == VB_JOB_COLLECTING || j->state == VB_JOB_RESTORING) &&
            now - j->last_activity > d->cfg->idle_timeout)
            g_ptr_array_add(idle, j);
    }
    for (guint i = 0; i < idle->len; i++) {
        struct vbd_job *j = idle->pdata[i];
        if (j->state == VB_JOB_RESTORING)
            vbd_restore_close(j);
        else
            vbd_job_fail(j, VB_JOB_FAILED, "no request from the guest for %u s",
                         d->cfg->idle_timeout);
    }
    /* forget old finished jobs: after an hour, or beyond 32 per VM (newest kept) */
    {
        GPtrArray *all = g_ptr_array_new();
        g_hash_table_iter_init(&it, d->jobs);
        while (g_hash_table_iter_next(&it, &k, &v))
            g_ptr_array_add(all, v);
        g_ptr_array_sort(all, newest_first);
        for (guint i = 0; i < all->len; i++) {
            struct vbd_job *j = all->pdata[i];
            guint seen;
            if (!finished(j) || j->refs > 1)
                continue;
            seen = GPOINTER_TO_UINT(g_hash_table_lookup(per_vm, j->vm)) + 1;
            g_hash_table_insert(per_vm, j->vm, GUINT_TO_POINTER(seen));
            if (seen > KEEP_FINISHED_PER_VM ||
                wall - j->finished_ns > (int64_t)KEEP_FINISHED_SECONDS * 1000000000) {
                vbd_journal_drop(j);
                g_hash_table_remove(d->jobs, &j->id);
            }
        }
        g_ptr_array_free(all, TRUE);
    }
out:
    g_hash_table_destroy(per_vm);
    g_ptr_array_free(idle, TRUE);
}

json_object *vbd_job_json(struct vbd_job *j, bool detail)
{
    json_object *o = json_object_new_object(), *a;
    char t[48];

    json_object_object_add(o, "id", json_object_new_int64((int64_t)j->id));
    json_object_object_add(o, "vm", json_object_new_string(j->vm->name));
    json_object_object_add(o, "kind", json_object_new_string(
        j->state == VB_JOB_RESTORING || j->is_restore ? "restore" : j->kind == VB_KIND_DISK ? "disk" : "files"));
    json_object_object_add(o, "mode", json_object_new_string(
        j->mode == VB_MODE_INCREMENTAL ? "incremental" :
        j->mode == VB_MODE_DIFFERENTIAL ? "differential" : "full"));
    json_object_object_add(o, "state", json_object_new_string(vbd_state_name(j->state)));
    if (j->reason[0])
        json_object_object_add(o, "reason", json_object_new_string(j->reason));
    if (j->detail)
        json_object_object_add(o, "detail", json_object_new_string(j->detail));
    if (j->target)
        json_object_object_add(o, "target", json_object_new_string(j->target->name));
    json_object_object_add(o, "bytes_done", json_object_new_int64((int64_t)(
        j->kind == VB_KIND_DISK && j->disk_thread ? j->disk_done : j->bytes_done)));
    json_object_object_add(o, "bytes_total", json_object_new_int64((int64_t)(
        j->kind == VB_KIND_DISK && j->disk_thread ? j->disk_total : j->bytes_total)));
    json_object_object_add(o, "files_done", json_object_new_int64((int64_t)j->files_done));
    json_object_object_add(o, "files_total", json_object_new_int64((int64_t)j->files_total));
    json_object_object_add(o, "bytes_new", json_object_new_int64((int64_t)j->bytes_new));
    json_object_object_add(o, "bytes_reused", json_object_new_int64((int64_t)j->bytes_reused));
    json_object_object_add(o, "bytes_read", json_object_new_int64((int64_t)j->bytes_read));
    json_object_object_add(o, "stored_new", json_object_new_int64((int64_t)j->stored_new));
    if (j->snapshot)
        json_object_object_add(o, "snapshot", json_object_new_string(j->snapshot));
    if (j->parent)
        json_object_object_add(o, "parent", json_object_new_string(j->parent));
    if (j->mode_note)
        json_object_object_add(o, "mode_note", json_object_new_string(j->mode_note));
    if (j->batch)
        json_object_object_add(o, "batch", json_object_new_int64((int64_t)j->batch));
    if (j->created_ns) {
        vb_fmt_time(j->created_ns, t, sizeof(t));
        json_object_object_add(o, "created", json_object_new_string(t));
    }
    if (j->started_ns)
        json_object_object_add(o, "started_ns", json_object_new_int64(j->started_ns));
    if (j->finished_ns) {
        json_object_object_add(o, "finished_ns", json_object_new_int64(j->finished_ns));
        if (j->started_ns)
            json_object_object_add(o, "seconds", json_object_new_double(
                (double)(j->finished_ns - j->started_ns) / 1e9));
    }
    if (detail) {
        a = json_object_new_array();
        for (guint i = 0; j->roots && i < j->roots->len; i++)
            json_object_array_add(a, json_object_new_string(j->roots->pdata[i]));
        json_object_object_add(o, "roots", a);
        a = json_object_new_array();
        for (guint i = 0; j->serials && i < j->serials->len; i++)
            json_object_array_add(a, json_object_new_string(j->serials->pdata[i]));
        json_object_object_add(o, "disks", a);
        json_object_object_add(o, "plan", json_object_get(j->plan_notes));
        if (j->host_map) {
            json_object *m = vbd_map_json(j);

            json_object_object_add(o, "host_map", m ? m : json_object_new_boolean(1));
        }
    }
    return o;
}
