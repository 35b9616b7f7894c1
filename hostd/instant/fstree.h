/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The tree of folders that the FUSE mount shows for one files snapshot,
 * built once from its catalog.  The catalog is the guest's: a name in the
 * tree is one path component of the catalog, never empty, ".", "..", longer
 * than NAME_MAX, or holding '/' or NUL, so no name can lead out of its
 * folder.  Entries that cannot be shown safely are left out and counted:
 * a path that is malformed, a second entry with the same path, an entry
 * below something that is not a folder (a symlink, a file) or below an
 * entry left out, a hard link to anything but a regular file, a root entry
 * that is not a folder.  Folders the catalog does not hold (the parents of
 * the backed-up roots, "srv" above "srv/www") are made up, read-only.
 */
#ifndef VBI_FSTREE_H
#define VBI_FSTREE_H

#include <stdint.h>

#include "catalog.h"
#include "util.h"

#define VBI_NODE_NONE UINT64_MAX

struct vbi_fsnode {
    uint64_t entry;          /* catalog index; VB_CAT_NONE: a made-up folder */
    uint64_t data;           /* the entry whose data and metadata are shown: a
                                hard link's first link, else entry */
    uint64_t ino_node;       /* the node whose number a hard link shares (its
                                first link's, or the first of its links shown);
                                else this node */
    uint64_t parent;         /* node index (the root is its own parent) */
    uint64_t first_child;    /* folders: children[first_child .. + n_children) */
    uint64_t n_children;
    const char *name;        /* into the catalog's strings; "" for the root */
    uint32_t name_len;
};

struct vbi_fstree {
    struct vbi_fsnode *nodes;   /* node 0 is the root */
    uint64_t n;
    uint64_t *children;         /* node indices, each folder's sorted by name */
    uint64_t left_out;          /* catalog entries not shown */
};

int vbi_fstree_build(const struct vb_catalog *cat, struct vbi_fstree **out, vb_error *e);
void vbi_fstree_free(struct vbi_fstree *t);
/* The child of folder node dir with this name, or VBI_NODE_NONE. */
uint64_t vbi_fstree_lookup(const struct vbi_fstree *t, uint64_t dir, const char *name,
                           size_t len);
/* Whether node is a folder (made up, or a folder entry). */
bool vbi_fstree_is_dir(const struct vbi_fstree *t, const struct vb_catalog *cat, uint64_t node);

#endif
