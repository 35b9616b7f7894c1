/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * schedule: defer jobs while the host is busy or outside a time window, and
 * cap the batch's read bandwidth.
 *
 * The load is the batch's snapshot of Linux PSI (avg10 of /proc/pressure/{io,cpu,memory},
 * percent of time some / all tasks stalled) and its local time.  A job that
 * has waited max_delay since it was sealed runs whatever the load.
 */
#include <math.h>

#include "vbp-common.h"

#define NS 1000000000ll

enum { P_IO_SOME, P_IO_FULL, P_CPU_SOME, P_MEM_SOME, P_MEM_FULL, P_COUNT };

static const struct {
    const char *key, *what, *psi;
} pressure[P_COUNT] = {
    [P_IO_SOME] = { "io_some_max", "io", "some" },
    [P_IO_FULL] = { "io_full_max", "io", "full" },
    [P_CPU_SOME] = { "cpu_some_max", "cpu", "some" },
    [P_MEM_SOME] = { "mem_some_max", "memory", "some" },
    [P_MEM_FULL] = { "mem_full_max", "memory", "full" },
};

static const char *const day_names[7] = { "sun", "mon", "tue", "wed", "thu", "fri", "sat" };
static const char *const day_long[7] = {
    "sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"
};

struct schedule {
    double max[P_COUNT];         /* < 0: no threshold */
    bool window_set;
    int win_start, win_end;      /* minutes of the day; start > end wraps midnight */
    char window[16];
    unsigned days;               /* bit per weekday, bit 0 = Sunday */
    char days_str[64];
    int64_t max_delay_s;
    int64_t recheck_s;
    uint64_t rate_limit;         /* bytes/s, 0: none */
    bool defer_restores;
};

static void *schedule_create(void)
{
    struct schedule *s = calloc(1, sizeof(*s));

    if (!s)
        return NULL;
    for (int i = 0; i < P_COUNT; i++)
        s->max[i] = -1;
    s->days = 0x7f;
    s->max_delay_s = 3600;
    s->recheck_s = 30;
    return s;
}

static void schedule_destroy(void *state)
{
    free(state);
}

/* "20", "20%", "12.5" → 0..100 */
static int parse_percent(const char *v, double *out)
{
    char *end;
    double d;

    errno = 0;
    d = strtod(v, &end);
    if (errno || end == v || !isfinite(d))
        return -EINVAL;
    if (*end == '%')
        end++;
    if (*end || d < 0 || d > 100)
        return -EINVAL;
    *out = d;
    return 0;
}

/* "90", "90s", "15m", "2h", "1d" → seconds */
static int parse_seconds(const char *v, int64_t *out)
{
    unsigned long long n;
    int64_t mul = 1;
    char *end;

    if (*v < '0' || *v > '9')
        return -EINVAL;
    errno = 0;
    n = strtoull(v, &end, 10);
    if (errno)
        return -EINVAL;
    switch (*end) {
    case 0: break;
    case 's': end++; break;
    case 'm': mul = 60; end++; break;
    case 'h': mul = 3600; end++; break;
    case 'd': mul = 86400; end++; break;
    default: return -EINVAL;
    }
    if (*end || n > (unsigned long long)(INT64_MAX / NS / mul))
        return -EINVAL;
    *out = (int64_t)n * mul;
    return 0;
}

/* "HH:MM"; 24:00 only when allow_24 */
static int parse_hhmm(const char *s, size_t len, bool allow_24, int *out)
{
    unsigned h, m;
    char buf[8];
    int used = 0;

    if (len == 0 || len >= sizeof(buf))
        return -EINVAL;
    memcpy(buf, s, len);
    buf[len] = 0;
    if (sscanf(buf, "%2u:%2u%n", &h, &m, &used) != 2 || (size_t)used != len ||
        buf[0] < '0' || buf[0] > '9' || m > 59)
        return -EINVAL;
    if (h > 23 && !(allow_24 && h == 24 && m == 0))
        return -EINVAL;
    *out = (int)(h * 60 + m);
    return 0;
}

static int parse_window(struct schedule *s, const char *v)
{
    const char *dash = strchr(v, '-');
    int a, b;

    if (!dash || parse_hhmm(v, (size_t)(dash - v), false, &a) < 0 ||
        parse_hhmm(dash + 1, strlen(dash + 1), true, &b) < 0 || a == b % 1440)
        return -EINVAL;
    s->window_set = true;
    s->win_start = a;
    s->win_end = b;
    snprintf(s->window, sizeof(s->window), "%02d:%02d-%02d:%02d", a / 60, a % 60, b / 60,
             b % 60);
    return 0;
}

static int day_of(const char *s, size_t len)
{
    char buf[16];

    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, s, len);
    buf[len] = 0;
    for (int d = 0; d < 7; d++)
        if (strcasecmp(buf, day_names[d]) == 0 || strcasecmp(buf, day_long[d]) == 0)
            return d;
    return -1;
}

/* "mon-fri", "sat,sun", "mon,wed-fri", "fri-mon" (wraps), "all", "weekdays", "weekend" */
static int parse_days(struct schedule *s, const char *v)
{
    unsigned mask = 0;
    const char *p = v;

    if (strcasecmp(v, "all") == 0 || strcmp(v, "*") == 0 || strcasecmp(v, "daily") == 0)
        mask = 0x7f;
    else if (strcasecmp(v, "weekdays") == 0)
        mask = 0x3e;
    else if (strcasecmp(v, "weekend") == 0 || strcasecmp(v, "weekends") == 0)
        mask = 0x41;
    else {
        while (*p) {
            size_t len = strcspn(p, ",");
            const char *dash = memchr(p, '-', len);
            int a, b;

            if (dash) {
                a = day_of(p, (size_t)(dash - p));
                b = day_of(dash + 1, len - (size_t)(dash - p) - 1);
            } else {
                a = b = day_of(p, len);
            }
            if (a < 0 || b < 0)
                return -EINVAL;
            for (int d = a;; d = (d + 1) % 7) {
                mask |= 1u << d;
                if (d == b)
                    break;
            }
            p += len;
            if (*p == ',') {
                p++;
                if (!*p)
                    return -EINVAL;
            }
        }
    }
    if (!mask)
        return -EINVAL;
    s->days = mask;
    snprintf(s->days_str, sizeof(s->days_str), "%s", v);
    return 0;
}

static int schedule_config(void *state, const char *key, const char *value, char *err,
                           size_t err_len)
{
    struct schedule *s = state;

    for (int i = 0; i < P_COUNT; i++) {
        if (strcmp(key, pressure[i].key) != 0)
            continue;
        if (strcmp(value, "none") == 0) {
            s->max[i] = -1;
            return 0;
        }
        if (parse_percent(value, &s->max[i]) < 0)
            return vbp_err(err, err_len, "%s: expected a percentage 0..100 such as 20 or "
                           "12.5%%, got \"%s\"", key, value);
        return 0;
    }
    if (strcmp(key, "window") == 0) {
        if (strcmp(value, "always") == 0) {
            s->window_set = false;
            return 0;
        }
        if (parse_window(s, value) < 0)
            return vbp_err(err, err_len, "window: expected HH:MM-HH:MM in local time such as "
                           "22:00-06:00 (start and end differ), got \"%s\"", value);
        return 0;
    }
    if (strcmp(key, "days") == 0) {
        if (parse_days(s, value) < 0)
            return vbp_err(err, err_len, "days: expected days such as mon-fri or sat,sun "
                           "(sun mon tue wed thu fri sat, ranges with '-', lists with ','), "
                           "got \"%s\"", value);
        return 0;
    }
    if (strcmp(key, "max_delay") == 0) {
        if (parse_seconds(value, &s->max_delay_s) < 0)
            return vbp_err(err, err_len, "max_delay: expected seconds such as 3600 or 1h, "
                           "got \"%s\"", value);
        return 0;
    }
    if (strcmp(key, "recheck") == 0) {
        if (parse_seconds(value, &s->recheck_s) < 0 || s->recheck_s == 0)
            return vbp_err(err, err_len, "recheck: expected seconds > 0 such as 30, got "
                           "\"%s\"", value);
        return 0;
    }
    if (strcmp(key, "rate_limit") == 0) {
        char buf[40];
        size_t len = strlen(value);

        if (strcmp(value, "none") == 0 || strcmp(value, "0") == 0) {
            s->rate_limit = 0;
            return 0;
        }
        if (len < sizeof(buf)) {
            memcpy(buf, value, len + 1);
            if (len > 2 && strcmp(buf + len - 2, "/s") == 0)
                buf[len - 2] = 0;
        }
        if (len >= sizeof(buf) || vbp_parse_size(buf, &s->rate_limit) < 0 || !s->rate_limit)
            return vbp_err(err, err_len, "rate_limit: expected bytes per second such as "
                           "100M or 50MiB/s (or none), got \"%s\"", value);
        return 0;
    }
    if (strcmp(key, "defer_restores") == 0) {
        if (vbp_parse_bool(value, &s->defer_restores) < 0)
            return vbp_err(err, err_len, "defer_restores: expected yes or no, got \"%s\"",
                           value);
        return 0;
    }
    return vbp_err(err, err_len, "schedule: unknown key \"%s\" (keys: io_some_max, "
                   "io_full_max, cpu_some_max, mem_some_max, mem_full_max, window, days, "
                   "max_delay, recheck, rate_limit, defer_restores)", key);
}

/* ------------------------------------------------------------------ */

static double load_value(const struct vbp_load *l, int i)
{
    switch (i) {
    case P_IO_SOME: return l->io_some_avg10;
    case P_IO_FULL: return l->io_full_avg10;
    case P_CPU_SOME: return l->cpu_some_avg10;
    case P_MEM_SOME: return l->mem_some_avg10;
    default: return l->mem_full_avg10;
    }
}

/*
 * Why this batch may not run now, in reason (empty: it may).  A window that
 * wraps midnight belongs to the day it opened: with 22:00-06:00 and mon-fri,
 * Saturday 02:00 is inside (Friday's night).
 */
static void why_not_now(const struct schedule *s, const struct vbp_load *l, char *reason,
                        size_t len)
{
    int m = l->local_minute_of_day, wday = l->local_wday;
    int day_of_window = wday;
    size_t used = 0;

    reason[0] = 0;
    if (m < 0 || m >= 1440)
        m = 0;
    if (wday < 0 || wday > 6)
        wday = day_of_window = 0;
    for (int i = 0; i < P_COUNT; i++) {
        double v = load_value(l, i);

        if (s->max[i] >= 0 && v > s->max[i])
            vbp_append(reason, len, &used, "%s%s pressure %.1f%% > %g%% (PSI %s avg10)",
                       used ? "; " : "", pressure[i].what, v, s->max[i], pressure[i].psi);
    }
    if (s->window_set) {
        bool inside;

        if (s->win_start < s->win_end) {
            inside = m >= s->win_start && m < s->win_end;
        } else {
            inside = m >= s->win_start || m < s->win_end;
            if (m < s->win_end)
                day_of_window = (wday + 6) % 7;
        }
        if (!inside)
            vbp_append(reason, len, &used, "%soutside the window %s (now %02d:%02d)",
                       used ? "; " : "", s->window, m / 60, m % 60);
    }
    if (s->days != 0x7f && !(s->days & (1u << day_of_window)))
        vbp_append(reason, len, &used, "%snot one of the days %s (%s %s)", used ? "; " : "",
                   s->days_str, day_of_window == wday ? "today is" : "the window opened on",
                   day_names[day_of_window]);
}

/* What is fine now, for "ran after waiting": "pressure fell, inside the window". */
static void why_now(const struct schedule *s, char *buf, size_t len)
{
    bool thresholds = false;
    size_t used = 0;

    buf[0] = 0;
    for (int i = 0; i < P_COUNT; i++)
        if (s->max[i] >= 0)
            thresholds = true;
    if (thresholds)
        vbp_append(buf, len, &used, "pressure fell");
    if (s->window_set || s->days != 0x7f)
        vbp_append(buf, len, &used, "%sinside the window", used ? ", " : "");
    if (!used)
        vbp_append(buf, len, &used, "nothing holds it back now");
}

static int schedule_optimize(void *state, struct vbp_batch *b)
{
    const struct schedule *s = state;
    const struct vbp_load *l = &b->load;
    int64_t now = l->now_ns;
    int64_t recheck_ns = s->recheck_s * NS, max_delay_ns = s->max_delay_s * NS;
    uint32_t deferred = 0, held = 0;
    char reason[sizeof(b->jobs[0].defer_reason)], ok[64], rate[32];

    why_not_now(s, l, reason, sizeof(reason));
    why_now(s, ok, sizeof(ok));

    for (uint32_t i = 0; i < b->n_jobs; i++) {
        struct vbp_job *j = &b->jobs[i];
        int64_t waited = j->sealed_ns > 0 && now > j->sealed_ns ? now - j->sealed_ns : 0;

        if (j->defer_until_ns > now) {
            held++;                     /* an earlier policy deferred it */
            continue;
        }
        if (j->kind == VBP_KIND_RESTORE && !s->defer_restores)
            continue;
        if (reason[0] && waited < max_delay_ns) {
            int64_t until = now + recheck_ns;

            /* come back no later than when max_delay expires */
            if (j->sealed_ns > 0 && j->sealed_ns + max_delay_ns < until)
                until = j->sealed_ns + max_delay_ns;
            j->defer_until_ns = until;
            snprintf(j->defer_reason, sizeof(j->defer_reason), "%s", reason);
            b->note(b, "schedule", j->id, "deferred for %lld s (waited %lld s of max_delay "
                    "%lld s): %s", (long long)((until - now + NS - 1) / NS),
                    (long long)(waited / NS), (long long)s->max_delay_s, reason);
            deferred++;
        } else if (reason[0]) {
            b->note(b, "schedule", j->id, "ran after waiting %lld s (max_delay reached) "
                    "although %s", (long long)(waited / NS), reason);
        } else if (j->first_deferred_ns) {
            int64_t since = j->sealed_ns > 0 ? j->sealed_ns : j->first_deferred_ns;

            b->note(b, "schedule", j->id, "ran after waiting %lld s (%s)",
                    (long long)(now > since ? (now - since) / NS : 0), ok);
        }
    }

    if (s->rate_limit && (!b->rate_limit_bps || b->rate_limit_bps > s->rate_limit))
        b->rate_limit_bps = s->rate_limit;
    b->note(b, "schedule", 0, "load io %.1f%%/%.1f%%, cpu %.1f%%, memory %.1f%%/%.1f%% "
            "(PSI some/full avg10); %s %02d:%02d; %u of %u jobs deferred%s%s",
            l->io_some_avg10, l->io_full_avg10, l->cpu_some_avg10, l->mem_some_avg10,
            l->mem_full_avg10, day_names[l->local_wday >= 0 && l->local_wday < 7 ?
                                         l->local_wday : 0],
            l->local_minute_of_day / 60 % 24, l->local_minute_of_day % 60, deferred + held,
            b->n_jobs, deferred ? ": " : "", deferred ? reason : "");
    if (s->rate_limit)
        b->note(b, "schedule", 0, "read bandwidth capped at %s/s",
                vbp_fmt_bytes(b->rate_limit_bps, rate, sizeof(rate)));
    return 0;
}

static struct vbp_plugin plugin = {
    .name = "schedule",
    .description = "defers jobs while the host is busy or outside a time window; caps "
                   "read bandwidth",
    .config_help =
        "io_some_max=PERCENT: defer while PSI io some avg10 is above (default none)\n"
        "io_full_max=PERCENT, cpu_some_max=PERCENT, mem_some_max=PERCENT, "
        "mem_full_max=PERCENT: likewise\n"
        "window=HH:MM-HH:MM: run only inside (local time, may wrap midnight; default "
        "always)\n"
        "days=DAYS: run only on these days (mon-fri, sat,sun; default all)\n"
        "max_delay=SECONDS: a job that waited this long runs anyway (default 3600)\n"
        "recheck=SECONDS: how long a deferral lasts (default 30)\n"
        "rate_limit=BYTES/s: cap the batch's read bandwidth (default none)\n"
        "defer_restores=yes|no: also defer restore jobs (default no)",
    .create = schedule_create,
    .config = schedule_config,
    .destroy = schedule_destroy,
    .optimize = schedule_optimize,
};

VBP_REGISTER(plugin)
