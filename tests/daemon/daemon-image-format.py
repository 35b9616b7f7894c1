#!/usr/bin/env python3
"""vbackupd never guesses a disk's format from the image (CVE-2008-2004).
A [vm] disk without format= is refused when the configuration is loaded
(start, --check-config and reload), with a message that says why.  A guest
whose raw disk holds a qcow2 header naming a host file gets, from a
whole-disk backup, exactly its raw bytes.  A qcow2 whose header names its
backing file without a format is refused (at BEGIN, with an error that names
no host path) unless backing_format= pins it, and then read as pinned."""
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vbproto as vp  # noqa: E402
from daemonlib import (VBACKUPCTL, VBACKUPD, Daemon, check, log, run, wait_for,  # noqa: E402
                       workdir)

MARK = b"HOST-SECRET-5b9d0e13"


def no_secret(path, what):
    with open(path, "rb") as f:
        check(MARK not in f.read(), f"{what} holds the host file's content")


def disk_backup(conn, serial):
    job, _ = conn.begin("archive", [serial], [], kind=vp.KIND_DISK)
    conn.seal(job)
    st = conn.wait_job(job)
    check(st["state"] == "done", f"disk backup of {serial}: {st}")
    return st["snapshot"]


def restore_disk(d, snap, to):
    run(VBACKUPCTL, "--repo", d.targets["archive"], "--quiet", "restore-disk", snap, "--to", to)


def same_file(a, b, what):
    check(subprocess.run(["cmp", "-s", a, b]).returncode == 0, f"{what}: {a} and {b} differ")


with workdir() as w:
    W = w.path
    with open(w.p("secret.txt"), "wb") as f:
        f.write((MARK + b" ") * 100000)
    # the guest's raw disk, with the qcow2 header it wrote at its start
    with open(w.p("guest.raw"), "wb") as f:
        f.write(os.urandom(8 << 20))
    run("qemu-img", "create", "-q", "-f", "qcow2", "-b", w.p("secret.txt"), "-F", "raw",
        w.p("trap.qcow2"), "8M")
    run("dd", f"if={w.p('trap.qcow2')}", f"of={w.p('guest.raw')}", "conv=notrunc", "status=none")
    # an overlay of that disk (a template) that does not record its backing format
    run("qemu-img", "create", "-q", "-f", "qcow2", "-b", w.p("guest.raw"), "-F", "raw",
        w.p("clone.qcow2"), "8M")
    run("qemu-io", "-c", "write -P 0x5a 1M 64k", w.p("clone.qcow2"), stdout=subprocess.DEVNULL)
    run("python3", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "../engine/qcow2edit.py"), w.p("clone.qcow2"), "drop-backing-format")

    # ---- a disk without a format: refused at load ---------------------------------------------
    d = Daemon(w, {"g": {"d0": (w.p("guest.raw"), "")}}, name="nofmt")
    for args in (["--check-config"], []):
        r = subprocess.run([VBACKUPD, "--config", d.conf] + args, capture_output=True, text=True,
                           timeout=20)
        check(r.returncode != 0, f"vbackupd {' '.join(args)} accepted a disk without a format")
        check("disk.d0: the format is required" in r.stderr and "never guesses" in r.stderr,
              f"vbackupd {' '.join(args)} does not say why it refuses: {r.stderr!r}")
    for opts, want in (("format=vmdk", "format must be raw or qcow2, not 'vmdk'"),
                       ("format=raw,format=qcow2", "'format' given twice"),
                       ("format=qcow2,backing_format=probe", "backing_format must be raw or qcow2"),
                       ("format=raw,probe=yes", "unknown option 'probe=yes'")):
        bad = Daemon(w, {"g": {"d0": (w.p("guest.raw"), opts)}}, name="bad")
        r = subprocess.run([VBACKUPD, "--config", bad.conf, "--check-config"],
                           capture_output=True, text=True, timeout=20)
        check(r.returncode != 0 and want in r.stderr, f"{opts}: {r.stderr!r}")
    log("ok: a disk without a format, or with a bad one, is refused when the file is loaded")

    # ---- the guest's raw disk, configured raw ------------------------------------------------
    d = Daemon(w, {"g": {"d0": w.p("guest.raw")},
                   "c": {"c0": w.p("clone.qcow2")},
                   "p": {"p0": (w.p("clone.qcow2"), "format=qcow2,backing_format=raw")}},
               batch_seconds=0.2).start()
    snap = disk_backup(d.conn("g"), "d0")
    restore_disk(d, snap, w.p("g-restored.raw"))
    same_file(w.p("guest.raw"), w.p("g-restored.raw"), "the raw disk's backup")
    no_secret(w.p("g-restored.raw"), "the raw disk's restored backup")
    log("ok: a raw disk holding a qcow2 header is backed up as its raw bytes")

    # ---- a backing file without a format: refused, unless pinned -----------------------------
    c = d.conn("c")
    st, body = c.call("BACKUP_BEGIN", vp.begin_payload("archive", ["c0"], [], kind=vp.KIND_DISK),
                      check=False)
    text = body.decode(errors="replace")
    check(st == vp.S["IO"] and "disk 'c0' could not be opened on the host" in text and
          W not in text, f"BEGIN on a chain without a backing format: {vp.SNAME.get(st)} {text!r}")
    check("names its backing file" in d.log_text() and "without a format" in d.log_text(),
          "the log does not say why the disk was refused")
    snap = disk_backup(d.conn("p"), "p0")
    restore_disk(d, snap, w.p("p-restored.raw"))
    run("qemu-img", "convert", "-O", "raw", "--image-opts",
        f"driver=qcow2,file.filename={w.p('clone.qcow2')},backing.driver=raw,"
        f"backing.file.filename={w.p('guest.raw')}", w.p("p-ref.raw"))
    same_file(w.p("p-ref.raw"), w.p("p-restored.raw"), "the pinned chain's backup")
    no_secret(w.p("p-restored.raw"), "the pinned chain's restored backup")
    log("ok: a backing file without a format is refused, and read as pinned when pinned")

    # ---- a reload that drops a format is refused; the running configuration stays -----------
    conf = open(d.conf).read()
    open(d.conf, "w").write(conf.replace(f"{w.p('guest.raw')},format=raw", w.p("guest.raw")))
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload failed, keeping the running configuration" in d.log_text(),
             "the reload to be refused", 10)
    time.sleep(0.2)
    check(d.conn("g").hello()["vm"] == "g", "the refused reload changed the running VMs")
    disk_backup(d.conn("g"), "d0")
    check(d.stop() == 0, "vbackupd exit status")
    log("ok: a reload without a format is refused")
