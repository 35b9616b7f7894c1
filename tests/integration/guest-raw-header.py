#!/usr/bin/env python3
"""A real guest attacks the image probe (CVE-2008-2004): it writes, with dd
from its shell, a qcow2 image whose backing file is a file of the host onto
its raw disk, then asks for a whole-disk backup.  vbackupd does not accept a
configuration that would let it guess that disk's format; configured raw (as
QEMU runs it), the disk is backed up as its raw bytes: the snapshot restored
on the host equals the disk byte for byte, header included, and the host
file's content is nowhere in it."""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from guestlib import (VBACKUPCTL, VBACKUPD, Daemon, artifacts, boot, check, log, run,  # noqa
                      workdir)

MARK = b"HOST-SECRET-2c8e71f4"

SCRIPT = """
head -c 4 /dev/vda | grep -q QFI && { echo "the disk holds a qcow2 header already"; exit 9; }
dd if=/trap.qcow2 of=/dev/vda conv=notrunc 2>/dev/null
sync
head -c 4 /dev/vda | grep -q QFI && echo TRAP-WRITTEN
vbackup backup-disk --to archive disk0
vbackup list --from archive
"""

with workdir() as w:
    artifacts()
    secret = w.p("host-secret.txt")
    with open(secret, "wb") as f:
        f.write((MARK + b"\n") * 100000)
    disk = w.p("disk0.raw")
    with open(disk, "wb") as f:
        f.write(os.urandom(32 << 20))
    trap = w.p("trap.qcow2")
    run("qemu-img", "create", "-q", "-f", "qcow2", "-b", secret, "-F", "raw", trap, "32M")

    # a configuration that leaves the format to be guessed is refused
    nofmt = Daemon(w, {"g": {"disk0": (disk, "")}}, name="nofmt")
    r = subprocess.run([VBACKUPD, "--config", nofmt.conf, "--check-config"], capture_output=True,
                       text=True, timeout=30)
    check(r.returncode != 0 and "the format is required" in r.stderr,
          f"a disk without a format was accepted: {r.stdout}{r.stderr}")

    d = Daemon(w, {"g": {"disk0": disk}}, batch_seconds=0.5).start()
    console = boot(w, SCRIPT, [(disk, "disk0", "raw")], d.sock("g"),
                   extra=["--add", f"{trap}:/trap.qcow2"], name="attack")
    check("TRAP-WRITTEN" in console, "the guest did not write the qcow2 header onto its disk")
    with open(disk, "rb") as f:
        check(f.read(4) == b"QFI\xfb", "the raw disk does not start with the guest's qcow2 header")

    repo = d.targets["archive"]
    snaps = json.loads(subprocess.run([VBACKUPCTL, "--repo", repo, "snapshots", "--json"],
                                      capture_output=True, text=True, check=True).stdout)
    disk_snaps = [s for s in snaps if s["type"] == "disk"]
    check(len(disk_snaps) == 1, f"snapshots: {snaps}")
    check(disk_snaps[0]["id"] in console, "vbackup list does not show the disk snapshot")
    restored = w.p("restored.raw")
    run(VBACKUPCTL, "--repo", repo, "--quiet", "restore-disk", disk_snaps[0]["id"], "--to", restored)
    check(subprocess.run(["cmp", disk, restored]).returncode == 0,
          "the restored snapshot differs from the raw disk's bytes")
    with open(restored, "rb") as f:
        check(MARK not in f.read(), "the host file's content is in the guest's backup")
    run(VBACKUPCTL, "--repo", repo, "--quiet", "verify")
    check(d.stop() == 0, "vbackupd exit status")
    log("ok: the guest's qcow2 header was backed up as raw bytes; the host file stayed out")
