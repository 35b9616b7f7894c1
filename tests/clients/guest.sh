#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The static guest tool in a real guest (QEMU with the virtio-backup device
# and a virtio disk with a serial), against the capture peer on the VM's
# socket:
#  * --help, --version, the message for a missing device;
#  * a file backup of an ext4 in partition 1 (odd start sector) of the
#    virtio disk: the records that arrive through /dev/vbackup equal
#    vbclient's libext2fs records of the same image (serial, partition start,
#    extents, metadata), and the files read from the disk image at the
#    extents, while the guest is frozen, equal the guest's own sha256sum of
#    them, including a file written in the guest just before the backup;
#    files sent as fallback data (1 MiB pieces through the device) arrive
#    exactly;
#  * list, status, restore in place and --into from the synthetic snapshot,
#    checked inside the guest; backup-disk.

source "$(dirname "$0")/../integration/functions.sh"
source "$(dirname "$0")/clientlib.sh"
requires python3 --version
requires mkfs.ext4 -V
requires test -x "$GUEST_TOOLS/run-guest"
guest_artifacts

SERIAL=vbtest-disk
SOCK=$VB_TMP/vm.sock
DISK=$VB_TMP/disk.raw
START=4099                       # partition start sector, not aligned
SPEC=$VB_TMP/spec.json

# --- the disk: MBR, partition 1 with an ext4 -------------------------------------------
make_tree "$VB_TMP/src"
rm -f "$VB_TMP/src/big-sparse"   # TCG would hash 5 GiB of zeros for minutes
python3 - "$VB_TMP/src/fragments" <<'EOF'
import os, sys
with open(sys.argv[1], "wb") as f:
    for i in range(300):
        f.seek(i * 8192)
        f.write(os.urandom(4096))
EOF
truncate -s 200M "$VB_TMP/fs.img"
mkfs.ext4 -q -b 4096 -d "$VB_TMP/src" "$VB_TMP/fs.img"
FS_BYTES=$(stat -c %s "$VB_TMP/fs.img")
python3 - "$DISK" "$START" "$FS_BYTES" <<'EOF'
import struct, sys
path, start, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
mbr = bytearray(512)
struct.pack_into("<B3sB3sII", mbr, 446, 0, b"\xff\xff\xfe", 0x83, b"\xff\xff\xfe", start, size // 512)
mbr[510:512] = b"\x55\xaa"
with open(path, "wb") as f:
    f.write(mbr)
    f.truncate((start + size // 512 + 2048) * 512)
EOF
dd if="$VB_TMP/fs.img" of="$DISK" bs=1M seek=$((START * 512)) oflag=seek_bytes conv=notrunc,sparse \
    status=none

# --- the snapshot served for restores ----------------------------------------------------
python3 - "$SPEC" <<'EOF'
import json, sys
T = 1_650_000_000_000_000_000
E = [
    {"path": "tmp/restored", "type": "dir", "mode": 0o755, "mtime_ns": T},
    {"path": "tmp/restored/sub", "type": "dir", "mode": 0o700, "mtime_ns": T + 1},
    {"path": "tmp/restored/a.txt", "type": "reg", "mode": 0o644, "size": 1234,
     "data": [[0, 1234]], "mtime_ns": T + 2},
    {"path": "tmp/restored/sub/sparse", "type": "reg", "mode": 0o600, "size": 9_000_000,
     "data": [[100, 1000], [5_000_000, 2_000_000]], "mtime_ns": T + 3},
    {"path": "tmp/restored/hard", "type": "reg", "link_of": 2, "nlink": 2, "mode": 0o644,
     "size": 1234, "mtime_ns": T + 2},
    {"path": "tmp/restored/link", "type": "symlink", "link": "sub/sparse", "mtime_ns": T + 4},
    {"path": "tmp/restored/fifo", "type": "fifo", "mode": 0o640, "mtime_ns": T + 5},
    {"path": "tmp/restored/ünï ✓", "type": "reg", "mode": 0o644, "size": 0, "mtime_ns": T + 6},
]
json.dump({"snapshot": "capture/2026-06-06T06:06:06Z", "entries": E}, open(sys.argv[1], "w"))
EOF

start_peer "$SOCK" --log "$VB_TMP/peer.log" --records "$VB_TMP/records.json" --view frozen \
    --read-done-after 3 --done-after 5 --image "$SERIAL=$DISK" --restore-spec "$SPEC" \
    --disk-size "$(stat -c %s "$DISK")"

cat > "$VB_TMP/test.sh" <<'EOF'
#!/bin/sh
set -e
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
vbackup --help | grep -q "vbackup backup PATH... --to TARGET" && echo "CHECK help"
vbackup --version
if VBACKUP_DEVICE=/dev/vbackup-missing vbackup list --from archive 2>/tmp/err; then exit 1; fi
grep -q "/dev/vbackup-missing not found: is the virtio_backup module loaded" /tmp/err && echo "CHECK missing-device"
echo "SERIAL $(cat /sys/block/vda/serial) START $(cat /sys/class/block/vda1/start)"
mkdir -p /mnt
mount -t ext4 -o noatime /dev/vda1 /mnt
# written now: in the page cache until the freeze flushes it
dd if=/dev/urandom of=/mnt/written-in-guest bs=1k count=777 2>/dev/null
FB="--fallback size-3* --fallback *.bin"
vbackup backup /mnt --dump /tmp/dump.json --quiet $FB
echo "DUMP-BEGIN"; cat /tmp/dump.json; echo "DUMP-END"
vbackup backup /mnt --to archive --mode full $FB >/tmp/out 2>/tmp/err || { cat /tmp/out /tmp/err; exit 1; }
cat /tmp/out
echo "SNAPSHOT $(tail -n1 /tmp/out)"
cd /mnt
find . -type f | while read -r f; do echo "SHA $(sha256sum "$f" | cut -d' ' -f1) ${f#./}"; done
cd /
vbackup list --from archive
vbackup status
vbackup restore /tmp/restored --from archive --quiet
vbackup restore /tmp/restored/sub /tmp/restored/a.txt --from archive --into /tmp/into --quiet
for f in /tmp/restored/a.txt /tmp/restored/hard /tmp/restored/sub/sparse "/tmp/restored/ünï ✓" \
         /tmp/into/tmp/restored/sub/sparse /tmp/into/tmp/restored/a.txt; do
    echo "RSHA $(sha256sum "$f" | cut -d' ' -f1) $(stat -c '%s %a %Y %h' "$f") $f"
done
echo "RLINK $(readlink /tmp/restored/link)"
[ -p /tmp/restored/fifo ] && echo "CHECK fifo"
[ "$(stat -c %i /tmp/restored/a.txt)" = "$(stat -c %i /tmp/restored/hard)" ] && echo "CHECK hardlink"
echo "RDIR $(stat -c '%a %Y' /tmp/restored/sub) $(stat -c '%a %Y' /tmp/restored)"
vbackup backup-disk --to archive vda >/tmp/out 2>/tmp/err || { cat /tmp/out /tmp/err; exit 1; }
cat /tmp/out
umount /mnt
echo "GUEST-DONE"
EOF

start_guest --disk "$DISK,serial=$SERIAL,format=raw" --vbackup-socket "$SOCK" \
    --add "$VBACKUP_TOOL:/bin/vbackup" --script "$VB_TMP/test.sh" --timeout 600
wait_guest || { tail -n 40 "$VB_TMP/console.log" >&2; fail "the guest script failed"; }
C=$VB_TMP/console.txt
tr -d '\r' < "$VB_TMP/console.log" > "$C"
check_console_clean
grep -q "GUEST-DONE" "$C" || fail "the guest did not finish"
grep -q "CHECK help" "$C" && grep -q "CHECK missing-device" "$C" || fail "help / missing device"
grep -q "SERIAL $SERIAL START $START" "$C" || fail "the guest does not see serial and start"
no_violations "$VB_TMP/peer.log"
log "help, missing device, serial $SERIAL, partition start $START"

# --- what came through the device equals the libext2fs mapping of the image --------------------
sed -n '/^DUMP-BEGIN$/,/^DUMP-END$/p' "$C" | sed '1d;$d' > "$VB_TMP/guest-dump.json"
"$VBCLIENT" backup /mnt --mount-point /mnt --fs-image "$DISK" --partition 1 --serial "$SERIAL" \
    --fallback 'size-3*' --fallback '*.bin' --dump "$VB_TMP/client.json" 2>/dev/null
dump_compare "$VB_TMP/records.json" "$VB_TMP/client.json" image_sha256
dump_compare "$VB_TMP/guest-dump.json" "$VB_TMP/client.json"
grep -q "\"serials\": \[\"$SERIAL\"\], \"roots\": \[\"mnt\"\]" "$VB_TMP/peer.log" ||
    fail "BEGIN did not name the disk and the root"
n=$(wc -l < "$VB_TMP/records.json")
log "$n records through /dev/vbackup equal vbclient's mapping of the image"

# --- the data at the extents, read from the image while frozen, is the files' data -------------
python3 - "$VB_TMP/records.json" "$C" <<'EOF' || fail "data read at the extents differs from the guest's files"
import json, sys
recs = {r["path"]: r for r in map(json.loads, open(sys.argv[1]))}
shas = {}
for line in open(sys.argv[2], errors="replace"):
    if line.startswith("SHA "):
        _, h, p = line.rstrip("\n").split(" ", 2)
        shas["mnt/" + p] = h
bad = n = 0
for p, h in shas.items():
    r = recs.get(p)
    if r is None or r["data"] == "none":
        continue
    got = r.get("image_sha256") or r.get("sha256")
    n += 1
    if got != h:
        bad += 1
        print("differs:", p, r["data"], got, h)
assert "mnt/written-in-guest" in shas and recs["mnt/written-in-guest"]["data"] == "extents"
assert recs["mnt/dir/size-3145735"]["data"] == "fallback"
assert n >= 15, n
sys.exit(1 if bad else 0)
EOF
grep -q "file systems frozen for" "$C" || fail "no freeze reported"
grep -q "^SNAPSHOT capture/0001$" "$C" || fail "the snapshot id is not the last line"
log "every file read at its extents from the image (frozen) equals the guest's sha256sum; $(grep -o 'frozen for [0-9.]* s' "$C" | head -1)"

# --- list, status, restores, backup-disk ---------------------------------------------------------
grep -q "^capture/2026-01-01T00:00:00Z " "$C" || fail "list in the guest"
grep -q "^1  *done  *files  *full " "$C" || fail "status in the guest"
python3 - "$SPEC" "$C" <<'EOF' || fail "restore in the guest"
import importlib.util, json, os, sys
sp = importlib.util.spec_from_file_location("peer", os.path.join(os.environ["CLIENTS_DIR"], "capture-peer.py"))
peer = importlib.util.module_from_spec(sp); sp.loader.exec_module(peer)
E = {e["path"]: e for e in json.load(open(sys.argv[1]))["entries"]}
got = {}
for line in open(sys.argv[2], errors="replace"):
    if line.startswith("RSHA "):
        _, h, size, mode, mtime, nlink, path = line.rstrip("\n").split(" ", 6)
        got[path] = (h, int(size), int(mode, 8), int(mtime), int(nlink))
for path, (h, size, mode, mtime, nlink) in got.items():
    rel = path.split("/tmp/into/", 1)[-1].lstrip("/")
    e = E[rel]
    first = E["tmp/restored/a.txt"] if "link_of" in e else e
    assert h == peer.file_sha(first), (path, h)
    assert size == first["size"] and mode == first["mode"], path
    assert mtime == first["mtime_ns"] // 10**9, (path, mtime)
assert len(got) == 6, got.keys()
EOF
grep -q "RLINK sub/sparse" "$C" && grep -q "CHECK fifo" "$C" && grep -q "CHECK hardlink" "$C" ||
    fail "symlink, fifo or hard link not restored"
grep -q "RDIR 700 1650000000 755 1650000000" "$C" || fail "directory modes and times"
grep -q '"kind": 2, "mode": 2, "target": "archive", "serials": \["vbtest-disk"\]' "$VB_TMP/peer.log" ||
    fail "backup-disk did not name the disk"
[ "$(grep -c 'file systems frozen for' "$C")" -ge 2 ] || fail "backup-disk did not freeze /mnt"
log "list, status, restore in place and --into, backup-disk (with a freeze)"
