"""The tallies the storing side keeps and what the overview and the pivot
pages read from them, on SQLite and on MariaDB: counts of what the test
stored, counted by hand."""

import hashlib
import json
import shutil
import tempfile
from datetime import datetime
from pathlib import Path

from twisted.internet import defer
from twisted.trial import unittest

from smtplatrine.pipeline import save_group
from smtplatrine.store import acl, dialects, pivots, queries, records, schema, search, tallies
from smtplatrine.store.database import Database
from tests.test_search import mariadb_dialect
from tests.test_store import PDF, message_bytes, prepared

DAY1, DAY2 = "2026-01-01T10:00:00+00:00", "2026-01-02T15:30:00+00:00"
S1, S2, S3 = (f"6f1c1f0e-2d5c-4c53-9a57-3c1f3a0e9a0{i}" for i in range(1, 4))
M1, M2, M3 = (f"00000000-0000-4000-8000-00000000000{i}" for i in range(1, 4))
OTHER = (b"From: \"Shop\" <shop@Pills.example>\r\nTo: x@example.org\r\n"
         b"Subject: Cheap pills 50% off\r\nUser-Agent: Bulk/2\r\n\r\n"
         b"Buy at http://pills.example/buy and http://pills.example/buy\r\n")


def epoch(text):
    return datetime.fromisoformat(text).timestamp()


def session(session_id, ip, start, auth=(), helo="client.example", sensor="sensor-a"):
    """A finished session record as the SMTP side spools it."""
    return {"session": session_id, "sensor": sensor, "src_ip": ip, "src_port": 40000,
            "dst_ip": "::1", "dst_port": 25, "start": start, "end": start + 9,
            "helo": helo, "tls": None, "transcript": [], "flags": [], "commands": 3,
            "unknown_commands": 0, "errors": 0, "messages": 0, "pregreet": "",
            "close_reason": "quit",
            "auth": [{"mechanism": m, "authzid": "", "username": u, "password": p,
                      "challenge": None, "response": None, "time": start + 1 + i,
                      "accepted": False} for i, (m, u, p) in enumerate(auth)]}


class PivotsTestsMixin:
    """Two days: on the first, two messages from 192.0.2.7 (the same PDF,
    subjects "Invoice 42" and "Invoice 7") and a credential stuffer from
    198.51.100.9; on the second, one message from 192.0.2.7 on sensor-b.
    *grouped*: the messages are stored in one transaction, as the storing
    side stores those parsed meanwhile, their tallies added up."""

    grouped = False

    @defer.inlineCallbacks
    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.dialect = self.make_dialect()
        self.database = Database(self.dialect)
        self.addCleanup(self.database.close)
        yield defer.Deferred.fromCoroutine(self.database.open())
        day1, day2 = epoch(DAY1), epoch(DAY2)
        items = [
            prepared(self.tmp, M1, message_bytes(), session=S1, src_ip="192.0.2.7",
                     received=day1, session_start=day1 - 1),
            prepared(self.tmp, M2, message_bytes(subject="Invoice 7"), session=S1,
                     src_ip="192.0.2.7", received=day1 + 60, session_start=day1 - 1),
            prepared(self.tmp, M3, OTHER, session=S3, src_ip="192.0.2.7", received=day2,
                     session_start=day2 - 1, sensor="sensor-b",
                     mail_from="x@Bulk.example", rcpts=["Info+Promo@Victim.example"]),
        ]
        if self.grouped:                    # M1 twice: counted once
            yield self.call(save_group, items + items[:1], day2 + 100)
        else:
            for item in items + items[:1]:
                yield self.call(records.save_message, item, day2 + 100)
        records_ = [session(S1, "192.0.2.7", day1 - 1),
                    session(S2, "198.51.100.9", day1 + 30,
                            auth=[("PLAIN", "admin", "hunter2"), ("LOGIN", "admin", "Hunter2"),
                                  ("PLAIN", "admin", "hunter2"), ("PLAIN", "root", None)],
                            helo="stuffer.example"),
                    session(S3, "192.0.2.7", day2 - 1, sensor="sensor-b")]
        for record in records_ + records_[1:2]:    # a replay counts no more
            yield self.call(records.save_session, record)

    def call(self, interaction, *args):
        return defer.Deferred.fromCoroutine(self.database.run(
            interaction, self.dialect, *args))

    @defer.inlineCallbacks
    def test_counters(self):
        """The overview's counters: 3 connections, 3 sessions, 3 messages,
        2 client addresses, 4 AUTH attempts of 3 distinct credentials, 2
        attachments of which 1 was new; a day and a sensor narrow them."""
        everything = yield self.call(pivots.counters, queries.Scope())
        self.assertEqual(everything, {
            "connections": 3, "sessions": 3, "messages": 3, "auth": 4, "attachments": 2,
            "new_attachments": 1, "clients": 2, "credentials": 3})
        day2 = yield self.call(pivots.counters, queries.Scope(search.moment("2026-01-02")))
        self.assertEqual((day2["messages"], day2["connections"], day2["auth"],
                          day2["attachments"], day2["clients"]), (1, 1, 0, 0, 1))
        sensor_a = yield self.call(pivots.counters, queries.Scope(sensor="sensor-a"))
        self.assertEqual((sensor_a["messages"], sensor_a["connections"]), (2, 2))

    @defer.inlineCallbacks
    def test_activity_by_hour(self):
        """Connections, messages and AUTH attempts per hour they happened in."""
        found = yield self.call(pivots.activity, queries.Scope())
        self.assertEqual(found, [
            ["2026-01-01T09:00:00Z", {"connections": 1, "messages": 0, "auth": 0}],
            ["2026-01-01T10:00:00Z", {"connections": 1, "messages": 2, "auth": 4}],
            ["2026-01-02T15:00:00Z", {"connections": 1, "messages": 1, "auth": 0}]])

    @defer.inlineCallbacks
    def test_overview_tops(self):
        """The top lists count what was stored; passwords only when asked."""
        found = yield self.call(pivots.overview, queries.Scope(), False)
        top = found["top"]
        self.assertEqual(top["client"], [{"value": "192.0.2.7", "n": 2},
                                         {"value": "198.51.100.9", "n": 1}])
        self.assertEqual(top["helo"], [{"value": "client.example", "n": 2},
                                       {"value": "stuffer.example", "n": 1}])
        self.assertEqual(top["mail_from_domain"], [{"value": "example.net", "n": 2},
                                                   {"value": "bulk.example", "n": 1}])
        self.assertEqual(top["from_domain"], [{"value": "example.net", "n": 2},
                                              {"value": "pills.example", "n": 1}])
        self.assertEqual(top["rcpt_domain"], [{"value": "example.org", "n": 4},
                                              {"value": "victim.example", "n": 1}])
        self.assertEqual(top["mailer"], [{"value": "Mailer 1.0", "n": 2},
                                         {"value": "Bulk/2", "n": 1}])
        self.assertEqual(top["attachment_type"], [{"value": "application/pdf", "n": 2}])
        self.assertEqual(top["username"], [{"value": "admin", "n": 3},
                                           {"value": "root", "n": 1}])
        self.assertNotIn("password", top)
        with_passwords = yield self.call(pivots.overview, queries.Scope(), True)
        self.assertEqual(with_passwords["top"]["password"], [
            {"value": "hunter2", "n": 2}, {"value": "Hunter2", "n": 1}])

    @defer.inlineCallbacks
    def test_countries_and_asns_from_enrichment(self):
        """Countries and AS of the clients' sessions come from what GeoIP
        found of each address; the detected type from the file analysis."""
        def enrich(cursor, dialect):
            for provider, ip, result in (
                    ("geoip_city", "192.0.2.7", {"country_code": "NL", "city": "Delft"}),
                    ("geoip_city", "198.51.100.9", {"country_code": "CN"}),
                    ("geoip_asn", "192.0.2.7", {"asn": 64500, "organization": "Example"})):
                cursor.execute(dialect.insert("honeypot_enrichment", [
                    "provider", "indicator", "kind", "sensor", "found", "result",
                    "looked_up", "expires"]), (provider, ip, "ip", "s", 1, json.dumps(result),
                                               records.utc(0), records.utc(2e9)))
            cursor.execute(dialect.insert("honeypot_files", ["sha256", "size", "mime",
                                                             "analysed"]),
                           (hashlib.sha256(PDF).hexdigest(), len(PDF), "application/pdf",
                            records.utc(0)))
        yield self.call(enrich)
        found = yield self.call(pivots.overview, queries.Scope(), False)
        self.assertEqual(found["top"]["country"], [{"value": "NL", "n": 2},
                                                   {"value": "CN", "n": 1}])
        self.assertEqual(found["top"]["asn"], [{"value": "64500", "label": "Example", "n": 2}])
        self.assertEqual(found["top"]["detected_type"], [{"value": "application/pdf", "n": 2}])
        clients = yield self.call(pivots.clients, queries.Scope())
        first = clients.rows[0]
        self.assertEqual((first["address"], first["country"], first["city"], first["asn"],
                          first["as_name"]), ("192.0.2.7", "NL", "Delft", 64500, "Example"))

    @defer.inlineCallbacks
    def test_clients(self):
        """Each address with its sessions, messages and AUTH attempts, the
        first and last session, and whether the block list holds it."""
        yield self.call(acl.add, ["198.51.100.0/24"], [], 0)
        found = yield self.call(pivots.clients, queries.Scope())
        self.assertEqual([(r["address"], r["sessions"], r["messages"], r["auth"], r["blocked"])
                          for r in found.rows],
                         [("192.0.2.7", 2, 3, 0, None), ("198.51.100.9", 1, 0, 4,
                                                         "198.51.100.0/24")])
        self.assertEqual((found.rows[0]["first_seen"][:19], found.rows[0]["last_seen"][:19]),
                         ("2026-01-01T09:59:59", "2026-01-02T15:29:59"))
        one = yield self.call(pivots.client, "198.51.100.9")
        self.assertEqual((one["sessions"], one["messages"], one["auth"], one["blocked"]),
                         (1, 0, 4, "198.51.100.0/24"))
        self.assertIsNone((yield self.call(pivots.client, "203.0.113.1")))

    @defer.inlineCallbacks
    def test_credentials_and_wordlists(self):
        """Credentials by times tried, with their clients; without the
        forensic role no password; wordlists most tried first."""
        found = yield self.call(pivots.credentials, queries.Scope(), 1, 50, True)
        self.assertEqual([(r["mechanism"], r["username"], r["password"], r["times"],
                           r["clients"]) for r in found.rows],
                         [("PLAIN", "admin", "hunter2", 2, 1), ("LOGIN", "admin", "Hunter2", 1, 1),
                          ("PLAIN", "root", "", 1, 1)])
        hidden = yield self.call(pivots.credentials, queries.Scope(), 1, 50, False)
        self.assertNotIn("hunter2", json.dumps(hidden.as_json("credentials")).lower())
        self.assertEqual((yield self.call(pivots.wordlist, queries.Scope(), "password")),
                         ["hunter2", "Hunter2"])
        self.assertEqual((yield self.call(pivots.wordlist, queries.Scope(), "pair")),
                         ["admin:hunter2", "admin:Hunter2", "root:"])
        exchanges = yield self.call(pivots.exchanges, queries.Scope(), "PLAIN", "admin",
                                   "hunter2")
        self.assertEqual([r["session_id"] for r in exchanges], [S2, S2])

    @defer.inlineCallbacks
    def test_recipients_attachments_urls(self):
        """Recipients with user, tag and domain; attachments one row per
        SHA-256 with the names seen; URLs counted once a message."""
        found = yield self.call(pivots.recipients, queries.Scope())
        self.assertEqual([(r["address"], r["user"], r["tag"], r["domain"], r["times"])
                          for r in found.rows],
                         [("bob+sales@example.org", "bob", "sales", "example.org", 2),
                          ("dave@example.org", "dave", None, "example.org", 2),
                          ("info+promo@victim.example", "info", "promo", "victim.example", 1)])
        found = yield self.call(pivots.attachments, queries.Scope())
        self.assertEqual([(r["sha256"], r["times"], r["names"], r["content_types"], r["size"])
                          for r in found.rows],
                         [(hashlib.sha256(PDF).hexdigest(), 2, ["../../etc/cron.d/x.pdf"],
                           ["application/pdf"], len(PDF))])
        found = yield self.call(pivots.urls, queries.Scope())
        self.assertEqual([(r["url"], r["messages"]) for r in found.rows],
                         [("http://pay.example.com/x", 2), ("http://pills.example/buy", 1)])
        self.assertEqual((yield self.call(pivots.hosts, queries.Scope())),
                         [{"host": "pay.example.com", "messages": 2},
                          {"host": "pills.example", "messages": 1}])

    @defer.inlineCallbacks
    def test_campaigns(self):
        """The two messages of day one share their attachment, URL host,
        subject without its number and sender domain: four groups of two;
        a range of day two alone has none."""
        found = yield self.call(pivots.campaigns, queries.Scope())
        self.assertEqual(sorted((r["by"], r["value"], r["messages"]) for r in found), [
            ("attachment", hashlib.sha256(PDF).hexdigest(), 2),
            ("mail_from_domain", "example.net", 2), ("subject", "Invoice #", 2),
            ("url_host", "pay.example.com", 2)])
        self.assertEqual({(r["first_seen"][:19], r["last_seen"][:19]) for r in found},
                         {("2026-01-01T10:00:00", "2026-01-01T10:01:00")})
        later = yield self.call(pivots.campaigns, queries.Scope(search.moment("2026-01-02")))
        self.assertEqual(later, [])

    @defer.inlineCallbacks
    def test_buckets_agree_with_totals(self):
        """A range that does not hold everything is summed from the day
        buckets (from 09:30: all of that day); it reads what the totals
        say of everything."""
        whole, part = queries.Scope(), queries.Scope(search.moment("2026-01-01T09:30"))
        for read in (pivots.clients, pivots.credentials, pivots.recipients,
                     pivots.attachments, pivots.urls):
            everything = yield self.call(read, whole)
            summed = yield self.call(read, part)
            self.assertEqual(summed.rows, everything.rows)
        for read in (pivots.campaigns, pivots.hosts):
            self.assertEqual((yield self.call(read, part)), (yield self.call(read, whole)))
        self.assertEqual((yield self.call(pivots.wordlist, part, "pair")),
                         (yield self.call(pivots.wordlist, whole, "pair")))

    @defer.inlineCallbacks
    def test_upgrade_counts_what_was_stored(self):
        """What was stored before the tallies existed is counted when 007
        is applied: the pages read the same as when each row was counted
        as it was stored."""
        scope = queries.Scope()
        reads = (pivots.clients, pivots.credentials, pivots.recipients, pivots.attachments,
                 pivots.urls)
        before = yield self.call(pivots.overview, scope, True)
        pages = []
        for read in reads:
            pages.append((yield self.call(read, scope)).rows)

        def undo_007(cursor, dialect):
            for table in ("honeypot_tallies", "honeypot_tally_totals"):
                cursor.execute(f"DROP TABLE {table}")
            cursor.execute("DROP INDEX honeypot_credentials_pair"
                           + (" ON honeypot_credentials" if dialect.name == "mysql" else ""))
            cursor.execute("DELETE FROM schema_version WHERE version = 7")
        yield self.call(undo_007)
        newest = self.dialect.migrations()[-1][0]
        self.assertEqual((yield self.call(schema.upgrade, self.dialect.migrations(), True)),
                         (newest, [7]))
        self.assertEqual((yield self.call(pivots.overview, scope, True)), before)
        for read, rows in zip(reads, pages):
            self.assertEqual((yield self.call(read, scope)).rows, rows)

    @defer.inlineCallbacks
    def test_read_again(self):
        """A message read again (smtplatrine reparse) is counted by its
        new reading instead of its old one; a value it no longer has goes
        when no other message has it."""
        day1 = epoch(DAY1)
        yield self.call(records.update_reading, prepared(
            self.tmp, M2, OTHER, session=S1, src_ip="192.0.2.7", received=day1 + 60,
            session_start=day1 - 1))
        found = yield self.call(pivots.overview, queries.Scope(), False)
        self.assertEqual(found["top"]["mailer"], [{"value": "Bulk/2", "n": 2},
                                                  {"value": "Mailer 1.0", "n": 1}])
        self.assertEqual(found["counters"]["messages"], 3)
        attachments = yield self.call(pivots.attachments, queries.Scope())
        self.assertEqual([r["times"] for r in attachments.rows], [1])
        self.assertEqual((yield self.call(pivots.hosts, queries.Scope())),
                         [{"host": "pills.example", "messages": 2},
                          {"host": "pay.example.com", "messages": 1}])
        day1_only = queries.Scope(search.moment("2026-01-01T09:30"),
                                  search.moment("2026-01-02"))
        self.assertEqual([r["value"] for r in (yield self.call(pivots.top, day1_only,
                                                               "subject"))],
                         ["Cheap pills #% off", "Invoice #"])

    @defer.inlineCallbacks
    def test_new_search_terms(self):
        """type:, mailer: and password: find the messages behind the rows."""
        async def find(text):
            page = await self.database.run(queries.messages, self.dialect, queries.Scope(),
                                           search.parse(text))
            return sorted(r["message_id"] for r in page.rows)
        run = lambda text: defer.Deferred.fromCoroutine(find(text))
        self.assertEqual((yield run("type:application/pdf")), [M1, M2])
        self.assertEqual((yield run('mailer:"Mailer 1.0"')), [M1, M2])
        self.assertEqual((yield run("mailer:Bulk/2")), [M3])
        self.assertEqual((yield run("password:hunter2")), [])


class SQLitePivotsTests(PivotsTestsMixin, unittest.TestCase):
    def make_dialect(self):
        return dialects.SQLite(Path(self.mktemp() + ".sqlite"))


class SQLiteGroupedPivotsTests(SQLitePivotsTests):
    grouped = True


class MariaDBPivotsTests(PivotsTestsMixin, unittest.TestCase):
    make_dialect = mariadb_dialect

    @defer.inlineCallbacks
    def test_range_grouped_in_memory(self):
        """The clients of part of the stored range, 20,000 addresses over
        two days, are summed without a temporary table on disk (with
        MariaDB's default 16 MB such a page took seconds, not a fraction)."""
        day1 = epoch("2026-03-01T12:00:00+00:00")
        counted = {("client", f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", day1 + day * 86400):
                   1 for i in range(20_000) for day in (0, 1)}
        yield self.call(lambda cursor, dialect: tallies.write(cursor, dialect, "s", counted))
        connection = self.dialect.connect(readonly=True)
        self.addCleanup(connection.close)
        cursor = connection.cursor()
        page = pivots.clients(cursor, self.dialect,
                              queries.Scope(search.moment("2026-03-01"),
                                            search.moment("2026-03-02T23:59")))
        self.assertEqual((len(page.rows), page.rows[0]["sessions"]), (50, 2))
        cursor.execute("SHOW SESSION STATUS LIKE 'Created_tmp_disk_tables'")
        self.assertEqual(int(cursor.fetchone()[1]), 0)


class MariaDBGroupedPivotsTests(PivotsTestsMixin, unittest.TestCase):
    make_dialect = mariadb_dialect
    grouped = True
