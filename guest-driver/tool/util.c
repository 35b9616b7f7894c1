/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Messages, signals, paths, SHA-256 and the progress line of the vbackup
 * clients.
 */
#include "vbc.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

const char *vbc_prog = "vbackup";
int vbc_quiet;
volatile sig_atomic_t vbc_interrupted;

/* ---- errors -------------------------------------------------------------- */

int vbc_seterr(struct vbc_err *e, int code, const char *fmt, ...)
{
    if (e) {
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
        va_end(ap);
        e->code = code;
    }
    return code;
}

void vbc_prefixerr(struct vbc_err *e, const char *fmt, ...)
{
    char pre[512], old[sizeof(e->msg)];
    va_list ap;

    if (!e)
        return;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof(pre), fmt, ap);
    va_end(ap);
    memcpy(old, e->msg, sizeof(old));
    snprintf(e->msg, sizeof(e->msg), "%s: %s", pre, old);
}

const char *vbc_status_text(int status)
{
    static const char *const text[VB_S_STATUS_MAX_] = {
        [VB_S_OK] = "ok",
        [VB_S_UNAVAILABLE] = "the host's vbackupd is not running (or not connected to this VM)",
        [VB_S_BAD_FRAME] = "the host rejected the frame",
        [VB_S_BAD_VERSION] = "the host does not speak this protocol version",
        [VB_S_BAD_REQUEST] = "malformed request",
        [VB_S_UNKNOWN_TARGET] = "unknown target",
        [VB_S_NOT_FOUND] = "not found",
        [VB_S_NOT_OWNED] = "disk not attached to this VM",
        [VB_S_OUT_OF_RANGE] = "extent outside the disk",
        [VB_S_BAD_PATH] = "bad path",
        [VB_S_TOO_LARGE] = "too large",
        [VB_S_BUSY] = "the host is busy; retry later",
        [VB_S_SHUTTING_DOWN] = "vbackupd is shutting down",
        [VB_S_NO_JOB] = "no such job",
        [VB_S_JOB_FAILED] = "job failed",
        [VB_S_IO] = "I/O error on the host",
        [VB_S_NO_SPACE] = "no space left in the backup target",
        [VB_S_CANCELLED] = "cancelled",
        [VB_S_INTERNAL] = "internal error in vbackupd",
        [VB_S_REPLY_TOO_SMALL] = "reply too large for the buffer",
        [VB_S_BAD_STATE] = "request not valid in the job's state",
        [VB_S_QUOTA] = "over a quota the host set for this VM",
    };

    if (status >= 0 && status < VB_S_STATUS_MAX_ && text[status])
        return text[status];
    return "unknown status";
}

/* ---- messages ----------------------------------------------------------------- */

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static bool hold_err;
static char *held;
static size_t held_len;

void vbc_sanitize(char *dst, size_t dstlen, const char *src, size_t len)
{
    size_t o = 0;

    if (!dstlen)
        return;
    for (size_t i = 0; i < len && o + 5 < dstlen;) {
        unsigned char ch = (unsigned char)src[i];
        size_t n = 1;

        /* a whole UTF-8 sequence as it is; a byte that is not part of one,
         * or a control character, as \xNN (names are bytes) */
        if (ch >= 0xc2 && ch <= 0xf4)
            n = ch < 0xe0 ? 2 : ch < 0xf0 ? 3 : 4;
        if (ch < 0x20 || ch == 0x7f || (ch >= 0x80 && n == 1) || i + n > len ||
            !vb_utf8_valid(src + i, n) || (n == 2 && (unsigned char)src[i + 1] < 0xa0 &&
                                           ch == 0xc2)) {
            o += (size_t)snprintf(dst + o, dstlen - o, "\\x%02x", ch);
            i++;
            continue;
        }
        if (o + n + 5 >= dstlen)
            break;
        memcpy(dst + o, src + i, n);
        o += n;
        i += n;
    }
    dst[o] = 0;
}

static void out_v(const char *level, const char *fmt, va_list ap)
{
    char small[2048], *line = small, *big = NULL;
    va_list aq;
    int n, m;

    n = snprintf(small, sizeof(small), "%s: %s", vbc_prog, level);
    if (n < 0)
        return;
    va_copy(aq, ap);
    m = vsnprintf(small + n, sizeof(small) - (size_t)n, fmt, ap);
    /* a long message (a path of 64 KiB, escaped) is not cut */
    if (m >= 0 && (size_t)n + (size_t)m >= sizeof(small) && (big = malloc((size_t)n + m + 1))) {
        memcpy(big, small, (size_t)n);
        vsnprintf(big + n, (size_t)m + 1, fmt, aq);
        line = big;
    }
    va_end(aq);
    pthread_mutex_lock(&out_lock);
    if (hold_err) {
        size_t l = strlen(line);
        char *p = realloc(held, held_len + l + 2);

        if (p) {
            held = p;
            memcpy(held + held_len, line, l);
            held[held_len + l] = '\n';
            held_len += l + 1;
        }
    } else {
        fprintf(stderr, "%s\n", line);
        fflush(stderr);
    }
    pthread_mutex_unlock(&out_lock);
    free(big);
}

void vbc_info(const char *fmt, ...)
{
    va_list ap;

    if (vbc_quiet)
        return;
    va_start(ap, fmt);
    out_v("", fmt, ap);
    va_end(ap);
}

void vbc_warn(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    out_v("warning: ", fmt, ap);
    va_end(ap);
}

void vbc_error(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    out_v("", fmt, ap);
    va_end(ap);
}

/* stderr is held when it is a regular file on one of DEVS (a frozen file
 * system): writing there would block until the thaw. */
void vbc_out_hold(const dev_t *devs, size_t n)
{
    struct stat st;

    pthread_mutex_lock(&out_lock);
    fflush(stderr);
    fflush(stdout);
    if (fstat(2, &st) == 0 && !S_ISCHR(st.st_mode) && !S_ISFIFO(st.st_mode) &&
        !S_ISSOCK(st.st_mode)) {
        for (size_t i = 0; i < n; i++)
            if (st.st_dev == devs[i])
                hold_err = true;
    }
    pthread_mutex_unlock(&out_lock);
}

void vbc_out_release(void)
{
    pthread_mutex_lock(&out_lock);
    if (held_len)
        fwrite(held, 1, held_len, stderr);
    fflush(stderr);
    free(held);
    held = NULL;
    held_len = 0;
    hold_err = false;
    pthread_mutex_unlock(&out_lock);
}

/* ---- signals ------------------------------------------------------------------- */

static void on_signal(int sig)
{
    vbc_interrupted = sig;
}

void vbc_signals_init(void)
{
    struct sigaction sa;
    sigset_t stop;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;   /* no SA_RESTART: blocking calls return EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    /* A stopped client would hold frozen file systems and lose requests in
     * flight (EINTR): job control stops are blocked. */
    sigemptyset(&stop);
    sigaddset(&stop, SIGTSTP);
    sigaddset(&stop, SIGTTIN);
    sigaddset(&stop, SIGTTOU);
    sigprocmask(SIG_BLOCK, &stop, NULL);
}

/* ---- time and numbers ------------------------------------------------------------- */

int64_t vbc_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void vbc_sleep_ms(unsigned ms)
{
    while (ms && !vbc_interrupted) {
        unsigned step = ms > 50 ? 50 : ms;
        struct timespec ts = { 0, (long)step * 1000000L };

        nanosleep(&ts, NULL);
        ms -= step;
    }
}

void vbc_cond_init(pthread_cond_t *c)
{
    pthread_condattr_t a;

    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(c, &a);
    pthread_condattr_destroy(&a);
}

void vbc_cond_wait_ms(pthread_cond_t *c, pthread_mutex_t *m, unsigned ms)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(c, m, &ts);
}

int vbc_path_child(char **path, size_t *cap, size_t plen, const char *name, struct vbc_err *e)
{
    size_t nl = strlen(name), cl = plen + (plen > 1) + nl;

    if (cl + 1 > *cap) {
        size_t nc = *cap * 2 > cl + 1 ? *cap * 2 : cl + 64;
        char *np = realloc(*path, nc);

        if (!np)
            return vbc_seterr(e, -ENOMEM, "out of memory");
        *path = np;
        *cap = nc;
    }
    if (plen > 1)
        (*path)[plen] = '/';
    memcpy(*path + plen + (plen > 1), name, nl + 1);
    return 0;
}

void vbc_human(char *buf, size_t len, uint64_t bytes)
{
    static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
    double v = (double)bytes;
    int u = 0;

    while (v >= 1024 && u < 6) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, len, "%llu B", (unsigned long long)bytes);
    else
        snprintf(buf, len, "%.*f %s", v < 10 ? 2 : v < 100 ? 1 : 0, v, unit[u]);
}

void vbc_duration(char *buf, size_t len, double s)
{
    unsigned long t;

    if (s < 0 || s > 1e9)
        s = 0;
    if (s < 60) {
        snprintf(buf, len, "%.*f s", s < 10 ? 2 : 1, s);
        return;
    }
    t = (unsigned long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, len, "%lu:%02lu:%02lu", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, len, "%lu:%02lu", t / 60, t % 60);
}

/* ---- paths -------------------------------------------------------------------------- */

bool vbc_utf8_valid(const char *s, size_t len)
{
    return vb_utf8_valid(s, len);
}

bool vbc_path_valid(const char *p, size_t len, bool allow_empty)
{
    return !vb_path_check(p, len, allow_empty);
}

char *vbc_abspath(const char *cwd, const char *arg)
{
    size_t cap = strlen(arg) + (cwd ? strlen(cwd) : 0) + 3;
    char *tmp = malloc(cap), *out = malloc(cap);
    size_t o = 0;
    const char *p;

    if (!tmp || !out) {
        free(tmp);
        free(out);
        return NULL;
    }
    if (arg[0] == '/' || !cwd)
        snprintf(tmp, cap, "/%s", arg);
    else
        snprintf(tmp, cap, "%s/%s", cwd, arg);
    /* lexical clean-up: "//", "/./", "/x/../" */
    out[o++] = '/';
    p = tmp;
    while (*p) {
        const char *q;
        size_t l;

        while (*p == '/')
            p++;
        if (!*p)
            break;
        q = strchr(p, '/');
        l = q ? (size_t)(q - p) : strlen(p);
        if (l == 1 && p[0] == '.') {
            /* nothing */
        } else if (l == 2 && p[0] == '.' && p[1] == '.') {
            if (o > 1) {
                o--;                         /* the '/' after the last component */
                while (o > 1 && out[o - 1] != '/')
                    o--;
            }
        } else {
            memcpy(out + o, p, l);
            o += l;
            out[o++] = '/';
        }
        p += l;
    }
    if (o > 1)
        o--;                                 /* trailing '/' */
    out[o] = 0;
    free(tmp);
    return out;
}

/* ---- SHA-256 (FIPS 180-4) --------------------------------------------------------------- */

static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
    0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
    0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
    0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
    0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
    0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2,
};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_block(uint32_t h[8], const uint8_t *p)
{
    uint32_t w[64], a, b, c, d, e, f, g, hh;

    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);

        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    a = h[0]; b = h[1]; c = h[2]; d = h[3]; e = h[4]; f = h[5]; g = h[6]; hh = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = hh + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) +
                      K256[i] + w[i];
        uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));

        hh = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
}

void vbc_sha256_init(struct vbc_sha256 *s)
{
    static const uint32_t iv[8] = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                    0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 };

    memcpy(s->h, iv, sizeof(iv));
    s->n = 0;
    s->fill = 0;
}

void vbc_sha256_update(struct vbc_sha256 *s, const void *data, size_t n)
{
    const uint8_t *p = data;

    s->n += n;
    if (s->fill) {
        size_t take = 64 - s->fill < n ? 64 - s->fill : n;

        memcpy(s->buf + s->fill, p, take);
        s->fill += take;
        p += take;
        n -= take;
        if (s->fill < 64)
            return;
        sha256_block(s->h, s->buf);
        s->fill = 0;
    }
    for (; n >= 64; p += 64, n -= 64)
        sha256_block(s->h, p);
    memcpy(s->buf, p, n);
    s->fill = n;
}

void vbc_sha256_hex(struct vbc_sha256 *s, char out[65])
{
    uint64_t bits = s->n * 8;
    uint8_t pad = 0x80, len[8];

    vbc_sha256_update(s, &pad, 1);
    pad = 0;
    while (s->fill != 56)
        vbc_sha256_update(s, &pad, 1);
    for (int i = 0; i < 8; i++)
        len[i] = (uint8_t)(bits >> (56 - 8 * i));
    vbc_sha256_update(s, len, 8);
    for (int i = 0; i < 8; i++)
        snprintf(out + 8 * i, 9, "%08x", s->h[i]);
}

/* ---- progress line -------------------------------------------------------------------- */

void vbc_progress_init(struct vbc_progress *p)
{
    memset(p, 0, sizeof(*p));
    p->on = !vbc_quiet && isatty(2);
    p->t0_ns = p->last_ns = vbc_now_ns();
}

static void progress_put(struct vbc_progress *p, const char *text)
{
    size_t l = strlen(text);

    pthread_mutex_lock(&out_lock);
    if (l < p->shown)
        fprintf(stderr, "\r%s%*s", text, (int)(p->shown - l), "");
    else
        fprintf(stderr, "\r%s", text);
    fflush(stderr);
    p->shown = l;
    pthread_mutex_unlock(&out_lock);
}

void vbc_progress_text(struct vbc_progress *p, const char *text)
{
    if (p->on)
        progress_put(p, text);
}

void vbc_progress_show(struct vbc_progress *p, const char *what, uint64_t done, uint64_t total)
{
    char line[256], d[32], t[32], r[32], eta[32];
    int64_t now = vbc_now_ns();
    double dt = (double)(now - p->last_ns) / 1e9;

    if (!p->on)
        return;
    /* a line every 0.2 s at most, and the last one when done */
    if (now - p->shown_ns < 200000000 && done < total)
        return;
    p->shown_ns = now;
    if (dt >= 0.25 && done >= p->last_done) {
        double inst = (double)(done - p->last_done) / dt;

        p->rate = p->rate > 0 ? 0.7 * p->rate + 0.3 * inst : inst;
        p->last_ns = now;
        p->last_done = done;
    }
    vbc_human(d, sizeof(d), done);
    vbc_human(t, sizeof(t), total);
    vbc_human(r, sizeof(r), (uint64_t)p->rate);
    if (p->rate > 0 && total > done)
        vbc_duration(eta, sizeof(eta), (double)(total - done) / p->rate);
    else
        snprintf(eta, sizeof(eta), "-");
    if (total)
        snprintf(line, sizeof(line), "%s %s / %s  %3.0f%%  %s/s  ETA %s", what, d, t,
                 100.0 * (double)(done > total ? total : done) / (double)total, r, eta);
    else
        snprintf(line, sizeof(line), "%s %s  %s/s", what, d, r);
    progress_put(p, line);
}

void vbc_progress_clear(struct vbc_progress *p)
{
    if (!p->on || !p->shown)
        return;
    pthread_mutex_lock(&out_lock);
    fprintf(stderr, "\r%*s\r", (int)p->shown, "");
    fflush(stderr);
    p->shown = 0;
    pthread_mutex_unlock(&out_lock);
}
