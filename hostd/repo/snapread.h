/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Reading snapshots, and nothing else: the one door through which instant
 * access (the NBD export, the FUSE mount), the restores and the copy into
 * another repository (copy.h) reach a repository.  A disk snapshot is a
 * size, a chunk size and a chunk id (or a hole) per index; a files snapshot
 * is its catalog; a chunk is read by its id into a buffer.  Everything here
 * is thread-safe once opened, and any number of chunk reads may be in
 * flight.  Either repository format: version 1 through its library
 * (vb_snap_load, vb_snap_load_fidx, vb_files_catalog, vb_repo_get_chunk),
 * version 2 through its door (repo2.h); a snapshot's "space" is its dedup
 * group in both.  Callers need not know which (a copy records it:
 * vb_sr_format).
 */
#ifndef VB_SNAPREAD_H
#define VB_SNAPREAD_H

#include <glib.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#include "catalog.h"
#include "chunk.h"
#include "util.h"

enum vb_sr_kind { VB_SR_DISK = 1, VB_SR_FILES = 2 };

/* A repository opened for reading snapshots.  Version 1: it holds a read
 * claim for as long as it is open: no chunk a snapshot references can be
 * removed (gc waits) while it is; wait: wait for a running gc, or fail with
 * -EBUSY.  Version 2: gc keeps what manifests reference and readers find
 * blobs it moved (wait is ignored); a snapshot forgotten while it is read
 * fails its reads, naming what is missing. */
struct vb_sr;
int vb_sr_open(const char *path, bool wait, struct vb_sr **out, vb_error *e);
/* The same, with the secret of an encrypted version 2 repository from
 * key_file or password_file (NULL: $VBACKUP_PASSWORD_FILE's, or a terminal:
 * vb2_repo_open_asking). */
int vb_sr_open_secret(const char *path, bool wait, const char *password_file,
                      const char *key_file, struct vb_sr **out, vb_error *e);
/* The same with a version 2 store's options (vb2_open_opts.store_opts). */
int vb_sr_open_opts(const char *path, bool wait, const char *password_file,
                    const char *key_file, const char *const *store_opts, struct vb_sr **out,
                    vb_error *e);
/* The same over a repository the caller opened and keeps open (a daemon's
 * target): exactly one of r1 and r2.  Version 1: a claim is taken on r1
 * (wait as above) and held until vb_sr_close, which closes neither. */
struct vb_repo;
struct vb2_repo;
int vb_sr_over(struct vb_repo *r1, struct vb2_repo *r2, bool wait, struct vb_sr **out,
               vb_error *e);
void vb_sr_close(struct vb_sr *r);
/* The repository's format (1 or 2), and for version 2 its id (32 hex,
 * vb2_repo_info; NULL for version 1): a copy refuses to copy a repository
 * into itself, however each side spelled its location. */
int vb_sr_format(const struct vb_sr *r);
const char *vb_sr_repo_id(const struct vb_sr *r);

/* What a listing tells about one snapshot. */
struct vb_sr_info {
    char *id;                /* "<vm>/<time>" */
    char *vm;
    const char *time;        /* the part of id after the '/' */
    enum vb_sr_kind kind;
    int64_t created_ns;
    char *disk;              /* disk snapshots: the disk's name (its serial); else NULL */
    uint64_t size;           /* disk snapshots: the virtual size; files: bytes of regular files */
    /* What a copy into another repository keeps (copy.h), as each format
     * records it.  Version 1 keeps its own members in index.json (the
     * image's chain, the plan, what was incomplete): they are not carried,
     * and its source and notes are empty. */
    char *group;             /* the retention group inside the VM ("" when none); version 1:
                              * bytes a guest may have chosen, version 2: text */
    char *mode;              /* "full", "incremental"...; NULL when not recorded */
    char *parent;            /* the snapshot it was made on, or NULL */
    char *dedup_group;       /* its chunks' dedup group; NULL: the repository's */
    char **roots;            /* files snapshots: the folders backed up, as text */
    size_t nroots;
    json_object *source;     /* objects, never NULL (owned): the manifest's members of */
    json_object *notes;      /* these names; stats: names -> numbers, unchecked for */
    json_object *stats;      /* version 1 */
};
void vb_sr_info_free(struct vb_sr_info *i);
/* A copy owning its own members (vb_sr_info_free). */
struct vb_sr_info *vb_sr_info_dup(const struct vb_sr_info *i);

/* Every snapshot (of vm, when not NULL), oldest first: a GPtrArray of
 * struct vb_sr_info * that frees them.  A snapshot that cannot be read is
 * left out; a folder that cannot be listed to its end is an error. */
int vb_sr_list(struct vb_sr *r, const char *vm, GPtrArray **out, vb_error *e);
/* What the listing tells about one snapshot (*out: vb_sr_info_free), without
 * reading its index: a disk's size is index.json's for version 1 (the one
 * vb_sr_snap_info gives is the checked index's).  An id of the wrong shape
 * is -EINVAL, a missing snapshot -ENOENT. */
int vb_sr_stat(struct vb_sr *r, const char *id, struct vb_sr_info **out, vb_error *e);

/* One snapshot, opened with its index checked (the chunk list of a disk,
 * the catalog of files).  An id of the wrong shape is -EINVAL, a missing
 * snapshot -ENOENT. */
struct vb_sr_snap;
int vb_sr_snap_open(struct vb_sr *r, const char *id, struct vb_sr_snap **out, vb_error *e);
void vb_sr_snap_close(struct vb_sr_snap *s);
const struct vb_sr_info *vb_sr_snap_info(const struct vb_sr_snap *s);

/* Disk snapshots: chunk i covers [i * chunk_size, min(size, (i + 1) * chunk_size)). */
uint64_t vb_sr_disk_size(const struct vb_sr_snap *s);
uint32_t vb_sr_disk_chunk_size(const struct vb_sr_snap *s);
uint64_t vb_sr_disk_chunks(const struct vb_sr_snap *s);
/* The id of chunk i, or NULL when it is a hole (reads as zeros). */
const uint8_t *vb_sr_disk_chunk(const struct vb_sr_snap *s, uint64_t i);

/* Files snapshots: the catalog, checked (catalog.h); owned by the snapshot. */
const struct vb_catalog *vb_sr_files_catalog(const struct vb_sr_snap *s);

/* Read, check and decode the chunk id (in space sp: vb_sr_snap_space of its
 * snapshot) into buf, which must receive exactly len bytes (the length the
 * snapshot's index gives it): a chunk of another length is -EBADMSG.
 * Thread-safe. */
int vb_sr_read_chunk(struct vb_sr *r, const struct vb_idspace *sp, const uint8_t id[VB_ID_LEN],
                     void *buf, size_t len, vb_error *e);
/* Called once per chunk of vb_sr_read_chunks, from a reading thread (several
 * at once): data holds exactly the length asked for, checked as
 * vb_sr_read_chunk checks it; or err (negative) and e naming the chunk. */
typedef void (*vb_sr_got_fn)(void *opaque, size_t i, const uint8_t *data, size_t len,
                             int err, const vb_error *e);
/*
 * n chunks at once (ids: n * VB_ID_LEN bytes, duplicates allowed; lens[i]:
 * the length the snapshot's index gives chunk i), each checked as
 * vb_sr_read_chunk checks it, in no particular order.  Version 2 groups them
 * by pack and fetches the blobs of one pack that lie near each other with one
 * range get, several packs at once (vb2_get_many); version 1 reads them one
 * after the other.  Returns 0 when every chunk was delivered, else the first
 * error (the other chunks are still delivered).  The caller bounds the
 * memory: n chunks are read before the call returns.
 */
int vb_sr_read_chunks(struct vb_sr *r, const struct vb_idspace *sp, const uint8_t *ids,
                      const uint32_t *lens, size_t n, vb_sr_got_fn fn, void *opaque,
                      vb_error *e);
/* Whether a reader of many chunks should give vb_sr_read_chunks many at
 * once: a version 2 repository on a store whose requests cost (object
 * storage), not one in a local folder (a get is a pread there, and chunk by
 * chunk keeps every reading thread decoding) nor version 1 (a file per
 * chunk). */
bool vb_sr_batches(const struct vb_sr *r);
/* The id space of a snapshot's chunks (its dedup group's). */
const struct vb_idspace *vb_sr_snap_space(const struct vb_sr_snap *s);

#endif
