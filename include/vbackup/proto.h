/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vbackup wire protocol, version 2 (VB_PROTO_VERSION, include/vbackup/frame.h).
 *
 * One definition for every part: the guest tool builds frames, the kernel
 * module moves them through the virtqueue, the QEMU device forwards them
 * unchanged (except the tag and reply_max fields of the header) to the VM's
 * vbackupd socket, and vbackupd parses them.  docs/protocol.md explains it.
 *
 * Everything is little-endian.  Structures are naturally aligned and have no
 * implicit padding; the static assertions at the end check the sizes.  A
 * parser must never cast a received buffer to these structures without first
 * checking the length.  The rules for names, lengths and the layout of file
 * records are code in one place, include/vbackup/protolib.h (libc only):
 * the guest tool, vbackupd and the tests' clients encode and check records
 * with it; vbackupd's hostd/vbackupd/wire.c adds what depends on the job.
 */
#ifndef VBACKUP_PROTO_H
#define VBACKUP_PROTO_H

#include "vbackup/frame.h"

/* ---- operations --------------------------------------------------------- */

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
    VB_OP_BACKUP_PROBLEMS = 13,  /* what the guest could not back up (version 2) */
    VB_OP_MAX_            = 14,
};

/* ---- limits ------------------------------------------------------------- */

#define VB_MAX_NAME             255u   /* one path component (NAME_MAX) */
/* A whole relative path: its uint16_t length bounds it, not PATH_MAX (a
 * tree may be deeper than the kernel takes in one path; the clients walk and
 * restore relative to each parent).  A deeper entry cannot be named: the
 * guest reports it as a problem. */
#define VB_MAX_PATH             65535u
#define VB_MAX_LINK             4096u  /* a symlink target (the kernel's PATH_MAX) */
#define VB_MAX_XATTR_NAME       255u   /* XATTR_NAME_MAX, with the namespace prefix */
#define VB_MAX_XATTR_VALUE      65536u /* XATTR_SIZE_MAX */
/* The extended attributes of one file on the wire (8 bytes each, names,
 * values): any set the kernel lets one list (64 KiB of names) with values of
 * up to 64 KiB each up to this total, so that a file's record always fits a
 * RESTORE_LIST reply of VB_MAX_PAYLOAD with the longest path and target. */
#define VB_MAX_XATTR_BYTES      (768u << 10)
#define VB_MAX_PROBLEMS_PER_MSG 4096u
#define VB_MAX_SERIAL           20u    /* virtio-blk serial length */
#define VB_MAX_TARGET           64u
#define VB_MAX_SNAPSHOT_ID      128u
#define VB_MAX_DISKS            16u    /* disks in one backup */
#define VB_MAX_ROOTS            64u    /* paths named by the user in one backup */
#define VB_MAX_FILES_PER_MSG    4096u
#define VB_MAX_EXTENTS_PER_REC  8192u
#define VB_MAX_PRUNE            1024u  /* host maps: mount points under the roots */
#define VB_MAX_EXCLUDE          256u   /* host maps: --exclude patterns */
#define VB_MAX_PATTERN          4096u  /* one pattern, bytes */

/* ---- payloads ----------------------------------------------------------- */

/*
 * Strings inside payloads are counted (uint16_t length, then bytes, no NUL)
 * and packed; the structures below give only the fixed parts.  Paths are
 * bytes, relative to the root of the guest's filesystem namespace: no
 * leading '/', no empty, "." or ".." components, no NUL byte, at most
 * VB_MAX_PATH bytes, components at most VB_MAX_NAME; any other byte is
 * allowed (a name need not be UTF-8).  vb_path_check() is the rule.
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
/* The host maps the files of ext2/3/4 file systems in its view itself
 * (docs/freeze.md): HELLO says it can, BEGIN's reply that it will. */
#define VB_FEAT_HOST_MAPS       2u

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
/* The client asks the host to map the files (VB_FEAT_HOST_MAPS): after the
 * roots comes the map section below.  If the reply's features have
 * VB_FEAT_HOST_MAPS the client sends no FILES or DATA, freezes only until
 * SEAL is answered, and the host maps the files in its view (job state
 * MAPPING); otherwise the client walks as always. */
#define VB_BEGIN_HOST_MAP       2u

/*
 * The map section: struct vb_map_head, n_fs struct vb_map_fs, then for
 * each root (in BEGIN's order) uint16_t fs (index into the file systems) and
 * the root's path inside its file system (uint16_t len + bytes, a protocol
 * path, "" its root), then n_prune folders not to walk into (protocol
 * paths under the roots: mount points of other file systems), then
 * n_exclude patterns (uint16_t len + 1..VB_MAX_PATTERN bytes without NUL,
 * fnmatch patterns as --exclude: matched against "/path" and the name).
 */
struct vb_map_head {
    uint16_t n_fs;               /* 1..VB_MAX_ROOTS */
    uint16_t n_prune;            /* 0..VB_MAX_PRUNE */
    uint16_t n_exclude;          /* 0..VB_MAX_EXCLUDE */
    uint16_t reserved;
};

#define VB_FS_EXT               1u   /* ext2, ext3 or ext4 */

struct vb_map_fs {
    uint16_t disk;               /* index into BEGIN's serials */
    uint8_t  type;               /* VB_FS_* */
    uint8_t  reserved;
    uint32_t reserved2;
    uint64_t start;              /* where the file system starts on the disk, bytes */
};

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
 * symlink target (link_len bytes), then the extended attributes (xattr_len
 * bytes: n_xattrs of struct vb_xattr + name + value, names in strictly
 * ascending byte order), then n_extents struct vb_extent.  Records follow
 * one another with no padding; consumers copy them out.  File indices count
 * the records of a job from 0 in the order sent (VB_FD_MORE not counted).
 * vb_rec_encode() and vb_rec_decode() (protolib.h) write and check them.
 */
struct vb_files {
    uint64_t job;
    uint32_t n_files;
    uint32_t reserved;
};

/* A time: seconds since the epoch (negative before 1970) and nanoseconds
 * (0..999999999) after them; int64_t nanoseconds would end in 2262. */
struct vb_time {
    int64_t  sec;
    uint32_t nsec;
    uint32_t reserved;           /* 0 */
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
    struct vb_time mtime;
    struct vb_time ctime;
    struct vb_time atime;
    uint32_t fsflags;            /* inode flags (FS_IOC_GETFLAGS), VB_FSFL_MASK only */
    uint32_t projid;             /* project id (FS_IOC_FSGETXATTR) */
    uint32_t flags;              /* VB_RF_* */
    uint16_t n_xattrs;
    uint16_t reserved;
    uint32_t xattr_len;          /* bytes of the extended attributes */
    uint32_t reserved2;
};

/* RESTORE_LIST: the file has preallocated (unwritten) space past its size;
 * RESTORE_READ at and past the size says where.  0 in BACKUP_FILES. */
#define VB_RF_PREALLOC          1u

/*
 * Inode flags that a backup keeps (chattr's letters): s u c S i a d A j t D
 * T C x P F.  Linux's FS_*_FL values.  Not kept: e (extents), and what only
 * the file system sets (I N E V ...).
 */
#define VB_FSFL_SECRM           0x00000001u  /* s */
#define VB_FSFL_UNRM            0x00000002u  /* u */
#define VB_FSFL_COMPR           0x00000004u  /* c */
#define VB_FSFL_SYNC            0x00000008u  /* S */
#define VB_FSFL_IMMUTABLE       0x00000010u  /* i */
#define VB_FSFL_APPEND          0x00000020u  /* a */
#define VB_FSFL_NODUMP          0x00000040u  /* d */
#define VB_FSFL_NOATIME         0x00000080u  /* A */
#define VB_FSFL_JOURNAL_DATA    0x00004000u  /* j */
#define VB_FSFL_NOTAIL          0x00008000u  /* t */
#define VB_FSFL_DIRSYNC         0x00010000u  /* D */
#define VB_FSFL_TOPDIR          0x00020000u  /* T */
#define VB_FSFL_NOCOW           0x00800000u  /* C */
#define VB_FSFL_DAX             0x02000000u  /* x */
#define VB_FSFL_PROJINHERIT     0x20000000u  /* P */
#define VB_FSFL_CASEFOLD        0x40000000u  /* F */
#define VB_FSFL_MASK            0x6283C0FFu

/*
 * An extended attribute: this, then the name (name_len bytes, with its
 * namespace: "user.", "trusted.", "security." or exactly
 * "system.posix_acl_access" / "system.posix_acl_default", whose values are
 * the kernel's POSIX ACL xattr format), then the value (value_len bytes, any
 * bytes).
 */
struct vb_xattr {
    uint32_t value_len;          /* <= VB_MAX_XATTR_VALUE */
    uint16_t name_len;           /* 1..VB_MAX_XATTR_NAME */
    uint16_t reserved;
};

/* Unwritten (preallocated, fallocate) extents read as zeros; their physical
 * offset is not read.  They may lie past the file's size (FALLOC_FL_KEEP_SIZE)
 * and may come on a record of any data source (physical 0 when not EXTENTS). */
#define VB_EXT_UNWRITTEN        1u

struct vb_extent {
    uint64_t logical;            /* offset in the file */
    uint64_t physical;           /* byte offset on the whole disk (partition start added) */
    uint64_t length;
    uint32_t flags;              /* VB_EXT_* */
    uint32_t reserved;
};

/*
 * VB_OP_BACKUP_PROBLEMS request: struct vb_problems, then n items, each
 * uint16_t path_len, uint16_t reason_len, the path (a protocol path, bytes),
 * the reason (printable ASCII, at most VB_MAX_MESSAGE bytes).  What the
 * guest could not back up: an entry it left out, or a part of one it sent
 * (an attribute, a time).  The job then finishes as incomplete.
 */
struct vb_problems {
    uint64_t job;
    uint32_t n;                  /* 1..VB_MAX_PROBLEMS_PER_MSG */
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
    VB_JOB_MAPPING    = 9,       /* sealed; the host maps the files in its view */
};

#define VB_JOB_FLAG_READ_DONE   1u   /* every byte from the guest's disks has been read */
#define VB_JOB_FLAG_INCOMPLETE  2u   /* the guest reported problems: the snapshot lacks something */
#define VB_JOB_FLAG_MAP_FAILED  4u   /* failed: the host could not map the files (the
                                        guest may walk them itself) */

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
    uint16_t flags;              /* VB_SNAP_* */
};

#define VB_SNAP_INCOMPLETE      1u   /* entries or attributes could not be backed up */

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
 * records as in BACKUP_FILES (n_extents = 0, data NONE; ino carries the
 * entry index of the first link of a hard-link group, or VB_NO_LINK; flags
 * may hold VB_RF_PREALLOC).  Entries come parents first.
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

/* VB_OP_RESTORE_READ reply, followed by len bytes of data unless a flag
 * says the range is a hole, written zeros or preallocated. */
struct vb_restore_data {
    uint64_t offset;
    uint32_t len;                /* bytes of data, or of hole */
    uint32_t flags;              /* VB_RD_* */
};
#define VB_RD_HOLE              1u   /* [offset, offset+len) is a hole: seek over it */
#define VB_RD_EOF               2u   /* nothing more at or after offset */
#define VB_RD_ZERO              4u   /* written zeros: write them, or leave a hole (sparse) */
#define VB_RD_UNWRITTEN         8u   /* preallocated: fallocate (past the size: KEEP_SIZE) */

/* ---- size checks ---------------------------------------------------------- */

#ifndef __cplusplus
_Static_assert(sizeof(struct vb_hello) == 40, "vb_hello");
_Static_assert(sizeof(struct vb_hello_reply) == 112, "vb_hello_reply");
_Static_assert(sizeof(struct vb_backup_begin) == 32, "vb_backup_begin");
_Static_assert(sizeof(struct vb_backup_begin_reply) == 16, "vb_backup_begin_reply");
_Static_assert(sizeof(struct vb_map_head) == 8, "vb_map_head");
_Static_assert(sizeof(struct vb_map_fs) == 16, "vb_map_fs");
_Static_assert(sizeof(struct vb_files) == 16, "vb_files");
_Static_assert(sizeof(struct vb_time) == 16, "vb_time");
_Static_assert(sizeof(struct vb_file_rec) == 120, "vb_file_rec");
_Static_assert(sizeof(struct vb_xattr) == 8, "vb_xattr");
_Static_assert(sizeof(struct vb_problems) == 16, "vb_problems");
_Static_assert(sizeof(struct vb_extent) == 32, "vb_extent");
_Static_assert(sizeof(struct vb_data) == 32, "vb_data");
_Static_assert(sizeof(struct vb_job_status) == 88, "vb_job_status");
_Static_assert(sizeof(struct vb_snap_info) == 32, "vb_snap_info");
_Static_assert(sizeof(struct vb_restore_begin) == 8, "vb_restore_begin");
_Static_assert(sizeof(struct vb_restore_begin_reply) == 32, "vb_restore_begin_reply");
_Static_assert(sizeof(struct vb_restore_read) == 32, "vb_restore_read");
_Static_assert(sizeof(struct vb_restore_data) == 16, "vb_restore_data");
#endif

#endif /* VBACKUP_PROTO_H */
