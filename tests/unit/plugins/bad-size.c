/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Test plugin: a struct_size that does not cover the required fields. */
#include <stddef.h>

#include "vbackup/policy.h"

static int opt(void *state, struct vbp_batch *b)
{
    (void)state;
    (void)b;
    return 0;
}

static struct vbp_plugin plugin = { .name = "bad-size", .optimize = opt };

const struct vbp_plugin *vbp_plugin_init(void);
__attribute__((visibility("default"))) const struct vbp_plugin *vbp_plugin_init(void)
{
    plugin.struct_size = offsetof(struct vbp_plugin, optimize);   /* one field short */
    plugin.api_version = VBP_API_VERSION;
    return &plugin;
}
