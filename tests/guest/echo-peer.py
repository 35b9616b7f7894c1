#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""A stand-in for vbackupd that tests the transport on its own.

Listens on a UNIX socket (QEMU's virtio-backup chardev connects to it) and
answers every frame (include/vbackup/proto.h) with a reply of the same type
(| VB_REPLY), the same tag, status 0 and the request's payload echoed back.
A payload larger than the request's reply_max is answered with
VB_S_REPLY_TOO_SMALL and no payload, as vbackupd would.

A request whose payload starts with "VBTEST:" carries directives for this
peer, comma separated, up to the first newline:

  delay=MS     answer after MS milliseconds (others are answered meanwhile)
  size=N       reply with N bytes, byte i = (i * 31 + 7) & 0xff
  status=N     reply with status N and the message "test status N"
  oversize     reply with reply_max + 1 bytes (a protocol violation)
  stray        first send a reply with a tag nobody asked for
  split        write the reply in 7-byte pieces
  badmagic     send 32 bytes of garbage instead of a reply
  close        close the connection at once, answering nothing
  noreply      never answer
  stall=MS     stop reading the socket for MS milliseconds after this frame
               (the device must queue its writes without blocking QEMU)
  stall=hold   the same until this peer gets SIGUSR1 (the test says when)

Options --delay, --reverse and --close-after act on every frame.
"""

import argparse
import asyncio
import os
import random
import signal
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../daemon"))
import vbproto  # noqa: E402  (the protocol's one Python module)

HDR = struct.Struct("<IHHQIIiI")
MAGIC = 0x314B4256
VERSION = vbproto.VERSION
REPLY = 0x8000
MAX_PAYLOAD = 1 << 20
S_REPLY_TOO_SMALL = 19


class Peer:
    def __init__(self, args):
        self.args = args
        self.logf = open(args.log, "a", buffering=1) if args.log else None
        self.connections = 0
        self.frames = 0
        self.resume = None      # asyncio.Event, set by SIGUSR1: ends stall=hold

    def log(self, msg):
        if self.logf:
            self.logf.write(f"{time.monotonic():.3f} {msg}\n")
        if self.args.verbose:
            print(f"echo-peer: {msg}", file=sys.stderr, flush=True)

    async def handle(self, reader, writer):
        self.connections += 1
        conn = self.connections
        lock = asyncio.Lock()
        tasks = set()
        batch = []
        flush_handle = None
        nframes = 0
        self.log(f"connect {conn}")

        async def send(data, split=False):
            async with lock:
                if writer.is_closing():
                    return
                if split:
                    for i in range(0, len(data), 7):
                        writer.write(data[i:i + 7])
                        await writer.drain()
                        await asyncio.sleep(0.001)
                else:
                    writer.write(data)
                    await writer.drain()

        def reply_for(hdr, payload):
            magic, version, typ, tag, length, reply_max, status, flags = hdr
            directives = {}
            if payload.startswith(b"VBTEST:"):
                line = payload[7:].split(b"\n", 1)[0].decode(errors="replace")
                for d in line.split(","):
                    k, _, v = d.partition("=")
                    directives[k.strip()] = v.strip()
            out_status, body = 0, payload
            if "size" in directives:
                n = int(directives["size"])
                body = bytes((i * 31 + 7) & 0xFF for i in range(n))
            if "status" in directives:
                out_status = int(directives["status"])
                body = f"test status {out_status}".encode()
            if "oversize" in directives:
                body = bytes(reply_max + 1)
            elif len(body) > reply_max:
                out_status, body = S_REPLY_TOO_SMALL, b""
            data = HDR.pack(MAGIC, VERSION, typ | REPLY, tag, len(body),
                            0, out_status, 0) + body
            return directives, data

        async def answer(hdr, payload, delay):
            directives, data = reply_for(hdr, payload)
            tag = hdr[3]
            delay += int(directives.get("delay", 0) or 0) / 1000.0
            if delay:
                await asyncio.sleep(delay)
            if "stray" in directives:
                stray = HDR.pack(MAGIC, VERSION, hdr[2] | REPLY,
                                 tag ^ 0x5A5A000000000000, 10, 0, 0, 0) + bytes(10)
                await send(stray)
            if "badmagic" in directives:
                self.log(f"badmagic tag={tag}")
                await send(bytes(random.getrandbits(8) | 1 for _ in range(32)))
                return
            self.log(f"reply tag={tag} len={len(data) - HDR.size}")
            await send(data, split="split" in directives)

        def spawn(coro):
            t = asyncio.ensure_future(coro)
            tasks.add(t)
            t.add_done_callback(tasks.discard)

        def flush_batch():
            nonlocal flush_handle
            flush_handle = None
            for hdr, payload in reversed(batch):
                spawn(answer(hdr, payload, 0))
            batch.clear()

        try:
            while True:
                raw = await reader.readexactly(HDR.size)
                hdr = HDR.unpack(raw)
                magic, version, typ, tag, length, reply_max, status, flags = hdr
                if magic != MAGIC or length > MAX_PAYLOAD:
                    self.log(f"bad frame magic={magic:#x} len={length}: closing")
                    break
                payload = await reader.readexactly(length)
                nframes += 1
                self.frames += 1
                self.log(f"frame conn={conn} tag={tag} type={typ} len={length} "
                         f"reply_max={reply_max} status={status} flags={flags}")
                if payload.startswith(b"VBTEST:"):
                    line = payload[7:].split(b"\n", 1)[0]
                    words = {w.split(b"=")[0].strip() for w in line.split(b",")}
                    if b"close" in words:
                        self.log(f"close requested by tag={tag}")
                        break
                    stall = [w for w in line.split(b",") if w.startswith(b"stall=")]
                    if stall:
                        spawn(answer(hdr, payload, 0))
                        # not even asyncio reads ahead meanwhile: the socket
                        # fills and the device's writes must wait
                        writer.transport.pause_reading()
                        if stall[0][6:] == b"hold":
                            self.log(f"stall until SIGUSR1 requested by tag={tag}")
                            await self.resume.wait()
                            self.resume.clear()
                        else:
                            ms = int(stall[0][6:])
                            self.log(f"stall {ms} ms requested by tag={tag}")
                            await asyncio.sleep(ms / 1000.0)
                        self.log("stall over: reading again")
                        writer.transport.resume_reading()
                        continue
                    if b"noreply" in words:
                        continue
                if (self.args.close_after and conn == 1 and
                        nframes >= self.args.close_after):
                    self.log(f"closing after {nframes} frames")
                    break
                if self.args.reverse > 1:
                    batch.append((hdr, payload))
                    if len(batch) >= self.args.reverse:
                        if flush_handle:
                            flush_handle.cancel()
                        flush_batch()
                    elif not flush_handle:
                        flush_handle = asyncio.get_running_loop().call_later(
                            0.3, flush_batch)
                    continue
                spawn(answer(hdr, payload, self.args.delay / 1000.0))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if flush_handle:
                flush_handle.cancel()
            for t in list(tasks):
                t.cancel()
            writer.close()
            self.log(f"disconnect {conn}")


async def main_async(args):
    peer = Peer(args)
    if os.path.exists(args.socket):
        os.unlink(args.socket)
    server = await asyncio.start_unix_server(peer.handle, path=args.socket,
                                             limit=2 * MAX_PAYLOAD)
    if args.ready_file:
        with open(args.ready_file, "w") as f:
            f.write(f"{os.getpid()}\n")
    peer.log(f"listening on {args.socket}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    peer.resume = asyncio.Event()
    loop.add_signal_handler(signal.SIGUSR1, peer.resume.set)
    async with server:
        await stop.wait()
    if os.path.exists(args.socket):
        os.unlink(args.socket)


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--socket", required=True, help="UNIX socket to listen on")
    ap.add_argument("--log", help="append one line per event to this file")
    ap.add_argument("--ready-file", help="written once the socket listens")
    ap.add_argument("--delay", type=float, default=0, metavar="MS",
                    help="delay every reply by MS milliseconds")
    ap.add_argument("--reverse", type=int, default=0, metavar="N",
                    help="answer frames in batches of N, in reverse order "
                    "(a partial batch is answered after 0.3 s)")
    ap.add_argument("--close-after", type=int, default=0, metavar="N",
                    help="close the first connection after N frames, unanswered")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
