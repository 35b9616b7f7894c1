/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Metadata streams (stream.h). */
#include "stream.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "fastcdc.h"

void vb_stream_ref_free(struct vb_stream_ref *r)
{
    if (!r)
        return;
    free(r->blobs);
    memset(r, 0, sizeof(*r));
}

int vb_stream_ref_copy(struct vb_stream_ref *dst, const struct vb_stream_ref *src)
{
    *dst = *src;
    dst->blobs = NULL;
    if (src->nblobs) {
        dst->blobs = malloc((size_t)src->nblobs * VB_HASH_LEN);
        if (!dst->blobs)
            return -ENOMEM;
        memcpy(dst->blobs, src->blobs, (size_t)src->nblobs * VB_HASH_LEN);
    }
    return 0;
}

int vb_stream_ref_check(const struct vb_stream_ref *r, vb_error *e)
{
    uint64_t least = (r->length + VB_STREAM_MAX - 1) / VB_STREAM_MAX;
    uint64_t most = r->length ? r->length / VB_STREAM_MIN + 1 : 0;

    if (r->length > VB_STREAM_MAX_LEN)
        return vb_seterr(e, -EBADMSG, "stream of %llu bytes (at most %llu)",
                         (unsigned long long)r->length, (unsigned long long)VB_STREAM_MAX_LEN);
    if (r->nblobs < least || r->nblobs > most)
        return vb_seterr(e, -EBADMSG, "a stream of %llu bytes cannot be %u blobs",
                         (unsigned long long)r->length, r->nblobs);
    return 0;
}

/* ---- writing ---------------------------------------------------------------------- */

struct vb_stream_writer {
    vb_stream_put_fn put;
    void *opaque;
    struct vb_cdc cdc;
    EVP_MD_CTX *sha;
    uint8_t *buf;                /* pending bytes: [start, len) */
    size_t start, len, cap;
    uint64_t total;
    GArray *ids;                 /* VB_HASH_LEN-byte elements */
    int err;                     /* sticky */
};

struct vb_stream_writer *vb_stream_writer_new(vb_stream_put_fn put, void *opaque)
{
    struct vb_stream_writer *w = calloc(1, sizeof(*w));

    if (!w)
        return NULL;
    w->put = put;
    w->opaque = opaque;
    vb_cdc_init(&w->cdc, VB_STREAM_AVG);
    w->cap = 2 * VB_STREAM_MAX;
    w->buf = malloc(w->cap);
    w->sha = EVP_MD_CTX_new();
    w->ids = g_array_new(FALSE, FALSE, VB_HASH_LEN);
    if (!w->buf || !w->sha || !EVP_DigestInit_ex(w->sha, EVP_sha256(), NULL)) {
        vb_stream_writer_free(w);
        return NULL;
    }
    return w;
}

void vb_stream_writer_free(struct vb_stream_writer *w)
{
    if (!w)
        return;
    free(w->buf);
    EVP_MD_CTX_free(w->sha);
    if (w->ids)
        g_array_free(w->ids, TRUE);
    free(w);
}

/* Put blobs while a cut is certain (final: everything left). */
static int cut(struct vb_stream_writer *w, bool final, vb_error *e)
{
    while (w->len - w->start >= VB_STREAM_MAX || (final && w->len > w->start)) {
        size_t n = vb_cdc_cut(&w->cdc, w->buf + w->start, w->len - w->start);
        uint8_t id[VB_HASH_LEN];
        int ret = w->put(w->opaque, w->buf + w->start, n, id, e);

        if (ret)
            return ret;
        g_array_append_vals(w->ids, id, 1);
        w->start += n;
    }
    if (w->start == w->len) {
        w->start = w->len = 0;
    } else if (w->start >= w->cap / 2) {
        memmove(w->buf, w->buf + w->start, w->len - w->start);
        w->len -= w->start;
        w->start = 0;
    }
    return 0;
}

int vb_stream_write(struct vb_stream_writer *w, const void *data, size_t len, vb_error *e)
{
    const uint8_t *p = data;

    if (w->err)
        return vb_seterr(e, w->err, "stream: an earlier write failed");
    if (len > VB_STREAM_MAX_LEN - w->total)
        return vb_seterr(e, -EFBIG, "stream longer than %llu bytes",
                         (unsigned long long)VB_STREAM_MAX_LEN);
    if (!EVP_DigestUpdate(w->sha, data, len))
        return w->err = vb_seterr(e, -EIO, "stream: SHA-256 failed");
    w->total += len;
    while (len) {
        size_t room = w->cap - w->len, n = VB_MIN(room, len);
        int ret;

        memcpy(w->buf + w->len, p, n);
        w->len += n;
        p += n;
        len -= n;
        ret = cut(w, false, e);
        if (ret)
            return w->err = ret;
    }
    return 0;
}

int vb_stream_finish(struct vb_stream_writer *w, struct vb_stream_ref *out, vb_error *e)
{
    unsigned mdlen;
    int ret;

    memset(out, 0, sizeof(*out));
    if (w->err)
        return vb_seterr(e, w->err, "stream: an earlier write failed");
    ret = cut(w, true, e);
    if (ret)
        return w->err = ret;
    if (!EVP_DigestFinal_ex(w->sha, out->sha256, &mdlen))
        return w->err = vb_seterr(e, -EIO, "stream: SHA-256 failed");
    out->length = w->total;
    out->nblobs = w->ids->len;
    if (out->nblobs) {
        out->blobs = malloc((size_t)out->nblobs * VB_HASH_LEN);
        if (!out->blobs)
            return w->err = vb_seterr(e, -ENOMEM, "stream: out of memory");
        memcpy(out->blobs, w->ids->data, (size_t)out->nblobs * VB_HASH_LEN);
    }
    w->err = -EALREADY;          /* nothing more to write */
    return 0;
}

int vb_stream_put_all(const void *data, size_t len, vb_stream_put_fn put, void *opaque,
                      struct vb_stream_ref *out, vb_error *e)
{
    struct vb_stream_writer *w = vb_stream_writer_new(put, opaque);
    int ret;

    memset(out, 0, sizeof(*out));
    if (!w)
        return vb_seterr(e, -ENOMEM, "stream: out of memory");
    ret = vb_stream_write(w, data, len, e);
    if (!ret)
        ret = vb_stream_finish(w, out, e);
    vb_stream_writer_free(w);
    return ret;
}

/* ---- reading ---------------------------------------------------------------------- */

struct vb_stream_reader {
    const struct vb_stream_ref *ref;
    vb_stream_get_fn get;
    void *opaque;
    EVP_MD_CTX *sha;
    GByteArray *blob;            /* the current blob */
    size_t pos;                  /* bytes of it handed out */
    uint32_t next;               /* next blob to fetch */
    uint64_t total;              /* bytes fetched so far */
    bool checked;                /* the ref was checked */
    bool done;
};

struct vb_stream_reader *vb_stream_reader_new(const struct vb_stream_ref *ref,
                                              vb_stream_get_fn get, void *opaque)
{
    struct vb_stream_reader *r = calloc(1, sizeof(*r));

    if (!r)
        return NULL;
    r->ref = ref;
    r->get = get;
    r->opaque = opaque;
    r->sha = EVP_MD_CTX_new();
    r->blob = g_byte_array_new();
    if (!r->sha || !EVP_DigestInit_ex(r->sha, EVP_sha256(), NULL)) {
        vb_stream_reader_free(r);
        return NULL;
    }
    return r;
}

void vb_stream_reader_free(struct vb_stream_reader *r)
{
    if (!r)
        return;
    EVP_MD_CTX_free(r->sha);
    g_byte_array_free(r->blob, TRUE);
    free(r);
}

/* The next blob, checked for its size; or the end, checked for the whole. */
static int next_blob(struct vb_stream_reader *r, vb_error *e)
{
    const struct vb_stream_ref *ref = r->ref;
    uint8_t md[32];
    unsigned mdlen;
    uint32_t i = r->next;
    int ret;

    if (i == ref->nblobs) {
        if (r->total != ref->length)
            return vb_seterr(e, -EBADMSG, "stream ends after %llu bytes, %llu expected",
                             (unsigned long long)r->total, (unsigned long long)ref->length);
        if (!EVP_DigestFinal_ex(r->sha, md, &mdlen))
            return vb_seterr(e, -EIO, "stream: SHA-256 failed");
        if (memcmp(md, ref->sha256, 32))
            return vb_seterr(e, -EBADMSG, "stream's SHA-256 does not match (blobs missing, "
                             "reordered or replaced)");
        r->done = true;
        return 0;
    }
    ret = r->get(r->opaque, ref->blobs + (size_t)i * VB_HASH_LEN, r->blob, e);
    if (ret) {
        vb_prefixerr(e, "stream blob %u", i);
        return ret;
    }
    if (!r->blob->len || r->blob->len > VB_STREAM_MAX ||
        (i + 1 < ref->nblobs && r->blob->len < VB_STREAM_MIN))
        return vb_seterr(e, -EBADMSG, "stream blob %u of %u holds %u bytes, which a stream "
                         "cut never makes", i, ref->nblobs, r->blob->len);
    if (r->blob->len > ref->length - r->total)
        return vb_seterr(e, -EBADMSG, "stream blob %u runs past the stream's %llu bytes", i,
                         (unsigned long long)ref->length);
    if (!EVP_DigestUpdate(r->sha, r->blob->data, r->blob->len))
        return vb_seterr(e, -EIO, "stream: SHA-256 failed");
    r->total += r->blob->len;
    r->pos = 0;
    r->next++;
    return 0;
}

int vb_stream_read(struct vb_stream_reader *r, void *buf, size_t cap, size_t *got,
                   vb_error *e)
{
    uint8_t *p = buf;
    int ret;

    *got = 0;
    if (!r->checked) {
        ret = vb_stream_ref_check(r->ref, e);
        if (ret)
            return ret;
        r->checked = true;
    }
    while (*got < cap && !r->done) {
        size_t n;

        if (r->pos == r->blob->len) {
            ret = next_blob(r, e);
            if (ret)
                return ret;
            continue;
        }
        n = VB_MIN(cap - *got, r->blob->len - r->pos);
        memcpy(p + *got, r->blob->data + r->pos, n);
        r->pos += n;
        *got += n;
    }
    return 0;
}

int vb_stream_get_all(const struct vb_stream_ref *ref, vb_stream_get_fn get, void *opaque,
                      GByteArray *out, vb_error *e)
{
    struct vb_stream_reader *r;
    int ret;

    g_byte_array_set_size(out, 0);
    ret = vb_stream_ref_check(ref, e);
    if (ret)
        return ret;
    if (ref->length > G_MAXUINT - VB_STREAM_MAX)
        return vb_seterr(e, -EFBIG, "stream of %llu bytes does not fit in memory: read it "
                         "piece by piece", (unsigned long long)ref->length);
    r = vb_stream_reader_new(ref, get, opaque);
    if (!r)
        return vb_seterr(e, -ENOMEM, "stream: out of memory");
    while (!r->done) {
        if (r->pos == r->blob->len) {
            ret = next_blob(r, e);
            if (ret)
                break;
            continue;
        }
        g_byte_array_append(out, r->blob->data + r->pos, r->blob->len - (guint)r->pos);
        r->pos = r->blob->len;
    }
    vb_stream_reader_free(r);
    if (ret)
        g_byte_array_set_size(out, 0);
    return ret;
}
