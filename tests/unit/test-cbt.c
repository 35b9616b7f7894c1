/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of changed-block tracking's pure parts (hostd/lib/cbt.c): the
 * tracking record (its JSON, damaged forms, its file), what the record
 * proves about a chain and a repository — each way it fails, with its
 * reason —, and the change set split by chunk.
 */
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cbt.h"
#include "overlay.h"

static char *dir;

static struct vb_cbt_record *record(void)
{
    struct vb_cbt_record *r = g_new0(struct vb_cbt_record, 1);

    r->vm = g_strdup("web1");
    r->disk = g_strdup("data0");
    r->image = g_strdup("/images/web1.raw");
    r->format = g_strdup("raw");
    r->overlay = g_strdup("/images/web1.raw.vbackup-7.qcow2");
    r->ready = true;
    r->job = 7;
    r->size = 64 << 20;
    r->overlay_dev = 5;
    r->overlay_ino = 100;
    r->n_chain = 2;
    r->chain = g_new0(char *, 2);
    r->ids = g_new0(struct vb_file_id, 2);
    r->chain[0] = g_strdup("/images/web1.raw");
    r->chain[1] = g_strdup("/images/golden.qcow2");
    r->ids[0] = (struct vb_file_id){ 5, 101, 64 << 20, 1000 };
    r->ids[1] = (struct vb_file_id){ 5, 102, 1 << 20, 2000 };
    r->basis_repo = g_strdup("/srv/vbackup");
    r->basis = g_strdup("web1/2026-01-01T00:00:00Z");
    return r;
}

static struct vb_cbt_record *roundtrip(const struct vb_cbt_record *r, vb_error *e)
{
    json_object *o = vb_cbt_to_json(r);
    const char *s = json_object_to_json_string(o);
    json_object *p = json_tokener_parse(s);
    struct vb_cbt_record *back = vb_cbt_from_json(p, e);

    json_object_put(o);
    json_object_put(p);
    return back;
}

static void test_json(void)
{
    struct vb_cbt_record *r = record(), *b;
    vb_error e = { 0 };

    b = roundtrip(r, &e);
    g_assert_nonnull(b);
    g_assert_cmpstr(b->overlay, ==, r->overlay);
    g_assert_cmpstr(b->basis, ==, r->basis);
    g_assert_true(b->ready);
    g_assert_cmpuint(b->n_chain, ==, 2);
    g_assert_true(vb_file_id_same(&b->ids[1], &r->ids[1]));
    g_assert_cmpuint(b->overlay_ino, ==, 100);
    vb_cbt_free(b);

    /* pending: no basis needed, a previous overlay named */
    r->ready = false;
    r->previous = g_strdup("/images/web1.raw.vbackup-3.qcow2");
    b = roundtrip(r, &e);
    g_assert_nonnull(b);
    g_assert_false(b->ready);
    g_assert_null(b->basis);
    g_assert_true(vb_cbt_names_overlay(b, "/images/web1.raw.vbackup-3.qcow2"));
    g_assert_true(vb_cbt_names_overlay(b, "/images/web1.raw.vbackup-7.qcow2"));
    g_assert_false(vb_cbt_names_overlay(b, "/images/web1.raw"));
    vb_cbt_free(b);
    vb_cbt_free(r);
}

/* every damaged form is refused, none crashes */
static void test_json_damaged(void)
{
    static const char *const bad[] = {
        "[]", "{}", "{\"version\": 2}",
        /* relative paths, unknown state, bad format, chain not starting with the image */
        "{\"version\":1,\"vm\":\"a\",\"disk\":\"d\",\"state\":\"pending\",\"image\":\"i\","
        "\"format\":\"raw\",\"overlay\":\"/o\",\"chain\":[{\"path\":\"/i\",\"id\":{\"dev\":1,"
        "\"ino\":1,\"size\":1,\"mtime_ns\":1}}]}",
        "{\"version\":1,\"vm\":\"a\",\"disk\":\"d\",\"state\":\"maybe\",\"image\":\"/i\","
        "\"format\":\"raw\",\"overlay\":\"/o\",\"chain\":[{\"path\":\"/i\",\"id\":{\"dev\":1,"
        "\"ino\":1,\"size\":1,\"mtime_ns\":1}}]}",
        "{\"version\":1,\"vm\":\"a\",\"disk\":\"d\",\"state\":\"pending\",\"image\":\"/i\","
        "\"format\":\"vmdk\",\"overlay\":\"/o\",\"chain\":[{\"path\":\"/i\",\"id\":{\"dev\":1,"
        "\"ino\":1,\"size\":1,\"mtime_ns\":1}}]}",
        "{\"version\":1,\"vm\":\"a\",\"disk\":\"d\",\"state\":\"pending\",\"image\":\"/i\","
        "\"format\":\"raw\",\"overlay\":\"/o\",\"chain\":[{\"path\":\"/j\",\"id\":{\"dev\":1,"
        "\"ino\":1,\"size\":1,\"mtime_ns\":1}}]}",
        /* an identity without its mtime; an empty chain; a ready record without basis */
        "{\"version\":1,\"vm\":\"a\",\"disk\":\"d\",\"state\":\"pending\",\"image\":\"/i\","
        "\"format\":\"raw\",\"overlay\":\"/o\",\"chain\":[{\"path\":\"/i\",\"id\":{\"dev\":1,"
        "\"ino\":1,\"size\":1}}]}",
        "{\"version\":1,\"vm\":\"a\",\"disk\":\"d\",\"state\":\"pending\",\"image\":\"/i\","
        "\"format\":\"raw\",\"overlay\":\"/o\",\"chain\":[]}",
        "{\"version\":1,\"vm\":\"a\",\"disk\":\"d\",\"state\":\"ready\",\"image\":\"/i\","
        "\"format\":\"raw\",\"overlay\":\"/o\",\"chain\":[{\"path\":\"/i\",\"id\":{\"dev\":1,"
        "\"ino\":1,\"size\":1,\"mtime_ns\":1}}]}",
        "{\"version\":1,\"vm\":\"a\",\"disk\":\"d\",\"state\":\"ready\",\"image\":\"/i\","
        "\"format\":\"raw\",\"overlay\":\"/o\",\"chain\":[{\"path\":\"/i\",\"id\":{\"dev\":1,"
        "\"ino\":1,\"size\":1,\"mtime_ns\":1}}],\"basis\":{\"repository\":\"/r\","
        "\"snapshot\":\"../../etc\"}}",
    };

    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        json_object *o = json_tokener_parse(bad[i]);
        vb_error e = { 0 };
        struct vb_cbt_record *r = vb_cbt_from_json(o, &e);
        if (r)
            g_error("damaged record %zu accepted: %s", i, bad[i]);
        g_assert_cmpint(e.code, ==, -EINVAL);
        json_object_put(o);
    }
    g_assert_null(vb_cbt_from_json(NULL, NULL));
}

static void test_file(void)
{
    struct vb_cbt_record *r = record(), *b = NULL;
    char path[4096];
    vb_error e = { 0 };

    g_assert_cmpint(vb_cbt_load(dir, "web1", "data0", &b, &e), ==, -ENOENT);
    g_assert_cmpint(vb_cbt_save(dir, r, &e), ==, 0);
    g_assert_cmpint(r->written_ns, >, 0);
    g_assert_cmpint(vb_cbt_load(dir, "web1", "data0", &b, &e), ==, 0);
    g_assert_cmpstr(b->basis, ==, r->basis);
    vb_cbt_free(b);
    /* a record found under another disk's name is refused */
    g_assert_cmpint(vb_cbt_path(dir, "web1", "data0", path, sizeof(path)), ==, 0);
    {
        g_autofree char *other = g_strdup_printf("%s/cbt/web1/data1.json", dir);
        g_assert_cmpint(rename(path, other), ==, 0);
        g_assert_cmpint(vb_cbt_load(dir, "web1", "data1", &b, &e), ==, -EINVAL);
        g_assert_null(b);
        g_assert_cmpint(vb_cbt_forget(dir, "web1", "data1", &e), ==, 0);
        g_assert_cmpint(vb_cbt_load(dir, "web1", "data1", &b, &e), ==, -ENOENT);
    }
    /* damaged */
    g_assert_true(g_file_set_contents(path, "{\"version\": 1", -1, NULL));
    g_assert_cmpint(vb_cbt_load(dir, "web1", "data0", &b, &e), ==, -EINVAL);
    /* serials that are not file names are encoded; VM names must be names */
    g_assert_cmpint(vb_cbt_path(dir, "web1", "a/b c", path, sizeof(path)), ==, 0);
    g_assert_nonnull(strstr(path, "/cbt/web1/x-612f622063.json"));
    g_assert_cmpint(vb_cbt_path(dir, "../x", "d", path, sizeof(path)), ==, -ENAMETOOLONG);
    vb_cbt_free(r);
}

/* the chain QEMU runs, as the record would have it */
struct chain {
    const char *files[3];
    struct vb_file_id ids[3];
    struct vb_cbt_chain c;
};

static void good_chain(struct chain *k, const struct vb_cbt_record *r)
{
    k->files[0] = r->overlay;
    k->files[1] = r->chain[0];
    k->files[2] = r->chain[1];
    k->ids[0] = (struct vb_file_id){ r->overlay_dev, r->overlay_ino, 12345, 99999 };
    k->ids[1] = r->ids[0];
    k->ids[2] = r->ids[1];
    k->c = (struct vb_cbt_chain){ .n = 3, .files = k->files, .ids = k->ids, .size = r->size,
                                  .top_is_qcow2 = true };
}

static void expect_no(const struct vb_cbt_record *r, const struct chain *k, const char *want)
{
    char why[256] = "";

    g_assert_false(vb_cbt_chain_proves(r, &k->c, why, sizeof(why)));
    if (!strstr(why, want))
        g_error("expected a reason with '%s', got '%s'", want, why);
}

static void test_chain_proves(void)
{
    struct vb_cbt_record *r = record();
    struct chain k;
    char why[256];

    good_chain(&k, r);
    g_assert_true(vb_cbt_chain_proves(r, &k.c, why, sizeof(why)));
    /* the overlay's own size and mtime change all the time: not a reason */
    k.ids[0].size++;
    g_assert_true(vb_cbt_chain_proves(r, &k.c, why, sizeof(why)));

    expect_no(NULL, &k, "no tracking record");
    r->ready = false;
    expect_no(r, &k, "not bound to a backup");
    r->ready = true;
    /* QEMU restarted on the image itself (its writes since are in the image) */
    good_chain(&k, r);
    k.files[0] = r->image;
    expect_no(r, &k, "runs on its image, not on its tracking overlay");
    k.files[0] = "/images/else.qcow2";
    expect_no(r, &k, "does not run on its tracking overlay");
    good_chain(&k, r);
    k.c.top_is_qcow2 = false;
    expect_no(r, &k, "not read as qcow2");
    good_chain(&k, r);
    k.ids[0].ino = 7;
    expect_no(r, &k, "overlay was replaced");
    good_chain(&k, r);
    k.c.n = 2;
    expect_no(r, &k, "has 1 files, not 2");
    good_chain(&k, r);
    k.files[2] = "/images/other-golden.qcow2";
    expect_no(r, &k, "chain under the tracking overlay changed");
    /* another tool wrote the image (mtime), or replaced it (restore: inode) */
    good_chain(&k, r);
    k.ids[1].mtime_ns++;
    expect_no(r, &k, "the disk's image was written since the last backup");
    good_chain(&k, r);
    k.ids[1].ino++;
    expect_no(r, &k, "the disk's image was replaced");
    good_chain(&k, r);
    k.ids[2].size++;
    expect_no(r, &k, "a backing file of the disk's image was written");
    good_chain(&k, r);
    k.c.size += 1 << 20;
    expect_no(r, &k, "the disk was resized");
    vb_cbt_free(r);
}

static void test_basis_proves(void)
{
    struct vb_cbt_record *r = record();
    struct vb_cbt_repo_facts f = { .repo = "/srv/vbackup", .newest = r->basis,
                                   .newest_size = r->size, .newest_chunk_size = 4 << 20 };
    char why[256];

    g_assert_true(vb_cbt_basis_proves(r, &f, why, sizeof(why)));
    f.repo = "/srv/other";
    g_assert_false(vb_cbt_basis_proves(r, &f, why, sizeof(why)));
    g_assert_nonnull(strstr(why, "another repository"));
    f.repo = "/srv/vbackup";
    f.newest = NULL;
    g_assert_false(vb_cbt_basis_proves(r, &f, why, sizeof(why)));
    g_assert_nonnull(strstr(why, "holds no backup of this disk"));
    f.newest = "web1/2026-01-02T00:00:00Z";
    g_assert_false(vb_cbt_basis_proves(r, &f, why, sizeof(why)));
    g_assert_nonnull(strstr(why, "not from the newest backup"));
    f.newest = r->basis;
    f.newest_size = 1;
    g_assert_false(vb_cbt_basis_proves(r, &f, why, sizeof(why)));
    g_assert_nonnull(strstr(why, "of a disk of 1 bytes"));
    r->ready = false;
    f.newest_size = r->size;
    g_assert_false(vb_cbt_basis_proves(r, &f, why, sizeof(why)));
    vb_cbt_free(r);
}

static GArray *ranges(const uint64_t *v, size_t n)
{
    GArray *a = g_array_new(FALSE, FALSE, sizeof(struct vb_cbt_range));

    for (size_t i = 0; i + 1 < n; i += 2) {
        struct vb_cbt_range r = { v[i], v[i + 1] };
        g_array_append_val(a, r);
    }
    return a;
}

static void test_plan(void)
{
    const uint64_t M = 1 << 20, C = 4 * M;
    /* one inside chunk 0, one across chunks 1-3, one touching the next, one at the end */
    const uint64_t v[] = { 4096, 8192, C + M, 2 * C + 100, 3 * C + M + 100, 4096,
                           10 * C - 512, 512 };
    GArray *a = ranges(v, G_N_ELEMENTS(v));
    struct vb_cbt_plan p;
    struct vb_cbt_range *x;

    g_assert_cmpint(vb_cbt_plan_build(a, 10 * C, C, &p), ==, 0);
    g_assert_cmpuint(p.n_chunks, ==, 10);
    g_assert_cmpuint(p.runs, ==, 3);            /* the second and third touch */
    g_assert_cmpuint(p.bytes, ==, 8192 + 2 * C + 100 + 4096 + 512);
    g_assert_cmpuint(p.chunks_changed, ==, 5);  /* 0, 1, 2, 3, 9 */
    g_assert_cmpuint(p.count[0], ==, 1);
    g_assert_cmpuint(p.count[1], ==, 1);
    g_assert_cmpuint(p.count[2], ==, 1);
    g_assert_cmpuint(p.count[3], ==, 2);
    g_assert_cmpuint(p.count[4], ==, 0);
    g_assert_cmpuint(p.count[9], ==, 1);
    x = &g_array_index(p.ranges, struct vb_cbt_range, p.first[1]);
    g_assert_cmpuint(x->off, ==, C + M);
    g_assert_cmpuint(x->len, ==, 3 * M);
    x = &g_array_index(p.ranges, struct vb_cbt_range, p.first[3]);
    g_assert_cmpuint(x->off, ==, 3 * C);
    g_assert_cmpuint(x->len, ==, M + 100);
    x = &g_array_index(p.ranges, struct vb_cbt_range, p.first[3] + 1);
    g_assert_cmpuint(x->off, ==, 3 * C + M + 100);
    vb_cbt_plan_clear(&p);
    g_array_free(a, TRUE);

    /* nothing changed */
    a = ranges(NULL, 0);
    g_assert_cmpint(vb_cbt_plan_build(a, 5 * C + 1, C, &p), ==, 0);
    g_assert_cmpuint(p.n_chunks, ==, 6);
    g_assert_cmpuint(p.bytes + p.runs + p.chunks_changed, ==, 0);
    vb_cbt_plan_clear(&p);
    g_array_free(a, TRUE);

    /* refused: overlapping, out of order, past the end, empty, no chunk size */
    {
        const uint64_t overlap[] = { 0, 8192, 4096, 4096 };
        const uint64_t order[] = { C, 4096, 0, 4096 };
        const uint64_t past[] = { 10 * C - 4096, 8192 };
        const uint64_t empty[] = { 4096, 0 };
        const uint64_t wrap[] = { 4096, UINT64_MAX };
        const uint64_t *bad[] = { overlap, order, past, empty, wrap };
        const size_t nbad[] = { 4, 4, 2, 2, 2 };
        for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
            a = ranges(bad[i], nbad[i]);
            g_assert_cmpint(vb_cbt_plan_build(a, 10 * C, C, &p), ==, -EINVAL);
            g_assert_null(p.ranges);
            g_array_free(a, TRUE);
        }
        a = ranges(NULL, 0);
        g_assert_cmpint(vb_cbt_plan_build(a, 10 * C, 0, &p), ==, -EINVAL);
        g_array_free(a, TRUE);
    }
}

/* the change set of an overlay vb_overlay_create made: empty, and it
 * refuses what it cannot be */
static void test_overlay(void)
{
    g_autofree char *base = g_build_filename(dir, "base.raw", NULL);
    g_autofree char *ovl = g_build_filename(dir, "base.raw.ovl.qcow2", NULL);
    struct vb_image_opts io = { .format = "qcow2" };
    struct vb_image *img;
    GArray *a = g_array_new(FALSE, FALSE, sizeof(struct vb_cbt_range));
    vb_error e = { 0 };
    FILE *f = fopen(base, "w");

    g_assert_nonnull(f);
    g_assert_cmpint(ftruncate(fileno(f), 96 << 20), ==, 0);
    fclose(f);
    g_assert_cmpint(vb_overlay_create(ovl, 96 << 20, "base.raw", "raw", getuid(), getgid(),
                                      0600, &e), ==, -EINVAL);     /* not absolute */
    g_assert_cmpint(vb_overlay_create(ovl, 1000, base, "raw", getuid(), getgid(), 0600, &e),
                    ==, -EINVAL);                                   /* not whole sectors */
    g_assert_cmpint(vb_overlay_create(ovl, 96 << 20, base, "vmdk", getuid(), getgid(), 0600,
                                      &e), ==, -EINVAL);
    g_assert_cmpint(access(ovl, F_OK), !=, 0);
    g_assert_cmpint(vb_overlay_create(ovl, 96 << 20, base, "raw", getuid(), getgid(), 0640, &e),
                    ==, 0);
    g_assert_cmpint(vb_overlay_create(ovl, 96 << 20, base, "raw", getuid(), getgid(), 0640, &e),
                    ==, -EEXIST);
    g_assert_cmpint(vb_image_open(ovl, &io, &img, &e), ==, 0);
    g_assert_cmpint(img->n, ==, 2);
    g_assert_cmpuint(img->size, ==, 96 << 20);
    g_assert_cmpuint(img->cluster_size, ==, VB_OVERLAY_CLUSTER);
    g_assert_cmpint(vb_cbt_changes(img, a, &e), ==, 0);
    g_assert_cmpuint(a->len, ==, 0);
    vb_image_close(img);
    /* a raw top is no tracking overlay */
    io.format = "raw";
    g_assert_cmpint(vb_image_open(base, &io, &img, &e), ==, 0);
    g_assert_cmpint(vb_cbt_changes(img, a, &e), ==, -EINVAL);
    vb_image_close(img);
    g_array_free(a, TRUE);
}

int main(int argc, char **argv)
{
    int r;

    g_test_init(&argc, &argv, NULL);
    dir = g_dir_make_tmp("test-cbt.XXXXXX", NULL);
    g_assert_nonnull(dir);
    g_test_add_func("/cbt/json", test_json);
    g_test_add_func("/cbt/json-damaged", test_json_damaged);
    g_test_add_func("/cbt/file", test_file);
    g_test_add_func("/cbt/chain-proves", test_chain_proves);
    g_test_add_func("/cbt/basis-proves", test_basis_proves);
    g_test_add_func("/cbt/plan", test_plan);
    g_test_add_func("/cbt/overlay", test_overlay);
    r = g_test_run();
    {
        g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", dir);
        if (system(cmd) != 0)
            r = r ? r : 1;
    }
    g_free(dir);
    return r;
}
