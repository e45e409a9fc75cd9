"""The server's services: the order they start and stop in, the human log
on a full disk."""

import os
from pathlib import Path

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService, Service
from twisted.internet import defer
from twisted.internet.testing import MemoryReactor
from twisted.trial import unittest

from smtplatrine import tap
from smtplatrine.service import InOrder, _LogFile
from tests.process import write_config


class LogFileTests(unittest.TestCase):

    def test_full_disk(self):
        """Entries a full disk (/dev/full) refuses are counted, never raised,
        and the count is written first once the file takes entries again."""
        log = _LogFile("/dev/full")
        log.write("first entry\n")
        log.write("second entry\n")
        path = self.mktemp()
        with open(path, "w") as room:
            # The disk takes writes again: the same descriptor, another file.
            os.dup2(room.fileno(), log._fd)
        log.write("third entry\n")
        lines = open(path).read().splitlines()
        self.assertRegex(lines[0], r"\[smtplatrine\.service#warn\] 2 log entries could"
                                   r" not be written$")
        self.assertEqual(lines[1:], ["third entry"])


class _Recorder(Service):
    """A service that notes when it stops and stops when the test says."""

    def __init__(self, name, stopped):
        self.name, self._stopped = name, stopped
        self.done = defer.Deferred()

    def stopService(self):
        super().stopService()
        self._stopped.append(self.name)
        return self.done


class InOrderTests(unittest.TestCase):

    def test_stops_one_after_the_other_in_reverse(self):
        """Children stop in the reverse of their start order, each once the
        one started after it has stopped; the whole stops with the last."""
        stopped = []
        top = InOrder()
        children = [_Recorder(name, stopped) for name in ("disk", "storing", "listener")]
        for service in children:
            service.setServiceParent(top)
        top.startService()
        d = top.stopService()
        self.assertEqual(stopped, ["listener"])
        children[2].done.callback(None)
        self.assertEqual(stopped, ["listener", "storing"])
        children[1].done.callback(None)
        self.assertNoResult(d)
        children[0].done.callback(None)
        self.assertEqual(stopped, ["listener", "storing", "disk"])
        self.successResultOf(d)


class MakeServiceTests(unittest.TestCase):

    def test_children_in_start_order(self):
        """``twistd smtplatrine`` is one service whose children start in
        order: the human log, the disk worker, the storing process, the
        block list, one listener per endpoint, and (run as root) the
        privilege drop last."""
        directory = Path(self.mktemp())
        write_config(directory / "etc", {"server": {"data_dir": directory / "data"}})
        options = tap.Options()
        options.parseOptions(["--config", str(directory / "etc"),
                              "--listen", "tcp:0:interface=127.0.0.1",
                              "--listen", "tcp:0:interface=127.0.0.2"])
        top = tap.makeService(options, MemoryReactor())
        self.assertIsInstance(top, MultiService)
        expected = ["HumanLog", "DiskService", "ChildrenService", "BlockListService",
                    "Listener", "Listener"] + (["PrivilegeDrop"] if os.getuid() == 0 else [])
        self.assertEqual([type(service).__name__ for service in top], expected)
        self.assertEqual([service.description for service in top
                          if isinstance(service, StreamServerEndpointService)],
                         ["tcp:0:interface=127.0.0.1", "tcp:0:interface=127.0.0.2"])
