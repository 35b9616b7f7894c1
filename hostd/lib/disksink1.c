/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The disk sink over a version 1 write session (disksink.h): chunks through
 * vb_write_put, earlier backups from snapshots/, and a commit that writes
 * disk.fidx and index.json (docs/repository.md).
 */
#include "disksink.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "diskbackup.h"
#include "repo.h"
#include "session.h"
#include "snapshot.h"

static const char *space_of(const struct vb_idspace *sp)
{
    return sp->tagged ? sp->group : "(none)";
}

static int s1_put(void *h, struct vb_codec *c, const void *data, size_t len, uint8_t id[32],
                  uint32_t *stored, vb_error *e)
{
    return vb_write_put(h, c, data, len, id, stored, e);
}

static bool s1_has(void *h, const uint8_t id[32])
{
    return vb_write_has(h, id);
}

static struct vb_disk_prior *prior_of(struct vb_write *ws, const struct vb_snapshot *s)
{
    struct vb_disk_prior *p = g_new0(struct vb_disk_prior, 1);
    const char *m = vb_json_str(s->json, "mode");

    p->id = g_strdup(s->id);
    p->vm = g_strdup(s->vm);
    p->group = g_strdup(s->group);
    p->full = !m || !strcmp(m, "full");
    p->same_space = vb_write_same_space(ws, s);
    p->dedup_group = s->space.tagged ? g_strdup(s->space.group) : NULL;
    p->space_name = g_strdup(space_of(&s->space));
    return p;
}

static int s1_list(void *h, const char *vm, GPtrArray **out, vb_error *e)
{
    struct vb_write *ws = h;
    GPtrArray *list;
    int ret;

    *out = g_ptr_array_new_with_free_func((GDestroyNotify)vb_disk_prior_free);
    if ((ret = vb_snap_list(vb_write_repo(ws), vm, &list, e)))
        return ret == -ENOENT ? 0 : ret;
    for (guint i = 0; i < list->len; i++) {
        struct vb_snapshot *s = list->pdata[i];
        if (s->type == VB_SNAP_DISK)
            g_ptr_array_add(*out, prior_of(ws, s));
    }
    g_ptr_array_free(list, TRUE);
    return 0;
}

static int s1_load(void *h, const char *id, struct vb_disk_prior **out, vb_error *e)
{
    struct vb_write *ws = h;
    struct vb_repo *r = vb_write_repo(ws);
    struct vb_snapshot *s;
    struct vb_disk_prior *p;
    int ret;

    *out = NULL;
    if ((ret = vb_snap_load(r, id, &s, e)))
        return ret;
    if (s->type != VB_SNAP_DISK) {
        vb_snap_free(s);
        return vb_seterr(e, -EMEDIUMTYPE, "snapshot %s is a files snapshot, not a disk", id);
    }
    if ((ret = vb_snap_load_fidx(r, s, e))) {
        vb_snap_free(s);
        return ret;
    }
    p = prior_of(ws, s);
    p->size = s->size;
    p->chunk_size = s->chunk_size;
    p->n_chunks = s->n_chunks;
    p->ids = g_steal_pointer(&s->ids);
    /* committed in this gc generation: its chunks exist (session.h) */
    p->known = vb_write_inherits(ws, s);
    vb_snap_free(s);
    *out = p;
    return 0;
}

/* A chunk of p, named in p's id space. */
static int s1_get(void *h, struct vb_codec *c, const struct vb_disk_prior *p,
                  const uint8_t id[32], void *buf, size_t cap, size_t *plain, vb_error *e)
{
    struct vb_idspace sp;
    int ret;

    if ((ret = vb_idspace_init(&sp, p->dedup_group, e)))
        return ret;
    return vb_repo_get_chunk(vb_write_repo(h), c, &sp, id, buf, cap, plain, e);
}

static void s1_inherit(void *h, const struct vb_disk_prior *p)
{
    if (!p->known || !p->ids)
        return;
    for (uint64_t i = 0; i < p->n_chunks; i++)
        if (!vb_id_is_zero(p->ids + i * VB_ID_LEN))
            vb_write_inherit(h, p->ids + i * VB_ID_LEN);
}

static int s1_commit(void *h, const struct vb_disk_commit *d, char **id, vb_error *e)
{
    struct vb_write *ws = h;
    size_t flen;
    uint8_t sum[32];
    char hex[VB_ID_HEX];
    uint8_t *fidx = vb_fidx_build(d->size, d->chunk_size, d->n_chunks, d->ids, &flen);
    json_object *idx, *disk;
    int ret;

    ret = fidx ? vb_write_file(ws, "disk.fidx", fidx, flen, sum, e)
               : vb_seterr(e, -ENOMEM, "out of memory");
    free(fidx);
    if (ret)
        return ret;
    vb_hex(sum, 32, hex);
    idx = json_object_new_object();
    json_object_object_add(idx, "type", json_object_new_string("disk"));
    json_object_object_add(idx, "group", json_object_new_string(d->group));
    json_object_object_add(idx, "mode", json_object_new_string(d->mode));
    json_object_object_add(idx, "parent", d->parent ? json_object_new_string(d->parent) : NULL);
    json_object_object_add(idx, "source", json_object_get(d->source));
    disk = json_object_new_object();
    json_object_object_add(disk, "name", json_object_new_string(d->group + 5));
    json_object_object_add(disk, "size", json_object_new_int64((int64_t)d->size));
    json_object_object_add(disk, "chunk_size", json_object_new_int((int32_t)d->chunk_size));
    json_object_object_add(disk, "chunks", json_object_new_int64((int64_t)d->n_chunks));
    json_object_object_add(disk, "data_chunks", json_object_new_int64((int64_t)d->data_chunks));
    json_object_object_add(disk, "index", json_object_new_string("disk.fidx"));
    json_object_object_add(disk, "index_sha256", json_object_new_string(hex));
    json_object_object_add(idx, "disk", disk);
    json_object_object_add(idx, "tracking", json_object_get(d->tracking));
    json_object_object_add(idx, "stats", json_object_get(d->stats));
    ret = vb_write_commit(ws, idx, 0, id, e);
    json_object_put(idx);
    return ret;
}

static void s1_abort(void *h)
{
    vb_write_abort(h);
}

static const struct vb_disk_sink_ops sink_v1 = {
    .put = s1_put,
    .has = s1_has,
    .list = s1_list,
    .load = s1_load,
    .get = s1_get,
    .inherit = s1_inherit,
    .commit = s1_commit,
    .abort = s1_abort,
};

void vb_disk_sink_v1(struct vb_write *ws, struct vb_disk_sink *out)
{
    struct vb_repo *r = vb_write_repo(ws);

    memset(out, 0, sizeof(*out));
    out->ops = &sink_v1;
    out->h = ws;
    out->location = realpath(r->path, NULL);
    out->space_name = strdup(space_of(vb_write_space(ws)));
    out->chunk_size = VB_DISK_CHUNK;
    out->zstd_level = r->level;
}

int vb_disk_backup_v1(struct vb_write *ws, const struct vb_disk_backup_opts *o,
                      struct vb_disk_stats *st, char **snap_id, vb_error *e)
{
    struct vb_disk_sink sk;
    int ret;

    vb_disk_sink_v1(ws, &sk);
    ret = vb_disk_backup(&sk, o, st, snap_id, e);
    vb_disk_sink_clear(&sk);
    return ret;
}

void vb_disk_sink_clear(struct vb_disk_sink *s)
{
    free(s->location);
    free(s->space_name);
    s->location = s->space_name = NULL;
}

void vb_disk_prior_free(struct vb_disk_prior *p)
{
    if (!p)
        return;
    g_free(p->id);
    g_free(p->vm);
    g_free(p->group);
    g_free(p->space_name);
    g_free(p->dedup_group);
    g_free(p->ids);
    g_free(p);
}
