"""The search language and the read side of the store: queries run on
messages the test stored, on SQLite and on MariaDB; bad queries get a
message that says what is wrong."""

import contextlib
import hashlib
import io
import tempfile
import time
from datetime import datetime
from pathlib import Path

import MySQLdb
from twisted.internet import defer
from twisted.trial import unittest

from smtplatrine.store import enrichment, queries, records, search
from smtplatrine.store.database import Database
from smtplatrine.store.dialects import Rejected, Unavailable
from smtplatrine.cli import main as cli_main
from smtplatrine.config import MySQL as MySQLSettings
from smtplatrine.store import dialects
from tests.mariadb import shared_database
from tests.test_store import PDF, message_bytes, prepared

M1, M2, M3, M4 = (f"00000000-0000-4000-8000-00000000000{i}" for i in range(1, 5))
ALL = {M1, M2, M3, M4}


def epoch(text):
    return datetime.fromisoformat(text).timestamp()


PAYPAL = (b"From: \"PayPal Service\" <service@paypa1.example.com>\r\n"
          b"To: victim@example.com\r\nSubject: Your account is limited\r\n\r\n"
          b"Please verify your password at https://login.paypa1.example.com/verify now\r\n")
MONEY = (b"From: lucky@lottery.example\r\nTo: winner@example.org\r\n"
         b"Subject: Free money\r\n\r\n" + b"You are our lottery winner.\r\n" * 800)
PILLS = (b"From: shop@pills.example\r\nTo: buyer@example.org\r\nSubject: offer\r\n"
         b"Content-Type: text/html\r\n\r\n<p>Cheap <b>pills</b> &amp; more</p>\r\n")
SESSION_3 = "6f1c1f0e-2d5c-4c53-9a57-3c1f3a0e9a33"


class SearchTestsMixin:
    """Four messages, each with properties of its own, searched."""

    @defer.inlineCallbacks
    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp())
        self.dialect = self.make_dialect()
        self.database = Database(self.dialect)
        self.addCleanup(self.database.close)
        yield defer.Deferred.fromCoroutine(self.database.open())
        self.raws = {M1: message_bytes(), M2: PAYPAL, M3: MONEY, M4: PILLS}
        items = [
            prepared(self.tmp, M1, self.raws[M1], received=epoch("2026-01-01T10:00:00+00:00")),
            prepared(self.tmp, M2, PAYPAL, received=epoch("2026-01-02T10:00:00+00:00"),
                     src_ip="192.0.2.7", helo="EVIL.example", mail_from="bounce@paypa1.example.com",
                     rcpts=["victim@example.com"], tls={"version": "TLSv1.3", "cipher": "x"}),
            prepared(self.tmp, M3, MONEY, received=epoch("2026-01-03T10:00:00+00:00"),
                     src_ip="45.155.205.9", sensor="sensor-b", session=SESSION_3,
                     mail_from="lucky@lottery.example", rcpts=["winner@example.org"]),
            prepared(self.tmp, M4, PILLS, received=epoch("2026-01-04T10:00:00+00:00"),
                     src_ip="192.0.2.200", mail_from="shop@pills.example",
                     rcpts=["buyer@example.org"]),
        ]
        for item in items:
            yield self.read(records.save_message, item, time.time())
        yield self.read(records.save_session, {
            "session": SESSION_3, "sensor": "sensor-b", "src_ip": "45.155.205.9",
            "src_port": 1234, "dst_ip": "::1", "dst_port": 25, "start": 1767400000.0,
            "end": 1767400001.0, "auth": [{"time": 1767400000.5, "mechanism": "PLAIN",
                                           "username": "admin", "password": "123456"}]})
        for provider, data in (("geoip_city", {"country_code": "RU"}),
                               ("geoip_asn", {"asn": 4134, "organization": "X"})):
            yield self.read(enrichment.save_result, provider, "ip", "45.155.205.9",
                           "sensor-b", data, time.time(), 3600)

    def read(self, interaction, *args):
        return defer.Deferred.fromCoroutine(
            self.database.run(interaction, self.dialect, *args))

    @defer.inlineCallbacks
    def found(self, text, **scope):
        page = yield self.read(queries.messages, queries.Scope(**scope),
                              search.parse(text), 1, 50)
        return {row["message_id"] for row in page.rows}

    @defer.inlineCallbacks
    def assertFinds(self, cases):
        for text, expected in cases:
            found = yield self.found(text)
            self.assertEqual(found, expected, text)

    def test_free_text(self):
        """Words and phrases match the subject and the body (the text of an
        HTML body too), in any case; - excludes."""
        return self.assertFinds([
            ("invoice", {M1}), ("INVOICE", {M1}), ("lottery winner", {M3}),
            ('"account is limited"', {M2}), ('"limited account"', set()),
            ("pills", {M4}), ("-invoice", ALL - {M1}), ("invoice pills", set()),
            ("verify password", {M2})])

    def test_addresses(self):
        """from: takes addresses, domains and display names of From and
        MAIL FROM; to: a recipient address or the recipients' domain."""
        return self.assertFinds([
            ("from:paypa1.example.com", {M2}), ("from:alice", {M1}),
            ("from:PayPal", {M2}), ("from:alice@example.net", {M1}),
            ("to:bob+sales@example.org", {M1}), ("to:example.com", {M2}),
            ("to:winner@example.org", {M3}), ("subject:money", {M3}),
            ("subject:verify", set())])

    def test_network_terms(self):
        """ip: finds the client and the Received hops, by address or
        network; helo: any case; country: and asn: the client's GeoIP."""
        return self.assertFinds([
            ("ip:192.0.2.7", {M1, M2}), ("ip:192.0.2.0/24", {M1, M2, M4}),
            ("ip:2001:db8::/32", {M1}), ("ip:2001:db8::1", {M1}),
            ("ip:45.155.205.0/24", {M3}), ("-ip:192.0.2.0/24", {M3}),
            ("helo:evil.EXAMPLE", {M2}), ("country:ru", {M3}), ("asn:AS4134", {M3}),
            ("asn:4134", {M3}), ("country:CN", set()), ("sensor:sensor-b", {M3})])

    def test_content_terms(self):
        """has:, filename:, hashes of messages and attachments, url:,
        domain:, user:, is:, dates and sizes."""
        pdf = hashlib.sha256(PDF).hexdigest()
        return self.assertFinds([
            ("has:attachment", {M1}), ("-has:attachment", ALL - {M1}),
            ("has:url", {M1, M2}), ("filename:CRON.D", {M1}), ("filename:%", set()),
            (f"sha256:{pdf}", {M1}), (f"sha256:{hashlib.sha256(PAYPAL).hexdigest()}", {M2}),
            (f"md5:{hashlib.md5(PDF).hexdigest()}", {M1}),
            (f"md5:{hashlib.md5(MONEY).hexdigest().upper()}", {M3}),
            ("url:verify", {M2}), ("domain:example.com", {M1, M2}),
            ("domain:paypa1.example.com", {M2}), ("user:admin", {M3}), ("user:root", set()),
            ("is:tls", {M2}), ("is:auth", {M3}),
            ("after:2026-01-03", {M3, M4}), ("before:2026-01-02", {M1}),
            ("after:2026-01-02T09:00 before:2026-01-02T11:00", {M2}),
            ("larger:10k", {M3}), ("smaller:1k", {M2, M4}),
            ("from:paypa1.example.com is:tls verify", {M2})])

    @defer.inlineCallbacks
    def test_scope_and_pages(self):
        """Lists are newest first, narrowed by sensor and time, in pages
        that say whether more follow."""
        page = yield self.read(queries.messages, queries.Scope(), None, 1, 3)
        self.assertEqual([r["message_id"] for r in page.rows], [M4, M3, M2])
        self.assertEqual((page.more, page.total), (True, 4))
        page = yield self.read(queries.messages, queries.Scope(), None, 2, 3)
        self.assertEqual(([r["message_id"] for r in page.rows], page.more), ([M1], False))
        found = yield self.found("", sensor="sensor-b")
        self.assertEqual(found, {M3})
        found = yield self.found("", since=search.moment("2026-01-02"),
                                 until=search.moment("2026-01-04"))
        self.assertEqual(found, {M2, M3})
        [row] = (yield self.read(queries.messages, queries.Scope(), search.parse("is:auth"),
                                1, 50)).rows
        self.assertEqual((row["country"], row["auth"], row["recipients"], row["attachments"]),
                         ("RU", True, 1, 0))

    @defer.inlineCallbacks
    def test_message_view(self):
        """One message with its parts, session and the enrichment of its
        stored indicators."""
        record = yield self.read(queries.message, M3)
        self.assertEqual(record["header_subject"], "Free money")
        self.assertEqual(record["md5"], hashlib.md5(MONEY).hexdigest())
        self.assertEqual([c["username"] for c in record["session"]["credentials"]], ["admin"])
        self.assertEqual(sorted((e["provider"], e["source"]) for e in record["enrichment"]),
                         [("geoip_asn", "client"), ("geoip_city", "client")])
        missing = yield self.read(queries.message, "no-such-message")
        self.assertIsNone(missing)

    @defer.inlineCallbacks
    def test_read_only(self):
        """A read-only database reads and cannot write."""
        reader = Database(self.dialect, readonly=True)
        self.addCleanup(reader.close)
        version = yield defer.Deferred.fromCoroutine(reader.open())
        self.assertGreaterEqual(version, 4)
        page = yield defer.Deferred.fromCoroutine(reader.run(
            queries.messages, self.dialect, queries.Scope(), None, 1, 50))
        self.assertEqual(page.total, 4)

        def write(cursor):
            cursor.execute("DELETE FROM honeypot_emails")
        if self.dialect.name == "sqlite":
            yield self.assertFailure(defer.Deferred.fromCoroutine(reader.run(write)),
                                     Rejected, Unavailable)


def sqlite_dialect(testcase):
    """A dialect for a new SQLite file."""
    return dialects.SQLite(Path(tempfile.mkdtemp()) / "store.sqlite")


def mariadb_dialect(testcase):
    """A dialect for a new database on the machine's MariaDB."""
    settings = shared_database(testcase)
    return dialects.MySQL(MySQLSettings(
        mysql_host=settings["host"], mysql_port=settings["port"],
        mysql_username=settings["user"], mysql_password=settings["password"],
        mysql_database=settings["database"]))


class SQLiteSearchTests(SearchTestsMixin, unittest.TestCase):
    make_dialect = sqlite_dialect


class MariaDBSearchTests(SearchTestsMixin, unittest.TestCase):
    make_dialect = mariadb_dialect

    @defer.inlineCallbacks
    def test_select_only_account(self):
        """A MariaDB account that may only SELECT opens the database
        read-only and lists the messages."""
        settings = self.dialect.settings
        user = f"reader_{settings.mysql_database[-8:]}"
        admin = MySQLdb.connect(host=settings.mysql_host, port=settings.mysql_port,
                                user="root", password="")
        self.addCleanup(admin.close)
        cursor = admin.cursor()
        cursor.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY 'pw'")
        self.addCleanup(cursor.execute, f"DROP USER '{user}'@'%'")
        cursor.execute(f"GRANT SELECT ON `{settings.mysql_database}`.* TO '{user}'@'%'")
        dialect = type(self.dialect)(type(settings)(
            mysql_host=settings.mysql_host, mysql_port=settings.mysql_port,
            mysql_username=user, mysql_password="pw",
            mysql_database=settings.mysql_database, mysql_auto_create_db=False))
        reader = Database(dialect, readonly=True)
        self.addCleanup(reader.close)
        yield defer.Deferred.fromCoroutine(reader.open())
        page = yield defer.Deferred.fromCoroutine(reader.run(
            queries.messages, dialect, queries.Scope(), search.parse("lottery"), 1, 50))
        self.assertEqual([r["message_id"] for r in page.rows], [M3])


class ParseTests(unittest.TestCase):
    """Queries that cannot be read say why, naming the term."""

    def assertRefused(self, text, *words):
        error = self.assertRaises(search.SearchError, search.parse, text)
        for word in words:
            self.assertIn(word, str(error))

    def test_errors(self):
        """Each malformed query gets a message naming what is wrong."""
        self.assertRefused('subject:"unclosed', "not closed")
        self.assertRefused("form:alice", "form: is no search field", "from:")
        self.assertRefused("ip:999.1.1.1", "ip:999.1.1.1 is not", "ip:192.0.2.7")
        self.assertRefused("larger:huge", "larger:10k")
        self.assertRefused("before:yesterday", "before:2026-03-02")
        self.assertRefused("has:nothing", "attachment or url")
        self.assertRefused("sha256:abc", "SHA-256")
        self.assertRefused("---", "no letter or digit")
        self.assertRefused("from:", "needs a value")
        self.assertRefused("a - b", "followed by the term")
        self.assertRefused("x" * 1001, "at most 1000")
        self.assertRefused(" ".join(["a"] * 31), "at most 30")

    def test_terms(self):
        """Fields, quotes and negation are read as written."""
        self.assertEqual(search.parse('-from:"Pay Pal" "a b" c').terms, (
            search.Term("from", "Pay Pal", True), search.Term(None, "a b"),
            search.Term(None, "c")))
        self.assertEqual(search.size("1.5M"), 1572864)
        self.assertEqual(search.moment("2026-03-02T10:00:00+02:00"),
                         "2026-03-02 08:00:00.000000")


class CommandLineSearchTests(unittest.TestCase):
    """``smtplatrine search QUERY`` prints the matching messages."""

    @defer.inlineCallbacks
    def test_search_command(self):
        """The CLI finds what the page would, and refuses a bad query in one line."""
        harness = SQLiteSearchTests("test_free_text")
        yield harness.setUp()
        self.addCleanup(harness.database.close)
        etc = harness.tmp / "etc"
        etc.mkdir()
        (etc / "db.ini").write_text(f"[server]\ndata_dir = {harness.tmp}\n"
                                    f"[sqlite]\nsqlite_path = {harness.dialect.path}\n")
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            cli_main(["search", "--config", str(etc), "from:paypal", "verify"])
        [line] = out.getvalue().splitlines()
        self.assertEqual(line.split("\t")[1:3], [M2, "sensor-a"])
        self.assertIn("1 message(s) match", err.getvalue())
        error = self.assertRaises(SystemExit, cli_main,
                                  ["search", "--config", str(etc), "ip:nowhere"])
        self.assertIn("ip:nowhere is not", str(error))


class UpgradeTestsMixin:
    """A database of version 3 with a message in it, upgraded to version 4."""

    @defer.inlineCallbacks
    def test_upgrade_fills_index_and_indicators(self):
        """Upgrading indexes the words and keeps the indicators of the
        messages stored before, so that search and enrichment find them."""
        dialect = self.make_dialect()
        old = Database(dialect)
        old._migrations = [m for m in old._migrations if m[0] <= 3]
        self.addCleanup(old.close)
        yield defer.Deferred.fromCoroutine(old.open())

        def insert(cursor):
            cursor.execute(dialect.insert("honeypot_emails", [
                "message_id", "session_id", "sensor", "received", "stored", "client_ip",
                "client_port", "server_ip", "server_port", "tls", "mail_from", "mail_params",
                "acknowledged", "truncated", "incomplete", "recovered", "size", "sha256",
                "header_subject", "body_text", "body_html", "session_flags", "defects"]),
                (M1, SESSION_3, "old", "2025-12-01 10:00:00.000000",
                 "2025-12-01 10:00:01.000000", "45.155.205.9", 1, "192.0.2.1", 25, False,
                 "bot@Old.Example", "{}", True, False, False, False, 10, "0" * 64,
                 "Antique offer", "plain words", "<p>grandfather clock</p>", "[]", "[]"))
        yield defer.Deferred.fromCoroutine(old.run(insert))
        new = Database(dialect)
        self.addCleanup(new.close)
        version = yield defer.Deferred.fromCoroutine(new.open())
        self.assertGreaterEqual(version, 4)
        for text in ("antique", "grandfather", "from:old.example"):
            page = yield defer.Deferred.fromCoroutine(new.run(
                queries.messages, dialect, queries.Scope(), search.parse(text), 1, 50))
            self.assertEqual([r["message_id"] for r in page.rows], [M1], text)

        def indicators(cursor):
            cursor.execute("SELECT kind, indicator, source FROM honeypot_email_indicators"
                           " ORDER BY kind")
            return [tuple(row) for row in cursor.fetchall()]
        found = yield defer.Deferred.fromCoroutine(new.run(indicators))
        self.assertEqual(found, [("domain", "old.example", "sender"),
                                 ("ip", "45.155.205.9", "client")])


class SQLiteUpgradeTests(UpgradeTestsMixin, unittest.TestCase):
    make_dialect = sqlite_dialect


class MariaDBUpgradeTests(UpgradeTestsMixin, unittest.TestCase):
    make_dialect = mariadb_dialect
