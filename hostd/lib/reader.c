/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "reader.h"

#include <stdlib.h>
#include <string.h>

#ifndef VB_RD_MAX
#define VB_RD_MAX (4u << 20)
#endif

static void io_done(struct vb_io *io, int res)
{
    struct vb_rd *rd = io->opaque;

    if (res < 0) {
        if (!rd->err) {
            rd->err = res;
            vb_seterr(&rd->e, res, "read %u bytes at %#llx: %s", io->len,
                      (unsigned long long)io->off, strerror(-res));
        }
    } else if ((uint32_t)res < io->len) {
        /* past the end of the file: QEMU reads zeros there too */
        memset(io->buf + res, 0, io->len - (uint32_t)res);
    }
    if (--rd->pending == 0 && rd->done)
        rd->done(rd);
}

static void prep_io(struct vb_io *io, struct vb_layer *l, uint64_t host_off, uint8_t *dst,
                    uint32_t len, struct vb_rd *rd)
{
    bool direct = l->dfd >= 0 && host_off % l->dio_off_align == 0 &&
                  len % l->dio_off_align == 0 && (uintptr_t)dst % l->dio_mem_align == 0;

    memset(io, 0, sizeof(*io));
    io->op = VB_IO_READ;
    io->fd = direct ? l->dfd : l->fd;
    io->fd_fallback = l->fd;
    io->off = host_off;
    io->buf = dst;
    io->len = len;
    io->cb = io_done;
    io->opaque = rd;
}

int vb_rd_start(struct vb_ring *ring, struct vb_rd *rd, GArray *scratch, vb_error *e)
{
    unsigned n_data = 0, n_comp = 0;
    int ret;

    rd->data_bytes = 0;
    rd->err = 0;
    rd->e.code = 0;
    rd->e.msg[0] = 0;
    rd->pending = 0;
    rd->n_ios = rd->n_comps = 0;
    g_array_set_size(scratch, 0);
    ret = vb_image_map(rd->img, rd->off, rd->len, scratch, e);
    if (ret)
        return ret;

    if (rd->top_only) {
        /* the rest stays as the caller put it: drop what lower layers give */
        guint k = 0;
        for (guint i = 0; i < scratch->len; i++) {
            struct vb_extent_map *m = &g_array_index(scratch, struct vb_extent_map, i);
            if (m->depth != 0 || m->kind == VB_X_HOLE)
                continue;
            if (m->kind == VB_X_ZERO)
                memset(rd->buf + (m->off - rd->off), 0, m->len);
            else
                g_array_index(scratch, struct vb_extent_map, k++) = *m;
        }
        g_array_set_size(scratch, k);
    }
    for (guint i = 0; i < scratch->len; i++) {
        struct vb_extent_map *m = &g_array_index(scratch, struct vb_extent_map, i);
        if (m->kind == VB_X_DATA) {
            n_data += (unsigned)((m->len + VB_RD_MAX - 1) / VB_RD_MAX);
            rd->data_bytes += m->len;
        } else if (m->kind == VB_X_COMPRESSED) {
            n_comp++;
            rd->data_bytes += m->len;
        }
    }
    if (!rd->data_bytes)
        return 1;

    /* everything the map does not cover (image end) and every zero range reads as zeros */
    if (!rd->top_only) {
        uint64_t covered = rd->off;
        for (guint i = 0; i < scratch->len; i++) {
            struct vb_extent_map *m = &g_array_index(scratch, struct vb_extent_map, i);
            if (m->kind == VB_X_ZERO || m->kind == VB_X_HOLE)
                memset(rd->buf + (m->off - rd->off), 0, m->len);
            covered = m->off + m->len;
        }
        if (covered < rd->off + rd->len)
            memset(rd->buf + (covered - rd->off), 0, rd->off + rd->len - covered);
    }

    free(rd->ios);
    free(rd->comps);
    rd->ios = calloc(n_data + n_comp, sizeof(*rd->ios));
    rd->comps = n_comp ? calloc(n_comp, sizeof(*rd->comps)) : NULL;
    if (!rd->ios || (n_comp && !rd->comps))
        return vb_seterr(e, -ENOMEM, "out of memory");

    for (guint i = 0; i < scratch->len; i++) {
        struct vb_extent_map *m = &g_array_index(scratch, struct vb_extent_map, i);
        struct vb_layer *l = &rd->img->layer[m->depth];
        uint8_t *dst = rd->buf + (m->off - rd->off);

        if (m->kind == VB_X_DATA) {
            /* bounded requests keep several in flight */
            for (uint64_t done = 0; done < m->len; done += VB_RD_MAX) {
                uint32_t n = (uint32_t)VB_MIN(m->len - done, (uint64_t)VB_RD_MAX);
                prep_io(&rd->ios[rd->n_ios++], l, m->host_off + done, dst + done, n, rd);
            }
        } else if (m->kind == VB_X_COMPRESSED) {
            struct vb_rd_comp *c = &rd->comps[rd->n_comps++];
            c->depth = m->depth;
            c->cluster_off = m->cluster_off;
            c->dst_off = (uint32_t)(m->off - rd->off);
            c->dst_len = (uint32_t)m->len;
            c->comp_len = m->comp_len;
            c->cbuf = malloc(VB_MAX(m->comp_len, 1u));
            if (!c->cbuf)
                return vb_seterr(e, -ENOMEM, "out of memory");
            prep_io(&rd->ios[rd->n_ios++], l, m->host_off, c->cbuf, m->comp_len, rd);
            rd->ios[rd->n_ios - 1].fd = l->fd;   /* unaligned: buffered */
        }
    }
    rd->pending = rd->n_ios;
    for (unsigned i = 0; i < rd->n_ios; i++)
        vb_ring_queue(ring, &rd->ios[i]);
    return 0;
}

int vb_rd_finish(struct vb_rd *rd, vb_error *e)
{
    uint8_t *tmp = NULL;
    uint32_t tmp_len = 0;
    int ret = 0;

    if (rd->err) {
        if (e)
            *e = rd->e;
        return rd->err;
    }
    for (unsigned i = 0; i < rd->n_comps && !ret; i++) {
        struct vb_rd_comp *c = &rd->comps[i];
        uint32_t cs = vb_image_layer_cluster_size(rd->img, c->depth);
        uint8_t *out;

        if (c->cluster_off == 0 && c->dst_len == cs) {
            out = rd->buf + c->dst_off;
        } else {
            if (tmp_len < cs) {
                free(tmp);
                tmp = malloc(cs);
                tmp_len = cs;
                if (!tmp) {
                    ret = vb_seterr(e, -ENOMEM, "out of memory");
                    break;
                }
            }
            out = tmp;
        }
        ret = vb_image_inflate(rd->img, c->depth, c->cbuf, c->comp_len, out, e);
        if (!ret && out == tmp)
            memcpy(rd->buf + c->dst_off, tmp + c->cluster_off, c->dst_len);
    }
    free(tmp);
    return ret;
}

void vb_rd_clear(struct vb_rd *rd)
{
    for (unsigned i = 0; i < rd->n_comps; i++)
        free(rd->comps[i].cbuf);
    free(rd->comps);
    free(rd->ios);
    rd->comps = NULL;
    rd->ios = NULL;
    rd->n_comps = rd->n_ios = 0;
}
