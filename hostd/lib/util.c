/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "util.h"

#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>
#include <glib.h>

#include "escape.h"

volatile sig_atomic_t vb_interrupted;

static void on_signal(int sig)
{
    vb_interrupted = sig;
}

void vb_install_interrupt_handlers(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

int vb_seterr(vb_error *e, int code, const char *fmt, ...)
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

void vb_prefixerr(vb_error *e, const char *fmt, ...)
{
    char pre[256], old[sizeof(e->msg)];
    va_list ap;

    if (!e)
        return;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof(pre), fmt, ap);
    va_end(ap);
    if (!e->msg[0] && e->code)
        snprintf(e->msg, sizeof(e->msg), "%s", strerror(-e->code));
    memcpy(old, e->msg, sizeof(old));
    snprintf(e->msg, sizeof(e->msg), "%s: %s", pre, old);
}

const char *vb_strerror(const vb_error *e)
{
    if (e->msg[0])
        return e->msg;
    return strerror(e->code < 0 ? -e->code : e->code);
}

const char *vb_fmt_bytes(uint64_t n, char *buf, size_t len)
{
    static const char *unit[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
    double v = (double)n;
    unsigned i = 0;

    while (v >= 1024.0 && i + 1 < VB_ARRAY_SIZE(unit)) {
        v /= 1024.0;
        i++;
    }
    if (i == 0)
        snprintf(buf, len, "%llu B", (unsigned long long)n);
    else
        snprintf(buf, len, "%.*f %s", v < 10 ? 2 : v < 100 ? 1 : 0, v, unit[i]);
    return buf;
}

const char *vb_fmt_duration(double s, char *buf, size_t len)
{
    unsigned long t = s < 0 ? 0 : (unsigned long)(s + 0.5);

    if (t >= 3600)
        snprintf(buf, len, "%lu:%02lu:%02lu", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, len, "%lu:%02lu", t / 60, t % 60);
    return buf;
}

void vb_hex(const uint8_t *in, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[in[i] >> 4];
        out[2 * i + 1] = d[in[i] & 15];
    }
    out[2 * n] = 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int vb_unhex(const char *in, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(in[2 * i]), lo;
        if (hi < 0)
            return -EINVAL;
        lo = hexval(in[2 * i + 1]);
        if (lo < 0)
            return -EINVAL;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return in[2 * n] ? -EINVAL : 0;
}

double vb_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int64_t vb_wall_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* seconds and nanoseconds of a time in ns, rounded down (-1.5 s is -2 s + 0.5 s) */
static void split_ns(int64_t ns, time_t *sec, long *frac)
{
    int64_t s = ns / 1000000000, f = ns % 1000000000;

    if (f < 0) {
        f += 1000000000;
        s--;
    }
    *sec = (time_t)s;
    *frac = (long)f;
}

void vb_fmt_time(int64_t ns, char *buf, size_t len)
{
    struct tm tm;
    time_t t;
    long frac;

    split_ns(ns, &t, &frac);
    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void vb_fmt_time_ns(int64_t ns, char *buf, size_t len)
{
    char sec[40];
    struct tm tm;
    time_t t;
    long frac;

    split_ns(ns, &t, &frac);
    gmtime_r(&t, &tm);
    strftime(sec, sizeof(sec), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, len, "%s.%09ldZ", sec, frac);
}

void vb_fmt_timespec(int64_t sec, uint32_t nsec, char *buf, size_t len)
{
    char s[64];
    struct tm tm;
    time_t t = (time_t)sec;

    if (!gmtime_r(&t, &tm)) {
        snprintf(buf, len, "%llds.%09u", (long long)sec, nsec);
        return;
    }
    strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, len, "%s.%09uZ", s, nsec);
}

int vb_parse_time(const char *s, int64_t *ns)
{
    struct tm tm;
    const char *end;

    memset(&tm, 0, sizeof(tm));
    end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!end)
        return -EINVAL;
    if (*end == '.') {         /* fractional seconds: ignored */
        end++;
        while (*end >= '0' && *end <= '9')
            end++;
    }
    if (strcmp(end, "Z") != 0)
        return -EINVAL;
    {
        time_t t = timegm(&tm);
        /* ns since 1970 in an int64_t: 1677-09-21 .. 2262-04-11 */
        if ((t == (time_t)-1 && tm.tm_year != 69) || t > INT64_MAX / 1000000000 ||
            t < INT64_MIN / 1000000000)
            return -ERANGE;
        *ns = (int64_t)t * 1000000000;
    }
    return 0;
}

int vb_pread_all(int fd, void *buf, size_t len, uint64_t off)
{
    uint8_t *p = buf;

    while (len) {
        ssize_t n = pread(fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -EIO;
        p += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return 0;
}

int vb_write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;

    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int vb_fsync_dirfd(int dirfd)
{
    return fsync(dirfd) < 0 ? -errno : 0;
}

int vb_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int ret;

    if (fd < 0)
        return -errno;
    ret = vb_fsync_dirfd(fd);
    close(fd);
    return ret;
}

int vb_write_file_atomic(const char *path, const void *data, size_t len,
                         bool exclusive, vb_error *e)
{
    char *dir = strdup(path), *slash, tmp[PATH_MAX];
    int fd = -1, ret;

    if (!dir)
        return vb_seterr(e, -ENOMEM, "out of memory");
    slash = strrchr(dir, '/');
    if (slash)
        *slash = 0;
    else
        strcpy(dir, ".");
    snprintf(tmp, sizeof(tmp), "%s/.tmp-%d-%lx", dir, (int)getpid(), (unsigned long)random());
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        ret = vb_seterr(e, -errno, "create %s: %s", tmp, strerror(errno));
        goto out;
    }
    ret = vb_write_all(fd, data, len);
    if (ret == 0 && fsync(fd) < 0)
        ret = -errno;
    if (close(fd) < 0 && ret == 0)
        ret = -errno;
    if (ret) {
        vb_seterr(e, ret, "write %s: %s", tmp, strerror(-ret));
        unlink(tmp);
        goto out;
    }
    if (exclusive) {
        if (link(tmp, path) < 0) {
            ret = -errno;
            if (ret != -EEXIST)
                vb_seterr(e, ret, "link %s: %s", path, strerror(-ret));
            unlink(tmp);
            goto out;
        }
        unlink(tmp);
    } else if (rename(tmp, path) < 0) {
        ret = vb_seterr(e, -errno, "rename %s: %s", path, strerror(errno));
        unlink(tmp);
        goto out;
    }
    ret = vb_fsync_dir(dir);
    if (ret)
        vb_seterr(e, ret, "fsync %s: %s", dir, strerror(-ret));
out:
    free(dir);
    return ret;
}

int vb_read_file(const char *path, char **data, size_t *len, size_t max, vb_error *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return vb_seterr(e, -errno, "open %s: %s", path, strerror(errno));
    return vb_read_fd(fd, path, data, len, max, e);
}

int vb_read_fd(int fd, const char *path, char **data, size_t *len, size_t max, vb_error *e)
{
    struct stat st;
    char *buf;
    int ret;

    if (fstat(fd, &st) < 0) {
        ret = vb_seterr(e, -errno, "stat %s: %s", path, strerror(errno));
        close(fd);
        return ret;
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return vb_seterr(e, -EISDIR, "read %s: %s", path, strerror(EISDIR));
    }
    if ((uint64_t)st.st_size > max) {
        close(fd);
        return vb_seterr(e, -EFBIG, "%s: file too large (%lld bytes, limit %zu)",
                         path, (long long)st.st_size, max);
    }
    buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        close(fd);
        return vb_seterr(e, -ENOMEM, "out of memory");
    }
    ret = vb_pread_all(fd, buf, (size_t)st.st_size, 0);
    close(fd);
    if (ret) {
        free(buf);
        return vb_seterr(e, ret, "read %s: %s", path, strerror(-ret));
    }
    buf[st.st_size] = 0;
    *data = buf;
    if (len)
        *len = (size_t)st.st_size;
    return 0;
}

int vb_mkdir_p(const char *path, mode_t mode)
{
    char buf[PATH_MAX];
    size_t n = strlen(path);

    if (n >= sizeof(buf))
        return -ENAMETOOLONG;
    memcpy(buf, path, n + 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(buf, mode) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(buf, mode) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

bool vb_valid_name(const char *s)
{
    size_t n = 0;

    if (!s || !*s || *s == '.' || *s == '-')
        return false;
    for (; *s; s++, n++) {
        char c = *s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
            return false;
    }
    return n <= 64;
}

bool vb_text_plain(const char *s, size_t n)
{
    char *esc = vb_escape(s, n);
    bool plain = true;

    /* vb_escape writes a space as backslash-space and a backslash as two;
     * any other backslash starts the escape of a control character or of a
     * byte that is not UTF-8 */
    for (const char *p = esc; *p && plain; p++) {
        if (*p != '\\')
            continue;
        p++;
        plain = *p == ' ' || *p == '\\';
    }
    g_free(esc);
    return plain;
}

int vb_parse_size(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;
    unsigned shift = 0;

    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || end == s)
        return -EINVAL;
    switch (*end) {
    case 0: break;
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    case 't': case 'T': shift = 40; end++; break;
    default: return -EINVAL;
    }
    if (*end == 'i')
        end++;
    if (*end == 'B')
        end++;
    if (*end)
        return -EINVAL;
    if (shift && v > (UINT64_MAX >> shift))
        return -ERANGE;
    *out = (uint64_t)v << shift;
    return 0;
}

bool vb_is_zero(const void *buf, size_t len)
{
    const uint8_t *p = buf;
    size_t head = VB_MIN(len, (size_t)16);

    for (size_t i = 0; i < head; i++)
        if (p[i])
            return false;
    if (len <= 16)
        return true;
    /* the first 16 bytes are zero: compare the buffer with itself shifted */
    return memcmp(p, p + 16, len - 16) == 0;
}

int vb_rm_rf_at(int parent, const char *name)
{
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *d;
    struct dirent *de;

    if (fd < 0)
        return unlinkat(parent, name, 0) < 0 && errno != ENOENT ? -errno : 0;
    d = fdopendir(fd);
    if (!d) {
        close(fd);
        return -errno;
    }
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (de->d_type == DT_DIR)
            vb_rm_rf_at(dirfd(d), de->d_name);
        else
            unlinkat(dirfd(d), de->d_name, 0);
    }
    closedir(d);
    return unlinkat(parent, name, AT_REMOVEDIR) < 0 ? -errno : 0;
}

