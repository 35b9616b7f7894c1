#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Send QMP commands to a QEMU and print each answer as one JSON line.

    qmp-call.py SOCKET [--event NAME[:DEVICE]] 'COMMAND' ['{"arg": ...}'] [-- 'COMMAND' [...]] ...

Each command is a name optionally followed by its arguments as JSON.
Events are skipped; with --event NAME[:DEVICE], after the last command it
waits (30 s at most) for the event NAME (about DEVICE), prints it and exits 1
if it never came.  Exit
status 0 even when a command fails: the caller checks the printed
{"return": ...} or {"error": ...}.
"""

import json
import socket
import sys


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    path, rest = sys.argv[1], sys.argv[2:]
    want_event = want_device = None
    if rest[:1] == ["--event"] and len(rest) >= 2:
        want_event, _, want_device = rest[1].partition(":")
        rest = rest[2:]
    seen = []

    def wanted(e):
        return e["event"] == want_event and \
            (not want_device or e.get("data", {}).get("device") == want_device)
    cmds, cur = [], []
    for a in rest + ["--"]:
        if a == "--":
            if cur:
                cmds.append(cur)
            cur = []
        else:
            cur.append(a)

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(path)
    f = s.makefile("rw")

    def answer():
        while True:
            line = f.readline()
            if not line:
                sys.exit("qmp-call: connection closed")
            msg = json.loads(line)
            if "event" not in msg:
                return msg
            seen.append(msg)

    greeting = answer()
    if "QMP" not in greeting:
        sys.exit(f"qmp-call: unexpected greeting {greeting}")
    f.write(json.dumps({"execute": "qmp_capabilities"}) + "\n")
    f.flush()
    answer()
    for c in cmds:
        req = {"execute": c[0]}
        if len(c) > 1:
            req["arguments"] = json.loads(c[1])
        f.write(json.dumps(req) + "\n")
        f.flush()
        print(json.dumps(answer()), flush=True)
    while want_event and not any(wanted(e) for e in seen):
        try:
            line = f.readline()
        except socket.timeout:
            line = ""
        if not line:
            sys.exit(f"qmp-call: no {want_event} event")
        msg = json.loads(line)
        if "event" in msg:
            seen.append(msg)
    if want_event:
        print(json.dumps([e for e in seen if wanted(e)][0]), flush=True)


if __name__ == "__main__":
    main()
