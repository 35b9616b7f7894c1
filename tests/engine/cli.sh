#!/usr/bin/env bash
# The command line as users and scripts meet it: clear usage errors, --json
# on every read-only verb, progress on a terminal and silence elsewhere.
source "$(dirname "$0")/../lib.sh"
requires qemu-img
requires script
cd "$T"
R="$T/repo"

expect_fail "unknown command 'frobnicate'" "$V" frobnicate
expect_fail "no repository: give --repo" env -u VBACKUP_REPO "$V" snapshots
expect_fail "is not a vbackup repository" "$V" --repo "$T/nothing" snapshots
# init makes format 2, encrypted unless told otherwise: a password or a choice
expect_fail "no password: .*or choose --encryption none" env -u VBACKUP_PASSWORD_FILE \
    "$V" --repo "$T/new" init
expect_fail "init: --format must be 1 or 2, not '3'" "$V" --repo "$T/new" init --format 3
expect_fail "format 1 is a folder" "$V" --repo s3://bucket/prefix init --format 1
"$V" --repo "$T/plain" init --encryption none | grep -q "(format 2, encryption none)" ||
    fail "init --encryption none"
echo "a password" > pw
"$V" --repo "$T/sealed" --password-file pw init | grep -q "(format 2, encryption aes-256-gcm)" ||
    fail "init with a password file"
[ -f "$T/sealed/config" ] && [ -d "$T/sealed/keys" ] || fail "init made no format 2 repository"
# the daemon's verbs do not open $VBACKUP_REPO, whatever its format
expect_fail "cannot reach vbackupd at $T/no.sock" env VBACKUP_REPO="$T/plain" \
    "$V" --daemon "$T/no.sock" jobs
"$V" --repo "$R" init --format 1 >/dev/null
expect_fail "not a valid VM name" "$V" --repo "$R" backup-disk --vm "../etc" --format raw x.raw
expect_fail "usage: vbackupctl backup-disk" "$V" --repo "$R" backup-disk x.raw
expect_fail "not a valid snapshot id" "$V" --repo "$R" restore-disk "../../etc/passwd" --to x
expect_fail "snapshot vm/2020-01-01T00:00:00Z not found" "$V" --repo "$R" restore-disk vm/2020-01-01T00:00:00Z --to x
expect_fail "open missing.raw: No such file" "$V" --repo "$R" backup-disk --vm vm --format raw missing.raw
expect_fail "unknown format 'vmdk'" "$V" --repo "$R" restore-disk vm/2020-01-01T00:00:00Z --to x --format vmdk
expect_fail "wants a non-negative number" "$V" --repo "$R" prune --keep-last lots
"$V" --help | grep -q "backup-disk" || fail "--help"
VBACKUP_REPO="$R" "$V" snapshots >/dev/null || fail "VBACKUP_REPO is not honoured"

rand_mib d.raw 64
out=$("$V" --repo "$R" backup-disk --vm v1 --format raw d.raw 2>err)
[ ! -s err ] || { cat err; fail "backup-disk wrote to stderr when not on a terminal"; }
id=$(echo "$out" | last_line)

# --json on every read-only verb parses
for verb in "snapshots" "show $id" "verify" "stats" "prune --keep-last 5 --dry-run" "gc --dry-run"; do
    "$V" --repo "$R" $verb --json | python3 -m json.tool >/dev/null || fail "$verb --json is not JSON"
done
"$V" image-map --format raw --json d.raw | python3 -m json.tool >/dev/null || fail "image-map --json"

# progress on a terminal: done / total, percent, rate, ETA
rand_mib e.raw 256
script -qfec "'$V' --repo '$R' backup-disk --vm v2 --threads 1 --format raw e.raw" /dev/null > tty.out
grep -aq "backup .* / 256 MiB .*% .*/s ETA" tty.out || { cat -v tty.out | head; fail "no progress line on a terminal"; }
script -qfec "'$V' --repo '$R' --quiet backup-disk --vm v2 --format raw e.raw" /dev/null > tty.out
grep -aq "ETA" tty.out && fail "--quiet still shows progress"
ok "command line"
