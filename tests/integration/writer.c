/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Guest-side load for the consistency test: appends numbered lines to
 * LOG and then replaces COUNTER (atomically) with the same number, every few
 * milliseconds, until STOP exists; then prints the longest time one round
 * was blocked (a frozen file system blocks writers).
 *
 *   writer LOG COUNTER STOP
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    double longest = 0;
    unsigned long n = 0;
    char line[128], tmp[4200];

    if (argc != 4)
        return 2;
    int log = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (log < 0)
        return 1;
    while (access(argv[3], F_OK) != 0) {
        double t0 = now(), dt;
        int len = snprintf(line, sizeof(line), "line %lu\n", ++n), c;
        if (write(log, line, (size_t)len) != len)
            return 1;
        /* the counter is replaced atomically: a snapshot shows the old or the new one */
        snprintf(tmp, sizeof(tmp), "%s.tmp", argv[2]);
        c = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        len = snprintf(line, sizeof(line), "%lu\n", n);
        if (c < 0 || write(c, line, (size_t)len) != len)
            return 1;
        close(c);
        if (rename(tmp, argv[2]) < 0)
            return 1;
        dt = now() - t0;
        if (dt > longest)
            longest = dt;
        usleep(5000);
    }
    printf("writer: %lu rounds, longest blocked %.3f s\n", n, longest);
    return 0;
}
