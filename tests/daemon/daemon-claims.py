#!/usr/bin/env python3
"""What vbackupd knows about a repository's chunks, and when gc may delete
them (docs/repository.md, "Claims and knowledge"):

1. two targets in one daemon fed the same data each get their own chunks;
2. a chunk stored by a job that was cancelled, then removed by gc, is written
   again by the next job that has the data;
3. gc started while a file job holds fallback chunks it has not committed yet
   waits for the job (the guest sends its data, then holds the seal back),
   and the snapshot verifies and restores byte for byte;
4. an incremental file backup does not reuse the parent's chunks for an
   unchanged file after a gc, unless they exist: a chunk deleted by hand is
   read and stored again;
5. fallback data that arrives while gc holds the repository waits (and the
   guest's DATA requests with it), then is stored.
Each ends with `vbackupctl verify` of the repositories."""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vbproto as vp  # noqa: E402
from daemonlib import (Daemon, backup, check, fail, log, make_ext4, map_image, mount,  # noqa
                       random_files, restore, run, same_trees, umount, workdir, VBACKUPCTL)

ROOTS = ["data"]


def ctl(*args):
    return subprocess.run([VBACKUPCTL, *args], capture_output=True, text=True)


def verify(repo, what):
    r = ctl("--repo", repo, "verify")
    check(r.returncode == 0, f"{what}: verify {repo}:\n{r.stdout}{r.stderr}")


def gc(repo):
    r = ctl("--repo", repo, "gc", "--json")
    check(r.returncode == 0, f"gc {repo}: {r.stderr}")
    return json.loads(r.stdout)


def chunk_files(repo):
    out = set()
    for dirpath, _, files in os.walk(os.path.join(repo, "chunks")):
        out.update(os.path.join(dirpath, f) for f in files if not f.startswith("."))
    return out


def fallback_job(data, name="f.bin"):
    """Records of a tree data/NAME whose content travels as fallback data."""
    recs = [vp.record("data", "dir", mode=0o755),
            vp.record(f"data/{name}", "reg", data=vp.FD_FALLBACK, size=len(data), mode=0o600,
                      mtime_ns=1_700_000_000_000_000_000)]
    return recs, [(1, data)]


def collect(c, target, recs, fb):
    """BEGIN, FILES and every DATA, without the SEAL: each DATA is answered once its
    window is stored, so the job's chunks are in the repository when this returns."""
    p = vp.begin_payload(target, ["d0"], ROOTS, vp.KIND_FILES, "full")
    p = p[:8] + (1).to_bytes(4, "little") + p[12:]          # VB_BEGIN_UNFROZEN
    job, _ = c.begin(target, ["d0"], ROOTS, raw=p)
    vp.send_records(c, job, recs)
    step = vp.MAX_PAYLOAD - 64
    for idx, data in fb:
        for off in range(0, len(data), step):
            c.data(job, idx, off, data[off:off + step], off + step >= len(data))
    return job


def restored_bytes(w, c, target, snap, name="f.bin"):
    out = w.p(f"restore-{target}-{snap.replace('/', '_')}")
    restore(c, target, snap, out)
    return open(os.path.join(out, "data", name), "rb").read()


with workdir() as w:
    disk = w.p("d0.raw")
    run("truncate", "-s", "16M", disk)                    # fallback data never reads it
    with open(disk, "r+b") as f:                          # a disk job has something to store
        f.write(os.urandom(8 << 20))
    tree = w.p("tree")
    random_files(tree + "/data", 3, 3 << 20)
    ext4 = make_ext4(w.p("d1.raw"), tree, size="64M")
    # gc runs here when the test says (the daemon's own gc after failed jobs,
    # tested in daemon-quota, would run at moments of its choosing)
    d = Daemon(w, {"vm1": {"d0": disk}, "vm2": {"d1": ext4}}, batch_seconds=0.1,
               targets={"a": w.p("repo-a"), "b": w.p("repo-b")},
               extra={"reclaim": "no"}).start()
    ra, rb = d.targets["a"], d.targets["b"]
    c = d.conn("vm1")

    # ---- 1. two targets, the same data: each target gets its own chunks -----------
    data = os.urandom(5 << 20)
    recs, fb = fallback_job(data)
    sa = backup(c, "a", ["d0"], ROOTS, recs, fb)
    sb = backup(c, "b", ["d0"], ROOTS, recs, fb)
    verify(ra, "target a")
    verify(rb, "target b, fed the same data after target a")
    check(restored_bytes(w, c, "b", sb["snapshot"]) == data, "target b restores other bytes")
    # whole-disk jobs of the daemon go through the same door
    for t in ("a", "b"):
        j, _ = c.begin(t, ["d0"], [], kind=vp.KIND_DISK)
        c.seal(j)
        st = c.wait_job(j)
        check(st["state"] == "done", f"disk job to {t}: {st}")
    verify(ra, "target a after a disk job")
    verify(rb, "target b after a disk job")
    log("two targets: each stores its own chunks of shared content")

    # ---- 2. a cancelled job's chunks, removed by gc, are written again ----------------
    data = os.urandom(5 << 20)
    recs, fb = fallback_job(data)
    before = chunk_files(ra)
    job = collect(c, "a", recs, fb)
    check(len(chunk_files(ra) - before) >= 3, "the job's fallback chunks were not stored")
    c.cancel(job)
    check(c.wait_job(job)["state"] == "cancelled", "cancel")
    g = gc(ra)
    check(g["chunks_removed"] >= 3, f"gc did not remove the cancelled job's chunks: {g}")
    st = backup(c, "a", ["d0"], ROOTS, recs, fb)
    verify(ra, "a job after gc removed a cancelled job's chunks of the same data")
    check(restored_bytes(w, c, "a", st["snapshot"]) == data, "restore after the cancelled job")
    log("cancelled job, gc, same data again: the chunks are stored again")

    # ---- 3. gc while a job holds uncommitted fallback chunks ---------------------------
    data = os.urandom(6 << 20)
    recs, fb = fallback_job(data)
    before = chunk_files(ra)
    job = collect(c, "a", recs, fb)
    check(len(chunk_files(ra) - before) >= 3, "the job's fallback chunks were not stored")
    gcp = subprocess.Popen([VBACKUPCTL, "--repo", ra, "gc", "--json"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    gc_waited = gcp.poll() is None
    c.seal(job)
    st = c.wait_job(job)
    out, err = gcp.communicate(timeout=60)
    check(gcp.returncode == 0, f"gc: {err}")
    check(st["state"] == "done", f"the job ended {st['state']}: {st['reason']}")
    verify(ra, "gc ran while a job held fallback chunks")
    check(restored_bytes(w, c, "a", st["snapshot"]) == data, "restore of the job gc ran beside")
    check(gc_waited and "waiting for the repository lock" in err,
          f"gc did not wait for the job's claim (stderr: {err!r})")
    log(f"gc waited for the job's claim, then removed {json.loads(out)['chunks_removed']} chunks; "
        "the snapshot verifies and restores")

    # ---- 4. incremental after gc: a parent's chunk deleted by hand is stored again ----
    c2 = d.conn("vm2")
    recs, fb = map_image(w, ext4, ROOTS)
    before = chunk_files(ra)
    full = backup(c2, "a", ["d1"], ROOTS, recs, fb)
    mine = sorted(chunk_files(ra) - before)
    check(len(mine) >= 3, f"the full backup stored {len(mine)} chunks")
    os.unlink(mine[0])                                    # damage, by hand
    gc(ra)
    inc = backup(c2, "a", ["d1"], ROOTS, recs, fb, mode="incremental")
    job = d.ctl_json("job", str(inc["job"]))
    check(job.get("parent") == full["snapshot"], f"incremental parent: {job.get('parent')}")
    verify(ra, "incremental after a parent's chunk was deleted and gc ran")
    check(any("read again" in n for n in job["plan"]), f"plan: {job['plan']}")
    src = mount(w, ext4)
    out = w.p("restore-inc")
    restore(c2, "a", inc["snapshot"], out)
    same_trees(src, out, "incremental restore")
    umount(w, src)
    log("incremental after gc: the missing chunk of an unchanged file was read and stored")

    # ---- 5. fallback data while gc holds the repository: it waits, then goes on --------
    data = os.urandom(5 << 20)
    recs, fb = fallback_job(data)
    lock = os.path.join(ra, "lock")
    holder = subprocess.Popen(["flock", "-x", lock, "sleep", "2"])     # what gc holds
    while subprocess.run(["flock", "-n", "-s", lock, "true"]).returncode == 0:
        time.sleep(0.02)
    t0 = time.time()
    job = collect(c, "a", recs, fb)                       # the DATA replies wait for the claim
    waited = time.time() - t0
    holder.wait()
    c.seal(job)
    st = c.wait_job(job)
    check(st["state"] == "done", f"the job that waited for gc ended {st['state']}: {st['reason']}")
    check(waited > 1.0, f"fallback data was stored while gc held the repository ({waited:.1f} s)")
    check("fallback data waits: repository a is busy" in d.log_text(), "no 'waits' in the log")
    verify(ra, "fallback data that waited for gc")
    check(restored_bytes(w, c, "a", st["snapshot"]) == data, "restore of the job that waited")
    log(f"fallback data waited {waited:.1f} s for gc, then was stored; the snapshot verifies")

    check(d.stop() == 0, "vbackupd did not exit cleanly")
    log("ok: claims and knowledge of chunks hold across jobs, targets and gc")
