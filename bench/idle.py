"""Section 2, idle connections: N connections opened and greeted, and the
server's memory per connection."""

import time
from dataclasses import dataclass

from bench import procfs
from bench.clients import idle_connections, settled
from bench.report import KB, MB, attr, first, num, say
from bench.servers import each

IDLE_DEADLINE = 120     # seconds to open all idle connections (quick: 30)
TARGET_IDLE_BYTES = 5 * KB


@dataclass
class IdleResult:
    server: str
    wanted: int
    greeted: int = 0
    failed: int = 0
    seconds: float = 0.0
    refusal: str = ""
    rss_before: int = 0
    rss_after: int = 0
    error: str = ""

    @property
    def per_conn(self):
        return (self.rss_after - self.rss_before) / self.greeted if self.greeted else None


def idle_test(server, n, opts):
    res = IdleResult(server.name, n)
    with settled(server, room=n) as ready:
        if not ready:
            res.error = "server did not start"
            return res
        res.rss_before = procfs.memory(server.pid)["VmRSS"]
        start = time.monotonic()
        with idle_connections(server.port, n, opts.idle_deadline) as (
                _, res.greeted, res.failed, res.refusal):
            res.seconds = time.monotonic() - start
            time.sleep(procfs.SETTLE)
            if server.alive():
                res.rss_after = procfs.memory(server.pid)["VmRSS"]
            else:
                res.error = "server died"
    return res


def describe(r):
    if r.error:
        return f"{r.server:<9} {r.error}"
    per = f"{r.per_conn:8.0f} B/conn" if r.per_conn is not None else "   n/a"
    refused = f"\n{'':<12}first refusal: {r.refusal!r}" if r.refusal else ""
    return (f"{r.server:<9} {r.greeted:>6}/{r.wanted} greeted ({r.failed} failed) in {r.seconds:5.1f} s  "
            f"VmRSS {r.rss_before / MB:7.1f} -> {r.rss_after / MB:7.1f} MB  {per}{refused}")


def section(servers, n, opts):
    say(f"\n== 2. Idle connections ({n} per server, banner read on each) ==")
    return each(servers, idle_test, describe, n, opts)


def targets(idle):
    pick = lambda name: attr(first(idle, name, lambda r: not r.error), "per_conn")
    hp, aio = pick("honeypot"), pick("aiosmtpd")
    figure = f"honeypot {num(hp, '.0f')} B/conn (aiosmtpd {num(aio, '.0f')} B/conn)"
    return [("<= 5 KB RSS per idle connection", figure,
             None if hp is None else hp <= TARGET_IDLE_BYTES)]
