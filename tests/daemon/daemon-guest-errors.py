#!/usr/bin/env python3
"""Errors a guest receives never name a host path or carry a host errno text.
Failures on the host side are provoked one by one: a disk image that is
missing, a qcow2 whose tables point outside the file (a disk backup, and a
files backup whose reads cannot be planned), a target whose snapshot folder
is damaged (LIST), a snapshot whose index cannot be read and one whose
chunks are gone (restore), a repository whose lock file is gone.  Every
reply and every job status the guest sees says what failed in its own terms
(a disk by serial, a target by name) with a reference into the host's log;
the log has the paths and the errno texts."""
import os
import shutil
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vbproto as vp  # noqa: E402
from daemonlib import (Daemon, backup, check, log, make_ext4, map_image,  # noqa: E402
                       random_files, run, workdir)

ERRNO_TEXTS = {os.strerror(n) for n in range(1, 134)} - {f"Unknown error {n}" for n in range(134)}
seen = []          # (what, text) the guest received


def guest_sees(what, text, must=()):
    """text went to the guest: it names no host path and no errno text."""
    seen.append((what, text))
    for bad in [W, "/var/", "/tmp/", "/run/", "/srv/"]:
        check(bad not in text, f"{what}: the guest was told the host path {bad!r}: {text!r}")
    for e in ERRNO_TEXTS:
        check(e not in text, f"{what}: the guest was told the host's errno text {e!r}: {text!r}")
    for m in must:
        check(m in text, f"{what}: {text!r} does not say {m!r}")


def call_err(conn, op, payload, status):
    st, body = conn.call(op, payload, check=False)
    text = body.decode(errors="replace")
    check(st == vp.S[status], f"{op}: got {vp.SNAME.get(st)} {text!r}, expected {status}")
    return text


def statuses(conn, what):
    for st in conn.status():
        if st["reason"]:
            guest_sees(f"{what}: STATUS of job {st['job']}", st["reason"])


with workdir() as w:
    W = w.path
    tree = w.p("tree")
    random_files(tree + "/data", 4, 1 << 20)
    good = make_ext4(w.p("good.raw"), tree, size="64M")
    recs, _ = map_image(w, good, ["data"])
    # a qcow2 whose L2 table lies far past the end of the file:
    # the header opens, reading the tables fails
    broken = make_ext4(w.p("broken.qcow2"), tree, size="64M", fmt="qcow2")
    run("python3", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "../engine/qcow2edit.py"), broken, "l1-entry", "0x80000000ff000000")
    d = Daemon(w, {"g": {"g0": good, "gm": w.p("missing.raw"), "gq": broken}},
               targets={"archive": w.p("repo"), "other": w.p("repo2")},
               batch_seconds=0.2).start()
    c = d.conn("g")

    # ---- a disk image the host cannot open -------------------------------------------------
    text = call_err(c, "BACKUP_BEGIN", vp.begin_payload("archive", ["gm"], ["data"]), "IO")
    guest_sees("BEGIN on a missing image", text,
               ["disk 'gm' could not be opened on the host", "the host's log has details (job"])
    check("missing.raw" in d.log_text(), "the log does not name the missing image")

    # ---- a qcow2 whose tables point outside the file ---------------------------------------
    job, _ = c.begin("archive", ["gq"], [], kind=vp.KIND_DISK)
    c.seal(job)
    st = c.wait_job(job)
    check(st["state"] == "failed", f"disk job on the broken image: {st}")
    guest_sees("disk job on a broken image", st["reason"],
               ["disk 'gq' could not be read or stored on the host", f"(job {job})"])
    shown = d.ctl("job", str(job)).stdout
    check(f"cause:    {broken}" in shown, f"vbackupctl job {job} does not show the cause:\n{shown}")
    p = vp.begin_payload("archive", ["gq"], ["data"])
    p = p[:8] + (1).to_bytes(4, "little") + p[12:]          # VB_BEGIN_UNFROZEN
    job, _ = c.begin("archive", ["gq"], ["data"], raw=p)
    vp.send_records(c, job, recs)
    c.seal(job)
    st = c.wait_job(job)
    check(st["state"] == "failed", f"files job on the broken image: {st}")
    guest_sees("files job on a broken image", st["reason"],
               ["could not be planned on the host", f"(job {job})"])
    check("past the end" in d.log_text() and broken in d.log_text(),
          "the log does not say what is wrong with the image")

    # ---- a target whose folder for this VM is damaged --------------------------------------
    os.makedirs(w.p("repo2/snapshots"), exist_ok=True)
    open(w.p("repo2/snapshots/g"), "w").close()             # a file where a folder belongs
    text = call_err(c, "LIST", struct.pack("<IHH", 0, 5, 0) + b"other", "IO")
    guest_sees("LIST of a damaged target", text,
               ["target 'other' could not be listed on the host", "(host error "])

    # ---- restores: an index that cannot be read, chunks that are gone -----------------------
    s1 = backup(c, "archive", ["g0"], ["data"], recs, [])["snapshot"]
    time.sleep(1.1)                                          # a second snapshot id
    s2 = backup(c, "archive", ["g0"], ["data"], recs, [])["snapshot"]
    idx = os.path.join(w.p("repo/snapshots"), s2, "index.json")
    os.unlink(idx)
    os.mkdir(idx)                                            # read(2) fails: EISDIR
    text = call_err(c, "RESTORE_BEGIN", struct.pack("<HHHH", 7, len(s2), 0, 0) + b"archive" +
                    s2.encode(), "IO")
    guest_sees("RESTORE_BEGIN of an unreadable snapshot", text,
               [f"snapshot {s2} could not be read on the host", "the host's log has details"])
    for sub in ("chunks", "packs", "data"):                  # the chunk store, whatever its layout
        if os.path.isdir(w.p("repo", sub)):
            shutil.rmtree(w.p("repo", sub))
            os.mkdir(w.p("repo", sub))
    rj, n, _, _ = c.restore_begin("archive", s1)
    ents = c.restore_list(rj)
    reg = [i for i, e in enumerate(ents) if e["type"] == 1 and e["size"]]
    check(reg, f"no regular file in {s1}")
    text = call_err(c, "RESTORE_READ", struct.pack("<QQQII", rj, reg[0], 0, 1 << 20, 0), "IO")
    guest_sees("RESTORE_READ of a lost chunk", text,
               ["data could not be read from target 'archive' on the host", "(host error "])
    c.restore_end(rj)

    # ---- the repository's lock file is gone ---------------------------------------------------
    os.unlink(w.p("repo/lock"))
    p = vp.begin_payload("archive", ["g0"], ["data"])
    p = p[:8] + (1).to_bytes(4, "little") + p[12:]
    job, _ = c.begin("archive", ["g0"], ["data"], raw=p)
    vp.send_records(c, job, recs)
    c.seal(job)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and c.status(job)[0]["state"] != "deferred":
        time.sleep(0.05)
    st = c.status(job)[0]
    check(st["state"] == "deferred", f"a job without the repository lock: {st}")
    guest_sees("a job waiting for a lock it cannot take", st["reason"],
               ["target 'archive' could not be locked on the host", f"(job {job})"])
    text = call_err(c, "RESTORE_BEGIN", struct.pack("<HHHH", 7, len(s1), 0, 0) + b"archive" +
                    s1.encode(), "BUSY")
    guest_sees("RESTORE_BEGIN without the lock", text,
               ["target 'archive' could not be locked on the host"])
    c.cancel(job)

    # every job's reason, as STATUS shows it to the guest
    statuses(c, "end")
    logt = d.log_text()
    for needed in ("missing.raw", "No such file or directory", "Is a directory", "/lock"):
        check(needed in logt, f"the host's log lacks {needed!r}: the details must stay there")
    check(W in logt, "the host's log names no host path")
    # the admin sees the cause of a failed job
    failed = [j for j in d.ctl_json("jobs") if j["state"] == "failed" and "detail" in j]
    check(failed and any(broken in j["detail"] for j in failed),
          f"vbackupctl jobs shows no detail: {failed}")
    check(d.stop() == 0, "vbackupd exit status")
    log(f"ok: {len(seen)} errors caused on the host reached the guest without host paths or "
        f"errno texts; the log and vbackupctl jobs have the details")
