/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "catalog.h"

#include <fcntl.h>
#include <glib.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(sizeof(struct vb_cat_entry) == 112, "catalog entry layout");
_Static_assert(sizeof(struct vb_cat_chunk) == 48, "catalog chunk layout");
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the catalog is little-endian");

#define HDR 64

struct bentry {
    struct vb_cat_entry m;
    char *path;
    char *link;
    GArray *chunks;          /* struct vb_cat_chunk, or NULL */
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
    x.m.hardlink = VB_CAT_NONE;
    x.path = g_strndup(path, path_len);
    x.link = link_len ? g_strndup(link, link_len) : NULL;
    g_array_append_val(b->e, x);
    return b->e->len - 1;
}

void vb_catb_add_chunk(struct vb_catb *b, uint64_t idx, const struct vb_cat_chunk *c)
{
    struct bentry *x = &g_array_index(b->e, struct bentry, idx);

    if (!x->chunks)
        x->chunks = g_array_new(FALSE, FALSE, sizeof(struct vb_cat_chunk));
    g_array_append_vals(x->chunks, c, 1);
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

static int path_cmp(const char *a, size_t an, const char *b, size_t bn)
{
    int r = memcmp(a, b, VB_MIN(an, bn));

    if (r)
        return r;
    return an < bn ? -1 : an > bn ? 1 : 0;
}

/* qsort_r: several jobs' catalogs are serialized at once, on worker threads */
static int by_path(const void *pa, const void *pb, void *src)
{
    const struct bentry *a = &g_array_index((GArray *)src, struct bentry, *(const guint *)pa);
    const struct bentry *b = &g_array_index((GArray *)src, struct bentry, *(const guint *)pb);

    return path_cmp(a->path, a->m.path_len, b->path, b->m.path_len);
}

uint8_t *vb_catb_serialize(struct vb_catb *b, size_t *len, uint64_t *n_entries,
                           uint64_t *n_chunks, uint64_t *bytes)
{
    guint n = b->e->len;
    guint *order = g_new(guint, VB_MAX(n, 1u)), *rank = g_new(guint, VB_MAX(n, 1u));
    uint64_t nc = 0, slen = 0, sum = 0, ci = 0, so = 0;
    uint8_t *out, *p;
    struct vb_cat_entry *ents;
    struct vb_cat_chunk *chunks;
    char *str;

    for (guint i = 0; i < n; i++) {
        struct bentry *x = &g_array_index(b->e, struct bentry, i);
        order[i] = i;
        nc += x->chunks ? x->chunks->len : 0;
        slen += x->m.path_len + x->m.link_len;
        if (x->m.type == 1 /* VB_FT_REG */)
            sum += x->m.size;
    }
    qsort_r(order, n, sizeof(guint), by_path, b->e);
    for (guint i = 0; i < n; i++)
        rank[order[i]] = i;

    *len = HDR + (size_t)n * sizeof(struct vb_cat_entry) + nc * sizeof(struct vb_cat_chunk) + slen;
    out = g_malloc0(*len);
    memcpy(out, VB_CAT_MAGIC, 8);
    p = out + 8;
    uint32_t ver = 1;
    memcpy(p, &ver, 4);
    memcpy(out + 16, &(uint64_t){ n }, 8);
    memcpy(out + 24, &nc, 8);
    memcpy(out + 32, &slen, 8);
    ents = (struct vb_cat_entry *)(out + HDR);
    chunks = (struct vb_cat_chunk *)(ents + n);
    str = (char *)(chunks + nc);
    for (guint k = 0; k < n; k++) {
        struct bentry *x = &g_array_index(b->e, struct bentry, order[k]);
        struct vb_cat_entry *m = &ents[k];
        *m = x->m;
        m->path_off = so;
        memcpy(str + so, x->path, x->m.path_len);
        so += x->m.path_len;
        m->link_off = so;
        if (x->m.link_len)
            memcpy(str + so, x->link, x->m.link_len);
        so += x->m.link_len;
        m->first_chunk = ci;
        m->n_chunks = x->chunks ? x->chunks->len : 0;
        if (m->n_chunks)
            memcpy(&chunks[ci], x->chunks->data, m->n_chunks * sizeof(struct vb_cat_chunk));
        ci += m->n_chunks;
        if (m->hardlink != VB_CAT_NONE)
            m->hardlink = rank[m->hardlink];
    }
    /* a hard link's master must come first in the new order */
    for (guint k = 0; k < n; k++) {
        if (ents[k].hardlink != VB_CAT_NONE && ents[k].hardlink > k) {
            uint64_t m = ents[k].hardlink;
            /* make k the master: swap roles so that links point backwards */
            for (guint j = 0; j < n; j++)
                if (ents[j].hardlink == m)
                    ents[j].hardlink = k;
            ents[m].hardlink = k;
            ents[k].hardlink = VB_CAT_NONE;
            /* the data (chunks) belongs to the master */
            uint64_t fc = ents[k].first_chunk, ncnk = ents[k].n_chunks;
            ents[k].first_chunk = ents[m].first_chunk;
            ents[k].n_chunks = ents[m].n_chunks;
            ents[m].first_chunk = fc;
            ents[m].n_chunks = ncnk;
        }
    }
    *n_entries = n;
    *n_chunks = nc;
    *bytes = sum;
    g_free(order);
    g_free(rank);
    return out;
}

void vb_cat_free(struct vb_catalog *c)
{
    if (!c)
        return;
    g_free(c->data);
    g_free(c);
}

int vb_cat_load(const char *path, const char *want_sha256, struct vb_catalog **out, vb_error *e)
{
    struct vb_catalog *c = g_new0(struct vb_catalog, 1);
    uint64_t slen;
    char *data;
    size_t len;
    /* a catalog is a file of its snapshot, never a symlink to another */
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC), ret;

    if (fd < 0)
        ret = vb_seterr(e, -errno, "open %s: %s", path, errno == ELOOP ? "a symlink, which a "
                        "repository never holds (refused: tampered with?)" : strerror(errno));
    else
        ret = vb_read_fd(fd, path, &data, &len, (size_t)1 << 36, e);
    if (ret) {
        g_free(c);
        return ret;
    }
    c->data = (uint8_t *)data;
    c->len = len;
    if (want_sha256) {
        uint8_t sum[32];
        char hex[65];
        SHA256(c->data, len, sum);
        vb_hex(sum, 32, hex);
        if (strcmp(hex, want_sha256)) {
            ret = vb_seterr(e, -EBADMSG, "%s is damaged (SHA-256 mismatch)", path);
            goto fail;
        }
    }
    if (len < HDR || memcmp(c->data, VB_CAT_MAGIC, 8)) {
        ret = vb_seterr(e, -EBADMSG, "%s: not a catalog", path);
        goto fail;
    }
    memcpy(&c->n, c->data + 16, 8);
    memcpy(&c->n_chunks, c->data + 24, 8);
    memcpy(&slen, c->data + 32, 8);
    if (c->n > len / sizeof(struct vb_cat_entry) || c->n_chunks > len / sizeof(struct vb_cat_chunk) ||
        slen > len ||
        HDR + c->n * sizeof(struct vb_cat_entry) + c->n_chunks * sizeof(struct vb_cat_chunk) + slen != len) {
        ret = vb_seterr(e, -EBADMSG, "%s: sizes are inconsistent", path);
        goto fail;
    }
    c->e = (const struct vb_cat_entry *)(c->data + HDR);
    c->c = (const struct vb_cat_chunk *)(c->e + c->n);
    c->str = (const char *)(c->c + c->n_chunks);
    c->str_len = slen;
    for (uint64_t i = 0; i < c->n; i++) {
        const struct vb_cat_entry *x = &c->e[i];
        if (x->path_off > slen || x->path_len > slen - x->path_off ||
            x->link_off > slen || x->link_len > slen - x->link_off ||
            x->first_chunk > c->n_chunks || x->n_chunks > c->n_chunks - x->first_chunk ||
            (x->hardlink != VB_CAT_NONE && x->hardlink >= i)) {
            ret = vb_seterr(e, -EBADMSG, "%s: entry %llu is damaged", path, (unsigned long long)i);
            goto fail;
        }
        for (uint64_t k = 0; k < x->n_chunks; k++) {
            const struct vb_cat_chunk *ch = &c->c[x->first_chunk + k];
            if (!ch->len || ch->len > VB_CHUNK_MAX || ch->offset > UINT64_MAX - ch->len ||
                (k && ch->offset < c->c[x->first_chunk + k - 1].offset +
                                   c->c[x->first_chunk + k - 1].len)) {
                ret = vb_seterr(e, -EBADMSG, "%s: chunk list of entry %llu is damaged", path,
                                (unsigned long long)i);
                goto fail;
            }
        }
    }
    *out = c;
    return 0;
fail:
    vb_cat_free(c);
    return ret;
}

/* first index whose path is >= (p, n) */
static uint64_t lower_bound(const struct vb_catalog *c, const char *p, size_t n)
{
    uint64_t lo = 0, hi = c->n;

    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        size_t ml;
        const char *mp = vb_cat_path(c, mid, &ml);
        if (path_cmp(mp, ml, p, n) < 0)
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
    return path_cmp(mp, ml, path, len) == 0 ? i : VB_CAT_NONE;
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
