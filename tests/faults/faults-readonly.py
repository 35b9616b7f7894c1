#!/usr/bin/env python3
"""Read-only and broken repositories.  On a read-only mount, and on ext4
that met an error (journal aborted, remounted read-only), `snapshots`,
`show`, `ls`, `verify`, `restore-disk` and `restore-files` work and restore
byte for byte, and whatever would write fails saying why.  vbackupd with a
read-only, an erroring, a broken (not a repository) and a dead (EIO, its
file system shut down) target beside a good one: it starts, jobs to the bad
targets fail with a reason that names the target and no path, guests list
and restore from the read-only ones, and jobs to the good target succeed
meanwhile; a broken target that is fixed works again without a restart.

  before the fix: no command could open a repository on a read-only mount;
  vbackupd refused to start with a broken target; a job to a target whose
  file system turned read-only waited ("deferred") forever."""
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib as fl  # noqa: E402
from faultlib import check, ctl, ctl_ok, log, snapshots  # noqa: E402
import vbproto as vp  # noqa: E402

ROOTS = ["data"]


def fb_job(c, target, data, wait=True):
    recs = [vp.record("data", "dir", mode=0o755),
            vp.record("data/f.bin", "reg", data=vp.FD_FALLBACK, size=len(data), mode=0o600)]
    return fl.dl.backup(c, target, ["d0"], ROOTS, recs, [(1, data)], wait=wait)


def fb_content(data):
    return {"data": ("dir",), "data/f.bin": ("reg", len(data), fl.hashlib.sha256(data).hexdigest())}


with fl.dl.workdir() as w:
    ledger = fl.Ledger(w)
    disk = w.p("d0.raw")
    with open(disk, "wb") as f:
        f.write(os.urandom(8 << 20))
    disk_sha = fl.sha_file(disk)
    ro, err, dead = fl.LoopFS(w, "ro", "128M"), fl.LoopFS(w, "err", "128M"), fl.LoopFS(w, "dead", "128M")
    targets = {"good": w.p("good"), "ro": ro.mnt + "/repo", "err": err.mnt + "/repo",
               "broken": w.p("broken"), "dead": dead.mnt + "/repo"}
    d = fl.dl.Daemon(w, {"vm1": {"d0": disk}}, targets=targets, batch_seconds=0.1)
    d.start()
    c = d.conn("vm1")
    data = {}
    for t in ("ro", "err"):
        data[t] = os.urandom(3 << 20)
        st = fb_job(c, t, data[t])
        ledger.files(targets[t], st["snapshot"], fb_content(data[t]))
        j, _ = c.begin(t, ["d0"], [], kind=vp.KIND_DISK)
        c.seal(j)
        st = c.wait_job(j)
        check(st["state"] == "done", f"disk job to {t}: {st}")
        ledger.disk(targets[t], st["snapshot"], disk_sha)
    check(d.stop() == 0, "vbackupd's exit status")

    # ---- 1. the CLI on a read-only mount and on ext4 after an error ----------------------
    ro.umount()
    ro.mount("ro")
    err.fs_error()
    for t in ("ro", "err"):
        repo = targets[t]
        ids = snapshots(repo)
        check(len(ids) == 2, f"{t}: snapshots lists {ids}")
        files = [s for s in ids
                 if fl.json.loads(ctl_ok(repo, "show", s, "--json").stdout)["type"] == "files"]
        check(len(files) == 1, f"{t}: show finds {files}")
        check("/data/f.bin" in ctl_ok(repo, "ls", files[0]).stdout, f"{t}: ls")
        ledger.check(f"read-only target {t}", verify=True)   # verify, restore-disk, restore-files
        for args in (("backup-disk", "--vm", "x", "--format", "raw", disk), ("gc",),
                     ("forget", ids[0])):
            r = ctl(repo, *args)
            check(r.returncode == 1 and ("Read-only file system" in r.stderr or
                                         "read-only" in r.stderr), f"{t}: {args[0]} on a read-only "
                  f"repository: exit {r.returncode}: {r.stderr}")
        check(snapshots(repo) == ids, f"{t}: the snapshots changed")
    log("CLI: listing, verify and restores work on a read-only mount and after an ext4 error; "
        "writes fail saying so")

    # ---- 2. vbackupd: bad targets fail their own jobs, the good one serves -------------
    os.unlink(os.path.join(targets["broken"], "vbackup-repo.json"))
    d.start()
    c = d.conn("vm1")
    dead.power_cut()                                      # its file system returns EIO now
    good = os.urandom(2 << 20)
    for t, why in (("ro", "read-only"), ("broken", "unavailable"), ("dead", "")):
        try:
            fb_job(c, t, b"x" * 1000)
            fl.fail(f"a backup to target {t} was accepted")
        except vp.Error as e:
            check(t in e.message and why in e.message and w.path not in e.message,
                  f"BEGIN to target {t}: {e.message}")
    # err: its file system still says it is writable; its repository is not: a
    # disk job fails when its batch claims the repository, fallback data when
    # its first window does (the DATA request says so)
    job, _ = c.begin("err", ["d0"], [], kind=vp.KIND_DISK)
    c.seal(job)
    st = fb_job(c, "good", good)                          # meanwhile, the good one serves
    ledger.files(targets["good"], st["snapshot"], fb_content(good))
    st = c.wait_job(job, timeout=60)
    check(st["state"] == "failed" and "'err'" in st["reason"] and "read-only" in st["reason"] and
          w.path not in st["reason"], f"a disk job to the erroring target: {st}")
    try:
        fb_job(c, "err", b"y" * 1000)
        fl.fail("fallback data was taken by the erroring target")
    except vp.Error as e:
        check("'err'" in e.message and "read-only" in e.message and w.path not in e.message,
              f"DATA to the erroring target: {e.message}")
    for t in ("ro", "err"):
        total, snaps = c.list(t)
        snaps = [s for s in snaps if s["kind"] == vp.KIND_FILES]
        check(total == 2 and len(snaps) == 1, f"LIST of {t}: {snaps}")
        out = w.p(f"restored-{t}")
        fl.dl.restore(c, t, snaps[0]["id"], out)
        check(fl.tree_content(out) == fb_content(data[t]), f"restore from {t} by the guest")
    r = d.ctl("snapshots", check_rc=False)
    check(r.returncode == 1 and "broken" in r.stderr and "good" in r.stdout and
          "vm1/" in r.stdout, f"vbackupctl snapshots with a broken target:\n{r.stdout}{r.stderr}")
    fl.run(fl.VBACKUPCTL, "--repo", w.p("fixed"), "--quiet", "init", "--format", "1")
    shutil.copy(os.path.join(w.p("fixed"), "vbackup-repo.json"), targets["broken"])
    st = fb_job(c, "broken", good)
    ledger.files(targets["broken"], st["snapshot"], fb_content(good))
    check(d.stop() == 0, "vbackupd's exit status")
    dead.remount_after_cut()
    n = ledger.check("the end", repos=[targets["dead"]])
    log(f"ok: vbackupd served the good target beside read-only, erroring, broken and dead ones; "
        f"a fixed target works again; {n} snapshots verify and restore byte for byte")
