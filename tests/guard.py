"""Stop a server once the process that started it is gone.

Run as ``python3 tests/guard.py OWNER SERVER SECONDS`` (``ServerProcess`` in
tests/process.py does): once process OWNER ends, even by SIGKILL, or
SECONDS have passed, SERVER gets SIGTERM, and SIGKILL 10 s later if it is
still there; the guard ends as soon as SERVER does.  A server that drops
privileges loses ``PR_SET_PDEATHSIG``; a process watching it keeps a killed
test run or benchmark from leaving it behind.
"""

import contextlib
import os
import select
import signal
import sys


def guard(owner, server, seconds):
    try:
        server_fd = os.pidfd_open(server)
    except ProcessLookupError:
        return
    with contextlib.suppress(ProcessLookupError):
        owner_fd = os.pidfd_open(owner)
        if server_fd in select.select([owner_fd, server_fd], [], [], seconds)[0]:
            return
    with contextlib.suppress(ProcessLookupError):
        signal.pidfd_send_signal(server_fd, signal.SIGTERM)
        if not select.select([server_fd], [], [], 10)[0]:
            signal.pidfd_send_signal(server_fd, signal.SIGKILL)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    guard(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]))
