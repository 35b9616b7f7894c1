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
    /* read chunks in batches grouped by pack where that saves requests
     * (vb_sr_batches): about one range get per pack instead of one get per
     * chunk.  Off by default: against radosgw it made 5x fewer requests but
     * was slower than chunk by chunk (docs/repository-v2.md, "Reads"). */
    bool batched;
};

/* st gets size, chunks, allocated (bytes of data chunks) and seconds. */
int vb_disk_restore(struct vb_sr *r, const struct vb_disk_restore_opts *o,
                    struct vb_disk_stats *st, vb_error *e);

#endif
