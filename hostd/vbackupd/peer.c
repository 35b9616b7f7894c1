/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Who is on the other end of a VM's socket.  The socket names the VM, but
 * any process that can open it (root, and with socket_group every process
 * of that group: every QEMU) could act as that VM.  So a new connection is
 * checked against what the host knows of the VM's QEMU:
 *
 *   pidfile     the peer's pid (SO_PEERCRED, taken at connect()) must be
 *               the one in the VM's pidfile (static VMs: pidfile = PATH;
 *               libvirt: pid_dir/NAME.pid, which libvirt writes).  The
 *               pidfile must be a regular file owned by root (or vbackupd's
 *               user) that nobody else may write: one the QEMU user could
 *               write would prove nothing.  The process must have started
 *               no later than the pidfile was written (within a minute): a
 *               pid recycled by a later process after the VM's QEMU died
 *               does not pass (where /proc shows the process: the shipped
 *               unit's ProtectProc=invisible hides it, which is logged).
 *   peer_label  the peer's security label (SO_PEERSEC: SELinux, AppArmor,
 *               Smack) must be exactly this one.
 *
 * Without either, the socket's mode (0600, or 0660 with socket_group) is
 * the only check.  What this does and does not protect against:
 * docs/threat-model.md, "Socket identity".
 */
#include "vbackupd.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* How much later than its pidfile's time a process may seem to have started:
 * the start is known to a clock tick, but in boot time, and the wall clock
 * may have been stepped since (NTP at boot).  A larger step refuses the VM
 * until its pidfile is written again (docs/threat-model.md). */
#define START_SLACK_NS (60 * 1000000000LL)

/* The pid in PATH, from a file only root (or we) could have written. */
static int read_pidfile(const char *path, pid_t *pid, struct stat *st, char *why, size_t len)
{
    char buf[32];
    char *end;
    ssize_t n;
    long v;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);

    if (fd < 0) {
        snprintf(why, len, "pidfile %s: %s", path, strerror(errno));
        return -EPERM;
    }
    if (fstat(fd, st) < 0 || !S_ISREG(st->st_mode)) {
        snprintf(why, len, "pidfile %s is not a regular file", path);
        close(fd);
        return -EPERM;
    }
    if ((st->st_uid != 0 && st->st_uid != geteuid()) || (st->st_mode & (S_IWGRP | S_IWOTH))) {
        snprintf(why, len, "pidfile %s may be written by others than root (owner %u, mode "
                 "%04o): it proves nothing", path, (unsigned)st->st_uid,
                 (unsigned)(st->st_mode & 07777));
        close(fd);
        return -EPERM;
    }
    n = pread(fd, buf, sizeof(buf) - 1, 0);
    close(fd);
    if (n <= 0) {
        snprintf(why, len, "pidfile %s is empty", path);
        return -EPERM;
    }
    buf[n] = 0;
    errno = 0;
    v = strtol(buf, &end, 10);
    while (*end == '\n' || *end == ' ')
        end++;
    if (errno || end == buf || *end || v <= 0 || v > INT32_MAX) {
        snprintf(why, len, "pidfile %s holds no pid", path);
        return -EPERM;
    }
    *pid = (pid_t)v;
    return 0;
}

/* When process pid started, in wall-clock nanoseconds (0: unknown): its
 * start in boot time (/proc/PID/stat, field 22, in clock ticks) moved to the
 * wall clock by the two clocks' distance now. */
static int64_t start_time_ns(pid_t pid)
{
    char path[64], buf[1024], *p;
    unsigned long long ticks = 0;
    long hz = sysconf(_SC_CLK_TCK);
    struct timespec boot, wall;
    ssize_t n = 0, got;
    int fd, field = 2;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    /* /proc files have no size: read to the end */
    while (n < (ssize_t)sizeof(buf) - 1 && (got = read(fd, buf + n, sizeof(buf) - 1 - (size_t)n)) > 0)
        n += got;
    close(fd);
    buf[n] = 0;
    /* after "pid (comm)", where comm may hold spaces and parentheses: state is field 3 */
    if (!(p = strrchr(buf, ')')))
        return 0;
    for (p++; *p && field < 22; p++)
        if (*p == ' ' && ++field == 22)
            ticks = strtoull(p + 1, NULL, 10);
    if (!ticks || hz <= 0 || clock_gettime(CLOCK_BOOTTIME, &boot) || clock_gettime(CLOCK_REALTIME, &wall))
        return 0;
    return (int64_t)wall.tv_sec * 1000000000 + wall.tv_nsec -
           ((int64_t)boot.tv_sec * 1000000000 + boot.tv_nsec -
            (int64_t)(ticks * (1000000000ULL / (unsigned long)hz)));
}

static int check_pid(struct vbd_vm *vm, const struct ucred *cr, char *why, size_t len)
{
    struct stat st;
    int64_t started, written;
    pid_t pid;
    int ret = read_pidfile(vm->pidfile, &pid, &st, why, len);

    if (ret)
        return ret;
    if (cr->pid != pid) {
        snprintf(why, len, "pid %d (uid %u) is not the VM's QEMU (pid %d, from %s)",
                 (int)cr->pid, (unsigned)cr->uid, (int)pid, vm->pidfile);
        return -EPERM;
    }
    started = start_time_ns(pid);
    written = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    if (!started) {
        /* /proc/PID hidden from us: the systemd unit's ProtectProc=invisible
         * hides the processes of other users (QEMU's) from a root without
         * CAP_SYS_PTRACE.  The pid is checked; its reuse cannot be. */
        if (!vm->peer_start_unknown)
            vbd_log("VM %s: the start of pid %d cannot be read (/proc/%d is not visible: "
                    "ProtectProc=invisible?); a reused pid is not recognized", vm->name,
                    (int)pid, (int)pid);
        vm->peer_start_unknown = true;
        return 0;
    }
    if (started > written + START_SLACK_NS) {
        snprintf(why, len, "pid %d started %.1f s after %s was written: not the process it "
                 "names (a reused pid)", (int)pid, (double)(started - written) / 1e9,
                 vm->pidfile);
        return -EPERM;
    }
    return 0;
}

static int check_label(struct vbd_vm *vm, int fd, const struct ucred *cr, char *why,
                       size_t len)
{
    char label[512];
    socklen_t n = sizeof(label) - 1;

    if (getsockopt(fd, SOL_SOCKET, SO_PEERSEC, label, &n) < 0) {
        snprintf(why, len, "pid %d: no security label (%s), peer_label %s is required",
                 (int)cr->pid, errno == ENOPROTOOPT ? "no security module labels sockets here"
                                                    : strerror(errno), vm->peer_label);
        return -EPERM;
    }
    label[VB_MIN((size_t)n, sizeof(label) - 1)] = 0;
    if (strcmp(label, vm->peer_label)) {
        g_autofree char *shown = vb_escape(label, strlen(label));
        snprintf(why, len, "pid %d has the security label '%s', not '%s'", (int)cr->pid, shown,
                 vm->peer_label);
        return -EPERM;
    }
    return 0;
}

int vbd_peer_check(struct vbd_vm *vm, int fd, char *why, size_t len)
{
    struct ucred cr;
    socklen_t n = sizeof(cr);
    int ret;

    if (!vm->pidfile && !vm->peer_label)
        return 0;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &n) < 0 || n != sizeof(cr)) {
        snprintf(why, len, "the peer is unknown (SO_PEERCRED: %s)", strerror(errno));
        return -EPERM;
    }
    if (vm->pidfile && (ret = check_pid(vm, &cr, why, len)))
        return ret;
    if (vm->peer_label && (ret = check_label(vm, fd, &cr, why, len)))
        return ret;
    return 0;
}
