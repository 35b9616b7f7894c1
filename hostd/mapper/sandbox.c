/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The file system mapper's sandbox (sandbox.h). */
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__x86_64__)
#define VB_AUDIT_ARCH AUDIT_ARCH_X86_64
#define VB_X32_BIT 0x40000000u       /* x32 system calls: refused */
#elif defined(__aarch64__)
#define VB_AUDIT_ARCH AUDIT_ARCH_AARCH64
#define VB_X32_BIT 0
#else
#error "the mapper's seccomp filter knows x86_64 and aarch64"
#endif

/* ---- seccomp --------------------------------------------------------------- */

struct prog {
    struct sock_filter f[256];
    unsigned n;
};

static void op(struct prog *p, uint16_t code, uint8_t jt, uint8_t jf, uint32_t k)
{
    if (p->n < sizeof(p->f) / sizeof(p->f[0]))
        p->f[p->n] = (struct sock_filter)BPF_JUMP(code, k, jt, jf);
    p->n++;
}

static void allow(struct prog *p, long nr)
{
    op(p, BPF_JMP | BPF_JEQ | BPF_K, 0, 1, (uint32_t)nr);
    op(p, BPF_RET | BPF_K, 0, 0, SECCOMP_RET_ALLOW);
}

/* NR is allowed when its argument ARG has none of the bits MASK (low 32
 * bits: protections and flags are ints). */
static void allow_without(struct prog *p, long nr, unsigned arg, uint32_t mask)
{
    op(p, BPF_JMP | BPF_JEQ | BPF_K, 0, 4, (uint32_t)nr);
    op(p, BPF_LD | BPF_W | BPF_ABS, 0, 0,
       (uint32_t)(offsetof(struct seccomp_data, args) + arg * sizeof(uint64_t)));
    op(p, BPF_JMP | BPF_JSET | BPF_K, 0, 1, mask);
    op(p, BPF_RET | BPF_K, 0, 0, SECCOMP_RET_KILL_PROCESS);
    op(p, BPF_RET | BPF_K, 0, 0, SECCOMP_RET_ALLOW);
}

static int install_filter(struct vbc_err *e)
{
    static const long plain[] = {
        /* the descriptors it holds: the images, its output, its error channel */
        __NR_read, __NR_pread64, __NR_readv, __NR_preadv, __NR_write, __NR_writev,
        __NR_lseek, __NR_fstat, __NR_newfstatat, __NR_close,
        /* memory */
        __NR_brk, __NR_munmap, __NR_mremap, __NR_madvise,
        /* time, locks, its own ids */
        __NR_clock_gettime, __NR_gettimeofday, __NR_futex, __NR_getpid, __NR_gettid,
        __NR_getuid, __NR_geteuid, __NR_getgid, __NR_getegid, __NR_getresuid,
        __NR_getresgid, __NR_capget, __NR_getrandom, __NR_rt_sigprocmask,
        /* glibc's qsort asks how much memory there is */
        __NR_sysinfo,
        __NR_rt_sigreturn, __NR_exit, __NR_exit_group,
#ifdef __NR_time
        __NR_time,
#endif
#ifdef VB_SANITIZED
        /* what the sanitizers' runtimes call while they run and report */
        __NR_sigaltstack, __NR_rt_sigaction, __NR_prlimit64, __NR_sched_yield,
        __NR_nanosleep, __NR_openat, __NR_readlinkat, __NR_ioctl, __NR_prctl,
        __NR_getrusage, __NR_sched_getaffinity, __NR_tgkill, __NR_clock_nanosleep,
#endif
    };
    struct prog p = { .n = 0 };
    struct sock_fprog fp;

    op(&p, BPF_LD | BPF_W | BPF_ABS, 0, 0, offsetof(struct seccomp_data, arch));
    op(&p, BPF_JMP | BPF_JEQ | BPF_K, 1, 0, VB_AUDIT_ARCH);
    op(&p, BPF_RET | BPF_K, 0, 0, SECCOMP_RET_KILL_PROCESS);
    op(&p, BPF_LD | BPF_W | BPF_ABS, 0, 0, offsetof(struct seccomp_data, nr));
    if (VB_X32_BIT) {
        op(&p, BPF_JMP | BPF_JSET | BPF_K, 0, 1, VB_X32_BIT);
        op(&p, BPF_RET | BPF_K, 0, 0, SECCOMP_RET_KILL_PROCESS);
    }
    for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++)
        allow(&p, plain[i]);
    /* memory, never executable: no code can be brought in */
    allow_without(&p, __NR_mmap, 2, PROT_EXEC);
    allow_without(&p, __NR_mprotect, 2, PROT_EXEC);
    op(&p, BPF_RET | BPF_K, 0, 0, SECCOMP_RET_KILL_PROCESS);
    if (p.n > sizeof(p.f) / sizeof(p.f[0]))
        return vbc_seterr(e, -E2BIG, "seccomp filter too long");
    fp.len = (unsigned short)p.n;
    fp.filter = p.f;
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fp, 0, 0) < 0)
        return vbc_seterr(e, -errno, "installing the seccomp filter: %s", strerror(errno));
    return 0;
}

/* ---- the rest ---------------------------------------------------------------- */

static int write_proc(const char *path, const char *text, struct vbc_err *e)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC), rc = 0;

    if (fd < 0)
        return vbc_seterr(e, -errno, "open %s: %s", path, strerror(errno));
    if (write(fd, text, strlen(text)) != (ssize_t)strlen(text))
        rc = vbc_seterr(e, -errno, "write %s: %s", path, strerror(errno));
    close(fd);
    return rc;
}

static int set_limit(int res, uint64_t soft, uint64_t hard, const char *name, struct vbc_err *e)
{
    struct rlimit rl = { .rlim_cur = soft, .rlim_max = hard };

    if (setrlimit(res, &rl) < 0)
        return vbc_seterr(e, -errno, "setrlimit %s: %s", name, strerror(errno));
    return 0;
}

/* No tracer got hold of the process while it was dumpable. */
static int not_traced(struct vbc_err *e)
{
    char buf[4096], *t;
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    ssize_t n;

    if (fd < 0)
        return vbc_seterr(e, -errno, "open /proc/self/status: %s", strerror(errno));
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return vbc_seterr(e, -EIO, "read /proc/self/status");
    buf[n] = 0;
    t = strstr(buf, "TracerPid:");
    if (!t || strtol(t + 10, NULL, 10) != 0)
        return vbc_seterr(e, -EPERM, "a process traces the mapper");
    return 0;
}

#ifdef VB_SANITIZED
/* LeakSanitizer's check at exit stops the process with ptrace from a thread
 * of its own, which the filter forbids: check now (nothing has been read
 * yet), which also turns the check at exit off. */
extern void __lsan_do_leak_check(void) __attribute__((weak));
#endif

int vb_sandbox_enter(const struct vb_sandbox *sb, struct vbc_err *e)
{
    struct __user_cap_header_struct ch = { .version = _LINUX_CAPABILITY_VERSION_3 };
    struct __user_cap_data_struct cd[2];
    uid_t uid = getuid();
    gid_t gid = getgid();
    char map[64];
    int rc;

#ifdef VB_SANITIZED
    if (__lsan_do_leak_check)
        __lsan_do_leak_check();
#endif
    /* descriptors: only those it was given */
    if (close_range(sb->n_fds, ~0u, 0) < 0)
        return vbc_seterr(e, -errno, "close_range: %s", strerror(errno));

    /* identity: root becomes the unprivileged user; it then has no
     * capabilities in the host's namespaces */
    if (geteuid() == 0) {
        if (sb->uid == 0 || sb->gid == 0)
            return vbc_seterr(e, -EINVAL, "the mapper does not run as root");
        if (setgroups(0, NULL) < 0 || setresgid(sb->gid, sb->gid, sb->gid) < 0 ||
            setresuid(sb->uid, sb->uid, sb->uid) < 0)
            return vbc_seterr(e, -errno, "becoming %u:%u: %s", (unsigned)sb->uid,
                              (unsigned)sb->gid, strerror(errno));
        uid = sb->uid;
        gid = sb->gid;
    }
    if (getuid() == 0 || geteuid() == 0)
        return vbc_seterr(e, -EPERM, "the mapper still runs as root");

    /* names: a user namespace that maps only that user, fresh mount,
     * network and IPC namespaces; /proc/self stays writable for the maps
     * while the process is dumpable, for a moment */
    if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) < 0)
        return vbc_seterr(e, -errno, "PR_SET_DUMPABLE: %s", strerror(errno));
    if (unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC) < 0)
        return vbc_seterr(e, -errno, "unshare (user, mount, network and IPC namespaces): %s%s",
                          strerror(errno), errno == EPERM || errno == ENOSPC
                              ? " (does the host allow unprivileged user namespaces?)" : "");
    if ((rc = write_proc("/proc/self/setgroups", "deny", e)))
        return rc;
    snprintf(map, sizeof(map), "%u %u 1", (unsigned)uid, (unsigned)uid);
    if ((rc = write_proc("/proc/self/uid_map", map, e)))
        return rc;
    snprintf(map, sizeof(map), "%u %u 1", (unsigned)gid, (unsigned)gid);
    if ((rc = write_proc("/proc/self/gid_map", map, e)))
        return rc;
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
        return vbc_seterr(e, -errno, "PR_SET_DUMPABLE: %s", strerror(errno));
    if ((rc = not_traced(e)))
        return rc;

    /* an empty, read-only root: a tmpfs over a folder every system has (in
     * this mount namespace only), pivoted to, the old root detached */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return vbc_seterr(e, -errno, "making the mounts private: %s", strerror(errno));
    {
        static const char *const where[] = { "/tmp", "/proc", "/dev" };
        size_t i;

        for (i = 0; i < sizeof(where) / sizeof(where[0]); i++)
            if (mount("vbackup-mapper", where[i], "tmpfs",
                      MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=0555") == 0)
                break;
        if (i == sizeof(where) / sizeof(where[0]))
            return vbc_seterr(e, -errno, "mounting an empty root: %s", strerror(errno));
        if (chdir(where[i]) < 0 || syscall(SYS_pivot_root, ".", ".") < 0 ||
            umount2(".", MNT_DETACH) < 0 || chdir("/") < 0)
            return vbc_seterr(e, -errno, "pivot_root to the empty root: %s", strerror(errno));
    }

    /* no capabilities, in this namespace either; nothing gains any */
    for (int cap = 0; cap <= 63; cap++)
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
            return vbc_seterr(e, -errno, "dropping capability %d: %s", cap, strerror(errno));
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        return vbc_seterr(e, -errno, "clearing ambient capabilities: %s", strerror(errno));
    memset(cd, 0, sizeof(cd));
    if (syscall(SYS_capset, &ch, cd) < 0)
        return vbc_seterr(e, -errno, "capset: %s", strerror(errno));
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return vbc_seterr(e, -errno, "PR_SET_NO_NEW_PRIVS: %s", strerror(errno));

    /* limits */
#ifndef VB_SANITIZED
    if ((rc = set_limit(RLIMIT_AS, sb->memory, sb->memory, "RLIMIT_AS", e)))
        return rc;
#endif
    if ((rc = set_limit(RLIMIT_CPU, sb->cpu, sb->cpu + 1, "RLIMIT_CPU", e)) ||
        (rc = set_limit(RLIMIT_FSIZE, 0, 0, "RLIMIT_FSIZE", e)) ||
        (rc = set_limit(RLIMIT_CORE, 0, 0, "RLIMIT_CORE", e)) ||
        (rc = set_limit(RLIMIT_NOFILE, sb->n_fds, sb->n_fds, "RLIMIT_NOFILE", e)) ||
        (rc = set_limit(RLIMIT_MEMLOCK, 0, 0, "RLIMIT_MEMLOCK", e)) ||
        (rc = set_limit(RLIMIT_MSGQUEUE, 0, 0, "RLIMIT_MSGQUEUE", e)))
        return rc;

    return install_filter(e);
}

/* ---- probes (tests) ----------------------------------------------------------------- */

static int outcome(const char *action, long r)
{
    if (r >= 0) {
        printf("escaped: %s\n", action);
        fflush(stdout);
        return 0;
    }
    printf("refused: %s: %s\n", action, strerror(errno));
    fflush(stdout);
    return 3;
}

int vb_sandbox_probe(const struct vb_sandbox *sb0, const char *action)
{
    struct vb_sandbox sb = *sb0;
    struct vbc_err e = { 0 };
    static char *const argv[] = { "/bin/sh", "-c", "true", NULL };
    int rc;

    sb.n_fds = 4;                /* stdin, stdout, stderr, an image at 3 (if given) */
    setvbuf(stdout, NULL, _IONBF, 0);
    if ((rc = vb_sandbox_enter(&sb, &e))) {
        fprintf(stderr, "the sandbox: %s\n", e.msg);
        return 1;
    }
    if (!strcmp(action, "open"))
        return outcome(action, open("/etc/passwd", O_RDONLY));
    if (!strcmp(action, "socket-unix"))
        return outcome(action, socket(AF_UNIX, SOCK_STREAM, 0));
    if (!strcmp(action, "socket-inet"))
        return outcome(action, socket(AF_INET, SOCK_STREAM, 0));
    if (!strcmp(action, "exec"))
        return outcome(action, execve(argv[0], argv, NULL));
    if (!strcmp(action, "fork")) {
        pid_t pid = fork();

        if (pid == 0)
            _exit(0);
        return outcome(action, pid);
    }
    if (!strcmp(action, "ptrace"))
        return outcome(action, ptrace(PTRACE_TRACEME, 0, NULL, NULL));
    if (!strcmp(action, "kill"))
        return outcome(action, kill(1, 0));
    if (!strcmp(action, "mount"))
        return outcome(action, mount("none", "/", "tmpfs", 0, NULL));
    if (!strcmp(action, "unshare"))
        return outcome(action, unshare(CLONE_NEWUSER));
    if (!strcmp(action, "setuid"))
        return outcome(action, setuid(0));
    if (!strcmp(action, "chroot"))
        return outcome(action, chroot("/"));
    if (!strcmp(action, "mmap-exec")) {
        void *p = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

        return outcome(action, p == MAP_FAILED ? -1 : 0);
    }
    if (!strcmp(action, "write-image"))
        return outcome(action, pwrite(3, "x", 1, 0));
    if (!strcmp(action, "memory")) {
        size_t n = (size_t)sb.memory + (1u << 30);
        char *p = malloc(n);

        if (p)
            memset(p, 1, n);
        return outcome(action, p ? 0 : -1);
    }
    if (!strcmp(action, "cpu")) {
        volatile unsigned long x = 0;

        for (;;)
            x++;
    }
    if (!strcmp(action, "stat-root")) {
        static const char *const names[] = { "/etc", "/proc", "/dev", "/bin", "/../etc",
                                             "/tmp", "/sys" };
        struct stat st;
        int found = 0;

        if (stat("/", &st) == 0)
            printf("root: mode %o, %ld links\n", (unsigned)st.st_mode, (long)st.st_nlink);
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
            if (stat(names[i], &st) == 0) {
                printf("escaped: %s exists\n", names[i]);
                found = 1;
            }
        }
        return found ? 0 : 3;
    }
    if (!strcmp(action, "ids")) {
        struct __user_cap_header_struct ch = { .version = _LINUX_CAPABILITY_VERSION_3 };
        struct __user_cap_data_struct cd[2];
        uid_t r, ef, s;
        gid_t gr, ge, gs;

        getresuid(&r, &ef, &s);
        getresgid(&gr, &ge, &gs);
        memset(cd, 0, sizeof(cd));
        syscall(SYS_capget, &ch, cd);
        printf("uid %u %u %u gid %u %u %u caps %x %x %x %x\n", (unsigned)r, (unsigned)ef,
               (unsigned)s, (unsigned)gr, (unsigned)ge, (unsigned)gs,
               cd[0].effective | cd[1].effective, cd[0].permitted | cd[1].permitted,
               cd[0].inheritable | cd[1].inheritable, 0u);
        return 3;
    }
    fprintf(stderr, "unknown probe %s\n", action);
    return 2;
}
