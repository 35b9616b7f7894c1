/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The write-session door (hostd/lib/sink.h) over a version 2 write session
 * (repo2.h): vbackupd stores file and disk jobs into a format 2 repository
 * through it.
 */
#ifndef VB_REPO_SINK2_H
#define VB_REPO_SINK2_H

#include "repo2.h"
#include "sink.h"

/*
 * Begin a write session on r for vm in dedup_group (NULL or "": none) and
 * make a sink over it, with a new token (32 random hex digits) that the
 * snapshot it commits records as notes.session.  location names the
 * repository in the disk sink's tracking records (a real path or a URL).
 * r must outlive the sink.
 *
 * Version 2 has no gc-generation knowledge: a parent's chunks are looked up
 * in the index the session began with (vb_sink_has, in memory), never
 * inherited; vb_sink_inherit does nothing.  vb_sink_warning is always NULL
 * (nothing can go wrong after a v2 commit point).  vb_sink_added is
 * vb2_write_added.
 */
int vb_sink_v2(struct vb2_repo *r, const char *location, const char *vm,
               const char *dedup_group, struct vb_sink **out, vb_error *e);

/*
 * A sink for one file job over a session shared by the jobs of a batch
 * (vb2_write_begin with opts.shared, the caller's reference kept; the sink
 * takes one of its own): blobs one job stores are found by the others at
 * once.  Each job has its own token, budget (vb_sink_set_charge: charged
 * per put, not per session) and commit (vb2_write_commit_one); its abort
 * ends only the job.  vb_sink_added is what its puts and commit were
 * charged.  Files snapshots only: vb_sink_disk's commit is refused.
 */
int vb_sink_v2_shared(struct vb2_repo *r, struct vb2_write *w, const char *location,
                      const char *vm, const char *dedup_group, struct vb_sink **out,
                      vb_error *e);

/*
 * A files manifest's group and root i as the guest sent them (g_malloc'd),
 * kept by the commit as base64 beside the manifest's text (which is plain,
 * or escaped as ls -b shows it); the text when a manifest lacks them
 * (copies of version 1 snapshots, older manifests).
 */
char *vb2_files_group_raw(const struct vb_manifest *m);
char *vb2_files_root_raw(const struct vb_manifest *m, size_t i);

#endif
