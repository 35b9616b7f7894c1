#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The clients' restore, against a synthetic snapshot served by the capture
# peer (a fake beside the real round trips against vbackupd): every entry
# type, holes (sparse files stay sparse, a > 4 GiB file), hard links, odd
# names, times to the nanosecond, modes, owners (as root); replies in any
# order and small pieces; restoring over an existing tree; a hostile
# snapshot (a symlink as a parent, '..', forward hard links) creates nothing
# outside the destination; errors from the host.

source "$(dirname "$0")/../integration/functions.sh"
source "$(dirname "$0")/clientlib.sh"
requires python3 --version

SOCK=$VB_TMP/vm.sock
SPEC=$VB_TMP/spec.json
ROOT=0
[ "$(id -u)" = 0 ] && ROOT=1

python3 - "$SPEC" "$ROOT" <<'EOF'
import json, sys
root = sys.argv[2] == "1"
T = 1_600_000_000_123_456_789
E = []
def add(path, typ, **kw):
    e = {"path": path, "type": typ, "mtime_ns": T + len(E) * 1_000_000_007,
         "atime_ns": T - len(E) * 999_999_937}
    e.update(kw)
    E.append(e)
    return len(E) - 1
add("r", "dir", mode=0o755)
add("r/sub dir", "dir", mode=0o750)
add("r/sub dir/deeper", "dir", mode=0o700)
add("r/ünïcödé ✓", "dir", mode=0o755)
add("r/ro", "dir", mode=0o555)
add("r/ro/inside", "reg", mode=0o444, size=10, data=[[0, 10]])
add("r/empty", "reg", mode=0o600, size=0)
add("r/small", "reg", mode=0o644, size=5000, data=[[0, 5000]])
add("r/sub dir/deeper/exact-piece", "reg", mode=0o644, size=(1 << 20) - 16, data=[[0, (1 << 20) - 16]])
add("r/ünïcödé ✓/ファイル with space.txt", "reg", mode=0o640, size=777, data=[[0, 777]])
add("r/many-chunks", "reg", mode=0o644, size=20_000_000, data=[[0, 20_000_000]])
add("r/sparse", "reg", mode=0o644, size=80 << 20,
    data=[[4096, 100], [10 << 20, 3 << 20], [(80 << 20) - 5, 5]])
add("r/hole-only", "reg", mode=0o644, size=3 << 20)
add("r/big-sparse", "reg", mode=0o644, size=(5 << 30) + 7,
    data=[[1 << 20, 70000], [(4 << 30) + 12345, 4096]])
h = add("r/hard1", "reg", mode=0o755, size=70000, nlink=3, data=[[0, 70000]])
add("r/sub dir/hard2", "reg", link_of=h, nlink=3, mode=0o755, size=70000)
add("r/ünïcödé ✓/hard3", "reg", link_of=h, nlink=3, mode=0o755, size=70000)
add("r/link", "symlink", link="sub dir/deeper/exact-piece", mode=0o777)
add("r/abs-link", "symlink", link="/nonexistent/target", mode=0o777)
add("r/ünïcödé ✓/utf8-link", "symlink", link="ファイル with space.txt", mode=0o777)
add("r/fifo", "fifo", mode=0o640)
add("r/sock", "sock", mode=0o755)
add("r/old", "reg", mode=0o644, size=3, data=[[0, 3]], mtime_ns=-302443199_500000000)
if root:
    add("r/null", "chr", mode=0o666, rdev=(1 << 8) | 3)
    add("r/loop", "blk", mode=0o660, rdev=(7 << 8) | 200)
    add("r/owned", "reg", mode=0o4750, uid=1234, gid=5678, size=6, data=[[0, 6]])
    add("r/sticky", "dir", mode=0o1777, uid=42, gid=43)
json.dump({"snapshot": "capture/2026-05-05T05:05:05Z", "entries": E}, open(sys.argv[1], "w"),
          indent=0)
EOF

# verify DEST PREFIX: every entry of the spec under PREFIX is there, exactly
verify() {
    python3 - "$SPEC" "$1" "${2:-r}" "$ROOT" <<'EOF' || fail "restored tree $1 differs (above)"
import hashlib, json, os, stat, sys
sys.path.insert(0, os.environ["CLIENTS_DIR"])
spec, dest, prefix, root = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3], sys.argv[4] == "1"
import importlib.util
sp = importlib.util.spec_from_file_location("peer", os.path.join(os.environ["CLIENTS_DIR"], "capture-peer.py"))
peer = importlib.util.module_from_spec(sp); sp.loader.exec_module(peer)
E = spec["entries"]
kinds = {"reg": stat.S_ISREG, "dir": stat.S_ISDIR, "symlink": stat.S_ISLNK, "fifo": stat.S_ISFIFO,
         "chr": stat.S_ISCHR, "blk": stat.S_ISBLK, "sock": stat.S_ISSOCK}
bad = 0
def err(*a):
    global bad
    bad += 1
    print(*a)
mine = [e for e in E if e["path"] == prefix or e["path"].startswith(prefix + "/")]
stats = {}
for e in mine:              # metadata first: reading the files changes atimes
    try:
        stats[e["path"]] = os.lstat(os.path.join(dest, e["path"]))
    except FileNotFoundError:
        pass
for e in mine:
    p = os.path.join(dest, e["path"])
    st = stats.get(e["path"])
    if st is None:
        err("missing", e["path"]); continue
    if not kinds[e["type"]](st.st_mode):
        err("type", e["path"]); continue
    # a hard link is the inode of its first link (inside the restored paths)
    m = E[e["link_of"]] if "link_of" in e and E[e["link_of"]] in mine else e
    if e["type"] != "symlink" and stat.S_IMODE(st.st_mode) != m.get("mode", 0o644):
        err("mode", e["path"], oct(st.st_mode), oct(m.get("mode", 0o644)))
    if st.st_mtime_ns != m["mtime_ns"]:
        err("mtime", e["path"], st.st_mtime_ns, m["mtime_ns"])
    if e["type"] != "dir" and st.st_atime_ns != m["atime_ns"]:
        err("atime", e["path"], st.st_atime_ns, m["atime_ns"])
    if root and (st.st_uid, st.st_gid) != (m.get("uid", 0), m.get("gid", 0)):
        err("owner", e["path"], st.st_uid, st.st_gid)
    if e["type"] == "reg":
        first = E[e["link_of"]] if "link_of" in e else e
        if "link_of" in e and first in mine:
            if st.st_ino != os.lstat(os.path.join(dest, first["path"])).st_ino:
                err("not a hard link", e["path"])
        if st.st_size != first.get("size", 0):
            err("size", e["path"], st.st_size)
        # content: each data segment as the snapshot has it, zeros elsewhere
        # (reading only what is allocated: holes are skipped with SEEK_DATA)
        with open(p, "rb") as f:
            fd = f.fileno()
            for kind, off, ln in peer.segments(first):
                if kind == "data":
                    if os.pread(fd, ln, off) != peer.make_content(first.get("seed", first["path"]), off, ln):
                        err("content", e["path"], off, ln)
                    continue
                pos = off
                while pos < off + ln:
                    try:
                        d = os.lseek(fd, pos, os.SEEK_DATA)
                    except OSError:
                        break
                    if d >= off + ln:
                        break
                    try:
                        h = min(os.lseek(fd, d, os.SEEK_HOLE), off + ln)
                    except OSError:
                        h = off + ln
                    if os.pread(fd, h - d, d).strip(b"\0"):
                        err("not zero in a hole", e["path"], d)
                    pos = h
        data = sum(x[1] for x in first.get("data", []))
        if first.get("size", 0) > (8 << 20) and st.st_blocks * 512 > data + (1 << 20):
            err("not sparse", e["path"], st.st_blocks * 512, data)
        if st.st_nlink != (first.get("nlink", 1) if first in mine else 1):
            err("nlink", e["path"], st.st_nlink)
    if e["type"] == "symlink" and os.readlink(p) != e["link"]:
        err("link target", e["path"], os.readlink(p))
    if e["type"] in ("chr", "blk"):
        r = e["rdev"]
        if (os.major(st.st_rdev), os.minor(st.st_rdev)) != ((r >> 8) & 0xfff, (r & 0xff) | ((r >> 12) & 0xfff00)):
            err("rdev", e["path"])
leftovers = [n for dp, dn, fn in os.walk(dest) for n in dn + fn if n.startswith(".vbrestore")]
if leftovers:
    err("temporary files left:", leftovers)
sys.exit(1 if bad else 0)
EOF
}


# --- vbclient: replies out of order, RESTORE_LIST in pages of 7 --------------------
start_peer "$SOCK" --log "$VB_TMP/p1.log" --restore-spec "$SPEC" --list-page 7 --shuffle
"$VBCLIENT" --device "$SOCK" restore r --from archive --into "$VB_TMP/out1" \
    >"$VB_TMP/out" 2>"$VB_TMP/err" || { cat "$VB_TMP/err"; fail "vbclient restore"; }
verify "$VB_TMP/out1"
no_violations "$VB_TMP/p1.log"
grep -q '"op": "RESTORE_END"' "$VB_TMP/p1.log" || fail "no RESTORE_END"
grep -q "restore done: $(python3 -c "import json; print(len(json.load(open('$SPEC'))['entries']))") entries" \
    "$VB_TMP/out" || { cat "$VB_TMP/out"; fail "restore summary"; }
log "vbclient restore: $(wc -l < "$VB_TMP/p1.log") requests, tree exact"

# again over the restored tree (files replaced, directories kept), with a
# symlink planted where the snapshot has a directory: replaced, nothing
# written through it
mkdir -p "$VB_TMP/outside"
rm -rf "$VB_TMP/out1/r/sub dir"
ln -s "$VB_TMP/outside" "$VB_TMP/out1/r/sub dir"
echo "old content" > "$VB_TMP/out1/r/small"
"$VBCLIENT" --device "$SOCK" restore r --from archive --into "$VB_TMP/out1" \
    >/dev/null 2>"$VB_TMP/err" || { cat "$VB_TMP/err"; fail "restore over a tree"; }
verify "$VB_TMP/out1"
[ -z "$(ls -A "$VB_TMP/outside")" ] || fail "a restore wrote through a planted symlink"
stop_peer
log "restore over an existing tree: exact; a planted symlink was replaced"

# --- small pieces (64 KiB payloads), the guest tool, a sub-path -----------------------
start_peer "$SOCK" --log "$VB_TMP/p2.log" --restore-spec "$SPEC" --max-payload 65536 --shuffle
(cd / && "$VBACKUP_TOOL" --device "$SOCK" restore "/r/ünïcödé ✓" r/sparse --from archive \
    --snapshot capture/2026-05-05T05:05:05Z --into "$VB_TMP/out2" >/dev/null 2>"$VB_TMP/err") ||
    { cat "$VB_TMP/err"; fail "vbackup restore"; }
verify "$VB_TMP/out2" "r/ünïcödé ✓"
verify "$VB_TMP/out2" "r/sparse"
[ ! -e "$VB_TMP/out2/r/small" ] || fail "restored more than asked"
grep -q '"paths": \["r/ünïcödé ✓", "r/sparse"\]' "$VB_TMP/p2.log" ||
    fail "paths not sent relative to /"
python3 - "$VB_TMP/p2.log" <<'EOF' || fail "RESTORE_READ sizes"
import json, sys
reads = [x for x in map(json.loads, open(sys.argv[1])) if x.get("op") == "RESTORE_READ"]
assert reads and max(r["len"] for r in reads) <= 65536 - 16
EOF
no_violations "$VB_TMP/p2.log"
stop_peer
log "vbackup restore of sub-paths in 64 KiB pieces: exact (hard link to a first link outside the paths restored as a file)"

# --- "/" is the whole snapshot; errors -------------------------------------------------
start_peer "$SOCK" --log "$VB_TMP/p3.log" --restore-spec "$SPEC"
"$VBCLIENT" --device "$SOCK" restore / --from archive --into "$VB_TMP/out3" >/dev/null 2>&1 ||
    fail "restore /"
grep -q '"paths": \[\]' "$VB_TMP/p3.log" || fail "restore / did not ask for everything"
verify "$VB_TMP/out3"
expect_fail "restore failed: 'r/nothing' is not in the snapshot" \
    "$VBCLIENT" --device "$SOCK" restore r/nothing --from archive --into "$VB_TMP/out4"
expect_fail "restore failed: snapshot 'vm/none' not found" \
    "$VBCLIENT" --device "$SOCK" restore r --snapshot vm/none --from archive --into "$VB_TMP/out4"
expect_fail "restore: name the paths to restore in place" \
    "$VBCLIENT" --device "$SOCK" restore --from archive
[ "$EXPECT_RC" = 2 ] || fail "usage error exit status $EXPECT_RC"
stop_peer
for op in RESTORE_BEGIN RESTORE_LIST; do
    start_peer "$SOCK" --log "$VB_TMP/pm.log" --restore-spec "$SPEC" --malformed $op
    expect_fail "restore failed: malformed $op reply from the host" \
        "$VBCLIENT" --device "$SOCK" restore r --from archive --into "$VB_TMP/out5"
    stop_peer
done
start_peer "$SOCK" --log "$VB_TMP/pm.log" --restore-spec "$SPEC" --malformed RESTORE_READ
expect_fail "malformed RESTORE_READ reply from the host: offset differs" \
    "$VBCLIENT" --device "$SOCK" restore r/small --from archive --into "$VB_TMP/out5"
grep -q '"op": "RESTORE_END"' "$VB_TMP/pm.log" || fail "no RESTORE_END after a failure"
[ -z "$(find "$VB_TMP/out5" -name '.vbrestore*')" ] || fail "temporary files left after a failure"
stop_peer
start_peer "$SOCK" --log "$VB_TMP/pm.log" --restore-spec "$SPEC" --fail "RESTORE_READ=15:chunk 3f2a... is corrupt"
expect_incomplete "r/small: chunk 3f2a... is corrupt" \
    "$VBCLIENT" --device "$SOCK" restore r/small --from archive --into "$VB_TMP/out6"
stop_peer
log "restore /, not found, usage, malformed replies, host errors"

# --- a hostile snapshot ------------------------------------------------------------------
python3 - "$VB_TMP/evil.json" "$VB_TMP/outside" <<'EOF'
import json, sys
E = [
    {"path": "e", "type": "dir", "mode": 0o755},
    {"path": "e/ok", "type": "reg", "size": 3, "data": [[0, 3]]},
    {"path": "e/evil", "type": "symlink", "link": sys.argv[2]},
    {"path": "e/evil/passwd", "type": "reg", "size": 5, "data": [[0, 5]]},
    {"path": "e/evil/sub", "type": "dir"},
    {"path": "e/file", "type": "reg", "size": 1, "data": [[0, 1]]},
    {"path": "e/file/under-a-file", "type": "reg", "size": 1, "data": [[0, 1]]},
    {"path": "e/fwd", "type": "reg", "link_of": 7, "size": 1},
    {"path": "e/target", "type": "reg", "size": 1, "data": [[0, 1]]},
    {"path": "e/ok", "type": "reg", "size": 3, "data": [[0, 3]]},
]
json.dump({"snapshot": "capture/evil", "entries": E}, open(sys.argv[1], "w"))
EOF
start_peer "$SOCK" --log "$VB_TMP/pe.log" --restore-spec "$VB_TMP/evil.json"
expect_incomplete "restore incomplete: 5 of 10 entries could not be restored" \
    "$VBCLIENT" --device "$SOCK" restore e --from archive --into "$VB_TMP/out7"
grep -q "e/evil/passwd: parent is not a restored directory; refused" "$VB_TMP/err" ||
    { cat "$VB_TMP/err"; fail "no refusal message"; }
[ -z "$(ls -A "$VB_TMP/outside")" ] || fail "the hostile snapshot wrote outside the destination"
[ -L "$VB_TMP/out7/e/evil" ] && [ -f "$VB_TMP/out7/e/ok" ] && [ -f "$VB_TMP/out7/e/target" ] ||
    fail "the good entries of the hostile snapshot are missing"
stop_peer
python3 - "$VB_TMP/dotdot.json" <<'EOF'
import json, sys
json.dump({"snapshot": "capture/evil", "entries": [
    {"path": "d", "type": "dir"}, {"path": "d/../../escape", "type": "reg", "size": 1,
                                   "data": [[0, 1]]}]}, open(sys.argv[1], "w"))
EOF
start_peer "$SOCK" --log "$VB_TMP/pd.log" --restore-spec "$VB_TMP/dotdot.json"
expect_fail "malformed RESTORE_LIST reply from the host: invalid path" \
    "$VBCLIENT" --device "$SOCK" restore d --from archive --into "$VB_TMP/out8/x"
[ ! -e "$VB_TMP/out8/escape" ] && [ ! -e "$VB_TMP/escape" ] || fail "'..' escaped"
stop_peer
log "hostile snapshots: nothing outside the destination"

# --- a symlink planted in the destination above the restored paths ------------------
# (a user of the guest can make one where a restore in place or --into passes:
# DEST/h/home/u -> elsewhere): never followed, the other paths are restored
python3 - "$VB_TMP/planted.json" <<'EOF'
import json, sys
json.dump({"snapshot": "capture/planted", "entries": [
    {"path": "h/home/u/docs", "type": "dir", "mode": 0o755},
    {"path": "h/home/u/docs/f", "type": "reg", "size": 3, "data": [[0, 3]]},
    {"path": "h/other/x", "type": "reg", "size": 3, "data": [[0, 3]]}]}, open(sys.argv[1], "w"))
EOF
mkdir -p "$VB_TMP/planted/h/home" "$VB_TMP/outside-p"
ln -s "$VB_TMP/outside-p" "$VB_TMP/planted/h/home/u"
start_peer "$SOCK" --log "$VB_TMP/pp.log" --restore-spec "$VB_TMP/planted.json"
expect_incomplete "h/home/u/docs: .*symlink" \
    "$VBCLIENT" --device "$SOCK" restore h/home/u/docs h/other/x --from archive --into "$VB_TMP/planted"
[ -z "$(ls -A "$VB_TMP/outside-p")" ] || fail "the restore went through a symlink planted in the destination"
[ -f "$VB_TMP/planted/h/other/x" ] || fail "the path beside the planted symlink was not restored"
stop_peer
log "a symlink planted above the restored paths is not followed"

# --- SIGINT in the middle: stops soon, no temporary file left, RESTORE_END ----------
python3 - "$VB_TMP/slow.json" <<'EOF2'
import json, sys
json.dump({"snapshot": "capture/slow", "entries": [
    {"path": "s", "type": "dir"},
    {"path": "s/big", "type": "reg", "size": 400 << 20, "data": [[0, 400 << 20]]},
    {"path": "s/later", "type": "reg", "size": 10, "data": [[0, 10]]}]}, open(sys.argv[1], "w"))
EOF2
start_peer "$SOCK" --log "$VB_TMP/ps.log" --restore-spec "$VB_TMP/slow.json"
"$VBCLIENT" --device "$SOCK" restore s --from archive --into "$VB_TMP/out9" 2>"$VB_TMP/err" &
RS=$!
# in the middle of s/big (400 MiB, hundreds of reads): a few reads answered
reads_at_least() { [ "$(grep -c '"op": "RESTORE_READ"' "$VB_TMP/ps.log")" -ge "$1" ]; }
wait_for 60 reads_at_least 8
t0=$SECONDS
kill -INT $RS
rc=0
wait $RS || rc=$?
[ $rc = 1 ] || fail "restore exited $rc after SIGINT"
# the workers look for the signal every 250 ms; the rest of the file would
# take seconds to minutes: 5 s is a safety net, not a speed
[ $((SECONDS - t0)) -le 5 ] || fail "restore took $((SECONDS - t0)) s to stop"
grep -q "restore failed: interrupted" "$VB_TMP/err" || { cat "$VB_TMP/err"; fail "SIGINT message"; }
[ -z "$(find "$VB_TMP/out9" -name '.vbrestore*')" ] || fail "temporary files left after SIGINT"
[ ! -e "$VB_TMP/out9/s/big" ] || fail "a half-restored file is in place"
wait_for 10 grep -q '"op": "RESTORE_END"' "$VB_TMP/ps.log"
stop_peer
log "SIGINT: stopped, nothing half-written in place, RESTORE_END sent"
