#!/usr/bin/env python3
"""The short freeze (docs/freeze.md) with a booted guest: the host maps the
files of the guest's ext4 in its view, and the guest is frozen only while the
view is taken.

A guest (QEMU with QMP under TCG) backs up a folder of 1,000 files and one of
10,000 files, which the host maps, and the 10,000 again with its own walk
(--no-host-map); each freeze is measured by the guest tool and reported.
The freeze the host's mapping needs does not grow with the files: for
10,000 files it is shorter than the guest's own walk of them, in the same
run.  The torture tree of the fidelity test (tests/guest/fstree.c: every
attribute, ACL, flag, odd name, time, hole, preallocation and hard link) is
backed up with the host mapping, restored, and equal to the original field
by field (tests/integration/fidelity.py).  Then the host's mapper is made to
fail for one folder (a stand-in that exits 1 for roots naming "nomap"): the
guest tool says so, walks itself and the backup is done; the host's job
says VB_JOB_FLAG_MAP_FAILED and why."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from guestlib import (Daemon, artifacts, boot, check, fail, log, mount, umount,  # noqa
                      workdir, run)
from fidelity import compare, parse  # noqa: E402
import daemonlib  # noqa: E402

SCRIPT = r"""
mkdir -p /data /out
mount -o noatime /dev/vda /data
mount /dev/vdb /out
step() { rc=0; "$@" > /out/$name.out 2> /out/$name.err || rc=$?; echo $rc > /out/$name.rc; }

name=k1 step vbackup backup /data/k1 --to archive --mode full
name=k10 step vbackup backup /data/k10 --to archive --mode full
name=k10-walk step vbackup backup /data/k10 --to archive --mode full --no-host-map
fstree make /data/t
fstree dump /data/t > /out/orig.dump
name=t step vbackup backup /data/t --to archive --mode full
name=r step vbackup restore /data/t --from archive --into /data/r
fstree dump /data/r/data/t > /out/r.dump || true
name=nomap step vbackup backup /data/nomap --to archive --mode full
umount /out
fstree unflag /data
umount /data
"""

FAILING = """#!/usr/bin/python3
# vbackup-mapper, except for roots naming "nomap": then it fails on purpose
import os, sys
REAL = %r
if "--probe" in sys.argv:
    os.execv(REAL, [REAL] + sys.argv[1:])
spec = sys.stdin.buffer.read()
if b"nomap" in spec:
    sys.stderr.write("forced to fail by the test\\n")
    sys.exit(1)
fd = os.memfd_create("spec")
os.write(fd, spec)
os.lseek(fd, 0, 0)
os.dup2(fd, 0)
os.execv(REAL, [REAL] + sys.argv[1:])
"""


def frozen(text, what):
    m = re.search(r"file systems frozen for ([0-9.]+) s", text)
    check(m, f"{what}: no freeze reported:\n{text[-2000:]}")
    return float(m.group(1))


with workdir() as w:
    env = artifacts()
    tree = w.p("tree")
    for name, n in (("k1", 1000), ("k10", 10000)):
        os.makedirs(os.path.join(tree, name))
        for i in range(n):
            with open(os.path.join(tree, name, f"f{i:05d}"), "w") as f:
                f.write(f"file {i} of {name}\n")
    os.makedirs(os.path.join(tree, "nomap/sub"))
    with open(os.path.join(tree, "nomap/sub/file"), "wb") as f:
        f.write(os.urandom(100000))
    data = w.p("data.raw")
    run("truncate", "-s", "768M", data)
    # EA inodes: 64 KiB values; project quotas: project ids (as guest-fidelity)
    run("mkfs.ext4", "-q", "-F", "-b", "4096", "-I", "256", "-O", "ea_inode,project",
        "-E", "root_owner=0:0", "-d", tree, data)
    out = w.p("out.raw")
    run("truncate", "-s", "64M", out)
    run("mkfs.ext4", "-q", "-F", out)
    failing = w.p("failing-mapper")
    with open(failing, "w") as f:
        f.write(FAILING % daemonlib.MAPPER)
    os.chmod(failing, 0o755)
    qmp = w.p("qmp.sock")
    d = Daemon(w, {"g": {"data0": data}}, batch_seconds=0.3, qmp={"g": qmp},
               extra={"mapper": failing}).start()
    boot(w, SCRIPT, [(data, "data0", "raw"), (out, "out0", "raw")], d.sock("g"), qmp=qmp,
         name="hostmap", extra=["--add", f"{env['FSTREE']}:/bin/fstree"], timeout=1500)

    o = mount(w, out)
    rd = lambda n: open(os.path.join(o, n), errors="surrogateescape").read()   # noqa: E731

    def ok_step(step):
        rc = int(rd(f"{step}.rc"))
        if rc != 0:
            print(rd(f"{step}.out")[-2000:], rd(f"{step}.err")[-4000:])
            fail(f"{step}: exit status {rc}")
        return rd(f"{step}.out") + rd(f"{step}.err")

    # ---- the freeze
    k1, k10, walk = ok_step("k1"), ok_step("k10"), ok_step("k10-walk")
    for what, text in (("1,000 files", k1), ("10,000 files", k10)):
        check("files mapped by the host" in text, f"{what}: the host did not map:\n{text}")
    check("files mapped by the host" not in walk, f"--no-host-map: the host mapped:\n{walk}")
    f1, f10, fw = frozen(k1, "1,000"), frozen(k10, "10,000"), frozen(walk, "the guest's walk")
    log(f"frozen: 1,000 files {f1:.3f} s and 10,000 files {f10:.3f} s mapped by the host; "
        f"10,000 files walked by the guest {fw:.3f} s")
    check(f10 < fw, f"the host's mapping froze 10,000 files for {f10:.3f} s, the guest's walk "
          f"for {fw:.3f} s: the freeze still grows with the files")
    jobs = {j["id"]: j for j in d.ctl_json("jobs")}
    snap10 = k10.strip().splitlines()[-1]
    j10 = [j for j in jobs.values() if j.get("snapshot") == snap10][0]
    check(j10["files_total"] == 10001, f"the host mapped {j10['files_total']} entries")

    # ---- fidelity: everything survives a backup the host mapped
    t = ok_step("t")
    check("files mapped by the host" in t, f"the torture tree: the host did not map:\n{t}")
    ok_step("r")
    orig, rest = parse(rd("orig.dump")), parse(rd("r.dump"))
    check(len(orig) > 60, f"the torture tree has {len(orig)} entries")
    diffs = compare(orig, rest, sparse=True)
    if diffs:
        for x in diffs[:60]:
            print("  " + x)
        fail(f"the restore of what the host mapped: {len(diffs)} differences")
    log(f"ok: the torture tree ({len(orig)} entries) backed up with the host's mapping and "
        f"restored: equal field by field")

    # ---- the host cannot map: the guest walks, and says so
    nm = ok_step("nomap")
    check("the host could not map the files: forced to fail by the test; the guest walks the "
          "files itself" in nm, f"the guest does not say it walks:\n{nm}")
    check("files mapped by the host" not in nm, f"nomap: {nm}")
    failed = [j for j in d.ctl_json("jobs") if j["state"] == "failed" and
              "forced to fail by the test" in j.get("reason", "")]
    check(len(failed) == 1, f"the host's failed job: {failed}")
    c = d.conn("g")
    st = c.status(failed[0]["id"])[0]
    check(st["map_failed"], f"the failed job lacks VB_JOB_FLAG_MAP_FAILED: {st}")
    log("ok: a mapper that fails: the guest says so and walks; the backup is done")
    umount(w, o)
    check(d.stop() == 0, "vbackupd exit")
