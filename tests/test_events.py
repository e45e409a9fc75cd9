"""Events: escaping, the catalogue, flat events, isolation of failing sinks."""

import ast
from pathlib import Path

from twisted.internet.task import Clock
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial import unittest

from smtplatrine.capture import Identity
from smtplatrine.events import EVENTS, Events, printable
from smtplatrine.testing import ListOutput

ROOT = Path(__file__).resolve().parent.parent
IDENTITY = Identity("s-1", "sensor-a", "192.0.2.1", 1, "198.51.100.2", 25)


class PrintableTests(unittest.TestCase):

    def test_controls_escaped(self):
        """CR, LF, ESC, DEL, C1 controls and backslashes come out as escapes."""
        self.assertEqual(printable("a\r\nb\x1b[31m\x7f\x85\\"),
                         "a\\r\\nb\\x1b[31m\\x7f\\x85\\\\")

    def test_bytes_not_utf8(self):
        """Bytes that are not UTF-8 show as \\xNN; UTF-8 text stays readable."""
        self.assertEqual(printable(b"\xff\xfe caf\xc3\xa9"), "\\xff\\xfe caf\u00e9")
        self.assertEqual(printable("x\udcff"), "x\\xff")


def emit_calls():
    """(file, function, first argument) of every ``.emit(...)`` or
    ``._emit(...)`` call of events in the code (not Logger.emit)."""
    found = []
    for path in [*(ROOT / "smtplatrine").rglob("*.py"), *(ROOT / "twisted").rglob("*.py")]:
        tree = ast.parse(path.read_text(), str(path))
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            for node in ast.walk(function):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr in ("emit", "_emit") and node.args
                        and not (isinstance(node.func.value, ast.Name)
                                 and node.func.value.id == "log")):
                    first = node.args[0]
                    found.append((path.relative_to(ROOT).as_posix(),
                                  getattr(function, "name", "lambda"),
                                  first.value if isinstance(first, ast.Constant) else None))
    return found


class CatalogueTests(unittest.TestCase):

    def test_every_emitted_id_catalogued(self):
        """Each event id the code emits is in the catalogue, and each one
        in the catalogue is emitted somewhere."""
        calls = emit_calls()
        emitted = {eventid for _, _, eventid in calls if eventid is not None}
        self.assertGreater(len(emitted), 15)
        self.assertEqual(sorted(emitted - set(EVENTS)), [])
        self.assertEqual(sorted(set(EVENTS) - emitted), [])

    def test_ids_are_literals(self):
        """Only the enrichment service's helper passes an id it was given;
        every other call names its event, so the check above sees them all."""
        passed = {(path, function) for path, function, eventid in emit_calls()
                  if eventid is None}
        self.assertEqual(passed, {("smtplatrine/enrich/service.py", "_emit")})

    def test_flat(self):
        """A field that is a list or an object is refused at once; text,
        numbers, booleans and null pass."""
        events = Events(Clock())
        events.emit("smtplatrine.mail", IDENTITY, mail_from="a", n=1, x=1.5, ok=True, no=None)
        for value in ([1], {"a": 1}, ("a",), b"raw"):
            with self.assertRaises(TypeError):
                events.emit("smtplatrine.mail", IDENTITY, mail_from=value)


class EventsTests(unittest.TestCase):

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1795826000)  # date -u -d @1795826000: 2026-11-28T00:33:20

    def test_identity_and_time(self):
        """Every event carries the session identity and a UTC timestamp."""
        output = ListOutput()
        Events(self.clock, [output]).emit("smtplatrine.mail", IDENTITY, mail_from="a@b")
        [event] = output.events
        self.assertEqual(event, {
            "session": "s-1", "sensor": "sensor-a", "src_ip": "192.0.2.1", "src_port": 1,
            "dst_ip": "198.51.100.2", "dst_port": 25, "eventid": "smtplatrine.mail",
            "mail_from": "a@b", "timestamp": "2026-11-28T00:33:20.000000Z"})

    def test_failing_sink_isolated(self):
        """A sink that raises is logged once; the others still get every event."""
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
