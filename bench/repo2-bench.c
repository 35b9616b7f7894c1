/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The version 2 engine end to end on a local folder (hostd/repo/repo2.h):
 * a first backup of a sample (real files) cut into fixed 4 MiB chunks (a
 * disk) and into FastCDC chunks (files), an unchanged second backup, a
 * restore with parallel coalesced reads; next to the machine's limit for
 * the same work, keyed ids + zstd on the same threads with no store.  Run by
 * bench/repo2-bench; prints a markdown table.
 *
 * VB_BENCH_GC_CHUNKS=N adds gc on a repository of N tiny chunks (two
 * snapshots, one forgotten): wall time and the peak memory gc added.
 */
#include <fcntl.h>
#include <glib.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "fastcdc.h"
#include "repo2.h"

#define MIB (1u << 20)

static uint8_t *data;
static size_t data_len;
static unsigned threads;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU seconds of the whole process (every thread) */
static double cpu_now(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static long status_kb(const char *key)
{
    char *s = NULL, *p;
    long v = -1;

    if (!g_file_get_contents("/proc/self/status", &s, NULL, NULL))
        return -1;
    p = strstr(s, key);
    if (p)
        v = strtol(p + strlen(key) + 1, NULL, 10);
    g_free(s);
    return v;
}

static void die(const char *what, const vb_error *e)
{
    fprintf(stderr, "repo2-bench: %s: %s\n", what, vb_strerror(e));
    exit(1);
}

/* The chunks of the sample: offsets and lengths. */
struct cut {
    size_t n;
    size_t *off, *len;
};

static void cut_fixed(struct cut *c, size_t size)
{
    c->n = (data_len + size - 1) / size;
    c->off = g_new(size_t, c->n);
    c->len = g_new(size_t, c->n);
    for (size_t i = 0; i < c->n; i++) {
        c->off[i] = i * size;
        c->len[i] = VB_MIN(size, data_len - i * size);
    }
}

static void cut_cdc(struct cut *c, uint32_t avg)
{
    struct vb_cdc cdc;
    GArray *o = g_array_new(FALSE, FALSE, sizeof(size_t)), *l = g_array_new(FALSE, FALSE,
                                                                              sizeof(size_t));

    vb_cdc_init(&cdc, avg);
    for (size_t p = 0; p < data_len;) {
        size_t n = vb_cdc_cut(&cdc, data + p, data_len - p);
        g_array_append_val(o, p);
        g_array_append_val(l, n);
        p += n;
    }
    c->n = o->len;
    c->off = (size_t *)g_array_free(o, FALSE);
    c->len = (size_t *)g_array_free(l, FALSE);
}

/* ---- the limit: keyed id + zstd, no store ---------------------------------------------- */

struct job {
    const struct cut *c;
    gint next;
    struct vb2_write *w;           /* NULL: the limit */
    const struct vb_keys *k;
    int level;
    uint8_t *ids;
};

static gpointer work(gpointer opaque)
{
    struct job *j = opaque;
    struct vb_codec codec;
    vb_error e = { 0 };

    vb_codec_init(&codec, j->level);
    for (;;) {
        gint i = g_atomic_int_add(&j->next, 1);
        const uint8_t *p;
        size_t n;

        if ((size_t)i >= j->c->n)
            break;
        p = data + j->c->off[i];
        n = j->c->len[i];
        if (j->w) {
            if (vb2_write_put(j->w, &codec, VB_BLOB_DATA, p, n, j->ids + 32 * (size_t)i, NULL,
                              &e) < 0)
                die("put", &e);
        } else {
            uint8_t id[32];
            size_t cap = ZSTD_compressBound(n);
            if (codec.cap < cap) {
                codec.buf = realloc(codec.buf, cap);
                codec.cap = cap;
            }
            vb_keyed_id(j->k->id_key, p, n, id);
            ZSTD_compress2(codec.cctx, codec.buf, cap, p, n);
        }
    }
    vb_codec_free(&codec);
    return NULL;
}

static double last_cpu;             /* CPU seconds of the last run_threads */

static double run_threads(struct job *j)
{
    GThread **th = g_new(GThread *, threads);
    double t0 = now(), c0 = cpu_now();

    j->next = 0;
    for (unsigned t = 0; t < threads; t++)
        th[t] = g_thread_new("work", work, j);
    for (unsigned t = 0; t < threads; t++)
        g_thread_join(th[t]);
    g_free(th);
    last_cpu = cpu_now() - c0;
    return now() - t0;
}

/* ---- backups ---------------------------------------------------------------------------- */

static double backup(struct vb2_repo *r, const struct cut *c, const char *vm, uint32_t chunk,
                     char **id, struct vb2_write_stats *st)
{
    double c0 = cpu_now();
    struct vb2_write_opts wo = { .vm = vm };
    struct job j = { .c = c, .level = 3 };
    struct vb_manifest *m = vb_manifest_new();
    struct vb_codec codec;
    struct vb2_repo_info info;
    double t0 = now();
    vb_error e = { 0 };

    vb2_repo_info(r, &info);
    j.level = info.zstd_level;
    j.ids = g_malloc0(c->n * 32);
    if (vb2_write_begin(r, &wo, &j.w, &e))
        die("begin", &e);
    run_threads(&j);
    vb_codec_init(&codec, 1);
    if (chunk) {
        m->type = VB_MF_DISK;
        m->disk.chunk_size = chunk;
        m->disk.size = data_len;
        m->disk.chunk_count = c->n;
    } else {
        m->type = VB_MF_FILES;
        if (vb2_write_stream(j.w, &codec, "", 0, &m->catalog, &e))
            die("catalog", &e);
    }
    if (vb2_write_stream(j.w, &codec, j.ids, c->n * 32, &m->chunks, &e))
        die("chunk list", &e);
    vb2_write_stats(j.w, st);
    if (vb2_write_commit(j.w, m, id, &e))
        die("commit", &e);
    vb2_write_unref(j.w);
    vb_codec_free(&codec);
    vb_manifest_free(m);
    g_free(j.ids);
    last_cpu = cpu_now() - c0;
    return now() - t0;
}

struct restore {
    gint64 bytes;
    gint bad;
};

static void got(void *opaque, size_t i, const uint8_t *d, size_t len, int err,
                const vb_error *e)
{
    struct restore *rs = opaque;

    if (err) {
        g_atomic_int_inc(&rs->bad);
        return;
    }
    __atomic_fetch_add(&rs->bytes, (gint64)len, __ATOMIC_RELAXED);
}

static double restore(struct vb2_repo *r, const char *id, uint64_t *ranges)
{
    struct vb_manifest *m;
    GByteArray *list = g_byte_array_new();
    struct restore rs = { 0 };
    uint8_t key[32];
    uint64_t r0 = vb2_repo_range_gets(r);
    double t0 = now();
    vb_error e = { 0 };

    if (vb2_snap_load(r, id, &m, &e) || vb2_stream_get_all(r, m, &m->chunks, list, &e) ||
        vb2_group_key(r, m->dedup_group, key, &e) ||
        vb2_get_many(r, key, list->data, list->len / 32, got, &rs, &e))
        die("restore", &e);
    if (rs.bad || (size_t)rs.bytes != data_len) {
        fprintf(stderr, "repo2-bench: restore: %d bad, %lld bytes\n", rs.bad,
                (long long)rs.bytes);
        exit(1);
    }
    *ranges = vb2_repo_range_gets(r) - r0;
    vb_manifest_free(m);
    g_byte_array_free(list, TRUE);
    return now() - t0;
}

static struct vb_secret secret(void)
{
    struct vb_secret s = { .kind = VB_SECRET_PASSWORD };
    s.data = (uint8_t *)g_strdup("bench");
    s.len = 5;
    return s;
}

/* MB/s, best of the runs */
struct rates {
    double disk, files, unchanged, restore;
    double disk_cpu, files_cpu;      /* least CPU seconds */
    uint64_t ranges, new_blobs;
};

static void least(double *b, double v)
{
    if (!*b || v < *b)
        *b = v;
}

static void best(double *b, double v)
{
    if (v > *b)
        *b = v;
}

static void one_repo(enum vb_aead aead, struct rates *best_of)
{
    static const struct vb_kdf_params kdf = { 1u << 14, 1, 1 };
    struct vb_secret s = secret();
    struct vb2_create_opts co = { .encryption = aead, .secret = &s, .kdf = &kdf };
    char *dir = g_dir_make_tmp("vb-bench-XXXXXX", NULL), *cache = g_strconcat(dir, ".cache",
                                                                              NULL);
    struct vb2_open_opts oo = { .secret = &s, .cache_dir = cache, .upload_threads = 2 };
    struct vb2_repo *r;
    struct vb2_write_stats st;
    struct cut disk, files;
    char *id1, *id2, *id3;
    double t;
    vb_error e = { 0 };

    cut_fixed(&disk, 4 * MIB);
    cut_cdc(&files, 1 * MIB);
    if (vb2_repo_create(dir, &co, &e) || vb2_repo_open(dir, &oo, &r, &e))
        die("create", &e);
    t = backup(r, &disk, "disk", 4 * MIB, &id1, &st);
    best(&best_of->disk, data_len / t / 1e6);
    least(&best_of->disk_cpu, last_cpu);
    t = backup(r, &files, "files", 0, &id2, &st);
    best(&best_of->files, data_len / t / 1e6);
    least(&best_of->files_cpu, last_cpu);
    t = backup(r, &disk, "disk", 4 * MIB, &id3, &st);
    best(&best_of->unchanged, data_len / t / 1e6);
    best_of->new_blobs = st.blobs_new;
    vb2_repo_close(r);
    /* restore with a cold local cache but a warm page cache */
    vb_rm_rf_at(AT_FDCWD, cache);
    if (vb2_repo_open(dir, &oo, &r, &e))
        die("open", &e);
    t = restore(r, id1, &best_of->ranges);
    best(&best_of->restore, data_len / t / 1e6);
    vb2_repo_close(r);
    vb_rm_rf_at(AT_FDCWD, dir);
    vb_rm_rf_at(AT_FDCWD, cache);
    g_free(dir);
    g_free(cache);
    free(id1);
    free(id2);
    free(id3);
    g_free(disk.off);
    g_free(disk.len);
    g_free(files.off);
    g_free(files.len);
    vb_secret_wipe(&s);
}

static double cpu_limit_disk, cpu_limit_files;   /* least CPU seconds of the limit */

static void print_rates(enum vb_aead aead, const struct rates *b, double limit_disk,
                        double limit_files, size_t nchunks)
{
    const char *a = vb_aead_name(aead);

    printf("| %s | first disk backup (4 MiB chunks) | %.0f MB/s | %.0f %% of the limit's rate; "
           "CPU %.2f s, the limit's is %.0f %% of it |\n", a, b->disk, 100 * b->disk / limit_disk,
           b->disk_cpu, 100 * cpu_limit_disk / b->disk_cpu);
    printf("| %s | first files backup (CDC 1 MiB) | %.0f MB/s | %.0f %% of the limit's rate; "
           "CPU %.2f s, the limit's is %.0f %% of it |\n", a, b->files,
           100 * b->files / limit_files, b->files_cpu, 100 * cpu_limit_files / b->files_cpu);
    printf("| %s | unchanged disk backup | %.0f MB/s | %" G_GUINT64_FORMAT " new blobs |\n", a,
           b->unchanged, b->new_blobs);
    printf("| %s | restore (4 read threads, cold index cache) | %.0f MB/s | %" G_GUINT64_FORMAT
           " range gets for %zu chunks |\n", a, b->restore, b->ranges, nchunks);
}

/* The gc of gc_bench, in its own process: bench --gc DIR CACHE N. */
static int gc_only(char *dir, char *cache, const char *n)
{
    struct vb_secret s = secret();
    struct vb2_open_opts oo = { .secret = &s, .cache_dir = cache };
    struct vb2_repo *r;
    struct vb2_gc_report rep;
    long rss0;
    double t;
    vb_error e = { 0 };

    if (vb2_repo_open(dir, &oo, &r, &e))
        die("open", &e);
    rss0 = status_kb("VmRSS:");
    t = now();
    if (vb2_gc(r, NULL, &rep, &e))
        die("gc", &e);
    printf("| gc | %s chunks, half garbage: %" G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT
           " packs deleted, %" G_GUINT64_FORMAT " repacked | %.1f s | peak RSS %ld MiB (%ld "
           "after the open); after: anonymous %ld MiB, mapped files %ld MiB; Bloom %zu KiB |\n",
           n, rep.packs_deleted, rep.packs, rep.packs_repacked, now() - t,
           status_kb("VmHWM:") / 1024, rss0 / 1024, status_kb("RssAnon:") / 1024,
           status_kb("RssFile:") / 1024, rep.bloom_bytes / 1024);
    vb2_repo_close(r);
    vb_secret_wipe(&s);
    return 0;
}

/* ---- gc on many tiny chunks ----------------------------------------------------------------- */

static void gc_bench(uint64_t n)
{
    struct vb2_create_opts co = { .encryption = VB_AEAD_AES256GCM };
    struct vb_secret s = secret();
    static const struct vb_kdf_params kdf = { 1u << 14, 1, 1 };
    char *dir = g_dir_make_tmp("vb-bench-gc-XXXXXX", NULL), *cache = g_strconcat(dir, ".cache",
                                                                                 NULL);
    struct vb2_open_opts oo = { .secret = &s, .cache_dir = cache };
    struct vb2_repo *r;
    struct vb_codec codec;
    char *ids[2];
    double t;
    vb_error e = { 0 };

    co.secret = &s;
    co.kdf = &kdf;
    if (vb2_repo_create(dir, &co, &e) || vb2_repo_open(dir, &oo, &r, &e))
        die("create", &e);
    vb_codec_init(&codec, 1);
    t = now();
    for (int snap = 0; snap < 2; snap++) {
        struct vb2_write_opts wo = { .vm = snap ? "b" : "a" };
        struct vb2_write *w;
        struct vb_manifest *m = vb_manifest_new();
        uint8_t *list = g_malloc(n / 2 * 32 + 32), chunk[64];
        if (vb2_write_begin(r, &wo, &w, &e))
            die("begin", &e);
        for (uint64_t i = 0; i < n / 2; i++) {
            uint64_t x = (uint64_t)snap * n + i;
            memset(chunk, 0, sizeof(chunk));
            memcpy(chunk, &x, sizeof(x));
            if (vb2_write_put(w, &codec, VB_BLOB_DATA, chunk, sizeof(chunk), list + 32 * i, NULL,
                              &e) < 0)
                die("put", &e);
        }
        m->type = VB_MF_DISK;
        m->disk.chunk_size = 4096;
        m->disk.size = n / 2 * 4096;
        m->disk.chunk_count = n / 2;
        if (vb2_write_stream(w, &codec, list, n / 2 * 32, &m->chunks, &e) ||
            vb2_write_commit(w, m, &ids[snap], &e))
            die("commit", &e);
        vb2_write_unref(w);
        vb_manifest_free(m);
        g_free(list);
    }
    printf("| gc | %" G_GUINT64_FORMAT " chunks written in two snapshots | %.1f s | |\n", n,
           now() - t);
    if (vb2_forget(r, ids[0], &e))
        die("forget", &e);
    vb2_repo_close(r);
    /* gc in a process of its own, with a cold cache: its peak is gc's */
    vb_rm_rf_at(AT_FDCWD, cache);
    fflush(stdout);
    {
        char count[32];
        gchar *argv[] = { (gchar *)"/proc/self/exe", (gchar *)"--gc", dir, cache, count, NULL };
        gint status;
        snprintf(count, sizeof(count), "%" G_GUINT64_FORMAT, n);
        if (getenv("VB_BENCH_KEEP"))
            ;                     /* run the gc by hand: bench --gc DIR CACHE N */
        else if (!g_spawn_sync(NULL, argv, NULL, G_SPAWN_CHILD_INHERITS_STDIN, NULL, NULL, NULL,
                               NULL, &status, NULL) || status)
            die("gc process", &e);
    }
    vb_codec_free(&codec);
    if (getenv("VB_BENCH_KEEP")) {
        printf("kept %s (cache %s)\n", dir, cache);
    } else {
        vb_rm_rf_at(AT_FDCWD, dir);
        vb_rm_rf_at(AT_FDCWD, cache);
    }
    free(ids[0]);
    free(ids[1]);
    g_free(dir);
    g_free(cache);
    vb_secret_wipe(&s);
}

int main(int argc, char **argv)
{
    const char *gc = getenv("VB_BENCH_GC_CHUNKS");
    struct vb_keys k;

    if (argc == 5 && !strcmp(argv[1], "--gc"))
        return gc_only(argv[2], argv[3], argv[4]);
    struct cut disk, files;
    struct job j = { .level = 3 };
    double t;
    vb_error e = { 0 };

    /* the sample: the files named, concatenated */
    for (int i = 1; i < argc; i++) {
        gchar *d;
        gsize n;
        if (!g_file_get_contents(argv[i], &d, &n, NULL))
            continue;
        data = realloc(data, data_len + n);
        memcpy(data + data_len, d, n);
        data_len += n;
        g_free(d);
    }
    if (!data_len) {
        fprintf(stderr, "repo2-bench: no sample (name files)\n");
        return 1;
    }
    threads = (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
    vb_keys_generate(&k, VB_AEAD_NONE, &e);
    cut_fixed(&disk, 4 * MIB);
    cut_cdc(&files, 1 * MIB);
    printf("%zu MiB of files, %u threads, zstd 3, 16 MiB packs, a local folder\n\n",
           data_len >> 20, threads);
    printf("| encryption | what | rate | note |\n|---|---|---|---|\n");
    j.k = &k;
    {
        const char *env = getenv("VB_BENCH_RUNS");
        int runs = env ? atoi(env) : 3;

        if (getenv("VB_BENCH_ONLY_GC"))
            runs = 0;
        double limit_disk = 0, limit_files = 0;
        struct rates none = { 0 }, aes = { 0 };

        j.c = &disk;
        run_threads(&j);          /* warm */
        /* every measure takes turns with the others; each keeps its best run */
        for (int run = 0; run < runs; run++) {
            j.c = &disk;
            t = run_threads(&j);
            best(&limit_disk, data_len / t / 1e6);
            least(&cpu_limit_disk, last_cpu);
            j.c = &files;
            t = run_threads(&j);
            best(&limit_files, data_len / t / 1e6);
            least(&cpu_limit_files, last_cpu);
            one_repo(VB_AEAD_NONE, &none);
            one_repo(VB_AEAD_AES256GCM, &aes);
        }
        if (runs) {
            printf("| - | limit: keyed id + zstd, 4 MiB chunks, no store | %.0f MB/s | "
                   "best of %d; CPU %.2f s |\n", limit_disk, runs, cpu_limit_disk);
            printf("| - | limit: keyed id + zstd, CDC 1 MiB chunks, no store | %.0f MB/s | "
                   "CPU %.2f s |\n", limit_files, cpu_limit_files);
            print_rates(VB_AEAD_NONE, &none, limit_disk, limit_files, disk.n);
            print_rates(VB_AEAD_AES256GCM, &aes, limit_disk, limit_files, disk.n);
        }
    }
    free(data);
    data = NULL;
    if (gc) {
        malloc_trim(0);
        gc_bench(strtoull(gc, NULL, 0));
    }
    return 0;
}
