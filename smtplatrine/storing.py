"""The storing process's program: the pipeline and the enrichment, away
from the sockets.

Parsing, storing and enriching take CPU, the GIL and memory (a 50 MB
message); in the listening process they would slow every session, and a
crash or a stall of theirs would take the sockets with it.  So a child
process of its own, with its own reactor, does that work (the server
starts it and keeps it running with :class:`smtplatrine.storer.
StoringProcess`); it parses in worker processes of its own
(:mod:`smtplatrine.parsers`, ``[store] parse_workers``) and writes the
database alone.  It gets the configuration on file descriptor 3, then
one line per item on its input (``message ID`` or ``session ID``, as the
spool finishes them), and finds the rest by scanning the spool at start
and when idle.  Its log events go back to the server as JSON lines on its
output, and so do ``left ID...`` lines: the messages it took out of the
spool, so that the SMTP side knows its backlog without reading the spool.

It also runs the event outputs (``smtplatrine.outputs``), for its own events
and for those of the SMTP side, which come as ``event JSON`` lines on its
input: outputs open connections to the outside (a broker, a search engine,
a collector), which the process that talks to attackers must not, and
their slowness must not take its CPU.  With metrics on, it serves
``/metrics`` for every process of the sensor (``smtplatrine.metrics``).

Run as ``python -m smtplatrine.storing [UID GID]`` (see smtplatrine.child):
started before the server drops its privileges, it prepares everything,
then drops them itself.
"""

import json
import sys

from twisted.internet import defer, protocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger, LogLevel
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from smtplatrine import child, metrics
from smtplatrine.events import Events
from smtplatrine.interfaces import IStoredConsumer
from smtplatrine.layout import DataDir
from smtplatrine.outputs import service as outputs
from smtplatrine.parse import Limits
from smtplatrine.parsers import ParseWorkers, worker_count
from smtplatrine.pipeline import Pipeline
from smtplatrine.store import dialects
from smtplatrine.store import enrichment as enrichment_store
from smtplatrine.store.database import Database
from smtplatrine.storer import LEFT, MAX_LINE

# Named: run as ``python -m``, this module is __main__.
log = Logger(namespace="smtplatrine.storing")


@implementer(IStoredConsumer)
class Storing:
    """The database, the pipeline that fills it from the spool, and the
    enrichment after each commit, built from *config* (files opened, heavy
    modules imported, the sandbox forked, becoming *ids* if given) while
    everything can still be read.  ``smtplatrine import`` and ``reparse``
    use it without the pipeline (and its parse workers, whose zygote
    :func:`_prepare` forks)."""

    def __init__(self, config, reactor, ids=None):
        self.config = config
        self.reactor = reactor
        self.ids = ids
        self.sandbox = None
        data_dir = DataDir.of(config)
        self.attachments_dir, self.raw_store = attachments, raw = data_dir.make_stores()
        spool_root = data_dir.spool
        dialect = dialects.from_config(config)
        self.database = Database(dialect, create=config.mysql.mysql_auto_create_db
                                 or dialect.name == "sqlite", grouped=True)
        self.outputs = outputs.configure(outputs.discover(), config, reactor)
        self.metrics = metrics.EventMetrics() if config.metrics.listen else None
        self.events = Events(reactor, [self.outputs, *filter(None, [self.metrics])],
                             LogLevel.levelWithName(config.logger.level))
        store = config.store
        self.limits = limits = Limits(
            seconds=store.parse_seconds, depth=store.parse_max_depth,
            parts=store.parse_max_parts, header_bytes=store.parse_max_header_bytes)
        self.threadpool = ThreadPool(1, 2, name="smtplatrine-store")
        self.parsers = ParseWorkers(worker_count(store.parse_workers), limits,
                                    attachments, raw)
        # Every worker busy, and sessions stored meanwhile.
        concurrency = max(self.parsers.count, config.mysql.mysql_connections
                          if dialect.name == "mysql" else 2)
        self.enrichment = self._enrichment()
        self.pipeline = Pipeline(
            reactor, spool_root, self.database, self.events, self.parsers,
            self.threadpool, concurrency, store.retry_max_delay,
            stored=self, left=_left)
        self.quota = {}
        self._quota_watch = LoopingCall(
            lambda: defer.Deferred.fromCoroutine(self._watch_quota()))
        self._quota_watch.clock = reactor
        self.metrics_port = None
        if self.metrics is not None:
            self.metrics_port = metrics.listen(reactor, config.metrics.listen, metrics.registry(
                metrics.StateCollector(spool_root, self.outputs, self.quota)))
        log.info("storing into {db}", db=dialect.describe())

    def _enrichment(self):
        """The enrichment service (None when [meta] turns it off) with the
        enrichers found as plugins."""
        meta = self.config.meta
        if not meta.meta_enable:
            return None
        from smtplatrine.enrich import service as enrich
        from smtplatrine.enrich.sandbox import Sandbox
        from smtplatrine.files import FileStore
        sandbox = Sandbox(memory=meta.sandbox_memory * 2**20, seconds=meta.sandbox_seconds,
                          files=meta.sandbox_files, file_size=meta.sandbox_memory * 2**20,
                          workers=meta.sandbox_workers)
        context = enrich.context(
            meta, self.reactor, sandbox=sandbox,
            files=FileStore(self.attachments_dir) if self.attachments_dir else None)
        enrichers = enrich.configure(enrich.discover(), context, self.config)
        if sandbox.needed:
            # Now, while this process has no thread and can read everything.
            sandbox.start(self.ids)
            self.sandbox = sandbox
        # Its own connections: lookups never wait for, or hold up, storage.
        # Its commits need no sync each (with SQLite, one fsync of the log
        # per lookup): the pipeline's next sync makes them durable with the
        # messages'; a power cut before it can take a lookup's result or a
        # quota's count, never a message.
        self.enrichment_database = Database(self.database.dialect, create=False,
                                            grouped=True)
        enrichment = enrich.EnrichmentService(
            self.reactor, self.enrichment_database, self.events, enrichers,
            self.config.server.sensor_name, meta.meta_timeout, meta.meta_concurrency,
            meta.meta_queue_interval, meta.meta_retry_delay)
        log.info("enrichers: {names}", names=", ".join(sorted(enrichment.enrichers))
                 or "none")
        return enrichment

    def stored(self, prepared):
        """After a message's commit: its storing latency, its enrichment."""
        received = prepared.metadata.received
        if self.metrics is not None and received is not None:
            self.metrics.stored(received, self.reactor.seconds())
        if self.enrichment is not None:
            self.enrichment.submit(prepared)

    async def _watch_quota(self):
        """Read the enrichers' quotas and queue for the metrics."""
        try:
            used, waiting = await self.enrichment_database.run(
                enrichment_store.usage, self.database.dialect, self.reactor.seconds())
        except Exception as e:
            log.debug("metrics: cannot read the enrichment quotas: {error}", error=str(e))
            return
        self.quota.update(waiting=waiting, left=metrics.quota_left(
            used, self.enrichment.enrichers.values()))

    def connect_sandbox(self):
        """Open this process's conversation with the sandbox (if there is
        one): the worker, or an import, before it enriches."""
        if self.sandbox is not None:
            self.sandbox.connect(self.reactor)

    def commands(self, ended):
        """The server's lines on our input: items for the pipeline, events
        for the outputs."""
        return _Commands(self.pipeline.notify, self.forward, ended)

    def start(self):
        self.threadpool.start()
        self.parsers.connect(self.reactor)
        self.connect_sandbox()
        self.pipeline.start()
        if self.enrichment is not None:
            self.enrichment.start()
            if self.metrics is not None:
                self._quota_watch.start(self.config.meta.meta_queue_interval)

    def forward(self, event):
        """An event of the SMTP side (logged and counted there): to the
        outputs."""
        self.outputs.write(event)

    def stop(self):
        """Stop storing; the outputs have a few seconds to deliver what
        they hold (a Deferred)."""
        self.pipeline.stop()
        self.parsers.stop()
        if self._quota_watch.running:
            self._quota_watch.stop()
        if self.enrichment is not None:
            self.enrichment.stop()
            self.enrichment_database.close()
        if self.sandbox is not None:
            self.sandbox.stop()
        self.threadpool.stop()
        self.database.close()
        return self.events.close()


def _left(message_ids):
    """Tell the server that the messages *message_ids* left the spool (on
    the output its log events take, a line at a time)."""
    sys.stdout.write(f"{LEFT.decode('ascii')}{' '.join(message_ids)}\n")
    sys.stdout.flush()


class _Commands(protocol.Protocol):
    """The server's lines: items for the pipeline (``message ID``,
    ``session ID``), events for the outputs (``event JSON``); end of
    input: stop.  A line longer than ``MAX_LINE`` is skipped."""

    def __init__(self, notify, forward, ended):
        self._notify = notify
        self._forward = forward
        self._ended = ended
        self._buffer = b""
        self._skipping = False

    def dataReceived(self, data):
        *lines, self._buffer = (self._buffer + data).split(b"\n")
        for line in lines:
            if self._skipping:
                self._skipping = False
            else:
                self._line(line)
        if len(self._buffer) > MAX_LINE:
            self._buffer, self._skipping = b"", True

    def _line(self, line):
        kind, _, item = line.partition(b" ")
        if kind == b"event":
            try:
                event = json.loads(item)
            except ValueError:
                return
            if isinstance(event, dict) and "eventid" in event:
                self._forward(event)
        # A worker that died may have read part of a line: skip what is left.
        elif kind in (b"message", b"session") and item:
            self._notify(kind.decode("ascii"), item.decode("ascii", "replace"))

    def connectionLost(self, reason):
        self._ended()


def _prepare(config, reactor, ids):
    """The storing process, with its parse workers' zygote forked now,
    while it has no thread and can read everything."""
    storing = Storing(config, reactor, ids)
    storing.parsers.start(ids)
    return storing


def main(argv):
    child.main(argv, "the storing process", _prepare, ": captured mail stays in the spool",
               ended=metrics.process_ended)


if __name__ == "__main__":
    main(sys.argv[1:])
