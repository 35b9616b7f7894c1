#!/usr/bin/env bash
# vbackupctl copy between version 2 repositories, through the snapshot door
# on the source's side: a version 1 repository's disk and files snapshots
# copied into a plain version 2 one (A), beside disk snapshots backed up into
# A itself; then A into B (AES-256-GCM, its own password), B into D
# (ChaCha20-Poly1305, another password, the source's from
# --from-password-file), D into C (plain again).  What the chain ends in is
# what it began with: the same snapshots with their ids, groups, modes,
# parents, dedup groups, times, notes and stats (the source saying where it
# was copied from), disks restored byte for byte, files restored equal field
# by field to version 1's restore (content, modes, times, xattrs, holes).
# Only what the target lacks is stored, a second copy stores nothing, a
# repository is never copied into itself however it is spelt, and a wrong
# password names the side it belongs to.
source "$(dirname "$0")/../lib.sh"
requires qemu-img
requires qemu-io
cd "$T"
V1="$T/v1" A="$T/a" B="$T/b" C="$T/c" D="$T/d"
MK="$SRC/tests/engine/mkfilesnap.py"
CHECK="${VB_V2_FILES_CHECK:?meson sets VB_V2_FILES_CHECK}"
unset VBACKUP_PASSWORD_FILE
printf 'the password of b\n' > pwb
printf 'the password of d\n' > pwd
printf 'not it\n' > bad

# --- the sources: version 1 snapshots, and version 2 ones made in A -----------
"$V" --repo "$V1" init --format 1 >/dev/null
copy_disk_sources "$V1"
cp "$SRC/tests/engine/specs/copy-tree.json" tree.json
cp "$SRC/tests/engine/specs/copy-fine.json" fine.json
tree=$(python3 "$MK" "$V1" tree.json)
fine=$(python3 "$MK" "$V1" fine.json)
files="$tree $fine"

"$V" --repo "$A" --quiet init --format 2 --encryption none
"$V" --quiet copy --from "$V1" --to "$A" || fail "copy of version 1 into A"
# disk snapshots of version 2's own making (their source names the image,
# their stats hold fractions): a full and an incremental of it
qemu-img create -q -f raw n.raw 20M
head -c 5M /dev/urandom | dd of=n.raw bs=1M seek=2 conv=notrunc status=none
nat=$("$V" --repo "$A" backup-disk --vm native --name vdb --format raw n.raw | last_line)
cp --sparse=always n.raw "n-$(echo "$nat" | tr / _).raw"
sleep 1     # another second: another id
head -c 1M /dev/urandom | dd of=n.raw bs=1M seek=12 conv=notrunc status=none
nat2=$("$V" --repo "$A" backup-disk --vm native --name vdb --format raw --mode incremental n.raw |
       last_line)
cp --sparse=always n.raw "n-$(echo "$nat2" | tr / _).raw"
disks="$full $inc $grp $nat $nat2"
all="$disks $files"
n_all=$(echo $all | wc -w)
[ "$(n_snapshots "$A")" = "$n_all" ] || fail "A holds $(n_snapshots "$A") snapshots, not $n_all"

# --- plain into encrypted: only what the target lacks -------------------------
"$V" --repo "$B" --quiet init --format 2 --encryption aes-256-gcm --password-file pwb
"$V" copy --from "$A" --to "$B" --password-file pwb "$full" > out || { cat out; fail "copy of $full into B"; }
grep -q "^$full -> $full " out || fail "copy of one snapshot: $(cat out)"
"$V" copy --from "$A" --to "$B" --password-file pwb > out || { cat out; fail "copy of A into B"; }
grep -q "^$full: in the target already" out && grep -q "^$nat2 -> $nat2 " out \
    || fail "copy of A into B: $(cat out)"
grep -q "copy: $((n_all - 1)) copied, 1 already there, 0 failed" out || fail "copy's summary: $(cat out)"
# the incremental's random 3 MiB is the full's: its chunk list and one changed
# chunk of repeated bytes are all it adds
grep "^$inc -> " out | grep -qE "\(([0-9]+ B|[0-9.]+ KiB) new in the target\)" \
    || fail "the incremental's copy stored chunks the target had: $(cat out)"
grep -r -q "the password of b" "$B" && fail "the password is in B"

# --- encrypted into encrypted: another cipher, another password -----------------
"$V" --repo "$D" --quiet init --format 2 --encryption chacha20-poly1305 --password-file pwd
rc=0; "$V" copy --from "$B" --to "$D" --from-password-file bad --password-file pwd > out 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q "copy: the source $B: .*wrong password or key" out \
    || fail "a wrong source password: exit $rc: $(cat out)"
rc=0; "$V" copy --from "$B" --to "$D" --from-password-file pwb --password-file bad > out 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q "copy: the target $D: .*wrong password or key" out \
    || fail "a wrong target password: exit $rc: $(cat out)"
"$V" --repo "$D" snapshots --json --password-file pwd | python3 -c "import json,sys; assert json.load(sys.stdin) == []" \
    || fail "a refused copy left something in D"
"$V" copy --from "$B" --to "$D" --from-password-file pwb --password-file pwd > out \
    || { cat out; fail "copy of B into D"; }
grep -q "copy: $n_all copied, 0 already there, 0 failed" out || fail "copy of B into D: $(cat out)"
# the same secrets from a key file: a raw key added to D opens it as a source
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > kd && echo >> kd
"$V" --repo "$D" --quiet key add --new-key-file kd --password-file pwd || fail "key add --new-key-file"

# --- a second copy stores nothing ----------------------------------------------
before=$(find "$D" -type f | sort | xargs md5sum | md5sum)
"$V" copy --from "$B" --to "$D" --from-password-file pwb --password-file pwd > out || fail "a second copy"
grep -q "copy: 0 copied, $n_all already there, 0 failed" out || fail "a second copy: $(cat out)"
[ "$(find "$D" -type f | sort | xargs md5sum | md5sum)" = "$before" ] || fail "a second copy changed D"

# --- encrypted into plain ------------------------------------------------------------
"$V" --repo "$C" --quiet init --format 2 --encryption none
"$V" copy --from "$D" --to "$C" --from-key-file kd > out || { cat out; fail "copy of D into C"; }
grep -q "copy: $n_all copied, 0 already there, 0 failed" out || fail "copy of D into C: $(cat out)"
grep -q "the password of" -r "$C" && fail "a password is in C"
"$V" --repo "$C" verify --read-data > out || { cat out; fail "verify --read-data of C"; }
grep -q "verify: $n_all snapshots, .* read: ok" out || fail "verify of C: $(cat out)"

# --- what C holds is what A held -------------------------------------------------------
"$V" --repo "$A" snapshots --json > a.json
"$V" --repo "$C" snapshots --json > c.json
python3 - a.json c.json <<'PY' || fail "the snapshots of C are not those of A: $(cat a.json c.json)"
import json, sys
a, c = (json.load(open(f)) for f in sys.argv[1:])
assert a == c, (a, c)
PY
for s in $all; do
    "$V" --repo "$A" show "$s" --json > a.json || fail "show $s in A"
    "$V" --repo "$C" show "$s" --json > c.json || fail "show $s in C"
    python3 - a.json c.json "$V1/snapshots/$s/index.json" <<'PY' || fail "$s: C's manifest is not A's: $(cat a.json c.json)"
import datetime, json, os, sys
a, c = (json.load(open(f)) for f in sys.argv[1:3])
for m in (a, c):
    del m["object"], m["streams"]
# A's source says where its copies came from (version 1); C's where C's came from
src = dict(a["source"], copied_from=a["id"], copied_from_format=2)
assert c.pop("source") == src, (c, src)
a.pop("source")
assert a == c, (a, c)
if os.path.exists(sys.argv[3]):
    v1 = json.load(open(sys.argv[3]))
    assert c["parent"] == v1.get("parent") and c["group"] == v1["group"], (c, v1)
    created = v1.get("created_ns") or int(datetime.datetime.strptime(
        v1["created"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc).timestamp()) * 10**9
    assert c["created_ns"] == created and c.get("dedup_group") == v1.get("dedup_group"), (c, v1)
PY
done
"$V" --repo "$C" show "$inc" --json | python3 -c "import json,sys; s=json.load(sys.stdin); assert s['parent']==sys.argv[1] and s['mode']=='incremental', s" "$full" \
    || fail "the incremental's parent or mode was lost"
"$V" --repo "$C" show "$nat" --json | python3 -c "import json,sys; s=json.load(sys.stdin); assert isinstance(s['stats']['seconds'], float) and s['source']['path'], s" \
    || fail "a native snapshot's stats or source were lost"

# --- restores from the end of the chain -------------------------------------------------
for s in $disks; do
    f="c-$(echo "$s" | tr / _).raw"
    "$V" --repo "$C" --quiet restore-disk "$s" --to "$f" || fail "restore-disk $s from C"
    want=$(v1_restored "$s")
    [ -f "$want" ] || want="n-$(echo "$s" | tr / _).raw"
    cmp "$f" "$want" || fail "restore-disk $s from C differs from what was backed up"
done
"$V" --repo "$D" --quiet restore-disk "$grp" --to d-grp.raw --password-file pwd || fail "restore-disk from D"
cmp d-grp.raw "$(v1_restored "$grp")" || fail "restore-disk $grp from D differs"
for s in $files; do
    "$CHECK" "$C" "$s" > /dev/null || fail "v2-files-check $s in C"
    rm -rf ra rb
    "$V" --repo "$V1" --quiet restore-files "$s" --to ra --xattrs=all || fail "restore-files $s from v1"
    "$V" --repo "$C" --quiet restore-files "$s" --to rb --xattrs=all || fail "restore-files $s from C"
    trees_same ra rb || fail "restore-files $s from C differs from version 1's"
done
ok "copies between version 2 repositories: plain, AES-256-GCM, ChaCha20-Poly1305, plain"

# --- never into itself ----------------------------------------------------------------------
for pair in "$A $A" "$A $T/./a" "$B $B"; do
    set -- $pair
    before=$(find "$2" -type f | sort | xargs md5sum | md5sum)
    rc=0; "$V" copy --from "$1" --to "$2" --from-password-file pwb --password-file pwb > out 2>&1 || rc=$?
    [ "$rc" = 1 ] && grep -q "copy: --from $1 --to $2: the source and the target are one repository" out \
        || fail "a copy of $1 into $2: exit $rc: $(cat out)"
    [ "$(find "$2" -type f | sort | xargs md5sum | md5sum)" = "$before" ] || fail "a refused copy changed $2"
done
ok "a repository is not copied into itself; wrong passwords name their side"
