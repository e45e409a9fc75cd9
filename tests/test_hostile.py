"""Hostile input over TCP: Postfix's reply or a clean close, bounded memory,
no traceback, and a second client served meanwhile."""

import json
import smtplib
import socket
import time

from tests.test_e2e import MESSAGE, HoneypotTestCase, tls_context


class Attacker:
    """A raw connection that has read the banner."""

    def __init__(self, port):
        self.socket = socket.create_connection(("127.0.0.1", port), 30)
        self.received = b""
        self.read_until(b"\r\n")
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
        self.socket.settimeout(timeout)
        try:
            while chunk := self.socket.recv(65536):
                self.received += chunk
        except ConnectionResetError:
            pass
        return True

    def close(self):
        self.socket.close()


class HostileInputTests(HoneypotTestCase):
    sections = {"smtp": {"timeout": 3, "error_sleep_time": 0.1},
                "logger": {"level": "debug"}}

    def setUp(self):
        super().setUp()
        self.rss_before = self.honeypot.rss_kb()
        self.attacker = Attacker(self.honeypot.port)
        self.addCleanup(self.attacker.close)
        self.addCleanup(self.assertBounded)
        self.addCleanup(self.assertServes)

    def assertBounded(self):
        growth_kb = self.honeypot.rss_kb() - self.rss_before
        self.assertLess(growth_kb, 20 * 1024, "server memory grew by %d KB" % growth_kb)

    def assertServes(self):
        """A second client completes a transaction while the attacker is there."""
        client = smtplib.SMTP("127.0.0.1", self.honeypot.port, timeout=5)
        try:
            client.ehlo("second.example.org")
            client.sendmail("a@example.org", ["b@example.net"], MESSAGE)
            client.quit()
        finally:
            client.close()

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
        self.attacker.closed_by_server()
        self.assertEqual(self.attacker.received,
                         b"421 4.4.2 mail.example.com Error: timeout exceeded\r\n")

    def test_nul_and_non_ascii(self):
        """NUL ends a command and 8-bit bytes get Postfix's UTF-8 error."""
        self.attacker.send(b"HELO \xff\xfe\r\nNO\0OP\r\nNOOP\0junk\r\n")
        self.assertEqual(self.attacker.read_until(b"250 2.0.0"), (
            b"500 5.5.2 Error: bad UTF-8 syntax\r\n"
            b"500 5.5.2 Error: command not recognized\r\n250 2.0.0 Ok\r\n"))

    def test_bare_auth(self):
        """A bare AUTH gets the syntax reply."""
        self.attacker.send(b"EHLO x\r\nAUTH\r\n")
        self.assertTrue(self.attacker.read_until(b"501").endswith(
            b"501 5.5.4 Syntax: AUTH mechanism\r\n"))

    def test_starttls_injection(self):
        """Plaintext pipelined behind STARTTLS never reaches the TLS session."""
        self.attacker.send(b"EHLO x\r\n")
        self.attacker.read_until(b"CHUNKING\r\n")
        self.attacker.send(b"STARTTLS\r\nMAIL FROM:<injected@x>\r\n")
        self.assertTrue(self.attacker.read_until(b"220 2.0.0").endswith(
            b"220 2.0.0 Ready to start TLS\r\n"))
        with tls_context().wrap_socket(self.attacker.socket) as tls:
            tls.sendall(b"MAIL FROM:<a@b>\r\n")
            self.assertEqual(tls.recv(1000), b"503 5.5.1 Error: send HELO/EHLO first\r\n")
            tls.sendall(b"QUIT\r\n")
            tls.recv(1000)
        [record] = self.honeypot.wait_for(self.honeypot.sessions)
        self.assertIn("starttls_injection", record["flags"])
        self.assertNotIn("injected", json.dumps(record["envelopes"]))

    def test_25_unknown_commands(self):
        """25 unknown commands: 20 times 500, then 421 and a close."""
        self.attacker.send(b"FOO\r\n" * 25)
        self.attacker.closed_by_server()
        replies = self.attacker.received.split(b"\r\n")
        self.assertEqual(replies[:20], [b"500 5.5.2 Error: command not recognized"] * 20)
        self.assertEqual(replies[20:], [b"421 4.7.0 mail.example.com Error: too many errors",
                                        b""])

    def test_megabyte_line_in_data(self):
        """A 1 MB line in DATA and command-like lines after it stay in the message."""
        body = b"Subject: long\r\n\r\n" + b"L" * 1000000 + b"\r\nQUIT\r\nRSET\r\n"
        self.attacker.send(b"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n")
        self.attacker.read_until(b"354 ")
        self.attacker.send(body + b".\r\n")
        self.assertIn(b"queued as", self.attacker.read_until(b"queued as"))
        [(meta, raw)] = self.honeypot.messages()
        self.assertEqual(raw, body)
        self.assertIn("long_line", meta["flags"])

    def test_smuggling_variants(self):
        """\\n.\\n, \\n.\\r\\n, \\r\\n.\\n and \\r.\\r do not end DATA."""
        body = (b"Subject: s\r\n\r\na\n.\nMAIL FROM:<x@y>\r\nb\n.\r\nRCPT TO:<z@w>\r\n"
                b"c\r\n.\nDATA\r\nd\r.\re\r\n")
        self.attacker.send(b"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n")
        self.attacker.read_until(b"354 ")
        self.attacker.send(body + b".\r\nQUIT\r\n")
        replies = self.attacker.read_until(b"221 ")
        self.assertEqual(replies.count(b"queued as"), 1)
        self.assertNotIn(b"2.1.0", replies.split(b"354 ")[1])
        [(meta, raw)] = self.honeypot.messages()
        # The line ".\nDATA" starts with a dot, which is unstuffed.
        self.assertEqual(raw, body.replace(b"c\r\n.\nDATA", b"c\r\n\nDATA"))
        self.assertIn("smuggling", meta["flags"])

    def test_slow_sender(self):
        """A client sending one byte every 10 s is cut off by the timeout."""
        self.attacker.send(b"N")
        started = time.monotonic()
        self.attacker.closed_by_server(timeout=10)
        self.assertLess(time.monotonic() - started, 10)
        self.assertEqual(self.attacker.received,
                         b"421 4.4.2 mail.example.com Error: timeout exceeded\r\n")

    def test_log_injection(self):
        """Format strings, CRLF and ANSI escapes are logged escaped, never run."""
        self.attacker.send(b"HELO {log_logger.__class__}\x1b[31m%s%n\r\n"
                           b"MAIL FROM:<{log_format}%n@x>\r\nQUIT\r\n")
        self.attacker.closed_by_server()
        log = (self.honeypot.data / "smtplatrine.log").read_text()
        self.assertIn("HELO {log_logger.__class__}\\x1b[31m%s%n", log)
        self.assertIn("MAIL FROM '{log_format}%n@x'", log)
        self.assertNotIn("\x1b", log + self.honeypot.output())
        events = self.honeypot.wait_for(
            lambda: (self.honeypot.data / "events.jsonl").read_text())
        self.assertNotIn("\x1b", events)
        helo = [json.loads(line) for line in events.splitlines()
                if '"smtplatrine.session.helo"' in line]
        self.assertEqual(helo[0]["helo"], "{log_logger.__class__}\\x1b[31m%s%n")


class ImplicitTLSSilenceTests(HoneypotTestCase):
    sections = {"smtp": {"timeout": 2}}

    def test_no_client_hello(self):
        """A TLS port that never gets a ClientHello closes at the timeout."""
        with socket.create_connection(("127.0.0.1", self.honeypot.tls_port), 10) as s:
            s.settimeout(10)
            started = time.monotonic()
            s.settimeout(20)
            try:
                self.assertEqual(s.recv(100), b"")
            except ConnectionResetError:
                pass  # Aborted: the 421 could not go out without a handshake.
            self.assertLess(time.monotonic() - started, 15)
        client = smtplib.SMTP_SSL("127.0.0.1", self.honeypot.tls_port, timeout=5,
                                  context=tls_context())
        self.assertEqual(client.noop()[0], 250)
        client.close()
