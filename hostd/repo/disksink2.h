/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The disk sink (hostd/lib/disksink.h) over a version 2 write session: the
 * disk backup engine writes into a format 2 repository through it.
 */
#ifndef VB_REPO_DISKSINK2_H
#define VB_REPO_DISKSINK2_H

#include "disksink.h"
#include "repo2.h"

/*
 * Begin a write session on r for vm in dedup_group (NULL: none) and make a
 * sink over it; location names the repository in tracking records (a real
 * path or a URL).  The backup ends the session; vb2_disk_sink_end frees the
 * rest (after the backup, or instead of it).
 */
int vb2_disk_sink(struct vb2_repo *r, const char *location, const char *vm,
                  const char *dedup_group, struct vb_disk_sink *out, vb_error *e);
/*
 * The same over a session w the caller began (on r, with this dedup_group)
 * and keeps its reference to: the sink holds a reference of its own, which
 * vb2_disk_sink_end drops.  The backup still ends the session (committed or
 * aborted), so nothing else commits through w.
 */
void vb2_disk_sink_over(struct vb2_repo *r, struct vb2_write *w, const char *location,
                        const char *dedup_group, struct vb_disk_sink *out);
/* A string member name: value of the committed manifest's notes (beside
 * "tracking"), e.g. the write session's token (sink2.h).  Before the backup. */
void vb2_disk_sink_note(struct vb_disk_sink *s, const char *name, const char *value);
/* The session's figures (after the backup). */
void vb2_disk_sink_stats(struct vb_disk_sink *s, struct vb2_write_stats *st);
void vb2_disk_sink_end(struct vb_disk_sink *s);

#endif
