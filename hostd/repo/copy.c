/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Snapshots of any repository, read through the snapshot door (snapread.h),
 * written into a version 2 one through its door (repo2.h) with their ids,
 * groups, dedup groups, parents and times: a disk snapshot as its chunks and
 * chunk list, a files snapshot as its data chunks, its catalog naming them
 * by the target's ids, and the list of those ids (docs/repository-v2.md,
 * "Manifests").  Used by `vbackupctl copy` and by vbackupd's copy_to
 * (copy.h).
 */
#include "copy.h"

#include <errno.h>
#include <glib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "escape.h"

/* Text a manifest takes: as it is when plain, else escaped (escaped text
 * is plain: a version 2 source's text comes through unchanged). */
static char *copy_esc(const char *s)
{
    return vb_text_plain(s, strlen(s)) ? g_strdup(s) : vb_escape(s, strlen(s));
}

static int copy_cancelled(const int *cancel, vb_error *e)
{
    if (cancel && g_atomic_int_get(cancel))
        return vb_seterr(e, -ECANCELED, "cancelled");
    return 0;
}

/* ---- one copy: the chunks it met ---- */

/* A chunk the copy met: its id in both repositories, its length. */
struct mapped {
    uint8_t from[VB_ID_LEN];
    uint8_t to[VB_HASH_LEN];
    uint32_t len;
};

struct copy_run {
    struct vb_sr *sr;
    const struct vb_idspace *space;     /* the source snapshot's */
    struct vb2_write *w;
    struct vb_codec *c;
    uint8_t *buf;                       /* VB_CHUNK_MAX */
    GHashTable *map;                    /* source id -> struct mapped (owned) */
    GByteArray *ids;                    /* each target id once, in the order met */
    struct vb_progress *p;
    uint64_t *done;
    const int *cancel;
};

static int run_init(struct copy_run *cr, struct vb_sr *sr, const struct vb_sr_snap *s,
                    struct vb_codec *c, const int *cancel, struct vb_progress *p,
                    uint64_t *done, vb_error *e)
{
    *cr = (struct copy_run){ .sr = sr, .space = vb_sr_snap_space(s), .c = c, .p = p,
                             .done = done, .cancel = cancel };
    cr->map = g_hash_table_new_full(vb_id_hash, vb_id_equal, NULL, g_free);
    cr->ids = g_byte_array_new();
    if (!(cr->buf = malloc(VB_CHUNK_MAX)))
        return vb_seterr(e, -ENOMEM, "out of memory for a chunk");
    return 0;
}

static void run_free(struct copy_run *cr)
{
    if (cr->w) {
        vb2_write_abort(cr->w);
        vb2_write_unref(cr->w);
    }
    if (cr->map)
        g_hash_table_destroy(cr->map);
    if (cr->ids)
        g_byte_array_free(cr->ids, TRUE);
    free(cr->buf);
}

/*
 * The target's id of the source's chunk id, len bytes long: read from the
 * source and put into the session the first time this copy meets it (the
 * keys differ, so the source's id says nothing of the target's), from the
 * map after that.  *done grows by len each time, as a restore's would.
 */
static int copy_chunk_id(struct copy_run *cr, const uint8_t id[VB_ID_LEN], uint32_t len,
                         uint8_t to[VB_HASH_LEN], vb_error *e)
{
    struct mapped *k = g_hash_table_lookup(cr->map, id);
    int ret;

    if ((ret = copy_cancelled(cr->cancel, e)))
        return ret;
    if (k && k->len != len)
        return vb_seterr(e, -EBADMSG, "a chunk of %u bytes named again with %u", k->len, len);
    if (!k) {
        if (!len || len > VB_CHUNK_MAX)
            return vb_seterr(e, -EBADMSG, "a chunk of %u bytes (at most %u)", len,
                             VB_CHUNK_MAX);
        if ((ret = vb_sr_read_chunk(cr->sr, cr->space, id, cr->buf, len, e)))
            return ret;
        k = g_new0(struct mapped, 1);
        memcpy(k->from, id, VB_ID_LEN);
        k->len = len;
        ret = vb2_write_put(cr->w, cr->c, VB_BLOB_DATA, cr->buf, len, k->to, NULL, e);
        if (ret < 0) {
            g_free(k);
            return ret;
        }
        g_hash_table_insert(cr->map, k->from, k);
        g_byte_array_append(cr->ids, k->to, VB_HASH_LEN);
    }
    memcpy(to, k->to, VB_HASH_LEN);
    *cr->done += len;
    if (cr->p)
        vb_progress_update(cr->p, *cr->done);
    return 0;
}

/* ---- the manifest ---- */

/* The source's stats that a manifest takes: names of [a-z0-9_]{1,64},
 * non-negative numbers (version 1's are not checked when written). */
static json_object *copy_stats(json_object *stats)
{
    json_object *out = json_object_new_object();

    json_object_object_foreach(stats, k, v) {
        bool ok = strlen(k) >= 1 && strlen(k) <= 64;
        for (const char *p = k; ok && *p; p++)
            ok = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_';
        if (!ok)
            continue;
        errno = 0;
        if (json_object_is_type(v, json_type_int) && json_object_get_int64(v) >= 0 && !errno)
            json_object_object_add(out, k, json_object_new_int64(json_object_get_int64(v)));
        else if (json_object_is_type(v, json_type_double) &&
                 isfinite(json_object_get_double(v)) && json_object_get_double(v) >= 0)
            json_object_object_add(out, k, json_object_new_double(json_object_get_double(v)));
    }
    return out;
}

/*
 * What every copied manifest takes from the source: id (the same in both),
 * time, group (escaped where not text), mode, parent, notes and stats, and
 * its source's members with where it was copied from (replacing what an
 * earlier copy said).
 */
static int copy_meta(struct vb_manifest *m, struct vb_sr *sr, const struct vb_sr_info *i,
                     vb_error *e)
{
    json_object *src = NULL;

    if (json_object_deep_copy(i->source, &src, NULL) ||
        json_object_deep_copy(i->notes, &m->notes, NULL)) {
        json_object_put(src);
        return vb_seterr(e, -ENOMEM, "out of memory for the manifest");
    }
    snprintf(m->id, sizeof(m->id), "%s", i->id);
    m->created_ns = i->created_ns;
    m->group = copy_esc(i->group);
    m->mode = g_strdup(i->mode ? i->mode : "full");
    m->parent = g_strdup(i->parent);
    json_object_object_add(src, "copied_from", json_object_new_string(i->id));
    json_object_object_add(src, "copied_from_format", json_object_new_int(vb_sr_format(sr)));
    m->source = src;
    m->stats = copy_stats(i->stats);
    return 0;
}

/* The commit point of a copy (unless cancelled meanwhile); *bytes_new gets what
 * it added to the target. */
static int commit_copy(struct copy_run *cr, struct vb_manifest *m, char **new_id,
                       uint64_t *bytes_new, vb_error *e)
{
    struct vb2_write_stats ws;
    int ret = copy_cancelled(cr->cancel, e);

    if (ret)
        return ret;
    vb2_write_stats(cr->w, &ws);
    ret = vb2_write_commit(cr->w, m, new_id, e);
    *bytes_new = ws.stored_new;
    return ret;
}

static int session_begin(struct vb2_repo *to, const struct vb_sr_info *i, struct copy_run *cr,
                         vb_error *e)
{
    struct vb2_write_opts wo = { .vm = i->vm, .dedup_group = i->dedup_group };

    return vb2_write_begin(to, &wo, &cr->w, e);
}

/* ---- disks ---- */

static int copy_disk(struct vb_sr *sr, struct vb_sr_snap *s, struct vb2_repo *to,
                     struct vb_codec *c, const int *cancel, struct vb_progress *p,
                     uint64_t *done, char **new_id, uint64_t *bytes_new, vb_error *e)
{
    const struct vb_sr_info *i = vb_sr_snap_info(s);
    uint64_t size = vb_sr_disk_size(s), n = vb_sr_disk_chunks(s);
    uint32_t cs = vb_sr_disk_chunk_size(s);
    struct vb_manifest *m = vb_manifest_new();
    struct copy_run cr;
    uint8_t *ids = NULL;
    int ret;

    if ((ret = run_init(&cr, sr, s, c, cancel, p, done, e)))
        goto out;
    if (!(ids = calloc(VB_MAX(n, (uint64_t)1), VB_HASH_LEN))) {
        ret = vb_seterr(e, -ENOMEM, "out of memory for a chunk list of %llu chunks",
                        (unsigned long long)n);
        goto out;
    }
    if ((ret = session_begin(to, i, &cr, e)))
        goto out;
    for (uint64_t k = 0; k < n; k++) {
        const uint8_t *id = vb_sr_disk_chunk(s, k);
        uint64_t off = k * cs;
        if (!id)
            continue;                           /* a hole stays one */
        ret = copy_chunk_id(&cr, id, (uint32_t)VB_MIN((uint64_t)cs, size - off),
                            ids + k * VB_HASH_LEN, e);
        if (ret) {
            vb_prefixerr(e, "chunk %llu", (unsigned long long)k);
            goto out;
        }
    }
    m->type = VB_MF_DISK;
    if ((ret = copy_meta(m, sr, i, e)))
        goto out;
    /* both formats name a disk by its group (disksink1.c, disksink2.c) */
    m->disk.name = g_strdup(!strncmp(i->group, "disk:", 5) ? i->group + 5 : i->group);
    m->disk.size = size;
    m->disk.chunk_size = cs;
    m->disk.chunk_count = n;
    if ((ret = vb2_write_stream(cr.w, c, ids, n * VB_HASH_LEN, &m->chunks, e)))
        goto out;
    ret = commit_copy(&cr, m, new_id, bytes_new, e);
out:
    run_free(&cr);
    vb_manifest_free(m);
    free(ids);
    return ret;
}

/* ---- files snapshots ---- */

struct files_copy {
    struct copy_run *cr;
    const struct vb_catalog *cat;       /* the source's catalog, to name entries */
};

/* vb_catb_from_catalog's map: the chunk's id becomes the target's. */
static int copy_chunk(void *opaque, uint64_t idx, struct vb_cat_chunk *ch, vb_error *e)
{
    struct files_copy *fc = opaque;
    int ret = copy_chunk_id(fc->cr, ch->id, ch->len, ch->id, e);

    if (ret) {
        size_t pl;
        const char *p = vb_cat_path(fc->cat, idx, &pl);
        g_autofree char *path = vb_text_plain(p, pl) ? g_strndup(p, pl) : vb_escape(p, pl);
        vb_prefixerr(e, "'%s': chunk at %llu", path, (unsigned long long)ch->offset);
    }
    return ret;
}

/*
 * A files snapshot.  Its catalog is rebuilt through the builder
 * (vb_catb_from_catalog) for every catalog, not only for version 1 ones:
 * version 1 catalogs (converted on load) need it, having no serializer of
 * their own, and one path for every version gives the version 3 catalog the
 * builder itself would write (sorted, attributes in order, hard links
 * pointing back), its entry count and byte sum from the same code as a
 * backup's.  Rewriting the ids in the bytes in place would keep the source
 * catalog byte for byte, but its SHA-256 changes with the ids either way.
 * The rewritten catalog is parsed before it is stored, and every chunk it
 * names is checked to be one this copy put: the chunks stream, which gc
 * marks, must hold them all.  The source snapshot (s) is closed here, as
 * soon as its catalog is rebuilt: two catalogs in memory at most.
 */
static int copy_files(struct vb_sr *sr, struct vb_sr_snap *s, struct vb2_repo *to,
                      struct vb_codec *c, const int *cancel, struct vb_progress *p,
                      uint64_t *done, char **new_id, uint64_t *bytes_new, vb_error *e)
{
    const struct vb_sr_info *i = vb_sr_snap_info(s);
    const struct vb_catalog *cat = vb_sr_files_catalog(s);
    struct files_copy fc = { .cat = cat };
    struct vb_manifest *m = vb_manifest_new();
    struct vb_catalog *out = NULL;
    struct vb_catb *b = NULL;
    struct copy_run cr;
    GHashTable *stored = NULL;
    uint64_t n_entries, n_chunks, bytes, n_in = cat->n;
    uint8_t *data;
    size_t len;
    int ret;

    fc.cr = &cr;
    if ((ret = run_init(&cr, sr, s, c, cancel, p, done, e)))
        goto out;
    m->type = VB_MF_FILES;
    if ((ret = copy_meta(m, sr, i, e)))
        goto out;
    m->files.roots = calloc(i->nroots + 1, sizeof(char *));
    for (size_t k = 0; m->files.roots && k < i->nroots; k++) {
        g_autofree char *t = copy_esc(i->roots[k]);
        if ((m->files.roots[m->files.nroots] = strdup(t)))
            m->files.nroots++;
    }
    if ((ret = session_begin(to, i, &cr, e)) ||
        (ret = vb_catb_from_catalog(cat, copy_chunk, &fc, &b, e)))
        goto out;
    /* nothing is read from the source from here on */
    cr.space = NULL;
    vb_sr_snap_close(s);
    s = NULL;
    data = vb_catb_serialize(b, &len, &n_entries, &n_chunks, &bytes);
    vb_catb_free(b);
    b = NULL;
    if ((ret = vb_cat_parse(data, len, "the rewritten catalog", &out, e)))
        goto out;
    stored = g_hash_table_new(vb_id_hash, vb_id_equal);
    for (guint k = 0; k < cr.ids->len; k += VB_HASH_LEN)
        g_hash_table_add(stored, cr.ids->data + k);
    for (uint64_t k = 0; k < out->n_chunks && !ret; k++) {
        const struct vb_cat_chunk *ch = &out->c[k];
        if ((ch->flags & VB_CATC_ZERO) ? !vb_id_is_zero(ch->id)
                                       : !g_hash_table_contains(stored, ch->id))
            ret = vb_seterr(e, -EBADMSG, "the rewritten catalog names a chunk this copy did "
                            "not store (chunk %llu)", (unsigned long long)k);
    }
    if (!ret && n_entries != n_in)
        ret = vb_seterr(e, -EBADMSG, "the rewritten catalog has %llu entries, not %llu",
                        (unsigned long long)n_entries, (unsigned long long)n_in);
    if (ret)
        goto out;
    m->files.entries = n_entries;
    m->files.bytes = bytes;
    if ((ret = vb2_write_stream(cr.w, c, out->data, out->len, &m->catalog, e)) ||
        (ret = vb2_write_stream(cr.w, c, cr.ids->data, cr.ids->len, &m->chunks, e)))
        goto out;
    ret = commit_copy(&cr, m, new_id, bytes_new, e);
out:
    if (stored)
        g_hash_table_destroy(stored);
    run_free(&cr);
    vb_sr_snap_close(s);
    vb_manifest_free(m);
    vb_catb_free(b);
    vb_cat_free(out);
    return ret;
}

/* ---- the door ---- */

uint64_t vb_copy_size(const struct vb_sr_info *i)
{
    return i->size;
}

int vb_copy_check(struct vb_sr *from, struct vb2_repo *to, vb_error *e)
{
    const char *id = vb_sr_repo_id(from);
    struct vb2_repo_info ti;

    vb2_repo_info(to, &ti);
    if (id && !strcmp(id, ti.id))
        return vb_seterr(e, -EINVAL, "the source and the target are one repository (id %s): "
                         "a copy needs another one", id);
    return 0;
}

int vb_copy_snap(struct vb_sr *from, const char *id, struct vb2_repo *to, const int *cancel,
                 struct vb_progress *p, uint64_t *done, char **new_id, uint64_t *bytes_new,
                 vb_error *e)
{
    struct vb_manifest *there = NULL;
    struct vb_sr_info *info = NULL;
    struct vb_sr_snap *s = NULL;
    struct vb_codec codec;
    uint64_t added = 0;
    int ret;

    *new_id = NULL;
    *bytes_new = 0;
    if ((ret = vb_copy_check(from, to, e)))
        return ret;
    /* the id as the source has it (a version 2 source takes an object's
     * name too), looked up in the target before any index is read */
    if ((ret = vb_sr_stat(from, id, &info, e)))
        return ret;
    ret = vb2_snap_load(to, info->id, &there, NULL);
    vb_sr_info_free(info);
    if (ret == 0) {
        vb_manifest_free(there);
        return -EEXIST;
    }
    if ((ret = vb_sr_snap_open(from, id, &s, e)))
        return ret;
    if (vb_codec_init(&codec, 1)) {
        vb_sr_snap_close(s);
        return vb_seterr(e, -ENOMEM, "cannot set up compression");
    }
    if (vb_sr_snap_info(s)->kind == VB_SR_DISK) {
        ret = copy_disk(from, s, to, &codec, cancel, p, done, new_id, &added, e);
        vb_sr_snap_close(s);
    } else {
        ret = copy_files(from, s, to, &codec, cancel, p, done, new_id, &added, e);
    }
    vb_codec_free(&codec);
    if (!ret)
        *bytes_new = added;
    return ret;
}
