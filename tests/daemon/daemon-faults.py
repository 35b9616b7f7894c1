#!/usr/bin/env python3
"""Faults: the guest disconnects mid-job; vbackupd is killed mid-job (the
repository still verifies, the job is reported failed after the restart,
the next backup works); the target disk fills up; SIGTERM during a job
(clean exit, nothing half-written); SIGHUP reloads the configuration (and
a broken one is refused while the daemon keeps running)."""
import os
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vbproto as vp  # noqa: E402
from daemonlib import (Daemon, backup, check, fail, log, make_ext4, map_image, random_files,  # noqa
                       wait_for, workdir, run, VBACKUPCTL)

ROOTS = ["data"]


def verify(repo):
    r = subprocess.run([VBACKUPCTL, "--repo", repo, "verify"], capture_output=True, text=True)
    check(r.returncode == 0, f"verify {repo}: {r.stdout}{r.stderr}")


def snapshots(repo):
    import json
    r = subprocess.run([VBACKUPCTL, "--repo", repo, "snapshots", "--json"], capture_output=True,
                       text=True, check=True)
    return json.loads(r.stdout)


def job_row(d, job):
    rows = [j for j in d.ctl_json("jobs") if j["id"] == job]
    return rows[0] if rows else None


with workdir() as w:
    tree = w.p("tree")
    random_files(tree + "/data", 12, 4 << 20)
    disk = make_ext4(w.p("disk.raw"), tree, size="128M")
    recs, fb = map_image(w, disk, ROOTS)
    slow = {"schedule": {"rate_limit": "12M"}}        # makes a 48 MiB job last ~4 s
    d = Daemon(w, {"vm1": {"d0": disk}, "vm2": {"d0": disk}}, policy_conf=slow,
               batch_seconds=0.1).start()
    repo = d.targets["archive"]

    # ---- 1. the guest goes away before sealing: the job fails, says why ---------
    c = d.conn("vm1")
    job, _ = c.begin("archive", ["d0"], ROOTS)
    vp.send_records(c, job, recs[:3])
    c.close()
    row = wait_for(lambda: (r := job_row(d, job)) and r["state"] == "failed" and r, "failure")
    check("went away" in row["reason"], f"reason: {row['reason']}")
    # ... after sealing, the job runs to the end without the guest
    c = d.conn("vm1")
    job = backup(c, "archive", ["d0"], ROOTS, recs, fb, wait=False)
    c.close()
    row = wait_for(lambda: (r := job_row(d, job)) and r["state"] in ("done", "failed") and r,
                   "the sealed job", timeout=60)
    check(row["state"] == "done", f"sealed job after the guest left: {row}")
    log("disconnects: unsealed job failed ('went away'), sealed job completed")

    # ---- 2. kill -9 mid-job ----------------------------------------------------------
    c = d.conn("vm1")
    job = backup(c, "archive", ["d0"], ROOTS, recs, fb, wait=False)
    wait_for(lambda: (r := job_row(d, job)) and r["state"] == "running" and r["bytes_done"] > 0,
             "the job to run")
    before = len(snapshots(repo))
    d.kill()
    verify(repo)
    check(len(snapshots(repo)) == before, "a half snapshot became visible after kill -9")
    d.start()
    c = d.conn("vm1")
    st = c.status(job)
    check(st and st[0]["state"] == "failed" and "stopped while the job was running" in st[0]["reason"],
          f"after the restart the job is {st}")
    st = backup(c, "archive", ["d0"], ROOTS, recs, fb)
    verify(repo)
    r = subprocess.run([VBACKUPCTL, "--repo", repo, "gc", "--json"], capture_output=True, text=True)
    check(r.returncode == 0, f"gc after the kill: {r.stderr}")
    log(f"kill -9: repository verifies, job {job} reported failed after restart, next backup ok")

    # ---- 3. SIGTERM mid-job: clean exit, nothing half-written ---------------------
    job = backup(c, "archive", ["d0"], ROOTS, recs, fb, wait=False)
    wait_for(lambda: (r := job_row(d, job)) and r["state"] == "running" and r["bytes_done"] > 0,
             "the job to run")
    before = len(snapshots(repo))
    # SIGTERM fails the running job instead of waiting for it (rate_limit keeps
    # it running for seconds): no snapshot of it appears.  How long the exit
    # takes is the machine's business; d.stop's 30 s is only a safety net.
    rc = d.stop(signal.SIGTERM)
    check(rc == 0, f"vbackupd exited {rc} on SIGTERM")
    check(len(snapshots(repo)) == before, "vbackupd finished the job before exiting on SIGTERM")
    for vm in os.listdir(os.path.join(repo, "snapshots")):
        left = [x for x in os.listdir(os.path.join(repo, "snapshots", vm)) if x.startswith(".tmp")]
        check(not left, f"SIGTERM left temporary snapshots: {left}")
    verify(repo)
    check("vbackupd is shutting down" in d.log_text(), "the job was not failed on shutdown")
    log("SIGTERM: clean exit during a job, repository consistent")

    # ---- 4. the target disk fills up ---------------------------------------------------
    small = w.p("small")
    os.makedirs(small)
    run("mount", "-t", "tmpfs", "-o", "size=20m", "vbd-small", small)
    w.mounts.append(small)
    # files of several windows each: when one window fails, the file's later
    # windows are already read and wait for their turn
    big_tree = w.p("bigtree")
    random_files(big_tree + "/data", 5, 16 << 20, "b{i}.bin")
    big = make_ext4(w.p("big.raw"), big_tree, size="128M")
    brecs, bfb = map_image(w, big, ROOTS)
    d2 = Daemon(w, {"vm1": {"d0": disk, "d1": big}}, name="d2", batch_seconds=0.1,
                targets={"archive": w.p("bigrepo"), "tiny": small + "/repo"}).start()
    c = d2.conn("vm1")
    job = backup(c, "tiny", ["d1"], ROOTS, brecs, bfb, wait=False)
    st = c.wait_job(job, timeout=60)
    check(st["state"] == "failed" and "target 'tiny' has no space left" in st["reason"] and
          small not in st["reason"], f"full disk: {st}")
    check("No space left on device" in d2.log_text(), "the log does not say why the job failed")
    # the failed job lets go of its plan and of every read buffer
    wait_for(lambda: (lambda s: s["plans_running"] == 0 and s["buffers_in_use"] == 0)(
        d2.ctl_json("daemon-stats")), "the failed job's plan and buffers to be released", 10)
    check("plans running: 0, read buffers in use: 0" in d2.ctl("daemon-stats").stdout,
          "daemon-stats does not say that nothing is running")
    verify(small + "/repo")
    check(not snapshots(small + "/repo"), "a snapshot appeared on the full disk")
    st = backup(c, "archive", ["d0"], ROOTS, recs, fb)      # the daemon still serves
    log(f"ENOSPC: job failed ('{st['state']}' next), repository verifies")

    # ---- 5. SIGHUP: reload adds and removes VMs; a broken file is refused -----------
    conf = open(d2.conf).read()
    open(d2.conf, "w").write(conf.replace("[vm vm1]", "[vm vm3]\ndisk.x=" + disk + ",format=raw\n\n[vm vm1]"))
    d2.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: os.path.exists(d2.sock("vm3")), "vm3's socket after SIGHUP")
    check(d2.conn("vm3").hello()["vm"] == "vm3", "vm3 after reload")
    open(d2.conf, "w").write(conf.replace("[vm vm1]", "[vm vm1]\nbogus=1"))
    d2.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload failed, keeping the running configuration" in d2.log_text() or
             not d2.alive(), "vbackupd's answer to a broken configuration")
    check(d2.alive() and "reload failed, keeping the running configuration" in d2.log_text(),
          "a broken configuration was not refused")
    check(os.path.exists(d2.sock("vm3")), "the broken reload changed the running configuration")
    open(d2.conf, "w").write(conf)
    r = d2.ctl("reload")
    wait_for(lambda: not os.path.exists(d2.sock("vm3")), "vm3's socket to go")
    check(d2.stop() == 0, "vbackupd exit status")
    log("ok: disconnects, kill -9, SIGTERM, ENOSPC and reloads handled")
