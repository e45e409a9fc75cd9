"""The spool: grouped durable commits, files created ahead, crash recovery."""

import errno
import hashlib
import json
import os
import stat
import uuid
from pathlib import Path

import attrs

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial import unittest

from smtplatrine import spool as spool_module
from smtplatrine.capture import Identity, Metadata
from smtplatrine.disk import LocalDisk
from smtplatrine.spool import MAPPED, GroupCommit, Spool, SpoolReader, read_message, read_metadata
from smtplatrine.testing import (HeldDisk, connect, make_config, make_factory, settle,
                                 spooled)


def a_message(**status):
    """The metadata of a message of session s-1 with *status*."""
    return Metadata("m-1", Identity("s-1", "sensor-a", "192.0.2.7", 40000,
                                    "198.51.100.1", 25), **status)


class SpoolTests(unittest.TestCase):

    def setUp(self):
        root = Path(self.mktemp())
        self.disk = HeldDisk(root)
        self.syncs = self.disk.syncs
        self.spool = Spool(root, self.disk, reserve=4)

    def test_commit_waits_for_sync(self):
        """A commit fires only after the file system was synced."""
        message = self.spool.open(100)
        message.write(b"hello\r\n")
        fired = []
        self.spool.commit(message, a_message(acknowledged=True)).addCallback(fired.append)
        self.assertEqual(fired, [])
        self.syncs.pop().callback({})
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
            self.spool.commit(message, a_message()).addCallback(results.append)
        # One sync each for the first messages, then the rest share one.
        self.assertEqual(len(self.syncs), spool_module._SYNCS_IN_FLIGHT)
        self.syncs.pop(0).callback({})
        self.assertEqual(len(results), 1)
        self.assertEqual(len(self.syncs), spool_module._SYNCS_IN_FLIGHT)
        while self.syncs:
            self.syncs.pop(0).callback({})
        self.assertEqual(len(results), 10)

    def test_sync_failure(self):
        """A failed sync fails every commit of its group."""
        message = self.spool.open(100)
        d = self.spool.commit(message, a_message())
        self.syncs.pop().errback(OSError(5, "EIO"))
        self.failureResultOf(d, OSError)

    def test_limit(self):
        """A message keeps at most its limit and says it was truncated."""
        message = self.spool.open(5)
        message.write(b"0123456789")
        self.spool.commit(message, a_message())
        self.syncs.pop().callback({})
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
        self.spool.commit(done, a_message(acknowledged=True))
        self.syncs.pop().callback({})
        cut = self.spool.open(100)
        cut.write(b"cut short")
        cut._file.flush()
        restarted = Spool(self.spool.root, LocalDisk(self.spool.root))
        restarted.recover("sensor-a")
        names = sorted(p.name for p in self.spool.messages.iterdir())
        self.assertEqual(names, sorted(f"{m.message_id}.{e}" for m in (done, cut)
                                       for e in ("eml", "json")))
        recovered = json.loads(cut.path.with_suffix(".json").read_text())
        self.assertEqual((recovered["acknowledged"], recovered["recovered"],
                          recovered["size"], recovered["sensor"]),
                         (False, True, 9, "sensor-a"))
        self.assertTrue(read_metadata(done.path.with_suffix(".json")).acknowledged)

    def test_recover_writes_what_is_known(self):
        """A message a crash cut short is kept as received when its file
        was last written, with its size, as incomplete and unacknowledged,
        in a new session of its own (a distinct UUID each, no address or
        port: the connection is unknown); an empty file created ahead
        goes, whether or not its metadata file was made, and so do the
        temporary files of writes a crash interrupted."""
        cuts = []
        for body in (b"cut short", b"cut too"):
            cut = self.spool.open(100)
            cut.write(body)
            cut._file.flush()
            os.utime(cut.path, (1767000000.5, 1767000000.5))
            cuts.append(cut)
        lone = self.spool.messages / f"{uuid.uuid4()}.eml"
        lone.touch()
        stale = [self.spool.messages / "x.json.tmp", self.spool.root / "sessions" / "s.json.tmp"]
        for path in stale:
            path.write_text("{")
        Spool(self.spool.root, LocalDisk(self.spool.root)).recover("sensor-b")
        written = [json.loads(cut.path.with_suffix(".json").read_text()) for cut in cuts]
        self.assertEqual(
            [{k: w[k] for k in ("message", "sensor", "src_ip", "src_port", "dst_ip",
                                "dst_port", "received", "size", "acknowledged",
                                "incomplete", "recovered")} for w in written],
            [{"message": cut.path.stem, "sensor": "sensor-b", "src_ip": "", "src_port": 0,
              "dst_ip": "", "dst_port": 0, "received": 1767000000.5, "size": size,
              "acknowledged": False, "incomplete": True, "recovered": True}
             for cut, size in zip(cuts, (9, 7))])
        sessions = [uuid.UUID(w["session"]) for w in written]
        self.assertNotEqual(sessions[0], sessions[1])
        self.assertFalse(lone.exists())
        self.assertEqual([path.exists() for path in stale], [False, False])

    def test_committed_message_announced(self):
        """The consumer hears of a message, by its id, once it is on disk;
        its metadata is written with its keys in order (the same message
        makes the same bytes)."""
        heard = []
        self.spool.ready = type("Consumer", (), {"notify": lambda _, *said: heard.append(said)})()
        message = self.spool.open(100)
        self.spool.commit(message, a_message())
        self.assertEqual(heard, [])
        self.syncs.pop().callback({})
        self.assertEqual(heard, [("message", message.path.stem)])
        text = message.path.with_suffix(".json").read_text()
        self.assertEqual(list(json.loads(text)), sorted(json.loads(text)))

    def test_metadata_that_is_no_object(self):
        """A metadata file holding JSON that is no object is not a finished
        message."""
        message = self.spool.open(100)
        message.path.with_suffix(".json").write_text("[1, 2]")
        self.assertIsNone(read_metadata(message.path.with_suffix(".json")))

    def test_metadata_write_error_fails_commit(self):
        """A commit whose metadata the disk refuses fails with its error."""
        message = self.spool.open(100)
        message._metadata_file.close()
        message._metadata_file = open("/dev/full", "wb", buffering=0)  # as full as a disk gets
        failure = self.failureResultOf(self.spool.commit(message, a_message()), OSError)
        self.assertEqual(failure.value.errno, errno.ENOSPC)

    def test_group_commit(self):
        """Up to *limit* syncs run at once, each of the items given it; the
        items added meanwhile wait, and the next sync takes them all."""
        syncs = []

        def sync(items):
            syncs.append((items, defer.Deferred()))
            return syncs[-1][1]

        group = GroupCommit(sync, limit=2)
        done = []
        for item in "abcde":
            group.add(item).addCallback(done.append)
        self.assertEqual([items for items, _ in syncs], [["a"], ["b"]])
        syncs[0][1].callback(None)
        self.assertEqual([items for items, _ in syncs], [["a"], ["b"], ["c", "d", "e"]])
        self.assertEqual((done, group.running), (["a"], 2))
        syncs[1][1].callback(None)
        syncs[2][1].callback(None)
        self.assertEqual((done, group.running, group.waiting), (list("abcde"), 0, 0))
        group.add("f")
        self.assertEqual(syncs[-1][0], ["f"])

    def test_metadata_as_json(self):
        """The metadata is kept as one flat JSON object, the session's
        identity beside the envelope, and reads back the same; a record
        lacking fields (an older version's) reads with their defaults."""
        message = self.spool.open(100)
        message.write(b"x")
        sent = attrs.evolve(a_message(acknowledged=True), rcpts=("b@c.example",),
                            flags=("pipelining",), mail_params={"SIZE": "1"})
        self.spool.commit(message, sent)
        self.syncs.pop().callback({})
        path = message.path.with_suffix(".json")
        written = json.loads(path.read_text())
        self.assertEqual({k: written[k] for k in (
            "message", "session", "sensor", "src_ip", "src_port", "dst_ip", "dst_port",
            "rcpts", "flags", "mail_params", "acknowledged", "size")},
            {"message": "m-1", "session": "s-1", "sensor": "sensor-a",
             "src_ip": "192.0.2.7", "src_port": 40000, "dst_ip": "198.51.100.1",
             "dst_port": 25, "rcpts": ["b@c.example"], "flags": ["pipelining"],
             "mail_params": {"SIZE": "1"}, "acknowledged": True, "size": 1})
        self.assertEqual(read_metadata(path),
                         attrs.evolve(sent, size=1, sha256=hashlib.sha256(b"x").hexdigest()))
        path.write_text(json.dumps({"message": "m-2", "session": "s-2", "received": 5.0}))
        self.assertEqual(read_metadata(path), Metadata("m-2", Identity("s-2"), received=5.0))

    def test_discard(self):
        """A discarded message leaves no file behind."""
        message = self.spool.open(100)
        self.spool.discard(message)
        self.assertFalse(message.path.exists())
        self.assertFalse(message.path.with_suffix(".json").exists())


class AheadDisk(LocalDisk):
    """Disk work done at once, except file creation: each request waits in
    ``creates`` as (count, Deferred) until the test does it."""

    def __init__(self, root):
        super().__init__(root)
        self.creates = []

    def request(self, **request):
        if request["op"] != "create":
            return super().request(**request)
        self.creates.append((request["count"], defer.Deferred()))
        return self.creates[-1][1]

    def create(self, fail=False):
        """Do the oldest creation asked for; the IDs made."""
        count, d = self.creates.pop(0)
        if fail:
            d.errback(OSError(errno.ENOSPC, "No space left on device"))
            return []
        answer = super().request(op="create", count=count).result
        d.callback(answer)
        return answer["ids"]


class FilesAheadTests(unittest.TestCase):
    """Message files are created ahead, off the SMTP side's path."""

    def setUp(self):
        root = Path(self.mktemp())
        self.disk = AheadDisk(root)
        self.spool = Spool(root, self.disk, reserve=4)
        self.umask = os.umask(0)
        os.umask(self.umask)

    def test_reserve_kept(self):
        """The first message asks for the reserve to be made, once however
        many messages open meanwhile; the files made are used, newest
        first, and half-way through more are asked for, as many as lack;
        a creation that fails is asked for again at the next message."""
        first = self.spool.open(100)
        self.spool.open(100)
        self.assertEqual([count for count, _ in self.disk.creates], [4])
        made = self.disk.create()
        used = [self.spool.open(100).path.stem for _ in range(2)]
        self.assertEqual((used, self.disk.creates), (made[:1:-1], []))
        self.assertEqual(self.spool.open(100).path.stem, made[1])
        self.assertEqual([count for count, _ in self.disk.creates], [3])
        self.disk.create(fail=True)
        self.assertEqual(self.spool.open(100).path.stem, made[0])
        self.assertEqual([count for count, _ in self.disk.creates], [4])
        self.assertEqual((first.limit, first.size), (100, 0))
        self.assertEqual(stat.S_IMODE(first.path.stat().st_mode), 0o640 & ~self.umask)


class SpoolReaderTests(unittest.TestCase):
    """The storing side's view of a spool the SMTP side wrote."""

    def setUp(self):
        self.root = Path(self.mktemp())
        self.spool = Spool(self.root, LocalDisk(self.root))
        (self.root / "quarantine").mkdir()
        self.reader = SpoolReader(self.root)

    def message(self, body, **status):
        spool_file = self.spool.open(max(100, len(body)))
        spool_file.write(body)
        metadata = attrs.evolve(a_message(**status), message=spool_file.path.stem)
        self.spool.commit(spool_file, metadata)
        return spool_file.path.stem

    def test_finished_in_order(self):
        """Finished messages, in the order of their names, then session
        records likewise; a message still being written is not listed."""
        ids = sorted(self.message(b"x") for _ in range(3))
        self.spool.open(100).write(b"unfinished")
        for session in ("s-2", "s-1"):
            self.spool.save_session({"session": session})
        self.assertEqual(self.reader.finished(),
                         [("message", i) for i in ids] + [("session", "s-1"), ("session", "s-2")])
        self.assertEqual(self.reader.session("s-1"), {"session": "s-1"})
        self.assertIsNone(self.reader.session("s-3"))
        raw, metadata = read_message(self.reader.eml(ids[0]))
        self.assertEqual((raw[:], metadata.message, metadata.size), (b"x", ids[0], 1))

    def test_large_message_read_whole(self):
        """A message too large to be read into memory (it is mapped) reads
        back as it was written, byte for byte, as does one of the size
        read in one piece."""
        for size in (MAPPED, MAPPED + 1, 3 * MAPPED + 5):
            body = os.urandom(size)
            raw, metadata = read_message(self.reader.eml(self.message(body)))
            self.assertEqual((len(raw), hashlib.sha256(raw).hexdigest(), metadata.size),
                             (size, hashlib.sha256(body).hexdigest(), size))

    def test_quarantine(self):
        """A message that cannot be stored leaves the spool for quarantine/
        whole, with the reason beside it, its metadata given back; one
        without metadata goes too; a session record likewise."""
        kept = self.message(b"bad", acknowledged=True)
        metadata = self.reader.quarantine_message(kept, "the store refused it")
        self.assertEqual((metadata.message, metadata.acknowledged), (kept, True))
        bare = self.root / "messages" / "0000.eml"
        bare.write_bytes(b"no metadata")
        self.assertIsNone(self.reader.quarantine_message("0000", "unreadable"))
        self.spool.save_session({"session": "s-1"})
        self.reader.quarantine_session("s-1")
        quarantine = self.root / "quarantine"
        self.assertEqual(sorted(p.name for p in quarantine.iterdir()), sorted([
            f"{kept}.eml", f"{kept}.json", f"{kept}.reason", "0000.eml", "0000.reason",
            "s-1.json"]))
        self.assertEqual(((quarantine / f"{kept}.eml").read_bytes(),
                          (quarantine / f"{kept}.reason").read_text(),
                          (quarantine / "0000.reason").read_text()),
                         (b"bad", "the store refused it\n", "unreadable\n"))
        self.assertEqual(self.reader.finished(), [])
        self.assertEqual(list((self.root / "messages").glob(f"{kept}.*")), [])


class FullDisk(LocalDisk):
    """Disk work done at once; session records refused while ``full``;
    ``tries`` counts the session records asked to be written."""

    full = True
    tries = 0

    def request(self, **request):
        self.tries += request["op"] == "session"
        if request["op"] == "session" and self.full:
            return defer.fail(OSError(errno.ENOSPC, "No space left on device"))
        return super().request(**request)


class FullDiskTests(unittest.TestCase):

    def setUp(self):
        root = Path(self.mktemp())
        self.clock = Clock()
        self.disk = FullDisk(root)
        self.spool = Spool(root, self.disk, self.clock)
        self.ready = []
        self.spool.ready = self

    def notify(self, kind, item):
        """The spool's consumer: we note the session records it says are
        ready (and nothing else is)."""
        self.assertEqual(kind, "session")
        self.ready.append(item)

    def record(self, session):
        return {"session": session, "transcript": [[1.0, "C", "x" * 100]]}

    def test_session_records_kept_until_written(self):
        """Session records the disk refuses are kept, tried again every few
        seconds, and written in order once it takes them."""
        for session in ("a", "b"):
            self.successResultOf(self.spool.save_session(self.record(session)))
        self.clock.advance(5)
        self.assertEqual(self.ready, [])
        self.disk.full = False
        self.clock.advance(5)
        settle(self.clock)
        self.assertEqual(self.ready, ["a", "b"])
        for session in ("a", "b"):
            path = self.spool.root / "sessions" / f"{session}.json"
            self.assertEqual(json.loads(path.read_text()), self.record(session))
        self.assertEqual(self.spool.sessions_lost, 0)

    def test_session_records_counted_past_bound(self):
        """Past the bytes kept, refused records are counted as lost."""
        self.patch(spool_module, "_UNSAVED_BYTES", 300)
        for session in "abcd":
            self.spool.save_session(self.record(session))
        self.assertEqual(self.spool.sessions_lost, 2)
        self.disk.full = False
        self.clock.advance(5)
        settle(self.clock)
        self.assertEqual(self.ready, ["a", "b"])

    def test_record_taken_at_once_announced(self):
        """A session record the disk takes is announced to the consumer
        once written, by its session."""
        self.disk.full = False
        self.successResultOf(self.spool.save_session(self.record("a")))
        self.assertEqual(self.ready, ["a"])

    def test_discard_on_a_full_disk(self):
        """A message whose buffered bytes a full disk refuses to take, when
        its file is closed, is still removed."""
        message = self.spool.open(100000)
        message._file.close()
        message._file = open("/dev/full", "wb")  # as full as a disk gets; buffered
        message.write(b"x" * 100)
        self.spool.discard(message)
        self.assertTrue(message._file.closed)
        self.assertEqual(list(self.spool.messages.glob(f"{message.path.stem}.*")), [])

    def test_one_try_at_a_time(self):
        """However many records are kept, a full disk is asked again for
        one of them each few seconds, oldest first; when it has written
        them all, records it refuses later are tried again in turn."""
        for session in "abc":
            self.spool.save_session(self.record(session))
        self.assertEqual(self.disk.tries, 3)
        self.clock.advance(spool_module._RETRY_AFTER)
        settle(self.clock)
        self.assertEqual(self.disk.tries, 4)
        self.clock.advance(spool_module._RETRY_AFTER)
        settle(self.clock)
        self.assertEqual(self.disk.tries, 5)
        self.disk.full = False
        self.clock.advance(spool_module._RETRY_AFTER)
        settle(self.clock)
        self.assertEqual(self.ready, ["a", "b", "c"])
        self.disk.full = True
        self.spool.save_session(self.record("d"))
        self.disk.full = False
        self.clock.advance(spool_module._RETRY_AFTER)
        settle(self.clock)
        self.assertEqual(self.ready, ["a", "b", "c", "d"])

    def test_bound_exact_and_freed(self):
        """Records that fill the bound exactly are kept; the bytes of those
        written are free again for the next ones refused."""
        size = len(json.dumps(self.record("a")))
        self.patch(spool_module, "_UNSAVED_BYTES", 2 * size)
        for session in "abc":
            self.spool.save_session(self.record(session))
        self.assertEqual(self.spool.sessions_lost, 1)
        self.disk.full = False
        self.clock.advance(spool_module._RETRY_AFTER)
        settle(self.clock)
        self.disk.full = True
        for session in "de":
            self.spool.save_session(self.record(session))
        self.assertEqual(self.spool.sessions_lost, 1)
        self.disk.full = False
        self.clock.advance(spool_module._RETRY_AFTER)
        settle(self.clock)
        self.assertEqual(self.ready, ["a", "b", "d", "e"])

    def test_write_error_refuses_commit(self):
        """A message whose writing failed cannot be committed, and is removed."""
        message = self.spool.open(100000)
        message._file = open("/dev/full", "wb", buffering=0)  # as full as a disk gets
        self.addCleanup(message._file.close)
        message.write(b"x" * 10000)
        self.assertEqual((message.size, message.error.errno), (10000, errno.ENOSPC))
        self.failureResultOf(self.spool.commit(message, a_message()), OSError)
        self.spool.discard(message)
        self.assertFalse(message.path.exists())


class FlowControlTests(unittest.TestCase):
    """Postfix's in_flow_delay: while the backlog of messages not yet
    stored is at its bound, MAIL is answered after in_flow_delay, or as
    soon as storing catches up."""

    EHLO = b"EHLO client.example.org\r\n"
    MESSAGE = (b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n"
               b"DATA\r\nSubject: x\r\n\r\nbody\r\n.\r\n")
    MAIL = b"MAIL FROM:<a@b.example>\r\n"
    # Debian Postfix 3.7's reply to MAIL.
    MAIL_OK = b"250 2.1.0 Ok\r\n"

    def setUp(self):
        self.root = Path(self.mktemp())
        self.factory = make_factory(self.root, make_config(smtp={
            "spool_backlog_messages": 2, "spool_backlog_bytes": 10**6,
            "in_flow_delay": 1.0}))
        self.clock = self.factory.clock
        self.backlog = self.factory.spool.backlog

    def session(self):
        protocol, transport = connect(self.factory)
        protocol.dataReceived(self.EHLO)
        settle(self.clock)
        transport.clear()
        return protocol, transport

    def spool_messages(self, count):
        """Send *count* messages; their ids, as the spool names them."""
        protocol, transport = self.session()
        protocol.dataReceived(self.MESSAGE * count)
        settle(self.clock)
        self.assertEqual(transport.value().count(b"queued as"), count)
        return sorted(m["message"] for m, _ in spooled(self.factory.spool.messages))

    def test_mail_answered_at_once_under_the_bound(self):
        """With one message waiting (bound: two), MAIL is answered at once."""
        self.spool_messages(1)
        protocol, transport = self.session()
        protocol.dataReceived(self.MAIL)
        self.assertEqual(transport.value(), self.MAIL_OK)

    def test_mail_held_back_at_the_bound(self):
        """With two messages waiting, MAIL is answered only after
        in_flow_delay (and then taken: the delay slows, never refuses)."""
        self.spool_messages(2)
        protocol, transport = self.session()
        protocol.dataReceived(self.MAIL + b"RCPT TO:<c@d.example>\r\n")
        self.clock.advance(0.99)
        self.assertEqual(transport.value(), b"")
        self.clock.advance(0.01)
        self.assertEqual(transport.value(), self.MAIL_OK + b"250 2.1.5 Ok\r\n")

    def test_released_when_storing_catches_up(self):
        """A held MAIL is answered as soon as the storing process says a
        message left the spool, and the next MAIL is not held."""
        first, _ = self.spool_messages(2)
        protocol, transport = self.session()
        protocol.dataReceived(self.MAIL)
        self.clock.advance(0.3)
        self.assertEqual(transport.value(), b"")
        self.backlog.left([first])
        self.assertEqual(transport.value(), self.MAIL_OK)
        other, other_transport = self.session()
        other.dataReceived(self.MAIL)
        self.assertEqual(other_transport.value(), self.MAIL_OK)

    def test_ids_never_handed_off_ignored(self):
        """A message the storing process names that this spool never
        handed off (or names twice) changes no count."""
        first, _ = self.spool_messages(2)
        self.backlog.left(["00000000-0000-4000-8000-000000000000", first, first])
        self.assertEqual((len(self.backlog), self.backlog.over), (1, False))

    def test_bytes_bound(self):
        """One message of a million bytes is at the bound in bytes."""
        protocol, transport = self.session()
        protocol.dataReceived(self.MESSAGE.replace(b"body", b"b" * 10**6))
        settle(self.clock)
        self.assertEqual((len(self.backlog), self.backlog.bytes),
                         (1, len(b"Subject: x\r\n\r\n") + 10**6 + 2))
        self.assertTrue(self.backlog.over)

    def test_no_delay_when_zero(self):
        """in_flow_delay = 0 holds nothing back."""
        factory = make_factory(Path(self.mktemp()), make_config(smtp={
            "spool_backlog_messages": 1, "in_flow_delay": 0.0}))
        protocol, transport = connect(factory)
        protocol.dataReceived(self.EHLO + self.MESSAGE + self.MAIL)
        settle(factory.clock)
        self.assertTrue(factory.spool.backlog.over)
        self.assertTrue(transport.value().endswith(b"\r\n" + self.MAIL_OK))

    def test_counted_at_start(self):
        """After a restart the messages still in the spool are counted (the
        files created ahead and unused, and the unfinished, are not)."""
        self.spool_messages(2)
        restarted = Spool(self.root, LocalDisk(self.root), Clock(),
                          flow=self.factory.config.smtp)
        restarted.open(100).write(b"unfinished")
        restarted.recover("sensor-a")
        self.assertEqual(len(restarted.backlog), 3)
        self.assertTrue(restarted.backlog.over)

    def test_recounted_when_word_is_lost(self):
        """Messages stored by a storing process killed before it could say
        so hold MAIL back at most until the next count of the directory
        (every ten seconds while over the bound)."""
        for message in self.spool_messages(2):
            for path in self.factory.spool.messages.glob(f"{message}.*"):
                path.unlink()
        protocol, transport = self.session()
        protocol.dataReceived(self.MAIL)
        self.clock.advance(1)
        self.assertEqual(transport.value(), self.MAIL_OK)
        self.clock.advance(9)
        protocol.dataReceived(b"RSET\r\n" + self.MAIL)
        self.assertEqual(transport.value(), self.MAIL_OK + b"250 2.0.0 Ok\r\n" + self.MAIL_OK)
        self.assertEqual(len(self.backlog), 0)
