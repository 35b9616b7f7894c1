#!/usr/bin/env python3
"""Helpers for the faults suite (tests/faults): a seed that replays a run,
faults injected into vbackupctl and vbackupd (io-fault.c, readdir-fault.c),
holds that stop a process at an exact step, file systems that lose power or
turn read-only, and a ledger of every snapshot reported done, checked at the
end of each scenario: it verifies and restores byte for byte."""
import fcntl
import hashlib
import json
import os
import random
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import time

# The suite's mounts live in a mount namespace of its own: no process outside
# it (a VM's QEMU in its own namespace, another test) keeps a copy of them, so
# an unmount really releases a file system, and whatever a test leaves
# mounted goes with it.
if os.environ.get("VB_FAULTS_NS") != "1" and shutil.which("unshare"):
    os.environ["VB_FAULTS_NS"] = "1"
    os.execvp("unshare", ["unshare", "--mount", "--propagation", "private", sys.executable,
                          *sys.argv])

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "daemon"))
import daemonlib as dl  # noqa: E402
from daemonlib import check, fail, log, run, wait_for, VBACKUPCTL  # noqa: E402,F401

IO_FAULT = os.environ.get("VB_IO_FAULT", os.path.join(dl.BUILD, "tests/libio-fault.so"))
READDIR_FAULT = os.environ.get("VB_READDIR_FAULT", os.path.join(dl.BUILD, "tests/libreaddir-fault.so"))


def seeded(name):
    """A random.Random from $VB_FAULTS_SEED, or a new seed; printed first, so
    that any failure can be replayed."""
    s = os.environ.get("VB_FAULTS_SEED")
    seed = int(s) if s else random.SystemRandom().randrange(1 << 32)
    log(f"{name}: seed {seed} (replay: VB_FAULTS_SEED={seed} meson test ... {name})")
    return random.Random(seed)


def fault_env(rules=(), readdir=None, hold=None):
    """Environment variables for a process that meets faults (io-fault.c)."""
    env, pre = {}, []
    if rules:
        pre.append(IO_FAULT)
        env["VB_FAULT"] = ";".join(rules)
    if readdir:
        pre.append(READDIR_FAULT)
        env["VB_FAULT_READDIR"] = readdir
    if hold:
        env["VB_FAULT_DIR"] = hold.dir
    if pre:
        env["LD_PRELOAD"] = ":".join(pre)
        # a sanitizer build wants its runtime first; the shims come first here
        a = os.environ.get("ASAN_OPTIONS", "")
        env["ASAN_OPTIONS"] = (a + ":" if a else "") + "verify_asan_link_order=0"
    return env


def wrapper(env):
    """Daemon.start(wrapper=...) for a vbackupd that meets faults."""
    return ["env"] + [f"{k}={v}" for k, v in env.items()] if env else []


def ctl(repo, *args, env=None, timeout=300):
    e = dict(os.environ)
    e.pop("VBACKUP_REPO", None)
    e.update(env or {})
    return subprocess.run([VBACKUPCTL, "--repo", repo, "--quiet", *args], capture_output=True,
                          text=True, env=e, timeout=timeout)


def ctl_ok(repo, *args, **kw):
    r = ctl(repo, *args, **kw)
    check(r.returncode == 0, f"vbackupctl {' '.join(args)}: exit {r.returncode}\n{r.stdout}{r.stderr}")
    return r


def ctl_bg(repo, *args, env=None, out=None):
    e = dict(os.environ)
    e.pop("VBACKUP_REPO", None)
    e.update(env or {})
    f = open(out, "w") if out else subprocess.DEVNULL
    return subprocess.Popen([VBACKUPCTL, "--repo", repo, "--quiet", *args], stdout=f,
                            stderr=subprocess.STDOUT if out else subprocess.DEVNULL, env=e)


def snapshots(repo):
    return [s["id"] for s in json.loads(ctl_ok(repo, "snapshots", "--json").stdout)]


def chunk_files(repo):
    """The chunk files of a repository (not leftovers, not chunks set aside)."""
    out = set()
    for dirpath, _, files in os.walk(os.path.join(repo, "chunks")):
        out.update(os.path.join(dirpath, f) for f in files if len(f) == 64)
    return out


def damage(path, how):
    """Damage a chunk file: flip (a byte of its payload), short (cut to 10
    bytes), empty (0 bytes, as a power cut can leave a file), gone."""
    if how == "flip":
        with open(path, "r+b") as f:
            f.seek(os.path.getsize(path) // 2)
            b = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([b[0] ^ 0x5A]))
    elif how in ("short", "empty"):
        os.truncate(path, 10 if how == "short" else 0)
    elif how == "gone":
        os.unlink(path)


def sha_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                return h.hexdigest()
            h.update(b)


def tree_content(root, sub=()):
    """{relpath: ("dir",) | ("reg", size, sha256) | ("lnk", target)} below root
    (only under the folders in sub, when given); lost+found left out."""
    out = {}
    tops = [os.path.join(root, s) for s in sub] if sub else [root]
    for top in tops:
        if sub and os.path.isdir(top):
            out[os.path.relpath(top, root)] = ("dir",)
        for dirpath, dirs, files in os.walk(top):
            dirs.sort()
            for name in sorted(dirs + files):
                full = os.path.join(dirpath, name)
                rel = os.path.relpath(full, root)
                if rel.split("/")[0] == "lost+found":
                    continue
                st = os.lstat(full)
                if stat.S_ISDIR(st.st_mode):
                    out[rel] = ("dir",)
                elif stat.S_ISREG(st.st_mode):
                    out[rel] = ("reg", st.st_size, sha_file(full))
                elif stat.S_ISLNK(st.st_mode):
                    out[rel] = ("lnk", os.readlink(full))
    return out


class Hold:
    """io-fault.c's hold: a process stops at the matching call until released."""

    def __init__(self, w, name="hold"):
        self.dir = w.p(name)
        os.makedirs(self.dir, exist_ok=True)
        self.reset()

    def reset(self):
        for f in ("held", "release"):
            try:
                os.unlink(os.path.join(self.dir, f))
            except FileNotFoundError:
                pass

    def held(self):
        return os.path.exists(os.path.join(self.dir, "held"))

    def wait(self, what, alive=None):
        """Until the hold is reached (alive(): the process still runs)."""
        wait_for(lambda: self.held() or (alive is not None and not alive()), what, timeout=120)
        check(self.held(), f"{what}: the process ended without reaching the hold")

    def release(self):
        open(os.path.join(self.dir, "release"), "w").close()


# ---- file systems that fail --------------------------------------------------------

EXT4_IOC_SHUTDOWN = 0x8004587D          # _IOR('X', 125, __u32)
SHUTDOWN_NOLOGFLUSH = 2                 # drop the journal and the page cache: a power cut


class LoopFS:
    """An ext4 file system in a file, loop-mounted at mnt."""

    def __init__(self, w, name, size="256M", opts="errors=remount-ro"):
        self.w = w
        if not hasattr(w, "loops"):
            w.loops = []
            w_cleanup = w.cleanup

            def cleanup():
                w_cleanup()
                for dev in w.loops:
                    subprocess.run(["losetup", "-d", dev], stderr=subprocess.DEVNULL)
            w.cleanup = cleanup
        self.img = w.p(name + ".ext4")
        self.mnt = w.p(name)
        self.opts = opts
        os.makedirs(self.mnt, exist_ok=True)
        run("truncate", "-s", size, self.img)
        run("mkfs.ext4", "-q", "-F", self.img)
        self.mount()

    def mount(self, extra=""):
        # a loop device of its own each time: a new mount never meets the
        # superblock of the last one (a shut-down one, after a power cut)
        self.dev = subprocess.run(["losetup", "-f", "--show", self.img], capture_output=True,
                                  text=True, check=True).stdout.strip()
        opts = ",".join(x for x in (self.opts, extra) if x)
        run("mount", *(["-o", opts] if opts else []), self.dev, self.mnt)
        self.w.mounts.append(self.mnt)
        self.w.loops.append(self.dev)

    def umount(self):
        run("umount", self.mnt)
        self.w.mounts.remove(self.mnt)
        subprocess.run(["losetup", "-d", self.dev], stderr=subprocess.DEVNULL)
        self.w.loops.remove(self.dev)

    def device(self):
        return os.path.basename(self.dev)

    def power_cut(self):
        """What a power cut leaves: the file system stops at once (ext4's
        shutdown without flushing the log: what is only in the page cache or
        the running transaction is lost), then it is mounted again (the
        journal replays).  Processes still using it get EIO meanwhile."""
        fd = os.open(self.mnt, os.O_RDONLY)
        try:
            fcntl.ioctl(fd, EXT4_IOC_SHUTDOWN, struct.pack("I", SHUTDOWN_NOLOGFLUSH))
        finally:
            os.close(fd)

    def remount_after_cut(self):
        self.umount()
        self.mount()
        probe = os.path.join(self.mnt, ".probe")         # a live file system, not the dead one
        with open(probe, "w") as f:
            f.write("up")
            os.fsync(f.fileno())
        os.unlink(probe)

    def frozen_copy(self, name):
        """A copy of the backing file made while the file system is frozen
        (fsfreeze flushes it first), mounted read-write at a new place."""
        copy = self.w.p(name + ".ext4")
        run("fsfreeze", "-f", self.mnt)
        try:
            run("cp", "--sparse=always", self.img, copy)
        finally:
            run("fsfreeze", "-u", self.mnt)
        mnt = self.w.p(name)
        os.makedirs(mnt, exist_ok=True)
        run("mount", "-o", "loop", copy, mnt)
        self.w.mounts.append(mnt)
        return mnt

    def fs_error(self):
        """ext4 meets an error: with errors=remount-ro its journal is aborted
        and it turns read-only."""
        with open(f"/sys/fs/ext4/{self.device()}/trigger_fs_error", "w") as f:
            f.write("faults suite\n")


# ---- the ledger of snapshots reported done -------------------------------------------

class Ledger:
    """Every snapshot a command or a job reported done, with what it must hold.
    Thread-safe.  A snapshot reported done with a warning that its commit may
    not be on disk yet (an fsync failed after the commit point) is not
    durable: a power cut may take it back."""

    def __init__(self, w):
        self.w = w
        self.snaps = {}         # (repo, id) -> ("disk", sha256) | ("files", tree_content)
        self.weak = set()       # (repo, id) not durable
        self.restored = set()   # (repo, id) restored byte for byte at least once
        self.n = 0
        self.lock = __import__("threading").RLock()

    def disk(self, repo, sid, sha, durable=True):
        with self.lock:
            self.snaps[(repo, sid)] = ("disk", sha)
            if not durable:
                self.weak.add((repo, sid))

    def files(self, repo, sid, content, durable=True):
        with self.lock:
            self.snaps[(repo, sid)] = ("files", content)
            if not durable:
                self.weak.add((repo, sid))

    def forget(self, repo, sid):
        with self.lock:
            self.snaps.pop((repo, sid), None)

    def repos(self):
        with self.lock:
            return sorted({r for r, _ in self.snaps})

    def items(self):
        with self.lock:
            return sorted(self.snaps.items())

    def after_cut(self, repo):
        """After a power cut: a snapshot that was not durable may be gone (then
        it is no longer expected); every other one must be there."""
        present = set(snapshots(repo))
        with self.lock:
            for key in list(self.snaps):
                if key[0] == repo and key[1] not in present and key in self.weak:
                    del self.snaps[key]

    def restore_one(self, repo, sid, kind, want, what):
        out = self.w.p("check-restore")
        shutil.rmtree(out, ignore_errors=True)
        if kind == "disk":
            r = ctl(repo, "restore-disk", sid, "--to", out + ".raw", "--force")
            check(r.returncode == 0, f"{what}: restore-disk {sid} from {repo}: {r.stderr}")
            got = sha_file(out + ".raw")
            os.unlink(out + ".raw")
            check(got == want, f"{what}: {sid} in {repo} restores other bytes")
        else:
            r = ctl(repo, "restore-files", sid, "--to", out)
            check(r.returncode == 0, f"{what}: restore-files {sid} from {repo}: {r.stderr}")
            got = tree_content(out)
            if got != want:
                for k in sorted(set(got) | set(want)):
                    if got.get(k) != want.get(k):
                        log(f"  {k}: backed up {want.get(k)}, restored {got.get(k)}")
                fail(f"{what}: {sid} in {repo} restores another tree")
            shutil.rmtree(out)

    def check(self, what, repos=(), verify=True, sample=None, rng=None, moved=None):
        """Each snapshot reported done exists, and each repository verifies as
        a whole (so does every snapshot in it); each snapshot restores exactly
        (with sample: each one not restored yet, and a sample of the others,
        rng.sample).  moved: {repo: another path} checks a copy of a
        repository instead.  Returns the number restored."""
        moved = moved or {}
        items = self.items()
        listed = {}
        for repo in sorted(set(repos) | {r for (r, _), _ in items}):
            where = moved.get(repo, repo)
            if verify:
                r = ctl(where, "verify")
                check(r.returncode == 0, f"{what}: verify {where}:\n{r.stdout}{r.stderr}")
            listed[repo] = set(snapshots(where))
        for (repo, sid), _ in items:
            check(sid in listed[repo], f"{what}: {sid}, reported done, is missing from "
                  f"{moved.get(repo, repo)}")
        if sample is not None:
            new = [x for x in items if x[0] not in self.restored]
            old = [x for x in items if x[0] in self.restored]
            items = new + rng.sample(old, min(sample, len(old)))
        for (repo, sid), (kind, want) in items:
            self.restore_one(moved.get(repo, repo), sid, kind, want, what)
            if not moved:
                self.restored.add((repo, sid))
        self.n += len(items)
        return len(items)
