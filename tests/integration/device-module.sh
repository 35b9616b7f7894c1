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
# wait_live N WHAT: poll until the driver holds N requests; the 60 s are a
# safety net (requests are freed when their replies or the device go)
wait_live() {
    i=0
    until [ "$(live)" = "$1" ]; do
        i=$((i + 1))
        [ $i -lt 600 ] || { echo "FAIL $(live) requests allocated after 60 s, want $1: $2"; exit 1; }
        sleep 0.1
    done
}
# kill_waiting SIG: a call that is never answered gets SIG once the driver
# holds its request (a fixed second used to be given instead); the caller
# runs in the foreground, where SIGINT is not ignored
kill_waiting() {
    n=$(live)
    rm -f /tmp/caller.pid
    ( i=0
      until [ -s /tmp/caller.pid ] && [ "$(live)" -gt "$n" ]; do
          i=$((i + 1))
          if [ $i -ge 600 ]; then
              [ -s /tmp/caller.pid ] && kill -KILL "$(cat /tmp/caller.pid)"
              exit 1
          fi
          sleep 0.1
      done
      kill -s "$1" "$(cat /tmp/caller.pid)" ) &
    sh -c 'echo $$ > /tmp/caller.pid; exec vbcall call -p "VBTEST:noreply"' >/dev/null 2>&1 || true
    wait $! || { echo "FAIL the never-answered call did not get its request"; exit 1; }
}
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

# A module in use cannot be unloaded (held open by this shell: no race).
exec 3</dev/vbackup
if rmmod virtio_backup 2>/dev/null; then
    echo "FAIL rmmod succeeded while /dev/vbackup is open"; exit 1
fi
exec 3<&-
echo "ok rmmod refused while /dev/vbackup is open"

# Interrupted calls: buffers are freed when the late replies arrive.
vbcall interrupt
wait_live 0 "the interrupted requests, whose replies come 3 s late"
echo "ok interrupted requests freed after their replies"

# Callers killed while their replies never come: the requests stay on the
# ring until the device goes away, then they are freed.
V=$(basename "$(readlink -f $D/virtio*)")
kill_waiting INT
kill_waiting KILL
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
wait_live 0 "the answered requests (the ring lets go of each after its caller)"
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
