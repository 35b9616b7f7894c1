/* SPDX-License-Identifier: GPL-2.0-or-later */
/* S3 locations, endpoints, URI encoding, request targets and dates (s3.h). */
#include "s3.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* S3's rules for new buckets (3-63 of [a-z0-9.-], starting and ending with a
 * letter or digit), and the underscore and capitals that older buckets and
 * other servers allow: path-style only. */
static bool bucket_valid(const char *b, size_t n)
{
    if (n < 3 || n > 63)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)b[i]) && b[i] != '.' && b[i] != '-' && b[i] != '_')
            return false;
    return isalnum((unsigned char)b[0]) && isalnum((unsigned char)b[n - 1]);
}

bool vb_s3_bucket_dns_ok(const char *b)
{
    size_t n = strlen(b);
    int dots = 0;

    if (!bucket_valid(b, n) || strstr(b, "..") || strstr(b, ".-") || strstr(b, "-."))
        return false;
    for (size_t i = 0; i < n; i++) {
        if ((b[i] >= 'A' && b[i] <= 'Z') || b[i] == '_')
            return false;
        dots += b[i] == '.';
    }
    /* not an IPv4 address; dots would also break TLS wildcards */
    return dots == 0;
}

static bool prefix_char_ok(char c)
{
    return isalnum((unsigned char)c) || strchr("-._~!$&'()*+,;=:@/", c);
}

int vb_s3_parse_location(const char *loc, char bucket[VB_S3_BUCKET_MAX],
                         char prefix[VB_S3_PREFIX_MAX], vb_error *e)
{
    const char *b, *slash;
    size_t bn, pn;

    if (strncmp(loc, "s3://", 5))
        return vb_seterr(e, -EINVAL, "not an s3:// location");
    b = loc + 5;
    slash = strchr(b, '/');
    bn = slash ? (size_t)(slash - b) : strlen(b);
    if (!bucket_valid(b, bn))
        return vb_seterr(e, -EINVAL, "invalid bucket name (3 to 63 letters, digits, '.', "
                         "'-' or '_', starting and ending with a letter or digit)");
    memcpy(bucket, b, bn);
    bucket[bn] = 0;
    prefix[0] = 0;
    if (!slash || !slash[1])
        return 0;
    slash++;
    pn = strlen(slash);
    if (slash[pn - 1] == '/')
        pn--;           /* "s3://b/p/" is "s3://b/p" */
    if (pn + 2 > VB_S3_PREFIX_MAX)
        return vb_seterr(e, -EINVAL, "prefix too long");
    for (size_t i = 0; i < pn; i++)
        if (!prefix_char_ok(slash[i]))
            return vb_seterr(e, -EINVAL, "the prefix holds a character that is not allowed "
                             "(byte %#x)", (unsigned char)slash[i]);
    /* components: not empty, not "." or ".." */
    for (size_t i = 0; i < pn;) {
        size_t j = i;
        while (j < pn && slash[j] != '/')
            j++;
        if (j == i || (j - i == 1 && slash[i] == '.') ||
            (j - i == 2 && slash[i] == '.' && slash[i + 1] == '.'))
            return vb_seterr(e, -EINVAL, "the prefix has an empty, '.' or '..' component");
        i = j + 1;
    }
    memcpy(prefix, slash, pn);
    prefix[pn] = '/';
    prefix[pn + 1] = 0;
    return 0;
}

int vb_s3_parse_endpoint(const char *url, struct vb_s3_endpoint *ep, vb_error *e)
{
    const char *h, *end, *port = NULL;
    size_t hn;

    memset(ep, 0, sizeof(*ep));
    if (!strncasecmp(url, "https://", 8)) {
        ep->tls = true;
        h = url + 8;
    } else if (!strncasecmp(url, "http://", 7)) {
        h = url + 7;
    } else {
        return vb_seterr(e, -EINVAL, "endpoint %s: not an http:// or https:// URL", url);
    }
    end = h + strcspn(h, "/?#");
    if (*end == '/' && end[1] == 0)
        ;               /* one trailing slash */
    else if (*end)
        return vb_seterr(e, -EINVAL, "endpoint %s: a path, query or fragment is not allowed",
                         url);
    if (*h == '[') {
        const char *close = memchr(h, ']', (size_t)(end - h));
        if (!close)
            return vb_seterr(e, -EINVAL, "endpoint %s: unbalanced '['", url);
        hn = (size_t)(close - h) + 1;
        if (close + 1 < end) {
            if (close[1] != ':')
                return vb_seterr(e, -EINVAL, "endpoint %s: bad port", url);
            port = close + 2;
        }
        for (const char *p = h + 1; p < close; p++)
            if (!isxdigit((unsigned char)*p) && *p != ':' && *p != '.')
                return vb_seterr(e, -EINVAL, "endpoint %s: bad IPv6 address", url);
    } else {
        const char *colon = memchr(h, ':', (size_t)(end - h));
        hn = colon ? (size_t)(colon - h) : (size_t)(end - h);
        if (colon)
            port = colon + 1;
        for (size_t i = 0; i < hn; i++)
            if (!isalnum((unsigned char)h[i]) && h[i] != '.' && h[i] != '-' && h[i] != '_')
                return vb_seterr(e, -EINVAL, "endpoint %s: bad host name (user names and "
                                 "other characters are not allowed)", url);
    }
    if (hn == 0 || hn >= sizeof(ep->host))
        return vb_seterr(e, -EINVAL, "endpoint %s: bad host", url);
    for (size_t i = 0; i < hn; i++)
        ep->host[i] = (char)tolower((unsigned char)h[i]);
    ep->host[hn] = 0;
    if (port) {
        unsigned long v = 0;
        if (port == end || end - port > 5)
            return vb_seterr(e, -EINVAL, "endpoint %s: bad port", url);
        for (const char *p = port; p < end; p++) {
            if (!isdigit((unsigned char)*p))
                return vb_seterr(e, -EINVAL, "endpoint %s: bad port", url);
            v = v * 10 + (unsigned long)(*p - '0');
        }
        if (v == 0 || v > 65535)
            return vb_seterr(e, -EINVAL, "endpoint %s: bad port", url);
        if (v != (ep->tls ? 443u : 80u))
            ep->port = (unsigned)v;
    }
    return 0;
}

void vb_s3_uri_encode(GString *out, const char *s, bool keep_slash)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' ||
            (c == '/' && keep_slash))
            g_string_append_c(out, (char)c);
        else
            g_string_append_printf(out, "%%%02X", c);
    }
}

void vb_s3_host(const struct vb_s3_endpoint *ep, const char *bucket, bool virtual_host,
                char *out, size_t cap)
{
    char port[8] = "";

    if (ep->port)
        snprintf(port, sizeof(port), ":%u", ep->port);
    snprintf(out, cap, "%s%s%s%s", virtual_host ? bucket : "", virtual_host ? "." : "",
             ep->host, port);
}

void vb_s3_path(const char *bucket, const char *key, bool virtual_host, GString *out)
{
    g_string_append_c(out, '/');
    if (!virtual_host) {
        vb_s3_uri_encode(out, bucket, false);
        if (key[0])
            g_string_append_c(out, '/');
    }
    vb_s3_uri_encode(out, key, true);
}

struct qpart {
    GString *k, *v;
};

static int qpart_cmp(const void *a, const void *b)
{
    const struct qpart *x = a, *y = b;
    int c = strcmp(x->k->str, y->k->str);

    return c ? c : strcmp(x->v->str, y->v->str);
}

void vb_s3_query(GString *out, const char *const *kv)
{
    size_t n = 0;
    struct qpart *p;

    while (kv[2 * n])
        n++;
    p = g_new0(struct qpart, n ? n : 1);
    for (size_t i = 0; i < n; i++) {
        p[i].k = g_string_new(NULL);
        p[i].v = g_string_new(NULL);
        vb_s3_uri_encode(p[i].k, kv[2 * i], false);
        if (kv[2 * i + 1])
            vb_s3_uri_encode(p[i].v, kv[2 * i + 1], false);
    }
    qsort(p, n, sizeof(*p), qpart_cmp);
    for (size_t i = 0; i < n; i++) {
        g_string_append_printf(out, "%s%s=%s", i ? "&" : "", p[i].k->str, p[i].v->str);
        g_string_free(p[i].k, TRUE);
        g_string_free(p[i].v, TRUE);
    }
    g_free(p);
}

/* ---- dates ----------------------------------------------------------------- */

static bool digits(const char *s, int n, int *out)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

static int to_ns(int y, int mo, int d, int h, int mi, int s, int64_t frac_ns, int64_t *ns)
{
    static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    struct tm tm = { 0 };
    time_t t;

    if (y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 ||
        mi > 59 || s > 60)
        return -EINVAL;
    if (mo == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return -EINVAL;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = s;
    t = timegm(&tm);
    if (t == (time_t)-1)
        return -EINVAL;
    *ns = (int64_t)t * 1000000000 + frac_ns;
    return 0;
}

int vb_s3_parse_iso8601(const char *s, int64_t *ns)
{
    int y, mo, d, h, mi, sec;
    int64_t frac = 0, scale = 100000000;
    const char *p;

    if (strlen(s) < 20 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) ||
        s[7] != '-' || !digits(s + 8, 2, &d) || s[10] != 'T' || !digits(s + 11, 2, &h) ||
        s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' || !digits(s + 17, 2, &sec))
        return -EINVAL;
    p = s + 19;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            return -EINVAL;
        for (; isdigit((unsigned char)*p); p++) {
            frac += (*p - '0') * scale;
            scale /= 10;
        }
    }
    if (strcmp(p, "Z"))
        return -EINVAL;
    return to_ns(y, mo, d, h, mi, sec, frac, ns);
}

int vb_s3_parse_http_date(const char *s, int64_t *ns)
{
    static const char *const days[] = { "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun" };
    static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
    int d, y, h, mi, sec, mo = -1;
    bool day_ok = false;

    /* "Sun, 06 Nov 1994 08:49:37 GMT": exactly 29 characters */
    if (strlen(s) != 29 || s[3] != ',' || s[4] != ' ' || s[7] != ' ' || s[11] != ' ' ||
        s[16] != ' ' || s[19] != ':' || s[22] != ':' || s[25] != ' ' || strcmp(s + 26, "GMT"))
        return -EINVAL;
    for (int i = 0; i < 7; i++)
        day_ok |= !strncmp(s, days[i], 3);
    for (int i = 0; i < 12; i++)
        if (!strncmp(s + 8, months[i], 3))
            mo = i + 1;
    if (!day_ok || mo < 0 || !digits(s + 5, 2, &d) || !digits(s + 12, 4, &y) ||
        !digits(s + 17, 2, &h) || !digits(s + 20, 2, &mi) || !digits(s + 23, 2, &sec))
        return -EINVAL;
    return to_ns(y, mo, d, h, mi, sec, 0, ns);
}

void vb_s3_amz_date(int64_t sec, char out[17])
{
    time_t t = (time_t)sec;
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

void vb_s3_lock_until(int64_t now_s, unsigned days, char out[32])
{
    int64_t until = now_s + (int64_t)days * 86400;
    time_t t = (time_t)((until + 59) / 60 * 60);
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}
