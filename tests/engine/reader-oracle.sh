#!/usr/bin/env bash
# Image readers against the oracle: for images made here by qemu-img and
# qemu-io (odd offsets, discards, zero writes, compression, backing chains of
# raw and qcow2 with relative and absolute names, extended L2, every cluster
# size), vbackupctl image-dump (io_uring, and --pread: plain pread, as the
# file system mapper reads) must equal `qemu-img convert -O raw` byte for
# byte, and image-map must agree with `qemu-img map` on where data lives.
source "$(dirname "$0")/../lib.sh"
requires qemu-img
requires qemu-io
cd "$T"

n=0
check() {   # check IMAGE [OPTIONS]: the format is the one the name says (this test made it)
    local img="$1" fmt="${1##*.}"
    shift
    qemu-img convert -U -O raw "$img" "$T/ref.raw"
    "$V" image-dump "$img" --format "$fmt" "$@" --output "$T/ours.raw"
    cmp -s "$T/ref.raw" "$T/ours.raw" || fail "$img: image-dump differs from qemu-img convert"
    # the synchronous reader (the file system mapper's) reads the same bytes
    "$V" image-dump "$img" --format "$fmt" "$@" --pread --output "$T/ours.raw"
    cmp -s "$T/ref.raw" "$T/ours.raw" || fail "$img: image-dump --pread differs from qemu-img convert"
    "$V" image-map --json --format "$fmt" "$@" "$img" > "$T/ours.json"
    qemu-img map -U --output=json "$img" > "$T/qemu.json"
    python3 "$SRC/tests/engine/mapcmp.py" "$T/ours.json" "$T/qemu.json" >/dev/null ||
        fail "$img: map differs from qemu-img map"
    n=$((n + 1))
}

scribble() {   # scribble IMAGE: writes at odd offsets, discards, zero writes
    qemu-io -f "$2" \
        -c 'write -P 0x11 0 4k' \
        -c 'write -P 0x22 1000 3000' \
        -c 'write -P 0x33 1M 1537' \
        -c 'write -P 0x44 5000000 200000' \
        -c 'write -P 0x55 12M 3M' \
        -c 'write -z 13M 64k' \
        -c 'discard 14M 512k' \
        -c 'write -P 0x66 20971520 512' \
        -c 'write -z -u 21M 1M' \
        -c 'write -P 0x77 31M 1M' \
        "$1" >/dev/null
}

# qcow2 v2 and v3, every cluster size qemu-img can make
for compat in 0.10 1.1; do
    for cs in 512 4096 65536 2097152; do
        img="c$cs-$compat.qcow2"
        qemu-img create -q -f qcow2 -o compat=$compat,cluster_size=$cs "$img" 33554944
        scribble "$img" qcow2
        check "$img"
    done
done

# extended L2 entries (subclusters)
for cs in 16384 65536 2097152; do
    img="ext$cs.qcow2"
    qemu-img create -q -f qcow2 -o extended_l2=on,cluster_size=$cs "$img" 32M
    scribble "$img" qcow2
    check "$img"
done

# raw, sparse and full
qemu-img create -q -f raw sparse.raw 32M
scribble sparse.raw raw
check sparse.raw
head -c 3000001 /dev/urandom > odd.raw   # size not a multiple of 512
check odd.raw

# compressed clusters, deflate and zstd, and an overlay over them
qemu-img convert -O qcow2 -c c65536-1.1.qcow2 comp-zlib.qcow2
check comp-zlib.qcow2
qemu-img convert -O qcow2 -c -o compression_type=zstd c65536-1.1.qcow2 comp-zstd.qcow2
check comp-zstd.qcow2
qemu-img convert -O qcow2 -c -o cluster_size=4096 c4096-1.1.qcow2 comp-4k.qcow2
check comp-4k.qcow2
qemu-img convert -O qcow2 -c -o cluster_size=2M,compression_type=zstd c2097152-1.1.qcow2 comp-2m.qcow2
check comp-2m.qcow2

# backing chains: raw base, relative and absolute names, mixed formats and
# cluster sizes, a shorter backing file, zero writes over backing data
mkdir -p chain/sub
head -c 8M /dev/urandom > chain/base.raw
qemu-img create -q -f qcow2 -b base.raw -F raw chain/o1.qcow2 16M        # relative
qemu-io -c 'write -P 0xa1 3M 100k' -c 'write -z 4M 64k' -c 'write -P 0xa2 10M 1M' chain/o1.qcow2 >/dev/null
check chain/o1.qcow2
qemu-img create -q -f qcow2 -o cluster_size=4096 -b "$T/chain/o1.qcow2" -F qcow2 chain/sub/o2.qcow2 16M  # absolute
qemu-io -c 'write -P 0xb1 1M 8k' -c 'discard 3M 64k' -c 'write -P 0xb2 15M 4k' chain/sub/o2.qcow2 >/dev/null
check chain/sub/o2.qcow2
qemu-img create -q -f qcow2 -o extended_l2=on -b ../sub/o2.qcow2 -F qcow2 chain/sub/o3.qcow2 20M  # relative, longer
qemu-io -c 'write -P 0xc1 2050k 2k' -c 'write -P 0xc2 18M 10k' chain/sub/o3.qcow2 >/dev/null
check chain/sub/o3.qcow2
# a qcow2 base with compressed clusters under an overlay
qemu-img create -q -f qcow2 -b comp-zstd.qcow2 -F qcow2 over-comp.qcow2
qemu-io -c 'write -P 0xd1 12M 1k' -c 'write -P 0xd2 1M 70k' over-comp.qcow2 >/dev/null
check over-comp.qcow2
# a deep chain (snapshots of overlays), some without a backing format name
# (as older QEMU wrote them): the reader never probes, the format is pinned
prev=c65536-1.1.qcow2
for i in $(seq 1 12); do
    qemu-img create -q -f qcow2 -b "$prev" -F qcow2 deep$i.qcow2
    if [ $((i % 3)) = 0 ]; then
        python3 "$SRC/tests/engine/qcow2edit.py" deep$i.qcow2 drop-backing-format
    fi
    qemu-io -c "write -P $i $((i * 1000000)) 70000" deep$i.qcow2 >/dev/null
    prev=deep$i.qcow2
done
check deep12.qcow2 --backing-format qcow2

ok "$n images read exactly as qemu-img reads them"
