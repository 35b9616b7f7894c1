/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * verify, stats and the index rebuild of the version 2 engine (repo2.h).
 *
 * verify checks every pack (its hash is its name, its trailer parses, and
 * with read_data every blob opens, decompresses and has its id under some
 * dedup group's key), every index record against its pack's trailer, and
 * every manifest (its streams read back and every chunk it references in
 * the index).  Damage is reported by name; nothing is changed.
 */
#include "repo2-int.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void problem(GPtrArray *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void problem(GPtrArray *p, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    g_ptr_array_add(p, g_strdup_vprintf(fmt, ap));
    va_end(ap);
}

void vb2_verify_report_free(struct vb2_verify_report *rep)
{
    if (rep->problems)
        g_ptr_array_free(rep->problems, TRUE);
    memset(rep, 0, sizeof(*rep));
}

struct pack_obj {
    uint8_t id[VB_OBJ_ID_LEN];
    uint64_t size;
};

static int add_pack_obj(void *opaque, const char *name, const struct vb_obj_info *info,
                        vb_error *e)
{
    struct pack_obj p;
    enum vb_obj_kind k;

    if (vb_obj_parse(name, &k, p.id) || k != VB_OBJ_PACK)
        return 0;
    p.size = info->size;
    g_array_append_val(opaque, p);
    return 0;
}

static int pack_obj_cmp(const void *a, const void *b)
{
    return memcmp(a, b, VB_OBJ_ID_LEN);
}

/* Every pack in the store, sorted by id. */
static int list_pack_objs(struct vb2_repo *r, GArray **out, vb_error *e)
{
    GArray *a = g_array_new(FALSE, FALSE, sizeof(struct pack_obj));
    int ret = vb_store_list(r->s, vb_obj_prefix(VB_OBJ_PACK), add_pack_obj, a, e);

    if (ret) {
        g_array_free(a, TRUE);
        return ret;
    }
    if (a->len)
        qsort(a->data, a->len, sizeof(struct pack_obj), pack_obj_cmp);
    *out = a;
    return 0;
}

/* The trailer of a pack from its last bytes (two range gets at most). */
static int read_trailer(struct vb2_repo *r, const struct pack_obj *p, struct vb_pack_info *info,
                        vb_error *e)
{
    char name[VB_OBJ_NAME_MAX];
    GByteArray *b = g_byte_array_new();
    size_t want = (size_t)VB_MIN(p->size, (uint64_t)64 << 10), need = 0;
    int ret;

    vb_obj_name(VB_OBJ_PACK, p->id, name);
    for (int pass = 0; pass < 2; pass++) {
        if (p->size < VB_PACK_HDR) {
            ret = vb_seterr(e, -EBADMSG, "%llu bytes", (unsigned long long)p->size);
            break;
        }
        ret = vb_store_get(r->s, name, p->size - want, want, b, e);
        if (ret)
            break;
        ret = vb_pack_parse_end(&r->keys, b->data, b->len, p->size, info, &need, e);
        if (ret != -EAGAIN)
            break;
        want = need;
        if (need > p->size) {
            ret = vb_seterr(e, -EBADMSG, "trailer longer than the pack");
            break;
        }
    }
    g_byte_array_free(b, TRUE);
    if (ret == -EAGAIN)
        ret = vb_seterr(e, -EBADMSG, "trailer does not fit");
    return ret;
}

/* The plain data of a blob opened (seal or CRC, zstd) and its id found
 * under one of the keys.  -EBADMSG naming what is wrong. */
static int check_blob(struct vb2_repo *r, struct vb_codec *c, GArray *keys,
                      const struct vb_pack_entry *pe, const uint8_t *stored, GByteArray *plain,
                      vb_error *e)
{
    uint8_t got[VB_HASH_LEN];
    int ret;

    g_byte_array_set_size(plain, pe->plain_len);
    ret = vb_blob_decode(c, &r->keys, pe->id, NULL, stored, pe->stored_len, pe->plain_len,
                         plain->data, pe->plain_len, e);
    if (ret)
        return ret;
    for (guint k = 0; k < keys->len; k++) {
        if (vb_keyed_id(&g_array_index(keys, uint8_t, (size_t)k * VB_KEY_LEN), plain->data,
                        plain->len, got))
            return vb_seterr(e, -EIO, "keyed id: libcrypto failed");
        if (!CRYPTO_memcmp(got, pe->id, VB_HASH_LEN))
            return 0;
    }
    return vb_seterr(e, -EBADMSG, "content does not match its id under any dedup group a "
                     "snapshot uses");
}

/* Record indexes of the view sorted by (pack id, offset). */
static int by_pack_cmp(const void *a, const void *b, void *opaque)
{
    const struct vb_index_view *v = opaque;
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b, px, py;
    struct vb_blob_loc lx, ly;

    vb_index_view_rec(v, x, NULL, &lx, &px, NULL);
    vb_index_view_rec(v, y, NULL, &ly, &py, NULL);
    if (px != py)
        return memcmp(lx.pack, ly.pack, VB_OBJ_ID_LEN);
    if (lx.offset != ly.offset)
        return lx.offset < ly.offset ? -1 : 1;
    return x < y ? -1 : x > y;
}

/* Check what one manifest references: its streams read back, each chunk in
 * the index. */
static void verify_manifest(struct vb2_repo *r, struct vb_index_view *v,
                            const struct vb_manifest *m, struct vb2_verify_report *rep)
{
    static const uint8_t zero[VB_HASH_LEN];
    const struct vb_stream_ref *refs[2] = { &m->chunks,
                                            m->type == VB_MF_FILES ? &m->catalog : NULL };
    uint64_t missing = 0;
    char first[65] = "";
    vb_error e = { 0 };

    for (int s = 0; s < 2; s++) {
        struct vb2_stream *st;
        uint8_t *buf;
        size_t got;
        int ret = 0;

        if (!refs[s])
            continue;
        st = vb2_stream_open(r, m, refs[s], &e);
        buf = malloc(VB_HASH_LEN * 4096);
        if (!st || !buf) {
            problem(rep->problems, "snapshot %s: %s", m->id, st ? "out of memory"
                                                                 : vb_strerror(&e));
            vb2_stream_close(st);
            free(buf);
            continue;
        }
        for (;;) {
            ret = vb2_stream_read(st, buf, VB_HASH_LEN * 4096, &got, &e);
            if (ret || !got)
                break;
            if (s != 0)
                continue;     /* the catalog: read (and so checked), not interpreted */
            for (size_t i = 0; i + VB_HASH_LEN <= got; i += VB_HASH_LEN) {
                if (!memcmp(buf + i, zero, VB_HASH_LEN))
                    continue;
                if (vb_index_view_find(v, buf + i, NULL, NULL) != 1) {
                    if (!missing++)
                        vb_hex(buf + i, VB_HASH_LEN, first);
                }
            }
        }
        if (ret)
            problem(rep->problems, "snapshot %s: %s stream: %s", m->id,
                    s == 0 ? "chunks" : "catalog", vb_strerror(&e));
        vb2_stream_close(st);
        free(buf);
    }
    if (missing)
        problem(rep->problems, "snapshot %s: %llu chunk%s missing from the index (first %s)",
                m->id, (unsigned long long)missing, missing == 1 ? " is" : "s are", first);
}

int vb2_verify(struct vb2_repo *r, const struct vb2_verify_opts *o,
               struct vb2_verify_report *rep, vb_error *e)
{
    struct vb2_verify_opts dflt = { 0 };
    struct vb_index_view *v = NULL;
    GPtrArray *manifests = NULL, *problems = NULL;
    GArray *packs = NULL, *keys = NULL;
    uint32_t *order = NULL;
    uint64_t count, k = 0;
    struct vb_codec c;
    GByteArray *buf = g_byte_array_new(), *plain = g_byte_array_new();
    bool codec_ok = false;
    int ret;

    if (!o)
        o = &dflt;
    memset(rep, 0, sizeof(*rep));
    rep->problems = g_ptr_array_new_with_free_func(g_free);
    ret = vb_index_cache_refresh(r->cache, r->s, &r->keys, NULL, e);
    if (!ret)
        ret = vb_index_cache_view(r->cache, &v, e);
    if (!ret)
        ret = vb2_snap_list_fresh(r, NULL, &manifests, &problems, e);
    if (ret)
        goto out;
    for (guint i = 0; i < problems->len; i++)
        problem(rep->problems, "%s", (char *)problems->pdata[i]);

    /* the manifests, and what they reference */
    for (guint i = 0; i < manifests->len; i++) {
        const struct vb_manifest *m = manifests->pdata[i];
        if (o->snapshot && strcmp(o->snapshot, m->id) && strcmp(o->snapshot, m->object))
            continue;
        verify_manifest(r, v, m, rep);
        rep->snapshots++;
    }
    if (o->snapshot) {
        if (!rep->snapshots)
            ret = vb_seterr(e, -ENOENT, "snapshot %s not found", o->snapshot);
        goto out;
    }

    /* every pack, and the index against it */
    keys = vb2_all_group_keys(r, manifests, e);
    ret = list_pack_objs(r, &packs, e);
    if (ret)
        goto out;
    count = vb_index_view_count(v);
    if (count > UINT32_MAX) {
        ret = vb_seterr(e, -EFBIG, "verify: more than 2^32 indexed blobs");
        goto out;
    }
    order = malloc(VB_MAX(count, (uint64_t)1) * sizeof(uint32_t));
    if (!order || vb_codec_init(&c, 1)) {
        ret = vb_seterr(e, -ENOMEM, "verify: out of memory");
        goto out;
    }
    codec_ok = true;
    for (uint64_t i = 0; i < count; i++)
        order[i] = (uint32_t)i;
    if (count)
        qsort_r(order, count, sizeof(uint32_t), by_pack_cmp, v);

    for (guint pi = 0; pi < packs->len; pi++) {
        const struct pack_obj *p = &g_array_index(packs, struct pack_obj, pi);
        char name[VB_OBJ_NAME_MAX];
        struct vb_pack_info info;
        vb_error pe = { 0 };
        uint32_t ord;
        bool indexed = !vb_index_view_pack_ord(v, p->id, &ord);

        vb_obj_name(VB_OBJ_PACK, p->id, name);
        rep->packs++;
        if (o->read_data) {
            uint8_t md[VB_OBJ_ID_LEN];
            ret = vb2_get_object(r, name, VB_PACK_MAX, buf, &pe);
            if (!ret) {
                SHA256(buf->data, buf->len, md);
                if (memcmp(md, p->id, VB_OBJ_ID_LEN))
                    ret = vb_seterr(&pe, -EBADMSG, "its SHA-256 is not its name");
            }
            if (!ret)
                ret = vb_pack_parse(&r->keys, buf->data, buf->len, &info, &pe);
        } else {
            ret = read_trailer(r, p, &info, &pe);
        }
        if (ret) {
            problem(rep->problems, "%s: damaged: %s", name, vb_strerror(&pe));
            ret = 0;
            /* its index records name a damaged pack */
            memset(&info, 0, sizeof(info));
        }
        if (o->read_data) {
            for (uint32_t b = 0; b < info.count; b++) {
                const struct vb_pack_entry *ent = &info.entries[b];
                vb_error be = { 0 };
                if (check_blob(r, &c, keys, ent, buf->data + ent->offset, plain, &be)) {
                    char hex[65];
                    vb_hex(ent->id, VB_HASH_LEN, hex);
                    problem(rep->problems, "%s: blob %s at %llu: %s", name, hex,
                            (unsigned long long)ent->offset, vb_strerror(&be));
                }
                rep->blobs++;
                rep->bytes += ent->plain_len;
            }
        } else {
            rep->blobs += info.count;
        }
        /* the index's records of this pack agree with its trailer */
        if (indexed) {
            uint32_t rec_pack;
            struct vb_blob_loc loc;
            uint8_t id[VB_HASH_LEN];
            uint32_t b = 0;

            /* order is by pack id, as packs is: skip to this pack's records */
            while (k < count && !vb_index_view_rec(v, order[k], NULL, &loc, &rec_pack, NULL) &&
                   memcmp(loc.pack, p->id, VB_OBJ_ID_LEN) < 0)
                k++;
            for (; k < count; k++) {
                if (vb_index_view_rec(v, order[k], id, &loc, &rec_pack, NULL) ||
                    rec_pack != ord)
                    break;
                while (b < info.count && info.entries[b].offset < loc.offset)
                    b++;
                if (info.count && (b == info.count || info.entries[b].offset != loc.offset ||
                                   memcmp(info.entries[b].id, id, VB_HASH_LEN) ||
                                   info.entries[b].stored_len != loc.stored_len ||
                                   info.entries[b].plain_len != loc.plain_len ||
                                   info.entries[b].type != loc.type)) {
                    char hex[65];
                    vb_hex(id, VB_HASH_LEN, hex);
                    problem(rep->problems, "index: blob %s at %u of %s does not match the "
                            "pack's trailer", hex, loc.offset, name);
                }
            }
        }
        vb_pack_info_free(&info);
    }
    /* records whose pack is not in the store */
    {
        GHashTable *present = g_hash_table_new(vb_id_hash, vb_id_equal);
        for (guint pi = 0; pi < packs->len; pi++)
            g_hash_table_add(present, g_array_index(packs, struct pack_obj, pi).id);
        for (uint32_t p = 0; p < vb_index_view_npacks(v); p++) {
            const uint8_t *id = vb_index_view_pack(v, p);
            if (!g_hash_table_contains(present, id)) {
                char name[VB_OBJ_NAME_MAX];
                vb_obj_name(VB_OBJ_PACK, id, name);
                problem(rep->problems, "%s is named by the index but missing", name);
            }
        }
        g_hash_table_destroy(present);
    }
out:
    if (codec_ok)
        vb_codec_free(&c);
    free(order);
    if (keys) {
        OPENSSL_cleanse(keys->data, (size_t)keys->len * VB_KEY_LEN);
        g_array_free(keys, TRUE);
    }
    if (packs)
        g_array_free(packs, TRUE);
    if (manifests)
        g_ptr_array_free(manifests, TRUE);
    if (problems)
        g_ptr_array_free(problems, TRUE);
    vb_index_view_unref(v);
    g_byte_array_free(buf, TRUE);
    g_byte_array_free(plain, TRUE);
    if (ret)
        vb_prefixerr(e, "verify");
    return ret;
}

/* ---- stats ---------------------------------------------------------------------------------- */

int vb2_stats(struct vb2_repo *r, struct vb2_stats *st, vb_error *e)
{
    static const uint8_t zero[VB_HASH_LEN];
    struct vb_index_view *v = NULL;
    GPtrArray *manifests = NULL;
    GArray *packs = NULL;
    uint8_t *buf = malloc(VB_HASH_LEN * 4096);
    int ret;

    memset(st, 0, sizeof(*st));
    if (!buf)
        return vb_seterr(e, -ENOMEM, "out of memory");
    ret = vb_index_cache_refresh(r->cache, r->s, &r->keys, NULL, e);
    if (!ret)
        ret = vb_index_cache_view(r->cache, &v, e);
    if (!ret)
        ret = list_pack_objs(r, &packs, e);
    if (!ret)
        ret = vb2_snap_list(r, NULL, &manifests, NULL, e);
    if (ret)
        goto out;
    st->snapshots = manifests->len;
    st->packs = packs->len;
    for (guint i = 0; i < packs->len; i++)
        st->pack_bytes += g_array_index(packs, struct pack_obj, i).size;
    st->index_files = vb_index_view_nsources(v);
    {
        uint8_t prev[VB_HASH_LEN], id[VB_HASH_LEN];
        struct vb_blob_loc loc;
        for (uint64_t i = 0; i < vb_index_view_count(v); i++) {
            if (vb_index_view_rec(v, i, id, &loc, NULL, NULL))
                continue;
            if (i && !memcmp(prev, id, VB_HASH_LEN))
                continue;     /* one blob in two packs counts once */
            memcpy(prev, id, VB_HASH_LEN);
            st->blobs++;
            if (loc.type == VB_BLOB_DATA)
                st->data_blobs++;
            else
                st->meta_blobs++;
            st->plain_bytes += loc.plain_len;
            st->stored_bytes += loc.stored_len;
        }
    }
    for (guint i = 0; !ret && i < manifests->len; i++) {
        const struct vb_manifest *m = manifests->pdata[i];
        struct vb2_stream *s = vb2_stream_open(r, m, &m->chunks, e);
        size_t got;

        if (!s) {
            ret = e && e->code ? e->code : -ENOMEM;
            break;
        }
        for (;;) {
            ret = vb2_stream_read(s, buf, VB_HASH_LEN * 4096, &got, e);
            if (ret || !got)
                break;
            for (size_t k = 0; k + VB_HASH_LEN <= got; k += VB_HASH_LEN) {
                struct vb_blob_loc loc;
                if (memcmp(buf + k, zero, VB_HASH_LEN) &&
                    vb_index_view_find(v, buf + k, NULL, &loc) == 1)
                    st->logical_bytes += loc.plain_len;
            }
        }
        vb2_stream_close(s);
    }
out:
    free(buf);
    if (manifests)
        g_ptr_array_free(manifests, TRUE);
    if (packs)
        g_array_free(packs, TRUE);
    vb_index_view_unref(v);
    if (ret)
        vb_prefixerr(e, "stats");
    return ret;
}

/* ---- repair: the index from pack trailers ---------------------------------------------------- */

static int add_index_name(void *opaque, const char *name, const struct vb_obj_info *info,
                          vb_error *e)
{
    uint8_t id[VB_OBJ_ID_LEN];
    enum vb_obj_kind k;

    if (!vb_obj_parse(name, &k, id) && k == VB_OBJ_INDEX)
        g_ptr_array_add(opaque, g_strdup(name));
    return 0;
}

/* Index files for the entries gathered so far. */
static int repair_flush(struct vb2_repo *r, GArray *ents, GArray *bpacks, GHashTable *fresh,
                        vb_error *e)
{
    int ret = 0;

    for (size_t off = 0; !ret && off < ents->len; off += r->index_file_records) {
        size_t m = VB_MIN((size_t)r->index_file_records, ents->len - off);
        uint8_t *data, fid[VB_OBJ_ID_LEN];
        char iname[VB_OBJ_NAME_MAX];
        size_t len;

        ret = vb_index_build(&r->keys, (struct vb_index_entry *)ents->data + off, m,
                             (const struct vb_pack_id *)bpacks->data, bpacks->len, &data, &len,
                             fid, e);
        if (ret)
            break;
        vb_obj_name(VB_OBJ_INDEX, fid, iname);
        ret = vb_store_put(r->s, iname, data, len, VB_PUT_NOREPLACE, e);
        free(data);
        if (ret == -EEXIST)
            ret = 0;
        g_hash_table_add(fresh, g_strdup(iname));
    }
    g_array_set_size(ents, 0);
    g_array_set_size(bpacks, 0);
    return ret;
}

int vb2_repair_index(struct vb2_repo *r, uint64_t *npacks, uint64_t *nblobs,
                     GPtrArray *problems, vb_error *e)
{
    struct vb_maint_lock lock;
    GPtrArray *old = g_ptr_array_new_with_free_func(g_free);
    GHashTable *fresh = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    GArray *packs = NULL, *bpacks = g_array_new(FALSE, FALSE, sizeof(struct vb_pack_id));
    GArray *ents = g_array_new(FALSE, FALSE, sizeof(struct vb_index_entry));
    uint64_t np = 0, nb = 0;
    int ret;

    if (r->readonly)
        return vb_seterr(e, -EROFS, "repair: the repository was opened read-only");
    ret = vb_maint_lock_take(r->s, "repair", VB_LEASE_EXPIRY_NS, &lock, NULL, e);
    if (ret) {
        g_ptr_array_free(old, TRUE);
        g_hash_table_destroy(fresh);
        g_array_free(bpacks, TRUE);
        g_array_free(ents, TRUE);
        return ret;
    }
    /* the index files to replace are listed first: every pack they name was
     * written before them, so before the packs are listed */
    ret = vb_store_list(r->s, vb_obj_prefix(VB_OBJ_INDEX), add_index_name, old, e);
    if (!ret)
        ret = list_pack_objs(r, &packs, e);
    for (guint pi = 0; !ret && packs && pi < packs->len; pi++) {
        const struct pack_obj *p = &g_array_index(packs, struct pack_obj, pi);
        struct vb_pack_info info;
        vb_error pe = { 0 };
        char name[VB_OBJ_NAME_MAX];

        vb_obj_name(VB_OBJ_PACK, p->id, name);
        if (read_trailer(r, p, &info, &pe)) {
            if (problems)
                problem(problems, "%s: damaged, left out of the index: %s", name,
                        vb_strerror(&pe));
            continue;
        }
        for (uint32_t i = 0; i < info.count; i++) {
            struct vb_index_entry x = { .pack = bpacks->len,
                                        .offset = (uint32_t)info.entries[i].offset,
                                        .stored_len = info.entries[i].stored_len,
                                        .plain_len = info.entries[i].plain_len,
                                        .type = info.entries[i].type };
            memcpy(x.id, info.entries[i].id, VB_HASH_LEN);
            g_array_append_val(ents, x);
        }
        g_array_append_vals(bpacks, p->id, 1);
        np++;
        nb += info.count;
        vb_pack_info_free(&info);
        if (ents->len >= r->index_file_records)
            ret = repair_flush(r, ents, bpacks, fresh, e);
    }
    if (!ret)
        ret = repair_flush(r, ents, bpacks, fresh, e);
    if (!ret)
        ret = vb_store_sync(r->s, e);
    for (guint i = 0; !ret && i < old->len; i++) {
        if (g_hash_table_contains(fresh, old->pdata[i]))
            continue;
        ret = vb_store_remove(r->s, old->pdata[i], e);
        if (ret == -ENOENT)
            ret = 0;
    }
    if (!ret)
        ret = vb_store_sync(r->s, e);
    {
        vb_error e2 = { 0 };
        int r2 = vb_maint_lock_release(r->s, &lock, &e2);
        if (!ret && r2) {
            ret = r2;
            if (e)
                *e = e2;
        }
    }
    if (npacks)
        *npacks = np;
    if (nblobs)
        *nblobs = nb;
    if (packs)
        g_array_free(packs, TRUE);
    g_array_free(bpacks, TRUE);
    g_array_free(ents, TRUE);
    g_ptr_array_free(old, TRUE);
    g_hash_table_destroy(fresh);
    if (ret)
        vb_prefixerr(e, "repair the index");
    return ret;
}
