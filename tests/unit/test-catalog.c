/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of the files catalog (hostd/lib/catalog.c), version 2: built
 * and read back field by field (names as bytes, times beyond 2262 and
 * before 1970, extended attributes, inode flags, project ids, chunks,
 * written zeros, preallocated ranges, hard links whose holder moves when
 * sorted); version 1 catalogs still read; every offset, length and count
 * checked on load: truncation, lying counts, fields pointing outside,
 * random flips; a parsed catalog rebuilt (vb_catb_from_catalog) with its
 * chunk ids mapped, and a version 1 one rebuilt as version 2.
 */
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "vbackup/protolib.h"

static void chunk(struct vb_catb *b, uint64_t i, uint64_t off, uint32_t len, uint8_t fill,
                  uint32_t flags)
{
    struct vb_cat_chunk c = { .offset = off, .len = len, .flags = flags };

    if (!(flags & VB_CATC_ZERO))
        memset(c.id, fill, sizeof(c.id));
    vb_catb_add_chunk(b, i, &c);
}

/* A catalog with one of everything; *len its size. */
static uint8_t *build(size_t *len)
{
    struct vb_catb *b = vb_catb_new();
    struct vb_cat_entry m = { .type = VB_FT_DIR, .mode = 0755 };
    uint64_t ne, nc, bytes, i, a, z;
    uint8_t *out;
    char big[70000];

    vb_catb_add(b, &m, "", 0, NULL, 0);
    m.fsflags = VB_FSFL_PROJINHERIT;
    m.projid = 9;
    i = vb_catb_add(b, &m, "d", 1, NULL, 0);
    vb_catb_add_xattr(b, i, "system.posix_acl_default", 24, "\x02\0\0\0\x01\0\x07\0", 8);
    /* a file with everything, added before the folder that holds it sorts */
    memset(&m, 0, sizeof(m));
    m.type = VB_FT_REG;
    m.mode = 04750;
    m.uid = 1000;
    m.size = 3 << 20;
    m.nlink = 2;
    m.mtime_sec = 15000000000LL;     /* 2445 */
    m.mtime_nsec = 999999999;
    m.atime_sec = -300000000;        /* 1960 */
    m.atime_nsec = 5;
    m.fsflags = VB_FSFL_IMMUTABLE | VB_FSFL_NODUMP;
    m.projid = 9;
    z = vb_catb_add(b, &m, "d/z-holder", 10, NULL, 0);
    vb_catb_add_xattr(b, z, "user.b", 6, "2", 1);
    vb_catb_add_xattr(b, z, "security.capability", 19, "\x01\0\0\x02", 4);
    vb_catb_add_xattr(b, z, "user.a", 6, "old", 3);
    vb_catb_add_xattr(b, z, "user.a", 6, "\0\xff", 2);      /* the last value counts */
    chunk(b, z, 0, 4096, 0xaa, 0);
    chunk(b, z, 4096, 8192, 0, VB_CATC_ZERO);
    chunk(b, z, 1 << 20, 4096, 0xbb, 0);
    vb_catb_add_range(b, z, 4 << 20, 1 << 20);               /* past the size */
    vb_catb_add_range(b, z, 65536, 4096);
    vb_catb_add_range(b, z, 69632, 4096);                    /* touches: merged */
    vb_catb_add_range(b, z, 66000, 100);                     /* inside: merged */
    /* its hard link sorts first: the data moves to it */
    m.fsflags = 0;
    a = vb_catb_add(b, &m, "d/a-link", 8, NULL, 0);
    vb_catb_set_hardlink(b, a, z);
    (void)a;
    /* names and targets as bytes, a path longer than PATH_MAX */
    memset(&m, 0, sizeof(m));
    m.type = VB_FT_SYMLINK;
    i = vb_catb_add(b, &m, "d/\xff\xfe", 4, "\x80\x81 target", 9);
    vb_catb_add_xattr(b, i, "trusted.t", 9, "", 0);
    memset(big, 'x', sizeof(big));
    big[0] = 'd';
    for (size_t k = 1; k < 5000; k += 100)
        big[k] = '/';
    m.type = VB_FT_FIFO;
    vb_catb_add(b, &m, big, 5000, NULL, 0);
    out = vb_catb_serialize(b, len, &ne, &nc, &bytes);
    g_assert_cmpuint(ne, ==, 6);
    g_assert_cmpuint(nc, ==, 3);
    g_assert_cmpuint(bytes, ==, 2 * (3u << 20));
    vb_catb_free(b);
    return out;
}

static struct vb_catalog *parse(uint8_t *data, size_t len, int *ret)
{
    struct vb_catalog *c = NULL;
    vb_error e = { 0 };

    *ret = vb_cat_parse(data, len, "test", &c, &e);
    return c;
}

static void test_roundtrip(void)
{
    size_t len, l;
    uint8_t *data = build(&len);
    int ret;
    struct vb_catalog *c = parse(data, len, &ret);
    const struct vb_cat_entry *h, *k;
    const char *name, *p;
    const uint8_t *v;
    size_t nl, vl;
    uint64_t hi, ki;

    g_assert_cmpint(ret, ==, 0);
    g_assert_cmpuint(c->version, ==, 2);
    g_assert_cmpuint(c->n, ==, 6);
    /* sorted by bytes: "", "d", "d/a-link", "d/xxx...", "d/z-holder", "d/\xff\xfe" */
    p = vb_cat_path(c, 5, &l);
    g_assert_cmpmem(p, l, "d/\xff\xfe", 4);
    p = vb_cat_link(c, 5, &l);
    g_assert_cmpmem(p, l, "\x80\x81 target", 9);
    g_assert_cmpuint(c->e[5].n_xattrs, ==, 1);
    vb_cat_xattr(c, 5, 0, &name, &nl, &v, &vl);
    g_assert_cmpmem(name, nl, "trusted.t", 9);
    g_assert_cmpuint(vl, ==, 0);
    g_assert_cmpuint(c->e[3].path_len, ==, 5000);
    /* the hard link that sorts first holds the data now */
    hi = vb_cat_find(c, "d/a-link", 8);
    ki = vb_cat_find(c, "d/z-holder", 10);
    g_assert_cmpuint(hi, ==, 2);
    g_assert_cmpuint(ki, ==, 4);
    h = &c->e[hi];
    k = &c->e[ki];
    g_assert_cmpuint(h->hardlink, ==, VB_CAT_NONE);
    g_assert_cmpuint(k->hardlink, ==, hi);
    g_assert_cmpuint(h->n_chunks, ==, 3);
    g_assert_cmpuint(k->n_chunks, ==, 0);
    g_assert_cmpuint(h->n_ranges, ==, 2);
    g_assert_cmpuint(c->rg[h->first_range].offset, ==, 65536);
    g_assert_cmpuint(c->rg[h->first_range].len, ==, 8192);
    g_assert_cmpuint(c->rg[h->first_range + 1].offset, ==, 4 << 20);
    g_assert_cmpuint(vb_cat_data_bytes(c, hi), ==, 8192);
    g_assert_true(c->c[h->first_chunk + 1].flags & VB_CATC_ZERO);
    g_assert_cmpuint(vb_cat_chunk_at(c, hi, 5000), ==, h->first_chunk + 1);
    g_assert_cmpuint(vb_cat_chunk_at(c, hi, 13000), ==, h->first_chunk + 2);
    g_assert_cmpuint(vb_cat_chunk_at(c, hi, 2 << 20), ==, VB_CAT_NONE);
    g_assert_cmpuint(vb_cat_range_at(c, hi, 70000), ==, h->first_range);
    g_assert_cmpuint(vb_cat_range_at(c, hi, 80000), ==, h->first_range + 1);
    g_assert_cmpuint(vb_cat_range_at(c, hi, 6 << 20), ==, VB_CAT_NONE);
    /* times, flags, attributes (sorted, the last value of a name) */
    g_assert_cmpint(k->mtime_sec, ==, 15000000000LL);
    g_assert_cmpuint(k->mtime_nsec, ==, 999999999);
    g_assert_cmpint(k->atime_sec, ==, -300000000);
    g_assert_cmpuint(k->atime_nsec, ==, 5);
    g_assert_cmpuint(k->fsflags, ==, VB_FSFL_IMMUTABLE | VB_FSFL_NODUMP);
    g_assert_cmpuint(k->projid, ==, 9);
    g_assert_cmpuint(k->mode, ==, 04750);
    g_assert_cmpuint(k->n_xattrs, ==, 3);
    vb_cat_xattr(c, ki, 0, &name, &nl, &v, &vl);
    g_assert_cmpmem(name, nl, "security.capability", 19);
    vb_cat_xattr(c, ki, 1, &name, &nl, &v, &vl);
    g_assert_cmpmem(name, nl, "user.a", 6);
    g_assert_cmpmem(v, vl, "\0\xff", 2);
    vb_cat_xattr(c, ki, 2, &name, &nl, &v, &vl);
    g_assert_cmpmem(name, nl, "user.b", 6);
    g_assert_cmpuint(c->e[1].projid, ==, 9);
    vb_cat_free(c);
}

/* A version 1 catalog (as vbackupd wrote before) reads as version 2. */
static void test_version1(void)
{
    struct {
        uint8_t type, flags;
        uint16_t reserved;
        uint32_t mode, uid, gid, nlink, rdev;
        uint64_t size, ino;
        int64_t mtime_ns, ctime_ns, atime_ns;
        uint64_t path_off;
        uint32_t path_len, link_len;
        uint64_t link_off, first_chunk, n_chunks, hardlink;
    } e1[2];
    struct vb_cat_chunk ch = { .offset = 0, .len = 10 };
    size_t len = 64 + sizeof(e1) + sizeof(ch) + 6;
    uint8_t *d = g_malloc0(len);
    uint32_t ver = 1;
    uint64_t n = 2, nc = 1, sl = 6;
    int ret;
    struct vb_catalog *c;

    G_STATIC_ASSERT(sizeof(e1[0]) == 112);
    memset(e1, 0, sizeof(e1));
    e1[0].type = VB_FT_DIR;
    e1[0].path_len = 1;
    e1[0].mtime_ns = -1500000000;
    e1[0].hardlink = VB_CAT_NONE;
    e1[1].type = VB_FT_REG;
    e1[1].size = 10;
    e1[1].path_off = 1;
    e1[1].path_len = 5;
    e1[1].link_off = 6;
    e1[1].n_chunks = 1;
    e1[1].mtime_ns = 1700000000123456789LL;
    e1[1].hardlink = VB_CAT_NONE;
    memcpy(d, "VBCAT01\0", 8);
    memcpy(d + 8, &ver, 4);
    memcpy(d + 16, &n, 8);
    memcpy(d + 24, &nc, 8);
    memcpy(d + 32, &sl, 8);
    memcpy(d + 64, e1, sizeof(e1));
    memcpy(d + 64 + sizeof(e1), &ch, sizeof(ch));
    memcpy(d + 64 + sizeof(e1) + sizeof(ch), "aa/bc", 5);
    c = parse(d, len - 1, &ret);
    g_assert_cmpint(ret, !=, 0);             /* strings one byte short */
    d = g_malloc0(len);
    memcpy(d, "VBCAT01\0", 8);
    memcpy(d + 8, &ver, 4);
    memcpy(d + 16, &n, 8);
    memcpy(d + 24, &nc, 8);
    memcpy(d + 32, &sl, 8);
    memcpy(d + 64, e1, sizeof(e1));
    memcpy(d + 64 + sizeof(e1), &ch, sizeof(ch));
    memcpy(d + 64 + sizeof(e1) + sizeof(ch), "aa/bcx", 6);
    c = parse(d, len, &ret);
    g_assert_cmpint(ret, ==, 0);
    g_assert_cmpuint(c->version, ==, 1);
    g_assert_cmpint(c->e[0].mtime_sec, ==, -2);
    g_assert_cmpuint(c->e[0].mtime_nsec, ==, 500000000);
    g_assert_cmpint(c->e[1].mtime_sec, ==, 1700000000);
    g_assert_cmpuint(c->e[1].mtime_nsec, ==, 123456789);
    g_assert_cmpuint(c->e[1].n_xattrs, ==, 0);
    g_assert_cmpuint(c->e[1].n_ranges, ==, 0);
    g_assert_cmpuint(vb_cat_data_bytes(c, 1), ==, 10);
    /* rebuilt, it is a version 2 catalog of the same tree */
    {
        struct vb_catb *b = NULL;
        struct vb_catalog *c2;
        vb_error e = { 0 };
        uint64_t ne, nc2, bytes;
        size_t l2, pl;
        const char *p;
        uint8_t *d2;

        g_assert_cmpint(vb_catb_from_catalog(c, NULL, NULL, &b, &e), ==, 0);
        d2 = vb_catb_serialize(b, &l2, &ne, &nc2, &bytes);
        vb_catb_free(b);
        g_assert_cmpuint(ne, ==, 2);
        g_assert_cmpuint(nc2, ==, 1);
        g_assert_cmpuint(bytes, ==, 10);
        c2 = parse(d2, l2, &ret);
        g_assert_cmpint(ret, ==, 0);
        g_assert_cmpuint(c2->version, ==, 2);
        g_assert_cmpint(c2->e[0].mtime_sec, ==, -2);
        g_assert_cmpuint(c2->e[0].mtime_nsec, ==, 500000000);
        g_assert_cmpint(c2->e[1].mtime_sec, ==, 1700000000);
        g_assert_cmpuint(c2->e[1].mtime_nsec, ==, 123456789);
        p = vb_cat_path(c2, 1, &pl);
        g_assert_cmpmem(p, pl, "a/bcx", 5);
        g_assert_cmpuint(c2->e[1].size, ==, 10);
        g_assert_cmpuint(c2->e[1].n_chunks, ==, 1);
        g_assert_cmpmem(&c2->c[0], sizeof(ch), &ch, sizeof(ch));
        vb_cat_free(c2);
    }
    vb_cat_free(c);
}

/* The map of test_rebuild: every data chunk's id turned into another. */
static int flip_id(void *opaque, uint64_t idx, struct vb_cat_chunk *ch, vb_error *e)
{
    unsigned *calls = opaque;

    (void)idx;
    (void)e;
    g_assert_false(ch->flags & VB_CATC_ZERO);
    for (size_t k = 0; k < sizeof(ch->id); k++)
        ch->id[k] ^= 0x5a;
    (*calls)++;
    return 0;
}

static int refuse(void *opaque, uint64_t idx, struct vb_cat_chunk *ch, vb_error *e)
{
    (void)opaque;
    (void)ch;
    return vb_seterr(e, -EIO, "chunk of entry %llu unreadable", (unsigned long long)idx);
}

/* Two catalogs of LEN bytes and N entries are the same but for where an
 * entry without chunks or ranges points in those tables (the builder points
 * it at the next one; a hard link's holder that moved when sorted took its
 * place from the link). */
static void same_catalog(const uint8_t *a, const uint8_t *b, size_t len, uint64_t n)
{
    size_t tables = 64 + n * sizeof(struct vb_cat_entry);

    g_assert_cmpmem(a, 64, b, 64);
    for (uint64_t i = 0; i < n; i++) {
        struct vb_cat_entry x, y;
        memcpy(&x, a + 64 + i * sizeof(x), sizeof(x));
        memcpy(&y, b + 64 + i * sizeof(y), sizeof(y));
        if (!x.n_chunks && !y.n_chunks)
            x.first_chunk = y.first_chunk;
        if (!x.n_ranges && !y.n_ranges)
            x.first_range = y.first_range;
        g_assert_cmpmem(&x, sizeof(x), &y, sizeof(y));
    }
    g_assert_cmpmem(a + tables, len - tables, b + tables, len - tables);
}

/* vb_catb_from_catalog: what the builder made comes back the same (and,
 * rebuilt again, the same bytes exactly); the chunk ids are what the map
 * makes of them (written zeros keep none); a failing map stops it; names
 * keep every byte. */
static void test_rebuild(void)
{
    size_t len, len2, len3, pl;
    uint8_t *data = build(&len), *again, *twice;
    int ret;
    struct vb_catalog *c = parse(g_memdup2(data, len), len, &ret), *c2;
    struct vb_catb *b = NULL;
    vb_error e = { 0 };
    uint64_t ne, nc, bytes;
    unsigned calls = 0;

    g_assert_cmpint(ret, ==, 0);
    g_assert_cmpint(vb_catb_from_catalog(c, NULL, NULL, &b, &e), ==, 0);
    again = vb_catb_serialize(b, &len2, &ne, &nc, &bytes);
    vb_catb_free(b);
    g_assert_cmpuint(len2, ==, len);
    g_assert_cmpuint(bytes, ==, 2 * (3u << 20));
    same_catalog(again, data, len, c->n);
    /* and once more: the same bytes exactly */
    c2 = parse(again, len2, &ret);
    g_assert_cmpint(ret, ==, 0);
    g_assert_cmpint(vb_catb_from_catalog(c2, NULL, NULL, &b, &e), ==, 0);
    twice = vb_catb_serialize(b, &len3, &ne, &nc, &bytes);
    vb_catb_free(b);
    g_assert_cmpmem(twice, len3, c2->data, c2->len);
    g_free(twice);
    vb_cat_free(c2);

    g_assert_cmpint(vb_catb_from_catalog(c, flip_id, &calls, &b, &e), ==, 0);
    g_assert_cmpuint(calls, ==, 2);
    again = vb_catb_serialize(b, &len2, &ne, &nc, &bytes);
    vb_catb_free(b);
    g_assert_cmpuint(len2, ==, len);
    c2 = parse(again, len2, &ret);
    g_assert_cmpint(ret, ==, 0);
    g_assert_cmpuint(c2->n, ==, c->n);
    g_assert_cmpuint(c2->n_chunks, ==, c->n_chunks);
    for (uint64_t k = 0; k < c->n_chunks; k++) {
        struct vb_cat_chunk want = c->c[k];
        if (!(want.flags & VB_CATC_ZERO))
            for (size_t b2 = 0; b2 < sizeof(want.id); b2++)
                want.id[b2] ^= 0x5a;
        g_assert_cmpmem(&c2->c[k], sizeof(want), &want, sizeof(want));
    }
    /* everything but the ids as before */
    memcpy((uint8_t *)c2->c, c->c, c->n_chunks * sizeof(struct vb_cat_chunk));
    same_catalog(c2->data, data, len, c->n);
    vb_cat_free(c2);

    b = NULL;
    g_assert_cmpint(vb_catb_from_catalog(c, refuse, NULL, &b, &e), ==, -EIO);
    g_assert_null(b);
    g_assert_nonnull(strstr(e.msg, "unreadable"));
    vb_cat_free(c);
    g_free(data);

    /* a NUL inside a name is a byte like the others */
    {
        struct vb_cat_entry m = { .type = VB_FT_REG, .mode = 0644 };
        b = vb_catb_new();
        vb_catb_add(b, &m, "a\0b", 3, "x\0y", 3);
        again = vb_catb_serialize(b, &len2, &ne, &nc, &bytes);
        vb_catb_free(b);
        c = parse(again, len2, &ret);
        g_assert_cmpint(ret, ==, 0);
        const char *p = vb_cat_path(c, 0, &pl);
        g_assert_cmpmem(p, pl, "a\0b", 3);
        p = vb_cat_link(c, 0, &pl);
        g_assert_cmpmem(p, pl, "x\0y", 3);
        vb_cat_free(c);
    }
}

/* Everything an accepted catalog says stays inside it. */
static void walk_all(const struct vb_catalog *c)
{
    for (uint64_t i = 0; i < c->n; i++) {
        const struct vb_cat_entry *m = &c->e[i];
        size_t l;
        const char *p = vb_cat_path(c, i, &l);
        volatile char sink = 0;

        for (size_t k = 0; k < l; k++)
            sink ^= p[k];
        p = vb_cat_link(c, i, &l);
        for (size_t k = 0; k < l; k++)
            sink ^= p[k];
        for (uint32_t k = 0; k < m->n_xattrs; k++) {
            const char *name;
            const uint8_t *v;
            size_t nl, vl;
            vb_cat_xattr(c, i, k, &name, &nl, &v, &vl);
            g_assert_true(vb_xattr_name_ok(name, nl));
            if (vl)
                sink ^= (char)v[vl - 1];
        }
        for (uint64_t k = 0; k < m->n_chunks; k++)
            g_assert_cmpuint(c->c[m->first_chunk + k].len, >, 0);
        for (uint64_t k = 0; k < m->n_ranges; k++)
            g_assert_cmpuint(c->rg[m->first_range + k].len, >, 0);
        g_assert_true(m->hardlink == VB_CAT_NONE || m->hardlink < i);
        (void)sink;
    }
}

static void test_hostile(void)
{
    size_t len;
    uint8_t *good = build(&len), *d;
    GRand *rnd = g_rand_new_with_seed(7);
    struct vb_catalog *c;
    int ret;

    /* truncated anywhere, or a byte too many */
    for (size_t cut = 0; cut < len; cut += (cut < 256 ? 1 : 97)) {
        d = g_memdup2(good, cut ? cut : 1);
        c = parse(d, cut, &ret);
        g_assert_cmpint(ret, !=, 0);
    }
    d = g_malloc0(len + 1);
    memcpy(d, good, len);
    c = parse(d, len + 1, &ret);
    g_assert_cmpint(ret, !=, 0);
    /* every count of the header lying, the version unknown, the reserved word */
    for (size_t off = 8; off < 64; off += 4) {
        static const uint32_t lies[] = { 1, 0x7fffffff, 0xffffffff };
        for (size_t l = 0; l < G_N_ELEMENTS(lies); l++) {
            d = g_memdup2(good, len);
            uint32_t v;
            memcpy(&v, d + off, 4);
            v += lies[l];
            memcpy(d + off, &v, 4);
            c = parse(d, len, &ret);
            if (!ret)
                g_printerr("header offset %zu + %#x accepted\n", off, lies[l]);
            g_assert_cmpint(ret, !=, 0);
        }
    }
    /* entry fields pointing outside: offsets, lengths, counts */
    static const size_t fields[] = {
        offsetof(struct vb_cat_entry, path_off), offsetof(struct vb_cat_entry, link_off),
        offsetof(struct vb_cat_entry, first_xattr), offsetof(struct vb_cat_entry, first_chunk),
        offsetof(struct vb_cat_entry, n_chunks), offsetof(struct vb_cat_entry, first_range),
        offsetof(struct vb_cat_entry, n_ranges),
    };
    for (size_t f = 0; f < G_N_ELEMENTS(fields); f++) {
        for (uint64_t e = 0; e < 6; e++) {
            uint64_t v = UINT64_MAX - 3;
            d = g_memdup2(good, len);
            memcpy(d + 64 + e * sizeof(struct vb_cat_entry) + fields[f], &v, 8);
            c = parse(d, len, &ret);
            g_assert_cmpint(ret, !=, 0);
        }
    }
    {
        static const size_t f32[] = { offsetof(struct vb_cat_entry, path_len),
                                      offsetof(struct vb_cat_entry, link_len),
                                      offsetof(struct vb_cat_entry, n_xattrs),
                                      offsetof(struct vb_cat_entry, mtime_nsec),
                                      offsetof(struct vb_cat_entry, fsflags) };
        for (size_t f = 0; f < G_N_ELEMENTS(f32); f++) {
            uint32_t v = 0xfffffff0u;
            d = g_memdup2(good, len);
            memcpy(d + 64 + 4 * sizeof(struct vb_cat_entry) + f32[f], &v, 4);
            c = parse(d, len, &ret);
            g_assert_cmpint(ret, !=, 0);
        }
    }
    /* a hard link forward */
    {
        uint64_t v = 5;
        d = g_memdup2(good, len);
        memcpy(d + 64 + 4 * sizeof(struct vb_cat_entry) + offsetof(struct vb_cat_entry, hardlink),
               &v, 8);
        c = parse(d, len, &ret);
        g_assert_cmpint(ret, !=, 0);
    }
    /* random flips: refused, or everything in it stays inside */
    for (int round = 0; round < 20000; round++) {
        d = g_memdup2(good, len);
        for (int k = g_rand_int_range(rnd, 1, 4); k > 0; k--)
            d[g_rand_int_range(rnd, 0, (gint32)len)] ^= (uint8_t)g_rand_int_range(rnd, 1, 256);
        c = parse(d, len, &ret);
        if (!ret) {
            walk_all(c);
            vb_cat_free(c);
        }
    }
    c = parse(good, len, &ret);
    g_assert_cmpint(ret, ==, 0);
    walk_all(c);
    vb_cat_free(c);
    g_rand_free(rnd);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/catalog/roundtrip", test_roundtrip);
    g_test_add_func("/catalog/version1", test_version1);
    g_test_add_func("/catalog/rebuild", test_rebuild);
    g_test_add_func("/catalog/hostile", test_hostile);
    return g_test_run();
}
