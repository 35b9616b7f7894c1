#!/usr/bin/env python3
"""While a guest backs up, a writer in the same guest keeps appending to a
file on the same file system (and rewrites a counter file after each line).
With QMP (snapshot view) the freeze lasts until the overlay is taken (the
job's plan says so; tests/clients/freeze.sh shows the guest thaws at SEAL
then), without QMP for the whole read, which is longer; either way the
snapshot holds one consistent state of the tree: the log is whole lines
numbered without gaps, and the counter names its last line (or the one
before, if the instant fell between append and rename).  Prints the longest
freeze and writer stall, and the guest CPU time; their sizes in seconds are
the machine's, and are only bounded as a safety net."""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from guestlib import (Daemon, artifacts, boot, check, log, make_ext4, mount, restore, umount,  # noqa
                      random_files, workdir, run)

SCRIPT = """
mkdir -p /data && mount /dev/vda /data
writer /data/log.txt /data/counter.txt /tmp/stop &
i=0
until [ -s /data/counter.txt ]; do      # the writer is writing
    i=$((i + 1)); [ $i -lt 600 ] || { echo "FAIL the writer wrote nothing in 60 s"; exit 1; }
    sleep 0.1
done
time vbackup backup /data --to archive --mode full
sleep 0.5
touch /tmp/stop
wait
umount /data
"""

with workdir() as w:
    artifacts()
    writer = w.p("writer")
    run("gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-static", "-o", writer,
        os.path.join(os.path.dirname(os.path.abspath(__file__)), "writer.c"))
    tree = w.p("tree")
    random_files(tree + "/bulk", 6, 16 << 20)    # enough data that the read takes a while
    results = {}
    for mode in ("qmp", "frozen"):
        disk = make_ext4(w.p(f"{mode}.qcow2"), tree, size="384M", fmt="qcow2")
        vm_conf = {"data0": disk}
        d = Daemon(w, {"g": vm_conf}, batch_seconds=0.5, name=f"d-{mode}",
                   extra={"frozen_wait": 0.2})
        if mode == "qmp":
            conf = open(d.conf).read().replace("[vm g]", f"[vm g]\nqmp={w.p('qmp.sock')}")
            open(d.conf, "w").write(conf)
        d.start()
        console = boot(w, SCRIPT, [(disk, "data0", "qcow2")], d.sock("g"),
                       qmp=w.p("qmp.sock") if mode == "qmp" else None, name=mode,
                       extra=["--add", f"{writer}:/bin/writer"])
        frozen = float(re.search(r"frozen for ([0-9.]+) s", console).group(1))
        stall = float(re.search(r"longest blocked ([0-9.]+) s", console).group(1))
        cpu = {k: int(m) * 60 + float(sec) for k, m, sec in
               re.findall(r"^(real|user|sys)\s+(\d+)m\s*([0-9.]+)s", console, re.M)}
        check(set(cpu) == {"real", "user", "sys"}, f"no time output in the console: {cpu}")
        snap = re.findall(r"(g/\d{4}-\d\d-\d\dT[0-9:]+Z\S*)", console)[-1]
        # the snapshot: whole numbered lines, no gap, the counter at the last one
        c = d.conn("g")
        out = w.p(f"restore-{mode}")
        restore(c, "archive", snap, out, paths=["data/log.txt", "data/counter.txt"])
        lines = open(os.path.join(out, "data/log.txt")).read()
        check(lines.endswith("\n"), f"{mode}: the log ends in a torn line")
        nums = [int(x.split()[1]) for x in lines.splitlines()]
        check(nums == list(range(1, len(nums) + 1)), f"{mode}: the log has gaps")
        counter = int(open(os.path.join(out, "data/counter.txt")).read())
        # one instant: the counter names the last line, or the one before when the
        # instant fell between the writer's append and its rename
        check(counter in (nums[-1], nums[-1] - 1),
              f"{mode}: counter {counter} but the log ends at {nums[-1]}")
        plan = d.ctl_json("job", str([j for j in d.ctl_json("jobs") if j.get("snapshot") == snap]
                                     [0]["id"]))["plan"]
        took = any(n.startswith("view: snapshot of 1 disk taken") for n in plan)
        check(took == (mode == "qmp"), f"{mode}: the view in the plan: {plan}")
        results[mode] = (frozen, stall, cpu, len(nums))
        log(f"{mode}: frozen {frozen:.2f} s, writer blocked at most {stall:.2f} s, "
            f"snapshot consistent at line {len(nums)}; vbackup in the guest: "
            f"{cpu['real']:.2f} s elapsed, {cpu['user'] + cpu['sys']:.2f} s CPU (96 MiB backed up)")
        d.stop()
    check(results["qmp"][0] < 10 and results["qmp"][1] < 15,
          f"with QMP the freeze was {results['qmp'][0]:.2f} s, the stall {results['qmp'][1]:.2f} s")
    check(results["frozen"][0] >= results["qmp"][0], "the snapshot view did not shorten the freeze")
    log("ok: consistent snapshots; longest freeze "
        f"{results['qmp'][0]:.2f} s with QMP, {results['frozen'][0]:.2f} s without")
