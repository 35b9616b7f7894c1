#!/usr/bin/env python3
"""Seeds for fuzz-wire: one valid (or nearly valid) payload per parser."""
import os
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../daemon"))
import vbproto as vp  # noqa: E402

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus")
os.makedirs(out, exist_ok=True)
R = vp.record
seeds = {
    "begin-files": b"\0" + vp.begin_payload("archive", ["vda"], ["srv", "etc/x"]),
    "begin-disk": b"\0" + vp.begin_payload("archive", ["vdb"], [], kind=vp.KIND_DISK),
    "begin-hostmap": b"\0" + vp.begin_host_map("archive", ["vda", "vdb"], ["", "srv"],
                                              [(0, 1 << 20), (1, 0)], [(0, ""), (1, "www")],
                                              prune=["proc", "srv/www/mnt"],
                                              exclude=["*.tmp", "/var/cache/*"]),
    "files": b"\1" + vp.files_payload(7, [
        R("srv", "dir"), R("srv/a", data=vp.FD_EXTENTS, size=8192,
                           extents=[(0, 4096, 4096, 0), (4096, 65536, 4096, 1)]),
        R("srv/l", "symlink", link="a"), R("srv/f", data=vp.FD_FALLBACK, size=3)]),
    "files-more": b"\x81" + vp.files_payload(7, [R("a/b", data=vp.FD_MORE,
                                                    extents=[(8192, 0, 4096, 0)])]),
    "files-v2": b"\1" + vp.files_payload(7, [
        R(b"srv/\xff\xfe name", "dir", mtime=(-1, 500000000), atime=(13700000000, 1),
          xattrs={"user.a": b"\0\1", "security.capability": b"\1" * 20,
                  "system.posix_acl_access": b"\2\0\0\0"}, fsflags=0x10, projid=7),
        R("srv/p", data=vp.FD_NONE, extents=[(8192, 0, 1 << 20, vp.EXT_UNWRITTEN)]),
        R("srv/f", data=vp.FD_FALLBACK, size=3, extents=[(4096, 0, 4096, vp.EXT_UNWRITTEN)])]),
    "problems": b"\x0b" + vp.problems_payload(7, [("srv/x", "cannot read: Permission denied"),
                                                   (b"\xff", "path longer than 65535 bytes")]),
    "record-restore": b"\x8c" + R("a/b", xattrs={"trusted.x": b"y"}, flags=vp.RF_PREALLOC),
    "data": b"\2" + struct.pack("<QQQII", 7, 3, 0, 3, 1) + b"abc",
    "list": b"\3" + struct.pack("<IHH", 0, 7, 0) + b"archive",
    "restore-begin": b"\4" + struct.pack("<HHHH", 7, 6, 2, 0) + b"archive" + b"latest" +
                     vp.s16("srv") + vp.s16("etc/hosts"),
    "restore-list": b"\5" + struct.pack("<QQ", 9, 0),
    "restore-read": b"\6" + struct.pack("<QQQII", 9, 1, 0, 65536, 0),
    "hello": b"\7" + struct.pack("<II32s", 1, 1, b"seed"),
    "header": b"\x08" + vp.frame(2, b"", tag=5, length=100),
    "path": b"\x09" + "srv/ünï côdé/../x".encode(),
    "jobref": b"\x0a" + struct.pack("<Q", 42),
}
for name, data in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
print(f"{len(seeds)} seeds in {out}")
