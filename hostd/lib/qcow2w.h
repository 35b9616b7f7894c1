/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Minimal qcow2 v3 writer for restores: 64 KiB clusters, no backing file,
 * data clusters allocated in the order they are written, metadata (L2
 * tables, L1, refcounts) written by vb_q2w_finish.  Unwritten clusters stay
 * unallocated, so the result is as sparse as the backup.
 */
#ifndef VB_QCOW2W_H
#define VB_QCOW2W_H

#include <stdbool.h>
#include <stdint.h>

#include "util.h"

struct vb_q2w;

int vb_q2w_create(int fd, const char *path, uint64_t size, struct vb_q2w **out, vb_error *e);
uint32_t vb_q2w_cluster_size(const struct vb_q2w *w);
/* Allocate the host cluster for the guest cluster at guest_off (cluster
 * aligned, allocated once); returns its host offset. */
int vb_q2w_alloc(struct vb_q2w *w, uint64_t guest_off, uint64_t *host_off, vb_error *e);
int vb_q2w_finish(struct vb_q2w *w, vb_error *e);
void vb_q2w_free(struct vb_q2w *w);

#endif
