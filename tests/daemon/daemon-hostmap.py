#!/usr/bin/env python3
"""vbackupd maps a job's files itself (docs/freeze.md), through its real
socket, with a stand-in for QEMU's monitor (tests/daemon/fakeqmp.py) and
the real vbackup-mapper in its sandbox:

HELLO offers VB_FEAT_HOST_MAPS only to a VM whose view vbackupd can take;
a BEGIN asking the host to map gets it, and then the guest's FILES and DATA
are refused; SEAL takes the view, the job is MAPPING, then done; the
restored trees equal the disk's (a partitioned disk, inline and fallback
data, a hard link, holes); an incremental backup reuses what did not change.
A VM without a view gets no host map and walks as always.  Bad map
sections are refused at BEGIN.  A mapper that fails (a journal that holds
changes), whose records vbackupd refuses with the checks a guest's get (an
extent past the disk), or that outlives mapper_seconds fails the job with
the reason and VB_JOB_FLAG_MAP_FAILED.  With max_mappers=1 two jobs map one
after the other."""
import os
import re
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "../integration"))
import vbproto as vp  # noqa: E402
from daemonlib import (Daemon, check, fail, log, make_tree, mount, same_trees, umount,  # noqa
                       workdir, restore, run, wait_for)
from fakeqmp import FakeQmp  # noqa: E402
from guestlib import partitioned_ext4  # noqa: E402

if os.geteuid() != 0:
    print("daemon-hostmap: skipped: needs root (loop mounts, the mapper's sandbox)")
    sys.exit(77)

START = 1 << 20                  # partitioned_ext4: partition 1 at 1 MiB


def host_map_job(c, roots, inside, mode="full", serials=("data0",), fss=((0, START),),
                 prune=(), exclude=()):
    p = vp.begin_host_map("archive", list(serials), roots, list(fss),
                          [(0, x) for x in inside], prune, exclude, mode)
    return c.begin("archive", list(serials), roots, raw=p)


def hostmap_backup(c, roots, inside, mode="full", **kw):
    job, feat = host_map_job(c, roots, inside, mode, **kw)
    check(feat & vp.FEAT_HOST_MAPS, f"BEGIN did not answer that the host maps: {feat:#x}")
    view = c.seal(job)
    check(view == vp.VIEW_SNAPSHOT, f"SEAL answered view {view}")
    return job, c.wait_job(job)


with workdir() as w:
    tree = w.p("tree")
    make_tree(tree)
    os.makedirs(tree + "/srv/deep/a/b")
    with open(tree + "/srv/deep/a/b/small", "w") as f:
        f.write("small\n")
    disk = w.p("disk.raw")
    partitioned_ext4(disk, tree, 768)
    # a second disk whose journal holds changes, a third whose file's extent lies past it
    bad = w.p("bad.raw")
    run("truncate", "-s", "64M", bad)
    run("mkfs.ext4", "-q", "-F", "-O", "^metadata_csum", "-d", tree + "/etc", bad)
    run("debugfs", "-w", "-R", "feature needs_recovery", bad, capture_output=True)
    past = w.p("past.raw")
    run("truncate", "-s", "64M", past)
    run("mkfs.ext4", "-q", "-F", "-b", "4096", "-O", "^metadata_csum", "-d", tree + "/srv/deep",
        past)
    ino = int(re.search(r"Inode: (\d+)", subprocess.run(
        ["debugfs", "-R", "stat /a/b/small", past], capture_output=True, text=True).stdout)[1])
    imap = subprocess.run(["debugfs", "-R", f"imap <{ino}>", past], capture_output=True,
                          text=True).stdout
    m = re.search(r"block (\d+), offset (0x[0-9a-f]+)", imap)
    with open(past, "r+b") as f:
        # the first extent's start: 2^40 blocks out (ee_start_hi)
        f.seek(int(m[1]) * 4096 + int(m[2], 16) + 40 + 12 + 6)
        f.write(struct.pack("<H", 0x100))

    run("cp", "--sparse=always", disk, w.p("disk2.raw"))
    q1 = FakeQmp(w.p("vm1.qmp"), {"drive0": disk})
    q3 = FakeQmp(w.p("vm3.qmp"), {"drive0": bad, "drive1": past})
    run("cp", "--sparse=always", disk, w.p("disk4.raw"))
    q4 = FakeQmp(w.p("vm4.qmp"), {"drive0": w.p("disk4.raw")})
    d = Daemon(w, {"vm1": {"data0": disk}, "vm2": {"data0": w.p("disk2.raw")},
                   "vm3": {"bad0": bad, "past0": past}, "vm4": {"data0": w.p("disk4.raw")}},
               qmp={"vm1": q1.path, "vm3": q3.path, "vm4": q4.path}, batch_seconds=0.2,
               extra={"max_mappers": 1}).start()
    # the sandbox check runs at start (and says so), before the VMs are answered
    wait_for(lambda: "the host maps files of ext2/3/4 file systems" in d.log_text() or
             "the host does not map files" in d.log_text(), "vbackupd's sandbox check")
    check("the host maps files of ext2/3/4 file systems" in d.log_text(),
          f"vbackupd does not say it maps:\n{d.log_text()}")

    c1, c2, c3 = d.conn("vm1"), d.conn("vm2"), d.conn("vm3")
    check(c1.hello()["features"] == vp.FEAT_SNAPSHOT_VIEW | vp.FEAT_HOST_MAPS, "HELLO vm1")
    check(c2.hello()["features"] == 0, "HELLO of a VM without a view offers no host map")

    # ---- a full backup the host maps
    job, feat = host_map_job(c1, ["etc", "srv"], ["etc", "srv"])
    check(feat & vp.FEAT_HOST_MAPS, f"features {feat:#x}")
    st, msg = c1.call("BACKUP_FILES", vp.files_payload(job, [vp.record("etc", "dir")]),
                      check=False)
    check(st == vp.S["BAD_STATE"] and b"the host maps" in msg, f"FILES: {st} {msg}")
    st, msg = c1.call("BACKUP_DATA", struct.pack("<QQQII", job, 0, 0, 1, 1) + b"x", check=False)
    check(st == vp.S["BAD_STATE"], f"DATA: {st} {msg}")
    check(c1.seal(job) == vp.VIEW_SNAPSHOT, "SEAL view")
    st = c1.wait_job(job)
    check(st["state"] == "done", f"host-mapped job: {st}")
    check("transaction" in q1.commands and "block-commit" in q1.commands,
          f"the view was not taken and committed: {q1.commands}")
    info = d.ctl_json("job", str(job))
    notes = " | ".join(info.get("plan", []))
    check("map: the host maps the files in its view" in notes and
          re.search(r"map: the host mapped \d+ entries", notes), f"plan: {notes}")
    src = mount(w, disk, offset=START)
    out = w.p("out-full")
    restore(c1, "archive", st["snapshot"], out)
    n = same_trees(os.path.join(src, "etc"), os.path.join(out, "etc"), "host map: etc")
    n += same_trees(os.path.join(src, "srv"), os.path.join(out, "srv"), "host map: srv")
    umount(w, src)
    log(f"ok: a full backup the host mapped: {st['files_total']} entries, the restored "
        f"trees equal the disk's ({n} entries)")

    # ---- an incremental one after changes
    mnt = mount(w, disk, offset=START, ro=False)
    with open(mnt + "/srv/text.txt", "a") as f:
        f.write("one more line\n")
    os.unlink(mnt + "/etc/hosts")
    with open(mnt + "/srv/new.bin", "wb") as f:
        f.write(os.urandom(100000))
    umount(w, mnt)
    job, st = hostmap_backup(c1, ["etc", "srv"], ["etc", "srv"], mode="incremental")
    check(st["state"] == "done" and st["bytes_reused"] > 3 << 20, f"incremental: {st}")
    src = mount(w, disk, offset=START)
    out = w.p("out-incr")
    restore(c1, "archive", st["snapshot"], out)
    same_trees(os.path.join(src, "srv"), os.path.join(out, "srv"), "host map incremental")
    check(not os.path.exists(os.path.join(out, "etc/hosts")), "a deleted file came back")
    umount(w, src)
    log(f"ok: an incremental backup the host mapped reused {st['bytes_reused']} bytes")

    # ---- the root of the file system, exclusions and a mount point
    job, st = hostmap_backup(c1, [""], [""], prune=["srv/deep"], exclude=["*.bin"])
    check(st["state"] == "done", f"root backup: {st}")
    out = w.p("out-root")
    restore(c1, "archive", st["snapshot"], out)
    check(os.path.isdir(out + "/srv/deep") and not os.listdir(out + "/srv/deep"),
          "the mount point is not an empty folder")
    check(not os.path.exists(out + "/srv/random.bin") and os.path.exists(out + "/srv/text.txt"),
          "the exclusion was not applied")
    log("ok: the file system's root, an exclusion and a mount point")

    # ---- a VM without a view: no host map, the guest walks
    p = vp.begin_host_map("archive", ["data0"], ["etc"], [(0, START)], [(0, "etc")])
    job, feat = c2.begin("archive", ["data0"], ["etc"], raw=p)
    check(not feat & vp.FEAT_HOST_MAPS, f"a VM without a view was offered a host map: {feat}")
    st, msg = c2.call("BACKUP_FILES", vp.files_payload(job, [vp.record("etc", "dir")]),
                      check=False)
    check(st == 0, f"FILES of a job the guest walks: {st} {msg}")
    c2.cancel(job)
    log("ok: a VM without a view walks itself")

    # ---- bad map sections
    def bad_begin(why, payload, status="BAD_REQUEST"):
        st, msg = c1.call("BACKUP_BEGIN", payload, check=False)
        check(st == vp.S[status], f"{why}: {vp.SNAME.get(st, st)} {msg}")

    good = vp.begin_host_map("archive", ["data0"], ["etc"], [(0, START)], [(0, "etc")])
    bad_begin("a file system on disk 1 of 1", vp.begin_host_map(
        "archive", ["data0"], ["etc"], [(1, START)], [(0, "etc")]))
    bad_begin("a root on file system 3 of 1", vp.begin_host_map(
        "archive", ["data0"], ["etc"], [(0, START)], [(3, "etc")]))
    bad_begin("a '..' inside the file system", vp.begin_host_map(
        "archive", ["data0"], ["etc"], [(0, START)], [(0, "etc/../..")]), "BAD_PATH")
    bad_begin("the root as a mount point", vp.begin_host_map(
        "archive", ["data0"], ["etc"], [(0, START)], [(0, "etc")], prune=[""]), "BAD_PATH")
    bad_begin("an empty exclusion", vp.begin_host_map(
        "archive", ["data0"], ["etc"], [(0, START)], [(0, "etc")], exclude=[""]))
    bad_begin("a truncated map section", good[:-3])
    bad_begin("bytes after the map section", good + b"x")
    bad_begin("an unknown file system type", good.replace(
        struct.pack("<HBBIQ", 0, vp.FS_EXT, 0, 0, START), struct.pack("<HBBIQ", 0, 7, 0, 0,
                                                                       START)))
    bad_begin("a host map without a freeze", good[:8] + struct.pack(
        "<I", vp.BEGIN_HOST_MAP | vp.BEGIN_UNFROZEN) + good[12:])
    check(d.alive(), "vbackupd died")
    log("ok: bad map sections are refused at BEGIN")

    # ---- the mapper fails: the job fails with the reason, MAP_FAILED
    check(c3.hello()["features"] & vp.FEAT_HOST_MAPS, "vm3 HELLO")
    job, st = hostmap_backup(c3, [""], [""], serials=("bad0",), fss=((0, 0),))
    check(st["state"] == "failed" and st["map_failed"] and
          "the host could not map the files" in st["reason"] and
          "journal holds changes" in st["reason"], f"a journal with changes: {st}")
    log(f"ok: a failing mapper: {st['reason']}")
    job, st = hostmap_backup(c3, [""], [""], serials=("past0",), fss=((0, 0),))
    check(st["state"] == "failed" and st["map_failed"] and "OUT_OF_RANGE" in st["reason"] and
          "lies outside disk 'past0'" in st["reason"], f"an extent past the disk: {st}")
    log(f"ok: records refused by the checks a guest's get: {st['reason'][:160]}")
    check("commit" in " ".join(q3.commands), "the failed jobs' views were not committed back")

    # ---- two jobs (of two VMs: a disk has one view at a time), one mapper at a time
    c4 = d.conn("vm4")
    jobs = []
    for c in (c1, c4):
        job, feat = host_map_job(c, ["srv"], ["srv"], mode="full")
        jobs.append((c, job))
    for c, job in jobs:
        c.seal(job)
    for c, job in jobs:
        st = c.wait_job(job)
        check(st["state"] == "done", f"queued mapper job {job}: {st}")
    # one after the other: the second starts once the first has mapped
    lines = d.log_text().splitlines()
    at = lambda pat: min(i for i, l in enumerate(lines) if re.search(pat, l))  # noqa: E731
    first, second = sorted((at(f"job {job}: mapping the files"), job) for _, job in jobs)
    check(at(f"job {first[1]}: the host mapped") < second[0],
          "two mappers ran at once with max_mappers=1")
    check(d.stop() == 0, "vbackupd exit")
    log("ok: with max_mappers=1 two jobs mapped one after the other")

    # ---- a mapper that outlives its time bound
    slow = w.p("slow-mapper")
    with open(slow, "w") as f:
        f.write("#!/bin/sh\n"
                "case \"$*\" in *--probe*) echo \"uid 65534 65534 65534 gid 65534 65534 65534 "
                "caps 0 0 0 0\"; exit 3;; esac\n"
                "exec sleep 600\n")
    os.chmod(slow, 0o755)
    d2 = Daemon(w, {"vm1": {"data0": disk}}, qmp={"vm1": q1.path}, batch_seconds=0.2,
                extra={"mapper": slow, "mapper_seconds": 1}, name="d2").start()
    c = d2.conn("vm1")
    job, st = hostmap_backup(c, ["srv"], ["srv"])
    check(st["state"] == "failed" and st["map_failed"] and
          "the mapper took longer than 1 s" in st["reason"], f"a slow mapper: {st}")
    check(d2.stop() == 0, "vbackupd exit")
    log(f"ok: a mapper that outlives mapper_seconds: {st['reason']}")
    q1.stop()
    q3.stop()
    q4.stop()
