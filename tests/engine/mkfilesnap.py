#!/usr/bin/env python3
"""Write a files snapshot straight into a repository, without a guest or
vbackupd: chunks (stored uncompressed), files.cat and index.json, in the
format of docs/repository.md.  Tests use it to make the hostile catalogs a
guest could send (a symlink and then a child through it, device nodes,
setuid files, foreign owners, names with control characters, ...).

    mkfilesnap.py REPO SPEC.json      prints the snapshot id

SPEC: {"vm": "evil", "time": "2026-01-02T03:04:05Z", "roots": ["etc"],
       "entries": [ENTRY...]}
ENTRY: path (str) or path_hex; type reg|dir|symlink|fifo|chr|blk|sock;
       optional mode (permission bits), uid, gid, rdev, nlink, ino,
       mtime_ns, atime_ns, ctime_ns, size (default: the data's length),
       link (symlink target, str) or link_hex; the data of a regular file:
       data (str), data_hex, or data_rand (that many random bytes; seed
       data_seed), cut into chunks of chunk_size (default 1 MiB); reuse
       (the path of an earlier entry whose chunks this one references
       too); hardlink (the path of the entry holding the data).
Entries are sorted by path bytes, as vbackupd writes them.

The catalog is version 1 (as vbackupd wrote it first) unless the SPEC says
"catalog_version": 2; then entries may also have: xattrs ({name: value},
values str, or bytes as hex in xattrs_hex), ranges (preallocated [offset,
length] pairs), fsflags, projid, and a layout instead of data: a list of
pieces {"data"|"data_hex"|"data_rand": ...} (chunked as data is), {"hole":
N} (nothing) and {"zeros": N} (written zeros: a chunk record without data).
SPEC "dedup_group": NAME names the chunks in that dedup group.
"""
import hashlib
import json
import os
import random
import struct
import sys
import zlib

TYPES = {"reg": 1, "dir": 2, "symlink": 3, "fifo": 4, "chr": 5, "blk": 6, "sock": 7}
NONE = (1 << 64) - 1
ENTRY = struct.Struct("<BBHIIIIIQQqqqQIIQQQQ")
ENTRY2 = struct.Struct("<BBHIIIIIQQqqqIIIIIIQQIIQQQQQQ")
CHUNK = struct.Struct("<QII32s")
XATTR = struct.Struct("<QHHI")
RANGE = struct.Struct("<QQ")
assert ENTRY.size == 112 and ENTRY2.size == 160 and CHUNK.size == 48
TAG = None   # the dedup group's tag (docs/repository.md, "Chunks"), or None


def put_chunk(repo, data):
    cid = hashlib.sha256((TAG or b"") + data).digest()
    hx = cid.hex()
    d = os.path.join(repo, "chunks", hx[:2])
    os.makedirs(d, exist_ok=True)
    hdr = struct.pack("<IBBHIII", 0x31434256, 1, 0, 0, len(data), len(data),
                      zlib.crc32(data) & 0xffffffff)
    hdr += struct.pack("<I", zlib.crc32(hdr) & 0xffffffff)
    with open(os.path.join(d, hx), "wb") as f:
        f.write(hdr + data)
    return cid


def entry_data(e):
    if "data" in e:
        return e["data"].encode()
    if "data_hex" in e:
        return bytes.fromhex(e["data_hex"])
    if "data_rand" in e:
        return random.Random(e.get("data_seed", e.get("path", ""))).randbytes(e["data_rand"])
    return b""


def pieces(e):
    """(offset, data or None for written zeros, length) of a layout"""
    off = 0
    for p in e["layout"]:
        if "hole" in p:
            off += p["hole"]
            continue
        if "zeros" in p:
            yield off, None, p["zeros"]
            off += p["zeros"]
            continue
        d = entry_data(dict(p, path=e.get("path", "")))
        yield off, d, len(d)
        off += len(d)


def layout_end(e):
    return sum(p.get("hole", p.get("zeros", 0)) for p in e["layout"]) + sum(
        len(entry_data(dict(p, path=e.get("path", "")))) for p in e["layout"]
        if "hole" not in p and "zeros" not in p)


def main():
    global TAG
    repo, spec = sys.argv[1], json.load(open(sys.argv[2]))
    v2 = spec.get("catalog_version", 1) == 2
    if spec.get("dedup_group"):
        TAG = hashlib.sha256(b"vbackup dedup group\0" + spec["dedup_group"].encode()).digest()
    ents = []
    for e in spec["entries"]:
        p = bytes.fromhex(e["path_hex"]) if "path_hex" in e else e["path"].encode()
        ents.append((p, e))
    ents.sort(key=lambda x: x[0])
    index = {p: i for i, (p, _) in enumerate(ents)}
    chunks, strings, packed, xattrs, ranges = [], bytearray(), [], [], []
    chunk_of = {}
    total = 0
    for i, (p, e) in enumerate(ents):
        typ = TYPES[e["type"]]
        data = entry_data(e)
        first = len(chunks)
        if "reuse" in e:
            first, n = chunk_of[e["reuse"].encode()]
            size = e.get("size", 0)
        elif "layout" in e:
            assert v2, "a layout needs catalog_version 2"
            cs = e.get("chunk_size", 1 << 20)
            for base, d, ln in pieces(e):
                if d is None:
                    chunks.append(CHUNK.pack(base, ln, 1, bytes(32)))
                    continue
                for off in range(0, len(d), cs):
                    piece = d[off:off + cs]
                    chunks.append(CHUNK.pack(base + off, len(piece), 0, put_chunk(repo, piece)))
            n = len(chunks) - first
            size = e.get("size", layout_end(e))
        else:
            cs = e.get("chunk_size", 1 << 20)
            for off in range(0, len(data), cs):
                piece = data[off:off + cs]
                chunks.append(CHUNK.pack(off, len(piece), 0, put_chunk(repo, piece)))
            n = len(chunks) - first
            size = e.get("size", len(data))
        chunk_of[p] = (first, n)
        link = (bytes.fromhex(e["link_hex"]) if "link_hex" in e
                else e.get("link", "").encode())
        path_off = len(strings)
        strings += p
        link_off = len(strings)
        strings += link
        hl = index[e["hardlink"].encode()] if "hardlink" in e else NONE
        if typ == 1:
            total += size
        if v2:
            xa = {k.encode(): v.encode() for k, v in e.get("xattrs", {}).items()}
            xa.update({k.encode(): bytes.fromhex(v) for k, v in e.get("xattrs_hex", {}).items()})
            first_x = len(xattrs)
            for name in sorted(xa):
                xattrs.append(XATTR.pack(len(strings), len(name), 0, len(xa[name])))
                strings += name + xa[name]
            first_r = len(ranges)
            for off, ln in e.get("ranges", []):
                ranges.append(RANGE.pack(off, ln))
            t = {k: divmod(e.get(k + "time_ns", d), 10**9) for k, d in
                 (("m", 1_700_000_000_123_456_789), ("c", 1_700_000_000_000_000_000),
                  ("a", 1_700_000_000_987_654_321))}
            packed.append(ENTRY2.pack(
                typ, 0, 0, e.get("mode", 0o755 if typ == 2 else 0o644), e.get("uid", 0),
                e.get("gid", 0), e.get("nlink", 1), e.get("rdev", 0), size, e.get("ino", i + 100),
                t["m"][0], t["c"][0], t["a"][0], t["m"][1], t["c"][1], t["a"][1],
                e.get("fsflags", 0), e.get("projid", 0), len(p), path_off, link_off, len(link),
                len(xa), first_x, first, n, first_r, len(ranges) - first_r, hl))
            continue
        packed.append(ENTRY.pack(
            typ, 0, 0, e.get("mode", 0o755 if typ == 2 else 0o644), e.get("uid", 0),
            e.get("gid", 0), e.get("nlink", 1), e.get("rdev", 0), size, e.get("ino", i + 100),
            e.get("mtime_ns", 1_700_000_000_123_456_789), e.get("ctime_ns", 1_700_000_000_000_000_000),
            e.get("atime_ns", 1_700_000_000_987_654_321), path_off, len(p), len(link), link_off,
            first, n, hl))
    if v2:
        hdr = b"VBCAT01\0" + struct.pack("<IIQQQQQ", 2, 0, len(ents), len(chunks), len(strings),
                                          len(xattrs), len(ranges))
        cat = (hdr.ljust(64, b"\0") + b"".join(packed) + b"".join(chunks) + b"".join(xattrs) +
               b"".join(ranges) + bytes(strings))
    else:
        hdr = b"VBCAT01\0" + struct.pack("<IIQQQ", 1, 0, len(ents), len(chunks), len(strings))
        cat = hdr.ljust(64, b"\0") + b"".join(packed) + b"".join(chunks) + bytes(strings)
    vm, t = spec.get("vm", "evil"), spec.get("time", "2026-01-02T03:04:05Z")
    d = os.path.join(repo, "snapshots", vm, t)
    os.makedirs(d)
    with open(os.path.join(d, "files.cat"), "wb") as f:
        f.write(cat)
    idx = {"format": 1, "id": f"{vm}/{t}", "vm": vm, "type": "files", "created": t,
           "group": "files:" + " ".join(spec.get("roots", [])), "mode": "full", "parent": None,
           "roots": spec.get("roots", []), "disks": {}, "files": len(ents), "bytes": total,
           "catalog": {"file": "files.cat", "sha256": hashlib.sha256(cat).hexdigest(),
                       "entries": len(ents), "chunks": len(chunks)}}
    if spec.get("dedup_group"):
        idx["dedup_group"] = spec["dedup_group"]
    with open(os.path.join(d, "index.json"), "w") as f:
        json.dump(idx, f)
    print(f"{vm}/{t}")


if __name__ == "__main__":
    main()
