/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Which disk snapshot a command line names (export, boot-from). */
#ifndef VBI_RESOLVE_H
#define VBI_RESOLVE_H

#include "snapread.h"

/*
 * spec is a snapshot id (VM/TIME), which must be a disk snapshot (of the
 * disk named, when disk is not NULL), or a VM name: its newest disk snapshot
 * (of that disk; without one, the VM must have snapshots of one disk only).
 * *info gets a copy of the snapshot's listing entry.
 */
int vbi_resolve_disk(struct vb_sr *r, const char *spec, const char *disk,
                     struct vb_sr_info **info, vb_error *e);

#endif
