/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * AWS Signature Version 4 for S3 (s3.h): the canonical request, the string
 * to sign and the derived signing key, as in AWS's "Signature Calculations
 * for the Authorization Header".  Done here rather than by libcurl's
 * CURLOPT_AWS_SIGV4 so that every signed header, the canonical query and
 * x-amz-content-sha256 are ours and tested (curl 7.88 leaves the payload
 * hash out, which radosgw rejects).
 */
#include "s3.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void vb_s3_sha256_hex(const void *buf, size_t len, char out[65])
{
    uint8_t md[32];
    unsigned mdlen = 0;

    EVP_Digest(buf, len, md, &mdlen, EVP_sha256(), NULL);
    vb_hex(md, 32, out);
}

void vb_s3_md5(const void *buf, size_t len, uint8_t out[16])
{
    unsigned mdlen = 0;

    EVP_Digest(buf, len, out, &mdlen, EVP_md5(), NULL);
}

static void hmac(const void *key, size_t keylen, const char *msg, uint8_t out[32])
{
    unsigned n = 32;

    HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)msg, strlen(msg), out, &n);
}

static int header_cmp(const void *a, const void *b)
{
    return strcmp(((const struct vb_s3_header *)a)->name,
                  ((const struct vb_s3_header *)b)->name);
}

/* A header value as canonical: leading and trailing spaces dropped, runs of
 * spaces inside folded to one. */
static void append_trimmed(GString *out, const char *v)
{
    bool space = false;

    while (*v == ' ' || *v == '\t')
        v++;
    for (; *v; v++) {
        if (*v == ' ' || *v == '\t') {
            space = true;
            continue;
        }
        if (space)
            g_string_append_c(out, ' ');
        space = false;
        g_string_append_c(out, *v);
    }
}

void vb_s3_sign(const struct vb_s3_creds *c, const char *region, const char *method,
                const char *path, const char *query, struct vb_s3_header *headers, size_t n,
                const char *payload_sha256, const char *amz_date, GString *authorization,
                GString *canonical)
{
    GString *req = g_string_new(NULL), *signed_h = g_string_new(NULL), *sts;
    char date[9], req_hash[65], sig[65], scope[128];
    uint8_t k[32], k2[32];
    GString *secret;

    qsort(headers, n, sizeof(*headers), header_cmp);
    g_string_append_printf(req, "%s\n%s\n%s\n", method, path, query);
    for (size_t i = 0; i < n; i++) {
        g_string_append_printf(req, "%s:", headers[i].name);
        append_trimmed(req, headers[i].value);
        g_string_append_c(req, '\n');
        g_string_append_printf(signed_h, "%s%s", i ? ";" : "", headers[i].name);
    }
    g_string_append_printf(req, "\n%s\n%s", signed_h->str, payload_sha256);
    if (canonical)
        g_string_assign(canonical, req->str);

    memcpy(date, amz_date, 8);
    date[8] = 0;
    snprintf(scope, sizeof(scope), "%s/%s/s3/aws4_request", date, region);
    vb_s3_sha256_hex(req->str, req->len, req_hash);
    sts = g_string_new(NULL);
    g_string_append_printf(sts, "AWS4-HMAC-SHA256\n%s\n%s\n%s", amz_date, scope, req_hash);

    secret = g_string_new("AWS4");
    g_string_append(secret, c->secret_key);
    hmac(secret->str, secret->len, date, k);
    hmac(k, 32, region, k2);
    hmac(k2, 32, "s3", k);
    hmac(k, 32, "aws4_request", k2);
    hmac(k2, 32, sts->str, k);
    vb_hex(k, 32, sig);

    g_string_printf(authorization,
                    "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s",
                    c->access_key, scope, signed_h->str, sig);

    /* nothing derived from the secret stays in memory longer than needed */
    memset(secret->str, 0, secret->len);
    g_string_free(secret, TRUE);
    memset(k, 0, sizeof(k));
    memset(k2, 0, sizeof(k2));
    g_string_free(sts, TRUE);
    g_string_free(req, TRUE);
    g_string_free(signed_h, TRUE);
}

size_t vb_s3_call_headers(const struct vb_s3_call *c, const char *host, const char *date,
                          const char *session_token, char range[64],
                          struct vb_s3_header hs[VB_S3_HEADERS_MAX])
{
    size_t n = 0;

    hs[n++] = (struct vb_s3_header){ "host", host };
    hs[n++] = (struct vb_s3_header){ "x-amz-date", date };
    hs[n++] = (struct vb_s3_header){ "x-amz-content-sha256", c->payload_sha256 };
    if (c->content_md5[0])
        hs[n++] = (struct vb_s3_header){ "content-md5", c->content_md5 };
    if (c->if_none_match)
        hs[n++] = (struct vb_s3_header){ "if-none-match", "*" };
    if (c->lock_mode) {
        /* S3 wants Content-MD5 (or a checksum) with these; puts send it */
        hs[n++] = (struct vb_s3_header){ "x-amz-object-lock-mode", c->lock_mode };
        hs[n++] = (struct vb_s3_header){ "x-amz-object-lock-retain-until-date", c->lock_until };
    }
    if (c->bucket_lock)
        hs[n++] = (struct vb_s3_header){ "x-amz-bucket-object-lock-enabled", "true" };
    if (c->owner_acl)
        /* the bucket's owner may read what another user (a backup-only
         * credential) writes: radosgw makes the writer the object's owner */
        hs[n++] = (struct vb_s3_header){ "x-amz-acl", "bucket-owner-full-control" };
    if (c->range) {
        snprintf(range, 64, "bytes=%llu-%llu", (unsigned long long)c->off,
                 (unsigned long long)(c->off + c->len - 1));
        hs[n++] = (struct vb_s3_header){ "range", range };
    }
    if (session_token[0])
        hs[n++] = (struct vb_s3_header){ "x-amz-security-token", session_token };
    return n;
}
