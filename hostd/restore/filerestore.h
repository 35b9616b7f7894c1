/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Restore a files snapshot into a folder of the host (vbackupctl
 * restore-files), read through the snapshot door (snapread.h): either
 * repository format. */
#ifndef VB_FILERESTORE_H
#define VB_FILERESTORE_H

#include <glib.h>
#include <stdbool.h>

#include "filesnap.h"
#include "fsmeta.h"
#include "snapread.h"

struct vb_files_restore_opts {
    const char *snapshot;
    char **paths;
    int n_paths;
    const char *to;          /* folder; entries keep their paths below it */
    bool same_owner;         /* owners, setuid and setgid bits as in the snapshot (root) */
    bool devices;            /* make device nodes */
    unsigned xattrs;         /* VB_XA_* namespaces restored (fsmeta.h); default user. and ACLs */
    bool no_sparse;          /* write written zeros (default: 4 KiB blocks of zeros stay holes) */
    bool progress;
};

struct vb_files_restore_stats {
    uint64_t entries;        /* selected */
    uint64_t files, dirs, symlinks, others, bytes;
    uint64_t devices_skipped;   /* device nodes not made (no --devices) */
    uint64_t setid_dropped;     /* entries whose setuid/setgid bits were dropped */
    uint64_t owners_dropped;    /* entries not owned by the invoker in the snapshot */
    uint64_t xattrs_skipped;    /* entries with attributes of namespaces not restored */
    GPtrArray *failures;        /* char *: "/PATH: what: reason", PATH escaped */
};

/* Restores what it can: an entry that fails is added to st->failures and
 * the others are restored.  Returns 0 when every entry was tried (look at
 * st->failures), -EINTR when a signal stopped it (folders still get their
 * modes and times), another -errno when it could not start.  Free st with
 * vb_files_restore_stats_clear() in every case. */
int vb_files_restore(struct vb_sr *r, const struct vb_files_restore_opts *o,
                     struct vb_files_restore_stats *st, vb_error *e);
void vb_files_restore_stats_clear(struct vb_files_restore_stats *st);

#endif
