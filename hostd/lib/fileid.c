/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A file's identity (fileid.h). */
#include "fileid.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "snapshot.h"       /* vb_json_int */

int vb_file_id_get(const char *path, struct vb_file_id *id, vb_error *e)
{
    struct stat st;

    if (stat(path, &st) < 0)
        return vb_seterr(e, -errno, "stat %s: %s", path, strerror(errno));
    id->dev = (uint64_t)st.st_dev;
    id->ino = (uint64_t)st.st_ino;
    id->size = (uint64_t)st.st_size;
    id->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    return 0;
}

bool vb_file_id_same(const struct vb_file_id *a, const struct vb_file_id *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime_ns == b->mtime_ns;
}

json_object *vb_file_id_to_json(const struct vb_file_id *id)
{
    json_object *o = json_object_new_object();

    json_object_object_add(o, "dev", json_object_new_int64((int64_t)id->dev));
    json_object_object_add(o, "ino", json_object_new_int64((int64_t)id->ino));
    json_object_object_add(o, "size", json_object_new_int64((int64_t)id->size));
    json_object_object_add(o, "mtime_ns", json_object_new_int64(id->mtime_ns));
    return o;
}

bool vb_file_id_from_json(json_object *o, struct vb_file_id *id)
{
    static const char *const keys[] = { "dev", "ino", "size", "mtime_ns" };
    json_object *v;

    if (!o || !json_object_is_type(o, json_type_object))
        return false;
    for (size_t i = 0; i < VB_ARRAY_SIZE(keys); i++)
        if (!json_object_object_get_ex(o, keys[i], &v) || !json_object_is_type(v, json_type_int))
            return false;
    id->dev = (uint64_t)vb_json_int(o, "dev", 0);
    id->ino = (uint64_t)vb_json_int(o, "ino", 0);
    id->size = (uint64_t)vb_json_int(o, "size", 0);
    id->mtime_ns = vb_json_int(o, "mtime_ns", 0);
    return true;
}
