#!/usr/bin/env bash
# The format of an image is never guessed from its content (CVE-2008-2004):
# a guest owns every byte of its raw disk and can write a qcow2 header there
# whose backing file is any file of the host.  vbackupctl requires --format;
# a raw disk holding such a header is read as the raw bytes it is; a qcow2
# whose header names its backing file without a format is refused unless the
# format is pinned (--backing-format), and then read as pinned.  The host
# file's content appears in nothing that is read, stored or restored.
source "$(dirname "$0")/../lib.sh"
requires qemu-img
requires qemu-io
cd "$T"
E="python3 $SRC/tests/engine/qcow2edit.py"
"$V" --repo repo init --format 1 >/dev/null

# a file of the host that no VM may read
MARK=HOST-SECRET-e1f0c2a7
python3 -c "import sys; sys.stdout.write(('$MARK ' * 100000)[:2 << 20])" > secret.txt
no_secret() {   # no_secret FILE: the host file's content is nowhere in FILE
    if grep -q -a "$MARK" "$1"; then fail "$1 holds the host file's content"; fi
}

# the guest's raw disk: its own data, and at its start a qcow2 image whose
# backing file is the host file (the guest wrote it there, e.g. with dd)
head -c 8M /dev/urandom > guest.raw
qemu-img create -q -f qcow2 -b "$T/secret.txt" -F raw trap.qcow2 8M
dd if=trap.qcow2 of=guest.raw conv=notrunc status=none
cmp -n 4 guest.raw trap.qcow2 || fail "the trap header is not in place"
no_secret guest.raw

# ---- without a format, nothing guesses -------------------------------------------------------
expect_fail "--format raw|qcow2 is required" "$V" --repo repo backup-disk --vm g guest.raw
grep -q "never guess" "$T/err" || { cat "$T/err"; fail "backup-disk does not say why it refuses"; }
expect_fail "--format raw|qcow2 is required" "$V" image-dump guest.raw --output dump.raw
expect_fail "--format raw|qcow2 is required" "$V" image-map guest.raw
expect_fail "--format must be raw or qcow2" "$V" --repo repo backup-disk --vm g --format vmdk guest.raw
[ "$(n_snapshots repo)" = 0 ] || fail "a refused backup left a snapshot"
ok "backup-disk, image-dump and image-map refuse to guess a format"

# ---- the raw disk is read raw: the header's bytes, never its backing file -------------------
"$V" image-dump guest.raw --format raw --output dump.raw
cmp -s guest.raw dump.raw || fail "image-dump --format raw differs from the raw disk"
id=$("$V" --repo repo backup-disk --vm g --format raw guest.raw | last_line)
"$V" --repo repo --quiet restore-disk "$id" --to restored.raw
cmp -s guest.raw restored.raw || fail "the raw disk's backup differs from its bytes"
no_secret restored.raw
no_secret dump.raw
ok "a raw disk holding a qcow2 header is backed up as its raw bytes"

# ---- a backing file whose format its overlay does not name ---------------------------------
# an overlay made from the guest's disk (a template) by an old qemu-img that
# did not record the backing format: guessing would find the trap header
qemu-img create -q -f qcow2 -b guest.raw -F raw clone.qcow2 8M
qemu-io -c 'write -P 0x5a 1M 64k' clone.qcow2 >/dev/null
$E clone.qcow2 drop-backing-format
expect_fail "names its backing file guest.raw without a format" \
    "$V" --repo repo backup-disk --vm g --format qcow2 clone.qcow2
grep -q "qemu-img rebase -u" "$T/err" || { cat "$T/err"; fail "the refusal does not say how to fix it"; }
expect_fail "without a format" "$V" image-dump clone.qcow2 --format qcow2 --output dump.raw
expect_fail "without a format" "$V" image-map clone.qcow2 --format qcow2
[ "$(n_snapshots repo)" = 1 ] || fail "a refused backup left a snapshot"
# pinned by the administrator: read as pinned
qemu-img convert -O raw --image-opts \
    "driver=qcow2,file.filename=clone.qcow2,backing.driver=raw,backing.file.filename=guest.raw" ref.raw
no_secret ref.raw
"$V" image-dump clone.qcow2 --format qcow2 --backing-format raw --output dump.raw
cmp -s ref.raw dump.raw || fail "image-dump with the backing format pinned differs from qemu-img"
id=$("$V" --repo repo backup-disk --vm g --format qcow2 --backing-format raw clone.qcow2 | last_line)
"$V" --repo repo --quiet restore-disk "$id" --to restored.raw --force
cmp -s ref.raw restored.raw || fail "the pinned chain's backup differs from qemu-img's reading"
no_secret restored.raw
expect_fail "--backing-format must be raw or qcow2" \
    "$V" image-dump clone.qcow2 --format qcow2 --backing-format vmdk --output dump.raw
ok "a backing file without a format is refused, and read as pinned when pinned"

# ---- a header that names the backing format is followed as it says ---------------------------
qemu-img create -q -f qcow2 -b guest.raw -F raw named.qcow2 8M
qemu-io -c 'write -P 0x6b 2M 64k' named.qcow2 >/dev/null
qemu-img convert -O raw named.qcow2 ref.raw
"$V" image-dump named.qcow2 --format qcow2 --output dump.raw
cmp -s ref.raw dump.raw || fail "image-dump of an overlay over the raw disk differs from qemu-img"
no_secret dump.raw
# and the pin does not override what the header says
"$V" image-dump named.qcow2 --format qcow2 --backing-format qcow2 --output dump.raw
cmp -s ref.raw dump.raw || fail "--backing-format overrode the format the header names"
ok "a header's backing format is followed; the guest's data is never taken for a header"

"$V" --repo repo verify >/dev/null || fail "verify"
