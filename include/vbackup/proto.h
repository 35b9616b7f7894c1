/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vbackup wire protocol, version 1.
 *
 * One definition for every part: the guest tool builds frames, the kernel
 * module moves them through the virtqueue, the QEMU device forwards them
 * unchanged (except the tag and reply_max fields of the header) to the VM's
 * vbackupd socket, and vbackupd parses them.  docs/protocol.md explains it.
 *
 * Everything is little-endian.  Structures are naturally aligned and have no
 * implicit padding; the static assertions at the end check the sizes.  A
 * parser must never cast a received buffer to these structures without first
 * checking the length; vbackupd's hostd/vbackupd/wire.c does that once.
 */
#ifndef VBACKUP_PROTO_H
#define VBACKUP_PROTO_H

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
#define VB_PROTO_VERSION        1

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

enum vb_op {
    VB_OP_HELLO           = 1,
    VB_OP_BACKUP_BEGIN    = 2,
    VB_OP_BACKUP_FILES    = 3,
    VB_OP_BACKUP_DATA     = 4,   /* fallback stream: file contents from the guest */
    VB_OP_BACKUP_SEAL     = 5,   /* all files named: take the point-in-time view */
    VB_OP_STATUS          = 6,
    VB_OP_CANCEL          = 7,
    VB_OP_LIST            = 8,
    VB_OP_RESTORE_BEGIN   = 9,
    VB_OP_RESTORE_LIST    = 10,
    VB_OP_RESTORE_READ    = 11,
    VB_OP_RESTORE_END     = 12,
    VB_OP_MAX_            = 13,
};

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

/* ---- limits ------------------------------------------------------------- */

#define VB_MAX_NAME             255u   /* one path component */
#define VB_MAX_PATH             4096u  /* a whole relative path */
#define VB_MAX_SERIAL           20u    /* virtio-blk serial length */
#define VB_MAX_TARGET           64u
#define VB_MAX_SNAPSHOT_ID      128u
#define VB_MAX_DISKS            16u    /* disks in one backup */
#define VB_MAX_ROOTS            64u    /* paths named by the user in one backup */
#define VB_MAX_FILES_PER_MSG    4096u
#define VB_MAX_EXTENTS_PER_REC  8192u

/* ---- payloads ----------------------------------------------------------- */

/*
 * Strings inside payloads are counted (uint16_t length, then bytes, no NUL)
 * and packed; the structures below give only the fixed parts.  Paths are
 * relative to the root of the guest's filesystem namespace: no leading '/',
 * no empty, "." or ".." components, no NUL, valid UTF-8.
 */

/* VB_OP_HELLO request */
struct vb_hello {
    uint32_t version_min;
    uint32_t version_max;
    char     tool[32];           /* NUL-padded, informational */
};

/* VB_OP_HELLO reply */
struct vb_hello_reply {
    uint32_t version;
    uint32_t max_payload;
    uint32_t max_files_per_msg;
    uint32_t features;           /* VB_FEAT_* */
    char     vm[64];             /* NUL-padded name of the VM as the host knows it */
    char     daemon[32];         /* NUL-padded daemon version */
};

#define VB_FEAT_SNAPSHOT_VIEW   1u  /* the host takes a snapshot: thaw after SEAL */

enum vb_kind { VB_KIND_FILES = 1, VB_KIND_DISK = 2 };
enum vb_mode { VB_MODE_FULL = 1, VB_MODE_INCREMENTAL = 2, VB_MODE_DIFFERENTIAL = 3 };

/*
 * VB_OP_BACKUP_BEGIN request: this structure, then the target name
 * (target_len bytes), then n_disks serials (each: uint16_t len + bytes),
 * then n_roots root paths (each: uint16_t len + bytes; "" is the root).
 * For VB_KIND_DISK n_disks is 1 and n_roots 0.
 */
struct vb_backup_begin {
    uint8_t  kind;               /* vb_kind */
    uint8_t  mode;               /* vb_mode */
    uint16_t target_len;
    uint16_t n_disks;
    uint16_t n_roots;
    uint32_t flags;              /* VB_BEGIN_* */
    uint32_t reserved;
    uint64_t n_files_hint;       /* files the guest expects to send; 0 unknown */
    uint64_t bytes_hint;         /* logical bytes; 0 unknown */
};

/* The client holds no freeze (it cannot, or was told not to): without a
 * snapshot view the job may still wait for a quiet host. */
#define VB_BEGIN_UNFROZEN       1u

/* VB_OP_BACKUP_BEGIN reply */
struct vb_backup_begin_reply {
    uint64_t job;
    uint32_t features;           /* VB_FEAT_* in force for this job */
    uint32_t reserved;
};

enum vb_ftype {
    VB_FT_REG     = 1,
    VB_FT_DIR     = 2,
    VB_FT_SYMLINK = 3,
    VB_FT_FIFO    = 4,
    VB_FT_CHR     = 5,
    VB_FT_BLK     = 6,
    VB_FT_SOCK    = 7,
};

/* How the data of a regular file reaches the host. */
enum vb_fdata {
    VB_FD_NONE     = 0,          /* not a regular file, or empty */
    VB_FD_EXTENTS  = 1,          /* read from the disk image at the extents */
    VB_FD_FALLBACK = 2,          /* sent through VB_OP_BACKUP_DATA */
    VB_FD_MORE     = 3,          /* more extents of the previous record's file
                                    (same path; only n_extents and extents count) */
};

/*
 * VB_OP_BACKUP_FILES request: struct vb_files, then n_files records.
 * A record: struct vb_file_rec, then the path (path_len bytes), then the
 * symlink target (link_len bytes), then n_extents struct vb_extent.
 * Records follow one another with no padding; consumers copy them out.
 * File indices count the records of a job from 0 in the order sent.
 */
struct vb_files {
    uint64_t job;
    uint32_t n_files;
    uint32_t reserved;
};

struct vb_file_rec {
    uint8_t  type;               /* vb_ftype */
    uint8_t  data;               /* vb_fdata */
    uint16_t disk;               /* index into the serials of BACKUP_BEGIN */
    uint32_t mode;               /* st_mode & 07777 */
    uint32_t uid;
    uint32_t gid;
    uint32_t nlink;
    uint32_t n_extents;
    uint16_t path_len;
    uint16_t link_len;
    uint32_t rdev;               /* Linux encoded dev_t (major << 8 | minor, new_encode_dev) */
    uint64_t size;
    uint64_t ino;
    int64_t  mtime_ns;
    int64_t  ctime_ns;
    int64_t  atime_ns;
};

#define VB_EXT_UNWRITTEN        1u   /* reads as zeros */

struct vb_extent {
    uint64_t logical;            /* offset in the file */
    uint64_t physical;           /* byte offset on the whole disk (partition start added) */
    uint64_t length;
    uint32_t flags;              /* VB_EXT_* */
    uint32_t reserved;
};

/* VB_OP_BACKUP_DATA request: this, then len bytes of the file at offset. */
struct vb_data {
    uint64_t job;
    uint64_t file;               /* file index in the job */
    uint64_t offset;
    uint32_t len;
    uint32_t flags;              /* VB_DATA_LAST on the final piece of a file */
};
#define VB_DATA_LAST            1u

/* VB_OP_BACKUP_SEAL, VB_OP_CANCEL, VB_OP_RESTORE_END, VB_OP_STATUS request */
struct vb_job_ref {
    uint64_t job;                /* VB_OP_STATUS: 0 = every job of this VM */
};

/* VB_OP_BACKUP_SEAL reply */
struct vb_seal_reply {
    uint32_t view;               /* VB_VIEW_* */
    uint32_t reserved;
};
#define VB_VIEW_FROZEN          1u   /* host reads the live image: stay frozen until
                                        status says VB_JOB_FLAG_READ_DONE */
#define VB_VIEW_SNAPSHOT        2u   /* host holds a snapshot: thaw now */

enum vb_job_state {
    VB_JOB_COLLECTING = 1,       /* guest still sending files */
    VB_JOB_QUEUED     = 2,       /* sealed, waiting for the next batch */
    VB_JOB_DEFERRED   = 3,       /* a policy deferred it; reason says why */
    VB_JOB_RUNNING    = 4,
    VB_JOB_DONE       = 5,
    VB_JOB_FAILED     = 6,
    VB_JOB_CANCELLED  = 7,
    VB_JOB_RESTORING  = 8,       /* restore job open */
};

#define VB_JOB_FLAG_READ_DONE   1u   /* every byte from the guest's disks has been read */

/* VB_OP_STATUS reply: uint32_t count, uint32_t reserved, then count records:
 * struct vb_job_status then reason (reason_len) then snapshot id (snap_len). */
struct vb_job_status {
    uint64_t job;
    uint32_t state;              /* vb_job_state */
    uint32_t flags;              /* VB_JOB_FLAG_* */
    uint8_t  kind;
    uint8_t  mode;
    uint16_t reason_len;
    uint16_t snap_len;
    uint16_t reserved;
    uint64_t bytes_done;
    uint64_t bytes_total;
    uint64_t files_done;
    uint64_t files_total;
    uint64_t bytes_new;          /* stored as new chunks */
    uint64_t bytes_reused;       /* unchanged files and deduplicated chunks */
    int64_t  started_ns;         /* CLOCK_REALTIME */
    int64_t  finished_ns;
};

/*
 * VB_OP_LIST request: struct vb_list, then the target name.
 * Reply: uint32_t total, uint32_t count, then count records:
 * struct vb_snap_info, then id (id_len), then roots joined by '\n' (roots_len).
 */
struct vb_list {
    uint32_t start;              /* index of the first snapshot wanted */
    uint16_t target_len;
    uint16_t reserved;
};

struct vb_snap_info {
    int64_t  created_ns;
    uint64_t files;
    uint64_t bytes;
    uint8_t  kind;
    uint8_t  mode;
    uint16_t id_len;
    uint16_t roots_len;
    uint16_t reserved;
};

/*
 * VB_OP_RESTORE_BEGIN request: struct vb_restore_begin, then target name,
 * then snapshot id ("latest" = newest snapshot of this VM that covers the
 * paths), then n_paths paths (uint16_t len + bytes; none = everything).
 */
struct vb_restore_begin {
    uint16_t target_len;
    uint16_t snap_len;
    uint16_t n_paths;
    uint16_t reserved;
};

/* VB_OP_RESTORE_BEGIN reply, then the resolved snapshot id (snap_len). */
struct vb_restore_begin_reply {
    uint64_t job;
    uint64_t n_entries;
    uint64_t bytes_total;
    uint16_t snap_len;
    uint16_t reserved[3];
};

/* VB_OP_RESTORE_LIST request */
struct vb_restore_list {
    uint64_t job;
    uint64_t start;              /* first entry wanted */
};

/*
 * VB_OP_RESTORE_LIST reply: uint32_t count, uint32_t reserved, then count
 * records: struct vb_file_rec (n_extents = 0; ino carries the entry index of
 * the first link of a hard-link group, or UINT64_MAX), path, link target.
 * Entries come parents first.
 */
#define VB_NO_LINK              UINT64_MAX

/* VB_OP_RESTORE_READ request */
struct vb_restore_read {
    uint64_t job;
    uint64_t entry;
    uint64_t offset;
    uint32_t len;                /* at most reply_max - sizeof(vb_restore_data) */
    uint32_t reserved;
};

/* VB_OP_RESTORE_READ reply, followed by len bytes unless VB_RD_HOLE. */
struct vb_restore_data {
    uint64_t offset;
    uint32_t len;                /* bytes of data, or of hole */
    uint32_t flags;              /* VB_RD_* */
};
#define VB_RD_HOLE              1u   /* [offset, offset+len) is a hole: seek over it */
#define VB_RD_EOF               2u

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
_Static_assert(sizeof(struct vb_hello) == 40, "vb_hello");
_Static_assert(sizeof(struct vb_hello_reply) == 112, "vb_hello_reply");
_Static_assert(sizeof(struct vb_backup_begin) == 32, "vb_backup_begin");
_Static_assert(sizeof(struct vb_backup_begin_reply) == 16, "vb_backup_begin_reply");
_Static_assert(sizeof(struct vb_files) == 16, "vb_files");
_Static_assert(sizeof(struct vb_file_rec) == 72, "vb_file_rec");
_Static_assert(sizeof(struct vb_extent) == 32, "vb_extent");
_Static_assert(sizeof(struct vb_data) == 32, "vb_data");
_Static_assert(sizeof(struct vb_job_status) == 88, "vb_job_status");
_Static_assert(sizeof(struct vb_snap_info) == 32, "vb_snap_info");
_Static_assert(sizeof(struct vb_restore_begin) == 8, "vb_restore_begin");
_Static_assert(sizeof(struct vb_restore_begin_reply) == 32, "vb_restore_begin_reply");
_Static_assert(sizeof(struct vb_restore_read) == 32, "vb_restore_read");
_Static_assert(sizeof(struct vb_restore_data) == 16, "vb_restore_data");
_Static_assert(sizeof(struct vbackup_call) == 32, "vbackup_call");
#endif

#endif /* VBACKUP_PROTO_H */
