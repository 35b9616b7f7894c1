#!/usr/bin/env python3
"""File-level backup and restore through vbackupd's real socket, with the
data read from the VM's disk image at the extents FIEMAP gives (as the guest
tool does): full, incremental (unchanged files not read), differential,
fallback data, restore of everything and of a subtree.  Bytes, sizes, modes,
mtimes, symlinks, hard links, holes, > 4 GiB files, UTF-8 names must match."""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from daemonlib import (Daemon, allocated, backup, check, fail, log, make_ext4, make_tree,  # noqa
                       map_image, mount, restore, same_trees, stored, umount, workdir, run,
                       VBACKUPCTL)

ROOTS = ["etc", "srv"]

with workdir() as w:
    tree = w.p("tree")
    make_tree(tree)
    disk = make_ext4(w.p("data0.raw"), tree, size="768M")
    d = Daemon(w, {"web1": {"data0": disk}}).start()
    c = d.conn("web1")
    hello = c.hello()
    check(hello["vm"] == "web1", f"HELLO names VM {hello['vm']}")

    # ---- full --------------------------------------------------------------
    recs, fb = map_image(w, disk, ROOTS, fallback=("srv/with space/*",))
    check(fb, "the fallback files were not selected")
    st = backup(c, "archive", ["data0"], ROOTS, recs, fb)
    full_id = st["snapshot"]
    log(f"full backup {full_id}: {st['files_done']} entries, {st['bytes_done']} bytes, "
        f"new {st['bytes_new']}")
    total, snaps = c.list("archive")
    check(total == 1 and snaps[0]["id"] == full_id and snaps[0]["roots"] == ROOTS,
          f"LIST: {snaps}")

    src = mount(w, disk)
    out = w.p("restore-full")
    n = restore(c, "archive", full_id, out)
    k = same_trees(src, out, "full restore")
    log(f"full restore: {n} entries, {k} compared equal")
    check(allocated(os.path.join(out, "srv/huge-sparse.img")) < (1 << 20),
          "the > 4 GiB sparse file was not restored sparse")
    check(os.stat(os.path.join(out, "srv/text.txt")).st_ino ==
          os.stat(os.path.join(out, "srv/hardlink.txt")).st_ino, "hard link not restored")
    umount(w, src)

    # ---- change things; incremental reads only what changed ---------------
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
    log(f"incremental {inc_id}: read {job['bytes_read']} bytes, reused {job['bytes_reused']}")
    check(job.get("parent") == full_id, f"incremental parent is {job.get('parent')}")
    check(job["bytes_read"] < (4 << 20),
          f"incremental read {job['bytes_read']} bytes: unchanged files were read again")
    check(any("unchanged files" in n for n in job["plan"]), f"plan: {job['plan']}")
    src = mount(w, disk)
    out = w.p("restore-inc")
    restore(c, "archive", "latest", out)
    same_trees(src, out, "incremental restore")
    umount(w, src)

    # ---- differential: parent is the last full ------------------------------
    m = mount(w, disk, ro=False)
    with open(os.path.join(m, "srv/random.bin"), "r+b") as f:
        f.seek(1 << 20)
        f.write(b"changed in the middle")
    umount(w, m)
    recs, fb = map_image(w, disk, ROOTS)
    st = backup(c, "archive", ["data0"], ROOTS, recs, fb, mode="differential")
    job = d.ctl_json("job", str(st["job"]))
    check(job.get("parent") == full_id, f"differential parent is {job.get('parent')}, not the full")
    src = mount(w, disk)
    out = w.p("restore-diff")
    restore(c, "archive", st["snapshot"], out)
    same_trees(src, out, "differential restore")

    # ---- restore a subtree, by the short id ---------------------------------
    out = w.p("restore-sub")
    n = restore(c, "archive", inc_id.split("/", 1)[1], out, paths=["srv/with space"])
    check(n == 3, f"subtree restore gave {n} entries")
    check(sorted(os.listdir(out)) == ["srv"] and sorted(os.listdir(os.path.join(out, "srv"))) ==
          ["with space"], "subtree restore restored other paths")
    with open(os.path.join(out, "srv/with space/ünïcödé ✓/file one.txt")) as f:
        check(f.read() == "ünïcödé content ✓\n", "UTF-8 file content")
    umount(w, src)

    # ---- on the host: list and restore files without the VM -----------------
    src = mount(w, disk)
    r = subprocess.run([VBACKUPCTL, "--repo", d.targets["archive"], "ls", st["snapshot"], "/srv"],
                       capture_output=True, text=True)
    check(r.returncode == 0 and "/srv/huge-sparse.img" in r.stdout and " -> text.txt" in r.stdout,
          f"vbackupctl ls: {r.stdout}{r.stderr}")
    out = w.p("restore-host")
    r = subprocess.run([VBACKUPCTL, "--repo", d.targets["archive"], "restore-files",
                        st["snapshot"], "--to", out], capture_output=True, text=True)
    check(r.returncode == 0, f"restore-files: {r.stderr}")
    same_trees(src, out, "restore-files on the host")
    check(allocated(os.path.join(out, "srv/huge-sparse.img")) < (1 << 20),
          "restore-files did not keep the hole")
    r = subprocess.run([VBACKUPCTL, "--repo", d.targets["archive"], "restore-files",
                        st["snapshot"], "/nope", "--to", out], capture_output=True, text=True)
    check(r.returncode == 1 and "'/nope' is not in the snapshot" in r.stderr,
          f"restore-files of a missing path: {r.stderr}")
    umount(w, src)

    # ---- what the guest could not back up: listed incomplete ---------------
    recs, _ = map_image(w, disk, ["etc"])
    job = backup(c, "archive", ["data0"], ["etc"], recs, [], wait=False, seal=False)
    c.problems(job, [("etc/shadow", "cannot read: Permission denied")])
    c.seal(job)
    st = c.wait_job(job)
    check(st["state"] == "done", f"the backup with a problem: {st}")
    _, snaps = c.list("archive")
    inc = [s for s in snaps if s["id"] == st["snapshot"]]
    check(inc and inc[0]["incomplete"], f"LIST does not mark it incomplete: {inc}")
    shown = [ln for ln in d.ctl("snapshots").stdout.splitlines() if st["snapshot"] in ln]
    check(shown and "(incomplete)" in shown[0], f"vbackupctl snapshots: {shown}")

    # ---- an unchanged incremental after a full stores nothing new ------------
    # (format 2 keeps the catalog as a stream of deduplicated blobs: the
    # catalog holds no per-snapshot provenance, so both serialize the same)
    repo = d.targets["archive"]
    recs, fb = map_image(w, disk, ROOTS)
    backup(c, "archive", ["data0"], ROOTS, recs, fb)
    before = stored(repo)
    recs, fb = map_image(w, disk, ROOTS)
    st = backup(c, "archive", ["data0"], ROOTS, recs, fb, mode="incremental")
    grew = stored(repo) - before
    log(f"unchanged incremental after a full: {grew} bytes stored")
    check(grew == 0, f"an unchanged incremental stored {grew} bytes")

    # ---- the repository ------------------------------------------------------
    r = subprocess.run([VBACKUPCTL, "--repo", repo, "verify"], capture_output=True, text=True)
    check(r.returncode == 0, f"verify: {r.stdout}{r.stderr}")
    r = subprocess.run([VBACKUPCTL, "--repo", repo, "gc", "--json"], capture_output=True, text=True)
    # nothing is garbage here: format 1 removes no chunk, format 2 condemns,
    # repacks and deletes no pack
    gc = json.loads(r.stdout) if r.returncode == 0 else {}
    removed = [gc.get(k, 0) for k in ("chunks_removed", "packs_condemned", "packs_repacked",
                                       "packs_deleted")]
    check(r.returncode == 0 and ("chunks_removed" in gc or "packs_condemned" in gc) and
          not any(removed), f"gc removed chunks that snapshots reference: {r.stdout}{r.stderr}")
    jobs = d.ctl_json("jobs")
    check(all(j["state"] == "done" for j in jobs), f"jobs: {jobs}")
    check(d.stop() == 0, "vbackupd did not exit cleanly on SIGTERM")
    log("ok: file backups (full, incremental, differential, fallback) and restores match")
