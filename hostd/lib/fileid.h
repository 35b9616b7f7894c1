/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A file's identity: what tells that an image file was replaced or written
 * by someone else between two looks at it (device, inode, size, mtime).
 * Used by the point-in-time view's checks (vbackupd/view.c) and by
 * changed-block tracking's records (cbt.c), written into their JSON.
 */
#ifndef VBACKUP_FILEID_H
#define VBACKUP_FILEID_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#include "util.h"

struct vb_file_id {
    uint64_t dev, ino, size;
    int64_t mtime_ns;
};

int vb_file_id_get(const char *path, struct vb_file_id *id, vb_error *e);
bool vb_file_id_same(const struct vb_file_id *a, const struct vb_file_id *b);
json_object *vb_file_id_to_json(const struct vb_file_id *id);
/* false unless o holds all four fields as integers */
bool vb_file_id_from_json(json_object *o, struct vb_file_id *id);

#endif
