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
#   6 vbackupctl straight into a bucket: backup-disk of a disk into an
#     encrypted format 2 repository on radosgw, an incremental after a change
#     storing only that, each snapshot restored (raw and qcow2) equal to the
#     disk as it was, a files snapshot (copied in) restored by restore-files
#     and listed by ls, forget + gc on the bucket, the rest still restoring
#     and verify --read-data clean
#   7 vbackupctl copy between version 2 repositories through a bucket: a
#     local plain one (a disk backed up into it, a files snapshot copied in)
#     into an encrypted bucket (again: nothing copied), the bucket into a
#     local one encrypted with another password, each disk restored equal
#     to what was backed up, the files equal to version 1's restore; the
#     bucket is not copied into itself
#   8 vbackupd with its target in a bucket, reached only through the
#     [target] keys (endpoint, region, addressing, credentials_file; the
#     daemon runs without AWS_* variables) and its password file: the file
#     backups and restores of tests/daemon/daemon-files.py (full,
#     incremental, differential, fallback data, guest and host restores,
#     verify, gc) against radosgw
#   9 two vbackupd ("two hosts": own folders, sockets and index caches) with
#     one [target]: the same s3://vbhosts/site, password file and [target]
#     keys (tests/s3/s3-hosts.py): host 2's copy of a file host 1 stored
#     adds nothing to the bucket's data/ (radosgw-admin lists it); both back
#     up at once, twice, while vbackupctl gc runs in a loop and snapshots
#     are forgotten: every gc succeeds, every job ends done; host 1 killed
#     (SIGKILL) while its job uploads: host 2's job ends done, a gc at once
#     keeps host 1's packs (its lease is live), a gc after the lease expired
#     (VBACKUP_TEST_LEASE_EXPIRY=8) brings data/ back to what the snapshots
#     hold; host 1 restarted backs up again; every snapshot restored by
#     restore-files equal to its disk, verify --read-data clean
#  10 radosgw stopped and started (ceph-cluster stop-rgw, start-rgw) while a
#     vbackupd job uploads: the job ends done, or failed with a reason and
#     a retry ends done; gc leaves only what the snapshot holds; it restores
#     equal to the disk
#  11 S3 Object Lock and a
#     backup-only credential (docs/deploy.md, "Ransomware protection"): init
#     with object_lock makes the bucket with Object Lock; a second radosgw
#     user, whom the bucket policy lets read, list and put but never delete,
#     backs a disk up twice and restores it; its forget and gc fail naming
#     s3:DeleteObject and leave no maintenance lock; its DELETE of a pack
#     (and of a version) is refused, the owner's DELETE of a locked pack
#     version too; an attacker with the owner's keys deletes every object
#     and the snapshots vanish; the delete markers made since the attack are
#     removed and the snapshots restore again; forget and gc by the owner
#     then work on the locked bucket, what is kept restores and verifies
# Each step's time follows its line.  The seed is printed (set VB_S3_SEED
# to replay one; steps 9 and 10 make their files' contents from it).  Needs
# root and the Ceph packages of scripts/install-deps.
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

echo "1..11"
start=$(date +%s)
if ! "$VB_SRCDIR/tests/ceph/ceph-cluster" up "$tmp/ceph" > "$tmp/env" 2> "$tmp/up.log"; then
    sed 's/^/# /' "$tmp/up.log"
    echo "Bail out! the Ceph cluster did not start"
    exit 1
fi
sed 's/^/# /' "$tmp/up.log"
. "$tmp/env"

s3adm() { python3 "$VB_SRCDIR/tests/s3/s3-admin.py" "$@"; }

n=0
run() {     # run NAME COMMAND...: one TAP line, the command's output as comments
    n=$((n + 1))
    name=$1; shift
    t0=$(date +%s)
    if "$@" > "$tmp/out" 2>&1; then
        echo "ok $n - $name"
        grep -E '^(s3-faults|fault-proxy|s3-hosts):' "$tmp/out" | sed 's/^/# /' || true
    else
        echo "not ok $n - $name"
        sed 's/^/# /' "$tmp/out"
    fi
    echo "# $n: $(( $(date +%s) - t0 )) s"
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
    "$VBACKUPCTL" --repo "$d/v1" --quiet init --format 1 || return 1
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

direct_s3() {   # backups into a bucket and restores from it, no local repository
    d="$tmp/direct"
    loc="s3://vbdirect/host1"
    mkdir -p "$d" || return 1
    printf 'the bucket password\n' > "$d/pw"
    export VBACKUP_PASSWORD_FILE="$d/pw"
    head -c 10M /dev/urandom > "$d/disk.raw" && truncate -s 24M "$d/disk.raw" || return 1
    "$VBACKUPCTL" --repo "$loc" init --format 2 --encryption aes-256-gcm || return 1
    id1=$("$VBACKUPCTL" --repo "$loc" backup-disk --vm s3vm --name vda --format raw \
          "$d/disk.raw" | tail -n 1) || return 1
    cp --sparse=always "$d/disk.raw" "$d/disk1.raw" || return 1
    # a changed MiB: the second backup stores that chunk, not the disk
    head -c 1M /dev/urandom | dd of="$d/disk.raw" bs=1M seek=2 conv=notrunc status=none || return 1
    "$VBACKUPCTL" --repo "$loc" backup-disk --vm s3vm --name vda --format raw \
        "$d/disk.raw" > "$d/out" || return 1
    id2=$(tail -n 1 "$d/out")
    "$VBACKUPCTL" --repo "$loc" show "$id2" --json > "$d/show.json" || return 1
    python3 -c 'import json, sys; s = json.load(open(sys.argv[1]))["stats"]
sys.exit(not (s["bytes_new"] == 4 << 20 and s["bytes_dedup"] == 8 << 20))' "$d/show.json" ||
        { cat "$d/out" "$d/show.json"; echo "the second backup stored more than the changed chunk"; return 1; }
    "$VBACKUPCTL" --repo "$loc" --quiet restore-disk "$id2" --to "$d/back2.raw" || return 1
    cmp "$d/disk.raw" "$d/back2.raw" || return 1
    "$VBACKUPCTL" --repo "$loc" --quiet restore-disk "$id1" --to "$d/back1.qcow2" \
        --format qcow2 || return 1
    qemu-img compare -q -f raw -F qcow2 "$d/disk1.raw" "$d/back1.qcow2" || return 1
    # a files snapshot (made in a version 1 repository, copied into the bucket)
    "$VBACKUPCTL" --repo "$d/v1" --quiet init --format 1 || return 1
    printf '{"vm": "s3vm", "time": "2026-01-01T00:00:00Z", "roots": ["etc"], "entries": [
      {"path": "etc", "type": "dir"},
      {"path": "etc/motd", "type": "reg", "data": "hello from the bucket\\n"},
      {"path": "etc/big", "type": "reg", "data_rand": 3000000, "data_seed": 5}]}' > "$d/spec.json"
    fid=$(python3 "$VB_SRCDIR/tests/engine/mkfilesnap.py" "$d/v1" "$d/spec.json") || return 1
    "$VBACKUPCTL" --quiet copy --from "$d/v1" --to "$loc" "$fid" || return 1
    "$VBACKUPCTL" --repo "$loc" ls "$fid" | grep -q " /etc/motd$" || return 1
    "$VBACKUPCTL" --repo "$loc" --quiet restore-files "$fid" --to "$d/files" || return 1
    "$VBACKUPCTL" --repo "$d/v1" --quiet restore-files "$fid" --to "$d/files1" || return 1
    [ "$(cat "$d/files/etc/motd")" = "hello from the bucket" ] || return 1
    cmp "$d/files/etc/big" "$d/files1/etc/big" || return 1
    # forget the first, gc: the second still restores, every blob verifies
    "$VBACKUPCTL" --repo "$loc" --quiet forget "$id1" || return 1
    "$VBACKUPCTL" --repo "$loc" gc || return 1
    "$VBACKUPCTL" --repo "$loc" --quiet restore-disk "$id2" --to "$d/back2b.raw" || return 1
    cmp "$d/disk.raw" "$d/back2b.raw" || return 1
    "$VBACKUPCTL" --repo "$loc" verify --read-data
}
run "vbackupctl: backup-disk into s3://, restore-disk, restore-files, ls, gc" direct_s3

copy_v2_s3() {  # version 2 local -> bucket -> local, each side its own password
    d="$tmp/copy2"
    loc="s3://vbcopy2/site2"
    mkdir -p "$d" || return 1
    unset VBACKUP_PASSWORD_FILE     # direct_s3's: each side is given its own here
    printf 'the bucket password\n' > "$d/pws"
    printf 'the local password\n' > "$d/pwl"
    head -c 5M /dev/urandom > "$d/disk.raw" && truncate -s 12M "$d/disk.raw" || return 1
    "$VBACKUPCTL" --repo "$d/a" --quiet init --format 2 --encryption none || return 1
    id=$("$VBACKUPCTL" --repo "$d/a" backup-disk --vm s3vm --name vda --format raw \
         "$d/disk.raw" | tail -n 1) || return 1
    "$VBACKUPCTL" --repo "$d/v1" --quiet init --format 1 || return 1
    printf '{"vm": "s3vm", "time": "2026-01-01T00:00:00Z", "roots": ["etc"], "entries": [
      {"path": "etc", "type": "dir", "mode": 448},
      {"path": "etc/motd", "type": "reg", "data": "hello through the bucket\\n", "mode": 384},
      {"path": "etc/big", "type": "reg", "data_rand": 3000000, "data_seed": 6}]}' > "$d/spec.json"
    fid=$(python3 "$VB_SRCDIR/tests/engine/mkfilesnap.py" "$d/v1" "$d/spec.json") || return 1
    "$VBACKUPCTL" --quiet copy --from "$d/v1" --to "$d/a" || return 1
    "$VBACKUPCTL" --repo "$loc" --quiet init --format 2 --password-file "$d/pws" || return 1
    "$VBACKUPCTL" copy --from "$d/a" --to "$loc" --password-file "$d/pws" > "$d/out" || return 1
    grep -q "copy: 2 copied, 0 already there, 0 failed" "$d/out" || { cat "$d/out"; return 1; }
    "$VBACKUPCTL" copy --from "$d/a" --to "$loc" --password-file "$d/pws" > "$d/out" || return 1
    grep -q "copy: 0 copied, 2 already there" "$d/out" || { cat "$d/out"; return 1; }
    rc=0; "$VBACKUPCTL" copy --from "$loc" --to "$loc" --from-password-file "$d/pws" \
        --password-file "$d/pws" > "$d/out" 2>&1 || rc=$?
    [ "$rc" = 1 ] && grep -q "one repository" "$d/out" || { cat "$d/out"; return 1; }
    "$VBACKUPCTL" --repo "$d/b" --quiet init --format 2 --password-file "$d/pwl" || return 1
    "$VBACKUPCTL" copy --from "$loc" --from-password-file "$d/pws" --to "$d/b" \
        --password-file "$d/pwl" > "$d/out" || return 1
    grep -q "^$id -> $id " "$d/out" && grep -q "^$fid -> $fid " "$d/out" || { cat "$d/out"; return 1; }
    "$VBACKUPCTL" --repo "$d/b" --quiet restore-disk "$id" --to "$d/back.raw" \
        --password-file "$d/pwl" || return 1
    cmp "$d/disk.raw" "$d/back.raw" || return 1
    "$VBACKUPCTL" --repo "$d/b" --quiet restore-files "$fid" --to "$d/files" \
        --password-file "$d/pwl" || return 1
    "$VBACKUPCTL" --repo "$d/v1" --quiet restore-files "$fid" --to "$d/files1" || return 1
    [ "$(cat "$d/files/etc/motd")" = "hello through the bucket" ] || return 1
    cmp "$d/files/etc/big" "$d/files1/etc/big" || return 1
    [ "$(stat -c %a "$d/files/etc/motd") $(stat -c %a "$d/files/etc")" = "600 700" ] || return 1
    "$VBACKUPCTL" --repo "$d/b" verify --read-data --password-file "$d/pwl"
}
run "vbackupctl: copy from a version 2 folder into s3:// and back into another" copy_v2_s3
keys_file() {   # keys_file FILE ACCESS_KEY SECRET: an AWS credentials file, 0600
    ( umask 077 && printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' \
        "$2" "$3" > "$1" )
}
daemon_s3() {   # vbackupd writing to a bucket
    d="$tmp/daemon"
    loc="s3://vbdaemon/host1"
    mkdir -p "$d" || return 1
    printf 'the daemon bucket password\n' > "$d/pw"
    keys_file "$d/keys" "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" || return 1
    VBACKUP_PASSWORD_FILE="$d/pw" "$VBACKUPCTL" --repo "$loc" --quiet init --format 2 \
        --encryption aes-256-gcm || return 1
    VBACKUP_PASSWORD_FILE="$d/pw" VB_TEST_FORMAT=2 VB_TEST_TARGET="$loc" \
        VB_TEST_TARGET_KEYS="endpoint=$AWS_ENDPOINT_URL;region=$AWS_REGION;addressing=path;credentials_file=$d/keys" \
        python3 "$VB_SRCDIR/tests/daemon/daemon-files.py"
}
run "vbackupd: file backups and restores with its target in s3:// ([target] keys)" daemon_s3

hosts_s3() {    # hosts_s3 PREFIX [rgw-restart]: tests/s3/s3-hosts.py on s3://vbhosts/PREFIX
    d="$tmp/hosts-$1"
    loc="s3://vbhosts/$1"
    mkdir -p "$d" || return 1
    printf 'the shared bucket password\n' > "$d/pw"
    keys_file "$d/keys" "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" || return 1
    VBACKUP_PASSWORD_FILE="$d/pw" "$VBACKUPCTL" --repo "$loc" --quiet init --format 2 \
        --encryption aes-256-gcm || return 1
    VBACKUP_PASSWORD_FILE="$d/pw" VB_TEST_FORMAT=2 VB_HOSTS_TARGET="$loc" VB_TEST_TARGET="$loc" \
        VB_TEST_TARGET_KEYS="endpoint=$AWS_ENDPOINT_URL;region=$AWS_REGION;addressing=path;credentials_file=$d/keys" \
        VB_S3_SEED="$seed" VBACKUP_TEST_LEASE_EXPIRY=8 \
        python3 "$VB_SRCDIR/tests/s3/s3-hosts.py" ${2:-}
}
run "two vbackupd on one bucket: dedup, gc racing the backups, a killed writer reclaimed" \
    hosts_s3 site
run "vbackupd: radosgw stopped and started during a backup" hosts_s3 restart rgw-restart

lock_s3() (     # Object Lock, a backup-only credential, an attacker, the recovery
    # (a subshell: the unset below stays in it)
    d="$tmp/lock"
    b=vblock
    loc="s3://$b/host1"
    mkdir -p "$d" || return 1
    unset VBACKUP_PASSWORD_FILE     # unencrypted: what is tested is the bucket
    "$VBACKUPCTL" --store-option object_lock=1 --repo "$loc" --quiet init --format 2 \
        --encryption none || return 1
    s3adm req GET "$b" "" "object-lock=" | grep -q "<ObjectLockEnabled>Enabled<" || return 1
    # a second user; the bucket's policy lets it read, list and put, never delete
    radosgw-admin -c "$VB_CEPH_DIR/ceph.conf" user create --uid backup --display-name backup \
        > "$d/user.json" 2>/dev/null || return 1
    python3 -c 'import json, sys; k = json.load(open(sys.argv[1]))["keys"][0]
print("%s %s" % (k["access_key"], k["secret_key"]))' "$d/user.json" > "$d/backup.pair" || return 1
    read -r bkid bksecret < "$d/backup.pair"
    keys_file "$d/backup-keys" "$bkid" "$bksecret" || return 1
    sed "s/@B@/$b/g" > "$d/policy.json" <<'POLICY'
{"Version": "2012-10-17", "Statement": [
  {"Effect": "Allow", "Principal": {"AWS": ["arn:aws:iam:::user/backup"]},
   "Action": ["s3:GetObject", "s3:PutObject", "s3:ListBucket", "s3:ListBucketVersions",
              "s3:PutObjectRetention",
              "s3:GetBucketObjectLockConfiguration", "s3:ListBucketMultipartUploads",
              "s3:AbortMultipartUpload"],
   "Resource": ["arn:aws:s3:::@B@", "arn:aws:s3:::@B@/*"]},
  {"Effect": "Deny", "Principal": {"AWS": ["arn:aws:iam:::user/backup"]},
   "Action": ["s3:DeleteObject", "s3:DeleteObjectVersion", "s3:BypassGovernanceRetention"],
   "Resource": ["arn:aws:s3:::@B@", "arn:aws:s3:::@B@/*"]}]}
POLICY
    s3adm policy "$b" "$d/policy.json" || return 1
    bk="--store-option credentials_file=$d/backup-keys --store-option object_lock=1"
    head -c 6M /dev/urandom > "$d/disk.raw" && truncate -s 16M "$d/disk.raw" || return 1
    id1=$("$VBACKUPCTL" $bk --repo "$loc" backup-disk --vm lockvm --name vda --format raw \
          "$d/disk.raw" | tail -n 1) || return 1
    cp "$d/disk.raw" "$d/disk1.raw" || return 1
    head -c 1M /dev/urandom | dd of="$d/disk.raw" bs=1M seek=1 conv=notrunc status=none || return 1
    id2=$("$VBACKUPCTL" $bk --repo "$loc" backup-disk --vm lockvm --name vda --format raw \
          "$d/disk.raw" | tail -n 1) || return 1
    "$VBACKUPCTL" $bk --repo "$loc" --quiet restore-disk "$id2" --to "$d/back2.raw" || return 1
    cmp "$d/disk.raw" "$d/back2.raw" || return 1
    # what it cannot do: forget, gc (leaving no lock behind), delete a pack
    for cmd in "forget $id1" gc; do
        rc=0; "$VBACKUPCTL" $bk --repo "$loc" $cmd > "$d/out" 2>&1 || rc=$?
        [ "$rc" = 1 ] && grep -q "may not delete objects (s3:DeleteObject)" "$d/out" ||
            { echo "$cmd with the backup-only credential: exit $rc"; cat "$d/out"; return 1; }
    done
    [ "$(s3adm req HEAD "$b" host1/locks/maintenance | head -n 1)" = 404 ] ||
        { echo "the refused gc left its lock"; return 1; }
    pack=$(s3adm versions "$b" host1/data/ | awk '$3 == "latest" && $4 == "object" { print $1; exit }')
    vid=$(s3adm versions "$b" "$pack" | awk '{ print $2; exit }')
    [ -n "$pack" ] && [ -n "$vid" ] || { echo "no pack listed"; return 1; }
    AWS_ACCESS_KEY_ID=$bkid AWS_SECRET_ACCESS_KEY=$bksecret s3adm req DELETE "$b" "$pack" \
        > "$d/out" || true
    [ "$(head -n 1 "$d/out")" = 403 ] || { echo "backup-only DELETE of $pack"; cat "$d/out"; return 1; }
    AWS_ACCESS_KEY_ID=$bkid AWS_SECRET_ACCESS_KEY=$bksecret s3adm req DELETE "$b" "$pack" \
        "versionId=$vid" > "$d/out" || true
    [ "$(head -n 1 "$d/out")" = 403 ] || { echo "backup-only DELETE of a version"; cat "$d/out"; return 1; }
    # the owner cannot delete the locked version either
    s3adm req DELETE "$b" "$pack" "versionId=$vid" > "$d/out" || true
    [ "$(head -n 1 "$d/out")" = 403 ] && grep -q AccessDenied "$d/out" ||
        { echo "the owner deleted a locked version of $pack"; cat "$d/out"; return 1; }
    # an attacker with the owner's keys deletes every object: the snapshots vanish
    sleep 1
    attack=$(date +%s)
    hidden=$(s3adm delete-all "$b" host1/) || return 1
    echo "attacker: $hidden objects hidden by delete markers"
    "$VBACKUPCTL" --repo "$loc" snapshots > "$d/out" 2>&1 || true
    ! grep -q "$id1" "$d/out" || { echo "the snapshot is still listed"; cat "$d/out"; return 1; }
    # recovery: remove the delete markers made since the attack
    undone=$(s3adm undelete "$b" host1/ "$attack") || return 1
    echo "recovery: $undone delete markers removed"
    "$VBACKUPCTL" --repo "$loc" --quiet restore-disk "$id1" --to "$d/back1.raw" || return 1
    cmp "$d/disk1.raw" "$d/back1.raw" || return 1
    # forget and gc by the owner work on the locked bucket (removes are delete markers)
    "$VBACKUPCTL" --store-option object_lock=1 --repo "$loc" --quiet forget "$id1" || return 1
    "$VBACKUPCTL" --store-option object_lock=1 --repo "$loc" gc || return 1
    "$VBACKUPCTL" --repo "$loc" --quiet restore-disk "$id2" --to "$d/back2b.raw" || return 1
    cmp "$d/disk.raw" "$d/back2b.raw" || return 1
    "$VBACKUPCTL" --repo "$loc" verify --read-data
)
run "S3 Object Lock, a backup-only credential, an attack undone" lock_s3

echo "# s3 suite: $(( $(date +%s) - start )) s including the cluster's start and stop"
