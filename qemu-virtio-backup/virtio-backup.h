/*
 * virtio-backup: a thin virtio transport between a guest and vbackupd
 *
 * Copyright (c) 2025 The vbackup authors
 *
 * This work is licensed under the terms of the GNU GPL, version 2 or
 * (at your option) any later version.  See the COPYING file in the
 * top-level directory.
 */

#ifndef QEMU_VIRTIO_BACKUP_H
#define QEMU_VIRTIO_BACKUP_H

#include "hw/virtio/virtio.h"
#include "chardev/char-fe.h"
#include "qom/object.h"
#include "qemu/queue.h"
#include "vbackup/frame.h"

#define TYPE_VIRTIO_BACKUP "virtio-backup-device"
OBJECT_DECLARE_SIMPLE_TYPE(VirtIOBackup, VIRTIO_BACKUP)

#define VIRTIO_BACKUP_QUEUE_SIZE_DEFAULT 128

/*
 * One guest request, from the moment it is popped from the virtqueue until
 * it is pushed back (answered) or detached (reset).  The element must stay
 * the first member: virtqueue_pop() allocates the whole structure.
 *
 * The payload is not copied: it is written to the chardev straight from the
 * guest's mapped out buffers.  Only the header, validated and rewritten,
 * lives here.
 */
typedef struct VirtIOBackupReq {
    VirtQueueElement elem;
    uint8_t hdr[VB_HDR_SIZE];   /* header sent to vbackupd, wire order */
    uint64_t guest_tag;         /* tag chosen by the guest, restored in the reply */
    uint64_t tag;               /* device-unique tag; key in VirtIOBackup.inflight */
    size_t frame_len;           /* VB_HDR_SIZE + payload bytes */
    uint32_t reply_max;         /* largest reply payload the guest accepts */
    QTAILQ_ENTRY(VirtIOBackupReq) next;  /* on send_queue until fully written */
} VirtIOBackupReq;

struct VirtIOBackup {
    VirtIODevice parent_obj;

    VirtQueue *vq;

    /* properties */
    CharBackend chr;
    uint32_t queue_size;
    uint32_t max_request;

    /* connection state, from CHR_EVENT_OPENED / CHR_EVENT_CLOSED */
    bool connected;
    uint64_t conn_gen;          /* bumped whenever outstanding work is failed */
    uint64_t next_tag;
    bool broken;                /* stream unusable: a disconnect is scheduled */
    QEMUBH *disconnect_bh;

    /* transmit: requests waiting to be written, the head possibly in part */
    QTAILQ_HEAD(, VirtIOBackupReq) send_queue;
    size_t send_off;            /* bytes of the head request already written */
    uint8_t *orphan;            /* rest of a frame whose request was reset */
    size_t orphan_len;
    size_t orphan_off;
    guint watch;                /* G_IO_OUT watch while the socket is full */

    /* requests fully written, waiting for their reply, by device tag */
    GHashTable *inflight;

    /* receive: one reply frame at a time */
    uint8_t rx_hdr[VB_HDR_SIZE];
    size_t rx_hdr_got;
    bool rx_in_payload;
    VirtIOBackupReq *rx_req;    /* request being answered, or NULL: discard */
    uint32_t rx_len;            /* payload bytes of the current reply */
    uint32_t rx_got;            /* payload bytes received so far */

    Error *migration_blocker;
};

#endif
