/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Chunk encoding: SHA-256 id of the plain data, zstd, a 24-byte header with
 * format version, lengths and CRC-32 checks.  docs/repository.md.
 */
#ifndef VB_CHUNK_H
#define VB_CHUNK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zstd.h>

#include "util.h"

#define VB_ID_LEN            32
#define VB_ID_HEX            (2 * VB_ID_LEN + 1)
#define VB_CHUNK_MAGIC       0x31434256u   /* "VBC1" */
#define VB_CHUNK_VERSION     1
#define VB_CHUNK_HDR         24
#define VB_CHUNK_MAX         (16u << 20)   /* largest plain chunk accepted */

enum vb_chunk_comp { VB_CC_NONE = 0, VB_CC_ZSTD = 1 };

struct vb_chunk_hdr {
    uint32_t magic;
    uint8_t version;
    uint8_t comp;
    uint16_t reserved;
    uint32_t plain_len;
    uint32_t stored_len;
    uint32_t payload_crc;
    uint32_t header_crc;     /* CRC-32 of the 20 bytes before it */
};

/* Per-thread compression state and scratch buffer. */
struct vb_codec {
    ZSTD_CCtx *cctx;
    ZSTD_DCtx *dctx;
    int level;
    uint8_t *buf;            /* encode output */
    size_t cap;
    uint8_t *rbuf;           /* encoded chunk read from the store */
    size_t rcap;
};

int vb_codec_init(struct vb_codec *c, int level);
void vb_codec_set_level(struct vb_codec *c, int level);
void vb_codec_free(struct vb_codec *c);

void vb_chunk_id(const void *data, size_t len, uint8_t id[VB_ID_LEN]);

/*
 * The id space of a dedup group (docs/threat-model.md, "Deduplication
 * scope").  Chunks of the default space (no group) are named by the SHA-256
 * of their data; a named group's by SHA-256(tag || data), where tag =
 * SHA-256("vbackup dedup group\0" || name).  The same data has unrelated
 * ids in two spaces, so a backup in one group never finds, reuses or is told
 * about a chunk that another group stored: no content oracle between groups.
 * The tag is not a secret (the guest never chooses its group: the host's
 * configuration does).
 */
#define VB_GROUP_MAX 64
struct vb_idspace {
    bool tagged;             /* false: the default space */
    uint8_t tag[32];
    char group[VB_GROUP_MAX + 1];    /* "" for the default space */
};
/* group NULL or "": the default space.  -EINVAL (e says why) for a name that is
 * not 1..64 of letters, digits, '.', '_', '-'. */
int vb_idspace_init(struct vb_idspace *sp, const char *group, vb_error *e);
/* The id of data in space sp (NULL: the default space). */
void vb_idspace_id(const struct vb_idspace *sp, const void *data, size_t len,
                   uint8_t id[VB_ID_LEN]);
/* Whether two spaces are one (NULL is the default space). */
bool vb_idspace_same(const struct vb_idspace *a, const struct vb_idspace *b);
/* GHashTable functions for keys that are chunk ids (VB_ID_LEN bytes) */
unsigned int vb_id_hash(const void *id);
int vb_id_equal(const void *a, const void *b);
static inline int vb_id_is_zero(const uint8_t id[VB_ID_LEN])
{
    for (int i = 0; i < VB_ID_LEN; i++)
        if (id[i])
            return 0;
    return 1;
}

/* Encode data into c->buf: header + payload.  *out points into c->buf. */
int vb_chunk_encode(struct vb_codec *c, const void *data, size_t len,
                    const uint8_t **out, size_t *out_len);
/* Check and decode an encoded chunk into out (cap bytes); verifies the
 * header, the payload CRC, and (if id is non-NULL) that id is the data's id
 * in space sp (NULL: the default space). */
int vb_chunk_decode(struct vb_codec *c, const uint8_t *enc, size_t enc_len,
                    const struct vb_idspace *sp, const uint8_t *id, void *out, size_t cap,
                    size_t *plain_len, vb_error *e);
int vb_chunk_parse_hdr(const uint8_t *enc, size_t enc_len, struct vb_chunk_hdr *h,
                       vb_error *e);

#endif
