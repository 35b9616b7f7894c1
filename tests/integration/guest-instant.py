#!/usr/bin/env python3
"""Boot from a backup, then restore it live (docs/instant-access.md).

A guest's system disk is backed up with vbackupctl backup-disk: an MBR with
boot code, a boot partition (extlinux, the kernel, an initramfs that holds
what the guest runs), an ext4 partition holding known files, and space
after it.  vbackupctl boot-from serves that snapshot over NBD and makes a
qcow2 overlay on it; a real guest (TCG) boots from the overlay through the
firmware before anything was restored (boot loader, kernel and initramfs
are read from the backup), mounts the ext4 partition and reads the files
from the backup, and writes a block into the disk.  While it runs and goes
on writing, vbackupctl live-restore copies the disk into the overlay (QEMU block-stream over QMP);
the export is stopped at once after that, and the guest keeps reading and
writing.  At the end the overlay stands alone (no backing file, qemu-img
check clean) and equals the backed-up disk plus exactly the blocks the
guest wrote since it booted."""
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from guestlib import (RUN_GUEST, Mailbox, VBACKUPCTL, artifacts, check, fail, log,  # noqa: E402
                      wait_for, workdir)
from instantlib import Procs, System, boot_from, console_has  # noqa: E402

with workdir() as w:
    artifacts()
    system = System(w)                  # the backup of a system disk, and nothing else of it
    procs = Procs(w, w.p("boot-from.log"))
    overlay = w.p("vm1.qcow2")
    bf, _ = boot_from(w, procs, system, overlay)

    # ---- the guest boots from the overlay ---------------------------------------------------------
    mailbox = Mailbox(w)
    qmp = w.p("qmp.sock")
    console = w.p("guest.console")
    t0 = time.monotonic()
    guest = procs.add(subprocess.Popen(
        [RUN_GUEST, "--timeout", "600", "--log", console, "--boot-disk",
         "--disk", f"{overlay},serial=data0,format=qcow2",
         "--disk", f"{mailbox.path},serial=mailbox,format=raw",
         "--qmp", qmp], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    wait_for(lambda: console_has(console, "READY-FOR-RESTORE") or guest.poll() is not None,
             "the guest to read the backup and write its first block", timeout=600)
    if guest.poll() is not None:
        print(open(console, errors="replace").read()[-4000:])
        fail(f"the guest ended early: {guest.stdout.read()[-2000:]}")
    system.check_booted(open(console, errors="replace").read())
    log(f"the guest booted from the backup and read its files {time.monotonic() - t0:.1f} s "
        "after it started, before any restore")

    # ---- live restore while the guest writes ----------------------------------------------------------
    lr = subprocess.run([VBACKUPCTL, "live-restore", "--qmp", qmp, "--speed", "16M"],
                        capture_output=True, text=True, timeout=600)
    check(lr.returncode == 0, f"live-restore failed: {lr.stdout}{lr.stderr}")
    check("complete" in lr.stdout and overlay in lr.stdout, f"live-restore said {lr.stdout!r}")
    log(lr.stdout.strip().splitlines()[-1])
    # the export is no longer needed: stop it while the guest still runs
    bf.send_signal(signal.SIGINT)
    check(bf.wait(timeout=60) == 0, "boot-from did not stop cleanly on SIGINT")
    mailbox.post("done")
    rest, _ = guest.communicate(timeout=600)
    text = open(console, errors="replace").read()
    if guest.returncode != 0:
        print(text[-4000:])
        fail(f"the guest failed after the live restore: {rest[-2000:]}")
    writes = system.check_after(text)
    log(f"the guest wrote {writes} blocks of 64 KiB: one before the copy, the others during "
        "and after it")

    # ---- the overlay stands alone and holds the snapshot plus the guest's writes --------------------
    system.check_overlay(w, overlay, writes)
    log(f"ok: the guest booted on the backup of {system.snap} at once and its disk was restored "
        f"live into a standalone image equal to the snapshot plus its {writes} writes")
