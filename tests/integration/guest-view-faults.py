#!/usr/bin/env python3
"""The point-in-time view (QMP) when things go wrong.  One guest, with QMP,
backs itself up four times while the host makes each attempt fail in its
own way; after each, QEMU runs on the original image again (query-block: no
overlay), no overlay file is left, and what the guest wrote meanwhile is in
the original image:

1. the overlay cannot be created (the image's folder is immutable): the
   host reads the live image with the guest frozen and the backup succeeds;
2. a job that holds a view is deferred (IO pressure) and the guest cancels
   it: the overlay is committed back;
3. vbackupd is killed (SIGKILL) while a job holds a view: the guest's
   command fails with a clear message; vbackupd, started again, reports the
   job failed and commits the overlay back;
4. the target fills up (ENOSPC) while the host reads from the view: the
   guest's command fails saying so; the repository still verifies."""
import json
import os
import re
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from guestlib import (Daemon, Mailbox, SRC, VBACKUPCTL, artifacts, boot, check, log,  # noqa
                      make_ext4, mount, random_files, run, umount, workdir)

QMP_CALL = os.path.join(SRC, "tests/guest/qmp-call.py")

# the guest goes on when the host says it is done (await_host), not after a
# pause the host might outlast on a loaded machine
SCRIPT = Mailbox.SHELL + r"""
mkdir -p /data && mount /dev/vda /data
wait_deferred() {
    n=0
    until vbackup status | grep -q ' deferred '; do
        n=$((n+1)); [ $n -lt 60 ] || { vbackup status; echo "NOT DEFERRED"; exit 6; }; sleep 0.5
    done
    job=$(vbackup status | awk '$2 == "deferred" { print $1 }')
}
# 1. no overlay can be made
echo STEP-IMMUTABLE
await_host IMMUTABLE
vbackup backup /data --to archive
echo STEP-MUTABLE
await_host MUTABLE
# 2. deferred while holding a view, then cancelled
echo PRESSURE-ON
await_host PRESSURE
vbackup backup /data --to archive > /tmp/o2 2>&1 &
bp=$!
wait_deferred
echo "written while view 2 was held" > /data/during2.txt && sync
vbackup cancel $job
if wait $bp; then echo "UNEXPECTED SUCCESS 2"; exit 7; fi
echo O2-BEGIN; cat /tmp/o2; echo O2-END
echo "CHECK-COMMITTED 2"
await_host CHECKED-2
# 3. vbackupd killed while a job holds a view
vbackup backup /data --to archive > /tmp/o3 2>&1 &
bp=$!
wait_deferred
echo "written while view 3 was held" > /data/during3.txt && sync
echo "KILL-DAEMON $job"
if wait $bp; then echo "UNEXPECTED SUCCESS 3"; exit 8; fi
echo O3-BEGIN; cat /tmp/o3; echo O3-END
n=0; until vbackup status > /dev/null 2>&1; do n=$((n+1)); [ $n -lt 120 ] || exit 5; sleep 0.5; done
vbackup status $job
await_host CHECKED-3
# 4. the target fills up
if vbackup backup /data --to small > /tmp/o4 2>&1; then echo "UNEXPECTED SUCCESS 4"; exit 9; fi
echo O4-BEGIN; cat /tmp/o4; echo O4-END
echo "written after attempt 4" > /data/after4.txt && sync
echo "CHECK-COMMITTED 4"
await_host CHECKED-4
umount /data
"""


def qmp(sock, *cmd):
    out = subprocess.run([sys.executable, QMP_CALL, sock, *cmd], capture_output=True,
                         text=True, timeout=60)
    check(out.returncode == 0, f"qmp {cmd}: {out.stderr}")
    return json.loads(out.stdout.splitlines()[-1])


def active_file(sock, image):
    """The file QEMU writes for the disk that started on image, and its backing file."""
    for b in qmp(sock, "query-block")["return"]:
        ins = b.get("inserted")
        if not ins:
            continue
        chain, img = [], ins.get("image", {})
        while img:
            chain.append(os.path.realpath(img.get("filename", "")))
            img = img.get("backing-image")
        if os.path.realpath(image) in chain:
            return chain[0], chain[1:]
    return None, None


with workdir() as w:
    artifacts()
    tree = w.p("tree")
    random_files(tree + "/bulk", 4, 16 << 20)   # 64 MiB that do not compress: more than 'small' holds
    imgdir = w.p("images")
    os.makedirs(imgdir)
    disk = make_ext4(os.path.join(imgdir, "data.qcow2"), tree, size="256M", fmt="qcow2")
    small = w.p("small")
    os.makedirs(small)
    run("mount", "-t", "tmpfs", "-o", "size=24m", "vbtest-small", small)
    w.mounts.append(small)
    qsock = w.p("qmp.sock")
    d = Daemon(w, {"g": {"data0": disk}}, batch_seconds=0.3,
               targets={"archive": w.p("repo"), "small": small},
               policy_conf={"schedule": {"io_some_max": 20, "recheck": 1}})
    conf = open(d.conf).read().replace("[vm g]", f"[vm g]\nqmp={qsock}")
    open(d.conf, "w").write(conf)
    d.start()
    console_path = w.p("faults.console")
    mailbox = Mailbox(w)
    problems, events = [], []

    def console():
        try:
            return open(console_path, errors="replace").read()
        except OSError:
            return ""

    def expect_original(step):
        """QEMU writes the original image again, and no overlay file is left."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            top, backing = active_file(qsock, disk)
            left = [f for f in os.listdir(imgdir) if ".vbackup-" in f]
            if top == os.path.realpath(disk) and not backing and not left:
                events.append(f"{step}: QEMU is on the original image again")
                return
            time.sleep(0.2)
        problems.append(f"{step}: QEMU writes {top} (backing {backing}), left: {left}")

    def await_console(text, what, timeout=120):
        deadline = time.monotonic() + timeout         # a safety net
        while text not in console():
            if time.monotonic() > deadline:
                problems.append(f"still waiting after {timeout} s for {what}")
                return False
            time.sleep(0.1)
        return True

    def host_side():
        done = set()
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            c = console()
            if "STEP-IMMUTABLE" in c and "imm" not in done:
                r = subprocess.run(["chattr", "+i", imgdir], capture_output=True, text=True)
                if r.returncode:
                    problems.append(f"chattr +i {imgdir} failed ({r.stderr.strip()}): this test "
                                    "needs its work folder on ext4, xfs or btrfs")
                done.add("imm")
                mailbox.post("IMMUTABLE")
            if "STEP-MUTABLE" in c and "mut" not in done:
                run("chattr", "-i", imgdir)
                done.add("mut")
                mailbox.post("MUTABLE")
            if "PRESSURE-ON" in c and "psi" not in done:
                # 1 is over: the snapshot failed, the host read with the guest frozen
                last = d.ctl_json("jobs")[-1]
                job = d.ctl_json("job", str(last["id"]))
                if job["state"] != "done" or "snapshot failed" not in json.dumps(job):
                    problems.append(f"1: the job: {job}")
                else:
                    events.append("1 (no overlay possible): read frozen, backup done: " +
                                  [n for n in job["plan"] if "snapshot failed" in str(n)][0])
                d.set_psi(io=85, cpu=0, mem=0)
                done.add("psi")
                mailbox.post("PRESSURE")
            if "CHECK-COMMITTED 2" in c and "c2" not in done:
                expect_original("2 (cancelled)")
                done.add("c2")
                mailbox.post("CHECKED-2")
            m = re.search(r"KILL-DAEMON (\d+)", c)
            if m and "kill" not in done:
                top, backing = active_file(qsock, disk)
                if not (top and ".vbackup-" in top and backing):
                    problems.append(f"3: no view held before the kill: {top} {backing}")
                d.kill()
                d.set_psi(io=0, cpu=0, mem=0)
                # started again once the guest's command has failed (it
                # printed what it said), not after a second
                await_console("O3-END", "the guest's backup to fail after the kill")
                d.start()
                expect_original("3 (vbackupd killed)")
                job = d.ctl_json("job", m.group(1))
                if job.get("state") != "failed" or "vbackupd stopped" not in job.get("reason", ""):
                    problems.append(f"3: after the restart job {m.group(1)} is {job}")
                done.add("kill")
                mailbox.post("CHECKED-3")
            if "CHECK-COMMITTED 4" in c and "c4" not in done:
                expect_original("4 (target full)")
                done.add("c4")
                mailbox.post("CHECKED-4")
            if "c4" in done or "VBACKUP-GUEST-EXIT" in c:
                break
            time.sleep(0.1)

    def host_side_checked():
        try:
            host_side()
        except Exception as e:          # said in the failure, not lost with the thread
            problems.append(f"the host side failed: {e!r}")

    th = threading.Thread(target=host_side_checked)
    th.start()
    try:
        out = boot(w, SCRIPT, [(disk, "data0", "qcow2"), mailbox.disk()], d.sock("g"),
                   qmp=qsock, name="faults")
    finally:
        th.join()
        subprocess.run(["chattr", "-i", imgdir])
    for e in events:
        log(e)
    check(not problems, "; ".join(problems))
    check(len(events) == 4, f"the host saw only: {events}")
    # what the guest's commands said
    def said(n):
        return out.split(f"O{n}-BEGIN")[-1].split(f"O{n}-END")[0]
    check(re.search(r"job \d+: cancelled by the guest", said(2)) is not None,
          f"2: the cancelled backup said: {said(2)!r}")
    check("vbackupd" in said(3), f"3: with vbackupd killed the backup said: {said(3)!r}")
    # killed while deferred (wait_deferred): the journal says at which step
    check(re.search(r"failed\s.*vbackupd stopped while the job was waiting to run", out)
          is not None, "3: the guest's status does not show the job failed")
    check(re.search(r"no space|space left|full", said(4), re.I) is not None,
          f"4: with the target full the backup said: {said(4)!r}")
    for n in (2, 3, 4):   # what a guest is told names nothing of the host
        for host_path in list(d.targets.values()) + ["/var/", "/tmp/", "/run/"]:
            check(host_path not in said(n), f"{n}: the guest was told a host path: {said(n)!r}")
    for n in (2, 3, 4):
        log(f"{n}: the guest's vbackup said: {said(n).strip().splitlines()[-1]}")
    for target in ("archive", "small"):
        r = subprocess.run([VBACKUPCTL, "--repo", d.targets[target], "verify"],
                           capture_output=True, text=True)
        check(r.returncode == 0, f"verify {target}: {r.stdout} {r.stderr}")
    snaps = json.loads(subprocess.run([VBACKUPCTL, "--repo", d.targets["archive"], "snapshots",
                                       "--json"], capture_output=True, text=True).stdout)
    check(len(snaps) == 1, f"archive should hold only the snapshot of step 1: {snaps}")
    # what the guest wrote while the views were held is in the original image
    raw = w.p("final.raw")
    run("qemu-img", "convert", "-O", "raw", disk, raw)
    m = mount(w, raw)
    for name, text in (("during2.txt", "written while view 2 was held\n"),
                       ("during3.txt", "written while view 3 was held\n"),
                       ("after4.txt", "written after attempt 4\n")):
        check(os.path.exists(os.path.join(m, name)) and
              open(os.path.join(m, name)).read() == text, f"{name} is not in the image")
    umount(w, m)
    check(d.stop() == 0, "vbackupd exit")
    log("ok: a failed overlay, a cancel, a killed vbackupd and a full target each leave "
        "QEMU on its original image with the guest's writes, and no overlay file")
