/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vbackupctl on version 2 repositories (hostd/repo/repo2.h, the v2 door):
 * init with encryption, the list of snapshots, show, verify, key
 * files, and `copy`, which moves snapshots from a version 1 repository into
 * a version 2 one (a local folder or s3://BUCKET/PREFIX).  backup-disk and
 * restore-disk (vbackupctl.c) run the one disk engine on either format
 * through hostd/lib/disksink.h.  The daemon and the other commands still
 * work on version 1 repositories (docs/repository-v2.md, "Status").
 *
 * Secrets never come from the command line: --password-file FILE, else the
 * file $VBACKUP_PASSWORD_FILE names, else a terminal prompt; or
 * --key-file FILE (a raw 32-byte key).
 */
#ifndef VBACKUP_CTL_V2_H
#define VBACKUP_CTL_V2_H

#include <stdbool.h>

#include "util.h"

struct vb2_repo;

/* vbackupctl's name for messages, and --quiet */
extern const char *prog;
extern bool quiet;

/* Whether location holds a version 2 repository (s3://..., or a folder with
 * a config object), so that commands go to the v2 door. */
bool vbctl_is_v2(const char *location);

/* Open a v2 repository (readonly: refuse writes); an encrypted one asks for
 * its secret: key_file, else password_file, else $VBACKUP_PASSWORD_FILE's
 * file, else a terminal. */
int vbctl_open_v2(const char *location, const char *password_file, const char *key_file,
                  bool readonly, struct vb2_repo **r, vb_error *e);

/* The commands; argv[0] is the command's name, options as getopt_long sees
 * them.  Exit statuses as vbackupctl's (0 done, 1 failed, 2 usage). */
int vbctl_v2_init(const char *location, int argc, char **argv);
int vbctl_v2_snapshots(const char *location, int argc, char **argv);
int vbctl_v2_show(const char *location, int argc, char **argv);
int vbctl_v2_verify(const char *location, int argc, char **argv);
int vbctl_v2_key(const char *location, int argc, char **argv);
int vbctl_copy(int argc, char **argv);

#endif
