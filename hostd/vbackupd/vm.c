/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Per-VM sockets: one listening UNIX socket per VM (mode 0600).  The socket
 * a frame arrives on identifies the VM; nothing in the frame does.  Frames
 * are read without blocking, checked (wire.c), dispatched, and answered in
 * any order.  A connection stops being read while it has
 * max_requests_in_flight unanswered requests, or while the replies queued
 * for it and the largest replies its unanswered requests may still get
 * would pass output_buffer (a client that does not read its replies); it is
 * read again, frames already received first, when room frees up.
 */
#include "vbackupd.h"

#include <fcntl.h>
#include <grp.h>
#include <glib-unix.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "wire.h"

#define READ_BUDGET (512u << 10)   /* bytes read per wake-up, for fairness */

static void conn_close(struct vbd_conn *c);
static gboolean on_conn_in(gint fd, GIOCondition cond, gpointer opaque);
static gboolean on_conn_out(gint fd, GIOCondition cond, gpointer opaque);
static void update_reading(struct vbd_conn *c);

static GHashTable *held;   /* struct vbd_req * → struct vbd_conn * (live requests) */

struct vbd_disk *vbd_vm_disk(struct vbd_vm *vm, const char *serial)
{
    for (guint i = 0; i < vm->disks->len; i++) {
        struct vbd_disk *d = vm->disks->pdata[i];
        if (!strcmp(d->serial, serial))
            return d;
    }
    return NULL;
}

bool vbd_vm_connected(struct vbd_vm *vm)
{
    return vm->conns != NULL;
}

unsigned vbd_vm_throttled(struct vbd_vm *vm)
{
    unsigned n = 0;

    for (GList *l = vm->conns; l; l = l->next)
        n += ((struct vbd_conn *)l->data)->throttled;
    return n;
}

/* ---- what a connection may still take --------------------------------------------- */

/* The largest reply a request can get: what it may cost in the output queue. */
static uint64_t reply_bound(uint16_t type, uint32_t reply_max)
{
    switch (type & ~VB_REPLY) {
    case VB_OP_STATUS:
    case VB_OP_LIST:
    case VB_OP_RESTORE_LIST:
    case VB_OP_RESTORE_READ:
        return VB_HDR_SIZE + VB_MAX(VB_MIN(reply_max ? reply_max : VB_MAX_PAYLOAD,
                                           VB_MAX_PAYLOAD), VB_MAX_MESSAGE);
    default:                /* small fixed replies, or a message */
        return VB_HDR_SIZE + VB_MAX_MESSAGE;
    }
}

/* Whether the next request may be taken: room for one more in flight, and for
 * its largest reply next to the replies queued and promised. */
static bool may_read(const struct vbd_conn *c)
{
    const struct vbd_config *cfg = c->vm->d->cfg;

    return !c->closing && c->inflight < cfg->max_inflight_per_conn &&
           c->out_bytes + c->promised + VB_MAX_FRAME <= cfg->output_buffer;
}

static void take_request(struct vbd_conn *c, const struct vb_hdr *h)
{
    c->inflight++;
    c->promised += reply_bound(h->type, h->reply_max);
}

/* ---- replies ---------------------------------------------------------------- */

static void out_drop(struct vbd_conn *c, size_t len)
{
    c->out_bytes -= len;
    vbd_mem_force(c->vm, VBD_MEM_REPLIES, -(int64_t)len);
}

static void conn_flush(struct vbd_conn *c)
{
    while (!g_queue_is_empty(&c->out)) {
        GBytes *b = g_queue_peek_head(&c->out);
        gsize len;
        const uint8_t *p = g_bytes_get_data(b, &len);
        ssize_t n = send(c->fd, p + c->out_off, len - c->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                if (!c->out_src)
                    c->out_src = g_unix_fd_add(c->fd, G_IO_OUT, on_conn_out, c);
                return;
            }
            c->closing = true;      /* peer gone: drop the queue */
            while ((b = g_queue_pop_head(&c->out))) {
                out_drop(c, g_bytes_get_size(b));
                g_bytes_unref(b);
            }
            c->out_off = 0;
            return;
        }
        c->out_off += (size_t)n;
        if (c->out_off == len) {
            g_bytes_unref(g_queue_pop_head(&c->out));
            out_drop(c, len);
            c->out_off = 0;
        }
    }
    if (c->out_src) {
        g_source_remove(c->out_src);
        c->out_src = 0;
    }
}

static gboolean on_conn_out(gint fd, GIOCondition cond, gpointer opaque)
{
    struct vbd_conn *c = opaque;

    c->out_src = 0;
    conn_flush(c);
    if (c->closing && g_queue_is_empty(&c->out)) {
        conn_close(c);
        return G_SOURCE_REMOVE;
    }
    update_reading(c);
    return G_SOURCE_REMOVE;
}

static void send_frame(struct vbd_conn *c, uint16_t type, uint64_t tag, uint32_t reply_max,
                       int status, const void *payload, size_t len)
{
    uint32_t max = reply_max ? reply_max : VB_MAX_PAYLOAD;
    char msg[VB_MAX_MESSAGE];
    struct vb_hdr h;
    uint8_t *buf;

    if (len > max) {
        /* the requester's buffer is too small for the answer */
        int n = snprintf(msg, sizeof(msg), "the reply needs %zu bytes, the request allows %u",
                         len, max);
        status = VB_S_REPLY_TOO_SMALL;
        payload = msg;
        len = VB_MIN((size_t)n, (size_t)max);
    }
    memset(&h, 0, sizeof(h));
    h.magic = VB_MAGIC;
    h.version = VB_PROTO_VERSION;
    h.type = (uint16_t)(type | VB_REPLY);
    h.tag = tag;
    h.len = (uint32_t)len;
    h.status = status;
    buf = g_malloc(sizeof(h) + len);
    memcpy(buf, &h, sizeof(h));
    if (len)
        memcpy(buf + sizeof(h), payload, len);
    g_queue_push_tail(&c->out, g_bytes_new_take(buf, sizeof(h) + len));
    c->out_bytes += sizeof(h) + len;
    vbd_mem_force(c->vm, VBD_MEM_REPLIES, (int64_t)(sizeof(h) + len));
    if (c->inflight) {
        uint64_t b = reply_bound(type, reply_max);
        c->inflight--;
        c->promised -= VB_MIN(b, c->promised);
    }
    if (status != VB_S_OK)
        c->vm->errors++;
    conn_flush(c);
    update_reading(c);
}

void vbd_reply(struct vbd_conn *c, const struct vb_hdr *req, int status, const void *payload,
               size_t len)
{
    send_frame(c, req->type, req->tag, req->reply_max, status, payload, len);
}

/*
 * A failure whose cause is on the host.  The guest learns what failed, in
 * its own terms, and a reference into the host's log; host paths and errno
 * texts stay in the log (trust boundary, docs/threat-model.md).
 */
void vbd_host_error(struct vbd_vm *vm, char *out, size_t len, const char *what,
                    const char *detail)
{
    static unsigned long long seq;

    seq++;
    vbd_log("%s: host error %llu: %s: %s", vm->name, seq, what, detail);
    snprintf(out, len, "%s; the host's log has details (host error %llu)", what, seq);
}

void vbd_reply_err(struct vbd_conn *c, const struct vb_hdr *req, int status, const char *fmt, ...)
{
    char msg[VB_MAX_MESSAGE];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    vbd_log("%s: %s: %s", c->vm->name, vb_op_name(req->type), msg);
    vbd_reply(c, req, status, msg, VB_MIN((size_t)n, sizeof(msg) - 1));
}

struct vbd_req *vbd_req_hold(struct vbd_conn *c, const struct vb_hdr *h)
{
    struct vbd_req *r = g_new0(struct vbd_req, 1);

    r->conn = c;
    r->type = h->type;
    r->tag = h->tag;
    r->reply_max = h->reply_max;
    if (!held)
        held = g_hash_table_new(NULL, NULL);
    g_hash_table_insert(held, r, c);
    return r;
}

void vbd_req_answer(struct vbd_req *r, int status, const void *payload, size_t len)
{
    if (r->conn) {
        g_hash_table_remove(held, r);
        send_frame(r->conn, r->type, r->tag, r->reply_max, status, payload, len);
    }
    if (r->answered)
        r->answered(r->opaque);
    g_free(r);
}

void vbd_req_answer_err(struct vbd_req *r, int status, const char *fmt, ...)
{
    char msg[VB_MAX_MESSAGE];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    vbd_req_answer(r, status, msg, VB_MIN((size_t)n, sizeof(msg) - 1));
}

/* ---- requests ------------------------------------------------------------------ */

static void handle_hello(struct vbd_conn *c, const struct vb_hdr *h, const uint8_t *p, size_t n)
{
    struct vb_hello hello;
    struct vb_hello_reply r;
    char msg[VBD_MSG];
    int st = vbd_parse_hello(p, n, &hello, msg);

    if (st) {
        vbd_reply_err(c, h, st, "%s", msg);
        return;
    }
    memset(&r, 0, sizeof(r));
    r.version = VB_PROTO_VERSION;
    r.max_payload = VB_MAX_PAYLOAD;
    r.max_files_per_msg = VB_MAX_FILES_PER_MSG;
    r.features = c->vm->qmp || c->vm->libvirt ? VB_FEAT_SNAPSHOT_VIEW : 0;
    /* the host maps files in a view, with a mapper that runs here */
    if (r.features && c->vm->d->mapper_ok)
        r.features |= VB_FEAT_HOST_MAPS;
    snprintf(r.vm, sizeof(r.vm), "%s", c->vm->name);
    snprintf(r.daemon, sizeof(r.daemon), "vbackupd %s", VBD_VERSION);
    vbd_reply(c, h, VB_S_OK, &r, sizeof(r));
}

static void dispatch(struct vbd_conn *c, const struct vb_hdr *h, const uint8_t *p)
{
    c->vm->requests++;
    take_request(c, h);
    if (c->vm->d->stopping) {
        vbd_reply_err(c, h, VB_S_SHUTTING_DOWN, "vbackupd is shutting down");
        return;
    }
    switch (h->type) {
    case VB_OP_HELLO:
        handle_hello(c, h, p, h->len);
        break;
    case VB_OP_BACKUP_BEGIN:
    case VB_OP_BACKUP_FILES:
    case VB_OP_BACKUP_DATA:
    case VB_OP_BACKUP_SEAL:
    case VB_OP_STATUS:
    case VB_OP_CANCEL:
    case VB_OP_LIST:
    case VB_OP_BACKUP_PROBLEMS:
        vbd_handle_backup(c, h, p, h->len);
        break;
    case VB_OP_RESTORE_BEGIN:
    case VB_OP_RESTORE_LIST:
    case VB_OP_RESTORE_READ:
    case VB_OP_RESTORE_END:
        vbd_handle_restore(c, h, p, h->len);
        break;
    default:
        vbd_reply_err(c, h, VB_S_BAD_REQUEST, "unknown operation %u", h->type);
    }
}

/* Consume whole frames from the input buffer while the connection may take
 * them.  Returns false if the connection must close (unrecoverable framing). */
static bool process_input(struct vbd_conn *c)
{
    size_t off = 0;

    c->in_dispatch = true;
    while (c->in_len - off >= VB_HDR_SIZE && may_read(c)) {
        struct vb_hdr h;
        char msg[VBD_MSG];
        int st;

        memcpy(&h, c->in + off, sizeof(h));
        st = vbd_check_header(&h, msg);
        if (st == VB_S_BAD_FRAME || st == VB_S_BAD_VERSION) {
            /* the stream cannot be trusted after this: answer and hang up */
            take_request(c, &h);
            vbd_reply_err(c, &h, st, "%s; closing the connection", msg);
            c->closing = true;
            break;
        }
        if (c->in_len - off < VB_HDR_SIZE + h.len)
            break;
        if (st) {
            take_request(c, &h);
            vbd_reply_err(c, &h, st, "%s", msg);
        } else {
            dispatch(c, &h, c->in + off + VB_HDR_SIZE);
        }
        off += VB_HDR_SIZE + h.len;
    }
    c->in_dispatch = false;
    if (off) {
        memmove(c->in, c->in + off, c->in_len - off);
        c->in_len -= off;
    }
    return !c->closing;
}

/* Watch the socket exactly while the connection may take requests; frames
 * already received are processed first when it may again. */
static gboolean on_resume(gpointer opaque);

static void update_reading(struct vbd_conn *c)
{
    bool want;

    if (c->in_dispatch || c->closing)
        return;             /* process_input looks itself, frame by frame */
    want = may_read(c);
    c->throttled = !want && c->inflight < c->vm->d->cfg->max_inflight_per_conn;
    if (want && !c->in_src) {
        c->in_src = g_unix_fd_add(c->fd, G_IO_IN, on_conn_in, c);
        if (c->in_len >= VB_HDR_SIZE && !c->resume_src)
            c->resume_src = g_idle_add(on_resume, c);
    } else if (!want && c->in_src) {
        g_source_remove(c->in_src);
        c->in_src = 0;
    }
}

/* After reading stops: close, or stop watching the socket. */
static gboolean after_input(struct vbd_conn *c)
{
    if (c->closing) {
        if (c->in_src)
            g_source_remove(c->in_src);
        c->in_src = 0;
        if (g_queue_is_empty(&c->out))
            conn_close(c);
        return G_SOURCE_REMOVE;
    }
    update_reading(c);
    return G_SOURCE_REMOVE;
}

static gboolean on_resume(gpointer opaque)
{
    struct vbd_conn *c = opaque;

    c->resume_src = 0;
    process_input(c);
    return after_input(c);
}

static gboolean on_conn_in(gint fd, GIOCondition cond, gpointer opaque)
{
    struct vbd_conn *c = opaque;
    size_t budget = READ_BUDGET;

    /* this source stays ours only while the connection may read: the last
     * steps below remove it otherwise, and may_read is looked at per frame */
    c->in_src = 0;
    while (may_read(c) && budget) {
        size_t want;
        ssize_t n;

        if (c->in_cap - c->in_len < 65536 && c->in_cap < VB_MAX_FRAME + 65536) {
            c->in_cap = VB_MIN(VB_MAX(c->in_cap * 2, (size_t)131072), (size_t)VB_MAX_FRAME + 65536);
            c->in = g_realloc(c->in, c->in_cap);
        }
        want = c->in_cap - c->in_len;
        if (!want)
            break;
        n = recv(fd, c->in + c->in_len, want, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
            conn_close(c);
            return G_SOURCE_REMOVE;
        }
        if (n < 0) {
            if (errno == EAGAIN)
                break;
            continue;
        }
        c->in_len += (size_t)n;
        if (!process_input(c))
            break;
        budget -= VB_MIN((size_t)n, budget);
    }
    if (!c->closing && may_read(c)) {
        c->in_src = g_source_get_id(g_main_current_source());
        return G_SOURCE_CONTINUE;
    }
    return after_input(c);
}

static void conn_close(struct vbd_conn *c)
{
    struct vbd_vm *vm = c->vm;
    GHashTableIter it;
    gpointer k, v;
    GBytes *b;

    if (c->in_src)
        g_source_remove(c->in_src);
    if (c->out_src)
        g_source_remove(c->out_src);
    if (c->resume_src)
        g_source_remove(c->resume_src);
    close(c->fd);
    if (held) {
        g_hash_table_iter_init(&it, held);
        while (g_hash_table_iter_next(&it, &k, &v))
            if (v == c) {
                ((struct vbd_req *)k)->conn = NULL;
                g_hash_table_iter_remove(&it);
            }
    }
    while ((b = g_queue_pop_head(&c->out))) {
        out_drop(c, g_bytes_get_size(b));
        g_bytes_unref(b);
    }
    g_free(c->in);
    vm->conns = g_list_remove(vm->conns, c);
    g_free(c);
    if (!vm->conns)
        vbd_jobs_vm_gone(vm->d, vm);
    vbd_vm_unref(vm);
}

static gboolean on_accept(gint fd, GIOCondition cond, gpointer opaque)
{
    struct vbd_vm *vm = opaque;
    struct vbd_conn *c;
    char why[256];
    int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

    if (cfd < 0)
        return G_SOURCE_CONTINUE;
    /* the socket says which VM; the process on its other end must be that VM's QEMU */
    if (vbd_peer_check(vm, cfd, why, sizeof(why))) {
        vbd_log("VM %s: refusing a connection: %s", vm->name, why);
        close(cfd);
        return G_SOURCE_CONTINUE;
    }
    if (g_list_length(vm->conns) >= vm->d->cfg->max_conns_per_vm) {
        vbd_log("%s: refusing a connection: %u already open", vm->name,
                vm->d->cfg->max_conns_per_vm);
        close(cfd);
        return G_SOURCE_CONTINUE;
    }
    c = g_new0(struct vbd_conn, 1);
    c->vm = vm;
    vm->refs++;
    c->fd = cfd;
    g_queue_init(&c->out);
    c->in_src = g_unix_fd_add(cfd, G_IO_IN, on_conn_in, c);
    vm->conns = g_list_append(vm->conns, c);
    return G_SOURCE_CONTINUE;
}

/* ---- VMs -------------------------------------------------------------------- */

static int listen_unix(const char *path, const char *group, vb_error *e)
{
    gid_t gid = (gid_t)-1;
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct stat st;
    int fd;

    if (strlen(path) >= sizeof(sa.sun_path))
        return vb_seterr(e, -ENAMETOOLONG, "socket path %s is too long", path);
    strcpy(sa.sun_path, path);
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return vb_seterr(e, -EEXIST, "%s exists and is not a socket", path);
        unlink(path);
    }
    {
        g_autofree char *dir = g_path_get_dirname(path);
        int r = vb_mkdir_p(dir, 0750);
        if (r)
            return vb_seterr(e, r, "mkdir %s: %s", dir, strerror(-r));
        /* QEMU (socket_group) must be able to reach the socket */
        if (group && getgrnam(group) && chown(dir, (uid_t)-1, getgrnam(group)->gr_gid) == 0)
            chmod(dir, 0750);
    }
    if (group) {
        struct group *gr = getgrnam(group);
        if (!gr)
            return vb_seterr(e, -ENOENT, "socket_group '%s' does not exist", group);
        gid = gr->gr_gid;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return vb_seterr(e, -errno, "socket: %s", strerror(errno));
    /* only the VM's QEMU may connect: root, or QEMU's group when configured */
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        (group && chown(path, (uid_t)-1, gid) < 0) || chmod(path, group ? 0660 : 0600) < 0 ||
        listen(fd, 16) < 0) {
        int r = vb_seterr(e, -errno, "listen on %s: %s", path, strerror(errno));
        close(fd);
        return r;
    }
    return fd;
}

static void disk_free(gpointer p)
{
    struct vbd_disk *d = p;

    g_free(d->serial);
    g_free(d->image);
    g_free(d->format);
    g_free(d->backing_format);
    g_free(d->target);
    g_free(d);
}

void vbd_vm_unref(struct vbd_vm *vm)
{
    if (--vm->refs > 0)
        return;
    g_free(vm->name);
    g_free(vm->socket_path);
    g_free(vm->qmp);
    g_free(vm->libvirt);
    g_free(vm->pidfile);
    g_free(vm->peer_label);
    g_free(vm->dedup_group);
    g_ptr_array_free(vm->disks, TRUE);
    g_free(vm);
}

static void vm_stop_listening(struct vbd_vm *vm)
{
    if (vm->listen_src)
        g_source_remove(vm->listen_src);
    vm->listen_src = 0;
    if (vm->listen_fd >= 0) {
        close(vm->listen_fd);
        unlink(vm->socket_path);
    }
    vm->listen_fd = -1;
}

/* A disk on its tracking overlay (docs/cbt.md) is the image under it:
 * libvirt names the overlay as the disk's source once vbackupd put the disk
 * on it, and a configuration may name either.  The tracking record says
 * which image an overlay belongs to. */
static void disk_image(struct vbd_vm *vm, struct vbd_vm_cfg *vc, struct vbd_disk *dk)
{
    struct vb_cbt_record *rec = NULL;
    g_autofree char *real = NULL;
    vb_error e = { 0 };
    char *r;
    int ret;

    ret = vb_cbt_load(vm->d->cfg->state_dir, vm->name, dk->serial, &rec, &e);
    if (ret == -ENOENT)
        return;
    if (ret) {
        vbd_log("VM %s disk %s: %s; the record is ignored", vm->name, dk->serial,
                vb_strerror(&e));
        return;
    }
    r = realpath(dk->image, NULL);
    real = g_strdup(r ? r : dk->image);
    free(r);
    if (!vc->qmp && !vc->libvirt)
        vbd_log("VM %s disk %s: the tracking record names the overlay %s, but the VM has no "
                "point-in-time view any more: vbackupd reads %s as configured", vm->name,
                dk->serial, rec->overlay, dk->image);
    else if (vb_cbt_names_overlay(rec, real)) {
        g_free(dk->image);
        g_free(dk->format);
        dk->image = g_strdup(rec->image);
        dk->format = g_strdup(rec->format);
    } else if (strcmp(real, rec->image)) {
        vbd_log("VM %s disk %s: the tracking record is of %s, not of %s; it is ignored",
                vm->name, dk->serial, rec->image, real);
    }
    vb_cbt_free(rec);
}

static void vm_set_disks(struct vbd_vm *vm, struct vbd_vm_cfg *vc)
{
    if (vm->disks)
        g_ptr_array_free(vm->disks, TRUE);
    vm->disks = g_ptr_array_new_with_free_func(disk_free);
    vm->cbt = vc->cbt;
    for (guint k = 0; k < vc->disks->len; k++) {
        struct vbd_disk_cfg *dc = vc->disks->pdata[k];
        struct vbd_disk *dk = g_new0(struct vbd_disk, 1);
        dk->serial = g_strdup(dc->serial);
        dk->image = g_strdup(dc->image);
        dk->format = g_strdup(dc->format);
        dk->backing_format = g_strdup(dc->backing_format);
        dk->target = g_strdup(dc->target);
        disk_image(vm, vc, dk);
        g_ptr_array_add(vm->disks, dk);
    }
    g_free(vm->qmp);
    vm->qmp = g_strdup(vc->qmp);
    g_free(vm->libvirt);
    vm->libvirt = g_strdup(vc->libvirt);
    g_free(vm->pidfile);
    vm->pidfile = g_strdup(vc->pidfile);
    g_free(vm->peer_label);
    vm->peer_label = g_strdup(vc->peer_label);
    {
        const char *g = vc->dedup_group ? vc->dedup_group : vm->d->cfg->dedup_group;
        g_free(vm->dedup_group);
        vm->dedup_group = g_strdup(g && !strcmp(g, "@vm") ? vm->name : g ? g : "");
    }
    vm->quota = vc->quota;
}

int vbd_vms_refresh(struct vbd *d, vb_error *e)
{
    GPtrArray *all = g_ptr_array_new();
    int ret;

    for (guint i = 0; i < d->cfg->vms->len; i++)
        g_ptr_array_add(all, d->cfg->vms->pdata[i]);
    for (guint i = 0; d->libvirt_vms && i < d->libvirt_vms->len; i++) {
        struct vbd_vm_cfg *lv = d->libvirt_vms->pdata[i];
        bool clash = false;
        for (guint k = 0; k < all->len; k++) {
            struct vbd_vm_cfg *x = all->pdata[k];
            if (!strcmp(x->name, lv->name) || !strcmp(x->socket, lv->socket)) {
                vbd_log("libvirt domain %s ignored: its name or socket %s is already used by "
                        "VM %s", lv->name, lv->socket, x->name);
                clash = true;
            }
        }
        if (clash)
            continue;
        /* a domain's QEMU is the process whose pid libvirt keeps in
         * pid_dir/NAME.pid; its quotas are [libvirt]'s */
        g_free(lv->pidfile);
        lv->pidfile = d->cfg->libvirt_pid_dir && d->cfg->libvirt_pid_dir[0]
                          ? g_strdup_printf("%s/%s.pid", d->cfg->libvirt_pid_dir, lv->libvirt)
                          : NULL;
        lv->quota = d->cfg->libvirt_quota;
        g_ptr_array_add(all, lv);
    }
    ret = vbd_vms_apply(d, all, e);
    g_ptr_array_free(all, TRUE);
    return ret;
}

int vbd_vms_apply(struct vbd *d, GPtrArray *vms, vb_error *e)
{
    GHashTable *keep = g_hash_table_new(g_str_hash, g_str_equal);
    GHashTableIter it;
    gpointer k, v;
    int ret = 0;

    for (guint i = 0; i < vms->len; i++) {
        struct vbd_vm_cfg *vc = vms->pdata[i];
        struct vbd_vm *vm = g_hash_table_lookup(d->vms, vc->name);

        g_hash_table_add(keep, vc->name);
        if (vm && strcmp(vm->socket_path, vc->socket)) {
            /* moved: drop the old socket and its connections */
            vm_stop_listening(vm);
            while (vm->conns)
                conn_close(vm->conns->data);
            g_free(vm->socket_path);
            vm->socket_path = g_strdup(vc->socket);
        }
        if (!vm) {
            vm = g_new0(struct vbd_vm, 1);
            vm->refs = 1;
            vm->d = d;
            vm->name = g_strdup(vc->name);
            vm->socket_path = g_strdup(vc->socket);
            vm->listen_fd = -1;
            g_hash_table_insert(d->vms, vm->name, vm);
        }
        vm_set_disks(vm, vc);
        if (vm->listen_fd < 0) {
            int fd = listen_unix(vm->socket_path, d->cfg->socket_group, e);
            if (fd < 0) {
                vb_prefixerr(e, "VM %s", vm->name);
                ret = fd;
                break;
            }
            vm->listen_fd = fd;
            vm->listen_src = g_unix_fd_add(fd, G_IO_IN, on_accept, vm);
            vbd_log("VM %s: listening on %s (%u disks%s%s)", vm->name, vm->socket_path,
                    vm->disks->len, vm->libvirt ? ", from libvirt" : vm->qmp ? ", QMP" : "",
                    vm->pidfile || vm->peer_label ? ", peer checked" : "");
            if (!vm->pidfile && !vm->peer_label && d->cfg->socket_group)
                vbd_log("VM %s: any process of group %s can connect and act as this VM (no "
                        "pidfile or peer_label)", vm->name, d->cfg->socket_group);
        }
    }
    if (!ret) {
        g_hash_table_iter_init(&it, d->vms);
        while (g_hash_table_iter_next(&it, &k, &v)) {
            struct vbd_vm *vm = v;
            if (g_hash_table_contains(keep, vm->name))
                continue;
            vbd_log("VM %s: removed from the configuration", vm->name);
            vm->removed = true;
            vm_stop_listening(vm);
            g_hash_table_iter_steal(&it);
            while (vm->conns)
                conn_close(vm->conns->data);
            vbd_vm_unref(vm);
        }
    }
    g_hash_table_destroy(keep);
    return ret;
}

void vbd_vms_close_all(struct vbd *d)
{
    GHashTableIter it;
    gpointer k, v;

    g_hash_table_iter_init(&it, d->vms);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        struct vbd_vm *vm = v;
        vm_stop_listening(vm);
        g_hash_table_iter_steal(&it);
        while (vm->conns) {
            struct vbd_conn *c = vm->conns->data;
            conn_flush(c);
            conn_close(c);
        }
        vbd_vm_unref(vm);
    }
}
