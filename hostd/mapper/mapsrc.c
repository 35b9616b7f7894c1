/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The mapper's source of files (mapsrc.h). */
#include "mapsrc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ext2io.h"
#include "ext2walk.h"

struct mfs {
    ext2_filsys fs;
    struct vb_e2walk *walk;
};

struct mroot {
    char *abs;                   /* "/" or "/a/b" */
    ext2_ino_t ino;
    uint16_t fs;
};

struct msrc {
    const struct vb_mapspec *spec;
    int first_fd;
    struct vb_image *img[VB_MAX_DISKS];
    struct mfs fs[VB_MAX_ROOTS];
    struct mroot roots[VB_MAX_ROOTS];
    char **prune;                /* "/a/b", sorted */
    size_t n_prune;
    char *exclude[VB_MAPSPEC_MAX_EXCLUDE];
};

static char *with_slash(const char *p)
{
    char *s = malloc(strlen(p) + 2);

    if (s) {
        s[0] = '/';
        strcpy(s + 1, p);
    }
    return s;
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool is_other_root(void *ctx, const char *abs)
{
    struct msrc *m = ctx;

    for (unsigned i = 0; i < m->spec->n_roots; i++)
        if (m->roots[i].abs && !strcmp(m->roots[i].abs, abs))
            return true;
    return false;
}

/* a mount point of another file system: sent as a folder, not walked into */
static bool is_pruned(void *ctx, const char *abs)
{
    struct msrc *m = ctx;

    return m->n_prune && bsearch(&abs, m->prune, m->n_prune, sizeof(char *), str_cmp);
}

static int open_fs(struct msrc *m, unsigned i, struct vbc_backup_opts *o, struct vbc_err *e)
{
    const struct vb_mapspec_fs *sf = &m->spec->fs[i];
    struct vb_e2walk_opts wo = {
        .o = o, .disk = sf->disk, .disk_offset = sf->offset, .fsid = i + 1,
        .skip = is_other_root, .no_descend = is_pruned, .ctx = m, .strict = true,
    };
    struct ext2_super_block *sb;
    errcode_t err;

    err = vb_ext2io_open(m->img[sf->disk], sf->offset, EXT2_FLAG_64BITS, &m->fs[i].fs);
    if (err)
        return vbc_seterr(e, -EIO, "file system %u (disk %u at %llu): not an ext2/3/4 file "
                          "system the host can read: %s%s%s", i, sf->disk,
                          (unsigned long long)sf->offset, error_message(err),
                          vb_ext2io_last_error()[0] ? ": " : "", vb_ext2io_last_error());
    sb = m->fs[i].fs->super;
    if (ext2fs_has_feature_journal_needs_recovery(sb))
        return vbc_seterr(e, -EBUSY, "file system %u: its journal holds changes (it was not "
                          "frozen when the view was taken)", i);
    if (ext2fs_has_feature_journal_dev(sb))
        return vbc_seterr(e, -EOPNOTSUPP, "file system %u is an external journal", i);
    return vb_e2walk_new(m->fs[i].fs, &wo, &m->fs[i].walk, e);
}

static int ms_prepare(void *s, struct vbc_backup_opts *o, struct vbc_err *e)
{
    struct msrc *m = s;
    const struct vb_mapspec *sp = m->spec;
    int fd = m->first_fd, rc;

    o->n_exclude = sp->n_exclude;
    o->exclude = m->exclude;
    for (unsigned i = 0; i < sp->n_exclude; i++)
        m->exclude[i] = sp->exclude[i];
    for (unsigned d = 0; d < sp->n_disks; d++) {
        int fds[VB_MAPSPEC_MAX_LAYERS];
        enum vb_fmt fmts[VB_MAPSPEC_MAX_LAYERS];
        vb_error ve = { 0 };

        for (unsigned k = 0; k < sp->disks[d].n_layers; k++) {
            fds[k] = fd++;
            fmts[k] = sp->disks[d].fmt[k] == VB_MAPSPEC_QCOW2 ? VB_FMT_QCOW2 : VB_FMT_RAW;
        }
        if (vb_image_open_fds(fds, fmts, sp->disks[d].n_layers, &m->img[d], &ve))
            return vbc_seterr(e, ve.code ? ve.code : -EIO, "disk %u: %s", d, ve.msg);
    }
    m->prune = calloc(sp->n_prune ? sp->n_prune : 1, sizeof(char *));
    if (!m->prune)
        return vbc_seterr(e, -ENOMEM, "out of memory");
    for (unsigned i = 0; i < sp->n_prune; i++)
        if (!(m->prune[m->n_prune++] = with_slash(sp->prune[i])))
            return vbc_seterr(e, -ENOMEM, "out of memory");
    qsort(m->prune, m->n_prune, sizeof(char *), str_cmp);
    for (unsigned i = 0; i < sp->n_fs; i++)
        if ((rc = open_fs(m, i, o, e)))
            return rc;
    for (unsigned i = 0; i < sp->n_roots; i++) {
        const struct vb_mapspec_root *r = &sp->roots[i];
        struct mroot *x = &m->roots[i];

        if (!(x->abs = with_slash(r->abs)))
            return vbc_seterr(e, -ENOMEM, "out of memory");
        x->fs = r->fs;
        if ((rc = vb_e2walk_lookup(m->fs[r->fs].walk, r->inside, strlen(r->inside), &x->ino,
                                   e))) {
            vbc_prefixerr(e, "root %u", i);
            return rc;
        }
    }
    o->n_roots = sp->n_roots;
    return 0;
}

static int ms_walk(void *s, int (*emit)(void *, const struct vbc_file *, const struct vbc_fb *,
                                        struct vbc_err *),
                   void *ctx, struct vbc_err *e)
{
    struct msrc *m = s;
    int rc = 0;

    for (unsigned i = 0; i < m->spec->n_roots && !rc; i++) {
        /* "/" as its root's path: the walk's children of "/" are "/name" */
        const char *abs = m->roots[i].abs[1] ? m->roots[i].abs : "/";

        rc = vb_e2walk_visit(m->fs[m->roots[i].fs].walk, m->roots[i].ino, abs, emit, ctx, e);
    }
    return rc;
}

/* A fallback file's root: the fs of the longest root its path starts with. */
static int fs_of(struct msrc *m, const char *path)
{
    size_t best = 0;
    int fs = -1;

    for (unsigned i = 0; i < m->spec->n_roots; i++) {
        const char *a = m->roots[i].abs[1] ? m->roots[i].abs : "";
        size_t l = strlen(a);

        if (!strncmp(path, a, l) && (path[l] == '/' || path[l] == 0) && (fs < 0 || l >= best)) {
            best = l;
            fs = m->roots[i].fs;
        }
    }
    return fs;
}

static int ms_open_data(void *s, const struct vbc_fb *fb, void **h, struct vbc_err *e)
{
    struct msrc *m = s;
    int fs = fb->path ? fs_of(m, fb->path) : -1;

    if (fs < 0)
        return vbc_seterr(e, -EINVAL, "a fallback file outside the roots");
    return vb_e2walk_open_data(m->fs[fs].walk, fb, h, e);
}

static int ms_read_data(void *s, void *h, uint64_t off, void *buf, size_t len, size_t *got,
                        struct vbc_err *e)
{
    (void)s;
    return vb_e2walk_read_data(h, off, buf, len, got, e);
}

static void ms_close_data(void *s, void *h)
{
    (void)s;
    vb_e2walk_close_data(h);
}

const struct vbc_source_ops vb_mapsrc_ops = {
    .prepare = ms_prepare,
    .walk = ms_walk,
    .open_data = ms_open_data,
    .read_data = ms_read_data,
    .close_data = ms_close_data,
};

void *vb_mapsrc_new(const struct vb_mapspec *spec, int first_fd)
{
    struct msrc *m = calloc(1, sizeof(*m));

    if (m) {
        m->spec = spec;
        m->first_fd = first_fd;
    }
    return m;
}

void vb_mapsrc_free(void *src)
{
    struct msrc *m = src;

    if (!m)
        return;
    for (unsigned i = 0; i < VB_MAX_ROOTS; i++) {
        vb_e2walk_free(m->fs[i].walk);
        if (m->fs[i].fs)
            ext2fs_close_free(&m->fs[i].fs);
        free(m->roots[i].abs);
    }
    for (size_t i = 0; i < m->n_prune; i++)
        free(m->prune[i]);
    free(m->prune);
    for (unsigned d = 0; d < VB_MAX_DISKS; d++)
        vb_image_close(m->img[d]);
    free(m);
}
