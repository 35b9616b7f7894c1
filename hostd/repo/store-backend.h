/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What a storage backend implements (store.h has the semantics), in the
 * manner of nbdkit's struct backend: one table of operations on an opaque
 * handle.  Only store.c and the backends include this file.
 *
 * Backends get names already checked by vb_obj_name_valid() (list: a
 * checked prefix) and must report every object they list, with its full
 * name; store.c fails a listing that reports a name that is not valid or
 * does not start with the prefix.
 */
#ifndef VB_REPO_STORE_BACKEND_H
#define VB_REPO_STORE_BACKEND_H

#include "store.h"

/* The end of an asynchronous request: ret and, when ret < 0, e. */
typedef void (*vb_store_done_fn)(void *opaque, int ret, const vb_error *e);

struct vb_store_ops {
    const char *name;                                   /* "local", "s3" */
    int (*put)(void *h, const char *name, const void *buf, size_t len, unsigned flags,
               vb_error *e);
    /* fill out with exactly len bytes, or fail */
    int (*get)(void *h, const char *name, uint64_t off, size_t len, GByteArray *out,
               vb_error *e);
    int (*stat)(void *h, const char *name, struct vb_obj_info *info, vb_error *e);
    int (*list)(void *h, const char *prefix, vb_list_fn fn, void *opaque, vb_error *e);
    int (*remove)(void *h, const char *name, vb_error *e);
    int (*sync)(void *h, vb_error *e);
    int (*clean_temp)(void *h, int64_t cutoff_ns, unsigned *removed, vb_error *e); /* optional */
    int (*check_remove)(void *h, vb_error *e);                                      /* optional */
    void (*close)(void *h);
    unsigned caps;                                      /* VB_STORE_* capability bits */
    /*
     * Optional (VB_STORE_ASYNC): start a put or get and return at once;
     * done is called exactly once, from any thread (perhaps before this
     * returns), with the result; it does not block.  out is already sized
     * to len bytes; the backend fills its data.
     */
    void (*put_async)(void *h, const char *name, const void *buf, size_t len, unsigned flags,
                      vb_store_done_fn done, void *opaque);
    void (*get_async)(void *h, const char *name, uint64_t off, size_t len, GByteArray *out,
                      vb_store_done_fn done, void *opaque);
};

/* Wrap a backend's handle; NULL when out of memory (then h is not closed). */
struct vb_store *vb_store_new(const struct vb_store_ops *ops, void *h, unsigned flags);

/* store-local.c */
int vb_store_local_open(const char *path, unsigned flags, const struct vb_store_ops **ops,
                        void **h, vb_error *e);
/* store-s3.c */
int vb_store_s3_open(const char *location, unsigned flags, const char *const *opts,
                     const struct vb_store_ops **ops, void **h, vb_error *e);
/* Tests and the bench: requests the S3 engine retried so far. */
uint64_t vb_store_s3_retries(struct vb_store *s);
/* The backend's handle, for such test hooks. */
void *vb_store_handle(struct vb_store *s);

/* Tests only: resolve names with per-component O_NOFOLLOW opens, as on a
 * kernel without openat2 (stores opened afterwards). */
void vb_store_local_test_no_openat2(bool on);

#endif
