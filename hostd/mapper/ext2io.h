/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A libext2fs io_manager over a disk image chain (image.h, imageread.h):
 * libext2fs reads the file system of a VM's disk from its qcow2 or raw
 * images, read-only, at the offset where the file system starts.  A read
 * that does not lie wholly inside the disk fails, as it would on the
 * device.  Writes fail.
 */
#ifndef VB_EXT2IO_H
#define VB_EXT2IO_H

#include <ext2fs/ext2fs.h>

#include "image.h"

/* Opens the file system at OFFSET of IMG (which must outlive it) with
 * libext2fs, read-only.  0, or an errcode_t of libext2fs (error_message()). */
errcode_t vb_ext2io_open(struct vb_image *img, uint64_t offset, int flags, ext2_filsys *fs);

/* The message of the last failed read (for a fault in the image's format),
 * or "". */
const char *vb_ext2io_last_error(void);

#endif
