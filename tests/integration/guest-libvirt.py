#!/usr/bin/env python3
"""libvirt: a real libvirtd (started here) runs a domain (type qemu, the
QEMU built here as <emulator>, the virtio-backup device through
<qemu:commandline>, disks with <serial>).  vbackupd, given only
[libvirt] uri, discovers the domain, creates its socket when it starts and
removes it when it stops, and takes the point-in-time view through libvirt
(disk-only external snapshot, active block commit with pivot).  The guest
backs up, restores elsewhere and in place, byte for byte; afterwards the
domain's images carry no overlay and no file is left behind.

A second domain runs at the same time with a disk of the same serial on
another image: each domain's snapshot holds its own image's files, and a
request on the second domain's socket that names a disk of the first is
refused (NOT_OWNED).  A domain's socket serves only the domain's QEMU (the
pid libvirt writes into /run/libvirt/qemu/NAME.pid): a connection of this
test's process is refused and logged, so the foreign disk is asked for from
inside the second guest, once the host has seen both domains run."""
import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from guestlib import (Daemon, Mailbox, artifacts, check, ensure_libvirtd, fail,  # noqa
                      guest_initrd, log, make_ext4, wait_for, workdir, run, VBACKUPCTL)
import vbproto as vp  # noqa: E402

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

SCRIPT_B = Mailbox.SHELL + """
mkdir -p /data && mount /dev/vda /data
vbackup backup /data --to archive --mode full
umount /data
await_host BOTH-RUN
# B's socket is B, whatever the request names: A's disk is not B's
if vbackup backup-disk --to archive scratchA; then echo B-FOREIGN-ACCEPTED
else echo B-FOREIGN-REFUSED; fi
echo B-DONE
sleep 600     # stays up until the host has seen both domains run, then destroyed
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
      <source file='{scratch}'/><target dev='vdb' bus='virtio'/><serial>{scratch_serial}</serial></disk>
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
    name_b = f"{name}-b"
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
                            initrd=guest_initrd(w, SCRIPT), data=data, scratch_serial="scratchA",
                            scratch=w.p("scratch.raw"), console=w.p("console.log"), sock=sock)
        open(w.p("domain.xml"), "w").write(xml)
        # the second domain: its own image behind the same serial data0
        tree_b = w.p("tree-b")
        os.makedirs(tree_b + "/srv")
        with open(tree_b + "/srv/b-only.txt", "w") as f:
            f.write("this file is on domain B's disk\n")
        data_b = make_ext4(w.p("data-b.qcow2"), tree_b, size="64M", fmt="qcow2")
        mailbox_b = Mailbox(w, "mailbox-b")     # B's second disk: the host's word
        sock_b = f"{rundir}/{name_b}.sock"
        open(w.p("domain-b.xml"), "w").write(DOMAIN.format(
            name=name_b, kernel=env["KERNEL"], qemu=env["QEMU"],
            initrd=guest_initrd(w, SCRIPT_B, name="initrd-b"), data=data_b,
            scratch_serial="mailbox", scratch=mailbox_b.path,
            console=w.p("console-b.log"), sock=sock_b))
        t0 = time.monotonic()
        # B first: it backs up, then stays up while A runs
        for xml_path in (w.p("domain-b.xml"), w.p("domain.xml")):
            r = subprocess.run(VIRSH + ["create", xml_path], capture_output=True, text=True)
            check(r.returncode == 0, f"virsh create {xml_path}: {r.stderr}")
        seen_socket = probed = False
        while time.monotonic() - t0 < 600:
            seen_socket = seen_socket or os.path.exists(sock)
            if not probed and os.path.exists(sock) and os.path.exists(sock_b):
                # B's socket serves B's QEMU only: this process is refused, and logged
                try:
                    c = vp.Conn(sock_b)
                    c.hello()
                    fail("B's socket served a process that is not B's QEMU")
                except (EOFError, ConnectionError, OSError):
                    pass
                wait_for(lambda: f"VM {name_b}: refusing a connection: pid {os.getpid()} "
                         in d.log_text(), "the log line refusing this process on B's socket")
                line = [ln for ln in d.log_text().splitlines()
                        if f"VM {name_b}: refusing a connection: pid {os.getpid()} " in ln][-1]
                check("is not the VM's QEMU" in line and f"/{name_b}.pid" in line,
                      f"the refusal does not name B's QEMU and pidfile: {line}")
                # B asks for A's disk now that both run (guest B's script)
                mailbox_b.post("BOTH-RUN")
                probed = True
            names = subprocess.run(VIRSH + ["list", "--name"], capture_output=True,
                                   text=True).stdout.split()
            cb = open(w.p("console-b.log"), errors="replace").read() \
                if os.path.exists(w.p("console-b.log")) else ""
            if name not in names and ("B-DONE" in cb or "VBACKUP-GUEST-EXIT" in cb):
                break           # both done (or B's script failed: checked below)
            time.sleep(0.2)
        else:
            fail("the domains did not finish")
        subprocess.run(VIRSH + ["destroy", name_b], capture_output=True)
        check(probed, "the two domains never ran at the same time")
        log(f"domains ran {time.monotonic() - t0:.1f} s")
        console_b = open(w.p("console-b.log"), errors="replace").read()
        check("B-DONE" in console_b, f"guest B:\n{console_b[-3000:]}")
        # A's disk through B's socket (B's own QEMU): NOT_OWNED, naming the disk
        check("B-FOREIGN-REFUSED" in console_b and "B-FOREIGN-ACCEPTED" not in console_b,
              f"B's socket and A's disk scratchA:\n{console_b[-3000:]}")
        check(f"{name_b}: BACKUP_BEGIN: disk 'scratchA' is not attached to VM {name_b}"
              in d.log_text(), f"B's BEGIN of A's disk was not refused as NOT_OWNED:\n"
              f"{d.log_text()[-3000:]}")
        console = open(w.p("console.log"), errors="replace").read()
        m = re.findall(r"VBACKUP-GUEST-EXIT=(\d+)", console)
        if not m or m[-1] != "0":
            print(console[-5000:])
            print(d.log_text()[-3000:])
            fail(f"guest exit {m}")
        check("LIBVIRT-RESTORE-OK" in console, "restores differ")
        check(seen_socket, "vbackupd never created the domain's socket")
        # the stop events remove the sockets (60 s: a safety net for libvirt's events)
        wait_for(lambda: not os.path.exists(sock), "the socket to go after the domain stopped")
        wait_for(lambda: not os.path.exists(sock_b),
                 "the socket to go after the domain was destroyed")
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
        # each domain's data0 is its own image
        def tree_of(vm):
            snaps = json.loads(subprocess.run(
                [VBACKUPCTL, "--repo", d.targets["archive"], "snapshots", "--vm", vm, "--json"],
                capture_output=True, text=True, check=True).stdout)
            out = subprocess.run([VBACKUPCTL, "--repo", d.targets["archive"], "ls",
                                  snaps[-1]["id"]], capture_output=True, text=True, check=True)
            return out.stdout
        check("b-only.txt" in tree_of(name_b) and "notes.txt" not in tree_of(name_b),
              f"B's snapshot:\n{tree_of(name_b)}")
        check("notes.txt" in tree_of(name) and "b-only.txt" not in tree_of(name),
              f"A's snapshot:\n{tree_of(name)}")
        frozen = re.findall(r"frozen for ([0-9.]+) s", console)
        log(f"ok: libvirt domain discovered, view via libvirt (frozen {', '.join(frozen)} s), "
            "restores exact, overlays committed back")
        check(d.stop() == 0, "vbackupd exit")
    finally:
        subprocess.run(VIRSH + ["destroy", name], capture_output=True)
        subprocess.run(VIRSH + ["destroy", name_b], capture_output=True)
        stop_libvirt()
