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

#include "image.h"
#include "progress.h"
#include "reader.h"
#include "session.h"
#include "snapshot.h"
#include "uring.h"
#include "workers.h"

enum outcome { OUT_HOLE = 1, OUT_NEW, OUT_DEDUP };

struct dbk;

struct dchunk {
    struct vb_work work;     /* first: the worker queue carries this */
    struct dbk *bk;
    struct vb_rd rd;
    uint64_t index;
    int err;
    vb_error e;
    uint8_t id[VB_ID_LEN];
    enum outcome outcome;
    uint32_t stored;
};

struct dbk {
    struct vb_write *ws;
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
    uint64_t processed;      /* allocated bytes processed, for progress */
};

/* worker thread */
static void chunk_work(struct vb_work *w, struct vb_codec *c)
{
    struct dchunk *ch = (struct dchunk *)w;
    int ret;

    ch->err = vb_rd_finish(&ch->rd, &ch->e);
    if (ch->err)
        return;
    if (vb_is_zero(ch->rd.buf, ch->rd.len)) {
        ch->outcome = OUT_HOLE;
        return;
    }
    /* known to the session (stored, found, or inherited from a parent of
     * this gc generation): no lookup; else looked up, and stored if absent */
    ret = vb_write_put(ch->bk->ws, c, ch->rd.buf, ch->rd.len, ch->id, &ch->stored, &ch->e);
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

static char *find_parent(struct vb_repo *r, const char *vm, const char *group)
{
    GPtrArray *list;
    char *id = NULL;

    if (vb_snap_list(r, vm, &list, NULL))
        return NULL;
    for (guint i = list->len; i-- > 0;) {
        struct vb_snapshot *s = list->pdata[i];
        if (s->type == VB_SNAP_DISK && !strcmp(s->group, group)) {
            id = strdup(s->id);
            break;
        }
    }
    g_ptr_array_free(list, TRUE);
    return id;
}

int vb_disk_backup(struct vb_write *ws, const struct vb_disk_backup_opts *o,
                   struct vb_disk_stats *st, char **snap_id, vb_error *e)
{
    struct vb_image_opts io = { .format = o->format, .backing_format = o->backing_format,
                                .no_direct = o->no_direct };
    struct vb_repo *r = vb_write_repo(ws);
    struct dbk bk;
    struct vb_progress prog;
    uint64_t n_chunks, next = 0;
    unsigned active = 0;
    double t0 = vb_now();
    char group[300], *name_copy, *parent = NULL;
    int ret;

    memset(&bk, 0, sizeof(bk));
    memset(st, 0, sizeof(*st));
    bk.ws = ws;
    bk.st = st;
    ret = vb_image_open(o->image, &io, &bk.img, e);
    if (ret)
        goto out_img;
    st->size = bk.img->size;
    ret = scan_allocated(bk.img, &st->allocated, e);
    if (ret)
        goto out_img;

    name_copy = strdup(o->image);
    snprintf(group, sizeof(group), "disk:%s", o->name ? o->name : basename(name_copy));
    free(name_copy);

    parent = find_parent(r, o->vm, group);
    if (parent) {
        /* an unchanged chunk costs a hash and a set lookup, not a lookup in
         * the store, while the parent's chunks are known to exist: no gc
         * since it was committed (session.h); after a gc they are looked up */
        struct vb_snapshot *ps;
        if (vb_snap_load(r, parent, &ps, NULL) == 0) {
            if (vb_write_inherits(ws, ps) && vb_snap_load_fidx(r, ps, NULL) == 0) {
                for (uint64_t i = 0; i < ps->n_chunks; i++)
                    if (!vb_id_is_zero(ps->ids + i * VB_ID_LEN))
                        vb_write_inherit(ws, ps->ids + i * VB_ID_LEN);
            }
            vb_snap_free(ps);
        }
    }
    n_chunks = (bk.img->size + VB_DISK_CHUNK - 1) / VB_DISK_CHUNK;
    st->chunks = n_chunks;
    bk.ids = calloc(VB_MAX(n_chunks, 1u), VB_ID_LEN);
    if (!bk.ids) {
        ret = vb_seterr(e, -ENOMEM, "out of memory");
        goto out_img;
    }
    ret = vb_ring_init(&bk.ring, 128);
    if (ret) {
        vb_seterr(e, ret, "io_uring_queue_init: %s", strerror(-ret));
        goto out_ids;
    }
    ret = vb_workers_start(&bk.wk, o->threads, r->level);
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
        ch->rd.buf = aligned_alloc(4096, VB_DISK_CHUNK);
        if (!ch->rd.buf) {
            ret = vb_seterr(e, -ENOMEM, "out of memory");
            goto out_slots;
        }
        g_queue_push_tail(&bk.free_slots, ch);
    }
    bk.poll_io = (struct vb_io){ .op = VB_IO_POLL, .fd = bk.wk.efd, .fd_fallback = -1,
                                 .poll_mask = POLLIN, .cb = poll_done, .opaque = &bk };
    vb_ring_queue(&bk.ring, &bk.poll_io);

    vb_progress_init(&prog, "backup", st->allocated, o->progress);
    while ((next < n_chunks && !ret) || active) {
        if (vb_interrupted && !ret)
            ret = vb_seterr(e, -EINTR, "interrupted");
        if (o->cancel && *o->cancel && !ret)
            ret = vb_seterr(e, -ECANCELED, "cancelled");
        while (!ret && next < n_chunks && !g_queue_is_empty(&bk.free_slots)) {
            struct dchunk *ch = g_queue_pop_head(&bk.free_slots);
            int r2;

            ch->index = next;
            ch->err = 0;
            ch->rd.off = next * VB_DISK_CHUNK;
            ch->rd.len = (uint32_t)VB_MIN((uint64_t)VB_DISK_CHUNK, bk.img->size - ch->rd.off);
            r2 = vb_rd_start(&bk.ring, &ch->rd, bk.scratch, e);
            if (r2 < 0) {
                ret = r2;
                vb_rd_clear(&ch->rd);
                g_queue_push_head(&bk.free_slots, ch);
                break;
            }
            next++;
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
            o->progress_cb(o->progress_opaque, bk.processed, st->allocated);
    }
    vb_progress_end(&prog);
    st->bytes_read = bk.ring.bytes_read;

    if (!ret) {
        size_t flen;
        uint8_t sum[32];
        char hex[VB_ID_HEX];
        uint8_t *fidx = vb_fidx_build(bk.img->size, VB_DISK_CHUNK, n_chunks, bk.ids, &flen);
        json_object *idx, *src, *disk, *stats;
        char *abs = realpath(o->image, NULL);

        ret = fidx ? vb_write_file(ws, "disk.fidx", fidx, flen, sum, e)
                   : vb_seterr(e, -ENOMEM, "out of memory");
        free(fidx);
        vb_hex(sum, 32, hex);
        st->seconds = vb_now() - t0;

        idx = json_object_new_object();
        json_object_object_add(idx, "type", json_object_new_string("disk"));
        json_object_object_add(idx, "group", json_object_new_string(group));
        json_object_object_add(idx, "mode", json_object_new_string("full"));
        json_object_object_add(idx, "parent", parent ? json_object_new_string(parent) : NULL);
        src = json_object_new_object();
        json_object_object_add(src, "path", json_object_new_string(abs ? abs : o->image));
        json_object_object_add(src, "format", json_object_new_string(vb_fmt_name(bk.img->layer[0].fmt)));
        json_object_object_add(src, "chain", chain_json(bk.img));
        json_object_object_add(idx, "source", src);
        disk = json_object_new_object();
        json_object_object_add(disk, "name", json_object_new_string(group + 5));
        json_object_object_add(disk, "size", json_object_new_int64((int64_t)bk.img->size));
        json_object_object_add(disk, "chunk_size", json_object_new_int(VB_DISK_CHUNK));
        json_object_object_add(disk, "chunks", json_object_new_int64((int64_t)n_chunks));
        json_object_object_add(disk, "data_chunks",
                               json_object_new_int64((int64_t)(st->chunks_new + st->chunks_dedup)));
        json_object_object_add(disk, "index", json_object_new_string("disk.fidx"));
        json_object_object_add(disk, "index_sha256", json_object_new_string(hex));
        json_object_object_add(idx, "disk", disk);
        stats = json_object_new_object();
        json_object_object_add(stats, "allocated", json_object_new_int64((int64_t)st->allocated));
        json_object_object_add(stats, "bytes_read", json_object_new_int64((int64_t)st->bytes_read));
        json_object_object_add(stats, "bytes_new", json_object_new_int64((int64_t)st->bytes_new));
        json_object_object_add(stats, "bytes_dedup", json_object_new_int64((int64_t)st->bytes_dedup));
        json_object_object_add(stats, "bytes_zero", json_object_new_int64((int64_t)st->bytes_zero));
        json_object_object_add(stats, "stored_new", json_object_new_int64((int64_t)st->stored_new));
        json_object_object_add(stats, "seconds", json_object_new_double(st->seconds));
        json_object_object_add(idx, "stats", stats);
        free(abs);
        if (!ret && o->before_commit)
            ret = o->before_commit(o->before_commit_opaque, e);
        if (!ret)
            ret = vb_write_commit(ws, idx, 0, snap_id, e);
        json_object_put(idx);
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
    vb_write_abort(ws);         /* a no-op after the commit */
    free(parent);
    vb_image_close(bk.img);
    st->seconds = vb_now() - t0;
    return ret;
}
