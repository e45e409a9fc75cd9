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
from smtplatrine.capture import Identity
from smtplatrine.enrich import indicators
from smtplatrine.events import printable
from smtplatrine.interfaces import (Context, IEnricher, LookupFailed, Member,
                                    RateLimited, Result, Sighting)
from smtplatrine.store import enrichment as store
from smtplatrine.store.dialects import Rejected, Unavailable
from smtplatrine.store.records import as_json, attachment_id

log = Logger()

# A transient failure (timeout, 5xx) is tried this many times in all,
# waiting retry_delay * 2**attempt in between.
MAX_ATTEMPTS = 3
# Seconds a queued lookup is leased to the sensor running it: if that
# sensor dies meanwhile, the lookup is due again after this.
LEASE = 3600.0
# Files inside files inside files...: none deeper than this become
# attachments (each enricher that opens files has bounds of its own).
MAX_DEPTH = 16


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
        # (provider, indicator) being looked up -> sightings waiting for it
        self._busy = {}
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
            identity = prepared.metadata.identity
            work = [self._enrich(enricher, sighting, identity)
                    for sighting in sightings(prepared)
                    for enricher in self.enrichers.values()
                    if sighting.kind in enricher.kinds]
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
        identity = Identity(sensor=self._sensor)

        async def one(provider, kind, indicator, message, attempts):
            sighting = await run(store.sighting, dialect, message, kind, indicator)
            await self._enrich(self.enrichers[provider], sighting, identity, attempts)
            await run(store.release, dialect, provider, indicator, lease)

        await defer.DeferredList([defer.Deferred.fromCoroutine(one(*item))
                                  for item in claimed])

    def _enrich(self, enricher, sighting, identity, attempts=0):
        """Look *sighting* up with *enricher* (once at a time per
        indicator: a second sighting waits for the first lookup, then
        takes its result from the cache); then the files found inside."""
        key = (enricher.name, sighting.indicator)
        what = f"{enricher.name} {sighting.indicator}"
        if key in self._busy:
            d = defer.Deferred()
            self._busy[key].append(d)
            d.addCallback(lambda _: defer.Deferred.fromCoroutine(
                self._after(enricher, sighting, identity, None)))
        elif len(self._limit.waiting) >= self._max_waiting:
            # Too much waiting in memory: the queue in the database keeps it.
            d = self._later(enricher, sighting, attempts, self._reactor.seconds())
            d.addCallback(lambda _: None)
        else:
            self._busy[key] = []
            d = self._limit.run(lambda: defer.Deferred.fromCoroutine(
                self._one(enricher, sighting, identity, attempts)))
            d.addErrback(self._failed, what)
            d.addBoth(self._release, key)
        # The files found inside are looked at once this lookup has let go
        # of its place among the concurrent ones.
        d.addCallback(self._follow, identity)
        d.addErrback(self._failed, what)
        return d

    def _release(self, result, key):
        for waiter in self._busy.pop(key, ()):
            waiter.callback(None)
        return result

    def _follow(self, work, identity):
        if not work:
            return None
        return defer.DeferredList([self._enrich(enricher, sighting, identity)
                                   for enricher, sighting in work])

    async def _one(self, enricher, sighting, identity, attempts):
        run, dialect, name = self._database.run, self._database.dialect, enricher.name
        kind, indicator, message = sighting.kind, sighting.indicator, sighting.message
        now = self._reactor.seconds()
        if await run(store.cached, dialect, name, indicator, now):
            return await self._after(enricher, sighting, identity, None)
        if name not in self._quota_ready:
            await run(store.prepare_quota, dialect, name)
            self._quota_ready.add(name)
        try:
            await run(store.take_quota, dialect, name, enricher.per_minute,
                      enricher.per_day, now)
        except store.OverQuota as e:
            await self._later(enricher, sighting, attempts, e.at)
            self._emit("smtplatrine.enrichment.queued", identity, enricher, kind,
                       indicator, message, until=e.at, reason="over quota")
            return
        try:
            result = await self._lookup(enricher, sighting)
        except RateLimited as e:
            until = self._reactor.seconds() + e.seconds
            await run(store.hold, dialect, name, until, str(e))
            await self._later(enricher, sighting, attempts, until)
            self._emit("smtplatrine.enrichment.queued", identity, enricher, kind,
                       indicator, message, until=until, reason=str(e))
            return
        except LookupFailed as e:
            retry = e.transient and attempts + 1 < MAX_ATTEMPTS
            if retry:
                await self._later(enricher, sighting, attempts + 1,
                                  self._reactor.seconds()
                                  + self._retry_delay * 2 ** attempts)
            self._emit("smtplatrine.enrichment.failed", identity, enricher, kind,
                       indicator, message, reason=printable(str(e))[:500],
                       retry=retry)
            return
        now = self._reactor.seconds()
        ttl = result.ttl if result.ttl is not None else (
            enricher.ttl if result.data is not None else enricher.negative_ttl)
        await run(_save, dialect, enricher, sighting, self._sensor, result, now, ttl)
        if result.hold > 0:
            await run(store.hold, dialect, name, now + result.hold, "quota spent")
        self._emit("smtplatrine.enrichment", identity, enricher, kind, indicator,
                   message, found=result.data is not None,
                   **_summary(enricher, result.data))
        return await self._after(enricher, sighting, identity, result)

    async def _after(self, enricher, sighting, identity, result):
        """What depends on the sighting, once the indicator's *result* is
        known (None: it is in the database): the enricher's ``sighted``,
        and the files found inside, which become attachments of the
        message; the lookups of those files by every other enricher, as
        [(enricher, sighting)], for the caller to start."""
        sighted = getattr(enricher, "sighted", None)
        if sighting.kind != "sha256" and sighted is None:
            return []
        run, dialect = self._database.run, self._database.dialect
        if result is None:
            data, files = await run(store.stored, dialect, enricher.name, sighting.indicator)
        else:
            data, files = result.data, result.files
        if sighted is not None and data is not None:
            await run(sighted, dialect, sighting, data)
        if not files or sighting.attachment_id is None or sighting.depth >= MAX_DEPTH:
            return []
        members = await run(store.add_members, dialect, sighting, enricher.name, files,
                            self._sensor)
        for _, _, row in members:
            if row is not None:
                self._events.emit("smtplatrine.attachment.stored", identity,
                                  message=sighting.message,
                                  **dict(row, filename=printable(row["filename"])))
        # Enrichers with a quota see the message's first PER_KIND files only.
        return [(other, member) for member, position, _ in members
                for other in self.enrichers.values()
                if other is not enricher and "sha256" in other.kinds
                and (not (other.per_minute or other.per_day)
                     or position < indicators.PER_KIND)]

    async def _lookup(self, enricher, sighting):
        """The enricher's Result, checked; anything else it does (raises,
        hangs, answers garbage) becomes LookupFailed."""
        async def call():
            args = (sighting.kind, sighting.indicator)
            if getattr(enricher, "sightings", False):
                args += (sighting,)
            answer = enricher.lookup(*args)
            return (await answer) if inspect.isawaitable(answer) else answer

        def timed_out(result, timeout):
            return Failure(LookupFailed(f"no answer within {timeout:g} s", transient=True))

        d = defer.Deferred.fromCoroutine(call())
        d.addTimeout(getattr(enricher, "timeout", None) or self._timeout, self._reactor,
                     onTimeoutCancel=timed_out)
        try:
            result = await d
        except (RateLimited, LookupFailed):
            raise
        except Exception as e:
            raise LookupFailed(f"the enricher raised {e!r}") from None
        if not isinstance(result, Result) or not (
                result.data is None or isinstance(result.data, dict)) or not all(
                isinstance(f, Member) for f in result.files):
            raise LookupFailed(f"the enricher returned {result!r:.200}, not a Result")
        try:
            as_json(result.data)
        except (TypeError, ValueError) as e:
            raise LookupFailed(f"the result cannot be stored as JSON: {e}") from None
        return result

    def _later(self, enricher, sighting, attempts, when):
        return self._database.run(store.enqueue, self._database.dialect, enricher.name,
                                  sighting.kind, sighting.indicator, self._sensor,
                                  sighting.message, attempts, when)

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


def _save(cursor, dialect, enricher, sighting, sensor, result, now, ttl):
    """Keep *result* (and the files it found, and what the enricher's own
    ``save`` keeps) in one transaction."""
    store.save_result(cursor, dialect, enricher.name, sighting.kind, sighting.indicator,
                      sensor, result.data, now, ttl)
    if sighting.kind == "sha256":
        store.save_members(cursor, dialect, enricher.name, sighting.indicator,
                           result.files)
    save = getattr(enricher, "save", None)
    if save is not None and result.data is not None:
        save(cursor, dialect, sighting.kind, sighting.indicator, result.data)


# Fields of the enrichment event an enricher's summary may not take over
# (its own, and the logger's).
_RESERVED = {"eventid", "timestamp", "message", "provider", "kind", "indicator", "found",
             "level", "format", *attrs.fields_dict(Identity)}


def _summary(enricher, data):
    """The flat fields the enricher's optional ``summary(data)`` gives its
    enrichment event (values text, numbers, booleans or null)."""
    summary = getattr(enricher, "summary", None)
    if summary is None or data is None:
        return {}
    try:
        fields = summary(data) or {}
    except Exception:
        log.failure("enricher {name}: its summary failed", name=enricher.name)
        return {}
    return {str(k): (printable(v)[:1000] if isinstance(v, str) else v)
            for k, v in fields.items()
            if k not in _RESERVED and not str(k).startswith("log_")
            and isinstance(v, (str, int, float, bool, type(None)))}


def sightings(prepared):
    """A Sighting for each indicator of the message *prepared*; an
    attachment's is its first MIME part with that content."""
    parsed = prepared.parsed
    message = prepared.metadata.message
    body = (parsed.body_text or parsed.body_html)[:store.BODY]
    first = {}
    for position, attachment in enumerate(parsed.attachments):
        first.setdefault(attachment.sha256, (position, attachment))
    found = []
    for i in prepared.indicators:
        if i.kind == "sha256":
            position, attachment = first[i.value]
            found.append(Sighting(
                i.kind, i.value, message, i.source,
                attachment_id=attachment_id(message, position),
                filename=attachment.filename, content_type=attachment.content_type,
                body=body))
        else:
            found.append(Sighting(i.kind, i.value, message, i.source))
    return found


def context(settings, reactor, **more):
    """The Context the built-in enrichers are configured with: a treq HTTP
    client on *reactor* (imported now, at start, not at plugin import), and
    *more* of Context's fields (files, sandbox, sections)."""
    import treq.client
    from twisted.web.client import Agent, HTTPConnectionPool
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = 2
    http = treq.client.HTTPClient(Agent(reactor, pool=pool, connectTimeout=10))
    return Context(settings=settings, reactor=reactor, http=http, **more)

