/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vbackupctl copy (ctl-v2.h): the verb — its options, the secrets of either
 * side, the snapshots to copy, the progress line and the messages.  The
 * copy itself is the engine vbackupd's copy_to uses too (hostd/repo/copy.h);
 * the source, of either format, is read through the snapshot door
 * (snapread.h).
 */
#include "ctl-v2.h"

#include <errno.h>
#include <getopt.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "copy.h"
#include "progress.h"
#include "repo2.h"
#include "snapread.h"

static void copy_usage(void)
{
    fprintf(stderr, "usage: %s copy --from REPOSITORY --to V2-REPOSITORY "
            "[--password-file FILE | --key-file FILE] "
            "[--from-password-file FILE | --from-key-file FILE] [SNAPSHOT...]\n", prog);
}

int vbctl_copy(int argc, char **argv)
{
    static const struct option lo[] = {
        { "from", 1, 0, 'f' }, { "to", 1, 0, 't' }, { "password-file", 1, 0, 'P' },
        { "key-file", 1, 0, 'K' }, { "from-password-file", 1, 0, 'p' },
        { "from-key-file", 1, 0, 'k' }, { 0 } };
    const char *from = NULL, *to = NULL, *password_file = NULL, *key_file = NULL;
    const char *from_password_file = NULL, *from_key_file = NULL;
    struct vb_sr *sr = NULL;
    struct vb2_repo *r2 = NULL;
    GPtrArray *list = NULL;
    struct vb_progress p;
    uint64_t total = 0, done = 0;
    unsigned copied = 0, present = 0, failed = 0;
    vb_error e = { 0 };
    int c, ret = 1;

    optind = 1;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'f': from = optarg; break;
        case 't': to = optarg; break;
        case 'P': password_file = optarg; break;
        case 'K': key_file = optarg; break;
        case 'p': from_password_file = optarg; break;
        case 'k': from_key_file = optarg; break;
        default: copy_usage(); return 2;
        }
    }
    if (!from || !to) {
        copy_usage();
        return 2;
    }
    if (!vbctl_is_v2(to)) {
        fprintf(stderr, "%s: copy: %s is not a version 2 repository (make one with "
                "vbackupctl --repo %s init --format 2)\n", prog, to, to);
        return 1;
    }
    /* Each side's secret names its side: the two may differ.  A version 1
     * source is claimed by its door, so that its gc waits. */
    if (vb_sr_open_secret(from, true, from_password_file, from_key_file, &sr, &e)) {
        vb_prefixerr(&e, "the source %s", from);
        ret = vbctl_fail("copy", &e);
        goto out;
    }
    if (vbctl_v2_open(to, password_file, key_file, false, &r2, &e)) {
        vb_prefixerr(&e, "the target %s", to);
        ret = vbctl_fail("copy", &e);
        goto out;
    }
    if (vb_copy_check(sr, r2, &e)) {
        vb_prefixerr(&e, "--from %s --to %s", from, to);
        ret = vbctl_fail("copy", &e);
        goto out;
    }
    if (optind < argc) {
        list = g_ptr_array_new_with_free_func((GDestroyNotify)vb_sr_info_free);
        for (int i = optind; i < argc; i++) {
            struct vb_sr_info *info;
            if (vb_sr_stat(sr, argv[i], &info, &e)) {
                ret = vbctl_fail("copy", &e);
                goto out;
            }
            g_ptr_array_add(list, info);
        }
    } else if (vb_sr_list(sr, NULL, &list, &e)) {
        ret = vbctl_fail("copy", &e);
        goto out;
    }
    for (guint i = 0; i < list->len; i++)
        total += vb_copy_size(list->pdata[i]);
    vb_progress_init(&p, "copy", total, !quiet && isatty(STDERR_FILENO));
    for (guint i = 0; i < list->len; i++) {
        const struct vb_sr_info *info = list->pdata[i];
        g_autofree char *id = vbctl_esc(info->id);
        char *new_id = NULL;
        uint64_t added = 0, before = done;
        char a[32];

        memset(&e, 0, sizeof(e));
        ret = vb_copy_snap(sr, info->id, r2, NULL, &p, &done, &new_id, &added, &e);
        done = before + vb_copy_size(info);
        vb_progress_update(&p, done);
        if (ret == -EEXIST) {
            present++;
            if (!quiet)
                printf("%s: in the target already\n", id);
            continue;
        }
        if (ret) {
            failed++;
            vbctl_fail(id, &e);
            continue;
        }
        copied++;
        if (!quiet) {
            g_autofree char *nid = vbctl_esc(new_id);
            printf("%s -> %s (%s new in the target)\n", id, nid,
                   vb_fmt_bytes(added, a, sizeof(a)));
        }
        free(new_id);
    }
    vb_progress_end(&p);
    if (!quiet || failed)
        printf("copy: %u copied, %u already there, %u failed\n", copied, present, failed);
    ret = failed ? 1 : 0;
out:
    if (list)
        g_ptr_array_free(list, TRUE);
    if (r2)
        vb2_repo_close(r2);
    vb_sr_close(sr);
    return ret;
}
