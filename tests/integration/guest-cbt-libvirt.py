#!/usr/bin/env python3
"""Changed-block tracking through libvirt (docs/cbt.md): the scenario of
cbtlib.py with the VM a persistent libvirt domain ([libvirt] cbt = true; a
real libvirtd, started as guest-libvirt.py does).  vbackupd makes each
tracking overlay and hands it to libvirt (a disk-only snapshot reusing it);
the previous one is folded into the image by a shallow block commit through
libvirt.  libvirt's picture stays true: after every boot the domain's
definition (live and persistent) names the disk's tracking overlay over its
image, QEMU runs on exactly that chain, and after QEMU is killed (SIGKILL)
`virsh start` brings the domain back on it with the guest's writes."""
import json
import os
import random
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from guestlib import (Daemon, artifacts, check, ensure_libvirtd, guest_initrd, log,  # noqa: E402
                      run, workdir)
import cbtlib  # noqa: E402

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
    <disk type='file' device='disk'><driver name='qemu' type='raw'/>
      <source file='{data0}'/><target dev='vda' bus='virtio'/><serial>data0</serial></disk>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='{data1}'/><target dev='vdb' bus='virtio'/><serial>data1</serial></disk>
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


def virsh(*args, check_rc=True):
    r = subprocess.run(VIRSH + list(args), capture_output=True, text=True)
    if check_rc:
        check(r.returncode == 0, f"virsh {' '.join(args)}: {r.stderr}")
    return r.stdout


def sources(name, inactive):
    """The disk sources of the domain's definition: {target: [top, backing...]}."""
    xml = virsh("dumpxml", *(["--inactive"] if inactive else []), name)
    out = {}
    for m in re.finditer(r"<disk type='file' device='disk'>(.*?)</disk>", xml, re.S):
        tgt = re.search(r"<target dev='(\w+)'", m.group(1)).group(1)
        out[tgt] = [os.path.realpath(f) for f in re.findall(r"<source file='([^']+)'",
                                                            m.group(1))]
    return out


def query_chains(name):
    out = json.loads(virsh("qemu-monitor-command", name, '{"execute":"query-block"}'))
    chains = []
    for b in out["return"]:
        img, chain = (b.get("inserted") or {}).get("image"), []
        while img:
            fn = img["filename"]
            if fn.startswith("json:"):
                node = json.loads(fn[5:])
                while isinstance(node.get("file"), dict):
                    node = node["file"]
                fn = node.get("filename", fn)
            chain.append(os.path.realpath(fn))
            img = img.get("backing-image")
        if chain:
            chains.append(chain)
    return chains


def running(name):
    return "running" in virsh("domstate", name, check_rc=False)


with workdir() as w:
    env = artifacts()
    stop_libvirt = ensure_libvirtd()
    name = f"vbcbt-{os.getpid()}"
    try:
        os.chmod(w.path, 0o755)            # QEMU runs as libvirt-qemu
        seed = int(os.environ.get("VB_CBT_SEED", random.randrange(1, 1 << 30)))
        log(f"seed {seed} (VB_CBT_SEED={seed} repeats this run)")
        writer = w.p("cbtwriter")
        run("gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-static", "-o", writer,
            os.path.join(os.path.dirname(os.path.abspath(__file__)), "cbtwriter.c"))
        img = cbtlib.Images(w)
        rundir = f"/run/vbackup-test-{os.getpid()}"
        d = Daemon(w, {}, batch_seconds=0.3,
                   extra={"runtime_dir": rundir, "socket_group": "libvirt-qemu"})
        conf = open(d.conf).read() + "\n[libvirt]\nuri = qemu:///system\ncbt = true\n"
        open(d.conf, "w").write(conf.replace(f"runtime_dir={d.run_dir}\n", ""))
        d.run_dir = rundir
        d.start()
        seeds = {f"{{seed{i}}}": str(seed + i) for i in range(1, 7)}

        def script(text):
            for k, v in seeds.items():
                text = text.replace(k, v)
            return text

        def boot_phase(phase, text, first=False):
            """Define (or redefine: the disks as libvirt has them) and start the domain
            with this phase's guest script; returns its console path."""
            console = w.p(f"{phase}.console")
            initrd = guest_initrd(w, script(text), adds=[(writer, "/bin/cbtwriter")],
                                  name=f"initrd-{phase}")
            if first:
                xml = DOMAIN.format(name=name, kernel=env["KERNEL"], qemu=env["QEMU"],
                                    initrd=initrd, data0=img.data0, data1=img.data1,
                                    console=console, sock=f"{rundir}/{name}.sock")
            else:
                xml = virsh("dumpxml", "--inactive", name)
                xml = re.sub(r"<initrd>[^<]*</initrd>", f"<initrd>{initrd}</initrd>", xml)
                xml = re.sub(r"(<serial type='file'>\s*<source path=')[^']*'",
                             rf"\g<1>{console}'", xml)
            path = w.p(f"{phase}.xml")
            open(path, "w").write(xml)
            virsh("define", path)
            virsh("start", name)
            return console

        def wait_off(what, timeout=900):
            deadline = time.monotonic() + timeout           # a safety net
            while running(name):
                check(time.monotonic() < deadline, f"the domain did not end: {what}")
                time.sleep(0.2)

        def expect_tracked_picture(phase):
            """libvirt's definition (live and persistent) and QEMU's chain: each disk on
            its tracking overlay right over its image."""
            for serial, tgt, image in (("data0", "vda", img.data0), ("data1", "vdb", img.data1)):
                rec = cbtlib.record(d, name, serial)
                check(rec and rec["image"] == os.path.realpath(image),
                      f"{phase}: {serial}: tracking record {rec}")
                want = [rec["overlay"], os.path.realpath(image)]
                for inactive in (False, True):
                    if inactive or running(name):
                        have = sources(name, inactive)[tgt][:2]
                        check(have == want, f"{phase}: libvirt's {'persistent' if inactive else 'live'} "
                              f"definition has {serial} on {have}, not on {want}")
                if running(name):
                    chains = [c for c in query_chains(name) if os.path.realpath(image) in c]
                    check(chains and chains[0][:2] == want, f"{phase}: QEMU runs {serial} on "
                          f"{chains}, not on {want}")

        chk = cbtlib.Checker(w, d, name, img)
        # ---- A: tracking starts; then QEMU is killed --------------------------------------
        console = boot_phase("a", cbtlib.PHASE_A, first=True)
        deadline = time.monotonic() + 900                   # a safety net
        while "KILL-ME" not in (open(console, errors="replace").read()
                                if os.path.exists(console) else ""):
            if not running(name):
                print(open(console, errors="replace").read()[-6000:])
                check(False, "phase A ended before the kill")
            check(time.monotonic() < deadline, "phase A did not reach the kill in 900 s")
            time.sleep(0.2)
        expect_tracked_picture("A, before the kill")
        pid = int(open(f"/run/libvirt/qemu/{name}.pid").read())
        os.kill(pid, signal.SIGKILL)
        wait_off("after SIGKILL")
        log(f"QEMU {pid} of domain {name} killed (SIGKILL)")
        st = cbtlib.steps(open(console, errors="replace").read())
        cbtlib.check_phase_a(chk, st)
        expect_tracked_picture("A, after the kill")

        # ---- B: virsh start: the domain comes back on its tracking overlays ----------------
        console = boot_phase("b", cbtlib.PHASE_B)
        wait_off("phase B")
        st_b = cbtlib.steps(open(console, errors="replace").read())
        check("VBACKUP-GUEST-EXIT=0" in open(console, errors="replace").read(),
              "phase B's guest failed:\n" + open(console, errors="replace").read()[-4000:])
        check(st_b["b0"]["sha"] == st["prekill"]["sha"], "after the kill the disk does not hold "
              "what the guest wrote before it")
        chk.step("b0", st_b["b0"], True, runs=st["prekill"]["runs"])
        log("after QEMU was killed and the domain started again: a proven incremental of "
            "exactly the writes before the kill")

        # ---- C: another tool touched the image ----------------------------------------------
        os.utime(img.data0, (time.time(), time.time() - 3600))
        console = boot_phase("c", cbtlib.PHASE_C)
        wait_off("phase C")
        text = open(console, errors="replace").read()
        check("VBACKUP-GUEST-EXIT=0" in text, "phase C's guest failed:\n" + text[-4000:])
        st_c = cbtlib.steps(text)
        chk.step("c0", st_c["c0"], False, "the disk's image was written since the last backup")
        chk.step("c1", st_c["c1"], True)
        chk.step("c2", st_c["c2"], True)
        expect_tracked_picture("C, after")
        chk.finish()
        left = sorted(f for f in os.listdir(img.dir) if ".vbackup-" in f and f.endswith(".qcow2"))
        want = sorted(os.path.basename(cbtlib.record(d, name, s)["overlay"])
                      for s in ("data0", "data1"))
        check(left == want, f"overlay files {left}, but the disks' tracking overlays are {want}")
        check("FAILED" not in d.log_text(), "vbackupd logged a failure: " +
              "; ".join(ln for ln in d.log_text().splitlines() if "FAILED" in ln))
        check(d.stop() == 0, "vbackupd exit")
        log("ok: through libvirt, incrementals read only what the guest wrote, across a SIGKILL "
            "of QEMU and a virsh start; libvirt's definition names each disk's tracking overlay "
            "over its image throughout")
    finally:
        subprocess.run(VIRSH + ["destroy", name], capture_output=True)
        subprocess.run(VIRSH + ["undefine", name], capture_output=True)
        stop_libvirt()
