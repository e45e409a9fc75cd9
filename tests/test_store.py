"""The forensic store: the same tests against SQLite and against MariaDB."""

import base64
import hashlib
import json
import time
from pathlib import Path

import attrs
from twisted.internet import defer
from twisted.trial import unittest

from smtplatrine.config import MySQL as MySQLSettings
from smtplatrine.layout import RawStore
from smtplatrine.parse import Limits, unparsed
from smtplatrine.pipeline import prepare
from smtplatrine.store import dialects, records, schema
from smtplatrine.store.database import Database
from smtplatrine.store.dialects import Rejected
from tests.mariadb import shared_database

SESSION = "6f1c1f0e-2d5c-4c53-9a57-3c1f3a0e9a11"
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 4


def message_bytes(subject="Invoice 42", to="Bob <bob+sales@example.org>"):
    """A multipart message with a text body and one PDF attachment."""
    attachment = base64.encodebytes(PDF).replace(b"\n", b"\r\n")
    return (
        b"Received: from relay.example.net (relay.example.net [192.0.2.7])\r\n"
        b"\tby mx.example.com with ESMTP id 4AbCdE for <bob@example.org>;\r\n"
        b"\tMon, 2 Mar 2026 10:00:00 +0000\r\n"
        b"From: Alice <alice@example.net>\r\n"
        b"To: " + to.encode() + b"\r\n"
        b"Cc: carol@example.org\r\n"
        b"Subject: " + subject.encode() + b"\r\n"
        b"Message-ID: <42@example.net>\r\n"
        b"X-Mailer: Mailer 1.0\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
        b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        b"Pay at http://pay.example.com/x now.\r\n"
        b"--b1\r\nContent-Type: application/pdf\r\n"
        b"Content-Disposition: attachment; filename=\"../../etc/cron.d/x.pdf\"\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + attachment +
        b"--b1--\r\n")


def metadata(message_id, raw, **changes):
    record = {
        "message": message_id, "session": SESSION, "sensor": "sensor-a",
        "src_ip": "2001:db8::1", "src_port": 40000, "dst_ip": "::1", "dst_port": 25,
        "queue_id": message_id.replace("-", "")[:11].upper(),
        "transport": "DATA", "mail_from": "alice@example.net", "mail_params": {},
        "rcpts": ["bob+sales@example.org", "dave@example.org"],
        "session_start": 1767000000.0, "received": 1767000001.5, "helo": "client.example",
        "tls": None, "flags": [], "acknowledged": True, "incomplete": False,
        "truncated": False, "size": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
    record.update(changes)
    return record


def prepared(directory, message_id, raw, attachments=None, **changes):
    """A spooled message *raw*, prepared as the pipeline does."""
    eml = Path(directory) / f"{message_id}.eml"
    eml.write_bytes(raw)
    eml.with_suffix(".json").write_text(json.dumps(metadata(message_id, raw, **changes)))
    return prepare(eml, Limits(), attachments, None)


class StoreTestsMixin:
    """What every database must do; ``make_dialect`` says which."""

    @defer.inlineCallbacks
    def setUp(self):
        self.tmp = Path(self.mktemp())
        self.tmp.mkdir()
        self.database = Database(self.make_dialect())
        self.addCleanup(self.database.close)
        yield defer.Deferred.fromCoroutine(self.database.open())

    def save(self, item):
        return defer.Deferred.fromCoroutine(self.database.run(
            records.save_message, self.database.dialect, item, time.time()))

    def query(self, statement, *args):
        def run(cursor):
            cursor.execute(self.database.dialect.sql(statement), args)
            return [tuple(row) for row in cursor.fetchall()]
        return defer.Deferred.fromCoroutine(self.database.run(run))

    @defer.inlineCallbacks
    def test_schema_version(self):
        """The schema is created at version 8 (002 the enrichment, 003 the
        block list, 004 the dashboard, 005 imports and parse failures, 006
        attachment forensics, 007 the tallies, 008 the live view's
        numbering), and opening again keeps it."""
        yield defer.Deferred.fromCoroutine(self.database.open())
        rows = yield self.query("SELECT version FROM schema_version ORDER BY version")
        self.assertEqual(rows, [(1,), (2,), (3,), (4,), (5,), (6,), (7,), (8,)])

    @defer.inlineCallbacks
    def test_upgrade_in_any_order(self):
        """A database at version 3 is upgraded with 005; a file numbered
        below the newest applied (004, merged later) is applied all the
        same, and only once; a read-only check wants it too."""
        database = Database(self.make_dialect())
        self.addCleanup(database.close)
        dialect = database.dialect
        older = [m for m in dialect.migrations() if m[0] <= 3]
        run = lambda migrations: defer.Deferred.fromCoroutine(database.run(
            schema.upgrade, dialect, migrations, True))
        self.assertEqual((yield run(older)), (3, [1, 2, 3]))
        without_four = [m for m in dialect.migrations() if m[0] != 4]
        newest = dialect.migrations()[-1][0]
        later = [m[0] for m in dialect.migrations() if m[0] > 6]
        self.assertEqual((yield run(without_four)), (newest, [5, 6, *later]))
        checked = defer.Deferred.fromCoroutine(database.run(
            schema.check, dialect, dialect.migrations()))
        error = yield self.assertFailure(checked, Rejected)
        self.assertIn("lacks 004_dashboard.sql", str(error))
        self.assertEqual((yield run(dialect.migrations())), (newest, [4]))
        self.assertEqual((yield run(dialect.migrations())), (newest, []))

        def columns(cursor):
            cursor.execute("SELECT imported, import_file, import_index, parse_error, md5,"
                           " (SELECT COUNT(*) FROM web_users) FROM honeypot_emails")
            return cursor.fetchall()
        self.assertEqual(list((yield defer.Deferred.fromCoroutine(database.run(columns)))), [])

    @defer.inlineCallbacks
    def test_forensics_upgrade_keeps_attachments(self):
        """A database at version 3 with a message gets 006: its attachment
        rows stay, each with no parent (they are MIME parts)."""
        database = Database(self.make_dialect())
        self.addCleanup(database.close)
        dialect = database.dialect

        def run(*args):
            return defer.Deferred.fromCoroutine(database.run(*args))
        yield run(schema.upgrade, dialect, [m for m in dialect.migrations() if m[0] <= 3],
                  True)

        def old_columns(cursor):
            # What 001's honeypot_emails has: the message as version 3 kept it.
            item = prepared(self.tmp, "00000000-0000-4000-8000-000000000009",
                            message_bytes())
            cursor.execute(dialect.insert("honeypot_attachments", [
                "attachment_id", "message_id", "position", "sensor", "filename",
                "content_type", "disposition", "size", "md5", "sha1", "sha256"]),
                ("00000000-0000-5000-8000-000000000001", item.metadata.message, 0, "s",
                 "a.txt", "text/plain", "attachment", 1, "0" * 32, "0" * 40, "0" * 64))
        yield run(old_columns)
        applied = [m[0] for m in dialect.migrations() if m[0] > 3]
        self.assertEqual((yield run(schema.upgrade, dialect, dialect.migrations(), True)),
                         (applied[-1], applied))

        def parents(cursor):
            cursor.execute("SELECT filename, parent_id FROM honeypot_attachments")
            return [tuple(row) for row in cursor.fetchall()]
        self.assertEqual((yield run(parents)), [("a.txt", None)])

    @defer.inlineCallbacks
    def test_unparsed_message(self):
        """A message that could not be parsed is stored with its envelope,
        raw bytes and hashes, flagged parse_failed with the reason."""
        raw = message_bytes()
        item = prepared(self.tmp, "00000000-0000-4000-8000-00000000000b", raw)
        item = attrs.evolve(item, parsed=unparsed("the parser failed: boom"),
                            attachment_paths=())
        self.assertTrue((yield self.save(item)))
        rows = yield self.query("SELECT mail_from, raw, sha256, defects, parse_error,"
                                " header_subject, body_text, body_html, imported"
                                " FROM honeypot_emails")
        self.assertEqual(rows, [("alice@example.net", raw, hashlib.sha256(raw).hexdigest(),
                                 '["parse_failed"]', "the parser failed: boom", None,
                                 "", "", 0)])
        rows = yield self.query("SELECT COUNT(*) FROM honeypot_email_headers")
        self.assertEqual(rows, [(0,)])

    @defer.inlineCallbacks
    def test_update_reading(self):
        """Reading a stored message again replaces its rows in place, counts
        recipients it newly carries once, and a second time changes nothing."""
        message_id = "00000000-0000-4000-8000-00000000000c"
        item = prepared(self.tmp, message_id, message_bytes())
        yield self.save(attrs.evolve(item, parsed=unparsed("old parser"),
                                     attachment_paths=()))
        update = lambda i: defer.Deferred.fromCoroutine(self.database.run(
            records.update_reading, self.database.dialect, i))
        self.assertTrue((yield update(item)))
        self.assertFalse((yield update(item)))
        rows = yield self.query("SELECT header_subject, defects, parse_error FROM honeypot_emails")
        self.assertEqual(rows, [("Invoice 42", "[]", None)])
        # The tallies count the new reading instead of the old one.
        rows = yield self.query("SELECT value, n FROM honeypot_tally_totals"
                                " WHERE kind = 'from_domain' AND sensor = ''")
        self.assertEqual(rows, [("example.net", 1)])
        # A reading that differs only in its URLs reads differently.
        self.assertTrue((yield update(attrs.evolve(item, parsed=attrs.evolve(
            item.parsed, urls=())))))
        self.assertTrue((yield update(item)))
        rows = yield self.query("SELECT value, n, sensor FROM honeypot_tally_totals"
                                " WHERE kind = 'from_domain' ORDER BY sensor")
        self.assertEqual(rows, [("example.net", 1, ""), ("example.net", 1, "sensor-a")])
        # A message not stored is not read again.
        other = prepared(self.tmp, "00000000-0000-4000-8000-00000000000d", message_bytes())
        self.assertFalse((yield update(other)))
        rows = yield self.query("SELECT sha256, attachment_id FROM honeypot_attachments")
        self.assertEqual(rows, [(hashlib.sha256(PDF).hexdigest(),
                                 records.attachment_id(message_id, 0))])
        for table, count in [("honeypot_email_headers", 9), ("honeypot_email_received", 1),
                             ("honeypot_email_urls", 1), ("honeypot_email_recipients", 4)]:
            rows = yield self.query(f"SELECT COUNT(*) FROM {table}")
            self.assertEqual(rows, [(count,)], table)
        rows = yield self.query("SELECT address, seen FROM honeypot_recipients ORDER BY address")
        self.assertEqual(rows, [("bob+sales@example.org", 1), ("carol@example.org", 1),
                                ("dave@example.org", 1)])
        # Read as unparsed again: the Cc is gone, and its count with it.
        self.assertTrue((yield update(attrs.evolve(item, parsed=unparsed("x")))))
        rows = yield self.query("SELECT address, seen FROM honeypot_recipients ORDER BY address")
        self.assertEqual(rows, [("bob+sales@example.org", 1), ("dave@example.org", 1)])
        rows = yield self.query("SELECT COUNT(*) FROM honeypot_attachments")
        self.assertEqual(rows, [(0,)])

    @defer.inlineCallbacks
    def test_message_columns(self):
        """Envelope, decoded headers, bodies and hashes land in their columns."""
        raw = message_bytes()
        yield self.save(prepared(self.tmp, "00000000-0000-4000-8000-000000000001", raw))
        rows = yield self.query(
            "SELECT mail_from, client_ip, server_port, header_subject, header_from,"
            " header_x_mailer, header_message_id, size, sha256, raw, sensor"
            " FROM honeypot_emails")
        self.assertEqual(rows, [(
            "alice@example.net", "2001:db8::1", 25, "Invoice 42",
            "Alice <alice@example.net>", "Mailer 1.0", "<42@example.net>",
            len(raw), hashlib.sha256(raw).hexdigest(), raw, "sensor-a")])

    @defer.inlineCallbacks
    def test_attachment_rows_and_file(self):
        """The attachment's hashes are stored and its file is kept under its
        SHA-256, never under the sender's name."""
        files = self.tmp / "attachments"
        yield self.save(prepared(self.tmp, "00000000-0000-4000-8000-000000000002",
                                 message_bytes(), attachments=files))
        sha256 = hashlib.sha256(PDF).hexdigest()
        rows = yield self.query(
            "SELECT filename, content_type, size, md5, sha1, sha256, stored_path"
            " FROM honeypot_attachments")
        self.assertEqual(rows, [(
            "../../etc/cron.d/x.pdf", "application/pdf", len(PDF),
            hashlib.md5(PDF).hexdigest(), hashlib.sha1(PDF).hexdigest(), sha256,
            f"{sha256[:2]}/{sha256}")])
        self.assertEqual((files / sha256[:2] / sha256).read_bytes(), PDF)
        self.assertEqual(sorted(p.name for p in files.rglob("*") if p.is_file()), [sha256])

    @defer.inlineCallbacks
    def test_replay_changes_nothing(self):
        """Storing a message a second time changes no row."""
        item = prepared(self.tmp, "00000000-0000-4000-8000-000000000003", message_bytes())
        first = yield self.save(item)
        second = yield self.save(item)
        self.assertEqual((first, second), (True, False))
        for table in ("honeypot_emails", "honeypot_attachments", "honeypot_email_headers",
                      "honeypot_email_recipients"):
            rows = yield self.query(f"SELECT COUNT(*) FROM {table}")
            self.assertEqual(rows[0][0], {"honeypot_emails": 1, "honeypot_attachments": 1,
                                          "honeypot_email_headers": 9,
                                          "honeypot_email_recipients": 4}[table], table)
        rows = yield self.query("SELECT seen FROM honeypot_recipients"
                                " WHERE address = 'bob+sales@example.org'")
        self.assertEqual(rows, [(1,)])

    @defer.inlineCallbacks
    def test_recipients(self):
        """One row per address with user, tag and domain, counted per message,
        and how each message carried it."""
        yield self.save(prepared(self.tmp, "00000000-0000-4000-8000-000000000004",
                                 message_bytes(), received=1767000001.0))
        yield self.save(prepared(self.tmp, "00000000-0000-4000-8000-000000000005",
                                 message_bytes(to="eve@example.org"),
                                 received=1767000100.0, rcpts=["bob+sales@example.org"]))
        rows = yield self.query(
            "SELECT address, username, tag, domain, seen, first_seen, last_seen"
            " FROM honeypot_recipients ORDER BY address")
        first, last = "2025-12-29 09:20:01", "2025-12-29 09:21:40"
        self.assertEqual([r[:5] + (str(r[5])[:19], str(r[6])[:19]) for r in rows], [
            ("bob+sales@example.org", "bob", "sales", "example.org", 2, first, last),
            ("carol@example.org", "carol", None, "example.org", 2, first, last),
            ("dave@example.org", "dave", None, "example.org", 1, first, first),
            ("eve@example.org", "eve", None, "example.org", 1, last, last)])
        rows = yield self.query(
            "SELECT address, kind FROM honeypot_email_recipients WHERE message_id = ?"
            " ORDER BY address, kind", "00000000-0000-4000-8000-000000000004")
        self.assertEqual(rows, [("bob+sales@example.org", "envelope"),
                                ("bob+sales@example.org", "to"),
                                ("carol@example.org", "cc"),
                                ("dave@example.org", "envelope")])

    @defer.inlineCallbacks
    def test_headers_and_received_in_order(self):
        """Every header in order, and the Received header parsed."""
        yield self.save(prepared(self.tmp, "00000000-0000-4000-8000-000000000006",
                                 message_bytes()))
        rows = yield self.query("SELECT name FROM honeypot_email_headers ORDER BY position")
        self.assertEqual([r[0] for r in rows], [
            "Received", "From", "To", "Cc", "Subject", "Message-ID", "X-Mailer",
            "MIME-Version", "Content-Type"])
        rows = yield self.query(
            "SELECT from_host, from_ip, by_host, protocol, received_id, for_address"
            " FROM honeypot_email_received")
        self.assertEqual(rows, [("relay.example.net", "192.0.2.7", "mx.example.com",
                                 "ESMTP", "4AbCdE", "bob@example.org")])
        rows = yield self.query("SELECT url, host, source FROM honeypot_email_urls")
        self.assertEqual(rows, [("http://pay.example.com/x", "pay.example.com", "text")])

    @defer.inlineCallbacks
    def test_hostile_envelope_text(self):
        """SQL-injection text is stored verbatim; bytes that are not UTF-8 are
        kept as \\x escapes; a long address does not fail the message."""
        injection = "x'); DROP TABLE honeypot_emails; --@example.org"
        yield self.save(prepared(
            self.tmp, "00000000-0000-4000-8000-000000000007", message_bytes(),
            mail_from=injection, helo="h\udcff\udcfe", rcpts=["a" * 400 + "@example.org"]))
        rows = yield self.query("SELECT mail_from, helo FROM honeypot_emails")
        self.assertEqual(rows, [(injection, "h\\xff\\xfe")])
        rows = yield self.query("SELECT address FROM honeypot_email_recipients"
                                " WHERE kind = 'envelope'")
        self.assertEqual(rows, [("a" * 320,)])

    @defer.inlineCallbacks
    def test_session_and_credentials(self):
        """A session record completes the session row its message started,
        and its AUTH attempts are linked to it, once even if replayed."""
        yield self.save(prepared(self.tmp, "00000000-0000-4000-8000-000000000008",
                                 message_bytes()))
        record = {
            "session": SESSION, "sensor": "sensor-a", "src_ip": "2001:db8::1",
            "src_port": 40000, "dst_ip": "::1", "dst_port": 25, "start": 1767000000.0,
            "end": 1767000009.0, "helo": "client.example", "tls": None,
            "auth": [{"mechanism": "PLAIN", "authzid": "", "username": "admin",
                      "password": "hunter2", "challenge": None, "response": None,
                      "time": 1767000002.0, "accepted": False}],
            "transcript": [[0.0, "S", "220 banner"]], "flags": ["pregreet"],
            "commands": 7, "unknown_commands": 0, "errors": 1, "messages": 1,
            "pregreet": "", "close_reason": "quit"}
        for _ in range(2):
            yield defer.Deferred.fromCoroutine(self.database.run(
                records.save_session, self.database.dialect, record))
        rows = yield self.query(
            "SELECT s.client_ip, s.auth_attempts, s.messages, s.close_reason, s.flags,"
            " c.username, c.password, c.mechanism, c.time"
            " FROM honeypot_sessions s JOIN honeypot_credentials c"
            " ON c.session_id = s.session_id")
        self.assertEqual([r[:8] + (str(r[8])[:19],) for r in rows], [
            ("2001:db8::1", 1, 1, "quit", json.dumps(["pregreet"]), "admin", "hunter2",
             "PLAIN", "2025-12-29 09:20:02")])

    def save_session(self, record):
        return defer.Deferred.fromCoroutine(self.database.run(
            records.save_session, self.database.dialect, record))

    @defer.inlineCallbacks
    def test_long_values_clipped(self):
        """Values an attacker makes longer than their indexed columns (255
        characters for header names, content types, hosts and domains) are
        clipped to them, so that no such value can fail the message."""
        long = "a" * 300
        raw = (f"X-{long}: 1\r\nMIME-Version: 1.0\r\n"
               f"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
               f"--b\r\nContent-Type: text/plain\r\n\r\nsee http://{long}.example/x\r\n"
               f"--b\r\nContent-Type: application/{long}\r\n\r\nx\r\n--b--\r\n").encode()
        yield self.save(prepared(self.tmp, "00000000-0000-4000-8000-000000000013", raw,
                                 rcpts=[f"b@{long}.example"]))
        lengths = []
        for statement in ("SELECT MAX(LENGTH(name)) FROM honeypot_email_headers",
                          "SELECT LENGTH(host) FROM honeypot_email_urls",
                          "SELECT LENGTH(content_type) FROM honeypot_attachments",
                          "SELECT MAX(LENGTH(domain)) FROM honeypot_recipients"):
            lengths.extend((yield self.query(statement)))
        self.assertEqual(lengths, [(255,)] * 4)

    @defer.inlineCallbacks
    def test_text_searchable(self):
        """The subject, the From header, the envelope sender and the body
        text are in the full-text index, each under its own column (as the
        dashboard searches them: the body with the subject)."""
        yield self.save(prepared(self.tmp, "00000000-0000-4000-8000-000000000012",
                                 message_bytes(), mail_from="bounce@spammer.example"))
        found = []
        for columns, words in ((["subject"], ["invoice"]), (["sender"], ["alice"]),
                               (["sender"], ["spammer"]), (["subject", "body"], ["pay"]),
                               (["subject"], ["pay"]), (["sender"], ["invoice"])):
            statement, args = self.database.dialect.text_match(columns, words)
            found.append(len((yield self.query(statement, *args))))
        self.assertEqual(found, [1, 1, 1, 1, 0, 0])

    @defer.inlineCallbacks
    def test_message_row_whole(self):
        """Every field of a message's metadata reaches its column, and the
        session row it starts holds its client, greeting, TLS and flags;
        a message without its session's start time dates the session by
        its own arrival; addresses longer than their column are clipped."""
        raw = message_bytes()
        client = "fe80:0:0:0:1234:5678:9abc:def0%verylonginterface"
        item = prepared(self.tmp, "00000000-0000-4000-8000-000000000011", raw,
                        session_start=None, src_ip=client, dst_ip=client, helo="h\udcff",
                        tls={"implicit": True, "version": "TLSv1.3", "cipher": "C"},
                        mail_params={"SIZE": "100"}, flags=["pipelining"],
                        transport="BDAT", truncated=True)
        yield defer.Deferred.fromCoroutine(self.database.run(
            records.save_message, self.database.dialect, item, 1767000100.25))
        rows = yield self.query(
            "SELECT session_id, sensor, queue_id, received, stored, client_ip, client_port,"
            " server_ip, server_port, helo, tls, transport, mail_from, mail_params,"
            " acknowledged, truncated, incomplete, recovered, size, sha256, session_flags"
            " FROM honeypot_emails")
        self.assertEqual([(*r[:3], str(r[3])[:22], str(r[4])[:22], *r[5:]) for r in rows], [(
            SESSION, "sensor-a", "00000000000", "2025-12-29 09:20:01.50",
            "2025-12-29 09:21:40.25", client[:45], 40000, client[:45], 25, "h\\xff", 1,
            "BDAT", "alice@example.net", json.dumps({"SIZE": "100"}), 1, 1, 0, 0, len(raw),
            hashlib.sha256(raw).hexdigest(), json.dumps(["pipelining"]))])
        rows = yield self.query(
            "SELECT client_ip, started, helo, tls_implicit, tls_version, tls_cipher, flags"
            " FROM honeypot_sessions")
        self.assertEqual([(r[0], str(r[1])[:22], *r[2:]) for r in rows], [(
            client[:45], "2025-12-29 09:20:01.50", "h\\xff", 1, "TLSv1.3", "C",
            json.dumps(["pipelining"]))])

    @defer.inlineCallbacks
    def test_session_record_stored_whole(self):
        """Every field of a session record reaches its column, and every
        field of each AUTH attempt its credential row, in order; text that is
        not UTF-8 as \\x escapes, the client address clipped to 45."""
        record = {
            "session": SESSION, "sensor": "sensor-b", "src_ip": "192.0.2.9",
            "src_port": 51000, "dst_ip": "198.51.100.1", "dst_port": 587,
            "start": 1767000000.25, "end": 1767000060.5, "helo": "h\udcffst",
            "tls": {"implicit": True, "version": "TLSv1.3", "cipher": "TLS_AES_128_GCM_SHA256"},
            "auth": [
                {"mechanism": "LOGIN", "authzid": None, "username": "r\udcfeot",
                 "password": "toor", "challenge": None, "response": None,
                 "time": 1767000010.0, "accepted": False},
                {"mechanism": "CRAM-MD5", "authzid": "boss", "username": "john doe",
                 "password": None, "challenge": "<1.2@mx>", "response": "cafe",
                 "time": 1767000020.0, "accepted": True}],
            "transcript": [[0.0, "S", "220 banner"]], "flags": ["bare_lf", "pregreet"],
            "envelopes": [{"mail_from": "a@example.net"}],
            "commands": 7, "unknown_commands": 2, "errors": 3, "messages": 0,
            "pregreet": "EHLO early", "close_reason": "timeout"}
        yield self.save_session(record)
        rows = yield self.query(
            "SELECT sensor, client_ip, client_port, server_ip, server_port, started, ended,"
            " helo, tls_implicit, tls_version, tls_cipher, auth_attempts, commands,"
            " unknown_commands, errors, messages, close_reason, pregreet, flags,"
            " transcript, envelopes FROM honeypot_sessions WHERE session_id = ?", SESSION)
        self.assertEqual([(*r[:5], str(r[5])[:22], str(r[6])[:22], *r[7:]) for r in rows], [(
            "sensor-b", "192.0.2.9", 51000, "198.51.100.1", 587,
            "2025-12-29 09:20:00.25", "2025-12-29 09:21:00.50", "h\\xffst",
            1, "TLSv1.3", "TLS_AES_128_GCM_SHA256", 2, 7, 2, 3, 0, "timeout", "EHLO early",
            json.dumps(["bare_lf", "pregreet"]), json.dumps([[0.0, "S", "220 banner"]]),
            json.dumps([{"mail_from": "a@example.net"}]))])
        rows = yield self.query(
            "SELECT position, sensor, time, client_ip, mechanism, authzid, username,"
            " password, challenge, response, accepted FROM honeypot_credentials"
            " WHERE session_id = ? ORDER BY position", SESSION)
        self.assertEqual([(*r[:2], str(r[2])[:19], *r[3:]) for r in rows], [
            (0, "sensor-b", "2025-12-29 09:20:10", "192.0.2.9", "LOGIN", None,
             "r\\xfeot", "toor", None, None, 0),
            (1, "sensor-b", "2025-12-29 09:20:20", "192.0.2.9", "CRAM-MD5", "boss",
             "john doe", None, "<1.2@mx>", "cafe", 1)])

    @defer.inlineCallbacks
    def test_session_counted_once_when_it_ends(self):
        """A session is counted in the connections tally when a record
        first says it ended: not while it is open, not again when its
        record is stored once more.  A record without the fields an
        older version did not write is stored with them empty."""
        record = {
            "session": SESSION, "sensor": "sensor-a", "src_ip": "192.0.2.9",
            "src_port": 51000, "dst_ip": "198.51.100.1", "dst_port": 25,
            "start": 1767000000.0, "helo": None, "tls": None}  # no AUTH: an older record's
        counts = []
        for end in (None, 1767000009.0, 1767000009.0):
            yield self.save_session({**record, "end": end})
            rows = yield self.query("SELECT n FROM honeypot_tally_totals"
                                    " WHERE kind = 'client' AND sensor = ''")
            counts.append(rows)
        self.assertEqual(counts, [[], [(1,)], [(1,)]])
        rows = yield self.query("SELECT ended, flags, transcript, envelopes, auth_attempts"
                                " FROM honeypot_sessions")
        self.assertEqual([(str(r[0])[:19], *r[1:]) for r in rows],
                         [("2025-12-29 09:20:09", "[]", "[]", "[]", 0)])

    @defer.inlineCallbacks
    def test_long_client_address_clipped(self):
        """A client address longer than its column (an IPv6 link-local
        address with a long zone) is clipped to its 45 characters, in the
        session's row and in its credentials'."""
        client = "fe80:0:0:0:1234:5678:9abc:def0%verylonginterface"
        yield self.save_session({
            "session": SESSION, "sensor": "sensor-a", "src_ip": client,
            "src_port": 51000, "dst_ip": "::1", "dst_port": 25, "start": 1767000000.0,
            "end": 1767000009.0, "auth": [{"mechanism": "PLAIN", "username": "u",
                                           "password": "p", "time": 1767000001.0}]})
        rows = yield self.query("SELECT s.client_ip, c.client_ip FROM honeypot_sessions s"
                                " JOIN honeypot_credentials c ON c.session_id = s.session_id")
        self.assertEqual(rows, [(client[:45], client[:45])])

    @defer.inlineCallbacks
    def test_missing_schema_not_created_when_told_not_to(self):
        """With auto-creation off, an empty database is refused, naming the
        schema files to apply."""
        database = Database(self.make_dialect(), create=False)
        self.addCleanup(database.close)
        error = yield self.assertFailure(
            defer.Deferred.fromCoroutine(database.open()), Rejected)
        self.assertIn("001_initial.sql", str(error))

    @defer.inlineCallbacks
    def test_raw_on_disk_only(self):
        """With the raw message kept on disk, the row has its path and no
        bytes, and the file holds the message byte for byte."""
        raw = message_bytes()
        eml = self.tmp / "00000000-0000-4000-8000-00000000000a.eml"
        eml.write_bytes(raw)
        eml.with_suffix(".json").write_text(json.dumps(metadata(eml.stem, raw)))
        item = prepare(eml, Limits(), None, RawStore(self.tmp / "raw"))
        yield self.save(item)
        sha256 = hashlib.sha256(raw).hexdigest()
        rows = yield self.query("SELECT raw, raw_path FROM honeypot_emails")
        self.assertEqual(rows, [(None, f"{sha256[:2]}/{sha256}")])
        self.assertEqual((self.tmp / "raw" / sha256[:2] / sha256).read_bytes(), raw)
        rows = yield self.query("SELECT sha256, stored_path FROM honeypot_attachments")
        self.assertEqual(rows, [(hashlib.sha256(PDF).hexdigest(), None)])

    def test_oversized_row_rejected(self):
        """A message too big for the server's packet limit is rejected up
        front, naming the limit."""
        item = prepared(self.tmp, "00000000-0000-4000-8000-000000000009", message_bytes())
        self.database.max_packet = len(item.raw)
        error = self.assertRaises(Rejected, self.database.check_size, item)
        self.assertIn("max_allowed_packet", str(error))


class SQLiteStoreTests(StoreTestsMixin, unittest.TestCase):
    def make_dialect(self):
        directory = Path(self.mktemp())
        directory.mkdir()
        return dialects.SQLite(directory / "store.sqlite")


class MariaDBStoreTests(StoreTestsMixin, unittest.TestCase):
    def make_dialect(self):
        settings = shared_database(self)
        return dialects.MySQL(MySQLSettings(
            mysql_host=settings["host"], mysql_port=settings["port"],
            mysql_username=settings["user"], mysql_password=settings["password"],
            mysql_database=settings["database"]))
