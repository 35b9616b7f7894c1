/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "workers.h"

#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

static struct vb_work stop_marker;

int vb_cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    return n > 0 ? (int)n : 1;
}

struct thread_arg {
    struct vb_workers *w;
};

static void *worker_main(void *opaque)
{
    struct vb_workers *w = opaque;
    struct vb_codec c;
    uint64_t one = 1;

    if (vb_codec_init(&c, w->level) < 0)
        abort();
    for (;;) {
        struct vb_work *work = g_async_queue_pop(w->in);
        if (work == &stop_marker)
            break;
        work->fn(work, &c);
        g_async_queue_push(w->done, work);
        if (write(w->efd, &one, sizeof(one)) < 0) {
            /* the counter cannot overflow in practice; nothing to do */
        }
    }
    vb_codec_free(&c);
    return NULL;
}

int vb_workers_start(struct vb_workers *w, int n, int level)
{
    memset(w, 0, sizeof(*w));
    w->n = n > 0 ? n : vb_cpu_count();
    w->level = level;
    w->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (w->efd < 0)
        return -errno;
    w->in = g_async_queue_new();
    w->done = g_async_queue_new();
    w->th = calloc((size_t)w->n, sizeof(*w->th));
    for (int i = 0; i < w->n; i++) {
        int ret = pthread_create(&w->th[i], NULL, worker_main, w);
        if (ret) {
            w->n = i;
            vb_workers_stop(w);
            return -ret;
        }
    }
    return 0;
}

void vb_workers_push(struct vb_workers *w, struct vb_work *work)
{
    g_async_queue_push(w->in, work);
}

struct vb_work *vb_workers_pop(struct vb_workers *w)
{
    uint64_t v;

    if (read(w->efd, &v, sizeof(v)) < 0) {
        /* EAGAIN: nothing signalled; the queue may still hold items */
    }
    return g_async_queue_try_pop(w->done);
}

void vb_workers_stop(struct vb_workers *w)
{
    if (!w->in)
        return;
    for (int i = 0; i < w->n; i++)
        g_async_queue_push(w->in, &stop_marker);
    for (int i = 0; i < w->n; i++)
        pthread_join(w->th[i], NULL);
    free(w->th);
    g_async_queue_unref(w->in);
    g_async_queue_unref(w->done);
    close(w->efd);
    memset(w, 0, sizeof(*w));
}
