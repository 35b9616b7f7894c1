/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "maint.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "catalog.h"
#include "filerestore.h"
#include "progress.h"
#include "retention.h"
#include "workers.h"

/* ---- chunk references ---------------------------------------------------- */

int vb_snap_chunks(struct vb_repo *r, struct vb_snapshot *s, GArray *out, vb_error *e)
{
    int ret;

    if (s->type == VB_SNAP_FILES) {
        struct vb_catalog *cat;

        ret = vb_files_catalog(r, s, &cat, e);
        if (ret)
            return ret;
        for (uint64_t i = 0; i < cat->n_chunks; i++) {
            struct vb_chunk_ref ref;
            memcpy(ref.id, cat->c[i].id, VB_ID_LEN);
            ref.len = cat->c[i].len;
            g_array_append_val(out, ref);
        }
        vb_cat_free(cat);
        return 0;
    }
    ret = vb_snap_load_fidx(r, s, e);
    if (ret)
        return ret;
    for (uint64_t i = 0; i < s->n_chunks; i++) {
        struct vb_chunk_ref ref;
        if (vb_id_is_zero(s->ids + i * VB_ID_LEN))
            continue;
        memcpy(ref.id, s->ids + i * VB_ID_LEN, VB_ID_LEN);
        ref.len = (uint32_t)VB_MIN((uint64_t)s->chunk_size, s->size - i * s->chunk_size);
        g_array_append_val(out, ref);
    }
    return 0;
}

/* ---- verify ---------------------------------------------------------------- */

struct vchunk {
    struct vb_work work;
    struct vb_repo *repo;
    uint8_t id[VB_ID_LEN];
    uint32_t len;
    uint8_t *buf;
    int err;
    vb_error e;
};

struct centry {              /* one distinct chunk */
    uint32_t len;
    GArray *snaps;           /* guint indices into the snapshot list */
};

static void centry_free(gpointer p)
{
    struct centry *c = p;

    g_array_free(c->snaps, TRUE);
    g_free(c);
}

static void verify_work(struct vb_work *w, struct vb_codec *c)
{
    struct vchunk *v = (struct vchunk *)w;
    size_t got;

    v->err = vb_repo_get_chunk(v->repo, c, v->id, v->buf, VB_CHUNK_MAX, &got, &v->e);
    if (!v->err && got != v->len)
        v->err = vb_seterr(&v->e, -EBADMSG, "chunk holds %zu bytes, snapshots expect %u", got,
                           v->len);
}

int vb_verify(struct vb_repo *r, const char *snapshot, int threads, bool progress,
              struct vb_verify_result *res, vb_error *e)
{
    GPtrArray *snaps = NULL;
    GHashTable *chunks = g_hash_table_new_full(vb_id_hash, vb_id_equal, g_free, centry_free);
    GArray *refs = g_array_new(FALSE, FALSE, sizeof(struct vb_chunk_ref));
    json_object *bad_chunks = json_object_new_array(), *bad_snaps = json_object_new_array();
    bool *snap_bad = NULL;
    struct vb_workers wk = { 0 };
    struct vchunk *slots = NULL;
    unsigned n_slots = 0;
    GQueue free_slots = G_QUEUE_INIT;
    GHashTableIter it;
    gpointer key, val;
    struct vb_progress prog;
    uint64_t total = 0, done = 0;
    int ret = 0;

    memset(res, 0, sizeof(*res));
    if (snapshot) {
        struct vb_snapshot *s;
        ret = vb_snap_load(r, snapshot, &s, e);
        if (ret)
            goto out;
        snaps = g_ptr_array_new_with_free_func((GDestroyNotify)vb_snap_free);
        g_ptr_array_add(snaps, s);
    } else {
        ret = vb_snap_list(r, NULL, &snaps, e);
        if (ret)
            goto out;
    }
    res->snapshots = snaps->len;
    snap_bad = calloc(VB_MAX(snaps->len, 1u), sizeof(bool));

    for (guint i = 0; i < snaps->len; i++) {
        struct vb_snapshot *s = snaps->pdata[i];
        vb_error se = { 0 };

        g_array_set_size(refs, 0);
        if (vb_snap_chunks(r, s, refs, &se)) {
            json_object *o = json_object_new_object();
            json_object_object_add(o, "snapshot", json_object_new_string(s->id));
            json_object_object_add(o, "error", json_object_new_string(vb_strerror(&se)));
            json_object_array_add(bad_snaps, o);
            snap_bad[i] = true;
            continue;
        }
        for (guint k = 0; k < refs->len; k++) {
            struct vb_chunk_ref *ref = &g_array_index(refs, struct vb_chunk_ref, k);
            struct centry *c = g_hash_table_lookup(chunks, ref->id);
            if (!c) {
                c = g_new0(struct centry, 1);
                c->len = ref->len;
                c->snaps = g_array_new(FALSE, FALSE, sizeof(guint));
                g_hash_table_insert(chunks, g_memdup2(ref->id, VB_ID_LEN), c);
                total += ref->len;
            }
            if (!c->snaps->len || g_array_index(c->snaps, guint, c->snaps->len - 1) != i)
                g_array_append_val(c->snaps, i);
        }
    }
    res->chunks = g_hash_table_size(chunks);
    res->bytes = total;

    ret = vb_workers_start(&wk, threads, 1);
    if (ret) {
        vb_seterr(e, ret, "start workers: %s", strerror(-ret));
        goto out;
    }
    n_slots = (unsigned)wk.n * 4;
    slots = calloc(n_slots, sizeof(*slots));
    for (unsigned i = 0; i < n_slots; i++) {
        slots[i].work.fn = verify_work;
        slots[i].repo = r;
        slots[i].buf = malloc(VB_CHUNK_MAX);
        g_queue_push_tail(&free_slots, &slots[i]);
    }
    vb_progress_init(&prog, "verify", total, progress);
    g_hash_table_iter_init(&it, chunks);
    bool more = g_hash_table_iter_next(&it, &key, &val);
    unsigned active = 0;
    while (more || active) {
        if (vb_interrupted && more) {
            more = false;
            ret = vb_seterr(e, -EINTR, "interrupted");
        }
        while (more && !g_queue_is_empty(&free_slots)) {
            struct vchunk *v = g_queue_pop_head(&free_slots);
            memcpy(v->id, key, VB_ID_LEN);
            v->len = ((struct centry *)val)->len;
            v->err = 0;
            active++;
            vb_workers_push(&wk, &v->work);
            more = g_hash_table_iter_next(&it, &key, &val);
        }
        struct pollfd pfd = { .fd = wk.efd, .events = POLLIN };
        poll(&pfd, 1, 1000);
        struct vb_work *wd;
        while ((wd = vb_workers_pop(&wk))) {
            struct vchunk *v = (struct vchunk *)wd;
            active--;
            done += v->len;
            if (v->err) {
                struct centry *c = g_hash_table_lookup(chunks, v->id);
                json_object *o = json_object_new_object(), *sl = json_object_new_array();
                char hex[VB_ID_HEX];
                vb_hex(v->id, VB_ID_LEN, hex);
                json_object_object_add(o, "chunk", json_object_new_string(hex));
                json_object_object_add(o, "error", json_object_new_string(vb_strerror(&v->e)));
                for (guint k = 0; k < c->snaps->len; k++) {
                    guint si = g_array_index(c->snaps, guint, k);
                    json_object_array_add(sl, json_object_new_string(
                        ((struct vb_snapshot *)snaps->pdata[si])->id));
                    snap_bad[si] = true;
                }
                json_object_object_add(o, "snapshots", sl);
                json_object_array_add(bad_chunks, o);
                res->chunks_bad++;
            }
            g_queue_push_head(&free_slots, v);
        }
        vb_progress_update(&prog, done);
    }
    vb_progress_end(&prog);
    if (ret)
        goto out;
    for (guint i = 0; i < snaps->len; i++)
        res->snapshots_bad += snap_bad[i];
    {
        json_object *affected = json_object_new_array();
        for (guint i = 0; i < snaps->len; i++)
            if (snap_bad[i])
                json_object_array_add(affected, json_object_new_string(
                    ((struct vb_snapshot *)snaps->pdata[i])->id));
        res->report = json_object_new_object();
        json_object_object_add(res->report, "snapshots", json_object_new_int64((int64_t)res->snapshots));
        json_object_object_add(res->report, "chunks", json_object_new_int64((int64_t)res->chunks));
        json_object_object_add(res->report, "bytes", json_object_new_int64((int64_t)res->bytes));
        json_object_object_add(res->report, "damaged_chunks", bad_chunks);
        json_object_object_add(res->report, "damaged_snapshot_indexes", bad_snaps);
        json_object_object_add(res->report, "snapshots_affected", affected);
        bad_chunks = bad_snaps = NULL;
    }
out:
    vb_workers_stop(&wk);
    for (unsigned i = 0; slots && i < n_slots; i++)
        free(slots[i].buf);
    free(slots);
    g_queue_clear(&free_slots);
    json_object_put(bad_chunks);
    json_object_put(bad_snaps);
    free(snap_bad);
    g_array_free(refs, TRUE);
    g_hash_table_destroy(chunks);
    if (snaps)
        g_ptr_array_free(snaps, TRUE);
    return ret;
}

/* ---- prune ----------------------------------------------------------------- */

int vb_prune(struct vb_repo *r, const struct vb_prune_opts *o, json_object **plan, vb_error *e)
{
    GPtrArray *snaps;
    GHashTable *groups;
    GHashTableIter it;
    gpointer key, val;
    json_object *out = json_object_new_array();
    int ret;

    if (!vb_retention_any(&o->policy)) {
        json_object_put(out);
        return vb_seterr(e, -EINVAL, "prune needs at least one --keep-* option (refusing to "
                         "remove every snapshot)");
    }
    ret = vb_snap_list(r, o->vm, &snaps, e);
    if (ret) {
        json_object_put(out);
        return ret;
    }
    /* groups: vm + type + group, each newest first */
    groups = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                   (GDestroyNotify)g_ptr_array_unref);
    for (guint i = snaps->len; i-- > 0;) {
        struct vb_snapshot *s = snaps->pdata[i];
        char *k = g_strdup_printf("%s\n%s\n%s", s->vm, vb_snap_type_name(s->type), s->group);
        GPtrArray *g = g_hash_table_lookup(groups, k);
        if (!g) {
            g = g_ptr_array_new();
            g_hash_table_insert(groups, k, g);
        } else {
            g_free(k);
        }
        g_ptr_array_add(g, s);
    }
    g_hash_table_iter_init(&it, groups);
    while (g_hash_table_iter_next(&it, &key, &val)) {
        GPtrArray *g = val;
        int64_t *times = g_new(int64_t, g->len);
        unsigned *keeps = g_new(unsigned, g->len);

        for (guint i = 0; i < g->len; i++)
            times[i] = ((struct vb_snapshot *)g->pdata[i])->created_ns;
        vb_retention_plan(&o->policy, times, g->len, keeps);
        for (guint i = 0; i < g->len; i++) {
            struct vb_snapshot *s = g->pdata[i];
            json_object *reasons = json_object_new_array(), *o2;

            for (int k = 0; k < VB_KEEP_N_RULES; k++)
                if (keeps[i] & (1u << k))
                    json_object_array_add(reasons, json_object_new_string(
                        vb_keep_rule_name((enum vb_keep_rule)k)));
            o2 = json_object_new_object();
            json_object_object_add(o2, "id", json_object_new_string(s->id));
            json_object_object_add(o2, "keep", json_object_new_boolean(keeps[i] != 0));
            json_object_object_add(o2, "reasons", reasons);
            json_object_array_add(out, o2);
        }
        g_free(times);
        g_free(keeps);
    }
    if (!o->dry_run) {
        for (size_t i = 0; i < json_object_array_length(out) && !ret; i++) {
            json_object *x = json_object_array_get_idx(out, i), *k;
            json_object_object_get_ex(x, "keep", &k);
            if (!json_object_get_boolean(k))
                ret = vb_snap_delete(r, vb_json_str(x, "id"), e);
        }
    }
    g_hash_table_destroy(groups);
    g_ptr_array_free(snaps, TRUE);
    if (ret) {
        json_object_put(out);
        return ret;
    }
    *plan = out;
    return 0;
}

/* ---- gc and stats ----------------------------------------------------------- */

/* Every chunk referenced by any snapshot; fails if any snapshot can't be read. */
static int mark_all(struct vb_repo *r, GHashTable *marks, struct vb_stats *st, vb_error *e)
{
    GPtrArray *snaps;
    GArray *refs = g_array_new(FALSE, FALSE, sizeof(struct vb_chunk_ref));
    int ret = vb_snap_list(r, NULL, &snaps, e);

    if (ret) {
        g_array_free(refs, TRUE);
        return ret;
    }
    for (guint i = 0; i < snaps->len && !ret; i++) {
        struct vb_snapshot *s = snaps->pdata[i];
        g_array_set_size(refs, 0);
        ret = vb_snap_chunks(r, s, refs, e);
        if (ret) {
            vb_prefixerr(e, "cannot read snapshot %s, nothing removed", s->id);
            break;
        }
        if (st) {
            st->snapshots++;
            if (s->type == VB_SNAP_DISK) {
                st->disk_snapshots++;
                st->virtual_bytes += s->size;
            } else {
                st->files_snapshots++;
                st->virtual_bytes += (uint64_t)vb_json_int(s->json, "bytes", 0);
            }
        }
        for (guint k = 0; k < refs->len; k++) {
            struct vb_chunk_ref *ref = &g_array_index(refs, struct vb_chunk_ref, k);
            if (st)
                st->logical_bytes += ref->len;
            if (!g_hash_table_contains(marks, ref->id)) {
                g_hash_table_insert(marks, g_memdup2(ref->id, VB_ID_LEN),
                                    GUINT_TO_POINTER(ref->len));
                if (st)
                    st->unique_bytes += ref->len;
            }
        }
    }
    g_array_free(refs, TRUE);
    g_ptr_array_free(snaps, TRUE);
    return ret;
}

typedef void (*chunk_visit)(void *opaque, int dirfd, const char *name, const struct stat *st,
                            bool temp);

static int walk_chunks(struct vb_repo *r, chunk_visit fn, void *opaque, vb_error *e)
{
    DIR *top = fdopendir(dup(r->chunks_fd));
    struct dirent *de;

    if (!top)
        return vb_seterr(e, -errno, "open %s/chunks: %s", r->path, strerror(errno));
    rewinddir(top);
    while ((de = readdir(top))) {
        int fd;
        DIR *d;
        struct dirent *ce;

        if (strlen(de->d_name) != VB_FANOUT || de->d_name[0] == '.')
            continue;
        fd = openat(r->chunks_fd, de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 || !(d = fdopendir(fd))) {
            if (fd >= 0)
                close(fd);
            continue;
        }
        while ((ce = readdir(d))) {
            struct stat st;
            if (!strcmp(ce->d_name, ".") || !strcmp(ce->d_name, ".."))
                continue;
            if (fstatat(dirfd(d), ce->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                continue;
            fn(opaque, dirfd(d), ce->d_name, &st, !strncmp(ce->d_name, ".tmp-", 5));
        }
        closedir(d);
    }
    closedir(top);
    return 0;
}

struct sweep {
    GHashTable *marks;
    struct vb_gc_result *res;
    bool dry_run;
};

static void sweep_one(void *opaque, int dirfd, const char *name, const struct stat *st, bool temp)
{
    struct sweep *sw = opaque;
    uint8_t id[VB_ID_LEN];

    if (temp) {
        sw->res->temp_removed++;
        if (!sw->dry_run)
            unlinkat(dirfd, name, 0);
        return;
    }
    if (vb_unhex(name, id, VB_ID_LEN) == 0 && g_hash_table_contains(sw->marks, id)) {
        sw->res->chunks_kept++;
        return;
    }
    if (strlen(name) > 4 && !strcmp(name + strlen(name) - 4, ".bad"))
        return;     /* kept for inspection */
    sw->res->chunks_removed++;
    sw->res->bytes_removed += (uint64_t)st->st_size;
    if (!sw->dry_run)
        unlinkat(dirfd, name, 0);
}

static void sweep_snapshot_temps(struct vb_repo *r, bool dry_run, struct vb_gc_result *res)
{
    int sfd = openat(r->dirfd, "snapshots", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = sfd >= 0 ? fdopendir(sfd) : NULL;
    struct dirent *de;

    if (!d) {
        if (sfd >= 0)
            close(sfd);
        return;
    }
    while ((de = readdir(d))) {
        char rel[PATH_MAX];
        DIR *vd;
        struct dirent *ve;
        int vfd;

        if (!vb_valid_name(de->d_name))
            continue;
        vfd = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (vfd < 0 || !(vd = fdopendir(vfd))) {
            if (vfd >= 0)
                close(vfd);
            continue;
        }
        while ((ve = readdir(vd))) {
            if (strncmp(ve->d_name, ".tmp-", 5) && strncmp(ve->d_name, ".del-", 5))
                continue;
            res->temp_removed++;
            if (!dry_run) {
                snprintf(rel, sizeof(rel), "snapshots/%s/%s", de->d_name, ve->d_name);
                vb_rm_rf_at(r->dirfd, rel);
            }
        }
        closedir(vd);
    }
    closedir(d);
}

int vb_gc(struct vb_repo *r, bool dry_run, struct vb_gc_result *res, vb_error *e)
{
    GHashTable *marks = g_hash_table_new_full(vb_id_hash, vb_id_equal, g_free, NULL);
    struct sweep sw = { .marks = marks, .res = res, .dry_run = dry_run };
    int ret;

    memset(res, 0, sizeof(*res));
    ret = mark_all(r, marks, NULL, e);
    if (!ret)
        ret = walk_chunks(r, sweep_one, &sw, e);
    if (!ret)
        sweep_snapshot_temps(r, dry_run, res);
    if (!ret && !dry_run)
        ret = vb_repo_sync(r, e);
    g_hash_table_destroy(marks);
    return ret;
}

static void count_one(void *opaque, int dirfd, const char *name, const struct stat *st, bool temp)
{
    struct vb_stats *s = opaque;

    if (temp)
        return;
    s->chunk_files++;
    s->stored_bytes += (uint64_t)st->st_size;
}

int vb_stats(struct vb_repo *r, struct vb_stats *st, vb_error *e)
{
    GHashTable *marks = g_hash_table_new_full(vb_id_hash, vb_id_equal, g_free, NULL);
    int ret;

    memset(st, 0, sizeof(*st));
    ret = mark_all(r, marks, st, e);
    st->chunks = g_hash_table_size(marks);
    if (!ret)
        ret = walk_chunks(r, count_one, st, e);
    g_hash_table_destroy(marks);
    return ret;
}
