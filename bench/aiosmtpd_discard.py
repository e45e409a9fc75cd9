"""Baseline SMTP server for the benchmark: aiosmtpd that accepts and discards.

Usage: python3 bench/aiosmtpd_discard.py PORT SIZE_LIMIT

Listens on 127.0.0.1:PORT only, accepts every message of up to SIZE_LIMIT
bytes (bench/servers.py gives the honeypot's limit) and throws it away.  On
SIGUSR1 it prints "accepted N messages" (the harness's sanity check); on
SIGTERM / SIGINT it prints the same line and exits.
"""

import asyncio
import signal
import sys

from aiosmtpd.smtp import SMTP

BACKLOG = 4096                       # same order as the kernel's somaxconn


class DiscardHandler:
    """Accept everything, keep nothing but a counter."""

    def __init__(self):
        self.messages = 0

    async def handle_DATA(self, server, session, envelope):
        self.messages += 1
        return "250 OK"


async def serve(port, size_limit):
    loop = asyncio.get_running_loop()
    handler = DiscardHandler()
    server = await loop.create_server(
        lambda: SMTP(handler, data_size_limit=size_limit,
                     hostname="aiosmtpd.bench.local"),
        host="127.0.0.1", port=port, backlog=BACKLOG)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, report, handler)
    async with server:
        await stop.wait()
    report(handler)


def report(handler):
    print(f"aiosmtpd_discard: accepted {handler.messages} messages", flush=True)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    asyncio.run(serve(int(sys.argv[1]), int(sys.argv[2])))


if __name__ == "__main__":
    main()
