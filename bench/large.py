"""Section 3, one large message: 50 MB through smtplib, and how much the
memory of the server (and of each of its processes) grows."""

import smtplib
import time
from dataclasses import dataclass

from bench import procfs
from bench.clients import HELO_NAME, MAIL_FROM, RCPT_TO, settled, wait_received
from bench.report import MB, attr, first, num, say
from bench.servers import HOST, each

LARGE_SIZE = 50 * MB
LARGE_TIMEOUT = 300     # socket timeout for the 50 MB send
TARGET_LARGE_GROWTH = 10 * MB


def large_message(size):
    """Headers plus a body of 76-character lines, CRLF terminated, about `size` bytes."""
    head = (f"From: <{MAIL_FROM}>\r\nTo: <{RCPT_TO}>\r\n"
            "Subject: 50 MB benchmark message\r\n\r\n").encode()
    line = (b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-large-msg-line"[:76]
            + b"\r\n")
    return head + line * (size // len(line))


@dataclass
class LargeResult:
    server: str
    size: int
    seconds: float = 0.0
    before: dict = None
    after: dict = None
    received: object = None
    error: str = ""
    helpers_before: dict = None
    helpers_after: dict = None

    @property
    def growth(self):
        return self.after["VmRSS"] - self.before["VmRSS"]

    @property
    def peak_growth(self):
        return self.after["VmHWM"] - self.before["VmRSS"]


def large_test(server, message):
    res = LargeResult(server.name, len(message))
    with settled(server) as ready:
        if not ready:
            res.error = "server did not start"
            return res
        count_before = server.received()
        # Peaks from before (start-up, the warm-up) would pass for the message's.
        for pid in [server.pid, *procfs.descendants(server.pid)]:
            procfs.reset_peak(pid)
        res.before = procfs.memory(server.pid)
        res.helpers_before = procfs.helper_memories(server.pid)
        start = time.monotonic()
        try:
            with smtplib.SMTP(HOST, server.port, local_hostname=HELO_NAME,
                              timeout=LARGE_TIMEOUT) as c:
                c.sendmail(MAIL_FROM, [RCPT_TO], message)
        except (smtplib.SMTPException, OSError) as e:
            res.error = f"send failed: {e!r}"
        res.seconds = time.monotonic() - start
        time.sleep(procfs.SETTLE)
        if not server.alive():
            res.error = res.error or "server died"
            return res
        if count_before is not None:
            after = wait_received(server, count_before + 1)
            res.received = None if after is None else after - count_before
        # Read once the message is stored: the storing process is done too.
        res.after = procfs.memory(server.pid)
        res.helpers_after = procfs.helper_memories(server.pid)
    return res


def describe(r):
    if r.after is None:
        return f"{r.server:<9} {r.error}"
    b, a = r.before, r.after
    got = "?" if r.received is None else r.received
    err = f"  ({r.error})" if r.error else ""
    return (f"{r.server:<9} {r.size / MB:.1f} MB in {r.seconds:6.2f} s  "
            f"VmRSS {b['VmRSS'] / MB:7.1f} -> {a['VmRSS'] / MB:7.1f} MB (growth {r.growth / MB:+7.1f} MB)  "
            f"VmHWM {b['VmHWM'] / MB:7.1f} -> {a['VmHWM'] / MB:7.1f} MB "
            f"(peak growth {r.peak_growth / MB:+7.1f} MB)  received {got}{err}"
            + "".join(_describe_helper(pid, r) for pid in sorted(r.helpers_after or ())))


def _describe_helper(pid, r):
    """A line for one process under the server: its own RSS growth."""
    name, a = r.helpers_after[pid]
    if pid not in r.helpers_before:
        return f"\n            {name} (pid {pid}, started meanwhile): VmHWM {a['VmHWM'] / MB:.1f} MB"
    b = r.helpers_before[pid][1]
    return (f"\n            {name} (pid {pid}): VmRSS {b['VmRSS'] / MB:.1f} ->"
            f" {a['VmRSS'] / MB:.1f} MB (growth {(a['VmRSS'] - b['VmRSS']) / MB:+.1f} MB),"
            f" peak growth {(a['VmHWM'] - b['VmRSS']) / MB:+.1f} MB")


def section(servers):
    say(f"\n== 3. One {LARGE_SIZE // MB} MB message via smtplib (76-char lines) ==")
    return each(servers, large_test, describe, large_message(LARGE_SIZE))


def targets(large):
    hp = first(large, "honeypot", lambda r: r.after)
    aio = first(large, "aiosmtpd", lambda r: r.after)
    peak = attr(hp, "peak_growth", MB)
    figure = (f"honeypot peak {num(peak, '+.1f')} MB, after {num(attr(hp, 'growth', MB), '+.1f')} MB "
              f"(aiosmtpd peak {num(attr(aio, 'peak_growth', MB), '+.1f')} MB)")
    helpers = hp.helpers_after if hp is not None else {}
    grown = {"smtplatrine.storing": [], "smtplatrine-par": []}  # peaks, MB
    for pid, (name, after) in sorted(helpers.items()):
        if pid in hp.helpers_before and name in grown:
            grown[name].append((pid, (after["VmHWM"] - hp.helpers_before[pid][1]["VmRSS"]) / MB))
    storing = [g for _, g in grown["smtplatrine.storing"]]
    figure += "".join(f"; storing process {pid} peak {g:+.1f} MB"
                      for pid, g in grown["smtplatrine.storing"])
    # The zygote and the idle workers do not grow: the one that parsed it.
    parsed = max((g for _, g in grown["smtplatrine-par"]), default=None)
    return [("50 MB message grows RSS < 10 MB (peak)", figure,
             None if peak is None else max([peak, *storing]) < TARGET_LARGE_GROWTH / MB),
            ("50 MB message: its parse worker's peak < 10 MB",
             f"parse worker peak {num(parsed, '+.1f')} MB",
             None if parsed is None else parsed < TARGET_LARGE_GROWTH / MB)]
