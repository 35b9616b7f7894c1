/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * LD_PRELOAD shim for tests: readdir() of a folder whose path ends with
 * $VB_FAULT_READDIR fails with EIO (NULL and errno set), as a failing disk
 * or a network file system can.  Code that takes NULL for the end of the
 * folder without looking at errno sees an empty folder.
 */
#undef _FILE_OFFSET_BITS       /* both readdir and readdir64, not one redirected */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bool faulty(DIR *d)
{
    const char *want = getenv("VB_FAULT_READDIR");
    char link[64], path[4096];
    size_t lw;
    ssize_t n;

    if (!want || !*want)
        return false;
    snprintf(link, sizeof(link), "/proc/self/fd/%d", dirfd(d));
    n = readlink(link, path, sizeof(path) - 1);
    if (n < 0)
        return false;
    path[n] = 0;
    lw = strlen(want);
    return (size_t)n >= lw && !strcmp(path + n - lw, want);
}

struct dirent *readdir(DIR *d)
{
    static struct dirent *(*real)(DIR *);

    if (!real)
        real = (struct dirent *(*)(DIR *))dlsym(RTLD_NEXT, "readdir");
    if (faulty(d)) {
        errno = EIO;
        return NULL;
    }
    return real(d);
}

struct dirent64 *readdir64(DIR *d)
{
    static struct dirent64 *(*real)(DIR *);

    if (!real)
        real = (struct dirent64 *(*)(DIR *))dlsym(RTLD_NEXT, "readdir64");
    if (faulty(d)) {
        errno = EIO;
        return NULL;
    }
    return real(d);
}
