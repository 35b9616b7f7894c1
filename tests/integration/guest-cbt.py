#!/usr/bin/env python3
"""Changed-block tracking through QMP (docs/cbt.md): the scenario of
cbtlib.py with a VM that vbackupd's configuration names (qmp, cbt = true).
QEMU is started by this test on the disk's image, killed with SIGKILL
between two backups, and started again on the file vbackupd names for the
disk (IMAGE.vbackup-top, a symlink to the tracking overlay); after each
boot QEMU runs each disk on exactly its tracking overlay over its image
(query-block).  Then vbackupd itself is killed (SIGKILL) while a tracked
disk job holds its view (deferred by the schedule policy: PSI pressure) and
the guest writes under it; the restarted vbackupd folds the view back into
the tracking overlay, and the next incremental is proven.  Last, a disk is
restored into its image and QEMU started on the image: a full read that
says so, then tracked again.  The seed of the
guest's writes is printed (VB_CBT_SEED to repeat a run)."""
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from guestlib import (Daemon, Mailbox, SRC, VBACKUPCTL, artifacts, boot, check, log,  # noqa: E402
                      run, workdir)
import cbtlib  # noqa: E402

QMP_CALL = os.path.join(SRC, "tests/guest/qmp-call.py")


def query_chain(sock, serial_image):
    out = subprocess.run([sys.executable, QMP_CALL, sock, "query-block"], capture_output=True,
                         text=True, timeout=60)
    check(out.returncode == 0, f"query-block: {out.stderr}")
    for b in json.loads(out.stdout.splitlines()[-1])["return"]:
        img, chain = (b.get("inserted") or {}).get("image"), []
        while img:
            chain.append(os.path.realpath(img["filename"]))
            img = img.get("backing-image")
        if os.path.realpath(serial_image) in chain:
            return chain
    return None


with workdir() as w:
    artifacts()
    seed = int(os.environ.get("VB_CBT_SEED", random.randrange(1, 1 << 30)))
    log(f"seed {seed} (VB_CBT_SEED={seed} repeats this run)")
    writer = w.p("cbtwriter")
    run("gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-static", "-o", writer,
        os.path.join(os.path.dirname(os.path.abspath(__file__)), "cbtwriter.c"))
    img = cbtlib.Images(w)
    qsock = w.p("qmp.sock")
    d = Daemon(w, {"g": {"data0": img.data0, "data1": img.data1}}, batch_seconds=0.3,
               policy_conf={"schedule": {"io_some_max": 20, "recheck": 1}})
    conf = open(d.conf).read().replace("[vm g]", f"[vm g]\nqmp={qsock}\ncbt=true")
    open(d.conf, "w").write(conf)
    d.start()
    seeds = {f"{{seed{i}}}": str(seed + i) for i in range(1, 11)}

    def script(text):
        for k, v in seeds.items():
            text = text.replace(k, v)
        return text

    extra = ["--add", f"{writer}:/bin/cbtwriter", "--smp", "1"]
    pidfile = w.p("qemu.pid")

    # ---- A: tracking starts; then QEMU is killed --------------------------------------
    console = w.p("a.console")
    killed = []

    def killer():
        deadline = time.monotonic() + 900          # a safety net
        while time.monotonic() < deadline:
            text = open(console, errors="replace").read() if os.path.exists(console) else ""
            if "KILL-ME" in text:
                pid = int(open(pidfile).read())
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            if "VBACKUP-GUEST-EXIT" in text:
                return
            time.sleep(0.1)

    th = threading.Thread(target=killer)
    th.start()
    boot(w, script(cbtlib.PHASE_A), img.disks(), d.sock("g"), qmp=qsock, name="a",
         timeout=900, extra=extra + ["--qemu-arg=-pidfile", f"--qemu-arg={pidfile}"],
         expect_rc=None)
    th.join()
    if not killed:
        print(open(console, errors="replace").read()[-6000:])
    check(killed, "phase A did not reach the kill")
    st = cbtlib.steps(open(console, errors="replace").read())
    chk = cbtlib.Checker(w, d, "g", img)
    cbtlib.check_phase_a(chk, st)
    tops = {}
    for serial, image in (("data0", img.data0), ("data1", img.data1)):
        rec = cbtlib.record(d, "g", serial)
        check(rec and rec["state"] == "ready" and rec["image"] == os.path.realpath(image),
              f"{serial}: tracking record {rec}")
        link = image + ".vbackup-top"
        check(os.path.realpath(link) == rec["overlay"], f"{serial}: {link} does not point at "
              f"the tracking overlay {rec['overlay']}")
        tops[serial] = link
    log(f"QEMU {killed[0]} killed (SIGKILL) after the writes of step prekill; the disks' "
        f"tracking overlays: {', '.join(os.path.basename(os.path.realpath(t)) for t in tops.values())}")

    # ---- B: QEMU started again on the tracking overlays --------------------------------
    def watch_chain(name, on_image=()):
        """While the guest of this boot runs: each disk on its tracking overlay, right over
        its image, or on its image for the serials in on_image (checked once the guest
        has started)."""
        problems = []

        def follow():
            path = w.p(f"{name}.console")
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                text = open(path, errors="replace").read() if os.path.exists(path) else ""
                if "STEP" in text:
                    for serial, image in (("data0", img.data0), ("data1", img.data1)):
                        chain = query_chain(qsock, image)
                        if serial in on_image:
                            if not chain or chain[0] != os.path.realpath(image):
                                problems.append(f"{name}: {serial} runs on {chain}, not on its "
                                                f"image {image}")
                            continue
                        want = os.path.realpath(tops[serial])
                        if not chain or chain[0] != want or chain[1] != os.path.realpath(image):
                            problems.append(f"{name}: {serial} runs on {chain}, not on {want} "
                                            f"over {image}")
                    return
                if "VBACKUP-GUEST-EXIT" in text:
                    problems.append(f"{name}: the guest ended before its first step")
                    return
                time.sleep(0.1)
        t = threading.Thread(target=follow)
        t.start()
        return t, problems

    t, problems = watch_chain("b")
    boot(w, script(cbtlib.PHASE_B), img.disks(tops["data0"], tops["data1"]), d.sock("g"),
         qmp=qsock, name="b", timeout=600, extra=extra)
    t.join()
    check(not problems, "; ".join(problems))
    st_b = cbtlib.steps(open(w.p("b.console"), errors="replace").read())
    check(st_b["b0"]["sha"] == st["prekill"]["sha"], "after the kill the disk does not hold what "
          "the guest wrote before it")
    chk.step("b0", st_b["b0"], True, runs=st["prekill"]["runs"])
    log("after QEMU was killed: a proven incremental of exactly the writes before the kill")

    # ---- C: another tool touched the image ----------------------------------------------
    os.utime(img.data0, (time.time(), time.time() - 3600))
    for serial, image in (("data0", img.data0), ("data1", img.data1)):
        tops[serial] = image + ".vbackup-top"
    t, problems = watch_chain("c")
    boot(w, script(cbtlib.PHASE_C), img.disks(tops["data0"], tops["data1"]), d.sock("g"),
         qmp=qsock, name="c", timeout=600, extra=extra)
    t.join()
    check(not problems, "; ".join(problems))
    st_c = cbtlib.steps(open(w.p("c.console"), errors="replace").read())
    chk.step("c0", st_c["c0"], False, "the disk's image was written since the last backup")
    chk.step("c1", st_c["c1"], True)
    chk.step("c2", st_c["c2"], True)

    # ---- D: vbackupd killed while a tracked disk job holds its view ------------------------
    mailbox = Mailbox(w)
    dproblems = []

    def host_d():
        path, done = w.p("d.console"), set()
        deadline = time.monotonic() + 600              # a safety net
        while time.monotonic() < deadline:
            text = open(path, errors="replace").read() if os.path.exists(path) else ""
            if "PRESSURE-PLEASE" in text and "psi" not in done:
                # d0's job is forgotten when vbackupd is killed: checked now
                try:
                    chk.step("d0", cbtlib.steps(text)["d0"], True)
                except SystemExit:
                    dproblems.append("D: step d0 failed its check (above)")
                d.set_psi(io=85, cpu=0, mem=0)
                done.add("psi")
                mailbox.post("PRESSURE")
            if "KILL-DAEMON" in text and "kill" not in done:
                chain = query_chain(qsock, img.data0)
                if not chain or len(chain) != 3 or chain[1] != os.path.realpath(tops["data0"]):
                    dproblems.append(f"D: no view held over the tracking overlay before the "
                                     f"kill: {chain}")
                d.kill()
                d.set_psi(io=0, cpu=0, mem=0)
                done.add("kill")
            if "STEP d1 END" in text and "kill" in done:
                d.start()
                want = [os.path.realpath(tops["data0"]), os.path.realpath(img.data0)]
                end = time.monotonic() + 120           # the recovery folds it back at start
                while query_chain(qsock, img.data0) != want and time.monotonic() < end:
                    time.sleep(0.2)
                if query_chain(qsock, img.data0) != want:
                    dproblems.append(f"D: after the restart QEMU runs data0 on "
                                     f"{query_chain(qsock, img.data0)}, not on {want}")
                mailbox.post("RESTARTED")
                return
            if "VBACKUP-GUEST-EXIT" in text:
                return
            time.sleep(0.1)

    def host_d_checked():
        try:
            host_d()
        except BaseException as e:      # said in the failure, not lost with the thread
            dproblems.append(f"D: the host side failed: {e!r}")

    th = threading.Thread(target=host_d_checked)
    th.start()
    boot(w, Mailbox.SHELL + script(cbtlib.PHASE_D), img.disks(tops["data0"], tops["data1"]) +
         [mailbox.disk()], d.sock("g"), qmp=qsock, name="d", timeout=600, extra=extra)
    th.join()
    check(not dproblems, "; ".join(dproblems))
    st_d = cbtlib.steps(open(w.p("d.console"), errors="replace").read())
    # the writes before the killed job exactly, and those made while it held
    # its view in the granules that the fold back copied (cbtlib.FOLD_GRANULE)
    before, _, during = st_d["d1"]["out"].partition("VIEW-HELD\n")
    check(during, f"D: the guest did not say when the view was held:\n{st_d['d1']['out']}")
    before, during = cbtlib.runs_of(before), cbtlib.runs_of(during)
    check(len(before) == 4 and len(during) == 4, f"D: runs {st_d['d1']['out']}")
    chk.step("d2", st_d["d2"], True, runs=before + cbtlib.granules(during))
    log("vbackupd killed while a tracked disk job held its view: folded back into the "
        "tracking overlay, and the next incremental proves what was written before and during")

    # ---- E: data0 restored into its image, QEMU started on the image ------------------------
    # docs/cbt.md, "Restoring a disk": VM off, restore into the image, start the VM on the
    # image itself (IMAGE.vbackup-top removed); the old tracking overlay may be deleted
    stale = os.path.realpath(tops["data0"])
    run(VBACKUPCTL, "--repo", d.targets["archive"], "--quiet", "restore-disk",
        st["a2"]["snapshot"], "--to", img.data0, "--force")
    os.unlink(tops["data0"])
    os.unlink(stale)
    t, problems = watch_chain("e", on_image={"data0"})
    boot(w, script(cbtlib.PHASE_E), img.disks(None, tops["data1"]), d.sock("g"), qmp=qsock,
         name="e", timeout=600, extra=extra)
    t.join()
    check(not problems, "; ".join(problems))
    st_e = cbtlib.steps(open(w.p("e.console"), errors="replace").read())
    check(st_e["e0"]["sha"] == st["a2"]["sha"], "the guest does not see the restored disk "
          f"(snapshot {st['a2']['snapshot']} of step a2)")
    chk.step("e0", st_e["e0"], False, "the disk runs on its image, not on its tracking overlay")
    chk.step("e1", st_e["e1"], True)
    rec = cbtlib.record(d, "g", "data0")
    check(os.path.realpath(tops["data0"]) == rec["overlay"] and rec["overlay"] != stale,
          f"data0: after the restore {tops['data0']} does not point at a new tracking overlay: "
          f"{rec}")
    log("a disk restored into its image and started on it: a full read that says so, then "
        "tracked again")
    chk.finish()
    left = sorted(f for f in os.listdir(img.dir) if ".vbackup-" in f and f.endswith(".qcow2"))
    want = sorted(os.path.basename(cbtlib.record(d, "g", s)["overlay"])
                  for s in ("data0", "data1"))
    check(left == want, f"overlay files {left}, but the disks' tracking overlays are {want}")
    check("FAILED" not in d.log_text(), "vbackupd logged a failure: " +
          "; ".join(ln for ln in d.log_text().splitlines() if "FAILED" in ln))
    check(d.stop() == 0, "vbackupd exit")
    log("ok: incrementals read only what the guest wrote, across a SIGKILL of QEMU and one of "
        "vbackupd; a touched image and a restored disk are full reads that say so; every "
        "snapshot is the disk as the guest had it")
