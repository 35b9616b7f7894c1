/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * CPU workers for hashing, compression and decompression.  Each thread owns
 * a codec; finished work comes back through a queue and an eventfd that the
 * owner watches (io_uring poll or a glib source).
 */
#ifndef VB_WORKERS_H
#define VB_WORKERS_H

#include <glib.h>
#include <pthread.h>

#include "chunk.h"

struct vb_work;
typedef void (*vb_work_fn)(struct vb_work *w, struct vb_codec *c);

struct vb_work {
    vb_work_fn fn;
    void *opaque;
};

struct vb_workers {
    int n;
    pthread_t *th;
    GAsyncQueue *in;
    GAsyncQueue *done;
    int efd;                 /* readable when done has items */
    int level;
};

/* n <= 0: one per online CPU. */
int vb_workers_start(struct vb_workers *w, int n, int level);
void vb_workers_push(struct vb_workers *w, struct vb_work *work);
/* Non-blocking; NULL when nothing is done.  Clears the eventfd first. */
struct vb_work *vb_workers_pop(struct vb_workers *w);
void vb_workers_stop(struct vb_workers *w);
int vb_cpu_count(void);

#endif
