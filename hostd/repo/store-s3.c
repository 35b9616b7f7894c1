/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A store in an S3 bucket (store.h has the semantics every store keeps;
 * docs/repository-v2.md, "S3 backend (built)", says how each maps).
 *
 * An object NAME is the key PREFIX + NAME of s3://BUCKET/PREFIX.  put and
 * get are asynchronous state machines on the HTTP engine (s3-http.c), whose
 * steps run on its I/O thread; the synchronous operations wait for them.
 *
 *   put     one PUT with Content-MD5 and the payload's SHA-256 (S3 checks
 *           both), or a multipart upload above multipart_threshold
 *           (initiate, parts in parallel each with its MD5, complete, then
 *           a HEAD that checks size and multipart ETag; aborted on
 *           failure).  NOREPLACE: always one PUT with If-None-Match: *
 *           (radosgw ignores it on CompleteMultipartUpload); a 412 is
 *           checked with a HEAD, since a try of ours may have written it
 *           (ours or curl's silent re-send on a dead reused connection):
 *           the object's ETag is our MD5 and its size ours → ours, else
 *           -EEXIST.
 *   get     a GET with Range, straight into the caller's buffer; the answer
 *           must be exactly that range (Content-Range checked), a range past
 *           the end is -EIO; len 0 is a HEAD.
 *   stat    a HEAD: Content-Length and Last-Modified (whole seconds).
 *   list    ListObjectsV2 pages of 1000 with continuation tokens; keys must
 *           be under the prefix and increase; LastModified is cut to the
 *           whole second so that list and stat read the same clock alike.
 *   remove  a HEAD (S3 deletes a missing key without a word; store.h wants
 *           -ENOENT), then DELETE.  Two removers at once may both succeed.
 *           On a versioned bucket the DELETE adds a delete marker.
 *
 * object_lock=DAYS[,MODE] (docs/repository-v2.md, "Object Lock and
 * backup-only credentials"): every put but a VB_PUT_TRANSIENT one carries
 * Object Lock headers (a multipart one gets PutObjectRetention after it);
 * every object put gives the bucket's owner full control; a transient
 * NOREPLACE put checks the key's versions, since radosgw ignores
 * If-None-Match on a versioned bucket.
 *   sync    nothing: S3 has acknowledged every put durably.
 *   clean_temp  aborts multipart uploads under the prefix initiated before
 *           the cutoff (what an interrupted put leaves behind).
 */
#include "store-backend.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "names.h"
#include "s3.h"

#define NS 1000000000LL

struct s3 {
    struct vb_s3_config cfg;     /* secrets wiped: the engine keeps its own copy */
    struct vb_s3_http *http;
};

/* One put or get in progress. */
struct op {
    struct s3 *s;
    char name[VB_OBJ_NAME_MAX];
    char *key;
    const uint8_t *buf;
    size_t len;
    unsigned flags;
    uint64_t off;
    GByteArray *out;
    vb_store_done_fn done;
    void *opaque;
    uint8_t md5[16];
    char md5_hex[33];
    char lock_until[32];         /* "" : not locked */
    /* a NOREPLACE put on a versioned bucket: our version, the listing's page */
    char version_id[128];
    bool seen_ours;
    char *key_marker, *version_marker;
    /* multipart */
    char upload_id[512];
    unsigned nparts, next_part, inflight, parts_done;
    uint8_t (*part_md5)[16];
    char (*part_etag)[33];
    char (*part_sha)[65];
    GString *complete;
    int ret;                     /* the first failure */
    vb_error err;
};

static int status_errno(const struct vb_s3_call *c)
{
    if (c->ret)
        return c->ret;
    switch (c->status) {
    case 400: return strcmp(c->s3_code, "BadDigest") ? -EINVAL : -EIO;
    case 401:
    case 403: return -EACCES;
    case 404: return -ENOENT;
    case 405:
    case 501: return -ENOTSUP;
    case 409: return -EBUSY;
    case 412: return -EEXIST;
    default: return -EIO;
    }
}

/* e := "OP NAME: the call's failure" */
static int call_fail(vb_error *e, const struct vb_s3_call *c, const char *op, const char *name)
{
    char d[400];

    vb_s3_call_describe(c, d, sizeof(d));
    return vb_seterr(e, status_errno(c), "%s %s: %s", op, name, d);
}

static char *key_of(struct s3 *s, const char *name)
{
    return g_strconcat(s->cfg.prefix, name, NULL);
}

static struct vb_s3_call *call_new(struct op *o, const char *method, const char *const *query)
{
    GString *q = g_string_new(NULL);
    struct vb_s3_call *c;

    if (query)
        vb_s3_query(q, query);
    c = vb_s3_call_new(method, o->key, q->str);
    g_string_free(q, TRUE);
    c->opaque = o;
    return c;
}

/* The headers of a put that creates an object (a single PUT, or the
 * initiate of a multipart upload): the bucket's owner gets full control
 * (x-amz-acl), and Object Lock headers when the store has object_lock and
 * the put is not transient. */
static void call_lock(struct op *o, struct vb_s3_call *c)
{
    c->owner_acl = true;
    if (!o->lock_until[0])
        return;
    c->lock_mode = o->s->cfg.lock_compliance ? "COMPLIANCE" : "GOVERNANCE";
    snprintf(c->lock_until, sizeof(c->lock_until), "%s", o->lock_until);
}

static void op_free(struct op *o)
{
    g_free(o->key_marker);
    g_free(o->version_marker);
    g_free(o->key);
    g_free(o->part_md5);
    g_free(o->part_etag);
    g_free(o->part_sha);
    if (o->complete)
        g_string_free(o->complete, TRUE);
    g_free(o);
}

static void op_end(struct op *o, int ret)
{
    if (ret && !o->err.code)
        vb_seterr(&o->err, ret, "%s %s: %s", o->out ? "get" : "put", o->name, strerror(-ret));
    o->done(o->opaque, ret, &o->err);
    op_free(o);
}

static struct op *op_new(struct s3 *s, const char *name, vb_store_done_fn done, void *opaque)
{
    struct op *o = g_new0(struct op, 1);

    o->s = s;
    snprintf(o->name, sizeof(o->name), "%s", name);
    o->key = key_of(s, name);
    o->done = done;
    o->opaque = opaque;
    return o;
}

/* ---- put: one request ------------------------------------------------------------------ */

static void put_check_done(struct vb_s3_call *c)
{
    struct op *o = c->opaque;
    bool ours = !c->ret && c->status == 200 && !g_ascii_strcasecmp(c->etag, o->md5_hex) &&
                c->have_length && c->length == o->len;

    if (c->ret || (c->status != 200 && c->status != 404)) {
        /* cannot tell whose it is: the put failed, its effect unknown */
        char d[400];
        int ret = c->ret ? c->ret : -EIO;

        vb_s3_call_describe(c, d, sizeof(d));
        vb_seterr(&o->err, ret, "put %s: the object exists, and checking whether an "
                  "earlier try wrote it failed: %s", o->name, d);
        vb_s3_call_free(c);
        op_end(o, ret);
        return;
    }
    vb_s3_call_free(c);
    /* a try that reached the server wrote it; otherwise another writer did */
    op_end(o, ours ? 0 : vb_seterr(&o->err, -EEXIST, "put %s: object exists", o->name));
}

/*
 * NOREPLACE on a versioned bucket (object_lock).  radosgw 16.2 ignores
 * If-None-Match there: a second PUT makes a new version instead of 412.  So
 * a transient NOREPLACE put (the maintenance lock, leases, condemned lists:
 * where "exactly one writer wins" matters) lists the key's versions after
 * its PUT: the oldest version since the last delete marker wins.  Ours is
 * preceded by a delete marker or nothing: ours.  By an object with our
 * bytes: an earlier try of ours.  By another object: another writer's; our
 * version is deleted (by its id, so the winner's shows again) and the put
 * is -EEXIST.  On AWS, which honours If-None-Match, the listing always
 * finds ours first.
 */
static void noreplace_list(struct op *o);

static void noreplace_undo_done(struct vb_s3_call *c)
{
    struct op *o = c->opaque;

    vb_s3_call_free(c);         /* best effort: a lease or lock left over expires */
    op_end(o, vb_seterr(&o->err, -EEXIST, "put %s: object exists", o->name));
}

static void noreplace_list_done(struct vb_s3_call *c)
{
    struct op *o = c->opaque;
    GArray *vs = g_array_new(FALSE, TRUE, sizeof(struct vb_s3_version));
    int decided = 0;            /* 1: ours, -1: another writer's */
    bool truncated = false;
    char why[200];
    int ret;

    if (c->ret || c->status != 200) {
        char d[400];
        bool denied = !c->ret && c->status == 403;
        ret = c->ret ? c->ret : denied ? -EACCES : -EIO;
        vb_s3_call_describe(c, d, sizeof(d));
        vb_s3_call_free(c);
        g_array_free(vs, TRUE);
        op_end(o, vb_seterr(&o->err, ret, "put %s: written, but checking "
                            "that no other writer's version came first failed: %s%s", o->name,
                            d, denied ? " (the credential needs s3:ListBucketVersions on a "
                            "bucket with Object Lock)" : ""));
        return;
    }
    g_free(o->key_marker);
    g_free(o->version_marker);
    ret = vb_s3_parse_versions((const char *)c->resp->data, c->resp->len, vs, &truncated,
                               &o->key_marker, &o->version_marker, why, sizeof(why));
    vb_s3_call_free(c);
    if (ret) {
        g_array_free(vs, TRUE);
        op_end(o, vb_seterr(&o->err, ret, "put %s: the list of its versions is damaged: %s",
                            o->name, why));
        return;
    }
    for (guint i = 0; i < vs->len && !decided; i++) {
        const struct vb_s3_version *v = &g_array_index(vs, struct vb_s3_version, i);
        if (strcmp(v->key, o->key))
            continue;
        if (!o->seen_ours)
            o->seen_ours = !strcmp(v->version_id, o->version_id);
        else if (v->marker || (v->size == o->len && !g_ascii_strcasecmp(v->etag, o->md5_hex)))
            decided = 1;
        else
            decided = -1;
    }
    vb_s3_versions_free(vs);
    g_array_free(vs, TRUE);
    if (!decided && truncated) {
        noreplace_list(o);
        return;
    }
    if (!decided && !o->seen_ours) {
        op_end(o, vb_seterr(&o->err, -EIO, "put %s: written as version %s, which its "
                            "versions do not list", o->name, o->version_id));
        return;
    }
    if (decided < 0) {
        c = call_new(o, "DELETE", (const char *const[]){ "versionId", o->version_id, NULL });
        c->done = noreplace_undo_done;
        vb_s3_submit(o->s->http, c);
        return;
    }
    op_end(o, 0);
}

static void noreplace_list(struct op *o)
{
    const char *q[] = { "prefix", o->key, "versions", NULL,
                        o->key_marker ? "key-marker" : NULL, o->key_marker,
                        "version-id-marker", o->version_marker, NULL };
    GString *qs = g_string_new(NULL);
    struct vb_s3_call *c;

    vb_s3_query(qs, q);
    c = vb_s3_call_new("GET", "", qs->str);
    g_string_free(qs, TRUE);
    c->want_body = true;
    c->opaque = o;
    c->done = noreplace_list_done;
    vb_s3_submit(o->s->http, c);
}

static void put_single_done(struct vb_s3_call *c)
{
    struct op *o = c->opaque;

    if (!c->ret && c->status == 200) {
        if ((o->flags & VB_PUT_NOREPLACE) && (o->flags & VB_PUT_TRANSIENT) &&
            o->s->cfg.lock_days && c->version_id[0]) {
            snprintf(o->version_id, sizeof(o->version_id), "%s", c->version_id);
            vb_s3_call_free(c);
            noreplace_list(o);
            return;
        }
        vb_s3_call_free(c);
        op_end(o, 0);
        return;
    }
    if (!c->ret && c->status == 412 && (o->flags & VB_PUT_NOREPLACE)) {
        /* an earlier try of ours (or curl's silent re-send) may have written it */
        struct vb_s3_http *http = o->s->http;
        vb_s3_call_free(c);
        c = call_new(o, "HEAD", NULL);
        c->done = put_check_done;
        vb_s3_submit(http, c);
        return;
    }
    call_fail(&o->err, c, "put", o->name);
    vb_s3_call_free(c);
    op_end(o, o->err.code);
}

/* ---- put: a multipart upload ---------------------------------------------------------------- */

static void mp_abort_done(struct vb_s3_call *c)
{
    struct op *o = c->opaque;

    vb_s3_call_free(c);         /* best effort: clean_temp removes what is left */
    op_end(o, o->ret);
}

static void mp_fail(struct op *o, int ret)
{
    struct vb_s3_call *c;

    if (!o->ret)
        o->ret = ret;
    if (o->inflight)
        return;                 /* the last part to finish aborts */
    if (!o->upload_id[0]) {
        op_end(o, o->ret);
        return;
    }
    c = call_new(o, "DELETE", (const char *const[]){ "uploadId", o->upload_id, NULL });
    c->done = mp_abort_done;
    vb_s3_submit(o->s->http, c);
}

static void mp_retention_done(struct vb_s3_call *c)
{
    struct op *o = c->opaque;

    if (c->ret || c->status != 200) {
        call_fail(&o->err, c, "put", o->name);
        vb_s3_call_free(c);
        op_end(o, o->err.code);
        return;
    }
    vb_s3_call_free(c);
    op_end(o, 0);
}

static void mp_verify_done(struct vb_s3_call *c)
{
    struct op *o = c->opaque;
    char want[48];

    vb_s3_multipart_etag((const uint8_t (*)[16])o->part_md5, o->nparts, want, sizeof(want));
    if (c->ret || c->status != 200) {
        call_fail(&o->err, c, "put", o->name);
        vb_s3_call_free(c);
        op_end(o, o->err.code);
        return;
    }
    if (!c->have_length || c->length != o->len ||
        (strchr(c->etag, '-') && g_ascii_strcasecmp(c->etag, want))) {
        vb_seterr(&o->err, -EIO, "put %s: after the upload the object has %llu bytes and "
                  "ETag %s, not %zu bytes and ETag %s", o->name,
                  (unsigned long long)c->length, c->etag, o->len, want);
        vb_s3_call_free(c);
        op_end(o, o->err.code);
        return;
    }
    vb_s3_call_free(c);
    if (o->lock_until[0]) {
        /* radosgw 16.2 keeps no retention given to CreateMultipartUpload: set
         * it on the object (PutObjectRetention; on AWS the same date again) */
        uint8_t md5[16];
        c = call_new(o, "PUT", (const char *const[]){ "retention", NULL, NULL });
        o->complete = o->complete ? o->complete : g_string_new(NULL);
        g_string_printf(o->complete, "<Retention><Mode>%s</Mode><RetainUntilDate>%s"
                        "</RetainUntilDate></Retention>",
                        o->s->cfg.lock_compliance ? "COMPLIANCE" : "GOVERNANCE", o->lock_until);
        vb_s3_md5(o->complete->str, o->complete->len, md5);
        vb_s3_call_body(c, o->complete->str, o->complete->len, md5, NULL);
        c->done = mp_retention_done;
        vb_s3_submit(o->s->http, c);
        return;
    }
    op_end(o, 0);
}

static void mp_complete_done(struct vb_s3_call *c)
{
    struct op *o = c->opaque;
    struct vb_s3_http *http = o->s->http;

    if (!c->ret && (c->status == 200 ||
                    (c->status == 404 && !strcmp(c->s3_code, "NoSuchUpload")))) {
        /* done (or done by an earlier try): check what the bucket holds */
        vb_s3_call_free(c);
        c = call_new(o, "HEAD", NULL);
        c->done = mp_verify_done;
        vb_s3_submit(http, c);
        return;
    }
    call_fail(&o->err, c, "put", o->name);
    vb_s3_call_free(c);
    mp_fail(o, o->err.code);
}

static void mp_start_parts(struct op *o);

static void mp_part_done(struct vb_s3_call *c)
{
    struct op *o = c->opaque;

    o->inflight--;
    if (c->ret || c->status != 200) {
        if (!o->ret)
            call_fail(&o->err, c, "put", o->name);
        vb_s3_call_free(c);
        mp_fail(o, o->err.code);
        return;
    }
    o->parts_done++;
    vb_s3_call_free(c);
    if (o->ret) {
        mp_fail(o, o->ret);
        return;
    }
    mp_start_parts(o);
}

/* The ETag of a part is checked against its MD5 here (S3 also checked the
 * Content-MD5): a part stored with other bytes fails the put. */
static void mp_part_check(struct vb_s3_call *c)
{
    struct op *o = c->opaque;
    unsigned n = (unsigned)strtoul(c->query + strlen("partNumber="), NULL, 10);

    if (!c->ret && c->status == 200 && (n < 1 || n > o->nparts ||
                                        g_ascii_strcasecmp(c->etag, o->part_etag[n - 1]))) {
        o->inflight--;
        if (!o->ret)
            vb_seterr(&o->err, -EIO, "put %s: part %u stored with ETag %s, not its MD5 %s",
                      o->name, n, c->etag, n >= 1 && n <= o->nparts ? o->part_etag[n - 1] : "?");
        vb_s3_call_free(c);
        mp_fail(o, -EIO);
        return;
    }
    mp_part_done(c);
}

static void mp_start_parts(struct op *o)
{
    if (o->parts_done == o->nparts) {
        struct vb_s3_call *c;
        o->complete = g_string_new(NULL);
        vb_s3_complete_xml(o->complete, (const char (*)[33])o->part_etag, o->nparts);
        c = call_new(o, "POST", (const char *const[]){ "uploadId", o->upload_id, NULL });
        vb_s3_call_body(c, o->complete->str, o->complete->len, NULL, NULL);
        c->want_body = true;
        c->done = mp_complete_done;
        vb_s3_submit(o->s->http, c);
        return;
    }
    while (o->next_part < o->nparts && o->inflight < o->s->cfg.connections) {
        unsigned i = o->next_part++;
        uint64_t off = (uint64_t)i * o->s->cfg.part_size;
        size_t n = (size_t)VB_MIN(o->s->cfg.part_size, o->len - off);
        char num[16];
        struct vb_s3_call *c;

        snprintf(num, sizeof(num), "%u", i + 1);
        c = call_new(o, "PUT", (const char *const[]){ "partNumber", num, "uploadId",
                                                       o->upload_id, NULL });
        vb_s3_call_body(c, o->buf + off, n, o->part_md5[i], o->part_sha[i]);
        c->done = mp_part_check;
        o->inflight++;
        vb_s3_submit(o->s->http, c);
    }
}

static void mp_initiate_done(struct vb_s3_call *c)
{
    struct op *o = c->opaque;
    char why[200];
    int ret;

    if (c->ret || c->status != 200) {
        call_fail(&o->err, c, "put", o->name);
        vb_s3_call_free(c);
        mp_fail(o, o->err.code);
        return;
    }
    ret = vb_s3_parse_upload_id((const char *)c->resp->data, c->resp->len, o->upload_id,
                                sizeof(o->upload_id), why, sizeof(why));
    vb_s3_call_free(c);
    if (ret) {
        o->upload_id[0] = 0;
        vb_seterr(&o->err, ret, "put %s: starting a multipart upload: %s", o->name, why);
        mp_fail(o, ret);
        return;
    }
    mp_start_parts(o);
}

static void s3_put_async(void *h, const char *name, const void *buf, size_t len,
                         unsigned flags, vb_store_done_fn done, void *opaque)
{
    struct s3 *s = h;
    struct op *o = op_new(s, name, done, opaque);
    struct vb_s3_call *c;

    o->buf = buf;
    o->len = len;
    o->flags = flags;
    if (s->cfg.lock_days && !(flags & VB_PUT_TRANSIENT))
        vb_s3_lock_until(vb_wall_ns() / NS, s->cfg.lock_days, o->lock_until);
    if ((flags & VB_PUT_NOREPLACE) || len <= s->cfg.multipart_threshold) {
        if (len > (UINT64_C(5) << 30)) {
            op_end(o, vb_seterr(&o->err, -EFBIG, "put %s: %zu bytes is more than one S3 PUT "
                                "takes (5 GiB), and multipart uploads cannot refuse to "
                                "replace", name, len));
            return;
        }
        vb_s3_md5(buf, len, o->md5);
        vb_hex(o->md5, 16, o->md5_hex);
        c = call_new(o, "PUT", NULL);
        vb_s3_call_body(c, buf, len, o->md5, NULL);
        c->if_none_match = flags & VB_PUT_NOREPLACE;
        call_lock(o, c);
        c->done = put_single_done;
        vb_s3_submit(s->http, c);
        return;
    }
    o->nparts = (unsigned)((len + s->cfg.part_size - 1) / s->cfg.part_size);
    if (o->nparts > 10000) {
        op_end(o, vb_seterr(&o->err, -EFBIG, "put %s: %zu bytes need more than 10000 parts "
                            "of %llu bytes", name, len, (unsigned long long)s->cfg.part_size));
        return;
    }
    o->part_md5 = g_malloc_n(o->nparts, sizeof(*o->part_md5));
    o->part_etag = g_malloc_n(o->nparts, sizeof(*o->part_etag));
    o->part_sha = g_malloc_n(o->nparts, sizeof(*o->part_sha));
    for (unsigned i = 0; i < o->nparts; i++) {
        uint64_t off = (uint64_t)i * s->cfg.part_size;
        size_t n = (size_t)VB_MIN(s->cfg.part_size, len - off);
        vb_s3_md5(o->buf + off, n, o->part_md5[i]);
        vb_hex(o->part_md5[i], 16, o->part_etag[i]);
        vb_s3_sha256_hex(o->buf + off, n, o->part_sha[i]);
    }
    c = call_new(o, "POST", (const char *const[]){ "uploads", NULL, NULL });
    vb_s3_call_body(c, "", 0, NULL, NULL);
    call_lock(o, c);
    c->want_body = true;
    c->done = mp_initiate_done;
    vb_s3_submit(s->http, c);
}

/* ---- get ---------------------------------------------------------------------------------------- */

static int shorter(struct op *o, uint64_t size)
{
    return vb_seterr(&o->err, -EIO, "get %s: object is shorter than expected (%llu bytes, "
                     "%zu wanted at %llu)", o->name, (unsigned long long)size, o->len,
                     (unsigned long long)o->off);
}

static void get_done(struct vb_s3_call *c)
{
    struct op *o = c->opaque;
    uint64_t first, last, total;
    int ret = 0;

    if (c->ret) {
        ret = call_fail(&o->err, c, "get", o->name);
    } else if (c->status == 404) {
        ret = vb_seterr(&o->err, -ENOENT, "get %s: no such object", o->name);
    } else if (c->status == 416) {
        ret = vb_seterr(&o->err, -EIO, "get %s: object is shorter than expected (nothing at "
                        "%llu)", o->name, (unsigned long long)o->off);
    } else if (!strcmp(c->method, "HEAD")) {
        if (c->status != 200 || !c->have_length)
            ret = call_fail(&o->err, c, "get", o->name);
        else if (c->length < o->off)
            ret = shorter(o, c->length);
    } else if (c->status == 206) {
        /* the engine retried until the body matched Content-Range */
        vb_s3_parse_content_range(c->content_range, &first, &last, &total);
        if (first != o->off)
            ret = vb_seterr(&o->err, -EIO, "get %s: the server answered bytes %llu-%llu for "
                            "a range at %llu", o->name, (unsigned long long)first,
                            (unsigned long long)last, (unsigned long long)o->off);
        else if (last - first + 1 != o->len)
            ret = shorter(o, total);
    } else if (c->status == 200) {
        if (!c->have_length || c->length < o->off + o->len)
            ret = shorter(o, c->got);
    } else {
        ret = call_fail(&o->err, c, "get", o->name);
    }
    vb_s3_call_free(c);
    op_end(o, ret);
}

static void s3_get_async(void *h, const char *name, uint64_t off, size_t len, GByteArray *out,
                         vb_store_done_fn done, void *opaque)
{
    struct s3 *s = h;
    struct op *o = op_new(s, name, done, opaque);
    struct vb_s3_call *c;

    o->off = off;
    o->len = len;
    o->out = out;
    c = call_new(o, len ? "GET" : "HEAD", NULL);
    if (len) {
        c->range = true;
        c->off = off;
        c->len = len;
        c->out = out->data;
    }
    c->done = get_done;
    vb_s3_submit(s->http, c);
}

/* ---- the synchronous operations -------------------------------------------------------------- */

struct wait {
    GMutex m;
    GCond cond;
    bool done;
    int ret;
    vb_error err;
};

static void wait_done(void *opaque, int ret, const vb_error *e)
{
    struct wait *w = opaque;

    g_mutex_lock(&w->m);
    w->ret = ret;
    if (ret && e)
        w->err = *e;
    w->done = true;
    g_cond_signal(&w->cond);
    g_mutex_unlock(&w->m);
}

static int wait_for(struct wait *w, vb_error *e)
{
    g_mutex_lock(&w->m);
    while (!w->done)
        g_cond_wait(&w->cond, &w->m);
    g_mutex_unlock(&w->m);
    g_mutex_clear(&w->m);
    g_cond_clear(&w->cond);
    if (w->ret && e)
        *e = w->err;
    return w->ret;
}

static int s3_put(void *h, const char *name, const void *buf, size_t len, unsigned flags,
                  vb_error *e)
{
    struct wait w = { .done = false };

    g_mutex_init(&w.m);
    g_cond_init(&w.cond);
    s3_put_async(h, name, buf, len, flags, wait_done, &w);
    return wait_for(&w, e);
}

static int s3_get(void *h, const char *name, uint64_t off, size_t len, GByteArray *out,
                  vb_error *e)
{
    struct wait w = { .done = false };
    int ret;

    g_byte_array_set_size(out, (guint)len);
    g_mutex_init(&w.m);
    g_cond_init(&w.cond);
    s3_get_async(h, name, off, len, out, wait_done, &w);
    ret = wait_for(&w, e);
    if (ret)
        g_byte_array_set_size(out, 0);
    return ret;
}

/* A HEAD of key, run to its end (the caller frees it). */
static struct vb_s3_call *head(struct s3 *s, const char *key)
{
    struct vb_s3_call *c = vb_s3_call_new("HEAD", key, NULL);

    vb_s3_run(s->http, c);
    return c;
}

static int s3_stat(void *h, const char *name, struct vb_obj_info *info, vb_error *e)
{
    struct s3 *s = h;
    char *key = key_of(s, name);
    struct vb_s3_call *c = head(s, key);
    int ret = 0;

    if (!c->ret && c->status == 404)
        ret = vb_seterr(e, -ENOENT, "stat %s: no such object", name);
    else if (c->ret || c->status != 200)
        ret = call_fail(e, c, "stat", name);
    else if (!c->have_length || !c->have_mtime)
        ret = vb_seterr(e, -EBADMSG, "stat %s: the server's answer has no valid "
                        "Content-Length or Last-Modified", name);
    else
        *info = (struct vb_obj_info){ c->length, c->mtime_ns };
    vb_s3_call_free(c);
    g_free(key);
    return ret;
}

/* A DELETE the bucket refused: name the permission that is missing. */
static int remove_refused(vb_error *e, const struct vb_s3_call *c, const char *name)
{
    char d[400];

    vb_s3_call_describe(c, d, sizeof(d));
    return vb_seterr(e, -EACCES, "remove %s: %s: this credential may not delete objects "
                     "(s3:DeleteObject): it can back up, but forget, prune and gc need one "
                     "that may", name, d);
}

static int s3_remove(void *h, const char *name, vb_error *e)
{
    struct s3 *s = h;
    char *key = key_of(s, name);
    struct vb_s3_call *c = head(s, key);
    int ret = 0;

    if (!c->ret && c->status == 404) {
        ret = vb_seterr(e, -ENOENT, "remove %s: no such object", name);
    } else if (c->ret || c->status != 200) {
        ret = call_fail(e, c, "remove", name);
    } else {
        vb_s3_call_free(c);
        c = vb_s3_call_new("DELETE", key, NULL);
        vb_s3_run(s->http, c);
        if (!c->ret && c->status == 403)
            ret = remove_refused(e, c, name);
        else if (c->ret || (c->status != 204 && c->status != 200))
            ret = call_fail(e, c, "remove", name);
    }
    vb_s3_call_free(c);
    g_free(key);
    return ret;
}

static int s3_list(void *h, const char *prefix, vb_list_fn fn, void *opaque, vb_error *e)
{
    struct s3 *s = h;
    char *full = key_of(s, prefix), *token = NULL, *last = g_strdup("");
    size_t plen = strlen(s->cfg.prefix);
    int ret = 0;

    for (unsigned page = 0; !ret; page++) {
        const char *q[] = { "list-type", "2", "prefix", full, "max-keys", "1000",
                            token ? "continuation-token" : NULL, token, NULL };
        struct vb_s3_list_page pg;
        struct vb_s3_call *c;
        GString *qs = g_string_new(NULL);
        char why[200];

        vb_s3_query(qs, q);
        c = vb_s3_call_new("GET", "", qs->str);
        g_string_free(qs, TRUE);
        c->want_body = true;
        /* a page that does not parse (cut short by something on the way
         * that also fixed its Content-Length) is asked for again */
        for (unsigned tries = 1;; tries++) {
            vb_s3_run(s->http, c);
            if (c->ret || c->status != 200)
                break;
            ret = vb_s3_parse_list((const char *)c->resp->data, c->resp->len, &pg, why,
                                   sizeof(why));
            if (!ret || tries >= s->cfg.attempts)
                break;
        }
        if (c->ret || c->status != 200) {
            ret = call_fail(e, c, "list", prefix[0] ? prefix : "(everything)");
            vb_s3_call_free(c);
            break;
        }
        vb_s3_call_free(c);
        if (ret) {
            vb_seterr(e, ret, "list %s: page %u of the listing is damaged: %s",
                      prefix[0] ? prefix : "(everything)", page, why);
            break;
        }
        for (guint i = 0; !ret && i < pg.entries->len; i++) {
            struct vb_s3_entry *en = &g_array_index(pg.entries, struct vb_s3_entry, i);
            char p[120];

            vb_s3_printable(en->key, strlen(en->key), p, sizeof(p));
            if (!g_str_has_prefix(en->key, full)) {
                ret = vb_seterr(e, -EBADMSG, "list %s: the server listed '%s', which is not "
                                "under the prefix", prefix, p);
            } else if (strcmp(en->key, last) <= 0) {
                ret = vb_seterr(e, -EBADMSG, "list %s: the server listed '%s' out of order "
                                "(after '%.100s')", prefix, p, last);
            } else {
                g_free(last);
                last = g_strdup(en->key);
                /* whole seconds, as HEAD's Last-Modified */
                ret = fn(opaque, en->key + plen,
                         &(struct vb_obj_info){ en->size, en->mtime_ns / NS * NS }, e);
            }
        }
        if (!ret && pg.truncated) {
            if (token && !strcmp(token, pg.next_token))
                ret = vb_seterr(e, -EBADMSG, "list %s: the server gave the same continuation "
                                "token twice", prefix);
            g_free(token);
            token = g_strdup(pg.next_token);
        }
        if (!pg.truncated) {
            vb_s3_list_page_clear(&pg);
            break;
        }
        vb_s3_list_page_clear(&pg);
    }
    g_free(token);
    g_free(last);
    g_free(full);
    return ret;
}

/* A DELETE of a name that never exists: S3 checks the permission first (and
 * deletes nothing; on a versioned bucket it leaves a delete marker). */
static int s3_check_remove(void *h, vb_error *e)
{
    struct s3 *s = h;
    char *key = key_of(s, "locks/remove-check");
    struct vb_s3_call *c = vb_s3_call_new("DELETE", key, NULL);
    int ret = 0;

    vb_s3_run(s->http, c);
    if (!c->ret && c->status == 403)
        ret = remove_refused(e, c, "locks/remove-check");
    else if (c->ret || (c->status != 204 && c->status != 200 && c->status != 404))
        ret = call_fail(e, c, "remove", "locks/remove-check");
    vb_s3_call_free(c);
    g_free(key);
    return ret;
}

static int s3_sync(void *h, vb_error *e)
{
    return 0;       /* every acknowledged PUT is durable */
}

static int s3_clean_temp(void *h, int64_t cutoff_ns, unsigned *removed, vb_error *e)
{
    struct s3 *s = h;
    char *key_marker = NULL, *id_marker = NULL;
    GArray *ups = g_array_new(FALSE, FALSE, sizeof(struct vb_s3_upload));
    int ret = 0;

    for (;;) {
        const char *q[] = { "uploads", NULL, "prefix", s->cfg.prefix,
                            key_marker ? "key-marker" : NULL, key_marker,
                            "upload-id-marker", id_marker, NULL };
        GString *qs = g_string_new(NULL);
        struct vb_s3_call *c;
        bool truncated = false;
        char why[200];

        vb_s3_query(qs, q);
        c = vb_s3_call_new("GET", "", qs->str);
        g_string_free(qs, TRUE);
        c->want_body = true;
        vb_s3_run(s->http, c);
        if (c->ret || c->status != 200) {
            ret = call_fail(e, c, "clean", "unfinished uploads");
            vb_s3_call_free(c);
            break;
        }
        g_free(key_marker);
        g_free(id_marker);
        ret = vb_s3_parse_uploads((const char *)c->resp->data, c->resp->len, ups, &truncated,
                                  &key_marker, &id_marker, why, sizeof(why));
        vb_s3_call_free(c);
        if (ret) {
            vb_seterr(e, ret, "clean: the list of unfinished uploads is damaged: %s", why);
            break;
        }
        for (guint i = 0; !ret && i < ups->len; i++) {
            struct vb_s3_upload *u = &g_array_index(ups, struct vb_s3_upload, i);
            if (!g_str_has_prefix(u->key, s->cfg.prefix) || u->initiated_ns >= cutoff_ns)
                continue;
            qs = g_string_new(NULL);
            vb_s3_query(qs, (const char *const[]){ "uploadId", u->upload_id, NULL });
            c = vb_s3_call_new("DELETE", u->key, qs->str);
            g_string_free(qs, TRUE);
            vb_s3_run(s->http, c);
            if (!c->ret && (c->status == 204 || c->status == 200 || c->status == 404))
                (*removed) += c->status != 404;
            else
                ret = call_fail(e, c, "clean", "an unfinished upload");
            vb_s3_call_free(c);
        }
        vb_s3_uploads_free(ups);
        if (ret || !truncated)
            break;
    }
    g_free(key_marker);
    g_free(id_marker);
    g_array_free(ups, TRUE);
    return ret;
}

static void s3_close(void *h)
{
    struct s3 *s = h;

    if (!s)
        return;
    vb_s3_http_free(s->http);
    vb_s3_config_wipe(&s->cfg);
    g_free(s);
}

#define S3_OPS(CAPS) {                          \
    .name = "s3",                               \
    .put = s3_put,                              \
    .get = s3_get,                              \
    .stat = s3_stat,                            \
    .list = s3_list,                            \
    .remove = s3_remove,                        \
    .sync = s3_sync,                            \
    .clean_temp = s3_clean_temp,                \
    .check_remove = s3_check_remove,            \
    .close = s3_close,                          \
    .caps = (CAPS),                             \
    .put_async = s3_put_async,                  \
    .get_async = s3_get_async,                  \
}
static const struct vb_store_ops s3_ops = S3_OPS(VB_STORE_NOREPLACE | VB_STORE_ASYNC);
/* object_lock: puts are locked for a retention period */
static const struct vb_store_ops s3_ops_locked =
    S3_OPS(VB_STORE_NOREPLACE | VB_STORE_ASYNC | VB_STORE_OBJECT_LOCK);

uint64_t vb_store_s3_retries(struct vb_store *st)
{
    struct s3 *s = vb_store_handle(st);

    return strcmp(vb_store_kind(st), "s3") ? 0 : vb_s3_http_retries(s->http);
}

/* object_lock needs a bucket made with Object Lock: GetObjectLockConfiguration */
static int check_bucket_lock(struct s3 *s, const char *loc, vb_error *e)
{
    struct vb_s3_call *c = vb_s3_call_new("GET", "", "object-lock=");
    struct vb_xml *root = NULL;
    const char *enabled = NULL;
    char why[200];
    int ret = 0;

    c->want_body = true;
    vb_s3_run(s->http, c);
    if (!c->ret && c->status == 200 &&
        !vb_xml_parse((const char *)c->resp->data, c->resp->len, &root, why, sizeof(why)))
        enabled = vb_xml_child_text(root, "ObjectLockEnabled");
    if (!c->ret && (c->status == 404 || (c->status == 200 && (!enabled ||
                                                              strcmp(enabled, "Enabled")))))
        ret = vb_seterr(e, -ENOTSUP, "open repository %s: object_lock: bucket %s has no Object "
                        "Lock (it is chosen when a bucket is made: init a repository in a "
                        "new bucket with object_lock to have one made so)", loc, s->cfg.bucket);
    else if (c->ret || c->status != 200)
        ret = call_fail(e, c, "open repository", loc);
    vb_xml_free(root);
    vb_s3_call_free(c);
    return ret;
}

/* The bucket answers (and exists, or is created with VB_STORE_CREATE; with
 * object_lock, with Object Lock enabled). */
static int check_bucket(struct s3 *s, const char *loc, unsigned flags, vb_error *e)
{
    struct vb_s3_call *c = head(s, "");
    GString *body = NULL;
    int ret = 0;

    if (!c->ret && c->status == 200) {
        if (s->cfg.lock_days)
            ret = check_bucket_lock(s, loc, e);
        goto out;
    }
    if (!c->ret && c->status == 404 && (flags & VB_STORE_CREATE)) {
        vb_s3_call_free(c);
        c = vb_s3_call_new("PUT", "", NULL);
        body = g_string_new(NULL);
        if (strcmp(s->cfg.region, "us-east-1"))
            g_string_printf(body, "<CreateBucketConfiguration><LocationConstraint>%s"
                            "</LocationConstraint></CreateBucketConfiguration>", s->cfg.region);
        vb_s3_call_body(c, body->str, body->len, NULL, NULL);
        c->bucket_lock = s->cfg.lock_days != 0;
        vb_s3_run(s->http, c);
        if (!c->ret && (c->status == 200 ||
                        (c->status == 409 && !strcmp(c->s3_code, "BucketAlreadyOwnedByYou"))))
            goto out;
        ret = call_fail(e, c, "create bucket", s->cfg.bucket);
    } else if (!c->ret && c->status == 404) {
        ret = vb_seterr(e, -ENOENT, "open repository %s: no such bucket at %s", loc,
                        s->cfg.endpoint);
    } else if (!c->ret && c->status == 403) {
        ret = vb_seterr(e, -EACCES, "open repository %s: access denied by %s (credentials "
                        "from %s)", loc, s->cfg.endpoint, s->cfg.creds_from);
    } else {
        ret = call_fail(e, c, "open repository", loc);
    }
out:
    if (body)
        g_string_free(body, TRUE);
    vb_s3_call_free(c);
    return ret;
}

int vb_store_s3_open(const char *location, unsigned flags, const char *const *opts,
                     const struct vb_store_ops **ops, void **h, vb_error *e)
{
    struct s3 *s = g_new0(struct s3, 1);
    int ret = vb_s3_config_load(location, opts, &s->cfg, e);

    if (ret) {
        vb_prefixerr(e, "open repository %s", location);
        goto fail;
    }
    ret = vb_s3_http_new(&s->cfg, &s->http, e);
    vb_s3_config_wipe(&s->cfg);
    if (ret)
        goto fail;
    ret = check_bucket(s, location, flags, e);
    if (ret)
        goto fail;
    *ops = s->cfg.lock_days ? &s3_ops_locked : &s3_ops;
    *h = s;
    return 0;
fail:
    s3_close(s);
    return ret;
}
