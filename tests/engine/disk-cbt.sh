#!/usr/bin/env bash
# Changed-block tracking with vbackupctl alone (docs/cbt.md): --track starts
# it (an overlay over a raw image, with extended L2); an incremental backup
# of the overlay reads only what was written into it (qemu-io plays the
# guest), a differential names the last full as its parent and reads the
# same; every snapshot restores to exactly the image as it was.  Whatever
# the record cannot prove is a full read that says why: the image under the
# overlay written, the disk resized, the record gone or damaged, the overlay
# in use by a QEMU, the basis snapshot in another repository or not the
# newest.  A basis chunk that cannot be read, or a reused one gone after a
# gc, is read whole (format 1; format 2's damaged blobs: repo-v2 tests).
# Runs once per repository format (lib.sh, repo_init).
source "$(dirname "$0")/../lib.sh"
requires qemu-img
requires qemu-io
cd "$T"
R="$T/repo"
S="$T/state"
repo_init "$R"

# the disk: a raw image of 64 MiB with data here and there
truncate -s 64M disk.raw
qemu-io -f raw -c "write -P 0x11 0 8M" -c "write -P 0x22 20M 12M" -c "write -P 0x33 60M 4M" \
        disk.raw >/dev/null
bk() { "$V" --repo "$R" backup-disk --vm v1 --name d0 --state "$S" "$@"; }
stat_of() { "$V" --repo "$R" show "$1" --json | json_get "$2"; }
restored_equals() {   # SNAPSHOT IMAGE FORMAT
    "$V" --repo "$R" --quiet restore-disk "$1" --to "$T/r.raw" --force
    qemu-img compare -q -U -f raw -F "$3" "$T/r.raw" "$2" || fail "snapshot $1 differs from $2"
}

out=$(bk --format raw --mode incremental --track disk.raw)
id1=$(echo "$out" | last_line)
echo "$out" | grep -q "^full read: no earlier backup of this disk" ||
    fail "the first backup does not say why it read everything: $out"
ovl=$(ls disk.raw.vbackup-cbt-*.qcow2)
[ "$(stat_of "$id1" '["mode"]')" = full ] || fail "the first backup is not recorded as full"
qemu-img check -q "$ovl" || fail "qemu-img check fails on the overlay --track made"
qemu-img info --output=json "$ovl" | python3 -c '
import json, os, sys
i = json.load(sys.stdin)
d = i["format-specific"]["data"]
assert d["extended-l2"] and i["cluster-size"] == 131072, i
assert os.path.realpath(i["backing-filename"]) == os.path.realpath("disk.raw"), i
assert i["backing-filename-format"] == "raw" and i["virtual-size"] == 64 << 20, i
' || fail "the overlay is not an extended-L2 overlay of disk.raw"
[ -f "$S/cbt/v1/d0.json" ] || fail "no tracking record"
ok "--track: full read, an extended-L2 overlay over the raw image, a record"

# the "guest" writes runs (unaligned ones too) and zeros into the overlay
qemu-io -f qcow2 -c "write -P 0x44 1052672 100k" -c "write -P 0x55 20M 8k" \
        -c "write -P 0x66 40M 1M" -c "write -z 50M 64k" -c "write -P 0x77 63M 5000" \
        "$ovl" >/dev/null
# 4 KiB subclusters: 100 KiB from 1 MiB + 4 KiB, 8 KiB, 1 MiB, 64 KiB, 5000 B -> 8 KiB
changed=$(( 100 * 1024 + 8192 + 1048576 + 65536 + 8192 ))
out=$(bk --format qcow2 --mode incremental "$ovl")
id2=$(echo "$out" | last_line)
echo "$out" | grep -q "^incremental: read only the .* in 5 runs written since snapshot $id1" ||
    fail "the incremental did not read only the changes: $out"
[ "$(stat_of "$id2" '["tracking"]["changed_bytes"]')" = "$changed" ] ||
    fail "changed bytes $(stat_of "$id2" '["tracking"]["changed_bytes"]'), expected $changed"
read2=$(stat_of "$id2" '["stats"]["bytes_read"]')
[ "$read2" -le "$changed" ] || fail "the incremental read $read2 bytes, more than the $changed changed"
[ "$(stat_of "$id2" '["parent"]')" = "$id1" ] || fail "the incremental's parent is not $id1"
[ "$(stat_of "$id2" '["mode"]')" = incremental ] || fail "the incremental is not recorded as one"
restored_equals "$id2" "$ovl" qcow2
restored_equals "$id1" disk.raw raw
ok "incremental: read $read2 of $changed changed bytes in 5 runs; restores equal the image"

# differential: the parent is the last full; still only the new changes are read
qemu-io -f qcow2 -c "write -P 0x88 30M 256k" "$ovl" >/dev/null
out=$(bk --format qcow2 --mode differential "$ovl")
id3=$(echo "$out" | last_line)
echo "$out" | grep -q "^differential: read only the .* written since snapshot $id2" ||
    fail "the differential did not read only the changes: $out"
[ "$(stat_of "$id3" '["parent"]')" = "$id1" ] || fail "the differential's parent is not the full"
[ "$(stat_of "$id3" '["stats"]["bytes_read"]')" -le $(( (100 + 8 + 1024 + 64 + 8 + 256) << 10 )) ] ||
    fail "the differential read more than the overlay holds"
restored_equals "$id3" "$ovl" qcow2
ok "differential: parent $id1, reads only the overlay"

# an unchanged disk: nothing but the overlay's clusters again (the overlay
# holds everything since --track: it is never emptied by vbackupctl)
id4=$(bk --format qcow2 --mode incremental "$ovl" | last_line)
restored_equals "$id4" "$ovl" qcow2

# ---- what the record cannot prove: a full read that says why, and a correct snapshot ----
full_read() {   # PATTERN ARGS...: the backup reads everything, saying PATTERN
    local pat=$1 o id
    shift
    o=$(bk "$@" 2>"$T/err")
    id=$(echo "$o" | last_line)
    echo "$o" | grep -q "^full read: .*$pat" || fail "expected 'full read: ...$pat': $o"
    restored_equals "$id" "$ovl" qcow2
    echo "$id"
}
touch -d '2001-01-01' disk.raw
full_read "the disk's image was written since the last backup" --format qcow2 --mode incremental "$ovl" >/dev/null
bk --format qcow2 --mode incremental "$ovl" | grep -q "^incremental:" ||
    fail "the full read after the image was touched did not bind the tracking again"
ok "image touched by another tool: full read, then tracked again"

qemu-img resize -q "$ovl" 68M
full_read "the disk was resized" --format qcow2 --mode incremental "$ovl" >/dev/null
bk --format qcow2 --mode incremental "$ovl" | grep -q "^incremental:" ||
    fail "not tracked again after the resize"
ok "disk resized: full read"

cp "$S/cbt/v1/d0.json" rec.json
echo '{"version": 1, "vm": "v1"' > "$S/cbt/v1/d0.json"
full_read "the tracking record cannot be read" --format qcow2 --mode incremental "$ovl" >/dev/null
grep -q "warning: .*d0.json" "$T/err" || fail "a damaged record is not reported"
rm "$S/cbt/v1/d0.json"
full_read "the disk has no tracking record" --format qcow2 --mode incremental "$ovl" >/dev/null
cp rec.json "$S/cbt/v1/d0.json"
ok "record damaged or gone: full read"

# the overlay locked as QEMU locks the images it runs
python3 - "$ovl" "$T/locked" "$T/unlock" <<'PY' &
import fcntl, os, struct, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack("hhqqi", fcntl.F_RDLCK, 0, 101, 1, 0))
open(sys.argv[2], "w").close()
while not os.path.exists(sys.argv[3]):
    time.sleep(0.05)
PY
locker=$!
cleanup_add "touch '$T/unlock'; wait $locker"
wait_until 60 "the lock holder" test -e "$T/locked"
full_read "in use by a running QEMU" --format qcow2 --mode incremental "$ovl" >/dev/null
touch "$T/unlock"
wait_until 60 "the lock holder to end" sh -c "! kill -0 $locker"
ok "overlay in use: full read"

# a backup into another repository moves the basis there
repo_init "$T/repo2"
"$V" --repo "$T/repo2" backup-disk --vm v1 --name d0 --state "$S" --format qcow2 \
    --mode incremental "$ovl" >/dev/null
full_read "another repository" --format qcow2 --mode incremental "$ovl" >/dev/null
# and a snapshot newer than the basis: the record bound to repo2... bound back here now
bk --format qcow2 --mode incremental "$ovl" | grep -q "^incremental:" || fail "not tracked again"
newest=$(bk --format qcow2 --mode full "$ovl" | last_line)
python3 - "$S/cbt/v1/d0.json" "$id1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); r["basis"]["snapshot"] = sys.argv[2]
json.dump(r, open(sys.argv[1], "w"))
PY
full_read "not from the newest backup of this disk ($newest)" --format qcow2 --mode incremental "$ovl" >/dev/null
ok "basis in another repository or not the newest: full read"

# a basis chunk that cannot be read: that chunk is read whole (format 1's
# chunk files; a version 2 pack holds many chunks, damaged ones are found by
# verify: tests/engine/repo-v2-*.sh)
if [ "$repo_format" = 1 ]; then
qemu-io -f qcow2 -c "write -P 0x99 44M 4k" "$ovl" >/dev/null
base=$(bk --format qcow2 --mode incremental "$ovl" | last_line)
qemu-io -f qcow2 -c "write -P 0x9a 44M 4k" "$ovl" >/dev/null
chunk_file() {   # SNAPSHOT INDEX: the chunk's file
    python3 - "$R" "$1" "$2" <<'PY'
import sys
d = open(f"{sys.argv[1]}/snapshots/{sys.argv[2]}/disk.fidx", "rb").read()
h = d[64 + 32 * int(sys.argv[3]):][:32].hex()
print(f"{sys.argv[1]}/chunks/{h[:2]}/{h}")
PY
}
rm "$(chunk_file "$base" 11)"              # 44 MiB is in chunk 11
out=$(bk --format qcow2 --mode incremental "$ovl")
echo "$out" | grep -q "^incremental: .*1 read whole" || fail "the unreadable basis chunk: $out"
restored_equals "$(echo "$out" | last_line)" "$ovl" qcow2
# a reused chunk gone after a gc (the knowledge of earlier generations is void)
"$V" --repo "$R" --quiet gc >/dev/null
base=$(bk --format qcow2 --mode incremental "$ovl" | last_line)
"$V" --repo "$R" --quiet gc >/dev/null
rm "$(chunk_file "$base" 6)"               # 24..28 MiB: data never rewritten, reused
out=$(bk --format qcow2 --mode incremental "$ovl")
echo "$out" | grep -q "^incremental: .*1 read whole" || fail "the missing reused chunk: $out"
restored_equals "$(echo "$out" | last_line)" "$ovl" qcow2
ok "basis chunk unreadable, reused chunk gone after a gc: read whole, snapshots correct"
fi

# an explicit parent: another disk's snapshot is refused
"$V" --repo "$R" backup-disk --vm v1 --name other --format raw disk.raw >/dev/null
other=$("$V" --repo "$R" snapshots --vm v1 --json | python3 -c '
import json, sys; print([s["id"] for s in json.load(sys.stdin) if s.get("group") == "disk:other"][-1])')
expect_fail "is not a backup of disk 'd0'" bk --format qcow2 --mode incremental --parent "$other" "$ovl"
pid=$(bk --format qcow2 --mode incremental --parent "$id2" "$ovl" | last_line)
[ "$(stat_of "$pid" '["parent"]')" = "$id2" ] || fail "--parent is not the parent"
"$V" --repo "$R" --quiet verify "$pid" >/dev/null || fail "the newest snapshot does not verify"
ok "--parent; the newest snapshot verifies (format $repo_format)"
