/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Targets that may be broken.  A target whose repository cannot be opened
 * (its file system is not mounted, a failing disk) or not written (a
 * read-only mount, ext4 after an error) fails only its own jobs, with a
 * reason that names the target; every other target keeps being served.  A
 * target that could not be opened is tried again whenever it is needed, so
 * that it works again once the administrator has fixed it.
 *
 * What a guest is told names the target and what is wrong with it in its
 * own terms, never a host path or an errno text (docs/threat-model.md); the
 * cause goes to the log, once per cause.  The repository may be opened on
 * any thread (a worker claiming it, one listing it): one lock serializes
 * the opening, and once open it stays open (t->repo only ever goes from
 * NULL to a repository), so that whoever saw it open may use it unlocked.
 */
#include "vbackupd.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "repo2.h"
#include "sink2.h"

static GMutex lock;          /* opening a repository, and t->broken */

int vbd_open_v2(const char *location, const char *password_file, const char *credential,
                const char *const *store_opts, const char *what, struct vb2_repo **out,
                vb_error *e)
{
    struct vb2_open_opts o = { .store_opts = store_opts };
    struct vb_secret sec = { 0 };
    int ret;

    *out = NULL;
    if (credential) {
        if (!(ret = vb_password_from_credential(credential, &sec, e))) {
            o.secret = &sec;
            ret = vb2_repo_open(location, &o, out, e);
        }
        vb_secret_wipe(&sec);
    } else if (password_file) {
        /* read only when the repository is encrypted; never a terminal */
        ret = vb2_repo_open_asking(location, &o, password_file, NULL, out, e);
    } else {
        ret = vb2_repo_open(location, &o, out, e);
    }
    if (ret && what)
        vb_prefixerr(e, "%s", what);
    return ret;
}

/* Open the target's repository (under the lock): format 2 when the place
 * holds one (an s3:// location, or a folder with a version 2 config), else
 * format 1. */
static int open_locked(struct vbd_target *t, vb_error *e)
{
    struct vb2_repo *r2;
    struct vb_repo *r;
    int ret;

    if (vb2_is_repository(t->path)) {
        /* its errors name the repository */
        ret = vbd_open_v2(t->path, t->password_file, t->credential,
                          t->store_opts ? (const char *const *)t->store_opts->pdata : NULL,
                          NULL, &r2, e);
        if (ret == -ENOKEY)
            vb_seterr(e, ret, "repository %s is encrypted: give password_file or "
                      "password_credential", t->path);
        if (!ret)
            g_atomic_pointer_set(&t->repo2, r2);
        return ret;
    }
    if (t->store_opts && t->store_opts->len > 1)
        return vb_seterr(e, -EINVAL, "repository %s: not a format 2 repository on object "
                         "storage (%s is for those)", t->path,
                         (const char *)t->store_opts->pdata[0]);
    if (t->password_file || t->credential)
        return vb_seterr(e, -EINVAL, "repository %s: not a format 2 repository (password_file "
                         "and password_credential are for those)", t->path);
    if ((ret = vb_repo_open(t->path, VB_LOCK_NONE, true, &r, e)))
        return ret;
    g_atomic_pointer_set(&t->repo, r);
    return 0;
}

static bool is_open(struct vbd_target *t)
{
    return g_atomic_pointer_get(&t->repo) || g_atomic_pointer_get(&t->repo2);
}

int vbd_target_open(struct vbd_target *t, vb_error *e)
{
    vb_error oe = { 0 };
    int ret = 0;

    if (is_open(t))
        return 0;
    g_mutex_lock(&lock);
    if (!is_open(t) && (ret = open_locked(t, &oe)) == 0) {
        if (t->broken)
            vbd_log("target %s: repository %s can be opened again", t->name, t->path);
        g_free(t->broken);
        t->broken = NULL;
    } else if (ret) {
        if (!t->broken || strcmp(t->broken, vb_strerror(&oe))) {
            vbd_log("target %s is unavailable: %s", t->name, vb_strerror(&oe));
            g_free(t->broken);
            t->broken = g_strdup(vb_strerror(&oe));
        }
        ret = vb_seterr(e, oe.code ? oe.code : -EIO, "target '%s' is unavailable (its "
                        "repository cannot be opened on the host)", t->name);
    }
    g_mutex_unlock(&lock);
    return ret;
}

struct vb_repo *vbd_target_repo(struct vbd_target *t, vb_error *e)
{
    if (vbd_target_open(t, e))
        return NULL;
    if (!g_atomic_pointer_get(&t->repo))
        vb_seterr(e, -EPROTONOSUPPORT, "target '%s' holds a format 2 repository, which this "
                  "does not support yet", t->name);
    return g_atomic_pointer_get(&t->repo);
}

int vbd_target_begin(struct vbd_target *t, const struct vbd_vm *vm, struct vb_sink **out,
                     vb_error *e)
{
    struct vb2_repo *r2;
    struct vb_write *w1;
    int ret;

    *out = NULL;
    if ((ret = vbd_target_open(t, e)))
        return ret;
    if ((r2 = g_atomic_pointer_get(&t->repo2))) {
        g_autofree char *where = realpath(t->path, NULL);
        ret = vb_sink_v2(r2, where ? where : t->path, vm->name, vm->dedup_group, out, e);
        if (ret) {
            /* the cause for the log, the target's name for the guest */
            vbd_log("target %s: a backup of %s could not begin: %s", t->name, vm->name,
                    vb_strerror(e));
            vb_seterr(e, ret, "target '%s' cannot take backups now; the host's log has "
                      "details", t->name);
        }
        return ret;
    }
    ret = vb_write_begin(g_atomic_pointer_get(&t->repo), vm->name, vm->dedup_group,
                         VB_WRITE_NOWAIT, &w1, e);
    if (ret == 0)
        *out = vb_sink_v1(w1);
    if (ret == -EBUSY)      /* the guest may read this: the target's name, not its path */
        vb_seterr(e, ret, "repository %s is busy (garbage collection is running)", t->name);
    return ret;
}

int vbd_target_begin_shared(struct vbd_target *t, const struct vbd_vm *vm, GHashTable *batch,
                            struct vb_sink **out, vb_error *e)
{
    struct vb2_repo *r2;
    struct vb2_write *w;
    g_autofree char *key = NULL, *where = NULL;
    int ret;

    *out = NULL;
    if ((ret = vbd_target_open(t, e)))
        return ret;
    if (!batch || !(r2 = g_atomic_pointer_get(&t->repo2)))
        return vbd_target_begin(t, vm, out, e);
    key = g_strdup_printf("%s\n%s", t->name, vm->dedup_group ? vm->dedup_group : "");
    if (!(w = g_hash_table_lookup(batch, key))) {
        struct vb2_write_opts wo = { .dedup_group = vm->dedup_group, .shared = true };
        if ((ret = vb2_write_begin(r2, &wo, &w, e))) {
            vbd_log("target %s: a batch's backups could not begin: %s", t->name,
                    vb_strerror(e));
            return vb_seterr(e, ret, "target '%s' cannot take backups now; the host's log "
                             "has details", t->name);
        }
        g_hash_table_insert(batch, g_strdup(key), w);
    }
    where = realpath(t->path, NULL);
    return vb_sink_v2_shared(r2, w, where ? where : t->path, vm->name, vm->dedup_group, out, e);
}

char *vbd_target_broken(struct vbd_target *t)
{
    char *why;

    g_mutex_lock(&lock);
    why = g_strdup(t->broken);
    g_mutex_unlock(&lock);
    return why;
}

/* A file system that cannot take a backup, in the guest's terms; NULL: not
 * one of those (a lock file gone, a permission: the job may wait). */
static const char *fs_trouble(int err)
{
    switch (err) {
    case -EROFS: return "its file system is read-only";
    case -EIO: return "its file system fails (I/O errors on the host)";
    case -ENOSPC: return "it has no space left";
    default: return NULL;
    }
}

bool vbd_target_cannot_write(struct vbd_target *t, int err, char *what, size_t len)
{
    const char *why = fs_trouble(err);

    if (!is_open(t)) {
        snprintf(what, len, "target '%s' is unavailable (its repository cannot be opened on "
                 "the host)", t->name);
        return true;
    }
    if (!why)
        return false;
    snprintf(what, len, "target '%s' cannot take backups: %s", t->name, why);
    return true;
}

int vbd_target_writable(struct vbd_target *t, vb_error *e)
{
    struct vb_repo *r;
    const char *why;
    int err;

    if ((err = vbd_target_open(t, e)))
        return err;
    /* format 2: its store says what is wrong when a put fails */
    if (!(r = g_atomic_pointer_get(&t->repo)))
        return 0;
    if (faccessat(r->dirfd, "snapshots", W_OK, AT_EACCESS) == 0)
        return 0;
    err = -errno;
    /* a permission problem is left to the write itself, which says what it
     * could not do */
    if (err == -EACCES || err == -EPERM)
        return 0;
    vbd_log("target %s cannot take backups: %s/snapshots: %s", t->name, t->path, strerror(-err));
    /* a read-only mount, a failing disk, a folder gone: said now */
    if ((why = fs_trouble(err)))
        return vb_seterr(e, err, "target '%s' cannot take backups: %s", t->name, why);
    return vb_seterr(e, err, "target '%s' cannot take backups now; the host's log has details",
                     t->name);
}
