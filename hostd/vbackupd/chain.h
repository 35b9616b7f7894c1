/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The backing chain a VM's disk runs on, as QEMU tells it (query-block),
 * and a cheap identity of image files: what the point-in-time view checks
 * before and after it touches a disk (view.c).  No I/O but stat().
 */
#ifndef VBD_CHAIN_H
#define VBD_CHAIN_H

#include <glib.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#include "util.h"

struct vbd_chain {
    char *key;               /* the disk: its qdev path, else its device name */
    char *device;            /* block-commit's "device": BlockInfo.device, else the active node */
    char *node;              /* the active layer's node name (may be NULL) */
    GPtrArray *files;        /* char *: real paths, the active layer first */
    uint64_t size;           /* the active layer's virtual size (0: not given) */
    char *format;            /* its format driver ("qcow2", "raw"; may be NULL) */
};

/* The disk of query-block's answer (its "return" array) whose qdev path or
 * device name is key, or NULL. */
struct vbd_chain *vbd_chain_by_key(json_object *blocks, const char *key);
/* The disk whose chain holds file (at any depth), or NULL. */
struct vbd_chain *vbd_chain_with(json_object *blocks, const char *file);
void vbd_chain_free(struct vbd_chain *c);
struct vbd_chain *vbd_chain_copy(const struct vbd_chain *c);
/* Same files in the same order. */
bool vbd_chain_equal(const struct vbd_chain *a, const struct vbd_chain *b);
/* b is a with one more layer on top: top, then a's files. */
bool vbd_chain_is_over(const struct vbd_chain *b, const char *top, const struct vbd_chain *a);
/* "a.qcow2 -> base.raw" (full paths); g_free() it. */
char *vbd_chain_str(const struct vbd_chain *c);
/* "x.qcow2, y.raw": the active file of every disk, for messages; g_free() it. */
char *vbd_chain_disks(json_object *blocks);
json_object *vbd_chain_to_json(const struct vbd_chain *c);
struct vbd_chain *vbd_chain_from_json(json_object *o);

/* The file an image name of QEMU's means: a path, or the innermost
 * "filename" of a json: pseudo-filename (libvirt's -blockdev chains);
 * resolved with realpath() when it exists.  g_free() it. */
char *vbd_image_path(const char *qemu_name);

/* What tells that a file was written: device, inode, size, mtime. */
struct vbd_file_id {
    uint64_t dev, ino, size;
    int64_t mtime_ns;
};

int vbd_file_id_get(const char *path, struct vbd_file_id *id, vb_error *e);
bool vbd_file_id_same(const struct vbd_file_id *a, const struct vbd_file_id *b);
json_object *vbd_file_id_to_json(const struct vbd_file_id *id);
bool vbd_file_id_from_json(json_object *o, struct vbd_file_id *id);

#endif
