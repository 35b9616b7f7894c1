#!/usr/bin/env bash
# What a disk backup may take for granted (docs/repository.md, "Claims and
# knowledge"): the chunks of its parent exist only if no gc ran since the
# parent was committed.  A parent's chunk deleted by hand is stored again by
# the next backup after a gc, and then every snapshot verifies again.
source "$(dirname "$0")/../lib.sh"
cd "$T"
R="$T/repo"
"$V" --repo "$R" init --format 1 >/dev/null

rand_mib d.raw 16
id1=$("$V" --repo "$R" backup-disk --vm vm --name d --format raw d.raw | last_line)
victim=$(python3 -c "
import sys
f = open(sys.argv[1], 'rb').read()
print(f[64 + 32:96 + 32].hex())" "$R/snapshots/$id1/disk.fidx")
rm "$R/chunks/${victim:0:2}/$victim"
rc=0; "$V" --repo "$R" verify > v.out || rc=$?
[ "$rc" = 1 ] && grep -q "damaged chunk $victim" v.out || { cat v.out; fail "the deleted chunk is not reported (test broken?)"; }

"$V" --repo "$R" gc >/dev/null
id2=$("$V" --repo "$R" backup-disk --vm vm --name d --format raw d.raw | last_line)
"$V" --repo "$R" show "$id2" --json > s2.json
[ "$(json_get '["parent"]' < s2.json)" = "$id1" ] || fail "the second backup's parent is not $id1"
[ -f "$R/chunks/${victim:0:2}/$victim" ] || fail "the parent's missing chunk was not stored again after gc"
"$V" --repo "$R" verify >/dev/null || fail "verify after the chunk was stored again"
for id in "$id1" "$id2"; do
    "$V" --repo "$R" restore-disk "$id" --to r.raw >/dev/null
    cmp d.raw r.raw || fail "restore of $id differs"
    rm r.raw
done
ok "after gc, a parent's chunks are looked up, and a missing one is stored again"
gen() { "$V" --repo "$R" show "$1" --json | json_get '["gc_generation"]'; }
[ "$(gen "$id1")" = 0 ] || fail "the first snapshot's gc generation is $(gen "$id1"), expected 0"
[ "$(gen "$id2")" = 1 ] || fail "the second snapshot's gc generation is $(gen "$id2"), expected 1"

# gc --dry-run deletes nothing and keeps the generation; a real gc moves it on
"$V" --repo "$R" gc --dry-run >/dev/null
id3=$("$V" --repo "$R" backup-disk --vm vm --name d --format raw d.raw | last_line)
[ "$(gen "$id3")" = 1 ] || fail "gc --dry-run moved the generation"
"$V" --repo "$R" gc >/dev/null
id4=$("$V" --repo "$R" backup-disk --vm vm --name d --format raw d.raw | last_line)
[ "$(gen "$id4")" = 2 ] || fail "gc did not move the generation"
ok "the gc generation moves with each gc that may delete"
