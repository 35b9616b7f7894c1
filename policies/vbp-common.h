/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Small helpers shared by the shipped policies (header-only: each plugin is
 * one self-contained .so that needs nothing but libc).
 */
#ifndef VBP_COMMON_H
#define VBP_COMMON_H

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "vbackup/policy.h"

#define VBP_MIN(a, b) ((a) < (b) ? (a) : (b))
#define VBP_MAX(a, b) ((a) > (b) ? (a) : (b))

/* printf into err (config errors); returns -EINVAL. */
__attribute__((format(printf, 3, 4)))
static inline int vbp_err(char *err, size_t len, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, len, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

/* "4M", "64k", "1GiB", "512" (binary units); 0 or -EINVAL/-ERANGE. */
static inline int vbp_parse_size(const char *s, uint64_t *out)
{
    unsigned long long v;
    unsigned shift = 0;
    char *end;

    if (!s || *s < '0' || *s > '9')
        return -EINVAL;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno)
        return -ERANGE;
    switch (*end) {
    case 0: break;
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    case 't': case 'T': shift = 40; end++; break;
    default: return -EINVAL;
    }
    if (shift && *end == 'i')
        end++;
    if (*end == 'B' || *end == 'b')
        end++;
    if (*end)
        return -EINVAL;
    if (shift && v > (UINT64_MAX >> shift))
        return -ERANGE;
    *out = (uint64_t)v << shift;
    return 0;
}

/* yes/no, true/false, on/off, 1/0; 0 or -EINVAL. */
static inline int vbp_parse_bool(const char *s, bool *out)
{
    static const char *const t[] = { "1", "yes", "true", "on" };
    static const char *const f[] = { "0", "no", "false", "off" };

    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        if (strcasecmp(s, t[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, f[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -EINVAL;
}

/* "1.50 GiB" like vbackupctl (vb_fmt_bytes). */
static inline const char *vbp_fmt_bytes(uint64_t n, char *buf, size_t len)
{
    static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
    double v = (double)n;
    unsigned i = 0;

    while (v >= 1024.0 && i + 1 < sizeof(unit) / sizeof(unit[0])) {
        v /= 1024.0;
        i++;
    }
    if (i == 0)
        snprintf(buf, len, "%llu B", (unsigned long long)n);
    else
        snprintf(buf, len, "%.*f %s", v < 10 ? 2 : v < 100 ? 1 : 0, v, unit[i]);
    return buf;
}

/* Append to a fixed buffer, never overrunning it (truncates). */
__attribute__((format(printf, 4, 5)))
static inline void vbp_append(char *buf, size_t len, size_t *used, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (*used + 1 >= len)
        return;
    va_start(ap, fmt);
    n = vsnprintf(buf + *used, len - *used, fmt, ap);
    va_end(ap);
    if (n > 0)
        *used = VBP_MIN(*used + (size_t)n, len - 1);
}

#endif
