"""``smtplatrine import`` and ``smtplatrine reparse``, run as an analyst
runs them (the command in a subprocess), on SQLite and on MariaDB; the
files they read; and mail a mail client reads, sent over TCP to a real
twistd, stored as it reads it.

Expected values: Python's ``mailbox`` for how an mbox splits, ``hashlib``
(as ``sha256sum``) of the files encoded here, and the headers written here
for the envelope.
"""

import base64
import binascii
import hashlib
import json
import mailbox
import os
import pty
import pwd
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import uuid
from contextlib import closing
from pathlib import Path

import MySQLdb
from twisted.internet import defer, reactor
from twisted.trial import unittest

from smtplatrine import batch, mailfiles, pipeline
from smtplatrine import config as config_module
from smtplatrine.store.dialects import Rejected
from tests.mariadb import shared_database
from tests.mmdb import city_database, city_record
from tests.process import environment, refusing_port, require_root, write_config
from tests.test_e2e import HoneypotTestCase

CLI = [sys.executable, "-c", "from smtplatrine.cli import main; main()"]
ZIP = random.Random(7).randbytes(2000)  # an "attachment", 2000 bytes: padded base64


def message(subject, body=b"hello\n", headers=b""):
    return (b"Return-Path: <spammer@sender.example>\n"
            b"Delivered-To: victim@trap.example\n"
            b"Received: from localhost (localhost [127.0.0.1])\n"
            b"\tby mx.trap.example (Postfix) with ESMTP id 1A2B3C;"
            b" Tue, 3 Mar 2026 10:00:05 +0100 (CET)\n"
            b"Received: from bulk.sender.example (bulk.sender.example [45.33.32.156])\n"
            b"\tby mx.trap.example (Postfix) with ESMTP id 0F0F0F for <victim@trap.example>;"
            b" Tue, 3 Mar 2026 10:00:00 +0100 (CET)\n"
            b"From: Spammer <spammer@sender.example>\nTo: victim@trap.example\n"
            b"Subject: " + subject + b"\nDate: Mon, 2 Mar 2026 09:00:00 +0000\n"
            + headers + b"\n" + body)


def with_zip(subject):
    encoded = base64.encodebytes(ZIP)
    return message(subject, b"--b\nContent-Type: text/plain\n\nsee the zip\n--b\n"
                   b"Content-Type: application/zip; name=\"invoice.zip\"\n"
                   b"Content-Transfer-Encoding: base64\n\n" + encoded
                   + b"-- \nSent through a list\n--b--\n",
                   b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n")


def mbox(*messages):
    """*messages* in an mbox, as an MTA writes one: "From " lines in them
    quoted, each ended by an empty line."""
    return b"".join(b"From spammer@sender.example Tue Mar  3 09:00:00 2026\n"
                    + m.replace(b"\nFrom ", b"\n>From ").removesuffix(b"\n") + b"\n\n"
                    for m in messages)


class MailFilesTests(unittest.TestCase):

    def setUp(self):
        self.directory = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.directory)

    def read(self, *paths, limit=10_000_000):
        found = mailfiles.find([self.directory / p for p in paths])
        return found, list(mailfiles.messages(found.files, limit))

    def test_mbox_split_as_python_mailbox_splits_it(self):
        """An mbox gives its messages as Python's mailbox reads them, each
        with its number, and the sender and date of its From line."""
        path = self.directory / "spam.mbox"
        path.write_bytes(mbox(message(b"one", b"body\nFrom the start\n"), message(b"two"),
                              message(b"three", b"")))
        _, found = self.read("spam.mbox")
        reference = mailbox.mbox(path)
        self.assertEqual([m.raw for m in found],
                         [reference.get_bytes(key) for key in reference.keys()])
        self.assertEqual([(m.index, m.sender, m.date) for m in found],
                         [(1, "spammer@sender.example", 1772528400.0),
                          (2, "spammer@sender.example", 1772528400.0),
                          (3, "spammer@sender.example", 1772528400.0)])
        self.assertIn(b"\n>From the start\n", found[0].raw)

    def test_from_in_a_body_line(self):
        """A "From " line that does not follow an empty line is the body's,
        not the start of a message (Python's mailbox would cut there)."""
        (self.directory / "a.mbox").write_bytes(
            b"From x Tue Mar  3 09:00:00 2026\nSubject: a\n\nline\nFrom here on\n\n")
        _, found = self.read("a.mbox")
        self.assertEqual([m.raw for m in found], [b"Subject: a\n\nline\nFrom here on\n"])

    def test_directories_and_maildirs(self):
        """A directory gives its .eml files and mboxes, its Maildirs' new and
        cur (and their Maildir++ folders), never tmp; files that begin like
        no mail are skipped."""
        tree = {"a.eml": message(b"a"), "sub/b.mbox": mbox(message(b"b")),
                "sub/c": message(b"c"), "notes.txt": b"just notes\n",
                "page.html": b"<html>Subject: x</html>",
                "Maildir/new/1.host": message(b"d"), "Maildir/cur/2.host:2,S": message(b"e"),
                "Maildir/tmp/3.host": message(b"not yet delivered"),
                "Maildir/.Spam/new/4.host": message(b"f"),
                "Maildir/.Spam/cur/.hidden": message(b"g"),
                "Maildir/.Spam/tmp/5.host": message(b"h")}
        for name, data in tree.items():
            (self.directory / name).parent.mkdir(parents=True, exist_ok=True)
            (self.directory / name).write_bytes(data)
        for sub in ("Maildir/cur", "Maildir/.Spam/cur"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        found, messages = self.read(".")
        self.assertEqual(
            [(p.relative_to(self.directory).as_posix(), mbox) for p, mbox in found.files],
            [("a.eml", False), ("Maildir/new/1.host", False),
             ("Maildir/cur/2.host:2,S", False), ("Maildir/.Spam/new/4.host", False),
             ("sub/b.mbox", True), ("sub/c", False)])
        self.assertEqual(sorted(p.name for p in found.skipped), ["notes.txt", "page.html"])
        self.assertEqual([m.raw.split(b"Subject: ")[1][:1] for m in messages],
                         [b"a", b"d", b"e", b"f", b"b", b"c"])
        self.assertEqual(messages[-1].done, found.size)

    def test_size_limit(self):
        """A message over the limit is cut there and says so."""
        (self.directory / "big.eml").write_bytes(message(b"big", b"x" * 5000))
        (self.directory / "big.mbox").write_bytes(mbox(message(b"big", b"x" * 5000),
                                                       message(b"small")))
        _, messages = self.read("big.eml", "big.mbox", limit=1000)
        self.assertEqual([(len(m.raw), m.truncated) for m in messages],
                         [(1000, True), (1000, True), (len(message(b"small")), False)])

    def test_missing_path(self):
        """A path that is not there is an error naming it."""
        error = self.assertRaises(FileNotFoundError, mailfiles.find,
                                  [self.directory / "nope"])
        self.assertEqual(error.filename, str(self.directory / "nope"))


class CommandTestsMixin:
    """The commands against one database; ``engine()`` makes it and gives
    its configuration sections."""

    def setUp(self):
        self.directory = Path(tempfile.mkdtemp(prefix="smtplatrine-import-"))
        self.addCleanup(shutil.rmtree, self.directory)
        self.data = self.directory / "data"
        self.mail = self.directory / "mail"
        self.mail.mkdir()
        self.database = self.engine()
        write_config(self.directory / "etc", {
            "server": {"data_dir": self.data, "sensor_name": "analysis"},
            "meta": {"meta_enable": "false"}, **self.database})

    def run_cli(self, *args, check=True):
        result = subprocess.run(CLI + [*args[:1], "--config", str(self.directory / "etc"),
                                       *args[1:]],
                                cwd=self.directory, env=environment(), capture_output=True,
                                timeout=120)
        if check:
            self.assertEqual(result.returncode, 0, result.stderr.decode(errors="replace"))
        self.assertNotIn(b"Traceback", result.stderr)
        return result.returncode, result.stderr.decode()

    def events(self, eventid):
        path = self.data / "events.jsonl"
        return [e for e in map(json.loads, path.read_text().splitlines())
                if e["eventid"] == eventid]

    def write(self, name, data):
        path = self.mail / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def test_import(self):
        """.eml files, an mbox and a Maildir are stored as if received:
        marked imported with their file, envelope and client from their
        headers, attachments under their SHA-256, an event each."""
        eml = self.write("one.eml", with_zip(b"one"))
        spam = self.write("spam.mbox", mbox(message(b"two"), message(b"=?utf-16?B?RABlAA==?=")))
        self.write("Maildir/new/1.host", message(b"four"))
        self.write("Maildir/cur/2.host:2,S", message(b"five"))
        self.write("Maildir/tmp/3.host", message(b"not delivered yet"))
        self.write("notes.txt", b"not mail\n")
        code, output = self.run_cli("import", str(self.mail))
        self.assertIn("imported 5 message(s) from 4 file(s)", output)
        self.assertIn(": 5 new, 0 already stored, 1 file(s) skipped as no mail, 0 stored"
                      " unparsed (parse_failed), 0 refused, 0 unreadable", output)
        rows = self.query("SELECT * FROM honeypot_emails ORDER BY header_subject")
        self.assertEqual([r["header_subject"] for r in rows],
                         ["De", "five", "four", "one", "two"])
        self.assertEqual({(r["imported"], r["sensor"], r["acknowledged"]) for r in rows},
                         {(1, "analysis", 1)})
        one = rows[3]
        self.assertEqual(
            (one["client_ip"], one["helo"], one["mail_from"], str(one["received"])[:19],
             one["import_file"], one["import_index"], one["sha256"], one["defects"]),
            ("45.33.32.156", "bulk.sender.example", "spammer@sender.example",
             "2026-03-03 09:00:05", str(eml), None, hashlib.sha256(with_zip(b"one")).hexdigest(),
             '["base64_trailing_text"]'))
        self.assertEqual([(r["import_file"], r["import_index"]) for r in rows
                          if r["import_file"] == str(spam)], [(str(spam), 2), (str(spam), 1)])
        self.assertEqual(self.query("SELECT address FROM honeypot_email_recipients WHERE"
                                    " message_id = ? AND kind = 'envelope'", one["message_id"]),
                         [{"address": "victim@trap.example"}])
        sha256 = hashlib.sha256(ZIP).hexdigest()
        [attachment] = self.query("SELECT * FROM honeypot_attachments")
        self.assertEqual((attachment["filename"], attachment["size"], attachment["sha256"]),
                         ("invoice.zip", 2000, sha256))
        stored = self.data / "attachments" / attachment["stored_path"]
        self.assertEqual(hashlib.sha256(stored.read_bytes()).hexdigest(), sha256)
        events = self.events("smtplatrine.message.stored")
        self.assertEqual(sorted(e["message"] for e in events),
                         sorted(r["message_id"] for r in rows))
        self.assertTrue(all(e["imported"] for e in events))
        out = self.directory / "export.jsonl"
        self.run_cli("export", "--no-raw", "--output", str(out))
        exported = {r["header_subject"]: r for r in map(json.loads, out.read_text().splitlines())}
        self.assertEqual(
            {k: exported["one"][k] for k in ("imported", "import_file", "import_index",
                                              "defects", "parse_error", "client_ip")},
            {"imported": True, "import_file": str(eml), "import_index": None,
             "defects": ["base64_trailing_text"], "parse_error": None,
             "client_ip": "45.33.32.156"})
        self.assertEqual([a["sha256"] for a in exported["one"]["attachments"]], [sha256])

    def test_import_enriched(self):
        """The enrichers look up what an imported message shows, as for
        captured mail (here GeoIP, from a file the test writes)."""
        city = city_database(self.directory / "city.mmdb", {"45.33.32.0/24": city_record(
            "US", "United States", "NA", "North America", eu=False)})
        write_config(self.directory / "etc", {
            "server": {"data_dir": self.data, "sensor_name": "analysis"},
            "meta": {"geoip_main_file": city, "geoip_asn_file": self.directory / "none.mmdb",
                     "rdns_enable": "false"}, **self.database})
        self.write("a.eml", message(b"a"))
        self.run_cli("import", str(self.mail))
        rows = self.query("SELECT provider, indicator, found, result FROM honeypot_enrichment"
                          " ORDER BY provider")
        # The ASN file is missing: the AS comes from the offline data.
        self.assertEqual([(r["provider"], r["indicator"], r["found"]) for r in rows],
                         [("geoip_asn", "45.33.32.156", 1), ("geoip_city", "45.33.32.156", 1)])
        self.assertIn("geoip2fast", json.loads(rows[0]["result"])["source"])
        self.assertEqual(json.loads(rows[1]["result"])["country_code"], "US")
        events = self.events("smtplatrine.enrichment")
        self.assertEqual(sorted((e["provider"], e["indicator"]) for e in events),
                         [("geoip_asn", "45.33.32.156"), ("geoip_city", "45.33.32.156")])

    def test_import_analysed(self):
        """An imported attachment is analysed as a captured one: its type,
        and the member of a zip (as ``unzip -l`` lists it) an attachment of
        its own."""
        import io
        import zipfile
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("note.txt", b"pay now\n")
        real = buffer.getvalue()
        (self.directory / "x.zip").write_bytes(real)
        write_config(self.directory / "etc", {
            "server": {"data_dir": self.data, "sensor_name": "analysis"},
            "meta": {"rdns_enable": "false", "geoip_enable": "false"}, **self.database})
        listed = subprocess.run(["unzip", "-l", str(self.directory / "x.zip")],
                                capture_output=True, check=True).stdout
        self.assertIn(b"note.txt", listed)
        encoded = base64.encodebytes(real)
        self.write("z.eml", message(
            b"zip", b"--b\nContent-Type: application/zip; name=\"x.zip\"\n"
            b"Content-Transfer-Encoding: base64\n\n" + encoded + b"--b--\n",
            b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n"))
        self.run_cli("import", str(self.mail))
        [row] = self.query("SELECT mime FROM honeypot_files WHERE sha256 = ?",
                           hashlib.sha256(real).hexdigest())
        self.assertEqual(row["mime"], "application/zip")
        [member] = self.query("SELECT filename, sha256 FROM honeypot_attachments"
                              " WHERE parent_id IS NOT NULL")
        self.assertEqual((member["filename"], member["sha256"]),
                         ("note.txt", hashlib.sha256(b"pay now\n").hexdigest()))

    def test_import_twice(self):
        """The same file twice, in one run or two, and a copy of it, are one
        message; nothing is counted twice."""
        self.write("a.eml", with_zip(b"a"))
        self.write("copy/a.eml", with_zip(b"a"))
        self.write("b.mbox", mbox(message(b"b"), message(b"c")))
        code, output = self.run_cli("import", str(self.mail / "a.eml"), str(self.mail))
        self.assertIn(": 3 new, 2 already stored", output)
        before = self.counts()
        code, output = self.run_cli("import", str(self.mail))
        self.assertIn("imported 4 message(s) from 3 file(s)", output)
        self.assertIn(": 0 new, 4 already stored", output)
        self.assertEqual(self.counts(), before)
        self.assertEqual(before["honeypot_emails"], 3)
        self.assertEqual(len(self.events("smtplatrine.message.stored")), 3)

    def counts(self):
        return {table: self.query(f"SELECT COUNT(*) AS n FROM {table}")[0]["n"]
                for table in ("honeypot_emails", "honeypot_attachments",
                              "honeypot_email_recipients", "honeypot_sessions")}

    def test_progress_bar(self):
        """On a terminal a progress bar shows while it imports; the
        summary ends the run."""
        self.write("many.mbox", mbox(*(message(b"m%d" % i, b"x" * 10_000)
                                       for i in range(1000))))
        leader, follower = pty.openpty()
        self.addCleanup(os.close, leader)
        process = subprocess.Popen(
            CLI + ["import", "--config", str(self.directory / "etc"), str(self.mail)],
            cwd=self.directory, env=environment(), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=follower)
        os.close(follower)
        output = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            output += chunk
        self.assertEqual(process.wait(120), 0, output)
        self.assertRegex(output, rb"\r\[#+ *\] +\d+%  [\d,]+ messages  [\d,]+/s")
        self.assertIn(b"imported 1,000 message(s) from 1 file(s)", output)

    def test_missing_path(self):
        """A path that is not there: one line naming it, nothing stored."""
        code, output = self.run_cli("import", str(self.mail / "nope.mbox"), check=False)
        self.assertEqual((code, output.strip()),
                         (1, f"smtplatrine: {self.mail / 'nope.mbox'}: no such file or"
                             " directory"))

    def test_reparse(self):
        """Messages stored with an older reading are read again in place,
        once: a second run changes nothing."""
        self.write("a.eml", with_zip(b"a"))
        self.write("b.eml", message(b"b"))
        self.run_cli("import", str(self.mail))
        good = self.counts()
        [row] = self.query("SELECT message_id FROM honeypot_emails WHERE header_subject = 'a'")
        # As an older version that failed to parse it stored it.
        self.execute("UPDATE honeypot_emails SET header_subject = NULL, body_text = '',"
                     " defects = '[\"parse_failed\"]', parse_error = 'old' WHERE message_id = ?",
                     row["message_id"])
        for table in ("honeypot_attachments", "honeypot_email_headers",
                      "honeypot_email_received", "honeypot_email_urls"):
            self.execute(f"DELETE FROM {table} WHERE message_id = ?", row["message_id"])
        out = self.directory / "export.jsonl"
        self.run_cli("export", "--output", str(out))
        [unparsed] = [r for r in map(json.loads, out.read_text().splitlines())
                      if r["message_id"] == row["message_id"]]
        self.assertEqual((unparsed["defects"], unparsed["parse_error"], unparsed["attachments"]),
                         (["parse_failed"], "old", []))
        self.assertEqual(hashlib.sha256(base64.b64decode(unparsed["raw_base64"])).hexdigest(),
                         hashlib.sha256(with_zip(b"a")).hexdigest())
        code, output = self.run_cli("reparse", "--defect", "parse_failed")
        self.assertIn("read 1 message(s) again", output)
        self.assertIn(": 1 read differently now, 0 quarantined stored", output)
        [again] = self.query("SELECT header_subject, defects, parse_error, body_text"
                             " FROM honeypot_emails WHERE message_id = ?", row["message_id"])
        self.assertEqual(again, {"header_subject": "a", "defects": '["base64_trailing_text"]',
                                 "parse_error": None, "body_text": "see the zip"})
        self.assertEqual(self.counts(), good)
        [attachment] = self.query("SELECT sha256 FROM honeypot_attachments")
        self.assertEqual(attachment["sha256"], hashlib.sha256(ZIP).hexdigest())
        code, output = self.run_cli("reparse")
        self.assertIn("read 2 message(s) again", output)
        self.assertIn(": 0 read differently now", output)
        self.assertEqual(self.counts(), good)
        self.assertEqual(len(self.events("smtplatrine.message.reparsed")), 3)

    def test_reparse_since(self):
        """--since reads again only what was received at or after it."""
        self.write("old.eml", message(b"old").replace(b"Mar 2026 10:00:05", b"Jan 2020 10:00:05"))
        self.write("new.eml", message(b"new"))
        self.run_cli("import", str(self.mail))
        code, output = self.run_cli("reparse", "--since", "2026-01-01")
        self.assertIn("read 1 message(s) again", output)
        [event] = self.events("smtplatrine.message.reparsed")
        [new] = self.query("SELECT message_id FROM honeypot_emails WHERE header_subject = 'new'")
        self.assertEqual(event["message"], new["message_id"])

    def test_reparse_quarantined(self):
        """A message an older version quarantined (its UTF-16 subject made
        the parser raise) is stored, and leaves the quarantine."""
        quarantine = self.data / "spool" / "quarantine"
        quarantine.mkdir(parents=True)
        message_id = str(uuid.uuid4())
        raw = message(b"=?utf-16?B?RABlAA==?=").replace(b"\n", b"\r\n")
        (quarantine / f"{message_id}.eml").write_bytes(raw)
        (quarantine / f"{message_id}.json").write_text(json.dumps({
            "message": message_id, "session": str(uuid.uuid4()), "sensor": "sensor-a",
            "src_ip": "192.0.2.9", "src_port": 4000, "dst_ip": "192.0.2.1", "dst_port": 25,
            "received": 1772528400.0, "mail_from": "x@sender.example",
            "rcpts": ["victim@trap.example"], "acknowledged": True, "transport": "DATA",
            "size": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}))
        (quarantine / f"{message_id}.reason").write_text(
            "cannot be read or parsed: UnicodeError('UTF-16 stream does not start with BOM')\n")
        code, output = self.run_cli("reparse")
        self.assertIn(": 0 read differently now, 1 quarantined stored", output)
        [row] = self.query("SELECT * FROM honeypot_emails")
        self.assertEqual((row["message_id"], row["header_subject"], row["client_ip"],
                          row["imported"]), (message_id, "De", "192.0.2.9", 0))
        self.assertEqual(list(quarantine.iterdir()), [])
        [event] = self.events("smtplatrine.message.stored")
        self.assertEqual(event["message"], message_id)

    def test_unknown_defect(self):
        """--defect takes only the parser's defects, and lists them."""
        result = subprocess.run(CLI + ["reparse", "--defect", "nope"], cwd=self.directory,
                                env=environment(), capture_output=True, timeout=30)
        self.assertEqual(result.returncode, 2)
        self.assertIn(b"'nope' is no defect; the defects are base64_error,", result.stderr)


class SQLiteCommandTests(CommandTestsMixin, unittest.TestCase):

    def engine(self):
        return {}

    def query(self, statement, *args):
        with closing(sqlite3.connect(self.data / "smtplatrine.sqlite")) as db:
            db.row_factory = sqlite3.Row
            return [dict(row) for row in db.execute(statement, args)]

    def execute(self, statement, *args):
        with closing(sqlite3.connect(self.data / "smtplatrine.sqlite")) as db:
            db.execute(statement, args)
            db.commit()


class MariaDBCommandTests(CommandTestsMixin, unittest.TestCase):

    def engine(self):
        self.settings = shared_database(self)
        return {"engine": {"engine_backend": "mysql"},
                "mysql": {"mysql_host": self.settings["host"],
                          "mysql_port": self.settings["port"],
                          "mysql_database": self.settings["database"]}}

    def query(self, statement, *args):
        with closing(MySQLdb.connect(**self.settings)) as db:
            cursor = db.cursor(MySQLdb.cursors.DictCursor)
            cursor.execute(statement.replace("?", "%s"), args)
            return list(cursor.fetchall())

    def execute(self, statement, *args):
        with closing(MySQLdb.connect(**self.settings)) as db:
            db.cursor().execute(statement.replace("?", "%s"), args)
            db.commit()

    def test_database_unreachable(self):
        """A database that does not answer: one line saying which, and
        where to set it."""
        write_config(self.directory / "etc", {
            "server": {"data_dir": self.data}, "meta": {"meta_enable": "false"},
            "engine": {"engine_backend": "mysql"},
            "mysql": {"mysql_host": "127.0.0.1", "mysql_port": refusing_port(self)}})
        self.write("a.eml", message(b"a"))
        code, output = self.run_cli("import", str(self.mail), check=False)
        self.assertEqual(code, 1)
        self.assertRegex(output.strip(), r"\Asmtplatrine: cannot use MySQL root@127.0.0.1:\d+/"
                                         r"\w+: .*; check etc/database.ini \(--config DIR\)\Z")


class GroupTests(unittest.TestCase):
    """Imported messages are stored many to a transaction; a group that
    fails is stored message by message."""

    def setUp(self):
        self.directory = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.directory)
        self.config = config_module.Config(
            server=config_module.Server(data_dir=str(self.directory / "data")),
            meta=config_module.Meta(meta_enable=False))
        (self.directory / "data").mkdir()
        mail = self.directory / "mail.mbox"
        mail.write_bytes(mbox(*(message(b"m%d" % i) for i in range(100))))
        self.found = mailfiles.find([mail])

    def refuse(self, subjects, unparsed_too):
        """Make the database refuse the messages with *subjects* (and,
        *unparsed_too*, even unparsed)."""
        original = pipeline.save_message

        def save_message(cursor, dialect, prepared, now):
            if (prepared.parsed.fields["subject"] in subjects
                    or unparsed_too and prepared.parsed.error is not None):
                raise Rejected("refused by the test")
            return original(cursor, dialect, prepared, now)
        self.patch(pipeline, "save_message", save_message)

    def refuse_groups(self, subjects):
        """Make the database refuse any group of messages holding one with
        *subjects* (a deadlock with another sensor, say)."""
        original = pipeline.save_group

        def save_group(cursor, dialect, group, now):
            if any(p.parsed.fields["subject"] in subjects for p in group):
                raise Rejected("refused by the test")
            return original(cursor, dialect, group, now)
        self.patch(pipeline, "save_group", save_group)

    def stored(self):
        with closing(sqlite3.connect(self.directory / "data" / "smtplatrine.sqlite")) as db:
            return sorted(row[0] for row in db.execute(
                "SELECT header_subject FROM honeypot_emails WHERE parse_error IS NULL"))

    @defer.inlineCallbacks
    def test_group_refused(self):
        """A group the database refuses: its messages are stored one by
        one, that one too."""
        self.refuse_groups({"m5"})
        summary = yield defer.Deferred.fromCoroutine(
            batch.import_files(self.config, reactor, self.found))
        self.assertEqual((summary.read, summary.stored, summary.unparsed, summary.refused),
                         (100, 100, 0, []))
        self.assertEqual(len(self.stored()), 100)

    @defer.inlineCallbacks
    def test_message_refused_even_unparsed(self):
        """A message the database refuses even unparsed is reported, and
        the others are stored."""
        self.refuse({"m5"}, True)
        summary = yield defer.Deferred.fromCoroutine(
            batch.import_files(self.config, reactor, self.found))
        self.assertEqual((summary.stored, [(w.rsplit("/", 1)[1], r) for w, r in summary.refused]),
                         (99, [("mail.mbox (message 6)", "refused by the test")]))
        self.assertNotIn("m5", self.stored())


class CaptureTests(HoneypotTestCase):
    """Mail a mail client reads, sent over TCP to twistd, stored as it
    reads it (before, the first was quarantined, and the files were
    stored encoded or not at all)."""

    def test_read_as_a_client_reads_it(self):
        """A UTF-16 subject, a uuencoded file in the text, a footer after
        base64 and a multipart of an unknown subtype."""
        uuencoded = b"".join(
            [b"begin 644 run.exe\r\n"]
            + [binascii.b2a_uu(ZIP[i:i + 45]).replace(b"\n", b"\r\n")
               for i in range(0, len(ZIP), 45)] + [b"`\r\nend\r\n"])
        raw = (b"From: a@sender.example\r\nSubject: =?utf-16?B?RABlAA==?=\r\n"
               b"Content-Type: multipart/x-unknown; boundary=b\r\n\r\n"
               b"--b\r\nContent-Type: text/plain\r\n\r\nrun it:\r\n" + uuencoded
               + b"--b\r\nContent-Type: application/zip; name=z.zip\r\n"
               b"Content-Transfer-Encoding: base64\r\n\r\n"
               + base64.encodebytes(ZIP).replace(b"\n", b"\r\n")
               + b"---\r\nlist footer\r\n--b--\r\n")
        client = self.smtp()
        client.sendmail("a@sender.example", ["victim@trap.example"], raw)
        client.quit()
        [(meta, stored)] = self.honeypot.messages()
        self.assertEqual(stored, raw)
        [row] = self.honeypot.query("SELECT * FROM honeypot_emails")
        self.assertEqual((row["header_subject"], row["body_text"]), ("De", "run it:\r\n"))
        attachments = self.honeypot.query("SELECT filename, sha256 FROM honeypot_attachments"
                                          " ORDER BY position")
        sha256 = hashlib.sha256(ZIP).hexdigest()
        self.assertEqual([(a["filename"], a["sha256"]) for a in attachments],
                         [("run.exe", sha256), ("z.zip", sha256)])
        stored_file = self.honeypot.data / "attachments" / sha256[:2] / sha256
        self.assertEqual(stored_file.read_bytes(), ZIP)
        self.assertEqual(list((self.honeypot.data / "spool" / "quarantine").iterdir()), [])

    def test_import_by_root_while_running(self):
        """An operator's ``smtplatrine import`` run as root beside the
        running sensor: the folder it makes in the attachment store goes to
        the sensor's user (nobody), so a message that comes next with an
        attachment filed in the same folder is stored, not quarantined
        (before, its worker got EACCES)."""
        require_root("importing as root")
        imported = os.urandom(1000)
        folder = hashlib.sha256(imported).hexdigest()[:2]
        live = next(data for data in iter(lambda: os.urandom(1000), None)
                    if hashlib.sha256(data).hexdigest()[:2] == folder)

        def mail(subject, payload):
            return (f"From: a@sender.example\r\nSubject: {subject}\r\n"
                    "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
                    "--b\r\nContent-Type: text/plain\r\n\r\nsee\r\n"
                    "--b\r\nContent-Type: application/octet-stream; name=x.bin\r\n"
                    "Content-Transfer-Encoding: base64\r\n\r\n").encode() + (
                base64.encodebytes(payload).replace(b"\n", b"\r\n") + b"--b--\r\n")

        eml = self.honeypot.directory / "imported.eml"
        eml.write_bytes(mail("imported", imported))
        result = subprocess.run([*CLI, "import", "--config", str(self.honeypot.directory / "etc"),
                                 str(eml)], env=environment(), capture_output=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        store = self.honeypot.data / "attachments"
        nobody = (store.stat().st_uid, store.stat().st_gid)
        self.assertEqual(nobody[0], pwd.getpwnam("nobody").pw_uid)
        self.assertEqual([(p.stat().st_uid, p.stat().st_gid)
                          for p in (store / folder, *(store / folder).iterdir())], [nobody] * 2)
        client = self.smtp()
        client.sendmail("a@sender.example", ["victim@trap.example"], mail("live", live))
        client.quit()
        self.honeypot.wait_for(lambda: len(self.honeypot.query(
            "SELECT 1 FROM honeypot_emails")) == 2 and self.honeypot.drained(), timeout=30)
        self.assertEqual(list((self.honeypot.data / "spool" / "quarantine").iterdir()), [])
        digest = hashlib.sha256(live).hexdigest()
        self.assertEqual((store / folder / digest).read_bytes(), live)
