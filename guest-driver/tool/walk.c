/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The guest's files as a vbackup source: resolve the roots, find each file
 * system's virtio disk (serial) and partition start in sysfs, freeze, walk
 * the trees (one file system per root, sorted, --exclude), and map each
 * regular file with FIEMAP.  What the host cannot read from the disk image
 * goes through the fallback stream.
 *
 * The walk works relative to each folder's fd (openat, fstatat,
 * readlinkat), so names are bytes and paths may be longer than PATH_MAX.
 * Each entry's extended attributes (all namespaces root can read; symlinks
 * and special files through their O_PATH fd's /proc link), inode flags and
 * project id are read; what cannot be read or sent is a problem: reported,
 * sent to the host, and the backup ends incomplete (exit status 3).
 */
#include "guest.h"

#include <dirent.h>
#include <stdarg.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "beneath.h"
#include "mounts.h"

#define EXT4_MAGIC      0xEF53
#define XFS_MAGIC       0x58465342
#define TMPFS_MAGIC     0x01021994
#define BTRFS_MAGIC     0x9123683E

/* FIEMAP flags that mean "the bytes are not plainly at this place on disk". */
#define FIEMAP_UNREADABLE (FIEMAP_EXTENT_UNKNOWN | FIEMAP_EXTENT_DELALLOC | \
                           FIEMAP_EXTENT_ENCODED | FIEMAP_EXTENT_DATA_ENCRYPTED | \
                           FIEMAP_EXTENT_NOT_ALIGNED | FIEMAP_EXTENT_DATA_INLINE | \
                           FIEMAP_EXTENT_DATA_TAIL)
#define FIEMAP_BATCH    512

struct gfs {
    dev_t dev;
    int fd;
    char *where;                 /* first root found on it */
    char fstype[24];
    int disk;                    /* index into o->serials, -1: not on a disk we can name */
    uint64_t start;              /* partition start on the disk, bytes */
    bool extents;                /* files are mapped (else: fallback) */
};

struct groot {
    char *abs;                   /* "/usr/lib" */
    size_t fs;
    bool is_dir;
};

struct guest {
    struct vbc_backup_opts *o;
    struct groot roots[VB_MAX_ROOTS];
    size_t n_roots;
    struct gfs fs[VB_MAX_ROOTS];
    size_t n_fs;
    struct vbf_fs ffs[VB_MAX_ROOTS];
    size_t n_ffs;
    struct vbf fz;
    bool fz_init;
    /* walk */
    int (*emit)(void *, const struct vbc_file *, const struct vbc_fb *, struct vbc_err *);
    void *ctx;
    char *path;
    size_t path_cap;
    struct vbc_extent *ext;
    size_t ext_cap;
    struct fiemap *fm;
    /* extended attributes of the current entry */
    char *xnames;                /* listxattr buffer */
    size_t xnames_cap;
    struct vbc_xattr_in *xin;
    size_t xin_cap;
    struct vbc_xattrs xs;
};

/* ---- sysfs ------------------------------------------------------------------- */

static int read_small(const char *path, char *buf, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n;

    if (fd < 0)
        return -errno;
    n = read(fd, buf, len - 1);
    close(fd);
    if (n < 0)
        return -errno;
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
        n--;
    buf[n] = 0;
    return 0;
}

/*
 * The block device DEV: its disk's sysfs name, the partition start, whether
 * the disk is a virtio-blk disk and its serial.  Returns -ENODEV when DEV
 * is no block device (tmpfs, btrfs, nfs...).
 */
static int sysfs_disk(dev_t dev, char *disk, size_t dl, uint64_t *start, bool *virtio,
                      char *serial, size_t sl)
{
    char link[64], real[PATH_MAX], p[PATH_MAX + 64], drv[PATH_MAX], val[64];
    char *diskdir;
    ssize_t n;

    snprintf(link, sizeof(link), "/sys/dev/block/%u:%u", major(dev), minor(dev));
    if (!realpath(link, real))
        return -ENODEV;
    snprintf(p, sizeof(p), "%s/partition", real);
    *start = 0;
    if (access(p, F_OK) == 0) {
        snprintf(p, sizeof(p), "%s/start", real);
        if (read_small(p, val, sizeof(val)) < 0)
            return -EIO;
        *start = strtoull(val, NULL, 10) * 512;
        diskdir = dirname(real);
    } else {
        diskdir = real;
    }
    snprintf(disk, dl, "%s", strrchr(diskdir, '/') ? strrchr(diskdir, '/') + 1 : diskdir);
    snprintf(p, sizeof(p), "%s/device/driver", diskdir);
    n = readlink(p, drv, sizeof(drv) - 1);
    drv[n > 0 ? n : 0] = 0;
    *virtio = n > 0 && strcmp(strrchr(drv, '/') ? strrchr(drv, '/') + 1 : drv,
                              "virtio_blk") == 0;
    snprintf(p, sizeof(p), "%s/serial", diskdir);
    if (read_small(p, serial, sl) < 0)
        serial[0] = 0;
    return 0;
}

static const char *pseudo_fs(long type)
{
    static const struct { long magic; const char *name; } t[] = {
        { 0x9fa0, "proc" }, { 0x62656572, "sysfs" }, { 0x1cd1, "devpts" },
        { 0x27e0eb, "cgroup" }, { 0x63677270, "cgroup2" }, { 0x64626720, "debugfs" },
        { 0x74726163, "tracefs" }, { 0x73636673, "securityfs" }, { 0x6165676c, "pstore" },
        { (long)0xcafe4a11, "bpf" }, { 0x62656570, "configfs" }, { 0x65735543, "fusectl" },
        { 0x19800202, "mqueue" }, { (long)0x958458f6, "hugetlbfs" }, { 0x6e736673, "nsfs" },
        { 0x42494e4d, "binfmt_misc" }, { (long)0xde5e81e4, "efivarfs" }, { 0x0187, "autofs" },
        { (long)0xf97cff8c, "selinuxfs" }, { 0x534f434b, "sockfs" }, { 0x50495045, "pipefs" },
    };

    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if ((long)(uint32_t)type == (long)(uint32_t)t[i].magic)
            return t[i].name;
    return NULL;
}

static const char *fs_name(long type)
{
    switch ((uint32_t)type) {
    case EXT4_MAGIC: return "ext4";
    case XFS_MAGIC: return "xfs";
    case TMPFS_MAGIC: return "tmpfs";
    case BTRFS_MAGIC: return "btrfs";
    default: return NULL;
    }
}

static int add_serial(struct vbc_backup_opts *o, const char *serial, struct vbc_err *e)
{
    for (size_t i = 0; i < o->n_serials; i++)
        if (strcmp(o->serials[i], serial) == 0)
            return (int)i;
    if (o->n_serials == VB_MAX_DISKS)
        return vbc_seterr(e, -E2BIG, "the paths lie on more than %u disks", VB_MAX_DISKS);
    if (!(o->serials[o->n_serials] = strdup(serial)))
        return vbc_seterr(e, -ENOMEM, "out of memory");
    return (int)o->n_serials++;
}

/* Find (or add) the file system of a root; FD is a directory on it. */
static int add_fs(struct guest *g, const char *where, int fd, dev_t dev, struct vbc_err *e)
{
    struct vbc_backup_opts *o = g->o;
    struct gfs *x;
    struct statfs sf;
    char disk[64], serial[256];
    bool virtio = false;
    const char *pseudo, *name;
    int rc;

    for (size_t i = 0; i < g->n_fs; i++) {
        if (g->fs[i].dev == dev) {
            close(fd);
            return (int)i;
        }
    }
    if (fstatfs(fd, &sf) < 0) {
        rc = -errno;
        close(fd);
        return vbc_seterr(e, rc, "statfs %s: %s", where, strerror(-rc));
    }
    if ((pseudo = pseudo_fs((long)sf.f_type))) {
        close(fd);
        return vbc_seterr(e, -EINVAL, "%s is on a pseudo file system (%s): nothing to back up",
                          where, pseudo);
    }
    x = &g->fs[g->n_fs];
    memset(x, 0, sizeof(*x));
    x->dev = dev;
    x->fd = fd;
    x->disk = -1;
    if (!(x->where = strdup(where)))
        return vbc_seterr(e, -ENOMEM, "out of memory");
    name = fs_name((long)sf.f_type);
    if (name)
        snprintf(x->fstype, sizeof(x->fstype), "%s", name);
    else
        snprintf(x->fstype, sizeof(x->fstype), "type %#lx", (unsigned long)(uint32_t)sf.f_type);
    g->n_fs++;

    rc = sysfs_disk(dev, disk, sizeof(disk), &x->start, &virtio, serial, sizeof(serial));
    if (o->assume_disk) {
        /* testing aid: SERIAL[:START] names the disk of every file system */
        const char *colon = strchr(o->assume_disk, ':');
        char s[VB_MAX_SERIAL + 1];
        size_t sl = colon ? (size_t)(colon - o->assume_disk) : strlen(o->assume_disk);

        if (sl == 0 || sl > VB_MAX_SERIAL)
            return vbc_seterr(e, -EINVAL, "--assume-disk: the serial must be 1 to %u bytes",
                              VB_MAX_SERIAL);
        memcpy(s, o->assume_disk, sl);
        s[sl] = 0;
        if (colon)
            x->start = strtoull(colon + 1, NULL, 0);
        else if (rc < 0)
            x->start = 0;
        if ((rc = add_serial(o, s, e)) < 0)
            return rc;
        x->disk = rc;
    } else if (rc < 0) {
        vbc_info("note: %s (%s) is not on a block device; its files go through the device",
                 where, x->fstype);
    } else if (!virtio) {
        vbc_info("note: %s (%s on %s) is not on a virtio disk; its files go through the device",
                 where, x->fstype, disk);
    } else if (!serial[0]) {
        vbc_info("note: disk %s of %s has no serial (start the VM with serial=... on it); its "
                 "files go through the device", disk, where);
    } else if (strlen(serial) > VB_MAX_SERIAL) {
        vbc_info("note: the serial of disk %s is longer than %u bytes; the files of %s go "
                 "through the device", disk, VB_MAX_SERIAL, where);
    } else {
        if ((rc = add_serial(o, serial, e)) < 0)
            return rc;
        x->disk = rc;
    }
    if (x->disk >= 0) {
        x->extents = (uint32_t)sf.f_type == EXT4_MAGIC || (uint32_t)sf.f_type == XFS_MAGIC;
        if (!x->extents)
            vbc_info("note: %s is %s, whose extents the host cannot read; its files go "
                     "through the device", where, x->fstype);
    }
    return (int)(g->n_fs - 1);
}

/* ---- what the host needs to map the files ------------------------------------------ */

/* The whole of a small /proc file, NUL-terminated; NULL on failure. */
static char *read_text(const char *path, size_t max)
{
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0 || !buf) {
        if (fd >= 0)
            close(fd);
        free(buf);
        return NULL;
    }
    for (;;) {
        ssize_t r;

        if (n + 1 == cap) {
            char *nb = cap < max ? realloc(buf, cap * 2) : NULL;

            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        r = read(fd, buf + n, cap - n - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (r < 0) {
                free(buf);
                buf = NULL;
            }
            break;
        }
        n += (size_t)r;
    }
    close(fd);
    if (buf)
        buf[n] = 0;
    return buf;
}

#define MAP_PRUNE_BYTES (256u << 10)

/*
 * o->map: when every root lies on an ext2/3/4 file system of a disk the
 * host names, each root's file system (disk, start) and path inside it, the
 * mount points under the roots and the exclusions; else map.ok stays false
 * and the guest walks.
 */
static void host_map_info(struct guest *g)
{
    struct vbc_backup_opts *o = g->o;
    struct vbc_map *mp = &o->map;
    struct vbc_mount *mt = NULL;
    size_t nm = 0, prune_bytes = 0, cap = 0;
    int fs_index[VB_MAX_ROOTS];
    char *text;

    vbc_map_clear(mp);
    for (size_t i = 0; i < g->n_fs; i++) {
        fs_index[i] = -1;
        if (!g->fs[i].extents || strcmp(g->fs[i].fstype, "ext4") || g->fs[i].disk < 0)
            return;
    }
    if (o->n_exclude > VB_MAX_EXCLUDE)
        return;
    for (size_t i = 0; i < o->n_exclude; i++)
        if (!o->exclude[i][0] || strlen(o->exclude[i]) > VB_MAX_PATTERN)
            return;
    if (!(text = read_text("/proc/self/mountinfo", 16u << 20)))
        return;
    if (vbc_mounts_parse(text, &mt, &nm) < 0) {
        free(text);
        return;
    }
    free(text);
    for (size_t i = 0; i < g->n_roots; i++) {
        const struct groot *r = &g->roots[i];
        const struct gfs *x = &g->fs[r->fs];
        int k = vbc_mount_of(mt, nm, major(x->dev), minor(x->dev), r->abs);

        if (k < 0 || !(mp->inside[i] = vbc_mount_inside(&mt[k], r->abs)) ||
            vb_path_check(mp->inside[i], strlen(mp->inside[i]), true))
            goto out;
        if (fs_index[r->fs] < 0) {
            fs_index[r->fs] = (int)mp->n_fs;
            mp->fs[mp->n_fs].disk = (uint16_t)x->disk;
            mp->fs[mp->n_fs].start = x->start;
            mp->n_fs++;
        }
        mp->root_fs[i] = (uint16_t)fs_index[r->fs];
    }
    /* the mount points under the roots: folders of the roots' file systems
     * the guest's walk does not enter (another file system is there) */
    for (size_t k = 0; k < nm; k++) {
        const char *pt = mt[k].point;
        bool under = false, dup = false;

        for (size_t i = 0; i < g->n_roots && !under; i++)
            under = strcmp(pt, g->roots[i].abs) && vbc_path_under(pt, g->roots[i].abs);
        if (!under)
            continue;
        for (size_t i = 0; i < mp->n_prune && !dup; i++)
            dup = !strcmp(mp->prune[i], pt + 1);
        if (dup)
            continue;
        if (mp->n_prune == VB_MAX_PRUNE || vb_path_check(pt + 1, strlen(pt + 1), false) ||
            (prune_bytes += strlen(pt + 1) + 2) > MAP_PRUNE_BYTES)
            goto out;
        if (mp->n_prune == cap) {
            char **nv = realloc(mp->prune, (cap ? cap * 2 : 16) * sizeof(char *));

            if (!nv)
                goto out;
            mp->prune = nv;
            cap = cap ? cap * 2 : 16;
        }
        if (!(mp->prune[mp->n_prune] = strdup(pt + 1)))
            goto out;
        mp->n_prune++;
    }
    mp->ok = true;
out:
    vbc_mounts_free(mt, nm);
    if (!mp->ok)
        vbc_map_clear(mp);
}

/* ---- prepare ---------------------------------------------------------------------- */

static int guest_prepare(void *s, struct vbc_backup_opts *o, struct vbc_err *e)
{
    struct guest *g = s;
    char cwd[PATH_MAX];
    int rc;

    g->o = o;
    if (!getcwd(cwd, sizeof(cwd)))
        return vbc_seterr(e, -errno, "getcwd: %s", strerror(errno));
    if (o->n_paths > VB_MAX_ROOTS)
        return vbc_seterr(e, -E2BIG, "%zu paths given (at most %u)", o->n_paths, VB_MAX_ROOTS);
    o->roots_rel = calloc(o->n_paths ? o->n_paths : 1, sizeof(char *));
    if (!o->roots_rel)
        return vbc_seterr(e, -ENOMEM, "out of memory");

    for (size_t i = 0; i < o->n_paths; i++) {
        char *abs = vbc_abspath(cwd, o->paths[i]), *dir, *base, real[PATH_MAX];
        struct stat st;
        int fd;
        bool dup = false;

        if (!abs)
            return vbc_seterr(e, -ENOMEM, "out of memory");
        /* resolve the parent's symlinks; keep the last component as it is */
        if (strcmp(abs, "/") != 0) {
            char *c1 = strdup(abs), *c2 = strdup(abs);

            if (!c1 || !c2) {
                free(c1);
                free(c2);
                free(abs);
                return vbc_seterr(e, -ENOMEM, "out of memory");
            }
            dir = dirname(c1);
            base = basename(c2);
            if (!realpath(dir, real)) {
                rc = -errno;
                vbc_seterr(e, rc, "%s: %s", o->paths[i], strerror(errno));
                free(c1);
                free(c2);
                free(abs);
                return rc;
            }
            free(abs);
            abs = malloc(strlen(real) + strlen(base) + 2);
            if (abs)
                sprintf(abs, "%s/%s", strcmp(real, "/") ? real : "", base);
            free(c1);
            free(c2);
            if (!abs)
                return vbc_seterr(e, -ENOMEM, "out of memory");
        }
        if (lstat(abs, &st) < 0) {
            rc = -errno;
            vbc_seterr(e, rc, "%s: %s", o->paths[i], strerror(errno));
            free(abs);
            return rc;
        }
        if (!vbc_path_valid(abs + 1, strlen(abs + 1), true)) {
            vbc_seterr(e, -EINVAL, "%s: not a valid path for a backup (UTF-8, at most %u bytes)",
                       o->paths[i], VB_MAX_PATH);
            free(abs);
            return -EINVAL;
        }
        for (size_t k = 0; k < g->n_roots; k++)
            dup |= strcmp(g->roots[k].abs, abs) == 0;
        if (dup) {
            free(abs);
            continue;
        }
        /* a directory on the root's file system, for syncfs and FIFREEZE */
        if (S_ISDIR(st.st_mode)) {
            fd = open(abs, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        } else {
            char *c = strdup(abs);

            fd = c ? open(dirname(c), O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
            free(c);
        }
        if (fd < 0) {
            rc = -errno;
            vbc_seterr(e, rc, "open %s: %s", abs, strerror(errno));
            free(abs);
            return rc;
        }
        if ((rc = add_fs(g, abs, fd, st.st_dev, e)) < 0) {
            free(abs);
            return rc;
        }
        g->roots[g->n_roots].abs = abs;
        g->roots[g->n_roots].fs = (size_t)rc;
        g->roots[g->n_roots].is_dir = S_ISDIR(st.st_mode);
        o->roots_rel[g->n_roots] = abs + 1;
        g->n_roots++;
    }
    o->n_roots = g->n_roots;
    if (!o->n_roots)
        return vbc_seterr(e, -EINVAL, "nothing to back up");

    /* the file systems whose files the host reads from the disk are frozen */
    for (size_t i = 0; i < g->n_fs; i++) {
        if (!g->fs[i].extents)
            continue;
        g->ffs[g->n_ffs].fd = g->fs[i].fd;
        g->ffs[g->n_ffs].dev = g->fs[i].dev;
        g->ffs[g->n_ffs].name = g->fs[i].where;
        g->n_ffs++;
    }
    vbf_init(&g->fz, g->ffs, g->n_ffs, o->freeze_timeout, o->hooks_dir);
    g->fz_init = true;
    o->will_freeze = g->n_ffs > 0;
    host_map_info(g);
    return 0;
}

/* ---- freeze ---------------------------------------------------------------------------- */

static int guest_freeze(void *s, struct vbc_err *e)
{
    struct guest *g = s;

    if (!g->n_ffs)
        return 0;
    return vbf_freeze(&g->fz, e);
}

static double guest_thaw(void *s)
{
    struct guest *g = s;

    return g->fz_init ? vbf_thaw(&g->fz) : -1;
}

static bool guest_broken(void *s, struct vbc_err *e)
{
    struct guest *g = s;

    return g->fz_init && vbf_broken(&g->fz, e);
}

static bool guest_is_frozen(void *s)
{
    struct guest *g = s;

    return g->fz_init && vbf_is_frozen(&g->fz);
}

/* ---- mapping --------------------------------------------------------------------------- */

/* 1: mapped into g->ext (*n); 0: send as fallback; < 0: error.  Extents
 * past SIZE are kept when unwritten (preallocation). */
static int map_file(struct guest *g, int fd, const struct gfs *x, uint64_t size, size_t *n,
                    const char *path, struct vbc_err *e)
{
    uint64_t start = 0;
    bool first = true;

    *n = 0;
    if (!g->fm) {
        g->fm = calloc(1, sizeof(struct fiemap) + FIEMAP_BATCH * sizeof(struct fiemap_extent));
        if (!g->fm)
            return vbc_seterr(e, -ENOMEM, "out of memory");
    }
    for (;;) {
        struct fiemap *fm = g->fm;
        bool last = false;

        memset(fm, 0, sizeof(*fm));
        fm->fm_start = start;
        fm->fm_length = FIEMAP_MAX_OFFSET - start;
        fm->fm_flags = first ? FIEMAP_FLAG_SYNC : 0;
        fm->fm_extent_count = FIEMAP_BATCH;
        first = false;
        if (ioctl(fd, FS_IOC_FIEMAP, fm) < 0) {
            if (errno == EOPNOTSUPP || errno == ENOTTY || errno == EBADR)
                return 0;
            return vbc_seterr(e, -errno, "FIEMAP %s: %s", path, strerror(errno));
        }
        if (fm->fm_mapped_extents == 0)
            break;
        for (uint32_t i = 0; i < fm->fm_mapped_extents; i++) {
            const struct fiemap_extent *fe = &fm->fm_extents[i];
            bool unwritten = fe->fe_flags & FIEMAP_EXTENT_UNWRITTEN;

            if (fe->fe_flags & FIEMAP_EXTENT_LAST)
                last = true;
            if (fe->fe_logical >= size && !unwritten)
                continue;
            if ((fe->fe_flags & FIEMAP_UNREADABLE) && !unwritten)
                return 0;
            if (*n == g->ext_cap) {
                size_t nc = g->ext_cap ? g->ext_cap * 2 : 1024;
                struct vbc_extent *nv = realloc(g->ext, nc * sizeof(*nv));

                if (!nv)
                    return vbc_seterr(e, -ENOMEM, "out of memory");
                g->ext = nv;
                g->ext_cap = nc;
            }
            g->ext[*n].logical = fe->fe_logical;
            g->ext[*n].physical = fe->fe_physical + x->start;
            g->ext[*n].length = fe->fe_length;
            g->ext[*n].flags = unwritten ? VB_EXT_UNWRITTEN : 0;
            (*n)++;
        }
        {
            const struct fiemap_extent *fe = &fm->fm_extents[fm->fm_mapped_extents - 1];
            uint64_t next = fe->fe_logical + fe->fe_length;

            if (last || next <= start)
                break;
            start = next;
        }
    }
    if (!vbc_extents_normalize(g->ext, n, size))
        return 0;
    return 1;
}

/* Keeps only the extents a record whose data is not mapped may carry:
 * preallocated space past the size (inside it, the data says it all). */
static size_t only_prealloc(struct vbc_extent *ext, size_t n, uint64_t size)
{
    size_t o = 0;

    for (size_t i = 0; i < n; i++)
        if ((ext[i].flags & VB_EXT_UNWRITTEN) && ext[i].logical >= size)
            ext[o++] = ext[i];
    return o;
}

/* ---- walk ----------------------------------------------------------------------------- */

static uint8_t ftype_of(mode_t m)
{
    switch (m & S_IFMT) {
    case S_IFREG: return VB_FT_REG;
    case S_IFDIR: return VB_FT_DIR;
    case S_IFLNK: return VB_FT_SYMLINK;
    case S_IFIFO: return VB_FT_FIFO;
    case S_IFCHR: return VB_FT_CHR;
    case S_IFBLK: return VB_FT_BLK;
    case S_IFSOCK: return VB_FT_SOCK;
    default: return 0;
    }
}

static struct vb_ts ts_of(const struct timespec *t)
{
    return (struct vb_ts){ .sec = (int64_t)t->tv_sec, .nsec = (uint32_t)t->tv_nsec };
}

/* the path of g->path as the protocol names it (relative to "/") */
static const char *rel_of(const struct guest *g, size_t plen, size_t *len)
{
    *len = plen > 1 ? plen - 1 : 0;
    return plen > 1 ? g->path + 1 : "";
}

static void fill(struct guest *g, struct vbc_file *f, const struct stat *st, size_t plen, int disk)
{
    memset(f, 0, sizeof(*f));
    f->type = ftype_of(st->st_mode);
    f->disk = disk;
    f->mode = st->st_mode & 07777;
    f->uid = st->st_uid;
    f->gid = st->st_gid;
    f->nlink = (uint32_t)st->st_nlink;
    f->size = S_ISREG(st->st_mode) || S_ISDIR(st->st_mode) || S_ISLNK(st->st_mode)
                  ? (uint64_t)st->st_size : 0;
    f->ino = st->st_ino;
    if (S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode))
        f->rdev = vbc_encode_dev(major(st->st_rdev), minor(st->st_rdev));
    f->mtime = ts_of(&st->st_mtim);
    f->ctime = ts_of(&st->st_ctim);
    f->atime = ts_of(&st->st_atim);
    f->path = rel_of(g, plen, &f->path_len);
    f->fsid = st->st_dev;
}

static int problem(struct guest *g, size_t plen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Something of the entry at g->path could not be backed up. */
static int problem(struct guest *g, size_t plen, const char *fmt, ...)
{
    char reason[VB_MAX_MESSAGE];
    size_t rl;
    const char *rel = rel_of(g, plen, &rl);
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    return vbc_problem_add(g->o->problems, rel, rl, "%s", reason) ? -ENOMEM : 0;
}

/* The extended attributes of the entry open as FD into g->xs (the record's
 * section).  OPATH: an O_PATH fd, reached through its /proc link. */
static int read_xattrs(struct guest *g, int fd, bool opath, size_t plen)
{
    char proc[64];
    ssize_t ll;
    size_t n = 0, total = 0;
    int rc = 0;

    g->xs.len = 0;
    g->xs.n = 0;
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
    for (int tries = 0;; tries++) {
        ll = opath ? listxattr(proc, NULL, 0) : flistxattr(fd, NULL, 0);
        if (ll < 0) {
            if (errno == ENOTSUP || errno == EOPNOTSUPP)
                return 0;                /* the file system has none */
            return problem(g, plen, "extended attributes not backed up: listxattr: %s",
                           strerror(errno));
        }
        if (ll == 0)
            return 0;
        if ((size_t)ll + 1 > g->xnames_cap) {
            char *nb = realloc(g->xnames, (size_t)ll + 1);

            if (!nb)
                return -ENOMEM;
            g->xnames = nb;
            g->xnames_cap = (size_t)ll + 1;
        }
        ll = opath ? listxattr(proc, g->xnames, g->xnames_cap)
                   : flistxattr(fd, g->xnames, g->xnames_cap);
        if (ll >= 0)
            break;
        if (errno != ERANGE || tries > 8)
            return problem(g, plen, "extended attributes not backed up: listxattr: %s",
                           strerror(errno));
    }
    for (ssize_t o = 0; o < ll && !rc;) {
        const char *name = g->xnames + o;
        size_t nl = strnlen(name, (size_t)(ll - o));
        ssize_t vl;
        uint8_t *v = NULL;

        o += (ssize_t)nl + 1;
        if (!vb_xattr_name_ok(name, nl)) {
            rc = problem(g, plen, "extended attribute '%.*s' is of a namespace a backup does "
                         "not keep", (int)(nl > 64 ? 64 : nl), name);
            continue;
        }
        for (int tries = 0; tries < 8; tries++) {
            vl = opath ? getxattr(proc, name, NULL, 0) : fgetxattr(fd, name, NULL, 0);
            if (vl < 0)
                break;
            free(v);
            v = malloc((size_t)vl + 1);
            if (!v) {
                rc = -ENOMEM;
                break;
            }
            vl = opath ? getxattr(proc, name, v, (size_t)vl + 1)
                       : fgetxattr(fd, name, v, (size_t)vl + 1);
            if (vl >= 0 || errno != ERANGE)
                break;
        }
        if (rc)
            break;
        if (vl < 0) {
            free(v);
            if (errno != ENODATA)     /* gone meanwhile: not a problem */
                rc = problem(g, plen, "extended attribute %s not backed up: getxattr: %s", name,
                             strerror(errno));
            continue;
        }
        if ((size_t)vl > VB_MAX_XATTR_VALUE) {
            free(v);
            rc = problem(g, plen, "extended attribute %s: %zd bytes, more than a value may "
                         "hold; not backed up", name, vl);
            continue;
        }
        if (n == g->xin_cap) {
            size_t nc = g->xin_cap ? g->xin_cap * 2 : 32;
            struct vbc_xattr_in *nv = realloc(g->xin, nc * sizeof(*nv));

            if (!nv) {
                free(v);
                rc = -ENOMEM;
                break;
            }
            g->xin = nv;
            g->xin_cap = nc;
        }
        g->xin[n].name = (char *)name;
        g->xin[n].name_len = nl;
        g->xin[n].value = v;
        g->xin[n].value_len = (size_t)vl;
        total += vb_xattr_size(nl, (size_t)vl);
        n++;
    }
    if (!rc && total > VB_MAX_XATTR_BYTES)
        rc = problem(g, plen, "extended attributes of %zu bytes, more than the %u a file may "
                     "carry; none backed up", total, VB_MAX_XATTR_BYTES);
    else if (!rc && n)
        rc = vbc_xattrs_build(&g->xs, g->xin, n);
    for (size_t i = 0; i < n; i++)
        free(g->xin[i].value);
    if (rc == -ENOMEM)
        return rc;
    if (!rc && total > VB_MAX_XATTR_BYTES)
        g->xs.len = g->xs.n = 0;
    return rc;
}

/* Inode flags and project id of a regular file or folder open as FD. */
static void read_flags(int fd, struct vbc_file *f)
{
    struct fsxattr fx;
    int flags = 0;

    if (ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0)
        f->fsflags = (uint32_t)flags & VB_FSFL_MASK;
    if (ioctl(fd, FS_IOC_FSGETXATTR, &fx) == 0)
        f->projid = fx.fsx_projid;
}

static bool is_other_root(struct guest *g, const char *abs)
{
    for (size_t i = 0; i < g->n_roots; i++)
        if (strcmp(g->roots[i].abs, abs) == 0)
            return true;
    return false;
}

static int visit(struct guest *g, int pfd, const char *name, size_t plen, const struct gfs *x,
                 struct stat *st, bool descend, struct vbc_err *e);

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The entries of the folder open as DFD, whose path g->path is PLEN bytes. */
static int walk_dir(struct guest *g, int dfd, size_t plen, const struct gfs *x,
                    struct vbc_err *e)
{
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    DIR *d;
    int rc = 0, rfd = dup(dfd);

    d = rfd >= 0 ? fdopendir(rfd) : NULL;
    if (!d) {
        if (rfd >= 0)
            close(rfd);
        return problem(g, plen, "its entries not backed up: %s", strerror(errno));
    }
    while ((errno = 0, de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (n == cap) {
            char **nv = realloc(names, (cap ? cap * 2 : 64) * sizeof(*names));

            if (!nv) {
                rc = vbc_seterr(e, -ENOMEM, "out of memory");
                break;
            }
            names = nv;
            cap = cap ? cap * 2 : 64;
        }
        if (!(names[n] = strdup(de->d_name))) {
            rc = vbc_seterr(e, -ENOMEM, "out of memory");
            break;
        }
        n++;
    }
    if (!rc && errno)
        rc = problem(g, plen, "its entries could not all be read: %s", strerror(errno));
    closedir(d);
    if (!rc && n)
        qsort(names, n, sizeof(*names), name_cmp);

    for (size_t i = 0; i < n && !rc; i++) {
        size_t nl = strlen(names[i]), cl = plen + (plen > 1) + nl;
        struct stat st;

        if ((rc = vbc_path_child(&g->path, &g->path_cap, plen, names[i], e)))
            break;
        if (vbc_excluded(g->o, g->path, names[i]) || is_other_root(g, g->path))
            goto next;
        if (cl - 1 > VB_MAX_PATH) {
            rc = problem(g, cl, "path longer than %u bytes; not backed up", VB_MAX_PATH);
            goto next;
        }
        if (fstatat(dfd, names[i], &st, AT_SYMLINK_NOFOLLOW) < 0) {
            if (errno != ENOENT)
                rc = problem(g, cl, "not backed up: %s", strerror(errno));
            goto next;
        }
        if (st.st_dev != x->dev) {
            /* another file system: the mount point as an empty directory */
            if (S_ISDIR(st.st_mode))
                rc = visit(g, dfd, names[i], cl, x, &st, false, e);
            goto next;
        }
        rc = visit(g, dfd, names[i], cl, x, &st, true, e);
next:
        g->path[plen] = 0;
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

static int emit_with_xattrs(struct guest *g, struct vbc_file *f, const struct vbc_fb *fb,
                            struct vbc_err *e)
{
    f->xattrs = g->xs.len ? g->xs.buf : NULL;
    f->xattr_len = g->xs.len;
    f->n_xattrs = g->xs.n;
    return g->emit(g->ctx, f, fb, e);
}

/* The entry NAME in PFD (NAME "" : PFD itself, a root folder), whose path
 * g->path is PLEN bytes. */
static int visit(struct guest *g, int pfd, const char *name, size_t plen, const struct gfs *x,
                 struct stat *st, bool descend, struct vbc_err *e)
{
    struct vbc_file f;
    struct vbc_fb fb;
    char link[VB_MAX_LINK + 1];
    const char *base = strrchr(g->path, '/') ? strrchr(g->path, '/') + 1 : g->path;
    int rc, fd;

    memset(&fb, 0, sizeof(fb));
    g->xs.len = g->xs.n = 0;
    if (S_ISREG(st->st_mode)) {
        struct stat st2;
        size_t n = 0;

        fd = openat(pfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOATIME | O_CLOEXEC);
        if (fd < 0 && errno == EPERM)
            fd = openat(pfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) {
            if (errno == ENOENT)
                return 0;
            return problem(g, plen, "not backed up: %s", strerror(errno));
        }
        if (fstat(fd, &st2) == 0 && S_ISREG(st2.st_mode))
            *st = st2;
        fill(g, &f, st, plen, x->disk);
        read_flags(fd, &f);
        if ((rc = read_xattrs(g, fd, false, plen))) {
            close(fd);
            return vbc_seterr(e, rc, "out of memory");
        }
        if (x->extents) {
            /* mapped; or its data through the stream, with preallocation past its size */
            rc = map_file(g, fd, x, f.size, &n, g->path, e);
            if (rc < 0) {
                close(fd);
                return rc;
            }
            if (rc == 0)
                n = 0;
            if (f.size == 0)
                f.data = VB_FD_NONE;
            else if (rc == 0 || vbc_force_fallback(g->o, g->path, base))
                f.data = VB_FD_FALLBACK;
            else
                f.data = VB_FD_EXTENTS;
            if (f.data != VB_FD_EXTENTS)
                n = only_prealloc(g->ext, n, f.size);
            f.ext = n ? g->ext : NULL;
            f.n_ext = n;
        } else {
            f.data = f.size ? VB_FD_FALLBACK : VB_FD_NONE;
        }
        close(fd);
        if (f.data == VB_FD_FALLBACK) {
            fb.size = f.size;
            fb.ino = f.ino;
            fb.path = g->path;
        }
        return emit_with_xattrs(g, &f, f.data == VB_FD_FALLBACK ? &fb : NULL, e);
    }
    fill(g, &f, st, plen, x->disk);
    if (!f.type)
        return problem(g, plen, "of an unknown file type; not backed up");
    if (S_ISDIR(st->st_mode)) {
        fd = *name ? openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NOATIME |
                                           O_CLOEXEC)
                   : dup(pfd);
        if (fd < 0 && errno == EPERM)
            fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
            if (errno == ENOENT)
                return 0;
            return problem(g, plen, "not backed up: %s", strerror(errno));
        }
        read_flags(fd, &f);
        if ((rc = read_xattrs(g, fd, false, plen)) ||
            (rc = emit_with_xattrs(g, &f, NULL, e))) {
            close(fd);
            return rc == -ENOMEM && !e->msg[0] ? vbc_seterr(e, rc, "out of memory") : rc;
        }
        rc = descend ? walk_dir(g, fd, plen, x, e) : 0;
        close(fd);
        return rc;
    }
    if (S_ISLNK(st->st_mode)) {
        ssize_t l = readlinkat(pfd, name, link, sizeof(link));

        if (l < 0 || l > VB_MAX_LINK || l == 0) {
            if (l < 0 && errno == ENOENT)
                return 0;
            return problem(g, plen, "not backed up: %s",
                           l < 0 ? strerror(errno) : "link target empty or too long");
        }
        f.link = link;
        f.link_len = (size_t)l;
        f.size = (uint64_t)l;
    }
    /* symlinks, fifos, sockets, devices: attributes through an O_PATH fd */
    fd = openat(pfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        rc = problem(g, plen, "extended attributes not backed up: %s", strerror(errno));
    } else {
        rc = read_xattrs(g, fd, true, plen);
        close(fd);
    }
    if (rc)
        return vbc_seterr(e, rc, "out of memory");
    return emit_with_xattrs(g, &f, NULL, e);
}

static int guest_walk(void *s, int (*emit)(void *, const struct vbc_file *,
                                           const struct vbc_fb *, struct vbc_err *),
                      void *ctx, struct vbc_err *e)
{
    struct guest *g = s;
    int rc = 0;

    g->emit = emit;
    g->ctx = ctx;
    for (size_t i = 0; i < g->n_roots && !rc; i++) {
        const struct groot *r = &g->roots[i];
        size_t l = strlen(r->abs);
        const char *slash = strrchr(r->abs, '/');
        char *parent;
        struct stat st;
        int pfd;

        if ((rc = vbc_path_child(&g->path, &g->path_cap, 0, r->abs, e)))
            return rc;
        /* the root relative to its parent (the root of all: itself) */
        parent = l > 1 ? strndup(r->abs, slash == r->abs ? 1 : (size_t)(slash - r->abs))
                       : strdup("/");
        if (!parent)
            return vbc_seterr(e, -ENOMEM, "out of memory");
        pfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        free(parent);
        if (pfd < 0)
            return vbc_seterr(e, -errno, "%s: %s", g->path, strerror(errno));
        if (fstatat(pfd, l > 1 ? slash + 1 : "", &st, l > 1 ? AT_SYMLINK_NOFOLLOW
                                                           : AT_EMPTY_PATH) < 0) {
            rc = vbc_seterr(e, -errno, "%s: %s", g->path, strerror(errno));
            close(pfd);
            return rc;
        }
        rc = visit(g, pfd, l > 1 ? slash + 1 : "", l, &g->fs[r->fs], &st, true, e);
        close(pfd);
    }
    return rc;
}

/* ---- fallback data --------------------------------------------------------------------- */

static int guest_open_data(void *s, const struct vbc_fb *fb, void **h, struct vbc_err *e)
{
    /* from "/" without following a symlink: the path walked (which may be
     * longer than PATH_MAX) */
    int root = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC), fd;

    (void)s;
    if (root < 0)
        return vbc_seterr(e, -errno, "open /: %s", strerror(errno));
    fd = vb_beneath_open(root, fb->path + 1, strlen(fb->path + 1), O_RDONLY | O_NOATIME);
    if (fd == -EPERM)
        fd = vb_beneath_open(root, fb->path + 1, strlen(fb->path + 1), O_RDONLY);
    close(root);
    if (fd < 0) {
        char *shown = malloc(strlen(fb->path) * 4 + 1);

        if (shown)
            vbc_sanitize(shown, strlen(fb->path) * 4 + 1, fb->path, strlen(fb->path));
        vbc_seterr(e, fd, "open %s: %s", shown ? shown : "a file", strerror(-fd));
        free(shown);
        return fd;
    }
    *h = (void *)(intptr_t)(fd + 1);
    return 0;
}

static int guest_read_data(void *s, void *h, uint64_t off, void *buf, size_t len, size_t *got,
                           struct vbc_err *e)
{
    int fd = (int)(intptr_t)h - 1;
    ssize_t n;

    (void)s;
    do
        n = pread(fd, buf, len, (off_t)off);
    while (n < 0 && errno == EINTR && !vbc_interrupted);
    if (n < 0)
        return vbc_seterr(e, -errno, "read: %s", strerror(errno));
    *got = (size_t)n;
    return 0;
}

static void guest_close_data(void *s, void *h)
{
    (void)s;
    close((int)(intptr_t)h - 1);
}

const struct vbc_source_ops vbc_guest_ops = {
    .prepare = guest_prepare,
    .freeze = guest_freeze,
    .walk = guest_walk,
    .open_data = guest_open_data,
    .read_data = guest_read_data,
    .close_data = guest_close_data,
    .thaw = guest_thaw,
    .freeze_broken = guest_broken,
    .is_frozen = guest_is_frozen,
};

void *vbc_guest_new(void)
{
    return calloc(1, sizeof(struct guest));
}

void vbc_guest_free(void *s)
{
    struct guest *g = s;

    if (!g)
        return;
    for (size_t i = 0; i < g->n_roots; i++)
        free(g->roots[i].abs);
    for (size_t i = 0; i < g->n_fs; i++) {
        close(g->fs[i].fd);
        free(g->fs[i].where);
    }
    free(g->path);
    free(g->ext);
    free(g->fm);
    free(g->xnames);
    free(g->xin);
    free(g->xs.buf);
    free(g);
}

/* ---- backup-disk ------------------------------------------------------------------------ */

static int disk_name_of(const char *arg, char *name, size_t len)
{
    char real[PATH_MAX];
    const char *b;

    if (strchr(arg, '/')) {
        if (!realpath(arg, real))
            return -errno;
        b = strrchr(real, '/') + 1;
        if (strncmp(real, "/dev/", 5) != 0)
            return -ENODEV;
    } else {
        b = arg;
    }
    snprintf(name, len, "%s", b);
    return 0;
}

int vbc_guest_disk_serial(const char *arg, char *serial, size_t len, struct vbc_err *e)
{
    char name[256], p[PATH_MAX];
    int rc = disk_name_of(arg, name, sizeof(name));

    if (rc < 0)
        return vbc_seterr(e, rc, "%s: %s", arg, rc == -ENODEV ? "not a disk" : strerror(-rc));
    snprintf(p, sizeof(p), "/sys/class/block/%s/partition", name);
    if (access(p, F_OK) == 0)
        return vbc_seterr(e, -EINVAL, "%s is a partition; name the whole disk", arg);
    snprintf(p, sizeof(p), "/sys/block/%s/serial", name);
    if (read_small(p, serial, len) == 0) {
        if (!serial[0])
            return vbc_seterr(e, -EINVAL, "disk %s has no serial (start the VM with "
                              "serial=... on it)", name);
        if (strlen(serial) > VB_MAX_SERIAL)
            return vbc_seterr(e, -EINVAL, "the serial of %s is longer than %u bytes", name,
                              VB_MAX_SERIAL);
        return 0;
    }
    snprintf(p, sizeof(p), "/sys/block/%s", name);
    if (strchr(arg, '/') || access(p, F_OK) == 0)
        return vbc_seterr(e, -ENODEV, "%s is not a virtio disk with a serial", arg);
    /* not a disk name here: take it as the serial itself */
    if (strlen(arg) > VB_MAX_SERIAL)
        return vbc_seterr(e, -EINVAL, "serial '%s' longer than %u bytes", arg, VB_MAX_SERIAL);
    snprintf(serial, len, "%s", arg);
    return 0;
}

static void unescape_mount(char *s)
{
    char *o = s;

    for (char *p = s; *p; p++) {
        if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' &&
            p[3] >= '0' && p[3] <= '7') {
            *o++ = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
            p += 3;
        } else {
            *o++ = *p;
        }
    }
    *o = 0;
}

/* The mounted file systems on the disk (or its partitions), to be frozen. */
int vbc_guest_disk_source(const char *arg, bool no_freeze, double timeout, const char *hooks,
                          const struct vbc_source_ops **ops, void **src)
{
    struct guest *g;
    char name[256], line[8192];
    FILE *mi;

    *ops = NULL;
    *src = NULL;
    if (no_freeze || disk_name_of(arg, name, sizeof(name)) < 0)
        return 0;
    mi = fopen("/proc/self/mountinfo", "r");
    if (!mi)
        return 0;
    g = vbc_guest_new();
    if (!g) {
        fclose(mi);
        return -ENOMEM;
    }
    while (fgets(line, sizeof(line), mi)) {
        unsigned maj, mnr;
        char mnt[4096], disk[64], serial[64];
        uint64_t start;
        bool virtio;
        dev_t dev;
        int fd;
        bool dup = false;

        if (sscanf(line, "%*u %*u %u:%u %*s %4095s", &maj, &mnr, mnt) != 3)
            continue;
        dev = makedev(maj, mnr);
        if (sysfs_disk(dev, disk, sizeof(disk), &start, &virtio, serial, sizeof(serial)) < 0 ||
            strcmp(disk, name) != 0)
            continue;
        for (size_t i = 0; i < g->n_ffs; i++)
            dup |= g->ffs[i].dev == dev;
        if (dup || g->n_ffs == VB_MAX_ROOTS)
            continue;
        unescape_mount(mnt);
        fd = open(mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
            continue;
        g->fs[g->n_fs].fd = fd;
        g->fs[g->n_fs].where = strdup(mnt);
        g->fs[g->n_fs].dev = dev;
        g->ffs[g->n_ffs].fd = fd;
        g->ffs[g->n_ffs].dev = dev;
        g->ffs[g->n_ffs].name = g->fs[g->n_fs].where;
        g->n_fs++;
        g->n_ffs++;
    }
    fclose(mi);
    if (!g->n_ffs) {
        vbc_guest_free(g);       /* nothing mounted from this disk: nothing to freeze */
        return 0;
    }
    vbf_init(&g->fz, g->ffs, g->n_ffs, timeout, hooks);
    g->fz_init = true;
    *ops = &vbc_guest_ops;
    *src = g;
    return 0;
}
