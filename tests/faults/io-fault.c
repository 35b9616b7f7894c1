/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * LD_PRELOAD shim for the faults suite: failing disks and chosen moments,
 * on the calls the repository code makes.  Like tests/engine/readdir-fault.c
 * (which fails readdir), but for reads, fsyncs, and holds.
 *
 * VB_FAULT holds rules separated by ';', each ACTION:CALL:SUBSTRING[:FLAG...]
 *   ACTION  fail   the call fails with EIO (without doing anything)
 *           hold   the call is made, then the shim creates $VB_FAULT_DIR/held
 *                  and waits until $VB_FAULT_DIR/release exists (a test
 *                  stops a process at an exact step and acts meanwhile)
 *   CALL    fsync (fsync and fdatasync), syncfs, read (read and pread)
 *   SUBSTRING  the path of the call's file (from /proc/self/fd) contains it
 *              (ends with it, when it ends with '$')
 *   FLAG    dir / file       only for a folder / for anything else
 *           visible          only for a folder that holds a name not
 *                            starting with '.' (a committed snapshot in a
 *                            VM's folder, for instance)
 *           once             only the first matching call (per process)
 *
 * Example: "hold:fsync:/snapshots/vm1$:dir:visible" stops a backup of vm1 just
 * after its commit point (the rename has happened; the VM folder's fsync
 * follows it), whatever the code does before.
 */
#undef _FILE_OFFSET_BITS       /* both pread and pread64, not one redirected */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { A_FAIL = 1, A_HOLD };
enum { C_FSYNC = 1, C_SYNCFS, C_READ };

struct rule {
    int action, call;
    char sub[512];
    bool dir, file, visible, once, used;
};

static struct rule rules[16];
static int n_rules = -1;
static unsigned calls;         /* 1 << CALL of every rule: the rest pass at once */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static __thread int busy;      /* our own calls (opendir, readlink) pass through */

static void parse(void)
{
    const char *env = getenv("VB_FAULT");
    char buf[4096], *save = NULL, *r;

    n_rules = 0;
    if (!env || !*env)
        return;
    snprintf(buf, sizeof(buf), "%s", env);
    for (r = strtok_r(buf, ";", &save); r && n_rules < 16; r = strtok_r(NULL, ";", &save)) {
        struct rule *x = &rules[n_rules];
        char *s2 = NULL, *f = strtok_r(r, ":", &s2);
        int k = 0;

        memset(x, 0, sizeof(*x));
        for (; f; f = strtok_r(NULL, ":", &s2), k++) {
            if (k == 0)
                x->action = !strcmp(f, "fail") ? A_FAIL : !strcmp(f, "hold") ? A_HOLD : 0;
            else if (k == 1)
                x->call = !strcmp(f, "fsync") ? C_FSYNC : !strcmp(f, "syncfs") ? C_SYNCFS
                        : !strcmp(f, "read") ? C_READ : 0;
            else if (k == 2)
                snprintf(x->sub, sizeof(x->sub), "%s", f);
            else {
                x->dir |= !strcmp(f, "dir");
                x->file |= !strcmp(f, "file");
                x->visible |= !strcmp(f, "visible");
                x->once |= !strcmp(f, "once");
            }
        }
        if (x->action && x->call) {
            calls |= 1u << x->call;
            n_rules++;
        }
    }
}

static bool has_visible(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *de;
    bool found = false;

    if (!d)
        return false;
    while (!found && (de = readdir(d)))
        found = de->d_name[0] != '.';
    closedir(d);
    return found;
}

static bool matches(const char *path, const char *sub)
{
    size_t lp = strlen(path), ls = strlen(sub);

    if (ls && sub[ls - 1] == '$')
        return lp >= ls - 1 && !strncmp(path + lp - (ls - 1), sub, ls - 1);
    return strstr(path, sub) != NULL;
}

/* The rule this call on fd matches, or NULL. */
static struct rule *match(int call, int fd)
{
    char link[64], path[4096];
    struct stat st;
    struct rule *hit = NULL;
    ssize_t n;

    if (busy)
        return NULL;
    pthread_mutex_lock(&mu);
    if (n_rules < 0)
        parse();
    pthread_mutex_unlock(&mu);
    if (!(calls & (1u << call)))
        return NULL;
    busy = 1;
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    n = readlink(link, path, sizeof(path) - 1);
    if (n >= 0) {
        path[n] = 0;
        for (int i = 0; i < n_rules && !hit; i++) {
            struct rule *x = &rules[i];
            bool isdir;

            if (x->call != call || !matches(path, x->sub))
                continue;
            isdir = fstat(fd, &st) == 0 && S_ISDIR(st.st_mode);
            if ((x->dir && !isdir) || (x->file && isdir))
                continue;
            if (x->visible && !(isdir && has_visible(path)))
                continue;
            pthread_mutex_lock(&mu);
            if (!(x->once && x->used)) {
                x->used = true;
                hit = x;
            }
            pthread_mutex_unlock(&mu);
        }
    }
    busy = 0;
    return hit;
}

static void hold(void)
{
    const char *dir = getenv("VB_FAULT_DIR");
    char held[4096], release[4096];
    struct timespec ts = { 0, 10 * 1000 * 1000 };
    int fd;

    if (!dir)
        return;
    snprintf(held, sizeof(held), "%s/held", dir);
    snprintf(release, sizeof(release), "%s/release", dir);
    busy = 1;
    fd = open(held, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0)
        close(fd);
    while (access(release, F_OK) != 0)
        nanosleep(&ts, NULL);
    busy = 0;
}

#define REAL(ret, name, args) \
    static ret (*real_##name) args; \
    if (!real_##name) \
        real_##name = (ret (*) args)dlsym(RTLD_NEXT, #name)

/* fail: EIO without the call; hold: the call, then the hold */
#define FAULT(call, fd, ret_fail, expr) do { \
        struct rule *x_ = match(call, fd); \
        if (x_ && x_->action == A_FAIL) { \
            errno = EIO; \
            return ret_fail; \
        } \
        if (x_) { \
            __typeof__(expr) r_ = (expr); \
            int e_ = errno; \
            hold(); \
            errno = e_; \
            return r_; \
        } \
    } while (0)

int fsync(int fd)
{
    REAL(int, fsync, (int));
    FAULT(C_FSYNC, fd, -1, real_fsync(fd));
    return real_fsync(fd);
}

int fdatasync(int fd)
{
    REAL(int, fdatasync, (int));
    FAULT(C_FSYNC, fd, -1, real_fdatasync(fd));
    return real_fdatasync(fd);
}

int syncfs(int fd)
{
    REAL(int, syncfs, (int));
    FAULT(C_SYNCFS, fd, -1, real_syncfs(fd));
    return real_syncfs(fd);
}

ssize_t read(int fd, void *buf, size_t n)
{
    REAL(ssize_t, read, (int, void *, size_t));
    FAULT(C_READ, fd, -1, real_read(fd, buf, n));
    return real_read(fd, buf, n);
}

ssize_t pread(int fd, void *buf, size_t n, off_t off)
{
    REAL(ssize_t, pread, (int, void *, size_t, off_t));
    FAULT(C_READ, fd, -1, real_pread(fd, buf, n, off));
    return real_pread(fd, buf, n, off);
}

ssize_t pread64(int fd, void *buf, size_t n, off64_t off)
{
    REAL(ssize_t, pread64, (int, void *, size_t, off64_t));
    FAULT(C_READ, fd, -1, real_pread64(fd, buf, n, off));
    return real_pread64(fd, buf, n, off);
}
