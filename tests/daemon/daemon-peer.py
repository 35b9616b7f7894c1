#!/usr/bin/env python3
"""Socket identity: only the VM's QEMU process may use the VM's socket.
A VM's pidfile names its QEMU; the process on the other end of a new
connection (SO_PEERCRED) must be that process, started no later than the
pidfile was written, and the pidfile must be one only root can write.  A
peer_label must match the peer's security label (SO_PEERSEC).  Here the
test process and its children stand in for QEMU processes:
* the process the pidfile names is served (also after the pidfile changes,
  as when QEMU restarts); any other process is refused, and the log says who
  and why, while the daemon serves on;
* a pidfile that others may write, one that names a process started after
  it was written (a reused pid), and a missing pidfile refuse everyone;
* a VM with a peer_label no process here has is refused.
Fails on a daemon that lets any process that can open a socket act as its
VM (and that does not know pidfile or peer_label)."""
import os
import subprocess
import sys
import textwrap
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vbproto as vp  # noqa: E402
from daemonlib import Daemon, check, log, wait_for, workdir  # noqa: E402


def write_pidfile(path, pid, mode=0o644):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{pid}\n")
    os.chmod(tmp, mode)
    os.rename(tmp, path)


def hello(d, vm):
    """HELLO on a new connection: the VM's name, or None when refused."""
    try:
        c = d.conn(vm)
        try:
            return c.hello()["vm"]
        finally:
            c.close()
    except (EOFError, ConnectionError, OSError):
        return None


def refused(d, vm, why):
    n = d.log_text().count(f"VM {vm}: refusing a connection")
    check(hello(d, vm) is None, f"VM {vm}: a connection was served ({why})")
    wait_for(lambda: d.log_text().count(f"VM {vm}: refusing a connection") > n,
             f"the log line refusing the connection to {vm}")
    line = [ln for ln in d.log_text().splitlines() if f"VM {vm}: refusing" in ln][-1]
    check(why in line, f"VM {vm}: the log does not say {why!r}: {line}")
    return line


# a child that writes its own pid into a pidfile, then says HELLO on a socket
CHILD = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, sys.argv[3])
    import vbproto as vp
    tmp = sys.argv[1] + ".tmp"
    open(tmp, "w").write(f"{os.getpid()}\\n")
    os.chmod(tmp, 0o644)
    os.rename(tmp, sys.argv[1])
    c = vp.Conn(sys.argv[2])
    print(c.hello()["vm"])
""")

with workdir() as w:
    disks, conf = {}, {}
    for vm in ("mine", "other", "loose", "stale", "gone", "label"):
        img = w.p(f"{vm}.raw")
        with open(img, "wb") as f:
            f.truncate(1 << 20)
        disks[vm] = {f"{vm}0": img}
        conf[vm] = {"pidfile": w.p(f"{vm}.pid")}
    conf["label"] = {"peer_label": "system_u:system_r:svirt_t:s0:c1,c2"}
    sleeper = subprocess.Popen(["sleep", "600"])
    try:
        write_pidfile(w.p("mine.pid"), os.getpid())
        write_pidfile(w.p("other.pid"), sleeper.pid)
        write_pidfile(w.p("loose.pid"), os.getpid(), mode=0o666)
        write_pidfile(w.p("stale.pid"), os.getpid())
        t = time.time() - 3600                 # written an hour before this process began
        os.utime(w.p("stale.pid"), (t, t))
        d = Daemon(w, disks, vm_conf=conf).start()

        check(hello(d, "mine") == "mine", "the process the pidfile names was refused")
        line = refused(d, "other", f"is not the VM's QEMU (pid {sleeper.pid}")
        check(f"pid {os.getpid()} " in line, f"the log does not name the peer's pid: {line}")
        refused(d, "loose", "may be written by others than root")
        refused(d, "stale", "a reused pid")
        refused(d, "gone", "No such file or directory")
        refused(d, "label", "system_u:system_r:svirt_t:s0:c1,c2")
        # the VM's QEMU restarts: a new process, a new pidfile; it is served, we are not
        here = os.path.dirname(os.path.abspath(__file__))
        r = subprocess.run([sys.executable, "-c", CHILD, w.p("other.pid"), d.sock("other"), here],
                           capture_output=True, text=True, timeout=60)
        check(r.returncode == 0 and r.stdout.strip() == "other",
              f"the process the new pidfile names was not served: {r.stdout}{r.stderr}")
        refused(d, "other", "is not the VM's QEMU")
        check(hello(d, "mine") == "mine", "the daemon stopped serving")
        check(d.stop() == 0, "vbackupd did not exit cleanly")
    finally:
        sleeper.kill()
        sleeper.wait()
    log("ok: only the process a VM's pidfile names (with the label, if set) may use its socket")
