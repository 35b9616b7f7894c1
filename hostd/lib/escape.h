/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Bytes from a guest (file names, link targets, reasons) made safe to show
 * on a terminal or to write into a log line, in the style of GNU ls
 * --quoting-style=escape (ls -b): printable UTF-8 stays as it is; a
 * backslash is "\\", a space "\ "; \a \b \t \n \v \f \r; every other
 * control character (C0, DEL, C1), the Unicode line/paragraph separators
 * and bidirectional controls, and every byte that is not part of valid
 * UTF-8 are written byte by byte as a three-digit octal escape ("\377").
 * The result holds no control character, cannot end or forge a line, and
 * names the original bytes unambiguously.  Libc and glib only.
 */
#ifndef VB_ESCAPE_H
#define VB_ESCAPE_H

#include <stddef.h>

/* N bytes of S, escaped; g_free() the result. */
char *vb_escape(const char *s, size_t n);

#endif
