#!/usr/bin/env bash
# Hostile and damaged images: each gets an error that names the image and
# what is wrong, exit status 1 (never a crash), and no snapshot is created.
# Run under the ASan build too (scripts/check), which catches any read
# outside a buffer.
source "$(dirname "$0")/../lib.sh"
requires qemu-img
requires qemu-io
cd "$T"
E="python3 $SRC/tests/engine/qcow2edit.py"
"$V" --repo repo init --format 1 >/dev/null

good() {   # good NAME [qemu-img create options]: a small valid image with data
    qemu-img create -q -f qcow2 "${@:2}" "$1" 16M
    qemu-io -c 'write -P 0x5a 0 256k' -c 'write -P 0x6b 9M 64k' "$1" >/dev/null
}

n=0
bad() {   # bad IMAGE PATTERN: reading and backing up IMAGE as qcow2 fail with PATTERN
    local img="$1" pat="$2"
    expect_fail "$pat" "$V" image-dump "$img" --format qcow2 --output /dev/null
    grep -q "$img" "$T/err" || { cat "$T/err"; fail "error for $img does not name the image"; }
    expect_fail "$pat" "$V" --repo repo backup-disk --vm hostile --format qcow2 "$img"
    n=$((n + 1))
}

# header
printf 'QFI\xfb\0\0\0\3' > trunc.qcow2;                       bad trunc.qcow2 "header truncated"
good v4.qcow2;  $E v4.qcow2 version 4;                        bad v4.qcow2 "version 4 is not supported"
good cb.qcow2;  $E cb.qcow2 cluster-bits 30;                  bad cb.qcow2 "cluster size 2^30 is outside"
good cb8.qcow2; $E cb8.qcow2 cluster-bits 8;                  bad cb8.qcow2 "cluster size 2^8 is outside"
good enc.qcow2; $E enc.qcow2 crypt;                           bad enc.qcow2 "encrypted images are not supported"
good inc.qcow2; $E inc.qcow2 incompat 0x100;                  bad inc.qcow2 "unknown incompatible qcow2 features"
good df.qcow2;  $E df.qcow2 incompat 0x4;                     bad df.qcow2 "external data file"
qemu-img create -q -f qcow2 -o data_file=df.raw df2.qcow2 16M; bad df2.qcow2 "external data file"
# sizes
good big.qcow2; $E big.qcow2 size 0x4000000000000000;         bad big.qcow2 "is absurd"
good l1s.qcow2; $E l1s.qcow2 size 0x100000000000;             bad l1s.qcow2 "L1 table has 1 entries"
good l1h.qcow2; $E l1h.qcow2 size 0xffffffffff000; $E l1h.qcow2 l1-size 0x7fffffff
                                                              bad l1h.qcow2 "larger than 32 MiB"
# L1 and L2 pointers
good l1o.qcow2; $E l1o.qcow2 l1-offset 0x7fff0000;            bad l1o.qcow2 "past the end of the file"
good l1u.qcow2; $E l1u.qcow2 l1-offset 0x30200;               bad l1u.qcow2 "not cluster aligned"
good l2p.qcow2; $E l2p.qcow2 l1-entry 0x8000000000ff0000;     bad l2p.qcow2 "L2 table at 0xff0000, past the end"
good l2u.qcow2; $E l2u.qcow2 l1-entry 0x8000000000030200;     bad l2u.qcow2 "unaligned L2 table"
good dp.qcow2;  $E dp.qcow2 l2-entry 0x8000000ff0000000;      bad dp.qcow2 "past the end of the file"
good du.qcow2;  $E du.qcow2 l2-entry 0x8000000000050200;      bad du.qcow2 "unaligned host offset"
good tr.qcow2;  $E tr.qcow2 truncate 200000;                  bad tr.qcow2 "past the end"
# extended L2 with contradictory bitmaps
good x.qcow2 -o extended_l2=on; $E x.qcow2 l2-bitmap 0x0000000100000001
                                                              bad x.qcow2 "both allocated and zero"
# compressed cluster that does not inflate (deflate and zstd)
good src.qcow2
qemu-img convert -O qcow2 -c src.qcow2 cz.qcow2; $E cz.qcow2 garble-compressed
                                                              bad cz.qcow2 "does not inflate"
qemu-img convert -O qcow2 -c -o compression_type=zstd src.qcow2 cs.qcow2; $E cs.qcow2 garble-compressed
                                                              bad cs.qcow2 "does not inflate"
# backing chains: loops, self reference, missing file, too deep, bad name
good a.qcow2
qemu-img create -q -f qcow2 -b a.qcow2 -F qcow2 b.qcow2
qemu-img create -q -f qcow2 -b b.qcow2 -F qcow2 c.qcow2
$E a.qcow2 version 3   # (no-op) keep a valid
qemu-img rebase -q -u -b c.qcow2 -F qcow2 a.qcow2 2>/dev/null || true
bad c.qcow2 "backing chain loops"
good self.qcow2; qemu-img rebase -q -u -b self.qcow2 -F qcow2 self.qcow2; bad self.qcow2 "backing chain loops"
good m.qcow2; qemu-img rebase -q -u -b missing.qcow2 -F qcow2 m.qcow2;     bad m.qcow2 "missing.qcow2: No such file"
good bn.qcow2; qemu-img rebase -q -u -b x.raw -F raw bn.qcow2; $E bn.qcow2 backing-size 5000
                                                              bad bn.qcow2 "backing file name"
prev=base.qcow2; good base.qcow2
for i in $(seq 1 70); do qemu-img create -q -f qcow2 -b $prev -F qcow2 d$i.qcow2; prev=d$i.qcow2; done
bad d70.qcow2 "deeper than 64"
# not an image at all
mkdir adir;                                                   bad adir "not a regular file"
bad nonexistent.qcow2 "No such file"

# nothing was stored, the repository is consistent
[ "$(n_snapshots repo)" = 0 ] || fail "a snapshot appeared"
"$V" --repo repo verify >/dev/null || fail "verify after hostile images"
ok "$n hostile images refused with clear errors"
