/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The protocol's rules as code (include/vbackup/protolib.h).  Libc only: it
 * is built into the static guest tool, vbclient, vbackupd and the fuzzer.
 */
#include "vbackup/protolib.h"

#include <endian.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

_Static_assert(VB_MAX_PATH <= UINT16_MAX && VB_MAX_LINK <= UINT16_MAX, "u16 lengths");
_Static_assert(VB_REC_FIXED + VB_MAX_PATH + VB_MAX_LINK + VB_MAX_XATTR_BYTES + 8 <=
               VB_MAX_PAYLOAD, "a record with the most of everything fits a RESTORE_LIST reply");

/* ---- paths and names ---------------------------------------------------------- */

const char *vb_path_check(const char *p, size_t n, bool allow_root)
{
    size_t start = 0;

    if (n == 0)
        return allow_root ? NULL : "empty path";
    if (n > VB_MAX_PATH)
        return "path longer than 65535 bytes";
    if (memchr(p, 0, n))
        return "NUL byte in path";
    if (p[0] == '/')
        return "path starts with '/' (paths are relative to the root)";
    for (size_t i = 0; i <= n; i++) {
        size_t c;

        if (i < n && p[i] != '/')
            continue;
        c = i - start;
        if (c == 0)
            return "empty path component";
        if ((c == 1 && p[start] == '.') || (c == 2 && p[start] == '.' && p[start + 1] == '.'))
            return "'.' or '..' component";
        if (c > VB_MAX_NAME)
            return "path component longer than 255 bytes";
        start = i + 1;
    }
    return NULL;
}

bool vb_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + n;

    while (p < end) {
        unsigned char c = *p;
        size_t len;
        uint32_t cp, min;

        if (c < 0x80) {
            p++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf)
            len = 2, cp = c & 0x1f, min = 0x80;
        else if (c >= 0xe0 && c <= 0xef)
            len = 3, cp = c & 0x0f, min = 0x800;
        else if (c >= 0xf0 && c <= 0xf4)
            len = 4, cp = c & 0x07, min = 0x10000;
        else
            return false;
        if ((size_t)(end - p) < len)
            return false;
        for (size_t i = 1; i < len; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (p[i] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        p += len;
    }
    return true;
}

static bool has_prefix(const char *name, size_t n, const char *pre)
{
    size_t l = strlen(pre);

    return n > l && memcmp(name, pre, l) == 0;
}

static bool is_exactly(const char *name, size_t n, const char *s)
{
    return n == strlen(s) && memcmp(name, s, n) == 0;
}

bool vb_xattr_name_ok(const char *name, size_t n)
{
    if (n == 0 || n > VB_MAX_XATTR_NAME || memchr(name, 0, n))
        return false;
    return has_prefix(name, n, "user.") || has_prefix(name, n, "trusted.") ||
           has_prefix(name, n, "security.") || is_exactly(name, n, "system.posix_acl_access") ||
           is_exactly(name, n, "system.posix_acl_default");
}

void vb_acl_canonical(const char *name, size_t name_len, uint8_t *value, size_t len)
{
    if (!is_exactly(name, name_len, "system.posix_acl_access") &&
        !is_exactly(name, name_len, "system.posix_acl_default"))
        return;
    /* version 2 header (u32), then entries of tag u16, perm u16, id u32 */
    if (len < 4 || (len - 4) % 8 || value[0] != 2 || value[1] || value[2] || value[3])
        return;
    for (size_t o = 4; o < len; o += 8) {
        unsigned tag = (unsigned)value[o] | (unsigned)value[o + 1] << 8;

        if (tag == 0x01 || tag == 0x04 || tag == 0x10 || tag == 0x20)  /* _OBJ, MASK, OTHER */
            memset(value + o + 4, 0xff, 4);
    }
}

int vb_name_cmp(const char *a, size_t an, const char *b, size_t bn)
{
    int r = memcmp(a, b, an < bn ? an : bn);

    if (r)
        return r;
    return an < bn ? -1 : an > bn;
}

/* ---- times ----------------------------------------------------------------------- */

struct vb_ts vb_ts_from_ns(int64_t ns)
{
    struct vb_ts t;
    int64_t r = ns % 1000000000;

    t.sec = ns / 1000000000;
    if (r < 0) {
        r += 1000000000;
        t.sec--;
    }
    t.nsec = (uint32_t)r;
    return t;
}

int vb_ts_cmp(struct vb_ts a, struct vb_ts b)
{
    if (a.sec != b.sec)
        return a.sec < b.sec ? -1 : 1;
    return a.nsec < b.nsec ? -1 : a.nsec > b.nsec;
}

/* ---- little-endian fields ----------------------------------------------------------- */

static uint16_t ld16(const uint8_t *p)
{
    uint16_t v;

    memcpy(&v, p, 2);
    return le16toh(v);
}

static uint32_t ld32(const uint8_t *p)
{
    uint32_t v;

    memcpy(&v, p, 4);
    return le32toh(v);
}

static uint64_t ld64(const uint8_t *p)
{
    uint64_t v;

    memcpy(&v, p, 8);
    return le64toh(v);
}

static void st16(uint8_t *p, uint16_t v)
{
    v = htole16(v);
    memcpy(p, &v, 2);
}

static void st32(uint8_t *p, uint32_t v)
{
    v = htole32(v);
    memcpy(p, &v, 4);
}

static void st64(uint8_t *p, uint64_t v)
{
    v = htole64(v);
    memcpy(p, &v, 8);
}

#define OFF(f) offsetof(struct vb_file_rec, f)

static void put_time(uint8_t *p, struct vb_ts t)
{
    st64(p, (uint64_t)t.sec);
    st32(p + 8, t.nsec);
    st32(p + 12, 0);
}

/* ---- extended attributes ------------------------------------------------------------ */

size_t vb_xattr_size(size_t name_len, size_t value_len)
{
    return sizeof(struct vb_xattr) + name_len + value_len;
}

size_t vb_xattr_put(uint8_t *out, const char *name, size_t name_len, const void *value,
                    size_t value_len)
{
    st32(out, (uint32_t)value_len);
    st16(out + 4, (uint16_t)name_len);
    st16(out + 6, 0);
    memcpy(out + 8, name, name_len);
    if (value_len)
        memcpy(out + 8 + name_len, value, value_len);
    return vb_xattr_size(name_len, value_len);
}

bool vb_xattr_next(const uint8_t *sec, size_t len, size_t *off, struct vb_xattr_view *x)
{
    size_t o = *off;

    if (o + sizeof(struct vb_xattr) > len)
        return false;
    x->value_len = ld32(sec + o);
    x->name_len = ld16(sec + o + 4);
    x->name = (const char *)sec + o + 8;
    x->value = sec + o + 8 + x->name_len;
    *off = o + vb_xattr_size(x->name_len, x->value_len);
    return true;
}

const char *vb_xattrs_check(const uint8_t *sec, size_t len, uint32_t n)
{
    const char *prev = NULL;
    size_t off = 0, prev_len = 0;

    if (len > VB_MAX_XATTR_BYTES)
        return "extended attributes larger than 768 KiB in all";
    if (n > len / sizeof(struct vb_xattr))
        return "more extended attributes than their bytes can hold";
    for (uint32_t i = 0; i < n; i++) {
        uint32_t vl;
        uint16_t nl;

        if (len - off < sizeof(struct vb_xattr))
            return "extended attributes truncated";
        vl = ld32(sec + off);
        nl = ld16(sec + off + 4);
        if (ld16(sec + off + 6))
            return "extended attribute with a reserved field not 0";
        off += sizeof(struct vb_xattr);
        if (vl > VB_MAX_XATTR_VALUE)
            return "extended attribute value longer than 64 KiB";
        if (nl > len - off || vl > len - off - nl)
            return "extended attributes truncated";
        if (!vb_xattr_name_ok((const char *)sec + off, nl))
            return "extended attribute name empty, too long, with a NUL byte or of a "
                   "namespace that is not kept";
        if (prev && vb_name_cmp(prev, prev_len, (const char *)sec + off, nl) >= 0)
            return "extended attribute names not in ascending order, or one twice";
        prev = (const char *)sec + off;
        prev_len = nl;
        off += (size_t)nl + vl;
    }
    if (off != len)
        return "bytes after the last extended attribute";
    return NULL;
}

/* ---- extents ----------------------------------------------------------------------- */

void vb_extent_put(uint8_t *out, const struct vb_extent *x)
{
    st64(out, x->logical);
    st64(out + 8, x->physical);
    st64(out + 16, x->length);
    st32(out + 24, x->flags);
    st32(out + 28, 0);
}

void vb_extent_get(const uint8_t *in, struct vb_extent *x)
{
    x->logical = ld64(in);
    x->physical = ld64(in + 8);
    x->length = ld64(in + 16);
    x->flags = ld32(in + 24);
    x->reserved = ld32(in + 28);
}

/* ---- records ------------------------------------------------------------------------- */

size_t vb_rec_head_size(const struct vb_rec *r)
{
    return VB_REC_FIXED + r->path_len + r->link_len + r->xattr_len;
}

size_t vb_rec_encode_head(const struct vb_rec *r, uint8_t *out)
{
    uint8_t *p = out;

    memset(p, 0, VB_REC_FIXED);
    p[OFF(type)] = r->type;
    p[OFF(data)] = r->data;
    st16(p + OFF(disk), r->disk);
    st32(p + OFF(mode), r->mode);
    st32(p + OFF(uid), r->uid);
    st32(p + OFF(gid), r->gid);
    st32(p + OFF(nlink), r->nlink);
    st32(p + OFF(n_extents), r->n_extents);
    st16(p + OFF(path_len), (uint16_t)r->path_len);
    st16(p + OFF(link_len), (uint16_t)r->link_len);
    st32(p + OFF(rdev), r->rdev);
    st64(p + OFF(size), r->size);
    st64(p + OFF(ino), r->ino);
    put_time(p + OFF(mtime), r->mtime);
    put_time(p + OFF(ctime), r->ctime);
    put_time(p + OFF(atime), r->atime);
    st32(p + OFF(fsflags), r->fsflags);
    st32(p + OFF(projid), r->projid);
    st32(p + OFF(flags), r->flags);
    st16(p + OFF(n_xattrs), (uint16_t)r->n_xattrs);
    st32(p + OFF(xattr_len), (uint32_t)r->xattr_len);
    p += VB_REC_FIXED;
    if (r->path_len)
        memcpy(p, r->path, r->path_len);
    p += r->path_len;
    if (r->link_len)
        memcpy(p, r->link, r->link_len);
    p += r->link_len;
    if (r->xattr_len)
        memcpy(p, r->xattrs, r->xattr_len);
    p += r->xattr_len;
    return (size_t)(p - out);
}

static int fail(char *why, size_t why_len, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(char *why, size_t why_len, int status, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, why_len, fmt, ap);
    va_end(ap);
    return status;
}

static bool get_time(const uint8_t *p, struct vb_ts *t)
{
    t->sec = (int64_t)ld64(p);
    t->nsec = ld32(p + 8);
    return t->nsec < 1000000000u && ld32(p + 12) == 0;
}

int vb_rec_decode(const uint8_t *p, size_t n, enum vb_rec_ctx ctx, struct vb_rec *r,
                  size_t *used, char *why, size_t why_len)
{
    const char *bad;
    size_t off = VB_REC_FIXED;
    bool more;

    memset(r, 0, sizeof(*r));
    if (n < VB_REC_FIXED)
        return fail(why, why_len, VB_S_BAD_REQUEST, "truncated");
    r->type = p[OFF(type)];
    r->data = p[OFF(data)];
    r->disk = ld16(p + OFF(disk));
    r->mode = ld32(p + OFF(mode));
    r->uid = ld32(p + OFF(uid));
    r->gid = ld32(p + OFF(gid));
    r->nlink = ld32(p + OFF(nlink));
    r->n_extents = ld32(p + OFF(n_extents));
    r->path_len = ld16(p + OFF(path_len));
    r->link_len = ld16(p + OFF(link_len));
    r->rdev = ld32(p + OFF(rdev));
    r->size = ld64(p + OFF(size));
    r->ino = ld64(p + OFF(ino));
    r->fsflags = ld32(p + OFF(fsflags));
    r->projid = ld32(p + OFF(projid));
    r->flags = ld32(p + OFF(flags));
    r->n_xattrs = ld16(p + OFF(n_xattrs));
    r->xattr_len = ld32(p + OFF(xattr_len));
    more = r->data == VB_FD_MORE;
    /* lengths first: nothing is read beyond the payload */
    if (r->path_len > n - off)
        return fail(why, why_len, VB_S_BAD_REQUEST, "truncated in its path");
    r->path = (const char *)p + off;
    off += r->path_len;
    if (r->link_len > n - off)
        return fail(why, why_len, VB_S_BAD_REQUEST, "truncated in its link target");
    r->link = (const char *)p + off;
    off += r->link_len;
    if (r->xattr_len > n - off)
        return fail(why, why_len, VB_S_BAD_REQUEST, "truncated in its extended attributes");
    r->xattrs = p + off;
    off += r->xattr_len;
    if (r->n_extents > VB_MAX_EXTENTS_PER_REC)
        return fail(why, why_len, VB_S_TOO_LARGE, "%u extents (at most %u per record)",
                    r->n_extents, VB_MAX_EXTENTS_PER_REC);
    if ((uint64_t)r->n_extents * VB_EXTENT_SIZE > n - off)
        return fail(why, why_len, VB_S_BAD_REQUEST, "truncated in its extents");
    r->extents = p + off;
    off += (size_t)r->n_extents * VB_EXTENT_SIZE;
    *used = off;

    if ((bad = vb_path_check(r->path, r->path_len, true)))
        return fail(why, why_len, VB_S_BAD_PATH, "%s", bad);
    if (!more) {
        if (r->type < VB_FT_REG || r->type > VB_FT_SOCK)
            return fail(why, why_len, VB_S_BAD_REQUEST, "unknown file type %u", r->type);
        if (r->data > VB_FD_FALLBACK)
            return fail(why, why_len, VB_S_BAD_REQUEST, "unknown data source %u", r->data);
        if (r->data != VB_FD_NONE && r->type != VB_FT_REG)
            return fail(why, why_len, VB_S_BAD_REQUEST, "only regular files carry data");
        if (r->mode & ~07777u)
            return fail(why, why_len, VB_S_BAD_REQUEST, "mode %#o has bits beyond 07777",
                        r->mode);
        if (r->link_len && r->type != VB_FT_SYMLINK)
            return fail(why, why_len, VB_S_BAD_REQUEST, "a link target on a non-symlink");
        if (r->type == VB_FT_SYMLINK &&
            (r->link_len == 0 || r->link_len > VB_MAX_LINK || memchr(r->link, 0, r->link_len)))
            return fail(why, why_len, VB_S_BAD_REQUEST,
                        "symlink target empty, longer than %u bytes or with a NUL byte",
                        VB_MAX_LINK);
        if (!get_time(p + OFF(mtime), &r->mtime) || !get_time(p + OFF(ctime), &r->ctime) ||
            !get_time(p + OFF(atime), &r->atime))
            return fail(why, why_len, VB_S_BAD_REQUEST,
                        "a time with nanoseconds beyond a second or a reserved field not 0");
        if (r->fsflags & ~VB_FSFL_MASK)
            return fail(why, why_len, VB_S_BAD_REQUEST, "inode flags %#x not kept by a backup",
                        r->fsflags & ~VB_FSFL_MASK);
        if (r->flags & ~(ctx == VB_REC_RESTORE ? VB_RF_PREALLOC : 0u))
            return fail(why, why_len, VB_S_BAD_REQUEST, "unknown record flags %#x", r->flags);
        if (ld16(p + OFF(reserved)) || ld32(p + OFF(reserved2)))
            return fail(why, why_len, VB_S_BAD_REQUEST, "reserved fields must be 0");
        if ((bad = vb_xattrs_check(r->xattrs, r->xattr_len, r->n_xattrs)))
            return fail(why, why_len, r->xattr_len > VB_MAX_XATTR_BYTES ? VB_S_TOO_LARGE
                                                                      : VB_S_BAD_REQUEST,
                        "%s", bad);
        if (r->n_extents && r->type != VB_FT_REG)
            return fail(why, why_len, VB_S_BAD_REQUEST, "extents on a record that has none");
    } else if (r->link_len || r->xattr_len || r->n_xattrs) {
        return fail(why, why_len, VB_S_BAD_REQUEST,
                    "more extents with a link target or extended attributes");
    }
    {
        uint64_t prev_end = 0;

        for (uint32_t k = 0; k < r->n_extents; k++) {
            struct vb_extent e;

            vb_extent_get(r->extents + (size_t)k * VB_EXTENT_SIZE, &e);
            if (e.length == 0 || e.flags & ~VB_EXT_UNWRITTEN || e.reserved)
                return fail(why, why_len, VB_S_BAD_REQUEST,
                            "extent %u has length 0 or unknown flags", k);
            if (e.logical > UINT64_MAX - e.length || e.physical > UINT64_MAX - e.length)
                return fail(why, why_len, VB_S_OUT_OF_RANGE, "extent %u overflows 64 bits", k);
            if (k && e.logical < prev_end)
                return fail(why, why_len, VB_S_BAD_REQUEST,
                            "extent %u overlaps or is out of order", k);
            if (!more && r->data != VB_FD_EXTENTS &&
                (!(e.flags & VB_EXT_UNWRITTEN) || e.physical))
                return fail(why, why_len, VB_S_BAD_REQUEST,
                            "extent %u: a record whose data is not read from the disk carries "
                            "only unwritten extents (at physical 0)", k);
            prev_end = e.logical + e.length;
        }
    }
    return VB_S_OK;
}

/* ---- BACKUP_PROBLEMS --------------------------------------------------------------------- */

size_t vb_problem_size(size_t path_len, size_t reason_len)
{
    return 4 + path_len + reason_len;
}

size_t vb_problem_put(uint8_t *out, const char *path, size_t path_len, const char *reason,
                      size_t reason_len)
{
    st16(out, (uint16_t)path_len);
    st16(out + 2, (uint16_t)reason_len);
    if (path_len)
        memcpy(out + 4, path, path_len);
    memcpy(out + 4 + path_len, reason, reason_len);
    return vb_problem_size(path_len, reason_len);
}

int vb_problem_decode(const uint8_t *p, size_t n, const char **path, size_t *path_len,
                      const char **reason, size_t *reason_len, size_t *used, char *why,
                      size_t why_len)
{
    const char *bad;

    if (n < 4)
        return fail(why, why_len, VB_S_BAD_REQUEST, "truncated");
    *path_len = ld16(p);
    *reason_len = ld16(p + 2);
    if (*path_len > n - 4 || *reason_len > n - 4 - *path_len)
        return fail(why, why_len, VB_S_BAD_REQUEST, "truncated");
    *path = (const char *)p + 4;
    *reason = (const char *)p + 4 + *path_len;
    *used = vb_problem_size(*path_len, *reason_len);
    if ((bad = vb_path_check(*path, *path_len, true)))
        return fail(why, why_len, VB_S_BAD_PATH, "%s", bad);
    /* printable ASCII: a reason is shown on terminals and kept in JSON as it
     * is (no control character, C1 or bidirectional ones included) */
    if (*reason_len == 0 || *reason_len > VB_MAX_MESSAGE)
        return fail(why, why_len, VB_S_BAD_REQUEST,
                    "a reason must be 1..%u bytes of printable ASCII", VB_MAX_MESSAGE);
    for (size_t i = 0; i < *reason_len; i++)
        if ((unsigned char)(*reason)[i] < 0x20 || (unsigned char)(*reason)[i] > 0x7e)
            return fail(why, why_len, VB_S_BAD_REQUEST,
                        "a reason must be 1..%u bytes of printable ASCII (a control "
                        "character or a byte above 0x7e)", VB_MAX_MESSAGE);
    return VB_S_OK;
}
