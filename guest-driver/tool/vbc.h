/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vbc - the vbackup client core, shared by the guest tool `vbackup` and the
 * host-side test client `vbclient`.
 *
 *   transport   vbc_connect(): /dev/vbackup (ioctl) or a UNIX socket
 *               (pipelined, replies matched by tag); vbc_call() is
 *               thread-safe, several threads may call at once.
 *   operations  vbc_hello(), vbc_backup_begin(), vbc_files_*(), vbc_data(),
 *               vbc_seal(), vbc_status(), vbc_cancel(), vbc_list(),
 *               vbc_restore_*(): build a request, check the reply's
 *               lengths and counts before anything is taken from it.
 *   flows       vbc_backup() (a file backup from any vbc_source),
 *               vbc_backup_disk(), vbc_restore(), and the CLI vbc_main().
 *
 * Errors: functions return 0, a negative errno (local or transport
 * failure) or a positive VB_S_* status from the host, and fill a struct
 * vbc_err with a message that names the call and the object.
 */
#ifndef VBC_H
#define VBC_H

#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "vbackup/protolib.h"

#define VBC_VERSION             "0.1.0"
#define VBC_DEFAULT_DEVICE      "/dev/vbackup"
#define VBC_DEFAULT_FREEZE_S    30.0
#define VBC_RESTORE_THREADS     4

/* ---- errors and messages ------------------------------------------------ */

struct vbc_err {
    int code;                    /* 0, -errno, or VB_S_* (> 0) from the host */
    char msg[1024];
};

int vbc_seterr(struct vbc_err *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void vbc_prefixerr(struct vbc_err *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
const char *vbc_status_text(int status);

extern const char *vbc_prog;     /* "vbackup" or "vbclient" */
extern int vbc_quiet;

/* Messages to stderr ("vbackup: ..."); held in memory while a file system
 * that stderr writes to is frozen (vbc_out_hold), written by vbc_out_release. */
void vbc_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void vbc_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void vbc_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void vbc_out_hold(const dev_t *devs, size_t n);
void vbc_out_release(void);
/* Copy of a string from the host or a file name, safe to print (control
 * characters escaped). */
void vbc_sanitize(char *dst, size_t dstlen, const char *src, size_t len);

/* Set by SIGINT/SIGTERM/SIGHUP (the signal number). */
extern volatile sig_atomic_t vbc_interrupted;
void vbc_signals_init(void);

/* ---- small helpers --------------------------------------------------------- */

int64_t vbc_now_ns(void);        /* CLOCK_MONOTONIC */
void vbc_sleep_ms(unsigned ms);  /* returns early when interrupted */
/* A condition variable whose timed waits run on CLOCK_MONOTONIC, so that a
 * step of the wall clock (NTP at boot) neither cuts nor stretches them. */
void vbc_cond_init(pthread_cond_t *c);
/* pthread_cond_timedwait for at most ms milliseconds (m held; c made by
 * vbc_cond_init) */
void vbc_cond_wait_ms(pthread_cond_t *c, pthread_mutex_t *m, unsigned ms);
void vbc_human(char *buf, size_t len, uint64_t bytes);   /* "1.5 GiB" */
void vbc_duration(char *buf, size_t len, double s);      /* "1:02:03", "42 s" */
bool vbc_utf8_valid(const char *s, size_t len);
/* A relative protocol path (vb_path_check): no leading '/', no empty, "."
 * or ".." component, no NUL, <= VB_MAX_PATH, components <= VB_MAX_NAME;
 * any other bytes.  "" is accepted when allow_empty. */
bool vbc_path_valid(const char *p, size_t len, bool allow_empty);
/* Absolute path of ARG relative to CWD, made lexically clean ("/a/b"). */
char *vbc_abspath(const char *cwd, const char *arg);

struct vbc_sha256 {
    uint32_t h[8];
    uint64_t n;
    uint8_t buf[64];
    size_t fill;
};
void vbc_sha256_init(struct vbc_sha256 *s);
void vbc_sha256_update(struct vbc_sha256 *s, const void *p, size_t n);
void vbc_sha256_hex(struct vbc_sha256 *s, char out[65]);

/* ---- transport ------------------------------------------------------------- */

struct vbc_conn;

/* A request under construction: the first VB_HDR_SIZE bytes of buf are left
 * for the header, which vbc_call() fills in. */
struct vbc_msg {
    uint8_t *buf;
    size_t len, cap;
    uint16_t op;
    bool oom;
};

struct vbc_reply {
    uint8_t *buf;                /* VB_HDR_SIZE + cap bytes, owned by the caller */
    uint32_t cap;                /* largest payload accepted (reply_max) */
    int32_t status;
    uint32_t len;                /* payload bytes */
    const uint8_t *payload;      /* buf + VB_HDR_SIZE */
};

/* PATH: a character device (ioctl) or a UNIX socket.  NULL = the default
 * (VBACKUP_DEVICE or /dev/vbackup). */
int vbc_connect(const char *path, struct vbc_conn **out, struct vbc_err *e);
/* One way, to FD (a pipe; taken over): every request is written as a frame
 * and answered with an empty OK at once.  The file system mapper writes its
 * records so (hostd/mapper). */
int vbc_connect_stream(int fd, struct vbc_conn **out, struct vbc_err *e);
void vbc_disconnect(struct vbc_conn *c);
bool vbc_conn_is_socket(const struct vbc_conn *c);

void vbc_msg_init(struct vbc_msg *m, uint16_t op, size_t hint);
void vbc_msg_free(struct vbc_msg *m);
void *vbc_msg_put(struct vbc_msg *m, const void *p, size_t n);   /* p NULL: zeros */
void vbc_msg_put_str(struct vbc_msg *m, const char *s, size_t n); /* u16 + bytes */
int vbc_reply_init(struct vbc_reply *r, uint32_t cap);
void vbc_reply_free(struct vbc_reply *r);

/*
 * Send M and wait for its reply into R.  Returns 0 with R->status set (the
 * caller decides), or -errno: ENOMEM, EPIPE (connection lost), EPROTO (a
 * malformed reply), EINTR (interrupted by vbc_interrupted), ENODEV.
 * IDEMPOTENT requests are sent again after an EINTR that was not ours.
 */
int vbc_call(struct vbc_conn *c, struct vbc_msg *m, struct vbc_reply *r,
             bool idempotent, struct vbc_err *e);

/* ---- operations ------------------------------------------------------------ */

struct vbc_hello {
    uint32_t version;
    uint32_t max_payload;        /* clamped to VB_MAX_PAYLOAD */
    uint32_t max_files;          /* clamped to VB_MAX_FILES_PER_MSG */
    uint32_t features;
    char vm[65];
    char daemon[33];
};

/* Limits learnt by HELLO (defaults before it: the protocol maxima). */
struct vbc_limits {
    uint32_t max_payload;
    uint32_t max_files;
};
const struct vbc_limits *vbc_conn_limits(const struct vbc_conn *c);

int vbc_hello(struct vbc_conn *c, const char *tool, struct vbc_hello *h, struct vbc_err *e);

/*
 * What the host needs to map the files itself (VB_BEGIN_HOST_MAP,
 * docs/freeze.md): each root's file system (a disk and where the file system
 * starts on it) and path inside it, the mount points under the roots (not
 * walked into) and the exclusions.  Filled by the guest source's prepare
 * when every root lies on an ext2/3/4 file system of a virtio disk.
 */
struct vbc_map {
    bool ok;                     /* the host may map every root */
    size_t n_fs;
    struct { uint16_t disk; uint64_t start; } fs[VB_MAX_ROOTS];
    uint16_t root_fs[VB_MAX_ROOTS];
    char *inside[VB_MAX_ROOTS];  /* malloc'ed protocol paths ("" the file system's root) */
    char **prune;                /* malloc'ed protocol paths */
    size_t n_prune;
};
void vbc_map_clear(struct vbc_map *m);

struct vbc_begin {
    uint8_t kind, mode;
    uint32_t flags;              /* VB_BEGIN_* */
    const char *target;
    const char *const *serials;
    size_t n_serials;
    const char *const *roots;    /* relative paths; "" is "/" */
    size_t n_roots;
    uint64_t n_files_hint, bytes_hint;
    /* VB_BEGIN_HOST_MAP: the map section and the exclusions */
    const struct vbc_map *map;
    char *const *exclude;
    size_t n_exclude;
};
int vbc_backup_begin(struct vbc_conn *c, const struct vbc_begin *b, uint64_t *job,
                     uint32_t *features, struct vbc_err *e);
int vbc_seal(struct vbc_conn *c, uint64_t job, uint32_t *view, struct vbc_err *e);
int vbc_cancel(struct vbc_conn *c, uint64_t job, struct vbc_err *e);

struct vbc_job {
    uint64_t job;                /* flags: VB_JOB_FLAG_* */
    uint32_t state, flags;
    uint8_t kind, mode;
    uint64_t bytes_done, bytes_total, files_done, files_total;
    uint64_t bytes_new, bytes_reused;
    int64_t started_ns, finished_ns;
    char reason[VB_MAX_MESSAGE * 4 + 1];   /* sanitized */
    char snapshot[VB_MAX_SNAPSHOT_ID * 4 + 1];
};
/* JOB 0: every job of this VM.  *jobs is malloc'ed. */
int vbc_status(struct vbc_conn *c, uint64_t job, struct vbc_job **jobs, size_t *n,
               struct vbc_err *e);
const char *vbc_state_name(uint32_t state);
const char *vbc_mode_name(uint8_t mode);
const char *vbc_kind_name(uint8_t kind);

struct vbc_snap {
    int64_t created_ns;
    uint64_t files, bytes;
    uint8_t kind, mode;
    uint16_t flags;              /* VB_SNAP_* */
    char id[VB_MAX_SNAPSHOT_ID * 4 + 1];
    char *roots;                 /* '\n'-joined, sanitized, malloc'ed */
};
/* All snapshots (paged with start).  TARGET NULL or "": sent empty. */
int vbc_list(struct vbc_conn *c, const char *target, struct vbc_snap **snaps, size_t *n,
             struct vbc_err *e);
void vbc_snaps_free(struct vbc_snap *s, size_t n);

/* ---- records (BACKUP_FILES) --------------------------------------------------- */

struct vbc_extent {
    uint64_t logical, physical, length;
    uint32_t flags;              /* VB_EXT_* */
};

/* One entry as the clients know it; the wire record is made from it. */
struct vbc_file {
    uint8_t type;                /* vb_ftype */
    uint8_t data;                /* VB_FD_NONE / EXTENTS / FALLBACK */
    int disk;                    /* index into the job's serials, -1: none */
    uint32_t mode, uid, gid, nlink, rdev;
    uint64_t size, ino;
    struct vb_ts mtime, ctime, atime;
    uint32_t fsflags, projid;    /* VB_FSFL_* */
    const char *path;            /* relative, no leading '/'; bytes */
    size_t path_len;
    const char *link;
    size_t link_len;
    const uint8_t *xattrs;       /* wire section (vb_xattr_put, names ascending) */
    size_t xattr_len;
    uint32_t n_xattrs;
    /* extents: written ones within the size (EXTENTS only), unwritten ones
     * anywhere, also past the size (any data source; physical 0 unless
     * EXTENTS) */
    const struct vbc_extent *ext;
    size_t n_ext;
    uint64_t fsid;               /* the file system (st_dev); not sent */
};

/* Extended attributes of one file, read by a source: a growing wire section. */
struct vbc_xattrs {
    uint8_t *buf;
    size_t len, cap;
    uint32_t n;
};
/* Builds the section from NAMES/values given in any order (sorted here);
 * 0 or -ENOMEM. */
struct vbc_xattr_in {
    char *name;
    size_t name_len;
    uint8_t *value;
    size_t value_len;
};
int vbc_xattrs_build(struct vbc_xattrs *x, struct vbc_xattr_in *in, size_t n);

/* What could not be backed up: "path: reason", reported and sent with
 * BACKUP_PROBLEMS; the backup then ends with exit status 3. */
struct vbc_problems {
    struct vbc_problem {
        char *path;              /* protocol path (bytes) */
        size_t path_len;
        char *reason;
    } *v;
    size_t n, cap;
};
/* Records and prints (escaped) one problem; -ENOMEM. */
int vbc_problem_add(struct vbc_problems *p, const char *path, size_t path_len,
                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void vbc_problems_free(struct vbc_problems *p);
int vbc_problems_send(struct vbc_conn *c, uint64_t job, const struct vbc_problems *p,
                      struct vbc_err *e);

/* Linux new_encode_dev(). */
uint32_t vbc_encode_dev(unsigned major, unsigned minor);

/* Sort, merge contiguous runs with equal flags, drop written extents past
 * SIZE and trim the last written one to SIZE (unwritten ones stay, also past
 * SIZE: preallocation).  Returns false if extents overlap (the mapping
 * cannot be trusted: send the data instead). */
bool vbc_extents_normalize(struct vbc_extent *ext, size_t *n, uint64_t size);

/*
 * FILES batching.  vbc_files_add() copies the record into the current
 * message and sends it when the next record would not fit (<= max_files
 * records, <= max_payload bytes).  A file with more than
 * VB_MAX_EXTENTS_PER_REC extents becomes a first record and VB_FD_MORE
 * records; a MORE record may start the next message.
 */
struct vbc_files {
    struct vbc_conn *c;
    uint64_t job;
    struct vbc_msg m;
    struct vbc_reply r;
    uint32_t n_in_msg;
    uint32_t max_files, max_payload;
    uint64_t n_files;            /* file indices given out (MORE not counted) */
    uint64_t n_msgs, n_records;
};
int vbc_files_init(struct vbc_files *b, struct vbc_conn *c, uint64_t job, struct vbc_err *e);
/* Adds F; *index = its file index.  */
int vbc_files_add(struct vbc_files *b, const struct vbc_file *f, uint64_t *index,
                  struct vbc_err *e);
int vbc_files_flush(struct vbc_files *b, struct vbc_err *e);
void vbc_files_free(struct vbc_files *b);

/* BACKUP_DATA: M must have been made by vbc_data_msg(); its data area
 * (vbc_data_buf) holds LEN bytes. */
void vbc_data_msg(struct vbc_msg *m, uint32_t max_piece);
uint8_t *vbc_data_buf(struct vbc_msg *m);
int vbc_data_send(struct vbc_conn *c, struct vbc_msg *m, struct vbc_reply *r, uint64_t job,
                  uint64_t file, uint64_t offset, uint32_t len, bool last, struct vbc_err *e);

/* Dump (--dump): one JSON object per file, the extents merged. */
void vbc_dump_record(FILE *f, const struct vbc_file *r, const char *serial,
                     const char *sha256_hex);

/* ---- restore operations ---------------------------------------------------------- */

struct vbc_restore_info {
    uint64_t job, n_entries, bytes_total;
    char snapshot[VB_MAX_SNAPSHOT_ID * 4 + 1];
};
int vbc_restore_begin(struct vbc_conn *c, const char *target, const char *snapshot,
                      const char *const *paths, size_t n_paths, struct vbc_restore_info *ri,
                      struct vbc_err *e);

struct vbc_entry {
    uint8_t type;
    uint32_t mode, uid, gid, nlink, rdev;
    uint32_t fsflags, projid, flags;   /* flags: VB_RF_* */
    uint64_t size, link_of;      /* link_of: index of the first link or VB_NO_LINK */
    struct vb_ts mtime, atime;
    char *path;                  /* NUL-terminated bytes (validated: no NUL inside) */
    size_t path_len;
    char *link;                  /* symlink target, NUL-terminated, or NULL */
    uint8_t *xattrs;             /* checked wire section, or NULL */
    size_t xattr_len;
    uint32_t n_xattrs;
};
/* Appends the entries from START to *v (grown with realloc); returns the
 * number added in *added. */
int vbc_restore_list(struct vbc_conn *c, uint64_t job, uint64_t start, struct vbc_reply *r,
                     struct vbc_entry **v, size_t *n, size_t *cap, size_t *added,
                     struct vbc_err *e);

struct vbc_rdata {
    uint64_t offset;
    uint32_t len;
    uint32_t flags;              /* VB_RD_* */
    const uint8_t *data;         /* len bytes unless HOLE, ZERO or UNWRITTEN */
};
int vbc_restore_read(struct vbc_conn *c, struct vbc_reply *r, uint64_t job, uint64_t entry,
                     uint64_t offset, uint32_t len, struct vbc_rdata *d, struct vbc_err *e);
int vbc_restore_end(struct vbc_conn *c, uint64_t job, struct vbc_err *e);

/* ---- sources of files ------------------------------------------------------------ */

/* A file whose data travels through BACKUP_DATA. */
struct vbc_fb {
    uint64_t index;              /* file index in the job */
    uint64_t size;
    uint64_t ino;                /* source's own key (vbclient: inode) */
    char *path;                  /* source's own key (guest: absolute path) */
};

struct vbc_backup_opts;

/*
 * Where the files come from: the guest's own file systems (walk.c: FIEMAP,
 * freeze) or a file system image (vbclient: libext2fs).
 */
struct vbc_source_ops {
    /* Resolve the roots; fill o->serials and o->roots_rel. */
    int (*prepare)(void *s, struct vbc_backup_opts *o, struct vbc_err *e);
    /* Freeze what is to be mapped (may be NULL). */
    int (*freeze)(void *s, struct vbc_err *e);
    /* Emit every entry, roots first in their order; a FALLBACK entry's
     * fb (key) is filled by the source. */
    int (*walk)(void *s, int (*emit)(void *ctx, const struct vbc_file *f,
                                     const struct vbc_fb *fb, struct vbc_err *e),
                void *ctx, struct vbc_err *e);
    int (*open_data)(void *s, const struct vbc_fb *fb, void **h, struct vbc_err *e);
    /* Read up to LEN bytes at OFF; *got 0 = end of file. */
    int (*read_data)(void *s, void *h, uint64_t off, void *buf, size_t len, size_t *got,
                     struct vbc_err *e);
    void (*close_data)(void *s, void *h);
    /* Thaw (may be NULL); returns the longest freeze in seconds. */
    double (*thaw)(void *s);
    /* The freeze was broken (watchdog or signal): message in e. */
    bool (*freeze_broken)(void *s, struct vbc_err *e);
    /* Something is frozen right now. */
    bool (*is_frozen)(void *s);
};

struct vbc_backup_opts {
    const char *target;
    uint8_t mode;
    char **paths;                /* as given */
    size_t n_paths;
    char **exclude;
    size_t n_exclude;
    char **fallback_glob;        /* --fallback GLOB */
    size_t n_fallback_glob;
    bool fallback_all;
    bool no_freeze;
    double freeze_timeout;
    const char *dump;            /* --dump FILE ("-" = stdout) */
    unsigned dump_freeze_ms;
    const char *hooks_dir;
    const char *assume_disk;     /* SERIAL[:START] */
    bool no_host_map;            /* --no-host-map: the guest walks, frozen meanwhile */
    struct vbc_problems *problems;   /* what the source could not back up (vbc_backup's) */
    /* filled by prepare */
    bool will_freeze;            /* the source freezes what the host reads */
    char *serials[VB_MAX_DISKS];
    size_t n_serials;
    char **roots_rel;
    size_t n_roots;
    struct vbc_map map;          /* what the host needs to map the files (map.ok) */
};

bool vbc_excluded(const struct vbc_backup_opts *o, const char *abspath, const char *name);
/* Walks: replace what follows the first plen bytes of *path (a folder's
 * absolute path) with "/name" (plen 0: *path becomes name), growing the
 * buffer (*cap bytes) as needed. */
int vbc_path_child(char **path, size_t *cap, size_t plen, const char *name, struct vbc_err *e);
bool vbc_force_fallback(const struct vbc_backup_opts *o, const char *abspath, const char *name);

int vbc_backup(const char *device, struct vbc_backup_opts *o, const struct vbc_source_ops *ops,
               void *src);
/* The records of job JOB from SRC (prepare, walk, fallback data, problems)
 * as frames on FD, one way: the host-side file system mapper's output,
 * which vbackupd checks as it checks a guest's requests.  0 or an error in E. */
int vbc_backup_stream(int fd, uint64_t job, struct vbc_backup_opts *o,
                      const struct vbc_source_ops *ops, void *src, struct vbc_err *e);
/* A whole disk; mode VB_MODE_*: an incremental or differential reads only
 * what changed when the host tracks the disk (docs/cbt.md), else all. */
int vbc_backup_disk(const char *device, const char *target, const char *serial, uint8_t mode,
                    const struct vbc_source_ops *ops, void *src);

struct vbc_restore_opts {
    const char *target;
    const char *snapshot;        /* NULL = "latest" */
    char **paths;                /* relative protocol paths */
    size_t n_paths;
    const char *into;            /* NULL = "/" */
    bool no_sparse;              /* write written zeros (default: zero blocks stay holes) */
};

/* Exit statuses of the commands. */
#define VBC_EXIT_OK             0
#define VBC_EXIT_FAIL           1
#define VBC_EXIT_USAGE          2
#define VBC_EXIT_INCOMPLETE     3    /* done, but some entries or attributes could not be
                                        backed up or restored: each is listed */
int vbc_restore(const char *device, const struct vbc_restore_opts *o);

/* ---- progress line ------------------------------------------------------------- */

struct vbc_progress {
    bool on;                     /* stderr is a terminal and not --quiet */
    int64_t t0_ns, last_ns, shown_ns;
    uint64_t last_done;
    double rate;
    size_t shown;
};
void vbc_progress_init(struct vbc_progress *p);
void vbc_progress_show(struct vbc_progress *p, const char *what, uint64_t done, uint64_t total);
void vbc_progress_text(struct vbc_progress *p, const char *text);
void vbc_progress_clear(struct vbc_progress *p);

/* ---- CLI ------------------------------------------------------------------------ */

/*
 * The tool-specific part of the command line: vbackup's guest source or
 * vbclient's image source.  vbc_main() parses the common commands and
 * options and calls these.
 */
struct vbc_tool {
    const char *name;
    const char *usage_extra;     /* appended to --help */
    /* Extra long options (terminated by a zero entry); val >= 1000. */
    const struct option *options;
    int (*option)(int val, const char *arg);          /* 0, or 2 = usage */
    /* Make the source for a backup (o has the parsed options). */
    int (*source)(struct vbc_backup_opts *o, const struct vbc_source_ops **ops, void **src);
    void (*source_free)(void *src);
    /* backup-disk: SERIAL_OR_DEVICE -> serial; the source (for freezing), may be NULL */
    int (*disk_serial)(const char *arg, char *serial, size_t len, struct vbc_err *e);
    int (*disk_source)(const char *arg, bool no_freeze, double timeout, const char *hooks,
                       const struct vbc_source_ops **ops, void **src);
    /* Restore/list/status paths: made absolute with the cwd (guest) or
     * taken as paths from "/" (vbclient). */
    bool paths_from_cwd;
};

int vbc_main(int argc, char **argv, const struct vbc_tool *tool);

#endif /* VBC_H */
