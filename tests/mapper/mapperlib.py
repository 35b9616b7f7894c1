#!/usr/bin/env python3
"""The file system mapper (hostd/mapper) for tests: its job description
(hostd/mapper/mapspec.h) built byte by byte, the mapper run on image
chains as vbackupd runs it (descriptors from fd 3, the description on
stdin), and its frames decoded into records shaped like the clients'
--dump lines (guest-driver/tool/vbc.c vbc_dump_record), so that they can be
compared with vbclient's and the guest tool's."""
import hashlib
import json
import os
import struct
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../daemon"))
import vbproto as P  # noqa: E402

BUILD = os.environ.get("VB_BUILDDIR", "build")
MAPPER = os.environ.get("VBACKUP_MAPPER") or os.path.join(BUILD, "hostd/mapper/vbackup-mapper")
FMT = {"raw": 1, "qcow2": 2}
TYPES = ["?", "reg", "dir", "symlink", "fifo", "chr", "blk", "sock"]
DATAS = ["none", "extents", "fallback"]


def s16(b):
    if isinstance(b, str):
        b = b.encode()
    return struct.pack("<H", len(b)) + b


def spec(job, disks, fss, roots, prune=(), exclude=()):
    """disks: [[fmt, ...] top first]; fss: [(disk, offset)];
    roots: [(fs, inside, abs)] (protocol paths, "" the root)."""
    p = struct.pack("<IHHHHHHQ", 0x534d4256, 1, len(disks), len(fss), len(roots), len(prune),
                    len(exclude), job)
    for d in disks:
        p += struct.pack("<H", len(d)) + bytes(FMT[f] for f in d)
    for disk, off in fss:
        p += struct.pack("<HQ", disk, off)
    for fs, inside, abs_ in roots:
        p += struct.pack("<H", fs) + s16(inside) + s16(abs_)
    for x in prune:
        p += s16(x)
    for x in exclude:
        p += s16(x)
    return p


def run(images, spec_bytes, args=(), timeout=600, mapper=None):
    """Runs the mapper with IMAGES (file names, in fd order) as fds 3...;
    returns (exit status, stdout bytes, stderr text)."""
    fds = [os.open(p, os.O_RDONLY) for p in images]
    try:
        def arrange():
            # the images at 3, 4, ...: moved above that range first
            import fcntl
            tmp = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3 + len(fds)) for fd in fds]
            for i, fd in enumerate(tmp):
                os.dup2(fd, 3 + i, inheritable=True)
        r = subprocess.run([mapper or MAPPER] + list(args), input=spec_bytes,
                           capture_output=True, timeout=timeout, preexec_fn=arrange,
                           close_fds=False)
    finally:
        for fd in fds:
            os.close(fd)
    return r.returncode, r.stdout, r.stderr.decode(errors="replace")


def frames(out):
    """[(op, payload)] of the mapper's output; every header checked."""
    off, res = 0, []
    while off < len(out):
        assert len(out) - off >= P.HDR.size, "a truncated frame header"
        magic, ver, op, tag, n, rmax, status, flags = P.HDR.unpack_from(out, off)
        assert magic == P.MAGIC and ver == P.VERSION and status == 0 and flags == 0, "header"
        assert n <= P.MAX_PAYLOAD and off + P.HDR.size + n <= len(out), "frame length"
        res.append((op, out[off + P.HDR.size:off + P.HDR.size + n]))
        off += P.HDR.size + n
    return res


def jb(key, b, first=False):
    try:
        return {key: b.decode("utf-8")}
    except UnicodeDecodeError:
        return {key + "_hex": b.hex()}


def times(d, key, sec, nsec):
    d[key + "_sec"] = sec
    d[key + "_nsec"] = nsec
    if -(2**63) // 10**9 + 1 < sec < (2**63 - 1) // 10**9:
        d[key + "_ns"] = sec * 10**9 + nsec


def records(out, job, serials):
    """The records of the mapper's output as --dump dicts (in order), the
    problems [(path, reason)], and the counts of each frame type."""
    recs, data, problems, count = [], {}, [], {}
    for op, p in frames(out):
        count[op] = count.get(op, 0) + 1
        if op == P.OP["BACKUP_FILES"]:
            j, n, _ = struct.unpack_from("<QII", p)
            assert j == job
            off = 16
            for _ in range(n):
                f = P.FILE_REC.unpack_from(p, off)
                (t, dsrc, disk, mode, uid, gid, nlink, n_ext, pl, ll, rdev, size, ino,
                 ms, mn, _, cs, cn, _, as_, an, _, fsflags, projid, flags, nx, _, xl, _) = f
                off += P.FILE_REC.size
                path = p[off:off + pl]
                off += pl
                link = p[off:off + ll]
                off += ll
                xs = P.parse_xattrs(p[off:off + xl], nx)
                off += xl
                ext = []
                for _ in range(n_ext):
                    lo, ph, ln, fl, _ = P.EXTENT.unpack_from(p, off)
                    off += P.EXTENT.size
                    ext.append([lo, ph, ln, fl])
                if dsrc == P.FD_MORE:
                    recs[-1]["extents"] += ext
                    continue
                d = jb("path", path)
                d.update(type=TYPES[t], data=DATAS[dsrc],
                         disk=serials[disk] if disk < len(serials) else None,
                         size=size, mode=mode, uid=uid, gid=gid, nlink=nlink, ino=ino,
                         rdev=rdev, fsflags=fsflags, projid=projid)
                times(d, "mtime", ms, mn)
                times(d, "ctime", cs, cn)
                times(d, "atime", as_, an)
                if ll:
                    d.update(jb("link", link))
                d["xattrs"] = {k: v.hex() for k, v in xs.items()}
                d["extents"] = [[e[0], e[1] if dsrc == P.FD_EXTENTS else 0, e[2], e[3]]
                                for e in ext]
                recs.append(d)
            assert off == len(p)
        elif op == P.OP["BACKUP_DATA"]:
            j, idx, doff, n, fl = struct.unpack_from("<QQQII", p)
            assert j == job and n == len(p) - 32
            h = data.setdefault(idx, [hashlib.sha256(), 0])
            assert doff == h[1], "data out of order"
            h[0].update(p[32:])
            h[1] += n
        elif op == P.OP["BACKUP_PROBLEMS"]:
            j, n, _ = struct.unpack_from("<QII", p)
            off = 16
            for _ in range(n):
                pl, rl = struct.unpack_from("<HH", p, off)
                off += 4
                problems.append((p[off:off + pl], p[off + pl:off + pl + rl].decode()))
                off += pl + rl
        else:
            raise AssertionError(f"unexpected frame type {op}")
    # fallback data: in file index order (records are indexed in order)
    for idx, (h, n) in data.items():
        r = recs[idx]
        assert r["data"] == "fallback" and n == r["size"], (r, n)
        r["sha256"] = h.hexdigest()
    order = ["path", "path_hex", "type", "data", "disk", "size", "mode", "uid", "gid", "nlink",
             "ino", "rdev", "fsflags", "projid", "mtime_sec", "mtime_nsec", "mtime_ns",
             "ctime_sec", "ctime_nsec", "ctime_ns", "atime_sec", "atime_nsec", "atime_ns",
             "link", "link_hex", "sha256", "xattrs", "extents"]
    recs = [{k: r[k] for k in order if k in r} for r in recs]
    return recs, problems, count


def write_dump(recs, path):
    with open(path, "w") as f:
        for r in recs:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def main():
    """mapperlib.py --disk FMT:IMAGE[,FMT:IMAGE...] ... --fs DISK:OFFSET ...
    --root FS:INSIDE:ABS ... [--serial S ...] [--exclude PAT ...] [--prune PATH ...]
    --dump OUT: runs the mapper and writes its records as --dump lines; exit
    status 1 with the mapper's message when it fails."""
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--disk", action="append", default=[])
    ap.add_argument("--fs", action="append", default=[])
    ap.add_argument("--root", action="append", default=[])
    ap.add_argument("--serial", action="append", default=[])
    ap.add_argument("--exclude", action="append", default=[])
    ap.add_argument("--prune", action="append", default=[])
    ap.add_argument("--dump", required=True)
    ap.add_argument("--job", type=int, default=1)
    a = ap.parse_args()
    disks, images = [], []
    for d in a.disk:
        fmts = []
        for layer in d.split(","):
            fmt, img = layer.split(":", 1)
            fmts.append(fmt)
            images.append(img)
        disks.append(fmts)
    fss = [(int(x.split(":")[0]), int(x.split(":")[1])) for x in a.fs]
    roots = []
    for r in a.root:
        fs, inside, abs_ = r.split(":", 2)
        roots.append((int(fs), os.fsencode(inside), os.fsencode(abs_)))
    rc, out, err = run(images, spec(a.job, disks, fss, roots, [os.fsencode(x) for x in a.prune],
                                    [os.fsencode(x) for x in a.exclude]))
    if rc:
        sys.stderr.write(f"mapper: exit {rc}: {err}")
        sys.exit(1)
    recs, problems, _ = records(out, a.job, a.serial)
    write_dump(recs, a.dump)
    for p, why in problems:
        sys.stderr.write(f"mapper problem: /{p.decode(errors='replace')}: {why}\n")


if __name__ == "__main__":
    main()
