/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Little-endian integers in byte buffers, for the binary layouts of
 * hostd/repo (index files, the local lookup table).  Header-only, static.
 */
#ifndef VB_REPO_BYTES_H
#define VB_REPO_BYTES_H

#include <endian.h>
#include <stdint.h>
#include <string.h>
#include <zlib.h>

static inline void vb_put_le32(uint8_t *p, uint32_t v)
{
    v = htole32(v);
    memcpy(p, &v, 4);
}

static inline void vb_put_le64(uint8_t *p, uint64_t v)
{
    v = htole64(v);
    memcpy(p, &v, 8);
}

static inline uint32_t vb_get_le32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return le32toh(v);
}

static inline uint64_t vb_get_le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return le64toh(v);
}

/* CRC-32 (zlib) of any length, continuing from crc (0 to start). */
static inline uint32_t vb_crc32_more(uint32_t crc, const uint8_t *p, size_t n)
{
    uLong c = crc;

    while (n) {
        uInt step = (uInt)(n < ((size_t)1 << 30) ? n : ((size_t)1 << 30));
        c = crc32(c, p, step);
        p += step;
        n -= step;
    }
    return (uint32_t)c;
}

#endif
