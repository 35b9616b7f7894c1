/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The S3 backend's configuration (s3.h): options as key=value pairs, the
 * AWS_* variables, a credentials file in AWS's format or a systemd
 * credential.  Secrets never come from a command line: there is no option
 * for a key itself, only for the file that holds it.
 */
#include "s3.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *env(const char *name)
{
    const char *v = getenv(name);

    return v && *v ? v : NULL;
}

static int copy(char *dst, size_t cap, const char *src, const char *what, vb_error *e)
{
    if (strlen(src) >= cap)
        return vb_seterr(e, -EINVAL, "%s is too long", what);
    strcpy(dst, src);
    return 0;
}

/* A secret as read: no control characters, no spaces inside. */
static bool secret_ok(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
            return false;
    return true;
}

/* [profile] aws_access_key_id / aws_secret_access_key / aws_session_token */
static int creds_file(const char *path, const char *profile, struct vb_s3_config *c,
                      vb_error *e)
{
    GKeyFile *kf = g_key_file_new();
    GError *ge = NULL;
    char *id = NULL, *secret = NULL, *token = NULL;
    int ret = 0;

    if (!g_key_file_load_from_file(kf, path, G_KEY_FILE_NONE, &ge)) {
        ret = vb_seterr(e, ge->domain == G_FILE_ERROR && ge->code == G_FILE_ERROR_NOENT ? -ENOENT
                        : ge->domain == G_FILE_ERROR && ge->code == G_FILE_ERROR_ACCES ? -EACCES
                        : -EINVAL, "credentials %s: %s", path, ge->message);
        goto out;
    }
    id = g_key_file_get_string(kf, profile, "aws_access_key_id", NULL);
    secret = g_key_file_get_string(kf, profile, "aws_secret_access_key", NULL);
    token = g_key_file_get_string(kf, profile, "aws_session_token", NULL);
    if (!id || !secret) {
        ret = vb_seterr(e, -EINVAL, "credentials %s: [%s] needs aws_access_key_id and "
                        "aws_secret_access_key", path, profile);
        goto out;
    }
    g_strstrip(id);
    g_strstrip(secret);
    if (!secret_ok(id) || !secret_ok(secret) || (token && !secret_ok(g_strstrip(token)))) {
        ret = vb_seterr(e, -EINVAL, "credentials %s: [%s]: a key is empty or holds spaces or "
                        "control characters", path, profile);
        goto out;
    }
    ret = copy(c->creds.access_key, sizeof(c->creds.access_key), id, "the access key", e);
    if (!ret)
        ret = copy(c->creds.secret_key, sizeof(c->creds.secret_key), secret, "the secret key",
                   e);
    if (!ret && token)
        ret = copy(c->creds.session_token, sizeof(c->creds.session_token), token,
                   "the session token", e);
    snprintf(c->creds_from, sizeof(c->creds_from), "%s [%s]", path, profile);
out:
    if (secret)
        memset(secret, 0, strlen(secret));
    if (token)
        memset(token, 0, strlen(token));
    g_free(id);
    g_free(secret);
    g_free(token);
    g_clear_error(&ge);
    g_key_file_free(kf);
    return ret;
}

static int parse_uint(const char *key, const char *v, unsigned lo, unsigned hi, unsigned *out,
                      vb_error *e)
{
    char *end;
    unsigned long n;

    errno = 0;
    n = strtoul(v, &end, 10);
    if (errno || end == v || *end || n < lo || n > hi)
        return vb_seterr(e, -EINVAL, "option %s=%s: a number from %u to %u", key, v, lo, hi);
    *out = (unsigned)n;
    return 0;
}

int vb_s3_parse_object_lock(const char *v, unsigned *days, bool *compliance, vb_error *e)
{
    const char *comma = strchr(v, ',');
    char num[16];
    size_t n = comma ? (size_t)(comma - v) : strlen(v);

    if (n == 0 || n >= sizeof(num))
        goto bad;
    memcpy(num, v, n);
    num[n] = 0;
    for (size_t i = 0; i < n; i++)
        if (!g_ascii_isdigit(num[i]))
            goto bad;
    if (parse_uint("object_lock", num, 1, VB_S3_LOCK_DAYS_MAX, days, NULL))
        goto bad;
    if (!comma || !strcmp(comma + 1, "governance"))
        *compliance = false;
    else if (!strcmp(comma + 1, "compliance"))
        *compliance = true;
    else
        goto bad;
    return 0;
bad:
    return vb_seterr(e, -EINVAL, "option object_lock=%.64s: DAYS[,governance|compliance], "
                     "DAYS from 1 to %u", v, VB_S3_LOCK_DAYS_MAX);
}

int vb_s3_config_load(const char *location, const char *const *opts, struct vb_s3_config *c,
                      vb_error *e)
{
    const char *endpoint = NULL, *region = NULL, *addressing = "auto", *cfile = NULL;
    const char *cred = NULL, *profile = NULL;
    char path[4096];
    uint64_t size;
    int ret;

    memset(c, 0, sizeof(*c));
    c->connections = 8;
    c->attempts = 6;
    c->timeout_s = 60;
    c->backoff_ms = 200;
    c->multipart_threshold = 64 << 20;
    c->part_size = 16 << 20;
    ret = vb_s3_parse_location(location, c->bucket, c->prefix, e);
    if (ret)
        return ret;
    for (size_t i = 0; opts && opts[i]; i++) {
        const char *eq = strchr(opts[i], '=');
        char key[32];
        const char *v;

        if (!eq || eq == opts[i] || (size_t)(eq - opts[i]) >= sizeof(key))
            return vb_seterr(e, -EINVAL, "option '%.40s' is not KEY=VALUE", opts[i]);
        memcpy(key, opts[i], (size_t)(eq - opts[i]));
        key[eq - opts[i]] = 0;
        v = eq + 1;
        if (!strcmp(key, "endpoint"))
            endpoint = v;
        else if (!strcmp(key, "region"))
            region = v;
        else if (!strcmp(key, "addressing"))
            addressing = v;
        else if (!strcmp(key, "credentials_file"))
            cfile = v;
        else if (!strcmp(key, "profile"))
            profile = v;
        else if (!strcmp(key, "credential"))
            cred = v;
        else if (!strcmp(key, "ca_file"))
            ret = copy(c->ca_file, sizeof(c->ca_file), v, "ca_file", e);
        else if (!strcmp(key, "resolve"))
            ret = copy(c->resolve, sizeof(c->resolve), v, "resolve", e);
        else if (!strcmp(key, "connections"))
            ret = parse_uint(key, v, 1, 256, &c->connections, e);
        else if (!strcmp(key, "attempts"))
            ret = parse_uint(key, v, 1, 100, &c->attempts, e);
        else if (!strcmp(key, "timeout"))
            ret = parse_uint(key, v, 1, 3600, &c->timeout_s, e);
        else if (!strcmp(key, "backoff_ms"))
            ret = parse_uint(key, v, 1, 60000, &c->backoff_ms, e);
        else if (!strcmp(key, "multipart_threshold") || !strcmp(key, "part_size")) {
            if (vb_parse_size(v, &size) || size < (5 << 20) || size > (UINT64_C(5) << 30))
                return vb_seterr(e, -EINVAL, "option %s=%s: a size from 5M to 5G", key, v);
            if (key[0] == 'm')
                c->multipart_threshold = size;
            else
                c->part_size = size;
        } else if (!strcmp(key, "object_lock"))
            ret = vb_s3_parse_object_lock(v, &c->lock_days, &c->lock_compliance, e);
        else
            return vb_seterr(e, -EINVAL, "unknown option '%s' for s3:// (endpoint, region, "
                             "addressing, credentials_file, profile, credential, ca_file, "
                             "resolve, connections, attempts, timeout, backoff_ms, "
                             "multipart_threshold, part_size, object_lock)", key);
        if (ret)
            return ret;
    }

    /* region and endpoint */
    if (!region)
        region = env("AWS_REGION") ?: env("AWS_DEFAULT_REGION") ?: "us-east-1";
    for (const char *p = region; *p; p++)
        if (!g_ascii_isalnum(*p) && *p != '-')
            return vb_seterr(e, -EINVAL, "region '%.64s': letters, digits and '-' only",
                             region);
    ret = copy(c->region, sizeof(c->region), region, "the region", e);
    if (ret)
        return ret;
    if (!endpoint)
        endpoint = env("AWS_ENDPOINT_URL_S3") ?: env("AWS_ENDPOINT_URL");
    if (endpoint) {
        ret = copy(c->endpoint, sizeof(c->endpoint), endpoint, "the endpoint", e);
    } else {
        snprintf(c->endpoint, sizeof(c->endpoint), "https://s3.%s.amazonaws.com", c->region);
    }
    if (!ret)
        ret = vb_s3_parse_endpoint(c->endpoint, &c->ep, e);
    if (ret)
        return ret;
    if (!strcmp(addressing, "path")) {
        c->virtual_host = false;
    } else if (!strcmp(addressing, "virtual")) {
        if (!vb_s3_bucket_dns_ok(c->bucket))
            return vb_seterr(e, -EINVAL, "bucket %s cannot be a host name: use "
                             "addressing=path", c->bucket);
        c->virtual_host = true;
    } else if (!strcmp(addressing, "auto")) {
        /* AWS wants virtual hosts; other servers are usually addressed by path */
        c->virtual_host = vb_s3_bucket_dns_ok(c->bucket) &&
                          g_str_has_suffix(c->ep.host, ".amazonaws.com");
    } else {
        return vb_seterr(e, -EINVAL, "option addressing=%s: path, virtual or auto", addressing);
    }
    if (c->part_size > c->multipart_threshold)
        c->part_size = c->multipart_threshold;

    /* credentials */
    if (!profile)
        profile = env("AWS_PROFILE") ?: "default";
    if (cfile && cred)
        return vb_seterr(e, -EINVAL, "give credentials_file or credential, not both");
    if (cred) {
        const char *dir = env("CREDENTIALS_DIRECTORY");
        if (!*cred || strchr(cred, '/') || !strcmp(cred, ".") || !strcmp(cred, ".."))
            return vb_seterr(e, -EINVAL, "credential name '%.64s' is not a file name", cred);
        if (!dir)
            return vb_seterr(e, -ENOKEY, "credential %s: CREDENTIALS_DIRECTORY is not set "
                             "(give the service LoadCredential=%s:FILE)", cred, cred);
        snprintf(path, sizeof(path), "%s/%s", dir, cred);
        return creds_file(path, profile, c, e);
    }
    if (cfile)
        return creds_file(cfile, profile, c, e);
    if (env("AWS_ACCESS_KEY_ID") || env("AWS_SECRET_ACCESS_KEY")) {
        const char *id = env("AWS_ACCESS_KEY_ID"), *secret = env("AWS_SECRET_ACCESS_KEY");
        const char *token = env("AWS_SESSION_TOKEN");
        if (!id || !secret || !secret_ok(id) || !secret_ok(secret) ||
            (token && !secret_ok(token)))
            return vb_seterr(e, -EINVAL, "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must "
                             "both be set, without spaces");
        ret = copy(c->creds.access_key, sizeof(c->creds.access_key), id, "AWS_ACCESS_KEY_ID",
                   e);
        if (!ret)
            ret = copy(c->creds.secret_key, sizeof(c->creds.secret_key), secret,
                       "AWS_SECRET_ACCESS_KEY", e);
        if (!ret && token)
            ret = copy(c->creds.session_token, sizeof(c->creds.session_token), token,
                       "AWS_SESSION_TOKEN", e);
        snprintf(c->creds_from, sizeof(c->creds_from), "AWS_ACCESS_KEY_ID");
        return ret;
    }
    if (env("AWS_SHARED_CREDENTIALS_FILE"))
        return creds_file(env("AWS_SHARED_CREDENTIALS_FILE"), profile, c, e);
    return vb_seterr(e, -ENOKEY, "no S3 credentials: give credentials_file or credential, or "
                     "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY");
}

void vb_s3_config_wipe(struct vb_s3_config *c)
{
    volatile char *p = (volatile char *)&c->creds;

    for (size_t i = 0; i < sizeof(c->creds); i++)
        p[i] = 0;
}
