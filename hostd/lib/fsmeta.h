/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What a restore gives a file beyond its data, the same way on the host
 * (vbackupctl restore-files) and in the guest (vbackup restore): extended
 * attributes and POSIX ACLs, inode flags and the project id, preallocated
 * ranges, and which blocks of zeros stay holes.  Libc only (the guest tool
 * is static); built into both like beneath.c.
 *
 * Order of a restore (docs/host-restore.md, docs/guest-tool.md): data,
 * preallocation, owner, extended attributes (chown clears
 * security.capability, so they come after it; ACLs set the mode's group
 * bits, so the mode comes after them), mode, times (checked: a time the
 * file system cannot hold is an error), and, after every hard link to the
 * file is made, the project id and the inode flags (immutable and
 * append-only forbid what comes before).
 */
#ifndef VB_FSMETA_H
#define VB_FSMETA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

/* Namespaces of extended attributes a restore manages. */
#define VB_XA_USER      1u       /* user. */
#define VB_XA_ACL       2u       /* system.posix_acl_access, system.posix_acl_default */
#define VB_XA_SECURITY  4u       /* security. (security.capability, security.selinux ...) */
#define VB_XA_TRUSTED   8u       /* trusted. */
#define VB_XA_ALL       (VB_XA_USER | VB_XA_ACL | VB_XA_SECURITY | VB_XA_TRUSTED)

/* The namespace of a name (0: not one a backup keeps). */
unsigned vb_xa_class(const char *name, size_t len);

struct vb_xa {
    const char *name;
    size_t name_len;
    const void *value;
    size_t value_len;
};

/*
 * Gives the file open as FD exactly the attributes XS (N of them) of the
 * namespaces WANT: sets each (those of other namespaces are skipped), and
 * removes the file's attributes of those namespaces that XS lacks (inherited
 * default ACLs, labels given at creation).  FD may be an O_PATH descriptor
 * (a symlink, a device node): it is then reached through /proc/self/fd.
 * Returns 0, or -errno with *what naming the step and *which the attribute.
 */
int vb_xa_apply(int fd, bool opath, const struct vb_xa *xs, size_t n, unsigned want,
                const char **what, char *which, size_t which_len);

/*
 * The project id and the inode flags (VB_FSFL_*, proto.h) of the file open
 * as FD (a regular file or a directory, not O_PATH): the flags outside
 * VB_FSFL_MASK are left as they are.  Nothing is done when both already
 * are as asked (a file system without flags then succeeds for 0 and 0).
 */
int vb_fsflags_apply(int fd, uint32_t fsflags, uint32_t projid, const char **what);

/* Preallocates [off, off + len) of FD without changing its size. */
int vb_prealloc(int fd, uint64_t off, uint64_t len);

/* Times: sets atime and mtime of NAME in DIRFD ("" and AT_EMPTY_PATH for
 * DIRFD itself) without following a symlink, then reads them back: -ERANGE
 * when the file system stored other times (it cannot represent them). */
int vb_times_apply(int dirfd, const char *name, const struct timespec ts[2]);

/* Writes LEN bytes of BUF at OFF of FD; with SPARSE, 4 KiB blocks (aligned
 * in the file) that are all zeros are skipped and stay holes (the file must
 * hold zeros there: a new file).  -errno on a failed write. */
int vb_write_sparse(int fd, const void *buf, size_t len, uint64_t off, bool sparse);
/* LEN zeros at OFF: written, or skipped when SPARSE. */
int vb_write_zeros(int fd, uint64_t len, uint64_t off, bool sparse);

#endif
