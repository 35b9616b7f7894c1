#!/usr/bin/env python3
"""Edit qcow2 headers and tables for tests: make valid-but-unusual images and
hostile ones.  usage: qcow2edit.py IMAGE ACTION [ARGS]"""
import struct
import sys

BACKING_FORMAT = 0xE2792ACA


def header(f):
    f.seek(0)
    h = f.read(112)
    (magic, version, bf_off, bf_size, cluster_bits, size, crypt, l1_size, l1_off,
     rt_off, rt_clusters, nb_snap, snap_off) = struct.unpack(">IIQIIQIIQQIIQ", h[:72])
    hdr_len = struct.unpack(">I", h[100:104])[0] if version >= 3 else 72
    return dict(version=version, bf_off=bf_off, bf_size=bf_size, cluster_bits=cluster_bits,
                size=size, l1_size=l1_size, l1_off=l1_off, hdr_len=hdr_len)


def extensions(f, h):
    off = h["hdr_len"]
    while True:
        f.seek(off)
        t, n = struct.unpack(">II", f.read(8))
        if t == 0:
            return
        yield off, t, n
        off += 8 + ((n + 7) & ~7)


def put(f, off, fmt, *vals):
    f.seek(off)
    f.write(struct.pack(fmt, *vals))


def first_l2(f, h):
    f.seek(h["l1_off"])
    for i in range(h["l1_size"]):
        e = struct.unpack(">Q", f.read(8))[0]
        if e & 0x00FFFFFFFFFFFE00:
            return i, e & 0x00FFFFFFFFFFFE00
    raise SystemExit("no L2 table")


def first_data(f, h, want_compressed=False):
    i, l2 = first_l2(f, h)
    f.seek(l2)
    for j in range((1 << h["cluster_bits"]) // 8):
        e = struct.unpack(">Q", f.read(8))[0]
        if want_compressed and e & (1 << 62):
            return l2 + 8 * j, e
        if not want_compressed and e & 0x00FFFFFFFFFFFE00 and not e & (1 << 62):
            return l2 + 8 * j, e
    raise SystemExit("no data cluster")


def main():
    path, action, *args = sys.argv[1:]
    with open(path, "r+b") as f:
        h = header(f)
        if action == "drop-backing-format":
            for off, t, n in extensions(f, h):
                if t == BACKING_FORMAT:
                    put(f, off, ">I", 0x7E57AB1E)   # unknown extension: ignored
        elif action == "set-backing":          # point the backing name at args[0]
            name = args[0].encode()
            off = h["bf_off"] or 0x1000 - 512
            if h["bf_off"] == 0:
                raise SystemExit("image has no backing file")
            put(f, off, f"{len(name)}s", name)
            put(f, 16, ">I", len(name))
        elif action == "truncate":
            f.truncate(int(args[0]))
        elif action == "l1-offset":
            put(f, 40, ">Q", int(args[0], 0))
        elif action == "l1-size":
            put(f, 36, ">I", int(args[0], 0))
        elif action == "size":
            put(f, 24, ">Q", int(args[0], 0))
        elif action == "cluster-bits":
            put(f, 20, ">I", int(args[0], 0))
        elif action == "version":
            put(f, 4, ">I", int(args[0], 0))
        elif action == "crypt":
            put(f, 32, ">I", 1)
        elif action == "incompat":
            put(f, 72, ">Q", int(args[0], 0))
        elif action == "backing-size":
            put(f, 16, ">I", int(args[0], 0))
        elif action == "l1-entry":          # first allocated L1 entry := value
            i, _ = first_l2(f, h)
            put(f, h["l1_off"] + 8 * i, ">Q", int(args[0], 0))
        elif action == "l2-entry":          # first data L2 entry := value
            off, _ = first_data(f, h)
            put(f, off, ">Q", int(args[0], 0))
        elif action == "l2-bitmap":         # extended L2: bitmap of the first data entry
            i, l2 = first_l2(f, h)
            put(f, l2 + 8, ">Q", int(args[0], 0))
        elif action == "garble-compressed":
            off, e = first_data(f, h, want_compressed=True)
            x = 62 - (h["cluster_bits"] - 8)
            host = e & ((1 << x) - 1)
            put(f, host, "16s", b"\xff" * 16)
        elif action == "info":
            print(h)
        else:
            raise SystemExit(f"unknown action {action}")


main()
