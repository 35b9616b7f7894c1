/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What vbackupd asks the file system mapper to map: the job, the disks (the
 * formats of each view's image chain, whose descriptors the mapper inherits
 * from fd 3 on, top first, disk after disk), the file systems (a disk and
 * the byte offset where the file system starts), the roots (a file system,
 * the path inside it, the path the guest names it by), the folders not to
 * walk into (mount points of other file systems) and the exclusions.
 *
 * vbackupd encodes it (vb_mapspec_encode) and writes it to the mapper's
 * stdin; the mapper decodes it (vb_mapspec_decode), which checks every
 * count, length and path (vb_path_check) again.  Little-endian, strings
 * counted (uint16_t length, bytes, no NUL).  libc only.
 */
#ifndef VB_MAPSPEC_H
#define VB_MAPSPEC_H

#include <stddef.h>
#include <stdint.h>

#include "vbackup/proto.h"

#define VB_MAPSPEC_MAGIC      0x534d4256u   /* "VBMS" */
#define VB_MAPSPEC_VERSION    1u
#define VB_MAPSPEC_MAX_LAYERS 64u           /* per disk (VB_MAX_CHAIN) */
#define VB_MAPSPEC_MAX_FDS    256u          /* layers of all disks */
#define VB_MAPSPEC_MAX_PRUNE  VB_MAX_PRUNE
#define VB_MAPSPEC_MAX_EXCLUDE VB_MAX_EXCLUDE
#define VB_MAPSPEC_MAX_PATTERN VB_MAX_PATTERN
#define VB_MAPSPEC_MAX_BYTES  (64u << 20)

enum vb_mapspec_fmt { VB_MAPSPEC_RAW = 1, VB_MAPSPEC_QCOW2 = 2 };

struct vb_mapspec_disk {
    uint16_t n_layers;
    uint8_t fmt[VB_MAPSPEC_MAX_LAYERS];      /* vb_mapspec_fmt, top first */
};

struct vb_mapspec_fs {
    uint16_t disk;                           /* index into disks */
    uint64_t offset;                         /* bytes from the disk's start */
};

struct vb_mapspec_root {
    uint16_t fs;                             /* index into fs */
    char *inside;                            /* protocol path inside the file system ("" its root) */
    char *abs;                               /* the guest's path ("" is "/") */
};

struct vb_mapspec {
    uint64_t job;
    uint16_t n_disks, n_fs, n_roots, n_prune, n_exclude;
    struct vb_mapspec_disk disks[VB_MAX_DISKS];
    struct vb_mapspec_fs fs[VB_MAX_ROOTS];
    struct vb_mapspec_root roots[VB_MAX_ROOTS];
    char *prune[VB_MAPSPEC_MAX_PRUNE];       /* guest protocol paths */
    char *exclude[VB_MAPSPEC_MAX_EXCLUDE];   /* fnmatch patterns, as --exclude */
};

/* The encoding of S: malloc'ed, *len bytes; NULL when out of memory. */
uint8_t *vb_mapspec_encode(const struct vb_mapspec *s, size_t *len);
/* Decodes and checks P (N bytes) into S (whose strings are malloc'ed; free
 * with vb_mapspec_clear).  NULL, or why not (S is then cleared). */
const char *vb_mapspec_decode(const uint8_t *p, size_t n, struct vb_mapspec *s);
void vb_mapspec_clear(struct vb_mapspec *s);
/* Descriptors the spec's chains take (from fd 3). */
unsigned vb_mapspec_n_fds(const struct vb_mapspec *s);

#endif
