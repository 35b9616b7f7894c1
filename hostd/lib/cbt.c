/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Changed-block tracking: the record, its proofs, the change set (cbt.h). */
#include "cbt.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qcow2.h"
#include "snapshot.h"       /* vb_json_str, vb_json_int */

/* ---- file identities ---------------------------------------------------------------- */

int vb_file_id_get(const char *path, struct vb_file_id *id, vb_error *e)
{
    struct stat st;

    if (stat(path, &st) < 0)
        return vb_seterr(e, -errno, "stat %s: %s", path, strerror(errno));
    id->dev = (uint64_t)st.st_dev;
    id->ino = (uint64_t)st.st_ino;
    id->size = (uint64_t)st.st_size;
    id->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    return 0;
}

bool vb_file_id_same(const struct vb_file_id *a, const struct vb_file_id *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime_ns == b->mtime_ns;
}

static json_object *id_json(const struct vb_file_id *id)
{
    json_object *o = json_object_new_object();

    json_object_object_add(o, "dev", json_object_new_int64((int64_t)id->dev));
    json_object_object_add(o, "ino", json_object_new_int64((int64_t)id->ino));
    json_object_object_add(o, "size", json_object_new_int64((int64_t)id->size));
    json_object_object_add(o, "mtime_ns", json_object_new_int64(id->mtime_ns));
    return o;
}

static bool id_from_json(json_object *o, struct vb_file_id *id)
{
    static const char *const keys[] = { "dev", "ino", "size", "mtime_ns" };
    json_object *v;

    for (size_t i = 0; i < VB_ARRAY_SIZE(keys); i++)
        if (!json_object_object_get_ex(o, keys[i], &v) || !json_object_is_type(v, json_type_int))
            return false;
    id->dev = (uint64_t)vb_json_int(o, "dev", 0);
    id->ino = (uint64_t)vb_json_int(o, "ino", 0);
    id->size = (uint64_t)vb_json_int(o, "size", 0);
    id->mtime_ns = vb_json_int(o, "mtime_ns", 0);
    return true;
}

/* ---- the record --------------------------------------------------------------------- */

void vb_cbt_free(struct vb_cbt_record *r)
{
    if (!r)
        return;
    for (unsigned i = 0; i < r->n_chain; i++)
        g_free(r->chain[i]);
    g_free(r->chain);
    g_free(r->ids);
    g_free(r->vm);
    g_free(r->disk);
    g_free(r->image);
    g_free(r->format);
    g_free(r->overlay);
    g_free(r->previous);
    g_free(r->basis_repo);
    g_free(r->basis);
    g_free(r->boot_id);
    g_free(r);
}

struct vb_cbt_record *vb_cbt_copy(const struct vb_cbt_record *r)
{
    struct vb_cbt_record *c;

    if (!r)
        return NULL;
    c = g_memdup2(r, sizeof(*r));
    c->vm = g_strdup(r->vm);
    c->disk = g_strdup(r->disk);
    c->image = g_strdup(r->image);
    c->format = g_strdup(r->format);
    c->overlay = g_strdup(r->overlay);
    c->previous = g_strdup(r->previous);
    c->basis_repo = g_strdup(r->basis_repo);
    c->basis = g_strdup(r->basis);
    c->boot_id = g_strdup(r->boot_id);
    c->chain = g_new0(char *, VB_MAX(r->n_chain, 1u));
    c->ids = g_new0(struct vb_file_id, VB_MAX(r->n_chain, 1u));
    for (unsigned i = 0; i < r->n_chain; i++) {
        c->chain[i] = g_strdup(r->chain[i]);
        c->ids[i] = r->ids[i];
    }
    return c;
}

static void add_str(json_object *o, const char *k, const char *v)
{
    if (v)
        json_object_object_add(o, k, json_object_new_string(v));
}

json_object *vb_cbt_to_json(const struct vb_cbt_record *r)
{
    json_object *o = json_object_new_object(), *chain = json_object_new_array();

    json_object_object_add(o, "version", json_object_new_int(VB_CBT_VERSION));
    add_str(o, "vm", r->vm);
    add_str(o, "disk", r->disk);
    add_str(o, "state", r->ready ? "ready" : "pending");
    add_str(o, "image", r->image);
    add_str(o, "format", r->format);
    add_str(o, "overlay", r->overlay);
    add_str(o, "previous", r->previous);
    json_object_object_add(o, "overlay_dev", json_object_new_int64((int64_t)r->overlay_dev));
    json_object_object_add(o, "overlay_ino", json_object_new_int64((int64_t)r->overlay_ino));
    json_object_object_add(o, "job", json_object_new_int64((int64_t)r->job));
    json_object_object_add(o, "size", json_object_new_int64((int64_t)r->size));
    for (unsigned i = 0; i < r->n_chain; i++) {
        json_object *f = json_object_new_object();
        json_object_object_add(f, "path", json_object_new_string(r->chain[i]));
        json_object_object_add(f, "id", id_json(&r->ids[i]));
        json_object_array_add(chain, f);
    }
    json_object_object_add(o, "chain", chain);
    if (r->ready) {
        json_object *b = json_object_new_object();
        add_str(b, "repository", r->basis_repo);
        add_str(b, "snapshot", r->basis);
        json_object_object_add(o, "basis", b);
    }
    json_object_object_add(o, "written_ns", json_object_new_int64(r->written_ns));
    add_str(o, "boot_id", r->boot_id);
    return o;
}

static char *dup_str(json_object *o, const char *k)
{
    const char *s = vb_json_str(o, k);

    return s ? g_strdup(s) : NULL;
}

struct vb_cbt_record *vb_cbt_from_json(json_object *o, vb_error *e)
{
    struct vb_cbt_record *r;
    json_object *chain, *basis;
    const char *state = vb_json_str(o, "state");
    size_t n;

    if (!o || !json_object_is_type(o, json_type_object)) {
        vb_seterr(e, -EINVAL, "not a JSON object");
        return NULL;
    }
    if (vb_json_int(o, "version", 0) != VB_CBT_VERSION) {
        vb_seterr(e, -EINVAL, "version %lld, not %d", (long long)vb_json_int(o, "version", 0),
                  VB_CBT_VERSION);
        return NULL;
    }
    r = g_new0(struct vb_cbt_record, 1);
    r->vm = dup_str(o, "vm");
    r->disk = dup_str(o, "disk");
    r->image = dup_str(o, "image");
    r->format = dup_str(o, "format");
    r->overlay = dup_str(o, "overlay");
    r->previous = dup_str(o, "previous");
    r->boot_id = dup_str(o, "boot_id");
    r->ready = state && !strcmp(state, "ready");
    r->overlay_dev = (uint64_t)vb_json_int(o, "overlay_dev", 0);
    r->overlay_ino = (uint64_t)vb_json_int(o, "overlay_ino", 0);
    r->job = (uint64_t)vb_json_int(o, "job", 0);
    r->size = (uint64_t)vb_json_int(o, "size", 0);
    r->written_ns = vb_json_int(o, "written_ns", 0);
    if (!r->vm || !r->disk || !r->image || !r->overlay || !state ||
        (strcmp(state, "ready") && strcmp(state, "pending")) ||
        !vb_fmt_valid(r->format) || r->image[0] != '/' || r->overlay[0] != '/' ||
        (r->previous && r->previous[0] != '/')) {
        vb_seterr(e, -EINVAL, "a field is missing or invalid");
        goto bad;
    }
    if (!json_object_object_get_ex(o, "chain", &chain) ||
        !json_object_is_type(chain, json_type_array) ||
        (n = json_object_array_length(chain)) < 1 || n > VB_MAX_CHAIN) {
        vb_seterr(e, -EINVAL, "no chain, or one of more than %d files", VB_MAX_CHAIN);
        goto bad;
    }
    r->chain = g_new0(char *, n);
    r->ids = g_new0(struct vb_file_id, n);
    for (size_t i = 0; i < n; i++) {
        json_object *f = json_object_array_get_idx(chain, i), *id;
        const char *p = vb_json_str(f, "path");
        r->n_chain++;
        if (!p || p[0] != '/' || !json_object_object_get_ex(f, "id", &id) ||
            !id_from_json(id, &r->ids[i])) {
            vb_seterr(e, -EINVAL, "chain file %zu is invalid", i);
            goto bad;
        }
        r->chain[i] = g_strdup(p);
    }
    if (strcmp(r->chain[0], r->image)) {
        vb_seterr(e, -EINVAL, "the chain does not begin with the image");
        goto bad;
    }
    if (r->ready) {
        if (!json_object_object_get_ex(o, "basis", &basis) ||
            !(r->basis_repo = dup_str(basis, "repository")) ||
            !(r->basis = dup_str(basis, "snapshot")) || !vb_snap_valid_id(r->basis)) {
            vb_seterr(e, -EINVAL, "a ready record without its basis");
            goto bad;
        }
    }
    return r;
bad:
    vb_cbt_free(r);
    return NULL;
}

int vb_cbt_path(const char *state_dir, const char *vm, const char *disk, char *out, size_t len)
{
    int n;

    if (vb_valid_name(disk)) {
        n = snprintf(out, len, "%s/cbt/%s/%s.json", state_dir, vm, disk);
    } else {
        char hex[2 * 64 + 1];
        size_t dl = strlen(disk);
        if (dl > 64)
            return -ENAMETOOLONG;
        vb_hex((const uint8_t *)disk, dl, hex);
        n = snprintf(out, len, "%s/cbt/%s/x-%s.json", state_dir, vm, hex);
    }
    return n < 0 || (size_t)n >= len || !vb_valid_name(vm) ? -ENAMETOOLONG : 0;
}

int vb_cbt_load(const char *state_dir, const char *vm, const char *disk,
                struct vb_cbt_record **out, vb_error *e)
{
    char path[4096], *data = NULL;
    size_t len;
    json_object *o;
    vb_error e1 = { 0 };
    int ret;

    *out = NULL;
    if ((ret = vb_cbt_path(state_dir, vm, disk, path, sizeof(path))))
        return vb_seterr(e, ret, "tracking record of %s/%s: name too long", vm, disk);
    ret = vb_read_file(path, &data, &len, 1 << 20, &e1);
    if (ret == -ENOENT)
        return ret;
    if (ret)
        return vb_seterr(e, ret, "%s", vb_strerror(&e1));
    o = json_tokener_parse(data);
    free(data);
    if (!o)
        return vb_seterr(e, -EINVAL, "%s: not JSON", path);
    *out = vb_cbt_from_json(o, &e1);
    json_object_put(o);
    if (!*out)
        return vb_seterr(e, -EINVAL, "%s: %s", path, vb_strerror(&e1));
    if (strcmp((*out)->vm, vm) || strcmp((*out)->disk, disk)) {
        vb_cbt_free(*out);
        *out = NULL;
        return vb_seterr(e, -EINVAL, "%s names another disk", path);
    }
    return 0;
}

int vb_cbt_save(const char *state_dir, struct vb_cbt_record *r, vb_error *e)
{
    char path[4096], *slash, boot[64];
    FILE *bf = fopen("/proc/sys/kernel/random/boot_id", "re");
    json_object *o;
    const char *s;
    int ret;

    r->written_ns = vb_wall_ns();
    if (bf && fgets(boot, sizeof(boot), bf)) {
        g_free(r->boot_id);
        r->boot_id = g_strstrip(g_strdup(boot));
    }
    if (bf)
        fclose(bf);
    if ((ret = vb_cbt_path(state_dir, r->vm, r->disk, path, sizeof(path))))
        return vb_seterr(e, ret, "tracking record of %s/%s: name too long", r->vm, r->disk);
    slash = strrchr(path, '/');
    *slash = 0;
    ret = vb_mkdir_p(path, 0700);
    *slash = '/';
    if (ret)
        return vb_seterr(e, ret, "create the folder of %s: %s", path, strerror(-ret));
    o = vb_cbt_to_json(r);
    s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY);
    ret = vb_write_file_atomic(path, s, strlen(s), false, e);
    json_object_put(o);
    return ret;
}

int vb_cbt_forget(const char *state_dir, const char *vm, const char *disk, vb_error *e)
{
    char path[4096];
    int ret = vb_cbt_path(state_dir, vm, disk, path, sizeof(path));

    if (ret)
        return vb_seterr(e, ret, "tracking record of %s/%s: name too long", vm, disk);
    if (unlink(path) < 0 && errno != ENOENT)
        return vb_seterr(e, -errno, "remove %s: %s", path, strerror(errno));
    *strrchr(path, '/') = 0;
    vb_fsync_dir(path);     /* a folder that is gone held no record either */
    return 0;
}

bool vb_cbt_names_overlay(const struct vb_cbt_record *r, const char *path)
{
    return r && path && (!strcmp(r->overlay, path) || (r->previous && !strcmp(r->previous, path)));
}

/* ---- proofs --------------------------------------------------------------------------- */

static bool no(char *why, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool no(char *why, size_t len, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, len, fmt, ap);
    va_end(ap);
    return false;
}

bool vb_cbt_chain_proves(const struct vb_cbt_record *r, const struct vb_cbt_chain *c,
                         char *why, size_t len)
{
    if (!r)
        return no(why, len, "the disk has no tracking record");
    if (!r->ready)
        return no(why, len, "the tracking is not bound to a backup (the backup that started "
                  "it did not finish)");
    if (!c || !c->n || strcmp(c->files[0], r->overlay)) {
        if (c && c->n && !strcmp(c->files[0], r->image))
            return no(why, len, "the disk runs on its image, not on its tracking overlay");
        return no(why, len, "the disk does not run on its tracking overlay");
    }
    if (!c->top_is_qcow2)
        return no(why, len, "the tracking overlay is not read as qcow2");
    if (c->ids[0].dev != r->overlay_dev || c->ids[0].ino != r->overlay_ino)
        return no(why, len, "the tracking overlay was replaced by another file");
    if (c->n != r->n_chain + 1)
        return no(why, len, "the chain under the tracking overlay has %u files, not %u",
                  c->n - 1, r->n_chain);
    for (unsigned i = 0; i < r->n_chain; i++) {
        const char *what = i ? "a backing file of the disk's image" : "the disk's image";
        if (strcmp(c->files[i + 1], r->chain[i]))
            return no(why, len, "the chain under the tracking overlay changed (%s is another "
                      "file)", what);
        if (c->ids[i + 1].dev != r->ids[i].dev || c->ids[i + 1].ino != r->ids[i].ino)
            return no(why, len, "%s was replaced since the last backup", what);
        if (!vb_file_id_same(&c->ids[i + 1], &r->ids[i]))
            return no(why, len, "%s was written since the last backup (size or modification "
                      "time changed)", what);
    }
    if (c->size != r->size)
        return no(why, len, "the disk was resized (%llu bytes, %llu at the last backup)",
                  (unsigned long long)c->size, (unsigned long long)r->size);
    return true;
}

bool vb_cbt_basis_proves(const struct vb_cbt_record *r, const struct vb_cbt_repo_facts *f,
                         char *why, size_t len)
{
    if (!r || !r->ready)
        return no(why, len, "the tracking is not bound to a backup");
    if (!f->repo || strcmp(f->repo, r->basis_repo))
        return no(why, len, "the tracking started from a backup in another repository");
    if (!f->newest)
        return no(why, len, "the repository holds no backup of this disk (the one the tracking "
                  "started from is gone)");
    if (strcmp(f->newest, r->basis))
        return no(why, len, "the tracking started from snapshot %s, not from the newest backup "
                  "of this disk (%s)", r->basis, f->newest);
    if (f->newest_size != r->size)
        return no(why, len, "snapshot %s is of a disk of %llu bytes, not %llu", r->basis,
                  (unsigned long long)f->newest_size, (unsigned long long)r->size);
    if (!f->newest_chunk_size)
        return no(why, len, "snapshot %s has no chunk size", r->basis);
    return true;
}

/* ---- the change set ------------------------------------------------------------------- */

static void add_range(GArray *a, uint64_t off, uint64_t len)
{
    if (a->len) {
        struct vb_cbt_range *p = &g_array_index(a, struct vb_cbt_range, a->len - 1);
        if (p->off + p->len == off) {
            p->len += len;
            return;
        }
    }
    struct vb_cbt_range r = { off, len };
    g_array_append_val(a, r);
}

int vb_cbt_changes(struct vb_image *img, GArray *ranges, vb_error *e)
{
    struct vb_layer *l = &img->layer[0];
    uint64_t off = 0, end = img->size;

    if (l->fmt != VB_FMT_QCOW2)
        return vb_seterr(e, -EINVAL, "%s: a tracking overlay is a qcow2 image", l->path);
    while (off < end) {
        struct vb_q2_run run;
        int ret = vb_q2_lookup(l, off, end - off, &run, e);
        if (ret)
            return ret;
        if (!run.len)
            return vb_seterr(e, -EIO, "%s: empty run at %#llx", l->path,
                             (unsigned long long)off);
        if (run.kind != VB_Q2_UNALLOC)
            add_range(ranges, off, run.len);
        off += run.len;
    }
    return 0;
}

void vb_cbt_plan_clear(struct vb_cbt_plan *p)
{
    g_free(p->first);
    g_free(p->count);
    if (p->ranges)
        g_array_free(p->ranges, TRUE);
    memset(p, 0, sizeof(*p));
}

int vb_cbt_plan_build(const GArray *ranges, uint64_t size, uint32_t chunk_size,
                      struct vb_cbt_plan *p)
{
    uint64_t prev_end = 0;

    memset(p, 0, sizeof(*p));
    if (!chunk_size)
        return -EINVAL;
    p->chunk_size = chunk_size;
    p->n_chunks = (size + chunk_size - 1) / chunk_size;
    p->first = g_new0(uint32_t, VB_MAX(p->n_chunks, 1u));
    p->count = g_new0(uint32_t, VB_MAX(p->n_chunks, 1u));
    p->ranges = g_array_new(FALSE, FALSE, sizeof(struct vb_cbt_range));
    for (guint i = 0; i < ranges->len; i++) {
        const struct vb_cbt_range *r = &g_array_index(ranges, struct vb_cbt_range, i);
        uint64_t off = r->off, end = r->off + r->len;

        if (!r->len || end < off || end > size || (i && off < prev_end)) {
            vb_cbt_plan_clear(p);
            return -EINVAL;
        }
        if (!i || off != prev_end)
            p->runs++;
        p->bytes += r->len;
        prev_end = end;
        while (off < end) {
            uint64_t c = off / chunk_size, cend = VB_MIN(end, (c + 1) * chunk_size);
            struct vb_cbt_range piece = { off, cend - off };
            if (p->ranges->len > UINT32_MAX - 1) {
                vb_cbt_plan_clear(p);
                return -E2BIG;
            }
            if (!p->count[c]++) {
                p->first[c] = p->ranges->len;
                p->chunks_changed++;
            }
            g_array_append_val(p->ranges, piece);
            off = cend;
        }
    }
    return 0;
}

/* ---- chains found on the host ----------------------------------------------------------- */

void vb_cbt_found_clear(struct vb_cbt_found *f)
{
    for (unsigned i = 0; i < f->n; i++)
        free(f->files[i]);
    memset(f, 0, sizeof(*f));
}

int vb_cbt_find_chain(const char *image, const struct vb_image_opts *io,
                      struct vb_cbt_found *f, vb_error *e)
{
    struct vb_image *img;
    int ret;

    memset(f, 0, sizeof(*f));
    if ((ret = vb_image_open(image, io, &img, e)))
        return ret;
    f->size = img->size;
    f->top_is_qcow2 = img->layer[0].fmt == VB_FMT_QCOW2;
    for (int i = 0; i < img->n && !ret; i++) {
        f->files[i] = realpath(img->layer[i].path, NULL);
        f->n++;
        if (!f->files[i])
            ret = vb_seterr(e, -errno, "%s: %s", img->layer[i].path, strerror(errno));
        else
            ret = vb_file_id_get(f->files[i], &f->ids[i], e);
    }
    vb_image_close(img);
    if (ret)
        vb_cbt_found_clear(f);
    return ret;
}

bool vb_cbt_found_same(const struct vb_cbt_found *a, const struct vb_cbt_found *b)
{
    if (a->n != b->n || a->size != b->size)
        return false;
    for (unsigned i = 0; i < a->n; i++)
        if (strcmp(a->files[i], b->files[i]) || !vb_file_id_same(&a->ids[i], &b->ids[i]))
            return false;
    return true;
}

struct vb_cbt_chain vb_cbt_found_chain(const struct vb_cbt_found *f)
{
    struct vb_cbt_chain c = { .n = f->n, .files = (const char *const *)f->files,
                              .ids = f->ids, .size = f->size, .top_is_qcow2 = f->top_is_qcow2 };
    return c;
}

/* ---- in use ----------------------------------------------------------------------------- */

int vb_image_in_use(const char *path)
{
    struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 100, .l_len = 200 };
    int fd = open(path, O_RDONLY | O_CLOEXEC), ret;

    if (fd < 0)
        return -errno;
    ret = fcntl(fd, F_OFD_GETLK, &fl) < 0 ? -errno : fl.l_type != F_UNLCK;
    close(fd);
    return ret;
}
