"""Events: escaping, the JSON lines output, isolation of failing outputs."""

import json
import os

from twisted.internet.task import Clock
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial import unittest

from smtplatrine import events as events_module
from smtplatrine.events import Events, JSONLinesOutput, SyslogOutput, printable
from smtplatrine.testing import ListOutput

IDENTITY = {"session": "s-1", "sensor": "sensor-a", "src_ip": "192.0.2.1",
            "src_port": 1, "dst_ip": "198.51.100.2", "dst_port": 25}


class PrintableTests(unittest.TestCase):

    def test_controls_escaped(self):
        """CR, LF, ESC, DEL, C1 controls and backslashes come out as escapes."""
        self.assertEqual(printable("a\r\nb\x1b[31m\x7f\x85\\"),
                         "a\\r\\nb\\x1b[31m\\x7f\\x85\\\\")

    def test_bytes_not_utf8(self):
        """Bytes that are not UTF-8 show as \\xNN; UTF-8 text stays readable."""
        self.assertEqual(printable(b"\xff\xfe caf\xc3\xa9"), "\\xff\\xfe caf\u00e9")
        self.assertEqual(printable("x\udcff"), "x\\xff")


class EventsTests(unittest.TestCase):

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1795826000)  # date -u -d @1795826000: 2026-11-28T00:33:20

    def test_identity_and_time(self):
        """Every event carries the session identity and a UTC timestamp."""
        output = ListOutput()
        Events(self.clock, [output]).emit("smtplatrine.mail", IDENTITY, mail_from="a@b")
        [event] = output.events
        self.assertEqual(event, dict(IDENTITY, eventid="smtplatrine.mail", mail_from="a@b",
                                     timestamp="2026-11-28T00:33:20.000000Z"))

    def test_failing_output_isolated(self):
        """An output that raises is logged once; the others still get every event."""
        class Broken:
            def write(self, event):
                raise OSError("disk gone")
        output = ListOutput()
        events = Events(self.clock, [Broken(), output])
        for _ in range(3):
            events.emit("smtplatrine.rcpt", IDENTITY, rcpt="c@d")
        self.assertEqual(len(output.events), 3)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)

    def test_human_log_levels(self):
        """Steps inside a session log at debug; connections and messages at info."""
        seen = []
        globalLogPublisher.addObserver(seen.append)
        self.addCleanup(globalLogPublisher.removeObserver, seen.append)
        events = Events(self.clock)
        events.emit("smtplatrine.rcpt", IDENTITY, rcpt="c@d")
        events.emit("smtplatrine.session.connect", IDENTITY)
        levels = [e["log_level"] for e in seen if e.get("eventid")]
        self.assertEqual(levels, [LogLevel.debug, LogLevel.info])

    def test_json_lines_flushed_within_a_second(self):
        """The JSON lines file gets each event as one line, within a second."""
        path = self.mktemp()
        output = JSONLinesOutput(path, self.clock)
        Events(self.clock, [output]).emit("smtplatrine.session.helo", IDENTITY,
                                          command="EHLO", helo="x\\x1b")
        self.clock.advance(1)
        [line] = open(path).read().splitlines()
        self.assertEqual(json.loads(line)["helo"], "x\\x1b")
        output.close()

    def test_json_lines_batch_bounded(self):
        """Events past a megabyte are written at once, not held for the second."""
        path = self.mktemp()
        output = JSONLinesOutput(path, self.clock)
        events = Events(self.clock, [output])
        for n in range(600):
            events.emit("smtplatrine.rcpt", IDENTITY, rcpt="r" * 2000)
        self.assertGreater(os.path.getsize(path), 2**20)
        self.clock.advance(1)
        self.assertEqual(len(open(path).read().splitlines()), 600)
        output.close()

    def test_json_lines_through_a_full_disk(self):
        """Events a full disk (/dev/full) refuses are kept, without an error
        escaping, and written once the file takes them again; past the
        bound kept they are counted as lost."""
        self.patch(events_module, "_KEEP_BYTES", 1000)
        seen = []
        globalLogPublisher.addObserver(seen.append)
        self.addCleanup(globalLogPublisher.removeObserver, seen.append)
        output = JSONLinesOutput("/dev/full", self.clock)
        events = Events(self.clock, [output])
        for n in range(20):
            events.emit("smtplatrine.rcpt", IDENTITY, rcpt=f"c{n}@d")
        self.clock.advance(1)
        path = self.mktemp()
        with open(path, "w") as room:
            # The disk takes writes again: the same descriptor, another file.
            os.dup2(room.fileno(), output._fd)
        self.clock.advance(1)
        kept = [json.loads(line)["rcpt"] for line in open(path).read().splitlines()]
        self.assertEqual(kept, [f"c{n}@d" for n in range(len(kept))])
        self.assertLess(len(kept), 20)
        notes = [e["log_format"] for e in seen if e.get("log_namespace") == "smtplatrine.events"
                 and "eventid" not in e]
        self.assertEqual(len(notes), 2, notes)
        self.assertEqual([e["lost"] for e in seen if "lost" in e], [20 - len(kept)])
        output.close()

    def test_syslog_output(self):
        """The syslog output sends each event as JSON at the configured facility."""
        sent = []
        self.patch(events_module.syslog, "syslog", lambda *args: sent.append(args))
        Events(self.clock, [SyslogOutput("local3")]).emit(
            "smtplatrine.rcpt", IDENTITY, rcpt="c@d")
        [(priority, text)] = sent
        self.assertEqual(priority, events_module.syslog.LOG_LOCAL3 | events_module.syslog.LOG_INFO)
        self.assertEqual(json.loads(text)["rcpt"], "c@d")
