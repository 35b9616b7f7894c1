#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Send QMP commands to a QEMU and print each answer as one JSON line.

    qmp-call.py SOCKET 'COMMAND' ['{"arg": ...}'] [-- 'COMMAND' [...]] ...

Each command is a name optionally followed by its arguments as JSON.
Events are skipped.  Exit status 0 even when a command fails: the caller
checks the printed {"return": ...} or {"error": ...}.
"""

import json
import socket
import sys


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    path, rest = sys.argv[1], sys.argv[2:]
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


if __name__ == "__main__":
    main()
