#!/usr/bin/env python3
"""Helpers for vbackupd's tests: run the real daemon with a generated
configuration, build ext4 disk images, map their files with FIEMAP (as the
guest tool does), restore through the protocol, compare trees."""
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vbproto as vp  # noqa: E402

BUILD = os.environ.get("VB_BUILDDIR", os.path.join(os.path.dirname(__file__), "../../build"))
VBACKUPD = os.environ.get("VBACKUPD", os.path.join(BUILD, "hostd/vbackupd"))
VBACKUPCTL = os.environ.get("VBACKUPCTL", os.path.join(BUILD, "hostd/vbackupctl"))
POLICY_DIR = os.environ.get("VB_POLICY_DIR", os.path.join(BUILD, "policies"))
MAPPER = os.environ.get("VBACKUP_MAPPER", os.path.join(BUILD, "hostd/mapper/vbackup-mapper"))
# The repository format the daemon's targets are made in: meson runs some
# tests once per format.  VB_TEST_FORMAT=1 (the default) or 2;
# VB_TEST_ENCRYPTION (format 2, none by default) makes them encrypted, the
# password in a file that the target's password_file names and
# VBACKUP_PASSWORD_FILE names for the test's own vbackupctl calls.
TEST_FORMAT = os.environ.get("VB_TEST_FORMAT", "1")
TEST_ENCRYPTION = os.environ.get("VB_TEST_ENCRYPTION", "none")
# A default target elsewhere than a folder (tests/s3/s3-suite.sh): its
# location (VB_TEST_TARGET, e.g. s3://bucket/prefix, format 2) and the
# [target] keys that reach it (VB_TEST_TARGET_KEYS, "key=value;..."); the
# daemon then runs without the AWS_* variables, so that only those keys
# take it there, while the test's own vbackupctl calls keep them.
TEST_TARGET = os.environ.get("VB_TEST_TARGET")
TEST_TARGET_KEYS = dict(kv.split("=", 1) for kv in
                        os.environ.get("VB_TEST_TARGET_KEYS", "").split(";") if kv)


def init_target(path, workdir_path):
    """A new repository at path in the test's format; the [target] keys it needs."""
    if TEST_FORMAT != "2":
        run(VBACKUPCTL, "--repo", path, "--quiet", "init", "--format", "1")
        return {}
    keys = {}
    if TEST_ENCRYPTION != "none":
        pw = os.path.join(workdir_path, ".password")
        if not os.path.exists(pw):
            with open(pw, "w") as f:
                f.write("the test's password\n")
            os.chmod(pw, 0o600)
        os.environ["VBACKUP_PASSWORD_FILE"] = pw
        if TEST_ENCRYPTION == "chacha20-poly1305":
            # as systemd hands it over (LoadCredential=archive-password:FILE)
            creds = os.path.join(workdir_path, "credentials")
            os.makedirs(creds, mode=0o700, exist_ok=True)
            shutil.copyfile(pw, os.path.join(creds, "archive-password"))
            os.environ["CREDENTIALS_DIRECTORY"] = creds
            keys["password_credential"] = "archive-password"
        else:
            keys["password_file"] = pw
    run(VBACKUPCTL, "--repo", path, "--quiet", "init", "--format", "2",
        "--encryption", TEST_ENCRYPTION)
    return keys


def log(*a):
    print(*a, flush=True)


def fail(msg):
    print("FAIL:", msg, flush=True)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def wait_for(pred, what, timeout=60):
    """pred()'s first true value, polled every 0.05 s; after timeout seconds
    (a safety net far above the expected time) fail naming what."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    fail(f"still waiting after {timeout} s for {what}")


def run(*cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def wait_for(pred, what, timeout=30):
    """pred()'s first true value, polled until timeout."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    fail(f"timed out waiting for {what}")


class Workdir:
    def __init__(self):
        self.path = tempfile.mkdtemp(prefix="vbd-test.")
        self.mounts = []
        self.loops = {}                 # mount point -> its loop device (mount(), LoopFS)
        self.daemons = []

    def p(self, *parts):
        return os.path.join(self.path, *parts)

    def cleanup(self):
        for d in self.daemons:
            d.kill()
        for m in reversed(self.mounts):
            subprocess.run(["umount", "-l", m], stderr=subprocess.DEVNULL)
        for dev in self.loops.values():
            subprocess.run(["losetup", "-d", dev], stderr=subprocess.DEVNULL)
        shutil.rmtree(self.path, ignore_errors=True)


@contextlib.contextmanager
def workdir():
    w = Workdir()
    try:
        yield w
    except BaseException:
        for d in w.daemons:          # a failure is explained by what the daemon said
            try:
                print(f"---- the end of {d.log_path} ----\n{d.log_text()[-6000:]}",
                      file=sys.stderr)
            except OSError:
                pass
        raise
    finally:
        w.cleanup()


def disk_value(img):
    """A disk's value in vbackupd.conf.  A path names a disk made by the test,
    whose format its name says (.raw, .qcow2): vbackupd requires the format and
    never guesses it from the image.  (path, options) is taken as written, e.g.
    (p, "format=qcow2,backing_format=raw"), or (p, "") for no options at all."""
    if isinstance(img, tuple):
        path, opts = img
        return f"{path},{opts}" if opts else path
    for fmt in ("raw", "qcow2"):
        if img.endswith("." + fmt):
            return f"{img},format={fmt}"
    raise ValueError(f"{img}: name a test disk .raw or .qcow2, or give its options")


class Daemon:
    """vbackupd with a generated configuration, in its own folder."""

    def __init__(self, w, vms, targets=None, policies="schedule,merge", policy_conf=None,
                 batch_seconds=0.3, batch_max=10, extra=None, name="d", vm_conf=None,
                 sections=None, qmp=None, target_conf=None):
        """vm_conf: {vm: {key: value}} more keys of [vm NAME] (quotas, pidfile);
        target_conf: {target: {key: value}} more keys of [target NAME] (copy_to);
        sections: {"libvirt": {key: value}} more sections, as written; qmp: {vm: socket}."""
        self.w = w
        self.dir = w.p(name)
        os.makedirs(self.dir, exist_ok=True)
        self.run_dir = os.path.join(self.dir, "run")
        self.psi_dir = os.path.join(self.dir, "psi")
        os.makedirs(self.psi_dir, exist_ok=True)
        self.set_psi(0, 0, 0)
        self.targets = targets or {"archive": TEST_TARGET or os.path.join(self.dir, "repo")}
        if not targets and TEST_TARGET:
            target_conf = dict(target_conf or {})
            target_conf["archive"] = {**TEST_TARGET_KEYS, **target_conf.get("archive", {})}
        target_conf = {t: dict(kv) for t, kv in (target_conf or {}).items()}
        for t, path in self.targets.items():
            if path.startswith("s3://"):
                # made by the caller: its password reaches the daemon as a file
                if os.environ.get("VBACKUP_PASSWORD_FILE"):
                    target_conf.setdefault(t, {}).setdefault(
                        "password_file", os.environ["VBACKUP_PASSWORD_FILE"])
                continue
            if not os.path.exists(os.path.join(path, "vbackup-repo.json")) and \
                    not os.path.exists(os.path.join(path, "config")):
                target_conf.setdefault(t, {}).update(init_target(path, self.dir))
        lines = ["[daemon]", f"runtime_dir={self.run_dir}", f"state_dir={self.dir}/state",
                 f"plugin_dir={POLICY_DIR}", f"psi_dir={self.psi_dir}",
                 f"batch_seconds={batch_seconds}", f"batch_max={batch_max}",
                 f"policies={policies}", "workers=2"]
        # the file system mapper of this build (vbackupd's default is the installed one)
        extra = dict(extra or {})
        extra.setdefault("mapper", MAPPER)
        lines += [f"{k}={v}" for k, v in extra.items()]
        for t, path in self.targets.items():
            lines += ["", f"[target {t}]", f"repository={path}"]
            lines += [f"{k}={v}" for k, v in (target_conf or {}).get(t, {}).items()]
        for pol, kv in (policy_conf or {}).items():
            lines += ["", f"[policy {pol}]"] + [f"{k}={v}" for k, v in kv.items()]
        for vm, disks in vms.items():
            lines += ["", f"[vm {vm}]"] + [f"disk.{s}={disk_value(img)}"
                                           for s, img in disks.items()]
            if qmp and vm in qmp:
                lines.append(f"qmp={qmp[vm]}")
            lines += [f"{k}={v}" for k, v in (vm_conf or {}).get(vm, {}).items()]
        for sec, kv in (sections or {}).items():
            lines += ["", f"[{sec}]"] + [f"{k}={v}" for k, v in kv.items()]
        self.conf = os.path.join(self.dir, "vbackupd.conf")
        open(self.conf, "w").write("\n".join(lines) + "\n")
        self.proc = None
        self.log_path = os.path.join(self.dir, "vbackupd.log")
        w.daemons.append(self)

    def set_psi(self, io, cpu, mem):
        for name, v in (("io", io), ("cpu", cpu), ("memory", mem)):
            with open(os.path.join(self.psi_dir, name), "w") as f:
                f.write(f"some avg10={v:.2f} avg60={v:.2f} avg300={v:.2f} total=0\n"
                        f"full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")

    def start(self, wrapper=()):
        admin = os.path.join(self.run_dir, "admin.sock")
        if os.path.exists(admin):
            os.unlink(admin)            # left by a killed daemon: wait for the new one
        self.logf = open(self.log_path, "a")
        env = dict(os.environ)
        if TEST_TARGET_KEYS:
            env = {k: v for k, v in env.items() if not k.startswith("AWS_")}
        self.proc = subprocess.Popen(list(wrapper) + [VBACKUPD, "--config", self.conf],
                                     stdout=self.logf, stderr=self.logf, env=env)
        deadline = time.monotonic() + 60         # a safety net: it takes well under 1 s
        while time.monotonic() < deadline:
            if os.path.exists(os.path.join(self.run_dir, "admin.sock")):
                return self
            if self.proc.poll() is not None:
                fail(f"vbackupd exited at start:\n{open(self.log_path).read()}")
            time.sleep(0.05)
        fail(f"vbackupd did not start: no {self.run_dir}/admin.sock after 60 s")

    def alive(self):
        return self.proc and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if not self.alive():
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            fail(f"vbackupd did not stop on {sig}")
        if rc in (86, 87) or "AddressSanitizer" in self.log_text() or \
                "runtime error:" in self.log_text():
            print(self.log_text()[-6000:])
            fail(f"sanitizer findings in vbackupd (exit {rc})")
        return rc

    def kill(self):
        if self.alive():
            self.proc.kill()
            self.proc.wait()

    def sock(self, vm):
        return os.path.join(self.run_dir, f"{vm}.sock")

    def conn(self, vm):
        return vp.Conn(self.sock(vm))

    def ctl(self, *args, check_rc=True):
        env = {k: v for k, v in os.environ.items() if k != "VBACKUP_REPO"}   # ask the daemon
        r = subprocess.run([VBACKUPCTL, "--daemon", os.path.join(self.run_dir, "admin.sock")] +
                           list(args), capture_output=True, text=True, env=env)
        if check_rc and r.returncode:
            fail(f"vbackupctl {' '.join(args)}: {r.stderr}")
        return r

    def ctl_json(self, *args):
        return json.loads(self.ctl(*args, "--json").stdout)

    def log_text(self):
        return open(self.log_path).read()


def stored(repo):
    """Bytes of data in the repository: chunk files (format 1), packs (format 2: data/)."""
    n = 0
    sub = "data" if os.path.exists(os.path.join(repo, "config")) else "chunks"
    for dirpath, _, files in os.walk(os.path.join(repo, sub)):
        n += sum(os.path.getsize(os.path.join(dirpath, f)) for f in files
                 if not f.startswith("."))
    return n


# ---- images --------------------------------------------------------------------

def make_tree(root):
    """A tree with what users have: sizes, holes, links, odd names."""
    os.makedirs(os.path.join(root, "etc"), exist_ok=True)
    os.makedirs(os.path.join(root, "srv/with space/ünïcödé ✓"), exist_ok=True)
    os.makedirs(os.path.join(root, "srv/empty-dir"), exist_ok=True)
    with open(os.path.join(root, "etc/hosts"), "w") as f:
        f.write("127.0.0.1 localhost\n")
    with open(os.path.join(root, "srv/random.bin"), "wb") as f:
        f.write(os.urandom(3 << 20))
    with open(os.path.join(root, "srv/text.txt"), "w") as f:
        f.write("".join(f"line {i} of a compressible text file\n" for i in range(60000)))
    open(os.path.join(root, "srv/empty"), "w").close()
    with open(os.path.join(root, "srv/sparse.img"), "wb") as f:
        f.truncate(64 << 20)
        f.seek(1 << 20)
        f.write(b"data in the middle" * 1000)
        f.seek((64 << 20) - 5)
        f.write(b"tail!")
    with open(os.path.join(root, "srv/huge-sparse.img"), "wb") as f:   # > 4 GiB logical
        f.truncate((5 << 30) + 12345)
        f.seek(4 << 30)
        f.write(b"past four gibibytes")
    with open(os.path.join(root, "srv/with space/ünïcödé ✓/file one.txt"), "w") as f:
        f.write("ünïcödé content ✓\n")
    os.symlink("text.txt", os.path.join(root, "srv/link-to-text"))
    os.symlink("/nonexistent/target", os.path.join(root, "srv/dangling"))
    os.link(os.path.join(root, "srv/text.txt"), os.path.join(root, "srv/hardlink.txt"))
    os.mkfifo(os.path.join(root, "srv/fifo"))
    os.chmod(os.path.join(root, "etc/hosts"), 0o640)
    os.utime(os.path.join(root, "etc/hosts"), ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))


def random_files(folder, count, size, name="f{i}.bin"):
    """count files of size random (incompressible) bytes in folder (made)."""
    os.makedirs(folder, exist_ok=True)
    for i in range(count):
        with open(os.path.join(folder, name.format(i=i)), "wb") as f:
            f.write(os.urandom(size))


def make_ext4(path, tree, size="512M", fmt="raw", extra=()):
    raw = path if fmt == "raw" else path + ".raw"
    run("truncate", "-s", size, raw)
    run("mkfs.ext4", "-q", "-F", "-E", "root_owner=0:0", *extra, "-d", tree, raw)
    if fmt != "raw":
        run("qemu-img", "convert", "-O", fmt, raw, path)
        os.unlink(raw)
    return path


def mount(w, image, offset=0, ro=True):
    """Loop-mount a raw image (or a qcow2 converted to raw) and return the mount point.

    The loop device is set up here and detached by umount(): 'mount -o loop'
    reuses a loop device that still backs the same file and offset, and since
    Linux 5.17 the one of a mount just unmounted is released asynchronously,
    so a read-write mount right after a read-only one could get the old
    read-only device ("source write-protected, mounted read-only")."""
    mnt = tempfile.mkdtemp(prefix="mnt.", dir=w.path)
    dev = subprocess.run(["losetup", "--find", "--show", f"--offset={offset}"] +
                         (["--read-only"] if ro else []) + [image],
                         check=True, capture_output=True, text=True).stdout.strip()
    w.loops[mnt] = dev
    w.mounts.append(mnt)
    run("mount", "-o", "ro,noload" if ro else "rw", dev, mnt)
    return mnt


def umount(w, mnt):
    run("umount", mnt)
    w.mounts.remove(mnt)
    run("losetup", "-d", w.loops.pop(mnt))


def map_image(w, image, roots, fmt="raw", fallback=()):
    """Records for the roots of the file system on image (guest offsets)."""
    view = image
    if fmt != "raw":
        view = image + ".view.raw"
        run("qemu-img", "convert", "-U", "-O", "raw", image, view)
    mnt = mount(w, view)
    try:
        return vp.walk_records(mnt, roots, fallback=fallback)
    finally:
        umount(w, mnt)
        if view != image:
            os.unlink(view)


def backup(conn, target, serials, roots, records, fb, mode="full", unfrozen=True, wait=True,
           seal=True):
    """A files backup job: records, fallback data, the seal (seal=False: the
    caller seals; then nothing is waited for); the job's end, or its id."""
    p = vp.begin_payload(target, serials, roots, vp.KIND_FILES, mode)
    if unfrozen:
        p = p[:8] + (1).to_bytes(4, "little") + p[12:]   # VB_BEGIN_UNFROZEN
    job, _ = conn.begin(target, serials, roots, raw=p)
    vp.send_records(conn, job, records)
    for idx, data in fb:
        step = vp.MAX_PAYLOAD - 64
        for off in range(0, max(len(data), 1), step):
            piece = data[off:off + step]
            conn.data(job, idx, off, piece, off + step >= len(data))
    if not seal:
        return job
    conn.seal(job)
    if not wait:
        return job
    st = conn.wait_job(job)
    check(st["state"] == "done", f"backup job {job} ended {st['state']}: {st['reason']}")
    return st


def restore(conn, target, snapshot, dest, paths=()):
    """Restore with the protocol into dest; returns the number of entries."""
    job, n, total, sid = conn.restore_begin(target, snapshot, paths)
    ents = []
    while len(ents) < n:
        got = conn.restore_list(job, len(ents))
        check(got, "RESTORE_LIST returned nothing")
        ents += got
    dirs = []
    for i, e in enumerate(ents):
        p = os.path.join(dest, e["path"])
        os.makedirs(os.path.dirname(p), exist_ok=True)
        t = e["type"]
        if t == 2:
            os.makedirs(p, exist_ok=True)
            dirs.append((p, e))
            continue
        if t == 3:
            os.symlink(e["link"], p)
        elif t == 4:
            os.mkfifo(p)
        elif t == 1 and e["link_index"] != vp.NO_LINK:
            os.link(os.path.join(dest, ents[e["link_index"]]["path"]), p)
            continue
        elif t == 1:
            with open(p, "wb") as f:
                off = 0
                while off < e["size"]:
                    o, ln, flags, data = conn.restore_read(job, i, off, 1 << 20)
                    check(o == off, "RESTORE_READ answered another offset")
                    if flags & vp.RD_EOF:
                        break
                    if flags & (vp.RD_HOLE | vp.RD_ZERO | vp.RD_UNWRITTEN):
                        # a hole, written zeros or preallocated space: zeros
                        check(ln > 0, "empty hole")
                        off += ln
                        continue
                    check(len(data) == ln and ln > 0, "RESTORE_READ length mismatch")
                    f.seek(off)
                    f.write(data)
                    off += ln
                f.truncate(e["size"])
        else:
            continue
        if t != 3:
            os.chown(p, e["uid"], e["gid"])
            os.chmod(p, e["mode"])
        os.utime(p, ns=(e["atime_ns"], e["mtime_ns"]), follow_symlinks=False)
    for p, e in reversed(dirs):
        os.chmod(p, e["mode"])
        os.utime(p, ns=(e["atime_ns"], e["mtime_ns"]))
    conn.restore_end(job)
    return n


def digest(path, size, block=1 << 16):
    """SHA-256 over the file's non-zero 64 KiB blocks and their positions: equal
    exactly when the contents are equal, whether zeros are holes or data, and
    holes cost nothing to skip."""
    h = hashlib.sha256(str(size).encode())
    zero = bytes(block)
    fd = os.open(path, os.O_RDONLY)
    try:
        off = 0
        while off < size:
            try:
                data_at = os.lseek(fd, off, os.SEEK_DATA)
            except OSError:
                break                       # only a hole remains
            off = data_at - data_at % block
            hole_at = os.lseek(fd, data_at, os.SEEK_HOLE)
            while off < hole_at:
                b = os.pread(fd, block, off)
                if b and b != zero[:len(b)]:
                    h.update(off.to_bytes(8, "little") + b)
                off += block
    finally:
        os.close(fd)
    return h.hexdigest()


def describe(root):
    """{relpath: (type, size, mode, mtime_ns, sha256 or link target, hard-link group)}"""
    out, groups = {}, {}
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(dirs + files):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            if rel == "lost+found" or rel.startswith("lost+found/"):
                continue
            st = os.lstat(full)
            content = None
            if stat.S_ISREG(st.st_mode):
                content = digest(full, st.st_size)
                if st.st_nlink > 1:
                    groups.setdefault(st.st_ino, []).append(rel)
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(full)
            isdir = stat.S_ISDIR(st.st_mode)
            out[rel] = [stat.S_IFMT(st.st_mode), 0 if isdir else st.st_size,
                        stat.S_IMODE(st.st_mode), 0 if isdir else st.st_mtime_ns, content, None]
    for paths in groups.values():
        for p in paths:
            out[p][5] = min(paths)          # hard links: the same group on both sides
    return {k: tuple(v) for k, v in out.items()}


def same_trees(a, b, what):
    da, db = describe(a), describe(b)
    if da != db:
        for k in sorted(set(da) | set(db)):
            if da.get(k) != db.get(k):
                print(f"  {k}:\n    original {da.get(k)}\n    restored {db.get(k)}")
        fail(f"{what}: restored tree differs")
    return len(da)


def allocated(path):
    return os.stat(path).st_blocks * 512


# ---- what vbackupd holds (tests of its bounds) --------------------------------------

def rss_mib(d):
    """The daemon's resident memory (VmRSS), MiB."""
    for line in open(f"/proc/{d.proc.pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    fail("no VmRSS in /proc/PID/status")


def vm_row(d, vm):
    """The VM's row of `vbackupctl vms --json`."""
    rows = [r for r in d.ctl_json("vms") if r["name"] == vm]
    check(rows, f"no VM {vm} in vbackupctl vms")
    return rows[0]


def wait_released(d, vm, what, timeout=30):
    """Wait until no read buffer is in use and the VM holds no memory."""
    wait_for(lambda: d.ctl_json("daemon-stats")["buffers_in_use"] == 0,
             f"{what}: the read buffers to come back", timeout)
    wait_for(lambda: vm_row(d, vm)["memory"]["in_use"] == 0,
             f"{what}: VM {vm}'s memory to be given back "
             f"(still {vm_row(d, vm)['memory']})", timeout)
