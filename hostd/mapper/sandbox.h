/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The file system mapper's sandbox (docs/freeze.md, "Threat model of the
 * mapper").  vb_sandbox_enter(), before a byte of the guest's file system
 * is read:
 *
 *   fds      every descriptor from n_fds on is closed (0..n_fds-1 are the
 *            output, the error channel and the image chains)
 *   limits   RLIMIT_AS (memory), RLIMIT_CPU (seconds), RLIMIT_FSIZE 0,
 *            RLIMIT_CORE 0, RLIMIT_NOFILE n_fds, RLIMIT_MEMLOCK 0,
 *            RLIMIT_MSGQUEUE 0
 *   identity root gives up its groups and takes uid:gid (an unprivileged
 *            user, "nobody" by default); a process that is not root keeps
 *            its own ids
 *   names    fresh user, mount, network and IPC namespaces (the user
 *            namespace maps only the uid and gid above); the root is an
 *            empty read-only tmpfs (pivot_root, the old root detached): no
 *            file, device, /proc or socket is reachable by name, no network
 *   privs    no capabilities (bounding set emptied, capset to nothing),
 *            not dumpable, no_new_privs
 *   seccomp  a filter that allows reading and writing the descriptors it
 *            holds, seeking and fstat on them, memory management (never
 *            executable), time, futex, its own ids, and exit; any other
 *            system call, or another architecture's, kills the process
 *
 * Under sanitizer builds RLIMIT_AS is not set (the runtimes reserve
 * terabytes of address space), the filter allows what their runtimes call,
 * and leaks are checked before the sandbox, not at exit (LeakSanitizer
 * stops the process with ptrace).
 */
#ifndef VB_SANDBOX_H
#define VB_SANDBOX_H

#include <stdint.h>
#include <sys/types.h>

#include "vbc.h"

struct vb_sandbox {
    uid_t uid;
    gid_t gid;
    uint64_t memory;             /* RLIMIT_AS, bytes */
    unsigned cpu;                /* RLIMIT_CPU, seconds */
    unsigned n_fds;              /* descriptors kept: 0 .. n_fds - 1 */
};

int vb_sandbox_enter(const struct vb_sandbox *sb, struct vbc_err *e);

/*
 * Tests: enter the sandbox, then try ACTION ("open", "socket-unix",
 * "socket-inet", "exec", "fork", "ptrace", "kill", "mount", "unshare",
 * "setuid", "chroot", "mmap-exec", "memory", "cpu", "stat-root", "ids",
 * "write-image").  Prints "escaped: ..." and returns 0 if it worked,
 * "refused: ..." and returns 3 if it failed with an error; seccomp kills
 * the process for most.  "ids" prints the ids and capabilities, "stat-root"
 * what the root holds.
 */
int vb_sandbox_probe(const struct vb_sandbox *sb, const char *action);

#endif
