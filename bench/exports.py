#!/usr/bin/env python3
"""Whether the dashboard's exports stream with flat memory over 100,000
stored messages.

HOW TO RUN
    python3 bench/exports.py                  # SQLite and MariaDB, 100,000 messages
    python3 bench/exports.py --only sqlite --messages 20000
    python3 bench/exports.py --keep /tmp/dash-bench --reuse   # measure again

    MariaDB: 127.0.0.1:3306 as root without a password, database
    smtplatrine_bench_exports (made, and dropped at the end unless --keep),
    or a private mariadbd with --buffer-pool, as bench/dashboard.py.

WHAT IT DOES
    Fills the database as bench/dashboard.py does (same messages, same
    code), starts ``twistd -n smtplatrine-web`` on it, and downloads every
    export of all the messages (/api/export/messages.FORMAT with a forensic
    token) as fast as it can read, sampling the dashboard's VmRSS every
    0.1 s: bytes, seconds, rows per second, and memory before and at most
    during each.  Then one client that reads the JSON lines export at
    1 MB/s for 15 s (the dashboard must wait for it, not buffer for it).
    The baseline, in the same run: the dashboard's memory after 100
    requests of the messages page (a page of 50 rows).  Prints figures,
    asserts nothing.
"""

import sys
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.dashboard import arguments, dashboards, rss_kb, say  # noqa: E402

FORMATS = ("jsonl", "csv", "stix", "misp", "mbox", "zip")
# Its own database: bench/dashboard.py may run at the same time.
MYSQL_DB = "smtplatrine_bench_exports"


class Sampler(threading.Thread):
    """The largest VmRSS of *pid* while running."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.running = pid, rss_kb(pid), True

    def run(self):
        while self.running:
            self.peak = max(self.peak, rss_kb(self.pid))
            time.sleep(0.1)

    def stop(self):
        self.running = False
        self.join()
        return self.peak


def download(url, token, rate=None, seconds=None):
    """(bytes, seconds) of reading *url*, at most *rate* bytes a second,
    for at most *seconds*."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    started, size = time.monotonic(), 0
    with urllib.request.urlopen(request, timeout=600) as response:
        while chunk := response.read(rate or 256 * 1024):
            size += len(chunk)
            if seconds and time.monotonic() - started > seconds:
                break
            if rate:
                time.sleep(1)
    return size, time.monotonic() - started


def measure(base_url, token, process, count):
    pid = process.pid
    for _ in range(100):
        download(f"{base_url}/messages", token)
    baseline = rss_kb(pid)
    say(f"  baseline: VmRSS {baseline / 1024:.1f} MB after 100 messages pages")
    say(f"  {'export':8} {'bytes':>14} {'seconds':>8} {'rows/s':>8}  VmRSS before / peak")
    for name in FORMATS:
        before = rss_kb(pid)
        sampler = Sampler(pid)
        sampler.start()
        size, seconds = download(f"{base_url}/api/export/messages.{name}", token)
        peak = sampler.stop()
        rows = "" if name in ("stix", "misp") else f"{count / seconds:8,.0f}"
        say(f"  {name:8} {size:14,} {seconds:8.1f} {rows:>8}  {before / 1024:.1f} /"
            f" {peak / 1024:.1f} MB")
    before = rss_kb(pid)
    sampler = Sampler(pid)
    sampler.start()
    size, seconds = download(f"{base_url}/api/export/messages.jsonl", token,
                             rate=1024 * 1024, seconds=15)
    peak = sampler.stop()
    say(f"  slow client (1 MB/s, jsonl): {size:,} bytes in {seconds:.0f} s; VmRSS"
        f" {before / 1024:.1f} / {peak / 1024:.1f} MB")


def main():
    options, directory = arguments(__doc__.split("\n")[0], "smtplatrine-export-bench-")
    for dialect, (_, _, token), process, url, _ in dashboards(options, directory, MYSQL_DB):
        say(f"{dialect.describe()}: {options.messages:,} messages")
        measure(url, token, process, options.messages)


if __name__ == "__main__":
    main()
