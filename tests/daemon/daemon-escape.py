#!/usr/bin/env python3
"""Guest bytes reach the host's terminals and logs only escaped.  A guest
names files, roots and restore paths with newlines, terminal escape
sequences and lines that look like vbackupd's own ("vbackupd: job 1 ...:
done"), and makes them end up in error replies, a job's failure reason, a
snapshot's group and the log.  Afterwards the log holds no control character
but the line ends, no line the guest wrote, only valid UTF-8; and
`vbackupctl jobs`, `job ID` and `snapshots` print the same things escaped
(as `ls -b` does: "\\n", "\\033").  Fails on a daemon that writes guest bytes
as they are."""
import os
import struct
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vbproto as vp  # noqa: E402
from daemonlib import VBACKUPCTL, Daemon, check, log, make_ext4, random_files, workdir  # noqa: E402

FORGED = "vbackupd: job 1 (good, files): done"
ESC = "\x1b]0;owned\x07\x1b[2J"


def clean_text(what, data):
    """data (bytes) is valid UTF-8 with no control character but line ends,
    and no line of it is one the guest wrote."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        check(False, f"{what}: not UTF-8 ({e})")
    bad = sorted({f"{ord(ch):#04x}" for ch in text
                  if (ord(ch) < 0x20 and ch != "\n") or 0x7f <= ord(ch) < 0xa0})
    check(not bad, f"{what}: raw control characters {bad}:\n{text[-3000:]}")
    forged = [ln for ln in text.splitlines() if ln.startswith(FORGED) or ln.startswith("owned")]
    check(not forged, f"{what}: lines the guest wrote: {forged}")
    return text


with workdir() as w:
    tree = w.p("tree")
    random_files(tree + "/data", 1, 1 << 20)
    disk = make_ext4(w.p("evil.raw"), tree, size="32M")
    d = Daemon(w, {"evil": {"e0": disk}}, batch_seconds=0.1).start()
    c = d.conn("evil")

    # 1. a snapshot whose roots (and so its group) carry the guest's bytes
    root = "data/x\n" + FORGED + ESC
    job, _ = c.begin("archive", ["e0"], ["data", root])
    c.files(job, [vp.record("data", "dir", mode=0o755), vp.record(root, "dir", mode=0o755)])
    c.seal(job)
    st = c.wait_job(job)
    check(st["state"] == "done", f"the backup with odd roots: {st}")
    snap = st["snapshot"]

    # 2. error replies that quote a guest path
    job2, _ = c.begin("archive", ["e0"], ["data"])
    bad = "data/f\n" + FORGED + ESC
    c.files(job2, [vp.record("data", "dir"),
                   vp.record(bad, "reg", data=vp.FD_EXTENTS, size=4096, extents=[(0, 0, 4096)])])
    stc, body = c.call("BACKUP_DATA", struct.pack("<QQQII", job2, 1, 0, 1, 0) + b"x", check=False)
    check(stc == vp.S["BAD_REQUEST"] and b"does not take fallback data" in body, f"DATA: {body!r}")
    check(b"\\n" in body and b"\x1b" not in body, f"the reply quotes the path raw: {body!r}")
    c.cancel(job2)

    # 3. a failed job whose reason holds the guest's bytes (a restore path)
    path = "nope\n" + FORGED + ESC
    p = struct.pack("<HHHH", 7, len(snap), 1, 0) + b"archive" + snap.encode() + vp.s16(path)
    stc, body = c.call("RESTORE_BEGIN", p, check=False)
    check(stc == vp.S["NOT_FOUND"], f"RESTORE_BEGIN of a missing path: {vp.SNAME.get(stc)} {body!r}")
    failed = [j for j in d.ctl_json("jobs") if j["state"] == "failed"]
    check(failed and "nope" in failed[-1].get("reason", ""), f"no failed restore job: {failed}")
    rjob = failed[-1]["id"]

    # what an administrator reads
    for args in (("jobs",), ("job", str(rjob)), ("job", str(job)), ("snapshots",)):
        r = d.ctl(*args)
        out = clean_text(f"vbackupctl {' '.join(args)}", r.stdout.encode())
        if args == ("snapshots",):
            check("x\\n" + FORGED.replace(" ", "\\ ") in out,
                  f"vbackupctl snapshots does not show the group escaped:\n{out}")
        if args[0] == "job" and args[1] == str(rjob):
            check("\\033" in out and "nope\\n" in out, f"the reason is not shown escaped:\n{out}")
    # the repository read directly shows the same, escaped once
    r = subprocess.run([VBACKUPCTL, "--repo", d.targets["archive"], "snapshots"],
                       capture_output=True)
    out = clean_text("vbackupctl --repo snapshots", r.stdout)
    check(r.returncode == 0 and "x\\n" + FORGED.replace(" ", "\\ ") in out,
          f"vbackupctl --repo snapshots does not show the group escaped once:\n{out}")
    check(d.stop() == 0, "vbackupd did not exit cleanly")
    text = clean_text("the log", open(d.log_path, "rb").read())
    check("does not take fallback data" in text and "data/f\\n" in text,
          "the log lacks the escaped error reply")
    log("ok: guest names, roots and restore paths reach the log and vbackupctl escaped")
