/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Disk chains as QEMU reports them, and file identities (see chain.h).
 *
 * query-block names each disk's layers in inserted.image, then
 * backing-image, and so on down.  A layer's "filename" is a path, or, when
 * the chain was given on the command line with -blockdev (libvirt), a
 * json: pseudo-filename such as
 *   json:{"backing": {...}, "driver": "qcow2",
 *         "file": {"driver": "file", "filename": "/images/a.qcow2"}}
 * whose innermost "file" is the one that holds the layer.
 */
#include "chain.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "escape.h"
#include "snapshot.h"       /* vb_json_str, vb_json_int */

char *vbd_image_path(const char *qemu_name)
{
    const char *name = qemu_name ? qemu_name : "";
    json_object *o = NULL;
    char *r;

    if (!strncmp(name, "json:", 5) && (o = json_tokener_parse(name + 5))) {
        json_object *node = o, *f;
        while (json_object_object_get_ex(node, "file", &f) &&
               json_object_is_type(f, json_type_object))
            node = f;
        if (vb_json_str(node, "filename"))
            name = vb_json_str(node, "filename");
    }
    r = realpath(name, NULL);
    if (r) {
        char *g = g_strdup(r);
        free(r);
        r = g;
    } else {
        r = g_strdup(name);       /* gone (an overlay after its commit): as QEMU named it */
    }
    json_object_put(o);
    return r;
}

static struct vbd_chain *chain_of(json_object *block)
{
    json_object *ins, *img;
    struct vbd_chain *c;
    const char *qdev = vb_json_str(block, "qdev"), *dev = vb_json_str(block, "device");

    if (!json_object_object_get_ex(block, "inserted", &ins) ||
        !json_object_object_get_ex(ins, "image", &img))
        return NULL;
    c = g_new0(struct vbd_chain, 1);
    c->key = g_strdup(qdev && *qdev ? qdev : dev ? dev : "");
    c->node = g_strdup(vb_json_str(ins, "node-name"));
    c->device = g_strdup(dev && *dev ? dev : c->node);
    c->files = g_ptr_array_new_with_free_func(g_free);
    c->size = (uint64_t)vb_json_int(img, "virtual-size", 0);
    c->format = g_strdup(vb_json_str(img, "format"));
    for (unsigned depth = 0; img && depth < 256; depth++) {
        json_object *next = NULL;
        g_ptr_array_add(c->files, vbd_image_path(vb_json_str(img, "filename")));
        json_object_object_get_ex(img, "backing-image", &next);
        img = next;
    }
    return c;
}

struct vbd_chain *vbd_chain_by_key(json_object *blocks, const char *key)
{
    for (size_t i = 0; key && i < json_object_array_length(blocks); i++) {
        struct vbd_chain *c = chain_of(json_object_array_get_idx(blocks, i));
        if (c && !strcmp(c->key, key))
            return c;
        vbd_chain_free(c);
    }
    return NULL;
}

struct vbd_chain *vbd_chain_with(json_object *blocks, const char *file)
{
    g_autofree char *want = vbd_image_path(file);

    for (size_t i = 0; i < json_object_array_length(blocks); i++) {
        struct vbd_chain *c = chain_of(json_object_array_get_idx(blocks, i));
        for (guint k = 0; c && k < c->files->len; k++)
            if (!strcmp(c->files->pdata[k], want))
                return c;
        vbd_chain_free(c);
    }
    return NULL;
}

void vbd_chain_free(struct vbd_chain *c)
{
    if (!c)
        return;
    g_free(c->key);
    g_free(c->device);
    g_free(c->node);
    g_free(c->format);
    g_ptr_array_free(c->files, TRUE);
    g_free(c);
}

struct vbd_chain *vbd_chain_copy(const struct vbd_chain *c)
{
    struct vbd_chain *n = g_new0(struct vbd_chain, 1);

    n->key = g_strdup(c->key);
    n->device = g_strdup(c->device);
    n->node = g_strdup(c->node);
    n->size = c->size;
    n->format = g_strdup(c->format);
    n->files = g_ptr_array_new_with_free_func(g_free);
    for (guint i = 0; i < c->files->len; i++)
        g_ptr_array_add(n->files, g_strdup(c->files->pdata[i]));
    return n;
}

bool vbd_chain_equal(const struct vbd_chain *a, const struct vbd_chain *b)
{
    if (!a || !b || a->files->len != b->files->len)
        return false;
    for (guint i = 0; i < a->files->len; i++)
        if (strcmp(a->files->pdata[i], b->files->pdata[i]))
            return false;
    return true;
}

bool vbd_chain_is_over(const struct vbd_chain *b, const char *top, const struct vbd_chain *a)
{
    g_autofree char *t = vbd_image_path(top);

    if (!a || !b || b->files->len != a->files->len + 1 || strcmp(b->files->pdata[0], t))
        return false;
    for (guint i = 0; i < a->files->len; i++)
        if (strcmp(a->files->pdata[i], b->files->pdata[i + 1]))
            return false;
    return true;
}

/* The names QEMU reported, for messages: QEMU's answers are the guest's
 * side of the trust boundary (a guest may have taken over its QEMU), so they
 * go into text escaped (escape.h). */
static void append_name(GString *s, const char *sep, const char *name)
{
    g_autofree char *shown = vb_escape(name, strlen(name));

    g_string_append_printf(s, "%s%s", sep, shown);
}

char *vbd_chain_str(const struct vbd_chain *c)
{
    GString *s = g_string_new(NULL);

    for (guint i = 0; c && i < c->files->len; i++)
        append_name(s, i ? " -> " : "", c->files->pdata[i]);
    if (!s->len)
        g_string_append(s, "no image");
    return g_string_free(s, FALSE);
}

char *vbd_chain_disks(json_object *blocks)
{
    GString *s = g_string_new(NULL);

    for (size_t i = 0; i < json_object_array_length(blocks); i++) {
        struct vbd_chain *c = chain_of(json_object_array_get_idx(blocks, i));
        if (c && c->files->len)
            append_name(s, s->len ? ", " : "", c->files->pdata[0]);
        vbd_chain_free(c);
    }
    if (!s->len)
        g_string_append(s, "none");
    return g_string_free(s, FALSE);
}

json_object *vbd_chain_to_json(const struct vbd_chain *c)
{
    json_object *o = json_object_new_object(), *a = json_object_new_array();

    json_object_object_add(o, "key", json_object_new_string(c->key));
    json_object_object_add(o, "device", c->device ? json_object_new_string(c->device) : NULL);
    json_object_object_add(o, "node", c->node ? json_object_new_string(c->node) : NULL);
    for (guint i = 0; i < c->files->len; i++)
        json_object_array_add(a, json_object_new_string(c->files->pdata[i]));
    json_object_object_add(o, "files", a);
    return o;
}

struct vbd_chain *vbd_chain_from_json(json_object *o)
{
    json_object *a;
    struct vbd_chain *c;

    if (!vb_json_str(o, "key") || !json_object_object_get_ex(o, "files", &a) ||
        !json_object_is_type(a, json_type_array) || !json_object_array_length(a))
        return NULL;
    c = g_new0(struct vbd_chain, 1);
    c->key = g_strdup(vb_json_str(o, "key"));
    c->device = g_strdup(vb_json_str(o, "device"));
    c->node = g_strdup(vb_json_str(o, "node"));
    c->files = g_ptr_array_new_with_free_func(g_free);
    for (size_t i = 0; i < json_object_array_length(a); i++) {
        const char *f = json_object_get_string(json_object_array_get_idx(a, i));
        g_ptr_array_add(c->files, g_strdup(f ? f : ""));
    }
    return c;
}

int vbd_file_id_get(const char *path, struct vbd_file_id *id, vb_error *e)
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

bool vbd_file_id_same(const struct vbd_file_id *a, const struct vbd_file_id *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime_ns == b->mtime_ns;
}

json_object *vbd_file_id_to_json(const struct vbd_file_id *id)
{
    json_object *o = json_object_new_object();

    json_object_object_add(o, "dev", json_object_new_int64((int64_t)id->dev));
    json_object_object_add(o, "ino", json_object_new_int64((int64_t)id->ino));
    json_object_object_add(o, "size", json_object_new_int64((int64_t)id->size));
    json_object_object_add(o, "mtime_ns", json_object_new_int64(id->mtime_ns));
    return o;
}

bool vbd_file_id_from_json(json_object *o, struct vbd_file_id *id)
{
    if (!o || !json_object_is_type(o, json_type_object) ||
        !json_object_object_get_ex(o, "mtime_ns", NULL))
        return false;
    id->dev = (uint64_t)vb_json_int(o, "dev", 0);
    id->ino = (uint64_t)vb_json_int(o, "ino", 0);
    id->size = (uint64_t)vb_json_int(o, "size", 0);
    id->mtime_ns = vb_json_int(o, "mtime_ns", 0);
    return true;
}
