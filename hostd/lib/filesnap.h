/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A files snapshot: its catalog, and a selection of its entries (vbackupctl
 * ls / restore-files, vbackupd's restore and parent lookup). */
#ifndef VB_FILESNAP_H
#define VB_FILESNAP_H

#include <glib.h>

#include "catalog.h"
#include "repo.h"
#include "snapshot.h"

/* The catalog of a files snapshot already loaded (checked against its SHA-256). */
int vb_files_catalog(struct vb_repo *r, const struct vb_snapshot *s, struct vb_catalog **cat,
                     vb_error *e);
int vb_files_open(struct vb_repo *r, const char *id, struct vb_snapshot **snap,
                  struct vb_catalog **cat, vb_error *e);
/* Entries under the paths (none, or "/": everything), sorted, parents first. */
int vb_files_select(const struct vb_catalog *cat, char **paths, int n, GArray **out, vb_error *e);

#endif
