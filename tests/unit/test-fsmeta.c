/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of what a restore gives a file beyond its data
 * (hostd/lib/fsmeta.c, shared by restore-files and the guest tool): blocks
 * of zeros left as holes only when sparse, written zeros, preallocation past
 * the size, an exact set of extended attributes (extras removed, other
 * namespaces untouched, a symlink through its O_PATH fd), times read back,
 * inode flags.  On the test folder's file system (TMPDIR); what it cannot
 * do is skipped with a note.
 */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "fsmeta.h"
#include "vbackup/proto.h"

static char *dir;

static int new_file(const char *name)
{
    char *p = g_build_filename(dir, name, NULL);
    int fd = open(p, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

    g_assert_cmpint(fd, >=, 0);
    g_free(p);
    return fd;
}

/* Bytes of holes in [0, size) by SEEK_HOLE / SEEK_DATA. */
static off_t holes(int fd, off_t size)
{
    off_t pos = 0, sum = 0;

    while (pos < size) {
        off_t h = lseek(fd, pos, SEEK_HOLE), d;

        if (h < 0 || h >= size)
            break;
        d = lseek(fd, h, SEEK_DATA);
        if (d < 0)
            d = size;
        sum += d - h;
        pos = d;
    }
    return sum;
}

static void test_sparse_writes(void)
{
    uint8_t *buf = g_malloc0(64 << 10), *back = g_malloc(64 << 10);
    int fd = new_file("sparse");

    memset(buf, 'x', 4096);                      /* data, 56 KiB of zeros, data */
    memset(buf + (60 << 10), 'y', 4096);
    g_assert_cmpint(vb_write_sparse(fd, buf, 64 << 10, 0, true), ==, 0);
    g_assert_cmpint(fsync(fd), ==, 0);
    g_assert_cmpint(pread(fd, back, 64 << 10, 0), ==, 64 << 10);
    g_assert_cmpmem(back, 64 << 10, buf, 64 << 10);
    if (holes(fd, 64 << 10) == 0)
        g_test_message("this file system reports no holes: not checked");
    else
        g_assert_cmpint(holes(fd, 64 << 10), ==, 56 << 10);
    close(fd);
    fd = new_file("dense");
    g_assert_cmpint(vb_write_sparse(fd, buf, 64 << 10, 0, false), ==, 0);
    g_assert_cmpint(vb_write_zeros(fd, 8192, 64 << 10, false), ==, 0);
    g_assert_cmpint(vb_write_zeros(fd, 8192, 80 << 10, true), ==, 0);   /* nothing */
    g_assert_cmpint(fsync(fd), ==, 0);
    g_assert_cmpint(lseek(fd, 0, SEEK_END), ==, 72 << 10);
    g_assert_cmpint(holes(fd, 72 << 10), ==, 0);
    close(fd);
    g_free(buf);
    g_free(back);
}

static void test_prealloc(void)
{
    int fd = new_file("prealloc");
    struct {
        struct fiemap fm;
        struct fiemap_extent e[8];
    } m;
    struct stat st;
    int ret;

    g_assert_cmpint(pwrite(fd, "abc", 3, 0), ==, 3);
    ret = vb_prealloc(fd, 1 << 20, 1 << 20);
    if (ret == -EOPNOTSUPP) {
        g_test_skip("no fallocate on this file system");
        close(fd);
        return;
    }
    g_assert_cmpint(ret, ==, 0);
    g_assert_cmpint(fstat(fd, &st), ==, 0);
    g_assert_cmpint(st.st_size, ==, 3);          /* the size is kept */
    memset(&m, 0, sizeof(m));
    m.fm.fm_length = FIEMAP_MAX_OFFSET;
    m.fm.fm_flags = FIEMAP_FLAG_SYNC;
    m.fm.fm_extent_count = 8;
    if (ioctl(fd, FS_IOC_FIEMAP, &m.fm) == 0) {
        bool past = false;
        for (uint32_t i = 0; i < m.fm.fm_mapped_extents; i++)
            past |= m.fm.fm_extents[i].fe_logical >= (1 << 20) &&
                    (m.fm.fm_extents[i].fe_flags & FIEMAP_EXTENT_UNWRITTEN);
        g_assert_true(past);
    }
    g_assert_cmpint(vb_prealloc(fd, UINT64_MAX - 10, 100), ==, -EFBIG);
    close(fd);
}

static bool xattrs_work(int fd)
{
    if (fsetxattr(fd, "user.probe", "1", 1, 0) == 0) {
        fremovexattr(fd, "user.probe");
        return true;
    }
    return false;
}

static void test_xattrs(void)
{
    int fd = new_file("xattrs"), lfd;
    const struct vb_xa want[] = {
        { "trusted.t", 9, "t", 1 },
        { "user.a", 6, "\0\1", 2 },
        { "user.b", 6, "new", 3 },
    };
    const char *what;
    char which[256], v[16], *lp;
    ssize_t n;

    if (!xattrs_work(fd)) {
        g_test_skip("no user. attributes on this file system");
        close(fd);
        return;
    }
    g_assert_cmpint(fsetxattr(fd, "user.b", "old", 3, 0), ==, 0);
    g_assert_cmpint(fsetxattr(fd, "user.extra", "x", 1, 0), ==, 0);
    /* user. only: set user.a and user.b, remove user.extra, trusted. untouched */
    g_assert_cmpint(vb_xa_apply(fd, false, want, 3, VB_XA_USER, &what, which, sizeof(which)),
                    ==, 0);
    g_assert_cmpint(fgetxattr(fd, "user.extra", v, sizeof(v)), <, 0);
    g_assert_cmpint(errno, ==, ENODATA);
    n = fgetxattr(fd, "user.a", v, sizeof(v));
    g_assert_cmpmem(v, n, "\0\1", 2);
    n = fgetxattr(fd, "user.b", v, sizeof(v));
    g_assert_cmpmem(v, n, "new", 3);
    g_assert_cmpint(fgetxattr(fd, "trusted.t", v, sizeof(v)), <, 0);
    if (geteuid() == 0) {
        /* all namespaces, on a symlink through its O_PATH fd */
        lp = g_build_filename(dir, "link", NULL);
        g_assert_cmpint(symlink("xattrs", lp), ==, 0);
        lfd = open(lp, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        g_assert_cmpint(lfd, >=, 0);
        g_assert_cmpint(vb_xa_apply(lfd, true, want, 1, VB_XA_ALL, &what, which,
                                    sizeof(which)), ==, 0);
        n = lgetxattr(lp, "trusted.t", v, sizeof(v));
        g_assert_cmpmem(v, n, "t", 1);
        g_assert_cmpint(getxattr(lp, "trusted.t", v, sizeof(v)), <, 0);   /* not the target */
        close(lfd);
        g_free(lp);
    }
    /* a failure names the attribute */
    {
        const struct vb_xa bad[] = { { "user.x", 6, "v", 70000 } };
        static char big[70000];
        struct vb_xa b = bad[0];
        b.value = big;
        g_assert_cmpint(vb_xa_apply(fd, false, &b, 1, VB_XA_USER, &what, which, sizeof(which)),
                        <, 0);
        g_assert_cmpstr(which, ==, "user.x");
    }
    g_assert_cmpuint(vb_xa_class("security.capability", 19), ==, VB_XA_SECURITY);
    g_assert_cmpuint(vb_xa_class("system.posix_acl_default", 24), ==, VB_XA_ACL);
    g_assert_cmpuint(vb_xa_class("system.nfs4_acl", 15), ==, 0);
    close(fd);
}

static void test_times(void)
{
    int fd = new_file("times");
    struct timespec ts[2] = { { -300000000, 5 }, { 981173106, 123456789 } };
    struct timespec far[2] = { { 10413792000, 1 }, { 10413792000, 500000000 } };
    struct stat st;
    int ret;

    g_assert_cmpint(vb_times_apply(fd, "", ts), ==, 0);
    g_assert_cmpint(fstat(fd, &st), ==, 0);
    g_assert_cmpint(st.st_mtim.tv_sec, ==, 981173106);
    g_assert_cmpint(st.st_mtim.tv_nsec, ==, 123456789);
    /* after 2262: held, or said to be impossible; never changed silently */
    ret = vb_times_apply(fd, "", far);
    g_assert_true(ret == 0 || ret == -ERANGE);
    g_assert_cmpint(fstat(fd, &st), ==, 0);
    if (ret == 0)
        g_assert_cmpint(st.st_mtim.tv_sec, ==, 10413792000);
    else
        g_assert_cmpint(st.st_mtim.tv_sec, !=, 10413792000);
    close(fd);
}

static void test_flags(void)
{
    int fd = new_file("flags"), fl = 0;
    const char *what;
    int ret;

    if (ioctl(fd, FS_IOC_GETFLAGS, &fl) < 0) {
        g_test_skip("no inode flags on this file system");
        close(fd);
        return;
    }
    ret = vb_fsflags_apply(fd, VB_FSFL_NODUMP | VB_FSFL_NOATIME, 0, &what);
    g_assert_cmpint(ret, ==, 0);
    g_assert_cmpint(ioctl(fd, FS_IOC_GETFLAGS, &fl), ==, 0);
    g_assert_cmpint(fl & (FS_NODUMP_FL | FS_NOATIME_FL), ==, FS_NODUMP_FL | FS_NOATIME_FL);
    /* the flags outside the mask are kept; those inside follow the snapshot */
    g_assert_cmpint(vb_fsflags_apply(fd, 0, 0, &what), ==, 0);
    g_assert_cmpint(ioctl(fd, FS_IOC_GETFLAGS, &fl), ==, 0);
    g_assert_cmpint(fl & (FS_NODUMP_FL | FS_NOATIME_FL), ==, 0);
    close(fd);
}

int main(int argc, char **argv)
{
    const char *tmp = g_getenv("TMPDIR") ? g_getenv("TMPDIR") : "/var/tmp";
    int ret;

    g_test_init(&argc, &argv, NULL);
    dir = g_build_filename(tmp, "test-fsmeta.XXXXXX", NULL);
    g_assert_nonnull(g_mkdtemp(dir));
    g_test_add_func("/fsmeta/sparse-writes", test_sparse_writes);
    g_test_add_func("/fsmeta/prealloc", test_prealloc);
    g_test_add_func("/fsmeta/xattrs", test_xattrs);
    g_test_add_func("/fsmeta/times", test_times);
    g_test_add_func("/fsmeta/flags", test_flags);
    ret = g_test_run();
    {
        g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", dir);
        if (system(cmd) != 0)
            g_printerr("could not remove %s\n", dir);
    }
    g_free(dir);
    return ret;
}
