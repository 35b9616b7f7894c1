#!/usr/bin/env python3
"""The vbackup wire protocol (include/vbackup/proto.h) for tests.

Builds and parses frames byte by byte, so tests can send what a real client
sends and also what a hostile guest would: truncated frames, lying lengths,
bad magic.  Also maps files of a mounted file system with FIEMAP, as the
guest tool does, so daemon tests need no guest.
"""
import array
import fcntl
import os
import socket
import stat
import struct

MAGIC = 0x314B4256
VERSION = 2
HDR = struct.Struct("<IHHQIIiI")   # magic version type tag len reply_max status flags
REPLY = 0x8000
MAX_PAYLOAD = 1 << 20

OP = dict(HELLO=1, BACKUP_BEGIN=2, BACKUP_FILES=3, BACKUP_DATA=4, BACKUP_SEAL=5, STATUS=6,
          CANCEL=7, LIST=8, RESTORE_BEGIN=9, RESTORE_LIST=10, RESTORE_READ=11, RESTORE_END=12,
          BACKUP_PROBLEMS=13)
S = dict(OK=0, UNAVAILABLE=1, BAD_FRAME=2, BAD_VERSION=3, BAD_REQUEST=4, UNKNOWN_TARGET=5,
         NOT_FOUND=6, NOT_OWNED=7, OUT_OF_RANGE=8, BAD_PATH=9, TOO_LARGE=10, BUSY=11,
         SHUTTING_DOWN=12, NO_JOB=13, JOB_FAILED=14, IO=15, NO_SPACE=16, CANCELLED=17,
         INTERNAL=18, REPLY_TOO_SMALL=19, BAD_STATE=20, QUOTA=21)
SNAME = {v: k for k, v in S.items()}
KIND_FILES, KIND_DISK = 1, 2
MODE = dict(full=1, incremental=2, differential=3)
FT = dict(reg=1, dir=2, symlink=3, fifo=4, chr=5, blk=6, sock=7)
FD_NONE, FD_EXTENTS, FD_FALLBACK, FD_MORE = 0, 1, 2, 3
EXT_UNWRITTEN = 1
DATA_LAST = 1
JOB_STATE = {1: "collecting", 2: "queued", 3: "deferred", 4: "running", 5: "done",
             6: "failed", 7: "cancelled", 8: "restoring", 9: "mapping"}
FLAG_READ_DONE, FLAG_INCOMPLETE, FLAG_MAP_FAILED = 1, 2, 4
FEAT_SNAPSHOT_VIEW, FEAT_HOST_MAPS = 1, 2
BEGIN_UNFROZEN, BEGIN_HOST_MAP = 1, 2
FS_EXT = 1
SNAP_INCOMPLETE = 1
VIEW_FROZEN, VIEW_SNAPSHOT = 1, 2
RD_HOLE, RD_EOF, RD_ZERO, RD_UNWRITTEN = 1, 2, 4, 8
RF_PREALLOC = 1
NO_LINK = (1 << 64) - 1
FSFL_MASK = 0x6283C0FF

# type data disk mode uid gid nlink n_extents path_len link_len rdev size ino
# mtime(sec nsec res) ctime(...) atime(...) fsflags projid flags n_xattrs res xattr_len res2
FILE_REC = struct.Struct("<BBHIIIIIHHIQQqIIqIIqIIIIIHHII")   # 120 bytes
XATTR = struct.Struct("<IHH")
EXTENT = struct.Struct("<QQQII")
JOB_STATUS = struct.Struct("<QIIBBHHHQQQQQQqq")
SNAP_INFO = struct.Struct("<qQQBBHHH")
assert FILE_REC.size == 120 and EXTENT.size == 32 and JOB_STATUS.size == 88 and \
    SNAP_INFO.size == 32 and XATTR.size == 8


def split_ns(ns):
    """Seconds and nanoseconds of a time in ns (floor: -1.5 s is -2 s + 0.5 s)."""
    return ns // 10**9, ns % 10**9


def xattrs_section(xattrs):
    """The wire section of {name: value} (bytes or str), names ascending."""
    items = sorted((k.encode() if isinstance(k, str) else k,
                    v.encode() if isinstance(v, str) else v) for k, v in xattrs.items())
    return b"".join(XATTR.pack(len(v), len(k), 0) + k + v for k, v in items), len(items)


def parse_xattrs(b, n):
    out, off = {}, 0
    for _ in range(n):
        vl, nl, _ = XATTR.unpack_from(b, off)
        off += XATTR.size
        out[b[off:off + nl].decode(errors="surrogateescape")] = b[off + nl:off + nl + vl]
        off += nl + vl
    return out


class Error(Exception):
    def __init__(self, status, message, op=None):
        super().__init__(f"{SNAME.get(status, status)}: {message}")
        self.status = status
        self.message = message
        self.op = op


def frame(op, payload=b"", tag=1, reply_max=0, magic=MAGIC, version=VERSION, length=None,
          status=0, flags=0):
    n = len(payload) if length is None else length
    return HDR.pack(magic, version, op, tag, n, reply_max, status, flags) + payload


def s16(b):
    if isinstance(b, str):
        b = b.encode()
    return struct.pack("<H", len(b)) + b


class Conn:
    def __init__(self, path, timeout=30):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.tag = 0
        self.pending = {}

    def close(self):
        self.sock.close()

    def send_raw(self, data):
        self.sock.sendall(data)

    def recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError("connection closed by vbackupd")
            buf += chunk
        return buf

    def recv_frame(self):
        h = self.recv_exact(HDR.size)
        magic, version, typ, tag, n, _, status, _ = HDR.unpack(h)
        assert magic == MAGIC and version == VERSION, "bad reply header"
        assert typ & REPLY, "reply without the reply bit"
        return typ & ~REPLY, tag, status, self.recv_exact(n)

    def send(self, op, payload=b"", reply_max=0):
        self.tag += 1
        self.sock.sendall(frame(OP[op], payload, self.tag, reply_max))
        return self.tag

    def wait(self, tag):
        while tag not in self.pending:
            typ, t, status, body = self.recv_frame()
            self.pending[t] = (typ, status, body)
        return self.pending.pop(tag)

    def call(self, op, payload=b"", reply_max=0, check=True):
        typ, status, body = self.wait(self.send(op, payload, reply_max))
        assert typ == OP[op], f"reply type {typ} to {op}"
        if check and status != 0:
            raise Error(status, body.decode(errors="replace"), op)
        return status, body

    # ---- operations ----
    def hello(self):
        _, b = self.call("HELLO", struct.pack("<II32s", VERSION, VERSION, b"vbproto.py"))
        version, maxp, maxf, feat, vm, daemon = struct.unpack("<IIII64s32s", b)
        return dict(version=version, max_payload=maxp, max_files=maxf, features=feat,
                    vm=vm.rstrip(b"\0").decode(), daemon=daemon.rstrip(b"\0").decode())

    def begin(self, target, serials, roots, kind=KIND_FILES, mode="full", raw=None):
        p = raw if raw is not None else begin_payload(target, serials, roots, kind, mode)
        _, b = self.call("BACKUP_BEGIN", p)
        job, features, _ = struct.unpack("<QII", b)
        return job, features

    def files(self, job, records, check=True):
        return self.call("BACKUP_FILES", files_payload(job, records), check=check)

    def data(self, job, index, offset, data, last):
        return self.call("BACKUP_DATA", struct.pack("<QQQII", job, index, offset, len(data),
                                                    DATA_LAST if last else 0) + data)

    def seal(self, job):
        _, b = self.call("BACKUP_SEAL", struct.pack("<Q", job))
        return struct.unpack("<II", b)[0]

    def status(self, job=0):
        _, b = self.call("STATUS", struct.pack("<Q", job))
        count = struct.unpack_from("<I", b)[0]
        off, out = 8, []
        for _ in range(count):
            f = JOB_STATUS.unpack_from(b, off)
            off += JOB_STATUS.size
            reason = b[off:off + f[5]].decode(errors="replace")
            off += f[5]
            snap = b[off:off + f[6]].decode()
            off += f[6]
            out.append(dict(job=f[0], state=JOB_STATE.get(f[1], f[1]), flags=f[2], kind=f[3],
                            incomplete=bool(f[2] & FLAG_INCOMPLETE),
                            map_failed=bool(f[2] & FLAG_MAP_FAILED),
                            mode=f[4], reason=reason, snapshot=snap, bytes_done=f[8],
                            bytes_total=f[9], files_done=f[10], files_total=f[11],
                            bytes_new=f[12], bytes_reused=f[13]))
        return out

    def cancel(self, job):
        return self.call("CANCEL", struct.pack("<Q", job))

    def list(self, target, start=0, reply_max=0):
        _, b = self.call("LIST", struct.pack("<IHH", start, len(target), 0) + target.encode(),
                         reply_max=reply_max)
        total, count = struct.unpack_from("<II", b)
        off, out = 8, []
        for _ in range(count):
            f = SNAP_INFO.unpack_from(b, off)
            off += SNAP_INFO.size
            sid = b[off:off + f[5]].decode()
            off += f[5]
            roots = b[off:off + f[6]].decode().split("\n") if f[6] else []
            off += f[6]
            out.append(dict(created_ns=f[0], files=f[1], bytes=f[2], kind=f[3], mode=f[4],
                            id=sid, roots=roots, incomplete=bool(f[7] & SNAP_INCOMPLETE)))
        return total, out

    def wait_job(self, job, timeout=120):
        """The job's status once it ended; timeout is a safety net."""
        import time
        deadline = time.monotonic() + timeout
        while True:
            st = self.status(job)[0]
            if st["state"] in ("done", "failed", "cancelled"):
                return st
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job} still {st['state']} ({st['reason']}) after "
                                   f"{timeout} s")
            time.sleep(0.05)

    def restore_begin(self, target, snapshot, paths=()):
        p = struct.pack("<HHHH", len(target), len(snapshot), len(paths), 0) + target.encode() + \
            snapshot.encode() + b"".join(s16(x) for x in paths)
        _, b = self.call("RESTORE_BEGIN", p)
        job, n, total, sl = struct.unpack_from("<QQQH", b)
        return job, n, total, b[32:32 + sl].decode()

    def restore_list(self, job, start=0, reply_max=0):
        _, b = self.call("RESTORE_LIST", struct.pack("<QQ", job, start), reply_max=reply_max)
        count = struct.unpack_from("<I", b)[0]
        off, out = 8, []
        for _ in range(count):
            r = FILE_REC.unpack_from(b, off)
            off += FILE_REC.size
            path = b[off:off + r[8]].decode(errors="surrogateescape")
            path_bytes = b[off:off + r[8]]
            off += r[8]
            link = b[off:off + r[9]]
            off += r[9]
            xl = r[27]
            xattrs = parse_xattrs(b[off:off + xl], r[25])
            off += xl
            out.append(dict(type=r[0], mode=r[3], uid=r[4], gid=r[5], nlink=r[6], rdev=r[10],
                            size=r[11], link_index=r[12],
                            mtime_ns=r[13] * 10**9 + r[14], ctime_ns=r[16] * 10**9 + r[17],
                            atime_ns=r[19] * 10**9 + r[20], mtime=(r[13], r[14]),
                            ctime=(r[16], r[17]), atime=(r[19], r[20]), fsflags=r[22],
                            projid=r[23], flags=r[24], xattrs=xattrs, path=path,
                            path_bytes=path_bytes, link=link))
        return out

    def problems(self, job, items):
        """BACKUP_PROBLEMS: items are (path, reason)."""
        return self.call("BACKUP_PROBLEMS", problems_payload(job, items))

    def restore_read(self, job, entry, offset, length, reply_max=0):
        _, b = self.call("RESTORE_READ", struct.pack("<QQQII", job, entry, offset, length, 0),
                         reply_max=reply_max)
        off, n, flags = struct.unpack_from("<QII", b)
        return off, n, flags, b[16:]

    def restore_end(self, job):
        return self.call("RESTORE_END", struct.pack("<Q", job))


def begin_payload(target, serials, roots, kind=KIND_FILES, mode="full"):
    p = struct.pack("<BBHHHIIQQ", kind, MODE[mode] if isinstance(mode, str) else mode,
                    len(target.encode()), len(serials), len(roots), 0, 0, 0, 0)
    p += target.encode()
    p += b"".join(s16(s) for s in serials)
    p += b"".join(s16(r) for r in roots)
    return p


def map_section(fss, roots, prune=(), exclude=()):
    """The map section of a BEGIN with BEGIN_HOST_MAP: fss [(disk, start)], roots
    [(fs, path inside)] in BEGIN's order, mount points, exclusions."""
    p = struct.pack("<HHHH", len(fss), len(prune), len(exclude), 0)
    p += b"".join(struct.pack("<HBBIQ", disk, FS_EXT, 0, 0, start) for disk, start in fss)
    p += b"".join(struct.pack("<H", fs) + s16(inside) for fs, inside in roots)
    p += b"".join(s16(x) for x in prune) + b"".join(s16(x) for x in exclude)
    return p


def begin_host_map(target, serials, roots, fss, inside, prune=(), exclude=(), mode="full"):
    """BEGIN asking the host to map (flags BEGIN_HOST_MAP, the map section)."""
    p = begin_payload(target, serials, roots, KIND_FILES, mode)
    p = p[:8] + struct.pack("<I", BEGIN_HOST_MAP) + p[12:]
    return p + map_section(fss, inside, prune, exclude)


def record(path, type="reg", data=FD_NONE, size=0, mode=0o644, uid=0, gid=0, nlink=1, ino=0,
           mtime_ns=0, ctime_ns=0, atime_ns=0, rdev=0, disk=0, link=b"", extents=(),
           mtime=None, ctime=None, atime=None, fsflags=0, projid=0, flags=0, xattrs=None,
           xattr_raw=None, n_xattrs=None):
    """One BACKUP_FILES record.  Times as ns, or as (sec, nsec) with mtime= etc.
    xattrs: {name: value}; xattr_raw/n_xattrs: a section as given (hostile tests)."""
    if isinstance(path, str):
        path = path.encode()
    if isinstance(link, str):
        link = link.encode()
    t = FT[type] if isinstance(type, str) else type
    mt = mtime if mtime is not None else split_ns(mtime_ns)
    ct = ctime if ctime is not None else split_ns(ctime_ns)
    at = atime if atime is not None else split_ns(atime_ns)
    if xattr_raw is not None:
        xs, nx = xattr_raw, n_xattrs or 0
    else:
        xs, nx = xattrs_section(xattrs or {})
    r = FILE_REC.pack(t, data, disk, mode, uid, gid, nlink, len(extents), len(path), len(link),
                      rdev, size, ino, mt[0], mt[1], 0, ct[0], ct[1], 0, at[0], at[1], 0,
                      fsflags, projid, flags, nx if n_xattrs is None else n_xattrs, 0, len(xs), 0)
    return r + path + link + xs + b"".join(EXTENT.pack(*e) if len(e) == 5 else
                                           EXTENT.pack(e[0], e[1], e[2],
                                                       e[3] if len(e) > 3 else 0, 0)
                                           for e in extents)


def problems_payload(job, items):
    p = struct.pack("<QII", job, len(items), 0)
    for path, reason in items:
        path = path.encode() if isinstance(path, str) else path
        reason = reason.encode() if isinstance(reason, str) else reason
        p += struct.pack("<HH", len(path), len(reason)) + path + reason
    return p


def files_payload(job, records):
    return struct.pack("<QII", job, len(records), 0) + b"".join(records)


# ---- FIEMAP, as the guest tool maps files -------------------------------------------
FS_IOC_FIEMAP = 0xC020660B
FIEMAP_FLAG_SYNC = 1
FIEMAP_EXTENT_LAST = 0x1
FIEMAP_EXTENT_UNWRITTEN = 0x800
FIEMAP_UNMAPPABLE = 0x2 | 0x4 | 0x8 | 0x80 | 0x100 | 0x200 | 0x400   # unknown delalloc encoded ...


def fiemap(path):
    """Extents of a file: [(logical, physical, length, flags)] or None if unmappable."""
    out = []
    start = 0
    fd = os.open(path, os.O_RDONLY)
    try:
        while True:
            n = 256
            req = struct.pack("<QQIIII", start, (1 << 64) - 1 - start, FIEMAP_FLAG_SYNC, 0, n, 0)
            buf = bytearray(req + b"\0" * (56 * n))
            fcntl.ioctl(fd, FS_IOC_FIEMAP, buf)
            mapped = struct.unpack_from("<I", buf, 20)[0]
            last = False
            for i in range(mapped):
                lo, ph, ln, _, _, fl = struct.unpack_from("<QQQQQI", buf, 32 + 56 * i)
                if fl & FIEMAP_UNMAPPABLE:
                    return None
                out.append((lo, ph, ln, EXT_UNWRITTEN if fl & FIEMAP_EXTENT_UNWRITTEN else 0))
                start = lo + ln
                last = last or bool(fl & FIEMAP_EXTENT_LAST)
            if last or mapped == 0:
                return out
    finally:
        os.close(fd)


def walk_records(mount, roots, disk_offset=0, fallback=()):
    """Records for the trees at roots (paths inside the mounted file system), as the
    guest tool would send them, and the fallback files' data.
    Returns (records, [(index, bytes)])."""
    recs, fb = [], []
    count = [0]     # file indices count records, not MORE records

    def add(rel, full):
        st = os.lstat(full)
        kw = dict(mode=stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid, nlink=st.st_nlink,
                  ino=st.st_ino, mtime_ns=st.st_mtime_ns, ctime_ns=st.st_ctime_ns,
                  atime_ns=st.st_atime_ns, xattrs=read_xattrs(full))
        count[0] += 1
        if stat.S_ISDIR(st.st_mode):
            recs.append(record(rel, "dir", **kw))
        elif stat.S_ISLNK(st.st_mode):
            recs.append(record(rel, "symlink", link=os.readlink(full).encode(), **kw))
        elif stat.S_ISFIFO(st.st_mode):
            recs.append(record(rel, "fifo", **kw))
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            recs.append(record(rel, "chr" if stat.S_ISCHR(st.st_mode) else "blk",
                               rdev=(os.major(st.st_rdev) << 8) | os.minor(st.st_rdev), **kw))
        elif stat.S_ISREG(st.st_mode):
            ext = None if any(__import__("fnmatch").fnmatch(rel, g) for g in fallback) \
                else fiemap(full)
            if ext is None:
                recs.append(record(rel, "reg", data=FD_FALLBACK, size=st.st_size, **kw))
                fb.append((count[0] - 1, open(full, "rb").read()))
            else:
                ext = [(lo, ph + disk_offset, ln, fl) for lo, ph, ln, fl in ext]
                # split long extent lists into MORE records (8192 per record)
                recs.append(record(rel, "reg", data=FD_EXTENTS, size=st.st_size, **kw,
                                   extents=ext[:8192]))
                for k in range(8192, len(ext), 8192):
                    recs.append(record(rel, "reg", data=FD_MORE, extents=ext[k:k + 8192]))
        for_dirs = stat.S_ISDIR(st.st_mode)
        return for_dirs

    for root in roots:
        full = os.path.join(mount, root)
        add(root, full)
        if os.path.isdir(full) and not os.path.islink(full):
            for dirpath, dirs, files in os.walk(full):
                dirs.sort()
                for name in sorted(dirs) + sorted(files):
                    p = os.path.join(dirpath, name)
                    add(os.path.relpath(p, mount), p)
    return recs, fb


def read_xattrs(path):
    """The extended attributes a backup keeps, as the guest tool reads them."""
    out = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return out
    for n in names:
        if n.startswith(("user.", "trusted.", "security.")) or \
                n in ("system.posix_acl_access", "system.posix_acl_default"):
            try:
                out[n] = os.getxattr(path, n, follow_symlinks=False)
            except OSError:
                pass
    return out


def send_records(conn, job, recs, per_msg=4096, max_bytes=MAX_PAYLOAD - 64):
    batch, size = [], 16
    for r in recs:
        if batch and (len(batch) >= per_msg or size + len(r) > max_bytes):
            conn.files(job, batch)
            batch, size = [], 16
        batch.append(r)
        size += len(r)
    if batch:
        conn.files(job, batch)
