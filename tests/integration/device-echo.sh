#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The transport end to end: guest tool -> virtio_backup.ko -> virtio-backup
# device -> UNIX socket -> echo peer, and back.  One guest boot runs:
# single and sequential round trips, 32 concurrent callers with distinct
# payloads, more callers than ring entries, the largest frames both ways,
# replies that break the rules (oversized, stray tag, split, garbage), bad
# frames from the guest, and signals.  On the host: the device's tags are
# unique and not the guest's, reply_max comes from the reply buffer, the
# device blocks migration, x-query-virtio-status knows it, and QMP answers
# while the peer stops reading (writes to the socket never block QEMU).

source "$(dirname "$0")/functions.sh"
requires python3 --version

guest_artifacts
sock=$VB_TMP/vb.sock
qmp=$VB_TMP/qmp.sock
start_echo_peer "$sock"

cat >"$VB_TMP/guest.sh" <<'GUEST'
set -e
echo "STEP booted"
vbcall call -e -p hello
vbcall call -e -c 100 -p reply-max-check
vbcall echo -n 20 -z 100
vbcall echo -n 5 -z 1
vbcall echo -n 5 -z 4096
vbcall echo -n 5 -z 65536
vbcall echo -n 3 -z 200000
vbcall concurrent -n 32 -i 4 -d 200
vbcall concurrent -n 200 -i 1 -d 1000
vbcall big
vbcall badframes
vbcall interrupt
vbcall peerproto
vbcall wait-ok -T 30
vbcall concurrent -n 8 -i 2 -d 50
# The peer stops reading (until the host lets it go on) while 1 MB frames
# queue up in QEMU.
live() { cat /sys/module/virtio_backup/parameters/live_requests; }
# until_live OP N WHAT: poll the driver's request count (60 s: a safety net)
until_live() {
    i=0
    until [ "$(live)" "$1" "$2" ]; do
        i=$((i + 1))
        [ $i -lt 600 ] || { echo "FAIL $(live) requests allocated after 60 s: $3"; exit 1; }
        sleep 0.1
    done
}
until_live -eq 0 "the earlier requests (interrupted ones are answered 3 s late)"
vbcall call -p "VBTEST:stall=hold" >/dev/null
until_live -eq 0 "the stall request"
vbcall echo -n 6 -z 1000000 &
until_live -ge 1 "the first 1 MB frame on the ring"
echo "STEP stalled"
wait $!
until_live -eq 0 "the echoed requests"
echo "ok no requests left allocated"
GUEST

start_guest --vbackup-socket "$sock" --qmp "$qmp" --timeout 300 \
    --add "$VBCALL:/bin/vbcall" --script "$VB_TMP/guest.sh"

# While the guest runs: the device blocks migration, and QMP can describe it.
wait_for_console 120 "STEP booted"
"$GUEST_TOOLS/qmp-call.py" "$qmp" \
    migrate '{"uri": "exec:cat >/dev/null"}' -- \
    x-query-virtio-status '{"path": "/machine/peripheral/vbackup0/virtio-backend"}' \
    >"$VB_TMP/qmp.out"
cat "$VB_TMP/qmp.out"
sed -n 1p "$VB_TMP/qmp.out" | grep -q '"error".*virtio-backup does not support migration' ||
    fail "migration was not blocked"
sed -n 2p "$VB_TMP/qmp.out" | grep -q '"name": "virtio-backup"' ||
    fail "x-query-virtio-status does not show the device"
sed -n 2p "$VB_TMP/qmp.out" | grep -q '"device-id": 63' ||
    fail "x-query-virtio-status: wrong device id"

# QEMU's main loop keeps running while the peer does not read.  The stall
# lasts until SIGUSR1 below, so the answer cannot come from after it; a QEMU
# blocked in a write would not answer at all (qmp-call's 30 s are the
# safety net).  Not a duration: that would be the machine's speed.
wait_for_console 120 "STEP stalled"
"$GUEST_TOOLS/qmp-call.py" "$qmp" query-status >"$VB_TMP/qmp-stall.out" ||
    fail "QMP did not answer while the peer stalled"
grep -q '"running": true' "$VB_TMP/qmp-stall.out" || fail "query-status: $(cat "$VB_TMP/qmp-stall.out")"
kill -USR1 "$PEER_PID"
log "QMP answered while the peer stalled"

finish_guest

# Host side: tags are the device's own, unique, and not the guest's.
frames=$(grep -c ' frame ' "$VB_TMP/peer.log")
unique=$(sed -n 's/.* frame .*tag=\([0-9]*\) .*/\1/p' "$VB_TMP/peer.log" | sort -u | wc -l)
[ "$frames" -gt 300 ] || fail "only $frames frames reached the peer"
[ "$frames" -eq "$unique" ] || fail "$frames frames but $unique distinct tags"
grep -q ' frame .*tag=4660 ' "$VB_TMP/peer.log" &&
    fail "the guest's tag (0x1234) reached the peer"
grep -q ' frame .*reply_max=68 ' "$VB_TMP/peer.log" ||
    fail "reply_max of a 100-byte reply buffer is not 68"
log "$frames frames, all with distinct device tags"
