#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The guest driver's lifecycle: 20 unload/load cycles with a call each and
# no kernel warnings or memory growth; interrupted calls free their buffers
# once answered; unbinding the device wakes every waiting caller with
# ENODEV and it binds again; malformed descriptor chains (test ioctl,
# vb_test_malformed=1) are answered or refused by QEMU without harm, and a
# device that QEMU marked broken works again after the driver resets it.

source "$(dirname "$0")/functions.sh"
requires python3 --version

guest_artifacts
sock=$VB_TMP/vb.sock
start_echo_peer "$sock"

cat >"$VB_TMP/guest.sh" <<'GUEST'
set -e
P=/sys/module/virtio_backup/parameters
D=/sys/bus/virtio/drivers/virtio_backup
KO=/lib/modules/$(uname -r)/extra/virtio_backup.ko
live() { cat $P/live_requests; }
mem() { awk '/^(Slab|VmallocUsed):/ { s += $2 } END { print s }' /proc/meminfo; }
reload() {
    rmmod virtio_backup
    insmod $KO vb_test_malformed=1
    [ -e /dev/vbackup ]
}

vbcall call -e >/dev/null

# Unload/load cycles.
reload; vbcall echo -n 20 -z 70000 >/dev/null   # warm up caches
before=$(mem)
i=0
while [ $i -lt 20 ]; do
    reload
    vbcall call -e >/dev/null
    vbcall echo -n 3 -z 70000 >/dev/null
    i=$((i + 1))
done
after=$(mem)
echo "ok 20 unload/load cycles; slab+vmalloc ${before} kB -> ${after} kB"
[ $((after - before)) -lt 2048 ] || { echo "FAIL memory grew by $((after - before)) kB"; exit 1; }

# A module in use cannot be unloaded.
sleep 3 </dev/vbackup &
sleep 0.5
if rmmod virtio_backup 2>/dev/null; then
    echo "FAIL rmmod succeeded while /dev/vbackup is open"; exit 1
fi
wait
echo "ok rmmod refused while /dev/vbackup is open"

# Interrupted calls: buffers are freed when the late replies arrive.
vbcall interrupt
sleep 4
[ "$(live)" = 0 ] || { echo "FAIL $(live) requests still allocated"; exit 1; }
echo "ok interrupted requests freed after their replies"

# Callers killed while their replies never come: the requests stay on the
# ring until the device goes away, then they are freed.
V=$(basename "$(readlink -f $D/virtio*)")
timeout -s INT 1 vbcall call -p "VBTEST:noreply" >/dev/null 2>&1 || true
timeout -s KILL 1 vbcall call -p "VBTEST:noreply" >/dev/null 2>&1 || true
[ "$(live)" = 2 ] || { echo "FAIL $(live) requests allocated, want 2"; exit 1; }
echo "$V" >$D/unbind
[ "$(live)" = 0 ] || { echo "FAIL $(live) requests after unbind"; exit 1; }
echo "$V" >$D/bind
echo "ok requests of killed callers freed when the device went away"

# Device removal with callers waiting.
vbcall removal -n 8 -u $D/unbind -v "$V"
echo "$V" >$D/bind
[ -e /dev/vbackup ]
vbcall call -e >/dev/null
echo "ok device bound again after removal"

# Malformed descriptor chains.
vbcall raw-malformed
vbcall call -e >/dev/null
vbcall zerolen
reload
vbcall call -e >/dev/null
echo "ok device works again after the driver reset it"
vbcall concurrent -n 32 -i 2 -d 50
sleep 0.5
[ "$(live)" = 0 ] || { echo "FAIL $(live) requests still allocated"; exit 1; }
echo "ok no requests left allocated"
dmesg | grep -E 'WARNING|BUG|Oops|refcount|leak' && { echo "FAIL kernel warnings"; exit 1; }
echo "ok dmesg clean"
GUEST

rc=0
"$GUEST_TOOLS/run-guest" --log "$VB_TMP/console.log" --vbackup-socket "$sock" \
    --timeout 300 --add "$VBCALL:/bin/vbcall" --script "$VB_TMP/guest.sh" \
    --append "virtio_backup.vb_test_malformed=1" 2>"$VB_TMP/run-guest.err" || rc=$?
cat "$VB_TMP/run-guest.err" >&2
guest_result $rc
# QEMU said why it refused the zero-sized buffer, and kept running.
grep -q 'zero sized buffers are not allowed' "$VB_TMP/run-guest.err" ||
    fail "QEMU did not report the zero-sized buffer"
log "ok"
