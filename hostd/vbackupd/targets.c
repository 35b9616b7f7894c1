/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Targets that may be broken.  A target whose repository cannot be opened
 * (its file system is not mounted, a failing disk) or not written (a
 * read-only mount, ext4 after an error) fails only its own jobs, with a
 * reason that names the target; every other target keeps being served.  A
 * target that could not be opened is tried again whenever it is needed, so
 * that it works again once the administrator has fixed it.
 */
#include "vbackupd.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct vb_repo *vbd_target_repo(struct vbd_target *t, vb_error *e)
{
    vb_error oe = { 0 };

    if (t->repo)
        return t->repo;
    if (vb_repo_open(t->path, VB_LOCK_NONE, true, &t->repo, &oe) == 0) {
        if (t->broken)
            vbd_log("target %s: repository %s can be opened again", t->name, t->path);
        g_free(t->broken);
        t->broken = NULL;
        return t->repo;
    }
    t->repo = NULL;
    if (!t->broken || strcmp(t->broken, vb_strerror(&oe))) {
        vbd_log("target %s is unavailable: %s", t->name, vb_strerror(&oe));
        g_free(t->broken);
        t->broken = g_strdup(vb_strerror(&oe));
    }
    vb_seterr(e, oe.code ? oe.code : -EIO, "target '%s' is unavailable (%s)", t->name,
              strerror(oe.code ? -oe.code : EIO));
    return NULL;
}

int vbd_target_writable(struct vbd_target *t, vb_error *e)
{
    struct vb_repo *r = vbd_target_repo(t, e);

    if (!r)
        return e && e->code ? e->code : -EIO;
    if (faccessat(r->dirfd, "snapshots", W_OK, AT_EACCESS) == 0)
        return 0;
    if (errno == EROFS)
        return vb_seterr(e, -EROFS, "target '%s' cannot take backups: its file system is "
                         "read-only", t->name);
    /* a failing disk (EIO), a folder gone: said now; a permission problem
     * is left to the write itself, which says what it could not do */
    if (errno != EACCES && errno != EPERM)
        return vb_seterr(e, -errno, "target '%s' cannot take backups (%s)", t->name,
                         strerror(errno));
    return 0;
}
