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
#include <string.h>
#include <unistd.h>

static GMutex lock;          /* opening a repository, and t->broken */

struct vb_repo *vbd_target_repo(struct vbd_target *t, vb_error *e)
{
    struct vb_repo *r = g_atomic_pointer_get(&t->repo);
    vb_error oe = { 0 };

    if (r)
        return r;
    g_mutex_lock(&lock);
    if (!(r = g_atomic_pointer_get(&t->repo)) &&
        vb_repo_open(t->path, VB_LOCK_NONE, true, &r, &oe) == 0) {
        if (t->broken)
            vbd_log("target %s: repository %s can be opened again", t->name, t->path);
        g_free(t->broken);
        t->broken = NULL;
        g_atomic_pointer_set(&t->repo, r);
    } else if (!r) {
        if (!t->broken || strcmp(t->broken, vb_strerror(&oe))) {
            vbd_log("target %s is unavailable: %s", t->name, vb_strerror(&oe));
            g_free(t->broken);
            t->broken = g_strdup(vb_strerror(&oe));
        }
        vb_seterr(e, oe.code ? oe.code : -EIO, "target '%s' is unavailable (its repository "
                  "cannot be opened on the host)", t->name);
    }
    g_mutex_unlock(&lock);
    return r;
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

    if (!g_atomic_pointer_get(&t->repo)) {
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
    struct vb_repo *r = vbd_target_repo(t, e);
    const char *why;
    int err;

    if (!r)
        return e && e->code ? e->code : -EIO;
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
