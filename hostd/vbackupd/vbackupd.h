/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vbackupd internals.  One file per concern:
 *   main.c     start-up, signals, shutdown, reload
 *   config.c   the GKeyFile configuration
 *   vm.c       per-VM sockets, connections, framing, dispatch
 *   wire.c     parsing and checking of every request payload (fuzzed)
 *   jobs.c     backup jobs: BEGIN/FILES/DATA/SEAL/STATUS/CANCEL/LIST
 *   batch.c    batching, the policy chain, read plans
 *   exec.c     execution: io_uring reads, windows, chunking, storing, commit
 *   mapper.c   the host maps a job's files: runs vbackup-mapper on the view
 *   restore.c  restore jobs: RESTORE_BEGIN/LIST/READ/END
 *   journal.c  every job's record on disk, so that a restart reports what happened
 *   targets.c  targets that may be broken or read-only
 *   admin.c    the admin socket (vbackupctl vms, jobs, job ID)
 *   view.c     the point-in-time view: snapshot, exact commit back, checks
 *   chain.c    disk chains as QEMU reports them, identities of image files
 *   qmp.c      the view through QEMU's monitor
 *   libvirt.c  VMs from libvirt, and the view through libvirt
 *   limits.c   what one VM's requests make the daemon hold, against vm_memory
 *   snapindex.c  the snapshots of each VM in each target, for LIST and "latest"
 *   peer.c     who may connect to a VM's socket (its QEMU's pid, label)
 *   quota.c    what each VM may add to the repositories, and when
 *   reclaim.c  gc of a target after failed jobs, when no job holds it
 *   offsite.c  copy_to: each new snapshot copied into a format 2 repository
 */
#ifndef VBACKUPD_H
#define VBACKUPD_H

#include <glib.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#include "catalog.h"
#include "cbt.h"
#include "escape.h"
#include "fastcdc.h"
#include "image.h"
#include "policyload.h"
#include "repo.h"
#include "session.h"
#include "sink.h"
struct vb_sr;            /* snapread.h */
struct vb_sr_snap;
#include "snapshot.h"
#include "uring.h"
#include "util.h"
#include "vbackup/policy.h"
#include "vbackup/proto.h"
#include "workers.h"

struct vb2_repo;

#define VBD_VERSION "0.1.0"

/* ---- configuration -------------------------------------------------------- */

struct vbd_disk_cfg {
    char *serial;
    char *image;
    char *format;            /* "raw" or "qcow2": required, never probed */
    char *backing_format;    /* NULL, or the format of backing files whose overlay names none */
    char *target;            /* libvirt: the disk's target ("vda") */
};

/* What a VM may add to a repository (0: no limit).  docs/vbackupd.md, "Quotas". */
struct vbd_quota {
    uint64_t job_bytes;      /* max_job_bytes: per backup job */
    uint64_t total_bytes;    /* max_total_bytes: its snapshots in one target, all told */
    uint64_t day_bytes;      /* max_bytes_per_day: in any 24 hours */
    uint64_t day_jobs;       /* max_jobs_per_day: backup jobs begun in any 24 hours */
};

struct vbd_vm_cfg {
    char *name;
    char *socket;
    char *qmp;               /* optional */
    char *libvirt;           /* found through libvirt: the domain's name */
    bool cbt;                /* changed-block tracking of its disks (docs/cbt.md) */
    char *pidfile;           /* the QEMU process that alone may connect (peer.c) */
    char *peer_label;        /* its security label (SO_PEERSEC), when set */
    char *dedup_group;       /* NULL: [daemon] dedup_group's; "@vm": its own */
    struct vbd_quota quota;
    GPtrArray *disks;        /* struct vbd_disk_cfg * */
};

struct vbd_target_cfg {
    char *name;
    char *repository;
    char *copy_to;           /* a format 2 repository new snapshots are copied to (offsite.c) */
    char *copy_password_file;   /* its password: a file ... */
    char *copy_credential;      /* ... or a systemd credential; NULL both: unencrypted */
    GPtrArray *store_opts;   /* "key=value" of its object storage (endpoint, region, ...),
                              * NULL-terminated, or NULL: none */
    char *password_file;     /* a format 2 repository's password: a file ... */
    char *credential;        /* ... or a systemd credential (password_credential); NULL
                              * both: unencrypted */
};

struct vbd_policy_cfg {
    char *name;              /* plugin name or path */
    GPtrArray *kv;           /* "key=value" strings, NULL-terminated */
};

struct vbd_config {
    char *path;
    char *runtime_dir;
    char *admin_socket;
    char *plugin_dir;
    char *psi_dir;
    char *state_dir;         /* journal of running jobs */
    char *socket_group;      /* VM sockets: group that may connect (QEMU's), mode 0660 */
    double batch_seconds;
    unsigned batch_max;
    double frozen_wait;      /* longest wait before cutting a batch holding a frozen guest */
    int workers;
    unsigned max_jobs_per_vm;
    unsigned max_conns_per_vm;
    unsigned max_inflight_per_conn;
    uint64_t max_files_per_job;
    unsigned idle_timeout;   /* seconds */
    uint64_t cache_bytes;    /* shared read cache */
    uint64_t vm_memory;      /* what one VM's requests may make the daemon hold */
    uint64_t max_extents_per_job;
    uint64_t output_buffer;  /* replies queued and promised per connection */
    bool reclaim;            /* gc a target after failed jobs stored chunks (reclaim.c) */
    double reclaim_interval; /* seconds between two such gcs of one target, at least */
    char *dedup_group;       /* [daemon] dedup_group: of VMs that name none ("" default,
                              * "@vm": each its own) */
    char *mapper;            /* vbackup-mapper; "" = the host never maps files */
    char *mapper_user;       /* its sandbox's user */
    uid_t mapper_uid;
    gid_t mapper_gid;
    uint64_t mapper_memory;  /* RLIMIT_AS */
    unsigned mapper_seconds; /* wall-clock bound (and RLIMIT_CPU) */
    unsigned max_mappers;    /* mappers running at once */
    char *libvirt_uri;       /* [libvirt] uri: discover VMs from libvirt */
    bool libvirt_cbt;        /* [libvirt] cbt: track the disks of libvirt's VMs */
    char *libvirt_pid_dir;   /* [libvirt] pid_dir: DIR/NAME.pid is a domain's QEMU ("" none) */
    struct vbd_quota libvirt_quota;   /* [libvirt] quotas of the domains found */
    GPtrArray *targets;      /* struct vbd_target_cfg * */
    GPtrArray *policies;     /* struct vbd_policy_cfg *, in chain order */
    GPtrArray *vms;          /* struct vbd_vm_cfg * */
};

int vbd_config_load(const char *path, struct vbd_config **out, vb_error *e);
void vbd_config_free(struct vbd_config *c);

/* ---- runtime objects ------------------------------------------------------- */

struct vbd;
struct vbd_job;
struct vbd_conn;

/* What a VM's requests make the daemon hold, by kind (limits.c). */
enum vbd_mem {
    VBD_MEM_FILES,           /* entries, paths and extents the guest sent */
    VBD_MEM_FALLBACK,        /* fallback data windows */
    VBD_MEM_PLAN,            /* read plans: windows, pieces, reads */
    VBD_MEM_CATALOG,         /* catalogs: parents of incremental jobs, restores */
    VBD_MEM_RESTORE,         /* decoded chunks of restores */
    VBD_MEM_REPLIES,         /* replies queued for the VM's connections */
    VBD_MEM__N,
};

struct vbd_target {
    char *name;
    char *path;
    struct vb_repo *repo;    /* format 1: opened without a lock; jobs claim it (session.h,
                              * repo.h); NULL while it cannot be opened: vbd_target_open()
                              * opens it (on any thread), and once open it stays */
    struct vb2_repo *repo2;  /* format 2 (repo2.h), the same way; at most one of the two */
    char *password_file, *credential;   /* format 2: its secret, as configured */
    GPtrArray *store_opts;   /* its object storage's options (vbd_target_cfg) */
    char *broken;            /* why it cannot be opened, as last logged (targets.c's lock) */
    /* reclaim.c: a gc after failed jobs */
    bool reclaim_wanted;
    struct vbd_reclaim *reclaim_run;  /* running */
    double reclaim_last;     /* monotonic time of the last one, 0: none */
    /* offsite.c: copies of its snapshots into copy_to */
    char *copy_to, *copy_password_file, *copy_credential;   /* as configured */
    bool copy_wanted;        /* a commit came while a copy ran: another one after it */
    struct vbd_copy *copy_run;   /* running */
};

struct vbd_disk {
    char *serial;
    char *image;
    char *format;            /* as configured: never probed */
    char *backing_format;
    char *target;            /* libvirt's target name */
    struct vb_image *img;    /* opened on demand, per job run */
    /* jobs' copies: the file QEMU ran the disk on when the view was taken,
     * when that is the disk's tracking overlay over image (qcow2); NULL:
     * the image itself.  Reads go through it (docs/cbt.md). */
    char *top;
};

struct vbd_vm {
    int refs;
    struct vbd *d;
    char *name;
    char *socket_path;
    char *qmp;
    char *libvirt;           /* domain name when the VM came from libvirt */
    bool cbt;                /* changed-block tracking of its disks */
    char *pidfile;           /* peer.c: only this QEMU process may connect */
    char *peer_label;
    bool peer_start_unknown; /* peer.c: said once that /proc hides the start */
    char *dedup_group;       /* its chunks' id space ("": the default; chunk.h) */
    struct vbd_quota quota;
    GPtrArray *disks;        /* struct vbd_disk * */
    int listen_fd;
    guint listen_src;
    GList *conns;            /* struct vbd_conn * */
    bool removed;            /* gone from the configuration */
    uint64_t requests, errors;
    uint64_t mem[VBD_MEM__N], mem_used, mem_peak;   /* limits.c */
    unsigned pool_bufs;      /* read buffers of the pool its plans' windows hold */
    uint64_t frozen_spent;   /* the job that used the VM's frozen priority; 0: unused */
};

struct vbd_conn {
    struct vbd_vm *vm;
    int fd;
    guint in_src, out_src;
    uint8_t *in;             /* partial frame */
    size_t in_len, in_cap;
    GQueue out;              /* GBytes * of whole frames */
    size_t out_off;          /* bytes of the head already written */
    size_t out_bytes;        /* bytes queued in out */
    unsigned inflight;       /* requests without a reply yet */
    uint64_t promised;       /* the largest replies those may still get */
    guint resume_src;        /* processes frames already read, once it may again */
    bool in_dispatch;        /* process_input is running */
    bool closing;
    bool throttled;          /* not read: its replies are not taken */
};

/* A request waiting for an asynchronous answer keeps its connection. */
struct vbd_req {
    struct vbd_conn *conn;   /* NULL once the connection is gone */
    uint16_t type;
    uint64_t tag;
    uint32_t reply_max;
    void (*answered)(void *opaque);   /* not from a connection: called when answered */
    void *opaque;
};

enum vbd_pkind { P_DATA = 1, P_ZERO = 2, P_COMP = 3 };

/* Work for the CPU workers; done() runs on the main thread afterwards. */
struct vbd_task {
    struct vb_work work;     /* first */
    void (*done)(struct vbd_task *t);
};

/* Part of a window: where its bytes come from. */
struct vbd_piece {
    uint8_t kind;
    uint8_t depth;           /* P_COMP: layer of the image chain */
    uint16_t pad;
    uint32_t win_off;        /* offset in the window */
    uint32_t len;            /* guest bytes */
    uint32_t comp_len;       /* P_COMP */
    uint64_t cluster_off;    /* P_COMP: offset in the inflated cluster */
    uint32_t read;           /* index into the batch plan's reads */
    uint64_t read_off;       /* offset of the piece's bytes inside that read */
    uint8_t *comp;           /* P_COMP: the compressed bytes, once read */
};

/* A window: up to 4 MiB of one file's data, read and chunked as a unit. */
struct vbd_window {
    struct vbd_task task;    /* first: worker queue */
    struct vbd_job *job;
    struct vbd_plan *plan;   /* NULL for fallback windows */
    struct vb_image *img;    /* for compressed pieces */
    struct vb_sink *ws;     /* the job's write session, referenced while with a worker */
    uint8_t *carry;          /* moved from the entry while the window is worked on */
    uint32_t carry_len;
    uint64_t carry_off;
    uint32_t file;           /* job entry index */
    uint32_t seq;            /* order inside the file */
    uint64_t off;            /* logical offset in the file */
    uint32_t len;
    bool region_end;         /* data stops after this window (hole or end of file) */
    bool file_end;
    uint32_t first_piece, n_pieces;
    unsigned pending;        /* pieces still waiting for reads */
    uint8_t *buf;
    bool opened, ready, done;
    /* worker results */
    int err;
    char *emsg;              /* what failed, for the log */
    GArray *chunks;          /* struct vb_cat_chunk */
    uint64_t bytes_new, bytes_reused, stored;
    struct vbd_req *reply;   /* fallback DATA: answered once processed */
    uint32_t cap;            /* fallback: bytes allocated in buf */
};

/* One entry the guest sent. */
struct vbd_entry {
    struct vb_cat_entry m;   /* metadata; path/link/chunk fields unused */
    char *path;              /* bytes, no NUL inside (checked): a C string */
    char *link;
    uint8_t *xattrs;         /* the record's checked wire section (protolib.h), or NULL */
    uint32_t xattr_len;
    uint16_t n_xattrs;
    uint16_t disk;
    uint8_t data;            /* VB_FD_* */
    GArray *extents;         /* struct vb_extent (not EXTENTS: only unwritten ones), or NULL */
    /* run state */
    uint64_t fb_received;    /* fallback bytes received */
    bool fb_done;
    uint64_t master;         /* hard link: index of the entry holding the data, or UINT64_MAX */
    bool reused;             /* unchanged since the parent */
    uint32_t windows;        /* windows created */
    uint32_t next_seq;       /* next window to chunk */
    uint32_t done_windows;
    uint8_t *carry;          /* bytes not yet cut into chunks */
    uint32_t carry_len;
    uint64_t carry_off;      /* logical offset of carry[0] */
    GArray *chunks;          /* struct vb_cat_chunk */
    struct vbd_window *fb_win;   /* fallback window being filled */
    GQueue ready;            /* windows ready to chunk, by seq */
    bool busy;               /* a window of this file is with a worker */
    bool fb_queued;          /* in the job's fb_waiting */
};

struct vbd_job {
    int refs;
    uint64_t id;
    struct vbd *d;
    struct vbd_vm *vm;
    struct vbd_target *target;
    uint8_t kind, mode;
    enum vb_job_state state;
    uint32_t flags;          /* VB_JOB_FLAG_* */
    uint32_t view;           /* VB_VIEW_* once sealed */
    bool unfrozen;           /* the client holds no freeze: the job may wait */
    bool view_pending;       /* the snapshot is being taken */
    void *view_op;           /* view.c: the view to release (commit back) */
    bool view_busy;          /* view.c: a release is under way */
    double view_seconds;
    GPtrArray *serials;      /* char * */
    GPtrArray *disks;        /* struct vbd_disk * (VM's, by serial order) */
    GPtrArray *roots;        /* char * */
    GArray *entries;         /* struct vbd_entry */
    GHashTable *paths;       /* path → index + 1 */
    int64_t created_ns, sealed_ns, started_ns, finished_ns, first_deferred_ns;
    int64_t defer_until_ns;  /* deferred: offer again to the policies then */
    double last_activity;    /* monotonic */
    char reason[320];        /* for the guest too: never a host path or errno text */
    char *detail;            /* the host-side cause of a failure: log and admin only */
    char *snapshot;          /* id once done */
    char *parent;            /* parent snapshot id, if any */
    char *mode_note;         /* e.g. "full (no parent)" */
    uint64_t bytes_total, bytes_done, files_total, files_done;
    uint64_t bytes_new, bytes_reused, stored_new, bytes_read;
    uint64_t mem[VBD_MEM__N];    /* what the job holds, counted against its VM */
    uint64_t n_extents;          /* extents sent, continuation records too */
    uint64_t fb_open;            /* fallback files still lacking data */
    guint fb_first_open;         /* no fallback file before this entry lacks data */
    unsigned fb_busy;            /* fallback windows with the workers */
    GQueue fb_waiting;           /* entries whose ready fallback windows wait (uint index) */
    bool planning;               /* in a cut on a worker: its entries and windows are the worker's */
    bool claiming;               /* the fallback data's claim is with a worker */
    bool claim_waited;           /* said in the log that fallback data waits for gc */
    bool cancel;
    volatile int cancel_flag;    /* disk jobs: read by the backup thread */
    bool plan_released;      /* released from its plan (once) */
    bool in_plan;            /* windows, pieces and images are in use by a plan */
    bool committing;         /* commit task with a worker */
    uint8_t ending;          /* a cancel or failure (its state) that came while the job's
                              * commit (or disk backup) runs: the job ends so unless the
                              * commit made its snapshot (then it is done) */
    bool is_restore;
    /* plan and execution */
    uint64_t batch;          /* batch id that ran it */
    json_object *plan_notes; /* array of strings */
    GArray *pieces;          /* struct vbd_piece */
    GPtrArray *windows;      /* struct vbd_window *, in file order */
    guint next_window;       /* next window to open */
    unsigned windows_open, windows_done, windows_ready;
    unsigned fb_windows_pending;
    /* the repository: a backup's write session claims it from its first
     * chunk (fallback data, or the batch that runs the job) to its commit
     * or abort; a restore holds a read claim */
    struct vb_sink *ws;
    struct vbd_charge *charge;   /* quota.c: what the job adds, against the VM's quotas */
    bool over_quota;         /* failed for a quota: requests are answered VB_S_QUOTA */
    bool claim_waiting;      /* fallback data waits while gc holds the repository */
    struct vb_sr *sr;        /* restore jobs: the read door (snapread.h), with a claim
                              * on a format 1 target */
    struct vb_catalog *parent_cat;
    bool parent_current;     /* parent committed in this gc generation: its chunks exist */
    /* disk jobs */
    struct vb_cbt_record *cbt_rec;   /* the disk's tracking record as the view found it */
    char *cbt_why;           /* why the tracking proves nothing, known before the read */
    struct vb_cbt_record *cbt_next;  /* the record the release wrote: bound at the commit */
    GThread *disk_thread;
    struct vbd_disk_run *disk_run;   /* exec.c */
    volatile uint64_t disk_done, disk_total;
    /* restore jobs */
    const struct vb_catalog *cat;    /* snap's */
    struct vb_sr_snap *snap;
    GArray *sel;             /* uint64 entry indices */
    uint64_t cache_chunk[2];
    uint8_t *cache_buf[2];
    uint32_t cache_len[2];
    unsigned cache_next;
    GHashTable *inflight;    /* catalog chunk index → decode task */
    bool opening;            /* its BEGIN is resolved on a worker (restore: the snapshot;
                              * backup: the total quota), no request taken */
    unsigned decoding;       /* decode tasks with the workers */
    GQueue read_wait;        /* RESTORE_READs waiting for a decode slot */
    /* what the guest could not back up (BACKUP_PROBLEMS): the snapshot is incomplete */
    uint64_t n_problems;
    json_object *problems;   /* array of {path, reason}, the first VBD_PROBLEMS_KEPT */
    /* the host maps the files (VB_BEGIN_HOST_MAP answered with VB_FEAT_HOST_MAPS) */
    bool host_map;
    struct vbd_map *map;     /* mapper.c */
};

#define VBD_PROBLEMS_KEPT 1000

/* Shared read of the plan being executed. */
struct vbd_read {
    struct vb_io io;
    struct vbd_plan *plan;
    int err;
    struct vbd *d;
    uint32_t index;
    uint32_t file;           /* plan file index */
    uint64_t off, len;
    uint32_t consumers_left;
    uint8_t state;           /* R_NEW, R_INFLIGHT, R_DONE */
    bool cached;             /* counted in the cache */
    uint8_t *buf;
    GPtrArray *waiters;      /* struct vbd_window * waiting; piece index in parallel array */
    GArray *waiter_pieces;   /* uint32 */
};

enum { R_NEW = 0, R_INFLIGHT = 1, R_DONE = 2 };

struct vbd_plan {
    uint64_t id;
    struct vbp_batch *batch;
    struct vbd_read *reads;
    uint32_t n_reads;
    GPtrArray *jobs;         /* struct vbd_job * running in this plan */
    GHashTable *file_index;  /* plan file index → (struct vb_layer fds) via files array */
    int *fd, *dfd;           /* per plan file */
    uint32_t *mem_align, *off_align;
    unsigned jobs_left;
    uint64_t rate_limit_bps;
    double rate_t0;
    uint64_t rate_bytes;
};

struct vbd {
    struct vbd_config *cfg;
    char *config_path;
    GMainLoop *loop;
    GHashTable *vms;         /* name → struct vbd_vm * */
    GHashTable *targets;     /* name → struct vbd_target * */
    GHashTable *jobs;        /* &id → struct vbd_job * */
    GPtrArray *chain;        /* struct vbd_policy * */
    uint64_t next_job;
    uint64_t next_batch;
    GQueue pending;          /* sealed jobs waiting for a batch (struct vbd_job *) */
    guint batch_timer;
    double batch_due;        /* monotonic time of the next cut, 0 = none */
    GList *plans;            /* struct vbd_plan * executing */
    struct vb_ring ring;
    int ring_efd;
    guint ring_src;
    struct vb_workers wk;
    guint wk_src;
    struct vb_cdc cdc;
    guint claim_timer;       /* retries jobs waiting for a repository gc holds */
    GQueue free_bufs;        /* 4 MiB window buffers */
    unsigned bufs_in_use, max_bufs;
    unsigned tasks_out;      /* daemon work with the workers (vbd_work_push) */
    uint64_t mem_used;       /* held for all VMs (limits.c) */
    bool cutting;            /* a batch is being planned on a worker */
    GHashTable *snapindex;   /* snapindex.c */
    uint64_t cache_used;
    int admin_fd;
    guint admin_src;
    GList *admin_conns;
    bool stopping;
    unsigned views_active;   /* snapshots being committed back */
    bool mapper_ok;          /* the mapper runs in its sandbox on this host */
    char mapper_why[256];    /* ... or why it does not */
    unsigned mappers_running;
    GQueue map_waiting;      /* jobs waiting for a mapper (struct vbd_job *, referenced) */
    /* counters */
    GHashTable *bytes_by_file;   /* host path → uint64_t * bytes read */
    uint64_t bytes_read_total;
    json_object *batches;    /* recent batch reports */
    GPtrArray *libvirt_vms;  /* struct vbd_vm_cfg *, discovered */
    void *lv;                /* libvirt.c state */
    GHashTable *accts;       /* quota.c: VM name → struct vbd_acct * */
    guint reclaim_timer;     /* reclaim.c */
    GList *reclaims;         /* struct vbd_reclaim * running (targets may be retired meanwhile) */
    guint copy_timer;        /* offsite.c */
    GList *copies;           /* struct vbd_copy * running (targets may be retired meanwhile) */
};

/* main.c */
extern struct vbd *vbd_global;
void vbd_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* peer.c: whether the process on the other end of a new connection to the
 * VM's socket may act as the VM (its QEMU: pid from the pidfile, security
 * label); 0, or -EPERM with the reason in why. */
int vbd_peer_check(struct vbd_vm *vm, int fd, char *why, size_t len);

/* quota.c */
void vbd_quota_init(struct vbd *d);
void vbd_quota_fini(struct vbd *d);
/* At BEGIN of a backup: may the VM begin one (jobs per day, bytes left, its
 * total in the target: COMMITTED, what its snapshots there added, from the
 * snapshot index, when vm->quota.total_bytes is set)?  0, and the job
 * counted and j->charge set; or -EDQUOT with the reason in why (for the
 * guest: names the quota, no host path). */
int vbd_quota_begin(struct vbd_job *j, uint64_t committed, char *why, size_t len);
/* What the snapshots of a listing (struct vbd_snapinfo *) added. */
uint64_t vbd_quota_committed(GPtrArray *snaps);
/* How many of the VM's jobs ended done: a listing begun before it changed
 * may lack one of their snapshots. */
uint64_t vbd_quota_commits(struct vbd *d, struct vbd_vm *vm);
/* The job's session charges what it stores to the job's quotas.  On the
 * main loop, once j->ws is set (sessions are begun on workers: batch.c's
 * cut, exec.c's claim of fallback data) and before its first put. */
void vbd_quota_attach(struct vbd_job *j);
/* The job ended: its bytes leave the running count (and stay in the total
 * if it committed); the accounting is written down. */
void vbd_quota_end(struct vbd_job *j);
/* A failure: if ERR is the quota's, fail the job saying which quota, and
 * return true. */
bool vbd_quota_failed(struct vbd_job *j, int err);
/* Bytes the job has added to the repository so far. */
uint64_t vbd_quota_added(struct vbd_job *j);
json_object *vbd_quota_json(struct vbd *d, struct vbd_vm *vm);
/* The one clock of quotas: wall-clock ns (plus VBACKUPD_TEST_CLOCK_OFFSET) */
int64_t vbd_quota_now(void);

/* reclaim.c */
void vbd_reclaim_want(struct vbd *d, struct vbd_target *t);
void vbd_reclaim_fini(struct vbd *d);

/* offsite.c */
/* Open the target's copy_to with its configured secret (never a terminal);
 * errors name the target, never the secret. */
int vbd_copy_open(const struct vbd_target *t, struct vb2_repo **out, vb_error *e);
/* Whether an error of vbd_copy_open is the configuration's (a wrong or
 * missing secret, no repository there) rather than the place's for now (an
 * S3 endpoint unreachable). */
bool vbd_copy_config_error(int err);
/* Copy the target's snapshots that its copy_to lacks, on a thread of its
 * own; if one runs, once more after it (coalesced).  No-op without copy_to. */
void vbd_copy_want(struct vbd *d, struct vbd_target *t);
void vbd_copy_want_all(struct vbd *d);
/* Shutdown: running copies are cancelled (their writes aborted) and joined. */
void vbd_copy_fini(struct vbd *d);

/* vm.c */
int vbd_vms_apply(struct vbd *d, GPtrArray *vms, vb_error *e);
int vbd_vms_refresh(struct vbd *d, vb_error *e);   /* configured + discovered VMs */
void vbd_vm_unref(struct vbd_vm *vm);
struct vbd_disk *vbd_vm_disk(struct vbd_vm *vm, const char *serial);
void vbd_reply(struct vbd_conn *c, const struct vb_hdr *req, int status, const void *payload,
               size_t len);
void vbd_reply_err(struct vbd_conn *c, const struct vb_hdr *req, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Text for the guest about a failure on the host: "WHAT; the host's log has
 * details (host error N)"; WHAT and DETAIL (host paths, errno) are logged.
 * Nothing sent to a guest names a host path or an errno text. */
void vbd_host_error(struct vbd_vm *vm, char *out, size_t len, const char *what,
                    const char *detail);
struct vbd_req *vbd_req_hold(struct vbd_conn *c, const struct vb_hdr *h);
void vbd_req_answer(struct vbd_req *r, int status, const void *payload, size_t len);
void vbd_req_answer_err(struct vbd_req *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void vbd_vms_close_all(struct vbd *d);
bool vbd_vm_connected(struct vbd_vm *vm);
unsigned vbd_vm_throttled(struct vbd_vm *vm);   /* connections not read: replies not taken */

/* jobs.c */
void vbd_handle_backup(struct vbd_conn *c, const struct vb_hdr *h, const uint8_t *p, size_t n);
struct vbd_job *vbd_job_find(struct vbd *d, struct vbd_vm *vm, uint64_t id);
void vbd_job_unref(struct vbd_job *j);
struct vbd_job *vbd_job_new(struct vbd *d, struct vbd_vm *vm);
unsigned vbd_unfinished_jobs(struct vbd *d, struct vbd_vm *vm);   /* restores count too */
/* "a, b, c": the names of the targets, for error messages */
void vbd_known_targets(struct vbd *d, char *buf, size_t len);
/* [{"serial", "image", "format"}, ...] of struct vbd_disk * */
json_object *vbd_disks_json(GPtrArray *disks);
void vbd_job_fail(struct vbd_job *j, int state, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Fail a job for a cause on the host: the guest's reason is WHAT and the
 * job's id; DETAIL (host paths, errno texts) goes to the log and to the
 * admin's view of the job only. */
void vbd_job_fail_host(struct vbd_job *j, int state, const char *what, const char *detail);
/* A job that has ended turns out to have failed (its view's release) */
void vbd_job_fail_late(struct vbd_job *j, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void vbd_job_finish_ok(struct vbd_job *j);
/* The outcome of a job's commit (files) or disk backup, on the main thread:
 * snapshot (taken, g_malloc'd) when it was committed; else err, what failed
 * in the guest's terms and the cause (e) for the log.  warning: what went
 * wrong after the commit point (session.h), or NULL. */
void vbd_job_committed(struct vbd_job *j, char *snapshot, int err, const char *what,
                       const vb_error *e, const char *warning);
bool vbd_job_finished(const struct vbd_job *j);
void vbd_jobs_vm_gone(struct vbd *d, struct vbd_vm *vm);
void vbd_jobs_tick(struct vbd *d);
json_object *vbd_job_json(struct vbd_job *j, bool detail);
const char *vbd_state_name(int state);
void vbd_entry_clear(struct vbd_entry *en);
void vbd_job_release(struct vbd_job *j);

/* batch.c */
void vbd_batch_enqueue(struct vbd *d, struct vbd_job *j);
void vbd_batch_schedule(struct vbd *d);
int vbd_chain_load(struct vbd *d, struct vbd_config *cfg, GPtrArray **out, vb_error *e);

/* exec.c */
int vbd_exec_init(struct vbd *d, vb_error *e);
void vbd_exec_fini(struct vbd *d);
void vbd_exec_start(struct vbd *d, struct vbd_plan *p);
void vbd_exec_kick(struct vbd *d);
void vbd_fallback_data(struct vbd_job *j, uint64_t file, const uint8_t *data, uint32_t len,
                       bool last, struct vbd_req *reply);
void vbd_exec_cancel_job(struct vbd_job *j);
/* Whatever ended the job (vbd_job_release): its fallback windows are freed
 * and their DATA requests answered with the job's failure (VB_S_QUOTA when
 * a quota failed it, VB_S_JOB_FAILED otherwise). */
void vbd_exec_drop_fallback(struct vbd_job *j);
void vbd_work_push(struct vbd *d, struct vbd_task *t);
/* On a worker: a write session for the job's VM in target t. */
int vbd_claim_work(struct vbd_target *t, const struct vbd_vm *vm, struct vb_sink **ws,
                   vb_error *e);
void vbd_job_unclaim(struct vbd_job *j);
void vbd_job_unclaim_idle(struct vbd_job *j);
void vbd_disk_job_start(struct vbd_job *j);
uint8_t *vbd_buf_get(struct vbd *d);
void vbd_buf_put(struct vbd *d, uint8_t *b);
void vbd_count_read(struct vbd *d, const char *path, uint64_t n);
/* the view was folded back before the commit (err: it failed a check, said
 * in summary, which names no host paths) */
void vbd_exec_view_done(struct vbd_job *j, int err, const char *summary);

/* journal.c: every job's record (<state_dir>/jobs/<id>.json) from BEGIN until
 * the job is forgotten, so that a restart reports what happened */
void vbd_journal_running(struct vbd_job *j);     /* write the job's record as it is now */
void vbd_journal_forget(struct vbd_job *j);      /* nothing left to recover (view committed back) */
void vbd_journal_drop(struct vbd_job *j);        /* the job is forgotten */

int vbd_job_files(struct vbd_job *j, const uint8_t *p, size_t n, char *msg);
struct vbd_problems;
int vbd_job_problems(struct vbd_job *j, const struct vbd_problems *pr, char *msg);
struct vbd_data;
int vbd_job_data_check(struct vbd_job *j, const struct vbd_data *dt, char *msg);
void vbd_job_data_take(struct vbd_job *j, const struct vbd_data *dt, struct vbd_req *reply);
/* Every root was sent as a record; else false with MSG. */
bool vbd_job_roots_sent(struct vbd_job *j, char *msg);

/* mapper.c */
struct vbd_begin;
/* At start and reload: does the mapper run in its sandbox here? */
void vbd_mapper_check(struct vbd *d);
/* BEGIN asked the host to map: true if it will (J's disks are open); else
 * WHY says why not (for the log) */
bool vbd_map_offer(struct vbd_job *j, const struct vbd_begin *b, char *why, size_t len);
/* The view is taken: map (state MAPPING); QUEUED when done, FAILED with
 * VB_JOB_FLAG_MAP_FAILED when the mapper could not. */
void vbd_map_start(struct vbd_job *j);
/* The job ends: a running mapper is killed. */
void vbd_map_stop(struct vbd_job *j);
json_object *vbd_map_json(struct vbd_job *j);
void vbd_journal_recover(struct vbd *d);
bool vbd_job_hurried(const struct vbd_job *j);

/* view.c */
void vbd_view_take(struct vbd_job *j, struct vbd_req *reply);
gboolean vbd_view_taken(gpointer opaque);
/* fold the view back (a job that ended); a failed check fails the job late */
void vbd_view_release(struct vbd_job *j);
/* fold the view back before the job's commit; then vbd_exec_view_done() */
void vbd_view_finish(struct vbd_job *j);
gboolean vbd_view_released(gpointer opaque);
json_object *vbd_view_json(struct vbd_job *j);
void vbd_view_recover(struct vbd_job *j, json_object *view);
void vbd_seal_done(struct vbd_job *j, struct vbd_req *reply);

/* libvirt.c */
int vbd_libvirt_start(struct vbd *d, vb_error *e);
void vbd_libvirt_stop(struct vbd *d);

/* restore.c */
void vbd_handle_restore(struct vbd_conn *c, const struct vb_hdr *h, const uint8_t *p, size_t n);
void vbd_restore_close(struct vbd_job *j);

/* targets.c */
/* Open the target's repository of either format if it is not open yet (any
 * thread): 0, or a reason that names the target, never its path or an
 * errno text (guests read it); the cause is logged. */
int vbd_target_open(struct vbd_target *t, vb_error *e);
/* The same for callers that read format 1 only: NULL, with a reason, also
 * for a format 2 target (what cannot use one yet says so). */
struct vb_repo *vbd_target_repo(struct vbd_target *t, vb_error *e);
/* Open a format 2 repository at location with the secret of password_file
 * or credential (both NULL: unencrypted; never a terminal); errors are
 * prefixed with what (naming the target; NULL: none), never the secret. */
int vbd_open_v2(const char *location, const char *password_file, const char *credential,
                const char *const *store_opts, const char *what, struct vb2_repo **out,
                vb_error *e);
/* Begin a backup's write session in the target (a worker: it may wait for
 * the store); -EBUSY while a format 1 gc holds the repository. */
int vbd_target_begin(struct vbd_target *t, const struct vbd_vm *vm, struct vb_sink **out,
                     vb_error *e);
/* The same for a files job of a batch: on a format 2 target the jobs of one
 * batch with one dedup group share a session (batch: key -> vb2_write, the
 * caller's table; it unrefs them with vb2_write_unref), so that what one
 * stores the others find at once; format 1 shares through its folder. */
int vbd_target_begin_shared(struct vbd_target *t, const struct vbd_vm *vm, GHashTable *batch,
                            struct vb_sink **out, vb_error *e);
/* Why the target could not be opened, as last logged (g_malloc'd), or NULL. */
char *vbd_target_broken(struct vbd_target *t);
/* 0 when new snapshots can be written (not a read-only file system); else
 * the reason, in the guest's terms. */
int vbd_target_writable(struct vbd_target *t, vb_error *e);
/* A job's claim of the target failed with err: true when the target cannot
 * take backups now (it cannot be opened; its file system is read-only,
 * fails or is full), which fails the job, with what in the guest's terms;
 * false for other causes (its lock cannot be taken), which the job waits out. */
bool vbd_target_cannot_write(struct vbd_target *t, int err, char *what, size_t len);

/* limits.c */
uint64_t vbd_mem_total(const struct vbd *d);
uint64_t vbd_mem_room(const struct vbd_vm *vm);          /* what the VM may still take */
int vbd_mem_take(struct vbd_job *j, enum vbd_mem k, uint64_t n);   /* 0 or -ENOMEM */
void vbd_mem_give(struct vbd_job *j, enum vbd_mem k, uint64_t n);
void vbd_mem_give_all(struct vbd_job *j, enum vbd_mem k);
void vbd_mem_force(struct vbd_vm *vm, enum vbd_mem k, int64_t delta);   /* never refused */
/* "VM x: WHAT would exceed the VM's memory limit on the host (vm_memory = ...)";
 * WHAT is the caller's text, guest bytes in it escaped (vb_escape) */
void vbd_mem_reason(struct vbd_vm *vm, char *out, size_t len, const char *what);
void vbd_mem_fail(struct vbd_job *j, const char *what);   /* fails the job with that reason */
json_object *vbd_mem_json(const struct vbd_vm *vm);

/* snapindex.c */
struct vbd_snapinfo {        /* what LIST and "latest" need of a snapshot */
    char *id;
    int64_t created_ns;
    uint8_t kind, mode;      /* VB_KIND_*, VB_MODE_* */
    uint8_t flags;           /* VB_SNAP_INCOMPLETE: the guest could not back up everything */
    uint64_t files, bytes;
    char *roots;             /* joined by '\n' */
    size_t n_roots;          /* 0: not a files snapshot */
    uint64_t added;          /* repository bytes it added (quota.c: max_total_bytes) */
    struct vb_snap_stamp istamp;   /* of its index.json when it was read */
};
/* snaps: the VM's snapshots in the target, oldest first (valid during the
 * call), or NULL and err (host detail, for the log) when they cannot be
 * listed.  Called from the main loop, always after vbd_snapindex_get has
 * returned. */
typedef void (*vbd_snapindex_cb)(void *opaque, GPtrArray *snaps, const char *err);
void vbd_snapindex_get(struct vbd *d, struct vbd_target *t, const char *vm, vbd_snapindex_cb cb,
                       void *opaque);
void vbd_snapindex_fini(struct vbd *d);
bool vbd_snapinfo_may_hold(const struct vbd_snapinfo *s, const char *path);

/* admin.c */
int vbd_admin_init(struct vbd *d, vb_error *e);
void vbd_admin_fini(struct vbd *d);

#endif
