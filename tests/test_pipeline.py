"""The pipeline: spool to database, with back-off, quarantine and replay."""

import base64
import email
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from twisted.internet import defer, reactor, task
from twisted.python.threadpool import ThreadPool
from twisted.trial import unittest
from zope.interface import implementer

from smtplatrine.disk import LocalDisk
from smtplatrine.events import Events
from smtplatrine.interfaces import IStoredConsumer
from smtplatrine.parse import Limits
from smtplatrine.parsers import ParseWorkers
from smtplatrine import pipeline as pipeline_module
from smtplatrine.pipeline import Pipeline, save_group
from smtplatrine.spool import Spool
from smtplatrine.store import dialects
from smtplatrine.store.database import Database
from smtplatrine.store.dialects import Rejected, Unavailable
from smtplatrine.store.records import save_message
from smtplatrine.testing import ListOutput
from tests.test_store import message_bytes, metadata


class _Reactor:
    """The real reactor's threads with a Clock's time, so that back-off
    delays can be stepped through."""

    def __init__(self):
        self.clock = task.Clock()
        self.callFromThread = reactor.callFromThread
        self.callLater = self.clock.callLater
        self.seconds = self.clock.seconds
        self.getThreadPool = reactor.getThreadPool


class _Failing(Database):
    """A SQLite database whose next interactions fail with ``errors``, that
    refuses the messages whose ids are in ``refused``, and the parsed rows
    of those in ``refuse_reading``."""

    errors = ()
    refused = ()
    refuse_reading = ()
    # A Deferred the next group's transaction waits for.
    hold = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The messages of each group stored in one transaction.
        self.groups = []

    async def run(self, interaction, *args):
        if self.errors:
            error, *self.errors = self.errors
            raise error
        messages = ([args[1]] if interaction is save_message
                    else args[1] if interaction is save_group else [])
        if interaction is save_group:
            self.groups.append([p.metadata.message for p in messages])
        if any(p.metadata.message in self.refused for p in messages):
            raise Rejected("row too big:\r\nforged log line")
        if any(p.metadata.message in self.refuse_reading and p.parsed.error is None
               for p in messages):
            raise Rejected("a value too long")
        if interaction is save_group:
            if self.hold is not None:
                hold, self.hold = self.hold, None
                await hold
        return await super().run(interaction, *args)


def retries(clock):
    """The pending back-off retries on *clock* (not the idle rescan)."""
    return [c for c in clock.getDelayedCalls() if getattr(c.func, "__name__", "") in ("_resume", "_connect")]


async def until(predicate, timeout=10.0):
    """Let the real reactor run until *predicate()* holds."""
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        await task.deferLater(reactor, 0.01, lambda: None)
    raise AssertionError("timed out")


def _rows(path):
    """Every row of every table of the SQLite database at *path*."""
    connection = sqlite3.connect(path)
    try:
        tables = [r[0] for r in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {t: connection.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()
                for t in tables}
    finally:
        connection.close()


def _digest(tool, path):
    """What coreutils' *tool* (sha256sum, md5sum) says of the file *path*."""
    return subprocess.run([tool, str(path)], capture_output=True, check=True,
                          text=True).stdout.split()[0]


def _status(pid):
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            return f.read()
    except OSError:
        return b""


class PipelineTests(unittest.TestCase):
    def setUp(self):
        self.root = Path(self.mktemp())
        self.spool = self.root / "spool"
        for name in ("messages", "sessions"):
            (self.spool / name).mkdir(parents=True)
        self.database = _Failing(dialects.SQLite(self.root / "db.sqlite"))
        self.addCleanup(self.database.close)
        self.output = ListOutput()
        self.reactor = _Reactor()
        threadpool = ThreadPool(1, 2)
        threadpool.start()
        self.addCleanup(threadpool.stop)
        self.parsers = ParseWorkers(2, Limits(), self.root / "attachments", None)
        self.pipeline = Pipeline(
            self.reactor, self.spool, self.database,
            Events(self.reactor.clock, [self.output]), self.parsers, threadpool,
            max_delay=8, left=self.gone)
        self.addCleanup(self.pipeline.stop)
        self.went = []

    def start(self, parsers=None):
        """Fork the parse workers (as the code is now; *parsers* instead of
        the two of setUp) and start the pipeline."""
        if parsers is not None:
            self.parsers = self.pipeline._parsers = parsers
        self.parsers.start()
        self.addCleanup(self.parsers._control.close)
        self.parsers.connect(reactor)
        self.addCleanup(self.parsers.stop)
        self.pipeline.start()

    def gone(self, message_ids):
        """The pipeline says messages left the spool: note which, with
        whether their spool files are gone by then."""
        messages = self.spool / "messages"
        self.went.extend((message_id, not list(messages.glob(f"{message_id}.*")))
                         for message_id in message_ids)

    def spool_message(self, message_id, raw=None):
        raw = raw or message_bytes()
        (self.spool / "messages" / f"{message_id}.eml").write_bytes(raw)
        (self.spool / "messages" / f"{message_id}.json").write_text(
            json.dumps(metadata(message_id, raw)))
        return message_id

    def stored(self):
        """The stored message IDs; none before the tables exist."""
        if not self.database.dialect.path.exists():
            return []
        connection = self.database.dialect.connect()
        try:
            return [r[0] for r in connection.execute(
                "SELECT message_id FROM honeypot_emails ORDER BY message_id")]
        except sqlite3.OperationalError:  # the schema is not committed yet
            return []
        finally:
            connection.close()

    def left(self, name="messages"):
        return sorted(p.name for p in (self.spool / name).iterdir())

    @defer.inlineCallbacks
    def test_startup_replays_spool(self):
        """At start every finished message in the spool is stored and leaves
        the spool; an unfinished one (empty metadata) stays."""
        first = self.spool_message("00000000-0000-4000-8000-00000000000a")
        (self.spool / "messages" / "00000000-0000-4000-8000-00000000000b.eml").write_bytes(b"x")
        (self.spool / "messages" / "00000000-0000-4000-8000-00000000000b.json").write_text("")
        self.start()
        yield defer.Deferred.fromCoroutine(until(lambda: self.stored() == [first]))
        yield defer.Deferred.fromCoroutine(until(lambda: len(self.left()) == 2))
        self.assertEqual(self.left(), ["00000000-0000-4000-8000-00000000000b.eml",
                                       "00000000-0000-4000-8000-00000000000b.json"])
        # The events follow the removal of the spool files, on the reactor.
        yield defer.Deferred.fromCoroutine(
            until(lambda: "smtplatrine.message.stored" in self.output.ids()))
        self.assertEqual(self.output.ids(), ["smtplatrine.attachment.stored",
                                             "smtplatrine.message.stored"])

    @defer.inlineCallbacks
    def test_after_commit_hook_cannot_fail_the_pipeline(self):
        """The after-commit hook (enrichment) gets each stored message; its
        raising keeps no message in the spool and stops no other."""
        handed = []

        @implementer(IStoredConsumer)
        class Enrichment:
            def stored(self, prepared):
                handed.append(prepared.metadata.message)
                raise RuntimeError("enrichment bug")

        self.pipeline.stored = Enrichment()
        ids = [self.spool_message(f"00000000-0000-4000-8000-00000000002{i}")
               for i in range(2)]
        self.start()
        yield defer.Deferred.fromCoroutine(until(lambda: self.stored() == ids))
        yield defer.Deferred.fromCoroutine(until(lambda: self.left() == []))
        # The hook runs once the spool files are gone.
        yield defer.Deferred.fromCoroutine(until(lambda: len(handed) == 2))
        self.assertEqual(sorted(handed), ids)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)

    @defer.inlineCallbacks
    def test_spool_files_kept_until_commits_durable(self):
        """A committed message keeps its spool files, and is not announced,
        until the database's sync has made its commit durable; a failed sync
        keeps them for the next scan, which stores nothing twice."""
        dialect = self.database.dialect
        failures = [OSError(5, "Input/output error")]
        synced = []

        def sync():
            synced.append(self.left())
            if failures:
                raise failures.pop()
            type(dialect).sync(dialect)

        dialect.sync = sync
        message = self.spool_message("00000000-0000-4000-8000-000000000012")
        self.start()
        yield defer.Deferred.fromCoroutine(until(lambda: self.stored() == [message]))
        yield defer.Deferred.fromCoroutine(until(lambda: synced))
        self.assertEqual(synced[0], [f"{message}.eml", f"{message}.json"])
        yield defer.Deferred.fromCoroutine(until(
            lambda: self.flushLoggedErrors(OSError)))
        self.assertEqual(len(self.left()), 2)
        self.assertEqual(self.output.ids(), [])
        self.pipeline._scan_when_idle()
        yield defer.Deferred.fromCoroutine(until(lambda: not self.left()))
        self.assertEqual(self.stored(), [message])

    @defer.inlineCallbacks
    def test_session_record_kept_until_commit_durable(self):
        """A stored session record leaves the spool, and is announced, only
        after the sync that makes its commit durable."""
        dialect = self.database.dialect
        seen_at_sync = []

        def sync():
            seen_at_sync.append((self.left("sessions"), self.output.ids()))
            type(dialect).sync(dialect)

        dialect.sync = sync
        record = dict(metadata("00000000-0000-4000-8000-000000000013", b"x"),
                      start=1767000000.0, end=1767000009.0, transcript=[], flags=[])
        name = f"{record['session']}.json"
        (self.spool / "sessions" / name).write_text(json.dumps(record))
        self.start()
        yield defer.Deferred.fromCoroutine(until(lambda: not self.left("sessions")))
        yield defer.Deferred.fromCoroutine(until(lambda: self.output.ids()))
        self.assertEqual(seen_at_sync, [([name], [])])
        self.assertEqual(self.output.ids(), ["smtplatrine.session.stored"])

    @defer.inlineCallbacks
    def test_grouped_commits_use_normal_sync(self):
        """The pipeline's grouped connection syncs at checkpoints only
        (synchronous=NORMAL, 1); other connections sync each commit (FULL, 2)."""
        grouped = Database(dialects.SQLite(self.root / "grouped.sqlite"), grouped=True)
        self.addCleanup(grouped.close)
        modes = yield defer.gatherResults([
            database.pool.runInteraction(
                lambda cursor: cursor.execute("PRAGMA synchronous").fetchone()[0])
            for database in (grouped, self.database)])
        self.assertEqual(modes, [1, 2])

    @defer.inlineCallbacks
    def test_message_cut_by_a_crash_stored(self):
        """A message a crash cut short mid-DATA is kept by the spool's recovery
        and stored, unacknowledged and flagged, with what was received."""
        cut = "00000000-0000-4000-8000-000000000011"
        (self.spool / "messages" / f"{cut}.eml").write_bytes(b"Subject: cut\r\n\r\nha")
        (self.spool / "messages" / f"{cut}.json").write_bytes(b"")
        Spool(self.spool, LocalDisk(self.spool)).recover("sensor-a")
        self.start()
        yield defer.Deferred.fromCoroutine(until(lambda: self.stored() == [cut]))
        connection = self.database.dialect.connect()
        self.addCleanup(connection.close)
        row = connection.execute(
            "SELECT sensor, header_subject, acknowledged, incomplete, recovered, raw"
            " FROM honeypot_emails").fetchone()
        self.assertEqual(row, ("sensor-a", "cut", 0, 1, 1, b"Subject: cut\r\n\r\nha"))

    @defer.inlineCallbacks
    def test_back_off_while_database_away(self):
        """While the database is unavailable the message stays in the spool
        and retries wait 1, 2, 4, 8, 8 seconds; then it is stored once."""
        self.start()
        yield defer.Deferred.fromCoroutine(until(lambda: self.pipeline._open))
        self.database.errors = [Unavailable("down")] * 5
        message = self.spool_message("00000000-0000-4000-8000-00000000000c")
        self.pipeline.notify("message", message)
        delays = []
        for _ in range(5):
            yield defer.Deferred.fromCoroutine(until(lambda: retries(self.reactor.clock)))
            [call] = retries(self.reactor.clock)
            delays.append(call.getTime() - self.reactor.clock.seconds())
            self.assertEqual(len(self.left()), 2)
            self.reactor.clock.advance(delays[-1])
        yield defer.Deferred.fromCoroutine(until(lambda: self.stored() == [message]))
        self.assertEqual(delays, [1, 2, 4, 8, 8])
        yield defer.Deferred.fromCoroutine(until(lambda: not self.left()))

    @defer.inlineCallbacks
    def test_rejected_message_quarantined(self):
        """A message the database refuses moves to quarantine with its reason,
        and the next message is stored all the same."""
        self.start()
        yield defer.Deferred.fromCoroutine(until(lambda: self.pipeline._open))
        bad = self.spool_message("00000000-0000-4000-8000-00000000000d")
        self.database.refused = {bad}
        self.pipeline.notify("message", bad)
        good = self.spool_message("00000000-0000-4000-8000-00000000000e")
        self.pipeline.notify("message", good)
        yield defer.Deferred.fromCoroutine(until(lambda: self.stored() == [good]))
        # The good one may be stored before the bad one's files have moved.
        quarantine = self.spool / "quarantine"
        yield defer.Deferred.fromCoroutine(until(
            lambda: (quarantine / f"{bad}.reason").exists()))
        self.assertEqual(sorted(p.name for p in quarantine.iterdir()),
                         [f"{bad}.eml", f"{bad}.json", f"{bad}.reason"])
        self.assertEqual((quarantine / f"{bad}.reason").read_bytes(),
                         b"row too big:\r\nforged log line\n")
        [event] = [e for e in self.output.events
                   if e["eventid"] == "smtplatrine.message.quarantined"]
        self.assertEqual(event["reason"], "row too big:\\r\\nforged log line")

    @defer.inlineCallbacks
    def test_messages_that_left_said(self):
        """Each message stored, or quarantined, is said to have left the
        spool (for the SMTP side's backlog) once its files are gone from
        it; a session record is not."""
        self.start()
        yield defer.Deferred.fromCoroutine(until(lambda: self.pipeline._open))
        bad = self.spool_message("00000000-0000-4000-8000-00000000001d")
        self.database.refused = {bad}
        good = self.spool_message("00000000-0000-4000-8000-00000000001e")
        (self.spool / "sessions" / "s-1.json").write_text(json.dumps(dict(
            metadata(good, b"x"), start=1767000000.0, end=1767000009.0,
            transcript=[], flags=[])))
        for kind, item in (("message", bad), ("message", good), ("session", "s-1")):
            self.pipeline.notify(kind, item)
        yield defer.Deferred.fromCoroutine(until(lambda: not self.left("sessions")))
        yield defer.Deferred.fromCoroutine(until(lambda: len(self.went) == 2))
        self.assertEqual(sorted(self.went), [(bad, True), (good, True)])

    @defer.inlineCallbacks
    def test_messages_parsed_meanwhile_stored_in_one_transaction(self):
        """The messages parsed while a transaction runs are stored together
        in the next; when the database refuses one of them, the others are
        stored all the same, each on its own, and it is quarantined."""
        self.start()
        yield defer.Deferred.fromCoroutine(until(lambda: self.pipeline._open))
        self.database.hold = held = defer.Deferred()
        first = self.spool_message("00000000-0000-4000-8000-000000000030")
        self.pipeline.notify("message", first)
        yield defer.Deferred.fromCoroutine(until(lambda: self.database.groups == [[first]]))
        more = [self.spool_message(f"00000000-0000-4000-8000-00000000003{i}")
                for i in range(1, 5)]
        self.database.refused = {more[2]}
        for message in more:
            self.pipeline.notify("message", message)
        yield defer.Deferred.fromCoroutine(until(lambda: self.pipeline._writer.pending == 5))
        held.callback(None)
        good = sorted([first, *more[:2], more[3]])
        yield defer.Deferred.fromCoroutine(until(lambda: self.stored() == good))
        self.assertEqual(sorted(self.database.groups[1]), more)
        yield defer.Deferred.fromCoroutine(until(lambda: len(self.went) == 5))
        self.assertEqual(sorted(p.name for p in (self.spool / "quarantine").iterdir()),
                         [f"{more[2]}.{ext}" for ext in ("eml", "json", "reason")])

    @defer.inlineCallbacks
    def test_parse_failure_stored(self):
        """A message whose parsing raises (a bug) is stored all the same,
        unparsed, flagged parse_failed with the reason; it leaves the spool,
        nothing is quarantined, and the events say so."""
        def broken(raw, limits):
            raise UnicodeError("UTF-16 stream does not start with BOM")

        self.patch(pipeline_module, "parse", broken)
        raw = message_bytes()
        message = self.spool_message("00000000-0000-4000-8000-000000000014", raw)
        self.start()
        yield defer.Deferred.fromCoroutine(until(lambda: self.stored() == [message]))
        yield defer.Deferred.fromCoroutine(until(lambda: not self.left()))
        yield defer.Deferred.fromCoroutine(until(
            lambda: "smtplatrine.message.stored" in self.output.ids()))
        # The worker logged the traceback (on its output, not in this process).
        connection = self.database.dialect.connect()
        self.addCleanup(connection.close)
        row = connection.execute("SELECT defects, parse_error, raw, mail_from"
                                 " FROM honeypot_emails").fetchone()
        self.assertEqual(row, ('["parse_failed"]', "the parser failed: UnicodeError: UTF-16"
                               " stream does not start with BOM", raw, "alice@example.net"))
        self.assertFalse((self.spool / "quarantine").exists()
                         and any((self.spool / "quarantine").iterdir()))
        self.assertEqual(self.output.ids(), ["smtplatrine.message.parse_failed",
                                             "smtplatrine.message.stored"])
        self.assertEqual(self.output.events[0]["reason"], "the parser failed: UnicodeError:"
                         " UTF-16 stream does not start with BOM")

    @defer.inlineCallbacks
    def test_refused_reading_stored_unparsed(self):
        """A message whose parsed rows the database refuses is stored
        unparsed, with the database's reason; not quarantined."""
        self.start()
        yield defer.Deferred.fromCoroutine(until(lambda: self.pipeline._open))
        message = self.spool_message("00000000-0000-4000-8000-000000000015")
        self.database.refuse_reading = {message}
        self.pipeline.notify("message", message)
        yield defer.Deferred.fromCoroutine(until(lambda: self.stored() == [message]))
        yield defer.Deferred.fromCoroutine(until(lambda: not self.left()))
        connection = self.database.dialect.connect()
        self.addCleanup(connection.close)
        row = connection.execute("SELECT defects, parse_error FROM honeypot_emails").fetchone()
        self.assertEqual(row, ('["parse_failed"]', "the database refused the parsed message:"
                               " Rejected: a value too long"))

    @defer.inlineCallbacks
    def test_unreadable_message_quarantined(self):
        """Metadata whose message file is gone is quarantined, not retried."""
        self.start()
        yield defer.Deferred.fromCoroutine(until(lambda: self.pipeline._open))
        lost = self.spool_message("00000000-0000-4000-8000-00000000000f")
        (self.spool / "messages" / f"{lost}.eml").unlink()
        self.pipeline.notify("message", lost)
        reason = self.spool / "quarantine" / f"{lost}.reason"
        yield defer.Deferred.fromCoroutine(until(reason.exists))
        self.assertIn("cannot be read", reason.read_text())

    @defer.inlineCallbacks
    def test_database_down_at_start(self):
        """A database that cannot be opened at start is retried with back-off."""
        self.database.errors = [Unavailable("refused")]
        message = self.spool_message("00000000-0000-4000-8000-000000000010")
        self.start()
        yield defer.Deferred.fromCoroutine(until(lambda: retries(self.reactor.clock)))
        self.assertEqual(self.stored(), [])
        self.reactor.clock.advance(1)
        yield defer.Deferred.fromCoroutine(until(lambda: self.stored() == [message]))


    @defer.inlineCallbacks
    def test_stored_as_if_parsed_here(self):
        """A message parsed in a worker is stored with the hashes coreutils
        gives of its file and of its attachment (decoded by Python's email
        package), the attachment on disk under its SHA-256, and every row
        the same as when it is parsed in this process."""
        raw = message_bytes()
        message_id = "00000000-0000-4000-8000-000000000040"
        self.spool_message(message_id, raw)
        here = self.root / "here"
        for name in ("messages", "attachments"):
            (here / name).mkdir(parents=True)
        for path in (self.spool / "messages").iterdir():
            shutil.copy(path, here / "messages")
        eml_sha256 = _digest("sha256sum", here / "messages" / f"{message_id}.eml")
        eml_md5 = _digest("md5sum", here / "messages" / f"{message_id}.eml")
        [part] = [p for p in email.message_from_bytes(raw).walk()
                  if p.get_content_type() == "application/pdf"]
        (here / "attachment.pdf").write_bytes(part.get_payload(decode=True))
        attachment_sha256 = _digest("sha256sum", here / "attachment.pdf")

        self.start()
        yield defer.Deferred.fromCoroutine(until(lambda: self.stored() == [message_id]))
        yield defer.Deferred.fromCoroutine(until(lambda: not self.left()))
        connection = sqlite3.connect(self.root / "db.sqlite")
        self.addCleanup(connection.close)
        self.assertEqual(connection.execute(
            "SELECT sha256, md5, size, raw, defects FROM honeypot_emails").fetchone(),
            (eml_sha256, eml_md5, len(raw), raw, "[]"))
        self.assertEqual(connection.execute(
            "SELECT sha256 FROM honeypot_attachments").fetchall(), [(attachment_sha256,)])
        [kept] = [p for p in (self.root / "attachments").rglob("*") if p.is_file()]
        self.assertEqual((kept.name, _digest("sha256sum", kept)),
                         (attachment_sha256, attachment_sha256))

        database = Database(dialects.SQLite(here / "db.sqlite"))
        self.addCleanup(database.close)
        yield defer.Deferred.fromCoroutine(database.open())
        prepared = pipeline_module.prepare(here / "messages" / f"{message_id}.eml",
                                           Limits(), here / "attachments", None)
        yield defer.Deferred.fromCoroutine(database.run(
            save_message, database.dialect, prepared, self.reactor.seconds()))
        mine, theirs = _rows(self.root / "db.sqlite"), _rows(here / "db.sqlite")
        # The schema's versions say when each was made; the rest is the message's.
        del mine["schema_version"], theirs["schema_version"]
        self.assertEqual(mine, theirs)

    @defer.inlineCallbacks
    def test_large_message_comes_back_whole(self):
        """A 3 MB message kept in the database comes back from its worker
        whole (many socket reads), byte-exact, its hash sha256sum's."""
        raw = b"Subject: big\r\n\r\n" + b"".join(
            b"%076d\r\n" % i for i in range(40000))
        message_id = self.spool_message("00000000-0000-4000-8000-000000000045", raw)
        digest = _digest("sha256sum", self.spool / "messages" / f"{message_id}.eml")
        self.start()
        yield defer.Deferred.fromCoroutine(until(lambda: self.stored() == [message_id]))
        connection = sqlite3.connect(self.root / "db.sqlite")
        self.addCleanup(connection.close)
        self.assertEqual(connection.execute(
            "SELECT sha256, size, raw = ?, header_subject FROM honeypot_emails",
            (raw,)).fetchone(), (digest, len(raw), 1, "big"))

    @defer.inlineCallbacks
    def test_large_attachment_kept_whole(self):
        """A 6 MiB base64 attachment (decoded as it is read, never whole in
        the worker's memory) is kept on disk and stored with the hash
        sha256sum gives of what Python's email package decodes."""
        payload = os.urandom(6 * 2 ** 20 + 1)
        raw = (b"Subject: big\r\nMIME-Version: 1.0\r\n"
               b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
               b"--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
               b"--b\r\nContent-Type: application/zip; name=big.zip\r\n"
               b"Content-Transfer-Encoding: base64\r\n\r\n"
               + base64.encodebytes(payload).replace(b"\n", b"\r\n") + b"--b--\r\n")
        [part] = [p for p in email.message_from_bytes(raw).walk()
                  if p.get_content_type() == "application/zip"]
        (self.root / "big.zip").write_bytes(part.get_payload(decode=True))
        expected = _digest("sha256sum", self.root / "big.zip")
        message_id = self.spool_message("00000000-0000-4000-8000-000000000046", raw)
        self.start()
        yield defer.Deferred.fromCoroutine(until(lambda: self.stored() == [message_id]))
        connection = sqlite3.connect(self.root / "db.sqlite")
        self.addCleanup(connection.close)
        self.assertEqual(connection.execute(
            "SELECT sha256, size, filename FROM honeypot_attachments").fetchall(),
            [(expected, len(payload), "big.zip")])
        [kept] = [p for p in (self.root / "attachments").rglob("*") if p.is_file()]
        self.assertEqual((kept.name, _digest("sha256sum", kept)), (expected, expected))

    def hang_on(self, marker):
        """Make the parser hang on messages holding *marker* (once it has
        said so in a file, returned), and parse the others."""
        started = self.root / "parsing"
        real = pipeline_module.parse

        def parse(raw, limits):
            if raw.find(marker) >= 0:
                started.touch()
                time.sleep(3600)
            return real(raw, limits)

        self.patch(pipeline_module, "parse", parse)
        return started

    def busy_worker(self):
        [worker] = [w for w in self.parsers._workers if w.job is not None]
        return worker.pid

    def worker_pids(self):
        return {w.pid for w in self.parsers._workers}

    @defer.inlineCallbacks
    def test_worker_killed_mid_parse(self):
        """A worker killed (SIGKILL) while it parses a message costs that
        message its parse only: it is stored unparsed, flagged
        parse_failed with why, and leaves the spool; the next message is
        parsed by a new worker."""
        started = self.hang_on(b"Subject: Killer")
        killer = self.spool_message("00000000-0000-4000-8000-000000000041",
                                    message_bytes(subject="Killer"))
        self.start(ParseWorkers(1, Limits(), self.root / "attachments", None))
        yield defer.Deferred.fromCoroutine(until(started.exists))
        killed = self.busy_worker()
        os.kill(killed, signal.SIGKILL)
        yield defer.Deferred.fromCoroutine(until(lambda: self.stored() == [killer]))
        yield defer.Deferred.fromCoroutine(until(lambda: not self.left()))
        next_one = self.spool_message("00000000-0000-4000-8000-000000000042")
        self.pipeline.notify("message", next_one)
        yield defer.Deferred.fromCoroutine(until(lambda: len(self.stored()) == 2))
        connection = sqlite3.connect(self.root / "db.sqlite")
        self.addCleanup(connection.close)
        self.assertEqual(connection.execute(
            "SELECT message_id, defects, parse_error, header_subject, raw"
            " FROM honeypot_emails ORDER BY message_id").fetchall(),
            [(killer, '["parse_failed"]', "the parse worker ended", None,
              message_bytes(subject="Killer")),
             (next_one, "[]", None, "Invoice 42", message_bytes())])
        self.assertNotIn(killed, self.worker_pids())
        self.assertEqual(len(self.worker_pids()), 1)
        self.assertEqual([e["reason"] for e in self.output.events
                          if e["eventid"] == "smtplatrine.message.parse_failed"],
                         ["the parse worker ended"])

    @defer.inlineCallbacks
    def test_worker_hung_killed(self):
        """A worker that outlives its deadline (3 x parse_seconds) is
        killed: its message is stored unparsed, saying so, and another
        message is parsed meanwhile by the other worker."""
        started = self.hang_on(b"Subject: Hang")
        hung = self.spool_message("00000000-0000-4000-8000-000000000043",
                                  message_bytes(subject="Hang"))
        self.start(ParseWorkers(2, Limits(seconds=0.5), self.root / "attachments", None))
        yield defer.Deferred.fromCoroutine(until(started.exists))
        killed = self.busy_worker()
        other = self.spool_message("00000000-0000-4000-8000-000000000044")
        self.pipeline.notify("message", other)
        yield defer.Deferred.fromCoroutine(until(lambda: self.stored() == [other]))
        yield defer.Deferred.fromCoroutine(until(lambda: len(self.stored()) == 2))
        connection = sqlite3.connect(self.root / "db.sqlite")
        self.addCleanup(connection.close)
        self.assertEqual(connection.execute(
            "SELECT defects, parse_error FROM honeypot_emails WHERE message_id = ?",
            (hung,)).fetchone(), ('["parse_failed"]', "the parse worker was killed after 1.5 s"))
        yield defer.Deferred.fromCoroutine(until(lambda: not os.path.exists(f"/proc/{killed}")
                                                 or b"State:\tZ" in _status(killed)))

