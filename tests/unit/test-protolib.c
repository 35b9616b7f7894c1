/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of the protocol library (hostd/lib/protolib.c): paths as bytes,
 * extended attribute sections, file records encoded and decoded, every
 * field a guest controls checked, hostile records (lying lengths,
 * truncation at every byte, random flips) refused without reading past the
 * buffer, and BACKUP_PROBLEMS items.
 */
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vbackup/protolib.h"

/* ---- paths ------------------------------------------------------------------------ */

static void test_paths(void)
{
    static const struct { const char *p; size_t n; bool root; bool ok; } cases[] = {
        { "srv/www", 7, false, true },
        { "", 0, true, true },
        { "", 0, false, false },
        { "/etc", 4, true, false },
        { "a//b", 4, true, false },
        { "a/", 2, true, false },
        { "a/./b", 5, true, false },
        { "a/../b", 6, true, false },
        { "..", 2, true, false },
        { "...", 3, true, true },
        { ".x", 2, true, true },
        { "a\0b", 3, true, false },
        { "\xff\xfe/\xc3(", 5, true, true },         /* names are bytes */
        { "line\nbreak", 10, true, true },
    };
    char *name = g_malloc(300), *deep;
    size_t dl = 0;

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++)
        g_assert_cmpint(!vb_path_check(cases[i].p, cases[i].n, cases[i].root), ==, cases[i].ok);
    memset(name, 'x', 300);
    g_assert_null(vb_path_check(name, 255, false));
    g_assert_nonnull(vb_path_check(name, 256, false));
    /* longer than PATH_MAX is a path; longer than 65535 bytes is not */
    deep = g_malloc(70000);
    while (dl + 101 < 70000) {
        memset(deep + dl, 'd', 100);
        deep[dl + 100] = '/';
        dl += 101;
    }
    g_assert_null(vb_path_check(deep, 65535 - (65535 % 101) - 1, false));
    g_assert_nonnull(vb_path_check(deep, 65536 + 100 - (65536 % 101), false));
    g_free(deep);
    g_free(name);
    g_assert_true(vb_utf8_valid("h\xc3\xa9llo", 6));
    g_assert_false(vb_utf8_valid("\xc0\xaf", 2));            /* overlong '/' */
    g_assert_false(vb_utf8_valid("\xed\xa0\x80", 3));        /* surrogate */
    g_assert_false(vb_utf8_valid("\xf4\x90\x80\x80", 4));    /* above U+10FFFF */
    g_assert_false(vb_utf8_valid("\xe2\x82", 2));            /* truncated */
}

static void test_xattr_names(void)
{
    g_assert_true(vb_xattr_name_ok("user.x", 6));
    g_assert_true(vb_xattr_name_ok("trusted.overlay.opaque", 22));
    g_assert_true(vb_xattr_name_ok("security.capability", 19));
    g_assert_true(vb_xattr_name_ok("security.selinux", 16));
    g_assert_true(vb_xattr_name_ok("system.posix_acl_access", 23));
    g_assert_true(vb_xattr_name_ok("system.posix_acl_default", 24));
    g_assert_false(vb_xattr_name_ok("user.", 5));            /* nothing after the prefix */
    g_assert_false(vb_xattr_name_ok("system.data", 11));
    g_assert_false(vb_xattr_name_ok("system.posix_acl_accessX", 24));
    g_assert_false(vb_xattr_name_ok("os2.x", 5));
    g_assert_false(vb_xattr_name_ok("user.a\0b", 8));
    g_assert_false(vb_xattr_name_ok("", 0));
}

/* libext2fs leaves 0 where the kernel writes ACL_UNDEFINED_ID */
static void test_acl_canonical(void)
{
    uint8_t v[4 + 3 * 8] = { 2, 0, 0, 0,
                             0x01, 0, 6, 0, 0, 0, 0, 0,           /* USER_OBJ, id 0 */
                             0x02, 0, 4, 0, 0xe9, 3, 0, 0,        /* USER 1001 */
                             0x20, 0, 0, 0, 0, 0, 0, 0 };         /* OTHER, id 0 */
    uint8_t w[sizeof(v)];

    memcpy(w, v, sizeof(v));
    vb_acl_canonical("user.x", 6, w, sizeof(w));                  /* not an ACL: kept */
    g_assert_cmpmem(w, sizeof(w), v, sizeof(v));
    vb_acl_canonical("system.posix_acl_access", 23, w, sizeof(w) - 1);   /* not whole */
    g_assert_cmpmem(w, sizeof(w), v, sizeof(v));
    vb_acl_canonical("system.posix_acl_default", 24, w, sizeof(w));
    g_assert_cmpmem(w + 8, 4, "\xff\xff\xff\xff", 4);
    g_assert_cmpmem(w + 12, 8, v + 12, 8);                         /* a named one kept */
    g_assert_cmpmem(w + 24, 4, "\xff\xff\xff\xff", 4);
}

static void test_times(void)
{
    struct vb_ts t = vb_ts_from_ns(-1500000000);

    g_assert_cmpint(t.sec, ==, -2);
    g_assert_cmpuint(t.nsec, ==, 500000000);
    t = vb_ts_from_ns(INT64_MIN);
    g_assert_cmpint(t.sec, ==, INT64_MIN / 1000000000 - 1);
    g_assert_cmpuint(t.nsec, <, 1000000000u);
    t = vb_ts_from_ns(1);
    g_assert_cmpint(t.sec, ==, 0);
    g_assert_cmpuint(t.nsec, ==, 1);
    g_assert_cmpint(vb_ts_cmp((struct vb_ts){ -1, 5 }, (struct vb_ts){ 0, 0 }), <, 0);
    g_assert_cmpint(vb_ts_cmp((struct vb_ts){ 3, 5 }, (struct vb_ts){ 3, 4 }), >, 0);
}

/* ---- extended attribute sections ------------------------------------------------------ */

static size_t put(uint8_t *b, size_t off, const char *name, const void *v, size_t vl)
{
    return off + vb_xattr_put(b + off, name, strlen(name), v, vl);
}

static void test_xattr_sections(void)
{
    uint8_t *b = g_malloc0(VB_MAX_XATTR_BYTES + 4096), big[VB_MAX_XATTR_VALUE + 1];
    struct vb_xattr_view x;
    size_t n = 0, off = 0;

    memset(big, 0xab, sizeof(big));
    n = put(b, n, "security.capability", "\x01\x00\x00\x02", 4);
    n = put(b, n, "system.posix_acl_access", "\x02\0\0\0", 4);
    n = put(b, n, "user.bin", "\0\xff\0", 3);
    n = put(b, n, "user.empty", "", 0);
    n = put(b, n, "user.large", big, VB_MAX_XATTR_VALUE);
    g_assert_null(vb_xattrs_check(b, n, 5));
    g_assert_true(vb_xattr_next(b, n, &off, &x));
    g_assert_cmpmem(x.name, x.name_len, "security.capability", 19);
    g_assert_cmpmem(x.value, x.value_len, "\x01\x00\x00\x02", 4);
    for (int k = 0; k < 4; k++)
        g_assert_true(vb_xattr_next(b, n, &off, &x));
    g_assert_cmpuint(x.value_len, ==, VB_MAX_XATTR_VALUE);
    g_assert_false(vb_xattr_next(b, n, &off, &x));
    /* counts that lie, bytes left over, truncation */
    g_assert_nonnull(vb_xattrs_check(b, n, 4));
    g_assert_nonnull(vb_xattrs_check(b, n, 6));
    g_assert_nonnull(vb_xattrs_check(b, n - 1, 5));
    for (size_t cut = 0; cut < 64; cut++)
        g_assert_nonnull(vb_xattrs_check(b, cut, 1 + (cut % 3)));
    /* order: names strictly ascending, none twice */
    n = put(b, 0, "user.b", "1", 1);
    n = put(b, n, "user.a", "2", 1);
    g_assert_nonnull(vb_xattrs_check(b, n, 2));
    n = put(b, 0, "user.a", "1", 1);
    n = put(b, n, "user.a", "2", 1);
    g_assert_nonnull(vb_xattrs_check(b, n, 2));
    /* a value one byte longer than the kernel allows */
    n = put(b, 0, "user.x", big, VB_MAX_XATTR_VALUE + 1);
    g_assert_nonnull(vb_xattrs_check(b, n, 1));
    /* a namespace that is not kept, a reserved field */
    n = put(b, 0, "system.nfs4_acl", "x", 1);
    g_assert_nonnull(vb_xattrs_check(b, n, 1));
    n = put(b, 0, "user.x", "x", 1);
    b[6] = 1;
    g_assert_nonnull(vb_xattrs_check(b, n, 1));
    /* the total bound */
    n = 0;
    for (int k = 0; n + vb_xattr_size(12, VB_MAX_XATTR_VALUE) <= VB_MAX_XATTR_BYTES; k++) {
        char name[16];
        snprintf(name, sizeof(name), "user.big%04d", k);
        n = put(b, n, name, big, VB_MAX_XATTR_VALUE);
    }
    g_assert_null(vb_xattrs_check(b, n, (uint32_t)(n / vb_xattr_size(12, VB_MAX_XATTR_VALUE))));
    n = put(b, n, "user.zzzz", big, VB_MAX_XATTR_VALUE);
    g_assert_cmpuint(n, >, VB_MAX_XATTR_BYTES);
    g_assert_nonnull(vb_xattrs_check(b, n, 1 + (uint32_t)((n - vb_xattr_size(9, 65536)) /
                                                           vb_xattr_size(12, VB_MAX_XATTR_VALUE))));
    g_free(b);
}

/* ---- records --------------------------------------------------------------------------- */

static uint8_t xsec[256];

static struct vb_rec sample(void)
{
    struct vb_rec r;
    size_t n = 0;

    memset(&r, 0, sizeof(r));
    n = put(xsec, n, "security.capability", "\x01\0\0\x02\0\x20\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 20);
    n = put(xsec, n, "trusted.t", "v", 1);
    n = put(xsec, n, "user.u", "\0\1\2", 3);
    r.type = VB_FT_REG;
    r.data = VB_FD_EXTENTS;
    r.disk = 1;
    r.mode = 04755;
    r.uid = 1000;
    r.gid = 100;
    r.nlink = 2;
    r.size = 1 << 20;
    r.ino = 77;
    r.mtime = (struct vb_ts){ -86400 * 365 * 10 - 1, 999999999 };   /* 1959 */
    r.ctime = (struct vb_ts){ 15000000000LL, 1 };                     /* 2445 */
    r.atime = (struct vb_ts){ 0, 0 };
    r.fsflags = VB_FSFL_IMMUTABLE | VB_FSFL_NODUMP | VB_FSFL_PROJINHERIT;
    r.projid = 42;
    r.path = "srv/\xff\xfe-not-utf8/bin";
    r.path_len = strlen(r.path);
    r.xattrs = xsec;
    r.xattr_len = n;
    r.n_xattrs = 3;
    return r;
}

/* R with N extents appended; *len = the record's bytes */
static uint8_t *encode(const struct vb_rec *r, const struct vb_extent *ext, uint32_t n,
                       size_t *len)
{
    struct vb_rec c = *r;
    uint8_t *b;
    size_t h;

    c.n_extents = n;
    *len = vb_rec_head_size(&c) + n * VB_EXTENT_SIZE;
    b = g_malloc(*len);
    h = vb_rec_encode_head(&c, b);
    g_assert_cmpuint(h, ==, vb_rec_head_size(&c));
    for (uint32_t i = 0; i < n; i++)
        vb_extent_put(b + h + i * VB_EXTENT_SIZE, &ext[i]);
    return b;
}

static int decode(const uint8_t *b, size_t len, enum vb_rec_ctx ctx, struct vb_rec *out)
{
    char why[160];
    size_t used = 0;
    /* a copy of exactly the record's size: ASan sees any read past it */
    uint8_t *c = g_memdup2(b, len ? len : 1);
    int st = vb_rec_decode(c, len, ctx, out, &used, why, sizeof(why));

    g_free(c);
    /* bytes left over: the message's parser refuses them */
    return st == VB_S_OK && used != len ? -1 : st;
}

static void test_record_roundtrip(void)
{
    struct vb_rec r = sample(), d;
    struct vb_extent ext[3] = {
        { 0, 4096, 8192, 0, 0 },
        { 8192, 65536, 4096, VB_EXT_UNWRITTEN, 0 },
        { 2 << 20, 1 << 30, 1 << 20, VB_EXT_UNWRITTEN, 0 },   /* past the size */
    };
    size_t len;
    uint8_t *b = encode(&r, ext, 3, &len);
    char why[160];
    size_t used;

    g_assert_cmpint(vb_rec_decode(b, len, VB_REC_BACKUP, &d, &used, why, sizeof(why)), ==,
                    VB_S_OK);
    g_assert_cmpuint(used, ==, len);
    g_assert_cmpuint(d.type, ==, r.type);
    g_assert_cmpuint(d.mode, ==, 04755);
    g_assert_cmpuint(d.uid, ==, 1000);
    g_assert_cmpint(d.mtime.sec, ==, r.mtime.sec);
    g_assert_cmpuint(d.mtime.nsec, ==, 999999999);
    g_assert_cmpint(d.ctime.sec, ==, 15000000000LL);
    g_assert_cmpuint(d.fsflags, ==, r.fsflags);
    g_assert_cmpuint(d.projid, ==, 42);
    g_assert_cmpmem(d.path, d.path_len, r.path, r.path_len);
    g_assert_cmpmem(d.xattrs, d.xattr_len, xsec, r.xattr_len);
    g_assert_cmpuint(d.n_xattrs, ==, 3);
    g_assert_cmpuint(d.n_extents, ==, 3);
    for (uint32_t i = 0; i < 3; i++) {
        struct vb_extent x;
        vb_extent_get(d.extents + i * VB_EXTENT_SIZE, &x);
        g_assert_cmpmem(&x, sizeof(x), &ext[i], sizeof(x));
    }
    /* RESTORE_LIST may say "preallocated past the size"; BACKUP_FILES may not */
    g_free(b);
    r.flags = VB_RF_PREALLOC;
    b = encode(&r, NULL, 0, &len);
    g_assert_cmpint(decode(b, len, VB_REC_RESTORE, &d), ==, VB_S_OK);
    g_assert_cmpuint(d.flags, ==, VB_RF_PREALLOC);
    g_assert_cmpint(decode(b, len, VB_REC_BACKUP, &d), ==, VB_S_BAD_REQUEST);
    g_free(b);
    /* a symlink with a target of bytes; the root itself */
    r = sample();
    r.type = VB_FT_SYMLINK;
    r.data = VB_FD_NONE;
    r.link = "\x80target";
    r.link_len = 7;
    r.path = "";
    r.path_len = 0;
    b = encode(&r, NULL, 0, &len);
    g_assert_cmpint(decode(b, len, VB_REC_BACKUP, &d), ==, VB_S_OK);
    g_assert_cmpmem(d.link, d.link_len, "\x80target", 7);
    g_free(b);
}

/* One field changed from the sample: the status the decoder must give. */
static void expect_status(void (*change)(struct vb_rec *, struct vb_extent *, uint32_t *),
                          int status)
{
    struct vb_rec r = sample(), d;
    struct vb_extent ext[4] = { { 0, 4096, 4096, 0, 0 } };
    uint32_t n = 1;
    size_t len;
    uint8_t *b;

    change(&r, ext, &n);
    b = encode(&r, ext, n, &len);
    g_assert_cmpint(decode(b, len, VB_REC_BACKUP, &d), ==, status);
    g_free(b);
}

static void c_ok(struct vb_rec *r, struct vb_extent *e, uint32_t *n) { (void)r; (void)e; (void)n; }
static void c_type(struct vb_rec *r, struct vb_extent *e, uint32_t *n) { (void)e; (void)n; r->type = 9; }
static void c_type0(struct vb_rec *r, struct vb_extent *e, uint32_t *n) { (void)e; (void)n; r->type = 0; }
static void c_data(struct vb_rec *r, struct vb_extent *e, uint32_t *n) { (void)e; (void)n; r->data = 7; }
static void c_dirdata(struct vb_rec *r, struct vb_extent *e, uint32_t *n) { (void)e; *n = 0; r->type = VB_FT_DIR; }
static void c_mode(struct vb_rec *r, struct vb_extent *e, uint32_t *n) { (void)e; (void)n; r->mode = 0100644; }
static void c_link(struct vb_rec *r, struct vb_extent *e, uint32_t *n) { (void)e; (void)n; r->link = "x"; r->link_len = 1; }
static void c_nolink(struct vb_rec *r, struct vb_extent *e, uint32_t *n) { (void)e; *n = 0; r->type = VB_FT_SYMLINK; r->data = 0; }
static void c_nullink(struct vb_rec *r, struct vb_extent *e, uint32_t *n) { (void)e; *n = 0; r->type = VB_FT_SYMLINK; r->data = 0; r->link = "a\0b"; r->link_len = 3; }
static void c_nsec(struct vb_rec *r, struct vb_extent *e, uint32_t *n) { (void)e; (void)n; r->atime.nsec = 1000000000; }
static void c_flags(struct vb_rec *r, struct vb_extent *e, uint32_t *n) { (void)e; (void)n; r->fsflags = 0x80000; /* e */ }
static void c_rflags(struct vb_rec *r, struct vb_extent *e, uint32_t *n) { (void)e; (void)n; r->flags = 2; }
static void c_path(struct vb_rec *r, struct vb_extent *e, uint32_t *n) { (void)e; (void)n; r->path = "a/../b"; r->path_len = 6; }
static void c_abs(struct vb_rec *r, struct vb_extent *e, uint32_t *n) { (void)e; (void)n; r->path = "/etc"; r->path_len = 4; }
static void c_nul(struct vb_rec *r, struct vb_extent *e, uint32_t *n) { (void)e; (void)n; r->path = "a\0b"; r->path_len = 3; }
static void c_xcount(struct vb_rec *r, struct vb_extent *e, uint32_t *n) { (void)e; (void)n; r->n_xattrs = 2; }
static void c_xlen(struct vb_rec *r, struct vb_extent *e, uint32_t *n) { (void)e; (void)n; r->xattr_len -= 1; }
static void c_elen(struct vb_rec *r, struct vb_extent *e, uint32_t *n) { (void)r; (void)n; e[0].length = 0; }
static void c_eflag(struct vb_rec *r, struct vb_extent *e, uint32_t *n) { (void)r; (void)n; e[0].flags = 2; }
static void c_eover(struct vb_rec *r, struct vb_extent *e, uint32_t *n) { (void)r; (void)n; e[0].logical = UINT64_MAX - 10; }
static void c_eorder(struct vb_rec *r, struct vb_extent *e, uint32_t *n)
{
    (void)r;
    e[0] = (struct vb_extent){ 8192, 0, 4096, 0, 0 };
    e[1] = (struct vb_extent){ 4096, 0, 8192, 0, 0 };
    *n = 2;
}
static void c_fbwritten(struct vb_rec *r, struct vb_extent *e, uint32_t *n) { (void)e; (void)n; r->data = VB_FD_FALLBACK; }
static void c_fbprealloc(struct vb_rec *r, struct vb_extent *e, uint32_t *n)
{
    (void)n;
    r->data = VB_FD_FALLBACK;
    e[0] = (struct vb_extent){ 1 << 21, 0, 4096, VB_EXT_UNWRITTEN, 0 };
}
static void c_fbphys(struct vb_rec *r, struct vb_extent *e, uint32_t *n)
{
    (void)n;
    r->data = VB_FD_NONE;
    e[0] = (struct vb_extent){ 0, 4096, 4096, VB_EXT_UNWRITTEN, 0 };
}
static void c_more_x(struct vb_rec *r, struct vb_extent *e, uint32_t *n) { (void)e; (void)n; r->data = VB_FD_MORE; }
static void c_more(struct vb_rec *r, struct vb_extent *e, uint32_t *n)
{
    (void)e;
    (void)n;
    r->data = VB_FD_MORE;
    r->xattrs = NULL;
    r->xattr_len = 0;
    r->n_xattrs = 0;
    r->type = 0;            /* ignored on MORE */
}

static void test_record_fields(void)
{
    expect_status(c_ok, VB_S_OK);
    expect_status(c_type, VB_S_BAD_REQUEST);
    expect_status(c_type0, VB_S_BAD_REQUEST);
    expect_status(c_data, VB_S_BAD_REQUEST);
    expect_status(c_dirdata, VB_S_BAD_REQUEST);
    expect_status(c_mode, VB_S_BAD_REQUEST);
    expect_status(c_link, VB_S_BAD_REQUEST);
    expect_status(c_nolink, VB_S_BAD_REQUEST);
    expect_status(c_nullink, VB_S_BAD_REQUEST);
    expect_status(c_nsec, VB_S_BAD_REQUEST);
    expect_status(c_flags, VB_S_BAD_REQUEST);
    expect_status(c_rflags, VB_S_BAD_REQUEST);
    expect_status(c_path, VB_S_BAD_PATH);
    expect_status(c_abs, VB_S_BAD_PATH);
    expect_status(c_nul, VB_S_BAD_PATH);
    expect_status(c_xcount, VB_S_BAD_REQUEST);
    expect_status(c_xlen, VB_S_BAD_REQUEST);
    expect_status(c_elen, VB_S_BAD_REQUEST);
    expect_status(c_eflag, VB_S_BAD_REQUEST);
    expect_status(c_eover, VB_S_OUT_OF_RANGE);
    expect_status(c_eorder, VB_S_BAD_REQUEST);
    expect_status(c_fbwritten, VB_S_BAD_REQUEST);
    expect_status(c_fbprealloc, VB_S_OK);
    expect_status(c_fbphys, VB_S_BAD_REQUEST);
    expect_status(c_more_x, VB_S_BAD_REQUEST);
    expect_status(c_more, VB_S_OK);
}

/* Lengths that lie, truncation at every byte, random bytes: refused, never a
 * read past the buffer (ASan in sanitizer builds), never a crash. */
static void test_record_hostile(void)
{
    struct vb_rec r = sample(), d;
    struct vb_extent ext[2] = { { 0, 4096, 4096, 0, 0 }, { 4096, 0, 4096, 0, 0 } };
    size_t len;
    uint8_t *b = encode(&r, ext, 2, &len), *m;
    GRand *rnd = g_rand_new_with_seed(12);
    char why[160];
    size_t used;

    for (size_t cut = 0; cut < len; cut++)
        g_assert_cmpint(decode(b, cut, VB_REC_BACKUP, &d), !=, VB_S_OK);
    /* each length field lying */
    static const size_t fields[] = { offsetof(struct vb_file_rec, path_len),
                                     offsetof(struct vb_file_rec, link_len),
                                     offsetof(struct vb_file_rec, xattr_len),
                                     offsetof(struct vb_file_rec, n_extents),
                                     offsetof(struct vb_file_rec, n_xattrs) };
    for (size_t f = 0; f < G_N_ELEMENTS(fields); f++) {
        static const uint32_t lies[] = { 1, 0xff, 0xffff, 0x10000, 0xffffffffu };
        for (size_t l = 0; l < G_N_ELEMENTS(lies); l++) {
            m = g_memdup2(b, len);
            if (fields[f] == offsetof(struct vb_file_rec, path_len) ||
                fields[f] == offsetof(struct vb_file_rec, link_len) ||
                fields[f] == offsetof(struct vb_file_rec, n_xattrs)) {
                uint16_t v = (uint16_t)lies[l];
                memcpy(m + fields[f], &v, 2);
            } else {
                memcpy(m + fields[f], &lies[l], 4);
            }
            if (!memcmp(m, b, len)) {       /* the lie is the truth (a 16-bit field) */
                g_free(m);
                continue;
            }
            g_assert_cmpint(decode(m, len, VB_REC_BACKUP, &d), !=, VB_S_OK);
            g_free(m);
        }
    }
    /* random flips: whatever the decoder accepts is consistent */
    for (int round = 0; round < 20000; round++) {
        m = g_memdup2(b, len);
        for (int k = g_rand_int_range(rnd, 1, 5); k > 0; k--)
            m[g_rand_int_range(rnd, 0, (gint32)len)] ^= (uint8_t)g_rand_int_range(rnd, 1, 256);
        if (vb_rec_decode(m, len, VB_REC_BACKUP, &d, &used, why, sizeof(why)) == VB_S_OK) {
            g_assert_cmpuint(used, <=, len);
            g_assert_null(vb_path_check(d.path, d.path_len, true));
            g_assert_null(vb_xattrs_check(d.xattrs, d.xattr_len, d.n_xattrs));
            g_assert_true(d.path >= (const char *)m && d.path + d.path_len <= (char *)m + len);
        }
        g_free(m);
    }
    g_rand_free(rnd);
    g_free(b);
}

static void test_problems(void)
{
    uint8_t b[600];
    const char *path, *reason;
    size_t pl, rl, used, n;
    char why[160], long_reason[VB_MAX_MESSAGE + 2];

    n = vb_problem_put(b, "a/\xff", 3, "cannot read: Permission denied", 30);
    g_assert_cmpint(vb_problem_decode(b, n, &path, &pl, &reason, &rl, &used, why, sizeof(why)),
                    ==, VB_S_OK);
    g_assert_cmpuint(used, ==, n);
    g_assert_cmpmem(path, pl, "a/\xff", 3);
    g_assert_cmpmem(reason, rl, "cannot read: Permission denied", 30);
    for (size_t cut = 0; cut < n; cut++)
        g_assert_cmpint(vb_problem_decode(b, cut, &path, &pl, &reason, &rl, &used, why,
                                          sizeof(why)), !=, VB_S_OK);
    n = vb_problem_put(b, "../x", 4, "r", 1);
    g_assert_cmpint(vb_problem_decode(b, n, &path, &pl, &reason, &rl, &used, why, sizeof(why)),
                    ==, VB_S_BAD_PATH);
    n = vb_problem_put(b, "x", 1, "a\nb", 3);            /* a reason cannot forge a line */
    g_assert_cmpint(vb_problem_decode(b, n, &path, &pl, &reason, &rl, &used, why, sizeof(why)),
                    ==, VB_S_BAD_REQUEST);
    n = vb_problem_put(b, "x", 1, "\xc2\x9b", 2);           /* C1 CSI, valid UTF-8 */
    g_assert_cmpint(vb_problem_decode(b, n, &path, &pl, &reason, &rl, &used, why, sizeof(why)),
                    ==, VB_S_BAD_REQUEST);
    n = vb_problem_put(b, "x", 1, "\xff", 1);
    g_assert_cmpint(vb_problem_decode(b, n, &path, &pl, &reason, &rl, &used, why, sizeof(why)),
                    ==, VB_S_BAD_REQUEST);
    memset(long_reason, 'r', sizeof(long_reason));
    n = vb_problem_put(b, "x", 1, long_reason, VB_MAX_MESSAGE + 1);
    g_assert_cmpint(vb_problem_decode(b, n, &path, &pl, &reason, &rl, &used, why, sizeof(why)),
                    ==, VB_S_BAD_REQUEST);
    n = vb_problem_put(b, "x", 1, "", 0);
    g_assert_cmpint(vb_problem_decode(b, n, &path, &pl, &reason, &rl, &used, why, sizeof(why)),
                    ==, VB_S_BAD_REQUEST);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/protolib/paths", test_paths);
    g_test_add_func("/protolib/xattr-names", test_xattr_names);
    g_test_add_func("/protolib/acl-canonical", test_acl_canonical);
    g_test_add_func("/protolib/times", test_times);
    g_test_add_func("/protolib/xattr-sections", test_xattr_sections);
    g_test_add_func("/protolib/record-roundtrip", test_record_roundtrip);
    g_test_add_func("/protolib/record-fields", test_record_fields);
    g_test_add_func("/protolib/record-hostile", test_record_hostile);
    g_test_add_func("/protolib/problems", test_problems);
    return g_test_run();
}
