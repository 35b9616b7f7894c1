#!/usr/bin/env python3
"""libvirt: a real libvirtd (started here) runs a domain (type qemu, the
QEMU built here as <emulator>, the virtio-backup device through
<qemu:commandline>, disks with <serial>).  vbackupd, given only
[libvirt] uri, discovers the domain, creates its socket when it starts and
removes it when it stops, and takes the point-in-time view through libvirt
(disk-only external snapshot, active block commit with pivot).  The guest
backs up, restores elsewhere and in place, byte for byte; afterwards the
domain's images carry no overlay and no file is left behind."""
import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from guestlib import (Daemon, artifacts, check, ensure_libvirtd, fail, guest_initrd, log,  # noqa
                      make_ext4, workdir, run)

VIRSH = ["virsh", "-q", "-c", "qemu:///system"]

SCRIPT = """
mkdir -p /data /restore && mount /dev/vda /data && mount /dev/vdb /restore
vbackup backup /data --to archive --mode full
echo changed >> /data/srv/notes.txt
vbackup backup /data --to archive --mode incremental
(cd /data && find . -type f -exec sha256sum {} + | sort -k2) > /tmp/before
vbackup restore /data --from archive --into /restore
(cd /restore/data && find . -type f -exec sha256sum {} + | sort -k2) > /tmp/into
rm -rf /data/srv
vbackup restore /data --from archive
(cd /data && find . -type f -exec sha256sum {} + | sort -k2) > /tmp/after
cmp /tmp/before /tmp/into && cmp /tmp/before /tmp/after && echo LIBVIRT-RESTORE-OK
umount /data /restore
"""

DOMAIN = """<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>{name}</name>
  <memory unit='MiB'>512</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type>
    <kernel>{kernel}</kernel><initrd>{initrd}</initrd>
    <cmdline>console=ttyS0 quiet panic=-1</cmdline></os>
  <on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>
  <devices>
    <emulator>{qemu}</emulator>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='{data}'/><target dev='vda' bus='virtio'/><serial>data0</serial></disk>
    <disk type='file' device='disk'><driver name='qemu' type='raw'/>
      <source file='{scratch}'/><target dev='vdb' bus='virtio'/></disk>
    <serial type='file'><source path='{console}'/><target port='0'/></serial>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-L'/><qemu:arg value='/usr/share/seabios'/>
    <qemu:arg value='-L'/><qemu:arg value='/usr/share/qemu'/>
    <qemu:arg value='-chardev'/><qemu:arg value='socket,id=vbackup0,path={sock},reconnect=1'/>
    <qemu:arg value='-device'/><qemu:arg value='virtio-backup-pci,chardev=vbackup0,id=vbackup0,bus=pcie.0,addr=0x10'/>
  </qemu:commandline>
</domain>
"""

with workdir() as w:
    env = artifacts()
    stop_libvirt = ensure_libvirtd()
    name = f"vbtest-{os.getpid()}"
    try:
        example = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                               "../../docs/examples/libvirt-domain.xml")
        r = subprocess.run(["virt-xml-validate", example, "domain"], capture_output=True, text=True)
        check(r.returncode == 0, f"the example domain XML does not validate: {r.stdout}{r.stderr}")
        os.chmod(w.path, 0o755)            # QEMU runs as libvirt-qemu
        tree = w.p("tree")
        os.makedirs(tree + "/srv")
        with open(tree + "/srv/notes.txt", "w") as f:
            f.write("notes\n" * 1000)
        with open(tree + "/srv/blob.bin", "wb") as f:
            f.write(os.urandom(3 << 20))
        data = make_ext4(w.p("data.qcow2"), tree, size="256M", fmt="qcow2")
        run("truncate", "-s", "256M", w.p("scratch.raw"))
        run("mkfs.ext4", "-q", "-F", w.p("scratch.raw"))
        rundir = f"/run/vbackup-test-{os.getpid()}"
        d = Daemon(w, {}, batch_seconds=0.5,
                   extra={"runtime_dir": rundir, "socket_group": "libvirt-qemu"})
        conf = open(d.conf).read() + "\n[libvirt]\nuri = qemu:///system\n"
        open(d.conf, "w").write(conf.replace(f"runtime_dir={d.run_dir}\n", ""))
        d.run_dir = rundir
        d.start()
        sock = f"{rundir}/{name}.sock"
        xml = DOMAIN.format(name=name, kernel=env["KERNEL"], qemu=env["QEMU"],
                            initrd=guest_initrd(w, SCRIPT), data=data,
                            scratch=w.p("scratch.raw"), console=w.p("console.log"), sock=sock)
        open(w.p("domain.xml"), "w").write(xml)
        t0 = time.time()
        r = subprocess.run(VIRSH + ["create", w.p("domain.xml")], capture_output=True, text=True)
        check(r.returncode == 0, f"virsh create: {r.stderr}")
        seen_socket = False
        while time.time() - t0 < 600:
            seen_socket = seen_socket or os.path.exists(sock)
            if name not in subprocess.run(VIRSH + ["list", "--name"], capture_output=True,
                                          text=True).stdout:
                break
            time.sleep(0.2)
        else:
            fail("the domain did not finish")
        log(f"domain ran {time.time() - t0:.1f} s")
        console = open(w.p("console.log"), errors="replace").read()
        m = re.findall(r"VBACKUP-GUEST-EXIT=(\d+)", console)
        if not m or m[-1] != "0":
            print(console[-5000:])
            print(d.log_text()[-3000:])
            fail(f"guest exit {m}")
        check("LIBVIRT-RESTORE-OK" in console, "restores differ")
        check(seen_socket, "vbackupd never created the domain's socket")
        for _ in range(50):                  # the stop event removes the socket
            if not os.path.exists(sock):
                break
            time.sleep(0.1)
        check(not os.path.exists(sock), "the socket stayed after the domain stopped")
        text = d.log_text()
        check(f"libvirt: domain {name} has the device" in text, "not discovered via libvirt")
        check("committed back" in text and "FAILED" not in text, f"commit back:\n{text[-2000:]}")
        jobs = [j for j in d.ctl_json("jobs") if j["kind"] == "files"]
        plan = d.ctl_json("job", str(jobs[0]["id"]))["plan"]
        check(any("snapshot of 1 disk taken" in p for p in plan), f"plan: {plan}")
        info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", data],
                                         capture_output=True, text=True).stdout)
        check("backing-filename" not in info, f"an overlay is still attached: {info}")
        check(not [f for f in os.listdir(w.path) if ".vbackup-" in f], "overlay files left")
        frozen = re.findall(r"frozen for ([0-9.]+) s", console)
        log(f"ok: libvirt domain discovered, view via libvirt (frozen {', '.join(frozen)} s), "
            "restores exact, overlays committed back")
        check(d.stop() == 0, "vbackupd exit")
    finally:
        subprocess.run(VIRSH + ["destroy", name], capture_output=True)
        stop_libvirt()
