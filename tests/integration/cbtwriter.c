/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Guest-side writes for the changed-block tracking tests: MIB MiB in RUNS
 * runs at pseudo-random 4 KiB-aligned offsets of DEV (a whole disk), with
 * pseudo-random data, all from SEED (xorshift64*), through O_DIRECT, then
 * fsync.  Prints each run ("RUN offset length") and the time it took, so
 * that the host knows exactly which bytes changed.
 *
 *   cbtwriter DEV SEED MIB RUNS
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/fs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

static uint64_t state;

static uint64_t next(void)
{
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return state * 0x2545f4914f6cdd1dull;
}

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    uint64_t size, total, runs, run_len, written = 0;
    double t0;
    uint8_t *buf;
    int fd;

    if (argc != 5)
        return 2;
    state = strtoull(argv[2], NULL, 0) * 2654435761u + 1;
    total = strtoull(argv[3], NULL, 0) << 20;
    runs = strtoull(argv[4], NULL, 0);
    fd = open(argv[1], O_WRONLY | O_DIRECT);
    if (fd < 0 || ioctl(fd, BLKGETSIZE64, &size) < 0 || !runs) {
        perror(argv[1]);
        return 1;
    }
    run_len = total / runs / 4096 * 4096;
    if (!run_len || run_len > size) {
        fprintf(stderr, "runs of %llu bytes do not fit\n", (unsigned long long)run_len);
        return 1;
    }
    if (posix_memalign((void **)&buf, 4096, run_len))
        return 1;
    t0 = now();
    for (uint64_t r = 0; r < runs; r++) {
        uint64_t off = next() % ((size - run_len) / 4096 + 1) * 4096;
        for (uint64_t i = 0; i < run_len / 8; i++)
            ((uint64_t *)buf)[i] = next();
        if (pwrite(fd, buf, run_len, (off_t)off) != (ssize_t)run_len) {
            perror("pwrite");
            return 1;
        }
        printf("RUN %llu %llu\n", (unsigned long long)off, (unsigned long long)run_len);
        written += run_len;
    }
    if (fsync(fd) < 0) {
        perror("fsync");
        return 1;
    }
    printf("WROTE %llu bytes in %.3f s\n", (unsigned long long)written, now() - t0);
    return 0;
}
