#!/usr/bin/env python3
"""Two hosts, one bucket (tests/s3/s3-suite.sh runs it against radosgw).

Two vbackupd daemons, each with its own folder, sockets and index cache (two
"hosts", VMs web1 and web2), write one repository: the same s3://BUCKET/PREFIX,
the same password file, reached through the [target] keys.  The test's own
vbackupctl calls (gc, forget, restore-files, verify) use the AWS_* variables
and a cache of their own.

  dedup   host 1 backs up, then host 2 backs up the same 12 MiB file and one
          of its own: the bucket's data/ grows by host 2's own file only.
  gc      two rounds of both hosts backing up at once (full and incremental,
          shared and own new files) while `vbackupctl gc` runs again and
          again and snapshots are forgotten between rounds: every gc
          succeeds, every job ends done.
  kill    host 1 is killed (SIGKILL) while its job uploads an 80 MiB file
          (a pack of it is in the bucket), host 2's job goes on to done; a
          gc at once, while host 1's lease is live, keeps the packs it left;
          a gc after the lease expired (VBACKUP_TEST_LEASE_EXPIRY, set by the
          caller for every process) brings data/ back to what the committed
          snapshots hold; host 1 restarted backs up again.
  Then every snapshot not forgotten restores (restore-files) equal to its
  disk as it was, and verify --read-data is clean.

With the argument rgw-restart, one host instead: radosgw is stopped and
started again (tests/ceph/ceph-cluster stop-rgw, start-rgw) while its job
uploads a 48 MiB file; the job ends done, or failed with a reason and a
retry ends done; gc leaves no more than the snapshot holds; it restores
equal to the disk.

Environment: VB_HOSTS_TARGET (s3://BUCKET/PREFIX, made by the caller),
VB_TEST_TARGET_KEYS, VBACKUP_PASSWORD_FILE, the AWS_* variables, VB_CEPH_DIR
(radosgw-admin lists the bucket), VB_S3_SEED (the files' contents),
VBACKUP_TEST_LEASE_EXPIRY (seconds).
"""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../daemon"))
from daemonlib import (Daemon, backup, check, fail, make_ext4, map_image,  # noqa: E402
                       mount, same_trees, umount, wait_for, workdir, VBACKUPCTL)

LOC = os.environ["VB_HOSTS_TARGET"]
BUCKET, PREFIX = LOC[len("s3://"):].split("/", 1)
SEED = int(os.environ.get("VB_S3_SEED", "1"))
EXPIRY = int(os.environ["VBACKUP_TEST_LEASE_EXPIRY"])
CEPH_CONF = os.path.join(os.environ["VB_CEPH_DIR"], "ceph.conf")
ROOTS = ["etc", "srv"]
MiB = 1 << 20
rng = random.Random(SEED)
T0 = time.monotonic()


def log(*a):
    print(f"s3-hosts: {time.monotonic() - T0:5.1f}s", *a, flush=True)


log(f"seed {SEED}, lease expiry {EXPIRY} s, repository {LOC}")


def data_bytes():
    """Bytes of the objects under PREFIX/data/ in the bucket, and their count."""
    r = subprocess.run(["radosgw-admin", "-c", CEPH_CONF, "bucket", "list", "--bucket", BUCKET,
                        "--max-entries", "1000000"], capture_output=True, text=True)
    check(r.returncode == 0, f"radosgw-admin bucket list: {r.stderr}")
    n = size = 0
    for o in json.loads(r.stdout):
        if o["name"].startswith(PREFIX + "/data/") and o.get("exists", True):
            n += 1
            size += o["meta"]["size"]
    return size, n


def ctl(*args, ok=True):
    r = subprocess.run([VBACKUPCTL, "--repo", LOC] + list(args), capture_output=True, text=True)
    if ok and r.returncode:
        fail(f"vbackupctl {' '.join(args)}: rc {r.returncode}: {r.stdout}{r.stderr}")
    return r


def write(mnt, rel, data):
    p = os.path.join(mnt, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "wb") as f:
        f.write(data)


class Host:
    """One daemon, one VM with one disk; the disk as each snapshot saw it."""

    def __init__(self, w, name, vm, tree):
        self.w, self.name, self.vm = w, name, vm
        self.disk = make_ext4(w.p(f"{name}-disk.raw"), tree, size="384M")
        self.cache = w.p(f"{name}-cache")
        self.d = Daemon(w, {vm: {"data0": self.disk}}, name=name)
        self.refs = {}                  # snapshot id -> copy of the disk it was made from
        self.pending, self.n, self.prepared = [], 0, None
        self.start()

    def start(self):
        # a host of its own: its own index cache
        self.d.start(wrapper=("env", f"VBACKUP_CACHE={self.cache}"))
        self.c = self.d.conn(self.vm)

    def change(self, files):
        m = mount(self.w, self.disk, ro=False)
        for rel, data in files.items():
            if data is None:
                os.unlink(os.path.join(m, rel))
            else:
                write(m, rel, data)
        umount(self.w, m)

    def prepare(self):
        """Map the disk as it is now, and keep a copy of it."""
        self.n += 1
        ref = self.w.p(f"{self.name}-ref{self.n}.raw")
        subprocess.run(["cp", "--sparse=always", self.disk, ref], check=True)
        self.prepared = (map_image(self.w, self.disk, ROOTS), ref)

    def begin(self, mode):
        """Seal a files job of the disk as prepared (the daemon then reads it)."""
        if not self.prepared:
            self.prepare()
        (recs, fb), ref = self.prepared
        self.prepared = None
        job = backup(self.c, "archive", ["data0"], ROOTS, recs, fb, mode=mode, wait=False)
        self.pending = [(job, ref)]
        return job

    def end(self, expect="done"):
        job, ref = self.pending.pop()
        st = self.c.wait_job(job, timeout=300)
        check(st["state"] == expect, f"{self.name}: job {job} ended {st['state']}: {st['reason']}")
        if expect == "done":
            self.refs[st["snapshot"]] = ref
            log(f"{self.name}: job {job} done: {st['snapshot']}, new {st['bytes_new']}")
        return st


def restore_all(w, hosts, what, read_data=True):
    """Every snapshot the hosts committed and did not forget: restored by
    vbackupctl from the bucket, equal to the disk it was made from; verify
    (reading every blob again, or not)."""
    listed = {s["id"] for s in json.loads(ctl("snapshots", "--json").stdout)}
    want = {sid: ref for h in hosts for sid, ref in h.refs.items()}
    check(listed == set(want), f"{what}: snapshots {sorted(listed)}, expected {sorted(want)}")
    outs = {sid: w.p(f"restore-{i}") for i, sid in enumerate(sorted(want))}
    for out in outs.values():
        shutil.rmtree(out, ignore_errors=True)
    with ThreadPoolExecutor(3) as ex:        # each waits for radosgw most of its time
        list(ex.map(lambda sid: ctl("--quiet", "restore-files", sid, "--to", outs[sid]), outs))
    for sid, ref in sorted(want.items()):
        src = mount(w, ref)
        same_trees(src, outs[sid], f"{what}: {sid}")
        umount(w, src)
        shutil.rmtree(outs[sid])
    r = ctl("verify", *(["--read-data"] if read_data else []), ok=False)
    check(r.returncode == 0, f"{what}: verify: {r.stdout}{r.stderr}")
    log(f"{what}: {len(want)} snapshots restored equal, verify "
        f"{'--read-data ' if read_data else ''}clean")


class GcLoop:
    """vbackupctl gc again and again until stopped: each run must succeed."""

    def __init__(self):
        self.stop_ev = threading.Event()
        self.runs, self.failed = [], []
        self.t = threading.Thread(target=self.loop)
        self.t.start()

    def loop(self):
        while not self.stop_ev.is_set():
            r = ctl("gc", "--json", ok=False)
            if r.returncode:
                self.failed.append(r.stdout + r.stderr)
            else:
                self.runs.append(json.loads(r.stdout))

    def stop(self):
        self.stop_ev.set()
        self.t.join()
        check(not self.failed, f"gc failed while backups ran: {self.failed}")
        check(len(self.runs) >= 2, f"gc ran only {len(self.runs)} times during the backups")
        tot = {k: sum(g.get(k, 0) for g in self.runs)
               for k in ("packs_condemned", "packs_repacked", "packs_deleted")}
        log(f"gc ran {len(self.runs)} times during the backups: {tot}")
        return tot


def gc_reclaims(bound, what):
    """After the leases of what failed or died expired: gc brings data/ to at most bound."""
    for _ in range(60):                 # a failed job's daemon may run its own gc
        r = ctl("gc", "--json", ok=False)
        if "maintenance is running" not in r.stderr:
            break
        time.sleep(1)
    check(r.returncode == 0, f"gc: {r.stdout}{r.stderr}")
    final, _ = data_bytes()
    g = json.loads(r.stdout)
    log(f"gc after the lease expired: data/ {final}, {g['packs_deleted']} packs deleted")
    check(final <= bound, f"gc left {final - bound} bytes more than the snapshots hold ({what})")


def rgw_restart(w):
    """radosgw stopped and started again while host 1 uploads."""
    cluster = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../ceph/ceph-cluster")
    t = w.p("tree")
    write(t, "etc/motd", b"radosgw goes away\n")
    write(t, "srv/big.bin", rng.randbytes(48 * MiB))
    h = Host(w, "h1", "web1", t)
    base, _ = data_bytes()
    job = h.begin("full")
    wait_for(lambda: h.d.ctl_json("job", str(job))["bytes_new"] > 0, "host 1's job to put data")
    subprocess.run([cluster, "stop-rgw", os.environ["VB_CEPH_DIR"]], check=True)
    j = h.d.ctl_json("job", str(job))
    log(f"radosgw stopped; the job is {j['state']}, {j['bytes_new']} bytes new")
    check(j["state"] not in ("done", "failed", "cancelled"),
          f"the job ended {j['state']} before radosgw stopped: nothing was tested")
    subprocess.run([cluster, "start-rgw", os.environ["VB_CEPH_DIR"]], check=True)
    st = h.c.wait_job(job, timeout=300)
    log(f"radosgw started again; the job ended {st['state']} {st['reason']}")
    if st["state"] == "failed":
        check(st["reason"], "the job failed without a reason")
        h.pending.clear()
        h.begin("full")                 # again: it must work now
        h.end()
        # its lease, if radosgw was not there to remove it, expires
        time.sleep(EXPIRY + 2)
    else:
        h.pending = [(job, h.pending[0][1])]
        h.end()
    gc_reclaims(base + 48 * MiB + MiB, "a job interrupted by radosgw's restart")
    restore_all(w, [h], "after radosgw's restart", read_data=False)   # restored: read
    check(h.d.stop() == 0, "vbackupd did not exit cleanly on SIGTERM")
    log("ok: radosgw restarted during a backup, nothing left that gc does not reclaim")


def two_hosts(w):
    common = rng.randbytes(12 * MiB)
    trees = []
    for i in (1, 2):
        t = w.p(f"tree{i}")
        for rel, data in (("etc/motd", b"one bucket, two hosts\n"), ("srv/common.bin", common),
                          ("srv/own.bin", rng.randbytes(4 * MiB))):
            write(t, rel, data)
        trees.append(t)
    h1 = Host(w, "h1", "web1", trees[0])
    h2 = Host(w, "h2", "web2", trees[1])
    hosts = [h1, h2]

    # ---- dedup: host 2's copy of what host 1 stored adds nothing ---------------
    b0, _ = data_bytes()
    h1.begin("full")
    s1 = h1.end()["snapshot"]
    b1, _ = data_bytes()
    h2.begin("full")
    h2.end()
    b2, _ = data_bytes()
    log(f"dedup: data/ {b0} -> {b1} after host 1 (+{b1 - b0}) -> {b2} after host 2 (+{b2 - b1})")
    check(b1 - b0 >= 16 * MiB, f"host 1 stored {b1 - b0} bytes for 16 MiB of random data")
    check(b2 - b1 <= 4 * MiB + MiB,
          f"host 2 stored {b2 - b1} bytes: its 12 MiB copy of host 1's file was stored again")

    # ---- gc racing both hosts ---------------------------------------------------
    gc = GcLoop()
    ctl("--quiet", "forget", s1)            # host 1's own.bin becomes garbage while re-read
    del h1.refs[s1]
    for rnd in (1, 2):
        shared = rng.randbytes(2 * MiB)
        for h in hosts:
            h.change({f"srv/shared-{rnd}.bin": shared,
                      f"srv/own-{rnd}.bin": rng.randbytes(3 * MiB)})
        h1.begin("full" if rnd == 1 else "incremental")
        h2.begin("incremental")
        for h in hosts:
            h.end()
        if rnd == 1:
            old = min(h2.refs)              # host 2's first: its next parent is the newer
            ctl("--quiet", "forget", old)
            del h2.refs[old]
    gc.stop()

    # ---- kill -9 of host 1 while it uploads; gc reclaims after its lease --------
    base, _ = data_bytes()
    h1.change({"srv/big.bin": rng.randbytes(80 * MiB)})
    h2.change({"srv/own-3.bin": rng.randbytes(8 * MiB)})
    h2.prepare()
    job1 = h1.begin("incremental")

    def uploading():
        j = h1.d.ctl_json("job", str(job1))
        check(j["state"] not in ("done", "failed", "cancelled"),
              f"host 1's job ended {j['state']} before it was killed")
        return data_bytes()[0] >= base + 16 * MiB       # a pack of its in the bucket
    wait_for(uploading, "host 1's job to upload a pack", timeout=120)
    h2.begin("incremental")             # host 2 backs up while host 1 dies
    h1.d.proc.send_signal(signal.SIGKILL)
    h1.d.proc.wait()
    killed = time.monotonic()
    h1.pending.clear()
    log("host 1 killed (SIGKILL) while its job uploaded")
    # gc at once: host 1's lease is live (refreshed at most EXPIRY/10 before
    # the kill), so its packs are condemned, not deleted
    g = json.loads(ctl("gc", "--json").stdout)
    live = time.monotonic() < killed + EXPIRY - EXPIRY / 10 - 1.5    # the store's clock: 1 s
    log(f"gc while host 1's lease is {'live' if live else 'maybe expired'}: "
        f"{g['packs_condemned']} packs condemned, {g['packs_deleted']} deleted")
    st2 = h2.end()
    after, _ = data_bytes()
    left = after - base - st2["bytes_new"]
    log(f"data/ {base} before, {after} after (host 2 committed {st2['bytes_new']} new): "
        f"host 1 left {left}")
    if live:
        check(left >= 16 * MiB, f"gc deleted the packs of a writer whose lease was live "
              f"(host 1 left {left} bytes)")
    else:
        log("the gc took too long to tell whether it respected host 1's lease")
    time.sleep(max(0.0, killed + EXPIRY + 2 - time.monotonic()))
    gc_reclaims(base + st2["bytes_new"] + MiB, "the killed job's packs")
    h1.change({"srv/big.bin": None})
    h1.start()                          # host 1 again: its next backup works
    h1.begin("incremental")
    h1.end()
    restore_all(w, hosts, "after the kill")
    for h in hosts:
        check(h.d.stop() == 0, f"{h.name}: vbackupd did not exit cleanly on SIGTERM")
    log("ok: two hosts, one bucket: dedup, gc racing backups, a killed writer reclaimed")


with workdir() as w:
    os.environ["VBACKUP_CACHE"] = w.p("ctl-cache")       # the test's own cache
    if sys.argv[1:] == ["rgw-restart"]:
        rgw_restart(w)
    else:
        two_hosts(w)
