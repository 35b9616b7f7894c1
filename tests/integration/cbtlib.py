#!/usr/bin/env python3
"""The changed-block tracking scenario shared by guest-cbt.py (QMP) and
guest-cbt-libvirt.py (libvirt); docs/cbt.md.

One VM with two disks: data0 a raw image (no qcow2 anywhere: the tracking
overlay is the only qcow2 layer), data1 a qcow2 clone of a raw golden image
(the tracking overlay goes over the clone, never over the golden image).
The guest writes N MiB in runs at pseudo-random offsets (cbtwriter.c, the
seed printed), prints the sha256 of the whole disk, and backs the disk up
with `vbackup backup-disk --mode incremental` (or differential), three boots:

  A  first backups (full reads: no tracking yet); incrementals of each disk
     after writes; a differential; more writes, flushed; then QEMU is killed
     (SIGKILL) while the guest sleeps
  B  QEMU started again on the disk's tracking overlay: the disk holds what
     the guest wrote before the kill, and the next incremental is a proven
     one that reads exactly those writes
  C  after another tool touched data0's image (its mtime): a full read that
     says so; then a proven incremental again
  D  (QMP only) vbackupd killed while a tracked disk job holds its view and
     the guest writes more; the restarted vbackupd folds the view back into
     the tracking overlay, and the next incremental is proven: the writes
     before the job exactly, those made under the view in FOLD_GRANULE units
  E  (QMP only) data0 restored into its image from an earlier snapshot and
     QEMU started on the image: the guest sees the restored disk, a full read
     that says the disk runs on its image, then a proven incremental again

Checks: every incremental reads at most N MiB plus one 4 KiB subcluster per
write run (the runs are 4 KiB aligned, so the change set is exactly the
union of the runs, which the snapshot's counters must show); every backup
that cannot prove its change set says "full read: <reason>" in its job's
plan; every snapshot restored equals the disk as the guest had it (sha256);
the golden image is never written; the repository verifies."""
import hashlib
import json
import os
import re
import subprocess

from guestlib import VBACKUPCTL, check, log, run

MIB = 1 << 20
SUB = 4096          # the tracking overlay's subcluster: its granularity
# What the guest writes while a view is held goes to the view's overlay;
# folding it back into the tracking overlay is QEMU's active commit (a mirror
# job), which copies whole granules of its dirty bitmap: the target's cluster
# size capped at 64 KiB (bdrv_get_default_bitmap_granularity), so 64 KiB for
# the tracking overlay's 128 KiB clusters.  QEMU 7.2 offers no finer fold:
# block-commit takes no granularity, and blockdev-mirror refuses a target in
# the source's backing chain ("node is used as backing hd").  Measured with
# QEMU 7.2 as built here.
FOLD_GRANULE = 64 << 10
DISK = 64 * MIB

GUEST_HEAD = r"""
dev_of() {
    for b in /sys/block/vd*; do
        [ "$(cat "$b/serial" 2>/dev/null)" = "$1" ] && { echo /dev/${b##*/}; return; }
    done
    echo "FAIL no disk $1"; exit 10
}
D0=$(dev_of data0); D1=$(dev_of data1)
# step LABEL SERIAL MODE SEED MIB RUNS: write (unless MIB is 0), print the
# disk's sha256, back it up
step() {
    dev=$(dev_of $2)
    echo "STEP $1 $2 $3 BEGIN"
    [ "$5" = 0 ] || cbtwriter $dev $4 $5 $6
    echo "SHA $1 $(sha256sum $dev | cut -d' ' -f1)"
    vbackup backup-disk --to archive --mode $3 $2
    echo "STEP $1 END"
}
"""

PHASE_A = GUEST_HEAD + r"""
# a first write, before any tracking: its time against step a3's, the same on the overlay
echo "STEP plain data0 none BEGIN"; cbtwriter $D0 7 8 512; echo "STEP plain END"
step a0 data0 incremental 0 0 0
step a1 data1 incremental 0 0 0
step a2 data0 incremental {seed1} 4 16
step a3 data0 incremental {seed2} 8 512
step a4 data1 incremental {seed3} 3 12
step a5 data0 differential {seed4} 1 8
echo "STEP prekill data0 none BEGIN"
cbtwriter $D0 {seed5} 3 24
echo "SHA prekill $(sha256sum $D0 | cut -d' ' -f1)"
echo "STEP prekill END"
echo KILL-ME
sleep 100000
"""

PHASE_B = GUEST_HEAD + r"""
step b0 data0 incremental 0 0 0
"""

# D (QMP): vbackupd killed while a tracked disk job holds its view; the
# restarted vbackupd folds the view back into the tracking overlay, which
# still proves everything written since the last backup, also what the
# guest wrote while the view was held (those writes in FOLD_GRANULE units)
PHASE_D = GUEST_HEAD + r"""
step d0 data0 incremental {seed7} 1 6
echo "STEP d1 data0 incremental BEGIN"
cbtwriter $D0 {seed8} 1 4
echo PRESSURE-PLEASE
await_host PRESSURE
vbackup backup-disk --to archive --mode incremental data0 > /tmp/o1 2>&1 &
bp=$!
n=0
until vbackup status | grep -q ' deferred '; do
    n=$((n + 1)); [ $n -lt 1200 ] || { vbackup status; echo "NOT DEFERRED"; exit 6; }; sleep 0.1
done
echo VIEW-HELD
cbtwriter $D0 {seed9} 1 4
echo KILL-DAEMON
if wait $bp; then echo "UNEXPECTED SUCCESS"; exit 7; fi
echo "STEP d1 END"
await_host RESTARTED
step d2 data0 incremental 0 0 0
"""

PHASE_C = GUEST_HEAD + r"""
step c0 data0 incremental 0 0 0
step c1 data0 incremental {seed6} 1 5
step c2 data1 incremental 0 0 0
"""

# E (QMP): data0 restored into its image on the host (VM off) and QEMU
# started on the image, as docs/cbt.md says: a full read that says so, then
# the tracking starts anew
PHASE_E = GUEST_HEAD + r"""
step e0 data0 incremental 0 0 0
step e1 data0 incremental {seed10} 2 8
"""


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def granules(runs, g=FOLD_GRANULE):
    """The runs rounded out to whole g-byte granules."""
    return [(off // g * g, (off + n + g - 1) // g * g - off // g * g) for off, n in runs]


def union(runs):
    """Bytes of the union of (offset, length) runs."""
    total, end = 0, -1
    for off, n in sorted(runs):
        if off >= end:
            total += n
            end = off + n
        elif off + n > end:
            total += off + n - end
            end = off + n
    return total


class Images:
    def __init__(self, w):
        self.dir = w.p("images")
        os.makedirs(self.dir)
        os.chmod(self.dir, 0o755)
        self.data0 = os.path.join(self.dir, "data0.raw")
        self.golden = os.path.join(self.dir, "golden.raw")
        self.data1 = os.path.join(self.dir, "data1.qcow2")
        for path, seed in ((self.data0, 1), (self.golden, 2)):
            with open(path, "wb") as f:
                f.truncate(DISK)
                f.seek(8 * MIB)
                f.write(os.urandom(16 * MIB))
                f.seek(40 * MIB)
                f.write(bytes([seed]) * (4 * MIB))
        run("qemu-img", "create", "-q", "-f", "qcow2", "-b", "golden.raw", "-F", "raw",
            "data1.qcow2", cwd=self.dir)
        self.golden_sum = sha256_file(self.golden)

    def disks(self, top0=None, top1=None):
        """run-guest's --disk specs: each disk on the file QEMU is to run on."""
        return [(top0 or self.data0, "data0", "qcow2" if top0 else "raw"),
                (top1 or self.data1, "data1", "qcow2")]


def runs_of(text):
    """The (offset, length) runs cbtwriter printed in text."""
    return [(int(a), int(b)) for a, b in re.findall(r"^RUN (\d+) (\d+)$", text, re.M)]


def steps(console):
    """{label: {"serial", "mode", "runs": [(off, len)], "sha", "snapshot", "out"}}"""
    out = {}
    for m in re.finditer(r"STEP (\S+) (\S+) (\S+) BEGIN\n(.*?)STEP \1 END", console, re.S):
        label, serial, mode, body = m.groups()
        s = {"serial": serial, "mode": mode, "out": body, "runs": runs_of(body)}
        sha = re.search(rf"^SHA {label} ([0-9a-f]{{64}})$", body, re.M)
        s["sha"] = sha.group(1) if sha else None
        snap = re.findall(r"^([A-Za-z0-9._-]+/\d{4}-\d\d-\d\dT[0-9:]+Z(?:-\d+)?)$", body, re.M)
        s["snapshot"] = snap[-1] if snap else None
        wrote = re.search(r"^WROTE (\d+) bytes in ([0-9.]+) s$", body, re.M)
        s["wrote"] = (int(wrote.group(1)), float(wrote.group(2))) if wrote else None
        out[label] = s
    return out


class Checker:
    """Checks each backup step against the repository and vbackupd's jobs."""

    def __init__(self, w, d, vm, images):
        self.w, self.d, self.vm, self.img = w, d, vm, images
        self.repo = d.targets["archive"]
        self.last = {}          # serial -> snapshot of its previous backup
        self.full = {}          # serial -> its first (full) snapshot
        self.rows = []

    def show(self, snap):
        return json.loads(subprocess.run([VBACKUPCTL, "--repo", self.repo, "show", snap,
                                          "--json"], capture_output=True, text=True,
                                         check=True).stdout)

    def plan(self, snap):
        for j in self.d.ctl_json("jobs"):
            job = self.d.ctl_json("job", str(j["id"]))
            if job.get("snapshot") == snap:
                return [str(n) for n in job.get("plan", [])]
        check(False, f"no job of vbackupd made snapshot {snap}")

    def restored_sha(self, snap):
        raw = self.w.p("restored.raw")
        run(VBACKUPCTL, "--repo", self.repo, "--quiet", "restore-disk", snap, "--to", raw,
            "--force")
        s = sha256_file(raw)
        os.unlink(raw)
        return s

    def step(self, label, s, tracked, reason=None, runs=None):
        """One backup: tracked (a proven change set of exactly `runs`, default
        the step's own) or a full read whose plan gives reason."""
        snap = s["snapshot"]
        check(snap and s["sha"], f"step {label}: no snapshot or sha on the console:\n{s['out']}")
        idx = self.show(snap)
        plan = self.plan(snap)
        t = idx.get("tracking", {})
        read = idx["stats"]["bytes_read"]
        runs = s["runs"] if runs is None else runs
        if tracked:
            want = union(runs)
            n = sum(r[1] for r in runs)
            check(t.get("read") == "changes", f"step {label}: not a tracked read: {t}; plan "
                  f"{plan}")
            check(t.get("basis") == self.last.get(s["serial"]),
                  f"step {label}: basis {t.get('basis')}, not the disk's previous backup "
                  f"{self.last.get(s['serial'])}")
            check(t.get("changed_bytes") == want, f"step {label}: changed bytes "
                  f"{t.get('changed_bytes')}, but the guest wrote {want} bytes in {len(runs)} "
                  "runs")
            check(read <= n + SUB * len(runs), f"step {label}: read {read} bytes, more than "
                  f"the {n} written plus one subcluster per run")
            check(any(p.startswith("tracking: read only") for p in plan),
                  f"step {label}: the plan does not say what was read: {plan}")
            self.rows.append(f"{label} ({s['serial']}, {s['mode']}): wrote {n} bytes in "
                             f"{len(runs)} runs, change set {want}, read {read}")
        else:
            check(t.get("read") == "everything", f"step {label}: expected a full read: {t}")
            full = [p for p in plan if p.startswith("full read: ")]
            check(full and reason in full[0], f"step {label}: the plan should say "
                  f"'full read: ...{reason}...': {plan}")
            self.rows.append(f"{label} ({s['serial']}): {full[0]}")
        if s["mode"] == "differential":
            check(idx.get("parent") == self.full.get(s["serial"]),
                  f"step {label}: the differential's parent is {idx.get('parent')}, not the "
                  f"full {self.full.get(s['serial'])}")
        check(self.restored_sha(snap) == s["sha"], f"step {label}: snapshot {snap} restored "
              "is not the disk the guest had")
        self.full.setdefault(s["serial"], snap)
        self.last[s["serial"]] = snap

    def finish(self):
        check(sha256_file(self.img.golden) == self.img.golden_sum, "the golden image was written")
        r = subprocess.run([VBACKUPCTL, "--repo", self.repo, "verify"], capture_output=True,
                           text=True)
        check(r.returncode == 0, f"verify: {r.stdout} {r.stderr}")
        for row in self.rows:
            log(row)


def record(d, vm, serial):
    path = os.path.join(d.dir, "state", "cbt", vm, f"{serial}.json")
    return json.load(open(path)) if os.path.exists(path) else None


def check_phase_a(chk, st):
    chk.step("a0", st["a0"], False, "no earlier backup of this disk")
    chk.step("a1", st["a1"], False, "no earlier backup of this disk")
    chk.step("a2", st["a2"], True)
    chk.step("a3", st["a3"], True)
    chk.step("a4", st["a4"], True)
    chk.step("a5", st["a5"], True)
    plain, tracked = st["plain"]["wrote"], st["a3"]["wrote"]
    log(f"guest writes under TCG, 8 MiB in 512 runs of 16 KiB (O_DIRECT, then fsync): on the "
        f"raw image {plain[1]:.3f} s, on the tracking overlay {tracked[1]:.3f} s")
