/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Host load from Linux pressure stall information (/proc/pressure). */
#ifndef VB_PSI_H
#define VB_PSI_H

#include "util.h"
#include "vbackup/policy.h"

#define VBD_PSI_DIR "/proc/pressure"

/*
 * Fill out from <dir>/io, <dir>/cpu and <dir>/memory ("some avg10=1.23
 * avg60=… avg300=… total=…" and "full …" lines; a missing "full" line or a
 * missing file reads as 0), and the time: now_ns (CLOCK_REALTIME), the local
 * weekday and minute of the day.  A missing or unreadable dir, an unreadable
 * file or malformed content is an error naming the path; out then holds
 * zero load and the time, so a caller may go on without load.  0 or -errno.
 */
int vbd_psi_read(const char *dir, struct vbp_load *out, vb_error *e);

/* Only the time fields of out, from the wall clock time now_ns. */
void vbd_psi_set_time(struct vbp_load *out, int64_t now_ns);

#endif
