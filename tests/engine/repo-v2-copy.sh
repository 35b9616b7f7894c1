#!/usr/bin/env bash
# Version 2 repositories from vbackupctl, as a user meets them: init with
# encryption (password from a file, never argv), copy of a version 1
# repository's disk snapshots (the same ids, chunks the target has are not
# stored again, a second copy changes nothing), the list, restore-disk equal
# byte for byte to version 1's restore of the same snapshot (holes kept),
# verify --read-data, and a flipped byte in a pack or a manifest named by
# verify.  Wrong and missing passwords, commands not there yet on v2, and
# copies the wrong way round give clear errors.
source "$(dirname "$0")/../lib.sh"
requires qemu-img
requires qemu-io
cd "$T"
V1="$T/v1"
V2="$T/v2"
"$V" --repo "$V1" init >/dev/null

# a disk with data, a hole and a zero run; an incremental of it; and the same
# disk in a dedup group of its own
qemu-img create -q -f raw d.raw 48M
qemu-io -f raw -c "write -P 7 0 8M" -c "write -P 9 20M 4M" -c "write -z 30M 4M" d.raw >/dev/null
head -c 3M /dev/urandom | dd of=d.raw bs=1M seek=40 conv=notrunc status=none
full=$(v1_backup_disk "$V1" d.raw --vm web --name vda)
qemu-io -f raw -c "write -P 11 4M 1M" d.raw >/dev/null
inc=$(v1_backup_disk "$V1" d.raw --vm web --name vda --mode incremental)
grp=$(v1_backup_disk "$V1" d.raw --vm other --name vda --dedup-group t1)

# --- init: encrypted, the password from a file --------------------------------
printf 'correct horse\n' > pw
printf 'wrong\n' > bad
rc=0; "$V" --repo "$V2" init --format 2 </dev/null > out 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q "VBACKUP_PASSWORD_FILE\|password" out || { cat out; fail "init without a password: exit $rc"; }
"$V" --repo "$V2" init --format 2 --encryption aes-256-gcm --password-file pw > out \
    || fail "init --format 2"
grep -q "format 2, encryption aes-256-gcm" out || fail "init's message: $(cat out)"
grep -rq "correct horse" "$V2" && fail "the password is in the repository"
rc=0; "$V" --repo "$V2" snapshots --password-file bad > out 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q "wrong password or key" out || { cat out; fail "a wrong password: exit $rc"; }
export VBACKUP_PASSWORD_FILE="$T/pw"

# --- copy: one snapshot, then all; the same ids -------------------------------
"$V" copy --from "$V1" --to "$V2" "$inc" > out || { cat out; fail "copy of one snapshot"; }
grep -q "^$inc -> $inc " out || fail "copy did not keep the id: $(cat out)"
"$V" copy --from "$V1" --to "$V2" > out || { cat out; fail "copy of everything"; }
grep -q "^$full -> $full " out && grep -q "^$grp -> $grp " out && grep -q "^$inc: in the target already" out \
    || fail "copy: $(cat out)"
grep -q "copy: 2 copied, 1 already there, 0 failed" out || fail "copy's summary: $(cat out)"
# the full backup's chunks are all in the incremental already there (its one
# changed chunk held what its first chunk holds): only its chunk list is new
grep "^$full -> " out | grep -qE "\(([0-9]+ B|[0-9.]+ KiB) new in the target\)" \
    || fail "the full copy stored chunks the target had: $(cat out)"
files_before=$(find "$V2" -type f | sort | md5sum)
"$V" copy --from "$V1" --to "$V2" > out || fail "a second copy"
grep -q "copy: 0 copied, 3 already there" out || fail "a second copy: $(cat out)"
[ "$(find "$V2" -type f | sort | md5sum)" = "$files_before" ] || fail "a second copy changed the target"

# --- the list, restores equal to version 1's -----------------------------------
"$V" --repo "$V2" snapshots --json > list.json
python3 - list.json "$full" "$inc" "$grp" <<'PY' || fail "snapshots --json"
import json, sys
got = {s["id"]: s for s in json.load(open(sys.argv[1]))}
assert set(got) == set(sys.argv[2:]), got
assert all(s["type"] == "disk" and s["size"] == 48 << 20 for s in got.values()), got
assert got[sys.argv[4]].get("dedup_group") == "t1", got
PY
for s in "$full" "$inc" "$grp"; do
    f="v2-$(echo "$s" | tr / _).raw"
    "$V" --repo "$V2" --quiet restore-disk "$s" --to "$f" || fail "restore-disk $s from v2"
    cmp "$f" "$(v1_restored "$s")" || fail "restore-disk $s: v2 differs from v1"
    [ "$(du -k "$f" | cut -f1)" -lt 24000 ] || fail "restore-disk $s did not keep the holes"
done
rc=0; "$V" --repo "$V2" restore-disk "$full" --to "v2-$(echo "$full" | tr / _).raw" > out 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q "exists; use --force" out || fail "restore-disk over a file: $(cat out)"

# --- verify, and damage ---------------------------------------------------------
"$V" --repo "$V2" verify --read-data > out || { cat out; fail "verify of the copy"; }
grep -q "verify: 3 snapshots, .* read: ok" out || fail "verify's summary: $(cat out)"
pack=$(find "$V2/data" -type f | head -1)
cp "$pack" pack.good
flip_byte "$pack" 200
rc=0; "$V" --repo "$V2" verify --read-data > out 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q "damaged: .*$(basename "$pack")" out || { cat out; fail "verify of a flipped pack byte: exit $rc"; }
cp pack.good "$pack"
man=$(find "$V2/snapshots" -type f | head -1)
cp "$man" man.good
flip_byte "$man" 40
rc=0; "$V" --repo "$V2" verify > out 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q "$(basename "$man")" out || { cat out; fail "verify of a flipped manifest byte: exit $rc"; }
cp man.good "$man"
"$V" --repo "$V2" verify > /dev/null || fail "verify after the repair"

# --- key files: add, open with either, remove, passwd --------------------------------
"$V" --repo "$V2" key list --json > keys.json
python3 -c "import json,sys; k=json.load(open('keys.json')); assert len(k)==1 and k[0]['current'] and k[0]['kdf']=='scrypt', k" \
    || fail "key list: $(cat keys.json)"
first=$(python3 -c "import json; print(json.load(open('keys.json'))[0]['id'])")
rc=0; "$V" --repo "$V2" key add > out 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q "new-password-file" out || fail "key add without a new password: $(cat out)"
printf 'battery staple\n' > pw2
"$V" --repo "$V2" key add --new-password-file pw2 > out || fail "key add"
second=$(sed -n 's/^added key //p' out)
[ -n "$second" ] || fail "key add's message: $(cat out)"
"$V" --repo "$V2" snapshots --password-file pw2 > /dev/null || fail "the added key does not open"
rc=0; "$V" --repo "$V2" key remove "${first:0:8}" > out 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q "is the one this command opened" out || fail "removing the key in use: $(cat out)"
"$V" --repo "$V2" key remove "${second:0:8}" --password-file pw > /dev/null || fail "key remove"
rc=0; "$V" --repo "$V2" snapshots --password-file pw2 > out 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q "wrong password" out || fail "a removed key still opens: $(cat out)"
printf 'tr0ub4dor\n' > pw3
"$V" --repo "$V2" key passwd --new-password-file pw3 > out || fail "key passwd: $(cat out)"
rc=0; "$V" --repo "$V2" snapshots > out 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q "wrong password" out || fail "the old password opens after passwd"
export VBACKUP_PASSWORD_FILE="$T/pw3"
"$V" --repo "$V2" verify > /dev/null || fail "verify with the new password"
rc=0; "$V" --repo "$V2" key remove "$(python3 -c "import json,sys; print(json.load(sys.stdin)[0]['id'])" < <("$V" --repo "$V2" key list --json))" > out 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q "is the one this command opened\|is the last one" out || fail "removing the last key: $(cat out)"

# --- what is not there yet, and copies the wrong way round -----------------------
rc=0; "$V" --repo "$V2" restore-files "$full" --to rf > out 2>&1 || rc=$?
[ "$rc" = 2 ] && grep -q "is a version 2 repository" out || fail "restore-files on v2: exit $rc: $(cat out)"
rc=0; "$V" copy --from "$V2" --to "$V1" > out 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q "is a version 2 repository" out || fail "copy from v2: $(cat out)"
mkdir v1b && "$V" --repo v1b init >/dev/null
rc=0; "$V" copy --from "$V1" --to v1b > out 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q "is not a version 2 repository" out || fail "copy to v1: $(cat out)"
ok "version 2: init, copy, snapshots, restore-disk, verify"
