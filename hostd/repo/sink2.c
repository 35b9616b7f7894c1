/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A write session of a version 2 repository behind the write-session door
 * (sink2.h, hostd/lib/sink.h).  Chunks are data blobs; a files snapshot is
 * a manifest with its catalog and chunk list as streams, written as a copy
 * writes one (copy.c: the same group, roots, mode and counts); a disk
 * snapshot goes through disksink2.c over the same session.  Both manifests
 * carry the session's token in notes.session.
 */
#include "sink2.h"

#include <errno.h>
#include <glib.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "disksink2.h"
#include "escape.h"

struct sink2 {
    struct vb2_repo *r;
    struct vb2_write *w;
    char *location;
    char *vm;
    char *dedup_group;       /* NULL: none */
    int zstd_level;
    char token[33];
    GMutex mu;               /* guards disk */
    bool has_disk;
    struct vb_disk_sink disk;    /* the session's disk sink, made on first ask */
    /* over a shared session (vb_sink_v2_shared): this job's end, budget and
     * bytes; the session is the batch's */
    bool shared;
    gint ended;              /* atomic: aborted or committed */
    vb_sink_charge_fn charge;
    void *charge_opaque;
    void (*charge_release)(void *);
    int64_t added;           /* atomic: what this job's puts and commit were charged */
};

/* A shared session's budget for one job: the job's own charge, and its
 * tally of what it added. */
static int job_charge(void *opaque, int64_t bytes, vb_error *e)
{
    struct sink2 *s = opaque;
    int ret = s->charge ? s->charge(s->charge_opaque, bytes, e) : 0;

    if (!ret)
        __atomic_fetch_add(&s->added, bytes, __ATOMIC_RELAXED);
    return ret;
}

/* Text a manifest takes: as it is when plain, else escaped as `ls -b` shows
 * it (copy.c does the same with what it copies). */
static char *text_of(const char *s)
{
    return vb_text_plain(s, strlen(s)) ? g_strdup(s) : vb_escape(s, strlen(s));
}

static bool same_group(const char *a, const char *b)
{
    return !strcmp(a ? a : "", b ? b : "");
}

static int k2_put(void *h, struct vb_codec *c, const void *data, size_t len, uint8_t id[32],
                  uint32_t *stored, vb_error *e)
{
    struct sink2 *s = h;
    struct vb2_budget b = { job_charge, s };

    if (!s->shared)
        return vb2_write_put(s->w, c, VB_BLOB_DATA, data, len, id, stored, e);
    if (g_atomic_int_get(&s->ended))
        return vb_seterr(e, -ECANCELED, "the backup was aborted");
    return vb2_write_put_budget(s->w, c, VB_BLOB_DATA, data, len, id, stored, &b, e);
}

static bool k2_has(void *h, const uint8_t id[32])
{
    struct sink2 *s = h;

    return vb2_write_has(s->w, id);
}

/* No generation knowledge in version 2: a parent is never "known" (has()
 * answers from memory instead). */
static void k2_inherit(void *h, const uint8_t id[32])
{
    (void)h;
    (void)id;
}

static int k2_files_parent(void *h, const char *group, bool full_only,
                           struct vb_files_parent **out, vb_error *e)
{
    struct sink2 *s = h;
    g_autofree char *stored_group = text_of(group);
    GPtrArray *list, *problems = NULL;
    struct vb_manifest *m = NULL;
    GByteArray *b;
    int ret;

    *out = NULL;
    /* a manifest that cannot be read is no candidate (verify names it) */
    if ((ret = vb2_snap_list(s->r, s->vm, &list, &problems, e)))
        return ret;
    if (problems)
        g_ptr_array_free(problems, TRUE);
    for (guint i = list->len; i-- > 0 && !m;) {
        struct vb_manifest *c = list->pdata[i];
        if (c->type == VB_MF_FILES && !strcmp(c->group ? c->group : "", stored_group) &&
            same_group(c->dedup_group, s->dedup_group) &&
            (!full_only || !c->mode || !c->mode[0] || !strcmp(c->mode, "full")))
            m = c;
    }
    if (!m) {
        g_ptr_array_free(list, TRUE);
        return 0;
    }
    /* its catalog, as the read door opens it (snapread.c) */
    b = g_byte_array_new();
    ret = vb2_stream_get_all(s->r, m, &m->catalog, b, e);
    if (!ret) {
        struct vb_files_parent *p = g_new0(struct vb_files_parent, 1);
        g_autofree char *what = g_strdup_printf("the catalog of %s", m->id);
        size_t len = b->len;
        ret = vb_cat_parse(g_byte_array_free(g_steal_pointer(&b), FALSE), len, what, &p->cat,
                           e);
        if (ret) {
            g_free(p);
        } else {
            p->id = g_strdup(m->id);
            p->known = false;
            *out = p;
        }
    }
    if (ret)
        vb_prefixerr(e, "parent %s", m->id);
    if (b)
        g_byte_array_free(b, TRUE);
    g_ptr_array_free(list, TRUE);
    return ret;
}

/*
 * The data chunks the catalog names, each once, in catalog order: the
 * chunks stream gc marks.  Each must exist for this session (stored by it,
 * or found in the index): a catalog naming anything else would commit a
 * snapshot that cannot be restored.
 */
static int chunk_list(struct sink2 *s, const struct vb_catalog *cat, GByteArray *ids,
                      vb_error *e)
{
    GHashTable *seen = g_hash_table_new(vb_id_hash, vb_id_equal);
    int ret = 0;

    for (uint64_t i = 0; i < cat->n && !ret; i++) {
        const struct vb_cat_entry *en = &cat->e[i];
        for (uint64_t k = en->first_chunk; k < en->first_chunk + en->n_chunks && !ret; k++) {
            const struct vb_cat_chunk *ch = &cat->c[k];
            if ((ch->flags & VB_CATC_ZERO) || g_hash_table_contains(seen, ch->id))
                continue;
            if (!vb2_write_has(s->w, ch->id)) {
                size_t pl;
                const char *p = vb_cat_path(cat, i, &pl);
                g_autofree char *path = vb_text_plain(p, pl) ? g_strndup(p, pl)
                                                             : vb_escape(p, pl);
                char hex[VB_ID_HEX];
                vb_hex(ch->id, VB_ID_LEN, hex);
                ret = vb_seterr(e, -EBADMSG, "the catalog names chunk %s of '%s' (at %llu), "
                                "which this backup neither stored nor found", hex, path,
                                (unsigned long long)ch->offset);
                break;
            }
            g_hash_table_add(seen, (gpointer)ch->id);
            g_byte_array_append(ids, ch->id, VB_HASH_LEN);
        }
    }
    g_hash_table_destroy(seen);
    return ret;
}

/* The group and roots as the guest sent them (bytes, base64), beside the
 * text the manifest's own members hold (plain, or escaped as ls -b shows
 * it): a guest's LIST and "latest" compare paths as bytes, and a display
 * escapes them once (vb2_files_group_raw, vb2_files_root_raw). */
static void raw_names(json_object *source, const struct vb_files_commit *fc)
{
    json_object *a = json_object_new_array();
    char *b;

    b = g_base64_encode((const guchar *)fc->group, strlen(fc->group));
    json_object_object_add(source, "group_raw", json_object_new_string(b));
    g_free(b);
    for (size_t i = 0; i < fc->nroots; i++) {
        if (!fc->roots[i] || !fc->roots[i][0])
            continue;                       /* as the manifest's roots */
        b = g_base64_encode((const guchar *)fc->roots[i], strlen(fc->roots[i]));
        json_object_array_add(a, json_object_new_string(b));
        g_free(b);
    }
    json_object_object_add(source, "roots_raw", a);
}

/* A base64 member as a C string: NULL when missing, not base64, or holding a
 * NUL (a damaged or hand-made manifest: the caller falls back on the text). */
static char *raw_of(json_object *v)
{
    gsize n = 0;
    guchar *b;

    if (!v || !json_object_is_type(v, json_type_string))
        return NULL;
    b = g_base64_decode(json_object_get_string(v), &n);
    if (!b || memchr(b, 0, n)) {
        g_free(b);
        return NULL;
    }
    b = g_realloc(b, n + 1);
    b[n] = 0;
    return (char *)b;
}

char *vb2_files_group_raw(const struct vb_manifest *m)
{
    json_object *v = NULL;
    char *r = NULL;

    if (m->source && json_object_object_get_ex(m->source, "group_raw", &v))
        r = raw_of(v);
    return r ? r : g_strdup(m->group ? m->group : "");
}

char *vb2_files_root_raw(const struct vb_manifest *m, size_t i)
{
    json_object *a = NULL;
    char *r = NULL;

    if (i >= m->files.nroots)
        return NULL;
    if (m->source && json_object_object_get_ex(m->source, "roots_raw", &a) &&
        json_object_is_type(a, json_type_array) &&
        json_object_array_length(a) == m->files.nroots)
        r = raw_of(json_object_array_get_idx(a, i));
    return r ? r : g_strdup(m->files.roots[i]);
}

/*
 * What the guest could not back up.  A manifest's notes nest at most
 * VB_MF_FREE_DEPTH levels, and the daemon's {"problems": N, "listed":
 * [{"path", "reason"}...]} under notes.incomplete would be one too deep:
 * notes.incomplete keeps its plain members, and each member that is an
 * array or object goes beside it as notes.incomplete_<name>.
 */
static void add_incomplete(json_object *notes, json_object *inc)
{
    json_object *top;

    if (!json_object_is_type(inc, json_type_object)) {
        json_object_object_add(notes, "incomplete", json_object_get(inc));
        return;
    }
    top = json_object_new_object();
    json_object_object_foreach(inc, k, v) {
        if (json_object_is_type(v, json_type_object) || json_object_is_type(v, json_type_array)) {
            g_autofree char *name = g_strdup_printf("incomplete_%s", k);
            json_object_object_add(notes, name, json_object_get(v));
        } else {
            json_object_object_add(top, k, json_object_get(v));
        }
    }
    json_object_object_add(notes, "incomplete", top);
}

static void fill_manifest(struct sink2 *s, const struct vb_files_commit *fc,
                          struct vb_manifest *m)
{
    m->type = VB_MF_FILES;
    m->created_ns = fc->created_ns;         /* 0: the session's start */
    m->group = text_of(fc->group);          /* "files:" and the roots, as text */
    m->mode = g_strdup(fc->mode ? fc->mode : "full");
    m->parent = fc->parent ? g_strdup(fc->parent) : NULL;
    m->files.roots = calloc(VB_MAX(fc->nroots, (size_t)1), sizeof(char *));
    for (size_t i = 0; m->files.roots && i < fc->nroots; i++) {
        g_autofree char *t = NULL;
        if (!fc->roots[i] || !fc->roots[i][0])
            continue;                       /* a manifest takes no empty root */
        t = text_of(fc->roots[i]);
        if ((m->files.roots[m->files.nroots] = strdup(t)))
            m->files.nroots++;
    }
    m->files.entries = fc->entries;
    m->files.bytes = fc->bytes;
    m->source = json_object_new_object();
    if (fc->disks)
        json_object_object_add(m->source, "disks", json_object_get(fc->disks));
    raw_names(m->source, fc);
    m->notes = json_object_new_object();
    json_object_object_add(m->notes, "session", json_object_new_string(s->token));
    if (fc->plan)
        json_object_object_add(m->notes, "plan", json_object_get(fc->plan));
    if (fc->mode_note) {
        g_autofree char *t = text_of(fc->mode_note);
        json_object_object_add(m->notes, "mode_note", json_object_new_string(t));
    }
    if (fc->incomplete)
        add_incomplete(m->notes, fc->incomplete);
    m->stats = fc->stats ? json_object_get(fc->stats) : json_object_new_object();
}

static int k2_files_commit(void *h, const struct vb_files_commit *fc, char **id, vb_error *e)
{
    struct sink2 *s = h;
    struct vb_manifest *m = vb_manifest_new();
    struct vb_catalog *cat = NULL;
    GByteArray *ids = g_byte_array_new();
    struct vb_codec c;
    bool codec = false;
    int ret;

    *id = NULL;
    if (!fc->catalog || !fc->catalog_len || !fc->group || !*fc->group) {
        ret = vb_seterr(e, -EINVAL, "commit a files snapshot: no catalog or no group");
        goto out;
    }
    ret = vb_cat_parse(g_memdup2(fc->catalog, fc->catalog_len), fc->catalog_len,
                       "the backup's catalog", &cat, e);
    if (!ret && cat->n != fc->entries)
        ret = vb_seterr(e, -EINVAL, "the catalog holds %llu entries, the commit says %llu",
                        (unsigned long long)cat->n, (unsigned long long)fc->entries);
    if (!ret)
        ret = chunk_list(s, cat, ids, e);
    if (ret)
        goto out;
    vb_cat_free(cat);                       /* one catalog in memory, besides the caller's */
    cat = NULL;
    if (vb_codec_init(&c, s->zstd_level) < 0) {
        ret = vb_seterr(e, -ENOMEM, "out of memory for a compression context");
        goto out;
    }
    codec = true;
    fill_manifest(s, fc, m);
    if ((ret = vb2_write_stream(s->w, &c, fc->catalog, fc->catalog_len, &m->catalog, e)) ||
        (ret = vb2_write_stream(s->w, &c, ids->data, ids->len, &m->chunks, e)))
        goto out;
    if (s->shared) {
        /* the batch's session goes on; this job has ended either way */
        struct vb2_budget b = { job_charge, s };
        if (!g_atomic_int_compare_and_exchange(&s->ended, 0, 1))
            ret = vb_seterr(e, -ECANCELED, "the backup was aborted");
        else
            ret = vb2_write_commit_one(s->w, m, s->vm, &b, id, e);
        goto out;
    }
    /* ends the session either way */
    ret = vb2_write_commit(s->w, m, id, e);
out:
    if (ret && !s->shared)
        vb2_write_abort(s->w);              /* a no-op once the commit ended it */
    if (codec)
        vb_codec_free(&c);
    vb_cat_free(cat);
    g_byte_array_free(ids, TRUE);
    vb_manifest_free(m);
    if (ret)
        vb_prefixerr(e, "commit the files backup of %s", s->vm);
    return ret;
}

/* The session's disk sink, made once and kept until the sink is freed; the
 * caller gets its own copies of the strings (vb_disk_sink_clear frees them). */
static void k2_disk(void *h, struct vb_disk_sink *out)
{
    struct sink2 *s = h;

    g_mutex_lock(&s->mu);
    if (!s->has_disk) {
        vb2_disk_sink_over(s->r, s->w, s->location, s->dedup_group, &s->disk);
        vb2_disk_sink_note(&s->disk, "session", s->token);
        s->has_disk = true;
    }
    *out = s->disk;
    out->location = s->disk.location ? strdup(s->disk.location) : NULL;
    out->space_name = s->disk.space_name ? strdup(s->disk.space_name) : NULL;
    g_mutex_unlock(&s->mu);
}

static const char *k2_token(void *h)
{
    return ((struct sink2 *)h)->token;
}

static const char *k2_warning(void *h)
{
    (void)h;
    return NULL;
}

static uint64_t k2_added(void *h)
{
    struct sink2 *s = h;
    int64_t n;

    if (!s->shared)
        return vb2_write_added(s->w);
    n = __atomic_load_n(&s->added, __ATOMIC_RELAXED);
    return n > 0 ? (uint64_t)n : 0;
}

static void k2_set_charge(void *h, vb_sink_charge_fn fn, void *opaque, void (*release)(void *))
{
    struct sink2 *s = h;

    if (!s->shared) {
        vb2_write_set_charge(s->w, fn, opaque, release);
        return;
    }
    if (s->charge_release)
        s->charge_release(s->charge_opaque);
    s->charge = fn;
    s->charge_opaque = opaque;
    s->charge_release = release;
}

/* A shared session is the batch's: a job's abort ends only the job (what
 * it stored is left for gc, as a failed session's is). */
static void k2_abort(void *h)
{
    struct sink2 *s = h;

    if (s->shared)
        g_atomic_int_set(&s->ended, 1);
    else
        vb2_write_abort(s->w);
}

static void k2_free(void *h)
{
    struct sink2 *s = h;

    if (s->has_disk)
        vb2_disk_sink_end(&s->disk);
    vb2_write_unref(s->w);                  /* the last one: aborts a session never ended */
    if (s->charge_release)
        s->charge_release(s->charge_opaque);
    g_mutex_clear(&s->mu);
    g_free(s->location);
    g_free(s->vm);
    g_free(s->dedup_group);
    g_free(s);
}

static const struct vb_sink_ops sink_v2_ops = {
    .put = k2_put,
    .has = k2_has,
    .inherit = k2_inherit,
    .files_parent = k2_files_parent,
    .files_commit = k2_files_commit,
    .disk = k2_disk,
    .token = k2_token,
    .warning = k2_warning,
    .added = k2_added,
    .set_charge = k2_set_charge,
    .abort = k2_abort,
    .free = k2_free,
};

/* A sink over w (the reference is the sink's); shared: w is a batch's. */
static struct vb_sink *sink_over(struct vb2_repo *r, struct vb2_write *w, bool shared,
                                 const char *location, const char *vm,
                                 const char *dedup_group, const uint8_t raw[16])
{
    struct sink2 *s = g_new0(struct sink2, 1);
    struct vb2_repo_info info;

    vb_hex(raw, 16, s->token);
    vb2_repo_info(r, &info);
    s->r = r;
    s->w = w;
    s->shared = shared;
    s->location = g_strdup(location);
    s->vm = g_strdup(vm);
    s->dedup_group = dedup_group && dedup_group[0] ? g_strdup(dedup_group) : NULL;
    s->zstd_level = info.zstd_level;
    g_mutex_init(&s->mu);
    return vb_sink_new(&sink_v2_ops, s);
}

/* The token's bytes: 16 random ones. */
static int token_bytes(uint8_t raw[16], const char *vm, vb_error *e)
{
    if (RAND_bytes(raw, 16) != 1)
        return vb_seterr(e, -EIO, "begin a backup of %s: no random bytes for its token "
                         "(libcrypto's RAND_bytes failed)", vm ? vm : "(none)");
    return 0;
}

int vb_sink_v2(struct vb2_repo *r, const char *location, const char *vm,
               const char *dedup_group, struct vb_sink **out, vb_error *e)
{
    struct vb2_write_opts wo = { .vm = vm, .dedup_group = dedup_group };
    struct vb2_write *w;
    uint8_t raw[16];
    int ret;

    *out = NULL;
    if ((ret = token_bytes(raw, vm, e)) || (ret = vb2_write_begin(r, &wo, &w, e)))
        return ret;
    *out = sink_over(r, w, false, location, vm, dedup_group, raw);
    return 0;
}

int vb_sink_v2_shared(struct vb2_repo *r, struct vb2_write *w, const char *location,
                      const char *vm, const char *dedup_group, struct vb_sink **out,
                      vb_error *e)
{
    uint8_t raw[16];
    int ret;

    *out = NULL;
    if ((ret = token_bytes(raw, vm, e)))
        return ret;
    *out = sink_over(r, vb2_write_ref(w), true, location, vm, dedup_group, raw);
    return 0;
}
