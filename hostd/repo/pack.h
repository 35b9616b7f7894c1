/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Blobs and pack files of a version 2 repository (docs/repository-v2.md,
 * "Packs" and "Byte layouts").  Pure functions on memory: nothing here reads
 * or writes a store.
 *
 * A blob is one chunk (or one piece of a metadata stream) as stored: zstd when
 * that is smaller, then sealed with associated data "vbackup blob" || id; in
 * an unencrypted repository followed by a CRC-32 instead.  A pack is a header,
 * blobs back to back, a sealed trailer listing them, and an 8-byte tail.
 */
#ifndef VB_REPO_PACK_H
#define VB_REPO_PACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chunk.h"
#include "crypto.h"
#include "util.h"

#define VB_PACK_VERSION    2
#define VB_PACK_HDR        8              /* "VBPK" | version u8 | reserved u8[3] */
#define VB_PACK_TAIL       8              /* trailer length u32 LE | "VBPT" */
#define VB_PACK_ENTRY      52             /* one trailer record */
#define VB_PACK_TARGET     (16u << 20)    /* default target size */
#define VB_PACK_MAX        (1u << 30)     /* largest pack written or read */
#define VB_BLOB_MAX        VB_CHUNK_MAX   /* largest plain blob (16 MiB) */
#define VB_BLOB_CRC        4              /* CRC-32 after a blob in unencrypted repositories */

enum vb_blob_type { VB_BLOB_DATA = 1, VB_BLOB_META = 2 };

/* One blob of a pack, as its trailer records it. */
struct vb_pack_entry {
    uint8_t type;            /* enum vb_blob_type */
    uint8_t comp;            /* VB_CC_NONE, VB_CC_ZSTD (chunk.h) */
    uint32_t plain_len;
    uint32_t stored_len;     /* bytes in the pack, seal or CRC included */
    uint64_t offset;         /* from the start of the pack */
    uint8_t id[VB_HASH_LEN];
};

/* ---- blobs ----------------------------------------------------------------- */

/* Bytes per blob beyond its payload: the seal's nonce and tag, or the CRC. */
size_t vb_blob_overhead(const struct vb_keys *k);
/* The most bytes vb_blob_encode writes for plain_len bytes. */
size_t vb_blob_bound(const struct vb_keys *k, size_t plain_len);
/*
 * Encode len bytes (at most VB_BLOB_MAX) with chunk id `id` into out (cap
 * bytes, at least vb_blob_bound()): *stored_len bytes, *comp says whether
 * zstd was kept.  Uses c's zstd context at its level and c->buf as scratch.
 * Errors: -EFBIG (too large), -ENOBUFS (cap too small), -ENOMEM, -EIO.
 */
int vb_blob_encode(struct vb_codec *c, const struct vb_keys *k, const uint8_t id[VB_HASH_LEN],
                   const void *plain, size_t len, uint8_t *out, size_t cap, size_t *stored_len,
                   uint8_t *comp, vb_error *e);
/*
 * Check and decode a stored blob of chunk `id` whose plain length is
 * plain_len (from a trailer or the index) into out (cap bytes; nothing past
 * plain_len is written).  Whether it is compressed follows from the lengths:
 * a payload shorter than plain_len is zstd, an equal one is plain.  With
 * idkey, the keyed id of the result must equal id.  -EBADMSG names what is
 * wrong; -ENOBUFS when plain_len > cap.  Uses c->buf as scratch: stored must
 * not point into it, nor overlap out.
 */
int vb_blob_decode(struct vb_codec *c, const struct vb_keys *k, const uint8_t id[VB_HASH_LEN],
                   const uint8_t *idkey, const uint8_t *stored, size_t stored_len,
                   size_t plain_len, void *out, size_t cap, vb_error *e);

/* ---- pack writer (one thread at a time) ------------------------------------ */

struct vb_pack_writer;

/* A writer for packs of about target bytes (0: VB_PACK_TARGET) sealed with k,
 * which must outlive it.  NULL when out of memory. */
struct vb_pack_writer *vb_pack_writer_new(const struct vb_keys *k, size_t target);
/* The same writing into buf (cap bytes, malloc'd; the writer owns it now):
 * a buffer an earlier pack was uploaded from, its pages in memory already.
 * NULL buf: a new one. */
struct vb_pack_writer *vb_pack_writer_new_buf(const struct vb_keys *k, size_t target,
                                              uint8_t *buf, size_t cap);
void vb_pack_writer_free(struct vb_pack_writer *w);
/* Encode plain as a blob and append it. */
int vb_pack_add(struct vb_pack_writer *w, struct vb_codec *c, enum vb_blob_type type,
                const uint8_t id[VB_HASH_LEN], const void *plain, size_t len, vb_error *e);
/* Append a blob encoded already with the same keys (repack): ent describes it
 * (its offset is ignored), stored holds ent->stored_len bytes. */
int vb_pack_add_encoded(struct vb_pack_writer *w, const struct vb_pack_entry *ent,
                        const uint8_t *stored, vb_error *e);
/* Bytes vb_pack_finish would return now. */
size_t vb_pack_size(const struct vb_pack_writer *w);
/* True once the pack has reached its target size: finish it. */
bool vb_pack_full(const struct vb_pack_writer *w);
/* The blobs appended so far, in offset order (valid until the next add or free). */
const struct vb_pack_entry *vb_pack_entries(const struct vb_pack_writer *w, uint32_t *count);
/*
 * Seal the trailer, append it and the tail, and hand over the pack: *data
 * (free() it) of *len bytes, pack_id = SHA-256 of those bytes.  The writer
 * then takes no more blobs (its entries stay readable); free it.
 */
int vb_pack_finish(struct vb_pack_writer *w, uint8_t **data, size_t *len,
                   uint8_t pack_id[VB_HASH_LEN], vb_error *e);

/* ---- pack reader ----------------------------------------------------------- */

struct vb_pack_info {
    uint64_t size;                   /* the pack's bytes */
    uint64_t blobs_end;              /* blobs lie in [VB_PACK_HDR, blobs_end) */
    uint32_t trailer_len;            /* stored (sealed) trailer bytes */
    uint32_t count;
    struct vb_pack_entry *entries;   /* count, in offset order, back to back */
};

/*
 * Parse the trailer of a pack of pack_size bytes from its last end_len
 * bytes (end).  Every length, offset and count is checked against the pack
 * size before use; the entries are known to lie back to back in the blob
 * area.  -EBADMSG names what is wrong; -EAGAIN with *need set when end_len
 * is too short (read the last *need bytes and call again).
 */
int vb_pack_parse_end(const struct vb_keys *k, const uint8_t *end, size_t end_len,
                      uint64_t pack_size, struct vb_pack_info *info, size_t *need, vb_error *e);
/* The same for a whole pack in memory, header included. */
int vb_pack_parse(const struct vb_keys *k, const uint8_t *pack, size_t len,
                  struct vb_pack_info *info, vb_error *e);
void vb_pack_info_free(struct vb_pack_info *info);

#endif
