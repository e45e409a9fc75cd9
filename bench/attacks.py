#!/usr/bin/env python3
"""The seven attacks of issue 19 against a real twistd, with what each cost.

    python3 bench/attacks.py [--only NAME]... [--seconds S]

For each attack a fresh ``twistd smtplatrine`` on 127.0.0.1 (tests/process.py),
the attacker on its own connection and, meanwhile, a sibling client running a
whole smtplib transaction every 0.3 s.  Printed per attack: what the attacker
got, the server's memory growth (VmRSS after - before, and its peak, VmHWM),
the peak of the disk worker and of the storing process's worker where they
matter, and the sibling's slowest and median transaction.  The machine's
other load moves the times; the memory figures are steady.

    unread     pipelines ``EHLO x`` without reading a byte (up to 12 MB or
               until the server stops reading for 2 s); the junk command
               limit, which would end it at the 121st, set out of the way
    envelopes  loops MAIL (2 KB address), 1,000 RCPT (2 KB each), RSET,
               reading every reply, for --seconds (junk command limit out
               of the way: past 100 RSETs every reply would wait a second)
    starttls   ten errors, then STARTTLS and, while its 220 waits out the
               error sleep, plaintext EHLO and MAIL; was it executed?
    diskfull   data_dir on a 48 MB tmpfs (needs root); MAIL on a full file
               system, and DATA and BDAT filled up after RCPT: what the
               clients got, tracebacks in the log, the session records
               lost, and the messages stored once there is room again
    halfclose  a whole transaction and QUIT, then shutdown(SHUT_WR)
    crcrlf     a session whose every line ends in CR CR LF
    flood      300 NOOPs; and a client pipelining EHLO as fast as it reads
               the replies, for --seconds (junk command limit out of the way)

Everything connects to 127.0.0.1 only; every loop ends by count or deadline.
"""

import argparse
import contextlib
import re
import socket
import ssl
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.process import Honeypot, SmallFileSystem, _child  # noqa: E402

MESSAGE = b"From: a@example.org\r\nTo: b@example.net\r\nSubject: sibling\r\n\r\nhi\r\n"


def status(pid, key):
    """A /proc/PID/status figure in KB (VmRSS, VmHWM), or 0."""
    if pid is None:
        return 0
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


class Sibling(threading.Thread):
    """A client running one smtplib transaction every 0.3 s until stopped."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.times = []
        self.failures = 0
        self.stopping = threading.Event()

    def run(self):
        import smtplib
        while not self.stopping.wait(0.3):
            started = time.monotonic()
            try:
                with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as client:
                    client.ehlo("sibling.example.org")
                    client.sendmail("a@example.org", ["b@example.net"], MESSAGE)
                    client.quit()
            except (OSError, smtplib.SMTPException):
                self.failures += 1
            else:
                self.times.append(time.monotonic() - started)

    def stop(self):
        self.stopping.set()
        if self.ident is None:
            return "sibling: not run for this attack"
        self.join(30)
        if not self.times:
            return f"sibling: no transaction completed ({self.failures} failed)"
        return (f"sibling: {len(self.times)} transactions, slowest"
                f" {max(self.times):.3f} s, median {statistics.median(self.times):.3f} s"
                + (f", {self.failures} failed" if self.failures else ""))


class Run:
    """One attack against a fresh honeypot, and its figures."""

    def __init__(self, sections=None, data_dir=None):
        sections = dict(sections or {})
        if data_dir is not None:
            sections["server"] = {"data_dir": data_dir}
        self.honeypot = Honeypot(**sections)
        self.pid = self.honeypot.process.pid
        self.rss = status(self.pid, "VmRSS")
        self.sibling = Sibling(self.honeypot.port)

    def connect(self):
        s = socket.create_connection(("127.0.0.1", self.honeypot.port), 10)
        s.settimeout(10)
        banner = b""
        while not banner.endswith(b"\r\n"):
            banner += s.recv(100)
        return s

    def report(self, **extra):
        disk = _child(self.pid, b"smtplatrine.disk")
        storer = self.honeypot.storer_pids()[1]
        growth = status(self.pid, "VmRSS") - self.rss
        peak = status(self.pid, "VmHWM") - self.rss
        print(f"  server memory: +{growth / 1024:.1f} MB (peak +{peak / 1024:.1f} MB);"
              f" disk worker peak {status(disk, 'VmHWM') / 1024:.1f} MB;"
              f" storing worker peak {status(storer, 'VmHWM') / 1024:.1f} MB")
        print("  " + self.sibling.stop())
        tracebacks = self.honeypot.output().count("Traceback")
        print(f"  tracebacks in the log: {tracebacks}")
        for key, value in extra.items():
            print(f"  {key}: {value}")

    def stop(self):
        self.sibling.stopping.set()
        self.honeypot.stop()


def read_all(s, seconds):
    """What arrives on *s* until it closes or is silent for *seconds*."""
    s.settimeout(seconds)
    data = b""
    with contextlib.suppress(OSError):
        while chunk := s.recv(65536):
            data += chunk
    return data


# The junk command limit, out of the way of a flood (the server of before
# it had none and refuses to know the setting).
NO_JUNK_LIMIT = {"smtp": {"junk_command_limit": 10**9}}


def unread(options):
    run = Run(NO_JUNK_LIMIT)
    try:
        s = run.connect()
        s.settimeout(2)
        run.sibling.start()
        sent, chunk = 0, b"EHLO x\r\n" * 8192
        started = time.monotonic()
        try:
            while sent < 12 << 20 and time.monotonic() - started < 60:
                s.sendall(chunk)
                sent += len(chunk)
        except socket.timeout:
            pass
        time.sleep(3)
        run.report(sent=f"{sent / 2**20:.1f} MB sent before the server stopped reading"
                   f" (or 12 MB) in {time.monotonic() - started:.1f} s")
        s.close()
    finally:
        run.stop()


def envelopes(options):
    # Past 100 RSETs the junk command limit would slow the loop to a crawl.
    run = Run(NO_JUNK_LIMIT)
    try:
        s = run.connect()
        port = s.getsockname()[1]
        s.sendall(b"EHLO x\r\n")
        read_until(s, b"CHUNKING\r\n")
        run.sibling.start()
        loops, started = 0, time.monotonic()
        rcpts = b"".join(b"RCPT TO:<%05d%s@example.org>\r\n" % (i, b"r" * 2000)
                         for i in range(1000))
        while time.monotonic() - started < options.seconds:
            s.sendall(b"MAIL FROM:<" + b"m" * 2000 + b"@example.net>\r\n" + rcpts
                      + b"RSET\r\n")
            read_until(s, b"250 2.0.0 Ok\r\n")
            loops += 1
        s.sendall(b"QUIT\r\n")
        read_all(s, 5)
        [row] = run.honeypot.wait_for(lambda: run.honeypot.query(
            "SELECT length(envelopes) AS n FROM honeypot_sessions"
            " WHERE ended IS NOT NULL AND client_port = ?", port), timeout=300)
        run.report(loops=f"{loops} envelopes of 2 MB in {options.seconds} s",
                   stored=f"its envelopes column: {row['n'] / 2**20:.1f} MB")
    finally:
        run.stop()


def read_until(s, marker, seconds=60, count=1):
    """What arrives on *s* until it has *count* times *marker* (or closes)."""
    data, deadline = b"", time.monotonic() + seconds
    s.settimeout(seconds)
    while data.count(marker) < count and time.monotonic() < deadline:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def starttls(options):
    run = Run({"smtp": {"error_sleep_time": 1}})
    try:
        s = run.connect()
        s.sendall(b"EHLO x\r\n" + b"FOO\r\n" * 10)
        read_until(s, b"recognized\r\n", 30, count=10)
        s.sendall(b"STARTTLS\r\n")
        time.sleep(0.3)
        s.sendall(b"EHLO injectedhelo\r\nMAIL FROM:<injected@example.net>\r\n")
        reply = read_until(s, b"TLS\r\n", 10)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        try:
            with context.wrap_socket(s) as tls:
                tls.sendall(b"MAIL FROM:<a@example.org>\r\n")
                after = tls.recv(1000)
                tls.sendall(b"QUIT\r\n")
                tls.recv(1000)
        except (OSError, ssl.SSLError) as e:
            after = f"TLS failed: {e!r}".encode()
        record = run.honeypot.wait_for(lambda: [
            r for r in run.honeypot.sessions() if r["tls"]])[0]
        run.report(reply=reply.decode(), after_handshake=after.decode().strip(),
                   stored_helo=record["helo"], envelopes=record["envelopes"],
                   flags=record["flags"])
    finally:
        run.stop()


def diskfull(options):
    disk = SmallFileSystem("48m")
    run = None
    try:
        run = Run({"smtp": {"message_size_limit": 1048576}}, data_dir=disk.path / "data")
        done = run.connect()
        done.sendall(b"EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n"
                     b"DATA\r\n")
        read_until(done, b"354 End data with <CR><LF>.<CR><LF>\r\n")
        done.sendall(b"Subject: before\r\n\r\nkept\r\n.\r\n")
        before = read_until(done, b"\r\n", 10).decode().strip()
        got = []
        for body in (None, b"DATA\r\n" + b"x" * 300000 + b"\r\n.\r\n",
                     b"BDAT 100000\r\n" + b"x" * 100000 + b"BDAT 100000 LAST\r\n"
                     + b"y" * 100000):
            # Room for MAIL (1.5 times message_size_limit), then none.
            disk.fill(0 if body is None else 2 << 20)
            s = run.connect()
            s.sendall(b"EHLO x\r\nMAIL FROM:<a@b.example>\r\n")
            mail = read_until(s, b"\r\n", 10, count=13).split(b"\r\n")[-2] + b"\r\n"
            if body is not None:
                s.sendall(b"RCPT TO:<c@d.example>\r\n")
                read_until(s, b"\r\n", 10)
                disk.fill()
                with contextlib.suppress(OSError):
                    s.sendall(body)
            with contextlib.suppress(OSError):
                s.sendall(b"NOOP\r\nQUIT\r\n")
            got.append((mail + read_all(s, 5)).decode(errors="replace").replace("\r\n", " | "))
            s.close()
            disk.empty()
        done.sendall(b"QUIT\r\n")
        read_all(done, 5)
        stored = run.honeypot.wait_for(lambda: len(run.honeypot.sessions()) >= 4, 60)
        output = run.honeypot.output()
        run.report(acknowledged_before=before, while_full=got,
                   messages_stored=len(run.honeypot.messages()),
                   session_records_stored=stored and len(run.honeypot.sessions()),
                   session_records_lost=len(re.findall(
                       r"cannot save session|session record \S+ lost", output)))
    finally:
        if run is not None:
            run.stop()
        disk.remove()


def halfclose(options):
    run = Run()
    try:
        s = run.connect()
        run.sibling.start()
        s.sendall(b"EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n"
                  b"DATA\r\nSubject: half\r\n\r\nhi\r\n.\r\nQUIT\r\n")
        s.shutdown(socket.SHUT_WR)
        got = read_all(s, 5)
        [(meta, raw)] = run.honeypot.wait_for(run.honeypot.messages)
        run.report(replies=got.decode().replace("\r\n", " | ") or "(none)",
                   stored_acknowledged=meta["acknowledged"])
    finally:
        run.stop()


def crcrlf(options):
    run = Run()
    try:
        s = run.connect()
        s.sendall(b"EHLO x\r\r\nMAIL FROM:<a@b.example>\r\r\nRCPT TO:<c@d.example>\r\r\n"
                  b"NOOP\r\r\nDATA\r\r\nSubject: cr\r\r\n\r\r\nhi\r\r\n.\r\r\nQUIT\r\r\n")
        got = read_all(s, 5)
        run.report(replies=got.decode().replace("\r\n", " | "))
    finally:
        run.stop()


def flood(options):
    run = Run({"smtp": {"error_sleep_time": 0.01}})
    try:
        s = run.connect()
        s.sendall(b"NOOP\r\n" * 300)
        got = read_all(s, 5)
        counts = f"{got.count(b'250 2.0.0 Ok')} x 250, then {got[-60:].decode().strip()!r}"
        s.close()
    finally:
        run.stop()
    print(f"  300 NOOPs: {counts}")
    run = Run(NO_JUNK_LIMIT)
    try:
        s = run.connect()
        run.sibling.start()
        stop = time.monotonic() + options.seconds
        received = [0]

        def reader():
            with contextlib.suppress(OSError):
                while chunk := s.recv(65536):
                    received[0] += len(chunk)

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        with contextlib.suppress(OSError):
            while time.monotonic() < stop:
                s.sendall(b"EHLO x\r\n" * 8192)
        run.report(pipelined=f"{received[0] / 2**20:.1f} MB of replies read")
        s.close()
    finally:
        run.stop()


ATTACKS = {f.__name__: f for f in (unread, envelopes, starttls, diskfull, halfclose,
                                   crcrlf, flood)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", action="append", choices=sorted(ATTACKS))
    parser.add_argument("--seconds", type=float, default=12)
    options = parser.parse_args()
    for name in options.only or ATTACKS:
        print(name)
        ATTACKS[name](options)


if __name__ == "__main__":
    main()
