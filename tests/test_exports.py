"""The exports on messages the test stored (those of tests/test_search.py,
and two more), on SQLite and on MariaDB, read back by independent readers:
the ``stix2`` library, ``json``, Python's ``csv`` and ``mailbox``; the
expected values come from the messages the test wrote (hashlib for the
hashes).  And ``smtplatrine export --format ...`` on the command line."""

import contextlib
import csv
import hashlib
import io
import json
import mailbox
import re
import subprocess
import time
import zipfile

import stix2
from twisted.internet import defer
from twisted.trial import unittest

from smtplatrine import export
from smtplatrine.cli import main as cli_main
from smtplatrine.store import indicators, live, queries, records, search
from smtplatrine.web.zipcrypto import EncryptedZip
from tests.process import require
from tests import test_search
from tests.test_search import M1, M2, M3, M4, MONEY, epoch
from tests.test_store import PDF, prepared

M5, M6 = "00000000-0000-4000-8000-000000000005", "00000000-0000-4000-8000-000000000006"
# Lines an mbox reader would take for a new message, and lines quoted so.
FROM_LINES = (b"From: ceo@corp.example\r\nTo: staff@corp.example\r\nSubject: memo\r\n\r\n"
              b"From the desk of the CEO\r\n>From a quoted mail\r\n>>From deeper\r\n"
              b"Fromage is no From_ line\r\n From neither\r\n")
FORMULAS = (b"From: =cmd|' /C calc'!A0 <x@formula.example>\r\nTo: a@example.org\r\n"
            b"Subject: =HYPERLINK(\"http://evil.example\")\r\n\r\nhi\r\n")
CELLS = {"header_subject": '=HYPERLINK("http://evil.example")',
         "mail_from": "+1@formula.example", "helo": "-2+3", "header_to": "a@example.org"}


class ExportTestsMixin:
    """``harness`` is the search tests' class of the database to use."""

    @defer.inlineCallbacks
    def setUp(self):
        self.harness = self.harness_class("test_free_text")
        self.addCleanup(self.harness.doCleanups)
        yield self.harness.setUp()
        self.addCleanup(self.harness.database.close)
        self.raws = dict(self.harness.raws, **{M5: FROM_LINES, M6: FORMULAS})
        for message_id, raw, changes in (
                (M5, FROM_LINES, {"mail_from": "ceo@corp.example"}),
                (M6, FORMULAS, {"mail_from": CELLS["mail_from"], "helo": CELLS["helo"]})):
            item = prepared(self.harness.tmp, message_id, raw,
                            received=epoch("2026-01-05T10:00:00+00:00"), src_ip="45.155.205.9",
                            rcpts=["a@example.org"], **changes)
            yield self.harness.read(records.save_message, item, time.time())

    def run_export(self, name, query=None, kinds=indicators.KINDS, **scope):
        """The bytes of export *name*, read page by page as the dashboard does."""
        fmt = export.make(name, "sensor-t", "test", 1767225600.0)
        found = search.parse(query) if query else None

        @defer.inlineCallbacks
        def run():
            out, position = [fmt.head()], None
            while True:
                rows, position = yield self.harness.read(
                    export.read_page, fmt, queries.Scope(**scope), found, position, False,
                    kinds)
                out += [fmt.item(row) for row in rows]
                if position is None:
                    return b"".join(out + [fmt.tail()])
        return run()

    @defer.inlineCallbacks
    def test_stix(self):
        """A STIX 2.1 bundle the stix2 library parses: every value observed
        (first and last seen, count), the public client address, the URLs
        and the attachment's SHA-256 also as indicators with a sighting;
        senders and non-public addresses not."""
        bundle = stix2.parse((yield self.run_export("stix")), allow_custom=False)
        self.assertEqual(bundle.type, "bundle")
        by_id = {o.id: o for o in bundle.objects}
        observed = {}
        for o in bundle.objects:
            if o.type == "observed-data":
                [ref] = o.object_refs
                sco = by_id[ref]
                value = sco.hashes["SHA-256"] if sco.type == "file" else sco.value
                observed[sco.type, value] = (o.number_observed, o.first_observed.isoformat(),
                                             o.last_observed.isoformat())
        pdf = hashlib.sha256(PDF).hexdigest()
        self.assertEqual(observed[("ipv4-addr", "45.155.205.9")],
                         (3, "2026-01-03T10:00:00+00:00", "2026-01-05T10:00:00+00:00"))
        self.assertEqual(observed[("ipv6-addr", "2001:db8::1")][0], 1)
        self.assertEqual(observed[("ipv4-addr", "192.0.2.7")][0], 1)
        self.assertEqual(observed[("domain-name", "paypa1.example.com")][0], 1)
        self.assertEqual(observed[("email-addr", "bounce@paypa1.example.com")][0], 1)
        self.assertEqual(observed[("file", pdf)][0], 1)
        self.assertIn(("url", "https://login.paypa1.example.com/verify"), observed)
        patterns = {o.pattern for o in bundle.objects if o.type == "indicator"}
        self.assertEqual(patterns, {
            "[ipv4-addr:value = '45.155.205.9']", f"[file:hashes.'SHA-256' = '{pdf}']",
            "[url:value = 'https://login.paypa1.example.com/verify']",
            "[url:value = 'http://pay.example.com/x']"})
        sightings = {by_id[s.sighting_of_ref].pattern: s for s in bundle.objects
                     if s.type == "sighting"}
        sighting = sightings["[ipv4-addr:value = '45.155.205.9']"]
        self.assertEqual((sighting.count, sighting.first_seen.isoformat()),
                         (3, "2026-01-03T10:00:00+00:00"))
        [author] = [o for o in bundle.objects if o.type == "identity"]
        self.assertEqual(sighting.where_sighted_refs, [author.id])

    @defer.inlineCallbacks
    def test_misp(self):
        """A MISP event whose attributes are the indicators, typed, dated,
        and to_ids for those worth a rule."""
        event = json.loads((yield self.run_export("misp")))["Event"]
        self.assertEqual((event["info"], event["date"], event["published"]),
                         ("test", "2026-01-01", False))
        found = {(a["type"], a["value"]): a for a in event["Attribute"]}
        pdf = hashlib.sha256(PDF).hexdigest()
        expected = {("ip-src", "45.155.205.9"): True, ("ip-src", "192.0.2.7"): False,
                    ("ip-src", "2001:db8::1"): False, ("sha256", pdf): True,
                    ("url", "https://login.paypa1.example.com/verify"): True,
                    ("domain", "paypa1.example.com"): False,
                    ("email-src", "bounce@paypa1.example.com"): False}
        for key, to_ids in expected.items():
            self.assertEqual(found[key]["to_ids"], to_ids, key)
        client = found[("ip-src", "45.155.205.9")]
        self.assertEqual((client["category"], client["first_seen"], client["last_seen"]),
                         ("Network activity", "2026-01-03T10:00:00.000000+00:00",
                          "2026-01-05T10:00:00.000000+00:00"))
        self.assertIn("3 messages", client["comment"])
        self.assertEqual(found[("sha256", pdf)]["category"], "Payload delivery")

    @defer.inlineCallbacks
    def test_search_and_scope(self):
        """The indicators are those of the messages the search finds, in
        the time range; without URLs for a role that may not see them."""
        event = json.loads((yield self.run_export("misp", "from:paypa1.example.com")))
        values = {a["value"] for a in event["Event"]["Attribute"]}
        self.assertEqual(values, {"192.0.2.7", "bounce@paypa1.example.com",
                                  "paypa1.example.com",
                                  "https://login.paypa1.example.com/verify"})
        event = json.loads((yield self.run_export(
            "misp", kinds=tuple(k for k in indicators.KINDS if k != "url"),
            since=search.moment("2026-01-04"))))
        types = {a["type"] for a in event["Event"]["Attribute"]}
        self.assertEqual(types, {"ip-src", "email-src", "domain"})

    @defer.inlineCallbacks
    def test_pages(self):
        """Read a row at a time, an export has every row once."""
        whole = yield self.run_export("misp")
        self.patch(export, "INDICATOR_PAGE", 1)
        single = yield self.run_export("misp")
        values = lambda data: sorted((a["type"], a["value"]) for a in
                                     json.loads(data)["Event"]["Attribute"])
        self.assertEqual(values(single), values(whole))
        self.assertEqual(len(values(whole)), len(set(values(whole))))
        ids, after = [], None
        while True:
            page, after = yield self.harness.read(queries.export_page, queries.Scope(), None,
                                                  after, False, 1)
            ids += [r["message_id"] for r in page]
            if after is None:
                break
        # M5 and M6 were received at the same time: the id orders them.
        self.assertEqual(ids, [M1, M2, M3, M4, M5, M6])

    @defer.inlineCallbacks
    def test_csv(self):
        """One row per message that Python's csv reads back; a cell that a
        spreadsheet would run as a formula starts with '."""
        rows = list(csv.DictReader(io.StringIO((yield self.run_export("csv")).decode())))
        self.assertEqual([r["message_id"] for r in rows], [M1, M2, M3, M4, M5, M6])
        row = rows[-1]
        for name, value in CELLS.items():
            expected = "'" + value if value[0] in "=+-@" else value
            self.assertEqual(row[name], expected, name)
        self.assertEqual(rows[0]["attachment_sha256"], hashlib.sha256(PDF).hexdigest())
        self.assertEqual(rows[1]["urls"], "https://login.paypa1.example.com/verify")
        self.assertEqual(export.cell("\tx"), "'\tx")
        self.assertEqual(export.cell("\rx"), "'\rx")
        self.assertEqual(export.cell("plain -x"), "plain -x")

    @defer.inlineCallbacks
    def test_mbox(self):
        """An mboxrd file Python's mailbox reads as the messages stored,
        byte for byte once its From_ quoting is undone."""
        path = self.harness.tmp / "out.mbox"
        path.write_bytes((yield self.run_export("mbox")))
        box = mailbox.mbox(str(path), create=False)
        self.addCleanup(box.close)
        got = [re.sub(rb"(?m)^>(>*From )", rb"\1", box.get_bytes(key)) for key in box.keys()]
        self.assertEqual([hashlib.sha256(g).hexdigest() for g in got],
                         [hashlib.sha256(self.raws[m]).hexdigest()
                          for m in (M1, M2, M3, M4, M5, M6)])
        self.assertEqual(box[3].get_from().split()[0], "shop@pills.example")
        text = path.read_bytes()
        self.assertIn(b"\n>From the desk of the CEO\r\n>>From a quoted mail\r\n"
                      b">>>From deeper\r\nFromage is no From_ line\r\n From neither", text)

    @defer.inlineCallbacks
    def test_jsonl(self):
        """One JSON object per message, with its raw bytes when asked."""
        fmt = export.make("jsonl")
        rows, _ = yield self.harness.read(export.read_page, fmt, queries.Scope(),
                                          search.parse("subject:money"), None, True)
        [record] = [json.loads(fmt.item(row)) for row in rows]
        self.assertEqual(record["message_id"], M3)
        self.assertEqual(hashlib.sha256(__import__("base64").b64decode(
            record["raw_base64"])).hexdigest(), hashlib.sha256(MONEY).hexdigest())

    @defer.inlineCallbacks
    def test_live_reads(self):
        """The live view's reads: what is numbered after a point, oldest
        first; sessions once they have ended, with their transcript."""
        newest = yield self.harness.read(live.newest)
        self.assertTrue(newest[0] >= 2 and newest[1] >= 6)
        sessions, messages = yield self.harness.read(live.since, newest[0] - 1,
                                                     newest[1] - 2)
        self.assertEqual([m["message_id"] for m in messages], [M5, M6])
        self.assertEqual(len(sessions), 1)
        sessions, messages = yield self.harness.read(live.since, 0, 0)
        self.assertEqual([m["message_id"] for m in messages], [M1, M2, M3, M4, M5, M6])
        ids = [s["session_id"] for s in sessions]
        ended = yield self.harness.read(live.ended, ids)
        [session] = ended
        self.assertEqual((session["session_id"], session["ended"]),
                         ("6f1c1f0e-2d5c-4c53-9a57-3c1f3a0e9a33", "2026-01-03T00:26:41.000000Z"))
        self.assertEqual(session["transcript"], [])


class SQLiteExportTests(ExportTestsMixin, unittest.TestCase):
    harness_class = test_search.SQLiteSearchTests

    def test_command_line(self):
        """``smtplatrine export --format stix|misp|csv|jsonl QUERY`` writes
        what the dashboard's export does; a bad query or format: one line."""
        etc = self.harness.tmp / "etc"
        etc.mkdir()
        (etc / "db.ini").write_text(f"[server]\ndata_dir = {self.harness.tmp}\n"
                                    f"[sqlite]\nsqlite_path = {self.harness.dialect.path}\n")

        def run(*args):
            out = self.harness.tmp / "out"
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                cli_main(["export", "--config", str(etc), "--output", str(out), *args])
            return out.read_bytes(), err.getvalue()
        data, said = run("--format", "stix", "from:paypa1.example.com")
        bundle = stix2.parse(data, allow_custom=False)
        self.assertEqual({o.pattern for o in bundle.objects if o.type == "indicator"},
                         {"[url:value = 'https://login.paypa1.example.com/verify']"})
        self.assertIn("exported 4 indicator(s)", said)
        data, _ = run("--format", "misp")
        self.assertIn("45.155.205.9", {a["value"] for a in json.loads(data)["Event"]["Attribute"]})
        data, _ = run("--format", "csv", "subject:money")
        self.assertEqual([r["message_id"] for r in csv.DictReader(io.StringIO(data.decode()))],
                         [M3])
        data, said = run("--format", "mbox", "subject:memo")
        self.assertEqual(data.count(b"\nFrom ceo@corp.example "), 0)
        self.assertTrue(data.startswith(b"From ceo@corp.example "))
        self.assertIn(b">From the desk", data)
        data, said = run()
        self.assertEqual(len(data.splitlines()), 6)
        self.assertIn("raw_base64", json.loads(data.splitlines()[0]))
        self.assertIn("exported 6 message(s)", said)
        error = self.assertRaises(SystemExit, cli_main,
                                  ["export", "--config", str(etc), "ip:nowhere"])
        self.assertIn("ip:nowhere is not", str(error))


class MariaDBExportTests(ExportTestsMixin, unittest.TestCase):
    harness_class = test_search.MariaDBSearchTests


class EncryptedZipTests(unittest.TestCase):

    def test_zip64(self):
        """Past 65,535 members the archive is Zip64: Python's zipfile and
        unzip read every member with the password."""
        require("unzip")
        archive = EncryptedZip()
        path = self.mktemp()
        with open(path, "wb") as out:
            for i in range(70_000):
                out.write(archive.member(f"{i}.eml", b"message %d\r\n" % i))
            out.write(archive.end())
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            self.assertEqual(len(names), 70_000)
            self.assertEqual(z.read("69999.eml", pwd=b"infected"), b"message 69999\r\n")
        result = subprocess.run(["unzip", "-P", "infected", "-t", path], capture_output=True,
                                timeout=120)
        self.assertEqual(result.returncode, 0, result.stdout[-500:])
        self.assertIn(b"No errors detected", result.stdout)
