#!/usr/bin/env python3
"""Three VMs whose disks are qcow2 overlays of one base image back up the
same paths in one batch.  With the merge policy the base image's data is
read once (vbackupd counts bytes read per host file) and stored once; with
merge switched off it is read three times.  Every VM's snapshot restores
byte for byte."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from daemonlib import (Daemon, backup, check, log, make_ext4, map_image, mount, restore,  # noqa
                       random_files, same_trees, umount, workdir, run)

ROOTS = ["usr"]


def one_run(w, name, base, overlays, policies):
    vms = {f"clone{i}": {"root": ov} for i, ov in enumerate(overlays, 1)}
    d = Daemon(w, vms, policies=policies, batch_seconds=30, batch_max=3, name=name).start()
    conns = {vm: d.conn(vm) for vm in vms}
    recs, fb = map_image(w, overlays[0], ROOTS, fmt="qcow2")
    jobs = {vm: backup(c, "archive", ["root"], ROOTS, recs, fb, wait=False)
            for vm, c in conns.items()}
    sts = {vm: conns[vm].wait_job(job) for vm, job in jobs.items()}
    for vm, st in sts.items():
        check(st["state"] == "done", f"{name}: {vm} ended {st['state']}: {st['reason']}")
    batches = {d.ctl_json("job", str(j))["batch"] for j in jobs.values()}
    check(len(batches) == 1, f"{name}: the three jobs ran in batches {batches}, not one")
    stats = d.ctl_json("daemon-stats")
    by_file = stats["bytes_read_by_file"]
    base_read = sum(v for k, v in by_file.items() if os.path.basename(k) == "base.qcow2")
    wanted = sum(st["bytes_total"] for st in sts.values()) // 3
    plan = d.ctl_json("job", str(jobs["clone2"]))["plan"]
    # one restore: the clone's files, byte for byte
    src = mount(w, w.p("base.raw"))
    out = w.p(f"{name}-restore")
    restore(conns["clone2"], "archive", sts["clone2"]["snapshot"], out)
    same_trees(src, out, f"{name}: clone2 restore")
    umount(w, src)
    new = sum(st["bytes_new"] for st in sts.values())
    d.stop()
    return base_read, wanted, new, plan


with workdir() as w:
    tree = w.p("tree")
    random_files(tree + "/usr/lib", 24, 1 << 20, "lib{i}.so")
    for i in range(200):
        with open(f"{tree}/usr/lib/doc{i}.txt", "w") as f:
            f.write(f"documentation file {i}\n" * (100 + i))
    make_ext4(w.p("base.raw"), tree, size="256M")
    run("qemu-img", "convert", "-O", "qcow2", w.p("base.raw"), w.p("base.qcow2"))
    overlays = []
    for i in (1, 2, 3):
        ov = w.p(f"clone{i}.qcow2")
        run("qemu-img", "create", "-q", "-f", "qcow2", "-b", w.p("base.qcow2"), "-F", "qcow2", ov)
        overlays.append(ov)

    merged, wanted, new_m, plan = one_run(w, "merge", w.p("base.qcow2"), overlays, "schedule,merge")
    log(f"with merge:    base image read {merged} bytes for 3 VMs wanting {wanted} bytes each")
    log("  plan of clone2: " + " | ".join(plan))
    plain, _, new_p, _ = one_run(w, "nomerge", w.p("base.qcow2"), overlays, "schedule")
    log(f"without merge: base image read {plain} bytes")
    check(merged <= wanted * 1.1, f"with merge the base was read {merged / wanted:.2f} times")
    check(plain >= wanted * 2.9, f"without merge the base was read only {plain / wanted:.2f} times")
    check(new_m <= wanted * 1.1 and new_p <= wanted * 1.1,
          f"the shared data was stored more than once ({new_m}, {new_p} new bytes)")
    check(any("shares" in p or "shared" in p for p in plan), f"no sharing note in the plan: {plan}")
    log(f"ok: base read {merged / wanted:.2f}x with merge, {plain / wanted:.2f}x without; "
        f"stored once")
