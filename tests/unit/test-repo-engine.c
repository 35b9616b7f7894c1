/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Engine-level unit tests of the version 2 repository (hostd/repo/repo2.h):
 *
 *  concurrent   several write sessions on their own threads (each with two
 *               put threads) and gc phases interleaved at fixed steps, with
 *               and without encryption: every committed snapshot stays
 *               readable, and garbage is removed in the end
 *  tamper       every object kind (pack, index, manifest, config, key), a
 *               byte flipped at a time: a clear error naming the object, or
 *               (bytes that mean nothing) the right data; never a crash
 *
 * VB_TEST_ROUNDS (default 6) sets the rounds of the first.  The second flips
 * one bit of every byte of objects up to 1 KiB and of the first and last 64
 * bytes of larger ones, and of every 13th byte in between;
 * VB_TEST_SWEEP_FULL=1 flips three bits of every byte.
 */
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "lease.h"
#include "repo2-testlib.h"

#define CHUNK    (16u << 10)
#define NCHUNKS  96
#define WRITERS  3

static uint64_t count_files(const char *dir, const char *sub, bool nested)
{
    char *p = g_build_filename(dir, sub, NULL);
    GDir *d = g_dir_open(p, 0, NULL);
    const char *n;
    uint64_t c = 0;

    while (d && (n = g_dir_read_name(d))) {
        if (nested) {
            char *q = g_build_filename(sub, n, NULL);
            c += count_files(dir, q, false);
            g_free(q);
        } else {
            c += !g_str_has_prefix(n, ".tmp-");
        }
    }
    if (d)
        g_dir_close(d);
    g_free(p);
    return c;
}

/* ---- concurrent writers and gc ---------------------------------------------------------- */

enum { STEP_BEGIN = 1, STEP_FIRST_HALF, STEP_SECOND_HALF, STEP_END, STEP_DONE };

struct stage {
    GMutex mu;
    GCond cond;
    int step;                    /* what the writers may do now */
    int done[WRITERS];           /* the last step each writer finished */
};

struct writer {
    struct stage *st;
    struct vb2_repo *r;
    int w, round;
    bool abort;                  /* abort instead of committing */
    struct tdisk d;
    uint8_t *ids;
    struct vb2_write *s;
    char *id;                    /* the committed snapshot */
    int ret;
    vb_error e;
};

struct half {
    struct writer *wr;
    uint64_t from, to, step;
};

static gpointer put_range(gpointer opaque)
{
    struct half *h = opaque;
    struct writer *wr = h->wr;
    uint8_t *buf = g_malloc(CHUNK);
    struct vb_codec c;
    vb_error e = { 0 };

    g_assert_cmpint(vb_codec_init(&c, 1), ==, 0);
    for (uint64_t i = h->from; i < h->to; i += h->step) {
        int ret;
        tdisk_chunk(&wr->d, i, buf);
        ret = vb2_write_put(wr->s, &c, VB_BLOB_DATA, buf, CHUNK, wr->ids + 32 * i, NULL, &e);
        if (ret < 0)
            g_error("writer %d round %d: put %" G_GUINT64_FORMAT ": %s", wr->w, wr->round, i,
                    vb_strerror(&e));
    }
    vb_codec_free(&c);
    g_free(buf);
    vb2_write_unref(wr->s);
    return NULL;
}

/* Put chunks [from, to) with two threads (odd and even), each holding a
 * reference to the session. */
static void put_two_threads(struct writer *wr, uint64_t from, uint64_t to)
{
    struct half a = { wr, from, to, 2 }, b = { wr, from + 1, to, 2 };
    GThread *ta, *tb;

    vb2_write_ref(wr->s);
    vb2_write_ref(wr->s);
    ta = g_thread_new("put-a", put_range, &a);
    tb = g_thread_new("put-b", put_range, &b);
    g_thread_join(ta);
    g_thread_join(tb);
}

static void wait_step(struct writer *wr, int step)
{
    g_mutex_lock(&wr->st->mu);
    while (wr->st->step < step)
        g_cond_wait(&wr->st->cond, &wr->st->mu);
    g_mutex_unlock(&wr->st->mu);
}

static void finish_step(struct writer *wr, int step)
{
    g_mutex_lock(&wr->st->mu);
    wr->st->done[wr->w] = step;
    g_cond_broadcast(&wr->st->cond);
    g_mutex_unlock(&wr->st->mu);
}

static gpointer writer_main(gpointer opaque)
{
    struct writer *wr = opaque;
    char vm[16];
    struct vb2_write_opts wo = { .vm = vm };

    snprintf(vm, sizeof(vm), "vm%d", wr->w);
    wait_step(wr, STEP_BEGIN);
    wr->ret = vb2_write_begin(wr->r, &wo, &wr->s, &wr->e);
    g_assert_cmpint(wr->ret, ==, 0);
    finish_step(wr, STEP_BEGIN);
    wait_step(wr, STEP_FIRST_HALF);
    put_two_threads(wr, 0, NCHUNKS / 2);
    finish_step(wr, STEP_FIRST_HALF);
    wait_step(wr, STEP_SECOND_HALF);
    put_two_threads(wr, NCHUNKS / 2, NCHUNKS);
    finish_step(wr, STEP_SECOND_HALF);
    wait_step(wr, STEP_END);
    if (wr->abort) {
        vb2_write_abort(wr->s);
    } else {
        struct vb_manifest *m = vb_manifest_new();
        struct vb_codec c;
        char *id = NULL;
        g_assert_cmpint(vb_codec_init(&c, 1), ==, 0);
        m->type = VB_MF_DISK;
        m->disk.size = (uint64_t)NCHUNKS * CHUNK;
        m->disk.chunk_size = CHUNK;
        m->disk.chunk_count = NCHUNKS;
        g_assert_cmpint(vb2_write_stream(wr->s, &c, wr->ids, NCHUNKS * 32, &m->chunks, &wr->e),
                        ==, 0);
        wr->ret = vb2_write_commit(wr->s, m, &id, &wr->e);
        wr->id = id ? g_strdup(id) : NULL;
        free(id);
        vb_manifest_free(m);
        vb_codec_free(&c);
    }
    vb2_write_unref(wr->s);
    finish_step(wr, STEP_END);
    return NULL;
}

/* Let the writers do step, and wait until they all did. */
static void run_step(struct stage *st, int step)
{
    g_mutex_lock(&st->mu);
    st->step = step;
    g_cond_broadcast(&st->cond);
    for (int w = 0; w < WRITERS; w++)
        while (st->done[w] < step)
            g_cond_wait(&st->cond, &st->mu);
    g_mutex_unlock(&st->mu);
}

static void gc_phase(struct vb2_repo *r, unsigned phases, const char *when)
{
    struct vb2_gc_opts o = { .phases = phases, .merge_min_files = 6 };
    struct vb2_gc_report rep;
    vb_error e = { 0 };

    if (vb2_gc(r, &o, &rep, &e))
        g_error("gc (%s): %s", when, vb_strerror(&e));
    if (g_test_verbose())
        printf("# gc %s %s: condemned %" G_GUINT64_FORMAT ", repacked %" G_GUINT64_FORMAT
               ", deleted %" G_GUINT64_FORMAT ", saved %" G_GUINT64_FORMAT ", waiting %u\n",
               phases == VB2_GC_CONDEMN ? "condemn" : phases == VB2_GC_DELETE ? "delete"
               : "all", when, rep.packs_condemned, rep.packs_repacked, rep.packs_deleted,
               rep.packs_saved, rep.lists_waiting);
}

struct kept {
    char *id;
    struct tdisk d;
    int round;
};

static void test_concurrent(gconstpointer data)
{
    enum vb_aead aead = (enum vb_aead)GPOINTER_TO_INT(data);
    const char *env = getenv("VB_TEST_ROUNDS");
    int rounds = env ? atoi(env) : 6;
    static const unsigned cycle[3] = { VB2_GC_CONDEMN, VB2_GC_DELETE, VB2_GC_ALL };
    GPtrArray *kept = g_ptr_array_new();
    struct trepo t;
    vb_error e = { 0 };

    trepo_init(&t, aead, 1 << 20);
    for (int round = 0; round < rounds; round++) {
        struct stage st = { .step = 0 };
        struct writer wr[WRITERS];
        GThread *th[WRITERS];

        g_mutex_init(&st.mu);
        g_cond_init(&st.cond);
        for (int w = 0; w < WRITERS; w++) {
            memset(&wr[w], 0, sizeof(wr[w]));
            wr[w].st = &st;
            wr[w].r = t.r;
            wr[w].w = w;
            wr[w].round = round;
            wr[w].abort = w == 2 && round % 2 == 1;
            /* half of every disk is shared by all writers and rounds, the
             * rest changes with both */
            wr[w].d = (struct tdisk){ .seed = 1000 + (uint32_t)(round * 10 + w), .chunk = CHUNK,
                                      .nchunks = NCHUNKS, .shared_below = NCHUNKS / 2,
                                      .shared_seed = 500 + (uint32_t)(round / 3) };
            wr[w].ids = g_malloc0(NCHUNKS * 32);
            th[w] = g_thread_new("writer", writer_main, &wr[w]);
        }
        /* gc phases at fixed points of the writers' lives */
        run_step(&st, STEP_BEGIN);
        gc_phase(t.r, cycle[round % 3], "after begin");
        run_step(&st, STEP_FIRST_HALF);
        gc_phase(t.r, cycle[(round + 1) % 3], "mid-way");
        run_step(&st, STEP_SECOND_HALF);
        gc_phase(t.r, cycle[(round + 2) % 3], "before commit");
        run_step(&st, STEP_END);
        for (int w = 0; w < WRITERS; w++) {
            g_thread_join(th[w]);
            if (wr[w].abort)
                continue;
            if (wr[w].ret)
                g_error("round %d writer %d: commit: %s", round, w, vb_strerror(&wr[w].e));
            {
                struct kept *k = g_new0(struct kept, 1);
                k->id = wr[w].id;
                k->d = wr[w].d;
                k->round = round;
                g_ptr_array_add(kept, k);
            }
        }
        for (int w = 0; w < WRITERS; w++)
            g_free(wr[w].ids);
        g_mutex_clear(&st.mu);
        g_cond_clear(&st.cond);

        /* keep the last two rounds' snapshots, forget the rest */
        for (guint i = 0; i < kept->len;) {
            struct kept *k = kept->pdata[i];
            if (k->round < round - 1) {
                g_assert_cmpint(vb2_forget(t.r, k->id, &e), ==, 0);
                g_free(k->id);
                g_free(k);
                g_ptr_array_remove_index(kept, i);
            } else {
                i++;
            }
        }
        gc_phase(t.r, cycle[round % 3], "after forget");
        /* every snapshot kept is whole */
        for (guint i = 0; i < kept->len; i++) {
            struct kept *k = kept->pdata[i];
            if (tcheck_disk(t.r, k->id, &k->d, &e))
                g_error("round %d: snapshot %s (round %d): %s", round, k->id, k->round,
                        vb_strerror(&e));
        }
        {
            struct vb2_verify_report rep;
            g_assert_cmpint(vb2_verify(t.r, NULL, &rep, &e), ==, 0);
            for (guint i = 0; i < rep.problems->len; i++)
                g_printerr("# round %d: %s\n", round, (char *)rep.problems->pdata[i]);
            g_assert_cmpuint(rep.problems->len, ==, 0);
            vb2_verify_report_free(&rep);
        }
    }
    {
        struct vb2_verify_opts full = { .read_data = true };
        struct vb2_verify_report rep;
        g_assert_cmpint(vb2_verify(t.r, &full, &rep, &e), ==, 0);
        g_assert_cmpuint(rep.problems->len, ==, 0);
        vb2_verify_report_free(&rep);
    }
    printf("# %d rounds: %" G_GUINT64_FORMAT " packs, %" G_GUINT64_FORMAT " index files\n",
           rounds, count_files(t.dir, "data", true), count_files(t.dir, "index", false));
    /* everything forgotten: gc removes every pack, list and lease */
    for (guint i = 0; i < kept->len; i++) {
        struct kept *k = kept->pdata[i];
        g_assert_cmpint(vb2_forget(t.r, k->id, &e), ==, 0);
        g_free(k->id);
        g_free(k);
    }
    g_ptr_array_free(kept, TRUE);
    gc_phase(t.r, VB2_GC_ALL, "at the end");
    gc_phase(t.r, VB2_GC_ALL, "at the end, again");
    g_assert_cmpuint(count_files(t.dir, "data", true), ==, 0);
    g_assert_cmpuint(count_files(t.dir, "gc", false), ==, 0);
    g_assert_cmpuint(count_files(t.dir, "leases", false), ==, 0);
    g_assert_cmpuint(count_files(t.dir, "snapshots", false), ==, 0);
    trepo_free(&t);
}

/* ---- tampering ------------------------------------------------------------------------------- */

struct sweep {
    struct trepo *t;
    struct tdisk d;
    char *id;
    unsigned flips, errors, harmless;
};

/* Open with a fresh cache and read the snapshot back: 0 when it is all
 * right, else the error (e names it). */
static int open_and_read(struct sweep *s, bool verify, vb_error *e)
{
    struct vb2_open_opts o = trepo_open_opts(s->t);
    struct vb2_repo *r;
    int ret;

    vb_rm_rf_at(AT_FDCWD, s->t->cache);
    ret = vb2_repo_open(s->t->dir, &o, &r, e);
    if (ret)
        return ret;
    ret = tcheck_disk(r, s->id, &s->d, e);
    if (!ret && verify) {
        struct vb2_verify_opts vo = { .read_data = true };
        struct vb2_verify_report rep;
        ret = vb2_verify(r, &vo, &rep, e);
        if (!ret && rep.problems->len)
            ret = vb_seterr(e, -EBADMSG, "%s", (char *)rep.problems->pdata[0]);
        vb2_verify_report_free(&rep);
    }
    vb2_repo_close(r);
    return ret;
}

/* One byte of a file, in place (no fsync: the test reads it back at once). */
static void poke(const char *path, size_t off, char byte)
{
    int fd = open(path, O_WRONLY);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(pwrite(fd, &byte, 1, (off_t)off), ==, 1);
    close(fd);
}

static void sweep_file(struct sweep *s, const char *rel, const char *kind, bool verify,
                       bool may_be_harmless)
{
    char *path = g_build_filename(s->t->dir, rel, NULL);
    bool full = getenv("VB_TEST_SWEEP_FULL") != NULL;
    size_t stride = full ? 1 : 13;
    gchar *data;
    gsize len;

    g_assert_true(g_file_get_contents(path, &data, &len, NULL));
    for (size_t i = 0; i < len; i += (i < 64 || i + 64 >= len || len <= 1024) ? 1 : stride) {
        static const uint8_t masks[] = { 0x01, 0x20, 0x80 };
        /* one flip a byte, the masks taking turns (all three: VB_TEST_SWEEP_FULL) */
        for (size_t m = full ? 0 : i % 3; m < (full ? G_N_ELEMENTS(masks) : i % 3 + 1); m++) {
            vb_error e = { 0 };
            int ret;

            data[i] ^= masks[m];
            poke(path, i, data[i]);
            ret = open_and_read(s, verify, &e);
            s->flips++;
            if (ret) {
                s->errors++;
                if (!e.msg[0])
                    g_error("%s byte %zu ^ %#x: error %d without a message", rel, i, masks[m],
                            ret);
                if (ret == -ENOMEM || ret == -EINVAL + 1000)
                    g_error("%s byte %zu: %s", rel, i, e.msg);
                /* the message names the object, or its kind */
                if (!strstr(e.msg, rel) && !strstr(e.msg, kind))
                    g_error("%s byte %zu ^ %#x: '%s' names neither %s nor %s", rel, i, masks[m],
                            e.msg, rel, kind);
            } else if (!may_be_harmless) {
                g_error("%s byte %zu ^ %#x: not detected", rel, i, masks[m]);
            } else {
                s->harmless++;
            }
            data[i] ^= masks[m];
            poke(path, i, data[i]);
        }
    }
    g_free(data);
    g_free(path);
}

static void sweep_folder(struct sweep *s, const char *sub, const char *kind, bool verify,
                         bool may_be_harmless)
{
    char *p = g_build_filename(s->t->dir, sub, NULL);
    GDir *d = g_dir_open(p, 0, NULL);
    GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
    const char *n;

    while (d && (n = g_dir_read_name(d)))
        g_ptr_array_add(names, g_build_filename(sub, n, NULL));
    if (d)
        g_dir_close(d);
    for (guint i = 0; i < names->len; i++) {
        char *full = g_build_filename(s->t->dir, names->pdata[i], NULL);
        if (g_file_test(full, G_FILE_TEST_IS_DIR))
            sweep_folder(s, names->pdata[i], kind, verify, may_be_harmless);
        else
            sweep_file(s, names->pdata[i], kind, verify, may_be_harmless);
        g_free(full);
    }
    g_ptr_array_free(names, TRUE);
    g_free(p);
}

static void test_tamper(gconstpointer data)
{
    enum vb_aead aead = (enum vb_aead)GPOINTER_TO_INT(data);
    struct sweep s = { .d = { .seed = 42, .chunk = 4096, .nchunks = 3 } };
    struct trepo t;
    vb_error e = { 0 };

    trepo_init(&t, aead, 1 << 20);
    s.t = &t;
    g_assert_cmpint(tbackup_disk(t.r, "t", NULL, &s.d, &s.id, &e), ==, 0);
    trepo_close(&t);
    g_assert_cmpint(open_and_read(&s, true, &e), ==, 0);

    sweep_file(&s, "config", "config", false, false);
    /* key files: informational members (created, host, user) are not checked */
    if (aead != VB_AEAD_NONE)
        sweep_folder(&s, "keys", "key", false, true);
    sweep_folder(&s, "snapshots", "snapshots/", false, false);
    sweep_folder(&s, "index", "index", false, false);
    /* packs: a restore reads blobs only; verify reads the rest */
    sweep_folder(&s, "data", "data/", true, false);
    printf("# %u flips: %u errors, %u harmless (key files' informational members)\n", s.flips,
           s.errors, s.harmless);
    g_assert_cmpint(open_and_read(&s, true, &e), ==, 0);
    g_free(s.id);
    trepo_free(&t);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_data_func("/repo-engine/concurrent/none", GINT_TO_POINTER(VB_AEAD_NONE),
                         test_concurrent);
    g_test_add_data_func("/repo-engine/concurrent/aes-256-gcm",
                         GINT_TO_POINTER(VB_AEAD_AES256GCM), test_concurrent);
    g_test_add_data_func("/repo-engine/tamper/none", GINT_TO_POINTER(VB_AEAD_NONE),
                         test_tamper);
    g_test_add_data_func("/repo-engine/tamper/aes-256-gcm", GINT_TO_POINTER(VB_AEAD_AES256GCM),
                         test_tamper);
    return g_test_run();
}
