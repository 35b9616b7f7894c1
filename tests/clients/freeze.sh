#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The guest tool's freeze, on a loop-mounted ext4 on the host:
#  * while frozen a writer blocks, and goes on after the thaw
#    (--dump --dump-freeze-ms holds the freeze);
#  * SIGTERM during the freeze thaws at once (exit 1, message);
#  * the watchdog thaws after --freeze-timeout and fails;
#  * a fatal signal (SIGSEGV) thaws from its handler;
#  * fsfreeze hooks run before the freeze and after the thaw, in order, and
#    a failing freeze hook stops the backup before anything is frozen;
#  * with stderr on the frozen file system, messages wait for the thaw;
#  * with a capture peer as the host: view FROZEN keeps the freeze until
#    STATUS says READ_DONE, view SNAPSHOT thaws right after SEAL, and a
#    host that never finishes reading hits the bound: thaw, CANCEL, fail.

source "$(dirname "$0")/../integration/functions.sh"
source "$(dirname "$0")/clientlib.sh"
requires_root
requires mkfs.ext4 -V
requires fsfreeze -V

M=$VB_TMP/mnt
HOOKS=$VB_TMP/hooks
MARK=$VB_TMP/hook.log
SERIAL=freeze-disk

mkdir -p "$VB_TMP/src/d"
for i in $(seq 1 50); do echo "file $i" > "$VB_TMP/src/d/f$i"; done
truncate -s 64M "$VB_TMP/fs.img"
mkfs.ext4 -q -d "$VB_TMP/src" "$VB_TMP/fs.img"
loop_mount "$VB_TMP/fs.img" "$M"
# should a test fail with the file system frozen (a client killed by a
# sanitizer skips its exit handlers), thaw it before the unmount
cleanup_fn "fsfreeze -u '$M' 2>/dev/null"

# hooks: the main one and two in fsfreeze-hook.d, logging their calls
mkdir -p "$HOOKS/fsfreeze-hook.d"
for h in fsfreeze-hook fsfreeze-hook.d/10-first fsfreeze-hook.d/20-second; do
    printf '#!/bin/sh\necho "%s $1" >> %s\n' "$(basename "$h")" "$MARK" > "$HOOKS/$h"
    chmod +x "$HOOKS/$h"
done
printf '#!/bin/sh\necho "not executable"\n' > "$HOOKS/fsfreeze-hook.d/30-not-executable"
# the last hook before FIFREEZE and the first after FITHAW: its time
# (microseconds of /proc/uptime) and the STATUS polls the capture peer has
# logged in $PEER_LOG so far, one line per call in $TIMING
TIMING=$VB_TMP/timing
cat > "$HOOKS/fsfreeze-hook.d/90-timing" <<HOOK
#!/bin/sh
read -r up _ < /proc/uptime
polls=\$(grep -c '"op": "STATUS"' "\${PEER_LOG:-/dev/null}")
echo "\$1 \${up%.*}\${up#*.}0000 \$polls" >> "$TIMING"
HOOK
chmod +x "$HOOKS/fsfreeze-hook.d/90-timing"
export PEER_LOG=

# now: microseconds of CLOCK_BOOTTIME (10 ms steps), which no clock setting moves
now() { local up _; read -r up _ < /proc/uptime; echo "${up%.*}${up#*.}0000"; }
# timing FIELD EVENT: field 2 (time) or 3 (polls) of the 90-timing line of EVENT
timing() { awk -v e="$2" -v f="$1" '$1 == e { print $f; exit }' "$TIMING"; }
# frozen_us: from the last freeze hook to the first thaw hook, in microseconds;
# the freeze lies within
frozen_us() { echo $(( $(timing 2 thaw) - $(timing 2 freeze) )); }

# probe_writer: starts a writer on the file system; its end time goes to
# $VB_TMP/wdone
probe_writer() {
    rm -f "$VB_TMP/wdone"
    ( echo probe > "$M/probe-$RANDOM"; now > "$VB_TMP/wdone" ) &
    WRITER=$!
}

# frozen PID: vbackup PID holds its freeze (its thread "freeze-watchdog" runs
# from after FIFREEZE until the thaw)
frozen() { grep -qx freeze-watchdog /proc/"$1"/task/*/comm; }
frozen_or_ended() { frozen "$1" || ! kill -0 "$1"; }
wait_frozen() {
    wait_for 60 frozen_or_ended "$1"
    frozen "$1" || fail "vbackup ($1) ended before it froze the file system"
}

# writer_blocked PID: a moment after probe_writer, the writer has not finished
# while PID still holds the freeze (one that ended after the thaw proves
# nothing either way, and is not a failure)
writer_blocked() {
    sleep 0.3
    [ ! -e "$VB_TMP/wdone" ] || ! frozen "$1"
}

# writer_done: the probe writer ends once the file system is thawed
writer_done() {
    wait_for 60 test -s "$VB_TMP/wdone"
    wait $WRITER
}

# frozen_s FILE: the freeze time vbackup reported in FILE, in 1/100 s
frozen_s() {
    local f
    f=$(sed -n 's/.*file systems frozen for \([0-9]*\)\.\([0-9][0-9]\) s.*/\1\2/p' "$1" | head -n 1)
    [ -n "$f" ] || { cat "$1"; fail "no freeze time reported in $1"; }
    echo $((10#$f))
}

vb() { "$VBACKUP_TOOL" "$@"; }     # foreground only: "$!" of "vb &" is a subshell

# --- a held freeze blocks writers ------------------------------------------------
: > "$MARK"
: > "$TIMING"
t0=$(now)
"$VBACKUP_TOOL" backup "$M" --dump "$VB_TMP/d.json" --assume-disk "$SERIAL" --hooks "$HOOKS" \
    --dump-freeze-ms 2000 2>"$VB_TMP/vb.err" &
VB=$!
wait_frozen $VB
probe_writer
writer_blocked $VB || fail "a writer finished while the file system was frozen"
wait $VB || { cat "$VB_TMP/vb.err"; fail "vbackup --dump-freeze-ms failed"; }
writer_done
w=$(cat "$VB_TMP/wdone")
# the hold (2 s) is vbackup's: no writer gets through before it ends
[ $((w - t0)) -ge 1800000 ] || fail "the writer finished $(( (w - t0) / 1000 )) ms after the start"
# the report: at least the hold, and within the hooks around the freeze (how
# much longer than the hold is the machine's speed; 20 s is only a safety net)
f=$(frozen_s "$VB_TMP/vb.err")
[ "$f" -ge 200 ] && [ $((f * 10000)) -le "$(frozen_us)" ] && [ "$f" -lt 2000 ] ||
    { cat "$VB_TMP/vb.err" "$TIMING"; fail "frozen for $f/100 s reported, hooks $(frozen_us) us apart"; }
diff <(printf '%s\n' "fsfreeze-hook freeze" "10-first freeze" "20-second freeze" \
       "20-second thaw" "10-first thaw" "fsfreeze-hook thaw") "$MARK" ||
    fail "hooks ran in the wrong order (above)"
ok_lines=$(wc -l < "$VB_TMP/d.json")
[ "$ok_lines" -eq 53 ] || fail "dump has $ok_lines records"
log "held freeze: writer blocked ~2 s, hooks in order"

# --- SIGTERM during the freeze ----------------------------------------------------------
: > "$MARK"
"$VBACKUP_TOOL" backup "$M" --dump "$VB_TMP/d.json" --assume-disk "$SERIAL" --hooks "$HOOKS" \
    --dump-freeze-ms 60000 2>"$VB_TMP/vb.err" &
VB=$!
wait_frozen $VB
probe_writer
writer_blocked $VB || fail "not frozen before SIGTERM"
t0=$(now)
kill -TERM $VB
rc=0
wait $VB || rc=$?
writer_done
[ $rc -eq 1 ] || fail "vbackup exited $rc after SIGTERM"
# the watchdog looks for the signal every 20 ms and the hold would last 60 s:
# 1 s leaves the machine 50 times what the thaw needs
[ $(( $(cat "$VB_TMP/wdone") - t0 )) -lt 1000000 ] || fail "SIGTERM did not thaw at once"
grep -q "interrupted by signal 15; file systems thawed" "$VB_TMP/vb.err" ||
    { cat "$VB_TMP/vb.err"; fail "no message after SIGTERM"; }
grep -q "fsfreeze-hook thaw" "$MARK" || fail "thaw hook not run after SIGTERM"
log "SIGTERM: thawed within $(( ($(cat "$VB_TMP/wdone") - t0) / 1000 )) ms"

# --- the watchdog ----------------------------------------------------------------------------
# measured between the hooks around the freeze, not from the start of the
# process: the bound (1 s) must not cut the freeze short, and must end it
# long before the hold (30 s); 2 s more is ample for syncfs and a hook
: > "$TIMING"
expect_fail "freeze bound of 1 s exceeded; thawed" \
    vb backup "$M" --dump "$VB_TMP/d.json" --assume-disk "$SERIAL" --freeze-timeout 1 \
    --dump-freeze-ms 30000 --hooks "$HOOKS"
el=$(( $(frozen_us) / 1000 ))
[ $el -ge 990 ] && [ $el -lt 3000 ] || fail "watchdog: hooks $el ms apart"
probe_writer
writer_done
log "watchdog: thawed and failed after $el ms"

# --- a fatal signal thaws from its handler ----------------------------------------------------
: > "$MARK"
( ulimit -c 0; exec "$VBACKUP_TOOL" backup "$M" --dump "$VB_TMP/d.json" --assume-disk "$SERIAL" \
    --hooks "$HOOKS" --dump-freeze-ms 60000 ) 2>/dev/null &
VB=$!
wait_frozen $VB
probe_writer
writer_blocked $VB || fail "not frozen before SIGSEGV"
t0=$(now)
kill -SEGV $VB
wait $VB || true
writer_done
# the handler thaws at once; the hold would last 60 s
[ $(( $(cat "$VB_TMP/wdone") - t0 )) -lt 1000000 ] || fail "SIGSEGV did not thaw"
log "SIGSEGV: thawed by the handler within $(( ($(cat "$VB_TMP/wdone") - t0) / 1000 )) ms"

# --- a failing freeze hook: nothing is frozen ---------------------------------------------------
: > "$MARK"
printf '#!/bin/sh\necho "25-fails $1" >> %s\n[ "$1" != freeze ]\n' "$MARK" \
    > "$HOOKS/fsfreeze-hook.d/25-fails"
chmod +x "$HOOKS/fsfreeze-hook.d/25-fails"
expect_fail "fsfreeze hook .*25-fails freeze failed (status 1)" \
    vb backup "$M" --dump "$VB_TMP/d.json" --assume-disk "$SERIAL" --hooks "$HOOKS" \
    --dump-freeze-ms 100
diff <(printf '%s\n' "fsfreeze-hook freeze" "10-first freeze" "20-second freeze" \
       "25-fails freeze" "20-second thaw" "10-first thaw" "fsfreeze-hook thaw") "$MARK" ||
    fail "hooks after a failing freeze hook (above)"
rm "$HOOKS/fsfreeze-hook.d/25-fails"
log "failing freeze hook: backup stopped, earlier hooks thawed"

# --- stderr on the frozen file system -----------------------------------------------------------
# a path longer than the protocol names (65535 bytes): a problem, said while frozen
python3 - "$M" <<'EOF'
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
for _ in range(262):
    os.mkdir("d" * 250, dir_fd=fd)
    nfd = os.open("d" * 250, os.O_RDONLY, dir_fd=fd)
    os.close(fd)
    fd = nfd
EOF
rc=0
timeout 20 "$VBACKUP_TOOL" backup "$M" --dump "$VB_TMP/d.json" --assume-disk "$SERIAL" \
    --dump-freeze-ms 300 2>"$M/vbackup.log" || rc=$?
[ $rc = 3 ] || { cat "$M/vbackup.log"; fail "vbackup with stderr on the frozen fs: exit $rc"; }
grep -q "path longer than 65535 bytes; not backed up" "$M/vbackup.log" ||
    { cat "$M/vbackup.log"; fail "the held message was lost"; }
rm -rf "$M/$(printf 'd%.0s' $(seq 250))" "$M/vbackup.log"
log "stderr on the frozen file system: held until the thaw"

# --- with a host (capture peer): view FROZEN ------------------------------------------------------
SOCK=$VB_TMP/vm.sock
start_peer "$SOCK" --log "$VB_TMP/peer.log" --view frozen --read-done-after 8 --done-after 10
: > "$MARK"
: > "$TIMING"
PEER_LOG=$VB_TMP/peer.log "$VBACKUP_TOOL" backup "$M" --to archive --device "$SOCK" \
    --assume-disk "$SERIAL" --hooks "$HOOKS" >"$VB_TMP/vb.out" 2>"$VB_TMP/vb.err" &
VB=$!
wait_frozen $VB
probe_writer
writer_blocked $VB || fail "view FROZEN: not frozen while the host reads"
wait $VB || { cat "$VB_TMP/vb.err"; fail "backup with view FROZEN"; }
writer_done
# the thaw came right after the STATUS that had READ_DONE (the 8th poll), not
# before and not a poll later: what the peer had logged when the thaw hook ran
[ "$(timing 3 thaw)" = 8 ] ||
    { cat "$TIMING"; fail "view FROZEN: thawed after $(timing 3 thaw) STATUS polls, not 8"; }
# polls 100 ms apart: the freeze lasted at least 0.7 s
f=$(frozen_s "$VB_TMP/vb.out")
[ "$f" -ge 50 ] || { cat "$VB_TMP/vb.out"; fail "view FROZEN: frozen for only $f/100 s"; }
[ "$(tail -n1 "$VB_TMP/vb.out")" = "capture/0001" ] || fail "the last line is not the snapshot id"
polls=$(grep -c '"op": "STATUS"' "$VB_TMP/peer.log")
[ "$polls" -ge 10 ] || fail "only $polls STATUS polls"
no_violations "$VB_TMP/peer.log"
stop_peer
log "view FROZEN: frozen until READ_DONE ($(grep -o 'frozen for [0-9.]* s' "$VB_TMP/vb.out"))"

# --- view SNAPSHOT: thaw right after SEAL ------------------------------------------------------------
start_peer "$SOCK" --log "$VB_TMP/peer2.log" --view snapshot --read-done-after 8 --done-after 10
: > "$TIMING"
PEER_LOG=$VB_TMP/peer2.log vb backup "$M" --to archive --device "$SOCK" --assume-disk "$SERIAL" \
    --hooks "$HOOKS" >"$VB_TMP/vb.out" 2>"$VB_TMP/vb.err" ||
    { cat "$VB_TMP/vb.err"; fail "view SNAPSHOT"; }
# thawed right after SEAL: before the first STATUS poll (a duration would
# be the machine's speed)
[ "$(timing 3 thaw)" = 0 ] ||
    { cat "$TIMING"; fail "view SNAPSHOT: thawed after $(timing 3 thaw) STATUS polls, not at SEAL"; }
frozen_s "$VB_TMP/vb.out" >/dev/null
stop_peer
log "view SNAPSHOT: $(grep -o 'frozen for [0-9.]* s' "$VB_TMP/vb.out")"

# --- a host that never finishes reading: bound, thaw, CANCEL -------------------------------------------
start_peer "$SOCK" --log "$VB_TMP/peer3.log" --view frozen --never-read-done
: > "$TIMING"
expect_fail "backup failed: freeze bound of 1.5 s exceeded; thawed" \
    vb backup "$M" --to archive --device "$SOCK" --assume-disk "$SERIAL" --freeze-timeout 1.5 \
    --hooks "$HOOKS"
# between the hooks around the freeze: not before the bound, and by it
el=$(( $(frozen_us) / 1000 ))
[ $el -ge 1490 ] && [ $el -lt 3500 ] || fail "bound: hooks $el ms apart"
grep -q '"op": "CANCEL", "job": 1' "$VB_TMP/peer3.log" || fail "the job was not cancelled"
probe_writer
writer_done
stop_peer
log "host never done: thawed after the bound, job cancelled ($el ms)"

# --- --no-freeze: nothing frozen, the job says so ------------------------------------------------------
start_peer "$SOCK" --log "$VB_TMP/peer4.log" --view frozen
vb backup "$M" --to archive --device "$SOCK" --assume-disk "$SERIAL" --no-freeze \
    >"$VB_TMP/vb.out" 2>"$VB_TMP/vb.err" || { cat "$VB_TMP/vb.err"; fail "--no-freeze"; }
! grep -q "frozen for" "$VB_TMP/vb.out" || fail "--no-freeze reported a freeze"
grep -q '"flags": 1' "$VB_TMP/peer4.log" || fail "--no-freeze: BEGIN without VB_BEGIN_UNFROZEN"
grep -q '"flags": 0' "$VB_TMP/peer.log" || fail "a frozen backup with VB_BEGIN_UNFROZEN"
stop_peer
log "--no-freeze: no freeze"
