#!/usr/bin/env python3
"""A stand-in for QEMU's monitor in daemon tests: enough QMP for vbackupd to
take a view and commit it back as it does with QEMU (hostd/vbackupd/qmp.c,
view.c).  Each disk is a chain of (node name, file) as query-block reports
it (inserted.image, backing-image ...); a transaction of
blockdev-snapshot-sync puts an overlay on top (the file is made, empty, by
qemu-img), query-named-block-nodes names the nodes, block-commit of the
top node into the one under it takes it off again (BLOCK_JOB_READY,
block-job-complete, BLOCK_JOB_COMPLETED).  Nothing writes the disks
meanwhile, so the image under the overlay is the view.  Each command is
recorded in .commands."""
import json
import os
import socket
import subprocess
import threading


class FakeQmp:
    def __init__(self, path, images):
        """images: {device name: image file (raw)}"""
        self.path = path
        self.lock = threading.Lock()
        self.chains = {dev: [(f"node-{dev}", os.path.realpath(img), "raw")]
                       for dev, img in images.items()}
        self.commands = []
        self.jobs = {}               # block job id -> disk
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

    def image(self, chain):
        img = None
        for node, f, fmt in reversed(chain):
            img = dict(filename=f, format=fmt, **({"backing-image": img} if img else {}))
        return img

    def query_block(self):
        return [{"device": dev, "qdev": f"/machine/peripheral/{dev}/virtio-backend",
                 "inserted": {"node-name": ch[0][0], "file": ch[0][1], "image": self.image(ch)}}
                for dev, ch in self.chains.items()]

    def dev_of(self, args):
        for dev, ch in self.chains.items():
            if args.get("device") == dev or args.get("node-name") == ch[0][0]:
                return dev
        raise KeyError(args)

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
                with self.lock:
                    if cmd == "query-block":
                        send({"return": self.query_block()})
                    elif cmd == "query-named-block-nodes":
                        send({"return": [{"node-name": n, "file": fl, "drv": fmt}
                                         for ch in self.chains.values() for n, fl, fmt in ch]})
                    elif cmd == "transaction":
                        for a in args["actions"]:
                            d = a["data"]
                            dev = self.dev_of(d)
                            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F",
                                            self.chains[dev][0][2], "-b",
                                            self.chains[dev][0][1], d["snapshot-file"]],
                                           check=True)
                            node = d.get("snapshot-node-name", f"overlay-{dev}")
                            self.chains[dev].insert(0, (node, os.path.realpath(
                                d["snapshot-file"]), "qcow2"))
                        send({"return": {}})
                    elif cmd == "block-commit":
                        dev = self.dev_of(args)
                        ch = self.chains[dev]
                        assert ch[0][0] == args["top-node"] and ch[1][0] == args["base-node"], \
                            (args, ch)
                        self.jobs[args["job-id"]] = dev
                        send({"return": {}})
                        send({"event": "BLOCK_JOB_READY", "data": {"device": args["job-id"]}})
                    elif cmd == "block-job-complete":
                        jid = args["device"]
                        self.chains[self.jobs.pop(jid)].pop(0)
                        send({"return": {}})
                        send({"event": "BLOCK_JOB_COMPLETED", "data": {"device": jid}})
                    else:
                        send({"return": {}})
        except (OSError, ValueError, KeyError, AssertionError):
            pass
        finally:
            c.close()

    def stop(self):
        self.stopped = True
        self.sock.close()
