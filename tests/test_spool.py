"""The spool: grouped durable commits, files created ahead, crash recovery."""

import hashlib
import json

from twisted.internet import defer
from twisted.trial import unittest

from smtplatrine import spool as spool_module
from smtplatrine.spool import Spool, read_metadata
from smtplatrine.testing import run_now, spooled


class SpoolTests(unittest.TestCase):

    def setUp(self):
        self.syncs = []
        self.spool = Spool(self.mktemp(), self.run_later, reserve=4)

    def run_later(self, f, *args):
        """Run the spool's work at once, but hold each sync until the test fires it."""
        if f is spool_module._syncfs:
            d = defer.Deferred()
            self.syncs.append(d)
            return d
        return run_now(f, *args)

    def test_commit_waits_for_sync(self):
        """A commit fires only after the file system was synced."""
        message = self.spool.open(100)
        message.write(b"hello\r\n")
        fired = []
        self.spool.commit(message, {"acknowledged": True}).addCallback(fired.append)
        self.assertEqual(fired, [])
        self.syncs.pop().callback(None)
        self.assertEqual(fired, [message])
        [(metadata, raw)] = spooled(self.spool.messages)
        self.assertEqual(raw, b"hello\r\n")
        self.assertEqual(metadata["sha256"], hashlib.sha256(b"hello\r\n").hexdigest())
        self.assertEqual(metadata["size"], 7)

    def test_commits_grouped(self):
        """Messages ending while syncs are under way share the next sync."""
        results = []
        for i in range(10):
            message = self.spool.open(100)
            self.spool.commit(message, {"n": i}).addCallback(results.append)
        self.assertEqual(len(self.syncs), spool_module._SYNCS_IN_FLIGHT)
        while self.syncs:
            self.syncs.pop(0).callback(None)
        self.assertEqual(len(results), 10)

    def test_sync_failure(self):
        """A failed sync fails every commit of its group."""
        message = self.spool.open(100)
        d = self.spool.commit(message, {})
        self.syncs.pop().errback(OSError(5, "EIO"))
        self.failureResultOf(d, OSError)

    def test_limit(self):
        """A message keeps at most its limit and says it was truncated."""
        message = self.spool.open(5)
        message.write(b"0123456789")
        self.spool.commit(message, {})
        self.syncs.pop().callback(None)
        [(metadata, raw)] = spooled(self.spool.messages)
        self.assertEqual((raw, metadata["truncated"]), (b"01234", True))

    def test_unfinished_invisible(self):
        """A message still being received has no readable metadata."""
        message = self.spool.open(100)
        message.write(b"partial")
        self.assertIsNone(read_metadata(message.path.with_suffix(".json")))
        self.assertEqual(spooled(self.spool.messages), [])

    def test_recover(self):
        """A restart drops unused files and keeps unfinished mail, unacknowledged."""
        done = self.spool.open(100)
        done.write(b"done")
        self.spool.commit(done, {"acknowledged": True})
        self.syncs.pop().callback(None)
        cut = self.spool.open(100)
        cut.write(b"cut short")
        cut._file.flush()
        restarted = Spool(self.spool.root, run_now)
        restarted.recover()
        names = sorted(p.name for p in self.spool.messages.iterdir())
        self.assertEqual(names, sorted(f"{m.message_id}.{e}" for m in (done, cut)
                                       for e in ("eml", "json")))
        recovered = json.loads(cut.path.with_suffix(".json").read_text())
        self.assertEqual((recovered["acknowledged"], recovered["recovered"],
                          recovered["size"]), (False, True, 9))
        self.assertTrue(read_metadata(done.path.with_suffix(".json"))["acknowledged"])

    def test_discard(self):
        """A discarded message leaves no file behind."""
        message = self.spool.open(100)
        self.spool.discard(message)
        self.assertFalse(message.path.exists())
        self.assertFalse(message.path.with_suffix(".json").exists())
