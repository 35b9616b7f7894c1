#!/usr/bin/env bash
# A tampered or damaged repository gives clear errors, never a crash, and
# never leads a read or a write outside the repository:
#  * vbackup-repo.json with fields of the wrong type, an array, cut short, or
#    a symlink: the repository is refused, naming the field;
#  * index.json with "disk" of the wrong type: verify names it, gc refuses;
#  * symlinks planted in place of snapshots/, snapshots/VM, chunks/,
#    chunks/ab and lock: backups, listings, gc and prune refuse, naming the
#    symlink, and the folders the symlinks point at stay untouched (the old
#    code wrote snapshots and chunks into them, and created the lock file);
#  * a folder name with terminal escapes in snapshots/: verify prints it
#    escaped.
source "$(dirname "$0")/../lib.sh"
cd "$T"
R="$T/repo"
"$V" --repo "$R" init --format 1 >/dev/null
rand_mib a.raw 8
id1=$("$V" --repo "$R" backup-disk --vm a --name d --format raw a.raw | last_line)
backup() { "$V" --repo "$R" backup-disk --vm a --name d --format raw a.raw; }
# untouched DIR: nothing was created in DIR (a planted symlink's target)
untouched() { [ -z "$(find "$1" -mindepth 1 -newer stamp -print -quit)" ] || { find "$1" -newer stamp; fail "written outside the repository: $1"; }; }
# refuses PATTERN CMD...: exits 1 (no crash) naming PATTERN
refuses() { expect_fail "$@"; }

# ---- the marker ---------------------------------------------------------------
cp "$R/vbackup-repo.json" marker.good
python3 - "$R/vbackup-repo.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1])); m["vbackup_repository"] = "1"; json.dump(m, open(sys.argv[1], "w"))
PY
refuses '"vbackup_repository" must be the number 1' "$V" --repo "$R" snapshots
python3 - "$R/vbackup-repo.json" marker.good <<'PY'
import json, sys
m = json.load(open(sys.argv[2])); m["level"] = "fast"; json.dump(m, open(sys.argv[1], "w"))
PY
refuses '"level" must be a number' "$V" --repo "$R" snapshots
echo '[1]' > "$R/vbackup-repo.json"
refuses 'damaged repository marker' "$V" --repo "$R" snapshots
head -c 20 marker.good > "$R/vbackup-repo.json"
refuses 'damaged repository marker' "$V" --repo "$R" snapshots
rm "$R/vbackup-repo.json"; ln -s "$T/marker.good" "$R/vbackup-repo.json"
refuses 'vbackup-repo.json: a symlink' "$V" --repo "$R" snapshots
rm "$R/vbackup-repo.json"; cp marker.good "$R/vbackup-repo.json"
ok "a marker of the wrong types, cut short or a symlink: the repository is refused"

# ---- index.json with fields of the wrong type ----------------------------------
S1="$R/snapshots/$id1"
cp "$S1/index.json" index.good
python3 - "$S1/index.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1])); m["disk"] = "big"; json.dump(m, open(sys.argv[1], "w"))
PY
rc=0; "$V" --repo "$R" verify > v.out 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q 'lacks "disk" (an object)' v.out || { cat v.out; fail "verify: disk of the wrong type (exit $rc)"; }
refuses 'lacks "disk" (an object)' "$V" --repo "$R" gc
refuses 'lacks "disk" (an object)' "$V" --repo "$R" restore-disk "$id1" --to x.raw
cp index.good "$S1/index.json"
ok "index.json of the wrong types: named by verify, gc and restore"

touch stamp
# ---- snapshots/ is a symlink -----------------------------------------------------
mkdir out-snaps
mv "$R/snapshots" snaps.good
ln -s "$T/out-snaps" "$R/snapshots"
refuses 'snapshots: a symlink' backup
refuses 'snapshots: a symlink' "$V" --repo "$R" snapshots
refuses 'snapshots: a symlink' "$V" --repo "$R" gc
untouched out-snaps
rm "$R/snapshots"; mv snaps.good "$R/snapshots"

# ---- snapshots/a is a symlink ------------------------------------------------------
mkdir out-vm
mv "$R/snapshots/a" vm.good
ln -s "$T/out-vm" "$R/snapshots/a"
refuses 'snapshots/a: a symlink' backup
refuses 'snapshots/a: not a VM folder (a symlink)' "$V" --repo "$R" gc
refuses 'snapshots/a: not a VM folder (a symlink)' "$V" --repo "$R" prune --keep-last 1
refuses 'snapshots/a: a symlink' "$V" --repo "$R" snapshots --vm a
untouched out-vm
rm "$R/snapshots/a"; mv vm.good "$R/snapshots/a"

# ---- one snapshot's folder is a symlink to a copy of itself ----------------------------
cp -a "$S1" s1.copy
mv "$S1" s1.good
ln -s "$T/s1.copy" "$S1"
refuses "$id1: .*a symlink" "$V" --repo "$R" show "$id1"
refuses "$id1: .*a symlink" "$V" --repo "$R" gc
refuses "$id1: .*a symlink" "$V" --repo "$R" prune --keep-last 1
[ -e s1.copy/index.json ] || fail "prune or gc removed a snapshot folder outside the repository"
rm "$S1"; mv s1.good "$S1"
ok "snapshots/, snapshots/VM and a snapshot's folder as symlinks: refused, nothing written outside"

# ---- chunks/ and chunks/ab are symlinks ---------------------------------------------------
mkdir out-chunks
mv "$R/chunks" chunks.good
ln -s "$T/out-chunks" "$R/chunks"
refuses 'chunks: a symlink' backup
refuses 'chunks: a symlink' "$V" --repo "$R" verify
untouched out-chunks
rm "$R/chunks"; mv chunks.good "$R/chunks"
# a fresh repository whose every fan-out folder is a symlink: any chunk would go there
R2="$T/repo2"
"$V" --repo "$R2" init --format 1 >/dev/null
mkdir out-fan
for i in $(seq 0 255); do ln -s "$T/out-fan" "$R2/chunks/$(printf %02x "$i")"; done
refuses 'chunks/[0-9a-f][0-9a-f]: a symlink' "$V" --repo "$R2" backup-disk --vm a --name d --format raw a.raw
untouched out-fan
[ "$("$V" --repo "$R2" snapshots --json | json_len)" = 0 ] || fail "a snapshot was committed without its chunks"
ok "chunks/ and chunks/ab as symlinks: no chunk written outside"

# ---- lock is a dangling symlink -----------------------------------------------------------
mkdir out-lock
mv "$R/lock" lock.good
ln -s "$T/out-lock/lock" "$R/lock"
refuses 'lock: a symlink' backup
refuses 'lock: a symlink' "$V" --repo "$R" gc
[ ! -e out-lock/lock ] || fail "the lock file was created outside the repository"
rm "$R/lock"; mv lock.good "$R/lock"
ok "lock as a dangling symlink: refused, nothing created outside"

# ---- a leftover that is a symlink: gc removes the link, never what it points at --------------
mkdir -p out-left/keep
echo precious > out-left/keep/file
ln -s "$T/out-left/keep" "$R/snapshots/a/.tmp-123-abc"
"$V" --repo "$R" gc >/dev/null || fail "gc with a leftover symlink"
[ ! -L "$R/snapshots/a/.tmp-123-abc" ] && [ -e out-left/keep/file ] || fail "gc and a leftover symlink"
ok "gc removes a leftover symlink, not its target"

# ---- names with terminal escapes: shown escaped ---------------------------------------------
mkdir "$R/snapshots/x$(printf '\033')[2Jy"
rc=0; "$V" --repo "$R" verify > v.out 2>&1 || rc=$?
[ "$rc" = 1 ] || { cat v.out; fail "verify exit $rc with a stray folder"; }
grep -q 'snapshots/x\\033\[2Jy' v.out || { cat -A v.out; fail "verify does not name the stray folder escaped"; }
! grep -q "$(printf '\033')" v.out || { cat -A v.out; fail "verify printed a raw escape sequence"; }
refuses 'snapshots/x\\033\[2Jy' "$V" --repo "$R" gc
! grep -q "$(printf '\033')" "$T/err" || fail "gc printed a raw escape sequence"
rmdir "$R/snapshots/x$(printf '\033')[2Jy"

"$V" --repo "$R" verify >/dev/null || fail "verify after the damage was undone"
"$V" --repo "$R" restore-disk "$id1" --to a.back >/dev/null
cmp a.raw a.back || fail "restore after the tampering was undone"
ok "a tampered repository: clear errors, no crash, nothing read or written outside"
