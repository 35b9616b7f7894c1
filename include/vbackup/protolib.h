/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The protocol's rules as code, in one place (hostd/lib/protolib.c, libc
 * only): what a path is, which extended attributes a record may carry, and
 * the byte layout of a file record with everything it says about itself
 * checked.  The guest tool and vbclient encode records with it and check the
 * records of RESTORE_LIST; vbackupd checks BACKUP_FILES with it (and adds
 * what depends on the job: disks, sizes, the previous record) and encodes
 * RESTORE_LIST; a host-side mapper of file systems makes the same records.
 * docs/protocol.md states the rules in words.
 */
#ifndef VBACKUP_PROTOLIB_H
#define VBACKUP_PROTOLIB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vbackup/proto.h"

/* ---- paths and names ------------------------------------------------------- */

/* NULL when P (N bytes) is a protocol path, else why not ("'.' or '..'
 * component", ...).  "" (the root) only when ALLOW_ROOT.  Any byte but NUL
 * and '/' may appear in a name: names are bytes, not text. */
const char *vb_path_check(const char *p, size_t n, bool allow_root);

/* Valid UTF-8 (no overlong forms, surrogates or values above U+10FFFF). */
bool vb_utf8_valid(const char *s, size_t n);

/* An extended attribute name a record may carry: 1..VB_MAX_XATTR_NAME bytes,
 * no NUL, in the user., trusted. or security. namespace with something after
 * the prefix, or exactly system.posix_acl_access / system.posix_acl_default. */
bool vb_xattr_name_ok(const char *name, size_t n);

/* ---- times ------------------------------------------------------------------ */

struct vb_ts {
    int64_t sec;
    uint32_t nsec;                       /* 0..999999999 */
};

/* Nanoseconds since the epoch as seconds and nanoseconds (floor division:
 * -1.5 s is -2 s + 0.5 s). */
struct vb_ts vb_ts_from_ns(int64_t ns);
int vb_ts_cmp(struct vb_ts a, struct vb_ts b);

/* ---- file records ------------------------------------------------------------ */

/*
 * One file record in host byte order.  Decoded, the pointers point into the
 * payload; for encoding, into the caller's memory.  xattrs is the wire
 * section itself (struct vb_xattr + name + value, n_xattrs times, names
 * strictly ascending), extents n_extents wire extents (unaligned: read them
 * with vb_extent_get).
 */
struct vb_rec {
    uint8_t type, data;
    uint16_t disk;
    uint32_t mode, uid, gid, nlink, rdev;
    uint64_t size, ino;
    struct vb_ts mtime, ctime, atime;
    uint32_t fsflags, projid, flags;
    const char *path;
    size_t path_len;
    const char *link;
    size_t link_len;
    const uint8_t *xattrs;
    size_t xattr_len;
    uint32_t n_xattrs;
    const uint8_t *extents;
    uint32_t n_extents;
};

#define VB_REC_FIXED            sizeof(struct vb_file_rec)
#define VB_EXTENT_SIZE          sizeof(struct vb_extent)

/* Where a record is checked: which VB_RF_* flags it may have. */
enum vb_rec_ctx {
    VB_REC_BACKUP,                       /* BACKUP_FILES: none */
    VB_REC_RESTORE,                      /* RESTORE_LIST: VB_RF_PREALLOC */
};

/* Bytes of R on the wire without its extents: the fixed part, path, link
 * target and extended attributes. */
size_t vb_rec_head_size(const struct vb_rec *r);
/* Writes those bytes to OUT (vb_rec_head_size(r) of them) with n_extents as
 * R says; the caller appends the extents (vb_extent_put).  Returns the size. */
size_t vb_rec_encode_head(const struct vb_rec *r, uint8_t *out);

void vb_extent_put(uint8_t *out, const struct vb_extent *x);      /* x in host order */
void vb_extent_get(const uint8_t *in, struct vb_extent *x);       /* to host order */

/*
 * Decodes the record at P (N bytes left in the payload) into R and sets
 * *used to its length.  Checks what the record says about itself: the type
 * and data source, mode bits, the path (vb_path_check; "" allowed), the link
 * target (symlinks only: 1..VB_MAX_LINK bytes, no NUL), times (nsec below a
 * second, reserved 0), inode flags within VB_FSFL_MASK, flags for CTX, the
 * extended attributes (vb_xattrs_check), the extents (length > 0, known
 * flags, no 64-bit overflow, ascending and not overlapping; on records that
 * are not EXTENTS or MORE only unwritten ones at physical 0).  A MORE record
 * is checked for its path and extents only.  Not checked here: disk indices,
 * physical ranges, the previous record (the job's context).
 * Returns VB_S_OK, or VB_S_BAD_REQUEST / VB_S_BAD_PATH / VB_S_TOO_LARGE /
 * VB_S_OUT_OF_RANGE with WHY (no path in it: the caller names the record).
 */
int vb_rec_decode(const uint8_t *p, size_t n, enum vb_rec_ctx ctx, struct vb_rec *r,
                  size_t *used, char *why, size_t why_len);

/* ---- extended attributes ------------------------------------------------------ */

struct vb_xattr_view {
    const char *name;
    size_t name_len;
    const uint8_t *value;
    size_t value_len;
};

/* Bytes one attribute takes in a section. */
size_t vb_xattr_size(size_t name_len, size_t value_len);
/* Writes one attribute at OUT (vb_xattr_size bytes); returns that size.
 * Attributes must be put in strictly ascending name order. */
size_t vb_xattr_put(uint8_t *out, const char *name, size_t name_len, const void *value,
                    size_t value_len);
/* The attribute at offset *off of a section that vb_xattrs_check accepted;
 * advances *off.  false at the end. */
bool vb_xattr_next(const uint8_t *sec, size_t len, size_t *off, struct vb_xattr_view *x);
/* Checks a section of LEN bytes holding N attributes: every header, name
 * (vb_xattr_name_ok) and value length, names strictly ascending (no name
 * twice), exactly LEN bytes used, LEN <= VB_MAX_XATTR_BYTES.  NULL or why not. */
const char *vb_xattrs_check(const uint8_t *sec, size_t len, uint32_t n);
/* A POSIX ACL attribute value (system.posix_acl_*) as the kernel gives it:
 * the id of entries that name no one (owner, owning group, mask, other) is
 * ACL_UNDEFINED_ID (all ones).  A mapper that reads ACLs from a file system
 * image (libext2fs writes 0 there) calls this so that its records equal the
 * kernel's.  Values that are not an ACL are left alone. */
void vb_acl_canonical(const char *name, size_t name_len, uint8_t *value, size_t len);
/* Byte order of names (memcmp, then the shorter first). */
int vb_name_cmp(const char *a, size_t an, const char *b, size_t bn);

/* ---- BACKUP_PROBLEMS items ---------------------------------------------------------- */

size_t vb_problem_size(size_t path_len, size_t reason_len);
size_t vb_problem_put(uint8_t *out, const char *path, size_t path_len, const char *reason,
                      size_t reason_len);
/* Decodes and checks the item at P (N bytes left): a protocol path ("" is
 * the root), a reason of 1..VB_MAX_MESSAGE bytes of printable ASCII (no control
 * characters.  Returns VB_S_OK or a status with WHY. */
int vb_problem_decode(const uint8_t *p, size_t n, const char **path, size_t *path_len,
                      const char **reason, size_t *reason_len, size_t *used, char *why,
                      size_t why_len);

#endif /* VBACKUP_PROTOLIB_H */
