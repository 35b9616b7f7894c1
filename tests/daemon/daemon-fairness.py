#!/usr/bin/env python3
"""One VM cannot stop another's backups by the size of its requests.

VM "flood" sends the largest requests the limits allow, all at once, from
three connections:
  * a job whose one file has 300,000 separate extents, sealed (a plan of
    300,000 windows; planning must not grow faster than its size, nor run
    on the main loop);
  * RESTORE_BEGIN "latest" for a path none of its 101 snapshots holds, and
    LIST, over and over (each snapshot's catalog holds 30,000 entries:
    neither may re-read the catalogs);
  * FILES messages of 32,000 extents each, job after job.
Meanwhile VM "calm" says HELLO and makes a backup.  Its time is compared
with the same round measured before the flood, in the same test: it may be
slower (the machine is shared), but not by more than 20 times; the flood
goes on until calm is done.  LIST and "latest" give the right answers from
the daemon's index, also after snapshots were added and pruned behind its
back (by hand and by vbackupctl)."""
import json
import os
import shutil
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vbproto as vp  # noqa: E402
from daemonlib import (Daemon, backup, check, fail, log, make_ext4, map_image, random_files,  # noqa
                       wait_released, workdir, VBACKUPCTL)

ROOTS = ["data"]
N_EXTENTS = 300_000
N_CLONES = 100


def unfrozen_begin(c, serial):
    p = vp.begin_payload("archive", [serial], ROOTS, vp.KIND_FILES, "full")
    p = p[:8] + (1).to_bytes(4, "little") + p[12:]
    return c.begin("archive", [serial], ROOTS, raw=p)[0]


def calm_round(d, recs, fb, patience=60):
    """Seconds for calm's HELLO and backup; fails when calm waits for one
    answer longer than patience seconds (a safety net, not a measure)."""
    t0 = time.monotonic()
    c = vp.Conn(d.sock("calm"), timeout=patience)
    try:
        check(c.hello()["vm"] == "calm", "HELLO of calm")
        backup(c, "archive", ["c0"], ROOTS, recs, fb)
    except TimeoutError:
        fail(f"calm waited {patience:.0f} s for an answer while the other VM flooded")
    c.close()
    return time.monotonic() - t0


with workdir() as w:
    tree = w.p("tree")
    random_files(tree + "/data", 1, 1 << 20)
    calm_disk = make_ext4(w.p("calm.raw"), tree, size="32M")
    calm_recs, calm_fb = map_image(w, calm_disk, ROOTS)
    flood_disk = w.p("flood.raw")
    open(flood_disk, "wb").truncate(64 << 20)
    d = Daemon(w, {"calm": {"c0": calm_disk}, "flood": {"f0": flood_disk}},
               batch_seconds=0.2).start()
    repo = d.targets["archive"]

    # flood's snapshots: one with a catalog of 30,000 entries, then 100 copies of it
    c = d.conn("flood")
    job = unfrozen_begin(c, "f0")
    recs = [vp.record("data", "dir")] + [vp.record(f"data/e{i:05d}", "reg", size=0)
                                         for i in range(30_000)]
    vp.send_records(c, job, recs)
    c.seal(job)
    first = c.wait_job(job)["snapshot"]
    src = os.path.join(repo, "snapshots", first)
    index = json.load(open(os.path.join(src, "index.json")))
    for k in range(N_CLONES):
        sid = f"{first}-{k + 2}"
        dst = os.path.join(repo, "snapshots", sid)
        os.mkdir(dst)
        os.link(os.path.join(src, "files.cat"), os.path.join(dst, "files.cat"))
        index.update(id=sid, created_ns=index["created_ns"] + k + 1)
        json.dump(index, open(os.path.join(dst, "index.json"), "w"))
    total, snaps = c.list("archive")
    check(total == N_CLONES + 1 and snaps[0]["id"] == f"{first}-{N_CLONES + 1}",
          f"LIST after snapshots were added behind the daemon's back: {total}, "
          f"{snaps[0]['id'] if snaps else None}")
    rj, _, _, latest = c.restore_begin("archive", "latest", ["data/e00007"])
    c.restore_end(rj)
    check(latest == f"{first}-{N_CLONES + 1}", f"latest: {latest}")

    # the calm VM's round without any load, twice (the first warms caches)
    calm_round(d, calm_recs, calm_fb)
    base = calm_round(d, calm_recs, calm_fb)
    log(f"calm's HELLO and backup alone: {base:.2f} s")

    # ---- the flood ---------------------------------------------------------------
    stop = threading.Event()
    counts = {"latest": 0, "list": 0, "files": 0}
    errors = []

    def lookups():
        try:
            cc = vp.Conn(d.sock("flood"), timeout=600)
            missing = struct.pack("<HHHH", 7, 6, 1, 0) + b"archive" + b"latest" + \
                vp.s16("nothere/x")
            while not stop.is_set():
                st, body = cc.call("RESTORE_BEGIN", missing, check=False)
                check(st == vp.S["NOT_FOUND"], f"latest for a missing path: {st} {body!r}")
                counts["latest"] += 1
                cc.list("archive")
                counts["list"] += 1
        except BaseException as e:      # noqa: B902 - reported below
            errors.append(f"lookups: {e!r}")

    def extents():
        try:
            cc = vp.Conn(d.sock("flood"), timeout=600)
            while not stop.is_set():
                job = unfrozen_begin(cc, "f0")
                cc.files(job, [vp.record("data", "dir")])
                base_l, st = 0, 0
                while not stop.is_set() and not st:
                    recs = []
                    for _ in range(4):
                        recs.append(vp.record("data/x", "reg", data=vp.FD_EXTENTS if base_l == 0
                                              else vp.FD_MORE, size=1 << 60,
                                              extents=[(base_l + k * 2, k, 1, 0, 0)
                                                       for k in range(8000)]))
                        base_l += 16000
                    st, _ = cc.files(job, recs, check=False)   # at the job's extent limit:
                    counts["files"] += 1                        # refused, and a new job
                if not st:
                    cc.cancel(job)
        except BaseException as e:      # noqa: B902
            errors.append(f"extents: {e!r}")

    # the big plan: 300,000 extents of 4 KiB with gaps between them
    fc = vp.Conn(d.sock("flood"), timeout=600)
    big = unfrozen_begin(fc, "f0")
    ext = [(k * 8192, (k * 4096) % (60 << 20), 4096, 0, 0) for k in range(N_EXTENTS)]
    recs = [vp.record("data", "dir"),
            vp.record("data/big", "reg", data=vp.FD_EXTENTS, size=N_EXTENTS * 8192,
                      extents=ext[:8192])]
    for k in range(8192, N_EXTENTS, 8192):
        recs.append(vp.record("data/big", "reg", data=vp.FD_MORE, extents=ext[k:k + 8192]))
    vp.send_records(fc, big, recs)
    threads = [threading.Thread(target=lookups, daemon=True),
               threading.Thread(target=extents, daemon=True)]
    for t in threads:
        t.start()
    fc.seal(big)
    loaded = calm_round(d, calm_recs, calm_fb, patience=max(60, 40 * base))
    flood_busy = [t.is_alive() for t in threads]
    big_state = fc.status(big)[0]
    stop.set()
    log(f"calm's HELLO and backup during the flood: {loaded:.2f} s ({loaded / base:.1f} times); "
        f"meanwhile flood's big job is {big_state['state']}, and it sent {counts}")
    check(not errors, f"flood: {errors}")
    check(all(flood_busy), "the flood stopped before calm was done")
    check(loaded < 20 * base, f"calm's round took {loaded:.1f} s during the flood, "
          f"{loaded / base:.0f} times its {base:.2f} s alone")
    for t in threads:
        t.join(120)
    if big_state["state"] not in ("done", "failed", "cancelled"):
        fc.cancel(big)
    st = fc.wait_job(big, timeout=300)
    log(f"flood's big job: {st['state']} {st['reason']}")

    # the index follows prunes made behind the daemon's back
    r = subprocess.run([VBACKUPCTL, "--repo", repo, "prune", "--keep-last", "40", "--vm", "flood"],
                       capture_output=True, text=True)
    check(r.returncode == 0, f"prune: {r.stderr}")
    total, snaps = c.list("archive")
    check(total == 40, f"LIST after a prune by vbackupctl: {total} snapshots")
    shutil.rmtree(os.path.join(repo, "snapshots", snaps[0]["id"]))
    total, snaps2 = c.list("archive")
    check(total == 39 and snaps2[0]["id"] == snaps[1]["id"],
          f"LIST after a snapshot was removed by hand: {total}")
    rj, _, _, latest = c.restore_begin("archive", "latest", ["data/e00007"])
    c.restore_end(rj)
    check(latest == snaps[1]["id"], f"latest after the prune: {latest}")
    wait_released(d, "flood", "the flood's jobs")
    check(d.stop() == 0, "vbackupd exit status")
    log("ok: the calm VM was served while the other flooded; LIST and latest use the index")
