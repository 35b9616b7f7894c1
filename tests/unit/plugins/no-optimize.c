/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Test plugin: registered properly, but without the required optimize. */
#include "vbackup/policy.h"

static struct vbp_plugin plugin = { .name = "no-optimize", .description = "broken" };

VBP_REGISTER(plugin)
