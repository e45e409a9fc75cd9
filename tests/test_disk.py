"""The disk worker child process: it creates, syncs and writes on request."""

import json
from pathlib import Path

from twisted.internet import reactor
from twisted.trial import unittest

from smtplatrine.disk import DiskWorker
from smtplatrine.spool import Spool


class DiskWorkerTests(unittest.TestCase):

    def setUp(self):
        self.root = Path(self.mktemp())
        Spool(self.root, None)  # makes the spool's directories
        self.worker = DiskWorker(reactor, self.root)
        self.addCleanup(self.worker.stop)

    async def test_create_ahead(self):
        """Asked to create files, the child makes empty pairs and names them."""
        answer = await self.worker.request(op="create", count=3)
        self.assertEqual(len(answer["ids"]), 3)
        names = sorted(p.name for p in (self.root / "messages").iterdir())
        self.assertEqual(names, sorted(f"{i}.{suffix}" for i in answer["ids"]
                                       for suffix in ("eml", "json")))
        self.assertEqual({p.stat().st_size for p in (self.root / "messages").iterdir()}, {0})

    async def test_session_and_sync(self):
        """Session records are written whole; a sync answers when done."""
        record = {"session": "abc", "transcript": [[1.0, "C", "EHLO x"]]}
        await self.worker.request(op="session", record=record)
        await self.worker.request(op="sync")
        path = self.root / "sessions" / "abc.json"
        self.assertEqual(json.loads(path.read_text()), record)

    async def test_error_answered(self):
        """A request that fails is answered with its error, and the child goes on."""
        (self.root / "sessions").rmdir()
        with self.assertRaises(OSError) as caught:
            await self.worker.request(op="session", record={"session": "x"})
        self.assertEqual(caught.exception.errno, 2)
        answer = await self.worker.request(op="create", count=1)
        self.assertEqual(len(answer["ids"]), 1)
