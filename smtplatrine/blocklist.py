"""Keeps a Guard's block list in step with the database.

Every ``acl_reload_interval`` seconds, and at once on :meth:`BlockList.sync`
(SIGHUP, a new ban), one interaction writes back the hit counters and the
new bans and reads the list in force.  Nothing here blocks the reactor: the
database work runs in the adbapi pool, and while it runs connections are
judged on the list already loaded.
"""

from twisted.internet import defer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from smtplatrine.store import acl as acl_store
from smtplatrine.store.dialects import Rejected, Unavailable

log = Logger()


class BlockList:
    """Syncs *guard* with *database* every *interval* seconds, once the
    database is open; *sensor* is written on the bans it makes."""

    def __init__(self, guard, database, sensor, clock, interval):
        self.guard = guard
        self.database = database
        self.sensor = sensor
        self.clock = clock
        self._loop = LoopingCall(self.sync)
        self._loop.clock = clock
        self._interval = interval
        self._running = None
        self._again = False
        self._failing = False
        self._loaded = None
        self._warned = False

    def start(self):
        self.database.when_open().addCallback(
            lambda _: self._loop.start(self._interval, now=True))

    def stop(self):
        if self._loop.running:
            self._loop.stop()

    def sync(self):
        """Write back and reload now (after the sync under way, if any);
        the Deferred fires when done and never fails."""
        if self._running is not None:
            self._again = True
            return self._running
        running = defer.Deferred.fromCoroutine(self._sync())
        # A sync that ended at once (a database that refused before any
        # wait) is over: kept as running, it would hold off every later one.
        if not running.called:
            self._running = running
        return running

    async def _sync(self):
        while True:
            self._again = False
            await self._once()
            if not self._again:
                break
        self._running = None

    async def _once(self):
        guard = self.guard
        hits, bans = guard.take_hits(), guard.take_bans()
        try:
            networks, countries = await self.database.run(
                acl_store.sync, self.database.dialect, hits, bans, self.sensor,
                self.clock.seconds())
        except (Unavailable, Rejected) as e:
            guard.restore(hits, bans)
            if not self._failing:
                log.warn("block list: cannot sync with the database ({reason});"
                         " the list loaded last stays in force",
                         reason=str(e))
            self._failing = True
            return
        except Exception:
            guard.restore(hits, bans)
            log.failure("block list: sync failed")
            return
        self._failing = False
        guard.replace(networks, countries)
        if countries and guard.reader is None and not self._warned:
            log.warn("block list: {countries} country(ies) listed but no GeoIP City"
                     " database open; they are not applied: install it (geoipupdate)"
                     " or set [meta] geoip_main_file and geoip_enable, then restart",
                     countries=len(countries))
            self._warned = True
        loaded = (len(networks), len(countries))
        if loaded != self._loaded:
            log.info("block list: {networks} address(es) and network(s),"
                     " {countries} country(ies)", networks=loaded[0],
                     countries=loaded[1])
            self._loaded = loaded
