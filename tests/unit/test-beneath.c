/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Unit tests: paths beneath a directory, never through a symlink (beneath.c),
 * with openat2 and with the per-component fallback. */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "beneath.h"

static char *root;          /* a temporary folder: the destination */
static char *outside;       /* a folder beside it: must stay empty */
static int rootfd;

static int bopen(const char *p, int flags)
{
    int fd = vb_beneath_open(rootfd, p, strlen(p), flags);

    if (fd >= 0)
        close(fd);
    return fd < 0 ? fd : 0;
}

static int bmkdirs(const char *p)
{
    int fd = vb_beneath_mkdirs(rootfd, p, strlen(p), 0755);

    if (fd >= 0)
        close(fd);
    return fd < 0 ? fd : 0;
}

static void assert_outside_empty(void)
{
    GDir *d = g_dir_open(outside, 0, NULL);

    g_assert_nonnull(d);
    g_assert_null(g_dir_read_name(d));
    g_dir_close(d);
}

static void setup(void)
{
    GError *err = NULL;
    char *p;

    root = g_dir_make_tmp("vbbeneath-XXXXXX", &err);
    g_assert_no_error(err);
    outside = g_dir_make_tmp("vbbeneath-out-XXXXXX", &err);
    g_assert_no_error(err);
    rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    g_assert_cmpint(rootfd, >=, 0);
    /* a/b/c (file), f (file), abs -> OUTSIDE, rel -> ../<outside>, a/lb -> b, dangling */
    g_assert_cmpint(mkdirat(rootfd, "a", 0755), ==, 0);
    g_assert_cmpint(mkdirat(rootfd, "a/b", 0755), ==, 0);
    g_assert_true(g_file_set_contents((p = g_build_filename(root, "a/b/c", NULL)), "c", 1, NULL));
    g_free(p);
    g_assert_true(g_file_set_contents((p = g_build_filename(root, "f", NULL)), "f", 1, NULL));
    g_free(p);
    g_assert_cmpint(symlinkat(outside, rootfd, "abs"), ==, 0);
    p = g_build_filename("..", strrchr(outside, '/') + 1, NULL);
    g_assert_cmpint(symlinkat(p, rootfd, "rel"), ==, 0);
    g_free(p);
    g_assert_cmpint(symlinkat("b", rootfd, "a/lb"), ==, 0);
    g_assert_cmpint(symlinkat("nowhere", rootfd, "dangling"), ==, 0);
}

static void teardown(void)
{
    char *cmd = g_strdup_printf("rm -rf '%s' '%s'", root, outside);

    close(rootfd);
    g_assert_cmpint(system(cmd), ==, 0);
    g_free(cmd);
    g_free(root);
    g_free(outside);
}

static void test_valid(void)
{
    g_assert_true(vb_beneath_valid("a", 1));
    g_assert_true(vb_beneath_valid("a/b/c", 5));
    g_assert_true(vb_beneath_valid("...", 3));
    g_assert_true(vb_beneath_valid(".a/..b/c.", 9));
    g_assert_true(vb_beneath_valid("a/b", 1));      /* only the first LEN bytes count */
    g_assert_false(vb_beneath_valid("", 0));
    g_assert_false(vb_beneath_valid("/etc", 4));
    g_assert_false(vb_beneath_valid("a//b", 4));
    g_assert_false(vb_beneath_valid("a/", 2));
    g_assert_false(vb_beneath_valid(".", 1));
    g_assert_false(vb_beneath_valid("..", 2));
    g_assert_false(vb_beneath_valid("a/../b", 6));
    g_assert_false(vb_beneath_valid("a/./b", 5));
    g_assert_false(vb_beneath_valid("a/..", 4));
    g_assert_false(vb_beneath_valid("a\0b", 3));
}

static void test_open(gconstpointer fallback)
{
    int fd;
    struct stat st;

    vb_beneath_force_fallback(GPOINTER_TO_INT(fallback));
    setup();
    g_assert_cmpint(bopen("a/b/c", O_RDONLY), ==, 0);
    g_assert_cmpint(bopen("a/b", O_RDONLY | O_DIRECTORY), ==, 0);
    g_assert_cmpint(bopen("f", O_RDONLY), ==, 0);
    g_assert_cmpint(bopen("a/b/c", O_PATH), ==, 0);
    /* a symlink anywhere, the last component included, is never followed */
    g_assert_cmpint(bopen("abs", O_RDONLY | O_DIRECTORY), ==, -ELOOP);
    g_assert_cmpint(bopen("abs", O_RDONLY), ==, -ELOOP);
    g_assert_cmpint(bopen("abs", O_PATH), ==, -ELOOP);
    g_assert_cmpint(bopen("abs/x", O_RDONLY), ==, -ELOOP);
    g_assert_cmpint(bopen("rel", O_RDONLY | O_DIRECTORY), ==, -ELOOP);
    g_assert_cmpint(bopen("a/lb/c", O_RDONLY), ==, -ELOOP);
    g_assert_cmpint(bopen("dangling", O_PATH), ==, -ELOOP);
    g_assert_cmpint(bopen("f/x", O_RDONLY), ==, -ENOTDIR);
    g_assert_cmpint(bopen("f", O_RDONLY | O_DIRECTORY), ==, -ENOTDIR);
    g_assert_cmpint(bopen("missing/x", O_RDONLY), ==, -ENOENT);
    /* nothing outside */
    g_assert_cmpint(bopen("../x", O_RDONLY), ==, -EINVAL);
    g_assert_cmpint(bopen("a/../../x", O_RDONLY), ==, -EINVAL);
    g_assert_cmpint(bopen("/etc/passwd", O_RDONLY), ==, -EINVAL);
    g_assert_cmpint(bopen("", O_RDONLY | O_DIRECTORY), ==, -EINVAL);
    /* creating a file relative to what it gives */
    fd = vb_beneath_open(rootfd, "a/b", 3, O_RDONLY | O_DIRECTORY);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(fstat(fd, &st), ==, 0);
    g_assert_true(S_ISDIR(st.st_mode));
    close(fd);
    assert_outside_empty();
    teardown();
}

static void test_mkdirs(gconstpointer fallback)
{
    vb_beneath_force_fallback(GPOINTER_TO_INT(fallback));
    setup();
    g_assert_cmpint(bmkdirs("n/m/o"), ==, 0);
    g_assert_cmpint(bopen("n/m/o", O_RDONLY | O_DIRECTORY), ==, 0);
    g_assert_cmpint(bmkdirs("a/b"), ==, 0);          /* already there */
    g_assert_cmpint(bmkdirs("abs/x"), ==, -ELOOP);
    g_assert_cmpint(bmkdirs("rel/x/y"), ==, -ELOOP);
    g_assert_cmpint(bmkdirs("a/lb/x"), ==, -ELOOP);
    g_assert_cmpint(bmkdirs("dangling/x"), ==, -ELOOP);
    g_assert_cmpint(bmkdirs("f/x"), ==, -ENOTDIR);
    g_assert_cmpint(bmkdirs("a/../x"), ==, -EINVAL);
    assert_outside_empty();
    g_assert_cmpint(faccessat(rootfd, "nowhere", F_OK, AT_SYMLINK_NOFOLLOW), <, 0);
    teardown();
}

/* paths longer than PATH_MAX are resolved in pieces */
static void test_long(gconstpointer fallback)
{
    GString *p = g_string_new(NULL);
    char comp[201];
    int fd;

    vb_beneath_force_fallback(GPOINTER_TO_INT(fallback));
    setup();
    memset(comp, 'd', 200);
    comp[200] = 0;
    for (int i = 0; i < 30; i++)
        g_string_append_printf(p, "%s%02d%s", i ? "/" : "", i, comp);
    g_assert_cmpuint(p->len, >, PATH_MAX + 1000);
    g_assert_cmpint(bmkdirs(p->str), ==, 0);
    fd = vb_beneath_open(rootfd, p->str, p->len, O_RDONLY | O_DIRECTORY);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(symlinkat(outside, fd, "link"), ==, 0);
    g_assert_cmpint(mkdirat(fd, "real", 0755), ==, 0);
    close(fd);
    g_string_append(p, "/real");
    g_assert_cmpint(bopen(p->str, O_RDONLY | O_DIRECTORY), ==, 0);
    g_string_truncate(p, p->len - 4);
    g_string_append(p, "link/x");
    g_assert_cmpint(bopen(p->str, O_RDONLY), ==, -ELOOP);
    g_assert_cmpint(bmkdirs(p->str), ==, -ELOOP);
    assert_outside_empty();
    g_string_free(p, TRUE);
    teardown();
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/beneath/valid", test_valid);
    g_test_add_data_func("/beneath/open/openat2", GINT_TO_POINTER(0), test_open);
    g_test_add_data_func("/beneath/open/fallback", GINT_TO_POINTER(1), test_open);
    g_test_add_data_func("/beneath/mkdirs/openat2", GINT_TO_POINTER(0), test_mkdirs);
    g_test_add_data_func("/beneath/mkdirs/fallback", GINT_TO_POINTER(1), test_mkdirs);
    g_test_add_data_func("/beneath/long/openat2", GINT_TO_POINTER(0), test_long);
    g_test_add_data_func("/beneath/long/fallback", GINT_TO_POINTER(1), test_long);
    return g_test_run();
}
