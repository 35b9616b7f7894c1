#!/usr/bin/env python3
"""The point-in-time view's checks on a disk with a backing chain (QMP):
one guest on top.qcow2 -> base.raw backs up while the host makes each
attempt go wrong in its own way.  Each time the job must fail loudly (the
guest's command and vbackupctl say why), QEMU must end up on top.qcow2 ->
base.raw again, and base.raw must keep its content:

1. the base image is written (its mtime moves) while a view is held: the
   overlay is still committed into top.qcow2 alone, and the job fails
   ("an image other than the temporary overlay was written");
2. QEMU no longer runs the disk on its configured image (someone else put
   an overlay on it): the job fails at once instead of reading the stale
   image while the guest stays frozen;
3. vbackupd is killed while a job holds a view: started again, it commits
   the overlay it left into top.qcow2 alone (the journal keeps the chain);
4. a backup afterwards works, through a view."""
import json
import os
import re
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from guestlib import (Daemon, SRC, artifacts, boot, check, log, make_ext4, mount,  # noqa: E402
                      random_files, run, umount, workdir)
from chainlib import chain_of, sha256_file  # noqa: E402

QMP_CALL = os.path.join(SRC, "tests/guest/qmp-call.py")

SCRIPT = r"""
mkdir -p /data && mount /dev/vda /data
wait_deferred() {
    n=0
    until vbackup status | grep -q ' deferred '; do
        n=$((n+1)); [ $n -lt 60 ] || { vbackup status; echo "NOT DEFERRED"; exit 6; }; sleep 0.5
    done
    job=$(vbackup status | awk '$2 == "deferred" { print $1 }')
}
# 1. the base is written while the view is held
vbackup backup /data --to archive > /tmp/o1 2>&1 &
bp=$!
wait_deferred
echo "written while view 1 was held" > /data/during1.txt && sync
echo "TOUCH-BASE $job"
if wait $bp; then echo "UNEXPECTED SUCCESS 1"; exit 7; fi
echo O1-BEGIN; cat /tmp/o1; echo O1-END
echo CHECK-1
sleep 5
# 2. QEMU moved off the configured image
echo MOVE-QEMU
sleep 5
echo "written on the foreign overlay" > /data/foreign.txt && sync
if vbackup backup /data --to archive > /tmp/o2 2>&1; then echo "UNEXPECTED SUCCESS 2"; exit 8; fi
echo O2-BEGIN; cat /tmp/o2; echo O2-END
echo UNMOVE-QEMU
sleep 5
# 3. vbackupd killed while a job holds a view
echo PRESSURE-ON
sleep 3
vbackup backup /data --to archive > /tmp/o3 2>&1 &
bp=$!
wait_deferred
echo "written while view 3 was held" > /data/during3.txt && sync
echo "KILL-DAEMON $job"
if wait $bp; then echo "UNEXPECTED SUCCESS 3"; exit 9; fi
n=0; until vbackup status > /dev/null 2>&1; do n=$((n+1)); [ $n -lt 120 ] || exit 5; sleep 0.5; done
echo CHECK-3
sleep 5
# 4. a backup that works
vbackup backup /data --to archive --mode full
echo "written after attempt 4" > /data/after4.txt && sync
echo CHECK-4
sleep 5
umount /data
"""


def qmp(sock, *cmd):
    out = subprocess.run([sys.executable, QMP_CALL, sock, *cmd], capture_output=True,
                         text=True, timeout=60)
    if out.returncode:
        raise RuntimeError(f"qmp {cmd}: {out.stderr.strip()}")
    return [json.loads(ln) for ln in out.stdout.splitlines()]


with workdir() as w:
    artifacts()
    tree = w.p("tree")
    random_files(tree + "/golden", 2, 1 << 20)
    imgdir = w.p("images")
    os.makedirs(imgdir)
    base = make_ext4(os.path.join(imgdir, "base.raw"), tree, size="64M")
    run("qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", "top.qcow2",
        cwd=imgdir)
    top = os.path.join(imgdir, "top.qcow2")
    chain = [os.path.realpath(top), os.path.realpath(base)]
    base_sum = sha256_file(base)
    qsock = w.p("qmp.sock")
    d = Daemon(w, {"g": {"data0": top}}, batch_seconds=0.3,
               policy_conf={"schedule": {"io_some_max": 20, "recheck": 1}})
    conf = open(d.conf).read().replace("[vm g]", f"[vm g]\nqmp={qsock}")
    open(d.conf, "w").write(conf)
    d.set_psi(io=85, cpu=0, mem=0)         # step 1's job waits, holding its view
    d.start()
    console_path = w.p("g.console")
    problems, events = [], []
    failed_ids = []         # jobs 1, 2 and 3, as expect_failed saw them fail

    def console():
        try:
            return open(console_path, errors="replace").read()
        except OSError:
            return ""

    def chain_now():
        return chain_of(qmp(qsock, "query-block")[-1]["return"], top)

    def expect_own_chain(step):
        deadline = time.time() + 30
        have = None
        while time.time() < deadline:
            have = chain_now()
            left = [f for f in os.listdir(imgdir) if ".vbackup-" in f]
            if have == chain and not left:
                if sha256_file(base) != base_sum:
                    problems.append(f"{step}: base.raw was written")
                else:
                    events.append(f"{step}: QEMU on top.qcow2 -> base.raw, base.raw unchanged")
                return
            time.sleep(0.2)
        problems.append(f"{step}: QEMU runs on {have}, overlays left: {left}")

    def expect_failed(step, job_id, words):
        job = d.ctl_json("job", job_id)
        if job.get("state") != "failed" or words not in job.get("reason", ""):
            problems.append(f"{step}: job {job_id} is {job.get('state')}: {job.get('reason')}")
        else:
            events.append(f"{step}: job {job_id} failed: {job['reason']}")
            failed_ids.append(int(job_id))

    def host_side():
        done = set()
        deadline = time.time() + 600
        while time.time() < deadline:
            c = console()
            m = re.search(r"TOUCH-BASE (\d+)", c)
            if m and "touch" not in done:
                have = chain_now()
                if not (have and ".vbackup-" in have[0] and have[1:] == chain):
                    problems.append(f"1: no view held: {have}")
                st = os.stat(base)
                os.utime(base, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
                d.set_psi(io=0, cpu=0, mem=0)
                done.add("touch")
                job1 = m.group(1)
            if "CHECK-1" in c and "c1" not in done:
                expect_own_chain("1 (base written)")
                expect_failed("1", job1, "an image other than the temporary overlay was written")
                done.add("c1")
            if "MOVE-QEMU" in c and "move" not in done:
                blocks = qmp(qsock, "query-block")[-1]["return"]
                node = [b["inserted"]["node-name"] for b in blocks
                        if chain_of([b], top) == chain][0]
                r = qmp(qsock, "blockdev-snapshot-sync", json.dumps(
                    {"node-name": node, "snapshot-file": w.p("foreign.qcow2"),
                     "snapshot-node-name": "foreign", "format": "qcow2"}))
                if "error" in r[-1] or chain_now() != [w.p("foreign.qcow2")] + chain:
                    problems.append(f"2: could not move QEMU: {r} {chain_now()}")
                done.add("move")
            if "UNMOVE-QEMU" in c and "unmove" not in done:
                qmp(qsock, "--event", "BLOCK_JOB_READY:undo", "block-commit", json.dumps(
                    {"device": "disk0", "job-id": "undo", "top-node": "foreign",
                     "base-node": node}))
                qmp(qsock, "--event", "BLOCK_JOB_COMPLETED:undo", "block-job-complete",
                    json.dumps({"device": "undo"}))
                jobs = [j for j in d.ctl_json("jobs") if j["state"] == "failed"]
                expect_failed("2", str(jobs[-1]["id"]),
                              "QEMU does not run the disk on its configured image")
                expect_own_chain("2 (QEMU moved)")
                d.set_psi(io=85, cpu=0, mem=0)
                done.add("unmove")
            m = re.search(r"KILL-DAEMON (\d+)", c)
            if m and "kill" not in done:
                have = chain_now()
                if not (have and ".vbackup-" in have[0] and have[1:] == chain):
                    problems.append(f"3: no view held before the kill: {have}")
                d.kill()
                d.set_psi(io=0, cpu=0, mem=0)
                time.sleep(1)
                d.start()
                expect_own_chain("3 (vbackupd killed)")
                expect_failed("3", m.group(1), "vbackupd stopped")
                done.add("kill")
            if "CHECK-4" in c and "c4" not in done:
                expect_own_chain("4 (works again)")
                done.add("c4")
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
        out = boot(w, SCRIPT, [(top, "data0", "qcow2")], d.sock("g"), qmp=qsock, name="g",
                   extra=("--smp", "1"))
    finally:
        th.join()
    for e in events:
        log(e)
    check(not problems, "; ".join(problems))
    check(len(events) == 7, f"the host saw only: {events}")

    def said(n):
        return out.split(f"O{n}-BEGIN")[-1].split(f"O{n}-END")[0]
    check("other than the temporary overlay was written" in said(1),
          f"1: the guest's backup said: {said(1)!r}")
    check("does not run the disk on its configured image" in said(2),
          f"2: the guest's backup said: {said(2)!r}")
    for n in (1, 2):
        check(imgdir not in said(n), f"{n}: the guest was told a host path: {said(n)!r}")
        log(f"{n}: the guest's vbackup said: {said(n).strip().splitlines()[-1]}")
    text = d.log_text()
    check(re.search(r"FAILED.*base\.raw was written while the view was held", text),
          "1: vbackupd's log does not name the written image")
    check(re.search(r"FAILED.*QEMU does not run the disk of \S*top\.qcow2 on that image but on "
                    r"\S*foreign\.qcow2", text), "2: vbackupd's log does not say where QEMU runs")
    # the journal keeps every job's record: after the restart 1 and 2 report
    # as they ended, 3 as vbackupd left it, and 4 ran since
    jobs = d.ctl_json("jobs")
    check([j["state"] for j in jobs] == ["failed", "failed", "failed", "done"] and
          [j["id"] for j in jobs[:3]] == failed_ids,
          f"the jobs: {[(j['id'], j['state']) for j in jobs]} (failed: {failed_ids})")
    plan = d.ctl_json("job", str(jobs[-1]["id"]))["plan"]
    check(any("snapshot of 1 disk taken" in str(n) for n in plan), f"4: not a view: {plan}")
    check(sha256_file(base) == base_sum, "base.raw was written")
    check(d.stop() == 0, "vbackupd exit")
    # what the guest wrote is in top.qcow2 (over base.raw), nowhere else
    raw = w.p("final.raw")
    run("qemu-img", "convert", "-O", "raw", top, raw)
    m = mount(w, raw)
    for name, text in (("during1.txt", "written while view 1 was held\n"),
                       ("foreign.txt", "written on the foreign overlay\n"),
                       ("during3.txt", "written while view 3 was held\n"),
                       ("after4.txt", "written after attempt 4\n")):
        check(os.path.exists(os.path.join(m, name)) and
              open(os.path.join(m, name)).read() == text, f"{name} is not in top.qcow2")
    umount(w, m)
    log("ok: a written base, QEMU moved off its image and a killed vbackupd each fail the job "
        "loudly; the overlay goes into top.qcow2 alone and base.raw keeps its content")
