/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * gc of the version 2 engine (repo2.h, docs/repository-v2.md "Concurrency"):
 * mark, repack, condemn (phase 1); delete what condemned lists allow
 * (phase 2); merge small index files.  Under the maintenance lock; writers
 * never wait for it.
 *
 * Marking uses a Bloom filter with a random seed (10 bits per indexed blob:
 * about 1 % false positives, each of which only keeps a garbage blob one
 * more round), so memory is bounded for any number of chunks; the index
 * itself is the mapped lookup table.
 */
#include "repo2-int.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the Bloom filter ---------------------------------------------------------------------- */

struct bloom {
    uint64_t *bits;
    uint64_t mask;                    /* bits - 1 (a power of two) */
    uint64_t seed[2];
};

#define BLOOM_K 7

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int bloom_init(struct bloom *b, size_t bytes, vb_error *e)
{
    uint64_t nbits = 1u << 23;        /* at least 1 MiB */

    while (nbits / 8 < bytes && nbits < (UINT64_C(1) << 40))
        nbits <<= 1;
    b->bits = calloc(nbits / 64, sizeof(uint64_t));
    if (!b->bits)
        return vb_seterr(e, -ENOMEM, "gc: out of memory for a Bloom filter of %llu bytes",
                         (unsigned long long)(nbits / 8));
    b->mask = nbits - 1;
    return vb2_random((uint8_t *)b->seed, sizeof(b->seed), e);
}

static void bloom_free(struct bloom *b)
{
    free(b->bits);
    memset(b, 0, sizeof(*b));
}

static void bloom_hashes(const struct bloom *b, const uint8_t id[VB_HASH_LEN], uint64_t *h1,
                         uint64_t *h2)
{
    uint64_t x, y;

    memcpy(&x, id, 8);
    memcpy(&y, id + 8, 8);
    *h1 = mix64(x ^ b->seed[0]);
    *h2 = mix64(y ^ b->seed[1]) | 1;
}

static void bloom_add(struct bloom *b, const uint8_t id[VB_HASH_LEN])
{
    uint64_t h1, h2;

    bloom_hashes(b, id, &h1, &h2);
    for (int i = 0; i < BLOOM_K; i++) {
        uint64_t bit = (h1 + (uint64_t)i * h2) & b->mask;
        b->bits[bit / 64] |= UINT64_C(1) << (bit % 64);
    }
}

static bool bloom_has(const struct bloom *b, const uint8_t id[VB_HASH_LEN])
{
    uint64_t h1, h2;

    bloom_hashes(b, id, &h1, &h2);
    for (int i = 0; i < BLOOM_K; i++) {
        uint64_t bit = (h1 + (uint64_t)i * h2) & b->mask;
        if (!(b->bits[bit / 64] & (UINT64_C(1) << (bit % 64))))
            return false;
    }
    return true;
}

/* ---- marking ------------------------------------------------------------------------------ */

struct gc {
    struct vb2_repo *r;
    const struct vb2_gc_opts *o;
    struct vb2_gc_report *rep;
    struct vb_maint_lock lock;
    struct bloom marks;
    GHashTable *marked;               /* manifest objects marked (owned strings) */
    struct vb_index_view *view;
    GHashTable *packs;                /* data/ listing: pack id (owned) -> size + 1 */
};

static void mark_stream(struct gc *g, const struct vb_stream_ref *ref)
{
    for (uint32_t i = 0; i < ref->nblobs; i++)
        bloom_add(&g->marks, ref->blobs + (size_t)i * VB_HASH_LEN);
}

/* Mark what one manifest references: its streams' blobs and every chunk id
 * in its chunks stream (read piece by piece). */
static int mark_manifest(struct gc *g, const struct vb_manifest *m, vb_error *e)
{
    static const uint8_t zero[VB_HASH_LEN];
    struct vb2_stream *s;
    uint8_t *buf;
    size_t got;
    int ret = 0;

    mark_stream(g, &m->chunks);
    if (m->type == VB_MF_FILES)
        mark_stream(g, &m->catalog);
    s = vb2_stream_open(g->r, m, &m->chunks, e);
    if (!s)
        return e && e->code ? e->code : -ENOMEM;
    buf = malloc(VB_HASH_LEN * 4096);
    if (!buf) {
        vb2_stream_close(s);
        return vb_seterr(e, -ENOMEM, "out of memory");
    }
    for (;;) {
        ret = vb2_stream_read(s, buf, VB_HASH_LEN * 4096, &got, e);
        if (ret || !got)
            break;
        /* the manifest's check: the length is a multiple of 32 */
        for (size_t i = 0; i + VB_HASH_LEN <= got; i += VB_HASH_LEN)
            if (memcmp(buf + i, zero, VB_HASH_LEN))
                bloom_add(&g->marks, buf + i);
    }
    free(buf);
    vb2_stream_close(s);
    if (ret)
        vb_prefixerr(e, "snapshot %s (snapshots/%s)", m->id, m->object);
    return ret;
}

/* Mark every manifest not marked yet.  Fail-safe: any manifest or stream
 * that cannot be read stops gc from condemning or deleting anything. */
static int mark_all(struct gc *g, vb_error *e)
{
    GPtrArray *list, *problems;
    int ret = vb2_snap_list(g->r, NULL, &list, &problems, e);

    if (ret)
        return ret;
    if (problems->len) {
        ret = vb_seterr(e, -EBADMSG, "gc: %u snapshot%s cannot be read, so nothing is "
                        "deleted (%s)", problems->len, problems->len == 1 ? "" : "s",
                        (char *)problems->pdata[0]);
    }
    for (guint i = 0; !ret && i < list->len; i++) {
        const struct vb_manifest *m = list->pdata[i];
        if (g_hash_table_contains(g->marked, m->object))
            continue;
        ret = mark_manifest(g, m, e);
        if (ret) {
            vb_prefixerr(e, "gc: nothing is deleted");
            break;
        }
        g_hash_table_add(g->marked, g_strdup(m->object));
        g->rep->snapshots++;
    }
    g_ptr_array_free(list, TRUE);
    g_ptr_array_free(problems, TRUE);
    return ret;
}

/* ---- listings --------------------------------------------------------------------------------- */

static int add_pack(void *opaque, const char *name, const struct vb_obj_info *info,
                    vb_error *e)
{
    uint8_t id[VB_OBJ_ID_LEN];
    enum vb_obj_kind k;

    if (!vb_obj_parse(name, &k, id) && k == VB_OBJ_PACK)
        g_hash_table_insert(opaque, g_memdup2(id, VB_OBJ_ID_LEN),
                            (gpointer)(uintptr_t)(info->size + 1));
    return 0;
}

static int list_packs(struct vb2_repo *r, GHashTable **out, vb_error *e)
{
    GHashTable *h = g_hash_table_new_full(vb_id_hash, vb_id_equal, g_free, NULL);
    int ret = vb_store_list(r->s, vb_obj_prefix(VB_OBJ_PACK), add_pack, h, e);

    if (ret) {
        g_hash_table_destroy(h);
        return ret;
    }
    *out = h;
    return 0;
}

static uint64_t pack_size(GHashTable *packs, const uint8_t *id)
{
    uintptr_t v = (uintptr_t)g_hash_table_lookup(packs, id);
    return v ? (uint64_t)v - 1 : 0;
}

static int refresh_view(struct gc *g, vb_error *e)
{
    int ret = vb_index_cache_refresh(g->r->cache, g->r->s, &g->r->keys, NULL, e);

    if (ret)
        return ret;
    vb_index_view_unref(g->view);
    g->view = NULL;
    return vb_index_cache_view(g->r->cache, &g->view, e);
}

static void bit_set(uint8_t *b, uint64_t i)
{
    b[i / 8] |= (uint8_t)(1u << (i % 8));
}

static bool bit_get(const uint8_t *b, uint64_t i)
{
    return b && (b[i / 8] & (1u << (i % 8)));
}

/* ---- rewriting index files without some packs ------------------------------------------------ */

/*
 * Write new index files holding the records of the sources marked in
 * src_sel whose packs are not in drop (a bitmap over pack ordinals, may be
 * NULL), then remove those sources.  Sorted output: the view is in id
 * order.
 */
static int rewrite_sources(struct gc *g, const uint8_t *src_sel, const uint8_t *drop,
                           vb_error *e)
{
    struct vb_index_view *v = g->view;
    const struct vb_pack_id *packs = (const struct vb_pack_id *)vb_index_view_pack(v, 0);
    GArray *batch = g_array_new(FALSE, FALSE, sizeof(struct vb_index_entry));
    unsigned n;
    int ret = 0;

    for (uint64_t i = 0; i < vb_index_view_count(v) && !ret; i++) {
        struct vb_index_entry x;
        struct vb_blob_loc loc;
        uint32_t pack, src;

        ret = vb_index_view_rec(v, i, x.id, &loc, &pack, &src);
        if (ret) {
            ret = vb_seterr(e, ret, "gc: the index cache is damaged");
            break;
        }
        if (!bit_get(src_sel, src) || bit_get(drop, pack))
            continue;
        x.pack = pack;
        x.offset = loc.offset;
        x.stored_len = loc.stored_len;
        x.plain_len = loc.plain_len;
        x.type = loc.type;
        g_array_append_val(batch, x);
        if (batch->len == g->r->index_file_records) {
            ret = vb2_put_index(g->r, (struct vb_index_entry *)batch->data, batch->len, packs,
                                vb_index_view_npacks(v), &n, e);
            g->rep->index_written += n;
            g_array_set_size(batch, 0);
        }
    }
    if (!ret && batch->len) {
        ret = vb2_put_index(g->r, (struct vb_index_entry *)batch->data, batch->len, packs,
                            vb_index_view_npacks(v), &n, e);
        g->rep->index_written += n;
    }
    g_array_free(batch, TRUE);
    if (!ret)
        ret = vb_store_sync(g->r->s, e);
    for (uint32_t s = 0; !ret && s < vb_index_view_nsources(v); s++) {
        char name[VB_OBJ_NAME_MAX];
        if (!bit_get(src_sel, s))
            continue;
        vb_obj_name(VB_OBJ_INDEX, vb_index_view_source(v, s), name);
        ret = vb_store_remove(g->r->s, name, e);
        if (ret == -ENOENT)
            ret = 0;
        if (!ret)
            g->rep->index_removed++;
    }
    if (!ret)
        ret = vb_store_sync(g->r->s, e);
    return ret;
}

/* ---- phase 2: delete -------------------------------------------------------------------------- */

static int phase_delete(struct gc *g, vb_error *e)
{
    struct vb2_repo *r = g->r;
    GPtrArray *lists = NULL, *ready = g_ptr_array_new();
    GArray *leases = NULL;
    GHashTable *doomed = g_hash_table_new(vb_id_hash, vb_id_equal);  /* pack id -> list */
    uint8_t *del = NULL, *saved = NULL, *srcs = NULL;
    int64_t now;
    int ret;

    g->rep->lists_waiting = 0;
    ret = vb_condemned_read_all(r->s, &lists, e);
    if (!ret)
        ret = vb_lease_list(r->s, &leases, e);
    if (!ret)
        ret = vb_lease_store_now(r->s, &now, e);
    if (ret)
        goto out;
    for (guint i = 0; i < lists->len; i++) {
        struct vb_condemned *c = lists->pdata[i];
        if (vb_condemned_may_delete(c, (struct vb_lease_info *)leases->data, leases->len, now,
                                    r->lease_expiry_ns, NULL)) {
            g_ptr_array_add(ready, c);
            for (guint j = 0; j < c->packs->len; j++)
                g_hash_table_insert(doomed, g_array_index(c->packs, struct vb_pack_id, j).b, c);
        } else {
            g->rep->lists_waiting++;
        }
    }
    if (!ready->len)
        goto out;

    /* mark again, from the manifests and the index as they are now: a writer
     * the lists named has ended, and what it committed is visible */
    ret = refresh_view(g, e);
    if (!ret)
        ret = mark_all(g, e);
    if (ret)
        goto out;

    {
        struct vb_index_view *v = g->view;
        uint32_t np = vb_index_view_npacks(v);
        uint64_t count = vb_index_view_count(v);
        GHashTableIter it;
        gpointer key;

        del = calloc(np / 8 + 1, 1);
        saved = calloc(np / 8 + 1, 1);
        srcs = calloc(vb_index_view_nsources(v) / 8 + 1, 1);
        if (!del || !saved || !srcs) {
            ret = vb_seterr(e, -ENOMEM, "gc: out of memory");
            goto out;
        }
        g_hash_table_iter_init(&it, doomed);
        while (g_hash_table_iter_next(&it, &key, NULL)) {
            uint32_t ord;
            if (!vb_index_view_pack_ord(v, key, &ord))
                bit_set(del, ord);
        }
        /* a marked chunk held only by doomed packs saves one of them */
        for (uint64_t i = 0; i < count;) {
            uint8_t id[VB_HASH_LEN], id2[VB_HASH_LEN];
            uint32_t pack, first_doomed = UINT32_MAX;
            bool safe = false;
            uint64_t j = i;

            ret = vb_index_view_rec(v, i, id, NULL, &pack, NULL);
            if (ret) {
                ret = vb_seterr(e, ret, "gc: the index cache is damaged");
                goto out;
            }
            for (; j < count; j++) {
                ret = vb_index_view_rec(v, j, id2, NULL, &pack, NULL);
                if (ret || memcmp(id, id2, VB_HASH_LEN))
                    break;
                if (!bit_get(del, pack) || bit_get(saved, pack))
                    safe = true;
                else if (first_doomed == UINT32_MAX)
                    first_doomed = pack;
            }
            ret = 0;
            if (!safe && first_doomed != UINT32_MAX && bloom_has(&g->marks, id)) {
                bit_set(saved, first_doomed);
                g->rep->packs_saved++;
            }
            i = j;
        }
        for (uint32_t p = 0; p < np; p++)
            if (bit_get(saved, p))
                del[p / 8] &= (uint8_t)~(1u << (p % 8));
        /* index files that name a pack going away are rewritten without it */
        for (uint64_t i = 0; i < count; i++) {
            uint32_t pack, src;
            if (!vb_index_view_rec(v, i, NULL, NULL, &pack, &src) && bit_get(del, pack))
                bit_set(srcs, src);
        }
    }
    if (g->o->dry_run) {
        GHashTableIter it;
        gpointer key;
        g_hash_table_iter_init(&it, doomed);
        while (g_hash_table_iter_next(&it, &key, NULL)) {
            uint32_t ord;
            if (!vb_index_view_pack_ord(g->view, key, &ord) && bit_get(saved, ord))
                continue;
            g->rep->packs_deleted++;
            g->rep->bytes_deleted += pack_size(g->packs, key);
        }
        goto out;
    }
    ret = vb_maint_lock_refresh(r->s, &g->lock, r->lease_margin_ns, e);
    if (!ret)
        ret = rewrite_sources(g, srcs, del, e);
    if (ret)
        goto out;
    {
        GHashTableIter it;
        gpointer key;
        g_hash_table_iter_init(&it, doomed);
        while (!ret && g_hash_table_iter_next(&it, &key, NULL)) {
            char name[VB_OBJ_NAME_MAX];
            uint32_t ord;
            if (!vb_index_view_pack_ord(g->view, key, &ord) && bit_get(saved, ord))
                continue;
            vb_obj_name(VB_OBJ_PACK, key, name);
            ret = vb_store_remove(r->s, name, e);
            if (ret == -ENOENT)
                ret = 0;
            else if (!ret) {
                g->rep->packs_deleted++;
                g->rep->bytes_deleted += pack_size(g->packs, key);
            }
            if (!ret)
                g_hash_table_remove(g->packs, key);
        }
    }
    /* what follows (phase 1) sees the index without them */
    if (!ret)
        ret = refresh_view(g, e);
    if (!ret)
        ret = vb_store_sync(r->s, e);
    for (guint i = 0; !ret && i < ready->len; i++) {
        ret = vb_condemned_remove(r->s, ready->pdata[i], e);
        if (ret == -ENOENT)
            ret = 0;
        if (!ret)
            g->rep->lists_done++;
    }
out:
    free(del);
    free(saved);
    free(srcs);
    g_hash_table_destroy(doomed);
    g_ptr_array_free(ready, TRUE);
    if (lists)
        g_ptr_array_free(lists, TRUE);
    if (leases)
        g_array_free(leases, TRUE);
    if (ret)
        vb_prefixerr(e, "gc, deleting");
    return ret;
}

/* ---- phase 1: repack and condemn ------------------------------------------------------------------ */

struct repack {
    struct gc *g;
    struct vb_codec c;
    struct vb_pack_writer *w;
    GArray *packs;                    /* struct vb_pack_id: written */
    GArray *ents;                     /* struct vb_index_entry */
};

static int repack_ship(struct repack *rp, vb_error *e)
{
    char name[VB_OBJ_NAME_MAX];
    const struct vb_pack_entry *pe;
    uint8_t *data, id[VB_OBJ_ID_LEN];
    size_t len;
    uint32_t count;
    int ret;

    if (!rp->w)
        return 0;
    pe = vb_pack_entries(rp->w, &count);
    if (!count) {
        vb_pack_writer_free(rp->w);
        rp->w = NULL;
        return 0;
    }
    for (uint32_t i = 0; i < count; i++) {
        struct vb_index_entry x = { .pack = rp->packs->len, .offset = (uint32_t)pe[i].offset,
                                    .stored_len = pe[i].stored_len,
                                    .plain_len = pe[i].plain_len, .type = pe[i].type };
        memcpy(x.id, pe[i].id, VB_HASH_LEN);
        g_array_append_val(rp->ents, x);
    }
    ret = vb_pack_finish(rp->w, &data, &len, id, e);
    vb_pack_writer_free(rp->w);
    rp->w = NULL;
    if (ret)
        return ret;
    vb_obj_name(VB_OBJ_PACK, id, name);
    ret = vb_store_put(rp->g->r->s, name, data, len, VB_PUT_NOREPLACE, e);
    free(data);
    if (ret == -EEXIST)
        ret = 0;
    if (!ret)
        g_array_append_vals(rp->packs, id, 1);
    return ret;
}

static int id_cmp(const void *a, const void *b)
{
    return memcmp(a, b, VB_HASH_LEN);
}

/* Copy the live blobs (keep_ids: ascending) of a pack into new packs. */
static int repack_one(struct repack *rp, const uint8_t *pack, const uint8_t *keep_ids,
                      size_t nkeep, vb_error *e)
{
    struct vb2_repo *r = rp->g->r;
    char name[VB_OBJ_NAME_MAX];
    GByteArray *buf = g_byte_array_new();
    struct vb_pack_info info;
    uint8_t *plain = NULL;
    size_t plain_cap = 0;
    int ret;

    vb_obj_name(VB_OBJ_PACK, pack, name);
    ret = vb2_get_object(r, name, VB_PACK_MAX, buf, e);
    if (!ret)
        ret = vb_pack_parse(&r->keys, buf->data, buf->len, &info, e);
    if (ret) {
        g_byte_array_free(buf, TRUE);
        vb_prefixerr(e, "repack %s", name);
        return ret;
    }
    for (uint32_t i = 0; !ret && i < info.count; i++) {
        const struct vb_pack_entry *pe = &info.entries[i];
        if (!nkeep || !bsearch(pe->id, keep_ids, nkeep, VB_HASH_LEN, id_cmp))
            continue;
        /* never copy damage: the seal (or CRC) and zstd are checked */
        if (plain_cap < pe->plain_len) {
            free(plain);
            plain_cap = VB_MAX(pe->plain_len, 1u);
            plain = malloc(plain_cap);
            if (!plain) {
                ret = vb_seterr(e, -ENOMEM, "out of memory");
                break;
            }
        }
        ret = vb_blob_decode(&rp->c, &r->keys, pe->id, NULL, buf->data + pe->offset,
                             pe->stored_len, pe->plain_len, plain, plain_cap, e);
        if (ret) {
            vb_prefixerr(e, "repack %s: blob at %llu", name, (unsigned long long)pe->offset);
            break;
        }
        if (!rp->w) {
            rp->w = vb2_pack_new(r, &rp->c, e);
            if (!rp->w) {
                ret = e && e->code ? e->code : -ENOMEM;
                break;
            }
        }
        ret = vb_pack_add_encoded(rp->w, pe, buf->data + pe->offset, e);
        if (!ret) {
            rp->g->rep->blobs_repacked++;
            rp->g->rep->bytes_repacked += pe->stored_len;
        }
        if (!ret && vb_pack_full(rp->w))
            ret = repack_ship(rp, e);
    }
    free(plain);
    vb_pack_info_free(&info);
    g_byte_array_free(buf, TRUE);
    return ret;
}

/*
 * A chunk held by several packs lives in one of them: the one with the
 * smallest id among those not condemned.  A fixed order between packs makes
 * a pack that duplicates another wholly garbage, not half of each.
 */
static bool better_holder(struct vb_index_view *v, const uint8_t *already, uint32_t holder,
                          uint32_t pack)
{
    if (bit_get(already, pack))
        return false;
    return holder == UINT32_MAX ||
           memcmp(vb_index_view_pack(v, pack), vb_index_view_pack(v, holder), VB_OBJ_ID_LEN) < 0;
}

static int phase_condemn(struct gc *g, vb_error *e)
{
    struct vb2_repo *r = g->r;
    struct vb_index_view *v = g->view;
    uint32_t np = vb_index_view_npacks(v);
    uint64_t count = vb_index_view_count(v);
    uint64_t *live = calloc(VB_MAX(np, 1u), sizeof(uint64_t));
    uint64_t *total = calloc(VB_MAX(np, 1u), sizeof(uint64_t));
    uint8_t *already = calloc(np / 8 + 1, 1), *repack = calloc(np / 8 + 1, 1);
    GArray *cands = g_array_new(FALSE, FALSE, sizeof(struct vb_pack_id));
    GHashTable *condemned_ids = g_hash_table_new(vb_id_hash, vb_id_equal);
    GPtrArray *lists = NULL;
    struct vb_condemned *c = NULL;
    unsigned threshold = g->o->repack_percent ? g->o->repack_percent : 50;
    int ret;

    if (!live || !total || !already || !repack) {
        ret = vb_seterr(e, -ENOMEM, "gc: out of memory");
        goto out;
    }
    /* packs condemned already (their lists wait for leases) stay out of it */
    ret = vb_condemned_read_all(r->s, &lists, e);
    if (ret)
        goto out;
    for (guint i = 0; i < lists->len; i++) {
        struct vb_condemned *l = lists->pdata[i];
        for (guint j = 0; j < l->packs->len; j++) {
            const uint8_t *id = g_array_index(l->packs, struct vb_pack_id, j).b;
            uint32_t ord;
            g_hash_table_add(condemned_ids, (gpointer)id);
            if (!vb_index_view_pack_ord(v, id, &ord))
                bit_set(already, ord);
        }
    }
    /* live bytes per pack; a chunk held by several packs counts in one of
     * them (better_holder) */
    for (uint64_t i = 0; i < count;) {
        uint8_t id[VB_HASH_LEN], id2[VB_HASH_LEN];
        struct vb_blob_loc loc;
        uint32_t pack, holder = UINT32_MAX;
        bool marked;
        uint64_t j;

        ret = vb_index_view_rec(v, i, id, NULL, NULL, NULL);
        if (ret) {
            ret = vb_seterr(e, ret, "gc: the index cache is damaged");
            goto out;
        }
        marked = bloom_has(&g->marks, id);
        for (j = i; j < count; j++) {
            if (vb_index_view_rec(v, j, id2, &loc, &pack, NULL) || memcmp(id, id2, VB_HASH_LEN))
                break;
            total[pack] += loc.stored_len;
            if (marked && better_holder(v, already, holder, pack))
                holder = pack;
        }
        if (marked && holder != UINT32_MAX) {
            for (uint64_t k = i; k < j; k++) {
                vb_index_view_rec(v, k, NULL, &loc, &pack, NULL);
                if (pack == holder)
                    live[pack] += loc.stored_len;
            }
        }
        i = j;
    }
    ret = 0;
    for (uint32_t p = 0; p < np; p++) {
        const uint8_t *id = vb_index_view_pack(v, p);
        if (bit_get(already, p) || !g_hash_table_contains(g->packs, id))
            continue;
        if (!live[p]) {
            g_array_append_vals(cands, id, 1);
        } else if (threshold < 100 && total[p] && (total[p] - live[p]) * 100 >= total[p] *
                   threshold) {
            bit_set(repack, p);
        }
    }

    /* repack mostly-garbage packs: their live blobs go to new packs (indexed
     * at once), then they are candidates like the rest */
    if (!g->o->dry_run) {
        struct repack rp = { .g = g };
        GHashTable *keeps = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL,
                                                  (GDestroyNotify)g_array_unref);
        bool any = false;

        for (uint32_t p = 0; p < np; p++)
            any = any || bit_get(repack, p);
        if (any) {
            rp.packs = g_array_new(FALSE, FALSE, sizeof(struct vb_pack_id));
            rp.ents = g_array_new(FALSE, FALSE, sizeof(struct vb_index_entry));
            if (vb_codec_init(&rp.c, 1))
                ret = vb_seterr(e, -ENOMEM, "out of memory");
            /* the blobs each of them holds live, in one pass over the index */
            for (uint64_t i = 0; i < count;) {
                uint8_t id[VB_HASH_LEN], id2[VB_HASH_LEN];
                uint32_t pack, holder = UINT32_MAX;
                uint64_t j;
                vb_index_view_rec(v, i, id, NULL, NULL, NULL);
                for (j = i; j < count; j++) {
                    if (vb_index_view_rec(v, j, id2, NULL, &pack, NULL) ||
                        memcmp(id, id2, VB_HASH_LEN))
                        break;
                    if (better_holder(v, already, holder, pack))
                        holder = pack;
                }
                if (holder != UINT32_MAX && bit_get(repack, holder) &&
                    bloom_has(&g->marks, id)) {
                    GArray *k = g_hash_table_lookup(keeps, GUINT_TO_POINTER(holder + 1));
                    if (!k) {
                        k = g_array_new(FALSE, FALSE, VB_HASH_LEN);
                        g_hash_table_insert(keeps, GUINT_TO_POINTER(holder + 1), k);
                    }
                    g_array_append_vals(k, id, 1);   /* ascending: the view is sorted */
                }
                i = j;
            }
            for (uint32_t p = 0; !ret && p < np; p++) {
                GArray *k;
                if (!bit_get(repack, p))
                    continue;
                k = g_hash_table_lookup(keeps, GUINT_TO_POINTER(p + 1));
                ret = repack_one(&rp, vb_index_view_pack(v, p),
                                 k ? (const uint8_t *)k->data : NULL, k ? k->len : 0, e);
                if (!ret) {
                    g_array_append_vals(cands, vb_index_view_pack(v, p), 1);
                    g->rep->packs_repacked++;
                }
            }
            if (!ret)
                ret = repack_ship(&rp, e);
            if (!ret && rp.ents->len) {
                unsigned n;
                ret = vb2_put_index(r, (struct vb_index_entry *)rp.ents->data, rp.ents->len,
                                    (const struct vb_pack_id *)rp.packs->data, rp.packs->len,
                                    &n, e);
                g->rep->index_written += n;
            }
            if (!ret)
                ret = vb_store_sync(r->s, e);
            vb_pack_writer_free(rp.w);
            vb_codec_free(&rp.c);
            g_array_free(rp.packs, TRUE);
            g_array_free(rp.ents, TRUE);
        }
        g_hash_table_destroy(keeps);
        if (ret)
            goto out;
    } else {
        for (uint32_t p = 0; p < np; p++)
            if (bit_get(repack, p)) {
                g_array_append_vals(cands, vb_index_view_pack(v, p), 1);
                g->rep->packs_repacked++;
            }
    }

    /* packs nothing indexes (an aborted or crashed session, or one still
     * running: its lease is named in the list, so they wait for it) */
    {
        GHashTableIter it;
        gpointer key;
        g_hash_table_iter_init(&it, g->packs);
        while (g_hash_table_iter_next(&it, &key, NULL)) {
            uint32_t ord;
            if (vb_index_view_pack_ord(v, key, &ord) && !g_hash_table_contains(condemned_ids, key))
                g_array_append_vals(cands, key, 1);
        }
    }
    for (guint i = 0; i < cands->len; i++)
        g->rep->bytes_condemned += pack_size(g->packs, g_array_index(cands, struct vb_pack_id,
                                                                     i).b);
    g->rep->packs_condemned += cands->len;
    if (!cands->len || g->o->dry_run)
        goto out;
    ret = vb_maint_lock_refresh(r->s, &g->lock, r->lease_margin_ns, e);
    if (!ret)
        ret = vb_condemn(r->s, (const struct vb_pack_id *)cands->data, cands->len, &c, e);
    if (!ret)
        g->rep->lists_written++;
out:
    vb_condemned_free(c);
    if (lists)
        g_ptr_array_free(lists, TRUE);
    g_hash_table_destroy(condemned_ids);
    g_array_free(cands, TRUE);
    free(live);
    free(total);
    free(already);
    free(repack);
    if (ret)
        vb_prefixerr(e, "gc, condemning");
    return ret;
}

/* ---- merging small index files ----------------------------------------------------------------- */

static int merge_index(struct gc *g, vb_error *e)
{
    struct vb_index_view *v = g->view;
    uint32_t ns = vb_index_view_nsources(v), small = 0;
    uint64_t *per = calloc(VB_MAX(ns, 1u), sizeof(uint64_t));
    uint8_t *sel = calloc(ns / 8 + 1, 1);
    unsigned min_files = g->o->merge_min_files ? g->o->merge_min_files : 16;
    int ret = 0;

    if (!per || !sel) {
        free(per);
        free(sel);
        return vb_seterr(e, -ENOMEM, "gc: out of memory");
    }
    for (uint64_t i = 0; i < vb_index_view_count(v); i++) {
        uint32_t src;
        if (!vb_index_view_rec(v, i, NULL, NULL, NULL, &src))
            per[src]++;
    }
    for (uint32_t s = 0; s < ns; s++) {
        if (per[s] < g->r->index_file_records / 2) {
            bit_set(sel, s);
            small++;
        }
    }
    if (small > min_files && !g->o->dry_run)
        ret = rewrite_sources(g, sel, NULL, e);
    free(per);
    free(sel);
    if (ret)
        vb_prefixerr(e, "gc, merging index files");
    return ret;
}

/* ---- the whole ------------------------------------------------------------------------------------ */

int vb2_gc(struct vb2_repo *r, const struct vb2_gc_opts *o, struct vb2_gc_report *rep,
           vb_error *e)
{
    struct vb2_gc_opts dflt = { 0 };
    struct vb2_gc_report dummy;
    struct gc g = { .r = r };
    unsigned phases;
    int ret;

    if (!o)
        o = &dflt;
    if (!rep)
        rep = &dummy;
    memset(rep, 0, sizeof(*rep));
    g.o = o;
    g.rep = rep;
    phases = o->phases ? o->phases : VB2_GC_ALL;
    if (r->readonly)
        return vb_seterr(e, -EROFS, "gc: the repository was opened read-only");
    ret = vb_maint_lock_take(r->s, "gc", VB_LEASE_EXPIRY_NS, &g.lock, NULL, e);
    if (ret)
        return ret;
    g.marked = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    ret = refresh_view(&g, e);
    if (!ret)
        ret = list_packs(r, &g.packs, e);
    if (ret)
        goto out;
    {
        GHashTableIter it;
        gpointer key, val;
        g_hash_table_iter_init(&it, g.packs);
        while (g_hash_table_iter_next(&it, &key, &val)) {
            rep->packs++;
            rep->pack_bytes += (uint64_t)(uintptr_t)val - 1;
        }
    }
    rep->bloom_bytes = o->bloom_bytes ? o->bloom_bytes
                                      : (size_t)VB_MAX(vb_index_view_count(g.view) * 10 / 8,
                                                       (uint64_t)1 << 20);
    ret = bloom_init(&g.marks, rep->bloom_bytes, e);
    if (!ret)
        ret = mark_all(&g, e);
    if (!ret && (phases & VB2_GC_DELETE))
        ret = phase_delete(&g, e);
    if (!ret && (phases & VB2_GC_CONDEMN)) {
        ret = phase_condemn(&g, e);
        /* with no live lease named, the new list's packs go at once */
        if (!ret && phases == VB2_GC_ALL && rep->lists_written)
            ret = phase_delete(&g, e);
    }
    if (!ret && (phases & VB2_GC_CONDEMN)) {
        ret = refresh_view(&g, e);
        if (!ret)
            ret = merge_index(&g, e);
    }
    if (!ret && !o->dry_run) {
        /* temporary files of interrupted puts, a day old by the store's clock */
        vb_store_clean_temp(r->s, g.lock.stamp_ns - 24 * 3600 * INT64_C(1000000000), NULL,
                            NULL);
    }
out:
    {
        vb_error e2 = { 0 };
        int r2 = vb_maint_lock_release(r->s, &g.lock, &e2);
        if (!ret && r2) {
            ret = r2;
            if (e)
                *e = e2;
        }
    }
    bloom_free(&g.marks);
    vb_index_view_unref(g.view);
    if (g.packs)
        g_hash_table_destroy(g.packs);
    g_hash_table_destroy(g.marked);
    return ret;
}
