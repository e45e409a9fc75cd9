"""The durable spool: the hand-off between the SMTP engine and the store.

Layout under the spool directory::

    tmp/                 messages being received (never read by consumers)
    messages/ID.eml      the raw message, byte-exact after dot-unstuffing
    messages/ID.json     its metadata; written last, so it marks the pair
                         complete: consumers take a message only when its
                         .json exists
    sessions/SID.json    one record per connection, written when it closes

A message's metadata says whether the client was told it was accepted
(``acknowledged``), and flags what is not whole (``truncated`` when it was
over the size limit, ``incomplete`` when the connection dropped mid-DATA).
Acknowledged messages are on disk before the reply: the file is fsync'd,
renamed into ``messages/`` and the directory fsync'd first.  Commits are
grouped: while one group is being synced the next one collects, so that one
directory fsync serves many messages.

At start-up, whatever ``tmp/`` still holds was never acknowledged; it is
moved into ``messages/`` flagged incomplete, so that nothing is lost.
"""

import hashlib
import json
import os
from pathlib import Path

from twisted.internet import defer
from twisted.logger import Logger

log = Logger()


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json(path, record, sync):
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="ascii") as f:
        json.dump(record, f, sort_keys=True)
        if sync:
            f.flush()
            os.fsync(f.fileno())
    os.rename(tmp, path)


class SpoolFile:
    """A message being received: raw bytes go to ``tmp/`` as they arrive."""

    def __init__(self, path, limit):
        self.path = path
        self.limit = limit
        self.size = 0
        self.truncated = False
        self._sha256 = hashlib.sha256()
        self._file = open(path, "wb")

    def write(self, data):
        """Append *data*, keeping at most ``limit`` bytes in all."""
        room = self.limit - self.size
        if len(data) > room:
            self.truncated = True
            data = data[:room]
        if data:
            self._file.write(data)
            self._sha256.update(data)
            self.size += len(data)

    @property
    def sha256(self):
        return self._sha256.hexdigest()


class Spool:
    """Durable spool directory; I/O that waits on the disk runs in *run*.

    *run(f, *args)* calls ``f(*args)`` away from the reactor thread and
    returns a Deferred, as ``deferToThread`` does (tests pass a synchronous
    one).
    """

    def __init__(self, root, run):
        self.root = Path(root)
        self._run = run
        self._pending = []
        self._syncing = False
        for name in ("tmp", "messages", "sessions"):
            (self.root / name).mkdir(parents=True, exist_ok=True)

    def open(self, message_id, limit):
        return SpoolFile(self.root / "tmp" / f"{message_id}.eml", limit)

    def commit(self, spool_file, metadata):
        """Make *spool_file* durable with *metadata*; fires when it is."""
        d = defer.Deferred()
        self._pending.append((spool_file, metadata, d))
        if not self._syncing:
            self._sync_next()
        return d

    def _sync_next(self):
        group, self._pending = self._pending, []
        if not group:
            self._syncing = False
            return
        self._syncing = True

        def fire(outcomes):
            for (spool_file, _, d), error in zip(group, outcomes):
                if error is None:
                    d.callback(spool_file)
                else:
                    d.errback(error)
            self._sync_next()

        def failed(failure):
            return [failure] * len(group)

        self._run(self._sync_group, group).addErrback(failed).addCallback(fire)

    def _sync_group(self, group):
        """Sync each file of *group*, then the directory once; the errors."""
        outcomes = []
        for spool_file, metadata, _ in group:
            try:
                self._sync_one(spool_file, metadata)
                outcomes.append(None)
            except OSError as e:
                outcomes.append(e)
        _fsync_dir(self.root / "messages")
        return outcomes

    def _sync_one(self, spool_file, metadata):
        f = spool_file._file
        try:
            f.flush()
            os.fsync(f.fileno())
        finally:
            f.close()
        target = self.root / "messages" / spool_file.path.name
        metadata = dict(metadata, size=spool_file.size, sha256=spool_file.sha256,
                        truncated=spool_file.truncated)
        os.rename(spool_file.path, target)
        _write_json(target.with_suffix(".json"), metadata, sync=True)

    def discard(self, spool_file):
        """Forget a message that was never accepted nor worth keeping."""
        spool_file._file.close()
        spool_file.path.unlink(missing_ok=True)

    def save_session(self, record):
        """Write the record of a finished connection."""
        path = self.root / "sessions" / f"{record['session']}.json"
        return self._run(_write_json, path, record, False)

    def recover(self):
        """Flag and keep what a crash left unfinished; drop temporary files.

        An ``.eml`` in ``tmp/``, or one in ``messages/`` without its
        ``.json``, was never acknowledged: it gets a metadata file saying so.
        """
        messages = self.root / "messages"
        for path in (self.root / "tmp").glob("*.eml"):
            os.rename(path, messages / path.name)
        for path in messages.glob("*.eml"):
            if not path.with_suffix(".json").exists():
                metadata = {"message": path.stem, "acknowledged": False,
                            "incomplete": True, "recovered": True,
                            "size": path.stat().st_size}
                _write_json(path.with_suffix(".json"), metadata, sync=True)
                log.warn("spool: kept unfinished message {message}",
                         message=path.stem)
        for directory in ("tmp", "messages", "sessions"):
            for path in (self.root / directory).glob("*.tmp"):
                path.unlink()
