/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * VMs from libvirt ([libvirt] uri = qemu:///system).  vbackupd looks at the
 * running domains and at their lifecycle events; a domain whose XML adds
 * the virtio-backup device through <qemu:commandline> (a socket chardev in
 * vbackupd's runtime folder, and virtio-backup-pci using it) becomes a VM:
 * its name is the domain's, its socket the chardev's path, its disks the
 * <disk> elements with a <serial> (source file, driver type, target).  A
 * disk's format is its <driver type=...>; a disk without one is refused,
 * never probed.
 * Sockets appear when domains start and go when they stop.
 *
 * Under libvirt the monitor belongs to libvirt, so the point-in-time view
 * (view.c) uses libvirt's own calls: a disk-only external snapshot without
 * metadata (virDomainSnapshotCreateXML), then a shallow active block commit
 * with pivot (virDomainBlockCommit(SHALLOW | ACTIVE),
 * virDomainBlockJobAbort(PIVOT)); libvirt's picture of the domain's disks
 * stays true throughout.  The checks read QEMU's chain with query-block
 * through virDomainQemuMonitorCommand.  Those calls block, so they run on
 * the view threads, each with its own connection.
 */
#include "view.h"

#include <libvirt/libvirt.h>
#include <libvirt/libvirt-qemu.h>
#include <libvirt/virterror.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct lv {
    struct vbd *d;
    virConnectPtr conn;
    int callback;
    GThread *loop;
    volatile int stop;
    guint retry;
};

void vbd_vm_cfg_free(gpointer p);

static const char *lv_error(void)
{
    const virError *err = virGetLastError();

    return err && err->message ? err->message : "unknown libvirt error";
}

/* ---- the domain XML ----------------------------------------------------------------- */

struct xml_ctx {
    GPtrArray *path;         /* element stack */
    char *name;
    struct vbd_disk_cfg *disk;    /* current <disk> */
    GPtrArray *disks;
    GPtrArray *args;         /* qemu:arg values */
    GPtrArray *all_targets;  /* the target of every <disk> */
    bool in_serial, in_name;
    GString *text;
};

static const char *attr(const char **names, const char **values, const char *want)
{
    for (; *names; names++, values++)
        if (!strcmp(*names, want))
            return *values;
    return NULL;
}

static void x_start(GMarkupParseContext *c, const char *el, const char **an, const char **av,
                    gpointer u, GError **err)
{
    struct xml_ctx *x = u;
    const char *parent = x->path->len ? x->path->pdata[x->path->len - 1] : "";

    g_ptr_array_add(x->path, g_strdup(el));
    if (!strcmp(el, "name") && !strcmp(parent, "domain")) {
        x->in_name = true;
        g_string_truncate(x->text, 0);
    } else if (!strcmp(el, "disk") && !strcmp(parent, "devices")) {
        const char *type = attr(an, av, "type"), *dev = attr(an, av, "device");
        if (type && !strcmp(type, "file") && (!dev || !strcmp(dev, "disk"))) {
            x->disk = g_new0(struct vbd_disk_cfg, 1);
        }
    } else if (!strcmp(el, "target") && !strcmp(parent, "disk") && attr(an, av, "dev") &&
               x->path->len >= 3 && !strcmp(x->path->pdata[x->path->len - 3], "devices")) {
        g_ptr_array_add(x->all_targets, g_strdup(attr(an, av, "dev")));
        if (x->disk)
            x->disk->target = g_strdup(attr(an, av, "dev"));
    } else if (x->disk && !strcmp(parent, "disk")) {
        if (!strcmp(el, "source") && attr(an, av, "file"))
            x->disk->image = g_strdup(attr(an, av, "file"));
        else if (!strcmp(el, "driver") && attr(an, av, "type"))
            x->disk->format = g_strdup(attr(an, av, "type"));
        else if (!strcmp(el, "serial")) {
            x->in_serial = true;
            g_string_truncate(x->text, 0);
        }
    } else if (!strcmp(el, "qemu:arg") && attr(an, av, "value")) {
        g_ptr_array_add(x->args, g_strdup(attr(an, av, "value")));
    }
}

static void x_end(GMarkupParseContext *c, const char *el, gpointer u, GError **err)
{
    struct xml_ctx *x = u;

    if (x->in_name && !strcmp(el, "name")) {
        x->name = g_strdup(x->text->str);
        x->in_name = false;
    } else if (x->in_serial && !strcmp(el, "serial")) {
        g_free(x->disk->serial);
        x->disk->serial = g_strdup(g_strstrip(x->text->str));
        x->in_serial = false;
    } else if (x->disk && !strcmp(el, "disk")) {
        g_ptr_array_add(x->disks, x->disk);
        x->disk = NULL;
    }
    g_free(g_ptr_array_steal_index(x->path, x->path->len - 1));
}

static void x_text(GMarkupParseContext *c, const char *t, gsize n, gpointer u, GError **err)
{
    struct xml_ctx *x = u;

    if (x->in_name || x->in_serial)
        g_string_append_len(x->text, t, (gssize)n);
}

static void disk_cfg_free(gpointer p)
{
    struct vbd_disk_cfg *dc = p;

    g_free(dc->serial);
    g_free(dc->image);
    g_free(dc->format);
    g_free(dc->backing_format);
    g_free(dc->target);
    g_free(dc);
}

/* The socket path of <qemu:arg> -chardev socket,id=X,path=P used by
 * -device virtio-backup-pci,chardev=X; NULL when the domain has no device. */
static char *backup_socket(GPtrArray *args)
{
    for (guint i = 0; i + 1 < args->len; i++) {
        const char *opt = args->pdata[i], *val = args->pdata[i + 1];
        g_auto(GStrv) kv = NULL;
        const char *id = NULL, *path = NULL;

        if (strcmp(opt, "-chardev") || strncmp(val, "socket,", 7))
            continue;
        kv = g_strsplit(val, ",", -1);
        for (char **k = kv; *k; k++) {
            if (!strncmp(*k, "id=", 3))
                id = *k + 3;
            else if (!strncmp(*k, "path=", 5))
                path = *k + 5;
        }
        if (!id || !path)
            continue;
        for (guint k = 0; k + 1 < args->len; k++) {
            const char *o = args->pdata[k], *v = args->pdata[k + 1];
            g_autofree char *want = g_strdup_printf("chardev=%s", id);
            if (!strcmp(o, "-device") && !strncmp(v, "virtio-backup-pci,", 18)) {
                g_auto(GStrv) dkv = g_strsplit(v, ",", -1);
                for (char **x = dkv; *x; x++)
                    if (!strcmp(*x, want))
                        return g_strdup(path);
            }
        }
    }
    return NULL;
}

static void xml_clear(struct xml_ctx *x)
{
    g_free(x->name);
    if (x->disk)
        disk_cfg_free(x->disk);
    g_ptr_array_free(x->path, TRUE);
    g_ptr_array_free(x->disks, TRUE);
    g_ptr_array_free(x->args, TRUE);
    g_ptr_array_free(x->all_targets, TRUE);
    g_string_free(x->text, TRUE);
}

static bool parse_domain(const char *xml, struct xml_ctx *x)
{
    GMarkupParser parser = { .start_element = x_start, .end_element = x_end, .text = x_text };
    GMarkupParseContext *ctx;
    GError *ge = NULL;
    bool ok;

    memset(x, 0, sizeof(*x));
    x->path = g_ptr_array_new_with_free_func(g_free);
    x->disks = g_ptr_array_new_with_free_func(disk_cfg_free);
    x->args = g_ptr_array_new_with_free_func(g_free);
    x->all_targets = g_ptr_array_new_with_free_func(g_free);
    x->text = g_string_new(NULL);
    ctx = g_markup_parse_context_new(&parser, 0, x, NULL);
    ok = g_markup_parse_context_parse(ctx, xml, -1, &ge) &&
         g_markup_parse_context_end_parse(ctx, &ge);
    if (!ok) {
        vbd_log("libvirt: cannot parse a domain's XML: %s", ge->message);
        g_error_free(ge);
    }
    g_markup_parse_context_free(ctx);
    return ok;
}

/* A VM config from a domain's XML, or NULL (with a reason logged) */
static struct vbd_vm_cfg *vm_from_xml(struct vbd *d, const char *xml)
{
    struct xml_ctx x;
    struct vbd_vm_cfg *vm = NULL;
    char *sock = NULL;

    if (!parse_domain(xml, &x))
        goto out;
    if (!x.name || !(sock = backup_socket(x.args)))
        goto out;           /* no virtio-backup device: not ours */
    if (!vb_valid_name(x.name)) {
        vbd_log("libvirt: domain '%s' ignored: vbackup needs names of letters, digits, . _ -",
                x.name);
        goto out;
    }
    {
        /* the socket must be where vbackupd keeps VM sockets */
        g_autofree char *dir = g_path_get_dirname(sock);
        if (strcmp(dir, d->cfg->runtime_dir)) {
            vbd_log("libvirt: domain %s ignored: its vbackup socket %s is not in %s", x.name,
                    sock, d->cfg->runtime_dir);
            goto out;
        }
    }
    vm = g_new0(struct vbd_vm_cfg, 1);
    vm->name = g_strdup(x.name);
    vm->socket = sock;
    sock = NULL;
    vm->libvirt = g_strdup(x.name);
    vm->cbt = d->cfg->libvirt_cbt;
    vm->disks = g_ptr_array_new_with_free_func(disk_cfg_free);
    for (guint i = 0; i < x.disks->len; i++) {
        struct vbd_disk_cfg *dc = x.disks->pdata[i];
        if (!dc->serial || !*dc->serial || !dc->image || !dc->target)
            continue;       /* vbackup names disks by serial */
        /* the format is libvirt's, never guessed from the image (the guest writes it) */
        if (!dc->format) {
            vbd_log("libvirt: domain %s: disk %s (serial %s) refused: its <driver> names no "
                    "type, and vbackupd never guesses a format from an image's content, which "
                    "the guest writes; give it <driver name='qemu' type='raw'/> (or 'qcow2')",
                    x.name, dc->target, dc->serial);
            continue;
        }
        if (!vb_fmt_valid(dc->format)) {
            vbd_log("libvirt: domain %s: disk %s (serial %s) ignored: vbackup reads raw and "
                    "qcow2 images, not %s", x.name, dc->target, dc->serial, dc->format);
            continue;
        }
        x.disks->pdata[i] = NULL;
        g_ptr_array_add(vm->disks, dc);
    }
    g_ptr_array_set_free_func(x.disks, NULL);
    for (guint i = 0; i < x.disks->len; i++)
        if (x.disks->pdata[i])
            disk_cfg_free(x.disks->pdata[i]);
    g_ptr_array_set_size(x.disks, 0);
out:
    g_free(sock);
    xml_clear(&x);
    return vm;
}

/* ---- discovery ------------------------------------------------------------------------ */

static void forget_domain(struct vbd *d, const char *name)
{
    for (guint i = 0; i < d->libvirt_vms->len; i++) {
        struct vbd_vm_cfg *v = d->libvirt_vms->pdata[i];
        if (!strcmp(v->libvirt, name)) {
            g_ptr_array_remove_index(d->libvirt_vms, i);
            return;
        }
    }
}

static void learn_domain(struct lv *lv, virDomainPtr dom)
{
    struct vbd *d = lv->d;
    const char *name = virDomainGetName(dom);
    char *xml = virDomainGetXMLDesc(dom, 0);
    struct vbd_vm_cfg *vm;

    forget_domain(d, name);
    if (!xml) {
        vbd_log("libvirt: domain %s: %s", name, lv_error());
        return;
    }
    vm = vm_from_xml(d, xml);
    free(xml);
    if (vm) {
        vbd_log("libvirt: domain %s has the device: socket %s, %u disks", vm->name, vm->socket,
                vm->disks->len);
        g_ptr_array_add(d->libvirt_vms, vm);
    }
}

struct lv_event {
    struct lv *lv;
    char *name;
    int event;
};

static gboolean on_event(gpointer opaque)
{
    struct lv_event *ev = opaque;
    struct lv *lv = ev->lv;
    vb_error e = { 0 };

    if (!lv->stop && lv->conn) {
        if (ev->event == VIR_DOMAIN_EVENT_STARTED || ev->event == VIR_DOMAIN_EVENT_RESUMED) {
            virDomainPtr dom = virDomainLookupByName(lv->conn, ev->name);
            if (dom) {
                learn_domain(lv, dom);
                virDomainFree(dom);
            }
        } else if (ev->event == VIR_DOMAIN_EVENT_STOPPED ||
                   ev->event == VIR_DOMAIN_EVENT_SHUTDOWN) {
            if (ev->event == VIR_DOMAIN_EVENT_STOPPED)
                forget_domain(lv->d, ev->name);
        }
        if (vbd_vms_refresh(lv->d, &e))
            vbd_log("libvirt: %s", vb_strerror(&e));
    }
    g_free(ev->name);
    g_free(ev);
    return G_SOURCE_REMOVE;
}

/* libvirt's event thread */
static int lifecycle_cb(virConnectPtr conn, virDomainPtr dom, int event, int detail, void *opaque)
{
    struct lv_event *ev = g_new0(struct lv_event, 1);

    ev->lv = opaque;
    ev->name = g_strdup(virDomainGetName(dom));
    ev->event = event;
    g_idle_add(on_event, ev);
    return 0;
}

static gpointer event_loop(gpointer opaque)
{
    struct lv *lv = opaque;

    while (!lv->stop)
        if (virEventRunDefaultImpl() < 0)
            g_usleep(100000);
    return NULL;
}

static void close_cb(virConnectPtr conn, int reason, void *opaque);

static int connect_libvirt(struct lv *lv, vb_error *e)
{
    virDomainPtr *doms = NULL;
    int n;

    lv->conn = virConnectOpen(lv->d->cfg->libvirt_uri);
    if (!lv->conn)
        return vb_seterr(e, -ECONNREFUSED, "libvirt %s: %s", lv->d->cfg->libvirt_uri, lv_error());
    virConnectRegisterCloseCallback(lv->conn, close_cb, lv, NULL);
    lv->callback = virConnectDomainEventRegisterAny(lv->conn, NULL, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                                    VIR_DOMAIN_EVENT_CALLBACK(lifecycle_cb), lv,
                                                    NULL);
    if (lv->callback < 0)
        return vb_seterr(e, -EIO, "libvirt: cannot watch domain events: %s", lv_error());
    g_ptr_array_set_size(lv->d->libvirt_vms, 0);
    n = virConnectListAllDomains(lv->conn, &doms, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
    for (int i = 0; i < n; i++) {
        learn_domain(lv, doms[i]);
        virDomainFree(doms[i]);
    }
    free(doms);
    vbd_log("libvirt: connected to %s, %d running domains", lv->d->cfg->libvirt_uri, n);
    return vbd_vms_refresh(lv->d, e);
}

static gboolean on_retry(gpointer opaque)
{
    struct lv *lv = opaque;
    vb_error e = { 0 };

    if (lv->stop)
        return G_SOURCE_REMOVE;
    if (connect_libvirt(lv, &e) == 0) {
        lv->retry = 0;
        return G_SOURCE_REMOVE;
    }
    if (lv->conn) {
        virConnectClose(lv->conn);
        lv->conn = NULL;
    }
    return G_SOURCE_CONTINUE;
}

static gboolean on_closed(gpointer opaque)
{
    struct lv *lv = opaque;

    vbd_log("libvirt: the connection was closed; reconnecting every 5 s");
    if (lv->conn) {
        virConnectClose(lv->conn);
        lv->conn = NULL;
    }
    if (!lv->retry)
        lv->retry = g_timeout_add_seconds(5, on_retry, lv);
    return G_SOURCE_REMOVE;
}

static void close_cb(virConnectPtr conn, int reason, void *opaque)
{
    g_idle_add(on_closed, opaque);
}

int vbd_libvirt_start(struct vbd *d, vb_error *e)
{
    struct lv *lv = g_new0(struct lv, 1);

    lv->d = d;
    d->lv = lv;
    d->libvirt_vms = g_ptr_array_new_with_free_func(vbd_vm_cfg_free);
    if (virEventRegisterDefaultImpl() < 0)
        return vb_seterr(e, -EIO, "libvirt: event loop: %s", lv_error());
    lv->loop = g_thread_new("libvirt-events", event_loop, lv);
    if (connect_libvirt(lv, e)) {
        /* libvirtd may start after us: keep trying */
        vbd_log("%s; retrying every 5 s", vb_strerror(e));
        if (lv->conn) {
            virConnectClose(lv->conn);
            lv->conn = NULL;
        }
        lv->retry = g_timeout_add_seconds(5, on_retry, lv);
    }
    return 0;
}

void vbd_libvirt_stop(struct vbd *d)
{
    struct lv *lv = d->lv;

    if (!lv)
        return;
    lv->stop = 1;
    if (lv->retry)
        g_source_remove(lv->retry);
    if (lv->conn) {
        if (lv->callback >= 0)
            virConnectDomainEventDeregisterAny(lv->conn, lv->callback);
        virConnectUnregisterCloseCallback(lv->conn, close_cb);
        virConnectClose(lv->conn);
    }
    /* the event loop wakes up at its next timeout */
    virEventAddTimeout(0, NULL, NULL, NULL);
    g_thread_join(lv->loop);
    g_ptr_array_free(d->libvirt_vms, TRUE);
    d->libvirt_vms = NULL;
    g_free(lv);
    d->lv = NULL;
}

/* ---- the view backend (view.c), on view threads ---------------------------------------- */

struct lv_view {
    virConnectPtr c;
    virDomainPtr dom;
    char *domain;
};

static void lv_be_close(void *conn)
{
    struct lv_view *lc = conn;

    if (lc->dom)
        virDomainFree(lc->dom);
    if (lc->c)
        virConnectClose(lc->c);
    g_free(lc->domain);
    g_free(lc);
}

/* A connection of the view thread's own, and the domain. */
static void *lv_be_open(struct vbd_view *v, vb_error *e)
{
    struct lv_view *lc = g_new0(struct lv_view, 1);

    lc->domain = g_strdup(v->lv_domain);
    if (!(lc->c = virConnectOpen(v->lv_uri))) {
        vb_seterr(e, -ECONNREFUSED, "libvirt %s: %s", v->lv_uri, lv_error());
        lv_be_close(lc);
        return NULL;
    }
    if (!(lc->dom = virDomainLookupByName(lc->c, v->lv_domain))) {
        vb_seterr(e, -ENOENT, "libvirt: domain %s: %s", v->lv_domain, lv_error());
        lv_be_close(lc);
        return NULL;
    }
    return lc;
}

/* query-block through libvirt: read-only, it changes nothing libvirt
 * knows (libvirt marks the domain "custom-monitor" tainted, as it does for
 * every monitor command it did not send itself). */
static int lv_be_query_block(void *conn, json_object **blocks, vb_error *e)
{
    struct lv_view *lc = conn;
    char *out = NULL;
    json_object *o, *r;

    *blocks = NULL;
    if (virDomainQemuMonitorCommand(lc->dom, "{\"execute\":\"query-block\"}", &out, 0) < 0)
        return vb_seterr(e, -EIO, "libvirt: query-block of %s: %s", lc->domain, lv_error());
    o = json_tokener_parse(out);
    free(out);
    if (!o || !json_object_object_get_ex(o, "return", &r) ||
        !json_object_is_type(r, json_type_array)) {
        json_object_put(o);
        return vb_seterr(e, -EPROTO, "libvirt: query-block of %s: no answer", lc->domain);
    }
    *blocks = json_object_get(r);
    json_object_put(o);
    return 0;
}

/* A disk-only external snapshot without metadata of the view's disks
 * (every other disk of the domain: snapshot='no'), atomically. */
static int lv_be_snapshot(void *conn, struct vbd_view *v, vb_error *e)
{
    struct lv_view *lc = conn;
    virDomainSnapshotPtr snap;
    GString *xml = g_string_new("<domainsnapshot><disks>");
    char *dxml = virDomainGetXMLDesc(lc->dom, 0);
    bool reuse = v->disks->len > 0;
    int ret = 0;

    for (guint i = 0; i < v->disks->len; i++) {
        struct vbd_view_disk *vd = v->disks->pdata[i];
        reuse &= vd->precreated;
        g_autofree char *esc = g_markup_escape_text(vd->overlay, -1);
        g_string_append_printf(xml, "<disk name='%s' snapshot='external'>"
                               "<source file='%s'/><driver type='qcow2'/></disk>",
                               vd->target, esc);
    }
    if (dxml) {
        struct xml_ctx x;
        if (parse_domain(dxml, &x)) {
            for (guint k = 0; k < x.all_targets->len; k++) {
                bool ours = false;
                for (guint i = 0; i < v->disks->len; i++)
                    ours |= !g_strcmp0(x.all_targets->pdata[k],
                                       ((struct vbd_view_disk *)v->disks->pdata[i])->target);
                if (!ours)
                    g_string_append_printf(xml, "<disk name='%s' snapshot='no'/>",
                                           (char *)x.all_targets->pdata[k]);
            }
            xml_clear(&x);
        }
    }
    g_string_append(xml, "</disks></domainsnapshot>");
    /* tracking overlays are made by vbackupd (docs/cbt.md); libvirt takes
     * them over and names them in the domain's definition, live and
     * persistent, so a restarted domain runs on them */
    snap = virDomainSnapshotCreateXML(lc->dom, xml->str, VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY |
                                                         VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA |
                                                         VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC |
                                                         (reuse ? VIR_DOMAIN_SNAPSHOT_CREATE_REUSE_EXT
                                                                : 0));
    if (!snap)
        ret = vb_seterr(e, -EIO, "libvirt: snapshot of %s: %s", lc->domain, lv_error());
    else
        virDomainSnapshotFree(snap);
    free(dxml);
    g_string_free(xml, TRUE);
    return ret;
}

/* SHALLOW: the base is the image right under the overlay, never one
 * further down; ACTIVE: the overlay is the active layer; then the pivot
 * puts the disk back on that image. */
static int lv_be_commit(void *conn, struct vbd_view *v, guint i, const struct vbd_chain *now,
                        vb_error *e)
{
    struct lv_view *lc = conn;
    struct vbd_view_disk *vd = v->disks->pdata[i];
    virDomainBlockJobInfo info;
    double t0 = vb_now();
    int r;

    if (!vd->target)
        return vb_seterr(e, -EINVAL, "libvirt: no target for %s", vd->overlay);
    if (virDomainBlockCommit(lc->dom, vd->target, NULL, NULL, 0,
                             VIR_DOMAIN_BLOCK_COMMIT_SHALLOW | VIR_DOMAIN_BLOCK_COMMIT_ACTIVE) < 0)
        return vb_seterr(e, -EIO, "libvirt: block commit of %s %s: %s", lc->domain, vd->target,
                         lv_error());
    /* ready when the mirror has caught up; then pivot back to the image */
    for (;;) {
        r = virDomainGetBlockJobInfo(lc->dom, vd->target, &info, 0);
        if (r < 0)
            return vb_seterr(e, -EIO, "libvirt: block job of %s %s: %s", lc->domain,
                             vd->target, lv_error());
        if (r == 0)
            return vb_seterr(e, -EIO, "libvirt: the block commit of %s %s vanished before "
                             "its pivot", lc->domain, vd->target);
        if (info.end > 0 && info.cur == info.end &&
            virDomainBlockJobAbort(lc->dom, vd->target, VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT) == 0)
            break;
        if (vb_now() - t0 > 3600)
            return vb_seterr(e, -ETIMEDOUT, "libvirt: block commit of %s %s did not finish",
                             lc->domain, vd->target);
        g_usleep(50000);
    }
    while (virDomainGetBlockJobInfo(lc->dom, vd->target, &info, 0) == 1 && vb_now() - t0 < 3600)
        g_usleep(20000);
    return 0;
}

/* The tracking overlay (now->files[1]) into the image right under it
 * (SHALLOW), while the domain runs on the view's overlay: not the active
 * layer, so the job ends by itself; libvirt updates the domain's chain. */
static int lv_be_commit_down(void *conn, struct vbd_view *v, guint i, const struct vbd_chain *now,
                             vb_error *e)
{
    struct lv_view *lc = conn;
    struct vbd_view_disk *vd = v->disks->pdata[i];
    virDomainBlockJobInfo info;
    double t0 = vb_now();
    int r;

    if (!vd->target || now->files->len < 3)
        return vb_seterr(e, -EINVAL, "libvirt: no target or no tracking overlay for %s",
                         vd->overlay);
    if (virDomainBlockCommit(lc->dom, vd->target, NULL, now->files->pdata[1], 0,
                             VIR_DOMAIN_BLOCK_COMMIT_SHALLOW) < 0)
        return vb_seterr(e, -EIO, "libvirt: block commit of %s %s (top %s): %s", lc->domain,
                         vd->target, (char *)now->files->pdata[1], lv_error());
    while ((r = virDomainGetBlockJobInfo(lc->dom, vd->target, &info, 0)) == 1) {
        if (vb_now() - t0 > 3600)
            return vb_seterr(e, -ETIMEDOUT, "libvirt: block commit of %s %s did not finish",
                             lc->domain, vd->target);
        g_usleep(20000);
    }
    if (r < 0)
        return vb_seterr(e, -EIO, "libvirt: block job of %s %s: %s", lc->domain, vd->target,
                         lv_error());
    return 0;       /* the chain tells whether it worked (view.c) */
}

const struct vbd_view_backend vbd_view_libvirt = {
    .name = "libvirt",
    .open = lv_be_open,
    .close = lv_be_close,
    .query_block = lv_be_query_block,
    .snapshot = lv_be_snapshot,
    .commit = lv_be_commit,
    .commit_down = lv_be_commit_down,
};
