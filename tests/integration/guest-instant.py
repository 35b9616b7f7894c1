#!/usr/bin/env python3
"""Boot from a backup, then restore it live (docs/instant-access.md).

A guest's system disk is backed up with vbackupctl backup-disk: an MBR with
boot code, a boot partition (extlinux, the kernel, an initramfs that holds
what the guest runs), an ext4 partition holding known files, and space
after it.  vbackupctl boot-from serves that snapshot over NBD and makes a
qcow2 overlay on it; a real guest (TCG) boots from the overlay through the
firmware before anything was restored (boot loader, kernel and initramfs
are read from the backup), mounts the ext4 partition and reads the files
from the backup, and writes a block into the disk.  While it runs and goes on writing, vbackupctl
live-restore copies the disk into the overlay (QEMU block-stream over QMP);
the export is stopped at once after that, and the guest keeps reading and
writing.  At the end the overlay stands alone (no backing file, qemu-img
check clean) and equals the backed-up disk plus exactly the blocks the
guest wrote since it booted."""
import hashlib
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from guestlib import (RUN_GUEST, Mailbox, VBACKUPCTL, artifacts, bootable_disk, check,  # noqa: E402
                      fail, log, run, wait_for, workdir)

MB = 1 << 20
BLOCK = 64 * 1024
BOOT_MB, DATA_MB, DISK_MB = 24, 40, 120   # partitions 1 (boot) and 2 (data) from 1 MiB
FIRST_BLOCK = 68 * MB // BLOCK          # the guest's writes: after the file systems
SLOTS = 800                             # ... in 50 MiB, round and round


def block(i):
    """What the guest writes into block i (busybox: yes STRING | head -c 65536)."""
    line = f"vbackup-instant-{i}\n".encode()
    return (line * (BLOCK // len(line) + 1))[:BLOCK]


GUEST = r"""
find_disk() {
    for b in /sys/block/vd*; do
        [ "$(cat "$b/serial" 2>/dev/null)" = "$1" ] && { echo /dev/${b##*/}; return; }
    done
    echo "FAIL no disk $1"; exit 10
}
d=$(find_disk data0)
mb=$(find_disk mailbox)
host_says() {
    echo 1 > /proc/sys/vm/drop_caches
    [ "$(head -c 64 "$mb" | tr -d '\000')" = "$1" ]
}
write_block() {
    yes "vbackup-instant-$1" | head -c 65536 > /tmp/b
    dd if=/tmp/b of="$d" bs=65536 seek=$((FIRST + $1 % SLOTS)) conv=fsync 2>/dev/null
}
echo "CMDLINE $(cat /proc/cmdline)"
mkdir -p /mnt/d
mount -o ro,noload "${d}2" /mnt/d
echo "SEEN $(cat /mnt/d/hello.txt)"
echo "SUM $(sha256sum /mnt/d/big.bin | cut -d' ' -f1)"
umount /mnt/d
write_block 0
echo "READY-FOR-RESTORE"
i=1
until host_says done; do
    write_block $i
    i=$((i + 1))
    [ $i -lt 6000 ] || { echo "FAIL the host never said done"; exit 11; }
    sleep 0.05                  # a steady writer, not a flood
done
sync
echo "WRITES $i"
mount -o ro,noload "${d}2" /mnt/d
echo "AFTER $(cat /mnt/d/hello.txt) $(sha256sum /mnt/d/big.bin | cut -d' ' -f1)"
umount /mnt/d
""".replace("FIRST", str(FIRST_BLOCK)).replace("SLOTS", str(SLOTS))


def console_has(path, word):
    try:
        return word in open(path, errors="replace").read()
    except OSError:
        return False


with workdir() as w:
    artifacts()
    # ---- the system disk and its backup -------------------------------------------------
    tree = w.p("tree")
    os.makedirs(tree)
    open(os.path.join(tree, "hello.txt"), "w").write("hello from the backup\n")
    big = os.urandom(3 * MB)
    open(os.path.join(tree, "big.bin"), "wb").write(big)
    disk = w.p("data0.raw")
    parts = bootable_disk(w, disk, DISK_MB, GUEST, boot_mb=BOOT_MB, data_tree=tree,
                          data_mb=DATA_MB)
    check(parts[-1][0] + parts[-1][1] <= FIRST_BLOCK * BLOCK, "the guest would write into a file system")
    repo = w.p("repo")
    run(VBACKUPCTL, "--repo", repo, "--quiet", "init")
    out = subprocess.run([VBACKUPCTL, "--repo", repo, "backup-disk", "--vm", "vm1", "--name",
                          "data0", "--format", "raw", disk], capture_output=True, text=True,
                         check=True).stdout
    snap = out.strip().splitlines()[-1]
    expected = bytearray(open(disk, "rb").read())
    os.unlink(disk)                    # nothing but the backup holds the disk now

    # ---- boot-from: the export and the overlay ------------------------------------------------
    overlay = w.p("vm1.qcow2")
    bf_log = open(w.p("boot-from.log"), "w")
    procs = []                          # ended however the test ends

    class Ender:
        """Stops the processes this test started (workdir's cleanup calls kill)."""
        log_path = w.p("boot-from.log")

        def kill(self):
            for p in procs:             # SIGINT: run-guest stops its QEMU, boot-from its export
                if p.poll() is None:
                    p.send_signal(signal.SIGINT)
                    try:
                        p.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        p.kill()
                        p.wait()

        def log_text(self):
            return open(self.log_path, errors="replace").read()
    w.daemons.append(Ender())
    bf = subprocess.Popen([VBACKUPCTL, "--repo", repo, "boot-from", "vm1", "--overlay", overlay],
                          stdout=subprocess.PIPE, stderr=bf_log, text=True)
    procs.append(bf)
    lines = []
    for line in bf.stdout:                 # until it says it is ready (or ends)
        lines.append(line)
        if line.strip() == "ready":
            break
    check(lines and lines[-1].strip() == "ready", f"boot-from did not get ready: {lines}")
    check(lines[0].startswith(f"created the overlay {overlay}"), f"boot-from said {lines[0]!r}")

    # ---- the guest boots from the overlay ---------------------------------------------------------
    mailbox = Mailbox(w)
    qmp = w.p("qmp.sock")
    console = w.p("guest.console")
    t0 = time.monotonic()
    guest = subprocess.Popen([RUN_GUEST, "--timeout", "600", "--log", console, "--boot-disk",
                              "--disk", f"{overlay},serial=data0,format=qcow2",
                              "--disk", f"{mailbox.path},serial=mailbox,format=raw",
                              "--qmp", qmp], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    procs.append(guest)
    wait_for(lambda: console_has(console, "READY-FOR-RESTORE") or guest.poll() is not None,
             "the guest to read the backup and write its first block", timeout=600)
    if guest.poll() is not None:
        print(open(console, errors="replace").read()[-4000:])
        fail(f"the guest ended early: {guest.stdout.read()[-2000:]}")
    text = open(console, errors="replace").read()
    check("CMDLINE BOOT_IMAGE=/boot/vmlinuz" in text,
          "the guest's kernel was not started by the boot loader on its disk")
    check("SEEN hello from the backup" in text, "the guest did not read the file from the backup")
    want_sum = hashlib.sha256(big).hexdigest()
    check(f"SUM {want_sum}" in text, "the guest read a different big.bin from the backup")
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
    check(f"AFTER hello from the backup {want_sum}" in text,
          "the guest could not read its files after the export stopped")
    writes = int(text.split("WRITES ")[1].split()[0])
    log(f"the guest wrote {writes} blocks of 64 KiB: one before the copy, the others during "
        "and after it")

    # ---- the overlay stands alone and holds the snapshot plus the guest's writes --------------------
    info = subprocess.run(["qemu-img", "info", "--output=json", overlay], capture_output=True,
                          text=True, check=True).stdout
    check('"backing-filename"' not in info, f"the overlay still has a backing file: {info}")
    run("qemu-img", "check", "-q", overlay)
    for i in range(writes):                # in the order the guest wrote them
        off = (FIRST_BLOCK + i % SLOTS) * BLOCK
        expected[off:off + BLOCK] = block(i)
    open(w.p("expected.raw"), "wb").write(expected)
    r = subprocess.run(["qemu-img", "compare", "-f", "qcow2", "-F", "raw", overlay,
                        w.p("expected.raw")], capture_output=True, text=True)
    check(r.returncode == 0, f"the restored disk differs from the snapshot plus the guest's "
          f"writes: {r.stdout}{r.stderr}")
    log(f"ok: the guest booted on the backup of {snap} at once and its disk was restored live "
        f"into a standalone image equal to the snapshot plus its {writes} writes")
