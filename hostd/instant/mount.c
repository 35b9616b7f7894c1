/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vbackupctl mount: the repository's snapshots as a read-only FUSE file
 * system (vbfs.c), in the foreground until it is unmounted (fusermount3 -u,
 * umount) or vbackupctl gets SIGINT, SIGTERM or SIGHUP.  The mount is ro,
 * nosuid, nodev and noexec, with the kernel checking permissions from the
 * modes shown (default_permissions); only the mounting user sees it unless
 * --allow-other.  docs/instant-access.md.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "instant.h"
#include "vbfs.h"
#include "workers.h"

#define DEFAULT_CACHE (256u << 20)

int vbi_cmd_mount(const struct vbi_ctx *c, int argc, char **argv)
{
    static const struct option lo[] = { { "cache", 1, 0, 'C' }, { "readahead", 1, 0, 'R' },
                                        { "allow-other", 0, 0, 'a' }, { "debug", 0, 0, 'd' },
                                        { 0 } };
    uint64_t cache_bytes = DEFAULT_CACHE;
    unsigned readahead = 1;
    bool allow_other = false, debug = false;
    const char *mnt;
    struct vb_sr *sr = NULL;
    struct vb_ccache *cache = NULL;
    struct vbi_fs *fs = NULL;
    struct fuse_session *se = NULL;
    struct fuse_loop_config *cfg = NULL;
    struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
    struct sigaction dfl = { .sa_handler = SIG_DFL };
    vb_error e = { 0 };
    char *end, opts[256];
    int opt, ret = 1;

    while ((opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (opt) {
        case 'C':
            if (vb_parse_size(optarg, &cache_bytes) || cache_bytes < VB_CHUNK_MAX) {
                fprintf(stderr, "%s: mount: --cache: a size of at least 16M, not '%s'\n",
                        c->prog, optarg);
                return 2;
            }
            break;
        case 'R':
            readahead = (unsigned)strtoul(optarg, &end, 10);
            if (!*optarg || *end || optarg[0] == '-' || readahead > 1) {
                fprintf(stderr, "%s: mount: --readahead: 0 or 1, not '%s'\n", c->prog, optarg);
                return 2;
            }
            break;
        case 'a': allow_other = true; break;
        case 'd': debug = true; break;
        default: return 2;
        }
    }
    if (optind + 1 != argc) {
        fprintf(stderr, "usage: %s --repo DIR mount MOUNTPOINT [--cache SIZE] [--readahead 0|1] "
                "[--allow-other] [--debug]\n", c->prog);
        return 2;
    }
    if (!c->repo) {
        fprintf(stderr, "%s: mount: no repository: give --repo DIR or set VBACKUP_REPO\n",
                c->prog);
        return 2;
    }
    mnt = argv[optind];
    if (access("/dev/fuse", R_OK | W_OK) < 0) {
        fprintf(stderr, "%s: mount: /dev/fuse: %s (load the fuse module: modprobe fuse)\n",
                c->prog, strerror(errno));
        return 1;
    }
    if (vb_sr_open(c->repo, true, &sr, &e)) {
        fprintf(stderr, "%s: mount: %s\n", c->prog, vb_strerror(&e));
        return 1;
    }
    cache = vb_ccache_new(sr, cache_bytes);
    if (readahead && vb_ccache_start_prefetch(cache, VB_MAX(vb_cpu_count(), 2), &e)) {
        fprintf(stderr, "%s: mount: %s\n", c->prog, vb_strerror(&e));
        goto out;
    }
    fs = vbi_fs_new(sr, cache, readahead);

    snprintf(opts, sizeof(opts), "ro,nosuid,nodev,noexec,default_permissions,fsname=vbackup,"
             "subtype=vbackup%s", allow_other ? ",allow_other" : "");
    if (fuse_opt_add_arg(&args, c->prog) || fuse_opt_add_arg(&args, "-o") ||
        fuse_opt_add_arg(&args, opts) || (debug && fuse_opt_add_arg(&args, "-d"))) {
        fprintf(stderr, "%s: mount: out of memory\n", c->prog);
        goto out;
    }
    se = fuse_session_new(&args, vbi_fs_ops(), sizeof(*vbi_fs_ops()), fs);
    if (!se)
        goto out;            /* libfuse said why */
    /* libfuse installs its handlers only over the default ones */
    sigemptyset(&dfl.sa_mask);
    sigaction(SIGINT, &dfl, NULL);
    sigaction(SIGTERM, &dfl, NULL);
    sigaction(SIGHUP, &dfl, NULL);
    if (fuse_set_signal_handlers(se))
        goto out;
    if (fuse_session_mount(se, mnt)) {
        fprintf(stderr, "%s: mount: could not mount on %s\n", c->prog, mnt);
        goto out_signals;
    }
    if (!c->quiet) {
        printf("mounted %s on %s (read-only); unmount with 'fusermount3 -u %s' or stop this "
               "command\n", c->repo, mnt, mnt);
        fflush(stdout);
    }
    cfg = fuse_loop_cfg_create();
    fuse_loop_cfg_set_max_threads(cfg, 16);
    ret = fuse_session_loop_mt(se, cfg) < 0 ? 1 : 0;     /* > 0: the signal that ended it */
    fuse_loop_cfg_destroy(cfg);
    fuse_session_unmount(se);
    if (!c->quiet)
        printf("unmounted %s\n", mnt);
out_signals:
    fuse_remove_signal_handlers(se);
out:
    if (se)
        fuse_session_destroy(se);
    fuse_opt_free_args(&args);
    vbi_fs_free(fs);
    vb_ccache_free(cache);
    vb_sr_close(sr);
    return ret;
}
