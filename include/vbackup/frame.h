/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vbackup framing: what the transport needs of the protocol.
 *
 * The QEMU device and the guest's kernel module move frames without reading
 * their payloads; they need only the device's identity, the frame header,
 * the status codes they answer with themselves and the ioctl of
 * /dev/vbackup.  Those live here, so that a change to the payloads
 * (include/vbackup/proto.h, which includes this file) rebuilds neither QEMU
 * nor the module.  docs/protocol.md and docs/transport.md explain them.
 */
#ifndef VBACKUP_FRAME_H
#define VBACKUP_FRAME_H

#ifdef __KERNEL__
#include <linux/types.h>
#include <linux/ioctl.h>
#else
#include <stdint.h>
#include <sys/ioctl.h>
#endif

/* ---- the virtio device ------------------------------------------------ */

/*
 * Virtio device ID.  The virtio specification has no experimental range;
 * IDs up to 45 are taken or reserved as of Linux 6.x.  63 is the highest ID
 * Linux's modern PCI transport accepts (PCI device 0x1040 + 63 = 0x107f), and
 * the least likely to be allocated soon.
 */
#define VB_VIRTIO_ID            63
#define VB_PCI_VENDOR_ID        0x1af4
#define VB_PCI_DEVICE_ID        (0x1040 + VB_VIRTIO_ID)

/* One virtqueue, "requests": each request is a device-readable buffer
 * holding one frame, followed by a device-writable buffer for the reply. */
#define VB_VQ_REQUESTS          0

/* ---- framing ------------------------------------------------------------ */

#define VB_MAGIC                0x314b4256u  /* "VBK1" */
/*
 * Version 2: file records carry names and link targets as bytes, times as
 * seconds and nanoseconds, extended attributes, inode flags and the project
 * id; BACKUP_PROBLEMS; RESTORE_READ tells written zeros and preallocated
 * ranges from holes (docs/protocol.md).  A peer that speaks another version
 * gets VB_S_BAD_VERSION: the guest tool and vbackupd ship together.
 */
#define VB_PROTO_VERSION        2

/* Largest payload of any frame, request or reply. */
#define VB_MAX_PAYLOAD          (1u << 20)
#define VB_HDR_SIZE             32u
#define VB_MAX_FRAME            (VB_HDR_SIZE + VB_MAX_PAYLOAD)

struct vb_hdr {
    uint32_t magic;       /* VB_MAGIC */
    uint16_t version;     /* VB_PROTO_VERSION */
    uint16_t type;        /* VB_OP_*, with VB_REPLY set on replies */
    uint64_t tag;         /* echoed in the reply; the device substitutes its own */
    uint32_t len;         /* payload bytes after the header */
    uint32_t reply_max;   /* requests: largest reply payload accepted (the device
                             sets it from the guest's reply buffer) */
    int32_t  status;      /* replies: VB_S_*; requests: 0 */
    uint32_t flags;       /* 0; reserved */
};

#define VB_REPLY                0x8000u

/* Reply status.  A reply with status != VB_S_OK carries a UTF-8 message
 * (not NUL-terminated, at most VB_MAX_MESSAGE bytes) as its payload. */
enum vb_status {
    VB_S_OK               = 0,
    VB_S_UNAVAILABLE      = 1,   /* device: vbackupd not connected */
    VB_S_BAD_FRAME        = 2,   /* header wrong: magic, length, sizes */
    VB_S_BAD_VERSION      = 3,
    VB_S_BAD_REQUEST      = 4,   /* payload malformed */
    VB_S_UNKNOWN_TARGET   = 5,
    VB_S_NOT_FOUND        = 6,   /* snapshot or path not found */
    VB_S_NOT_OWNED        = 7,   /* disk serial not attached to this VM */
    VB_S_OUT_OF_RANGE     = 8,   /* extent outside the disk */
    VB_S_BAD_PATH         = 9,
    VB_S_TOO_LARGE        = 10,
    VB_S_BUSY             = 11,  /* too many jobs or requests; retry later */
    VB_S_SHUTTING_DOWN    = 12,
    VB_S_NO_JOB           = 13,
    VB_S_JOB_FAILED       = 14,
    VB_S_IO               = 15,
    VB_S_NO_SPACE         = 16,
    VB_S_CANCELLED        = 17,
    VB_S_INTERNAL         = 18,
    VB_S_REPLY_TOO_SMALL  = 19,  /* reply_max smaller than the reply needs */
    VB_S_BAD_STATE        = 20,  /* request not valid in the job's state */
    VB_S_QUOTA            = 21,  /* over a quota the host set for this VM */
    VB_S_STATUS_MAX_      = 22,
};

#define VB_MAX_MESSAGE          512u

/* ---- guest kernel interface (/dev/vbackup) ------------------------------ */

/*
 * One call: the module copies req_len bytes (a whole frame) from req, hands
 * them to the device with a reply buffer of reply_cap bytes, sleeps
 * interruptibly until the device answers, and copies the reply frame to
 * reply.  Returns 0 and sets reply_len, or -1 with errno: EINVAL (lengths),
 * EFAULT, EINTR (the request stays in flight; its answer is discarded),
 * ENODEV (device removed), ENOMEM.
 */
struct vbackup_call {
    uint64_t req;
    uint64_t reply;
    uint32_t req_len;            /* VB_HDR_SIZE .. VB_MAX_FRAME */
    uint32_t reply_cap;          /* VB_HDR_SIZE .. VB_MAX_FRAME */
    uint32_t reply_len;          /* out */
    uint32_t flags;              /* 0 */
};

#define VBACKUP_IOC_MAGIC       'V'
#define VBACKUP_IOC_CALL        _IOWR(VBACKUP_IOC_MAGIC, 1, struct vbackup_call)

/* ---- size checks ---------------------------------------------------------- */

#ifndef __cplusplus
_Static_assert(sizeof(struct vb_hdr) == VB_HDR_SIZE, "vb_hdr");
_Static_assert(sizeof(struct vbackup_call) == 32, "vbackup_call");
#endif

#endif /* VBACKUP_FRAME_H */
