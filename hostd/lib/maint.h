/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Repository maintenance: verify, prune, gc, stats. */
#ifndef VB_MAINT_H
#define VB_MAINT_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#include "repo.h"
#include "retention.h"
#include "snapshot.h"

struct vb_chunk_ref {
    uint8_t id[VB_ID_LEN];
    uint32_t len;            /* plain length */
};

/* Every chunk a snapshot references (with repeats), as struct vb_chunk_ref. */
int vb_snap_chunks(struct vb_repo *r, struct vb_snapshot *s, GArray *out, vb_error *e);

struct vb_verify_result {
    uint64_t snapshots, snapshots_bad, chunks, chunks_bad, bytes;
    json_object *report;     /* {"damaged_chunks":[{id, error, snapshots:[]}], "damaged_snapshots":[...]} */
};

int vb_verify(struct vb_repo *r, const char *snapshot, int threads, bool progress,
              struct vb_verify_result *res, vb_error *e);

struct vb_prune_opts {
    const char *vm;
    struct vb_retention policy;   /* retention.h */
    bool dry_run;
};

/* Returns a json array of {id, keep: bool, reasons: [...]} (caller frees). */
int vb_prune(struct vb_repo *r, const struct vb_prune_opts *o, json_object **plan, vb_error *e);

struct vb_gc_result {
    uint64_t chunks_kept, chunks_removed, bytes_removed, temp_removed;
    uint64_t generation;     /* the gc generation from now on (repo.h) */
};

/* Fail-safe: removes nothing, naming the cause, unless every snapshot was
 * read completely and every chunk folder listed to its end. */
int vb_gc(struct vb_repo *r, bool dry_run, struct vb_gc_result *res, vb_error *e);

struct vb_stats {
    uint64_t snapshots, disk_snapshots, files_snapshots;
    uint64_t virtual_bytes;  /* sum of disk sizes / file sizes */
    uint64_t logical_bytes;  /* sum over snapshots of referenced chunk bytes */
    uint64_t unique_bytes;   /* plain bytes of distinct chunks */
    uint64_t stored_bytes;   /* bytes of chunk files on disk */
    uint64_t chunks;         /* distinct chunks referenced */
    uint64_t chunk_files;    /* chunk files in the store */
};

int vb_stats(struct vb_repo *r, struct vb_stats *st, vb_error *e);

#endif
