/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A small XML reader for S3's responses (s3.h): elements, attributes
 * (skipped), text, CDATA, comments and processing instructions.  It reads
 * what a server sends, so it trusts nothing: no DTD (a DOCTYPE is refused,
 * so no entity can expand), only the five predefined entities and
 * character references to XML characters, names of ASCII characters, at
 * most VB_XML_MAX_DEPTH levels and VB_XML_MAX_NODES elements, tags that
 * balance, one root.  Every failure says where.
 */
#include "s3.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct parser {
    const char *p, *end, *start;
    char *why;
    size_t whycap;
    unsigned nodes;
};

static int bad(struct parser *ps, const char *what)
{
    snprintf(ps->why, ps->whycap, "%s at byte %zu", what, (size_t)(ps->p - ps->start));
    return -EBADMSG;
}

static bool starts(struct parser *ps, const char *s)
{
    size_t n = strlen(s);

    return (size_t)(ps->end - ps->p) >= n && !memcmp(ps->p, s, n);
}

/* skip to just past the first occurrence of s */
static int skip_past(struct parser *ps, const char *s, const char *what)
{
    size_t n = strlen(s);

    for (; ps->end - ps->p >= (ptrdiff_t)n; ps->p++) {
        if (!memcmp(ps->p, s, n)) {
            ps->p += n;
            return 0;
        }
    }
    ps->p = ps->end;
    return bad(ps, what);
}

static void skip_space(struct parser *ps)
{
    while (ps->p < ps->end && strchr(" \t\r\n", *ps->p) && *ps->p)
        ps->p++;
}

static bool name_start(char c)
{
    return isalpha((unsigned char)c) || c == '_' || c == ':';
}

static bool name_char(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == ':' || c == '.' || c == '-';
}

/* a name; *len its length (at most 255) */
static int read_name(struct parser *ps, const char **name, size_t *len)
{
    const char *s = ps->p;

    if (ps->p >= ps->end || !name_start(*ps->p))
        return bad(ps, "expected a name");
    while (ps->p < ps->end && name_char(*ps->p))
        ps->p++;
    *name = s;
    *len = (size_t)(ps->p - s);
    if (*len > 255)
        return bad(ps, "name too long");
    return 0;
}

static bool xml_char(uint32_t c)
{
    return c == 0x9 || c == 0xa || c == 0xd || (c >= 0x20 && c <= 0xd7ff) ||
           (c >= 0xe000 && c <= 0xfffd) || (c >= 0x10000 && c <= 0x10ffff);
}

static void put_utf8(GString *out, uint32_t c)
{
    if (c < 0x80) {
        g_string_append_c(out, (char)c);
    } else if (c < 0x800) {
        g_string_append_c(out, (char)(0xc0 | (c >> 6)));
        g_string_append_c(out, (char)(0x80 | (c & 0x3f)));
    } else if (c < 0x10000) {
        g_string_append_c(out, (char)(0xe0 | (c >> 12)));
        g_string_append_c(out, (char)(0x80 | ((c >> 6) & 0x3f)));
        g_string_append_c(out, (char)(0x80 | (c & 0x3f)));
    } else {
        g_string_append_c(out, (char)(0xf0 | (c >> 18)));
        g_string_append_c(out, (char)(0x80 | ((c >> 12) & 0x3f)));
        g_string_append_c(out, (char)(0x80 | ((c >> 6) & 0x3f)));
        g_string_append_c(out, (char)(0x80 | (c & 0x3f)));
    }
}

/* an entity or character reference, ps->p at '&' */
static int read_ref(struct parser *ps, GString *out)
{
    static const struct { const char *name; char c; } ent[] = {
        { "lt;", '<' }, { "gt;", '>' }, { "amp;", '&' }, { "quot;", '"' }, { "apos;", '\'' },
    };
    uint32_t c = 0;
    int ndig = 0;

    ps->p++;
    for (size_t i = 0; i < G_N_ELEMENTS(ent); i++) {
        if (starts(ps, ent[i].name)) {
            ps->p += strlen(ent[i].name);
            g_string_append_c(out, ent[i].c);
            return 0;
        }
    }
    if (!starts(ps, "#"))
        return bad(ps, "unknown entity (only &lt; &gt; &amp; &quot; &apos; are known)");
    ps->p++;
    if (starts(ps, "x")) {
        ps->p++;
        for (; ps->p < ps->end && isxdigit((unsigned char)*ps->p) && ndig < 8; ps->p++, ndig++)
            c = c * 16 + (uint32_t)g_ascii_xdigit_value(*ps->p);
    } else {
        for (; ps->p < ps->end && isdigit((unsigned char)*ps->p) && ndig < 8; ps->p++, ndig++)
            c = c * 10 + (uint32_t)(*ps->p - '0');
    }
    if (!ndig || ps->p >= ps->end || *ps->p != ';')
        return bad(ps, "malformed character reference");
    if (!xml_char(c))
        return bad(ps, "character reference to a character XML does not allow");
    ps->p++;
    put_utf8(out, c);
    return 0;
}

/* text up to the next '<'; control characters refused */
static int read_text(struct parser *ps, GString *out)
{
    while (ps->p < ps->end && *ps->p != '<') {
        unsigned char c = (unsigned char)*ps->p;
        int ret;

        if (c == '&') {
            ret = read_ref(ps, out);
            if (ret)
                return ret;
            continue;
        }
        if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
            return bad(ps, "control character in text");
        if (out->len >= 16 * 1024 * 1024)
            return bad(ps, "text too long");
        g_string_append_c(out, (char)c);
        ps->p++;
    }
    return 0;
}

/* attributes up to '>' or '/>'; *empty for '/>' */
static int read_attrs(struct parser *ps, bool *empty)
{
    for (;;) {
        const char *n;
        size_t nl;
        char q;
        int ret;

        skip_space(ps);
        if (starts(ps, "/>")) {
            ps->p += 2;
            *empty = true;
            return 0;
        }
        if (starts(ps, ">")) {
            ps->p++;
            *empty = false;
            return 0;
        }
        ret = read_name(ps, &n, &nl);
        if (ret)
            return ret;
        skip_space(ps);
        if (!starts(ps, "="))
            return bad(ps, "expected '=' after an attribute name");
        ps->p++;
        skip_space(ps);
        if (ps->p >= ps->end || (*ps->p != '"' && *ps->p != '\''))
            return bad(ps, "expected a quoted attribute value");
        q = *ps->p++;
        while (ps->p < ps->end && *ps->p != q) {
            if (*ps->p == '<')
                return bad(ps, "'<' in an attribute value");
            ps->p++;
        }
        if (ps->p >= ps->end)
            return bad(ps, "unterminated attribute value");
        ps->p++;
    }
}

/* comments, processing instructions and (refused) DTDs; 1 when one was skipped */
static int skip_misc(struct parser *ps)
{
    if (starts(ps, "<!--")) {
        ps->p += 4;
        return skip_past(ps, "-->", "unterminated comment") ?: 1;
    }
    if (starts(ps, "<?")) {
        ps->p += 2;
        return skip_past(ps, "?>", "unterminated processing instruction") ?: 1;
    }
    if (starts(ps, "<!DOCTYPE") || starts(ps, "<!ENTITY") || starts(ps, "<!ELEMENT") ||
        starts(ps, "<!ATTLIST"))
        return bad(ps, "a DTD is not allowed");
    return 0;
}

static char *local_name(const char *n, size_t len)
{
    const char *colon = memchr(n, ':', len);

    if (colon) {
        len -= (size_t)(colon + 1 - n);
        n = colon + 1;
    }
    return g_strndup(n, len);
}

void vb_xml_free(struct vb_xml *n)
{
    while (n) {
        struct vb_xml *next = n->next;
        vb_xml_free(n->child);
        g_free(n->name);
        g_free(n->text);
        g_free(n);
        n = next;
    }
}

int vb_xml_parse(const char *buf, size_t len, struct vb_xml **root, char *why, size_t whycap)
{
    struct parser ps = { buf, buf + len, buf, why, whycap, 0 };
    struct {
        struct vb_xml *node, *last_child;
        const char *name;
        size_t nlen;
        GString *text;
    } st[VB_XML_MAX_DEPTH];
    int depth = 0, ret = 0;
    struct vb_xml *top = NULL;

    *root = NULL;
    why[0] = 0;
    if (len >= 3 && !memcmp(buf, "\xef\xbb\xbf", 3))
        ps.p += 3;
    /* prolog */
    for (;;) {
        skip_space(&ps);
        ret = skip_misc(&ps);
        if (ret < 0)
            return ret;
        if (!ret)
            break;
    }
    if (!starts(&ps, "<") || ps.p + 1 >= ps.end || !name_start(ps.p[1]))
        return bad(&ps, "no root element");

    for (;;) {
        if (depth > 0) {
            ret = read_text(&ps, st[depth - 1].text);
            if (ret)
                goto fail;
        }
        if (ps.p >= ps.end) {
            ret = bad(&ps, "unexpected end of the document");
            goto fail;
        }
        if (depth > 0 && starts(&ps, "<![CDATA[")) {
            const char *s = ps.p + 9;
            ps.p = s;
            ret = skip_past(&ps, "]]>", "unterminated CDATA section");
            if (ret)
                goto fail;
            g_string_append_len(st[depth - 1].text, s, ps.p - 3 - s);
            continue;
        }
        ret = skip_misc(&ps);
        if (ret < 0)
            goto fail;
        if (ret)
            continue;
        if (starts(&ps, "</")) {
            const char *n;
            size_t nl;
            struct vb_xml *node;

            if (depth == 0) {
                ret = bad(&ps, "closing tag without an open element");
                goto fail;
            }
            ps.p += 2;
            ret = read_name(&ps, &n, &nl);
            if (ret)
                goto fail;
            if (nl != st[depth - 1].nlen || memcmp(n, st[depth - 1].name, nl)) {
                ret = bad(&ps, "closing tag does not match the open element");
                goto fail;
            }
            skip_space(&ps);
            if (!starts(&ps, ">")) {
                ret = bad(&ps, "expected '>'");
                goto fail;
            }
            ps.p++;
            depth--;
            node = st[depth].node;
            node->text = g_string_free(st[depth].text, FALSE);
            if (depth == 0)
                break;
            continue;
        }
        if (starts(&ps, "<")) {
            struct vb_xml *node;
            const char *n;
            size_t nl;
            bool empty;

            if (ps.end - ps.p < 2 || !name_start(ps.p[1])) {
                ps.p++;
                ret = bad(&ps, "malformed markup");
                goto fail;
            }
            ps.p++;
            ret = read_name(&ps, &n, &nl);
            if (ret)
                goto fail;
            if (++ps.nodes > VB_XML_MAX_NODES) {
                ret = bad(&ps, "too many elements");
                goto fail;
            }
            node = g_new0(struct vb_xml, 1);
            node->name = local_name(n, nl);
            if (depth == 0) {
                top = node;
            } else {
                if (st[depth - 1].last_child)
                    st[depth - 1].last_child->next = node;
                else
                    st[depth - 1].node->child = node;
                st[depth - 1].last_child = node;
            }
            ret = read_attrs(&ps, &empty);
            if (ret)
                goto fail;
            if (empty) {
                node->text = g_strdup("");
                if (depth == 0)
                    break;
                continue;
            }
            if (depth >= VB_XML_MAX_DEPTH) {
                ret = bad(&ps, "elements nested too deeply");
                goto fail;
            }
            st[depth].node = node;
            st[depth].last_child = NULL;
            st[depth].name = n;
            st[depth].nlen = nl;
            st[depth].text = g_string_new(NULL);
            depth++;
            continue;
        }
        ret = bad(&ps, "unexpected text");
        goto fail;
    }
    /* after the root: only space, comments and processing instructions */
    for (;;) {
        skip_space(&ps);
        if (ps.p >= ps.end)
            break;
        ret = skip_misc(&ps);
        if (ret < 0)
            goto fail;
        if (!ret) {
            ret = bad(&ps, "content after the root element");
            goto fail;
        }
    }
    *root = top;
    return 0;
fail:
    for (int i = 0; i < depth; i++)
        g_string_free(st[i].text, TRUE);
    /* nodes still open have no text yet: give them one so that free works */
    for (int i = 0; i < depth; i++)
        if (!st[i].node->text)
            st[i].node->text = g_strdup("");
    vb_xml_free(top);
    return ret < 0 ? ret : -EBADMSG;
}

const struct vb_xml *vb_xml_child(const struct vb_xml *n, const char *name)
{
    for (const struct vb_xml *c = n ? n->child : NULL; c; c = c->next)
        if (!strcmp(c->name, name))
            return c;
    return NULL;
}

const char *vb_xml_child_text(const struct vb_xml *n, const char *name)
{
    const struct vb_xml *c = vb_xml_child(n, name);

    return c ? c->text : NULL;
}
