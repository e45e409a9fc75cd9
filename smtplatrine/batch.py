"""``smtplatrine import`` and ``smtplatrine reparse``: storing messages
outside the sensor's spool, through the sensor's own steps.

Both use the storing side of a sensor (:class:`~smtplatrine.storing.Storing`:
its database, parser limits, files, events and enrichers) and store each
message as the pipeline does (:func:`~smtplatrine.pipeline.parse_safely`,
:func:`~smtplatrine.pipeline.keep`,
:class:`~smtplatrine.pipeline.GroupWriter`,
:func:`~smtplatrine.pipeline.announce`), a few at a time, parsing in
threads.  Neither sends anything anywhere: the enrichers look indicators
up, as they do for captured mail, and that is all.

An imported message is known by its bytes (its UUID is derived from its
SHA-256), so importing a file again, or a copy of it, adds nothing.  Its
envelope and client come from its headers where they can: the client is
the sender of the topmost Received field that names a public address (the
hop into the mail system that delivered it), the envelope sender its
Return-Path (or its mbox ``From`` line), the recipients its Delivered-To,
X-Original-To and Envelope-To (or the ``for`` of the topmost Received), the
time of receipt that of the topmost dated Received (or the ``From`` line,
the Date field, the file's).

Reparse reads stored messages again from their raw bytes and replaces what
was read from them in place (:func:`~smtplatrine.store.records.
update_reading`); messages in ``spool/quarantine`` are stored anew, and
leave it once stored.
"""

import hashlib
import ipaddress
import uuid
from datetime import datetime
from email.utils import getaddresses, parseaddr, parsedate_to_datetime

import attrs
from twisted.internet import defer, threads
from twisted.logger import Logger
from zope.interface import implementer

from smtplatrine import mailfiles
from smtplatrine.capture import Identity, Metadata
from smtplatrine.events import printable
from smtplatrine.interfaces import IStoredConsumer
from smtplatrine.layout import DataDir
from smtplatrine.pipeline import GroupWriter, announce, keep, parse_safely, prepare
from smtplatrine.spool import read_metadata
from smtplatrine.store.dialects import Rejected, Unavailable
from smtplatrine.store.records import update_reading, utc
from smtplatrine.storing import Storing

log = Logger()

# The UUIDs of imported messages are uuid5(IMPORTED, SHA-256 of the message).
IMPORTED = uuid.UUID("1b0d6c63-7a4e-5b8e-9f35-4f0e8a2d6c11")
_ENVELOPE_FIELDS = ("delivered-to", "x-original-to", "envelope-to", "x-envelope-to")
# Messages read from files ahead of those being stored, at most; and messages
# being parsed or stored at once (a GroupWriter stores them in groups).
_READ_AHEAD = 64
_READ_AHEAD_BYTES = 32 * 1024 * 1024
_IN_FLIGHT = 32


def imported_id(raw):
    """The UUID of the imported message *raw*."""
    return str(uuid.uuid5(IMPORTED, hashlib.sha256(raw).hexdigest()))


def imported_metadata(message, parsed, sensor):
    """The metadata of the imported :class:`~smtplatrine.mailfiles.Message`
    *message*, as the spool would hold it, from what *parsed* read."""
    message_id = imported_id(message.raw)
    hop = _client_hop(parsed.received)
    received = next((r.date for r in parsed.received if r.date), None)
    when = (_iso_seconds(received) or message.date
            or _date_seconds(parsed.fields.get("date")) or message.mtime)
    identity = Identity(str(uuid.uuid5(IMPORTED, "session " + message_id)), sensor,
                        (hop.from_ip if hop else None) or "", 0, "", 0)
    return Metadata(
        message_id, identity, helo=hop.from_host if hop else None,
        received=when, session_start=when,
        mail_from=_envelope_sender(parsed, message),
        rcpts=tuple(_envelope_recipients(parsed)),
        acknowledged=True, truncated=message.truncated,
        imported=True, import_file=str(message.path), import_index=message.index)


def _client_hop(received):
    """The topmost Received field whose sender is a public address, else
    the topmost with any address; None if none has one."""
    with_address = [r for r in received if r.from_ip]
    for hop in with_address:
        if ipaddress.ip_address(hop.from_ip).is_global:
            return hop
    return with_address[0] if with_address else None


def _iso_seconds(text):
    """Epoch seconds of an ISO 8601 time with its zone; None if it is none."""
    try:
        return datetime.fromisoformat(text).timestamp() if text else None
    except ValueError:
        return None


def _date_seconds(text):
    """Epoch seconds of a Date field's value; None if it says no time."""
    try:
        moment = parsedate_to_datetime(text) if text else None
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return moment.timestamp() if moment is not None and moment.tzinfo else None


def _envelope_sender(parsed, message):
    path = next((h.value for h in parsed.headers if h.name.lower() == "return-path"), None)
    if path is None:
        return message.sender
    return "" if path.strip() in ("", "<>") else parseaddr(path)[1] or path.strip()


def _envelope_recipients(parsed):
    values = [h.value for h in parsed.headers if h.name.lower() in _ENVELOPE_FIELDS]
    found = [address for _, address in getaddresses(values) if "@" in address]
    if not found:
        found = [r.for_ for r in parsed.received[:1] if r.for_]
    return list(dict.fromkeys(found))


@attrs.define
class Summary:
    """What a run did."""

    files: int = 0  # files read (import)
    skipped: int = 0  # files in directories that look like no mail (import)
    read: int = 0  # messages read (import) or read again (reparse)
    stored: int = 0  # stored now
    known: int = 0  # stored before (import)
    changed: int = 0  # read differently now (reparse)
    unparsed: int = 0  # stored with the defect parse_failed
    refused: list = attrs.Factory(list)  # (where, reason): the database refused them
    unreadable: list = attrs.Factory(list)  # (where, reason): could not be read


@implementer(IStoredConsumer)
class _Run:
    """The storing side of a sensor without its spool, for one command:
    messages parsed and stored a few at once; *progress* (if given) hears
    ``(done, total, messages)`` as they are (done and total: bytes of the
    files, or messages)."""

    def __init__(self, config, reactor, progress=None):
        self.config = config
        self.reactor = reactor
        self.storing = Storing(config, reactor)
        self.database = self.storing.database
        self.dialect = self.database.dialect
        self.progress = progress or (lambda done, total, messages: None)
        self.summary = Summary()
        self._slots = defer.DeferredSemaphore(_IN_FLIGHT)
        self._writer = GroupWriter(self.database, reactor)
        self._running = set()
        self._enriching = set()
        self._lost = None

    async def __aenter__(self):
        self.storing.threadpool.start()
        self.storing.connect_sandbox()
        try:
            await self.database.open()
        except BaseException:
            self.storing.stop()
            raise
        return self

    async def __aexit__(self, *exc_info):
        try:
            await defer.DeferredList(list(self._running))
            await defer.DeferredList(list(self._enriching))
            await self.in_thread(self.dialect.sync)
        finally:
            self.storing.stop()

    def in_thread(self, f, *args):
        return threads.deferToThreadPool(self.reactor, self.storing.threadpool, f, *args)

    async def start(self, where, work, *args):
        """Run ``work(*args)``, for the message at *where*, once a slot is
        free; raises Unavailable if the database was lost meanwhile."""
        await self._slots.acquire()
        if self._lost is not None:
            self._slots.release()
            raise self._lost
        d = defer.Deferred.fromCoroutine(work(*args))
        self._running.add(d)
        d.addErrback(self._failed, where)
        d.addBoth(self._done, d)

    def _done(self, _, d):
        self._running.discard(d)
        self._slots.release()

    def _failed(self, failure, where):
        if failure.check(Unavailable):
            self._lost = self._lost or failure.value
            return
        # A bug of ours: say so, and go on with the others.
        log.failure("cannot store {where}", failure, where=where)
        self.summary.refused.append((where, repr(failure.value)))

    async def finish(self):
        await defer.DeferredList(list(self._running))
        if self._lost is not None:
            raise self._lost

    async def store(self, prepared, where):
        """Store *prepared* and announce it: True if stored now, False if
        it was already, None if the database refused it."""
        try:
            stored, prepared = await self._writer.write(prepared)
        except Rejected as e:
            self.summary.refused.append((where, str(e)))
            return None
        if stored:
            self.summary.stored += 1
            self.summary.unparsed += prepared.parsed.error is not None
            announce(self.storing.events, prepared, self)
        return stored

    def stored(self, prepared):
        """Hand *prepared* to the enrichers; the run waits for them at its end."""
        if self.storing.enrichment is None:
            return
        d = self.storing.enrichment.submit(prepared)
        self._enriching.add(d)
        d.addBoth(lambda _: self._enriching.discard(d))


def _stored_ids(cursor, dialect, ids):
    """Which of *ids* are stored."""
    if not ids:
        return set()
    cursor.execute(dialect.sql("SELECT message_id FROM honeypot_emails WHERE message_id IN"
                               f" ({', '.join('?' * len(ids))})"), list(ids))
    return {row[0] for row in cursor.fetchall()}


async def import_files(config, reactor, found, progress=None):
    """Import the files of *found* (:func:`~smtplatrine.mailfiles.find`);
    the :class:`Summary`."""
    async with _Run(config, reactor, progress) as run:
        summary = run.summary
        summary.files, summary.skipped = len(found.files), len(found.skipped)
        total = found.size
        reader = mailfiles.messages(found.files, config.smtp.message_size_limit)
        seen = set()
        while batch := await run.in_thread(_read_ahead, reader):
            messages = {imported_id(m.raw): m for m in batch
                        if isinstance(m, mailfiles.Message)}
            stored = await run.database.run(_stored_ids, run.dialect,
                                            list(messages.keys() - seen))
            for item in batch:
                if isinstance(item, OSError):
                    summary.unreadable.append((item.filename, item.strerror or str(item)))
                    continue
                summary.read += 1
                message_id = imported_id(item.raw)
                if message_id in seen or message_id in stored:
                    summary.known += 1
                else:
                    seen.add(message_id)
                    await run.start(_where(item), _import_one, run, item)
                run.progress(item.done, total, summary.read)
        await run.finish()
    return summary


def _read_ahead(reader):
    """The next messages (or errors) of *reader*, as many as fit the
    read-ahead."""
    batch, size = [], 0
    for item in reader:
        batch.append(item)
        size += len(getattr(item, "raw", b""))
        if len(batch) >= _READ_AHEAD or size >= _READ_AHEAD_BYTES:
            break
    return batch


async def _import_one(run, message):
    storing = run.storing

    def prepare_import():
        parsed = parse_safely(message.raw, storing.limits)
        metadata = imported_metadata(message, parsed, run.config.server.sensor_name)
        return keep(message.raw, metadata, parsed, storing.attachments_dir, storing.raw_store)

    prepared = await run.in_thread(prepare_import)
    if await run.store(prepared, _where(message)) is False:
        run.summary.known += 1  # stored meanwhile, by a sensor or another import


def _where(message):
    """Where the :class:`~smtplatrine.mailfiles.Message` *message* came from."""
    return str(message.path) + (f" (message {message.index})" if message.index else "")


def _reparse_ids(cursor, dialect, since, defect):
    """The stored messages to read again, oldest first."""
    where, args = [], []
    if since is not None:
        where.append("received >= ?")
        args.append(utc(since))
    if defect is not None:
        where.append("defects LIKE ? ESCAPE '!'")
        escaped = defect.replace("!", "!!").replace("%", "!%").replace("_", "!_")
        args.append(f'%"{escaped}"%')
    query = "SELECT message_id FROM honeypot_emails"
    if where:
        query += " WHERE " + " AND ".join(where)
    cursor.execute(dialect.sql(query + " ORDER BY received, message_id"), args)
    return [row[0] for row in cursor.fetchall()]


# What reparse needs of a stored message: its identity, for events and
# enrichers, and its raw bytes (or where they are).
_STORED = ("message_id", "session_id", "sensor", "client_ip", "client_port", "server_ip",
           "server_port", "mail_from", "raw", "raw_path")


def _stored_rows(cursor, dialect, ids):
    cursor.execute(dialect.sql(f"SELECT {', '.join(_STORED)} FROM honeypot_emails"
                               f" WHERE message_id IN ({', '.join('?' * len(ids))})"),
                   list(ids))
    return [dict(zip(_STORED, row)) for row in cursor.fetchall()]


async def reparse(config, reactor, since=None, defect=None, progress=None):
    """Read stored messages again (those received at or after *since*,
    epoch seconds; those with the defect *defect*), and then, without
    *defect*, the quarantined ones; the :class:`Summary`."""
    async with _Run(config, reactor, progress) as run:
        ids = await run.database.run(_reparse_ids, run.dialect, since, defect)
        quarantined = [] if defect is not None else _quarantined(config, since)
        total = len(ids) + len(quarantined)
        for start in range(0, len(ids), 16):
            for row in await run.database.run(_stored_rows, run.dialect,
                                              ids[start:start + 16]):
                await run.start(row["message_id"], _reparse_one, run, row)
                run.summary.read += 1
                run.progress(run.summary.read, total, run.summary.read)
        for eml in quarantined:
            await run.start(str(eml), _unquarantine, run, eml)
            run.summary.read += 1
            run.progress(run.summary.read, total, run.summary.read)
        await run.finish()
    return run.summary


async def _reparse_one(run, row):
    storing = run.storing
    identity = Identity(row["session_id"], row["sensor"], row["client_ip"],
                        row["client_port"], row["server_ip"], row["server_port"])
    metadata = Metadata(row["message_id"], identity, mail_from=row["mail_from"])

    def read_again():
        if row["raw"] is not None:
            raw = bytes(row["raw"])
        else:
            raw = (DataDir.of(run.config).raw / row["raw_path"]).read_bytes()
        # Where the raw message is kept does not change.
        return keep(raw, metadata, parse_safely(raw, storing.limits),
                    storing.attachments_dir, None)

    try:
        prepared = await run.in_thread(read_again)
    except (OSError, TypeError) as e:
        run.summary.unreadable.append((row["message_id"], f"its raw message: {e}"))
        return
    changed = await run.database.run(update_reading, run.dialect, prepared)
    parsed = prepared.parsed
    run.summary.changed += changed
    run.summary.unparsed += parsed.error is not None
    storing.events.emit(
        "smtplatrine.message.reparsed", identity, message=row["message_id"],
        changed=changed, attachments=len(parsed.attachments), urls=len(parsed.urls),
        defects=len(parsed.defects), parse_error=parsed.error and printable(parsed.error))
    run.stored(prepared)


def _quarantined(config, since):
    """The quarantined messages received at or after *since* (epoch seconds)."""
    folder = DataDir.of(config).quarantine
    found = []
    for eml in sorted(folder.glob("*.eml")):
        metadata = read_metadata(eml.with_suffix(".json"))
        if metadata is not None and (since is None or (metadata.received or 0) >= since):
            found.append(eml)
    return found


async def _unquarantine(run, eml):
    storing = run.storing
    try:
        prepared = await run.in_thread(prepare, eml, storing.limits,
                                       storing.attachments_dir, storing.raw_store)
    except OSError as e:
        run.summary.unreadable.append((str(eml), e.strerror or str(e)))
        return
    if prepared is not None and await run.store(prepared, str(eml)) is not None:
        for path in (eml, eml.with_suffix(".json"), eml.with_suffix(".reason")):
            path.unlink(missing_ok=True)
