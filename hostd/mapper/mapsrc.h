/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The mapper's source of files (a vbc_source_ops): the ext2/3/4 file
 * systems a job names, read from the views of the VM's disks (image chains
 * inherited as descriptors), walked by ext2walk.c.  What the host cannot
 * map makes the walk fail with a message, so that the guest maps the files
 * itself: a file system that is not ext2/3/4 or has features libext2fs
 * does not know, a journal that still holds changes (the file system was
 * not frozen when the view was taken), encrypted files and folders, and any
 * damage libext2fs or the walk finds.
 */
#ifndef VB_MAPSRC_H
#define VB_MAPSRC_H

#include "mapspec.h"
#include "vbc.h"

extern const struct vbc_source_ops vb_mapsrc_ops;

/* A source for SPEC (which must outlive it), whose chains are the
 * descriptors FIRST_FD, FIRST_FD + 1, ... in the spec's order. */
void *vb_mapsrc_new(const struct vb_mapspec *spec, int first_fd);
void vb_mapsrc_free(void *src);

#endif
