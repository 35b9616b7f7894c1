#!/usr/bin/env bash
# Faults: a full target disk, a backup killed mid-way, two backups at once
# into one repository, gc waiting for running backups.  Each leaves no half
# snapshot visible, the repository passes verify, and the next backup works.
source "$(dirname "$0")/../lib.sh"
requires qemu-img
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root to mount a small tmpfs"; exit 77; }
cd "$T"

# ---- ENOSPC: a repository on a 24 MiB tmpfs, a disk with 48 MiB of noise ----
mkdir small
mount -t tmpfs -o size=24m vbtest-small small
cleanup_add "umount -l '$T/small'"
R=small/repo
"$V" --repo "$R" init --format 1 >/dev/null
rand_mib noise.raw 48
expect_fail "No space left on device" "$V" --repo "$R" backup-disk --vm full --format raw noise.raw
[ "$(n_snapshots "$R")" = 0 ] || fail "a snapshot appeared after ENOSPC"
"$V" --repo "$R" verify >/dev/null || fail "verify after ENOSPC"
# the partial chunks are garbage: gc frees them, and a small backup fits
"$V" --repo "$R" gc --json > g.json
[ "$(json_get '["chunks_removed"]' < g.json)" -gt 0 ] || fail "gc found no leftovers after ENOSPC"
rand_mib small.raw 4
id=$("$V" --repo "$R" backup-disk --vm full --format raw small.raw | last_line)
"$V" --repo "$R" restore-disk "$id" --to small.back
cmp small.raw small.back || fail "restore after ENOSPC differs"
# grow the filesystem: the big backup succeeds now
mount -o remount,size=128m small
id=$("$V" --repo "$R" backup-disk --vm full --format raw noise.raw | last_line)
"$V" --repo "$R" restore-disk "$id" --to noise.back
cmp noise.raw noise.back || fail "restore of the big backup differs"
ok "ENOSPC leaves a consistent repository"

# ---- killed mid-backup -------------------------------------------------------
R="$T/repo"
"$V" --repo "$R" init --format 1 >/dev/null
rand_mib big.raw 768
# a backup under way: its temporary snapshot exists (and none is left over,
# after SIGKILL gc removes it)
tmp_snapshot() { ls -a "$R/snapshots/killed" | grep -q '^\.tmp-'; }
begun_or_ended() { tmp_snapshot || ! kill -0 "$pid"; }
for sig in KILL INT TERM; do
    "$V" --repo "$R" backup-disk --vm killed --threads 1 --format raw big.raw > k.out 2>&1 &
    pid=$!
    wait_until 60 "the backup to begin its snapshot" begun_or_ended
    kill -0 "$pid" 2>/dev/null || fail "backup finished before SIG$sig (make the disk larger)"
    kill -$sig "$pid"
    rc=0; wait "$pid" || rc=$?
    [ "$rc" != 0 ] || fail "backup interrupted by SIG$sig exited 0"
    [ "$(n_snapshots "$R")" = 0 ] || fail "a half snapshot is visible after SIG$sig"
    if [ $sig = KILL ]; then
        tmp_snapshot || fail "no trace of the killed backup (test broken?)"
        "$V" --repo "$R" gc --json > g.json
        [ "$(json_get '["temporary_removed"]' < g.json)" -ge 1 ] || fail "gc did not clear the killed backup"
    else
        grep -q "interrupted" k.out || { cat k.out; fail "SIG$sig: no 'interrupted' message"; }
        tmp_snapshot && fail "SIG$sig left a temporary snapshot"
    fi
    "$V" --repo "$R" verify >/dev/null || fail "verify after SIG$sig"
done
id=$("$V" --repo "$R" backup-disk --vm killed --format raw big.raw | last_line)
"$V" --repo "$R" restore-disk "$id" --to big.back
cmp big.raw big.back || fail "backup after the kills restores wrong bytes"
rm -f big.back
ok "interrupted backups leave nothing visible; the next backup works"

# ---- two backups at once into one repository, sharing data -----------------
rand_mib a.raw 96
cp a.raw b.raw
dd if=/dev/urandom of=b.raw bs=1M count=8 seek=40 conv=notrunc status=none
"$V" --repo "$R" backup-disk --vm conc-a --format raw a.raw > a.out 2>&1 &
pa=$!
"$V" --repo "$R" backup-disk --vm conc-b --format raw b.raw > b.out 2>&1 &
pb=$!
wait $pa || { cat a.out; fail "concurrent backup a failed"; }
wait $pb || { cat b.out; fail "concurrent backup b failed"; }
"$V" --repo "$R" restore-disk "$(last_line < a.out)" --to a.back
"$V" --repo "$R" restore-disk "$(last_line < b.out)" --to b.back
cmp a.raw a.back && cmp b.raw b.back || fail "concurrent backups restore wrong bytes"
"$V" --repo "$R" verify >/dev/null || fail "verify after concurrent backups"
ok "two concurrent backups both succeed"

# ---- the lock: gc waits for running backups, backups wait for gc ------------
# No clock: the lock is held (flock MODE) until the test lets it go, after the
# waiter has said that it waits; a waiter that does not wait has ended by
# then, and lets go only when the lock is released.
requires flock
hold_lock() {           # hold_lock -s|-x: take the repository's lock, keep it
    rm -f held release
    flock "$1" "$R/lock" sh -c ': > held; while [ ! -e release ]; do sleep 0.05; done' &
    HOLDER=$!
    wait_until 30 "flock $1 $R/lock" test -e held
}
release_lock() { : > release; wait $HOLDER; }
waits_for_lock() {      # waits_for_lock PID OUT: PID says so in OUT and is still waiting
    wait_until 60 "'waiting for the repository lock' from $1" grep -q "waiting for the repository lock" "$2"
    kill -0 "$1" 2>/dev/null || { cat "$2"; fail "$1 went on although the lock was held"; }
}
hold_lock -s            # what a running backup holds
"$V" --repo "$R" gc > g.out 2>&1 &
gc=$!
waits_for_lock $gc g.out
release_lock
wait $gc || { cat g.out; fail "gc failed"; }
grep -q "other operations are running" g.out || fail "gc does not say why it waits"
hold_lock -x            # what gc holds
"$V" --repo "$R" backup-disk --vm lock --format raw a.raw > l.out 2>&1 &
bk=$!
waits_for_lock $bk l.out
release_lock
wait $bk || { cat l.out; fail "backup after gc"; }
grep -q "garbage collection is running" l.out || fail "backup does not say it waits for gc"
"$V" --repo "$R" restore-disk "$(last_line < l.out)" --to l.back
cmp a.raw l.back || fail "backup that waited for gc restores wrong bytes"
"$V" --repo "$R" verify >/dev/null || fail "verify"
wait
ok "gc and backups exclude each other"
