"""The storing process as the server sees it: the lines it is sent, the log
events it sends back, and what its end means (tests/test_store_e2e.py
kills a real one)."""

import io
import json

from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import Logger, jsonFileLogObserver
from twisted.python.failure import Failure
from twisted.trial import unittest

from zope.interface.verify import verifyClass

from smtplatrine import batch
from smtplatrine import config as config_module
from smtplatrine.interfaces import ISpoolConsumer, IStoredConsumer
from smtplatrine.pipeline import Pipeline
from smtplatrine.storer import MAX_LINE, MAX_WAITING, StoringProcess
from smtplatrine.storing import Storing, _Commands
from smtplatrine.testing import logged


class _Reactor(Clock):
    def __init__(self):
        super().__init__()
        self.stopped = False

    def stop(self):
        self.stopped = True


class CommandsTests(unittest.TestCase):

    def setUp(self):
        self.items, self.events, self.ended = [], [], []
        self.commands = _Commands(lambda *item: self.items.append(item),
                                  self.events.append, lambda: self.ended.append(True))
        self.commands.makeConnection(StringTransport())

    def test_items(self):
        """Each line names a message or a session for the pipeline."""
        self.commands.dataReceived(b"message 5f0c\nsession 9a1b\nmess")
        self.commands.dataReceived(b"age 77\n")
        self.assertEqual(self.items, [("message", "5f0c"), ("session", "9a1b"),
                                      ("message", "77")])

    def test_remains_of_a_line_skipped(self):
        """The tail of a line a dead worker read half of is skipped."""
        self.commands.dataReceived(b"-4e2a-8f01\nge 12\n\xff\nsession 3\n")
        self.assertEqual(self.items, [("session", "3")])

    def test_events(self):
        """An event line of the SMTP side goes to the outputs, whole."""
        event = {"eventid": "smtplatrine.rcpt", "rcpt": "a\\x00@b", "src_port": 7}
        line = b"event " + json.dumps(event).encode() + b"\n"
        self.commands.dataReceived(line[:9])
        self.commands.dataReceived(line[9:] + b"event {broken\nevent [1]\nmessage 1\n")
        self.assertEqual(self.events, [event])
        self.assertEqual(self.items, [("message", "1")])

    def test_overlong_line_skipped(self):
        """A line over MAX_LINE is skipped, arriving in pieces or not; the
        lines after it are read, and the input stays open."""
        self.commands.dataReceived(b"event " + b"x" * MAX_LINE)
        self.commands.dataReceived(b"y" * 100)
        self.commands.dataReceived(b"z\nsession 2\n" + b"w" * (MAX_LINE + 1) + b"\nmessage 3\n")
        self.assertEqual(self.items, [("session", "2"), ("message", "3")])
        self.assertEqual(self.ended, [])

    def test_end_of_input_stops(self):
        """The server closing the pipe stops the worker."""
        self.commands.connectionLost(Failure(EOFError()))
        self.assertEqual(self.ended, [True])


class StoringProcessTests(unittest.TestCase):

    def setUp(self):
        self.reactor = _Reactor()
        self.process = StoringProcess(self.reactor, config_module.load(), None)

    def test_notify_writes_lines(self):
        """A finished message or session becomes one line to the child."""
        self.process.makeConnection(StringTransport())
        self.process.notify("message", "5f0c")
        self.process.notify("session", "9a1b")
        self.assertEqual(self.process.transport.value(),
                         b"message 5f0c\nsession 9a1b\n")

    def test_messages_that_left(self):
        """The child's line naming messages out of the spool is handed on
        (not logged); log lines around it are logged."""
        left = []
        process = StoringProcess(self.reactor, config_module.load(), None, left=left.extend)
        stream = io.StringIO()
        Logger(namespace="smtplatrine.pipeline",
               observer=jsonFileLogObserver(stream)).info("hello")
        events = logged(self)
        process.outReceived(b"left 5f0c 9a1b\n" + stream.getvalue().encode()
                            + b"left 77aa\n")
        self.assertEqual(left, ["5f0c", "9a1b", "77aa"])
        self.assertEqual([e.get("log_format") for e in events], ["hello"])

    def test_events_written_as_lines(self):
        """An event of the SMTP side becomes one JSON line to the child."""
        self.process.makeConnection(StringTransport())
        self.process.write({"eventid": "smtplatrine.mail", "mail_from": "\u00e9\\x1b"})
        line = self.process.transport.value()
        self.assertTrue(line.startswith(b"event ") and line.endswith(b"\n"))
        self.assertEqual(json.loads(line[6:]),
                         {"eventid": "smtplatrine.mail", "mail_from": "\u00e9\\x1b"})

    def test_events_dropped_while_child_does_not_read(self):
        """Past MAX_WAITING bytes written while the pipe is full, events are
        dropped, with one warning; once it drains, the count is reported."""
        lost = []
        process = StoringProcess(self.reactor, config_module.load(), None, lost.append)
        process.makeConnection(StringTransport())
        events = logged(self)
        process.pauseProducing()
        event = {"eventid": "smtplatrine.rcpt", "rcpt": "x" * 1000}
        for _ in range(2000):
            process.write(event)
        written = process.transport.value().count(b"\n")
        self.assertEqual(written, MAX_WAITING // len(process.transport.value().split(b"\n")[0] + b"\n"))
        self.assertEqual([e["log_level"].name for e in events], ["warn"])
        self.assertEqual(lost, [])
        process.resumeProducing()
        self.assertEqual(lost, [2000 - written])
        process.write(event)
        self.assertEqual(process.transport.value().count(b"\n"), written + 1)

    def test_pipe_full_at_every_write(self):
        """A pipe says it is full at every write while it is (as
        abstract.FileDescriptor does): the bytes waiting stay within
        MAX_WAITING all the same."""
        process = StoringProcess(self.reactor, config_module.load(), None, [].append)
        process.makeConnection(StringTransport())
        logged(self)
        event = {"eventid": "smtplatrine.rcpt", "rcpt": "x" * 1000}
        for _ in range(2000):
            process.pauseProducing()
            process.write(event)
        self.assertLessEqual(len(process.transport.value()), MAX_WAITING)

    def test_child_log_events_logged_here(self):
        """A log event of the child, as Twisted serialises it, is logged by
        the server with its fields, even when it arrives in pieces."""
        stream = io.StringIO()
        Logger(namespace="smtplatrine.pipeline",
               observer=jsonFileLogObserver(stream)).error(
            "database {db} unavailable", db="MySQL root@127.0.0.1:3306/x")
        data = stream.getvalue().encode()
        events = logged(self)
        self.process.outReceived(data[:20])
        self.assertEqual(events, [])
        self.process.outReceived(data[20:])
        [event] = events
        self.assertEqual((event["log_namespace"], event["db"]),
                         ("smtplatrine.pipeline", "MySQL root@127.0.0.1:3306/x"))

    def test_stray_output_escaped(self):
        """Anything else the child prints is logged escaped, as a field."""
        events = logged(self)
        self.process.outReceived(b"{oops}\x1b[2J\n")
        [event] = events
        self.assertEqual(event["line"], "{oops}\\x1b[2J")

    def test_fatal_end_stops_server(self):
        """A child that cannot prepare itself stops the server."""
        events = logged(self)
        self.process.processEnded(Failure(ProcessTerminated(exitCode=3)))
        self.assertTrue(self.reactor.stopped)
        self.assertIn("cannot start", events[-1]["log_format"])

    def test_unasked_endlogged(self):
        """A child ending otherwise is one error line; the server runs on."""
        events = logged(self)
        self.process.processEnded(Failure(ProcessTerminated(signal=9)))
        self.assertFalse(self.reactor.stopped)
        self.assertEqual([e["log_level"].name for e in events], ["error"])

    def test_asked_end_quiet(self):
        """Stopping closes the child's input and fires once it has ended."""
        transport = StringTransport()
        transport.closeStdin = transport.loseConnection
        self.process.makeConnection(transport)
        events = logged(self)
        stopped = self.process.stop()
        self.assertTrue(transport.disconnecting)
        self.assertNoResult(stopped)
        self.process.processEnded(Failure(ProcessDone(0)))
        self.successResultOf(stopped)
        self.assertEqual(events, [])
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_hung_child_killed(self):
        """A child that does not end within STOP_SECONDS of being asked is
        killed, so that the server can stop."""
        transport = StringTransport()
        transport.closeStdin = lambda: None
        signals = []
        transport.signalProcess = signals.append
        self.process.makeConnection(transport)
        stopped = self.process.stop()
        self.reactor.advance(StoringProcess.STOP_SECONDS - 1)
        self.assertEqual(signals, [])
        self.reactor.advance(1)
        self.assertEqual(signals, ["KILL"])
        self.process.processEnded(Failure(ProcessTerminated(signal=9)))
        self.successResultOf(stopped)


class HandOffTests(unittest.TestCase):

    def test_interfaces(self):
        """The hand-offs provide the interfaces that name them: the server's
        handle on the storing process and the pipeline hear of what the
        spool holds; the storing process and an import hear of each
        stored message."""
        for interface, provider in [(ISpoolConsumer, StoringProcess),
                                    (ISpoolConsumer, Pipeline),
                                    (IStoredConsumer, Storing),
                                    (IStoredConsumer, batch._Run)]:
            self.assertTrue(verifyClass(interface, provider))
