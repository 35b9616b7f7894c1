#!/usr/bin/env python3
"""Requests pipelined beyond max_requests_in_flight are processed when room
frees up: with at most 8 unanswered requests per connection, 64 RESTORE_READs
sent at once (each waits for its chunk to be decoded) and 384 fallback DATA
pieces sent at once (every 16th waits for its window to be stored) are all
answered, with the right data, in any order; so are a few thousand STATUS
requests sent in one go behind them."""
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vbproto as vp  # noqa: E402
from daemonlib import (Daemon, backup, check, log, make_ext4, map_image, random_files,  # noqa
                       wait_released, workdir)

ROOTS = ["data"]
MIB = 1 << 20


def take_all(c, tags, what):
    """Every reply of tags, however long the daemon takes (the connection's
    timeout is the safety net); {tag: (status, body)}."""
    out = {}
    for t in tags:
        try:
            _, st, body = c.wait(t)
        except (TimeoutError, OSError, EOFError) as e:
            check(False, f"{what}: {len(out)} of {len(tags)} replies came, then none ({e!r})")
        out[t] = (st, body)
    return out


with workdir() as w:
    tree = w.p("tree")
    random_files(tree + "/data", 1, 24 << 20)
    disk = make_ext4(w.p("disk.raw"), tree, size="64M")
    recs, fb = map_image(w, disk, ROOTS)
    d = Daemon(w, {"vm1": {"d0": disk}}, batch_seconds=0.1,
               extra={"max_requests_in_flight": 8}).start()
    c = d.conn("vm1")
    snap = backup(c, "archive", ["d0"], ROOTS, recs, fb)["snapshot"]
    src = open(os.path.join(w.p("tree"), "data", "f0.bin"), "rb").read()

    # ---- 64 reads at once, each waiting for a chunk to be decoded --------------------
    job, n, _, _ = c.restore_begin("archive", snap)
    entry = [i for i, e in enumerate(c.restore_list(job)) if e["type"] == 1][0]
    offsets = [(i * 379 * 1024) % len(src) for i in range(64)]
    tags, wire = [], b""
    for off in offsets:
        c.tag += 1
        tags.append(c.tag)
        wire += vp.frame(vp.OP["RESTORE_READ"], struct.pack("<QQQII", job, entry, off, 65536, 0),
                         c.tag)
    c.send_raw(wire)
    got = take_all(c, tags, "pipelined RESTORE_READs")
    for t, off in zip(tags, offsets):
        st, body = got[t]
        check(st == 0, f"read at {off}: status {vp.SNAME.get(st)} {body!r}")
        o, ln, flags = struct.unpack_from("<QII", body)
        check(o == off and body[16:16 + ln] == src[off:off + ln], f"read at {off}: wrong bytes")
    c.restore_end(job)
    log("64 RESTORE_READs pipelined past a limit of 8 in flight: all answered")

    # ---- 384 DATA pieces at once, every 16th filling a window that must be stored ----
    p = vp.begin_payload("archive", ["d0"], ROOTS, vp.KIND_FILES, "full")
    p = p[:8] + (1).to_bytes(4, "little") + p[12:]              # VB_BEGIN_UNFROZEN
    bj, _ = c.begin("archive", ["d0"], ROOTS, raw=p)
    size = 24 * 4 * MIB
    c.files(bj, [vp.record("data", "dir"),
                 vp.record("data/fb", "reg", data=vp.FD_FALLBACK, size=size)])
    # pieces of 256 KiB: every 16th fills a window, whose reply waits for its chunks;
    # the smaller pieces between are answered at once
    piece = 256 * 1024
    blob = os.urandom(piece)
    tags, wire = [], b""
    for k in range(size // piece):
        c.tag += 1
        tags.append(c.tag)
        last = (k + 1) * piece == size
        wire += vp.frame(vp.OP["BACKUP_DATA"], struct.pack("<QQQII", bj, 1, k * piece, piece,
                                                           vp.DATA_LAST if last else 0) + blob,
                         c.tag)
    c.send_raw(wire)
    got = take_all(c, tags, "pipelined DATA pieces")
    bad = [(t, st, b) for t, (st, b) in got.items() if st]
    check(not bad, f"DATA pieces refused: {bad[:3]}")
    c.seal(bj)
    st = c.wait_job(bj)
    check(st["state"] == "done", f"the job fed by pipelined pieces: {st}")
    log(f"{len(tags)} DATA pieces pipelined past a limit of 8 in flight: all answered, job done")

    # ---- a few thousand small requests in one go ---------------------------------------
    tags, wire = [], b""
    for _ in range(3000):
        c.tag += 1
        tags.append(c.tag)
        wire += vp.frame(vp.OP["STATUS"], struct.pack("<Q", bj), c.tag)
    c.send_raw(wire)
    got = take_all(c, tags, "pipelined STATUS")
    check(all(st == 0 for st, _ in got.values()), "a STATUS failed")
    wait_released(d, "vm1", "pipelined requests")
    check(d.stop() == 0, "vbackupd exit status")
    log("ok: requests beyond max_requests_in_flight are answered when room frees up")
