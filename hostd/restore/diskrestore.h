/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Whole-disk restore of a disk snapshot, read through the snapshot door
 * (snapread.h), so of either repository format: to a raw file, a block
 * device or a new qcow2 image, holes left as holes.
 */
#ifndef VB_DISKRESTORE_H
#define VB_DISKRESTORE_H

#include <stdbool.h>

#include "diskbackup.h"
#include "snapread.h"

struct vb_disk_restore_opts {
    const char *snapshot;
    const char *to;
    const char *format;      /* "raw" (default) or "qcow2" */
    bool force;              /* overwrite an existing file */
    int threads;
    bool progress;
};

/* st gets size, chunks, allocated (bytes of data chunks) and seconds. */
int vb_disk_restore(struct vb_sr *r, const struct vb_disk_restore_opts *o,
                    struct vb_disk_stats *st, vb_error *e);

#endif
