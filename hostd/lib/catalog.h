/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Files snapshot catalog (files.cat): every entry of the tree with its
 * metadata (times in seconds and nanoseconds, extended attributes, inode
 * flags, project id), its name and link target as bytes and, for regular
 * files, its layout: chunks of data, runs of written zeros, and preallocated
 * (unwritten) ranges.  Entries are sorted by path (bytes), so a directory
 * comes before what it holds and a subtree is one contiguous run.
 * docs/repository.md gives the byte layout.
 *
 * The builder makes the bytes of a catalog and the reader takes bytes
 * (vb_cat_parse) and checks every offset and length before anything is
 * used; where the bytes come from (a file, a stream of a repository) is the
 * caller's business.  The builder writes version 3: one self-contained record
 * per entry, in path order, with no offsets into the rest of the catalog, so
 * that an unchanged tree serializes to the same bytes and a change alters only
 * the bytes near it (a version 2 repository cuts the catalog by content and
 * deduplicates the rest).  Versions 1 and 2 (tables of fixed entries) are read
 * too; versions 1 and 3 are converted on load into the version 2 tables below,
 * which is what the rest of the code uses.
 */
#ifndef VB_CATALOG_H
#define VB_CATALOG_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "chunk.h"
#include "util.h"

#define VB_CAT_MAGIC "VBCAT01"
#define VB_CAT_VERSION 3
#define VB_CAT_NONE UINT64_MAX

struct vb_cat_chunk {        /* 48 bytes; a gap between chunks is a hole */
    uint64_t offset;
    uint32_t len;
    uint32_t flags;          /* VB_CATC_* */
    uint8_t id[VB_ID_LEN];   /* all zero for VB_CATC_ZERO */
};

/* Written zeros: the file had data here, all zeros; nothing is stored.  A
 * restore writes zeros, or leaves a hole where the user asked for sparse
 * files. */
#define VB_CATC_ZERO      1u

struct vb_cat_xattr {        /* 16 bytes: name then value, in the strings */
    uint64_t off;
    uint16_t name_len;
    uint16_t reserved;
    uint32_t value_len;
};

struct vb_cat_range {        /* 16 bytes: a preallocated (unwritten) range */
    uint64_t offset;
    uint64_t len;
};

struct vb_cat_entry {        /* 160 bytes (version 2's entry; in memory for all) */
    uint8_t type;            /* VB_FT_* (proto.h) */
    uint8_t flags;           /* VB_CATF_* (version 1 and 2 catalogs only) */
    uint16_t reserved;
    uint32_t mode;
    uint32_t uid;
    uint32_t gid;
    uint32_t nlink;
    uint32_t rdev;
    uint64_t size;
    uint64_t ino;
    int64_t mtime_sec;
    int64_t ctime_sec;
    int64_t atime_sec;
    uint32_t mtime_nsec;
    uint32_t ctime_nsec;
    uint32_t atime_nsec;
    uint32_t fsflags;        /* VB_FSFL_* */
    uint32_t projid;
    uint32_t path_len;
    uint64_t path_off;
    uint64_t link_off;
    uint32_t link_len;
    uint32_t n_xattrs;
    uint64_t first_xattr;
    uint64_t first_chunk;
    uint64_t n_chunks;
    uint64_t first_range;
    uint64_t n_ranges;
    uint64_t hardlink;       /* entry index of the first link, or VB_CAT_NONE */
};

/* How one backup got an entry's data: per-snapshot provenance, which versions
 * 1 and 2 stored and nothing read.  Version 3 does not store it (an unchanged
 * entry must serialize the same in every snapshot): the builder accepts the
 * flags and drops them, and a version 3 catalog reads back with none. */
#define VB_CATF_FALLBACK  1u   /* data came through the fallback stream */
#define VB_CATF_REUSED    2u   /* unchanged since the parent: chunks reused */
#define VB_CATF_KNOWN     (VB_CATF_FALLBACK | VB_CATF_REUSED)

/* ---- building ---- */
struct vb_catb;
struct vb_catb *vb_catb_new(void);
void vb_catb_free(struct vb_catb *b);
/* meta's path/link/xattr/chunk/range/hardlink fields are ignored; returns
 * the entry's index */
uint64_t vb_catb_add(struct vb_catb *b, const struct vb_cat_entry *meta, const char *path,
                     size_t path_len, const char *link, size_t link_len);
/* Names in any order (sorted when serialized); a name added twice keeps the
 * last value. */
void vb_catb_add_xattr(struct vb_catb *b, uint64_t idx, const char *name, size_t name_len,
                       const void *value, size_t value_len);
/* Chunks in file order. */
void vb_catb_add_chunk(struct vb_catb *b, uint64_t idx, const struct vb_cat_chunk *c);
/* Preallocated ranges in any order; overlapping or touching ones are merged. */
void vb_catb_add_range(struct vb_catb *b, uint64_t idx, uint64_t offset, uint64_t len);
void vb_catb_set_hardlink(struct vb_catb *b, uint64_t idx, uint64_t master);
void vb_catb_set_flags(struct vb_catb *b, uint64_t idx, uint8_t flags);
uint64_t vb_catb_count(const struct vb_catb *b);
/* Sorts by path and serializes (version 3); *bytes = sum of regular file
 * sizes. */
uint8_t *vb_catb_serialize(struct vb_catb *b, size_t *len, uint64_t *n_entries,
                           uint64_t *n_chunks, uint64_t *bytes);

/* ---- rebuilding ---- */
struct vb_catalog;
/* Called for each data chunk (not written zeros) of entry idx, in catalog
 * order; it may change c->id (a copy names the chunks of another
 * repository).  Non-zero stops the rebuild and is returned. */
typedef int (*vb_cat_chunk_fn)(void *opaque, uint64_t idx, struct vb_cat_chunk *c,
                               vb_error *e);
/* A builder holding what catalog c (version 1, 2 or 3) holds: every entry
 * with its metadata, name and link target (bytes), attributes, chunks
 * (through fn, may be NULL; written zeros get an all-zero id), preallocated
 * ranges and hard links, as entries 0..n-1.  Serialized, it is a version 3
 * catalog of the same tree: one the builder made comes back byte for byte
 * when fn changes nothing. */
int vb_catb_from_catalog(const struct vb_catalog *c, vb_cat_chunk_fn fn, void *opaque,
                         struct vb_catb **out, vb_error *e);

/* ---- reading ---- */
struct vb_catalog {
    uint8_t *data;
    size_t len;
    uint32_t version;        /* of the bytes read (1, 2 or 3) */
    uint64_t n;
    uint64_t n_chunks;
    uint64_t n_xattrs;
    uint64_t n_ranges;
    const struct vb_cat_entry *e;
    const struct vb_cat_chunk *c;
    const struct vb_cat_xattr *x;
    const struct vb_cat_range *rg;
    const char *str;         /* version 3: the catalog's bytes (names read in place) */
    uint64_t str_len;
    /* version 1: the entries in the version 2 form; version 3: one block
     * holding the entries, chunks, attributes and ranges (e, c, x, rg) */
    struct vb_cat_entry *converted;
};

/* Takes DATA (LEN bytes, g_malloc'ed; freed with the catalog, or here on
 * failure; kept as c->data) and checks every offset, length, count and order
 * in it.  WHAT names it in messages. */
int vb_cat_parse(uint8_t *data, size_t len, const char *what, struct vb_catalog **out,
                 vb_error *e);
/* Reads the file PATH and parses it; want_sha256 (hex) if non-NULL must match. */
int vb_cat_load(const char *path, const char *want_sha256, struct vb_catalog **out,
                vb_error *e);
void vb_cat_free(struct vb_catalog *c);
/* What the catalog holds in memory: its bytes, and what was converted to the
 * version 2 form on load (version 1's entries; version 3's tables). */
static inline uint64_t vb_cat_footprint(const struct vb_catalog *c)
{
    uint64_t conv = 0;

    if (c->converted)
        conv = c->n * sizeof(struct vb_cat_entry);
    if (c->converted && c->version >= 3)
        conv += c->n_chunks * sizeof(struct vb_cat_chunk) +
                c->n_xattrs * sizeof(struct vb_cat_xattr) +
                c->n_ranges * sizeof(struct vb_cat_range);
    return sizeof(*c) + c->len + conv;
}
static inline const char *vb_cat_path(const struct vb_catalog *c, uint64_t i, size_t *len)
{
    *len = c->e[i].path_len;
    return c->str + c->e[i].path_off;
}
static inline const char *vb_cat_link(const struct vb_catalog *c, uint64_t i, size_t *len)
{
    *len = c->e[i].link_len;
    return c->str + c->e[i].link_off;
}
/* Extended attribute K of entry I (names in ascending byte order). */
static inline void vb_cat_xattr(const struct vb_catalog *c, uint64_t i, uint32_t k,
                                const char **name, size_t *name_len, const uint8_t **value,
                                size_t *value_len)
{
    const struct vb_cat_xattr *x = &c->x[c->e[i].first_xattr + k];

    *name = c->str + x->off;
    *name_len = x->name_len;
    *value = (const uint8_t *)c->str + x->off + x->name_len;
    *value_len = x->value_len;
}
/* Bytes of data stored for entry I (its chunks, not zeros or holes). */
uint64_t vb_cat_data_bytes(const struct vb_catalog *c, uint64_t i);
/* Index of the entry with exactly this path, or VB_CAT_NONE. */
uint64_t vb_cat_find(const struct vb_catalog *c, const char *path, size_t len);
/* Entries of the subtree at path ("" = everything): [*first, *end) is the
 * contiguous run of descendants; *self is the entry itself or VB_CAT_NONE. */
void vb_cat_subtree(const struct vb_catalog *c, const char *path, size_t len, uint64_t *self,
                    uint64_t *first, uint64_t *end);
/* The chunk covering file offset off of entry i, or the first chunk after it
 * (a hole until there); VB_CAT_NONE when past the last chunk. */
uint64_t vb_cat_chunk_at(const struct vb_catalog *c, uint64_t i, uint64_t off);
/* The preallocated range of entry i covering off, or the first after it;
 * VB_CAT_NONE when none is. */
uint64_t vb_cat_range_at(const struct vb_catalog *c, uint64_t i, uint64_t off);

/* Seconds and nanoseconds of an entry's times. */
static inline struct timespec vb_cat_mtime(const struct vb_cat_entry *m)
{
    return (struct timespec){ .tv_sec = (time_t)m->mtime_sec, .tv_nsec = (long)m->mtime_nsec };
}
static inline struct timespec vb_cat_atime(const struct vb_cat_entry *m)
{
    return (struct timespec){ .tv_sec = (time_t)m->atime_sec, .tv_nsec = (long)m->atime_nsec };
}

#endif
