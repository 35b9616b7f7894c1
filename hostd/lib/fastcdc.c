/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "fastcdc.h"

#include <pthread.h>

static uint64_t gear[256];

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void init_gear(void)
{
    /* fixed seed: chunk boundaries must never change between versions */
    uint64_t s = 0x7662616b75702d31ull;   /* "vbakup-1" */

    for (int i = 255; i >= 0; i--)
        gear[i] = splitmix64(&s);
}

static uint64_t top_bits(unsigned n)
{
    return n ? ~0ull << (64 - n) : 0;
}

void vb_cdc_init(struct vb_cdc *c, uint32_t avg)
{
    unsigned bits = 0;

    static pthread_once_t once = PTHREAD_ONCE_INIT;

    pthread_once(&once, init_gear);
    while ((1u << (bits + 1)) <= avg)
        bits++;
    c->avg = 1u << bits;
    c->min = c->avg / 4;
    c->max = c->avg * 4;
    c->mask_s = top_bits(bits + 2);
    c->mask_l = top_bits(bits - 2);
}

size_t vb_cdc_cut(const struct vb_cdc *c, const uint8_t *data, size_t len)
{
    size_t i, normal, n = len;
    uint64_t fp = 0;

    if (n <= c->min)
        return n;
    if (n > c->max)
        n = c->max;
    normal = n < c->avg ? n : c->avg;
    for (i = c->min; i < normal; i++) {
        fp = (fp << 1) + gear[data[i]];
        if (!(fp & c->mask_s))
            return i + 1;
    }
    for (; i < n; i++) {
        fp = (fp << 1) + gear[data[i]];
        if (!(fp & c->mask_l))
            return i + 1;
    }
    return n;
}
