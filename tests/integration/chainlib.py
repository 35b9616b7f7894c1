#!/usr/bin/env python3
"""The backing-chain scenario shared by guest-chain.py (QMP) and
guest-chain-libvirt.py (libvirt): six VMs, clones of two golden images,
back themselves up three times each.

    a, b, e:  a.qcow2 -> base.raw                    (2 deep, a raw base)
    c, d, f:  c.qcow2 -> mid.qcow2 -> base.qcow2     (3 deep, a qcow2 base)

a, b, c and d run at the same time (two users of each shared image), then
e and f (each the only user of its shared images, so nothing but the
commit rule keeps QEMU from writing them).

Each guest writes data of its own, prints what its file system holds (a
sha256 manifest) and backs up, three times (full, incremental,
incremental), then backs up the whole disk, then writes once more.  The checks:

* after every backup QEMU runs on the VM's own top image again, with the
  same backing chain (query-block);
* the shared images (base.raw, base.qcow2, mid.qcow2) have the same sha256
  at the end as before the VMs started;
* every job is done and read through a snapshot view (no fallback);
* each snapshot, restored on the host, holds exactly what the guest had
  when it backed up;
* a new QEMU on the same top images (the VMs "rebooted") reads every
  VM's last writes back."""
import hashlib
import json
import os
import re
import subprocess
import time

from guestlib import VBACKUPCTL, boot, check, log, make_ext4, mount, random_files, run, umount

VMS = ("a", "b", "c", "d", "e", "f")
# a-d run at the same time, so each shared image has two users; then e and f
# run, each the only user of its chain
PHASES = (("a", "b", "c", "d"), ("e", "f"))
RAW_CLONES = ("a", "b", "e")
SHARED = ("base.raw", "base.qcow2", "mid.qcow2")
STEPS = 3          # file backups; then one whole-disk backup
BACKUPS = STEPS + 1

# {vm} is the VM's name; each step writes new random data, rewrites a file
# the golden image provides, prints the manifest and backs up.
GUEST = r"""
mkdir -p /data && mount /dev/vda /data
manifest() {
    (cd /data && find . -type f ! -path './lost+found/*' -exec sha256sum {} + | sort -k2)
}
for i in 1 2 3; do
    head -c $((200000 + i * 4096)) /dev/urandom > /data/{vm}-gen$i.bin
    echo "{vm} was here at step $i" >> /data/{vm}-log.txt
    echo "step $i of {vm}" > /data/shared/edited.txt
    sync
    echo MANIFEST-$i-BEGIN; manifest; echo MANIFEST-$i-END
    mode=incremental; [ $i -eq 1 ] && mode=full
    vbackup backup /data --to archive --mode $mode
    echo BACKUP-$i-DONE
    sleep 4
done
# a whole-disk backup through a view too (the file system frozen meanwhile)
sync
echo DISK-BEGIN; manifest; echo DISK-END
vbackup backup-disk --to archive data0
echo BACKUP-4-DONE
sleep 4
head -c 150000 /dev/urandom > /data/{vm}-after.bin
echo "{vm} wrote this after its last backup" >> /data/{vm}-log.txt
sync
echo FINAL-BEGIN; manifest; echo FINAL-END
umount /data
"""

# the "reboot": a new QEMU on all the top images reads them back
REBOOT = r"""
n=0
for vm in {vms}; do
    mkdir -p /m/$vm && mount /dev/vd$(echo abcdefgh | cut -c$((n + 1))) /m/$vm
    echo READ-$vm-BEGIN
    (cd /m/$vm && find . -type f ! -path './lost+found/*' -exec sha256sum {} + | sort -k2)
    echo READ-$vm-END
    umount /m/$vm
    n=$((n + 1))
done
"""


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def block(text, begin, end):
    """The lines between the last begin marker and the end marker after it, sorted."""
    i = text.rfind(begin)
    if i < 0:
        return None
    j = text.find(end, i)
    if j < 0:
        return None
    return sorted(ln.strip() for ln in text[i + len(begin):j].splitlines() if ln.strip())


class Chains:
    """The images of the scenario, in w.p("images")."""

    def __init__(self, w):
        self.w = w
        self.dir = w.p("images")
        os.makedirs(self.dir)
        tree = w.p("tree")
        random_files(tree + "/shared", 3, 1 << 20)
        with open(tree + "/shared/edited.txt", "w") as f:
            f.write("as the golden image has it\n")
        with open(tree + "/shared/text.txt", "w") as f:
            f.write("".join(f"line {i} of the golden image\n" for i in range(20000)))
        make_ext4(self.p("base.raw"), tree, size="96M")
        make_ext4(self.p("base.qcow2"), tree, size="96M", fmt="qcow2")
        # mid: the qcow2 base plus a file, holding only the clusters that differ
        tmp = self.p("mid.raw")
        run("qemu-img", "convert", "-O", "raw", self.p("base.qcow2"), tmp)
        m = mount(w, tmp, ro=False)
        random_files(m + "/mid", 1, 1 << 20, name="mid-only.bin")
        umount(w, m)
        run("qemu-img", "convert", "-q", "-O", "qcow2", "-B", "base.qcow2", "-F", "qcow2",
            "mid.raw", "mid.qcow2", cwd=self.dir)
        os.unlink(tmp)
        for vm in VMS:
            back, fmt = ("base.raw", "raw") if vm in RAW_CLONES else ("mid.qcow2", "qcow2")
            run("qemu-img", "create", "-q", "-f", "qcow2", "-b", back, "-F", fmt,
                f"{vm}.qcow2", cwd=self.dir)
        self.sums = self.shared_sums()
        self.chains = {vm: self.chain_on_disk(vm) for vm in VMS}
        log("chains: " + "; ".join(" -> ".join(os.path.basename(f) for f in c)
                                   for c in self.chains.values()))
        check(len(self.chains["a"]) == 2 and len(self.chains["c"]) == 3,
              f"the images are not chained as planned: {self.chains}")

    def p(self, name):
        return os.path.join(self.dir, name)

    def top(self, vm):
        return self.p(f"{vm}.qcow2")

    def shared_sums(self):
        return {f: sha256_file(self.p(f)) for f in SHARED}

    def chain_on_disk(self, vm):
        out = subprocess.run(["qemu-img", "info", "-U", "--backing-chain", "--output=json",
                              self.top(vm)], capture_output=True, text=True, check=True)
        return [os.path.realpath(i["filename"]) for i in json.loads(out.stdout)]

    def overlays_left(self):
        return [f for f in os.listdir(self.dir) if ".vbackup-" in f]


def image_path(filename):
    """The file of an image as query-block names it: a path, or (when libvirt
    gives the backing chain on the command line) a json: pseudo-filename
    whose innermost "file" names it."""
    if not filename.startswith("json:"):
        return os.path.realpath(filename)
    node = json.loads(filename[5:])
    while isinstance(node.get("file"), dict):
        node = node["file"]
    return os.path.realpath(node.get("filename", filename))


def chain_of(blocks, top):
    """From query-block's answer: the chain (active first) of the disk whose
    chain contains top, or None."""
    for b in blocks:
        img = (b.get("inserted") or {}).get("image")
        chain = []
        while img:
            chain.append(image_path(img.get("filename", "")))
            img = img.get("backing-image")
        if os.path.realpath(top) in chain:
            return chain
    return None


class StepWatch:
    """Follows a console: after each BACKUP-i-DONE, QEMU must run on the VM's
    top image with its original chain (query_block(vm) -> answer).  One
    thread per VM, so that each check happens while its guest waits."""

    def __init__(self, chains, consoles, query_block):
        self.chains, self.consoles, self.query_block = chains, consoles, query_block
        self.seen = set()
        self.problems, self.events = [], []

    def follow(self, vm, alive):
        """Until alive() is false: check every step of vm as it shows."""
        while True:
            running = alive()
            try:
                text = open(self.consoles[vm], errors="replace").read()
            except OSError:
                text = ""
            for i in range(1, BACKUPS + 1):
                if f"BACKUP-{i}-DONE" in text and (vm, i) not in self.seen:
                    self.seen.add((vm, i))
                    try:
                        self.check_step(vm, i)
                    except Exception as e:      # noqa: BLE001 (said in the failure)
                        self.problems.append(f"checking step {i} of {vm} failed: {e!r}")
            if not running:
                return
            time.sleep(0.05)

    def check_step(self, vm, i):
        want = self.chains.chains[vm]
        have = None
        deadline = time.time() + 2.5          # the guest sleeps 4 s after each backup
        while time.time() < deadline:
            try:
                have = chain_of(self.query_block(vm), want[0])
            except Exception as e:           # noqa: BLE001 (said in the failure)
                have = f"query-block failed: {e!r}"
            if have == want:
                self.events.append(f"{vm} {i}")
                return
            time.sleep(0.2)
        self.problems.append(f"after backup {i} of {vm} QEMU runs on {have}, not {want}")

    def all_seen(self):
        return len(self.seen) == len(VMS) * BACKUPS


def check_after(w, chains, d, consoles, watch, vm_name=None):
    """Everything but the reboot: the shared images, the jobs, the snapshots.
    vm_name: the name vbackupd knows each VM by, if not its letter."""
    vm_name = vm_name or {}
    bad = list(watch.problems)
    texts = {vm: open(consoles[vm], errors="replace").read() for vm in VMS}
    for vm in VMS:
        m = re.findall(r"VBACKUP-GUEST-EXIT=(\d+)", texts[vm])
        if not m or m[-1] != "0":
            print(f"---- console of {vm} ----\n{texts[vm][-3000:]}")
            bad.append(f"guest {vm} exited {m}")
    sums = chains.shared_sums()
    changed = [f for f in SHARED if sums[f] != chains.sums[f]]
    if changed:
        bad.append(f"shared images were written: {changed} (sha256 before "
                   f"{[chains.sums[f][:16] for f in changed]}, after "
                   f"{[sums[f][:16] for f in changed]})")
    else:
        log(f"the shared images are unchanged after {len(VMS) * BACKUPS} backups: " +
            ", ".join(f"{f} {sums[f][:16]}" for f in SHARED))
    if not watch.all_seen():
        bad.append(f"the host saw only the backups {sorted(watch.seen)}")
    for vm in VMS:
        if chains.chain_on_disk(vm) != chains.chains[vm]:
            bad.append(f"{vm}: the chain on disk is now {chains.chain_on_disk(vm)}")
    if chains.overlays_left():
        bad.append(f"overlay files left: {chains.overlays_left()}")
    jobs = d.ctl_json("jobs")
    if len(jobs) != len(VMS) * BACKUPS:
        bad.append(f"{len(jobs)} jobs, not {len(VMS) * BACKUPS}")
    for j in jobs:
        full = d.ctl_json("job", str(j["id"]))
        if full["state"] != "done":
            bad.append(f"job {j['id']} ({full.get('vm')}) {full['state']}: {full.get('reason')}")
        elif not any("snapshot of 1 disk taken" in str(n) for n in full["plan"]):
            bad.append(f"job {j['id']} ({full.get('vm')}) was done without a view: " +
                       "; ".join(str(n) for n in full["plan"] if str(n).startswith("view")))
    text = d.log_text()
    if "FAILED" in text:
        bad.append("vbackupd logged a failure: " +
                   "; ".join(ln for ln in text.splitlines() if "FAILED" in ln))
    # a job is done only once its view is folded back and checked
    seconds = []
    for j in jobs:
        back = re.search(rf"job {j['id']}: snapshot of \S+ committed back in ([0-9.]+) s", text)
        done = re.search(rf"job {j['id']} \([^)]*\): done", text)
        if not back or not done or back.start() > done.start():
            bad.append(f"job {j['id']}: done before its view was committed back and checked")
        else:
            seconds.append(float(back.group(1)))
    if seconds:
        log(f"views committed back and checked in {min(seconds):.2f} - {max(seconds):.2f} s "
            f"(mean {sum(seconds) / len(seconds):.2f} s, {len(seconds)} views)")
    for b in bad:
        log("PROBLEM: " + b)
    check(not bad, f"{len(bad)} problems (above)")
    # each snapshot holds what its guest had when it backed up
    repo = d.targets["archive"]
    n = 0
    for vm in VMS:
        snaps = json.loads(subprocess.run(
            [VBACKUPCTL, "--repo", repo, "snapshots", "--vm", vm_name.get(vm, vm), "--json"],
            capture_output=True, text=True, check=True).stdout)
        files = [s for s in snaps if s.get("type") == "files"]
        disks = [s for s in snaps if s.get("type") == "disk"]
        check(len(files) == STEPS and len(disks) == 1,
              f"{vm} has {len(files)} file and {len(disks)} disk snapshots")
        for i, s in enumerate(files, 1):
            want = block(texts[vm], f"MANIFEST-{i}-BEGIN", f"MANIFEST-{i}-END")
            check(want, f"{vm}: no manifest {i} on its console")
            dest = w.p(f"restore-{vm}-{i}")
            run(VBACKUPCTL, "--repo", repo, "--quiet", "restore-files", s["id"], "--to", dest)
            have = manifest(os.path.join(dest, "data"))
            if have != want:
                for line in sorted(set(have) ^ set(want)):
                    print(("  restored " if line in have else "  guest had ") + line)
            check(have == want, f"snapshot {i} of {vm} ({s['id']}) does not hold what the "
                  "guest had when it backed up")
            n += 1
        # the whole disk: restored, its file system holds what the guest had
        want = block(texts[vm], "DISK-BEGIN", "DISK-END")
        raw = w.p(f"restore-{vm}-disk.raw")
        run(VBACKUPCTL, "--repo", repo, "--quiet", "restore-disk", disks[0]["id"], "--to", raw)
        m = mount(w, raw)
        have = manifest(m)
        umount(w, m)
        os.unlink(raw)
        check(want and have == want, f"the disk snapshot of {vm} does not hold what the guest "
              f"had when it backed up:\n{sorted(set(have) ^ set(want or []))}")
        n += 1
    log(f"{n} snapshots restored (files and whole disks), each exactly what its guest had at "
        "that moment")
    return texts


def manifest(root):
    out = []
    for dirpath, dirs, files in os.walk(root):
        for name in files:
            full = os.path.join(dirpath, name)
            rel = "./" + os.path.relpath(full, root)
            if rel.startswith("./lost+found/"):
                continue
            out.append(f"{sha256_file(full)}  {rel}")
    return sorted(out)


def check_reboot(w, chains, texts):
    """A new QEMU on the same top images reads back every VM's last writes."""
    out = boot(w, REBOOT.replace("{vms}", " ".join(VMS)),
               [(chains.top(vm), f"data-{vm}", "qcow2") for vm in VMS], name="reboot",
               timeout=300)
    for vm in VMS:
        want = block(texts[vm], "FINAL-BEGIN", "FINAL-END")
        have = block(out, f"READ-{vm}-BEGIN", f"READ-{vm}-END")
        check(want and have == want, f"{vm}: after the reboot its disk holds\n{have}\n"
              f"but the guest had written\n{want}")
    sums = chains.shared_sums()
    check(sums == chains.sums, "the reboot changed the shared images")
    log("rebooted on the same top images: every VM's writes are there")
