#!/usr/bin/env python3
"""The mkfilesnap.py spec of a folder of the host, as a guest's backup of it
would record it: every entry below SRC (SRC itself as the root, path ""),
with modes, owners, times to the nanosecond, link counts and inode numbers;
hard links point at their first link in path order; a regular file's
trailing zeros are left out of its data (a hole up to its size).

    tree2spec.py SRC VM TIME > spec.json
"""
import json
import os
import stat
import sys


def main():
    src, vm, time = sys.argv[1], sys.argv[2], sys.argv[3]
    found = []
    for dirpath, dirnames, filenames in os.walk(src):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            found.append(os.fsencode(os.path.relpath(full, src)))
    found.append(b"")
    found.sort()
    first_link = {}
    entries = []
    for rel in found:
        full = os.path.join(os.fsencode(src), rel) if rel else os.fsencode(src)
        st = os.lstat(full)
        e = {"path_hex": rel.hex(), "mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid,
             "gid": st.st_gid, "nlink": st.st_nlink, "ino": st.st_ino,
             "mtime_ns": st.st_mtime_ns, "atime_ns": st.st_atime_ns, "ctime_ns": st.st_ctime_ns}
        if stat.S_ISDIR(st.st_mode):
            e["type"] = "dir"
            e["size"] = st.st_size
        elif stat.S_ISLNK(st.st_mode):
            e["type"] = "symlink"
            e["link_hex"] = os.readlink(full).hex()
        elif stat.S_ISREG(st.st_mode):
            e["type"] = "reg"
            e["size"] = st.st_size
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in first_link:
                e["hardlink"] = first_link[key]
            else:
                first_link[key] = rel.decode("utf-8", "surrogateescape")
                with open(full, "rb") as f:
                    data = f.read().rstrip(b"\0")
                e["data_hex"] = data.hex()
                e["chunk_size"] = 700000
        elif stat.S_ISFIFO(st.st_mode):
            e["type"] = "fifo"
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            e["type"] = "chr" if stat.S_ISCHR(st.st_mode) else "blk"
            e["rdev"] = st.st_rdev
        else:
            e["type"] = "sock"
        entries.append(e)
    json.dump({"vm": vm, "time": time, "roots": ["."], "entries": entries}, sys.stdout)


if __name__ == "__main__":
    main()
