/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Copying snapshots of any repository (version 1 or 2, read through the
 * snapshot door snapread.h) into a version 2 one (a folder or an S3
 * bucket): the engine `vbackupctl copy` and vbackupd's copy_to
 * (docs/repository-v2.md) share.  A snapshot keeps its id, group, dedup
 * group, parent and created time; only chunks the target lacks are stored;
 * a files snapshot's catalog is rewritten to name its chunks by the
 * target's ids.  Ids are keyed by each repository's (or dedup group's) key,
 * so every chunk is read from the source and put into the target, once per
 * snapshot however often it is named.  A version 1 source is claimed by
 * its door (vb_sr_open, vb_sr_over), so that its gc waits.
 */
#ifndef VB_REPO_COPY_H
#define VB_REPO_COPY_H

#include <stdint.h>

#include "progress.h"
#include "repo2.h"
#include "snapread.h"

/* -EINVAL (e says so) when from reads the repository to is (the same
 * repository id, however each was opened), else 0. */
int vb_copy_check(struct vb_sr *from, struct vb2_repo *to, vb_error *e);

/*
 * Copy the snapshot id of from into to.  p (may be NULL) is updated with
 * *done, which grows by the plain bytes read; *new_id (malloc'd) is the id
 * in the target (the same), *bytes_new what the target's packs grew by.
 * -EINVAL when from and to are one repository (vb_copy_check); -EEXIST when
 * the target has the snapshot already (nothing done); -ECANCELED when
 * *cancel (may be NULL) became nonzero: the write is aborted, nothing of it
 * is visible in the target.  Any thread; one call per write session.
 */
int vb_copy_snap(struct vb_sr *from, const char *id, struct vb2_repo *to, const int *cancel,
                 struct vb_progress *p, uint64_t *done, char **new_id, uint64_t *bytes_new,
                 vb_error *e);
/* What a progress line counts of a snapshot: a disk's size, a files
 * snapshot's bytes of regular files. */
uint64_t vb_copy_size(const struct vb_sr_info *i);

#endif
