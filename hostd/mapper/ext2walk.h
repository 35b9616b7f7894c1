/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The files of an ext2/3/4 file system read with libext2fs, as the records
 * a guest's FIEMAP walk makes (guest-driver/tool/walk.c): paths from the
 * directory tree (sorted, names as bytes), metadata from the inodes (times
 * with their nanoseconds and epoch bits as the kernel decodes them), inode
 * flags and project ids, extended attributes and ACLs (in the kernel's
 * format), extents from the extent tree or the block map (uninit extents
 * are unwritten), link targets, and the data of what is not mapped (inline
 * data) for the fallback stream.
 *
 * Shared by vbclient (tests/vbclient: a raw image, unix_io_manager) and the
 * host's mapper (hostd/mapper: the view of a VM's disk, sandboxed).  The
 * file system is hostile input: every inode, directory and extent tree is
 * checked by libext2fs as it is read, a directory reached twice (a loop or
 * a folder linked twice) and nesting deeper than VB_E2WALK_MAX_DEPTH fail
 * the walk with a message, and every allocation is bounded by what the
 * records may carry.
 */
#ifndef VB_EXT2WALK_H
#define VB_EXT2WALK_H

#include <ext2fs/ext2_fs.h>
#include <ext2fs/ext2fs.h>

#include "vbc.h"

#define VB_E2WALK_MAX_DEPTH 1024

struct vb_e2walk_opts {
    struct vbc_backup_opts *o;   /* exclusions, --fallback, problems */
    int disk;                    /* the records' disk index */
    uint64_t disk_offset;        /* where the file system starts on the disk, bytes */
    uint64_t fsid;               /* tells the job's file systems apart (hard links) */
    /* the entry at guest path ABS ("/a/b") is left out: another root */
    bool (*skip)(void *ctx, const char *abs);
    /* the folder at ABS is sent but not walked into: a mount point */
    bool (*no_descend)(void *ctx, const char *abs);
    void *ctx;
    /* what the host cannot map (encrypted files and folders) fails the walk,
     * so that the guest maps it, instead of being reported as a problem */
    bool strict;
};

struct vb_e2walk;

int vb_e2walk_new(ext2_filsys fs, const struct vb_e2walk_opts *wo, struct vb_e2walk **out,
                  struct vbc_err *e);
void vb_e2walk_free(struct vb_e2walk *w);

/* The inode at PATH (LEN bytes, relative to the file system's root, "" the
 * root), without following symlinks: every component but the last must be
 * a folder. */
int vb_e2walk_lookup(struct vb_e2walk *w, const char *path, size_t len, ext2_ino_t *ino,
                     struct vbc_err *e);

typedef int (*vb_e2walk_emit)(void *ctx, const struct vbc_file *f, const struct vbc_fb *fb,
                              struct vbc_err *e);

/* Emits the entry INO whose guest path is ABS ("/" for the root of all)
 * and, for a folder, everything beneath it.  A FALLBACK record's fb.ino is
 * the inode, for vb_e2walk_open_data. */
int vb_e2walk_visit(struct vb_e2walk *w, ext2_ino_t ino, const char *abs, vb_e2walk_emit emit,
                    void *ctx, struct vbc_err *e);

/* The data of a fallback file (vbc_source_ops' open/read/close_data). */
int vb_e2walk_open_data(struct vb_e2walk *w, const struct vbc_fb *fb, void **h,
                        struct vbc_err *e);
int vb_e2walk_read_data(void *h, uint64_t off, void *buf, size_t len, size_t *got,
                        struct vbc_err *e);
void vb_e2walk_close_data(void *h);

#endif
