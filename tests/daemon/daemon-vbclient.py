#!/usr/bin/env python3
"""vbclient, the host-side stand-in for a guest, against the real vbackupd:
files mapped with libext2fs from the unmounted disk image (a partitioned
disk), full / incremental / differential backups, a file with more extents
than one record holds, fallback data, list, status, and restores into a
folder: every file's bytes, size, mode and mtime equal the disk's."""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../integration"))
from daemonlib import (Daemon, check, fail, log, make_tree, mount, same_trees, umount,  # noqa
                       workdir, run, BUILD)

VBCLIENT = os.environ.get("VBCLIENT", os.path.join(BUILD, "tests/vbclient/vbclient"))


def vbc(d, *args, ok=True):
    r = subprocess.run([VBCLIENT, "--device", d.sock("vm1"), *args], capture_output=True,
                       text=True)
    if ok and r.returncode:
        fail(f"vbclient {' '.join(args)}: exit {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


with workdir() as w:
    from guestlib import partitioned_ext4
    tree = w.p("tree")
    make_tree(tree)
    # a file with more extents than one record holds: many small writes with gaps
    with open(tree + "/srv/fragmented.bin", "wb") as f:
        for i in range(10000):
            f.seek(i * 8192)
            f.write(os.urandom(4096))
    disk = w.p("disk.raw")
    off = partitioned_ext4(disk, tree, 768)
    d = Daemon(w, {"vm1": {"data0": disk}}, batch_seconds=0.2).start()
    base = ["--fs-image", disk, "--serial", "data0", "--partition", "1"]

    r = vbc(d, "backup", "/etc", "/srv", "--to", "archive", "--mode", "full",
            "--fallback", "*/with space/*", *base)
    full_id = r.stdout.strip().splitlines()[-1]
    check(full_id.startswith("vm1/"), f"no snapshot id: {r.stdout}")
    job = [j for j in d.ctl_json("jobs") if j.get("snapshot") == full_id][0]
    check(job["files_total"] == 17, f"job: {job}")
    # the catalog: the fragmented file came whole (MORE records were used)
    src = mount(w, disk, offset=off)
    out = w.p("out-full")
    vbc(d, "restore", "--from", "archive", "--snapshot", full_id, "--into", out)
    same_trees(src, out, "vbclient full restore")
    umount(w, src)

    m = mount(w, disk, offset=off, ro=False)
    with open(m + "/srv/text.txt", "a") as f:
        f.write("more\n")
    os.unlink(m + "/etc/hosts")
    umount(w, m)
    r = vbc(d, "backup", "/etc", "/srv", "--to", "archive", "--mode", "incremental", *base)
    inc_id = r.stdout.strip().splitlines()[-1]
    inc = d.ctl_json("job", str([j for j in d.ctl_json("jobs") if j.get("snapshot") == inc_id][0]["id"]))
    check(inc["parent"] == full_id and inc["bytes_read"] < (3 << 20),
          f"incremental: parent {inc.get('parent')}, read {inc['bytes_read']}")
    r = vbc(d, "backup", "/etc", "/srv", "--to", "archive", "--mode", "differential",
            "--fallback-all", *base)
    diff_id = r.stdout.strip().splitlines()[-1]
    diff = d.ctl_json("job", str([j for j in d.ctl_json("jobs") if j.get("snapshot") == diff_id][0]["id"]))
    check(diff["parent"] == full_id, f"differential parent {diff.get('parent')}")

    r = vbc(d, "list", "--from", "archive")
    for sid in (full_id, inc_id, diff_id):
        check(sid in r.stdout, f"list lacks {sid}:\n{r.stdout}")
    # the administrator's view of the same snapshots, through vbackupd's admin socket
    snaps = d.ctl_json("snapshots")
    check([(x["id"], x["target"]) for x in snaps] ==
          [(full_id, "archive"), (inc_id, "archive"), (diff_id, "archive")],
          f"vbackupctl snapshots (daemon): {snaps}")
    check([x["mode"] for x in d.ctl_json("snapshots", "--vm", "vm1", "--target", "archive")] ==
          ["full", "incremental", "differential"], "vbackupctl snapshots --vm --target")
    check(d.ctl_json("snapshots", "--vm", "vm2") == [], "another VM's snapshots are listed")
    table = d.ctl("snapshots").stdout
    check(table.startswith("TARGET") and all(f"archive      {x}" in table for x in
                                             (full_id, inc_id, diff_id)), f"table:\n{table}")
    r = d.ctl("snapshots", "--target", "nosuch", check_rc=False)
    check(r.returncode == 1 and "unknown target 'nosuch' (known: archive)" in r.stderr,
          f"snapshots --target nosuch: {r.returncode} {r.stderr}")
    r = vbc(d, "status")
    check("done" in r.stdout, f"status:\n{r.stdout}")

    src = mount(w, disk, offset=off)
    for sid, name in ((inc_id, "inc"), (diff_id, "diff")):
        out = w.p(f"out-{name}")
        vbc(d, "restore", "--from", "archive", "--snapshot", sid, "--into", out)
        same_trees(src, out, f"vbclient {name} restore")
    out = w.p("out-sub")
    vbc(d, "restore", "/srv/with space", "--from", "archive", "--into", out)
    check(os.listdir(out + "/srv") == ["with space"], "subtree restore")
    umount(w, src)
    r = vbc(d, "backup", "/srv", "--to", "nosuch", *base, ok=False)
    check(r.returncode == 1 and "unknown target 'nosuch'" in r.stderr, f"bad target: {r.stderr}")
    r = vbc(d, "restore", "/srv", "--from", "nosuch", "--into", w.p("never"), ok=False)
    check(r.returncode == 1 and "unknown target 'nosuch' (known: archive)" in r.stderr,
          f"restore from a bad target: {r.stderr}")
    check(d.stop() == 0, "vbackupd exit")
    log("ok: vbclient backups (full, incremental, differential, fallback, >8192 extents) and "
        "restores through vbackupd are exact")
