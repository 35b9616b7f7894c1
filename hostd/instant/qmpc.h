/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A small blocking QMP client for vbackupctl (live-restore): connect to a
 * QEMU monitor socket, run commands, receive events.  (vbackupd has its own
 * asynchronous client on its main loop.)
 */
#ifndef VBI_QMPC_H
#define VBI_QMPC_H

#include <json-c/json.h>

#include "util.h"

struct vbi_qmp;

/* Connects, reads the greeting and leaves capabilities negotiation. */
int vbi_qmp_open(const char *path, struct vbi_qmp **out, vb_error *e);
void vbi_qmp_close(struct vbi_qmp *q);

/* Runs cmd with args (taken; may be NULL).  On success *ret (may be NULL)
 * gets QMP's "return" value; an error reply is -EIO with QEMU's class and
 * description in e.  Events that arrive meanwhile are kept for
 * vbi_qmp_event. */
int vbi_qmp_exec(struct vbi_qmp *q, const char *cmd, json_object *args, json_object **ret,
                 vb_error *e);

/* The next event, waiting up to ms milliseconds: 0 with *ev NULL when none
 * came; -EPIPE when QEMU closed the connection. */
int vbi_qmp_event(struct vbi_qmp *q, int ms, json_object **ev, vb_error *e);

#endif
