#!/usr/bin/env bash
# vbackupctl mount with the catalogs a hostile guest could send
# (docs/instant-access.md, "Names"): no name leads out of its folder — a
# path with "..", ".", an empty component, a leading or trailing '/', a NUL
# byte, a component longer than NAME_MAX, an entry below a symlink or a file,
# a second entry of one path and a hard link to a folder are left out (and
# counted in a warning), while names that are merely odd (a newline, an
# escape sequence, " -> ") are shown as they are; device nodes cannot be
# opened (nodev), setuid bits do nothing (nosuid), nothing executes
# (noexec); a file's chunks beyond its size are not read; a damaged catalog
# makes that snapshot unreadable (EIO) and the rest of the mount works.
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/../instant-lib.sh"
ensure_fuse
cd "$T"
R="$T/repo"
"$V" --repo "$R" init --format 1 >/dev/null

hex() { printf '%s' "$1" | od -An -tx1 | tr -d ' \n'; }
long=$(printf 'L%.0s' $(seq 256))
cat > evil.json <<EOF
{"vm": "evil", "time": "2026-01-02T03:04:05Z", "entries": [
 {"path": "ok", "type": "dir"},
 {"path": "ok/file", "type": "reg", "data": "fine\n"},
 {"path": "ok/../../../etc/passwd", "type": "reg", "data": "root::0:0::/:/bin/sh\n"},
 {"path": "../outside", "type": "reg", "data": "x"},
 {"path": "ok/./dot", "type": "reg", "data": "x"},
 {"path": "ok//empty", "type": "reg", "data": "x"},
 {"path": "/abs", "type": "reg", "data": "x"},
 {"path": "trail/", "type": "dir"},
 {"path": "..", "type": "dir"},
 {"path_hex": "$(hex nul)00$(hex x)", "type": "reg", "data": "x"},
 {"path": "$long", "type": "reg", "data": "x"},
 {"path": "lnk", "type": "symlink", "link": "/etc"},
 {"path": "lnk/passwd", "type": "reg", "data": "x"},
 {"path": "ok/file/child", "type": "reg", "data": "x"},
 {"path": "dup", "type": "reg", "data": "first\n"},
 {"path": "dup", "type": "dir"},
 {"path": "zz-hl-dir", "type": "reg", "hardlink": "ok"},
 {"path_hex": "$(hex 'odd')0a$(hex 'name')", "type": "reg", "data": "newline\n"},
 {"path_hex": "$(hex 'esc')1b5b33316d", "type": "reg", "data": "escape\n"},
 {"path": "a -> b", "type": "reg", "data": "arrow\n"},
 {"path": "dev", "type": "chr", "rdev": 259, "mode": 438},
 {"path": "suid", "type": "reg", "mode": 3565, "data": "#!/bin/sh\necho ran > $T/ran\n"},
 {"path": "short", "type": "reg", "data": "0123456789abcdef", "size": 4}
]}
EOF
eid=$(python3 "$SRC/tests/engine/mkfilesnap.py" "$R" evil.json)
python3 "$SRC/tests/engine/mkfilesnap.py" "$R" /dev/stdin >/dev/null <<'EOF'
{"vm": "good", "time": "2026-01-02T03:04:05Z", "entries": [{"path": "f", "type": "reg", "data": "good\n"}]}
EOF
bid=$(python3 "$SRC/tests/engine/mkfilesnap.py" "$R" /dev/stdin <<'EOF'
{"vm": "good", "time": "2026-01-03T03:04:05Z", "entries": [{"path": "f", "type": "reg", "data": "bad\n"}]}
EOF
)
flip_byte "$R/snapshots/$bid/files.cat" 70          # a damaged catalog

mkdir mnt
start_export m1 "$R" mount "$T/mnt"
cleanup_add "fusermount3 -u -z '$T/mnt' 2>/dev/null"
S="mnt/$eid"

# exactly the safe names are shown
(cd "$S" && find . -mindepth 1 -print0 | sort -z | od -An -c | tr -s ' ') > shown
(printf './a -> b\0./dev\0./dup\0./esc\033[31m\0./lnk\0./odd\nname\0./ok\0./ok/file\0./short\0./suid\0' |
    sort -z | od -An -c | tr -s ' ') > want
diff want shown || fail "the names shown are not exactly the safe ones"
[ ! -e mnt/etc ] && [ ! -e mnt/outside ] && [ ! -e "$S/../outside" ] && [ ! -e mnt/evil/outside ] ||
    fail "a name led out of its folder"
[ "$(cat "$S/dup")" = first ] || fail "the first entry of a path is not the one shown"
[ "$(readlink "$S/lnk")" = /etc ] || fail "the symlink's target"
[ ! -e "$S/lnk/passwd" ] || [ "$(readlink -f "$S/lnk/passwd")" = /etc/passwd ] ||
    fail "an entry below a symlink is shown"
grep -q "evil/2026-01-02T03:04:05Z: 13 entries of its catalog cannot be shown safely" "$T/m1.err" ||
    { cat "$T/m1.err"; fail "no warning naming the entries left out"; }
ok "hostile paths left out (13, counted), odd names shown as they are"

# the mount's options do their work
grep -qs "$T/mnt fuse.vbackup ro,nosuid,nodev,noexec" /proc/mounts || fail "mount options"
[ "$(stat -c %F "$S/dev")" = "character special file" ] || fail "the device node is not shown"
if head -c1 "$S/dev" 2>/dev/null; then fail "a device node of the guest could be opened"; fi
[ "$(stat -c %a "$S/suid")" = 6755 ] || fail "the setuid file's mode is not shown as the guest's"
if "$S/suid" 2>/dev/null; then fail "a guest's program ran from the mount"; fi
[ ! -e "$T/ran" ] || fail "a guest's program ran"
[ "$(cat "$S/short")" = 0123 ] || fail "a file's data beyond its size was read"
ok "nodev, nosuid, noexec; data beyond a file's size not read"

# a damaged catalog: that snapshot fails, the rest works
if ls "mnt/$bid/" >/dev/null 2>&1; then fail "a damaged catalog was read"; fi
grep -q "damaged" "$T/m1.err" || fail "the damaged catalog is not named"
[ "$(cat mnt/good/2026-01-02T03:04:05Z/f)" = good ] || fail "the other snapshot of the VM"
[ "$(cat "$S/ok/file")" = fine ] || fail "the mount stopped working"
ok "a damaged catalog: EIO for that snapshot, the rest is readable"

stop_export m1 INT
