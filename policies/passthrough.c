/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * passthrough: leaves the batch as it is.  The smallest possible policy and
 * the model for writing one (docs/policies.md).
 */
#include "vbp-common.h"

static int passthrough_optimize(void *state, struct vbp_batch *b)
{
    uint64_t bytes = 0;
    char buf[32];

    (void)state;
    for (uint32_t i = 0; i < b->n_reads; i++)
        bytes += b->reads[i].length;
    b->note(b, "passthrough", 0, "plan left as it is: %u reads, %s, %u files, %u jobs",
            b->n_reads, vbp_fmt_bytes(bytes, buf, sizeof(buf)), b->n_files, b->n_jobs);
    return 0;
}

static struct vbp_plugin plugin = {
    .name = "passthrough",
    .description = "leaves the batch as it is",
    .config_help = "(no keys)",
    .optimize = passthrough_optimize,
};

VBP_REGISTER(plugin)
