#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The clients' command line: help, version, usage errors (exit 2), and the
# messages for a missing device, a socket nobody listens on, a daemon that
# hangs up, paths that cannot be backed up (exit 1).  The guest tool is a
# static binary.

source "$(dirname "$0")/../integration/functions.sh"
source "$(dirname "$0")/clientlib.sh"

# usage_error PATTERN CMD...: exit status 2 and PATTERN on stderr
usage_error() {
    expect_fail "$@"
    [ "$EXPECT_RC" = 2 ] || fail "exit status $EXPECT_RC (not 2) from: ${*:2}"
}

for tool in "$VBACKUP_TOOL" "$VBCLIENT"; do
    name=$(basename "$tool")
    "$tool" --help | grep -q "^  $name backup PATH... --to TARGET" || fail "$name --help"
    "$tool" help | grep -q "Exit status: 0 success, 1 failure, 2 usage error" || fail "$name help"
    "$tool" --version | grep -qx "$name [0-9.]* (protocol 2)" || fail "$name --version"
    usage_error "no command given" "$tool"
    usage_error "unknown command 'frobnicate'" "$tool" frobnicate
    usage_error "unknown option '--frob'" "$tool" list --frob
    usage_error "option '--to' needs a value" "$tool" backup /x --to
    usage_error "\-\-into does not apply to 'backup'" "$tool" backup /x --to t --into /y
    usage_error "\-\-snapshot does not apply to 'list'" "$tool" list --snapshot x
    usage_error "backup: --to TARGET is required" "$tool" backup /x
    usage_error "backup: name the paths to back up" "$tool" backup --to t
    usage_error "\-\-mode must be full, incremental or differential, not 'sometimes'" \
        "$tool" backup /x --to t --mode sometimes
    usage_error "\-\-freeze-timeout: seconds" "$tool" backup /x --to t --freeze-timeout -1
    usage_error "\-\-dump-freeze-ms needs --dump" "$tool" backup /x --to t --dump-freeze-ms 5
    usage_error "restore: --from TARGET is required" "$tool" restore /x
    usage_error "status \[JOB\]: JOB is a number" "$tool" status abc
    usage_error "cancel JOB: JOB is a number" "$tool" cancel
    usage_error "list takes no arguments" "$tool" list extra
    usage_error "backup-disk: name one disk" "$tool" backup-disk --to t
done
log "help, version and usage errors (exit 2)"

# the device
expect_fail "vbackup: list failed: /dev/vbackup-missing not found: is the virtio_backup module loaded and the VM started with the virtio-backup device?" \
    env VBACKUP_DEVICE=/dev/vbackup-missing "$VBACKUP_TOOL" list --from archive
[ "$EXPECT_RC" = 1 ] || fail "missing device: exit $EXPECT_RC"
expect_fail "backup failed: /dev/vbackup-missing not found" \
    "$VBACKUP_TOOL" backup-disk --device /dev/vbackup-missing --to t some-serial
: > "$VB_TMP/plain"
expect_fail "is neither the vbackup device nor a vbackupd socket" \
    "$VBACKUP_TOOL" status --device "$VB_TMP/plain"
python3 -c "import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])" "$VB_TMP/dead.sock"
expect_fail "cannot connect to vbackupd at $VB_TMP/dead.sock: Connection refused (is vbackupd running?)" \
    "$VBCLIENT" status --device "$VB_TMP/dead.sock"
# a daemon that hangs up at once
python3 - "$VB_TMP/hangup.sock" "$VB_TMP/hangup.ready" <<'EOF' &
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1]); s.listen(8)
open(sys.argv[2], "w").write("ready")
while True:
    c, _ = s.accept()
    c.recv(64)
    c.close()
EOF
HUP=$!
cleanup_fn "kill $HUP 2>/dev/null"
wait_for 10 test -s "$VB_TMP/hangup.ready"
expect_fail "status failed: $VB_TMP/hangup.sock: \(vbackupd closed the connection\|connection to vbackupd lost\)" \
    timeout 10 "$VBCLIENT" status --device "$VB_TMP/hangup.sock"
log "missing device, wrong file, dead socket, hang-up: messages, exit 1"

# paths
expect_fail "backup failed: /nonexistent/x: No such file or directory" \
    "$VBACKUP_TOOL" backup /nonexistent/x --to t --device "$VB_TMP/dead.sock"
expect_fail "backup failed: /proc is on a pseudo file system (proc): nothing to back up" \
    "$VBACKUP_TOOL" backup /proc --to t --device "$VB_TMP/dead.sock"
expect_fail "a backup with vbclient needs --fs-image RAW --serial S" \
    "$VBCLIENT" backup /x --to t --device "$VB_TMP/dead.sock"
head -c 1M /dev/zero > "$VB_TMP/blank.raw"
expect_fail "has no partition table" \
    "$VBCLIENT" backup /x --to t --fs-image "$VB_TMP/blank.raw" --serial s --partition 1 --dump -
expect_fail "opening the ext2/3/4 file system in $VB_TMP/blank.raw at 0" \
    "$VBCLIENT" backup /x --to t --fs-image "$VB_TMP/blank.raw" --serial s --dump -
log "paths: missing, pseudo file system, vbclient without an image"

# the guest tool is static (libc only); not in sanitizer builds
deps=$(ldd "$VBACKUP_TOOL" 2>&1 || true)
case "$deps" in
    *asan*|*ubsan*) log "sanitizer build: vbackup is linked dynamically" ;;
    *"not a dynamic executable"*) log "vbackup is a static binary" ;;
    *) echo "$deps" >&2; fail "$VBACKUP_TOOL is not static" ;;
esac
