"""Hostile input over TCP against ``twistd smtplatrine``.

Besides its own replies and stored data, every test here checks on the way
out that the log has no traceback and, like the events, no raw control
character; that nothing was written outside the data directory; that the
server's memory grew by less than 20 MB; and that a second client, while
the attacker is still connected, completes a transaction within a second.

Expected replies are Postfix's: the recorded probes of a Postfix 3.7
(tests/data/postfix_replies.json) or postconf(5).  Expected data are what
was sent, hashed with hashlib.  One twistd serves all the tests of a class.
"""

import atexit
import base64
import hashlib
import io
import json
import re
import secrets
import smtplib
import socket
import threading
import time
import zipfile
from pathlib import Path

from twisted.trial import unittest

from tests.process import Honeypot, banner
from tests.test_e2e import MESSAGE, tls_context
from tests.test_parse import multipart, nested

BANNER = b"220 mail.example.com ESMTP Postfix (Debian/GNU)\r\n"
EHLO_REPLY = (b"250-mail.example.com\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n"
              b"250-VRFY\r\n250-ETRN\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n"
              b"250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n"
              b"250 CHUNKING\r\n")
AUTH_FAILED = b"535 5.7.8 Error: authentication failed: (reason unavailable)\r\n"
TOO_MANY_ERRORS = b"421 4.7.0 mail.example.com Error: too many errors\r\n"
TIMEOUT = b"421 4.4.2 mail.example.com Error: timeout exceeded\r\n"
# What the data directory may hold, and the shape of a stored attachment.
DATA_ENTRIES = re.compile(
    r"(spool|attachments|tls|raw|smtplatrine\.sqlite(-wal|-shm)?"
    r"|smtplatrine\.log(\.\d+)?|events\.jsonl(\.\d+)?)")
ATTACHMENT_PATH = re.compile(r"[0-9a-f]{2}/[0-9a-f]{64}")
# Control characters a log line or an event value must never carry raw.
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def loopback_source():
    """A source address of its own for a test client: a random address of
    127.0.0.0/8 (any port).  Tests sharing one twistd tell their sessions
    apart by address and port; a port alone is reused by later clients."""
    return (f"127.{secrets.randbelow(254) + 1}.{secrets.randbelow(254) + 1}"
            f".{secrets.randbelow(254) + 1}", 0)


class Attacker:
    """A raw connection that has read the banner; ``client`` is its own
    (address, port)."""

    def __init__(self, port, timeout=30):
        self.socket = socket.create_connection(("127.0.0.1", port), timeout,
                                               loopback_source())
        self.client = self.socket.getsockname()
        self.banner = banner(self.socket)
        self.received = b""

    def send(self, data):
        self.socket.sendall(data)

    def read_until(self, marker, timeout=30):
        """Read until *marker* arrives or the server closes; what came."""
        deadline = time.monotonic() + timeout
        while marker not in self.received and time.monotonic() < deadline:
            chunk = self.socket.recv(65536)
            if not chunk:
                break
            self.received += chunk
        return self.received

    def closed_by_server(self, timeout=30):
        """Read until the server closes; what came."""
        self.socket.settimeout(timeout)
        try:
            while chunk := self.socket.recv(65536):
                self.received += chunk
        except ConnectionResetError:
            pass
        return self.received

    def close(self):
        self.socket.close()


def files(directory):
    """Every file under *directory*, as paths relative to it."""
    return {str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file()}


def outside_data(honeypot):
    """The files of *honeypot*'s directory outside its data directory,
    but for twistd's log, which rotates."""
    return {path for path in files(honeypot.directory)
            if not re.match(r"data/|twistd\.log", path)}


def strings(value):
    """Every string in a decoded JSON value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def written_events(honeypot):
    """The events in *honeypot*'s JSON lines file so far, but for a last
    line still being written."""
    path = honeypot.data / "events.jsonl"
    text = path.read_text() if path.exists() else ""
    return [json.loads(line) for line in text.rpartition("\n")[0].splitlines()]


def as_column(data):
    """Bytes as a text column shows them: UTF-8, other bytes as \\xNN."""
    return data.decode("utf-8", "backslashreplace")


class HostileTestCase(unittest.TestCase):
    """Starts the class's twistd with its first test and stops it after its
    last; checks what the module docstring says around every test."""

    sections = {}
    _running = {}

    def setUp(self):
        cls = type(self)
        if cls not in self._running:
            honeypot = Honeypot(**self.sections)
            atexit.register(honeypot.stop)
            self._running[cls] = honeypot
        self.honeypot = self._running[cls]
        if self._testMethodName == max(n for n in dir(cls) if n.startswith("test_")):
            self.addCleanup(self._stop)
        self.outside = outside_data(self.honeypot)
        self.rss_before = self.honeypot.rss_kb()
        self.addCleanup(self.assertContained)
        self.addCleanup(self.assertEscaped)
        self.addCleanup(self.assertNoTraceback)
        self.addCleanup(self.assertBounded)
        self.attacker = self.connect()
        self.addCleanup(self.assertServes)

    def _stop(self):
        self._running.pop(type(self)).stop()

    def connect(self):
        attacker = Attacker(self.honeypot.port)
        self.addCleanup(attacker.close)
        self.assertEqual(attacker.banner, BANNER)
        return attacker

    def assertServes(self):
        """A second client completes a transaction within a second."""
        started = time.monotonic()
        with smtplib.SMTP("127.0.0.1", self.honeypot.port, timeout=5) as client:
            client.ehlo("second.example.org")
            self.assertEqual(client.sendmail("a@example.org", ["b@example.net"], MESSAGE), {})
            client.quit()
        self.assertLess(time.monotonic() - started, 1.0)

    def assertBounded(self):
        growth_kb = self.honeypot.rss_kb() - self.rss_before
        self.assertLess(growth_kb, 20 * 1024, "server memory grew by %d KB" % growth_kb)

    def assertNoTraceback(self):
        output = self.honeypot.output()
        self.assertIn("listening on tcp:", output)
        self.assertNotIn("Traceback", output)

    def assertEscaped(self):
        """Neither the log nor an event holds a raw control character."""
        log = (self.honeypot.data / "smtplatrine.log").read_text(errors="replace")
        self.assertEqual(CONTROL.findall(log + self.honeypot.output()), [])
        for event in written_events(self.honeypot):
            for value in strings(event):
                self.assertIsNone(CONTROL.search(value), value)

    def assertContained(self):
        """Files appeared only in the data directory, where they belong."""
        data = self.honeypot.data
        self.assertEqual(outside_data(self.honeypot), self.outside)
        for entry in data.iterdir():
            self.assertRegex(entry.name, DATA_ENTRIES)
        attachments = data / "attachments"
        for path in files(attachments) if attachments.exists() else ():
            self.assertRegex(path, ATTACHMENT_PATH)
        self.assertFalse(Path("/etc/cron.d/x").exists())

    def event(self, eventid, **fields):
        """The one event *eventid* with *fields*, once the output has
        written it (it flushes every second)."""
        [found] = self.honeypot.wait_for(lambda: [
            event for event in written_events(self.honeypot)
            if event["eventid"] == eventid and fields.items() <= event.items()])
        return found

    def session(self, attacker):
        """The stored record of *attacker*'s session, once it has closed."""
        [record] = self.honeypot.wait_for(lambda: self.honeypot.sessions(attacker.client))
        return record


class CommandTests(HostileTestCase):
    sections = {"smtp": {"timeout": 3, "error_sleep_time": 0.01},
                "logger": {"level": "debug"}}

    def test_100kb_command_line(self):
        """A 100 KB command is cut to 2048 bytes and answered; the next one too."""
        self.attacker.send(b"NOOP " + b"A" * 100000 + b"\r\nNOOP\r\n")
        self.assertEqual(self.attacker.read_until(b"Ok\r\n250"),
                         b"250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n")

    def test_10mb_without_line_end(self):
        """10 MB with no CRLF is skipped, not stored; the line deadline ends it."""
        chunk = b"X" * 65536
        for _ in range(160):
            self.attacker.send(chunk)
        self.assertServes()
        self.assertEqual(self.attacker.closed_by_server(), TIMEOUT)

    def test_nul_and_non_ascii(self):
        """NUL ends a command and 8-bit bytes get Postfix's UTF-8 error."""
        self.attacker.send(b"HELO \xff\xfe\r\nNO\0OP\r\nNOOP\0junk\r\n")
        self.assertEqual(self.attacker.read_until(b"250 2.0.0"), (
            b"500 5.5.2 Error: bad UTF-8 syntax\r\n"
            b"500 5.5.2 Error: command not recognized\r\n250 2.0.0 Ok\r\n"))

    def test_bare_auth(self):
        """A bare AUTH gets the syntax reply."""
        self.attacker.send(b"EHLO x\r\nAUTH\r\n")
        self.assertEqual(self.attacker.read_until(b"501"),
                         EHLO_REPLY + b"501 5.5.4 Syntax: AUTH mechanism\r\n")

    def test_starttls_injection(self):
        """Plaintext pipelined behind STARTTLS never reaches the TLS session."""
        self.attacker.send(b"EHLO x\r\n")
        self.attacker.read_until(b"CHUNKING\r\n")
        self.attacker.send(b"STARTTLS\r\nMAIL FROM:<injected@x>\r\n")
        self.assertTrue(self.attacker.read_until(b"220 2.0.0").endswith(
            b"220 2.0.0 Ready to start TLS\r\n"))
        with tls_context().wrap_socket(self.attacker.socket) as tls:
            # A new transaction, without HELO, as Postfix takes it
            # (starttls_then_mail_R in tests/data/postfix_replies.json).
            tls.sendall(b"MAIL FROM:<a@b>\r\n")
            self.assertEqual(tls.recv(1000), b"250 2.1.0 Ok\r\n")
            tls.sendall(b"QUIT\r\n")
            tls.recv(1000)
        record = self.session(self.attacker)
        self.assertIn("starttls_injection", record["flags"])
        self.assertNotIn("injected", json.dumps(record["envelopes"]))

    def test_25_unknown_commands(self):
        """25 unknown commands: 20 times 500, then 421 and a close."""
        self.attacker.send(b"FOO\r\n" * 25)
        self.assertEqual(self.attacker.closed_by_server(),
                         b"500 5.5.2 Error: command not recognized\r\n" * 20 + TOO_MANY_ERRORS)

    def test_slow_sender(self):
        """A client sending one byte every 10 s is cut off by the timeout."""
        self.attacker.send(b"N")
        started = time.monotonic()
        self.assertEqual(self.attacker.closed_by_server(timeout=10), TIMEOUT)
        self.assertLess(time.monotonic() - started, 10)

    def test_tls_port_without_client_hello(self):
        """A TLS port that never gets a ClientHello closes at the timeout."""
        with socket.create_connection(("127.0.0.1", self.honeypot.tls_port), 10) as s:
            started = time.monotonic()
            s.settimeout(20)
            try:
                self.assertEqual(s.recv(100), b"")
            except ConnectionResetError:
                pass  # Aborted: the 421 could not go out without a handshake.
            self.assertLess(time.monotonic() - started, 15)
        with smtplib.SMTP_SSL("127.0.0.1", self.honeypot.tls_port, timeout=5,
                              context=tls_context()) as client:
            self.assertEqual(client.noop()[0], 250)

    def test_log_injection(self):
        """Format strings, CRLF and ANSI escapes are logged escaped, never run."""
        self.attacker.send(b"HELO {log_logger.__class__}\x1b[31m%s%n\r\n"
                           b"MAIL FROM:<{log_format}%n@x>\r\nQUIT\r\n")
        self.assertEqual(self.attacker.closed_by_server(),
                         b"250 mail.example.com\r\n250 2.1.0 Ok\r\n221 2.0.0 Bye\r\n")
        self.session(self.attacker)
        log = (self.honeypot.data / "smtplatrine.log").read_text()
        self.assertIn("HELO {log_logger.__class__}\\x1b[31m%s%n", log)
        self.assertIn("MAIL FROM '{log_format}%n@x'", log)
        helo = self.event("smtplatrine.session.helo", src_ip=self.attacker.client[0],
                           src_port=self.attacker.client[1])
        self.assertEqual(helo["helo"], "{log_logger.__class__}\\x1b[31m%s%n")

    def test_control_bytes_in_every_field(self):
        """NUL, ESC, CR, DEL and non-UTF-8 bytes in HELO, MAIL FROM, RCPT TO,
        the AUTH user, headers and a file name: Postfix's replies, the
        message and the credentials stored exactly, the log and events
        escaped."""
        user, password = b"ro\0ot\x1b[2J\r\xff", b"pa\x1b]0;ss\r\n"
        filename = b"in\x1b[31mvoice\r.pdf"
        message = multipart(
            [b"Content-Type: application/pdf\r\nContent-Disposition: attachment;"
             b' filename="' + filename + b'"\r\n\r\n%PDF\x1b\0\xff'],
            headers=b"From: \x1b[1mboss\xff\0 <b@example.org>\r\n"
                    b"Subject: pay\x1b[5m now\r\xfe\r\n")
        self.attacker.send(
            b"EHLO evil\x1b[31m\rhost\0tail\r\n"
            b"AUTH LOGIN\r\n" + base64.b64encode(user) + b"\r\n"
            + base64.b64encode(password) + b"\r\n"
            b"MAIL FROM:<\xff@example.net>\r\n"
            b"MAIL FROM:<se\x1bnder\x7f@example.net>\0tail\r\n"
            b"RCPT TO:<rcpt@example.org>\0\xff\r\n"
            b"RCPT TO:<rc\rpt@example.org>\r\n"
            b"RCPT TO:<rc\x1bpt@example.org>\0\x1b[31m\r\n"
            b"DATA\r\n")
        # The replies but AUTH's are those a Postfix 3.7 gave to these very
        # lines; AUTH's are the recorded probe auth_login_badpass.
        self.assertEqual(self.attacker.read_until(b"354 "), (
            EHLO_REPLY + b"334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n" + AUTH_FAILED
            + b"500 5.5.2 Error: bad UTF-8 syntax\r\n250 2.1.0 Ok\r\n"
            b"500 5.5.2 Error: bad UTF-8 syntax\r\n"
            b"501 5.1.3 Bad recipient address syntax\r\n250 2.1.5 Ok\r\n"
            b"354 End data with <CR><LF>.<CR><LF>\r\n"))
        self.attacker.send(message + b".\r\nQUIT\r\n")
        self.assertIn(b"221 2.0.0 Bye\r\n", self.attacker.closed_by_server())
        [(meta, raw)] = self.honeypot.messages(self.attacker.client)
        self.assertEqual(hashlib.sha256(raw).hexdigest(), hashlib.sha256(message).hexdigest())
        self.assertEqual((meta["mail_from"], meta["rcpts"]),
                         ("se\x1bnder\x7f@example.net", ["rc\x1bpt@example.org"]))
        record = self.session(self.attacker)
        self.assertEqual(record["helo"], "evil\x1b[31m\rhost")
        [auth] = record["auth"]
        self.assertEqual((auth["username"], auth["password"]),
                         (as_column(user), as_column(password)))
        [attachment] = self.honeypot.query(
            "SELECT a.* FROM honeypot_attachments a JOIN honeypot_emails e"
            " USING (message_id) WHERE e.client_ip = ? AND e.client_port = ?",
            *self.attacker.client)
        self.assertEqual(attachment["filename"], filename.decode())
        self.assertEqual(attachment["sha256"], hashlib.sha256(b"%PDF\x1b\0\xff").hexdigest())
        log = (self.honeypot.data / "smtplatrine.log").read_text()
        self.assertIn("EHLO evil\\x1b[31m\\rhost", log)
        # The log shows escaped values' repr: each backslash doubled.
        self.assertIn(r"username='ro\\x00ot\\x1b[2J\\r\\xff'", log)
        self.assertIn(r"MAIL FROM 'se\\x1bnder\\x7f@example.net'", log)
        stored = self.event("smtplatrine.attachment.stored", message=meta["message"])
        self.assertEqual(stored["filename"], "in\\x1b[31mvoice\\r.pdf")
        rcpt = self.event("smtplatrine.rcpt", src_ip=self.attacker.client[0],
                           src_port=self.attacker.client[1])
        self.assertEqual(rcpt["rcpt"], "rc\\x1bpt@example.org")

    def test_sql_injection_strings(self):
        """SQL in HELO, the envelope, AUTH and headers gets Postfix's
        replies and is stored as text."""
        quote = "x'); DROP TABLE honeypot_emails;--"
        subject = "' OR '1'='1'; DELETE FROM honeypot_sessions; --"
        self.attacker.send(
            b"EHLO " + quote.encode() + b"\r\n"
            b"AUTH PLAIN " + base64.b64encode(b"\0" + quote.encode() + b"\0\" OR 1=1 --")
            + b"\r\nMAIL FROM:<x'OR'1'='1@example.net>\r\n"
            b"RCPT TO:<admin'--@example.org>\r\nDATA\r\n")
        self.assertEqual(self.attacker.read_until(b"354 "), (
            EHLO_REPLY + AUTH_FAILED + b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
            b"354 End data with <CR><LF>.<CR><LF>\r\n"))
        message = b"Subject: " + subject.encode() + b"\r\n\r\n" + quote.encode() + b"\r\n"
        self.attacker.send(message + b".\r\nQUIT\r\n")
        self.attacker.closed_by_server()
        [(meta, raw)] = self.honeypot.messages(self.attacker.client)
        self.assertEqual(raw, message)
        self.assertEqual((meta["mail_from"], meta["rcpts"]),
                         ("x'OR'1'='1@example.net", ["admin'--@example.org"]))
        [row] = self.honeypot.query("SELECT header_subject FROM honeypot_emails"
                                    " WHERE message_id = ?", meta["message"])
        self.assertEqual(row["header_subject"], subject)
        record = self.session(self.attacker)
        self.assertEqual(record["helo"], quote)
        self.assertEqual([(a["username"], a["password"]) for a in record["auth"]],
                         [(quote, "\" OR 1=1 --")])

    def test_1500_recipients(self):
        """1,500 recipients: 1,000 accepted, 500 refused with 452 and no
        hang-up, as a Postfix 3.7 answered (postconf(5):
        smtpd_recipient_limit and smtpd_recipient_overshoot_limit are
        1000); the message is stored with the 1,000."""
        rcpts = [f"victim{i}@example.org" for i in range(1500)]
        self.attacker.send(b"EHLO x\r\nMAIL FROM:<spam@example.net>\r\n"
                           + b"".join(f"RCPT TO:<{r}>\r\n".encode() for r in rcpts)
                           + b"DATA\r\n")
        self.assertEqual(self.attacker.read_until(b"354 "), (
            EHLO_REPLY + b"250 2.1.0 Ok\r\n" + b"250 2.1.5 Ok\r\n" * 1000
            + b"452 4.5.3 Error: too many recipients\r\n" * 500
            + b"354 End data with <CR><LF>.<CR><LF>\r\n"))
        self.attacker.send(b"Subject: many\r\n\r\nhi\r\n.\r\n")
        self.assertIn(b"queued as", self.attacker.read_until(b"queued as"))
        [(meta, raw)] = self.honeypot.messages(self.attacker.client)
        self.assertEqual(raw, b"Subject: many\r\n\r\nhi\r\n")
        self.assertEqual(sorted(meta["rcpts"]), sorted(rcpts[:1000]))

    def test_1000_auth_attempts(self):
        """1,000 AUTH attempts over 50 connections, 10 at a time: each
        connection gets 20 failures and the 421 of the error limit; every
        attempt is stored with its user name and password."""
        sent, replies = {}, []

        def brute_force(first):
            for connection in range(first, first + 5):
                attack(connection)

        def attack(connection):
            attacker = Attacker(self.honeypot.port)
            try:
                lines = []
                for i in range(20):
                    credentials = (f"user{connection}-{i}", f"pw'{i}\"%n")
                    sent.setdefault(attacker.client, []).append(credentials)
                    plain = "\0{}\0{}".format(*credentials).encode()
                    lines.append(b"AUTH PLAIN " + base64.b64encode(plain) + b"\r\n")
                attacker.send(b"EHLO brute\r\n" + b"".join(lines))
                replies.append(attacker.closed_by_server())
            finally:
                attacker.close()

        threads = [threading.Thread(target=brute_force, args=(n * 5,)) for n in range(10)]
        for thread in threads:
            thread.start()
        self.assertServes()
        for thread in threads:
            thread.join(60)
        self.assertEqual(replies, [EHLO_REPLY + AUTH_FAILED * 20 + TOO_MANY_ERRORS] * 50)
        for client, credentials in sent.items():
            [record] = self.honeypot.wait_for(lambda: self.honeypot.sessions(client))
            self.assertEqual([(a["username"], a["password"]) for a in record["auth"]],
                             credentials)

    def test_megabyte_line_in_data(self):
        """A 1 MB line in DATA and command-like lines after it stay in the message."""
        body = b"Subject: long\r\n\r\n" + b"L" * 1000000 + b"\r\nQUIT\r\nRSET\r\n"
        self.attacker.send(b"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n")
        self.attacker.read_until(b"354 ")
        self.attacker.send(body + b".\r\n")
        self.assertIn(b"queued as", self.attacker.read_until(b"queued as"))
        [(meta, raw)] = self.honeypot.messages(self.attacker.client)
        self.assertEqual(raw, body)
        self.assertIn("long_line", meta["flags"])

    def test_smuggling_variants(self):
        """\\n.\\n ends DATA as in Postfix 3.7.11: the MAIL after it is a
        command; \\r.\\r stays in the next message; both are flagged."""
        self.attacker.send(b"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n")
        self.attacker.read_until(b"354 ")
        self.attacker.send(b"Subject: s\r\n\r\na\n.\nMAIL FROM:<x@y>\r\nRCPT TO:<z@w>\r\n"
                           b"DATA\r\nd\r.\re\r\n.\r\nQUIT\r\n")
        replies = self.attacker.read_until(b"221 ")
        self.assertEqual(replies.count(b"queued as"), 2)
        first, second = self.honeypot.messages(self.attacker.client)
        self.assertEqual((first[1], second[1]), (b"Subject: s\r\n\r\na\n", b"d\r.\re\r\n"))
        self.assertIn("smuggling", first[0]["flags"])
        self.assertEqual(second[0]["mail_from"], "x@y")


def zip_bomb(megabytes):
    """A zip archive of *megabytes* MB of zeros, deflated to a few KB."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        with z.open("zeros.bin", "w") as member:
            for _ in range(megabytes):
                member.write(bytes(1 << 20))
    return archive.getvalue()


def attached(name_parameters, payload, content_type=b"application/octet-stream"):
    """A base64 attachment part with *name_parameters* on its disposition."""
    return (b"Content-Type: " + content_type + b"\r\nContent-Transfer-Encoding: base64\r\n"
            b"Content-Disposition: attachment; " + name_parameters + b"\r\n\r\n"
            + base64.encodebytes(payload).replace(b"\n", b"\r\n"))


class MIMETests(HostileTestCase):

    def send(self, *messages):
        """Send *messages* in one session, each answered as Postfix queues
        a message; the client's (address, port)."""
        with smtplib.SMTP("127.0.0.1", self.honeypot.port, timeout=30,
                          source_address=loopback_source()) as client:
            address = client.sock.getsockname()
            client.ehlo("bomber.example.net")
            for message in messages:
                client.mail("bomber@example.net")
                client.rcpt("victim@example.org")
                code, text = client.data(message)
                self.assertEqual(code, 250)
                self.assertRegex(text, rb"\A2\.0\.0 Ok: queued as [0-9A-F]{11}\Z")
            client.quit()
        return address

    def attachments(self, client):
        """The stored attachments of *client*, an (address, port), in order."""
        self.honeypot.messages(client)
        return self.honeypot.query(
            "SELECT a.* FROM honeypot_attachments a JOIN honeypot_emails e"
            " USING (message_id) WHERE e.client_ip = ? AND e.client_port = ?"
            " ORDER BY position", *client)

    def assertStoredFile(self, sha256, payload):
        stored = self.honeypot.data / "attachments" / sha256[:2] / sha256
        self.assertEqual(stored.read_bytes(), payload)

    def test_mime_bombs_stored_with_flags(self):
        """Deep nesting, 100,000 parts, 16,000 encoded words and broken base64
        are each stored byte-exact with what could be read and a flag."""
        bombs = {
            "deep": (nested(5000), "depth_limit"),
            "wide": (multipart([b"Content-Type: image/gif\r\n"] * 100_000,
                               headers=b"Subject: wide\r\n"), "part_limit"),
            "words": (b"Subject: " + b" ".join([b"=?utf-8?q?a?="] * 16_000)
                      + b"\r\n\r\nbody\r\n", "encoded_word_limit"),
            "base64": (multipart([b"Content-Type: application/pdf\r\n"
                                  b"Content-Transfer-Encoding: base64\r\n\r\nSGVs*bG8g"],
                                 headers=b"Subject: base64\r\n"), "base64_error"),
        }
        client = self.send(*(raw for raw, _ in bombs.values()))
        self.assertEqual(len(self.honeypot.messages(client)), 4)
        rows = {r["sha256"]: json.loads(r["defects"]) for r in self.honeypot.query(
            "SELECT sha256, defects FROM honeypot_emails"
            " WHERE client_ip = ? AND client_port = ?", *client)}
        for raw, flag in bombs.values():
            self.assertIn(flag, rows[hashlib.sha256(raw).hexdigest()])
        gifs = [a for a in self.attachments(client) if a["content_type"] == "image/gif"]
        self.assertEqual(len(gifs), 1000)

    def test_path_traversal_names(self):
        """Attachment names with ../, C:\\..\\, NUL and RFC 2231 encoding
        are kept as names only: each file lands under its SHA-256."""
        payloads = [b"cron %d\n" % i for i in range(4)]
        message = multipart([
            attached(b'filename="../../etc/cron.d/x"', payloads[0]),
            attached(b'filename="C:\\\\..\\\\x"', payloads[1]),
            attached(b'filename="a\0b.txt"', payloads[2]),
            attached(b"filename*=utf-8''..%2F..%2Fetc%2Fcron.d%2Fx", payloads[3]),
        ])
        rows = self.attachments(self.send(message))
        # RFC 2045 quoted string: \\ is one backslash; NUL is not kept.
        self.assertEqual([r["filename"] for r in rows], [
            "../../etc/cron.d/x", "C:\\..\\x", "a\ufffdb.txt", "../../etc/cron.d/x"])
        for row, payload in zip(rows, payloads):
            self.assertEqual(row["sha256"], hashlib.sha256(payload).hexdigest())
            self.assertStoredFile(row["sha256"], payload)

    def test_zip_bomb(self):
        """A zip of 64 MB of zeros is stored as the archive it is, never
        expanded."""
        bomb = zip_bomb(64)
        self.assertLess(len(bomb), 100 * 1024)
        message = multipart([attached(b'filename="invoice.zip"', bomb, b"application/zip")])
        [row] = self.attachments(self.send(message))
        self.assertEqual((row["filename"], row["content_type"], row["size"], row["sha256"]),
                         ("invoice.zip", "application/zip", len(bomb),
                          hashlib.sha256(bomb).hexdigest()))
        self.assertStoredFile(row["sha256"], bomb)
