/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Snapshot manifests (manifest.h): one schema, built and checked here. */
#include "manifest.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"

static const char manifest_ad[] = "vbackup manifest";

struct vb_manifest *vb_manifest_new(void)
{
    struct vb_manifest *m = calloc(1, sizeof(*m));

    return m;
}

void vb_manifest_free(struct vb_manifest *m)
{
    if (!m)
        return;
    free(m->group);
    free(m->mode);
    free(m->parent);
    free(m->dedup_group);
    json_object_put(m->source);
    json_object_put(m->notes);
    json_object_put(m->stats);
    free(m->disk.name);
    for (size_t i = 0; i < m->files.nroots; i++)
        free(m->files.roots[i]);
    free(m->files.roots);
    vb_stream_ref_free(&m->chunks);
    vb_stream_ref_free(&m->catalog);
    free(m);
}

/* ---- ids ------------------------------------------------------------------------ */

static bool vm_valid(const char *s, size_t n)
{
    if (n < 1 || n > 64 || s[0] == '.' || s[0] == '-')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

bool vb_snap_id_valid(const char *id)
{
    const char *slash = strchr(id, '/'), *t, *suffix;
    char when[21];
    int64_t ns;

    if (!slash || !vm_valid(id, (size_t)(slash - id)))
        return false;
    t = slash + 1;
    /* YYYY-MM-DDTHH:MM:SSZ exactly, then optionally -n */
    if (strlen(t) < 20 || t[4] != '-' || t[7] != '-' || t[10] != 'T' || t[13] != ':' ||
        t[16] != ':' || t[19] != 'Z')
        return false;
    for (int i = 0; i < 19; i++)
        if (i != 4 && i != 7 && i != 10 && i != 13 && i != 16 && !(t[i] >= '0' && t[i] <= '9'))
            return false;
    memcpy(when, t, 20);
    when[20] = 0;
    if (vb_parse_time(when, &ns) || ns < 0)
        return false;
    {
        /* the canonical spelling only (no 25:00:00, no Feb 30) */
        char back[40];
        vb_fmt_time(ns, back, sizeof(back));
        if (strcmp(back, when))
            return false;
    }
    suffix = t + 20;
    if (!*suffix)
        return true;
    if (suffix[0] != '-' || suffix[1] < '1' || suffix[1] > '9' || strlen(suffix) > 6)
        return false;
    for (const char *c = suffix + 1; *c; c++)
        if (*c < '0' || *c > '9')
            return false;
    return strtoul(suffix + 1, NULL, 10) >= 2;
}

int vb_snap_id_make(const char *vm, int64_t created_ns, unsigned n, char *out, vb_error *e)
{
    char when[40];

    if (!vm_valid(vm, strlen(vm)))
        return vb_seterr(e, -EINVAL, "'%.80s' is not a valid VM name (letters, digits, . _ -; "
                         "at most 64, not starting with . or -)", vm);
    if (created_ns < 0 || n > 99999)
        return vb_seterr(e, -EINVAL, "snapshot id: time or number out of range");
    vb_fmt_time(created_ns, when, sizeof(when));
    if (n >= 2)
        snprintf(out, VB_SNAP_ID_MAX, "%s/%s-%u", vm, when, n);
    else
        snprintf(out, VB_SNAP_ID_MAX, "%s/%s", vm, when);
    return 0;
}

/* ---- JSON out ------------------------------------------------------------------------ */

static json_object *ref_json(const struct vb_stream_ref *r)
{
    json_object *o = json_object_new_object(), *a = json_object_new_array_ext((int)r->nblobs);
    char hex[65];

    json_object_object_add(o, "length", json_object_new_int64((int64_t)r->length));
    vb_hex(r->sha256, 32, hex);
    json_object_object_add(o, "sha256", json_object_new_string(hex));
    for (uint32_t i = 0; i < r->nblobs; i++) {
        vb_hex(r->blobs + (size_t)i * VB_HASH_LEN, VB_HASH_LEN, hex);
        json_object_array_add(a, json_object_new_string(hex));
    }
    json_object_object_add(o, "blobs", a);
    return o;
}

static json_object *str_or_null(const char *s)
{
    return s ? json_object_new_string(s) : NULL;
}

static json_object *obj_or_empty(json_object *o)
{
    return o ? json_object_get(o) : json_object_new_object();
}

/* The JSON, unchecked. */
static json_object *to_json(const struct vb_manifest *m)
{
    json_object *j = json_object_new_object(), *streams = json_object_new_object();

    json_object_object_add(j, "format", json_object_new_int(VB_MANIFEST_FORMAT));
    json_object_object_add(j, "object", json_object_new_string(m->object));
    json_object_object_add(j, "id", json_object_new_string(m->id));
    json_object_object_add(j, "vm", json_object_new_string(m->vm));
    json_object_object_add(j, "type", json_object_new_string(m->type == VB_MF_DISK ? "disk"
                                                             : m->type == VB_MF_FILES ? "files"
                                                             : "?"));
    json_object_object_add(j, "created_ns", json_object_new_int64(m->created_ns));
    json_object_object_add(j, "group", json_object_new_string(m->group ? m->group : ""));
    json_object_object_add(j, "mode", json_object_new_string(m->mode ? m->mode : ""));
    json_object_object_add(j, "parent", str_or_null(m->parent));
    json_object_object_add(j, "dedup_group", str_or_null(m->dedup_group));
    json_object_object_add(j, "source", obj_or_empty(m->source));
    json_object_object_add(j, "notes", obj_or_empty(m->notes));
    json_object_object_add(j, "stats", obj_or_empty(m->stats));
    if (m->type == VB_MF_DISK) {
        json_object *d = json_object_new_object();
        json_object_object_add(d, "name", json_object_new_string(m->disk.name ? m->disk.name
                                                                 : ""));
        json_object_object_add(d, "size", json_object_new_int64((int64_t)m->disk.size));
        json_object_object_add(d, "chunk_size", json_object_new_int64(m->disk.chunk_size));
        json_object_object_add(d, "chunk_count",
                               json_object_new_int64((int64_t)m->disk.chunk_count));
        json_object_object_add(j, "disk", d);
    } else {
        json_object *f = json_object_new_object(), *roots = json_object_new_array();
        for (size_t i = 0; i < m->files.nroots; i++)
            json_object_array_add(roots, json_object_new_string(m->files.roots[i]));
        json_object_object_add(f, "roots", roots);
        json_object_object_add(f, "entries", json_object_new_int64((int64_t)m->files.entries));
        json_object_object_add(f, "bytes", json_object_new_int64((int64_t)m->files.bytes));
        json_object_object_add(j, "files", f);
    }
    json_object_object_add(streams, "chunks", ref_json(&m->chunks));
    if (m->type == VB_MF_FILES)
        json_object_object_add(streams, "catalog", ref_json(&m->catalog));
    json_object_object_add(j, "streams", streams);
    return j;
}

json_object *vb_manifest_to_json(const struct vb_manifest *m, vb_error *e)
{
    json_object *j = to_json(m);
    struct vb_manifest *check = NULL;

    /* one checker: what we write is what a reader accepts */
    if (vb_manifest_from_json(j, "manifest", &check, e)) {
        json_object_put(j);
        return NULL;
    }
    vb_manifest_free(check);
    return j;
}

/* ---- JSON in: every field's type and range --------------------------------------------- */

static const char *const type_names[] = { [json_type_null] = "null",
                                          [json_type_boolean] = "a boolean",
                                          [json_type_double] = "a number",
                                          [json_type_int] = "an integer",
                                          [json_type_object] = "an object",
                                          [json_type_array] = "an array",
                                          [json_type_string] = "a string" };

static int bad(vb_error *e, const char *name, const char *key, const char *why)
{
    return vb_seterr(e, -EBADMSG, "%s: damaged (field '%s' %s)", name, key, why);
}

static int get(json_object *o, const char *name, const char *key, enum json_type t,
               bool nullable, json_object **v, vb_error *e)
{
    char why[64];

    if (!json_object_object_get_ex(o, key, v))
        return vb_seterr(e, -EBADMSG, "%s: damaged (no field '%s')", name, key);
    if (nullable && json_object_is_type(*v, json_type_null)) {
        *v = NULL;
        return 0;
    }
    if (!json_object_is_type(*v, t)) {
        snprintf(why, sizeof(why), "is %s, not %s", type_names[json_object_get_type(*v)],
                 type_names[t]);
        return bad(e, name, key, why);
    }
    return 0;
}

/* At most max bytes, no NUL, no control characters (printable for a
 * terminal: UTF-8 passes, bytes below 0x20 and 0x7f do not). */
static bool text_ok(const char *s, size_t n, size_t min, size_t max)
{
    if (n < min || n > max || strlen(s) != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] == 0x7f)
            return false;
    return true;
}

static int get_text(json_object *o, const char *name, const char *key, size_t min, size_t max,
                    bool nullable, char **out, vb_error *e)
{
    json_object *v;
    int ret = get(o, name, key, json_type_string, nullable, &v, e);

    *out = NULL;
    if (ret || !v)
        return ret;
    if (!text_ok(json_object_get_string(v), (size_t)json_object_get_string_len(v), min, max))
        return bad(e, name, key, "has a length out of range, a NUL or a control character");
    *out = strdup(json_object_get_string(v));
    return *out ? 0 : vb_seterr(e, -ENOMEM, "out of memory");
}

static int get_u64(json_object *o, const char *name, const char *key, uint64_t max,
                   uint64_t *out, vb_error *e)
{
    json_object *v;
    int64_t x;
    int ret = get(o, name, key, json_type_int, false, &v, e);

    if (ret)
        return ret;
    /* json-c saturates what does not fit: INT64_MAX is never a real value */
    errno = 0;
    x = json_object_get_int64(v);
    if (errno || x < 0 || x == INT64_MAX || (uint64_t)x > max)
        return bad(e, name, key, "is out of range");
    *out = (uint64_t)x;
    return 0;
}

static int get_hex(json_object *v, uint8_t *out, size_t n)
{
    const char *s = json_object_get_string(v);

    if (!json_object_is_type(v, json_type_string) ||
        (size_t)json_object_get_string_len(v) != 2 * n)
        return -EINVAL;
    for (size_t i = 0; i < 2 * n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return -EINVAL;
    return vb_unhex(s, out, n);
}

/* A caller-defined object: any JSON below VB_MF_FREE_DEPTH levels. */
static int free_depth_ok(json_object *o, int depth)
{
    if (depth > VB_MF_FREE_DEPTH)
        return 0;
    if (json_object_is_type(o, json_type_object)) {
        json_object_object_foreach(o, key, val) {
            (void)key;
            if (!free_depth_ok(val, depth + 1))
                return 0;
        }
    } else if (json_object_is_type(o, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(o); i++)
            if (!free_depth_ok(json_object_array_get_idx(o, i), depth + 1))
                return 0;
    }
    return 1;
}

static int get_free(json_object *o, const char *name, const char *key, json_object **out,
                    vb_error *e)
{
    json_object *v;
    int ret = get(o, name, key, json_type_object, false, &v, e);

    if (ret)
        return ret;
    if (!free_depth_ok(v, 1))
        return bad(e, name, key, "is nested too deeply");
    *out = json_object_get(v);
    return 0;
}

static int get_stats(json_object *o, const char *name, json_object **out, vb_error *e)
{
    json_object *v;
    int ret = get(o, name, "stats", json_type_object, false, &v, e);

    if (ret)
        return ret;
    json_object_object_foreach(v, key, val) {
        size_t n = strlen(key);
        bool ok = n >= 1 && n <= 64;
        for (size_t i = 0; ok && i < n; i++)
            ok = (key[i] >= 'a' && key[i] <= 'z') || (key[i] >= '0' && key[i] <= '9') ||
                 key[i] == '_';
        if (!ok)
            return bad(e, name, "stats", "has a member name other than [a-z0-9_]{1,64}");
        if (json_object_is_type(val, json_type_int)) {
            errno = 0;
            if (json_object_get_int64(val) < 0 || errno)
                return bad(e, name, "stats", "has a negative or huge integer");
        } else if (json_object_is_type(val, json_type_double)) {
            double d = json_object_get_double(val);
            if (!isfinite(d) || d < 0)
                return bad(e, name, "stats", "has a negative or infinite number");
        } else {
            return bad(e, name, "stats", "has a member that is not a number");
        }
    }
    *out = json_object_get(v);
    return 0;
}

static int get_stream(json_object *streams, const char *name, const char *key,
                      struct vb_stream_ref *r, vb_error *e)
{
    char field[64];
    json_object *s, *v;
    uint64_t len;
    size_t n;
    int ret;

    snprintf(field, sizeof(field), "streams.%s", key);
    ret = get(streams, name, key, json_type_object, false, &s, e);
    if (!ret)
        ret = get_u64(s, name, "length", VB_STREAM_MAX_LEN, &len, e);
    if (!ret)
        ret = get(s, name, "sha256", json_type_string, false, &v, e);
    if (!ret && get_hex(v, r->sha256, 32))
        ret = bad(e, name, field, "has a sha256 that is not 64 lower-case hex digits");
    if (!ret)
        ret = get(s, name, "blobs", json_type_array, false, &v, e);
    if (ret)
        return ret;
    n = json_object_array_length(v);
    r->length = len;
    if (n > UINT32_MAX)
        return bad(e, name, field, "has too many blobs");
    r->nblobs = (uint32_t)n;
    ret = vb_stream_ref_check(r, e);
    if (ret) {
        r->nblobs = 0;
        vb_prefixerr(e, "%s: damaged (field '%s')", name, field);
        return ret;
    }
    if (n) {
        r->blobs = malloc(n * VB_HASH_LEN);
        if (!r->blobs) {
            r->nblobs = 0;
            return vb_seterr(e, -ENOMEM, "out of memory");
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (get_hex(json_object_array_get_idx(v, i), r->blobs + i * VB_HASH_LEN, VB_HASH_LEN)) {
            char why[64];
            snprintf(why, sizeof(why), "has blob %zu that is not 64 lower-case hex digits", i);
            return bad(e, name, field, why);
        }
    }
    return 0;
}

int vb_manifest_from_json(json_object *j, const char *name, struct vb_manifest **out,
                          vb_error *e)
{
    struct vb_manifest *m = vb_manifest_new();
    json_object *v, *streams;
    char *s = NULL;
    uint64_t u;
    int ret;

    *out = NULL;
    if (!m)
        return vb_seterr(e, -ENOMEM, "out of memory");
    if (!json_object_is_type(j, json_type_object)) {
        ret = vb_seterr(e, -EBADMSG, "%s: damaged (not a JSON object)", name);
        goto fail;
    }
    ret = get(j, name, "format", json_type_int, false, &v, e);
    if (ret)
        goto fail;
    if (json_object_get_int64(v) != VB_MANIFEST_FORMAT) {
        ret = vb_seterr(e, -EPROTONOSUPPORT, "%s: manifest format %lld is not supported "
                        "(this vbackup reads format %d)", name,
                        (long long)json_object_get_int64(v), VB_MANIFEST_FORMAT);
        goto fail;
    }
    ret = get(j, name, "object", json_type_string, false, &v, e);
    if (!ret) {
        uint8_t raw[16];
        if (get_hex(v, raw, 16))
            ret = bad(e, name, "object", "is not 32 lower-case hex digits");
        else
            memcpy(m->object, json_object_get_string(v), 33);
    }
    if (!ret)
        ret = get_text(j, name, "vm", 1, 64, false, &s, e);
    if (!ret && !vm_valid(s, strlen(s)))
        ret = bad(e, name, "vm", "is not a valid VM name");
    if (!ret)
        memcpy(m->vm, s, strlen(s) + 1);
    free(s);
    s = NULL;
    if (!ret)
        ret = get_text(j, name, "id", 1, VB_SNAP_ID_MAX - 1, false, &s, e);
    if (!ret && (!vb_snap_id_valid(s) || strncmp(s, m->vm, strlen(m->vm)) ||
                 s[strlen(m->vm)] != '/'))
        ret = bad(e, name, "id", "is not a snapshot id of its VM (VM/YYYY-MM-DDTHH:MM:SSZ)");
    if (!ret)
        memcpy(m->id, s, strlen(s) + 1);
    free(s);
    s = NULL;
    if (!ret)
        ret = get(j, name, "type", json_type_string, false, &v, e);
    if (!ret) {
        if (!strcmp(json_object_get_string(v), "disk"))
            m->type = VB_MF_DISK;
        else if (!strcmp(json_object_get_string(v), "files"))
            m->type = VB_MF_FILES;
        else
            ret = bad(e, name, "type", "is neither 'disk' nor 'files'");
    }
    if (!ret)
        ret = get_u64(j, name, "created_ns", INT64_MAX, &u, e);
    if (!ret)
        m->created_ns = (int64_t)u;
    if (!ret)
        ret = get_text(j, name, "group", 0, VB_MF_TEXT_MAX, false, &m->group, e);
    if (!ret)
        ret = get_text(j, name, "mode", 0, VB_MF_TEXT_MAX, false, &m->mode, e);
    if (!ret)
        ret = get_text(j, name, "parent", 1, VB_SNAP_ID_MAX - 1, true, &m->parent, e);
    if (!ret && m->parent && !vb_snap_id_valid(m->parent))
        ret = bad(e, name, "parent", "is not a snapshot id");
    if (!ret)
        ret = get_text(j, name, "dedup_group", 1, 255, true, &m->dedup_group, e);
    if (!ret)
        ret = get_free(j, name, "source", &m->source, e);
    if (!ret)
        ret = get_free(j, name, "notes", &m->notes, e);
    if (!ret)
        ret = get_stats(j, name, &m->stats, e);
    if (ret)
        goto fail;

    if (m->type == VB_MF_DISK) {
        json_object *d;
        ret = get(j, name, "disk", json_type_object, false, &d, e);
        if (!ret)
            ret = get_text(d, name, "name", 0, VB_MF_TEXT_MAX, false, &m->disk.name, e);
        if (!ret)
            ret = get_u64(d, name, "size", INT64_MAX, &m->disk.size, e);
        if (!ret)
            ret = get_u64(d, name, "chunk_size", 16u << 20, &u, e);
        if (!ret && (u < 4096 || (u & (u - 1))))
            ret = bad(e, name, "disk.chunk_size", "is not a power of two from 4 KiB to 16 MiB");
        if (!ret)
            m->disk.chunk_size = (uint32_t)u;
        if (!ret)
            ret = get_u64(d, name, "chunk_count", INT64_MAX, &m->disk.chunk_count, e);
        if (!ret && m->disk.chunk_count !=
                    m->disk.size / m->disk.chunk_size + !!(m->disk.size % m->disk.chunk_size))
            ret = bad(e, name, "disk.chunk_count", "does not match size / chunk_size");
    } else {
        json_object *f, *roots;
        ret = get(j, name, "files", json_type_object, false, &f, e);
        if (!ret)
            ret = get(f, name, "roots", json_type_array, false, &roots, e);
        if (!ret && json_object_array_length(roots) > VB_MF_ROOTS_MAX)
            ret = bad(e, name, "files.roots", "has too many entries");
        if (!ret) {
            size_t n = json_object_array_length(roots);
            m->files.roots = calloc(VB_MAX(n, (size_t)1), sizeof(char *));
            if (!m->files.roots)
                ret = vb_seterr(e, -ENOMEM, "out of memory");
            for (size_t i = 0; !ret && i < n; i++) {
                json_object *r = json_object_array_get_idx(roots, i);
                if (!json_object_is_type(r, json_type_string) ||
                    !text_ok(json_object_get_string(r), (size_t)json_object_get_string_len(r),
                             1, VB_MF_TEXT_MAX)) {
                    ret = bad(e, name, "files.roots", "has an entry that is not a short "
                              "printable string");
                    break;
                }
                m->files.roots[i] = strdup(json_object_get_string(r));
                if (!m->files.roots[i])
                    ret = vb_seterr(e, -ENOMEM, "out of memory");
                else
                    m->files.nroots++;
            }
        }
        if (!ret)
            ret = get_u64(f, name, "entries", INT64_MAX, &m->files.entries, e);
        if (!ret)
            ret = get_u64(f, name, "bytes", INT64_MAX, &m->files.bytes, e);
    }
    if (ret)
        goto fail;

    ret = get(j, name, "streams", json_type_object, false, &streams, e);
    if (!ret)
        ret = get_stream(streams, name, "chunks", &m->chunks, e);
    if (!ret && m->chunks.length % VB_HASH_LEN)
        ret = bad(e, name, "streams.chunks", "has a length that is not a multiple of 32");
    if (!ret && m->type == VB_MF_DISK && m->chunks.length / VB_HASH_LEN != m->disk.chunk_count)
        ret = bad(e, name, "streams.chunks", "does not hold one id per disk chunk");
    if (!ret && m->type == VB_MF_FILES)
        ret = get_stream(streams, name, "catalog", &m->catalog, e);
    if (!ret && m->type == VB_MF_DISK && json_object_object_get_ex(streams, "catalog", &v))
        ret = bad(e, name, "streams.catalog", "is present in a disk snapshot");
    if (ret)
        goto fail;
    *out = m;
    return 0;
fail:
    free(s);
    vb_manifest_free(m);
    return ret;
}

/* ---- sealed --------------------------------------------------------------------------- */

int vb_manifest_seal(const struct vb_keys *k, const struct vb_manifest *m, uint8_t **out,
                     size_t *len, vb_error *e)
{
    json_object *j = vb_manifest_to_json(m, e);
    const char *text;
    size_t n, over = k->aead == VB_AEAD_NONE ? 4 : vb_seal_overhead(k->aead);
    uint8_t *p;
    int ret = 0;

    *out = NULL;
    if (!j)
        return e && e->code ? e->code : -EINVAL;
    text = json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN);
    n = strlen(text);
    if (n + over > VB_MANIFEST_MAX) {
        json_object_put(j);
        return vb_seterr(e, -EFBIG, "manifest of %zu bytes (at most %u)", n, VB_MANIFEST_MAX);
    }
    p = malloc(n + over);
    if (!p) {
        json_object_put(j);
        return vb_seterr(e, -ENOMEM, "out of memory");
    }
    if (k->aead == VB_AEAD_NONE) {
        memcpy(p, text, n);
        vb_put_le32(p + n, vb_crc32_more(0, (const uint8_t *)text, n));
    } else {
        ret = vb_seal(k, manifest_ad, sizeof(manifest_ad) - 1, text, n, p, e);
    }
    json_object_put(j);
    if (ret) {
        free(p);
        return ret;
    }
    *out = p;
    *len = n + over;
    return 0;
}

int vb_manifest_open(const struct vb_keys *k, const uint8_t *stored, size_t len,
                     const char *object, struct vb_manifest **out, vb_error *e)
{
    size_t over = k->aead == VB_AEAD_NONE ? 4 : vb_seal_overhead(k->aead), n;
    char name[64];
    struct json_tokener *tok;
    json_object *j;
    char *text;
    int ret = 0;

    *out = NULL;
    snprintf(name, sizeof(name), "snapshots/%s", object ? object : "?");
    if (len < over + 2 || len > VB_MANIFEST_MAX)
        return vb_seterr(e, -EBADMSG, "%s: damaged (%zu bytes)", name, len);
    n = len - over;
    text = malloc(n + 1);
    if (!text)
        return vb_seterr(e, -ENOMEM, "out of memory");
    if (k->aead == VB_AEAD_NONE) {
        memcpy(text, stored, n);
        if (vb_crc32_more(0, stored, n) != vb_get_le32(stored + n))
            ret = vb_seterr(e, -EBADMSG, "%s: damaged (CRC-32 mismatch)", name);
    } else {
        ret = vb_open(k, manifest_ad, sizeof(manifest_ad) - 1, stored, len, (uint8_t *)text, e);
        if (ret)
            vb_prefixerr(e, "%s", name);
    }
    if (ret) {
        free(text);
        return ret;
    }
    text[n] = 0;
    if (strlen(text) != n) {
        free(text);
        return vb_seterr(e, -EBADMSG, "%s: damaged (a NUL byte)", name);
    }
    tok = json_tokener_new_ex(16);
    if (!tok) {
        free(text);
        return vb_seterr(e, -ENOMEM, "out of memory");
    }
    j = json_tokener_parse_ex(tok, text, (int)n);
    if (!j || json_tokener_get_error(tok) != json_tokener_success ||
        json_tokener_get_parse_end(tok) != n) {
        ret = vb_seterr(e, -EBADMSG, "%s: damaged (not one JSON value: %s)", name,
                        json_tokener_error_desc(json_tokener_get_error(tok)));
    }
    json_tokener_free(tok);
    free(text);
    if (!ret)
        ret = vb_manifest_from_json(j, name, out, e);
    json_object_put(j);
    if (!ret && object && strcmp((*out)->object, object)) {
        ret = vb_seterr(e, -EBADMSG, "%s: damaged (it says it is snapshots/%s)", name,
                        (*out)->object);
        vb_manifest_free(*out);
        *out = NULL;
    }
    return ret;
}
