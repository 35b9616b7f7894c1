/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The FUSE file system of `vbackupctl mount` (low-level API): every VM's
 * snapshots, read-only.
 *
 *   MOUNTPOINT/VM/TIME/...         a files snapshot: the guest's tree
 *   MOUNTPOINT/VM/TIME/DISK.raw    a disk snapshot: its raw image
 *
 * Inode numbers: 1 the root; 2.. the VMs; a snapshot gets a number s >= 1
 * when first listed and its folder is s << 40, the nodes of its tree
 * (s << 40) + node (a disk's image: + 1).  Hard links of a snapshot share
 * the inode of their first link.  Snapshot contents never change; the lists
 * of VMs and snapshots are read again when a lookup or a listing asks for
 * them more than a second after the last reading.
 */
#ifndef VBI_VBFS_H
#define VBI_VBFS_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include "chunkcache.h"
#include "snapread.h"

struct vbi_fs;

struct vbi_fs *vbi_fs_new(struct vb_sr *sr, struct vb_ccache *cache, unsigned readahead);
void vbi_fs_free(struct vbi_fs *fs);
const struct fuse_lowlevel_ops *vbi_fs_ops(void);

#endif
