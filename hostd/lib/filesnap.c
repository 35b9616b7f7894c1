/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A files snapshot: its catalog, and a selection of its entries (filesnap.h). */
#include "filesnap.h"

#include <stdio.h>
#include <string.h>

int vb_files_catalog(struct vb_repo *r, const struct vb_snapshot *s, struct vb_catalog **cat,
                     vb_error *e)
{
    json_object *co = json_object_object_get(s->json, "catalog");
    const char *file = vb_json_str(co, "file");
    char path[PATH_MAX];
    int ret;

    if (s->type != VB_SNAP_FILES)
        return vb_seterr(e, -EINVAL, "snapshot %s is a disk snapshot (restore-disk restores it)",
                         s->id);
    if (!file || strchr(file, '/'))
        return vb_seterr(e, -EBADMSG, "snapshot %s names no catalog", s->id);
    snprintf(path, sizeof(path), "%s/snapshots/%s/%s", r->path, s->id, file);
    ret = vb_cat_load(path, vb_json_str(co, "sha256"), cat, e);
    if (ret)
        vb_prefixerr(e, "snapshot %s", s->id);
    return ret;
}

int vb_files_open(struct vb_repo *r, const char *id, struct vb_snapshot **snap,
                  struct vb_catalog **cat, vb_error *e)
{
    int ret = vb_snap_load(r, id, snap, e);

    if (ret)
        return ret;
    ret = vb_files_catalog(r, *snap, cat, e);
    if (ret) {
        vb_snap_free(*snap);
        *snap = NULL;
    }
    return ret;
}

static gint cmp_u64(gconstpointer a, gconstpointer b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

int vb_files_select(const struct vb_catalog *cat, char **paths, int n, GArray **out, vb_error *e)
{
    GArray *sel = g_array_new(FALSE, FALSE, sizeof(uint64_t));

    for (int i = 0; i < (n ? n : 1); i++) {
        const char *p = n ? paths[i] : "";
        uint64_t self, first, end;
        while (*p == '/')
            p++;            /* "/srv" and "srv" name the same entry */
        size_t len = strlen(p);
        while (len && p[len - 1] == '/')
            len--;
        vb_cat_subtree(cat, p, len, &self, &first, &end);
        if (len && self == VB_CAT_NONE && first == end) {
            g_array_free(sel, TRUE);
            return vb_seterr(e, -ENOENT, "'%s' is not in the snapshot", paths[i]);
        }
        if (self != VB_CAT_NONE)
            g_array_append_val(sel, self);
        for (uint64_t x = first; x < end; x++)
            g_array_append_val(sel, x);
    }
    g_array_sort(sel, cmp_u64);
    {
        guint w = 0;
        for (guint i = 0; i < sel->len; i++)
            if (!w || g_array_index(sel, uint64_t, w - 1) != g_array_index(sel, uint64_t, i))
                g_array_index(sel, uint64_t, w++) = g_array_index(sel, uint64_t, i);
        g_array_set_size(sel, w);
    }
    *out = sel;
    return 0;
}
