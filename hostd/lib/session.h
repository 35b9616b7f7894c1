/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The write session: the one way into a repository for every backup
 * (vbackupctl backup-disk, vbackupd's file and disk jobs).
 *
 *   vb_write_begin   takes a shared claim on the repository (gc waits for
 *                    it), reads the gc generation, and makes the snapshot's
 *                    temporary folder
 *   vb_write_put     stores a chunk unless this session knows it exists
 *                    (thread-safe)
 *   vb_write_file    a file of the snapshot being made (index, catalog)
 *   vb_write_commit  makes the chunks durable and the snapshot visible
 *   vb_write_abort   removes what the snapshot had; chunks stay for gc
 *
 * The claim lasts from begin until the session ends (commit or abort) and
 * no put is still running, so gc never sees a chunk that a session has
 * stored, or found to exist, and is about to reference.
 *
 * What the session knows about chunks is its own: ids it stored, or found
 * in the repository, or inherited from a snapshot committed in the same gc
 * generation.  It is never shared with another session, and never survives
 * a gc.  docs/repository.md, "Claims and knowledge".
 *
 * A session is reference counted: workers that put chunks hold a reference
 * (vb_write_ref), so that the owner can abort at any time (a cancel, a
 * shutdown) while puts are still running; the last vb_write_unref frees it
 * (and aborts it if it never ended).
 */
#ifndef VB_SESSION_H
#define VB_SESSION_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#include "chunk.h"
#include "repo.h"
#include "snapshot.h"

struct vb_write;

#define VB_WRITE_NOWAIT 1u   /* -EBUSY instead of waiting while gc runs */

/* group: the dedup group whose id space the session's chunks are named in
 * (chunk.h, struct vb_idspace; NULL or "": the default space), recorded in
 * its snapshot as dedup_group. */
int vb_write_begin(struct vb_repo *r, const char *vm, const char *group, unsigned flags,
                   struct vb_write **out, vb_error *e);
/* The session's id space. */
const struct vb_idspace *vb_write_space(const struct vb_write *w);
/* Whether snapshot s names its chunks in the session's id space: only then may
 * the session take chunk ids from it (a parent's unchanged files, a basis). */
bool vb_write_same_space(const struct vb_write *w, const struct vb_snapshot *s);
struct vb_write *vb_write_ref(struct vb_write *w);
void vb_write_unref(struct vb_write *w);

struct vb_repo *vb_write_repo(struct vb_write *w);
uint64_t vb_write_generation(const struct vb_write *w);
/* The session's unique name (32 hex digits), recorded as "session" in the
 * index.json of the snapshot it commits: who began a session and died can
 * find out afterwards whether it committed. */
const char *vb_write_token(const struct vb_write *w);
/* The VM the session backs up. */
const char *vb_write_vm(const struct vb_write *w);
/* After a commit: what went wrong after the commit point (a failed fsync
 * of the folder), or NULL.  The snapshot exists either way. */
const char *vb_write_warning(const struct vb_write *w);

/*
 * What the session adds to the repository, and a budget for it.  Before a
 * put writes a new chunk (its encoded bytes) or the session writes a file,
 * charge(opaque, bytes, e) is called on the writing thread; a negative
 * errno (e.g. -EDQUOT, with the reason in e) refuses the write, which fails
 * the put or the file and with it the session.  Bytes charged for a chunk
 * that was not added after all (a concurrent writer was first, the write
 * failed) are given back: charge(opaque, -bytes).  release(opaque) runs
 * when the session is freed.  Set it before the first put.
 */
typedef int (*vb_write_charge_fn)(void *opaque, int64_t bytes, vb_error *e);
void vb_write_set_charge(struct vb_write *w, vb_write_charge_fn charge, void *opaque,
                         void (*release)(void *opaque));
/* Bytes the session added: chunks it stored and files of its snapshot.  The
 * commit records them in index.json ("added_bytes"). */
uint64_t vb_write_added(struct vb_write *w);

/*
 * Store data (len bytes, not all zero) as a chunk; id gets its id.  Returns
 * 1 when this call stored it (*stored: bytes written), 0 when it exists
 * already, or a negative errno.  -ECANCELED once the session has ended.
 * A failed put fails the session: its commit is refused.
 */
int vb_write_put(struct vb_write *w, struct vb_codec *c, const void *data, size_t len,
                 uint8_t id[VB_ID_LEN], uint32_t *stored, vb_error *e);

/* Whether the chunk exists: known to this session, or found now (then
 * known).  For chunks a backup references without having their data. */
bool vb_write_has(struct vb_write *w, const uint8_t id[VB_ID_LEN]);

/*
 * The chunks that snapshot s references exist if s was committed in this
 * session's gc generation: no gc ran since, and none can run before the
 * session ends.  Returns whether s qualifies; only then may the caller pass
 * s's chunk ids to vb_write_inherit.  A snapshot of an earlier generation
 * (or of a version that did not record one) proves nothing: its chunks are
 * looked up (vb_write_has) or stored again.
 */
bool vb_write_inherits(const struct vb_write *w, const struct vb_snapshot *s);
void vb_write_inherit(struct vb_write *w, const uint8_t id[VB_ID_LEN]);

/* A file of the snapshot (index.json is written by the commit). */
int vb_write_file(struct vb_write *w, const char *name, const void *data, size_t len,
                  uint8_t sha256[32], vb_error *e);

/*
 * Commit: adds id, vm, created (created_ns, or the session's start when 0)
 * and gc_generation to index, makes every chunk durable, and the snapshot
 * visible.  *id_out (malloc'd) gets its id.  The session has ended either
 * way: on failure (or when an abort came first) nothing is visible.
 */
int vb_write_commit(struct vb_write *w, json_object *index, int64_t created_ns, char **id_out,
                    vb_error *e);

/* End the session without a snapshot; a no-op once ended.  Safe from any
 * thread at any time: a commit in progress is refused at its commit point,
 * and the claim is released once running puts are back. */
void vb_write_abort(struct vb_write *w);

#endif
