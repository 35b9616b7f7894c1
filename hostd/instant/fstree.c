/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The folder tree of a files snapshot (fstree.h).  Catalog entries are
 * sorted by path, so a folder comes before what it holds; a folder's node is
 * found again through entry_node[] (catalog entries) or a table of the
 * made-up folders.  Children are collected as (parent, node) pairs and
 * sorted by name at the end.
 */
#include "fstree.h"

#include <glib.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "vbackup/proto.h"

struct build {
    const struct vb_catalog *cat;
    GArray *nodes;           /* struct vbi_fsnode */
    uint64_t *entry_node;    /* catalog index -> node, VBI_NODE_NONE if left out */
    GHashTable *made;        /* path of a made-up folder (g_strndup) -> node + 1 */
    GHashTable *links;       /* first link (catalog index) not shown -> node + 1 of the
                                first of its links that is */
};

static bool valid_path(const char *p, size_t n)
{
    size_t start = 0;

    if (!n || memchr(p, 0, n))
        return false;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && p[i] != '/')
            continue;
        size_t len = i - start;
        const char *c = p + start;
        if (len == 0 || len > NAME_MAX || (len == 1 && c[0] == '.') ||
            (len == 2 && c[0] == '.' && c[1] == '.'))
            return false;
        start = i + 1;
    }
    return true;
}

static uint64_t add_node(struct build *b, uint64_t entry, uint64_t parent, const char *name,
                         size_t len)
{
    struct vbi_fsnode n = { .entry = entry, .data = entry, .parent = parent, .name = name,
                            .name_len = (uint32_t)len, .ino_node = b->nodes->len };

    g_array_append_val(b->nodes, n);
    return b->nodes->len - 1;
}

static bool node_is_dir(struct build *b, uint64_t node)
{
    const struct vbi_fsnode *n = &g_array_index(b->nodes, struct vbi_fsnode, node);

    return n->entry == VB_CAT_NONE || b->cat->e[n->entry].type == VB_FT_DIR;
}

/*
 * The node of the folder at path (len bytes; "" is the root), making up the
 * folders that the catalog does not hold.  VBI_NODE_NONE when something in
 * the way is not a folder, or was left out.
 */
static uint64_t folder(struct build *b, const char *path, size_t len)
{
    uint64_t i, parent, node;
    const char *slash;
    gpointer v;
    char *key;

    if (!len)
        return 0;
    i = vb_cat_find(b->cat, path, len);
    if (i != VB_CAT_NONE) {
        node = b->entry_node[i];
        return node != VBI_NODE_NONE && node_is_dir(b, node) ? node : VBI_NODE_NONE;
    }
    key = g_strndup(path, len);
    if ((v = g_hash_table_lookup(b->made, key))) {
        g_free(key);
        return (uint64_t)(uintptr_t)v - 1;
    }
    slash = memrchr(path, '/', len);
    parent = folder(b, path, slash ? (size_t)(slash - path) : 0);
    if (parent == VBI_NODE_NONE) {
        g_free(key);
        return VBI_NODE_NONE;
    }
    node = add_node(b, VB_CAT_NONE, parent, slash ? slash + 1 : path,
                    slash ? len - (size_t)(slash + 1 - path) : len);
    g_hash_table_insert(b->made, key, (gpointer)(uintptr_t)(node + 1));
    return node;
}

static gint by_parent_name(gconstpointer pa, gconstpointer pb, gpointer opaque)
{
    const struct vbi_fsnode *nodes = opaque;
    const struct vbi_fsnode *a = &nodes[*(const uint64_t *)pa], *b = &nodes[*(const uint64_t *)pb];
    int r;

    if (a->parent != b->parent)
        return a->parent < b->parent ? -1 : 1;
    r = memcmp(a->name, b->name, VB_MIN(a->name_len, b->name_len));
    return r ? r : a->name_len < b->name_len ? -1 : a->name_len > b->name_len;
}

int vbi_fstree_build(const struct vb_catalog *cat, struct vbi_fstree **out, vb_error *e)
{
    struct build b = { .cat = cat };
    struct vbi_fstree *t;
    uint64_t left_out = 0, *order, m;

    if (cat->n >= ((uint64_t)1 << 38))
        return vb_seterr(e, -EFBIG, "a catalog of %llu entries is too large to mount",
                         (unsigned long long)cat->n);
    b.nodes = g_array_sized_new(FALSE, FALSE, sizeof(struct vbi_fsnode), (guint)cat->n + 1);
    b.entry_node = g_new(uint64_t, VB_MAX(cat->n, 1u));
    b.made = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    b.links = g_hash_table_new(g_direct_hash, g_direct_equal);
    add_node(&b, VB_CAT_NONE, 0, "", 0);          /* the root */

    for (uint64_t i = 0; i < cat->n; i++) {
        const struct vb_cat_entry *x = &cat->e[i];
        size_t len;
        const char *p = vb_cat_path(cat, i, &len);
        const char *slash;
        uint64_t parent, node;

        b.entry_node[i] = VBI_NODE_NONE;
        if (x->type < VB_FT_REG || x->type > VB_FT_SOCK) {
            left_out++;
            continue;
        }
        if (len == 0) {                           /* the root: a snapshot of "/" */
            struct vbi_fsnode *root = &g_array_index(b.nodes, struct vbi_fsnode, 0);
            if (x->type == VB_FT_DIR && root->entry == VB_CAT_NONE) {
                root->entry = root->data = i;
                b.entry_node[i] = 0;
            } else {
                left_out++;
            }
            continue;
        }
        /* malformed, or a second entry of the same path (vb_cat_find finds the first) */
        if (!valid_path(p, len) || vb_cat_find(cat, p, len) != i) {
            left_out++;
            continue;
        }
        if (x->hardlink != VB_CAT_NONE && (cat->e[x->hardlink].type != VB_FT_REG ||
                                           x->type != VB_FT_REG)) {
            left_out++;
            continue;
        }
        slash = memrchr(p, '/', len);
        parent = folder(&b, p, slash ? (size_t)(slash - p) : 0);
        if (parent == VBI_NODE_NONE) {
            left_out++;
            continue;
        }
        node = add_node(&b, i, parent, slash ? slash + 1 : p,
                        slash ? len - (size_t)(slash + 1 - p) : len);
        if (x->hardlink != VB_CAT_NONE) {
            struct vbi_fsnode *nd = &g_array_index(b.nodes, struct vbi_fsnode, node);
            gpointer key = (gpointer)(uintptr_t)(x->hardlink + 1), v;
            nd->data = x->hardlink;
            if (b.entry_node[x->hardlink] != VBI_NODE_NONE)
                nd->ino_node = b.entry_node[x->hardlink];
            else if ((v = g_hash_table_lookup(b.links, key)))
                nd->ino_node = (uint64_t)(uintptr_t)v - 1;
            else
                g_hash_table_insert(b.links, key, (gpointer)(uintptr_t)(node + 1));
        }
        b.entry_node[i] = node;
    }

    t = g_new0(struct vbi_fstree, 1);
    t->n = b.nodes->len;
    t->nodes = (struct vbi_fsnode *)g_array_free(b.nodes, FALSE);
    t->left_out = left_out;
    /* children: every node but the root, grouped by parent, sorted by name */
    order = g_new(uint64_t, VB_MAX(t->n, 2u));
    for (m = 1; m < t->n; m++)
        order[m - 1] = m;
    g_qsort_with_data(order, (gint)(t->n - 1), sizeof(uint64_t), by_parent_name, t->nodes);
    t->children = order;
    for (m = t->n - 1; m-- > 0;) {
        struct vbi_fsnode *p = &t->nodes[t->nodes[order[m]].parent];
        p->first_child = m;
        p->n_children++;
    }
    g_free(b.entry_node);
    g_hash_table_destroy(b.made);
    g_hash_table_destroy(b.links);
    *out = t;
    return 0;
}

void vbi_fstree_free(struct vbi_fstree *t)
{
    if (!t)
        return;
    g_free(t->nodes);
    g_free(t->children);
    g_free(t);
}

uint64_t vbi_fstree_lookup(const struct vbi_fstree *t, uint64_t dir, const char *name,
                           size_t len)
{
    const struct vbi_fsnode *d = &t->nodes[dir];
    uint64_t lo = 0, hi = d->n_children;

    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        const struct vbi_fsnode *c = &t->nodes[t->children[d->first_child + mid]];
        int r = memcmp(c->name, name, VB_MIN((size_t)c->name_len, len));
        if (!r)
            r = c->name_len < len ? -1 : c->name_len > len;
        if (!r)
            return t->children[d->first_child + mid];
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return VBI_NODE_NONE;
}

bool vbi_fstree_is_dir(const struct vbi_fstree *t, const struct vb_catalog *cat, uint64_t node)
{
    uint64_t e = t->nodes[node].entry;

    return e == VB_CAT_NONE || cat->e[e].type == VB_FT_DIR;
}
