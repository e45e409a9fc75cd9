"""The block list in the database (SQLite and MariaDB) and its sync with
the gate."""

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial import unittest

from smtplatrine import acl
from smtplatrine.blocklist import BlockList
from smtplatrine.config import Protection, SmartACL
from smtplatrine.store import acl as acl_store
from smtplatrine.store.database import Database
from smtplatrine.store.dialects import Unavailable
from tests import test_store

NOW = 1767225600.0      # 2026-01-01 00:00:00 UTC


class BlockListTestsMixin:
    """What the block list does on every database; ``make_dialect`` says which."""

    @defer.inlineCallbacks
    def setUp(self):
        self.database = Database(self.make_dialect())
        self.addCleanup(self.database.close)
        yield defer.Deferred.fromCoroutine(self.database.open())
        self.clock = Clock()
        self.clock.advance(NOW)
        self.guard = acl.Guard(Protection(), SmartACL(max_mismatches=1), self.clock)
        self.blocklist = BlockList(self.guard, self.database, "sensor-a", self.clock, 60)

    def interact(self, function, *args):
        return defer.Deferred.fromCoroutine(
            self.database.run(function, self.database.dialect, *args))

    @defer.inlineCallbacks
    def test_add_list_remove(self):
        """Entries added are listed with their time, and removed again;
        adding one twice or removing one not there changes nothing."""
        added = yield self.interact(acl_store.add, ["192.0.2.0/24", "2001:db8::/32"], ["CN"],
                               NOW, "spam run")
        self.assertEqual(added, ["192.0.2.0/24", "2001:db8::/32", "CN"])
        again = yield self.interact(acl_store.add, ["192.0.2.0/24"], [], NOW + 1)
        self.assertEqual(again, [])
        after = yield self.interact(acl_store.add, ["192.0.2.0/24", "198.51.100.0/24"], [],
                                    NOW + 2)
        self.assertEqual(after, ["198.51.100.0/24"])
        yield self.interact(acl_store.remove, ["198.51.100.0/24"], [])
        rows = yield self.interact(acl_store.entries)
        self.assertEqual([(r["kind"], r["entry"], r["tries"], r["reason"], r["expires"])
                          for r in rows],
                         [("ip", "192.0.2.0/24", 0, "spam run", None),
                          ("ip", "2001:db8::/32", 0, "spam run", None),
                          ("country", "CN", 0, "spam run", None)])
        self.assertEqual([str(r["added"])[:19] for r in rows], ["2026-01-01 00:00:00"] * 3)
        self.assertEqual([(r["last_seen"], r["sensor"]) for r in rows], [(None, None)] * 3)
        removed = yield self.interact(acl_store.remove, ["2001:db8::/32", "10.0.0.0/8"], ["CN"])
        self.assertEqual(removed, ["2001:db8::/32", "CN"])
        rows = yield self.interact(acl_store.entries)
        self.assertEqual([r["entry"] for r in rows], ["192.0.2.0/24"])

    @defer.inlineCallbacks
    def test_country_hits_counted(self):
        """Hits on a country are counted on its entry, beside an address's."""
        yield self.interact(acl_store.add, ["192.0.2.0/24"], ["CN"], NOW)
        yield self.interact(acl_store.sync, {("geo", "CN"): [2, NOW + 5],
                                             ("ip", "192.0.2.0/24"): [1, NOW + 7]},
                            [], "sensor-a", NOW + 9)
        rows = yield self.interact(acl_store.entries)
        self.assertEqual([(r["entry"], r["tries"], str(r["last_seen"])[:19]) for r in rows],
                         [("192.0.2.0/24", 1, "2026-01-01 00:00:07"),
                          ("CN", 2, "2026-01-01 00:00:05")])

    @defer.inlineCallbacks
    def test_sync_loads_and_counts(self):
        """A sync loads the list into the gate and writes the hits back."""
        yield self.interact(acl_store.add, ["192.0.2.0/24"], ["CN"], NOW)
        yield self.blocklist.sync()
        self.assertEqual(self.guard.blocked("192.0.2.9"), ("ip", "192.0.2.0/24"))
        self.clock.advance(30)
        self.guard.admit("192.0.2.9")
        self.guard.admit("192.0.2.10")
        yield self.blocklist.sync()
        [row] = [r for r in (yield self.interact(acl_store.entries)) if r["kind"] == "ip"]
        self.assertEqual((row["tries"], str(row["last_seen"])[:19]),
                         (2, "2026-01-01 00:00:30"))

    @defer.inlineCallbacks
    def test_periodic_reload(self):
        """Started, the list is loaded at once and again every interval."""
        runs = []
        real_run = self.database.run

        async def run(*args):
            runs.append(defer.Deferred.fromCoroutine(real_run(*args)))
            return await runs[-1]

        self.database.run = run
        self.blocklist.start()
        self.addCleanup(self.blocklist.stop)
        yield runs[0]
        yield self.interact(acl_store.add, ["192.0.2.0/24"], [], NOW)
        self.clock.advance(59)
        self.assertEqual(len(runs), 2)
        self.assertIsNone(self.guard.blocked("192.0.2.9"))
        self.clock.advance(1)
        yield runs[2]
        self.assertEqual(self.guard.blocked("192.0.2.9"), ("ip", "192.0.2.0/24"))

    @defer.inlineCallbacks
    def test_removed_entry_lifted(self):
        """An entry removed from the database is lifted at the next sync."""
        yield self.interact(acl_store.add, ["192.0.2.0/24"], [], NOW)
        yield self.blocklist.sync()
        yield self.interact(acl_store.remove, ["192.0.2.0/24"], [])
        yield self.blocklist.sync()
        self.assertIsNone(self.guard.blocked("192.0.2.9"))

    @defer.inlineCallbacks
    def test_ban_written_and_expires(self):
        """A ban is written with its sensor and end, and is lifted once over."""
        self.guard.admit("198.51.100.4")
        ban = self.guard.closed("198.51.100.4", mismatch=True)
        yield self.blocklist.sync()
        [row] = yield self.interact(acl_store.entries)
        self.assertEqual((row["entry"], row["reason"], row["sensor"],
                          str(row["expires"])[:19]),
                         ("198.51.100.4/32", "protocol_mismatch", "sensor-a",
                          "2026-01-01 01:00:00"))
        self.assertEqual(ban.seconds, 3600)
        self.assertIsNotNone(self.guard.blocked("198.51.100.4"))
        self.clock.advance(3601)
        yield self.blocklist.sync()
        self.assertIsNone(self.guard.blocked("198.51.100.4"))

    @defer.inlineCallbacks
    def test_add_makes_ban_permanent(self):
        """Adding a banned address keeps it on the list for good."""
        self.guard.admit("198.51.100.4")
        self.guard.closed("198.51.100.4", mismatch=True)
        yield self.blocklist.sync()
        yield self.interact(acl_store.add, ["198.51.100.4/32"], [], NOW)
        self.clock.advance(7200)
        yield self.blocklist.sync()
        self.assertIsNotNone(self.guard.blocked("198.51.100.4"))

    @defer.inlineCallbacks
    def test_database_down(self):
        """With the database gone the loaded list stays in force, and the
        hits wait for the next sync."""
        yield self.interact(acl_store.add, ["192.0.2.0/24"], [], NOW)
        yield self.blocklist.sync()
        self.guard.admit("192.0.2.9")
        real_run = self.database.run

        async def unavailable(*args):
            raise Unavailable("MySQL error 2003: Can't connect to server")

        self.database.run = unavailable
        yield self.blocklist.sync()
        self.database.run = real_run
        self.assertIsNotNone(self.guard.blocked("192.0.2.9"))
        self.assertEqual(self.guard.take_hits(), {("ip", "192.0.2.0/24"): [1, NOW]})

    @defer.inlineCallbacks
    def test_reloads_after_a_failure_at_once(self):
        """A sync that fails at once (the database refusing before any
        wait) does not stop the later ones: an entry added afterwards is
        in force at the next reload."""
        real_run = self.database.run

        async def unavailable(*args):
            raise Unavailable("MySQL error 2003: Can't connect to server")

        self.database.run = unavailable
        yield self.blocklist.sync()
        self.database.run = real_run
        yield self.interact(acl_store.add, ["192.0.2.0/24"], [], NOW)
        yield self.blocklist.sync()
        self.assertEqual(self.guard.blocked("192.0.2.9"), ("ip", "192.0.2.0/24"))


class SQLiteBlockListTests(BlockListTestsMixin, unittest.TestCase):
    make_dialect = test_store.SQLiteStoreTests.make_dialect


class MariaDBBlockListTests(BlockListTestsMixin, unittest.TestCase):
    make_dialect = test_store.MariaDBStoreTests.make_dialect
