/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The mapper's job description (mapspec.h). */
#include "mapspec.h"

#include <endian.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "vbackup/protolib.h"

/* ---- encoding ------------------------------------------------------------- */

struct out {
    uint8_t *p;
    size_t len, cap;
    bool oom;
};

static void put(struct out *o, const void *v, size_t n)
{
    if (o->oom)
        return;
    if (o->len + n > o->cap) {
        size_t nc = o->cap ? o->cap * 2 : 1024;
        uint8_t *np;

        while (nc < o->len + n)
            nc *= 2;
        if (!(np = realloc(o->p, nc))) {
            o->oom = true;
            return;
        }
        o->p = np;
        o->cap = nc;
    }
    memcpy(o->p + o->len, v, n);
    o->len += n;
}

static void put8(struct out *o, uint8_t v)
{
    put(o, &v, 1);
}

static void put16(struct out *o, uint16_t v)
{
    v = htole16(v);
    put(o, &v, 2);
}

static void put32(struct out *o, uint32_t v)
{
    v = htole32(v);
    put(o, &v, 4);
}

static void put64(struct out *o, uint64_t v)
{
    v = htole64(v);
    put(o, &v, 8);
}

static void putstr(struct out *o, const char *s)
{
    size_t n = strlen(s);

    if (n > UINT16_MAX) {
        o->oom = true;               /* the decoder would refuse it: refuse it here */
        return;
    }
    put16(o, (uint16_t)n);
    put(o, s, n);
}

uint8_t *vb_mapspec_encode(const struct vb_mapspec *s, size_t *len)
{
    struct out o = { 0 };

    put32(&o, VB_MAPSPEC_MAGIC);
    put16(&o, VB_MAPSPEC_VERSION);
    put16(&o, s->n_disks);
    put16(&o, s->n_fs);
    put16(&o, s->n_roots);
    put16(&o, s->n_prune);
    put16(&o, s->n_exclude);
    put64(&o, s->job);
    for (unsigned i = 0; i < s->n_disks; i++) {
        put16(&o, s->disks[i].n_layers);
        for (unsigned k = 0; k < s->disks[i].n_layers && k < VB_MAPSPEC_MAX_LAYERS; k++)
            put8(&o, s->disks[i].fmt[k]);
    }
    for (unsigned i = 0; i < s->n_fs; i++) {
        put16(&o, s->fs[i].disk);
        put64(&o, s->fs[i].offset);
    }
    for (unsigned i = 0; i < s->n_roots; i++) {
        put16(&o, s->roots[i].fs);
        putstr(&o, s->roots[i].inside);
        putstr(&o, s->roots[i].abs);
    }
    for (unsigned i = 0; i < s->n_prune; i++)
        putstr(&o, s->prune[i]);
    for (unsigned i = 0; i < s->n_exclude; i++)
        putstr(&o, s->exclude[i]);
    if (o.oom) {
        free(o.p);
        return NULL;
    }
    *len = o.len;
    return o.p;
}

/* ---- decoding ------------------------------------------------------------- */

struct in {
    const uint8_t *p;
    size_t n, off;
};

static bool take(struct in *r, void *dst, size_t len)
{
    if (len > r->n - r->off)
        return false;
    memcpy(dst, r->p + r->off, len);
    r->off += len;
    return true;
}

static bool take16(struct in *r, uint16_t *v)
{
    if (!take(r, v, 2))
        return false;
    *v = le16toh(*v);
    return true;
}

static bool take64(struct in *r, uint64_t *v)
{
    if (!take(r, v, 8))
        return false;
    *v = le64toh(*v);
    return true;
}

/* A counted string without NUL, as a C string. */
static bool takestr(struct in *r, char **s, size_t max)
{
    uint16_t len;

    if (!take16(r, &len) || len > max || len > r->n - r->off ||
        memchr(r->p + r->off, 0, len))
        return false;
    if (!(*s = malloc((size_t)len + 1)))
        return false;
    memcpy(*s, r->p + r->off, len);
    (*s)[len] = 0;
    r->off += len;
    return true;
}

void vb_mapspec_clear(struct vb_mapspec *s)
{
    for (unsigned i = 0; i < VB_MAX_ROOTS; i++) {
        free(s->roots[i].inside);
        free(s->roots[i].abs);
    }
    for (unsigned i = 0; i < VB_MAPSPEC_MAX_PRUNE; i++)
        free(s->prune[i]);
    for (unsigned i = 0; i < VB_MAPSPEC_MAX_EXCLUDE; i++)
        free(s->exclude[i]);
    memset(s, 0, sizeof(*s));
}

unsigned vb_mapspec_n_fds(const struct vb_mapspec *s)
{
    unsigned n = 0;

    for (unsigned i = 0; i < s->n_disks; i++)
        n += s->disks[i].n_layers;
    return n;
}

static const char *fail(struct vb_mapspec *s, const char *why)
{
    vb_mapspec_clear(s);
    return why;
}

const char *vb_mapspec_decode(const uint8_t *p, size_t n, struct vb_mapspec *s)
{
    struct in r = { p, n, 0 };
    uint32_t magic;
    uint16_t version;

    memset(s, 0, sizeof(*s));
    if (n > VB_MAPSPEC_MAX_BYTES)
        return "the job description is too large";
    if (!take(&r, &magic, 4) || le32toh(magic) != VB_MAPSPEC_MAGIC || !take16(&r, &version))
        return "not a job description";
    if (version != VB_MAPSPEC_VERSION)
        return "a job description of another version";
    if (!take16(&r, &s->n_disks) || !take16(&r, &s->n_fs) || !take16(&r, &s->n_roots) ||
        !take16(&r, &s->n_prune) || !take16(&r, &s->n_exclude) || !take64(&r, &s->job))
        return fail(s, "the job description is truncated");
    if (s->n_disks < 1 || s->n_disks > VB_MAX_DISKS || s->n_fs < 1 || s->n_fs > VB_MAX_ROOTS ||
        s->n_roots < 1 || s->n_roots > VB_MAX_ROOTS || s->n_prune > VB_MAPSPEC_MAX_PRUNE ||
        s->n_exclude > VB_MAPSPEC_MAX_EXCLUDE) {
        s->n_disks = s->n_fs = s->n_roots = s->n_prune = s->n_exclude = 0;
        return fail(s, "counts out of range in the job description");
    }
    for (unsigned i = 0; i < s->n_disks; i++) {
        struct vb_mapspec_disk *d = &s->disks[i];

        if (!take16(&r, &d->n_layers) || d->n_layers < 1 || d->n_layers > VB_MAPSPEC_MAX_LAYERS ||
            !take(&r, d->fmt, d->n_layers))
            return fail(s, "a disk's chain is out of range");
        for (unsigned k = 0; k < d->n_layers; k++)
            if (d->fmt[k] != VB_MAPSPEC_RAW && d->fmt[k] != VB_MAPSPEC_QCOW2)
                return fail(s, "an unknown image format");
    }
    if (vb_mapspec_n_fds(s) > VB_MAPSPEC_MAX_FDS)
        return fail(s, "too many images");
    for (unsigned i = 0; i < s->n_fs; i++) {
        if (!take16(&r, &s->fs[i].disk) || !take64(&r, &s->fs[i].offset) ||
            s->fs[i].disk >= s->n_disks)
            return fail(s, "a file system's disk is out of range");
    }
    for (unsigned i = 0; i < s->n_roots; i++) {
        struct vb_mapspec_root *x = &s->roots[i];

        if (!take16(&r, &x->fs) || x->fs >= s->n_fs)
            return fail(s, "a root's file system is out of range");
        if (!takestr(&r, &x->inside, VB_MAX_PATH) || !takestr(&r, &x->abs, VB_MAX_PATH))
            return fail(s, "a root is truncated");
        if (vb_path_check(x->inside, strlen(x->inside), true) ||
            vb_path_check(x->abs, strlen(x->abs), true))
            return fail(s, "a root is not a path");
    }
    for (unsigned i = 0; i < s->n_prune; i++) {
        if (!takestr(&r, &s->prune[i], VB_MAX_PATH))
            return fail(s, "a mount point is truncated");
        if (vb_path_check(s->prune[i], strlen(s->prune[i]), false))
            return fail(s, "a mount point is not a path");
    }
    for (unsigned i = 0; i < s->n_exclude; i++)
        if (!takestr(&r, &s->exclude[i], VB_MAPSPEC_MAX_PATTERN) || !s->exclude[i][0])
            return fail(s, "an exclusion is truncated or empty");
    if (r.off != n)
        return fail(s, "bytes after the end of the job description");
    return NULL;
}
