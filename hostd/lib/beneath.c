/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Paths beneath a directory, never through a symlink (beneath.h). */
#include "beneath.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <linux/openat2.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static bool fallback_forced;

void vb_beneath_force_fallback(bool on)
{
    fallback_forced = on;
}

bool vb_beneath_valid(const char *p, size_t n)
{
    size_t start = 0;

    if (!n || p[0] == '/' || memchr(p, 0, n))
        return false;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && p[i] != '/')
            continue;
        size_t c = i - start;
        if (c == 0 || (c == 1 && p[start] == '.') ||
            (c == 2 && p[start] == '.' && p[start + 1] == '.'))
            return false;
        start = i + 1;
    }
    return true;
}

/* ENOTDIR or ELOOP from an O_NOFOLLOW open: -ELOOP when NAME is a symlink */
static int nofollow_error(int dirfd, const char *name, int err)
{
    struct stat st;

    if ((err == ENOTDIR || err == ELOOP) && fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        S_ISLNK(st.st_mode))
        return -ELOOP;
    return -err;
}

/* Without openat2: one openat per component, none followed. */
static int open_components(int dirfd, char *s, int flags)
{
    int cur = dirfd;

    for (;;) {
        char *slash = strchr(s, '/');
        int fd;

        if (slash)
            *slash = 0;
        fd = openat(cur, s, (slash ? O_PATH | O_DIRECTORY : flags) | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
            fd = nofollow_error(cur, s, errno);
        } else if (!slash && (flags & O_PATH)) {
            /* O_PATH | O_NOFOLLOW opens a symlink itself: refused as openat2 does */
            struct stat st;
            if (fstat(fd, &st) < 0 || S_ISLNK(st.st_mode)) {
                close(fd);
                fd = -ELOOP;
            }
        }
        if (cur != dirfd)
            close(cur);
        if (fd < 0 || !slash)
            return fd;
        cur = fd;
        s = slash + 1;
    }
}

/* S (NUL-terminated, shorter than PATH_MAX) beneath DIRFD */
static int open_piece(int dirfd, char *s, int flags)
{
    if (!fallback_forced) {
        /* no O_NOFOLLOW: with it, a symlink as the last component gives
         * ENOTDIR with O_DIRECTORY and an fd with O_PATH, without it ELOOP */
        struct open_how how = {
            .flags = (uint64_t)(flags | O_CLOEXEC),
            .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
        };
        long fd = syscall(SYS_openat2, dirfd, s, &how, sizeof(how));

        if (fd >= 0)
            return (int)fd;
        if (errno != ENOSYS)
            return -errno;
    }
    return open_components(dirfd, s, flags);
}

int vb_beneath_open(int dirfd, const char *path, size_t len, int flags)
{
    char buf[PATH_MAX];
    int cur = dirfd, fd;

    if (!vb_beneath_valid(path, len))
        return -EINVAL;
    /* longer than the kernel takes at once: the folders in pieces */
    while (len >= PATH_MAX) {
        size_t n = PATH_MAX - 1;

        while (n && path[n] != '/')     /* the last '/' that leaves a piece < PATH_MAX */
            n--;
        if (!n) {
            if (cur != dirfd)
                close(cur);
            return -ENAMETOOLONG;
        }
        memcpy(buf, path, n);
        buf[n] = 0;
        fd = open_piece(cur, buf, O_PATH | O_DIRECTORY);
        if (cur != dirfd)
            close(cur);
        if (fd < 0)
            return fd;
        cur = fd;
        path += n + 1;
        len -= n + 1;
    }
    memcpy(buf, path, len);
    buf[len] = 0;
    fd = open_piece(cur, buf, flags);
    if (cur != dirfd)
        close(cur);
    return fd;
}

int vb_beneath_mkdirs(int dirfd, const char *path, size_t len, mode_t mode)
{
    char name[NAME_MAX + 1];
    int cur = dirfd;

    if (!vb_beneath_valid(path, len))
        return -EINVAL;
    for (size_t i = 0; i < len;) {
        const char *slash = memchr(path + i, '/', len - i);
        size_t n = (slash ? (size_t)(slash - path) : len) - i;
        int fd;

        if (n > NAME_MAX) {
            fd = -ENAMETOOLONG;
        } else {
            memcpy(name, path + i, n);
            name[n] = 0;
            fd = open_piece(cur, name, O_RDONLY | O_DIRECTORY);
            if (fd == -ENOENT) {
                fd = mkdirat(cur, name, mode) < 0 && errno != EEXIST ? -errno
                   : open_piece(cur, name, O_RDONLY | O_DIRECTORY);
            }
        }
        if (cur != dirfd)
            close(cur);
        if (fd < 0)
            return fd;
        cur = fd;
        i += n + 1;
    }
    return cur;
}
