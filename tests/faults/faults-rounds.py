#!/usr/bin/env python3
"""Each kind of fault, several times, at random moments (chaoslib.World;
VB_FAULTS_ROUNDS rounds each, 5 by default; the seed is printed first):

  gc+prune    gc, prune and forget while vbackupd jobs run (files mapped
              from an image, fallback data, whole disks)
  shared      two vbackupd and vbackupctl on one repository, content that
              changes and comes back, gc in between
  kill        kill -9 of backup-disk, gc, prune, forget, repair,
              restore-disk, restore-files, or vbackupd mid-job
  power       a power cut of the repository's file system (ext4 shut down
              without flushing: what was only in memory is lost) mid-work
  frozen      a copy of the repository's file system taken while frozen,
              mid-work
  io          failing reads, fsyncs, syncfs and listings

After each scenario every snapshot reported done is in the repository, the
repository verifies, each snapshot made since the last check restores byte
for byte (and a sample of the older ones); at the end every one of them
restores byte for byte."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib as fl  # noqa: E402
import chaoslib  # noqa: E402
from faultlib import check, log  # noqa: E402

ROUNDS = int(os.environ.get("VB_FAULTS_ROUNDS", "5"))


def pause(world, lo=0.0, hi=0.8):
    """A random moment (not a wait for anything: the fault lands where it lands)."""
    time.sleep(world.rng.uniform(lo, hi))


def gc_prune(wd):
    for _ in range(wd.rng.randint(2, 3)):
        wd.job()
    wd.cli_backup(vm="s0")
    pause(wd)
    wd.maintenance("gc")
    pause(wd, 0, 0.3)
    wd.maintenance(wd.rng.choice(["prune", "forget"]))
    pause(wd, 0, 0.3)
    wd.maintenance("gc")


def shared(wd):
    v = wd.rng.randrange(chaoslib.VERSIONS)
    wd.job(d=wd.daemons[0], version=v)
    wd.job(d=wd.daemons[1], version=wd.rng.randrange(chaoslib.VERSIONS))
    wd.cli_backup(version=v)
    pause(wd)
    wd.maintenance("gc")
    wd.cli_backup()
    wd.job(kind="files", mode="incremental")


KILLS = ["backup-disk", "gc", "prune", "forget", "repair", "restore-disk", "restore-files",
         "vbackupd"]
kill_queue = []


def kill(wd):
    """Two operations killed with -9 at random moments; every kind of them
    at least once in the run (a queue of all of them, shuffled, refilled)."""
    for _ in range(2):
        if not kill_queue:
            kill_queue.extend(wd.rng.sample(KILLS, len(KILLS)))
        kind = kill_queue.pop()
        wd.job()
        wd.counts.add(f"kills aimed at {kind}")
        if kind == "vbackupd":
            wd.job()
            pause(wd, 0.1, 1.0)
            wd.kill_daemon()
            continue
        if kind in wd.STEPS and wd.rng.random() < 0.5:
            wd.kill_at_step(kind)           # at one of its steps, for sure
            continue
        c = wd.cli_backup() if kind == "backup-disk" else wd.maintenance(kind)
        pause(wd, 0, 0.4 if kind in ("backup-disk", "restore-disk", "repair") else 0.1)
        c.kill()


def power(wd):
    wd.job()
    wd.job(kind="files")
    wd.cli_backup()
    if wd.rng.random() < 0.5:
        wd.maintenance("gc")
    wd.when_busy()
    wd.power_cut()


def frozen(wd):
    wd.job()
    wd.cli_backup()
    wd.when_busy()
    wd.frozen_copy()


def io(wd):
    for kind in ("read", "readdir-gc", "readdir-prune", "readdir-list", "fsync-backup",
                 "syncfs-backup"):
        wd.io_fault(kind)


SCENARIOS = [("gc+prune", gc_prune), ("shared", shared), ("kill", kill), ("power", power),
             ("frozen", frozen), ("io", io)]

with fl.dl.workdir() as w:
    rng = fl.seeded("faults-rounds")
    wd = chaoslib.World(w, rng)
    if ROUNDS * 2 < len(KILLS):
        log(f"note: {ROUNDS} rounds kill only {ROUNDS * 2} of the {len(KILLS)} kinds of operations")
    t0 = time.monotonic()
    for r in range(ROUNDS):
        order = SCENARIOS[:]
        rng.shuffle(order)
        for name, fn in order:
            log(f"round {r + 1}: {name}")
            fn(wd)
            wd.check(f"round {r + 1}, {name}")
            wd.counts.add(f"rounds {name}")
        log(f"round {r + 1}: {wd.counts.line()}")
    wd.settle()
    n = wd.ledger.check("the end", repos=[wd.repo])
    wd.stop()
    log(f"ok: {ROUNDS} rounds of {len(SCENARIOS)} kinds of faults in {time.monotonic() - t0:.0f} s; "
        f"{n} snapshots reported done restore byte for byte")
