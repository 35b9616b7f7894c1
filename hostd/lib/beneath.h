/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Paths beneath a directory, never through a symlink: what a host-side
 * restore of a guest's files uses for every path it touches.  A path here
 * is relative and '/'-separated, given as bytes with a length (not
 * NUL-terminated), without empty, "." or ".." components.  Resolution uses
 * openat2(2) with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, and one openat
 * with O_NOFOLLOW per component where the kernel lacks openat2 (ENOSYS).
 * Paths longer than PATH_MAX are resolved in pieces.  Libc only.
 */
#ifndef VB_BENEATH_H
#define VB_BENEATH_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* A relative path of non-empty components other than "." and "..", without
 * NUL bytes; "" (the directory itself) is not valid here. */
bool vb_beneath_valid(const char *path, size_t len);

/* Opens PATH beneath DIRFD with FLAGS (O_NOFOLLOW and O_CLOEXEC are added);
 * no component, the last one included, may be a symlink.  Returns an fd, or
 * -errno: -ELOOP when a component is a symlink, -ENOTDIR when one that has
 * a component after it is not a directory, -EINVAL for an invalid path. */
int vb_beneath_open(int dirfd, const char *path, size_t len, int flags);

/* The directory PATH beneath DIRFD, opened O_RDONLY | O_DIRECTORY, with
 * missing components made (mode MODE) like mkdir -p; never through a
 * symlink (-ELOOP).  Returns an fd or -errno. */
int vb_beneath_mkdirs(int dirfd, const char *path, size_t len, mode_t mode);

/* Tests: resolve component by component as if openat2 were missing. */
void vb_beneath_force_fallback(bool on);

#endif
