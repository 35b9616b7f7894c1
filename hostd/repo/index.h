/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The repository index of a version 2 repository (docs/repository-v2.md,
 * "The index"): where each blob lies.
 *
 * Index files (index/<64 hex>, the SHA-256 of the stored bytes) are written
 * by write sessions at commit and by maintenance.  Each is sealed with the
 * associated data "vbackup index" (or followed by a CRC-32 in unencrypted
 * repositories) and holds a header, a table of pack ids (ascending) and
 * fixed-size records sorted by (chunk id, pack).  Every field is checked
 * where it is parsed; the rest of the code relies on it.
 *
 * The local cache is a folder (one per repository) holding a merged, sorted
 * lookup table of every index file's records, memory-mapped and searched
 * in place: nothing per chunk lives on the heap.  vb_index_cache_refresh()
 * brings it up to date with list("index/"): it fetches the files it lacks,
 * drops the records of files that vanished, and merges with bounded memory
 * (sorted runs on disk, then one k-way merge).  An unchanged repository
 * costs one listing.  Readers take a view (reference counted) and keep
 * using it while a refresh builds the next one.
 */
#ifndef VB_REPO_INDEX_H
#define VB_REPO_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto.h"
#include "lease.h"
#include "names.h"
#include "store.h"
#include "util.h"

#define VB_INDEX_VERSION       1
#define VB_INDEX_HDR           16         /* "VBIX" | version u8 | reserved u8[3] | packs u32 | records u32 */
#define VB_INDEX_REC           56         /* one record */
#define VB_INDEX_FILE_RECORDS  (1u << 18) /* most records a file is written with (14 MiB) */
#define VB_INDEX_MAX_RECORDS   (1u << 24) /* most records a reader accepts */
#define VB_INDEX_MAX_PACKS     (1u << 22) /* most packs one file may name */

/* Where a blob lies. */
struct vb_blob_loc {
    uint8_t pack[VB_OBJ_ID_LEN];
    uint32_t offset;             /* from the start of the pack, >= 8 */
    uint32_t stored_len;         /* seal or CRC included */
    uint32_t plain_len;
    uint8_t type;                /* enum vb_blob_type */
};

/* One record of an index file, in memory. */
struct vb_index_entry {
    uint8_t id[VB_HASH_LEN];
    uint32_t pack;               /* ordinal into the file's pack table */
    uint32_t offset;
    uint32_t stored_len;
    uint32_t plain_len;
    uint8_t type;
};

/* ---- index files ---------------------------------------------------------------- */

/*
 * Build one index file from n entries whose pack fields index packs (npacks
 * ids, any order).  The entries are sorted in place; duplicates (same id in
 * the same pack) are dropped; the pack table keeps only the packs named, in
 * ascending order.  *out (free() it) holds *len stored bytes; file_id gets
 * their SHA-256 (the object is index/<hex file_id>).  n is at most
 * VB_INDEX_MAX_RECORDS; every entry is checked as a reader would.
 */
int vb_index_build(const struct vb_keys *k, struct vb_index_entry *ents, size_t n,
                   const struct vb_pack_id *packs, size_t npacks, uint8_t **out, size_t *len,
                   uint8_t file_id[VB_OBJ_ID_LEN], vb_error *e);

/* A parsed index file. */
struct vb_index_file {
    uint32_t npacks;
    struct vb_pack_id *packs;    /* ascending */
    size_t count;
    struct vb_index_entry *ents; /* ascending by (id, pack) */
};

/*
 * Open and check an index file of len stored bytes.  -EBADMSG names the
 * field and record that is wrong: seal or CRC, magic, version, reserved
 * bytes, counts against the length, pack table order, a record's pack
 * ordinal, type, lengths (against each other and VB_BLOB_MAX), offset
 * (within a pack of at most VB_PACK_MAX bytes, after its header), order.
 */
int vb_index_parse(const struct vb_keys *k, const uint8_t *stored, size_t len,
                   struct vb_index_file *out, vb_error *e);
void vb_index_file_free(struct vb_index_file *f);
/*
 * Get index/<hex id> from the store, check that its SHA-256 is its name, and
 * parse it.  -ENOENT when it is gone (maintenance merged it: list again).
 */
int vb_index_fetch(struct vb_store *s, const struct vb_keys *k,
                   const uint8_t id[VB_OBJ_ID_LEN], struct vb_index_file *out, vb_error *e);

/* ---- the local cache --------------------------------------------------------------- */

struct vb_index_cache;
struct vb_index_view;

/*
 * The cache folder of repository repo_id: dir when given, else
 * $VBACKUP_CACHE/<32 hex>, else /var/cache/vbackup/repos/<32 hex> for root
 * and $XDG_CACHE_HOME (or ~/.cache)/vbackup/repos/<32 hex> for others.
 * out holds PATH_MAX bytes.
 */
int vb_cache_dir(const char *dir, const uint8_t repo_id[16], char *out, vb_error *e);

/* Open (creating it, mode 0700) the cache folder dir of repository repo_id.
 * The lookup table is read lazily, by the first refresh or view. */
int vb_index_cache_open(const char *dir, const uint8_t repo_id[16],
                        struct vb_index_cache **out, vb_error *e);
void vb_index_cache_close(struct vb_index_cache *c);
const char *vb_index_cache_dir(const struct vb_index_cache *c);
/* Records of new files held in memory before they go to a sorted run on
 * disk (default 32 MiB). */
void vb_index_cache_set_budget(struct vb_index_cache *c, size_t bytes);

struct vb_index_refresh_info {
    unsigned listed;             /* index files in the store */
    unsigned fetched;            /* fetched and merged */
    unsigned dropped;            /* gone from the store, records dropped */
    bool rebuilt;                /* the table was missing or damaged: built anew */
    uint64_t records;            /* in the table now */
};

/*
 * Bring the lookup table up to date with list("index/") of s.  Concurrent
 * refreshes of one folder (threads, processes) take turns (flock).  A file
 * that vanishes between the listing and its get makes it list again.
 * info may be NULL.
 */
int vb_index_cache_refresh(struct vb_index_cache *c, struct vb_store *s,
                           const struct vb_keys *k, struct vb_index_refresh_info *info,
                           vb_error *e);
/* The current table (an empty one before the first refresh); unref it. */
int vb_index_cache_view(struct vb_index_cache *c, struct vb_index_view **out, vb_error *e);
struct vb_index_view *vb_index_view_ref(struct vb_index_view *v);
void vb_index_view_unref(struct vb_index_view *v);

uint64_t vb_index_view_count(const struct vb_index_view *v);
uint32_t vb_index_view_npacks(const struct vb_index_view *v);
const uint8_t *vb_index_view_pack(const struct vb_index_view *v, uint32_t ord);
uint32_t vb_index_view_nsources(const struct vb_index_view *v);
/* The id of index file ord (its object is index/<hex id>). */
const uint8_t *vb_index_view_source(const struct vb_index_view *v, uint32_t ord);
/* The ordinal of a pack id, or -ENOENT (a binary search over pack ids would
 * need them sorted: this builds a hash table on first use). */
int vb_index_view_pack_ord(struct vb_index_view *v, const uint8_t pack[VB_OBJ_ID_LEN],
                           uint32_t *ord);

/* Record i (0 <= i < count) in id order: its id, location, pack and source
 * ordinals.  -EBADMSG when the table holds an ordinal out of range. */
int vb_index_view_rec(const struct vb_index_view *v, uint64_t i, uint8_t id[VB_HASH_LEN],
                      struct vb_blob_loc *loc, uint32_t *pack_ord, uint32_t *src_ord);

/*
 * Look a blob up: 1 and *loc when the table has it in a pack whose bit is
 * not set in skip (a bitmap over pack ordinals, or NULL), 0 when not.
 * Thread-safe, no allocation: a binary search in the mapping.
 */
int vb_index_view_find(const struct vb_index_view *v, const uint8_t id[VB_HASH_LEN],
                       const uint8_t *skip, struct vb_blob_loc *loc);

/* A bitmap over the view's pack ordinals with the packs of the condemned
 * lists set (NULL, no bitmap, when none of them is in the view).  free() it. */
uint8_t *vb_index_view_skip_condemned(struct vb_index_view *v, GPtrArray *condemned);

#endif
