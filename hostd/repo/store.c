/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The storage interface: location dispatch and the checks every backend
 * relies on (store.h, store-backend.h). */
#include "store-backend.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "names.h"

struct vb_store {
    const struct vb_store_ops *ops;
    void *h;
    unsigned flags;          /* VB_STORE_READONLY */
};

/* A name as it may appear in a message: printable ASCII, the rest as \xNN,
 * cut at 160 bytes (a listing may report anything a store holds). */
static const char *printable(const char *s, char *buf, size_t cap)
{
    size_t o = 0;

    for (; *s && o + 5 < cap && o < 160; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x20 && c < 0x7f && c != '\\')
            buf[o++] = (char)c;
        else
            o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", c);
    }
    if (*s && o + 4 < cap) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o] = 0;
    return buf;
}

static int check_name(const char *op, const char *name, vb_error *e)
{
    char p[200];

    if (!name || !vb_obj_name_valid(name))
        return vb_seterr(e, -EINVAL, "%s: invalid object name '%s'", op,
                         name ? printable(name, p, sizeof(p)) : "(null)");
    return 0;
}

/* "" or a valid name, or a valid name followed by one '/' */
static bool prefix_valid(const char *prefix)
{
    char buf[VB_OBJ_NAME_MAX];
    size_t n = strlen(prefix);

    if (n == 0)
        return true;
    if (n >= sizeof(buf))
        return false;
    memcpy(buf, prefix, n + 1);
    if (buf[n - 1] == '/')
        buf[n - 1] = 0;
    return vb_obj_name_valid(buf);
}

static int check_writable(struct vb_store *s, const char *op, const char *name, vb_error *e)
{
    if (s->flags & VB_STORE_READONLY)
        return vb_seterr(e, -EROFS, "%s %s: repository opened read-only", op, name);
    return 0;
}

struct vb_store *vb_store_new(const struct vb_store_ops *ops, void *h, unsigned flags)
{
    struct vb_store *s = calloc(1, sizeof(*s));

    if (!s)
        return NULL;
    s->ops = ops;
    s->h = h;
    s->flags = flags & VB_STORE_READONLY;
    return s;
}

/* "s3://..." → "s3"; a path (no "scheme://") → "" */
static void location_scheme(const char *loc, char *scheme, size_t cap)
{
    size_t n = 0;

    scheme[0] = 0;
    if (!isalpha((unsigned char)loc[0]))
        return;
    while (isalnum((unsigned char)loc[n]) || loc[n] == '+' || loc[n] == '.' || loc[n] == '-')
        n++;
    if (strncmp(loc + n, "://", 3) || n >= cap)
        return;
    memcpy(scheme, loc, n);
    scheme[n] = 0;
}

int vb_store_open(const char *location, unsigned flags, struct vb_store **out, vb_error *e)
{
    return vb_store_open_opts(location, flags, NULL, out, e);
}

void *vb_store_handle(struct vb_store *s)
{
    return s->h;
}

int vb_store_open_opts(const char *location, unsigned flags, const char *const *opts,
                       struct vb_store **out, vb_error *e)
{
    const struct vb_store_ops *ops;
    char scheme[32], p[200];
    void *h;
    int ret;

    *out = NULL;
    if (!location || !location[0])
        return vb_seterr(e, -EINVAL, "open repository: no location given");
    if (flags & ~(VB_STORE_CREATE | VB_STORE_READONLY))
        return vb_seterr(e, -EINVAL, "open repository %s: unknown flags %#x", location, flags);
    if ((flags & VB_STORE_CREATE) && (flags & VB_STORE_READONLY))
        return vb_seterr(e, -EINVAL, "open repository %s: cannot create read-only", location);
    location_scheme(location, scheme, sizeof(scheme));
    if (!strcmp(scheme, "s3")) {
        ret = vb_store_s3_open(location, flags, opts, &ops, &h, e);
    } else if (scheme[0]) {
        return vb_seterr(e, -EINVAL,
                         "open repository %s: unknown kind of storage '%s://' "
                         "(a local path or s3://BUCKET/PREFIX)",
                         printable(location, p, sizeof(p)), scheme);
    } else {
        if (opts && opts[0])
            return vb_seterr(e, -EINVAL, "open repository %s: a local folder takes no "
                             "options ('%.40s')", location, opts[0]);
        ret = vb_store_local_open(location, flags, &ops, &h, e);
    }
    if (ret)
        return ret;
    *out = vb_store_new(ops, h, flags);
    if (!*out) {
        ops->close(h);
        return vb_seterr(e, -ENOMEM, "open repository %s: out of memory", location);
    }
    return 0;
}

void vb_store_close(struct vb_store *s)
{
    if (!s)
        return;
    s->ops->close(s->h);
    free(s);
}

const char *vb_store_kind(const struct vb_store *s)
{
    return s->ops->name;
}

unsigned vb_store_caps(const struct vb_store *s)
{
    return s->ops->caps;
}

static int put_check(struct vb_store *s, const char *name, unsigned flags, vb_error *e)
{
    int ret = check_name("put", name, e);

    if (ret)
        return ret;
    if (flags & ~(VB_PUT_NOREPLACE | VB_PUT_SYNC | VB_PUT_TRANSIENT))
        return vb_seterr(e, -EINVAL, "put %s: unknown flags %#x", name, flags);
    if ((flags & VB_PUT_NOREPLACE) && !(s->ops->caps & VB_STORE_NOREPLACE))
        return vb_seterr(e, -ENOTSUP, "put %s: this %s store cannot refuse to replace an object",
                         name, s->ops->name);
    return check_writable(s, "put", name, e);
}

int vb_store_put(struct vb_store *s, const char *name, const void *buf, size_t len,
                 unsigned flags, vb_error *e)
{
    int ret = put_check(s, name, flags, e);

    return ret ? ret : s->ops->put(s->h, name, buf, len, flags, e);
}

static int get_check(const char *name, uint64_t off, size_t len, GByteArray *out, vb_error *e)
{
    int ret = check_name("get", name, e);

    g_byte_array_set_size(out, 0);
    if (ret)
        return ret;
    if (off > UINT64_MAX - len || len > G_MAXUINT)
        return vb_seterr(e, -EINVAL, "get %s: range of %zu bytes at %llu is too large", name,
                         len, (unsigned long long)off);
    return 0;
}

int vb_store_get(struct vb_store *s, const char *name, uint64_t off, size_t len,
                 GByteArray *out, vb_error *e)
{
    int ret = get_check(name, off, len, out, e);

    if (ret)
        return ret;
    ret = s->ops->get(s->h, name, off, len, out, e);
    if (!ret && out->len != len)
        ret = vb_seterr(e, -EIO, "get %s: %u bytes read instead of %zu", name, out->len, len);
    if (ret)
        g_byte_array_set_size(out, 0);
    return ret;
}

int vb_store_stat(struct vb_store *s, const char *name, struct vb_obj_info *info, vb_error *e)
{
    int ret = check_name("stat", name, e);

    return ret ? ret : s->ops->stat(s->h, name, info, e);
}

struct list_check {
    const char *prefix;
    vb_list_fn fn;
    void *opaque;
};

static int list_checked(void *opaque, const char *name, const struct vb_obj_info *info,
                        vb_error *e)
{
    struct list_check *lc = opaque;
    char p[200];

    if (!vb_obj_name_valid(name) || strncmp(name, lc->prefix, strlen(lc->prefix)))
        return vb_seterr(e, -EBADMSG, "list %s: the store holds '%s', which is not an object name",
                         lc->prefix, printable(name, p, sizeof(p)));
    return lc->fn(lc->opaque, name, info, e);
}

int vb_store_list(struct vb_store *s, const char *prefix, vb_list_fn fn, void *opaque,
                  vb_error *e)
{
    struct list_check lc = { prefix, fn, opaque };
    char p[200];

    if (!prefix || !prefix_valid(prefix))
        return vb_seterr(e, -EINVAL, "list: invalid prefix '%s'",
                         prefix ? printable(prefix, p, sizeof(p)) : "(null)");
    return s->ops->list(s->h, prefix, list_checked, &lc, e);
}

int vb_store_remove(struct vb_store *s, const char *name, vb_error *e)
{
    int ret = check_name("remove", name, e);

    if (!ret)
        ret = check_writable(s, "remove", name, e);
    return ret ? ret : s->ops->remove(s->h, name, e);
}

int vb_store_check_remove(struct vb_store *s, vb_error *e)
{
    int ret = check_writable(s, "remove", "objects", e);

    if (ret || !s->ops->check_remove)
        return ret;
    return s->ops->check_remove(s->h, e);
}

int vb_store_sync(struct vb_store *s, vb_error *e)
{
    if (s->flags & VB_STORE_READONLY)
        return 0;       /* nothing was written through this store */
    return s->ops->sync(s->h, e);
}

int vb_store_clean_temp(struct vb_store *s, int64_t cutoff_ns, unsigned *removed, vb_error *e)
{
    unsigned dummy;
    int ret;

    if (!removed)
        removed = &dummy;
    *removed = 0;
    if (!s->ops->clean_temp)
        return 0;
    ret = check_writable(s, "clean", "temporary files", e);
    return ret ? ret : s->ops->clean_temp(s->h, cutoff_ns, removed, e);
}

/* ---- queues of requests in flight ------------------------------------------------- */

struct vb_store_queue {
    struct vb_store *s;
    unsigned depth;
    unsigned pending;        /* submitted, not reaped (the owner's) */
    GMutex lock;
    GCond cond;
    GQueue finished;         /* struct qreq, finished and not reaped */
};

struct qreq {
    struct vb_store_queue *q;
    void *tag;
    GByteArray *out;         /* get */
    size_t len;
    int ret;
    vb_error err;
};

int vb_store_queue_new(struct vb_store *s, unsigned depth, struct vb_store_queue **out,
                       vb_error *e)
{
    struct vb_store_queue *q;

    *out = NULL;
    if (depth == 0 || depth > 4096)
        return vb_seterr(e, -EINVAL, "store queue: depth %u is not from 1 to 4096", depth);
    q = calloc(1, sizeof(*q));
    if (!q)
        return vb_seterr(e, -ENOMEM, "store queue: out of memory");
    q->s = s;
    q->depth = depth;
    g_mutex_init(&q->lock);
    g_cond_init(&q->cond);
    g_queue_init(&q->finished);
    *out = q;
    return 0;
}

static void qreq_done(void *opaque, int ret, const vb_error *e)
{
    struct qreq *r = opaque;
    struct vb_store_queue *q = r->q;

    r->ret = ret;
    if (ret && e && e->code)
        r->err = *e;
    else if (ret)
        vb_seterr(&r->err, ret, "%s", strerror(-ret));
    g_mutex_lock(&q->lock);
    g_queue_push_tail(&q->finished, r);
    g_cond_signal(&q->cond);
    g_mutex_unlock(&q->lock);
}

static struct qreq *qreq_new(struct vb_store_queue *q, void *tag, GByteArray *out, size_t len)
{
    struct qreq *r = calloc(1, sizeof(*r));

    if (r) {
        r->q = q;
        r->tag = tag;
        r->out = out;
        r->len = len;
        q->pending++;
    }
    return r;
}

int vb_store_queue_put(struct vb_store_queue *q, const char *name, const void *buf, size_t len,
                       unsigned flags, void *tag, vb_error *e)
{
    struct vb_store *s = q->s;
    struct qreq *r;
    vb_error err = { 0 };
    int ret;

    if (q->pending >= q->depth)
        return vb_seterr(e, -EBUSY, "put %s: %u requests in flight: reap one first", name,
                         q->pending);
    ret = put_check(s, name, flags, e);
    if (ret)
        return ret;
    r = qreq_new(q, tag, NULL, len);
    if (!r)
        return vb_seterr(e, -ENOMEM, "put %s: out of memory", name);
    if (s->ops->put_async) {
        s->ops->put_async(s->h, name, buf, len, flags, qreq_done, r);
    } else {
        ret = s->ops->put(s->h, name, buf, len, flags, &err);
        qreq_done(r, ret, &err);
    }
    return 0;
}

int vb_store_queue_get(struct vb_store_queue *q, const char *name, uint64_t off, size_t len,
                       GByteArray *out, void *tag, vb_error *e)
{
    struct vb_store *s = q->s;
    struct qreq *r;
    vb_error err = { 0 };
    int ret;

    if (q->pending >= q->depth) {
        g_byte_array_set_size(out, 0);
        return vb_seterr(e, -EBUSY, "get %s: %u requests in flight: reap one first", name,
                         q->pending);
    }
    ret = get_check(name, off, len, out, e);
    if (ret)
        return ret;
    r = qreq_new(q, tag, out, len);
    if (!r)
        return vb_seterr(e, -ENOMEM, "get %s: out of memory", name);
    if (s->ops->get_async) {
        g_byte_array_set_size(out, (guint)len);
        s->ops->get_async(s->h, name, off, len, out, qreq_done, r);
    } else {
        ret = s->ops->get(s->h, name, off, len, out, &err);
        if (!ret && out->len != len)
            ret = vb_seterr(&err, -EIO, "get %s: %u bytes read instead of %zu", name, out->len,
                            len);
        qreq_done(r, ret, &err);
    }
    return 0;
}

int vb_store_queue_reap(struct vb_store_queue *q, bool wait, struct vb_store_done *d)
{
    struct qreq *r;

    if (!q->pending)
        return 0;
    g_mutex_lock(&q->lock);
    while (!(r = g_queue_pop_head(&q->finished)) && wait)
        g_cond_wait(&q->cond, &q->lock);
    g_mutex_unlock(&q->lock);
    if (!r)
        return 0;
    q->pending--;
    if (r->ret && r->out)
        g_byte_array_set_size(r->out, 0);
    if (!r->ret && r->out && r->out->len != r->len)
        r->ret = vb_seterr(&r->err, -EIO, "get: %u bytes read instead of %zu", r->out->len,
                           r->len);
    d->tag = r->tag;
    d->ret = r->ret;
    d->err = r->err;
    free(r);
    return 1;
}

unsigned vb_store_queue_pending(const struct vb_store_queue *q)
{
    return q->pending;
}

void vb_store_queue_free(struct vb_store_queue *q)
{
    struct vb_store_done d;

    if (!q)
        return;
    while (vb_store_queue_reap(q, true, &d) == 1)
        ;
    g_mutex_clear(&q->lock);
    g_cond_clear(&q->cond);
    free(q);
}
