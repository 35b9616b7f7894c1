/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Test plugin: breaks the plan in the way `mode` says, to test the loader's
 * checks.  config_complete fails unless mode is set; mode=fail makes
 * optimize return -EIO.  Every mode also writes a note, the rate limit and
 * job 0's deferral first, which the loader must undo.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vbackup/policy.h"

struct broken {
    char mode[32];
};

static void *broken_create(void)
{
    return calloc(1, sizeof(struct broken));
}

static void broken_destroy(void *state)
{
    free(state);
}

static int broken_config(void *state, const char *key, const char *value, char *err,
                         size_t err_len)
{
    struct broken *s = state;

    if (strcmp(key, "mode") != 0) {
        snprintf(err, err_len, "broken: unknown key \"%s\"", key);
        return -EINVAL;
    }
    snprintf(s->mode, sizeof(s->mode), "%s", value);
    return 0;
}

static int broken_complete(void *state, char *err, size_t err_len)
{
    struct broken *s = state;

    if (!s->mode[0]) {
        snprintf(err, err_len, "mode is required");
        return -EINVAL;
    }
    return 0;
}

static int broken_optimize(void *state, struct vbp_batch *b)
{
    struct broken *s = state;
    struct vbp_read *r = b->n_reads ? &b->reads[0] : NULL;

    /* changes a failed run must not leave behind */
    b->note(b, "broken", 0, "about to break the plan (%s)", s->mode);
    b->rate_limit_bps = 12345;
    if (b->n_jobs) {
        b->jobs[0].defer_until_ns = INT64_MAX;
        snprintf(b->jobs[0].defer_reason, sizeof(b->jobs[0].defer_reason), "broken");
    }
    if (strcmp(s->mode, "fail") == 0) {
        if (r)
            r->offset += 4096;   /* even in place */
        return -EIO;
    }
    if (!r)
        return 0;
    if (strcmp(s->mode, "badfile") == 0)
        r->file = b->n_files;
    else if (strcmp(s->mode, "outside") == 0)
        r->consumers[0].offset = r->length;
    else if (strcmp(s->mode, "zero") == 0)
        r->length = 0;
    else if (strcmp(s->mode, "overflow") == 0)
        r->offset = UINT64_MAX - 1;
    else if (strcmp(s->mode, "nojob") == 0)
        r->consumers[0].job = 0xdead;
    else if (strcmp(s->mode, "lose") == 0)
        b->n_reads--;            /* the last read and its consumers vanish */
    else if (strcmp(s->mode, "shift") == 0) {
        r->offset += 1;          /* the consumer now gets other bytes */
    } else if (strcmp(s->mode, "nofile") == 0)
        b->n_files = 0;
    return 0;
}

static struct vbp_plugin plugin = {
    .name = "broken",
    .create = broken_create,
    .config = broken_config,
    .config_complete = broken_complete,
    .destroy = broken_destroy,
    .optimize = broken_optimize,
};

VBP_REGISTER(plugin)
