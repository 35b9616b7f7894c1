/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Whole-disk restore: workers read, check (CRC, SHA-256) and decompress
 * chunks and find the non-zero runs; the main thread writes those runs with
 * io_uring to a raw file or block device, or into a new qcow2 image.  Holes
 * and zero runs are not written, so the result is sparse.
 *
 * With o->batched, chunks are read in batches (vb_sr_read_chunks): a
 * version 2 repository on object storage fetches the chunks of one batch
 * that share a pack with one range get, several packs at once, instead of
 * one get per chunk.  A batch is up to
 * BATCH_BYTES of chunks in disk order (those of one backup lie together in
 * its packs); BATCHES of them are in flight, so the chunk buffers come to
 * BATCHES * BATCH_BYTES.  Version 1 reads one chunk per batch, as before.
 */
#include "diskrestore.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "progress.h"
#include "qcow2w.h"
#include "uring.h"
#include "workers.h"

#define ZERO_GRAIN_RAW   4096u
#define CHUNK_MAX        (16u << 20)     /* the largest fixed chunk of a disk snapshot */
#define MAX_RUNS         (CHUNK_MAX / ZERO_GRAIN_RAW / 2 + 1)
#define BATCH_BYTES      (64u << 20)     /* chunks per batch (version 2) */
#define BATCHES          2u              /* batches in flight (version 2) */

struct drs;

struct run {
    uint32_t off, len;
};

struct rchunk {
    struct drs *rs;
    uint64_t index;
    uint32_t len;
    uint8_t *buf;
    int err;
    vb_error e;
    unsigned n_runs;
    struct run runs[MAX_RUNS];
    struct vb_io *ios;
    unsigned pending;
};

/* chunks read together: one vb_sr_read_chunks */
struct rbatch {
    struct vb_work work;     /* first */
    struct drs *rs;
    unsigned n;
    struct rchunk **ch;      /* batch_chunks of them */
    uint8_t *ids;            /* n * VB_ID_LEN */
    uint32_t *lens;
};

struct drs {
    struct vb_sr *src;
    struct vb_sr_snap *snap;
    uint32_t cs;             /* its chunk size */
    uint64_t size, n_chunks;
    struct vb_ring ring;
    struct vb_workers wk;
    struct vb_io poll_io;
    struct vb_q2w *q2w;
    int fd;
    int dfd;                 /* the same target with O_DIRECT, or -1 */
    int dir_fd;              /* a file target's folder; -1 for a block device */
    char base[256];          /* the target's name in it */
    char tmp_name[300];      /* the new file's name while it has one, else "" */
    bool replace;            /* an existing file is replaced */
    uint32_t dio_align;      /* offset, length and memory alignment for dfd */
    uint32_t grain;
    bool zero_holes;         /* target may hold old data: zero the holes */
    int err;
    vb_error e;
    unsigned active;         /* chunks taken from free_slots */
    GQueue free_slots;
    unsigned batch_chunks;   /* chunks per batch */
    GQueue free_batches;
    uint64_t done_bytes;
};

/* a chunk read: its non-zero runs */
static void chunk_runs(struct rchunk *ch)
{
    uint32_t g = ch->rs->grain;

    ch->n_runs = 0;
    for (uint32_t off = 0; off < ch->len; off += g) {
        uint32_t n = VB_MIN(g, ch->len - off);
        if (vb_is_zero(ch->buf + off, n))
            continue;
        if (ch->n_runs && ch->runs[ch->n_runs - 1].off + ch->runs[ch->n_runs - 1].len == off)
            ch->runs[ch->n_runs - 1].len += n;
        else
            ch->runs[ch->n_runs++] = (struct run){ off, n };
    }
}

/* one chunk of a batch delivered (from a reading thread) */
static void batch_got(void *opaque, size_t i, const uint8_t *data, size_t len, int err,
                      const vb_error *e)
{
    struct rbatch *b = opaque;
    struct rchunk *ch = b->ch[i];

    ch->err = err;
    if (err) {
        ch->e = *e;
        vb_prefixerr(&ch->e, "chunk %llu", (unsigned long long)ch->index);
        return;
    }
    memcpy(ch->buf, data, len);      /* len == ch->len: checked by the door */
    chunk_runs(ch);
}

static void batch_read_work(struct vb_work *w, struct vb_codec *c)
{
    struct rbatch *b = (struct rbatch *)w;
    struct drs *rs = b->rs;
    const struct vb_idspace *sp = vb_sr_snap_space(rs->snap);

    (void)c;                 /* the door has its own */
    if (b->n == 1) {
        /* exactly the chunk's length, checked, straight into its buffer */
        struct rchunk *ch = b->ch[0];
        ch->err = vb_sr_read_chunk(rs->src, sp, vb_sr_disk_chunk(rs->snap, ch->index), ch->buf,
                                   ch->len, &ch->e);
        if (ch->err)
            vb_prefixerr(&ch->e, "chunk %llu", (unsigned long long)ch->index);
        else
            chunk_runs(ch);
        return;
    }
    for (unsigned i = 0; i < b->n; i++) {
        memcpy(b->ids + (size_t)i * VB_ID_LEN, vb_sr_disk_chunk(rs->snap, b->ch[i]->index),
               VB_ID_LEN);
        b->lens[i] = b->ch[i]->len;
        b->ch[i]->err = -EIO;        /* until delivered */
        vb_seterr(&b->ch[i]->e, -EIO, "chunk %llu: not delivered",
                  (unsigned long long)b->ch[i]->index);
    }
    {
        vb_error e = { 0 };  /* every chunk is delivered, with its own error */
        (void)vb_sr_read_chunks(rs->src, sp, b->ids, b->lens, b->n, batch_got, b, &e);
    }
}

static void write_done(struct vb_io *io, int res)
{
    struct rchunk *ch = io->opaque;
    struct drs *rs = ch->rs;

    if (res < 0 && !rs->err)
        rs->err = vb_seterr(&rs->e, res, "write at %#llx: %s", (unsigned long long)io->off,
                            strerror(-res));
    if (--ch->pending == 0) {
        free(ch->ios);
        ch->ios = NULL;
        rs->active--;
        rs->done_bytes += ch->len;
        g_queue_push_head(&rs->free_slots, ch);
    }
}

static void poll_done(struct vb_io *io, int res)
{
    struct drs *rs = io->opaque;

    vb_ring_queue(&rs->ring, &rs->poll_io);
}

static int zero_range(struct drs *rs, uint64_t off, uint64_t len)
{
    uint64_t range[2] = { off, len };

    if (!rs->zero_holes || !len)
        return 0;
    if (ioctl(rs->fd, BLKZEROOUT, range) == 0)
        return 0;
    if (fallocate(rs->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0)
        return 0;
    return vb_seterr(&rs->e, -errno, "zero %llu bytes at %#llx: %s", (unsigned long long)len,
                     (unsigned long long)off, strerror(errno));
}

/*
 * Aligned writes bypass the page cache: a restore of a large disk then
 * neither evicts what the host's VMs have cached nor pays for copying every
 * byte into it (the profile of a buffered restore was dominated by that
 * copy).  The rest (the end of a disk that is not a multiple of the
 * alignment, a short transfer's remainder) goes through the buffered fd.
 */
static struct vb_io write_io(struct drs *rs, struct rchunk *ch, uint64_t off, uint8_t *buf,
                             uint32_t len)
{
    uint32_t a = rs->dio_align;
    bool direct = rs->dfd >= 0 && off % a == 0 && len % a == 0 && (uintptr_t)buf % a == 0;

    return (struct vb_io){ .op = VB_IO_WRITE, .fd = direct ? rs->dfd : rs->fd,
                           .fd_fallback = rs->fd, .off = off, .buf = buf, .len = len,
                           .cb = write_done, .opaque = ch };
}

/* decoded chunk: queue its writes */
static int chunk_write(struct drs *rs, struct rchunk *ch, vb_error *e)
{
    uint64_t base = ch->index * rs->cs;
    unsigned n = 0;
    int ret;

    ch->ios = calloc(VB_MAX(ch->n_runs * (rs->cs / 65536 + 1), 1u), sizeof(*ch->ios));
    if (!ch->ios)
        return vb_seterr(e, -ENOMEM, "out of memory");
    /* holes between runs */
    if (rs->zero_holes) {
        uint32_t pos = 0;
        for (unsigned i = 0; i < ch->n_runs; i++) {
            ret = zero_range(rs, base + pos, ch->runs[i].off - pos);
            if (ret)
                return *e = rs->e, ret;
            pos = ch->runs[i].off + ch->runs[i].len;
        }
        ret = zero_range(rs, base + pos, ch->len - pos);
        if (ret)
            return *e = rs->e, ret;
    }
    for (unsigned i = 0; i < ch->n_runs; i++) {
        struct run *r = &ch->runs[i];
        if (!rs->q2w) {
            ch->ios[n++] = write_io(rs, ch, base + r->off, ch->buf + r->off, r->len);
            continue;
        }
        /* qcow2: one host cluster per guest cluster, allocated in order */
        for (uint32_t o = r->off; o < r->off + r->len; o += 65536) {
            uint64_t host;
            uint32_t len = VB_MIN(65536u, ch->len - o);
            ret = vb_q2w_alloc(rs->q2w, base + o, &host, e);
            if (ret)
                return ret;
            if (n && ch->ios[n - 1].off + ch->ios[n - 1].len == host &&
                ch->ios[n - 1].buf + ch->ios[n - 1].len == ch->buf + o)
                ch->ios[n - 1].len += len;
            else
                ch->ios[n++] = write_io(rs, ch, host, ch->buf + o, len);
        }
    }
    /* merged qcow2 runs may have grown past what O_DIRECT took: re-pick */
    for (unsigned i = 0; rs->q2w && i < n; i++)
        ch->ios[i] = write_io(rs, ch, ch->ios[i].off, ch->ios[i].buf, ch->ios[i].len);
    if (!n) {
        free(ch->ios);
        ch->ios = NULL;
        rs->active--;
        rs->done_bytes += ch->len;
        g_queue_push_head(&rs->free_slots, ch);
        return 0;
    }
    ch->pending = n;
    for (unsigned i = 0; i < n; i++)
        vb_ring_queue(&rs->ring, &ch->ios[i]);
    return 0;
}

/* A second descriptor with O_DIRECT where the file system or device has it
 * (tmpfs has not: then every write is buffered). */
static void open_direct(struct drs *rs, const char *path)
{
    struct statx stx;

    rs->dfd = open(path, O_WRONLY | O_DIRECT | O_CLOEXEC);
    rs->dio_align = 4096;
    if (rs->dfd >= 0 && statx(rs->dfd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
        (stx.stx_mask & STATX_DIOALIGN) && stx.stx_dio_offset_align) {
        rs->dio_align = VB_MAX(stx.stx_dio_offset_align, stx.stx_dio_mem_align);
        if (rs->dio_align > 4096 || (rs->dio_align & (rs->dio_align - 1))) {
            close(rs->dfd);         /* not what the chunk buffers are aligned to */
            rs->dfd = -1;
        }
    }
}

/* A file is restored as a new file beside the target, which replaces it only
 * once it is complete and durable: a failed or killed restore destroys
 * nothing and leaves nothing that looks like an image (an unnamed O_TMPFILE
 * where the file system has it, else a hidden ".NAME.restore-…" that is
 * removed on failure).  A block device is written in place. */
static int open_target(struct drs *rs, const struct vb_disk_restore_opts *o, bool qcow2,
                       vb_error *e)
{
    g_autofree char *dir = g_path_get_dirname(o->to), *base = g_path_get_basename(o->to);
    char fdpath[64];
    struct stat st;
    bool exists = false;

    if (stat(o->to, &st) == 0) {
        if (!o->force)
            return vb_seterr(e, -EEXIST, "%s exists; use --force to overwrite it", o->to);
        if (S_ISBLK(st.st_mode)) {
            uint64_t dev_size = 0;
            if (qcow2)
                return vb_seterr(e, -EINVAL, "%s: a qcow2 restore needs a file, not a block "
                                 "device", o->to);
            rs->fd = open(o->to, O_RDWR | O_CLOEXEC);
            if (rs->fd < 0)
                return vb_seterr(e, -errno, "open %s: %s", o->to, strerror(errno));
            if (ioctl(rs->fd, BLKGETSIZE64, &dev_size) < 0 || dev_size < rs->size)
                return vb_seterr(e, -ENOSPC, "%s: block device of %llu bytes is smaller than "
                                 "the disk (%llu bytes)", o->to, (unsigned long long)dev_size,
                                 (unsigned long long)rs->size);
            rs->zero_holes = true;
            open_direct(rs, o->to);
            return 0;
        }
        if (!S_ISREG(st.st_mode))
            return vb_seterr(e, -EINVAL, "%s is neither a file nor a block device", o->to);
        exists = true;
    } else if (errno != ENOENT) {
        return vb_seterr(e, -errno, "%s: %s", o->to, strerror(errno));
    }
    rs->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rs->dir_fd < 0)
        return vb_seterr(e, -errno, "open %s: %s", dir, strerror(errno));
    snprintf(rs->base, sizeof(rs->base), "%s", base);
    rs->fd = openat(rs->dir_fd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (rs->fd < 0) {
        /* no O_TMPFILE here (or not for this file system): a hidden name */
        snprintf(rs->tmp_name, sizeof(rs->tmp_name), ".%.200s.restore-%d-%lx", base,
                 (int)getpid(), (unsigned long)random());
        rs->fd = openat(rs->dir_fd, rs->tmp_name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (rs->fd < 0) {
            int err = errno;
            rs->tmp_name[0] = 0;
            return vb_seterr(e, -err, "create %s/%s: %s", dir, base, strerror(err));
        }
    }
    if (exists) {               /* the new file takes the old one's owner and mode */
        if (fchown(rs->fd, st.st_uid, st.st_gid) < 0) {
            /* not root: the restoring user owns it */
        }
        fchmod(rs->fd, st.st_mode & 07777);
    }
    rs->replace = exists;
    if (!qcow2 && ftruncate(rs->fd, (off_t)rs->size) < 0)
        return vb_seterr(e, -errno, "truncate %s: %s", o->to, strerror(errno));
    snprintf(fdpath, sizeof(fdpath), "/proc/self/fd/%d", rs->fd);
    open_direct(rs, fdpath);
    return 0;
}

/* The complete, durable file takes the target's name (a new name, or in
 * place of the old file, atomically), and the folder is synced. */
static int publish(struct drs *rs, const char *to, vb_error *e)
{
    char fdpath[64], tmp[300];
    int ret = 0;

    if (rs->dir_fd < 0)
        return 0;                       /* a block device, written in place */
    if (!rs->tmp_name[0]) {
        /* link the unnamed file: straight to its name when that is free */
        snprintf(fdpath, sizeof(fdpath), "/proc/self/fd/%d", rs->fd);
        if (rs->replace)
            snprintf(tmp, sizeof(tmp), ".%.200s.restore-%d-%lx", rs->base, (int)getpid(),
                     (unsigned long)random());
        else
            snprintf(tmp, sizeof(tmp), "%s", rs->base);
        if (linkat(AT_FDCWD, fdpath, rs->dir_fd, tmp, AT_SYMLINK_FOLLOW) < 0 &&
            linkat(rs->fd, "", rs->dir_fd, tmp, AT_EMPTY_PATH) < 0)
            return vb_seterr(e, -errno, "link the restored image as %s: %s", to,
                             errno == EEXIST ? "it exists now (created meanwhile?)"
                                             : strerror(errno));
        if (rs->replace)
            snprintf(rs->tmp_name, sizeof(rs->tmp_name), "%s", tmp);
    }
    if (rs->tmp_name[0]) {
        if (!rs->replace &&
            renameat2(rs->dir_fd, rs->tmp_name, rs->dir_fd, rs->base, RENAME_NOREPLACE) < 0)
            ret = vb_seterr(e, -errno, "rename the restored image to %s: %s", to,
                            errno == EEXIST ? "it exists now (created meanwhile?)"
                                            : strerror(errno));
        else if (rs->replace && renameat(rs->dir_fd, rs->tmp_name, rs->dir_fd, rs->base) < 0)
            ret = vb_seterr(e, -errno, "rename the restored image to %s: %s", to,
                            strerror(errno));
        if (ret)
            return ret;
        rs->tmp_name[0] = 0;
    }
    if (fsync(rs->dir_fd) < 0)
        return vb_seterr(e, -errno, "fsync the folder of %s: %s", to, strerror(errno));
    return 0;
}

int vb_disk_restore(struct vb_sr *src, const struct vb_disk_restore_opts *o,
                    struct vb_disk_stats *st, vb_error *e)
{
    struct drs rs;
    struct rchunk *slots = NULL;
    struct rbatch *batches = NULL, *fill = NULL;
    struct vb_progress prog;
    bool qcow2 = o->format && !strcmp(o->format, "qcow2");
    uint64_t next = 0;
    unsigned n_slots = 0, n_batches = 0;
    double t0 = vb_now();
    int ret;

    memset(&rs, 0, sizeof(rs));
    memset(st, 0, sizeof(*st));
    rs.fd = -1;
    rs.dfd = -1;
    rs.dir_fd = -1;
    rs.src = src;
    if (o->format && !qcow2 && strcmp(o->format, "raw"))
        return vb_seterr(e, -EINVAL, "unknown format '%s' (raw or qcow2)", o->format);
    ret = vb_sr_snap_open(src, o->snapshot, &rs.snap, e);
    if (ret)
        return ret;
    if (vb_sr_snap_info(rs.snap)->kind != VB_SR_DISK) {
        ret = vb_seterr(e, -EINVAL, "snapshot %s is a files snapshot, not a disk",
                        o->snapshot);
        goto out;
    }
    rs.cs = vb_sr_disk_chunk_size(rs.snap);
    rs.size = vb_sr_disk_size(rs.snap);
    rs.n_chunks = vb_sr_disk_chunks(rs.snap);
    if (rs.cs < 4096 || rs.cs > CHUNK_MAX || (rs.cs & (rs.cs - 1))) {
        ret = vb_seterr(e, -EBADMSG, "snapshot %s: unsupported chunk size %u", o->snapshot,
                        rs.cs);
        goto out;
    }
    if (qcow2 && rs.cs < 65536) {
        ret = vb_seterr(e, -EINVAL, "snapshot %s has chunks of %u bytes, smaller than a "
                        "qcow2 cluster: restore it to raw", o->snapshot, rs.cs);
        goto out;
    }
    st->size = rs.size;
    st->chunks = rs.n_chunks;
    ret = open_target(&rs, o, qcow2, e);
    if (ret)
        goto out;
    rs.grain = qcow2 ? 65536 : ZERO_GRAIN_RAW;
    if (qcow2) {
        ret = vb_q2w_create(rs.fd, o->to, rs.size, &rs.q2w, e);
        if (ret)
            goto out;
    }
    for (uint64_t i = 0; i < rs.n_chunks; i++)
        if (vb_sr_disk_chunk(rs.snap, i))
            st->allocated += VB_MIN((uint64_t)rs.cs, rs.size - i * rs.cs);

    ret = vb_ring_init(&rs.ring, 128);
    if (ret) {
        vb_seterr(e, ret, "io_uring_queue_init: %s", strerror(-ret));
        goto out;
    }
    /* version 2: each worker reads a batch, with the repository's read
     * threads; version 1: a chunk */
    rs.batch_chunks = o->batched && vb_sr_batches(src) ? VB_MAX(BATCH_BYTES / rs.cs, 1u) : 1;
    ret = vb_workers_start(&rs.wk, rs.batch_chunks > 1 ? (int)BATCHES : o->threads, 1);
    if (ret) {
        vb_seterr(e, ret, "start workers: %s", strerror(-ret));
        goto out;
    }
    n_batches = rs.batch_chunks > 1 ? BATCHES : (unsigned)rs.wk.n * 2 + 4;
    n_slots = n_batches * rs.batch_chunks;
    slots = calloc(n_slots, sizeof(*slots));
    batches = calloc(n_batches, sizeof(*batches));
    g_queue_init(&rs.free_slots);
    g_queue_init(&rs.free_batches);
    if (!slots || !batches) {
        ret = vb_seterr(e, -ENOMEM, "out of memory");
        goto out;
    }
    for (unsigned i = 0; i < n_batches; i++) {
        batches[i].work.fn = batch_read_work;
        batches[i].rs = &rs;
        batches[i].ch = calloc(rs.batch_chunks, sizeof(*batches[i].ch));
        batches[i].ids = calloc(rs.batch_chunks, VB_ID_LEN);
        batches[i].lens = calloc(rs.batch_chunks, sizeof(*batches[i].lens));
        if (!batches[i].ch || !batches[i].ids || !batches[i].lens) {
            ret = vb_seterr(e, -ENOMEM, "out of memory");
            goto out;
        }
        g_queue_push_tail(&rs.free_batches, &batches[i]);
    }
    for (unsigned i = 0; i < n_slots; i++) {
        slots[i].rs = &rs;
        slots[i].buf = aligned_alloc(4096, rs.cs);
        if (!slots[i].buf) {
            ret = vb_seterr(e, -ENOMEM, "out of memory");
            goto out;
        }
        g_queue_push_tail(&rs.free_slots, &slots[i]);
    }
    rs.poll_io = (struct vb_io){ .op = VB_IO_POLL, .fd = rs.wk.efd, .fd_fallback = -1,
                                 .poll_mask = POLLIN, .cb = poll_done, .opaque = &rs };
    vb_ring_queue(&rs.ring, &rs.poll_io);

    vb_progress_init(&prog, "restore", st->allocated, o->progress);
    while ((next < rs.n_chunks && !ret && !rs.err) || rs.active) {
        if (vb_interrupted && !ret)
            ret = vb_seterr(e, -EINTR, "interrupted");
        while (!ret && !rs.err && next < rs.n_chunks && !g_queue_is_empty(&rs.free_slots)) {
            uint64_t off = next * rs.cs;
            uint32_t len = (uint32_t)VB_MIN((uint64_t)rs.cs, rs.size - off);
            struct rchunk *ch;

            if (!fill && !(fill = g_queue_pop_head(&rs.free_batches)))
                break;               /* every batch is out: wait for one */
            if (vb_sr_disk_chunk(rs.snap, next) == NULL) {
                ret = zero_range(&rs, off, len);
                if (ret)
                    *e = rs.e;
                st->chunks_hole++;
                st->bytes_zero += len;
                next++;
                continue;
            }
            ch = g_queue_pop_head(&rs.free_slots);
            ch->index = next++;
            ch->len = len;
            ch->err = 0;
            rs.active++;
            fill->ch[fill->n++] = ch;
            if (fill->n == rs.batch_chunks) {
                vb_workers_push(&rs.wk, &fill->work);
                fill = NULL;
            }
        }
        /* a batch is sent when full (its slots come back as their writes
         * finish), or with the last chunks; one that cannot be finished
         * (an error) gives its slots back */
        if (fill && fill->n && !ret && !rs.err && next >= rs.n_chunks) {
            vb_workers_push(&rs.wk, &fill->work);
            fill = NULL;
        } else if (fill && (ret || rs.err)) {
            for (unsigned i = 0; i < fill->n; i++)
                g_queue_push_head(&rs.free_slots, fill->ch[i]);
            rs.active -= fill->n;
            fill->n = 0;
        }
        /* nothing in flight (interrupted before the first chunk, the rest all
         * zero): waiting would wait for the workers' poll, which no
         * completion will ever wake */
        if (!rs.active)
            break;
        int rr = vb_ring_run(&rs.ring, true);
        if (rr < 0) {
            if (!ret)
                ret = vb_seterr(e, rr, "io_uring: %s", strerror(-rr));
            break;
        }
        struct vb_work *wd;
        while ((wd = vb_workers_pop(&rs.wk))) {
            struct rbatch *b = (struct rbatch *)wd;
            for (unsigned i = 0; i < b->n; i++) {
                struct rchunk *ch = b->ch[i];
                int r2 = ch->err;
                if (r2) {
                    if (!ret) {
                        ret = r2;
                        *e = ch->e;
                    }
                } else if (!ret && !rs.err) {
                    st->chunks_new++;
                    r2 = chunk_write(&rs, ch, e);
                    if (r2 && !ret)
                        ret = r2;
                    if (!r2)
                        continue;
                }
                rs.active--;
                g_queue_push_head(&rs.free_slots, ch);
            }
            b->n = 0;
            g_queue_push_tail(&rs.free_batches, b);
        }
        vb_progress_update(&prog, rs.done_bytes);
    }
    vb_progress_end(&prog);
    if (!ret && rs.err) {
        ret = rs.err;
        *e = rs.e;
    }
    st->bytes_new = rs.ring.bytes_written;
    if (!ret && rs.q2w)
        ret = vb_q2w_finish(rs.q2w, e);
    if (!ret && !rs.q2w && fsync(rs.fd) < 0)
        ret = vb_seterr(e, -errno, "fsync %s: %s", o->to, strerror(errno));
    if (!ret)
        ret = publish(&rs, o->to, e);
out:
    vb_workers_stop(&rs.wk);
    vb_ring_exit(&rs.ring);
    for (unsigned i = 0; slots && i < n_slots; i++) {
        free(slots[i].ios);
        free(slots[i].buf);
    }
    free(slots);
    for (unsigned i = 0; batches && i < n_batches; i++) {
        free(batches[i].ch);
        free(batches[i].ids);
        free(batches[i].lens);
    }
    free(batches);
    g_queue_clear(&rs.free_slots);
    g_queue_clear(&rs.free_batches);
    vb_q2w_free(rs.q2w);
    if (rs.dfd >= 0)
        close(rs.dfd);
    if (rs.fd >= 0)
        close(rs.fd);
    /* never leave a half-restored file: an unnamed one vanishes with its fd */
    if (rs.tmp_name[0])
        unlinkat(rs.dir_fd, rs.tmp_name, 0);
    if (rs.dir_fd >= 0)
        close(rs.dir_fd);
    vb_sr_snap_close(rs.snap);
    st->seconds = vb_now() - t0;
    return ret;
}
