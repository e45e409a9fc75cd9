"""The capture pipeline: spooled messages and sessions into the database.

Each message is parsed (bounded, in a parse worker process,
:mod:`smtplatrine.parsers`), its attachments written under their SHA-256,
then stored, by this process alone: those parsed while a transaction runs
are stored together in the next (:class:`GroupWriter`).
Commits are made durable in groups (one ``dialect.sync()`` for all those
committed while the last one ran); only then do their spool files go, so a
crash loses no message: what was not synced is still spooled, and storing
it again is idempotent.  While the database is away the pipeline waits,
one second and doubling up to ``retry_max_delay``, and the spool keeps
everything.  A message whose parsing fails, or whose parsed rows the
database refuses, is stored all the same, unparsed, flagged ``parse_failed``
with the reason.  A message the database will never take even so (over
its packet limit), or whose spool file cannot be read, moves to
``spool/quarantine/`` with a ``.reason`` file beside it, and the others go
on.  :func:`prepare_raw` (:func:`parse_safely` and :func:`keep`),
:func:`store_message` and :func:`announce` are the steps of storing one
message, also for ``smtplatrine import`` and ``reparse``.
"""

import errno
import hashlib
from collections import deque

import attrs
from twisted.internet import defer, threads
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from smtplatrine.enrich.indicators import of_message
from smtplatrine.events import printable
from smtplatrine import files
from smtplatrine.parse import parse, payload_chunks, unparsed
from smtplatrine.capture import Identity, Prepared
from smtplatrine.interfaces import ISpoolConsumer
from smtplatrine.spool import GroupCommit, SpoolReader, read_message
from smtplatrine.store import tallies
from smtplatrine.store.dialects import Rejected, Unavailable
from smtplatrine.store.records import save_message, save_session

log = Logger()


def prepare(eml, limits, attachments_dir, raw_store):
    """Read and parse a spooled message, and write out its files; None if
    it is not (or no longer) in the spool."""
    found = read_message(eml)
    if found is None:
        return None
    raw, metadata = found
    return prepare_raw(raw, metadata, limits, attachments_dir, raw_store)


def prepare_unparsed(eml, reason, raw_store):
    """:func:`prepare` for a spooled message whose parsing cannot be
    tried (it ended its worker): stored unparsed, for *reason*."""
    found = read_message(eml)
    if found is None:
        return None
    raw, metadata = found
    return keep(raw, metadata, unparsed(reason), None, raw_store)


def prepare_raw(raw, metadata, limits, attachments_dir, raw_store):
    """Parse the message *raw* with its *metadata*, and write out its files
    (see :func:`keep`)."""
    return keep(raw, metadata, parse_safely(raw, limits), attachments_dir, raw_store)


def parse_safely(raw, limits):
    """:func:`~smtplatrine.parse.parse`; should it raise, the record of a
    message that could not be parsed (:func:`~smtplatrine.parse.unparsed`),
    saying why."""
    try:
        return parse(raw, limits)
    except Exception as e:
        log.failure("pipeline: the parser failed")
        return unparsed(f"the parser failed: {_reason(e)}")


def keep(raw, metadata, parsed, attachments_dir, raw_store):
    """The message *raw* with its *metadata* and what was read from it,
    *parsed*, ready to store: its attachments written under
    *attachments_dir*, the raw message in the
    :class:`~smtplatrine.layout.RawStore` *raw_store* if it goes on disk
    (None: none does; the raw message goes in the database)."""
    sha256 = hashlib.sha256(raw).hexdigest()
    metadata = attrs.evolve(metadata, size=len(raw), sha256=sha256,
                            md5=hashlib.md5(raw).hexdigest())
    paths = tuple(files.keep_chunks(attachments_dir, payload_chunks(a.payload), a.sha256)
                  if attachments_dir else None for a in parsed.attachments)
    raw_path = (files.keep(raw_store.directory, raw, sha256)
                if raw_store and raw_store.on_disk(len(raw)) else None)
    return Prepared(metadata, parsed, None if raw_path else bytes(raw), raw_path, paths,
                    tuple(of_message(metadata, parsed)))


def _reason(error):
    return f"{type(error).__name__}: {error}"[:1000]


async def store_message(database, prepared, now):
    """Store *prepared* in one transaction: (True, what was stored), or
    (False, it) if it was stored already.  Should the database refuse its
    parsed rows (or storing them raise), the message is stored unparsed.
    Raises Unavailable (try again later) or Rejected (not even unparsed)."""
    try:
        database.check_size(prepared)
        return await database.run(save_message, database.dialect, prepared, now), prepared
    except Unavailable:
        raise
    except Exception as e:
        if prepared.parsed.error is not None:
            raise
        if not isinstance(e, Rejected):
            log.failure("pipeline: cannot store message {message}",
                        message=prepared.metadata.message)
        reason = f"the database refused the parsed message: {_reason(e)}"
    parsed = unparsed(reason)
    fallback = attrs.evolve(prepared, parsed=parsed, attachment_paths=(),
                            indicators=tuple(of_message(prepared.metadata, parsed)))
    database.check_size(fallback)
    return await database.run(save_message, database.dialect, fallback, now), fallback


# Messages stored in one transaction, at most; and bytes of messages parsed
# and waiting for their transaction, at most (beyond those being parsed).
GROUP = 64
_WAITING_BYTES = 32 * 1024 * 1024


def save_group(cursor, dialect, group, now):
    """Store the messages *group* in one transaction, their tallies added
    up and written once (a flood's messages share most of theirs)."""
    counted = tallies.Batches(cursor, dialect)
    stored = [save_message(cursor, dialect, prepared, now, counted) for prepared in group]
    counted.flush()
    return stored


class GroupWriter:
    """Stores messages as :func:`store_message` does, those that come while
    a transaction runs together in the next (up to ``GROUP``): one commit,
    and one write of the database's log, for many.  Should a group fail (a
    message the database refuses, a deadlock with a sensor writing to the
    same database), each of its messages is stored on its own, in a
    transaction of its own; should the database be away, each fails with
    Unavailable.  *clock* says the time they are stored."""

    def __init__(self, database, clock):
        self._database = database
        self._clock = clock
        self._waiting = []  # (prepared, Deferred) for the next group
        self._writing = False
        # Messages handed to write() and not yet answered, and their bytes.
        self.pending = 0
        self.pending_bytes = 0

    def write(self, prepared):
        """A Deferred of (stored, what was stored), as
        :func:`store_message` returns, or its failure."""
        d = defer.Deferred()
        self._waiting.append((prepared, d))
        size = prepared.metadata.size or 0
        self.pending += 1
        self.pending_bytes += size

        def answered(result):
            self.pending -= 1
            self.pending_bytes -= size
            return result

        if not self._writing:
            self._writing = True
            defer.Deferred.fromCoroutine(self._write_groups())
        return d.addBoth(answered)

    async def _write_groups(self):
        while self._waiting:
            group, self._waiting = self._waiting[:GROUP], self._waiting[GROUP:]
            now = self._clock.seconds()
            try:
                for prepared, _ in group:
                    self._database.check_size(prepared)
                stored = await self._database.run(save_group, self._database.dialect,
                                                  [p for p, _ in group], now)
            except Unavailable as e:
                for _, d in group:
                    d.errback(e)
                continue
            except Exception:
                for prepared, d in group:
                    try:
                        d.callback(await store_message(self._database, prepared, now))
                    except Exception as e:
                        d.errback(e)
                continue
            for (prepared, d), one in zip(group, stored):
                d.callback((one, prepared))
        self._writing = False


def announce(events, prepared, consumer=None):
    """Emit the events of the message *prepared*, just stored, and hand it
    to *consumer* (an :class:`~smtplatrine.interfaces.IStoredConsumer`),
    whose failure is only logged."""
    metadata, parsed = prepared.metadata, prepared.parsed
    identity = metadata.identity
    for attachment, path in zip(parsed.attachments, prepared.attachment_paths):
        events.emit(
            "smtplatrine.attachment.stored", identity, message=metadata.message,
            sha256=attachment.sha256, size=attachment.size,
            content_type=printable(attachment.content_type),
            filename=attachment.filename and printable(attachment.filename),
            stored_path=path)
    if parsed.error is not None:
        events.emit("smtplatrine.message.parse_failed", identity,
                    message=metadata.message, reason=printable(parsed.error))
    events.emit(
        "smtplatrine.message.stored", identity, message=metadata.message,
        size=metadata.size, sha256=metadata.sha256,
        attachments=len(parsed.attachments), urls=len(parsed.urls),
        defects=len(parsed.defects), imported=metadata.imported)
    if consumer is not None:
        try:
            consumer.stored(prepared)
        except Exception:
            log.failure("pipeline: after message {message} was stored",
                        message=metadata.message)


def _settle(sync, paths):
    """Make the commits so far durable with *sync*, then remove the spool
    files *paths* of what they stored."""
    sync()
    for path in paths:
        path.unlink(missing_ok=True)


@implementer(ISpoolConsumer)
class Pipeline:
    """Moves what the spool under *spool_root* holds into *database*.

    ``notify(kind, id)`` tells it a message (``"message"``) or a session
    record (``"session"``) is ready; it also finds them at start and when
    idle.  *parsers* (:class:`~smtplatrine.parsers.ParseWorkers`) prepare
    each message, at most *concurrency* items (messages, sessions) at once;
    *threadpool* syncs and removes spool files.  *stored* (an
    :class:`~smtplatrine.interfaces.IStoredConsumer`: the enrichment) is
    handed each message after its commit; what it does cannot fail the
    pipeline.  *left* (a function of a list of message ids)
    hears of the messages that left the spool, stored or quarantined: the
    SMTP side counts its backlog by it.
    """

    def __init__(self, reactor, spool_root, database, events, parsers, threadpool,
                 concurrency=2, max_delay=60.0, stored=None, left=None):
        self._reactor = reactor
        self._spool = SpoolReader(spool_root)
        self._database = database
        self._events = events
        self._parsers = parsers
        self._threadpool = threadpool
        self._concurrency = concurrency
        self._max_delay = max_delay
        self.stored = stored
        self._left = left
        self._queue = deque()
        self._queued = set()
        self._running = 0
        self._writer = GroupWriter(database, reactor)
        self._settling = GroupCommit(self._settle)
        self._delay = 0.0
        self._waiting = None
        self._open = False
        self._scanner = LoopingCall(self._scan_when_idle)
        self._scanner.clock = reactor

    @property
    def backlog(self):
        """Messages and sessions waiting or being stored."""
        return len(self._queue) + self._running + self._settling.waiting

    def start(self):
        self._spool.quarantine.mkdir(exist_ok=True)
        self._scan()
        self._scanner.start(30, now=False)
        self._connect()

    def stop(self):
        if self._scanner.running:
            self._scanner.stop()
        if self._waiting is not None and self._waiting.active():
            self._waiting.cancel()

    def notify(self, kind, item):
        if (kind, item) not in self._queued:
            self._queued.add((kind, item))
            self._queue.append((kind, item))
            self._pump()

    def _scan(self):
        for kind, item in self._spool.finished():
            self.notify(kind, item)

    def _scan_when_idle(self):
        if (self._open and not self._queue and not self._running
                and not self._settling.running and not self._settling.waiting):
            self._scan()

    def _connect(self):
        def opened(_):
            self._open = True
            self._recovered()
            self._pump()

        def failed(failure):
            if not failure.check(Unavailable, Rejected):
                log.failure("pipeline: cannot open the database", failure)
            self._back_off(failure.value, self._connect)

        self._waiting = None
        defer.Deferred.fromCoroutine(self._database.open()).addCallbacks(opened, failed)

    def _pump(self):
        # At most *concurrency* items read and parsed at once; those parsed
        # wait for the next group's transaction (bounded) without counting.
        writer = self._writer
        while (self._open and self._waiting is None and self._queue
               and self._running - writer.pending < self._concurrency
               and writer.pending < GROUP and writer.pending_bytes < _WAITING_BYTES):
            kind, item = self._queue.popleft()
            self._running += 1
            process = self._message if kind == "message" else self._session
            d = defer.Deferred.fromCoroutine(process(item))
            d.addBoth(self._finished, kind, item)

    def _finished(self, result, kind, item):
        self._running -= 1
        if isinstance(result, Failure) and result.check(Unavailable):
            self._queue.appendleft((kind, item))
            self._back_off(result.value, self._resume)
        else:
            self._queued.discard((kind, item))
            if isinstance(result, Failure):
                log.failure("pipeline: {kind} {item} failed", result, kind=kind, item=item)
            elif self._delay:
                self._recovered()
        self._pump()

    def _back_off(self, error, then):
        if self._waiting is not None:
            return
        if not self._delay:
            # Not always the database: the parse workers, or the disk, may be away.
            log.error("storing paused ({error}): captured mail stays in the spool;"
                      " retrying with back-off up to {max} s", error=str(error),
                      max=self._max_delay)
        self._delay = min(max(1.0, self._delay * 2), self._max_delay)
        self._waiting = self._reactor.callLater(self._delay, then)

    def _resume(self):
        self._waiting = None
        self._pump()

    def _recovered(self):
        if self._delay:
            log.info("storing again into {db}; {backlog} item(s) to store",
                     db=self._database.dialect.describe(), backlog=self.backlog)
        self._delay = 0.0

    async def _message(self, message_id):
        eml = self._spool.eml(message_id)
        try:
            prepared = await self._parsers.prepare(eml)
        except Unavailable:
            raise
        except Exception as e:
            if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
                # A full disk passes: the message waits in the spool.
                raise Unavailable(f"no room for its files: {e}") from None
            self._quarantine_message(
                message_id, f"cannot be read, or its files cannot be written: {e!r}")
            return
        if prepared is None:
            self._gone([message_id])
            return
        written = self._writer.write(prepared)
        # Waiting for its group, it leaves its place to the next message.
        self._pump()
        try:
            stored, prepared = await written
        except Rejected as e:
            self._quarantine_message(message_id, str(e))
            return
        except Unavailable:
            raise
        except Exception as e:
            # A bug of ours: say so once, and keep it from holding up the rest.
            log.failure("pipeline: cannot store message {message}", message=message_id)
            self._quarantine_message(message_id, f"cannot be stored: {e!r}")
            return
        self._durable("message", message_id,
                      (lambda: announce(self._events, prepared, self.stored))
                      if stored else None)

    def _durable(self, kind, item, then):
        """Once what was just committed is durable, remove the spool files
        of *kind* *item*, then call *then* (if any).  Should that fail, the
        files stay: the next scan stores them again (a no-op for what the
        database kept), and this is tried again."""
        d = self._settling.add((kind, item))
        if then is not None:
            d.addCallback(lambda _: then())
        d.addErrback(lambda _: None)

    def _settle(self, items):
        """Make the commits so far durable and remove the spool files of
        their *items* ((kind, id) pairs), in the thread pool (both wait on
        the disk); then say which messages left."""
        d = threads.deferToThreadPool(
            self._reactor, self._threadpool, _settle, self._database.dialect.sync,
            [path for kind, item in items for path in self._spool.files(kind, item)])
        d.addCallback(lambda _: self._gone(
            [item for kind, item in items if kind == "message"]))
        return d.addErrback(self._not_durable)

    def _gone(self, message_ids):
        """Tell *left* of the messages *message_ids*, out of the spool."""
        if self._left is not None and message_ids:
            self._left(message_ids)

    def _not_durable(self, failure):
        log.failure("pipeline: cannot make stored messages durable", failure)
        return failure

    def _quarantine_message(self, message_id, reason):
        metadata = self._spool.quarantine_message(message_id, reason)
        self._gone([message_id])
        identity = metadata.identity if metadata is not None else Identity()
        self._events.emit("smtplatrine.message.quarantined", identity,
                          message=message_id, reason=printable(reason))

    async def _session(self, session_id):
        record = self._spool.session(session_id)
        if record is None:
            return
        try:
            await self._database.run(save_session, self._database.dialect, record)
        except Rejected as e:
            log.error("session {session} cannot be stored ({reason}); kept in"
                      " spool/quarantine", session=session_id, reason=printable(str(e)))
            self._spool.quarantine_session(session_id)
            return
        self._durable("session", session_id, lambda: self._events.emit(
            "smtplatrine.session.stored", Identity.from_json(record)))
