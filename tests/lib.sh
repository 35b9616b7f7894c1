# Shared helpers for vbackup's shell tests (sourced).  nbdkit's manner:
# set -e, declare requirements, clean up with a trap.
set -euo pipefail

: "${VBACKUPCTL:?VBACKUPCTL must point at the vbackupctl binary (meson sets it)}"
V="$VBACKUPCTL"
SRC="${VB_SRCDIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"

T=$(mktemp -d "${TMPDIR:-/tmp}/vbtest.XXXXXX")
_cleanups=()
cleanup_add() { _cleanups+=("$*"); }
_run_cleanups() {
    local rc=$?
    for ((i = ${#_cleanups[@]} - 1; i >= 0; i--)); do eval "${_cleanups[$i]}" || true; done
    rm -rf "$T"
    exit $rc
}
trap _run_cleanups EXIT

requires() {
    # a requirement that cannot exist here means skip (77); CI installs everything
    command -v "$1" >/dev/null 2>&1 || { echo "SKIP: $1 not installed"; exit 77; }
}

# The repository format a test runs on: meson runs some tests once per
# format.  VB_TEST_FORMAT=1 (the default) or 2; VB_TEST_ENCRYPTION (format 2:
# none by default) makes encrypted ones, their password in a file that
# VBACKUP_PASSWORD_FILE names, as a user would keep it.
repo_format=${VB_TEST_FORMAT:-1}
repo_init() {   # DIR: a new repository in the test's format
    if [ "$repo_format" = 2 ]; then
        local enc=${VB_TEST_ENCRYPTION:-none}
        if [ "$enc" != none ] && [ -z "${VBACKUP_PASSWORD_FILE:-}" ]; then
            echo "the test's password" > "$T/.password"
            export VBACKUP_PASSWORD_FILE="$T/.password"
        fi
        "$V" --repo "$1" init --format 2 --encryption "$enc" >/dev/null
    else
        "$V" --repo "$1" init --format 1 >/dev/null
    fi
}

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

# files_snap REPO SPEC.json: a files snapshot written from SPEC by
# tests/engine/mkfilesnap.py (a catalog as a guest could send it, hostile
# ones too) into REPO, in the test's format; prints its id.  vbackupd does
# not write format 2 yet: a files snapshot reaches a format 2 repository
# only through `vbackupctl copy`, so there it is made in a side version 1
# repository ($T/.v1side, made once) and that one snapshot copied into REPO
# with its id (the catalog rebuilt with version 2 chunk ids).
files_snap() {
    local repo=$1 spec=$2 side="$T/.v1side" id out
    if [ "$repo_format" != 2 ]; then
        python3 "$SRC/tests/engine/mkfilesnap.py" "$repo" "$spec"
        return
    fi
    # (errexit is off in the $(...) that calls this: every step checked)
    [ -d "$side" ] || "$V" --repo "$side" init --format 1 >/dev/null || fail "init of $side"
    id=$(python3 "$SRC/tests/engine/mkfilesnap.py" "$side" "$spec") || fail "mkfilesnap.py $spec"
    out=$("$V" --quiet copy --from "$side" --to "$repo" "$id" 2>&1) ||
        { echo "$out" >&2; fail "copy of the files snapshot $id into $repo"; }
    echo "$id"
}

# wait_until SECONDS WHAT CMD...: run CMD every 0.05 s until it succeeds;
# after SECONDS (a safety net, far above the expected time) fail naming WHAT
wait_until() {
    local limit=$1 what=$2 start=$SECONDS
    shift 2
    until "$@" 2>/dev/null; do
        [ $((SECONDS - start)) -lt "$limit" ] || fail "still waiting after $limit s for $what"
        sleep 0.05
    done
}

# expect_fail PATTERN CMD...: CMD must exit 1 (not crash) and print PATTERN on stderr
expect_fail() {
    local pat="$1"; shift
    local rc=0
    "$@" >"$T/out" 2>"$T/err" || rc=$?
    if [ "$rc" -eq 0 ]; then fail "expected failure: $*"; fi
    if [ "$rc" -gt 2 ]; then cat "$T/err" >&2; fail "exit $rc (crash?) from: $*"; fi
    grep -q -- "$pat" "$T/err" || { cat "$T/err" >&2; fail "stderr of '$*' lacks '$pat'"; }
}

sha() { sha256sum "$1" | cut -d' ' -f1; }

# same_bytes IMAGE_OR_RAW OTHER: guest-visible bytes equal (qemu-img compare)
same_image() { qemu-img compare -q "$1" "$2" || fail "$1 and $2 differ"; }

last_line() { tail -n 1; }

json_get() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval('d'+sys.argv[1]))" "$1"; }

# random data file of N MiB
rand_mib() { head -c "$(( $2 * 1048576 ))" /dev/urandom > "$1"; }
json_len() { python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'; }
n_snapshots() { "$V" --repo "$1" snapshots --json | json_len; }
# flip_byte FILE OFFSET: invert one byte in place
flip_byte() { python3 -c "
import sys
f = open(sys.argv[1], 'r+b'); f.seek(int(sys.argv[2])); b = f.read(1)
f.seek(int(sys.argv[2])); f.write(bytes([b[0] ^ 0xff]))" "$1" "$2"; }

# v1_backup_disk REPO IMAGE OPTION...: a disk snapshot of the raw IMAGE in the
# version 1 repository REPO (backup-disk with the OPTIONs), restored at once by
# version 1 into "$(v1_restored ID)" (in the current folder): the bytes its
# copies must restore to.  Prints the snapshot's id.
v1_backup_disk() {
    local repo=$1 image=$2 id
    shift 2
    id=$("$V" --repo "$repo" backup-disk --format raw "$@" "$image" | last_line)
    "$V" --repo "$repo" --quiet restore-disk "$id" --to "$(v1_restored "$id")"
    echo "$id"
}
v1_restored() { echo "v1-$(echo "$1" | tr / _).raw"; }

# copy_disk_sources V1: the disk snapshots the copy tests copy, backed up
# into V1 from d.raw (made here): a disk with data, a hole and a zero run
# ($full), an incremental after a change ($inc), the same disk in dedup
# group t1 ($grp)
copy_disk_sources() {
    qemu-img create -q -f raw d.raw 48M
    qemu-io -f raw -c "write -P 7 0 8M" -c "write -P 9 20M 4M" -c "write -z 30M 4M" \
        d.raw >/dev/null
    head -c 3M /dev/urandom | dd of=d.raw bs=1M seek=40 conv=notrunc status=none
    full=$(v1_backup_disk "$1" d.raw --vm web --name vda)
    qemu-io -f raw -c "write -P 11 4M 1M" d.raw >/dev/null
    inc=$(v1_backup_disk "$1" d.raw --vm web --name vda --mode incremental)
    grp=$(v1_backup_disk "$1" d.raw --vm other --name vda --dedup-group t1)
}

# v2_copy_of V1 V2 INIT-OPTION...: a new version 2 repository V2 (init --format
# 2 with the INIT-OPTIONs) holding copies of every snapshot of V1
v2_copy_of() {
    local v1=$1 v2=$2
    shift 2
    "$V" --repo "$v2" --quiet init --format 2 "$@" || fail "init --format 2 $* at $v2"
    "$V" --quiet copy --from "$v1" --to "$v2" || fail "copy from $v1 to $v2"
}

# trees_same DIR_A DIR_B: two restored trees are the same field by field:
# types, modes, sizes, link counts, times, link targets, bytes, extended
# attributes and allocated blocks (holes stay holes); exit 1 listing what differs
trees_same() {
    python3 - "$1" "$2" <<'PY'
import hashlib, os, stat, sys

def tree(top):
    out = {}
    for d, dirs, files in os.walk(top):
        for n in dirs + files:
            p = os.path.join(d, n)
            st = os.lstat(p)
            rec = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_size, st.st_nlink,
                   st.st_mtime_ns, st.st_blocks,
                   sorted((x, os.getxattr(p, x, follow_symlinks=False))
                          for x in os.listxattr(p, follow_symlinks=False)))
            if stat.S_ISLNK(st.st_mode):
                rec += (os.readlink(p),)
            elif stat.S_ISREG(st.st_mode):
                rec += (hashlib.sha256(open(p, "rb").read()).hexdigest(),)
            out[os.path.relpath(p, top)] = rec
    return out

a, b = tree(sys.argv[1]), tree(sys.argv[2])
assert a and a == b, [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
PY
}
