/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The repository: a folder holding a content-addressed chunk store shared
 * by every VM and snapshot, and the snapshots' manifests.
 *
 *   vbackup-repo.json          format marker and settings
 *   lock                       flock: shared for writers/readers, exclusive for gc
 *   gc.json                    the gc generation (moved on by every gc that may delete)
 *   chunks/ab/<sha256 hex>     one chunk (chunk.h), fan-out by the first 2 hex digits
 *   snapshots/<vm>/<time>/     one snapshot: index.json (+ disk.fidx or files.bin)
 *
 * See docs/repository.md.
 */
#ifndef VB_REPO_H
#define VB_REPO_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "chunk.h"
#include "util.h"

#define VB_REPO_FORMAT      1
#define VB_DISK_CHUNK       (4u << 20)
#define VB_FANOUT           2          /* hex digits of the chunk folders: chunks/ab/ */

enum vb_lock { VB_LOCK_NONE = 0, VB_LOCK_SHARED = 1, VB_LOCK_EXCLUSIVE = 2 };

struct vb_repo {
    char *path;
    int dirfd;
    int chunks_fd;       /* chunks/ */
    int lock_fd;
    int level;           /* zstd level for new chunks */
    bool quiet;          /* no "waiting for lock" message */
};

/*
 * Paths inside a repository are opened beneath its folder and never through
 * a symlink (openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, or one
 * O_NOFOLLOW step per component where the kernel lacks openat2): a
 * repository holds no symlinks, and one planted in place of a folder or a
 * file (snapshots/, chunks/ab, lock) fails with -ELOOP instead of leading
 * reads or writes elsewhere.  REL is relative to DIRFD (the repository's
 * folder, or one opened this way); O_CLOEXEC and O_NOFOLLOW are added.
 * Returns an fd or -errno.
 */
int vb_repo_openat(int dirfd, const char *rel, int flags, mode_t mode);
/* A whole file beneath DIRFD, read as vb_read_file does; messages name it
 * as "<repository>/REL". */
int vb_repo_read(struct vb_repo *r, int dirfd, const char *rel, char **data, size_t *len,
                 size_t max, vb_error *e);
/* strerror for the repository: a symlink is named as what it is. */
const char *vb_repo_strerror(int err);

int vb_repo_init(const char *path, int level, vb_error *e);
int vb_repo_open(const char *path, enum vb_lock lock, bool quiet, struct vb_repo **out,
                 vb_error *e);
void vb_repo_close(struct vb_repo *r);

/*
 * A shared claim on the repository: gc (exclusive) waits until every claim
 * is released, and a claim waits for a running gc (wait) or fails with
 * -EBUSY (!wait).  Readers that must not see chunks vanish (restores) hold
 * one; writers get theirs through a write session (session.h), never here.
 */
struct vb_claim;
int vb_repo_claim(struct vb_repo *r, bool wait, struct vb_claim **out, vb_error *e);
void vb_repo_release(struct vb_claim *c);
/* The exclusive claim a gc needs, without waiting: -EBUSY while anyone
 * holds a claim (a backup's session, a restore, another gc). */
int vb_repo_claim_exclusive(struct vb_repo *r, struct vb_claim **out, vb_error *e);

/*
 * The gc generation: a counter in gc.json that each gc which may delete
 * chunks, and each repair that found damage, moves on, under the exclusive
 * lock, before it deletes or moves anything.
 * Knowledge that a chunk exists is valid only in the generation in which it
 * was gained (docs/repository.md, "Claims and knowledge").  0 before the
 * first gc.
 */
int vb_repo_gc_generation(struct vb_repo *r, uint64_t *gen, vb_error *e);
int vb_repo_gc_advance(struct vb_repo *r, uint64_t *gen, vb_error *e);
/* Write gen as the generation (durably); for a repair of a damaged gc.json,
 * under the exclusive lock.  It must exceed every generation recorded. */
int vb_repo_gc_set(struct vb_repo *r, uint64_t gen, vb_error *e);

/* Chunk store (thread-safe).  Writers store chunks through a write session
 * (session.h), which alone calls has/put. */
void vb_repo_chunk_relpath(const uint8_t id[VB_ID_LEN], char out[80]);
bool vb_repo_has_chunk(struct vb_repo *r, const uint8_t id[VB_ID_LEN]);
/* Store an encoded chunk under its id unless it exists; *added tells. */
int vb_repo_put_chunk(struct vb_repo *r, const uint8_t id[VB_ID_LEN], const uint8_t *enc,
                      size_t enc_len, bool *added, vb_error *e);
/* Move a damaged chunk out of the store, beside it as <id>.bad (.bad-2, ...):
 * kept for inspection, and its id is missing from now on, so the next
 * backup with its data stores it again.  name gets "chunks/ab/<id>.bad". */
int vb_repo_set_aside_chunk(struct vb_repo *r, const uint8_t id[VB_ID_LEN], char *name,
                            size_t name_len, vb_error *e);
/* Read the encoded bytes of a chunk (malloc'd into *buf / *cap reuse). */
int vb_repo_read_chunk(struct vb_repo *r, const uint8_t id[VB_ID_LEN], uint8_t **buf,
                       size_t *cap, size_t *len, vb_error *e);
/* Read, check and decode a chunk into out: id must be its data's id in space
 * sp (the snapshot's dedup group, struct vb_snapshot's space; NULL: the
 * default space). */
int vb_repo_get_chunk(struct vb_repo *r, struct vb_codec *c, const struct vb_idspace *sp,
                      const uint8_t id[VB_ID_LEN], void *out, size_t cap, size_t *plain_len,
                      vb_error *e);
/* Make everything written so far durable (syncfs of the repository). */
int vb_repo_sync(struct vb_repo *r, vb_error *e);

#endif
