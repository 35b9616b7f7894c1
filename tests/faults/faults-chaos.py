#!/usr/bin/env python3
"""Chaos: everything at once, at random, for VB_CHAOS_SECONDS (60 by
default; bench/chaos runs it for half an hour): vbackupd jobs of every kind
on two daemons, vbackupctl backups, gc, prune, forget, verify, repair and
restores beside them, kill -9 of any command or daemon, SIGTERM, power cuts,
frozen copies and failing reads, fsyncs and listings.  Commands that end
are checked as they end (a restore restores the bytes backed up); after each
power cut and at the end, every snapshot reported done is in the repository,
which verifies, and at the end each one restores byte for byte.  Prints the
counts of jobs, commands, kills, power cuts and snapshots checked."""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib as fl  # noqa: E402
import chaoslib  # noqa: E402
from faultlib import log  # noqa: E402

SECONDS = float(os.environ.get("VB_CHAOS_SECONDS", "60"))
MAX_JOBS, MAX_CMDS = 4, 3

with fl.dl.workdir() as w:
    rng = fl.seeded("faults-chaos")
    wd = chaoslib.World(w, rng)

    def kill_cmd():
        if wd.cmds:
            rng.choice(wd.cmds).kill()

    actions = [  # weight, needs a free command slot, action
        (30, False, lambda: len(wd.jobs) < MAX_JOBS and wd.job()),
        (10, True, lambda: wd.cli_backup(vm=rng.choice(["c0", "c0", "s0"]))),
        (5, True, lambda: wd.maintenance("gc")),
        (3, True, lambda: wd.maintenance("prune")),
        (3, True, lambda: wd.maintenance("forget")),
        (2, True, lambda: wd.maintenance("verify")),
        (2, True, lambda: wd.maintenance("repair")),
        (3, True, lambda: wd.maintenance("restore-disk")),
        (3, True, lambda: wd.maintenance("restore-files")),
        (8, False, kill_cmd),
        (3, False, lambda: wd.kill_daemon()),
        (1, False, lambda: wd.kill_daemon(signal.SIGTERM)),
        (2, False, lambda: wd.power_cut()),
        (2, False, lambda: wd.frozen_copy()),
        (3, False, lambda: wd.io_fault()),
        (1, False, lambda: wd.check("a checkpoint")),
    ]
    weights = [a[0] for a in actions]
    t0 = time.monotonic()
    while time.monotonic() - t0 < SECONDS:
        wd.reap()
        _, needs_slot, act = rng.choices(actions, weights)[0]
        if not (needs_slot and len(wd.cmds) >= MAX_CMDS):
            act()
        time.sleep(rng.uniform(0.02, 0.3))
    wd.settle()
    n = wd.ledger.check("the end of the chaos", repos=[wd.repo])
    wd.stop()
    c = wd.counts
    jobs = sum(v for k, v in c.items() if k in ("jobs files", "jobs fallback", "jobs disk"))
    kills = sum(v for k, v in c.items() if k.startswith("kill -9"))
    log(f"chaos: {time.monotonic() - t0:.0f} s, seed above; {c.line()}")
    log(f"ok: {jobs} jobs ({c.get('jobs done', 0)} done), {kills} kills -9, "
        f"{c.get('SIGTERM vbackupd', 0)} SIGTERMs, {c.get('power cuts', 0)} power cuts, "
        f"{c.get('frozen copies', 0)} frozen copies; {len(wd.ledger.items())} snapshots reported "
        f"done, each checked: in the repository, verified, restored byte for byte ({n})")
