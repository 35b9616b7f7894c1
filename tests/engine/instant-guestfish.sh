#!/usr/bin/env bash
# guestfish --ro opens a disk snapshot's image in vbackupctl mount
# (docs/instant-access.md, issue 14): a disk with an MBR partition table
# and an ext4 file system in partition 1 is backed up; in the mount its
# image SERIAL.raw is opened by libguestfs (its appliance, under TCG here),
# which finds the partition and the file system and reads every file (sha256
# inside the appliance and a download compared with cmp), every symlink's
# target and the whole tree as they were on the host; the image cannot be
# written (nor opened read-write by guestfish), the repository is the same
# afterwards and verifies, and fusermount3 -u ends the mount with status 0.
# The random file's bytes come from a seed printed first
# (VB_GFISH_SEED=N meson test ... instant-guestfish replays it).
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/../instant-lib.sh"
requires sfdisk
requires mkfs.ext4
ensure_fuse
# libguestfs-tools comes with scripts/install-deps: missing is a failure, not a skip
command -v guestfish >/dev/null 2>&1 ||
    fail "guestfish is missing (scripts/install-deps installs libguestfs-tools)"
compgen -G '/boot/vmlinuz-*' >/dev/null ||
    fail "no /boot/vmlinuz-* for supermin's appliance (scripts/install-deps installs linux-image-amd64)"
# qemu run by libguestfs itself, not through libvirt, always under TCG as
# every booted test here: where /dev/kvm exists but nested KVM does not work
# (this machine), libguestfs's default accel=kvm:tcg takes KVM and the
# appliance never boots (found as a 900 s timeout).  The appliance is built
# once by supermin and cached in /var/tmp (LIBGUESTFS_CACHEDIR); the overlay
# of --ro goes into the test's folder.
export LIBGUESTFS_BACKEND=direct
export LIBGUESTFS_BACKEND_SETTINGS=force_tcg
export LIBGUESTFS_TMPDIR="$T"
cd "$T"

seed=${VB_GFISH_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
echo "seed $seed (replay: VB_GFISH_SEED=$seed meson test ... instant-guestfish)"

# ---- the disk: MBR, ext4 in partition 1 (from 1 MiB), made without root --------------------
mkdir -p src/dir/sub src/dir/empty "src/sp ace"
printf 'hello from the backup\n' > src/hello.txt
printf 'no newline at the end' > src/dir/sub/notes.txt
printf 'caf\xc3\xa9\n' > "src/sp ace/name with spaces"
: > src/empty-file
python3 -c 'import random, sys
sys.stdout.buffer.write(random.Random(int(sys.argv[1])).randbytes(3000001))' "$seed" \
    > src/random.bin                                        # several chunks, odd length
python3 -c 'import random, sys
sys.stdout.buffer.write(random.Random(int(sys.argv[1]) + 1).randbytes(70000))' "$seed" \
    > src/dir/sub/small.bin
ln -s dir/sub/notes.txt src/link
ln -s ../hello.txt src/dir/up-link
ln -s /nonexistent/target src/dir/abs-link
chmod 0640 src/dir/sub/notes.txt
truncate -s 64M disk.raw
printf 'start=2048, type=83\n' | sfdisk -q disk.raw
mkfs.ext4 -q -F -E offset=1048576,root_owner=0:0 -d src disk.raw 62M
[ "$(sfdisk -d disk.raw | grep -c '^disk.raw1 : start= *2048,')" = 1 ] ||
    fail "the partition table is not as made: $(sfdisk -d disk.raw)"

R="$T/repo"
"$V" --repo "$R" init --format 1 >/dev/null
did=$("$V" --repo "$R" backup-disk --vm db1 --name vda --format raw disk.raw | last_line)
[[ "$did" == db1/* ]] || fail "backup-disk printed no snapshot id: $did"

# what guestfish must print, from the folder on the host: the partitions, the file
# system, the whole tree (guestfish sorts names bytewise, as sort does under LC_ALL=C),
# then for each entry its kind and what it holds
{
    echo run
    echo list-partitions
    echo vfs-type /dev/sda1
    echo mount-ro /dev/sda1 /
    echo ls /
    echo find /
} > gf.cmds
{
    echo /dev/sda1
    echo ext4
    { ls -A src; echo lost+found; } | sort
    { (cd src && find . -mindepth 1 | sed 's|^\./||'); echo lost+found; } | sort
} > gf.expected
while IFS= read -r -d '' p; do
    q="/${p#./}"
    if [ -L "src/$p" ]; then
        printf 'is-symlink "%s"\nreadlink "%s"\n' "$q" "$q" >> gf.cmds
        printf 'true\n%s\n' "$(readlink "src/$p")" >> gf.expected
    elif [ -d "src/$p" ]; then
        printf 'is-dir "%s"\n' "$q" >> gf.cmds
        printf 'true\n' >> gf.expected
    else
        printf 'is-file "%s"\nfilesize "%s"\nchecksum sha256 "%s"\n' "$q" "$q" "$q" >> gf.cmds
        printf 'true\n%s\n%s\n' "$(stat -c %s "src/$p")" "$(sha "src/$p")" >> gf.expected
    fi
done < <(cd src && find . -mindepth 1 -print0 | sort -z)
# cat prints the file and a newline; download copies the bytes out to the host
echo 'cat /dir/sub/notes.txt' >> gf.cmds
printf 'no newline at the end\n' >> gf.expected
echo "download /random.bin $T/random.out" >> gf.cmds
echo "download /dir/sub/small.bin $T/small.out" >> gf.cmds
[ "$(grep -c '^checksum sha256' gf.cmds)" = 6 ] || fail "not 6 files to check: $(cat gf.cmds)"
[ "$(grep -c '^readlink' gf.cmds)" = 3 ] || fail "not 3 symlinks to check: $(cat gf.cmds)"

# the repository as it is before the mount
repo_state() { (cd "$R" && find . -printf '%y %p %s %T@ %m\n' | sort &&
                find . -type f -print0 | sort -z | xargs -0 sha256sum); }
repo_state > repo.before

# ---- mount, and guestfish --ro on the image ------------------------------------------------
mkdir mnt
start_export m1 "$R" mount "$T/mnt"
cleanup_add "fusermount3 -u -z '$T/mnt' 2>/dev/null"
img="mnt/$did/vda.raw"
[ -f "$img" ] || fail "no image at $img: $(find mnt)"
cmp "$img" disk.raw || fail "the image differs from the disk"

start=$SECONDS
guestfish --ro --format=raw -a "$img" < gf.cmds > gf.out 2> gf.err ||
    { cat gf.out gf.err >&2; fail "guestfish --ro -a $img failed"; }
echo "guestfish --ro: $((SECONDS - start)) s"
diff gf.expected gf.out || fail "guestfish read the image differently from the host's folder"
cmp random.out src/random.bin || fail "random.bin downloaded by guestfish differs"
cmp small.out src/dir/sub/small.bin || fail "small.bin downloaded by guestfish differs"
ok "guestfish --ro -a $img: the partition, ext4, the tree, every file (sha256, download) and symlink"

# ---- the image cannot be written, the repository stays as it was -----------------------------
if printf x 2>/dev/null | dd of="$img" conv=notrunc status=none 2>/dev/null; then
    fail "dd wrote into the image"
fi
if printf x 2>/dev/null >> "$img"; then fail "the image was appended to"; fi
if truncate -s 1M "$img" 2>/dev/null; then fail "the image was truncated"; fi
# guestfish without --ro: its qemu cannot open the image for writing and says why
if LIBGUESTFS_DEBUG=1 guestfish --format=raw -a "$img" run > gf-rw.out 2>&1; then
    fail "guestfish opened the image read-write"
fi
grep -q "Could not open '$T/$img': Read-only file system" gf-rw.out ||
    { tail -n 20 gf-rw.out >&2; fail "guestfish (read-write) failed, but not for the read-only image"; }
cmp "$img" disk.raw || fail "the image changed"
ok "read-only: dd, append, truncate and a read-write guestfish are refused"

# ---- unmount --------------------------------------------------------------------------------
fusermount3 -u mnt
wait_exit m1
grep -q "^unmounted" "$T/m1.out" || fail "no word of the unmount"
! grep -qs "$T/mnt " /proc/mounts || fail "still mounted after fusermount3 -u"
repo_state | diff repo.before - || fail "the repository changed while mounted"
"$V" --repo "$R" verify > verify.out || { cat verify.out >&2; fail "verify failed after the mount"; }
ok "fusermount3 -u: the mount ended with status 0; the repository is unchanged and verifies"
