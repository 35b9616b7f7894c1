/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Batches: sealed jobs from all VMs wait until the batch is cut (every
 * batch_seconds, or at batch_max jobs, or sooner while a guest is frozen);
 * then each job's files are turned into a read plan (file extents → disk
 * offsets → image chain → host file ranges), the policy chain rewrites it
 * (merge, schedule), and the executor runs what was not deferred.
 */
#include "vbackupd.h"

#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "escape.h"
#include "filerestore.h"
#include "psi.h"
#include "vbackup/protolib.h"

#define WINDOW (4u << 20)

static gboolean on_cut(gpointer opaque);

int vbd_chain_load(struct vbd *d, struct vbd_config *cfg, GPtrArray **out, vb_error *e)
{
    GPtrArray *chain = g_ptr_array_new_with_free_func((GDestroyNotify)vbd_policy_free);

    for (guint i = 0; i < cfg->policies->len; i++) {
        struct vbd_policy_cfg *pc = cfg->policies->pdata[i];
        struct vbd_policy *p;
        int ret = vbd_policy_load(pc->name, cfg->plugin_dir, (char *const *)pc->kv->pdata, &p, e);
        if (ret) {
            g_ptr_array_free(chain, TRUE);
            return ret;
        }
        g_ptr_array_add(chain, p);
    }
    *out = chain;
    return 0;
}

/* ---- when to cut -------------------------------------------------------------- */

static double job_due(struct vbd *d, struct vbd_job *j, double now, int64_t wall)
{
    if (j->state == VB_JOB_DEFERRED)
        return now + VB_MAX(0.05, (double)(j->defer_until_ns - wall) / 1e9);
    if (vbd_job_hurried(j))
        return now + VB_MAX(0.0, d->cfg->frozen_wait - (double)(wall - j->sealed_ns) / 1e9);
    return now + VB_MAX(0.0, d->cfg->batch_seconds - (double)(wall - j->sealed_ns) / 1e9);
}

void vbd_batch_schedule(struct vbd *d)
{
    double now = vb_now(), due = 0;
    int64_t wall = vb_wall_ns();
    unsigned ready = 0;

    for (GList *l = d->pending.head; l; l = l->next) {
        struct vbd_job *j = l->data;
        double t = job_due(d, j, now, wall);
        if (j->state != VB_JOB_DEFERRED)
            ready++;
        if (!due || t < due)
            due = t;
    }
    if (ready >= d->cfg->batch_max)
        due = now;
    if (d->batch_timer) {
        if (due && fabs(due - d->batch_due) < 0.01)
            return;
        g_source_remove(d->batch_timer);
        d->batch_timer = 0;
    }
    d->batch_due = due;
    if (due)
        d->batch_timer = g_timeout_add((guint)VB_MAX(0.0, (due - now) * 1000.0), on_cut, d);
}

void vbd_batch_enqueue(struct vbd *d, struct vbd_job *j)
{
    g_queue_push_tail(&d->pending, j);
    j->refs++;      /* the queue's reference */
    vbd_batch_schedule(d);
}

/* ---- plans ---------------------------------------------------------------------- */

static gint cmp_str_ptr(gconstpointer a, gconstpointer b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

char *vbd_job_group(struct vbd_job *j);
char *vbd_job_group(struct vbd_job *j)
{
    GPtrArray *r = g_ptr_array_new();
    GString *s = g_string_new(j->kind == VB_KIND_DISK ? "disk:" : "files:");

    if (j->kind == VB_KIND_DISK) {
        g_string_append(s, j->serials->pdata[0]);
    } else {
        for (guint i = 0; i < j->roots->len; i++)
            g_ptr_array_add(r, j->roots->pdata[i]);
        g_ptr_array_sort(r, cmp_str_ptr);
        for (guint i = 0; i < r->len; i++) {
            const char *root = r->pdata[i];
            g_autofree char *esc = vb_utf8_valid(root, strlen(root)) ? NULL
                                 : vb_escape(root, strlen(root));
            g_string_append_printf(s, "%s/%s", i ? "," : "", esc ? esc : root);
        }
    }
    g_ptr_array_free(r, TRUE);
    return g_string_free(s, FALSE);
}

/* The parent snapshot of an incremental or differential job, and its catalog. */
static void find_parent(struct vbd_job *j)
{
    g_autofree char *group = vbd_job_group(j);
    GPtrArray *snaps;
    vb_error e = { 0 };

    if (j->mode == VB_MODE_FULL || j->kind != VB_KIND_FILES)
        return;
    if (vb_snap_list(j->target->repo, j->vm->name, &snaps, &e))
        return;
    for (guint i = snaps->len; i-- > 0;) {
        struct vb_snapshot *s = snaps->pdata[i];
        const char *mode = vb_json_str(s->json, "mode");

        if (s->type != VB_SNAP_FILES || strcmp(s->group, group))
            continue;
        if (j->mode == VB_MODE_DIFFERENTIAL && (!mode || strcmp(mode, "full")))
            continue;
        if (vb_files_catalog(j->target->repo, s, &j->parent_cat, &e) == 0) {
            j->parent = g_strdup(s->id);
            j->parent_current = vb_write_inherits(j->ws, s);
        } else {
            vbd_log("job %llu: parent %s is unreadable (%s); backing up in full",
                    (unsigned long long)j->id, s->id, vb_strerror(&e));
        }
        break;
    }
    g_ptr_array_free(snaps, TRUE);
    if (!j->parent_cat)
        j->mode_note = g_strdup("full (no parent snapshot of these paths)");
}

static void note(struct vbd_job *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(struct vbd_job *j, const char *fmt, ...)
{
    va_list ap;
    char buf[512];

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    json_object_array_add(j->plan_notes, json_object_new_string(buf));
}

static uint32_t add_layer_file(struct vbp_batch *b, struct vb_layer *l)
{
    return vbd_batch_add_file(b, l->path, (uint64_t)l->dev, (uint64_t)l->ino, l->file_size);
}

/* Pieces of one window: [off, off + len) of entry en. */
static int plan_window(struct vbd_job *j, struct vbp_batch *b, struct vbd_entry *en,
                       struct vbd_window *w, GArray *scratch, vb_error *e)
{
    struct vbd_disk *dk = j->disks->pdata[en->disk];
    struct vb_image *img = dk->img;
    uint64_t wend = w->off + w->len;

    w->first_piece = j->pieces->len;
    for (guint k = 0; k < en->extents->len; k++) {
        struct vb_extent *x = &g_array_index(en->extents, struct vb_extent, k);
        uint64_t a = VB_MAX(x->logical, w->off), z = VB_MIN(x->logical + x->length, wend);
        int ret;

        if (a >= z || (x->flags & VB_EXT_UNWRITTEN))
            continue;
        g_array_set_size(scratch, 0);
        ret = vb_image_map(img, x->physical + (a - x->logical), z - a, scratch, e);
        if (ret)
            return ret;
        for (guint m = 0; m < scratch->len; m++) {
            struct vb_extent_map *mx = &g_array_index(scratch, struct vb_extent_map, m);
            struct vbd_piece pc;
            uint64_t lo = a + (mx->off - (x->physical + (a - x->logical)));

            memset(&pc, 0, sizeof(pc));
            pc.win_off = (uint32_t)(lo - w->off);
            pc.len = (uint32_t)mx->len;
            if (mx->kind == VB_X_DATA) {
                pc.kind = P_DATA;
                vbd_batch_add_read(b, add_layer_file(b, &img->layer[mx->depth]), mx->host_off,
                                   mx->len, 0, j->id, j->pieces->len);
            } else if (mx->kind == VB_X_COMPRESSED) {
                pc.kind = P_COMP;
                pc.depth = mx->depth;
                pc.comp_len = mx->comp_len;
                pc.cluster_off = mx->cluster_off;
                vbd_batch_add_read(b, add_layer_file(b, &img->layer[mx->depth]), mx->host_off,
                                   mx->comp_len, VBP_READ_COMPRESSED, j->id, j->pieces->len);
            } else {
                pc.kind = P_ZERO;
            }
            g_array_append_val(j->pieces, pc);
        }
    }
    w->n_pieces = j->pieces->len - w->first_piece;
    return 0;
}

static struct vbd_window *window_new(struct vbd_job *j, uint32_t file, uint64_t off, uint32_t len)
{
    struct vbd_window *w = g_new0(struct vbd_window, 1);
    struct vbd_entry *en = &g_array_index(j->entries, struct vbd_entry, file);

    w->job = j;
    w->file = file;
    w->seq = en->windows++;
    w->off = off;
    w->len = len;
    return w;
}

static void window_free(gpointer p)
{
    struct vbd_window *w = p;

    if (w->chunks)
        g_array_free(w->chunks, TRUE);
    g_free(w);
}

static bool unchanged(const struct vbd_entry *en, const struct vb_cat_entry *pe)
{
    return pe->type == VB_FT_REG && pe->hardlink == VB_CAT_NONE && pe->size == en->m.size &&
           pe->mtime_sec == en->m.mtime_sec && pe->mtime_nsec == en->m.mtime_nsec &&
           pe->ctime_sec == en->m.ctime_sec && pe->ctime_nsec == en->m.ctime_nsec &&
           pe->ino == en->m.ino;
}

/* An unchanged file may reuse the parent's chunks only if they exist: known
 * without a look when no gc ran since the parent was committed, else looked
 * up (once per chunk).  A file whose chunk is missing is read again, and the
 * chunk stored again (docs/repository.md, "Claims and knowledge"). */
static bool parent_chunks_exist(struct vbd_job *j, const struct vb_cat_entry *pe)
{
    const struct vb_cat_chunk *c = &j->parent_cat->c[pe->first_chunk];

    for (uint64_t k = 0; k < pe->n_chunks; k++) {
        if (c[k].flags & VB_CATC_ZERO)
            continue;               /* written zeros: nothing stored */
        if (j->parent_current)
            vb_write_inherit(j->ws, c[k].id);
        else if (!vb_write_has(j->ws, c[k].id))
            return false;
    }
    return true;
}

/* Turn a files job into windows and pieces, adding its reads to the batch. */
static int plan_files_job(struct vbd_job *j, struct vbp_batch *b, vb_error *e)
{
    GArray *scratch = g_array_new(FALSE, FALSE, sizeof(struct vb_extent_map));
    GHashTable *links = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL);
    uint64_t reused_files = 0, reused_bytes = 0, planned = 0, missing = 0;
    int ret = 0;

    if (!j->pieces)
        j->pieces = g_array_new(FALSE, FALSE, sizeof(struct vbd_piece));
    if (!j->windows)
        j->windows = g_ptr_array_new_with_free_func(window_free);
    /* the images' metadata as of now: after the guest's freeze flushed them,
     * or after the snapshot made them read-only */
    for (guint i = 0; i < j->disks->len; i++) {
        struct vbd_disk *dk = j->disks->pdata[i];
        struct vb_image_opts io = { .format = dk->format,
                                    .backing_format = dk->backing_format };
        struct vb_image *img;
        if ((ret = vb_image_open(dk->image, &io, &img, e))) {
            vb_prefixerr(e, "disk '%s'", dk->serial);
            goto out;
        }
        vb_image_close(dk->img);
        dk->img = img;
    }
    find_parent(j);
    j->bytes_done = 0;
    j->files_done = 0;
    for (guint i = 0; i < j->entries->len && !ret; i++) {
        struct vbd_entry *en = &g_array_index(j->entries, struct vbd_entry, i);
        uint64_t pi;

        if (en->m.type != VB_FT_REG) {
            j->files_done++;
            continue;
        }
        /* hard links: the first link holds the data */
        if (en->m.nlink > 1) {
            uint64_t key = en->m.ino ^ ((uint64_t)en->disk << 56), *k;
            gpointer v = g_hash_table_lookup(links, &key);
            if (v) {
                en->master = GPOINTER_TO_SIZE(v) - 1;
                j->files_done++;
                continue;
            }
            k = g_new(uint64_t, 1);
            *k = key;
            g_hash_table_insert(links, k, GSIZE_TO_POINTER((gsize)i + 1));
        }
        if (en->data == VB_FD_FALLBACK) {
            /* chunked as it arrived */
            if (en->done_windows == en->windows)
                j->files_done++;
            continue;
        }
        if (j->parent_cat &&
            (pi = vb_cat_find(j->parent_cat, en->path, strlen(en->path))) != VB_CAT_NONE &&
            unchanged(en, &j->parent_cat->e[pi])) {
            const struct vb_cat_entry *pe = &j->parent_cat->e[pi];
            if (parent_chunks_exist(j, pe)) {
                if (!en->chunks)
                    en->chunks = g_array_new(FALSE, FALSE, sizeof(struct vb_cat_chunk));
                g_array_append_vals(en->chunks, &j->parent_cat->c[pe->first_chunk],
                                    pe->n_chunks);
                en->reused = true;
                reused_files++;
                reused_bytes += vb_cat_data_bytes(j->parent_cat, pi);
                j->files_done++;
                continue;
            }
            missing++;                  /* read again, below */
        }
        if (en->data != VB_FD_EXTENTS || !en->extents || !en->extents->len) {
            j->files_done++;        /* empty, or all holes */
            continue;
        }
        /* data regions: written extents, clipped to the size, merged when contiguous */
        {
            uint64_t rs = 0, re = 0;
            bool have = false;
            guint nwin0 = j->windows->len;
            for (guint k = 0; k <= en->extents->len; k++) {
                uint64_t a = 0, z = 0;
                if (k < en->extents->len) {
                    struct vb_extent *x = &g_array_index(en->extents, struct vb_extent, k);
                    if (x->flags & VB_EXT_UNWRITTEN || x->logical >= en->m.size)
                        continue;
                    a = x->logical;
                    z = VB_MIN(x->logical + x->length, en->m.size);
                    if (have && a == re) {
                        re = z;
                        continue;
                    }
                }
                if (have) {
                    for (uint64_t o = rs; o < re && !ret; o += WINDOW) {
                        struct vbd_window *w = window_new(j, i, o,
                                                          (uint32_t)VB_MIN((uint64_t)WINDOW, re - o));
                        w->region_end = o + WINDOW >= re;
                        g_ptr_array_add(j->windows, w);
                        ret = plan_window(j, b, en, w, scratch, e);
                        planned += w->len;
                    }
                }
                if (k == en->extents->len)
                    break;
                rs = a;
                re = z;
                have = true;
            }
            if (j->windows->len > nwin0)
                ((struct vbd_window *)j->windows->pdata[j->windows->len - 1])->file_end = true;
            else
                j->files_done++;    /* nothing written: all holes */
        }
    }
    /* progress counts bytes to read plus bytes already in hand (reused, fallback) */
    {
        uint64_t fb = 0;
        for (guint i = 0; i < j->entries->len; i++) {
            struct vbd_entry *en = &g_array_index(j->entries, struct vbd_entry, i);
            if (en->data == VB_FD_FALLBACK)
                fb += en->fb_received;
        }
        j->bytes_total = planned + reused_bytes + fb;
        j->bytes_done = reused_bytes + fb;
    }
    j->bytes_reused += reused_bytes;
    if (reused_files)
        note(j, "incremental: %llu unchanged files (%llu bytes) reuse the chunks of %s",
             (unsigned long long)reused_files, (unsigned long long)reused_bytes, j->parent);
    if (missing)
        note(j, "incremental: %llu unchanged files are read again: chunks of %s are missing "
             "from the repository", (unsigned long long)missing, j->parent);
    note(j, "%u windows, %u pieces, %llu bytes of file data to read",
         j->windows->len, j->pieces->len, (unsigned long long)planned);
out:
    g_array_free(scratch, TRUE);
    g_hash_table_destroy(links);
    return ret;
}

static void unplan_job(struct vbd_job *j)
{
    /* of a discarded plan, keep only the history: deferrals, the view, the map */
    json_object *keep = json_object_new_array();
    for (size_t i = 0; i < json_object_array_length(j->plan_notes); i++) {
        json_object *n = json_object_array_get_idx(j->plan_notes, i);
        const char *t = json_object_get_string(n);
        if (!strncmp(t, "schedule: deferred", 18) || !strncmp(t, "view:", 5) ||
            !strncmp(t, "map:", 4) ||
            !strncmp(t, "not deferred", 12))
            json_object_array_add(keep, json_object_get(n));
    }
    json_object_put(j->plan_notes);
    j->plan_notes = keep;
    if (j->pieces)
        g_array_set_size(j->pieces, 0);
    if (j->windows) {
        g_ptr_array_free(j->windows, TRUE);
        j->windows = NULL;
    }
    for (guint i = 0; j->entries && i < j->entries->len; i++) {
        struct vbd_entry *en = &g_array_index(j->entries, struct vbd_entry, i);
        if (en->data == VB_FD_EXTENTS) {
            en->windows = 0;
            en->next_seq = 0;
            en->done_windows = 0;
            if (en->chunks)
                g_array_set_size(en->chunks, 0);
        }
        if (en->reused && en->chunks)
            g_array_set_size(en->chunks, 0);
        en->reused = false;
        en->master = UINT64_MAX;
    }
    vb_cat_free(j->parent_cat);
    j->parent_cat = NULL;
    j->parent_current = false;
    g_free(j->parent);
    j->parent = NULL;
    g_free(j->mode_note);
    j->mode_note = NULL;
    j->bytes_reused = 0;
}

/* ---- the cut ------------------------------------------------------------------- */

static void batch_note(struct vbd *d, json_object *report, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void batch_note(struct vbd *d, json_object *report, const char *fmt, ...)
{
    va_list ap;
    char buf[512];

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    json_object_array_add(report, json_object_new_string(buf));
    vbd_log("%s", buf);
}

static void cut(struct vbd *d)
{
    struct vbp_batch *b;
    GPtrArray *jobs = g_ptr_array_new(), *locked = g_ptr_array_new();
    json_object *report = json_object_new_array();
    vb_error e = { 0 };
    int64_t now_ns;

    if (g_queue_is_empty(&d->pending))
        goto out;
    b = vbd_batch_new(++d->next_batch);
    if (vbd_psi_read(d->cfg->psi_dir, &b->load, &e)) {
        vbd_log("batch %llu: host load unknown: %s", (unsigned long long)b->id, vb_strerror(&e));
        b->load.now_ns = vb_wall_ns();
    }
    now_ns = b->load.now_ns;
    b->max_read_bytes = 4u << 20;

    /* offer every pending job */
    while (!g_queue_is_empty(&d->pending)) {
        struct vbd_job *j = g_queue_pop_head(&d->pending);
        struct vbp_job *pj;
        vb_error je = { 0 };

        if (j->state != VB_JOB_QUEUED && j->state != VB_JOB_DEFERRED) {
            vbd_job_unref(j);           /* cancelled meanwhile */
            continue;
        }
        if (vbd_job_claim(j, &je)) {
            /* gc holds the repository: offer it again after a while */
            if (je.code == -EBUSY) {
                snprintf(j->reason, sizeof(j->reason), "%s", vb_strerror(&je));
            } else {
                /* the cause to the log (once), a reference to it for the guest */
                char why[sizeof(j->reason)];
                snprintf(why, sizeof(why), "target '%s' could not be locked on the host, the "
                         "job waits; the host's log has details (job %llu)", j->target->name,
                         (unsigned long long)j->id);
                if (strcmp(why, j->reason))
                    vbd_log("job %llu: %s", (unsigned long long)j->id, vb_strerror(&je));
                memcpy(j->reason, why, sizeof(why));
            }
            j->state = VB_JOB_DEFERRED;
            if (!j->first_deferred_ns)
                j->first_deferred_ns = now_ns;
            j->defer_until_ns = now_ns + (int64_t)(d->cfg->batch_seconds * 1e9);
            g_ptr_array_add(locked, j);
            continue;
        }
        j->batch = b->id;
        pj = vbd_batch_add_job(b, j->id, j->vm->name, j->kind == VB_KIND_DISK ? VBP_KIND_DISK
                                                                             : VBP_KIND_FILES,
                               j->mode);
        pj->sealed_ns = j->sealed_ns;
        pj->first_deferred_ns = j->first_deferred_ns;
        if (j->kind == VB_KIND_FILES) {
            if (plan_files_job(j, b, &e)) {
                pj->bytes = 0;
                vbd_job_fail_host(j, VB_JOB_FAILED, "the reads from the disks could not be "
                                  "planned on the host", vb_strerror(&e));
                vbd_job_unref(j);
                pj->defer_until_ns = INT64_MAX;     /* drop its reads */
                snprintf(pj->defer_reason, sizeof(pj->defer_reason), "failed");
                continue;
            }
            pj->bytes = j->bytes_total - j->bytes_done;
        } else {
            struct vbd_disk *dk = j->disks->pdata[0];
            pj->bytes = dk->img->size;
        }
        g_ptr_array_add(jobs, j);
    }
    for (guint i = 0; i < locked->len; i++)
        g_queue_push_tail(&d->pending, locked->pdata[i]);
    batch_note(d, report, "batch %llu: %u jobs, %u reads planned, load io %.1f%% cpu %.1f%%",
               (unsigned long long)b->id, jobs->len, b->n_reads, b->load.io_some_avg10,
               b->load.cpu_some_avg10);

    for (guint i = 0; i < d->chain->len; i++) {
        struct vbd_policy *p = d->chain->pdata[i];
        vb_error pe = { 0 };
        if (vbd_policy_run(p, b, &pe))
            batch_note(d, report, "policy %s failed, skipped: %s", vbd_policy_name(p),
                       vb_strerror(&pe));
    }
    /* a frozen guest cannot wait: its jobs run whatever a policy said */
    for (uint32_t k = 0; k < b->n_jobs; k++) {
        struct vbp_job *pj = &b->jobs[k];
        for (guint i = 0; i < jobs->len; i++) {
            struct vbd_job *j = jobs->pdata[i];
            if (j->id == pj->id && vbd_job_hurried(j) && pj->defer_until_ns > now_ns &&
                pj->defer_until_ns != INT64_MAX) {
                note(j, "not deferred (%s): the guest stays frozen until its data is read",
                     pj->defer_reason);
                pj->defer_until_ns = 0;
            }
        }
    }
    vbd_batch_strip_deferred(b);
    /* notes into the jobs' plans */
    {
        GPtrArray *notes = vbd_batch_notes(b);
        for (guint n = 0; n < notes->len; n++) {
            struct vbd_note *nt = notes->pdata[n];
            char *line = g_strdup_printf("%s: %s", nt->policy, nt->text);
            if (nt->job == 0)
                json_object_array_add(report, json_object_new_string(line));
            for (guint i = 0; i < jobs->len; i++) {
                struct vbd_job *j = jobs->pdata[i];
                if (nt->job == 0 || nt->job == j->id)
                    json_object_array_add(j->plan_notes, json_object_new_string(line));
            }
            g_free(line);
        }
    }
    {
        struct vbd_plan *plan = g_new0(struct vbd_plan, 1);
        plan->id = b->id;
        plan->batch = b;
        plan->jobs = g_ptr_array_new();
        for (guint i = 0; i < jobs->len; i++) {
            struct vbd_job *j = jobs->pdata[i];
            struct vbp_job *pj = NULL;
            for (uint32_t k = 0; k < b->n_jobs; k++)
                if (b->jobs[k].id == j->id)
                    pj = &b->jobs[k];
            if (pj && pj->defer_until_ns > now_ns) {
                /* deferred: back to the queue, unplanned */
                if (!j->first_deferred_ns)
                    j->first_deferred_ns = now_ns;
                j->state = VB_JOB_DEFERRED;
                j->defer_until_ns = pj->defer_until_ns;
                snprintf(j->reason, sizeof(j->reason), "%s", pj->defer_reason);
                unplan_job(j);
                vbd_job_unclaim_idle(j);
                g_queue_push_tail(&d->pending, j);
                continue;
            }
            j->state = VB_JOB_RUNNING;
            j->reason[0] = 0;
            j->started_ns = vb_wall_ns();
            vbd_journal_running(j);
            g_ptr_array_add(plan->jobs, j);     /* the queue's reference moves to the plan */
        }
        plan->rate_limit_bps = b->rate_limit_bps;
        json_object_array_add(d->batches, json_object_get(report));
        while (json_object_array_length(d->batches) > 20)
            json_object_array_del_idx(d->batches, 0, 1);
        if (plan->jobs->len) {
            vbd_exec_start(d, plan);
        } else {
            g_ptr_array_free(plan->jobs, TRUE);
            vbd_batch_free(b);
            g_free(plan);
        }
    }
out:
    json_object_put(report);
    g_ptr_array_free(jobs, TRUE);
    g_ptr_array_free(locked, TRUE);
}

static gboolean on_cut(gpointer opaque)
{
    struct vbd *d = opaque;

    d->batch_timer = 0;
    d->batch_due = 0;
    cut(d);
    vbd_batch_schedule(d);
    return G_SOURCE_REMOVE;
}
