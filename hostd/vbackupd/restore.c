/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * File restores: the guest opens a restore job on one of its own snapshots,
 * lists the entries, and reads file data in bounded pieces (holes are
 * reported, not sent).  Chunks are read, checked and decompressed on the
 * workers; the last two decoded chunks of each job are cached so that
 * sequential reads of one chunk cost one decode.
 */
#include "vbackupd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filerestore.h"
#include "wire.h"

struct rd_wait {
    struct vbd_req *req;
    uint64_t entry, offset;
    uint32_t len;
};

struct chunk_task {
    struct vbd_task task;
    struct vbd_job *job;
    struct vb_repo *repo;
    struct vb_cat_chunk ch;  /* copied: the worker never touches the catalog */
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
    if (j->state != VB_JOB_RESTORING) {
        vbd_reply_err(c, h, VB_S_BAD_STATE, "restore job %llu is %s", (unsigned long long)id,
                      vbd_state_name(j->state));
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

static int resolve(struct vbd_job *j, struct vbd_target *t, const char *want, char **paths,
                   unsigned n_paths, char *msg, size_t msg_len)
{
    GPtrArray *snaps = NULL;
    vb_error e = { 0 };
    char id[VB_MAX_SNAPSHOT_ID + 80];
    int st = VB_S_NOT_FOUND;

    if (!strcmp(want, "latest")) {
        if (vb_snap_list(t->repo, j->vm->name, &snaps, &e)) {
            snprintf(msg, msg_len, "cannot list snapshots: %s", vb_strerror(&e));
            return VB_S_IO;
        }
        for (guint i = snaps->len; i-- > 0;) {
            struct vb_snapshot *s = snaps->pdata[i];
            struct vb_catalog *cat = NULL;
            bool all = true;
            if (s->type != VB_SNAP_FILES || vb_files_catalog(t->repo, s, &cat, &e))
                continue;
            for (unsigned k = 0; k < n_paths && all; k++) {
                uint64_t self, first, end;
                vb_cat_subtree(cat, paths[k], strlen(paths[k]), &self, &first, &end);
                all = self != VB_CAT_NONE || first < end;
            }
            if (all) {
                j->cat = cat;
                vb_snap_load(t->repo, s->id, &j->snap, &e);
                break;
            }
            vb_cat_free(cat);
        }
        g_ptr_array_free(snaps, TRUE);
        if (!j->cat) {
            snprintf(msg, msg_len, "no snapshot of VM %s in '%s' holds %s", j->vm->name, t->name,
                     n_paths ? "those paths" : "files");
            return VB_S_NOT_FOUND;
        }
        return VB_S_OK;
    }
    if (strchr(want, '/'))
        snprintf(id, sizeof(id), "%s", want);
    else
        snprintf(id, sizeof(id), "%s/%s", j->vm->name, want);
    /* another VM's snapshot is "not found", exactly like a missing one */
    if (strncmp(id, j->vm->name, strlen(j->vm->name)) || id[strlen(j->vm->name)] != '/' ||
        !vb_snap_valid_id(id)) {
        snprintf(msg, msg_len, "snapshot '%s' not found for VM %s in '%s'", want, j->vm->name,
                 t->name);
        return st;
    }
    switch (vb_files_open(t->repo, id, &j->snap, &j->cat, &e)) {
    case 0:
        break;
    case -ENOENT:
        snprintf(msg, msg_len, "snapshot '%s' not found for VM %s in '%s'", want, j->vm->name,
                 t->name);
        return st;
    case -EINVAL:       /* a disk snapshot */
        snprintf(msg, msg_len, "%s: disks are restored on the host (vbackupctl restore-disk)",
                 vb_strerror(&e));
        return VB_S_BAD_REQUEST;
    default:
        snprintf(msg, msg_len, "snapshot %s cannot be read: %s", id, vb_strerror(&e));
        return VB_S_IO;
    }
    return VB_S_OK;
}

static void handle_begin(struct vbd_conn *c, const struct vb_hdr *h, const uint8_t *p, size_t n)
{
    struct vbd *d = c->vm->d;
    struct vbd_restore_begin rb;
    struct vb_restore_begin_reply r;
    struct vbd_target *t;
    struct vbd_job *j;
    vb_error e = { 0 };
    char msg[VBD_MSG];
    uint8_t *out;
    size_t sl;
    int ret, st = vbd_parse_restore_begin(p, n, &rb, msg);

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
    if (!vbd_target_repo(t, &e)) {             /* broken: says so, names no path */
        st = VB_S_IO;
        snprintf(msg, sizeof(msg), "%s", vb_strerror(&e));
    } else {
        st = resolve(j, t, rb.snapshot, rb.paths, rb.n_paths, msg, sizeof(msg));
    }
    /* chunks must not vanish under a restore: a read claim, not waiting for gc */
    if (!st && (ret = vb_repo_claim(t->repo, false, &j->claim, &e))) {
        st = VB_S_BUSY;
        if (ret == -EBUSY)  /* the guest reads this: the target's name, not its path */
            snprintf(msg, sizeof(msg), "target '%s' is busy (garbage collection is running); "
                     "try again later", t->name);
        else
            snprintf(msg, sizeof(msg), "target '%s' cannot be read now (%s); try again later",
                     t->name, strerror(-ret));
    }
    if (st) {
        vbd_job_fail(j, VB_JOB_FAILED, "%s", msg);
        vbd_reply_err(c, h, st, "%s", msg);
        goto out;
    }
    if (vb_files_select(j->cat, rb.paths, rb.n_paths, &j->sel, &e)) {
        snprintf(msg, sizeof(msg), "snapshot %s: %s", j->snap->id, vb_strerror(&e));
        vbd_job_fail(j, VB_JOB_FAILED, "%s", msg);
        vbd_reply_err(c, h, VB_S_NOT_FOUND, "%s", msg);
        goto out;
    }
    for (guint i = 0; i < j->sel->len; i++) {
        /* the bytes that will travel: data chunks, not holes */
        const struct vb_cat_entry *ce = &j->cat->e[g_array_index(j->sel, uint64_t, i)];
        for (uint64_t x = 0; ce->type == VB_FT_REG && x < ce->n_chunks; x++)
            j->bytes_total += j->cat->c[ce->first_chunk + x].len;
    }
    j->files_total = j->sel->len;
    j->state = VB_JOB_RESTORING;
    j->started_ns = vb_wall_ns();
    j->snapshot = g_strdup(j->snap->id);
    g_ptr_array_add(j->roots, g_strdup(rb.n_paths ? rb.paths[0] : ""));
    vbd_log("job %llu: %s restores %llu entries of %s", (unsigned long long)j->id, c->vm->name,
            (unsigned long long)j->sel->len, j->snap->id);
    sl = strlen(j->snap->id);
    out = g_malloc(sizeof(r) + sl);
    memset(&r, 0, sizeof(r));
    r.job = j->id;
    r.n_entries = j->sel->len;
    r.bytes_total = j->bytes_total;
    r.snap_len = (uint16_t)sl;
    memcpy(out, &r, sizeof(r));
    memcpy(out + sizeof(r), j->snap->id, sl);
    vbd_reply(c, h, VB_S_OK, out, sizeof(r) + sl);
    g_free(out);
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
        uint64_t ci = g_array_index(j->sel, uint64_t, i);
        const struct vb_cat_entry *ce = &j->cat->e[ci];
        struct vb_file_rec r;
        size_t pl, need;
        const char *path = vb_cat_path(j->cat, ci, &pl);

        need = sizeof(r) + pl + ce->link_len;
        if (off + need > cap)
            break;
        memset(&r, 0, sizeof(r));
        r.type = ce->type;
        r.mode = ce->mode;
        r.uid = ce->uid;
        r.gid = ce->gid;
        r.nlink = ce->nlink;
        r.rdev = ce->rdev;
        r.size = ce->size;
        r.path_len = (uint16_t)pl;
        r.link_len = (uint16_t)ce->link_len;
        r.mtime_ns = ce->mtime_ns;
        r.ctime_ns = ce->ctime_ns;
        r.atime_ns = ce->atime_ns;
        r.ino = VB_NO_LINK;
        if (ce->hardlink != VB_CAT_NONE) {
            uint64_t si = sel_index(j, ce->hardlink);
            r.ino = si;         /* UINT64_MAX (VB_NO_LINK) when the first link is not restored */
        }
        memcpy(out + off, &r, sizeof(r));
        memcpy(out + off + sizeof(r), path, pl);
        memcpy(out + off + sizeof(r) + pl, j->cat->str + ce->link_off, ce->link_len);
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

    t->buf = g_malloc(t->ch.len);
    t->err = vb_repo_get_chunk(t->repo, c, t->ch.id, t->buf, t->ch.len, &t->len, &t->e);
    if (!t->err && t->len != t->ch.len)
        t->err = vb_seterr(&t->e, -EBADMSG, "chunk holds %zu bytes, the catalog says %u",
                           t->len, t->ch.len);
}

static void decode_done(struct vbd_task *task)
{
    struct chunk_task *t = (struct chunk_task *)task;
    struct vbd_job *j = t->job;

    g_hash_table_remove(j->inflight, &t->chunk);
    if (!t->err && j->state == VB_JOB_RESTORING) {
        unsigned s = j->cache_next;
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
            vbd_req_answer_err(wt->req, VB_S_IO, "snapshot %s: %s", j->snapshot ? j->snapshot : "?",
                               vb_strerror(&t->e));
        } else if (j->state != VB_JOB_RESTORING) {
            vbd_req_answer_err(wt->req, VB_S_BAD_STATE, "restore job %llu was closed",
                               (unsigned long long)j->id);
        } else {
            answer_read(j, wt->req, wt->entry, wt->offset, wt->len,
                        j->cache_buf[j->cache_next ^ 1], &t->ch);
        }
    }
    g_array_free(t->waiters, TRUE);
    g_free(t->buf);
    g_free(t);
    vbd_job_unref(j);
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
    if (rr.offset >= ce->size) {
        struct vb_restore_data rd = { .offset = rr.offset, .len = 0, .flags = VB_RD_EOF };
        vbd_reply(c, h, VB_S_OK, &rd, sizeof(rd));
        return;
    }
    chi = vb_cat_chunk_at(j->cat, holder(j, ci), rr.offset);
    if (chi == VB_CAT_NONE || j->cat->c[chi].offset > rr.offset) {
        uint64_t end = chi == VB_CAT_NONE ? ce->size : j->cat->c[chi].offset;
        struct vb_restore_data rd = { .offset = rr.offset, .flags = VB_RD_HOLE };
        rd.len = (uint32_t)VB_MIN(end - rr.offset, (uint64_t)UINT32_MAX & ~4095ull);
        vbd_reply(c, h, VB_S_OK, &rd, sizeof(rd));
        return;
    }
    for (unsigned s = 0; s < 2; s++) {
        if (j->cache_buf[s] && j->cache_chunk[s] == chi) {
            struct vbd_req *req = vbd_req_hold(c, h);
            answer_read(j, req, rr.entry, rr.offset, rr.len, j->cache_buf[s], &j->cat->c[chi]);
            return;
        }
    }
    {
        struct chunk_task *t = g_hash_table_lookup(j->inflight, &chi);
        struct rd_wait wt = { .req = vbd_req_hold(c, h), .entry = rr.entry, .offset = rr.offset,
                              .len = rr.len };
        if (!t) {
            t = g_new0(struct chunk_task, 1);
            t->task.work.fn = decode_work;
            t->task.done = decode_done;
            t->job = j;
            j->refs++;
            t->chunk = chi;
            t->ch = j->cat->c[chi];
            t->repo = j->target->repo;
            t->waiters = g_array_new(FALSE, FALSE, sizeof(struct rd_wait));
            g_hash_table_insert(j->inflight, &t->chunk, t);
            vb_workers_push(&j->d->wk, &t->task.work);
        }
        g_array_append_val(t->waiters, wt);
    }
}

/* ---- RESTORE_END / close ------------------------------------------------------------------ */

void vbd_restore_close(struct vbd_job *j)
{
    if (j->state != VB_JOB_RESTORING)
        return;
    j->files_done = j->files_total;
    vbd_job_finish_ok(j);      /* frees the catalog and caches; decodes in flight see the state */
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
