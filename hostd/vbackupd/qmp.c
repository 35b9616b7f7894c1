/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The point-in-time view through QEMU's monitor (QMP), for VMs whose config
 * names a QMP socket (view.c decides and checks; this file only talks):
 *
 *   snapshot  one transaction of blockdev-snapshot-sync actions, each on the
 *             disk's active node, naming the overlay's node (vb-JOB-I)
 *   commit    block-commit device=D top-node=OVERLAY base-node=IMAGE, where
 *             IMAGE is the node that was active before the snapshot, found by
 *             its name and checked by its file (query-named-block-nodes);
 *             BLOCK_JOB_READY, block-job-complete, BLOCK_JOB_COMPLETED.
 *             Never a commit without top and base: QEMU's default base is
 *             the bottom of the chain, an image clones share.
 *   tracking  (docs/cbt.md) the overlay vbackupd made is taken with
 *             mode=existing; the previous tracking overlay is folded into
 *             the image under it: block-commit device=D top-node=TRACKING
 *             base-node=IMAGE, BLOCK_JOB_COMPLETED.
 *
 * The monitor is spoken with blocking I/O on the view's threads.
 */
#include "view.h"

#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

struct qmp {
    int fd;
    GString *in;
    GPtrArray *events;       /* json_object * not yet consumed */
};

static void put_json(gpointer p)
{
    json_object_put(p);
}

static void qmp_close(struct qmp *q)
{
    if (!q)
        return;
    if (q->fd >= 0)
        close(q->fd);
    g_string_free(q->in, TRUE);
    g_ptr_array_free(q->events, TRUE);
    g_free(q);
}

/* next JSON line, waiting at most timeout_ms */
static json_object *qmp_read(struct qmp *q, int timeout_ms, vb_error *e)
{
    double end = vb_now() + timeout_ms / 1000.0;

    for (;;) {
        char *nl = memchr(q->in->str, '\n', q->in->len);
        if (nl) {
            json_object *o;
            *nl = 0;
            o = json_tokener_parse(q->in->str);
            g_string_erase(q->in, 0, (gssize)(nl - q->in->str) + 1);
            if (o)
                return o;
            continue;
        }
        double left = end - vb_now();
        struct pollfd p = { .fd = q->fd, .events = POLLIN };
        char buf[4096];
        ssize_t n;
        if (left <= 0) {
            vb_seterr(e, -ETIMEDOUT, "QMP: no answer within %d ms", timeout_ms);
            return NULL;
        }
        if (poll(&p, 1, (int)(left * 1000) + 1) < 0 && errno != EINTR) {
            vb_seterr(e, -errno, "QMP: poll: %s", strerror(errno));
            return NULL;
        }
        n = read(q->fd, buf, sizeof(buf));
        if (n == 0) {
            vb_seterr(e, -ECONNRESET, "QMP: QEMU closed the monitor");
            return NULL;
        }
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                continue;
            vb_seterr(e, -errno, "QMP: read: %s", strerror(errno));
            return NULL;
        }
        g_string_append_len(q->in, buf, n);
    }
}

/* Execute a command; *ret gets "return" (may be NULL). Events are kept. */
static int qmp_cmd(struct qmp *q, const char *cmd, json_object *args, json_object **ret,
                   int timeout_ms, vb_error *e)
{
    json_object *o = json_object_new_object();
    const char *s;
    int r;

    json_object_object_add(o, "execute", json_object_new_string(cmd));
    if (args)
        json_object_object_add(o, "arguments", args);
    s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
    r = vb_write_all(q->fd, s, strlen(s));
    if (!r)
        r = vb_write_all(q->fd, "\n", 1);
    json_object_put(o);
    if (r)
        return vb_seterr(e, r, "QMP: write: %s", strerror(-r));
    for (;;) {
        json_object *m = qmp_read(q, timeout_ms, e), *v;
        if (!m)
            return e->code ? e->code : -EIO;
        if (json_object_object_get_ex(m, "event", NULL)) {
            g_ptr_array_add(q->events, m);
            continue;
        }
        if (json_object_object_get_ex(m, "error", &v)) {
            /* QEMU's words, escaped: a guest may have taken over its QEMU */
            const char *desc = vb_json_str(v, "desc") ? vb_json_str(v, "desc") : "error";
            g_autofree char *shown = vb_escape(desc, strlen(desc));
            r = vb_seterr(e, -EIO, "QMP %s: %s", cmd, shown);
            json_object_put(m);
            return r;
        }
        if (json_object_object_get_ex(m, "return", &v)) {
            if (ret)
                *ret = json_object_get(v);
            json_object_put(m);
            return 0;
        }
        json_object_put(m);
    }
}

/* Wait for an event whose data.device is dev. */
static json_object *qmp_event(struct qmp *q, const char *event, const char *dev, int timeout_ms,
                              vb_error *e)
{
    double end = vb_now() + timeout_ms / 1000.0;

    for (;;) {
        for (guint i = 0; i < q->events->len; i++) {
            json_object *m = q->events->pdata[i];
            json_object *data = json_object_object_get(m, "data");
            if (!g_strcmp0(vb_json_str(m, "event"), event) &&
                !g_strcmp0(vb_json_str(data, "device"), dev)) {
                g_ptr_array_steal_index(q->events, i);
                return m;
            }
        }
        json_object *m = qmp_read(q, (int)((end - vb_now()) * 1000), e);
        if (!m)
            return NULL;
        if (json_object_object_get_ex(m, "event", NULL))
            g_ptr_array_add(q->events, m);
        else
            json_object_put(m);
    }
}

static struct qmp *qmp_open(const char *path, vb_error *e)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct qmp *q = g_new0(struct qmp, 1);
    json_object *greeting;

    q->in = g_string_new(NULL);
    q->events = g_ptr_array_new_with_free_func(put_json);
    q->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    if (q->fd < 0 || connect(q->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        vb_seterr(e, -errno, "QMP %s: %s", path, strerror(errno));
        qmp_close(q);
        return NULL;
    }
    greeting = qmp_read(q, 5000, e);
    if (!greeting || !json_object_object_get_ex(greeting, "QMP", NULL)) {
        json_object_put(greeting);
        if (!e->code)
            vb_seterr(e, -EPROTO, "QMP %s: no greeting", path);
        qmp_close(q);
        return NULL;
    }
    json_object_put(greeting);
    if (qmp_cmd(q, "qmp_capabilities", NULL, NULL, 5000, e)) {
        qmp_close(q);
        return NULL;
    }
    return q;
}

/* ---- the backend ------------------------------------------------------------------ */

static void *qmp_be_open(struct vbd_view *v, vb_error *e)
{
    if (!v->qmp_path) {
        vb_seterr(e, -EINVAL, "VM %s has no QMP socket", v->vm);
        return NULL;
    }
    return qmp_open(v->qmp_path, e);
}

static void qmp_be_close(void *conn)
{
    qmp_close(conn);
}

static int qmp_be_query_block(void *conn, json_object **blocks, vb_error *e)
{
    int r = qmp_cmd(conn, "query-block", NULL, blocks, 10000, e);

    if (!r && !json_object_is_type(*blocks, json_type_array)) {
        json_object_put(*blocks);
        *blocks = NULL;
        return vb_seterr(e, -EPROTO, "QMP query-block: not an array");
    }
    return r;
}

static int qmp_be_snapshot(void *conn, struct vbd_view *v, vb_error *e)
{
    json_object *actions = json_object_new_array(), *args;

    for (guint i = 0; i < v->disks->len; i++) {
        struct vbd_view_disk *vd = v->disks->pdata[i];
        json_object *a = json_object_new_object(), *data = json_object_new_object();
        if (vd->before->node)
            json_object_object_add(data, "node-name", json_object_new_string(vd->before->node));
        else
            json_object_object_add(data, "device", json_object_new_string(vd->before->device));
        json_object_object_add(data, "snapshot-file", json_object_new_string(vd->overlay));
        json_object_object_add(data, "snapshot-node-name", json_object_new_string(vd->top_node));
        json_object_object_add(data, "format", json_object_new_string("qcow2"));
        /* a tracking overlay vbackupd made (its header names the active image) */
        if (vd->precreated)
            json_object_object_add(data, "mode", json_object_new_string("existing"));
        json_object_object_add(a, "type", json_object_new_string("blockdev-snapshot-sync"));
        json_object_object_add(a, "data", data);
        json_object_array_add(actions, a);
    }
    args = json_object_new_object();
    json_object_object_add(args, "actions", actions);
    /* all disks at one instant, or none */
    return qmp_cmd(conn, "transaction", args, NULL, 60000, e);
}

static bool protocol_driver(const char *drv)
{
    static const char *const protocols[] = { "file", "host_device", "host_cdrom", "nbd",
                                             "iscsi", "rbd", "nfs", "ssh", "http", "https",
                                             "null-co", "null-aio" };

    for (size_t i = 0; i < VB_ARRAY_SIZE(protocols); i++)
        if (!g_strcmp0(drv, protocols[i]))
            return true;
    return false;
}

/* The node that holds image as a format layer: the one named want if its
 * file is image (the name was taken before the snapshot), else the only
 * such node; NULL with e set if there is none or more than one. */
static char *base_node(struct qmp *q, const char *want, const char *image, vb_error *e)
{
    json_object *args = json_object_new_object(), *nodes = NULL;
    g_autofree char *path = vbd_image_path(image);
    char *found = NULL;
    unsigned n = 0;

    json_object_object_add(args, "flat", json_object_new_boolean(1));
    if (qmp_cmd(q, "query-named-block-nodes", args, &nodes, 10000, e))
        return NULL;
    for (size_t i = 0; json_object_is_type(nodes, json_type_array) &&
                       i < json_object_array_length(nodes); i++) {
        json_object *nd = json_object_array_get_idx(nodes, i);
        const char *name = vb_json_str(nd, "node-name");
        g_autofree char *file = vbd_image_path(vb_json_str(nd, "file"));
        if (!name || strcmp(file, path) || protocol_driver(vb_json_str(nd, "drv")))
            continue;
        if (want && !strcmp(name, want)) {
            g_free(found);
            found = g_strdup(name);
            n = 1;
            break;
        }
        if (!n++)
            found = g_strdup(name);
    }
    json_object_put(nodes);
    if (n != 1) {
        g_free(found);
        vb_seterr(e, -ENOENT, "QEMU has %s node on %s", n ? "more than one" : "no", image);
        return NULL;
    }
    return found;
}

static int qmp_be_commit(void *conn, struct vbd_view *v, guint i, const struct vbd_chain *now,
                         vb_error *e)
{
    struct qmp *q = conn;
    struct vbd_view_disk *vd = v->disks->pdata[i];
    g_autofree char *jid = g_strdup_printf("vbackup-%llu-%u", (unsigned long long)v->job_id, i);
    g_autofree char *base = NULL;
    json_object *args, *ev;
    const char *err;
    int r;

    if (!now->node)
        return vb_seterr(e, -ENOENT, "QEMU gives no node name for %s", vd->overlay);
    if (vd->top_node && strcmp(now->node, vd->top_node))
        vbd_log("job %llu: the overlay %s is node %s, not %s (QEMU was restarted?)",
                (unsigned long long)v->job_id, vd->overlay, now->node, vd->top_node);
    base = base_node(q, vd->before->node, now->files->pdata[1], e);
    if (!base)
        return e->code;
    args = json_object_new_object();
    json_object_object_add(args, "job-id", json_object_new_string(jid));
    json_object_object_add(args, "device", json_object_new_string(now->device));
    json_object_object_add(args, "top-node", json_object_new_string(now->node));
    json_object_object_add(args, "base-node", json_object_new_string(base));
    if ((r = qmp_cmd(q, "block-commit", args, NULL, 10000, e)))
        return r;
    if (!(ev = qmp_event(q, "BLOCK_JOB_READY", jid, 3600 * 1000, e)))
        return e->code ? e->code : -EIO;
    json_object_put(ev);
    args = json_object_new_object();
    json_object_object_add(args, "device", json_object_new_string(jid));
    if ((r = qmp_cmd(q, "block-job-complete", args, NULL, 10000, e)))
        return r;
    if (!(ev = qmp_event(q, "BLOCK_JOB_COMPLETED", jid, 600 * 1000, e)))
        return e->code ? e->code : -EIO;
    err = vb_json_str(json_object_object_get(ev, "data"), "error");
    if (err) {
        g_autofree char *shown = vb_escape(err, strlen(err));
        r = vb_seterr(e, -EIO, "block job %s: %s", jid, shown);
    } else {
        r = 0;
    }
    json_object_put(ev);
    return r;
}

/* The tracking overlay (now->files[1]) into the image under it
 * (now->files[2]), nodes looked up by their files; not the active layer, so
 * the job completes by itself (no READY, no pivot). */
static int qmp_be_commit_down(void *conn, struct vbd_view *v, guint i, const struct vbd_chain *now,
                              vb_error *e)
{
    struct qmp *q = conn;
    struct vbd_view_disk *vd = v->disks->pdata[i];
    g_autofree char *jid = g_strdup_printf("vbackup-%llu-%u-down", (unsigned long long)v->job_id,
                                           i);
    g_autofree char *top = NULL, *base = NULL;
    json_object *args, *ev;
    const char *err;
    int r;

    if (now->files->len < 3)
        return vb_seterr(e, -EINVAL, "no tracking overlay under %s", vd->overlay);
    top = base_node(q, vd->before->node, now->files->pdata[1], e);
    if (!top)
        return e->code;
    base = base_node(q, NULL, now->files->pdata[2], e);
    if (!base)
        return e->code;
    args = json_object_new_object();
    json_object_object_add(args, "job-id", json_object_new_string(jid));
    json_object_object_add(args, "device", json_object_new_string(now->device));
    json_object_object_add(args, "top-node", json_object_new_string(top));
    json_object_object_add(args, "base-node", json_object_new_string(base));
    if ((r = qmp_cmd(q, "block-commit", args, NULL, 10000, e)))
        return r;
    if (!(ev = qmp_event(q, "BLOCK_JOB_COMPLETED", jid, 3600 * 1000, e)))
        return e->code ? e->code : -EIO;
    err = vb_json_str(json_object_object_get(ev, "data"), "error");
    r = err ? vb_seterr(e, -EIO, "block job %s: %s", jid, err) : 0;
    json_object_put(ev);
    return r;
}

const struct vbd_view_backend vbd_view_qmp = {
    .name = "QMP",
    .open = qmp_be_open,
    .close = qmp_be_close,
    .query_block = qmp_be_query_block,
    .snapshot = qmp_be_snapshot,
    .commit = qmp_be_commit,
    .commit_down = qmp_be_commit_down,
};
