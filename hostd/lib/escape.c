/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Guest bytes made safe for terminals and logs (escape.h). */
#include "escape.h"

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* Length of the valid UTF-8 sequence at S (at most N bytes), or 0; *cp gets
 * the code point.  Overlong forms, surrogates and values above U+10FFFF are
 * not valid. */
static size_t utf8_len(const unsigned char *s, size_t n, uint32_t *cp)
{
    size_t len;
    uint32_t c, min;

    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        len = 2, c = s[0] & 0x1f, min = 0x80;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        len = 3, c = s[0] & 0x0f, min = 0x800;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        len = 4, c = s[0] & 0x07, min = 0x10000;
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        c = c << 6 | (s[i] & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        return 0;
    *cp = c;
    return len;
}

static bool shown_as_is(uint32_t c)
{
    if (c < 0x20 || c == 0x7f || (c >= 0x80 && c <= 0x9f))
        return false;                   /* C0, DEL, C1 */
    if (c == 0x2028 || c == 0x2029)
        return false;                   /* line and paragraph separators */
    if ((c >= 0x200e && c <= 0x200f) || (c >= 0x202a && c <= 0x202e) ||
        (c >= 0x2066 && c <= 0x2069))
        return false;                   /* bidirectional controls */
    return true;
}

char *vb_escape(const char *str, size_t n)
{
    static const char named[] = "\a\b\t\n\v\f\r";
    static const char letter[] = "abtnvfr";
    const unsigned char *s = (const unsigned char *)str;
    GString *out = g_string_sized_new(n + 8);

    for (size_t i = 0; i < n;) {
        uint32_t c;
        size_t len = utf8_len(s + i, n - i, &c);
        const char *k;

        if (len && shown_as_is(c) && c != '\\' && c != ' ') {
            g_string_append_len(out, (const char *)s + i, (gssize)len);
            i += len;
            continue;
        }
        if (len == 1 && (c == '\\' || c == ' ')) {
            g_string_append_c(out, '\\');
            g_string_append_c(out, (char)c);
        } else if (len == 1 && c && (k = strchr(named, (int)c))) {
            g_string_append_c(out, '\\');
            g_string_append_c(out, letter[k - named]);
        } else {
            if (!len)
                len = 1;                /* not UTF-8: this byte alone */
            for (size_t k2 = 0; k2 < len; k2++)
                g_string_append_printf(out, "\\%03o", s[i + k2]);
        }
        i += len;
    }
    return g_string_free(out, FALSE);
}
