#!/usr/bin/env python3
"""Catalogs cost what changed (format 2): a files snapshot's catalog is a
stream cut by content (FastCDC) and deduplicated like file data, so an
unchanged backup adds no pack bytes and a slightly changed one adds the
changed file's data and the catalog pieces around its entry, not the whole
catalog again (format 1 writes each snapshot's catalog in full).

A tree of many small files with long names (a catalog of ~1.5 MiB) in an
ext4 image; through vbackupd, with the guest's records as vbclient's:
1. a full backup: the catalog stream is at least 1 MiB;
2. an unchanged incremental: the repository's packs grow by less than 64 KiB
   (the catalog and chunk list pieces are all found again);
3. one file in the middle changed: the packs grow, by less than an eighth
   of the catalog; the snapshot restores (vbackupctl restore-files) with the
   changed file's new bytes and every other file as before.
Format 2 only (its daemon suite); format 1 has no shared catalog pieces."""
import json
import os
import random
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from daemonlib import (TEST_FORMAT, VBACKUPCTL, Daemon, backup, check, log, make_ext4,  # noqa: E402
                       map_image, mount, same_trees, stored, umount, workdir)

if TEST_FORMAT != "2":
    print("SKIP: catalogs are deduplicated on format 2 repositories only")
    sys.exit(77)

SEED = int(os.environ.get("VB_TEST_SEED", random.randrange(1 << 32)))
print(f"seed {SEED} (VB_TEST_SEED={SEED} repeats this run)", flush=True)
rng = random.Random(SEED)
ROOTS = ["data"]
DIRS, PER_DIR = 40, 150        # 6000 files


def ctl(repo, *args):
    r = subprocess.run([VBACKUPCTL, "--repo", repo, "--quiet"] + list(args),
                       capture_output=True, text=True)
    check(r.returncode == 0, f"vbackupctl {' '.join(args)}: exit {r.returncode}: {r.stderr}")
    return r.stdout


def job(d, disk, mode):
    recs, fb = map_image(d.w, disk, ROOTS)
    return backup(d.conn("vm"), "archive", ["vm"], ROOTS, recs, fb, mode=mode)


def catalog_length(repo, snap):
    m = json.loads(ctl(repo, "show", snap, "--json"))
    return m["streams"]["catalog"]["length"]


with workdir() as w:
    tree = w.p("tree")
    for i in range(DIRS):
        folder = os.path.join(tree, "data", f"project-{i:03d}-with-a-descriptive-folder-name")
        os.makedirs(folder)
        for k in range(PER_DIR):
            # names that compress little, so that a catalog stored again in
            # full costs more than the bound of step 3
            name = f"report-{k:04d}-{rng.randbytes(20).hex()}.txt"
            with open(os.path.join(folder, name), "wb") as f:
                f.write(rng.randbytes(rng.randrange(64, 2048)))
    disk = make_ext4(w.p("disk.raw"), tree, size="192M")
    d = Daemon(w, {"vm": {"vm": disk}}, batch_seconds=0.1).start()
    repo = d.targets["archive"]

    # ---- 1. full ------------------------------------------------------------------------
    s0 = stored(repo)
    st1 = job(d, disk, "full")
    s1 = stored(repo)
    cat = catalog_length(repo, st1["snapshot"])
    log(f"full: {st1['snapshot']}, catalog {cat} bytes, packs +{s1 - s0}")
    check(cat >= 1 << 20, f"the test's catalog is too small to measure: {cat} bytes")

    # ---- 2. unchanged ------------------------------------------------------------------
    st2 = job(d, disk, "incremental")
    s2 = stored(repo)
    log(f"unchanged incremental: {st2['snapshot']}, packs +{s2 - s1}")
    check(catalog_length(repo, st2["snapshot"]) == cat,
          "the unchanged snapshot's catalog has another length")
    check(s2 - s1 < 64 << 10,
          f"an unchanged backup stored {s2 - s1} bytes (the catalog is {cat}): "
          "its catalog was not deduplicated")

    # ---- 3. one file changed ------------------------------------------------------------
    mnt = mount(w, disk, ro=False)
    folder = os.path.join("data", f"project-{DIRS // 2:03d}-with-a-descriptive-folder-name")
    victim = os.path.join(folder, sorted(os.listdir(os.path.join(tree, folder)))[PER_DIR // 2])
    new_bytes = rng.randbytes(3000)
    with open(os.path.join(mnt, victim), "wb") as f:
        f.write(new_bytes)
    umount(w, mnt)
    st3 = job(d, disk, "incremental")
    s3 = stored(repo)
    log(f"one file changed: {st3['snapshot']}, packs +{s3 - s2}")
    check(0 < s3 - s2 < cat // 8,
          f"one changed file stored {s3 - s2} bytes with a catalog of {cat}: "
          "the catalog was stored again, not its changed pieces")

    out = w.p("restored")
    ctl(repo, "restore-files", st3["snapshot"], "--to", out)
    # the oracle is the image's own tree (a small ext4 keeps whole-second times)
    mnt = mount(w, disk)
    same_trees(os.path.join(mnt, "data"), os.path.join(out, "data"),
               "the restored tree (after one change)")
    umount(w, mnt)
    with open(os.path.join(out, victim), "rb") as f:
        check(f.read() == new_bytes, "the changed file restored with old bytes")
    ctl(repo, "verify")
    log(f"ok: catalog {cat} bytes; unchanged +{s2 - s1}, one change +{s3 - s2} bytes")
