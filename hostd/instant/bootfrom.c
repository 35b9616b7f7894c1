/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vbackupctl boot-from: the export of a disk snapshot (export.c) and a local
 * qcow2 overlay whose backing file is that export, so that a VM can start on
 * the overlay at once: reads of what the VM has not written come from the
 * backup, writes stay in the overlay.  The overlay names the export by its
 * socket and by the snapshot id as NBD export name, so it can never read
 * another snapshot through the same socket.  docs/instant-access.md.
 */
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "export.h"
#include "proc.h"

/* An existing overlay is taken again only if it is a qcow2 image over
 * exactly this export (after vbackupctl or the host stopped before the live
 * restore finished: the VM's writes are in it). */
static int check_overlay(const char *path, const char *uri, vb_error *e)
{
    char *argv[] = { "qemu-img", "info", "-U", "--output=json", (char *)path, NULL };
    char *out = NULL;
    json_object *o, *v;
    const char *fmt = NULL, *backing = NULL, *bfmt = NULL;
    int ret = vbi_run(argv, &out, e);

    if (ret)
        return ret;
    o = json_tokener_parse(out);
    g_free(out);
    if (o && json_object_object_get_ex(o, "format", &v))
        fmt = json_object_get_string(v);
    if (o && json_object_object_get_ex(o, "backing-filename", &v))
        backing = json_object_get_string(v);
    if (o && json_object_object_get_ex(o, "backing-filename-format", &v))
        bfmt = json_object_get_string(v);
    if (!fmt || strcmp(fmt, "qcow2"))
        ret = vb_seterr(e, -EEXIST, "%s exists and is not a qcow2 image", path);
    else if (!backing)
        ret = vb_seterr(e, -EEXIST, "%s exists and has no backing file (a finished live "
                        "restore? It no longer needs the export)", path);
    else if (strcmp(backing, uri) || !bfmt || strcmp(bfmt, "raw"))
        ret = vb_seterr(e, -EEXIST, "%s exists and is an overlay of %s (format %s), not of "
                        "%s: refused", path, backing, bfmt ? bfmt : "not given", uri);
    json_object_put(o);
    return ret;
}

static int create_overlay(const char *path, const char *uri, uint64_t size, vb_error *e)
{
    char sz[32];
    char *argv[] = { "qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", (char *)uri,
                     (char *)path, sz, NULL };

    snprintf(sz, sizeof(sz), "%llu", (unsigned long long)size);
    return vbi_run(argv, NULL, e);
}

int vbi_cmd_boot_from(const struct vbi_ctx *c, int argc, char **argv)
{
    static const struct option lo[] = { VBI_EXPORT_LONGOPTS, { "overlay", 1, 0, 'o' }, { 0 } };
    struct vbi_export_opts o = { .address = "127.0.0.1", .readahead = -1 };
    g_autofree char *sock = NULL;
    const char *overlay = NULL;
    struct vbi_export x;
    vb_error e = { 0 };
    bool existed;
    char sz[32];
    int opt, r;

    while ((opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        if (opt == 'o') {
            overlay = optarg;
            continue;
        }
        r = vbi_export_option(opt, optarg, &o, c->prog);
        if (r <= 0)
            return 2;
    }
    if (optind + 1 != argc || !overlay || o.port) {
        fprintf(stderr, "usage: %s --repo DIR boot-from SNAPSHOT|VM [--disk SERIAL] --overlay "
                "FILE [--unix SOCKET] [--socket-group GROUP] [--cache SIZE] [--readahead N] "
                "[--threads N] [--verbose]\n", c->prog);
        return 2;
    }
    if (!c->repo) {
        fprintf(stderr, "%s: boot-from: no repository: give --repo DIR or set VBACKUP_REPO\n",
                c->prog);
        return 2;
    }
    o.spec = argv[optind];
    if (!o.unix_path)
        o.unix_path = sock = g_strdup_printf("%s.nbd", overlay);
    existed = access(overlay, F_OK) == 0;
    if (vbi_export_start(c, &o, &x, &e)) {
        fprintf(stderr, "%s: boot-from: %s\n", c->prog, vb_strerror(&e));
        return 1;
    }
    if (existed ? check_overlay(overlay, x.uri, &e) : create_overlay(overlay, x.uri,
                                                                      x.info->size, &e)) {
        fprintf(stderr, "%s: boot-from: %s\n", c->prog, vb_strerror(&e));
        vbi_export_clear(&x);
        return 1;
    }
    printf("%s %s (qcow2, %s) over %s\n", existed ? "kept the overlay" : "created the overlay",
           overlay, vb_fmt_bytes(x.info->size, sz, sizeof(sz)), x.uri);
    if (!c->quiet) {
        printf("  start a VM on it now, e.g. QEMU: -drive file=%s,format=qcow2,if=none,"
               "id=vbdisk0 -device virtio-blk-pci,drive=vbdisk0\n", overlay);
        printf("  copy the disk into the overlay while the VM runs: %s live-restore --qmp "
               "QMP-SOCKET --device vbdisk0\n", c->prog);
        printf("  keep this command running until then: the VM reads the backup through it "
               "(SIGINT/SIGTERM stop the export)\n");
    }
    printf("ready\n");
    fflush(stdout);
    r = vbi_export_serve(c, &x);
    vbi_export_clear(&x);
    return r;
}
