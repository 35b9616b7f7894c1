/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "uring.h"

#include <errno.h>
#include <string.h>

#include "util.h"

int vb_ring_init(struct vb_ring *r, unsigned entries)
{
    int ret;

    memset(r, 0, sizeof(*r));
    ret = io_uring_queue_init(entries, &r->ring, 0);
    if (ret < 0)
        return ret;
    r->entries = entries;
    return 0;
}

void vb_ring_exit(struct vb_ring *r)
{
    if (r->entries)
        io_uring_queue_exit(&r->ring);
    r->entries = 0;
}

static bool prep(struct vb_ring *r, struct vb_io *io)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
    int fd = io->done && io->fd_fallback >= 0 ? io->fd_fallback : io->fd;

    if (!sqe)
        return false;
    switch (io->op) {
    case VB_IO_READ:
        io_uring_prep_read(sqe, fd, io->buf + io->done, io->len - io->done, io->off + io->done);
        break;
    case VB_IO_WRITE:
        io_uring_prep_write(sqe, fd, io->buf + io->done, io->len - io->done, io->off + io->done);
        break;
    case VB_IO_POLL:
        io_uring_prep_poll_add(sqe, io->fd, io->poll_mask);
        break;
    }
    io_uring_sqe_set_data(sqe, io);
    return true;
}

static void enqueue_wait(struct vb_ring *r, struct vb_io *io)
{
    io->next = NULL;
    if (r->wait_tail)
        r->wait_tail->next = io;
    else
        r->wait_head = io;
    r->wait_tail = io;
}

void vb_ring_queue(struct vb_ring *r, struct vb_io *io)
{
    io->done = 0;
    r->inflight++;
    r->requests++;
    if (r->wait_head || !prep(r, io))
        enqueue_wait(r, io);
}

static void fill_from_waitlist(struct vb_ring *r)
{
    while (r->wait_head && prep(r, r->wait_head)) {
        r->wait_head = r->wait_head->next;
        if (!r->wait_head)
            r->wait_tail = NULL;
    }
}

static bool complete_one(struct vb_ring *r, struct vb_io *io, int res)
{
    if (io->op == VB_IO_POLL) {
        r->inflight--;
        io->cb(io, res);
        return true;
    }
    if (res == -EAGAIN || res == -EINTR) {
        enqueue_wait(r, io);        /* retry as is */
        return false;
    }
    if (res < 0) {
        r->inflight--;
        io->cb(io, res);
        return true;
    }
    if (io->op == VB_IO_READ)
        r->bytes_read += (uint64_t)res;
    else
        r->bytes_written += (uint64_t)res;
    io->done += (uint32_t)res;
    if (io->done < io->len) {
        if (res == 0) {
            if (io->op == VB_IO_READ) {     /* end of file */
                r->inflight--;
                io->cb(io, (int)io->done);
                return true;
            }
            r->inflight--;
            io->cb(io, -EIO);
            return true;
        }
        enqueue_wait(r, io);        /* short transfer: requeue the rest */
        return false;
    }
    r->inflight--;
    io->cb(io, (int)io->done);
    return true;
}

int vb_ring_submit(struct vb_ring *r)
{
    fill_from_waitlist(r);
    return io_uring_submit(&r->ring);
}

int vb_ring_run(struct vb_ring *r, bool wait)
{
    struct io_uring_cqe *cqe;
    int ret, ran = 0;

    fill_from_waitlist(r);
    if (wait && r->inflight) {
        ret = io_uring_submit_and_wait(&r->ring, 1);
        if (ret < 0 && ret != -EINTR)
            return ret;
    } else {
        ret = io_uring_submit(&r->ring);
        if (ret < 0)
            return ret;
    }
    /* one batch: callbacks may queue more work (or re-arm a poll that
     * completes at once), which the next call picks up */
    {
        unsigned head, n = 0;
        io_uring_for_each_cqe(&r->ring, head, cqe) {
            struct vb_io *io = io_uring_cqe_get_data(cqe);
            n++;
            if (complete_one(r, io, cqe->res))
                ran++;
        }
        io_uring_cq_advance(&r->ring, n);
    }
    fill_from_waitlist(r);
    ret = io_uring_submit(&r->ring);
    if (ret < 0)
        return ret;
    return ran;
}
