#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""A fault-injecting HTTP proxy between the S3 store and radosgw (tests only).

Listens on 127.0.0.1 (a free port, written to --port-file once listening)
and forwards each request, headers and body unchanged (so SigV4 signatures
stay valid), to --upstream.  With probability --rate a request meets one
fault, chosen at random from a generator seeded with --seed (printed):

  delay          wait 0.05-0.6 s, then forward
  drop-request   close the connection without forwarding
  error-500      answer 500 InternalError without forwarding
  error-503      answer 503 SlowDown without forwarding
  drop-response  forward (the request takes effect), close without answering
  error-after    forward (it takes effect), answer 500 InternalError
  truncate-body  forward, send the headers and part of the body, close
  truncate-lie   forward, send part of the body with a Content-Length that
                 matches it (a lying server: only Content-Range tells)

Counts of each fault go to stderr when it stops (SIGTERM).

With --counts FILE (benches: use it with --rate 0, a plain pass-through)
it also writes, as JSON, the requests it received by method and the body
bytes it forwarded each way ({"requests": N, "methods": {"PUT": N, ...},
"up": BYTES, "down": BYTES}) to FILE when it gets SIGUSR1 and when it
stops: the counts are cumulative, a caller takes differences.
"""
import argparse
import http.client
import json
import os
import random
import signal
import socket
import sys
import threading
import time

FAULTS = ["delay", "drop-request", "error-500", "error-503", "drop-response",
          "error-after", "truncate-body", "truncate-lie"]

ERROR_XML = ('<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code>'
             '<Message>injected by fault-proxy</Message></Error>')


class Proxy:
    def __init__(self, upstream, rate, seed):
        host, port = upstream.rsplit(":", 1)
        self.upstream = (host, int(port))
        self.rate = rate
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.counts = {f: 0 for f in FAULTS + ["pass"]}
        self.methods = {}
        self.up = 0
        self.down = 0

    def traffic(self):
        with self.lock:
            return {"requests": sum(self.methods.values()), "methods": dict(self.methods),
                    "up": self.up, "down": self.down}

    def choose(self, method):
        with self.lock:
            if self.rng.random() >= self.rate:
                fault = "pass"
            else:
                fault = self.rng.choice(FAULTS)
                if fault == "truncate-lie" and method != "GET":
                    fault = "truncate-body"
            frac = self.rng.random()
            self.counts[fault] += 1
        return fault, frac

    def serve(self, conn):
        f = conn.makefile("rb")
        try:
            while self.one(conn, f):
                pass
        except (OSError, ValueError):
            pass
        finally:
            try:
                f.close()
                conn.close()
            except OSError:
                pass

    def one(self, conn, f):
        line = f.readline(65536)
        if not line:
            return False
        method, target, _ = line.decode("latin-1").split(" ", 2)
        headers = []
        length = 0
        while True:
            h = f.readline(65536)
            if h in (b"\r\n", b"\n", b""):
                break
            name, value = h.decode("latin-1").split(":", 1)
            value = value.strip()
            if name.lower() == "content-length":
                length = int(value)
            headers.append((name, value))
        body = f.read(length) if length else b""
        with self.lock:
            self.methods[method] = self.methods.get(method, 0) + 1
            self.up += len(body)
        fault, frac = self.choose(method)

        if fault == "delay":
            time.sleep(0.05 + frac * 0.55)
        if fault == "drop-request":
            return False
        if fault in ("error-500", "error-503"):
            code = "InternalError" if fault == "error-500" else "SlowDown"
            self.answer(conn, 500 if fault == "error-500" else 503,
                        [("Content-Type", "application/xml")], (ERROR_XML % code).encode(),
                        method)
            return True

        up = http.client.HTTPConnection(*self.upstream, timeout=120)
        up.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        for name, value in headers:
            up.putheader(name, value)
        up.endheaders(body if body else None)
        resp = up.getresponse()
        rbody = resp.read()
        rheaders = [(k, v) for k, v in resp.getheaders()
                    if k.lower() not in ("transfer-encoding", "connection", "content-length")]
        status = resp.status
        announced = resp.getheader("Content-Length")
        up.close()

        if fault == "drop-response":
            return False
        if fault == "error-after":
            self.answer(conn, 500, [("Content-Type", "application/xml")],
                        (ERROR_XML % "InternalError").encode(), method)
            return True
        if fault in ("truncate-body", "truncate-lie") and len(rbody) > 1:
            cut = int(len(rbody) * frac)
            if fault == "truncate-body":
                self.answer(conn, status, rheaders, rbody, method, send=cut, close=True)
                return False
            self.answer(conn, status, rheaders, rbody[:cut], method)
            return True
        if method == "HEAD":
            if announced is not None:
                rheaders.append(("Content-Length", announced))
            self.answer(conn, status, rheaders, b"", method, head=True)
            return True
        self.answer(conn, status, rheaders, rbody, method)
        return True

    def answer(self, conn, status, headers, body, method, send=None, close=False, head=False):
        out = ["HTTP/1.1 %d %s" % (status, http.client.responses.get(status, "Status"))]
        out += ["%s: %s" % (k, v) for k, v in headers]
        if not head and status not in (204, 304):
            out.append("Content-Length: %d" % len(body))
        if close:
            out.append("Connection: close")
        data = ("\r\n".join(out) + "\r\n\r\n").encode("latin-1")
        if not head and method != "HEAD":
            data += body[:send] if send is not None else body
            with self.lock:
                self.down += len(body[:send] if send is not None else body)
        conn.sendall(data)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--rate", type=float, default=0.25)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--counts", default=None)
    a = ap.parse_args()
    seed = a.seed if a.seed is not None else random.randrange(1 << 31)
    print("fault-proxy: seed %d, rate %.2f, upstream %s" % (seed, a.rate, a.upstream),
          file=sys.stderr, flush=True)
    proxy = Proxy(a.upstream, a.rate, seed)
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)

    def write_counts(*_):
        if a.counts:
            with open(a.counts + ".tmp", "w") as f:
                json.dump(proxy.traffic(), f)
            os.rename(a.counts + ".tmp", a.counts)

    def stop(*_):
        print("fault-proxy: " + ", ".join("%s %d" % kv for kv in proxy.counts.items()),
              file=sys.stderr, flush=True)
        write_counts()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGUSR1, write_counts)
    with open(a.port_file + ".tmp", "w") as f:
        f.write("%d\n" % srv.getsockname()[1])
    os.rename(a.port_file + ".tmp", a.port_file)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=proxy.serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
