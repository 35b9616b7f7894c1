/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Index files and the local lookup table (index.h). */
#include "index.h"

#include <fcntl.h>
#include <limits.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bytes.h"
#include "chunk.h"
#include "pack.h"

static const char index_ad[] = "vbackup index";
static const uint8_t index_magic[4] = { 'V', 'B', 'I', 'X' };

/* Largest stored index file: every count at its maximum, plus a seal. */
#define INDEX_STORED_MAX \
    ((uint64_t)VB_INDEX_HDR + (uint64_t)VB_INDEX_MAX_PACKS * VB_OBJ_ID_LEN + \
     (uint64_t)VB_INDEX_MAX_RECORDS * VB_INDEX_REC + 64)

static size_t index_overhead(const struct vb_keys *k)
{
    return k->aead == VB_AEAD_NONE ? 4 : vb_seal_overhead(k->aead);
}

/* ---- index files ---------------------------------------------------------------- */

static void rec_encode(uint8_t *p, const struct vb_index_entry *x, uint32_t pack)
{
    memcpy(p, x->id, VB_HASH_LEN);
    vb_put_le32(p + 32, pack);
    p[36] = x->type;
    p[37] = p[38] = p[39] = 0;
    vb_put_le64(p + 40, x->offset);
    vb_put_le32(p + 48, x->stored_len);
    vb_put_le32(p + 52, x->plain_len);
}

/*
 * The checks of one record's own fields, as a reader makes them: known type,
 * plain length within VB_BLOB_MAX, stored length with its overhead and no
 * longer than the plain payload, a blob inside a pack after its header.
 */
static int entry_check(const struct vb_keys *k, uint8_t type, uint64_t offset,
                       uint32_t stored_len, uint32_t plain_len, vb_error *e)
{
    size_t over = vb_blob_overhead(k);

    if (type != VB_BLOB_DATA && type != VB_BLOB_META)
        return vb_seterr(e, -EBADMSG, "unknown blob type %u", type);
    if (plain_len > VB_BLOB_MAX)
        return vb_seterr(e, -EBADMSG, "plain length %u is more than %u", plain_len,
                         VB_BLOB_MAX);
    if (stored_len < over)
        return vb_seterr(e, -EBADMSG, "stored length %u is less than the blob overhead %zu",
                         stored_len, over);
    if (stored_len - over > plain_len)
        return vb_seterr(e, -EBADMSG, "stored length %u is more than plain length %u and "
                         "overhead %zu", stored_len, plain_len, over);
    if (offset < VB_PACK_HDR || offset > VB_PACK_MAX || stored_len > VB_PACK_MAX - offset)
        return vb_seterr(e, -EBADMSG, "blob at offset %llu of %u bytes does not fit a pack",
                         (unsigned long long)offset, stored_len);
    return 0;
}

struct sort_ctx {
    const struct vb_pack_id *packs;
};

static int entry_cmp(const void *a, const void *b, void *opaque)
{
    const struct vb_index_entry *x = a, *y = b;
    const struct sort_ctx *ctx = opaque;
    int c = memcmp(x->id, y->id, VB_HASH_LEN);

    if (c)
        return c;
    return memcmp(ctx->packs[x->pack].b, ctx->packs[y->pack].b, VB_OBJ_ID_LEN);
}

static int packid_cmp(const void *a, const void *b)
{
    return memcmp(a, b, VB_OBJ_ID_LEN);
}

int vb_index_build(const struct vb_keys *k, struct vb_index_entry *ents, size_t n,
                   const struct vb_pack_id *packs, size_t npacks, uint8_t **out, size_t *len,
                   uint8_t file_id[VB_OBJ_ID_LEN], vb_error *e)
{
    struct sort_ctx ctx = { packs };
    uint32_t *map = NULL, nused = 0, kept = 0;
    struct vb_pack_id *table = NULL;
    uint8_t *plain = NULL, *stored = NULL;
    size_t plain_len, stored_len;
    int ret = 0;

    *out = NULL;
    *len = 0;
    if (n > VB_INDEX_MAX_RECORDS)
        return vb_seterr(e, -EFBIG, "build index file: %zu records (at most %u)", n,
                         VB_INDEX_MAX_RECORDS);
    for (size_t i = 0; i < n; i++) {
        if (ents[i].pack >= npacks)
            return vb_seterr(e, -EINVAL, "build index file: entry %zu names pack %u of %zu",
                             i, ents[i].pack, npacks);
        ret = entry_check(k, ents[i].type, ents[i].offset, ents[i].stored_len,
                          ents[i].plain_len, e);
        if (ret) {
            vb_prefixerr(e, "build index file: entry %zu", i);
            return -EINVAL;
        }
    }
    if (n)
        qsort_r(ents, n, sizeof(*ents), entry_cmp, &ctx);

    /* the packs named, ascending: map[caller's ordinal] = ordinal in the table */
    map = malloc(VB_MAX(npacks, (size_t)1) * sizeof(*map));
    table = malloc(VB_MAX(npacks, (size_t)1) * sizeof(*table));
    if (!map || !table) {
        ret = vb_seterr(e, -ENOMEM, "build index file: out of memory");
        goto out;
    }
    for (size_t i = 0; i < npacks; i++)
        map[i] = UINT32_MAX;
    for (size_t i = 0; i < n; i++) {
        if (map[ents[i].pack] == UINT32_MAX) {
            map[ents[i].pack] = 0;
            table[nused++] = packs[ents[i].pack];
        }
    }
    if (nused > VB_INDEX_MAX_PACKS) {
        ret = vb_seterr(e, -EFBIG, "build index file: %u packs (at most %u)", nused,
                        VB_INDEX_MAX_PACKS);
        goto out;
    }
    if (nused)
        qsort(table, nused, sizeof(*table), packid_cmp);
    for (uint32_t i = 0; i < nused; i++) {
        if (i && !memcmp(table[i].b, table[i - 1].b, VB_OBJ_ID_LEN)) {
            ret = vb_seterr(e, -EINVAL, "build index file: a pack id is listed twice");
            goto out;
        }
    }
    for (size_t i = 0; i < npacks; i++) {
        if (map[i] == UINT32_MAX)
            continue;
        struct vb_pack_id *p = bsearch(&packs[i], table, nused, sizeof(*table), packid_cmp);
        map[i] = (uint32_t)(p - table);
    }

    plain_len = VB_INDEX_HDR + (size_t)nused * VB_OBJ_ID_LEN + n * VB_INDEX_REC;
    plain = malloc(plain_len);
    if (!plain) {
        ret = vb_seterr(e, -ENOMEM, "build index file: out of memory");
        goto out;
    }
    {
        uint8_t *p = plain + VB_INDEX_HDR + (size_t)nused * VB_OBJ_ID_LEN;
        for (size_t i = 0; i < n; i++) {
            /* the same id in the same pack twice: one record */
            if (i && !memcmp(ents[i].id, ents[i - 1].id, VB_HASH_LEN) &&
                map[ents[i].pack] == map[ents[i - 1].pack])
                continue;
            rec_encode(p, &ents[i], map[ents[i].pack]);
            p += VB_INDEX_REC;
            kept++;
        }
    }
    memcpy(plain, index_magic, 4);
    plain[4] = VB_INDEX_VERSION;
    plain[5] = plain[6] = plain[7] = 0;
    vb_put_le32(plain + 8, nused);
    vb_put_le32(plain + 12, kept);
    memcpy(plain + VB_INDEX_HDR, table, (size_t)nused * VB_OBJ_ID_LEN);
    plain_len = VB_INDEX_HDR + (size_t)nused * VB_OBJ_ID_LEN + (size_t)kept * VB_INDEX_REC;

    stored_len = plain_len + index_overhead(k);
    stored = malloc(stored_len);
    if (!stored) {
        ret = vb_seterr(e, -ENOMEM, "build index file: out of memory");
        goto out;
    }
    if (k->aead == VB_AEAD_NONE) {
        memcpy(stored, plain, plain_len);
        vb_put_le32(stored + plain_len, vb_crc32_more(0, plain, plain_len));
    } else {
        ret = vb_seal(k, index_ad, sizeof(index_ad) - 1, plain, plain_len, stored, e);
        if (ret) {
            vb_prefixerr(e, "build index file");
            goto out;
        }
    }
    SHA256(stored, stored_len, file_id);
    *out = stored;
    *len = stored_len;
    stored = NULL;
out:
    free(map);
    free(table);
    free(plain);
    free(stored);
    return ret;
}

void vb_index_file_free(struct vb_index_file *f)
{
    free(f->packs);
    free(f->ents);
    memset(f, 0, sizeof(*f));
}

int vb_index_parse(const struct vb_keys *k, const uint8_t *stored, size_t len,
                   struct vb_index_file *out, vb_error *e)
{
    size_t over = index_overhead(k), plain_len;
    uint8_t *plain = NULL, *used = NULL;
    uint32_t npacks, count;
    int ret = 0;

    memset(out, 0, sizeof(*out));
    if (len < over + VB_INDEX_HDR)
        return vb_seterr(e, -EBADMSG, "index file of %zu bytes is shorter than the least "
                         "possible (%zu)", len, over + VB_INDEX_HDR);
    if (len > INDEX_STORED_MAX)
        return vb_seterr(e, -EBADMSG, "index file of %zu bytes is larger than the most "
                         "possible", len);
    plain_len = len - over;
    plain = malloc(plain_len);
    if (!plain)
        return vb_seterr(e, -ENOMEM, "index file: out of memory");
    if (k->aead == VB_AEAD_NONE) {
        memcpy(plain, stored, plain_len);
        if (vb_crc32_more(0, plain, plain_len) != vb_get_le32(stored + plain_len))
            ret = vb_seterr(e, -EBADMSG, "index file CRC-32 mismatch");
    } else {
        ret = vb_open(k, index_ad, sizeof(index_ad) - 1, stored, len, plain, e);
        if (ret)
            vb_prefixerr(e, "index file");
    }
    if (ret)
        goto out;
    if (memcmp(plain, index_magic, 4)) {
        ret = vb_seterr(e, -EBADMSG, "index file magic is not VBIX");
        goto out;
    }
    if (plain[4] != VB_INDEX_VERSION) {
        ret = vb_seterr(e, -EBADMSG, "unknown index file version %u", plain[4]);
        goto out;
    }
    if (plain[5] || plain[6] || plain[7]) {
        ret = vb_seterr(e, -EBADMSG, "index file header's reserved bytes are not zero");
        goto out;
    }
    npacks = vb_get_le32(plain + 8);
    count = vb_get_le32(plain + 12);
    if (npacks > VB_INDEX_MAX_PACKS || count > VB_INDEX_MAX_RECORDS ||
        VB_INDEX_HDR + (uint64_t)npacks * VB_OBJ_ID_LEN + (uint64_t)count * VB_INDEX_REC !=
        plain_len) {
        ret = vb_seterr(e, -EBADMSG, "index file of %zu bytes cannot hold %u packs and %u "
                        "records", plain_len, npacks, count);
        goto out;
    }
    out->packs = malloc(VB_MAX(npacks, 1u) * sizeof(*out->packs));
    out->ents = malloc(VB_MAX(count, 1u) * sizeof(*out->ents));
    used = calloc(VB_MAX(npacks, 1u), 1);
    if (!out->packs || !out->ents || !used) {
        ret = vb_seterr(e, -ENOMEM, "index file: out of memory");
        goto out;
    }
    memcpy(out->packs, plain + VB_INDEX_HDR, (size_t)npacks * VB_OBJ_ID_LEN);
    for (uint32_t i = 1; i < npacks; i++) {
        if (memcmp(out->packs[i - 1].b, out->packs[i].b, VB_OBJ_ID_LEN) >= 0) {
            ret = vb_seterr(e, -EBADMSG, "index file pack table entry %u is not after "
                            "entry %u", i, i - 1);
            goto out;
        }
    }
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *p = plain + VB_INDEX_HDR + (size_t)npacks * VB_OBJ_ID_LEN +
                           (size_t)i * VB_INDEX_REC;
        struct vb_index_entry *x = &out->ents[i];
        uint64_t offset = vb_get_le64(p + 40);

        memcpy(x->id, p, VB_HASH_LEN);
        x->pack = vb_get_le32(p + 32);
        x->type = p[36];
        x->stored_len = vb_get_le32(p + 48);
        x->plain_len = vb_get_le32(p + 52);
        if (x->pack >= npacks)
            ret = vb_seterr(e, -EBADMSG, "pack ordinal %u, the table has %u", x->pack,
                            npacks);
        else if (p[37] || p[38] || p[39])
            ret = vb_seterr(e, -EBADMSG, "reserved bytes are not zero");
        else
            ret = entry_check(k, x->type, offset, x->stored_len, x->plain_len, e);
        if (!ret && i) {
            const struct vb_index_entry *prev = &out->ents[i - 1];
            int c = memcmp(prev->id, x->id, VB_HASH_LEN);
            if (c > 0 || (c == 0 && prev->pack >= x->pack))
                ret = vb_seterr(e, -EBADMSG, "not after record %u (records are sorted by id "
                                "and pack, each once)", i - 1);
        }
        if (ret) {
            vb_prefixerr(e, "index file record %u", i);
            goto out;
        }
        x->offset = (uint32_t)offset;
        used[x->pack] = 1;
    }
    for (uint32_t i = 0; i < npacks; i++) {
        if (!used[i]) {
            ret = vb_seterr(e, -EBADMSG, "index file pack table entry %u is named by no "
                            "record", i);
            goto out;
        }
    }
    out->npacks = npacks;
    out->count = count;
out:
    if (ret)
        vb_index_file_free(out);
    free(used);
    free(plain);
    return ret;
}

int vb_index_fetch(struct vb_store *s, const struct vb_keys *k,
                   const uint8_t id[VB_OBJ_ID_LEN], struct vb_index_file *out, vb_error *e)
{
    char name[VB_OBJ_NAME_MAX];
    GByteArray *buf;
    struct vb_obj_info info;
    uint8_t got[VB_OBJ_ID_LEN];
    int ret;

    memset(out, 0, sizeof(*out));
    vb_obj_name(VB_OBJ_INDEX, id, name);
    ret = vb_store_stat(s, name, &info, e);
    if (ret)
        return ret;
    if (info.size > INDEX_STORED_MAX)
        return vb_seterr(e, -EBADMSG, "%s: damaged (%llu bytes, more than an index file can "
                         "hold)", name, (unsigned long long)info.size);
    buf = g_byte_array_new();
    ret = vb_store_get(s, name, 0, (size_t)info.size, buf, e);
    if (ret) {
        g_byte_array_free(buf, TRUE);
        return ret;
    }
    SHA256(buf->data, buf->len, got);
    if (memcmp(got, id, VB_OBJ_ID_LEN)) {
        ret = vb_seterr(e, -EBADMSG, "%s: damaged (its SHA-256 is not its name)", name);
    } else {
        ret = vb_index_parse(k, buf->data, buf->len, out, e);
        if (ret)
            vb_prefixerr(e, "%s", name);
    }
    g_byte_array_free(buf, TRUE);
    return ret;
}

/* ---- the lookup table ---------------------------------------------------------------- */

/*
 * lookup.tbl, little-endian, written and read by this file only:
 *   0   "VBIXTBL1" | version u32 (1) | reserved u32 | records u64 | packs u32 |
 *       sources u32 | repository id [16] | fan-out CRC u32 | reserved u32 |
 *       body CRC u32 | header CRC u32 (of bytes 0..60)              64 bytes
 *   64  fan-out: 65537 u32, [i] = records whose id's first two bytes < i
 *   TBL_RECS  records, 56 bytes: id [32] | pack u32 | source u32 | offset u32 |
 *       stored u32 | plain u32 | type u8 | 0 u8[3]
 *   then packs x 32 bytes, sources x 32 bytes (index file ids)
 * The body CRC covers records, packs and sources.
 */
#define TBL_HDR      64
#define TBL_FAN      65537
#define TBL_RECS     VB_ALIGN_UP(TBL_HDR + TBL_FAN * 4, 64)
#define TBL_REC      56
#define TBL_NAME     "lookup.tbl"
#define TBL_VERSION  1
static const char tbl_magic[8] = { 'V', 'B', 'I', 'X', 'T', 'B', 'L', '1' };

struct vb_index_view {
    gint refs;
    uint8_t *map;
    size_t map_len;
    uint64_t count;
    uint32_t npacks, nsrc;
    const uint8_t *recs, *packs, *srcs;
    uint32_t *fan;                /* TBL_FAN entries */
    GMutex mu;                    /* pack_ords */
    GHashTable *pack_ords;        /* pack id (in the map) -> ordinal + 1 */
};

struct vb_index_cache {
    char *dir;
    int dfd, lockfd;
    uint8_t repo_id[16];
    size_t budget;
    GMutex mu;
    struct vb_index_view *cur;    /* NULL until loaded */
};

static struct vb_index_view *view_empty(void)
{
    struct vb_index_view *v = calloc(1, sizeof(*v));

    if (!v)
        return NULL;
    v->fan = calloc(TBL_FAN, sizeof(uint32_t));
    if (!v->fan) {
        free(v);
        return NULL;
    }
    v->refs = 1;
    g_mutex_init(&v->mu);
    return v;
}

struct vb_index_view *vb_index_view_ref(struct vb_index_view *v)
{
    g_atomic_int_inc(&v->refs);
    return v;
}

void vb_index_view_unref(struct vb_index_view *v)
{
    if (!v || !g_atomic_int_dec_and_test(&v->refs))
        return;
    if (v->map)
        munmap(v->map, v->map_len);
    if (v->pack_ords)
        g_hash_table_destroy(v->pack_ords);
    g_mutex_clear(&v->mu);
    free(v->fan);
    free(v);
}

uint64_t vb_index_view_count(const struct vb_index_view *v)
{
    return v->count;
}

uint32_t vb_index_view_npacks(const struct vb_index_view *v)
{
    return v->npacks;
}

const uint8_t *vb_index_view_pack(const struct vb_index_view *v, uint32_t ord)
{
    return ord < v->npacks ? v->packs + (size_t)ord * VB_OBJ_ID_LEN : NULL;
}

uint32_t vb_index_view_nsources(const struct vb_index_view *v)
{
    return v->nsrc;
}

const uint8_t *vb_index_view_source(const struct vb_index_view *v, uint32_t ord)
{
    return ord < v->nsrc ? v->srcs + (size_t)ord * VB_OBJ_ID_LEN : NULL;
}

int vb_index_view_pack_ord(struct vb_index_view *v, const uint8_t pack[VB_OBJ_ID_LEN],
                           uint32_t *ord)
{
    gpointer val;

    g_mutex_lock(&v->mu);
    if (!v->pack_ords) {
        v->pack_ords = g_hash_table_new(vb_id_hash, vb_id_equal);
        for (uint32_t i = 0; i < v->npacks; i++)
            g_hash_table_insert(v->pack_ords, (gpointer)(v->packs + (size_t)i * VB_OBJ_ID_LEN),
                                GUINT_TO_POINTER(i + 1));
    }
    val = g_hash_table_lookup(v->pack_ords, pack);
    g_mutex_unlock(&v->mu);
    if (!val)
        return -ENOENT;
    *ord = GPOINTER_TO_UINT(val) - 1;
    return 0;
}

static void rec_loc(const struct vb_index_view *v, const uint8_t *p, uint32_t pack,
                    struct vb_blob_loc *loc)
{
    memcpy(loc->pack, v->packs + (size_t)pack * VB_OBJ_ID_LEN, VB_OBJ_ID_LEN);
    loc->offset = vb_get_le32(p + 40);
    loc->stored_len = vb_get_le32(p + 44);
    loc->plain_len = vb_get_le32(p + 48);
    loc->type = p[52];
}

int vb_index_view_rec(const struct vb_index_view *v, uint64_t i, uint8_t id[VB_HASH_LEN],
                      struct vb_blob_loc *loc, uint32_t *pack_ord, uint32_t *src_ord)
{
    const uint8_t *p;
    uint32_t pack, src;

    if (i >= v->count)
        return -EINVAL;
    p = v->recs + i * TBL_REC;
    pack = vb_get_le32(p + 32);
    src = vb_get_le32(p + 36);
    if (pack >= v->npacks || src >= v->nsrc)
        return -EBADMSG;
    if (id)
        memcpy(id, p, VB_HASH_LEN);
    if (loc)
        rec_loc(v, p, pack, loc);
    if (pack_ord)
        *pack_ord = pack;
    if (src_ord)
        *src_ord = src;
    return 0;
}

int vb_index_view_find(const struct vb_index_view *v, const uint8_t id[VB_HASH_LEN],
                       const uint8_t *skip, struct vb_blob_loc *loc)
{
    unsigned prefix = (unsigned)id[0] << 8 | id[1];
    uint64_t lo = v->fan[prefix], hi = v->fan[prefix + 1];

    /* lower bound of id in [lo, hi) */
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (memcmp(v->recs + mid * TBL_REC, id, VB_HASH_LEN) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (; lo < v->count; lo++) {
        const uint8_t *p = v->recs + lo * TBL_REC;
        uint32_t pack;

        if (memcmp(p, id, VB_HASH_LEN))
            return 0;
        pack = vb_get_le32(p + 32);
        if (pack >= v->npacks)
            return -EBADMSG;
        if (skip && (skip[pack / 8] & (1u << (pack % 8))))
            continue;
        if (loc)
            rec_loc(v, p, pack, loc);
        return 1;
    }
    return 0;
}

uint8_t *vb_index_view_skip_condemned(struct vb_index_view *v, GPtrArray *condemned)
{
    uint8_t *bits = NULL;

    for (guint i = 0; condemned && i < condemned->len; i++) {
        const struct vb_condemned *c = condemned->pdata[i];
        for (guint j = 0; j < c->packs->len; j++) {
            uint32_t ord;
            if (vb_index_view_pack_ord(v, g_array_index(c->packs, struct vb_pack_id, j).b,
                                       &ord))
                continue;
            if (!bits) {
                bits = calloc(v->npacks / 8 + 1, 1);
                if (!bits)
                    return NULL;
            }
            bits[ord / 8] |= (uint8_t)(1u << (ord % 8));
        }
    }
    return bits;
}

/* ---- the cache folder ---------------------------------------------------------------- */

int vb_cache_dir(const char *dir, const uint8_t repo_id[16], char *out, vb_error *e)
{
    const char *env = getenv("VBACKUP_CACHE"), *xdg = getenv("XDG_CACHE_HOME"),
               *home = getenv("HOME");
    char hex[33];
    int n;

    vb_hex(repo_id, 16, hex);
    if (dir && *dir)
        n = snprintf(out, PATH_MAX, "%s", dir);
    else if (env && *env)
        n = snprintf(out, PATH_MAX, "%s/%s", env, hex);
    else if (geteuid() == 0)
        n = snprintf(out, PATH_MAX, "/var/cache/vbackup/repos/%s", hex);
    else if (xdg && *xdg == '/')
        n = snprintf(out, PATH_MAX, "%s/vbackup/repos/%s", xdg, hex);
    else if (home && *home == '/')
        n = snprintf(out, PATH_MAX, "%s/.cache/vbackup/repos/%s", home, hex);
    else
        return vb_seterr(e, -ENOENT, "no cache folder: set VBACKUP_CACHE (or HOME)");
    if (n < 0 || n >= PATH_MAX)
        return vb_seterr(e, -ENAMETOOLONG, "cache folder name too long");
    return 0;
}

int vb_index_cache_open(const char *dir, const uint8_t repo_id[16],
                        struct vb_index_cache **out, vb_error *e)
{
    struct vb_index_cache *c;
    g_autofree char *parent = g_path_get_dirname(dir);
    /* only the repository's own folder is private: the folders above it
     * (/var/cache/vbackup) are shared with other caches, whose readers may
     * be other users (QEMU run by libvirt) */
    int ret = vb_mkdir_p(parent, 0755);

    *out = NULL;
    if (!ret && mkdir(dir, 0700) < 0 && errno != EEXIST)
        ret = -errno;
    if (ret)
        return vb_seterr(e, ret, "create cache folder %s: %s", dir, strerror(-ret));
    c = calloc(1, sizeof(*c));
    if (!c)
        return vb_seterr(e, -ENOMEM, "out of memory");
    c->dfd = c->lockfd = -1;
    c->dir = strdup(dir);
    c->dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (c->dfd < 0) {
        ret = vb_seterr(e, -errno, "open cache folder %s: %s", dir, strerror(errno));
        goto fail;
    }
    c->lockfd = openat(c->dfd, "lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (c->lockfd < 0) {
        ret = vb_seterr(e, -errno, "open %s/lock: %s", dir, strerror(errno));
        goto fail;
    }
    if (!c->dir) {
        ret = vb_seterr(e, -ENOMEM, "out of memory");
        goto fail;
    }
    memcpy(c->repo_id, repo_id, 16);
    c->budget = 32u << 20;
    g_mutex_init(&c->mu);
    *out = c;
    return 0;
fail:
    if (c->dfd >= 0)
        close(c->dfd);
    free(c->dir);
    free(c);
    return ret;
}

void vb_index_cache_close(struct vb_index_cache *c)
{
    if (!c)
        return;
    vb_index_view_unref(c->cur);
    close(c->lockfd);
    close(c->dfd);
    g_mutex_clear(&c->mu);
    free(c->dir);
    free(c);
}

const char *vb_index_cache_dir(const struct vb_index_cache *c)
{
    return c->dir;
}

void vb_index_cache_set_budget(struct vb_index_cache *c, size_t bytes)
{
    c->budget = VB_MAX(bytes, (size_t)TBL_REC * 16);
}

/* CRC-32 of len bytes of fd from off, read in slices (not through a mapping,
 * so checking a table does not make all of it resident in this process). */
static int crc_range(int fd, uint64_t off, uint64_t len, uint32_t *crc)
{
    size_t cap = 1u << 20;
    uint8_t *buf = malloc(cap);
    uint32_t c = 0;
    int ret = 0;

    if (!buf)
        return -ENOMEM;
    while (len) {
        size_t n = (size_t)VB_MIN(len, (uint64_t)cap);
        ret = vb_pread_all(fd, buf, n, off);
        if (ret)
            break;
        c = vb_crc32_more(c, buf, n);
        off += n;
        len -= n;
    }
    free(buf);
    *crc = c;
    return ret;
}

/* Load lookup.tbl: 0 and *out, -ENOENT when missing, -EBADMSG when damaged
 * (or another repository's), other errors as they come. */
static int view_load(struct vb_index_cache *c, struct vb_index_view **out, vb_error *e)
{
    uint8_t hdr[TBL_HDR];
    struct vb_index_view *v = NULL;
    struct stat st;
    uint64_t count, want;
    uint32_t npacks, nsrc, crc;
    int fd, ret;

    *out = NULL;
    fd = openat(c->dfd, TBL_NAME, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return errno == ENOENT ? -ENOENT
                               : vb_seterr(e, -errno, "open %s/%s: %s", c->dir, TBL_NAME,
                                           strerror(errno));
    if (fstat(fd, &st) < 0) {
        ret = vb_seterr(e, -errno, "stat %s/%s: %s", c->dir, TBL_NAME, strerror(errno));
        goto out;
    }
    ret = -EBADMSG;
    if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size < TBL_RECS ||
        vb_pread_all(fd, hdr, TBL_HDR, 0))
        goto out;
    if (memcmp(hdr, tbl_magic, 8) || vb_get_le32(hdr + 8) != TBL_VERSION ||
        vb_get_le32(hdr + 60) != vb_crc32_more(0, hdr, 60) || memcmp(hdr + 32, c->repo_id, 16))
        goto out;
    count = vb_get_le64(hdr + 16);
    npacks = vb_get_le32(hdr + 24);
    nsrc = vb_get_le32(hdr + 28);
    if (count > ((uint64_t)1 << 40) / TBL_REC)
        goto out;
    want = TBL_RECS + count * TBL_REC + ((uint64_t)npacks + nsrc) * VB_OBJ_ID_LEN;
    if (want != (uint64_t)st.st_size)
        goto out;
    v = view_empty();
    if (!v) {
        ret = vb_seterr(e, -ENOMEM, "out of memory");
        goto out;
    }
    if (vb_pread_all(fd, v->fan, TBL_FAN * 4, TBL_HDR) ||
        vb_crc32_more(0, (const uint8_t *)v->fan, TBL_FAN * 4) != vb_get_le32(hdr + 48))
        goto out;
    for (unsigned i = 0; i < TBL_FAN; i++) {
        v->fan[i] = le32toh(v->fan[i]);
        if ((i == 0 && v->fan[0]) || (i && v->fan[i] < v->fan[i - 1]))
            goto out;
    }
    if (v->fan[TBL_FAN - 1] != count)
        goto out;
    ret = crc_range(fd, TBL_RECS, want - TBL_RECS, &crc);
    if (ret == -ENOMEM)
        goto out;
    ret = -EBADMSG;
    if (crc != vb_get_le32(hdr + 56))
        goto out;
    v->map_len = (size_t)st.st_size;
    v->map = mmap(NULL, v->map_len, PROT_READ, MAP_SHARED, fd, 0);
    if (v->map == MAP_FAILED) {
        v->map = NULL;
        ret = vb_seterr(e, -errno, "mmap %s/%s: %s", c->dir, TBL_NAME, strerror(errno));
        goto out;
    }
    madvise(v->map, v->map_len, MADV_RANDOM);
    v->count = count;
    v->npacks = npacks;
    v->nsrc = nsrc;
    v->recs = v->map + TBL_RECS;
    v->packs = v->recs + count * TBL_REC;
    v->srcs = v->packs + (size_t)npacks * VB_OBJ_ID_LEN;
    ret = 0;
out:
    close(fd);
    if (ret == -EBADMSG)
        vb_seterr(e, -EBADMSG, "%s/%s: damaged", c->dir, TBL_NAME);
    if (ret) {
        vb_index_view_unref(v);
        return ret;
    }
    *out = v;
    return 0;
}

int vb_index_cache_view(struct vb_index_cache *c, struct vb_index_view **out, vb_error *e)
{
    int ret = 0;

    g_mutex_lock(&c->mu);
    if (!c->cur) {
        ret = view_load(c, &c->cur, e);
        if (ret == -ENOENT || ret == -EBADMSG) {
            c->cur = view_empty();
            ret = c->cur ? 0 : vb_seterr(e, -ENOMEM, "out of memory");
        }
    }
    if (!ret)
        *out = vb_index_view_ref(c->cur);
    g_mutex_unlock(&c->mu);
    return ret;
}

/* ---- refresh: runs and the merge ------------------------------------------------------- */

/* Pack ids met during a refresh, with their ordinals. */
struct registry {
    GHashTable *ord;              /* id (in ids) -> ordinal + 1 */
    GArray *ids;                  /* struct vb_pack_id; never reallocated while ord points in:
                                   * ord's keys are separate copies */
    GPtrArray *keys;              /* owned key copies */
};

static void registry_init(struct registry *r)
{
    r->ord = g_hash_table_new(vb_id_hash, vb_id_equal);
    r->ids = g_array_new(FALSE, FALSE, sizeof(struct vb_pack_id));
    r->keys = g_ptr_array_new_with_free_func(g_free);
}

static void registry_free(struct registry *r)
{
    g_hash_table_destroy(r->ord);
    g_array_free(r->ids, TRUE);
    g_ptr_array_free(r->keys, TRUE);
}

static uint32_t registry_add(struct registry *r, const uint8_t id[VB_OBJ_ID_LEN])
{
    gpointer v = g_hash_table_lookup(r->ord, id);
    uint8_t *key;

    if (v)
        return GPOINTER_TO_UINT(v) - 1;
    key = g_memdup2(id, VB_OBJ_ID_LEN);
    g_ptr_array_add(r->keys, key);
    g_array_append_vals(r->ids, id, 1);
    g_hash_table_insert(r->ord, key, GUINT_TO_POINTER(r->ids->len));
    return r->ids->len - 1;
}

static void tbl_rec_put(uint8_t *p, const uint8_t id[VB_HASH_LEN], uint32_t pack, uint32_t src,
                        uint32_t offset, uint32_t stored, uint32_t plain, uint8_t type)
{
    memcpy(p, id, VB_HASH_LEN);
    vb_put_le32(p + 32, pack);
    vb_put_le32(p + 36, src);
    vb_put_le32(p + 40, offset);
    vb_put_le32(p + 44, stored);
    vb_put_le32(p + 48, plain);
    p[52] = type;
    p[53] = p[54] = p[55] = 0;
}

static int tbl_rec_cmp(const void *a, const void *b)
{
    return memcmp(a, b, VB_HASH_LEN);
}

/* An anonymous file in the cache folder (unlinked at once: nothing is left
 * behind by a crash). */
static int anon_file(struct vb_index_cache *c, vb_error *e)
{
    static gint seq;
    char name[64];
    int fd;

    snprintf(name, sizeof(name), "run-%d-%d.tmp", (int)getpid(), g_atomic_int_add(&seq, 1));
    fd = openat(c->dfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return vb_seterr(e, -errno, "create %s/%s: %s", c->dir, name, strerror(errno));
    unlinkat(c->dfd, name, 0);
    return fd;
}

struct run {
    uint8_t *map;
    size_t len;
    uint64_t n, i;
};

/* Sort the batch and write it to a run file, mapped for the merge. */
static int run_write(struct vb_index_cache *c, uint8_t *batch, uint64_t n, GArray *runs,
                     vb_error *e)
{
    struct run r = { .n = n, .len = (size_t)n * TBL_REC };
    int fd, ret;

    qsort(batch, n, TBL_REC, tbl_rec_cmp);
    fd = anon_file(c, e);
    if (fd < 0)
        return fd;
    ret = vb_write_all(fd, batch, r.len);
    if (ret) {
        close(fd);
        return vb_seterr(e, ret, "write a sorted run in %s: %s", c->dir, strerror(-ret));
    }
    r.map = mmap(NULL, VB_MAX(r.len, (size_t)1), PROT_READ, MAP_PRIVATE, fd, 0);
    ret = -errno;
    close(fd);
    if (r.map == MAP_FAILED)
        return vb_seterr(e, ret, "mmap a sorted run in %s: %s", c->dir, strerror(-ret));
    madvise(r.map, VB_MAX(r.len, (size_t)1), MADV_SEQUENTIAL);
    g_array_append_val(runs, r);
    return 0;
}

struct out {
    int fd;
    uint8_t *buf;
    size_t len, cap;
    uint32_t crc;
    int err;
};

static void out_write(struct out *o, const void *p, size_t n)
{
    o->crc = vb_crc32_more(o->crc, p, n);
    while (n && !o->err) {
        size_t step = VB_MIN(n, o->cap - o->len);
        memcpy(o->buf + o->len, p, step);
        o->len += step;
        p = (const uint8_t *)p + step;
        n -= step;
        if (o->len == o->cap) {
            o->err = vb_write_all(o->fd, o->buf, o->len);
            o->len = 0;
        }
    }
}

static void out_flush(struct out *o)
{
    if (!o->err && o->len)
        o->err = vb_write_all(o->fd, o->buf, o->len);
    o->len = 0;
}

/* What the merge combines. */
struct merge {
    struct vb_index_view *old;    /* records kept unless their source is dropped */
    const uint32_t *src_map;      /* old source ordinal -> new, or UINT32_MAX */
    GArray *runs;                 /* struct run: records with registry pack ordinals and
                                   * new source ordinals */
    struct registry *reg;         /* starts with the old packs, in their order */
    GArray *sources;              /* struct vb_pack_id: the new table's index files */
};

/* Write the merged table to a new file and put it in place. */
static int merge_write(struct vb_index_cache *c, struct merge *m, vb_error *e)
{
    char tmp[64];
    struct out o = { .cap = 1u << 20 };
    uint32_t *pack_new = NULL, *fan = NULL, npacks = 0;
    uint32_t *pack_list = NULL;
    uint64_t count = 0, oi = 0;
    uint8_t hdr[TBL_HDR] = { 0 }, rec[TBL_REC];
    int ret = 0;

    snprintf(tmp, sizeof(tmp), "%s.tmp-%d", TBL_NAME, (int)getpid());
    o.fd = openat(c->dfd, tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (o.fd < 0)
        return vb_seterr(e, -errno, "create %s/%s: %s", c->dir, tmp, strerror(errno));
    o.buf = malloc(o.cap);
    pack_new = malloc(VB_MAX(m->reg->ids->len, 1u) * sizeof(uint32_t));
    pack_list = malloc(VB_MAX(m->reg->ids->len, 1u) * sizeof(uint32_t));
    fan = calloc(TBL_FAN, sizeof(uint32_t));
    if (!o.buf || !pack_new || !pack_list || !fan) {
        ret = vb_seterr(e, -ENOMEM, "merge the index cache: out of memory");
        goto out;
    }
    for (guint i = 0; i < m->reg->ids->len; i++)
        pack_new[i] = UINT32_MAX;
    if (ftruncate(o.fd, TBL_RECS) < 0 || lseek(o.fd, TBL_RECS, SEEK_SET) < 0) {
        ret = vb_seterr(e, -errno, "write %s/%s: %s", c->dir, tmp, strerror(errno));
        goto out;
    }

    for (;;) {
        const uint8_t *best = NULL;
        int from = -1;          /* -1: none, -2: old table, else a run */
        uint32_t pack, src;

        /* the next kept record of the old table */
        while (m->old && oi < m->old->count) {
            const uint8_t *p = m->old->recs + oi * TBL_REC;
            uint32_t s = vb_get_le32(p + 36);
            if (s < m->old->nsrc && m->src_map[s] != UINT32_MAX &&
                vb_get_le32(p + 32) < m->old->npacks)
                break;
            oi++;
        }
        if (m->old && oi < m->old->count) {
            best = m->old->recs + oi * TBL_REC;
            from = -2;
        }
        for (guint r = 0; r < m->runs->len; r++) {
            struct run *rn = &g_array_index(m->runs, struct run, r);
            if (rn->i < rn->n) {
                const uint8_t *p = rn->map + rn->i * TBL_REC;
                if (!best || memcmp(p, best, VB_HASH_LEN) < 0) {
                    best = p;
                    from = (int)r;
                }
            }
        }
        if (!best)
            break;
        memcpy(rec, best, TBL_REC);
        pack = vb_get_le32(rec + 32);
        src = vb_get_le32(rec + 36);
        if (from == -2) {
            src = m->src_map[src];
            oi++;
        } else {
            g_array_index(m->runs, struct run, from).i++;
        }
        if (pack_new[pack] == UINT32_MAX) {
            pack_new[pack] = npacks;
            pack_list[npacks++] = pack;
        }
        vb_put_le32(rec + 32, pack_new[pack]);
        vb_put_le32(rec + 36, src);
        out_write(&o, rec, TBL_REC);
        fan[((unsigned)rec[0] << 8 | rec[1]) + 1]++;
        count++;
    }
    for (uint32_t i = 0; i < npacks; i++)
        out_write(&o, g_array_index(m->reg->ids, struct vb_pack_id, pack_list[i]).b,
                  VB_OBJ_ID_LEN);
    out_write(&o, m->sources->data, (size_t)m->sources->len * VB_OBJ_ID_LEN);
    out_flush(&o);
    if (o.err) {
        ret = vb_seterr(e, o.err, "write %s/%s: %s", c->dir, tmp, strerror(-o.err));
        goto out;
    }
    for (unsigned i = 1; i < TBL_FAN; i++)
        fan[i] += fan[i - 1];
    for (unsigned i = 0; i < TBL_FAN; i++)
        fan[i] = htole32(fan[i]);
    memcpy(hdr, tbl_magic, 8);
    vb_put_le32(hdr + 8, TBL_VERSION);
    vb_put_le64(hdr + 16, count);
    vb_put_le32(hdr + 24, npacks);
    vb_put_le32(hdr + 28, m->sources->len);
    memcpy(hdr + 32, c->repo_id, 16);
    vb_put_le32(hdr + 48, vb_crc32_more(0, (const uint8_t *)fan, TBL_FAN * 4));
    vb_put_le32(hdr + 56, o.crc);
    vb_put_le32(hdr + 60, vb_crc32_more(0, hdr, 60));
    /* no fsync: a table torn by a crash fails its CRCs and is built again */
    if (pwrite(o.fd, fan, TBL_FAN * 4, TBL_HDR) != TBL_FAN * 4 ||
        pwrite(o.fd, hdr, TBL_HDR, 0) != TBL_HDR) {
        ret = vb_seterr(e, errno ? -errno : -EIO, "write %s/%s: %s", c->dir, tmp,
                        strerror(errno ? errno : EIO));
        goto out;
    }
    if (renameat(c->dfd, tmp, c->dfd, TBL_NAME) < 0)
        ret = vb_seterr(e, -errno, "rename %s/%s: %s", c->dir, tmp, strerror(errno));
out:
    close(o.fd);
    if (ret)
        unlinkat(c->dfd, tmp, 0);
    free(o.buf);
    free(pack_new);
    free(pack_list);
    free(fan);
    return ret;
}

struct listing {
    GHashTable *ids;              /* index file id (owned) -> GUINT_TO_POINTER(1) */
};

static int list_index(void *opaque, const char *name, const struct vb_obj_info *info,
                      vb_error *e)
{
    struct listing *l = opaque;
    uint8_t id[VB_OBJ_ID_LEN];
    enum vb_obj_kind k;

    if (vb_obj_parse(name, &k, id) || k != VB_OBJ_INDEX)
        return 0;                 /* not one of ours: nothing acts on it */
    g_hash_table_add(l->ids, g_memdup2(id, VB_OBJ_ID_LEN));
    return 0;
}

static int id_sort(gconstpointer a, gconstpointer b)
{
    return memcmp(*(const uint8_t *const *)a, *(const uint8_t *const *)b, VB_OBJ_ID_LEN);
}

static void runs_free(GArray *runs)
{
    for (guint i = 0; i < runs->len; i++) {
        struct run *r = &g_array_index(runs, struct run, i);
        munmap(r->map, VB_MAX(r->len, (size_t)1));
    }
    g_array_free(runs, TRUE);
}

/*
 * One attempt: merge what the listing has into a new table.  -EAGAIN when a
 * listed file vanished (list again).
 */
static int refresh_once(struct vb_index_cache *c, struct vb_store *s, const struct vb_keys *k,
                        struct vb_index_view *old, struct vb_index_refresh_info *info,
                        vb_error *e)
{
    struct listing l = { g_hash_table_new_full(vb_id_hash, vb_id_equal, g_free, NULL) };
    GArray *sources = g_array_new(FALSE, FALSE, sizeof(struct vb_pack_id));
    GArray *runs = g_array_new(FALSE, FALSE, sizeof(struct run));
    GPtrArray *fresh = g_ptr_array_new();
    uint32_t *src_map = NULL;
    struct registry reg;
    uint8_t *batch = NULL;
    uint64_t nbatch = 0, cap = c->budget / TBL_REC, bcap;
    unsigned dropped = 0;
    int ret;

    registry_init(&reg);
    ret = vb_store_list(s, vb_obj_prefix(VB_OBJ_INDEX), list_index, &l, e);
    if (ret)
        goto out;
    info->listed = g_hash_table_size(l.ids);
    src_map = malloc(VB_MAX(old->nsrc, 1u) * sizeof(*src_map));
    if (!src_map) {
        ret = vb_seterr(e, -ENOMEM, "refresh the index cache: out of memory");
        goto out;
    }
    for (uint32_t i = 0; i < old->nsrc; i++) {
        const uint8_t *id = vb_index_view_source(old, i);
        if (g_hash_table_remove(l.ids, id)) {
            src_map[i] = sources->len;
            g_array_append_vals(sources, id, 1);
        } else {
            src_map[i] = UINT32_MAX;
            dropped++;
        }
    }
    /* what is left of the listing is new */
    {
        GHashTableIter it;
        gpointer key;
        g_hash_table_iter_init(&it, l.ids);
        while (g_hash_table_iter_next(&it, &key, NULL))
            g_ptr_array_add(fresh, key);
        g_ptr_array_sort(fresh, id_sort);
    }
    info->dropped = dropped;
    if (!fresh->len && !dropped) {
        ret = 0;                  /* up to date */
        goto out;
    }
    for (uint32_t i = 0; i < old->npacks; i++)
        registry_add(&reg, vb_index_view_pack(old, i));
    /* the batch grows as records come, up to the budget */
    bcap = VB_MIN(cap, (uint64_t)4096);
    batch = malloc((size_t)bcap * TBL_REC);
    if (!batch) {
        ret = vb_seterr(e, -ENOMEM, "refresh the index cache: out of memory");
        goto out;
    }
    for (guint f = 0; f < fresh->len; f++) {
        struct vb_index_file file;
        uint32_t src = sources->len, *pmap;

        ret = vb_index_fetch(s, k, fresh->pdata[f], &file, e);
        if (ret == -ENOENT) {
            ret = -EAGAIN;        /* merged or removed by maintenance: list again */
            goto out;
        }
        if (ret)
            goto out;
        g_array_append_vals(sources, fresh->pdata[f], 1);
        pmap = malloc(VB_MAX(file.npacks, 1u) * sizeof(*pmap));
        if (!pmap) {
            vb_index_file_free(&file);
            ret = vb_seterr(e, -ENOMEM, "refresh the index cache: out of memory");
            goto out;
        }
        for (uint32_t i = 0; i < file.npacks; i++)
            pmap[i] = registry_add(&reg, file.packs[i].b);
        for (size_t i = 0; i < file.count; i++) {
            const struct vb_index_entry *x = &file.ents[i];
            if (nbatch == bcap && bcap < cap) {
                uint64_t ncap = VB_MIN(cap, 2 * bcap);
                uint8_t *p = realloc(batch, (size_t)ncap * TBL_REC);
                if (p) {
                    batch = p;
                    bcap = ncap;
                }
            }
            if (nbatch == bcap) {
                ret = run_write(c, batch, nbatch, runs, e);
                nbatch = 0;
                if (ret) {
                    free(pmap);
                    vb_index_file_free(&file);
                    goto out;
                }
            }
            tbl_rec_put(batch + nbatch * TBL_REC, x->id, pmap[x->pack], src, x->offset,
                        x->stored_len, x->plain_len, x->type);
            nbatch++;
        }
        free(pmap);
        vb_index_file_free(&file);
        info->fetched++;
    }
    if (nbatch) {
        ret = run_write(c, batch, nbatch, runs, e);
        if (ret)
            goto out;
    }
    free(batch);
    batch = NULL;
    {
        struct merge m = { old, src_map, runs, &reg, sources };
        ret = merge_write(c, &m, e);
    }
out:
    free(batch);
    runs_free(runs);
    free(src_map);
    registry_free(&reg);
    g_ptr_array_free(fresh, TRUE);
    g_hash_table_destroy(l.ids);
    g_array_free(sources, TRUE);
    return ret;
}

int vb_index_cache_refresh(struct vb_index_cache *c, struct vb_store *s,
                           const struct vb_keys *k, struct vb_index_refresh_info *info,
                           vb_error *e)
{
    struct vb_index_refresh_info dummy;
    struct vb_index_view *old = NULL, *fresh = NULL;
    int ret;

    if (!info)
        info = &dummy;
    memset(info, 0, sizeof(*info));
    g_mutex_lock(&c->mu);
    if (flock(c->lockfd, LOCK_EX) < 0) {
        ret = vb_seterr(e, -errno, "lock %s/lock: %s", c->dir, strerror(errno));
        g_mutex_unlock(&c->mu);
        return ret;
    }
    for (int tries = 0;; tries++) {
        /* what the folder holds now: another process may have refreshed it */
        vb_index_view_unref(old);
        old = NULL;
        ret = view_load(c, &old, e);
        if (ret == -ENOENT || ret == -EBADMSG) {
            info->rebuilt = true;
            old = view_empty();
            ret = old ? 0 : vb_seterr(e, -ENOMEM, "out of memory");
        }
        if (ret)
            break;
        ret = refresh_once(c, s, k, old, info, e);
        if (ret != -EAGAIN || tries >= 8)
            break;
        info->fetched = 0;
    }
    if (!ret && (info->fetched || info->dropped)) {
        ret = view_load(c, &fresh, e);
        if (ret == -ENOENT)
            ret = vb_seterr(e, -EIO, "%s/%s vanished after it was written", c->dir, TBL_NAME);
    } else if (!ret) {
        fresh = vb_index_view_ref(old);
    }
    if (!ret) {
        vb_index_view_unref(c->cur);
        c->cur = fresh;
        info->records = fresh->count;
    }
    if (ret)
        vb_prefixerr(e, "refresh the index cache");
    flock(c->lockfd, LOCK_UN);
    g_mutex_unlock(&c->mu);
    vb_index_view_unref(old);
    return ret;
}
