#!/usr/bin/env python3
"""A real guest (no network device at all) backs itself up through the
virtio-backup device: full, then incremental after changes; then, in a
second boot, it deletes files and restores into another folder and into
place.  Every restored file's SHA-256, size, mode, mtime (to the
nanosecond), symlinks, hard links and holes equal the state backed up.  The
guest also asks for a whole-disk backup, which the host restores with
vbackupctl restore-disk: its file system holds the same tree."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import subprocess
from guestlib import (Daemon, artifacts, boot, check, log, make_tree, mount, partitioned_ext4,  # noqa
                      same_trees, umount, workdir, run, allocated, VBACKUPCTL)

with workdir() as w:
    artifacts()
    tree = w.p("tree")
    make_tree(tree)
    data = w.p("data.raw")
    off = partitioned_ext4(data, tree, 768)
    run("truncate", "-s", "768M", w.p("scratch.raw"))
    run("mkfs.ext4", "-q", "-F", w.p("scratch.raw"))
    d = Daemon(w, {"guest1": {"data0": data}}, batch_seconds=1).start()
    disks = [(data, "data0", "raw"), (w.p("scratch.raw"), "scratch0", "raw")]

    console = boot(w, """
ip link | grep -v '^[0-9]*: lo' | grep -q '^[0-9]' && { echo "a network device exists"; exit 9; }
mkdir -p /data && mount /dev/vda1 /data
vbackup backup /data --to archive --mode full
echo "appended after the full backup" >> /data/srv/text.txt
echo new > /data/srv/new.txt
chmod 600 /data/srv/random.bin
touch -d '2001-02-03 04:05:06' /data/srv/empty
vbackup backup /data --to archive --mode incremental
sync
vbackup backup-disk --to archive data0
vbackup list --from archive
umount /data
""", disks, d.sock("guest1"), name="backup")
    check("incremental" in console and "guest1/" in console, "vbackup list shows no snapshots")
    # the state that was backed up last: the disk as it is now
    run("cp", "--sparse=always", data, w.p("ref.raw"))
    # the whole-disk snapshot the guest asked for: restored on the host, its file
    # system holds the same tree
    import json
    snaps = json.loads(subprocess.run([VBACKUPCTL, "--repo", d.targets["archive"], "snapshots",
                                       "--json"], capture_output=True, text=True).stdout)
    disk_snaps = [x for x in snaps if x["type"] == "disk"]
    check(len(disk_snaps) == 1 and disk_snaps[0]["group"] == "disk:data0", f"snapshots: {snaps}")
    run(VBACKUPCTL, "--repo", d.targets["archive"], "--quiet", "restore-disk",
        disk_snaps[0]["id"], "--to", w.p("disk-restored.raw"))
    dr = mount(w, w.p("disk-restored.raw"), offset=off)
    rf = mount(w, w.p("ref.raw"), offset=off)
    same_trees(rf, dr, "the guest's whole-disk backup, restored on the host")
    umount(w, dr)
    umount(w, rf)

    boot(w, """
mkdir -p /data /restore && mount /dev/vda1 /data && mount /dev/vdb /restore
rm -rf /data/srv/with\\ space /data/srv/text.txt /data/srv/huge-sparse.img
echo scribble > /data/srv/hardlink.txt
vbackup restore /data --from archive --into /restore
vbackup restore /data --from archive
umount /data /restore
""", disks, d.sock("guest1"), name="restore")

    ref = mount(w, w.p("ref.raw"), offset=off)
    now = mount(w, data, offset=off)
    other = mount(w, w.p("scratch.raw"))
    n = same_trees(ref, os.path.join(other, "data"), "restore into another folder")
    same_trees(ref, now, "restore into place")
    check(allocated(os.path.join(other, "data/srv/huge-sparse.img")) < (1 << 20),
          "the > 4 GiB sparse file was not restored sparse")
    log(f"ok: {n} entries restored equal twice (elsewhere and in place)")
    for m in (ref, now, other):
        umount(w, m)
    check(d.stop() == 0, "vbackupd exit")
