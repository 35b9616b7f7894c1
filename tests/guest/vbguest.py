# SPDX-License-Identifier: GPL-2.0-or-later
"""Helpers shared by the guest image tools (build-initramfs, run-guest)."""

import argparse
import gzip
import io
import os
import stat


class Cpio:
    """Minimal writer for the newc format the kernel unpacks."""

    def __init__(self):
        self.buf = io.BytesIO()
        self.ino = 1
        self.names = set()

    def _entry(self, name, mode, data=b"", rdev=(0, 0)):
        name = name.lstrip("/")
        if name in self.names:
            return
        self.names.add(name)
        nb = name.encode() + b"\0"
        hdr = "070701" + "".join("%08X" % v for v in (
            self.ino, mode, 0, 0, 1, 0, len(data), 0, 0,
            rdev[0], rdev[1], len(nb), 0))
        self.ino += 1
        self.buf.write(hdr.encode() + nb)
        self.buf.write(b"\0" * (-(110 + len(nb)) % 4))
        self.buf.write(data)
        self.buf.write(b"\0" * (-len(data) % 4))

    def dir(self, name, perm=0o755):
        parts = name.strip("/").split("/")
        for i in range(1, len(parts)):
            self._entry("/".join(parts[:i]), stat.S_IFDIR | 0o755)
        self._entry(name, stat.S_IFDIR | perm)

    def _parents(self, name):
        parent = os.path.dirname(name.strip("/"))
        if parent:
            self.dir(parent)

    def file(self, name, data, perm=0o644):
        self._parents(name)
        self._entry(name, stat.S_IFREG | perm, data)

    def symlink(self, name, target):
        self._parents(name)
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, name, major, minor, perm=0o600):
        self._parents(name)
        self._entry(name, stat.S_IFCHR | perm, rdev=(major, minor))

    def finish(self):
        self._entry("TRAILER!!!", 0)
        self.buf.write(b"\0" * (-self.buf.tell() % 512))
        return self.buf.getvalue()


def add_host_file(cpio, host, guest):
    """Add a host file or folder (recursively) at the guest path."""
    if os.path.isdir(host) and not os.path.islink(host):
        cpio.dir(guest, stat.S_IMODE(os.stat(host).st_mode))
        for entry in sorted(os.listdir(host)):
            add_host_file(cpio, os.path.join(host, entry),
                          guest.rstrip("/") + "/" + entry)
    elif os.path.islink(host):
        cpio.symlink(guest, os.readlink(host))
    else:
        with open(host, "rb") as f:
            cpio.file(guest, f.read(), stat.S_IMODE(os.stat(host).st_mode))


def parse_add(spec):
    host, sep, guest = spec.rpartition(":")
    if not sep or not host or not guest.startswith("/"):
        raise argparse.ArgumentTypeError(
            f"--add wants HOST:/GUEST/PATH, got {spec!r}")
    if not os.path.exists(host):
        raise argparse.ArgumentTypeError(f"--add: {host} does not exist")
    return (os.path.abspath(host), guest)


def make_initrd(base, script, adds, path):
    """Write to path the base initramfs followed by an archive holding
    /test.sh (script, unless None) and the --add files; returns path."""
    cpio = Cpio()
    if script is not None:
        cpio.file("test.sh", script.encode(), 0o755)
    for host, guest in adds:
        add_host_file(cpio, host, guest)
    with open(base, "rb") as src, open(path, "wb") as dst:
        while True:
            chunk = src.read(1 << 20)
            if not chunk:
                break
            dst.write(chunk)
        # Each archive of a concatenation must start 4-byte aligned.
        dst.write(b"\0" * (-dst.tell() % 4))
        dst.write(gzip.compress(cpio.finish(), compresslevel=1, mtime=0))
    return path
