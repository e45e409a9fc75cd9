#!/usr/bin/env python3
"""60 connections from one address against a real twistd: the first
``[protection] max_connections_per_client`` (default 50) get the banner,
the rest Postfix's per-client 421 and a close; once they close, a new one
is served again.

    .venv/bin/python bench/per_client.py [--connections 60] [--limit N]

Prints what each group got and how long the 60 greetings took; exits 1 if
the limit was not applied at the configured count.  127.0.0.1 only.
"""

import argparse
import socket
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from smtplatrine.config import Protection  # noqa: E402
from tests.process import Honeypot, banner  # noqa: E402

BANNER = b"220 mail.example.com ESMTP Postfix (Debian/GNU)\r\n"
LIMITED = b"421 4.7.0 mail.example.com Error: too many connections from 127.0.0.1\r\n"


def greeting(sock):
    """The first reply line, and (after a 421) whether the server then closed."""
    line = banner(sock)
    closed = False
    if line.startswith(b"421"):
        try:
            closed = sock.recv(1) == b""
        except socket.timeout:
            pass
    return line, closed


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=60)
    parser.add_argument("--limit", type=int, default=None,
                        help="max_connections_per_client (default: the built-in default)")
    options = parser.parse_args()
    limit = options.limit or Protection().max_connections_per_client
    sections = {"protection": {"max_connections_per_client": limit}}
    print(f"twistd with max_connections_per_client = {limit};"
          f" {options.connections} connections from 127.0.0.1")
    honeypot = Honeypot(**sections)
    held = []
    try:
        start = time.monotonic()
        outcomes = []
        for _ in range(options.connections):
            sock = socket.create_connection(("127.0.0.1", honeypot.port), 5)
            sock.settimeout(5)
            held.append(sock)
            outcomes.append(greeting(sock))
        elapsed = time.monotonic() - start
        counts = Counter((reply, closed) for reply, closed in outcomes)
        for (reply, closed), n in sorted(counts.items(), key=lambda kv: kv[0][0]):
            print(f"  {n:3d} x {reply.decode(errors='replace').strip()!r}"
                  f"{', then closed' if closed else ''}")
        print(f"  {options.connections} greetings in {elapsed * 1000:.0f} ms")
        expected = ([(BANNER, False)] * min(limit, options.connections)
                    + [(LIMITED, True)] * max(options.connections - limit, 0))
        ok = outcomes == expected
        for sock in held:
            sock.close()
        held = []
        time.sleep(0.5)
        with socket.create_connection(("127.0.0.1", honeypot.port), 5) as sock:
            again = greeting(sock)[0]
        print(f"  after closing them all, a new connection gets {again.strip()!r}")
        ok = ok and again == BANNER
    finally:
        for sock in held:
            sock.close()
        honeypot.stop()
    print("OK: the per-client limit applied at the configured count" if ok
          else "FAILED: the limit did not apply as configured")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
