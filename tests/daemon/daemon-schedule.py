#!/usr/bin/env python3
"""The schedule policy through vbackupd: under I/O pressure (Linux PSI, here
from a folder of fake pressure files) or outside the time window, jobs are
deferred and say why, to the guest (STATUS) and to the admin (vbackupctl
jobs / job ID); they run when pressure falls, or when max_delay passes.  A
guest that is frozen while the host reads is never kept waiting.

Times are the daemon's own (the job's started_ns, the snapshot's
created_ns, which is when the job was sealed) and the window is placed
hours away from the local time of the test (TZ is the test environment's,
for vbackupd and this script alike), so neither the machine's speed nor
the time of day decides the outcome."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from daemonlib import Daemon, backup, check, log, make_ext4, map_image, wait_for, workdir  # noqa

ROOTS = ["data"]


def wait_state(c, job, want, timeout=60):
    return wait_for(lambda: (st := c.status(job)[0])["state"] == want and st,
                    f"job {job} to be {want}", timeout)


def deferrals(d, job):
    """The schedule policy's deferral notes in the job's plan, one per check."""
    return [n for n in d.ctl_json("job", str(job))["plan"] if n.startswith("schedule: deferred")]


with workdir() as w:
    tree = w.p("tree")
    os.makedirs(tree + "/data")
    with open(tree + "/data/file.bin", "wb") as f:
        f.write(os.urandom(2 << 20))
    disk = make_ext4(w.p("disk.raw"), tree, size="64M")
    recs, fb = map_image(w, disk, ROOTS)
    far = (time.localtime().tm_hour + 3) % 24     # a window that cannot hold the test
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
    # the policy looks again after recheck (1 s): wait for that second look
    # rather than for a time, and the job must still be deferred after it
    wait_for(lambda: len(deferrals(d, job)) >= 2, f"a second deferral of job {job} (recheck)")
    check(c.status(job)[0]["state"] == "deferred", "job ran while the host was busy")
    d.set_psi(io=3, cpu=0, mem=0)
    st = c.wait_job(job, timeout=20)
    check(st["state"] == "done", f"after pressure fell: {st}")
    plan = d.ctl_json("job", str(job))["plan"]
    log("plan: " + " | ".join(plan))

    # 2. pressure that never falls: runs once max_delay has passed, and because
    # of it.  The wait is measured by the daemon's clock from the seal (the
    # snapshot's created_ns) to the start (started_ns): not before max_delay,
    # and at the first check after it (deferrals are cut at sealed +
    # max_delay), within a second for the event loop; the plan says why.
    d.set_psi(io=90, cpu=0, mem=0)
    job = backup(c, "archive", ["d0"], ROOTS, recs, fb, wait=False)
    wait_state(c, job, "deferred")
    st = c.wait_job(job, timeout=120)
    check(st["state"] == "done", f"max_delay: {st}")
    info = d.ctl_json("job", str(job))
    sealed = [x["created_ns"] for x in c.list("archive")[1] if x["id"] == st["snapshot"]][0]
    waited = (info["started_ns"] - sealed) / 1e9
    check(6 <= waited <= 7, f"ran {waited:.2f} s after the seal with max_delay 6")
    check(any("max_delay reached" in n for n in info["plan"]),
          f"no note that max_delay made the job run: {info['plan']}")
    log(f"ran {waited:.2f} s after the seal under constant pressure (max_delay 6 s)")

    # 3. a guest frozen while the host reads live data is not kept waiting
    job = backup(c, "archive", ["d0"], ROOTS, recs, fb, unfrozen=False, wait=False)
    st = c.wait_job(job, timeout=60)
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
