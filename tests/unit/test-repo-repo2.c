/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests: the version 2 engine's door (hostd/repo/repo2.c, write.c):
 * create and open with their errors, write sessions (dedup, groups, abort,
 * leases, failures), reads (streams, single and parallel gets), request
 * counts of an unchanged backup.
 */
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lease.h"
#include "repo2-testlib.h"
#include "repo-teststore.h"

static const enum vb_aead all_aeads[] = { VB_AEAD_NONE, VB_AEAD_AES256GCM,
                                          VB_AEAD_CHACHA20POLY1305 };

/* ---- create and open ------------------------------------------------------------------------ */

static void test_create_open(void)
{
    for (size_t a = 0; a < G_N_ELEMENTS(all_aeads); a++) {
        struct trepo t;
        struct vb2_repo_info info;
        struct vb2_open_opts o;
        struct vb2_repo *r;
        struct vb_secret wrong;
        vb_error e = { 0 };

        trepo_init(&t, all_aeads[a], 0);
        vb2_repo_info(t.r, &info);
        g_assert_cmpint(info.encryption, ==, all_aeads[a]);
        g_assert_cmpuint(info.pack_target, ==, VB_PACK_TARGET);
        g_assert_cmpuint(info.file_avg, ==, VB2_FILE_AVG_DEFAULT);
        g_assert_cmpint(info.zstd_level, ==, VB2_ZSTD_DEFAULT);
        g_assert_cmpstr(info.cache_dir, ==, t.cache);
        trepo_close(&t);

        /* a second create refuses */
        {
            struct vb2_create_opts co = { .encryption = VB_AEAD_NONE };
            g_assert_cmpint(vb2_repo_create(t.dir, &co, &e), ==, -EEXIST);
            g_assert_nonnull(strstr(e.msg, "already a vbackup repository"));
        }
        o = trepo_open_opts(&t);
        if (all_aeads[a] != VB_AEAD_NONE) {
            o.secret = NULL;
            g_assert_cmpint(vb2_repo_open(t.dir, &o, &r, &e), ==, -ENOKEY);
            g_assert_nonnull(strstr(e.msg, "give a password"));
            trepo_secret(&wrong, "wrong horse");
            o.secret = &wrong;
            g_assert_cmpint(vb2_repo_open(t.dir, &o, &r, &e), ==, -EACCES);
            g_assert_nonnull(strstr(e.msg, "wrong password or key"));
            vb_secret_wipe(&wrong);
        }
        trepo_open(&t);
        trepo_free(&t);
    }
}

/* No usable cache folder (VBACKUP_CACHE not writable, as a user whose home
 * is not): the open takes a private temporary one and removes it at close. */
static void test_private_cache(void)
{
    struct trepo t;
    struct vb2_open_opts o;
    struct vb2_repo_info info;
    struct vb2_repo *r;
    GPtrArray *list = NULL;
    vb_error e = { 0 };
    char *tmp;

    trepo_init(&t, VB_AEAD_NONE, 0);
    trepo_close(&t);
    o = trepo_open_opts(&t);
    o.cache_dir = NULL;
    g_setenv("VBACKUP_CACHE", "/proc/no-cache-here", TRUE);
    g_assert_cmpint(vb2_repo_open(t.dir, &o, &r, &e), ==, 0);
    g_unsetenv("VBACKUP_CACHE");
    vb2_repo_info(r, &info);
    g_assert_nonnull(strstr(info.cache_dir, "vbackup-cache-"));
    tmp = g_strdup(info.cache_dir);
    g_assert_true(g_file_test(tmp, G_FILE_TEST_IS_DIR));
    g_assert_cmpint(vb2_snap_list(r, NULL, &list, NULL, &e), ==, 0);
    g_ptr_array_free(list, TRUE);
    vb2_repo_close(r);
    g_assert_false(g_file_test(tmp, G_FILE_TEST_EXISTS));
    g_free(tmp);
    trepo_open(&t);
    trepo_close(&t);
    trepo_free(&t);
}

static void test_open_errors(void)
{
    char *dir = g_dir_make_tmp("vb-notrepo-XXXXXX", NULL), *p;
    struct vb2_repo *r;
    struct vb2_open_opts o = { .cache_dir = dir };
    vb_error e = { 0 };

    g_assert_cmpint(vb2_repo_open(dir, &o, &r, &e), ==, -ENOENT);
    g_assert_nonnull(strstr(e.msg, "not a vbackup repository"));
    /* version 1 */
    p = g_build_filename(dir, "vbackup-repo.json", NULL);
    g_assert_true(g_file_set_contents(p, "{\"vbackup_repository\": 1}", -1, NULL));
    g_assert_cmpint(vb2_repo_open(dir, &o, &r, &e), ==, -EPROTONOSUPPORT);
    g_assert_nonnull(strstr(e.msg, "version 1 repository"));
    g_free(p);
    /* an unknown format */
    p = g_build_filename(dir, "config", NULL);
    g_assert_true(g_file_set_contents(p, "{\"vbackup_repository\": 3}", -1, NULL));
    g_assert_cmpint(vb2_repo_open(dir, &o, &r, &e), ==, -EPROTONOSUPPORT);
    g_assert_nonnull(strstr(e.msg, "format 3 is not supported"));
    g_assert_true(g_file_set_contents(p, "not json", -1, NULL));
    g_assert_cmpint(vb2_repo_open(dir, &o, &r, &e), ==, -EBADMSG);
    g_assert_nonnull(strstr(e.msg, "config: damaged"));
    g_free(p);
    g_assert_cmpint(vb_rm_rf_at(AT_FDCWD, dir), ==, 0);
    g_free(dir);
}

/* VBACKUP_TEST_LEASE_EXPIRY: out of range or not a number fails the open
 * naming it; 2 s makes a session refresh its lease every 0.2 s; options that
 * give lease times win over it. */
static void test_lease_env(void)
{
    static const char *const bad[] = { "1", "901", "8s", "-3", "x" };
    struct trepo t;
    struct vb2_write_opts wo = { .vm = "x" };
    struct vb2_open_opts o;
    struct vb2_write *w;
    struct vb2_repo *r;
    struct vb_lease_info first, later;
    GArray *leases;
    vb_error e = { 0 };

    trepo_init(&t, VB_AEAD_NONE, 0);
    trepo_close(&t);
    o = trepo_open_opts(&t);
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_setenv("VBACKUP_TEST_LEASE_EXPIRY", bad[i], TRUE);
        g_assert_cmpint(vb2_repo_open(t.dir, &o, &r, &e), ==, -EINVAL);
        g_assert_nonnull(strstr(e.msg, "VBACKUP_TEST_LEASE_EXPIRY"));
    }
    for (int explicit = 0; explicit < 2; explicit++) {
        g_setenv("VBACKUP_TEST_LEASE_EXPIRY", explicit ? "x" : "2", TRUE);
        o.lease_expiry_ns = explicit ? 60 * INT64_C(1000000000) : 0;
        g_assert_cmpint(vb2_repo_open(t.dir, &o, &r, &e), ==, 0);
        g_assert_cmpint(vb2_write_begin(r, &wo, &w, &e), ==, 0);
        g_assert_cmpint(vb_lease_list(vb2_repo_store(r), &leases, &e), ==, 0);
        g_assert_cmpuint(leases->len, ==, 1);
        first = g_array_index(leases, struct vb_lease_info, 0);
        g_array_free(leases, TRUE);
        g_usleep(700 * 1000);
        g_assert_cmpint(vb_lease_list(vb2_repo_store(r), &leases, &e), ==, 0);
        g_assert_cmpuint(leases->len, ==, 1);
        later = g_array_index(leases, struct vb_lease_info, 0);
        g_array_free(leases, TRUE);
        if (explicit)       /* refreshed every minute: not yet */
            g_assert_cmpint(later.mtime_ns, ==, first.mtime_ns);
        else
            g_assert_cmpint(later.mtime_ns, >, first.mtime_ns);
        vb2_write_abort(w);
        vb2_write_unref(w);
        vb2_repo_close(r);
    }
    g_unsetenv("VBACKUP_TEST_LEASE_EXPIRY");
    trepo_free(&t);
}

/* A config changed to say "none" in an encrypted repository is refused. */
static void test_config_downgrade(void)
{
    struct trepo t;
    struct trepo plain;
    struct vb2_repo *r;
    struct vb2_open_opts o;
    char *cfg, *p;
    vb_error e = { 0 };

    trepo_init(&t, VB_AEAD_AES256GCM, 0);
    trepo_init(&plain, VB_AEAD_NONE, 0);
    trepo_close(&t);
    /* a valid unencrypted config from another repository, over an encrypted one */
    p = g_build_filename(plain.dir, "config", NULL);
    g_assert_true(g_file_get_contents(p, &cfg, NULL, NULL));
    g_free(p);
    p = g_build_filename(t.dir, "config", NULL);
    g_assert_true(g_file_set_contents(p, cfg, -1, NULL));
    g_free(p);
    o = trepo_open_opts(&t);
    g_assert_cmpint(vb2_repo_open(t.dir, &o, &r, &e), ==, -EBADMSG);
    g_assert_nonnull(strstr(e.msg, "keys/ holds key files"));
    g_free(cfg);
    trepo_free(&t);
    trepo_free(&plain);
}

/* ---- sessions and reads ----------------------------------------------------------------------- */

static void test_roundtrip(void)
{
    for (size_t a = 0; a < G_N_ELEMENTS(all_aeads); a++) {
        struct trepo t;
        struct tdisk d = { .seed = 7, .chunk = 64 << 10, .nchunks = 100, .hole_every = 9 };
        struct tdisk d2 = d;
        char *id1 = NULL, *id2 = NULL, *id3 = NULL;
        GPtrArray *list;
        vb_error e = { 0 };

        trepo_init(&t, all_aeads[a], 1 << 20);
        g_assert_cmpint(tbackup_disk(t.r, "web1", NULL, &d, &id1, &e), ==, 0);
        g_assert_cmpint(tcheck_disk(t.r, id1, &d, &e), ==, 0);
        /* coalesced: far fewer range gets than chunks */
        printf("# %" G_GUINT64_FORMAT " range gets so far\n", vb2_repo_range_gets(t.r));
        /* same second, same VM: -2 */
        d2.seed = 8;
        g_assert_cmpint(tbackup_disk(t.r, "web1", NULL, &d2, &id2, &e), ==, 0);
        g_assert_cmpstr(id1, !=, id2);
        g_assert_true(g_str_has_suffix(id2, "-2") || strcmp(id1, id2) < 0);
        g_assert_cmpint(tcheck_disk(t.r, id2, &d2, &e), ==, 0);
        /* a group: the same data, other ids */
        g_assert_cmpint(tbackup_disk(t.r, "web2", "tenant-b", &d, &id3, &e), ==, 0);
        g_assert_cmpint(tcheck_disk(t.r, id3, &d, &e), ==, 0);
        g_assert_cmpint(vb2_snap_list(t.r, NULL, &list, NULL, &e), ==, 0);
        g_assert_cmpuint(list->len, ==, 3);
        g_ptr_array_free(list, TRUE);
        g_assert_cmpint(vb2_snap_list(t.r, "web1", &list, NULL, &e), ==, 0);
        g_assert_cmpuint(list->len, ==, 2);
        g_ptr_array_free(list, TRUE);

        /* reopen with a cold cache: everything again from the store */
        trepo_close(&t);
        g_assert_cmpint(vb_rm_rf_at(AT_FDCWD, t.cache), ==, 0);
        trepo_open(&t);
        g_assert_cmpint(tcheck_disk(t.r, id1, &d, &e), ==, 0);
        g_assert_cmpint(tcheck_disk(t.r, id3, &d, &e), ==, 0);

        /* forget */
        g_assert_cmpint(vb2_forget(t.r, id2, &e), ==, 0);
        g_assert_cmpint(vb2_forget(t.r, id2, &e), ==, -ENOENT);
        g_assert_cmpint(vb2_snap_list(t.r, "web1", &list, NULL, &e), ==, 0);
        g_assert_cmpuint(list->len, ==, 1);
        g_ptr_array_free(list, TRUE);
        g_free(id1);
        g_free(id2);
        g_free(id3);
        trepo_free(&t);
    }
}

/* Dedup: a second backup of the same disk stores nothing but its manifest. */
static void test_dedup(void)
{
    struct trepo t;
    struct tdisk d = { .seed = 11, .chunk = 32 << 10, .nchunks = 200 };
    struct vb2_write_opts wo = { .vm = "db" };
    struct vb2_write *w;
    struct vb2_write_stats st;
    struct vb_codec c;
    uint8_t buf[32 << 10], id[32], id2[32];
    vb_error e = { 0 };

    trepo_init(&t, VB_AEAD_AES256GCM, 1 << 20);
    g_assert_cmpint(tbackup_disk(t.r, "db", NULL, &d, NULL, &e), ==, 0);
    g_assert_cmpint(vb_codec_init(&c, 1), ==, 0);
    g_assert_cmpint(vb2_write_begin(t.r, &wo, &w, &e), ==, 0);
    for (uint64_t i = 0; i < d.nchunks; i++) {
        tdata(d.seed, i, buf, sizeof(buf));
        g_assert_cmpint(vb2_write_put(w, &c, VB_BLOB_DATA, buf, sizeof(buf), id, NULL, &e), ==,
                        0);
        g_assert_true(vb2_write_has(w, id));
    }
    /* a new one: 1, then 0 */
    memset(buf, 0x5a, sizeof(buf));
    g_assert_cmpint(vb2_write_put(w, &c, VB_BLOB_DATA, buf, sizeof(buf), id, NULL, &e), ==, 1);
    g_assert_true(vb2_write_has(w, id));
    g_assert_cmpint(vb2_write_put(w, &c, VB_BLOB_DATA, buf, sizeof(buf), id2, NULL, &e), ==, 0);
    g_assert_true(memcmp(id, id2, 32) == 0);
    vb2_write_stats(w, &st);
    g_assert_cmpuint(st.blobs_new, ==, 1);
    g_assert_cmpuint(st.blobs_known, ==, d.nchunks + 1);
    /* errors of put */
    g_assert_cmpint(vb2_write_put(w, &c, 3, buf, 10, id, NULL, &e), ==, -EINVAL);
    vb2_write_abort(w);
    g_assert_cmpint(vb2_write_put(w, &c, VB_BLOB_DATA, buf, 10, id, NULL, &e), ==, -ECANCELED);
    g_assert_cmpint(vb2_write_commit(w, NULL, NULL, &e), ==, -ECANCELED);
    vb2_write_unref(w);
    vb_codec_free(&c);
    trepo_free(&t);
}

/* An unchanged backup costs few requests, none of them per chunk. */
static void test_requests(void)
{
    struct trepo t;
    struct teststore *ts;
    struct tdisk d = { .seed = 3, .chunk = 16 << 10, .nchunks = 2000 };
    struct vb2_open_opts o;
    char *id = NULL;
    vb_error e = { 0 };

    trepo_init(&t, VB_AEAD_CHACHA20POLY1305, 1 << 20);
    g_assert_cmpint(tbackup_disk(t.r, "app", NULL, &d, &id, &e), ==, 0);
    g_free(id);
    trepo_close(&t);
    /* reopen through a counting store on the same folder */
    ts = teststore_new(t.dir);
    o = trepo_open_opts(&t);
    g_assert_cmpint(vb2_repo_open_store(ts->s, t.dir, &o, &t.r, &e), ==, 0);
    /* the second: the first session's index file is new to the cache */
    teststore_zero(ts);
    g_assert_cmpint(tbackup_disk(t.r, "app", NULL, &d, &id, &e), ==, 0);
    g_free(id);
    g_assert_cmpint(ts->count[TS_GET], ==, 1);
    /* the third: nothing is new */
    teststore_zero(ts);
    g_assert_cmpint(tbackup_disk(t.r, "app", NULL, &d, &id, &e), ==, 0);
    g_free(id);
    printf("# unchanged backup of %" G_GUINT64_FORMAT " chunks: %d requests (put %d, get %d, "
           "stat %d, list %d, remove %d, sync %d)\n", d.nchunks, teststore_total(ts),
           ts->count[TS_PUT], ts->count[TS_GET], ts->count[TS_STAT], ts->count[TS_LIST],
           ts->count[TS_REMOVE], ts->count[TS_SYNC]);
    /* lease (put, stat; remove), condemned and index listings, one index file
     * (meta blobs are known: none), the snapshot listing and the manifest */
    g_assert_cmpint(teststore_total(ts), <=, 12);
    g_assert_cmpint(ts->count[TS_GET], ==, 0);
    trepo_close(&t);
    ts->s = NULL;
    g_free(ts->dir);
    g_free(ts);
    trepo_free(&t);
}

/* The manifest's put outlasts the lease (an S3 put retried for minutes):
 * the snapshot is withdrawn, or named when even that fails; a lease kept
 * fresh meanwhile commits. */
struct slow_put {
    int64_t sleep_us;
    bool fail_remove;
};

static int slow_manifest_hook(struct teststore *t, enum ts_op op, const char *name)
{
    struct slow_put *sp = t->opaque;

    if (op == TS_PUT && name && g_str_has_prefix(name, "snapshots/"))
        g_usleep(sp->sleep_us);
    if (op == TS_REMOVE && name && g_str_has_prefix(name, "snapshots/") && sp->fail_remove)
        return -EACCES;
    return 0;
}

static void test_slow_commit(void)
{
    struct trepo t;
    struct teststore *ts;
    struct slow_put sp = { 0 };
    struct vb2_open_opts o;
    struct vb2_write_opts wo = { .vm = "slow" };
    struct vb2_write *w;
    GPtrArray *list;
    vb_error e = { 0 };

    trepo_init(&t, VB_AEAD_NONE, 1 << 20);
    trepo_close(&t);
    o = trepo_open_opts(&t);
    /* a lease safe for 1 s after each refresh; each manifest put takes 1.5 s
     * (slack for a slow or loaded machine on both sides) */
    o.lease_expiry_ns = 2000 * INT64_C(1000000);
    o.lease_margin_ns = 1000 * INT64_C(1000000);
    for (int round = 0; round < 3; round++) {
        struct vb_manifest *m = vb_manifest_new();

        /* 0: never refreshed, withdrawn; 1: the same, the removal refused;
         * 2: refreshed every 50 ms, it stands */
        o.lease_refresh_ns = (round < 2 ? 3600 * INT64_C(1000) : 50) * INT64_C(1000000);
        sp.sleep_us = 1500 * 1000;
        sp.fail_remove = round == 1;
        ts = teststore_new(t.dir);
        ts->hook = slow_manifest_hook;
        ts->opaque = &sp;
        g_assert_cmpint(vb2_repo_open_store(ts->s, t.dir, &o, &t.r, &e), ==, 0);
        g_assert_cmpint(vb2_write_begin(t.r, &wo, &w, &e), ==, 0);
        m->type = VB_MF_DISK;
        m->disk.chunk_size = 4096;
        g_assert_cmpint(vb2_write_stream(w, NULL, "", 0, &m->chunks, &e), ==, 0);
        if (round < 2) {
            g_assert_cmpint(vb2_write_commit(w, m, NULL, &e), ==, -ESTALE);
            g_assert_nonnull(strstr(e.msg, "may have expired"));
            g_assert_nonnull(strstr(e.msg, round == 0 ? "withdrawn, not committed"
                                                      : "withdrawing it failed"));
            if (round == 1)
                g_assert_nonnull(strstr(e.msg, "verify --read-data"));
        } else {
            g_assert_cmpint(vb2_write_commit(w, m, NULL, &e), ==, 0);
        }
        vb2_write_unref(w);
        vb_manifest_free(m);
        sp.sleep_us = 0;
        g_assert_cmpint(vb2_snap_list(t.r, NULL, &list, NULL, &e), ==, 0);
        g_assert_cmpuint(list->len, ==, (guint)round);   /* round 1's stayed, named */
        g_ptr_array_free(list, TRUE);
        trepo_close(&t);                     /* closes the store too */
        g_free(ts->dir);
        g_free(ts);
    }
    trepo_free(&t);
}

/* Abort: nothing visible; a commit after an abort is refused. */
static void test_abort(void)
{
    struct trepo t;
    struct vb2_write_opts wo = { .vm = "x" };
    struct vb2_write *w;
    struct vb_codec c;
    struct vb_manifest *m = vb_manifest_new();
    GArray *leases;
    GPtrArray *list;
    uint8_t buf[4096], id[32];
    vb_error e = { 0 };

    trepo_init(&t, VB_AEAD_NONE, 1 << 20);
    g_assert_cmpint(vb_codec_init(&c, 1), ==, 0);
    g_assert_cmpint(vb2_write_begin(t.r, &wo, &w, &e), ==, 0);
    g_assert_cmpint(vb_lease_list(vb2_repo_store(t.r), &leases, &e), ==, 0);
    g_assert_cmpuint(leases->len, ==, 1);
    g_array_free(leases, TRUE);
    memset(buf, 1, sizeof(buf));
    g_assert_cmpint(vb2_write_put(w, &c, VB_BLOB_DATA, buf, sizeof(buf), id, NULL, &e), ==, 1);
    vb2_write_ref(w);
    vb2_write_abort(w);
    vb2_write_abort(w);
    m->type = VB_MF_DISK;
    g_assert_cmpint(vb2_write_commit(w, m, NULL, &e), ==, -ECANCELED);
    vb2_write_unref(w);
    vb2_write_unref(w);
    g_assert_cmpint(vb_lease_list(vb2_repo_store(t.r), &leases, &e), ==, 0);
    g_assert_cmpuint(leases->len, ==, 0);
    g_array_free(leases, TRUE);
    g_assert_cmpint(vb2_snap_list(t.r, NULL, &list, NULL, &e), ==, 0);
    g_assert_cmpuint(list->len, ==, 0);
    g_ptr_array_free(list, TRUE);
    vb_manifest_free(m);
    vb_codec_free(&c);
    trepo_free(&t);
}

/* Dedup groups: the same data has other ids in another group, and is
 * stored again there. */
static void test_groups(void)
{
    struct trepo t;
    struct vb2_write_opts wa = { .vm = "a" }, wb = { .vm = "b", .dedup_group = "tenant-b" };
    struct vb2_write *a, *b;
    struct vb_codec c;
    uint8_t buf[8192], ida[32], idb[32], k[32];
    vb_error e = { 0 };

    trepo_init(&t, VB_AEAD_AES256GCM, 1 << 20);
    g_assert_cmpint(vb_codec_init(&c, 1), ==, 0);
    tdata(1, 1, buf, sizeof(buf));
    g_assert_cmpint(vb2_write_begin(t.r, &wa, &a, &e), ==, 0);
    g_assert_cmpint(vb2_write_put(a, &c, VB_BLOB_DATA, buf, sizeof(buf), ida, NULL, &e), ==, 1);
    {
        struct vb_manifest *m = vb_manifest_new();
        m->type = VB_MF_DISK;
        m->disk.chunk_size = 8192;
        m->disk.size = 8192;
        m->disk.chunk_count = 1;
        g_assert_cmpint(vb2_write_stream(a, &c, ida, 32, &m->chunks, &e), ==, 0);
        g_assert_cmpint(vb2_write_commit(a, m, NULL, &e), ==, 0);
        vb_manifest_free(m);
    }
    vb2_write_unref(a);
    g_assert_cmpint(vb2_write_begin(t.r, &wb, &b, &e), ==, 0);
    g_assert_cmpint(vb2_write_put(b, &c, VB_BLOB_DATA, buf, sizeof(buf), idb, NULL, &e), ==, 1);
    g_assert_true(memcmp(ida, idb, 32) != 0);
    g_assert_cmpint(vb2_group_key(t.r, "tenant-b", k, &e), ==, 0);
    {
        uint8_t again[32];
        g_assert_cmpint(vb_keyed_id(k, buf, sizeof(buf), again), ==, 0);
        g_assert_true(memcmp(again, idb, 32) == 0);
        g_assert_cmpint(vb2_write_id(b, buf, sizeof(buf), again), ==, 0);
        g_assert_true(memcmp(again, idb, 32) == 0);
    }
    vb2_write_abort(b);
    vb2_write_unref(b);
    /* a blob read under the wrong group's key fails its id check */
    {
        GByteArray *out = g_byte_array_new();
        g_assert_cmpint(vb2_blob_get(t.r, &c, k, ida, out, &e), ==, -EBADMSG);
        g_assert_nonnull(strstr(e.msg, "does not match its id"));
        g_assert_cmpint(vb2_group_key(t.r, NULL, k, &e), ==, 0);
        g_assert_cmpint(vb2_blob_get(t.r, &c, k, ida, out, &e), ==, 0);
        g_assert_cmpuint(out->len, ==, sizeof(buf));
        g_assert_true(memcmp(out->data, buf, sizeof(buf)) == 0);
        g_byte_array_free(out, TRUE);
    }
    vb_codec_free(&c);
    trepo_free(&t);
}

struct cnt {
    gint ok, bad;
};

static void count_got(void *o, size_t i, const uint8_t *d, size_t len, int err,
                      const vb_error *e)
{
    struct cnt *c = o;

    if (err)
        g_atomic_int_inc(&c->bad);
    else
        g_atomic_int_inc(&c->ok);
}

/* A files snapshot: a catalog written piece by piece, read back piece by
 * piece; get_many reports a missing blob and delivers the others. */
static void test_files_streams(void)
{
    struct trepo t;
    struct vb2_write_opts wo = { .vm = "f" };
    struct vb2_write *w;
    struct vb_codec c;
    struct vb_stream_writer *sw;
    struct vb_manifest *m = vb_manifest_new(), *back;
    GString *cat = g_string_new(NULL);
    uint8_t ids[3 * 32], buf[5000];
    char *id = NULL;
    vb_error e = { 0 };

    trepo_init(&t, VB_AEAD_CHACHA20POLY1305, 1 << 20);
    g_assert_cmpint(vb_codec_init(&c, 1), ==, 0);
    g_assert_cmpint(vb2_write_begin(t.r, &wo, &w, &e), ==, 0);
    for (int i = 0; i < 3; i++) {
        tdata(50, (uint64_t)i, buf, sizeof(buf));
        g_assert_cmpint(vb2_write_put(w, &c, VB_BLOB_DATA, buf, sizeof(buf), ids + 32 * i, NULL,
                                      &e), ==, 1);
    }
    sw = vb2_write_stream_new(w, &c);
    for (int i = 0; i < 100000; i++) {
        char line[64];
        int n = snprintf(line, sizeof(line), "entry %06d /home/user/file-%d\n", i, i * 7);
        g_string_append_len(cat, line, n);
        g_assert_cmpint(vb_stream_write(sw, line, (size_t)n, &e), ==, 0);
    }
    g_assert_cmpint(vb_stream_finish(sw, &m->catalog, &e), ==, 0);
    vb_stream_writer_free(sw);
    g_assert_cmpuint(m->catalog.nblobs, >, 10);
    m->type = VB_MF_FILES;
    m->files.nroots = 1;
    m->files.roots = g_new0(char *, 1);
    m->files.roots[0] = g_strdup("/home");
    m->files.entries = 100000;
    g_assert_cmpint(vb2_write_stream(w, &c, ids, sizeof(ids), &m->chunks, &e), ==, 0);
    g_assert_cmpint(vb2_write_commit(w, m, &id, &e), ==, 0);
    vb2_write_unref(w);
    g_assert_cmpint(vb2_snap_load(t.r, id, &back, &e), ==, 0);
    g_assert_cmpint(back->type, ==, VB_MF_FILES);
    {
        struct vb2_stream *s = vb2_stream_open(t.r, back, &back->catalog, &e);
        GString *got = g_string_new(NULL);
        char piece[3000];
        size_t n;
        g_assert_nonnull(s);
        for (;;) {
            g_assert_cmpint(vb2_stream_read(s, piece, sizeof(piece), &n, &e), ==, 0);
            if (!n)
                break;
            g_string_append_len(got, piece, (gssize)n);
        }
        g_assert_cmpuint(got->len, ==, cat->len);
        g_assert_true(memcmp(got->str, cat->str, cat->len) == 0);
        g_string_free(got, TRUE);
        vb2_stream_close(s);
    }
    {
        struct cnt cn = { 0, 0 };
        uint8_t key[32], req[4 * 32];
        memcpy(req, ids, 3 * 32);
        memset(req + 3 * 32, 0x77, 32);          /* not in the index */
        g_assert_cmpint(vb2_group_key(t.r, NULL, key, &e), ==, 0);
        g_assert_cmpint(vb2_get_many(t.r, key, req, 4, count_got, &cn, &e), ==, -ENOENT);
        g_assert_nonnull(strstr(e.msg, "not in the index"));
        g_assert_cmpint(cn.ok, ==, 3);
        g_assert_cmpint(cn.bad, ==, 1);
    }
    free(id);
    vb_manifest_free(m);
    vb_manifest_free(back);
    g_string_free(cat, TRUE);
    vb_codec_free(&c);
    trepo_free(&t);
}

/* A session with more new blobs than one index file holds spills index
 * files as it goes; the snapshot reads back whole. */
static void test_spill(void)
{
    struct trepo t;
    struct tdisk d = { .seed = 61, .chunk = 4096, .nchunks = 12000 };
    struct vb2_open_opts o;
    char *id = NULL;
    vb_error e = { 0 };
    GDir *dir;
    char *p;
    unsigned files = 0;

    trepo_init(&t, VB_AEAD_NONE, 16u << 20);
    trepo_close(&t);
    o = trepo_open_opts(&t);
    o.index_file_records = 5000;
    g_assert_cmpint(vb2_repo_open(t.dir, &o, &t.r, &e), ==, 0);
    g_assert_cmpint(tbackup_disk(t.r, "big", NULL, &d, &id, &e), ==, 0);
    p = g_build_filename(t.dir, "index", NULL);
    dir = g_dir_open(p, 0, NULL);
    while (g_dir_read_name(dir))
        files++;
    g_dir_close(dir);
    g_free(p);
    g_assert_cmpuint(files, ==, 3);      /* 5000 + 5000 spilled, the rest at commit */
    g_assert_cmpint(tcheck_disk(t.r, id, &d, &e), ==, 0);
    g_free(id);
    trepo_free(&t);
}

struct racer {
    struct vb2_write *w;
    int seed;
    gint stored, cancelled;
};

static gpointer race_puts(gpointer opaque)
{
    struct racer *rc = opaque;
    struct vb_codec c;
    uint8_t buf[16384], id[32];
    vb_error e = { 0 };

    g_assert_cmpint(vb_codec_init(&c, 1), ==, 0);
    for (int i = 0; i < 4000; i++) {
        int ret;
        tdata((uint32_t)rc->seed, (uint64_t)i, buf, sizeof(buf));
        ret = vb2_write_put(rc->w, &c, VB_BLOB_DATA, buf, sizeof(buf), id, NULL, &e);
        if (ret == -ECANCELED) {
            g_atomic_int_inc(&rc->cancelled);
            break;
        }
        g_assert_cmpint(ret, >=, 0);
        g_atomic_int_inc(&rc->stored);
    }
    vb_codec_free(&c);
    vb2_write_unref(rc->w);
    return NULL;
}

/* The owner aborts while two threads put: they stop with -ECANCELED, the
 * last reference frees the session, the lease is gone. */
static void test_abort_racing(void)
{
    struct trepo t;
    struct vb2_write_opts wo = { .vm = "race" };
    struct vb2_write *w;
    struct racer a = { .seed = 1 }, b = { .seed = 2 };
    GThread *ta, *tb;
    GArray *leases;
    vb_error e = { 0 };

    trepo_init(&t, VB_AEAD_AES256GCM, 1 << 20);
    g_assert_cmpint(vb2_write_begin(t.r, &wo, &w, &e), ==, 0);
    a.w = vb2_write_ref(w);
    b.w = vb2_write_ref(w);
    ta = g_thread_new("a", race_puts, &a);
    tb = g_thread_new("b", race_puts, &b);
    while (g_atomic_int_get(&a.stored) + g_atomic_int_get(&b.stored) < 200)
        g_usleep(1000);
    vb2_write_abort(w);
    vb2_write_unref(w);
    g_thread_join(ta);
    g_thread_join(tb);
    g_assert_cmpint(a.cancelled + b.cancelled, ==, 2);
    g_assert_cmpint(vb_lease_list(vb2_repo_store(t.r), &leases, &e), ==, 0);
    g_assert_cmpuint(leases->len, ==, 0);
    g_array_free(leases, TRUE);
    trepo_free(&t);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/repo-repo2/create-open", test_create_open);
    g_test_add_func("/repo-repo2/open-errors", test_open_errors);
    g_test_add_func("/repo-repo2/private-cache", test_private_cache);
    g_test_add_func("/repo-repo2/lease-env", test_lease_env);
    g_test_add_func("/repo-repo2/config-downgrade", test_config_downgrade);
    g_test_add_func("/repo-repo2/roundtrip", test_roundtrip);
    g_test_add_func("/repo-repo2/dedup", test_dedup);
    g_test_add_func("/repo-repo2/requests", test_requests);
    g_test_add_func("/repo-repo2/slow-commit", test_slow_commit);
    g_test_add_func("/repo-repo2/abort", test_abort);
    g_test_add_func("/repo-repo2/abort-racing", test_abort_racing);
    g_test_add_func("/repo-repo2/groups", test_groups);
    g_test_add_func("/repo-repo2/files-streams", test_files_streams);
    g_test_add_func("/repo-repo2/spill", test_spill);
    return g_test_run();
}
