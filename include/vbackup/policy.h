/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vbackup optimizer policy plugins, API version 1.
 *
 * vbackupd cuts the instructions of all VMs into batches and hands each
 * batch, with its read plan and a snapshot of host load, through a chain of
 * policies loaded from shared objects.  A policy may rewrite the plan (merge
 * and coalesce reads), defer jobs, and cap the batch's read bandwidth.
 *
 * The ABI follows nbdkit's plugin ABI: the plugin struct starts with its own
 * size and the API version, fields are only ever appended, and one macro
 * (VBP_REGISTER) defines the single exported entry point.  The loader copies
 * min(sizes) into a zeroed struct, rejects other API versions and missing
 * required callbacks.  Plugins are configured with key=value pairs and must
 * reject keys they do not know.
 *
 * Memory: everything in a batch belongs to vbackupd and lives until the
 * batch is executed.  A policy that builds a new read array allocates it
 * with batch->alloc() and stores it in batch->reads / batch->n_reads.
 *
 * docs/policies.md describes the shipped policies.
 */
#ifndef VBACKUP_POLICY_H
#define VBACKUP_POLICY_H

#include <stddef.h>
#include <stdint.h>

#define VBP_API_VERSION 1

/* A host file some read of the batch targets. */
struct vbp_file {
    const char *path;
    uint64_t dev;                /* st_dev and st_ino: the file's identity */
    uint64_t ino;
    uint64_t size;
};

/* Who needs which bytes of a read. */
struct vbp_consumer {
    uint64_t job;                /* vbp_job.id */
    uint64_t token;              /* opaque to policies: where the bytes go */
    uint64_t offset;             /* offset of the consumer's bytes within the read */
    uint64_t length;
};

#define VBP_READ_COMPRESSED 1u   /* a compressed qcow2 cluster (informational) */

/* One read of host bytes: [offset, offset + length) of files[file]. */
struct vbp_read {
    uint32_t file;               /* index into batch->files */
    uint32_t flags;              /* VBP_READ_* */
    uint64_t offset;
    uint64_t length;
    uint32_t n_consumers;
    uint32_t reserved;
    struct vbp_consumer *consumers;
};

enum vbp_kind { VBP_KIND_FILES = 1, VBP_KIND_DISK = 2, VBP_KIND_RESTORE = 3 };

struct vbp_job {
    uint64_t id;
    const char *vm;
    uint32_t kind;               /* vbp_kind */
    uint32_t mode;               /* VB_MODE_* of proto.h */
    uint64_t bytes;              /* bytes the job will read */
    int64_t sealed_ns;           /* when the job was sealed (CLOCK_REALTIME) */
    int64_t first_deferred_ns;   /* when a policy first deferred it, 0 if never */
    /* written by policies */
    int64_t defer_until_ns;      /* > now: the job does not run in this batch */
    char defer_reason[160];
};

/* Host load (Linux PSI, /proc/pressure), read when the batch is cut. */
struct vbp_load {
    double io_some_avg10, io_full_avg10;
    double cpu_some_avg10;
    double mem_some_avg10, mem_full_avg10;
    int64_t now_ns;              /* CLOCK_REALTIME */
    int local_wday;              /* 0 = Sunday */
    int local_minute_of_day;     /* 0 .. 1439 */
};

struct vbp_batch {
    uint64_t id;
    uint32_t n_jobs;
    struct vbp_job *jobs;
    uint32_t n_files;
    const struct vbp_file *files;
    uint32_t n_reads;            /* the plan; policies may replace it */
    struct vbp_read *reads;
    struct vbp_load load;
    uint64_t max_read_bytes;     /* largest single read the executor wants */
    uint64_t rate_limit_bps;     /* written by policies: 0 = no limit */

    /* services of vbackupd */
    void *(*alloc)(struct vbp_batch *b, size_t size);      /* zeroed, freed with the batch */
    void (*note)(struct vbp_batch *b, const char *policy, uint64_t job,
                 const char *fmt, ...) __attribute__((format(printf, 4, 5)));
                 /* a line in the plan report (job 0: the whole batch) */
    void *daemon;                /* private to vbackupd */
};

struct vbp_plugin {
    /* filled by VBP_REGISTER */
    uint32_t struct_size;
    uint32_t api_version;

    /* required */
    const char *name;
    int (*optimize)(void *state, struct vbp_batch *batch);   /* 0 or -errno */

    /* optional */
    const char *description;
    const char *config_help;     /* "key=value: meaning" lines */
    void *(*create)(void);       /* instance state; NULL on failure */
    /* 0, or -EINVAL for an unknown key or a bad value (with a message in err) */
    int (*config)(void *state, const char *key, const char *value,
                  char *err, size_t err_len);
    int (*config_complete)(void *state, char *err, size_t err_len);
    void (*destroy)(void *state);
};

#define VBP_ENTRY_POINT "vbp_plugin_init"

#define VBP_REGISTER(plugin)                                             \
    const struct vbp_plugin *vbp_plugin_init(void);                      \
    __attribute__((visibility("default")))                               \
    const struct vbp_plugin *vbp_plugin_init(void)                       \
    {                                                                    \
        (plugin).struct_size = sizeof(plugin);                           \
        (plugin).api_version = VBP_API_VERSION;                          \
        return &(plugin);                                                \
    }

#endif /* VBACKUP_POLICY_H */
