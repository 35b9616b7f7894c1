#!/usr/bin/env python3
"""A real Debian system survives a file backup: `debootstrap --variant=minbase
bookworm` with iputils-ping (tests/guest/debian-image, cached), whose
/usr/bin/ping has the file capability cap_net_raw, on the disk of a booted
guest.  The guest describes the system field by field (tests/guest/fstree.c
`dump`), backs it up, restores it into another folder and describes that;
the host restores the snapshot with `vbackupctl restore-files --xattrs=all
--same-owner --devices` and describes it with the same tool built for the
host.  The descriptions agree but for the differences docs/fidelity.md
documents (ctime, inode numbers, folders' sizes, zeros as holes); without
--xattrs=all the host leaves ping's capability out and says so."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from guestlib import (Daemon, artifacts, boot, check, fail, log, mount, umount,  # noqa
                      workdir, run, SRC, VBACKUPCTL)
from fidelity import compare, parse  # noqa: E402

FSTREE_HOST = os.environ.get("FSTREE_HOST") or os.path.join(
    os.environ.get("VB_BUILDDIR", "build"), "tests/fstree")

SCRIPT = r"""
mkdir -p /data /out
mount -o noatime /dev/vda /data
mount /dev/vdb /out
step() { rc=0; "$@" > /out/$name.out 2> /out/$name.err || rc=$?; echo $rc > /out/$name.rc; }
fstree dump /data > /out/orig.dump
name=backup step vbackup backup /data --to archive --mode full
name=restore step vbackup restore /data --from archive --into /data/r
fstree dump /data/r/data > /out/r.dump
umount /out
umount /data
"""


def differ(what, orig, rest, **kw):
    diffs = compare(orig, rest, **kw)
    if diffs:
        for x in diffs[:60]:
            print("  " + x)
        fail(f"{what}: {len(diffs)} differences beyond the documented ones")
    log(f"ok: {what}: {len(orig)} entries equal field by field")


PING_CAP = "security.capability"

with workdir() as w:
    env = artifacts()
    img = subprocess.run([os.path.join(SRC, "tests/guest/debian-image")], capture_output=True,
                         text=True)
    if img.returncode:
        fail(f"tests/guest/debian-image failed:\n{img.stderr[-3000:]}")
    image = img.stdout.strip().splitlines()[-1]
    data = w.p("debian.raw")
    run("cp", "--sparse=always", image, data)
    out = w.p("out.raw")
    run("truncate", "-s", "256M", out)
    run("mkfs.ext4", "-q", "-F", out)
    d = Daemon(w, {"deb": {"data0": data}}, batch_seconds=0.5).start()
    boot(w, SCRIPT, [(data, "data0", "raw"), (out, "out0", "raw")], d.sock("deb"),
         name="debian", extra=["--add", f"{env['FSTREE']}:/bin/fstree"], timeout=2400)

    o = mount(w, out)
    rd = lambda n: open(os.path.join(o, n), errors="surrogateescape").read()   # noqa: E731
    for step in ("backup", "restore"):
        rc = int(rd(f"{step}.rc"))
        if rc != 0:
            print(rd(f"{step}.err")[-4000:])
            fail(f"{step}: exit status {rc}, expected 0")
    snap = rd("backup.out").strip().splitlines()[-1]
    orig = parse(rd("orig.dump"))
    ping = orig.get(b"usr/bin/ping")
    check(ping and PING_CAP in ping["xattrs"], "the Debian system's ping has no capability")
    check(len(orig) > 5000, f"a Debian system of {len(orig)} entries")
    differ("Debian: guest restore --into", orig, parse(rd("r.dump")), sparse=True)
    umount(w, o)

    himg = w.p("host.raw")
    run("truncate", "-s", "2G", himg)
    run("mkfs.ext4", "-q", "-F", "-b", "4096", "-I", "256", himg)
    hm = w.p("host")
    os.makedirs(hm)
    run("mount", "-o", "loop,noatime", himg, hm)
    w.mounts.append(hm)
    for name, opts in (("all", ["--xattrs=all"]), ("user", [])):
        r = subprocess.run([VBACKUPCTL, "--repo", d.targets["archive"], "restore-files", snap,
                            "--to", os.path.join(hm, name), "--same-owner", "--devices"] + opts,
                           capture_output=True, text=True, errors="surrogateescape")
        check(r.returncode == 0, f"restore-files {opts}: {r.returncode}\n{r.stderr[-3000:]}")
        dump = parse(subprocess.run([FSTREE_HOST, "dump", os.path.join(hm, name, "data")],
                                    capture_output=True, check=True).stdout.decode("ascii"))
        if opts:
            differ("Debian: host restore-files --xattrs=all", orig, dump, sparse=True)
        else:
            differ("Debian: host restore-files (user. and ACLs)", orig, dump, sparse=True,
                   drop_xattrs=("security.", "trusted."))
            check(PING_CAP not in dump[b"usr/bin/ping"]["xattrs"] and
                  "security. and trusted. attributes of" in r.stdout,
                  f"the host restore kept ping's capability without --xattrs=all:\n{r.stdout}")
    check(d.stop() == 0, "vbackupd exit")
