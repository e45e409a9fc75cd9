"""The storing process as the server sees it: the lines it is sent, the log
events it sends back, and what its end means (tests/test_store_e2e.py
kills a real one)."""

import io

from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import Logger, globalLogPublisher, jsonFileLogObserver
from twisted.python.failure import Failure
from twisted.trial import unittest

from smtplatrine import config as config_module
from smtplatrine.storer import StoringProcess, _Commands


class _Reactor(Clock):
    def __init__(self):
        super().__init__()
        self.stopped = False

    def stop(self):
        self.stopped = True


def _logged(testcase):
    """The log events published from now on."""
    events = []
    globalLogPublisher.addObserver(events.append)
    testcase.addCleanup(globalLogPublisher.removeObserver, events.append)
    return events


class CommandsTests(unittest.TestCase):

    def setUp(self):
        self.items, self.ended = [], []
        self.commands = _Commands(lambda *item: self.items.append(item),
                                  lambda: self.ended.append(True))
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

    def test_child_log_events_logged_here(self):
        """A log event of the child, as Twisted serialises it, is logged by
        the server with its fields, even when it arrives in pieces."""
        stream = io.StringIO()
        Logger(namespace="smtplatrine.pipeline",
               observer=jsonFileLogObserver(stream)).error(
            "database {db} unavailable", db="MySQL root@127.0.0.1:3306/x")
        data = stream.getvalue().encode()
        events = _logged(self)
        self.process.outReceived(data[:20])
        self.assertEqual(events, [])
        self.process.outReceived(data[20:])
        [event] = events
        self.assertEqual((event["log_namespace"], event["db"]),
                         ("smtplatrine.pipeline", "MySQL root@127.0.0.1:3306/x"))

    def test_stray_output_escaped(self):
        """Anything else the child prints is logged escaped, as a field."""
        events = _logged(self)
        self.process.outReceived(b"{oops}\x1b[2J\n")
        [event] = events
        self.assertEqual(event["line"], "{oops}\\x1b[2J")

    def test_fatal_end_stops_server(self):
        """A child that cannot prepare itself stops the server."""
        events = _logged(self)
        self.process.processEnded(Failure(ProcessTerminated(exitCode=3)))
        self.assertTrue(self.reactor.stopped)
        self.assertIn("cannot start", events[-1]["log_format"])

    def test_unasked_end_logged(self):
        """A child ending otherwise is one error line; the server runs on."""
        events = _logged(self)
        self.process.processEnded(Failure(ProcessTerminated(signal=9)))
        self.assertFalse(self.reactor.stopped)
        self.assertEqual([e["log_level"].name for e in events], ["error"])

    def test_asked_end_quiet(self):
        """Stopping closes the child's input and fires once it has ended."""
        transport = StringTransport()
        transport.closeStdin = transport.loseConnection
        self.process.makeConnection(transport)
        events = _logged(self)
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
