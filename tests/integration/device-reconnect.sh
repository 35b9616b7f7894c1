#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The device when vbackupd is absent or goes away: with no peer every call is
# answered VB_S_UNAVAILABLE at once; once a peer listens the chardev
# reconnects by itself and calls succeed; a peer that closes the connection
# or dies with calls in flight fails all of them with VB_S_UNAVAILABLE, and
# nothing hangs.

source "$(dirname "$0")/functions.sh"
requires python3 --version

guest_artifacts
sock=$VB_TMP/vb.sock

cat >"$VB_TMP/guest.sh" <<'GUEST'
set -e
# No peer yet.
vbcall unavailable -m 2000
echo "STEP start-peer"
vbcall wait-ok -T 30
vbcall call -e
vbcall concurrent -n 16 -i 2 -d 100
# The peer hangs up with nine calls in flight.
vbcall closemid -n 8
vbcall wait-ok -T 30
# The peer dies with eight calls in flight: vbcall says when they are.
vbcall hold -n 8 -s 1 -m 15000 -S "STEP kill-peer"
vbcall unavailable -m 2000
echo "STEP restart-peer"
vbcall wait-ok -T 30
vbcall concurrent -n 32 -i 2 -d 100
GUEST

start_guest --vbackup-socket "$sock" --timeout 300 \
    --add "$VBCALL:/bin/vbcall" --script "$VB_TMP/guest.sh"

wait_for_console 120 "STEP start-peer"
start_echo_peer "$sock"
wait_for_console 120 "STEP kill-peer"
stop_echo_peer KILL
log "peer killed"
wait_for_console 120 "STEP restart-peer"
start_echo_peer "$sock"

finish_guest
connects=$(grep -c ' connect ' "$VB_TMP/peer.log")
[ "$connects" -ge 3 ] || fail "expected at least 3 connections, saw $connects"
log "ok: $connects connections"
