/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Test plugin: claims an API version vbackupd does not speak. */
#include "vbackup/policy.h"

static int opt(void *state, struct vbp_batch *b)
{
    (void)state;
    (void)b;
    return 0;
}

static struct vbp_plugin plugin = { .name = "bad-version", .optimize = opt };

const struct vbp_plugin *vbp_plugin_init(void);
__attribute__((visibility("default"))) const struct vbp_plugin *vbp_plugin_init(void)
{
    plugin.struct_size = sizeof(plugin);
    plugin.api_version = VBP_API_VERSION + 41;
    return &plugin;
}
