/* SPDX-License-Identifier: GPL-2.0-or-later */
/* What a restore gives a file beyond its data (fsmeta.h).  Libc only. */
#include "fsmeta.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "vbackup/proto.h"

#define BLOCK 4096u

static bool starts(const char *name, size_t len, const char *pre)
{
    size_t l = strlen(pre);

    return len > l && memcmp(name, pre, l) == 0;
}

unsigned vb_xa_class(const char *name, size_t len)
{
    if (starts(name, len, "user."))
        return VB_XA_USER;
    if (starts(name, len, "trusted."))
        return VB_XA_TRUSTED;
    if (starts(name, len, "security."))
        return VB_XA_SECURITY;
    if ((len == 23 && !memcmp(name, "system.posix_acl_access", 23)) ||
        (len == 24 && !memcmp(name, "system.posix_acl_default", 24)))
        return VB_XA_ACL;
    return 0;
}

/* xattr calls on a real fd, or on an O_PATH fd through its /proc link
 * (which resolves to the file itself, a symlink too) */
struct xh {
    int fd;
    bool opath;
    char proc[64];
};

static ssize_t xh_list(struct xh *h, char *buf, size_t len)
{
    return h->opath ? listxattr(h->proc, buf, len) : flistxattr(h->fd, buf, len);
}

static int xh_set(struct xh *h, const char *name, const void *v, size_t len)
{
    return h->opath ? setxattr(h->proc, name, v, len, 0) : fsetxattr(h->fd, name, v, len, 0);
}

static int xh_remove(struct xh *h, const char *name)
{
    return h->opath ? removexattr(h->proc, name) : fremovexattr(h->fd, name);
}

static bool in_set(const struct vb_xa *xs, size_t n, const char *name, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (xs[i].name_len == len && !memcmp(xs[i].name, name, len))
            return true;
    return false;
}

int vb_xa_apply(int fd, bool opath, const struct vb_xa *xs, size_t n, unsigned want,
                const char **what, char *which, size_t which_len)
{
    struct xh h = { .fd = fd, .opath = opath };
    char name[VB_MAX_XATTR_NAME + 1], *list = NULL;
    ssize_t ll;
    int ret = 0;

    snprintf(h.proc, sizeof(h.proc), "/proc/self/fd/%d", fd);
    which[0] = 0;
    /* what is there and not in the snapshot: an inherited ACL, a label */
    *what = "listing extended attributes";
    for (int tries = 0;; tries++) {
        ll = xh_list(&h, NULL, 0);
        if (ll < 0) {
            if (errno == ENOTSUP || errno == EOPNOTSUPP)
                ll = 0;                 /* none there; setting will say more */
            else
                return -errno;
        }
        free(list);
        list = malloc((size_t)ll + 1);
        if (!list)
            return -ENOMEM;
        if (!ll)
            break;
        ll = xh_list(&h, list, (size_t)ll);
        if (ll >= 0)
            break;
        if (errno != ERANGE || tries > 8) {
            ret = -errno;
            free(list);
            return ret;
        }
    }
    *what = "removing an extended attribute";
    for (ssize_t o = 0; o < ll;) {
        size_t l = strnlen(list + o, (size_t)(ll - o));

        if ((vb_xa_class(list + o, l) & want) && !in_set(xs, n, list + o, l) &&
            xh_remove(&h, list + o) < 0 && errno != ENODATA) {
            ret = -errno;
            snprintf(which, which_len, "%s", list + o);
            break;
        }
        o += (ssize_t)l + 1;
    }
    free(list);
    if (ret)
        return ret;
    *what = "setting an extended attribute";
    for (size_t i = 0; i < n; i++) {
        if (!(vb_xa_class(xs[i].name, xs[i].name_len) & want))
            continue;
        if (xs[i].name_len > VB_MAX_XATTR_NAME)
            return -ERANGE;
        memcpy(name, xs[i].name, xs[i].name_len);
        name[xs[i].name_len] = 0;
        if (xh_set(&h, name, xs[i].value, xs[i].value_len) < 0) {
            snprintf(which, which_len, "%s", name);
            return -errno;
        }
    }
    return 0;
}

int vb_fsflags_apply(int fd, uint32_t fsflags, uint32_t projid, const char **what)
{
    const char *first_what = NULL;
    struct fsxattr fx;
    int cur = 0, want, first = 0;

    /* the project id first (the flags may forbid changes); when it cannot be
     * set, the flags still are, and the first failure is told */
    if (ioctl(fd, FS_IOC_FSGETXATTR, &fx) < 0) {
        if ((errno != ENOTTY && errno != EOPNOTSUPP && errno != EINVAL) || projid)
            first = -errno, first_what = "reading the project id";
    } else if (fx.fsx_projid != projid) {
        fx.fsx_projid = projid;
        if (ioctl(fd, FS_IOC_FSSETXATTR, &fx) < 0)
            first = -errno, first_what = "setting the project id";
    }
    *what = first_what;
    if (ioctl(fd, FS_IOC_GETFLAGS, &cur) < 0) {
        if ((errno == ENOTTY || errno == EOPNOTSUPP || errno == EINVAL) && !fsflags)
            return first;
        if (!first)
            *what = "reading the inode flags";
        return first ? first : -errno;
    }
    want = (int)(((uint32_t)cur & ~VB_FSFL_MASK) | fsflags);
    if (want != cur && ioctl(fd, FS_IOC_SETFLAGS, &want) < 0 && !first) {
        *what = "setting the inode flags";
        return -errno;
    }
    return first;
}

int vb_prealloc(int fd, uint64_t off, uint64_t len)
{
    if (off > (uint64_t)INT64_MAX || len > (uint64_t)INT64_MAX - off)
        return -EFBIG;
    return fallocate(fd, FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) < 0 ? -errno : 0;
}

int vb_times_apply(int dirfd, const char *name, const struct timespec ts[2])
{
    int flags = *name ? AT_SYMLINK_NOFOLLOW : AT_EMPTY_PATH;
    struct stat st;

    if (*name ? utimensat(dirfd, name, ts, AT_SYMLINK_NOFOLLOW) < 0 : futimens(dirfd, ts) < 0)
        return -errno;
    if (fstatat(dirfd, name, &st, flags) < 0)
        return -errno;
    if (st.st_atim.tv_sec != ts[0].tv_sec || st.st_atim.tv_nsec != ts[0].tv_nsec ||
        st.st_mtim.tv_sec != ts[1].tv_sec || st.st_mtim.tv_nsec != ts[1].tv_nsec)
        return -ERANGE;
    return 0;
}

static int pwrite_all(int fd, const uint8_t *p, size_t len, uint64_t off)
{
    while (len) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EIO;
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

int vb_write_sparse(int fd, const void *buf, size_t len, uint64_t off, bool sparse)
{
    const uint8_t *p = buf;
    size_t run = 0, pos = 0;       /* [pos - run, pos): bytes to write */

    if (!sparse)
        return pwrite_all(fd, p, len, off);
    while (pos < len) {
        /* up to the next block boundary of the file */
        size_t n = BLOCK - (size_t)((off + pos) % BLOCK);

        if (n > len - pos)
            n = len - pos;
        if (all_zero(p + pos, n)) {
            if (run) {
                int ret = pwrite_all(fd, p + pos - run, run, off + pos - run);

                if (ret)
                    return ret;
                run = 0;
            }
        } else {
            run += n;
        }
        pos += n;
    }
    return run ? pwrite_all(fd, p + pos - run, run, off + pos - run) : 0;
}

int vb_write_zeros(int fd, uint64_t len, uint64_t off, bool sparse)
{
    static const uint8_t zeros[64 * 1024];

    if (sparse)
        return 0;
    while (len) {
        size_t n = len < sizeof(zeros) ? (size_t)len : sizeof(zeros);
        int ret = pwrite_all(fd, zeros, n, off);

        if (ret)
            return ret;
        len -= n;
        off += n;
    }
    return 0;
}
