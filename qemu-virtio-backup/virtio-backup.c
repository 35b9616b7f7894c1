/*
 * virtio-backup: a thin virtio transport between a guest and vbackupd
 *
 * Copyright (c) 2025 The vbackup authors
 *
 * This work is licensed under the terms of the GNU GPL, version 2 or
 * (at your option) any later version.  See the COPYING file in the
 * top-level directory.
 *
 * The device does not parse instructions.  Each request on the single
 * virtqueue is one frame (include/vbackup/frame.h) in device-readable
 * buffers, followed by device-writable buffers for the reply.  The device
 * checks the frame header against the buffer sizes, gives the request a
 * device-unique tag, sets reply_max from the reply buffer, and writes the
 * frame to the chardev (a UNIX socket to vbackupd) without blocking the main
 * loop.  Replies are matched by tag, checked against reply_max, and copied
 * into the guest's reply buffer with the guest's own tag restored.
 *
 * While the chardev is not connected every request is answered at once with
 * VB_S_UNAVAILABLE; a disconnect fails every outstanding request the same
 * way.  Reconnecting is the chardev's business (reconnect=N).
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/iov.h"
#include "qemu/main-loop.h"
#include "qemu/module.h"
#include "qemu/bswap.h"
#include "qemu/host-utils.h"
#include "qemu/units.h"
#include "hw/virtio/virtio.h"
#include "hw/qdev-properties.h"
#include "hw/qdev-properties-system.h"
#include "hw/virtio/virtio-backup.h"
#include "migration/blocker.h"
#include "trace.h"

/* Offsets of the header fields on the wire (struct vb_hdr). */
#define VB_OFF_MAGIC     offsetof(struct vb_hdr, magic)
#define VB_OFF_VERSION   offsetof(struct vb_hdr, version)
#define VB_OFF_TYPE      offsetof(struct vb_hdr, type)
#define VB_OFF_TAG       offsetof(struct vb_hdr, tag)
#define VB_OFF_LEN       offsetof(struct vb_hdr, len)
#define VB_OFF_REPLY_MAX offsetof(struct vb_hdr, reply_max)
#define VB_OFF_STATUS    offsetof(struct vb_hdr, status)
#define VB_OFF_FLAGS     offsetof(struct vb_hdr, flags)

/* Largest chunk handed to one qemu_chr_fe_write() call, or taken per read. */
#define VB_IO_CHUNK      (64 * KiB)

static void virtio_backup_flush(VirtIOBackup *s);

/* ---- helpers ------------------------------------------------------------ */

/*
 * Write a reply made by the device itself (status != VB_S_OK, a short
 * message as payload) into the guest's reply buffer.  Returns the bytes
 * written: 0 if the buffer cannot even hold a header.
 */
static size_t virtio_backup_make_reply(VirtQueueElement *elem, size_t in_bytes,
                                       uint64_t guest_tag, uint16_t type,
                                       int32_t status, const char *msg)
{
    uint8_t hdr[VB_HDR_SIZE] = { 0 };
    size_t mlen = strlen(msg);

    if (in_bytes < VB_HDR_SIZE) {
        return 0;
    }
    mlen = MIN(mlen, MIN(in_bytes - VB_HDR_SIZE, VB_MAX_MESSAGE));

    stl_le_p(hdr + VB_OFF_MAGIC, VB_MAGIC);
    stw_le_p(hdr + VB_OFF_VERSION, VB_PROTO_VERSION);
    stw_le_p(hdr + VB_OFF_TYPE, type | VB_REPLY);
    stq_le_p(hdr + VB_OFF_TAG, guest_tag);
    stl_le_p(hdr + VB_OFF_LEN, mlen);
    stl_le_p(hdr + VB_OFF_REPLY_MAX, 0);
    stl_le_p(hdr + VB_OFF_STATUS, status);
    stl_le_p(hdr + VB_OFF_FLAGS, 0);

    iov_from_buf(elem->in_sg, elem->in_num, 0, hdr, VB_HDR_SIZE);
    iov_from_buf(elem->in_sg, elem->in_num, VB_HDR_SIZE, msg, mlen);
    return VB_HDR_SIZE + mlen;
}

/* Give a request back to the guest.  The caller notifies. */
static void virtio_backup_push(VirtIOBackup *s, VirtIOBackupReq *req,
                               size_t len)
{
    virtqueue_push(s->vq, &req->elem, len);
    g_free(req);
}

/* Answer an accepted request with a device-made status. */
static void virtio_backup_fail(VirtIOBackup *s, VirtIOBackupReq *req,
                               int32_t status, const char *msg)
{
    size_t in_bytes = iov_size(req->elem.in_sg, req->elem.in_num);
    size_t len;

    len = virtio_backup_make_reply(&req->elem, in_bytes, req->guest_tag,
                                   lduw_le_p(req->hdr + VB_OFF_TYPE),
                                   status, msg);
    trace_virtio_backup_fail(s, req->tag, status);
    virtio_backup_push(s, req, len);
}

/* Copy bytes [off, off + n) of a request's frame as sent to vbackupd. */
static void virtio_backup_copy_frame(VirtIOBackupReq *req, size_t off,
                                     uint8_t *dst, size_t n)
{
    if (off < VB_HDR_SIZE) {
        size_t h = MIN(n, VB_HDR_SIZE - off);

        memcpy(dst, req->hdr + off, h);
        dst += h;
        off += h;
        n -= h;
    }
    if (n) {
        /* The frame starts at offset 0 of the out buffers. */
        iov_to_buf(req->elem.out_sg, req->elem.out_num, off, dst, n);
    }
}

/* Find the contiguous piece of the frame that starts at off. */
static void virtio_backup_frame_piece(VirtIOBackupReq *req, size_t off,
                                      const uint8_t **p, size_t *n)
{
    const struct iovec *iov = req->elem.out_sg;
    unsigned int i;

    if (off < VB_HDR_SIZE) {
        *p = req->hdr + off;
        *n = VB_HDR_SIZE - off;
        return;
    }
    for (i = 0; i < req->elem.out_num; i++) {
        if (off < iov[i].iov_len) {
            *p = (const uint8_t *)iov[i].iov_base + off;
            *n = MIN(iov[i].iov_len - off, req->frame_len - off);
            return;
        }
        off -= iov[i].iov_len;
    }
    /* Unreachable: frame_len == iov_size(out_sg), checked on arrival. */
    g_assert_not_reached();
}

static void virtio_backup_rx_reset(VirtIOBackup *s)
{
    s->rx_hdr_got = 0;
    s->rx_in_payload = false;
    s->rx_req = NULL;
    s->rx_len = 0;
    s->rx_got = 0;
}

/*
 * The connection is gone (or unusable): answer every outstanding request
 * with VB_S_UNAVAILABLE and forget all stream state.
 */
static void virtio_backup_disconnected(VirtIOBackup *s, const char *msg)
{
    VirtIODevice *vdev = VIRTIO_DEVICE(s);
    VirtIOBackupReq *req;
    GHashTableIter iter;
    gpointer value;
    unsigned n = 0;

    s->conn_gen++;
    s->connected = false;
    s->broken = false;
    if (s->watch) {
        g_source_remove(s->watch);
        s->watch = 0;
    }
    g_free(s->orphan);
    s->orphan = NULL;
    s->orphan_len = s->orphan_off = 0;
    s->send_off = 0;
    virtio_backup_rx_reset(s);

    while ((req = QTAILQ_FIRST(&s->send_queue))) {
        QTAILQ_REMOVE(&s->send_queue, req, next);
        virtio_backup_fail(s, req, VB_S_UNAVAILABLE, msg);
        n++;
    }
    g_hash_table_iter_init(&iter, s->inflight);
    while (g_hash_table_iter_next(&iter, NULL, &value)) {
        g_hash_table_iter_remove(&iter);
        virtio_backup_fail(s, value, VB_S_UNAVAILABLE, msg);
        n++;
    }
    trace_virtio_backup_disconnected(s, n);
    if (n) {
        virtio_notify(vdev, s->vq);
    }
}

/*
 * The stream to vbackupd can no longer be trusted (a write failed, or the
 * daemon broke the framing).  Drop the connection from a bottom half, never
 * from inside a chardev callback; the chardev reconnects by itself.
 */
static void virtio_backup_break(VirtIOBackup *s, const char *why)
{
    trace_virtio_backup_protocol_error(s, why);
    if (!s->broken) {
        s->broken = true;
        qemu_bh_schedule(s->disconnect_bh);
    }
}

static void virtio_backup_disconnect_bh(void *opaque)
{
    VirtIOBackup *s = opaque;
    uint64_t gen = s->conn_gen;

    if (!s->broken) {
        return;
    }
    qemu_chr_fe_disconnect(&s->chr);
    if (gen == s->conn_gen) {
        /* Backends without a disconnect operation: fail the work here. */
        virtio_backup_disconnected(s, "vbackupd connection failed");
    }
}

/*
 * Detach every request (device reset or unrealize).  A frame already
 * partly written to the socket must still be completed to keep the stream
 * in sync: its rest is copied out of the guest's buffers first.
 */
static void virtio_backup_drop_all(VirtIOBackup *s)
{
    VirtIOBackupReq *req;
    GHashTableIter iter;
    gpointer value;
    unsigned n = 0;

    req = QTAILQ_FIRST(&s->send_queue);
    if (req && s->send_off > 0) {
        assert(!s->orphan);
        s->orphan_len = req->frame_len - s->send_off;
        s->orphan_off = 0;
        s->orphan = g_malloc(s->orphan_len);
        virtio_backup_copy_frame(req, s->send_off, s->orphan, s->orphan_len);
    }
    s->send_off = 0;

    while ((req = QTAILQ_FIRST(&s->send_queue))) {
        QTAILQ_REMOVE(&s->send_queue, req, next);
        virtqueue_detach_element(s->vq, &req->elem, 0);
        g_free(req);
        n++;
    }
    g_hash_table_iter_init(&iter, s->inflight);
    while (g_hash_table_iter_next(&iter, NULL, &value)) {
        req = value;
        g_hash_table_iter_remove(&iter);
        virtqueue_detach_element(s->vq, &req->elem, 0);
        g_free(req);
        n++;
    }
    /* A reply being received now has nowhere to go: discard its payload. */
    s->rx_req = NULL;
    trace_virtio_backup_drop_all(s, n);
}

/* ---- transmit ----------------------------------------------------------- */

static gboolean virtio_backup_chr_writable(void *do_not_use, GIOCondition cond,
                                           void *opaque)
{
    VirtIOBackup *s = opaque;

    s->watch = 0;
    virtio_backup_flush(s);
    return G_SOURCE_REMOVE;
}

/*
 * Write what the socket takes now.  Returns the bytes written, or 0 when
 * the caller must stop: the socket is full (a watch is armed), the
 * connection broke, or the callbacks run by the chardev failed every
 * request (conn_gen changed; nothing the caller holds is valid any more).
 */
static size_t virtio_backup_write(VirtIOBackup *s, const uint8_t *p, size_t n)
{
    uint64_t gen = s->conn_gen;
    int ret;

    ret = qemu_chr_fe_write(&s->chr, p, MIN(n, VB_IO_CHUNK));
    if (gen != s->conn_gen) {
        return 0;
    }
    if (ret > 0) {
        return ret;
    }
    if (ret < 0 && errno != EAGAIN) {
        virtio_backup_break(s, "write to vbackupd failed");
        return 0;
    }
    s->watch = qemu_chr_fe_add_watch(&s->chr, G_IO_OUT | G_IO_HUP,
                                     virtio_backup_chr_writable, s);
    if (!s->watch) {
        virtio_backup_break(s, "cannot wait for vbackupd");
        return 0;
    }
    trace_virtio_backup_write_blocked(s);
    return 0;
}

static void virtio_backup_flush(VirtIOBackup *s)
{
    VirtIOBackupReq *req;
    const uint8_t *p;
    size_t n;

    if (!s->connected || s->broken || s->watch) {
        return;
    }

    while (s->orphan) {
        n = virtio_backup_write(s, s->orphan + s->orphan_off,
                                s->orphan_len - s->orphan_off);
        if (!n) {
            return;
        }
        s->orphan_off += n;
        if (s->orphan_off == s->orphan_len) {
            g_free(s->orphan);
            s->orphan = NULL;
            s->orphan_len = s->orphan_off = 0;
        }
    }

    while ((req = QTAILQ_FIRST(&s->send_queue))) {
        while (s->send_off < req->frame_len) {
            virtio_backup_frame_piece(req, s->send_off, &p, &n);
            n = virtio_backup_write(s, p, n);
            if (!n) {
                return;     /* req may be gone: do not touch it */
            }
            s->send_off += n;
        }
        QTAILQ_REMOVE(&s->send_queue, req, next);
        s->send_off = 0;
        g_hash_table_insert(s->inflight, &req->tag, req);
        trace_virtio_backup_sent(s, req->tag);
    }
}

/* ---- receive ------------------------------------------------------------ */

static void virtio_backup_rx_done(VirtIOBackup *s, bool *notify)
{
    VirtIOBackupReq *req = s->rx_req;
    int32_t status = ldl_le_p(s->rx_hdr + VB_OFF_STATUS);

    if (req) {
        stq_le_p(s->rx_hdr + VB_OFF_TAG, req->guest_tag);
        iov_from_buf(req->elem.in_sg, req->elem.in_num, 0,
                     s->rx_hdr, VB_HDR_SIZE);
        g_hash_table_remove(s->inflight, &req->tag);
        trace_virtio_backup_reply(s, req->tag, s->rx_len, status);
        virtio_backup_push(s, req, VB_HDR_SIZE + s->rx_len);
        *notify = true;
    }
    virtio_backup_rx_reset(s);
}

static void virtio_backup_rx_header(VirtIOBackup *s, bool *notify)
{
    uint32_t magic = ldl_le_p(s->rx_hdr + VB_OFF_MAGIC);
    uint64_t tag = ldq_le_p(s->rx_hdr + VB_OFF_TAG);
    uint32_t len = ldl_le_p(s->rx_hdr + VB_OFF_LEN);
    VirtIOBackupReq *req;

    if (magic != VB_MAGIC) {
        virtio_backup_break(s, "bad magic in reply");
        return;
    }
    if (len > VB_MAX_PAYLOAD) {
        virtio_backup_break(s, "reply larger than VB_MAX_PAYLOAD");
        return;
    }

    s->rx_in_payload = true;
    s->rx_len = len;
    s->rx_got = 0;
    req = g_hash_table_lookup(s->inflight, &tag);
    if (!req) {
        /* Answer to a request failed or reset meanwhile: discard it. */
        trace_virtio_backup_reply_unknown(s, tag, len);
        s->rx_req = NULL;
    } else if (len > req->reply_max) {
        trace_virtio_backup_reply_too_large(s, tag, len, req->reply_max);
        g_hash_table_remove(s->inflight, &tag);
        virtio_backup_fail(s, req, VB_S_BAD_FRAME,
                           "reply from vbackupd larger than reply_max");
        *notify = true;
        s->rx_req = NULL;
    } else {
        s->rx_req = req;
    }

    if (len == 0) {
        virtio_backup_rx_done(s, notify);
    }
}

static int virtio_backup_chr_can_read(void *opaque)
{
    return VB_IO_CHUNK;
}

static void virtio_backup_chr_read(void *opaque, const uint8_t *buf, int size)
{
    VirtIOBackup *s = opaque;
    bool notify = false;
    size_t n;

    while (size > 0 && s->connected && !s->broken) {
        if (!s->rx_in_payload) {
            n = MIN((size_t)size, VB_HDR_SIZE - s->rx_hdr_got);
            memcpy(s->rx_hdr + s->rx_hdr_got, buf, n);
            s->rx_hdr_got += n;
            buf += n;
            size -= n;
            if (s->rx_hdr_got == VB_HDR_SIZE) {
                virtio_backup_rx_header(s, &notify);
            }
            continue;
        }
        n = MIN((size_t)size, s->rx_len - s->rx_got);
        if (s->rx_req) {
            iov_from_buf(s->rx_req->elem.in_sg, s->rx_req->elem.in_num,
                         VB_HDR_SIZE + s->rx_got, buf, n);
        }
        s->rx_got += n;
        buf += n;
        size -= n;
        if (s->rx_got == s->rx_len) {
            virtio_backup_rx_done(s, &notify);
        }
    }
    if (notify) {
        virtio_notify(VIRTIO_DEVICE(s), s->vq);
    }
}

static void virtio_backup_chr_event(void *opaque, QEMUChrEvent event)
{
    VirtIOBackup *s = opaque;

    trace_virtio_backup_chr_event(s, event);
    switch (event) {
    case CHR_EVENT_OPENED:
        if (s->connected) {
            /* A new connection without a close: the old stream is gone. */
            virtio_backup_disconnected(s, "vbackupd reconnected");
        }
        virtio_backup_rx_reset(s);
        s->connected = true;
        s->broken = false;
        virtio_backup_flush(s);
        break;
    case CHR_EVENT_CLOSED:
        virtio_backup_disconnected(s, "vbackupd disconnected");
        break;
    case CHR_EVENT_BREAK:
    case CHR_EVENT_MUX_IN:
    case CHR_EVENT_MUX_OUT:
        break;
    }
}

/* ---- queue handler ------------------------------------------------------ */

/*
 * Check a new request.  Returns false and fills *status / *why when the
 * request must be answered at once.  Nothing is allocated from guest data
 * before these checks.
 */
static bool virtio_backup_check(VirtIOBackup *s,
                                size_t out_bytes, size_t in_bytes,
                                const uint8_t *hdr, bool have_hdr,
                                int32_t *status, const char **why)
{
    *status = VB_S_BAD_FRAME;
    if (in_bytes < VB_HDR_SIZE) {
        *why = "reply buffer smaller than a header";
    } else if (!have_hdr) {
        *why = "request smaller than a header";
    } else if (out_bytes > s->max_request) {
        *why = "request larger than max-request";
    } else if (ldl_le_p(hdr + VB_OFF_MAGIC) != VB_MAGIC) {
        *why = "bad magic";
    } else if (lduw_le_p(hdr + VB_OFF_VERSION) != VB_PROTO_VERSION) {
        *status = VB_S_BAD_VERSION;
        *why = "unsupported protocol version";
    } else if ((uint64_t)ldl_le_p(hdr + VB_OFF_LEN) + VB_HDR_SIZE !=
               out_bytes) {
        *why = "header length does not match the request buffer";
    } else {
        return true;
    }
    return false;
}

static void virtio_backup_handle_request(VirtIODevice *vdev, VirtQueue *vq)
{
    VirtIOBackup *s = VIRTIO_BACKUP(vdev);
    VirtIOBackupReq *req;
    bool notify = false;

    while ((req = virtqueue_pop(vq, sizeof(VirtIOBackupReq)))) {
        size_t out_bytes = iov_size(req->elem.out_sg, req->elem.out_num);
        size_t in_bytes = iov_size(req->elem.in_sg, req->elem.in_num);
        uint8_t hdr[VB_HDR_SIZE] = { 0 };
        bool have_hdr = false;
        const char *why;
        int32_t status;
        size_t len;

        if (out_bytes >= VB_HDR_SIZE) {
            have_hdr = iov_to_buf(req->elem.out_sg, req->elem.out_num, 0,
                                  hdr, VB_HDR_SIZE) == VB_HDR_SIZE;
        }
        req->guest_tag = ldq_le_p(hdr + VB_OFF_TAG);

        if (!virtio_backup_check(s, out_bytes, in_bytes, hdr, have_hdr,
                                 &status, &why)) {
            trace_virtio_backup_bad_frame(s, out_bytes, in_bytes, why);
            len = virtio_backup_make_reply(&req->elem, in_bytes,
                                           req->guest_tag,
                                           lduw_le_p(hdr + VB_OFF_TYPE),
                                           status, why);
            virtio_backup_push(s, req, len);
            notify = true;
            continue;
        }

        if (!s->connected || s->broken) {
            trace_virtio_backup_unavailable(s, req->guest_tag);
            len = virtio_backup_make_reply(&req->elem, in_bytes,
                                           req->guest_tag,
                                           lduw_le_p(hdr + VB_OFF_TYPE),
                                           VB_S_UNAVAILABLE,
                                           "vbackupd is not connected");
            virtio_backup_push(s, req, len);
            notify = true;
            continue;
        }

        req->tag = s->next_tag++;
        req->frame_len = out_bytes;
        req->reply_max = MIN(in_bytes - VB_HDR_SIZE, VB_MAX_PAYLOAD);
        stq_le_p(hdr + VB_OFF_TAG, req->tag);
        stl_le_p(hdr + VB_OFF_REPLY_MAX, req->reply_max);
        memcpy(req->hdr, hdr, VB_HDR_SIZE);
        QTAILQ_INSERT_TAIL(&s->send_queue, req, next);
        trace_virtio_backup_request(s, req->tag, req->guest_tag,
                                    lduw_le_p(hdr + VB_OFF_TYPE),
                                    out_bytes - VB_HDR_SIZE, req->reply_max);
    }

    if (notify) {
        virtio_notify(vdev, vq);
    }
    virtio_backup_flush(s);
}

static uint64_t virtio_backup_get_features(VirtIODevice *vdev, uint64_t f,
                                           Error **errp)
{
    return f;
}

static void virtio_backup_reset(VirtIODevice *vdev)
{
    virtio_backup_drop_all(VIRTIO_BACKUP(vdev));
}

static void virtio_backup_queue_reset(VirtIODevice *vdev, uint32_t index)
{
    if (index == VB_VQ_REQUESTS) {
        virtio_backup_drop_all(VIRTIO_BACKUP(vdev));
    }
}

/* ---- realize / unrealize ------------------------------------------------ */

static void virtio_backup_device_realize(DeviceState *dev, Error **errp)
{
    VirtIODevice *vdev = VIRTIO_DEVICE(dev);
    VirtIOBackup *s = VIRTIO_BACKUP(dev);

    if (!qemu_chr_fe_backend_connected(&s->chr)) {
        error_setg(errp, "virtio-backup: 'chardev' property is required");
        return;
    }
    if (s->queue_size < 2 || s->queue_size > VIRTQUEUE_MAX_SIZE ||
        !is_power_of_2(s->queue_size)) {
        error_setg(errp, "virtio-backup: 'queue-size' must be a power of 2 "
                   "between 2 and %d", VIRTQUEUE_MAX_SIZE);
        return;
    }
    if (s->max_request < VB_HDR_SIZE || s->max_request > VB_MAX_FRAME) {
        error_setg(errp, "virtio-backup: 'max-request' must be between "
                   "%u and %u", VB_HDR_SIZE, VB_MAX_FRAME);
        return;
    }

    error_setg(&s->migration_blocker,
               "virtio-backup does not support migration: its requests are "
               "in flight to the host's vbackupd");
    if (migrate_add_blocker(s->migration_blocker, errp) < 0) {
        error_free(s->migration_blocker);
        s->migration_blocker = NULL;
        return;
    }

    virtio_init(vdev, VB_VIRTIO_ID, 0);
    s->vq = virtio_add_queue(vdev, s->queue_size,
                             virtio_backup_handle_request);

    QTAILQ_INIT(&s->send_queue);
    s->inflight = g_hash_table_new(g_int64_hash, g_int64_equal);
    s->next_tag = 1;
    s->disconnect_bh = qemu_bh_new_guarded(virtio_backup_disconnect_bh, s,
                                           &dev->mem_reentrancy_guard);

    qemu_chr_fe_set_handlers(&s->chr, virtio_backup_chr_can_read,
                             virtio_backup_chr_read, virtio_backup_chr_event,
                             NULL, s, NULL, true);
}

static void virtio_backup_device_unrealize(DeviceState *dev)
{
    VirtIODevice *vdev = VIRTIO_DEVICE(dev);
    VirtIOBackup *s = VIRTIO_BACKUP(dev);

    /*
     * The connection belongs to this device.  Close it, so that neither a
     * frame half written nor the replies to the requests dropped below can
     * reach a device plugged in later on the same chardev (whose tags start
     * again at 1), and vbackupd learns at once that this guest went away.
     * A chardev with reconnect=N connects again by itself.
     */
    qemu_chr_fe_set_handlers(&s->chr, NULL, NULL, NULL, NULL, NULL, NULL, true);
    qemu_chr_fe_disconnect(&s->chr);
    qemu_chr_fe_deinit(&s->chr, false);
    if (s->watch) {
        g_source_remove(s->watch);
        s->watch = 0;
    }
    qemu_bh_delete(s->disconnect_bh);
    virtio_backup_drop_all(s);
    g_free(s->orphan);
    s->orphan = NULL;
    g_hash_table_destroy(s->inflight);
    virtio_delete_queue(s->vq);
    virtio_cleanup(vdev);
    migrate_del_blocker(s->migration_blocker);
    error_free(s->migration_blocker);
    s->migration_blocker = NULL;
}

/* ---- vmstate, properties, types ----------------------------------------- */

/* Never used for migration (blocked in realize); kept for savevm tooling. */
static const VMStateDescription vmstate_virtio_backup = {
    .name = "virtio-backup",
    .minimum_version_id = 1,
    .version_id = 1,
    .fields = (VMStateField[]) {
        VMSTATE_VIRTIO_DEVICE,
        VMSTATE_END_OF_LIST()
    },
};

static Property virtio_backup_properties[] = {
    DEFINE_PROP_CHR("chardev", VirtIOBackup, chr),
    DEFINE_PROP_UINT32("queue-size", VirtIOBackup, queue_size,
                       VIRTIO_BACKUP_QUEUE_SIZE_DEFAULT),
    DEFINE_PROP_UINT32("max-request", VirtIOBackup, max_request,
                       VB_MAX_FRAME),
    DEFINE_PROP_END_OF_LIST(),
};

static void virtio_backup_class_init(ObjectClass *klass, void *data)
{
    DeviceClass *dc = DEVICE_CLASS(klass);
    VirtioDeviceClass *vdc = VIRTIO_DEVICE_CLASS(klass);

    device_class_set_props(dc, virtio_backup_properties);
    dc->vmsd = &vmstate_virtio_backup;
    set_bit(DEVICE_CATEGORY_MISC, dc->categories);
    vdc->realize = virtio_backup_device_realize;
    vdc->unrealize = virtio_backup_device_unrealize;
    vdc->get_features = virtio_backup_get_features;
    vdc->reset = virtio_backup_reset;
    vdc->queue_reset = virtio_backup_queue_reset;
}

static const TypeInfo virtio_backup_info = {
    .name = TYPE_VIRTIO_BACKUP,
    .parent = TYPE_VIRTIO_DEVICE,
    .instance_size = sizeof(VirtIOBackup),
    .class_init = virtio_backup_class_init,
};

static void virtio_backup_register_types(void)
{
    type_register_static(&virtio_backup_info);
}

type_init(virtio_backup_register_types)
