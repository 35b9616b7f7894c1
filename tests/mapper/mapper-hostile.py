#!/usr/bin/env python3
"""The file system mapper against hostile file systems, in its sandbox.

The sandbox first: the mapper, in the sandbox exactly as it maps, tries
to open a file, make a UNIX and an INET socket, execute, fork, ptrace,
signal init, mount, unshare, setuid, chroot, map executable memory and
write to its image; each is refused or kills it (seccomp), none works.
It runs as the unprivileged uid with no capabilities, its root is empty,
its memory and CPU are bounded.

Then file systems a guest could have crafted (made with debugfs and byte
patches; without metadata checksums, so that the structures are parsed
rather than refused for their checksums, which a guest can compute
anyway): corrupt extent trees (bad magic, a depth that lies, an index
that points to itself, extents past the disk), a folder loop and a folder
linked twice, huge sizes and counts, extended attribute blocks pointing
elsewhere (the superblock, past the disk, another file's data), a fast
symlink longer than its inode, names with '/' and inode numbers outside
the file system, a superblock larger than the disk, a journal that holds
changes, encrypted files, qcow2 chains that lie.  Each gives a clear
failure (exit 1, one line saying what) or bounded output whose records
decode, within its CPU bound, never a crash (under ASan too)."""
import os
import re
import shutil
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "../daemon"))
import mapperlib as M  # noqa: E402
from daemonlib import check, fail, log, run, workdir  # noqa: E402

if os.geteuid() != 0:
    print("mapper-hostile: skipped: the sandbox test needs root (it drops to nobody)")
    sys.exit(77)

SIGSYS = 31

# ---- the sandbox ---------------------------------------------------------------------

def probe(action, *args, image=None):
    fds = []
    if image:
        fds = [os.open(image, os.O_RDONLY)]
    r = subprocess.run([M.MAPPER, "--cpu", "2", "--memory", str(256 << 20), *args,
                        "--probe", action], capture_output=True, text=True, timeout=120,
                       pass_fds=fds, preexec_fn=(lambda: os.dup2(fds[0], 3)) if fds else None)
    for fd in fds:
        os.close(fd)
    return r


def never_escapes(image):
    refused = killed = 0
    actions = ["open", "socket-unix", "socket-inet", "exec", "fork", "ptrace", "kill", "mount",
               "unshare", "setuid", "chroot", "mmap-exec", "write-image", "memory"]
    if os.environ.get("VB_SANITIZED"):
        # the sanitizers' runtimes reserve terabytes of address space: a
        # sanitizer build of the mapper sets no RLIMIT_AS (sandbox.h)
        actions.remove("memory")
        log("note: sanitizer build: the memory bound (RLIMIT_AS) is not checked")
    for action in actions:
        r = probe(action, image=image)
        check("escaped" not in r.stdout, f"probe {action}: {r.stdout} {r.stderr}")
        if r.returncode == -SIGSYS:
            killed += 1
        elif r.returncode == 3 and r.stdout.startswith("refused: "):
            refused += 1
        else:
            fail(f"probe {action}: exit {r.returncode}: {r.stdout} {r.stderr}")
    check(killed >= 12, f"only {killed} actions were killed by the seccomp filter")
    r = probe("ids")
    check(r.returncode == 3 and r.stdout.strip() ==
          "uid 65534 65534 65534 gid 65534 65534 65534 caps 0 0 0 0", f"ids: {r.stdout}")
    r = probe("ids", "--uid", "4321", "--gid", "4322")
    check(r.stdout.strip() == "uid 4321 4321 4321 gid 4322 4322 4322 caps 0 0 0 0",
          f"ids as 4321:4322: {r.stdout}")
    r = probe("stat-root")
    check(r.returncode == 3 and "escaped" not in r.stdout and "root: mode 40555" in r.stdout,
          f"the root is not empty: {r.stdout}")
    t0 = time.monotonic()
    r = subprocess.run([M.MAPPER, "--cpu", "1", "--probe", "cpu"], capture_output=True,
                       timeout=300)
    check(r.returncode in (-24, -9), f"a spinning mapper was not stopped by RLIMIT_CPU: "
          f"{r.returncode}")
    log(f"ok: sandbox: {killed} actions killed, {refused} refused, nobody without "
        f"capabilities, an empty root; RLIMIT_CPU stopped a spin in "
        f"{time.monotonic() - t0:.1f} s")


# ---- crafted file systems ------------------------------------------------------------

def debugfs(img, *cmds):
    for c in cmds:
        r = subprocess.run(["debugfs", "-w", "-R", c, img], capture_output=True, text=True)
        check(r.returncode == 0 and "debugfs:" not in r.stderr.replace("debugfs 1.", ""),
              f"debugfs {c}: {r.stderr}")


def dstat(img, path):
    return subprocess.run(["debugfs", "-R", f"stat {path}", img], capture_output=True,
                          text=True).stdout


def inode_off(img, ino):
    """Byte offset of inode INO in IMG (from debugfs imap)."""
    out = subprocess.run(["debugfs", "-R", f"imap <{ino}>", img], capture_output=True,
                         text=True).stdout
    m = re.search(r"located at block (\d+), offset (0x[0-9a-f]+)", out)
    check(m, f"imap <{ino}>: {out}")
    return int(m.group(1)) * 4096 + int(m.group(2), 16)


def ino_of(img, path):
    m = re.search(r"Inode: (\d+)", dstat(img, path))
    check(m, f"no inode for {path}")
    return int(m.group(1))


def patch(img, off, data):
    with open(img, "r+b") as f:
        f.seek(off)
        f.write(data)


def patch_inode(img, path, field_off, data):
    patch(img, inode_off(img, ino_of(img, path)) + field_off, data)


I_BLOCK = 40            # offset of i_block in an ext4 inode


def base_image(w, name="base.raw", opts="^metadata_csum"):
    src = w.p("src")
    if not os.path.exists(src):
        os.makedirs(os.path.join(src, "a/b/c"))
        os.makedirs(os.path.join(src, "dir2"))
        with open(os.path.join(src, "f"), "wb") as f:
            f.write(os.urandom(20000))
        with open(os.path.join(src, "frag"), "wb") as f:        # 8 extents: an index node
            for i in range(8):
                f.seek(i * 65536)
                f.write(os.urandom(4096))
        with open(os.path.join(src, "a/b/c/deep"), "wb") as f:
            f.write(b"deep")
        os.symlink("x" * 100, os.path.join(src, "slow"))
        os.symlink("short", os.path.join(src, "fast"))
    img = w.p(name)
    run("truncate", "-s", "32M", img)
    run("mkfs.ext4", "-q", "-F", "-b", "4096", "-I", "256", "-O", opts, "-d", src, img)
    with open(w.p("val"), "wb") as f:
        f.write(b"v" * 2000)
    debugfs(img, f"ea_set -f {w.p('val')} /f user.big")       # in a block of its own
    return img


def map_image(images, fmts=None, roots=((0, b"", b"mnt"),), fss=((0, 0),)):
    fmts = fmts or ["raw"] * len(images)
    t0 = time.monotonic()
    rc, out, err = M.run(images, M.spec(9, [fmts], list(fss), list(roots)),
                         args=["--cpu", "20", "--memory", str(512 << 20)], timeout=300)
    return rc, out, err, time.monotonic() - t0


def expect(w, what, img, pattern=None, bounded=False, **kw):
    """The mapper on IMG fails with PATTERN in its one-line message, or (if
    BOUNDED) may also succeed with records that decode, no more than a few
    thousand of them."""
    rc, out, err, secs = map_image([img] if isinstance(img, str) else img, **kw)
    check(rc in (0, 1), f"{what}: the mapper died (exit {rc}): {err[-2000:]}")
    check("Sanitizer" not in err and "runtime error" not in err, f"{what}: {err[-3000:]}")
    if rc == 1:
        line = err.strip()
        check(line.count("\n") == 0 and line, f"{what}: not one line: {err[-2000:]}")
        check(pattern is None or re.search(pattern, line),
              f"{what}: the message '{line}' does not say /{pattern}/")
        log(f"ok: {what}: refused in {secs:.2f} s: {line[:160]}")
        return line
    check(bounded, f"{what}: the mapper accepted it: {len(out)} bytes of records")
    recs, problems, _ = M.records(out, 9, ["s"])
    check(len(recs) < 5000, f"{what}: {len(recs)} records")
    log(f"ok: {what}: bounded output in {secs:.2f} s: {len(recs)} records, "
        f"{len(problems)} problems, {len(out)} bytes")
    return None


def copy(w, src, name):
    dst = w.p(name)
    shutil.copyfile(src, dst)
    return dst


with workdir() as w:
    base = base_image(w)
    never_escapes(base)

    # the untouched image maps
    rc, out, err, _ = map_image([base])
    check(rc == 0, f"the base image: {err}")
    recs, _, _ = M.records(out, 9, ["s"])
    paths = {r.get("path") for r in recs}
    check({"mnt/f", "mnt/frag", "mnt/a/b/c/deep", "mnt/slow"} <= paths, f"{paths}")
    frag = [r for r in recs if r.get("path") == "mnt/frag"][0]
    check(len(frag["extents"]) == 8, f"frag: {frag['extents']}")
    log(f"ok: the base image maps: {len(recs)} records")

    # -- extent trees
    img = copy(w, base, "magic.raw")
    patch_inode(img, "/f", I_BLOCK, struct.pack("<H", 0x1234))
    expect(w, "an extent header with a bad magic", img, r"extent.*mnt/f")

    img = copy(w, base, "depth.raw")
    patch_inode(img, "/f", I_BLOCK + 6, struct.pack("<H", 4))      # eh_depth 0 -> 4
    expect(w, "an extent tree whose depth lies", img, r"extent|mnt/f", bounded=True)

    img = copy(w, base, "deep.raw")
    patch_inode(img, "/f", I_BLOCK + 6, struct.pack("<H", 0xffff))
    expect(w, "an extent tree 65535 levels deep", img, r"extent.*mnt/f")

    img = copy(w, base, "selfidx.raw")
    etb = int(re.search(r"\(ETB0\):(\d+)", dstat(img, "/frag")).group(1))
    # the leaf block becomes an index node pointing to itself
    patch(img, etb * 4096, struct.pack("<HHHHI", 0xF30A, 1, 340, 1, 0) +
          struct.pack("<IIHH", 0, etb, 0, 0))
    expect(w, "an extent index that points to itself", img, r"extent|mnt/frag", bounded=True)

    img = copy(w, base, "past.raw")
    # the first extent of /f starts 2^40 blocks out
    patch_inode(img, "/f", I_BLOCK + 12 + 6, struct.pack("<HI", 0x100, 0))
    line = expect(w, "an extent past the end of the disk", img, r"mnt/f", bounded=True)

    img = copy(w, base, "entries.raw")
    patch_inode(img, "/f", I_BLOCK + 2, struct.pack("<H", 0xffff))  # eh_entries
    expect(w, "an extent header with 65535 entries in the inode", img, r"extent.*mnt/f")

    # -- folders
    img = copy(w, base, "loop.raw")
    debugfs(img, "ln / /a/b/loop")
    expect(w, "a folder loop", img, r"mnt/a/b/loop.*reached twice")

    img = copy(w, base, "twice.raw")
    debugfs(img, "ln /a/b /dir2/b-again")
    expect(w, "a folder linked in two places", img, r"reached twice")

    img = copy(w, base, "slash.raw")
    # the name "f" in the root folder becomes "/"
    root_blk = int(re.search(r"\(0\):(\d+)", dstat(img, "/")).group(1))
    with open(img, "r+b") as f:
        f.seek(root_blk * 4096)
        blk = bytearray(f.read(4096))
    off = 0
    while off < 4096:
        ino, rec_len, nl, ft = struct.unpack_from("<IHBB", blk, off)
        if blk[off + 8:off + 8 + nl] == b"f":
            blk[off + 8] = ord("/")
        if blk[off + 8:off + 8 + nl] == b"frag":
            struct.pack_into("<I", blk, off, 0xfffffff0)          # an inode out of range
        off += rec_len or 4096
    patch(img, root_blk * 4096, bytes(blk))
    expect(w, "a name with '/' and an inode out of range", img, r"NUL or '/'|outside")

    img = copy(w, base, "hugedir.raw")
    debugfs(img, "sif /a size 0x7fffffffffff", "sif /a/b links_count 65000",
            "sif /f size 0x3fffffffffffff")
    expect(w, "huge sizes and link counts", img, None, bounded=True)

    img = copy(w, base, "dirext.raw")
    # the root folder's extent claims 32768 blocks from block 0 (the whole disk and more)
    patch_inode(img, "/", I_BLOCK + 12 + 4, struct.pack("<H", 32767))
    expect(w, "a folder whose extent covers the whole disk", img, None, bounded=True)

    # -- extended attributes
    for name, blk, what in (("acl1.raw", 1, "the group descriptors"),
                            ("aclpast.raw", 1 << 30, "a block past the disk"),
                            ("acldata.raw", None, "another file's data")):
        img = copy(w, base, name)
        if blk is None:
            blk = int(re.search(r"\(0-4\):(\d+)", dstat(img, "/f")).group(1))
        debugfs(img, f"sif /frag file_acl {blk}")
        expect(w, f"an extended attribute block pointing at {what}", img,
               r"extended attributes of /mnt/frag")

    # -- symlinks
    img = copy(w, base, "fastlong.raw")
    debugfs(img, "sif /fast size 4000")
    expect(w, "a fast symlink longer than its inode", img, r"symlink.*mnt/fast")

    # -- the superblock and its features
    img = copy(w, base, "bigsb.raw")
    with open(img, "r+b") as f:
        f.seek(1024 + 4)
        f.write(struct.pack("<I", 1 << 24))        # s_blocks_count_lo: 64 GiB of blocks
    expect(w, "a superblock larger than the disk", img, r"not an ext2/3/4 file system|past")

    img = copy(w, base, "recovery.raw")
    debugfs(img, "feature needs_recovery")
    expect(w, "a journal that holds changes", img, r"journal holds changes")

    img = copy(w, base, "encrypted.raw")
    debugfs(img, "sif /a/b/c/deep flags 0x800")
    expect(w, "an encrypted file", img, r"mnt/a/b/c/deep is encrypted")

    img = w.p("zeros.raw")
    run("truncate", "-s", "32M", img)
    expect(w, "no file system at all", img, r"not an ext2/3/4 file system")

    # checksums: a guest's image with metadata_csum whose inode was changed
    # behind ext4's back is refused for its checksum
    img = base_image(w, "csum.raw", "metadata_csum")
    patch_inode(img, "/f", 0x6c, struct.pack("<I", 12345))          # i_size_high
    expect(w, "an inode whose checksum does not match", img, r"mnt/f|checksum")

    # -- image chains that lie (formats are the host's; the chain is vbackupd's)
    top = w.p("top.qcow2")
    run("qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "raw", top)
    expect(w, "an overlay given without its backing file", [top], r"names a backing file",
           fmts=["qcow2"])
    expect(w, "a raw disk given as a chain", [base, base], r"does not name a backing file",
           fmts=["raw", "raw"])
    expect(w, "an overlay whose backing format is not the next layer's", [top, base],
           r"backing file's format", fmts=["qcow2", "qcow2"])
    bad = copy(w, top, "badl1.qcow2")
    patch(bad, 40, struct.pack(">Q", 1 << 40))                     # l1_table_offset
    expect(w, "a qcow2 whose L1 table lies past its end", [bad, base], r"layer 0",
           fmts=["qcow2", "raw"])
