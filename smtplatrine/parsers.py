"""The parse workers: processes that read spooled messages, parse them
and write their files, so that parsing takes every core while one process
writes the database.

Parsing is CPU in Python: in the storing process's threads the GIL would
leave it one core, and a message that crashes or hangs the parser would
take the storing process with it.  A zygote (:mod:`smtplatrine.zygote`,
named ``smtplatrine-par``) is forked at start, before the privilege drop
and before any thread; for each worker the storing process asks for, it
forks one that serves a stream socket handed over with the request.  A
request is the path of a spooled message (and, for a message whose parse
ended its worker, the reason to store it unparsed); the worker runs
:func:`smtplatrine.pipeline.prepare` on it (reading the file, parsing,
writing the attachments and the raw message by SHA-256) and answers with
the :class:`~smtplatrine.capture.Prepared` record, pickled: its
attachments without their payloads (on disk by then), the raw message
only when the database keeps it.  Frames are an 8-byte length and the
bytes.

A worker that ends while it parses a message (killed, crashed), or that
outlives its deadline (three times ``parse_seconds``: it is killed), costs
that message its parse only: a fresh worker stores it unparsed, flagged
``parse_failed`` with why (:func:`smtplatrine.pipeline.prepare_unparsed`),
and a new worker replaces the lost one.  Nothing leaves the spool here:
the pipeline removes a message once its group's commit is durable.
"""

import os
import pickle
import select
import signal
import socket
import struct
from collections import deque
from pathlib import Path

import attrs
from twisted.internet import defer, protocol
from twisted.logger import Logger

from smtplatrine import zygote
from smtplatrine.child import die_with_parent
from smtplatrine.pipeline import prepare, prepare_unparsed
from smtplatrine.store.dialects import Unavailable

log = Logger()

_HEADER = struct.Struct("!Q")
NAME = b"smtplatrine-par"


def worker_count(setting):
    """The workers ``[store] parse_workers`` asks for: a number, or one
    per CPU this process may run on (``auto``)."""
    return len(os.sched_getaffinity(0)) if setting == "auto" else int(setting)


class ParseWorkers:
    """*count* parse workers, run by a zygote forked by :meth:`start`;
    messages are parsed with *limits*, their attachments written under
    *attachments_dir* and the raw message in *raw_store* if it goes on
    disk (:class:`~smtplatrine.layout.RawStore`; else it comes back in the
    record)."""

    def __init__(self, count, limits, attachments_dir, raw_store):
        self.count = count
        self.seconds = 3 * limits.seconds
        self._job = (limits, attachments_dir, raw_store)
        self._control = None
        self.pid = None
        self._reactor = None
        self._workers = []
        self._queue = deque()  # (eml, reason, Deferred) waiting for a worker
        self._stopping = False

    def start(self, ids=None):
        """Fork the zygote (which becomes *ids*, a (uid, gid), if given);
        call it while this process has no threads and can read everything."""
        self._control, self.pid = zygote.fork(
            lambda control: _Zygote(control, self._job).run(), NAME, ids, output=True)

    def connect(self, reactor):
        """Start the workers of this process (each worker of the storing
        process calls it once, when it starts); those of the one before, if
        any, are killed."""
        self._reactor = reactor
        self._stopping = False
        log.info("parsing in {count} worker process(es)", count=self.count)
        self._add(self.count, b"c")

    def _add(self, count, tag):
        pairs = [socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(count)]
        try:
            zygote.send(self._control, tag, [theirs.fileno() for _, theirs in pairs])
        except OSError as e:
            log.error("the parse workers' zygote is gone ({error}): captured mail stays"
                      " in the spool until smtplatrine is restarted", error=str(e))
            for pair in pairs:
                for end in pair:
                    end.close()
            return
        for mine, theirs in pairs:
            theirs.close()
            mine.setblocking(False)
            factory = protocol.Factory.forProtocol(lambda: _Worker(self))
            self._reactor.adoptStreamConnection(mine.fileno(), socket.AF_UNIX, factory)
            mine.close()

    def prepare(self, eml):
        """A Deferred of :func:`~smtplatrine.pipeline.prepare` of the
        spooled message *eml*, run in a worker (or its failure: OSError
        and the like as prepare raises them, Unavailable when there are no
        workers)."""
        d = defer.Deferred()
        self._queue.append((eml, None, d))
        self._dispatch()
        return d

    def _dispatch(self):
        idle = [w for w in self._workers if w.pid is not None and w.job is None]
        while self._queue and idle:
            idle.pop().send(self._queue.popleft())
        if self._queue and not self._workers:
            queued, self._queue = self._queue, deque()
            for _, _, d in queued:
                d.errback(Unavailable("no parse worker is running"))

    def _connected(self, worker):
        self._workers.append(worker)

    def _lost(self, worker, why):
        """*worker* ended: its message, if any, is stored unparsed; a new
        worker replaces it."""
        if worker in self._workers:
            self._workers.remove(worker)
        if self._stopping:
            return
        if worker.job is not None:
            eml, reason, d = worker.job
            if reason is None:
                message = eml.stem
                log.error("parse worker {pid} {why} while it parsed message {message};"
                          " it is stored unparsed, flagged parse_failed, and a new worker"
                          " replaces it", pid=worker.pid, why=why, message=message)
                self._queue.appendleft((eml, f"the parse worker {why}", d))
            else:
                d.errback(RuntimeError(f"the parse worker {why} (storing it unparsed)"))
        elif worker.pid is None:
            # It could not even start: try again in a while, not at once.
            log.error("a parse worker ended as it started; trying again in 1 s")
            self._reactor.callLater(1, self._add, 1, b"w")
            self._dispatch()
            return
        else:
            log.error("parse worker {pid} {why}; a new worker replaces it",
                      pid=worker.pid, why=why)
        self._add(1, b"w")
        self._dispatch()

    def kill(self, pid):
        """Ask the zygote to kill its worker *pid*; False if it is gone."""
        try:
            zygote.send(self._control, b"k%d" % pid)
        except OSError:
            return False
        return True

    def stop(self):
        self._stopping = True
        for worker in list(self._workers):
            worker.transport.loseConnection()


class _Worker(protocol.Protocol):
    """The storing process's end of one worker's socket: its pid first,
    then one answer per request."""

    def __init__(self, workers):
        self.workers = workers
        self.pid = None
        self.job = None
        self._buffer = bytearray()
        self._deadline = None
        self._expired = False

    def connectionMade(self):
        self.workers._connected(self)

    def send(self, job):
        self.job = job
        eml, reason, _ = job
        self.transport.write(_frame(pickle.dumps((str(eml), reason))))
        self._deadline = self.workers._reactor.callLater(self.workers.seconds, self._late)

    def _late(self):
        self._expired = True
        if not self.workers.kill(self.pid):
            self.transport.abortConnection()

    def dataReceived(self, data):
        self._buffer += data
        while len(self._buffer) >= _HEADER.size:
            (length,) = _HEADER.unpack_from(self._buffer)
            end = _HEADER.size + length
            if len(self._buffer) < end:
                return
            try:
                with memoryview(self._buffer) as view, view[_HEADER.size:end] as frame:
                    message = pickle.loads(frame)
            except Exception:
                log.failure("parse worker {pid} sent what cannot be read", pid=self.pid)
                self.transport.abortConnection()
                return
            del self._buffer[:end]
            self._received(message)

    def _received(self, message):
        if self.pid is None:
            self.pid = message
            self.workers._dispatch()
            return
        self._deadline.cancel()
        (_, _, d), self.job = self.job, None
        ok, value = message
        if ok:
            d.callback(value)
        else:
            d.errback(value)
        self.workers._dispatch()

    def connectionLost(self, reason):
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        why = (f"was killed after {self.workers.seconds:g} s" if self._expired
               else "ended")
        self.workers._lost(self, why)


def _frame(data):
    return _HEADER.pack(len(data)) + data


class _Zygote:
    """The zygote's loop: a worker forked for each socket handed over
    (``c``: those of a new storing worker, the old ones killed; ``w``: one
    more), a worker killed on request (``k`` and its pid)."""

    def __init__(self, control, job):
        self.control = control
        self.job = job
        self.workers = set()

    def run(self):
        poller = select.poll()
        poller.register(self.control, select.POLLIN)
        while True:
            if poller.poll(1000):
                received = zygote.receive(self.control)
                if received is None:
                    return
                self._request(*received)
            self._reap()

    def _request(self, tag, fds):
        if tag == b"c":
            for pid in self.workers:
                os.kill(pid, signal.SIGKILL)
        if tag in (b"c", b"w"):
            for fd in fds:
                self.workers.add(self._fork(fd))
        elif tag.startswith(b"k") and int(tag[1:]) in self.workers:
            os.kill(int(tag[1:]), signal.SIGKILL)
        for fd in fds:
            os.close(fd)

    def _fork(self, fd):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                _serve(fd, self.job)
                code = 0
            finally:
                os._exit(code)
        return pid

    def _reap(self):
        while self.workers:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                pid = None
            if not pid:
                return
            self.workers.discard(pid)


def _serve(fd, job):
    """A worker: answer each request on the socket *fd* until it ends."""
    die_with_parent()
    os.closerange(3, fd)
    os.closerange(fd + 1, 65536)
    connection = socket.socket(fileno=fd)
    connection.setblocking(True)
    connection.sendall(_frame(pickle.dumps(os.getpid())))
    while (request := _read_frame(connection)) is not None:
        path, reason = pickle.loads(request)
        try:
            answer = (True, _prepared(Path(path), reason, *job))
        except Exception as e:
            answer = (False, e)
        _answer(connection, answer)


def _prepared(eml, reason, limits, attachments_dir, raw_store):
    """The spooled message *eml* prepared (unparsed, for *reason*, if it
    is not None), without its attachments' bytes; the message's mapping
    is gone by the time it returns, so that its file can go too."""
    prepared = (prepare(eml, limits, attachments_dir, raw_store) if reason is None
                else prepare_unparsed(eml, reason, raw_store))
    return prepared and _without_payloads(prepared)


def _answer(connection, answer):
    """Send *answer*, pickled (an exception that cannot be, as its repr)."""
    try:
        data = pickle.dumps(answer)
    except Exception:
        data = pickle.dumps((False, RuntimeError(repr(answer[1]))))
    # One call (and one wake-up of the storing worker) for most answers.
    header = _HEADER.pack(len(data))
    sent = connection.sendmsg([header, data])
    if sent < len(header):
        connection.sendall(header[sent:])
        sent = len(header)
    connection.sendall(memoryview(data)[sent - len(header):])


def _without_payloads(prepared):
    """*prepared* without its attachments' bytes: they are on disk, and
    nothing after the parse reads them."""
    parsed = prepared.parsed
    return attrs.evolve(prepared, parsed=attrs.evolve(parsed, attachments=tuple(
        attrs.evolve(a, payload=b"") for a in parsed.attachments)))


def _read_frame(connection):
    """The next frame on *connection*, or None at its end."""
    header = _read(connection, _HEADER.size)
    if header is None:
        return None
    return _read(connection, _HEADER.unpack(header)[0])


def _read(connection, size):
    data = bytearray(size)
    view = memoryview(data)
    while view:
        got = connection.recv_into(view)
        if not got:
            return None
        view = view[got:]
    return data
