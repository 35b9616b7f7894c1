/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Child processes of the foreground commands (export, boot-from): the
 * server they start and the tools they run.  The command blocks SIGINT,
 * SIGTERM, SIGHUP and SIGCHLD and takes them with sigtimedwait, so neither a
 * signal nor a child's exit can slip between a check and a wait; children
 * start with the signal mask the command had before.
 */
#ifndef VBI_PROC_H
#define VBI_PROC_H

#include <glib.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/types.h>

#include "util.h"

void vbi_signals_block(void);

/* Start argv (argv[0] looked up in PATH); stdin /dev/null, stdout and
 * stderr inherited. */
int vbi_spawn(char **argv, pid_t *pid, vb_error *e);

/* Run argv to its end; *out gets its standard output (stderr is inherited).
 * A non-zero exit is -EIO naming the program and status. */
int vbi_run(char **argv, char **out, vb_error *e);

/* Wait up to ms for a signal (SIGINT, SIGTERM, SIGHUP: returns it) or the
 * exit of child (returns SIGCHLD, *status filled); 0 on timeout. */
int vbi_wait(pid_t child, int ms, int *status);

/* SIGTERM to child, then wait for it to exit; its exit status. */
int vbi_stop(pid_t child);

/* "exited with status 3", "was killed by signal 9" */
const char *vbi_status_str(int status, char *buf, size_t len);

#endif
