"""Enrichment state in the database (cache, quotas, holds, queue): the same
tests against SQLite and against MariaDB."""


from twisted.internet import defer
from twisted.trial import unittest

from smtplatrine.store import enrichment as store
from smtplatrine.store.database import Database
from tests import test_store

# 2026-01-01 00:00:00 UTC, a day and a minute boundary (date -d @1767225600).
MIDNIGHT = 1767225600.0
SHA = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def _quota_rows(cursor, dialect):
    cursor.execute("SELECT provider, span, used FROM honeypot_enrichment_quota"
                   " ORDER BY provider, span")
    return [tuple(row) for row in cursor.fetchall()]


class EnrichmentStoreTestsMixin:

    @defer.inlineCallbacks
    def setUp(self):
        self.database = Database(self.make_dialect())
        self.addCleanup(self.database.close)
        yield defer.Deferred.fromCoroutine(self.database.open())

    def call(self, interaction, *args):
        return defer.Deferred.fromCoroutine(
            self.database.run(interaction, self.database.dialect, *args))

    def take(self, now, per_minute=0, per_day=0, provider="vt"):
        """None if a lookup is allowed at *now*, else when it will be."""
        d = self.call(store.prepare_quota, provider)
        d.addCallback(lambda _: self.call(store.take_quota, provider, per_minute,
                                          per_day, now))
        d.addCallback(lambda _: None)
        d.addErrback(lambda f: f.trap(store.OverQuota) and f.value.at)
        return d

    @defer.inlineCallbacks
    def test_cache_until_expiry(self):
        """A result is fresh until its TTL ends; a negative result is kept
        too, as not found."""
        yield self.call(store.save_result, "geoip_asn", "ip", "8.8.8.8", "s1",
                       {"asn": 15169}, MIDNIGHT, 3600)
        yield self.call(store.save_result, "rdns", "ip", "8.8.8.8", "s1", None,
                       MIDNIGHT, 60)
        fresh = yield self.call(store.cached, "geoip_asn", "8.8.8.8", MIDNIGHT + 3599)
        stale = yield self.call(store.cached, "geoip_asn", "8.8.8.8", MIDNIGHT + 3601)
        negative = yield self.call(store.cached, "rdns", "8.8.8.8", MIDNIGHT + 30)
        other = yield self.call(store.cached, "otx", "8.8.8.8", MIDNIGHT)
        self.assertEqual((fresh, stale, negative, other), (True, False, True, False))
        rows = yield self.call(store.results, ["8.8.8.8", SHA])
        self.assertEqual([(r["provider"], r["found"], r["result"]) for r in rows],
                         [("geoip_asn", True, {"asn": 15169}), ("rdns", False, None)])
        self.assertEqual(str(rows[0]["looked_up"])[:19], "2026-01-01 00:00:00")

    @defer.inlineCallbacks
    def test_result_replaced(self):
        """Looking an indicator up again replaces its one row."""
        for data in ({"malicious": 1}, {"malicious": 9}):
            yield self.call(store.save_result, "virustotal", "sha256", SHA, "s1", data,
                           MIDNIGHT, 60)
        rows = yield self.call(store.results, [SHA])
        self.assertEqual([r["result"] for r in rows], [{"malicious": 9}])

    @defer.inlineCallbacks
    def test_minute_quota(self):
        """Four lookups a minute (VirusTotal's free tier): the fifth waits
        for the next minute, which starts the count again."""
        answers = []
        for second in range(5):
            answers.append((yield self.take(MIDNIGHT + second, per_minute=4)))
        self.assertEqual(answers, [None] * 4 + [MIDNIGHT + 60])
        again = yield self.take(MIDNIGHT + 60, per_minute=4)
        self.assertIsNone(again)

    @defer.inlineCallbacks
    def test_sensors_share_the_quota(self):
        """Two sensors (two pools on one database) asking at once get four
        lookups a minute between them, not four each."""
        other = Database(self.database.dialect)
        self.addCleanup(other.close)
        yield self.call(store.prepare_quota, "vt")
        takes = [defer.Deferred.fromCoroutine(database.run(
            store.take_quota, database.dialect, "vt", 4, 0, MIDNIGHT))
            for _ in range(6) for database in (self.database, other)]
        results = yield defer.DeferredList(takes, consumeErrors=True)
        allowed = [ok for ok, _ in results]
        self.assertEqual(allowed.count(True), 4)
        self.assertEqual([f.value for ok, f in results
                          if not ok and not f.check(store.OverQuota)], [])

    @defer.inlineCallbacks
    def test_day_quota_counts_nothing_when_over(self):
        """Over the daily limit the lookup waits for the next UTC day, and
        the refused lookup uses none of the minute's quota."""
        first = yield self.take(MIDNIGHT + 10, per_minute=2, per_day=1)
        second = yield self.take(MIDNIGHT + 11, per_minute=2, per_day=1)
        self.assertEqual((first, second), (None, MIDNIGHT + 86400))
        other = yield self.take(MIDNIGHT + 12, per_minute=2, provider="otx")
        self.assertIsNone(other)
        rows = yield self.call(_quota_rows)
        self.assertEqual(rows, [("otx", "day", 0), ("otx", "minute", 1),
                                ("vt", "day", 1), ("vt", "minute", 1)])

    @defer.inlineCallbacks
    def test_hold(self):
        """A hold (after a 429) refuses every lookup until it ends; a
        shorter hold later does not shorten it."""
        yield self.call(store.hold, "abuseipdb", MIDNIGHT + 120, "HTTP 429")
        yield self.call(store.hold, "abuseipdb", MIDNIGHT + 30, "HTTP 429")
        during = yield self.take(MIDNIGHT + 100, provider="abuseipdb")
        after = yield self.take(MIDNIGHT + 121, provider="abuseipdb")
        self.assertEqual((during, after), (MIDNIGHT + 120, None))

    @defer.inlineCallbacks
    def test_queue(self):
        """A queued lookup is kept once, leased only when due and only for
        the providers asked, never to two claimants at once, due again if
        its lease runs out, and gone once released."""
        message = "00000000-0000-4000-8000-000000000001"
        for _ in range(2):
            yield self.call(store.enqueue, "virustotal", "sha256", SHA, "s1", message, 0,
                            MIDNIGHT + 60)
        yield self.call(store.enqueue, "otx", "ip", "8.8.8.8", "s1", None, 1, MIDNIGHT)
        early = yield self.call(store.claim_due, ["virustotal"], MIDNIGHT + 59, 0, 10)
        other = yield self.call(store.claim_due, ["abuseipdb"], MIDNIGHT + 60, 0, 10)
        lease = MIDNIGHT + 3600
        due = yield self.call(store.claim_due, ["virustotal", "otx"], MIDNIGHT + 60,
                              lease, 10)
        again = yield self.call(store.claim_due, ["virustotal", "otx"], MIDNIGHT + 61,
                                lease, 10)
        self.assertEqual((early, other, again), ([], [], []))
        self.assertEqual(due, [("otx", "ip", "8.8.8.8", None, 1),
                               ("virustotal", "sha256", SHA, message, 0)])
        yield self.call(store.release, "otx", "8.8.8.8", lease)
        expired = yield self.call(store.claim_due, ["virustotal", "otx"], lease,
                                  lease + 3600, 10)
        self.assertEqual(expired, [("virustotal", "sha256", SHA, message, 0)])

    @defer.inlineCallbacks
    def test_queued_again_survives_release(self):
        """A leased lookup queued again (over quota once more) keeps its new
        time when its lease is released."""
        yield self.call(store.enqueue, "otx", "ip", "8.8.8.8", "s1", None, 0, MIDNIGHT)
        lease = MIDNIGHT + 3600
        yield self.call(store.claim_due, ["otx"], MIDNIGHT, lease, 10)
        yield self.call(store.enqueue, "otx", "ip", "8.8.8.8", "s1", None, 1, MIDNIGHT + 60)
        yield self.call(store.release, "otx", "8.8.8.8", lease)
        due = yield self.call(store.claim_due, ["otx"], MIDNIGHT + 60, lease, 10)
        self.assertEqual(due, [("otx", "ip", "8.8.8.8", None, 1)])


    @defer.inlineCallbacks
    def test_usage(self):
        """What the metrics read: lookups used in this minute and day by
        provider (a past minute is none), and lookups waiting in the queue."""
        for _ in range(3):
            yield self.take(MIDNIGHT, per_minute=4, per_day=500)
        for indicator in ("8.8.8.8", "9.9.9.9"):
            yield self.call(store.enqueue, "otx", "ip", indicator, "s1", None, 0, MIDNIGHT)
        now = yield self.call(store.usage, MIDNIGHT + 10)
        later = yield self.call(store.usage, MIDNIGHT + 61)
        self.assertEqual(now, ({("vt", "minute"): 3, ("vt", "day"): 3}, 2))
        self.assertEqual(later, ({("vt", "minute"): 0, ("vt", "day"): 3}, 2))


class SQLiteEnrichmentStoreTests(EnrichmentStoreTestsMixin, unittest.TestCase):
    make_dialect = test_store.SQLiteStoreTests.make_dialect


class MariaDBEnrichmentStoreTests(EnrichmentStoreTestsMixin, unittest.TestCase):
    make_dialect = test_store.MariaDBStoreTests.make_dialect
