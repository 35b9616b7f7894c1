/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vbackupctl copy (ctl-v2.h): the verb — its options, the snapshots to
 * copy, the progress line and the messages.  The copy itself is the engine
 * vbackupd's copy_to uses too (hostd/repo/copy.h).
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
#include "repo.h"
#include "repo2.h"
#include "snapshot.h"

int vbctl_copy(int argc, char **argv)
{
    static const struct option lo[] = {
        { "from", 1, 0, 'f' }, { "to", 1, 0, 't' }, { "password-file", 1, 0, 'P' },
        { "key-file", 1, 0, 'K' }, { 0 } };
    const char *from = NULL, *to = NULL, *password_file = NULL, *key_file = NULL;
    struct vb_repo *r1 = NULL;
    struct vb_claim *claim = NULL;
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
        default: return 2;
        }
    }
    if (!from || !to) {
        fprintf(stderr, "usage: %s copy --from V1-REPOSITORY --to V2-REPOSITORY "
                "[--password-file FILE | --key-file FILE] [SNAPSHOT...]\n", prog);
        return 2;
    }
    if (vbctl_is_v2(from)) {
        fprintf(stderr, "%s: copy: %s is a version 2 repository: copy reads version 1 "
                "repositories so far\n", prog, from);
        return 1;
    }
    if (!vbctl_is_v2(to)) {
        fprintf(stderr, "%s: copy: %s is not a version 2 repository (make one with "
                "vbackupctl --repo %s init --format 2)\n", prog, to, to);
        return 1;
    }
    /* the source's claim keeps its gc from removing what is being copied */
    if (vb_repo_open(from, VB_LOCK_NONE, quiet, &r1, &e) || vb_repo_claim(r1, true, &claim, &e) ||
        vbctl_v2_open(to, password_file, key_file, false, &r2, &e)) {
        ret = vbctl_fail("copy", &e);
        goto out;
    }
    if (optind < argc) {
        list = g_ptr_array_new_with_free_func((GDestroyNotify)vb_snap_free);
        for (int i = optind; i < argc; i++) {
            struct vb_snapshot *s;
            if (vb_snap_load(r1, argv[i], &s, &e)) {
                ret = vbctl_fail("copy", &e);
                goto out;
            }
            g_ptr_array_add(list, s);
        }
    } else if (vb_snap_list(r1, NULL, &list, &e)) {
        ret = vbctl_fail("copy", &e);
        goto out;
    }
    for (guint i = 0; i < list->len; i++) {
        struct vb_snapshot *s = list->pdata[i];
        if (s->type != VB_SNAP_DISK || vb_snap_load_fidx(r1, s, NULL) == 0)
            total += vb_copy_size(s);
    }
    vb_progress_init(&p, "copy", total, !quiet && isatty(STDERR_FILENO));
    for (guint i = 0; i < list->len; i++) {
        struct vb_snapshot *s = list->pdata[i];
        g_autofree char *id = vbctl_esc(s->id);
        char *new_id = NULL;
        uint64_t added = 0, before = done;
        char a[32];

        memset(&e, 0, sizeof(e));
        ret = vb_copy_snap(r1, s, r2, NULL, &p, &done, &new_id, &added, &e);
        done = before + vb_copy_size(s);
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
    vb_repo_release(claim);
    if (r1)
        vb_repo_close(r1);
    return ret;
}
