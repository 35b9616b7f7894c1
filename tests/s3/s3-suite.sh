#!/bin/sh
# The 's3' suite: starts one throw-away Ceph cluster (tests/ceph/ceph-cluster)
# for all of it, then runs, as TAP:
#   1 test-repo-store-s3: the store conformance cases against radosgw (path
#     and virtual-host addressing) and the S3-only cases
#   2 s3-faults through tests/s3/fault-proxy.py, 10 tries per request: every
#     operation succeeds with the right data, nothing partial in the bucket
#   3 the same with 2 tries per request: many operations fail, all cleanly
#   4 seed 14 with 10 tries: it drops the answer to an If-None-Match put on a
#     kept-alive connection, which curl then sends again by itself (the 412
#     that follows must be checked, not taken for another writer's object)
#   5 vbackupctl: an encrypted format 2 repository made in a new bucket,
#     a version 1 repository's disk snapshot copied into it (again: nothing
#     copied), restored from the bucket equal to the disk, verified reading
#     every blob
# The seed is printed (set VB_S3_SEED to replay one).  Needs root and the
# Ceph packages of scripts/install-deps.
set -eu
: "${VB_SRCDIR:?run through meson test}"
: "${VB_TEST_REPO_STORE_S3:?}" "${VB_S3_FAULTS:?}"

tmp=$(mktemp -d /tmp/vb-s3-suite-XXXXXX)
proxy_pid=
cleanup() {
    [ -z "$proxy_pid" ] || kill "$proxy_pid" 2>/dev/null || true
    "$VB_SRCDIR/tests/ceph/ceph-cluster" down "$tmp/ceph" || true
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

echo "1..5"
start=$(date +%s)
if ! "$VB_SRCDIR/tests/ceph/ceph-cluster" up "$tmp/ceph" > "$tmp/env" 2> "$tmp/up.log"; then
    sed 's/^/# /' "$tmp/up.log"
    echo "Bail out! the Ceph cluster did not start"
    exit 1
fi
sed 's/^/# /' "$tmp/up.log"
. "$tmp/env"

n=0
run() {     # run NAME COMMAND...: one TAP line, the command's output as comments
    n=$((n + 1))
    name=$1; shift
    if "$@" > "$tmp/out" 2>&1; then
        echo "ok $n - $name"
        grep -E '^(s3-faults|fault-proxy):' "$tmp/out" | sed 's/^/# /' || true
    else
        echo "not ok $n - $name"
        sed 's/^/# /' "$tmp/out"
    fi
}

run test-repo-store-s3 "$VB_TEST_REPO_STORE_S3"

seed=${VB_S3_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
echo "# seed $seed (VB_S3_SEED=$seed replays it)"
faults() {  # faults ATTEMPTS SEED
    rm -f "$tmp/proxy.port"
    python3 "$VB_SRCDIR/tests/s3/fault-proxy.py" --upstream "127.0.0.1:${AWS_ENDPOINT_URL##*:}" \
        --seed "$2" --rate 0.25 --port-file "$tmp/proxy.port" 2> "$tmp/proxy.log" &
    proxy_pid=$!
    i=0
    until [ -s "$tmp/proxy.port" ]; do
        kill -0 "$proxy_pid" 2>/dev/null || { cat "$tmp/proxy.log"; return 1; }
        i=$((i + 1)); [ $i -lt 300 ] || { echo "the proxy did not start"; return 1; }
        sleep 0.1
    done
    rc=0
    "$VB_S3_FAULTS" "http://127.0.0.1:$(cat "$tmp/proxy.port")" "$2" 250 "$1" || rc=$?
    kill "$proxy_pid"
    wait "$proxy_pid" 2>/dev/null || true
    proxy_pid=
    cat "$tmp/proxy.log"
    return $rc
}
run "faults, 10 tries per request" faults 10 "$seed"
run "faults, 2 tries per request" faults 2 "$((seed + 1))"
run "faults, seed 14: a re-sent If-None-Match put" faults 10 14

copy_s3() {     # vbackupctl copy into a bucket, and back
    d="$tmp/copy"
    loc="s3://vbcopy/site1"
    mkdir -p "$d" || return 1
    head -c 6M /dev/urandom > "$d/disk.raw" && truncate -s 16M "$d/disk.raw" || return 1
    "$VBACKUPCTL" --repo "$d/v1" --quiet init || return 1
    id=$("$VBACKUPCTL" --repo "$d/v1" backup-disk --vm s3vm --format raw "$d/disk.raw" |
         tail -n 1) || return 1
    printf 'a password for the bucket\n' > "$d/pw"
    "$VBACKUPCTL" --repo "$loc" init --format 2 --password-file "$d/pw" || return 1
    "$VBACKUPCTL" copy --from "$d/v1" --to "$loc" --password-file "$d/pw" > "$d/out" || return 1
    grep -q "^$id -> $id " "$d/out" || { cat "$d/out"; return 1; }
    "$VBACKUPCTL" copy --from "$d/v1" --to "$loc" --password-file "$d/pw" > "$d/out" || return 1
    grep -q "copy: 0 copied, 1 already there" "$d/out" || { cat "$d/out"; return 1; }
    "$VBACKUPCTL" --repo "$loc" --quiet restore-disk "$id" --to "$d/back.raw" \
        --password-file "$d/pw" || return 1
    cmp "$d/disk.raw" "$d/back.raw" || return 1
    "$VBACKUPCTL" --repo "$loc" verify --read-data --password-file "$d/pw"
}
run "vbackupctl: init, copy, restore-disk and verify on s3://" copy_s3
echo "# s3 suite: $(( $(date +%s) - start )) s including the cluster's start and stop"
