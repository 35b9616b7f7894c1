/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "catalog.h"

#include <fcntl.h>
#include <glib.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#include "vbackup/protolib.h"

_Static_assert(sizeof(struct vb_cat_entry) == 160, "catalog entry layout");
_Static_assert(sizeof(struct vb_cat_chunk) == 48, "catalog chunk layout");
_Static_assert(sizeof(struct vb_cat_xattr) == 16, "catalog xattr layout");
_Static_assert(sizeof(struct vb_cat_range) == 16, "catalog range layout");
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the catalog is little-endian");

#define HDR 64               /* versions 1 and 2 */
#define HDR3 48              /* version 3 */

/* Version 1 entries (112 bytes): times in int64 nanoseconds, no attributes,
 * flags or layout; still read. */
struct cat_entry_v1 {
    uint8_t type;
    uint8_t flags;
    uint16_t reserved;
    uint32_t mode;
    uint32_t uid;
    uint32_t gid;
    uint32_t nlink;
    uint32_t rdev;
    uint64_t size;
    uint64_t ino;
    int64_t mtime_ns;
    int64_t ctime_ns;
    int64_t atime_ns;
    uint64_t path_off;
    uint32_t path_len;
    uint32_t link_len;
    uint64_t link_off;
    uint64_t first_chunk;
    uint64_t n_chunks;
    uint64_t hardlink;
};
_Static_assert(sizeof(struct cat_entry_v1) == 112, "catalog version 1 entry layout");

/* ---- building ---------------------------------------------------------------------- */

struct bxattr {
    char *name;
    size_t name_len;
    void *value;
    size_t value_len;
};

struct bentry {
    struct vb_cat_entry m;
    char *path;
    char *link;
    GArray *chunks;          /* struct vb_cat_chunk, or NULL */
    GArray *xattrs;          /* struct bxattr, or NULL */
    GArray *ranges;          /* struct vb_cat_range, or NULL */
};

struct vb_catb {
    GArray *e;               /* struct bentry */
};

struct vb_catb *vb_catb_new(void)
{
    struct vb_catb *b = g_new0(struct vb_catb, 1);

    b->e = g_array_new(FALSE, FALSE, sizeof(struct bentry));
    return b;
}

static void bxattrs_free(GArray *a)
{
    for (guint k = 0; a && k < a->len; k++) {
        g_free(g_array_index(a, struct bxattr, k).name);
        g_free(g_array_index(a, struct bxattr, k).value);
    }
    if (a)
        g_array_free(a, TRUE);
}

void vb_catb_free(struct vb_catb *b)
{
    if (!b)
        return;
    for (guint i = 0; i < b->e->len; i++) {
        struct bentry *x = &g_array_index(b->e, struct bentry, i);
        g_free(x->path);
        g_free(x->link);
        if (x->chunks)
            g_array_free(x->chunks, TRUE);
        if (x->ranges)
            g_array_free(x->ranges, TRUE);
        bxattrs_free(x->xattrs);
    }
    g_array_free(b->e, TRUE);
    g_free(b);
}

uint64_t vb_catb_add(struct vb_catb *b, const struct vb_cat_entry *meta, const char *path,
                     size_t path_len, const char *link, size_t link_len)
{
    struct bentry x = { .m = *meta };

    x.m.path_len = (uint32_t)path_len;
    x.m.link_len = (uint32_t)link_len;
    x.m.n_xattrs = 0;
    x.m.n_chunks = 0;
    x.m.n_ranges = 0;
    x.m.hardlink = VB_CAT_NONE;
    /* bytes, NUL-terminated for the eye only: a NUL inside does not cut them */
    x.path = g_malloc(path_len + 1);
    if (path_len)
        memcpy(x.path, path, path_len);
    x.path[path_len] = '\0';
    if (link_len) {
        x.link = g_malloc(link_len + 1);
        memcpy(x.link, link, link_len);
        x.link[link_len] = '\0';
    }
    g_array_append_val(b->e, x);
    return b->e->len - 1;
}

void vb_catb_add_xattr(struct vb_catb *b, uint64_t idx, const char *name, size_t name_len,
                       const void *value, size_t value_len)
{
    struct bentry *x = &g_array_index(b->e, struct bentry, idx);
    struct bxattr a = { g_memdup2(name, name_len), name_len, g_memdup2(value, value_len),
                        value_len };

    if (!x->xattrs)
        x->xattrs = g_array_new(FALSE, FALSE, sizeof(struct bxattr));
    g_array_append_val(x->xattrs, a);
}

void vb_catb_add_chunk(struct vb_catb *b, uint64_t idx, const struct vb_cat_chunk *c)
{
    struct bentry *x = &g_array_index(b->e, struct bentry, idx);

    if (!x->chunks)
        x->chunks = g_array_new(FALSE, FALSE, sizeof(struct vb_cat_chunk));
    g_array_append_vals(x->chunks, c, 1);
}

void vb_catb_add_range(struct vb_catb *b, uint64_t idx, uint64_t offset, uint64_t len)
{
    struct bentry *x = &g_array_index(b->e, struct bentry, idx);
    struct vb_cat_range r = { offset, len };

    if (!len)
        return;
    if (!x->ranges)
        x->ranges = g_array_new(FALSE, FALSE, sizeof(struct vb_cat_range));
    g_array_append_val(x->ranges, r);
}

void vb_catb_set_hardlink(struct vb_catb *b, uint64_t idx, uint64_t master)
{
    g_array_index(b->e, struct bentry, idx).m.hardlink = master;
}

void vb_catb_set_flags(struct vb_catb *b, uint64_t idx, uint8_t flags)
{
    g_array_index(b->e, struct bentry, idx).m.flags |= flags;
}

uint64_t vb_catb_count(const struct vb_catb *b)
{
    return b->e->len;
}

/* qsort_r: several jobs' catalogs are serialized at once, on worker threads */
static int by_path(const void *pa, const void *pb, void *src)
{
    const struct bentry *a = &g_array_index((GArray *)src, struct bentry, *(const guint *)pa);
    const struct bentry *b = &g_array_index((GArray *)src, struct bentry, *(const guint *)pb);

    return vb_name_cmp(a->path, a->m.path_len, b->path, b->m.path_len);
}

static int by_name(const void *pa, const void *pb)
{
    const struct bxattr *a = pa, *b = pb;
    int r = vb_name_cmp(a->name, a->name_len, b->name, b->name_len);

    /* equal names: the one added last wins (see below), so it sorts last */
    return r ? r : a < b ? -1 : a > b;
}

static int by_offset(const void *pa, const void *pb)
{
    const struct vb_cat_range *a = pa, *b = pb;

    return a->offset < b->offset ? -1 : a->offset > b->offset;
}

/* Sorts an entry's attributes by name, the last of equal names kept. */
static void tidy_xattrs(struct bentry *x)
{
    guint w = 0;

    if (!x->xattrs)
        return;
    qsort(x->xattrs->data, x->xattrs->len, sizeof(struct bxattr), by_name);
    for (guint k = 0; k < x->xattrs->len; k++) {
        struct bxattr *a = &g_array_index(x->xattrs, struct bxattr, k);
        if (k + 1 < x->xattrs->len) {
            struct bxattr *n = &g_array_index(x->xattrs, struct bxattr, k + 1);
            if (!vb_name_cmp(a->name, a->name_len, n->name, n->name_len)) {
                g_free(a->name);
                g_free(a->value);
                continue;
            }
        }
        g_array_index(x->xattrs, struct bxattr, w++) = *a;
    }
    g_array_set_size(x->xattrs, w);
}

/* Sorts an entry's preallocated ranges, merging what overlaps or touches. */
static void tidy_ranges(struct bentry *x)
{
    guint w = 0;

    if (!x->ranges)
        return;
    qsort(x->ranges->data, x->ranges->len, sizeof(struct vb_cat_range), by_offset);
    for (guint k = 0; k < x->ranges->len; k++) {
        struct vb_cat_range r = g_array_index(x->ranges, struct vb_cat_range, k);
        if (r.len > UINT64_MAX - r.offset)
            r.len = UINT64_MAX - r.offset;
        if (w) {
            struct vb_cat_range *p = &g_array_index(x->ranges, struct vb_cat_range, w - 1);
            if (r.offset <= p->offset + p->len) {
                if (r.offset + r.len > p->offset + p->len)
                    p->len = r.offset + r.len - p->offset;
                continue;
            }
        }
        g_array_index(x->ranges, struct vb_cat_range, w++) = r;
    }
    g_array_set_size(x->ranges, w);
}

/* Version 3 (docs/repository.md): a 48-byte header, then one record per
 * entry in path order, each self-contained: its length, the fixed fields
 * (struct cat_rec_v3), then its path, link target, attributes, chunk
 * references and preallocated ranges inline.  Nothing in a record depends on
 * where it lies or on other entries but a hard link's distance back to the
 * entry holding its data, so an unchanged tree makes the same bytes and a
 * change makes new bytes only around the entries it touches (the metadata
 * stream of a version 2 repository is cut by content: the rest deduplicates).
 * Per-snapshot provenance (the VB_CATF_* flags) is not stored. */
struct cat_rec_v3 {          /* 120 bytes, after the record's length (u64) */
    uint8_t type;
    uint8_t reserved8;
    uint16_t reserved16;
    uint32_t mode;
    uint32_t uid;
    uint32_t gid;
    uint32_t nlink;
    uint32_t rdev;
    uint64_t size;
    uint64_t ino;
    int64_t mtime_sec;
    int64_t ctime_sec;
    int64_t atime_sec;
    uint32_t mtime_nsec;
    uint32_t ctime_nsec;
    uint32_t atime_nsec;
    uint32_t fsflags;
    uint32_t projid;
    uint32_t path_len;
    uint32_t link_len;
    uint32_t n_xattrs;
    uint64_t n_chunks;
    uint64_t n_ranges;
    uint64_t hardlink_back;  /* entries back to the one holding the data; 0 none */
};
_Static_assert(sizeof(struct cat_rec_v3) == 120, "catalog version 3 record layout");

#define XATTR3 8             /* name length u16, reserved u16, value length u32 */
#define CHUNK3_ZERO 16       /* offset u64, length u32, flags u32 (written zeros) */
#define CHUNK3 48            /* ... and the chunk id */
#define RANGE3 16            /* offset u64, length u64 */

static size_t chunks_size3(const GArray *a)
{
    size_t sz = 0;

    for (guint k = 0; a && k < a->len; k++)
        sz += (g_array_index(a, struct vb_cat_chunk, k).flags & VB_CATC_ZERO) ? CHUNK3_ZERO
                                                                              : CHUNK3;
    return sz;
}

/* The bytes of a record after its length. */
static size_t record_size3(const struct bentry *x, const struct bentry *data)
{
    size_t sz = sizeof(struct cat_rec_v3) + x->m.path_len + x->m.link_len;

    for (guint k = 0; x->xattrs && k < x->xattrs->len; k++) {
        const struct bxattr *a = &g_array_index(x->xattrs, struct bxattr, k);
        sz += XATTR3 + a->name_len + a->value_len;
    }
    return sz + chunks_size3(data->chunks) + (data->ranges ? data->ranges->len : 0) * RANGE3;
}

static uint8_t *put(uint8_t *p, const void *v, size_t len)
{
    if (len)
        memcpy(p, v, len);
    return p + len;
}

static uint8_t *write_record3(uint8_t *p, const struct bentry *x, const struct bentry *data,
                              uint64_t back)
{
    struct cat_rec_v3 r = {
        .type = x->m.type, .mode = x->m.mode, .uid = x->m.uid, .gid = x->m.gid,
        .nlink = x->m.nlink, .rdev = x->m.rdev, .size = x->m.size, .ino = x->m.ino,
        .mtime_sec = x->m.mtime_sec, .ctime_sec = x->m.ctime_sec, .atime_sec = x->m.atime_sec,
        .mtime_nsec = x->m.mtime_nsec, .ctime_nsec = x->m.ctime_nsec,
        .atime_nsec = x->m.atime_nsec, .fsflags = x->m.fsflags, .projid = x->m.projid,
        .path_len = x->m.path_len, .link_len = x->m.link_len,
        .n_xattrs = x->xattrs ? x->xattrs->len : 0,
        .n_chunks = data->chunks ? data->chunks->len : 0,
        .n_ranges = data->ranges ? data->ranges->len : 0,
        .hardlink_back = back,
    };
    uint64_t rlen = record_size3(x, data);

    p = put(p, &rlen, 8);
    p = put(p, &r, sizeof(r));
    p = put(p, x->path, x->m.path_len);
    p = put(p, x->link, x->m.link_len);
    for (uint32_t k = 0; k < r.n_xattrs; k++) {
        const struct bxattr *a = &g_array_index(x->xattrs, struct bxattr, k);
        uint16_t nl = (uint16_t)a->name_len, zero = 0;
        uint32_t vl = (uint32_t)a->value_len;
        p = put(p, &nl, 2);
        p = put(p, &zero, 2);
        p = put(p, &vl, 4);
        p = put(p, a->name, a->name_len);
        p = put(p, a->value, a->value_len);
    }
    for (uint64_t k = 0; k < r.n_chunks; k++) {
        const struct vb_cat_chunk *ch = &g_array_index(data->chunks, struct vb_cat_chunk, k);
        p = put(p, ch, (ch->flags & VB_CATC_ZERO) ? CHUNK3_ZERO : CHUNK3);
    }
    return put(p, data->ranges ? data->ranges->data : NULL, r.n_ranges * RANGE3);
}

uint8_t *vb_catb_serialize(struct vb_catb *b, size_t *len, uint64_t *n_entries,
                           uint64_t *n_chunks, uint64_t *bytes)
{
    guint n = b->e->len;
    guint *order = g_new(guint, VB_MAX(n, 1u)), *rank = g_new(guint, VB_MAX(n, 1u));
    guint *data = g_new(guint, VB_MAX(n, 1u));
    uint64_t *hl = g_new(uint64_t, VB_MAX(n, 1u));
    uint64_t nc = 0, nx = 0, nr = 0, sum = 0;
    uint32_t ver = VB_CAT_VERSION;
    size_t total = HDR3;
    uint8_t *out, *p;

    for (guint i = 0; i < n; i++) {
        struct bentry *x = &g_array_index(b->e, struct bentry, i);
        order[i] = i;
        tidy_xattrs(x);
        tidy_ranges(x);
        nc += x->chunks ? x->chunks->len : 0;
        nr += x->ranges ? x->ranges->len : 0;
        nx += x->xattrs ? x->xattrs->len : 0;
        if (x->m.type == VB_FT_REG)
            sum += x->m.size;
    }
    qsort_r(order, n, sizeof(guint), by_path, b->e);
    for (guint i = 0; i < n; i++)
        rank[order[i]] = i;
    for (guint k = 0; k < n; k++) {
        uint64_t m = g_array_index(b->e, struct bentry, order[k]).m.hardlink;
        hl[k] = m == VB_CAT_NONE ? VB_CAT_NONE : rank[m];
        data[k] = order[k];
    }
    /* a hard link's master must come first in the new order */
    for (guint k = 0; k < n; k++) {
        if (hl[k] != VB_CAT_NONE && hl[k] > k) {
            uint64_t m = hl[k];
            guint t;
            /* make k the master: swap roles so that links point backwards */
            for (guint j = 0; j < n; j++)
                if (hl[j] == m)
                    hl[j] = k;
            hl[m] = k;
            hl[k] = VB_CAT_NONE;
            /* the data (chunks) and its layout belong to the master */
            t = data[k], data[k] = data[m], data[m] = (guint)t;
        }
    }
    for (guint k = 0; k < n; k++)
        total += 8 + record_size3(&g_array_index(b->e, struct bentry, order[k]),
                                  &g_array_index(b->e, struct bentry, data[k]));
    out = g_malloc0(total);
    memcpy(out, VB_CAT_MAGIC, 8);
    memcpy(out + 8, &ver, 4);
    memcpy(out + 16, &(uint64_t){ n }, 8);
    memcpy(out + 24, &nc, 8);
    memcpy(out + 32, &nx, 8);
    memcpy(out + 40, &nr, 8);
    p = out + HDR3;
    for (guint k = 0; k < n; k++)
        p = write_record3(p, &g_array_index(b->e, struct bentry, order[k]),
                          &g_array_index(b->e, struct bentry, data[k]),
                          hl[k] == VB_CAT_NONE ? 0 : k - hl[k]);
    g_assert((size_t)(p - out) == total);
    *len = total;
    *n_entries = n;
    *n_chunks = nc;
    *bytes = sum;
    g_free(order);
    g_free(rank);
    g_free(data);
    g_free(hl);
    return out;
}

/* ---- reading ------------------------------------------------------------------------- */

void vb_cat_free(struct vb_catalog *c)
{
    if (!c)
        return;
    g_free(c->data);
    g_free(c->converted);
    g_free(c);
}

/* COUNT items of SIZE bytes from *pos, inside LEN bytes: advances *pos. */
static bool section(uint64_t count, size_t size, size_t len, size_t *pos)
{
    if (count > (len - *pos) / size)
        return false;
    *pos += (size_t)count * size;
    return true;
}

static struct vb_cat_entry *convert_v1(const struct cat_entry_v1 *v, uint64_t n)
{
    struct vb_cat_entry *out = g_new0(struct vb_cat_entry, VB_MAX(n, 1u));

    for (uint64_t i = 0; i < n; i++) {
        const struct cat_entry_v1 *a = &v[i];
        struct vb_cat_entry *m = &out[i];
        struct vb_ts t;

        m->type = a->type;
        m->flags = a->flags;
        m->mode = a->mode;
        m->uid = a->uid;
        m->gid = a->gid;
        m->nlink = a->nlink;
        m->rdev = a->rdev;
        m->size = a->size;
        m->ino = a->ino;
        t = vb_ts_from_ns(a->mtime_ns);
        m->mtime_sec = t.sec, m->mtime_nsec = t.nsec;
        t = vb_ts_from_ns(a->ctime_ns);
        m->ctime_sec = t.sec, m->ctime_nsec = t.nsec;
        t = vb_ts_from_ns(a->atime_ns);
        m->atime_sec = t.sec, m->atime_nsec = t.nsec;
        m->path_off = a->path_off;
        m->path_len = a->path_len;
        m->link_off = a->link_off;
        m->link_len = a->link_len;
        m->first_chunk = a->first_chunk;
        m->n_chunks = a->n_chunks;
        m->hardlink = a->hardlink;
    }
    return out;
}

static int damaged(vb_error *e, const char *what, uint64_t i, const char *why)
{
    return vb_seterr(e, -EBADMSG, "%s: entry %llu is damaged (%s)", what, (unsigned long long)i,
                     why);
}

/* Every offset and length of entry I; its chunks, attributes and ranges. */
static int check_entry(const struct vb_catalog *c, uint64_t i, const char *what, vb_error *e)
{
    const struct vb_cat_entry *x = &c->e[i];
    uint64_t slen = c->str_len;

    if (x->path_off > slen || x->path_len > slen - x->path_off ||
        x->link_off > slen || x->link_len > slen - x->link_off)
        return damaged(e, what, i, "its name or link target lies outside the strings");
    if (x->first_chunk > c->n_chunks || x->n_chunks > c->n_chunks - x->first_chunk)
        return damaged(e, what, i, "its chunks lie outside the chunk table");
    if (x->hardlink != VB_CAT_NONE && x->hardlink >= i)
        return damaged(e, what, i, "a hard link to a later entry");
    for (uint64_t k = 0; k < x->n_chunks; k++) {
        const struct vb_cat_chunk *ch = &c->c[x->first_chunk + k];
        if (!ch->len || ch->len > VB_CHUNK_MAX || ch->offset > UINT64_MAX - ch->len ||
            (ch->flags & ~VB_CATC_ZERO) ||
            (k && ch->offset < c->c[x->first_chunk + k - 1].offset +
                               c->c[x->first_chunk + k - 1].len))
            return damaged(e, what, i, "its chunk list");
    }
    if (c->version < 2)
        return 0;
    if (x->mtime_nsec >= 1000000000u || x->ctime_nsec >= 1000000000u ||
        x->atime_nsec >= 1000000000u)
        return damaged(e, what, i, "nanoseconds beyond a second");
    if (x->fsflags & ~VB_FSFL_MASK)
        return damaged(e, what, i, "unknown inode flags");
    if (x->first_xattr > c->n_xattrs || x->n_xattrs > c->n_xattrs - x->first_xattr)
        return damaged(e, what, i, "its attributes lie outside the attribute table");
    for (uint32_t k = 0; k < x->n_xattrs; k++) {
        const struct vb_cat_xattr *a = &c->x[x->first_xattr + k];
        if (a->off > slen || a->name_len > slen - a->off ||
            a->value_len > slen - a->off - a->name_len || a->value_len > VB_MAX_XATTR_VALUE ||
            a->reserved)
            return damaged(e, what, i, "an attribute lies outside the strings");
        if (!vb_xattr_name_ok(c->str + a->off, a->name_len))
            return damaged(e, what, i, "an attribute name that is not kept");
        if (k) {
            const struct vb_cat_xattr *p = &c->x[x->first_xattr + k - 1];
            if (vb_name_cmp(c->str + p->off, p->name_len, c->str + a->off, a->name_len) >= 0)
                return damaged(e, what, i, "attribute names out of order");
        }
    }
    if (x->first_range > c->n_ranges || x->n_ranges > c->n_ranges - x->first_range)
        return damaged(e, what, i, "its ranges lie outside the range table");
    for (uint64_t k = 0; k < x->n_ranges; k++) {
        const struct vb_cat_range *r = &c->rg[x->first_range + k];
        if (!r->len || r->offset > UINT64_MAX - r->len ||
            (k && r->offset <= c->rg[x->first_range + k - 1].offset +
                               c->rg[x->first_range + k - 1].len - 1))
            return damaged(e, what, i, "its preallocated ranges");
    }
    return 0;
}

/* The tables a version 3 catalog converts to (one allocation, c->converted),
 * or NULL while only counting. */
struct tables3 {
    struct vb_cat_entry *e;
    struct vb_cat_chunk *c;
    struct vb_cat_xattr *x;
    struct vb_cat_range *rg;
};

/* LEN bytes at *pos, inside END: advances *pos. */
static bool take(size_t end, size_t *pos, uint64_t len)
{
    if (len > end - *pos)
        return false;
    *pos += (size_t)len;
    return true;
}

/* Walks the records of version 3 catalog C after its header: every length
 * and count against the bytes before anything is read, counting entries,
 * chunks, attributes and ranges; with T, fills the tables too (the strings
 * are the catalog's bytes: paths, link targets and attributes are read in
 * place). */
static int walk_v3(struct vb_catalog *c, const struct tables3 *t, uint64_t *n, uint64_t *nc,
                   uint64_t *nx, uint64_t *nr, const char *what, vb_error *e)
{
    const uint8_t *d = c->data;
    size_t pos = HDR3;

    *n = *nc = *nx = *nr = 0;
    while (pos < c->len) {
        uint64_t i = *n, rlen;
        struct cat_rec_v3 r;
        size_t q, end;

        if (c->len - pos < 8 + sizeof(r))
            return damaged(e, what, i, "its record is cut short");
        memcpy(&rlen, d + pos, 8);
        if (rlen < sizeof(r) || rlen > c->len - pos - 8)
            return damaged(e, what, i, "its record's length lies outside the catalog");
        q = pos + 8;
        end = q + (size_t)rlen;
        memcpy(&r, d + q, sizeof(r));
        q += sizeof(r);
        if (r.reserved8 || r.reserved16)
            return damaged(e, what, i, "reserved fields are not zero");
        if (r.hardlink_back > i)
            return damaged(e, what, i, "a hard link before the first entry");
        if (t) {
            struct vb_cat_entry *m = &t->e[i];
            m->type = r.type;
            m->mode = r.mode;
            m->uid = r.uid;
            m->gid = r.gid;
            m->nlink = r.nlink;
            m->rdev = r.rdev;
            m->size = r.size;
            m->ino = r.ino;
            m->mtime_sec = r.mtime_sec;
            m->ctime_sec = r.ctime_sec;
            m->atime_sec = r.atime_sec;
            m->mtime_nsec = r.mtime_nsec;
            m->ctime_nsec = r.ctime_nsec;
            m->atime_nsec = r.atime_nsec;
            m->fsflags = r.fsflags;
            m->projid = r.projid;
            m->path_len = r.path_len;
            m->path_off = q;
            m->link_len = r.link_len;
            m->link_off = q + r.path_len;
            m->n_xattrs = r.n_xattrs;
            m->first_xattr = *nx;
            m->n_chunks = r.n_chunks;
            m->first_chunk = *nc;
            m->n_ranges = r.n_ranges;
            m->first_range = *nr;
            m->hardlink = r.hardlink_back ? i - r.hardlink_back : VB_CAT_NONE;
        }
        if (!take(end, &q, r.path_len) || !take(end, &q, r.link_len))
            return damaged(e, what, i, "its name or link target lies outside its record");
        for (uint32_t k = 0; k < r.n_xattrs; k++) {
            uint16_t nl, res;
            uint32_t vl;
            size_t at = q;
            if (!take(end, &q, XATTR3))
                return damaged(e, what, i, "an attribute lies outside its record");
            memcpy(&nl, d + at, 2);
            memcpy(&res, d + at + 2, 2);
            memcpy(&vl, d + at + 4, 4);
            if (res || !take(end, &q, (uint64_t)nl + vl))
                return damaged(e, what, i, "an attribute lies outside its record");
            if (t)
                t->x[*nx] = (struct vb_cat_xattr){ .off = at + XATTR3, .name_len = nl,
                                                   .value_len = vl };
            (*nx)++;
        }
        for (uint64_t k = 0; k < r.n_chunks; k++) {
            struct vb_cat_chunk ch = { 0 };
            size_t at = q;
            if (!take(end, &q, CHUNK3_ZERO))
                return damaged(e, what, i, "its chunks lie outside its record");
            memcpy(&ch, d + at, CHUNK3_ZERO);
            if (ch.flags & ~VB_CATC_ZERO)
                return damaged(e, what, i, "its chunk list");
            if (!(ch.flags & VB_CATC_ZERO)) {
                if (!take(end, &q, CHUNK3 - CHUNK3_ZERO))
                    return damaged(e, what, i, "its chunks lie outside its record");
                memcpy(ch.id, d + at + CHUNK3_ZERO, sizeof(ch.id));
            }
            if (t)
                t->c[*nc] = ch;
            (*nc)++;
        }
        if (r.n_ranges > (end - q) / RANGE3)
            return damaged(e, what, i, "its ranges lie outside its record");
        if (t && r.n_ranges)
            memcpy(&t->rg[*nr], d + q, (size_t)r.n_ranges * RANGE3);
        q += (size_t)r.n_ranges * RANGE3;
        *nr += r.n_ranges;
        if (q != end)
            return damaged(e, what, i, "its record is longer than what it holds");
        pos = end;
        (*n)++;
    }
    return 0;
}

/* Version 3: the records checked and counted, the counts against the
 * header's, then converted to the tables of version 2. */
static int parse_v3(struct vb_catalog *c, const char *what, vb_error *e)
{
    uint64_t n, nc, nx, nr, reserved32 = 0;
    struct tables3 t;
    size_t size;
    uint8_t *block;
    int ret;

    memcpy(&reserved32, c->data + 12, 4);
    memcpy(&c->n, c->data + 16, 8);
    memcpy(&c->n_chunks, c->data + 24, 8);
    memcpy(&c->n_xattrs, c->data + 32, 8);
    memcpy(&c->n_ranges, c->data + 40, 8);
    if (reserved32)
        return vb_seterr(e, -EBADMSG, "%s: sizes are inconsistent", what);
    if ((ret = walk_v3(c, NULL, &n, &nc, &nx, &nr, what, e)))
        return ret;
    if (n != c->n || nc != c->n_chunks || nx != c->n_xattrs || nr != c->n_ranges)
        return vb_seterr(e, -EBADMSG, "%s: the header's counts are not what the catalog "
                         "holds (cut short?)", what);
    /* each counted item took bytes of the catalog: no overflow */
    size = (size_t)n * sizeof(struct vb_cat_entry) + (size_t)nc * sizeof(struct vb_cat_chunk) +
           (size_t)nx * sizeof(struct vb_cat_xattr) + (size_t)nr * sizeof(struct vb_cat_range);
    block = g_malloc0(VB_MAX(size, 1u));
    t.e = (struct vb_cat_entry *)block;
    t.c = (struct vb_cat_chunk *)(t.e + n);
    t.x = (struct vb_cat_xattr *)(t.c + nc);
    t.rg = (struct vb_cat_range *)(t.x + nx);
    c->converted = t.e;
    if ((ret = walk_v3(c, &t, &n, &nc, &nx, &nr, what, e)))
        return ret;
    c->e = t.e;
    c->c = t.c;
    c->x = t.x;
    c->rg = t.rg;
    c->str = (const char *)c->data;
    c->str_len = c->len;
    return 0;
}

int vb_cat_parse(uint8_t *data, size_t len, const char *what, struct vb_catalog **out,
                 vb_error *e)
{
    struct vb_catalog *c = g_new0(struct vb_catalog, 1);
    uint64_t slen, reserved = 0;
    uint32_t reserved32;
    size_t pos = HDR, esize;
    int ret;

    c->data = data;
    c->len = len;
    if (len < HDR3 || memcmp(c->data, VB_CAT_MAGIC, 8)) {
        ret = vb_seterr(e, -EBADMSG, "%s: not a catalog", what);
        goto fail;
    }
    memcpy(&c->version, c->data + 8, 4);
    if (c->version != 1 && c->version != 2 && c->version != 3) {
        ret = vb_seterr(e, -EBADMSG, "%s: catalog version %u is not known", what, c->version);
        goto fail;
    }
    if (c->version == 3) {
        if ((ret = parse_v3(c, what, e)))
            goto fail;
        goto check;
    }
    if (len < HDR) {
        ret = vb_seterr(e, -EBADMSG, "%s: not a catalog", what);
        goto fail;
    }
    memcpy(&c->n, c->data + 16, 8);
    memcpy(&c->n_chunks, c->data + 24, 8);
    memcpy(&slen, c->data + 32, 8);
    memcpy(&reserved32, c->data + 12, 4);
    if (c->version >= 2) {
        memcpy(&c->n_xattrs, c->data + 40, 8);
        memcpy(&c->n_ranges, c->data + 48, 8);
        memcpy(&reserved, c->data + 56, 8);
        reserved |= reserved32;
    }
    esize = c->version >= 2 ? sizeof(struct vb_cat_entry) : sizeof(struct cat_entry_v1);
    if (reserved || !section(c->n, esize, len, &pos) ||
        !section(c->n_chunks, sizeof(struct vb_cat_chunk), len, &pos) ||
        !section(c->n_xattrs, sizeof(struct vb_cat_xattr), len, &pos) ||
        !section(c->n_ranges, sizeof(struct vb_cat_range), len, &pos) || slen != len - pos) {
        ret = vb_seterr(e, -EBADMSG, "%s: sizes are inconsistent", what);
        goto fail;
    }
    pos = HDR;
    if (c->version >= 2) {
        c->e = (const struct vb_cat_entry *)(c->data + pos);
    } else {
        c->converted = convert_v1((const struct cat_entry_v1 *)(c->data + pos), c->n);
        c->e = c->converted;
    }
    pos += (size_t)c->n * esize;
    c->c = (const struct vb_cat_chunk *)(c->data + pos);
    pos += (size_t)c->n_chunks * sizeof(struct vb_cat_chunk);
    c->x = (const struct vb_cat_xattr *)(c->data + pos);
    pos += (size_t)c->n_xattrs * sizeof(struct vb_cat_xattr);
    c->rg = (const struct vb_cat_range *)(c->data + pos);
    pos += (size_t)c->n_ranges * sizeof(struct vb_cat_range);
    c->str = (const char *)(c->data + pos);
    c->str_len = slen;
check:
    for (uint64_t i = 0; i < c->n; i++)
        if ((ret = check_entry(c, i, what, e)))
            goto fail;
    *out = c;
    return 0;
fail:
    vb_cat_free(c);
    return ret;
}

int vb_cat_load(const char *path, const char *want_sha256, struct vb_catalog **out, vb_error *e)
{
    char *data;
    size_t len;
    /* a catalog is a file of its snapshot, never a symlink to another */
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC), ret;

    if (fd < 0)
        ret = vb_seterr(e, -errno, "open %s: %s", path, errno == ELOOP ? "a symlink, which a "
                        "repository never holds (refused: tampered with?)" : strerror(errno));
    else
        ret = vb_read_fd(fd, path, &data, &len, (size_t)1 << 36, e);
    if (ret)
        return ret;
    if (want_sha256) {
        uint8_t sum[32];
        char hex[65];
        SHA256((const uint8_t *)data, len, sum);
        vb_hex(sum, 32, hex);
        if (strcmp(hex, want_sha256)) {
            g_free(data);
            return vb_seterr(e, -EBADMSG, "%s is damaged (SHA-256 mismatch)", path);
        }
    }
    return vb_cat_parse((uint8_t *)data, len, path, out, e);
}

uint64_t vb_cat_data_bytes(const struct vb_catalog *c, uint64_t i)
{
    const struct vb_cat_entry *x = &c->e[i];
    uint64_t sum = 0;

    for (uint64_t k = 0; k < x->n_chunks; k++)
        if (!(c->c[x->first_chunk + k].flags & VB_CATC_ZERO))
            sum += c->c[x->first_chunk + k].len;
    return sum;
}

/* first index whose path is >= (p, n) */
static uint64_t lower_bound(const struct vb_catalog *c, const char *p, size_t n)
{
    uint64_t lo = 0, hi = c->n;

    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        size_t ml;
        const char *mp = vb_cat_path(c, mid, &ml);
        if (vb_name_cmp(mp, ml, p, n) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

uint64_t vb_cat_find(const struct vb_catalog *c, const char *path, size_t len)
{
    uint64_t i = lower_bound(c, path, len);
    size_t ml;
    const char *mp;

    if (i >= c->n)
        return VB_CAT_NONE;
    mp = vb_cat_path(c, i, &ml);
    return vb_name_cmp(mp, ml, path, len) == 0 ? i : VB_CAT_NONE;
}

void vb_cat_subtree(const struct vb_catalog *c, const char *path, size_t len, uint64_t *self,
                    uint64_t *first, uint64_t *end)
{
    char *pre, *next;

    if (len == 0) {
        *self = VB_CAT_NONE;
        *first = 0;
        *end = c->n;
        return;
    }
    *self = vb_cat_find(c, path, len);
    /* descendants: paths starting with "path/": from "path/" up to "path0" */
    pre = g_malloc(len + 1);
    memcpy(pre, path, len);
    pre[len] = '/';
    next = g_malloc(len + 1);
    memcpy(next, path, len);
    next[len] = '/' + 1;
    *first = lower_bound(c, pre, len + 1);
    *end = lower_bound(c, next, len + 1);
    g_free(pre);
    g_free(next);
}

uint64_t vb_cat_chunk_at(const struct vb_catalog *c, uint64_t i, uint64_t off)
{
    const struct vb_cat_entry *x = &c->e[i];
    uint64_t lo = 0, hi = x->n_chunks;

    /* first chunk whose end is > off */
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        const struct vb_cat_chunk *ch = &c->c[x->first_chunk + mid];
        if (ch->offset + ch->len <= off)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < x->n_chunks ? x->first_chunk + lo : VB_CAT_NONE;
}

uint64_t vb_cat_range_at(const struct vb_catalog *c, uint64_t i, uint64_t off)
{
    const struct vb_cat_entry *x = &c->e[i];
    uint64_t lo = 0, hi = x->n_ranges;

    /* first range whose end is > off */
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        const struct vb_cat_range *r = &c->rg[x->first_range + mid];
        if (r->offset + r->len <= off)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < x->n_ranges ? x->first_range + lo : VB_CAT_NONE;
}

/* ---- rebuilding -------------------------------------------------------------------------- */

int vb_catb_from_catalog(const struct vb_catalog *c, vb_cat_chunk_fn fn, void *opaque,
                         struct vb_catb **out, vb_error *e)
{
    struct vb_catb *b = vb_catb_new();
    int ret;

    /* in catalog order, so entry i is the builder's i and hard links keep
     * their indexes (they point backwards: vb_cat_parse checked it) */
    for (uint64_t i = 0; i < c->n; i++) {
        const struct vb_cat_entry *x = &c->e[i];
        struct vb_cat_entry m = *x;
        size_t pl, ll;
        const char *path = vb_cat_path(c, i, &pl), *link = vb_cat_link(c, i, &ll);

        m.reserved = 0;
        vb_catb_add(b, &m, path, pl, link, ll);
        for (uint32_t k = 0; k < x->n_xattrs; k++) {
            const char *name;
            const uint8_t *value;
            size_t nl, vl;
            vb_cat_xattr(c, i, k, &name, &nl, &value, &vl);
            vb_catb_add_xattr(b, i, name, nl, value, vl);
        }
        for (uint64_t k = 0; k < x->n_chunks; k++) {
            struct vb_cat_chunk ch = c->c[x->first_chunk + k];
            if (ch.flags & VB_CATC_ZERO)
                memset(ch.id, 0, sizeof(ch.id));        /* nothing stored: no id */
            else if (fn && (ret = fn(opaque, i, &ch, e)))
                goto fail;
            vb_catb_add_chunk(b, i, &ch);
        }
        for (uint64_t k = 0; k < x->n_ranges; k++)
            vb_catb_add_range(b, i, c->rg[x->first_range + k].offset,
                              c->rg[x->first_range + k].len);
        if (x->hardlink != VB_CAT_NONE)
            vb_catb_set_hardlink(b, i, x->hardlink);
    }
    *out = b;
    return 0;
fail:
    vb_catb_free(b);
    return ret;
}
