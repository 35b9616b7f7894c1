#!/usr/bin/env python3
"""Helpers for integration tests that boot real guests (QEMU built here, the
guest module, the static guest tool) against the real vbackupd."""
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, "../.."))
sys.path.insert(0, os.path.join(SRC, "tests/daemon"))
from daemonlib import *  # noqa: F401,F403,E402
import daemonlib  # noqa: E402

BUILD = daemonlib.BUILD
TOOL = os.environ.get("VBACKUP_TOOL", os.path.join(BUILD, "guest-driver/vbackup"))
RUN_GUEST = os.path.join(SRC, "tests/guest/run-guest")


def artifacts():
    """QEMU, kernel, initramfs (built once, cached)."""
    out = subprocess.run([os.path.join(SRC, "tests/guest/artifacts")], capture_output=True,
                         text=True)
    if out.returncode:
        daemonlib.fail(f"tests/guest/artifacts failed:\n{out.stderr[-3000:]}")
    env = {}
    for line in out.stdout.splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            env[k.strip()] = v.strip().strip("'\"")
    os.environ.update(env)
    return env


def boot(w, script, disks, vbackup_socket=None, qmp=None, timeout=600, name="guest",
         extra=(), expect_rc=0):
    """Boot a guest that runs script; disks: [(file, serial, fmt)]. Returns the console."""
    path = w.p(f"{name}.sh")
    open(path, "w").write("set -e\n" + script)
    log_path = w.p(f"{name}.console")
    cmd = [RUN_GUEST, "--timeout", str(timeout), "--log", log_path, "--script", path,
           "--add", f"{TOOL}:/bin/vbackup"]
    for f, serial, fmt in disks:
        cmd += ["--disk", f"{f},serial={serial},format={fmt}"]
    if vbackup_socket:
        cmd += ["--vbackup-socket", vbackup_socket]
    if qmp:
        cmd += ["--qmp", qmp]
    cmd += list(extra)
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True)
    console = open(log_path, errors="replace").read() if os.path.exists(log_path) else ""
    if expect_rc is not None and r.returncode != expect_rc:
        print(console[-6000:])
        print(r.stderr[-2000:])
        daemonlib.fail(f"guest {name} exited {r.returncode} (expected {expect_rc})")
    log(f"guest {name}: {time.monotonic() - t0:.1f} s")
    return console


class Mailbox:
    """How a guest waits for the host to have done something, instead of
    sleeping for a while: a small raw disk (serial "mailbox", give
    mailbox.disk() last in boot's disks) in which the host writes a word,
    and await_host WORD in the guest (put Mailbox.SHELL in its script) polls
    it, bypassing the guest's page cache.  The guest gives up after 120 s,
    a safety net."""

    SHELL = r"""
await_host() {
    mb=
    for b in /sys/block/vd*; do
        [ "$(cat "$b/serial" 2>/dev/null)" = mailbox ] && mb=/dev/${b##*/}
    done
    [ -n "$mb" ] || { echo "FAIL no mailbox disk"; exit 10; }
    i=0
    until echo 1 > /proc/sys/vm/drop_caches && [ "$(head -c 64 "$mb" | tr -d '\000')" = "$1" ]; do
        i=$((i + 1))
        [ $i -lt 1200 ] || { echo "FAIL the host did not say $1 within 120 s"; exit 10; }
        sleep 0.1
    done
}
"""

    def __init__(self, w, name="mailbox"):
        self.path = w.p(f"{name}.raw")
        with open(self.path, "wb") as f:
            f.truncate(1 << 20)

    def disk(self):
        return (self.path, "mailbox", "raw")

    def post(self, word):
        with open(self.path, "r+b") as f:
            f.write(word.encode().ljust(512, b"\0"))
            f.flush()
            os.fsync(f.fileno())


def partitioned_ext4(path, tree, size_mb=512, start_mb=1):
    """A disk with an MBR partition table and an ext4 file system in partition 1."""
    run("truncate", "-s", f"{size_mb}M", path)
    subprocess.run(["sfdisk", "-q", path], input=f"start={start_mb * 2048}, type=83\n",
                   text=True, check=True)
    run("mkfs.ext4", "-q", "-F", "-E", f"offset={start_mb << 20},root_owner=0:0", "-d", tree,
        path, f"{size_mb - start_mb - 1}M")
    return start_mb << 20


def _daemon_pid(prog):
    """The pid in /run/PROG.pid if that process runs PROG, else None."""
    try:
        pid = int(open(f"/run/{prog}.pid").read().strip())
        with open(f"/proc/{pid}/comm") as f:
            return pid if f.read().strip() == prog else None
    except (OSError, ValueError):
        return None


def ensure_libvirtd():
    """Start virtlogd and libvirtd as the brief describes (users, groups, folders).
    Returns a function that stops what was started here."""
    started = []
    for grp in ("kvm", "libvirt-qemu"):
        if subprocess.run(["getent", "group", grp], capture_output=True).returncode:
            run("groupadd", "-r", grp)
    if subprocess.run(["getent", "passwd", "libvirt-qemu"], capture_output=True).returncode:
        run("useradd", "-r", "-g", "libvirt-qemu", "-G", "kvm", "-d", "/var/lib/libvirt",
            "-s", "/usr/sbin/nologin", "libvirt-qemu")
    for d in ("/var/log/libvirt", "/var/run/libvirt", "/var/lib/libvirt"):
        os.makedirs(d, exist_ok=True)
    for prog in ("virtlogd", "libvirtd"):
        if subprocess.run(["pgrep", "-x", prog], capture_output=True).returncode:
            run(prog, "-d")
            # its pid, from the pid file it writes (one left by an earlier
            # daemon names a process that is gone or is not this program)
            started.append(wait_for(lambda: _daemon_pid(prog), f"{prog}'s pid file",
                                    timeout=60))
    deadline = time.monotonic() + 120          # a safety net: it takes seconds
    while subprocess.run(["virsh", "-c", "qemu:///system", "list"],
                         capture_output=True).returncode:
        if time.monotonic() > deadline:
            daemonlib.fail("libvirtd did not answer 'virsh list' within 120 s")
        time.sleep(0.1)

    def stop():                                 # what was started here, by its pid
        # ... unless a domain still runs: another test (of another checkout on
        # this host) found the daemons running and uses them now
        if subprocess.run(["virsh", "-c", "qemu:///system", "list", "--name"],
                          capture_output=True, text=True).stdout.strip():
            return
        for pid in reversed(started):
            try:
                os.kill(pid, 15)
            except ProcessLookupError:
                pass
    return stop


VIRSH = ["virsh", "-q", "-c", "qemu:///system"]


def virsh(*args, check_rc=True):
    """virsh on qemu:///system; its output.  Fails the test when it fails,
    unless check_rc is False."""
    r = subprocess.run(VIRSH + list(args), capture_output=True, text=True)
    if check_rc and r.returncode:
        daemonlib.fail(f"virsh {' '.join(args)}: {r.stdout}{r.stderr}")
    return r.stdout


def file_disk(path, fmt, dev, serial):
    """A <disk> of a domain: an image file of the given format."""
    return (f"<disk type='file' device='disk'><driver name='qemu' type='{fmt}'/>"
            f"<source file='{path}'/><target dev='{dev}' bus='virtio'/>"
            f"<serial>{serial}</serial></disk>")


def domain_xml(name, qemu, console, disks, kernel=None, initrd=None, sock=None, vcpu=1):
    """The test domains' XML (type qemu, TCG): the guest kernel and initrd
    given, or the firmware booting the first disk; disks as <disk> elements
    (file_disk); with sock, the virtio-backup device on vbackupd's socket."""
    if kernel:
        os_xml = (f"<os><type arch='x86_64' machine='q35'>hvm</type><kernel>{kernel}</kernel>"
                  f"<initrd>{initrd}</initrd><cmdline>console=ttyS0 quiet panic=-1</cmdline></os>")
    else:
        os_xml = "<os><type arch='x86_64' machine='q35'>hvm</type><boot dev='hd'/></os>"
    device = ""
    if sock:
        device = (f"<qemu:arg value='-chardev'/><qemu:arg value='socket,id=vbackup0,path={sock},"
                  "reconnect=1'/><qemu:arg value='-device'/><qemu:arg value='virtio-backup-pci,"
                  "chardev=vbackup0,id=vbackup0,bus=pcie.0,addr=0x10'/>")
    disks_xml = "\n    ".join(disks)
    return f"""<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>{name}</name>
  <memory unit='MiB'>512</memory>
  <vcpu>{vcpu}</vcpu>
  {os_xml}
  <on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>
  <devices>
    <emulator>{qemu}</emulator>
    {disks_xml}
    <serial type='file'><source path='{console}'/><target port='0'/></serial>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-L'/><qemu:arg value='/usr/share/seabios'/>
    <qemu:arg value='-L'/><qemu:arg value='/usr/share/qemu'/>
    {device}
  </qemu:commandline>
</domain>
"""


def guest_initrd(w, script, adds=(), name="initrd"):
    """The test initramfs with /test.sh and extra files (as run-guest builds it)."""
    import gzip
    sys.path.insert(0, os.path.join(SRC, "tests/guest"))
    from vbguest import Cpio, add_host_file
    cpio = Cpio()
    cpio.file("test.sh", ("set -e\n" + script).encode(), 0o755)
    add_host_file(cpio, TOOL, "/bin/vbackup")
    for host, guest in adds:
        add_host_file(cpio, host, guest)
    path = w.p(f"{name}.img")
    with open(os.environ["INITRD"], "rb") as src, open(path, "wb") as dst:
        dst.write(src.read())
        dst.write(b"\0" * (-dst.tell() % 4))
        dst.write(gzip.compress(cpio.finish(), compresslevel=1, mtime=0))
    return path


# the MBR boot code of the package install-deps installs (extlinux); Debian's
# syslinux-common, which extlinux only recommends, has the same at
# /usr/lib/syslinux/mbr/mbr.bin
SYSLINUX_MBR = "/usr/lib/EXTLINUX/mbr.bin"


def bootable_disk(w, path, size_mb, script, boot_mb=24, data_tree=None, data_mb=0):
    """A disk that the firmware boots, as a VM's system disk is booted: the
    MBR holds syslinux's boot code and the partition table; partition 1
    (from 1 MiB, boot_mb MiB, bootable, ext2: extlinux reads no ext4 with
    today's mkfs defaults) holds extlinux, the guest kernel and an initramfs
    whose /test.sh is script; partition 2 (right after it, data_mb MiB,
    ext4) holds data_tree when given.  Boot it with run-guest --boot-disk.
    Call artifacts() first.  Returns [(start, size)] of the partitions in
    bytes."""
    sys.path.insert(0, os.path.join(SRC, "tests/guest"))
    from vbguest import make_initrd
    parts = [(1 << 20, boot_mb << 20)]
    if data_tree is not None:
        parts.append((parts[0][0] + parts[0][1], data_mb << 20))
    check(parts[-1][0] + parts[-1][1] <= size_mb << 20, "bootable_disk: the partitions do not fit")
    boot = w.p(os.path.basename(path) + ".boot")
    os.makedirs(os.path.join(boot, "boot"))
    shutil.copyfile(f"/boot/vmlinuz-{os.environ['KVER']}", os.path.join(boot, "boot/vmlinuz"))
    make_initrd(os.environ["INITRD"], "set -e\n" + script, [], os.path.join(boot, "boot/initrd.img"))
    with open(os.path.join(boot, "boot/extlinux.conf"), "w") as f:
        f.write("DEFAULT vb\nPROMPT 0\nTIMEOUT 0\nLABEL vb\n  LINUX /boot/vmlinuz\n"
                "  INITRD /boot/initrd.img\n  APPEND console=ttyS0 quiet panic=-1\n")
    run("truncate", "-s", f"{size_mb}M", path)
    table = "".join(f"start={s >> 9}, size={n >> 9}, type=83{', bootable' if i == 0 else ''}\n"
                    for i, (s, n) in enumerate(parts))
    subprocess.run(["sfdisk", "-q", path], input=table, text=True, check=True)
    run("mkfs.ext2", "-q", "-F", "-E", f"offset={parts[0][0]},root_owner=0:0", "-d", boot, path,
        f"{parts[0][1] >> 10}k")
    if data_tree is not None:
        run("mkfs.ext4", "-q", "-F", "-E", f"offset={parts[1][0]},root_owner=0:0", "-d",
            data_tree, path, f"{parts[1][1] >> 10}k")
    shutil.rmtree(boot)
    # extlinux installs into a mounted file system: its boot sector, and
    # ldlinux.sys at sectors it then records (relative to the partition;
    # the MBR code hands over the partition's start)
    mnt = tempfile.mkdtemp(prefix="boot.", dir=w.path)
    run("mount", "-o", f"loop,offset={parts[0][0]},sizelimit={parts[0][1]}", path, mnt)
    w.mounts.append(mnt)
    try:
        r = subprocess.run(["extlinux", "--install", os.path.join(mnt, "boot")],
                           capture_output=True, text=True)
        check(r.returncode == 0, f"extlinux --install failed: {r.stdout}{r.stderr}")
    finally:
        run("umount", mnt)
        w.mounts.remove(mnt)
        os.rmdir(mnt)
    with open(SYSLINUX_MBR, "rb") as f:
        mbr = f.read()
    check(len(mbr) <= 440, f"{SYSLINUX_MBR} is larger than an MBR's boot code")
    with open(path, "r+b") as f:
        f.write(mbr)
    return parts
