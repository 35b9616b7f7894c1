/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "wire.h"

#include "escape.h"
#include "util.h"
#include "vbackup/protolib.h"

#include <glib.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int err(char *msg, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int err(char *msg, int status, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, VBD_MSG, fmt, ap);
    va_end(ap);
    return status;
}

/* A bounded reader over a payload. */
struct rd {
    const uint8_t *p;
    size_t n, off;
};

static bool take(struct rd *r, void *dst, size_t len)
{
    if (len > r->n - r->off)
        return false;
    memcpy(dst, r->p + r->off, len);
    r->off += len;
    return true;
}

static bool take_str(struct rd *r, const char **s, uint16_t *len)
{
    if (!take(r, len, 2) || *len > r->n - r->off)
        return false;
    *s = (const char *)r->p + r->off;
    r->off += *len;
    return true;
}

/* A name from the guest, escaped for a message (escape.h): as much of it as
 * fits cap, never a part of an escape */
static void printable(char *dst, size_t cap, const char *s, size_t n)
{
    char *esc = vb_escape(s, n);

    while (n && strlen(esc) >= cap) {
        g_free(esc);
        esc = vb_escape(s, --n);
    }
    snprintf(dst, cap, "%s", esc);
    g_free(esc);
}

const char *vb_op_name(unsigned type)
{
    static const char *names[] = {
        "?", "HELLO", "BACKUP_BEGIN", "BACKUP_FILES", "BACKUP_DATA", "BACKUP_SEAL", "STATUS",
        "CANCEL", "LIST", "RESTORE_BEGIN", "RESTORE_LIST", "RESTORE_READ", "RESTORE_END",
        "BACKUP_PROBLEMS",
    };

    type &= ~VB_REPLY;
    return type < sizeof(names) / sizeof(names[0]) ? names[type] : "?";
}

const char *vb_status_name(int status)
{
    static const char *names[] = {
        "OK", "UNAVAILABLE", "BAD_FRAME", "BAD_VERSION", "BAD_REQUEST", "UNKNOWN_TARGET",
        "NOT_FOUND", "NOT_OWNED", "OUT_OF_RANGE", "BAD_PATH", "TOO_LARGE", "BUSY",
        "SHUTTING_DOWN", "NO_JOB", "JOB_FAILED", "IO", "NO_SPACE", "CANCELLED", "INTERNAL",
        "REPLY_TOO_SMALL", "BAD_STATE", "QUOTA",
    };

    return status >= 0 && status < (int)(sizeof(names) / sizeof(names[0])) ? names[status] : "?";
}

bool vbd_check_path(const char *p, size_t n, bool allow_root, char *why, size_t why_len)
{
    const char *bad = vb_path_check(p, n, allow_root);

    if (bad)
        snprintf(why, why_len, "%s", bad);
    return !bad;
}

bool vbd_check_name(const char *p, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c <= 0x20 || c >= 0x7f || c == '/' || c == '\\')
            return false;
    }
    return true;
}

int vbd_check_header(const struct vb_hdr *h, char *msg)
{
    if (h->magic != VB_MAGIC)
        return err(msg, VB_S_BAD_FRAME, "bad magic %#x", h->magic);
    if (h->version != VB_PROTO_VERSION)
        return err(msg, VB_S_BAD_VERSION, "protocol version %u is not supported (this host "
                   "speaks %u)", h->version, VB_PROTO_VERSION);
    if (h->len > VB_MAX_PAYLOAD)
        return err(msg, VB_S_BAD_FRAME, "payload of %u bytes is larger than %u", h->len,
                   VB_MAX_PAYLOAD);
    if (h->type & VB_REPLY)
        return err(msg, VB_S_BAD_REQUEST, "a reply frame sent as a request");
    if (h->type == 0 || h->type >= VB_OP_MAX_)
        return err(msg, VB_S_BAD_REQUEST, "unknown operation %u", h->type);
    if (h->status || h->flags)
        return err(msg, VB_S_BAD_REQUEST, "status and flags must be 0 in a request");
    return VB_S_OK;
}

int vbd_parse_hello(const uint8_t *p, size_t n, struct vb_hello *out, char *msg)
{
    if (n != sizeof(*out))
        return err(msg, VB_S_BAD_REQUEST, "HELLO payload is %zu bytes, expected %zu", n,
                   sizeof(*out));
    memcpy(out, p, sizeof(*out));
    if (out->version_min > out->version_max)
        return err(msg, VB_S_BAD_REQUEST, "HELLO version range is empty");
    if (out->version_min > VB_PROTO_VERSION || out->version_max < VB_PROTO_VERSION)
        return err(msg, VB_S_BAD_VERSION, "no common protocol version (client %u..%u, host %u)",
                   out->version_min, out->version_max, VB_PROTO_VERSION);
    return VB_S_OK;
}

static int name_field(struct rd *r, char *dst, size_t cap, size_t len, const char *what,
                      char *msg)
{
    char shown[96];

    if (len == 0 || len >= cap || len > r->n - r->off)
        return err(msg, VB_S_BAD_REQUEST, "%s of %zu bytes (1..%zu)", what, len, cap - 1);
    memcpy(dst, r->p + r->off, len);
    dst[len] = 0;
    r->off += len;
    if (!vbd_check_name(dst, len)) {
        printable(shown, sizeof(shown), dst, len);
        return err(msg, VB_S_BAD_REQUEST, "%s '%s' has characters that are not allowed", what,
                   shown);
    }
    return VB_S_OK;
}

void vbd_begin_clear(struct vbd_begin *b)
{
    for (unsigned i = 0; i < VB_MAX_ROOTS; i++) {
        free(b->roots[i]);
        free(b->inside[i]);
        b->roots[i] = b->inside[i] = NULL;
    }
    for (unsigned i = 0; b->prune && i < b->n_prune; i++)
        free(b->prune[i]);
    for (unsigned i = 0; b->exclude && i < b->n_exclude; i++)
        free(b->exclude[i]);
    free(b->prune);
    free(b->exclude);
    b->prune = b->exclude = NULL;
    b->n_prune = b->n_exclude = 0;
}

/* The map section of a BEGIN with VB_BEGIN_HOST_MAP (proto.h). */
static int parse_map(struct rd *r, struct vbd_begin *out, char *msg)
{
    struct vb_map_head h;
    char why[96], shown[128];

    if (!take(r, &h, sizeof(h)))
        return err(msg, VB_S_BAD_REQUEST, "BACKUP_BEGIN: the map section is truncated");
    if (h.n_fs < 1 || h.n_fs > VB_MAX_ROOTS || h.n_prune > VB_MAX_PRUNE ||
        h.n_exclude > VB_MAX_EXCLUDE || h.reserved)
        return err(msg, VB_S_BAD_REQUEST, "BACKUP_BEGIN: map section with %u file systems "
                   "(1..%u), %u mount points (..%u), %u exclusions (..%u)", h.n_fs, VB_MAX_ROOTS,
                   h.n_prune, VB_MAX_PRUNE, h.n_exclude, VB_MAX_EXCLUDE);
    for (unsigned i = 0; i < h.n_fs; i++) {
        struct vb_map_fs *f = &out->fs[i];

        if (!take(r, f, sizeof(*f)))
            return err(msg, VB_S_BAD_REQUEST, "BACKUP_BEGIN: file system %u truncated", i);
        if (f->disk >= out->n_disks || f->type != VB_FS_EXT || f->reserved || f->reserved2)
            return err(msg, VB_S_BAD_REQUEST, "BACKUP_BEGIN: file system %u: disk %u of %u, "
                       "type %u, or reserved fields not 0", i, f->disk, out->n_disks, f->type);
    }
    out->n_fs = h.n_fs;
    for (unsigned i = 0; i < out->n_roots; i++) {
        const char *s;
        uint16_t len;

        if (!take(r, &out->root_fs[i], 2) || out->root_fs[i] >= h.n_fs)
            return err(msg, VB_S_BAD_REQUEST, "BACKUP_BEGIN: the file system of root %u is "
                       "missing or out of range", i);
        if (!take_str(r, &s, &len))
            return err(msg, VB_S_BAD_REQUEST, "BACKUP_BEGIN: root %u's path inside its file "
                       "system is truncated", i);
        if (!vbd_check_path(s, len, true, why, sizeof(why))) {
            printable(shown, sizeof(shown), s, VB_MIN(len, 60u));
            return err(msg, VB_S_BAD_PATH, "root %u's path inside its file system '%s': %s", i,
                       shown, why);
        }
        out->inside[i] = g_strndup(s, len);
    }
    out->prune = calloc(h.n_prune ? h.n_prune : 1, sizeof(char *));
    out->exclude = calloc(h.n_exclude ? h.n_exclude : 1, sizeof(char *));
    if (!out->prune || !out->exclude)
        return err(msg, VB_S_INTERNAL, "out of memory");
    for (unsigned i = 0; i < h.n_prune; i++) {
        const char *s;
        uint16_t len;

        if (!take_str(r, &s, &len))
            return err(msg, VB_S_BAD_REQUEST, "BACKUP_BEGIN: mount point %u truncated", i);
        if (!vbd_check_path(s, len, false, why, sizeof(why))) {
            printable(shown, sizeof(shown), s, VB_MIN(len, 60u));
            return err(msg, VB_S_BAD_PATH, "mount point %u '%s': %s", i, shown, why);
        }
        out->prune[i] = g_strndup(s, len);
        out->n_prune = (uint16_t)(i + 1);
    }
    for (unsigned i = 0; i < h.n_exclude; i++) {
        const char *s;
        uint16_t len;

        if (!take_str(r, &s, &len) || len < 1 || len > VB_MAX_PATTERN || memchr(s, 0, len))
            return err(msg, VB_S_BAD_REQUEST, "BACKUP_BEGIN: exclusion %u truncated, empty, "
                       "longer than %u bytes or with a NUL", i, VB_MAX_PATTERN);
        out->exclude[i] = g_strndup(s, len);
        out->n_exclude = (uint16_t)(i + 1);
    }
    return VB_S_OK;
}

int vbd_parse_begin(const uint8_t *p, size_t n, struct vbd_begin *out, char *msg)
{
    struct rd r = { p, n, 0 };
    struct vb_backup_begin b;
    char why[96];
    int st;

    memset(out, 0, sizeof(*out));
    if (!take(&r, &b, sizeof(b)))
        return err(msg, VB_S_BAD_REQUEST, "BACKUP_BEGIN payload too short");
    if (b.kind != VB_KIND_FILES && b.kind != VB_KIND_DISK)
        return err(msg, VB_S_BAD_REQUEST, "unknown backup kind %u", b.kind);
    if (b.mode < VB_MODE_FULL || b.mode > VB_MODE_DIFFERENTIAL)
        return err(msg, VB_S_BAD_REQUEST, "unknown backup mode %u", b.mode);
    if ((b.flags & ~(VB_BEGIN_UNFROZEN | VB_BEGIN_HOST_MAP)) || b.reserved)
        return err(msg, VB_S_BAD_REQUEST, "unknown flags or reserved fields not 0");
    if ((b.flags & VB_BEGIN_HOST_MAP) &&
        (b.kind != VB_KIND_FILES || (b.flags & VB_BEGIN_UNFROZEN)))
        return err(msg, VB_S_BAD_REQUEST, "the host maps only the files of frozen file "
                   "systems");
    /* a files backup may name no disk at all: all its data comes as fallback data */
    if ((b.kind == VB_KIND_DISK && b.n_disks < 1) || b.n_disks > VB_MAX_DISKS)
        return err(msg, VB_S_BAD_REQUEST, "%u disks named (%u..%u)", b.n_disks,
                   b.kind == VB_KIND_DISK ? 1 : 0, VB_MAX_DISKS);
    if (b.kind == VB_KIND_DISK) {
        if (b.n_disks != 1 || b.n_roots != 0)
            return err(msg, VB_S_BAD_REQUEST, "a disk backup names exactly one disk and no paths");
    } else if (b.n_roots < 1 || b.n_roots > VB_MAX_ROOTS) {
        return err(msg, VB_S_BAD_REQUEST, "%u paths named (1..%u)", b.n_roots, VB_MAX_ROOTS);
    }
    out->kind = b.kind;
    out->mode = b.mode;
    out->flags = b.flags;
    out->n_files_hint = b.n_files_hint;
    out->bytes_hint = b.bytes_hint;
    st = name_field(&r, out->target, sizeof(out->target), b.target_len, "target name", msg);
    if (st)
        return st;
    for (unsigned i = 0; i < b.n_disks; i++) {
        uint16_t len;
        if (!take(&r, &len, 2))
            return err(msg, VB_S_BAD_REQUEST, "BACKUP_BEGIN truncated in disk %u", i);
        st = name_field(&r, out->serials[i], sizeof(out->serials[i]), len, "disk serial", msg);
        if (st)
            return st;
        for (unsigned k = 0; k < i; k++)
            if (!strcmp(out->serials[k], out->serials[i]))
                return err(msg, VB_S_BAD_REQUEST, "disk '%s' named twice", out->serials[i]);
    }
    out->n_disks = b.n_disks;
    for (unsigned i = 0; i < b.n_roots; i++) {
        const char *s;
        uint16_t len;
        if (!take_str(&r, &s, &len)) {
            vbd_begin_clear(out);
            return err(msg, VB_S_BAD_REQUEST, "BACKUP_BEGIN truncated in path %u", i);
        }
        if (!vbd_check_path(s, len, true, why, sizeof(why))) {
            char shown[128];
            printable(shown, sizeof(shown), s, VB_MIN(len, 60u));
            vbd_begin_clear(out);
            return err(msg, VB_S_BAD_PATH, "path %u '%s': %s", i, shown, why);
        }
        out->roots[i] = g_strndup(s, len);
        out->n_roots = (uint16_t)(i + 1);
    }
    if ((b.flags & VB_BEGIN_HOST_MAP) && (st = parse_map(&r, out, msg))) {
        vbd_begin_clear(out);
        return st;
    }
    if (r.off != n) {
        vbd_begin_clear(out);
        return err(msg, VB_S_BAD_REQUEST, "%zu bytes after the end of BACKUP_BEGIN", n - r.off);
    }
    return VB_S_OK;
}

int vbd_peek_job(const uint8_t *p, size_t n, uint64_t *job, char *msg)
{
    if (n < 8)
        return err(msg, VB_S_BAD_REQUEST, "payload too short for a job id");
    memcpy(job, p, 8);
    return VB_S_OK;
}

void vbd_files_clear(struct vbd_files *f)
{
    for (uint32_t i = 0; f->recs && i < f->n; i++)
        free(f->recs[i].ext);
    free(f->recs);
    memset(f, 0, sizeof(*f));
}

int vbd_parse_files(const uint8_t *p, size_t n, const struct vbd_files_ctx *ctx,
                    struct vbd_files *out, char *msg)
{
    struct rd r = { p, n, 0 };
    struct vb_files h;
    const char *prev_path = ctx->prev_path;
    size_t prev_len = ctx->prev_path_len;
    bool prev_cont = ctx->prev_can_continue, prev_mapped = ctx->prev_mapped;
    uint64_t prev_end = ctx->prev_ext_end, prev_disk = ctx->prev_disk, files = 0;
    char why[160], shown[160];

    memset(out, 0, sizeof(*out));
    if (!take(&r, &h, sizeof(h)))
        return err(msg, VB_S_BAD_REQUEST, "BACKUP_FILES payload too short");
    if (h.n_files == 0 || h.n_files > VB_MAX_FILES_PER_MSG)
        return err(msg, VB_S_BAD_REQUEST, "%u records in one message (1..%u)", h.n_files,
                   VB_MAX_FILES_PER_MSG);
    if (h.reserved)
        return err(msg, VB_S_BAD_REQUEST, "reserved fields must be 0");
    /* every record needs at least its fixed part: bounds the allocation */
    if ((uint64_t)h.n_files * sizeof(struct vb_file_rec) > n - r.off)
        return err(msg, VB_S_BAD_REQUEST, "%u records cannot fit in %zu bytes", h.n_files, n);
    out->job = h.job;
    out->recs = calloc(h.n_files, sizeof(*out->recs));
    if (!out->recs)
        return err(msg, VB_S_INTERNAL, "out of memory");
    out->n = h.n_files;

    for (uint32_t i = 0; i < h.n_files; i++) {
        struct vbd_prec *x = &out->recs[i];
        struct vb_rec *f = &x->r;
        size_t used;
        int st = vb_rec_decode(p + r.off, n - r.off, VB_REC_BACKUP, f, &used, why, sizeof(why));

        /* the path as far as it could be read, for the message */
        printable(shown, sizeof(shown), f->path ? f->path : "",
                  f->path ? VB_MIN(f->path_len, (size_t)100) : 0);
        if (st) {
            if (!f->path)
                err(msg, st, "BACKUP_FILES record %u: %s", i, why);
            else
                err(msg, st, "record %u '%s': %s", i, shown, why);
            goto fail;
        }
        r.off += used;
        st = VB_S_BAD_REQUEST;
        if (f->data == VB_FD_MORE) {
            if (!prev_cont || f->path_len != prev_len || memcmp(f->path, prev_path, prev_len)) {
                err(msg, st, "record %u '%s': more extents without a preceding record of the "
                    "same file", i, shown);
                goto fail;
            }
            if (f->disk != prev_disk && prev_mapped) {
                err(msg, st, "record %u '%s': more extents on another disk", i, shown);
                goto fail;
            }
        } else {
            if (files >= ctx->files_left) {
                st = VB_S_TOO_LARGE;
                err(msg, st, "record %u '%s': more files than a job may hold", i, shown);
                goto fail;
            }
            files++;
            prev_end = 0;
            prev_mapped = f->data == VB_FD_EXTENTS;
        }
        if (f->disk >= ctx->n_disks && (f->data == VB_FD_EXTENTS ||
                                        (f->data == VB_FD_MORE && prev_mapped))) {
            err(msg, st, "record %u '%s': disk index %u, but the job has %u disks", i, shown,
                f->disk, ctx->n_disks);
            goto fail;
        }
        if (f->n_extents) {
            x->ext = malloc((size_t)f->n_extents * sizeof(struct vb_extent));
            if (!x->ext) {
                st = VB_S_INTERNAL;
                err(msg, st, "out of memory");
                goto fail;
            }
        }
        for (uint32_t k = 0; k < f->n_extents; k++) {
            struct vb_extent *e = &x->ext[k];

            vb_extent_get(f->extents + (size_t)k * sizeof(struct vb_extent), e);
            if (f->data == VB_FD_MORE && !prev_mapped &&
                (!(e->flags & VB_EXT_UNWRITTEN) || e->physical)) {
                err(msg, st, "record %u '%s': extent %u: a file whose data is not read from "
                    "the disk has only unwritten extents (at physical 0)", i, shown, k);
                goto fail;
            }
            if (prev_mapped) {
                uint64_t dsize = ctx->disk_sizes[f->disk];

                if (e->physical + e->length > dsize) {
                    st = VB_S_OUT_OF_RANGE;
                    err(msg, st, "record %u '%s': extent %u (physical %#llx, %llu bytes) lies "
                        "outside disk '%s' (%llu bytes)", i, shown, k,
                        (unsigned long long)e->physical, (unsigned long long)e->length,
                        ctx->disk_names[f->disk], (unsigned long long)dsize);
                    goto fail;
                }
            }
            if (e->logical < prev_end) {
                err(msg, st, "record %u '%s': extent %u overlaps or is out of order", i, shown, k);
                goto fail;
            }
            prev_end = e->logical + e->length;
        }
        prev_path = f->path;
        prev_len = f->path_len;
        prev_cont = f->type == VB_FT_REG || f->data == VB_FD_MORE;
        if (f->data != VB_FD_MORE)
            prev_disk = f->disk;
        continue;
fail:
        vbd_files_clear(out);
        return st;
    }
    if (r.off != n) {
        vbd_files_clear(out);
        return err(msg, VB_S_BAD_REQUEST, "%zu bytes after the last record", n - r.off);
    }
    return VB_S_OK;
}

void vbd_problems_clear(struct vbd_problems *pr)
{
    free(pr->items);
    memset(pr, 0, sizeof(*pr));
}

int vbd_parse_problems(const uint8_t *p, size_t n, struct vbd_problems *out, char *msg)
{
    struct rd r = { p, n, 0 };
    struct vb_problems h;
    char why[160];

    memset(out, 0, sizeof(*out));
    if (!take(&r, &h, sizeof(h)))
        return err(msg, VB_S_BAD_REQUEST, "BACKUP_PROBLEMS payload too short");
    if (h.n == 0 || h.n > VB_MAX_PROBLEMS_PER_MSG || h.reserved)
        return err(msg, VB_S_BAD_REQUEST, "%u problems in one message (1..%u), or reserved "
                   "fields not 0", h.n, VB_MAX_PROBLEMS_PER_MSG);
    if ((uint64_t)h.n * 5 > n - r.off)
        return err(msg, VB_S_BAD_REQUEST, "%u problems cannot fit in %zu bytes", h.n, n);
    out->job = h.job;
    out->items = calloc(h.n, sizeof(*out->items));
    if (!out->items)
        return err(msg, VB_S_INTERNAL, "out of memory");
    out->n = h.n;
    for (uint32_t i = 0; i < h.n; i++) {
        struct vbd_problem *x = &out->items[i];
        size_t used;
        int st = vb_problem_decode(p + r.off, n - r.off, &x->path, &x->path_len, &x->reason,
                                   &x->reason_len, &used, why, sizeof(why));

        if (st) {
            vbd_problems_clear(out);
            return err(msg, st, "BACKUP_PROBLEMS item %u: %s", i, why);
        }
        r.off += used;
    }
    if (r.off != n) {
        vbd_problems_clear(out);
        return err(msg, VB_S_BAD_REQUEST, "%zu bytes after the last problem", n - r.off);
    }
    return VB_S_OK;
}

int vbd_parse_data(const uint8_t *p, size_t n, struct vbd_data *out, char *msg)
{
    struct vb_data d;

    if (n < sizeof(d))
        return err(msg, VB_S_BAD_REQUEST, "BACKUP_DATA payload too short");
    memcpy(&d, p, sizeof(d));
    if (d.len != n - sizeof(d))
        return err(msg, VB_S_BAD_REQUEST, "BACKUP_DATA says %u bytes but carries %zu", d.len,
                   n - sizeof(d));
    if (d.flags & ~VB_DATA_LAST)
        return err(msg, VB_S_BAD_REQUEST, "unknown BACKUP_DATA flags %#x", d.flags);
    if (d.offset > UINT64_MAX - d.len)
        return err(msg, VB_S_OUT_OF_RANGE, "BACKUP_DATA offset overflows");
    out->job = d.job;
    out->file = d.file;
    out->offset = d.offset;
    out->len = d.len;
    out->flags = d.flags;
    out->bytes = p + sizeof(d);
    return VB_S_OK;
}

int vbd_parse_job_ref(const uint8_t *p, size_t n, uint64_t *job, char *msg)
{
    if (n != sizeof(struct vb_job_ref))
        return err(msg, VB_S_BAD_REQUEST, "payload is %zu bytes, expected %zu", n,
                   sizeof(struct vb_job_ref));
    memcpy(job, p, 8);
    return VB_S_OK;
}

int vbd_parse_list(const uint8_t *p, size_t n, struct vbd_list *out, char *msg)
{
    struct rd r = { p, n, 0 };
    struct vb_list l;
    int st;

    memset(out, 0, sizeof(*out));
    if (!take(&r, &l, sizeof(l)))
        return err(msg, VB_S_BAD_REQUEST, "LIST payload too short");
    out->start = l.start;
    /* no target: the host's only target (the caller decides) */
    st = l.target_len ? name_field(&r, out->target, sizeof(out->target), l.target_len,
                                   "target name", msg) : VB_S_OK;
    if (st)
        return st;
    if (r.off != n)
        return err(msg, VB_S_BAD_REQUEST, "%zu bytes after the end of LIST", n - r.off);
    return VB_S_OK;
}

void vbd_restore_begin_clear(struct vbd_restore_begin *rb)
{
    for (unsigned i = 0; rb->paths && i < rb->n_paths; i++)
        free(rb->paths[i]);
    free(rb->paths);
    rb->paths = NULL;
    rb->n_paths = 0;
}

int vbd_parse_restore_begin(const uint8_t *p, size_t n, struct vbd_restore_begin *out, char *msg)
{
    struct rd r = { p, n, 0 };
    struct vb_restore_begin b;
    char why[96], shown[128];
    int st;

    memset(out, 0, sizeof(*out));
    if (!take(&r, &b, sizeof(b)))
        return err(msg, VB_S_BAD_REQUEST, "RESTORE_BEGIN payload too short");
    if (b.reserved)
        return err(msg, VB_S_BAD_REQUEST, "reserved fields must be 0");
    if (b.n_paths > VB_MAX_ROOTS)
        return err(msg, VB_S_BAD_REQUEST, "%u paths (at most %u)", b.n_paths, VB_MAX_ROOTS);
    st = name_field(&r, out->target, sizeof(out->target), b.target_len, "target name", msg);
    if (st)
        return st;
    if (b.snap_len == 0 || b.snap_len > VB_MAX_SNAPSHOT_ID || b.snap_len > r.n - r.off)
        return err(msg, VB_S_BAD_REQUEST, "snapshot id of %u bytes (1..%u)", b.snap_len,
                   VB_MAX_SNAPSHOT_ID);
    memcpy(out->snapshot, p + r.off, b.snap_len);
    out->snapshot[b.snap_len] = 0;
    r.off += b.snap_len;
    /* "latest", "TIME" or "VM/TIME": its shape is checked where it is resolved */
    if (strlen(out->snapshot) != b.snap_len ||
        strspn(out->snapshot, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                              "._:/-") != b.snap_len) {
        printable(shown, sizeof(shown), (const char *)p + r.off - b.snap_len, b.snap_len);
        return err(msg, VB_S_BAD_REQUEST, "snapshot id '%s' has characters that are not allowed",
                   shown);
    }
    out->paths = calloc(VB_MAX(b.n_paths, 1u), sizeof(char *));
    for (unsigned i = 0; i < b.n_paths; i++) {
        const char *s;
        uint16_t len;
        if (!take_str(&r, &s, &len)) {
            vbd_restore_begin_clear(out);
            return err(msg, VB_S_BAD_REQUEST, "RESTORE_BEGIN truncated in path %u", i);
        }
        if (!vbd_check_path(s, len, true, why, sizeof(why))) {
            printable(shown, sizeof(shown), s, VB_MIN(len, 60u));
            vbd_restore_begin_clear(out);
            return err(msg, VB_S_BAD_PATH, "path %u '%s': %s", i, shown, why);
        }
        out->paths[i] = g_strndup(s, len);
        out->n_paths = (uint16_t)(i + 1);
    }
    if (r.off != n) {
        vbd_restore_begin_clear(out);
        return err(msg, VB_S_BAD_REQUEST, "%zu bytes after the end of RESTORE_BEGIN", n - r.off);
    }
    return VB_S_OK;
}

int vbd_parse_restore_list(const uint8_t *p, size_t n, uint64_t *job, uint64_t *start, char *msg)
{
    struct vb_restore_list l;

    if (n != sizeof(l))
        return err(msg, VB_S_BAD_REQUEST, "RESTORE_LIST payload is %zu bytes, expected %zu", n,
                   sizeof(l));
    memcpy(&l, p, sizeof(l));
    *job = l.job;
    *start = l.start;
    return VB_S_OK;
}

int vbd_parse_restore_read(const uint8_t *p, size_t n, struct vb_restore_read *out, char *msg)
{
    if (n != sizeof(*out))
        return err(msg, VB_S_BAD_REQUEST, "RESTORE_READ payload is %zu bytes, expected %zu", n,
                   sizeof(*out));
    memcpy(out, p, sizeof(*out));
    if (out->reserved)
        return err(msg, VB_S_BAD_REQUEST, "reserved fields must be 0");
    if (out->len == 0)
        return err(msg, VB_S_BAD_REQUEST, "RESTORE_READ of 0 bytes");
    return VB_S_OK;
}
