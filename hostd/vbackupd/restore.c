/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * File restores: the guest opens a restore job on one of its own snapshots,
 * lists the entries, and reads file data in bounded pieces (holes, written
 * zeros and preallocated ranges are reported, not sent).  Chunks are read, checked and decompressed on the
 * workers; the last two decoded chunks of each job are cached so that
 * sequential reads of one chunk cost one decode.  A job decodes at most
 * MAX_DECODES chunks at once; further reads wait their turn, and decoded
 * chunks count against the VM's memory (limits.c).  RESTORE_BEGIN resolves
 * the snapshot on a worker, from the snapshot index (snapindex.c): the main
 * loop never reads the repository for a guest.
 */
#include "vbackupd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filesnap.h"
#include "manifest.h"
#include "snapread.h"
#include "wire.h"

#define MAX_DECODES 4        /* chunks of one restore job decoded at once */
#define LATEST_TRIES 32      /* snapshots "latest" looks into, newest first */

struct rd_wait {
    struct vbd_req *req;
    uint64_t entry, offset;
    uint64_t chunk;          /* catalog chunk index (waiting for a decode slot) */
    uint32_t len;
};

struct chunk_task {
    struct vbd_task task;
    struct vbd_job *job;
    struct vb_sr *sr;        /* the job's (it holds a reference to the job) */
    struct vb_cat_chunk ch;  /* copied: the worker never touches the catalog */
    const struct vb_idspace *space;  /* the snapshot's ids', the job's snapshot's */
    uint64_t chunk;          /* catalog chunk index */
    uint8_t *buf;
    size_t len;
    int err;
    vb_error e;
    GArray *waiters;         /* struct rd_wait */
};

static bool is_restore(struct vbd_job *j)
{
    return j->is_restore;
}

static struct vbd_job *restore_job(struct vbd_conn *c, const struct vb_hdr *h, uint64_t id)
{
    struct vbd_job *j = vbd_job_find(c->vm->d, c->vm, id);

    if (!j || !is_restore(j)) {
        vbd_reply_err(c, h, VB_S_NO_JOB, "no restore job %llu for VM %s", (unsigned long long)id,
                      c->vm->name);
        return NULL;
    }
    if (j->state != VB_JOB_RESTORING || j->opening) {
        vbd_reply_err(c, h, VB_S_BAD_STATE, "restore job %llu is %s", (unsigned long long)id,
                      j->opening ? "still opening" : vbd_state_name(j->state));
        return NULL;
    }
    j->last_activity = vb_now();
    return j;
}

/* the entry that holds a selected entry's data (itself, or its first link) */
static uint64_t holder(struct vbd_job *j, uint64_t ci)
{
    const struct vb_cat_entry *e = &j->cat->e[ci];

    return e->hardlink != VB_CAT_NONE ? e->hardlink : ci;
}

static uint64_t sel_index(struct vbd_job *j, uint64_t ci)
{
    uint64_t lo = 0, hi = j->sel->len;

    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        uint64_t v = g_array_index(j->sel, uint64_t, mid);
        if (v == ci)
            return mid;
        if (v < ci)
            lo = mid + 1;
        else
            hi = mid;
    }
    return UINT64_MAX;
}

/* ---- RESTORE_BEGIN ------------------------------------------------------------------ */

/* Opening a restore, on a worker: the snapshot (the one named, or the newest
 * of the candidates that holds every path), its catalog, a read claim and
 * the selection.  On failure, msg is for the guest; a cause on the host
 * (paths, errno texts) goes to detail, for the log only. */
struct open_task {
    struct vbd_task task;    /* first */
    struct vbd_job *job;     /* a reference */
    struct vbd_req *req;
    struct vb_repo *repo;    /* format 1, or */
    struct vb2_repo *repo2;  /* format 2: the target's, open */
    char target[VB_MAX_TARGET + 1];
    char want[VB_MAX_SNAPSHOT_ID + 1];
    bool latest;
    GPtrArray *cands;        /* snapshot ids to try, newest first */
    char **paths;
    unsigned n_paths;
    /* results */
    struct vb_sr *sr;        /* the read door over the target (a claim on format 1) */
    struct vb_sr_snap *snap;
    const struct vb_catalog *cat;    /* snap's */
    GArray *sel;
    uint64_t bytes_total;
    int st;
    char msg[VBD_MSG], detail[VBD_MSG];
};

static void open_task_free(struct open_task *ot)
{
    vb_sr_snap_close(ot->snap);
    vb_sr_close(ot->sr);
    if (ot->sel)
        g_array_free(ot->sel, TRUE);
    if (ot->cands)
        g_ptr_array_free(ot->cands, TRUE);
    g_strfreev(ot->paths);
    g_free(ot);
}

static bool holds_paths(const struct vb_catalog *cat, char **paths, unsigned n)
{
    for (unsigned k = 0; k < n; k++) {
        uint64_t self, first, end;
        vb_cat_subtree(cat, paths[k], strlen(paths[k]), &self, &first, &end);
        if (self == VB_CAT_NONE && first >= end)
            return false;
    }
    return true;
}

static void open_work(struct vb_work *work, struct vb_codec *codec)
{
    struct open_task *ot = (struct open_task *)work;
    const char *vm = ot->job->vm->name;
    vb_error e = { 0 };
    int ret;

    (void)codec;
    /* chunks must not vanish under a restore: format 1 takes a read claim,
     * not waiting for gc; format 2's gc keeps what manifests reference */
    if ((ret = vb_sr_over(ot->repo, ot->repo2, false, &ot->sr, &e))) {
        ot->st = VB_S_BUSY;
        if (ret == -EBUSY) {  /* the guest reads this: the target's name, not its path */
            snprintf(ot->msg, sizeof(ot->msg), "target '%s' is busy (garbage collection is "
                     "running); try again later", ot->target);
        } else {
            snprintf(ot->msg, sizeof(ot->msg), "target '%s' could not be locked on the host",
                     ot->target);
            snprintf(ot->detail, sizeof(ot->detail), "%s", vb_strerror(&e));
        }
        return;
    }
    for (guint i = 0; i < ot->cands->len && !ot->cat; i++) {
        const char *id = ot->cands->pdata[i];
        ret = vb_sr_snap_open(ot->sr, id, &ot->snap, &e);
        if (!ret && vb_sr_snap_info(ot->snap)->kind != VB_SR_FILES)
            ret = -EMEDIUMTYPE;
        if (ret == 0)
            ot->cat = vb_sr_files_catalog(ot->snap);
        if (ot->latest) {
            if (ret == 0 && holds_paths(ot->cat, ot->paths, ot->n_paths))
                break;
            /* unreadable, or not holding the paths: an older one may do */
            vb_sr_snap_close(ot->snap);
            ot->snap = NULL;
            ot->cat = NULL;
            continue;
        }
        switch (ret) {
        case 0:
            break;
        case -ENOENT:
        case -EINVAL:
            ot->st = VB_S_NOT_FOUND;
            snprintf(ot->msg, sizeof(ot->msg), "snapshot '%s' not found for VM %s in '%s'",
                     ot->want, vm, ot->target);
            return;
        case -EMEDIUMTYPE:  /* a disk snapshot */
            ot->st = VB_S_BAD_REQUEST;
            snprintf(ot->msg, sizeof(ot->msg), "snapshot %s is a disk snapshot: disks are "
                     "restored on the host (vbackupctl restore-disk)", id);
            return;
        default:
            ot->st = VB_S_IO;
            snprintf(ot->msg, sizeof(ot->msg), "snapshot %s could not be read on the host", id);
            snprintf(ot->detail, sizeof(ot->detail), "%s", vb_strerror(&e));
            return;
        }
    }
    if (!ot->cat) {
        ot->st = VB_S_NOT_FOUND;
        snprintf(ot->msg, sizeof(ot->msg), "no snapshot of VM %s in '%s' holds %s (of the %d "
                 "newest that may)", vm, ot->target, ot->n_paths ? "those paths" : "files",
                 LATEST_TRIES);
        return;
    }
    if (vb_files_select(ot->cat, ot->paths, (int)ot->n_paths, &ot->sel, &e)) {
        /* the path the guest named, escaped: the log and vbackupctl show it */
        g_autofree char *shown = NULL;
        for (unsigned i = 0; i < ot->n_paths && !shown; i++) {
            GArray *one = NULL;
            if (vb_files_select(ot->cat, ot->paths + i, 1, &one, NULL))
                shown = vb_escape(ot->paths[i], strlen(ot->paths[i]));
            else
                g_array_free(one, TRUE);
        }
        ot->st = VB_S_NOT_FOUND;
        if (shown)
            snprintf(ot->msg, sizeof(ot->msg), "snapshot %s: '%s' is not in the snapshot",
                     vb_sr_snap_info(ot->snap)->id, shown);
        else
            snprintf(ot->msg, sizeof(ot->msg), "snapshot %s: %s", vb_sr_snap_info(ot->snap)->id,
                     vb_strerror(&e));
        return;
    }
    for (guint i = 0; i < ot->sel->len; i++) {
        /* the bytes that will travel: data chunks, not holes */
        const struct vb_cat_entry *ce = &ot->cat->e[g_array_index(ot->sel, uint64_t, i)];
        if (ce->type == VB_FT_REG)
            ot->bytes_total += vb_cat_data_bytes(ot->cat, g_array_index(ot->sel, uint64_t, i));
    }
}

static void open_done(struct vbd_task *task)
{
    struct open_task *ot = (struct open_task *)task;
    struct vbd_job *j = ot->job;
    struct vb_restore_begin_reply r;
    uint8_t *out;
    size_t sl;

    j->opening = false;
    if (j->state != VB_JOB_RESTORING) {
        vbd_req_answer_err(ot->req, VB_S_BAD_STATE, "restore job %llu was closed while it "
                           "opened", (unsigned long long)j->id);
        goto out;
    }
    if (ot->st) {
        if (ot->detail[0])
            vbd_job_fail_host(j, VB_JOB_FAILED, ot->msg, ot->detail);
        else
            vbd_job_fail(j, VB_JOB_FAILED, "%s", ot->msg);
        vbd_req_answer_err(ot->req, ot->st, "%s", j->reason);
        goto out;
    }
    if (vbd_mem_take(j, VBD_MEM_CATALOG, vb_cat_footprint(ot->cat) +
                     (uint64_t)ot->sel->len * sizeof(uint64_t))) {
        char what[VB_MAX_SNAPSHOT_ID + 64];
        snprintf(what, sizeof(what), "the catalog of snapshot %s", vb_sr_snap_info(ot->snap)->id);
        vbd_mem_fail(j, what);
        vbd_req_answer_err(ot->req, VB_S_TOO_LARGE, "%s", j->reason);
        goto out;
    }
    j->cat = ot->cat;
    j->snap = ot->snap;
    j->sr = ot->sr;
    j->sel = ot->sel;
    ot->cat = NULL;
    ot->snap = NULL;
    ot->sr = NULL;
    ot->sel = NULL;
    j->bytes_total = ot->bytes_total;
    j->files_total = j->sel->len;
    j->started_ns = vb_wall_ns();
    j->snapshot = g_strdup(vb_sr_snap_info(j->snap)->id);
    j->last_activity = vb_now();
    vbd_log("job %llu: %s restores %llu entries of %s", (unsigned long long)j->id, j->vm->name,
            (unsigned long long)j->sel->len, vb_sr_snap_info(j->snap)->id);
    sl = strlen(vb_sr_snap_info(j->snap)->id);
    out = g_malloc(sizeof(r) + sl);
    memset(&r, 0, sizeof(r));
    r.job = j->id;
    r.n_entries = j->sel->len;
    r.bytes_total = j->bytes_total;
    r.snap_len = (uint16_t)sl;
    memcpy(out, &r, sizeof(r));
    memcpy(out + sizeof(r), vb_sr_snap_info(j->snap)->id, sl);
    vbd_req_answer(ot->req, VB_S_OK, out, sizeof(r) + sl);
    g_free(out);
out:
    vbd_job_unref(j);
    open_task_free(ot);
}

static void open_start(struct open_task *ot)
{
    ot->task.work.fn = open_work;
    ot->task.done = open_done;
    vbd_work_push(ot->job->d, &ot->task);
}

/* "latest": the newest files snapshots whose roots may hold every path, from
 * the index; their catalogs are looked into on the worker. */
static void latest_cands(void *opaque, GPtrArray *snaps, const char *err)
{
    struct open_task *ot = opaque;
    struct vbd_job *j = ot->job;

    if (!snaps || j->state != VB_JOB_RESTORING) {
        if (!snaps) {
            ot->st = VB_S_IO;
            snprintf(ot->msg, sizeof(ot->msg), "the snapshots in target '%s' could not be "
                     "listed on the host", ot->target);
            snprintf(ot->detail, sizeof(ot->detail), "%s", err);
        }
        open_done(&ot->task);
        return;
    }
    for (guint i = snaps->len; i-- > 0 && ot->cands->len < LATEST_TRIES;) {
        const struct vbd_snapinfo *s = snaps->pdata[i];
        bool all = s->kind == VB_KIND_FILES;
        for (unsigned k = 0; k < ot->n_paths && all; k++)
            all = vbd_snapinfo_may_hold(s, ot->paths[k]);
        if (all)
            g_ptr_array_add(ot->cands, g_strdup(s->id));
    }
    if (!ot->cands->len) {
        ot->st = VB_S_NOT_FOUND;
        snprintf(ot->msg, sizeof(ot->msg), "no snapshot of VM %s in '%s' holds %s",
                 j->vm->name, ot->target, ot->n_paths ? "those paths" : "files");
        open_done(&ot->task);
        return;
    }
    open_start(ot);
}

static void handle_begin(struct vbd_conn *c, const struct vb_hdr *h, const uint8_t *p, size_t n)
{
    struct vbd *d = c->vm->d;
    struct vbd_restore_begin rb;
    struct vbd_target *t;
    struct vbd_job *j;
    struct open_task *ot;
    char msg[VBD_MSG], id[VB_MAX_SNAPSHOT_ID + 80];
    int st = vbd_parse_restore_begin(p, n, &rb, msg);

    if (st) {
        vbd_reply_err(c, h, st, "%s", msg);
        return;
    }
    t = g_hash_table_lookup(d->targets, rb.target);
    if (!t) {
        char known[256];

        vbd_known_targets(d, known, sizeof(known));
        vbd_reply_err(c, h, VB_S_UNKNOWN_TARGET, "unknown target '%s' (known: %s)", rb.target,
                      known);
        goto out;
    }
    if (vbd_unfinished_jobs(d, c->vm) >= d->cfg->max_jobs_per_vm) {
        vbd_reply_err(c, h, VB_S_BUSY, "VM %s already has %u unfinished jobs", c->vm->name,
                      d->cfg->max_jobs_per_vm);
        goto out;
    }
    j = vbd_job_new(d, c->vm);
    j->is_restore = true;
    j->inflight = g_hash_table_new(g_int64_hash, g_int64_equal);
    j->target = t;
    j->kind = VB_KIND_FILES;
    j->mode = VB_MODE_FULL;
    j->state = VB_JOB_RESTORING;
    j->opening = true;
    g_ptr_array_add(j->roots, g_strdup(rb.n_paths ? rb.paths[0] : ""));
    ot = g_new0(struct open_task, 1);
    ot->job = j;
    j->refs++;
    ot->req = vbd_req_hold(c, h);
    ot->repo = g_atomic_pointer_get(&t->repo);
    ot->repo2 = g_atomic_pointer_get(&t->repo2);
    snprintf(ot->target, sizeof(ot->target), "%s", t->name);
    snprintf(ot->want, sizeof(ot->want), "%s", rb.snapshot);
    ot->cands = g_ptr_array_new_with_free_func(g_free);
    ot->paths = g_new0(char *, rb.n_paths + 1);
    for (unsigned i = 0; i < rb.n_paths; i++)
        ot->paths[i] = g_strdup(rb.paths[i]);
    ot->n_paths = rb.n_paths;
    if (!ot->repo && !ot->repo2) {
        /* a broken target: opened again now (it may be fixed); else it says so,
         * naming no path (the cause is in the log) */
        vb_error e = { 0 };
        if (vbd_target_open(t, &e) == 0) {
            ot->repo = g_atomic_pointer_get(&t->repo);
            ot->repo2 = g_atomic_pointer_get(&t->repo2);
        } else {
            ot->st = VB_S_IO;
            snprintf(ot->msg, sizeof(ot->msg), "%s", vb_strerror(&e));
            open_done(&ot->task);
            goto out;
        }
    }
    if (!strcmp(rb.snapshot, "latest")) {
        ot->latest = true;
        vbd_snapindex_get(d, t, c->vm->name, latest_cands, ot);
        goto out;
    }
    if (strchr(rb.snapshot, '/'))
        snprintf(id, sizeof(id), "%s", rb.snapshot);
    else
        snprintf(id, sizeof(id), "%s/%s", c->vm->name, rb.snapshot);
    /* another VM's snapshot is "not found", exactly like a missing one */
    if (strncmp(id, c->vm->name, strlen(c->vm->name)) || id[strlen(c->vm->name)] != '/' ||
        (!vb_snap_valid_id(id) && !vb_snap_id_valid(id))) {
        ot->st = VB_S_NOT_FOUND;
        snprintf(ot->msg, sizeof(ot->msg), "snapshot '%s' not found for VM %s in '%s'",
                 rb.snapshot, c->vm->name, t->name);
        open_done(&ot->task);
        goto out;
    }
    g_ptr_array_add(ot->cands, g_strdup(id));
    open_start(ot);
out:
    vbd_restore_begin_clear(&rb);
}

/* ---- RESTORE_LIST -------------------------------------------------------------------- */

static void handle_list(struct vbd_conn *c, const struct vb_hdr *h, const uint8_t *p, size_t n)
{
    uint32_t cap = h->reply_max ? VB_MIN(h->reply_max, VB_MAX_PAYLOAD) : VB_MAX_PAYLOAD;
    uint64_t id, start;
    struct vbd_job *j;
    uint8_t *out;
    size_t off = 8;
    uint32_t count = 0;
    char msg[VBD_MSG];
    int st = vbd_parse_restore_list(p, n, &id, &start, msg);

    if (st) {
        vbd_reply_err(c, h, st, "%s", msg);
        return;
    }
    if (!(j = restore_job(c, h, id)))
        return;
    if (start > j->sel->len) {
        vbd_reply_err(c, h, VB_S_OUT_OF_RANGE, "entry %llu: the job has %u entries",
                      (unsigned long long)start, j->sel->len);
        return;
    }
    out = g_malloc(cap);
    for (uint64_t i = start; i < j->sel->len; i++) {
        uint64_t ci = g_array_index(j->sel, uint64_t, i), hi = holder(j, ci);
        const struct vb_cat_entry *ce = &j->cat->e[ci], *he = &j->cat->e[hi];
        struct vb_rec r;
        size_t need, xl = 0, xo = 0;
        g_autofree uint8_t *xs = NULL;

        memset(&r, 0, sizeof(r));
        r.path = vb_cat_path(j->cat, ci, &r.path_len);
        r.link = vb_cat_link(j->cat, ci, &r.link_len);
        for (uint32_t k = 0; k < ce->n_xattrs; k++)
            xl += vb_xattr_size(j->cat->x[ce->first_xattr + k].name_len,
                                j->cat->x[ce->first_xattr + k].value_len);
        if (xl > VB_MAX_XATTR_BYTES || r.path_len > VB_MAX_PATH || r.link_len > VB_MAX_LINK) {
            /* not from a catalog vbackupd wrote: the guest could not take it */
            vbd_reply_err(c, h, VB_S_TOO_LARGE, "entry %llu: its path, link target or extended "
                          "attributes are larger than the protocol allows",
                          (unsigned long long)i);
            g_free(out);
            return;
        }
        need = VB_REC_FIXED + r.path_len + r.link_len + xl;
        if (off + need > cap)
            break;
        xs = g_malloc(VB_MAX(xl, (size_t)1));
        for (uint32_t k = 0; k < ce->n_xattrs; k++) {
            const char *name;
            const uint8_t *value;
            size_t nl, vl;
            vb_cat_xattr(j->cat, ci, k, &name, &nl, &value, &vl);
            xo += vb_xattr_put(xs + xo, name, nl, value, vl);
        }
        r.type = ce->type;
        r.mode = ce->mode;
        r.uid = ce->uid;
        r.gid = ce->gid;
        r.nlink = ce->nlink;
        r.rdev = ce->rdev;
        r.size = ce->type == VB_FT_REG ? he->size : ce->size;
        r.mtime = (struct vb_ts){ ce->mtime_sec, ce->mtime_nsec };
        r.ctime = (struct vb_ts){ ce->ctime_sec, ce->ctime_nsec };
        r.atime = (struct vb_ts){ ce->atime_sec, ce->atime_nsec };
        r.fsflags = ce->fsflags & VB_FSFL_MASK;
        r.projid = ce->projid;
        r.xattrs = xs;
        r.xattr_len = xl;
        r.n_xattrs = ce->n_xattrs;
        /* preallocated space past the size: the guest reads on at the size */
        if (ce->type == VB_FT_REG && he->n_ranges) {
            const struct vb_cat_range *last = &j->cat->rg[he->first_range + he->n_ranges - 1];
            if (last->offset + last->len > he->size)
                r.flags |= VB_RF_PREALLOC;
        }
        r.ino = VB_NO_LINK;
        if (ce->hardlink != VB_CAT_NONE)
            r.ino = sel_index(j, ce->hardlink);   /* VB_NO_LINK when the first link is not restored */
        vb_rec_encode_head(&r, out + off);
        off += need;
        count++;
    }
    if (!count && start < j->sel->len) {
        vbd_reply_err(c, h, VB_S_REPLY_TOO_SMALL, "an entry does not fit %u bytes", cap);
    } else {
        memcpy(out, &count, 4);
        memset(out + 4, 0, 4);
        vbd_reply(c, h, VB_S_OK, out, off);
    }
    g_free(out);
}

/* ---- RESTORE_READ ---------------------------------------------------------------------- */

static void answer_read(struct vbd_job *j, struct vbd_req *req, uint64_t entry, uint64_t off,
                        uint32_t want, const uint8_t *cbuf, const struct vb_cat_chunk *ch)
{
    uint64_t ci = g_array_index(j->sel, uint64_t, entry);
    const struct vb_cat_entry *ce = &j->cat->e[holder(j, ci)];
    uint64_t n = VB_MIN((uint64_t)want, ch->offset + ch->len - off);
    struct vb_restore_data rd = { .offset = off };
    uint8_t *out;

    n = VB_MIN(n, ce->size - off);
    rd.len = (uint32_t)n;
    out = g_malloc(sizeof(rd) + n);
    memcpy(out, &rd, sizeof(rd));
    memcpy(out + sizeof(rd), cbuf + (off - ch->offset), n);
    j->bytes_done += n;
    vbd_req_answer(req, VB_S_OK, out, sizeof(rd) + n);
    g_free(out);
}

static void decode_work(struct vb_work *w, struct vb_codec *c)
{
    struct chunk_task *t = (struct chunk_task *)w;

    (void)c;
    t->buf = g_malloc(t->ch.len);
    /* the read door checks the length the catalog gives it */
    t->err = vb_sr_read_chunk(t->sr, t->space, t->ch.id, t->buf, t->ch.len, &t->e);
    t->len = t->ch.len;
}

static void read_wait_drop(struct vbd_job *j)
{
    struct rd_wait *wt;

    while ((wt = g_queue_pop_head(&j->read_wait))) {
        vbd_req_answer_err(wt->req, VB_S_BAD_STATE, "restore job %llu was closed",
                           (unsigned long long)j->id);
        g_free(wt);
    }
}

static void decode_next(struct vbd_job *j);
static void decode_done(struct vbd_task *task);

/* Decode a chunk for a read: at most MAX_DECODES per job at once, each
 * counted against the VM's memory; a read that cannot have its decode now
 * waits for one to come back (false: it was answered, it cannot wait). */
static bool decode_start(struct vbd_job *j, struct rd_wait *wt)
{
    struct chunk_task *t = g_hash_table_lookup(j->inflight, &wt->chunk);

    if (t) {
        g_array_append_val(t->waiters, *wt);
        return true;
    }
    if (j->decoding >= MAX_DECODES ||
        vbd_mem_take(j, VBD_MEM_RESTORE, j->cat->c[wt->chunk].len)) {
        if (j->decoding) {
            g_queue_push_tail(&j->read_wait, g_memdup2(wt, sizeof(*wt)));
            return true;
        }
        {
            char why[VBD_MSG], what[96];
            snprintf(what, sizeof(what), "a chunk of %u bytes for restore job %llu",
                     j->cat->c[wt->chunk].len, (unsigned long long)j->id);
            vbd_mem_reason(j->vm, why, sizeof(why), what);
            vbd_req_answer_err(wt->req, VB_S_TOO_LARGE, "%s", why);
        }
        return false;
    }
    t = g_new0(struct chunk_task, 1);
    t->task.work.fn = decode_work;
    t->task.done = decode_done;
    t->job = j;
    j->refs++;
    t->chunk = wt->chunk;
    t->ch = j->cat->c[wt->chunk];
    t->sr = j->sr;
    t->space = vb_sr_snap_space(j->snap);
    t->waiters = g_array_new(FALSE, FALSE, sizeof(struct rd_wait));
    g_array_append_val(t->waiters, *wt);
    g_hash_table_insert(j->inflight, &t->chunk, t);
    j->decoding++;
    vbd_work_push(j->d, &t->task);
    return true;
}

static void decode_done(struct vbd_task *task)
{
    struct chunk_task *t = (struct chunk_task *)task;
    struct vbd_job *j = t->job;
    char msg[VBD_MSG];

    g_hash_table_remove(j->inflight, &t->chunk);
    j->decoding--;
    if (t->err) {
        char what[160];
        snprintf(what, sizeof(what), "snapshot %s: data could not be read from target '%s' on "
                 "the host", j->snapshot ? j->snapshot : "?", j->target->name);
        vbd_host_error(j->vm, msg, sizeof(msg), what, vb_strerror(&t->e));
    }
    if (!t->err && j->state == VB_JOB_RESTORING) {
        unsigned s = j->cache_next;
        if (j->cache_buf[s])
            vbd_mem_give(j, VBD_MEM_RESTORE, j->cache_len[s]);
        g_free(j->cache_buf[s]);
        j->cache_buf[s] = t->buf;
        j->cache_len[s] = (uint32_t)t->len;
        j->cache_chunk[s] = t->chunk;
        j->cache_next = s ^ 1;
        t->buf = NULL;
    }
    for (guint i = 0; i < t->waiters->len; i++) {
        struct rd_wait *wt = &g_array_index(t->waiters, struct rd_wait, i);
        if (t->err) {
            vbd_req_answer_err(wt->req, VB_S_IO, "%s", msg);
        } else if (j->state != VB_JOB_RESTORING) {
            vbd_req_answer_err(wt->req, VB_S_BAD_STATE, "restore job %llu was closed",
                               (unsigned long long)j->id);
        } else {
            answer_read(j, wt->req, wt->entry, wt->offset, wt->len,
                        j->cache_buf[j->cache_next ^ 1], &t->ch);
        }
    }
    g_array_free(t->waiters, TRUE);
    if (t->buf)                         /* not kept in the cache */
        vbd_mem_give(j, VBD_MEM_RESTORE, t->ch.len);
    g_free(t->buf);
    g_free(t);
    if (j->state == VB_JOB_RESTORING)
        decode_next(j);
    else
        read_wait_drop(j);
    vbd_job_unref(j);
}

/* Reads that waited for a decode slot, in order. */
static void decode_next(struct vbd_job *j)
{
    struct rd_wait *wt;

    while (j->decoding < MAX_DECODES && (wt = g_queue_pop_head(&j->read_wait))) {
        bool done = false;
        for (unsigned s = 0; s < 2 && !done; s++) {
            if (j->cache_buf[s] && j->cache_chunk[s] == wt->chunk) {
                answer_read(j, wt->req, wt->entry, wt->offset, wt->len, j->cache_buf[s],
                            &j->cat->c[wt->chunk]);
                done = true;
            }
        }
        if (!done)
            decode_start(j, wt);
        g_free(wt);
    }
}

static void handle_read(struct vbd_conn *c, const struct vb_hdr *h, const uint8_t *p, size_t n)
{
    struct vb_restore_read rr;
    struct vbd_job *j;
    uint32_t cap = h->reply_max ? VB_MIN(h->reply_max, VB_MAX_PAYLOAD) : VB_MAX_PAYLOAD;
    const struct vb_cat_entry *ce;
    uint64_t ci, chi;
    char msg[VBD_MSG];
    int st = vbd_parse_restore_read(p, n, &rr, msg);

    if (st) {
        vbd_reply_err(c, h, st, "%s", msg);
        return;
    }
    if (!(j = restore_job(c, h, rr.job)))
        return;
    if (rr.entry >= j->sel->len) {
        vbd_reply_err(c, h, VB_S_OUT_OF_RANGE, "entry %llu: the job has %u entries",
                      (unsigned long long)rr.entry, j->sel->len);
        return;
    }
    if (cap <= sizeof(struct vb_restore_data)) {
        vbd_reply_err(c, h, VB_S_REPLY_TOO_SMALL, "the reply buffer holds no data");
        return;
    }
    rr.len = VB_MIN(rr.len, cap - (uint32_t)sizeof(struct vb_restore_data));
    ci = g_array_index(j->sel, uint64_t, rr.entry);
    ce = &j->cat->e[holder(j, ci)];
    if (ce->type != VB_FT_REG) {
        vbd_reply_err(c, h, VB_S_BAD_REQUEST, "entry %llu is not a regular file",
                      (unsigned long long)rr.entry);
        return;
    }
    {
        /* what lies at the offset: data, written zeros, preallocated space, a hole */
        uint64_t hi = holder(j, ci), ri = vb_cat_range_at(j->cat, hi, rr.offset);
        const struct vb_cat_range *rg = ri != VB_CAT_NONE ? &j->cat->rg[ri] : NULL;
        struct vb_restore_data rd = { .offset = rr.offset };
        const uint64_t most = (uint64_t)UINT32_MAX & ~4095ull;
        const struct vb_cat_chunk *ch;
        uint64_t end;

        chi = rr.offset < ce->size ? vb_cat_chunk_at(j->cat, hi, rr.offset) : VB_CAT_NONE;
        ch = chi != VB_CAT_NONE ? &j->cat->c[chi] : NULL;
        if (ch && ch->offset <= rr.offset && !(ch->flags & VB_CATC_ZERO))
            goto data;
        if (ch && ch->offset <= rr.offset) {
            rd.flags = VB_RD_ZERO;
            end = VB_MIN(ch->offset + ch->len, ce->size);
        } else if (rg && rg->offset <= rr.offset) {
            rd.flags = VB_RD_UNWRITTEN;
            end = rg->offset + rg->len;
            if (ch)
                end = VB_MIN(end, ch->offset);
        } else if (rr.offset >= ce->size && !rg) {
            rd.flags = VB_RD_EOF;
            end = rr.offset;
        } else {
            rd.flags = VB_RD_HOLE;
            end = rr.offset >= ce->size ? rg->offset : VB_MIN(ce->size, ch ? ch->offset : UINT64_MAX);
            if (rg)
                end = VB_MIN(end, rg->offset);
        }
        rd.len = (uint32_t)VB_MIN(end - rr.offset, most);
        vbd_reply(c, h, VB_S_OK, &rd, sizeof(rd));
        return;
    }
data:
    for (unsigned s = 0; s < 2; s++) {
        if (j->cache_buf[s] && j->cache_chunk[s] == chi) {
            struct vbd_req *req = vbd_req_hold(c, h);
            answer_read(j, req, rr.entry, rr.offset, rr.len, j->cache_buf[s], &j->cat->c[chi]);
            return;
        }
    }
    {
        struct rd_wait wt = { .req = vbd_req_hold(c, h), .entry = rr.entry, .offset = rr.offset,
                              .chunk = chi, .len = rr.len };
        decode_start(j, &wt);
    }
}

/* ---- RESTORE_END / close ------------------------------------------------------------------ */

void vbd_restore_close(struct vbd_job *j)
{
    if (j->state != VB_JOB_RESTORING)
        return;
    j->files_done = j->files_total;
    vbd_job_finish_ok(j);      /* frees the catalog and caches; decodes in flight see the state */
    read_wait_drop(j);
}

static void handle_end(struct vbd_conn *c, const struct vb_hdr *h, const uint8_t *p, size_t n)
{
    struct vbd_job *j;
    uint64_t id;
    char msg[VBD_MSG];
    int st = vbd_parse_job_ref(p, n, &id, msg);

    if (st) {
        vbd_reply_err(c, h, st, "%s", msg);
        return;
    }
    if (!(j = restore_job(c, h, id)))
        return;
    vbd_restore_close(j);
    vbd_reply(c, h, VB_S_OK, NULL, 0);
}

void vbd_handle_restore(struct vbd_conn *c, const struct vb_hdr *h, const uint8_t *p, size_t n)
{
    switch (h->type) {
    case VB_OP_RESTORE_BEGIN: handle_begin(c, h, p, n); break;
    case VB_OP_RESTORE_LIST: handle_list(c, h, p, n); break;
    case VB_OP_RESTORE_READ: handle_read(c, h, p, n); break;
    case VB_OP_RESTORE_END: handle_end(c, h, p, n); break;
    }
}
