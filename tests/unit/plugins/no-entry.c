/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Test plugin: a shared object without the vbp_plugin_init entry point. */
int not_a_policy(void);
__attribute__((visibility("default"))) int not_a_policy(void)
{
    return 42;
}
