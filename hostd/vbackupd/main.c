/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vbackupd: the host side of vbackup.  Start-up, signals (SIGTERM/SIGINT:
 * clean shutdown; SIGHUP: reload the configuration), readiness
 * (sd_notify), and the main loop.
 */
#include "vbackupd.h"

#include <getopt.h>
#include <glib-unix.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "repo2.h"

#ifndef VBD_DEFAULT_CONFIG
#define VBD_DEFAULT_CONFIG "/etc/vbackup/vbackupd.conf"
#endif

struct vbd *vbd_global;
static bool log_timestamps;

/*
 * One line on stderr (the journal).  Guest bytes in it (paths, names) were
 * escaped where they were put into the text (vb_escape, escape.h); a line
 * that still holds a control character or bytes that are not UTF-8 is
 * written escaped whole, so that nothing a guest sends can end a line,
 * forge another, or reach a terminal that reads the log.
 */
void vbd_log(const char *fmt, ...)
{
    va_list ap;
    char t[48] = "";
    char *line;

    if (log_timestamps) {
        vb_fmt_time(vb_wall_ns(), t, sizeof(t) - 1);
        strcat(t, " ");
    }
    va_start(ap, fmt);
    line = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    if (!vb_text_plain(line, strlen(line))) {
        char *esc = vb_escape(line, strlen(line));
        g_free(line);
        line = esc;
    }
    fprintf(stderr, "%svbackupd: %s\n", t, line);
    g_free(line);
}

static void target_free(gpointer p)
{
    struct vbd_target *t = p;

    vb_repo_close(t->repo);
    if (t->repo2)
        vb2_repo_close(t->repo2);
    g_free(t->password_file);
    g_free(t->credential);
    if (t->store_opts)
        g_ptr_array_free(t->store_opts, TRUE);
    g_free(t->broken);
    g_free(t->copy_to);
    g_free(t->copy_password_file);
    g_free(t->copy_credential);
    g_free(t->name);
    g_free(t->path);
    g_free(t);
}

static GPtrArray *retired_targets;   /* replaced by a reload; jobs may still use them */

/* A target's copy_to (offsite.c) is opened once at load, with its secret:
 * a wrong or missing secret, or no format 2 repository there, is an error
 * of the configuration, naming the target (the daemon does not start, a
 * reload is refused).  A place that cannot be reached now (an S3 endpoint
 * down) is logged and tried again at each copy, unless strict. */
static int check_copy_to(struct vbd_target_cfg *tc, bool strict, vb_error *e)
{
    struct vbd_target t = { .name = tc->name, .copy_to = tc->copy_to,
                            .copy_password_file = tc->copy_password_file,
                            .copy_credential = tc->copy_credential };
    struct vb2_repo *r;
    int ret;

    if (!tc->copy_to)
        return 0;
    if (!(ret = vbd_copy_open(&t, &r, e))) {
        vb2_repo_close(r);
        return 0;
    }
    if (strict || vbd_copy_config_error(ret))
        return ret;
    vbd_log("%s; its copies are tried again after each commit", vb_strerror(e));
    memset(e, 0, sizeof(*e));
    return 0;
}

/* Whether two targets' object storage options are the same (NULL-terminated). */
static bool same_opts(const GPtrArray *a, const GPtrArray *b)
{
    if (!a || !b)
        return a == b;
    if (a->len != b->len)
        return false;
    for (guint i = 0; i < a->len; i++)
        if (g_strcmp0(a->pdata[i], b->pdata[i]))
            return false;
    return true;
}

/* strict (--check-config): a repository that cannot be opened is an error;
 * else the target is kept, unavailable, and tried again when needed
 * (targets.c): one broken target does not stop the others. */
static int apply_targets(struct vbd *d, struct vbd_config *cfg, bool strict, vb_error *e)
{
    GHashTable *fresh = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, NULL);
    GHashTableIter it;
    gpointer k, v;
    int ret;

    for (guint i = 0; i < cfg->targets->len; i++) {
        struct vbd_target_cfg *tc = cfg->targets->pdata[i];
        struct vbd_target *old = d->targets ? g_hash_table_lookup(d->targets, tc->name) : NULL, *t;
        if ((ret = check_copy_to(tc, strict, e))) {
            g_hash_table_destroy(fresh);
            return ret;
        }
        if (old && !strcmp(old->path, tc->repository) &&
            !g_strcmp0(old->copy_to, tc->copy_to) &&
            !g_strcmp0(old->copy_password_file, tc->copy_password_file) &&
            !g_strcmp0(old->copy_credential, tc->copy_credential) &&
            !g_strcmp0(old->password_file, tc->password_file) &&
            !g_strcmp0(old->credential, tc->credential) &&
            same_opts(old->store_opts, tc->store_opts)) {
            g_hash_table_insert(fresh, old->name, old);
            continue;
        }
        t = g_new0(struct vbd_target, 1);
        t->name = g_strdup(tc->name);
        t->path = g_strdup(tc->repository);
        t->copy_to = g_strdup(tc->copy_to);
        t->copy_password_file = g_strdup(tc->copy_password_file);
        t->copy_credential = g_strdup(tc->copy_credential);
        t->password_file = g_strdup(tc->password_file);
        t->credential = g_strdup(tc->credential);
        if (tc->store_opts) {
            t->store_opts = g_ptr_array_new_with_free_func(g_free);
            for (guint o = 0; o < tc->store_opts->len; o++)
                g_ptr_array_add(t->store_opts, g_strdup(tc->store_opts->pdata[o]));
        }
        if (vbd_target_open(t, e)) {
            /* the cause, logged by vbd_target_open, is what --check-config says */
            char *why = vbd_target_broken(t);
            if (why)
                vb_seterr(e, e->code ? e->code : -EIO, "target %s: %s", t->name, why);
            g_free(why);
            if (strict) {
                target_free(t);
                g_hash_table_destroy(fresh);
                return e->code ? e->code : -EINVAL;
            }
            vbd_log("target %s: its jobs fail until it can be opened", t->name);
            memset(e, 0, sizeof(*e));
        }
        g_hash_table_insert(fresh, t->name, t);
    }
    /* targets that are gone or replaced stay alive for running jobs */
    if (d->targets) {
        g_hash_table_iter_init(&it, d->targets);
        while (g_hash_table_iter_next(&it, &k, &v))
            if (g_hash_table_lookup(fresh, k) != v)
                g_ptr_array_add(retired_targets, v);
        g_hash_table_destroy(d->targets);
    }
    d->targets = fresh;
    return 0;
}

/* Take a new configuration, keeping what running machinery depends on. */
static void vbd_swap_cfg(struct vbd *d, struct vbd_config *cfg)
{
    g_free(cfg->admin_socket);
    cfg->admin_socket = g_strdup(d->cfg->admin_socket);
    cfg->workers = d->cfg->workers;
    g_free(cfg->libvirt_uri);
    cfg->libvirt_uri = g_strdup(d->cfg->libvirt_uri);   /* a new uri needs a restart */
    vbd_config_free(d->cfg);
    d->cfg = cfg;
}

void vbd_reload(struct vbd *d, char *msg, size_t len);
void vbd_reload(struct vbd *d, char *msg, size_t len)
{
    struct vbd_config *cfg;
    GPtrArray *chain;
    vb_error e = { 0 };

    msg[0] = 0;
    cfg = NULL;
    chain = NULL;
    if (vbd_config_load(d->config_path, &cfg, &e) || vbd_chain_load(d, cfg, &chain, &e) ||
        apply_targets(d, cfg, false, &e)) {
        if (!e.code)
            e.code = -EINVAL;
        snprintf(msg, len, "reload failed, keeping the running configuration: %s",
                 vb_strerror(&e));
        vbd_log("%s", msg);
        if (chain)
            g_ptr_array_free(chain, TRUE);
        vbd_config_free(cfg);
        return;
    }
    vbd_swap_cfg(d, cfg);
    vbd_mapper_check(d);
    if (vbd_vms_refresh(d, &e)) {
        snprintf(msg, len, "reload partly failed: %s", vb_strerror(&e));
        vbd_log("%s", msg);
    }
    g_ptr_array_unref(d->chain);        /* a cut on a worker may still hold the old one */
    d->chain = chain;
    vbd_log("configuration reloaded: %u VMs, %u targets, %u policies",
            g_hash_table_size(d->vms), g_hash_table_size(d->targets), d->chain->len);
    vbd_batch_schedule(d);
    vbd_copy_want_all(d);       /* a new copy_to catches up */
}

static gboolean on_hup(gpointer opaque)
{
    char msg[512];

    sd_notify(0, "RELOADING=1");
    vbd_reload(opaque, msg, sizeof(msg));
    sd_notify(0, "READY=1");
    return G_SOURCE_CONTINUE;
}

static gboolean on_term(gpointer opaque)
{
    struct vbd *d = opaque;

    vbd_log("shutting down");
    sd_notify(0, "STOPPING=1");
    d->stopping = true;
    g_main_loop_quit(d->loop);
    return G_SOURCE_REMOVE;
}

static gboolean on_tick(gpointer opaque)
{
    vbd_jobs_tick(opaque);
    return G_SOURCE_CONTINUE;
}

static void shutdown_jobs(struct vbd *d)
{
    GPtrArray *all = g_ptr_array_new();
    GHashTableIter it;
    gpointer k, v;
    bool busy = true;

    if (d->jobs) {
        g_hash_table_iter_init(&it, d->jobs);
        while (g_hash_table_iter_next(&it, &k, &v))
            g_ptr_array_add(all, v);
    }
    for (guint i = 0; i < all->len; i++) {
        struct vbd_job *j = all->pdata[i];
        if (j->state == VB_JOB_RESTORING)
            vbd_restore_close(j);
        else
            vbd_job_fail(j, VB_JOB_FAILED, "vbackupd is shutting down");
    }
    g_ptr_array_free(all, TRUE);
    /* let workers, reads and disk threads come back, so that nothing is
     * left half-written: chunks are complete or absent, snapshots aborted;
     * and what the workers hold (windows, plans, claims) is given back */
    for (int round = 0; busy && round < 3000; round++) {
        busy = d->plans != NULL || d->views_active || d->tasks_out || d->cutting;
        while (g_main_context_iteration(NULL, FALSE))
            ;
        if (busy)
            g_usleep(10000);
    }
}

static void usage(FILE *f)
{
    fprintf(f, "usage: vbackupd [--config FILE] [--check-config] [--timestamps]\n"
               "  --config FILE    configuration (default %s)\n"
               "  --check-config   load the configuration and the policies, then exit\n"
               "  --timestamps     prefix log lines with the time (when not under journald)\n",
            VBD_DEFAULT_CONFIG);
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        { "config", 1, 0, 'c' }, { "check-config", 0, 0, 'k' }, { "timestamps", 0, 0, 't' },
        { "help", 0, 0, 'h' }, { "version", 0, 0, 'V' }, { 0 } };
    struct vbd *d = g_new0(struct vbd, 1);
    bool check = false;
    vb_error e = { 0 };
    int c, rc = 0;

    d->config_path = g_strdup(VBD_DEFAULT_CONFIG);
    while ((c = getopt_long(argc, argv, "c:hV", lo, NULL)) != -1) {
        switch (c) {
        case 'c': g_free(d->config_path); d->config_path = g_strdup(optarg); break;
        case 'k': check = true; break;
        case 't': log_timestamps = true; break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("vbackupd %s\n", VBD_VERSION); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    vbd_global = d;
    retired_targets = g_ptr_array_new_with_free_func(target_free);
    d->admin_fd = -1;
    d->ring_efd = -1;
    d->batches = json_object_new_array();
    d->vms = g_hash_table_new(g_str_hash, g_str_equal);
    d->jobs = g_hash_table_new_full(g_int64_hash, g_int64_equal, NULL,
                                    (GDestroyNotify)vbd_job_unref);
    g_queue_init(&d->pending);
    vbd_quota_init(d);
    g_queue_init(&d->map_waiting);
    {
        /* job ids differ across restarts: a guest holding an old id gets "no such job" */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        d->next_job = ((uint64_t)ts.tv_sec % 100000000) * 1000 + 1;
    }
    if (vbd_config_load(d->config_path, &d->cfg, &e) || apply_targets(d, d->cfg, check, &e) ||
        vbd_chain_load(d, d->cfg, &d->chain, &e)) {
        vbd_log("%s", vb_strerror(&e));
        return 1;
    }
    if (check) {
        printf("%s: %u targets, %u VMs, policies:", d->config_path, d->cfg->targets->len,
               d->cfg->vms->len);
        for (guint i = 0; i < d->chain->len; i++)
            printf(" %s", vbd_policy_name(d->chain->pdata[i]));
        printf("\nconfiguration OK\n");
        return 0;
    }
    d->loop = g_main_loop_new(NULL, FALSE);
    /* before any socket exists: whoever sees one may send SIGTERM at once,
     * and it must be a clean shutdown (handled once the loop runs) */
    g_unix_signal_add(SIGTERM, on_term, d);
    g_unix_signal_add(SIGINT, on_term, d);
    g_unix_signal_add(SIGHUP, on_hup, d);
    signal(SIGPIPE, SIG_IGN);
    if (vbd_exec_init(d, &e) || vbd_vms_refresh(d, &e) || vbd_admin_init(d, &e) ||
        (d->cfg->libvirt_uri && vbd_libvirt_start(d, &e))) {
        vbd_log("%s", vb_strerror(&e));
        return 1;
    }
    vbd_mapper_check(d);
    vbd_journal_recover(d);
    g_timeout_add_seconds(5, on_tick, d);
    vbd_log("ready: %u VMs, %u targets, policies %u, batch every %.1f s or %u jobs, %d workers",
            g_hash_table_size(d->vms), g_hash_table_size(d->targets), d->chain->len,
            d->cfg->batch_seconds, d->cfg->batch_max, d->wk.n);
    sd_notify(0, "READY=1");
    vbd_copy_want_all(d);       /* what copy_to lacks, from before a restart */
    g_main_loop_run(d->loop);

    shutdown_jobs(d);
    vbd_copy_fini(d);           /* cancels the copies to copy_to, waits for them */
    vbd_reclaim_fini(d);        /* waits for a gc it runs */
    vbd_libvirt_stop(d);
    vbd_vms_close_all(d);
    vbd_admin_fini(d);
    vbd_exec_fini(d);
    vbd_snapindex_fini(d);
    if (d->jobs)
        g_hash_table_destroy(d->jobs);
    vbd_quota_fini(d);
    g_queue_clear(&d->pending);
    g_ptr_array_free(d->chain, TRUE);
    g_hash_table_destroy(d->vms);
    {
        GHashTableIter it;
        gpointer k, v;
        g_hash_table_iter_init(&it, d->targets);
        while (g_hash_table_iter_next(&it, &k, &v))
            g_ptr_array_add(retired_targets, v);
    }
    g_hash_table_destroy(d->targets);
    g_ptr_array_free(retired_targets, TRUE);
    json_object_put(d->batches);
    vbd_config_free(d->cfg);
    g_main_loop_unref(d->loop);
    g_free(d->config_path);
    g_free(d);
    vbd_log("stopped");
    return rc;
}
