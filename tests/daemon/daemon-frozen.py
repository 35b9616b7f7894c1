#!/usr/bin/env python3
"""A guest cannot skip the schedule policy by saying it is frozen.

A job whose guest stays frozen while the host reads the live image (no
snapshot view, no VB_BEGIN_UNFROZEN) has priority: its batch is cut within
frozen_wait and it runs even while the schedule policy defers everyone
else.  That priority is bounded: once a VM's frozen job skipped a deferral,
the VM's next frozen jobs are scheduled like everyone else's (deferred,
with the policy's reason) until a policy lets one of its jobs run on its own
(the host is quiet again, or max_delay passed).  Here, under constant I/O
pressure, the abuser's first frozen job runs, its second waits with the
unfrozen job of another VM, both run when the pressure falls, and after
that the abuser's priority is back."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from daemonlib import Daemon, backup, check, log, make_ext4, map_image, wait_for, workdir  # noqa

ROOTS = ["data"]


def state(c, job):
    return c.status(job)[0]


def plan(d, job):
    return d.ctl_json("job", str(job))["plan"]


with workdir() as w:
    tree = w.p("tree")
    os.makedirs(tree + "/data")
    with open(tree + "/data/file.bin", "wb") as f:
        f.write(os.urandom(1 << 20))
    disk = make_ext4(w.p("disk.raw"), tree, size="32M")
    recs, fb = map_image(w, disk, ROOTS)
    d = Daemon(w, {"abuser": {"a0": disk}, "other": {"o0": disk}}, batch_seconds=0.2,
               policy_conf={"schedule": {"io_some_max": 20, "recheck": 1,
                                         "max_delay": 3600}}).start()
    ab, ot = d.conn("abuser"), d.conn("other")
    d.set_psi(io=90, cpu=0, mem=0)

    # 1. the first frozen job runs although the host is busy
    j1 = backup(ab, "archive", ["a0"], ROOTS, recs, fb, unfrozen=False, wait=False)
    st = ab.wait_job(j1, timeout=60)
    check(st["state"] == "done", f"the first frozen job: {st}")
    check(any("not deferred" in n for n in plan(d, j1)), f"first frozen job's plan: {plan(d, j1)}")
    log("the first frozen job ran under pressure (frozen priority)")

    # 2. the next ones wait like everyone else's
    t0 = time.monotonic()
    j2 = backup(ab, "archive", ["a0"], ROOTS, recs, fb, unfrozen=False, wait=False)
    j3 = backup(ot, "archive", ["o0"], ROOTS, recs, fb, unfrozen=True, wait=False)
    for c, j in ((ab, j2), (ot, j3)):
        st = wait_for(lambda: (s := state(c, j))["state"] != "queued" and s,
                      f"job {j} to be offered to the policies")
        check(st["state"] == "deferred" and "io pressure" in st["reason"],
              f"job {j} under pressure: {st['state']} {st['reason']!r}")
    # still waiting after the policy looked again (recheck 1 s), long after frozen_wait
    wait_for(lambda: sum(n.startswith("schedule: deferred") for n in plan(d, j2)) >= 2,
             "a second look of the schedule policy at the abuser's job")
    st = state(ab, j2)
    check(st["state"] == "deferred", f"the abuser's second frozen job ran under pressure: {st}")
    notes = plan(d, j2)
    check(any("frozen" in n and "priority" in n for n in notes),
          f"no note says why the frozen job waits: {notes}")
    log(f"the second frozen job waits {time.monotonic() - t0:.1f} s like the other VM's: "
        f"{st['reason']}")

    # 3. the pressure falls: both run
    d.set_psi(io=3, cpu=0, mem=0)
    for c, j in ((ab, j2), (ot, j3)):
        st = c.wait_job(j, timeout=60)
        check(st["state"] == "done", f"job {j} after the pressure fell: {st}")

    # 4. the abuser's job ran on its own: its priority is back
    d.set_psi(io=90, cpu=0, mem=0)
    j4 = backup(ab, "archive", ["a0"], ROOTS, recs, fb, unfrozen=False, wait=False)
    st = ab.wait_job(j4, timeout=60)
    check(st["state"] == "done" and any("not deferred" in n for n in plan(d, j4)),
          f"the frozen job after a quiet period: {st} {plan(d, j4)}")
    check(d.stop() == 0, "vbackupd exit status")
    log("ok: frozen priority is bounded: one skip of the schedule until a policy lets the "
        "VM's job run on its own")
