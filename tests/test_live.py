"""The live view's bounds, in memory: a client that does not read is cut
off before its backlog grows past BACKLOG, and streams are limited per
user and in all.  (tests/test_web_exports_e2e.py watches it in Chromium.)"""

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial import unittest

from smtplatrine.web import live
from smtplatrine.web.routing import HTTPError


class _Request:
    def __init__(self):
        self.written = 0

    def write(self, data):
        self.written += len(data)


class _Output:
    """What a Watcher writes to: *paused* while the client does not read."""

    def __init__(self, paused=False):
        self.request = _Request()
        self.paused = paused
        self.gone = False
        self.aborted = False

    def abort(self):
        self.aborted = self.gone = True


class _Reader:
    """A database whose reads never answer (the limits come first)."""
    dialect = None

    def run(self, *args):
        return defer.Deferred()


class WatcherTests(unittest.TestCase):

    def test_slow_client_cut_off(self):
        """Events for a client that reads nothing pile up to BACKLOG bytes
        at most; then its connection is cut and its stream ends."""
        output = _Output(paused=True)
        watcher = live.Watcher(output, "ana", False, lambda: True)
        event = b"x" * 10_000
        for _ in range(1000):
            watcher.send(event)
        self.assertTrue(output.aborted)
        self.assertLessEqual(output.request.written, live.BACKLOG)
        self.assertTrue(watcher.ended.called)

    def test_reading_client_kept(self):
        """A client that keeps up gets every event, however many."""
        output = _Output()
        watcher = live.Watcher(output, "ana", False, lambda: True)
        for _ in range(1000):
            watcher.send(b"x" * 10_000)
        self.assertFalse(output.aborted)
        self.assertEqual(output.request.written, 10_000_000)


class HubTests(unittest.TestCase):

    def test_limits(self):
        """At most PER_USER streams for one user and MAX_WATCHERS in all;
        one that ends makes room."""
        hub = live.Hub(_Reader(), Clock())
        watchers = [live.Watcher(_Output(), "ana", False, lambda: True)
                    for _ in range(live.PER_USER)]
        for watcher in watchers:
            hub.admit(watcher)
        error = self.assertRaises(HTTPError, hub.admit,
                                  live.Watcher(_Output(), "ana", False, lambda: True))
        self.assertEqual(error.status, 503)
        others = [live.Watcher(_Output(), f"user{i}", False, lambda: True)
                  for i in range(live.MAX_WATCHERS - live.PER_USER)]
        for watcher in others:
            hub.admit(watcher)
        self.assertRaises(HTTPError, hub.admit,
                          live.Watcher(_Output(), "zoe", False, lambda: True))
        hub.leave(others[0])
        hub.admit(live.Watcher(_Output(), "zoe", False, lambda: True))
        for watcher in list(hub.watchers):
            hub.leave(watcher)
        self.assertEqual(hub.watchers, [])
