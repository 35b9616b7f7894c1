#!/usr/bin/env bash
# A version 1 repository as vbackupd and vbackupctl wrote it when format 1
# was current (tests/fixtures/v1-repo.tar.gz, made by
# tests/fixtures/make-v1-repo.py) is still read: verify passes, every
# snapshot is listed, each files snapshot restores to the tree it was taken
# of and the disk snapshot to the image's bytes; copied into an encrypted
# version 2 repository, the copies restore the same.
. "$(dirname "$0")/../lib.sh"

FIX="$SRC/tests/fixtures"
EXP="$FIX/v1-repo.expected.json"
LIST="$FIX/tree-listing.py"
cd "$T"
mkdir v1
tar -C v1 -xzf "$FIX/v1-repo.tar.gz"

"$V" --repo v1 --quiet verify || fail "verify of the fixture (every chunk read)"
got=$("$V" --repo v1 snapshots --json | python3 -c \
    'import json,sys; print(" ".join(sorted(s["id"] for s in json.load(sys.stdin))))')
want=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1]));
print(" ".join(sorted([f["snapshot"] for f in d["files"]] + [k["snapshot"] for k in d["disks"]])))' "$EXP")
[ "$got" = "$want" ] || fail "the fixture lists '$got', not '$want'"
ok "the fixture verifies and lists its $(echo "$want" | wc -w) snapshots"

# check REPO LABEL: each snapshot of the fixture restored from REPO equals its source
check() {
    local repo=$1 label=$2 n=0 id sum
    for id in $(python3 -c 'import json,sys; print(" ".join(f["snapshot"] for f in json.load(open(sys.argv[1]))["files"]))' "$EXP"); do
        rm -rf out
        "$V" --repo "$repo" --quiet restore-files "$id" --to out || fail "$label: restore-files $id"
        python3 "$LIST" out etc srv > got.json
        python3 - "$EXP" "$id" got.json "$label" <<'PY' || fail "$label: $id restores another tree"
import json, sys
exp = {f["snapshot"]: f["tree"] for f in json.load(open(sys.argv[1]))["files"]}[sys.argv[2]]
got = json.load(open(sys.argv[3]))
for p in sorted(set(exp) | set(got)):
    if exp.get(p) != got.get(p):
        print(f"{sys.argv[4]}: {sys.argv[2]}: {p}: expected {exp.get(p)}, restored {got.get(p)}")
        sys.exit(1)
PY
        n=$((n + 1))
    done
    for id in $(python3 -c 'import json,sys; print(" ".join(k["snapshot"] for k in json.load(open(sys.argv[1]))["disks"]))' "$EXP"); do
        "$V" --repo "$repo" --quiet restore-disk "$id" --to disk.raw || fail "$label: restore-disk $id"
        sum=$(python3 -c 'import json,sys; print({k["snapshot"]: k["sha256"] for k in json.load(open(sys.argv[1]))["disks"]}[sys.argv[2]])' "$EXP" "$id")
        [ "$(sha256sum < disk.raw | cut -d' ' -f1)" = "$sum" ] || fail "$label: $id restores other bytes"
        rm -f disk.raw
        n=$((n + 1))
    done
    ok "$label: $n snapshots restore what was backed up"
}
check v1 "format 1"

echo "a password for the copy" > pw
VBACKUP_PASSWORD_FILE=pw v2_copy_of v1 v2 --encryption aes-256-gcm
export VBACKUP_PASSWORD_FILE=pw
"$V" --repo v2 --quiet verify --read-data || fail "verify of the copy"
check v2 "its format 2 copy"
