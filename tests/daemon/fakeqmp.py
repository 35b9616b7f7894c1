#!/usr/bin/env python3
"""A stand-in for QEMU's monitor in daemon tests: enough QMP for vbackupd to
take a view (query-block, transaction of blockdev-snapshot-sync) and commit
it back (block-commit, BLOCK_JOB_READY, block-job-complete,
BLOCK_JOB_COMPLETED).  Nothing writes the disk meanwhile, so the image
itself is the view.  Each command is recorded in .commands."""
import json
import os
import socket
import threading


class FakeQmp:
    def __init__(self, path, images):
        """images: {device name: image file}"""
        self.path = path
        self.images = images
        self.commands = []
        if os.path.exists(path):
            os.unlink(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(8)
        self.stopped = False
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.client, args=(c,), daemon=True).start()

    def client(self, c):
        f = c.makefile("rwb", buffering=0)

        def send(o):
            f.write(json.dumps(o).encode() + b"\n")
        try:
            send({"QMP": {"version": {"qemu": {"major": 7, "minor": 2, "micro": 0}},
                          "capabilities": []}})
            for line in f:
                m = json.loads(line)
                cmd, args = m.get("execute"), m.get("arguments", {})
                self.commands.append(cmd)
                if cmd == "query-block":
                    send({"return": [{"device": dev, "inserted": {"file": img, "node-name": dev}}
                                     for dev, img in self.images.items()]})
                elif cmd == "block-commit":
                    send({"return": {}})
                    send({"event": "BLOCK_JOB_READY", "data": {"device": args["job-id"]}})
                elif cmd == "block-job-complete":
                    send({"return": {}})
                    send({"event": "BLOCK_JOB_COMPLETED", "data": {"device": args["device"]}})
                else:
                    send({"return": {}})
        except (OSError, ValueError):
            pass
        finally:
            c.close()

    def stop(self):
        self.stopped = True
        self.sock.close()
