/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Linux PSI reader: the avg10 values of /proc/pressure/{io,cpu,memory}
 * (Documentation/accounting/psi.rst) and the local time, for the policies.
 */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "psi.h"

#define PSI_FILE_MAX 4096

/* Read a small (proc) file whose st_size means nothing; NUL-terminated. */
static int read_small(const char *path, char *buf, size_t size)
{
    size_t got = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return -errno;
    while (got < size - 1) {
        ssize_t n = read(fd, buf + got, size - 1 - got);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int err = -errno;

            close(fd);
            return err;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    if (got == size - 1)
        return -EFBIG;
    buf[got] = 0;
    return 0;
}

/*
 * One "some|full avg10=X avg60=X avg300=X total=N" line; lines of other
 * kinds are skipped (newer kernels may add some).  *some / *full: avg10.
 */
static int parse_psi(const char *path, char *text, double *some, double *full, vb_error *e)
{
    bool seen_some = false, seen_full = false;
    char *save = NULL, *line;
    unsigned lineno = 0;

    *some = 0;
    *full = 0;
    for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *tsave = NULL, *kind = strtok_r(line, " \t", &tsave), *tok;
        bool is_some, is_full, have_avg10 = false;
        double avg10 = 0;

        lineno++;
        if (!kind)
            continue;
        is_some = strcmp(kind, "some") == 0;
        is_full = strcmp(kind, "full") == 0;
        while ((tok = strtok_r(NULL, " \t", &tsave))) {
            char *eq = strchr(tok, '='), *end;

            if (!eq || eq == tok || !eq[1])
                return vb_seterr(e, -EINVAL, "%s line %u: \"%s\" is not key=value", path,
                                 lineno, tok);
            if ((is_some || is_full) && strncmp(tok, "avg10=", 6) == 0) {
                errno = 0;
                avg10 = strtod(eq + 1, &end);
                if (errno || *end || !isfinite(avg10) || avg10 < 0 || avg10 > 100)
                    return vb_seterr(e, -EINVAL, "%s line %u: bad avg10 \"%s\" (a percentage "
                                     "0..100)", path, lineno, eq + 1);
                have_avg10 = true;
            }
        }
        if (!is_some && !is_full)
            continue;
        if (!have_avg10)
            return vb_seterr(e, -EINVAL, "%s line %u: \"%s\" line without avg10=", path,
                             lineno, kind);
        if ((is_some && seen_some) || (is_full && seen_full))
            return vb_seterr(e, -EINVAL, "%s line %u: a second \"%s\" line", path, lineno,
                             kind);
        if (is_some) {
            seen_some = true;
            *some = avg10;
        } else {
            seen_full = true;
            *full = avg10;
        }
    }
    if (!seen_some)
        return vb_seterr(e, -EINVAL, "%s: no \"some avg10=...\" line (not a PSI file?)", path);
    return 0;
}

static int read_one(const char *dir, const char *name, double *some, double *full,
                    vb_error *e)
{
    char *path = g_strdup_printf("%s/%s", dir, name);
    char buf[PSI_FILE_MAX];
    int ret;

    ret = read_small(path, buf, sizeof(buf));
    if (ret == -ENOENT) {
        *some = 0;
        *full = 0;
        ret = 0;
    } else if (ret == -EFBIG) {
        vb_seterr(e, ret, "%s: larger than %d bytes (not a PSI file?)", path, PSI_FILE_MAX);
    } else if (ret < 0) {
        vb_seterr(e, ret, "read %s: %s", path, strerror(-ret));
    } else {
        ret = parse_psi(path, buf, some, full, e);
    }
    g_free(path);
    return ret;
}

void vbd_psi_set_time(struct vbp_load *out, int64_t now_ns)
{
    time_t t = (time_t)(now_ns / 1000000000);
    struct tm tm;

    out->now_ns = now_ns;
    if (!localtime_r(&t, &tm))
        memset(&tm, 0, sizeof(tm));
    out->local_wday = tm.tm_wday;
    out->local_minute_of_day = tm.tm_hour * 60 + tm.tm_min;
}

int vbd_psi_read(const char *dir, struct vbp_load *out, vb_error *e)
{
    struct vbp_load l;
    double cpu_full;
    struct stat st;
    int ret;

    memset(&l, 0, sizeof(l));
    if (stat(dir, &st) < 0) {
        int err = errno;

        ret = vb_seterr(e, -err, "PSI folder %s: %s%s", dir, strerror(err),
                        err == ENOENT ? " (a kernel without CONFIG_PSI? set psi_dir, or "
                        "configure no load thresholds)" : "");
    } else if (!S_ISDIR(st.st_mode)) {
        ret = vb_seterr(e, -ENOTDIR, "PSI folder %s: not a folder", dir);
    } else {
        ret = read_one(dir, "io", &l.io_some_avg10, &l.io_full_avg10, e);
        if (ret == 0)
            ret = read_one(dir, "cpu", &l.cpu_some_avg10, &cpu_full, e);
        if (ret == 0)
            ret = read_one(dir, "memory", &l.mem_some_avg10, &l.mem_full_avg10, e);
    }
    if (ret < 0)
        memset(&l, 0, sizeof(l));     /* no load known; the time still is */
    vbd_psi_set_time(&l, vb_wall_ns());
    *out = l;
    return ret;
}
