"""The disk worker child process: it creates, syncs and writes on request."""

import io
import json
import os
import signal
import stat
import sys
import uuid
from pathlib import Path

from twisted.internet import defer
from twisted.trial import unittest

from smtplatrine import disk, privileges
from smtplatrine.disk import DiskWorker
from smtplatrine.spool import Spool
from tests.durability import DurabilityRecorder


class DiskWorkerTests(unittest.TestCase):

    def setUp(self):
        from twisted.internet import reactor

        self.root = Path(self.mktemp())
        Spool(self.root, None)  # makes the spool's directories
        self.worker = DiskWorker(reactor, self.root)
        self.worker.spawn()
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
        """The child writes a session record whole and answers a sync
        without an error (what the sync does: DiskProgramTests)."""
        record = {"session": "abc", "transcript": [[1.0, "C", "EHLO x"]]}
        await self.worker.request(op="session", record=record)
        answer = await self.worker.request(op="sync")
        self.assertNotIn("errno", answer)
        path = self.root / "sessions" / "abc.json"
        self.assertEqual(json.loads(path.read_text()), record)

    async def test_requests_at_once(self):
        """Requests sent before the first is answered are each answered."""
        from twisted.internet import reactor

        waiting = [self.worker.request(op="create", count=2),
                   self.worker.request(op="session", record={"session": "s"}),
                   self.worker.request(op="sync")]
        answers = await defer.gatherResults(waiting).addTimeout(30, reactor)
        self.assertEqual([len(answers[0]["ids"]), "errno" in answers[1], "errno" in answers[2]],
                         [2, False, False])

    async def test_stopped_worker_refuses_at_once(self):
        """Once the worker has stopped, a request fails at once with an
        OSError saying so."""
        await self.worker.stop()
        failure = self.failureResultOf(self.worker.request(op="sync"), OSError)
        self.assertEqual(failure.value.args, (0, "the disk worker has stopped"))

    async def test_waiting_requests_fail_when_it_ends(self):
        """Requests still unanswered when the worker process ends fail with
        an OSError saying so, instead of waiting for ever."""
        from twisted.internet import reactor

        self.worker.transport.signalProcess("STOP")  # it can answer nothing now
        waiting = self.worker.request(op="sync")
        self.worker.transport.signalProcess("KILL")
        with self.assertRaises(OSError) as caught:
            await waiting.addTimeout(30, reactor)
        self.assertEqual(caught.exception.args, (0, "the disk worker ended"))

    async def test_error_answered(self):
        """A request that fails is answered with its error, and the child goes on."""
        (self.root / "sessions").rmdir()
        with self.assertRaises(OSError) as caught:
            await self.worker.request(op="session", record={"session": "x"})
        self.assertEqual((caught.exception.errno, caught.exception.strerror),
                         (2, "No such file or directory"))
        answer = await self.worker.request(op="create", count=1)
        self.assertEqual(len(answer["ids"]), 1)


class DiskProgramTests(unittest.TestCase):
    """The child's program run in this process on requests in its input,
    with its syncs recorded (tests/durability.py)."""

    def setUp(self):
        self.root = Path(self.mktemp())
        Spool(self.root, None)
        self.recorder = DurabilityRecorder(self, self.root)
        self.umask = os.umask(0)
        os.umask(self.umask)
        # A message written as the server writes one, not synced yet.
        self.message = self.root / "messages" / "m.eml"
        self.message.write_bytes(b"Subject: kept\r\n\r\nbody\r\n")

    def run_program(self, *requests):
        """Run the program on *requests*; each answer joins the recorder's
        log as it is written."""
        log = self.recorder.log

        class Output:
            def write(self, text):
                log.append(("answer", json.loads(text)))

            def flush(self):
                pass

        lines = "".join(json.dumps(dict(request, id=number)) + "\n"
                        for number, request in enumerate(requests, 1))
        self.patch(sys, "stdin", io.StringIO(lines))
        self.patch(sys, "stdout", Output())
        self.patch(signal, "signal", lambda *args: None)  # trial keeps its handlers
        disk.main([str(self.root)])

    def test_sync_answered_once_durable(self):
        """A sync is answered only after syncfs(2) of the spool's file
        system has returned: the message written before it, and its name,
        would then survive a crash."""
        self.assertIsNone(self.recorder.durable(self.message))
        self.run_program({"op": "sync"})
        self.assertEqual(self.recorder.log, [("syncfs",), ("answer", {"id": 1})])
        self.assertEqual(self.recorder.durable(self.message),
                         b"Subject: kept\r\n\r\nbody\r\n")

    def test_failed_sync_answered(self):
        """A sync that fails is answered with its errno, and nothing more
        counts as durable."""
        self.recorder.fail_syncs = True
        self.run_program({"op": "sync"})
        self.assertEqual(self.recorder.log, [
            ("answer", {"errno": 5, "error": "Input/output error", "id": 1})])
        self.assertIsNone(self.recorder.durable(self.message))

    def test_session_record_as_sorted_json(self):
        """A session record is written as one line of JSON, keys sorted,
        under a temporary name and then renamed to the session's."""
        self.run_program({"op": "session", "record": {"session": "s-1", "end": 2.5,
                                                      "auth": [{"username": "\u00e9"}]}})
        path = self.root / "sessions" / "s-1.json"
        self.assertEqual(path.read_bytes(),
                         b'{"auth": [{"username": "\\u00e9"}], "end": 2.5, "session": "s-1"}\n')
        self.assertEqual([(kind, *(Path(name).relative_to(self.root.resolve()) for name in names))
                          if kind == "rename" else (kind, *names)
                          for kind, *names in self.recorder.log], [
            ("rename", Path("sessions/s-1.tmp"), Path("sessions/s-1.json")),
            ("answer", {"id": 1})])

    def test_create_ahead(self):
        """Asked to create files, the program makes empty pairs, readable by
        the group only, named by new UUIDs, and says which."""
        self.run_program({"op": "create", "count": 2})
        [(_, answer)] = self.recorder.log
        ids = answer["ids"]
        self.assertEqual(len({str(uuid.UUID(i)) for i in ids}), 2)
        made = sorted((self.root / "messages").glob("*-*"))
        self.assertEqual([p.name for p in made],
                         sorted(f"{i}.{suffix}" for i in ids for suffix in ("eml", "json")))
        self.assertEqual({(p.stat().st_size, stat.S_IMODE(p.stat().st_mode)) for p in made},
                         {(0, 0o640 & ~self.umask)})

    def test_error_without_errno_answered(self):
        """A request that fails with an error that has no errno (here, a
        session request without its record) is answered with errno 0 and
        the error's text, and the next request is still served."""
        self.run_program({"op": "session"}, {"op": "sync"})
        answers = sorted((entry[1] for entry in self.recorder.log if entry[0] == "answer"),
                         key=lambda answer: answer["id"])
        self.assertEqual(answers, [{"errno": 0, "error": "'record'", "id": 1}, {"id": 2}])

    def test_privileges_dropped_when_told(self):
        """Given a user and a group the program becomes them before it reads
        a request; without them it stays who it is."""
        became = []
        self.patch(privileges, "drop_privileges", lambda *ids: became.append(ids))
        self.run_program()
        self.assertEqual(became, [])
        self.patch(sys, "argv", [])
        self.patch(sys, "stdin", io.StringIO(""))
        disk.main([str(self.root), "1001", "1002"])
        self.assertEqual(became, [(1001, 1002)])
