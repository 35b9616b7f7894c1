#!/usr/bin/env python3
"""The point-in-time view (QMP) of disks with backing chains: six guests,
clones of a raw base (2 deep) and of a qcow2 base under a middle image
(3 deep), back themselves up three times each (full, incremental,
incremental); four run at the same time, two clones on each shared image,
then two more, each alone on its chain.  The overlay vbackupd puts on each disk
must be committed into the VM's own top image and nowhere else: the shared
images keep their sha256, QEMU runs on the same chain after every backup,
every snapshot holds what its guest had at that moment, and a new QEMU on
the same top images reads every VM's writes back.  (The scenario and its
checks: chainlib.py; the same through libvirt: guest-chain-libvirt.py.)"""
import json
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from guestlib import Daemon, SRC, artifacts, boot, check, log, workdir  # noqa: E402
from chainlib import GUEST, PHASES, VMS, Chains, StepWatch, check_after, check_reboot  # noqa: E402

QMP_CALL = os.path.join(SRC, "tests/guest/qmp-call.py")


def query_block(sock):
    out = subprocess.run([sys.executable, QMP_CALL, sock, "query-block"], capture_output=True,
                         text=True, timeout=30)
    if out.returncode:
        raise RuntimeError(f"qmp query-block on {sock}: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.splitlines()[-1])["return"]


with workdir() as w:
    artifacts()
    chains = Chains(w)
    qmp = {vm: w.p(f"{vm}.qmp") for vm in VMS}
    d = Daemon(w, {vm: {"data0": chains.top(vm)} for vm in VMS}, batch_seconds=0.3)
    conf = open(d.conf).read()
    for vm in VMS:
        conf = conf.replace(f"[vm {vm}]", f"[vm {vm}]\nqmp={qmp[vm]}")
    open(d.conf, "w").write(conf)
    d.start()
    consoles = {vm: w.p(f"{vm}.console") for vm in VMS}
    watch = StepWatch(chains, consoles, lambda vm: query_block(qmp[vm]))
    t0 = time.time()
    for phase in PHASES:
        guests = {vm: threading.Thread(target=boot, args=(w, GUEST.replace("{vm}", vm),
                                                          [(chains.top(vm), "data0", "qcow2")],
                                                          d.sock(vm)),
                                       kwargs={"qmp": qmp[vm], "name": vm, "timeout": 600,
                                               "expect_rc": None, "extra": ("--smp", "1")})
                  for vm in phase}
        watchers = [threading.Thread(target=watch.follow, args=(vm, guests[vm].is_alive))
                    for vm in phase]
        for t in list(guests.values()) + watchers:
            t.start()
        for t in list(guests.values()) + watchers:
            t.join()
        log(f"guests {', '.join(phase)} ran, {time.time() - t0:.1f} s since the first started")
    log(f"QEMU was back on its own top image after {len(watch.events)} backups")
    texts = check_after(w, chains, d, consoles, watch)
    check(d.stop() == 0, "vbackupd exit")
    check_reboot(w, chains, texts)
    log("ok: clones on a raw base (2 deep) and a qcow2 base (3 deep), together and alone, "
        "backed up 3 times each "
        "through QMP views; the shared images are untouched and every VM keeps its data")
