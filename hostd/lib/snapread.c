/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Reading snapshots (snapread.h), on the version 1 repository: index.json
 * and disk.fidx through snapshot.c, files.cat through filesnap.c, chunks
 * through repo.c.  Chunk reads share a pool of codecs (zstd contexts and
 * read buffers), one per read in flight.
 */
#include "snapread.h"

#include <stdlib.h>
#include <string.h>

#include "filesnap.h"
#include "repo.h"
#include "snapshot.h"

struct vb_sr {
    struct vb_repo *repo;
    struct vb_claim *claim;
    GMutex lock;             /* guards codecs */
    GPtrArray *codecs;       /* idle struct vb_codec * */
};

struct vb_sr_snap {
    struct vb_sr_info info;
    struct vb_snapshot *snap;
    struct vb_catalog *cat;
};

int vb_sr_open(const char *path, bool wait, struct vb_sr **out, vb_error *e)
{
    struct vb_sr *r = g_new0(struct vb_sr, 1);
    int ret = vb_repo_open(path, VB_LOCK_NONE, !wait, &r->repo, e);

    if (ret) {
        g_free(r);
        return ret;
    }
    ret = vb_repo_claim(r->repo, wait, &r->claim, e);
    if (ret) {
        vb_repo_close(r->repo);
        g_free(r);
        return ret;
    }
    g_mutex_init(&r->lock);
    r->codecs = g_ptr_array_new();
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
    vb_repo_close(r->repo);
    g_free(r);
}

void vb_sr_info_free(struct vb_sr_info *i)
{
    if (!i)
        return;
    g_free(i->id);
    g_free(i->vm);
    g_free(i->disk);
    g_free(i);
}

static void info_fill(struct vb_sr_info *i, const struct vb_snapshot *s)
{
    json_object *disk = NULL;

    i->id = g_strdup(s->id);
    i->vm = g_strdup(s->vm);
    i->time = i->id + strlen(i->vm) + 1;
    i->kind = s->type == VB_SNAP_DISK ? VB_SR_DISK : VB_SR_FILES;
    i->created_ns = s->created_ns;
    if (i->kind == VB_SR_DISK && json_object_object_get_ex(s->json, "disk", &disk)) {
        const char *name = vb_json_str(disk, "name");
        /* a disk's serial (host configuration): printable, no '/' */
        i->disk = g_strdup(name && *name && !strchr(name, '/') ? name : "disk");
        i->size = (uint64_t)VB_MAX(vb_json_int(disk, "size", 0), (int64_t)0);
    } else if (i->kind == VB_SR_FILES) {
        i->size = (uint64_t)VB_MAX(vb_json_int(s->json, "bytes", 0), (int64_t)0);
    }
}

int vb_sr_list(struct vb_sr *r, const char *vm, GPtrArray **out, vb_error *e)
{
    GPtrArray *list, *res;
    int ret = vb_snap_list(r->repo, vm, &list, e);

    if (ret)
        return ret;
    res = g_ptr_array_new_with_free_func((GDestroyNotify)vb_sr_info_free);
    for (guint k = 0; k < list->len; k++) {
        struct vb_sr_info *i = g_new0(struct vb_sr_info, 1);
        info_fill(i, list->pdata[k]);
        g_ptr_array_add(res, i);
    }
    g_ptr_array_free(list, TRUE);
    *out = res;
    return 0;
}

int vb_sr_snap_open(struct vb_sr *r, const char *id, struct vb_sr_snap **out, vb_error *e)
{
    struct vb_sr_snap *s = g_new0(struct vb_sr_snap, 1);
    int ret = vb_snap_load(r->repo, id, &s->snap, e);

    if (ret)
        goto fail;
    if (s->snap->type == VB_SNAP_DISK)
        ret = vb_snap_load_fidx(r->repo, s->snap, e);
    else
        ret = vb_files_catalog(r->repo, s->snap, &s->cat, e);
    if (ret)
        goto fail;
    info_fill(&s->info, s->snap);
    if (s->info.kind == VB_SR_DISK)
        s->info.size = s->snap->size;      /* the checked index, not index.json */
    *out = s;
    return 0;
fail:
    vb_sr_snap_close(s);
    return ret;
}

void vb_sr_snap_close(struct vb_sr_snap *s)
{
    if (!s)
        return;
    g_free(s->info.id);
    g_free(s->info.vm);
    g_free(s->info.disk);
    vb_cat_free(s->cat);
    vb_snap_free(s->snap);
    g_free(s);
}

const struct vb_sr_info *vb_sr_snap_info(const struct vb_sr_snap *s)
{
    return &s->info;
}

uint64_t vb_sr_disk_size(const struct vb_sr_snap *s)
{
    return s->cat ? 0 : s->snap->size;
}

uint32_t vb_sr_disk_chunk_size(const struct vb_sr_snap *s)
{
    return s->cat ? 0 : s->snap->chunk_size;
}

uint64_t vb_sr_disk_chunks(const struct vb_sr_snap *s)
{
    return s->cat ? 0 : s->snap->n_chunks;
}

const uint8_t *vb_sr_disk_chunk(const struct vb_sr_snap *s, uint64_t i)
{
    const uint8_t *id;

    if (s->cat || i >= s->snap->n_chunks)
        return NULL;
    id = s->snap->ids + i * VB_ID_LEN;
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
    return &s->snap->space;
}

int vb_sr_read_chunk(struct vb_sr *r, const struct vb_idspace *sp, const uint8_t id[VB_ID_LEN],
                     void *buf, size_t len, vb_error *e)
{
    struct vb_codec *c = codec_get(r);
    size_t got = 0;
    int ret;

    if (!c)
        return vb_seterr(e, -ENOMEM, "out of memory for a decompression context");
    ret = vb_repo_get_chunk(r->repo, c, sp, id, buf, len, &got, e);
    codec_put(r, c);
    if (!ret && got != len) {
        char hex[VB_ID_HEX];
        vb_hex(id, VB_ID_LEN, hex);
        ret = vb_seterr(e, -EBADMSG, "chunk %s holds %zu bytes, the snapshot's index says %zu",
                        hex, got, len);
    }
    return ret;
}
