/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of the guest's mount table (guest-driver/tool/mounts.c), which
 * tells the host where a root lies inside its file system and which folders
 * under the roots are mount points: mountinfo lines (escapes, bind mounts of
 * a sub-folder, a mount on top of another), paths under paths by component.
 */
#include <glib.h>
#include <stdlib.h>
#include <string.h>

#include "mounts.h"

static const char *const table =
    "22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n"
    "23 22 0:21 / /proc rw,nosuid shared:12 - proc proc rw\n"
    "24 22 0:5 / /dev rw,nosuid shared:2 - devtmpfs udev rw\n"
    "25 24 0:22 / /dev/pts rw shared:3 - devpts devpts rw\n"
    "30 22 254:17 / /srv\\040data rw shared:5 - ext4 /dev/vdb1 rw\n"
    "31 22 254:17 /www /var/www rw shared:5 - ext4 /dev/vdb1 rw\n"
    "32 30 254:33 / /srv\\040data/inner rw - ext4 /dev/vdc rw\n"
    "33 22 254:1 /home /home2 rw - ext4 /dev/vda1 rw\n"
    "34 30 0:40 / /srv\\040data/tmp rw - tmpfs tmpfs rw\n"
    "35 30 254:48 / /srv\\040data/tmp rw - ext4 /dev/vdd rw\n"
    "garbage line\n"
    "36 22 9:x / /bad rw - ext4 /dev/x rw\n";

static void test_parse(void)
{
    struct vbc_mount *m;
    size_t n;

    g_assert_cmpint(vbc_mounts_parse(table, &m, &n), ==, 0);
    g_assert_cmpuint(n, ==, 10);
    g_assert_cmpuint(m[4].major, ==, 254);
    g_assert_cmpuint(m[4].minor, ==, 17);
    g_assert_cmpstr(m[4].point, ==, "/srv data");
    g_assert_cmpstr(m[5].root, ==, "/www");
    vbc_mounts_free(m, n);
    g_assert_cmpint(vbc_mounts_parse("", &m, &n), ==, 0);
    g_assert_cmpuint(n, ==, 0);
    vbc_mounts_free(m, n);
}

static void test_under(void)
{
    g_assert_true(vbc_path_under("/srv/www", "/srv"));
    g_assert_true(vbc_path_under("/srv", "/srv"));
    g_assert_false(vbc_path_under("/srvx", "/srv"));
    g_assert_true(vbc_path_under("/anything", "/"));
    g_assert_true(vbc_path_under("/", "/"));
    g_assert_false(vbc_path_under("/sr", "/srv"));
}

static char *inside(const struct vbc_mount *m, size_t n, unsigned maj, unsigned mnr,
                    const char *abs)
{
    int k = vbc_mount_of(m, n, maj, mnr, abs);

    return k < 0 ? NULL : vbc_mount_inside(&m[k], abs);
}

static void test_inside(void)
{
    struct vbc_mount *m;
    size_t n;
    char *s;

    g_assert_cmpint(vbc_mounts_parse(table, &m, &n), ==, 0);
    /* the root file system */
    g_assert_cmpstr((s = inside(m, n, 254, 1, "/usr/lib")), ==, "usr/lib");
    g_free(s);
    g_assert_cmpstr((s = inside(m, n, 254, 1, "/")), ==, "");
    g_free(s);
    /* a file system mounted under a name with a space */
    g_assert_cmpstr((s = inside(m, n, 254, 17, "/srv data/x/y")), ==, "x/y");
    g_free(s);
    g_assert_cmpstr((s = inside(m, n, 254, 17, "/srv data")), ==, "");
    g_free(s);
    /* a sub-folder of it mounted elsewhere (a bind mount) */
    g_assert_cmpstr((s = inside(m, n, 254, 17, "/var/www/html")), ==, "www/html");
    g_free(s);
    g_assert_cmpstr((s = inside(m, n, 254, 1, "/home2/u")), ==, "home/u");
    g_free(s);
    /* of two mounts on one point, the later is on top */
    g_assert_cmpint(vbc_mount_of(m, n, 254, 48, "/srv data/tmp/f"), ==, 9);
    g_assert_cmpint(vbc_mount_of(m, n, 0, 40, "/srv data/tmp/f"), ==, 8);
    /* a path the device is not mounted above */
    g_assert_cmpint(vbc_mount_of(m, n, 254, 33, "/srv data/x"), ==, -1);
    g_assert_cmpint(vbc_mount_of(m, n, 1, 1, "/"), ==, -1);
    vbc_mounts_free(m, n);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/mounts/parse", test_parse);
    g_test_add_func("/mounts/under", test_under);
    g_test_add_func("/mounts/inside", test_inside);
    return g_test_run();
}
