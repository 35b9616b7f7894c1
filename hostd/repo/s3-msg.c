/* SPDX-License-Identifier: GPL-2.0-or-later */
/* S3's documents: ListObjectsV2, ListMultipartUploads, errors, multipart
 * uploads; every field checked where it is read (s3.h). */
#include "s3.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void vb_s3_printable(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;

    for (size_t i = 0; i < n && s[i] && o + 1 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        out[o++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    if (cap)
        out[o] = 0;
}

static int parse_u64(const char *s, uint64_t *out)
{
    uint64_t v = 0;

    if (!*s)
        return -EINVAL;
    for (; *s; s++) {
        if (!isdigit((unsigned char)*s) || v > (UINT64_MAX - 9) / 10)
            return -EINVAL;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return 0;
}

static int parse_bool(const char *s, bool *out)
{
    if (!strcmp(s, "true"))
        *out = true;
    else if (!strcmp(s, "false"))
        *out = false;
    else
        return -EINVAL;
    return 0;
}

static int doc(const char *buf, size_t len, const char *root_name, struct vb_xml **root,
               char *why, size_t whycap)
{
    int ret = vb_xml_parse(buf, len, root, why, whycap);
    char name[64];

    if (ret)
        return ret;
    if (strcmp((*root)->name, root_name)) {
        vb_s3_printable((*root)->name, strlen((*root)->name), name, sizeof(name));
        snprintf(why, whycap, "<%s> where <%s> was expected", name, root_name);
        vb_xml_free(*root);
        *root = NULL;
        return -EBADMSG;
    }
    return 0;
}

void vb_s3_list_page_clear(struct vb_s3_list_page *p)
{
    if (p->entries) {
        for (guint i = 0; i < p->entries->len; i++)
            g_free(g_array_index(p->entries, struct vb_s3_entry, i).key);
        g_array_free(p->entries, TRUE);
    }
    g_free(p->next_token);
    memset(p, 0, sizeof(*p));
}

int vb_s3_parse_list(const char *buf, size_t len, struct vb_s3_list_page *p, char *why,
                     size_t whycap)
{
    struct vb_xml *root;
    const char *t;
    unsigned i = 0;
    int ret = doc(buf, len, "ListBucketResult", &root, why, whycap);

    memset(p, 0, sizeof(*p));
    if (ret)
        return ret;
    p->entries = g_array_new(FALSE, FALSE, sizeof(struct vb_s3_entry));
    t = vb_xml_child_text(root, "IsTruncated");
    if (!t || parse_bool(t, &p->truncated)) {
        snprintf(why, whycap, "no valid IsTruncated");
        ret = -EBADMSG;
        goto out;
    }
    if (p->truncated) {
        t = vb_xml_child_text(root, "NextContinuationToken");
        if (!t || !*t || strlen(t) > 4096) {
            snprintf(why, whycap, "truncated, without a valid NextContinuationToken");
            ret = -EBADMSG;
            goto out;
        }
        p->next_token = g_strdup(t);
    }
    for (const struct vb_xml *c = root->child; c; c = c->next) {
        struct vb_s3_entry en = { 0 };
        const char *k, *sz, *lm;

        if (strcmp(c->name, "Contents"))
            continue;
        k = vb_xml_child_text(c, "Key");
        sz = vb_xml_child_text(c, "Size");
        lm = vb_xml_child_text(c, "LastModified");
        if (!k || !*k || strlen(k) > 1024) {
            snprintf(why, whycap, "entry %u: no valid Key", i);
            ret = -EBADMSG;
            goto out;
        }
        if (!sz || parse_u64(sz, &en.size) || en.size > (UINT64_C(1) << 50)) {
            snprintf(why, whycap, "entry %u: no valid Size", i);
            ret = -EBADMSG;
            goto out;
        }
        if (!lm || vb_s3_parse_iso8601(lm, &en.mtime_ns)) {
            snprintf(why, whycap, "entry %u: no valid LastModified", i);
            ret = -EBADMSG;
            goto out;
        }
        en.key = g_strdup(k);
        g_array_append_val(p->entries, en);
        i++;
    }
out:
    vb_xml_free(root);
    if (ret)
        vb_s3_list_page_clear(p);
    return ret;
}

int vb_s3_parse_error(const char *buf, size_t len, char *code, size_t codecap, char *msg,
                      size_t msgcap)
{
    struct vb_xml *root;
    char why[128];
    const char *c, *m;
    int ret = doc(buf, len, "Error", &root, why, sizeof(why));

    code[0] = 0;
    msg[0] = 0;
    if (ret)
        return ret;
    c = vb_xml_child_text(root, "Code");
    m = vb_xml_child_text(root, "Message");
    if (c)
        vb_s3_printable(c, strlen(c), code, codecap);
    if (m)
        vb_s3_printable(m, strlen(m), msg, msgcap);
    vb_xml_free(root);
    return c && *code ? 0 : -EBADMSG;
}

int vb_s3_parse_upload_id(const char *buf, size_t len, char *id, size_t cap, char *why,
                          size_t whycap)
{
    struct vb_xml *root;
    const char *t;
    int ret = doc(buf, len, "InitiateMultipartUploadResult", &root, why, whycap);

    if (ret)
        return ret;
    t = vb_xml_child_text(root, "UploadId");
    if (!t || !*t || strlen(t) >= cap) {
        snprintf(why, whycap, "no valid UploadId");
        ret = -EBADMSG;
    } else {
        for (const char *q = t; *q; q++)
            if ((unsigned char)*q <= 0x20 || (unsigned char)*q >= 0x7f)
                ret = -EBADMSG;
        if (ret)
            snprintf(why, whycap, "UploadId holds a byte that is not printable");
        else
            snprintf(id, cap, "%s", t);
    }
    vb_xml_free(root);
    return ret;
}

void vb_s3_uploads_free(GArray *uploads)
{
    if (!uploads)
        return;
    for (guint i = 0; i < uploads->len; i++) {
        g_free(g_array_index(uploads, struct vb_s3_upload, i).key);
        g_free(g_array_index(uploads, struct vb_s3_upload, i).upload_id);
    }
    g_array_set_size(uploads, 0);
}

/* A listing's page: IsTruncated and, when it is, NextKeyMarker and the
 * second marker (may it be empty: not for versions). */
static int page_markers(struct vb_xml *root, const char *marker2, bool marker2_nonempty,
                        bool *truncated, char **next_key, char **next2, char *why,
                        size_t whycap)
{
    const char *t = vb_xml_child_text(root, "IsTruncated"), *k, *m;

    if (!t || parse_bool(t, truncated)) {
        snprintf(why, whycap, "no valid IsTruncated");
        return -EBADMSG;
    }
    if (!*truncated)
        return 0;
    k = vb_xml_child_text(root, "NextKeyMarker");
    m = vb_xml_child_text(root, marker2);
    if (!k || !*k || !m || (marker2_nonempty && !*m)) {
        snprintf(why, whycap, "truncated, without NextKeyMarker and %s", marker2);
        return -EBADMSG;
    }
    *next_key = g_strdup(k);
    *next2 = g_strdup(m);
    return 0;
}

int vb_s3_parse_uploads(const char *buf, size_t len, GArray *uploads, bool *truncated,
                        char **next_key, char **next_upload, char *why, size_t whycap)
{
    struct vb_xml *root;
    unsigned i = 0;
    int ret = doc(buf, len, "ListMultipartUploadsResult", &root, why, whycap);

    *next_key = *next_upload = NULL;
    if (ret)
        return ret;
    ret = page_markers(root, "NextUploadIdMarker", false, truncated, next_key, next_upload, why,
                       whycap);
    if (ret)
        goto out;
    for (const struct vb_xml *c = root->child; c; c = c->next) {
        struct vb_s3_upload up = { 0 };
        const char *k, *id, *ini;

        if (strcmp(c->name, "Upload"))
            continue;
        k = vb_xml_child_text(c, "Key");
        id = vb_xml_child_text(c, "UploadId");
        ini = vb_xml_child_text(c, "Initiated");
        if (!k || !*k || !id || !*id || !ini || vb_s3_parse_iso8601(ini, &up.initiated_ns)) {
            snprintf(why, whycap, "upload %u: no valid Key, UploadId or Initiated", i);
            ret = -EBADMSG;
            goto out;
        }
        up.key = g_strdup(k);
        up.upload_id = g_strdup(id);
        g_array_append_val(uploads, up);
        i++;
    }
out:
    vb_xml_free(root);
    if (ret) {
        vb_s3_uploads_free(uploads);
        g_free(*next_key);
        g_free(*next_upload);
        *next_key = *next_upload = NULL;
    }
    return ret;
}

void vb_s3_complete_xml(GString *out, const char (*etags)[33], unsigned n)
{
    g_string_append(out, "<CompleteMultipartUpload>");
    for (unsigned i = 0; i < n; i++)
        g_string_append_printf(out, "<Part><PartNumber>%u</PartNumber><ETag>\"%s\"</ETag>"
                               "</Part>", i + 1, etags[i]);
    g_string_append(out, "</CompleteMultipartUpload>");
}

void vb_s3_multipart_etag(const uint8_t (*md5s)[16], unsigned n, char *out, size_t cap)
{
    uint8_t md[16];
    char hex[33];

    vb_s3_md5(md5s, (size_t)n * 16, md);
    vb_hex(md, 16, hex);
    snprintf(out, cap, "%s-%u", hex, n);
}

int vb_s3_parse_content_range(const char *s, uint64_t *first, uint64_t *last,
                              uint64_t *total)
{
    char a[24], b[24], c[24];
    const char *dash, *slash;

    if (strncmp(s, "bytes ", 6))
        return -EINVAL;
    s += 6;
    dash = strchr(s, '-');
    slash = dash ? strchr(dash, '/') : NULL;
    if (!dash || !slash || dash - s >= (ptrdiff_t)sizeof(a) ||
        slash - dash - 1 >= (ptrdiff_t)sizeof(b) || strlen(slash + 1) >= sizeof(c))
        return -EINVAL;
    memcpy(a, s, (size_t)(dash - s));
    a[dash - s] = 0;
    memcpy(b, dash + 1, (size_t)(slash - dash - 1));
    b[slash - dash - 1] = 0;
    strcpy(c, slash + 1);
    if (parse_u64(a, first) || parse_u64(b, last) || parse_u64(c, total) || *first > *last ||
        *last >= *total)
        return -EINVAL;
    return 0;
}

int vb_s3_parse_versions(const char *buf, size_t len, GArray *versions, bool *truncated,
                         char **next_key, char **next_version, char *why, size_t whycap)
{
    struct vb_xml *root;
    unsigned i = 0;
    int ret = doc(buf, len, "ListVersionsResult", &root, why, whycap);

    *next_key = *next_version = NULL;
    if (ret)
        return ret;
    ret = page_markers(root, "NextVersionIdMarker", true, truncated, next_key, next_version, why,
                       whycap);
    if (ret)
        goto out;
    /* in the document's order: per key, newest first */
    for (const struct vb_xml *c = root->child; c; c = c->next) {
        struct vb_s3_version v = { 0 };
        const char *k, *id, *etag = NULL, *size = NULL;

        if (strcmp(c->name, "Version") && strcmp(c->name, "DeleteMarker"))
            continue;
        v.marker = c->name[0] == 'D';
        k = vb_xml_child_text(c, "Key");
        id = vb_xml_child_text(c, "VersionId");
        if (!v.marker) {
            etag = vb_xml_child_text(c, "ETag");
            size = vb_xml_child_text(c, "Size");
        }
        if (!k || !*k || !id || !*id || strlen(id) >= sizeof(v.version_id) ||
            (!v.marker && (!etag || !size || parse_u64(size, &v.size)))) {
            snprintf(why, whycap, "version %u: no valid Key, VersionId, ETag or Size", i);
            ret = -EBADMSG;
            goto out;
        }
        if (!v.marker) {
            /* without the quotes, as the engine keeps ETag headers */
            if (etag[0] == '"' && strlen(etag) >= 2)
                snprintf(v.etag, sizeof(v.etag), "%.*s", (int)strlen(etag) - 2, etag + 1);
            else
                snprintf(v.etag, sizeof(v.etag), "%s", etag);
        }
        v.key = g_strdup(k);
        snprintf(v.version_id, sizeof(v.version_id), "%s", id);
        g_array_append_val(versions, v);
        i++;
    }
out:
    vb_xml_free(root);
    if (ret) {
        vb_s3_versions_free(versions);
        g_free(*next_key);
        g_free(*next_version);
        *next_key = *next_version = NULL;
    }
    return ret;
}

void vb_s3_versions_free(GArray *versions)
{
    for (guint i = 0; i < versions->len; i++)
        g_free(g_array_index(versions, struct vb_s3_version, i).key);
    g_array_set_size(versions, 0);
}
