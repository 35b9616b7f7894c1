/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The vbackup client core: transports (/dev/vbackup ioctl, UNIX socket) and
 * the request builders and reply parsers of every operation of
 * include/vbackup/proto.h.  Replies are checked (lengths, counts, strings)
 * before anything is taken from them.
 */
#include "vbc.h"

#include <endian.h>
#include <stdarg.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

enum { VBC_T_IOCTL, VBC_T_SOCKET, VBC_T_STREAM };

/* A socket request waiting for its reply. */
struct pending {
    struct pending *next;
    uint64_t tag;
    struct vbc_reply *r;
    uint16_t op;
    int state;                   /* P_WAIT, P_RECV (reader fills r), P_DONE */
    int err;                     /* -errno for P_DONE without a reply */
    char msg[160];
};
enum { P_WAIT, P_RECV, P_DONE };

struct vbc_conn {
    int kind, fd;
    char path[PATH_MAX];
    struct vbc_limits lim;
    uint64_t tag;
    /* socket */
    pthread_mutex_t wlock;       /* one frame written at a time */
    pthread_mutex_t lock;        /* pending list, dead */
    pthread_cond_t cond;
    struct pending *pend;
    pthread_t reader;
    bool reader_on;
    int dead;                    /* -errno once the stream is unusable */
    char dead_msg[200];
};

/* ---- messages -------------------------------------------------------------- */

void vbc_msg_init(struct vbc_msg *m, uint16_t op, size_t hint)
{
    memset(m, 0, sizeof(*m));
    m->op = op;
    m->cap = VB_HDR_SIZE + (hint ? hint : 256);
    m->buf = calloc(1, m->cap);
    m->len = VB_HDR_SIZE;
    if (!m->buf)
        m->oom = true;
}

void vbc_msg_free(struct vbc_msg *m)
{
    free(m->buf);
    m->buf = NULL;
    m->len = m->cap = 0;
}

void *vbc_msg_put(struct vbc_msg *m, const void *p, size_t n)
{
    void *dst;

    if (m->oom)
        return NULL;
    if (m->len + n > m->cap) {
        size_t cap = m->cap * 2;
        uint8_t *nb;

        while (cap < m->len + n)
            cap *= 2;
        nb = realloc(m->buf, cap);
        if (!nb) {
            m->oom = true;
            return NULL;
        }
        m->buf = nb;
        m->cap = cap;
    }
    dst = m->buf + m->len;
    if (p)
        memcpy(dst, p, n);
    else
        memset(dst, 0, n);
    m->len += n;
    return dst;
}

void vbc_msg_put_str(struct vbc_msg *m, const char *s, size_t n)
{
    uint16_t l = htole16((uint16_t)n);

    vbc_msg_put(m, &l, 2);
    if (n)
        vbc_msg_put(m, s, n);
}

int vbc_reply_init(struct vbc_reply *r, uint32_t cap)
{
    memset(r, 0, sizeof(*r));
    if (cap > VB_MAX_PAYLOAD)
        cap = VB_MAX_PAYLOAD;
    r->buf = malloc(VB_HDR_SIZE + (size_t)cap);
    if (!r->buf)
        return -ENOMEM;
    r->cap = cap;
    r->payload = r->buf + VB_HDR_SIZE;
    return 0;
}

void vbc_reply_free(struct vbc_reply *r)
{
    free(r->buf);
    r->buf = NULL;
}

/* ---- reading payloads ---------------------------------------------------------- */

struct rd {
    const uint8_t *p;
    size_t left;
};

static bool rd_take(struct rd *r, void *dst, size_t n)
{
    if (r->left < n)
        return false;
    if (dst)
        memcpy(dst, r->p, n);
    r->p += n;
    r->left -= n;
    return true;
}

static const uint8_t *rd_ptr(struct rd *r, size_t n)
{
    const uint8_t *p = r->p;

    return rd_take(r, NULL, n) ? p : NULL;
}

static int bad_reply(struct vbc_err *e, const char *op, const char *what)
{
    return vbc_seterr(e, -EPROTO, "malformed %s reply from the host: %s", op, what);
}

/* ---- transport ------------------------------------------------------------------ */

static int full_write(int fd, const void *buf, size_t n)
{
    const uint8_t *p = buf;

    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* A pipe or file: write(2), not send(2). */
static int stream_write(int fd, const void *buf, size_t n)
{
    const uint8_t *p = buf;

    while (n) {
        ssize_t w = write(fd, p, n);

        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* 1 = complete, 0 = EOF before the first byte, -errno */
static int full_read(int fd, void *buf, size_t n)
{
    uint8_t *p = buf;
    size_t got = 0;

    while (got < n) {
        ssize_t r = read(fd, p + got, n - got);

        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            return got ? -EPIPE : 0;
        got += (size_t)r;
    }
    return 1;
}

static void conn_kill(struct vbc_conn *c, int err, const char *msg)
{
    /* lock held */
    if (!c->dead) {
        c->dead = err;
        snprintf(c->dead_msg, sizeof(c->dead_msg), "%s", msg);
    }
    for (struct pending *p = c->pend; p; p = p->next) {
        if (p->state != P_DONE) {
            p->state = P_DONE;
            p->err = err;
            snprintf(p->msg, sizeof(p->msg), "%s", msg);
        }
    }
    pthread_cond_broadcast(&c->cond);
}

static void *reader_main(void *arg)
{
    struct vbc_conn *c = arg;
    static uint8_t sink[65536];

    for (;;) {
        struct vb_hdr h;
        struct pending *p;
        uint32_t len;
        int rc = full_read(c->fd, &h, sizeof(h));

        if (rc <= 0) {
            pthread_mutex_lock(&c->lock);
            conn_kill(c, -EPIPE, rc == 0 ? "vbackupd closed the connection"
                                         : "connection to vbackupd lost");
            pthread_mutex_unlock(&c->lock);
            return NULL;
        }
        len = le32toh(h.len);
        if (le32toh(h.magic) == VB_MAGIC && le16toh(h.version) != VB_PROTO_VERSION) {
            char m[160];

            snprintf(m, sizeof(m), "vbackupd speaks protocol version %u and this %s %u: "
                     "vbackup and vbackupd must be updated together", le16toh(h.version),
                     vbc_prog, VB_PROTO_VERSION);
            pthread_mutex_lock(&c->lock);
            conn_kill(c, -EPROTO, m);
            pthread_mutex_unlock(&c->lock);
            shutdown(c->fd, SHUT_RDWR);
            return NULL;
        }
        if (le32toh(h.magic) != VB_MAGIC || len > VB_MAX_PAYLOAD ||
            !(le16toh(h.type) & VB_REPLY)) {
            pthread_mutex_lock(&c->lock);
            conn_kill(c, -EPROTO, "vbackupd sent an invalid frame header");
            pthread_mutex_unlock(&c->lock);
            shutdown(c->fd, SHUT_RDWR);
            return NULL;
        }
        pthread_mutex_lock(&c->lock);
        for (p = c->pend; p; p = p->next)
            if (p->tag == le64toh(h.tag) && p->state == P_WAIT)
                break;
        if (p && len > p->r->cap) {
            p->state = P_DONE;
            p->err = -EPROTO;
            snprintf(p->msg, sizeof(p->msg), "reply of %u bytes larger than reply_max %u",
                     len, p->r->cap);
            pthread_cond_broadcast(&c->cond);
            p = NULL;
        }
        if (p)
            p->state = P_RECV;
        pthread_mutex_unlock(&c->lock);

        if (p) {
            rc = len ? full_read(c->fd, p->r->buf + VB_HDR_SIZE, len) : 1;
            pthread_mutex_lock(&c->lock);
            memcpy(p->r->buf, &h, sizeof(h));
            p->state = P_DONE;
            p->err = rc == 1 ? 0 : -EPIPE;
            if (rc != 1)
                snprintf(p->msg, sizeof(p->msg), "connection to vbackupd lost");
            pthread_cond_broadcast(&c->cond);
            if (rc != 1)
                conn_kill(c, -EPIPE, "connection to vbackupd lost");
            pthread_mutex_unlock(&c->lock);
            if (rc != 1)
                return NULL;
        } else {
            /* a reply nobody waits for (late, or given up): discard */
            while (len) {
                size_t n = len < sizeof(sink) ? len : sizeof(sink);

                if (full_read(c->fd, sink, n) != 1) {
                    pthread_mutex_lock(&c->lock);
                    conn_kill(c, -EPIPE, "connection to vbackupd lost");
                    pthread_mutex_unlock(&c->lock);
                    return NULL;
                }
                len -= (uint32_t)n;
            }
        }
    }
}

int vbc_connect(const char *path, struct vbc_conn **out, struct vbc_err *e)
{
    struct vbc_conn *c;
    struct stat st;

    if (!path || !*path)
        path = getenv("VBACKUP_DEVICE");
    if (!path || !*path)
        path = VBC_DEFAULT_DEVICE;
    if (stat(path, &st) < 0) {
        int err = errno;

        if (err == ENOENT)
            return vbc_seterr(e, -ENOENT,
                              "%s not found: is the virtio_backup module loaded and the VM "
                              "started with the virtio-backup device?", path);
        return vbc_seterr(e, -err, "%s: %s", path, strerror(err));
    }
    if (!S_ISCHR(st.st_mode) && !S_ISSOCK(st.st_mode))
        return vbc_seterr(e, -ENOTSUP, "%s is neither the vbackup device nor a vbackupd socket",
                          path);
    c = calloc(1, sizeof(*c));
    if (!c)
        return vbc_seterr(e, -ENOMEM, "out of memory");
    snprintf(c->path, sizeof(c->path), "%s", path);
    c->lim.max_payload = VB_MAX_PAYLOAD;
    c->lim.max_files = VB_MAX_FILES_PER_MSG;
    c->tag = ((uint64_t)getpid() << 32) | 1;
    pthread_mutex_init(&c->wlock, NULL);
    pthread_mutex_init(&c->lock, NULL);
    vbc_cond_init(&c->cond);

    if (S_ISCHR(st.st_mode)) {
        c->kind = VBC_T_IOCTL;
        c->fd = open(path, O_RDWR | O_CLOEXEC);
        if (c->fd < 0) {
            int err = errno;

            free(c);
            if (err == EACCES || err == EPERM)
                return vbc_seterr(e, -err, "%s: %s (vbackup needs root)", path, strerror(err));
            if (err == ENXIO || err == ENODEV)
                return vbc_seterr(e, -err, "%s: no device behind it (%s): is the VM started "
                                  "with the virtio-backup device?", path, strerror(err));
            return vbc_seterr(e, -err, "open %s: %s", path, strerror(err));
        }
    } else {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        sigset_t all, old;
        int err;

        c->kind = VBC_T_SOCKET;
        if (strlen(path) >= sizeof(sa.sun_path)) {
            free(c);
            return vbc_seterr(e, -ENAMETOOLONG, "socket path too long: %s", path);
        }
        strcpy(sa.sun_path, path);
        c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
            err = errno;
            if (c->fd >= 0)
                close(c->fd);
            free(c);
            return vbc_seterr(e, -err, "cannot connect to vbackupd at %s: %s%s", path,
                              strerror(err), err == ECONNREFUSED ? " (is vbackupd running?)" : "");
        }
        /* the reader thread takes no signals: they go to the main thread */
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        err = pthread_create(&c->reader, NULL, reader_main, c);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (err) {
            close(c->fd);
            free(c);
            return vbc_seterr(e, -err, "pthread_create: %s", strerror(err));
        }
        c->reader_on = true;
    }
    *out = c;
    return 0;
}

int vbc_connect_stream(int fd, struct vbc_conn **out, struct vbc_err *e)
{
    struct vbc_conn *c = calloc(1, sizeof(*c));

    if (!c)
        return vbc_seterr(e, -ENOMEM, "out of memory");
    c->kind = VBC_T_STREAM;
    c->fd = fd;
    snprintf(c->path, sizeof(c->path), "the output stream");
    c->lim.max_payload = VB_MAX_PAYLOAD;
    c->lim.max_files = VB_MAX_FILES_PER_MSG;
    c->tag = 1;
    pthread_mutex_init(&c->wlock, NULL);
    pthread_mutex_init(&c->lock, NULL);
    vbc_cond_init(&c->cond);
    *out = c;
    return 0;
}

void vbc_disconnect(struct vbc_conn *c)
{
    if (!c)
        return;
    if (c->reader_on) {
        shutdown(c->fd, SHUT_RDWR);
        pthread_join(c->reader, NULL);
    }
    close(c->fd);
    pthread_mutex_destroy(&c->wlock);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->cond);
    free(c);
}

bool vbc_conn_is_socket(const struct vbc_conn *c)
{
    return c->kind == VBC_T_SOCKET;
}

const struct vbc_limits *vbc_conn_limits(const struct vbc_conn *c)
{
    return &c->lim;
}

static const char *op_name(uint16_t op)
{
    static const char *const names[VB_OP_MAX_] = {
        [VB_OP_HELLO] = "HELLO", [VB_OP_BACKUP_BEGIN] = "BACKUP_BEGIN",
        [VB_OP_BACKUP_FILES] = "BACKUP_FILES", [VB_OP_BACKUP_DATA] = "BACKUP_DATA",
        [VB_OP_BACKUP_SEAL] = "BACKUP_SEAL", [VB_OP_STATUS] = "STATUS",
        [VB_OP_CANCEL] = "CANCEL", [VB_OP_LIST] = "LIST",
        [VB_OP_RESTORE_BEGIN] = "RESTORE_BEGIN", [VB_OP_RESTORE_LIST] = "RESTORE_LIST",
        [VB_OP_RESTORE_READ] = "RESTORE_READ", [VB_OP_RESTORE_END] = "RESTORE_END",
        [VB_OP_BACKUP_PROBLEMS] = "BACKUP_PROBLEMS",
    };

    return op < VB_OP_MAX_ && names[op] ? names[op] : "?";
}

static int call_ioctl(struct vbc_conn *c, struct vbc_msg *m, struct vbc_reply *r,
                      bool idempotent, struct vbc_err *e)
{
    struct vbackup_call call;
    struct vb_hdr *h = (struct vb_hdr *)m->buf;

    for (;;) {
        memset(&call, 0, sizeof(call));
        call.req = (uint64_t)(uintptr_t)m->buf;
        call.reply = (uint64_t)(uintptr_t)r->buf;
        call.req_len = (uint32_t)m->len;
        call.reply_cap = VB_HDR_SIZE + r->cap;
        if (ioctl(c->fd, VBACKUP_IOC_CALL, &call) == 0)
            break;
        if (errno == EINTR) {
            if (vbc_interrupted)
                return vbc_seterr(e, -EINTR, "interrupted");
            if (idempotent) {
                h->tag = htole64(__atomic_add_fetch(&c->tag, 1, __ATOMIC_RELAXED));
                continue;
            }
            return vbc_seterr(e, -EINTR, "%s interrupted by a signal (its outcome on the "
                              "host is unknown)", op_name(m->op));
        }
        if (errno == ENODEV)
            return vbc_seterr(e, -ENODEV, "%s: the virtio-backup device went away", c->path);
        return vbc_seterr(e, -errno, "%s: VBACKUP_IOC_CALL %s: %s", c->path, op_name(m->op),
                          strerror(errno));
    }
    if (call.reply_len < VB_HDR_SIZE || call.reply_len > VB_HDR_SIZE + r->cap)
        return vbc_seterr(e, -EPROTO, "%s: reply of %u bytes", c->path, call.reply_len);
    h = (struct vb_hdr *)r->buf;
    if (le32toh(h->len) != call.reply_len - VB_HDR_SIZE)
        return vbc_seterr(e, -EPROTO, "%s: reply length %u does not match %u bytes received",
                          c->path, le32toh(h->len), call.reply_len - VB_HDR_SIZE);
    return 0;
}

/* One way: the frame is written, the reply is an empty OK. */
static int call_stream(struct vbc_conn *c, struct vbc_msg *m, struct vbc_reply *r,
                       struct vbc_err *e)
{
    struct vb_hdr h;
    int rc = stream_write(c->fd, m->buf, m->len);

    if (rc < 0)
        return vbc_seterr(e, rc, "%s: %s", c->path, strerror(-rc));
    memset(&h, 0, sizeof(h));
    h.magic = htole32(VB_MAGIC);
    h.version = htole16(VB_PROTO_VERSION);
    h.type = htole16(m->op | VB_REPLY);
    h.tag = ((struct vb_hdr *)m->buf)->tag;
    memcpy(r->buf, &h, sizeof(h));
    return 0;
}

static int call_socket(struct vbc_conn *c, struct vbc_msg *m, struct vbc_reply *r,
                       struct vbc_err *e)
{
    struct pending p = { .tag = le64toh(((struct vb_hdr *)m->buf)->tag), .r = r, .op = m->op };
    struct pending **pp;
    int rc;

    pthread_mutex_lock(&c->lock);
    if (c->dead) {
        rc = c->dead;
        pthread_mutex_unlock(&c->lock);
        return vbc_seterr(e, rc, "%s: %s", c->path, c->dead_msg);
    }
    p.next = c->pend;
    c->pend = &p;
    pthread_mutex_unlock(&c->lock);

    pthread_mutex_lock(&c->wlock);
    rc = full_write(c->fd, m->buf, m->len);
    pthread_mutex_unlock(&c->wlock);

    pthread_mutex_lock(&c->lock);
    if (rc < 0)
        conn_kill(c, -EPIPE, "connection to vbackupd lost");
    while (p.state != P_DONE) {
        if (vbc_interrupted && p.state == P_WAIT) {
            p.state = P_DONE;
            p.err = -EINTR;
            snprintf(p.msg, sizeof(p.msg), "interrupted");
            break;
        }
        vbc_cond_wait_ms(&c->cond, &c->lock, 100);
    }
    for (pp = &c->pend; *pp; pp = &(*pp)->next) {
        if (*pp == &p) {
            *pp = p.next;
            break;
        }
    }
    pthread_mutex_unlock(&c->lock);
    if (p.err)
        return vbc_seterr(e, p.err, "%s: %s", c->path, p.msg);
    return 0;
}

int vbc_call(struct vbc_conn *c, struct vbc_msg *m, struct vbc_reply *r, bool idempotent,
             struct vbc_err *e)
{
    struct vb_hdr h;
    int rc;

    if (m->oom)
        return vbc_seterr(e, -ENOMEM, "out of memory building %s", op_name(m->op));
    if (m->len - VB_HDR_SIZE > VB_MAX_PAYLOAD)
        return vbc_seterr(e, -E2BIG, "%s request of %zu bytes is too large", op_name(m->op),
                          m->len - VB_HDR_SIZE);
    memset(&h, 0, sizeof(h));
    h.magic = htole32(VB_MAGIC);
    h.version = htole16(VB_PROTO_VERSION);
    h.type = htole16(m->op);
    h.tag = htole64(__atomic_add_fetch(&c->tag, 1, __ATOMIC_RELAXED));
    h.len = htole32((uint32_t)(m->len - VB_HDR_SIZE));
    h.reply_max = htole32(r->cap);
    memcpy(m->buf, &h, sizeof(h));

    rc = c->kind == VBC_T_IOCTL ? call_ioctl(c, m, r, idempotent, e)
       : c->kind == VBC_T_STREAM ? call_stream(c, m, r, e) : call_socket(c, m, r, e);
    if (rc)
        return rc;

    memcpy(&h, r->buf, sizeof(h));
    if (le32toh(h.magic) != VB_MAGIC)
        return vbc_seterr(e, -EPROTO, "%s: reply to %s with a bad magic", c->path,
                          op_name(m->op));
    if (le16toh(h.version) != VB_PROTO_VERSION)
        return vbc_seterr(e, VB_S_BAD_VERSION, "the host speaks protocol version %u and this "
                          "%s %u: vbackup and vbackupd must be updated together", 
                          le16toh(h.version), vbc_prog, VB_PROTO_VERSION);
    r->status = (int32_t)le32toh((uint32_t)h.status);
    r->len = le32toh(h.len);
    if (r->len > r->cap)
        return vbc_seterr(e, -EPROTO, "%s: reply to %s larger than reply_max", c->path,
                          op_name(m->op));
    /* the device answers some failures itself with its own type; only a
     * successful reply must be of the right type */
    if (r->status == VB_S_OK && le16toh(h.type) != (m->op | VB_REPLY))
        return vbc_seterr(e, -EPROTO, "%s: reply of type %#x to %s", c->path,
                          le16toh(h.type), op_name(m->op));
    if (r->status != VB_S_OK) {
        char text[VB_MAX_MESSAGE * 4 + 1];
        size_t l = r->len > VB_MAX_MESSAGE ? VB_MAX_MESSAGE : r->len;

        vbc_sanitize(text, sizeof(text), (const char *)r->payload, l);
        if (r->status < 0 || r->status >= VB_S_STATUS_MAX_)
            return vbc_seterr(e, VB_S_INTERNAL, "unknown status %d from the host: %s",
                              r->status, text);
        if (r->status == VB_S_UNAVAILABLE)
            return vbc_seterr(e, r->status, "%s", vbc_status_text(r->status));
        return vbc_seterr(e, r->status, "%s", text[0] ? text : vbc_status_text(r->status));
    }
    return 0;
}

/* A call with a reply buffer of its own. */
static int call_small(struct vbc_conn *c, struct vbc_msg *m, struct vbc_reply *r, uint32_t cap,
                      bool idempotent, struct vbc_err *e)
{
    int rc;

    if (vbc_reply_init(r, cap) < 0) {
        vbc_msg_free(m);
        return vbc_seterr(e, -ENOMEM, "out of memory");
    }
    rc = vbc_call(c, m, r, idempotent, e);
    vbc_msg_free(m);
    if (rc)
        vbc_reply_free(r);
    return rc;
}

/* ---- HELLO ----------------------------------------------------------------------- */

int vbc_hello(struct vbc_conn *c, const char *tool, struct vbc_hello *out, struct vbc_err *e)
{
    struct vb_hello req;
    struct vb_hello_reply rep;
    struct vbc_msg m;
    struct vbc_reply r;
    int rc;

    memset(&req, 0, sizeof(req));
    req.version_min = htole32(VB_PROTO_VERSION);
    req.version_max = htole32(VB_PROTO_VERSION);
    snprintf(req.tool, sizeof(req.tool), "%s %s", tool, VBC_VERSION);
    vbc_msg_init(&m, VB_OP_HELLO, sizeof(req));
    vbc_msg_put(&m, &req, sizeof(req));
    if ((rc = call_small(c, &m, &r, 4096, true, e)))
        return rc;
    if (r.len < sizeof(rep)) {
        vbc_reply_free(&r);
        return bad_reply(e, "HELLO", "too short");
    }
    memcpy(&rep, r.payload, sizeof(rep));
    vbc_reply_free(&r);
    memset(out, 0, sizeof(*out));
    out->version = le32toh(rep.version);
    out->max_payload = le32toh(rep.max_payload);
    out->max_files = le32toh(rep.max_files_per_msg);
    out->features = le32toh(rep.features);
    vbc_sanitize(out->vm, sizeof(out->vm), rep.vm, strnlen(rep.vm, sizeof(rep.vm)));
    vbc_sanitize(out->daemon, sizeof(out->daemon), rep.daemon,
                 strnlen(rep.daemon, sizeof(rep.daemon)));
    if (out->version != VB_PROTO_VERSION)
        return vbc_seterr(e, VB_S_BAD_VERSION, "the host chose protocol version %u; this %s "
                          "speaks %u", out->version, tool, VB_PROTO_VERSION);
    /* limits: never above the protocol's, never absurdly small */
    if (out->max_payload > VB_MAX_PAYLOAD || out->max_payload == 0)
        out->max_payload = VB_MAX_PAYLOAD;
    if (out->max_payload < 4096)
        return bad_reply(e, "HELLO", "max_payload below 4096");
    if (out->max_files > VB_MAX_FILES_PER_MSG || out->max_files == 0)
        out->max_files = VB_MAX_FILES_PER_MSG;
    c->lim.max_payload = out->max_payload;
    c->lim.max_files = out->max_files;
    return 0;
}

/* ---- backup ---------------------------------------------------------------------------- */

int vbc_backup_begin(struct vbc_conn *c, const struct vbc_begin *b, uint64_t *job,
                     uint32_t *features, struct vbc_err *e)
{
    struct vb_backup_begin req;
    struct vb_backup_begin_reply rep;
    struct vbc_msg m;
    struct vbc_reply r;
    size_t tl = strlen(b->target);
    int rc;

    if (tl == 0 || tl > VB_MAX_TARGET)
        return vbc_seterr(e, -EINVAL, "target name must be 1 to %u bytes", VB_MAX_TARGET);
    if (b->n_serials > VB_MAX_DISKS)
        return vbc_seterr(e, -E2BIG, "%zu disks in one backup (at most %u)", b->n_serials,
                          VB_MAX_DISKS);
    if (b->n_roots > VB_MAX_ROOTS)
        return vbc_seterr(e, -E2BIG, "%zu paths in one backup (at most %u)", b->n_roots,
                          VB_MAX_ROOTS);
    memset(&req, 0, sizeof(req));
    req.kind = b->kind;
    req.mode = b->mode;
    req.target_len = htole16((uint16_t)tl);
    req.n_disks = htole16((uint16_t)b->n_serials);
    req.n_roots = htole16((uint16_t)b->n_roots);
    req.flags = htole32(b->flags);
    req.n_files_hint = htole64(b->n_files_hint);
    req.bytes_hint = htole64(b->bytes_hint);
    vbc_msg_init(&m, VB_OP_BACKUP_BEGIN, 4096);
    vbc_msg_put(&m, &req, sizeof(req));
    vbc_msg_put(&m, b->target, tl);
    for (size_t i = 0; i < b->n_serials; i++)
        vbc_msg_put_str(&m, b->serials[i], strlen(b->serials[i]));
    for (size_t i = 0; i < b->n_roots; i++)
        vbc_msg_put_str(&m, b->roots[i], strlen(b->roots[i]));
    if (b->flags & VB_BEGIN_HOST_MAP) {
        const struct vbc_map *mp = b->map;
        struct vb_map_head mh = {
            .n_fs = htole16((uint16_t)mp->n_fs),
            .n_prune = htole16((uint16_t)mp->n_prune),
            .n_exclude = htole16((uint16_t)b->n_exclude),
        };

        if (mp->n_fs < 1 || mp->n_fs > VB_MAX_ROOTS || mp->n_prune > VB_MAX_PRUNE ||
            b->n_exclude > VB_MAX_EXCLUDE) {
            vbc_msg_free(&m);
            return vbc_seterr(e, -E2BIG, "too many file systems, mount points or exclusions "
                              "for the host to map");
        }
        vbc_msg_put(&m, &mh, sizeof(mh));
        for (size_t i = 0; i < mp->n_fs; i++) {
            struct vb_map_fs f = {
                .disk = htole16(mp->fs[i].disk),
                .type = VB_FS_EXT,
                .start = htole64(mp->fs[i].start),
            };

            vbc_msg_put(&m, &f, sizeof(f));
        }
        for (size_t i = 0; i < b->n_roots; i++) {
            uint16_t fs = htole16(mp->root_fs[i]);

            vbc_msg_put(&m, &fs, 2);
            vbc_msg_put_str(&m, mp->inside[i], strlen(mp->inside[i]));
        }
        for (size_t i = 0; i < mp->n_prune; i++)
            vbc_msg_put_str(&m, mp->prune[i], strlen(mp->prune[i]));
        for (size_t i = 0; i < b->n_exclude; i++)
            vbc_msg_put_str(&m, b->exclude[i], strlen(b->exclude[i]));
    }
    if ((rc = call_small(c, &m, &r, 4096, false, e)))
        return rc;
    if (r.len < sizeof(rep)) {
        vbc_reply_free(&r);
        return bad_reply(e, "BACKUP_BEGIN", "too short");
    }
    memcpy(&rep, r.payload, sizeof(rep));
    vbc_reply_free(&r);
    *job = le64toh(rep.job);
    if (features)
        *features = le32toh(rep.features);
    if (*job == 0)
        return bad_reply(e, "BACKUP_BEGIN", "job 0");
    return 0;
}

static int job_ref_call(struct vbc_conn *c, uint16_t op, uint64_t job, struct vbc_reply *r,
                        uint32_t cap, bool idempotent, struct vbc_err *e)
{
    struct vb_job_ref ref = { .job = htole64(job) };
    struct vbc_msg m;

    vbc_msg_init(&m, op, sizeof(ref));
    vbc_msg_put(&m, &ref, sizeof(ref));
    return call_small(c, &m, r, cap, idempotent, e);
}

int vbc_seal(struct vbc_conn *c, uint64_t job, uint32_t *view, struct vbc_err *e)
{
    struct vb_seal_reply rep;
    struct vbc_reply r;
    int rc;

    if ((rc = job_ref_call(c, VB_OP_BACKUP_SEAL, job, &r, 4096, false, e)))
        return rc;
    if (r.len < sizeof(rep)) {
        vbc_reply_free(&r);
        return bad_reply(e, "BACKUP_SEAL", "too short");
    }
    memcpy(&rep, r.payload, sizeof(rep));
    vbc_reply_free(&r);
    *view = le32toh(rep.view);
    if (*view != VB_VIEW_FROZEN && *view != VB_VIEW_SNAPSHOT)
        return bad_reply(e, "BACKUP_SEAL", "unknown view");
    return 0;
}

int vbc_cancel(struct vbc_conn *c, uint64_t job, struct vbc_err *e)
{
    struct vbc_reply r;
    int rc;

    if ((rc = job_ref_call(c, VB_OP_CANCEL, job, &r, 4096, false, e)))
        return rc;
    vbc_reply_free(&r);
    return 0;
}

int vbc_restore_end(struct vbc_conn *c, uint64_t job, struct vbc_err *e)
{
    struct vbc_reply r;
    int rc;

    if ((rc = job_ref_call(c, VB_OP_RESTORE_END, job, &r, 4096, false, e)))
        return rc;
    vbc_reply_free(&r);
    return 0;
}

const char *vbc_state_name(uint32_t state)
{
    static const char *const names[] = {
        [VB_JOB_COLLECTING] = "collecting", [VB_JOB_QUEUED] = "queued",
        [VB_JOB_DEFERRED] = "deferred", [VB_JOB_RUNNING] = "running",
        [VB_JOB_DONE] = "done", [VB_JOB_FAILED] = "failed",
        [VB_JOB_CANCELLED] = "cancelled", [VB_JOB_RESTORING] = "restoring",
        [VB_JOB_MAPPING] = "mapping",
    };

    return state < sizeof(names) / sizeof(names[0]) && names[state] ? names[state] : "?";
}

const char *vbc_mode_name(uint8_t mode)
{
    switch (mode) {
    case VB_MODE_FULL: return "full";
    case VB_MODE_INCREMENTAL: return "incremental";
    case VB_MODE_DIFFERENTIAL: return "differential";
    default: return "-";
    }
}

const char *vbc_kind_name(uint8_t kind)
{
    switch (kind) {
    case VB_KIND_FILES: return "files";
    case VB_KIND_DISK: return "disk";
    default: return "-";
    }
}

int vbc_status(struct vbc_conn *c, uint64_t job, struct vbc_job **jobs, size_t *n,
               struct vbc_err *e)
{
    struct vbc_reply r;
    struct rd rd;
    uint32_t count, reserved;
    struct vbc_job *v;
    int rc;

    *jobs = NULL;
    *n = 0;
    if ((rc = job_ref_call(c, VB_OP_STATUS, job, &r, 256 * 1024, true, e)))
        return rc;
    rd.p = r.payload;
    rd.left = r.len;
    if (!rd_take(&rd, &count, 4) || !rd_take(&rd, &reserved, 4)) {
        vbc_reply_free(&r);
        return bad_reply(e, "STATUS", "too short");
    }
    count = le32toh(count);
    if ((size_t)count > rd.left / sizeof(struct vb_job_status)) {
        vbc_reply_free(&r);
        return bad_reply(e, "STATUS", "count larger than the payload");
    }
    v = calloc(count ? count : 1, sizeof(*v));
    if (!v) {
        vbc_reply_free(&r);
        return vbc_seterr(e, -ENOMEM, "out of memory");
    }
    for (uint32_t i = 0; i < count; i++) {
        struct vb_job_status s;
        const uint8_t *reason, *snap;
        uint16_t rl, sl;

        if (!rd_take(&rd, &s, sizeof(s)))
            goto bad;
        rl = le16toh(s.reason_len);
        sl = le16toh(s.snap_len);
        if (!(reason = rd_ptr(&rd, rl)) || !(snap = rd_ptr(&rd, sl)))
            goto bad;
        if (sl > VB_MAX_SNAPSHOT_ID || memchr(snap, 0, sl))
            goto bad;
        v[i].job = le64toh(s.job);
        v[i].state = le32toh(s.state);
        v[i].flags = le32toh(s.flags);
        v[i].kind = s.kind;
        v[i].mode = s.mode;
        v[i].bytes_done = le64toh(s.bytes_done);
        v[i].bytes_total = le64toh(s.bytes_total);
        v[i].files_done = le64toh(s.files_done);
        v[i].files_total = le64toh(s.files_total);
        v[i].bytes_new = le64toh(s.bytes_new);
        v[i].bytes_reused = le64toh(s.bytes_reused);
        v[i].started_ns = (int64_t)le64toh((uint64_t)s.started_ns);
        v[i].finished_ns = (int64_t)le64toh((uint64_t)s.finished_ns);
        vbc_sanitize(v[i].reason, sizeof(v[i].reason), (const char *)reason,
                     rl > VB_MAX_MESSAGE ? VB_MAX_MESSAGE : rl);
        vbc_sanitize(v[i].snapshot, sizeof(v[i].snapshot), (const char *)snap, sl);
    }
    vbc_reply_free(&r);
    *jobs = v;
    *n = count;
    return 0;
bad:
    free(v);
    vbc_reply_free(&r);
    return bad_reply(e, "STATUS", "record runs past the payload or bad snapshot id");
}

/* ---- LIST -------------------------------------------------------------------------------- */

void vbc_snaps_free(struct vbc_snap *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(s[i].roots);
    free(s);
}

int vbc_list(struct vbc_conn *c, const char *target, struct vbc_snap **snaps, size_t *n,
             struct vbc_err *e)
{
    size_t tl = target ? strlen(target) : 0, have = 0, cap = 0;
    struct vbc_snap *v = NULL;
    uint32_t start = 0;
    int rc = 0;

    *snaps = NULL;
    *n = 0;
    if (tl > VB_MAX_TARGET)
        return vbc_seterr(e, -EINVAL, "target name longer than %u bytes", VB_MAX_TARGET);
    for (int pages = 0; pages < 100000; pages++) {
        struct vb_list req = { .start = htole32(start), .target_len = htole16((uint16_t)tl) };
        struct vbc_msg m;
        struct vbc_reply r;
        struct rd rd;
        uint32_t total, count;

        vbc_msg_init(&m, VB_OP_LIST, sizeof(req) + tl);
        vbc_msg_put(&m, &req, sizeof(req));
        if (tl)
            vbc_msg_put(&m, target, tl);
        if ((rc = call_small(c, &m, &r, VB_MAX_PAYLOAD, true, e)))
            goto fail;
        rd.p = r.payload;
        rd.left = r.len;
        if (!rd_take(&rd, &total, 4) || !rd_take(&rd, &count, 4)) {
            vbc_reply_free(&r);
            rc = bad_reply(e, "LIST", "too short");
            goto fail;
        }
        total = le32toh(total);
        count = le32toh(count);
        if ((size_t)count > rd.left / sizeof(struct vb_snap_info)) {
            vbc_reply_free(&r);
            rc = bad_reply(e, "LIST", "count larger than the payload");
            goto fail;
        }
        for (uint32_t i = 0; i < count; i++) {
            struct vb_snap_info si;
            const uint8_t *id, *roots;
            uint16_t il, rl;

            if (have == cap) {
                size_t nc = cap ? cap * 2 : 64;
                struct vbc_snap *nv = realloc(v, nc * sizeof(*v));

                if (!nv) {
                    vbc_reply_free(&r);
                    rc = vbc_seterr(e, -ENOMEM, "out of memory");
                    goto fail;
                }
                v = nv;
                cap = nc;
            }
            if (!rd_take(&rd, &si, sizeof(si)) ||
                !(id = rd_ptr(&rd, il = le16toh(si.id_len))) ||
                !(roots = rd_ptr(&rd, rl = le16toh(si.roots_len))) ||
                il == 0 || il > VB_MAX_SNAPSHOT_ID) {
                vbc_reply_free(&r);
                rc = bad_reply(e, "LIST", "record runs past the payload or bad id");
                goto fail;
            }
            memset(&v[have], 0, sizeof(v[have]));
            v[have].created_ns = (int64_t)le64toh((uint64_t)si.created_ns);
            v[have].files = le64toh(si.files);
            v[have].bytes = le64toh(si.bytes);
            v[have].kind = si.kind;
            v[have].mode = si.mode;
            v[have].flags = le16toh(si.flags);
            vbc_sanitize(v[have].id, sizeof(v[have].id), (const char *)id, il);
            v[have].roots = malloc((size_t)rl * 4 + 1);
            if (!v[have].roots) {
                vbc_reply_free(&r);
                rc = vbc_seterr(e, -ENOMEM, "out of memory");
                goto fail;
            }
            /* keep the '\n' separators, escape the rest */
            {
                size_t o = 0, s = 0;

                for (size_t k = 0; k <= rl; k++) {
                    if (k == rl || roots[k] == '\n') {
                        vbc_sanitize(v[have].roots + o, (size_t)rl * 4 + 1 - o,
                                     (const char *)roots + s, k - s);
                        o += strlen(v[have].roots + o);
                        if (k < rl)
                            v[have].roots[o++] = '\n';
                        s = k + 1;
                    }
                }
                v[have].roots[o] = 0;
            }
            have++;
        }
        vbc_reply_free(&r);
        start += count;
        if (count == 0 || start >= total)
            break;
    }
    *snaps = v;
    *n = have;
    return 0;
fail:
    vbc_snaps_free(v, have);
    return rc;
}

/* ---- FILES ---------------------------------------------------------------------------- */

uint32_t vbc_encode_dev(unsigned major, unsigned minor)
{
    return (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xffu) << 12);
}

static int ext_cmp(const void *a, const void *b)
{
    const struct vbc_extent *x = a, *y = b;

    return x->logical < y->logical ? -1 : x->logical > y->logical;
}

bool vbc_extents_normalize(struct vbc_extent *ext, size_t *n, uint64_t size)
{
    size_t o = 0;

    if (*n > 1)
        qsort(ext, *n, sizeof(*ext), ext_cmp);
    for (size_t i = 0; i < *n; i++) {
        struct vbc_extent x = ext[i];
        bool unwritten = x.flags & VB_EXT_UNWRITTEN;

        /* written data past the size is not the file's; preallocated space is */
        if (x.length == 0 || (x.logical >= size && !unwritten))
            continue;
        if (x.logical + x.length < x.logical || x.physical + x.length < x.physical)
            return false;
        if (x.logical + x.length > size && !unwritten)
            x.length = size - x.logical;
        if (o) {
            struct vbc_extent *p = &ext[o - 1];

            if (x.logical < p->logical + p->length)
                return false;        /* overlap */
            if (p->logical + p->length == x.logical && p->physical + p->length == x.physical &&
                p->flags == x.flags) {
                p->length += x.length;
                continue;
            }
        }
        ext[o++] = x;
    }
    *n = o;
    return true;
}

int vbc_files_init(struct vbc_files *b, struct vbc_conn *c, uint64_t job, struct vbc_err *e)
{
    const struct vbc_limits *lim = vbc_conn_limits(c);

    memset(b, 0, sizeof(*b));
    b->c = c;
    b->job = job;
    b->max_files = lim->max_files;
    b->max_payload = lim->max_payload;
    vbc_msg_init(&b->m, VB_OP_BACKUP_FILES, b->max_payload);
    if (b->m.oom || vbc_reply_init(&b->r, 4096) < 0) {
        vbc_msg_free(&b->m);
        return vbc_seterr(e, -ENOMEM, "out of memory");
    }
    return 0;
}

void vbc_files_free(struct vbc_files *b)
{
    vbc_msg_free(&b->m);
    vbc_reply_free(&b->r);
}

static void files_start(struct vbc_files *b)
{
    struct vb_files h = { .job = htole64(b->job) };

    b->m.len = VB_HDR_SIZE;
    vbc_msg_put(&b->m, &h, sizeof(h));
    b->n_in_msg = 0;
}

int vbc_files_flush(struct vbc_files *b, struct vbc_err *e)
{
    struct vb_files *h;
    int rc;

    if (!b->n_in_msg)
        return 0;
    h = (struct vb_files *)(b->m.buf + VB_HDR_SIZE);
    h->n_files = htole32(b->n_in_msg);
    rc = vbc_call(b->c, &b->m, &b->r, false, e);
    b->n_msgs++;
    b->n_in_msg = 0;
    b->m.len = VB_HDR_SIZE;
    if (rc)
        vbc_prefixerr(e, "sending file records");
    return rc;
}

static void put_rec(struct vbc_files *b, const struct vbc_file *f, uint8_t data, bool more,
                    const struct vbc_extent *ext, uint32_t n)
{
    struct vb_rec r;
    uint8_t *out;

    memset(&r, 0, sizeof(r));
    r.type = f->type;
    r.data = data;
    r.disk = (uint16_t)(f->disk < 0 ? 0 : f->disk);
    r.path = f->path;
    r.path_len = f->path_len;
    r.n_extents = n;
    if (!more) {
        r.mode = f->mode & 07777;
        r.uid = f->uid;
        r.gid = f->gid;
        r.nlink = f->nlink;
        r.rdev = f->rdev;
        r.size = f->size;
        r.ino = f->ino;
        r.mtime = f->mtime;
        r.ctime = f->ctime;
        r.atime = f->atime;
        r.fsflags = f->fsflags & VB_FSFL_MASK;
        r.projid = f->projid;
        r.link = f->link;
        r.link_len = f->link_len;
        r.xattrs = f->xattrs;
        r.xattr_len = f->xattr_len;
        r.n_xattrs = f->n_xattrs;
    }
    out = vbc_msg_put(&b->m, NULL, vb_rec_head_size(&r) + (size_t)n * VB_EXTENT_SIZE);
    if (!out)
        return;
    out += vb_rec_encode_head(&r, out);
    for (uint32_t i = 0; i < n; i++) {
        struct vb_extent x = {
            .logical = ext[i].logical,
            /* unwritten space of a file whose data is not mapped: nothing to read */
            .physical = data == VB_FD_EXTENTS || (more && f->data == VB_FD_EXTENTS)
                            ? ext[i].physical : 0,
            .length = ext[i].length,
            .flags = ext[i].flags,
        };

        vb_extent_put(out + (size_t)i * VB_EXTENT_SIZE, &x);
    }
    b->n_in_msg++;
    b->n_records++;
}

int vbc_files_add(struct vbc_files *b, const struct vbc_file *f, uint64_t *index,
                  struct vbc_err *e)
{
    size_t fixed = sizeof(struct vb_file_rec) + f->path_len + f->link_len + f->xattr_len;
    size_t done = 0;
    bool first = true;
    int rc;

    if (f->path_len > VB_MAX_PATH || f->link_len > VB_MAX_LINK ||
        f->xattr_len > VB_MAX_XATTR_BYTES)
        return vbc_seterr(e, -ENAMETOOLONG, "path, link target or extended attributes too long");
    if (sizeof(struct vb_files) + fixed + sizeof(struct vb_extent) > b->max_payload)
        return vbc_seterr(e, -E2BIG, "a record does not fit in the host's %u byte messages",
                          b->max_payload);
    for (;;) {
        size_t remaining = f->n_ext - done;
        size_t chunk = remaining < VB_MAX_EXTENTS_PER_REC ? remaining : VB_MAX_EXTENTS_PER_REC;
        size_t used = b->n_in_msg ? b->m.len - VB_HDR_SIZE : sizeof(struct vb_files);
        size_t room = b->max_payload - used;
        size_t need = (first ? fixed : sizeof(struct vb_file_rec) + f->path_len) +
                      chunk * sizeof(struct vb_extent);

        if (b->n_in_msg >= b->max_files || need > room) {
            size_t head = first ? fixed : sizeof(struct vb_file_rec) + f->path_len;
            size_t fit = room > head ? (room - head) / sizeof(struct vb_extent) : 0;

            /* split here only if the record would not fit an empty message
             * anyway and a useful part fits; otherwise start a new message
             * (an empty one takes what fits: at least one extent, checked
             * above) */
            if (b->n_in_msg && (b->n_in_msg >= b->max_files ||
                                need <= b->max_payload - sizeof(struct vb_files) || fit < 64)) {
                if ((rc = vbc_files_flush(b, e)))
                    return rc;
                continue;
            }
            chunk = fit;
        }
        if (!b->n_in_msg)
            files_start(b);
        put_rec(b, f, first ? f->data : VB_FD_MORE, !first, f->ext + done, (uint32_t)chunk);
        if (b->m.oom)
            return vbc_seterr(e, -ENOMEM, "out of memory");
        done += chunk;
        first = false;
        if (done >= f->n_ext)
            break;
    }
    if (index)
        *index = b->n_files;
    b->n_files++;
    return 0;
}

/* ---- DATA ---------------------------------------------------------------------------- */

void vbc_data_msg(struct vbc_msg *m, uint32_t max_piece)
{
    vbc_msg_init(m, VB_OP_BACKUP_DATA, sizeof(struct vb_data) + max_piece);
}

uint8_t *vbc_data_buf(struct vbc_msg *m)
{
    return m->buf + VB_HDR_SIZE + sizeof(struct vb_data);
}

int vbc_data_send(struct vbc_conn *c, struct vbc_msg *m, struct vbc_reply *r, uint64_t job,
                  uint64_t file, uint64_t offset, uint32_t len, bool last, struct vbc_err *e)
{
    struct vb_data d = {
        .job = htole64(job),
        .file = htole64(file),
        .offset = htole64(offset),
        .len = htole32(len),
        .flags = htole32(last ? VB_DATA_LAST : 0),
    };

    if (VB_HDR_SIZE + sizeof(d) + (size_t)len > m->cap)
        return vbc_seterr(e, -E2BIG, "data piece too large");
    memcpy(m->buf + VB_HDR_SIZE, &d, sizeof(d));
    m->len = VB_HDR_SIZE + sizeof(d) + len;
    return vbc_call(c, m, r, false, e);
}

/* ---- dump ------------------------------------------------------------------------------- */

static void json_str(FILE *f, const char *s, size_t n)
{
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];

        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20 || ch == 0x7f)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

static void json_hex(FILE *f, const void *p, size_t n)
{
    fputc('"', f);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%02x", ((const unsigned char *)p)[i]);
    fputc('"', f);
}

/* Bytes as a JSON string when they are UTF-8, else KEY_hex with their hex;
 * after a comma unless FIRST. */
static void json_bytes(FILE *f, const char *key, const char *s, size_t n, bool first)
{
    fprintf(f, "%s\"%s%s\":", first ? "" : ",", key, vbc_utf8_valid(s, n) ? "" : "_hex");
    if (vbc_utf8_valid(s, n))
        json_str(f, s, n);
    else
        json_hex(f, s, n);
}

static void json_time(FILE *f, const char *key, struct vb_ts t)
{
    fprintf(f, ",\"%s_sec\":%lld,\"%s_nsec\":%u", key, (long long)t.sec, key, t.nsec);
    /* in nanoseconds too where that fits (until 2262) */
    if (t.sec > INT64_MIN / 1000000000 + 1 && t.sec < INT64_MAX / 1000000000)
        fprintf(f, ",\"%s_ns\":%lld", key, (long long)(t.sec * 1000000000 + t.nsec));
}

void vbc_dump_record(FILE *f, const struct vbc_file *r, const char *serial, const char *sha)
{
    static const char *const types[] = { "?", "reg", "dir", "symlink", "fifo", "chr", "blk",
                                         "sock" };
    static const char *const datas[] = { "none", "extents", "fallback" };

    fputs("{", f);
    json_bytes(f, "path", r->path, r->path_len, true);
    fprintf(f, ",\"type\":\"%s\",\"data\":\"%s\",\"disk\":", types[r->type < 8 ? r->type : 0],
            datas[r->data < 3 ? r->data : 0]);
    if (serial)
        json_str(f, serial, strlen(serial));
    else
        fputs("null", f);
    fprintf(f, ",\"size\":%llu,\"mode\":%u,\"uid\":%u,\"gid\":%u,\"nlink\":%u,\"ino\":%llu,"
            "\"rdev\":%u,\"fsflags\":%u,\"projid\":%u",
            (unsigned long long)r->size, r->mode & 07777, r->uid, r->gid, r->nlink,
            (unsigned long long)r->ino, r->rdev, r->fsflags, r->projid);
    json_time(f, "mtime", r->mtime);
    json_time(f, "ctime", r->ctime);
    json_time(f, "atime", r->atime);
    if (r->link_len)
        json_bytes(f, "link", r->link, r->link_len, false);
    if (sha)
        fprintf(f, ",\"sha256\":\"%s\"", sha);
    fputs(",\"xattrs\":{", f);
    {
        struct vb_xattr_view x;
        size_t off = 0;
        bool firstx = true;

        while (r->xattrs && vb_xattr_next(r->xattrs, r->xattr_len, &off, &x)) {
            if (!firstx)
                fputc(',', f);
            firstx = false;
            json_str(f, x.name, x.name_len);
            fputc(':', f);
            json_hex(f, x.value, x.value_len);
        }
    }
    fputs("},\"extents\":[", f);
    for (size_t i = 0; i < r->n_ext; i++)
        fprintf(f, "%s[%llu,%llu,%llu,%u]", i ? "," : "",
                (unsigned long long)r->ext[i].logical,
                (unsigned long long)(r->data == VB_FD_EXTENTS ? r->ext[i].physical : 0),
                (unsigned long long)r->ext[i].length, r->ext[i].flags);
    fputs("]}\n", f);
}

void vbc_map_clear(struct vbc_map *m)
{
    for (size_t i = 0; i < VB_MAX_ROOTS; i++)
        free(m->inside[i]);
    for (size_t i = 0; i < m->n_prune; i++)
        free(m->prune[i]);
    free(m->prune);
    memset(m, 0, sizeof(*m));
}

/* ---- extended attributes and problems (the sources' side) -------------------------------- */

static int xin_cmp(const void *a, const void *b)
{
    const struct vbc_xattr_in *x = a, *y = b;

    return vb_name_cmp(x->name, x->name_len, y->name, y->name_len);
}

int vbc_xattrs_build(struct vbc_xattrs *x, struct vbc_xattr_in *in, size_t n)
{
    size_t need = 0;

    x->len = 0;
    x->n = 0;
    if (n > 1)
        qsort(in, n, sizeof(*in), xin_cmp);
    for (size_t i = 0; i < n; i++)
        need += vb_xattr_size(in[i].name_len, in[i].value_len);
    if (need > x->cap) {
        uint8_t *nb = realloc(x->buf, need);

        if (!nb)
            return -ENOMEM;
        x->buf = nb;
        x->cap = need;
    }
    for (size_t i = 0; i < n; i++) {
        if (i && !vb_name_cmp(in[i - 1].name, in[i - 1].name_len, in[i].name, in[i].name_len))
            continue;       /* one name once */
        x->len += vb_xattr_put(x->buf + x->len, in[i].name, in[i].name_len, in[i].value,
                               in[i].value_len);
        x->n++;
    }
    return 0;
}

int vbc_problem_add(struct vbc_problems *p, const char *path, size_t path_len, const char *fmt,
                    ...)
{
    struct vbc_problem *x;
    char reason[VB_MAX_MESSAGE + 1], *shown;
    va_list ap;
    size_t rl;

    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    /* the reason travels as printable UTF-8 */
    rl = strlen(reason);
    for (size_t i = 0; i < rl; i++)
        if ((unsigned char)reason[i] < 0x20 || reason[i] == 0x7f ||
            (unsigned char)reason[i] >= 0x80)
            reason[i] = '?';
    if (!rl)
        snprintf(reason, sizeof(reason), "?"), rl = 1;
    shown = malloc(path_len * 4 + 1);
    if (shown) {
        vbc_sanitize(shown, path_len * 4 + 1, path, path_len);
        vbc_warn("/%s: %s", shown, reason);
        free(shown);
    }
    if (p->n == p->cap) {
        size_t nc = p->cap ? p->cap * 2 : 64;
        struct vbc_problem *nv = realloc(p->v, nc * sizeof(*nv));

        if (!nv)
            return -ENOMEM;
        p->v = nv;
        p->cap = nc;
    }
    x = &p->v[p->n];
    x->path = malloc(path_len ? path_len : 1);
    x->reason = strdup(reason);
    if (!x->path || !x->reason) {
        free(x->path);
        free(x->reason);
        return -ENOMEM;
    }
    if (path_len)
        memcpy(x->path, path, path_len);
    x->path_len = path_len > VB_MAX_PATH ? VB_MAX_PATH : path_len;
    p->n++;
    return 0;
}

void vbc_problems_free(struct vbc_problems *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->v[i].path);
        free(p->v[i].reason);
    }
    free(p->v);
    memset(p, 0, sizeof(*p));
}

int vbc_problems_send(struct vbc_conn *c, uint64_t job, const struct vbc_problems *p,
                      struct vbc_err *e)
{
    const struct vbc_limits *lim = vbc_conn_limits(c);
    size_t i = 0;

    while (i < p->n) {
        struct vb_problems h = { .job = htole64(job) };
        struct vbc_msg m;
        struct vbc_reply r;
        uint32_t k = 0;
        int rc;

        vbc_msg_init(&m, VB_OP_BACKUP_PROBLEMS, 65536);
        vbc_msg_put(&m, &h, sizeof(h));
        for (; i < p->n && k < VB_MAX_PROBLEMS_PER_MSG; i++, k++) {
            const struct vbc_problem *x = &p->v[i];
            /* a path that cannot be named (too long) is cut: the reason says why */
            size_t pl = x->path_len, rl = strlen(x->reason);
            uint8_t *out;

            while (pl && vb_path_check(x->path, pl, true))
                pl--;
            if (m.len - VB_HDR_SIZE + vb_problem_size(pl, rl) > lim->max_payload)
                break;
            out = vbc_msg_put(&m, NULL, vb_problem_size(pl, rl));
            if (out)
                vb_problem_put(out, x->path, pl, x->reason, rl);
        }
        ((struct vb_problems *)(m.buf + VB_HDR_SIZE))->n = htole32(k);
        if ((rc = call_small(c, &m, &r, 4096, false, e)))
            return rc;
        vbc_reply_free(&r);
    }
    return 0;
}

/* ---- restore ------------------------------------------------------------------------------ */

int vbc_restore_begin(struct vbc_conn *c, const char *target, const char *snapshot,
                      const char *const *paths, size_t n_paths, struct vbc_restore_info *ri,
                      struct vbc_err *e)
{
    struct vb_restore_begin req;
    struct vb_restore_begin_reply rep;
    struct vbc_msg m;
    struct vbc_reply r;
    struct rd rd;
    const uint8_t *snap;
    size_t tl = strlen(target), sl = strlen(snapshot);
    uint16_t rsl;
    int rc;

    if (tl == 0 || tl > VB_MAX_TARGET)
        return vbc_seterr(e, -EINVAL, "target name must be 1 to %u bytes", VB_MAX_TARGET);
    if (sl == 0 || sl > VB_MAX_SNAPSHOT_ID)
        return vbc_seterr(e, -EINVAL, "snapshot id must be 1 to %u bytes", VB_MAX_SNAPSHOT_ID);
    if (n_paths > UINT16_MAX)
        return vbc_seterr(e, -E2BIG, "too many paths");
    memset(&req, 0, sizeof(req));
    req.target_len = htole16((uint16_t)tl);
    req.snap_len = htole16((uint16_t)sl);
    req.n_paths = htole16((uint16_t)n_paths);
    vbc_msg_init(&m, VB_OP_RESTORE_BEGIN, 4096);
    vbc_msg_put(&m, &req, sizeof(req));
    vbc_msg_put(&m, target, tl);
    vbc_msg_put(&m, snapshot, sl);
    for (size_t i = 0; i < n_paths; i++)
        vbc_msg_put_str(&m, paths[i], strlen(paths[i]));
    if ((rc = call_small(c, &m, &r, 4096, false, e)))
        return rc;
    rd.p = r.payload;
    rd.left = r.len;
    if (!rd_take(&rd, &rep, sizeof(rep)) || !(snap = rd_ptr(&rd, rsl = le16toh(rep.snap_len))) ||
        rsl == 0 || rsl > VB_MAX_SNAPSHOT_ID) {
        vbc_reply_free(&r);
        return bad_reply(e, "RESTORE_BEGIN", "too short or bad snapshot id");
    }
    ri->job = le64toh(rep.job);
    ri->n_entries = le64toh(rep.n_entries);
    ri->bytes_total = le64toh(rep.bytes_total);
    vbc_sanitize(ri->snapshot, sizeof(ri->snapshot), (const char *)snap, rsl);
    vbc_reply_free(&r);
    return 0;
}

int vbc_restore_list(struct vbc_conn *c, uint64_t job, uint64_t start, struct vbc_reply *r,
                     struct vbc_entry **v, size_t *n, size_t *cap, size_t *added,
                     struct vbc_err *e)
{
    struct vb_restore_list req = { .job = htole64(job), .start = htole64(start) };
    struct vbc_msg m;
    struct rd rd;
    uint32_t count, reserved;
    int rc;

    *added = 0;
    vbc_msg_init(&m, VB_OP_RESTORE_LIST, sizeof(req));
    vbc_msg_put(&m, &req, sizeof(req));
    rc = vbc_call(c, &m, r, true, e);
    vbc_msg_free(&m);
    if (rc)
        return rc;
    rd.p = r->payload;
    rd.left = r->len;
    if (!rd_take(&rd, &count, 4) || !rd_take(&rd, &reserved, 4))
        return bad_reply(e, "RESTORE_LIST", "too short");
    count = le32toh(count);
    if ((size_t)count > rd.left / sizeof(struct vb_file_rec))
        return bad_reply(e, "RESTORE_LIST", "count larger than the payload");
    for (uint32_t i = 0; i < count; i++) {
        struct vb_rec rec;
        struct vbc_entry *x;
        char why[160];
        size_t used;
        int st = vb_rec_decode(rd.p, rd.left, VB_REC_RESTORE, &rec, &used, why, sizeof(why));

        if (st) {
            char what[200];

            snprintf(what, sizeof(what), "%s%s", st == VB_S_BAD_PATH ? "invalid path: " : "",
                     why);
            return bad_reply(e, "RESTORE_LIST", what);
        }
        rd.p += used;
        rd.left -= used;
        if (rec.n_extents || rec.data != VB_FD_NONE)
            return bad_reply(e, "RESTORE_LIST", "record with data or extents");
        if (*n == *cap) {
            size_t nc = *cap ? *cap * 2 : 1024;
            struct vbc_entry *nv = realloc(*v, nc * sizeof(**v));

            if (!nv)
                return vbc_seterr(e, -ENOMEM, "out of memory");
            *v = nv;
            *cap = nc;
        }
        x = &(*v)[*n];
        memset(x, 0, sizeof(*x));
        x->type = rec.type;
        x->mode = rec.mode;
        x->uid = rec.uid;
        x->gid = rec.gid;
        x->nlink = rec.nlink;
        x->rdev = rec.rdev;
        x->size = rec.size;
        x->link_of = rec.ino;
        x->mtime = rec.mtime;
        x->atime = rec.atime;
        x->fsflags = rec.fsflags;
        x->projid = rec.projid;
        x->flags = rec.flags;
        x->path = strndup(rec.path, rec.path_len);
        x->path_len = rec.path_len;
        if (rec.link_len)
            x->link = strndup(rec.link, rec.link_len);
        if (rec.xattr_len) {
            x->xattrs = malloc(rec.xattr_len);
            if (x->xattrs)
                memcpy(x->xattrs, rec.xattrs, rec.xattr_len);
            x->xattr_len = rec.xattr_len;
            x->n_xattrs = rec.n_xattrs;
        }
        if (!x->path || (rec.link_len && !x->link) || (rec.xattr_len && !x->xattrs)) {
            free(x->path);
            free(x->link);
            free(x->xattrs);
            return vbc_seterr(e, -ENOMEM, "out of memory");
        }
        (*n)++;
        (*added)++;
    }
    return 0;
}

int vbc_restore_read(struct vbc_conn *c, struct vbc_reply *r, uint64_t job, uint64_t entry,
                     uint64_t offset, uint32_t len, struct vbc_rdata *d, struct vbc_err *e)
{
    struct vb_restore_read req = {
        .job = htole64(job), .entry = htole64(entry), .offset = htole64(offset),
        .len = htole32(len),
    };
    struct vb_restore_data rep;
    struct vbc_msg m;
    uint8_t small[VB_HDR_SIZE + sizeof(req)];
    int rc;

    /* no allocation per read: the request lives on the stack */
    m.buf = small;
    m.cap = sizeof(small);
    m.len = VB_HDR_SIZE;
    m.op = VB_OP_RESTORE_READ;
    m.oom = false;
    memcpy(small + VB_HDR_SIZE, &req, sizeof(req));
    m.len += sizeof(req);
    if (len == 0 || len > r->cap - sizeof(rep))
        return vbc_seterr(e, -EINVAL, "read length %u does not fit the reply buffer", len);
    if ((rc = vbc_call(c, &m, r, true, e)))
        return rc;
    if (r->len < sizeof(rep))
        return bad_reply(e, "RESTORE_READ", "too short");
    memcpy(&rep, r->payload, sizeof(rep));
    d->offset = le64toh(rep.offset);
    d->len = le32toh(rep.len);
    d->flags = le32toh(rep.flags);
    d->data = r->payload + sizeof(rep);
    if (d->offset != offset)
        return bad_reply(e, "RESTORE_READ", "offset differs from the one asked for");
    if (d->flags & ~(uint32_t)(VB_RD_HOLE | VB_RD_EOF | VB_RD_ZERO | VB_RD_UNWRITTEN))
        return bad_reply(e, "RESTORE_READ", "unknown flags");
    if (d->flags & (VB_RD_HOLE | VB_RD_ZERO | VB_RD_UNWRITTEN)) {
        uint32_t kind = d->flags & (VB_RD_HOLE | VB_RD_ZERO | VB_RD_UNWRITTEN);

        if (d->len == 0 || r->len != sizeof(rep) || (d->flags & VB_RD_EOF) ||
            (kind & (kind - 1)))
            return bad_reply(e, "RESTORE_READ", "bad hole, zeros or preallocated range");
        return 0;
    }
    if (r->len != sizeof(rep) + (size_t)d->len || d->len > len)
        return bad_reply(e, "RESTORE_READ", "data length does not match");
    if (d->len == 0 && !(d->flags & VB_RD_EOF))
        return bad_reply(e, "RESTORE_READ", "no data and no end of file");
    return 0;
}
