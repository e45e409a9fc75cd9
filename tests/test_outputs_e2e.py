"""End to end: ``twistd smtplatrine`` with outputs and metrics; mail over
TCP; what a syslog collector and a Prometheus scrape see."""

import json
import shutil
import os
import signal
import smtplib
import socket
import socketserver
import threading
import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from twisted.trial import unittest

from smtplatrine.events import FLAT
from tests.process import free_port, run_twistd, reachable_directory, write_config
from tests.receivers import RFC5424
from tests.test_e2e import HoneypotTestCase, tls_context

MESSAGE = b"From: a@example.org\r\nTo: b@example.net\r\nSubject: metrics\r\n\r\nhello\r\n"


class _Collector(socketserver.ThreadingTCPServer):
    """A syslog collector (TCP, octet counting) in a thread of its own."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        self.messages = []

        class Handler(socketserver.StreamRequestHandler):
            def handle(handler):
                while True:
                    length = b""
                    while (byte := handler.rfile.read(1)) not in (b" ", b""):
                        length += byte
                    if not length:
                        return
                    self.messages.append(handler.rfile.read(int(length)))

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def events(self):
        return [json.loads(RFC5424.fullmatch(m)["msg"]) for m in list(self.messages)]


def _collector(testcase):
    collector = _Collector()
    testcase.addCleanup(collector.server_close)
    testcase.addCleanup(collector.shutdown)
    return collector


class EventsToCollectorTests(HoneypotTestCase):

    def setUp(self):
        self.collector = _collector(self)
        self.sections = {"output_syslog": {
            "enabled": "true", "transport": "tcp",
            "address": f"127.0.0.1:{self.collector.server_address[1]}"}}
        super().setUp()

    def test_events_of_both_processes_arrive(self):
        """The SMTP side's events (connect to close) and the storing
        process's (stored) reach the collector, flat, as in events.jsonl."""
        client = self.smtp()
        client.sendmail("a@example.org", ["b@example.net"], MESSAGE)
        client.quit()
        self.honeypot.wait_for(lambda: {"smtplatrine.message.stored",
                                        "smtplatrine.session.stored"}
                               <= {e["eventid"] for e in self.collector.events()})
        session = [e for e in self.collector.events()
                   if e["eventid"] == "smtplatrine.message.stored"][0]["session"]
        mine = [e for e in self.collector.events() if e["session"] == session]
        ids = [e["eventid"] for e in mine]
        # The storing process stores the message and the session in any order.
        self.assertEqual((ids[:6], sorted(ids[6:])), ([
            "smtplatrine.session.connect", "smtplatrine.session.helo", "smtplatrine.mail",
            "smtplatrine.rcpt", "smtplatrine.message.spooled", "smtplatrine.session.closed"],
            ["smtplatrine.message.stored", "smtplatrine.session.stored"]))
        for event in self.collector.events():
            self.assertTrue(all(isinstance(v, FLAT) for v in event.values()), event)
        path = self.honeypot.data / "events.jsonl"
        self.honeypot.wait_for(lambda: len([line for line in path.read_text().splitlines()
                                            if session in line]) == len(mine))
        in_file = [json.loads(line) for line in path.read_text().splitlines()]
        self.assertEqual([e for e in in_file if e["session"] == session], mine)


def scrape(port):
    """{(name, labels): value} of every sample /metrics serves."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


class MetricsTests(HoneypotTestCase):

    def setUp(self):
        self.metrics_port = free_port()
        self.sections = {"metrics": {"listen": f"tcp:{self.metrics_port}:interface=127.0.0.1"}}
        super().setUp()

    def scrape(self):
        return scrape(self.metrics_port)

    def moved(self, before, after, name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    def test_counters_move_by_what_was_sent(self):
        """Scraped while mail is sent: connections, sessions, commands,
        AUTH by mechanism, messages, bytes, TLS handshakes (one completed,
        one failed), stored, storing latency and the open sessions move by
        exactly what the clients did."""
        self.honeypot.wait_for(self.honeypot.drained)
        before = self.scrape()
        # 1: EHLO, AUTH PLAIN (refused), MAIL, RCPT, DATA, QUIT: 6 commands.
        first = self.smtp()
        first.ehlo("one.example.org")
        during = self.scrape()
        self.assertEqual(during[("smtplatrine_open_connections", ())], 1)
        first.user, first.password = "admin", "hunter2"
        try:
            first.auth("PLAIN", first.auth_plain)
        except smtplib.SMTPAuthenticationError:
            pass
        first.sendmail("a@example.org", ["b@example.net"], MESSAGE)
        first.quit()
        # 2: EHLO, STARTTLS, EHLO, MAIL, RCPT, DATA, QUIT: 7 commands.
        second = self.smtp()
        second.starttls(context=tls_context())
        second.sendmail("a@example.org", ["b@example.net"], MESSAGE)
        second.quit()
        # 3: implicit TLS port, plain text instead of a TLS hello.
        with socket.create_connection(("127.0.0.1", self.honeypot.tls_port), 10) as raw:
            raw.sendall(b"EHLO three.example.org\r\n")
            raw.recv(100)
        self.honeypot.wait_for(lambda: len(self.honeypot.messages()) == 2
                               and self.honeypot.drained()
                               and self.scrape()[("smtplatrine_open_connections", ())] == 0,
                               timeout=20)
        self.honeypot.wait_for(lambda: self.moved(before, self.scrape(),
                                                  "smtplatrine_sessions_stored_total") == 3)
        after = self.scrape()
        sessions = sum(value for (name, _), value in after.items()
                       if name == "smtplatrine_sessions_total") - sum(
            value for (name, _), value in before.items() if name == "smtplatrine_sessions_total")
        self.assertEqual({
            "served": self.moved(before, after, "smtplatrine_connections_total",
                                 outcome="served"),
            "sessions": sessions,
            "commands": self.moved(before, after, "smtplatrine_commands_total"),
            "plain": self.moved(before, after, "smtplatrine_auth_attempts_total",
                                mechanism="PLAIN"),
            "accepted": self.moved(before, after, "smtplatrine_messages_accepted_total"),
            "bytes": self.moved(before, after, "smtplatrine_received_bytes_total"),
            "tls": self.moved(before, after, "smtplatrine_tls_handshakes_total",
                              outcome="completed"),
            "tls_failed": self.moved(before, after, "smtplatrine_tls_handshakes_total",
                                     outcome="failed"),
            "stored": self.moved(before, after, "smtplatrine_messages_stored_total"),
            "latency": self.moved(before, after, "smtplatrine_storing_latency_seconds_count"),
            "open": after[("smtplatrine_open_connections", ())],
            "backlog": after[("smtplatrine_spool_backlog", (("kind", "message"),))],
        }, {"served": 3, "sessions": 3, "commands": 13, "plain": 1, "accepted": 2,
            "bytes": 2 * len(MESSAGE), "tls": 1, "tls_failed": 1, "stored": 2,
            "latency": 2, "open": 0, "backlog": 0})
        self.assertEqual(after[("smtplatrine_output_up", (("output", "jsonlines"),))], 1)
        # The events of the three sessions reach events.jsonl within a second.
        self.honeypot.wait_for(lambda: self.moved(
            before, self.scrape(), "smtplatrine_output_delivered_events_total",
            output="jsonlines") >= 20)

    def test_counts_survive_a_storing_restart(self):
        """Counts of the storing process that was killed stay in the sum
        its successor serves."""
        client = self.smtp()
        client.sendmail("a@example.org", ["b@example.net"], MESSAGE)
        client.quit()
        self.honeypot.wait_for(lambda: self.scrape().get(
            ("smtplatrine_messages_stored_total", ())) == 1)
        _, worker = self.honeypot.storer_pids()
        os.kill(worker, signal.SIGKILL)
        self.honeypot.wait_for(lambda: self.honeypot.storer_pids()[1] not in (None, worker),
                               timeout=20)
        self.honeypot.wait_for(lambda: self._scrapes())
        self.assertEqual(self.scrape()[("smtplatrine_messages_stored_total", ())], 1)
        self.assertIn("ended (signal 9)", self.honeypot.output())
        self.assertNotIn("Traceback", self.honeypot.output())

    def _scrapes(self):
        try:
            return self.scrape()
        except OSError:
            return None


class MetricsPortTakenTests(unittest.TestCase):

    def test_port_in_use(self):
        """A metrics port that is taken stops start-up with one line."""
        directory = reachable_directory()
        self.addCleanup(shutil.rmtree, directory, True)
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            write_config(directory / "etc", {
                "server": {"data_dir": directory / "data", "listen": ""},
                "meta": {"meta_enable": "false"},
                "metrics": {"listen": f"tcp:{port}:interface=127.0.0.1"}})
            code, output = run_twistd("smtplatrine", "--config", str(directory / "etc"),
                                      "--listen", f"tcp:{free_port()}:interface=127.0.0.1",
                                      cwd=directory)
        self.assertIn(f"smtplatrine: cannot serve metrics on tcp:{port}:interface=127.0.0.1:"
                      f" the address is already in use; change [metrics] listen", output)
        self.assertNotIn("Traceback", output)


