#!/usr/bin/env bash
# vbackupctl restore-files and ls against hostile catalogs.  A files
# snapshot's catalog comes from a guest: its names, link targets, types,
# owners and modes are the guest's to choose.  Snapshots are written
# straight into the repository by mkfilesnap.py, as a guest could make
# vbackupd write them (format 2, run by meson too: written into a version 1
# repository and copied in, lib.sh's files_snap).  Each case states what
# must hold, on either format:
#  * nothing is created, changed or linked outside --to DIR: not through a
#    symlink the catalog made earlier in the same restore, not through one
#    already in DIR, not by a hard link to a file outside the restored set;
#  * device nodes, setuid/setgid bits and foreign owners only on request
#    (--devices, --same-owner), and the summary says what was left out;
#  * ls escapes names and link targets, shows symlink sizes and times
#    before 1970 with their fraction;
#  * a snapshot of / restores; a failure (ENOSPC, a missing chunk) is
#    reported with its path and the real reason at the end, the rest is
#    restored, no partial file is left under its final name, and folders
#    get their modes and times also when the restore stops early (SIGINT).
source "$(dirname "$0")/../lib.sh"
requires python3
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (device nodes, owners, a small tmpfs)"; exit 77; }
requires setpriv
cd "$T"
R="$T/repo"
repo_init "$R"
# snap: a snapshot from the JSON spec on stdin (one second later than the
# last one) in $R; prints its id
snap() {
    local n=$(($(cat count 2>/dev/null || echo 0) + 1))
    echo $n > count
    python3 -c "import json,sys; s=json.load(sys.stdin); s.setdefault('time', '2026-01-01T00:00:%02dZ' % $n); json.dump(s, sys.stdout)" > "spec$n.json"
    files_snap "$R" "spec$n.json"
}
# restore ID [ARGS...]: restore-files into $D; output in out/err, status in rc
restore() {
    rc=0
    "$V" --repo "$R" restore-files "$@" >out 2>err || rc=$?
    [ "$rc" -le 1 ] || [ "$rc" = 3 ] || { cat err; fail "restore-files exited $rc (crash?)"; }
}
empty() { [ -z "$(ls -A "$1")" ] || { ls -laR "$1"; fail "$2"; }; }
has() { grep -q -- "$2" "$1" || { cat out err; fail "$3"; }; }

# ---- a symlink made by the catalog, then entries through it -------------------
catalog_symlink() {
    mkdir outside
    id=$(snap <<EOF
{"roots": ["a"], "entries": [
  {"path": "a", "type": "dir"},
  {"path": "a/abs", "type": "symlink", "link": "$T/outside"},
  {"path": "a/abs/x", "type": "reg", "data": "through an absolute link\n"},
  {"path": "a/abs/sub", "type": "dir"},
  {"path": "a/abs/sub/y", "type": "reg", "data": "deeper\n"},
  {"path": "a/rel", "type": "symlink", "link": "../../outside"},
  {"path": "a/rel/z", "type": "reg", "data": "through a relative link\n"},
  {"path": "a/rel/dev", "type": "fifo"},
  {"path": "a/rel/l", "type": "symlink", "link": "/etc/passwd"},
  {"path": "a/ok", "type": "reg", "data": "a good file after the bad ones\n"},
  {"path": "a/zz", "type": "dir"},
  {"path": "a/zz/last", "type": "reg", "data": "last\n"}]}
EOF
    )
    D="$T/d1"
    restore "$id" --to "$D"
    empty outside "the restore wrote through a symlink it had just made"
    [ "$rc" = 3 ] || fail "refused entries, but exit status $rc"
    has err "/a/abs/x: .*not a directory" "no error for the entry under the symlink"
    has err "/a/rel/z: .*not a directory" "no error for the entry under the relative symlink"
    [ -L "$D/a/abs" ] && [ "$(readlink "$D/a/abs")" = "$T/outside" ] || fail "the symlink itself is not restored"
    [ "$(cat "$D/a/ok")" = "a good file after the bad ones" ] && [ -f "$D/a/zz/last" ] ||
        fail "the good entries after the refused ones are missing"
    ok "a symlink made by the catalog is never followed"
}

# ---- symlinks already in the destination ------------------------------------------
planted_symlink() {
    mkdir outside2 outside3
    echo "host file" > outside3/target
    id=$(snap <<EOF
{"roots": ["c", "top"], "entries": [
  {"path": "c", "type": "dir", "mode": 448},
  {"path": "c/f", "type": "reg", "data": "into c\n"},
  {"path": "c/file", "type": "reg", "data": "replaces a symlink to a host file\n", "mode": 438},
  {"path": "top/deeper/t", "type": "reg", "data": "below a missing parent\n"}]}
EOF
    )
    D="$T/d2"
    mkdir -p "$D"
    ln -s "$T/outside2" "$D/c"
    ln -s "$T/outside2" "$D/top"
    restore "$id" --to "$D"
    empty outside2 "the restore wrote through a symlink that was in the destination"
    [ "$(cat outside3/target)" = "host file" ] && [ "$(stat -c %a outside3/target)" = 644 ] ||
        fail "a host file behind a symlink was changed"
    [ -d "$D/c" ] && [ ! -L "$D/c" ] && [ "$(cat "$D/c/f")" = "into c" ] ||
        fail "a symlink where the snapshot has a folder was not replaced by the folder"
    [ "$rc" = 3 ] && has err "/top/deeper/t: .*symlink" "a symlink above a restored path is not reported"
    ok "symlinks already in the destination are never followed"
    D="$T/d2b"
    mkdir -p "$D/c"
    ln -s "$T/outside3/target" "$D/c/file"
    restore "$id" c --to "$D"
    [ "$rc" = 0 ] || { cat err; fail "restore over a planted symlink failed"; }
    [ "$(cat outside3/target)" = "host file" ] && [ "$(stat -c %a outside3/target)" = 644 ] ||
        fail "restoring a file over a symlink changed the host file it pointed at"
    [ -f "$D/c/file" ] && [ ! -L "$D/c/file" ] || fail "the planted symlink was not replaced"
    ok "a file replaces a planted symlink instead of writing through it"
}

# ---- hard links ------------------------------------------------------------------------
hard_links() {
    id=$(snap <<EOF
{"roots": ["m", "sub", "s"], "entries": [
  {"path": "m", "type": "reg", "data": "the guest's file\n"},
  {"path": "s", "type": "symlink", "link": "/etc/shadow"},
  {"path": "sub", "type": "dir"},
  {"path": "sub/l", "type": "reg", "hardlink": "m", "mode": 438, "uid": 4242},
  {"path": "sub/ls", "type": "reg", "hardlink": "s", "mode": 438},
  {"path": "sub/ok", "type": "reg", "data": "ok\n"}]}
EOF
    )
    D="$T/d3"
    mkdir -p "$D"
    echo "host secret" > "$D/m"
    chmod 600 "$D/m"
    restore "$id" sub --to "$D"
    [ "$(cat "$D/m")" = "host secret" ] && [ "$(stat -c '%a %h %u' "$D/m")" = "600 1 0" ] ||
        fail "a hard link of the catalog reached a file that was already in the destination ($(stat -c '%a %h %u' "$D/m"))"
    [ "$(cat "$D/sub/l")" = "the guest's file" ] || fail "the link outside the selection is not restored as a file"
    [ ! -e "$D/sub/ls" ] && [ "$rc" = 3 ] && has err "/sub/ls: .*hard link" "a hard link to a symlink is not refused"
    D="$T/d3b"
    restore "$id" --to "$D"
    [ "$(stat -c %i "$D/m")" = "$(stat -c %i "$D/sub/l")" ] || fail "a hard link inside the restored set is not a link"
    ok "hard links only to files restored by the same run"
}

# ---- device nodes, setuid/setgid, foreign owners ---------------------------------------
devices_owners() {
    id=$(snap <<EOF
{"roots": ["dev", "bin"], "entries": [
  {"path": "bin", "type": "dir", "uid": 1234, "gid": 5678},
  {"path": "bin/su", "type": "reg", "mode": 2541, "data": "#!/bin/sh\n", "uid": 0},
  {"path": "bin/wall", "type": "reg", "mode": 1517, "data": "#!/bin/sh\n", "gid": 5},
  {"path": "bin/mine", "type": "reg", "mode": 420, "uid": 1234, "gid": 5678, "data": "x\n"},
  {"path": "dev", "type": "dir"},
  {"path": "dev/mem", "type": "chr", "mode": 438, "rdev": 257},
  {"path": "dev/sda", "type": "blk", "mode": 438, "rdev": 2048},
  {"path": "dev/fifo", "type": "fifo", "mode": 420},
  {"path": "dev/log", "type": "sock", "mode": 438}]}
EOF
    )
    D="$T/d4"
    restore "$id" --to "$D"
    [ "$rc" = 0 ] || { cat err; fail "a restore without --devices failed"; }
    [ ! -e "$D/dev/mem" ] && [ ! -e "$D/dev/sda" ] || fail "device nodes were created without --devices"
    [ -p "$D/dev/fifo" ] || fail "the fifo is missing"
    [ -S "$D/dev/log" ] || fail "the socket was not restored"
    [ "$(stat -c %a "$D/bin/su")" = 755 ] && [ "$(stat -c %a "$D/bin/wall")" = 755 ] ||
        fail "setuid/setgid bits kept without --same-owner ($(stat -c %a "$D/bin/su") $(stat -c %a "$D/bin/wall"))"
    [ "$(stat -c %u:%g "$D/bin/mine")" = 0:0 ] && [ "$(stat -c %u:%g "$D/bin")" = 0:0 ] ||
        fail "foreign owners were kept without --same-owner"
    has out "2 device nodes" "the summary does not say that device nodes were skipped"
    has out "setuid/setgid" "the summary does not say that setuid/setgid bits were dropped"
    has out "owner" "the summary does not say that owners were not kept"
    D="$T/d4b"
    restore "$id" --to "$D" --devices --same-owner
    [ "$rc" = 0 ] || { cat err; fail "restore with --devices --same-owner"; }
    [ "$(stat -c '%F %t:%T' "$D/dev/mem")" = "character special file 1:1" ] &&
        [ "$(stat -c '%F %t:%T' "$D/dev/sda")" = "block special file 8:0" ] || fail "device nodes with --devices"
    [ "$(stat -c %a "$D/bin/su")" = 4755 ] && [ "$(stat -c %a "$D/bin/wall")" = 2755 ] ||
        fail "setuid/setgid bits with --same-owner"
    [ "$(stat -c %u:%g "$D/bin/mine")" = 1234:5678 ] && [ "$(stat -c %u:%g "$D/bin")" = 1234:5678 ] &&
        [ "$(stat -c %g "$D/bin/wall")" = 5 ] || fail "owners with --same-owner"
    ok "device nodes, setuid/setgid bits and foreign owners only with --devices / --same-owner"
    # not root: the invoking user owns everything; --same-owner needs root.
    # The user reads the repository (and an encrypted one's password) and
    # has a home of its own: setpriv keeps root's $HOME, and a format 2
    # reader keeps its index cache under ~/.cache/vbackup
    chmod 755 "$T"
    chmod -R a+rX "$R"
    [ -z "${VBACKUP_PASSWORD_FILE:-}" ] || chmod 644 "$VBACKUP_PASSWORD_FILE"
    # version 1's readers take a claim through its lock file (format 2 has none)
    [ "$repo_format" = 2 ] || chmod 666 "$R/lock"
    mkdir -m 700 "$T/home65534" && chown 65534:65534 "$T/home65534"
    as_user() { setpriv --reuid=65534 --regid=65534 --clear-groups env HOME="$T/home65534" "$@"; }
    # the user runs a copy of vbackupctl in $T: the checkout may be in a
    # folder only root can enter (a clone into mktemp -d is 0700)
    install -m 755 "$V" "$T/vbackupctl"
    D="$T/d4c"
    mkdir "$D" && chown 65534:65534 "$D"
    rc=0
    as_user "$T/vbackupctl" --repo "$R" restore-files "$id" --to "$D" >out 2>err || rc=$?
    [ "$rc" = 0 ] || { cat err; fail "restore as an ordinary user"; }
    [ "$(stat -c %u:%g "$D/bin/mine")" = 65534:65534 ] || fail "owner of a file restored by an ordinary user"
    rc=0
    as_user "$T/vbackupctl" --repo "$R" restore-files "$id" --to "$D" --same-owner >out 2>err || rc=$?
    [ "$rc" = 1 ] && grep -q "same-owner.*root" err || { cat err; fail "--same-owner as an ordinary user"; }
    ok "an ordinary user's restore: owned by the user; --same-owner refused"
}

# ---- ls: escaped names and targets, symlink sizes, times before 1970 --------------------
ls_escaped() {
    id=$(snap <<'EOF'
{"roots": [""], "entries": [
  {"path": "", "type": "dir"},
  {"path": "evil\n-rw-r--r--      0      0            0 2020-01-01T00:00:00Z /etc/shadow", "type": "reg", "data": "x"},
  {"path": "esc\u001b[31mred", "type": "reg"},
  {"path": "link", "type": "symlink", "link": "target\nlrwxrwxrwx fake", "size": 0},
  {"path": "sp ace -> x", "type": "reg"},
  {"path": "old", "type": "reg", "mtime_ns": -1500000000},
  {"path_hex": "6e6f7475746638ff", "type": "reg"}]}
EOF
    )
    "$V" --repo "$R" ls "$id" > ls.out
    [ "$(wc -l < ls.out)" = 7 ] || { cat -A ls.out; fail "a name forged lines in ls"; }
    grep -qF '/evil\n-rw-r--r--' ls.out || { cat -A ls.out; fail "a newline in a name is not shown as \\n"; }
    grep -qF 'target\nlrwxrwxrwx\ fake' ls.out || { cat -A ls.out; fail "a link target is not escaped"; }
    grep -q $'\e' ls.out && fail "an escape sequence reached the terminal"
    grep -qF '/sp\ ace\ ->\ x' ls.out || { cat -A ls.out; fail "a name containing ' -> ' is not escaped"; }
    grep -qF '/notutf8\377' ls.out || { cat -A ls.out; fail "a byte that is not UTF-8 is not escaped"; }
    grep -E '^l.* 22 [^ ]+ /link -> ' ls.out >/dev/null || { cat -A ls.out; fail "a symlink's size is not its target's length"; }
    grep -qF '1969-12-31T23:59:58.5' ls.out || { cat -A ls.out; fail "a time 1.5 s before 1970 is shown wrong"; }
    ok "ls escapes names and targets, shows symlink sizes and negative fractional times"
}

# ---- a snapshot of / ---------------------------------------------------------------------
root_snapshot() {
    id=$(snap <<'EOF'
{"roots": ["/"], "entries": [
  {"path": "", "type": "dir", "mode": 493, "mtime_ns": 1000000000000000000},
  {"path": "etc", "type": "dir", "mode": 493},
  {"path": "etc/hostname", "type": "reg", "data": "guest\n"},
  {"path": "old", "type": "reg", "data": "old\n", "mtime_ns": -1500000000, "atime_ns": -1}]}
EOF
    )
    D="$T/d5"
    restore "$id" --to "$D"
    [ "$rc" = 0 ] || { cat err; fail "restore of a snapshot of /"; }
    [ "$(cat "$D/etc/hostname")" = guest ] || fail "restore of / lost a file"
    [ "$(stat -c %Y "$D")" = 1000000000 ] || fail "the snapshot's root metadata is not on DIR"
    python3 -c "import os,sys; st=os.stat(sys.argv[1]); sys.exit(st.st_mtime_ns != -1500000000 or st.st_atime_ns != -1)" \
        "$D/old" || fail "times before 1970 are not restored exactly"
    D="$T/d5b"
    restore "$id" / --to "$D"
    [ "$rc" = 0 ] && [ -f "$D/etc/hostname" ] || { cat err; fail "restore-files ID / --to DIR"; }
    ok "a snapshot of / restores"
}

# ---- ENOSPC: the real errno, no partial file, the rest restored --------------------------
enospc() {
    id=$(snap <<'EOF'
{"roots": ["s"], "entries": [
  {"path": "s", "type": "dir", "mode": 365, "mtime_ns": 1200000000000000000},
  {"path": "s/after", "type": "reg", "data": "small, before the big one\n"},
  {"path": "s/big", "type": "reg", "data_rand": 6291456},
  {"path": "s/small", "type": "reg", "data": "small, after the big one\n"}]}
EOF
    )
    D="$T/small"
    restore "$id" --to "$D"
    [ "$rc" = 3 ] || fail "a restore that hit ENOSPC exited $rc"
    has err "/s/big: .*No space left on device" "ENOSPC is not reported with its path and reason"
    [ ! -e "$D/s/big" ] || fail "a partial file was left under its final name"
    [ -z "$(find "$D" -name '.vbrestore*')" ] || fail "a temporary file was left behind"
    [ -f "$D/s/after" ] && [ "$(cat "$D/s/small")" = "small, after the big one" ] ||
        fail "the restore did not go on past the failure"
    [ "$(stat -c '%a %Y' "$D/s")" = "555 1200000000" ] || fail "folder mode and time after a failure: $(stat -c '%a %Y' "$D/s")"
    ok "ENOSPC: reported, no partial file, the rest restored"
}

# ---- a missing chunk; stopping early (SIGINT) keeps folder modes and times --------------
missing_chunk() {
    cat > spec-missing.json <<'EOF'
{"roots": ["q"], "entries": [
  {"path": "q", "type": "dir", "mode": 320, "mtime_ns": 1300000000000000000},
  {"path": "q/broken", "type": "reg", "data": "this chunk will be missing\n"},
  {"path": "q/fine", "type": "reg", "data": "fine\n"}]}
EOF
    if [ "$repo_format" = 1 ]; then
        id=$(snap < spec-missing.json)
        rm -f "$R/chunks/"*/"$(printf 'this chunk will be missing\n' | sha256sum | cut -d' ' -f1)"
    else
        # Format 2 keeps chunks in packs (data/XX/PACK), many to a pack, and
        # loses a pack, not a chunk.  A repository of its own, where a first
        # snapshot stores fine's chunk: the copy of this one then stores
        # only the chunk to lose, in a data pack of its own, whose trailer
        # lists 2 blobs (the salt every pack starts with, and the chunk);
        # its metadata pack lists 3 (the salt, the catalog, the chunk list).
        # The trailer's length is in the pack's plain tail.
        R="$T/repo-missing"
        repo_init "$R"
        snap >/dev/null <<'EOF'
{"vm": "fine", "roots": ["q"], "entries": [{"path": "q", "type": "dir"},
  {"path": "q/fine", "type": "reg", "data": "fine\n"}]}
EOF
        find "$R/data" -type f | sort > packs-before
        id=$(snap < spec-missing.json)
        find "$R/data" -type f | sort | comm -13 packs-before - > packs-new
        pack=$(python3 - "${VB_TEST_ENCRYPTION:-none}" packs-new <<'EOF'
import struct, sys
seal = 4 if sys.argv[1] == "none" else 12 + 16     # CRC-32, or nonce and tag
two = []
for p in open(sys.argv[2]).read().split():
    with open(p, "rb") as f:
        f.seek(-8, 2)
        length, magic = struct.unpack("<I4s", f.read(8))
    assert magic == b"VBPT", p
    if length == 4 + 2 * 52 + seal:
        two.append(p)
print(two[0] if len(two) == 1 else "")
EOF
        )
        [ -n "$pack" ] || { cat packs-new; fail "not one new data pack of 2 blobs"; }
        rm "$pack"
    fi
    D="$T/d7"
    restore "$id" --to "$D"
    [ "$rc" = 3 ] && has err "/q/broken: .*missing from the repository" "a missing chunk is not reported"
    [ ! -e "$D/q/broken" ] && [ -f "$D/q/fine" ] || fail "missing chunk: wrong files in place"
    [ "$(stat -c '%a %Y' "$D/q")" = "500 1300000000" ] || fail "folder mode and time after a missing chunk"
    ok "a missing chunk fails that file only"
}

sigint() {
    python3 - > spec-many.json <<'EOF'
import json
E = [{"path": "w", "type": "dir", "mode": 0o555, "mtime_ns": 1400000000000000000},
     {"path": "w/f000000", "type": "reg", "data": "same content in every file\n"}]
E += [{"path": "w/f%06d" % i, "type": "reg", "reuse": "w/f000000", "size": 27} for i in range(1, 60000)]
E += [{"path": "zlast", "type": "reg", "data": "after w\n"}]
json.dump({"roots": ["w", "zlast"], "time": "2026-01-01T01:00:00Z", "entries": E}, open("/dev/stdout", "w"))
EOF
    id=$(files_snap "$R" spec-many.json)
    D="$T/d8"
    "$V" --repo "$R" restore-files "$id" --to "$D" >out 2>err &
    pid=$!
    for _ in $(seq 200); do [ -e "$D/w/f000100" ] && break; sleep 0.05; done
    kill -INT $pid
    rc=0; wait $pid || rc=$?
    [ -e "$D/w/f059999" ] && fail "the restore finished before SIGINT (make it larger)"
    [ "$rc" = 1 ] && grep -q "interrupted" err || { cat err; fail "SIGINT: exit $rc"; }
    [ ! -e "$D/zlast" ] || fail "the restore went on after SIGINT"
    [ "$(stat -c '%a %Y' "$D/w")" = "555 1400000000" ] || fail "folder mode and time after SIGINT: $(stat -c '%a %Y' "$D/w")"
    ok "SIGINT stops the restore; folders still get their modes and times"
}

# ---- the shape of a tree: names that sort between a folder and its contents, ------
# ---- a path deeper than 32 folders and longer than PATH_MAX ------------------------
tree_shape() {
    python3 - > spec-tree.json <<'EOF'
import json
E = [{"path": "t", "type": "dir"}, {"path": "t b", "type": "reg", "data": "t b\n"},
     {"path": "t-c", "type": "reg", "data": "t-c\n"}, {"path": "t/x", "type": "reg", "data": "t/x\n"},
     {"path": "t/w", "type": "dir"}, {"path": "t/w/1", "type": "reg", "data": "t/w/1\n"},
     {"path": "t/w x", "type": "reg", "data": "t/w x\n"}]
p = "t/deep"
for i in range(40):
    E.append({"path": p, "type": "dir"})
    E.append({"path": p + "/f", "type": "reg", "data": "level %d\n" % i})
    p += "/%02d" % i + "d" * 118
E.append({"path": p, "type": "reg", "data": "bottom\n"})
E.append({"path": "t/zz", "type": "reg", "data": "t/zz\n"})
json.dump({"roots": ["t", "t b", "t-c"], "time": "2026-01-01T02:00:00Z", "entries": E},
          open("/dev/stdout", "w"))
EOF
    id=$(files_snap "$R" spec-tree.json)
    D="$T/d9"
    restore "$id" --to "$D"
    [ "$rc" = 0 ] || { cat err; fail "restore of a deep tree"; }
    python3 - "$D" spec-tree.json <<'EOF' || fail "the deep tree is not restored exactly"
import json, os, sys
d, spec = sys.argv[1], json.load(open(sys.argv[2]))
dfd = os.open(d, os.O_RDONLY)
bad = 0
for e in spec["entries"]:
    if e["type"] != "reg":
        continue
    # walk relative to each folder: the path is longer than PATH_MAX
    parts = e["path"].split("/")
    fd = os.dup(dfd)
    for c in parts[:-1]:
        nfd = os.open(c, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
        os.close(fd)
        fd = nfd
    with os.fdopen(os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd), "rb") as f:
        if f.read().decode() != e["data"]:
            print("wrong content:", e["path"][:60]); bad += 1
    os.close(fd)
sys.exit(1 if bad else 0)
EOF
    ok "names sorting between a folder and its contents, 40 levels, a path of $(python3 -c 'import json; print(max(len(e["path"]) for e in json.load(open("spec-tree.json"))["entries"]))') bytes"
}

# small tmpfs for ENOSPC; mounted here so that the trap unmounts it
mkdir small
mount -t tmpfs -o size=2m vbtest-restore small
cleanup_add "umount -l '$T/small'"

# Each case runs in its own subshell and all of them run: the failures of
# every case are reported, not only the first.
failed=()
for c in catalog_symlink planted_symlink hard_links devices_owners ls_escaped root_snapshot \
         enospc missing_chunk sigint tree_shape; do
    set +e
    (set -e; cd "$T"; "$c")
    r=$?
    set -e
    [ $r = 0 ] || failed+=("$c")
done
[ ${#failed[@]} = 0 ] || fail "failed cases: ${failed[*]}"
