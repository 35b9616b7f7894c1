/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A small blocking QMP client (qmpc.h).  QEMU sends one JSON object per
 * line; replies carry the id of their command. */
#include "qmpc.h"

#include <glib.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_BYTES (16u << 20)

struct vbi_qmp {
    int fd;
    char *path;
    GString *in;
    GQueue events;           /* json_object * */
    int64_t next_id;
};

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The next object QEMU sent, waiting until deadline (ms; -1: forever):
 * 0 with *o NULL on timeout. */
static int read_obj(struct vbi_qmp *q, int64_t deadline, json_object **o, vb_error *e)
{
    *o = NULL;
    for (;;) {
        char *nl = memchr(q->in->str, '\n', q->in->len);
        char buf[65536];
        struct pollfd p = { .fd = q->fd, .events = POLLIN };
        int64_t left;
        ssize_t n;

        if (nl) {
            size_t len = (size_t)(nl - q->in->str) + 1;
            *o = json_tokener_parse(q->in->str);      /* stops at the first object */
            g_string_erase(q->in, 0, (gssize)len);
            if (!*o)
                continue;                             /* an empty line */
            if (!json_object_is_type(*o, json_type_object)) {
                json_object_put(*o);
                *o = NULL;
                return vb_seterr(e, -EBADMSG, "QMP %s: not a JSON object", q->path);
            }
            return 0;
        }
        if (q->in->len > LINE_MAX_BYTES)
            return vb_seterr(e, -EBADMSG, "QMP %s: a line longer than %u bytes", q->path,
                             LINE_MAX_BYTES);
        left = deadline < 0 ? -1 : deadline - now_ms();
        if (deadline >= 0 && left <= 0)
            return 0;
        if (poll(&p, 1, (int)VB_MIN(left < 0 ? 1000 : left, (int64_t)1000)) < 0) {
            if (errno == EINTR)
                continue;
            return vb_seterr(e, -errno, "poll QMP %s: %s", q->path, strerror(errno));
        }
        if (!p.revents)
            continue;
        n = read(q->fd, buf, sizeof(buf));
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n < 0)
            return vb_seterr(e, -errno, "read QMP %s: %s", q->path, strerror(errno));
        if (n == 0)
            return vb_seterr(e, -EPIPE, "QMP %s: QEMU closed the connection", q->path);
        g_string_append_len(q->in, buf, n);
    }
}

int vbi_qmp_exec(struct vbi_qmp *q, const char *cmd, json_object *args, json_object **ret,
                 vb_error *e)
{
    json_object *req = json_object_new_object(), *o, *v;
    int64_t id = ++q->next_id;
    const char *s;
    int r;

    if (ret)
        *ret = NULL;
    json_object_object_add(req, "execute", json_object_new_string(cmd));
    if (args)
        json_object_object_add(req, "arguments", args);
    json_object_object_add(req, "id", json_object_new_int64(id));
    s = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
    r = vb_write_all(q->fd, s, strlen(s));
    if (!r)
        r = vb_write_all(q->fd, "\n", 1);
    json_object_put(req);
    if (r)
        return vb_seterr(e, r, "write QMP %s: %s", q->path, strerror(-r));
    for (;;) {
        r = read_obj(q, -1, &o, e);
        if (r)
            return r;
        if (json_object_object_get_ex(o, "event", NULL)) {
            g_queue_push_tail(&q->events, o);
            continue;
        }
        if (!json_object_object_get_ex(o, "id", &v) || json_object_get_int64(v) != id) {
            json_object_put(o);                       /* not ours */
            continue;
        }
        if (json_object_object_get_ex(o, "error", &v)) {
            r = vb_seterr(e, -EIO, "QMP %s: %s (%s)", cmd,
                          json_object_get_string(json_object_object_get(v, "desc")),
                          json_object_get_string(json_object_object_get(v, "class")));
            json_object_put(o);
            return r;
        }
        if (ret && json_object_object_get_ex(o, "return", &v))
            *ret = json_object_get(v);
        json_object_put(o);
        return 0;
    }
}

int vbi_qmp_event(struct vbi_qmp *q, int ms, json_object **ev, vb_error *e)
{
    int64_t deadline = now_ms() + ms;
    json_object *o;
    int r;

    *ev = g_queue_pop_head(&q->events);
    if (*ev)
        return 0;
    for (;;) {
        r = read_obj(q, deadline, &o, e);
        if (r || !o)
            return r;
        if (json_object_object_get_ex(o, "event", NULL)) {
            *ev = o;
            return 0;
        }
        json_object_put(o);                           /* a late reply */
    }
}

int vbi_qmp_open(const char *path, struct vbi_qmp **out, vb_error *e)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct vbi_qmp *q;
    json_object *greeting;
    int fd, r;

    if (strlen(path) >= sizeof(sa.sun_path))
        return vb_seterr(e, -ENAMETOOLONG, "QMP socket path %s is too long", path);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return vb_seterr(e, -errno, "socket: %s", strerror(errno));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        r = vb_seterr(e, -errno, "connect to QMP %s: %s", path, strerror(errno));
        close(fd);
        return r;
    }
    q = g_new0(struct vbi_qmp, 1);
    q->fd = fd;
    q->path = g_strdup(path);
    q->in = g_string_new(NULL);
    g_queue_init(&q->events);
    r = read_obj(q, now_ms() + 30000, &greeting, e);
    if (!r && (!greeting || !json_object_object_get_ex(greeting, "QMP", NULL)))
        r = vb_seterr(e, -EPROTO, "QMP %s: no greeting from QEMU", path);
    json_object_put(greeting);
    if (!r)
        r = vbi_qmp_exec(q, "qmp_capabilities", NULL, NULL, e);
    if (r) {
        vbi_qmp_close(q);
        return r;
    }
    *out = q;
    return 0;
}

void vbi_qmp_close(struct vbi_qmp *q)
{
    json_object *o;

    if (!q)
        return;
    while ((o = g_queue_pop_head(&q->events)))
        json_object_put(o);
    close(q->fd);
    g_string_free(q->in, TRUE);
    g_free(q->path);
    g_free(q);
}
