#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Replies out of order: the peer answers in batches of eight in reverse
# order, so every caller must get its own reply by tag, not by position.

source "$(dirname "$0")/functions.sh"
requires python3 --version

guest_artifacts
sock=$VB_TMP/vb.sock
start_echo_peer "$sock" --reverse 8

cat >"$VB_TMP/guest.sh" <<'GUEST'
set -e
vbcall concurrent -n 48 -i 4 -d 0
vbcall echo -n 3 -z 1000
vbcall big
GUEST

rc=0
"$GUEST_TOOLS/run-guest" --log "$VB_TMP/console.log" --vbackup-socket "$sock" \
    --timeout 300 --add "$VBCALL:/bin/vbcall" --script "$VB_TMP/guest.sh" || rc=$?
grep -a -E '^(ok|FAIL)' "$VB_TMP/console.log" || true
[ $rc -eq 0 ] || fail "guest checks failed (status $rc)"
check_console_clean

# The replies really left the peer in another order than the frames came.
sed -n 's/.* frame .*tag=\([0-9]*\) .*/\1/p' "$VB_TMP/peer.log" >"$VB_TMP/in.order"
sed -n 's/.* reply tag=\([0-9]*\) .*/\1/p' "$VB_TMP/peer.log" >"$VB_TMP/out.order"
[ -s "$VB_TMP/out.order" ] || fail "no replies logged"
cmp -s "$VB_TMP/in.order" "$VB_TMP/out.order" && fail "replies came in request order"
moved=$(paste "$VB_TMP/in.order" "$VB_TMP/out.order" | awk '$1 != $2' | wc -l)
log "ok: $moved of $(wc -l <"$VB_TMP/in.order") replies out of request order"
