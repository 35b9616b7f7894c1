/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The write-session door (sink.h) over a version 1 write session
 * (session.h): a files snapshot is a folder with files.cat and index.json,
 * a disk snapshot goes through the version 1 disk sink (disksink1.c).
 */
#include "sink.h"

#include <errno.h>
#include <string.h>

#include "escape.h"
#include "vbackup/protolib.h"
#include "filesnap.h"
#include "session.h"
#include "snapshot.h"

static int s1_put(void *h, struct vb_codec *c, const void *data, size_t len, uint8_t id[32],
                  uint32_t *stored, vb_error *e)
{
    return vb_write_put(h, c, data, len, id, stored, e);
}

static bool s1_has(void *h, const uint8_t id[32])
{
    return vb_write_has(h, id);
}

static void s1_inherit(void *h, const uint8_t id[32])
{
    vb_write_inherit(h, id);
}

/* The newest files snapshot of the group, in the session's id space (a
 * snapshot of another dedup group names its chunks in another space:
 * nothing of it can be reused). */
static int s1_files_parent(void *h, const char *group, bool full_only,
                           struct vb_files_parent **out, vb_error *e)
{
    struct vb_write *ws = h;
    GPtrArray *snaps;
    int ret = 0;

    if ((ret = vb_snap_list(vb_write_repo(ws), vb_write_vm(ws), &snaps, e)))
        return ret;
    for (guint i = snaps->len; i-- > 0;) {
        struct vb_snapshot *s = snaps->pdata[i];
        const char *mode = vb_json_str(s->json, "mode");
        struct vb_catalog *cat;

        if (s->type != VB_SNAP_FILES || strcmp(s->group, group) || !vb_write_same_space(ws, s))
            continue;
        if (full_only && (!mode || strcmp(mode, "full")))
            continue;
        if ((ret = vb_files_catalog(vb_write_repo(ws), s, &cat, e))) {
            vb_prefixerr(e, "parent %s", s->id);
            break;
        }
        *out = g_new0(struct vb_files_parent, 1);
        (*out)->id = g_strdup(s->id);
        (*out)->cat = cat;
        (*out)->known = vb_write_inherits(ws, s);
        break;
    }
    g_ptr_array_free(snaps, TRUE);
    return ret;
}

/* Text for JSON: a path that is not UTF-8 as ls -b shows it. */
static json_object *text(const char *s)
{
    g_autofree char *esc = vb_utf8_valid(s, strlen(s)) ? NULL : vb_escape(s, strlen(s));

    return json_object_new_string(esc ? esc : s);
}

static int s1_files_commit(void *h, const struct vb_files_commit *fc, char **id, vb_error *e)
{
    struct vb_write *ws = h;
    json_object *idx, *a, *cat;
    uint8_t sum[32];
    char hex[65];
    int ret;

    if ((ret = vb_write_file(ws, "files.cat", fc->catalog, fc->catalog_len, sum, e))) {
        vb_write_abort(ws);
        return ret;
    }
    vb_hex(sum, 32, hex);
    idx = json_object_new_object();
    json_object_object_add(idx, "type", json_object_new_string("files"));
    json_object_object_add(idx, "group", json_object_new_string(fc->group));
    json_object_object_add(idx, "mode", json_object_new_string(fc->mode));
    if (fc->mode_note)
        json_object_object_add(idx, "mode_note", json_object_new_string(fc->mode_note));
    json_object_object_add(idx, "parent", fc->parent ? json_object_new_string(fc->parent) : NULL);
    a = json_object_new_array();
    for (size_t i = 0; i < fc->nroots; i++)
        json_object_array_add(a, text(fc->roots[i]));
    json_object_object_add(idx, "roots", a);
    json_object_object_add(idx, "disks", json_object_get(fc->disks));
    json_object_object_add(idx, "files", json_object_new_int64((int64_t)fc->entries));
    json_object_object_add(idx, "bytes", json_object_new_int64((int64_t)fc->bytes));
    cat = json_object_new_object();
    json_object_object_add(cat, "file", json_object_new_string("files.cat"));
    json_object_object_add(cat, "sha256", json_object_new_string(hex));
    json_object_object_add(cat, "entries", json_object_new_int64((int64_t)fc->entries));
    json_object_object_add(cat, "chunks", json_object_new_int64((int64_t)fc->chunks));
    json_object_object_add(idx, "catalog", cat);
    json_object_object_add(idx, "stats", json_object_get(fc->stats));
    json_object_object_add(idx, "plan", json_object_get(fc->plan));
    if (fc->incomplete)
        json_object_object_add(idx, "incomplete", json_object_get(fc->incomplete));
    ret = vb_write_commit(ws, idx, fc->created_ns, id, e);
    json_object_put(idx);
    return ret;
}

static void s1_disk(void *h, struct vb_disk_sink *out)
{
    vb_disk_sink_v1(h, out);
}

static const char *s1_token(void *h)
{
    return vb_write_token(h);
}

static const char *s1_warning(void *h)
{
    return vb_write_warning(h);
}

static uint64_t s1_added(void *h)
{
    return vb_write_added(h);
}

static void s1_set_charge(void *h, vb_sink_charge_fn fn, void *opaque, void (*release)(void *))
{
    vb_write_set_charge(h, fn, opaque, release);
}

static void s1_abort(void *h)
{
    vb_write_abort(h);
}

static void s1_free(void *h)
{
    vb_write_unref(h);
}

static const struct vb_sink_ops sink_v1 = {
    .put = s1_put,
    .has = s1_has,
    .inherit = s1_inherit,
    .files_parent = s1_files_parent,
    .files_commit = s1_files_commit,
    .disk = s1_disk,
    .token = s1_token,
    .warning = s1_warning,
    .added = s1_added,
    .set_charge = s1_set_charge,
    .abort = s1_abort,
    .free = s1_free,
};

struct vb_sink *vb_sink_v1(struct vb_write *ws)
{
    return vb_sink_new(&sink_v1, ws);
}
