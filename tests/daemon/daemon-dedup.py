#!/usr/bin/env python3
"""Dedup scope: a guest cannot learn another tenant's data from deduplication.

VMs a1 and a2 are in dedup group tenant-a, b in tenant-b, own has a group of
its own (@vm), s1 and s2 name none (the default, shared group).  Each VM's
disk holds the same file (random bytes from a printed seed) in an ext4 file
system, and the same whole-disk bytes.
1. Files, read from the disks: a1's backup stores the file; b's and own's
   store it again and are told nothing was reused (bytes_reused 0, the
   repository grows by the file); a2's (tenant-a, like a1) reuses all of it
   and stores nothing: the counter this test watches does report reuse
   within a group.  s1 then s2: reuse in the default group.
2. Whole-disk jobs: the same, b's disk reuses nothing of a1's, a2's all.
3. Every snapshot records its group in index.json (none for the default),
   `vbackupctl verify` passes, b's snapshot restores to the original bytes;
   an index.json whose dedup_group is changed to another group is caught by
   verify (its chunks are checked under the group it names).
4. b moves to tenant-a (the configuration changed, the daemon restarted):
   its next incremental cannot take unchanged files' chunks from its
   tenant-b parent (another id space): it reads them again, stores them in
   tenant-a (where a1 has them: reused), and the snapshot verifies; a
   `vbackupctl backup-disk --parent` across groups is refused naming both,
   and `--mode incremental` in a new group starts a full backup.
Fails on a daemon whose deduplication is repository-wide."""
import json
import os
import random
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vbproto as vp  # noqa: E402
from daemonlib import (TEST_FORMAT, VBACKUPCTL, Daemon, backup, check, log, make_ext4, map_image,  # noqa
                       stored, workdir)

MiB = 1 << 20
ROOTS = ["data"]
SEED = int(os.environ.get("VB_TEST_SEED", random.randrange(1 << 32)))
print(f"seed {SEED} (VB_TEST_SEED={SEED} repeats this run)", flush=True)
rng = random.Random(SEED)


def ctl(repo, *args, rc=0):
    r = subprocess.run([VBACKUPCTL, "--repo", repo, "--quiet"] + list(args),
                       capture_output=True, text=True)
    check(rc is None or r.returncode == rc,
          f"vbackupctl {' '.join(args)}: exit {r.returncode}, expected {rc}: {r.stderr}")
    return r


def index(repo, snap):
    """What the snapshot records: format 1's index.json, format 2's manifest."""
    if TEST_FORMAT == "2":
        return json.loads(ctl(repo, "show", snap, "--json").stdout)
    with open(os.path.join(repo, "snapshots", snap, "index.json")) as f:
        return json.load(f)


def files_job(d, vm, disk, mode="full"):
    recs, fb = map_image(d.w, disk, ROOTS)
    st = backup(d.conn(vm), "archive", [vm], ROOTS, recs, fb, mode=mode)
    return st


def disk_job(d, vm):
    c = d.conn(vm)
    job, _ = c.begin("archive", [vm], [], kind=vp.KIND_DISK)
    c.seal(job)
    st = c.wait_job(job)
    check(st["state"] == "done", f"disk job of {vm}: {st}")
    return st


with workdir() as w:
    tree = w.p("tree")
    os.makedirs(os.path.join(tree, "data"))
    secret = rng.randbytes(3 * MiB)
    with open(os.path.join(tree, "data/secret.bin"), "wb") as f:
        f.write(secret)
    base = make_ext4(w.p("base.raw"), tree, size="32M")
    vms = ["a1", "a2", "b", "own", "s1", "s2"]
    disks = {}
    for vm in vms:
        disks[vm] = w.p(f"{vm}.raw")
        shutil.copyfile(base, disks[vm])
    conf = {"a1": {"dedup_group": "tenant-a"}, "a2": {"dedup_group": "tenant-a"},
            "b": {"dedup_group": "tenant-b"}, "own": {"dedup_group": "@vm"}}
    d = Daemon(w, {vm: {vm: disks[vm]} for vm in vms}, vm_conf=conf,
               batch_seconds=0.1).start()
    repo = d.targets["archive"]
    size = len(secret)

    # ---- 1. files ---------------------------------------------------------------------
    snaps = {}
    for vm, expect_reuse in (("a1", False), ("b", False), ("own", False), ("a2", True),
                             ("s1", False), ("s2", True)):
        before = stored(repo)
        st = files_job(d, vm, disks[vm])
        grew = stored(repo) - before
        snaps[vm] = st["snapshot"]
        log(f"{vm}: files backup new {st['bytes_new']} reused {st['bytes_reused']}, "
            f"repository +{grew}")
        if expect_reuse:
            check(st["bytes_reused"] >= size and grew < size // 4,
                  f"{vm}: its group's copy was not reused: {st}, +{grew} bytes")
        else:
            check(st["bytes_reused"] == 0 and st["bytes_new"] >= size and grew >= size,
                  f"{vm}: another group's data was reused (a content oracle): "
                  f"reused {st['bytes_reused']}, new {st['bytes_new']}, +{grew} bytes")

    # ---- 2. whole disks -----------------------------------------------------------------
    a1d = disk_job(d, "a1")
    check(a1d["bytes_new"] > 0, f"a1's disk: {a1d}")
    bd = disk_job(d, "b")
    check(bd["bytes_reused"] == 0 and bd["bytes_new"] == a1d["bytes_new"],
          f"b's disk reused tenant-a's chunks: {bd} after {a1d}")
    a2d = disk_job(d, "a2")
    check(a2d["bytes_reused"] == a1d["bytes_new"] and a2d["bytes_new"] == 0,
          f"a2's disk did not reuse a1's (same group): {a2d}")
    snaps["b-disk"] = bd["snapshot"]
    log(f"disks: a1 new {a1d['bytes_new']}, b reused {bd['bytes_reused']}, "
        f"a2 reused {a2d['bytes_reused']}")

    # ---- 3. recorded, verified, restorable; a forged group is caught --------------------
    for vm, group in (("a1", "tenant-a"), ("b", "tenant-b"), ("own", "own"), ("s1", None)):
        got = index(repo, snaps[vm]).get("dedup_group")
        check(got == group, f"{vm}'s snapshot records dedup_group {got!r}, not {group!r}")
    ctl(repo, "verify")
    out = w.p("restore-b")
    ctl(repo, "restore-files", snaps["b"], "--to", out)
    with open(os.path.join(out, "data/secret.bin"), "rb") as f:
        check(f.read() == secret, "b's restored file differs")
    ctl(repo, "restore-disk", snaps["b-disk"], "--to", w.p("b-restored.raw"))
    check(open(w.p("b-restored.raw"), "rb").read() == open(disks["b"], "rb").read(),
          "b's restored disk differs")
    # format 1: an index.json is plain JSON, and verify checks the group in
    # it; format 2's manifests are sealed (a changed byte is damage that
    # verify names, repo-tamper)
    if TEST_FORMAT != "2":
        ip = os.path.join(repo, "snapshots", snaps["b"], "index.json")
        orig = open(ip).read()
        forged = json.loads(orig)
        forged["dedup_group"] = "tenant-a"
        open(ip, "w").write(json.dumps(forged))
        r = ctl(repo, "verify", rc=None)
        check(r.returncode != 0 and snaps["b"] in r.stdout + r.stderr,
              f"verify passed a snapshot whose dedup_group was changed: {r.stdout}{r.stderr}")
        forged["dedup_group"] = "../../etc"
        open(ip, "w").write(json.dumps(forged))
        r = ctl(repo, "verify", rc=None)
        check(r.returncode != 0 and "dedup_group" in r.stdout + r.stderr,
              f"verify and an invalid dedup_group: {r.stdout}{r.stderr}")
        open(ip, "w").write(orig)
        ctl(repo, "verify")
    log("groups recorded; verify passes, and catches a forged group; b restores")

    # ---- 4. a VM changes group ------------------------------------------------------------
    d.stop()
    text = open(d.conf).read()
    check("dedup_group=tenant-b" in text, "the test's configuration")
    open(d.conf, "w").write(text.replace("dedup_group=tenant-b", "dedup_group=tenant-a"))
    d.start()
    st = files_job(d, "b", disks["b"], mode="incremental")
    job = d.ctl_json("job", str(st["job"]))
    log(f"b in tenant-a, incremental: read {job['bytes_read']}, reused {st['bytes_reused']}")
    check(job["bytes_read"] >= size,
          f"b's incremental took its tenant-b parent's chunks instead of reading: {job}")
    check(index(repo, st["snapshot"]).get("dedup_group") == "tenant-a",
          "b's new snapshot is not recorded in tenant-a")
    st2 = files_job(d, "b", disks["b"], mode="incremental")
    job2 = d.ctl_json("job", str(st2["job"]))
    check(job2["bytes_read"] < size and st2["bytes_reused"] >= size,
          f"b's next incremental (parent in its group) did not reuse the unchanged file: {job2}")
    ctl(repo, "verify")

    img = w.p("host.raw")
    with open(img, "wb") as f:
        f.write(rng.randbytes(8 * MiB))
    r = ctl(repo, "backup-disk", "--vm", "host1", "--format", "raw", "--dedup-group", "g1", img)
    first = r.stdout.strip().splitlines()[-1]
    r = ctl(repo, "backup-disk", "--vm", "host1", "--format", "raw", "--dedup-group", "g2",
            "--parent", first, img, rc=1)
    check("'g1'" in r.stderr and "'g2'" in r.stderr,
          f"--parent across groups: the error does not name both: {r.stderr}")
    r = ctl(repo, "backup-disk", "--vm", "host1", "--format", "raw", "--dedup-group", "g2",
            "--mode", "incremental", img)
    second = r.stdout.strip().splitlines()[-1]
    check(index(repo, second).get("mode") == "full" and not index(repo, second).get("parent"),
          f"an incremental in a new group has a parent of another: {index(repo, second)}")
    r = ctl(repo, "backup-disk", "--vm", "host1", "--format", "raw", "--dedup-group", "no/pe",
            img, rc=2)
    check("not a valid dedup group" in r.stderr, f"--dedup-group no/pe: {r.stderr}")
    ctl(repo, "verify")
    d.stop()
    log("a VM that changes group reads again; backup-disk keeps groups apart")
