/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Files snapshot catalog (files.cat): every entry of the tree with its
 * metadata and, for regular files, its chunks (file offset, length, id).
 * Entries are sorted by path (bytes), so a directory comes before what it
 * holds and a subtree is one contiguous run.  docs/repository.md.
 */
#ifndef VB_CATALOG_H
#define VB_CATALOG_H

#include <stdbool.h>
#include <stdint.h>

#include "chunk.h"
#include "util.h"

#define VB_CAT_MAGIC "VBCAT01"
#define VB_CAT_NONE UINT64_MAX

struct vb_cat_chunk {        /* 48 bytes; a gap between chunks is a hole */
    uint64_t offset;
    uint32_t len;
    uint32_t flags;          /* 0 */
    uint8_t id[VB_ID_LEN];
};

struct vb_cat_entry {        /* 112 bytes */
    uint8_t type;            /* VB_FT_* (proto.h) */
    uint8_t flags;           /* VB_CATF_* */
    uint16_t reserved;
    uint32_t mode;
    uint32_t uid;
    uint32_t gid;
    uint32_t nlink;
    uint32_t rdev;
    uint64_t size;
    uint64_t ino;
    int64_t mtime_ns;
    int64_t ctime_ns;
    int64_t atime_ns;
    uint64_t path_off;
    uint32_t path_len;
    uint32_t link_len;
    uint64_t link_off;
    uint64_t first_chunk;
    uint64_t n_chunks;
    uint64_t hardlink;       /* entry index of the first link, or VB_CAT_NONE */
};

#define VB_CATF_FALLBACK  1u   /* data came through the fallback stream */
#define VB_CATF_REUSED    2u   /* unchanged since the parent: chunks reused */

/* ---- building ---- */
struct vb_catb;
struct vb_catb *vb_catb_new(void);
void vb_catb_free(struct vb_catb *b);
/* meta's path/link/chunk fields are ignored; returns the entry's index */
uint64_t vb_catb_add(struct vb_catb *b, const struct vb_cat_entry *meta, const char *path,
                     size_t path_len, const char *link, size_t link_len);
void vb_catb_add_chunk(struct vb_catb *b, uint64_t idx, const struct vb_cat_chunk *c);
void vb_catb_set_hardlink(struct vb_catb *b, uint64_t idx, uint64_t master);
void vb_catb_set_flags(struct vb_catb *b, uint64_t idx, uint8_t flags);
uint64_t vb_catb_count(const struct vb_catb *b);
/* Sorts by path and serializes; *bytes = sum of regular file sizes. */
uint8_t *vb_catb_serialize(struct vb_catb *b, size_t *len, uint64_t *n_entries,
                           uint64_t *n_chunks, uint64_t *bytes);

/* ---- reading ---- */
struct vb_catalog {
    uint8_t *data;
    size_t len;
    uint64_t n;
    uint64_t n_chunks;
    const struct vb_cat_entry *e;
    const struct vb_cat_chunk *c;
    const char *str;
    uint64_t str_len;
};

/* Loads and checks every offset; want_sha256 (hex) if non-NULL must match. */
int vb_cat_load(const char *path, const char *want_sha256, struct vb_catalog **out,
                vb_error *e);
void vb_cat_free(struct vb_catalog *c);
static inline const char *vb_cat_path(const struct vb_catalog *c, uint64_t i, size_t *len)
{
    *len = c->e[i].path_len;
    return c->str + c->e[i].path_off;
}
/* Index of the entry with exactly this path, or VB_CAT_NONE. */
uint64_t vb_cat_find(const struct vb_catalog *c, const char *path, size_t len);
/* Entries of the subtree at path ("" = everything): [*first, *end) is the
 * contiguous run of descendants; *self is the entry itself or VB_CAT_NONE. */
void vb_cat_subtree(const struct vb_catalog *c, const char *path, size_t len, uint64_t *self,
                    uint64_t *first, uint64_t *end);
/* The chunk covering file offset off of entry i, or the first chunk after it
 * (a hole until there); VB_CAT_NONE when past the last chunk. */
uint64_t vb_cat_chunk_at(const struct vb_catalog *c, uint64_t i, uint64_t off);

#endif
