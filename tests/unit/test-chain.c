/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of hostd/vbackupd/chain.c: disk chains read from query-block
 * answers as QEMU 7.2 gives them (-drive, where layers are paths, and
 * libvirt's -blockdev, where the active layer is a json: pseudo-filename),
 * the comparisons the point-in-time view makes with them, the journal's
 * form, and the identity that tells an image was written.
 */
#include <glib.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chain.h"

static char *dir;

static char *file(const char *name)
{
    char *p = g_build_filename(dir, name, NULL);

    if (!g_file_test(p, G_FILE_TEST_EXISTS))
        g_assert_true(g_file_set_contents(p, "x", 1, NULL));
    return p;
}

/* query-block of one -drive disk: top over mid over base, as paths */
static json_object *drive_blocks(const char *top, const char *mid, const char *base)
{
    g_autofree char *s = g_strdup_printf(
        "[{\"device\": \"disk0\", \"qdev\": \"/machine/peripheral-anon/device[0]/virtio-backend\","
        "  \"inserted\": {\"node-name\": \"#block143\", \"file\": \"%s\", \"image\": {"
        "    \"filename\": \"%s\", \"format\": \"qcow2\", \"backing-image\": {"
        "      \"filename\": \"%s\", \"format\": \"qcow2\", \"backing-image\": {"
        "        \"filename\": \"%s\", \"format\": \"raw\"}}}}},"
        " {\"device\": \"cd0\", \"qdev\": \"\", \"removable\": true}]",
        top, top, mid, base);
    json_object *o = json_tokener_parse(s);

    g_assert_nonnull(o);
    return o;
}

static void test_drive(void)
{
    g_autofree char *top = file("a.qcow2"), *mid = file("mid.qcow2"), *base = file("base.raw");
    g_autofree char *other = file("other.raw");
    json_object *b = drive_blocks(top, mid, base);
    struct vbd_chain *c = vbd_chain_with(b, base), *k;

    g_assert_nonnull(c);
    g_assert_cmpuint(c->files->len, ==, 3);
    g_assert_cmpstr(c->files->pdata[0], ==, top);
    g_assert_cmpstr(c->files->pdata[2], ==, base);
    g_assert_cmpstr(c->key, ==, "/machine/peripheral-anon/device[0]/virtio-backend");
    g_assert_cmpstr(c->device, ==, "disk0");
    g_assert_cmpstr(c->node, ==, "#block143");
    g_assert_null(vbd_chain_with(b, other));
    k = vbd_chain_by_key(b, c->key);
    g_assert_true(vbd_chain_equal(c, k));
    g_assert_null(vbd_chain_by_key(b, "nothing"));
    g_assert_null(vbd_chain_by_key(b, NULL));
    {
        g_autofree char *s = vbd_chain_str(c), *disks = vbd_chain_disks(b);
        g_autofree char *want = g_strdup_printf("%s -> %s -> %s", top, mid, base);
        g_assert_cmpstr(s, ==, want);
        g_assert_cmpstr(disks, ==, top);
    }
    vbd_chain_free(k);
    vbd_chain_free(c);
    json_object_put(b);
}

/* the same disk under an overlay, and after commits that went wrong */
static void test_over(void)
{
    g_autofree char *top = file("a.qcow2"), *mid = file("mid.qcow2"), *base = file("base.raw");
    g_autofree char *ov = file("a.qcow2.vbackup-7.qcow2");
    json_object *b0 = drive_blocks(top, mid, base);
    g_autofree char *s = g_strdup_printf(
        "[{\"device\": \"disk0\", \"qdev\": \"q\", \"inserted\": {\"node-name\": \"vb-7-0\","
        "  \"image\": {\"filename\": \"%s\", \"backing-image\": {\"filename\": \"%s\","
        "  \"backing-image\": {\"filename\": \"%s\","
        "  \"backing-image\": {\"filename\": \"%s\"}}}}}}]",
        ov, top, mid, base);
    json_object *b1 = json_tokener_parse(s);
    struct vbd_chain *before = vbd_chain_with(b0, top), *now = vbd_chain_with(b1, top);
    struct vbd_chain *merged;
    g_autofree char *m = g_strdup_printf(
        "[{\"device\": \"disk0\", \"qdev\": \"q\","
        "  \"inserted\": {\"image\": {\"filename\": \"%s\"}}}]",
        base);
    json_object *b2 = json_tokener_parse(m);

    g_assert_true(vbd_chain_is_over(now, ov, before));
    g_assert_false(vbd_chain_is_over(now, top, before));
    g_assert_false(vbd_chain_is_over(before, ov, before));
    g_assert_false(vbd_chain_equal(now, before));
    /* a commit into the bottom image: the VM runs on the base */
    merged = vbd_chain_with(b2, base);
    g_assert_nonnull(merged);
    g_assert_false(vbd_chain_equal(merged, before));
    g_assert_null(vbd_chain_with(b2, top));
    vbd_chain_free(merged);
    vbd_chain_free(before);
    vbd_chain_free(now);
    json_object_put(b0);
    json_object_put(b1);
    json_object_put(b2);
}

/* libvirt's -blockdev: the active layer's name is a json: pseudo-filename */
static void test_blockdev_json(void)
{
    g_autofree char *top = file("l.qcow2"), *base = file("lbase.raw");
    g_autofree char *s = g_strdup_printf(
        "[{\"io-status\": \"ok\", \"device\": \"\", \"locked\": false, \"inserted\": {"
        "  \"image\": {\"backing-image\": {\"filename\": \"%s\", \"format\": \"raw\"},"
        "  \"filename\": \"json:{\\\"backing\\\": {\\\"driver\\\": \\\"raw\\\", \\\"file\\\": "
        "{\\\"driver\\\": \\\"file\\\", \\\"filename\\\": \\\"%s\\\"}}, \\\"driver\\\": "
        "\\\"qcow2\\\", \\\"file\\\": {\\\"driver\\\": \\\"file\\\", \\\"filename\\\": "
        "\\\"%s\\\"}}\", \"format\": \"qcow2\"},"
        "  \"node-name\": \"libvirt-1-format\", \"drv\": \"qcow2\"},"
        " \"qdev\": \"/machine/peripheral/virtio-disk0/virtio-backend\"}]",
        base, base, top);
    json_object *b = json_tokener_parse(s);
    struct vbd_chain *c;

    g_assert_nonnull(b);
    c = vbd_chain_with(b, top);
    g_assert_nonnull(c);
    g_assert_cmpuint(c->files->len, ==, 2);
    g_assert_cmpstr(c->files->pdata[0], ==, top);
    g_assert_cmpstr(c->files->pdata[1], ==, base);
    g_assert_cmpstr(c->key, ==, "/machine/peripheral/virtio-disk0/virtio-backend");
    g_assert_cmpstr(c->device, ==, "libvirt-1-format");     /* no device name: the node */
    vbd_chain_free(c);
    json_object_put(b);
}

static void test_image_path(void)
{
    g_autofree char *top = file("p.qcow2");
    g_autofree char *rel = g_build_filename(dir, "sub", "..", "p.qcow2", NULL);
    g_autofree char *sub = g_build_filename(dir, "sub", NULL);
    g_autofree char *gone = g_build_filename(dir, "gone.qcow2", NULL);
    char *p;

    g_assert_cmpint(g_mkdir_with_parents(sub, 0700), ==, 0);
    p = vbd_image_path(rel);
    g_assert_cmpstr(p, ==, top);
    g_free(p);
    p = vbd_image_path(gone);               /* deleted: as named */
    g_assert_cmpstr(p, ==, gone);
    g_free(p);
    p = vbd_image_path("json:{\"driver\": \"qcow2\", \"file\": \"node-ref\"}");
    g_assert_cmpstr(p, ==, "json:{\"driver\": \"qcow2\", \"file\": \"node-ref\"}");
    g_free(p);
    p = vbd_image_path("json:{broken");
    g_assert_cmpstr(p, ==, "json:{broken");
    g_free(p);
    p = vbd_image_path(NULL);
    g_assert_cmpstr(p, ==, "");
    g_free(p);
}

static void test_json_roundtrip(void)
{
    g_autofree char *top = file("a.qcow2"), *mid = file("mid.qcow2"), *base = file("base.raw");
    json_object *b = drive_blocks(top, mid, base), *o;
    struct vbd_chain *c = vbd_chain_with(b, top), *r;

    o = vbd_chain_to_json(c);
    r = vbd_chain_from_json(o);
    g_assert_nonnull(r);
    g_assert_true(vbd_chain_equal(c, r));
    g_assert_cmpstr(r->key, ==, c->key);
    g_assert_cmpstr(r->device, ==, c->device);
    g_assert_cmpstr(r->node, ==, c->node);
    json_object_put(o);
    o = json_tokener_parse("{\"key\": \"k\", \"files\": []}");
    g_assert_null(vbd_chain_from_json(o));      /* an empty chain is no chain */
    json_object_put(o);
    vbd_chain_free(r);
    vbd_chain_free(c);
    json_object_put(b);
}

static void test_file_id(void)
{
    g_autofree char *f = file("id.raw");
    g_autofree char *gone = g_build_filename(dir, "nope", NULL);
    struct vbd_file_id a, b, c;
    struct timespec ts[2] = { { 0, UTIME_OMIT }, { 1000, 0 } };
    json_object *o;
    vb_error e = { 0 };
    FILE *fp;

    g_assert_cmpint(vbd_file_id_get(f, &a, NULL), ==, 0);
    g_assert_cmpint(vbd_file_id_get(f, &b, NULL), ==, 0);
    g_assert_true(vbd_file_id_same(&a, &b));
    /* a chown or chmod (libvirt labels images) is no write */
    g_assert_cmpint(chmod(f, 0640), ==, 0);
    g_assert_cmpint(vbd_file_id_get(f, &b, NULL), ==, 0);
    g_assert_true(vbd_file_id_same(&a, &b));
    /* a write in place that keeps the size still moves mtime */
    g_assert_cmpint(utimensat(AT_FDCWD, f, ts, 0), ==, 0);
    g_assert_cmpint(vbd_file_id_get(f, &a, NULL), ==, 0);
    fp = fopen(f, "r+");
    g_assert_nonnull(fp);
    fputc('y', fp);
    fclose(fp);
    g_assert_cmpint(vbd_file_id_get(f, &b, NULL), ==, 0);
    g_assert_cmpuint(a.size, ==, b.size);
    g_assert_false(vbd_file_id_same(&a, &b));
    o = vbd_file_id_to_json(&b);
    g_assert_true(vbd_file_id_from_json(o, &c));
    g_assert_true(vbd_file_id_same(&b, &c));
    json_object_put(o);
    g_assert_false(vbd_file_id_from_json(NULL, &c));
    g_assert_cmpint(vbd_file_id_get(gone, &c, &e), ==, -ENOENT);
    g_assert_nonnull(strstr(e.msg, "nope"));
}

int main(int argc, char **argv)
{
    int r;

    g_test_init(&argc, &argv, NULL);
    dir = g_dir_make_tmp("test-chain.XXXXXX", NULL);
    g_assert_nonnull(dir);
    {
        /* realpath() of the folder, so that expected paths compare equal */
        char *real = realpath(dir, NULL);
        g_free(dir);
        dir = g_strdup(real);
        free(real);
    }
    g_test_add_func("/chain/drive", test_drive);
    g_test_add_func("/chain/over-and-merged", test_over);
    g_test_add_func("/chain/blockdev-json", test_blockdev_json);
    g_test_add_func("/chain/image-path", test_image_path);
    g_test_add_func("/chain/json-roundtrip", test_json_roundtrip);
    g_test_add_func("/chain/file-id", test_file_id);
    r = g_test_run();
    {
        g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", dir);
        if (system(cmd) != 0)
            r = r ? r : 1;
    }
    g_free(dir);
    return r;
}
