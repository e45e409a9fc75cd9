"""The storing process: the pipeline and the enrichment, away from the sockets.

Parsing, storing and enriching take CPU, the GIL and memory (a 50 MB
message); in the listening process they would slow every session, and a
crash or a stall of theirs would take the sockets with it.  So a child
process of its own, with its own reactor, does that work
(:class:`StoringProcess` starts it and keeps it running).  It gets the
configuration, then one line per item on its input
(``message ID`` or ``session ID``, as the spool finishes them), and finds
the rest by scanning the spool at start and when idle.  Its log events come
back as JSON lines on its output, and the server logs them as its own; its
events (``events.jsonl``, syslog) it writes itself.

Run as ``python -m smtplatrine.storer [UID GID]`` (see smtplatrine.child):
started before the server drops its privileges, it prepares everything,
then drops them itself.
"""

import sys
from pathlib import Path

from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.threadpool import ThreadPool

from smtplatrine import child
from smtplatrine.events import make_events
from smtplatrine.parse import Limits
from smtplatrine.pipeline import Pipeline
from smtplatrine.store import dialects
from smtplatrine.store.database import Database

# Named: run as ``python -m``, this module is __main__.
log = Logger(namespace="smtplatrine.storer")

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
    modules imported) while everything can still be read."""

    def __init__(self, config, reactor):
        self.config = config
        self.reactor = reactor
        attachments, raw = store_dirs(config)
        spool_root = Path(config.server.data_dir) / "spool"
        dialect = dialects.from_config(config)
        self.database = Database(dialect, create=config.mysql.mysql_auto_create_db
                                 or dialect.name == "sqlite", grouped=True)
        self.events = make_events(config, reactor)
        store = config.store
        limits = Limits(seconds=store.parse_seconds, depth=store.parse_max_depth,
                        parts=store.parse_max_parts,
                        header_bytes=store.parse_max_header_bytes)
        self.threadpool = ThreadPool(1, 2, name="smtplatrine-parse")
        concurrency = config.mysql.mysql_connections if dialect.name == "mysql" else 2
        self.enrichment = self._enrichment()
        self.pipeline = Pipeline(
            reactor, spool_root, self.database, self.events, limits, attachments,
            raw, self.threadpool, concurrency, store.retry_max_delay,
            on_stored=self.enrichment.submit if self.enrichment else None)
        log.info("storing into {db}", db=dialect.describe())

    def _enrichment(self):
        """The enrichment service (None when [meta] turns it off) with the
        enrichers found as plugins."""
        meta = self.config.meta
        if not meta.meta_enable:
            return None
        from smtplatrine.enrich import service as enrich
        enrichers = enrich.configure(enrich.discover(), enrich.context(meta, self.reactor))
        # Its own connections: lookups never wait for, or hold up, storage.
        self.enrichment_database = Database(self.database.dialect, create=False)
        enrichment = enrich.EnrichmentService(
            self.reactor, self.enrichment_database, self.events, enrichers,
            self.config.server.sensor_name, meta.meta_timeout, meta.meta_concurrency,
            meta.meta_queue_interval, meta.meta_retry_delay)
        log.info("enrichers: {names}", names=", ".join(sorted(enrichment.enrichers))
                 or "none")
        return enrichment

    def commands(self, ended):
        """The server's lines on our input: items for the pipeline."""
        return _Commands(self.pipeline.notify, ended)

    def start(self):
        self.threadpool.start()
        self.pipeline.start()
        if self.enrichment is not None:
            self.enrichment.start()

    def stop(self):
        self.pipeline.stop()
        if self.enrichment is not None:
            self.enrichment.stop()
            self.enrichment_database.close()
        self.threadpool.stop()
        self.database.close()
        self.events.close()


class StoringProcess(child.ChildProcess):
    """Runs the storing process for *config*, as *ids* (a (uid, gid), or
    None to stay who we are); should it end itself, the spool keeps
    everything until smtplatrine is restarted."""

    def __init__(self, reactor, config, ids):
        super().__init__(reactor, config, ids, "smtplatrine.storer", "the storing process",
                         ": captured mail stays in the spool until smtplatrine is"
                         " restarted")

    def notify(self, kind, item):
        """Tell the process that the spool holds *kind* (message or
        session) *item*; what it misses, its scans find."""
        if not self._ended.called:
            self.transport.write(f"{kind} {item}\n".encode("ascii"))


class _Commands(LineOnlyReceiver):
    """The server's lines: items for the pipeline; end of input: stop."""

    delimiter = b"\n"

    def __init__(self, notify, ended):
        self._notify = notify
        self._ended = ended

    def lineReceived(self, line):
        # A worker that died may have read part of a line: skip what is left.
        kind, _, item = line.decode("ascii", "replace").partition(" ")
        if kind in ("message", "session") and item:
            self._notify(kind, item)

    def connectionLost(self, reason):
        self._ended()


def main(argv):
    child.main(argv, "the storing process", Storing, ": captured mail stays in the spool")


if __name__ == "__main__":
    main(sys.argv[1:])
