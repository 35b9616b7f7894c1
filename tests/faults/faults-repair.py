#!/usr/bin/env python3
"""Damage heals (docs/repository.md, "Damage and repair"): chunks flipped,
cut short, emptied or deleted, in disk snapshots (vbackupctl backup-disk) and
files snapshots (vbackupd, mapped files and fallback data).  `vbackupctl
repair` sets the damaged ones aside (<id>.bad, kept) and moves the gc
generation on; the next backup that has the data stores it again, and then
`verify` is clean and every snapshot restores byte for byte.  Snapshots that
cannot be healed are named; `forget` removes them.  A damaged gc.json is
rebuilt.  A repair killed at its first and at its last step leaves a
repository the next repair finishes.

  before the fix: there was no repair; a damaged chunk (present under its
  name) was never stored again, so verify stayed damaged forever."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib as fl  # noqa: E402
from faultlib import check, ctl, ctl_ok, log, snapshots  # noqa: E402

ROOTS = ["data"]


def verify_rc(repo):
    return ctl(repo, "verify").returncode


def repair(repo, *args):
    r = ctl(repo, "repair", "--json", *args)
    check(r.returncode in (0, 1), f"repair: exit {r.returncode}: {r.stderr}")
    return json.loads(r.stdout), r.returncode


def backup_disk(repo, vm, img):
    r = ctl_ok(repo, "backup-disk", "--vm", vm, "--name", "d", "--format", "raw", img)
    return r.stdout.split()[-1]


with fl.dl.workdir() as w:
    rng = fl.seeded("faults-repair")
    ledger = fl.Ledger(w)
    repo = w.p("repo")
    ctl_ok(repo, "init", "--format", "1")

    # ---- 1. disk snapshots: four kinds of damage, repair, one backup, clean ------------
    img = w.p("a.raw")
    with open(img, "wb") as f:
        f.write(os.urandom(24 << 20))
    sha = fl.sha_file(img)
    s1 = backup_disk(repo, "vm", img)
    chunks = img_chunks = sorted(fl.chunk_files(repo))
    check(len(chunks) == 6, f"{len(chunks)} chunks for a 24 MiB disk")
    victims = rng.sample(chunks, 4)
    kinds = ["flip", "short", "empty", "gone"]
    for path, how in zip(victims, kinds):
        fl.damage(path, how)
    r = ctl(repo, "verify")
    check(r.returncode == 1 and all(os.path.basename(v) in r.stdout for v in victims),
          f"verify does not name the four damaged chunks:\n{r.stdout}")
    s2 = backup_disk(repo, "vm", img)          # before a repair: trusts its parent's chunks
    rep, rc = repair(repo, "--dry-run")
    check(rc == 1 and len(rep["set_aside"]) == 3 and len(rep["missing"]) == 1 and
          not rep["generation_moved"] and all(os.path.exists(v) for v in victims[:3]),
          f"repair --dry-run changed something or missed damage: {rep}")
    gen0 = rep["generation"]
    rep, rc = repair(repo)
    check(rc == 1 and rep["generation_moved"] and rep["generation"] == gen0 + 1,
          f"repair did not move the generation: {rep}")
    check(sorted(rep["waiting"]) == sorted([s1, s2]), f"repair names {rep['waiting']}")
    for v in victims[:3]:
        check(not os.path.exists(v) and os.path.exists(v + ".bad"),
              f"{v}: not set aside as .bad")
    check(verify_rc(repo) == 1, "verify is clean before a backup stored the data again")
    s3 = backup_disk(repo, "vm", img)
    check(verify_rc(repo) == 0, "verify after repair and a backup with the data")
    for s in (s1, s2, s3):
        ledger.disk(repo, s, sha)
    ledger.check("disk snapshots healed")
    rep, rc = repair(repo)
    check(rc == 0 and not rep["set_aside"] and not rep["missing"] and not rep["generation_moved"],
          f"a second repair found something: {rep}")
    g = json.loads(ctl_ok(repo, "gc", "--json").stdout)
    check(all(os.path.exists(v + ".bad") for v in victims[:3]), "gc removed a chunk set aside")
    log(f"disk: flipped, short, empty and deleted chunks healed by repair + one backup "
        f"(gc then removed {g['chunks_removed']} chunks, kept the .bad files)")

    # ---- 2. files snapshots of vbackupd: mapped files and fallback data -----------------
    tree = w.p("tree")
    fl.dl.random_files(tree + "/data", 5, 3 << 19)
    fl.dl.random_files(tree + "/data/fb", 2, 1 << 20)
    ext4 = fl.dl.make_ext4(w.p("d1.raw"), tree, size="64M")
    recs, fb = fl.dl.map_image(w, ext4, ROOTS, fallback=("data/fb/*",))
    check(fb, "no fallback files")
    src = fl.dl.mount(w, ext4)
    want = fl.tree_content(src, ROOTS)
    fl.dl.umount(w, src)
    d = fl.dl.Daemon(w, {"vm2": {"d1": ext4}}, targets={"archive": repo}, batch_seconds=0.1)
    d.start()
    c = d.conn("vm2")
    before = fl.chunk_files(repo)
    full = fl.dl.backup(c, "archive", ["d1"], ROOTS, recs, fb)["snapshot"]
    mine = sorted(fl.chunk_files(repo) - before)
    check(len(mine) >= 6, f"the files backup stored {len(mine)} chunks")
    hit = rng.sample(mine, 3)
    for path, how in zip(hit, ["flip", "empty", "gone"]):
        fl.damage(path, how)
    rep, rc = repair(repo)
    check(rc == 1 and full in rep["waiting"] and len(rep["set_aside"]) + len(rep["missing"]) == 3,
          f"repair of the files snapshot: {rep}")
    inc = fl.dl.backup(c, "archive", ["d1"], ROOTS, recs, fb, mode="incremental")
    job = d.ctl_json("job", str(inc["job"]))
    check(job.get("parent") == full, f"the incremental's parent is {job.get('parent')}")
    check(verify_rc(repo) == 0, "verify after repair and an incremental with the data")
    ledger.files(repo, full, want)
    ledger.files(repo, inc["snapshot"], want)
    ledger.check("files snapshots healed")
    log("files (mapped and fallback): repair + an incremental backup healed the full one")

    # ---- 3. what cannot be healed is named; forget removes it ---------------------------
    gone = w.p("gone.raw")
    with open(gone, "wb") as f:
        f.write(os.urandom(8 << 20))
    before = fl.chunk_files(repo)
    lost = backup_disk(repo, "vm3", gone)
    os.unlink(gone)                             # its data exists nowhere else
    fl.damage(sorted(fl.chunk_files(repo) - before)[0], "flip")
    unread = backup_disk(repo, "vm4", img)
    with open(os.path.join(repo, "snapshots", unread, "index.json"), "w") as f:
        f.write("{ damaged")
    rep, rc = repair(repo)
    check(rc == 1 and lost in rep["waiting"] and
          [x["snapshot"] for x in rep["unreadable"]] == [unread],
          f"repair does not name what cannot be healed: {rep}")
    text = ctl(repo, "repair").stdout
    check(f"cannot be healed: {unread}" in text and f"needs data again: {lost}" in text,
          f"repair's report:\n{text}")
    backup_disk(repo, "vm", img)                # other data: heals nothing of vm3
    rep, rc = repair(repo)
    check(rc == 1 and rep["waiting"] == [lost], f"still damaged: {rep}")
    check(ctl(repo, "gc").returncode == 1, "gc ran with an unreadable snapshot")
    r = ctl_ok(repo, "forget", lost, unread)
    check(verify_rc(repo) == 0, "verify after forgetting what could not be healed")
    ctl_ok(repo, "gc")
    rep, rc = repair(repo)
    check(rc == 0, f"repair after forget: {rep}")
    ledger.check("after forget")
    log("unhealable snapshots named (data gone, index damaged); forget removed them")

    # ---- 4. a damaged gc.json is rebuilt above every recorded generation -------------
    with open(os.path.join(repo, "gc.json"), "w") as f:
        f.write("garbage")
    r = ctl(repo, "backup-disk", "--vm", "vm", "--format", "raw", img)
    check(r.returncode == 1 and "gc.json is damaged" in r.stderr, f"backup with a bad gc.json: "
          f"{r.stderr}")
    rep, rc = repair(repo)
    highest = max(json.loads(ctl_ok(repo, "show", s, "--json").stdout).get("gc_generation", 0)
                  for s in snapshots(repo))
    check(rep["gc_json_damaged"] and rep["generation"] > highest, f"gc.json rebuilt as {rep}")
    s = backup_disk(repo, "vm", img)
    ledger.disk(repo, s, sha)
    log(f"gc.json rebuilt with generation {rep['generation']} (highest recorded: {highest})")

    # ---- 5. repair killed at its first and at its last step ------------------------------
    hold = fl.Hold(w)
    for step, rule in (("first", "hold:fsync:/repo/.tmp-:file:once"),
                       ("last", "hold:syncfs:/repo$:once")):
        s = backup_disk(repo, "vm5", img)      # a new snapshot, generation of now
        for path in rng.sample(img_chunks, 2):
            fl.damage(path, "flip")
        p = fl.ctl_bg(repo, "repair", env=fl.fault_env([rule], hold=hold))
        hold.wait(f"repair's {step} step", lambda: p.poll() is None)
        p.kill()
        p.wait()
        hold.reset()
        rep, rc = repair(repo)
        backup_disk(repo, "vm", img)
        check(verify_rc(repo) == 0, f"verify after a repair killed at its {step} step, a repair "
              f"and a backup")
        ledger.disk(repo, s, sha)
    n = ledger.check("the end")
    log(f"ok: repair killed at its first and last step, then repaired; {n} snapshots verify and "
        "restore byte for byte")
    check(d.stop() == 0, "vbackupd's exit status")
