#!/usr/bin/env bash
# gc and prune are fail-safe, verify says what it cannot read: a deleted,
# truncated, unreadable or unknown snapshot index, a renamed snapshot folder,
# stray entries in snapshots/, a listing error (readdir failing, injected by
# an LD_PRELOAD shim) and a chunk fan-out folder that cannot be opened or
# listed.  Each time gc and prune remove nothing and name the cause, and
# verify exits 1 naming the snapshot.  Once the damage is undone, gc removes
# the garbage that was there all along.
source "$(dirname "$0")/../lib.sh"
: "${VB_READDIR_FAULT:?VB_READDIR_FAULT must point at the readdir fault shim (meson sets it)}"
cd "$T"
R="$T/repo"
"$V" --repo "$R" init --format 1 >/dev/null

rand_mib a.raw 12
ida1=$("$V" --repo "$R" backup-disk --vm a --name d --format raw a.raw | last_line)
dd if=/dev/urandom of=a.raw bs=1M count=4 seek=4 conv=notrunc status=none
ida2=$("$V" --repo "$R" backup-disk --vm a --name d --format raw a.raw | last_line)
# garbage: the chunks of a snapshot that prune removes
rand_mib j1.raw 8
rand_mib j2.raw 4
idj1=$("$V" --repo "$R" backup-disk --vm junk --name j --format raw j1.raw | last_line)
"$V" --repo "$R" backup-disk --vm junk --name j --format raw j2.raw >/dev/null
python3 - "$R" "$idj1" > garbage <<'PY'
import os, sys
repo, dead = sys.argv[1], sys.argv[2]
def ids(sid):
    f = open(f"{repo}/snapshots/{sid}/disk.fidx", "rb").read()
    return {f[i:i + 32].hex() for i in range(64, len(f), 32)} - {"00" * 32}
live = set()
for vm in os.listdir(f"{repo}/snapshots"):
    for t in os.listdir(f"{repo}/snapshots/{vm}"):
        if f"{vm}/{t}" != dead:
            live |= ids(f"{vm}/{t}")
for x in sorted(ids(dead) - live):
    print(x)
PY
"$V" --repo "$R" prune --vm junk --keep-last 1 >/dev/null
[ "$(wc -l < garbage)" -ge 1 ] || fail "no garbage to protect (test broken)"
# a fan-out folder that holds live chunks and no garbage
fan=$(python3 - "$R" garbage <<'PY'
import os, sys
repo = sys.argv[1]
dead = {x[:2] for x in open(sys.argv[2]).read().split()}
print(next(d for d in sorted(os.listdir(f"{repo}/chunks")) if d not in dead))
PY
)

nchunks() { find "$R/chunks" -type f | wc -l; }
nsnaps() { find "$R/snapshots" -mindepth 2 -maxdepth 2 | wc -l; }

# gc_refuses PATTERN [VAR=VALUE...]: gc exits 1 naming the cause, nothing removed
gc_refuses() {
    local pat="$1"; shift
    local before; before=$(nchunks)
    expect_fail "$pat" env "$@" "$V" --repo "$R" gc
    grep -q "nothing removed" "$T/err" || { cat "$T/err" >&2; fail "gc does not say that it removed nothing ($pat)"; }
    [ "$(nchunks)" = "$before" ] || fail "gc removed chunks although: $pat"
}
# prune_refuses PATTERN [VAR=VALUE...]
prune_refuses() {
    local pat="$1"; shift
    local before; before=$(nsnaps)
    expect_fail "$pat" env "$@" "$V" --repo "$R" prune --keep-last 1
    grep -q "nothing removed" "$T/err" || { cat "$T/err" >&2; fail "prune does not say that it removed nothing ($pat)"; }
    [ "$(nsnaps)" = "$before" ] || fail "prune removed snapshots although: $pat"
}
# verify_damaged PATTERN [VAR=VALUE...]: verify exits 1 and names it
verify_damaged() {
    local pat="$1"; shift
    local rc=0
    env "$@" "$V" --repo "$R" verify > v.out 2>&1 || rc=$?
    [ "$rc" = 1 ] || { cat v.out; fail "verify exit $rc, expected 1 ($pat)"; }
    grep -q "DAMAGED" v.out && grep -q -- "$pat" v.out || { cat v.out; fail "verify does not report: $pat"; }
}
# all three on the current damage
refused() {
    gc_refuses "$@"
    prune_refuses "$@"
    verify_damaged "$@"
}

S1="$R/snapshots/$ida1"
# ---- the index of a snapshot: deleted, truncated, unreadable, unknown -----------
mv "$S1/index.json" index.good
refused "$ida1: index.json is missing"
head -c 100 index.good > "$S1/index.json"
refused "$ida1: index.json is damaged"
sed 's/"type": *"disk"/"type": "tape"/' index.good > "$S1/index.json"
refused "$ida1: unknown type"
rm "$S1/index.json"; mkdir "$S1/index.json"
refused "$ida1: read .*index.json: Is a directory"
rmdir "$S1/index.json"; mv index.good "$S1/index.json"
cp "$S1/disk.fidx" fidx.good
head -c 100 fidx.good > "$S1/disk.fidx"
gc_refuses "$ida1: disk.fidx is damaged"
verify_damaged "$ida1: disk.fidx is damaged"
rm "$S1/disk.fidx"
gc_refuses "$ida1: .*disk.fidx"
verify_damaged "$ida1: .*disk.fidx"
mv fidx.good "$S1/disk.fidx"
ok "deleted, truncated, unreadable and unknown indexes: nothing removed, verify says damaged"

# ---- renamed snapshot folders and stray entries --------------------------------
mv "$S1" "$S1.old"
refused "${ida1}.old: not a snapshot"
mv "$S1.old" "$S1"
t2="${ida1#a/}-7"
mv "$S1" "$R/snapshots/a/$t2"          # still looks like an id, but index.json says otherwise
refused "a/$t2: index.json belongs to snapshot $ida1"
mv "$R/snapshots/a/$t2" "$S1"
mkdir "$R/snapshots/old copy"; cp -a "$S1" "$R/snapshots/old copy/"
refused "snapshots/old copy: not a VM folder"
rm -rf "$R/snapshots/old copy"
echo "notes" > "$R/snapshots/notes.txt"
refused "snapshots/notes.txt: not a VM folder"
rm "$R/snapshots/notes.txt"
echo "notes" > "$R/snapshots/a/README"
refused "a/README: not a snapshot"
rm "$R/snapshots/a/README"
ok "renamed folders and stray entries: nothing removed, verify says damaged"

# ---- listing errors: readdir fails (not the end of a folder) -------------------
# (a sanitizer build wants its runtime first; the shim comes first here)
shim=(LD_PRELOAD="$VB_READDIR_FAULT" ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0")
refused "snapshots/a: .*Input/output error" "${shim[@]}" VB_FAULT_READDIR=/snapshots/a
refused "snapshots: .*Input/output error" "${shim[@]}" VB_FAULT_READDIR=/snapshots
ok "listing errors in snapshots/: nothing removed, verify says damaged"

# ---- chunk folders: one that cannot be opened, one that cannot be listed --------
mv "$R/chunks/$fan" fan.good
echo "not a folder" > "$R/chunks/$fan"
gc_refuses "chunks/$fan: Not a directory"
rm "$R/chunks/$fan"; mv fan.good "$R/chunks/$fan"
gc_refuses "chunks/$fan: .*Input/output error" "${shim[@]}" VB_FAULT_READDIR="/chunks/$fan"
gc_refuses "chunks: .*Input/output error" "${shim[@]}" VB_FAULT_READDIR=/chunks
ok "chunk folders that cannot be opened or listed: gc removes nothing"

# ---- undone: the repository is whole, and gc frees the garbage -----------------
"$V" --repo "$R" verify >/dev/null || fail "verify after the damage was undone"
"$V" --repo "$R" gc --json > g.json
[ "$(json_get '["chunks_removed"]' < g.json)" = "$(wc -l < garbage)" ] || { cat g.json; fail "gc did not remove exactly the garbage"; }
"$V" --repo "$R" verify >/dev/null || fail "verify after gc"
"$V" --repo "$R" restore-disk "$ida2" --to a.back >/dev/null
cmp a.raw a.back || fail "restore after gc differs"
ok "gc, prune and verify are fail-safe"
