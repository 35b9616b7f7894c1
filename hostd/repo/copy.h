/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Copying snapshots of a version 1 repository into a version 2 one (a
 * folder or an S3 bucket): the engine `vbackupctl copy` and vbackupd's
 * copy_to (docs/repository-v2.md) share.  A snapshot keeps its id, group,
 * dedup group and parent; only chunks the target lacks are stored; a files
 * snapshot's catalog is rewritten to name its chunks by their version 2 ids.
 * The caller holds a claim of the source (vb_repo_claim) so that its gc
 * waits.
 */
#ifndef VB_REPO_COPY_H
#define VB_REPO_COPY_H

#include <stdint.h>

#include "progress.h"
#include "repo.h"
#include "repo2.h"
#include "snapshot.h"

/*
 * Copy one snapshot, loaded from `from` (a disk snapshot's chunk list is
 * loaded when it is not yet).  p (may be NULL) is updated with *done, which
 * grows by the plain bytes read; *new_id (malloc'd) is the id in the target
 * (the same), *bytes_new what the target's packs grew by.  -EEXIST when the
 * target has the snapshot already (nothing done); -ECANCELED when *cancel
 * (may be NULL) became nonzero: the write is aborted, nothing of it is
 * visible in the target.  Any thread; one call per write session.
 */
int vb_copy_snap(struct vb_repo *from, struct vb_snapshot *s, struct vb2_repo *to,
                 const int *cancel, struct vb_progress *p, uint64_t *done, char **new_id,
                 uint64_t *bytes_new, vb_error *e);
/* The same by id. */
int vb_copy_snapshot(struct vb_repo *from, const char *id, struct vb2_repo *to,
                     const int *cancel, struct vb_progress *p, uint64_t *done, char **new_id,
                     uint64_t *bytes_new, vb_error *e);
/* What a progress line counts of a snapshot: a disk's size, a files
 * snapshot's bytes of regular files. */
uint64_t vb_copy_size(const struct vb_snapshot *s);

#endif
