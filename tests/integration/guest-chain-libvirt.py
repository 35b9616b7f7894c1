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
from guestlib import (VIRSH, Daemon, artifacts, check, domain_xml, ensure_libvirtd,  # noqa
                      file_disk, guest_initrd, log, workdir)
from chainlib import GUEST, PHASES, VMS, Chains, StepWatch, check_after, check_reboot  # noqa

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
        t0 = time.monotonic()
        for phase in PHASES:
            creating = {}
            for vm in phase:
                xml = domain_xml(names[vm], env["QEMU"], consoles[vm],
                                 [file_disk(chains.top(vm), "qcow2", "vda", "data0")],
                                 kernel=env["KERNEL"],
                                 initrd=guest_initrd(w, GUEST.replace("{vm}", vm),
                                                     name=f"initrd-{vm}"),
                                 sock=f"{rundir}/{names[vm]}.sock")
                path = w.p(f"{vm}.xml")
                open(path, "w").write(xml)
            # virsh create can take longer than a guest's whole run here: all at once
            for vm in phase:
                creating[vm] = subprocess.Popen(VIRSH + ["create", w.p(f"{vm}.xml")],
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                                text=True)
            deadline = time.monotonic() + 600

            def alive(vm):
                return time.monotonic() < deadline and (creating[vm].poll() is None or
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
            check(time.monotonic() < deadline, f"the domains {phase} did not finish")
            log(f"domains {', '.join(phase)} ran, {time.monotonic() - t0:.1f} s since the first "
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
