/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The guest's mount table, as the host needs it to map files (mounts.c). */
#ifndef VBC_MOUNTS_H
#define VBC_MOUNTS_H

#include <stdbool.h>
#include <stddef.h>

struct vbc_mount {
    unsigned major, minor;       /* the file system's device */
    char *root;                  /* the folder of the file system mounted, "/" or "/sub" */
    char *point;                 /* where: an absolute path */
};

/* /proc/self/mountinfo's TEXT; lines it does not understand are skipped.
 * 0 or -ENOMEM. */
int vbc_mounts_parse(const char *text, struct vbc_mount **out, size_t *n);
void vbc_mounts_free(struct vbc_mount *m, size_t n);

/* P (absolute) is ROOT or lies below it, component by component. */
bool vbc_path_under(const char *p, const char *root);

/* The mount of device MAJOR:MINOR through which ABS is reached: the longest
 * mount point ABS lies under (of equal ones the later, mounted on top), or -1. */
int vbc_mount_of(const struct vbc_mount *m, size_t n, unsigned major, unsigned minor,
                 const char *abs);

/* ABS's path inside the file system of MT, as a protocol path (no leading
 * '/', "" its root); malloc'ed, NULL when out of memory. */
char *vbc_mount_inside(const struct vbc_mount *mt, const char *abs);

#endif
