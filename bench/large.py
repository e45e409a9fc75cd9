"""Section 3, large messages: 50 MB through smtplib, one of text lines and
one with a base64 attachment, and how much the memory of the server (and
of each of its processes) grows."""

import base64
import contextlib
import random
import smtplib
import time
from dataclasses import dataclass

from bench import procfs
from bench.clients import HELO_NAME, MAIL_FROM, RCPT_TO, Background, settled, wait_received
from bench.report import MB, attr, first, num, say
from bench.servers import HOST, each

LARGE_SIZE = 50 * MB
LARGE_TIMEOUT = 300     # socket timeout for the 50 MB send
STORE_TIMEOUT = 120     # for storing it, once received
TARGET_LARGE_GROWTH = 10 * MB


def large_message(size):
    """Headers plus a body of 76-character lines, CRLF terminated, about `size` bytes."""
    head = (f"From: <{MAIL_FROM}>\r\nTo: <{RCPT_TO}>\r\n"
            "Subject: 50 MB benchmark message\r\n\r\n").encode()
    line = (b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-large-msg-line"[:76]
            + b"\r\n")
    return head + line * (size // len(line))


def attached_message(size):
    """A short text and a base64 attachment of random bytes (the same in
    every run), CRLF lines of 76 characters, about `size` bytes."""
    payload = random.Random(50).randbytes(size * 3 // 4 - 1000)
    return (f"From: <{MAIL_FROM}>\r\nTo: <{RCPT_TO}>\r\n"
            "Subject: 50 MB benchmark attachment\r\nMIME-Version: 1.0\r\n"
            "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
            "--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
            "--b\r\nContent-Type: application/zip; name=large.zip\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\n").encode() + (
        base64.encodebytes(payload).replace(b"\n", b"\r\n") + b"--b--\r\n")


class AnonymousPeaks(Background):
    """The highest RssAnon of a process and of each process under it, read
    every *interval* seconds while in the ``with`` block: by pid, in
    bytes.  VmHWM counts the pages of a file a process maps (the parse
    worker maps a large spooled message rather than read it), which the
    kernel drops when memory is short; anonymous memory is what it cannot.
    The kernel keeps no peak of it, so it is sampled: a peak shorter than
    *interval* can be missed."""

    def __init__(self, pid, interval=0.002):
        super().__init__()
        self.pid, self.interval = pid, interval
        self.peaks = {}

    def _run(self):
        while not self._stop.wait(self.interval):
            for pid in [self.pid, *procfs.descendants(self.pid)]:
                with contextlib.suppress(OSError, KeyError):
                    anonymous = procfs.memory(pid)["RssAnon"]
                    self.peaks[pid] = max(self.peaks.get(pid, 0), anonymous)


@dataclass
class LargeResult:
    server: str
    kind: str
    size: int
    seconds: float = 0.0
    before: dict = None
    after: dict = None
    received: object = None
    error: str = ""
    helpers_before: dict = None
    helpers_after: dict = None
    anonymous: dict = None      # pid: highest RssAnon sampled meanwhile

    @property
    def growth(self):
        return self.after["VmRSS"] - self.before["VmRSS"]

    @property
    def peak_growth(self):
        return self.after["VmHWM"] - self.before["VmRSS"]


def large_test(server, kind, message):
    res = LargeResult(server.name, kind, len(message))
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
        with AnonymousPeaks(server.pid) as peaks:
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
            # Received counts a message still spooled: wait until it is stored.
            deadline = time.monotonic() + STORE_TIMEOUT
            while server.stores and server.backlog() and time.monotonic() < deadline:
                time.sleep(0.1)
        # Read once the message is stored: the storing process is done too.
        res.after = procfs.memory(server.pid)
        res.helpers_after = procfs.helper_memories(server.pid)
        res.anonymous = peaks.peaks
    return res


def describe(r):
    if r.after is None:
        return f"{r.server:<9} {r.error}"
    b, a = r.before, r.after
    got = "?" if r.received is None else r.received
    err = f"  ({r.error})" if r.error else ""
    return (f"{r.server:<9} {r.kind:<10} {r.size / MB:.1f} MB in {r.seconds:6.2f} s  "
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
            f" peak growth {(a['VmHWM'] - b['VmRSS']) / MB:+.1f} MB,"
            f" anonymous peak growth {num(_anonymous_growth(r, pid), '+.1f')} MB")


def _anonymous_growth(r, pid):
    """How far the sampled RssAnon of *pid* rose over its RssAnon before, MB."""
    if pid not in (r.anonymous or {}) or pid not in r.helpers_before:
        return None
    return (r.anonymous[pid] - r.helpers_before[pid][1]["RssAnon"]) / MB


MESSAGES = {"text": large_message, "attachment": attached_message}


def section(servers):
    say(f"\n== 3. {LARGE_SIZE // MB} MB messages via smtplib: text lines, a base64 attachment ==")
    return [result for kind, make in MESSAGES.items()
            for result in each(servers, large_test, describe, kind, make(LARGE_SIZE))]


def targets(large):
    return [line for kind in MESSAGES for line in _targets(
        kind, [r for r in large if r.kind == kind])]


def _targets(kind, large):
    hp = first(large, "honeypot", lambda r: r.after)
    aio = first(large, "aiosmtpd", lambda r: r.after)
    peak = attr(hp, "peak_growth", MB)
    figure = (f"honeypot peak {num(peak, '+.1f')} MB, after {num(attr(hp, 'growth', MB), '+.1f')} MB "
              f"(aiosmtpd peak {num(attr(aio, 'peak_growth', MB), '+.1f')} MB)")
    helpers = hp.helpers_after if hp is not None else {}
    grown = {"smtplatrine.storing": [], "smtplatrine-par": []}  # (pid, peak, anonymous), MB
    for pid, (name, after) in sorted(helpers.items()):
        if pid in hp.helpers_before and name in grown:
            grown[name].append((pid, (after["VmHWM"] - hp.helpers_before[pid][1]["VmRSS"]) / MB,
                                _anonymous_growth(hp, pid)))
    storing = [g for _, g, _ in grown["smtplatrine.storing"]]
    figure += "".join(f"; storing process {pid} peak {g:+.1f} MB"
                      for pid, g, _ in grown["smtplatrine.storing"])
    # The zygote and the idle workers do not grow: the one that parsed it.
    worker = max(grown["smtplatrine-par"], key=lambda g: g[1], default=None)
    anonymous = worker and worker[2]
    return [(f"50 MB message ({kind}) grows RSS < 10 MB (peak)", figure,
             None if peak is None else max([peak, *storing]) < TARGET_LARGE_GROWTH / MB),
            (f"50 MB message ({kind}): its parse worker's anonymous peak < 10 MB",
             f"parse worker anonymous peak {num(anonymous, '+.1f')} MB"
             f" (VmHWM {num(worker and worker[1], '+.1f')} MB, with the spool file it maps)",
             None if anonymous is None else anonymous < TARGET_LARGE_GROWTH / MB)]
