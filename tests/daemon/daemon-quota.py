#!/usr/bin/env python3
"""Per-VM quotas: a guest cannot fill the shared repository.
1. max_job_bytes: a backup that would add more fails, its DATA answered
   with status QUOTA, its reason naming the quota; the repository grew by no
   more than the quota; and the daemon reclaims the failed job's chunks by
   itself (a gc of the target once no job uses it).  A smaller backup of
   the same VM is done; a disk backup over the quota fails naming it.
2. max_bytes_per_day and max_jobs_per_day: backups are done until the
   day's bytes run out (that one fails naming max_bytes_per_day), then BEGIN
   is refused naming max_jobs_per_day.  The count survives a crash of the
   daemon (kill -9) and a restart; with the quota clock a day later
   (VBACKUPD_TEST_CLOCK_OFFSET), the VM may back up again.
3. max_total_bytes: a second backup that would bring the VM's snapshots in
   the target over the total fails naming it; the next BEGIN is refused.
4. A VM without quotas backs up more than all of these meanwhile.
`vbackupctl vms --json` shows each VM's quotas and use.  Fails on a daemon
without quotas."""
import os
import struct
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vbproto as vp  # noqa: E402
from daemonlib import VBACKUPCTL, Daemon, check, log, stored, wait_for, workdir  # noqa: E402

MiB = 1 << 20
PIECE = vp.MAX_PAYLOAD - 64


def files_backup(c, serial, size):
    """A backup of one file of SIZE random bytes sent as fallback data.
    Returns (job, status of the first refused DATA or None, final job status)."""
    p = vp.begin_payload("archive", [serial], ["data"], vp.KIND_FILES, "full")
    p = p[:8] + (1).to_bytes(4, "little") + p[12:]          # VB_BEGIN_UNFROZEN
    job, _ = c.begin("archive", [serial], ["data"], raw=p)
    c.files(job, [vp.record("data", "dir", mode=0o755),
                  vp.record("data/f.bin", "reg", data=vp.FD_FALLBACK, size=size, mode=0o644)])
    data = os.urandom(size)
    refused = None
    for off in range(0, size, PIECE):
        last = off + PIECE >= size
        st, body = c.call("BACKUP_DATA", struct.pack("<QQQII", job, 1, off, len(data[off:off + PIECE]),
                                                     vp.DATA_LAST if last else 0) +
                          data[off:off + PIECE], check=False)
        if st != vp.S["OK"]:
            refused = (st, body.decode(errors="replace"))
            break
    if refused is None:
        c.seal(job)
    return job, refused, c.wait_job(job)


def begin_refused(c, serial, quota):
    st, body = c.call("BACKUP_BEGIN", vp.begin_payload("archive", [serial], ["data"]),
                      check=False)
    text = body.decode(errors="replace")
    check(st == vp.S["QUOTA"] and quota in text,
          f"BEGIN: {vp.SNAME.get(st)} {text!r}, expected QUOTA naming {quota}")
    return text


with workdir() as w:
    vms, conf = {}, {}
    for vm in ("perjob", "daily", "total", "free"):
        img = w.p(f"{vm}.raw")
        with open(img, "wb") as f:          # read by disk backups (fallback data never is)
            f.write(os.urandom(16 * MiB))
        vms[vm] = {vm: img}
    conf = {"perjob": {"max_job_bytes": "8M"},
            "daily": {"max_bytes_per_day": "12M", "max_jobs_per_day": "3"},
            "total": {"max_total_bytes": "10M"}}
    d = Daemon(w, vms, vm_conf=conf, batch_seconds=0.1).start()
    repo = d.targets["archive"]

    # ---- 1. per job, and the failed job's space reclaimed --------------------------
    c = d.conn("perjob")
    before = stored(repo)
    job, refused, st = files_backup(c, "perjob", 20 * MiB)
    check(refused and refused[0] == vp.S["QUOTA"] and "max_job_bytes" in refused[1],
          f"DATA past the job quota: {refused}")
    check(st["state"] == "failed" and "max_job_bytes" in st["reason"], f"job: {st}")
    grew = stored(repo) - before
    check(grew <= 8 * MiB, f"the repository grew by {grew} bytes, over the 8 MiB quota")
    wait_for(lambda: "gc after failed jobs removed" in d.log_text(),
             "the daemon's gc after the failed job")
    check(stored(repo) == before, f"the failed job's chunks are left: {stored(repo) - before} "
          "bytes")
    job, refused, st = files_backup(c, "perjob", 4 * MiB)
    check(st["state"] == "done", f"a backup under the job quota: {st}")
    dj, _ = c.begin("archive", ["perjob"], [], kind=vp.KIND_DISK)     # 16 MiB of data
    c.seal(dj)
    st = c.wait_job(dj)
    check(st["state"] == "failed" and "max_job_bytes" in st["reason"], f"disk job: {st}")
    log(f"max_job_bytes: refused at {grew} bytes of 8 MiB, reclaimed by the daemon's own gc")

    # ---- 4 (meanwhile). no quota: as much as it likes --------------------------------
    cf = d.conn("free")
    _, refused, st = files_backup(cf, "free", 24 * MiB)
    check(st["state"] == "done", f"the VM without quotas: {st}")

    # ---- 2. per day: bytes, then jobs; a crash and a restart; a day later ----------------
    c = d.conn("daily")
    for i in range(2):
        _, refused, st = files_backup(c, "daily", 5 * MiB)
        check(st["state"] == "done", f"daily backup {i}: {st}")
    _, refused, st = files_backup(c, "daily", 5 * MiB)
    check(st["state"] == "failed" and "max_bytes_per_day" in st["reason"],
          f"the backup past the day's bytes: {st}")
    begin_refused(c, "daily", "max_jobs_per_day")
    q = {v["name"]: v["quota"] for v in d.ctl_json("vms")}["daily"]
    check(q["jobs_24h"] == 3 and 10 * MiB < q["bytes_24h"] <= 12 * MiB + 64 * 1024,
          f"vbackupctl vms: {q}")
    c.close()
    d.stop(__import__("signal").SIGKILL)                 # a crash
    d.start()
    c = d.conn("daily")
    begin_refused(c, "daily", "max_jobs_per_day")
    check(d.stop() == 0, "vbackupd did not exit cleanly")
    d.start(wrapper=("env", "VBACKUPD_TEST_CLOCK_OFFSET=90000"))     # 25 hours later
    c = d.conn("daily")
    _, refused, st = files_backup(c, "daily", 5 * MiB)
    check(st["state"] == "done", f"a day later: {st}")
    # a crash while a job stores data: what it stored still counts after the restart
    p = vp.begin_payload("archive", ["daily"], ["data"], vp.KIND_FILES, "full")
    job, _ = c.begin("archive", ["daily"], ["data"], raw=p[:8] + (1).to_bytes(4, "little") + p[12:])
    c.files(job, [vp.record("data", "dir"),
                  vp.record("data/f.bin", "reg", data=vp.FD_FALLBACK, size=6 * MiB)])
    data = os.urandom(5 * PIECE)
    for off in range(0, len(data), PIECE):              # each answered once stored, or held
        c.data(job, 1, off, data[off:off + PIECE], False)
    used = wait_for(lambda: (n := {v["name"]: v["quota"] for v in d.ctl_json("vms")}
                             ["daily"]["bytes_24h"]) > 5 * MiB + 64 * 1024 and n,
                    "the running job's first chunks to count")
    d.stop(__import__("signal").SIGKILL)
    d.start(wrapper=("env", "VBACKUPD_TEST_CLOCK_OFFSET=90000"))
    after = {v["name"]: v["quota"] for v in d.ctl_json("vms")}["daily"]
    check(after["bytes_24h"] >= used and after["jobs_24h"] == 2,
          f"after a crash mid-job: {after}, {used} bytes were counted before")
    log("max_bytes_per_day and max_jobs_per_day: refused, through crashes, free a day later")

    # ---- 3. in total ----------------------------------------------------------------
    c = d.conn("total")
    gcs = d.log_text().count("gc after failed jobs removed")
    _, refused, st = files_backup(c, "total", 6 * MiB)
    check(st["state"] == "done", f"the first backup under the total: {st}")
    _, refused, st = files_backup(c, "total", 6 * MiB)
    check(st["state"] == "failed" and "max_total_bytes" in st["reason"],
          f"the backup past the total: {st}")
    check(refused and refused[0] == vp.S["QUOTA"], f"DATA past the total: {refused}")
    # what the first one added is what the VM keeps; the second's garbage goes
    wait_for(lambda: d.log_text().count("gc after failed jobs removed") > gcs,
             "the gc of the failed job")
    _, refused, st = files_backup(c, "total", 3 * MiB)
    check(st["state"] == "done", f"a backup that fits the rest of the total: {st}")
    log("max_total_bytes: refused past the total, fits what is left")

    r = subprocess.run([VBACKUPCTL, "--repo", repo, "verify"], capture_output=True, text=True)
    check(r.returncode == 0, f"verify: {r.stdout}{r.stderr}")
    check(d.stop() == 0, "vbackupd did not exit cleanly")
    log("ok: quotas per job, per day and in total hold, survive a crash, and failed jobs' "
        "space comes back without an administrator")
