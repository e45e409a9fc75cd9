"""The storing process: the pipeline and the enrichment, away from the sockets.

Parsing, storing and enriching take CPU, the GIL and memory (a 50 MB
message); in the listening process they would slow every session, and a
crash or a stall of theirs would take the sockets with it.  So a child
process of its own, with its own reactor, does that work
(:class:`StoringProcess` starts it and keeps it running).  It gets the
configuration on file descriptor 3, then one line per item on its input
(``message ID`` or ``session ID``, as the spool finishes them), and finds
the rest by scanning the spool at start and when idle.  Its log events come
back as JSON lines on its output, and the server logs them as its own.

It also runs the event outputs (``smtplatrine.outputs``), for its own events
and for those of the SMTP side, which come as ``event JSON`` lines on its
input: outputs open connections to the outside (a broker, a search engine,
a collector), which the process that talks to attackers must not, and
their slowness must not take its CPU.  With metrics on, it serves
``/metrics`` for every process of the sensor (``smtplatrine.metrics``).

Run as ``python -m smtplatrine.storer [UID GID]`` (see smtplatrine.child):
started before the server drops its privileges, it prepares everything,
then drops them itself.
"""

import json
import sys
from pathlib import Path

from twisted.internet import defer, protocol
from twisted.internet.interfaces import IPushProducer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger, LogLevel
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from smtplatrine import child, metrics
from smtplatrine.events import Events
from smtplatrine.outputs import service as outputs
from smtplatrine.parse import Limits
from smtplatrine.pipeline import Pipeline
from smtplatrine.store import dialects
from smtplatrine.store import enrichment as enrichment_store
from smtplatrine.store.database import Database

# Named: run as ``python -m``, this module is __main__.
log = Logger(namespace="smtplatrine.storer")

# The longest line on the process's input (an event, as JSON).
MAX_LINE = 1024 * 1024
# Bytes of events written to the process's input while it does not read
# (a busy or restarting worker) before further events are dropped.
MAX_WAITING = 1024 * 1024


def store_dirs(config):
    """The attachment and raw-message directories (None: not kept on
    disk), made if missing."""
    attachments = (config.data_path(config.smtp.smtp_attachments_path)
                   if config.smtp.smtp_attachments_store else None)
    raw = None if config.store.raw_in_database else Path(config.server.data_dir) / "raw"
    for directory in (attachments, raw):
        if directory is None:
            continue
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SystemExit(f"smtplatrine: cannot create {directory}:"
                             f" {e.strerror}; check smtp_attachments_path"
                             f" in [smtp]") from None
    return attachments, raw


class Storing:
    """The database, the pipeline that fills it from the spool, and the
    enrichment after each commit, built from *config* (files opened, heavy
    modules imported, the sandbox forked, becoming *ids* if given) while
    everything can still be read.  ``smtplatrine import`` and ``reparse``
    use it without the pipeline."""

    def __init__(self, config, reactor, ids=None):
        self.config = config
        self.reactor = reactor
        self.ids = ids
        self.sandbox = None
        self.attachments_dir, self.raw_dir = attachments, raw = store_dirs(config)
        spool_root = Path(config.server.data_dir) / "spool"
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
        self.threadpool = ThreadPool(1, 2, name="smtplatrine-parse")
        concurrency = config.mysql.mysql_connections if dialect.name == "mysql" else 2
        self.enrichment = self._enrichment()
        self.pipeline = Pipeline(
            reactor, spool_root, self.database, self.events, limits, attachments,
            raw, self.threadpool, concurrency, store.retry_max_delay,
            on_stored=self._stored)
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
        self.enrichment_database = Database(self.database.dialect, create=False)
        enrichment = enrich.EnrichmentService(
            self.reactor, self.enrichment_database, self.events, enrichers,
            self.config.server.sensor_name, meta.meta_timeout, meta.meta_concurrency,
            meta.meta_queue_interval, meta.meta_retry_delay)
        log.info("enrichers: {names}", names=", ".join(sorted(enrichment.enrichers))
                 or "none")
        return enrichment

    def _stored(self, prepared):
        """After a message's commit: its storing latency, its enrichment."""
        if self.metrics is not None and "received" in prepared.metadata:
            self.metrics.stored(prepared.metadata["received"], self.reactor.seconds())
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


@implementer(IPushProducer)
class StoringProcess(child.ChildProcess):
    """Runs the storing process for *config*, as *ids* (a (uid, gid), or
    None to stay who we are).  That process starts its worker again when
    the worker ends unasked; should it end itself, the spool keeps
    everything until smtplatrine is restarted.

    It is also the SMTP side's sink of events: each goes to the process as
    a line.  While the process does not read (busy, or its worker starting
    again), up to ``MAX_WAITING`` bytes of them wait; the rest are dropped,
    and *lost* (a function of the number) is told once they flow again.
    """

    def __init__(self, reactor, config, ids, lost=None):
        super().__init__(reactor, config, ids, "smtplatrine.storer", "the storing process",
                         ": captured mail stays in the spool until smtplatrine is"
                         " restarted")
        self._lost = lost
        # Bytes written since the pipe filled (None: it is not full), and
        # events dropped meanwhile.
        self._waiting = None
        self._dropped = 0

    def connectionMade(self):
        self.transport.registerProducer(self, True)

    def pauseProducing(self):
        """The pipe is full: the process does not read for now.  (The pipe
        says so at every write while it is full: only the first starts
        the count.)"""
        if self._waiting is None:
            self._waiting = 0

    def resumeProducing(self):
        self._waiting = None
        dropped, self._dropped = self._dropped, 0
        if dropped and self._lost is not None:
            self._lost(dropped)

    def stopProducing(self):
        self._waiting = None

    def write(self, event):
        """Hand *event* to the process, for the outputs."""
        if self._stopping:
            return
        line = b"event " + json.dumps(event, sort_keys=True).encode("ascii") + b"\n"
        if (self._ended.called or len(line) > MAX_LINE
                or (self._waiting is not None and self._waiting + len(line) > MAX_WAITING)):
            if not self._dropped:
                log.warn("the storing process does not take events now: they are"
                         " dropped, not given to the outputs, until it does")
            self._dropped += 1
            return
        if self._waiting is not None:
            self._waiting += len(line)
        self.transport.write(line)

    def close(self):
        """The process ends with :meth:`stop`."""

    def notify(self, kind, item):
        """Tell the process that the spool holds *kind* (message or
        session) *item*; what it misses, its scans find."""
        if not self._ended.called:
            self.transport.write(f"{kind} {item}\n".encode("ascii"))


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


def main(argv):
    child.main(argv, "the storing process", Storing, ": captured mail stays in the spool",
               ended=metrics.process_ended)


if __name__ == "__main__":
    main(sys.argv[1:])
