/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The S3 backend's HTTP engine (s3.h): one libcurl multi handle driven by
 * one I/O thread per store.  Calls are submitted from any thread; at most
 * config.connections are on the wire at once, the others wait in a queue
 * (each holds only its headers and a pointer to the caller's buffer, so
 * memory is bounded by what callers submit).  Every try is signed afresh.
 *
 * Retries, with exponential backoff and jitter, up to config.attempts tries:
 * transport failures (refused or dropped connections, timeouts, no answer,
 * a body shorter than announced), HTTP 408, 429, 500, 502, 503, 504, and S3
 * error codes RequestTimeout, SlowDown, InternalError, ServiceUnavailable
 * (also inside a 200 answer, as CompleteMultipartUpload may send them).  A
 * 2xx GET whose body is not exactly what Content-Range (or Content-Length)
 * announced is retried too: a short body is never passed on.  Only
 * idempotent requests are sent through here (a PUT of the same bytes, GET,
 * HEAD, DELETE, the multipart calls).  A caller can never know whether an
 * earlier try reached the server: besides our own retries, curl itself
 * sends a request again, without a word, when the reused connection it
 * went out on turns out to be closed after the request was written (a
 * server that carried it out and dropped the answer looks just like that).
 * So answers that a repeated request changes (412 to an If-None-Match put,
 * NoSuchUpload to a complete) are checked by the caller every time.
 */
#include "s3.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct vb_s3_http {
    struct vb_s3_config cfg;
    CURLM *multi;
    GThread *thread;
    struct curl_slist *resolve;
    GMutex lock;
    GQueue incoming;         /* submitted, not yet taken by the thread */
    bool stop;
    GQueue waiting;          /* thread only: to start, some not before a time */
    unsigned active;         /* thread only: on the wire */
    guint retries;           /* atomic */
};

struct try {
    CURL *easy;
    struct curl_slist *hdrs;
    char *url;
    size_t rpos;             /* upload position */
    int64_t not_before;      /* monotonic µs */
    bool overflow;           /* more body than expected */
    bool in_header_status;
    char errbuf[CURL_ERROR_SIZE];
};

static int64_t mono_us(void)
{
    return g_get_monotonic_time();
}

/* ---- calls --------------------------------------------------------------------- */

struct vb_s3_call *vb_s3_call_new(const char *method, const char *key, const char *query)
{
    struct vb_s3_call *c = g_new0(struct vb_s3_call, 1);

    c->method = method;
    c->key = g_strdup(key);
    c->query = g_strdup(query ? query : "");
    c->resp = g_byte_array_new();
    c->priv = g_new0(struct try, 1);
    vb_s3_sha256_hex("", 0, c->payload_sha256);
    return c;
}

void vb_s3_call_free(struct vb_s3_call *c)
{
    if (!c)
        return;
    g_free(c->key);
    g_free(c->query);
    g_byte_array_free(c->resp, TRUE);
    g_free(c->priv);
    g_free(c);
}

void vb_s3_call_body(struct vb_s3_call *c, const void *buf, size_t len, const uint8_t *md5,
                     const char *sha256)
{
    gchar *b64;

    c->body = buf;
    c->body_len = len;
    if (sha256)
        snprintf(c->payload_sha256, sizeof(c->payload_sha256), "%s", sha256);
    else
        vb_s3_sha256_hex(buf, len, c->payload_sha256);
    c->content_md5[0] = 0;
    if (md5) {
        b64 = g_base64_encode(md5, 16);
        snprintf(c->content_md5, sizeof(c->content_md5), "%s", b64);
        g_free(b64);
    }
}

void vb_s3_call_describe(const struct vb_s3_call *c, char *buf, size_t cap)
{
    if (c->ret && !c->status) {
        snprintf(buf, cap, "%s", c->err.msg);
        return;
    }
    if (c->ret) {
        snprintf(buf, cap, "%s", c->err.msg);
        return;
    }
    snprintf(buf, cap, "S3 %s %s: HTTP %ld%s%s%s%s%s", c->method, c->key[0] ? c->key : "(bucket)",
             c->status, c->s3_code[0] ? " " : "", c->s3_code, c->s3_msg[0] ? " (" : "",
             c->s3_msg, c->s3_msg[0] ? ")" : "");
}

uint64_t vb_s3_http_retries(struct vb_s3_http *h)
{
    return (uint64_t)g_atomic_int_get(&h->retries);
}

/* ---- curl callbacks ------------------------------------------------------------- */

static bool header_is(const char *line, size_t n, const char *name, const char **value,
                      size_t *vlen)
{
    size_t nl = strlen(name);

    if (n <= nl || strncasecmp(line, name, nl) || line[nl] != ':')
        return false;
    *value = line + nl + 1;
    *vlen = n - nl - 1;
    while (*vlen && (**value == ' ' || **value == '\t')) {
        (*value)++;
        (*vlen)--;
    }
    while (*vlen && strchr(" \t\r\n", (*value)[*vlen - 1]))
        (*vlen)--;
    return true;
}

static void copy_value(char *dst, size_t cap, const char *v, size_t n)
{
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, v, n);
    dst[n] = 0;
}

static size_t on_header(char *line, size_t size, size_t nmemb, void *opaque)
{
    struct vb_s3_call *c = opaque;
    size_t n = size * nmemb, vl;
    const char *v;
    char tmp[128];

    if (n >= 5 && !strncmp(line, "HTTP/", 5)) {
        const char *sp = memchr(line, ' ', n);
        /* a new answer (after a 100 Continue): forget the previous one */
        c->status = sp ? strtol(sp + 1, NULL, 10) : 0;
        c->etag[0] = c->version_id[0] = 0;
        c->have_length = c->have_mtime = false;
        c->content_range[0] = 0;
        return n;
    }
    if (header_is(line, n, "ETag", &v, &vl)) {
        if (vl >= 2 && v[0] == '"' && v[vl - 1] == '"') {
            v++;
            vl -= 2;
        }
        copy_value(c->etag, sizeof(c->etag), v, vl);
    } else if (header_is(line, n, "Content-Length", &v, &vl)) {
        char *end;
        copy_value(tmp, sizeof(tmp), v, vl);
        errno = 0;
        c->length = strtoull(tmp, &end, 10);
        c->have_length = !errno && end != tmp && !*end && tmp[0] != '-';
    } else if (header_is(line, n, "Last-Modified", &v, &vl)) {
        copy_value(tmp, sizeof(tmp), v, vl);
        c->have_mtime = vb_s3_parse_http_date(tmp, &c->mtime_ns) == 0;
    } else if (header_is(line, n, "Content-Range", &v, &vl)) {
        copy_value(c->content_range, sizeof(c->content_range), v, vl);
    } else if (header_is(line, n, "x-amz-version-id", &v, &vl)) {
        copy_value(c->version_id, sizeof(c->version_id), v, vl);
    }
    return n;
}

static bool ok_status(long s)
{
    return s >= 200 && s < 300;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *opaque)
{
    struct vb_s3_call *c = opaque;
    struct try *t = c->priv;
    size_t n = size * nmemb;

    if (!ok_status(c->status)) {
        /* an error document: keep what fits */
        size_t room = VB_S3_BODY_MAX - VB_MIN(c->resp->len, VB_S3_BODY_MAX);
        g_byte_array_append(c->resp, (const guint8 *)data, (guint)VB_MIN(n, room));
        return n;
    }
    if (c->range && c->status == 206) {
        if (c->got + n > c->len) {
            t->overflow = true;
            return 0;
        }
        memcpy(c->out + c->got, data, n);
    } else if (c->range) {
        /* 200: the whole object; keep the window [off, off + len) */
        uint64_t lo = VB_MAX(c->got, c->off), hi = VB_MIN(c->got + n, c->off + c->len);
        if (lo < hi)
            memcpy(c->out + (lo - c->off), data + (lo - c->got), hi - lo);
    } else if (c->want_body) {
        if (c->resp->len + n > VB_S3_BODY_MAX) {
            t->overflow = true;
            return 0;
        }
        g_byte_array_append(c->resp, (const guint8 *)data, (guint)n);
    }
    c->got += n;
    return n;
}

static size_t on_read(char *buf, size_t size, size_t nmemb, void *opaque)
{
    struct vb_s3_call *c = opaque;
    struct try *t = c->priv;
    size_t n = VB_MIN(size * nmemb, c->body_len - t->rpos);

    memcpy(buf, c->body + t->rpos, n);
    t->rpos += n;
    return n;
}

static int on_seek(void *opaque, curl_off_t off, int origin)
{
    struct vb_s3_call *c = opaque;
    struct try *t = c->priv;

    if (origin != SEEK_SET || off < 0 || (uint64_t)off > c->body_len)
        return CURL_SEEKFUNC_FAIL;
    t->rpos = (size_t)off;
    return CURL_SEEKFUNC_OK;
}

/* ---- one try ------------------------------------------------------------------------ */

static struct curl_slist *add_header(struct curl_slist *l, const char *name, const char *value)
{
    char *line = g_strdup_printf("%s: %s", name, value);
    struct curl_slist *r = curl_slist_append(l, line);

    g_free(line);
    return r;
}

static int start_try(struct vb_s3_http *h, struct vb_s3_call *c)
{
    const struct vb_s3_config *cfg = &h->cfg;
    struct try *t = c->priv;
    struct vb_s3_header hs[VB_S3_HEADERS_MAX];
    char host[400], date[17], range[64];
    GString *path = g_string_new(NULL), *auth = g_string_new(NULL);
    size_t n;
    CURL *e;

    /* forget the previous try */
    c->status = 0;
    c->etag[0] = c->content_range[0] = c->s3_code[0] = c->s3_msg[0] = c->version_id[0] = 0;
    c->have_length = c->have_mtime = false;
    c->got = 0;
    g_byte_array_set_size(c->resp, 0);
    t->rpos = 0;
    t->overflow = false;
    t->errbuf[0] = 0;
    c->tries++;

    vb_s3_host(&cfg->ep, cfg->bucket, cfg->virtual_host, host, sizeof(host));
    vb_s3_path(cfg->bucket, c->key, cfg->virtual_host, path);
    vb_s3_amz_date(time(NULL), date);
    n = vb_s3_call_headers(c, host, date, cfg->creds.session_token, range, hs);
    vb_s3_sign(&cfg->creds, cfg->region, c->method, path->str, c->query, hs, n,
               c->payload_sha256, date, auth, NULL);

    t->hdrs = NULL;
    for (size_t i = 0; i < n; i++)
        t->hdrs = add_header(t->hdrs, hs[i].name, hs[i].value);
    t->hdrs = add_header(t->hdrs, "authorization", auth->str);
    t->hdrs = curl_slist_append(t->hdrs, "Expect:");
    t->hdrs = curl_slist_append(t->hdrs, "Accept:");
    if (!strcmp(c->method, "POST"))
        t->hdrs = add_header(t->hdrs, "content-type", "application/xml");
    memset(auth->str, 0, auth->len);
    g_string_free(auth, TRUE);

    t->url = g_strdup_printf("%s://%s%s%s%s", cfg->ep.tls ? "https" : "http", host, path->str,
                             c->query[0] ? "?" : "", c->query);
    g_string_free(path, TRUE);

    e = t->easy = curl_easy_init();
    if (!e)
        return -ENOMEM;
    curl_easy_setopt(e, CURLOPT_URL, t->url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->hdrs);
    curl_easy_setopt(e, CURLOPT_PRIVATE, c);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, (long)VB_MIN(cfg->timeout_s, 30));
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, (long)cfg->timeout_s);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    if (cfg->ca_file[0])
        curl_easy_setopt(e, CURLOPT_CAINFO, cfg->ca_file);
    if (h->resolve)
        curl_easy_setopt(e, CURLOPT_RESOLVE, h->resolve);
    if (!strcmp(c->method, "HEAD")) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (!strcmp(c->method, "PUT")) {
        curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(e, CURLOPT_READDATA, c);
        curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, on_seek);
        curl_easy_setopt(e, CURLOPT_SEEKDATA, c);
        curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)c->body_len);
    } else if (!strcmp(c->method, "POST")) {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, (const char *)c->body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)c->body_len);
    } else if (!strcmp(c->method, "DELETE")) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "DELETE");
    }
    if (curl_multi_add_handle(h->multi, e) != CURLM_OK)
        return -ENOMEM;
    h->active++;
    return 0;
}

static void end_try(struct vb_s3_http *h, struct vb_s3_call *c)
{
    struct try *t = c->priv;

    if (t->easy) {
        curl_multi_remove_handle(h->multi, t->easy);
        curl_easy_cleanup(t->easy);
        h->active--;
    }
    t->easy = NULL;
    curl_slist_free_all(t->hdrs);
    t->hdrs = NULL;
    g_free(t->url);
    t->url = NULL;
}

static bool transient_code(const char *code)
{
    return !strcmp(code, "RequestTimeout") || !strcmp(code, "SlowDown") ||
           !strcmp(code, "InternalError") || !strcmp(code, "ServiceUnavailable");
}

static int curl_errno(CURLcode cc)
{
    switch (cc) {
    case CURLE_OPERATION_TIMEDOUT: return -ETIMEDOUT;
    case CURLE_COULDNT_CONNECT: return -ECONNREFUSED;
    case CURLE_COULDNT_RESOLVE_HOST: return -EHOSTUNREACH;
    case CURLE_OUT_OF_MEMORY: return -ENOMEM;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM: return -EPROTO;
    default: return -EIO;
    }
}

static bool transient_curl(CURLcode cc)
{
    switch (cc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_WRITE_ERROR:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_WEIRD_SERVER_REPLY:
        return true;
    default:
        return false;
    }
}

/* 0: a whole answer; else why it is not one (and whether a retry may help) */
static bool body_complete(struct vb_s3_call *c, char *why, size_t cap)
{
    uint64_t first, last, total;

    if (!ok_status(c->status) || !strcmp(c->method, "HEAD"))
        return true;
    if (c->range && c->status == 206) {
        if (vb_s3_parse_content_range(c->content_range, &first, &last, &total)) {
            snprintf(why, cap, "206 without a valid Content-Range");
            return false;
        }
        if (c->got != last - first + 1) {
            snprintf(why, cap, "%llu bytes of a %llu-byte range received",
                     (unsigned long long)c->got, (unsigned long long)(last - first + 1));
            return false;
        }
        return true;
    }
    if (c->have_length && c->got != c->length && c->status != 204) {
        snprintf(why, cap, "%llu bytes of %llu received", (unsigned long long)c->got,
                 (unsigned long long)c->length);
        return false;
    }
    return true;
}

static void finish_try(struct vb_s3_http *h, struct vb_s3_call *c, CURLcode cc)
{
    const struct vb_s3_config *cfg = &h->cfg;
    struct try *t = c->priv;
    char why[256] = "";
    bool transient = false;
    long status = 0;
    int err = 0;

    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
    end_try(h, c);
    if (cc != CURLE_OK) {
        c->status = 0;
        transient = transient_curl(cc);
        err = curl_errno(cc);
        snprintf(why, sizeof(why), "%s", t->overflow ? "more data than asked for"
                 : t->errbuf[0] ? t->errbuf : curl_easy_strerror(cc));
        why[strcspn(why, "\r\n")] = 0;
    } else {
        c->status = status;
        if (!ok_status(status) || (c->want_body && !strcmp(c->method, "POST")))
            vb_s3_parse_error((const char *)c->resp->data, c->resp->len, c->s3_code,
                              sizeof(c->s3_code), c->s3_msg, sizeof(c->s3_msg));
        if (ok_status(status) && c->s3_code[0]) {
            /* an error inside a 200 answer */
            transient = true;
            err = -EIO;
            snprintf(why, sizeof(why), "HTTP %ld with error %s (%s)", status, c->s3_code,
                     c->s3_msg);
        } else if (status == 408 || status == 429 || status == 500 || status == 502 ||
                   status == 503 || status == 504 || transient_code(c->s3_code)) {
            transient = true;
            err = -EIO;
            snprintf(why, sizeof(why), "HTTP %ld %s%s%s%s", status, c->s3_code,
                     c->s3_msg[0] ? " (" : "", c->s3_msg, c->s3_msg[0] ? ")" : "");
        } else if (!body_complete(c, why, sizeof(why))) {
            transient = true;
            err = -EIO;
        }
    }
    if (transient && c->tries < cfg->attempts) {
        unsigned shift = VB_MIN(c->tries - 1, 10u);
        int64_t delay = VB_MIN((int64_t)cfg->backoff_ms << shift, 20000) * 1000;

        delay = delay / 2 + g_random_int_range(0, (gint32)(delay / 2) + 1);
        t->not_before = mono_us() + delay;
        g_queue_push_tail(&h->waiting, c);
        g_atomic_int_inc(&h->retries);
        return;
    }
    c->ret = err;
    if (err)
        vb_seterr(&c->err, err, "S3 %s %s: %s%s", c->method, c->key[0] ? c->key : "(bucket)",
                  why, c->tries > 1 ? " (gave up after retries)" : "");
    else
        c->err.code = 0;
    c->done(c);
}

/* ---- the I/O thread ----------------------------------------------------------------- */

static gpointer io_thread(gpointer opaque)
{
    struct vb_s3_http *h = opaque;

    for (;;) {
        int64_t now, wake;
        struct vb_s3_call *c;
        CURLMsg *msg;
        GList *l, *next;
        int running, left;
        bool stop;

        g_mutex_lock(&h->lock);
        while ((c = g_queue_pop_head(&h->incoming)))
            g_queue_push_tail(&h->waiting, c);
        stop = h->stop;
        g_mutex_unlock(&h->lock);
        if (stop && !h->active && !h->waiting.length)
            break;

        now = mono_us();
        wake = now + 1000000;
        for (l = h->waiting.head; l; l = next) {
            struct try *t;
            next = l->next;
            c = l->data;
            t = c->priv;
            if (t->not_before > now) {
                wake = VB_MIN(wake, t->not_before);
                continue;
            }
            if (h->active >= h->cfg.connections)
                continue;
            g_queue_delete_link(&h->waiting, l);
            if (start_try(h, c)) {
                end_try(h, c);
                c->ret = vb_seterr(&c->err, -ENOMEM, "S3 %s %s: out of memory", c->method,
                                   c->key);
                c->done(c);
            }
        }
        curl_multi_perform(h->multi, &running);
        while ((msg = curl_multi_info_read(h->multi, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&c);
            finish_try(h, c, msg->data.result);
        }
        now = mono_us();
        curl_multi_poll(h->multi, NULL, 0, (int)VB_MAX((wake - now) / 1000, 0), NULL);
    }
    return NULL;
}

int vb_s3_http_new(const struct vb_s3_config *cfg, struct vb_s3_http **out, vb_error *e)
{
    static gsize curl_ready;
    struct vb_s3_http *h;

    *out = NULL;
    if (g_once_init_enter(&curl_ready)) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        g_once_init_leave(&curl_ready, 1);
    }
    h = g_new0(struct vb_s3_http, 1);
    h->cfg = *cfg;
    g_mutex_init(&h->lock);
    g_queue_init(&h->incoming);
    g_queue_init(&h->waiting);
    h->multi = curl_multi_init();
    if (!h->multi) {
        vb_s3_http_free(h);
        return vb_seterr(e, -ENOMEM, "curl_multi_init failed");
    }
    curl_multi_setopt(h->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)cfg->connections);
    curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, (long)cfg->connections);
    if (cfg->resolve[0])
        h->resolve = curl_slist_append(NULL, cfg->resolve);
    h->thread = g_thread_try_new("vb-s3", io_thread, h, NULL);
    if (!h->thread) {
        vb_s3_http_free(h);
        return vb_seterr(e, -EAGAIN, "cannot start the S3 I/O thread");
    }
    *out = h;
    return 0;
}

void vb_s3_http_free(struct vb_s3_http *h)
{
    if (!h)
        return;
    if (h->thread) {
        g_mutex_lock(&h->lock);
        h->stop = true;
        g_mutex_unlock(&h->lock);
        curl_multi_wakeup(h->multi);
        g_thread_join(h->thread);
    }
    if (h->multi)
        curl_multi_cleanup(h->multi);
    curl_slist_free_all(h->resolve);
    g_mutex_clear(&h->lock);
    vb_s3_config_wipe(&h->cfg);
    g_free(h);
}

void vb_s3_submit(struct vb_s3_http *h, struct vb_s3_call *c)
{
    struct try *t = c->priv;

    c->ret = 0;
    c->tries = 0;
    memset(&c->err, 0, sizeof(c->err));
    t->not_before = 0;
    g_mutex_lock(&h->lock);
    g_queue_push_tail(&h->incoming, c);
    g_mutex_unlock(&h->lock);
    curl_multi_wakeup(h->multi);
}

struct waiter {
    GMutex m;
    GCond cond;
    bool done;
};

static void wake_waiter(struct vb_s3_call *c)
{
    struct waiter *w = c->opaque;

    g_mutex_lock(&w->m);
    w->done = true;
    g_cond_signal(&w->cond);
    g_mutex_unlock(&w->m);
}

void vb_s3_run(struct vb_s3_http *h, struct vb_s3_call *c)
{
    struct waiter w = { .done = false };
    vb_s3_call_fn done = c->done;
    void *opaque = c->opaque;

    g_assert(g_thread_self() != h->thread);
    g_mutex_init(&w.m);
    g_cond_init(&w.cond);
    c->done = wake_waiter;
    c->opaque = &w;
    vb_s3_submit(h, c);
    g_mutex_lock(&w.m);
    while (!w.done)
        g_cond_wait(&w.cond, &w.m);
    g_mutex_unlock(&w.m);
    g_mutex_clear(&w.m);
    g_cond_clear(&w.cond);
    c->done = done;
    c->opaque = opaque;
}
