#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The three mappers must agree: the guest tool's FIEMAP walk over a mounted
# ext4 (`vbackup backup --dump` with --assume-disk), vbclient's libext2fs
# walk over the same image unmounted (`vbclient backup --dump --fs-image`)
# and the host's mapper (hostd/mapper/vbackup-mapper, run as vbackupd runs
# it, on the raw image and on a qcow2 chain holding the same disk; its
# frames decoded by tests/mapper/mapperlib.py) give the same records: paths and link targets (as bytes), types, sizes,
# modes, owners, link counts, inodes, device numbers, times to the
# nanosecond (after 2262 too), extended attributes of every namespace and
# POSIX ACLs (in the kernel's format either way), inode flags, extents with
# their physical offsets and flags, and the data of fallback files.
# The file systems are mounted with noatime, so even atime agrees.
#
# Images: ext4 with 4 KiB blocks (fragmented files, > 8192 extents,
# unwritten ranges, preallocation past EOF, > 4 GiB sparse), the same file
# system inside partition 2 of an MBR disk (losetup -P: the partition start
# comes from sysfs; vbclient --partition and --fs-offset), ext4 with
# inline_data, and ext3 with 1 KiB blocks (block-mapped files).

# The mounts of this test live in a mount namespace of its own: a namespace
# made meanwhile by another program (libvirt makes one for each VM it
# starts) would copy a mount and keep its file system open after our
# umount, with changes in its journal, and the host mapper rightly refuses
# such a file system (it was not frozen).
if [ -z "${VB_OWN_MOUNTS:-}" ]; then
    VB_OWN_MOUNTS=1 exec unshare -m --propagation private "$0" "$@"
fi

source "$(dirname "$0")/../integration/functions.sh"
source "$(dirname "$0")/clientlib.sh"
requires_root
requires mkfs.ext4 -V
requires losetup --version
requires python3 --version
requires qemu-img --version

M=$VB_TMP/mnt
SERIAL=xcheck-disk

# host_map OUT MAPPERLIB-ARGS...: the host mapper's records as --dump lines
host_map() {
    local out=$1
    shift
    python3 "$VB_SRCDIR/tests/mapper/mapperlib.py" --dump "$out" --serial "$SERIAL" "$@" ||
        fail "the host mapper failed: $*"
}

# fill IMAGE-MOUNT: what only a mounted file system can make
runtime_files() {
    local m=$1
    # unwritten: fallocate, then write into the middle
    fallocate -l 1M "$m/falloc"
    dd if=/dev/urandom of="$m/falloc" bs=4k count=3 seek=10 conv=notrunc status=none
    # preallocated past the end of file
    head -c 10000 /dev/urandom > "$m/prealloc"
    fallocate -n -o 8192 -l 1M "$m/prealloc"
    # more than 8192 extents: every other block written
    python3 - "$m/many-extents" <<'EOF'
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)
blk = os.urandom(4096)
for i in range(9000):
    os.pwrite(fd, blk, i * 8192)
os.close(fd)
EOF
    # what a file system holds beyond data: extended attributes of every
    # namespace (binary, empty, a 64 KiB value in an EA inode), POSIX ACLs
    # (libext2fs converts ext4's on-disk ACL format to the kernel's), inode
    # flags, a name and a link target that are not UTF-8, a time after 2262
    python3 - "$m" <<'EOF'
import fcntl, os, struct, sys
m = sys.argv[1]
x = os.path.join(m, "attrs")
with open(x, "wb") as f:
    f.write(b"with attributes")
os.setxattr(x, "user.binary", bytes(range(256)))
os.setxattr(x, "user.empty", b"")
os.setxattr(x, "user.large", os.urandom(65536))
os.setxattr(x, "trusted.t", b"t\0x")
os.setxattr(x, "security.capability", struct.pack("<5I", 0x02000001, 1 << 13, 0, 0, 0))
acl = lambda ents: struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in ents)
os.setxattr(x, "system.posix_acl_access",
            acl([(1, 6, 0xffffffff), (2, 4, 1001), (4, 4, 0xffffffff), (16, 6, 0xffffffff),
                 (32, 0, 0xffffffff)]))
d = os.path.join(m, "acl-dir")
os.mkdir(d)
os.setxattr(d, "system.posix_acl_default",
            acl([(1, 7, 0xffffffff), (2, 7, 1003), (4, 5, 0xffffffff), (16, 7, 0xffffffff),
                 (32, 0, 0xffffffff)]))
os.setxattr(d, "user.d", b"folder")
fd = os.open(x, os.O_RDONLY)
flags = struct.unpack("i", fcntl.ioctl(fd, 0x80086601, struct.pack("i", 0)))[0]
fcntl.ioctl(fd, 0x40086602, struct.pack("i", flags | 0x40 | 0x80))     # d A
os.close(fd)
os.symlink(b"\xc3\x28 target", os.path.join(m.encode(), b"\xff\xfe-link"))
os.setxattr(os.path.join(m.encode(), b"\xff\xfe-link"), "trusted.l", b"on a symlink",
            follow_symlinks=False)
os.utime(os.path.join(m, "attrs"), ns=(10413792000 * 10**9 + 1, 10413792000 * 10**9 + 5 * 10**8))
EOF
    # times with nanoseconds, before 1970 and after 2038 (epoch bits); in UTC,
    # as check_dump_shape expects them, whatever the time zone
    touch -d '2001-02-03 04:05:06.123456789 UTC' "$m/prealloc"
    touch -d '1960-06-01 12:00:00.5 UTC' "$m/falloc"
    touch -h -d '2200-01-01 00:00:00.25 UTC' "$m/fast-link"
    # physically fragmented: fill, free every other file, write into the gaps
    mkdir "$m/fill"
    local i=0
    while dd if=/dev/zero of="$m/fill/$i" bs=256k count=1 status=none 2>/dev/null; do
        i=$((i + 1))
        [ $i -lt 4000 ] || break
    done
    rm -f "$m/fill/$i"
    for ((k = 0; k < i; k += 2)); do rm -f "$m/fill/$k"; done
    sync
    head -c $((6 << 20)) /dev/urandom > "$m/fragmented" || true
    sync
}

check_dump_shape() {
    local d=$1 p=$2
    python3 - "$d" "$p" <<'EOF' || fail "unexpected records in $1"
import json, sys
recs = {r.get("path", r.get("path_hex")): r for r in map(json.loads, open(sys.argv[1]))}
p = sys.argv[2]
def r(name): return recs[p + name]
assert r("/falloc")["data"] == "extents" and any(e[3] == 1 for e in r("/falloc")["extents"]), "unwritten"
assert len(r("/many-extents")["extents"]) == 9000, len(r("/many-extents")["extents"])
frag = r("/fragmented")["extents"]
assert len(frag) >= 4, f"fragmented has {len(frag)} extents"
big = r("/big-sparse")
assert big["size"] == (5 << 30) + 7 and big["extents"][-1][0] >= 4 << 30
assert r("/hole-only")["data"] == "extents" and r("/hole-only")["extents"] == []
assert r("/empty")["data"] == "none"
assert r("/fifo")["type"] == "fifo" and r("/null")["rdev"] == 259 and r("/blk")["rdev"] == (7 << 8 | 200)
assert r("/dir/hard-link")["ino"] == r("/a.txt")["ino"] and r("/a.txt")["nlink"] == 3
assert r("/slow-link")["link"].startswith("target-") and r("/fast-link")["link"] == "a.txt"
assert r("/prealloc")["mtime_ns"] == 981173106123456789
from calendar import timegm
assert r("/falloc")["mtime_ns"] == timegm((1960, 6, 1, 12, 0, 0)) * 10**9 + 5 * 10**8
assert r("/fast-link")["mtime_ns"] == timegm((2200, 1, 1, 0, 0, 0)) * 10**9 + 25 * 10**7
a = r("/attrs")
assert a["mtime_sec"] == 10413792000 and a["mtime_nsec"] == 5 * 10**8 and "mtime_ns" not in a
assert set(a["xattrs"]) == {"user.binary", "user.empty", "user.large", "trusted.t",
                            "security.capability", "system.posix_acl_access"}, a["xattrs"]
assert len(a["xattrs"]["user.large"]) == 2 * 65536 and a["fsflags"] & 0xc0 == 0xc0
assert "system.posix_acl_default" in r("/acl-dir")["xattrs"]
links = [x for x in recs.values() if x.get("path_hex", "").endswith("fffe2d6c696e6b")]
assert links and links[0]["link_hex"] == "c328207461726765" + "74" and \
    "trusted.l" in links[0]["xattrs"], links
EOF
}

# --- ext4, 4 KiB blocks -----------------------------------------------------
make_tree "$VB_TMP/src"
truncate -s 512M "$VB_TMP/fs.img"
mkfs.ext4 -q -b 4096 -O ea_inode -d "$VB_TMP/src" "$VB_TMP/fs.img"
# the disk before the runtime files, as the (compressed) base of a qcow2 chain
qemu-img convert -q -c -f raw -O qcow2 "$VB_TMP/fs.img" "$VB_TMP/base.qcow2"
cp --sparse=always "$VB_TMP/fs.img" "$VB_TMP/fs-before.img"
loop_mount "$VB_TMP/fs.img" "$M" noatime
runtime_files "$M"
sync
"$VBACKUP_TOOL" backup "$M" --dump "$VB_TMP/guest.json" --assume-disk "$SERIAL" \
    2>"$VB_TMP/guest.err" || { cat "$VB_TMP/guest.err"; fail "vbackup --dump"; }
umount "$M"
"$VBCLIENT" backup "$M" --mount-point "$M" --fs-image "$VB_TMP/fs.img" --serial "$SERIAL" \
    --dump "$VB_TMP/client.json"
dump_compare "$VB_TMP/guest.json" "$VB_TMP/client.json"
check_dump_shape "$VB_TMP/guest.json" "${M#/}"
host_map "$VB_TMP/host.json" --disk "raw:$VB_TMP/fs.img" --fs 0:0 --root "0::${M#/}"
dump_compare "$VB_TMP/guest.json" "$VB_TMP/host.json"
# the same disk as a qcow2 overlay on that base holding the runs of 64 KiB
# that changed since, written with qemu-io
qemu-img create -q -f qcow2 -b "$VB_TMP/base.qcow2" -F qcow2 "$VB_TMP/top.qcow2"
python3 - "$VB_TMP/fs-before.img" "$VB_TMP/fs.img" "$VB_TMP/runs" > "$VB_TMP/qemu-io.cmds" <<'EOF2'
import os, sys
a, b, d = open(sys.argv[1], "rb"), open(sys.argv[2], "rb"), sys.argv[3]
os.makedirs(d, exist_ok=True)
cs, off, runs = 65536, 0, []
while True:
    x, y = a.read(cs), b.read(cs)
    if not y:
        break
    if x != y:
        if runs and runs[-1][1] == off:
            runs[-1][1] += len(y)
            runs[-1][2].append(y)
        else:
            runs.append([off, off + len(y), [y]])
    off += len(y)
for i, (start, end, data) in enumerate(runs):
    f = os.path.join(d, str(i))
    open(f, "wb").write(b"".join(data))
    print(f"write -s {f} {start} {end - start}")
EOF2
cmds=()
while IFS= read -r line; do cmds+=(-c "$line"); done < "$VB_TMP/qemu-io.cmds"
qemu-io -f qcow2 "${cmds[@]}" "$VB_TMP/top.qcow2" >/dev/null
qemu-img compare -q -f qcow2 -F raw "$VB_TMP/top.qcow2" "$VB_TMP/fs.img" ||
    fail "the qcow2 chain does not hold the disk"
qemu-img map -U --output=json "$VB_TMP/top.qcow2" | python3 -c '
import json, sys
m = json.load(sys.stdin)
assert any(x["data"] and x["depth"] == 1 for x in m) and any(x["data"] and x["depth"] == 0 for x in m)
' || fail "the chain does not hold data in both layers"
host_map "$VB_TMP/hostq.json" --disk "qcow2:$VB_TMP/top.qcow2,qcow2:$VB_TMP/base.qcow2" \
    --fs 0:0 --root "0::${M#/}"
dump_compare "$VB_TMP/guest.json" "$VB_TMP/hostq.json"
ok_n=$(wc -l < "$VB_TMP/guest.json")
log "ext4 4K: $ok_n records agree (guest, vbclient, host mapper on raw and on a qcow2 chain)"

# a mount point (of another file system, in the guest): sent as a folder,
# nothing beneath it
host_map "$VB_TMP/hostp.json" --disk "raw:$VB_TMP/fs.img" --fs 0:0 --root "0::${M#/}" \
    --prune "${M#/}/dir/sub"
[ "$(dump_get "$VB_TMP/hostp.json" "${M#/}/dir/sub" type)" = '"dir"' ] ||
    fail "the mount point is not sent as a folder"
! grep -q '/dir/sub/' "$VB_TMP/hostp.json" || fail "the mapper walked into a mount point"

# a sub-tree as the root, an exclusion, a relative root for vbclient
loop_mount "$VB_TMP/fs.img" "$M" noatime
"$VBACKUP_TOOL" backup "$M/dir" "$M/with space" --exclude '*/deeper' --exclude 'size-4*' \
    --dump "$VB_TMP/g2.json" --assume-disk "$SERIAL"
umount "$M"
"$VBCLIENT" backup dir "with space" --exclude '*/deeper' --exclude 'size-4*' \
    --mount-point "$M" --fs-image "$VB_TMP/fs.img" --serial "$SERIAL" --dump "$VB_TMP/c2.json"
dump_compare "$VB_TMP/g2.json" "$VB_TMP/c2.json"
! grep -q 'deeper\|size-4' "$VB_TMP/g2.json" || fail "--exclude did not exclude"
host_map "$VB_TMP/h2.json" --disk "raw:$VB_TMP/fs.img" --fs 0:0 --root "0:dir:${M#/}/dir" \
    --root "0:with space:${M#/}/with space" --exclude '*/deeper' --exclude 'size-4*'
dump_compare "$VB_TMP/g2.json" "$VB_TMP/h2.json"
log "ext4 4K: sub-trees and exclusions agree"

# --fallback: the data goes through the stream; the sha256 of what would be
# sent agrees
loop_mount "$VB_TMP/fs.img" "$M" noatime
"$VBACKUP_TOOL" backup "$M" --fallback 'size-*' --fallback '*.bin' --dump "$VB_TMP/g3.json" \
    --assume-disk "$SERIAL"
umount "$M"
"$VBCLIENT" backup . --fallback 'size-*' --fallback '*.bin' --mount-point "$M" \
    --fs-image "$VB_TMP/fs.img" --serial "$SERIAL" --dump "$VB_TMP/c3.json"
dump_compare "$VB_TMP/g3.json" "$VB_TMP/c3.json"
want=$(sha256sum "$VB_TMP/src/dir/size-3145735" | cut -d' ' -f1)
got=$(dump_get "$VB_TMP/g3.json" "${M#/}/dir/size-3145735" sha256)
[ "\"$want\"" = "$got" ] || fail "fallback sha256 $got, file has $want"
log "ext4 4K: fallback data agrees"

# --- the same file system in partition 2 of an MBR disk -----------------------
START_SECTOR=20003         # deliberately not aligned
python3 - "$VB_TMP/disk.raw" "$START_SECTOR" "$(stat -c %s "$VB_TMP/fs.img")" <<'EOF'
import struct, sys
path, start, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
sectors = size // 512
mbr = bytearray(512)
def entry(i, typ, lba, n):
    struct.pack_into("<B3sB3sII", mbr, 446 + 16 * i, 0, b"\xff\xff\xfe", typ, b"\xff\xff\xfe", lba, n)
entry(0, 0x83, 2048, 16000)
entry(1, 0x83, start, sectors)
mbr[510:512] = b"\x55\xaa"
with open(path, "wb") as f:
    f.write(mbr)
    f.truncate((start + sectors + 2048) * 512)
EOF
dd if="$VB_TMP/fs.img" of="$VB_TMP/disk.raw" bs=1M seek=$((START_SECTOR * 512)) oflag=seek_bytes \
    conv=notrunc,sparse status=none
LOOP=$(losetup -f --show -P "$VB_TMP/disk.raw")
cleanup_fn "losetup -d $LOOP"
# losetup -P has scanned the table before it returns (the scan is part of
# the ioctl, devtmpfs makes the nodes before device_add returns); kernels
# without CONFIG_MSDOS_PARTITION do not scan: add the partitions with BLKPG
# (partx), which sysfs shows the same way
[ -b "${LOOP}p2" ] || partx -a "$LOOP" 2>/dev/null || true
wait_for 10 test -b "${LOOP}p2"
loop_start=$(cat "/sys/class/block/$(basename "$LOOP")p2/start")
[ "$loop_start" = "$START_SECTOR" ] || fail "sysfs start of ${LOOP}p2 is $loop_start"
mkdir -p "$M"
mount -o noatime "${LOOP}p2" "$M"
cleanup_fn "umount '$M' 2>/dev/null"
"$VBACKUP_TOOL" backup "$M" --dump "$VB_TMP/gp.json" --assume-disk "$SERIAL"
umount "$M"
"$VBCLIENT" backup "$M" --mount-point "$M" --fs-image "$VB_TMP/disk.raw" --partition 2 \
    --serial "$SERIAL" --dump "$VB_TMP/cp.json"
dump_compare "$VB_TMP/gp.json" "$VB_TMP/cp.json"
"$VBCLIENT" backup "$M" --mount-point "$M" --fs-image "$VB_TMP/disk.raw" \
    --fs-offset $((START_SECTOR * 512)) --serial "$SERIAL" --dump "$VB_TMP/co.json"
dump_compare "$VB_TMP/gp.json" "$VB_TMP/co.json"
host_map "$VB_TMP/hp.json" --disk "raw:$VB_TMP/disk.raw" --fs 0:$((START_SECTOR * 512)) \
    --root "0::${M#/}"
dump_compare "$VB_TMP/gp.json" "$VB_TMP/hp.json"
# and the physical offsets moved by exactly the partition start
python3 - "$VB_TMP/guest.json" "$VB_TMP/gp.json" $((START_SECTOR * 512)) <<'EOF' ||
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
off = int(sys.argv[3])
n = 0
for x, y in zip(a, b):
    for e, f in zip(x["extents"], y["extents"]):
        assert f[1] == e[1] + off, (x["path"], e, f)
        n += 1
assert n > 9000
EOF
    fail "partition offsets"
log "MBR partition 2 at sector $START_SECTOR: records agree, offsets shifted"

# --- ext4 with inline data ---------------------------------------------------------
mkdir -p "$VB_TMP/src2/d"
echo "tiny" > "$VB_TMP/src2/tiny"
head -c 50 /dev/urandom > "$VB_TMP/src2/d/fifty"
head -c 10000 /dev/urandom > "$VB_TMP/src2/d/big"
ln -s "$(printf 'inline-symlink-target-%.0s' {1..4})" "$VB_TMP/src2/ilink"
truncate -s 64M "$VB_TMP/inline.img"
mkfs.ext4 -q -b 4096 -I 512 -O inline_data -d "$VB_TMP/src2" "$VB_TMP/inline.img"
loop_mount "$VB_TMP/inline.img" "$M" noatime
echo "written while mounted" > "$M/d/new-inline"
sync
"$VBACKUP_TOOL" backup "$M" --dump "$VB_TMP/gi.json" --assume-disk "$SERIAL"
umount "$M"
"$VBCLIENT" backup "$M" --mount-point "$M" --fs-image "$VB_TMP/inline.img" --serial "$SERIAL" \
    --dump "$VB_TMP/ci.json"
dump_compare "$VB_TMP/gi.json" "$VB_TMP/ci.json"
host_map "$VB_TMP/hi.json" --disk "raw:$VB_TMP/inline.img" --fs 0:0 --root "0::${M#/}"
dump_compare "$VB_TMP/gi.json" "$VB_TMP/hi.json"
[ "$(dump_get "$VB_TMP/gi.json" "${M#/}/tiny" data)" = '"fallback"' ] ||
    fail "an inline file is not sent as fallback"
[ "$(dump_get "$VB_TMP/gi.json" "${M#/}/tiny" sha256)" = "\"$(sha256sum < "$VB_TMP/src2/tiny" | cut -d' ' -f1)\"" ] ||
    fail "inline file data"
log "ext4 inline_data: records agree, inline files go through the fallback stream"

# --- ext3, 1 KiB blocks, block-mapped files -------------------------------------------
truncate -s 256M "$VB_TMP/ext3.img"
mkfs.ext3 -q -b 1024 -d "$VB_TMP/src" "$VB_TMP/ext3.img"
loop_mount "$VB_TMP/ext3.img" "$M" noatime
head -c 5000000 /dev/urandom > "$M/written-on-ext3"
sync
"$VBACKUP_TOOL" backup "$M" --dump "$VB_TMP/g3b.json" --assume-disk "$SERIAL:4096"
umount "$M"
"$VBCLIENT" backup "$M" --mount-point "$M" --fs-image "$VB_TMP/ext3.img" --serial "$SERIAL" \
    --dump "$VB_TMP/c3b.json"
# --assume-disk SERIAL:4096 moved every physical offset by 4096
python3 - "$VB_TMP/g3b.json" "$VB_TMP/c3b.json" <<'EOF' || fail "ext3 records"
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
assert len(a) == len(b)
for x, y in zip(a, b):
    x["extents"] = [[e[0], e[1] - 4096, e[2], e[3]] for e in x["extents"]]
    assert x == y, (x["path"], {k: (x.get(k), y.get(k)) for k in x if x.get(k) != y.get(k)})
EOF
host_map "$VB_TMP/h3b.json" --disk "raw:$VB_TMP/ext3.img" --fs 0:0 --root "0::${M#/}"
dump_compare "$VB_TMP/c3b.json" "$VB_TMP/h3b.json"
log "ext3 1K (block-mapped): records agree"

# --- two file systems, the same inode numbers, hard links in both ----------------------
# (two partitions of one disk, say): a (disk, ino) pair must name one file
truncate -s 64M "$VB_TMP/twin.img"
mkfs.ext4 -q -b 4096 -d "$VB_TMP/src2" "$VB_TMP/twin.img"
cp "$VB_TMP/twin.img" "$VB_TMP/twin2.img"
loop_mount "$VB_TMP/twin.img" "$VB_TMP/t1" noatime
loop_mount "$VB_TMP/twin2.img" "$VB_TMP/t2" noatime
ln "$VB_TMP/t1/tiny" "$VB_TMP/t1/tiny-link"
ln "$VB_TMP/t2/tiny" "$VB_TMP/t2/tiny-link"
"$VBACKUP_TOOL" backup "$VB_TMP/t1" "$VB_TMP/t2" --dump "$VB_TMP/twins.json" --assume-disk "$SERIAL"
python3 - "$VB_TMP/twins.json" "${VB_TMP#/}" <<'EOF2' || fail "hard links of two file systems"
import json, sys
r = {x["path"]: x for x in map(json.loads, open(sys.argv[1]))}
t = sys.argv[2]
a1, l1 = r[t + "/t1/tiny"], r[t + "/t1/tiny-link"]
a2, l2 = r[t + "/t2/tiny"], r[t + "/t2/tiny-link"]
assert a1["disk"] == a2["disk"] and a1["nlink"] == 2
assert a1["ino"] == l1["ino"] and a2["ino"] == l2["ino"], "a hard link group was split"
assert a1["ino"] != a2["ino"], "two files of two file systems share (disk, ino)"
assert a2["ino"] >= 1 << 62
EOF2
umount "$VB_TMP/t1" "$VB_TMP/t2"
# the host mapper: both file systems on one disk, one after the other
cat "$VB_TMP/twin.img" "$VB_TMP/twin2.img" > "$VB_TMP/twins.raw"
host_map "$VB_TMP/htwins.json" --disk "raw:$VB_TMP/twins.raw" --fs 0:0 --fs 0:$((64 << 20)) \
    --root "0::${VB_TMP#/}/t1" --root "1::${VB_TMP#/}/t2"
dump_compare "$VB_TMP/twins.json" "$VB_TMP/htwins.json" extents
log "two file systems with the same inode numbers: hard link groups stay apart"
