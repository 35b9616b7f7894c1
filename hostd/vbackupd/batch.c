/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Batches: sealed jobs from all VMs wait until the batch is cut (every
 * batch_seconds, or at batch_max jobs, or sooner while a guest is frozen);
 * then each job's files are turned into a read plan (file extents → disk
 * offsets → image chain → host file ranges), the policy chain rewrites it
 * (merge, schedule), and the executor runs what was not deferred.
 *
 * The cut runs in three steps, so that no guest's job size shows on the main
 * loop: the main loop takes the pending jobs; a worker claims the repository
 * for them, plans them (in time linear in their entries, extents and windows,
 * within what each VM may still hold) and runs the policy chain; the main
 * loop takes the result back: jobs that ended meanwhile are dropped, plans
 * are charged to their VMs, frozen guests get their priority (bounded, see
 * frozen_priority) and the plan starts.  One cut at a time.
 */
#include "vbackupd.h"

#include "repo2.h"

#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "escape.h"
#include "filesnap.h"
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
    if (j->claiming)
        return 0;                       /* its fallback claim comes back first */
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

    if (d->cutting)
        return;                         /* the cut's end schedules the next one */
    for (GList *l = d->pending.head; l; l = l->next) {
        struct vbd_job *j = l->data;
        double t = job_due(d, j, now, wall);
        if (!t)
            continue;
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

/*
 * What a worker plans for one job of a cut.  The worker writes the job's
 * windows, pieces and the run state of its entries (nothing else touches a
 * sealed job's entries); what the main loop may read meanwhile (notes,
 * counters, the parent) waits here until the cut comes back.
 */
struct jobplan {
    struct vbd_job *job;     /* the pending queue's reference */
    struct vbp_job *pj;      /* in the batch, once added (valid after the last add) */
    uint64_t pj_id;
    struct vb_sink *ws;     /* a session the worker began for the job */
    int claim_err;           /* -EBUSY: gc holds the repository */
    vb_error claim_e;
    int err;                 /* planning failed on the host */
    vb_error e;
    uint64_t room;           /* what the job's VM may still hold, when the cut began */
    uint64_t mem;            /* what its plan holds (estimate) */
    uint64_t cat_mem;        /* what its parent's catalog holds */
    json_object *notes;
    struct vb_catalog *parent_cat;
    char *parent, *mode_note;
    bool parent_current;
    uint64_t bytes_total, bytes_done, files_done, bytes_reused;
};

/* A plan costs about this much per piece: the piece, its read and consumer in
 * the batch and their copies while policies run, the executor's read. */
#define PIECE_COST (sizeof(struct vbd_piece) + 2 * (sizeof(struct vbp_read) + \
                    sizeof(struct vbp_consumer) + 16) + sizeof(struct vbd_read) + 16)
#define WINDOW_COST (sizeof(struct vbd_window) + 16)

static void note(struct jobplan *jp, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(struct jobplan *jp, const char *fmt, ...)
{
    va_list ap;
    char buf[512];

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    json_object_array_add(jp->notes, json_object_new_string(buf));
}

/* The parent snapshot of an incremental or differential job, and its
 * catalog, if it fits what the VM may hold. */
static void find_parent(struct vbd_job *j, struct jobplan *jp, struct vb_sink *ws)
{
    g_autofree char *group = vbd_job_group(j);
    struct vb_files_parent *p = NULL;
    vb_error e = { 0 };

    if (j->mode == VB_MODE_FULL || j->kind != VB_KIND_FILES)
        return;
    if (vb_sink_files_parent(ws, group, j->mode == VB_MODE_DIFFERENTIAL, &p, &e)) {
        vbd_log("job %llu: %s; backing up in full", (unsigned long long)j->id, vb_strerror(&e));
    } else if (p) {
        jp->cat_mem = vb_cat_footprint(p->cat);
        if (jp->cat_mem > jp->room / 2) {
            note(jp, "the catalog of parent %s (%llu bytes) would take more than half "
                 "of what the VM may still hold: backing up in full", p->id,
                 (unsigned long long)jp->cat_mem);
            jp->cat_mem = 0;
        } else {
            jp->parent_cat = g_steal_pointer(&p->cat);
            jp->parent = g_strdup(p->id);
            jp->parent_current = p->known;
        }
        vb_files_parent_free(p);
    }
    if (!jp->parent_cat)
        jp->mode_note = g_strdup("full (no parent snapshot of these paths)");
}

static uint32_t add_layer_file(struct vbp_batch *b, struct vb_layer *l)
{
    return vbd_batch_add_file(b, l->path, (uint64_t)l->dev, (uint64_t)l->ino, l->file_size);
}

/* Pieces of one window: [off, off + len) of entry en.  Windows of a file
 * come in file order and its extents are sorted (wire.c checks it): *cursor
 * is the first extent that may still reach this window, so a file costs its
 * extents plus its windows, not their product. */
static int plan_window(struct vbd_job *j, struct vbp_batch *b, struct vbd_entry *en,
                       struct vbd_window *w, GArray *scratch, guint *cursor, vb_error *e)
{
    struct vbd_disk *dk = j->disks->pdata[en->disk];
    struct vb_image *img = dk->img;
    uint64_t wend = w->off + w->len;

    w->first_piece = j->pieces->len;
    while (*cursor < en->extents->len) {
        struct vb_extent *x = &g_array_index(en->extents, struct vb_extent, *cursor);
        if (x->logical + x->length > w->off)
            break;
        (*cursor)++;
    }
    for (guint k = *cursor; k < en->extents->len; k++) {
        struct vb_extent *x = &g_array_index(en->extents, struct vb_extent, k);
        uint64_t a = VB_MAX(x->logical, w->off), z = VB_MIN(x->logical + x->length, wend);
        int ret;

        if (x->logical >= wend)
            break;
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
    g_free(w->emsg);
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
static bool parent_chunks_exist(struct jobplan *jp, struct vb_sink *ws,
                                const struct vb_cat_entry *pe)
{
    const struct vb_cat_chunk *c = &jp->parent_cat->c[pe->first_chunk];

    for (uint64_t k = 0; k < pe->n_chunks; k++) {
        if (c[k].flags & VB_CATC_ZERO)
            continue;               /* written zeros: nothing stored */
        if (jp->parent_current)
            vb_sink_inherit(ws, c[k].id);
        else if (!vb_sink_has(ws, c[k].id))
            return false;
    }
    return true;
}

/* What the plan holds so far; -E2BIG once it would pass what the VM may hold. */
static int plan_cost(struct vbd_job *j, struct jobplan *jp, uint64_t chunks, vb_error *e)
{
    jp->mem = j->windows->len * WINDOW_COST + j->pieces->len * PIECE_COST +
              chunks * sizeof(struct vb_cat_chunk);
    if (jp->mem + jp->cat_mem <= jp->room)
        return 0;
    return vb_seterr(e, -E2BIG, "the read plan of job %llu (%u windows, %u pieces so far)",
                     (unsigned long long)j->id, j->windows->len, j->pieces->len);
}

/* Turn a files job into windows and pieces, adding its reads to the batch
 * (on a worker). */
static int plan_files_job(struct vbd_job *j, struct jobplan *jp, struct vb_sink *ws,
                          struct vbp_batch *b, vb_error *e)
{
    GArray *scratch = g_array_new(FALSE, FALSE, sizeof(struct vb_extent_map));
    GHashTable *links = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL);
    uint64_t reused_files = 0, reused_bytes = 0, planned = 0, missing = 0, chunks = 0;
    int ret = 0;

    if (!j->pieces)
        j->pieces = g_array_new(FALSE, FALSE, sizeof(struct vbd_piece));
    if (!j->windows)
        j->windows = g_ptr_array_new_with_free_func(window_free);
    /* the images' metadata as of now: after the guest's freeze flushed them,
     * or after the snapshot made them read-only */
    for (guint i = 0; i < j->disks->len; i++) {
        struct vbd_disk *dk = j->disks->pdata[i];
        /* on its tracking overlay, the disk is read through it (docs/cbt.md) */
        struct vb_image_opts io = { .format = dk->top ? "qcow2" : dk->format,
                                    .backing_format = dk->backing_format };
        struct vb_image *img;
        if ((ret = vb_image_open(dk->top ? dk->top : dk->image, &io, &img, e))) {
            vb_prefixerr(e, "disk '%s'", dk->serial);
            goto out;
        }
        vb_image_close(dk->img);
        dk->img = img;
    }
    find_parent(j, jp, ws);
    for (guint i = 0; i < j->entries->len && !ret; i++) {
        struct vbd_entry *en = &g_array_index(j->entries, struct vbd_entry, i);
        uint64_t pi;

        if (en->m.type != VB_FT_REG) {
            jp->files_done++;
            continue;
        }
        /* hard links: the first link holds the data */
        if (en->m.nlink > 1) {
            uint64_t key = en->m.ino ^ ((uint64_t)en->disk << 56), *k;
            gpointer v = g_hash_table_lookup(links, &key);
            if (v) {
                en->master = GPOINTER_TO_SIZE(v) - 1;
                jp->files_done++;
                continue;
            }
            k = g_new(uint64_t, 1);
            *k = key;
            g_hash_table_insert(links, k, GSIZE_TO_POINTER((gsize)i + 1));
        }
        if (en->data == VB_FD_FALLBACK) {
            /* chunked as it arrived */
            if (en->done_windows == en->windows)
                jp->files_done++;
            continue;
        }
        if (jp->parent_cat &&
            (pi = vb_cat_find(jp->parent_cat, en->path, strlen(en->path))) != VB_CAT_NONE &&
            unchanged(en, &jp->parent_cat->e[pi])) {
            const struct vb_cat_entry *pe = &jp->parent_cat->e[pi];
            if (parent_chunks_exist(jp, ws, pe)) {
                if (!en->chunks)
                    en->chunks = g_array_new(FALSE, FALSE, sizeof(struct vb_cat_chunk));
                g_array_append_vals(en->chunks, &jp->parent_cat->c[pe->first_chunk],
                                    pe->n_chunks);
                en->reused = true;
                reused_files++;
                chunks += pe->n_chunks;
                reused_bytes += vb_cat_data_bytes(jp->parent_cat, pi);
                jp->files_done++;
                if ((reused_files & 1023) == 0)
                    ret = plan_cost(j, jp, chunks, e);
                continue;
            }
            missing++;                  /* read again, below */
        }
        if (en->data != VB_FD_EXTENTS || !en->extents || !en->extents->len) {
            jp->files_done++;       /* empty, or all holes */
            continue;
        }
        /* data regions: written extents, clipped to the size, merged when contiguous */
        {
            uint64_t rs = 0, re = 0;
            bool have = false;
            guint nwin0 = j->windows->len, cursor = 0;
            for (guint k = 0; k <= en->extents->len && !ret; k++) {
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
                        ret = plan_window(j, b, en, w, scratch, &cursor, e);
                        planned += w->len;
                        if (!ret && (j->windows->len & 1023) == 0)
                            ret = plan_cost(j, jp, chunks, e);
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
                jp->files_done++;   /* nothing written: all holes */
        }
    }
    if (!ret)
        ret = plan_cost(j, jp, chunks, e);
    /* progress counts bytes to read plus bytes already in hand (reused, fallback) */
    {
        uint64_t fb = 0;
        for (guint i = 0; i < j->entries->len; i++) {
            struct vbd_entry *en = &g_array_index(j->entries, struct vbd_entry, i);
            if (en->data == VB_FD_FALLBACK)
                fb += en->fb_received;
        }
        jp->bytes_total = planned + reused_bytes + fb;
        jp->bytes_done = reused_bytes + fb;
    }
    jp->bytes_reused = reused_bytes;
    if (reused_files)
        note(jp, "incremental: %llu unchanged files (%llu bytes) reuse the chunks of %s",
             (unsigned long long)reused_files, (unsigned long long)reused_bytes, jp->parent);
    if (missing)
        note(jp, "incremental: %llu unchanged files are read again: chunks of %s are missing "
             "from the repository", (unsigned long long)missing, jp->parent);
    note(jp, "%u windows, %u pieces, %llu bytes of file data to read",
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
            !strncmp(t, "not deferred", 12) || !strncmp(t, "frozen priority:", 16))
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
    vbd_mem_give_all(j, VBD_MEM_PLAN);
    vbd_mem_give_all(j, VBD_MEM_CATALOG);
}

/* ---- the cut ------------------------------------------------------------------- */

struct cut {
    struct vbd_task task;    /* first */
    struct vbd *d;
    struct vbp_batch *b;
    GPtrArray *chain;        /* a reference: a reload may replace d->chain meanwhile */
    struct jobplan *jp;
    guint n;
    json_object *report;     /* the batch's notes */
    char *headline;          /* logged when the cut comes back */
    char *psi_dir;           /* a copy: a reload may replace the configuration */
};

static void batch_note(json_object *report, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void batch_note(json_object *report, const char *fmt, ...)
{
    va_list ap;
    char buf[512];

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    json_object_array_add(report, json_object_new_string(buf));
}

/* On a worker: claims, plans, the policy chain. */
static void cut_work(struct vb_work *work, struct vb_codec *codec)
{
    struct cut *c = (struct cut *)work;
    struct vbp_batch *b = c->b;
    vb_error e = { 0 };
    unsigned planned = 0;
    GHashTable *shared;

    if (vbd_psi_read(c->psi_dir, &b->load, &e)) {
        batch_note(c->report, "batch %llu: host load unknown: %s", (unsigned long long)b->id,
                   vb_strerror(&e));
        b->load.now_ns = vb_wall_ns();
    }
    b->max_read_bytes = 4u << 20;
    /* format 2: the files jobs of this batch with one target and dedup
     * group write through one session (targets.c) */
    shared = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                   (GDestroyNotify)vb2_write_unref);
    for (guint i = 0; i < c->n; i++) {
        struct jobplan *jp = &c->jp[i];
        struct vbd_job *j = jp->job;
        struct vb_sink *ws = j->ws;
        struct vbp_job *pj;

        if (!ws) {
            jp->claim_err = j->kind == VB_KIND_FILES
                ? vbd_target_begin_shared(j->target, j->vm, shared, &jp->ws, &jp->claim_e)
                : vbd_claim_work(j->target, j->vm, &jp->ws, &jp->claim_e);
            if (jp->claim_err)
                continue;                           /* not in this batch */
            ws = jp->ws;
        }
        pj = vbd_batch_add_job(b, j->id, j->vm->name, j->kind == VB_KIND_DISK ? VBP_KIND_DISK
                                                                             : VBP_KIND_FILES,
                               j->mode);
        jp->pj_id = j->id;
        pj->sealed_ns = j->sealed_ns;
        pj->first_deferred_ns = j->first_deferred_ns;
        if (j->kind == VB_KIND_FILES) {
            if (!j->pieces)
                j->pieces = g_array_new(FALSE, FALSE, sizeof(struct vbd_piece));
            if (!j->windows)
                j->windows = g_ptr_array_new_with_free_func(window_free);
            if ((jp->err = plan_files_job(j, jp, ws, b, &jp->e)))
                continue;                           /* dropped from the batch below */
        }
        planned++;
    }
    g_hash_table_destroy(shared);             /* the jobs' sinks hold the sessions */
    /* the jobs' entries in the batch, now that no job is added any more */
    for (guint i = 0; i < c->n; i++) {
        struct jobplan *jp = &c->jp[i];
        if (!jp->pj_id)
            continue;
        for (uint32_t k = 0; k < b->n_jobs; k++)
            if (b->jobs[k].id == jp->pj_id)
                jp->pj = &b->jobs[k];
        if (jp->err) {
            jp->pj->bytes = 0;
            jp->pj->defer_until_ns = INT64_MAX;     /* drop its reads */
            snprintf(jp->pj->defer_reason, sizeof(jp->pj->defer_reason), "failed");
        } else if (jp->job->kind == VB_KIND_FILES) {
            jp->pj->bytes = jp->bytes_total - jp->bytes_done;
        } else {
            jp->pj->bytes = ((struct vbd_disk *)jp->job->disks->pdata[0])->img->size;
        }
    }
    c->headline = g_strdup_printf("batch %llu: %u jobs, %u reads planned, load io %.1f%% "
                                  "cpu %.1f%%", (unsigned long long)b->id, planned, b->n_reads,
                                  b->load.io_some_avg10, b->load.cpu_some_avg10);
    batch_note(c->report, "%s", c->headline);
    for (guint i = 0; i < c->chain->len; i++) {
        struct vbd_policy *p = c->chain->pdata[i];
        vb_error pe = { 0 };
        if (vbd_policy_run(p, b, &pe))
            batch_note(c->report, "policy %s failed, skipped: %s", vbd_policy_name(p),
                       vb_strerror(&pe));
    }
}

static void jobplan_clear(struct jobplan *jp)
{
    if (jp->ws) {
        vb_sink_abort(jp->ws);
        vb_sink_unref(jp->ws);
    }
    json_object_put(jp->notes);
    vb_cat_free(jp->parent_cat);
    g_free(jp->parent);
    g_free(jp->mode_note);
    memset(jp, 0, sizeof(*jp));
}

/*
 * Frozen priority.  A job whose guest stays frozen while the host reads the
 * live image is cut within frozen_wait and runs even when a policy would
 * defer it — once: that VM's later frozen jobs are scheduled like everyone
 * else's until a policy lets one of its jobs run on its own (the host is
 * quiet again, or max_delay passed).  A guest that only says it is frozen
 * thus skips the schedule policy at most once per busy period.
 */
static void frozen_priority(struct cut *c, int64_t now_ns)
{
    for (guint i = 0; i < c->n; i++) {
        struct jobplan *jp = &c->jp[i];
        if (jp->job && jp->pj && jp->pj->defer_until_ns <= now_ns)
            jp->job->vm->frozen_spent = 0;          /* it ran on its own */
    }
    for (guint i = 0; i < c->n; i++) {
        struct jobplan *jp = &c->jp[i];
        struct vbd_job *j = jp->job;
        struct vbd_vm *vm;

        if (!j || !jp->pj || !vbd_job_hurried(j) || jp->pj->defer_until_ns <= now_ns ||
            jp->pj->defer_until_ns == INT64_MAX)
            continue;
        vm = j->vm;
        if (!vm->frozen_spent) {
            note(jp, "frozen priority: not deferred (%s): the guest stays frozen until its "
                 "data is read; VM %s has this once, until a policy lets one of its jobs run",
                 jp->pj->defer_reason, vm->name);
            jp->pj->defer_until_ns = 0;
            vm->frozen_spent = j->id;
        } else {
            note(jp, "frozen priority: deferred although the guest says it is frozen: VM %s "
                 "used it for job %llu, and has it again once a policy lets one of its jobs "
                 "run", vm->name, (unsigned long long)vm->frozen_spent);
        }
    }
}

/* Back on the main loop: apply the plans, start what runs. */
static void cut_done(struct vbd_task *task)
{
    struct cut *c = (struct cut *)task;
    struct vbd *d = c->d;
    struct vbp_batch *b = c->b;
    struct vbd_plan *plan;
    int64_t now_ns = b->load.now_ns;

    d->cutting = false;
    vbd_log("%s", c->headline);
    for (guint i = 0; i < c->n; i++) {
        struct jobplan *jp = &c->jp[i];
        struct vbd_job *j = jp->job;

        j->planning = false;
        if (j->state != VB_JOB_QUEUED && j->state != VB_JOB_DEFERRED) {
            /* cancelled or failed while it was planned */
            if (jp->pj)
                jp->pj->defer_until_ns = INT64_MAX;
            unplan_job(j);
            vbd_job_release(j);
            vbd_job_unref(j);
            jobplan_clear(jp);
            continue;
        }
        if (jp->claim_err && jp->claim_err != -EBUSY) {
            /* a broken or read-only target: its jobs fail, the others go on */
            char what[160];
            if (vbd_target_cannot_write(j->target, jp->claim_err, what, sizeof(what))) {
                vbd_job_fail_host(j, VB_JOB_FAILED, what, vb_strerror(&jp->claim_e));
                vbd_job_unref(j);               /* the queue's reference */
                jobplan_clear(jp);
                jp->job = NULL;
                continue;
            }
        }
        if (jp->claim_err) {
            /* gc holds the repository: offer it again after a while */
            if (jp->claim_err == -EBUSY) {
                snprintf(j->reason, sizeof(j->reason), "%s", vb_strerror(&jp->claim_e));
            } else {
                /* the cause to the log (once), a reference to it for the guest */
                char why[sizeof(j->reason)];
                snprintf(why, sizeof(why), "target '%s' could not be locked on the host, the "
                         "job waits; the host's log has details (job %llu)", j->target->name,
                         (unsigned long long)j->id);
                if (strcmp(why, j->reason))
                    vbd_log("job %llu: %s", (unsigned long long)j->id, vb_strerror(&jp->claim_e));
                memcpy(j->reason, why, sizeof(why));
            }
            j->state = VB_JOB_DEFERRED;
            if (!j->first_deferred_ns)
                j->first_deferred_ns = now_ns;
            j->defer_until_ns = now_ns + (int64_t)(d->cfg->batch_seconds * 1e9);
            g_queue_push_tail(&d->pending, j);      /* the queue's reference */
            jobplan_clear(jp);
            continue;
        }
        if (jp->ws) {
            j->ws = jp->ws;
            jp->ws = NULL;
            vbd_quota_attach(j);        /* what it stores counts against the VM's quotas */
            vbd_journal_running(j);     /* names the session: a restart finds its snapshot */
        }
        j->batch = b->id;
        for (size_t k = 0; jp->notes && k < json_object_array_length(jp->notes); k++)
            json_object_array_add(j->plan_notes,
                                  json_object_get(json_object_array_get_idx(jp->notes, k)));
        json_object_put(jp->notes);
        jp->notes = json_object_new_array();
        if (j->kind == VB_KIND_FILES) {
            j->parent_cat = jp->parent_cat;
            j->parent = jp->parent;
            j->mode_note = jp->mode_note;
            j->parent_current = jp->parent_current;
            jp->parent_cat = NULL;
            jp->parent = jp->mode_note = NULL;
            j->bytes_total = jp->bytes_total;
            j->bytes_done = jp->bytes_done;
            j->files_done = jp->files_done;
            j->bytes_reused += jp->bytes_reused;
        }
        if (jp->err == -E2BIG || (!jp->err && (vbd_mem_take(j, VBD_MEM_PLAN, jp->mem) ||
                                                vbd_mem_take(j, VBD_MEM_CATALOG, jp->cat_mem)))) {
            char what[160];
            snprintf(what, sizeof(what), "the read plan of job %llu (%u windows, %u pieces "
                     "and more)", (unsigned long long)j->id, j->windows ? j->windows->len : 0,
                     j->pieces ? j->pieces->len : 0);
            if (jp->pj)
                jp->pj->defer_until_ns = INT64_MAX;
            vbd_mem_fail(j, what);
            vbd_job_unref(j);
            jp->job = NULL;
            continue;
        }
        if (jp->err) {
            if (jp->pj)
                jp->pj->defer_until_ns = INT64_MAX;
            vbd_job_fail_host(j, VB_JOB_FAILED, "the reads from the disks could not be "
                              "planned on the host", vb_strerror(&jp->e));
            vbd_job_unref(j);
            jp->job = NULL;
            continue;
        }
    }
    frozen_priority(c, now_ns);
    vbd_batch_strip_deferred(b);
    /* notes into the jobs' plans */
    {
        GPtrArray *notes = vbd_batch_notes(b);
        GHashTable *byid = g_hash_table_new(g_int64_hash, g_int64_equal);
        for (guint i = 0; i < c->n; i++)
            if (c->jp[i].job && c->jp[i].pj)
                g_hash_table_insert(byid, &c->jp[i].job->id, c->jp[i].job);
        for (guint n = 0; n < notes->len; n++) {
            struct vbd_note *nt = notes->pdata[n];
            char *line = g_strdup_printf("%s: %s", nt->policy, nt->text);
            if (nt->job == 0) {
                GHashTableIter it;
                gpointer k, v;
                json_object_array_add(c->report, json_object_new_string(line));
                g_hash_table_iter_init(&it, byid);
                while (g_hash_table_iter_next(&it, &k, &v))
                    json_object_array_add(((struct vbd_job *)v)->plan_notes,
                                          json_object_new_string(line));
            } else {
                struct vbd_job *j = g_hash_table_lookup(byid, &nt->job);
                if (j)
                    json_object_array_add(j->plan_notes, json_object_new_string(line));
            }
            g_free(line);
        }
        /* the frozen priority's notes, after the policies' */
        for (guint i = 0; i < c->n; i++)
            for (size_t k = 0; c->jp[i].job && c->jp[i].notes &&
                               k < json_object_array_length(c->jp[i].notes); k++)
                json_object_array_add(c->jp[i].job->plan_notes, json_object_get(
                    json_object_array_get_idx(c->jp[i].notes, k)));
        g_hash_table_destroy(byid);
    }
    plan = g_new0(struct vbd_plan, 1);
    plan->id = b->id;
    plan->batch = b;
    plan->jobs = g_ptr_array_new();
    for (guint i = 0; i < c->n; i++) {
        struct jobplan *jp = &c->jp[i];
        struct vbd_job *j = jp->job;

        if (!j || !jp->pj) {
            jobplan_clear(jp);
            continue;
        }
        if (jp->pj->defer_until_ns > now_ns) {
            /* deferred: back to the queue, unplanned */
            if (!j->first_deferred_ns)
                j->first_deferred_ns = now_ns;
            j->state = VB_JOB_DEFERRED;
            j->defer_until_ns = jp->pj->defer_until_ns;
            snprintf(j->reason, sizeof(j->reason), "%s", jp->pj->defer_reason);
            unplan_job(j);
            vbd_job_unclaim_idle(j);
            g_queue_push_tail(&d->pending, j);
        } else {
            j->state = VB_JOB_RUNNING;
            j->reason[0] = 0;
            j->started_ns = vb_wall_ns();
            vbd_journal_running(j);
            g_ptr_array_add(plan->jobs, j);     /* the queue's reference moves to the plan */
        }
        jobplan_clear(jp);
    }
    plan->rate_limit_bps = b->rate_limit_bps;
    json_object_array_add(d->batches, json_object_get(c->report));
    while (json_object_array_length(d->batches) > 20)
        json_object_array_del_idx(d->batches, 0, 1);
    if (plan->jobs->len) {
        vbd_exec_start(d, plan);
    } else {
        g_ptr_array_free(plan->jobs, TRUE);
        vbd_batch_free(b);
        g_free(plan);
    }
    json_object_put(c->report);
    g_ptr_array_unref(c->chain);
    g_free(c->jp);
    g_free(c->headline);
    g_free(c->psi_dir);
    g_free(c);
    vbd_batch_schedule(d);
}

/* On the main loop: take the pending jobs and hand them to a worker. */
static void cut(struct vbd *d)
{
    GQueue keep = G_QUEUE_INIT;
    struct cut *c;

    if (d->cutting || g_queue_is_empty(&d->pending))
        return;
    c = g_new0(struct cut, 1);
    c->d = d;
    c->jp = g_new0(struct jobplan, g_queue_get_length(&d->pending));
    while (!g_queue_is_empty(&d->pending)) {
        struct vbd_job *j = g_queue_pop_head(&d->pending);
        struct jobplan *jp;

        if (j->state != VB_JOB_QUEUED && j->state != VB_JOB_DEFERRED) {
            vbd_job_unref(j);           /* cancelled meanwhile */
            continue;
        }
        if (j->claiming) {              /* its fallback data's claim is still out */
            g_queue_push_tail(&keep, j);
            continue;
        }
        jp = &c->jp[c->n++];
        jp->job = j;
        jp->room = vbd_mem_room(j->vm);
        jp->notes = json_object_new_array();
        j->planning = true;             /* its entries and windows are the worker's */
    }
    d->pending = keep;
    if (!c->n) {
        g_free(c->jp);
        g_free(c);
        return;
    }
    c->b = vbd_batch_new(++d->next_batch);
    c->chain = g_ptr_array_ref(d->chain);
    c->psi_dir = g_strdup(d->cfg->psi_dir);
    c->report = json_object_new_array();
    c->task.work.fn = cut_work;
    c->task.done = cut_done;
    d->cutting = true;
    vbd_work_push(d, &c->task);
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
