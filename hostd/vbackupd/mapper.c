/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The host maps a job's files (docs/freeze.md): when a guest asks at BEGIN
 * and its file systems are ext2/3/4 with a view vbackupd can take, the guest
 * freezes only until the view is taken, and vbackupd runs vbackup-mapper
 * (hostd/mapper: a process of its own per job, sandboxed, bounded in time,
 * memory and CPU) on the view's image chains.  Its output is protocol
 * frames (BACKUP_FILES, BACKUP_DATA, BACKUP_PROBLEMS) that go through
 * exactly the checks a guest's requests get (jobs.c, wire.c): the mapper
 * read guest-written bytes, so what it says is untrusted.  When it is done
 * the job is QUEUED like any sealed job; when it fails the job fails with
 * the reason and VB_JOB_FLAG_MAP_FAILED, and the guest walks itself.
 */
#include "vbackupd.h"

#include <fcntl.h>
#include <glib-unix.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mapspec.h"
#include "wire.h"

#define ERR_KEEP 4096            /* bytes of the mapper's stderr kept */

struct vbd_map {
    struct vbd_job *job;         /* referenced while the mapper lives */
    struct vb_mapspec spec;      /* what BEGIN asked (disks filled at start) */
    bool started, stopped, finished;
    GPid pid;
    bool reaped;
    int status;
    int out_fd, err_fd;
    guint out_src, err_src, child_src, timer;
    bool out_eof, err_eof, paused, timed_out, freeing;
    uint8_t *buf;                /* frames not yet taken */
    size_t len, cap;
    GString *err;
    double t0;
    uint64_t frames, bytes;
    char failure[VBD_MSG];       /* what went wrong on our side of the pipe */
};

/* ---- the sandbox check ----------------------------------------------------------- */

void vbd_mapper_check(struct vbd *d)
{
    struct vbd_config *c = d->cfg;
    g_autofree char *out = NULL, *err = NULL, *uid = NULL, *gid = NULL, *want = NULL;
    const char *argv[8];
    GError *ge = NULL;
    int status = 0;

    d->mapper_ok = false;
    if (!c->mapper || !*c->mapper) {
        snprintf(d->mapper_why, sizeof(d->mapper_why), "no mapper configured");
        return;
    }
    uid = g_strdup_printf("%u", (unsigned)c->mapper_uid);
    gid = g_strdup_printf("%u", (unsigned)c->mapper_gid);
    argv[0] = c->mapper;
    argv[1] = "--uid";
    argv[2] = uid;
    argv[3] = "--gid";
    argv[4] = gid;
    argv[5] = "--probe";
    argv[6] = "ids";
    argv[7] = NULL;
    if (!g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out, &err,
                      &status, &ge)) {
        snprintf(d->mapper_why, sizeof(d->mapper_why), "%s: %s", c->mapper, ge->message);
        g_error_free(ge);
    } else {
        want = g_strdup_printf("uid %s %s %s gid %s %s %s caps 0 0 0 0\n", uid, uid, uid, gid,
                               gid, gid);
        if (WIFEXITED(status) && WEXITSTATUS(status) == 3 && !strcmp(out, want))
            d->mapper_ok = true;
        else
            snprintf(d->mapper_why, sizeof(d->mapper_why), "%s cannot enter its sandbox: %s",
                     c->mapper, err && *err ? g_strstrip(err) : "(no message)");
    }
    if (d->mapper_ok)
        vbd_log("the host maps files of ext2/3/4 file systems (%s, as %u:%u)", c->mapper,
                (unsigned)c->mapper_uid, (unsigned)c->mapper_gid);
    else
        vbd_log("the host does not map files: %s", d->mapper_why);
}

/* ---- the offer --------------------------------------------------------------------- */

static void map_free(struct vbd_map *m)
{
    vb_mapspec_clear(&m->spec);
    g_free(m->buf);
    if (m->err)
        g_string_free(m->err, TRUE);
    g_free(m);
}

bool vbd_map_offer(struct vbd_job *j, const struct vbd_begin *b, char *why, size_t len)
{
    struct vbd_map *m;
    unsigned layers = 0;

    if (!j->vm->qmp && !j->vm->libvirt) {
        snprintf(why, len, "it cannot take a view of VM %s", j->vm->name);
        return false;
    }
    if (!j->d->mapper_ok) {
        snprintf(why, len, "%s", j->d->mapper_why);
        return false;
    }
    for (guint i = 0; i < j->disks->len; i++)
        layers += (unsigned)((struct vbd_disk *)j->disks->pdata[i])->img->n;
    if (layers > VB_MAPSPEC_MAX_FDS) {
        snprintf(why, len, "the disks' chains have %u images (at most %u)", layers,
                 VB_MAPSPEC_MAX_FDS);
        return false;
    }
    m = g_new0(struct vbd_map, 1);
    m->out_fd = m->err_fd = -1;
    m->spec.job = j->id;
    m->spec.n_fs = b->n_fs;
    for (unsigned i = 0; i < b->n_fs; i++) {
        m->spec.fs[i].disk = b->fs[i].disk;
        m->spec.fs[i].offset = b->fs[i].start;
    }
    m->spec.n_roots = b->n_roots;
    for (unsigned i = 0; i < b->n_roots; i++) {
        m->spec.roots[i].fs = b->root_fs[i];
        m->spec.roots[i].inside = g_strdup(b->inside[i]);
        m->spec.roots[i].abs = g_strdup(b->roots[i]);
    }
    m->spec.n_prune = b->n_prune;
    for (unsigned i = 0; i < b->n_prune; i++)
        m->spec.prune[i] = g_strdup(b->prune[i]);
    m->spec.n_exclude = b->n_exclude;
    for (unsigned i = 0; i < b->n_exclude; i++)
        m->spec.exclude[i] = g_strdup(b->exclude[i]);
    j->map = m;
    return true;
}

json_object *vbd_map_json(struct vbd_job *j)
{
    struct vbd_map *m = j->map;
    json_object *o;

    if (!m || !m->started)
        return NULL;
    o = json_object_new_object();
    json_object_object_add(o, "running", json_object_new_boolean(!m->finished));
    json_object_object_add(o, "frames", json_object_new_int64((int64_t)m->frames));
    json_object_object_add(o, "bytes", json_object_new_int64((int64_t)m->bytes));
    return o;
}

/* ---- running it -------------------------------------------------------------------- */

static void map_close_fds(struct vbd_map *m)
{
    if (m->out_src)
        g_source_remove(m->out_src);
    if (m->err_src)
        g_source_remove(m->err_src);
    if (m->timer)
        g_source_remove(m->timer);
    m->out_src = m->err_src = m->timer = 0;
    if (m->out_fd >= 0)
        close(m->out_fd);
    if (m->err_fd >= 0)
        close(m->err_fd);
    m->out_fd = m->err_fd = -1;
}

static gboolean map_free_idle(gpointer opaque)
{
    struct vbd_map *m = opaque;
    struct vbd_job *j = m->job;

    if (j->map == m)
        j->map = NULL;
    map_free(m);
    vbd_job_unref(j);               /* the mapper's reference */
    return G_SOURCE_REMOVE;
}

/* The job is done with the mapper (finished, failed or ended): it is killed
 * if it still runs; once it is reaped (or never ran) the state goes, from
 * the main loop, never under a caller's feet. */
static void map_release(struct vbd_map *m)
{
    struct vbd_job *j = m->job;

    map_close_fds(m);
    if (m->started && !m->finished) {
        m->finished = true;
        j->d->mappers_running--;
    }
    if (m->pid && !m->reaped)
        kill(m->pid, SIGKILL);
    if (m->reaped && !m->freeing) {
        m->freeing = true;
        g_idle_add(map_free_idle, m);
    }
}

/* The last line the mapper wrote to stderr, printable, for the guest. */
static void last_line(struct vbd_map *m, char *out, size_t len)
{
    char *s = m->err ? m->err->str : "", *nl;
    size_t o = 0;

    while ((nl = strrchr(s, '\n')) && nl[1] == 0)
        *nl = 0;
    if ((nl = strrchr(s, '\n')))
        s = nl + 1;
    for (; *s && o + 1 < len && o < 300; s++)
        out[o++] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
    out[o] = 0;
}

static void map_fail(struct vbd_map *m, const char *what)
{
    struct vbd_job *j = m->job;

    vbd_log("job %llu: the host could not map the files of %s: %s", (unsigned long long)j->id,
            j->vm->name, what);
    j->flags |= VB_JOB_FLAG_MAP_FAILED;
    m->stopped = true;
    vbd_job_fail(j, VB_JOB_FAILED, "the host could not map the files: %s", what);
    map_release(m);
}

static void map_start_waiting(struct vbd *d);

/* Both the output's end and the process's: done. */
static void map_maybe_done(struct vbd_map *m)
{
    struct vbd_job *j = m->job;
    char why[VBD_MSG], line[320];
    struct vbd *d = j->d;

    if (m->stopped || !m->out_eof || !m->reaped)
        return;
    if (m->failure[0]) {
        map_fail(m, m->failure);
    } else if (WIFSIGNALED(m->status)) {
        int sig = WTERMSIG(m->status);

        if (m->timed_out)
            snprintf(why, sizeof(why), "the mapper took longer than %u s",
                     d->cfg->mapper_seconds);
        else if (sig == SIGSYS)
            snprintf(why, sizeof(why), "the mapper was stopped by its sandbox (a forbidden "
                     "system call)");
        else if (sig == SIGXCPU || sig == SIGKILL)
            snprintf(why, sizeof(why), "the mapper reached its CPU or memory bound");
        else
            snprintf(why, sizeof(why), "the mapper died of signal %d", sig);
        map_fail(m, why);
    } else if (WEXITSTATUS(m->status) != 0) {
        last_line(m, line, sizeof(line));
        map_fail(m, line[0] ? line : "the mapper failed without a message");
    } else if (m->len) {
        map_fail(m, "the mapper's output ends in the middle of a frame");
    } else if (!vbd_job_roots_sent(j, why)) {
        map_fail(m, why);
    } else {
        char note[200];

        snprintf(note, sizeof(note), "map: the host mapped %u entries in %.2f s",
                 j->entries->len, vb_now() - m->t0);
        json_object_array_add(j->plan_notes, json_object_new_string(note));
        vbd_log("job %llu: %s", (unsigned long long)j->id, note + 5);
        m->stopped = true;
        map_release(m);
        j->state = VB_JOB_QUEUED;
        vbd_batch_enqueue(d, j);
    }
    map_start_waiting(d);
}

static gboolean on_out(gint fd, GIOCondition cond, gpointer opaque);

static void data_answered(void *opaque)
{
    struct vbd_job *j = opaque;
    struct vbd_map *m = j->map;

    if (m && m->paused && !m->stopped) {
        m->paused = false;
        on_out(m->out_fd, G_IO_IN, m);      /* the frames already read, then the pipe */
    }
    vbd_job_unref(j);
}

/* Takes the whole frames in the buffer; false when the mapper is done for. */
static bool take_frames(struct vbd_map *m)
{
    struct vbd_job *j = m->job;
    size_t off = 0;
    char msg[VBD_MSG];

    while (!m->paused && m->len - off >= VB_HDR_SIZE) {
        struct vb_hdr h;
        const uint8_t *p;
        int st;

        memcpy(&h, m->buf + off, sizeof(h));
        if ((st = vbd_check_header(&h, msg)) || h.status || h.reply_max > VB_MAX_PAYLOAD) {
            snprintf(m->failure, sizeof(m->failure), "the mapper's output: %s",
                     st ? msg : "a bad frame header");
            return false;
        }
        if (m->len - off - VB_HDR_SIZE < h.len)
            break;
        p = m->buf + off + VB_HDR_SIZE;
        msg[0] = 0;
        switch (h.type) {
        case VB_OP_BACKUP_FILES: {
            uint64_t id;

            st = vbd_peek_job(p, h.len, &id, msg);
            if (!st && id != j->id) {
                st = VB_S_NO_JOB;
                snprintf(msg, sizeof(msg), "records of job %llu", (unsigned long long)id);
            }
            if (!st)
                st = vbd_job_files(j, p, h.len, msg);
            break;
        }
        case VB_OP_BACKUP_DATA: {
            struct vbd_data dt;

            st = vbd_parse_data(p, h.len, &dt, msg);
            if (!st)
                st = vbd_job_data_check(j, &dt, msg);
            if (!st) {
                struct vbd_req *r = g_new0(struct vbd_req, 1);

                /* like a guest, the mapper waits until the piece is chunked */
                r->answered = data_answered;
                r->opaque = j;
                j->refs++;
                m->paused = true;
                vbd_job_data_take(j, &dt, r);
            }
            break;
        }
        case VB_OP_BACKUP_PROBLEMS: {
            struct vbd_problems pr;

            st = vbd_parse_problems(p, h.len, &pr, msg);
            if (!st) {
                st = vbd_job_problems(j, &pr, msg);
                vbd_problems_clear(&pr);
            }
            break;
        }
        default:
            st = VB_S_BAD_REQUEST;
            snprintf(msg, sizeof(msg), "a %s frame", vb_op_name(h.type));
        }
        if (st) {
            snprintf(m->failure, sizeof(m->failure), "the mapper's records were refused (%s): %s",
                     vb_status_name(st), msg);
            return false;
        }
        if (m->stopped || j->map != m)
            return false;           /* the job ended meanwhile */
        m->frames++;
        off += VB_HDR_SIZE + h.len;
        j->last_activity = vb_now();
    }
    if (off) {
        memmove(m->buf, m->buf + off, m->len - off);
        m->len -= off;
    }
    return true;
}

static gboolean on_out(gint fd, GIOCondition cond, gpointer opaque)
{
    struct vbd_map *m = opaque;

    (void)cond;
    if (m->stopped)
        return G_SOURCE_REMOVE;
    /* the frames already here first */
    if (!take_frames(m))
        goto stop;
    while (!m->paused) {
        ssize_t n;

        if (m->cap - m->len < 65536) {
            /* room for a whole frame and a piece of the next */
            size_t nc = m->cap ? m->cap * 2 : (VB_HDR_SIZE + VB_MAX_PAYLOAD) * 2;

            if (m->len + 65536 > (VB_HDR_SIZE + VB_MAX_PAYLOAD) * 2 + 65536)
                break;              /* a frame is whole before more is read */
            m->buf = g_realloc(m->buf, nc);
            m->cap = nc;
        }
        n = read(fd, m->buf + m->len, m->cap - m->len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        if (n <= 0) {
            m->out_eof = true;
            break;
        }
        m->len += (size_t)n;
        m->bytes += (uint64_t)n;
        if (!take_frames(m))
            goto stop;
    }
    if (m->paused || m->out_eof) {
        m->out_src = 0;
        if (m->out_eof)
            map_maybe_done(m);
        return G_SOURCE_REMOVE;
    }
    if (!m->out_src)
        m->out_src = g_unix_fd_add(fd, G_IO_IN | G_IO_HUP | G_IO_ERR, on_out, m);
    return m->out_src ? G_SOURCE_CONTINUE : G_SOURCE_REMOVE;
stop:
    m->out_src = 0;
    m->out_eof = true;               /* nothing more is read from it */
    if (m->pid && !m->reaped)
        kill(m->pid, SIGKILL);
    map_maybe_done(m);
    return G_SOURCE_REMOVE;
}

/* One read of the mapper's stderr: 1 more may come, 0 end, -1 nothing now. */
static int read_err(struct vbd_map *m)
{
    char buf[4096];
    ssize_t n = read(m->err_fd, buf, sizeof(buf));

    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return -1;
    if (n <= 0) {
        m->err_eof = true;
        return 0;
    }
    g_string_append_len(m->err, buf, n);
    if (m->err->len > ERR_KEEP)
        g_string_erase(m->err, 0, (gssize)(m->err->len - ERR_KEEP));
    return 1;
}

static gboolean on_err(gint fd, GIOCondition cond, gpointer opaque)
{
    struct vbd_map *m = opaque;

    (void)fd;
    (void)cond;
    if (read_err(m) == 0) {
        m->err_src = 0;
        return G_SOURCE_REMOVE;
    }
    return G_SOURCE_CONTINUE;
}

static void on_exit_(GPid pid, gint status, gpointer opaque)
{
    struct vbd_map *m = opaque;

    g_spawn_close_pid(pid);
    m->reaped = true;
    m->status = status;
    m->child_src = 0;
    if (m->stopped) {
        map_release(m);             /* the job ended before: only the reference is left */
        return;
    }
    /* what it still wrote to stderr (its end is closed: the reads end) */
    for (int i = 0; m->err_fd >= 0 && !m->err_eof && i < 64; i++)
        if (read_err(m) <= 0)
            break;
    map_maybe_done(m);
}

static gboolean on_timeout(gpointer opaque)
{
    struct vbd_map *m = opaque;

    m->timer = 0;
    m->timed_out = true;
    if (m->pid && !m->reaped)
        kill(m->pid, SIGKILL);
    return G_SOURCE_REMOVE;
}

static int memfd_of(const uint8_t *p, size_t n)
{
    int fd = memfd_create("vbackup-mapper-job", MFD_CLOEXEC);

    if (fd < 0)
        return -errno;
    if (vb_write_all(fd, p, n) || lseek(fd, 0, SEEK_SET) < 0) {
        int err = errno ? -errno : -EIO;

        close(fd);
        return err;
    }
    return fd;
}

/* Spawns the mapper for J: the view's chains opened now (after the view was
 * taken, as the batch that reads them will), the description on stdin. */
static int spawn(struct vbd_job *j, vb_error *e)
{
    struct vbd_map *m = j->map;
    struct vbd_config *c = j->d->cfg;
    struct vb_image *imgs[VB_MAX_DISKS] = { NULL };
    int src[VB_MAPSPEC_MAX_FDS], dst[VB_MAPSPEC_MAX_FDS], in_fd = -1, ret = 0, out, err;
    unsigned n = 0;
    g_autofree char *uid = g_strdup_printf("%u", (unsigned)c->mapper_uid);
    g_autofree char *gid = g_strdup_printf("%u", (unsigned)c->mapper_gid);
    g_autofree char *mem = g_strdup_printf("%llu", (unsigned long long)c->mapper_memory);
    g_autofree char *cpu = g_strdup_printf("%u", c->mapper_seconds);
    const char *argv[] = { c->mapper, "--uid", uid, "--gid", gid, "--memory", mem, "--cpu", cpu,
                           NULL };
    const char *envp[3] = { NULL };
    unsigned ne = 0;
    uint8_t *spec = NULL;
    size_t spec_len = 0;
    GError *ge = NULL;

    m->spec.n_disks = (uint16_t)j->disks->len;
    for (guint i = 0; i < j->disks->len && !ret; i++) {
        struct vbd_disk *dk = j->disks->pdata[i];
        struct vb_image_opts io = { .format = dk->format, .backing_format = dk->backing_format,
                                    .no_direct = true };

        if ((ret = vb_image_open(dk->image, &io, &imgs[i], e))) {
            vb_prefixerr(e, "disk '%s'", dk->serial);
            break;
        }
        if (n + (unsigned)imgs[i]->n > VB_MAPSPEC_MAX_FDS) {
            ret = vb_seterr(e, -E2BIG, "the disks' chains have more than %u images",
                            VB_MAPSPEC_MAX_FDS);
            break;
        }
        m->spec.disks[i].n_layers = (uint16_t)imgs[i]->n;
        for (int k = 0; k < imgs[i]->n; k++) {
            m->spec.disks[i].fmt[k] = imgs[i]->layer[k].fmt == VB_FMT_QCOW2 ? VB_MAPSPEC_QCOW2
                                                                             : VB_MAPSPEC_RAW;
            src[n] = imgs[i]->layer[k].fd;
            dst[n] = (int)(3 + n);
            n++;
        }
    }
    if (!ret && !(spec = vb_mapspec_encode(&m->spec, &spec_len)))
        ret = vb_seterr(e, -ENOMEM, "out of memory");
    if (!ret && (in_fd = memfd_of(spec, spec_len)) < 0)
        ret = vb_seterr(e, in_fd, "memfd: %s", strerror(-in_fd));
    /* a sanitizer build's mapper reports as the daemon does */
    if (g_getenv("ASAN_OPTIONS"))
        envp[ne++] = g_strdup_printf("ASAN_OPTIONS=%s", g_getenv("ASAN_OPTIONS"));
    if (g_getenv("UBSAN_OPTIONS"))
        envp[ne++] = g_strdup_printf("UBSAN_OPTIONS=%s", g_getenv("UBSAN_OPTIONS"));
    if (!ret && !g_spawn_async_with_pipes_and_fds(NULL, argv, envp,
                                                  G_SPAWN_DO_NOT_REAP_CHILD |
                                                  G_SPAWN_CLOEXEC_PIPES,
                                                  NULL, NULL, in_fd, -1, -1, src, dst, n,
                                                  &m->pid, NULL, &out, &err, &ge)) {
        ret = vb_seterr(e, -EIO, "starting %s: %s", c->mapper, ge->message);
        g_error_free(ge);
    }
    for (unsigned i = 0; i < ne; i++)
        g_free((char *)envp[i]);
    if (in_fd >= 0)
        close(in_fd);
    g_free(spec);
    for (unsigned i = 0; i < VB_MAX_DISKS; i++)
        vb_image_close(imgs[i]);            /* the mapper holds its own descriptors */
    if (ret)
        return ret;
    m->out_fd = out;
    m->err_fd = err;
    g_unix_set_fd_nonblocking(out, TRUE, NULL);
    g_unix_set_fd_nonblocking(err, TRUE, NULL);
    m->err = g_string_new(NULL);
    m->out_src = g_unix_fd_add(out, G_IO_IN | G_IO_HUP | G_IO_ERR, on_out, m);
    m->err_src = g_unix_fd_add(err, G_IO_IN | G_IO_HUP | G_IO_ERR, on_err, m);
    m->child_src = g_child_watch_add(m->pid, on_exit_, m);
    m->timer = g_timeout_add_seconds(c->mapper_seconds, on_timeout, m);
    return 0;
}

static void map_run(struct vbd_job *j)
{
    struct vbd_map *m = j->map;
    vb_error e = { 0 };

    m->started = true;
    m->t0 = vb_now();
    j->d->mappers_running++;
    if (spawn(j, &e)) {
        char what[200];

        vbd_host_error(j->vm, what, sizeof(what), "the mapper could not be started",
                       vb_strerror(&e));
        map_fail(m, what);
        return;
    }
    vbd_log("job %llu: mapping the files of %s in its view (mapper pid %d)",
            (unsigned long long)j->id, j->vm->name, (int)m->pid);
}

static void map_start_waiting(struct vbd *d)
{
    while (d->mappers_running < d->cfg->max_mappers && !g_queue_is_empty(&d->map_waiting)) {
        struct vbd_job *j = g_queue_pop_head(&d->map_waiting);

        if (j->state == VB_JOB_MAPPING && j->map && !j->map->started && !j->map->stopped)
            map_run(j);
        vbd_job_unref(j);           /* the queue's reference */
    }
}

void vbd_map_start(struct vbd_job *j)
{
    struct vbd_map *m = j->map;

    j->state = VB_JOB_MAPPING;
    vbd_journal_running(j);         /* a restart says the host was mapping */
    m->job = j;
    j->refs++;                      /* the mapper's: until it is reaped or never started */
    g_queue_push_tail(&j->d->map_waiting, j);
    j->refs++;                      /* the queue's */
    map_start_waiting(j->d);
}

void vbd_map_stop(struct vbd_job *j)
{
    struct vbd_map *m = j->map;

    if (!m)
        return;
    if (!m->job) {
        /* never started: nothing runs */
        j->map = NULL;
        map_free(m);
        return;
    }
    if (m->stopped)
        return;
    m->stopped = true;
    if (!m->started) {
        /* waiting for a turn: the queue drops its reference when it comes */
        m->reaped = true;
        map_release(m);
        return;
    }
    map_release(m);
}
