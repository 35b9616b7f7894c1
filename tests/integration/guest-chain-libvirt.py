#!/usr/bin/env python3
"""The point-in-time view of disks with backing chains through libvirt: the
scenario of guest-chain.py (chainlib.py) with every VM a libvirt domain
(a real libvirtd, started here as guest-libvirt.py does).  vbackupd takes
each view with a disk-only external snapshot and folds it back with a
shallow active block commit and a pivot; it must land in the domain's own
top image and nowhere else.  QEMU's chain is read after every backup with
query-block through libvirt (virsh qemu-monitor-command)."""
import json
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from guestlib import (Daemon, artifacts, check, ensure_libvirtd, guest_initrd, log,  # noqa: E402
                      workdir)
from chainlib import GUEST, PHASES, VMS, Chains, StepWatch, check_after, check_reboot  # noqa

VIRSH = ["virsh", "-q", "-c", "qemu:///system"]

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
      <source file='{top}'/><target dev='vda' bus='virtio'/><serial>data0</serial></disk>
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


def running():
    return subprocess.run(VIRSH + ["list", "--name"], capture_output=True,
                          text=True).stdout.split()


def query_block(domain):
    out = subprocess.run(VIRSH + ["qemu-monitor-command", domain, '{"execute":"query-block"}'],
                         capture_output=True, text=True, timeout=30)
    if out.returncode:
        raise RuntimeError(f"query-block of {domain}: {out.stderr.strip()}")
    return json.loads(out.stdout)["return"]


with workdir() as w:
    env = artifacts()
    stop_libvirt = ensure_libvirtd()
    prefix = f"vbchain-{os.getpid()}"
    names = {vm: f"{prefix}-{vm}" for vm in VMS}
    try:
        os.chmod(w.path, 0o755)            # QEMU runs as libvirt-qemu
        chains = Chains(w)
        rundir = f"/run/vbackup-test-{os.getpid()}"
        d = Daemon(w, {}, batch_seconds=0.3,
                   extra={"runtime_dir": rundir, "socket_group": "libvirt-qemu"})
        conf = open(d.conf).read() + "\n[libvirt]\nuri = qemu:///system\n"
        open(d.conf, "w").write(conf.replace(f"runtime_dir={d.run_dir}\n", ""))
        d.run_dir = rundir
        d.start()
        consoles = {vm: w.p(f"{vm}.console") for vm in VMS}
        # the daemon names VMs after their domains; the scenario after its letters
        watch = StepWatch(chains, consoles, lambda vm: query_block(names[vm]))
        t0 = time.time()
        for phase in PHASES:
            creating = {}
            for vm in phase:
                xml = DOMAIN.format(name=names[vm], kernel=env["KERNEL"], qemu=env["QEMU"],
                                    initrd=guest_initrd(w, GUEST.replace("{vm}", vm),
                                                        name=f"initrd-{vm}"),
                                    top=chains.top(vm), console=consoles[vm],
                                    sock=f"{rundir}/{names[vm]}.sock")
                path = w.p(f"{vm}.xml")
                open(path, "w").write(xml)
            # virsh create can take longer than a guest's whole run here: all at once
            for vm in phase:
                creating[vm] = subprocess.Popen(VIRSH + ["create", w.p(f"{vm}.xml")],
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                                text=True)
            deadline = time.time() + 600

            def alive(vm):
                return time.time() < deadline and (creating[vm].poll() is None or
                                                   names[vm] in running())
            watchers = [threading.Thread(target=watch.follow, args=(vm, lambda v=vm: alive(v)))
                        for vm in phase]
            for t in watchers:
                t.start()
            for t in watchers:
                t.join()
            for vm in phase:
                out, err = creating[vm].communicate()
                check(creating[vm].returncode == 0, f"virsh create {vm}: {err}")
            check(time.time() < deadline, f"the domains {phase} did not finish")
            log(f"domains {', '.join(phase)} ran, {time.time() - t0:.1f} s since the first "
                "started")
        log(f"QEMU was back on its own top image after {len(watch.events)} backups")
        texts = check_after(w, chains, d, consoles, watch, vm_name=names)
        check(d.stop() == 0, "vbackupd exit")
        check_reboot(w, chains, texts)
        log("ok: libvirt domains, clones on a raw base (2 deep) and a qcow2 base (3 deep), "
            "together and alone, backed up 3 times each through libvirt views; the shared "
            "images are untouched and every VM keeps its data")
    finally:
        for n in names.values():
            subprocess.run(VIRSH + ["destroy", n], capture_output=True)
        stop_libvirt()
