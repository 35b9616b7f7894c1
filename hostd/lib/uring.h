/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * io_uring data mover: keeps many reads or writes in flight, requeues short
 * transfers and -EAGAIN, and calls each request's callback once it is whole.
 * Modelled on liburing's examples/io_uring-cp.c.  Single-threaded: one ring
 * belongs to one thread.
 */
#ifndef VB_URING_H
#define VB_URING_H

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>

enum vb_io_op { VB_IO_READ = 1, VB_IO_WRITE = 2, VB_IO_POLL = 3 };

struct vb_io;
/* res: bytes transferred (reads: < len only at end of file) or -errno. */
typedef void (*vb_io_cb)(struct vb_io *io, int res);

struct vb_io {
    uint8_t op;
    int fd;                 /* first choice (may be O_DIRECT) */
    int fd_fallback;        /* for the remainder after a short O_DIRECT transfer */
    uint64_t off;
    uint8_t *buf;
    uint32_t len;
    uint32_t done;
    uint32_t poll_mask;     /* VB_IO_POLL */
    vb_io_cb cb;
    void *opaque;
    struct vb_io *next;     /* internal: waiting for a submission slot */
};

struct vb_ring {
    struct io_uring ring;
    unsigned entries;
    unsigned inflight;      /* submitted or prepared, not yet completed */
    struct vb_io *wait_head, *wait_tail;
    uint64_t bytes_read, bytes_written, requests;
};

int vb_ring_init(struct vb_ring *r, unsigned entries);
void vb_ring_exit(struct vb_ring *r);
/* Queue a request; it is submitted by the next vb_ring_run(). */
void vb_ring_queue(struct vb_ring *r, struct vb_io *io);
/* Submit what is queued, without waiting or running completions (safe to
 * call from a completion callback). */
int vb_ring_submit(struct vb_ring *r);
/* Submit what is queued; if wait and anything is in flight, sleep until at
 * least one request completes; then run every available completion.
 * Returns the number of callbacks run, or -errno. */
int vb_ring_run(struct vb_ring *r, bool wait);
static inline unsigned vb_ring_busy(const struct vb_ring *r)
{
    return r->inflight;
}

#endif
