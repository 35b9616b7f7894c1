#!/usr/bin/env python3
"""restore-disk never destroys what it was pointed at before it succeeds:
killed just before it finishes, killed at random moments, or failing on a
damaged chunk, a restore (raw and qcow2, over an existing image with
--force or to a new name) leaves the old image as it was, or no file at
all, and nothing else in the folder; a restore that succeeds replaces the
image whole (keeping its mode).  A block device is written in place.

  before the fix: the target was truncated when the restore began, a killed
  restore left a half-written file under the target's name, and a failed one
  removed the target."""
import os
import signal
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib as fl  # noqa: E402
from faultlib import check, ctl, ctl_ok, log  # noqa: E402


def listing(d):
    return sorted(os.listdir(d))


with fl.dl.workdir() as w:
    rng = fl.seeded("faults-restore")
    repo = w.p("repo")
    ctl_ok(repo, "init", "--format", "1")
    img = w.p("a.raw")
    with open(img, "wb") as f:
        f.write(os.urandom(20 << 20))
        f.seek(40 << 20)
        f.write(os.urandom(4 << 20))            # a hole between
    sha = fl.sha_file(img)
    sid = ctl_ok(repo, "backup-disk", "--vm", "vm", "--format", "raw", img).stdout.split()[-1]
    out = w.p("out")
    os.makedirs(out)
    target = os.path.join(out, "disk.img")
    old = os.urandom(3 << 20)
    hold = fl.Hold(w)

    def put_old():
        with open(target, "wb") as f:
            f.write(old)
        os.chmod(target, 0o640)

    def intact(what):
        check(listing(out) == ["disk.img"], f"{what}: the folder holds {listing(out)}")
        with open(target, "rb") as f:
            check(f.read() == old, f"{what}: the old image was changed")

    def absent(what):
        check(listing(out) == [], f"{what}: the folder holds {listing(out)}")

    # ---- 1. killed at the last step (its fsync), over an image and to a new name --------
    for fmt in ("raw", "qcow2"):
        for over in (True, False):
            if over:
                put_old()
            what = f"{fmt} restore {'over an image' if over else 'to a new name'} killed at its fsync"
            p = fl.ctl_bg(repo, "restore-disk", sid, "--to", target, "--format", fmt,
                          *(["--force"] if over else []),
                          env=fl.fault_env([f"hold:fsync:{out}/:file:once"], hold=hold))
            hold.wait(what, lambda: p.poll() is None)
            p.kill()
            p.wait()
            hold.reset()
            intact(what) if over else absent(what)
            if over:
                os.unlink(target)
    log("killed at its last step: the old image intact, no new file, nothing else")

    # ---- 2. killed at random moments ----------------------------------------------------------
    kills = 0
    for i in range(8):
        fmt = rng.choice(["raw", "qcow2"])
        over = rng.random() < 0.5
        if over:
            put_old()
        p = fl.ctl_bg(repo, "restore-disk", sid, "--to", target, "--format", fmt,
                      *(["--force"] if over else []))
        time.sleep(rng.uniform(0, 0.4))
        p.send_signal(signal.SIGKILL)
        rc = p.wait()
        what = f"{fmt} restore {'over an image' if over else 'to a new name'} killed at random"
        kills += rc != 0
        # the old image, or no file; or, once the restore got to its end (it
        # may have been killed after that), the whole new image
        if listing(out) == ["disk.img"] and (not over or open(target, "rb").read(16) != old[:16]):
            conv = w.p("conv.raw")
            if fmt == "qcow2":
                fl.run("qemu-img", "convert", "-O", "raw", target, conv)
            else:
                os.rename(target, conv)
            check(fl.sha_file(conv) == sha, f"{what}: a half-restored image is left")
            os.unlink(conv)
        elif rc == 0:
            fl.fail(f"{what}: the restore succeeded but left {listing(out)}")
        else:
            intact(what) if over else absent(what)
        if os.path.exists(target):
            os.unlink(target)
    log(f"{kills} restores killed at random moments: nothing destroyed, nothing left")

    # ---- 3. a restore that fails (a chunk cannot be read) ------------------------------------
    chunk = sorted(fl.chunk_files(repo))[1]
    put_old()
    r = ctl(repo, "restore-disk", sid, "--to", target, "--force",
            env=fl.fault_env([f"fail:read:{os.path.basename(chunk)}"]))
    check(r.returncode == 1 and "Input/output error" in r.stderr, f"failing restore: {r.stderr}")
    intact("a restore that failed on an unreadable chunk")
    os.unlink(target)
    r = ctl(repo, "restore-disk", sid, "--to", target,
            env=fl.fault_env([f"fail:read:{os.path.basename(chunk)}"]))
    check(r.returncode == 1, "failing restore to a new name")
    absent("a restore to a new name that failed")
    log("a failed restore: the old image intact, no new file")

    # ---- 4. success replaces the whole image, keeping its mode ---------------------------------
    put_old()
    ctl_ok(repo, "restore-disk", sid, "--to", target, "--force")
    check(fl.sha_file(target) == sha and listing(out) == ["disk.img"], "restore --force")
    check(stat.S_IMODE(os.stat(target).st_mode) == 0o640, "the replaced image's mode")
    os.unlink(target)
    ctl_ok(repo, "restore-disk", sid, "--to", target, "--format", "qcow2")
    conv = w.p("conv.raw")
    fl.run("qemu-img", "convert", "-O", "raw", target, conv)
    check(fl.sha_file(conv) == sha, "the qcow2 restore holds other bytes")
    os.unlink(target)
    r = ctl(repo, "restore-disk", sid, "--to", img)
    check(r.returncode == 1 and "exists" in r.stderr, "restore over an image without --force")

    # ---- 5. a block device is written in place --------------------------------------------------
    back = w.p("blockdev.img")
    with open(back, "wb") as f:
        f.truncate(48 << 20)
    with open(back, "r+b") as f:
        f.write(os.urandom(48 << 20))          # old data everywhere, holes included
    dev = subprocess.run(["losetup", "-f", "--show", back], capture_output=True, text=True,
                         check=True).stdout.strip()
    try:
        ctl_ok(repo, "restore-disk", sid, "--to", dev, "--force")
        with open(dev, "rb") as f:
            got = f.read(os.path.getsize(img))
    finally:
        subprocess.run(["losetup", "-d", dev])
    check(fl.hashlib.sha256(got).hexdigest() == sha, "the block device holds other bytes")
    log("ok: a successful restore replaces the image whole (mode kept), qcow2 too; a block "
        "device is written in place")
