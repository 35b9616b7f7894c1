/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Snapshots of a version 1 repository, read with the version 1 library
 * (repo.h, snapshot.h, filesnap.h), written into a version 2 one through its
 * door (repo2.h) with their ids, groups, dedup groups and parents: a disk
 * snapshot as its chunks and chunk list, a files snapshot as its data
 * chunks, its catalog naming them by their version 2 ids, and the list of
 * those ids (docs/repository-v2.md, "Manifests").  Used by `vbackupctl
 * copy` and by vbackupd's copy_to (copy.h).
 */
#include "copy.h"

#include <errno.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "escape.h"
#include "filesnap.h"

/* Text a manifest takes: as it is when plain, else escaped. */
static char *copy_esc(const char *s)
{
    return vb_text_plain(s, strlen(s)) ? g_strdup(s) : vb_escape(s, strlen(s));
}

static void copy_progress(struct vb_progress *p, uint64_t done)
{
    if (p)
        vb_progress_update(p, done);
}

static int copy_cancelled(const int *cancel, vb_error *e)
{
    if (cancel && g_atomic_int_get(cancel))
        return vb_seterr(e, -ECANCELED, "cancelled");
    return 0;
}


/* The numbers of a v1 snapshot's stats that a v2 manifest takes. */
static json_object *copy_stats(json_object *v1)
{
    json_object *out = json_object_new_object(), *stats;

    if (!json_object_object_get_ex(v1, "stats", &stats) ||
        !json_object_is_type(stats, json_type_object))
        return out;
    json_object_object_foreach(stats, k, v) {
        bool name_ok = strlen(k) >= 1 && strlen(k) <= 64;
        for (const char *p = k; name_ok && *p; p++)
            name_ok = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_';
        if (name_ok && json_object_is_type(v, json_type_int) && json_object_get_int64(v) >= 0)
            json_object_object_add(out, k, json_object_new_int64(json_object_get_int64(v)));
    }
    return out;
}

/* What a copied manifest says of where it came from, and the source's figures. */
static void copied_from(struct vb_manifest *m, const struct vb_snapshot *s)
{
    m->source = json_object_new_object();
    json_object_object_add(m->source, "copied_from", json_object_new_string(s->id));
    json_object_object_add(m->source, "copied_from_format", json_object_new_int(1));
    m->stats = copy_stats(s->json);
}

/* The commit point of a copy (unless cancelled meanwhile); *bytes_new gets what
 * it added to the target. */
static int commit_copy(struct vb2_write *w, struct vb_manifest *m, const int *cancel,
                       char **new_id, uint64_t *bytes_new, vb_error *e)
{
    struct vb2_write_stats ws;
    int ret = copy_cancelled(cancel, e);

    if (ret)
        return ret;
    vb2_write_stats(w, &ws);
    ret = vb2_write_commit(w, m, new_id, e);
    *bytes_new = ws.stored_new;
    return ret;
}

static int copy_disk(struct vb_repo *r1, struct vb_snapshot *s, struct vb2_repo *r2,
                     struct vb_codec *c, const int *cancel, struct vb_progress *prog_,
                     uint64_t *done, char **new_id, uint64_t *bytes_new, vb_error *e)
{
    struct vb2_write_opts wo = { .vm = s->vm,
                                 .dedup_group = s->space.tagged ? s->space.group : NULL };
    struct vb2_write *w = NULL;
    struct vb_manifest *m = vb_manifest_new();
    uint8_t *ids = NULL, *buf = NULL;
    const char *mode = vb_json_str(s->json, "mode");
    int ret;

    if ((ret = vb_snap_load_fidx(r1, s, e)))
        goto out;
    ids = calloc(VB_MAX(s->n_chunks, 1u), VB_HASH_LEN);
    buf = malloc(s->chunk_size);
    if (!ids || !buf) {
        ret = vb_seterr(e, -ENOMEM, "out of memory");
        goto out;
    }
    if ((ret = vb2_write_begin(r2, &wo, &w, e)))
        goto out;
    for (uint64_t i = 0; i < s->n_chunks; i++) {
        const uint8_t *id = s->ids + i * VB_ID_LEN;
        size_t plain = 0;
        if ((ret = copy_cancelled(cancel, e)))
            goto out;
        if (vb_id_is_zero(id))
            continue;                           /* a hole stays one */
        ret = vb_repo_get_chunk(r1, c, &s->space, id, buf, s->chunk_size, &plain, e);
        if (ret) {
            vb_prefixerr(e, "%s: chunk %llu", s->id, (unsigned long long)i);
            goto out;
        }
        ret = vb2_write_put(w, c, VB_BLOB_DATA, buf, plain, ids + i * VB_HASH_LEN, NULL, e);
        if (ret < 0)
            goto out;
        *done += plain;
        copy_progress(prog_, *done);
    }
    m->type = VB_MF_DISK;
    snprintf(m->id, sizeof(m->id), "%s", s->id);       /* the same id in both */
    m->created_ns = s->created_ns;
    m->group = g_strdup(s->group);
    m->mode = g_strdup(mode ? mode : "full");
    m->parent = s->parent ? g_strdup(s->parent) : NULL;
    m->disk.name = g_strdup(!strncmp(s->group, "disk:", 5) ? s->group + 5 : s->group);
    m->disk.size = s->size;
    m->disk.chunk_size = s->chunk_size;
    m->disk.chunk_count = s->n_chunks;
    copied_from(m, s);
    if ((ret = vb2_write_stream(w, c, ids, s->n_chunks * VB_HASH_LEN, &m->chunks, e)))
        goto out;
    ret = commit_copy(w, m, cancel, new_id, bytes_new, e);
out:
    if (w) {
        vb2_write_abort(w);
        vb2_write_unref(w);
    }
    vb_manifest_free(m);
    free(ids);
    free(buf);
    return ret;
}

/* ---- files snapshots ---- */

/* A data chunk copy_files met: its id in both repositories, its length. */
struct copied_chunk {
    uint8_t v1[VB_ID_LEN];
    uint8_t v2[VB_HASH_LEN];
    uint32_t len;
};

struct files_copy {
    struct vb_repo *r1;
    const struct vb_snapshot *s;
    const struct vb_catalog *cat;       /* the version 1 catalog, to name entries */
    struct vb2_write *w;
    struct vb_codec *c;
    uint8_t *buf;                       /* VB_CHUNK_MAX */
    GHashTable *by_v1;                  /* v1 id -> struct copied_chunk (owned) */
    GHashTable *v2;                     /* the v2 ids stored (keys in by_v1's values) */
    GByteArray *ids;                    /* each v2 id once, in catalog order */
    struct vb_progress *p;
    uint64_t *done;
    const int *cancel;
};

/* vb_catb_from_catalog's map: the chunk read from version 1 and put into the
 * session once, however often the catalog names it; its id becomes the
 * version 2 one. */
static int copy_chunk(void *opaque, uint64_t idx, struct vb_cat_chunk *ch, vb_error *e)
{
    struct files_copy *fc = opaque;
    struct copied_chunk *k = g_hash_table_lookup(fc->by_v1, ch->id);
    size_t plain = 0;
    int ret = 0;

    if ((ret = copy_cancelled(fc->cancel, e)))
        return ret;
    if (!k) {
        ret = vb_repo_get_chunk(fc->r1, fc->c, &fc->s->space, ch->id, fc->buf, VB_CHUNK_MAX,
                                &plain, e);
        if (!ret && plain != ch->len)
            ret = vb_seterr(e, -EBADMSG, "a chunk of %zu bytes where the catalog says %u",
                            plain, ch->len);
        if (!ret) {
            k = g_new0(struct copied_chunk, 1);
            memcpy(k->v1, ch->id, VB_ID_LEN);
            k->len = ch->len;
            ret = vb2_write_put(fc->w, fc->c, VB_BLOB_DATA, fc->buf, plain, k->v2, NULL, e);
            if (ret < 0) {
                g_free(k);
            } else {
                ret = 0;
                g_hash_table_insert(fc->by_v1, k->v1, k);
                g_hash_table_add(fc->v2, k->v2);
                g_byte_array_append(fc->ids, k->v2, VB_HASH_LEN);
            }
        }
    } else if (k->len != ch->len) {
        ret = vb_seterr(e, -EBADMSG, "a chunk of %u bytes named again with %u", k->len, ch->len);
    }
    if (ret) {
        size_t pl;
        const char *p = vb_cat_path(fc->cat, idx, &pl);
        g_autofree char *path = vb_text_plain(p, pl) ? g_strndup(p, pl) : vb_escape(p, pl);
        vb_prefixerr(e, "'%s': chunk at %llu", path, (unsigned long long)ch->offset);
        return ret;
    }
    memcpy(ch->id, k->v2, VB_HASH_LEN);
    *fc->done += ch->len;
    copy_progress(fc->p, *fc->done);
    return 0;
}

/* The roots of the version 1 index (text already: a root that is not UTF-8
 * was escaped when it was written), escaped once more where they hold what
 * a manifest refuses. */
static void copy_roots(json_object *v1, struct vb_manifest *m)
{
    json_object *roots;
    size_t n;

    if (!json_object_object_get_ex(v1, "roots", &roots) ||
        !json_object_is_type(roots, json_type_array))
        return;
    n = json_object_array_length(roots);
    m->files.roots = calloc(VB_MAX(n, (size_t)1), sizeof(char *));
    for (size_t i = 0; m->files.roots && i < n; i++) {
        json_object *r = json_object_array_get_idx(roots, i);
        g_autofree char *t = NULL;
        if (!json_object_is_type(r, json_type_string) || !*json_object_get_string(r))
            continue;
        t = copy_esc(json_object_get_string(r));
        if ((m->files.roots[m->files.nroots] = strdup(t)))
            m->files.nroots++;
    }
}

/*
 * A files snapshot.  Its catalog is rebuilt through the builder
 * (vb_catb_from_catalog) for every catalog, not only for version 1 ones:
 * version 1 catalogs (converted on load) need it, having no serializer of
 * their own, and one path for both versions gives a version 2 catalog the
 * builder itself would write (sorted, attributes in order, hard links
 * pointing back), its entry count and byte sum from the same code as a
 * backup's.  Rewriting the ids in the bytes in place would keep a version 2
 * catalog byte for byte, but its SHA-256 changes with the ids either way.
 * The rewritten catalog is parsed before it is stored, and every chunk it
 * names is checked to be one this copy put: the chunks stream, which gc
 * marks, must hold them all.
 */
static int copy_files(struct vb_repo *r1, struct vb_snapshot *s, struct vb2_repo *r2,
                      struct vb_codec *c, const int *cancel, struct vb_progress *prog_,
                      uint64_t *done, char **new_id, uint64_t *bytes_new, vb_error *e)
{
    struct vb2_write_opts wo = { .vm = s->vm,
                                 .dedup_group = s->space.tagged ? s->space.group : NULL };
    struct files_copy fc = { .r1 = r1, .s = s, .c = c, .p = prog_, .done = done,
                             .cancel = cancel };
    struct vb_catalog *cat = NULL, *out = NULL;
    struct vb_catb *b = NULL;
    struct vb2_write *w = NULL;
    struct vb_manifest *m = vb_manifest_new();
    const char *mode = vb_json_str(s->json, "mode");
    uint64_t n_entries, n_chunks, bytes, n_in;
    uint8_t *data;
    size_t len;
    int ret;

    fc.by_v1 = g_hash_table_new_full(vb_id_hash, vb_id_equal, NULL, g_free);
    fc.v2 = g_hash_table_new(vb_id_hash, vb_id_equal);
    fc.ids = g_byte_array_new();
    if ((ret = vb_files_catalog(r1, s, &cat, e)))
        goto out;
    fc.cat = cat;
    if (!(fc.buf = malloc(VB_CHUNK_MAX))) {
        ret = vb_seterr(e, -ENOMEM, "out of memory");
        goto out;
    }
    if ((ret = vb2_write_begin(r2, &wo, &w, e)))
        goto out;
    fc.w = w;
    if ((ret = vb_catb_from_catalog(cat, copy_chunk, &fc, &b, e)))
        goto out;
    n_in = cat->n;
    vb_cat_free(cat);                           /* one catalog in memory at a time, or two */
    cat = NULL;
    data = vb_catb_serialize(b, &len, &n_entries, &n_chunks, &bytes);
    vb_catb_free(b);
    b = NULL;
    if ((ret = vb_cat_parse(data, len, "the rewritten catalog", &out, e)))
        goto out;
    for (uint64_t k = 0; k < out->n_chunks && !ret; k++) {
        const struct vb_cat_chunk *ch = &out->c[k];
        if ((ch->flags & VB_CATC_ZERO) ? !vb_id_is_zero(ch->id)
                                       : !g_hash_table_contains(fc.v2, ch->id))
            ret = vb_seterr(e, -EBADMSG, "the rewritten catalog names a chunk this copy did "
                            "not store (chunk %llu)", (unsigned long long)k);
    }
    if (!ret && n_entries != n_in)
        ret = vb_seterr(e, -EBADMSG, "the rewritten catalog has %llu entries, not %llu",
                        (unsigned long long)n_entries, (unsigned long long)n_in);
    if (ret)
        goto out;
    m->type = VB_MF_FILES;
    snprintf(m->id, sizeof(m->id), "%s", s->id);       /* the same id in both */
    m->created_ns = s->created_ns;
    m->group = copy_esc(s->group);             /* "files:" and the roots, as text */
    m->mode = g_strdup(mode ? mode : "full");
    m->parent = s->parent ? g_strdup(s->parent) : NULL;
    copy_roots(s->json, m);
    m->files.entries = n_entries;
    m->files.bytes = bytes;
    copied_from(m, s);
    if ((ret = vb2_write_stream(w, c, out->data, out->len, &m->catalog, e)) ||
        (ret = vb2_write_stream(w, c, fc.ids->data, fc.ids->len, &m->chunks, e)))
        goto out;
    ret = commit_copy(w, m, cancel, new_id, bytes_new, e);
out:
    if (w) {
        vb2_write_abort(w);
        vb2_write_unref(w);
    }
    vb_manifest_free(m);
    vb_catb_free(b);
    vb_cat_free(cat);
    vb_cat_free(out);
    g_hash_table_destroy(fc.v2);
    g_hash_table_destroy(fc.by_v1);
    g_byte_array_free(fc.ids, TRUE);
    free(fc.buf);
    return ret;
}

uint64_t vb_copy_size(const struct vb_snapshot *s)
{
    int64_t n;

    if (s->type == VB_SNAP_DISK)
        return s->size;
    n = vb_json_int(s->json, "bytes", 0);
    return n > 0 ? (uint64_t)n : 0;
}

int vb_copy_snap(struct vb_repo *from, struct vb_snapshot *s, struct vb2_repo *to,
                 const int *cancel, struct vb_progress *p, uint64_t *done, char **new_id,
                 uint64_t *bytes_new, vb_error *e)
{
    struct vb_manifest *there = NULL;
    struct vb_codec codec;
    uint64_t added = 0;
    int ret;

    *new_id = NULL;
    *bytes_new = 0;
    if (vb2_snap_load(to, s->id, &there, NULL) == 0) {
        vb_manifest_free(there);
        return -EEXIST;
    }
    if (vb_codec_init(&codec, 1))
        return vb_seterr(e, -ENOMEM, "cannot set up compression");
    ret = s->type == VB_SNAP_DISK
              ? copy_disk(from, s, to, &codec, cancel, p, done, new_id, &added, e)
              : copy_files(from, s, to, &codec, cancel, p, done, new_id, &added, e);
    vb_codec_free(&codec);
    if (!ret)
        *bytes_new = added;
    return ret;
}

int vb_copy_snapshot(struct vb_repo *from, const char *id, struct vb2_repo *to,
                     const int *cancel, struct vb_progress *p, uint64_t *done, char **new_id,
                     uint64_t *bytes_new, vb_error *e)
{
    struct vb_snapshot *s;
    int ret;

    *new_id = NULL;
    *bytes_new = 0;
    if ((ret = vb_snap_load(from, id, &s, e)))
        return ret;
    ret = vb_copy_snap(from, s, to, cancel, p, done, new_id, bytes_new, e);
    vb_snap_free(s);
    return ret;
}
