"""What hurt the SMTP side, over TCP against ``twistd smtplatrine``, answered
as a Postfix 3.7 answers it.

Each attack of issue 19 that has a reply is a probe recorded from a private
Postfix 3.7.11 (tests/data/record_postfix.py, tests/data/postfix_replies.json)
and replayed here byte for byte: what the probe sent is sent, and what
comes back must be what Postfix sent back.  The after-every-test checks of
tests/test_hostile.py apply: no traceback, no raw control character in the
log, nothing outside the data directory, memory grown by less than 20 MB,
and a second client served within a second while the attacker is connected.
The Postfix variant recorded is stock (no AUTH), so these servers have AUTH
off.
"""

import contextlib
import json
import smtplib
import socket
import threading
import time

from tests.process import SmallFileSystem
from tests.test_e2e import tls_context
from tests.test_hostile import HostileTestCase, loopback_source
from tests.test_persona import PROBES, normalise

PROBE = {probe["name"]: probe for probe in PROBES}
NO_AUTH = {"auth": "false"}
# The steps of a probe that sent nothing but did something.
FILLED, SHUT, TLS = "<queue file system filled>", "<SHUT_WR>", "<TLS handshake>"


def replies(name, step):
    """The replies Postfix gave at *step* of the probe *name*."""
    return PROBE[name]["exchange"][step][1].encode("latin-1")


def read_bytes(sock, count, timeout=30):
    """Read *count* bytes from *sock*, or what came before it closed."""
    data, deadline = b"", time.monotonic() + timeout
    sock.settimeout(timeout)
    with contextlib.suppress(ConnectionResetError):
        while len(data) < count and time.monotonic() < deadline:
            chunk = sock.recv(count - len(data))
            if not chunk:
                break
            data += chunk
    return data


class ProbeTestCase(HostileTestCase):
    """Replays recorded probes on the attacker's connection."""

    def replay(self, name, fill=None):
        """Send each step of the probe *name* and read as many bytes as
        Postfix answered; the replies must be Postfix's, and the server
        must close where Postfix closed.  *fill* fills the file system
        where the probe did."""
        probe = PROBE[name]
        sock = self.attacker.socket
        got, expected = [], []
        for sent, reply in probe["exchange"][1:]:
            if sent == FILLED:
                fill()
                continue
            if sent == SHUT:
                sock.shutdown(socket.SHUT_WR)
                data = self.attacker.closed_by_server()
                self.attacker.received = b""
            else:
                self.attacker.send(sent.encode("latin-1"))
                data = read_bytes(sock, len(reply))
            got.append(normalise(data.decode("latin-1")))
            expected.append(normalise(reply))
        self.assertEqual(got, expected)
        if probe["server_closed"]:
            self.assertEqual(self.attacker.closed_by_server(), b"")


class FramingTests(ProbeTestCase):
    """Half-closed clients, CR CR LF line ends and junk commands."""

    sections = {"smtp": {"error_sleep_time": 0.01}, "smtp_features": NO_AUTH}

    def test_half_close_transaction(self):
        """A whole transaction, QUIT and shutdown(SHUT_WR): every command
        is answered as Postfix answered it, and the message is stored as
        acknowledged."""
        self.replay("half_close_transaction")
        [(meta, raw)] = self.honeypot.messages(self.attacker.client)
        self.assertEqual(raw, b"Subject: test\r\n\r\nHello world.\r\n")
        self.assertTrue(meta["acknowledged"])

    def test_half_close_without_quit(self):
        """Two commands and half a line, then SHUT_WR: both answered, the
        half line dropped, the connection closed, as by Postfix."""
        self.replay("half_close_without_quit")
        self.assertEqual(self.session(self.attacker)["transcript"][-1][1:],
                         ["S", "250 2.0.0 Ok"])

    def test_half_close_in_data(self):
        """SHUT_WR in the middle of DATA: no reply to the half message, as
        from Postfix; it is kept, unacknowledged and incomplete."""
        self.replay("half_close_in_data")
        # The message is kept as the connection closes, before its session.
        self.assertIn("incomplete_message", self.session(self.attacker)["flags"])
        [(meta, raw)] = self.honeypot.messages(self.attacker.client)
        self.assertEqual((meta["acknowledged"], raw),
                         (False, b"Subject: half\r\n\r\npartial\r\n"))

    def test_cr_cr_lf_session(self):
        """Every line ending in CR CR LF, the end of DATA too: Postfix's
        replies, and the message stored as sent."""
        self.replay("cr_cr_lf_session")
        [(meta, raw)] = self.honeypot.messages(self.attacker.client)
        self.assertEqual(raw, b"Subject: cr\r\r\n\r\r\nhello\r\r\n")
        self.assertTrue(meta["acknowledged"])
        record = self.session(self.attacker)
        self.assertEqual(record["helo"], "client.example.org")
        self.assertIn("extra_cr", record["flags"])

    def test_cr_cr_lf_bare(self):
        """An empty line ending in CR CR LF is a syntax error, not a
        forbidden command, and EHLO x CR CR LF is an EHLO."""
        self.replay("cr_cr_lf_bare")

    def test_dot_cr_cr_lf_ends_data(self):
        """CRLF . CR CR LF ends DATA, as in Postfix; what follows is a command."""
        self.replay("data_dot_cr_cr_lf")
        [(_, raw)] = self.honeypot.messages(self.attacker.client)
        self.assertEqual(raw, b"Subject: s\r\n\r\nhi\r\n")

    def test_300_noops(self):
        """300 NOOPs: 121 answered 250, then 421, as Postfix's
        smtpd_junk_command_limit of 100 and hard error limit of 20 do."""
        self.replay("noop_300")
        closed = self.event("smtplatrine.session.closed", src_ip=self.attacker.client[0],
                            src_port=self.attacker.client[1])
        self.assertEqual(closed["reason"], "too_many_errors")

    def test_junk_commands_mixed(self):
        """RSET, VRFY, ETRN and NOOP in one write, thirty times: Postfix's
        replies up to its 421."""
        self.replay("junk_commands_mixed")

    def test_ehlo_junk_limit(self):
        """HELO and EHLO count as junk too: the 121st EHLO is the last."""
        self.replay("ehlo_junk_limit")

    def test_delivery_resets_junk_count(self):
        """A queued message starts the junk count again, as in Postfix."""
        self.replay("junk_then_delivery")


class ErrorSleepTests(ProbeTestCase):
    """The error sleep of one second, as configured by default."""

    sections = {"smtp_features": NO_AUTH}

    def test_starttls_injection_during_error_sleep(self):
        """Plaintext sent while the 220 to STARTTLS waits out the error
        sleep is never run as SMTP: it reaches the TLS engine, which refuses
        it, as in Postfix (probe starttls_injection_error_sleep), and the
        session is flagged starttls_injection."""
        name = "starttls_injection_error_sleep"
        exchange = PROBE[name]["exchange"]
        sock = self.attacker.socket
        for sent, reply in exchange[1:12]:
            self.attacker.send(sent.encode("latin-1"))
            self.assertEqual(read_bytes(sock, len(reply)), reply.encode("latin-1"))
        self.assertEqual(exchange[12], ["STARTTLS\r\n", ""])
        self.attacker.send(b"STARTTLS\r\n")
        time.sleep(0.3)
        injected, ready = exchange[13]
        self.attacker.send(injected.encode("latin-1"))
        self.assertEqual(read_bytes(sock, len(ready)), ready.encode("latin-1"))
        self.assertEqual(exchange[14][0], TLS)
        self.assertIn("TLS handshake failed", PROBE[name]["notes"][1])
        with self.assertRaises(OSError):
            tls_context().wrap_socket(sock)
        record = self.session(self.attacker)
        self.assertIn("starttls_injection", record["flags"])
        self.assertNotEqual(record["helo"], "injectedhelo")
        self.assertNotIn("injected", json.dumps(record["envelopes"]))


class FloodTests(ProbeTestCase):
    """Floods that no Postfix limit ends here: the junk command limit is
    out of their way."""

    sections = {"smtp": {"junk_command_limit": 10**9}, "smtp_features": NO_AUTH}

    def test_replies_nobody_reads(self):
        """4 MB of pipelined EHLO from a client that reads nothing: the
        server stops reading once its replies back up, so its memory stays
        bounded, and the replies, once read, are Postfix's."""
        sock = self.attacker.socket
        flood = b"EHLO x\r\n" * (2**22 // 8)
        sender = threading.Thread(target=self.send_until_closed, args=(sock, flood))
        started = time.monotonic()
        sender.start()
        sender.join(5)
        # As long as the server would need to answer what it could read.
        time.sleep(max(0.0, started + 5 - time.monotonic()))
        growth_kb = self.honeypot.rss_kb() - self.rss_before
        self.assertLess(growth_kb, 20 * 1024, "server memory grew by %d KB" % growth_kb)
        self.assertServes()
        ehlo = replies("ehlo_twice", 1)
        self.assertEqual(read_bytes(sock, 1000 * len(ehlo)), 1000 * ehlo)
        self.addCleanup(sender.join, 30)
        self.addCleanup(sock.shutdown, socket.SHUT_RDWR)

    @staticmethod
    def send_until_closed(sock, data):
        with contextlib.suppress(OSError):
            sock.sendall(data)

    def test_pipelined_flood_shares_the_server(self):
        """A client pipelining EHLO as fast as it reads the replies: a
        second client's transaction still takes less than a second."""
        sock = self.attacker.socket
        stop = threading.Event()
        received = []

        def flood():
            with contextlib.suppress(OSError):
                while not stop.is_set():
                    sock.sendall(b"EHLO x\r\n" * 8192)

        def read():
            with contextlib.suppress(OSError):
                while chunk := sock.recv(65536):
                    received.append(len(chunk))

        threads = [threading.Thread(target=flood), threading.Thread(target=read)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(1)
            for _ in range(5):
                self.assertServes()
        finally:
            stop.set()
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            for thread in threads:
                thread.join(30)
        self.assertGreater(sum(received), 10 * len(replies("ehlo_twice", 1)))

    def test_envelope_loop(self):
        """MAIL with a 2 KB address, 1,000 RCPT of 2 KB and RSET, fifteen
        times, every reply read: Postfix's replies each time (probe
        envelope_loop_2kb, which sent ten RCPTs a round), and the session
        record keeps envelopes up to envelope_bytes_limit, counts the rest
        and is flagged envelopes_truncated."""
        exchange = PROBE["envelope_loop_2kb"]["exchange"]
        (ehlo, ehlo_reply), (mail, mail_reply), (rcpts, rcpt_replies), (rset, rset_reply) = (
            [sent.encode("latin-1"), reply.encode("latin-1")] for sent, reply in exchange[1:5])
        # The probe's recipients, numbered on to 1,000; each answered alike.
        rcpt, rcpt_reply = rcpts.split(b"\r\n")[0], rcpt_replies.split(b"\r\n")[0]
        self.assertEqual(rcpt_replies, (rcpt_reply + b"\r\n") * 10)
        rcpts = b"".join(rcpt.replace(b"+0000", b"+%04d" % n) + b"\r\n" for n in range(1000))
        sock = self.attacker.socket
        self.attacker.send(ehlo)
        self.assertEqual(read_bytes(sock, len(ehlo_reply)), ehlo_reply)
        loops = 15
        for _ in range(loops):
            for sent, reply in ((mail, mail_reply), (rcpts, (rcpt_reply + b"\r\n") * 1000),
                                (rset, rset_reply)):
                self.attacker.send(sent)
                self.assertEqual(read_bytes(sock, len(reply)), reply)
        self.attacker.send(b"QUIT\r\n")
        self.attacker.closed_by_server()
        record = self.session(self.attacker)
        self.assertIn("envelopes_truncated", record["flags"])
        kept = sum(len(e["mail_from"]) + sum(map(len, e["rcpts"]))
                   for e in record["envelopes"])
        # Within envelope_bytes_limit (the default), and not one recipient short.
        self.assertLessEqual(kept, 524288)
        self.assertGreater(kept, 524288 - len(rcpt))
        closed = self.event("smtplatrine.session.closed", src_ip=self.attacker.client[0],
                            src_port=self.attacker.client[1])
        self.assertEqual(len(record["envelopes"]) + closed["envelopes_dropped"], loops)
        self.assertEqual(sum(len(e["rcpts"]) for e in record["envelopes"])
                         + closed["recipients_dropped"], loops * 1000)


class DiskFullTests(ProbeTestCase):
    """The data directory on a 64 MB tmpfs, filled by the tests."""

    disk = None

    def setUp(self):
        cls = type(self)
        if cls.disk is None:
            cls.disk = SmallFileSystem("64m")
            cls.sections = {"server": {"data_dir": cls.disk.path / "data"},
                            "smtp_features": NO_AUTH}
        super().setUp()
        # The checks after the test need room again.
        self.addCleanup(self.disk.empty)

    def _stop(self):
        super()._stop()
        self.disk.remove()
        type(self).disk = None

    def filled(self, name):
        """Replay the probe *name* on a new connection, filling the file
        system where the probe did, after leaving Postfix's room for MAIL
        (1.5 times message_size_limit) until then; the client's address."""
        self.disk.fill(leave=16 * 2**20)
        self.attacker.close()
        self.attacker = self.connect()
        self.replay(name, fill=self.disk.fill)
        self.disk.empty()
        return self.attacker.client

    def test_disk_full(self):
        """A full disk: 452 at MAIL, 451 after DATA or the last BDAT chunk,
        as Postfix answered; a message acknowledged before stays; the
        sessions of that time are kept and stored once there is room."""
        with smtplib.SMTP("127.0.0.1", self.honeypot.port, timeout=30,
                          source_address=loopback_source()) as client:
            before = client.sock.getsockname()
            client.ehlo("before.example.org")
            self.assertEqual(client.sendmail("a@b.example", ["c@d.example"],
                                             b"Subject: before\r\n\r\nkept\r\n"), {})
        clients = [self.filled(name)
                   for name in ("mail_queue_full", "data_queue_full", "bdat_queue_full")]
        outcomes = [[e["outcome"] for e in self.honeypot.wait_for(
            lambda: self.honeypot.sessions(client), timeout=60)[0]["envelopes"]]
            for client in clients]
        self.assertEqual(outcomes, [[], ["spool_error"], ["spool_error"]])
        [(meta, raw)] = self.honeypot.messages(before)
        self.assertEqual((meta["acknowledged"], raw), (True, b"Subject: before\r\n\r\nkept\r\n"))
        for client in clients:
            self.assertEqual(self.honeypot.messages(client), [])
        spool = self.honeypot.data / "spool" / "messages"
        self.assertEqual([p for p in spool.glob("*.eml") if p.stat().st_size], [])

