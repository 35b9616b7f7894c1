/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Files snapshots on the host: list a snapshot's tree, and restore files
 * into a folder of the host (for a VM that cannot boot, or to inspect a
 * backup).  Holes stay holes, hard links are links again, owners are set
 * when running as root, times to the nanosecond.  Chunks are checked (CRC,
 * SHA-256) as they are read.
 */
#include "filerestore.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "progress.h"
#include "vbackup/proto.h"

int vb_files_catalog(struct vb_repo *r, const struct vb_snapshot *s, struct vb_catalog **cat,
                     vb_error *e)
{
    json_object *co = json_object_object_get(s->json, "catalog");
    const char *file = vb_json_str(co, "file");
    char path[PATH_MAX];
    int ret;

    if (s->type != VB_SNAP_FILES)
        return vb_seterr(e, -EINVAL, "snapshot %s is a disk snapshot (restore-disk restores it)",
                         s->id);
    if (!file || strchr(file, '/'))
        return vb_seterr(e, -EBADMSG, "snapshot %s names no catalog", s->id);
    snprintf(path, sizeof(path), "%s/snapshots/%s/%s", r->path, s->id, file);
    ret = vb_cat_load(path, vb_json_str(co, "sha256"), cat, e);
    if (ret)
        vb_prefixerr(e, "snapshot %s", s->id);
    return ret;
}

int vb_files_open(struct vb_repo *r, const char *id, struct vb_snapshot **snap,
                  struct vb_catalog **cat, vb_error *e)
{
    int ret = vb_snap_load(r, id, snap, e);

    if (ret)
        return ret;
    ret = vb_files_catalog(r, *snap, cat, e);
    if (ret) {
        vb_snap_free(*snap);
        *snap = NULL;
    }
    return ret;
}

static gint cmp_u64(gconstpointer a, gconstpointer b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

int vb_files_select(struct vb_catalog *cat, char **paths, int n, GArray **out, vb_error *e)
{
    GArray *sel = g_array_new(FALSE, FALSE, sizeof(uint64_t));

    for (int i = 0; i < (n ? n : 1); i++) {
        const char *p = n ? paths[i] : "";
        uint64_t self, first, end;
        while (*p == '/')
            p++;            /* "/srv" and "srv" name the same entry */
        size_t len = strlen(p);
        while (len && p[len - 1] == '/')
            len--;
        vb_cat_subtree(cat, p, len, &self, &first, &end);
        if (len && self == VB_CAT_NONE && first == end) {
            g_array_free(sel, TRUE);
            return vb_seterr(e, -ENOENT, "'%s' is not in the snapshot", paths[i]);
        }
        if (self != VB_CAT_NONE)
            g_array_append_val(sel, self);
        for (uint64_t x = first; x < end; x++)
            g_array_append_val(sel, x);
    }
    g_array_sort(sel, cmp_u64);
    {
        guint w = 0;
        for (guint i = 0; i < sel->len; i++)
            if (!w || g_array_index(sel, uint64_t, w - 1) != g_array_index(sel, uint64_t, i))
                g_array_index(sel, uint64_t, w++) = g_array_index(sel, uint64_t, i);
        g_array_set_size(sel, w);
    }
    *out = sel;
    return 0;
}

/* "a/b/../c" cannot occur (paths are checked when stored), but a damaged or
 * hostile catalog must still not write outside the destination */
static bool safe_rel(const char *p, size_t n)
{
    if (!n || p[0] == '/' || memchr(p, 0, n))
        return false;
    for (size_t i = 0, c = 0; i <= n; i++) {
        if (i == n || p[i] == '/') {
            if (c == 0 || (c == 2 && p[i - 2] == '.' && p[i - 1] == '.') ||
                (c == 1 && p[i - 1] == '.'))
                return false;
            c = 0;
        } else {
            c++;
        }
    }
    return true;
}

static int write_file(struct vb_repo *r, struct vb_codec *c, const struct vb_catalog *cat,
                      const struct vb_cat_entry *src, int fd, uint8_t **buf, size_t *cap,
                      uint64_t *done, struct vb_progress *prog, vb_error *e)
{
    for (uint64_t k = 0; k < src->n_chunks; k++) {
        const struct vb_cat_chunk *ch = &cat->c[src->first_chunk + k];
        size_t got;
        int ret;

        if (*cap < ch->len) {
            g_free(*buf);
            *buf = g_malloc(ch->len);
            *cap = ch->len;
        }
        ret = vb_repo_get_chunk(r, c, ch->id, *buf, ch->len, &got, e);
        if (ret)
            return ret;
        if (got != ch->len || ch->offset + ch->len > src->size)
            return vb_seterr(e, -EBADMSG, "a chunk does not match the catalog");
        if (pwrite(fd, *buf, ch->len, (off_t)ch->offset) != (ssize_t)ch->len)
            return vb_seterr(e, -errno, "write: %s", strerror(errno));
        *done += ch->len;
        vb_progress_update(prog, *done);
    }
    if (ftruncate(fd, (off_t)src->size) < 0)     /* the tail hole */
        return vb_seterr(e, -errno, "truncate: %s", strerror(errno));
    return 0;
}

static void set_meta(int dirfd, const char *rel, const struct vb_cat_entry *m, bool root)
{
    struct timespec ts[2] = {
        { .tv_sec = m->atime_ns / 1000000000, .tv_nsec = m->atime_ns % 1000000000 },
        { .tv_sec = m->mtime_ns / 1000000000, .tv_nsec = m->mtime_ns % 1000000000 },
    };

    if (root)
        fchownat(dirfd, rel, m->uid, m->gid, AT_SYMLINK_NOFOLLOW);
    if (m->type != VB_FT_SYMLINK)
        fchmodat(dirfd, rel, m->mode & 07777, 0);
    utimensat(dirfd, rel, ts, AT_SYMLINK_NOFOLLOW);
}

int vb_files_restore(struct vb_repo *r, const struct vb_files_restore_opts *o,
                     struct vb_files_restore_stats *st, vb_error *e)
{
    struct vb_snapshot *snap = NULL;
    struct vb_catalog *cat = NULL;
    GArray *sel = NULL;
    struct vb_codec codec;
    struct vb_progress prog;
    uint8_t *buf = NULL;
    size_t cap = 0;
    uint64_t total = 0, done = 0;
    bool root = geteuid() == 0;
    int dfd = -1, ret;

    memset(st, 0, sizeof(*st));
    ret = vb_files_open(r, o->snapshot, &snap, &cat, e);
    if (ret)
        return ret;
    ret = vb_files_select(cat, o->paths, o->n_paths, &sel, e);
    if (ret)
        goto out;
    if (vb_mkdir_p(o->to, 0755) || (dfd = open(o->to, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        ret = vb_seterr(e, -errno, "%s: %s", o->to, strerror(errno));
        goto out;
    }
    vb_codec_init(&codec, 1);
    for (guint i = 0; i < sel->len; i++) {
        const struct vb_cat_entry *m = &cat->e[g_array_index(sel, uint64_t, i)];
        for (uint64_t k = 0; m->type == VB_FT_REG && m->hardlink == VB_CAT_NONE &&
                             k < m->n_chunks; k++)
            total += cat->c[m->first_chunk + k].len;
    }
    vb_progress_init(&prog, "restore", total, o->progress);
    for (guint i = 0; i < sel->len && !ret; i++) {
        uint64_t idx = g_array_index(sel, uint64_t, i);
        const struct vb_cat_entry *m = &cat->e[idx];
        size_t pl;
        const char *p = vb_cat_path(cat, idx, &pl);
        g_autofree char *rel = g_strndup(p, pl);
        g_autofree char *parent = g_path_get_dirname(rel);

        if (!safe_rel(p, pl)) {
            ret = vb_seterr(e, -EINVAL, "refusing the unsafe path '%s'", rel);
            break;
        }
        if (strcmp(parent, ".")) {
            g_autofree char *full = g_build_filename(o->to, parent, NULL);
            vb_mkdir_p(full, 0755);
        }
        /* replace what is there, except a folder by a folder */
        if (m->type != VB_FT_DIR)
            unlinkat(dfd, rel, 0);
        switch (m->type) {
        case VB_FT_DIR:
            if (mkdirat(dfd, rel, 0700) < 0 && errno != EEXIST)
                ret = vb_seterr(e, -errno, "mkdir %s: %s", rel, strerror(errno));
            break;
        case VB_FT_SYMLINK: {
            g_autofree char *target = g_strndup(cat->str + m->link_off, m->link_len);
            if (symlinkat(target, dfd, rel) < 0)
                ret = vb_seterr(e, -errno, "symlink %s: %s", rel, strerror(errno));
            break;
        }
        case VB_FT_REG:
            if (m->hardlink != VB_CAT_NONE) {
                size_t ml;
                const char *mp = vb_cat_path(cat, m->hardlink, &ml);
                g_autofree char *master = g_strndup(mp, ml);
                if (linkat(dfd, master, dfd, rel, 0) == 0) {
                    st->files++;
                    continue;       /* the link shares the first link's metadata */
                }
                /* the first link was not restored: write the data here */
                m = &cat->e[m->hardlink];
            }
            {
                int fd = openat(dfd, rel, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
                if (fd < 0) {
                    ret = vb_seterr(e, -errno, "create %s: %s", rel, strerror(errno));
                    break;
                }
                ret = write_file(r, &codec, cat, m, fd, &buf, &cap, &done, &prog, e);
                if (close(fd) < 0 && !ret)
                    ret = vb_seterr(e, -errno, "close %s: %s", rel, strerror(errno));
                if (ret)
                    vb_prefixerr(e, "%s", rel);
                st->files++;
            }
            break;
        case VB_FT_FIFO:
        case VB_FT_CHR:
        case VB_FT_BLK:
        case VB_FT_SOCK: {
            mode_t t = m->type == VB_FT_FIFO ? S_IFIFO : m->type == VB_FT_CHR ? S_IFCHR
                     : m->type == VB_FT_BLK ? S_IFBLK : S_IFSOCK;
            dev_t dev = makedev((m->rdev >> 8) & 0xfff, (m->rdev & 0xff) | ((m->rdev >> 12) & 0xfff00));
            if (m->type == VB_FT_SOCK)
                break;          /* sockets are not restored */
            if (mknodat(dfd, rel, t | 0600, dev) < 0 && !(errno == EPERM && !root))
                ret = vb_seterr(e, -errno, "mknod %s: %s", rel, strerror(errno));
            break;
        }
        }
        if (!ret && m->type != VB_FT_DIR)
            set_meta(dfd, rel, m, root);
        if (!ret && m->type == VB_FT_DIR)
            st->dirs++;
    }
    /* folders last, deepest first, so that their times stay */
    for (guint i = sel->len; i-- > 0 && !ret;) {
        uint64_t idx = g_array_index(sel, uint64_t, i);
        const struct vb_cat_entry *m = &cat->e[idx];
        size_t pl;
        const char *p = vb_cat_path(cat, idx, &pl);
        g_autofree char *rel = g_strndup(p, pl);
        if (m->type == VB_FT_DIR && safe_rel(p, pl))
            set_meta(dfd, rel, m, root);
    }
    vb_progress_end(&prog);
    st->bytes = done;
    vb_codec_free(&codec);
out:
    if (dfd >= 0)
        close(dfd);
    g_free(buf);
    if (sel)
        g_array_free(sel, TRUE);
    vb_cat_free(cat);
    vb_snap_free(snap);
    return ret;
}
