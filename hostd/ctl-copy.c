/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vbackupctl copy (ctl-v2.h): snapshots of a version 1 repository, read
 * with the version 1 library (repo.h, snapshot.h), written into a version 2
 * one through its door (repo2.h) with their ids, groups, dedup groups and
 * parents.
 */
#include "ctl-v2.h"

#include <errno.h>
#include <getopt.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "progress.h"
#include "repo.h"
#include "repo2.h"
#include "snapshot.h"

/* The numbers of a v1 snapshot's stats that a v2 manifest takes. */
static json_object *copy_stats(json_object *v1)
{
    json_object *out = json_object_new_object(), *stats;

    if (!json_object_object_get_ex(v1, "stats", &stats) ||
        !json_object_is_type(stats, json_type_object))
        return out;
    json_object_object_foreach(stats, k, v) {
        bool name_ok = strlen(k) >= 1 && strlen(k) <= 64;
        for (const char *p = k; name_ok && *p; p++)
            name_ok = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_';
        if (name_ok && json_object_is_type(v, json_type_int) && json_object_get_int64(v) >= 0)
            json_object_object_add(out, k, json_object_new_int64(json_object_get_int64(v)));
    }
    return out;
}

static int copy_disk(struct vb_repo *r1, struct vb_snapshot *s, struct vb2_repo *r2,
                     struct vb_codec *c, struct vb_progress *prog_, uint64_t *done,
                     char **new_id, uint64_t *bytes_new, vb_error *e)
{
    struct vb2_write_opts wo = { .vm = s->vm,
                                 .dedup_group = s->space.tagged ? s->space.group : NULL };
    struct vb2_write *w = NULL;
    struct vb2_write_stats ws;
    struct vb_manifest *m = vb_manifest_new();
    uint8_t *ids = NULL, *buf = NULL;
    const char *mode = vb_json_str(s->json, "mode");
    int ret;

    if ((ret = vb_snap_load_fidx(r1, s, e)))
        goto out;
    ids = calloc(VB_MAX(s->n_chunks, 1u), VB_HASH_LEN);
    buf = malloc(s->chunk_size);
    if (!ids || !buf) {
        ret = vb_seterr(e, -ENOMEM, "out of memory");
        goto out;
    }
    if ((ret = vb2_write_begin(r2, &wo, &w, e)))
        goto out;
    for (uint64_t i = 0; i < s->n_chunks; i++) {
        const uint8_t *id = s->ids + i * VB_ID_LEN;
        size_t plain = 0;
        if (vb_id_is_zero(id))
            continue;                           /* a hole stays one */
        ret = vb_repo_get_chunk(r1, c, &s->space, id, buf, s->chunk_size, &plain, e);
        if (ret) {
            vb_prefixerr(e, "%s: chunk %llu", s->id, (unsigned long long)i);
            goto out;
        }
        ret = vb2_write_put(w, c, VB_BLOB_DATA, buf, plain, ids + i * VB_HASH_LEN, NULL, e);
        if (ret < 0)
            goto out;
        *done += plain;
        vb_progress_update(prog_, *done);
    }
    m->type = VB_MF_DISK;
    snprintf(m->id, sizeof(m->id), "%s", s->id);       /* the same id in both */
    m->created_ns = s->created_ns;
    m->group = g_strdup(s->group);
    m->mode = g_strdup(mode ? mode : "full");
    m->parent = s->parent ? g_strdup(s->parent) : NULL;
    m->disk.name = g_strdup(!strncmp(s->group, "disk:", 5) ? s->group + 5 : s->group);
    m->disk.size = s->size;
    m->disk.chunk_size = s->chunk_size;
    m->disk.chunk_count = s->n_chunks;
    m->source = json_object_new_object();
    json_object_object_add(m->source, "copied_from", json_object_new_string(s->id));
    json_object_object_add(m->source, "copied_from_format", json_object_new_int(1));
    m->stats = copy_stats(s->json);
    if ((ret = vb2_write_stream(w, c, ids, s->n_chunks * VB_HASH_LEN, &m->chunks, e)))
        goto out;
    vb2_write_stats(w, &ws);
    ret = vb2_write_commit(w, m, new_id, e);
    *bytes_new = ws.stored_new;
out:
    if (w) {
        vb2_write_abort(w);
        vb2_write_unref(w);
    }
    vb_manifest_free(m);
    free(ids);
    free(buf);
    return ret;
}

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
    struct vb_codec codec;
    struct vb_progress p;
    uint64_t total = 0, done = 0;
    unsigned copied = 0, present = 0, skipped = 0, failed = 0;
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
    if (vb_codec_init(&codec, 1))
        return 1;
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
        if (s->type == VB_SNAP_DISK && vb_snap_load_fidx(r1, s, NULL) == 0)
            total += s->size;
    }
    vb_progress_init(&p, "copy", total, !quiet && isatty(STDERR_FILENO));
    for (guint i = 0; i < list->len; i++) {
        struct vb_snapshot *s = list->pdata[i];
        struct vb_manifest *there = NULL;
        g_autofree char *id = vbctl_esc(s->id);
        char *new_id = NULL;
        uint64_t added = 0, before = done;
        char a[32];

        if (vb2_snap_load(r2, s->id, &there, NULL) == 0) {
            vb_manifest_free(there);
            present++;
            if (!quiet)
                printf("%s: in the target already\n", id);
            continue;
        }
        if (s->type != VB_SNAP_DISK) {
            skipped++;
            fprintf(stderr, "%s: copy: %s: a files snapshot: not copied (copy moves disk "
                    "snapshots so far)\n", prog, id);
            continue;
        }
        memset(&e, 0, sizeof(e));
        if (copy_disk(r1, s, r2, &codec, &p, &done, &new_id, &added, &e)) {
            failed++;
            vbctl_fail(id, &e);
            done = before + (s->size);
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
    if (!quiet || failed || skipped)
        printf("copy: %u copied, %u already there, %u not copied (files), %u failed\n", copied,
               present, skipped, failed);
    ret = failed || skipped ? 1 : 0;
out:
    if (list)
        g_ptr_array_free(list, TRUE);
    if (r2)
        vb2_repo_close(r2);
    vb_repo_release(claim);
    if (r1)
        vb_repo_close(r1);
    vb_codec_free(&codec);
    return ret;
}
