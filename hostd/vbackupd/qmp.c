/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Point-in-time views through QEMU's monitor (QMP), for VMs whose config
 * names a QMP socket.  At SEAL the disks the job reads get an external
 * overlay in one transaction (blockdev-snapshot-sync): QEMU flushes them,
 * reopens them read-only and writes to the overlays from then on, so the
 * guest can thaw at once and the job reads the now immutable images, as
 * long as it likes (it may even be deferred).  When the job ends, however
 * it ends, the overlays are committed back (block-commit, BLOCK_JOB_READY,
 * block-job-complete, BLOCK_JOB_COMPLETED) and deleted, leaving the VM on
 * its original images.  The monitor is spoken with blocking I/O on a
 * thread of its own, never on the main loop.
 */
#include "vbackupd.h"

#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
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

static json_object *strf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static json_object *strf(const char *fmt, ...)
{
    va_list ap;
    char buf[512];

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    return json_object_new_string(buf);
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
            r = vb_seterr(e, -EIO, "QMP %s: %s", cmd,
                          vb_json_str(v, "desc") ? vb_json_str(v, "desc") : "error");
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

/* ---- the view ------------------------------------------------------------------ */

struct view_op {
    struct vbd_job *job;
    char *lv_uri;            /* libvirt: the snapshot goes through libvirt */
    char *lv_domain;
    char *qmp_path;
    char *vm;
    GPtrArray *images;       /* char *: the images the guest's disks use */
    GPtrArray *devices;      /* char *: QEMU's names for them (filled) */
    GPtrArray *overlays;     /* char *: overlay files (filled / given) */
    int err;
    vb_error e;
    double seconds;
    struct vbd_req *reply;   /* SEAL, answered once the view is taken */
};

static void view_op_free(struct view_op *op)
{
    g_ptr_array_free(op->images, TRUE);
    g_ptr_array_free(op->devices, TRUE);
    g_ptr_array_free(op->overlays, TRUE);
    g_free(op->qmp_path);
    g_free(op->lv_uri);
    g_free(op->lv_domain);
    g_free(op->vm);
    g_free(op);
}

static char *real(const char *p)
{
    char *r = realpath(p, NULL);

    return r ? r : strdup(p);
}

/* QEMU's device name for the disk whose active image is path */
static int find_device(json_object *blocks, const char *path, char **dev, vb_error *e)
{
    g_autofree char *want = real(path);
    GString *seen = g_string_new(NULL);

    for (size_t i = 0; i < json_object_array_length(blocks); i++) {
        json_object *b = json_object_array_get_idx(blocks, i), *ins;
        const char *file;
        if (!json_object_object_get_ex(b, "inserted", &ins))
            continue;
        file = vb_json_str(ins, "file");
        if (!file)
            continue;
        g_autofree char *have = real(file);
        g_string_append_printf(seen, "%s%s", seen->len ? ", " : "", file);
        if (!strcmp(have, want)) {
            const char *d = vb_json_str(b, "device");
            *dev = g_strdup(d && *d ? d : vb_json_str(ins, "node-name"));
            g_string_free(seen, TRUE);
            return 0;
        }
    }
    vb_seterr(e, -ENOENT, "QEMU has no disk on %s (its disks: %s)", path,
              seen->len ? seen->str : "none");
    g_string_free(seen, TRUE);
    return -ENOENT;
}

static gpointer snapshot_thread(gpointer opaque)
{
    struct view_op *op = opaque;
    double t0 = vb_now();
    json_object *blocks = NULL, *actions;
    struct qmp *q = NULL;

    if (op->lv_uri) {
        /* devices already hold the libvirt targets, overlays their files */
        op->err = vbd_libvirt_snapshot(op->lv_uri, op->lv_domain, op->devices, op->overlays,
                                       &op->e);
        goto out;
    }
    q = qmp_open(op->qmp_path, &op->e);

    if (!q) {
        op->err = op->e.code ? op->e.code : -EIO;
        goto out;
    }
    op->err = qmp_cmd(q, "query-block", NULL, &blocks, 10000, &op->e);
    if (op->err)
        goto out;
    actions = json_object_new_array();
    for (guint i = 0; i < op->images->len; i++) {
        const char *img = op->images->pdata[i];
        char *dev = NULL, *ov;
        json_object *a, *data;
        op->err = find_device(blocks, img, &dev, &op->e);
        if (op->err) {
            json_object_put(actions);
            goto out;
        }
        ov = g_strdup_printf("%s.vbackup-%llu.qcow2", img,
                             (unsigned long long)op->job->id);
        g_ptr_array_add(op->devices, dev);
        g_ptr_array_add(op->overlays, ov);
        data = json_object_new_object();
        json_object_object_add(data, "device", json_object_new_string(dev));
        json_object_object_add(data, "snapshot-file", json_object_new_string(ov));
        json_object_object_add(data, "format", json_object_new_string("qcow2"));
        a = json_object_new_object();
        json_object_object_add(a, "type", json_object_new_string("blockdev-snapshot-sync"));
        json_object_object_add(a, "data", data);
        json_object_array_add(actions, a);
    }
    {
        json_object *args = json_object_new_object();
        json_object_object_add(args, "actions", actions);
        /* all disks at one instant, or none */
        op->err = qmp_cmd(q, "transaction", args, NULL, 60000, &op->e);
    }
out:
    json_object_put(blocks);
    qmp_close(q);
    op->seconds = vb_now() - t0;
    g_idle_add((GSourceFunc)vbd_view_taken, op);
    return NULL;
}

static gpointer commit_thread(gpointer opaque)
{
    struct view_op *op = opaque;
    double t0 = vb_now();
    struct qmp *q = NULL;

    if (op->lv_uri) {
        for (guint i = 0; i < op->devices->len; i++) {
            vb_error e1 = { 0 };
            if (vbd_libvirt_commit(op->lv_uri, op->lv_domain, op->devices->pdata[i],
                                   op->overlays->pdata[i], &e1)) {
                op->err = e1.code ? e1.code : -EIO;
                op->e = e1;
            }
        }
        goto out;
    }
    q = qmp_open(op->qmp_path, &op->e);

    if (!q) {
        op->err = op->e.code ? op->e.code : -EIO;
        goto out;
    }
    for (guint i = 0; i < op->devices->len; i++) {
        const char *dev = op->devices->pdata[i];
        g_autofree char *jid = g_strdup_printf("vbackup-%llu-%u",
                                               (unsigned long long)op->job->id, i);
        json_object *args = json_object_new_object(), *ev;
        json_object_object_add(args, "job-id", json_object_new_string(jid));
        json_object_object_add(args, "device", json_object_new_string(dev));
        if (qmp_cmd(q, "block-commit", args, NULL, 10000, &op->e)) {
            op->err = op->e.code ? op->e.code : -EIO;
            continue;           /* try the other disks; the overlay stays */
        }
        ev = qmp_event(q, "BLOCK_JOB_READY", jid, 3600 * 1000, &op->e);
        if (!ev) {
            op->err = op->e.code ? op->e.code : -EIO;
            continue;
        }
        json_object_put(ev);
        args = json_object_new_object();
        json_object_object_add(args, "device", json_object_new_string(jid));
        if (qmp_cmd(q, "block-job-complete", args, NULL, 10000, &op->e)) {
            op->err = op->e.code ? op->e.code : -EIO;
            continue;
        }
        ev = qmp_event(q, "BLOCK_JOB_COMPLETED", jid, 600 * 1000, &op->e);
        if (!ev) {
            op->err = op->e.code ? op->e.code : -EIO;
            continue;
        }
        if (vb_json_str(json_object_object_get(ev, "data"), "error")) {
            op->err = vb_seterr(&op->e, -EIO, "commit of %s: %s", dev,
                                vb_json_str(json_object_object_get(ev, "data"), "error"));
        } else {
            unlink(op->overlays->pdata[i]);
        }
        json_object_put(ev);
    }
out:
    qmp_close(q);
    op->seconds = vb_now() - t0;
    g_idle_add((GSourceFunc)vbd_view_released, op);
    return NULL;
}

/* ---- main thread ---------------------------------------------------------------------- */

void vbd_view_take(struct vbd_job *j, struct vbd_req *reply)
{
    struct view_op *op = g_new0(struct view_op, 1);

    op->job = j;
    j->refs++;
    op->qmp_path = g_strdup(j->vm->qmp);
    op->vm = g_strdup(j->vm->name);
    op->images = g_ptr_array_new_with_free_func(g_free);
    op->devices = g_ptr_array_new_with_free_func(g_free);
    op->overlays = g_ptr_array_new_with_free_func(g_free);
    op->reply = reply;
    for (guint i = 0; i < j->disks->len; i++) {
        struct vbd_disk *dk = j->disks->pdata[i];
        g_ptr_array_add(op->images, g_strdup(dk->image));
        if (j->vm->libvirt) {
            g_ptr_array_add(op->devices, g_strdup(dk->target));
            g_ptr_array_add(op->overlays, g_strdup_printf("%s.vbackup-%llu.qcow2", dk->image,
                                                          (unsigned long long)j->id));
        }
    }
    if (j->vm->libvirt) {
        op->lv_uri = g_strdup(j->d->cfg->libvirt_uri);
        op->lv_domain = g_strdup(j->vm->libvirt);
    }
    j->view_op = op;
    g_thread_unref(g_thread_new("qmp-snapshot", snapshot_thread, op));
}

gboolean vbd_view_taken(gpointer opaque)
{
    struct view_op *op = opaque;
    struct vbd_job *j = op->job;
    struct vbd_req *reply = op->reply;

    op->reply = NULL;
    j->view_pending = false;
    if (op->err) {
        /* a failed transaction changed nothing: read the live image, guest frozen */
        vbd_log("job %llu: snapshot of %s failed (%s); reading the live image while the guest "
                "stays frozen", (unsigned long long)j->id, op->vm, vb_strerror(&op->e));
        json_object_array_add(j->plan_notes, strf(
            "view: snapshot failed (%s); the guest stays frozen while the host reads",
            vb_strerror(&op->e)));
        j->view = VB_VIEW_FROZEN;
        j->view_op = NULL;
        view_op_free(op);
        vbd_job_unref(j);
    } else {
        j->view = VB_VIEW_SNAPSHOT;
        j->view_seconds = op->seconds;
        json_object_array_add(j->plan_notes, strf(
            "view: snapshot of %u disk%s taken in %.3f s; the guest thawed", op->devices->len,
            op->devices->len == 1 ? "" : "s", op->seconds));
        vbd_journal_running(j);      /* remembers the overlays, to commit after a crash */
    }
    vbd_seal_done(j, reply);
    return G_SOURCE_REMOVE;
}

void vbd_view_release(struct vbd_job *j)
{
    struct view_op *op = j->view_op;

    if (!op)
        return;
    j->view_op = NULL;
    j->d->views_active++;
    g_thread_unref(g_thread_new("qmp-commit", commit_thread, op));
}

gboolean vbd_view_released(gpointer opaque)
{
    struct view_op *op = opaque;
    struct vbd_job *j = op->job;

    if (op->err)
        vbd_log("job %llu: committing the snapshot of %s back FAILED: %s; the VM still runs on "
                "%s", (unsigned long long)j->id, op->vm, vb_strerror(&op->e),
                op->overlays->len ? (char *)op->overlays->pdata[0] : "its overlays");
    else
        vbd_log("job %llu: snapshot of %s committed back in %.2f s", (unsigned long long)j->id,
                op->vm, op->seconds);
    if (!op->err)
        vbd_journal_forget(j);
    j->d->views_active--;
    view_op_free(op);
    vbd_job_unref(j);
    return G_SOURCE_REMOVE;
}

json_object *vbd_view_json(struct vbd_job *j)
{
    struct view_op *op = j->view_op;
    json_object *o, *devs, *ovs;

    if (!op)
        return NULL;
    o = json_object_new_object();
    devs = json_object_new_array();
    ovs = json_object_new_array();
    for (guint i = 0; i < op->devices->len; i++) {
        json_object_array_add(devs, json_object_new_string(op->devices->pdata[i]));
        json_object_array_add(ovs, json_object_new_string(op->overlays->pdata[i]));
    }
    json_object_object_add(o, "qmp", op->qmp_path ? json_object_new_string(op->qmp_path) : NULL);
    if (op->lv_uri) {
        json_object_object_add(o, "libvirt", json_object_new_string(op->lv_uri));
        json_object_object_add(o, "domain", json_object_new_string(op->lv_domain));
    }
    json_object_object_add(o, "devices", devs);
    json_object_object_add(o, "overlays", ovs);
    return o;
}

/* ---- recovery ------------------------------------------------------------------------ */

/* After a crash: commit back the overlays a job left (best effort). */
void vbd_view_recover(struct vbd_job *j, json_object *view)
{
    struct view_op *op = g_new0(struct view_op, 1);
    json_object *devs = json_object_object_get(view, "devices");
    json_object *ovs = json_object_object_get(view, "overlays");

    op->job = j;
    j->refs++;
    op->qmp_path = g_strdup(vb_json_str(view, "qmp"));
    op->lv_uri = g_strdup(vb_json_str(view, "libvirt"));
    op->lv_domain = g_strdup(vb_json_str(view, "domain"));
    op->vm = g_strdup(j->vm->name);
    op->images = g_ptr_array_new_with_free_func(g_free);
    op->devices = g_ptr_array_new_with_free_func(g_free);
    op->overlays = g_ptr_array_new_with_free_func(g_free);
    for (size_t i = 0; i < json_object_array_length(devs) && i < json_object_array_length(ovs);
         i++) {
        g_ptr_array_add(op->devices, g_strdup(json_object_get_string(json_object_array_get_idx(devs, i))));
        g_ptr_array_add(op->overlays, g_strdup(json_object_get_string(json_object_array_get_idx(ovs, i))));
    }
    if ((!op->qmp_path && !op->lv_uri) || !op->devices->len) {
        view_op_free(op);
        vbd_job_unref(j);
        return;
    }
    j->view_op = op;
    vbd_log("job %llu: committing back the snapshot it left on %s", (unsigned long long)j->id,
            j->vm->name);
    vbd_view_release(j);
}
