/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Freezing file systems for a backup, and always thawing them.
 *
 *   hooks:   /etc/vbackup/fsfreeze-hook freeze|thaw (if executable) and the
 *            executables in /etc/vbackup/fsfreeze-hook.d/ (sorted; thaw in
 *            reverse order), as qemu-guest-agent's fsfreeze-hook.
 *   freeze:  syncfs, then FIFREEZE on each file system.
 *   bound:   a watchdog thread thaws when the bound expires or when
 *            SIGINT/SIGTERM/SIGHUP arrived (the handler only sets a flag);
 *            fatal signals and exit() thaw from their handlers.
 * While frozen nothing is written to the frozen file systems: messages to a
 * stderr on one of them are held in memory (vbc_out_hold).
 */
#include "guest.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef FIFREEZE
#define FIFREEZE _IOWR('X', 119, int)
#define FITHAW _IOWR('X', 120, int)
#endif

/* What the emergency handlers thaw: fds of frozen file systems, or -1. */
#define MAX_EMERGENCY 64
static volatile int emergency_fds[MAX_EMERGENCY];
static bool handlers_installed;

static void emergency_thaw(void)
{
    for (int i = 0; i < MAX_EMERGENCY; i++) {
        int fd = emergency_fds[i];

        if (fd >= 0) {
            ioctl(fd, FITHAW, 0);
            emergency_fds[i] = -1;
        }
    }
}

static void on_fatal(int sig)
{
    emergency_thaw();
    signal(sig, SIG_DFL);
    raise(sig);
}

static void install_handlers(void)
{
    static const int fatal[] = { SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL, SIGQUIT, SIGXCPU,
                                 SIGXFSZ, SIGSYS, SIGTRAP };
    struct sigaction sa;

    if (handlers_installed)
        return;
    for (int i = 0; i < MAX_EMERGENCY; i++)
        emergency_fds[i] = -1;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_fatal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND;
    for (size_t i = 0; i < sizeof(fatal) / sizeof(fatal[0]); i++)
        sigaction(fatal[i], &sa, NULL);
    atexit(emergency_thaw);
    handlers_installed = true;
}

/* ---- hooks ------------------------------------------------------------------ */

static int run_hook(const char *path, const char *arg)
{
    pid_t pid;
    int status;

    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        sigset_t none;
        int fd = open("/dev/null", O_RDONLY);

        if (fd >= 0) {
            dup2(fd, 0);
            if (fd > 2)
                close(fd);
        }
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
        signal(SIGPIPE, SIG_DFL);
        execl(path, path, arg, (char *)NULL);
        _exit(127);
    }
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -errno;
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The hooks in order: the main hook, then fsfreeze-hook.d/ sorted. */
static size_t list_hooks(const char *dir, char ***out)
{
    char path[4096], **v = NULL;
    size_t n = 0, cap = 0;
    struct stat st;
    DIR *d;
    struct dirent *de;

    snprintf(path, sizeof(path), "%s/fsfreeze-hook", dir);
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0) {
        v = malloc(sizeof(*v) * 8);
        cap = 8;
        if (v && (v[0] = strdup(path)))
            n = 1;
    }
    snprintf(path, sizeof(path), "%s/fsfreeze-hook.d", dir);
    d = opendir(path);
    if (d) {
        size_t first = n;

        while ((de = readdir(d))) {
            char full[4096 + 256];

            if (de->d_name[0] == '.')
                continue;
            snprintf(full, sizeof(full), "%s/%s", path, de->d_name);
            if (stat(full, &st) < 0 || !S_ISREG(st.st_mode) || access(full, X_OK) < 0)
                continue;
            if (n == cap) {
                char **nv = realloc(v, sizeof(*v) * (cap ? cap * 2 : 8));

                if (!nv)
                    break;
                v = nv;
                cap = cap ? cap * 2 : 8;
            }
            if ((v[n] = strdup(full)))
                n++;
        }
        closedir(d);
        if (n > first)
            qsort(v + first, n - first, sizeof(*v), name_cmp);
    }
    *out = v;
    return n;
}

static void free_hooks(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* Run the freeze hooks; on a failure, thaw those that ran. */
static int hooks_freeze(const char *dir, struct vbc_err *e)
{
    char **v;
    size_t n = list_hooks(dir, &v);
    int rc = 0;

    for (size_t i = 0; i < n; i++) {
        int st = run_hook(v[i], "freeze");

        if (st != 0) {
            rc = vbc_seterr(e, -ECANCELED, "fsfreeze hook %s freeze failed (%s %d)", v[i],
                            st < 0 ? "error" : "status", st < 0 ? -st : st);
            while (i-- > 0)
                run_hook(v[i], "thaw");
            break;
        }
    }
    free_hooks(v, n);
    return rc;
}

static void hooks_thaw(const char *dir)
{
    char **v;
    size_t n = list_hooks(dir, &v);

    for (size_t i = n; i-- > 0;) {
        int st = run_hook(v[i], "thaw");

        if (st != 0)
            vbc_warn("fsfreeze hook %s thaw failed (status %d)", v[i], st);
    }
    free_hooks(v, n);
}

/* ---- freeze and thaw ------------------------------------------------------------ */

void vbf_init(struct vbf *f, struct vbf_fs *fs, size_t n, double timeout, const char *hooks)
{
    memset(f, 0, sizeof(*f));
    pthread_mutex_init(&f->lock, NULL);
    vbc_cond_init(&f->cond);
    f->fs = fs;
    f->n = n;
    f->timeout = timeout;
    f->hooks = hooks ? hooks : "/etc/vbackup";
    f->longest = -1;
}

/* lock held */
static bool vbf_frozen_locked(struct vbf *f)
{
    for (size_t i = 0; i < f->n; i++)
        if (f->fs[i].frozen)
            return true;
    return false;
}

/* lock held */
static void thaw_locked(struct vbf *f)
{
    int64_t now = vbc_now_ns();

    for (size_t i = 0; i < f->n; i++) {
        struct vbf_fs *x = &f->fs[i];

        if (!x->frozen)
            continue;
        if (ioctl(x->fd, FITHAW, 0) < 0 && errno != EINVAL)
            vbc_warn("thawing %s: %s (run 'fsfreeze -u %s')", x->name, strerror(errno), x->name);
        x->frozen = false;
        for (int k = 0; k < MAX_EMERGENCY; k++)
            if (emergency_fds[k] == x->fd)
                emergency_fds[k] = -1;
        if ((double)(now - x->frozen_at) / 1e9 > f->longest)
            f->longest = (double)(now - x->frozen_at) / 1e9;
    }
}

static void *watchdog(void *arg)
{
    struct vbf *f = arg;

    pthread_mutex_lock(&f->lock);
    while (!f->stop) {
        if (vbc_interrupted) {
            f->broken = VBF_SIGNAL;
            f->broken_sig = vbc_interrupted;
            thaw_locked(f);
            break;
        }
        if (vbc_now_ns() >= f->deadline) {
            f->broken = VBF_TIMEOUT;
            thaw_locked(f);
            break;
        }
        vbc_cond_wait_ms(&f->cond, &f->lock, 20);
    }
    pthread_mutex_unlock(&f->lock);
    if (f->broken)
        vbc_out_release();
    return NULL;
}

int vbf_freeze(struct vbf *f, struct vbc_err *e)
{
    dev_t devs[MAX_EMERGENCY];
    size_t nd = 0, slot = 0;
    bool said_unsupported = false;
    sigset_t all, old;
    int rc, err;

    pthread_mutex_lock(&f->lock);
    f->stop = false;                 /* a second freeze (the guest walks after all) is bounded too */
    pthread_mutex_unlock(&f->lock);
    if ((rc = hooks_freeze(f->hooks, e)))
        return rc;
    f->hooks_done = true;
    for (size_t i = 0; i < f->n; i++)
        if (syncfs(f->fs[i].fd) < 0)
            vbc_warn("syncfs %s: %s", f->fs[i].name, strerror(errno));
    install_handlers();

    pthread_mutex_lock(&f->lock);
    for (size_t i = 0; i < f->n; i++) {
        struct vbf_fs *x = &f->fs[i];

        if (ioctl(x->fd, FIFREEZE, 0) < 0) {
            err = errno;
            if (err == EOPNOTSUPP || err == ENOTTY || err == EINVAL) {
                if (!said_unsupported)
                    vbc_info("note: %s cannot be frozen (%s); its files are read without a "
                             "freeze", x->name, strerror(err));
                said_unsupported = true;
                continue;
            }
            thaw_locked(f);
            pthread_mutex_unlock(&f->lock);
            hooks_thaw(f->hooks);
            f->hooks_done = false;
            if (err == EBUSY)
                return vbc_seterr(e, -EBUSY, "cannot freeze %s: it is frozen already "
                                  "(by someone else?)", x->name);
            if (err == EPERM || err == EACCES)
                return vbc_seterr(e, -err, "cannot freeze %s: %s (%s must run as root; "
                                  "--no-freeze skips the freeze, which is unsafe)", x->name,
                                  strerror(err), vbc_prog);
            return vbc_seterr(e, -err, "freeze failed on %s: %s", x->name, strerror(err));
        }
        x->frozen = true;
        x->frozen_at = vbc_now_ns();
        f->any_frozen = true;
        if (slot < MAX_EMERGENCY)
            emergency_fds[slot++] = x->fd;
        if (nd < MAX_EMERGENCY)
            devs[nd++] = x->dev;
    }
    f->deadline = vbc_now_ns() + (int64_t)(f->timeout * 1e9);
    pthread_mutex_unlock(&f->lock);
    if (!f->any_frozen)
        return 0;
    vbc_out_hold(devs, nd);

    /* the watchdog takes no signals: the main thread gets EINTR */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    err = pthread_create(&f->wd, NULL, watchdog, f);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err) {
        vbf_thaw(f);
        return vbc_seterr(e, -err, "pthread_create: %s", strerror(err));
    }
    f->wd_on = true;
    /* named, so that ps -L (and tests/clients/freeze.sh) see who holds the freeze */
    pthread_setname_np(f->wd, "freeze-watchdog");
    return 0;
}

double vbf_thaw(struct vbf *f)
{
    pthread_mutex_lock(&f->lock);
    if (vbc_interrupted && !f->broken && vbf_frozen_locked(f)) {
        /* a signal came before the watchdog saw it: the same story */
        f->broken = VBF_SIGNAL;
        f->broken_sig = vbc_interrupted;
    }
    f->stop = true;
    thaw_locked(f);
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->lock);
    if (f->wd_on) {
        pthread_join(f->wd, NULL);
        f->wd_on = false;
    }
    vbc_out_release();
    if (f->hooks_done) {
        hooks_thaw(f->hooks);
        f->hooks_done = false;
    }
    return f->any_frozen ? f->longest : -1;
}

bool vbf_broken(struct vbf *f, struct vbc_err *e)
{
    int b, sig;

    pthread_mutex_lock(&f->lock);
    b = f->broken;
    sig = f->broken_sig;
    pthread_mutex_unlock(&f->lock);
    if (b == VBF_TIMEOUT)
        vbc_seterr(e, -ETIMEDOUT, "freeze bound of %g s exceeded; thawed", f->timeout);
    else if (b == VBF_SIGNAL)
        vbc_seterr(e, -EINTR, "interrupted by signal %d; file systems thawed", sig);
    return b != VBF_OK;
}

bool vbf_is_frozen(struct vbf *f)
{
    bool any;

    pthread_mutex_lock(&f->lock);
    any = vbf_frozen_locked(f);
    pthread_mutex_unlock(&f->lock);
    return any;
}
