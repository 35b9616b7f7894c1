/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The point-in-time view of a job's disks, for VMs with a QMP socket or
 * from libvirt.  At SEAL every disk the job reads gets a temporary external
 * overlay, all at one instant: QEMU flushes the images, reopens them
 * read-only and writes to the overlays from then on, so the guest thaws at
 * once and the job reads immutable images as long as it likes.  Once the
 * job has read everything (before its snapshot is committed), or when it
 * ends otherwise, each overlay is folded back into exactly the image that
 * was active before, and nothing else:
 *
 *   QMP      block-commit device=D top-node=OVERLAY base-node=IMAGE
 *   libvirt  virDomainBlockCommit(SHALLOW | ACTIVE), then pivot
 *
 * and checked: QEMU runs on the same chain as before the view (query-block),
 * the images under the overlay were not written while the view was held,
 * and the images under the VM's own image were not written at all (device,
 * inode, size and mtime, taken before the snapshot).  A job whose view
 * fails a check fails, loudly, with the reason.  Backends: qmp.c, libvirt.c.
 * They block, so they run on threads of their own, never on the main loop.
 *
 * Changed-block tracking (docs/cbt.md) adds one normal chain: a tracked
 * disk runs on its tracking overlay right over its image between backups.
 * Its views are taken over that overlay as over any active image, and
 * folded back into it; only a tracked disk job that has read everything
 * keeps its overlay (vbackupd made it: extended L2) as the next tracking
 * overlay and folds the previous one, exactly, into the image under it:
 *
 *   QMP      block-commit device=D top-node=TRACKING base-node=IMAGE
 *   libvirt  virDomainBlockCommit(top=TRACKING, SHALLOW)
 *
 * and checks that QEMU then runs on the new overlay over exactly the chain
 * under the old one, and that the files under the image were not written.
 */
#include "view.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "overlay.h"

static json_object *strf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static json_object *strf(const char *fmt, ...)
{
    va_list ap;
    char buf[640];

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    return json_object_new_string(buf);
}

/* Say what went wrong: summary (no host paths: the guest sees it) and the
 * details (the log); the first error's code and summary stay, details add up. */
static void problem(struct vbd_view *v, int code, const char *summary, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void problem(struct vbd_view *v, int code, const char *summary, const char *fmt, ...)
{
    char msg[512];
    size_t n = strlen(v->e.msg);
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (!v->err) {
        v->err = code ? code : -EIO;
        v->e.code = v->err;
        snprintf(v->summary, sizeof(v->summary), "%s", summary);
    }
    snprintf(v->e.msg + n, sizeof(v->e.msg) - n, "%s%s", n ? "; " : "", msg);
}

static void view_disk_free(gpointer p)
{
    struct vbd_view_disk *vd = p;

    g_free(vd->image);
    g_free(vd->serial);
    g_free(vd->active);
    g_free(vd->cbt_why);
    vb_cbt_free(vd->rec);
    vb_cbt_free(vd->next);
    g_free(vd->target);
    g_free(vd->overlay);
    g_free(vd->top_node);
    vbd_chain_free(vd->before);
    g_free(vd->ids);
    g_free(vd);
}

static struct vbd_view *view_new(struct vbd_job *j)
{
    struct vbd_view *v = g_new0(struct vbd_view, 1);

    v->job = j;
    j->refs++;
    v->job_id = j->id;
    v->vm = g_strdup(j->vm->name);
    v->disks = g_ptr_array_new_with_free_func(view_disk_free);
    return v;
}

static void view_free(struct vbd_view *v)
{
    g_ptr_array_free(v->disks, TRUE);
    g_free(v->state_dir);
    g_free(v->qmp_path);
    g_free(v->lv_uri);
    g_free(v->lv_domain);
    g_free(v->vm);
    g_free(v);
}

/* IMAGE.vbackup-top: the disk's tracking overlay, the file to start QEMU on
 * (docs/cbt.md).  Pointed elsewhere only once QEMU's chain no longer holds
 * the file it pointed at: QEMU names a layer it opened through the link by
 * the link, which chain.c resolves. */
static void point_top(const char *image, const char *file)
{
    g_autofree char *link = g_strdup_printf("%s.vbackup-top", image);
    g_autofree char *tmp = g_strdup_printf("%s.vbackup-top.tmp", image);
    g_autofree char *target = vbd_image_path(file);
    g_autofree char *dir = g_path_get_dirname(link);

    unlink(tmp);
    if (symlink(target, tmp) < 0 || rename(tmp, link) < 0) {
        vbd_log("cannot point %s at %s: %s", link, target, strerror(errno));
        unlink(tmp);
        return;
    }
    vb_fsync_dir(dir);
}

static struct vbd_view_disk *disk_of(struct vbd_view *v, guint i)
{
    return v->disks->pdata[i];
}

/* The disk in query-block's answer: by its qdev path or device name, else
 * as the one whose chain holds file. */
static struct vbd_chain *locate(json_object *blocks, const struct vbd_chain *before,
                                const char *file)
{
    struct vbd_chain *c = before && *before->key ? vbd_chain_by_key(blocks, before->key) : NULL;

    return c ? c : vbd_chain_with(blocks, file);
}

/* ---- taking the view (a thread) ----------------------------------------------------- */

/* Before the snapshot: QEMU must run the disk on its configured image;
 * remember the chain and who the images under it are. */
/* The disk's tracking record, if it is of this image. */
static void load_record(struct vbd_view *v, struct vbd_view_disk *vd, const char *image)
{
    vb_error e1 = { 0 };
    int ret;

    if (!v->state_dir || !vd->serial)
        return;
    ret = vb_cbt_load(v->state_dir, v->vm, vd->serial, &vd->rec, &e1);
    if (ret && ret != -ENOENT)
        vbd_log("job %llu: %s; the record is ignored", (unsigned long long)v->job_id,
                vb_strerror(&e1));
    if (vd->rec && strcmp(vd->rec->image, image)) {
        vbd_log("job %llu: the tracking record of disk %s is of %s, not of %s; it is ignored",
                (unsigned long long)v->job_id, vd->serial, vd->rec->image, image);
        vb_cbt_free(vd->rec);
        vd->rec = NULL;
    }
}

static int learn_disk(struct vbd_view *v, json_object *blocks, struct vbd_view_disk *vd)
{
    struct vbd_chain *c = vbd_chain_with(blocks, vd->image);
    g_autofree char *want = vbd_image_path(vd->image);
    bool tracked;

    load_record(v, vd, want);
    /* the image, or the tracking overlay vbackupd put right over it */
    tracked = c && vd->rec && c->files->len >= 2 &&
              vb_cbt_names_overlay(vd->rec, c->files->pdata[0]) &&
              !strcmp(c->files->pdata[1], want);
    if (!c || (!tracked && strcmp(c->files->pdata[0], want))) {
        g_autofree char *disks = vbd_chain_disks(blocks);
        g_autofree char *chain = vbd_chain_str(c);
        v->fatal = true;
        if (!c)
            problem(v, -ENOENT, "QEMU has no disk on the configured image",
                    "QEMU has no disk on %s (its disks: %s)", vd->image, disks);
        else
            problem(v, -ESTALE, "QEMU does not run the disk on its configured image",
                    "QEMU does not run the disk of %s on that image but on %s",
                    vd->image, chain);
        vbd_chain_free(c);
        return v->err;
    }
    vd->before = c;
    vd->active = g_strdup(c->files->pdata[0]);
    if (vd->rec && !tracked) {
        /* started on its image again (a restore, a hand-made command line):
         * what the guest sees is the image; the overlay is left alone */
        vbd_log("job %llu: QEMU runs disk %s on its image %s, not on its tracking overlay %s; "
                "that file is left as it is", (unsigned long long)v->job_id, vd->serial,
                want, vd->rec->overlay);
        vd->cbt_why = g_strdup("the disk runs on its image, not on its tracking overlay");
    }
    vd->ids = g_new0(struct vbd_file_id, c->files->len);
    for (guint k = 1; k < c->files->len; k++) {
        vb_error e1 = { 0 };
        if (vbd_file_id_get(c->files->pdata[k], &vd->ids[k], &e1)) {
            v->fatal = true;
            problem(v, e1.code, "an image of the disk cannot be examined",
                    "the image under %s: %s", vd->image, vb_strerror(&e1));
            return v->err;
        }
    }
    return 0;
}

/* A tracked disk job's overlay: made by vbackupd (extended L2: a guest's
 * first write to a cluster copies nothing, and the overlay tells what was
 * written to the 4 KiB), owned like the file under it, which QEMU writes.
 * If it cannot be made, QEMU makes a temporary one and the tracking does
 * not move on. */
static void precreate(struct vbd_view *v, struct vbd_view_disk *vd)
{
    const char *fmt = vd->before->format;
    struct stat st;
    vb_error e1 = { 0 };

    if (!vd->before->size || !vb_fmt_valid(fmt))
        vb_seterr(&e1, -EINVAL, "QEMU gives no size or no known format for %s", vd->active);
    else if (stat(vd->active, &st) < 0)
        vb_seterr(&e1, -errno, "stat %s: %s", vd->active, strerror(errno));
    else if (vb_overlay_create(vd->overlay, vd->before->size, vd->active, fmt, st.st_uid,
                               st.st_gid, st.st_mode, &e1) == 0)
        vd->precreated = true;
    if (vd->precreated)
        return;
    vbd_log("job %llu: the tracking overlay of disk %s cannot be made (%s); the view takes a "
            "temporary overlay and the tracking does not move on", (unsigned long long)v->job_id,
            vd->serial, vb_strerror(&e1));
    g_free(vd->cbt_why);
    vd->cbt_why = g_strdup("the tracking overlay could not be made (vbackupd's log says why)");
}

static gpointer snapshot_thread(gpointer opaque)
{
    struct vbd_view *v = opaque;
    double t0 = vb_now();
    json_object *blocks = NULL;
    vb_error e1 = { 0 };
    void *conn = v->be->open(v, &e1);

    if (!conn) {
        problem(v, e1.code, "QEMU's monitor did not answer", "%s", vb_strerror(&e1));
        goto out;
    }
    if (v->be->query_block(conn, &blocks, &e1)) {
        problem(v, e1.code, "QEMU's monitor did not answer", "%s", vb_strerror(&e1));
        goto out;
    }
    for (guint i = 0; i < v->disks->len; i++)
        if (learn_disk(v, blocks, disk_of(v, i)))
            goto out;
    json_object_put(blocks);
    blocks = NULL;
    for (guint i = 0; v->rotate && i < v->disks->len; i++)
        precreate(v, disk_of(v, i));
    if (v->be->snapshot(conn, v, &e1)) {
        problem(v, e1.code, "the snapshot failed", "%s", vb_strerror(&e1));
        /* nothing changed, unless the query below says otherwise */
    } else {
        v->held = true;
    }
    if (v->be->query_block(conn, &blocks, &e1)) {
        v->fatal = true;
        v->held = true;     /* not known: the release looks and decides */
        problem(v, e1.code, "QEMU's monitor did not answer after the snapshot",
                "after the snapshot: %s", vb_strerror(&e1));
        goto out;
    }
    for (guint i = 0; i < v->disks->len; i++) {
        struct vbd_view_disk *vd = disk_of(v, i);
        struct vbd_chain *now = locate(blocks, vd->before, vd->image);
        bool over = vbd_chain_is_over(now, vd->overlay, vd->before);
        g_autofree char *have = vbd_chain_str(now);
        g_autofree char *had = vbd_chain_str(vd->before);
        vb_error e2 = { 0 };

        if (over)
            v->held = true;
        if (v->err && (over || !vbd_chain_equal(now, vd->before))) {
            v->fatal = v->held = true;
            problem(v, -ESTALE, "the failed snapshot changed the disk's chain",
                    "after the failed snapshot QEMU runs the disk of %s on %s, "
                    "not on %s", vd->image, have, had);
        } else if (!v->err && !over) {
            v->fatal = true;
            problem(v, -ESTALE, "the snapshot left QEMU on other images than expected",
                    "after the snapshot QEMU runs the disk of %s on %s, not on "
                    "%s over %s", vd->image, have, vd->overlay, had);
        } else if (!v->err && vbd_file_id_get(vd->active, &vd->ids[0], &e2)) {
            v->fatal = true;
            problem(v, e2.code, "an image of the disk cannot be examined", "%s", vb_strerror(&e2));
        }
        if (!over && vd->precreated)
            unlink(vd->overlay);        /* QEMU did not take it */
        vbd_chain_free(now);
    }
out:
    json_object_put(blocks);
    if (conn)
        v->be->close(conn);
    v->seconds = vb_now() - t0;
    g_idle_add((GSourceFunc)vbd_view_taken, v);
    return NULL;
}

/* ---- releasing it (a thread) ----------------------------------------------------- */

/* Images not written since their identity was taken: from index first on. */
static void check_ids(struct vbd_view *v, struct vbd_view_disk *vd, guint first, const char *when)
{
    for (guint k = first; vd->ids && k < vd->before->files->len; k++) {
        const char *f = vd->before->files->pdata[k];
        struct vbd_file_id now;
        vb_error e1 = { 0 };

        if (vbd_file_id_get(f, &now, &e1))
            problem(v, e1.code, "an image of the disk cannot be examined", "%s", vb_strerror(&e1));
        else if (!vbd_file_id_same(&now, &vd->ids[k])) {
            problem(v, -ESTALE, "an image other than the temporary overlay was written",
                    "%s was written %s (size %llu -> %llu, mtime changed: %s)", f,
                    when, (unsigned long long)vd->ids[k].size, (unsigned long long)now.size,
                    now.mtime_ns != vd->ids[k].mtime_ns ? "yes" : "no");
            vd->ids[k] = now;       /* said once */
        }
    }
}

/* After the overlay was folded back: QEMU runs on the same chain as before
 * the view, and the files under its active layer were not written. */
static void finish_fold(struct vbd_view *v, void *conn, struct vbd_view_disk *vd)
{
    json_object *blocks = NULL;
    struct vbd_chain *after = NULL;
    vb_error e1 = { 0 };

    if (v->be->query_block(conn, &blocks, &e1)) {
        problem(v, e1.code, "QEMU's monitor did not answer after the commit",
                "after the commit: %s", vb_strerror(&e1));
        return;
    }
    after = locate(blocks, vd->before, vd->before->files->pdata[0]);
    if (!vbd_chain_equal(after, vd->before)) {
        g_autofree char *have = vbd_chain_str(after);
        g_autofree char *had = vbd_chain_str(vd->before);
        problem(v, -ESTALE, "after the commit QEMU does not run on the same images as before",
                "after the commit of %s QEMU runs the disk on %s, not on %s as "
                "before", vd->overlay, have, had);
    } else {
        vd->committed = true;
        unlink(vd->overlay);
        check_ids(v, vd, 1, "by the commit");
    }
    vbd_chain_free(after);
    json_object_put(blocks);
}

/* now is the view's overlay over before without its top: the tracking
 * overlay before[0] was folded into the image under it */
static bool rotated_before(const struct vbd_chain *now, const struct vbd_view_disk *vd)
{
    g_autofree char *top = vbd_image_path(vd->overlay);
    const GPtrArray *b = vd->before->files;

    if (!now || now->files->len != b->len || strcmp(now->files->pdata[0], top))
        return false;
    for (guint k = 1; k < b->len; k++)
        if (strcmp(now->files->pdata[k], b->pdata[k]))
            return false;
    return true;
}

/* The record of the new tracking overlay: the image and the files under
 * it as they are now (from index first of before), not bound to a backup
 * before the snapshot is committed (pending). */
static struct vb_cbt_record *next_record(struct vbd_view *v, struct vbd_view_disk *vd,
                                         guint first, vb_error *e)
{
    struct vb_cbt_record *r = g_new0(struct vb_cbt_record, 1);
    const GPtrArray *b = vd->before->files;
    struct vb_file_id oid;

    r->vm = g_strdup(v->vm);
    r->disk = g_strdup(vd->serial);
    r->image = g_strdup(b->pdata[first]);
    r->format = g_strdup(first ? (vd->rec ? vd->rec->format : "raw") : vd->before->format);
    r->overlay = vbd_image_path(vd->overlay);
    r->previous = first ? g_strdup(b->pdata[0]) : NULL;
    r->job = v->job_id;
    r->size = vd->before->size;
    r->n_chain = b->len - first;
    r->chain = g_new0(char *, r->n_chain);
    r->ids = g_new0(struct vb_file_id, r->n_chain);
    for (guint k = 0; k < r->n_chain; k++) {
        r->chain[k] = g_strdup(b->pdata[first + k]);
        if (vb_file_id_get(r->chain[k], &r->ids[k], e)) {
            vb_cbt_free(r);
            return NULL;
        }
    }
    if (vb_file_id_get(r->overlay, &oid, e)) {
        vb_cbt_free(r);
        return NULL;
    }
    r->overlay_dev = oid.dev;
    r->overlay_ino = oid.ino;
    return r;
}

/* A tracked disk job that has read everything: the view's overlay stays,
 * the previous tracking overlay (if QEMU ran on one) is folded into exactly
 * the image under it, and the record names the new overlay. */
static void rotate_disk(struct vbd_view *v, void *conn, guint i, const struct vbd_chain *now)
{
    struct vbd_view_disk *vd = disk_of(v, i);
    bool tracked = strcmp(vd->active, vd->image) != 0;
    guint first = tracked ? 1 : 0;
    struct vb_cbt_record *next;
    json_object *blocks = NULL;
    struct vbd_chain *after = NULL;
    vb_error e1 = { 0 };
    int fd;

    /* first the record: after a crash from here on, the new overlay is one
     * vbackupd knows, proving nothing (pending) */
    next = next_record(v, vd, first, &e1);
    if (!next || vb_cbt_save(v->state_dir, next, &e1)) {
        vbd_log("job %llu: the tracking record of disk %s cannot be written (%s); the view is "
                "folded back", (unsigned long long)v->job_id, vd->serial, vb_strerror(&e1));
        vb_cbt_free(next);
        if (v->be->commit(conn, v, i, now, &e1))
            problem(v, e1.code, "the overlay could not be committed back; the VM still runs on it",
                    "commit of %s into %s: %s; the VM still runs on the overlay", vd->overlay,
                    vd->active, vb_strerror(&e1));
        else
            finish_fold(v, conn, vd);
        return;
    }
    if (tracked && v->be->commit_down(conn, v, i, now, &e1)) {
        /* the previous overlay stays: fold the new one back into it, as any
         * view, and keep the record the disk had */
        vbd_log("job %llu: the tracking overlay %s could not be folded into %s (%s); the new "
                "overlay is folded back instead and the next backup of disk %s reads "
                "everything", (unsigned long long)v->job_id, vd->active, vd->image,
                vb_strerror(&e1), vd->serial);
        vb_cbt_free(next);
        if (vd->rec)
            vb_cbt_save(v->state_dir, vd->rec, NULL);
        memset(&e1, 0, sizeof(e1));
        if (v->be->commit(conn, v, i, now, &e1))
            problem(v, e1.code, "the overlay could not be committed back; the VM still runs on it",
                    "commit of %s into %s: %s; the VM still runs on the overlay", vd->overlay,
                    vd->active, vb_strerror(&e1));
        else
            finish_fold(v, conn, vd);
        return;
    }
    if (tracked) {
        if (v->be->query_block(conn, &blocks, &e1)) {
            problem(v, e1.code, "QEMU's monitor did not answer after the commit",
                    "after the commit: %s", vb_strerror(&e1));
            goto out;
        }
        after = locate(blocks, vd->before, vd->image);
        if (!rotated_before(after, vd)) {
            g_autofree char *have = vbd_chain_str(after);
            problem(v, -ESTALE, "after the commit QEMU does not run on the images expected",
                    "after the commit of %s into %s QEMU runs the disk on %s", vd->active,
                    vd->image, have);
            goto out;
        }
        /* exactly the image was written: nothing under it */
        check_ids(v, vd, 2, "by the commit");
        unlink(vd->active);
    }
    /* the image holds what was read, durably, before the record says so */
    fd = open(vd->image, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) < 0)
        vbd_log("job %llu: fsync %s: %s", (unsigned long long)v->job_id, vd->image,
                strerror(errno));
    if (fd >= 0)
        close(fd);
    vb_cbt_free(next);
    next = next_record(v, vd, first, &e1);
    if (!next || vb_cbt_save(v->state_dir, next, &e1))
        vbd_log("job %llu: the tracking record of disk %s cannot be written (%s); the next "
                "backup reads everything", (unsigned long long)v->job_id, vd->serial,
                vb_strerror(&e1));
    else
        point_top(vd->image, next->overlay);
    vd->next = next;
    vd->committed = vd->rotated = true;
    vbd_log("job %llu: disk %s of %s runs on its new tracking overlay %s%s%s",
            (unsigned long long)v->job_id, vd->serial, v->vm, vd->overlay,
            tracked ? "; the previous one was folded into " : "", tracked ? vd->image : "");
out:
    vbd_chain_free(after);
    json_object_put(blocks);
}

static void release_disk(struct vbd_view *v, void *conn, guint i)
{
    struct vbd_view_disk *vd = disk_of(v, i);
    json_object *blocks = NULL;
    struct vbd_chain *now = NULL;
    vb_error e1 = { 0 };

    if (v->be->query_block(conn, &blocks, &e1)) {
        problem(v, e1.code, "QEMU's monitor did not answer; the VM may still run on the overlay",
                "%s; the overlay %s is left as it is", vb_strerror(&e1), vd->overlay);
        return;
    }
    now = locate(blocks, vd->before, vd->before ? (char *)vd->before->files->pdata[0] :
                                                  vd->overlay);
    if (!vd->before && now && now->files->len > 1) {
        /* a journal without the chain: what QEMU has under the overlay */
        g_autofree char *top = vbd_image_path(vd->overlay);
        if (!strcmp(now->files->pdata[0], top)) {
            vd->before = vbd_chain_copy(now);
            g_free(g_ptr_array_steal_index(vd->before->files, 0));
            g_free(vd->image);
            vd->image = g_strdup(vd->before->files->pdata[0]);
        }
    }
    if (!now || !vd->before) {
        g_autofree char *disks = vbd_chain_disks(blocks);
        problem(v, -ENOENT, "QEMU no longer has the disk; the overlay is left",
                "QEMU has no disk on %s or %s any more (its disks: %s); the overlay "
                "is left as it is", vd->image ? vd->image : "its image", vd->overlay, disks);
        goto out;
    }
    if (vd->image && strcmp(vd->before->files->pdata[0], vd->image) &&
        vd->before->files->len >= 2 && rotated_before(now, vd)) {
        /* a tracked disk's rotation that had ended before a crash: the old
         * tracking overlay is in its image, QEMU runs on the new one */
        vd->committed = true;
        vbd_log("job %llu: QEMU runs disk %s on %s over its image: its tracking overlay %s "
                "had been folded into the image", (unsigned long long)v->job_id,
                vd->serial ? vd->serial : "", vd->overlay, vd->active);
        check_ids(v, vd, 2, "while the VM ran on it");
        if (v->cbt)
            point_top(vd->image, vd->overlay);
        goto out;
    }
    if (vbd_chain_equal(now, vd->before)) {
        /* folded back already (a commit that ended before a crash) */
        vd->committed = true;
        if (access(vd->overlay, F_OK) == 0)
            vbd_log("job %llu: QEMU runs on %s again without %s; that file is left as it is",
                    (unsigned long long)v->job_id, vd->image, vd->overlay);
        check_ids(v, vd, 1, "while the VM ran on it");
        goto out;
    }
    if (!vbd_chain_is_over(now, vd->overlay, vd->before)) {
        g_autofree char *have = vbd_chain_str(now);
        g_autofree char *had = vbd_chain_str(vd->before);
        problem(v, -ESTALE, "QEMU runs the disk on unexpected images; nothing was committed",
                "QEMU runs the disk of %s on %s, not on %s over %s; nothing was "
                "committed, the overlay is left as it is", vd->image, have, vd->overlay, had);
        goto out;
    }
    /* the view was immutable while it was read; the chain under it untouched */
    check_ids(v, vd, 0, "while the view was held");
    if (v->keep && vd->precreated && !v->err) {
        rotate_disk(v, conn, i, now);
        goto out;
    }
    if (v->be->commit(conn, v, i, now, &e1)) {
        problem(v, e1.code, "the overlay could not be committed back; the VM still runs on it",
                "commit of %s into %s: %s; the VM still runs on the overlay",
                vd->overlay, (char *)vd->before->files->pdata[0], vb_strerror(&e1));
        goto out;
    }
    finish_fold(v, conn, vd);
out:
    vbd_chain_free(now);
    json_object_put(blocks);
}

static gpointer release_thread(gpointer opaque)
{
    struct vbd_view *v = opaque;
    double t0 = vb_now();
    vb_error e1 = { 0 };
    void *conn = v->be->open(v, &e1);

    if (!conn)
        problem(v, e1.code, "QEMU's monitor did not answer; the overlays are left",
                "%s; the overlays are left as they are", vb_strerror(&e1));
    for (guint i = 0; conn && i < v->disks->len; i++)
        release_disk(v, conn, i);      /* every disk, whatever another one did */
    if (conn)
        v->be->close(conn);
    v->seconds = vb_now() - t0;
    g_idle_add((GSourceFunc)vbd_view_released, v);
    return NULL;
}

/* ---- main thread ---------------------------------------------------------------------- */

void vbd_view_take(struct vbd_job *j, struct vbd_req *reply)
{
    struct vbd_view *v = view_new(j);

    v->reply = reply;
    if (j->vm->libvirt) {
        v->be = &vbd_view_libvirt;
        v->lv_uri = g_strdup(j->d->cfg->libvirt_uri);
        v->lv_domain = g_strdup(j->vm->libvirt);
    } else {
        v->be = &vbd_view_qmp;
        v->qmp_path = g_strdup(j->vm->qmp);
    }
    v->state_dir = g_strdup(j->d->cfg->state_dir);
    /* a disk job of a tracked VM moves the tracking on (docs/cbt.md) */
    v->cbt = j->vm->cbt;
    v->rotate = j->kind == VB_KIND_DISK && j->vm->cbt;
    for (guint i = 0; i < j->disks->len; i++) {
        struct vbd_disk *dk = j->disks->pdata[i];
        struct vbd_view_disk *vd = g_new0(struct vbd_view_disk, 1);
        g_autofree char *real = v->rotate ? vbd_image_path(dk->image) : NULL;
        vd->image = g_strdup(dk->image);
        vd->serial = g_strdup(dk->serial);
        vd->target = g_strdup(dk->target);
        vd->overlay = g_strdup_printf("%s.vbackup-%llu.qcow2", real ? real : dk->image,
                                      (unsigned long long)j->id);
        vd->top_node = g_strdup_printf("vb-%llu-%u", (unsigned long long)j->id, i);
        g_ptr_array_add(v->disks, vd);
    }
    j->view_op = v;
    g_thread_unref(g_thread_new("view-take", snapshot_thread, v));
}

gboolean vbd_view_taken(gpointer opaque)
{
    struct vbd_view *v = opaque;
    struct vbd_job *j = v->job;
    struct vbd_req *reply = v->reply;

    v->reply = NULL;
    j->view_pending = false;
    /* a disk on its tracking overlay is read through it, also live */
    for (guint i = 0; i < v->disks->len && i < j->disks->len; i++) {
        struct vbd_view_disk *vd = disk_of(v, i);
        struct vbd_disk *dk = j->disks->pdata[i];
        g_autofree char *img = vbd_image_path(vd->image);
        if (vd->active && strcmp(vd->active, img)) {
            g_free(dk->top);
            dk->top = g_strdup(vd->active);
        }
    }
    if (j->kind == VB_KIND_DISK && v->disks->len) {
        struct vbd_view_disk *vd = disk_of(v, 0);
        vb_cbt_free(j->cbt_rec);
        j->cbt_rec = vb_cbt_copy(vd->rec);
        g_free(j->cbt_why);
        j->cbt_why = g_strdup(vd->cbt_why);
        if (v->err && !j->cbt_why)
            j->cbt_why = g_strdup("no point-in-time view of the disk (the snapshot failed)");
    }
    if (v->err && v->fatal) {
        char why[sizeof(v->e.msg)], summary[sizeof(v->summary)];
        snprintf(why, sizeof(why), "%s", vb_strerror(&v->e));
        snprintf(summary, sizeof(summary), "%s", v->summary);
        vbd_log("job %llu: the point-in-time view of %s FAILED: %s", (unsigned long long)j->id,
                v->vm, why);
        json_object_array_add(j->plan_notes, strf("view: FAILED: %s", why));
        if (!v->held) {
            j->view_op = NULL;
            view_free(v);
            vbd_job_unref(j);
        } else {
            v->err = 0;                 /* the release says how it went */
            memset(&v->e, 0, sizeof(v->e));
            v->summary[0] = 0;
            vbd_journal_running(j);     /* overlays to commit after a crash */
        }
        /* this releases a view that is held */
        vbd_job_fail(j, VB_JOB_FAILED, "point-in-time view: %s (vbackupd's log says more)",
                     summary);
    } else if (v->err) {
        /* a failed snapshot changed nothing: read the live image, guest frozen */
        vbd_log("job %llu: snapshot of %s failed (%s); reading the live image while the guest "
                "stays frozen", (unsigned long long)j->id, v->vm, vb_strerror(&v->e));
        json_object_array_add(j->plan_notes, strf(
            "view: snapshot failed (%s); the guest stays frozen while the host reads",
            vb_strerror(&v->e)));
        j->view = VB_VIEW_FROZEN;
        j->view_op = NULL;
        view_free(v);
        vbd_job_unref(j);
    } else {
        j->view = VB_VIEW_SNAPSHOT;
        j->view_seconds = v->seconds;
        json_object_array_add(j->plan_notes, strf(
            "view: snapshot of %u disk%s taken in %.3f s; the guest thawed", v->disks->len,
            v->disks->len == 1 ? "" : "s", v->seconds));
        vbd_journal_running(j);      /* remembers the overlays, to commit after a crash */
    }
    vbd_seal_done(j, reply);
    return G_SOURCE_REMOVE;
}

static void release(struct vbd_job *j, bool for_commit)
{
    struct vbd_view *v = j->view_op;

    v->for_commit = for_commit;
    /* a tracked disk job that has read everything keeps its overlay */
    v->keep = for_commit && v->rotate && j->state == VB_JOB_RUNNING;
    j->view_op = NULL;
    j->view_busy = true;
    j->d->views_active++;
    g_thread_unref(g_thread_new("view-release", release_thread, v));
}

void vbd_view_release(struct vbd_job *j)
{
    if (j->view_op)
        release(j, false);
}

void vbd_view_finish(struct vbd_job *j)
{
    release(j, true);
}

gboolean vbd_view_released(gpointer opaque)
{
    struct vbd_view *v = opaque;
    struct vbd_job *j = v->job;
    bool all = true;

    for (guint i = 0; i < v->disks->len; i++)
        all &= disk_of(v, i)->committed;
    if (v->err)
        vbd_log("job %llu: the point-in-time view of %s FAILED its release: %s",
                (unsigned long long)j->id, v->vm, vb_strerror(&v->e));
    else if (v->disks->len && disk_of(v, 0)->rotated)
        vbd_log("job %llu: snapshot of %s kept as the disk's tracking overlay in %.2f s; QEMU "
                "runs on it over the disk's image", (unsigned long long)j->id, v->vm,
                v->seconds);
    else
        vbd_log("job %llu: snapshot of %s committed back in %.2f s; QEMU runs on the same "
                "images as before", (unsigned long long)j->id, v->vm, v->seconds);
    j->d->views_active--;
    for (guint i = 0; i < v->disks->len; i++) {
        struct vbd_view_disk *vd = disk_of(v, i);
        if (vd->rotated && vd->next && j->kind == VB_KIND_DISK) {
            /* bound to the snapshot once it is committed (exec.c) */
            vb_cbt_free(j->cbt_next);
            j->cbt_next = vd->next;
            vd->next = NULL;
        }
    }
    if (v->for_commit)
        vbd_exec_view_done(j, v->err, v->summary);
    else if (v->err)
        vbd_job_fail_late(j, "point-in-time view: %s (vbackupd's log says more)", v->summary);
    j->view_busy = false;
    if (all && j->state == VB_JOB_RUNNING)
        vbd_journal_running(j);     /* on to its commit, without a view to release */
    else if (all)
        vbd_journal_forget(j);
    /* else the journal keeps the view: the next start tries again */
    view_free(v);
    vbd_job_unref(j);
    return G_SOURCE_REMOVE;
}

/* ---- the journal ------------------------------------------------------------------- */

json_object *vbd_view_json(struct vbd_job *j)
{
    struct vbd_view *v = j->view_op;
    json_object *o, *disks;

    if (!v)
        return NULL;
    o = json_object_new_object();
    disks = json_object_new_array();
    for (guint i = 0; i < v->disks->len; i++) {
        struct vbd_view_disk *vd = disk_of(v, i);
        json_object *d = json_object_new_object();
        json_object_object_add(d, "image", json_object_new_string(vd->image));
        if (vd->serial)
            json_object_object_add(d, "serial", json_object_new_string(vd->serial));
        if (vd->active)
            json_object_object_add(d, "active", json_object_new_string(vd->active));
        if (vd->target)
            json_object_object_add(d, "target", json_object_new_string(vd->target));
        json_object_object_add(d, "overlay", json_object_new_string(vd->overlay));
        json_object_object_add(d, "top_node", json_object_new_string(vd->top_node));
        if (vd->before) {
            json_object *ids = json_object_new_array();
            json_object_object_add(d, "before", vbd_chain_to_json(vd->before));
            for (guint k = 0; vd->ids && k < vd->before->files->len; k++)
                json_object_array_add(ids, vbd_file_id_to_json(&vd->ids[k]));
            json_object_object_add(d, "ids", ids);
        }
        json_object_array_add(disks, d);
    }
    json_object_object_add(o, "qmp", v->qmp_path ? json_object_new_string(v->qmp_path) : NULL);
    if (v->lv_uri) {
        json_object_object_add(o, "libvirt", json_object_new_string(v->lv_uri));
        json_object_object_add(o, "domain", json_object_new_string(v->lv_domain));
    }
    json_object_object_add(o, "disks", disks);
    if (v->rotate)
        json_object_object_add(o, "rotate", json_object_new_boolean(1));
    if (v->cbt)
        json_object_object_add(o, "cbt", json_object_new_boolean(1));
    return o;
}

static void recover_disk(struct vbd_view *v, json_object *d)
{
    struct vbd_view_disk *vd = g_new0(struct vbd_view_disk, 1);
    json_object *ids, *before;

    vd->image = g_strdup(vb_json_str(d, "image"));
    vd->serial = g_strdup(vb_json_str(d, "serial"));
    vd->active = g_strdup(vb_json_str(d, "active"));
    vd->target = g_strdup(vb_json_str(d, "target"));
    vd->overlay = g_strdup(vb_json_str(d, "overlay"));
    vd->top_node = g_strdup(vb_json_str(d, "top_node"));
    if (json_object_object_get_ex(d, "before", &before))
        vd->before = vbd_chain_from_json(before);
    if (vd->before && json_object_object_get_ex(d, "ids", &ids) &&
        json_object_is_type(ids, json_type_array) &&
        json_object_array_length(ids) == vd->before->files->len) {
        vd->ids = g_new0(struct vbd_file_id, vd->before->files->len);
        for (guint k = 0; k < vd->before->files->len; k++)
            if (!vbd_file_id_from_json(json_object_array_get_idx(ids, k), &vd->ids[k])) {
                g_free(vd->ids);
                vd->ids = NULL;
                break;
            }
    }
    g_ptr_array_add(v->disks, vd);
}

/* After a crash: commit back the overlays a job left, by the same rule. */
void vbd_view_recover(struct vbd_job *j, json_object *view)
{
    struct vbd_view *v = view_new(j);
    json_object *disks = json_object_object_get(view, "disks");
    json_object *devs = json_object_object_get(view, "devices");
    json_object *ovs = json_object_object_get(view, "overlays");

    v->qmp_path = g_strdup(vb_json_str(view, "qmp"));
    v->lv_uri = g_strdup(vb_json_str(view, "libvirt"));
    v->lv_domain = g_strdup(vb_json_str(view, "domain"));
    v->be = v->lv_uri ? &vbd_view_libvirt : &vbd_view_qmp;
    v->rotate = json_object_get_boolean(json_object_object_get(view, "rotate"));
    v->cbt = json_object_get_boolean(json_object_object_get(view, "cbt"));
    v->state_dir = g_strdup(j->d->cfg->state_dir);
    for (size_t i = 0; json_object_is_type(disks, json_type_array) &&
                       i < json_object_array_length(disks); i++)
        recover_disk(v, json_object_array_get_idx(disks, i));
    /* a journal of an older vbackupd: devices (libvirt targets) and overlays only */
    for (size_t i = 0; !disks && json_object_is_type(ovs, json_type_array) &&
                       i < json_object_array_length(ovs); i++) {
        struct vbd_view_disk *vd = g_new0(struct vbd_view_disk, 1);
        json_object *dev = json_object_is_type(devs, json_type_array) ?
                           json_object_array_get_idx(devs, i) : NULL;
        vd->overlay = g_strdup(json_object_get_string(json_object_array_get_idx(ovs, i)));
        vd->target = v->lv_uri && dev ? g_strdup(json_object_get_string(dev)) : NULL;
        g_ptr_array_add(v->disks, vd);
    }
    for (guint i = 0; i < v->disks->len; i++)
        if (!disk_of(v, i)->overlay) {
            g_ptr_array_set_size(v->disks, 0);
            break;
        }
    if ((!v->qmp_path && !v->lv_uri) || !v->disks->len) {
        vbd_log("job %llu: the journal names a view that cannot be released; see the files "
                "named *.vbackup-%llu.qcow2", (unsigned long long)j->id,
                (unsigned long long)j->id);
        view_free(v);
        vbd_job_unref(j);
        return;
    }
    v->held = true;
    j->view_op = v;
    vbd_log("job %llu: committing back the snapshot it left on %s", (unsigned long long)j->id,
            j->vm->name);
    vbd_view_release(j);
}
