/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The disk sink over a version 2 write session (disksink2.h): chunks are
 * data blobs, earlier backups are the manifests of the VM's disk snapshots,
 * and the commit writes the chunk list as a stream and a disk manifest
 * (docs/repository-v2.md, "Manifests").
 */
#include "disksink2.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct s2 {
    struct vb2_repo *r;
    struct vb2_write *w;     /* the sink's own reference */
    char *dedup_group;       /* NULL: none */
    int zstd_level;
    json_object *notes;      /* added to the manifest's notes (vb2_disk_sink_note), or NULL */
};

static const char *space_name(const char *group)
{
    return group && group[0] ? group : "(none)";
}

static bool same_group(const char *a, const char *b)
{
    return !strcmp(a ? a : "", b ? b : "");
}

static int s2_put(void *h, struct vb_codec *c, const void *data, size_t len, uint8_t id[32],
                  uint32_t *stored, vb_error *e)
{
    struct s2 *s = h;

    return vb2_write_put(s->w, c, VB_BLOB_DATA, data, len, id, stored, e);
}

static bool s2_has(void *h, const uint8_t id[32])
{
    struct s2 *s = h;

    return vb2_write_has(s->w, id);
}

static struct vb_disk_prior *prior_of(struct s2 *s, const struct vb_manifest *m)
{
    struct vb_disk_prior *p = g_new0(struct vb_disk_prior, 1);

    p->id = g_strdup(m->id);
    p->vm = g_strdup(m->vm);
    p->group = g_strdup(m->group ? m->group : "");
    p->full = !m->mode || !m->mode[0] || !strcmp(m->mode, "full");
    p->same_space = same_group(m->dedup_group, s->dedup_group);
    p->dedup_group = m->dedup_group ? g_strdup(m->dedup_group) : NULL;
    p->space_name = g_strdup(space_name(m->dedup_group));
    return p;
}

static int s2_list(void *h, const char *vm, GPtrArray **out, vb_error *e)
{
    struct s2 *s = h;
    GPtrArray *list, *problems = NULL;
    int ret;

    *out = g_ptr_array_new_with_free_func((GDestroyNotify)vb_disk_prior_free);
    /* a manifest that cannot be read is no candidate parent: the backup is
     * then relative to an older one, or full (verify names the damage) */
    if ((ret = vb2_snap_list(s->r, vm, &list, &problems, e)))
        return ret;
    for (guint i = 0; i < list->len; i++) {
        struct vb_manifest *m = list->pdata[i];
        if (m->type == VB_MF_DISK)
            g_ptr_array_add(*out, prior_of(s, m));
    }
    g_ptr_array_free(list, TRUE);
    if (problems)
        g_ptr_array_free(problems, TRUE);
    return 0;
}

/* A disk snapshot with its chunk ids. */
static int s2_load(void *h, const char *id, struct vb_disk_prior **out, vb_error *e)
{
    struct s2 *s = h;
    struct vb2_repo *r = s->r;
    struct vb_manifest *m;
    struct vb_disk_prior *p;
    GByteArray *ids;
    int ret;

    *out = NULL;
    if ((ret = vb2_snap_load(r, id, &m, e)))
        return ret;
    if (m->type != VB_MF_DISK) {
        vb_manifest_free(m);
        return vb_seterr(e, -EMEDIUMTYPE, "snapshot %s is a files snapshot, not a disk", id);
    }
    ids = g_byte_array_new();
    ret = vb2_stream_get_all(r, m, &m->chunks, ids, e);
    if (!ret && ids->len != m->disk.chunk_count * VB_HASH_LEN)
        ret = vb_seterr(e, -EBADMSG, "snapshot %s: its chunk list holds %u bytes, not %llu "
                        "chunk ids", m->id, ids->len, (unsigned long long)m->disk.chunk_count);
    if (ret) {
        g_byte_array_free(ids, TRUE);
        vb_manifest_free(m);
        return ret;
    }
    p = prior_of(s, m);
    p->size = m->disk.size;
    p->chunk_size = m->disk.chunk_size;
    p->n_chunks = m->disk.chunk_count;
    /* known: no; a chunk of it is looked up in the index (vb2_write_has) */
    p->ids = g_byte_array_free(ids, FALSE);
    vb_manifest_free(m);
    *out = p;
    return 0;
}

/* A chunk of p, its id keyed with p's dedup group's key. */
static int s2_get(void *h, struct vb_codec *c, const struct vb_disk_prior *p,
                  const uint8_t id[32], void *buf, size_t cap, size_t *plain, vb_error *e)
{
    struct vb2_repo *r = ((struct s2 *)h)->r;
    uint8_t key[VB_KEY_LEN];
    GByteArray *out;
    int ret;

    if ((ret = vb2_group_key(r, p->dedup_group, key, e)))
        return ret;
    out = g_byte_array_new();
    ret = vb2_blob_get(r, c, key, id, out, e);
    if (!ret && out->len > cap)
        ret = vb_seterr(e, -EBADMSG, "a chunk of %u bytes, more than %zu", out->len, cap);
    if (!ret) {
        memcpy(buf, out->data, out->len);
        *plain = out->len;
    }
    g_byte_array_free(out, TRUE);
    return ret;
}

static int s2_commit(void *h, const struct vb_disk_commit *d, char **id, vb_error *e)
{
    struct s2 *s = h;
    struct vb_manifest *m = vb_manifest_new();
    struct vb_codec c;
    int ret;

    if (vb_codec_init(&c, s->zstd_level) < 0) {
        vb_manifest_free(m);
        return vb_seterr(e, -ENOMEM, "out of memory");
    }
    m->type = VB_MF_DISK;
    m->group = strdup(d->group);
    m->mode = strdup(d->mode);
    m->parent = d->parent ? strdup(d->parent) : NULL;
    m->disk.name = strdup(d->group + 5);
    m->disk.size = d->size;
    m->disk.chunk_size = d->chunk_size;
    m->disk.chunk_count = d->n_chunks;
    m->source = json_object_get(d->source);
    m->notes = json_object_new_object();
    json_object_object_add(m->notes, "tracking", json_object_get(d->tracking));
    if (s->notes) {
        json_object_object_foreach(s->notes, k, v)
            json_object_object_add(m->notes, k, json_object_get(v));
    }
    m->stats = json_object_get(d->stats);
    json_object_object_add(m->stats, "data_chunks", json_object_new_int64((int64_t)d->data_chunks));
    ret = vb2_write_stream(s->w, &c, d->ids, d->n_chunks * VB_HASH_LEN, &m->chunks, e);
    if (!ret)
        ret = vb2_write_commit(s->w, m, id, e);
    else
        vb2_write_abort(s->w);
    vb_codec_free(&c);
    vb_manifest_free(m);
    return ret;
}

static void s2_abort(void *h)
{
    struct s2 *s = h;

    vb2_write_abort(s->w);
}

static const struct vb_disk_sink_ops sink_v2 = {
    .put = s2_put,
    .has = s2_has,
    .list = s2_list,
    .load = s2_load,
    .get = s2_get,
    .commit = s2_commit,
    .abort = s2_abort,
};

void vb2_disk_sink_over(struct vb2_repo *r, struct vb2_write *w, const char *location,
                        const char *dedup_group, struct vb_disk_sink *out)
{
    struct vb2_repo_info info;
    struct s2 *s = g_new0(struct s2, 1);

    memset(out, 0, sizeof(*out));
    vb2_repo_info(r, &info);
    s->r = r;
    s->w = vb2_write_ref(w);
    s->dedup_group = dedup_group && dedup_group[0] ? g_strdup(dedup_group) : NULL;
    s->zstd_level = info.zstd_level;
    out->ops = &sink_v2;
    out->h = s;
    out->location = location ? strdup(location) : NULL;
    out->space_name = strdup(space_name(s->dedup_group));
    out->chunk_size = info.disk_chunk;
    out->zstd_level = info.zstd_level;
}

int vb2_disk_sink(struct vb2_repo *r, const char *location, const char *vm,
                  const char *dedup_group, struct vb_disk_sink *out, vb_error *e)
{
    struct vb2_write_opts wo = { .vm = vm, .dedup_group = dedup_group };
    struct vb2_write *w;
    int ret;

    memset(out, 0, sizeof(*out));
    if ((ret = vb2_write_begin(r, &wo, &w, e)))
        return ret;
    vb2_disk_sink_over(r, w, location, dedup_group, out);
    vb2_write_unref(w);                 /* the sink's reference is the only one */
    return 0;
}

void vb2_disk_sink_note(struct vb_disk_sink *sk, const char *name, const char *value)
{
    struct s2 *s = sk->h;

    if (!s->notes)
        s->notes = json_object_new_object();
    json_object_object_add(s->notes, name, json_object_new_string(value));
}

void vb2_disk_sink_stats(struct vb_disk_sink *sk, struct vb2_write_stats *st)
{
    struct s2 *s = sk->h;

    vb2_write_stats(s->w, st);
}

void vb2_disk_sink_end(struct vb_disk_sink *sk)
{
    struct s2 *s = sk->h;

    if (s) {
        vb2_write_abort(s->w);          /* a no-op after the commit */
        vb2_write_unref(s->w);
        json_object_put(s->notes);
        g_free(s->dedup_group);
        g_free(s);
    }
    vb_disk_sink_clear(sk);
    sk->h = NULL;
}
