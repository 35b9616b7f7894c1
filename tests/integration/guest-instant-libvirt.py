#!/usr/bin/env python3
"""Boot from a backup and restore it live under libvirt, with the settings
docs/instant-access.md gives (a real libvirtd started here).

As guest-instant, but the domain is libvirt's: vbackupctl boot-from serves
the backup of a guest's system disk on a UNIX socket given to the group
libvirt-qemu (--socket-group: QEMU runs as that user), and makes the overlay; the domain's disk is
the overlay with the export as its <backingStore> (type network, protocol
nbd, export name the snapshot id, format raw).  The guest boots from it
through the firmware before anything was restored and keeps writing while
virsh blockpull --wait copies the disk into the overlay.  Then libvirt's
picture of the disk has no backing store, the export stops while the guest
runs, and the overlay stands alone and equals the snapshot plus the
guest's writes."""
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from guestlib import (Mailbox, artifacts, check, ensure_libvirtd, fail, log,  # noqa: E402
                      wait_for, workdir)
from instantlib import Procs, System, boot_from, console_has  # noqa: E402

VIRSH = ["virsh", "-q", "-c", "qemu:///system"]

DOMAIN = """<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>{name}</name>
  <memory unit='MiB'>512</memory>
  <vcpu>2</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type><boot dev='hd'/></os>
  <on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>
  <devices>
    <emulator>{qemu}</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{overlay}'/>
      <backingStore type='network'>
        <format type='raw'/>
        <source protocol='nbd' name='{snap}'>
          <host transport='unix' socket='{sock}'/>
        </source>
      </backingStore>
      <target dev='vda' bus='virtio'/>
      <serial>data0</serial>
    </disk>
    <disk type='file' device='disk'><driver name='qemu' type='raw'/>
      <source file='{mailbox}'/><target dev='vdb' bus='virtio'/><serial>mailbox</serial></disk>
    <serial type='file'><source path='{console}'/><target port='0'/></serial>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-L'/><qemu:arg value='/usr/share/seabios'/>
    <qemu:arg value='-L'/><qemu:arg value='/usr/share/qemu'/>
  </qemu:commandline>
</domain>
"""


def virsh(*args, check_rc=True):
    r = subprocess.run(VIRSH + list(args), capture_output=True, text=True)
    if check_rc and r.returncode:
        fail(f"virsh {' '.join(args)}: {r.stdout}{r.stderr}")
    return r.stdout


def vda_xml(name):
    xml = virsh("dumpxml", name)
    m = re.search(r"<disk [^>]*>(?:(?!</disk>).)*<target dev='vda'.*?</disk>", xml, re.S)
    check(m, f"no disk vda in the domain's XML:\n{xml}")
    return m.group(0)


with workdir() as w:
    env = artifacts()
    stop_libvirt = ensure_libvirtd()
    name = f"vbinstant-{os.getpid()}"
    try:
        os.chmod(w.path, 0o755)            # QEMU runs as libvirt-qemu
        system = System(w)
        procs = Procs(w, w.p("boot-from.log"))
        overlay = w.p("vm1.qcow2")
        sock = w.p("vm1.nbd")
        # QEMU runs as libvirt-qemu: the socket is given to its group
        bf, _ = boot_from(w, procs, system, overlay,
                          extra=("--unix", sock, "--socket-group", "libvirt-qemu"))
        mailbox = Mailbox(w)
        console = w.p("guest.console")
        xml = DOMAIN.format(name=name, qemu=env["QEMU"], overlay=overlay, snap=system.snap,
                            sock=sock, mailbox=mailbox.path, console=console)
        open(w.p("domain.xml"), "w").write(xml)
        r = subprocess.run(["virt-xml-validate", w.p("domain.xml"), "domain"],
                           capture_output=True, text=True)
        check(r.returncode == 0, f"the domain XML does not validate: {r.stdout}{r.stderr}")

        # ---- the domain boots from the overlay ------------------------------------------------
        t0 = time.monotonic()
        virsh("create", w.p("domain.xml"))

        def running():
            return name in virsh("list", "--name").split()
        wait_for(lambda: console_has(console, "READY-FOR-RESTORE") or not running(),
                 "the guest to read the backup and write its first block", timeout=600)
        text = open(console, errors="replace").read() if os.path.exists(console) else ""
        if not running():
            print(text[-4000:])
            fail("the domain ended before the guest had read its files")
        system.check_booted(text)
        disk = vda_xml(name)
        check("protocol='nbd'" in disk and system.snap in disk,
              f"libvirt does not show the export as the disk's backing store:\n{disk}")
        log(f"the domain booted from the backup and read its files {time.monotonic() - t0:.1f} s "
            "after it started, before any restore")

        # ---- virsh blockpull while the guest writes ------------------------------------------
        t1 = time.monotonic()
        out = virsh("blockpull", name, "vda", "--wait", "--bandwidth", "16")
        log(f"virsh blockpull: {out.strip().splitlines()[-1] if out.strip() else ''} "
            f"({time.monotonic() - t1:.1f} s)")
        disk = vda_xml(name)
        check("protocol='nbd'" not in disk, f"libvirt still shows the export under vda:\n{disk}")
        bf.send_signal(signal.SIGINT)          # the export is no longer needed
        check(bf.wait(timeout=60) == 0, "boot-from did not stop cleanly on SIGINT")
        mailbox.post("done")
        wait_for(lambda: not running(), "the guest to finish and the domain to stop", timeout=600)
        text = open(console, errors="replace").read()
        status = re.findall(r"VBACKUP-GUEST-EXIT=(\d+)", text)
        if status != ["0"]:
            print(text[-4000:])
            fail(f"the guest failed after the live restore: {status}")
        writes = system.check_after(text)
        log(f"the guest wrote {writes} blocks of 64 KiB: one before the copy, the others during "
            "and after it")
        system.check_overlay(w, overlay, writes)
        log(f"ok: under libvirt, the domain booted on the backup of {system.snap} at once and "
            f"virsh blockpull made its disk a standalone image equal to the snapshot plus its "
            f"{writes} writes")
    finally:
        subprocess.run(VIRSH + ["destroy", name], capture_output=True)
        stop_libvirt()
