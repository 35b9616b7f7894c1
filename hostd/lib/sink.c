/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The write-session door (sink.h): a reference count over a format's ops. */
#include "sink.h"

#include <glib.h>

struct vb_sink {
    const struct vb_sink_ops *ops;
    void *h;
    gint refs;
};

struct vb_sink *vb_sink_new(const struct vb_sink_ops *ops, void *h)
{
    struct vb_sink *s = g_new0(struct vb_sink, 1);

    s->ops = ops;
    s->h = h;
    s->refs = 1;
    return s;
}

struct vb_sink *vb_sink_ref(struct vb_sink *s)
{
    g_atomic_int_inc(&s->refs);
    return s;
}

void vb_sink_unref(struct vb_sink *s)
{
    if (!s || !g_atomic_int_dec_and_test(&s->refs))
        return;
    s->ops->free(s->h);
    g_free(s);
}

void vb_files_parent_free(struct vb_files_parent *p)
{
    if (!p)
        return;
    g_free(p->id);
    vb_cat_free(p->cat);
    g_free(p);
}

int vb_sink_put(struct vb_sink *s, struct vb_codec *c, const void *data, size_t len,
                uint8_t id[VB_ID_LEN], uint32_t *stored, vb_error *e)
{
    return s->ops->put(s->h, c, data, len, id, stored, e);
}

bool vb_sink_has(struct vb_sink *s, const uint8_t id[VB_ID_LEN])
{
    return s->ops->has(s->h, id);
}

void vb_sink_inherit(struct vb_sink *s, const uint8_t id[VB_ID_LEN])
{
    s->ops->inherit(s->h, id);
}

int vb_sink_files_parent(struct vb_sink *s, const char *group, bool full_only,
                         struct vb_files_parent **out, vb_error *e)
{
    *out = NULL;
    return s->ops->files_parent(s->h, group, full_only, out, e);
}

int vb_sink_files_commit(struct vb_sink *s, const struct vb_files_commit *fc, char **id,
                         vb_error *e)
{
    return s->ops->files_commit(s->h, fc, id, e);
}

void vb_sink_disk(struct vb_sink *s, struct vb_disk_sink *out)
{
    s->ops->disk(s->h, out);
}

const char *vb_sink_token(struct vb_sink *s)
{
    return s->ops->token(s->h);
}

const char *vb_sink_warning(struct vb_sink *s)
{
    return s->ops->warning(s->h);
}

uint64_t vb_sink_added(struct vb_sink *s)
{
    return s->ops->added(s->h);
}

void vb_sink_set_charge(struct vb_sink *s, vb_sink_charge_fn fn, void *opaque,
                        void (*release)(void *opaque))
{
    s->ops->set_charge(s->h, fn, opaque, release);
}

void vb_sink_abort(struct vb_sink *s)
{
    s->ops->abort(s->h);
}
