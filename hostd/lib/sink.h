/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A backup's write session in a repository of either format: the one door
 * through which vbackupd stores what its jobs read (file jobs and disk
 * jobs), so that the daemon never knows which format a target has.
 *
 *   vb_sink_v1   version 1 (session.h, snapshot.h, filesnap.h), sink1.c
 *   vb_sink_v2   version 2 (hostd/repo/sink2.h)
 *
 * A sink is reference counted: workers that put chunks hold a reference
 * (vb_sink_ref), so that the owner can abort at any time (a cancel, a
 * shutdown) while puts are still running; the last vb_sink_unref frees it
 * (and aborts a session that never ended).  Every operation is thread-safe.
 *
 * From begin to commit or abort the session keeps gc from removing what it
 * stored or found to exist (version 1: a shared claim on the repository;
 * version 2: a writer lease), docs/repository.md "Claims and knowledge".
 *
 * A files snapshot is committed here (vb_sink_files_commit); a disk
 * snapshot by the disk backup engine through the disk sink this session
 * gives (vb_sink_disk, disksink.h).
 */
#ifndef VB_SINK_H
#define VB_SINK_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#include "catalog.h"
#include "chunk.h"
#include "disksink.h"
#include "util.h"

struct vb_sink;

/* The newest earlier files snapshot that a backup may take unchanged files
 * from (vb_sink_files_parent). */
struct vb_files_parent {
    char *id;
    struct vb_catalog *cat;  /* its catalog, checked */
    bool known;              /* its chunks are known to exist: vb_sink_inherit them;
                              * otherwise each is looked up (vb_sink_has) */
};
void vb_files_parent_free(struct vb_files_parent *p);

/* What a finished file-level backup commits. */
struct vb_files_commit {
    const char *group;       /* "files:" and the roots as the guest named them (bytes) */
    const char *mode;        /* "full", "incremental", "differential" */
    const char *mode_note;   /* why the mode differs from the one asked for, or NULL */
    const char *parent;      /* or NULL */
    const char *const *roots;    /* nroots paths, bytes as the guest sent them */
    size_t nroots;
    const uint8_t *catalog;  /* the serialized catalog (vb_catb_serialize) */
    size_t catalog_len;
    uint64_t entries, chunks, bytes;     /* what vb_catb_serialize counted */
    json_object *disks;      /* borrowed: the VM's disks the files were read from */
    json_object *stats;      /* borrowed: names -> non-negative numbers ("seconds" a double) */
    json_object *plan;       /* borrowed: the planner's notes (an array of strings) */
    json_object *incomplete; /* borrowed, or NULL: what the guest could not back up */
    int64_t created_ns;      /* the point in time the snapshot shows (0: the session's start) */
};

/*
 * What the session adds to the repository, and a budget for it.  Before a
 * put adds a new chunk (about its stored size) or the commit adds metadata,
 * charge(opaque, bytes, e) is called on the writing thread; a negative
 * errno (e.g. -EDQUOT, with the reason in e) refuses the write, which fails
 * the put and with it the session.  Bytes charged for something not added
 * after all, or charged in excess of its stored size, are given back:
 * charge(opaque, -bytes).  release(opaque) runs when the session is freed.
 * Set it before the first put.
 */
typedef int (*vb_sink_charge_fn)(void *opaque, int64_t bytes, vb_error *e);

struct vb_sink_ops {
    /* 1: stored now (*stored: bytes added), 0: exists, < 0: failed (fails the
     * session); -ECANCELED once the session ended */
    int (*put)(void *h, struct vb_codec *c, const void *data, size_t len, uint8_t id[32],
               uint32_t *stored, vb_error *e);
    bool (*has)(void *h, const uint8_t id[32]);
    void (*inherit)(void *h, const uint8_t id[32]);
    int (*files_parent)(void *h, const char *group, bool full_only,
                        struct vb_files_parent **out, vb_error *e);
    int (*files_commit)(void *h, const struct vb_files_commit *fc, char **id, vb_error *e);
    void (*disk)(void *h, struct vb_disk_sink *out);
    const char *(*token)(void *h);
    const char *(*warning)(void *h);
    uint64_t (*added)(void *h);
    void (*set_charge)(void *h, vb_sink_charge_fn fn, void *opaque, void (*release)(void *));
    void (*abort)(void *h);
    void (*free)(void *h);   /* the last reference went: drop the session */
};

/* A sink over h (the format's own session state), with one reference. */
struct vb_sink *vb_sink_new(const struct vb_sink_ops *ops, void *h);
struct vb_sink *vb_sink_ref(struct vb_sink *s);
void vb_sink_unref(struct vb_sink *s);

/*
 * Store data (len bytes, not all zero) as a data chunk; id gets its id (in
 * the session's id space).  1 when this call stored it (*stored: bytes
 * added), 0 when it exists already, or a negative errno.
 */
int vb_sink_put(struct vb_sink *s, struct vb_codec *c, const void *data, size_t len,
                uint8_t id[VB_ID_LEN], uint32_t *stored, vb_error *e);
/* Whether a chunk exists for this session (found now: then known).  For
 * chunks a backup references without having their data. */
bool vb_sink_has(struct vb_sink *s, const uint8_t id[VB_ID_LEN]);
/* A chunk of a parent whose chunks are known to exist (parent->known). */
void vb_sink_inherit(struct vb_sink *s, const uint8_t id[VB_ID_LEN]);

/*
 * The newest files snapshot of the session's VM in group (full_only: the
 * newest full one) whose chunks are named in the session's id space, with
 * its catalog.  *out NULL when there is none (0).  A candidate whose
 * catalog cannot be read fails the call (the caller backs up in full and
 * says why).
 */
int vb_sink_files_parent(struct vb_sink *s, const char *group, bool full_only,
                         struct vb_files_parent **out, vb_error *e);
/*
 * Commit a files snapshot: the catalog, the chunks it names made durable,
 * the snapshot visible.  *id (malloc'd) names it.  The session has ended
 * either way.
 */
int vb_sink_files_commit(struct vb_sink *s, const struct vb_files_commit *fc, char **id,
                         vb_error *e);
/* A disk sink over this session (valid while the caller holds its
 * reference; vb_disk_sink_clear it afterwards). */
void vb_sink_disk(struct vb_sink *s, struct vb_disk_sink *out);

/* The session's unique name (32 hex digits), recorded in the snapshot it
 * commits: who began a session and died can find out afterwards whether it
 * committed (vb_sr_info.session, snapread.h). */
const char *vb_sink_token(struct vb_sink *s);
/* After a commit: what went wrong after the commit point, or NULL. */
const char *vb_sink_warning(struct vb_sink *s);
/* Bytes the session added so far. */
uint64_t vb_sink_added(struct vb_sink *s);
void vb_sink_set_charge(struct vb_sink *s, vb_sink_charge_fn fn, void *opaque,
                        void (*release)(void *opaque));
/* End the session without a snapshot; a no-op once ended.  Safe from any
 * thread at any time. */
void vb_sink_abort(struct vb_sink *s);

struct vb_write;
/* A sink over a version 1 write session; the sink takes the caller's
 * reference to ws. */
struct vb_sink *vb_sink_v1(struct vb_write *ws);

#endif
