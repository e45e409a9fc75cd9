"""The one promise: nothing is acknowledged before it would survive a crash.

Sessions are driven in memory over a spool whose disk work is the disk
worker's own code run in this process (``LocalDisk``), with syncs and
renames recorded below it (tests/durability.py): at the moment a reply
that queues a message is written, the message's bytes, its metadata and
both their names must be what a power cut would leave.
"""

import hashlib
import json
import re
from pathlib import Path

from twisted.trial import unittest

from smtplatrine.testing import connect, make_factory
from tests.durability import DurabilityRecorder

EHLO = b"EHLO client.example.org\r\n"
ENVELOPE = b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n"


class AcknowledgementTests(unittest.TestCase):

    def setUp(self):
        directory = Path(self.mktemp())
        self.factory = make_factory(directory)
        self.recorder = DurabilityRecorder(self, directory)
        self.protocol, self.transport = connect(self.factory)
        self.acknowledged = []
        write = self.transport.write

        def write_checked(data):
            """Note, as the reply leaves, what a crash would leave of each
            message it acknowledges."""
            for queue_id in re.findall(rb"queued as ([0-9A-F]+)", data):
                self.acknowledged.append(self.durable(queue_id.decode()))
            write(data)
        self.transport.write = write_checked

    def durable(self, queue_id):
        """(raw bytes, metadata) of message *queue_id* that a crash now
        would leave; None for either that would be lost."""
        [path] = [p for p in self.factory.spool.messages.glob("*.eml")
                  if p.stem.replace("-", "").upper().startswith(queue_id)]
        metadata = self.recorder.durable(path.with_suffix(".json"))
        return (self.recorder.durable(path),
                json.loads(metadata) if metadata else None)

    def assertAcknowledgedDurable(self, messages):
        """Each of *messages* was queued, and was durable with its metadata
        when its 250 left."""
        self.assertEqual(len(self.acknowledged), len(messages))
        for (raw, metadata), message in zip(self.acknowledged, messages):
            self.assertEqual(raw, message)
            self.assertIsNotNone(metadata, "metadata not durable at the 250")
            self.assertEqual((metadata["acknowledged"], metadata["size"], metadata["sha256"]),
                             (True, len(message), hashlib.sha256(message).hexdigest()))

    def test_data_acknowledged_when_durable(self):
        """The 250 to DATA leaves once the message, its metadata and their
        names would survive a crash; the first message (files made on the
        spot) and the next (files made ahead) alike."""
        self.protocol.dataReceived(EHLO + ENVELOPE + b"DATA\r\nSubject: one\r\n\r\nx\r\n.\r\n"
                                   + ENVELOPE + b"DATA\r\nSubject: two\r\n\r\ny\r\n.\r\n")
        self.assertAcknowledgedDurable([b"Subject: one\r\n\r\nx\r\n",
                                        b"Subject: two\r\n\r\ny\r\n"])

    def test_bdat_acknowledged_when_durable(self):
        """The 250 to BDAT LAST leaves once the message, its metadata and
        their names would survive a crash."""
        self.protocol.dataReceived(EHLO + ENVELOPE + b"BDAT 9\r\nSubject: "
                                   + b"BDAT 9 LAST\r\nb\r\n\r\nbody")
        self.assertAcknowledgedDurable([b"Subject: b\r\n\r\nbody"])

    def test_failed_sync_never_acknowledged(self):
        """When the sync fails the client gets 451, never a 250, and the
        message is removed, as Postfix removes its queue file."""
        self.recorder.fail_syncs = True
        self.protocol.dataReceived(EHLO + ENVELOPE + b"DATA\r\nx\r\n.\r\n")
        self.assertEqual(self.acknowledged, [])
        self.assertTrue(self.transport.value().endswith(
            b"451 4.3.0 Error: queue file write error\r\n"))
        self.assertEqual([p for p in self.factory.spool.messages.iterdir()
                          if p.stat().st_size], [])

    def test_session_record_renamed_into_place(self):
        """A session record gets its name only by a rename of a complete
        file, so that a reader never sees half of one."""
        self.protocol.dataReceived(EHLO + b"QUIT\r\n")
        self.protocol.connectionLost(None)
        [path] = (self.factory.spool.root / "sessions").glob("*.json")
        renames = [rename for rename in self.recorder.renames if rename[1] == path.absolute()]
        self.assertEqual(len(renames), 1, "the record did not get its name by a rename")
        [(source, target, written, existed)] = renames
        self.assertEqual((source.parent, existed), (target.parent, False))
        self.assertEqual(written, path.read_bytes())
        self.assertEqual(json.loads(written)["session"], self.protocol.identity.session)
