/* SPDX-License-Identifier: GPL-2.0-or-later */
/* vbclient's file source: an ext2/3/4 file system in a raw disk image. */
#ifndef VBCLIENT_EXT2MAP_H
#define VBCLIENT_EXT2MAP_H

#include "vbc.h"

struct vbc_image_opts {
    const char *image;           /* --fs-image RAW */
    const char *serial;          /* --serial S */
    uint64_t offset;             /* --fs-offset BYTES */
    int partition;               /* --partition N (MBR primary or GPT), 0: none */
    const char *mount_point;     /* --mount-point DIR (default "/") */
};

extern const struct vbc_source_ops vbc_image_ops;
void *vbc_image_new(const struct vbc_image_opts *io);
void vbc_image_free(void *s);

#endif
