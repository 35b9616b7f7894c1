#!/usr/bin/env bash
# Version 2 repositories from vbackupctl, as a user meets them: init with
# encryption (password from a file, never argv), copy of a version 1
# repository's disk snapshots (the same ids, chunks the target has are not
# stored again, a second copy changes nothing), the list, restore-disk equal
# byte for byte to version 1's restore of the same snapshot (holes kept),
# verify --read-data, and a flipped byte in a pack or a manifest named by
# verify.  Files snapshots (catalogs of version 1 and 2, written by
# mkfilesnap.py) copied into an encrypted and an unencrypted repository: listed
# and shown with their entries and bytes, read back through the door by
# v2-files-check (the catalog parses, every chunk it names is there with its
# length and in the chunks stream, the content equal to what was backed up)
# and restored by restore-files equal field by field to version 1's restore,
# a second copy storing nothing, verify --read-data clean, and gc repacking a
# pack they share with a forgotten snapshot without losing a chunk.  Wrong
# and missing passwords, commands not there yet on v2, and copies into a
# version 1 repository give clear errors (copies between version 2 ones:
# repo-v2-copy2.sh).
source "$(dirname "$0")/../lib.sh"
requires qemu-img
requires qemu-io
cd "$T"
V1="$T/v1"
V2="$T/v2"
"$V" --repo "$V1" init --format 1 >/dev/null

# a disk with data, a hole and a zero run; an incremental of it; and the same
# disk in a dedup group of its own
copy_disk_sources "$V1"

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

# --- files snapshots ----------------------------------------------------------------
# Three written straight into version 1 (mkfilesnap.py): "old" (catalog
# version 1) holds big's data and data of its own; "tree" (version 1: files
# of several sizes, one of several chunks, a file naming another's chunks, a
# hard link, a symlink, folders, a fifo); "fine" (catalog version 2, dedup
# group t1: attributes, written zeros, a hole, preallocated ranges, a hard
# link).  "old" is copied first, so the chunks "tree" shares with it lie in
# its pack: once it is forgotten, gc repacks that pack and must keep what
# tree's chunks stream lists.
MK="$SRC/tests/engine/mkfilesnap.py"
CHECK="${VB_V2_FILES_CHECK:?meson sets VB_V2_FILES_CHECK}"
cat > old.json <<'EOF'
{"vm": "fs", "time": "2026-01-01T10:00:00Z", "roots": ["/srv"],
 "entries": [
  {"path": "srv", "type": "dir"},
  {"path": "srv/big", "type": "reg", "data_rand": 2621440, "data_seed": 1, "chunk_size": 1048576},
  {"path": "srv/own", "type": "reg", "data_rand": 6291456, "data_seed": 2, "chunk_size": 1048576}
 ]}
EOF
cp "$SRC/tests/engine/specs/copy-tree.json" tree.json
cp "$SRC/tests/engine/specs/copy-fine.json" fine.json
old=$(python3 "$MK" "$V1" old.json)
tree=$(python3 "$MK" "$V1" tree.json)
fine=$(python3 "$MK" "$V1" fine.json)

# files_check REPO ID SPEC: the snapshot read back through the door
# (v2-files-check: the catalog parses, every chunk it names is there with its
# length, the chunks stream lists them all) is the tree of SPEC, byte for byte
files_check() {
    "$CHECK" "$1" "$2" > check.json || fail "v2-files-check $2 in $1"
    python3 - "$MK" "$3" check.json <<'PY' || fail "$2 in $1 is not the tree backed up"
import hashlib, importlib.util, json, sys
spec_ = importlib.util.spec_from_file_location("mk", sys.argv[1])
mk = importlib.util.module_from_spec(spec_)
spec_.loader.exec_module(mk)
spec, got = json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
ents = {e["path"]: e for e in spec["entries"]}

def content(e):
    """(bytes, written zeros) of a regular file, as a restore would write it"""
    if "hardlink" in e:
        data, zeros = content(ents[e["hardlink"]])
    elif "reuse" in e:
        data, zeros = content(ents[e["reuse"]])
    elif "layout" in e:
        data, zeros = bytearray(), 0
        for off, d, ln in mk.pieces(e):
            data[len(data):] = bytes(off - len(data))
            data += d if d is not None else bytes(ln)
            zeros += ln if d is None else 0
        data = bytes(data)
    else:
        data, zeros = mk.entry_data(e), 0
    size = e.get("size", len(data))
    return data[:size] + bytes(max(0, size - len(data))), min(zeros, size)

holder = lambda e: ents[e["hardlink"]] if "hardlink" in e else e
want_bytes = 0
assert set(got["tree"]) == set(ents), (sorted(got["tree"]), sorted(ents))
for p, e in ents.items():
    g = got["tree"][p]
    want = {"type": mk.TYPES[e["type"]], "mode": e.get("mode", 0o755 if e["type"] == "dir" else 0o644),
            "uid": e.get("uid", 0), "gid": e.get("gid", 0),
            "mtime_ns": e.get("mtime_ns", 1_700_000_000_123_456_789),
            "xattrs": {**{k: v.encode().hex() for k, v in e.get("xattrs", {}).items()},
                       **e.get("xattrs_hex", {})},
            "ranges": holder(e).get("ranges", [])}
    if "link" in e:
        want["link"] = e["link"]
    if "hardlink" in e:
        want["hardlink"] = e["hardlink"]
    if e["type"] == "reg":
        data, zeros = content(e)
        want.update(size=len(data), sha256=hashlib.sha256(data).hexdigest(), zeros=zeros)
        want_bytes += len(data)
    else:
        want["size"] = 0
    assert g == want, (p, g, want)
assert got["entries"] == len(ents) and got["bytes"] == want_bytes, (got["entries"], got["bytes"])
PY
}

# files_copied REPO: what a user checks of the copied files snapshots
files_copied() {
    local r=$1
    "$V" --repo "$r" snapshots --json > list.json
    for s in "$old" "$tree" "$fine"; do
        "$V" --repo "$r" show "$s" --json > show.json || fail "show $s in $r"
        python3 - list.json show.json "$V1/snapshots/$s/index.json" "$s" <<'PY' || fail "$s in $r: $(cat show.json)"
import json, sys
lst, show, v1 = (json.load(open(a)) for a in sys.argv[1:4])
sid = sys.argv[4]
lst = {s["id"]: s for s in lst}
assert lst[sid]["type"] == "files" and lst[sid]["size"] == v1["bytes"], lst[sid]
assert lst[sid].get("dedup_group") == v1.get("dedup_group"), lst[sid]
f = show["files"]
assert show["id"] == sid and show["type"] == "files", show
assert f["entries"] == v1["catalog"]["entries"] == v1["files"], (f, v1)
assert f["bytes"] == v1["bytes"], (f, v1)
assert f["roots"] == v1["roots"], (f, v1)
assert show["group"] == v1["group"] and show["mode"] == v1["mode"], show
assert show["source"] == {"copied_from": sid, "copied_from_format": 1}, show
assert show["streams"]["chunks"]["length"] > 0 and show["streams"]["catalog"]["length"] > 0
PY
    done
    files_check "$r" "$old" old.json
    files_check "$r" "$tree" tree.json
    files_check "$r" "$fine" fine.json
    for s in "$old" "$tree" "$fine"; do restored_same "$r" "$s"; done
}

# restored_same REPO ID: restore-files of ID from REPO (version 2, through
# the snapshot door) makes the same tree as from version 1, field by field:
# types, modes, sizes, link counts, times, link targets, bytes, extended
# attributes and allocated blocks (holes stay holes)
restored_same() {
    rm -rf "$T/ra" "$T/rb"
    "$V" --repo "$V1" --quiet restore-files "$2" --to "$T/ra" --xattrs=all || fail "restore-files $2 from v1"
    "$V" --repo "$1" --quiet restore-files "$2" --to "$T/rb" --xattrs=all || fail "restore-files $2 from $1"
    trees_same "$T/ra" "$T/rb" || fail "restore-files $2 from $1 differs from version 1's"
}

# files_gc REPO: old forgotten, gc repacks its pack; tree keeps every chunk
files_gc() {
    local r=$1
    "$V" --repo "$r" forget "$old" > /dev/null || fail "forget $old in $r"
    "$V" --repo "$r" gc --json > gc.json || fail "gc of $r"
    python3 -c "import json,sys; g=json.load(open('gc.json')); sys.exit(not (g['blobs_repacked'] > 0 and g['packs_deleted'] > 0))" \
        || fail "gc of $r did not repack the pack tree shares with old: $(cat gc.json)"
    "$V" --repo "$r" verify --read-data > out || { cat out; fail "verify --read-data of $r after gc"; }
    grep -q " read: ok" out || fail "verify after gc: $(cat out)"
    files_check "$r" "$tree" tree.json
    files_check "$r" "$fine" fine.json
    "$V" --repo "$r" gc --json > gc.json || fail "a second gc of $r"
    python3 -c "import json,sys; g=json.load(open('gc.json')); sys.exit(g['packs_deleted'] != 0 or g['blobs_repacked'] != 0)" \
        || fail "a second gc of $r found more: $(cat gc.json)"
}

# encrypted: the disk snapshots are there already
"$V" copy --from "$V1" --to "$V2" > out || { cat out; fail "copy of the files snapshots"; }
grep -q "^$old -> $old " out && grep -q "^$tree -> $tree " out && grep -q "^$fine -> $fine " out \
    || fail "copy of files snapshots: $(cat out)"
[ "$(grep -n "^$old -> " out | cut -d: -f1)" -lt "$(grep -n "^$tree -> " out | cut -d: -f1)" ] \
    || fail "old was not copied before tree: $(cat out)"
grep -q "copy: 3 copied, 3 already there, 0 failed" out || fail "copy's summary: $(cat out)"
# tree's big file is in old already; fine's is in another dedup group
grep "^$tree -> " out | grep -qE "\(([0-9.]+ (B|KiB)|1\.[0-9]+ MiB) new in the target\)" \
    || fail "tree's copy stored chunks old brought: $(cat out)"
files_before=$(find "$V2" -type f | sort | md5sum)
"$V" copy --from "$V1" --to "$V2" > out || fail "a second copy"
grep -q "copy: 0 copied, 6 already there, 0 failed" out || fail "a second copy: $(cat out)"
[ "$(find "$V2" -type f | sort | md5sum)" = "$files_before" ] || fail "a second copy changed the target"
"$V" --repo "$V2" verify --read-data > out || { cat out; fail "verify of the files copies"; }
grep -q "verify: 6 snapshots, .* read: ok" out || fail "verify's summary: $(cat out)"
files_copied "$V2"
files_gc "$V2"
# unencrypted: everything at once
v2_copy_of "$V1" "$T/v2n" --encryption none
files_copied "$T/v2n"
files_gc "$T/v2n"
# a chunk missing from version 1: that snapshot fails, named with the file,
# nothing of it is committed, the others are copied
"$V" --repo v1bad init --format 1 >/dev/null
lost=$(python3 "$MK" v1bad tree.json)
fine2=$(python3 "$MK" v1bad fine.json)
gone=$(python3 -c "import hashlib,random; print(hashlib.sha256(random.Random(8).randbytes(1048577)[:1048576]).hexdigest())")
rm "v1bad/chunks/${gone:0:2}/$gone"
"$V" --repo v2bad --quiet init --format 2 --encryption none
rc=0; "$V" copy --from v1bad --to v2bad > out 2> err || rc=$?
[ "$rc" = 1 ] && grep -q "^vbackupctl: $lost: 'srv/two': chunk at 0: " err && grep -q "^$fine2 -> " out     && grep -q "copy: 1 copied, 0 already there, 1 failed" out || fail "a missing chunk: exit $rc: $(cat out err)"
"$V" --repo v2bad snapshots --json | python3 -c "import json,sys; assert [s['id'] for s in json.load(sys.stdin)] == [sys.argv[1]]" "$fine2"     || fail "a failed copy left a snapshot"
ok "version 2: files snapshots copied (catalogs of version 1 and 2), verified, kept by gc"

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

# --- repair, what is not there yet, and copies the wrong way round -----------------------
rc=0; "$V" --repo "$V2" restore-files "$full" --to rf > out 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q "is a disk snapshot" out || fail "restore-files of a disk snapshot on v2: exit $rc: $(cat out)"
# repair: a lost index is rebuilt from the packs' own trailers
mkdir index.good && cp -a "$V2/index/." index.good/
find "$V2/index" -type f -delete
rc=0; "$V" --repo "$V2" verify > out 2>&1 || rc=$?
[ "$rc" = 1 ] || { cat out; fail "verify without an index: exit $rc"; }
"$V" --repo "$V2" repair > out 2>&1 || { cat out; fail "repair of a lost index"; }
grep -q "index rebuilt from [1-9][0-9]* packs" out || fail "repair's summary: $(cat out)"
"$V" --repo "$V2" verify --read-data > out 2>&1 || { cat out; fail "verify after repair"; }
rc=0; "$V" --repo "$V2" repair --dry-run > out 2>&1 || rc=$?
[ "$rc" = 2 ] && grep -q "no --dry-run" out || fail "repair --dry-run: exit $rc: $(cat out)"
rc=0; "$V" copy --from "$V2" --to "$V1" > out 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q "$V1 is not a version 2 repository" out || fail "copy from v2 into v1: $(cat out)"
mkdir v1b && "$V" --repo v1b init --format 1 >/dev/null
rc=0; "$V" copy --from "$V1" --to v1b > out 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q "is not a version 2 repository" out || fail "copy to v1: $(cat out)"
ok "version 2: init, copy, snapshots, restore-disk, verify"
