#!/usr/bin/env python3
"""The schedule policy through vbackupd: under I/O pressure (Linux PSI, here
from a folder of fake pressure files) or outside the time window, jobs are
deferred and say why, to the guest (STATUS) and to the admin (vbackupctl
jobs / job ID); they run when pressure falls, or when max_delay passes.  A
guest that is frozen while the host reads is never kept waiting."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from daemonlib import Daemon, backup, check, log, make_ext4, map_image, workdir  # noqa

ROOTS = ["data"]


def wait_state(c, job, want, timeout=20):
    t0 = time.time()
    while time.time() - t0 < timeout:
        st = c.status(job)[0]
        if st["state"] == want:
            return st
        time.sleep(0.05)
    raise AssertionError(f"job {job} is {st['state']} ({st['reason']}), expected {want}")


with workdir() as w:
    tree = w.p("tree")
    os.makedirs(tree + "/data")
    with open(tree + "/data/file.bin", "wb") as f:
        f.write(os.urandom(2 << 20))
    disk = make_ext4(w.p("disk.raw"), tree, size="64M")
    recs, fb = map_image(w, disk, ROOTS)
    lt = time.localtime()
    far = (lt.tm_hour + 3) % 24
    d = Daemon(w, {"vm1": {"d0": disk}}, policies="schedule,merge", batch_seconds=0.2,
               policy_conf={"schedule": {"io_some_max": 20, "recheck": 1, "max_delay": 6}}).start()
    c = d.conn("vm1")

    # 1. pressure: deferred with the reason, then runs when pressure falls
    d.set_psi(io=55.5, cpu=0, mem=0)
    job = backup(c, "archive", ["d0"], ROOTS, recs, fb, wait=False)
    st = wait_state(c, job, "deferred")
    check("io pressure 55.5%" in st["reason"] and "20" in st["reason"],
          f"deferral reason: {st['reason']!r}")
    row = [j for j in d.ctl_json("jobs") if j["id"] == job][0]
    check(row["state"] == "deferred" and "io pressure" in row.get("reason", ""),
          f"vbackupctl jobs: {row}")
    table = d.ctl("jobs").stdout
    check("deferred" in table and "io pressure" in table, f"vbackupctl jobs table:\n{table}")
    log(f"deferred: {st['reason']}")
    time.sleep(1.5)
    check(c.status(job)[0]["state"] == "deferred", "job ran while the host was busy")
    d.set_psi(io=3, cpu=0, mem=0)
    st = c.wait_job(job, timeout=20)
    check(st["state"] == "done", f"after pressure fell: {st}")
    plan = d.ctl_json("job", str(job))["plan"]
    log("plan: " + " | ".join(plan))

    # 2. pressure that never falls: runs once max_delay has passed
    d.set_psi(io=90, cpu=0, mem=0)
    t0 = time.time()
    job = backup(c, "archive", ["d0"], ROOTS, recs, fb, wait=False)
    wait_state(c, job, "deferred")
    st = c.wait_job(job, timeout=30)
    waited = time.time() - t0
    check(st["state"] == "done", f"max_delay: {st}")
    check(5 <= waited <= 12, f"ran after {waited:.1f} s with max_delay 6")
    log(f"ran after {waited:.1f} s under constant pressure (max_delay 6 s)")

    # 3. a guest frozen while the host reads live data is not kept waiting
    job = backup(c, "archive", ["d0"], ROOTS, recs, fb, unfrozen=False, wait=False)
    st = c.wait_job(job, timeout=10)
    check(st["state"] == "done", f"frozen guest's job: {st}")
    check(any("not deferred" in n for n in d.ctl_json("job", str(job))["plan"]),
          "no note that the frozen guest's job was not deferred")
    d.stop()

    # 4. outside the time window
    d = Daemon(w, {"vm1": {"d0": disk}}, policies="schedule", batch_seconds=0.2, name="d2",
               policy_conf={"schedule": {"window": f"{far:02d}:00-{far:02d}:30", "recheck": 1}}).start()
    c = d.conn("vm1")
    job = backup(c, "archive", ["d0"], ROOTS, recs, fb, wait=False)
    st = wait_state(c, job, "deferred")
    check("outside the window" in st["reason"], f"window reason: {st['reason']!r}")
    log(f"deferred: {st['reason']}")
    c.cancel(job)
    check(c.status(job)[0]["state"] == "cancelled", "a deferred job could not be cancelled")
    d.stop()
    log("ok: schedule defers under pressure and outside the window, with reasons")
