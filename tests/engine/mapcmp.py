#!/usr/bin/env python3
"""Compare vbackupctl image-map --json with qemu-img map --output=json.

Both are cut into ranges at every boundary; each byte must agree on whether
it holds data and, if so, on which file of the chain (depth) provides it.
"""
import json
import sys


def ours(path):
    out = []
    for e in json.load(open(path)):
        data = e["kind"] in ("data", "compressed")
        out.append((e["start"], e["length"], data, e["depth"] if data else None))
    return out


def qemu(path):
    out = []
    for e in json.load(open(path)):
        data = e["data"]
        out.append((e["start"], e["length"], data, e["depth"] if data else None))
    return out


def at(ranges, off):
    for s, n, d, depth in ranges:
        if s <= off < s + n:
            return d, depth, s + n
    return None, None, None


def main():
    a, b = ours(sys.argv[1]), qemu(sys.argv[2])
    end_a = max(s + n for s, n, _, _ in a) if a else 0
    end_b = max(s + n for s, n, _, _ in b) if b else 0
    if end_a != end_b:
        sys.exit(f"maps cover different sizes: {end_a} vs {end_b}")
    off = 0
    while off < end_a:
        da, xa, na = at(a, off)
        db, xb, nb = at(b, off)
        if na is None or nb is None:
            sys.exit(f"gap in a map at {off:#x}")
        if da != db or xa != xb:
            sys.exit(f"at {off:#x}: vbackup says data={da} depth={xa}, "
                     f"qemu-img says data={db} depth={xb}")
        off = min(na, nb)
    print(f"maps agree over {end_a} bytes")


main()
