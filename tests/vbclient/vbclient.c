/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vbclient - a host-side stand-in for a guest: the guest tool's commands
 * and flags (the same client core), speaking to a VM's vbackupd socket
 * (--device), with the files of a backup taken from an ext2/3/4 file system
 * inside a raw copy of the guest's disk (--fs-image) instead of a running
 * kernel.  See docs/guest-tool.md.
 */
#include "ext2map.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum { O_FS_IMAGE = 2001, O_SERIAL, O_FS_OFFSET, O_PARTITION, O_MOUNT_POINT };

static const struct option extra[] = {
    { "fs-image", required_argument, NULL, O_FS_IMAGE },
    { "serial", required_argument, NULL, O_SERIAL },
    { "fs-offset", required_argument, NULL, O_FS_OFFSET },
    { "partition", required_argument, NULL, O_PARTITION },
    { "mount-point", required_argument, NULL, O_MOUNT_POINT },
    { NULL, 0, NULL, 0 },
};

static struct vbc_image_opts io;

static int option(int val, const char *arg)
{
    char *end;

    switch (val) {
    case O_FS_IMAGE: io.image = arg; return 0;
    case O_SERIAL: io.serial = arg; return 0;
    case O_MOUNT_POINT: io.mount_point = arg; return 0;
    case O_FS_OFFSET:
        errno = 0;
        io.offset = strtoull(arg, &end, 0);
        if (errno || *end || arg[0] == '-') {
            fprintf(stderr, "vbclient: --fs-offset: a byte offset\n");
            return 2;
        }
        return 0;
    case O_PARTITION:
        io.partition = (int)strtol(arg, &end, 10);
        if (*end || io.partition < 1 || io.partition > 128) {
            fprintf(stderr, "vbclient: --partition: a partition number 1..128\n");
            return 2;
        }
        return 0;
    default:
        return 2;
    }
}

static int source(struct vbc_backup_opts *o, const struct vbc_source_ops **ops, void **src)
{
    (void)o;
    if (io.partition && io.offset) {
        fprintf(stderr, "vbclient: give --fs-offset or --partition, not both\n");
        return 2;
    }
    *ops = &vbc_image_ops;
    *src = vbc_image_new(&io);
    return *src ? 0 : 1;
}

static int disk_serial(const char *arg, char *serial, size_t len, struct vbc_err *e)
{
    if (strlen(arg) == 0 || strlen(arg) > VB_MAX_SERIAL)
        return vbc_seterr(e, -EINVAL, "a disk serial is 1 to %u bytes", VB_MAX_SERIAL);
    snprintf(serial, len, "%s", arg);
    return 0;
}

static const struct vbc_tool tool = {
    .name = "vbclient",
    .usage_extra =
        "\n"
        "vbclient (host-side stand-in for a guest):\n"
        "  --device SOCKET      the VM's vbackupd socket\n"
        "  --fs-image RAW       the guest disk as a raw file; backup PATHs are read\n"
        "                       from the ext2/3/4 file system in it\n"
        "  --serial S           the disk's virtio serial\n"
        "  --fs-offset BYTES    where the file system starts on the disk\n"
        "  --partition N        ... or: in partition N (MBR primary or GPT)\n"
        "  --mount-point DIR    where the guest mounts it (default /); relative PATHs\n"
        "                       are inside the file system, absolute ones under DIR\n"
        "  restore/list/status/cancel work as in the guest; restore PATHs are\n"
        "  paths from the guest's /, restore --into DIR writes on the host\n"
        "  backup-disk takes the disk's serial\n",
    .options = extra,
    .option = option,
    .source = source,
    .source_free = vbc_image_free,
    .disk_serial = disk_serial,
    .disk_source = NULL,
    .paths_from_cwd = false,
};

int main(int argc, char **argv)
{
    return vbc_main(argc, argv, &tool);
}
