#!/usr/bin/env python3
"""What a guest can make vbackupd hold in memory is bounded per VM, and given
back whatever ends the job (docs/threat-model.md, "What one VM can make the
host spend"):

1. fallback data of a job that is cancelled, whose guest goes away, or that
   fails while its windows wait for the repository (gc holds it): the
   windows are freed and their DATA requests answered; nothing stays in use
   (daemon-stats: read buffers 0; vbackupctl vms: the VM's memory 0);
2. a flood of one-byte DATA pieces, one to each of 16384 files: the
   daemon's RSS hardly moves (no 4 MiB window per piece);
3. 1 MiB pieces to thousands of files: refused at the VM's memory limit
   (vm_memory, 1 GiB by default) with a clear error, RSS below it;
4. a flood of extents (FILES continuation records of one file): refused at
   max_extents_per_job with a clear error;
5. a client that sends 2000 reads of 1 MiB and does not read the replies is
   throttled: the daemon's RSS does not grow; every reply comes once it reads;
6. a plan larger than the VM's memory limit fails its job and says why; so do
   extended attributes (768 KiB per entry), long paths and the problems a
   guest reports, each counted against the VM's memory;
7. an idle job and a shutdown with fallback windows half full let go of them
   (the ASan build finds no leak at exit).
Each time, the other VM's backup still works."""
import os
import select
import socket
import struct
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vbproto as vp  # noqa: E402
from daemonlib import (Daemon, backup, check, fail, log, make_ext4, map_image,  # noqa: E402
                       random_files, rss_mib, vm_row, wait_for, wait_released, workdir)

MIB = 1 << 20
PIECE = vp.MAX_PAYLOAD - 64          # the largest DATA piece
ROOTS = ["data"]


def begin(c, serials=("e0",)):
    p = vp.begin_payload("archive", list(serials), ROOTS, vp.KIND_FILES, "full")
    p = p[:8] + (1).to_bytes(4, "little") + p[12:]          # VB_BEGIN_UNFROZEN
    return c.begin("archive", list(serials), ROOTS, raw=p)[0]


def fallback_records(n, size, prefix="f"):
    return [vp.record("data", "dir", mode=0o755)] + \
        [vp.record(f"data/{prefix}{i}", "reg", data=vp.FD_FALLBACK, size=size) for i in range(n)]


def data_payload(job, idx, off, data, last=False):
    return struct.pack("<QQQII", job, idx, off, len(data), vp.DATA_LAST if last else 0) + data


def pipeline(c, op, payloads):
    """Send every request at once, then take every reply: [(status, body)] in order."""
    tags = []
    buf = b""
    for p in payloads:
        c.tag += 1
        tags.append(c.tag)
        buf += vp.frame(vp.OP[op], p, c.tag)
    c.send_raw(buf)
    return [c.wait(t)[1:] for t in tags]


def job_state(d, job):
    rows = [j for j in d.ctl_json("jobs") if j["id"] == job]
    return rows[0] if rows else None


with workdir() as w:
    tree = w.p("tree")
    random_files(tree + "/data", 1, 16 << 20)
    good_disk = make_ext4(w.p("good.raw"), tree, size="64M")
    evil_disk = w.p("evil.raw")
    open(evil_disk, "wb").truncate(64 << 20)
    good_recs, good_fb = map_image(w, good_disk, ROOTS)
    # default limits, but few requests in flight per connection
    d = Daemon(w, {"good": {"g0": good_disk}, "evil": {"e0": evil_disk}}, batch_seconds=0.2,
               extra={"max_requests_in_flight": 8}).start()
    repo = d.targets["archive"]
    snap = backup(d.conn("good"), "archive", ["g0"], ROOTS, good_recs, good_fb)["snapshot"]

    # ---- 1. fallback windows go back whatever ends the job --------------------------
    for how in ("cancel", "disconnect"):
        cc = d.conn("evil")
        job = begin(cc)
        cc.files(job, fallback_records(2, 5 * MIB))
        cc.data(job, 1, 0, os.urandom(PIECE), False)          # half a window of file 1
        cc.data(job, 2, 0, os.urandom(PIECE), False)          # and of file 2
        if how == "cancel":
            cc.cancel(job)
        cc.close()
        wait_for(lambda: (r := job_state(d, job)) and r["state"] in ("cancelled", "failed"),
                 f"the {how} job to end")
        wait_released(d, "evil", f"a job ended by {how}")
        log(f"{how}: the job's fallback windows were given back")

    c = d.conn("evil")
    # windows that wait for the repository (gc holds it) when the job fails:
    # they are freed and the DATA request that waits with them is answered
    lock = subprocess.Popen(["flock", "-x", os.path.join(repo, "lock"), "cat"],
                            stdin=subprocess.PIPE)
    wait_for(lambda: subprocess.run(["flock", "-n", "-s", os.path.join(repo, "lock"),
                                     "true"]).returncode != 0, "the repository lock to be held")
    job = begin(c)
    c.files(job, fallback_records(1, 9 * MIB))
    off = 0
    for _ in range(4):
        c.data(job, 1, off, os.urandom(PIECE), False)
        off += PIECE
    # this piece fills the first window exactly: its answer waits for the window
    held = c.send("BACKUP_DATA", data_payload(job, 1, off, os.urandom(4 * MIB - off)))
    wait_for(lambda: "fallback data waits" in d.log_text(), "the window to wait for the lock")
    c.cancel(job)
    try:
        typ, st, body = c.wait(held)
    except (socket.timeout, TimeoutError):
        fail("a DATA request whose window waited for the repository was never answered "
             "after its job was cancelled")
    check(st != 0 and b"cancelled" in body, f"the waiting DATA request: {st} {body!r}")
    lock.stdin.close()
    lock.wait()
    wait_released(d, "evil", "a job cancelled while its windows waited for the repository")
    log(f"a DATA request waiting for the repository was answered: {body.decode()}")

    # ---- 2. one-byte pieces to 16384 files ------------------------------------------
    rss0 = rss_mib(d)
    jobs = []
    for k in range(4):
        job = begin(c)
        jobs.append(job)
        recs = fallback_records(4096, 4 * MIB, f"j{k}-")
        vp.send_records(c, job, recs)
        for start in range(1, 4097, 512):
            for st, body in pipeline(c, "BACKUP_DATA", [data_payload(job, i, 0, b"x")
                                                      for i in range(start, start + 512)]):
                check(st == 0, f"one-byte piece: {vp.SNAME.get(st)} {body!r}")
    grown = rss_mib(d) - rss0
    log(f"16384 one-byte pieces to 16384 files: RSS grew {grown:.1f} MiB")
    check(grown < 64, f"16384 one-byte DATA pieces made vbackupd grow by {grown:.0f} MiB "
          "(a window of 4 MiB each: about 150 MiB)")
    for job in jobs:
        c.cancel(job)
    wait_released(d, "evil", "one-byte pieces")

    # ---- 3. 1 MiB pieces to many files: the VM's memory limit ------------------------
    limit = vm_row(d, "evil")["memory"]["limit"]
    n = 2 * limit // MIB
    rss0 = rss_mib(d)
    job = begin(c)
    vp.send_records(c, job, fallback_records(n, 4 * MIB))
    piece = os.urandom(PIECE)
    refused = None
    for i in range(1, n + 1):
        st, body = c.call("BACKUP_DATA", data_payload(job, i, 0, piece), check=False)
        if st:
            refused = (i, st, body.decode(errors="replace"))
            break
    grown = rss_mib(d) - rss0
    check(refused, f"{n} MiB of fallback data held for one VM: no limit (RSS +{grown:.0f} MiB)")
    i, st, msg = refused
    log(f"refused after {i - 1} MiB: {vp.SNAME.get(st)} {msg}")
    check(st == vp.S["TOO_LARGE"] and "memory" in msg and "evil" in msg,
          f"the refusal does not say that the VM's memory limit was reached: {msg}")
    check(grown < 1.5 * limit / MIB, f"RSS grew {grown:.0f} MiB for a limit of {limit // MIB} MiB")
    row = job_state(d, job)
    check(row["state"] == "failed" and "memory" in row["reason"], f"the job: {row}")
    wait_released(d, "evil", "a job over the memory limit")

    # ---- 4. extents: continuation records without end ---------------------------------
    job = begin(c)
    per = 8000                              # 4 records of 8000 extents: one 1 MiB message
    ext = [(k * 2, k % 1000, 1, 0, 0) for k in range(per)]
    c.files(job, [vp.record("data", "dir"), vp.record("data/x", "reg", data=vp.FD_EXTENTS,
                                                     size=1 << 60, extents=ext)])
    sent, refused = per, None
    base = per * 2
    while sent < 6_000_000 and not refused:
        recs = []
        for _ in range(4):
            recs.append(vp.record("data/x", "reg", data=vp.FD_MORE,
                                  extents=[(base + k * 2, k % 1000, 1, 0, 0) for k in range(per)]))
            base += per * 2
        st, body = c.files(job, recs, check=False)
        if st:
            refused = (st, body.decode(errors="replace"))
        else:
            sent += 4 * per
    check(refused, f"{sent} extents taken for one job: no limit")
    log(f"refused after {sent} extents: {vp.SNAME.get(refused[0])} {refused[1]}")
    check(refused[0] == vp.S["TOO_LARGE"] and "extents" in refused[1], f"refusal: {refused}")
    check(job_state(d, job)["state"] == "failed", "the job over the extent limit did not fail")
    wait_released(d, "evil", "a job over the extent limit")

    # ---- 5. replies nobody reads --------------------------------------------------------
    rc = d.conn("good")
    rjob, n_ent, _, _ = rc.restore_begin("archive", snap)
    entry = [i for i, e in enumerate(rc.restore_list(rjob)) if e["type"] == 1][0]
    first = len(rc.restore_read(rjob, entry, 0, MIB)[3])       # decoded once, then cached
    reader = socket.socket(socket.AF_UNIX)
    reader.connect(d.sock("good"))
    n = 2000
    reqs = b"".join(vp.frame(vp.OP["RESTORE_READ"], struct.pack("<QQQII", rjob, entry, 0, MIB, 0),
                             tag=i + 1) for i in range(n))
    rss0 = rss_mib(d)
    done = threading.Event()
    threading.Thread(target=lambda: (reader.sendall(reqs), done.set()), daemon=True).start()
    requests0 = vm_row(d, "good")["requests"]
    # either the daemon took every request (and holds every reply), or it stopped
    # reading the connection because its replies are not taken
    wait_for(lambda: vm_row(d, "good")["requests"] - requests0 >= n or
             vm_row(d, "good").get("throttled", 0) > 0, "the daemon to take or refuse the reads")
    grown = rss_mib(d) - rss0
    log(f"{n} reads of {first} bytes nobody reads: RSS grew {grown:.1f} MiB")
    check(grown < 64, f"replies nobody reads made vbackupd grow by {grown:.0f} MiB")
    got = 0
    reader.settimeout(60)
    buf = b""
    while got < n:
        x = reader.recv(1 << 20)
        check(x, "the connection closed before every reply came")
        buf += x
        while len(buf) >= 32:
            _, _, typ, tag, ln, _, st, _ = vp.HDR.unpack(buf[:32])
            if len(buf) < 32 + ln:
                break
            check(st == 0 and ln == 16 + first, f"reply {tag}: status {st}, {ln} bytes")
            buf = buf[32 + ln:]
            got += 1
    done.wait(60)
    reader.close()
    rc.restore_end(rjob)
    wait_released(d, "good", "a restore whose replies were taken late")
    log(f"throttled, not dropped: all {n} replies came once the client read them")

    st = backup(d.conn("good"), "archive", ["g0"], ROOTS, good_recs, good_fb)
    check(d.alive(), "vbackupd died")
    check(d.stop() == 0, "vbackupd exit status")

    # ---- 6. a plan larger than the VM's memory -------------------------------------------
    d2 = Daemon(w, {"evil": {"e0": evil_disk}}, name="d2", batch_seconds=0.1,
                extra={"vm_memory": "16M"}).start()
    c = d2.conn("evil")
    job = begin(c)
    recs = [vp.record("data", "dir")]
    ext = [(k * 8192, (k * 4096) % (60 << 20), 4096, 0, 0) for k in range(120_000)]
    recs.append(vp.record("data/big", "reg", data=vp.FD_EXTENTS, size=120_000 * 8192,
                          extents=ext[:8192]))
    for k in range(8192, len(ext), 8192):
        recs.append(vp.record("data/big", "reg", data=vp.FD_MORE, extents=ext[k:k + 8192]))
    vp.send_records(c, job, recs)
    c.seal(job)
    st = c.wait_job(job)
    check(st["state"] == "failed" and "memory" in st["reason"], f"the oversized plan: {st}")
    log(f"oversized plan: {st['reason']}")
    wait_released(d2, "evil", "a job whose plan was too large")

    check(d2.stop() == 0, "vbackupd exit status")

    # ---- 6b. attributes, long paths and problems count against the VM's memory -----------
    # each record: a path of 63 KiB and 768 KiB of extended attributes (the protocol's
    # most per entry), one per message: 16 MiB of them is about 20 records
    d2 = Daemon(w, {"evil": {"e0": evil_disk}}, name="d2b", batch_seconds=0.1,
                extra={"vm_memory": "16M"}).start()
    c = d2.conn("evil")
    xattrs = {f"user.a{k:02d}": bytes([k]) * 65000 for k in range(12)}
    deep = "data/" + ("x" * 250 + "/") * 250
    job = begin(c)
    c.files(job, [vp.record("data", "dir")])
    refused = None
    for i in range(64):
        st, body = c.files(job, [vp.record(f"{deep}f{i:04d}", "reg", xattrs=xattrs)],
                           check=False)
        if st:
            refused = (i, st, body.decode(errors="replace"))
            break
    check(refused, "64 records of 768 KiB of attributes and 63 KiB paths taken by a VM "
          "whose memory limit is 16 MiB")
    log(f"attributes refused after {refused[0]} records: {vp.SNAME.get(refused[1])} "
        f"{refused[2]}")
    check(refused[1] == vp.S["TOO_LARGE"] and "memory" in refused[2] and 10 < refused[0] < 25,
          f"the refusal: {refused}")
    wait_released(d2, "evil", "a job over the memory limit with attributes")
    # problems: the first 1000 are kept, each path escaped (4 bytes for each control
    # byte): 16 KiB each, after 8 MiB of attributes
    job = begin(c)
    c.files(job, [vp.record("data", "dir")])
    for i in range(10):
        c.files(job, [vp.record(f"{deep}f{i:04d}", "reg", xattrs=xattrs)])
    refused = None
    for i in range(16):
        items = [(b"data/" + (bytes([1 + k % 30]) * 250 + b"/") * 16 + b"%d-%d" % (i, k),
                  "unreadable") for k in range(64)]
        st, body = c.call("BACKUP_PROBLEMS", vp.problems_payload(job, items), check=False)
        if st:
            refused = (i, st, body.decode(errors="replace"))
            break
    check(refused, "1000 problems of 16 KiB each kept by a VM whose memory limit is 16 MiB")
    log(f"problems refused after {refused[0] * 64}: {vp.SNAME.get(refused[1])} {refused[2]}")
    check(refused[1] == vp.S["TOO_LARGE"] and "memory" in refused[2], f"the refusal: {refused}")
    wait_released(d2, "evil", "a job over the memory limit with problems")
    check(d2.stop() == 0, "vbackupd exit status")

    # ---- 7. idle timeout, and a shutdown with half-full windows --------------------------
    d3 = Daemon(w, {"evil": {"e0": evil_disk}}, name="d3", extra={"idle_timeout": 1}).start()
    c = d3.conn("evil")
    job = begin(c)
    c.files(job, fallback_records(1, 5 * MIB))
    c.data(job, 1, 0, os.urandom(PIECE), False)
    row = wait_for(lambda: (r := job_state(d3, job)) and r["state"] == "failed" and r,
                   "the idle job to fail")
    check("no request" in row["reason"], f"idle job: {row}")
    wait_released(d3, "evil", "an idle job")
    job = begin(c)
    c.files(job, fallback_records(1, 5 * MIB))
    c.data(job, 1, 0, os.urandom(PIECE), False)
    check(d3.stop() == 0, "vbackupd exit status after a shutdown with a half-full window")
    log("ok: fallback windows, extents, plans and replies stay within the VM's limits and "
        "are given back on every path")
