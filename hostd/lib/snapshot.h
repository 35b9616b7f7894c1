/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Snapshots: snapshots/<vm>/<time>/ holds index.json (json-c: what, when,
 * from where, parent, stats) and a binary chunk index for the data
 * (disk.fidx: fixed-size chunk ids; files snapshots: files.bin).  A snapshot
 * exists once its folder has been renamed into place, after every chunk and
 * file it names is durable.  docs/repository.md.
 */
#ifndef VB_SNAPSHOT_H
#define VB_SNAPSHOT_H

#include <glib.h>
#include <json-c/json.h>
#include <limits.h>

#include "repo.h"

enum vb_snap_type { VB_SNAP_DISK = 1, VB_SNAP_FILES = 2 };

#define VB_FIDX_MAGIC "VBFIDX1"
#define VB_FIDX_HDR   64

struct vb_snapshot {
    char *id;               /* "<vm>/<time>" */
    char *vm;
    enum vb_snap_type type;
    int64_t created_ns;
    char *parent;           /* id or NULL */
    char *group;            /* retention group inside the VM */
    int64_t gc_generation;  /* gc generation it was committed in; -1: not recorded */
    struct vb_idspace space;    /* its chunks' ids: index.json's dedup_group (chunk.h) */
    json_object *json;      /* index.json, owned */
    /* disk snapshots, after vb_snap_load_fidx() */
    uint64_t size;
    uint32_t chunk_size;
    uint64_t n_chunks;
    uint8_t *ids;           /* n_chunks * VB_ID_LEN, zero id = hole */
};

bool vb_snap_valid_id(const char *id);
const char *vb_snap_type_name(enum vb_snap_type t);

/* All snapshots (of one VM if vm != NULL), oldest first.
 * GPtrArray of struct vb_snapshot * with g_ptr_array free func set.
 * For listing: a snapshot that cannot be read is skipped with a warning;
 * a folder that cannot be listed to its end is an error. */
int vb_snap_list(struct vb_repo *r, const char *vm, GPtrArray **out, vb_error *e);

/* Something in snapshots/ that is not a readable snapshot. */
struct vb_snap_problem {
    char *where;             /* snapshot id, or a path relative to the repository */
    char *error;             /* what is wrong, naming it */
};
void vb_snap_problem_free(struct vb_snap_problem *p);

/* For maintenance (gc, prune, verify, stats): like vb_snap_list, but every
 * entry of snapshots/ that is not a readable snapshot or a leftover of an
 * interrupted operation (.tmp-*, .del-*), every folder that cannot be
 * listed to its end, every index.json that is missing, damaged, of an
 * unknown type or names another snapshot, is a problem (*problems, a
 * GPtrArray of struct vb_snap_problem *).  Errors only when snapshots/
 * itself cannot be opened. */
int vb_snap_scan(struct vb_repo *r, const char *vm, GPtrArray **out, GPtrArray **problems,
                 vb_error *e);
int vb_snap_load(struct vb_repo *r, const char *id, struct vb_snapshot **out, vb_error *e);
int vb_snap_load_fidx(struct vb_repo *r, struct vb_snapshot *s, vb_error *e);
void vb_snap_free(struct vb_snapshot *s);
int vb_snap_delete(struct vb_repo *r, const char *id, vb_error *e);

/*
 * What identifies the state of a VM's snapshots: the folder they live in
 * changes (inode, mtime, ctime, links) whenever a snapshot is added or
 * removed, or a backup begins or ends.  A caller that keeps a listing keeps
 * the stamp with it and lists again when the stamp differs, or when it is
 * not settled (changed too recently to tell two changes in one timestamp
 * tick apart).  A VM without snapshots has exists = false.
 */
struct vb_snap_stamp {
    bool exists;
    uint64_t ino, nlink;
    int64_t mtime_ns, ctime_ns;
    bool settled;            /* ctime at least 2 s before the stamp was taken */
};
int vb_snap_stamp(struct vb_repo *r, const char *vm, struct vb_snap_stamp *out, vb_error *e);
/* The same of one snapshot's index.json (VM/TIME): an index edited in place
 * (by hand, or by someone who tampers with the repository) changes it, the
 * VM's folder does not. */
int vb_snap_index_stamp(struct vb_repo *r, const char *id, struct vb_snap_stamp *out,
                        vb_error *e);
bool vb_snap_stamp_equal(const struct vb_snap_stamp *a, const struct vb_snap_stamp *b);

/* Writing a snapshot */
struct vb_snap_writer {
    struct vb_repo *r;
    char vm[72];
    char tmpdir[PATH_MAX];   /* relative to the repository */
    int64_t created_ns;
    bool open;
    GMutex *gate;            /* optional: held around the commit point (rename) */
    const bool *cancel;      /* optional: read under gate; true refuses the commit */
    char warning[400];       /* after a commit: what went wrong after the commit point */
};

int vb_snap_begin(struct vb_repo *r, const char *vm, struct vb_snap_writer *w, vb_error *e);
int vb_snap_write_file(struct vb_snap_writer *w, const char *name, const void *data,
                       size_t len, uint8_t sha256[32], vb_error *e);
/* Adds id, vm, created to index; makes it all durable and visible.
 * *id_out (malloc'd) gets the new snapshot id.  Every failure (an fsync
 * too) comes before the commit point (the folder's rename); once the
 * snapshot exists the commit succeeds, and what went wrong after that
 * point (the last fsync) is in w->warning. */
int vb_snap_commit(struct vb_snap_writer *w, json_object *index, char **id_out, vb_error *e);
void vb_snap_abort(struct vb_snap_writer *w);

/* Build the bytes of a disk.fidx. */
uint8_t *vb_fidx_build(uint64_t size, uint32_t chunk_size, uint64_t n_chunks,
                       const uint8_t *ids, size_t *len);

/* json helpers */
const char *vb_json_str(json_object *o, const char *key);
int64_t vb_json_int(json_object *o, const char *key, int64_t dflt);

#endif
