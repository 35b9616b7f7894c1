#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Hot-unplug of the device by the host (QMP device_del) while guest callers
# wait for replies, twice: the callers get ENODEV, /dev/vbackup goes away,
# QEMU stays up, the device is gone from the machine and has released its id
# and its chardev (device_add with the same id and chardev succeeds), its
# connection to vbackupd is closed (the replies to the dropped requests can
# never reach a later device), and the device plugged in again serves calls.

source "$(dirname "$0")/functions.sh"
requires python3 --version

guest_artifacts
sock=$VB_TMP/vb.sock
qmp=$VB_TMP/qmp.sock
start_echo_peer "$sock"

cat >"$VB_TMP/guest.sh" <<'GUEST'
set -e
for round in 1 2; do
    vbcall call -e >/dev/null
    vbcall removal -n 6 -u - -m 60000
    n=0
    while [ -e /dev/vbackup ]; do
        n=$((n + 1)); [ $n -lt 100 ] || { echo "FAIL /dev/vbackup stays after unplug"; exit 1; }
        sleep 0.1
    done
    echo "STEP unplugged $round"
    n=0
    until [ -e /dev/vbackup ]; do
        n=$((n + 1)); [ $n -lt 900 ] || { echo "FAIL the device did not come back"; exit 1; }
        sleep 0.1
    done
    vbcall wait-ok -T 30
    vbcall echo -n 20 -z 70000
    echo "ok round $round: unplugged with callers waiting, plugged in again, calls work"
done
GUEST

start_guest --qemu "$QEMU" --kernel "$KERNEL" --initrd "$INITRD" \
    --vbackup-socket "$sock" --hotplug --qmp "$qmp" --timeout 600 \
    --add "$VBCALL:/bin/vbcall" --script "$VB_TMP/guest.sh"

qmpc() { "$GUEST_TOOLS/qmp-call.py" "$qmp" "$@"; }
console_count() { [ "$(grep -a -c -- "$1" "$VB_TMP/console.log")" -ge "$2" ]; }
disconnects() { grep -c ' disconnect ' "$VB_TMP/peer.log" || true; }

for round in 1 2; do
    wait_for 180 console_count "STEP unplug-now" $round
    before=$(disconnects)
    qmpc --event DEVICE_DELETED:vbackup0 device_del '{"id": "vbackup0"}' >"$VB_TMP/del.out" ||
        { cat "$VB_TMP/del.out"; fail "round $round: no DEVICE_DELETED for vbackup0"; }
    grep -q '"return": {}' "$VB_TMP/del.out" || { cat "$VB_TMP/del.out"; fail "device_del refused"; }
    kill -0 "$GUEST_PID" || fail "QEMU died on unplug"
    qmpc qom-list '{"path": "/machine/peripheral"}' >"$VB_TMP/qom.out"
    grep -q '"vbackup0"' "$VB_TMP/qom.out" && fail "round $round: vbackup0 still in the machine"
    # the device's connection to the peer was closed when it went away
    wait_for 10 test "$(disconnects)" -gt "$before"
    log "round $round: device deleted, its connection closed"
    wait_for_console 120 "STEP unplugged $round"
    qmpc device_add '{"driver": "virtio-backup-pci", "id": "vbackup0", "chardev": "vb",
                      "bus": "vbport"}' >"$VB_TMP/add.out"
    grep -q '"return": {}' "$VB_TMP/add.out" ||
        { cat "$VB_TMP/add.out"; fail "round $round: device_add with the same id and chardev failed"; }
done

finish_guest
[ "$(grep -a -c '^ok round' "$VB_TMP/console.log")" = 2 ] || fail "the guest did not finish both rounds"
log "ok: two hot-unplug/plug cycles with callers waiting"
