/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * An empty qcow2 v3 overlay (docs/interop/qcow2.txt in QEMU), laid out as
 * qemu-img lays out a new image:
 *
 *   cluster 0   header (104 bytes), header extensions (backing format,
 *               end), the backing file name
 *   cluster 1   refcount table (one entry: cluster 2)
 *   cluster 2   refcount block (16-bit refcounts: clusters 0 .. 2 + L1)
 *   cluster 3.. L1 table, all zeros (nothing allocated)
 *
 * Incompatible feature bit 4 (extended L2) is set: every L2 entry QEMU
 * writes is 16 bytes, the second 8 a bitmap of allocated and zero
 * subclusters.
 */
#include "overlay.h"

#include <endian.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CLUSTER_BITS   17
#define L2_ENTRIES     (VB_OVERLAY_CLUSTER / 16)     /* extended entries */
#define INCOMPAT_EXTL2 (1ull << 4)
#define EXT_BACKING_FORMAT 0xe2792acau
#define REFCOUNT_ORDER 4

static void put32(uint8_t *p, uint32_t v)
{
    v = htobe32(v);
    memcpy(p, &v, 4);
}

static void put64(uint8_t *p, uint64_t v)
{
    v = htobe64(v);
    memcpy(p, &v, 8);
}

static int write_at(int fd, const void *buf, size_t len, uint64_t off)
{
    const uint8_t *p = buf;

    while (len) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return 0;
}

int vb_overlay_create(const char *path, uint64_t size, const char *backing,
                      const char *backing_fmt, uid_t uid, gid_t gid, mode_t mode, vb_error *e)
{
    const uint64_t span = (uint64_t)VB_OVERLAY_CLUSTER * L2_ENTRIES;
    uint64_t l1_entries, l1_clusters, used;
    size_t blen = backing ? strlen(backing) : 0, flen = backing_fmt ? strlen(backing_fmt) : 0;
    uint8_t *c = NULL;
    char *dir = NULL;
    int fd = -1, ret;

    if (!backing || backing[0] != '/' || !blen || blen > 1023 ||
        (strcmp(backing_fmt ? backing_fmt : "", "raw") && strcmp(backing_fmt, "qcow2")))
        return vb_seterr(e, -EINVAL, "overlay %s: backing file must be an absolute path and "
                         "its format raw or qcow2", path);
    if (!size || size > (1ull << 50) || size % 512)
        return vb_seterr(e, -EINVAL, "overlay %s: size %llu is not a multiple of 512 up to "
                         "1 PiB", path, (unsigned long long)size);
    l1_entries = (size + span - 1) / span;
    l1_clusters = (l1_entries * 8 + VB_OVERLAY_CLUSTER - 1) / VB_OVERLAY_CLUSTER;
    used = 3 + l1_clusters;
    /* one refcount block covers 64 Ki clusters: 8 GiB of metadata, QEMU grows it */
    c = calloc(1, VB_OVERLAY_CLUSTER);
    if (!c)
        return vb_seterr(e, -ENOMEM, "out of memory");
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        ret = vb_seterr(e, -errno, "create %s: %s", path, strerror(errno));
        free(c);
        return ret;
    }

    /* header */
    put32(c + 0, 0x514649fbu);
    put32(c + 4, 3);
    put32(c + 20, CLUSTER_BITS);
    put64(c + 24, size);
    put32(c + 36, (uint32_t)l1_entries);
    put64(c + 40, 3ull * VB_OVERLAY_CLUSTER);          /* L1 */
    put64(c + 48, 1ull * VB_OVERLAY_CLUSTER);          /* refcount table */
    put32(c + 56, 1);
    put64(c + 72, INCOMPAT_EXTL2);
    put32(c + 96, REFCOUNT_ORDER);
    put32(c + 100, 104);
    /* extensions: backing format, end; then the backing file name */
    {
        size_t off = 104, padded = (flen + 7) & ~(size_t)7;
        put32(c + off, EXT_BACKING_FORMAT);
        put32(c + off + 4, (uint32_t)flen);
        memcpy(c + off + 8, backing_fmt, flen);
        off += 8 + padded;
        off += 8;                                      /* end: type 0, length 0 */
        memcpy(c + off, backing, blen);
        put64(c + 8, off);
        put32(c + 16, (uint32_t)blen);
    }
    ret = write_at(fd, c, VB_OVERLAY_CLUSTER, 0);
    /* refcount table */
    memset(c, 0, VB_OVERLAY_CLUSTER);
    put64(c, 2ull * VB_OVERLAY_CLUSTER);
    if (!ret)
        ret = write_at(fd, c, VB_OVERLAY_CLUSTER, VB_OVERLAY_CLUSTER);
    /* refcount block: every cluster of the file is used once */
    memset(c, 0, VB_OVERLAY_CLUSTER);
    for (uint64_t i = 0; i < used; i++) {
        uint16_t one = htobe16(1);
        memcpy(c + 2 * i, &one, 2);
    }
    if (!ret)
        ret = write_at(fd, c, VB_OVERLAY_CLUSTER, 2ull * VB_OVERLAY_CLUSTER);
    /* the L1 table: zeros, as the file's extension gives them */
    if (!ret && ftruncate(fd, (off_t)(used * VB_OVERLAY_CLUSTER)) < 0)
        ret = -errno;
    if (!ret && fchown(fd, uid, gid) < 0)
        ret = -errno;
    if (!ret && fchmod(fd, mode & 0666) < 0)
        ret = -errno;
    if (!ret && fsync(fd) < 0)
        ret = -errno;
    if (ret)
        vb_seterr(e, ret, "write %s: %s", path, strerror(-ret));
    close(fd);
    free(c);
    if (!ret) {
        dir = strdup(path);
        ret = dir ? vb_fsync_dir(dirname(dir)) : -ENOMEM;
        if (ret)
            vb_seterr(e, ret, "sync the folder of %s: %s", path, strerror(-ret));
        free(dir);
    }
    if (ret)
        unlink(path);
    return ret;
}
