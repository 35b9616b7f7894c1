/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * An empty qcow2 overlay for changed-block tracking (docs/cbt.md): qcow2 v3,
 * 128 KiB clusters with extended L2 entries (32 subclusters of 4 KiB), so
 * that a guest's first write to a cluster copies nothing from the image
 * under it and the overlay records what was written to the 4 KiB.  QEMU
 * takes it over with blockdev-snapshot-sync mode=existing (libvirt:
 * VIR_DOMAIN_SNAPSHOT_CREATE_REUSE_EXT); its header names the image under
 * it (path and format) for every later start of QEMU.
 */
#ifndef VB_OVERLAY_H
#define VB_OVERLAY_H

#include <stdint.h>
#include <sys/types.h>

#include "util.h"

#define VB_OVERLAY_CLUSTER    (128u << 10)
#define VB_OVERLAY_SUBCLUSTER (VB_OVERLAY_CLUSTER / 32)

/*
 * Create path (which must not exist) as an empty overlay of size bytes over
 * backing (an absolute path) in backing_fmt ("raw" or "qcow2"), owned by
 * uid:gid with mode (as the image under it, so that the QEMU that runs on
 * that image can write it), durable (file and folder synced).  A failure
 * leaves no file.
 */
int vb_overlay_create(const char *path, uint64_t size, const char *backing,
                      const char *backing_fmt, uid_t uid, gid_t gid, mode_t mode, vb_error *e);

#endif
