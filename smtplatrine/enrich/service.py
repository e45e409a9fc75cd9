"""The enrichment service: after a message's commit, each enabled enricher
looks up the indicators of its kind, through the database's shared cache
and quotas, with a timeout, each failure isolated and reported once.

A lookup the quota forbids now waits in the database's queue
(``honeypot_enrichment_queue``), which every ``queue_interval`` seconds is
drained of what is due, by this sensor or any other, also after a restart.
"""

import inspect

import attrs
from twisted.internet import defer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from smtplatrine import interfaces
from smtplatrine.events import printable
from smtplatrine.interfaces import (Context, IEnricher, LookupFailed, RateLimited,
                                    Result)
from smtplatrine.store import enrichment as store
from smtplatrine.store.dialects import Rejected, Unavailable
from smtplatrine.store.records import as_json

log = Logger()

_IDENTITY = ("session", "sensor", "src_ip", "src_port", "dst_ip", "dst_port")
# A transient failure (timeout, 5xx) is tried this many times in all,
# waiting retry_delay * 2**attempt in between.
MAX_ATTEMPTS = 3
# Seconds a queued lookup is leased to the sensor running it: if that
# sensor dies meanwhile, the lookup is due again after this.
LEASE = 3600.0


def discover(package=None):
    """Every IEnricher plugin in *package* (``twisted.plugins`` by default)."""
    return interfaces.discover(IEnricher, package)


def configure(plugins, context, config=None):
    """The plugins that are on, configured; one that fails to configure is
    off, said in one line.  A plugin that declares options gets them in
    its context, as *config* (a Config) has them (their defaults without)."""
    enrichers = []
    for plugin in plugins:
        declared = getattr(plugin, "options", None)
        own = context
        if declared is not None and context is not None:
            own = attrs.evolve(context, options=config.options(
                f"enricher_{plugin.name}", declared) if config is not None else declared())
        try:
            enricher = plugin.configure(own)
        except Exception as e:
            log.error("enricher {name} cannot start ({error}); it is off",
                      name=plugin.name, error=repr(e))
            continue
        if enricher is not None:
            enrichers.append(enricher)
    return enrichers


class EnrichmentService:
    """Runs *enrichers* for stored messages, keeping state in *database*
    and reporting through *events*; at most *concurrency* lookups at once,
    each given *timeout* seconds."""

    def __init__(self, reactor, database, events, enrichers, sensor, timeout=20.0,
                 concurrency=4, queue_interval=60.0, retry_delay=60.0, max_waiting=1000):
        self._reactor = reactor
        self._database = database
        self._events = events
        self.enrichers = {e.name: e for e in enrichers}
        self._sensor = sensor
        self._timeout = timeout
        self._retry_delay = retry_delay
        self._max_waiting = max_waiting
        self._limit = defer.DeferredSemaphore(concurrency)
        self._busy = set()
        self._quota_ready = set()
        self._queue_interval = queue_interval
        self._drainer = LoopingCall(self.drain)
        self._drainer.clock = reactor
        self._draining = False
        self._stopped = False

    def start(self):
        if self.enrichers:
            self._drainer.start(self._queue_interval, now=False)

    def stop(self):
        """Stop draining the queue; lookups still running end quietly (what
        they did not store is looked up again later)."""
        self._stopped = True
        if self._drainer.running:
            self._drainer.stop()

    def submit(self, prepared):
        """Look up what the message *prepared* (just committed) shows.
        Returns a Deferred that fires when every lookup has ended; it never
        fails, and the caller need not wait for it."""
        try:
            metadata = prepared.metadata
            identity = {k: metadata.get(k) for k in _IDENTITY}
            found = prepared.indicators
            work = [self._enrich(enricher, i.kind, i.value, identity, metadata["message"])
                    for enricher in self.enrichers.values() for i in found
                    if i.kind in enricher.kinds]
        except Exception:
            log.failure("enrichment: cannot read the stored message's indicators")
            return defer.succeed(None)
        return defer.DeferredList(work)

    def drain(self):
        """Run the queued lookups that are due (and owned by no one else)."""
        if self._draining or not self.enrichers:
            return defer.succeed(None)
        self._draining = True
        d = defer.Deferred.fromCoroutine(self._drain())
        d.addErrback(self._failed, "the queue")
        d.addBoth(self._drained)
        return d

    def _drained(self, _):
        self._draining = False

    async def _drain(self):
        run, dialect = self._database.run, self._database.dialect
        free = max(0, self._max_waiting - len(self._limit.waiting))
        lease = self._reactor.seconds() + LEASE
        claimed = await run(store.claim_due, dialect, sorted(self.enrichers),
                            self._reactor.seconds(), lease, min(free, 100))
        identity = dict.fromkeys(_IDENTITY)
        identity["sensor"] = self._sensor

        async def one(provider, kind, indicator, message, attempts):
            await self._enrich(self.enrichers[provider], kind, indicator, identity,
                               message, attempts)
            await run(store.release, dialect, provider, indicator, lease)

        await defer.DeferredList([defer.Deferred.fromCoroutine(one(*item))
                                  for item in claimed])

    def _enrich(self, enricher, kind, indicator, identity, message, attempts=0):
        key = (enricher.name, indicator)
        if key in self._busy:
            return defer.succeed(None)
        self._busy.add(key)
        if len(self._limit.waiting) >= self._max_waiting:
            # Too much waiting in memory: the queue in the database keeps it.
            d = self._later(enricher, kind, indicator, message, attempts,
                            self._reactor.seconds())
        else:
            d = self._limit.run(lambda: defer.Deferred.fromCoroutine(
                self._one(enricher, kind, indicator, identity, message, attempts)))
        d.addErrback(self._failed, f"{enricher.name} {indicator}")
        d.addBoth(lambda _: self._busy.discard(key))
        return d

    async def _one(self, enricher, kind, indicator, identity, message, attempts):
        run, dialect, name = self._database.run, self._database.dialect, enricher.name
        now = self._reactor.seconds()
        if await run(store.cached, dialect, name, indicator, now):
            return
        if name not in self._quota_ready:
            await run(store.prepare_quota, dialect, name)
            self._quota_ready.add(name)
        try:
            await run(store.take_quota, dialect, name, enricher.per_minute,
                      enricher.per_day, now)
        except store.OverQuota as e:
            await self._later(enricher, kind, indicator, message, attempts, e.at)
            self._emit("smtplatrine.enrichment.queued", identity, enricher, kind,
                       indicator, message, until=e.at, reason="over quota")
            return
        try:
            result = await self._lookup(enricher, kind, indicator)
        except RateLimited as e:
            until = self._reactor.seconds() + e.seconds
            await run(store.hold, dialect, name, until, str(e))
            await self._later(enricher, kind, indicator, message, attempts, until)
            self._emit("smtplatrine.enrichment.queued", identity, enricher, kind,
                       indicator, message, until=until, reason=str(e))
            return
        except LookupFailed as e:
            retry = e.transient and attempts + 1 < MAX_ATTEMPTS
            if retry:
                await self._later(enricher, kind, indicator, message, attempts + 1,
                                  self._reactor.seconds()
                                  + self._retry_delay * 2 ** attempts)
            self._emit("smtplatrine.enrichment.failed", identity, enricher, kind,
                       indicator, message, reason=printable(str(e))[:500],
                       retry=retry)
            return
        now = self._reactor.seconds()
        ttl = enricher.ttl if result.data is not None else enricher.negative_ttl
        await run(store.save_result, dialect, name, kind, indicator, self._sensor,
                  result.data, now, ttl)
        if result.hold > 0:
            await run(store.hold, dialect, name, now + result.hold, "quota spent")
        self._emit("smtplatrine.enrichment", identity, enricher, kind, indicator,
                   message, found=result.data is not None)

    async def _lookup(self, enricher, kind, indicator):
        """The enricher's Result, checked; anything else it does (raises,
        hangs, answers garbage) becomes LookupFailed."""
        async def call():
            answer = enricher.lookup(kind, indicator)
            return (await answer) if inspect.isawaitable(answer) else answer

        def timed_out(result, timeout):
            return Failure(LookupFailed(f"no answer within {timeout:g} s", transient=True))

        d = defer.Deferred.fromCoroutine(call())
        d.addTimeout(self._timeout, self._reactor, onTimeoutCancel=timed_out)
        try:
            result = await d
        except (RateLimited, LookupFailed):
            raise
        except Exception as e:
            raise LookupFailed(f"the enricher raised {e!r}") from None
        if not isinstance(result, Result) or not (
                result.data is None or isinstance(result.data, dict)):
            raise LookupFailed(f"the enricher returned {result!r:.200}, not a Result")
        try:
            as_json(result.data)
        except (TypeError, ValueError) as e:
            raise LookupFailed(f"the result cannot be stored as JSON: {e}") from None
        return result

    def _later(self, enricher, kind, indicator, message, attempts, when):
        return self._database.run(store.enqueue, self._database.dialect, enricher.name,
                                  kind, indicator, self._sensor, message, attempts, when)

    def _emit(self, eventid, identity, enricher, kind, indicator, message, **fields):
        self._events.emit(eventid, identity, message=message, provider=enricher.name,
                          kind=kind, indicator=indicator, **fields)

    def _failed(self, failure, what):
        if self._stopped:
            return
        if failure.check(Unavailable, Rejected):
            log.warn("enrichment of {what} skipped: database: {error}", what=what,
                     error=str(failure.value))
        else:
            log.failure("enrichment of {what} failed", failure, what=what)


def context(settings, reactor):
    """The Context the built-in enrichers are configured with: a treq HTTP
    client on *reactor* (imported now, at start, not at plugin import)."""
    import treq.client
    from twisted.web.client import Agent, HTTPConnectionPool
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = 2
    http = treq.client.HTTPClient(Agent(reactor, pool=pool, connectTimeout=10))
    return Context(settings=settings, reactor=reactor, http=http)

