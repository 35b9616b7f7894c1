"""What guest-instant and guest-instant-libvirt share: a guest's system
disk and its backup, vbackupctl boot-from, the guest's script, and the check
of the live-restored image (docs/instant-access.md)."""
import hashlib
import os
import signal
import subprocess

from guestlib import VBACKUPCTL, bootable_disk, check, fail, run

MB = 1 << 20
BLOCK = 64 * 1024
BOOT_MB, DATA_MB, DISK_MB = 24, 40, 120   # partitions 1 (boot) and 2 (data) from 1 MiB
FIRST_BLOCK = 68 * MB // BLOCK          # the guest's writes: after the file systems
SLOTS = 800                             # ... in 50 MiB, round and round


def block(i):
    """What the guest writes into block i (busybox: yes STRING | head -c 65536)."""
    line = f"vbackup-instant-{i}\n".encode()
    return (line * (BLOCK // len(line) + 1))[:BLOCK]


# The guest (booted from the backup of this disk): it reads its files, writes
# one block, says READY-FOR-RESTORE, then writes a block every 50 ms until the
# host writes "done" into the mailbox disk, and reads its files again.
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


class System:
    """A guest's system disk, backed up and then deleted: only the backup holds it.
    repo, snap (the disk snapshot's id), expected (its bytes), big_sum."""

    def __init__(self, w):
        tree = w.p("tree")
        os.makedirs(tree)
        open(os.path.join(tree, "hello.txt"), "w").write("hello from the backup\n")
        big = os.urandom(3 * MB)
        open(os.path.join(tree, "big.bin"), "wb").write(big)
        self.big_sum = hashlib.sha256(big).hexdigest()
        disk = w.p("data0.raw")
        parts = bootable_disk(w, disk, DISK_MB, GUEST, boot_mb=BOOT_MB, data_tree=tree,
                              data_mb=DATA_MB)
        check(parts[-1][0] + parts[-1][1] <= FIRST_BLOCK * BLOCK,
              "the guest would write into a file system")
        self.repo = w.p("repo")
        run(VBACKUPCTL, "--repo", self.repo, "--quiet", "init", "--format", "1")
        out = subprocess.run([VBACKUPCTL, "--repo", self.repo, "backup-disk", "--vm", "vm1",
                              "--name", "data0", "--format", "raw", disk], capture_output=True,
                             text=True, check=True).stdout
        self.snap = out.strip().splitlines()[-1]
        self.expected = bytearray(open(disk, "rb").read())
        os.unlink(disk)

    def check_booted(self, text):
        """The console of a guest that said READY-FOR-RESTORE."""
        check("CMDLINE BOOT_IMAGE=/boot/vmlinuz" in text,
              "the guest's kernel was not started by the boot loader on its disk")
        check("SEEN hello from the backup" in text,
              "the guest did not read the file from the backup")
        check(f"SUM {self.big_sum}" in text, "the guest read a different big.bin from the backup")

    def check_after(self, text):
        """The console of the guest at its end; returns how many blocks it wrote."""
        check(f"AFTER hello from the backup {self.big_sum}" in text,
              "the guest could not read its files after the export stopped")
        return int(text.split("WRITES ")[1].split()[0])

    def check_overlay(self, w, overlay, writes):
        """The overlay stands alone and holds the snapshot plus the guest's writes."""
        info = subprocess.run(["qemu-img", "info", "--output=json", overlay],
                              capture_output=True, text=True, check=True).stdout
        check('"backing-filename"' not in info, f"the overlay still has a backing file: {info}")
        run("qemu-img", "check", "-q", overlay)
        expected = bytearray(self.expected)
        for i in range(writes):                # in the order the guest wrote them
            off = (FIRST_BLOCK + i % SLOTS) * BLOCK
            expected[off:off + BLOCK] = block(i)
        open(w.p("expected.raw"), "wb").write(expected)
        r = subprocess.run(["qemu-img", "compare", "-f", "qcow2", "-F", "raw", overlay,
                            w.p("expected.raw")], capture_output=True, text=True)
        check(r.returncode == 0, f"the restored disk differs from the snapshot plus the "
              f"guest's writes: {r.stdout}{r.stderr}")


class Procs:
    """Processes a test started, stopped with SIGINT however it ends
    (workdir's cleanup calls kill; run-guest then stops its QEMU, boot-from
    its export)."""

    def __init__(self, w, log_path):
        self.procs = []
        self.log_path = log_path
        w.daemons.append(self)

    def add(self, p):
        self.procs.append(p)
        return p

    def kill(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()

    def log_text(self):
        return open(self.log_path, errors="replace").read()


def boot_from(w, procs, system, overlay, extra=()):
    """vbackupctl boot-from, until it says ready; returns the process and its lines."""
    log_path = w.p("boot-from.log")
    bf = procs.add(subprocess.Popen(
        [VBACKUPCTL, "--repo", system.repo, "boot-from", "vm1", "--overlay", overlay, *extra],
        stdout=subprocess.PIPE, stderr=open(log_path, "w"), text=True))
    lines = []
    for line in bf.stdout:                 # until it says it is ready (or ends)
        lines.append(line)
        if line.strip() == "ready":
            break
    if not lines or lines[-1].strip() != "ready":
        fail(f"boot-from did not get ready: {lines}\n{open(log_path).read()}")
    check(lines[0].startswith(f"created the overlay {overlay}"), f"boot-from said {lines[0]!r}")
    return bf, lines


def console_has(path, word):
    try:
        return word in open(path, errors="replace").read()
    except OSError:
        return False
