#!/usr/bin/env python3
"""The world of the randomized faults tests (faults-rounds, faults-chaos,
bench/chaos): one repository on a loop-mounted ext4 (so that its power can be
cut), shared by two vbackupd and by vbackupctl; disk images and file systems
whose content changes and comes back; jobs of every kind (files mapped from
an ext4 image, fallback data, whole disks; full and incremental) in threads,
commands in the background; and the faults: kill -9 of any of them, SIGTERM,
power cuts, frozen copies, failing reads, fsyncs and listings.  The ledger
(faultlib.Ledger) holds every snapshot reported done; check() proves it."""
import os
import signal
import subprocess
import threading
import time

import faultlib as fl
from faultlib import check, ctl, ctl_ok, log
import vbproto as vp

ROOTS = ["data"]
VERSIONS = 3


class Counts(dict):
    def add(self, key, n=1):
        with _counts_lock:
            self[key] = self.get(key, 0) + n

    def line(self):
        return ", ".join(f"{k} {v}" for k, v in sorted(self.items()))


_counts_lock = threading.Lock()


class Job(threading.Thread):
    """A vbackupd job driven as a guest drives it, in a thread; its outcome
    is learned through daemon restarts (the journal reports it)."""

    def __init__(self, world, d, kind, version, mode="full"):
        super().__init__(daemon=True)
        self.world, self.d, self.kind, self.version, self.mode = world, d, kind, version, mode
        self.job = None
        self.state = None

    def run(self):
        try:
            self.drive()
        except SystemExit:             # fl.fail in this thread: the main thread fails
            self.world.failures.append(f"job {self.job} ({self.kind} on {self.d.dir})")
        except Exception as e:         # noqa: BLE001 - reported, not swallowed
            self.world.failures.append(f"job {self.job}: {e!r}")

    def drive(self):
        wd, d, v = self.world, self.d, self.version
        vm = d.vm_disk if self.kind == "disk" else d.vm_files
        wd.counts.add(f"jobs {self.kind}")
        try:
            c = d.conn(vm)
            if self.kind == "disk":
                self.job, _ = c.begin("t", [f"k{v}"], [], kind=vp.KIND_DISK)
                c.seal(self.job)
            else:
                img, recs, fb, content = wd.ext4[v]
                if self.kind == "fallback":
                    data = wd.fbdata[v]
                    recs = [vp.record("data", "dir", mode=0o755),
                            vp.record("data/fb.bin", "reg", data=vp.FD_FALLBACK, size=len(data),
                                      mode=0o600, mtime_ns=1_700_000_000_000_000_000 + v)]
                    fb = [(1, data)]
                p = vp.begin_payload("t", [f"e{v}"], ROOTS, vp.KIND_FILES, self.mode)
                p = p[:8] + (1).to_bytes(4, "little") + p[12:]      # VB_BEGIN_UNFROZEN
                self.job, _ = c.begin("t", [f"e{v}"], ROOTS, raw=p)
                vp.send_records(c, self.job, recs)
                step = vp.MAX_PAYLOAD - 64
                for idx, data in fb:
                    for off in range(0, len(data), step):
                        c.data(self.job, idx, off, data[off:off + step], off + step >= len(data))
                c.seal(self.job)
            c.close()
        except (OSError, EOFError, vp.Error):
            pass                        # killed, shut down, refused: the status says
        if self.job is None:
            self.state = "refused"
            wd.counts.add("jobs refused")
            return
        st = self.outcome()
        self.state = st["state"] if st else "lost"
        wd.counts.add(f"jobs {self.state}")
        if st and st["state"] == "done":
            durable = not st["reason"]          # "committed, but ... (an fsync failed)"
            if self.kind == "disk":
                wd.ledger.disk(wd.repo, st["snapshot"], wd.disks[v][1], durable)
            elif self.kind == "fallback":
                wd.ledger.files(wd.repo, st["snapshot"], wd.fb_content(v), durable)
            else:
                wd.ledger.files(wd.repo, st["snapshot"], wd.ext4[v][3], durable)

    def outcome(self):
        deadline = time.monotonic() + 300      # a safety net across restarts
        vm = self.d.vm_disk if self.kind == "disk" else self.d.vm_files
        while time.monotonic() < deadline:
            try:
                c = self.d.conn(vm)
                try:
                    st = c.status(self.job)[0]
                finally:
                    c.close()
                if st["state"] in ("done", "failed", "cancelled"):
                    return st
            except vp.Error as e:
                if e.status == vp.S["NO_JOB"]:      # accepted, then unknown: never right
                    fl.fail(f"job {self.job} of {vm}: {e.message} (after a restart?)")
            except (OSError, EOFError):
                pass                            # the daemon is down: it comes back
            time.sleep(0.1)
        fl.fail(f"job {self.job} never ended")


class Cmd:
    """A vbackupctl command in the background."""

    def __init__(self, world, kind, args, env=None, done=None, scratch=False):
        self.world, self.kind, self.args, self.done = world, kind, args, done
        self.out = world.w.p(f"cmd-{time.monotonic_ns()}.out")
        self.p = fl.ctl_bg(world.repo, *args, env=env, out=self.out)
        self.killed = False
        world.counts.add(f"{kind}")

    def poll(self):
        return self.p.poll()

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.killed = True
            self.world.counts.add(f"kill -9 {self.kind}")
        self.p.wait()

    def finish(self):
        rc = self.p.wait()
        text = open(self.out).read()
        os.unlink(self.out)
        if self.killed or rc < 0:
            return
        if self.done:
            self.done(rc, text)


class World:
    def __init__(self, w, rng, n_daemons=2):
        self.w, self.rng = w, rng
        self.counts = Counts()
        self.ledger = fl.Ledger(w)
        self.fs = fl.LoopFS(w, "fs", "768M")
        self.repo = self.fs.mnt + "/repo"
        ctl_ok(self.repo, "init", "--format", "1")
        self.jobs, self.cmds = [], []
        self.failures = []          # from job threads
        self.hold = fl.Hold(w, "chaos-hold")
        # whole disks: three versions of one disk, parts changed, each comes back
        base = bytearray(os.urandom(12 << 20))
        self.disks = []
        for i in range(VERSIONS):
            data = bytearray(base)
            if i:
                lo = (4 << 20) * i
                data[lo:lo + (4 << 20)] = os.urandom(4 << 20)
            path = w.p(f"disk{i}.raw")
            with open(path, "wb") as f:
                f.write(data)
            self.disks.append((path, fl.sha_file(path)))
        # file systems: common files, and files of each version (some sent as
        # fallback data)
        common = w.p("common")
        fl.dl.random_files(common, 2, 1 << 20, "c{i}.bin")
        self.ext4 = []
        for i in range(VERSIONS):
            tree = w.p(f"tree{i}")
            os.makedirs(tree + "/data")
            fl.run("cp", "-a", common, tree + "/data/common")
            fl.dl.random_files(tree + f"/data/v{i}", 2, 3 << 19)
            fl.dl.random_files(tree + "/data", 1, 1 << 19, "fb{i}.bin")
            img = fl.dl.make_ext4(w.p(f"fs{i}.raw"), tree, size="32M")
            recs, fb = fl.dl.map_image(w, img, ROOTS, fallback=("data/fb*",))
            self.ext4.append((img, recs, fb, fl.tree_content(tree, ROOTS)))
        self.fbdata = [os.urandom((1 << 20) + i * 4096) for i in range(VERSIONS)]
        self.daemons = []
        for k in range(n_daemons):
            disks = {f"e{i}": self.ext4[i][0] for i in range(VERSIONS)}
            kdisks = {f"k{i}": self.disks[i][0] for i in range(VERSIONS)}
            d = fl.dl.Daemon(w, {f"m{k}": disks, f"k{k}": kdisks}, targets={"t": self.repo},
                             batch_seconds=0.2, name=f"d{k}", extra={"idle_timeout": 30})
            d.vm_files, d.vm_disk = f"m{k}", f"k{k}"
            d.start()
            self.daemons.append(d)

    def fb_content(self, v):
        data = self.fbdata[v]
        return {"data": ("dir",),
                "data/fb.bin": ("reg", len(data), fl.hashlib.sha256(data).hexdigest())}

    # ---- work ---------------------------------------------------------------------------
    def job(self, kind=None, d=None, version=None, mode=None):
        rng = self.rng
        j = Job(self, d or rng.choice(self.daemons), kind or rng.choice(["files", "fallback", "disk"]),
                rng.randrange(VERSIONS) if version is None else version,
                mode or rng.choice(["full", "incremental"]))
        j.start()
        self.jobs.append(j)
        return j

    def cli_backup(self, version=None, vm="c0", env=None, expect=(0,)):
        v = self.rng.randrange(VERSIONS) if version is None else version
        path, sha = self.disks[v]

        def done(rc, text):
            check(rc in expect, f"backup-disk --vm {vm} exit {rc}:\n{text}")
            if rc == 0 and not vm.startswith("s"):
                self.ledger.disk(self.repo, text.split()[-1], sha, "warning" not in text)
        return self.cmd("backup-disk", ["backup-disk", "--vm", vm, "--name", "d", "--format", "raw",
                                        path], env, done)

    def cmd(self, kind, args, env=None, done=None):
        c = Cmd(self, kind, args, env, done)
        self.cmds.append(c)
        return c

    # a step inside each command where kill -9 lands for sure (io-fault.c's holds)
    STEPS = {
        "backup-disk": ["hold:syncfs:/repo$:once",                   # chunks written, not synced
                        "hold:fsync:/snapshots/c0/.tmp-:dir:once",   # just before the commit point
                        "hold:fsync:/snapshots/c0$:dir:once"],       # around the rename
        "gc": ["hold:fsync:/repo/.tmp-:file:once",                   # moving the generation on
               "hold:syncfs:/repo$:once"],                           # after deleting
        "prune": ["hold:fsync:/snapshots/s0$:dir:once"],             # a snapshot renamed away
        "forget": ["hold:fsync:/snapshots/s0$:dir:once"],
        "restore-disk": ["hold:read:/chunks/:file:once"],            # mid-restore
        "restore-files": ["hold:read:/chunks/:file:once"],
    }

    def kill_at_step(self, kind):
        """Start a command that stops at one of its steps, and kill -9 it there
        (or, when it never reaches the step, let it end)."""
        rule = self.rng.choice(self.STEPS[kind])
        env = fl.fault_env([rule], hold=self.hold)
        c = self.cli_backup(env=env) if kind == "backup-disk" else self.maintenance(kind, env)
        fl.wait_for(lambda: self.hold.held() or c.poll() is not None, f"{kind} at {rule}", 120)
        if self.hold.held():
            c.kill()
            self.counts.add(f"kill -9 {kind} at a step")
        c.finish()
        self.cmds.remove(c)
        self.hold.reset()

    def maintenance(self, kind, env=None):
        """gc, prune and forget of scratch snapshots, verify, repair, restores."""
        rng = self.rng
        if kind == "gc":
            return self.cmd("gc", ["gc"], env, lambda rc, t: check(rc == 0, f"gc: {t}"))
        if kind == "prune":
            return self.cmd("prune", ["prune", "--vm", "s0", "--keep-last", str(rng.randint(1, 2))],
                            env, lambda rc, t: check(rc == 0, f"prune: {t}"))
        if kind == "forget":
            scratch = [s for s in fl.snapshots(self.repo) if s.startswith("s0/")]
            if not scratch:
                return self.cli_backup(vm="s0")
            # a snapshot pruned meanwhile: forget says it is not found (exit 1)
            return self.cmd("forget", ["forget", rng.choice(scratch)], env,
                            lambda rc, t: check(rc == 0 or "not found" in t, f"forget: {t}"))
        if kind == "verify":
            return self.cmd("verify", ["verify"], done=lambda rc, t: check(rc == 0, f"verify: {t}"))
        if kind == "repair":
            return self.cmd("repair", ["repair"], done=lambda rc, t: check(rc == 0, f"repair: {t}"))
        items = [(k, v) for k, v in self.ledger.items() if v[0] == ("disk" if kind == "restore-disk"
                                                                     else "files")]
        if not items:
            return self.cli_backup()
        (repo, sid), (_, want) = rng.choice(items)
        out = self.w.p(f"restore-{time.monotonic_ns()}")
        if kind == "restore-disk":
            def done(rc, t):
                check(rc == 0 and fl.sha_file(out) == want, f"restore-disk {sid}: {t}")
                os.unlink(out)
            return self.cmd(kind, ["restore-disk", sid, "--to", out], env, done)

        def done_files(rc, t):
            check(rc == 0 and fl.tree_content(out) == want, f"restore-files {sid}: {t}")
            fl.shutil.rmtree(out)
        return self.cmd(kind, ["restore-files", sid, "--to", out], env, done_files)

    def in_flight(self):
        """A snapshot is being made: a temporary snapshot folder exists."""
        snaps = os.path.join(self.repo, "snapshots")
        try:
            return any(x.startswith(".tmp-") for vm in os.listdir(snaps)
                       for x in os.listdir(os.path.join(snaps, vm)))
        except OSError:
            return False

    def when_busy(self, hi=0.3):
        """A random moment while work is in flight (if any comes within the
        safety net of the wait, else now)."""
        deadline = time.monotonic() + 30
        while not self.in_flight() and time.monotonic() < deadline and \
                (self.jobs or self.cmds):
            time.sleep(0.02)
        time.sleep(self.rng.uniform(0, hi))

    # ---- faults ------------------------------------------------------------------------------
    def kill_daemon(self, sig=signal.SIGKILL):
        d = self.rng.choice(self.daemons)
        log(f"{'kill -9' if sig == signal.SIGKILL else 'SIGTERM'} {d.dir}")
        if sig == signal.SIGKILL:
            d.kill()
            self.counts.add("kill -9 vbackupd")
        else:
            check(d.stop(sig) == 0, "vbackupd's exit status after SIGTERM")
            self.counts.add("SIGTERM vbackupd")
        d.start()

    def power_cut(self):
        """The repository's file system loses power; everything using it dies
        (the daemons too: they come back after the 'reboot')."""
        busy = self.in_flight()
        log(f"power cut{' (a snapshot was being made)' if busy else ''}")
        self.fs.power_cut()
        self.counts.add("power cuts")
        self.counts.add("power cuts mid-snapshot", int(busy))
        for c in self.cmds:
            c.kill()
            c.killed = True             # what it said after the cut (EIO) proves nothing
        for d in self.daemons:
            d.kill()
        for c in self.cmds:
            c.finish()
        self.cmds = []
        self.fs.remount_after_cut()
        log("power back: the file system is mounted again, vbackupd started")
        for d in self.daemons:
            d.start()
        self.settle()
        self.ledger.after_cut(self.repo)
        self.check("after a power cut")
        r = ctl(self.repo, "gc")
        check(r.returncode == 0, f"gc after a power cut: {r.stderr}")

    def frozen_copy(self):
        """The repository's backing file copied while frozen: what a crash at
        that instant leaves (with everything written so far on disk)."""
        durable = [k for k, _ in self.ledger.items() if k not in self.ledger.weak]
        mnt = self.fs.frozen_copy("copy")
        self.counts.add("frozen copies")
        try:
            listed = set(fl.snapshots(mnt + "/repo"))
            for repo, sid in durable:
                check(sid in listed, f"the frozen copy lacks {sid}, reported done before")
            r = ctl(mnt + "/repo", "verify")
            check(r.returncode == 0, f"verify of the frozen copy:\n{r.stdout}{r.stderr}")
            r = ctl(mnt + "/repo", "gc")
            check(r.returncode == 0, f"gc of the frozen copy: {r.stderr}")
        finally:
            fl.run("umount", mnt)
            self.w.mounts.remove(mnt)
            os.unlink(self.w.p("copy.ext4"))

    def io_fault(self, kind=None):
        """A command that meets a failing disk: it fails cleanly (exit 1,
        naming the cause) and changes nothing it should not."""
        rng = self.rng
        kind = kind or rng.choice(["read", "readdir-gc", "readdir-prune", "fsync-backup",
                                   "syncfs-backup", "readdir-list"])
        self.counts.add(f"io errors ({kind})")
        chunks = sorted(fl.chunk_files(self.repo))
        if kind == "read" and chunks:
            victim = os.path.basename(rng.choice(chunks))
            r = ctl(self.repo, "verify", env=fl.fault_env([f"fail:read:{victim}"]))
            check(r.returncode in (0, 1) and (r.returncode == 0 or victim in r.stdout),
                  f"verify meeting a read error: exit {r.returncode}\n{r.stdout}{r.stderr}")
        elif kind in ("readdir-gc", "readdir-prune", "readdir-list"):
            where = rng.choice(["/snapshots", "/snapshots/c0", "/snapshots/m0", "/chunks"] +
                               [f"/chunks/{os.path.basename(os.path.dirname(c))}" for c in chunks[:3]])
            args = {"readdir-gc": ["gc"], "readdir-prune": ["prune", "--keep-last", "1", "--dry-run"],
                    "readdir-list": ["snapshots"]}[kind]
            r = ctl(self.repo, *args, env=fl.fault_env(readdir=self.repo + where))
            # a folder that is there and that the command lists: it must refuse
            relevant = os.path.isdir(self.repo + where) and \
                not (where.startswith("/chunks") and kind != "readdir-gc")
            check(r.returncode == (1 if relevant else 0) and (not relevant or "Input/output error" in r.stderr),
                  f"{args[0]} meeting a listing error in {where}: exit {r.returncode} {r.stderr}")
        elif kind == "fsync-backup":
            c = self.cli_backup(vm="s0", expect=(1,),
                                env=fl.fault_env(["fail:fsync:/snapshots/s0/.tmp-:dir"]))
            c.finish()
            self.cmds.remove(c)
        elif kind == "syncfs-backup":
            c = self.cli_backup(vm="s0", expect=(1,), env=fl.fault_env(["fail:syncfs:/repo$"]))
            c.finish()
            self.cmds.remove(c)

    # ---- waiting and checking ----------------------------------------------------------------
    def reap(self):
        """Commands and jobs that ended: their outcome is taken."""
        for c in [c for c in self.cmds if c.poll() is not None]:
            c.finish()
            self.cmds.remove(c)
        self.jobs = [j for j in self.jobs if j.is_alive()]

    def settle(self):
        for c in self.cmds:
            c.finish()
        self.cmds = []
        for j in self.jobs:
            j.join(360)
            check(not j.is_alive(), f"job {j.job} never ended")
        self.jobs = []
        check(not self.failures, f"jobs failed their checks: {self.failures}")

    def check(self, what, sample=3):
        self.settle()
        self.ledger.check(what, repos=[self.repo], sample=sample, rng=self.rng)
        self.counts.add("checks")

    def stop(self):
        self.settle()
        for d in self.daemons:
            check(d.stop() == 0, "vbackupd's exit status")
