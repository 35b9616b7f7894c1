/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A file backup from any source (the guest's file systems or an image):
 *
 *   HELLO, BEGIN -> job; freeze; walk: FILES records; fallback DATA; SEAL;
 *   thaw (view SNAPSHOT at once, view FROZEN when STATUS says READ_DONE);
 *   STATUS every 0.5 s until the job ends; summary; snapshot id.
 *
 * and --dump, which makes the same records but writes them as JSON lines
 * instead of sending them.
 */
#include "vbc.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

bool vbc_excluded(const struct vbc_backup_opts *o, const char *abspath, const char *name)
{
    for (size_t i = 0; i < o->n_exclude; i++)
        if (fnmatch(o->exclude[i], abspath, 0) == 0 || fnmatch(o->exclude[i], name, 0) == 0)
            return true;
    return false;
}

bool vbc_force_fallback(const struct vbc_backup_opts *o, const char *abspath, const char *name)
{
    if (o->fallback_all)
        return true;
    for (size_t i = 0; i < o->n_fallback_glob; i++)
        if (fnmatch(o->fallback_glob[i], abspath, 0) == 0 ||
            fnmatch(o->fallback_glob[i], name, 0) == 0)
            return true;
    return false;
}

/*
 * Hard links.  The host groups the records of a hard-linked file by (disk,
 * ino); nothing in a record names its file system, so two file systems with
 * the same inode number (two partitions of one disk, or file systems on no
 * disk, which all say disk 0) would make two files one.  Within a job, a
 * (disk, ino) pair names one file: a second file that would collide gets an
 * ino of its own above 2^62 (it is then read again by the next incremental
 * backup, nothing worse).
 */
struct linkent {
    uint64_t a, b;               /* key */
    uint64_t v;                  /* value */
    bool used;
};

struct linktab {
    struct linkent *e;
    size_t cap, n;
};

static uint64_t mix(uint64_t a, uint64_t b)
{
    uint64_t h = a * 0x9e3779b97f4a7c15ull ^ (b + 0x632be59bd9b4e019ull);

    h ^= h >> 31;
    h *= 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 29);
}

static struct linkent *lt_find(struct linktab *t, uint64_t a, uint64_t b)
{
    if (!t->cap)
        return NULL;
    for (size_t i = mix(a, b) & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
        if (!t->e[i].used)
            return NULL;
        if (t->e[i].a == a && t->e[i].b == b)
            return &t->e[i];
    }
}

static int lt_put(struct linktab *t, uint64_t a, uint64_t b, uint64_t v)
{
    if ((t->n + 1) * 2 > t->cap) {
        struct linktab nt = { NULL, t->cap ? t->cap * 2 : 256, 0 };

        nt.e = calloc(nt.cap, sizeof(*nt.e));
        if (!nt.e)
            return -ENOMEM;
        for (size_t i = 0; i < t->cap; i++)
            if (t->e[i].used)
                lt_put(&nt, t->e[i].a, t->e[i].b, t->e[i].v);
        free(t->e);
        *t = nt;
    }
    for (size_t i = mix(a, b) & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
        if (!t->e[i].used) {
            t->e[i] = (struct linkent){ a, b, v, true };
            t->n++;
            return 0;
        }
    }
}

struct bctx {
    struct vbc_backup_opts *o;
    const struct vbc_source_ops *ops;
    void *src;
    struct vbc_conn *c;
    struct vbc_files files;
    FILE *dump;                  /* --dump: memory stream */
    struct vbc_fb *fbs;
    size_t n_fb, cap_fb;
    uint64_t n_entries, bytes, fb_bytes;
    uint8_t *buf;                /* --dump: fallback read buffer */
    struct vbc_progress prog;
    int64_t last_shown;
    struct linktab by_sent;      /* (disk, ino sent) -> fsid */
    struct linktab by_file;      /* (fsid, real ino) -> ino sent */
    uint64_t next_ino;
    bool mapped;                 /* the host mapped the files of the job */
};

/* The ino to send for a hard-linked file (see above). */
static int link_ino(struct bctx *b, const struct vbc_file *f, uint64_t *ino)
{
    uint64_t disk = (uint64_t)(f->disk < 0 ? 0 : f->disk);
    struct linkent *x = lt_find(&b->by_file, f->fsid, f->ino);

    *ino = f->ino;
    if (f->type == VB_FT_DIR || f->nlink < 2)
        return 0;
    if (x) {
        *ino = x->v;
        return 0;
    }
    x = lt_find(&b->by_sent, disk, f->ino);
    if (x && x->v != f->fsid)
        *ino = (1ull << 62) + b->next_ino++;
    if ((!x || x->v != f->fsid) && lt_put(&b->by_sent, disk, *ino, f->fsid) < 0)
        return -ENOMEM;
    return lt_put(&b->by_file, f->fsid, f->ino, *ino);
}

static int check_freeze(struct bctx *b, struct vbc_err *e)
{
    if (b->ops->freeze_broken && b->ops->freeze_broken(b->src, e))
        return e->code ? e->code : -ETIMEDOUT;
    if (vbc_interrupted)
        return vbc_seterr(e, -EINTR, "interrupted by signal %d", (int)vbc_interrupted);
    return 0;
}

/* Read a fallback file's SIZE bytes, piece by piece, zero-padding a file
 * that shrank (only possible without a freeze). */
static int read_piece(struct bctx *b, void *h, const struct vbc_fb *fb, uint64_t off,
                      uint8_t *buf, size_t want, bool *short_file, struct vbc_err *e)
{
    size_t have = 0;

    while (have < want && !*short_file) {
        size_t got = 0;
        int rc = b->ops->read_data(b->src, h, off + have, buf + have, want - have, &got, e);

        if (rc)
            return rc;
        if (got == 0)
            *short_file = true;
        have += got;
    }
    if (have < want)
        memset(buf + have, 0, want - have);
    (void)fb;
    return 0;
}

static int dump_hash(struct bctx *b, const struct vbc_fb *fb, char hex[65], struct vbc_err *e)
{
    struct vbc_sha256 s;
    bool shrank = false;
    void *h = NULL;
    int rc;

    vbc_sha256_init(&s);
    if ((rc = b->ops->open_data(b->src, fb, &h, e)))
        return rc;
    for (uint64_t off = 0; off < fb->size;) {
        size_t want = fb->size - off < (1u << 20) ? (size_t)(fb->size - off) : (1u << 20);

        if ((rc = read_piece(b, h, fb, off, b->buf, want, &shrank, e)))
            break;
        vbc_sha256_update(&s, b->buf, want);
        off += want;
    }
    b->ops->close_data(b->src, h);
    if (rc)
        return rc;
    if (shrank)
        vbc_warn("%s shrank while being read; padded with zeros", fb->path ? fb->path : "file");
    vbc_sha256_hex(&s, hex);
    return 0;
}

static int emit(void *ctx, const struct vbc_file *f0, const struct vbc_fb *fb, struct vbc_err *e)
{
    struct bctx *b = ctx;
    struct vbc_file fl = *f0, *f = &fl;
    int rc;

    if ((rc = check_freeze(b, e)))
        return rc;
    if (link_ino(b, f0, &fl.ino) < 0)
        return vbc_seterr(e, -ENOMEM, "out of memory");
    b->n_entries++;
    if (f->type == VB_FT_REG)
        b->bytes += f->size;
    if (b->dump) {
        char hex[65];
        const char *serial = f->disk >= 0 && (size_t)f->disk < b->o->n_serials
                                 ? b->o->serials[f->disk] : NULL;

        if (f->data == VB_FD_FALLBACK) {
            if ((rc = dump_hash(b, fb, hex, e)))
                return rc;
        }
        vbc_dump_record(b->dump, f, serial, f->data == VB_FD_FALLBACK ? hex : NULL);
    } else {
        uint64_t index;

        if ((rc = vbc_files_add(&b->files, f, &index, e)))
            return rc;
        if (f->data == VB_FD_FALLBACK) {
            struct vbc_fb *x;

            if (b->n_fb == b->cap_fb) {
                size_t nc = b->cap_fb ? b->cap_fb * 2 : 256;
                struct vbc_fb *nv = realloc(b->fbs, nc * sizeof(*nv));

                if (!nv)
                    return vbc_seterr(e, -ENOMEM, "out of memory");
                b->fbs = nv;
                b->cap_fb = nc;
            }
            x = &b->fbs[b->n_fb++];
            *x = *fb;
            x->index = index;
            x->size = f->size;
            x->path = fb->path ? strdup(fb->path) : NULL;
            if (fb->path && !x->path)
                return vbc_seterr(e, -ENOMEM, "out of memory");
            b->fb_bytes += f->size;
        }
    }
    if (b->prog.on && (b->n_entries & 255) == 0) {
        char t[96];

        snprintf(t, sizeof(t), "mapping: %llu entries", (unsigned long long)b->n_entries);
        vbc_progress_text(&b->prog, t);
    }
    return 0;
}

static int send_data(struct bctx *b, uint64_t job, struct vbc_err *e)
{
    uint32_t piece = vbc_conn_limits(b->c)->max_payload - (uint32_t)sizeof(struct vb_data);
    struct vbc_msg m;
    struct vbc_reply r;
    uint64_t sent = 0;
    int rc = 0;

    if (!b->n_fb)
        return 0;
    vbc_data_msg(&m, piece);
    if (m.oom || vbc_reply_init(&r, 4096) < 0) {
        vbc_msg_free(&m);
        return vbc_seterr(e, -ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < b->n_fb && !rc; i++) {
        const struct vbc_fb *fb = &b->fbs[i];
        bool shrank = false;
        void *h = NULL;
        uint64_t off = 0;

        if ((rc = b->ops->open_data(b->src, fb, &h, e)))
            break;
        do {
            uint32_t want = fb->size - off < piece ? (uint32_t)(fb->size - off) : piece;
            bool last = off + want == fb->size;

            if ((rc = check_freeze(b, e)))
                break;
            if ((rc = read_piece(b, h, fb, off, vbc_data_buf(&m), want, &shrank, e)))
                break;
            if ((rc = vbc_data_send(b->c, &m, &r, job, fb->index, off, want, last, e))) {
                vbc_prefixerr(e, "sending the data of %s", fb->path ? fb->path : "a file");
                break;
            }
            off += want;
            sent += want;
            vbc_progress_show(&b->prog, "sending data:", sent, b->fb_bytes);
        } while (off < fb->size);
        b->ops->close_data(b->src, h);
        if (!rc && shrank)
            vbc_warn("%s shrank while being read; padded with zeros", fb->path ? fb->path : "file");
    }
    vbc_progress_clear(&b->prog);
    vbc_msg_free(&m);
    vbc_reply_free(&r);
    return rc;
}

/* The records of a job after BEGIN: walk the source (FILES), send the
 * fallback data (DATA) and what could not be backed up (PROBLEMS). */
static int send_records(struct bctx *b, uint64_t job, struct vbc_err *e)
{
    int rc;

    if ((rc = b->ops->walk(b->src, emit, b, e)))
        return rc;
    vbc_progress_clear(&b->prog);
    if ((rc = vbc_files_flush(&b->files, e)))
        return rc;
    if ((rc = send_data(b, job, e)))
        return rc;
    if (b->o->problems->n && (rc = vbc_problems_send(b->c, job, b->o->problems, e))) {
        vbc_prefixerr(e, "telling the host what could not be backed up");
        return rc;
    }
    return 0;
}

static void bctx_free(struct bctx *b)
{
    if (b->files.m.buf)
        vbc_files_free(&b->files);
    for (size_t i = 0; i < b->n_fb; i++)
        free(b->fbs[i].path);
    free(b->fbs);
    free(b->by_sent.e);
    free(b->by_file.e);
    b->fbs = NULL;
    b->n_fb = 0;
    b->by_sent.e = b->by_file.e = NULL;
}

int vbc_backup_stream(int fd, uint64_t job, struct vbc_backup_opts *o,
                      const struct vbc_source_ops *ops, void *src, struct vbc_err *e)
{
    struct vbc_problems problems;
    struct bctx b;
    int rc;

    memset(&b, 0, sizeof(b));
    memset(&problems, 0, sizeof(problems));
    b.o = o;
    b.ops = ops;
    b.src = src;
    o->problems = &problems;
    /* no progress line: b.prog stays off */
    rc = ops->prepare(src, o, e);
    if (!rc)
        rc = vbc_connect_stream(fd, &b.c, e);
    if (!rc)
        rc = vbc_files_init(&b.files, b.c, job, e);
    if (!rc)
        rc = send_records(&b, job, e);
    bctx_free(&b);
    vbc_disconnect(b.c);
    vbc_problems_free(&problems);
    o->problems = NULL;
    return rc;
}

/* Cancel a job that must not finish, even after a signal. */
static void cancel_job(struct vbc_conn *c, uint64_t job)
{
    sig_atomic_t sig = vbc_interrupted;
    struct vbc_err ce;

    vbc_interrupted = 0;
    if (vbc_cancel(c, job, &ce) && ce.code != VB_S_BAD_STATE && ce.code != VB_S_NO_JOB)
        vbc_warn("cancelling job %llu: %s", (unsigned long long)job, ce.msg);
    if (!vbc_interrupted)
        vbc_interrupted = sig;
}

static int find_job(struct vbc_conn *c, uint64_t job, struct vbc_job *out, struct vbc_err *e)
{
    struct vbc_job *v;
    size_t n;
    int rc = vbc_status(c, job, &v, &n, e);

    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++) {
        if (v[i].job == job) {
            *out = v[i];
            free(v);
            return 0;
        }
    }
    free(v);
    return vbc_seterr(e, VB_S_NO_JOB, "the host does not know job %llu",
                      (unsigned long long)job);
}

static bool finished(uint32_t state)
{
    return state == VB_JOB_DONE || state == VB_JOB_FAILED || state == VB_JOB_CANCELLED;
}

/* VB_VIEW_FROZEN: stay frozen until the host has read everything. */
static int wait_read_done(struct bctx *b, uint64_t job, struct vbc_err *e)
{
    for (;;) {
        struct vbc_job j;
        int rc;

        if ((rc = check_freeze(b, e)))
            return rc;
        if ((rc = find_job(b->c, job, &j, e)))
            return rc;
        if ((j.flags & VB_JOB_FLAG_READ_DONE) || finished(j.state))
            return 0;
        vbc_progress_show(&b->prog, "host reading (frozen):", j.bytes_done, j.bytes_total);
        vbc_sleep_ms(100);
    }
}

/* STATUS every 0.5 s until the job ends.  Returns 0 for DONE. */
static int wait_job(struct vbc_conn *c, uint64_t job, struct vbc_job *out, struct vbc_err *e)
{
    struct vbc_progress p;
    uint32_t last_state = 0;
    int rc;

    vbc_progress_init(&p);
    for (;;) {
        struct vbc_job j;

        if (vbc_interrupted) {
            vbc_progress_clear(&p);
            return vbc_seterr(e, -EINTR, "interrupted; job %llu goes on on the host (see "
                              "'%s status %llu', stop it with '%s cancel %llu')",
                              (unsigned long long)job, vbc_prog, (unsigned long long)job,
                              vbc_prog, (unsigned long long)job);
        }
        if ((rc = find_job(c, job, &j, e))) {
            vbc_progress_clear(&p);
            return rc;
        }
        if (j.state != last_state && !p.on && j.state == VB_JOB_DEFERRED && j.reason[0])
            vbc_info("job %llu deferred: %s", (unsigned long long)job, j.reason);
        last_state = j.state;
        if (finished(j.state)) {
            vbc_progress_clear(&p);
            *out = j;
            if (j.state == VB_JOB_DONE)
                return 0;
            if (j.state == VB_JOB_CANCELLED)
                return vbc_seterr(e, VB_S_CANCELLED, "%s",
                                  j.reason[0] ? j.reason : "the job was cancelled");
            return vbc_seterr(e, VB_S_JOB_FAILED, "%s",
                              j.reason[0] ? j.reason : "the host reports the job failed");
        }
        if (j.state == VB_JOB_DEFERRED) {
            char t[600];

            snprintf(t, sizeof(t), "deferred: %s", j.reason[0] ? j.reason : "waiting");
            vbc_progress_text(&p, t);
        } else if (j.state == VB_JOB_RUNNING) {
            vbc_progress_show(&p, "backing up:", j.bytes_done, j.bytes_total);
        } else if (j.state == VB_JOB_MAPPING) {
            char t[96];

            snprintf(t, sizeof(t), "the host maps the files: %llu",
                     (unsigned long long)j.files_total);
            vbc_progress_text(&p, t);
        } else {
            vbc_progress_text(&p, vbc_state_name(j.state));
        }
        vbc_sleep_ms(500);
    }
}

/* FROZEN_S < 0: nothing was frozen. */
static void summary(const struct vbc_job *j, uint64_t n_entries, double frozen_s, int64_t t0,
                    size_t problems, bool mapped)
{
    char tot[32], nw[32], re[32], dur[32];
    double secs = (double)(vbc_now_ns() - t0) / 1e9;

    vbc_human(tot, sizeof(tot), j->bytes_total);
    vbc_human(nw, sizeof(nw), j->bytes_new);
    vbc_human(re, sizeof(re), j->bytes_reused);
    vbc_duration(dur, sizeof(dur), secs);
    if (!vbc_quiet) {
        if (j->kind == VB_KIND_DISK)
            printf("backup done: disk, %s (new %s, reused %s) in %s", tot, nw, re, dur);
        else
            printf("backup done: %llu entries, %s (new %s, reused %s) in %s",
                   (unsigned long long)(j->files_total ? j->files_total : n_entries), tot, nw,
                   re, dur);
        if (frozen_s >= 0)
            printf("; file systems frozen for %.2f s", frozen_s);
        if (mapped)
            printf("; files mapped by the host");
        if (problems)
            printf("; incomplete: %zu problems (see above)", problems);
        printf("\n");
    }
    printf("%s\n", j->snapshot);
    fflush(stdout);
}

static int dump_run(struct bctx *b, struct vbc_err *e)
{
    char *mem = NULL;
    size_t memlen = 0;
    double frozen = -1;
    bool froze = false;
    FILE *out;
    int rc = 0;

    b->dump = open_memstream(&mem, &memlen);
    b->buf = malloc(1u << 20);
    if (!b->dump || !b->buf) {
        rc = vbc_seterr(e, -ENOMEM, "out of memory");
        goto out;
    }
    if (b->o->dump_freeze_ms && !b->o->no_freeze && b->ops->freeze) {
        if ((rc = b->ops->freeze(b->src, e)))
            goto out;
        froze = true;
    }
    rc = b->ops->walk(b->src, emit, b, e);
    vbc_progress_clear(&b->prog);
    if (!rc && froze) {
        int64_t until = vbc_now_ns() + (int64_t)b->o->dump_freeze_ms * 1000000;

        while (vbc_now_ns() < until && !(rc = check_freeze(b, e)))
            vbc_sleep_ms(10);
    }
    if (froze) {
        frozen = b->ops->thaw(b->src);
        if (b->ops->freeze_broken && b->ops->freeze_broken(b->src, e))
            rc = e->code ? e->code : -ETIMEDOUT;   /* the freeze's story is the one to tell */
    }
out:
    if (b->dump)
        fclose(b->dump);
    if (!rc) {
        bool to_stdout = strcmp(b->o->dump, "-") == 0;

        out = to_stdout ? stdout : fopen(b->o->dump, "w");
        if (!out || fwrite(mem, 1, memlen, out) != memlen || fflush(out) != 0)
            rc = vbc_seterr(e, -errno, "writing %s: %s", b->o->dump, strerror(errno));
        if (out && !to_stdout && fclose(out) != 0 && !rc)
            rc = vbc_seterr(e, -errno, "writing %s: %s", b->o->dump, strerror(errno));
        if (!rc && !vbc_quiet)
            fprintf(stderr, "%s: %llu entries written to %s\n", vbc_prog,
                    (unsigned long long)b->n_entries, b->o->dump);
        if (!rc && frozen >= 0 && !vbc_quiet)
            fprintf(stderr, "%s: file systems frozen for %.2f s\n", vbc_prog, frozen);
    }
    free(mem);
    free(b->buf);
    return rc;
}

/* Seal the job.  Under a freeze whose view the host reads (VB_VIEW_FROZEN),
 * hold the freeze until the host has read everything; then thaw.  On an error
 * *sealed is false again when the job must not finish (its view is gone). */
static int seal_and_thaw(struct bctx *b, uint64_t job, bool *froze, bool *sealed,
                         double *frozen, struct vbc_err *e)
{
    uint32_t view = 0;
    int rc;

    if ((rc = vbc_seal(b->c, job, &view, e))) {
        vbc_prefixerr(e, "sealing job %llu", (unsigned long long)job);
        return rc;
    }
    *sealed = true;
    if (!*froze)
        return 0;
    if (view == VB_VIEW_FROZEN && b->ops->is_frozen && b->ops->is_frozen(b->src)) {
        rc = wait_read_done(b, job, e);
        vbc_progress_clear(&b->prog);
        if (rc) {
            *sealed = false;
            return rc;
        }
    }
    *frozen = b->ops->thaw(b->src);
    *froze = false;
    if ((rc = check_freeze(b, e)))
        *sealed = false;
    return rc;
}

/*
 * One job: BEGIN, freeze, the records (unless the host maps them: MAP and the
 * host agrees), SEAL, thaw, and the job until it ends (*j, also when it
 * failed).  b->mapped says whether the host mapped.
 */
static int run_job(struct bctx *b, bool map, struct vbc_job *j, double *frozen,
                   struct vbc_err *e)
{
    struct vbc_backup_opts *o = b->o;
    const struct vbc_source_ops *ops = b->ops;
    struct vbc_begin begin;
    uint64_t job = 0;
    uint32_t features = 0;
    bool froze = false, sealed = false;
    int rc;

    b->mapped = false;
    memset(&begin, 0, sizeof(begin));
    begin.kind = VB_KIND_FILES;
    begin.mode = o->mode;
    /* no freeze held (--no-freeze, nothing to freeze, vbclient): the host
     * may let the job wait for a quiet moment */
    begin.flags = !o->no_freeze && o->will_freeze && ops->freeze ? 0 : VB_BEGIN_UNFROZEN;
    begin.target = o->target;
    begin.serials = (const char *const *)o->serials;
    begin.n_serials = o->n_serials;
    begin.roots = (const char *const *)o->roots_rel;
    begin.n_roots = o->n_roots;
    if (map) {
        begin.flags |= VB_BEGIN_HOST_MAP;
        begin.map = &o->map;
        begin.exclude = o->exclude;
        begin.n_exclude = o->n_exclude;
    }
    if ((rc = vbc_backup_begin(b->c, &begin, &job, &features, e)))
        return rc;
    /* the host maps the files in its view: the freeze lasts until it holds it */
    b->mapped = map && (features & VB_FEAT_HOST_MAPS);
    if (!b->mapped && (rc = vbc_files_init(&b->files, b->c, job, e)))
        goto fail_job;

    if (!o->no_freeze && ops->freeze) {
        if ((rc = ops->freeze(b->src, e)))
            goto fail_job;
        froze = true;
    }
    if (!b->mapped)
        rc = send_records(b, job, e);
    else if (o->problems->n && (rc = vbc_problems_send(b->c, job, o->problems, e)))
        vbc_prefixerr(e, "telling the host what could not be backed up");
    if (rc)
        goto fail_job;
    if ((rc = check_freeze(b, e)))
        goto fail_job;
    if ((rc = seal_and_thaw(b, job, &froze, &sealed, frozen, e)))
        goto fail_job;
    if (b->files.m.buf)
        vbc_files_free(&b->files);
    memset(&b->files, 0, sizeof(b->files));
    for (size_t i = 0; i < b->n_fb; i++)
        free(b->fbs[i].path);
    free(b->fbs);
    b->fbs = NULL;
    b->n_fb = b->cap_fb = 0;

    rc = wait_job(b->c, job, j, e);
    if (rc)
        vbc_prefixerr(e, "job %llu", (unsigned long long)job);
    return rc;

fail_job:
    vbc_progress_clear(&b->prog);
    if (froze)
        ops->thaw(b->src);
    if (ops->freeze_broken)
        ops->freeze_broken(b->src, e);     /* the freeze's story is the one to tell */
    if (b->c && job && !sealed)
        cancel_job(b->c, job);
    return rc;
}

int vbc_backup(const char *device, struct vbc_backup_opts *o, const struct vbc_source_ops *ops,
               void *src)
{
    struct bctx b;
    struct vbc_err e = { 0 };
    struct vbc_hello hello;
    struct vbc_problems problems;
    struct vbc_job j;
    double frozen = -1;
    bool map;
    int64_t t0 = vbc_now_ns();
    int rc;

    memset(&b, 0, sizeof(b));
    memset(&problems, 0, sizeof(problems));
    memset(&j, 0, sizeof(j));
    b.o = o;
    b.ops = ops;
    b.src = src;
    o->problems = &problems;
    vbc_progress_init(&b.prog);

    if ((rc = ops->prepare(src, o, &e)))
        goto fail;
    if (o->dump) {
        rc = dump_run(&b, &e);
        if (rc)
            goto fail;
        free(b.by_sent.e);
        free(b.by_file.e);
        if (problems.n) {
            vbc_error("incomplete: %zu entries or attributes could not be backed up (see above)",
                      problems.n);
            vbc_problems_free(&problems);
            return VBC_EXIT_INCOMPLETE;
        }
        return 0;
    }
    if ((rc = vbc_connect(device, &b.c, &e)))
        goto fail;
    if ((rc = vbc_hello(b.c, vbc_prog, &hello, &e)))
        goto fail;

    /* the host maps the files in its view when it can and every root lies on
     * a file system it reads (docs/freeze.md); --fallback asks for the guest's
     * own reading of files, --no-freeze for no freeze */
    map = o->map.ok && !o->no_host_map && !o->no_freeze && o->will_freeze && ops->freeze &&
          !o->fallback_all && !o->n_fallback_glob && (hello.features & VB_FEAT_HOST_MAPS);
    rc = run_job(&b, map, &j, &frozen, &e);
    if (rc && b.mapped && (j.flags & VB_JOB_FLAG_MAP_FAILED) && !vbc_interrupted) {
        /* once, the guest's own walk, saying so */
        vbc_warn("%s; the guest walks the files itself (frozen while it walks)",
                 j.reason[0] ? j.reason : "the host could not map the files");
        free(b.by_sent.e);
        free(b.by_file.e);
        memset(&b.by_sent, 0, sizeof(b.by_sent));
        memset(&b.by_file, 0, sizeof(b.by_file));
        b.n_entries = b.bytes = b.fb_bytes = 0;
        memset(&j, 0, sizeof(j));
        memset(&e, 0, sizeof(e));
        rc = run_job(&b, false, &j, &frozen, &e);
    }
    if (rc)
        goto fail;
    summary(&j, b.n_entries, frozen, t0, problems.n, b.mapped);
    vbc_disconnect(b.c);
    free(b.by_sent.e);
    free(b.by_file.e);
    if (problems.n) {
        /* done, but not everything: each problem is listed above, and the
         * snapshot says so too */
        vbc_error("backup incomplete: %zu entries or attributes could not be backed up (see "
                  "above); snapshot %s", problems.n, j.snapshot);
        vbc_problems_free(&problems);
        return VBC_EXIT_INCOMPLETE;
    }
    if (j.flags & VB_JOB_FLAG_INCOMPLETE) {
        /* the host found them, mapping: the snapshot lists them */
        vbc_error("backup incomplete: the host could not back up some entries or attributes "
                  "it found; the snapshot %s lists them", j.snapshot);
        return VBC_EXIT_INCOMPLETE;
    }
    return 0;

fail:
    vbc_progress_clear(&b.prog);
    vbc_error("backup failed: %s", e.msg);
    bctx_free(&b);
    vbc_disconnect(b.c);
    vbc_problems_free(&problems);
    return 1;
}

int vbc_backup_disk(const char *device, const char *target, const char *serial, uint8_t mode,
                    const struct vbc_source_ops *ops, void *src)
{
    struct vbc_err e = { 0 };
    struct vbc_hello hello;
    struct vbc_begin begin;
    struct vbc_conn *c = NULL;
    struct vbc_job j;
    struct bctx b;
    uint64_t job = 0;
    double frozen = -1;
    bool froze = false, sealed = false;
    int64_t t0 = vbc_now_ns();
    int rc;

    memset(&b, 0, sizeof(b));
    b.ops = ops;
    b.src = src;
    vbc_progress_init(&b.prog);
    if ((rc = vbc_connect(device, &c, &e)))
        goto fail;
    b.c = c;
    if ((rc = vbc_hello(c, vbc_prog, &hello, &e)))
        goto fail;
    memset(&begin, 0, sizeof(begin));
    begin.kind = VB_KIND_DISK;
    begin.mode = mode;
    begin.flags = ops && ops->freeze && ops->is_frozen ? 0 : VB_BEGIN_UNFROZEN;
    begin.target = target;
    begin.serials = &serial;
    begin.n_serials = 1;
    if ((rc = vbc_backup_begin(c, &begin, &job, NULL, &e)))
        goto fail;
    if (ops && ops->freeze) {
        if ((rc = ops->freeze(src, &e)))
            goto fail_job;
        froze = true;
    }
    if ((rc = seal_and_thaw(&b, job, &froze, &sealed, &frozen, &e)))
        goto fail_job;
    if ((rc = wait_job(c, job, &j, &e))) {
        vbc_prefixerr(&e, "job %llu", (unsigned long long)job);
        goto fail;
    }
    summary(&j, 0, frozen, t0, 0, false);
    vbc_disconnect(c);
    return 0;

fail_job:
    if (froze)
        ops->thaw(src);
    if (ops && ops->freeze_broken)
        ops->freeze_broken(src, &e);
    if (job && !sealed)
        cancel_job(c, job);
fail:
    vbc_progress_clear(&b.prog);
    vbc_error("backup failed: %s", e.msg);
    vbc_disconnect(c);
    return 1;
}
