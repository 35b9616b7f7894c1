#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# What the clients put on the wire, checked by the capture peer
# (tests/clients/capture-peer.py, a stand-in for vbackupd that enforces the
# rules of docs/protocol.md and records what it gets).  The same checks run
# against the real vbackupd in the daemon's tests; this one pins the client
# side down on its own:
#  * the records received equal `vbclient --dump` (MORE records merged);
#  * FILES messages: at most 4096 records and 1 MiB; a file with more than
#    8192 extents goes as a record and MORE records;
#  * the HELLO limits are honoured (smaller payloads, fewer records);
#  * fallback DATA: in order, pieces of at most max_payload - 32 bytes, LAST
#    on the last one, the bytes equal the files';
#  * the guest tool over a socket on a directory that is on no virtio disk:
#    no serials, every file through the fallback stream;
#  * every error status gives its message and exit status 1; malformed
#    replies are refused with a message; list, status, cancel.

source "$(dirname "$0")/../integration/functions.sh"
source "$(dirname "$0")/clientlib.sh"
requires mkfs.ext4 -V
requires python3 --version

SOCK=$VB_TMP/vm.sock
SERIAL=wire-disk
SRC=$VB_TMP/src
IMG=$VB_TMP/fs.img

make_tree "$SRC"
mkdir -p "$SRC/many" "$SRC/long"
python3 - "$SRC" <<'EOF'
import os, sys
d = sys.argv[1]
for i in range(5000):
    open(os.path.join(d, "many", f"f{i:05d}"), "w").write(str(i))
for i in range(4000):
    open(os.path.join(d, "long", f"{i:05d}-" + "n" * 200), "w").close()
# more than 8192 extents: every other 4 KiB block written
with open(os.path.join(d, "many-extents"), "wb") as f:
    for i in range(9000):
        f.seek(i * 8192)
        f.write(os.urandom(4096))
EOF
truncate -s 512M "$IMG"
mkfs.ext4 -q -b 4096 -N 30000 -d "$SRC" "$IMG"
DISK_SIZE=$(stat -c %s "$IMG")

vbclient() { "$VBCLIENT" --device "$SOCK" "$@"; }
image_args=(--fs-image "$IMG" --serial "$SERIAL")

# python helper: a summary of the peer's log
peer_stats() {
    python3 - "$1" <<'EOF'
import json, sys
files = [json.loads(l) for l in open(sys.argv[1])]
f = [x for x in files if x.get("op") == "BACKUP_FILES"]
d = [x for x in files if x.get("op") == "BACKUP_DATA"]
more = [x for x in files if "more" in x]
print(len(f), max(x["n"] for x in f), max(x["bytes"] for x in f),
      len(d), max((x["len"] for x in d), default=0), len(more),
      min((x["n"] for x in f[:-1]), default=0))
EOF
}

# --- records, batching, MORE ------------------------------------------------------
"$VBCLIENT" backup . "${image_args[@]}" --dump "$VB_TMP/dump.json"
start_peer "$SOCK" --log "$VB_TMP/p1.log" --records "$VB_TMP/rec1.json" --disk-size "$DISK_SIZE"
vbclient backup . "${image_args[@]}" --to archive --mode full >"$VB_TMP/out" 2>"$VB_TMP/err" ||
    { cat "$VB_TMP/err"; fail "vbclient backup"; }
no_violations "$VB_TMP/p1.log"
dump_compare "$VB_TMP/rec1.json" "$VB_TMP/dump.json"
read -r n_msgs max_n max_bytes n_data max_piece n_more min_n < <(peer_stats "$VB_TMP/p1.log")
n_recs=$(wc -l < "$VB_TMP/dump.json")
[ "$max_n" -le 4096 ] || fail "a FILES message with $max_n records"
[ "$max_bytes" -le 1048576 ] || fail "a FILES message of $max_bytes bytes"
[ "$n_msgs" -ge 3 ] || fail "$n_recs records in only $n_msgs messages"
[ "$min_n" -lt 4096 ] || fail "no message was cut by its size"
[ "$n_more" -ge 1 ] || fail "no MORE record for the file with 9000 extents"
[ "$(dump_get "$VB_TMP/rec1.json" many-extents extents | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" = 9000 ] ||
    fail "the file with 9000 extents lost some"
[ "$(tail -n1 "$VB_TMP/out")" = "capture/0001" ] || fail "the last line is not the snapshot id"
grep -q '"mode": 1,' "$VB_TMP/p1.log" || fail "--mode full was not sent"
log "$n_recs records in $n_msgs FILES messages (at most $max_n records, $max_bytes bytes), $n_more MORE"
stop_peer

# --- small HELLO limits: 64 KiB payloads, 100 records; all data as fallback -----------------
start_peer "$SOCK" --log "$VB_TMP/p2.log" --records "$VB_TMP/rec2.json" --max-payload 65536 \
    --max-files 100 --disk-size "$DISK_SIZE"
vbclient backup dir a.txt many-extents "with space" "${image_args[@]}" --to archive \
    --fallback 'size-*' --fallback '*.bin' 2>"$VB_TMP/err" >/dev/null ||
    { cat "$VB_TMP/err"; fail "backup with small limits"; }
no_violations "$VB_TMP/p2.log"
read -r n_msgs max_n max_bytes n_data max_piece n_more min_n < <(peer_stats "$VB_TMP/p2.log")
[ "$max_n" -le 100 ] && [ "$max_bytes" -le 65536 ] && [ "$max_piece" -le 65504 ] ||
    fail "limits not honoured: $max_n records, $max_bytes bytes, pieces $max_piece"
[ "$n_more" -ge 4 ] || fail "9000 extents in 64 KiB messages need MORE records ($n_more)"
python3 - "$VB_TMP/rec2.json" "$SRC" <<'EOF' || fail "fallback data differs from the files"
import hashlib, json, os, sys
n = 0
for r in map(json.loads, open(sys.argv[1])):
    if r["data"] == "fallback":
        want = hashlib.sha256(open(os.path.join(sys.argv[2], r["path"]), "rb").read()).hexdigest()
        assert r["sha256"] == want, r["path"]
        n += 1
assert n >= 10, n
EOF
# DATA pieces of one file are in order, the last with LAST
python3 - "$VB_TMP/p2.log" <<'EOF' || fail "DATA order"
import json, sys
seen = {}
for x in map(json.loads, open(sys.argv[1])):
    if x.get("op") == "BACKUP_DATA":
        pos, last = seen.get(x["file"], (0, False))
        assert not last and x["offset"] == pos, x
        seen[x["file"]] = (pos + x["len"], bool(x["flags"] & 1))
assert all(v[1] for v in seen.values())
assert any(v[0] > 3 * 65504 for v in seen.values())
EOF
log "64 KiB limits honoured: $max_n records, $max_bytes bytes, pieces of $max_piece, $n_more MORE; fallback data exact"
stop_peer

# --- the guest tool on a directory on no virtio disk -------------------------------------------
# tmpfs: on no block device, so every file goes through the fallback stream
# (and nothing is frozen: the test host's own disk may well be a virtio disk)
if [ -d /dev/shm ] && [ -w /dev/shm ] && [ "$(stat -f -c %T /dev/shm)" = tmpfs ]; then
    G=$(mktemp -d /dev/shm/vbwire.XXXXXX)
    cleanup_fn "rm -rf '$G'"
    cp -a "$SRC/dir" "$SRC/with space" "$G/"
    "$VBACKUP_TOOL" backup "$G/dir" "$G/with space" --dump "$VB_TMP/gdump.json" 2>/dev/null
    start_peer "$SOCK" --log "$VB_TMP/p3.log" --records "$VB_TMP/rec3.json"
    "$VBACKUP_TOOL" --device "$SOCK" backup "$G/dir" "$G/with space" --to archive \
        >"$VB_TMP/out" 2>"$VB_TMP/err" || { cat "$VB_TMP/err"; fail "guest tool over a socket"; }
    no_violations "$VB_TMP/p3.log"
    grep -q "is not on a block device" "$VB_TMP/err" ||
        { cat "$VB_TMP/err"; fail "no note about the fallback"; }
    grep -q '"serials": \[\]' "$VB_TMP/p3.log" || fail "serials were sent for no disk"
    dump_compare "$VB_TMP/rec3.json" "$VB_TMP/gdump.json" atime_ns,atime_sec,atime_nsec
    python3 - "$VB_TMP/rec3.json" <<'EOF2' || fail "guest tool fallback records"
import hashlib, json, sys
n = 0
for r in map(json.loads, open(sys.argv[1])):
    if r["type"] == "reg":
        assert r["data"] == ("none" if r["size"] == 0 else "fallback"), r
        if r["size"]:
            want = hashlib.sha256(open("/" + r["path"], "rb").read()).hexdigest()
            assert r["sha256"] == want, r["path"]
            n += 1
assert n >= 10
EOF2
    log "guest tool, no virtio disk: no serials, all data through the stream, exact"
    stop_peer
else
    log "no tmpfs at /dev/shm: the guest tool's all-fallback case is not checked here"
fi

# --- error statuses ------------------------------------------------------------------------------
for st in $(seq 1 20); do
    start_peer "$SOCK" --log "$VB_TMP/pe.log" --fail "BACKUP_BEGIN=$st:host message for status $st"
    if [ "$st" = 1 ]; then
        want="backup failed: the host's vbackupd is not running (or not connected to this VM)"
    else
        want="backup failed: host message for status $st"
    fi
    expect_fail "vbclient: $want" vbclient backup . "${image_args[@]}" --to archive
    [ "$EXPECT_RC" = 1 ] || fail "exit status $EXPECT_RC for status $st"
    stop_peer
done
start_peer "$SOCK" --log "$VB_TMP/pe.log" \
    --fail "BACKUP_BEGIN=5:unknown target 'foo' (known: archive, offsite)"
expect_fail "vbackup: backup failed: unknown target 'foo' (known: archive, offsite)" \
    "$VBACKUP_TOOL" --device "$SOCK" backup "$SRC/dir" --to foo --no-freeze
stop_peer
start_peer "$SOCK" --log "$VB_TMP/pe.log" --fail "BACKUP_BEGIN=16"
expect_fail "backup failed: no space left in the backup target" \
    vbclient backup . "${image_args[@]}" --to archive
stop_peer
start_peer "$SOCK" --log "$VB_TMP/pe.log" --fail "BACKUP_BEGIN=9:$(printf 'evil\033[2Jtext')"
expect_fail 'backup failed: evil\\x1b\[2Jtext' vbclient backup . "${image_args[@]}" --to archive
stop_peer
log "statuses 1..20: messages and exit status 1; control characters escaped"

# a failure after BEGIN cancels the job
start_peer "$SOCK" --log "$VB_TMP/pf.log" --fail "BACKUP_FILES=8:extent 3 of 'x' lies outside disk"
expect_fail "backup failed: sending file records: extent 3 of 'x' lies outside disk" \
    vbclient backup . "${image_args[@]}" --to archive
grep -q '"op": "CANCEL", "job": 1' "$VB_TMP/pf.log" || fail "no CANCEL after a failed FILES"
stop_peer
start_peer "$SOCK" --log "$VB_TMP/pf.log" --fail "BACKUP_SEAL=20:fallback file 'a' is incomplete"
expect_fail "backup failed: sealing job 1: fallback file 'a' is incomplete" \
    vbclient backup dir "${image_args[@]}" --to archive
grep -q '"op": "CANCEL", "job": 1' "$VB_TMP/pf.log" || fail "no CANCEL after a failed SEAL"
stop_peer
start_peer "$SOCK" --log "$VB_TMP/pf.log" --job-end failed
expect_fail "backup failed: job 1: disk image unreadable: test failure" \
    vbclient backup dir "${image_args[@]}" --to archive
stop_peer
start_peer "$SOCK" --log "$VB_TMP/pf.log" --job-end cancelled-by-host
expect_fail "backup failed: job 1: cancelled by the host" \
    vbclient backup dir "${image_args[@]}" --to archive
stop_peer
log "failures after BEGIN: job cancelled, messages name the step"

# --- malformed replies ------------------------------------------------------------------------------
for op in HELLO BACKUP_BEGIN BACKUP_SEAL STATUS; do
    start_peer "$SOCK" --log "$VB_TMP/pm.log" --malformed $op
    expect_fail "malformed $op reply from the host" vbclient backup dir "${image_args[@]}" --to a
    stop_peer
done
start_peer "$SOCK" --log "$VB_TMP/pm.log" --malformed LIST
expect_fail "list failed: malformed LIST reply from the host" vbclient list --from archive
stop_peer
log "malformed replies are refused"

# --- list, status, cancel -----------------------------------------------------------------------------
start_peer "$SOCK" --log "$VB_TMP/pl.log" --list-page 1 --n-snapshots 3 --never-read-done
vbclient list --from archive > "$VB_TMP/list"
[ "$(grep -c '^capture/2026-01-0[123]T00:00:00Z ' "$VB_TMP/list")" = 3 ] ||
    { cat "$VB_TMP/list"; fail "list output"; }
grep -q "/usr/lib /home" "$VB_TMP/list" || { cat "$VB_TMP/list"; fail "list roots"; }
[ "$(grep -c '"op": "LIST"' "$VB_TMP/pl.log")" = 3 ] || fail "LIST was not paged"
grep -q '"op": "LIST", "start": 0, "target": "archive"' "$VB_TMP/pl.log" || fail "LIST target"
vbclient status > "$VB_TMP/status"
grep -q "no jobs" "$VB_TMP/status" || true
"$VBCLIENT" --device "$SOCK" backup dir "${image_args[@]}" --to archive >/dev/null 2>&1 &
BK=$!
wait_for 10 grep -q '"op": "STATUS", "job": 1' "$VB_TMP/pl.log"
vbclient status > "$VB_TMP/status"
grep -q "^1 .* running " "$VB_TMP/status" || { cat "$VB_TMP/status"; fail "status output"; }
vbclient status 1 | grep -q "^1 " || fail "status 1"
vbclient cancel 1 | grep -q "job 1 cancelled" || fail "cancel output"
rc=0
wait $BK || rc=$?
[ $rc = 1 ] || fail "the backup of a cancelled job exited $rc"
expect_fail "cancel failed: no job 99" vbclient cancel 99
expect_fail "status failed: no job 99" vbclient status 99
expect_fail "cancel failed: job already finished" vbclient cancel 1
stop_peer
log "list (paged), status, cancel"
