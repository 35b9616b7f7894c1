/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Metadata streams (docs/repository-v2.md, "Metadata streams"): a byte
 * stream (a disk's chunk list, a files catalog) cut by FastCDC (64 KiB on
 * average, 16 KiB to 256 KiB) into meta blobs.  A stream is named by its
 * blob ids, its length and the SHA-256 of all its bytes; an unchanged
 * stream is the same blobs again, and a changed one shares every blob away
 * from the change.
 *
 * Blobs are stored and fetched through callbacks, so this file knows
 * nothing of sessions or packs: the write session (repo2.c) passes its put,
 * a reader its get.
 */
#ifndef VB_REPO_STREAM_H
#define VB_REPO_STREAM_H

#include <glib.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto.h"
#include "util.h"

#define VB_STREAM_AVG      (64u << 10)
#define VB_STREAM_MIN      (VB_STREAM_AVG / 4)    /* every blob but the last */
#define VB_STREAM_MAX      (VB_STREAM_AVG * 4)
#define VB_STREAM_MAX_LEN  (UINT64_C(1) << 40)    /* longest stream accepted */

/* A stream as a manifest names it. */
struct vb_stream_ref {
    uint64_t length;
    uint8_t sha256[32];
    uint32_t nblobs;
    uint8_t *blobs;              /* nblobs x VB_HASH_LEN ids */
};

void vb_stream_ref_free(struct vb_stream_ref *r);
/* A deep copy; -ENOMEM. */
int vb_stream_ref_copy(struct vb_stream_ref *dst, const struct vb_stream_ref *src);
/*
 * Do length and blob count agree with how streams are cut?  Every blob but
 * the last holds VB_STREAM_MIN..VB_STREAM_MAX bytes and the last 1..MAX, so
 * ceil(length / MAX) <= nblobs <= floor(length / MIN) + 1 (0 blobs for
 * length 0).  -EBADMSG naming what disagrees.
 */
int vb_stream_ref_check(const struct vb_stream_ref *r, vb_error *e);

/* Store one blob of len bytes (1..VB_STREAM_MAX); id gets its id. */
typedef int (*vb_stream_put_fn)(void *opaque, const void *data, size_t len,
                                uint8_t id[VB_HASH_LEN], vb_error *e);
/* Fetch the blob id into out (replacing its content). */
typedef int (*vb_stream_get_fn)(void *opaque, const uint8_t id[VB_HASH_LEN], GByteArray *out,
                                vb_error *e);

/* ---- writing ---------------------------------------------------------------------- */

struct vb_stream_writer;

struct vb_stream_writer *vb_stream_writer_new(vb_stream_put_fn put, void *opaque);
/* Append bytes; full blobs are put as they are cut. */
int vb_stream_write(struct vb_stream_writer *w, const void *data, size_t len, vb_error *e);
/* Put what is left and describe the stream (*out: free with vb_stream_ref_free). */
int vb_stream_finish(struct vb_stream_writer *w, struct vb_stream_ref *out, vb_error *e);
void vb_stream_writer_free(struct vb_stream_writer *w);

/* The whole stream at once. */
int vb_stream_put_all(const void *data, size_t len, vb_stream_put_fn put, void *opaque,
                      struct vb_stream_ref *out, vb_error *e);

/* ---- reading ---------------------------------------------------------------------- */

struct vb_stream_reader;

/* ref must outlive the reader. */
struct vb_stream_reader *vb_stream_reader_new(const struct vb_stream_ref *ref,
                                              vb_stream_get_fn get, void *opaque);
/*
 * Up to cap bytes into buf; *got = 0 at the end, which is reported only
 * once the stream's length and SHA-256 are found right.  A blob longer than
 * VB_STREAM_MAX, an empty one, a short one that is not the last, or bytes
 * beyond the stated length are -EBADMSG at once; a wrong SHA-256 at the end.
 * Bytes returned before a failure came from authentic blobs but may not be
 * the stream (a caller that acts on them must be ready to undo).
 */
int vb_stream_read(struct vb_stream_reader *r, void *buf, size_t cap, size_t *got,
                   vb_error *e);
void vb_stream_reader_free(struct vb_stream_reader *r);

/* The whole stream into out (checked before it returns 0). */
int vb_stream_get_all(const struct vb_stream_ref *ref, vb_stream_get_fn get, void *opaque,
                      GByteArray *out, vb_error *e);

#endif
