"""Section 5, load: idle connections and slow senders held at once while a
sibling client's transaction is timed."""

import contextlib
import selectors
import smtplib
import time
from dataclasses import dataclass

from bench import procfs
from bench.clients import Background, idle_connections, settled, transaction
from bench.report import MB, attr, first, num, say
from bench.servers import each

# Connections held at once (full mode; --quick: a tenth).
LOAD_IDLE = 10_000
LOAD_SLOW = 1_000
SLOW_EVERY = 3.0        # seconds between two bytes of one slow sender
SLOW_LINE = b"NOOP\r\n"  # what a slow sender trickles, one byte at a time
LOAD_HOLD = 15.0        # seconds the load is held while the sibling is timed (quick: 5)
SIBLING_RUNS = 5        # sibling transactions while the load is held
TARGET_SIBLING = 1.0    # seconds for the sibling's transaction under load


class SlowSenders(Background):
    """While the with-block runs, a thread sends the next byte of SLOW_LINE
    on each socket in turn, so that each gets one every SLOW_EVERY seconds."""

    def __init__(self, socks):
        super().__init__()
        self.socks = socks
        self.sent = 0

    def _run(self):
        pause = SLOW_EVERY / max(len(self.socks), 1)
        position = 0
        while not self._stop.is_set():
            i = position % len(SLOW_LINE)
            byte = SLOW_LINE[i:i + 1]
            for s in self.socks:
                with contextlib.suppress(OSError):
                    s.send(byte)
                    self.sent += 1
                if self._stop.wait(pause):
                    return
            position += 1


def sibling_transaction(port):
    """Seconds for one complete SMTP transaction, or None if it failed."""
    try:
        return transaction(port, "sibling")
    except (smtplib.SMTPException, OSError):
        return None


def still_open(socks):
    """How many of `socks` the server has not closed (nothing to read)."""
    with selectors.DefaultSelector() as sel:
        for s in socks:
            sel.register(s, selectors.EVENT_READ)
        return len(socks) - len(sel.select(timeout=0))


@dataclass
class LoadResult:
    server: str
    idle: int
    slow: int
    greeted: int = 0
    held: int = 0
    refusal: str = ""
    rss_before: int = 0
    rss_after: int = 0
    fds_before: int = 0
    fds_after: int = 0
    bytes_trickled: int = 0
    siblings: list = None   # seconds per transaction, None for a failed one
    error: str = ""

    @property
    def wanted(self):
        return self.idle + self.slow

    @property
    def per_conn(self):
        return (self.rss_after - self.rss_before) / self.greeted if self.greeted else None

    @property
    def sibling_max(self):
        """Slowest sibling transaction; None if none ran or one failed."""
        ok = [t for t in self.siblings or [] if t is not None]
        return max(ok) if ok and len(ok) == len(self.siblings) else None

    @property
    def sibling_median(self):
        ok = sorted(t for t in self.siblings or [] if t is not None)
        return ok[len(ok) // 2] if ok else None


def load_test(server, idle, slow, opts):
    res = LoadResult(server.name, idle, slow, siblings=[])
    with settled(server, room=res.wanted) as ready:
        if not ready:
            res.error = "server did not start"
            return res
        res.rss_before = procfs.memory(server.pid)["VmRSS"]
        res.fds_before = procfs.open_fds(server.pid)
        with idle_connections(server.port, res.wanted, opts.idle_deadline) as (
                socks, res.greeted, _, res.refusal):
            open_socks = [s for s in socks if s.fileno() != -1]
            with SlowSenders(open_socks[:slow]) as senders:
                for _ in range(SIBLING_RUNS):
                    time.sleep(opts.load_hold / SIBLING_RUNS)
                    res.siblings.append(sibling_transaction(server.port))
                res.bytes_trickled = senders.sent
            if not server.alive():
                res.error = "server died"
                return res
            res.rss_after = procfs.memory(server.pid)["VmRSS"]
            res.fds_after = procfs.open_fds(server.pid)
            res.held = still_open(open_socks)
    return res


def describe(r):
    if r.error:
        return f"{r.server:<9} {r.error}"
    per = f"{r.per_conn:6.0f} B/conn" if r.per_conn is not None else "   n/a"
    failed = sum(t is None for t in r.siblings)
    refused = f"\n{'':<12}first refusal: {r.refusal!r}" if r.refusal else ""
    return (f"{r.server:<9} {r.held:>6}/{r.wanted} held ({r.idle} idle + {r.slow} slow, "
            f"{r.bytes_trickled} bytes trickled)  VmRSS {r.rss_before / MB:6.1f} -> "
            f"{r.rss_after / MB:6.1f} MB {per}  fds {r.fds_before} -> {r.fds_after}\n"
            f"{'':<12}sibling transaction: slowest {num(r.sibling_max, '.3f')} s, median "
            f"{num(r.sibling_median, '.3f')} s over {len(r.siblings)} runs"
            f"{f' ({failed} FAILED)' if failed else ''}{refused}")


def section(servers, opts):
    idle, slow = opts.load_idle, opts.load_slow
    say(f"\n== 5. Load: {idle} idle connections and {slow} slow senders held, "
        f"a sibling transaction timed {SIBLING_RUNS} times in {opts.load_hold:.0f} s ==")
    return each(servers, load_test, describe, idle, slow, opts)


def targets(load):
    hp = first(load, "honeypot", lambda r: not r.error)
    aio = first(load, "aiosmtpd", lambda r: not r.error)
    worst = attr(hp, "sibling_max")
    held = f"{hp.held}/{hp.wanted} held, fds {hp.fds_before} -> {hp.fds_after}" if hp else "n/a"
    figure = (f"honeypot slowest {num(worst, '.3f')} s ({held}; aiosmtpd slowest "
              f"{num(attr(aio, 'sibling_max'), '.3f')} s)")
    ok = None if worst is None else (worst < TARGET_SIBLING and hp.held == hp.wanted)
    return [("sibling transaction < 1 s, all load held", figure, ok)]
