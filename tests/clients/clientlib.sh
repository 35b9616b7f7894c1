# SPDX-License-Identifier: GPL-2.0-or-later
# Helpers for the client tests (tests/clients/*.sh), sourced after
# tests/integration/functions.sh:
#
#   VBCLIENT, VBACKUP_TOOL    the two clients (meson sets them)
#   start_peer SOCK [opts]    tests/clients/capture-peer.py, sets PEER_PID
#   make_tree DIR             the standard tree of odd files
#   loop_mount IMG DIR [opts] mount an image (cleanup registered)
#   dump_compare A B [--ignore F,...]   two --dump files, record by record
#   expect_fail PATTERN CMD...          exit status 1 (2 usage: see EXPECT_RC) and
#                                       PATTERN on stderr
#   expect_incomplete PATTERN CMD...    exit status 3 (done, but not all) and PATTERN

export CLIENTS_DIR=$VB_SRCDIR/tests/clients
PEER_PY=$CLIENTS_DIR/capture-peer.py
: "${VBCLIENT:=${VB_BUILDDIR:-$VB_SRCDIR/build}/tests/vbclient/vbclient}"
: "${VBACKUP_TOOL:=${VB_BUILDDIR:-$VB_SRCDIR/build}/guest-driver/vbackup}"
[ -x "$VBCLIENT" ] || fail "VBCLIENT ($VBCLIENT) is not built"
[ -x "$VBACKUP_TOOL" ] || fail "VBACKUP_TOOL ($VBACKUP_TOOL) is not built"

requires_root() {
    if [ "$(id -u)" != 0 ]; then
        echo "$TEST_NAME: test skipped: needs root (loop devices, mount, freeze)" >&2
        exit 77
    fi
}

# start_peer SOCK [capture-peer options]: sets PEER_PID
start_peer() {
    local sock=$1
    shift
    rm -f "$VB_TMP/peer.ready" "$sock"
    python3 "$PEER_PY" --socket "$sock" --ready-file "$VB_TMP/peer.ready" "$@" \
        2>>"$VB_TMP/peer.stderr" &
    PEER_PID=$!
    cleanup_fn "kill $PEER_PID 2>/dev/null; wait $PEER_PID 2>/dev/null"
    wait_for 20 test -s "$VB_TMP/peer.ready"
}

stop_peer() {
    kill "$PEER_PID" 2>/dev/null || true
    wait "$PEER_PID" 2>/dev/null || true
}

# no_violations LOG: the capture peer saw no broken rule
no_violations() {
    if grep -q '"violation"' "$1"; then
        grep '"violation"' "$1" | head -5 >&2
        fail "the capture peer saw protocol violations (above)"
    fi
}

# make_tree DIR: regular files of many sizes, an empty file, a sparse file
# with holes, a sparse file of more than 4 GiB, fast and slow symlinks, hard
# links, a fifo, a device node, names with spaces and UTF-8.
make_tree() {
    local d=$1 i
    mkdir -p "$d/dir/sub/deeper" "$d/with space" "$d/ünïcödé ✓"
    for i in 0 1 100 511 4095 4096 4097 65536 1048575 3145735; do
        head -c "$i" /dev/urandom > "$d/dir/size-$i"
    done
    : > "$d/empty"
    echo "hello" > "$d/a.txt"
    head -c 300000 /dev/urandom > "$d/with space/file with spaces.bin"
    echo "ü ✓" > "$d/ünïcödé ✓/ファイル.txt"
    python3 - "$d" <<'EOF'
import os, sys
d = sys.argv[1]
with open(os.path.join(d, "sparse"), "wb") as f:
    f.seek(10 << 20); f.write(os.urandom(5000))
    f.seek(50 << 20); f.write(b"tail")
    f.truncate(80 << 20)
with open(os.path.join(d, "big-sparse"), "wb") as f:
    f.seek(1 << 20); f.write(os.urandom(70000))
    f.seek((4 << 30) + 12345); f.write(os.urandom(4096))
    f.truncate((5 << 30) + 7)
with open(os.path.join(d, "hole-only"), "wb") as f:
    f.truncate(3 << 20)
EOF
    ln -s a.txt "$d/fast-link"
    ln -s "$(printf 'target-%.0s' {1..20})/x" "$d/slow-link"
    ln -s "ünïcödé ✓/ファイル.txt" "$d/utf8-link"
    ln "$d/a.txt" "$d/dir/hard-link"
    ln "$d/a.txt" "$d/with space/hard link 2"
    mkfifo "$d/fifo"
    if [ "$(id -u)" = 0 ]; then
        mknod "$d/null" c 1 3
        mknod "$d/blk" b 7 200
    fi
    chmod 4755 "$d/dir/size-100"
    chmod 0600 "$d/dir/size-0"
    chown 1234:5678 "$d/dir/size-1" 2>/dev/null || true
    touch -d '2001-02-03 04:05:06.123456789 UTC' "$d/dir/size-511"
    touch -h -d '1999-12-31 23:59:59.5 UTC' "$d/fast-link"
}

# loop_mount IMAGE DIR [mount options]
loop_mount() {
    mkdir -p "$2"
    mount -o "loop${3:+,$3}" "$1" "$2"
    cleanup_fn "umount '$2' 2>/dev/null"
}

# dump_compare A B [fields to ignore, comma separated]: the same records in
# the same order
dump_compare() {
    python3 - "$1" "$2" "${3:-}" <<'EOF' || fail "dumps $1 and $2 differ (above)"
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
ignore = set(x for x in sys.argv[3].split(",") if x)
bad = 0
if len(a) != len(b):
    print(f"{len(a)} records against {len(b)}")
    pa = [r.get("path", r.get("path_hex")) for r in a]
    pb = [r.get("path", r.get("path_hex")) for r in b]
    print("only in first:", sorted(set(pa) - set(pb))[:10])
    print("only in second:", sorted(set(pb) - set(pa))[:10])
    bad = 1
for x, y in zip(a, b):
    keys = (set(x) | set(y)) - ignore
    diff = {k: (x.get(k), y.get(k)) for k in keys if x.get(k) != y.get(k)}
    if diff:
        bad += 1
        if bad < 10:
            short = {k: (str(v[0])[:200], str(v[1])[:200]) for k, v in diff.items()}
            print(x.get("path"), short)
sys.exit(1 if bad else 0)
EOF
}

# dump_get FILE PATH FIELD: one field of one record (JSON)
dump_get() {
    python3 - "$@" <<'EOF'
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    if r["path"] == sys.argv[2]:
        print(json.dumps(r[sys.argv[3]]) if sys.argv[3] in r else "null")
        break
else:
    sys.exit(f"{sys.argv[2]} not in {sys.argv[1]}")
EOF
}

# expect_fail PATTERN CMD...: CMD exits 1 (not 0, not a crash) with PATTERN
# on stderr
expect_fail() {
    local pat=$1 rc=0
    shift
    "$@" >"$VB_TMP/out" 2>"$VB_TMP/err" || rc=$?
    [ "$rc" -ne 0 ] || fail "expected a failure: $*"
    [ "$rc" -le 2 ] || { cat "$VB_TMP/err" >&2; fail "exit $rc (crash?) from: $*"; }
    grep -q -- "$pat" "$VB_TMP/err" || {
        cat "$VB_TMP/err" >&2
        fail "stderr of '$*' lacks '$pat'"
    }
    EXPECT_RC=$rc
}

expect_incomplete() {
    local pat=$1 rc=0
    shift
    "$@" >"$VB_TMP/out" 2>"$VB_TMP/err" || rc=$?
    [ "$rc" = 3 ] || { cat "$VB_TMP/err" >&2; fail "exit $rc, not 3 (incomplete), from: $*"; }
    grep -q -- "$pat" "$VB_TMP/err" || {
        cat "$VB_TMP/err" >&2
        fail "stderr of '$*' lacks '$pat'"
    }
}
