/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vbackupctl's maintenance commands on version 2 repositories (ctl-v2.h):
 * forget, prune, gc and stats, through the v2 door (repo2.h) only.  prune
 * plans with the same pure planner as version 1's (retention.h,
 * vb_retention_plan_groups) and prints with the same code (vbctl_prune_*).
 */
#include "ctl-v2.h"

#include <errno.h>
#include <getopt.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "repo2.h"
#include "retention.h"

static const struct option secret_opts[] = {
    { "password-file", 1, 0, 'P' }, { "key-file", 1, 0, 'K' }, { "json", 0, 0, 'j' },
    { "dry-run", 0, 0, 'n' }, { 0 } };

/* Options of forget, gc and stats: --json, the secret, and --dry-run where
 * allowed.  0, or the exit status of a usage error. */
static int parse_opts(int argc, char **argv, bool dry_ok, const char **password_file,
                      const char **key_file, bool *json, bool *dry_run)
{
    int c;

    optind = 1;
    while ((c = getopt_long(argc, argv, "", secret_opts, NULL)) != -1) {
        switch (c) {
        case 'P': *password_file = optarg; break;
        case 'K': *key_file = optarg; break;
        case 'j': *json = true; break;
        case 'n':
            if (!dry_ok) {
                fprintf(stderr, "%s: %s has no --dry-run\n", prog, argv[0]);
                return 2;
            }
            *dry_run = true;
            break;
        default: return 2;
        }
    }
    return 0;
}

static bool is_object_name(const char *s)
{
    size_t n = strlen(s);

    if (n != 32)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

/* ---- forget ----------------------------------------------------------------------------- */

static int forget_v2(void *h, const char *id, vb_error *e)
{
    return vb2_forget(h, id, e);
}

int vbctl_v2_forget(const char *location, int argc, char **argv)
{
    const char *password_file = NULL, *key_file = NULL;
    struct vb2_repo *r;
    bool json = false, dry = false;
    vb_error e = { 0 };
    int rc;

    if (parse_opts(argc, argv, false, &password_file, &key_file, &json, &dry))
        return 2;
    if (optind >= argc) {
        fprintf(stderr, "usage: %s forget SNAPSHOT... [--json]\n", prog);
        return 2;
    }
    for (int i = optind; i < argc; i++) {
        if (!vb_snap_id_valid(argv[i]) && !is_object_name(argv[i])) {
            g_autofree char *id = vbctl_esc(argv[i]);
            fprintf(stderr, "%s: '%s' is not a snapshot id (VM/TIME)\n", prog, id);
            return 2;
        }
    }
    if (vbctl_v2_open(location, password_file, key_file, false, &r, &e))
        return vbctl_fail("forget", &e);
    rc = vbctl_forget_each(argc - optind, argv + optind, json, forget_v2, r);
    vb2_repo_close(r);
    return rc;
}

/* ---- prune ------------------------------------------------------------------------------ */

int vbctl_v2_prune(const char *location, int argc, char **argv)
{
    struct vbctl_prune_args a;
    struct vb_retention_snap *rs = NULL;
    GPtrArray *list = NULL, *problems = NULL;
    json_object *plan = NULL;
    struct vb2_repo *r = NULL;
    unsigned *keeps = NULL;
    vb_error e = { 0 };
    int ret = vbctl_prune_args(argc, argv, true, &a);

    if (ret)
        return ret;
    ret = 1;
    if (vbctl_v2_open(location, a.password_file, a.key_file, a.dry_run, &r, &e) ||
        vb2_snap_list(r, a.vm, &list, &problems, &e)) {
        ret = vbctl_fail("prune", &e);
        goto out;
    }
    /* a snapshot that cannot be read could be the one retention keeps */
    if (problems->len) {
        g_autofree char *p = vbctl_esc(problems->pdata[0]);
        fprintf(stderr, "%s: prune: cannot read every snapshot, nothing removed: %s", prog, p);
        if (problems->len > 1)
            fprintf(stderr, " (and %u more problems; 'vbackupctl verify' lists them)",
                    problems->len - 1);
        fputc('\n', stderr);
        goto out;
    }
    rs = g_new0(struct vb_retention_snap, list->len);
    keeps = g_new0(unsigned, list->len);
    for (guint i = 0; i < list->len; i++) {
        const struct vb_manifest *m = list->pdata[i];
        rs[i] = (struct vb_retention_snap){ .id = m->id, .vm = m->vm,
                                            .type = m->type == VB_MF_DISK ? "disk" : "files",
                                            .group = m->group ? m->group : "",
                                            .created_ns = m->created_ns };
    }
    plan = vb_retention_plan_groups(&a.policy, rs, list->len, keeps);
    if (!plan) {
        fprintf(stderr, "%s: prune: out of memory\n", prog);
        goto out;
    }
    /* by object name: no listing per snapshot */
    for (guint i = 0; !a.dry_run && i < list->len; i++) {
        const struct vb_manifest *m = list->pdata[i];
        if (keeps[i])
            continue;
        if (vb2_forget(r, m->object, &e)) {
            g_autofree char *what = g_strdup_printf("prune: %s", m->id);
            ret = vbctl_fail(what, &e);
            goto out;
        }
    }
    vbctl_prune_print(plan, &a);
    ret = 0;
out:
    json_object_put(plan);
    g_free(rs);
    g_free(keeps);
    if (list)
        g_ptr_array_free(list, TRUE);
    if (problems)
        g_ptr_array_free(problems, TRUE);
    if (r)
        vb2_repo_close(r);
    return ret;
}

/* ---- gc --------------------------------------------------------------------------------- */

static void add_u64(json_object *o, const char *k, uint64_t v)
{
    json_object_object_add(o, k, json_object_new_int64((int64_t)v));
}

int vbctl_v2_gc(const char *location, int argc, char **argv)
{
    const char *password_file = NULL, *key_file = NULL;
    struct vb2_gc_opts o = { .phases = VB2_GC_ALL };
    struct vb2_gc_report rep;
    struct vb2_repo *r;
    bool json = false;
    vb_error e = { 0 };
    char a[32], b[32], c[32];

    if (parse_opts(argc, argv, true, &password_file, &key_file, &json, &o.dry_run))
        return 2;
    if (optind != argc) {
        fprintf(stderr, "usage: %s gc [--dry-run] [--json]\n", prog);
        return 2;
    }
    /* gc takes the maintenance lock even to decide: never read-only */
    if (vbctl_v2_open(location, password_file, key_file, false, &r, &e))
        return vbctl_fail("gc", &e);
    if (vb2_gc(r, &o, &rep, &e)) {
        vb2_repo_close(r);
        return vbctl_fail("gc", &e);
    }
    vb2_repo_close(r);
    if (json) {
        json_object *j = json_object_new_object();
        json_object_object_add(j, "dry_run", json_object_new_boolean(o.dry_run));
        add_u64(j, "snapshots", rep.snapshots);
        add_u64(j, "packs", rep.packs);
        add_u64(j, "pack_bytes", rep.pack_bytes);
        add_u64(j, "lists_written", rep.lists_written);
        add_u64(j, "packs_condemned", rep.packs_condemned);
        add_u64(j, "bytes_condemned", rep.bytes_condemned);
        add_u64(j, "packs_repacked", rep.packs_repacked);
        add_u64(j, "blobs_repacked", rep.blobs_repacked);
        add_u64(j, "bytes_repacked", rep.bytes_repacked);
        add_u64(j, "lists_done", rep.lists_done);
        add_u64(j, "lists_waiting", rep.lists_waiting);
        add_u64(j, "packs_deleted", rep.packs_deleted);
        add_u64(j, "bytes_deleted", rep.bytes_deleted);
        add_u64(j, "packs_saved", rep.packs_saved);
        add_u64(j, "index_written", rep.index_written);
        add_u64(j, "index_removed", rep.index_removed);
        add_u64(j, "bloom_bytes", rep.bloom_bytes);
        vbctl_print_json(j);
        json_object_put(j);
        return 0;
    }
    vb_fmt_bytes(rep.bytes_deleted, a, sizeof(a));
    vb_fmt_bytes(rep.bytes_condemned, b, sizeof(b));
    vb_fmt_bytes(rep.bytes_repacked, c, sizeof(c));
    if (o.dry_run)
        /* a dry run writes no list: what it would condemn is not deleted in it */
        printf("would delete %llu packs (%s) condemned earlier, would condemn %llu packs (%s), "
               "%llu of them repacked first; %u snapshots in use\n",
               (unsigned long long)rep.packs_deleted, a,
               (unsigned long long)rep.packs_condemned, b,
               (unsigned long long)rep.packs_repacked, rep.snapshots);
    else
        printf("deleted %llu packs (%s); condemned %llu packs (%s), %llu of them repacked "
               "first (%llu blobs, %s moved); %u snapshots in use\n",
               (unsigned long long)rep.packs_deleted, a,
               (unsigned long long)rep.packs_condemned, b,
               (unsigned long long)rep.packs_repacked, (unsigned long long)rep.blobs_repacked,
               c, rep.snapshots);
    if (rep.lists_waiting || rep.packs_saved)
        printf("%u condemned lists wait for the live leases of writers that may use their "
               "packs (a later gc deletes them once those end); %llu condemned packs kept "
               "for snapshots made meanwhile\n", rep.lists_waiting,
               (unsigned long long)rep.packs_saved);
    return 0;
}

/* ---- stats ------------------------------------------------------------------------------ */

int vbctl_v2_stats(const char *location, int argc, char **argv)
{
    const char *password_file = NULL, *key_file = NULL;
    struct vb2_stats st;
    struct vb2_repo *r;
    bool json = false, dry = false;
    double dedup, comp;
    vb_error e = { 0 };
    char a[32], b[32], c[32], d[32];

    if (parse_opts(argc, argv, false, &password_file, &key_file, &json, &dry))
        return 2;
    if (optind != argc) {
        fprintf(stderr, "usage: %s stats [--json]\n", prog);
        return 2;
    }
    if (vbctl_v2_open(location, password_file, key_file, true, &r, &e))
        return vbctl_fail("stats", &e);
    if (vb2_stats(r, &st, &e)) {
        vb2_repo_close(r);
        return vbctl_fail("stats", &e);
    }
    vb2_repo_close(r);
    /* as version 1's: logical / distinct plain, distinct plain / stored */
    dedup = st.plain_bytes ? (double)st.logical_bytes / (double)st.plain_bytes : 1.0;
    comp = st.stored_bytes ? (double)st.plain_bytes / (double)st.stored_bytes : 1.0;
    if (json) {
        json_object *j = json_object_new_object();
        add_u64(j, "snapshots", st.snapshots);
        add_u64(j, "packs", st.packs);
        add_u64(j, "pack_bytes", st.pack_bytes);
        add_u64(j, "index_files", st.index_files);
        add_u64(j, "blobs", st.blobs);
        add_u64(j, "data_blobs", st.data_blobs);
        add_u64(j, "meta_blobs", st.meta_blobs);
        add_u64(j, "plain_bytes", st.plain_bytes);
        add_u64(j, "stored_bytes", st.stored_bytes);
        add_u64(j, "logical_bytes", st.logical_bytes);
        json_object_object_add(j, "dedup_ratio", json_object_new_double(dedup));
        json_object_object_add(j, "compression_ratio", json_object_new_double(comp));
        json_object_object_add(j, "total_ratio", json_object_new_double(dedup * comp));
        vbctl_print_json(j);
        json_object_put(j);
        return 0;
    }
    printf("snapshots:          %u\n", st.snapshots);
    printf("logical data:       %s (referenced by all snapshots)\n",
           vb_fmt_bytes(st.logical_bytes, a, sizeof(a)));
    printf("unique data:        %s in %llu blobs (%llu data, %llu metadata)\n",
           vb_fmt_bytes(st.plain_bytes, b, sizeof(b)), (unsigned long long)st.blobs,
           (unsigned long long)st.data_blobs, (unsigned long long)st.meta_blobs);
    printf("stored:             %s of blobs in %llu packs of %s, %u index files\n",
           vb_fmt_bytes(st.stored_bytes, c, sizeof(c)), (unsigned long long)st.packs,
           vb_fmt_bytes(st.pack_bytes, d, sizeof(d)), st.index_files);
    printf("deduplication:      %.2fx\n", dedup);
    printf("compression:        %.2fx\n", comp);
    printf("total:              %.2fx\n", dedup * comp);
    return 0;
}

/* ---- repair ------------------------------------------------------------------------------ */

/* Rebuild the index from the packs' own trailers (a damaged or lost index
 * file): what `verify` names when the index and the packs disagree. */
int vbctl_v2_repair(const char *location, int argc, char **argv)
{
    const char *password_file = NULL, *key_file = NULL;
    GPtrArray *problems = g_ptr_array_new_with_free_func(g_free);
    uint64_t packs = 0, blobs = 0;
    struct vb2_repo *r;
    bool json = false, dry = false;
    vb_error e = { 0 };
    int ret = 0;

    if (parse_opts(argc, argv, false, &password_file, &key_file, &json, &dry))
        ret = 2;
    else if (optind != argc) {
        fprintf(stderr, "usage: %s repair [--json]\n", prog);
        ret = 2;
    } else if (vbctl_v2_open(location, password_file, key_file, false, &r, &e)) {
        ret = vbctl_fail("repair", &e);
    } else {
        ret = vb2_repair_index(r, &packs, &blobs, problems, &e) ? vbctl_fail("repair", &e) : 0;
        vb2_repo_close(r);
    }
    if (ret != 2 && json) {
        json_object *j = json_object_new_object(), *a = json_object_new_array();
        add_u64(j, "packs", packs);
        add_u64(j, "blobs", blobs);
        for (guint i = 0; i < problems->len; i++)
            json_object_array_add(a, json_object_new_string(problems->pdata[i]));
        json_object_object_add(j, "problems", a);
        json_object_object_add(j, "ok", json_object_new_boolean(ret == 0));
        vbctl_print_json(j);
        json_object_put(j);
    } else if (ret == 0) {
        for (guint i = 0; i < problems->len; i++) {
            g_autofree char *msg = vbctl_esc(problems->pdata[i]);
            printf("left out: %s\n", msg);
        }
        printf("index rebuilt from %llu packs (%llu blobs)\n", (unsigned long long)packs,
               (unsigned long long)blobs);
    }
    g_ptr_array_unref(problems);
    return ret;
}
