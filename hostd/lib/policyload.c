/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Policy plugin loader and batches.
 *
 * Loading follows nbdkit's server/plugins.c: call the single entry point,
 * zero a local copy of the plugin struct and copy min(struct_size, sizeof)
 * into it, reject other API versions and missing required fields, create()
 * the instance, hand it every key=value with config() (a plugin without
 * config() takes no keys), then config_complete().
 *
 * Running a policy checks the plan before and after: a policy is trusted
 * code, but a broken plan must fail the batch with the policy's name, not
 * become a wild read in the executor.
 */
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "policyload.h"

struct vbd_policy {
    void *dl;
    struct vbp_plugin plugin;    /* our copy, zero past the plugin's struct_size */
    void *state;
    bool created;                /* create() succeeded, or there is none: destroy() due */
    char *path;
};

#define BATCH_MAGIC 0x76626174636821ull   /* "vbatch!" */
#define BATCH_MAX_NOTES 4096

struct file_key {
    uint64_t dev, ino;
};

struct batch_priv {
    struct vbp_batch b;          /* first: the public part */
    uint64_t magic;
    GPtrArray *arena;            /* g_free */
    GPtrArray *notes;            /* struct vbd_note * */
    uint32_t notes_dropped;
    GHashTable *file_ids;        /* struct file_key * → index + 1 */
    GArray *files;               /* struct vbp_file */
    GArray *jobs;                /* struct vbp_job */
    GHashTable *job_ids;         /* uint64_t * → index + 1 */
    GArray *reads;               /* struct vbp_read, while b.reads points into it */
};

static struct batch_priv *priv_of(struct vbp_batch *b)
{
    struct batch_priv *bp = (struct batch_priv *)b;

    g_assert(bp->magic == BATCH_MAGIC);
    return bp;
}

/* ------------------------------------------------------------------ */
/* Loading */

/* The fields a version 1 plugin must provide: up to and including optimize. */
#define VBD_PLUGIN_MIN_SIZE \
    (offsetof(struct vbp_plugin, optimize) + sizeof(((struct vbp_plugin *)0)->optimize))

static char *policy_file(const char *name_or_path, const char *plugin_dir, vb_error *e)
{
    if (!name_or_path || !*name_or_path) {
        vb_seterr(e, -EINVAL, "policy: empty name");
        return NULL;
    }
    if (strchr(name_or_path, '/'))
        return g_strdup(name_or_path);
    if (!vb_valid_name(name_or_path)) {
        vb_seterr(e, -EINVAL, "policy \"%s\": not a valid name (letters, digits, '.', '_', '-')",
                  name_or_path);
        return NULL;
    }
    if (!plugin_dir || !*plugin_dir) {
        vb_seterr(e, -EINVAL, "policy %s: no plugin folder configured (give a path instead)",
                  name_or_path);
        return NULL;
    }
    return g_strdup_printf("%s/%s%s", plugin_dir, name_or_path, VBD_POLICY_SUFFIX);
}

static gint cmp_strp(gconstpointer a, gconstpointer b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* "available in DIR: a, b, c" from the *.so files of dir. */
static char *available_policies(const char *dir)
{
    GDir *d = g_dir_open(dir, 0, NULL);
    GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
    const char *n;
    char *list, *ret;

    while (d && (n = g_dir_read_name(d)))
        if (g_str_has_suffix(n, VBD_POLICY_SUFFIX) && n[0] != '.')
            g_ptr_array_add(names, g_strndup(n, strlen(n) - strlen(VBD_POLICY_SUFFIX)));
    if (d)
        g_dir_close(d);
    if (names->len == 0) {
        g_ptr_array_free(names, TRUE);
        return g_strdup_printf("%s holds no policies", dir);
    }
    g_ptr_array_sort(names, cmp_strp);
    g_ptr_array_add(names, NULL);
    list = g_strjoinv(", ", (char **)names->pdata);
    ret = g_strdup_printf("available in %s: %s", dir, list);
    g_free(list);
    g_ptr_array_free(names, TRUE);
    return ret;
}

static int policy_configure(struct vbd_policy *p, char *const *kv, vb_error *e)
{
    char err[256];

    for (size_t i = 0; kv && kv[i]; i++) {
        const char *eq = strchr(kv[i], '=');
        char *key;
        int ret;

        if (!eq || eq == kv[i])
            return vb_seterr(e, -EINVAL, "policy %s (%s): expected key=value, got \"%s\"",
                             p->plugin.name, p->path, kv[i]);
        if (!p->plugin.config)
            return vb_seterr(e, -EINVAL, "policy %s (%s): plugin %s takes no configuration "
                             "(got key \"%.*s\")", p->plugin.name, p->path, p->plugin.name,
                             (int)(eq - kv[i]), kv[i]);
        key = g_strndup(kv[i], (gsize)(eq - kv[i]));
        err[0] = 0;
        ret = p->plugin.config(p->state, key, eq + 1, err, sizeof(err));
        err[sizeof(err) - 1] = 0;
        if (ret != 0) {
            ret = ret < 0 ? ret : -EINVAL;
            vb_seterr(e, ret, "policy %s (%s): %s=%s: %s", p->plugin.name, p->path, key,
                      eq + 1, err[0] ? err : strerror(-ret));
            g_free(key);
            return ret;
        }
        g_free(key);
    }
    if (p->plugin.config_complete) {
        int ret;

        err[0] = 0;
        ret = p->plugin.config_complete(p->state, err, sizeof(err));
        err[sizeof(err) - 1] = 0;
        if (ret != 0) {
            ret = ret < 0 ? ret : -EINVAL;
            return vb_seterr(e, ret, "policy %s (%s): configuration incomplete: %s",
                             p->plugin.name, p->path, err[0] ? err : strerror(-ret));
        }
    }
    return 0;
}

int vbd_policy_load(const char *name_or_path, const char *plugin_dir, char *const *kv,
                    struct vbd_policy **out, vb_error *e)
{
    const struct vbp_plugin *(*init)(void);
    const struct vbp_plugin *theirs;
    struct vbd_policy *p;
    uint32_t size;
    int ret;

    *out = NULL;
    p = g_new0(struct vbd_policy, 1);
    p->path = policy_file(name_or_path, plugin_dir, e);
    if (!p->path) {
        g_free(p);
        return e ? e->code : -EINVAL;
    }

    if (access(p->path, F_OK) < 0) {
        int err = errno;

        if (err == ENOENT && !strchr(name_or_path, '/')) {
            char *avail = available_policies(plugin_dir);

            ret = vb_seterr(e, -ENOENT, "policy plugin %s: no such file (policy \"%s\" "
                            "not found; %s)", p->path, name_or_path, avail);
            g_free(avail);
        } else {
            ret = vb_seterr(e, -err, "policy plugin %s: %s", p->path, strerror(err));
        }
        goto fail;
    }
    dlerror();
    p->dl = dlopen(p->path, RTLD_NOW | RTLD_LOCAL);
    if (!p->dl) {
        const char *why = dlerror();

        ret = vb_seterr(e, -ENOEXEC, "policy plugin %s: cannot load: %s", p->path,
                        why ? why : "dlopen failed");
        goto fail;
    }
    dlerror();
    *(void **)&init = dlsym(p->dl, VBP_ENTRY_POINT);
    if (!init) {
        ret = vb_seterr(e, -EINVAL, "policy plugin %s: no entry point %s() "
                        "(is it a vbackup policy built with VBP_REGISTER?)",
                        p->path, VBP_ENTRY_POINT);
        goto fail;
    }
    theirs = init();
    if (!theirs) {
        ret = vb_seterr(e, -EINVAL, "policy plugin %s: %s() returned NULL", p->path,
                        VBP_ENTRY_POINT);
        goto fail;
    }
    /* struct_size and api_version come first in every version of the struct */
    size = theirs->struct_size;
    if (size < offsetof(struct vbp_plugin, name)) {
        ret = vb_seterr(e, -EINVAL, "policy plugin %s: struct_size %u is too small "
                        "(not even the header)", p->path, size);
        goto fail;
    }
    if (theirs->api_version != VBP_API_VERSION) {
        ret = vb_seterr(e, -ENOTSUP, "policy plugin %s: API version %u, but vbackupd "
                        "speaks version %u (rebuild the plugin against this "
                        "vbackup/policy.h)", p->path, theirs->api_version, VBP_API_VERSION);
        goto fail;
    }
    if (size < VBD_PLUGIN_MIN_SIZE) {
        ret = vb_seterr(e, -EINVAL, "policy plugin %s: struct_size %u is too small "
                        "(API version %u needs at least %zu bytes)", p->path, size,
                        VBP_API_VERSION, (size_t)VBD_PLUGIN_MIN_SIZE);
        goto fail;
    }
    memset(&p->plugin, 0, sizeof(p->plugin));
    memcpy(&p->plugin, theirs, VB_MIN((size_t)size, sizeof(p->plugin)));

    if (!p->plugin.name || !*p->plugin.name) {
        ret = vb_seterr(e, -EINVAL, "policy plugin %s: the plugin has no name", p->path);
        goto fail;
    }
    if (!vb_valid_name(p->plugin.name)) {
        ret = vb_seterr(e, -EINVAL, "policy plugin %s: invalid plugin name \"%.64s\"",
                        p->path, p->plugin.name);
        goto fail;
    }
    if (!p->plugin.optimize) {
        ret = vb_seterr(e, -EINVAL, "policy plugin %s (%s): the plugin has no optimize "
                        "callback", p->path, p->plugin.name);
        goto fail;
    }
    if (p->plugin.create) {
        p->state = p->plugin.create();
        if (!p->state) {
            ret = vb_seterr(e, -ENOMEM, "policy %s (%s): create() failed", p->plugin.name,
                            p->path);
            goto fail;
        }
    }
    p->created = true;
    ret = policy_configure(p, kv, e);
    if (ret < 0)
        goto fail;
    *out = p;
    return 0;

fail:
    vbd_policy_free(p);
    return ret;
}

const char *vbd_policy_name(const struct vbd_policy *p)
{
    return p->plugin.name;
}

const char *vbd_policy_description(const struct vbd_policy *p)
{
    return p->plugin.description ? p->plugin.description : "";
}

const char *vbd_policy_path(const struct vbd_policy *p)
{
    return p->path;
}

void vbd_policy_free(struct vbd_policy *p)
{
    if (!p)
        return;
    if (p->created && p->plugin.destroy)
        p->plugin.destroy(p->state);
    if (p->dl)
        dlclose(p->dl);
    g_free(p->path);
    g_free(p);
}

/* ------------------------------------------------------------------ */
/* Running, and the plan check */

/* What the consumers want, as a multiset digest: count, bytes, two sums of hashes. */
struct want_digest {
    uint64_t count, bytes, h1, h2;
};

static uint64_t mix64(uint64_t x)
{
    /* splitmix64's finaliser */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

static void digest_add(struct want_digest *d, uint64_t job, uint64_t token, uint64_t file,
                       uint64_t off, uint64_t len)
{
    uint64_t h = mix64(job + 0x9e3779b97f4a7c15ull);

    h = mix64(h ^ token);
    h = mix64(h ^ file);
    h = mix64(h ^ off);
    h = mix64(h ^ len);
    d->count++;
    d->bytes += len;
    d->h1 += h;
    d->h2 += mix64(h ^ 0x5851f42d4c957f2dull);
}

static const char *fpath(const struct vbp_batch *b, uint32_t file)
{
    return b->files[file].path ? b->files[file].path : "?";
}

static int check_plan(const struct vbp_batch *b, GHashTable *jobs, struct want_digest *d,
                      char *msg, size_t msg_len)
{
    memset(d, 0, sizeof(*d));
    if (b->n_reads && !b->reads) {
        snprintf(msg, msg_len, "%u reads but no read array", b->n_reads);
        return -EPROTO;
    }
    for (uint32_t i = 0; i < b->n_reads; i++) {
        const struct vbp_read *r = &b->reads[i];

        if (r->file >= b->n_files) {
            snprintf(msg, msg_len, "read %u: file index %u, but the batch has %u files",
                     i, r->file, b->n_files);
            return -EPROTO;
        }
        if (r->length == 0) {
            snprintf(msg, msg_len, "read %u (%s at %llu): length 0", i, fpath(b, r->file),
                     (unsigned long long)r->offset);
            return -EPROTO;
        }
        if (r->offset + r->length < r->offset) {
            snprintf(msg, msg_len, "read %u (%s): offset %llu + length %llu overflows", i,
                     fpath(b, r->file), (unsigned long long)r->offset,
                     (unsigned long long)r->length);
            return -EPROTO;
        }
        if (r->n_consumers == 0 || !r->consumers) {
            snprintf(msg, msg_len, "read %u (%s at %llu, %llu bytes): no consumers", i,
                     fpath(b, r->file), (unsigned long long)r->offset,
                     (unsigned long long)r->length);
            return -EPROTO;
        }
        for (uint32_t j = 0; j < r->n_consumers; j++) {
            const struct vbp_consumer *c = &r->consumers[j];

            if (c->length == 0 || c->offset > r->length || c->length > r->length - c->offset) {
                snprintf(msg, msg_len, "read %u (%s at %llu, %llu bytes): consumer %u "
                         "(job %llu) wants %llu bytes at %llu, %s", i, fpath(b, r->file),
                         (unsigned long long)r->offset, (unsigned long long)r->length, j,
                         (unsigned long long)c->job, (unsigned long long)c->length,
                         (unsigned long long)c->offset,
                         c->length == 0 ? "an empty range" : "outside the read");
                return -EPROTO;
            }
            if (!g_hash_table_contains(jobs, &c->job)) {
                snprintf(msg, msg_len, "read %u (%s at %llu): consumer %u belongs to job "
                         "%llu, which is not in the batch", i, fpath(b, r->file),
                         (unsigned long long)r->offset, j, (unsigned long long)c->job);
                return -EPROTO;
            }
            digest_add(d, c->job, c->token, r->file, r->offset + c->offset, c->length);
        }
    }
    return 0;
}

static void fmt_digest(const struct want_digest *d, char *buf, size_t len)
{
    char bytes[32];

    snprintf(buf, len, "%llu consumers wanting %s", (unsigned long long)d->count,
             vb_fmt_bytes(d->bytes, bytes, sizeof(bytes)));
}

/* What a policy may change, copied before it runs, to undo a failed run. */
struct batch_save {
    struct vbp_job *jobs_ptr, *jobs;
    uint32_t n_jobs, n_files, n_reads;
    const struct vbp_file *files;
    struct vbp_read *reads;
    struct vbp_consumer *cons;
    uint64_t n_cons, rate_limit_bps;
    guint n_notes;
};

static void batch_save(struct vbp_batch *b, struct batch_save *s)
{
    uint64_t pos = 0;

    s->jobs_ptr = b->jobs;
    s->n_jobs = b->n_jobs;
    s->jobs = g_memdup2(b->jobs, sizeof(*b->jobs) * b->n_jobs);
    s->files = b->files;
    s->n_files = b->n_files;
    s->rate_limit_bps = b->rate_limit_bps;
    s->n_notes = vbd_batch_notes(b)->len;
    s->n_reads = b->n_reads;
    s->reads = g_memdup2(b->reads, sizeof(*b->reads) * b->n_reads);
    s->n_cons = 0;
    for (uint32_t i = 0; i < b->n_reads; i++)
        s->n_cons += b->reads[i].n_consumers;
    s->cons = g_new(struct vbp_consumer, s->n_cons ? s->n_cons : 1);
    for (uint32_t i = 0; i < b->n_reads; i++) {
        memcpy(&s->cons[pos], b->reads[i].consumers,
               sizeof(*s->cons) * b->reads[i].n_consumers);
        pos += b->reads[i].n_consumers;
    }
}

/* Put the batch back as it was; the copy of the plan moves into the arena. */
static void batch_restore(struct vbp_batch *b, struct batch_save *s)
{
    struct vbp_read *reads = b->alloc(b, sizeof(*reads) * (s->n_reads ? s->n_reads : 1));
    struct vbp_consumer *cons = b->alloc(b, sizeof(*cons) * (s->n_cons ? s->n_cons : 1));
    GPtrArray *notes = vbd_batch_notes(b);
    uint64_t pos = 0;

    if (!reads || !cons)
        g_error("out of memory");
    b->jobs = s->jobs_ptr;
    b->n_jobs = s->n_jobs;
    if (s->n_jobs)
        memcpy(b->jobs, s->jobs, sizeof(*b->jobs) * s->n_jobs);
    b->files = s->files;
    b->n_files = s->n_files;
    b->rate_limit_bps = s->rate_limit_bps;
    if (notes->len > s->n_notes)
        g_ptr_array_set_size(notes, s->n_notes);
    if (s->n_cons)
        memcpy(cons, s->cons, sizeof(*cons) * s->n_cons);
    for (uint32_t i = 0; i < s->n_reads; i++) {
        reads[i] = s->reads[i];
        reads[i].consumers = &cons[pos];
        pos += reads[i].n_consumers;
    }
    b->reads = reads;
    b->n_reads = s->n_reads;
}

static void batch_save_free(struct batch_save *s)
{
    g_free(s->jobs);
    g_free(s->reads);
    g_free(s->cons);
}

int vbd_policy_run(struct vbd_policy *p, struct vbp_batch *b, vb_error *e)
{
    struct batch_save save = { 0 };
    bool saved = false;
    const char *name = p->plugin.name;
    GHashTable *jobs = g_hash_table_new(g_int64_hash, g_int64_equal);
    uint64_t *ids = g_new(uint64_t, b->n_jobs ? b->n_jobs : 1);
    const struct vbp_job *jobs_before = b->jobs;
    const struct vbp_file *files_before = b->files;
    uint32_t n_jobs = b->n_jobs, n_files = b->n_files;
    struct want_digest before, after;
    char msg[400];
    int ret;

    for (uint32_t i = 0; i < b->n_jobs; i++) {
        ids[i] = b->jobs[i].id;
        g_hash_table_add(jobs, &ids[i]);
    }
    ret = check_plan(b, jobs, &before, msg, sizeof(msg));
    if (ret < 0) {
        vb_seterr(e, ret, "the plan handed to policy %s is broken: %s", name, msg);
        goto out;
    }

    batch_save(b, &save);
    saved = true;
    ret = p->plugin.optimize(p->state, b);
    if (ret != 0) {
        ret = ret < 0 ? ret : -EIO;
        vb_seterr(e, ret, "policy %s: optimize failed: %s", name, strerror(-ret));
        goto out;
    }

    ret = -EPROTO;
    if (b->jobs != jobs_before || b->n_jobs != n_jobs || b->files != files_before ||
        b->n_files != n_files) {
        vb_seterr(e, ret, "policy %s replaced the batch's jobs or files (policies may "
                  "change only the reads, the jobs' defer fields and the rate limit)", name);
        goto out;
    }
    for (uint32_t i = 0; i < b->n_jobs; i++) {
        b->jobs[i].defer_reason[sizeof(b->jobs[i].defer_reason) - 1] = 0;
        if (b->jobs[i].id != ids[i]) {
            vb_seterr(e, ret, "policy %s changed the id of job %llu", name,
                      (unsigned long long)ids[i]);
            goto out;
        }
    }
    ret = check_plan(b, jobs, &after, msg, sizeof(msg));
    if (ret < 0) {
        vb_seterr(e, ret, "policy %s left a broken plan: %s", name, msg);
        goto out;
    }
    if (memcmp(&before, &after, sizeof(before)) != 0) {
        char in[96], outs[96];

        fmt_digest(&before, in, sizeof(in));
        fmt_digest(&after, outs, sizeof(outs));
        ret = vb_seterr(e, -EPROTO, "policy %s changed what the jobs want: %s went in, %s "
                        "came out (a policy may move consumers between reads, but each must "
                        "keep its job, token, file bytes and length)", name, in, outs);
        goto out;
    }
    ret = 0;
out:
    if (ret < 0 && saved)
        batch_restore(b, &save);       /* the daemon may skip the policy and go on */
    batch_save_free(&save);
    g_hash_table_destroy(jobs);
    g_free(ids);
    return ret;
}

/* ------------------------------------------------------------------ */
/* Batches */

static void *batch_alloc(struct vbp_batch *b, size_t size)
{
    struct batch_priv *bp = priv_of(b);
    void *m = g_try_malloc0(size ? size : 1);

    if (m)
        g_ptr_array_add(bp->arena, m);
    return m;
}

static char *arena_strdup(struct vbp_batch *b, const char *s)
{
    size_t n = strlen(s ? s : "") + 1;
    char *m = batch_alloc(b, n);

    if (!m)
        g_error("out of memory");
    memcpy(m, s ? s : "", n);
    return m;
}

static void note_free(gpointer p)
{
    struct vbd_note *n = p;

    g_free(n->policy);
    g_free(n->text);
    g_free(n);
}

static void batch_note(struct vbp_batch *b, const char *policy, uint64_t job,
                       const char *fmt, ...)
{
    struct batch_priv *bp = priv_of(b);
    struct vbd_note *n;
    va_list ap;

    if (bp->notes->len >= BATCH_MAX_NOTES) {
        bp->notes_dropped++;
        if (bp->notes_dropped == 1) {
            n = g_new0(struct vbd_note, 1);
            n->policy = g_strdup("vbackupd");
            n->text = g_strdup("further notes dropped (too many)");
            g_ptr_array_add(bp->notes, n);
        }
        return;
    }
    n = g_new0(struct vbd_note, 1);
    n->policy = g_strdup(policy ? policy : "?");
    n->job = job;
    va_start(ap, fmt);
    n->text = g_strdup_vprintf(fmt ? fmt : "", ap);
    va_end(ap);
    g_ptr_array_add(bp->notes, n);
}

static guint file_key_hash(gconstpointer k)
{
    const struct file_key *f = k;

    return (guint)mix64(f->dev * 0x9e3779b97f4a7c15ull ^ f->ino);
}

static gboolean file_key_equal(gconstpointer a, gconstpointer b)
{
    const struct file_key *x = a, *y = b;

    return x->dev == y->dev && x->ino == y->ino;
}

struct vbp_batch *vbd_batch_new(uint64_t id)
{
    struct batch_priv *bp = g_new0(struct batch_priv, 1);

    bp->magic = BATCH_MAGIC;
    bp->arena = g_ptr_array_new_with_free_func(g_free);
    bp->notes = g_ptr_array_new_with_free_func(note_free);
    bp->file_ids = g_hash_table_new_full(file_key_hash, file_key_equal, g_free, NULL);
    bp->files = g_array_new(FALSE, TRUE, sizeof(struct vbp_file));
    bp->jobs = g_array_new(FALSE, TRUE, sizeof(struct vbp_job));
    bp->job_ids = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL);
    bp->reads = g_array_new(FALSE, TRUE, sizeof(struct vbp_read));
    bp->b.id = id;
    bp->b.max_read_bytes = 4u << 20;
    bp->b.alloc = batch_alloc;
    bp->b.note = batch_note;
    return &bp->b;
}

void vbd_batch_free(struct vbp_batch *b)
{
    struct batch_priv *bp;

    if (!b)
        return;
    bp = priv_of(b);
    g_ptr_array_free(bp->arena, TRUE);
    g_ptr_array_free(bp->notes, TRUE);
    g_hash_table_destroy(bp->file_ids);
    g_array_free(bp->files, TRUE);
    g_array_free(bp->jobs, TRUE);
    g_hash_table_destroy(bp->job_ids);
    g_array_free(bp->reads, TRUE);
    bp->magic = 0;
    g_free(bp);
}

GPtrArray *vbd_batch_notes(struct vbp_batch *b)
{
    return priv_of(b)->notes;
}

uint32_t vbd_batch_add_file(struct vbp_batch *b, const char *path, uint64_t dev,
                            uint64_t ino, uint64_t size)
{
    struct batch_priv *bp = priv_of(b);
    struct file_key key = { dev, ino }, *k;
    struct vbp_file f;
    gpointer idx;

    idx = g_hash_table_lookup(bp->file_ids, &key);
    if (idx)
        return (uint32_t)(GPOINTER_TO_SIZE(idx) - 1);
    g_assert(bp->files->len < UINT32_MAX - 1);
    f.path = arena_strdup(b, path);
    f.dev = dev;
    f.ino = ino;
    f.size = size;
    g_array_append_val(bp->files, f);
    k = g_memdup2(&key, sizeof(key));
    g_hash_table_insert(bp->file_ids, k, GSIZE_TO_POINTER((gsize)bp->files->len));
    b->files = (const struct vbp_file *)(void *)bp->files->data;
    b->n_files = bp->files->len;
    return b->n_files - 1;
}

struct vbp_job *vbd_batch_add_job(struct vbp_batch *b, uint64_t id, const char *vm,
                                  uint32_t kind, uint32_t mode)
{
    struct batch_priv *bp = priv_of(b);
    struct vbp_job j;

    memset(&j, 0, sizeof(j));
    j.id = id;
    j.vm = arena_strdup(b, vm);
    j.kind = kind;
    j.mode = mode;
    g_array_append_val(bp->jobs, j);
    g_hash_table_insert(bp->job_ids, g_memdup2(&id, sizeof(id)),
                        GSIZE_TO_POINTER((gsize)bp->jobs->len));
    b->jobs = (struct vbp_job *)(void *)bp->jobs->data;
    b->n_jobs = bp->jobs->len;
    return &b->jobs[b->n_jobs - 1];
}

/* Make bp->reads hold the current plan, whoever built it. */
static void sync_reads(struct batch_priv *bp)
{
    struct vbp_batch *b = &bp->b;
    GArray *a;

    if (b->reads == (struct vbp_read *)(void *)bp->reads->data && b->n_reads <= bp->reads->len) {
        g_array_set_size(bp->reads, b->n_reads);
        return;
    }
    /* a policy replaced the array (arena memory): continue in a copy */
    a = g_array_sized_new(FALSE, TRUE, sizeof(struct vbp_read), b->n_reads + 16);
    if (b->n_reads)
        g_array_append_vals(a, b->reads, b->n_reads);
    g_array_free(bp->reads, TRUE);
    bp->reads = a;
}

void vbd_batch_add_read(struct vbp_batch *b, uint32_t file, uint64_t off, uint64_t len,
                        uint32_t flags, uint64_t job, uint64_t token)
{
    struct batch_priv *bp = priv_of(b);
    struct vbp_consumer *c = batch_alloc(b, sizeof(*c));
    struct vbp_read r;
    gsize idx;

    if (!c)
        g_error("out of memory");
    sync_reads(bp);
    c->job = job;
    c->token = token;
    c->offset = 0;
    c->length = len;
    memset(&r, 0, sizeof(r));
    r.file = file;
    r.flags = flags;
    r.offset = off;
    r.length = len;
    r.n_consumers = 1;
    r.consumers = c;
    g_array_append_val(bp->reads, r);
    b->reads = (struct vbp_read *)(void *)bp->reads->data;
    b->n_reads = bp->reads->len;
    idx = GPOINTER_TO_SIZE(g_hash_table_lookup(bp->job_ids, &job));
    if (idx && idx <= b->n_jobs && b->jobs[idx - 1].id == job)
        b->jobs[idx - 1].bytes += len;
}

uint64_t vbd_batch_strip_deferred(struct vbp_batch *b)
{
    GHashTable *deferred = g_hash_table_new(g_int64_hash, g_int64_equal);
    int64_t now = b->load.now_ns;
    uint64_t removed = 0;
    uint32_t out = 0;

    for (uint32_t i = 0; i < b->n_jobs; i++)
        if (b->jobs[i].defer_until_ns > now)
            g_hash_table_add(deferred, &b->jobs[i].id);
    if (g_hash_table_size(deferred) == 0) {
        g_hash_table_destroy(deferred);
        return 0;
    }
    for (uint32_t i = 0; i < b->n_reads; i++) {
        struct vbp_read r = b->reads[i];
        uint64_t lo = UINT64_MAX, hi = 0;
        uint32_t kept = 0;

        for (uint32_t j = 0; j < r.n_consumers; j++) {
            struct vbp_consumer c = r.consumers[j];

            if (g_hash_table_contains(deferred, &c.job))
                continue;
            lo = VB_MIN(lo, c.offset);
            hi = VB_MAX(hi, c.offset + c.length);
            r.consumers[kept++] = c;
        }
        if (kept == 0) {
            removed += r.length;
            continue;
        }
        /* trim the read to what its remaining consumers want */
        if (lo > 0 || hi < r.length) {
            for (uint32_t j = 0; j < kept; j++)
                r.consumers[j].offset -= lo;
            removed += r.length - (hi - lo);
            r.offset += lo;
            r.length = hi - lo;
        }
        r.n_consumers = kept;
        b->reads[out++] = r;
    }
    b->n_reads = out;
    g_hash_table_destroy(deferred);
    return removed;
}

uint64_t vbd_batch_read_bytes(const struct vbp_batch *b)
{
    uint64_t n = 0;

    for (uint32_t i = 0; i < b->n_reads; i++)
        n += b->reads[i].length;
    return n;
}

uint64_t vbd_batch_wanted_bytes(const struct vbp_batch *b)
{
    uint64_t n = 0;

    for (uint32_t i = 0; i < b->n_reads; i++)
        for (uint32_t j = 0; j < b->reads[i].n_consumers; j++)
            n += b->reads[i].consumers[j].length;
    return n;
}
