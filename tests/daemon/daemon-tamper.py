#!/usr/bin/env python3
"""vbackupd and a tampered repository: clear errors, no crash, nothing
written outside it.
1. A snapshot's index.json whose "roots" is not a list (or holds numbers):
   a guest's LIST still answers (the old daemon aborted in json-c's assert).
2. The catalog of a files snapshot replaced by a symlink to a copy of it: a
   guest's restore fails with a clear status, `vbackupctl ls` names the
   symlink; the daemon keeps serving.
3. snapshots/VM replaced by a symlink to a folder outside: the VM's backup
   waits with a reason that names the target (not the host path), the log
   names the symlink, nothing is written into the folder outside, and the
   job completes once the folder is back.
The daemon serves on, and exits cleanly."""
import json
import os
import shutil
import struct
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vbproto as vp  # noqa: E402
from daemonlib import (Daemon, VBACKUPCTL, backup, check, log, make_ext4, map_image,  # noqa
                       random_files, wait_for, workdir)

with workdir() as w:
    tree = w.p("tree")
    random_files(tree + "/data", 2, 1 << 20)
    disk = make_ext4(w.p("d0.raw"), tree, size="32M")
    d = Daemon(w, {"vm1": {"d0": disk}}, batch_seconds=0.1).start()
    repo = d.targets["archive"]
    c = d.conn("vm1")
    recs, fb = map_image(w, disk, ["data"])
    snap = backup(c, "archive", ["d0"], ["data"], recs, fb)["snapshot"]
    sdir = os.path.join(repo, "snapshots", snap)

    # ---- 1. roots of the wrong type ---------------------------------------------------
    index = os.path.join(sdir, "index.json")
    good = open(index).read()
    for roots in ("data", 7, {"a": 1}, ["data", 7, None]):
        m = json.loads(good)
        m["roots"] = roots
        open(index, "w").write(json.dumps(m))
        total, snaps = c.list("archive")
        check(d.alive(), f"vbackupd died on LIST with roots = {roots!r}")
        check(total == 1 and snaps[0]["id"] == snap, f"LIST with roots = {roots!r}: {snaps}")
        want = ["data"] if isinstance(roots, list) else []
        check(snaps[0]["roots"] == want, f"LIST roots {snaps[0]['roots']} for {roots!r}")
    open(index, "w").write(good)
    log("LIST: roots of the wrong type are skipped, the daemon stays up")

    # ---- 2. the catalog is a symlink -------------------------------------------------
    cat = os.path.join(sdir, "files.cat")
    shutil.copy(cat, w.p("files.cat.copy"))
    os.rename(cat, w.p("files.cat.good"))
    os.symlink(w.p("files.cat.copy"), cat)
    p = struct.pack("<HHHH", 7, len(snap), 0, 0) + b"archive" + snap.encode()
    st, body = c.call("RESTORE_BEGIN", p, check=False)
    check(st == vp.S["IO"], f"restore through a symlinked catalog: {vp.SNAME.get(st)} {body!r}")
    r = subprocess.run([VBACKUPCTL, "--repo", repo, "ls", snap], capture_output=True, text=True)
    check(r.returncode == 1 and "a symlink" in r.stderr, f"ls of a symlinked catalog: {r}")
    os.unlink(cat)
    os.rename(w.p("files.cat.good"), cat)
    check(d.alive(), "vbackupd died")
    log("a symlinked catalog is refused: restore and ls")

    # ---- 3. snapshots/vm1 is a symlink ----------------------------------------------
    vmdir = os.path.join(repo, "snapshots", "vm1")
    outside = w.p("outside")
    os.mkdir(outside)
    os.rename(vmdir, w.p("vm1.good"))
    os.symlink(outside, vmdir)
    job = backup(c, "archive", ["d0"], ["data"], recs, fb, wait=False)
    # the job waits for a repository it can use (as for one whose lock is gone)
    st = wait_for(lambda: [x for x in c.status(job) if x["state"] == "deferred" and
                           "a symlink" in d.log_text()], "the job to wait, the log to say why")[0]
    check("archive" in st["reason"] and repo not in st["reason"], f"deferred: {st}")
    check(os.listdir(outside) == [], f"written outside the repository: {os.listdir(outside)}")
    os.unlink(vmdir)
    os.rename(w.p("vm1.good"), vmdir)
    st = c.wait_job(job)
    check(st["state"] == "done", f"the job once the repository is whole: {st}")
    check(os.listdir(outside) == [], f"written outside the repository: {os.listdir(outside)}")
    log("a symlinked VM folder: the job waits, nothing written outside; done once repaired")

    r = subprocess.run([VBACKUPCTL, "--repo", repo, "verify"], capture_output=True, text=True)
    check(r.returncode == 0, f"verify: {r.stdout}{r.stderr}")
    check(d.stop() == 0, "vbackupd did not exit cleanly")
    log("ok: a tampered repository gives clear errors; vbackupd never aborts or writes outside")
