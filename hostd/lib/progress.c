/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "progress.h"

#include <stdio.h>
#include <string.h>

#include "util.h"

void vb_progress_format(char *buf, size_t len, const char *what, uint64_t done,
                        uint64_t total, double elapsed)
{
    char d[32], t[32], r[32], eta[32] = "--:--";
    double rate = elapsed > 0.05 ? (double)done / elapsed : 0;
    unsigned pct = total ? (unsigned)(done * 100 / total) : 100;

    if (rate > 0 && total > done)
        vb_fmt_duration((double)(total - done) / rate, eta, sizeof(eta));
    else if (total <= done)
        snprintf(eta, sizeof(eta), "0:00");
    vb_fmt_bytes(done, d, sizeof(d));
    vb_fmt_bytes(total, t, sizeof(t));
    vb_fmt_bytes((uint64_t)rate, r, sizeof(r));
    snprintf(buf, len, "%s %s / %s %3u%% %s/s ETA %s", what, d, t, pct, r, eta);
}

void vb_progress_init(struct vb_progress *p, const char *what, uint64_t total, bool enabled)
{
    memset(p, 0, sizeof(*p));
    p->enabled = enabled;
    p->what = what;
    p->total = total;
    p->start = vb_now();
}

static void draw(struct vb_progress *p, double now)
{
    char line[160];
    int n;

    vb_progress_format(line, sizeof(line), p->what, p->done, p->total, now - p->start);
    n = (int)strlen(line);
    fprintf(stderr, "\r%s%*s", line, p->width > n ? p->width - n : 0, "");
    fflush(stderr);
    p->width = n;
    p->last = now;
}

void vb_progress_update(struct vb_progress *p, uint64_t done)
{
    double now;

    p->done = done;
    if (!p->enabled)
        return;
    now = vb_now();
    if (now - p->last >= 0.2)
        draw(p, now);
}

void vb_progress_end(struct vb_progress *p)
{
    if (!p->enabled)
        return;
    draw(p, vb_now());
    fputc('\n', stderr);
}
