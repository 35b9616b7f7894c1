/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Files snapshots on the host: list and restore (vbackupctl ls / restore-files). */
#ifndef VB_FILERESTORE_H
#define VB_FILERESTORE_H

#include <glib.h>
#include <stdbool.h>

#include "catalog.h"
#include "repo.h"
#include "snapshot.h"

/* The catalog of a files snapshot already loaded (checked against its SHA-256). */
int vb_files_catalog(struct vb_repo *r, const struct vb_snapshot *s, struct vb_catalog **cat,
                     vb_error *e);
int vb_files_open(struct vb_repo *r, const char *id, struct vb_snapshot **snap,
                  struct vb_catalog **cat, vb_error *e);
/* Entries under the paths (none: everything), sorted, parents first. */
int vb_files_select(struct vb_catalog *cat, char **paths, int n, GArray **out, vb_error *e);

struct vb_files_restore_opts {
    const char *snapshot;
    char **paths;
    int n_paths;
    const char *to;          /* folder; entries keep their paths below it */
    bool progress;
};

struct vb_files_restore_stats {
    uint64_t files, dirs, bytes;
};

int vb_files_restore(struct vb_repo *r, const struct vb_files_restore_opts *o,
                     struct vb_files_restore_stats *st, vb_error *e);

#endif
