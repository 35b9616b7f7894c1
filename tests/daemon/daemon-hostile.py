#!/usr/bin/env python3
"""A hostile guest on its real socket: truncated and oversized frames, bad
magic and version (an older peer), lying lengths, extents outside the disk
or overflowing, a disk of another VM, another VM's job and snapshot, bad
paths, extended attributes of namespaces not kept, out of order, too large
or lying, impossible times and flags, problems reports that lie, absurd
counts, floods.  Names that are not UTF-8 are taken (names are bytes).  Each gets the right status and a message that says what
was wrong; vbackupd stays up; a backup by another VM running at the same
moment completes and restores byte for byte.  (Under the ASan build too.)"""
import os
import socket
import struct
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vbproto as vp  # noqa: E402
from daemonlib import (Daemon, backup, check, fail, log, make_ext4, map_image, mount,  # noqa
                       random_files, restore, same_trees, umount, wait_for, workdir)

results = []


def expect(conn, op, payload, status, text, reply_max=0):
    st, body = conn.call(op, payload, reply_max=reply_max, check=False)
    msg = body.decode(errors="replace")
    if st != vp.S[status] or text.lower() not in msg.lower():
        fail(f"{op}: got {vp.SNAME.get(st)} {msg!r}, expected {status} mentioning {text!r}")
    results.append((op, status, msg))
    return msg


def expect_close(path, data, status=None, text=""):
    """Raw bytes on a fresh connection; optionally one error reply; then EOF."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(path)
    s.sendall(data)
    if status:
        h = b""
        while len(h) < 32:
            x = s.recv(32 - len(h))
            if not x:
                fail(f"connection closed without the {status} reply")
            h += x
        _, _, _, _, n, _, st, _ = vp.HDR.unpack(h)
        body = b""
        while len(body) < n:
            body += s.recv(n - len(body))
        check(st == vp.S[status] and text in body.decode(), f"got {st} {body!r}, expected {status}")
        results.append(("raw", status, body.decode()))
    s.shutdown(socket.SHUT_WR)
    rest = s.recv(100)
    check(rest == b"", f"connection not closed after a bad frame ({rest!r})")
    s.close()


with workdir() as w:
    tree = w.p("tree")
    random_files(tree + "/data", 6, 1 << 20)
    good_disk = make_ext4(w.p("good.raw"), tree, size="128M")
    bad_disk = make_ext4(w.p("bad.raw"), tree, size="64M")
    DISK = 64 << 20
    d = Daemon(w, {"good": {"g0": good_disk}, "evil": {"e0": bad_disk}},
               batch_seconds=0.2).start()
    good_recs, _ = map_image(w, good_disk, ["data"])

    # the other VM's backups run during the whole attack
    good_result = {}

    def good_vm():
        try:
            c = d.conn("good")
            ids = []
            for _ in range(3):
                ids.append(backup(c, "archive", ["g0"], ["data"], good_recs, [])["snapshot"])
            good_result["ids"] = ids
        except Exception as e:   # reported below
            good_result["error"] = repr(e)

    t = threading.Thread(target=good_vm)
    t.start()

    sock = d.sock("evil")
    c = d.conn("evil")
    R = vp.record

    # ---- framing ---------------------------------------------------------------
    expect_close(sock, vp.frame(1, b"x" * 8, magic=0xDEADBEEF), "BAD_FRAME", "bad magic")
    expect_close(sock, vp.frame(1, b"", version=9), "BAD_VERSION", "version 9")
    # a peer of protocol version 1 (vbackup and vbackupd ship together): a clear error
    expect_close(sock, vp.frame(1, b"", version=1), "BAD_VERSION",
                 "protocol version 1 is not supported (this host speaks 2)")
    expect(c, "HELLO", struct.pack("<II32s", 1, 1, b"old"), "BAD_VERSION",
           "no common protocol version (client 1..1, host 2)")
    expect_close(sock, vp.frame(1, b"", length=(1 << 20) + 1), "BAD_FRAME", "larger than")
    expect_close(sock, vp.frame(1, b"", length=0xFFFFFFFF), "BAD_FRAME", "larger than")
    expect_close(sock, vp.HDR.pack(vp.MAGIC, 1, 1, 7, 0, 0, 0, 0)[:13])        # truncated header
    expect_close(sock, vp.frame(2, b"abc", length=200))                        # payload cut short
    expect(c, "HELLO", b"short", "BAD_REQUEST", "HELLO payload is 5 bytes")
    for bad in (vp.frame(99, b"", tag=5), vp.frame(1 | vp.REPLY, b"", tag=5),
                vp.frame(1, b"", tag=5, status=3)):
        c.send_raw(bad)
        typ, tag, st, body = c.recv_frame()
        check(st == vp.S["BAD_REQUEST"] and tag == 5, f"bad request type: {st} {body!r}")

    # ---- BEGIN -------------------------------------------------------------------
    bp = vp.begin_payload
    expect(c, "BACKUP_BEGIN", bp("nosuch", ["e0"], ["data"]), "UNKNOWN_TARGET",
           "unknown target 'nosuch' (known: archive)")
    expect(c, "BACKUP_BEGIN", bp("archive", ["g0"], ["data"]), "NOT_OWNED",
           "disk 'g0' is not attached to VM evil")
    expect(c, "BACKUP_BEGIN", bp("archive", ["zz"], ["data"]), "NOT_OWNED", "'zz'")
    expect(c, "BACKUP_BEGIN", bp("archive", ["e0"], ["../etc"]), "BAD_PATH", "'.' or '..'")
    expect(c, "BACKUP_BEGIN", bp("archive", ["e0"], ["/etc"]), "BAD_PATH", "starts with '/'")
    expect(c, "BACKUP_BEGIN", bp("archive", ["e0"], [b"a\0b"]), "BAD_PATH", "NUL byte")
    # a root that is not UTF-8 is a root (names are bytes): taken, then cancelled
    bj, _ = c.begin("archive", ["e0"], [b"\xff\xfe"])
    c.cancel(bj)
    expect(c, "BACKUP_BEGIN", bp("archive", ["e0"], ["a//b"]), "BAD_PATH", "empty path component")
    expect(c, "BACKUP_BEGIN", bp("archive", ["e0"], ["x" * 300]), "BAD_PATH", "longer than 255")
    expect(c, "BACKUP_BEGIN", bp("archive", ["e0"] * 2, ["data"]), "BAD_REQUEST", "named twice")
    expect(c, "BACKUP_BEGIN", bp("archive", ["e0"], ["r%d" % i for i in range(65)]),
           "BAD_REQUEST", "65 paths")
    expect(c, "BACKUP_BEGIN", bp("archive", ["e0"], ["data"])[:-3], "BAD_REQUEST", "truncated")
    lie = bytearray(bp("archive", ["e0"], ["data"]))
    lie[2:4] = struct.pack("<H", 5000)                      # target_len lies
    expect(c, "BACKUP_BEGIN", bytes(lie), "BAD_REQUEST", "target name of 5000 bytes")
    # disk backups take every mode since changed-block tracking (docs/cbt.md); not an unknown one
    expect(c, "BACKUP_BEGIN", bp("archive", ["e0"], [], kind=vp.KIND_DISK, mode=4),
           "BAD_REQUEST", "unknown backup mode 4")
    expect(c, "BACKUP_BEGIN", bp("archive", ["e0"], [], kind=vp.KIND_DISK, mode=0),
           "BAD_REQUEST", "unknown backup mode 0")
    expect(c, "BACKUP_BEGIN", bp("archive", ["e0"], ["data"]) + b"junk", "BAD_REQUEST",
           "bytes after the end")

    # ---- FILES ----------------------------------------------------------------------
    job, _ = c.begin("archive", ["e0"], ["data"])
    F = lambda recs, j=job: vp.files_payload(j, recs)                    # noqa: E731
    reg = dict(type="reg", data=vp.FD_EXTENTS, size=4096)
    expect(c, "BACKUP_FILES", F([R("data/x", **reg, extents=[(0, DISK - 4096, 8192)])]),
           "OUT_OF_RANGE", "lies outside disk 'e0' (67108864 bytes)")
    expect(c, "BACKUP_FILES", F([R("data/x", **reg, extents=[(0, 2**64 - 4096, 8192)])]),
           "OUT_OF_RANGE", "overflows 64 bits")
    expect(c, "BACKUP_FILES", F([R("data/x", **reg, extents=[(0, 0, 0)])]), "BAD_REQUEST",
           "length 0")
    expect(c, "BACKUP_FILES", F([R("data/x", **reg, extents=[(4096, 0, 4096), (0, 8192, 4096)])]),
           "BAD_REQUEST", "out of order")
    expect(c, "BACKUP_FILES", F([R("data/x", **reg, disk=3, extents=[(0, 0, 4096)])]),
           "BAD_REQUEST", "disk index 3")
    expect(c, "BACKUP_FILES", F([R("../x", **reg)]), "BAD_PATH", "'.' or '..'")
    expect(c, "BACKUP_FILES", F([R("/etc/shadow", **reg)]), "BAD_PATH", "starts with '/'")
    expect(c, "BACKUP_FILES", F([R(b"a\0b", **reg)]), "BAD_PATH", "NUL byte")
    # extended attributes, times, flags
    X = vp.XATTR.pack
    expect(c, "BACKUP_FILES", F([R("data/x", xattrs={"system.nfs4_acl": b"x"})]), "BAD_REQUEST",
           "namespace")
    expect(c, "BACKUP_FILES", F([R("data/x", xattr_raw=X(1, 6, 0) + b"user.bx" + X(1, 6, 0) +
                                   b"user.ay", n_xattrs=2)]), "BAD_REQUEST", "ascending")
    expect(c, "BACKUP_FILES", F([R("data/x", xattr_raw=X(1, 6, 0) + b"user.ax" + X(1, 6, 0) +
                                   b"user.ax", n_xattrs=2)]), "BAD_REQUEST", "ascending")
    expect(c, "BACKUP_FILES", F([R("data/x", xattr_raw=X(1, 6, 0) + b"user.ax", n_xattrs=3)]),
           "BAD_REQUEST", "extended attributes")
    expect(c, "BACKUP_FILES", F([R("data/x", xattr_raw=X(5000, 6, 0) + b"user.ax", n_xattrs=1)]),
           "BAD_REQUEST", "truncated")
    expect(c, "BACKUP_FILES", F([R("data/x", xattrs={"user.big": b"v" * 65537})]), "BAD_REQUEST",
           "64 KiB")
    expect(c, "BACKUP_FILES", F([R("data/x", xattrs={f"user.{i:03}": b"v" * 65536
                                                     for i in range(13)})]),
           "TOO_LARGE", "768 KiB")
    expect(c, "BACKUP_FILES", F([R("data/x", mtime=(0, 10**9))]), "BAD_REQUEST", "nanoseconds")
    expect(c, "BACKUP_FILES", F([R("data/x", fsflags=0x80000)]), "BAD_REQUEST", "inode flags")
    expect(c, "BACKUP_FILES", F([R("data/x", flags=vp.RF_PREALLOC)]), "BAD_REQUEST",
           "record flags")
    expect(c, "BACKUP_FILES", F([R("data/x", data=vp.FD_FALLBACK, size=9,
                                   extents=[(0, 4096, 4096, 0)])]), "BAD_REQUEST",
           "only unwritten")
    expect(c, "BACKUP_FILES", F([R("data/x", xattrs={"user.a": "b"}, type="symlink", link="t"),
                                 R("data/x", data=vp.FD_MORE, xattrs={"user.a": "b"})]),
           "BAD_REQUEST", "more extents with")
    expect(c, "BACKUP_FILES", F([R("data/d", type="dir", data=vp.FD_EXTENTS)]), "BAD_REQUEST",
           "only regular files carry data")
    expect(c, "BACKUP_FILES", F([R("data/l", type="symlink")]), "BAD_REQUEST", "symlink target")
    expect(c, "BACKUP_FILES", F([R("data/t", type=42)]), "BAD_REQUEST", "unknown file type")
    expect(c, "BACKUP_FILES", F([R("data/m", mode=0o170777)]), "BAD_REQUEST", "mode")
    expect(c, "BACKUP_FILES", F([R("data/y", data=vp.FD_MORE, extents=[(0, 0, 4096)])]),
           "BAD_REQUEST", "more extents without")
    many = struct.pack("<QII", job, 5000, 0)
    expect(c, "BACKUP_FILES", many, "BAD_REQUEST", "5000 records in one message")
    lying = struct.pack("<QII", job, 4000, 0) + R("data/a")
    expect(c, "BACKUP_FILES", lying, "BAD_REQUEST", "cannot fit")
    rec = bytearray(R("data/z", **reg))
    rec[20:24] = struct.pack("<I", 100000)                  # n_extents lies
    expect(c, "BACKUP_FILES", F([bytes(rec)]), "TOO_LARGE", "100000 extents")
    rec = bytearray(R("data/z"))
    rec[24:26] = struct.pack("<H", 60000)                   # path_len lies
    expect(c, "BACKUP_FILES", F([bytes(rec)]), "BAD_REQUEST", "truncated")
    expect(c, "BACKUP_FILES", F([R("data"), R("data")]), "BAD_REQUEST", "sent twice")
    # a bad message changes nothing: the good records of it were not taken
    expect(c, "BACKUP_FILES", F([R("data", type="dir"), R("../bad")]), "BAD_PATH", "record 1")
    c.files(job, [R("data", type="dir"), R("data/fb", type="reg", data=vp.FD_FALLBACK, size=10)])
    # ---- DATA ----------------------------------------------------------------------
    D = lambda idx, off, b, fl=0: struct.pack("<QQQII", job, idx, off, len(b), fl) + b  # noqa
    expect(c, "BACKUP_DATA", D(9, 0, b"x"), "BAD_REQUEST", "has no file 9")
    expect(c, "BACKUP_DATA", D(0, 0, b"x"), "BAD_REQUEST", "does not take fallback data")
    expect(c, "BACKUP_DATA", D(1, 4, b"x"), "BAD_REQUEST", "expected 0")
    expect(c, "BACKUP_DATA", D(1, 0, b"x" * 11, 1), "OUT_OF_RANGE", "size is 10")
    expect(c, "BACKUP_DATA", D(1, 0, b"x" * 4)[:-2], "BAD_REQUEST", "carries")
    expect(c, "BACKUP_SEAL", struct.pack("<Q", job), "BAD_STATE", "lacks fallback data")
    c.data(job, 1, 0, b"0123456789", True)
    expect(c, "BACKUP_DATA", D(1, 10, b""), "BAD_STATE", "already complete")
    # names and link targets that are not UTF-8 are names: taken
    c.files(job, [R(b"data/\xff\xfe name", type="symlink", link=b"\xc3\x28",
                    xattrs={"trusted.t": b"\0"})])

    # ---- PROBLEMS ------------------------------------------------------------------
    P = lambda items, j=job: vp.problems_payload(j, items)                # noqa: E731
    expect(c, "BACKUP_PROBLEMS", P([("data/x", "a\nforged line")]), "BAD_REQUEST", "control")
    expect(c, "BACKUP_PROBLEMS", P([("../x", "why")]), "BAD_PATH", "'.' or '..'")
    expect(c, "BACKUP_PROBLEMS", P([("x", b"\xff")]), "BAD_REQUEST", "printable ASCII")
    expect(c, "BACKUP_PROBLEMS", P([("x", "CSI \u009b2J")]), "BAD_REQUEST", "printable ASCII")
    expect(c, "BACKUP_PROBLEMS", P([("x", "r" * 513)]), "BAD_REQUEST", "printable ASCII")
    expect(c, "BACKUP_PROBLEMS", struct.pack("<QII", job, 3000, 0) + b"\0" * 8, "BAD_REQUEST",
           "cannot fit")
    expect(c, "BACKUP_PROBLEMS", P([("x", "why")]) + b"junk", "BAD_REQUEST", "after the last")
    c.problems(job, [("data/\xff", "cannot read: Permission denied")])
    check(c.status(job)[0]["incomplete"], "a job with problems is not marked incomplete")

    # ---- other VM's things, unknown jobs, tiny replies ----------------------------
    good_jobs = wait_for(lambda: [j["id"] for j in d.ctl_json("jobs") if j["vm"] == "good"],
                         "a job of the good VM")
    gj = struct.pack("<Q", good_jobs[0])
    expect(c, "STATUS", gj, "NO_JOB", "no job")
    expect(c, "CANCEL", gj, "NO_JOB", "no job")
    expect(c, "BACKUP_SEAL", gj, "NO_JOB", "no job")
    expect(c, "BACKUP_FILES", vp.files_payload(good_jobs[0], [R("x")]), "NO_JOB", "no job")
    expect(c, "BACKUP_PROBLEMS", vp.problems_payload(good_jobs[0], [("x", "y")]), "NO_JOB",
           "no job")
    expect(c, "RESTORE_BEGIN", struct.pack("<HHHH", 7, 8, 0, 0) + b"archive" + b"good/x:1",
           "NOT_FOUND", "not found for VM evil")
    expect(c, "STATUS", struct.pack("<Q", job), "REPLY_TOO_SMALL", "", reply_max=40)
    expect(c, "STATUS", b"1234", "BAD_REQUEST", "expected 8")

    # ---- floods ---------------------------------------------------------------------
    n = 3000
    data = b"".join(vp.frame(vp.OP["STATUS"], struct.pack("<Q", 0), tag=100000 + i)
                    for i in range(n))
    c.send_raw(data)
    got = 0
    while got < n:
        typ, tag, st, body = c.recv_frame()
        got += 1
    extra = [vp.Conn(sock) for _ in range(8)]              # more connections than allowed
    alive = 0
    for x in extra:
        try:
            x.hello()
            alive += 1
        except (EOFError, ConnectionError, OSError):
            pass
    check(alive <= 3, f"{alive} more connections accepted beyond the limit of 4")
    for x in extra:
        x.close()
    for _ in range(6):                                       # job limit
        try:
            c.begin("archive", ["e0"], ["data"])
        except vp.Error as e:
            check(e.status == vp.S["BUSY"] and "unfinished jobs" in e.message, str(e))
            break
    else:
        fail("no job limit")

    # ---- the good VM was never disturbed ------------------------------------------
    t.join(120)
    check("error" not in good_result, f"the good VM's backup failed: {good_result.get('error')}")
    check(len(good_result.get("ids", [])) == 3, f"good VM: {good_result}")
    gc = d.conn("good")
    src = mount(w, good_disk)
    out = w.p("good-restore")
    restore(gc, "archive", good_result["ids"][-1], out)
    same_trees(src, out, "the good VM's restore")
    umount(w, src)
    # a whole-disk snapshot cannot travel back through the guest: it says where to go instead
    dj, _ = gc.begin("archive", ["g0"], [], kind=vp.KIND_DISK)
    gc.seal(dj)
    dst = gc.wait_job(dj)
    check(dst["state"] == "done", f"the good VM's disk backup: {dst}")
    expect(gc, "RESTORE_BEGIN", struct.pack("<HHHH", 7, len(dst["snapshot"]), 0, 0) + b"archive" +
           dst["snapshot"].encode(), "BAD_REQUEST", "disks are restored on the host")
    gone = "good/1999" + dst["snapshot"][len("good/YYYY"):]      # this year's id in 1999
    expect(gc, "RESTORE_BEGIN", struct.pack("<HHHH", 7, len(gone), 0, 0) + b"archive" +
           gone.encode(), "NOT_FOUND", f"snapshot '{gone}' not found for VM good")
    check(d.alive(), "vbackupd died")
    log_text = d.log_text()
    check("AddressSanitizer" not in log_text and "runtime error" not in log_text,
          "sanitizer findings in the daemon log")
    rc = d.stop()
    check(rc == 0, f"vbackupd exited {rc}")
    log(f"ok: {len(results)} hostile requests answered with clear errors; {n} flooded requests "
        f"answered; the other VM's 3 backups completed and restored")
