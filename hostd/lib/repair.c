/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Repair (repair.h): find the damage, set damaged chunks aside, move the gc
 * generation on, so that backups store the missing data again. */
#include "repair.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "maint.h"
#include "snapshot.h"

/* Every generation a snapshot recorded is below what a rebuilt gc.json says. */
static int highest_generation(struct vb_repo *r, uint64_t *max, vb_error *e)
{
    GPtrArray *snaps, *problems;
    int ret = vb_snap_scan(r, NULL, &snaps, &problems, e);

    *max = 0;
    if (ret)
        return ret;
    for (guint i = 0; i < snaps->len; i++) {
        struct vb_snapshot *s = snaps->pdata[i];
        if (s->gc_generation > 0 && (uint64_t)s->gc_generation > *max)
            *max = (uint64_t)s->gc_generation;
    }
    g_ptr_array_free(snaps, TRUE);
    g_ptr_array_free(problems, TRUE);
    return 0;
}

static void add_str(json_object *arr, const char *s)
{
    for (size_t i = 0; i < json_object_array_length(arr); i++)
        if (!strcmp(json_object_get_string(json_object_array_get_idx(arr, i)), s))
            return;
    json_object_array_add(arr, json_object_new_string(s));
}

int vb_repair(struct vb_repo *r, bool dry_run, int threads, bool progress,
              struct vb_repair_result *res, vb_error *e)
{
    struct vb_verify_result v = { 0 };
    json_object *bad = NULL, *unreadable = NULL;
    json_object *set_aside = json_object_new_array(), *missing = json_object_new_array();
    json_object *waiting = json_object_new_array();
    GPtrArray *doomed = g_ptr_array_new_with_free_func(g_free);   /* ids to set aside */
    vb_error ge = { 0 };
    bool gc_damaged = false;
    int ret;

    memset(res, 0, sizeof(*res));
    ret = vb_repo_gc_generation(r, &res->generation, &ge);
    if (ret == -EBADMSG) {
        gc_damaged = true;          /* rebuilt below: every backup fails on it */
    } else if (ret) {
        *e = ge;
        goto out;
    }
    ret = vb_verify(r, NULL, threads, progress, &v, e);
    if (ret)
        goto out;
    res->snapshots = v.snapshots;
    res->chunks = v.chunks;
    json_object_object_get_ex(v.report, "damaged_chunks", &bad);
    json_object_object_get_ex(v.report, "damaged_snapshot_indexes", &unreadable);
    for (size_t i = 0; bad && i < json_object_array_length(bad); i++) {
        json_object *x = json_object_array_get_idx(bad, i), *sl = NULL, *o;
        const char *hex = vb_json_str(x, "chunk");
        uint8_t id[VB_ID_LEN];
        char rel[80];
        struct stat st;

        if (!hex || vb_unhex(hex, id, VB_ID_LEN))
            continue;
        json_object_object_get_ex(x, "snapshots", &sl);
        for (size_t k = 0; sl && k < json_object_array_length(sl); k++)
            add_str(waiting, json_object_get_string(json_object_array_get_idx(sl, k)));
        o = json_object_new_object();
        json_object_object_add(o, "chunk", json_object_new_string(hex));
        json_object_object_add(o, "error", json_object_new_string(vb_json_str(x, "error") ?
                                                                 vb_json_str(x, "error") : ""));
        vb_repo_chunk_relpath(id, rel);
        if (fstatat(r->chunks_fd, rel, &st, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT) {
            res->chunks_missing++;
            json_object_array_add(missing, o);
        } else {
            /* present but not what its id says (or unreadable): it would
             * pass for the chunk with every backup that looks it up */
            res->chunks_set_aside++;
            json_object_array_add(set_aside, o);
            g_ptr_array_add(doomed, g_memdup2(id, VB_ID_LEN));
        }
    }
    res->snapshots_waiting = json_object_array_length(waiting);
    res->snapshots_unreadable = unreadable ? json_object_array_length(unreadable) : 0;

    if (dry_run || (!doomed->len && !res->chunks_missing && !gc_damaged))
        goto report;
    /* 1. what backups knew about chunks is void (before anything moves, as gc) */
    if (gc_damaged) {
        uint64_t max;
        ret = highest_generation(r, &max, e);
        if (!ret)
            ret = vb_repo_gc_set(r, res->generation = max + 1, e);
        res->generation_rebuilt = !ret;
    } else {
        ret = vb_repo_gc_advance(r, &res->generation, e);
    }
    if (ret) {
        vb_prefixerr(e, "nothing repaired");
        goto out;
    }
    res->generation_moved = true;
    /* 2. damaged chunks aside: from now on they are missing */
    for (guint i = 0; i < doomed->len; i++) {     /* in the order of set_aside */
        char kept[128];

        ret = vb_repo_set_aside_chunk(r, doomed->pdata[i], kept, sizeof(kept), e);
        if (ret)
            goto out;
        json_object_object_add(json_object_array_get_idx(set_aside, i), "kept_as",
                               json_object_new_string(kept));
    }
    ret = vb_repo_sync(r, e);
    if (ret)
        goto out;
report:
    res->report = json_object_new_object();
    json_object_object_add(res->report, "dry_run", json_object_new_boolean(dry_run));
    json_object_object_add(res->report, "snapshots", json_object_new_int64((int64_t)res->snapshots));
    json_object_object_add(res->report, "chunks", json_object_new_int64((int64_t)res->chunks));
    json_object_object_add(res->report, "set_aside", set_aside);
    json_object_object_add(res->report, "missing", missing);
    json_object_object_add(res->report, "waiting", waiting);
    json_object_object_add(res->report, "unreadable", unreadable ? json_object_get(unreadable)
                                                                 : json_object_new_array());
    json_object_object_add(res->report, "gc_json_damaged", json_object_new_boolean(gc_damaged));
    json_object_object_add(res->report, "generation_moved",
                           json_object_new_boolean(res->generation_moved));
    json_object_object_add(res->report, "generation", json_object_new_int64((int64_t)res->generation));
    set_aside = missing = waiting = NULL;
out:
    json_object_put(set_aside);
    json_object_put(missing);
    json_object_put(waiting);
    json_object_put(v.report);
    g_ptr_array_free(doomed, TRUE);
    return ret;
}
