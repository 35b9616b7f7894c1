/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Child processes of the foreground commands (proc.h). */
#include "proc.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static sigset_t saved_mask;
static bool blocked;

static sigset_t handled(void)
{
    sigset_t s;

    sigemptyset(&s);
    sigaddset(&s, SIGINT);
    sigaddset(&s, SIGTERM);
    sigaddset(&s, SIGHUP);
    sigaddset(&s, SIGCHLD);
    return s;
}

void vbi_signals_block(void)
{
    sigset_t s = handled();

    if (blocked)
        return;
    sigprocmask(SIG_BLOCK, &s, &saved_mask);
    blocked = true;
}

static int spawn(char **argv, int out_fd, pid_t *pid, vb_error *e)
{
    pid_t p;
    int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

    if (null_fd < 0)
        return vb_seterr(e, -errno, "open /dev/null: %s", strerror(errno));
    p = fork();
    if (p < 0) {
        int err = errno;
        close(null_fd);
        return vb_seterr(e, -err, "fork: %s", strerror(err));
    }
    if (p == 0) {
        struct sigaction sa = { .sa_handler = SIG_DFL };
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGHUP, &sa, NULL);
        sigaction(SIGPIPE, &sa, NULL);
        if (blocked)
            sigprocmask(SIG_SETMASK, &saved_mask, NULL);
        dup2(null_fd, STDIN_FILENO);
        if (out_fd >= 0)
            dup2(out_fd, STDOUT_FILENO);
        execvp(argv[0], argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(null_fd);
    *pid = p;
    return 0;
}

int vbi_spawn(char **argv, pid_t *pid, vb_error *e)
{
    return spawn(argv, -1, pid, e);
}

const char *vbi_status_str(int status, char *buf, size_t len)
{
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
        snprintf(buf, len, "could not be started (exit status 127)");
    else if (WIFEXITED(status))
        snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, len, "was killed by signal %d", WTERMSIG(status));
    else
        snprintf(buf, len, "ended (status %#x)", status);
    return buf;
}

int vbi_run(char **argv, char **out, vb_error *e)
{
    GString *s = g_string_new(NULL);
    int fds[2], status, ret;
    pid_t pid = -1;

    if (pipe2(fds, O_CLOEXEC) < 0) {
        g_string_free(s, TRUE);
        return vb_seterr(e, -errno, "pipe: %s", strerror(errno));
    }
    ret = spawn(argv, fds[1], &pid, e);
    close(fds[1]);
    if (ret) {
        close(fds[0]);
        g_string_free(s, TRUE);
        return ret;
    }
    for (;;) {
        char buf[4096];
        ssize_t n = read(fds[0], buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        g_string_append_len(s, buf, n);
    }
    close(fds[0]);
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            g_string_free(s, TRUE);
            return vb_seterr(e, -errno, "waitpid %s: %s", argv[0], strerror(errno));
        }
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status)) {
        char how[64];
        g_string_free(s, TRUE);
        return vb_seterr(e, -EIO, "%s %s", argv[0], vbi_status_str(status, how, sizeof(how)));
    }
    if (out)
        *out = g_string_free(s, FALSE);
    else
        g_string_free(s, TRUE);
    return 0;
}

int vbi_wait(pid_t child, int ms, int *status)
{
    sigset_t s = handled();
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };
    siginfo_t si;
    int sig;

    /* a child's exit may have been signalled while we did not wait */
    if (waitpid(child, status, WNOHANG) == child)
        return SIGCHLD;
    sig = sigtimedwait(&s, &si, &ts);
    if (sig < 0)
        return 0;            /* EAGAIN (timeout) or EINTR */
    if (sig == SIGCHLD)
        return waitpid(child, status, WNOHANG) == child ? SIGCHLD : 0;
    return sig;
}

int vbi_stop(pid_t child)
{
    int status = 0;

    kill(child, SIGTERM);
    while (waitpid(child, &status, 0) < 0 && errno == EINTR)
        ;
    return status;
}
