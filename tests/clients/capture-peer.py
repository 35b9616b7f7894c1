#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""A stand-in for vbackupd that records what clients send (tests only).

It is a fake *beside* the real end-to-end tests against vbackupd: it speaks
include/vbackup/proto.h on a UNIX socket, checks every request by the rules
of docs/protocol.md (batching limits, MORE records, extents, fallback DATA
order and LAST, SEAL completeness), records what it got, and serves a
synthetic snapshot for restores.

  capture-peer.py --socket PATH --ready-file F --log LOG [options]

  --records FILE        at SEAL, the job's records as JSON lines in the
                        format of `vbackup --dump` (MORE records merged,
                        fallback files with the sha256 of the DATA bytes)
  --fail OP=ST[:MSG]    answer every OP (e.g. BACKUP_BEGIN) with status ST
  --malformed OP        answer OP with a malformed reply (the client must say so)
  --view frozen|snapshot
  --read-done-after N   STATUS polls after SEAL before READ_DONE (default 2)
  --done-after N        STATUS polls after SEAL before the job ends (default 4)
  --job-end done|failed cancelled-by-host
  --never-read-done     keep the job RUNNING without READ_DONE
  --max-payload N / --max-files N   limits announced by HELLO
  --disk-size BYTES     size of every disk (extents are checked against it)
  --image SERIAL=RAW    at SEAL, read every mapped file from the raw disk image
                        (as vbackupd would) and record its sha256 (image_sha256)
  --restore-spec FILE   the snapshot served to RESTORE_* (see make_content)
  --list-page N         entries per RESTORE_LIST / LIST reply at most
  --shuffle             answer RESTORE_READ after random delays

The log (JSON lines) has one object per request ({"op": ..., ...}) and
{"violation": ...} for every broken rule; tests require no violations.

  capture-peer.py --expect SPEC   prints "sha256 size path" of every regular
                                  file of a restore spec
"""

import argparse
import asyncio
import hashlib
import json
import os
import random
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../daemon"))
import vbproto as vp  # noqa: E402  (the protocol's one Python module)

HDR = vp.HDR
MAGIC = vp.MAGIC
REPLY = vp.REPLY
MAX_PAYLOAD = vp.MAX_PAYLOAD
OPS = {v: k for k, v in vp.OP.items()}
OPNUM = dict(vp.OP)
S_OK, S_BAD_REQUEST, S_NOT_FOUND, S_BAD_STATE, S_NO_JOB = 0, 4, 6, 20, 13
S_REPLY_TOO_SMALL = 19
FILE_REC = vp.FILE_REC                            # 120 bytes
EXTENT = vp.EXTENT
JOB_STATUS = vp.JOB_STATUS                        # 88 bytes
SNAP_INFO = vp.SNAP_INFO                          # 32 bytes
TYPES = {1: "reg", 2: "dir", 3: "symlink", 4: "fifo", 5: "chr", 6: "blk", 7: "sock"}
TYPENUM = {v: k for k, v in TYPES.items()}
DATAS = {0: "none", 1: "extents", 2: "fallback"}
NO_LINK = vp.NO_LINK


def path_ok(p, allow_empty=False):
    """A protocol path: bytes, no NUL, no empty, . or .. component."""
    if p == b"":
        return allow_empty
    if len(p) > 65535 or b"\0" in p or p.startswith(b"/"):
        return False
    return all(c not in (b"", b".", b"..") and len(c) <= 255 for c in p.split(b"/"))


def put_bytes(rec, key, b):
    """As `vbackup --dump` writes bytes: a string when UTF-8, else KEY_hex."""
    try:
        rec[key] = b.decode()
    except UnicodeDecodeError:
        rec[key + "_hex"] = b.hex()


def put_time(rec, key, sec, nsec):
    rec[key + "_sec"] = sec
    rec[key + "_nsec"] = nsec
    if -(2**63) // 10**9 + 1 < sec < (2**63 - 1) // 10**9:
        rec[key + "_ns"] = sec * 10**9 + nsec


# ---- synthetic snapshot content --------------------------------------------

def block(seed, index):
    """32 bytes of the data of a file: sha256(seed, index)."""
    return hashlib.sha256(f"{seed}:{index}".encode()).digest()


def make_content(seed, off, length):
    first, last = off // 32, (off + length + 31) // 32
    data = b"".join(block(seed, i) for i in range(first, last))
    s = off - first * 32
    return data[s:s + length]


def segments(entry):
    """[(kind, off, len)] covering [0, size): 'data' or 'hole'."""
    size = entry.get("size", 0)
    segs = sorted(entry.get("data", []))           # [[off, len], ...]
    out, pos = [], 0
    for off, ln in segs:
        if off > pos:
            out.append(("hole", pos, off - pos))
        out.append(("data", off, ln))
        pos = off + ln
    if pos < size:
        out.append(("hole", pos, size - pos))
    return out


def file_sha(entry):
    h = hashlib.sha256()
    for kind, off, ln in segments(entry):
        pos = 0
        while pos < ln:
            n = min(ln - pos, 1 << 20)
            h.update(make_content(entry.get("seed", entry["path"]), off + pos, n)
                     if kind == "data" else bytes(n))
            pos += n
    return h.hexdigest()


class Job:
    def __init__(self, jid, begin):
        self.id = jid
        self.begin = begin
        self.state = 1              # COLLECTING
        self.flags = 0
        self.files = []             # records (dicts), index = file index
        self.paths = set()
        self.last = None            # last record, for MORE
        self.data = {}              # file index -> [received, sha]
        self.polls = 0
        self.sealed = False
        self.reason = b""
        self.snap = b""


class Peer:
    def __init__(self, a):
        self.a = a
        self.logf = open(a.log, "a", buffering=1, encoding="utf-8")
        self.jobs = {}
        self.next_job = 1
        self.fail = {}
        for f in a.fail:
            op, _, rest = f.partition("=")
            st, _, msg = rest.partition(":")
            self.fail[OPNUM[op]] = (int(st), msg.encode())
        self.spec = None
        if a.restore_spec:
            with open(a.restore_spec) as f:
                self.spec = json.load(f)
        self.restores = {}
        self.images = dict(x.split("=", 1) for x in a.image)

    def log(self, **kw):
        self.logf.write(json.dumps(kw, ensure_ascii=False) + "\n")

    def violation(self, msg):
        self.log(violation=msg)
        return S_BAD_REQUEST, msg.encode()[:512]

    # ---- operations ----

    def op_hello(self, p):
        if len(p) != 40:
            return self.violation("HELLO payload size")
        vmin, vmax = struct.unpack_from("<II", p)
        self.log(op="HELLO", tool=p[8:40].rstrip(b"\0").decode(errors="replace"),
                 vmin=vmin, vmax=vmax)
        feats = 1 if self.a.view == "snapshot" else 0
        return S_OK, struct.pack("<IIII64s32s", vp.VERSION, self.a.max_payload,
                                 self.a.max_files, feats, b"capture", b"capture-peer")

    def op_begin(self, p):
        kind, mode, tl, nd, nr, flags, _r, nfh, bh = struct.unpack_from("<BBHHHIIQQ", p)
        off = 32
        target = p[off:off + tl]
        off += tl
        serials, roots = [], []
        for _ in range(nd):
            (ln,) = struct.unpack_from("<H", p, off)
            serials.append(p[off + 2:off + 2 + ln].decode())
            off += 2 + ln
        for _ in range(nr):
            (ln,) = struct.unpack_from("<H", p, off)
            roots.append(p[off + 2:off + 2 + ln])
            off += 2 + ln
        if off != len(p):
            return self.violation("BACKUP_BEGIN length")
        self.log(op="BACKUP_BEGIN", kind=kind, mode=mode, target=target.decode(),
                 serials=serials, roots=[r.decode(errors="replace") for r in roots], flags=flags)
        if nd > 16 or (kind == 2 and (nd != 1 or nr)) or (kind == 1 and not 1 <= nr <= 64):
            return self.violation("BACKUP_BEGIN counts")
        if not all(path_ok(r, True) for r in roots):
            return self.violation("BACKUP_BEGIN root path")
        j = Job(self.next_job, {"kind": kind, "mode": mode, "serials": serials,
                                "roots": roots, "target": target.decode()})
        self.jobs[j.id] = j
        self.next_job += 1
        return S_OK, struct.pack("<QII", j.id, 0, 0)

    def op_files(self, p, hdr):
        job, n, _r = struct.unpack_from("<QII", p)
        j = self.jobs.get(job)
        self.log(op="BACKUP_FILES", job=job, n=n, bytes=len(p))
        if not j or j.sealed:
            return S_BAD_STATE, b"no such collecting job"
        if len(p) > self.a.max_payload:
            return self.violation(f"FILES payload {len(p)} > {self.a.max_payload}")
        if not 1 <= n <= min(4096, self.a.max_files):
            return self.violation(f"FILES with {n} records")
        off = 16
        for i in range(n):
            (typ, data, disk, mode, uid, gid, nlink, n_ext, pl, ll, rdev, size, ino,
             msec, mnsec, mres, csec, cnsec, cres, asec, ansec, ares, fsflags, projid, rflags,
             n_x, xres, xl, xres2) = FILE_REC.unpack_from(p, off)
            off += FILE_REC.size
            path = p[off:off + pl]
            off += pl
            link = p[off:off + ll]
            off += ll
            xsec = p[off:off + xl]
            off += xl
            exts = [EXTENT.unpack_from(p, off + 32 * k) for k in range(n_ext)]
            off += 32 * n_ext
            if off > len(p):
                return self.violation("FILES record past the payload")
            if data != 3 and (max(mnsec, cnsec, ansec) >= 10**9 or mres or cres or ares or
                              xres or xres2 or rflags or fsflags & ~vp.FSFL_MASK):
                return self.violation(f"bad times, flags or reserved fields of {path!r}")
            xattrs = vp.parse_xattrs(xsec, n_x) if data != 3 else {}
            if data != 3 and (len(xattrs) != n_x or
                              sorted(x.encode(errors="surrogateescape") for x in xattrs) !=
                              [x.encode(errors="surrogateescape") for x in xattrs]):
                return self.violation(f"extended attributes of {path!r} not in order")
            if not path_ok(path, True):
                return self.violation(f"bad path {path!r}")
            if n_ext > 8192:
                return self.violation(f"{n_ext} extents in one record")
            if data == 3:
                last = j.last
                if not last or last["_path"] != path or last["type"] != "reg":
                    return self.violation(f"MORE without its file: {path!r}")
                self.log(more=path.decode(errors="replace"), n_ext=n_ext, msg_record=i)
                rec = last
            else:
                if path in j.paths:
                    return self.violation(f"path sent twice: {path!r}")
                if typ not in TYPES or data > 2 or (data and typ != 1):
                    return self.violation(f"bad type/data for {path!r}")
                if (ll > 0) != (typ == 3) or mode & ~0o7777:
                    return self.violation(f"bad link/mode for {path!r}")
                if size == 0 and data != 0 and typ == 1:
                    return self.violation(f"empty file with data source {path!r}")
                j.paths.add(path)
                rec = {"_path": path}
                put_bytes(rec, "path", path)
                rec.update({"type": TYPES[typ], "data": DATAS[data],
                            "disk": (j.begin["serials"][disk]
                                     if disk < len(j.begin["serials"]) else None),
                            "size": size, "mode": mode, "uid": uid, "gid": gid,
                            "nlink": nlink, "ino": ino, "rdev": rdev, "fsflags": fsflags,
                            "projid": projid})
                put_time(rec, "mtime", msec, mnsec)
                put_time(rec, "ctime", csec, cnsec)
                put_time(rec, "atime", asec, ansec)
                if ll:
                    put_bytes(rec, "link", link)
                rec["xattrs"] = {k: v.hex() for k, v in xattrs.items()}
                rec["extents"] = []
                rec["_index"] = len(j.files)
                j.files.append(rec)
                j.last = rec
            mapped = rec["data"] == "extents"
            if n_ext and data != 3 and not mapped and \
                    any(not (fl & 1) or ph for (_lo, ph, _ln, fl, _r) in exts):
                return self.violation(f"written extents on a record without them {path!r}")
            if n_ext and mapped and disk >= len(j.begin["serials"]):
                return self.violation(f"disk index {disk} out of range")
            end = rec["extents"][-1][0] + rec["extents"][-1][2] if rec["extents"] else 0
            for (lo, ph, ln, fl, res) in exts:
                if ln == 0 or fl & ~1 or res or lo < end:
                    return self.violation(f"bad extent in {path!r}: {lo},{ph},{ln},{fl}")
                if mapped and self.a.disk_size and ph + ln > self.a.disk_size:
                    return self.violation(f"extent outside the disk in {path!r}")
                if not mapped and (ph or not fl & 1):
                    return self.violation(f"a written extent on an unmapped file {path!r}")
                end = lo + ln
                rec["extents"].append([lo, ph, ln, fl])
        if off != len(p):
            return self.violation("bytes after the last record")
        return S_OK, b""

    def op_data(self, p):
        job, index, off, ln, flags = struct.unpack_from("<QQQII", p)
        j = self.jobs.get(job)
        body = p[32:]
        self.log(op="BACKUP_DATA", job=job, file=index, offset=off, len=ln, flags=flags)
        if not j or j.sealed:
            return S_BAD_STATE, b"no such collecting job"
        if ln != len(body) or ln > self.a.max_payload - 32:
            return self.violation(f"DATA length {ln}/{len(body)}")
        if index >= len(j.files) or j.files[index]["data"] != "fallback":
            return self.violation(f"DATA for file {index} that is not fallback")
        st = j.data.setdefault(index, [0, hashlib.sha256(), False])
        if st[2]:
            return self.violation(f"DATA after LAST for file {index}")
        if off != st[0]:
            return self.violation(f"DATA for file {index} at {off}, expected {st[0]}")
        st[0] += ln
        st[1].update(body)
        size = j.files[index]["size"]
        if st[0] > size:
            return self.violation(f"DATA past the size of file {index}")
        if flags & 1:
            if st[0] != size:
                return self.violation(f"LAST at {st[0]} of {size} for file {index}")
            st[2] = True
        return S_OK, b""

    def op_problems(self, p):
        job, n, _r = struct.unpack_from("<QII", p)
        j = self.jobs.get(job)
        off, items = 16, []
        for _ in range(n):
            pl, rl = struct.unpack_from("<HH", p, off)
            path, reason = p[off + 4:off + 4 + pl], p[off + 4 + pl:off + 4 + pl + rl]
            off += 4 + pl + rl
            if not path_ok(path, True) or not 1 <= rl <= 512:
                return self.violation(f"bad problem {path!r}: {reason!r}")
            items.append([path.decode(errors="replace"), reason.decode()])
        self.log(op="BACKUP_PROBLEMS", job=job, problems=items)
        if not j or j.sealed:
            return S_BAD_STATE, b"no such collecting job"
        if off != len(p) or not 1 <= n <= 4096:
            return self.violation("BACKUP_PROBLEMS length or count")
        j.flags |= vp.FLAG_INCOMPLETE
        return S_OK, b""

    def op_seal(self, p):
        (job,) = struct.unpack_from("<Q", p)
        j = self.jobs.get(job)
        self.log(op="BACKUP_SEAL", job=job)
        if not j or j.sealed:
            return S_BAD_STATE, b"no such collecting job"
        for rec in j.files:
            if rec["data"] == "fallback":
                st = j.data.get(rec["_index"])
                if not st or not st[2]:
                    return self.violation(f"SEAL with incomplete fallback file {rec['path']}")
                rec["sha256"] = st[1].hexdigest()
        j.sealed = True
        j.state = 2
        # --image: read the files from the disk images now, while the guest
        # is frozen, as vbackupd does
        for rec in j.files:
            img = self.images.get(rec["disk"])
            if img and rec["data"] == "extents":
                rec["image_sha256"] = self.image_sha(img, rec)
        if self.a.records and j.begin["kind"] == 1:
            with open(self.a.records, "w") as f:
                for rec in j.files:
                    f.write(json.dumps({k: v for k, v in rec.items()
                                        if not k.startswith("_")}) + "\n")
        return S_OK, struct.pack("<II", 2 if self.a.view == "snapshot" else 1, 0)

    @staticmethod
    def image_sha(img, rec):
        h = hashlib.sha256()
        pos, size = 0, rec["size"]
        with open(img, "rb") as f:
            def zeros(n):
                while n:
                    k = min(n, 1 << 20)
                    h.update(bytes(k))
                    n -= k
            for lo, ph, ln, fl in rec["extents"]:
                ln = min(ln, size - lo)
                zeros(lo - pos)
                if fl & 1:
                    zeros(ln)
                else:
                    f.seek(ph)
                    h.update(f.read(ln))
                pos = lo + ln
            zeros(size - pos)
        return h.hexdigest()

    def job_record(self, j):
        total = sum(r["size"] for r in j.files if r["type"] == "reg")
        done = total if j.state >= 5 else total * min(j.polls, 4) // 5
        return JOB_STATUS.pack(j.id, j.state, j.flags, j.begin["kind"], j.begin["mode"],
                               len(j.reason), len(j.snap), 0, done, total, len(j.files),
                               len(j.files), total // 2, total - total // 2,
                               1_700_000_000 * 10**9, 0) + j.reason + j.snap

    def advance(self, j):
        if not j.sealed or j.state in (5, 6, 7):
            return
        j.polls += 1
        if j.polls >= 1:
            j.state = 4
        if j.polls >= self.a.read_done_after and not self.a.never_read_done:
            j.flags |= 1
        if j.polls >= self.a.done_after and not self.a.never_read_done:
            if self.a.job_end == "done":
                j.state, j.snap = 5, f"capture/{j.id:04d}".encode()
            elif self.a.job_end == "failed":
                j.state, j.reason = 6, b"disk image unreadable: test failure"
            else:
                j.state, j.reason = 7, b"cancelled by the host"

    def op_status(self, p, reply_max):
        (job,) = struct.unpack_from("<Q", p)
        self.log(op="STATUS", job=job)
        jobs = [self.jobs[job]] if job in self.jobs else (
            sorted(self.jobs.values(), key=lambda x: -x.id) if job == 0 else [])
        if job and not jobs:
            return S_NO_JOB, f"no job {job}".encode()
        for j in jobs:
            self.advance(j)
        body = b"".join(self.job_record(j) for j in jobs)
        return S_OK, struct.pack("<II", len(jobs), 0) + body

    def op_cancel(self, p):
        (job,) = struct.unpack_from("<Q", p)
        self.log(op="CANCEL", job=job)
        j = self.jobs.get(job)
        if not j:
            return S_NO_JOB, f"no job {job}".encode()
        if j.state in (5, 6, 7):
            return S_BAD_STATE, b"job already finished"
        j.state, j.reason = 7, b"cancelled by the guest"
        return S_OK, b""

    def op_list(self, p, reply_max):
        start, tl, _r = struct.unpack_from("<IHH", p)
        target = p[8:8 + tl].decode()
        self.log(op="LIST", start=start, target=target)
        snaps = [(1_700_000_000 * 10**9 + i * 10**9, 10 + i, 1000 * i, 1, 1 + i % 3,
                  f"capture/2026-01-{i + 1:02d}T00:00:00Z".encode(),
                  b"usr/lib\nhome" if i % 2 else b"")
                 for i in range(self.a.n_snapshots)]
        out, count = b"", 0
        for s in snaps[start:start + self.a.list_page]:
            rec = SNAP_INFO.pack(s[0], s[1], s[2], s[3], s[4], len(s[5]), len(s[6]), 0) \
                + s[5] + s[6]
            if 8 + len(out) + len(rec) > reply_max:
                break
            out += rec
            count += 1
        return S_OK, struct.pack("<II", len(snaps), count) + out

    # ---- restore ----

    def op_restore_begin(self, p):
        tl, sl, n, _r = struct.unpack_from("<HHHH", p)
        off = 8
        target = p[off:off + tl].decode()
        off += tl
        snap = p[off:off + sl].decode()
        off += sl
        paths = []
        for _ in range(n):
            (ln,) = struct.unpack_from("<H", p, off)
            paths.append(p[off + 2:off + 2 + ln].decode())
            off += 2 + ln
        self.log(op="RESTORE_BEGIN", target=target, snapshot=snap, paths=paths)
        if not self.spec:
            return S_NOT_FOUND, b"no snapshots"
        if snap not in ("latest", self.spec["snapshot"]):
            return S_NOT_FOUND, f"snapshot '{snap}' not found".encode()
        ents = self.spec["entries"]
        if paths:
            keep = []
            for i, e in enumerate(ents):
                if any(p == "" or e["path"] == p or e["path"].startswith(p + "/")
                       for p in paths):
                    keep.append(i)
            for p2 in paths:
                if p2 and not any(ents[i]["path"] == p2 for i in keep):
                    return S_NOT_FOUND, f"'{p2}' is not in the snapshot".encode()
        else:
            keep = list(range(len(ents)))
        remap = {old: new for new, old in enumerate(keep)}
        sel = []
        for old in keep:
            e = dict(ents[old])
            if "link_of" in e:
                if e["link_of"] not in remap:
                    # the first link is not restored: this one is the file
                    first = ents[e["link_of"]]
                    e["data"] = first.get("data", [])
                    e["seed"] = first.get("seed", first["path"])
                    del e["link_of"]
                else:
                    e["link_of"] = remap[e["link_of"]]
            sel.append(e)
        jid = self.next_job
        self.next_job += 1
        self.restores[jid] = sel
        total = sum(e.get("size", 0) for e in sel if e["type"] == "reg")
        sid = self.spec["snapshot"].encode()
        return S_OK, struct.pack("<QQQHHHH", jid, len(sel), total, len(sid), 0, 0, 0) + sid

    def entry_rec(self, e):
        path = e["path"].encode()
        link = e.get("link", "").encode() if "link_raw" not in e else bytes.fromhex(e["link_raw"])
        return vp.record(path, e["type"], mode=e.get("mode", 0o644), uid=e.get("uid", 0),
                         gid=e.get("gid", 0), nlink=e.get("nlink", 1), rdev=e.get("rdev", 0),
                         size=e.get("size", 0), ino=e.get("link_of", NO_LINK),
                         mtime_ns=e.get("mtime_ns", 1_600_000_000_123_456_789),
                         ctime_ns=e.get("mtime_ns", 1_600_000_000_123_456_789),
                         atime_ns=e.get("atime_ns", 1_600_000_001_000_000_007), link=link,
                         xattrs={k: bytes.fromhex(v) for k, v in e.get("xattrs", {}).items()})

    def op_restore_list(self, p, reply_max):
        job, start = struct.unpack_from("<QQ", p)
        self.log(op="RESTORE_LIST", job=job, start=start)
        ents = self.restores.get(job)
        if ents is None:
            return S_NO_JOB, b"no such restore job"
        out, count = b"", 0
        for e in ents[start:start + self.a.list_page]:
            rec = self.entry_rec(e)
            if 8 + len(out) + len(rec) > reply_max:
                break
            out += rec
            count += 1
        return S_OK, struct.pack("<II", count, 0) + out

    def op_restore_read(self, p, reply_max):
        job, entry, off, ln, _r = struct.unpack_from("<QQQII", p)
        ents = self.restores.get(job)
        self.log(op="RESTORE_READ", job=job, entry=entry, offset=off, len=ln)
        if ents is None or entry >= len(ents):
            return S_NO_JOB, b"no such restore job or entry"
        if ln > reply_max - 16:
            return self.violation(f"RESTORE_READ len {ln} > reply_max {reply_max} - 16")
        e = ents[entry]
        size = e.get("size", 0)
        if off >= size:
            return S_OK, struct.pack("<QII", off, 0, 2)
        for kind, so, sl in segments(e):
            if so <= off < so + sl:
                n = min(ln, so + sl - off)
                if kind == "hole":
                    # the length is 32 bits: a longer hole is told in parts
                    return S_OK, struct.pack("<QII", off, min(so + sl - off, 0xfffff000), 1)
                data = make_content(e.get("seed", e["path"]), off, n)
                return S_OK, struct.pack("<QII", off, n, 0) + data
        return S_OK, struct.pack("<QII", off, 0, 2)

    def op_restore_end(self, p):
        (job,) = struct.unpack_from("<Q", p)
        self.log(op="RESTORE_END", job=job)
        if self.restores.pop(job, None) is None:
            return S_NO_JOB, b"no such restore job"
        return S_OK, b""

    MALFORMED = {
        1: b"\x01\x00\x00\x00short",                         # HELLO too short
        2: b"\x01\x00",                                         # BACKUP_BEGIN too short
        5: struct.pack("<II", 9, 0),                             # unknown view
        6: struct.pack("<II", 5, 0) + b"x" * 20,                 # count past the payload
        8: struct.pack("<II", 1, 3),                             # records missing
        9: struct.pack("<QQQHHHH", 1, 1, 1, 200, 0, 0, 0),       # snapshot id past the end
        10: struct.pack("<II", 1, 0) + vp.record(b"../x", "reg", ino=NO_LINK),
        11: struct.pack("<QII", 12345, 1, 0) + b"z",             # offset not asked for
    }

    def dispatch(self, op, p, reply_max):
        if op in self.a.malformed:
            self.log(op=OPS.get(op, "?"), malformed=True)
            return S_OK, self.MALFORMED[op]
        if op in self.fail:
            self.log(op=OPS.get(op, "?"), failed=self.fail[op][0])
            return self.fail[op]
        if op == 1:
            return self.op_hello(p)
        if op == 2:
            return self.op_begin(p)
        if op == 3:
            return self.op_files(p, None)
        if op == 4:
            return self.op_data(p)
        if op == 5:
            return self.op_seal(p)
        if op == 6:
            return self.op_status(p, reply_max)
        if op == 7:
            return self.op_cancel(p)
        if op == 8:
            return self.op_list(p, reply_max)
        if op == 9:
            return self.op_restore_begin(p)
        if op == 10:
            return self.op_restore_list(p, reply_max)
        if op == 11:
            return self.op_restore_read(p, reply_max)
        if op == 12:
            return self.op_restore_end(p)
        if op == 13:
            return self.op_problems(p)
        return self.violation(f"unknown op {op}")

    async def handle(self, reader, writer):
        lock = asyncio.Lock()
        tasks = set()

        async def answer(op, tag, p, reply_max, delay):
            if delay:
                await asyncio.sleep(delay)
            try:
                st, body = self.dispatch(op, p, reply_max)
            except (struct.error, IndexError, KeyError, UnicodeDecodeError) as ex:
                st, body = self.violation(f"{OPS.get(op)}: malformed: {ex!r}")
            if len(body) > reply_max:
                self.log(violation=f"reply {len(body)} > reply_max {reply_max}")
                st, body = S_REPLY_TOO_SMALL, b""
            async with lock:
                writer.write(HDR.pack(MAGIC, vp.VERSION, op | REPLY, tag, len(body), 0, st, 0) +
                             body)
                await writer.drain()

        try:
            while True:
                h = await reader.readexactly(32)
                magic, ver, op, tag, ln, reply_max, st, fl = HDR.unpack(h)
                if magic != MAGIC or ver != vp.VERSION or ln > MAX_PAYLOAD or st or fl:
                    self.log(violation=f"bad header {magic:#x} {ver} {ln} {st} {fl}")
                    break
                p = await reader.readexactly(ln)
                reply_max = reply_max or MAX_PAYLOAD
                delay = random.random() * 0.01 if (self.a.shuffle and op == 11) else 0
                t = asyncio.create_task(answer(op, tag, p, reply_max, delay))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        for t in list(tasks):
            await t
        writer.close()


async def serve(a):
    peer = Peer(a)
    if os.path.exists(a.socket):
        os.unlink(a.socket)
    server = await asyncio.start_unix_server(peer.handle, path=a.socket)
    if a.ready_file:
        with open(a.ready_file, "w") as f:
            f.write("ready\n")
    async with server:
        await server.serve_forever()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--socket")
    ap.add_argument("--ready-file")
    ap.add_argument("--log", default="/dev/null")
    ap.add_argument("--records")
    ap.add_argument("--fail", action="append", default=[])
    ap.add_argument("--malformed", action="append", default=[], type=lambda o: OPNUM[o],
                    help="answer OP with a malformed reply (status OK)")
    ap.add_argument("--view", choices=["frozen", "snapshot"], default="frozen")
    ap.add_argument("--read-done-after", type=int, default=2)
    ap.add_argument("--done-after", type=int, default=4)
    ap.add_argument("--job-end", default="done",
                    choices=["done", "failed", "cancelled-by-host"])
    ap.add_argument("--never-read-done", action="store_true")
    ap.add_argument("--image", action="append", default=[], metavar="SERIAL=RAW",
                    help="at SEAL, hash the files with extents from this raw disk image")
    ap.add_argument("--max-payload", type=int, default=MAX_PAYLOAD)
    ap.add_argument("--max-files", type=int, default=4096)
    ap.add_argument("--disk-size", type=int, default=0)
    ap.add_argument("--restore-spec")
    ap.add_argument("--list-page", type=int, default=1000)
    ap.add_argument("--n-snapshots", type=int, default=3)
    ap.add_argument("--shuffle", action="store_true")
    ap.add_argument("--expect", metavar="SPEC")
    a = ap.parse_args()
    if a.expect:
        with open(a.expect) as f:
            spec = json.load(f)
        for e in spec["entries"]:
            if e["type"] == "reg" and "link_of" not in e:
                print(file_sha(e), e.get("size", 0), e["path"])
        return
    try:
        asyncio.run(serve(a))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
