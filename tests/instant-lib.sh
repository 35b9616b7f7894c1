# Helpers for the instant-access tests (sourced after lib.sh): vbackupctl's
# foreground commands (export, boot-from, mount) run in the background of
# a test and are waited for by what they print, never by sleeping.

: "${VBACKUP_NBDKIT_PLUGIN:?VBACKUP_NBDKIT_PLUGIN must name the built nbdkit plugin (meson sets it)}"

declare -A _bg_pid

# start_export NAME REPO COMMAND ARGS...: vbackupctl --repo REPO COMMAND ARGS
# in the background (output in $T/NAME.out, .err), until it says it serves
# ("exporting ... at URI", boot-from's "ready", mount's "mounted")
start_export() {
    local name=$1 repo=$2 pid start=$SECONDS
    shift 2
    "$V" --repo "$repo" "$@" > "$T/$name.out" 2> "$T/$name.err" &
    pid=$!
    _bg_pid[$name]=$pid
    cleanup_add "kill ${pid} 2>/dev/null; wait ${pid} 2>/dev/null"
    until grep -q '^exporting \|^ready$\|^mounted ' "$T/$name.out" 2>/dev/null; do
        if ! kill -0 "$pid" 2>/dev/null; then
            cat "$T/$name.out" "$T/$name.err" >&2
            fail "vbackupctl $* ended before it served"
        fi
        [ $((SECONDS - start)) -lt 120 ] || fail "vbackupctl $* did not serve within 120 s"
        sleep 0.05
    done
}

# export_uri NAME: the URI an export printed
export_uri() { sed -n 's/^exporting .* at //p' "$T/$1.out"; }

# stop_export NAME SIGNAL: the command must end with status 0
stop_export() {
    local pid=${_bg_pid[$1]} rc=0
    kill -"$2" "$pid"
    wait "$pid" || rc=$?
    [ "$rc" = 0 ] || { cat "$T/$1.out" "$T/$1.err" >&2; fail "vbackupctl ($1) exited $rc on SIG$2"; }
}

# wait_exit NAME: wait for the command to end by itself (status 0)
wait_exit() {
    local pid=${_bg_pid[$1]} rc=0
    wait "$pid" || rc=$?
    [ "$rc" = 0 ] || { cat "$T/$1.out" "$T/$1.err" >&2; fail "vbackupctl ($1) exited $rc"; }
}

# a TCP port on the loopback that nothing listens on now
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# FUSE for the mount tests: fuse3 (fusermount3) is installed by
# scripts/install-deps; the kernel's fuse module is loaded when missing.
# Skipped (77) only when the kernel cannot provide /dev/fuse.
ensure_fuse() {
    if ! command -v fusermount3 >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fuse3 >/dev/null 2>&1 || true
    fi
    command -v fusermount3 >/dev/null 2>&1 ||
        fail "fusermount3 is missing (scripts/install-deps installs fuse3)"
    [ -c /dev/fuse ] || modprobe fuse 2>/dev/null || true
    [ -c /dev/fuse ] || { echo "SKIP: the kernel provides no FUSE (no /dev/fuse after modprobe fuse)"; exit 77; }
}
