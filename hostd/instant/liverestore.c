/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vbackupctl live-restore: the disk of a VM started by boot-from is copied
 * off the NBD export into its local overlay while the VM runs.  QEMU's
 * block-stream job (no base) copies every cluster the overlay does not hold
 * yet from the backing chain into the overlay, and at its end drops the
 * backing file from the overlay's header: the overlay is then a complete,
 * self-contained image holding the snapshot plus everything the guest wrote
 * since it booted, and the VM never stopped.  The guest's writes during the
 * copy go to the overlay and are never overwritten (the job copies only what
 * the overlay does not hold).  docs/instant-access.md.
 */
#include <getopt.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "instant.h"
#include "qmpc.h"
#include "util.h"

#define JOB_ID "vbackup-live-restore"

static const char *jstr(json_object *o, const char *key)
{
    json_object *v;

    return o && json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string)
           ? json_object_get_string(v) : NULL;
}

static json_object *jobj(json_object *o, const char *key)
{
    json_object *v;

    return o && json_object_object_get_ex(o, key, &v) ? v : NULL;
}

static bool is_nbd(const char *filename)
{
    return filename && (g_str_has_prefix(filename, "nbd:") || g_str_has_prefix(filename, "nbd+") ||
                        (g_str_has_prefix(filename, "json:") &&
                         strstr(filename, "\"driver\": \"nbd\"")));
}

/* The NBD image below the top of a device's chain, or NULL. */
static const char *nbd_backing(json_object *blk)
{
    json_object *img = jobj(jobj(blk, "inserted"), "image");

    for (img = jobj(img, "backing-image"); img; img = jobj(img, "backing-image"))
        if (is_nbd(jstr(img, "filename")))
            return jstr(img, "filename");
    return NULL;
}

static const char *dev_name(json_object *blk)
{
    const char *d = jstr(blk, "device");

    return d && *d ? d : jstr(blk, "qdev");
}

/* The device to stream: the one named (by device, qdev id or node name),
 * or the only one whose chain reads from an NBD export. */
static int find_device(struct vbi_qmp *q, const char *want, json_object **found, vb_error *e)
{
    json_object *list, *pick = NULL;
    GString *nbd = g_string_new(NULL);
    int ret = vbi_qmp_exec(q, "query-block", NULL, &list, e), n = 0;

    if (ret) {
        g_string_free(nbd, TRUE);
        return ret;
    }
    for (size_t i = 0; i < json_object_array_length(list); i++) {
        json_object *b = json_object_array_get_idx(list, i);
        const char *node = jstr(jobj(b, "inserted"), "node-name");
        if (!jobj(b, "inserted"))
            continue;
        if (want) {
            if ((jstr(b, "device") && !strcmp(jstr(b, "device"), want)) ||
                (jstr(b, "qdev") && !strcmp(jstr(b, "qdev"), want)) ||
                (node && !strcmp(node, want)))
                pick = b;
        } else if (nbd_backing(b)) {
            g_string_append_printf(nbd, "%s%s", n++ ? ", " : "", dev_name(b));
            pick = b;
        }
    }
    if (want && !pick)
        ret = vb_seterr(e, -ENOENT, "QEMU has no block device or node '%s'", want);
    else if (!want && n == 0)
        ret = vb_seterr(e, -ENOENT, "no disk of this VM reads from an NBD export (a disk "
                        "started by boot-from does)");
    else if (!want && n > 1)
        ret = vb_seterr(e, -EINVAL, "several disks read from NBD exports (%s): name one "
                        "with --device", nbd->str);
    else if (!nbd_backing(pick) && jobj(jobj(jobj(pick, "inserted"), "image"), "backing-image"))
        ret = vb_seterr(e, -EINVAL, "disk %s does not read from an NBD export", want);
    if (!ret)
        *found = json_object_get(pick);
    json_object_put(list);
    g_string_free(nbd, TRUE);
    return ret;
}

/* The job's progress, or false when QEMU no longer has it. */
static bool job_progress(struct vbi_qmp *q, uint64_t *done, uint64_t *total)
{
    json_object *jobs;
    bool found = false;

    if (vbi_qmp_exec(q, "query-block-jobs", NULL, &jobs, NULL))
        return true;         /* unknown: keep waiting for the event */
    for (size_t i = 0; i < json_object_array_length(jobs); i++) {
        json_object *j = json_object_array_get_idx(jobs, i);
        if (jstr(j, "device") && !strcmp(jstr(j, "device"), JOB_ID)) {
            *done = (uint64_t)json_object_get_int64(jobj(j, "offset"));
            *total = (uint64_t)json_object_get_int64(jobj(j, "len"));
            found = true;
        }
    }
    json_object_put(jobs);
    return found;
}

/* Waits for the job's end: 0 when it completed without an error. */
static int wait_job(const struct vbi_ctx *c, struct vbi_qmp *q, vb_error *e)
{
    bool progress = !c->quiet && isatty(STDERR_FILENO);
    uint64_t done = 0, total = 0;
    int ret;

    for (;;) {
        json_object *ev, *data;
        const char *name;

        if (vb_interrupted) {
            vbi_qmp_exec(q, "block-job-cancel", json_tokener_parse("{\"device\": \"" JOB_ID
                                                                   "\", \"force\": true}"),
                         NULL, NULL);
            return vb_seterr(e, -EINTR, "interrupted: the copy was cancelled; the VM goes on "
                             "reading from the export (run live-restore again: what was "
                             "copied stays)");
        }
        ret = vbi_qmp_event(q, 1000, &ev, e);
        if (ret)
            return ret;
        if (!ev) {
            if (!job_progress(q, &done, &total))
                return 0;    /* ended while we did not listen: the chain tells */
            if (progress && total)
                fprintf(stderr, "\rcopied %3.0f%% (%llu of %llu bytes)", 100.0 * (double)done /
                        (double)total, (unsigned long long)done, (unsigned long long)total);
            continue;
        }
        name = jstr(ev, "event");
        data = jobj(ev, "data");
        if (name && jstr(data, "device") && !strcmp(jstr(data, "device"), JOB_ID)) {
            if (!strcmp(name, "BLOCK_JOB_COMPLETED")) {
                ret = jstr(data, "error")
                      ? vb_seterr(e, -EIO, "the copy failed: %s", jstr(data, "error")) : 0;
                if (progress)
                    fprintf(stderr, "\r%60s\r", "");
                json_object_put(ev);
                return ret;
            }
            if (!strcmp(name, "BLOCK_JOB_CANCELLED")) {
                json_object_put(ev);
                return vb_seterr(e, -ECANCELED, "the copy was cancelled (by someone else)");
            }
            if (!strcmp(name, "BLOCK_JOB_ERROR"))
                fprintf(stderr, "%s: live-restore: an I/O error during the copy (%s)\n",
                        c->prog, jstr(data, "operation") ? jstr(data, "operation") : "?");
        }
        json_object_put(ev);
    }
}

int vbi_cmd_live_restore(const struct vbi_ctx *c, int argc, char **argv)
{
    static const struct option lo[] = { { "qmp", 1, 0, 'q' }, { "device", 1, 0, 'd' },
                                        { "speed", 1, 0, 's' }, { 0 } };
    const char *qmp = NULL, *want = NULL, *node, *top, *from;
    uint64_t speed = 0;
    struct vbi_qmp *q = NULL;
    json_object *dev = NULL, *args, *after = NULL;
    vb_error e = { 0 };
    double t0 = vb_now();
    uint64_t done = 0, total = 0;
    int opt, ret;

    while ((opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (opt) {
        case 'q': qmp = optarg; break;
        case 'd': want = optarg; break;
        case 's':
            if (vb_parse_size(optarg, &speed)) {
                fprintf(stderr, "%s: --speed: bytes per second (64M, 1G), not '%s'\n", c->prog,
                        optarg);
                return 2;
            }
            break;
        default: return 2;
        }
    }
    if (optind != argc || !qmp) {
        fprintf(stderr, "usage: %s live-restore --qmp SOCKET [--device ID] [--speed BYTES]\n",
                c->prog);
        return 2;
    }
    ret = vbi_qmp_open(qmp, &q, &e);
    if (!ret)
        ret = find_device(q, want, &dev, &e);
    if (ret)
        goto out;
    node = jstr(jobj(dev, "inserted"), "node-name");
    top = jstr(jobj(jobj(dev, "inserted"), "image"), "filename");
    from = nbd_backing(dev);
    if (!from) {
        if (!c->quiet)
            printf("disk %s (%s) reads from no export: nothing to copy\n", dev_name(dev), top);
        goto out;
    }
    if (!c->quiet) {
        printf("copying disk %s from %s into %s while the VM runs\n", dev_name(dev), from, top);
        fflush(stdout);
    }
    /* a copy still running (a live-restore interrupted without cancelling) is waited for */
    if (!job_progress(q, &done, &total)) {
        args = json_object_new_object();
        json_object_object_add(args, "job-id", json_object_new_string(JOB_ID));
        json_object_object_add(args, "device", json_object_new_string(node));
        if (speed)
            json_object_object_add(args, "speed", json_object_new_int64((int64_t)speed));
        ret = vbi_qmp_exec(q, "block-stream", args, NULL, &e);
        if (ret)
            goto out;
    }
    ret = wait_job(c, q, &e);
    if (ret)
        goto out;
    /* the proof: the device's image no longer has a backing file */
    ret = find_device(q, node, &after, &e);
    if (ret)
        goto out;
    if (jobj(jobj(jobj(after, "inserted"), "image"), "backing-image")) {
        ret = vb_seterr(&e, -EIO, "the copy ended, but %s still has a backing "
                        "file", top);
        goto out;
    }
    printf("live restore of disk %s complete in %.1f s: %s holds the whole disk and no longer "
           "reads from the export (which can stop now)\n", dev_name(dev), vb_now() - t0, top);
out:
    if (ret)
        fprintf(stderr, "%s: live-restore: %s\n", c->prog, vb_strerror(&e));
    json_object_put(dev);
    json_object_put(after);
    vbi_qmp_close(q);
    return ret ? 1 : 0;
}
