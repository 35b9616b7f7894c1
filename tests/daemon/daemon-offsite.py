#!/usr/bin/env python3
"""copy_to: vbackupd copies each snapshot committed to a target into a
format 2 repository (here an encrypted folder, its password in a file).
1. A files backup and a disk backup appear in the copy with the same ids;
   restore-files from the copy gives the tree a restore from the target
   gives (types, modes, sizes, mtimes, content hashes); verify --read-data
   of the copy is clean.
2. A second (incremental) backup's copy stores only its new chunks.
3. A wrong copy_password_file is refused at start, the message naming the
   target and never the password.
4. A restart catches up a snapshot the copy lacks (one forgotten in it).
5. A shutdown during a copy cancels it (when the copy has not ended
   first): the snapshot is not in the copy, verify is clean, and the next
   start copies it."""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vbproto as vp  # noqa: E402
from daemonlib import (VBACKUPCTL, VBACKUPD, Daemon, backup, check, fail, log,  # noqa: E402
                       make_ext4, make_tree, map_image, mount, run, same_trees, umount, workdir)

ROOTS = ["etc", "srv"]
PASSWORD = "offsite-secret-7d1f"
MiB = 1 << 20


def ctl(*args, pw=None):
    env = dict(os.environ)
    env.pop("VBACKUP_REPO", None)
    if pw:
        env["VBACKUP_PASSWORD_FILE"] = pw
    return subprocess.run([VBACKUPCTL] + list(args), capture_output=True, text=True, env=env)


def copy_ids(copy, pw):
    r = ctl("--repo", copy, "snapshots", "--json", pw=pw)
    check(r.returncode == 0, f"snapshots --json of the copy: {r.stderr}")
    return {s["id"] for s in json.loads(r.stdout)}


def wait_copied(d, copy, pw, ids, timeout=120):
    """Until the copy lists every one of ids; a failure logged fails at once."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if set(ids) <= copy_ids(copy, pw):
            return
        if "copy_to: failed" in d.log_text():
            fail(f"a copy failed:\n{d.log_text()[-3000:]}")
        time.sleep(0.2)
    fail(f"{ids} not in the copy after {timeout} s:\n{d.log_text()[-3000:]}")


def size_of(folder):
    return sum(os.path.getsize(os.path.join(dp, f))
               for dp, _, fs in os.walk(folder) for f in fs)


with workdir() as w:
    pw = w.p("copy.pw")
    with open(pw, "w") as f:
        f.write(PASSWORD + "\n")
    os.chmod(pw, 0o600)
    copy = w.p("offsite")
    r = ctl("--repo", copy, "--quiet", "init", "--format", "2", "--encryption", "aes-256-gcm",
            "--password-file", pw)
    check(r.returncode == 0, f"init --format 2: {r.stderr}")

    tree = w.p("tree")
    make_tree(tree)
    disk = make_ext4(w.p("data0.raw"), tree, size="128M")
    tconf = {"archive": {"copy_to": copy, "copy_password_file": pw}}
    d = Daemon(w, {"web1": {"data0": disk}}, target_conf=tconf).start()
    repo = d.targets["archive"]
    c = d.conn("web1")

    # ---- 1. a files backup and a disk backup, copied with their ids ------------------
    recs, fb = map_image(w, disk, ROOTS)
    st = backup(c, "archive", ["data0"], ROOTS, recs, fb)
    files_id = st["snapshot"]
    dj, _ = c.begin("archive", ["data0"], [], kind=vp.KIND_DISK)
    c.seal(dj)
    st = c.wait_job(dj)
    check(st["state"] == "done", f"disk job: {st}")
    disk_id = st["snapshot"]
    wait_copied(d, copy, pw, [files_id, disk_id])
    check(f"copy of {files_id} to archive's copy_to: done (" in d.log_text() and
          f"copy of {disk_id} to archive's copy_to: done (" in d.log_text(),
          f"the log does not say the copies are done:\n{d.log_text()[-3000:]}")
    log(f"copied {files_id} and {disk_id} into the format 2 copy")

    out1, out2 = w.p("restore-target"), w.p("restore-copy")
    r = ctl("--repo", repo, "restore-files", files_id, "--to", out1)
    check(r.returncode == 0, f"restore-files from the target: {r.stderr}")
    r = ctl("--repo", copy, "restore-files", files_id, "--to", out2, pw=pw)
    check(r.returncode == 0, f"restore-files from the copy: {r.stderr}")
    n = same_trees(out1, out2, "restore from the copy against the target's")
    src = mount(w, disk)
    same_trees(src, out2, "restore from the copy against the disk")
    umount(w, src)
    log(f"restore-files from the copy: {n} entries equal to the target's restore")
    r = ctl("--repo", copy, "verify", "--read-data", pw=pw)
    check(r.returncode == 0, f"verify --read-data of the copy: {r.stdout}{r.stderr}")

    # ---- 2. the next backup's copy stores only its new chunks -------------------------
    m = mount(w, disk, ro=False)
    with open(os.path.join(m, "srv/new.bin"), "wb") as f:
        f.write(os.urandom(2 * MiB))
    umount(w, m)
    before = size_of(copy)
    recs, fb = map_image(w, disk, ROOTS)
    st = backup(c, "archive", ["data0"], ROOTS, recs, fb, mode="incremental")
    inc_id = st["snapshot"]
    wait_copied(d, copy, pw, [inc_id])
    grew = size_of(copy) - before
    check(2 * MiB <= grew < 3 * MiB, f"the second copy stored {grew} bytes for 2 MiB of new data")
    log(f"the incremental's copy stored {grew} bytes (2 MiB new)")
    out3 = w.p("restore-copy-inc")
    r = ctl("--repo", copy, "restore-files", inc_id, "--to", out3, pw=pw)
    check(r.returncode == 0, f"restore-files of the incremental from the copy: {r.stderr}")
    src = mount(w, disk)
    same_trees(src, out3, "the incremental restored from the copy")
    umount(w, src)
    check(d.stop() == 0, "vbackupd did not exit cleanly on SIGTERM")

    # ---- 4. a restart catches up what the copy lacks ------------------------------------
    r = ctl("--repo", copy, "forget", inc_id, pw=pw)
    check(r.returncode == 0, f"forget in the copy: {r.stderr}")
    check(inc_id not in copy_ids(copy, pw), "forget left the snapshot")
    d.start()
    wait_copied(d, copy, pw, [inc_id])
    check(d.stop() == 0, "vbackupd did not exit cleanly on SIGTERM")
    log("a restart copied the snapshot the copy lacked")
    r = ctl("--repo", copy, "verify", "--read-data", pw=pw)
    check(r.returncode == 0, f"verify --read-data of the copy: {r.stdout}{r.stderr}")

    # ---- 5. a shutdown during a copy cancels it: nothing of it in the copy -----------------
    m = mount(w, disk, ro=False)
    with open(os.path.join(m, "srv/big.bin"), "wb") as f:
        f.write(os.urandom(64 * MiB))
    umount(w, m)
    d.start()
    c = d.conn("web1")
    dj, _ = c.begin("archive", ["data0"], [], kind=vp.KIND_DISK)
    c.seal(dj)
    st = c.wait_job(dj)
    check(st["state"] == "done", f"disk job: {st}")
    big_id = st["snapshot"]
    deadline = time.monotonic() + 60
    while f"copy of {big_id} to archive's copy_to: started" not in d.log_text():
        check(time.monotonic() < deadline, "the copy of the disk backup did not start")
        time.sleep(0.02)
    t0 = time.monotonic()
    check(d.stop() == 0, "vbackupd did not exit cleanly on SIGTERM during a copy")
    took = time.monotonic() - t0
    text = d.log_text()
    if f"copy of {big_id} to archive's copy_to: cancelled" in text or \
            "copy of target archive to its copy_to: cancelled" in text:
        check(big_id not in copy_ids(copy, pw), "a cancelled copy left its snapshot")
        said = [ln for ln in text.splitlines() if "cancelled" in ln][-1]
        log(f"the copy running at shutdown was cancelled ({said}); vbackupd stopped in "
            f"{took:.1f} s")
    else:
        check(f"copy of {big_id} to archive's copy_to: done" in text,
              f"the copy at shutdown neither done nor cancelled:\n{text[-3000:]}")
        log("the copy ended before the shutdown reached it (nothing to cancel)")
    r = ctl("--repo", copy, "verify", "--read-data", pw=pw)
    check(r.returncode == 0, f"verify --read-data after the shutdown: {r.stdout}{r.stderr}")
    d.start()                           # and the next start copies it
    wait_copied(d, copy, pw, [big_id])
    check(d.stop() == 0, "vbackupd did not exit cleanly on SIGTERM")

    # ---- 3. a wrong password is refused at start, naming the target -----------------------
    bad = w.p("wrong.pw")
    with open(bad, "w") as f:
        f.write("not-the-password-4c2e\n")
    text = open(d.conf).read().replace(f"copy_password_file={pw}", f"copy_password_file={bad}")
    conf = w.p("bad.conf")
    open(conf, "w").write(text)
    r = subprocess.run([VBACKUPD, "--config", conf], capture_output=True, text=True, timeout=60)
    out = r.stdout + r.stderr
    check(r.returncode != 0, f"vbackupd started with a wrong copy_password_file:\n{out}")
    check("target archive" in out and "copy_to" in out, f"the refusal does not name the "
          f"target: {out}")
    check("not-the-password" not in out and PASSWORD not in out,
          f"the refusal prints a password: {out}")
    log(f"a wrong copy_password_file is refused: {out.strip().splitlines()[-1]}")
    base = [ln for ln in open(d.conf).read().splitlines()
            if not ln.startswith(("copy_to=", "copy_password_file="))]
    at = base.index(f"repository={repo}") + 1
    for keys, want in (([f"copy_to={copy}", f"copy_password_file={pw}", "copy_credential=x"],
                        "exclude each other"),
                       ([f"copy_to={w.p('nowhere')}"], "copy_to"),
                       ([f"copy_password_file={pw}"], "without copy_to")):
        open(conf, "w").write("\n".join(base[:at] + keys + base[at:]) + "\n")
        r = subprocess.run([VBACKUPD, "--config", conf, "--check-config"], capture_output=True,
                           text=True, timeout=60)
        out = r.stdout + r.stderr
        check(r.returncode != 0 and want in out and "archive" in out,
              f"a bad [target] ({keys}) is not refused naming it: {out}")
    log("copy_password_file with copy_credential, a copy_to that is no repository, a "
        "password file without copy_to: refused")
    # the target's own password (format 2): wrong, missing, or given to format 1
    bad = w.p("bad-password")
    open(bad, "w").write("not-the-password\n")
    enc = w.p("enc-target")
    run(VBACKUPCTL, "--repo", enc, "--quiet", "init", "--format", "2",
        "--encryption", "aes-256-gcm", env=dict(os.environ, VBACKUP_PASSWORD_FILE=pw))
    plain = [ln for ln in base if not ln.startswith("repository=")]
    at = plain.index("[target archive]") + 1
    for keys, want in (([f"repository={enc}", f"password_file={bad}"], "wrong password"),
                       ([f"repository={enc}"], "give password_file or password_credential"),
                       ([f"repository={enc}", f"password_file={pw}", "password_credential=x"],
                        "exclude each other"),
                       ([f"repository={w.p('v1')}", f"password_file={pw}"],
                        "not a format 2 repository")):
        if "v1" in keys[0] and not os.path.exists(w.p("v1")):
            run(VBACKUPCTL, "--repo", w.p("v1"), "--quiet", "init", "--format", "1")
        open(conf, "w").write("\n".join(plain[:at] + keys + plain[at:]) + "\n")
        r = subprocess.run([VBACKUPD, "--config", conf, "--check-config"], capture_output=True,
                           text=True, timeout=60)
        out = r.stdout + r.stderr
        check(r.returncode != 0 and want in out and "target archive" in out,
              f"a bad format 2 target ({keys}) is not refused naming it: {out}")
        check("not-the-password" not in out and PASSWORD not in out,
              f"the refusal prints a password: {out}")
    log("a format 2 target's wrong or missing password, password_file with "
        "password_credential, a password for format 1: refused")
    log("ok: copy_to copies each new snapshot, restorable and verified in the copy")
