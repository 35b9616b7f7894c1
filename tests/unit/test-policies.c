/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests: the policy loader and its plan checks, batches, the shipped
 * policies (passthrough, merge, schedule) loaded from the build folder, and
 * the PSI reader.
 *
 * VB_POLICY_DIR: the built policies; VB_TEST_PLUGIN_DIR: the broken test
 * plugins of tests/unit/plugins (both set by tests/unit/meson.build).
 */
#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>
#include <time.h>

#include "policyload.h"
#include "psi.h"
#include "util.h"

#define NS 1000000000ll
#define KiB 1024ull
#define MiB (1024ull * 1024)

static const char *policy_dir(void)
{
    const char *d = g_getenv("VB_POLICY_DIR");

    g_assert_nonnull(d);
    return d;
}

static char *test_plugin(const char *name)
{
    const char *d = g_getenv("VB_TEST_PLUGIN_DIR");

    g_assert_nonnull(d);
    return g_strdup_printf("%s/%s.so", d, name);
}

/* Load a shipped policy with key=value pairs (NULL-terminated); must work. */
static struct vbd_policy *load(const char *name, ...)
{
    GPtrArray *kv = g_ptr_array_new();
    struct vbd_policy *p = NULL;
    vb_error e = { 0 };
    const char *s;
    va_list ap;
    int ret;

    va_start(ap, name);
    while ((s = va_arg(ap, const char *)))
        g_ptr_array_add(kv, (gpointer)s);
    va_end(ap);
    g_ptr_array_add(kv, NULL);
    ret = vbd_policy_load(name, policy_dir(), (char *const *)kv->pdata, &p, &e);
    if (ret < 0)
        g_error("load %s: %s", name, vb_strerror(&e));
    g_ptr_array_free(kv, TRUE);
    g_assert_nonnull(p);
    return p;
}

/* Loading must fail with a message containing every one of the strings. */
static void load_fails(const char *name, const char *const *kv, ...)
{
    struct vbd_policy *p = (struct vbd_policy *)1;
    vb_error e = { 0 };
    const char *want;
    va_list ap;
    int ret;

    ret = vbd_policy_load(name, policy_dir(), (char *const *)kv, &p, &e);
    g_test_message("%s: %s", name, e.msg);
    g_assert_cmpint(ret, <, 0);
    g_assert_cmpint(e.code, ==, ret);
    g_assert_null(p);
    va_start(ap, kv);
    while ((want = va_arg(ap, const char *)))
        if (!strstr(e.msg, want))
            g_error("error \"%s\" lacks \"%s\"", e.msg, want);
    va_end(ap);
}

static const char *find_note(struct vbp_batch *b, const char *policy, uint64_t job,
                             const char *needle)
{
    GPtrArray *notes = vbd_batch_notes(b);

    for (guint i = 0; i < notes->len; i++) {
        const struct vbd_note *n = notes->pdata[i];

        if (strcmp(n->policy, policy) == 0 && n->job == job && strstr(n->text, needle))
            return n->text;
    }
    return NULL;
}

static void dump_notes(struct vbp_batch *b)
{
    GPtrArray *notes = vbd_batch_notes(b);

    for (guint i = 0; i < notes->len; i++) {
        const struct vbd_note *n = notes->pdata[i];

        g_test_message("note %s job %" G_GUINT64_FORMAT ": %s", n->policy, n->job, n->text);
    }
}

static void run_ok(struct vbd_policy *p, struct vbp_batch *b)
{
    vb_error e = { 0 };

    if (vbd_policy_run(p, b, &e) < 0)
        g_error("run %s: %s", vbd_policy_name(p), vb_strerror(&e));
}

/* ------------------------------------------------------------------ */
/* Loading */

static void test_load_shipped(void)
{
    const char *names[] = { "passthrough", "merge", "schedule" };

    for (size_t i = 0; i < G_N_ELEMENTS(names); i++) {
        struct vbd_policy *p = load(names[i], NULL);

        g_assert_cmpstr(vbd_policy_name(p), ==, names[i]);
        g_assert_cmpstr(vbd_policy_description(p), !=, "");
        g_assert_true(g_str_has_suffix(vbd_policy_path(p), "/merge.so") == (i == 1));
        vbd_policy_free(p);
    }
    /* by path, and twice at once (two instances of one .so) */
    {
        char *path = g_strdup_printf("%s/merge.so", policy_dir());
        struct vbd_policy *a, *b;
        vb_error e = { 0 };
        char *kv[] = { "max_gap=0", NULL };

        g_assert_cmpint(vbd_policy_load(path, NULL, kv, &a, &e), ==, 0);
        g_assert_cmpint(vbd_policy_load(path, NULL, NULL, &b, &e), ==, 0);
        g_assert_cmpstr(vbd_policy_name(a), ==, "merge");
        vbd_policy_free(a);
        vbd_policy_free(b);
        g_free(path);
    }
}

static void test_load_errors(void)
{
    char *bad_version = test_plugin("bad-version"), *bad_size = test_plugin("bad-size");
    char *no_opt = test_plugin("no-optimize"), *no_entry = test_plugin("no-entry");
    char *text = g_build_filename(g_get_tmp_dir(), "vb-not-a-plugin.so", NULL);
    struct vbd_policy *p = NULL;
    vb_error e = { 0 };

    load_fails("nonesuch", NULL, "nonesuch.so", "no such file", "not found",
               "available in", "merge, passthrough, schedule", NULL);
    load_fails("/nonexistent/dir/x.so", NULL, "/nonexistent/dir/x.so", "No such file", NULL);
    load_fails(bad_version, NULL, bad_version, "API version 42", "speaks version 1", NULL);
    load_fails(bad_size, NULL, bad_size, "struct_size", "too small", NULL);
    load_fails(no_opt, NULL, no_opt, "no optimize", NULL);
    load_fails(no_entry, NULL, no_entry, "no entry point vbp_plugin_init", NULL);
    load_fails("bad name", NULL, "not a valid name", NULL);
    load_fails("", NULL, "empty name", NULL);

    g_assert_true(g_file_set_contents(text, "not ELF\n", -1, NULL));
    load_fails(text, NULL, text, "cannot load", NULL);
    g_unlink(text);

    /* a name needs a plugin folder */
    g_assert_cmpint(vbd_policy_load("merge", NULL, NULL, &p, &e), ==, -EINVAL);
    g_assert_nonnull(strstr(e.msg, "no plugin folder"));

    g_free(bad_version);
    g_free(bad_size);
    g_free(no_opt);
    g_free(no_entry);
    g_free(text);
}

static void test_config_errors(void)
{
    char *broken = test_plugin("broken");
    const char *kv_foo[] = { "foo=1", NULL };
    const char *kv_noeq[] = { "max_read", NULL };
    const char *kv_bad[] = { "max_read=lots", NULL };
    const char *kv_zero[] = { "max_read=0", NULL };
    const char *kv_bool[] = { "enabled=maybe", NULL };
    const char *kv_pct[] = { "io_some_max=150", NULL };
    const char *kv_win[] = { "window=25:00-01:00", NULL };
    const char *kv_win2[] = { "window=10:00-10:00", NULL };
    const char *kv_win3[] = { "window=22:00", NULL };
    const char *kv_days[] = { "days=mon-funday", NULL };
    const char *kv_days2[] = { "days=mon,", NULL };
    const char *kv_delay[] = { "max_delay=soon", NULL };
    const char *kv_recheck[] = { "recheck=0", NULL };
    const char *kv_rate[] = { "rate_limit=fast", NULL };
    const char *kv_mode[] = { "mode=x", "colour=red", NULL };

    load_fails("passthrough", kv_foo, "passthrough.so", "plugin passthrough takes no "
               "configuration", "foo", NULL);
    load_fails("merge", kv_foo, "merge.so", "merge: unknown key \"foo\"", NULL);
    load_fails("merge", kv_noeq, "expected key=value", NULL);
    load_fails("merge", kv_bad, "max_read=lots", "expected a size", NULL);
    load_fails("merge", kv_zero, "expected a size > 0", NULL);
    load_fails("merge", kv_bool, "enabled: expected yes or no", NULL);
    load_fails("schedule", kv_foo, "schedule: unknown key \"foo\"", NULL);
    load_fails("schedule", kv_pct, "io_some_max: expected a percentage", NULL);
    load_fails("schedule", kv_win, "window: expected HH:MM-HH:MM", NULL);
    load_fails("schedule", kv_win2, "window: expected HH:MM-HH:MM", NULL);
    load_fails("schedule", kv_win3, "window: expected HH:MM-HH:MM", NULL);
    load_fails("schedule", kv_days, "days: expected days", "mon-funday", NULL);
    load_fails("schedule", kv_days2, "days: expected days", NULL);
    load_fails("schedule", kv_delay, "max_delay: expected seconds", NULL);
    load_fails("schedule", kv_recheck, "recheck: expected seconds > 0", NULL);
    load_fails("schedule", kv_rate, "rate_limit: expected bytes per second", NULL);
    /* config_complete failure; the plugin's own message for an unknown key */
    load_fails(broken, NULL, broken, "configuration incomplete: mode is required", NULL);
    load_fails(broken, kv_mode, broken, "broken: unknown key \"colour\"", NULL);
    g_free(broken);
}

/* ------------------------------------------------------------------ */
/* Plans */

/* A deep copy of a plan, to compare before and after. */
struct plan_copy {
    uint32_t n;
    struct vbp_read *reads;
    struct vbp_consumer **cons;
};

static struct plan_copy copy_plan(const struct vbp_batch *b)
{
    struct plan_copy c = { b->n_reads, g_new0(struct vbp_read, b->n_reads + 1),
                           g_new0(struct vbp_consumer *, b->n_reads + 1) };

    for (uint32_t i = 0; i < b->n_reads; i++) {
        c.reads[i] = b->reads[i];
        c.cons[i] = g_memdup2(b->reads[i].consumers,
                              sizeof(struct vbp_consumer) * b->reads[i].n_consumers);
    }
    return c;
}

/* b's plan has the same reads and consumers as c (wherever they live). */
static void plan_equal(const struct vbp_batch *b, const struct plan_copy *c)
{
    g_assert_cmpuint(b->n_reads, ==, c->n);
    for (uint32_t i = 0; i < c->n; i++) {
        struct vbp_read x = b->reads[i], y = c->reads[i];

        g_assert_true(memcmp(x.consumers, c->cons[i],
                             sizeof(struct vbp_consumer) * y.n_consumers) == 0);
        x.consumers = y.consumers = NULL;
        g_assert_true(memcmp(&x, &y, sizeof(x)) == 0);
    }
}

static void free_plan(struct plan_copy *c)
{
    for (uint32_t i = 0; i < c->n; i++)
        g_free(c->cons[i]);
    g_free(c->cons);
    g_free(c->reads);
}

/*
 * A small plan: two files, jobs 1 and 2, four reads.
 *   read 0: file 0 [0, 4096)       job 1
 *   read 1: file 0 [4096, 8192)    job 2
 *   read 2: file 1 [1M, 1M+512)    job 1
 *   read 3: file 0 [0, 4096)       job 2
 */
static struct vbp_batch *small_batch(void)
{
    struct vbp_batch *b = vbd_batch_new(7);
    uint32_t f0, f1;

    b->load.now_ns = 1000 * NS;
    vbd_batch_add_job(b, 1, "vm-a", VBP_KIND_DISK, 0);
    vbd_batch_add_job(b, 2, "vm-b", VBP_KIND_DISK, 0);
    f0 = vbd_batch_add_file(b, "/img/base.qcow2", 10, 100, 1 * MiB);
    f1 = vbd_batch_add_file(b, "/img/a.qcow2", 10, 101, 2 * MiB);
    g_assert_cmpuint(vbd_batch_add_file(b, "/img/base-again", 10, 100, 1 * MiB), ==, f0);
    vbd_batch_add_read(b, f0, 0, 4096, 0, 1, 11);
    vbd_batch_add_read(b, f0, 4096, 4096, 0, 2, 21);
    vbd_batch_add_read(b, f1, 1 * MiB, 512, VBP_READ_COMPRESSED, 1, 12);
    vbd_batch_add_read(b, f0, 0, 4096, 0, 2, 22);
    return b;
}

static void test_batch_basics(void)
{
    struct vbp_batch *b = small_batch();
    void *m;

    g_assert_cmpuint(b->id, ==, 7);
    g_assert_cmpuint(b->n_files, ==, 2);
    g_assert_cmpstr(b->files[0].path, ==, "/img/base.qcow2");
    g_assert_cmpuint(b->n_jobs, ==, 2);
    g_assert_cmpstr(b->jobs[1].vm, ==, "vm-b");
    g_assert_cmpuint(b->jobs[0].bytes, ==, 4096 + 512);
    g_assert_cmpuint(b->jobs[1].bytes, ==, 8192);
    g_assert_cmpuint(b->n_reads, ==, 4);
    g_assert_cmpuint(b->max_read_bytes, ==, 4 * MiB);
    g_assert_cmpuint(vbd_batch_read_bytes(b), ==, 3 * 4096 + 512);
    g_assert_cmpuint(vbd_batch_wanted_bytes(b), ==, 3 * 4096 + 512);
    m = b->alloc(b, 100);
    g_assert_nonnull(m);
    g_assert_true(vb_is_zero(m, 100));
    b->note(b, "test", 0, "hello %d", 42);
    g_assert_nonnull(find_note(b, "test", 0, "hello 42"));
    vbd_batch_free(b);
    vbd_batch_free(NULL);
}

static void test_passthrough(void)
{
    struct vbd_policy *p = load("passthrough", NULL);
    struct vbp_batch *b = small_batch();
    struct plan_copy before = copy_plan(b);

    run_ok(p, b);
    g_assert_cmpuint(b->n_reads, ==, before.n);
    /* byte-identical, in place */
    g_assert_true(memcmp(b->reads, before.reads, sizeof(struct vbp_read) * before.n) == 0);
    plan_equal(b, &before);
    g_assert_cmpuint(vbd_batch_notes(b)->len, ==, 1);
    g_assert_nonnull(find_note(b, "passthrough", 0, "plan left as it is: 4 reads"));
    g_assert_cmpuint(b->rate_limit_bps, ==, 0);
    free_plan(&before);
    vbd_batch_free(b);
    vbd_policy_free(p);
}

/* The loader's checks of the plan a policy leaves. */
static void test_run_checks(void)
{
    static const struct {
        const char *mode, *want;
    } cases[] = {
        { "fail", "policy broken: optimize failed: Input/output error" },
        { "badfile", "policy broken left a broken plan: read 0: file index 2, but the batch "
                     "has 2 files" },
        { "outside", "outside the read" },
        { "zero", "length 0" },
        { "overflow", "overflows" },
        { "nojob", "job 57005, which is not in the batch" },
        { "lose", "policy broken changed what the jobs want: 4 consumers wanting 12.5 KiB "
                  "went in, 3 consumers wanting 8.50 KiB came out" },
        { "shift", "policy broken changed what the jobs want" },
        { "nofile", "replaced the batch's jobs or files" },
    };
    char *path = test_plugin("broken");

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        char *kv[] = { g_strdup_printf("mode=%s", cases[i].mode), NULL };
        struct vbp_batch *b = small_batch();
        struct vbd_policy *p;
        vb_error e = { 0 };

        struct plan_copy before = copy_plan(b);
        struct vbp_job *jobs = b->jobs;

        g_assert_cmpint(vbd_policy_load(path, NULL, kv, &p, &e), ==, 0);
        g_assert_cmpint(vbd_policy_run(p, b, &e), <, 0);
        g_test_message("%s: %s", cases[i].mode, e.msg);
        if (!strstr(e.msg, cases[i].want))
            g_error("mode %s: \"%s\" lacks \"%s\"", cases[i].mode, e.msg, cases[i].want);
        /* the batch is as it was: the daemon can skip the policy */
        plan_equal(b, &before);
        g_assert_true(b->jobs == jobs);
        g_assert_cmpuint(b->n_jobs, ==, 2);
        g_assert_cmpuint(b->n_files, ==, 2);
        g_assert_cmpint(b->jobs[0].defer_until_ns, ==, 0);
        g_assert_cmpstr(b->jobs[0].defer_reason, ==, "");
        g_assert_cmpuint(b->rate_limit_bps, ==, 0);
        g_assert_cmpuint(vbd_batch_notes(b)->len, ==, 0);
        /* and still good for the next policy */
        {
            struct vbd_policy *m = load("merge", NULL);

            run_ok(m, b);
            g_assert_cmpuint(b->n_reads, ==, 2);
            vbd_policy_free(m);
        }
        free_plan(&before);
        vbd_policy_free(p);
        vbd_batch_free(b);
        g_free(kv[0]);
    }
    /* a broken plan going in is reported as such */
    {
        struct vbd_policy *p = load("passthrough", NULL);
        struct vbp_batch *b = small_batch();
        vb_error e = { 0 };

        b->reads[2].consumers[0].length = 513;
        g_assert_cmpint(vbd_policy_run(p, b, &e), ==, -EPROTO);
        g_assert_nonnull(strstr(e.msg, "the plan handed to policy passthrough is broken: "
                                "read 2 (/img/a.qcow2 at 1048576, 512 bytes): consumer 0 "
                                "(job 1) wants 513 bytes at 0, outside the read"));
        vbd_policy_free(p);
        vbd_batch_free(b);
    }
    g_free(path);
}

/* ------------------------------------------------------------------ */
/* merge */

/*
 * Fake files: byte i of file f is data[f][i].  Executing a plan copies each
 * read out of its file; each consumer must then find exactly the bytes it
 * asked for (its token names the original range).
 */
struct fake {
    uint32_t n_files;
    uint8_t **data;
    uint64_t *size;
    GHashTable *want;            /* token → struct range * */
};

struct range {
    uint32_t file;
    uint64_t off, len, job;
    uint32_t seen;
};

static void fake_init(struct fake *f, uint32_t n_files, uint64_t size, GRand *r)
{
    f->n_files = n_files;
    f->data = g_new0(uint8_t *, n_files);
    f->size = g_new0(uint64_t, n_files);
    for (uint32_t i = 0; i < n_files; i++) {
        f->size[i] = size;
        uint64_t x = ((uint64_t)g_rand_int(r) << 32 | g_rand_int(r)) | 1;

        f->data[i] = g_malloc(size);
        for (uint64_t j = 0; j < size; j += 8) {   /* xorshift64: fast and varied */
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            memcpy(f->data[i] + j, &x, MIN((uint64_t)8, size - j));
        }
    }
    f->want = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, g_free);
}

static void fake_free(struct fake *f)
{
    for (uint32_t i = 0; i < f->n_files; i++)
        g_free(f->data[i]);
    g_free(f->data);
    g_free(f->size);
    g_hash_table_destroy(f->want);
}

static void fake_add(struct fake *f, struct vbp_batch *b, uint32_t file, uint64_t off,
                     uint64_t len, uint64_t job, uint64_t token)
{
    struct range *rg = g_new0(struct range, 1);
    uint64_t *k = g_new(uint64_t, 1);

    *rg = (struct range){ file, off, len, job, 0 };
    *k = token;
    g_assert_false(g_hash_table_contains(f->want, k));
    g_hash_table_insert(f->want, k, rg);
    vbd_batch_add_read(b, file, off, len, 0, job, token);
}

/* Execute b's plan against the fake files; every wanted range exactly once. */
static void fake_check(struct fake *f, const struct vbp_batch *b)
{
    GHashTableIter it;
    gpointer v;

    for (uint32_t i = 0; i < b->n_reads; i++) {
        const struct vbp_read *r = &b->reads[i];
        uint8_t *buf;

        g_assert_cmpuint(r->file, <, f->n_files);
        g_assert_cmpuint(r->offset + r->length, <=, f->size[r->file]);
        buf = g_memdup2(f->data[r->file] + r->offset, r->length);   /* "the read" */
        for (uint32_t j = 0; j < r->n_consumers; j++) {
            const struct vbp_consumer *c = &r->consumers[j];
            struct range *rg = g_hash_table_lookup(f->want, &c->token);

            g_assert_nonnull(rg);
            g_assert_cmpuint(c->job, ==, rg->job);
            g_assert_cmpuint(c->length, ==, rg->len);
            g_assert_cmpuint(r->file, ==, rg->file);
            g_assert_cmpuint(c->offset + c->length, <=, r->length);
            g_assert_true(memcmp(buf + c->offset, f->data[rg->file] + rg->off, rg->len) == 0);
            rg->seen++;
        }
        g_free(buf);
    }
    g_hash_table_iter_init(&it, f->want);
    while (g_hash_table_iter_next(&it, NULL, &v))
        g_assert_cmpuint(((struct range *)v)->seen, ==, 1);
    g_hash_table_iter_init(&it, f->want);
    while (g_hash_table_iter_next(&it, NULL, &v))
        ((struct range *)v)->seen = 0;
}

/*
 * Three VMs cloned from one base image: each wants the same 100 ranges of
 * the base and five ranges of its own overlay.
 */
static void test_merge_clones(void)
{
    struct vbd_policy *p = load("merge", NULL);
    struct vbp_batch *b = vbd_batch_new(1);
    GRand *r = g_rand_new_with_seed(1);
    struct fake f;
    uint32_t base_reads = 0, overlay_reads = 0;
    uint64_t token = 1;
    const char *n;

    fake_init(&f, 4, 20 * MiB, r);
    for (uint64_t job = 1; job <= 3; job++) {
        char vm[16], path[32];
        uint32_t base, ovl;

        snprintf(vm, sizeof(vm), "vm%" G_GUINT64_FORMAT, job);
        snprintf(path, sizeof(path), "/img/%s.qcow2", vm);
        vbd_batch_add_job(b, job, vm, VBP_KIND_DISK, 0);
        base = vbd_batch_add_file(b, "/img/base.qcow2", 1, 1, 20 * MiB);   /* dedups */
        ovl = vbd_batch_add_file(b, path, 1, 1 + job, 20 * MiB);
        g_assert_cmpuint(base, ==, 0);
        g_assert_cmpuint(ovl, ==, job);
        for (uint64_t i = 0; i < 100; i++)   /* 64 KiB every 192 KiB: gaps too wide */
            fake_add(&f, b, base, i * 192 * KiB, 64 * KiB, job, token++);
        for (uint64_t i = 0; i < 5; i++)
            fake_add(&f, b, ovl, (i * 3 + job) * MiB, 128 * KiB, job, token++);
    }
    g_assert_cmpuint(b->n_reads, ==, 3 * 105);
    run_ok(p, b);
    dump_notes(b);

    for (uint32_t i = 0; i < b->n_reads; i++) {
        const struct vbp_read *rd = &b->reads[i];

        if (rd->file == 0) {
            base_reads++;
            g_assert_cmpuint(rd->length, ==, 64 * KiB);
            g_assert_cmpuint(rd->n_consumers, ==, 3);
            for (uint32_t j = 0; j < 3; j++) {
                g_assert_cmpuint(rd->consumers[j].offset, ==, 0);
                g_assert_cmpuint(rd->consumers[j].job, ==, j + 1);
            }
        } else {
            overlay_reads++;
            g_assert_cmpuint(rd->n_consumers, ==, 1);
            g_assert_cmpuint(rd->consumers[0].job, ==, rd->file);
        }
    }
    g_assert_cmpuint(base_reads, ==, 100);
    g_assert_cmpuint(overlay_reads, ==, 15);
    /* the base once, the overlays each */
    g_assert_cmpuint(vbd_batch_read_bytes(b), ==, 100 * 64 * KiB + 15 * 128 * KiB);
    g_assert_cmpuint(vbd_batch_wanted_bytes(b), ==, 3 * (100 * 64 * KiB + 5 * 128 * KiB));
    fake_check(&f, b);

    n = find_note(b, "merge", 0, "merged 315 reads into 115; ");
    g_assert_nonnull(n);
    g_assert_nonnull(strstr(n, "20.6 MiB wanted, 8.12 MiB to read (12.5 MiB shared "
                               "between jobs 1, 2, 3)"));
    for (uint64_t job = 1; job <= 3; job++) {
        n = find_note(b, "merge", job, "6.25 MiB of its 6.88 MiB read once with jobs ");
        g_assert_nonnull(n);
        n = strstr(n, "with jobs ");
        for (uint64_t o = 1; o <= 3; o++) {
            char id[8];

            snprintf(id, sizeof(id), "%" G_GUINT64_FORMAT, o);
            g_assert_true((strstr(n, id) != NULL) == (o != job));
        }
    }
    fake_free(&f);
    g_rand_free(r);
    vbd_batch_free(b);
    vbd_policy_free(p);
}

static void test_merge_adjacent(void)
{
    struct vbd_policy *p = load("merge", "max_read=1M", NULL);
    struct vbp_batch *b = vbd_batch_new(2);
    GRand *r = g_rand_new_with_seed(2);
    struct fake f;
    uint64_t token = 1;

    fake_init(&f, 1, 40 * MiB, r);
    vbd_batch_add_job(b, 1, "vm", VBP_KIND_DISK, 0);
    vbd_batch_add_file(b, "/img/a", 1, 1, 40 * MiB);
    /* 100 adjacent 64 KiB ranges, added in reverse order: 6.25 MiB */
    for (uint64_t i = 100; i-- > 0;)
        fake_add(&f, b, 0, i * 64 * KiB, 64 * KiB, 1, token++);
    /* a 10 MiB read at 20 MiB, one inside it, one right after it */
    fake_add(&f, b, 0, 20 * MiB, 10 * MiB, 1, token++);
    fake_add(&f, b, 0, 25 * MiB, 4096, 1, token++);
    fake_add(&f, b, 0, 30 * MiB, 4096, 1, token++);
    run_ok(p, b);
    dump_notes(b);

    g_assert_cmpuint(b->n_reads, ==, 7 + 1 + 1);
    for (uint32_t i = 0; i < 7; i++) {
        g_assert_cmpuint(b->reads[i].offset, ==, i * MiB);
        g_assert_cmpuint(b->reads[i].length, ==, i < 6 ? MiB : 256 * KiB);
        g_assert_cmpuint(b->reads[i].n_consumers, ==, i < 6 ? 16 : 4);
    }
    g_assert_cmpuint(b->reads[7].offset, ==, 20 * MiB);
    g_assert_cmpuint(b->reads[7].length, ==, 10 * MiB);     /* kept as it is */
    g_assert_cmpuint(b->reads[7].n_consumers, ==, 2);        /* with the one inside */
    g_assert_cmpuint(b->reads[8].offset, ==, 30 * MiB);
    g_assert_cmpuint(b->reads[8].length, ==, 4096);
    fake_check(&f, b);
    g_assert_nonnull(find_note(b, "merge", 0, "merged 103 reads into 9; "));
    g_assert_null(find_note(b, "merge", 0, "deferred"));
    fake_free(&f);
    g_rand_free(r);
    vbd_batch_free(b);
    vbd_policy_free(p);

    /* the executor's max_read_bytes caps a larger max_read */
    p = load("merge", "max_read=64M", NULL);
    b = vbd_batch_new(3);
    b->max_read_bytes = 128 * KiB;
    vbd_batch_add_job(b, 1, "vm", VBP_KIND_DISK, 0);
    vbd_batch_add_file(b, "/img/a", 1, 1, 40 * MiB);
    for (uint64_t i = 0; i < 4; i++)
        vbd_batch_add_read(b, 0, i * 64 * KiB, 64 * KiB, 0, 1, i);
    run_ok(p, b);
    g_assert_cmpuint(b->n_reads, ==, 2);
    vbd_batch_free(b);
    vbd_policy_free(p);

    /* enabled=no leaves the plan alone */
    p = load("merge", "enabled=no", NULL);
    b = small_batch();
    run_ok(p, b);
    g_assert_cmpuint(b->n_reads, ==, 4);
    g_assert_nonnull(find_note(b, "merge", 0, "disabled"));
    vbd_batch_free(b);
    vbd_policy_free(p);
}

static void test_merge_gaps(void)
{
    struct vbd_policy *p = load("merge", "max_gap=4k", NULL);
    struct vbp_batch *b = vbd_batch_new(4);
    GRand *r = g_rand_new_with_seed(3);
    struct fake f;

    fake_init(&f, 2, 1 * MiB, r);
    vbd_batch_add_job(b, 1, "vm", VBP_KIND_FILES, 0);
    vbd_batch_add_file(b, "/a", 1, 1, MiB);
    vbd_batch_add_file(b, "/b", 1, 2, MiB);
    fake_add(&f, b, 0, 0, 1000, 1, 1);
    fake_add(&f, b, 0, 1000 + 4096, 1000, 1, 2);        /* gap = max_gap: joins */
    fake_add(&f, b, 0, 6096 + 4097, 1000, 1, 3);        /* gap = max_gap + 1: does not */
    fake_add(&f, b, 1, 6096, 1000, 1, 4);               /* another file never joins */
    run_ok(p, b);
    dump_notes(b);
    g_assert_cmpuint(b->n_reads, ==, 3);
    g_assert_cmpuint(b->reads[0].file, ==, 0);
    g_assert_cmpuint(b->reads[0].offset, ==, 0);
    g_assert_cmpuint(b->reads[0].length, ==, 6096);
    g_assert_cmpuint(b->reads[0].n_consumers, ==, 2);
    g_assert_cmpuint(b->reads[0].consumers[1].offset, ==, 5096);
    g_assert_cmpuint(b->reads[1].offset, ==, 6096 + 4097);
    g_assert_cmpuint(b->reads[2].file, ==, 1);
    fake_check(&f, b);
    g_assert_nonnull(find_note(b, "merge", 0, "4.00 KiB of gaps read and dropped"));
    fake_free(&f);
    g_rand_free(r);
    vbd_batch_free(b);
    vbd_policy_free(p);

    /* max_gap=0: touching ranges join, others do not */
    p = load("merge", "max_gap=0", NULL);
    b = vbd_batch_new(5);
    vbd_batch_add_job(b, 1, "vm", VBP_KIND_FILES, 0);
    vbd_batch_add_file(b, "/a", 1, 1, MiB);
    vbd_batch_add_read(b, 0, 0, 100, 0, 1, 1);
    vbd_batch_add_read(b, 0, 100, 100, 0, 1, 2);
    vbd_batch_add_read(b, 0, 201, 100, 0, 1, 3);
    run_ok(p, b);
    g_assert_cmpuint(b->n_reads, ==, 2);
    g_assert_cmpuint(b->reads[0].length, ==, 200);
    vbd_batch_free(b);
    vbd_policy_free(p);
}

/* Random plans: every consumer still gets exactly its bytes. */
static void test_merge_random(void)
{
    GRand *r = g_rand_new_with_seed(20261125);
    struct fake f;

    fake_init(&f, 3, 4 * MiB, r);
    for (int iter = 0; iter < 60; iter++) {
        uint64_t max_read = (uint64_t)g_rand_int_range(r, 1, 65) * 16 * KiB;
        uint64_t max_gap = (uint64_t)g_rand_int_range(r, 0, 5) * 8 * KiB;
        char kv_read[48], kv_gap[48];
        struct vbd_policy *p;
        struct vbp_batch *b = vbd_batch_new((uint64_t)iter);
        uint32_t n_jobs = (uint32_t)g_rand_int_range(r, 1, 6), n = 0;
        int n_reads = g_rand_int_range(r, 1, 400);
        uint64_t longest = 0, in_bytes = 0;

        snprintf(kv_read, sizeof(kv_read), "max_read=%" G_GUINT64_FORMAT, max_read);
        snprintf(kv_gap, sizeof(kv_gap), "max_gap=%" G_GUINT64_FORMAT, max_gap);
        p = load("merge", kv_read, kv_gap, NULL);
        for (uint32_t j = 1; j <= n_jobs; j++)
            vbd_batch_add_job(b, j * 10, "vm", VBP_KIND_DISK, 0);
        for (uint32_t i = 0; i < f.n_files; i++)
            vbd_batch_add_file(b, "/f", 1, i, f.size[i]);
        g_hash_table_remove_all(f.want);
        for (int i = 0; i < n_reads; i++) {
            uint32_t file = (uint32_t)g_rand_int_range(r, 0, (gint32)f.n_files);
            uint64_t len = g_rand_boolean(r) ? (uint64_t)g_rand_int_range(r, 1, 4096) :
                                               (uint64_t)g_rand_int_range(r, 1, 600 * 1024);
            uint64_t off = (uint64_t)g_rand_int_range(r, 0, (gint32)(f.size[file] - len));
            uint64_t job = 10 * (uint64_t)g_rand_int_range(r, 1, (gint32)n_jobs + 1);

            if (g_rand_int_range(r, 0, 4) == 0 && n > 0) {   /* the same range again */
                const struct vbp_read *prev = &b->reads[g_rand_int_range(r, 0, (gint32)n)];

                file = prev->file;
                off = prev->offset;
                len = prev->length;
            }
            fake_add(&f, b, file, off, len, job, (uint64_t)i + 1);
            longest = MAX(longest, len);
            in_bytes += len;
            n++;
        }
        run_ok(p, b);
        g_assert_cmpuint(b->n_reads, <=, n);
        g_assert_cmpuint(vbd_batch_wanted_bytes(b), ==, in_bytes);
        for (uint32_t i = 0; i < b->n_reads; i++) {
            g_assert_cmpuint(b->reads[i].length, <=, MAX(max_read, longest));
            if (b->reads[i].length > max_read) {
                /* an input read larger than max_read, kept as it is */
                gboolean found = FALSE;

                for (uint32_t j = 0; j < b->reads[i].n_consumers; j++)
                    if (b->reads[i].consumers[j].offset == 0 &&
                        b->reads[i].consumers[j].length == b->reads[i].length)
                        found = TRUE;
                g_assert_true(found);
            }
        }
        fake_check(&f, b);
        vbd_batch_free(b);
        vbd_policy_free(p);
    }
    fake_free(&f);
    g_rand_free(r);
}

/* Reads of jobs deferred earlier in the chain stay as they are. */
static void test_merge_deferred(void)
{
    struct vbd_policy *p = load("merge", NULL);
    struct vbp_batch *b = small_batch();

    b->jobs[0].defer_until_ns = b->load.now_ns + NS;
    b->jobs[1].defer_until_ns = b->load.now_ns + NS;
    run_ok(p, b);
    g_assert_cmpuint(b->n_reads, ==, 4);
    g_assert_nonnull(find_note(b, "merge", 0, "all 4 reads belong to deferred jobs"));
    vbd_batch_free(b);

    /* job 2 deferred: its reads are neither merged with job 1's nor reported */
    b = small_batch();
    b->jobs[1].defer_until_ns = b->load.now_ns + NS;
    run_ok(p, b);
    g_assert_cmpuint(b->n_reads, ==, 4);
    g_assert_nonnull(find_note(b, "merge", 0, "merged 2 reads into 2; 4.50 KiB wanted, "
                               "4.50 KiB to read; 2 reads of deferred jobs left apart"));
    g_assert_cmpuint(vbd_batch_strip_deferred(b), ==, 8192);
    g_assert_cmpuint(b->n_reads, ==, 2);
    vbd_batch_free(b);
    vbd_policy_free(p);
}

/* CPU time of this thread: what the code costs, not how busy the machine is */
static double thread_cpu_seconds(void)
{
    struct timespec ts;

    g_assert_cmpint(clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts), ==, 0);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Three jobs reading 4k every 8k of one file, n pieces each, in a scrambled
 * order (gaps of 4k: never merged).  Checks the plan; returns the CPU
 * seconds of the policy run alone. */
static double merge_pieces(uint64_t n)
{
    struct vbd_policy *p = load("merge", "max_gap=0", NULL);
    struct vbp_batch *b = vbd_batch_new(6);
    double t0, secs;

    vbd_batch_add_file(b, "/img/base", 1, 1, n * 8192);
    for (uint64_t j = 1; j <= 3; j++)
        vbd_batch_add_job(b, j, "vm", VBP_KIND_DISK, 0);
    for (uint64_t j = 1; j <= 3; j++)
        for (uint64_t i = 0; i < n; i++)    /* 7919 is prime: every piece once */
            vbd_batch_add_read(b, 0, ((i * 7919) % n) * 8192, 4096, 0, j, j * n + i);
    t0 = thread_cpu_seconds();
    run_ok(p, b);
    secs = thread_cpu_seconds() - t0;
    g_assert_cmpuint(b->n_reads, ==, n);
    for (uint32_t i = 0; i < b->n_reads; i++) {
        g_assert_cmpuint(b->reads[i].offset, ==, i * 8192ull);
        g_assert_cmpuint(b->reads[i].n_consumers, ==, 3);
    }
    vbd_batch_free(b);
    vbd_policy_free(p);
    return secs;
}

struct piece {
    uint64_t file, offset, job, seq;
};

static int piece_cmp(const void *a, const void *b)
{
    const struct piece *x = a, *y = b;

    if (x->file != y->file)
        return x->file < y->file ? -1 : 1;
    if (x->offset != y->offset)
        return x->offset < y->offset ? -1 : 1;
    return x->job < y->job ? -1 : x->job > y->job;
}

/* The yardstick: CPU seconds of one qsort of the same pieces, same order. */
static double sort_pieces(uint64_t n)
{
    struct piece *v = g_new(struct piece, 3 * n);
    double t0, secs;

    for (uint64_t j = 1; j <= 3; j++)
        for (uint64_t i = 0; i < n; i++)
            v[(j - 1) * n + i] = (struct piece){ 1, ((i * 7919) % n) * 8192, j, j * n + i };
    t0 = thread_cpu_seconds();
    qsort(v, 3 * n, sizeof(*v), piece_cmp);
    secs = thread_cpu_seconds() - t0;
    for (uint64_t i = 1; i < 3 * n; i++)
        g_assert_cmpint(piece_cmp(&v[i - 1], &v[i]), <=, 0);
    g_free(v);
    return secs;
}

/*
 * Many reads: the sort-and-sweep stays n log n (a quadratic merge would not).
 * Measured against a yardstick run on the same machine at the same moment,
 * one qsort of the same 300000 pieces, so that neither the machine's speed
 * nor its load counts (a bound in seconds did): the merge costs a few sorts
 * (about 5 qsorts here), a quadratic merge thousands.  Each is timed three
 * times and the quickest run counts, so that a cold cache or a preemption in
 * one run does not make the ratio.
 */
static void test_merge_large(void)
{
    const uint64_t n = 100000;
    double merge = G_MAXDOUBLE, sort = G_MAXDOUBLE, ratio;

    for (int i = 0; i < 3; i++) {
        merge = MIN(merge, merge_pieces(n));
        sort = MIN(sort, sort_pieces(n));
    }
    ratio = merge / MAX(sort, 1e-6);
    g_test_message("%" G_GUINT64_FORMAT " reads merged in %.3f s of CPU, %.1f times one qsort "
                   "of them (%.3f s)", 3 * n, merge, ratio, sort);
    g_assert_cmpfloat(ratio, <, 200);
}

/* ------------------------------------------------------------------ */
/* PSI */

static char *make_psi_dir(const char *io, const char *cpu, const char *mem)
{
    char *dir = g_dir_make_tmp("vb-psi-XXXXXX", NULL);
    const char *names[] = { "io", "cpu", "memory" }, *texts[] = { io, cpu, mem };

    g_assert_nonnull(dir);
    for (int i = 0; i < 3; i++) {
        char *path = g_build_filename(dir, names[i], NULL);

        if (texts[i])
            g_assert_true(g_file_set_contents(path, texts[i], -1, NULL));
        g_free(path);
    }
    return dir;
}

static void rm_psi_dir(char *dir)
{
    const char *names[] = { "io", "cpu", "memory" };

    for (int i = 0; i < 3; i++) {
        char *path = g_build_filename(dir, names[i], NULL);

        g_unlink(path);
        g_free(path);
    }
    g_rmdir(dir);
    g_free(dir);
}

static const char *psi(double some, double full)
{
    static char buf[4][160];
    static int i;
    char *b = buf[i++ % 4];

    snprintf(b, 160, "some avg10=%.2f avg60=1.00 avg300=0.50 total=123456\n"
             "full avg10=%.2f avg60=0.00 avg300=0.00 total=42\n", some, full);
    return b;
}

static void test_psi(void)
{
    struct vbp_load l;
    vb_error e = { 0 };
    char *dir;
    int64_t before = vb_wall_ns();

    dir = make_psi_dir(psi(35.2, 12.5), "some avg10=3.00 avg60=0.00 avg300=0.00 total=1\n",
                       psi(0.5, 0.25));
    g_assert_cmpint(vbd_psi_read(dir, &l, &e), ==, 0);
    g_assert_cmpfloat(l.io_some_avg10, ==, 35.2);
    g_assert_cmpfloat(l.io_full_avg10, ==, 12.5);
    g_assert_cmpfloat(l.cpu_some_avg10, ==, 3.0);
    g_assert_cmpfloat(l.mem_some_avg10, ==, 0.5);
    g_assert_cmpfloat(l.mem_full_avg10, ==, 0.25);
    g_assert_cmpint(l.now_ns, >=, before);
    g_assert_cmpint(l.now_ns, <=, vb_wall_ns());
    g_assert_cmpint(l.local_wday, >=, 0);
    g_assert_cmpint(l.local_wday, <=, 6);
    g_assert_cmpint(l.local_minute_of_day, >=, 0);
    g_assert_cmpint(l.local_minute_of_day, <, 1440);
    rm_psi_dir(dir);

    /* a missing file reads as 0 */
    dir = make_psi_dir(psi(1, 2), NULL, NULL);
    g_assert_cmpint(vbd_psi_read(dir, &l, &e), ==, 0);
    g_assert_cmpfloat(l.io_full_avg10, ==, 2);
    g_assert_cmpfloat(l.cpu_some_avg10, ==, 0);
    g_assert_cmpfloat(l.mem_full_avg10, ==, 0);
    rm_psi_dir(dir);

    /* malformed content names the file */
    static const char *bad[] = {
        "",
        "full avg10=1.00 avg60=0 avg300=0 total=0\n",
        "some avg60=1.00 total=0\n",
        "some avg10=abc avg60=0 avg300=0 total=0\n",
        "some avg10=101.00 avg60=0 avg300=0 total=0\n",
        "some avg10=-1 avg60=0 avg300=0 total=0\n",
        "some avg10=1.0 garbage\n",
        "some avg10=1.0\nsome avg10=2.0\n",
    };
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        dir = make_psi_dir(psi(0, 0), psi(0, 0), bad[i]);
        memset(&e, 0, sizeof(e));
        g_assert_cmpint(vbd_psi_read(dir, &l, &e), ==, -EINVAL);
        g_test_message("bad PSI %zu: %s", i, e.msg);
        g_assert_nonnull(strstr(e.msg, "/memory"));
        rm_psi_dir(dir);
    }

    /* a missing folder is an error */
    l.io_some_avg10 = 99;
    g_assert_cmpint(vbd_psi_read("/nonexistent/pressure", &l, &e), ==, -ENOENT);
    g_assert_nonnull(strstr(e.msg, "PSI folder /nonexistent/pressure"));
    g_assert_cmpfloat(l.io_some_avg10, ==, 0);     /* no load known, but the time */
    g_assert_cmpint(l.now_ns, >=, before);
    g_assert_cmpint(vbd_psi_read("/dev/null", &l, &e), ==, -ENOTDIR);

    /* the real one, where the kernel has it */
    if (g_file_test(VBD_PSI_DIR "/io", G_FILE_TEST_EXISTS)) {
        g_assert_cmpint(vbd_psi_read(VBD_PSI_DIR, &l, &e), ==, 0);
        g_test_message("host PSI: io %.2f/%.2f cpu %.2f mem %.2f/%.2f", l.io_some_avg10,
                       l.io_full_avg10, l.cpu_some_avg10, l.mem_some_avg10, l.mem_full_avg10);
    }
}

/* The local weekday and minute of the day the schedule policy's window and
 * days see: from one fixed instant, in zones given as POSIX TZ strings (no
 * tzdata needed), whatever the host's zone and the date are. */
static void test_psi_local_time(void)
{
    const int64_t t = 1772405100 * NS;          /* Sunday 2026-03-01 22:45:00 UTC */
    static const struct {
        const char *tz;
        int wday, minute;
    } z[] = {
        { "UTC0", 0, 22 * 60 + 45 },
        { "IST-5:30", 1, 4 * 60 + 15 },          /* Monday 04:15, past midnight */
        { "PST8", 0, 14 * 60 + 45 },             /* Sunday 14:45 */
    };
    char *saved = g_strdup(g_getenv("TZ"));
    struct vbp_load l;

    for (size_t i = 0; i < G_N_ELEMENTS(z); i++) {
        g_setenv("TZ", z[i].tz, TRUE);
        tzset();
        memset(&l, 0, sizeof(l));
        vbd_psi_set_time(&l, t);
        g_assert_cmpint(l.now_ns, ==, t);
        g_assert_cmpint(l.local_wday, ==, z[i].wday);
        g_assert_cmpint(l.local_minute_of_day, ==, z[i].minute);
    }
    if (saved)
        g_setenv("TZ", saved, TRUE);
    else
        g_unsetenv("TZ");
    tzset();
    g_free(saved);
}

/* ------------------------------------------------------------------ */
/* schedule */

/* A batch of three jobs sealed 10 s, 125 s and 3601 s before now. */
static struct vbp_batch *sched_batch(const struct vbp_load *load, int wday, int minute)
{
    struct vbp_batch *b = vbd_batch_new(9);
    static const int64_t ago[] = { 10, 125, 3601 };

    if (load)
        b->load = *load;
    b->load.now_ns = 1800000000 * NS;
    b->load.local_wday = wday;
    b->load.local_minute_of_day = minute;
    vbd_batch_add_file(b, "/img/a", 1, 1, MiB);
    for (uint64_t i = 0; i < 3; i++) {
        struct vbp_job *j = vbd_batch_add_job(b, i + 1, "vm", VBP_KIND_DISK, 0);

        j->sealed_ns = b->load.now_ns - ago[i] * NS;
        vbd_batch_add_read(b, 0, i * 4096, 4096, 0, i + 1, i);
    }
    return b;
}

static void test_schedule_pressure(void)
{
    struct vbd_policy *p = load("schedule", "io_some_max=20", "cpu_some_max=50%",
                                "mem_full_max=5", NULL);
    char *hot = make_psi_dir(psi(35.2, 30), psi(80, 0), psi(1, 0.5));
    char *cool = make_psi_dir(psi(19.9, 30), psi(50, 0), psi(90, 5));
    struct vbp_load l;
    struct vbp_batch *b;
    vb_error e = { 0 };

    g_assert_cmpint(vbd_psi_read(hot, &l, &e), ==, 0);
    b = sched_batch(&l, 3, 14 * 60 + 3);
    run_ok(p, b);
    dump_notes(b);
    for (int i = 0; i < 2; i++) {
        g_assert_cmpint(b->jobs[i].defer_until_ns, ==, b->load.now_ns + 30 * NS);
        g_assert_cmpstr(b->jobs[i].defer_reason, ==,
                        "io pressure 35.2% > 20% (PSI some avg10); "
                        "cpu pressure 80.0% > 50% (PSI some avg10)");
    }
    /* job 3 waited past max_delay: runs whatever the load */
    g_assert_cmpint(b->jobs[2].defer_until_ns, ==, 0);
    g_assert_cmpstr(b->jobs[2].defer_reason, ==, "");
    g_assert_nonnull(find_note(b, "schedule", 3, "ran after waiting 3601 s (max_delay "
                               "reached) although io pressure 35.2% > 20%"));
    g_assert_nonnull(find_note(b, "schedule", 1, "deferred for 30 s"));
    g_assert_nonnull(find_note(b, "schedule", 0, "2 of 3 jobs deferred"));
    g_assert_cmpuint(b->rate_limit_bps, ==, 0);
    /* the executor then drops the deferred jobs' reads */
    g_assert_cmpuint(vbd_batch_strip_deferred(b), ==, 2 * 4096);
    g_assert_cmpuint(b->n_reads, ==, 1);
    g_assert_cmpuint(b->reads[0].consumers[0].job, ==, 3);
    vbd_batch_free(b);

    /* at (not above) the thresholds: everything runs; a job deferred before says so */
    g_assert_cmpint(vbd_psi_read(cool, &l, &e), ==, 0);
    b = sched_batch(&l, 3, 14 * 60 + 3);
    b->jobs[1].first_deferred_ns = b->load.now_ns - 95 * NS;
    run_ok(p, b);
    dump_notes(b);
    for (int i = 0; i < 3; i++)
        g_assert_cmpint(b->jobs[i].defer_until_ns, ==, 0);
    g_assert_nonnull(find_note(b, "schedule", 2, "ran after waiting 125 s (pressure fell)"));
    g_assert_null(find_note(b, "schedule", 1, "ran after"));
    g_assert_cmpuint(vbd_batch_strip_deferred(b), ==, 0);
    g_assert_cmpuint(b->n_reads, ==, 3);
    vbd_batch_free(b);

    rm_psi_dir(hot);
    rm_psi_dir(cool);
    vbd_policy_free(p);
}

static void test_schedule_window(void)
{
    struct vbd_policy *p = load("schedule", "window=22:00-06:00", "days=mon-fri",
                                "max_delay=1h", "recheck=1m", NULL);
    static const struct {
        int wday, minute;
        const char *reason;      /* NULL: runs */
    } cases[] = {
        { 3, 14 * 60 + 3, "outside the window 22:00-06:00 (now 14:03)" },
        { 3, 22 * 60, NULL },
        { 3, 23 * 60 + 59, NULL },
        { 3, 0, NULL },
        { 3, 5 * 60 + 59, NULL },
        { 3, 6 * 60, "outside the window 22:00-06:00 (now 06:00)" },
        { 6, 2 * 60, NULL },     /* Saturday 02:00: Friday's night */
        { 6, 23 * 60, "not one of the days mon-fri (today is sat)" },
        { 1, 2 * 60, "not one of the days mon-fri (the window opened on sun)" },
        { 0, 12 * 60, "outside the window 22:00-06:00 (now 12:00); not one of the days "
                      "mon-fri (today is sun)" },
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        struct vbp_batch *b = sched_batch(NULL, cases[i].wday, cases[i].minute);

        run_ok(p, b);
        if (cases[i].reason) {
            g_assert_cmpint(b->jobs[0].defer_until_ns, ==, b->load.now_ns + 60 * NS);
            g_assert_cmpstr(b->jobs[0].defer_reason, ==, cases[i].reason);
            g_assert_cmpint(b->jobs[2].defer_until_ns, ==, 0);   /* past max_delay */
        } else {
            for (int j = 0; j < 3; j++)
                g_assert_cmpint(b->jobs[j].defer_until_ns, ==, 0);
        }
        vbd_batch_free(b);
    }
    vbd_policy_free(p);

    /* a deferral never outlasts max_delay; restores are not deferred by default */
    p = load("schedule", "window=01:00-02:00", "max_delay=130", "recheck=60", NULL);
    {
        struct vbp_batch *b = sched_batch(NULL, 2, 12 * 60);

        b->jobs[0].kind = VBP_KIND_RESTORE;
        run_ok(p, b);
        g_assert_cmpint(b->jobs[0].defer_until_ns, ==, 0);
        g_assert_cmpint(b->jobs[1].defer_until_ns, ==, b->load.now_ns + 5 * NS);
        vbd_batch_free(b);
    }
    vbd_policy_free(p);
}

static void test_schedule_rate(void)
{
    struct vbd_policy *p = load("schedule", "rate_limit=100M", NULL);
    struct vbp_batch *b = sched_batch(NULL, 1, 0);

    run_ok(p, b);
    g_assert_cmpuint(b->rate_limit_bps, ==, 100 * MiB);
    g_assert_nonnull(find_note(b, "schedule", 0, "read bandwidth capped at 100 MiB/s"));
    for (int j = 0; j < 3; j++)
        g_assert_cmpint(b->jobs[j].defer_until_ns, ==, 0);
    /* a lower limit set before stays */
    b->rate_limit_bps = 10 * MiB;
    run_ok(p, b);
    g_assert_cmpuint(b->rate_limit_bps, ==, 10 * MiB);
    vbd_batch_free(b);
    vbd_policy_free(p);

    p = load("schedule", "rate_limit=50MiB/s", NULL);
    b = sched_batch(NULL, 1, 0);
    run_ok(p, b);
    g_assert_cmpuint(b->rate_limit_bps, ==, 50 * MiB);
    vbd_batch_free(b);
    vbd_policy_free(p);
}

/* ------------------------------------------------------------------ */
/* The default chain, and stripping deferred jobs from a merged plan */

static void test_chain_strip(void)
{
    struct vbd_policy *sched = load("schedule", "window=00:00-12:00", NULL);
    struct vbd_policy *merge = load("merge", NULL);
    struct vbp_batch *b = vbd_batch_new(11);
    GRand *r = g_rand_new_with_seed(4);
    struct fake f;
    struct range *rg;
    uint64_t removed, token = 100;

    fake_init(&f, 1, 4 * MiB, r);
    b->load.now_ns = 1800000000 * NS;
    b->load.local_minute_of_day = 13 * 60;
    vbd_batch_add_file(b, "/img/base", 1, 1, 4 * MiB);
    for (uint64_t j = 1; j <= 3; j++) {
        struct vbp_job *job = vbd_batch_add_job(b, j, "vm", VBP_KIND_DISK, 0);

        job->sealed_ns = b->load.now_ns - (j == 2 ? 10 : 7200) * NS;   /* job 2 is young */
    }
    /* shared: [0, 64k) by all; job 2 alone: [64k, 128k); job 1 alone: [1M, 1M+4k) */
    for (uint64_t j = 1; j <= 3; j++)
        fake_add(&f, b, 0, 0, 64 * KiB, j, token++);
    fake_add(&f, b, 0, 64 * KiB, 64 * KiB, 2, token++);
    fake_add(&f, b, 0, 3 * MiB, 4 * KiB, 2, token++);
    fake_add(&f, b, 0, 1 * MiB, 4 * KiB, 1, token++);

    run_ok(sched, b);
    run_ok(merge, b);
    dump_notes(b);
    g_assert_cmpint(b->jobs[1].defer_until_ns, >, b->load.now_ns);
    /*
     * [0, 64k) for jobs 1 and 3, 1M for job 1; job 2's reads (deferred) stay
     * apart, after them, as they were
     */
    g_assert_cmpuint(b->n_reads, ==, 5);
    g_assert_cmpuint(b->reads[0].length, ==, 64 * KiB);
    g_assert_cmpuint(b->reads[0].n_consumers, ==, 2);
    g_assert_cmpuint(b->reads[1].offset, ==, 1 * MiB);
    for (uint32_t i = 2; i < 5; i++) {
        g_assert_cmpuint(b->reads[i].n_consumers, ==, 1);
        g_assert_cmpuint(b->reads[i].consumers[0].job, ==, 2);
    }
    g_assert_nonnull(find_note(b, "merge", 0, "merged 3 reads into 2; 132 KiB wanted, "
                               "68.0 KiB to read (64.0 KiB shared between jobs 1, 3); "
                               "3 reads of deferred jobs left apart"));
    g_assert_null(find_note(b, "merge", 2, ""));
    fake_check(&f, b);

    removed = vbd_batch_strip_deferred(b);
    /* job 2's reads: [0, 64k), [64k, 128k) and 4k at 3M */
    g_assert_cmpuint(removed, ==, 128 * KiB + 4 * KiB);
    g_assert_cmpuint(b->n_reads, ==, 2);
    g_assert_cmpuint(b->reads[0].length, ==, 64 * KiB);
    g_assert_cmpuint(b->reads[0].n_consumers, ==, 2);
    for (uint32_t i = 0; i < b->n_reads; i++)
        for (uint32_t c = 0; c < b->reads[i].n_consumers; c++)
            g_assert_cmpuint(b->reads[i].consumers[c].job, !=, 2);
    /* what is left is still right; job 2's ranges are no longer expected */
    for (uint64_t t = 100; t < token; t++) {
        rg = g_hash_table_lookup(f.want, &t);
        if (rg->job == 2)
            g_hash_table_remove(f.want, &t);
    }
    fake_check(&f, b);

    /* everything deferred: nothing left to read */
    for (uint32_t j = 0; j < b->n_jobs; j++)
        b->jobs[j].defer_until_ns = b->load.now_ns + NS;
    removed = vbd_batch_strip_deferred(b);
    g_assert_cmpuint(removed, ==, 64 * KiB + 4 * KiB);
    g_assert_cmpuint(b->n_reads, ==, 0);

    fake_free(&f);
    g_rand_free(r);
    vbd_batch_free(b);
    vbd_policy_free(sched);
    vbd_policy_free(merge);
}

static void test_strip_front(void)
{
    struct vbp_batch *b = vbd_batch_new(12);
    GRand *r = g_rand_new_with_seed(5);
    struct vbd_policy *merge = load("merge", NULL);
    struct fake f;

    fake_init(&f, 1, MiB, r);
    b->load.now_ns = 100 * NS;
    vbd_batch_add_file(b, "/x", 1, 1, MiB);
    vbd_batch_add_job(b, 1, "a", VBP_KIND_FILES, 0);
    vbd_batch_add_job(b, 2, "b", VBP_KIND_FILES, 0);
    fake_add(&f, b, 0, 0, 1000, 2, 1);
    fake_add(&f, b, 0, 1000, 1000, 1, 2);
    fake_add(&f, b, 0, 5000, 1000, 1, 3);
    fake_add(&f, b, 0, 9000, 1000, 2, 4);
    run_ok(merge, b);
    g_assert_cmpuint(b->n_reads, ==, 1);
    /* job 2 deferred after the merge (by a later policy): trimmed at both ends to job 1's [1000, 6000) */
    b->jobs[1].defer_until_ns = 200 * NS;
    g_assert_cmpuint(vbd_batch_strip_deferred(b), ==, 1000 + 4000);
    g_assert_cmpuint(b->n_reads, ==, 1);
    g_assert_cmpuint(b->reads[0].offset, ==, 1000);
    g_assert_cmpuint(b->reads[0].length, ==, 5000);
    g_hash_table_remove_all(f.want);
    {
        struct range *a = g_new(struct range, 1), *c = g_new(struct range, 1);
        uint64_t *k2 = g_new(uint64_t, 1), *k3 = g_new(uint64_t, 1);

        *a = (struct range){ 0, 1000, 1000, 1, 0 };
        *c = (struct range){ 0, 5000, 1000, 1, 0 };
        *k2 = 2;
        *k3 = 3;
        g_hash_table_insert(f.want, k2, a);
        g_hash_table_insert(f.want, k3, c);
    }
    fake_check(&f, b);
    /* reads can be added after a policy replaced the array */
    vbd_batch_add_read(b, 0, 0, 10, 0, 1, 99);
    g_assert_cmpuint(b->n_reads, ==, 2);
    g_assert_cmpuint(b->reads[0].offset, ==, 1000);
    g_assert_cmpuint(b->reads[1].length, ==, 10);
    fake_free(&f);
    g_rand_free(r);
    vbd_batch_free(b);
    vbd_policy_free(merge);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/policy/load/shipped", test_load_shipped);
    g_test_add_func("/policy/load/errors", test_load_errors);
    g_test_add_func("/policy/load/config-errors", test_config_errors);
    g_test_add_func("/policy/batch/basics", test_batch_basics);
    g_test_add_func("/policy/run/checks", test_run_checks);
    g_test_add_func("/policy/passthrough", test_passthrough);
    g_test_add_func("/policy/merge/clones", test_merge_clones);
    g_test_add_func("/policy/merge/adjacent", test_merge_adjacent);
    g_test_add_func("/policy/merge/gaps", test_merge_gaps);
    g_test_add_func("/policy/merge/random", test_merge_random);
    g_test_add_func("/policy/merge/deferred", test_merge_deferred);
    g_test_add_func("/policy/merge/large", test_merge_large);
    g_test_add_func("/policy/psi", test_psi);
    g_test_add_func("/policy/psi/local-time", test_psi_local_time);
    g_test_add_func("/policy/schedule/pressure", test_schedule_pressure);
    g_test_add_func("/policy/schedule/window", test_schedule_window);
    g_test_add_func("/policy/schedule/rate", test_schedule_rate);
    g_test_add_func("/policy/chain/strip", test_chain_strip);
    g_test_add_func("/policy/chain/strip-front", test_strip_front);
    return g_test_run();
}
