/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Progress line for long operations: done / total, percent, rate, ETA.
 * Shown on a terminal (stderr) only; silent otherwise. */
#ifndef VB_PROGRESS_H
#define VB_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vb_progress {
    bool enabled;
    const char *what;
    uint64_t total;
    uint64_t done;
    double start, last;
    int width;
};

void vb_progress_init(struct vb_progress *p, const char *what, uint64_t total, bool enabled);
void vb_progress_update(struct vb_progress *p, uint64_t done);
void vb_progress_end(struct vb_progress *p);
/* The line itself, for other front ends (the guest tool). */
void vb_progress_format(char *buf, size_t len, const char *what, uint64_t done,
                        uint64_t total, double elapsed);

#endif
