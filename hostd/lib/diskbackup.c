/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Whole-disk backup: the image is cut into 4 MiB chunks; the main thread
 * maps each chunk and keeps io_uring full of reads, CPU workers hash,
 * deduplicate, compress and store, and the main thread collects the ids.
 * Chunks that are holes or all zeros are not stored (zero id in the index).
 */
#include "diskbackup.h"

#include <libgen.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "disksink.h"
#include "image.h"
#include "progress.h"
#include "reader.h"
#include "snapshot.h"
#include "uring.h"
#include "vbackup/proto.h"
#include "workers.h"

enum outcome { OUT_HOLE = 1, OUT_NEW, OUT_DEDUP };

/* What a chunk slot is doing: reading and storing the chunk (READ), or,
 * for a chunk the tracking says changed, loading its basis chunk into the
 * buffer first (LOAD), then reading over it what the tracking overlay
 * holds (top_only) and storing the result. */
enum phase { PH_READ = 1, PH_LOAD };

struct dbk;

struct dchunk {
    struct vb_work work;     /* first: the worker queue carries this */
    struct dbk *bk;
    struct vb_rd rd;
    uint64_t index;
    enum phase phase;
    bool patch;              /* the basis chunk is in the buffer: read only the changes */
    int err;
    vb_error e;
    uint8_t id[VB_ID_LEN];
    enum outcome outcome;
    uint32_t stored;
};

struct dbk {
    struct vb_disk_sink *sk;
    uint32_t cs;             /* chunk size */
    struct vb_image *img;
    struct vb_ring ring;
    struct vb_workers wk;
    GArray *scratch;
    struct dchunk *slots;
    unsigned n_slots;
    GQueue free_slots;
    struct vb_io poll_io;
    struct vb_disk_stats *st;
    uint8_t *ids;
    uint64_t processed;      /* bytes processed, for progress */
    /* changed-block tracking */
    struct vb_disk_prior *basis; /* with its chunk ids */
    struct vb_cbt_plan plan;
    uint8_t *todo;           /* per chunk: what to do (enum todo) */
};

enum todo { TD_READ = 0, TD_REUSE, TD_PATCH };

/* worker thread */
static void chunk_work(struct vb_work *w, struct vb_codec *c)
{
    struct dchunk *ch = (struct dchunk *)w;
    int ret;

    if (ch->phase == PH_LOAD) {
        /* the basis chunk: what the chunk held at the basis snapshot */
        const uint8_t *bid = ch->bk->basis->ids + ch->index * VB_ID_LEN;
        size_t plain = 0;
        if (vb_id_is_zero(bid)) {
            memset(ch->rd.buf, 0, ch->rd.len);
            ch->err = 0;
            return;
        }
        ch->err = ch->bk->sk->ops->get(ch->bk->sk->h, c, ch->bk->basis, bid, ch->rd.buf,
                                       ch->rd.len, &plain, &ch->e);
        if (!ch->err && plain != ch->rd.len)
            ch->err = vb_seterr(&ch->e, -EBADMSG, "basis chunk of %zu bytes, not %u", plain,
                                ch->rd.len);
        return;
    }
    ch->err = vb_rd_finish(&ch->rd, &ch->e);
    if (ch->err)
        return;
    if (vb_is_zero(ch->rd.buf, ch->rd.len)) {
        ch->outcome = OUT_HOLE;
        return;
    }
    /* known to the session (stored, found, or inherited from a parent of
     * this gc generation): no lookup; else looked up, and stored if absent */
    ret = ch->bk->sk->ops->put(ch->bk->sk->h, c, ch->rd.buf, ch->rd.len, ch->id, &ch->stored,
                               &ch->e);
    if (ret < 0)
        ch->err = ret;
    ch->outcome = ret == 1 ? OUT_NEW : OUT_DEDUP;
}

/* ring thread: all reads of a chunk are in */
static void chunk_read_done(struct vb_rd *rd)
{
    struct dchunk *ch = rd->opaque;

    vb_workers_push(&ch->bk->wk, &ch->work);
}

static void poll_done(struct vb_io *io, int res)
{
    struct dbk *bk = io->opaque;

    /* re-arm: the main loop drains the done queue after every ring run */
    vb_ring_queue(&bk->ring, &bk->poll_io);
}

static int scan_allocated(struct vb_image *img, uint64_t *allocated, vb_error *e)
{
    GArray *m = g_array_new(FALSE, FALSE, sizeof(struct vb_extent_map));
    const uint64_t step = 1ull << 30;
    int ret = 0;

    *allocated = 0;
    for (uint64_t off = 0; off < img->size && !ret; off += step) {
        g_array_set_size(m, 0);
        ret = vb_image_map(img, off, step, m, e);
        for (guint i = 0; !ret && i < m->len; i++) {
            struct vb_extent_map *x = &g_array_index(m, struct vb_extent_map, i);
            if (x->kind == VB_X_DATA || x->kind == VB_X_COMPRESSED)
                *allocated += x->len;
        }
    }
    g_array_free(m, TRUE);
    return ret;
}

static json_object *chain_json(struct vb_image *img)
{
    json_object *a = json_object_new_array();

    for (int i = 0; i < img->n; i++) {
        json_object *l = json_object_new_object();
        char *abs = realpath(img->layer[i].path, NULL);
        json_object_object_add(l, "path", json_object_new_string(abs ? abs : img->layer[i].path));
        json_object_object_add(l, "format", json_object_new_string(vb_fmt_name(img->layer[i].fmt)));
        json_object_array_add(a, l);
        free(abs);
    }
    return a;
}

static const char *mode_name(int mode)
{
    return mode == VB_MODE_INCREMENTAL ? "incremental" :
           mode == VB_MODE_DIFFERENTIAL ? "differential" : "full";
}

/* The disk's backups in this repository: the newest, and the newest full one. */
static int find_backups(struct vb_disk_sink *sk, const char *vm, const char *group,
                        char **newest, char **newest_full, vb_error *e)
{
    GPtrArray *list;
    int ret;

    *newest = *newest_full = NULL;
    if ((ret = sk->ops->list(sk->h, vm, &list, e)))
        return ret;
    for (guint i = list->len; i-- > 0;) {
        struct vb_disk_prior *s = list->pdata[i];
        /* one of another dedup group names its chunks in another id space */
        if (strcmp(s->group, group) || !s->same_space)
            continue;
        if (!*newest)
            *newest = strdup(s->id);
        if (s->full) {
            *newest_full = strdup(s->id);
            break;
        }
    }
    g_ptr_array_free(list, TRUE);
    return 0;
}

/* The parent the snapshot names, by mode, and the mode it then has. */
static int choose_parent(struct vb_disk_sink *sk, const struct vb_disk_backup_opts *o,
                         const char *group, char **parent, char **newest, int *mode, vb_error *e)
{
    char *full = NULL;
    int ret = find_backups(sk, o->vm, group, newest, &full, e);

    *parent = NULL;
    *mode = o->mode == VB_MODE_INCREMENTAL || o->mode == VB_MODE_DIFFERENTIAL ? o->mode
                                                                            : VB_MODE_FULL;
    if (ret)
        return ret;
    if (o->parent) {
        struct vb_disk_prior *ps;
        ret = sk->ops->load(sk->h, o->parent, &ps, e);
        if (ret == -EMEDIUMTYPE)
            ret = vb_seterr(e, -EINVAL, "snapshot %s is not a backup of disk '%s' of VM %s",
                            o->parent, group + 5, o->vm);
        if (ret) {
            free(full);
            return ret;
        }
        if (strcmp(ps->vm, o->vm) || strcmp(ps->group, group))
            ret = vb_seterr(e, -EINVAL, "snapshot %s is not a backup of disk '%s' of VM %s",
                            o->parent, group + 5, o->vm);
        else if (!ps->same_space)
            ret = vb_seterr(e, -EINVAL, "snapshot %s was made in dedup group '%s', this backup "
                            "is in '%s': it cannot be its parent", o->parent, ps->space_name,
                            sk->space_name);
        else
            *parent = strdup(o->parent);
        vb_disk_prior_free(ps);
        if (!ret && *mode == VB_MODE_FULL)
            *mode = VB_MODE_INCREMENTAL;
    } else if (*mode == VB_MODE_DIFFERENTIAL) {
        *parent = full ? strdup(full) : NULL;
    } else {
        /* incremental; a full backup names the newest as its parent too */
        *parent = *newest ? strdup(*newest) : NULL;
    }
    free(full);
    if (!ret && !*parent)
        *mode = VB_MODE_FULL;
    return ret;
}

/* Whether the disk's tracking proves the change set; then bk->basis and
 * bk->plan hold it.  Otherwise st->why says why not. */
static int prove_changes(struct dbk *bk, const struct vb_disk_backup_opts *o, const char *newest,
                         vb_error *e)
{
    struct vb_disk_stats *st = bk->st;
    struct vb_image *img = bk->img;
    struct vb_file_id ids[VB_MAX_CHAIN];
    char *files[VB_MAX_CHAIN] = { 0 };
    struct vb_cbt_chain c = { .n = (unsigned)img->n, .files = (const char *const *)files,
                              .ids = ids, .size = img->size,
                              .top_is_qcow2 = img->layer[0].fmt == VB_FMT_QCOW2 };
    struct vb_cbt_repo_facts f = { 0 };
    struct vb_disk_prior *ns = NULL;
    GArray *ranges = NULL;
    bool ok = false;
    vb_error e1 = { 0 };
    int ret = 0;

    if (!o->cbt || o->cbt_why) {
        snprintf(st->why, sizeof(st->why), "%s", o->cbt_why ? o->cbt_why :
                 "the disk has no tracking record (changed-block tracking is off or has not "
                 "started)");
        return 0;
    }
    for (int i = 0; i < img->n; i++) {
        files[i] = realpath(img->layer[i].path, NULL);
        if (!files[i] || vb_file_id_get(files[i], &ids[i], &e1)) {
            snprintf(st->why, sizeof(st->why), "a file of the disk's chain cannot be examined");
            goto out;
        }
    }
    if (!vb_cbt_chain_proves(o->cbt, &c, st->why, sizeof(st->why)))
        goto out;
    f.repo = bk->sk->location;
    f.newest = newest;
    if (newest && bk->sk->ops->load(bk->sk->h, newest, &ns, &e1) == 0) {
        f.newest_size = ns->size;
        f.newest_chunk_size = ns->chunk_size;
    } else if (newest) {
        snprintf(st->why, sizeof(st->why), "the newest backup of this disk (%s) cannot be read",
                 newest);
        goto out;
    }
    if (!vb_cbt_basis_proves(o->cbt, &f, st->why, sizeof(st->why)))
        goto out;
    if (!ns->same_space) {      /* find_backups left those out: never */
        snprintf(st->why, sizeof(st->why), "snapshot %s is of another dedup group", ns->id);
        goto out;
    }
    if (ns->chunk_size != bk->cs || ns->size != img->size) {
        snprintf(st->why, sizeof(st->why), "snapshot %s has other chunks than this backup makes",
                 ns->id);
        goto out;
    }
    ranges = g_array_new(FALSE, FALSE, sizeof(struct vb_cbt_range));
    if ((ret = vb_cbt_changes(img, ranges, e)))
        goto out;
    if ((ret = vb_cbt_plan_build(ranges, img->size, bk->cs, &bk->plan))) {
        ret = vb_seterr(e, ret, "the change set of %s is invalid", img->layer[0].path);
        goto out;
    }
    bk->basis = ns;
    ns = NULL;
    st->tracked = ok = true;
    st->why[0] = 0;
    snprintf(st->basis, sizeof(st->basis), "%s", bk->basis->id);
    st->changed_bytes = bk->plan.bytes;
    st->changed_runs = bk->plan.runs;
out:
    if (!ok && !ret)
        vb_cbt_plan_clear(&bk->plan);
    for (int i = 0; i < img->n; i++)
        free(files[i]);
    if (ranges)
        g_array_free(ranges, TRUE);
    vb_disk_prior_free(ns);
    return ret;
}

/* What to do with each chunk of a tracked backup: take the basis chunk
 * (unchanged: known to exist, or found), patch it (changed), or read it. */
static int plan_chunks(struct dbk *bk, uint64_t n_chunks, vb_error *e)
{
    struct vb_disk_stats *st = bk->st;
    bool known = bk->basis->known;

    bk->todo = calloc(VB_MAX(n_chunks, 1u), 1);
    if (!bk->todo)
        return vb_seterr(e, -ENOMEM, "out of memory");
    for (uint64_t i = 0; i < n_chunks; i++) {
        const uint8_t *bid = bk->basis->ids + i * VB_ID_LEN;
        if (bk->plan.count[i]) {
            bk->todo[i] = TD_PATCH;
            st->chunks_changed++;
        } else if (vb_id_is_zero(bid)) {
            bk->todo[i] = TD_REUSE;
            st->chunks_reused++;
        } else if (known || bk->sk->ops->has(bk->sk->h, bid)) {
            /* after a gc each is looked up once; one that is gone is read again */
            bk->todo[i] = TD_REUSE;
            st->chunks_reused++;
            memcpy(bk->ids + i * VB_ID_LEN, bid, VB_ID_LEN);
        } else {
            bk->todo[i] = TD_READ;
            st->chunks_reread++;
        }
    }
    return 0;
}

/* Queue the reads of a slot (its phase READ); 1: nothing to read, the slot
 * goes to the workers as it is (patch: the basis chunk and the overlay's
 * zeros; else: a hole, slot given back). */
static int start_read(struct dbk *bk, struct dchunk *ch, vb_error *e)
{
    int r2;

    ch->phase = PH_READ;
    ch->rd.top_only = ch->patch;
    r2 = vb_rd_start(&bk->ring, &ch->rd, bk->scratch, e);
    if (r2 == 1 && ch->patch) {
        vb_workers_push(&bk->wk, &ch->work);
        return 0;
    }
    return r2;
}

int vb_disk_backup(struct vb_disk_sink *sk, const struct vb_disk_backup_opts *o,
                   struct vb_disk_stats *st, char **snap_id, vb_error *e)
{
    struct vb_image_opts io = { .format = o->format, .backing_format = o->backing_format,
                                .no_direct = o->no_direct };
    struct dbk bk;
    struct vb_progress prog;
    uint64_t n_chunks, next = 0, total;
    unsigned active = 0;
    double t0 = vb_now();
    char group[300], *name_copy, *parent = NULL, *newest = NULL;
    int ret;

    memset(&bk, 0, sizeof(bk));
    memset(st, 0, sizeof(*st));
    bk.sk = sk;
    bk.cs = sk->chunk_size;
    bk.st = st;
    ret = vb_image_open(o->image, &io, &bk.img, e);
    if (ret)
        goto out_img;
    st->size = bk.img->size;

    name_copy = strdup(o->image);
    snprintf(group, sizeof(group), "disk:%s", o->name ? o->name : basename(name_copy));
    free(name_copy);

    ret = choose_parent(sk, o, group, &parent, &newest, &st->mode, e);
    if (ret)
        goto out_img;
    if (st->mode == VB_MODE_FULL)
        snprintf(st->why, sizeof(st->why), "%s", parent || !o->mode || o->mode == VB_MODE_FULL ?
                 "a full backup reads everything" : "no earlier backup of this disk");
    else if ((ret = prove_changes(&bk, o, newest, e)))
        goto out_img;
    /* what everything is (a tracked backup does not look at what it does
     * not read: mapping a large chain costs) */
    if (!st->tracked && (ret = scan_allocated(bk.img, &st->allocated, e)))
        goto out_img;
    if (parent && sk->ops->inherit) {
        /* an unchanged chunk costs a hash and a set lookup, not a lookup in
         * the store, while the parent's chunks are known to exist: no gc
         * since it was committed (session.h); after a gc they are looked up */
        struct vb_disk_prior *ps;
        if (sk->ops->load(sk->h, parent, &ps, NULL) == 0) {
            sk->ops->inherit(sk->h, ps);
            vb_disk_prior_free(ps);
        }
    }
    if (bk.basis && sk->ops->inherit)
        sk->ops->inherit(sk->h, bk.basis);
    n_chunks = (bk.img->size + bk.cs - 1) / bk.cs;
    st->chunks = n_chunks;
    bk.ids = calloc(VB_MAX(n_chunks, 1u), VB_ID_LEN);
    if (!bk.ids) {
        ret = vb_seterr(e, -ENOMEM, "out of memory");
        goto out_img;
    }
    if (st->tracked && (ret = plan_chunks(&bk, n_chunks, e)))
        goto out_ids;
    ret = vb_ring_init(&bk.ring, 128);
    if (ret) {
        vb_seterr(e, ret, "io_uring_queue_init: %s", strerror(-ret));
        goto out_ids;
    }
    ret = vb_workers_start(&bk.wk, o->threads, sk->zstd_level);
    if (ret) {
        vb_seterr(e, ret, "start workers: %s", strerror(-ret));
        goto out_ring;
    }
    bk.scratch = g_array_new(FALSE, FALSE, sizeof(struct vb_extent_map));
    bk.n_slots = (unsigned)bk.wk.n * 4 + 4;
    bk.slots = calloc(bk.n_slots, sizeof(*bk.slots));
    g_queue_init(&bk.free_slots);
    for (unsigned i = 0; i < bk.n_slots; i++) {
        struct dchunk *ch = &bk.slots[i];
        ch->work.fn = chunk_work;
        ch->bk = &bk;
        ch->rd.img = bk.img;
        ch->rd.opaque = ch;
        ch->rd.done = chunk_read_done;
        ch->rd.buf = aligned_alloc(4096, bk.cs);
        if (!ch->rd.buf) {
            ret = vb_seterr(e, -ENOMEM, "out of memory");
            goto out_slots;
        }
        g_queue_push_tail(&bk.free_slots, ch);
    }
    bk.poll_io = (struct vb_io){ .op = VB_IO_POLL, .fd = bk.wk.efd, .fd_fallback = -1,
                                 .poll_mask = POLLIN, .cb = poll_done, .opaque = &bk };
    vb_ring_queue(&bk.ring, &bk.poll_io);

    /* progress: what is read (a tracked backup: the change set and the
     * chunks read whole) */
    total = st->tracked ? st->changed_bytes + st->chunks_reread * (uint64_t)bk.cs
                        : st->allocated;
    vb_progress_init(&prog, "backup", total, o->progress);
    while ((next < n_chunks && !ret) || active) {
        if (vb_interrupted && !ret)
            ret = vb_seterr(e, -EINTR, "interrupted");
        if (o->cancel && *o->cancel && !ret)
            ret = vb_seterr(e, -ECANCELED, "cancelled");
        while (!ret && next < n_chunks && !g_queue_is_empty(&bk.free_slots)) {
            struct dchunk *ch;
            int r2;

            if (bk.todo && bk.todo[next] == TD_REUSE) {
                /* unchanged since the basis: its chunk, not read */
                if (vb_id_is_zero(bk.basis->ids + next * VB_ID_LEN)) {
                    st->chunks_hole++;
                    st->bytes_zero += VB_MIN((uint64_t)bk.cs,
                                             bk.img->size - next * bk.cs);
                } else {
                    st->chunks_dedup++;
                    st->bytes_dedup += VB_MIN((uint64_t)bk.cs,
                                              bk.img->size - next * bk.cs);
                }
                next++;
                continue;
            }
            ch = g_queue_pop_head(&bk.free_slots);
            ch->index = next;
            ch->err = 0;
            ch->rd.off = next * bk.cs;
            ch->rd.len = (uint32_t)VB_MIN((uint64_t)bk.cs, bk.img->size - ch->rd.off);
            ch->patch = bk.todo && bk.todo[next] == TD_PATCH;
            next++;
            if (ch->patch) {
                /* the basis chunk first, then the changes over it */
                ch->phase = PH_LOAD;
                vb_workers_push(&bk.wk, &ch->work);
                active++;
                continue;
            }
            r2 = start_read(&bk, ch, e);
            if (r2 < 0) {
                ret = r2;
                vb_rd_clear(&ch->rd);
                g_queue_push_head(&bk.free_slots, ch);
                break;
            }
            if (r2 == 1) {          /* nothing allocated: a hole */
                st->chunks_hole++;
                st->bytes_zero += ch->rd.len;
                g_queue_push_head(&bk.free_slots, ch);
                continue;
            }
            active++;
        }
        /* nothing in flight (interrupted before the first chunk, the rest all
         * holes): waiting would wait for the workers' poll, which no
         * completion will ever wake */
        if (!active)
            break;
        struct vb_work *wd;
        int rr = vb_ring_run(&bk.ring, true);
        if (rr < 0) {
            if (!ret)
                ret = vb_seterr(e, rr, "io_uring: %s", strerror(-rr));
            break;
        }
        while ((wd = vb_workers_pop(&bk.wk))) {
            struct dchunk *ch = (struct dchunk *)wd;
            if (ch->phase == PH_LOAD) {
                int r2;
                if (ch->err) {
                    /* the basis chunk cannot be read: read the chunk whole */
                    ch->patch = false;
                    ch->err = 0;
                    st->chunks_changed--;
                    st->chunks_reread++;
                } else if (!vb_id_is_zero(bk.basis->ids + ch->index * VB_ID_LEN)) {
                    st->bytes_basis += ch->rd.len;
                }
                r2 = ret ? -ECANCELED : start_read(&bk, ch, e);
                if (r2 == 0)
                    continue;       /* reads queued, or back with the workers */
                active--;
                if (r2 == 1) {
                    st->chunks_hole++;
                    st->bytes_zero += ch->rd.len;
                } else if (!ret) {
                    ret = r2;
                }
                vb_rd_clear(&ch->rd);
                g_queue_push_head(&bk.free_slots, ch);
                continue;
            }
            active--;
            bk.processed += ch->rd.data_bytes;
            if (ch->err && !ret) {
                ret = ch->err;
                if (e) {
                    *e = ch->e;
                    vb_prefixerr(e, "chunk %llu (guest offset %#llx)",
                                 (unsigned long long)ch->index,
                                 (unsigned long long)ch->rd.off);
                }
            } else if (!ch->err) {
                switch (ch->outcome) {
                case OUT_HOLE:
                    st->chunks_hole++;
                    st->bytes_zero += ch->rd.len;
                    break;
                case OUT_NEW:
                    st->chunks_new++;
                    st->bytes_new += ch->rd.len;
                    st->stored_new += ch->stored;
                    memcpy(bk.ids + ch->index * VB_ID_LEN, ch->id, VB_ID_LEN);
                    break;
                case OUT_DEDUP:
                    st->chunks_dedup++;
                    st->bytes_dedup += ch->rd.len;
                    memcpy(bk.ids + ch->index * VB_ID_LEN, ch->id, VB_ID_LEN);
                    break;
                }
            }
            vb_rd_clear(&ch->rd);
            g_queue_push_head(&bk.free_slots, ch);
        }
        vb_progress_update(&prog, bk.processed);
        if (o->progress_cb)
            o->progress_cb(o->progress_opaque, bk.processed, total);
    }
    vb_progress_end(&prog);
    st->bytes_read = bk.ring.bytes_read;

    if (!ret) {
        json_object *src, *stats, *cbt;
        char *abs = realpath(o->image, NULL);
        struct vb_disk_commit d = {
            .group = group, .mode = mode_name(st->mode), .parent = parent,
            .size = bk.img->size, .chunk_size = bk.cs, .n_chunks = n_chunks, .ids = bk.ids,
            .data_chunks = st->chunks_new + st->chunks_dedup,
        };

        st->seconds = vb_now() - t0;
        src = json_object_new_object();
        json_object_object_add(src, "path", json_object_new_string(abs ? abs : o->image));
        json_object_object_add(src, "format", json_object_new_string(vb_fmt_name(bk.img->layer[0].fmt)));
        json_object_object_add(src, "chain", chain_json(bk.img));
        /* how the backup knew what to read */
        cbt = json_object_new_object();
        json_object_object_add(cbt, "read", json_object_new_string(
            st->tracked ? "changes" : "everything"));
        if (st->tracked) {
            json_object_object_add(cbt, "basis", json_object_new_string(st->basis));
            json_object_object_add(cbt, "changed_bytes",
                                   json_object_new_int64((int64_t)st->changed_bytes));
            json_object_object_add(cbt, "changed_runs",
                                   json_object_new_int64((int64_t)st->changed_runs));
            json_object_object_add(cbt, "chunks_changed",
                                   json_object_new_int64((int64_t)st->chunks_changed));
            json_object_object_add(cbt, "chunks_reused",
                                   json_object_new_int64((int64_t)st->chunks_reused));
            json_object_object_add(cbt, "chunks_reread",
                                   json_object_new_int64((int64_t)st->chunks_reread));
        } else {
            json_object_object_add(cbt, "reason", json_object_new_string(st->why));
        }
        stats = json_object_new_object();
        if (!st->tracked)
            json_object_object_add(stats, "allocated",
                                   json_object_new_int64((int64_t)st->allocated));
        json_object_object_add(stats, "bytes_read", json_object_new_int64((int64_t)st->bytes_read));
        json_object_object_add(stats, "bytes_new", json_object_new_int64((int64_t)st->bytes_new));
        json_object_object_add(stats, "bytes_dedup", json_object_new_int64((int64_t)st->bytes_dedup));
        json_object_object_add(stats, "bytes_zero", json_object_new_int64((int64_t)st->bytes_zero));
        json_object_object_add(stats, "stored_new", json_object_new_int64((int64_t)st->stored_new));
        json_object_object_add(stats, "seconds", json_object_new_double(st->seconds));
        free(abs);
        d.source = src;
        d.tracking = cbt;
        d.stats = stats;
        if (o->before_commit)
            ret = o->before_commit(o->before_commit_opaque, e);
        if (!ret)
            ret = sk->ops->commit(sk->h, &d, snap_id, e);
        json_object_put(src);
        json_object_put(cbt);
        json_object_put(stats);
    }

out_slots:
    vb_workers_stop(&bk.wk);
    vb_ring_exit(&bk.ring);
    for (unsigned i = 0; i < bk.n_slots; i++) {
        vb_rd_clear(&bk.slots[i].rd);
        free(bk.slots[i].rd.buf);
    }
    free(bk.slots);
    g_queue_clear(&bk.free_slots);
    if (bk.scratch)
        g_array_free(bk.scratch, TRUE);
out_ring:
    vb_ring_exit(&bk.ring);
out_ids:
    free(bk.ids);
out_img:
    sk->ops->abort(sk->h);      /* a no-op after the commit */
    free(parent);
    free(newest);
    free(bk.todo);
    vb_cbt_plan_clear(&bk.plan);
    vb_disk_prior_free(bk.basis);
    vb_image_close(bk.img);
    st->seconds = vb_now() - t0;
    return ret;
}
