/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vbackupctl's instant-access commands (docs/instant-access.md): export,
 * boot-from, live-restore and mount.  vbackupctl.c dispatches to them; each
 * parses its own options (getopt_long, optind reset by the caller) and
 * returns the exit status.
 */
#ifndef VBI_INSTANT_H
#define VBI_INSTANT_H

#include <stdbool.h>

struct vbi_ctx {
    const char *prog;        /* "vbackupctl", for messages */
    const char *repo;        /* --repo, or NULL */
    bool quiet;
};

int vbi_cmd_export(const struct vbi_ctx *c, int argc, char **argv);
int vbi_cmd_boot_from(const struct vbi_ctx *c, int argc, char **argv);
int vbi_cmd_live_restore(const struct vbi_ctx *c, int argc, char **argv);
int vbi_cmd_mount(const struct vbi_ctx *c, int argc, char **argv);

#endif
