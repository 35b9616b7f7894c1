/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of the mapper's job description (hostd/mapper/mapspec.c):
 * what vbackupd encodes the mapper decodes the same, and every count,
 * index, length and path is checked (truncation at every byte, flips,
 * indices out of range, paths that are not protocol paths).
 */
#include <glib.h>
#include <stdlib.h>
#include <string.h>

#include "mapspec.h"

static void sample(struct vb_mapspec *s)
{
    memset(s, 0, sizeof(*s));
    s->job = 0x1122334455667788ull;
    s->n_disks = 2;
    s->disks[0].n_layers = 3;
    s->disks[0].fmt[0] = VB_MAPSPEC_QCOW2;
    s->disks[0].fmt[1] = VB_MAPSPEC_QCOW2;
    s->disks[0].fmt[2] = VB_MAPSPEC_RAW;
    s->disks[1].n_layers = 1;
    s->disks[1].fmt[0] = VB_MAPSPEC_RAW;
    s->n_fs = 2;
    s->fs[0] = (struct vb_mapspec_fs){ 0, 1 << 20 };
    s->fs[1] = (struct vb_mapspec_fs){ 1, 0 };
    s->n_roots = 3;
    s->roots[0] = (struct vb_mapspec_root){ 0, g_strdup(""), g_strdup("") };
    s->roots[1] = (struct vb_mapspec_root){ 1, g_strdup("www"), g_strdup("srv/www") };
    s->roots[2] = (struct vb_mapspec_root){ 1, g_strdup("\xff\xfe-not-utf8"),
                                           g_strdup("srv/\xff\xfe-not-utf8") };
    s->n_prune = 2;
    s->prune[0] = g_strdup("proc");
    s->prune[1] = g_strdup("srv");
    s->n_exclude = 1;
    s->exclude[0] = g_strdup("*.tmp");
}

static void test_roundtrip(void)
{
    struct vb_mapspec s, d;
    size_t n;
    uint8_t *p;

    sample(&s);
    p = vb_mapspec_encode(&s, &n);
    g_assert_nonnull(p);
    g_assert_null(vb_mapspec_decode(p, n, &d));
    g_assert_cmpuint(d.job, ==, s.job);
    g_assert_cmpuint(d.n_disks, ==, 2);
    g_assert_cmpuint(d.disks[0].n_layers, ==, 3);
    g_assert_cmpuint(d.disks[0].fmt[2], ==, VB_MAPSPEC_RAW);
    g_assert_cmpuint(vb_mapspec_n_fds(&d), ==, 4);
    g_assert_cmpuint(d.fs[0].offset, ==, 1 << 20);
    g_assert_cmpuint(d.fs[1].disk, ==, 1);
    g_assert_cmpuint(d.n_roots, ==, 3);
    g_assert_cmpstr(d.roots[0].abs, ==, "");
    g_assert_cmpstr(d.roots[1].inside, ==, "www");
    g_assert_cmpstr(d.roots[2].abs, ==, "srv/\xff\xfe-not-utf8");
    g_assert_cmpstr(d.prune[1], ==, "srv");
    g_assert_cmpstr(d.exclude[0], ==, "*.tmp");
    vb_mapspec_clear(&d);
    /* every truncation is refused */
    for (size_t k = 0; k < n; k++) {
        g_assert_nonnull(vb_mapspec_decode(p, k, &d));
        g_assert_cmpuint(d.n_roots, ==, 0);
    }
    /* a byte more is refused */
    p = realloc(p, n + 1);
    p[n] = 0;
    g_assert_nonnull(vb_mapspec_decode(p, n + 1, &d));
    /* random flips: refused or decoded, never a crash, and what is decoded is
     * within its bounds */
    g_random_set_seed(42);
    for (int t = 0; t < 20000; t++) {
        uint8_t *q = g_memdup2(p, n);

        for (int f = 0; f < 3; f++)
            q[g_random_int_range(0, (gint32)n)] ^= (uint8_t)g_random_int_range(1, 256);
        if (!vb_mapspec_decode(q, n, &d)) {
            g_assert_cmpuint(d.n_disks, <=, VB_MAX_DISKS);
            for (unsigned i = 0; i < d.n_fs; i++)
                g_assert_cmpuint(d.fs[i].disk, <, d.n_disks);
            for (unsigned i = 0; i < d.n_roots; i++)
                g_assert_cmpuint(d.roots[i].fs, <, d.n_fs);
            g_assert_cmpuint(vb_mapspec_n_fds(&d), <=, VB_MAPSPEC_MAX_FDS);
            vb_mapspec_clear(&d);
        }
        g_free(q);
    }
    free(p);
    vb_mapspec_clear(&s);
}

/* encode S with one change made by EDIT, expect the decoder to refuse it */
static void refused(void (*edit)(struct vb_mapspec *), const char *what)
{
    struct vb_mapspec s, d;
    const char *why;
    size_t n;
    uint8_t *p;

    sample(&s);
    edit(&s);
    p = vb_mapspec_encode(&s, &n);
    g_assert_nonnull(p);
    why = vb_mapspec_decode(p, n, &d);
    if (!why)
        g_error("accepted: %s", what);
    g_assert_cmpuint(d.n_roots, ==, 0);
    free(p);
    vb_mapspec_clear(&s);
}

static void e_fs_disk(struct vb_mapspec *s) { s->fs[1].disk = 2; }
static void e_root_fs(struct vb_mapspec *s) { s->roots[2].fs = 2; }
static void e_no_roots(struct vb_mapspec *s) { s->n_roots = 0; }
static void e_no_layers(struct vb_mapspec *s) { s->disks[1].n_layers = 0; }
static void e_fmt(struct vb_mapspec *s) { s->disks[0].fmt[1] = 3; }
static void e_dotdot(struct vb_mapspec *s)
{
    g_free(s->roots[1].inside);
    s->roots[1].inside = g_strdup("www/../etc");
}
static void e_abs_slash(struct vb_mapspec *s)
{
    g_free(s->roots[1].abs);
    s->roots[1].abs = g_strdup("/srv/www");
}
static void e_prune_root(struct vb_mapspec *s)
{
    g_free(s->prune[0]);
    s->prune[0] = g_strdup("");
}
static void e_empty_exclude(struct vb_mapspec *s)
{
    g_free(s->exclude[0]);
    s->exclude[0] = g_strdup("");
}
static void test_refused(void)
{
    refused(e_fs_disk, "a file system on a disk that is not there");
    refused(e_root_fs, "a root on a file system that is not there");
    refused(e_no_roots, "no roots");
    refused(e_no_layers, "a disk without images");
    refused(e_fmt, "an unknown format");
    refused(e_dotdot, "a '..' component");
    refused(e_abs_slash, "a leading '/'");
    refused(e_prune_root, "the root as a mount point");
    refused(e_empty_exclude, "an empty exclusion");
    {
        struct vb_mapspec d;
        uint8_t junk[64] = "VBMS";

        g_assert_nonnull(vb_mapspec_decode(junk, sizeof(junk), &d));
        g_assert_nonnull(vb_mapspec_decode(junk, 0, &d));
    }
}

static void test_fds_bound(void)
{
    struct vb_mapspec s, d;
    size_t n;
    uint8_t *p;

    sample(&s);
    /* 16 disks of 64 layers: more descriptors than a mapper takes */
    s.n_disks = VB_MAX_DISKS;
    for (unsigned i = 0; i < VB_MAX_DISKS; i++) {
        s.disks[i].n_layers = VB_MAPSPEC_MAX_LAYERS;
        memset(s.disks[i].fmt, VB_MAPSPEC_QCOW2, VB_MAPSPEC_MAX_LAYERS);
    }
    p = vb_mapspec_encode(&s, &n);
    g_assert_cmpstr(vb_mapspec_decode(p, n, &d), ==, "too many images");
    free(p);
    vb_mapspec_clear(&s);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/mapspec/roundtrip", test_roundtrip);
    g_test_add_func("/mapspec/refused", test_refused);
    g_test_add_func("/mapspec/fds-bound", test_fds_bound);
    return g_test_run();
}
