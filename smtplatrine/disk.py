"""The spool's disk work, done where the reactor never waits for it.

Creating files and syncing the file system can each wait milliseconds on the
journal; in a thread of ours that work would also fight the reactor for the
GIL.  So a small child process does it (:class:`DiskWorker`): the reactor
sends it one JSON line per request and reads one JSON line per answer, in
order.  :class:`LocalDisk` does the same work in-process and at once, for
tests and for start-up.

Run as ``python -m smtplatrine.disk SPOOL_DIR [UID GID]`` (see
:mod:`smtplatrine.child`): it is started before the server drops its
privileges and drops them itself, as every process does
(:mod:`smtplatrine.privileges`).
"""

import codecs
import ctypes
import json
import os
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from twisted.internet import defer
from twisted.logger import Logger

from smtplatrine import child, layout, privileges

log = Logger()
_libc = ctypes.CDLL(None, use_errno=True)


def syncfs(path):
    """syncfs(2): everything written to the file system of *path* is on disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _libc.syncfs(fd) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
    finally:
        os.close(fd)


def write_json(path, record):
    """Write *record* to *path* whole or not at all."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, sort_keys=True) + "\n", encoding="ascii")
    os.rename(tmp, path)


def _create(root, count):
    """Create *count* empty message files (``ID.eml`` and ``ID.json``); the IDs."""
    ids = [str(uuid.uuid4()) for _ in range(count)]
    for message_id in ids:
        for suffix in (".eml", ".json"):
            os.close(os.open(root / layout.MESSAGES / (message_id + suffix),
                             os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640))
    return ids


def _perform(root, request):
    """Do one request; what to answer."""
    if request["op"] == "create":
        return {"ids": _create(root, request["count"])}
    if request["op"] == "sync":
        syncfs(root / layout.MESSAGES)
    elif request["op"] == "session":
        write_json(root / layout.SESSIONS / f"{request['record']['session']}.json",
                   request["record"])
    return {}


class LocalDisk:
    """The disk work done in this process, at once: Deferreds already fired."""

    def __init__(self, root):
        self.root = Path(root)

    def request(self, **request):
        return defer.maybeDeferred(_perform, self.root, request)


class DiskWorker(child.Child):
    """The disk work done by a child process (as *ids*, a (uid, gid), or
    None to stay who we are), once :meth:`spawn` has started it;
    ``request`` fires with its answer.  The child works on several
    requests at once (a sync need not wait behind file creation), so
    answers carry the request's number."""

    def __init__(self, reactor, root, ids=None):
        super().__init__(reactor, "smtplatrine.disk", [root, *(ids or ())])
        self._waiting = {}
        self._next = 0

    def request(self, **request):
        if self.transport is None or self.transport.pid is None:
            return defer.fail(OSError(0, "the disk worker has stopped"))
        self._next += 1
        d = self._waiting[self._next] = defer.Deferred()
        self.transport.write(json.dumps(dict(request, id=self._next)).encode() + b"\n")
        return d

    def lineReceived(self, line):
        answer = json.loads(line)
        d = self._waiting.pop(answer["id"])
        if "errno" in answer:
            d.errback(OSError(answer["errno"], answer["error"]))
        else:
            d.callback(answer)

    def processEnded(self, reason):
        waiting, self._waiting = self._waiting, {}
        for d in waiting.values():
            d.errback(OSError(0, "the disk worker ended"))
        super().processEnded(reason)

    def endedUnasked(self, reason):
        log.error("the disk worker ended: {reason}", reason=reason.value)


def main(argv):
    root = Path(argv[0])
    # Load the codecs now: after the drop, the Python library may be unreadable.
    codecs.lookup("ascii")
    codecs.lookup("utf-8")
    child.ignore_group_signals()
    if len(argv) == 3:
        privileges.drop_privileges(int(argv[1]), int(argv[2]))
    lock = threading.Lock()

    def answer(request):
        try:
            reply = _perform(root, request)
        except Exception as e:
            reply = {"errno": getattr(e, "errno", None) or 0,
                     "error": getattr(e, "strerror", None) or str(e)}
        with lock:
            sys.stdout.write(json.dumps(dict(reply, id=request["id"])) + "\n")
            sys.stdout.flush()

    with ThreadPoolExecutor(4) as pool:
        for line in sys.stdin:
            if not line.endswith("\n"):
                break  # the server ended in the middle of a request
            pool.submit(answer, json.loads(line))


if __name__ == "__main__":
    main(sys.argv[1:])
