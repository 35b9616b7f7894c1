# SPDX-License-Identifier: GPL-2.0-or-later
# Helpers for the integration tests, sourced by each test script (bash).
#
#   source "$(dirname "$0")/functions.sh"
#
# Gives: set -e, a work folder $VB_TMP (removed on success, kept and named on
# failure), cleanup_fn to register cleanup commands (run in reverse order on
# exit), requires to skip (exit 77) only when a requirement cannot exist,
# guest_artifacts, start_echo_peer / stop_echo_peer, start_guest /
# wait_guest / finish_guest, wait_for and wait_for_console.

set -e
set -o pipefail

VB_SRCDIR=${VB_SRCDIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
GUEST_TOOLS=$VB_SRCDIR/tests/guest
TEST_NAME=$(basename "$0" .sh)

_cleanup_fns=()
cleanup_fn() { _cleanup_fns+=("$*"); }

_run_cleanup() {
    local rc=$? i
    set +e
    for ((i = ${#_cleanup_fns[@]} - 1; i >= 0; i--)); do
        eval "${_cleanup_fns[$i]}"
    done
    if [ $rc -eq 0 ] || [ $rc -eq 77 ]; then
        rm -rf "$VB_TMP"
    else
        echo "$TEST_NAME: FAILED (status $rc); logs kept in $VB_TMP" >&2
    fi
    exit $rc
}
trap _run_cleanup EXIT
trap 'exit 130' INT TERM

VB_TMP=$(mktemp -d "${TMPDIR:-/tmp}/vbtest.$TEST_NAME.XXXXXX")

log() { echo "$TEST_NAME: $*" >&2; }
fail() { log "FAIL: $*"; exit 1; }

# requires CMD...: skip the test if CMD fails (a missing tool, no kernel).
requires() {
    if ! "$@" >/dev/null 2>&1; then
        echo "$TEST_NAME: test skipped because this failed: $*" >&2
        exit 77
    fi
}

# wait_for SECONDS CMD...: retry CMD every 0.1 s until it succeeds.
wait_for() {
    local timeout=$1 start=$SECONDS
    shift
    until "$@" 2>/dev/null; do
        if [ $((SECONDS - start)) -ge "$timeout" ]; then
            fail "timed out after $timeout s waiting for: $*"
        fi
        sleep 0.1
    done
}

# wait_for_console SECONDS PATTERN: wait for PATTERN in the guest console.
# Fails early if the guest has already ended.
wait_for_console() {
    local timeout=$1 pattern=$2 start=$SECONDS
    until grep -q -a -- "$pattern" "$VB_TMP/console.log" 2>/dev/null; do
        if [ -n "${GUEST_PID:-}" ] && ! kill -0 "$GUEST_PID" 2>/dev/null; then
            grep -q -a -- "$pattern" "$VB_TMP/console.log" && return 0
            fail "guest ended before printing '$pattern'"
        fi
        if [ $((SECONDS - start)) -ge "$timeout" ]; then
            fail "timed out after $timeout s waiting for '$pattern' on the console"
        fi
        sleep 0.1
    done
}

# Build (or find in the cache) QEMU, module, kernel, initramfs, vbcall.
guest_artifacts() {
    local a
    a=$("$GUEST_TOOLS/artifacts") || fail "tests/guest/artifacts failed"
    eval "$a"
}

# start_echo_peer SOCKET [echo-peer options]: sets PEER_PID.
start_echo_peer() {
    local sock=$1
    shift
    rm -f "$VB_TMP/peer.ready"
    python3 "$GUEST_TOOLS/echo-peer.py" --socket "$sock" \
        --ready-file "$VB_TMP/peer.ready" --log "$VB_TMP/peer.log" "$@" \
        2>>"$VB_TMP/peer.stderr" &
    PEER_PID=$!
    cleanup_fn "kill $PEER_PID 2>/dev/null; wait $PEER_PID 2>/dev/null"
    wait_for 20 test -s "$VB_TMP/peer.ready"
}

# stop_echo_peer [SIGNAL]: stop the peer started last (default SIGTERM).
stop_echo_peer() {
    kill -s "${1:-TERM}" "$PEER_PID" 2>/dev/null || true
    wait "$PEER_PID" 2>/dev/null || true
}

# start_guest [run-guest options] [--] COMMAND: boots in the background
# with the console in $VB_TMP/console.log; sets GUEST_PID.
start_guest() {
    : >"$VB_TMP/console.log"
    "$GUEST_TOOLS/run-guest" --log "$VB_TMP/console.log" "$@" &
    GUEST_PID=$!
    cleanup_fn "kill $GUEST_PID 2>/dev/null; wait $GUEST_PID 2>/dev/null"
}

# wait_guest: wait for the guest started by start_guest; returns its status.
wait_guest() {
    local rc=0
    wait "$GUEST_PID" || rc=$?
    GUEST_PID=
    return $rc
}

# The console must not show kernel warnings, oopses or leaks.
check_console_clean() {
    if grep -a -n -E 'WARNING:|BUG:|Oops|general protection|Call Trace|refcount_t:|KASAN|kmemleak' \
            "$VB_TMP/console.log"; then
        fail "kernel problems on the console (above)"
    fi
}

# guest_result STATUS: show the guest's ok/FAIL lines and fail on a non-zero
# status (of run-guest), a FAIL line or kernel problems on the console.
guest_result() {
    grep -a -E '^(ok|FAIL)' "$VB_TMP/console.log" || true
    [ "$1" -eq 0 ] || fail "guest checks failed (status $1)"
    check_console_clean
    if grep -a -q '^FAIL' "$VB_TMP/console.log"; then
        fail "a guest check failed"
    fi
}

# finish_guest: wait for the guest started by start_guest, then guest_result.
finish_guest() {
    local rc=0
    wait_guest || rc=$?
    guest_result $rc
}
