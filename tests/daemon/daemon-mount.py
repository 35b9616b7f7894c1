#!/usr/bin/env python3
"""vbackupctl mount shows the snapshots that vbackupd made (the other mount
tests write their catalogs with tests/engine/mkfilesnap.py): a full and an
incremental files backup through the daemon's socket of a real ext4 image,
mapped with FIEMAP as the guest tool maps it, and a whole-disk backup of
the same image.  Mounted, each files snapshot is the file system as it was
when it was taken (types, sizes, modes, mtimes, contents, symlinks, hard
link groups, holes, a > 4 GiB sparse file, UTF-8 names), the incremental
too (its unchanged files are the full's chunks), hard links share an inode
and count their links, and the disk snapshot is an image equal to the
disk.  fusermount3 -u ends the command with status 0."""
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from daemonlib import (Daemon, backup, check, describe, fail, log, make_ext4, make_tree,  # noqa
                       map_image, mount, umount, wait_for, workdir, VBACKUPCTL)
import vbproto as vp  # noqa: E402

ROOTS = ["etc", "srv"]


def same(want, got, what):
    if want != got:
        for k in sorted(set(want) | set(got)):
            if want.get(k) != got.get(k):
                print(f"  {k}:\n    on the disk  {want.get(k)}\n    mounted      {got.get(k)}")
        fail(f"{what}: the mounted snapshot differs from the file system it was taken of")
    return len(got)


class Mounted:
    """vbackupctl mount in the background, stopped however the test ends."""

    def __init__(self, w, repo, mnt):
        self.mnt = mnt
        self.log_path = w.p("mount.log")
        self.out = open(self.log_path, "w")
        self.proc = subprocess.Popen([VBACKUPCTL, "--repo", repo, "mount", mnt],
                                     stdout=self.out, stderr=subprocess.STDOUT)
        w.daemons.append(self)
        wait_for(lambda: "mounted" in self.log_text() or self.proc.poll() is not None,
                 "vbackupctl mount to say it mounted", timeout=120)
        check(self.proc.poll() is None, f"vbackupctl mount ended: {self.log_text()}")

    def log_text(self):
        return open(self.log_path, errors="replace").read()

    def kill(self):
        if self.proc.poll() is None:
            subprocess.run(["fusermount3", "-u", "-z", self.mnt], stderr=subprocess.DEVNULL)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


with workdir() as w:
    if not shutil.which("fusermount3"):
        fail("fusermount3 is missing (scripts/install-deps installs fuse3)")
    if not os.path.exists("/dev/fuse"):
        subprocess.run(["modprobe", "fuse"], stderr=subprocess.DEVNULL)
    if not os.path.exists("/dev/fuse"):
        print("SKIP: the kernel provides no FUSE (no /dev/fuse after modprobe fuse)")
        sys.exit(77)
    tree = w.p("tree")
    make_tree(tree)
    disk = make_ext4(w.p("data0.raw"), tree, size="768M")
    d = Daemon(w, {"web1": {"data0": disk}}).start()
    c = d.conn("web1")

    # ---- a full backup, a change, an incremental, a disk backup --------------------------
    recs, fb = map_image(w, disk, ROOTS, fallback=("srv/with space/*",))
    full_id = backup(c, "archive", ["data0"], ROOTS, recs, fb)["snapshot"]
    src = mount(w, disk)
    at_full = describe(src)
    umount(w, src)

    m = mount(w, disk, ro=False)
    with open(os.path.join(m, "srv/text.txt"), "a") as f:
        f.write("appended after the full backup\n")
    os.unlink(os.path.join(m, "etc/hosts"))
    with open(os.path.join(m, "srv/new.bin"), "wb") as f:
        f.write(os.urandom(1 << 20))
    umount(w, m)
    recs, fb = map_image(w, disk, ROOTS)
    st = backup(c, "archive", ["data0"], ROOTS, recs, fb, mode="incremental")
    inc_id = st["snapshot"]
    job = d.ctl_json("job", str(st["job"]))
    check(job.get("parent") == full_id, f"the incremental's parent is {job.get('parent')}")
    src = mount(w, disk)
    at_inc = describe(src)
    umount(w, src)

    job, _ = c.begin("archive", ["data0"], [], kind=vp.KIND_DISK)
    c.seal(job)
    st = c.wait_job(job)
    check(st["state"] == "done", f"the disk backup: {st}")
    disk_id = st["snapshot"]
    d.stop()
    log(f"vbackupd made {full_id} (files), {inc_id} (incremental), {disk_id} (disk)")

    # ---- mounted -----------------------------------------------------------------------
    mnt = w.p("mnt")
    os.mkdir(mnt)
    mo = Mounted(w, d.targets["archive"], mnt)
    check(sorted(os.listdir(mnt)) == ["web1"], f"the VMs shown: {os.listdir(mnt)}")
    check(sorted(os.listdir(os.path.join(mnt, "web1"))) ==
          sorted(s.split("/", 1)[1] for s in (full_id, inc_id, disk_id)),
          f"web1's snapshots: {os.listdir(os.path.join(mnt, 'web1'))}")
    n = same(at_full, describe(os.path.join(mnt, full_id)), "full")
    k = same(at_inc, describe(os.path.join(mnt, inc_id)), "incremental")
    log(f"the full snapshot ({n} entries) and the incremental ({k}) are the file system as it was")
    for snap in (full_id, inc_id):
        a = os.stat(os.path.join(mnt, snap, "srv/text.txt"))
        b = os.stat(os.path.join(mnt, snap, "srv/hardlink.txt"))
        check(a.st_ino == b.st_ino and a.st_nlink == 2 and b.st_nlink == 2,
              f"{snap}: the hard links do not share an inode with 2 links "
              f"({a.st_ino}/{a.st_nlink}, {b.st_ino}/{b.st_nlink})")
    check(os.listdir(os.path.join(mnt, disk_id)) == ["data0.raw"],
          f"the disk snapshot's folder: {os.listdir(os.path.join(mnt, disk_id))}")
    r = subprocess.run(["cmp", disk, os.path.join(mnt, disk_id, "data0.raw")],
                       capture_output=True, text=True)
    check(r.returncode == 0, f"the disk snapshot's image differs from the disk: {r.stdout}{r.stderr}")
    log("the disk snapshot's image is the disk")

    subprocess.run(["fusermount3", "-u", mnt], check=True)
    rc = mo.proc.wait(timeout=60)
    check(rc == 0, f"vbackupctl mount ended with {rc} after fusermount3 -u: {mo.log_text()}")
    log("ok: vbackupd's files and disk snapshots, mounted, are what was backed up")
