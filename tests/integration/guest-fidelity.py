#!/usr/bin/env python3
"""Everything a file system holds survives every restore path.

A booted guest builds a torture tree (tests/guest/fstree.c `make`) on an
ext4 disk with EA inodes and project ids: contents, owners, setuid bits,
holes, written zeros, preallocated ranges (inside and past the size),
extended attributes of every namespace (binary, empty, 64 KiB values,
security.capability and security.selinux) on files, folders and symlinks,
POSIX ACLs (access and default, one inherited), names and link targets
that are not UTF-8, a path longer than PATH_MAX, times before 1970 with
fractions and after 2262, inode flags (i a d A S P) and project ids,
fifos, a socket, device nodes, hard links across folders (one group
immutable), empty folders.  It describes the tree field by field (`fstree
dump`), backs it up, and restores it every way: `restore --into` (sparse
and --no-sparse), in place after deleting it, and on the host with
`vbackupctl restore-files` (user. and ACLs by default, then --xattrs=all),
described there by the same tool built for the host.  The descriptions
agree but for the differences docs/fidelity.md documents.

What cannot be done is said and exits 3: a restore onto the guest's tmpfs
(no user. attributes or project ids on 6.1's tmpfs) names each path and
reason; a backup of a path longer than 65535 bytes names it, and the
snapshot says it is incomplete (index.json, `vbackupctl show`, `vbackup
list`)."""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from guestlib import (Daemon, artifacts, boot, check, fail, log, mount, umount,  # noqa
                      workdir, run, VBACKUPCTL)
from fidelity import compare, parse  # noqa: E402

FSTREE_HOST = os.environ.get("FSTREE_HOST") or os.path.join(
    os.environ.get("VB_BUILDDIR", "build"), "tests/fstree")

SCRIPT = r"""
mkdir -p /data /out
mount -o noatime /dev/vda /data
mount /dev/vdb /out
step() { rc=0; "$@" > /out/$name.out 2> /out/$name.err || rc=$?; echo $rc > /out/$name.rc; }

fstree make /data/t
fstree dump /data/t > /out/orig.dump
name=backup step vbackup backup /data/t --to archive --mode full
name=r-sparse step vbackup restore /data/t --from archive --into /data/r-sparse
fstree dump /data/r-sparse/data/t > /out/r-sparse.dump || true
name=r-exact step vbackup restore /data/t --from archive --into /data/r-exact --no-sparse
fstree dump /data/r-exact/data/t > /out/r-exact.dump || true
fstree rm /data/t
name=inplace step vbackup restore /data/t --from archive
fstree dump /data/t > /out/inplace.dump || true

# what cannot be restored: tmpfs of 6.1 keeps no user. attributes, no project ids
mkdir -p /tmp/x
name=tmpfs step vbackup restore /data/t --from archive --into /tmp/x

# what cannot be backed up: a path longer than 65535 bytes
fstree deep /data/u 66000
name=deep step vbackup backup /data/u --to archive --mode full
name=list step vbackup list --from archive
umount /out
umount /data
"""


def host_projects(w):
    """Can this host mount an ext4 with project ids (a kernel with CONFIG_QUOTA)?"""
    img = w.p("probe.raw")
    run("truncate", "-s", "64M", img)
    run("mkfs.ext4", "-q", "-F", "-O", "project", img)
    mnt = w.p("probe")
    os.makedirs(mnt)
    ok = subprocess.run(["mount", "-o", "loop", img, mnt], capture_output=True).returncode == 0
    if ok:
        run("umount", mnt)
    return ok


def torture_has_everything(orig):
    """The original tree holds what the test is about (so that equal dumps mean
    something): flags, project ids, attributes, ACLs, layouts, names, times."""
    f = lambda name: orig[name]                                     # noqa: E731
    want = {
        "immutable flag": int(f(b"flag-i")["flags"], 16) & 0x10,
        "append-only folder": int(f(b"adir")["flags"], 16) & 0x20,
        "d A S flags": int(f(b"flag-dAS")["flags"], 16) & 0xc8 == 0xc8,
        "project id": f(b"projid")["projid"] == "77",
        "inherited project id": f(b"proj-dir/inherits")["projid"] == "42",
        "security.capability": "security.capability" in f(b"xattrs")["xattrs"],
        "a 64 KiB value": len(f(b"xattrs")["xattrs"].get("user.large", "")) == 2 * 65536,
        "attributes on a symlink": "trusted.l" in f(b"xlink")["xattrs"],
        "an ACL": "system.posix_acl_access" in f(b"acl-file")["xattrs"],
        "an inherited ACL": "system.posix_acl_access" in f(b"acl-dir/inherited")["xattrs"],
        "a default ACL": "system.posix_acl_default" in f(b"acl-dir")["xattrs"],
        "unwritten past the size": "U:16384:" in f(b"prealloc-eof")["map"],
        "written zeros": f(b"zeros")["map"].startswith("Z:0:262144"),
        "holes": f(b"sparse")["map"] == "D:0:65536,D:4194304:65536",
        "a name that is not UTF-8": b"\xff\xfe-not-utf8" in orig,
        "a path longer than PATH_MAX": any(len(p) > 4096 for p in orig),
        "after 2262": f(b"time-2300")["mtime"] == "10413792000.500000000",
        "before 1970 with a fraction": f(b"time-1960")["mtime"] == "-315619200.123456789",
        "a socket": f(b"sock")["type"] == "14",
        "a device number past 255": f(b"big-dev")["rdev"] == "259:65541",
        "a hard-link group across folders": f(b"links/a")["ino"] == f(b"other/b")["ino"],
    }
    missing = [k for k, v in want.items() if not v]
    check(not missing, f"the torture tree lacks: {missing}")


def differ(what, orig, rest, **kw):
    diffs = compare(orig, rest, **kw)
    if diffs:
        for x in diffs[:60]:
            print("  " + x)
        fail(f"{what}: {len(diffs)} differences beyond the documented ones")
    log(f"ok: {what}: {len(orig)} entries equal field by field")


with workdir() as w:
    env = artifacts()
    fstree = env["FSTREE"]
    data = w.p("data.raw")
    run("truncate", "-s", "768M", data)
    # EA inodes: 64 KiB values; project quotas: project ids
    run("mkfs.ext4", "-q", "-F", "-b", "4096", "-I", "256", "-O", "ea_inode,project", data)
    out = w.p("out.raw")
    run("truncate", "-s", "64M", out)
    run("mkfs.ext4", "-q", "-F", out)
    d = Daemon(w, {"guest1": {"data0": data}}, batch_seconds=0.5).start()
    boot(w, SCRIPT, [(data, "data0", "raw"), (out, "out0", "raw")], d.sock("guest1"),
         name="fidelity", extra=["--add", f"{fstree}:/bin/fstree"], timeout=1500)

    o = mount(w, out)
    rd = lambda n: open(os.path.join(o, n), errors="surrogateescape").read()   # noqa: E731
    rc = lambda n: int(rd(f"{n}.rc"))                                          # noqa: E731
    def ok_step(step):
        if rc(step) != 0:
            print(rd(f"{step}.err")[-4000:])
            fail(f"{step}: exit status {rc(step)}, expected 0 (nothing was left out)")

    orig = parse(rd("orig.dump"))
    check(len(orig) > 60, f"the torture tree has {len(orig)} entries")
    torture_has_everything(orig)
    ok_step("backup")
    snap = rd("backup.out").strip().splitlines()[-1]
    # each restore: the differences first (what a restore lost), then its status
    for step, what, sparse in (("r-sparse", "guest restore --into (sparse)", True),
                               ("r-exact", "guest restore --into --no-sparse", False),
                               ("inplace", "guest restore in place", True)):
        differ(what, orig, parse(rd(f"{step}.dump")), sparse=sparse)
        ok_step(step)

    # tmpfs: every entry that cannot be restored is named with its reason; exit 3
    err = rd("tmpfs.err")
    check(rc("tmpfs") == 3, f"restore onto tmpfs: exit {rc('tmpfs')}, expected 3:\n{err[-3000:]}")
    check("/tmp/x/data/t/xattrs: setting an extended attribute user." in err and
          "/tmp/x/data/t/projid: " in err and "project id" in err and
          "restore incomplete" in err, f"restore onto tmpfs does not name the problems:\n{err}")

    # a path too long for the protocol: named, exit 3, the snapshot says so
    err = rd("deep.err")
    check(rc("deep") == 3 and "path longer than 65535 bytes; not backed up" in err and
          "backup incomplete" in err, f"backup of a too deep tree: {rc('deep')}\n{err[-3000:]}")
    deep_snap = rd("deep.out").strip().splitlines()[-1]
    show = json.loads(subprocess.run([VBACKUPCTL, "--repo", d.targets["archive"], "show",
                                      deep_snap], capture_output=True, text=True,
                                     check=True).stdout)
    inc = show.get("incomplete", {})
    check(inc.get("problems") == 1 and "longer than 65535" in inc["listed"][0]["reason"] and
          inc["listed"][0]["path"].startswith("data/u/ddd"), f"index.json: {inc}")
    lst = rd("list.out")
    check(any(deep_snap in l and "(incomplete)" in l for l in lst.splitlines()) and
          not any(snap in l and "(incomplete)" in l for l in lst.splitlines()),
          f"vbackup list:\n{lst}")
    check("incomplete" not in json.loads(subprocess.run(
        [VBACKUPCTL, "--repo", d.targets["archive"], "show", snap], capture_output=True,
        text=True, check=True).stdout), "the complete snapshot says it is incomplete")
    umount(w, o)

    # ---- the host: ls, restore-files ----------------------------------------------------
    ls = subprocess.run([VBACKUPCTL, "--repo", d.targets["archive"], "ls", snap],
                        capture_output=True, text=True, check=True).stdout
    for want in ("/data/t/\\377\\376-not-utf8", "1960-01-01T00:00:00.123456789Z /data/t/time-1960",
                 "2300-01-01T00:00:00.500000000Z /data/t/time-2300",
                 "/data/t/bad-target -> \\303(\\ target\\ not\\ utf-8"):
        check(want in ls, f"vbackupctl ls lacks {want!r}")
    projects = host_projects(w)
    himg = w.p("host.raw")
    run("truncate", "-s", "512M", himg)
    run("mkfs.ext4", "-q", "-F", "-b", "4096", "-I", "256", "-O",
        "ea_inode" + (",project" if projects else ""), himg)
    hm = w.p("host")
    os.makedirs(hm)
    run("mount", "-o", "loop,noatime", himg, hm)
    w.mounts.append(hm)
    projid_paths = sorted(p for p, f in orig.items() if f.get("projid", "0") != "0")
    for name, opts, drop in (("h-user", [], ("security.", "trusted.")),
                             ("h-all", ["--xattrs=all"], ())):
        r = subprocess.run([VBACKUPCTL, "--repo", d.targets["archive"], "--quiet",
                            "restore-files", snap, "--to", os.path.join(hm, name),
                            "--same-owner", "--devices"] + opts,
                           capture_output=True, text=True, errors="surrogateescape")
        if projects:
            check(r.returncode == 0, f"restore-files {opts}: {r.returncode}\n{r.stderr[-3000:]}")
        else:
            # a host kernel without quota support has no project ids: each such
            # entry is named, the rest restored, exit 3
            failed = sorted(l.split(": ")[1] for l in r.stderr.splitlines()
                            if "project id" in l)
            check(r.returncode == 3 and len(failed) == len(projid_paths) and
                  len([l for l in r.stderr.splitlines() if "restore-files: /" in l]) ==
                  len(projid_paths), f"restore-files {opts} on a host without project "
                  f"quotas: {r.returncode}\n{r.stderr[-3000:]}")
        dump = subprocess.run([FSTREE_HOST, "dump", os.path.join(hm, name, "data/t")],
                              capture_output=True, check=True).stdout.decode("ascii")
        differ(f"host restore-files {' '.join(opts) or '(user. and ACLs)'}", orig, parse(dump),
               sparse=True, drop_xattrs=drop, no_projid=not projects)
        if drop:
            check(any(k.startswith("security.") for f in orig.values() for k in f["xattrs"]),
                  "the tree has no security. attributes to leave out")
    run(FSTREE_HOST, "unflag", hm)
    check(d.stop() == 0, "vbackupd exit")
