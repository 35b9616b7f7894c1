#!/usr/bin/env bash
# Whole-disk backup and restore: what a user checks.  The restored disk
# compares equal to the source (qemu-img compare), raw restores keep holes,
# qcow2 restores are sparse and pass qemu-img check, an unchanged second
# backup stores nothing new, a disk of odd size restores to raw, qcow2 and a
# block device that held old data, and clones sharing a base store only
# their differences (bytes read / new / deduplicated reported).  Runs once
# per repository format (lib.sh, repo_init).
source "$(dirname "$0")/../lib.sh"
requires qemu-img
requires qemu-io
cd "$T"
R="$T/repo"
repo_init "$R"
expect_fail "already a vbackup repository" repo_init "$R"

# a qcow2 image with data, zeros, holes and a compressible region
qemu-img create -q -f qcow2 disk.qcow2 200M
head -c 6M /dev/urandom > rnd
qemu-io -c "write -P 0x41 0 3M" -c "write -P 0x42 50M 1M" -c "write -z 60M 8M" \
        -c "write -P 0x43 199M 1M" disk.qcow2 >/dev/null
qemu-img dd -f raw -O qcow2 if=rnd of=disk.qcow2 bs=1M seek=100 count=6 conv=notrunc 2>/dev/null ||
    qemu-io -c "write -P 0x44 100M 6M" disk.qcow2 >/dev/null

out=$("$V" --repo "$R" backup-disk --vm web1 --format qcow2 disk.qcow2)
id1=$(echo "$out" | last_line)
echo "$out" | grep -q "^read .*new .*deduplicated" || fail "backup-disk does not report bytes"
"$V" --repo "$R" show "$id1" --json > s1.json
new1=$(json_get '["stats"]["bytes_new"]' < s1.json)
[ "$new1" -gt 0 ] || fail "first backup stored nothing"

# raw restore: equal, and sparse
"$V" --repo "$R" restore-disk "$id1" --to r.raw
same_image disk.qcow2 r.raw
alloc=$(du -k r.raw | cut -f1)
[ "$alloc" -lt 40000 ] || fail "raw restore is not sparse ($alloc KiB allocated)"
expect_fail "exists; use --force" "$V" --repo "$R" restore-disk "$id1" --to r.raw
"$V" --repo "$R" restore-disk "$id1" --to r.raw --force
same_image disk.qcow2 r.raw

# qcow2 restore: equal, clean, sparse
"$V" --repo "$R" restore-disk "$id1" --to r.qcow2 --format qcow2
same_image disk.qcow2 r.qcow2
qemu-img check -q r.qcow2 || fail "qemu-img check failed on the restored qcow2"
size=$(stat -c %s r.qcow2)
[ "$size" -lt $((40 << 20)) ] || fail "qcow2 restore is not sparse ($size bytes)"
qemu-img map --output=json r.qcow2 | python3 -c '
import json, sys
m = json.load(sys.stdin)
data = sum(e["length"] for e in m if e["data"])
assert data < 20 << 20, f"qcow2 restore allocates {data} bytes"
'

# unchanged second backup: nothing new
id2=$("$V" --repo "$R" backup-disk --vm web1 --format qcow2 disk.qcow2 | last_line)
[ "$id2" != "$id1" ] || fail "second snapshot has the same id"
"$V" --repo "$R" show "$id2" --json > s2.json
[ "$(json_get '["stats"]["bytes_new"]' < s2.json)" = 0 ] || fail "unchanged backup stored new data"
[ "$(json_get '["parent"]' < s2.json)" = "$id1" ] || fail "parent of the second snapshot is not the first"

# raw source with holes, size not a multiple of 4 MiB
qemu-img create -q -f raw src.raw 10000K
qemu-io -f raw -c "write -P 0x99 5000k 17k" src.raw >/dev/null
id3=$("$V" --repo "$R" backup-disk --vm web1 --name data --format raw src.raw | last_line)
"$V" --repo "$R" restore-disk "$id3" --to r3.raw
cmp src.raw r3.raw || fail "raw round trip differs"
[ "$(stat -c %s r3.raw)" = "$(stat -c %s src.raw)" ] || fail "restored raw size differs"

# a disk whose size is not a multiple of 4 KiB, with data up to its last
# byte: restored to raw, to qcow2 and onto a block device that holds old data
# (the aligned writes bypass the page cache, the rest does not)
qemu-img create -q -f raw odd.raw 33554944
qemu-io -f raw -c "write -P 0x5a 1m 300k" -c "write -P 0xa5 33554432 512" odd.raw >/dev/null
id4=$("$V" --repo "$R" backup-disk --vm web1 --name odd --format raw odd.raw | last_line)
"$V" --repo "$R" restore-disk "$id4" --to r4.raw
cmp odd.raw r4.raw || fail "odd-sized raw round trip differs"
"$V" --repo "$R" restore-disk "$id4" --to r4.qcow2 --format qcow2
qemu-img compare -q odd.raw r4.qcow2 || fail "odd-sized qcow2 round trip differs"
head -c 33554944 /dev/urandom > dev.img
loopdev=$(losetup --find --show dev.img)
cleanup_add "losetup -d $loopdev 2>/dev/null"
"$V" --repo "$R" restore-disk "$id4" --to "$loopdev" --force
cmp odd.raw "$loopdev" || fail "restore onto a block device differs (old data left in a hole?)"
echo "odd-sized disk restored exactly to raw, qcow2 and a block device"

# three clones: qcow2 overlays of one base, each with a little of its own
qemu-img create -q -f qcow2 base.qcow2 64M
head -c 48M /dev/urandom > base.bin
qemu-img dd -f raw -O qcow2 if=base.bin of=base.qcow2 bs=1M count=48 conv=notrunc 2>/dev/null ||
    qemu-img convert -f raw -O qcow2 base.bin base.qcow2
for i in 1 2 3; do
    qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 clone$i.qcow2
    qemu-io -c "write -P $((i + 16)) $((i * 8))M 1M" clone$i.qcow2 >/dev/null
done
"$V" --repo "$R" backup-disk --vm clone1 --format qcow2 clone1.qcow2 > c1.out
for i in 2 3; do
    "$V" --repo "$R" backup-disk --vm clone$i --format qcow2 clone$i.qcow2 > c$i.out
    "$V" --repo "$R" show "$(last_line < c$i.out)" --json > c$i.json
    new=$(json_get '["stats"]["bytes_new"]' < c$i.json)
    dedup=$(json_get '["stats"]["bytes_dedup"]' < c$i.json)
    # its own 4 MiB chunk, and at most the base version of a chunk clone1 changed
    [ "$new" -le $((8 << 20)) ] || fail "clone$i stored $new new bytes (expected at most two 4 MiB chunks)"
    [ "$dedup" -ge $((40 << 20)) ] || fail "clone$i deduplicated only $dedup bytes"
done
for i in 1 2 3; do
    "$V" --repo "$R" restore-disk "$(last_line < c$i.out)" --to rc$i.raw
    same_image clone$i.qcow2 rc$i.raw
done

# stats add up (format 2 counts the plain bytes of what its index holds); verify passes
"$V" --repo "$R" stats --json > st.json
python3 - st.json <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
unique = s.get("unique_bytes", s.get("plain_bytes"))
assert s["snapshots"] == 7, s
assert s["logical_bytes"] > unique > 0, s
assert s["dedup_ratio"] > 2.0, s
assert s["stored_bytes"] > 0 and s["compression_ratio"] >= 1.0, s
PY
if [ "$repo_format" = 1 ]; then
    "$V" --repo "$R" verify | grep -q "verified 7 snapshots.*: ok" || fail "verify"
else
    "$V" --repo "$R" verify --read-data | grep -q "verify: 7 snapshots, .* read: ok" || fail "verify"
fi
"$V" --repo "$R" snapshots --vm clone2 --json | json_len | grep -qx 1 || fail "snapshots --vm"

# a disk without any data (all holes): nothing is ever in flight, and neither
# direction may wait for a completion (60 s is a safety net; it takes ms)
truncate -s 64M holes.raw
out=$(timeout 60 "$V" --repo "$R" backup-disk --vm holes --format raw holes.raw) ||
    fail "backup-disk of an all-hole disk: exit $? (124: hung)"
timeout 60 "$V" --repo "$R" restore-disk "$(echo "$out" | last_line)" --to holes.back ||
    fail "restore-disk of an all-hole disk: exit $? (124: hung)"
cmp holes.raw holes.back || fail "the all-hole disk restored wrong"
ok "disk round trips, sparse restores, dedup across clones, a disk of holes"
