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
 *   admin.c    the admin socket (vbackupctl vms, jobs, job ID)
 */
#ifndef VBACKUPD_H
#define VBACKUPD_H

#include <glib.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#include "catalog.h"
#include "fastcdc.h"
#include "image.h"
#include "policyload.h"
#include "repo.h"
#include "session.h"
#include "snapshot.h"
#include "uring.h"
#include "util.h"
#include "vbackup/policy.h"
#include "vbackup/proto.h"
#include "workers.h"

#define VBD_VERSION "0.1.0"

/* ---- configuration -------------------------------------------------------- */

struct vbd_disk_cfg {
    char *serial;
    char *image;
    char *format;            /* "raw" or "qcow2": required, never probed */
    char *backing_format;    /* NULL, or the format of backing files whose overlay names none */
    char *target;            /* libvirt: the disk's target ("vda") */
};

struct vbd_vm_cfg {
    char *name;
    char *socket;
    char *qmp;               /* optional */
    char *libvirt;           /* found through libvirt: the domain's name */
    GPtrArray *disks;        /* struct vbd_disk_cfg * */
};

struct vbd_target_cfg {
    char *name;
    char *repository;
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
    char *mapper;            /* vbackup-mapper; "" = the host never maps files */
    char *mapper_user;       /* its sandbox's user */
    uid_t mapper_uid;
    gid_t mapper_gid;
    uint64_t mapper_memory;  /* RLIMIT_AS */
    unsigned mapper_seconds; /* wall-clock bound (and RLIMIT_CPU) */
    unsigned max_mappers;    /* mappers running at once */
    char *libvirt_uri;       /* [libvirt] uri: discover VMs from libvirt */
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

struct vbd_target {
    char *name;
    char *path;
    struct vb_repo *repo;    /* opened without a lock; jobs claim it (session.h, repo.h) */
};

struct vbd_disk {
    char *serial;
    char *image;
    char *format;            /* as configured: never probed */
    char *backing_format;
    char *target;            /* libvirt's target name */
    struct vb_image *img;    /* opened on demand, per job run */
};

struct vbd_vm {
    int refs;
    struct vbd *d;
    char *name;
    char *socket_path;
    char *qmp;
    char *libvirt;           /* domain name when the VM came from libvirt */
    GPtrArray *disks;        /* struct vbd_disk * */
    int listen_fd;
    guint listen_src;
    GList *conns;            /* struct vbd_conn * */
    bool removed;            /* gone from the configuration */
    uint64_t requests, errors;
};

struct vbd_conn {
    struct vbd_vm *vm;
    int fd;
    guint in_src, out_src;
    uint8_t *in;             /* partial frame */
    size_t in_len, in_cap;
    GQueue out;              /* GBytes * of whole frames */
    size_t out_off;          /* bytes of the head already written */
    unsigned inflight;       /* requests without a reply yet */
    bool closing;
    bool paused;             /* not reading: too many requests in flight */
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
    struct vb_write *ws;     /* the job's write session, referenced while with a worker */
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
    vb_error e;
    GArray *chunks;          /* struct vb_cat_chunk */
    uint64_t bytes_new, bytes_reused, stored;
    struct vbd_req *reply;   /* fallback DATA: answered once processed */
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
    void *view_op;           /* qmp.c: the snapshot to commit back */
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
    bool cancel;
    volatile int cancel_flag;    /* disk jobs: read by the backup thread */
    bool plan_released;      /* released from its plan (once) */
    bool in_plan;            /* windows, pieces and images are in use by a plan */
    bool committing;         /* commit task with a worker */
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
    struct vb_write *ws;
    bool claim_waiting;      /* fallback data waits while gc holds the repository */
    struct vb_claim *claim;  /* restore jobs */
    struct vb_catalog *parent_cat;
    bool parent_current;     /* parent committed in this gc generation: its chunks exist */
    /* disk jobs */
    GThread *disk_thread;
    volatile uint64_t disk_done, disk_total;
    /* restore jobs */
    struct vb_catalog *cat;
    struct vb_snapshot *snap;
    GArray *sel;             /* uint64 entry indices */
    uint64_t cache_chunk[2];
    uint8_t *cache_buf[2];
    uint32_t cache_len[2];
    unsigned cache_next;
    GHashTable *inflight;    /* catalog chunk index → decode task */
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
    unsigned n_bufs, max_bufs;
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
};

/* main.c */
extern struct vbd *vbd_global;
void vbd_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

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
void vbd_job_finish_ok(struct vbd_job *j);
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
int vbd_job_claim(struct vbd_job *j, vb_error *e);
void vbd_job_unclaim(struct vbd_job *j);
void vbd_job_unclaim_idle(struct vbd_job *j);
void vbd_disk_job_start(struct vbd_job *j);
uint8_t *vbd_buf_get(struct vbd *d);
void vbd_buf_put(struct vbd *d, uint8_t *b);
void vbd_count_read(struct vbd *d, const char *path, uint64_t n);

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

/* journal.c */
void vbd_journal_running(struct vbd_job *j);
void vbd_journal_forget(struct vbd_job *j);
void vbd_journal_recover(struct vbd *d);
bool vbd_job_hurried(const struct vbd_job *j);

/* qmp.c */
void vbd_view_take(struct vbd_job *j, struct vbd_req *reply);
gboolean vbd_view_taken(gpointer opaque);
void vbd_view_release(struct vbd_job *j);
gboolean vbd_view_released(gpointer opaque);
json_object *vbd_view_json(struct vbd_job *j);
void vbd_view_recover(struct vbd_job *j, json_object *view);
void vbd_seal_done(struct vbd_job *j, struct vbd_req *reply);

/* libvirt.c */
int vbd_libvirt_start(struct vbd *d, vb_error *e);
void vbd_libvirt_stop(struct vbd *d);
int vbd_libvirt_snapshot(const char *uri, const char *domain, GPtrArray *targets,
                         GPtrArray *overlays, vb_error *e);
int vbd_libvirt_commit(const char *uri, const char *domain, const char *target,
                       const char *overlay, vb_error *e);

/* restore.c */
void vbd_handle_restore(struct vbd_conn *c, const struct vb_hdr *h, const uint8_t *p, size_t n);
void vbd_restore_close(struct vbd_job *j);

/* admin.c */
int vbd_admin_init(struct vbd *d, vb_error *e);
void vbd_admin_fini(struct vbd *d);

#endif
