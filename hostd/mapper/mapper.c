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
 * The file systems are the guest's: hostile input.  The mapper enters the
 * sandbox of sandbox.c before it reads a byte of them.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mapsrc.h"
#include "mapspec.h"
#include "sandbox.h"
#include "vbc.h"

static void usage(void)
{
    fprintf(stderr,
            "usage: vbackup-mapper [--uid N] [--gid N] [--memory BYTES] [--cpu SECONDS]\n"
            "                      < job-description  3< image ...  > frames\n"
            "       vbackup-mapper [the options] --probe ACTION\n"
            "                      (tests: the sandbox refuses ACTION; see sandbox.h)\n"
            "Started by vbackupd; see docs/freeze.md.\n");
}

static int num(const char *arg, unsigned long long max, unsigned long long *v)
{
    char *end;

    errno = 0;
    *v = strtoull(arg, &end, 10);
    return errno || *end || arg[0] == '-' || !arg[0] || *v > max ? -1 : 0;
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
        { "uid", required_argument, NULL, 'u' }, { "gid", required_argument, NULL, 'g' },
        { "memory", required_argument, NULL, 'm' }, { "cpu", required_argument, NULL, 'c' },
        { "probe", required_argument, NULL, 'p' }, { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct vb_sandbox sb = { .uid = 65534, .gid = 65534, .memory = 2ull << 30, .cpu = 3600 };
    struct vbc_backup_opts o;
    struct vb_mapspec spec;
    struct vbc_err e = { 0 };
    const char *probe = NULL, *why;
    unsigned long long v;
    uint8_t *raw;
    size_t len;
    void *src;
    int c, rc;

    vbc_prog = "vbackup-mapper";
    vbc_quiet = 1;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'u':
            if (num(optarg, 0xfffffffeu, &v) || v == 0)
                goto bad;
            sb.uid = (uid_t)v;
            break;
        case 'g':
            if (num(optarg, 0xfffffffeu, &v) || v == 0)
                goto bad;
            sb.gid = (gid_t)v;
            break;
        case 'm':
            if (num(optarg, 1ull << 46, &v) || v < (64u << 20))
                goto bad;
            sb.memory = v;
            break;
        case 'c':
            if (num(optarg, 1u << 30, &v) || v == 0)
                goto bad;
            sb.cpu = (unsigned)v;
            break;
        case 'p':
            probe = optarg;
            break;
        case 'h':
            usage();
            return 0;
        default:
            goto bad;
        }
    }
    if (optind != argc)
        goto bad;
    if (probe)
        return vb_sandbox_probe(&sb, probe);
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
    sb.n_fds = 3 + vb_mapspec_n_fds(&spec);
    if ((rc = vb_sandbox_enter(&sb, &e))) {
        fprintf(stderr, "the sandbox: %s\n", e.msg);
        return 1;
    }
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
