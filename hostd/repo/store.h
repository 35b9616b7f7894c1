/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The storage interface of a version 2 repository (docs/repository-v2.md,
 * "The storage interface"): opaque names in, whole objects and byte ranges
 * out.  Backends (a local folder, later S3) sit behind one operations table
 * (store-backend.h); callers see only struct vb_store and the functions
 * below, never a directory fd or a path inside the store.
 *
 * Names are checked with vb_obj_name_valid() (names.h) here, before any
 * backend sees them: an invalid name fails with -EINVAL and reaches nothing.
 *
 * Semantics every backend keeps (the wrappers check what they can):
 *
 *   put     All-or-nothing: a reader sees the whole new object or none of it
 *           (or the whole old one, when it replaces).  With VB_PUT_NOREPLACE
 *           it fails with -EEXIST when the name exists, atomically (two
 *           writers of one name: exactly one succeeds).  Durability: see
 *           vb_store_sync(); VB_PUT_SYNC makes this one object durable before
 *           put returns.
 *   get     Reads exactly len bytes at off.  A missing name is -ENOENT; a
 *           range that ends past the end of the object is -EIO ("object is
 *           shorter than expected"), never a short read.
 *   stat    Size and the store's modification time; -ENOENT when missing.
 *   list    Calls fn once per object whose name starts with prefix, in no
 *           particular order, with its size and modification time.  Fails
 *           (never ends early and says nothing) on any error while listing.
 *   remove  Removes one object; -ENOENT when it is missing.
 *   sync    Makes every put and remove that returned before sync was called
 *           durable (see store-local.c for a local folder's rule).
 *
 * Modification times are the store's clock (a local file system's kernel,
 * an S3 server), in nanoseconds since the epoch.  Compare them only with
 * other readings of the same store's clock, never with this host's clock.
 *
 * Errors are negative errno values with a message in e naming the call and
 * the object ("get data/ab/ab12...: object is shorter than expected").
 * Every function may be called from several threads at once on one store,
 * except close.
 */
#ifndef VB_REPO_STORE_H
#define VB_REPO_STORE_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

struct vb_store;

/* vb_store_open flags */
#define VB_STORE_CREATE      (1u << 0)   /* create the location when missing (init) */
#define VB_STORE_READONLY    (1u << 1)   /* refuse every write with -EROFS */

/* put flags */
#define VB_PUT_NOREPLACE     (1u << 0)   /* -EEXIST when the name exists */
#define VB_PUT_SYNC          (1u << 1)   /* durable before put returns */
/* A short-lived object (a lease, the maintenance lock, a condemned list)
 * that must stay removable: never put under a retention lock (S3 Object
 * Lock).  Every other object is, on a store opened with one. */
#define VB_PUT_TRANSIENT     (1u << 2)

/* capability bits (vb_store_caps) */
#define VB_STORE_NOREPLACE   (1u << 0)   /* put honours VB_PUT_NOREPLACE atomically */
#define VB_STORE_OBJECT_LOCK (1u << 1)   /* puts (but VB_PUT_TRANSIENT ones) are locked
                                            against deletion for a retention period; a
                                            remove hides an object, frees nothing */
#define VB_STORE_ASYNC       (1u << 2)   /* queued requests overlap (vb_store_queue_*) */

struct vb_obj_info {
    uint64_t size;
    int64_t mtime_ns;        /* the store's clock */
};

/* Called by list for each object; a negative return stops the listing and
 * is what list returns (the callback sets e itself if it wants a message). */
typedef int (*vb_list_fn)(void *opaque, const char *name, const struct vb_obj_info *info,
                          vb_error *e);

/*
 * Open a store.  location: a path (a local folder, store-local.c), or
 * "s3://BUCKET/PREFIX" (S3-compatible object storage, store-s3.c; its
 * endpoint, region and credentials come from the AWS_* variables).
 */
int vb_store_open(const char *location, unsigned flags, struct vb_store **out, vb_error *e);
/*
 * The same with options: "key=value" strings, NULL-terminated (opts may be
 * NULL).  A local folder takes none; s3:// takes endpoint, region,
 * addressing, credentials_file, profile, credential, ca_file, ... (s3.h,
 * vb_s3_config_load).  An unknown key is -EINVAL.  Never put a secret in an
 * option: options name the files that hold them.
 */
int vb_store_open_opts(const char *location, unsigned flags, const char *const *opts,
                       struct vb_store **out, vb_error *e);
/* Nothing is synced by close: call vb_store_sync first if it matters. */
void vb_store_close(struct vb_store *s);

const char *vb_store_kind(const struct vb_store *s);     /* "local", "s3" */
unsigned vb_store_caps(const struct vb_store *s);

int vb_store_put(struct vb_store *s, const char *name, const void *buf, size_t len,
                 unsigned flags, vb_error *e);
/* out's content is replaced by the len bytes read (emptied on error). */
int vb_store_get(struct vb_store *s, const char *name, uint64_t off, size_t len,
                 GByteArray *out, vb_error *e);
int vb_store_stat(struct vb_store *s, const char *name, struct vb_obj_info *info, vb_error *e);
/* prefix: "" (everything) or a name prefix such as "data/", "data/ab",
 * "gc/condemned-"; it must be a valid name or one followed by '/'. */
int vb_store_list(struct vb_store *s, const char *prefix, vb_list_fn fn, void *opaque,
                  vb_error *e);
int vb_store_remove(struct vb_store *s, const char *name, vb_error *e);
/*
 * Whether this store's credential may remove objects at all, asked before
 * maintenance starts (a credential allowed to put but not to delete, as a
 * backup-only S3 user is, would otherwise fail half way and leave its lock
 * behind).  0, or -EACCES naming the refusal; 0 on a store that cannot
 * tell.  Leaves nothing behind but, on a versioned bucket, a delete marker
 * of one name (docs/repository-v2.md, "Object Lock").
 */
int vb_store_check_remove(struct vb_store *s, vb_error *e);
int vb_store_sync(struct vb_store *s, vb_error *e);
/*
 * Maintenance: remove what interrupted puts left behind (a local folder's
 * ".tmp-" files) when it was last modified before cutoff_ns, a time on the
 * store's clock (for example the mtime of an object just written, minus a
 * day).  *removed (may be NULL) counts what was removed.  A put still
 * running that has not written for that long loses its temporary file and
 * fails.  0 on a store that leaves nothing behind.
 */
int vb_store_clean_temp(struct vb_store *s, int64_t cutoff_ns, unsigned *removed, vb_error *e);

/*
 * Many puts and gets in flight at once, reaped by one caller, in the manner
 * of io_uring: submit up to depth requests, then reap completions (in the
 * order they finish) and submit more.  Each request has exactly the
 * semantics of vb_store_put / vb_store_get; only when it runs differs.  On
 * a store that cannot overlap requests (a local folder) each request runs
 * at submission and its completion waits to be reaped.
 *
 * A queue belongs to one thread (several queues may share a store).  A
 * put's buf must stay valid and unchanged, and a get's out untouched, until
 * the request is reaped; out then holds exactly len bytes, or none on
 * error.  Memory: the store holds no copy of a put's data, and a get
 * writes straight into out.
 */
struct vb_store_queue;

struct vb_store_done {
    void *tag;               /* as given when submitted */
    int ret;                 /* 0 or a negative errno */
    vb_error err;            /* when ret < 0 */
};

int vb_store_queue_new(struct vb_store *s, unsigned depth, struct vb_store_queue **out,
                       vb_error *e);
/* 0: submitted (its completion will be reaped); -EBUSY: depth requests are
 * not reaped yet (reap one first); any other error is the request's own,
 * found before it was started (invalid name, flags, read-only store):
 * nothing is queued then. */
int vb_store_queue_put(struct vb_store_queue *q, const char *name, const void *buf, size_t len,
                       unsigned flags, void *tag, vb_error *e);
int vb_store_queue_get(struct vb_store_queue *q, const char *name, uint64_t off, size_t len,
                       GByteArray *out, void *tag, vb_error *e);
/* 1 and *d filled when a request was reaped; 0 when none is in flight, or
 * (wait false) none has finished yet. */
int vb_store_queue_reap(struct vb_store_queue *q, bool wait, struct vb_store_done *d);
/* Requests submitted and not yet reaped. */
unsigned vb_store_queue_pending(const struct vb_store_queue *q);
/* Waits for every request still in flight (their results are dropped). */
void vb_store_queue_free(struct vb_store_queue *q);

#endif
