/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of instant access: the folder tree a files snapshot shows in
 * the FUSE mount (hostile catalogs, and a property check over random ones:
 * every name shown is one safe component and every node's path is its
 * catalog path), the chunk cache and random access to a disk snapshot under
 * many threads with a cache much smaller than the disk, read failures that
 * are not remembered, and which snapshot a command line names.
 */
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "catalog.h"
#include "chunkcache.h"
#include "diskbackup.h"
#include "disksink.h"
#include "diskread.h"
#include "fstree.h"
#include "repo.h"
#include "resolve.h"
#include "session.h"
#include "snapread.h"
#include "vbackup/proto.h"

static char *tmp;

/* ---- the folder tree of a files snapshot --------------------------------- */

struct ent {
    const char *path;
    size_t len;              /* 0: strlen(path) */
    int type;
    const char *hardlink;    /* path of the first link */
};

static struct vb_catalog *make_catalog(const struct ent *ents, size_t n)
{
    struct vb_catb *b = vb_catb_new();
    g_autofree uint64_t *idx = g_new(uint64_t, n);
    g_autofree char *path = g_build_filename(tmp, "files.cat", NULL);
    struct vb_catalog *cat;
    uint64_t ne, nc, bytes;
    vb_error e = { 0 };
    uint8_t *blob;
    size_t len;

    for (size_t i = 0; i < n; i++) {
        struct vb_cat_entry m = { .type = (uint8_t)ents[i].type, .mode = 0644, .nlink = 1,
                                  .hardlink = VB_CAT_NONE };
        size_t l = ents[i].len ? ents[i].len : strlen(ents[i].path);
        idx[i] = vb_catb_add(b, &m, ents[i].path, l, ents[i].type == VB_FT_SYMLINK ? "t" : NULL,
                             ents[i].type == VB_FT_SYMLINK ? 1 : 0);
    }
    for (size_t i = 0; i < n; i++) {
        if (!ents[i].hardlink)
            continue;
        for (size_t k = 0; k < n; k++)
            if (!strcmp(ents[k].path, ents[i].hardlink) && k != i) {
                vb_catb_set_hardlink(b, idx[i], idx[k]);
                break;
            }
    }
    blob = vb_catb_serialize(b, &len, &ne, &nc, &bytes);
    vb_catb_free(b);
    g_assert_true(g_file_set_contents(path, (char *)blob, (gssize)len, NULL));
    g_free(blob);
    g_assert_cmpint(vb_cat_load(path, NULL, &cat, &e), ==, 0);
    return cat;
}

static bool safe_name(const char *p, size_t n)
{
    return n && n <= 255 && !memchr(p, '/', n) && !memchr(p, 0, n) &&
           !(n == 1 && p[0] == '.') && !(n == 2 && p[0] == '.' && p[1] == '.');
}

/* The path of node in the tree, joined with '/'. */
static GString *tree_path(const struct vbi_fstree *t, uint64_t node)
{
    GString *s = g_string_new(NULL);

    while (node) {
        const struct vbi_fsnode *n = &t->nodes[node];
        g_string_prepend_len(s, n->name, n->name_len);
        node = n->parent;
        if (node)
            g_string_prepend_c(s, '/');
    }
    return s;
}

/* What must hold for every tree, whatever the catalog. */
static void check_invariants(const struct vb_catalog *cat, const struct vbi_fstree *t)
{
    uint64_t shown = 0;

    g_assert_cmpuint(t->n, >=, 1);
    g_assert_true(vbi_fstree_is_dir(t, cat, 0));
    for (uint64_t i = 1; i < t->n; i++) {
        const struct vbi_fsnode *n = &t->nodes[i];
        g_assert_true(safe_name(n->name, n->name_len));
        g_assert_cmpuint(n->parent, <, t->n);
        g_assert_true(vbi_fstree_is_dir(t, cat, n->parent));
        /* found again by name in its folder: no two children share a name */
        g_assert_cmpuint(vbi_fstree_lookup(t, n->parent, n->name, n->name_len), ==, i);
        if (n->entry != VB_CAT_NONE) {
            size_t pl;
            const char *p = vb_cat_path(cat, n->entry, &pl);
            GString *tp = tree_path(t, i);
            /* a node is shown exactly where the catalog says, nowhere else */
            g_assert_cmpuint(tp->len, ==, pl);
            g_assert_true(memcmp(tp->str, p, pl) == 0);
            g_string_free(tp, TRUE);
            shown++;
            if (n->data != n->entry)
                g_assert_cmpint(cat->e[n->data].type, ==, VB_FT_REG);
            g_assert_cmpuint(n->ino_node, <, t->n);
        }
    }
    if (t->nodes[0].entry != VB_CAT_NONE)
        shown++;
    g_assert_cmpuint(shown + t->left_out, ==, cat->n);
}

static uint64_t lk(const struct vbi_fstree *t, uint64_t dir, const char *name)
{
    return vbi_fstree_lookup(t, dir, name, strlen(name));
}

static void test_fstree_hostile(void)
{
    static char nul_path[] = { 'n', 0, 'x' };
    char long_ok[256], long_bad[257];
    struct ent ents[] = {
        { "", 0, VB_FT_DIR, NULL },
        { "a", 0, VB_FT_DIR, NULL },
        { "a/f", 0, VB_FT_REG, NULL },
        { "a/../x", 0, VB_FT_REG, NULL },        /* left out: .. */
        { "b/./c", 0, VB_FT_REG, NULL },         /* left out: . */
        { "c//d", 0, VB_FT_REG, NULL },          /* left out: empty component */
        { "/abs", 0, VB_FT_REG, NULL },          /* left out: leading / */
        { "trail/", 0, VB_FT_DIR, NULL },        /* left out: trailing / */
        { "..", 0, VB_FT_DIR, NULL },            /* left out */
        { ".", 0, VB_FT_DIR, NULL },             /* left out */
        { nul_path, 3, VB_FT_REG, NULL },        /* left out: NUL */
        { "dup", 0, VB_FT_REG, NULL },
        { "dup", 0, VB_FT_DIR, NULL },           /* left out: the same path again */
        { "sym", 0, VB_FT_SYMLINK, NULL },
        { "sym/child", 0, VB_FT_REG, NULL },     /* left out: below a symlink */
        { "file", 0, VB_FT_REG, NULL },
        { "file/child", 0, VB_FT_REG, NULL },    /* left out: below a file */
        { "top/deep/x", 0, VB_FT_REG, NULL },    /* shown below made-up folders */
        { "hl", 0, VB_FT_REG, "a/f" },           /* a hard link */
        { "hl2", 0, VB_FT_REG, "a" },            /* left out: a link to a folder */
        { long_ok, 0, VB_FT_REG, NULL },
        { long_bad, 0, VB_FT_REG, NULL },        /* left out: longer than NAME_MAX */
        { "a-b", 0, VB_FT_REG, NULL },           /* sorts between "a" and "a/f" */
    };
    struct vb_catalog *cat;
    struct vbi_fstree *t;
    vb_error e = { 0 };
    uint64_t a, f, hl, top, deep;

    memset(long_ok, 'L', 255);
    long_ok[255] = 0;
    memset(long_bad, 'M', 256);
    long_bad[256] = 0;
    cat = make_catalog(ents, G_N_ELEMENTS(ents));
    g_assert_cmpint(vbi_fstree_build(cat, &t, &e), ==, 0);
    check_invariants(cat, t);
    g_assert_cmpuint(t->left_out, ==, 13);
    g_assert_cmpuint(t->nodes[0].entry, !=, VB_CAT_NONE);        /* the root entry "" */
    a = lk(t, 0, "a");
    f = lk(t, a, "f");
    hl = lk(t, 0, "hl");
    g_assert_cmpuint(a, !=, VBI_NODE_NONE);
    g_assert_cmpuint(f, !=, VBI_NODE_NONE);
    g_assert_cmpuint(hl, !=, VBI_NODE_NONE);
    g_assert_cmpuint(t->nodes[hl].ino_node, ==, f);                /* one inode */
    g_assert_cmpuint(t->nodes[hl].data, ==, t->nodes[f].entry);
    g_assert_cmpuint(lk(t, 0, ".."), ==, VBI_NODE_NONE);
    g_assert_cmpuint(lk(t, 0, "."), ==, VBI_NODE_NONE);
    g_assert_cmpuint(lk(t, 0, "x"), ==, VBI_NODE_NONE);
    g_assert_cmpuint(lk(t, 0, "abs"), ==, VBI_NODE_NONE);
    g_assert_cmpuint(lk(t, 0, "hl2"), ==, VBI_NODE_NONE);
    g_assert_cmpuint(lk(t, 0, "b"), ==, VBI_NODE_NONE);
    g_assert_cmpuint(lk(t, 0, "c"), ==, VBI_NODE_NONE);
    g_assert_cmpuint(lk(t, lk(t, 0, "sym"), "child"), ==, VBI_NODE_NONE);
    g_assert_cmpint(cat->e[t->nodes[lk(t, 0, "dup")].entry].type, ==, VB_FT_REG);
    top = lk(t, 0, "top");
    deep = lk(t, top, "deep");
    g_assert_cmpuint(t->nodes[top].entry, ==, VB_CAT_NONE);
    g_assert_cmpuint(t->nodes[deep].entry, ==, VB_CAT_NONE);
    g_assert_cmpuint(lk(t, deep, "x"), !=, VBI_NODE_NONE);
    g_assert_cmpuint(lk(t, 0, long_ok), !=, VBI_NODE_NONE);
    g_assert_cmpuint(lk(t, 0, "a-b"), !=, VBI_NODE_NONE);
    vbi_fstree_free(t);
    vb_cat_free(cat);

    /* no root entry: the root is made up; a root entry that is a file is left out */
    {
        struct ent e2[] = { { "", 0, VB_FT_REG, NULL }, { "srv/www/i", 0, VB_FT_REG, NULL } };
        cat = make_catalog(e2, 2);
        g_assert_cmpint(vbi_fstree_build(cat, &t, &e), ==, 0);
        check_invariants(cat, t);
        g_assert_cmpuint(t->nodes[0].entry, ==, VB_CAT_NONE);
        g_assert_cmpuint(t->left_out, ==, 1);
        g_assert_cmpuint(lk(t, lk(t, lk(t, 0, "srv"), "www"), "i"), !=, VBI_NODE_NONE);
        vbi_fstree_free(t);
        vb_cat_free(cat);
    }
}

/* Random catalogs of paths made of hostile pieces: the invariants hold. */
static void test_fstree_random(void)
{
    static const char *const pieces[] = { "a", "b", "a-b", ".", "..", "", "/", "x/", "/y",
                                          "\n", " ", "c" };
    int rounds = g_test_slow() ? 5000 : 500;
    GRand *r = g_rand_new_with_seed(0x5eed);

    for (int round = 0; round < rounds; round++) {
        size_t n = (size_t)g_rand_int_range(r, 0, 40);
        struct ent *ents = g_new0(struct ent, n);
        GPtrArray *keep = g_ptr_array_new_with_free_func(g_free);
        struct vb_catalog *cat;
        struct vbi_fstree *t;
        vb_error e = { 0 };

        for (size_t i = 0; i < n; i++) {
            GString *p = g_string_new(NULL);
            int parts = g_rand_int_range(r, 0, 5);
            static const int types[] = { VB_FT_REG, VB_FT_DIR, VB_FT_DIR, VB_FT_SYMLINK };
            for (int k = 0; k < parts; k++) {
                if (k)
                    g_string_append_c(p, '/');
                g_string_append(p, pieces[g_rand_int_range(r, 0, G_N_ELEMENTS(pieces))]);
            }
            ents[i].path = p->str;
            ents[i].type = types[g_rand_int_range(r, 0, 4)];
            g_ptr_array_add(keep, g_string_free(p, FALSE));
            if (i && ents[i].type == VB_FT_REG && g_rand_int_range(r, 0, 4) == 0)
                ents[i].hardlink = ents[g_rand_int_range(r, 0, (gint32)i)].path;
        }
        cat = make_catalog(ents, n);
        g_assert_cmpint(vbi_fstree_build(cat, &t, &e), ==, 0);
        check_invariants(cat, t);
        vbi_fstree_free(t);
        vb_cat_free(cat);
        g_ptr_array_free(keep, TRUE);
        g_free(ents);
    }
    g_rand_free(r);
}

/* ---- a repository with disk snapshots --------------------------------------- */

#define DISK_SIZE ((uint64_t)37 * 1048576 + 3 * 1024)   /* not a multiple of a chunk */

static char *repo_path, *image_path;
static uint8_t *image;

static char *backup(const char *vm, const char *name, const char *img)
{
    struct vb_disk_backup_opts o = { .vm = vm, .image = img, .format = "raw", .name = name,
                                     .threads = 2, .no_direct = true };
    struct vb_disk_stats st;
    struct vb_repo *r;
    struct vb_write *ws;
    vb_error e = { 0 };
    char *id = NULL;

    g_assert_cmpint(vb_repo_open(repo_path, VB_LOCK_NONE, true, &r, &e), ==, 0);
    g_assert_cmpint(vb_write_begin(r, vm, NULL, 0, &ws, &e), ==, 0);
    if (vb_disk_backup_v1(ws, &o, &st, &id, &e))
        g_error("backup: %s", vb_strerror(&e));
    vb_write_unref(ws);
    vb_repo_close(r);
    return id;
}

static void make_repo(void)
{
    vb_error e = { 0 };
    GRand *r = g_rand_new_with_seed(42);
    int fd;

    repo_path = g_build_filename(tmp, "repo", NULL);
    image_path = g_build_filename(tmp, "disk.raw", NULL);
    g_assert_cmpint(vb_repo_init(repo_path, 1, &e), ==, 0);
    image = g_malloc0(DISK_SIZE);
    /* data in some chunks, others all zeros (holes), compressible and not */
    for (uint64_t c = 0; c * VB_DISK_CHUNK < DISK_SIZE; c++) {
        uint64_t start = c * VB_DISK_CHUNK, len = VB_MIN((uint64_t)VB_DISK_CHUNK, DISK_SIZE - start);
        if (c % 3 == 1)
            continue;
        for (uint64_t i = 0; i < len; i += 4)
            *(uint32_t *)(image + start + i) = c % 2 ? g_rand_int(r) : (uint32_t)(i / 512 + c * 100000);
    }
    fd = open(image_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(vb_write_all(fd, image, DISK_SIZE), ==, 0);
    close(fd);
    g_rand_free(r);
}

struct reader {
    struct vb_diskread *d;
    guint32 seed;
    int failures;
};

static gpointer random_reads(gpointer opaque)
{
    struct reader *rd = opaque;
    GRand *r = g_rand_new_with_seed(rd->seed);
    uint8_t *buf = g_malloc(2 << 20);
    vb_error e = { 0 };

    for (int i = 0; i < 150; i++) {
        uint64_t len = (uint64_t)g_rand_int_range(r, 1, 2 << 20);
        uint64_t off = (uint64_t)g_rand_double_range(r, 0, (double)(DISK_SIZE - len));
        if (i % 10 == 0)
            off = DISK_SIZE - len;                       /* the tail */
        if (vb_diskread_pread(rd->d, buf, len, off, &e) || memcmp(buf, image + off, len))
            rd->failures++;
    }
    g_free(buf);
    g_rand_free(r);
    return NULL;
}

static void test_diskread_parallel(void)
{
    g_autofree char *id = backup("vm1", "data0", image_path);
    struct vb_sr *sr;
    struct vb_sr_snap *s;
    struct vb_ccache *c;
    struct vb_diskread *d;
    struct vb_ccache_stats st;
    struct reader rd[8];
    GThread *th[8];
    vb_error e = { 0 };
    uint8_t *buf = g_malloc(VB_DISK_CHUNK);

    g_assert_cmpint(vb_sr_open(repo_path, true, &sr, &e), ==, 0);
    g_assert_cmpint(vb_sr_snap_open(sr, id, &s, &e), ==, 0);
    g_assert_cmpint(vb_sr_snap_info(s)->kind, ==, VB_SR_DISK);
    g_assert_cmpuint(vb_sr_disk_size(s), ==, DISK_SIZE);
    c = vb_ccache_new(sr, 16 << 20);                     /* 4 chunks of a 10-chunk disk */
    g_assert_cmpint(vb_ccache_start_prefetch(c, 2, &e), ==, 0);
    d = vb_diskread_new(s, c, 4);
    for (int i = 0; i < 8; i++) {
        rd[i] = (struct reader){ .d = d, .seed = (guint32)i + 1 };
        th[i] = g_thread_new("reader", random_reads, &rd[i]);
    }
    for (int i = 0; i < 8; i++) {
        g_thread_join(th[i]);
        g_assert_cmpint(rd[i].failures, ==, 0);
    }
    /* in order, as one client reading the disk through */
    for (uint64_t off = 0; off < DISK_SIZE; off += VB_DISK_CHUNK / 2) {
        size_t n = (size_t)VB_MIN((uint64_t)VB_DISK_CHUNK / 2, DISK_SIZE - off);
        g_assert_cmpint(vb_diskread_pread(d, buf, n, off, &e), ==, 0);
        g_assert_true(memcmp(buf, image + off, n) == 0);
    }
    /* beyond the end */
    g_assert_cmpint(vb_diskread_pread(d, buf, 2, DISK_SIZE - 1, &e), ==, -EINVAL);
    /* the map: holes exactly where the disk has all-zero chunks */
    for (uint64_t off = 0; off < DISK_SIZE;) {
        uint64_t len;
        bool hole;
        vb_diskread_extent(d, off, DISK_SIZE - off, &len, &hole);
        g_assert_cmpuint(len, >, 0);
        g_assert_cmpuint(off + len, <=, DISK_SIZE);
        for (uint64_t x = off; x < off + len; x += VB_DISK_CHUNK)
            g_assert_cmpint(hole, ==, vb_is_zero(image + x, (size_t)VB_MIN((uint64_t)VB_DISK_CHUNK,
                                                                          DISK_SIZE - x)));
        off += len;
    }
    vb_ccache_stats(c, &st);
    g_assert_cmpuint(st.misses, >, 0);
    g_assert_cmpuint(st.evicted, >, 0);
    g_assert_cmpuint(st.bytes, <=, 16 << 20);
    g_assert_cmpuint(st.errors, ==, 0);
    vb_diskread_free(d);
    vb_ccache_free(c);
    vb_sr_snap_close(s);
    vb_sr_close(sr);
    g_free(buf);
}

/* A chunk that cannot be read fails every read that needs it, and is read
 * again (not remembered) once it is whole. */
static void test_chunk_failure_not_cached(void)
{
    g_autofree char *id = backup("vm2", "data0", image_path);
    struct vb_sr *sr;
    struct vb_sr_snap *s;
    struct vb_ccache *c;
    struct vb_cchunk *ch;
    const uint8_t *cid;
    char rel[80];
    g_autofree char *file = NULL;
    char *bytes;
    gsize len;
    vb_error e = { 0 };

    g_assert_cmpint(vb_sr_open(repo_path, true, &sr, &e), ==, 0);
    g_assert_cmpint(vb_sr_snap_open(sr, id, &s, &e), ==, 0);
    cid = vb_sr_disk_chunk(s, 0);
    g_assert_nonnull(cid);
    vb_repo_chunk_relpath(cid, rel);
    file = g_build_filename(repo_path, "chunks", rel, NULL);     /* version 1 layout */
    g_assert_true(g_file_get_contents(file, &bytes, &len, NULL));
    bytes[len - 1] ^= 1;
    g_assert_true(g_file_set_contents(file, bytes, (gssize)len, NULL));
    c = vb_ccache_new(sr, 64 << 20);
    for (int i = 0; i < 2; i++) {
        g_assert_cmpint(vb_ccache_get(c, NULL, cid, VB_DISK_CHUNK, &ch, &e), ==, -EBADMSG);
        g_assert_nonnull(strstr(e.msg, "chunk"));
    }
    bytes[len - 1] ^= 1;
    g_assert_true(g_file_set_contents(file, bytes, (gssize)len, NULL));
    g_assert_cmpint(vb_ccache_get(c, NULL, cid, VB_DISK_CHUNK, &ch, &e), ==, 0);
    g_assert_true(memcmp(vb_cchunk_data(ch), image, VB_DISK_CHUNK) == 0);
    vb_cchunk_release(c, ch);
    /* the same id asked for with another length is refused */
    g_assert_cmpint(vb_ccache_get(c, NULL, cid, 4096, &ch, &e), ==, -EBADMSG);
    vb_ccache_free(c);
    vb_sr_snap_close(s);
    vb_sr_close(sr);
    g_free(bytes);
}

static void test_resolve(void)
{
    g_autofree char *id1 = backup("vm3", "sda", image_path);
    g_autofree char *id2 = NULL, *id3 = NULL;
    struct vb_sr_info *i = NULL;
    struct vb_sr *sr;
    vb_error e = { 0 };

    g_assert_cmpint(vb_sr_open(repo_path, true, &sr, &e), ==, 0);
    g_assert_cmpint(vbi_resolve_disk(sr, "vm3", NULL, &i, &e), ==, 0);
    g_assert_cmpstr(i->id, ==, id1);
    g_assert_cmpstr(i->disk, ==, "sda");
    g_assert_cmpuint(i->size, ==, DISK_SIZE);
    vb_sr_info_free(i);
    id2 = backup("vm3", "sda", image_path);
    id3 = backup("vm3", "sdb", image_path);
    g_assert_cmpint(vbi_resolve_disk(sr, "vm3", NULL, &i, &e), ==, -EINVAL);
    g_assert_nonnull(strstr(e.msg, "several disks"));
    g_assert_cmpint(vbi_resolve_disk(sr, "vm3", "sda", &i, &e), ==, 0);
    g_assert_cmpstr(i->id, ==, id2);                     /* the newest of that disk */
    vb_sr_info_free(i);
    g_assert_cmpint(vbi_resolve_disk(sr, id1, NULL, &i, &e), ==, 0);
    g_assert_cmpstr(i->id, ==, id1);
    vb_sr_info_free(i);
    g_assert_cmpint(vbi_resolve_disk(sr, id1, "sdb", &i, &e), ==, -ENOENT);
    g_assert_cmpint(vbi_resolve_disk(sr, "vm3", "sdc", &i, &e), ==, -ENOENT);
    g_assert_cmpint(vbi_resolve_disk(sr, "nosuchvm", NULL, &i, &e), ==, -ENOENT);
    g_assert_cmpint(vbi_resolve_disk(sr, "../etc", NULL, &i, &e), <, 0);
    g_assert_cmpint(vbi_resolve_disk(sr, "vm3/../../x", NULL, &i, &e), ==, -EINVAL);
    vb_sr_close(sr);
}

int main(int argc, char **argv)
{
    int ret;

    g_test_init(&argc, &argv, NULL);
    tmp = g_dir_make_tmp("test-instant.XXXXXX", NULL);
    make_repo();
    g_test_add_func("/instant/fstree/hostile", test_fstree_hostile);
    g_test_add_func("/instant/fstree/random", test_fstree_random);
    g_test_add_func("/instant/diskread/parallel", test_diskread_parallel);
    g_test_add_func("/instant/chunkcache/failure-not-cached", test_chunk_failure_not_cached);
    g_test_add_func("/instant/resolve", test_resolve);
    ret = g_test_run();
    vb_rm_rf_at(AT_FDCWD, tmp);
    g_free(tmp);
    g_free(repo_path);
    g_free(image_path);
    g_free(image);
    return ret;
}
