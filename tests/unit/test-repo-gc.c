/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests: gc, verify, stats and the index rebuild of the version 2
 * engine (hostd/repo/gc.c, verify.c), with the phases driven explicitly.
 */
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lease.h"
#include "repo2-testlib.h"

#define CHUNK (64u << 10)

static uint64_t count_objects(struct trepo *t, const char *prefix)
{
    char *p = g_build_filename(t->dir, prefix, NULL);
    GDir *d = g_dir_open(p, 0, NULL);
    const char *n;
    uint64_t c = 0;

    if (!strcmp(prefix, "data")) {
        /* data/xx/... */
        while (d && (n = g_dir_read_name(d))) {
            char *q = g_build_filename(p, n, NULL);
            GDir *d2 = g_dir_open(q, 0, NULL);
            while (d2 && (n = g_dir_read_name(d2)))
                c += !g_str_has_prefix(n, ".tmp-");
            if (d2)
                g_dir_close(d2);
            g_free(q);
        }
    } else {
        while (d && (n = g_dir_read_name(d)))
            c += !g_str_has_prefix(n, ".tmp-");
    }
    if (d)
        g_dir_close(d);
    g_free(p);
    return c;
}

static void expect_verify_clean(struct vb2_repo *r, bool read_data)
{
    struct vb2_verify_opts o = { .read_data = read_data };
    struct vb2_verify_report rep;
    vb_error e = { 0 };

    g_assert_cmpint(vb2_verify(r, &o, &rep, &e), ==, 0);
    for (guint i = 0; i < rep.problems->len; i++)
        g_printerr("# problem: %s\n", (char *)rep.problems->pdata[i]);
    g_assert_cmpuint(rep.problems->len, ==, 0);
    vb2_verify_report_free(&rep);
}

/* Forget one of two snapshots; gc removes what only it used. */
static void test_basic(void)
{
    struct trepo t;
    struct tdisk a = { .seed = 1, .chunk = CHUNK, .nchunks = 64 };
    struct tdisk b = { .seed = 2, .chunk = CHUNK, .nchunks = 64 };
    struct vb2_gc_report rep;
    struct vb2_stats st;
    char *ia = NULL, *ib = NULL;
    uint64_t before;
    vb_error e = { 0 };

    trepo_init(&t, VB_AEAD_AES256GCM, 1 << 20);
    g_assert_cmpint(tbackup_disk(t.r, "a", NULL, &a, &ia, &e), ==, 0);
    g_assert_cmpint(tbackup_disk(t.r, "b", NULL, &b, &ib, &e), ==, 0);
    g_assert_cmpint(vb2_stats(t.r, &st, &e), ==, 0);
    g_assert_cmpuint(st.snapshots, ==, 2);
    g_assert_cmpuint(st.data_blobs, ==, 128);
    g_assert_cmpuint(st.logical_bytes, ==, 128 * (uint64_t)CHUNK);
    before = count_objects(&t, "data");
    /* nothing to do yet: every pack is used */
    g_assert_cmpint(vb2_gc(t.r, NULL, &rep, &e), ==, 0);
    g_assert_cmpuint(rep.packs_deleted, ==, 0);
    g_assert_cmpuint(rep.lists_written, ==, 0);
    g_assert_cmpuint(count_objects(&t, "data"), ==, before);

    g_assert_cmpint(vb2_forget(t.r, ia, &e), ==, 0);
    /* dry run: decides, changes nothing */
    {
        struct vb2_gc_opts o = { .dry_run = true };
        g_assert_cmpint(vb2_gc(t.r, &o, &rep, &e), ==, 0);
        g_assert_cmpuint(rep.packs_condemned, >, 0);
        g_assert_cmpuint(count_objects(&t, "data"), ==, before);
        g_assert_cmpuint(count_objects(&t, "gc"), ==, 0);
    }
    g_assert_cmpint(vb2_gc(t.r, NULL, &rep, &e), ==, 0);
    printf("# gc: %" G_GUINT64_FORMAT " packs, %" G_GUINT64_FORMAT " condemned, %"
           G_GUINT64_FORMAT " repacked, %" G_GUINT64_FORMAT " deleted, bloom %zu bytes\n",
           rep.packs, rep.packs_condemned, rep.packs_repacked, rep.packs_deleted,
           rep.bloom_bytes);
    g_assert_cmpuint(rep.lists_written, ==, 1);
    g_assert_cmpuint(rep.lists_done, ==, 1);
    g_assert_cmpuint(rep.packs_deleted, >, 0);
    g_assert_cmpuint(count_objects(&t, "data"), <, before);
    g_assert_cmpuint(count_objects(&t, "gc"), ==, 0);
    g_assert_cmpint(tcheck_disk(t.r, ib, &b, &e), ==, 0);
    g_assert_cmpint(vb2_stats(t.r, &st, &e), ==, 0);
    g_assert_cmpuint(st.data_blobs, ==, 64);
    expect_verify_clean(t.r, true);

    /* everything gone: every pack goes */
    g_assert_cmpint(vb2_forget(t.r, ib, &e), ==, 0);
    g_assert_cmpint(vb2_gc(t.r, NULL, &rep, &e), ==, 0);
    g_assert_cmpuint(count_objects(&t, "data"), ==, 0);
    g_assert_cmpint(vb2_stats(t.r, &st, &e), ==, 0);
    g_assert_cmpuint(st.blobs, ==, 0);
    g_free(ia);
    g_free(ib);
    trepo_free(&t);
}

/* A pack mostly garbage is repacked: its live blobs move, it goes. */
static void test_repack(void)
{
    struct trepo t;
    struct tdisk a = { .seed = 5, .chunk = CHUNK, .nchunks = 60 };
    struct tdisk b = { .seed = 5, .chunk = CHUNK, .nchunks = 6 };   /* the first 6 of a */
    struct vb2_gc_report rep;
    struct vb2_stats st;
    char *ia = NULL, *ib = NULL;
    vb_error e = { 0 };

    trepo_init(&t, VB_AEAD_NONE, 1 << 20);
    g_assert_cmpint(tbackup_disk(t.r, "a", NULL, &a, &ia, &e), ==, 0);
    g_assert_cmpint(tbackup_disk(t.r, "b", NULL, &b, &ib, &e), ==, 0);
    g_assert_cmpint(vb2_forget(t.r, ia, &e), ==, 0);
    g_assert_cmpint(vb2_gc(t.r, NULL, &rep, &e), ==, 0);
    printf("# repack: %" G_GUINT64_FORMAT " packs repacked, %" G_GUINT64_FORMAT
           " blobs moved, %" G_GUINT64_FORMAT " deleted\n", rep.packs_repacked,
           rep.blobs_repacked, rep.packs_deleted);
    g_assert_cmpuint(rep.packs_repacked, >=, 1);
    g_assert_cmpuint(rep.blobs_repacked, >=, 6);
    g_assert_cmpint(tcheck_disk(t.r, ib, &b, &e), ==, 0);
    g_assert_cmpint(vb2_stats(t.r, &st, &e), ==, 0);
    /* 6 data chunks and the meta blobs of b's stream remain */
    g_assert_cmpuint(st.data_blobs, ==, 6);
    g_assert_cmpuint(st.pack_bytes, <, 20u * CHUNK);
    expect_verify_clean(t.r, true);
    g_free(ia);
    g_free(ib);
    trepo_free(&t);
}

/*
 * The protocol, step by step: a writer that began before the condemned
 * list uses condemned chunks; phase 2 waits for its lease and then saves
 * what it committed.  A writer that began after the list never uses them.
 */
static void test_phases(void)
{
    for (int enc = 0; enc < 2; enc++) {
        struct trepo t;
        struct tdisk a = { .seed = 9, .chunk = CHUNK, .nchunks = 40 };
        struct vb2_gc_opts condemn = { .phases = VB2_GC_CONDEMN, .repack_percent = 100 };
        struct vb2_gc_opts del = { .phases = VB2_GC_DELETE };
        struct vb2_write_opts wo = { .vm = "w" };
        struct vb2_gc_report rep;
        struct vb2_write *w1, *w2;
        struct vb_codec c;
        uint8_t *buf = g_malloc(CHUNK), *ids1 = g_malloc0(40 * 32), *ids2 = g_malloc0(40 * 32);
        char *ia = NULL, *id1 = NULL, *id2 = NULL;
        vb_error e = { 0 };

        trepo_init(&t, enc ? VB_AEAD_AES256GCM : VB_AEAD_NONE, 1 << 20);
        g_assert_cmpint(vb_codec_init(&c, 1), ==, 0);
        g_assert_cmpint(tbackup_disk(t.r, "a", NULL, &a, &ia, &e), ==, 0);
        /* w1 begins while a's packs are in use */
        g_assert_cmpint(vb2_write_begin(t.r, &wo, &w1, &e), ==, 0);
        g_assert_cmpint(vb2_forget(t.r, ia, &e), ==, 0);
        /* phase 1: a's packs condemned; the list names w1 */
        g_assert_cmpint(vb2_gc(t.r, &condemn, &rep, &e), ==, 0);
        g_assert_cmpuint(rep.lists_written, ==, 1);
        g_assert_cmpuint(rep.packs_condemned, >, 0);
        /* w2 begins after the list: it reads it */
        g_assert_cmpint(vb2_write_begin(t.r, &wo, &w2, &e), ==, 0);
        /* both back up a's data: w1 finds it in the index, w2 must store it
         * again (w2 the first half only: the second half lives in condemned
         * packs alone) */
        for (uint64_t i = 0; i < 40; i++) {
            tdata(a.seed, i, buf, CHUNK);
            g_assert_cmpint(vb2_write_put(w1, &c, VB_BLOB_DATA, buf, CHUNK, ids1 + 32 * i, NULL,
                                          &e), ==, 0);
            if (i < 20)
                g_assert_cmpint(vb2_write_put(w2, &c, VB_BLOB_DATA, buf, CHUNK, ids2 + 32 * i,
                                              NULL, &e), ==, 1);
        }
        /* phase 2 while w1 and w2 run: w1 is named and live, nothing goes */
        g_assert_cmpint(vb2_gc(t.r, &del, &rep, &e), ==, 0);
        g_assert_cmpuint(rep.lists_waiting, ==, 1);
        g_assert_cmpuint(rep.packs_deleted, ==, 0);
        /* w1 commits (referencing condemned chunks), w2 too */
        {
            struct vb_manifest *m = vb_manifest_new();
            m->type = VB_MF_DISK;
            m->disk.size = 40 * (uint64_t)CHUNK;
            m->disk.chunk_size = CHUNK;
            m->disk.chunk_count = 40;
            g_assert_cmpint(vb2_write_stream(w1, &c, ids1, 40 * 32, &m->chunks, &e), ==, 0);
            g_assert_cmpint(vb2_write_commit(w1, m, &id1, &e), ==, 0);
            vb_manifest_free(m);
            m = vb_manifest_new();
            m->type = VB_MF_DISK;
            m->disk.size = 20 * (uint64_t)CHUNK;
            m->disk.chunk_size = CHUNK;
            m->disk.chunk_count = 20;
            g_assert_cmpint(vb2_write_stream(w2, &c, ids2, 20 * 32, &m->chunks, &e), ==, 0);
            g_assert_cmpint(vb2_write_commit(w2, m, &id2, &e), ==, 0);
            vb_manifest_free(m);
        }
        vb2_write_unref(w1);
        vb2_write_unref(w2);
        /* phase 2 now: w1 ended; its snapshot saves the condemned packs it uses */
        g_assert_cmpint(vb2_gc(t.r, &del, &rep, &e), ==, 0);
        g_assert_cmpuint(rep.lists_done, ==, 1);
        g_assert_cmpuint(rep.packs_saved, >, 0);
        {
            struct tdisk d = a, half = a;
            half.nchunks = 20;
            g_assert_cmpint(tcheck_disk(t.r, id1, &d, &e), ==, 0);
            g_assert_cmpint(tcheck_disk(t.r, id2, &half, &e), ==, 0);
        }
        expect_verify_clean(t.r, true);
        /* forget w1's: the saved packs become garbage and go in a later gc */
        g_assert_cmpint(vb2_forget(t.r, id1, &e), ==, 0);
        g_assert_cmpint(vb2_gc(t.r, NULL, &rep, &e), ==, 0);
        g_assert_cmpuint(rep.packs_deleted, >, 0);
        {
            struct tdisk half = a;
            half.nchunks = 20;
            g_assert_cmpint(tcheck_disk(t.r, id2, &half, &e), ==, 0);
        }
        expect_verify_clean(t.r, true);
        free(id1);
        free(id2);
        g_free(ia);
        g_free(buf);
        g_free(ids1);
        g_free(ids2);
        vb_codec_free(&c);
        trepo_free(&t);
    }
}

/* What an aborted session stored goes; a crashed one's once its lease expires. */
static void test_aborted(void)
{
    struct trepo t;
    struct vb2_write_opts wo = { .vm = "x" };
    struct vb2_write *w;
    struct vb2_gc_report rep;
    struct vb_codec c;
    uint8_t *buf = g_malloc(CHUNK), id[32];
    vb_error e = { 0 };

    trepo_init(&t, VB_AEAD_CHACHA20POLY1305, 1 << 20);
    g_assert_cmpint(vb_codec_init(&c, 1), ==, 0);
    g_assert_cmpint(vb2_write_begin(t.r, &wo, &w, &e), ==, 0);
    for (int i = 0; i < 40; i++) {
        tdata(77, (uint64_t)i, buf, CHUNK);
        g_assert_cmpint(vb2_write_put(w, &c, VB_BLOB_DATA, buf, CHUNK, id, NULL, &e), ==, 1);
    }
    /* gc while it runs: its uploaded packs are condemned, not deleted (once
     * one is uploaded: the upload threads may not have got to it yet on a
     * busy machine; 60 s is a safety net) */
    for (int k = 0; k < 6000; k++) {
        struct vb2_write_stats ws;
        vb2_write_stats(w, &ws);
        if (ws.packs)
            break;
        g_usleep(10000);
    }
    g_assert_cmpint(vb2_gc(t.r, NULL, &rep, &e), ==, 0);
    g_assert_cmpuint(rep.packs_deleted, ==, 0);
    g_assert_cmpuint(rep.lists_waiting, ==, 1);
    vb2_write_abort(w);
    vb2_write_unref(w);
    g_assert_cmpint(vb2_gc(t.r, NULL, &rep, &e), ==, 0);
    g_assert_cmpuint(rep.lists_done, >=, 1);
    g_assert_cmpuint(count_objects(&t, "data"), ==, 0);
    g_assert_cmpuint(count_objects(&t, "leases"), ==, 0);
    vb_codec_free(&c);
    g_free(buf);
    trepo_free(&t);
}

/* gc never deletes when a manifest cannot be read. */
static void test_failsafe(void)
{
    struct trepo t;
    struct tdisk a = { .seed = 3, .chunk = CHUNK, .nchunks = 20 };
    struct tdisk b = { .seed = 4, .chunk = CHUNK, .nchunks = 20 };
    struct vb2_gc_report rep;
    GPtrArray *list;
    char *ia = NULL, *ib = NULL, *p;
    uint64_t before;
    vb_error e = { 0 };

    trepo_init(&t, VB_AEAD_AES256GCM, 1 << 20);
    g_assert_cmpint(tbackup_disk(t.r, "a", NULL, &a, &ia, &e), ==, 0);
    g_assert_cmpint(tbackup_disk(t.r, "b", NULL, &b, &ib, &e), ==, 0);
    g_assert_cmpint(vb2_snap_list(t.r, "b", &list, NULL, &e), ==, 0);
    p = g_strdup_printf("%s/snapshots/%s", t.dir, ((struct vb_manifest *)list->pdata[0])->object);
    g_ptr_array_free(list, TRUE);
    g_assert_true(g_file_set_contents(p, "garbage", -1, NULL));
    /* the cached copy too, or the cache would hide the damage */
    g_assert_cmpint(vb_rm_rf_at(AT_FDCWD, t.cache), ==, 0);
    trepo_close(&t);
    trepo_open(&t);
    g_assert_cmpint(vb2_forget(t.r, ia, &e), ==, 0);
    before = count_objects(&t, "data");
    g_assert_cmpint(vb2_gc(t.r, NULL, &rep, &e), ==, -EBADMSG);
    g_assert_nonnull(strstr(e.msg, "nothing is deleted"));
    g_assert_cmpuint(count_objects(&t, "data"), ==, before);
    g_assert_cmpuint(count_objects(&t, "gc"), ==, 0);
    /* the lock is released */
    g_assert_cmpuint(count_objects(&t, "locks"), ==, 0);
    g_free(p);
    g_free(ia);
    g_free(ib);
    trepo_free(&t);
}

/* verify names damage; repair rebuilds a lost index from the packs. */
static void test_verify_repair(void)
{
    struct trepo t;
    struct tdisk a = { .seed = 21, .chunk = CHUNK, .nchunks = 30 };
    struct vb2_verify_opts full = { .read_data = true };
    struct vb2_verify_report rep;
    char *ia = NULL, *pack = NULL;
    uint64_t np, nb;
    vb_error e = { 0 };

    trepo_init(&t, VB_AEAD_NONE, 1 << 20);
    g_assert_cmpint(tbackup_disk(t.r, "a", NULL, &a, &ia, &e), ==, 0);
    expect_verify_clean(t.r, false);
    expect_verify_clean(t.r, true);

    /* every index file removed: reads fail; repair brings them back */
    {
        char *idx = g_build_filename(t.dir, "index", NULL);
        g_assert_cmpint(vb_rm_rf_at(AT_FDCWD, idx), ==, 0);
        g_free(idx);
    }
    g_assert_cmpint(vb_rm_rf_at(AT_FDCWD, t.cache), ==, 0);
    trepo_close(&t);
    trepo_open(&t);
    g_assert_cmpint(tcheck_disk(t.r, ia, &a, &e), !=, 0);
    g_assert_cmpint(vb2_verify(t.r, NULL, &rep, &e), ==, 0);
    g_assert_cmpuint(rep.problems->len, >, 0);
    printf("# verify without an index: %s\n", (char *)rep.problems->pdata[0]);
    vb2_verify_report_free(&rep);
    g_assert_cmpint(vb2_repair_index(t.r, &np, &nb, NULL, &e), ==, 0);
    g_assert_cmpuint(nb, >=, 30);
    g_assert_cmpint(tcheck_disk(t.r, ia, &a, &e), ==, 0);
    expect_verify_clean(t.r, true);

    /* a byte of a pack flipped: named by the data check */
    {
        char *dd = g_build_filename(t.dir, "data", NULL);
        GDir *d = g_dir_open(dd, 0, NULL);
        const char *n = g_dir_read_name(d);
        char *sub = g_build_filename(dd, n, NULL);
        GDir *d2 = g_dir_open(sub, 0, NULL);
        gchar *data;
        gsize len;
        pack = g_build_filename(sub, g_dir_read_name(d2), NULL);
        g_assert_true(g_file_get_contents(pack, &data, &len, NULL));
        data[100] ^= 1;
        g_assert_true(g_file_set_contents(pack, data, (gssize)len, NULL));
        g_free(data);
        g_dir_close(d2);
        g_dir_close(d);
        g_free(sub);
        g_free(dd);
    }
    g_assert_cmpint(vb2_verify(t.r, &full, &rep, &e), ==, 0);
    g_assert_cmpuint(rep.problems->len, >=, 1);
    {
        bool named = false;
        for (guint i = 0; i < rep.problems->len; i++) {
            printf("# verify a flipped byte: %s\n", (char *)rep.problems->pdata[i]);
            named = named || strstr(rep.problems->pdata[i], "SHA-256 is not its name");
        }
        g_assert_true(named);
    }
    vb2_verify_report_free(&rep);
    /* removed: named too */
    g_assert_cmpint(unlink(pack), ==, 0);
    g_assert_cmpint(vb2_verify(t.r, NULL, &rep, &e), ==, 0);
    g_assert_cmpuint(rep.problems->len, >=, 1);
    {
        bool named = false;
        for (guint i = 0; i < rep.problems->len; i++)
            named = named || strstr(rep.problems->pdata[i], "named by the index but missing");
        g_assert_true(named);
    }
    vb2_verify_report_free(&rep);
    g_free(pack);
    g_free(ia);
    trepo_free(&t);
}

/* Many small index files are merged into one. */
static void test_merge(void)
{
    struct trepo t;
    struct vb2_gc_opts o = { .merge_min_files = 4 };
    struct vb2_gc_report rep;
    char *ids[8];
    vb_error e = { 0 };

    trepo_init(&t, VB_AEAD_AES256GCM, 1 << 20);
    for (int i = 0; i < 8; i++) {
        struct tdisk d = { .seed = 100 + (uint32_t)i, .chunk = 4096, .nchunks = 10 };
        g_assert_cmpint(tbackup_disk(t.r, "m", NULL, &d, &ids[i], &e), ==, 0);
    }
    g_assert_cmpuint(count_objects(&t, "index"), ==, 8);
    g_assert_cmpint(vb2_gc(t.r, &o, &rep, &e), ==, 0);
    g_assert_cmpuint(rep.index_removed, ==, 8);
    g_assert_cmpuint(count_objects(&t, "index"), ==, 1);
    for (int i = 0; i < 8; i++) {
        struct tdisk d = { .seed = 100 + (uint32_t)i, .chunk = 4096, .nchunks = 10 };
        g_assert_cmpint(tcheck_disk(t.r, ids[i], &d, &e), ==, 0);
        g_free(ids[i]);
    }
    expect_verify_clean(t.r, true);
    trepo_free(&t);
}

/* A session whose lease may have expired does not commit. */
static void test_lease_expiry(void)
{
    struct trepo t;
    struct vb2_open_opts o;
    struct vb2_write_opts wo = { .vm = "slow" };
    struct vb2_write *w;
    struct vb_manifest *m = vb_manifest_new();
    GPtrArray *list;
    vb_error e = { 0 };

    trepo_init(&t, VB_AEAD_NONE, 1 << 20);
    trepo_close(&t);
    o = trepo_open_opts(&t);
    o.lease_expiry_ns = 300 * INT64_C(1000000);
    o.lease_margin_ns = 200 * INT64_C(1000000);
    o.lease_refresh_ns = 3600 * INT64_C(1000000000);      /* never refreshed */
    g_assert_cmpint(vb2_repo_open(t.dir, &o, &t.r, &e), ==, 0);
    g_assert_cmpint(vb2_write_begin(t.r, &wo, &w, &e), ==, 0);
    g_usleep(150 * 1000);
    m->type = VB_MF_DISK;
    m->disk.chunk_size = 4096;
    g_assert_cmpint(vb2_write_stream(w, NULL, "", 0, &m->chunks, &e), ==, 0);
    g_assert_cmpint(vb2_write_commit(w, m, NULL, &e), ==, -ESTALE);
    g_assert_nonnull(strstr(e.msg, "may have expired"));
    vb2_write_unref(w);
    g_assert_cmpint(vb2_snap_list(t.r, NULL, &list, NULL, &e), ==, 0);
    g_assert_cmpuint(list->len, ==, 0);
    g_ptr_array_free(list, TRUE);
    /* refreshed in time, it commits */
    trepo_close(&t);
    o.lease_refresh_ns = 20 * INT64_C(1000000);
    g_assert_cmpint(vb2_repo_open(t.dir, &o, &t.r, &e), ==, 0);
    g_assert_cmpint(vb2_write_begin(t.r, &wo, &w, &e), ==, 0);
    g_usleep(400 * 1000);
    g_assert_cmpint(vb2_write_commit(w, m, NULL, &e), ==, 0);
    vb2_write_unref(w);
    vb_manifest_free(m);
    trepo_free(&t);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/repo-gc/basic", test_basic);
    g_test_add_func("/repo-gc/repack", test_repack);
    g_test_add_func("/repo-gc/phases", test_phases);
    g_test_add_func("/repo-gc/aborted", test_aborted);
    g_test_add_func("/repo-gc/failsafe", test_failsafe);
    g_test_add_func("/repo-gc/verify-repair", test_verify_repair);
    g_test_add_func("/repo-gc/merge", test_merge);
    g_test_add_func("/repo-gc/lease-expiry", test_lease_expiry);
    return g_test_run();
}
