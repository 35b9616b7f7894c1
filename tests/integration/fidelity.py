#!/usr/bin/env python3
"""Trees compared field by field, as tests/guest/fstree.c describes them
(`fstree dump`), with the differences docs/fidelity.md documents and no
other: a restore cannot set ctime; inode numbers are new (hard-link groups
are compared instead); a folder's size is its file system's business; with
--sparse, 4 KiB blocks of data that read as zeros may become holes.  The
caller names what else a restore path leaves out (security./trusted.
attributes on the host without --xattrs=all, project ids where the file
system has none)."""


def parse(text):
    """{path bytes: {field: value}} of a dump."""
    out = {}
    for line in text.splitlines():
        if not line:
            continue
        f = dict(kv.split("=", 1) for kv in line.split(" "))
        path = bytes.fromhex(f.pop("path"))
        x = f.get("xattrs", "-")
        f["xattrs"] = {} if x == "-" else dict(kv.split(":", 1) for kv in x.split(","))
        out[path] = f
    return out


def runs(m):
    """A layout string as [(kind, off, len)]."""
    if m in (None, "-"):
        return []
    return [(k, int(o), int(n)) for k, o, n in (r.split(":") for r in m.split(","))]


def blocks(rs, kinds):
    """The 4 KiB blocks of the given kinds."""
    out = set()
    for k, o, n in rs:
        if k in kinds:
            out.update(range(o // 4096, (o + n + 4095) // 4096))
    return out


def groups(tree):
    """Hard-link groups: sets of paths sharing an inode (regular files)."""
    by = {}
    for p, f in tree.items():
        if f["type"] == "10" and int(f["nlink"]) > 1:
            by.setdefault(f["ino"], set()).add(p)
    return sorted(sorted(g) for g in by.values())


def show(p):
    return p.decode(errors="backslashreplace") or "."


def compare(orig, rest, sparse, drop_xattrs=(), no_projid=False):
    """Differences between two dumps (parsed) beyond the documented ones.
    drop_xattrs: prefixes of attributes the restore does not keep.
    no_projid: the destination has no project ids."""
    diffs = []
    for p in sorted(set(orig) | set(rest)):
        a, b = orig.get(p), rest.get(p)
        if a is None or b is None:
            diffs.append(f"{show(p)}: {'missing from the restore' if a else 'not in the original'}")
            continue
        for k in sorted(set(a) | set(b)):
            va, vb = a.get(k), b.get(k)
            if k in ("ctime", "ino"):
                continue                    # cannot be set; new inodes
            if k == "size" and a["type"] == "4":
                continue                    # a folder's size
            if k == "xattrs":
                va = {n: v for n, v in va.items() if not n.startswith(tuple(drop_xattrs))}
            if k == "projid" and no_projid:
                continue
            if k == "map" and sparse:
                ra, rb = runs(va), runs(vb)
                # data and preallocation exactly; written zeros may be holes
                if blocks(ra, "D") == blocks(rb, "D") and \
                        blocks(ra, "U") == blocks(rb, "U") and \
                        blocks(rb, "Z") <= blocks(ra, "Z"):
                    continue
            if va != vb:
                diffs.append(f"{show(p)}: {k}: original {va!r}, restored {vb!r}")
    if groups(orig) != groups(rest):
        diffs.append(f"hard-link groups: original {groups(orig)}, restored {groups(rest)}")
    return diffs
