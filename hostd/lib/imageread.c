/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Synchronous reads of guest ranges (imageread.h). */
#include "imageread.h"

#include <stdlib.h>
#include <string.h>

int vb_image_pread(struct vb_image *img, void *buf, size_t len, uint64_t off, vb_error *e)
{
    uint8_t *out = buf, *cbuf = NULL, *cluster = NULL;
    uint32_t cluster_cap = 0;
    GArray *m;
    int ret = 0;

    if (!len)
        return 0;
    if (off >= img->size || len > img->size - off) {
        /* past the end reads as zeros, as a disk's tail does */
        uint64_t in = off >= img->size ? 0 : img->size - off;

        memset(out + in, 0, len - in);
        len = in;
        if (!len)
            return 0;
    }
    m = g_array_new(FALSE, FALSE, sizeof(struct vb_extent_map));
    ret = vb_image_map(img, off, len, m, e);
    for (guint i = 0; i < m->len && !ret; i++) {
        struct vb_extent_map *x = &g_array_index(m, struct vb_extent_map, i);
        uint8_t *dst = out + (x->off - off);

        switch (x->kind) {
        case VB_X_DATA:
            ret = vb_pread_all(img->layer[x->depth].fd, dst, x->len, x->host_off);
            if (ret)
                vb_seterr(e, ret, "%s: read of %llu bytes at %#llx: %s",
                          img->layer[x->depth].path, (unsigned long long)x->len,
                          (unsigned long long)x->host_off, strerror(-ret));
            break;
        case VB_X_COMPRESSED: {
            uint32_t cs = vb_image_layer_cluster_size(img, x->depth);

            if (x->cluster_off > cs || x->len > cs - x->cluster_off) {
                ret = vb_seterr(e, -EINVAL, "%s: a compressed run outside its cluster",
                                img->layer[x->depth].path);
                break;
            }
            if (cs > cluster_cap) {
                free(cluster);
                cluster = malloc(cs);
                cluster_cap = cluster ? cs : 0;
            }
            free(cbuf);
            cbuf = malloc(x->comp_len ? x->comp_len : 1);
            if (!cluster || !cbuf) {
                ret = vb_seterr(e, -ENOMEM, "out of memory");
                break;
            }
            ret = vb_pread_all(img->layer[x->depth].fd, cbuf, x->comp_len, x->host_off);
            if (ret) {
                vb_seterr(e, ret, "%s: read of a compressed cluster at %#llx: %s",
                          img->layer[x->depth].path, (unsigned long long)x->host_off,
                          strerror(-ret));
                break;
            }
            ret = vb_image_inflate(img, x->depth, cbuf, x->comp_len, cluster, e);
            if (!ret)
                memcpy(dst, cluster + x->cluster_off, x->len);
            break;
        }
        default:
            memset(dst, 0, x->len);
            break;
        }
    }
    g_array_free(m, TRUE);
    free(cbuf);
    free(cluster);
    return ret;
}
