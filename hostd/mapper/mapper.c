/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vbackup-mapper: maps the files of a VM's ext2/3/4 file systems in the
 * point-in-time view of its disks, on the host, for vbackupd (docs/freeze.md).
 *
 *   stdin    the job description (mapspec.h), from vbackupd
 *   fd 3...  the view's image chains, read-only, top first, disk after disk
 *   stdout   the job's records as protocol frames, one way: BACKUP_FILES,
 *            BACKUP_DATA (inline data), BACKUP_PROBLEMS; vbackupd checks
 *            them exactly as it checks a guest's
 *   stderr   why it failed (one line), exit status 1
 *
 * The file systems are the guest's: hostile input.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mapsrc.h"
#include "mapspec.h"
#include "vbc.h"

static void usage(void)
{
    fprintf(stderr,
            "usage: vbackup-mapper < job-description  3< image ...  > frames\n"
            "Started by vbackupd; see docs/freeze.md.\n");
}

/* The whole of stdin, at most VB_MAPSPEC_MAX_BYTES. */
static uint8_t *read_spec(size_t *len)
{
    size_t cap = 65536, n = 0;
    uint8_t *p = malloc(cap);

    while (p) {
        ssize_t r;

        if (n == cap) {
            uint8_t *np = cap < VB_MAPSPEC_MAX_BYTES ? realloc(p, cap * 2) : NULL;

            if (!np) {
                free(p);
                return NULL;
            }
            p = np;
            cap *= 2;
        }
        r = read(0, p + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            free(p);
            return NULL;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    *len = n;
    return p;
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct vbc_backup_opts o;
    struct vb_mapspec spec;
    struct vbc_err e = { 0 };
    const char *why;
    uint8_t *raw;
    size_t len;
    void *src;
    int c, rc;

    vbc_prog = "vbackup-mapper";
    vbc_quiet = 1;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'h':
            usage();
            return 0;
        default:
            goto bad;
        }
    }
    if (optind != argc)
        goto bad;
    if (!(raw = read_spec(&len))) {
        fprintf(stderr, "reading the job description: %s\n", strerror(errno ? errno : ENOMEM));
        return 1;
    }
    close(0);
    if ((why = vb_mapspec_decode(raw, len, &spec))) {
        fprintf(stderr, "the job description: %s\n", why);
        return 1;
    }
    free(raw);
    memset(&o, 0, sizeof(o));
    src = vb_mapsrc_new(&spec, 3);
    rc = src ? vbc_backup_stream(1, spec.job, &o, &vb_mapsrc_ops, src, &e)
             : vbc_seterr(&e, -ENOMEM, "out of memory");
    vb_mapsrc_free(src);
    free(o.roots_rel);
    vb_mapspec_clear(&spec);
    if (rc) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    return 0;
bad:
    usage();
    return 2;
}
