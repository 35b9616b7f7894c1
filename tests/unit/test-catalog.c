/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of the files catalog (hostd/lib/catalog.c), version 3: built
 * and read back field by field (names as bytes, times beyond 2262 and
 * before 1970, extended attributes, inode flags, project ids, chunks,
 * written zeros, preallocated ranges, hard links whose holder moves when
 * sorted, every file type); versions 1 and 2 still read; every length,
 * offset and count checked on load, in both layouts: truncation, lying
 * counts, fields pointing outside, random flips; a parsed catalog rebuilt
 * (vb_catb_from_catalog) with its chunk ids mapped, and a version 1 one
 * rebuilt as version 3; and locality: a tree that changes a little, cut by
 * FastCDC as a version 2 repository cuts its catalog stream, keeps all but
 * a few pieces.
 */
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "fastcdc.h"
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

/* Version 2 bytes of parsed catalog C: its tables as they are in memory, its
 * strings after them (for a version 3 catalog, all its bytes: the names are
 * read in place). */
static uint8_t *to_v2(const struct vb_catalog *c, size_t *len)
{
    uint64_t hdr[8] = { 0 };
    uint32_t ver = 2;
    size_t te = c->n * sizeof(struct vb_cat_entry), tc = c->n_chunks * sizeof(struct vb_cat_chunk),
           tx = c->n_xattrs * sizeof(struct vb_cat_xattr),
           tr = c->n_ranges * sizeof(struct vb_cat_range);
    uint8_t *d, *p;

    *len = 64 + te + tc + tx + tr + c->str_len;
    d = p = g_malloc0(*len);
    memcpy(hdr, "VBCAT01\0", 8);
    memcpy((uint8_t *)hdr + 8, &ver, 4);
    hdr[2] = c->n;
    hdr[3] = c->n_chunks;
    hdr[4] = c->str_len;
    hdr[5] = c->n_xattrs;
    hdr[6] = c->n_ranges;
    memcpy(p, hdr, 64);
    p += 64;
    memcpy(p, c->e, te);
    p += te;
    memcpy(p, c->c, tc);
    p += tc;
    memcpy(p, c->x, tx);
    p += tx;
    memcpy(p, c->rg, tr);
    p += tr;
    memcpy(p, c->str, c->str_len);
    return d;
}

/* build(), in the version 2 layout. */
static uint8_t *build_v2(size_t *len)
{
    size_t l3;
    int ret;
    uint8_t *d3 = build(&l3), *d;
    struct vb_catalog *c = parse(d3, l3, &ret);

    g_assert_cmpint(ret, ==, 0);
    d = to_v2(c, len);
    vb_cat_free(c);
    return d;
}

/* A and B hold the same tree: every field, name, attribute, chunk, range. */
static void same_tree(const struct vb_catalog *a, const struct vb_catalog *b)
{
    g_assert_cmpuint(a->n, ==, b->n);
    g_assert_cmpuint(a->n_chunks, ==, b->n_chunks);
    for (uint64_t i = 0; i < a->n; i++) {
        struct vb_cat_entry x = a->e[i], y = b->e[i];
        const char *p, *q;
        size_t pl, ql;

        p = vb_cat_path(a, i, &pl);
        q = vb_cat_path(b, i, &ql);
        g_assert_cmpmem(p, pl, q, ql);
        p = vb_cat_link(a, i, &pl);
        q = vb_cat_link(b, i, &ql);
        g_assert_cmpmem(p, pl, q, ql);
        for (uint32_t k = 0; k < x.n_xattrs && k < y.n_xattrs; k++) {
            const char *n1, *n2;
            const uint8_t *v1, *v2;
            size_t nl1, nl2, vl1, vl2;
            vb_cat_xattr(a, i, k, &n1, &nl1, &v1, &vl1);
            vb_cat_xattr(b, i, k, &n2, &nl2, &v2, &vl2);
            g_assert_cmpmem(n1, nl1, n2, nl2);
            g_assert_cmpmem(v1, vl1, v2, vl2);
        }
        for (uint64_t k = 0; k < x.n_chunks && k < y.n_chunks; k++)
            g_assert_cmpmem(&a->c[x.first_chunk + k], sizeof(struct vb_cat_chunk),
                            &b->c[y.first_chunk + k], sizeof(struct vb_cat_chunk));
        for (uint64_t k = 0; k < x.n_ranges && k < y.n_ranges; k++)
            g_assert_cmpmem(&a->rg[x.first_range + k], sizeof(struct vb_cat_range),
                            &b->rg[y.first_range + k], sizeof(struct vb_cat_range));
        /* the rest field by field: where things lie may differ */
        x.path_off = y.path_off = x.link_off = y.link_off = 0;
        x.first_xattr = y.first_xattr = x.first_chunk = y.first_chunk = 0;
        x.first_range = y.first_range = 0;
        g_assert_cmpmem(&x, sizeof(x), &y, sizeof(y));
    }
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
    g_assert_cmpuint(c->version, ==, 3);
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
    /* rebuilt, it is a version 3 catalog of the same tree */
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
        g_assert_cmpuint(c2->version, ==, 3);
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

/* vb_catb_from_catalog: what the builder made comes back byte for byte (and
 * again when rebuilt once more); the chunk ids are what the map makes of them
 * (written zeros keep none); a failing map stops it; names keep every byte. */
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
    g_assert_cmpuint(bytes, ==, 2 * (3u << 20));
    g_assert_cmpmem(again, len2, data, len);
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
    /* everything but the ids as before: mapped back, the same bytes */
    g_assert_cmpint(vb_catb_from_catalog(c2, flip_id, &calls, &b, &e), ==, 0);
    vb_cat_free(c2);
    again = vb_catb_serialize(b, &len2, &ne, &nc, &bytes);
    vb_catb_free(b);
    g_assert_cmpmem(again, len2, data, len);
    g_free(again);

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

/* Version 2 bytes (what vbackupd wrote before version 3) are checked as
 * before. */
static void test_hostile_v2(void)
{
    size_t len;
    uint8_t *good = build_v2(&len), *d;
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

/* The bytes of version 2 read as the same tree as version 3's. */
static void test_version2(void)
{
    size_t l3, l2;
    uint8_t *d3 = build(&l3), *d2 = build_v2(&l2);
    int ret;
    struct vb_catalog *c3 = parse(d3, l3, &ret), *c2;

    g_assert_cmpint(ret, ==, 0);
    c2 = parse(d2, l2, &ret);
    g_assert_cmpint(ret, ==, 0);
    g_assert_cmpuint(c2->version, ==, 2);
    g_assert_null(c2->converted);
    same_tree(c3, c2);
    g_assert_cmpuint(vb_cat_footprint(c3), >=, l3 + c3->n * sizeof(struct vb_cat_entry));
    vb_cat_free(c2);
    vb_cat_free(c3);
}

/* Every type and every field, each a value of its own, back as it went in;
 * the per-snapshot flags are not stored. */
static void test_fields(void)
{
    static const uint8_t types[] = { VB_FT_DIR, VB_FT_REG, VB_FT_SYMLINK, VB_FT_FIFO,
                                     VB_FT_CHR, VB_FT_BLK, VB_FT_SOCK };
    struct vb_catb *b = vb_catb_new();
    struct vb_cat_entry want[G_N_ELEMENTS(types)];
    uint64_t ne, nc, bytes;
    size_t len;
    uint8_t *d;
    int ret;
    struct vb_catalog *c;

    for (size_t t = 0; t < G_N_ELEMENTS(types); t++) {
        struct vb_cat_entry m = {
            .type = types[t], .mode = 01000 | (unsigned)t, .uid = 100 + (unsigned)t,
            .gid = 200 + (unsigned)t, .nlink = 1 + (unsigned)t, .size = 3000 + t,
            .ino = 1ull << 40 | t, .mtime_sec = -1 - (int64_t)t, .ctime_sec = 1LL << 35,
            .atime_sec = (int64_t)t, .mtime_nsec = 999999999u - (unsigned)t,
            .ctime_nsec = (unsigned)t, .atime_nsec = 7, .fsflags = VB_FSFL_NODUMP,
            .projid = 4000000000u + (unsigned)t,
        };
        char path[8] = { 'e', (char)('0' + t), '\n', '\t', '*', '\\' };
        uint64_t i;

        if (types[t] == VB_FT_CHR || types[t] == VB_FT_BLK)
            m.rdev = 0xfff00000u | (unsigned)t;             /* new_encode_dev */
        m.flags = VB_CATF_REUSED | VB_CATF_FALLBACK;
        i = vb_catb_add(b, &m, path, 6, types[t] == VB_FT_SYMLINK ? "../x y" : NULL,
                        types[t] == VB_FT_SYMLINK ? 6 : 0);
        vb_catb_set_flags(b, i, VB_CATF_REUSED);
        if (types[t] == VB_FT_REG) {
            chunk(b, i, 0, 1000, 1, 0);
            chunk(b, i, 1000, 2000, 0, VB_CATC_ZERO);
            chunk(b, i, 3000, 5, 2, 0);
            vb_catb_add_range(b, i, 8192, 4096);
            vb_catb_add_xattr(b, i, "user.v", 6, "", 0);
        }
        m.flags = 0;
        want[t] = m;
    }
    d = vb_catb_serialize(b, &len, &ne, &nc, &bytes);
    vb_catb_free(b);
    g_assert_cmpuint(ne, ==, G_N_ELEMENTS(types));
    g_assert_cmpuint(nc, ==, 3);
    g_assert_cmpuint(bytes, ==, 3001);
    c = parse(d, len, &ret);
    g_assert_cmpint(ret, ==, 0);
    for (size_t t = 0; t < G_N_ELEMENTS(types); t++) {
        struct vb_cat_entry x = c->e[t], y = want[t];
        size_t pl;
        const char *p = vb_cat_path(c, t, &pl);
        g_assert_cmpmem(p, pl, ((char[]){ 'e', (char)('0' + t), '\n', '\t', '*', '\\' }), 6);
        if (y.type == VB_FT_REG) {
            g_assert_cmpuint(x.n_chunks, ==, 3);
            g_assert_cmpuint(x.n_ranges, ==, 1);
            g_assert_cmpuint(x.n_xattrs, ==, 1);
            g_assert_true(c->c[x.first_chunk + 1].flags & VB_CATC_ZERO);
            g_assert_true(vb_id_is_zero(c->c[x.first_chunk + 1].id));
            g_assert_cmpuint(c->c[x.first_chunk + 2].id[31], ==, 2);
            g_assert_cmpuint(vb_cat_data_bytes(c, t), ==, 1005);
        }
        if (y.type == VB_FT_SYMLINK) {
            p = vb_cat_link(c, t, &pl);
            g_assert_cmpmem(p, pl, "../x y", 6);
        }
        y.path_len = x.path_len;
        y.link_len = x.link_len;
        y.path_off = x.path_off;
        y.link_off = x.link_off;
        y.n_xattrs = x.n_xattrs;
        y.first_xattr = x.first_xattr;
        y.first_chunk = x.first_chunk;
        y.n_chunks = x.n_chunks;
        y.first_range = x.first_range;
        y.n_ranges = x.n_ranges;
        y.hardlink = VB_CAT_NONE;
        g_assert_cmpmem(&x, sizeof(x), &y, sizeof(y));
    }
    vb_cat_free(c);
}

/* Where record I of a version 3 catalog starts. */
static size_t record_at(const uint8_t *d, uint64_t i)
{
    size_t pos = 48;

    for (; i; i--) {
        uint64_t rl;
        memcpy(&rl, d + pos, 8);
        pos += 8 + rl;
    }
    return pos;
}

static struct vb_catalog *parse_msg(uint8_t *data, size_t len, int *ret, char *msg)
{
    struct vb_catalog *c = NULL;
    vb_error e = { 0 };

    *ret = vb_cat_parse(data, len, "test", &c, &e);
    g_strlcpy(msg, *ret ? e.msg : "", 256);
    return c;
}

/* Set a field of record I of a copy of GOOD to V (SIZE bytes, at OFF past
 * the record's length); refused, with a message holding WHY if not NULL. */
static void refused_field(const uint8_t *good, size_t len, uint64_t i, size_t off, size_t size,
                          uint64_t v, const char *why)
{
    uint8_t *d = g_memdup2(good, len);
    char msg[256];
    int ret;

    memcpy(d + record_at(good, i) + 8 + off, &v, size);
    parse_msg(d, len, &ret, msg);
    if (!ret)
        g_printerr("record %llu field %zu = %#llx accepted\n", (unsigned long long)i, off,
                   (unsigned long long)v);
    g_assert_cmpint(ret, ==, -EBADMSG);
    if (why && !strstr(msg, why))
        g_printerr("record %llu field %zu: \"%s\"\n", (unsigned long long)i, off, msg);
    g_assert_true(!why || strstr(msg, why));
}

/* Version 3 bytes, hostile: refused with a message, or everything in them
 * stays inside. */
static void test_hostile_v3(void)
{
    size_t len;
    uint8_t *good = build(&len), *d;
    GRand *rnd = g_rand_new_with_seed(11);
    struct vb_catalog *c;
    char msg[256];
    int ret;

    /* truncated anywhere (at a record's end too), or a byte too many */
    for (size_t cut = 0; cut < len; cut++) {
        d = g_memdup2(good, cut ? cut : 1);
        c = parse_msg(d, cut, &ret, msg);
        g_assert_cmpint(ret, ==, -EBADMSG);
        g_assert_true(strstr(msg, "test: "));
    }
    d = g_memdup2(good, record_at(good, 5));
    parse_msg(d, record_at(good, 5), &ret, msg);
    g_assert_nonnull(strstr(msg, "header's counts"));
    d = g_malloc0(len + 1);
    memcpy(d, good, len);
    parse_msg(d, len + 1, &ret, msg);
    g_assert_cmpint(ret, ==, -EBADMSG);
    /* every word of the header lying */
    for (size_t off = 8; off < 48; off += 4) {
        static const uint32_t lies[] = { 1, 0x7fffffff, 0xffffffff };
        for (size_t l = 0; l < G_N_ELEMENTS(lies); l++) {
            uint32_t v;
            d = g_memdup2(good, len);
            memcpy(&v, d + off, 4);
            v += lies[l];
            memcpy(d + off, &v, 4);
            c = parse_msg(d, len, &ret, msg);
            if (!ret)
                g_printerr("header offset %zu + %#x accepted\n", off, lies[l]);
            g_assert_cmpint(ret, ==, -EBADMSG);
        }
    }
    for (uint64_t i = 0; i < 6; i++) {
        uint64_t rl;
        memcpy(&rl, good + record_at(good, i), 8);
        /* the record's length: short, long, past the end, below the fixed part */
        refused_field(good, len, i, (size_t)-8, 8, rl - 1, NULL);
        refused_field(good, len, i, (size_t)-8, 8, rl + 1, NULL);
        refused_field(good, len, i, (size_t)-8, 8, UINT64_MAX - 3, "outside the catalog");
        refused_field(good, len, i, (size_t)-8, 8, 119, "outside the catalog");
        /* lengths and counts: one too many, huge */
        refused_field(good, len, i, 84, 4, 0xfffffff0u, "name or link target");
        refused_field(good, len, i, 88, 4, 0xfffffff0u, "name or link target");
        refused_field(good, len, i, 92, 4, 0xfffffff0u, "attribute");
        refused_field(good, len, i, 96, 8, UINT64_MAX - 1, "chunks");
        refused_field(good, len, i, 104, 8, UINT64_MAX / 8, "ranges");
        refused_field(good, len, i, 104, 8, UINT64_MAX, "ranges");
        refused_field(good, len, i, 112, 8, i + 1, "hard link before the first");
        refused_field(good, len, i, 112, 8, UINT64_MAX, "hard link before the first");
        /* the rest of the fixed part */
        refused_field(good, len, i, 1, 1, 1, "reserved");
        refused_field(good, len, i, 2, 2, 1, "reserved");
        refused_field(good, len, i, 64, 4, 1000000000u, "nanoseconds");
        refused_field(good, len, i, 76, 4, ~VB_FSFL_MASK, "inode flags");
        if (i == 4)
            continue;   /* d/z-holder: its xattrs and chunks moved to d/a-link */
        refused_field(good, len, i, 96, 8, 1, NULL);
        refused_field(good, len, i, 104, 8, 1, NULL);
    }
    /* d/z-holder (record 4): its attributes, after its path of 10 bytes */
    refused_field(good, len, 4, 120 + 10 + 2, 2, 1, "attribute");     /* reserved */
    refused_field(good, len, 4, 120 + 10 + 8, 1, 'x', "attribute name");
    refused_field(good, len, 4, 120 + 10 + 0, 2, 0xffff, "attribute");
    refused_field(good, len, 4, 120 + 10 + 4, 4, 0xfffffff0u, "attribute");
    /* d/a-link (record 2): the chunks (data, zeros, data) and ranges it
     * holds, after its path of 8 bytes */
    {
        size_t at = 120 + 8;
        refused_field(good, len, 2, at + 12, 4, 4, "chunk list");      /* an unknown flag */
        refused_field(good, len, 2, at + 12, 4, 1, NULL);      /* data read as zeros */
        refused_field(good, len, 2, at + 48 + 12, 4, 0, NULL); /* zeros read as data */
        refused_field(good, len, 2, at + 8, 4, 0, "chunk list");       /* empty */
        refused_field(good, len, 2, at + 48, 8, 0, "chunk list");      /* overlaps */
        at += 48 + 16 + 48;
        refused_field(good, len, 2, at + 16, 8, 0, "ranges");  /* the second first */
        refused_field(good, len, 2, at + 8, 8, 0, "ranges");           /* empty */
    }
    /* random flips: refused, or everything in it stays inside */
    for (int round = 0; round < 20000; round++) {
        d = g_memdup2(good, len);
        for (int k = g_rand_int_range(rnd, 1, 4); k > 0; k--)
            d[g_rand_int_range(rnd, 0, (gint32)len)] ^= (uint8_t)g_rand_int_range(rnd, 1, 256);
        c = parse_msg(d, len, &ret, msg);
        if (!ret) {
            walk_all(c);
            vb_cat_free(c);
        } else {
            g_assert_cmpint(ret, ==, -EBADMSG);
        }
    }
    /* an empty catalog is the header alone */
    {
        struct vb_catb *b = vb_catb_new();
        uint64_t ne, nc, bytes;
        size_t l;
        d = vb_catb_serialize(b, &l, &ne, &nc, &bytes);
        vb_catb_free(b);
        g_assert_cmpuint(l, ==, 48);
        c = parse_msg(d, l, &ret, msg);
        g_assert_cmpint(ret, ==, 0);
        g_assert_cmpuint(c->n, ==, 0);
        vb_cat_free(c);
    }
    c = parse(good, len, &ret);
    g_assert_cmpint(ret, ==, 0);
    walk_all(c);
    vb_cat_free(c);
    g_rand_free(rnd);
}

/* ---- locality ---- */

#define LOC_N 5000

/* A tree of LOC_N entries: folders of files with one to three chunks (one
 * of them written zeros now and then), attributes and ranges here and there,
 * hard links, symlinks; EXTRA adds one file in the middle, CHANGED gives
 * file CHANGED a new chunk id (when not ~0), PROV marks every entry reused. */
static uint8_t *tree(size_t *len, bool extra, uint64_t changed, bool prov)
{
    struct vb_catb *b = vb_catb_new();
    struct vb_cat_entry m = { .type = VB_FT_DIR, .mode = 0755 };
    uint64_t ne, nc, bytes, first = 0;
    uint8_t *out;

    vb_catb_add(b, &m, "", 0, NULL, 0);
    for (uint64_t i = 0; i < LOC_N; i++) {
        char p[64];
        uint64_t x;
        int pl;

        if (i % 50 == 0) {
            m = (struct vb_cat_entry){ .type = VB_FT_DIR, .mode = 0755, .ino = i };
            pl = snprintf(p, sizeof(p), "usr/share/d%04llu", (unsigned long long)(i / 50));
            vb_catb_add(b, &m, p, (size_t)pl, NULL, 0);
        }
        pl = snprintf(p, sizeof(p), "usr/share/d%04llu/file-%06llu.txt",
                      (unsigned long long)(i / 50), (unsigned long long)i);
        m = (struct vb_cat_entry){ .type = VB_FT_REG, .mode = 0644, .uid = 1000, .gid = 1000,
                                   .nlink = 1, .ino = 100000 + i, .size = 300000 * (i % 3 + 1),
                                   .mtime_sec = 1700000000 + (int64_t)i,
                                   .mtime_nsec = (uint32_t)(i * 7919 % 1000000000u),
                                   .ctime_sec = 1700000000 + (int64_t)i,
                                   .atime_sec = 1700000000 };
        if (prov)
            m.flags = VB_CATF_REUSED;
        if (i % 97 == 5) {
            m.type = VB_FT_SYMLINK;
            m.size = 0;
            x = vb_catb_add(b, &m, p, (size_t)pl, "../target", 9);
            continue;
        }
        x = vb_catb_add(b, &m, p, (size_t)pl, NULL, 0);
        if (i % 211 == 7 && first) {
            vb_catb_set_hardlink(b, x, first);
            continue;
        }
        if (i % 211 == 6)
            first = x;
        for (uint64_t k = 0; k <= i % 3; k++) {
            struct vb_cat_chunk ch = { .offset = k * 300000, .len = 300000 };
            if (k == 1 && i % 13 == 0) {
                ch.flags = VB_CATC_ZERO;
            } else {
                memcpy(ch.id, &i, 8);
                memcpy(ch.id + 8, &k, 8);
                ch.id[16] = (uint8_t)(i * 31 + k);
                for (size_t z = 17; z < sizeof(ch.id); z++)
                    ch.id[z] = (uint8_t)(ch.id[z - 17] * 131 + z);
                if (i == changed)
                    ch.id[31] ^= 0xff;
            }
            vb_catb_add_chunk(b, x, &ch);
        }
        if (i % 10 == 3)
            vb_catb_add_xattr(b, x, "user.mime_type", 14, "text/plain", 10);
        if (i % 40 == 9)
            vb_catb_add_range(b, x, 1 << 20, 1 << 20);
        if (extra && i == LOC_N / 2) {
            m.ino = 999999;
            x = vb_catb_add(b, &m, "usr/share/d0050/file-002500.txu", 31, NULL, 0);
            struct vb_cat_chunk ch = { .offset = 0, .len = 4096, .id = { 7, 7, 7 } };
            vb_catb_add_chunk(b, x, &ch);
        }
    }
    out = vb_catb_serialize(b, len, &ne, &nc, &bytes);
    vb_catb_free(b);
    return out;
}

/* Pieces of D as the metadata stream cuts it (hostd/repo/stream.h's
 * VB_STREAM_AVG, 64 KiB), as a set. */
static GHashTable *pieces(const uint8_t *d, size_t len, unsigned *n)
{
    GHashTable *set = g_hash_table_new_full(g_bytes_hash, g_bytes_equal,
                                            (GDestroyNotify)g_bytes_unref, NULL);
    struct vb_cdc cdc;

    vb_cdc_init(&cdc, 64u << 10);
    *n = 0;
    for (size_t pos = 0; pos < len; (*n)++) {
        size_t k = vb_cdc_cut(&cdc, d + pos, len - pos);
        g_hash_table_add(set, g_bytes_new(d + pos, k));
        pos += k;
    }
    return set;
}

/* Pieces of B that A does not have. */
static unsigned new_pieces(const uint8_t *a, size_t al, const uint8_t *b, size_t bl,
                           unsigned *nb)
{
    unsigned na, fresh = 0;
    GHashTable *sa = pieces(a, al, &na), *sb = pieces(b, bl, nb);
    GHashTableIter it;
    gpointer k;

    g_hash_table_iter_init(&it, sb);
    while (g_hash_table_iter_next(&it, &k, NULL))
        fresh += !g_hash_table_contains(sa, k);
    g_hash_table_unref(sa);
    g_hash_table_unref(sb);
    return fresh;
}

/* An unchanged tree makes the same bytes (whatever the provenance of its
 * entries); one entry more, or one file's chunk changed, changes only the
 * pieces around it. */
static void test_locality(void)
{
    size_t la, lb;
    uint8_t *a = tree(&la, false, ~0ull, false), *b;
    unsigned n, fresh;
    int ret;
    struct vb_catalog *c;

    b = tree(&lb, false, ~0ull, true);
    g_assert_cmpmem(a, la, b, lb);
    g_free(b);

    b = tree(&lb, true, ~0ull, false);
    fresh = new_pieces(a, la, b, lb, &n);
    g_test_message("one entry added: %u of %u pieces new (%zu bytes)", fresh, n, lb);
    g_printerr("# locality: one entry added in the middle of %zu bytes: %u of %u pieces new\n",
               lb, fresh, n);
    g_assert_cmpuint(n, >=, 10);
    g_assert_cmpuint(fresh, <=, 2);
    c = parse(b, lb, &ret);
    g_assert_cmpint(ret, ==, 0);
    g_assert_cmpuint(c->n, ==, LOC_N + LOC_N / 50 + 2);
    vb_cat_free(c);

    b = tree(&lb, false, LOC_N / 3, false);
    g_assert_cmpuint(lb, ==, la);
    fresh = new_pieces(a, la, b, lb, &n);
    g_printerr("# locality: one chunk id changed: %u of %u pieces new\n", fresh, n);
    g_assert_cmpuint(fresh, <=, 2);
    g_free(b);

    c = parse(a, la, &ret);
    g_assert_cmpint(ret, ==, 0);
    walk_all(c);
    vb_cat_free(c);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/catalog/roundtrip", test_roundtrip);
    g_test_add_func("/catalog/version1", test_version1);
    g_test_add_func("/catalog/rebuild", test_rebuild);
    g_test_add_func("/catalog/version2", test_version2);
    g_test_add_func("/catalog/fields", test_fields);
    g_test_add_func("/catalog/hostile-v2", test_hostile_v2);
    g_test_add_func("/catalog/hostile-v3", test_hostile_v3);
    g_test_add_func("/catalog/locality", test_locality);
    return g_test_run();
}
