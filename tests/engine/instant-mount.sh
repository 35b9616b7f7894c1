#!/usr/bin/env bash
# vbackupctl mount (docs/instant-access.md): a files snapshot of a folder
# is that folder again — diff -r finds no difference, stat finds the same
# types, modes, owners, sizes, times to the nanosecond and link counts, hard
# links share one inode, symlinks keep their targets, a sparse file's hole
# is a hole (SEEK_HOLE, st_blocks) — and cp -a and rsync -a copy it whole; a
# disk snapshot is a raw image equal (cmp) to the disk it was taken of, that
# a loop device mounts; nothing can be written; a snapshot made while
# mounted appears; fusermount3 -u and SIGTERM end the command cleanly.
# Meson runs it on format 2 too, unencrypted and encrypted: the files
# snapshots copied in from a version 1 repository (lib.sh's files_snap).
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/../instant-lib.sh"
requires mkfs.ext4
requires rsync
requires losetup
ensure_fuse
cd "$T"
R="$T/repo"
repo_init "$R"

# ---- the folder to back up ------------------------------------------------------------
mkdir -p src/etc/conf.d src/home/u/.cache "src/sp ace" src/deep/a/b/c/d src/empty
printf '127.0.0.1 localhost\n' > src/etc/hosts
printf 'x' > src/etc/conf.d/one
: > src/etc/empty-file
head -c 3000000 /dev/urandom > src/home/u/big.bin            # several chunks
printf 'data then a hole' > src/home/u/sparse && truncate -s 5M src/home/u/sparse
printf 'caf\xc3\xa9\n' > "src/sp ace/ünïcödé name"
printf 'line' > "$(printf 'src/new\nline')"
printf 'deep' > src/deep/a/b/c/d/file
printf 'linked' > src/etc/h1 && ln src/etc/h1 src/home/h2 && ln src/etc/h1 src/deep/h3
ln -s hosts src/etc/rel-link
ln -s /nonexistent/target src/home/abs-link
ln -s ../../etc src/home/u/up-link
chmod 0600 src/etc/conf.d/one
chmod 0750 src/home/u
chmod 4755 src/etc/h1
chmod 1777 src/empty
chown 1234:5678 src/home/u/big.bin
touch -h -d '1969-12-31 23:59:58.5 UTC' src/home/abs-link
touch -d '2001-02-03 04:05:06.123456789 UTC' src/etc/hosts
python3 "$SRC/tests/engine/tree2spec.py" src web1 2026-03-04T05:06:07Z > spec.json
fid=$(files_snap "$R" spec.json)

# a disk with an ext4 file system holding the same folder
truncate -s 64M fs.raw
mkfs.ext4 -q -F -d src fs.raw
did=$("$V" --repo "$R" backup-disk --vm db1 --name vdb --format raw fs.raw | last_line)

# ---- mount ----------------------------------------------------------------------------------
mkdir mnt
start_export m1 "$R" mount "$T/mnt"
cleanup_add "fusermount3 -u -z '$T/mnt' 2>/dev/null"
[ "$(ls mnt | tr '\n' ' ')" = "db1 web1 " ] || fail "the VMs shown are: $(ls mnt)"
[ "$(ls mnt/web1)" = "${fid#web1/}" ] || fail "web1's snapshots: $(ls mnt/web1)"
[ "$(ls mnt/db1/*)" = "vdb.raw" ] || fail "the disk snapshot's folder holds: $(ls mnt/db1/*)"
S="mnt/$fid"
grep -qs "$T/mnt fuse.vbackup ro,nosuid,nodev,noexec" /proc/mounts ||
    fail "not mounted ro,nosuid,nodev,noexec: $(grep "$T/mnt" /proc/mounts)"

diff -r --no-dereference src "$S" || fail "diff -r finds differences"
ok "diff -r: the mounted files snapshot equals the folder"

python3 - src "$S" spec.json <<'EOF' || fail "stat of the mounted snapshot differs from the folder"
import json, os, stat, sys
src, mnt = sys.argv[1], sys.argv[2]
# reading the folder (diff) moved its access times on: those of the backup are in the spec
# (a hard link shows the inode of its first link, whose data the spec read)
ents = json.load(open(sys.argv[3]))["entries"]
atime = {bytes.fromhex(e["path_hex"]): e["atime_ns"] for e in ents}
for e in ents:
    if "hardlink" in e:
        atime[bytes.fromhex(e["path_hex"])] = atime[e["hardlink"].encode()]
n = 0
for dirpath, dirnames, filenames in os.walk(src):
    for name in [""] + dirnames + filenames:
        a = os.path.join(dirpath, name) if name else dirpath
        b = os.path.join(mnt, os.path.relpath(a, src))
        sa, sb = os.lstat(a), os.lstat(b)
        for f in ("st_mode", "st_uid", "st_gid", "st_mtime_ns", "st_nlink"):
            if f == "st_nlink" and stat.S_ISDIR(sa.st_mode):
                continue
            assert getattr(sa, f) == getattr(sb, f), (a, f, getattr(sa, f), getattr(sb, f))
        if not stat.S_ISDIR(sa.st_mode):
            assert sa.st_size == sb.st_size, (a, sa.st_size, sb.st_size)
            assert sa.st_ctime_ns == sb.st_ctime_ns, a
        rel = os.fsencode(os.path.relpath(a, src)) if name or dirpath != src else b""
        assert atime[b"" if rel == b"." else rel] == sb.st_atime_ns, (a, "atime")
        if stat.S_ISLNK(sa.st_mode):
            assert os.readlink(a) == os.readlink(b), a
        n += 1
# hard links: one inode, three links
i = {os.lstat(os.path.join(mnt, p)).st_ino for p in ("etc/h1", "home/h2", "deep/h3")}
assert len(i) == 1 and os.lstat(os.path.join(mnt, "etc/h1")).st_nlink == 3, i
# the sparse file: a hole after its data, few blocks
fd = os.open(os.path.join(mnt, "home/u/sparse"), os.O_RDONLY)
assert os.lseek(fd, 0, os.SEEK_DATA) == 0
assert os.lseek(fd, 0, os.SEEK_HOLE) == len(b"data then a hole"), os.lseek(fd, 0, os.SEEK_HOLE)
os.close(fd)
assert os.lstat(os.path.join(mnt, "home/u/sparse")).st_blocks < 16
print(f"{n} entries: same stat")
EOF
ok "stat: modes, owners, sizes, times (ns, also before 1970), link counts; hard links share an inode; holes"

cp -a "$S" copy-cp && diff -r --no-dereference src copy-cp || fail "cp -a of the snapshot differs"
rsync -aH "$S/" copy-rsync/ && diff -r --no-dereference src copy-rsync || fail "rsync -aH differs"
[ "$(stat -c %i copy-rsync/etc/h1)" = "$(stat -c %i copy-rsync/home/h2)" ] ||
    fail "rsync -H did not see the hard links"
ok "cp -a and rsync -aH copy the snapshot whole (hard links kept)"

# nothing can be written
for try in "touch $S/new" "mkdir $S/newdir" "rm -f $S/etc/hosts" "ln -s x $S/l" \
           "mv $S/etc/hosts $S/etc/hosts2" "chmod 777 $S/etc/hosts"; do
    if $try 2>/dev/null; then fail "'$try' succeeded on the mount"; fi
done
if printf x 2>/dev/null >> "$S/etc/hosts"; then fail "a file of the mount was appended to"; fi
diff -r --no-dereference src "$S" >/dev/null || fail "the snapshot changed"
ok "read-only: no write, create, remove, rename or mode change"

# ---- a disk snapshot: a raw image ---------------------------------------------------------------
img=$(echo mnt/db1/*/vdb.raw)
[ "$(stat -c %s "$img")" = "$(stat -c %s fs.raw)" ] || fail "the image's size differs"
cmp "$img" fs.raw || fail "the image differs from the disk"
loop=$(losetup --find --show --read-only "$img")
# detached at the exit only if still ours: a loop device once detached may be
# another test's a moment later (a second 'losetup -d' took a concurrent
# test's device away)
cleanup_add 'if [ -n "${loop:-}" ]; then losetup -d "$loop" 2>/dev/null; fi' 
mkdir lmnt
mount -o ro "$loop" lmnt
cleanup_add "umount lmnt 2>/dev/null"
diff -r --no-dereference -x lost+found src lmnt || fail "the loop-mounted image's files differ"
umount lmnt
losetup -d "$loop"
loop=
ok "disk snapshot: a raw image equal to the disk (cmp), mounted through a loop device"

# ---- a snapshot made while mounted appears ------------------------------------------------------
files_snap "$R" /dev/stdin >/dev/null <<'EOF'
{"vm": "web2", "time": "2026-05-06T07:08:09Z", "entries": [{"path": "late", "type": "reg", "data": "late\n"}]}
EOF
wait_until 30 "the new snapshot in the mount" test -f mnt/web2/2026-05-06T07:08:09Z/late
[ "$(cat mnt/web2/2026-05-06T07:08:09Z/late)" = late ] || fail "the new snapshot reads wrong"
ok "a snapshot made while mounted appears"

# ---- ending: unmounted from outside, and by SIGTERM -------------------------------------------------
fusermount3 -u mnt
wait_exit m1
grep -q "^unmounted" "$T/m1.out" || fail "no word of the unmount"
start_export m2 "$R" mount "$T/mnt"
[ -f "mnt/$fid/etc/hosts" ] || fail "the second mount shows nothing"
stop_export m2 TERM
! grep -qs "$T/mnt " /proc/mounts || fail "SIGTERM left the mount in place"
ok "fusermount3 -u and SIGTERM end the mount cleanly"
