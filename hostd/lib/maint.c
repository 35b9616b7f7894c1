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
#include "filesnap.h"
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
            if (cat->c[i].flags & VB_CATC_ZERO)
                continue;           /* written zeros: nothing stored */
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
    const struct vb_idspace *space;  /* of the snapshots that reference it */
    uint8_t *buf;
    int err;
    vb_error e;
};

struct centry {              /* one distinct chunk */
    uint32_t len;
    const struct vb_idspace *space;  /* its id's: the first snapshot's that names it */
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

    v->err = vb_repo_get_chunk(v->repo, c, v->space, v->id, v->buf, VB_CHUNK_MAX, &got, &v->e);
    if (!v->err && got != v->len)
        v->err = vb_seterr(&v->e, -EBADMSG, "chunk holds %zu bytes, snapshots expect %u", got,
                           v->len);
}

int vb_verify(struct vb_repo *r, const char *snapshot, int threads, bool progress,
              struct vb_verify_result *res, vb_error *e)
{
    GPtrArray *snaps = NULL, *problems = NULL;
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
        /* what cannot be read is damage to report, not something to skip */
        ret = vb_snap_scan(r, NULL, &snaps, &problems, e);
        if (ret)
            goto out;
        for (guint i = 0; i < problems->len; i++) {
            struct vb_snap_problem *p = problems->pdata[i];
            json_object *o = json_object_new_object();
            json_object_object_add(o, "snapshot", json_object_new_string(p->where));
            json_object_object_add(o, "error", json_object_new_string(p->error));
            json_object_array_add(bad_snaps, o);
        }
    }
    res->snapshots = snaps->len + (problems ? problems->len : 0);
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
                c->space = &s->space;
                c->snaps = g_array_new(FALSE, FALSE, sizeof(guint));
                g_hash_table_insert(chunks, g_memdup2(ref->id, VB_ID_LEN), c);
                total += ref->len;
            }
            if (!vb_idspace_same(c->space, &s->space) && !snap_bad[i]) {
                /* ids of two spaces never meet: one of the two was tampered with */
                json_object *o = json_object_new_object();
                char hex[VB_ID_HEX];
                vb_hex(ref->id, VB_ID_LEN, hex);
                json_object_object_add(o, "snapshot", json_object_new_string(s->id));
                char *msg = g_strdup_printf("names chunk %s, a chunk of another dedup group",
                                            hex);
                json_object_object_add(o, "error", json_object_new_string(msg));
                g_free(msg);
                json_object_array_add(bad_snaps, o);
                snap_bad[i] = true;
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
            v->space = ((struct centry *)val)->space;
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
    res->snapshots_bad += problems ? problems->len : 0;
    {
        json_object *affected = json_object_new_array();
        for (guint i = 0; i < snaps->len; i++)
            if (snap_bad[i])
                json_object_array_add(affected, json_object_new_string(
                    ((struct vb_snapshot *)snaps->pdata[i])->id));
        for (guint i = 0; problems && i < problems->len; i++)
            json_object_array_add(affected, json_object_new_string(
                ((struct vb_snap_problem *)problems->pdata[i])->where));
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
    if (problems)
        g_ptr_array_free(problems, TRUE);
    return ret;
}

/* The first of the problems a scan found, as an error: "what: problem (and N more)". */
static int scan_refusal(GPtrArray *problems, const char *what, vb_error *e)
{
    struct vb_snap_problem *p = problems->pdata[0];

    if (problems->len == 1)
        return vb_seterr(e, -EBADMSG, "%s: %s", what, p->error);
    return vb_seterr(e, -EBADMSG, "%s: %s (and %u more problems; 'vbackupctl verify' lists "
                     "them)", what, p->error, problems->len - 1);
}

/* ---- prune ----------------------------------------------------------------- */

int vb_prune(struct vb_repo *r, const struct vb_prune_opts *o, json_object **plan, vb_error *e)
{
    GPtrArray *snaps, *problems;
    struct vb_retention_snap *rs;
    json_object *out;
    unsigned *keeps;
    int ret;

    if (!vb_retention_any(&o->policy))
        return vb_seterr(e, -EINVAL, "prune needs at least one --keep-* option (refusing to "
                         "remove every snapshot)");
    /* a snapshot that cannot be read could be the one retention keeps */
    ret = vb_snap_scan(r, o->vm, &snaps, &problems, e);
    if (ret)
        return ret;
    if (problems->len) {
        ret = scan_refusal(problems, "cannot read every snapshot, nothing removed", e);
        g_ptr_array_free(problems, TRUE);
        g_ptr_array_free(snaps, TRUE);
        return ret;
    }
    g_ptr_array_free(problems, TRUE);
    rs = g_new0(struct vb_retention_snap, snaps->len);
    keeps = g_new0(unsigned, snaps->len);
    for (guint i = 0; i < snaps->len; i++) {
        struct vb_snapshot *s = snaps->pdata[i];
        rs[i] = (struct vb_retention_snap){ .id = s->id, .vm = s->vm,
                                            .type = vb_snap_type_name(s->type),
                                            .group = s->group ? s->group : "",
                                            .created_ns = s->created_ns };
    }
    out = vb_retention_plan_groups(&o->policy, rs, snaps->len, keeps);
    if (!out)
        ret = vb_seterr(e, -ENOMEM, "prune: out of memory");
    for (guint i = 0; !ret && !o->dry_run && i < snaps->len; i++)
        if (!keeps[i])
            ret = vb_snap_delete(r, ((struct vb_snapshot *)snaps->pdata[i])->id, e);
    g_free(rs);
    g_free(keeps);
    g_ptr_array_free(snaps, TRUE);
    if (ret) {
        json_object_put(out);
        return ret;
    }
    *plan = out;
    return 0;
}

/* ---- gc and stats ----------------------------------------------------------- */

/* Every chunk referenced by any snapshot; fails, naming the cause, if any
 * entry of snapshots/ or any snapshot's index cannot be read completely.
 * consequence ends the message's first part (", nothing removed"). */
static int mark_all(struct vb_repo *r, GHashTable *marks, struct vb_stats *st,
                    const char *consequence, vb_error *e)
{
    GPtrArray *snaps, *problems;
    GArray *refs;
    char what[128];
    int ret = vb_snap_scan(r, NULL, &snaps, &problems, e);

    if (ret)
        return ret;
    if (problems->len) {
        snprintf(what, sizeof(what), "cannot read every snapshot%s", consequence);
        ret = scan_refusal(problems, what, e);
        g_ptr_array_free(problems, TRUE);
        g_ptr_array_free(snaps, TRUE);
        return ret;
    }
    g_ptr_array_free(problems, TRUE);
    refs = g_array_new(FALSE, FALSE, sizeof(struct vb_chunk_ref));
    for (guint i = 0; i < snaps->len && !ret; i++) {
        struct vb_snapshot *s = snaps->pdata[i];
        g_array_set_size(refs, 0);
        ret = vb_snap_chunks(r, s, refs, e);
        if (ret) {
            vb_prefixerr(e, "cannot read snapshot %s%s", s->id, consequence);
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

/* Called for each file of a fan-out folder (dir: "ab"). */
typedef void (*chunk_visit)(void *opaque, const char *dir, const char *name,
                            const struct stat *st);

static bool fanout_name(const char *s)
{
    static const char hex[] = "0123456789abcdef";

    if (strlen(s) != VB_FANOUT)
        return false;
    for (int i = 0; i < VB_FANOUT; i++)
        if (!strchr(hex, s[i]) || !s[i])
            return false;
    return true;
}

/* Every file in the chunk store.  A folder that cannot be opened or listed
 * to its end, or a file that cannot be looked at, is an error: what is not
 * seen cannot be judged.  Other entries of chunks/ are not ours: skipped. */
static int walk_chunks(struct vb_repo *r, chunk_visit fn, void *opaque, vb_error *e)
{
    int tfd = dup(r->chunks_fd), ret = 0;
    DIR *top = tfd >= 0 ? fdopendir(tfd) : NULL;
    struct dirent *de;

    if (!top) {
        ret = vb_seterr(e, -errno, "open %s/chunks: %s", r->path, strerror(errno));
        if (tfd >= 0)
            close(tfd);
        return ret;
    }
    rewinddir(top);
    while (!ret) {
        int fd;
        DIR *d;
        struct dirent *ce;

        errno = 0;
        if (!(de = readdir(top))) {
            if (errno)
                ret = vb_seterr(e, -errno, "list %s/chunks: %s", r->path, strerror(errno));
            break;
        }
        if (!fanout_name(de->d_name))
            continue;
        fd = openat(r->chunks_fd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 || !(d = fdopendir(fd))) {
            ret = vb_seterr(e, -errno, "open %s/chunks/%s: %s", r->path, de->d_name,
                            strerror(errno));
            if (fd >= 0)
                close(fd);
            break;
        }
        while (!ret) {
            struct stat st;

            errno = 0;
            if (!(ce = readdir(d))) {
                if (errno)
                    ret = vb_seterr(e, -errno, "list %s/chunks/%s: %s", r->path, de->d_name,
                                    strerror(errno));
                break;
            }
            if (!strcmp(ce->d_name, ".") || !strcmp(ce->d_name, ".."))
                continue;
            if (fstatat(dirfd(d), ce->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                ret = vb_seterr(e, -errno, "stat %s/chunks/%s/%s: %s", r->path, de->d_name,
                                ce->d_name, strerror(errno));
                break;
            }
            fn(opaque, de->d_name, ce->d_name, &st);
        }
        closedir(d);
    }
    closedir(top);
    return ret;
}

/* gc decides everything first and deletes only when nothing was in doubt. */
struct sweep {
    GHashTable *marks;
    struct vb_gc_result *res;
    GByteArray *doomed;      /* "ab/name\0" of chunk files and leftovers to delete */
};

static void doom(GByteArray *doomed, const char *dir, const char *name)
{
    g_byte_array_append(doomed, (const guint8 *)dir, (guint)strlen(dir));
    g_byte_array_append(doomed, (const guint8 *)"/", 1);
    g_byte_array_append(doomed, (const guint8 *)name, (guint)strlen(name) + 1);
}

static void sweep_one(void *opaque, const char *dir, const char *name, const struct stat *st)
{
    struct sweep *sw = opaque;
    uint8_t id[VB_ID_LEN];

    if (!strncmp(name, ".tmp-", 5)) {
        /* a chunk being written when a backup was killed: no session runs now */
        sw->res->temp_removed++;
        doom(sw->doomed, dir, name);
        return;
    }
    if (strlen(name) != 2 * VB_ID_LEN || vb_unhex(name, id, VB_ID_LEN) != 0)
        return;     /* not a chunk (e.g. *.bad, kept for inspection): not ours to judge */
    if (g_hash_table_contains(sw->marks, id)) {
        sw->res->chunks_kept++;
        return;
    }
    sw->res->chunks_removed++;
    sw->res->bytes_removed += (uint64_t)st->st_size;
    doom(sw->doomed, dir, name);
}

/* Leftovers of interrupted backups and deletions: snapshots/<vm>/.tmp-*, .del-*. */
static int find_snapshot_leftovers(struct vb_repo *r, GByteArray *doomed, struct vb_gc_result *res,
                                   vb_error *e)
{
    int sfd = vb_repo_openat(r->dirfd, "snapshots", O_RDONLY | O_DIRECTORY, 0), ret = 0;
    DIR *d = sfd >= 0 ? fdopendir(sfd) : NULL;
    struct dirent *de;

    if (!d) {
        int err = sfd < 0 ? -sfd : errno;
        ret = vb_seterr(e, -err, "open %s/snapshots: %s", r->path, vb_repo_strerror(err));
        if (sfd >= 0)
            close(sfd);
        return ret;
    }
    while (!ret) {
        char rel[PATH_MAX];
        DIR *vd;
        struct dirent *ve;
        int vfd;

        errno = 0;
        if (!(de = readdir(d))) {
            if (errno)
                ret = vb_seterr(e, -errno, "list %s/snapshots: %s", r->path, strerror(errno));
            break;
        }
        if (!vb_valid_name(de->d_name))
            continue;           /* the scan has judged these already */
        vfd = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (vfd < 0 || !(vd = fdopendir(vfd))) {
            ret = vb_seterr(e, -errno, "open %s/snapshots/%s: %s", r->path, de->d_name,
                            strerror(errno));
            if (vfd >= 0)
                close(vfd);
            break;
        }
        for (;;) {
            errno = 0;
            if (!(ve = readdir(vd))) {
                if (errno)
                    ret = vb_seterr(e, -errno, "list %s/snapshots/%s: %s", r->path, de->d_name,
                                    strerror(errno));
                break;
            }
            if (strncmp(ve->d_name, ".tmp-", 5) && strncmp(ve->d_name, ".del-", 5))
                continue;
            res->temp_removed++;
            snprintf(rel, sizeof(rel), "snapshots/%s", de->d_name);
            doom(doomed, rel, ve->d_name);
        }
        closedir(vd);
    }
    closedir(d);
    return ret;
}

/* Remove REL ("folder/name") beneath DIRFD: the folder opened without
 * following a symlink, then the name in it (a whole tree when TREE). */
static int remove_in(int dirfd, const char *rel, bool tree)
{
    const char *slash = strrchr(rel, '/');
    char dir[PATH_MAX];
    int fd, ret = 0;

    if (!slash || (size_t)(slash - rel) >= sizeof(dir))
        return -EINVAL;
    memcpy(dir, rel, (size_t)(slash - rel));
    dir[slash - rel] = 0;
    fd = vb_repo_openat(dirfd, dir, O_RDONLY | O_DIRECTORY, 0);
    if (fd < 0)
        return fd;
    if (tree)
        ret = vb_rm_rf_at(fd, slash + 1);
    else if (unlinkat(fd, slash + 1, 0) < 0)
        ret = -errno;
    close(fd);
    return ret;
}

int vb_gc(struct vb_repo *r, bool dry_run, struct vb_gc_result *res, vb_error *e)
{
    GHashTable *marks = g_hash_table_new_full(vb_id_hash, vb_id_equal, g_free, NULL);
    struct sweep sw = { .marks = marks, .res = res, .doomed = g_byte_array_new() };
    GByteArray *leftovers = g_byte_array_new();
    uint64_t failed = 0;
    int ret, first_err = 0;
    char first[PATH_MAX] = "";

    memset(res, 0, sizeof(*res));
    /* 1. mark: every snapshot read completely, or nothing is removed */
    ret = mark_all(r, marks, NULL, ", nothing removed", e);
    /* 2. decide: every chunk folder listed to its end, or nothing is removed */
    if (!ret) {
        ret = walk_chunks(r, sweep_one, &sw, e);
        if (ret)
            vb_prefixerr(e, "cannot list every chunk, nothing removed");
    }
    if (!ret) {
        ret = find_snapshot_leftovers(r, leftovers, res, e);
        if (ret)
            vb_prefixerr(e, "cannot list every snapshot folder, nothing removed");
    }
    if (!ret && dry_run)
        ret = vb_repo_gc_generation(r, &res->generation, e);
    if (ret || dry_run)
        goto out;
    /* 3. what backups knew about chunks before this point is void */
    ret = vb_repo_gc_advance(r, &res->generation, e);
    if (ret) {
        vb_prefixerr(e, "nothing removed");
        goto out;
    }
    /* 4. delete: each name in its folder, opened beneath the repository
     * without following a symlink (one planted since the walk fails) */
    for (guint off = 0; off < sw.doomed->len;) {
        const char *rel = (const char *)sw.doomed->data + off;
        int r2 = remove_in(r->chunks_fd, rel, false);
        if (r2 && r2 != -ENOENT && !failed++) {
            first_err = r2;
            snprintf(first, sizeof(first), "chunks/%s", rel);
        }
        off += (guint)strlen(rel) + 1;
    }
    for (guint off = 0; off < leftovers->len;) {
        const char *rel = (const char *)leftovers->data + off;
        int r2 = remove_in(r->dirfd, rel, true);
        if (r2 && r2 != -ENOENT && !failed++) {
            first_err = r2;
            snprintf(first, sizeof(first), "%s", rel);
        }
        off += (guint)strlen(rel) + 1;
    }
    ret = vb_repo_sync(r, e);
    if (!ret && failed)
        ret = vb_seterr(e, first_err, "gc could not remove %llu entries, e.g. %s/%s: %s",
                        (unsigned long long)failed, r->path, first, strerror(-first_err));
out:
    g_byte_array_free(sw.doomed, TRUE);
    g_byte_array_free(leftovers, TRUE);
    g_hash_table_destroy(marks);
    return ret;
}

static void count_one(void *opaque, const char *dir, const char *name, const struct stat *st)
{
    struct vb_stats *s = opaque;

    if (!strncmp(name, ".tmp-", 5))
        return;
    s->chunk_files++;
    s->stored_bytes += (uint64_t)st->st_size;
}

int vb_stats(struct vb_repo *r, struct vb_stats *st, vb_error *e)
{
    GHashTable *marks = g_hash_table_new_full(vb_id_hash, vb_id_equal, g_free, NULL);
    int ret;

    memset(st, 0, sizeof(*st));
    ret = mark_all(r, marks, st, "", e);
    st->chunks = g_hash_table_size(marks);
    if (!ret)
        ret = walk_chunks(r, count_one, st, e);
    g_hash_table_destroy(marks);
    return ret;
}
