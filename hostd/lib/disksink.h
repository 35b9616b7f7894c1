/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Where a disk backup goes: a small table over a write session of either
 * repository format, so that one disk backup engine (diskbackup.c) serves
 * both.  (Restores read through the snapshot door, hostd/repo/snapread.h.)
 *
 *   vb_disk_sink_v1   version 1 (session.h, snapshot.h), disksink1.c
 *   vb2_disk_sink     version 2 (hostd/repo/disksink2.h)
 *
 * The engine asks the sink for the disk's earlier backups (to name a parent,
 * or to take a changed-block tracking basis), stores chunks through it, and
 * hands it the finished chunk list and description to commit; it never
 * knows how the repository stores any of it.
 */
#ifndef VB_DISKSINK_H
#define VB_DISKSINK_H

#include <glib.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#include "chunk.h"
#include "util.h"

/* An earlier disk snapshot as the engine sees it. */
struct vb_disk_prior {
    char *id;
    char *vm;
    char *group;             /* "disk:NAME" */
    bool full;               /* mode "full", or none recorded */
    bool same_space;         /* its chunk ids are in the session's id space */
    char *dedup_group;       /* its dedup group, NULL when none */
    char *space_name;        /* its dedup group ("(none)" when none), for messages */
    /* after load: */
    uint64_t size;
    uint32_t chunk_size;
    uint64_t n_chunks;
    uint8_t *ids;            /* n_chunks * 32; a zero id is a hole */
    bool known;              /* its chunks are known to exist without a lookup */
};

/* What a finished backup commits. */
struct vb_disk_commit {
    const char *group;       /* "disk:NAME" */
    const char *mode;        /* "full", "incremental", "differential" */
    const char *parent;      /* or NULL */
    uint64_t size;
    uint32_t chunk_size;
    uint64_t n_chunks;
    const uint8_t *ids;      /* n_chunks * 32 */
    uint64_t data_chunks;    /* ids that are not holes */
    json_object *source;     /* borrowed: the image and its chain */
    json_object *tracking;   /* borrowed: how the backup knew what to read */
    json_object *stats;      /* borrowed: names -> non-negative numbers ("seconds" a double) */
};

struct vb_disk_sink_ops {
    /* 1: stored now (*stored: bytes added), 0: exists, < 0: failed (fails the session) */
    int (*put)(void *h, struct vb_codec *c, const void *data, size_t len, uint8_t id[32],
               uint32_t *stored, vb_error *e);
    /* whether a chunk exists for this session (found now: then known) */
    bool (*has)(void *h, const uint8_t id[32]);
    /* the disk snapshots of vm, oldest first (GPtrArray of struct vb_disk_prior
     * freeing them, without ids); none is not an error */
    int (*list)(void *h, const char *vm, GPtrArray **out, vb_error *e);
    /* one snapshot with its chunk ids; -EMEDIUMTYPE when it is not a disk snapshot */
    int (*load)(void *h, const char *id, struct vb_disk_prior **out, vb_error *e);
    /* the plain bytes of a chunk of p (same_space) into buf (cap bytes) */
    int (*get)(void *h, struct vb_codec *c, const struct vb_disk_prior *p, const uint8_t id[32],
               void *buf, size_t cap, size_t *plain, vb_error *e);
    /* optional: p's chunks are known to exist (p->known); remember them */
    void (*inherit)(void *h, const struct vb_disk_prior *p);
    /* commit: the snapshot becomes visible; *id (malloc'd) names it */
    int (*commit)(void *h, const struct vb_disk_commit *d, char **id, vb_error *e);
    /* end without a snapshot (a no-op after a commit) */
    void (*abort)(void *h);
};

struct vb_disk_sink {
    const struct vb_disk_sink_ops *ops;
    void *h;
    char *location;          /* the repository as tracking records name it, or NULL */
    char *space_name;        /* the session's dedup group, "(none)" when none */
    uint32_t chunk_size;     /* fixed chunk size of disks */
    int zstd_level;          /* for the workers' codecs (a v2 session sets its own) */
};

void vb_disk_prior_free(struct vb_disk_prior *p);
/* Free what the sink owns (location, space_name); the session is the caller's. */
void vb_disk_sink_clear(struct vb_disk_sink *s);

struct vb_write;
/* A sink over a version 1 write session (the caller keeps its reference;
 * the sink holds none): location is the repository's real path. */
void vb_disk_sink_v1(struct vb_write *ws, struct vb_disk_sink *out);
struct vb_disk_backup_opts;
struct vb_disk_stats;
/* vb_disk_backup (diskbackup.h) through a sink over ws. */
int vb_disk_backup_v1(struct vb_write *ws, const struct vb_disk_backup_opts *o,
                      struct vb_disk_stats *st, char **snap_id, vb_error *e);

#endif
