/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Serving a disk snapshot over NBD: nbdkit with nbdkit-vbackup-plugin.so,
 * started as a child of vbackupctl (--exit-with-parent) and stopped with it.
 * Used by `export` and `boot-from`.
 */
#ifndef VBI_EXPORT_H
#define VBI_EXPORT_H

#include <stdbool.h>
#include <sys/types.h>

#include "instant.h"
#include "snapread.h"

struct vbi_export_opts {
    const char *spec;        /* snapshot id or VM name */
    const char *disk;        /* --disk */
    const char *unix_path;   /* --unix */
    const char *socket_group; /* --socket-group: the socket's group, mode 0660 */
    int port;                /* --port (0: none) */
    const char *address;     /* --address (default 127.0.0.1) */
    const char *cache;       /* --cache SIZE (the plugin's cache=) */
    int readahead;           /* --readahead N; -1: the plugin's default */
    int threads;             /* --threads N; 0: nbdkit's default */
    bool verbose;            /* nbdkit -v */
};

struct vbi_export {
    pid_t pid;
    char *tmpdir;            /* nbdkit's pid file */
    char *uri;               /* what a client opens: nbd+unix:///ID?socket=... */
    char *socket;            /* absolute, unix exports only */
    bool own_socket;         /* made by the nbdkit started here: removed at the end */
    struct vb_sr_info *info;
};

/* Blocks the signals (proc.h), resolves the snapshot, starts nbdkit and
 * returns once it accepts connections (or fails, naming why). */
int vbi_export_start(const struct vbi_ctx *c, const struct vbi_export_opts *o,
                     struct vbi_export *x, vb_error *e);
/* Serves until SIGINT, SIGTERM or SIGHUP (0) or until nbdkit ends by itself
 * (1, after saying so); stops nbdkit. */
int vbi_export_serve(const struct vbi_ctx *c, struct vbi_export *x);
/* Stops nbdkit if it still runs and frees x's members. */
void vbi_export_clear(struct vbi_export *x);

/* Shared option parsing: returns 1 when the option was one of the export's. */
int vbi_export_option(int opt, const char *arg, struct vbi_export_opts *o, const char *prog);
#define VBI_EXPORT_LONGOPTS                                                           \
    { "disk", 1, 0, 'd' }, { "unix", 1, 0, 'U' }, { "port", 1, 0, 'p' },            \
    { "address", 1, 0, 'a' }, { "cache", 1, 0, 'C' }, { "readahead", 1, 0, 'R' },   \
    { "threads", 1, 0, 't' }, { "verbose", 0, 0, 'v' }, { "socket-group", 1, 0, 'G' }

#endif
