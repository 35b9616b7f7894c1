/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Which disk snapshot a command line names (resolve.h). */
#include "resolve.h"

#include <string.h>

int vbi_resolve_disk(struct vb_sr *r, const char *spec, const char *disk,
                     struct vb_sr_info **info, vb_error *e)
{
    const struct vb_sr_info *pick = NULL;
    GPtrArray *list;
    GString *disks;
    GHashTable *seen;
    int ret;

    if (strchr(spec, '/')) {
        struct vb_sr_snap *s;
        const struct vb_sr_info *i;

        ret = vb_sr_snap_open(r, spec, &s, e);
        if (ret)
            return ret;
        i = vb_sr_snap_info(s);
        if (i->kind != VB_SR_DISK)
            ret = vb_seterr(e, -EINVAL, "snapshot %s is a files snapshot, not a disk ('mount' "
                            "shows its files)", spec);
        else if (disk && strcmp(disk, i->disk))
            ret = vb_seterr(e, -ENOENT, "snapshot %s is of disk '%s', not '%s'", spec, i->disk,
                            disk);
        else
            *info = vb_sr_info_dup(i);
        vb_sr_snap_close(s);
        return ret;
    }
    if (!vb_valid_name(spec))
        return vb_seterr(e, -EINVAL, "'%s' is neither a snapshot id (VM/TIME) nor a VM name",
                         spec);
    ret = vb_sr_list(r, spec, &list, e);
    if (ret)
        return ret;
    disks = g_string_new(NULL);
    seen = g_hash_table_new(g_str_hash, g_str_equal);
    for (guint k = list->len; k-- > 0;) {            /* newest first */
        const struct vb_sr_info *i = list->pdata[k];
        if (i->kind != VB_SR_DISK || (disk && strcmp(disk, i->disk)))
            continue;
        if (!pick)
            pick = i;
        if (g_hash_table_add(seen, i->disk))
            g_string_append_printf(disks, "%s'%s'", disks->len ? ", " : "", i->disk);
    }
    if (!pick)
        ret = disk ? vb_seterr(e, -ENOENT, "VM %s has no snapshot of disk '%s'", spec, disk)
                   : vb_seterr(e, -ENOENT, "VM %s has no disk snapshots", spec);
    else if (g_hash_table_size(seen) > 1)
        ret = vb_seterr(e, -EINVAL, "VM %s has snapshots of several disks (%s): name one with "
                        "--disk", spec, disks->str);
    else
        *info = vb_sr_info_dup(pick);
    g_hash_table_destroy(seen);
    g_string_free(disks, TRUE);
    g_ptr_array_free(list, TRUE);
    return ret;
}
