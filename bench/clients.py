"""The load the sections put on a server: smtp-source runs, many connections
greeted at once, single smtplib transactions, and a thread that works while
a measurement runs."""

import contextlib
import errno
import math
import selectors
import smtplib
import socket
import subprocess
import threading
import time
from dataclasses import dataclass

from bench.procfs import SETTLE
from bench.report import MB, say
from bench.servers import HOST

SMTP_SOURCE = "/usr/sbin/smtp-source"
HELO_NAME = "bench.example.net"
MAIL_FROM = "sender@bench.example.net"
RCPT_TO = "rcpt@example.com"
# Options of every smtp-source run, after -d ("don't disconnect": each of
# the -s sessions sends messages until -m is used up) where a run keeps its
# connections, and before its -s, -m and message options.
SOURCE_OPTS = ["-M", HELO_NAME, "-f", MAIL_FROM, "-t", RCPT_TO]

MIN_WALL = 2.0          # a run shorter than this is repeated with more messages
TARGET_WALL = 3.0       # ... sized to take about this long
MAX_SCALE = 20          # ... but at most 20x the base count
MAX_RUN_BYTES = 512 * MB  # ... and at most this much payload per run
IDLE_WINDOW = 32        # connects in flight at once (twisted's default backlog is 50)


# --------------------------------------------------------------------------
# smtp-source
# --------------------------------------------------------------------------

@dataclass
class Run:
    """One smtp-source run: `count` messages of `size` bytes over `sessions`
    sessions at once; `options` are smtp-source's for the message and the
    connection: ["-d", "-l", SIZE], ["-F", FILE] (a new connection each)."""
    server: str
    size_label: str
    size: int
    sessions: int
    count: int
    options: tuple = ()
    wall: float = 0.0
    error: str = ""
    received: object = None  # int, or None if the server cannot tell
    cpu: float = None        # CPU seconds of all the server's processes in the run

    @property
    def ok(self):
        return not self.error

    @property
    def msgs_per_s(self):
        return self.count / self.wall if self.ok and self.wall > 0 else None

    @property
    def mb_per_s(self):
        return self.count * self.size / MB / self.wall if self.ok and self.wall > 0 else None

    @property
    def cpu_per_msg(self):
        """CPU microseconds per message."""
        return self.cpu / self.count * 1e6 if self.ok and self.cpu is not None else None

    def again(self, count):
        """The same run, not yet done, with `count` messages."""
        return Run(self.server, self.size_label, self.size, self.sessions, count, self.options)


def run_smtp_source(port, sessions, count, options, timeout):
    """Run smtp-source once; return (wall seconds, error string or '')."""
    argv = [SMTP_SOURCE, *SOURCE_OPTS, "-s", str(sessions), "-m", str(count),
            *options, f"{HOST}:{port}"]
    start = time.monotonic()
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return time.monotonic() - start, f"timeout after {timeout} s"
    wall = time.monotonic() - start
    if res.returncode != 0:
        msg = (res.stderr or res.stdout).strip().splitlines()
        return wall, f"exit {res.returncode}: {msg[-1] if msg else ''}"
    return wall, ""


def wait_received(server, expected, timeout=15.0):
    """Poll the server's message counter until it reaches `expected` or stops moving."""
    deadline = time.monotonic() + timeout
    last, last_change = server.received(), time.monotonic()
    while last is not None and last < expected and time.monotonic() < deadline:
        time.sleep(0.1)
        now = server.received()
        if now != last:
            last, last_change = now, time.monotonic()
        elif time.monotonic() - last_change > 2.0:
            break
    return last


def measure(server, run, opts):
    """Do `run` against `server`, with the server's CPU time while
    smtp-source runs and the received-count sanity check."""
    before = server.received()
    cpu = server.cpu()
    run.wall, run.error = run_smtp_source(server.port, run.sessions, run.count, run.options,
                                          opts.source_timeout)
    run.cpu = server.cpu() - cpu
    if before is not None:
        after = wait_received(server, before + run.count)
        run.received = None if after is None else after - before
    return run


def scaled_count(run):
    """A larger count so a too-short run takes about TARGET_WALL seconds (bounded)."""
    want = math.ceil(run.count * TARGET_WALL / max(run.wall, 0.01))
    return max(run.count, min(want, run.count * MAX_SCALE, MAX_RUN_BYTES // run.size))


def measure_long_enough(server, run, opts):
    """measure(); in full mode a run shorter than MIN_WALL is repeated once with more messages."""
    measure(server, run, opts)
    if not opts.quick and run.ok and run.wall < MIN_WALL:
        bigger = scaled_count(run)
        if bigger > run.count:
            return measure(server, run.again(bigger), opts)
    return run


def describe_run(run):
    head = f"{run.server:<9} {run.size_label} x {run.sessions:>3} sessions {run.count:>6} msgs"
    if not run.ok:
        return f"{head}  FAILED ({run.error})"
    got = "?" if run.received is None else run.received
    flag = "" if run.received in (None, run.count) else "  <-- received != sent"
    return (f"{head} {run.wall:7.2f} s {run.msgs_per_s:9.1f} msg/s "
            f"{run.mb_per_s:8.2f} MB/s  received {got}{flag}")


# --------------------------------------------------------------------------
# Connections and transactions
# --------------------------------------------------------------------------

@contextlib.contextmanager
def idle_connections(port, n, deadline_s):
    """While the with-block runs, up to n connections held, greeted.

    Yields (sockets, greeted, failed, first_refusal) and closes the sockets
    after the block.
    """
    socks, greeted, failed, first_refusal = _open_idle_connections(port, n, deadline_s)
    try:
        yield socks, greeted, failed, first_refusal
    finally:
        for s in socks:
            s.close()


def _open_idle_connections(port, n, deadline_s):
    """Open up to n connections and read the banner on each.

    Returns (sockets, greeted, failed, first_refusal).  At most IDLE_WINDOW
    connections are waiting for their banner at any time, so the server's
    listen backlog is never overrun; the whole loop ends at the deadline
    regardless.  (tests.process.banner reads one banner; this reads
    thousands at once.)
    """
    sel = selectors.DefaultSelector()
    socks, pending = [], {}
    started = greeted = failed = 0
    first_refusal = ""
    deadline = time.monotonic() + deadline_s
    try:
        while greeted + failed < n and time.monotonic() < deadline:
            while started < n and len(pending) < IDLE_WINDOW:
                started += 1
                s = socket.socket()
                s.setblocking(False)
                err = s.connect_ex((HOST, port))
                if err not in (0, errno.EINPROGRESS):
                    s.close()
                    failed += 1
                    continue
                socks.append(s)
                pending[s] = b""
                sel.register(s, selectors.EVENT_READ)
            for key, _ in sel.select(timeout=0.5):
                s = key.fileobj
                try:
                    data = s.recv(512)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                buf = pending[s] + data
                if data and b"\n" not in buf:
                    pending[s] = buf
                    continue
                sel.unregister(s)
                del pending[s]
                if buf.startswith(b"220"):
                    greeted += 1
                else:
                    failed += 1
                    first_refusal = first_refusal or (buf.decode("latin-1").strip()[:80] or "closed")
                    s.close()
    finally:
        sel.close()
    return socks, greeted, failed, first_refusal


def transaction(port, subject):
    """One complete small SMTP transaction (EHLO, MAIL, RCPT, DATA, QUIT);
    its seconds.  Raises smtplib.SMTPException or OSError."""
    start = time.monotonic()
    with smtplib.SMTP(HOST, port, local_hostname=HELO_NAME, timeout=30) as c:
        c.sendmail(MAIL_FROM, [RCPT_TO], f"Subject: {subject}\r\n\r\nhello\r\n".encode())
    return time.monotonic() - start


@contextlib.contextmanager
def settled(server, room=None):
    """server.running(room), then one transaction so lazily loaded code is
    resident, and SETTLE seconds, so that its memory is read at rest:
    yields whether it started.

    A failed transaction is reported but not fatal: the measurement that
    follows still means something (and shows its own errors).
    """
    with server.running(room) as ready:
        if ready:
            try:
                transaction(server.port, "warm-up")
            except (smtplib.SMTPException, OSError) as e:
                say(f"  ({server.name}: warm-up transaction failed: {e!r})")
            time.sleep(SETTLE)
        yield ready


class Background:
    """A thread that runs self._run() while the with-block runs; _run
    returns once self._stop is set."""

    def __init__(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join()
