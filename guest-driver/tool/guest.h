/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The guest tool's own parts: freezing file systems (freeze.c) and the
 * source that walks the guest's file systems and maps files with FIEMAP
 * (walk.c).
 */
#ifndef VBC_GUEST_H
#define VBC_GUEST_H

#include "vbc.h"

/* ---- freeze.c -------------------------------------------------------------- */

struct vbf_fs {
    int fd;                      /* a directory on the file system */
    dev_t dev;
    char *name;                  /* where it is, for messages */
    bool frozen;
    int64_t frozen_at;
};

/*
 * The freezer: hooks, syncfs, FIFREEZE, a watchdog thread that thaws when
 * the bound expires or a signal arrives, an atexit handler and handlers for
 * fatal signals that thaw.
 */
struct vbf {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t wd;
    bool wd_on, stop, hooks_done;
    struct vbf_fs *fs;
    size_t n;
    double timeout;
    int64_t deadline;
    int broken;                  /* VBF_* */
    int broken_sig;
    const char *hooks;
    double longest;              /* < 0: nothing frozen yet */
    bool any_frozen;
};

enum { VBF_OK, VBF_TIMEOUT, VBF_SIGNAL };

void vbf_init(struct vbf *f, struct vbf_fs *fs, size_t n, double timeout, const char *hooks);
/* hooks "freeze", syncfs, FIFREEZE each; starts the watchdog */
int vbf_freeze(struct vbf *f, struct vbc_err *e);
/* thaws what is frozen, stops the watchdog, runs the "thaw" hooks; returns
 * the longest freeze in seconds, or -1 if nothing was frozen */
double vbf_thaw(struct vbf *f);
bool vbf_broken(struct vbf *f, struct vbc_err *e);
bool vbf_is_frozen(struct vbf *f);

/* ---- walk.c ------------------------------------------------------------------- */

extern const struct vbc_source_ops vbc_guest_ops;
void *vbc_guest_new(void);
void vbc_guest_free(void *g);

/* backup-disk */
int vbc_guest_disk_serial(const char *arg, char *serial, size_t len, struct vbc_err *e);
int vbc_guest_disk_source(const char *arg, bool no_freeze, double timeout, const char *hooks,
                          const struct vbc_source_ops **ops, void **src);

#endif /* VBC_GUEST_H */
