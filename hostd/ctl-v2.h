/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vbackupctl on version 2 repositories (hostd/repo/repo2.h, the v2 door):
 * init with encryption, the list of snapshots, show, verify and key files
 * in ctl-v2.c; `copy`, which moves disk and files snapshots from a
 * repository of either format into a version 2 one (a local folder or
 * s3://BUCKET/PREFIX), in ctl-copy.c; forget, prune, gc and stats in ctl-v2-maint.c.  backup-disk and restore-disk
 * (vbackupctl.c) run the one disk engine on either format through
 * hostd/lib/disksink.h.  The daemon and the other commands still work on
 * version 1 repositories (docs/repository-v2.md, "What uses it today").
 *
 * Secrets never come from the command line: --password-file FILE, else the
 * file $VBACKUP_PASSWORD_FILE names, else a terminal prompt; or
 * --key-file FILE (a raw 32-byte key).
 */
#ifndef VBACKUP_CTL_V2_H
#define VBACKUP_CTL_V2_H

#include <json-c/json.h>
#include <stdbool.h>

#include "retention.h"
#include "util.h"

struct vb2_repo;

/* ---- vbackupctl.c's, shared with the commands of either format ---------------- */

/* vbackupctl's name for messages, and --quiet */
extern const char *prog;
extern bool quiet;
/* --store-option KEY=VALUE, NULL-terminated (NULL: none): the store's
 * options for the repository commands open (vb2_open_opts.store_opts) */
extern const char *const *vbctl_store_opts;

/* o as pretty JSON on stdout */
void vbctl_print_json(json_object *o);
/* A count option (0..1000000); a message and -1 when s is not one. */
int vbctl_parse_int(const char *opt, const char *s, int *out);

/* forget's loop, the same for both formats: forget(h, id) each of ids, "forgot
 * ID" or the error per id (or a JSON array of {id, error?}); 1 if any failed */
int vbctl_forget_each(int n, char **ids, bool json,
                      int (*forget)(void *h, const char *id, vb_error *e), void *h);
/* prune's options, the same for both formats: 0, or an exit status after a
 * message (2: usage; 1: no --keep-* option, which would remove everything).
 * --password-file and --key-file only when v2 is set. */
struct vbctl_prune_args {
    struct vb_retention policy;
    const char *vm;                     /* NULL: every VM */
    bool dry_run, json;
    const char *password_file, *key_file;
};
int vbctl_prune_args(int argc, char **argv, bool v2, struct vbctl_prune_args *a);
/* prune's plan (vb_retention_plan_groups' array) as JSON or as the lines
 * "keep    ID (rules)" / "remove  ID" and a summary */
void vbctl_prune_print(json_object *plan, const struct vbctl_prune_args *a);

/* ---- ctl-v2.c's helpers --------------------------------------------------------- */

/* Text that may hold bytes a guest chose (names, groups): escaped when it is
 * not plain (as ls -b does); ours stays readable.  g_free() it. */
char *vbctl_esc(const char *s);
/* "vbackupctl: what: message" on stderr; returns 1 (the exit status) */
int vbctl_fail(const char *what, const vb_error *e);
/* Open a v2 repository; an encrypted one with the secret of password_file or
 * key_file (NULL: $VBACKUP_PASSWORD_FILE's, or a terminal prompt). */
int vbctl_v2_open(const char *location, const char *password_file, const char *key_file,
                  bool readonly, struct vb2_repo **r, vb_error *e);

/* ---- the commands ------------------------------------------------------------------ */

/* Whether location holds a version 2 repository (s3://..., or a folder with
 * a config object), so that commands go to the v2 door. */
bool vbctl_is_v2(const char *location);

/* The commands; argv[0] is the command's name, options as getopt_long sees
 * them.  Exit statuses as vbackupctl's (0 done, 1 failed, 2 usage). */
int vbctl_v2_init(const char *location, int argc, char **argv);
int vbctl_v2_snapshots(const char *location, int argc, char **argv);
int vbctl_v2_show(const char *location, int argc, char **argv);
int vbctl_v2_verify(const char *location, int argc, char **argv);
int vbctl_v2_key(const char *location, int argc, char **argv);
/* ctl-copy.c */
int vbctl_copy(int argc, char **argv);
/* ctl-v2-maint.c */
int vbctl_v2_forget(const char *location, int argc, char **argv);
int vbctl_v2_prune(const char *location, int argc, char **argv);
int vbctl_v2_gc(const char *location, int argc, char **argv);
int vbctl_v2_repair(const char *location, int argc, char **argv);
int vbctl_v2_stats(const char *location, int argc, char **argv);

#endif
