"""The durable spool: the hand-off between the SMTP engine and the store.

Layout under the spool directory::

    messages/ID.eml      the raw message, byte-exact after dot-unstuffing
    messages/ID.json     its metadata, one JSON object; empty until the
                         message has ended
    sessions/SID.json    one record per connection, written when it closes

A consumer takes a message when its ``.json`` parses; until then the message
is still being received.  The metadata says whether the client was told it
was accepted (``acknowledged``) and flags what is not whole (``truncated``
when it was over the size limit, ``incomplete`` when the connection dropped
mid-DATA, ``recovered`` when a restart found it unfinished).

Nothing is acknowledged before it is on disk: the message and its metadata
are written, then syncfs(2) makes them durable, and only then does the
client get its 250.  Commits are grouped: messages that end while a sync
runs share the next one.  Creating files and syncing are the disk worker's
(:mod:`smtplatrine.disk`); message files are created ahead, ``reserve`` at a
time.

A full disk is a state, not an accident: a message that cannot be written
is refused and removed, a session record that cannot be written is kept in
memory (up to ``_UNSAVED_BYTES``) and tried again, and :func:`free_space`
tells the SMTP side to refuse mail before it comes to that.

A storing process slower than the flood must not let the spool grow
without bound: the writing half counts its :class:`Backlog` (finished
messages not yet stored), and while that is over its bound the SMTP side
holds each new MAIL back a while, as Postfix's ``in_flow_delay``.
"""

import contextlib
import hashlib
import json
import mmap
import os
import time
import uuid
from collections import deque

import attrs
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from smtplatrine import layout
from smtplatrine.capture import Identity, Metadata
from smtplatrine.config import SMTP
from smtplatrine.disk import syncfs, write_json

log = Logger()

# Syncs under way at once: a message that ends while one runs need not wait
# for it to finish; the kernel merges their journal commits.
_SYNCS_IN_FLIGHT = 3
# Session records the disk refused, kept to be tried again (as JSON bytes),
# and how often they are.
_UNSAVED_BYTES = 16 * 2**20
_RETRY_AFTER = 5.0
# Seconds between counts of the spool's messages on disk while the backlog
# is over its bound (the count corrects what the storing process could not
# say: one killed between its commit and its word), and at least this many
# times as long as the last count took (a spool that grew through a long
# database outage must not stall the SMTP side with its counting).
_RECOUNT_AFTER = 10.0
_RECOUNT_SHARE = 100


def finished_files(directory):
    """(os.DirEntry, its stat) of the metadata files (``ID.json``) of the
    items finished in the spool *directory*: an empty one was made ahead,
    or its item is still being received; one gone meanwhile was stored."""
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        if not entry.name.endswith(".json"):
            continue
        try:
            stat = entry.stat()
        except OSError:
            continue
        if stat.st_size:
            yield entry, stat


def free_space(path):
    """The bytes an unprivileged writer may still use on the file system
    of *path*."""
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def read_json(path):
    """The JSON object in *path*, or None while it is unfinished (empty)."""
    try:
        record = json.loads(path.read_text(encoding="ascii"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def read_metadata(path):
    """The :class:`~smtplatrine.capture.Metadata` in *path*, or None while
    the message is unfinished."""
    record = read_json(path)
    return None if record is None else Metadata.from_json(record)


def _open_empty(path):
    """Open *path*, a file created ahead and still empty, for writing.

    Not with O_TRUNC: ext4 flushes a file truncated by its opener when it is
    closed (auto_da_alloc), which would cost each message two waits here.
    """
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT, 0o640), "wb")


class SpoolFile:
    """A message: raw bytes go to ``ID.eml`` as they arrive, its metadata to
    ``ID.json`` when it ends (files the disk worker may have created ahead).
    ``limit``, the most bytes it keeps, is set when it is used.  ``error``
    is the OSError that stopped its writing (a full disk), if one did."""

    def __init__(self, directory, message_id):
        self.message_id = uuid.UUID(message_id)
        self.path = directory / f"{message_id}.eml"
        self.limit = 0
        self.size = 0
        self.truncated = False
        self.error = None
        self._sha256 = hashlib.sha256()
        self._file = _open_empty(self.path)
        self._metadata_file = _open_empty(self.path.with_suffix(".json"))

    def write(self, data):
        """Append *data*, keeping at most ``limit`` bytes in all.  Once a
        write has failed the rest is only counted, in ``size``."""
        room = self.limit - self.size
        if len(data) > room:
            self.truncated = True
            data = data[:room]
        if not data:
            return
        if self.error is None:
            try:
                self._file.write(data)
            except OSError as e:
                self.error = e
            self._sha256.update(data)
        self.size += len(data)

    @property
    def sha256(self):
        return self._sha256.hexdigest()

    def complete(self, metadata):
        """End the message: write *metadata* (a
        :class:`~smtplatrine.capture.Metadata`), with size and hash, beside
        it."""
        self._file.close()
        self.metadata = attrs.evolve(metadata, size=self.size, sha256=self.sha256,
                                     truncated=self.truncated)
        with self._metadata_file as f:
            f.write(json.dumps(self.metadata.to_json(), sort_keys=True).encode("ascii")
                    + b"\n")

    def remove(self):
        for f in (self._file, self._metadata_file):
            # Closing flushes what is buffered, which a full disk refuses.
            with contextlib.suppress(OSError):
                f.close()
        for path in (self.path, self.path.with_suffix(".json")):
            path.unlink(missing_ok=True)


class GroupCommit:
    """Makes items durable in groups: ``sync(items)`` (a Deferred) makes a
    group durable; items added while *limit* syncs run wait for the next,
    which takes them all."""

    def __init__(self, sync, limit=1):
        self._sync = sync
        self._limit = limit
        self._waiting = []
        self.running = 0

    @property
    def waiting(self):
        """Items waiting for the next sync."""
        return len(self._waiting)

    def add(self, item):
        """A Deferred that fires with *item* once it is durable, or fails
        as its group's sync did."""
        d = defer.Deferred()
        self._waiting.append((item, d))
        if self.running < self._limit:
            self._next()
        return d

    def _next(self):
        group, self._waiting = self._waiting, []
        if not group:
            return
        self.running += 1

        def fire(result):
            self.running -= 1
            for item, d in group:
                if isinstance(result, Failure):
                    d.errback(result)
                else:
                    d.callback(item)
            self._next()

        self._sync([item for item, _ in group]).addBoth(fire)


class Backlog:
    """The finished messages of the spool *messages* that the storing
    process has not yet taken out of it, as the SMTP side counts them
    without reading the directory: each message the spool hands off
    (:meth:`added`) until the storing process says it has left
    (:meth:`left`).  The directory is counted only at start and, while the
    backlog is over its bound, at most every ``_RECOUNT_AFTER`` seconds
    (longer for a spool so large that counting takes long).

    It is over its bound at *max_messages* messages or *max_bytes* bytes;
    then :meth:`wait` holds a new message back up to *delay* seconds, or
    until the backlog is under its bound again (Postfix's
    ``in_flow_delay``; a *delay* of 0 holds nothing back).
    """

    def __init__(self, clock, messages, max_messages, max_bytes, delay):
        self._clock = clock
        self._messages = messages
        self._max_messages, self._max_bytes, self._delay = max_messages, max_bytes, delay
        # Message id → its size.
        self._sizes = {}
        self.bytes = 0
        self._waiters = []
        # When the directory was last counted (by the clock).
        self._counted = 0.0
        self._recount_after = _RECOUNT_AFTER
        self._was_over = False

    def __len__(self):
        return len(self._sizes)

    @property
    def over(self):
        """Whether the backlog is at its bound."""
        return len(self._sizes) >= self._max_messages or self.bytes >= self._max_bytes

    def added(self, message_id, size):
        """The spool handed off the message *message_id* of *size* bytes."""
        self.bytes += size - self._sizes.get(message_id, 0)
        self._sizes[message_id] = size
        self._changed()

    def left(self, message_ids):
        """The storing process took the messages *message_ids* out of the
        spool (stored, or quarantined); ids it never had are ignored."""
        for message_id in message_ids:
            self.bytes -= self._sizes.pop(message_id, 0)
        self._changed()

    def count(self):
        """Count the finished messages on disk (at start, and to correct
        the count)."""
        started = time.perf_counter()
        sizes = {}
        for entry, _ in finished_files(self._messages):
            try:
                eml = os.stat(os.path.join(self._messages, entry.name[:-5] + ".eml"))
            except OSError:
                continue  # stored meanwhile
            sizes[entry.name[:-5]] = eml.st_size
        self._sizes, self.bytes = sizes, sum(sizes.values())
        self._recount_after = max(_RECOUNT_AFTER,
                                  _RECOUNT_SHARE * (time.perf_counter() - started))
        if self._clock is not None:
            self._counted = self._clock.seconds()
        self._changed()

    def wait(self):
        """A Deferred that fires once a new message may go on: at once
        while the backlog is under its bound, else after the delay or
        when the backlog is back under its bound, whichever comes first."""
        if (self.over and self._clock is not None
                and self._clock.seconds() - self._counted >= self._recount_after):
            self.count()
        if not self.over or not self._delay or self._clock is None:
            return defer.succeed(None)
        d = defer.Deferred()
        call = self._clock.callLater(self._delay, self._release, d)
        self._waiters.append((d, call))
        return d

    def _release(self, d):
        self._waiters = [(w, call) for w, call in self._waiters if w is not d]
        d.callback(None)

    def _changed(self):
        over = self.over
        if over != self._was_over:
            self._was_over = over
            if over:
                log.warn("spool: {messages} messages ({bytes} bytes) wait to be stored;"
                         " new messages are held back up to {delay} s each until"
                         " storing catches up", messages=len(self._sizes),
                         bytes=self.bytes, delay=self._delay)
            else:
                log.info("spool: storing caught up ({messages} messages wait)",
                         messages=len(self._sizes))
        if not over and self._waiters:
            waiters, self._waiters = self._waiters, []
            for d, call in waiters:
                call.cancel()
                d.callback(None)


class Spool:
    """The spool's writing half, on the SMTP side: a durable spool
    directory; *disk* does the work that waits on the disk (a
    :class:`~smtplatrine.disk.DiskWorker`, or a ``LocalDisk`` in tests),
    *clock* schedules new tries of the session records it refused.
    ``ready`` (an :class:`~smtplatrine.interfaces.ISpoolConsumer`), when
    set, hears of each message and session record once it is on disk.
    *flow* (the ``[smtp]`` options) bounds its :class:`Backlog`,
    ``backlog``."""

    def __init__(self, root, disk, clock=None, reserve=64, flow=SMTP()):
        self.root = root
        self.ready = None
        self.messages = root / layout.MESSAGES
        self._disk = disk
        self._clock = clock
        self._commits = GroupCommit(lambda _: self._disk.request(op="sync"),
                                    _SYNCS_IN_FLIGHT)
        self._reserve = reserve
        self._ready = []
        self._refilling = False
        # Session records the disk refused: (record, its size as JSON).
        self._unsaved = deque()
        self._unsaved_bytes = 0
        self._retrying = False
        self.sessions_lost = 0
        for directory in (self.messages, root / layout.SESSIONS):
            directory.mkdir(parents=True, exist_ok=True)
        self.backlog = Backlog(clock, self.messages, flow.spool_backlog_messages,
                               flow.spool_backlog_bytes, flow.in_flow_delay)

    def has_room(self, size, limit, min_free):
        """Whether the spool's file system takes a message of *size* bytes
        (0: not said) while messages may have *limit* bytes, keeping
        *min_free* bytes free: Postfix's test at MAIL (queue_minfree)."""
        free = free_space(self.messages)
        return free > min_free and size < free - min_free and limit < free / 1.5

    def open(self, limit):
        """A new message file that keeps at most *limit* bytes."""
        message_id = self._ready.pop() if self._ready else str(uuid.uuid4())
        spool_file = SpoolFile(self.messages, message_id)
        spool_file.limit = limit
        if len(self._ready) < self._reserve // 2 and not self._refilling:
            self._refill()
        return spool_file

    def _refill(self):
        self._refilling = True

        def done(result):
            self._refilling = False
            if isinstance(result, Failure):
                log.error("spool: cannot create message files ahead: {error}",
                          error=str(result.value))
            else:
                self._ready.extend(result["ids"])

        self._disk.request(op="create", count=self._reserve - len(self._ready)
                           ).addBoth(done)

    def commit(self, spool_file, metadata):
        """End *spool_file* with *metadata*; fires once both are on disk,
        fails with the OSError that kept them from it."""
        if spool_file.error is not None:
            return defer.fail(spool_file.error)
        try:
            spool_file.complete(metadata)
        except OSError as e:
            return defer.fail(e)
        # Told before its session hears of it: the session may yet write
        # that it was never acknowledged, before the storing process can
        # read a line of ours.
        return self._commits.add(spool_file).addCallback(self._committed)

    def _committed(self, spool_file):
        self.backlog.added(spool_file.path.stem, spool_file.size)
        self._announce("message", spool_file.path.stem)
        return spool_file

    def discard(self, spool_file):
        """Forget a message that was never accepted nor worth keeping."""
        spool_file.remove()

    def unacknowledged(self, spool_file):
        """Say of a committed message that its client never got the 250
        (the connection was gone when its commit ended)."""
        try:
            write_json(spool_file.path.with_suffix(".json"),
                       attrs.evolve(spool_file.metadata, acknowledged=False).to_json())
        except OSError as e:
            log.error("spool: cannot mark message {message} unacknowledged: {error}",
                      message=spool_file.path.stem, error=str(e))

    def save_session(self, record):
        """Write the record of a finished connection.  One the disk refuses
        is kept and tried again every few seconds, while those kept take at
        most ``_UNSAVED_BYTES``; past that it is lost, and counted in
        ``sessions_lost``.  Fires when it is written or kept."""
        d = self._disk.request(op="session", record=record)
        return d.addCallbacks(lambda _: self._announce("session", record["session"]),
                              self._refused, errbackArgs=(record,))

    def _refused(self, failure, record):
        failure.trap(OSError)
        size = len(json.dumps(record))
        if self._unsaved_bytes + size > _UNSAVED_BYTES:
            self.sessions_lost += 1
            log.error("spool: session record {session} lost ({error}); {lost} lost"
                      " so far", session=record["session"], error=str(failure.value),
                      lost=self.sessions_lost)
            return
        if not self._unsaved:
            log.error("spool: cannot write session records ({error}); keeping them"
                      " in memory and trying again", error=str(failure.value))
        self._unsaved.append((record, size))
        self._unsaved_bytes += size
        if not self._retrying and self._clock is not None:
            self._retrying = True
            self._clock.callLater(_RETRY_AFTER, self._save_unsaved)

    def _save_unsaved(self):
        """Try the kept session records again, oldest first, one at a time."""
        if not self._unsaved:
            self._retrying = False
            log.info("spool: kept session records written")
            return
        record, size = self._unsaved[0]

        def written(_):
            self._unsaved.popleft()
            self._unsaved_bytes -= size
            self._announce("session", record["session"])
            self._clock.callLater(0, self._save_unsaved)

        def refused(failure):
            failure.trap(OSError)
            self._clock.callLater(_RETRY_AFTER, self._save_unsaved)

        self._disk.request(op="session", record=record).addCallbacks(written, refused)

    def _announce(self, kind, item):
        if self.ready is not None:
            self.ready.notify(kind, item)

    def recover(self, sensor):
        """After a restart: drop files created ahead and never used, and
        finish, as unacknowledged, every message a crash left unfinished.
        Its connection is unknown: it gets a session of its own, with no
        addresses, from *sensor*, received when the file was last written."""
        for path in self.messages.glob("*.eml"):
            json_path = path.with_suffix(".json")
            if read_json(json_path) is not None:
                continue
            if not path.stat().st_size:
                path.unlink()
                json_path.unlink(missing_ok=True)
                continue
            identity = Identity(str(uuid.uuid4()), sensor, "", 0, "", 0)
            metadata = Metadata(path.stem, identity, received=path.stat().st_mtime,
                                acknowledged=False, incomplete=True, recovered=True,
                                size=path.stat().st_size)
            write_json(json_path, metadata.to_json())
            log.warn("spool: kept unfinished message {message}", message=path.stem)
        for path in [*self.messages.glob("*.tmp"), *(self.root / layout.SESSIONS).glob("*.tmp")]:
            path.unlink()
        syncfs(self.messages)
        self.backlog.count()


# Spooled messages larger than this are mapped into the reader's memory.
MAPPED = 4 * 2 ** 20


def read_message(eml):
    """The spooled message *eml* (its ``.eml`` path): (raw, the
    :class:`~smtplatrine.capture.Metadata`), or None while it is
    unfinished or once it has left the spool.  *raw* is bytes, or, over
    MAPPED bytes, the file mapped read-only: a large message is read from
    the page cache as it is needed, not copied into the reader's memory
    (a small one is cheaper to read: mapping costs more than it saves)."""
    metadata = read_metadata(eml.with_suffix(".json"))
    if metadata is None:
        return None
    with open(eml, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size <= MAPPED:
            return f.read(), metadata
        return mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ), metadata


class SpoolReader:
    """The spool's reading half, in the storing process: what the spool
    under *root* holds, each item's files, and the way out for what
    cannot be stored (``quarantine/``, with a ``.reason`` beside it)."""

    def __init__(self, root):
        self._dirs = {"message": root / layout.MESSAGES, "session": root / layout.SESSIONS}
        self.quarantine = root / layout.QUARANTINE

    def finished(self):
        """(kind, id) of every finished message, then of every session
        record, each in the order of their names."""
        return ([("message", path.stem) for path in sorted(self._dirs["message"].glob("*.json"))
                 if read_json(path) is not None]
                + [("session", path.stem) for path in sorted(self._dirs["session"].glob("*.json"))])

    def eml(self, message_id):
        """The path of the raw message *message_id*."""
        return self._dirs["message"] / f"{message_id}.eml"

    def files(self, kind, item):
        """The spool files of *kind* *item*: they go once it is stored."""
        if kind == "message":
            eml = self.eml(item)
            return eml, eml.with_suffix(".json")
        return (self._dirs["session"] / f"{item}.json",)

    def session(self, session_id):
        """The session record *session_id* (a JSON object), or None."""
        return read_json(self._dirs["session"] / f"{session_id}.json")

    def quarantine_message(self, message_id, reason):
        """Move the message out of the way, saying why; its metadata (None
        if it has none)."""
        eml = self.eml(message_id)
        metadata = read_metadata(eml.with_suffix(".json"))
        for path in self.files("message", message_id):
            if path.exists():
                os.replace(path, self.quarantine / path.name)
        (self.quarantine / f"{message_id}.reason").write_text(reason + "\n", encoding="utf-8")
        return metadata

    def quarantine_session(self, session_id):
        """Move the session record out of the way."""
        [path] = self.files("session", session_id)
        os.replace(path, self.quarantine / path.name)
