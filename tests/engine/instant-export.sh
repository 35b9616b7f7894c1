#!/usr/bin/env bash
# vbackupctl export and boot-from, without a guest (docs/instant-access.md):
# a disk snapshot served over NBD equals the image it was taken of
# (qemu-img compare, over a UNIX socket and over TCP), its holes are holes
# in NBD block status (qemu-img map) and qemu-img convert keeps them; the
# snapshot id is the export name and another name is refused; a VM name
# picks its newest disk snapshot, --disk chooses between disks; a files
# snapshot, a running server's socket and a file in the socket's place are
# refused; a stale socket is replaced; only its owner may connect to the
# socket unless --socket-group gives it to a group (whose members then
# can); SIGTERM and SIGINT stop the export and remove its socket.
# boot-from makes a qcow2 overlay on the export, writes go to the overlay, a
# restarted boot-from keeps it, and an overlay of another snapshot is
# refused.  Meson runs it on format 2 too, unencrypted and encrypted (the
# nbdkit plugin reads the password file vbackupctl's environment names).
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/../instant-lib.sh"
requires qemu-img
requires qemu-io
requires nbdkit
cd "$T"
R="$T/repo"
repo_init "$R"

# a disk with data, holes, zeros written as data, and an odd size
qemu-img create -q -f qcow2 disk.qcow2 $((130 * 1048576 + 4096))
qemu-io -c "write -P 0x41 0 3M" -c "write -P 0x42 50M 1M" -c "write -z 60M 8M" \
        -c "write -P 0x43 $((130 * 1048576)) 4096" disk.qcow2 >/dev/null
id=$("$V" --repo "$R" backup-disk --vm web1 --name vda --format qcow2 disk.qcow2 | last_line)
qemu-img create -q -f raw other.raw 20M
qemu-io -f raw -c "write -P 0x77 4M 4M" other.raw >/dev/null
id_b=$("$V" --repo "$R" backup-disk --vm web1 --name vdb --format raw other.raw | last_line)

# ---- over a UNIX socket: equal, holes mapped -----------------------------------
start_export e1 "$R" export "$id" --unix "$T/e1.sock"
uri=$(export_uri e1)
[ "$uri" = "nbd+unix:///$id?socket=$T/e1.sock" ] || fail "export printed '$uri'"
qemu-img compare -q -f qcow2 -F raw disk.qcow2 "$uri" || fail "the export differs from the image"
qemu-img map -f raw --output=json "$uri" > map.json
python3 - map.json <<'EOF' || fail "qemu-img map over NBD does not show the holes"
import json, sys
m = json.load(open(sys.argv[1]))
M = 1 << 20
data = [(e["start"], e["length"]) for e in m if e["data"]]
holes = [(e["start"], e["length"]) for e in m if not e["data"]]
assert all(e["zero"] for e in m if not e["data"]), m
# 4 MiB chunks: data in chunks 0, 12 and 32; everything else (the zeroed 60M..68M too) a hole
assert data == [(0, 4 * M), (48 * M, 4 * M), (128 * M, 2 * M + 4096)], data
assert sum(l for _, l in holes) == 130 * M + 4096 - (10 * M + 4096), holes
EOF
ok "export over a UNIX socket: qemu-img compare equal, holes in block status"

# qemu-img convert skips the holes: a sparse copy
qemu-img convert -f raw -O raw "$uri" copy.raw
qemu-img compare -q -f qcow2 -F raw disk.qcow2 copy.raw || fail "convert from the export differs"
alloc=$(du -k copy.raw | cut -f1)
[ "$alloc" -lt 20000 ] || fail "the copy is not sparse ($alloc KiB allocated)"

# the export name is the snapshot id: the default name works, another is refused
qemu-img info -f raw "nbd+unix:///?socket=$T/e1.sock" >/dev/null || fail "the default export name is refused"
if qemu-img info -f raw "nbd+unix:///web1/other?socket=$T/e1.sock" >out 2>&1; then
    fail "another export name was accepted"
fi
grep -q "not available\|export" out || { cat out; fail "another export name: no clear refusal"; }
ok "the snapshot id is the export name; another name is refused"

# only the user who runs the export may connect (nbdkit's 0755: connecting needs
# write permission); another user (nobody) is refused
mode=$(stat -c %a "$T/e1.sock")
[ $((0$mode & 022)) = 0 ] || fail "the socket is writable by others without --socket-group: $mode"
if [ "$(id -u)" = 0 ]; then
    chmod 755 "$T"
    if setpriv --reuid=nobody --regid=nogroup --clear-groups qemu-img info -f raw "$uri" >/dev/null 2>&1; then
        fail "another user connected to the export without --socket-group"
    fi
fi
ok "the socket is its owner's alone"

# a second server on the same socket is refused
expect_fail "a server answers there already" "$V" --repo "$R" export "$id" --unix "$T/e1.sock"
stop_export e1 TERM
[ ! -e "$T/e1.sock" ] || fail "the socket is left after SIGTERM"
grep -q "stopped the export" "$T/e1.out" || fail "no word that the export stopped"
ok "SIGTERM stops the export and removes its socket"

# ---- a VM name: its newest snapshot of one disk ---------------------------------
expect_fail "several disks" "$V" --repo "$R" export web1 --unix "$T/x.sock"
expect_fail "is of disk 'vda', not 'vdb'" "$V" --repo "$R" export "$id" --disk vdb --unix "$T/x.sock"
expect_fail "no snapshot of disk 'vdc'" "$V" --repo "$R" export web1 --disk vdc --unix "$T/x.sock"
expect_fail "not found" "$V" --repo "$R" export web1/2001-01-01T00:00:00Z --unix "$T/x.sock"
expect_fail "not a valid snapshot id" "$V" --repo "$R" export ../x --unix "$T/x.sock"
expect_fail "neither a snapshot id" "$V" --repo "$R" export .hidden --unix "$T/x.sock"
fid=$(files_snap "$R" /dev/stdin <<'EOF'
{"vm": "web1", "time": "2026-01-02T03:04:05Z", "entries": [{"path": "f", "type": "reg", "data": "x"}]}
EOF
)
expect_fail "is a files snapshot" "$V" --repo "$R" export "$fid" --unix "$T/x.sock"
touch "$T/notasocket"
expect_fail "is not a socket" "$V" --repo "$R" export "$id" --unix "$T/notasocket"
[ -f "$T/notasocket" ] || fail "a file in the socket's place was removed"
ok "VM names, --disk, missing, malformed and files snapshots, a file in the socket's place"

# a stale socket (a killed export) is replaced; --disk picks the disk; SIGINT stops
python3 -c "import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])" "$T/e2.sock"
start_export e2 "$R" export web1 --disk vdb --unix "$T/e2.sock" --socket-group nogroup
qemu-img compare -q -f raw -F raw other.raw "$(export_uri e2)" || fail "--disk vdb: the export differs"
[ "$(stat -c '%a %G' "$T/e2.sock")" = "660 nogroup" ] ||
    fail "--socket-group nogroup: the socket is $(stat -c '%a %U:%G' "$T/e2.sock")"
if [ "$(id -u)" = 0 ]; then     # a user of that group (nobody) connects
    setpriv --reuid=nobody --regid=nogroup --clear-groups \
        qemu-img compare -q -f raw -F raw other.raw "$(export_uri e2)" ||
        fail "a member of the socket's group could not read the export"
fi
stop_export e2 INT
[ ! -e "$T/e2.sock" ] || fail "the socket is left after SIGINT"
expect_fail "no such group" "$V" --repo "$R" export "$id" --unix "$T/e4.sock" --socket-group no-such-group-x
[ ! -e "$T/e4.sock" ] || fail "a socket is left by an export that did not start"
expect_fail "usage" "$V" --repo "$R" export "$id" --port 1 --socket-group nogroup
ok "a stale socket is replaced; --disk; --socket-group; SIGINT"

# ---- over TCP on the loopback -----------------------------------------------------
port=$(free_port)
start_export e3 "$R" export "$id" --port "$port"
[ "$(export_uri e3)" = "nbd://127.0.0.1:$port/$id" ] || fail "TCP export printed '$(export_uri e3)'"
qemu-img compare -q -f qcow2 -F raw disk.qcow2 "$(export_uri e3)" || fail "the TCP export differs"
stop_export e3 TERM
ok "export over TCP (127.0.0.1)"

# ---- boot-from: an overlay on the export (either format) ---------------------------
start_export b1 "$R" boot-from "$id" --overlay "$T/vm.qcow2"
grep -q "^created the overlay $T/vm.qcow2" "$T/b1.out" || fail "boot-from: no overlay made"
qemu-img info -U --output=json vm.qcow2 > info.json
python3 - info.json "$id" "$T/vm.qcow2.nbd" <<'EOF' || fail "the overlay's backing is not the export"
import json, sys
i = json.load(open(sys.argv[1]))
assert i["format"] == "qcow2", i
assert i["backing-filename"] == f"nbd+unix:///{sys.argv[2]}?socket={sys.argv[3]}", i
assert i["backing-filename-format"] == "raw", i
EOF
qemu-img compare -q -f qcow2 -F qcow2 disk.qcow2 vm.qcow2 || fail "the overlay does not show the snapshot"
# a VM's write lands in the overlay; the repository is untouched
qemu-io -f qcow2 -c "write -P 0x99 1M 64k" vm.qcow2 >/dev/null
qemu-io -f qcow2 -c "read -P 0x99 1M 64k" -c "read -P 0x41 0 1M" -c "read -P 0x42 50M 1M" vm.qcow2 \
    | grep -q "read 1048576" || fail "the overlay does not read back"
stop_export b1 INT
# started again: the overlay (with the write) is kept
start_export b2 "$R" boot-from "$id" --overlay "$T/vm.qcow2"
grep -q "^kept the overlay" "$T/b2.out" || fail "boot-from did not keep its overlay"
qemu-io -f qcow2 -c "read -P 0x99 1M 64k" vm.qcow2 | grep -q "read 65536" || fail "the write is lost"
stop_export b2 TERM
# an overlay of another snapshot (or a plain file) is refused, and left as it was
sum=$(sha vm.qcow2)
expect_fail "is an overlay of" "$V" --repo "$R" boot-from web1 --disk vdb --overlay "$T/vm.qcow2" \
    --unix "$T/vm.qcow2.nbd"
expect_fail "is not a qcow2 image" "$V" --repo "$R" boot-from "$id" --overlay "$T/other.raw"
[ "$(sha vm.qcow2)" = "$sum" ] || fail "a refused boot-from changed the overlay"
ok "boot-from: overlay on the export, writes kept in it, kept on restart, others refused"
