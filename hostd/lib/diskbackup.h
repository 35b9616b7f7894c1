/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Whole-disk backup: fixed chunks (4 MiB by default), holes not stored. */
#ifndef VB_DISKBACKUP_H
#define VB_DISKBACKUP_H

#include <stdbool.h>
#include <stdint.h>

#include "cbt.h"
#include "repo.h"

struct vb_disk_backup_opts {
    const char *vm;
    const char *image;
    const char *format;      /* "raw" or "qcow2": required, never probed */
    const char *backing_format;  /* optional: see struct vb_image_opts */
    const char *name;        /* disk name (retention group); default: image file name */
    bool no_direct;          /* buffered reads instead of O_DIRECT */
    int threads;             /* CPU workers; 0: one per CPU */
    bool progress;
    /* optional: called from the backup's thread as data is processed */
    void (*progress_cb)(void *opaque, uint64_t done, uint64_t total);
    void *progress_opaque;
    volatile int *cancel;    /* optional: non-zero stops the backup (-ECANCELED) */
    /* optional: called from the backup's thread once everything is read,
     * before the snapshot is committed; non-zero aborts the backup */
    int (*before_commit)(void *opaque, vb_error *e);
    void *before_commit_opaque;
    /* full (0 or VB_MODE_FULL), VB_MODE_INCREMENTAL (parent: the newest
     * backup of the disk) or VB_MODE_DIFFERENTIAL (parent: the newest full
     * one); parent names it instead (a backup of the same disk) */
    int mode;
    const char *parent;
    /* changed-block tracking (cbt.h, docs/cbt.md): the disk's record (NULL:
     * none) and, when the caller already knows that it cannot prove the
     * change set, why (no host paths).  An incremental or differential
     * backup whose record proves the change set reads only that; anything
     * else reads everything and says why (struct vb_disk_stats). */
    const struct vb_cbt_record *cbt;
    const char *cbt_why;
};

struct vb_disk_stats {
    uint64_t size;           /* virtual size */
    uint64_t allocated;      /* bytes mapped as data in the image chain (0 when tracked:
                              * not mapped) */
    uint64_t bytes_read;     /* bytes read from image files */
    uint64_t bytes_new;      /* plain bytes of chunks new to the repository */
    uint64_t bytes_dedup;    /* plain bytes of chunks already stored */
    uint64_t bytes_zero;     /* bytes of holes and all-zero chunks (not stored) */
    uint64_t stored_new;     /* bytes written for new chunks (compressed, with headers) */
    uint64_t chunks, chunks_new, chunks_dedup, chunks_hole;
    double seconds;
    /* changed-block tracking */
    int mode;                /* what the snapshot says (full without a parent) */
    bool tracked;            /* only the tracked change set was read */
    char why[256];           /* otherwise: why everything was read (no host paths) */
    uint64_t changed_bytes;  /* tracked: bytes of the change set */
    uint64_t changed_runs;   /* its runs of contiguous bytes */
    uint64_t chunks_changed; /* chunks holding changes (their basis chunk patched) */
    uint64_t chunks_reused;  /* chunks taken from the basis without a read */
    uint64_t chunks_reread;  /* chunks read whole (basis chunk unreadable or gone) */
    uint64_t bytes_basis;    /* plain bytes of basis chunks loaded from the repository */
    char basis[128];         /* tracked: the snapshot the change set is relative to */
};

struct vb_disk_sink;

/* Back up a disk image through a sink over a write session (disksink.h),
 * begun by the caller: the backup ends it, committed on success, aborted on
 * failure (the caller still drops its reference). */
int vb_disk_backup(struct vb_disk_sink *sk, const struct vb_disk_backup_opts *o,
                   struct vb_disk_stats *st, char **snap_id, vb_error *e);

#endif
