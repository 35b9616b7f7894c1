/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Content-defined chunking, FastCDC with normalized chunking (Xia et al.,
 * "The Design of Fast and Lightweight Resemblance Detection and Content-
 * Defined Chunking", 2020).  Gear hash, cut points where the top bits of
 * the fingerprint are zero; a stricter mask before the average size and a
 * looser one after, so sizes cluster around the average.
 */
#ifndef VB_FASTCDC_H
#define VB_FASTCDC_H

#include <stddef.h>
#include <stdint.h>

struct vb_cdc {
    uint32_t min, avg, max;
    uint64_t mask_s, mask_l;
};

#define VB_CDC_AVG (1u << 20)

/* avg a power of two; min = avg / 4, max = avg * 4 */
void vb_cdc_init(struct vb_cdc *c, uint32_t avg);
/* Length of the chunk at the start of data[0..len): a cut point in
 * [min, max], or len when len <= min or no cut point lies in [min, len)
 * and len < max (the caller then either has the whole rest — a final chunk —
 * or must wait for more data). */
size_t vb_cdc_cut(const struct vb_cdc *c, const uint8_t *data, size_t len);

#endif
