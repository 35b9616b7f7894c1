/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vbackup - the guest tool: file and disk backups and file restores through
 * the virtio-backup device (/dev/vbackup).  See docs/guest-tool.md.
 */
#include "guest.h"

#include <stdlib.h>
#include <string.h>

enum { O_ASSUME_DISK = 2001 };

static const struct option extra[] = {
    { "assume-disk", required_argument, NULL, O_ASSUME_DISK },
    { NULL, 0, NULL, 0 },
};

static const char *assume_disk;

static int option(int val, const char *arg)
{
    if (val == O_ASSUME_DISK) {
        assume_disk = arg;
        return 0;
    }
    return 2;
}

static int source(struct vbc_backup_opts *o, const struct vbc_source_ops **ops, void **src)
{
    o->assume_disk = assume_disk;
    *ops = &vbc_guest_ops;
    *src = vbc_guest_new();
    return *src ? 0 : 1;
}

static const struct vbc_tool tool = {
    .name = "vbackup",
    .usage_extra =
        "  --assume-disk SERIAL[:START]\n"
        "                       treat every file system of the backup as if it lay on\n"
        "                       a virtio disk with this serial, at START bytes (default:\n"
        "                       the partition start in sysfs, else 0); for tests on\n"
        "                       loop devices\n",
    .options = extra,
    .option = option,
    .source = source,
    .source_free = vbc_guest_free,
    .disk_serial = vbc_guest_disk_serial,
    .disk_source = vbc_guest_disk_source,
    .paths_from_cwd = true,
};

int main(int argc, char **argv)
{
    return vbc_main(argc, argv, &tool);
}
