/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Reading snapshots (snapread.h) of either repository format.
 *
 * Version 1: index.json and disk.fidx through snapshot.c, files.cat through
 * filesnap.c, chunks through repo.c; the read claim keeps gc away.
 * Version 2: manifests, their chunk list and catalog streams, and blobs
 * through the v2 door (repo2.h).  A snapshot's chunks stay while its
 * manifest does (gc marks them); a blob that gc moved meanwhile is found
 * again by vb2_blob_get.
 *
 * Chunk reads share a pool of codecs (zstd contexts and read buffers), one
 * per read in flight.
 */
#include "snapread.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filesnap.h"
#include "repo.h"
#include "repo2.h"
#include "snapshot.h"

struct vb_sr {
    struct vb_repo *repo;    /* version 1, or NULL */
    struct vb_claim *claim;
    struct vb2_repo *r2;     /* version 2, or NULL */
    char r2_id[33];          /* its repository id */
    bool borrowed;           /* repo or r2 is the caller's (vb_sr_over) */
    GMutex lock;             /* guards codecs */
    GPtrArray *codecs;       /* idle struct vb_codec * */
};

struct vb_sr_snap {
    struct vb_sr_info info;
    struct vb_idspace space;
    uint64_t size;           /* disks */
    uint32_t chunk_size;
    uint64_t n_chunks;
    uint8_t *ids;            /* n_chunks * 32, a zero id: a hole */
    struct vb_catalog *cat;  /* files */
};

/* What every open does once it has its repository. */
static void sr_ready(struct vb_sr *r)
{
    if (r->r2) {
        struct vb2_repo_info ri;
        vb2_repo_info(r->r2, &ri);
        snprintf(r->r2_id, sizeof(r->r2_id), "%s", ri.id);
    }
    g_mutex_init(&r->lock);
    r->codecs = g_ptr_array_new();
}

int vb_sr_open(const char *path, bool wait, struct vb_sr **out, vb_error *e)
{
    return vb_sr_open_secret(path, wait, NULL, NULL, out, e);
}

int vb_sr_open_secret(const char *path, bool wait, const char *password_file,
                      const char *key_file, struct vb_sr **out, vb_error *e)
{
    return vb_sr_open_opts(path, wait, password_file, key_file, NULL, out, e);
}

int vb_sr_open_opts(const char *path, bool wait, const char *password_file,
                    const char *key_file, const char *const *store_opts, struct vb_sr **out,
                    vb_error *e)
{
    struct vb2_open_opts o = { .readonly = true, .store_opts = store_opts };
    struct vb_sr *r = g_new0(struct vb_sr, 1);
    int ret;

    if (vb2_is_repository(path)) {
        ret = vb2_repo_open_asking(path, &o, password_file, key_file, &r->r2, e);
    } else {
        ret = vb_repo_open(path, VB_LOCK_NONE, !wait, &r->repo, e);
        if (!ret && (ret = vb_repo_claim(r->repo, wait, &r->claim, e)))
            vb_repo_close(r->repo);
    }
    if (ret) {
        g_free(r);
        return ret;
    }
    sr_ready(r);
    *out = r;
    return 0;
}

int vb_sr_over(struct vb_repo *r1, struct vb2_repo *r2, bool wait, struct vb_sr **out,
               vb_error *e)
{
    struct vb_sr *r = g_new0(struct vb_sr, 1);
    int ret;

    r->borrowed = true;
    r->repo = r1;
    r->r2 = r2;
    if (r1 && (ret = vb_repo_claim(r1, wait, &r->claim, e))) {
        g_free(r);
        return ret;
    }
    sr_ready(r);
    *out = r;
    return 0;
}

static void codec_free(struct vb_codec *c)
{
    vb_codec_free(c);
    g_free(c);
}

void vb_sr_close(struct vb_sr *r)
{
    if (!r)
        return;
    for (guint i = 0; i < r->codecs->len; i++)
        codec_free(r->codecs->pdata[i]);
    g_ptr_array_free(r->codecs, TRUE);
    g_mutex_clear(&r->lock);
    vb_repo_release(r->claim);
    if (r->repo && !r->borrowed)
        vb_repo_close(r->repo);
    if (r->r2 && !r->borrowed)
        vb2_repo_close(r->r2);
    g_free(r);
}

int vb_sr_format(const struct vb_sr *r)
{
    return r->r2 ? 2 : 1;
}

const char *vb_sr_repo_id(const struct vb_sr *r)
{
    return r->r2 ? r->r2_id : NULL;
}

/* The members of i, not i */
static void info_clear(struct vb_sr_info *i)
{
    g_free(i->id);
    g_free(i->vm);
    g_free(i->disk);
    g_free(i->group);
    g_free(i->mode);
    g_free(i->parent);
    g_free(i->dedup_group);
    g_strfreev(i->roots);
    json_object_put(i->source);
    json_object_put(i->notes);
    json_object_put(i->stats);
}

void vb_sr_info_free(struct vb_sr_info *i)
{
    if (!i)
        return;
    info_clear(i);
    g_free(i);
}

/* A copy of its own (an info is handed to other threads: an export's) of an
 * object, or an empty object */
static json_object *object_or_empty(json_object *o)
{
    json_object *c = NULL;

    if (!o || !json_object_is_type(o, json_type_object) || json_object_deep_copy(o, &c, NULL))
        return json_object_new_object();
    return c;
}

struct vb_sr_info *vb_sr_info_dup(const struct vb_sr_info *i)
{
    struct vb_sr_info *c = g_new0(struct vb_sr_info, 1);

    *c = *i;
    c->id = g_strdup(i->id);
    c->vm = g_strdup(i->vm);
    c->time = c->id + strlen(c->vm) + 1;
    c->disk = g_strdup(i->disk);
    c->group = g_strdup(i->group);
    c->mode = g_strdup(i->mode);
    c->parent = g_strdup(i->parent);
    c->dedup_group = g_strdup(i->dedup_group);
    c->roots = g_new0(char *, i->nroots + 1);
    for (size_t k = 0; k < i->nroots; k++)
        c->roots[k] = g_strdup(i->roots[k]);
    c->source = object_or_empty(i->source);
    c->notes = object_or_empty(i->notes);
    c->stats = object_or_empty(i->stats);
    return c;
}

/* a disk's serial (host configuration): printable, no '/' */
static char *disk_name(const char *name)
{
    return g_strdup(name && *name && !strchr(name, '/') ? name : "disk");
}

/* index.json's roots: strings (a root that is not UTF-8 was escaped when it
 * was written), empty ones left out */
static void roots_fill1(struct vb_sr_info *i, json_object *idx)
{
    json_object *roots;
    size_t n;

    i->roots = g_new0(char *, 1);
    if (!json_object_object_get_ex(idx, "roots", &roots) ||
        !json_object_is_type(roots, json_type_array))
        return;
    n = json_object_array_length(roots);
    i->roots = g_renew(char *, i->roots, n + 1);
    for (size_t k = 0; k < n; k++) {
        json_object *r = json_object_array_get_idx(roots, k);
        if (json_object_is_type(r, json_type_string) && *json_object_get_string(r))
            i->roots[i->nroots++] = g_strdup(json_object_get_string(r));
    }
    i->roots[i->nroots] = NULL;
}

static void info_fill(struct vb_sr_info *i, const struct vb_snapshot *s)
{
    json_object *disk = NULL, *stats = NULL;
    const char *mode = vb_json_str(s->json, "mode");

    i->id = g_strdup(s->id);
    i->vm = g_strdup(s->vm);
    i->time = i->id + strlen(i->vm) + 1;
    i->kind = s->type == VB_SNAP_DISK ? VB_SR_DISK : VB_SR_FILES;
    i->created_ns = s->created_ns;
    if (i->kind == VB_SR_DISK && json_object_object_get_ex(s->json, "disk", &disk)) {
        i->disk = disk_name(vb_json_str(disk, "name"));
        i->size = (uint64_t)VB_MAX(vb_json_int(disk, "size", 0), (int64_t)0);
    } else if (i->kind == VB_SR_FILES) {
        i->size = (uint64_t)VB_MAX(vb_json_int(s->json, "bytes", 0), (int64_t)0);
    }
    i->group = g_strdup(s->group ? s->group : "");
    i->mode = g_strdup(mode);
    i->parent = g_strdup(s->parent);
    i->dedup_group = s->space.tagged ? g_strdup(s->space.group) : NULL;
    if (i->kind == VB_SR_FILES)
        roots_fill1(i, s->json);
    else
        i->roots = g_new0(char *, 1);
    i->source = json_object_new_object();
    i->notes = json_object_new_object();
    json_object_object_get_ex(s->json, "stats", &stats);
    i->stats = object_or_empty(stats);
}

static void info_fill2(struct vb_sr_info *i, const struct vb_manifest *m)
{
    i->id = g_strdup(m->id);
    i->vm = g_strdup(m->vm);
    i->time = i->id + strlen(i->vm) + 1;
    i->kind = m->type == VB_MF_DISK ? VB_SR_DISK : VB_SR_FILES;
    i->created_ns = m->created_ns;
    if (i->kind == VB_SR_DISK) {
        i->disk = disk_name(m->disk.name);
        i->size = m->disk.size;
    } else {
        i->size = m->files.bytes;
    }
    i->group = g_strdup(m->group ? m->group : "");
    i->mode = g_strdup(m->mode);
    i->parent = g_strdup(m->parent);
    i->dedup_group = g_strdup(m->dedup_group);
    i->roots = g_new0(char *, m->files.nroots + 1);
    for (size_t k = 0; k < m->files.nroots; k++)
        i->roots[i->nroots++] = g_strdup(m->files.roots[k]);
    i->source = object_or_empty(m->source);
    i->notes = object_or_empty(m->notes);
    i->stats = object_or_empty(m->stats);
}

int vb_sr_list(struct vb_sr *r, const char *vm, GPtrArray **out, vb_error *e)
{
    GPtrArray *list, *res, *problems = NULL;
    int ret = r->r2 ? vb2_snap_list(r->r2, vm, &list, &problems, e)
                    : vb_snap_list(r->repo, vm, &list, e);

    if (ret)
        return ret;
    res = g_ptr_array_new_with_free_func((GDestroyNotify)vb_sr_info_free);
    for (guint k = 0; k < list->len; k++) {
        struct vb_sr_info *i = g_new0(struct vb_sr_info, 1);
        if (r->r2)
            info_fill2(i, list->pdata[k]);
        else
            info_fill(i, list->pdata[k]);
        g_ptr_array_add(res, i);
    }
    g_ptr_array_free(list, TRUE);
    /* as version 1's listing: a snapshot that cannot be read is left out */
    if (problems)
        g_ptr_array_free(problems, TRUE);
    *out = res;
    return 0;
}

int vb_sr_stat(struct vb_sr *r, const char *id, struct vb_sr_info **out, vb_error *e)
{
    struct vb_sr_info *i = g_new0(struct vb_sr_info, 1);
    int ret;

    if (r->r2) {
        struct vb_manifest *m;
        if (!(ret = vb2_snap_load(r->r2, id, &m, e))) {
            info_fill2(i, m);
            vb_manifest_free(m);
        }
    } else {
        struct vb_snapshot *s;
        if (!(ret = vb_snap_load(r->repo, id, &s, e))) {
            info_fill(i, s);
            vb_snap_free(s);
        }
    }
    if (ret) {
        g_free(i);
        return ret;
    }
    *out = i;
    return 0;
}

static int snap_open1(struct vb_sr *r, const char *id, struct vb_sr_snap *s, vb_error *e)
{
    struct vb_snapshot *snap;
    int ret = vb_snap_load(r->repo, id, &snap, e);

    if (ret)
        return ret;
    if (snap->type == VB_SNAP_DISK)
        ret = vb_snap_load_fidx(r->repo, snap, e);
    else
        ret = vb_files_catalog(r->repo, snap, &s->cat, e);
    if (!ret) {
        info_fill(&s->info, snap);
        s->space = snap->space;
        if (s->info.kind == VB_SR_DISK) {
            s->info.size = s->size = snap->size;   /* the checked index, not index.json */
            s->chunk_size = snap->chunk_size;
            s->n_chunks = snap->n_chunks;
            s->ids = g_steal_pointer(&snap->ids);
        }
    }
    vb_snap_free(snap);
    return ret;
}

static int snap_open2(struct vb_sr *r, const char *id, struct vb_sr_snap *s, vb_error *e)
{
    struct vb_manifest *m;
    GByteArray *b = g_byte_array_new();
    int ret = vb2_snap_load(r->r2, id, &m, e);

    if (ret) {
        g_byte_array_free(b, TRUE);
        return ret;
    }
    info_fill2(&s->info, m);
    ret = vb_idspace_init(&s->space, m->dedup_group, e);
    if (!ret && m->type == VB_MF_DISK) {
        ret = vb2_stream_get_all(r->r2, m, &m->chunks, b, e);
        if (!ret && b->len != m->disk.chunk_count * VB_HASH_LEN)
            ret = vb_seterr(e, -EBADMSG, "snapshot %s: its chunk list holds %u bytes, not %llu "
                            "chunk ids", m->id, b->len, (unsigned long long)m->disk.chunk_count);
        if (!ret) {
            s->size = m->disk.size;
            s->chunk_size = m->disk.chunk_size;
            s->n_chunks = m->disk.chunk_count;
            s->ids = (uint8_t *)g_byte_array_free(g_steal_pointer(&b), FALSE);
        }
    } else if (!ret) {
        g_autofree char *what = g_strdup_printf("the catalog of %s", m->id);
        ret = vb2_stream_get_all(r->r2, m, &m->catalog, b, e);
        if (!ret) {
            size_t len = b->len;
            ret = vb_cat_parse(g_byte_array_free(g_steal_pointer(&b), FALSE), len, what,
                               &s->cat, e);
        }
    }
    if (b)
        g_byte_array_free(b, TRUE);
    vb_manifest_free(m);
    return ret;
}

int vb_sr_snap_open(struct vb_sr *r, const char *id, struct vb_sr_snap **out, vb_error *e)
{
    struct vb_sr_snap *s = g_new0(struct vb_sr_snap, 1);
    int ret = r->r2 ? snap_open2(r, id, s, e) : snap_open1(r, id, s, e);

    if (ret) {
        vb_sr_snap_close(s);
        return ret;
    }
    *out = s;
    return 0;
}

void vb_sr_snap_close(struct vb_sr_snap *s)
{
    if (!s)
        return;
    info_clear(&s->info);
    vb_cat_free(s->cat);
    g_free(s->ids);
    g_free(s);
}

const struct vb_sr_info *vb_sr_snap_info(const struct vb_sr_snap *s)
{
    return &s->info;
}

uint64_t vb_sr_disk_size(const struct vb_sr_snap *s)
{
    return s->size;
}

uint32_t vb_sr_disk_chunk_size(const struct vb_sr_snap *s)
{
    return s->chunk_size;
}

uint64_t vb_sr_disk_chunks(const struct vb_sr_snap *s)
{
    return s->n_chunks;
}

const uint8_t *vb_sr_disk_chunk(const struct vb_sr_snap *s, uint64_t i)
{
    const uint8_t *id;

    if (!s->ids || i >= s->n_chunks)
        return NULL;
    id = s->ids + i * VB_ID_LEN;
    return vb_id_is_zero(id) ? NULL : id;
}

const struct vb_catalog *vb_sr_files_catalog(const struct vb_sr_snap *s)
{
    return s->cat;
}

static struct vb_codec *codec_get(struct vb_sr *r)
{
    struct vb_codec *c = NULL;

    g_mutex_lock(&r->lock);
    if (r->codecs->len)
        c = g_ptr_array_steal_index_fast(r->codecs, r->codecs->len - 1);
    g_mutex_unlock(&r->lock);
    if (!c) {
        c = g_new0(struct vb_codec, 1);
        if (vb_codec_init(c, 1)) {
            g_free(c);
            return NULL;
        }
    }
    return c;
}

static void codec_put(struct vb_sr *r, struct vb_codec *c)
{
    g_mutex_lock(&r->lock);
    g_ptr_array_add(r->codecs, c);
    g_mutex_unlock(&r->lock);
}

const struct vb_idspace *vb_sr_snap_space(const struct vb_sr_snap *s)
{
    return &s->space;
}

int vb_sr_read_chunk(struct vb_sr *r, const struct vb_idspace *sp, const uint8_t id[VB_ID_LEN],
                     void *buf, size_t len, vb_error *e)
{
    struct vb_codec *c = codec_get(r);
    size_t got = 0;
    int ret;

    if (!c)
        return vb_seterr(e, -ENOMEM, "out of memory for a decompression context");
    if (r->r2) {
        /* the keyed ids of the snapshot's dedup group */
        uint8_t key[VB_KEY_LEN];
        GByteArray *b = g_byte_array_new();
        ret = vb2_group_key(r->r2, sp->tagged ? sp->group : NULL, key, e);
        if (!ret)
            ret = vb2_blob_get(r->r2, c, key, id, b, e);
        if (ret == -ENOENT) {
            /* as version 1 says it (docs/host-restore.md), then why */
            char hex[VB_ID_HEX];
            vb_hex(id, VB_ID_LEN, hex);
            vb_prefixerr(e, "chunk %s: missing from the repository", hex);
        }
        if (!ret && b->len <= len)
            memcpy(buf, b->data, b->len);
        got = b->len;
        g_byte_array_free(b, TRUE);
    } else {
        ret = vb_repo_get_chunk(r->repo, c, sp, id, buf, len, &got, e);
    }
    codec_put(r, c);
    if (!ret && got != len) {
        char hex[VB_ID_HEX];
        vb_hex(id, VB_ID_LEN, hex);
        ret = vb_seterr(e, -EBADMSG, "chunk %s holds %zu bytes, the snapshot's index says %zu",
                        hex, got, len);
    }
    return ret;
}

bool vb_sr_batches(const struct vb_sr *r)
{
    return r->r2 && strcmp(vb_store_kind(vb2_repo_store(r->r2)), "local") != 0;
}

struct many_src {
    const uint8_t *ids;
    const uint32_t *lens;
    vb_sr_got_fn fn;
    void *opaque;
};

/* vb2_get_many's delivery: the length checked, the message as one chunk's */
static void many_got(void *opaque, size_t i, const uint8_t *data, size_t len, int err,
                     const vb_error *e)
{
    struct many_src *m = opaque;
    const uint8_t *id = m->ids + i * VB_ID_LEN;
    char hex[VB_ID_HEX];
    vb_error one = { 0 };

    if (err) {
        one = *e;
        if (err == -ENOENT) {
            vb_hex(id, VB_ID_LEN, hex);
            vb_prefixerr(&one, "chunk %s: missing from the repository", hex);
        }
        m->fn(m->opaque, i, NULL, 0, err, &one);
        return;
    }
    if (len != m->lens[i]) {
        vb_hex(id, VB_ID_LEN, hex);
        err = vb_seterr(&one, -EBADMSG, "chunk %s holds %zu bytes, the snapshot's index says "
                        "%u", hex, len, m->lens[i]);
        m->fn(m->opaque, i, NULL, 0, err, &one);
        return;
    }
    m->fn(m->opaque, i, data, len, 0, NULL);
}

int vb_sr_read_chunks(struct vb_sr *r, const struct vb_idspace *sp, const uint8_t *ids,
                      const uint32_t *lens, size_t n, vb_sr_got_fn fn, void *opaque,
                      vb_error *e)
{
    int first = 0;

    if (r->r2) {
        struct many_src m = { .ids = ids, .lens = lens, .fn = fn, .opaque = opaque };
        uint8_t key[VB_KEY_LEN];
        int ret = vb2_group_key(r->r2, sp->tagged ? sp->group : NULL, key, e);
        if (!ret)
            ret = vb2_get_many(r->r2, key, ids, n, many_got, &m, e);
        return ret;
    }
    for (size_t i = 0; i < n; i++) {
        uint8_t *buf = malloc(VB_MAX(lens[i], 1u));
        vb_error one = { 0 };
        int ret = buf ? vb_sr_read_chunk(r, sp, ids + i * VB_ID_LEN, buf, lens[i], &one)
                      : vb_seterr(&one, -ENOMEM, "out of memory");
        if (ret && !first) {
            first = ret;
            *e = one;
        }
        fn(opaque, i, ret ? NULL : buf, ret ? 0 : lens[i], ret, ret ? &one : NULL);
        free(buf);
    }
    return first;
}
