"""The sandbox: hostile files opened only in short-lived processes with limits.

A *zygote* process is forked from the storing process once, at start,
before that drops its privileges and before any thread or reactor runs.
It holds every function registered (and what they loaded: libraries,
compiled YARA rules) and never opens a file itself.  For each analysis
it forks a child that limits its own address space, CPU time, open files,
file size and core dumps, closes every other descriptor, points its
output at /dev/null, runs one function on one file, writes the function's
JSON-ready answer to a pipe and ends.  The zygote kills a child that
outlives its wall-clock deadline.  A decompression bomb, a crash or a hang
in a C library thus ends one child, and its analysis answers with why
(:class:`AnalysisFailed`); never the storing process.

The storing process (each of its workers in turn) talks to the zygote
over a stream socket it hands over at start (:meth:`Sandbox.connect`):
length-prefixed JSON requests and answers, any number in flight, at most
``workers`` children at once.
"""

import json
import os
import resource
import select
import signal
import socket
import struct
import time

from twisted.internet import defer, protocol
from twisted.logger import Logger
from twisted.protocols.basic import Int32StringReceiver

from smtplatrine import zygote
from smtplatrine.child import die_with_parent

log = Logger()

# The longest answer a child may give, and a request.
MAX_ANSWER = 16 * 1024 * 1024
# What a child's end means, by how it ended.
_SIGNALS = {signal.SIGXCPU: "cpu", signal.SIGKILL: "killed", signal.SIGXFSZ: "file_size",
            signal.SIGSEGV: "crashed", signal.SIGBUS: "crashed", signal.SIGABRT: "crashed",
            signal.SIGILL: "crashed", signal.SIGFPE: "crashed"}


class AnalysisFailed(Exception):
    """One analysis ended without an answer: *code* is ``timeout`` (past
    the wall-clock deadline), ``cpu`` (past the CPU limit), ``memory``,
    ``file_size``, ``crashed`` (a signal: a bug in a C library), ``error``
    (the function raised) or ``unavailable`` (no sandbox to run it)."""

    def __init__(self, code, reason):
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


def _vm_size():
    """This process's address space in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


class Sandbox:
    """Runs registered functions on files in limited processes.

    *memory*: bytes of address space a child may add to the zygote's;
    *seconds*: CPU seconds a child may use (its wall-clock deadline is
    three times that); *files*: descriptors it may open; *file_size*: the
    largest file it may write; *workers*: children at once.
    """

    def __init__(self, memory=512 * 2**20, seconds=15.0, files=64,
                 file_size=256 * 2**20, workers=2):
        self.limits = {"memory": int(memory), "seconds": float(seconds),
                       "files": int(files), "file_size": int(file_size)}
        self.workers = workers
        self._functions = {}
        self._control = None
        self.pid = None
        self._client = None
        self._pending = {}
        self._next = 0
        # What the children used: analyses answered, CPU seconds in all,
        # the largest resident size one reached (KB, what it shares with
        # the zygote included).
        self.stats = {"analyses": 0, "cpu": 0.0, "peak_kb": 0}

    def register(self, name, function):
        """Make ``function(path, params)`` runnable as *name*; before
        :meth:`start` only (the zygote holds what exists when it forks).
        It returns something JSON can hold, or raises."""
        if self.pid is not None:
            raise RuntimeError("the sandbox has started; register before")
        self._functions[name] = function

    @property
    def needed(self):
        return bool(self._functions)

    def start(self, ids=None):
        """Fork the zygote (which becomes *ids*, a (uid, gid), if given).
        Call it while this process has no threads."""
        self._control, self.pid = zygote.fork(
            lambda control: _Zygote(control, self._functions, self.limits,
                                    self.workers).run(),
            b"smtplatrine-sbx", ids)

    def connect(self, reactor):
        """Open this process's conversation with the zygote (a worker of
        the storing process calls it once, when it starts); the one
        before, if any, ends."""
        if self._control is None:
            return
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            zygote.send(self._control, b"c", [theirs.fileno()])
        except OSError as e:
            log.error("the sandbox is gone ({error}): attachments are not analysed"
                      " until smtplatrine is restarted", error=str(e))
            return
        finally:
            theirs.close()
        mine.setblocking(False)
        factory = protocol.Factory.forProtocol(lambda: _Client(self))
        reactor.adoptStreamConnection(mine.fileno(), socket.AF_UNIX, factory)
        mine.close()

    def run(self, name, path, params=None):
        """A Deferred firing with what ``function(path, params)`` of
        *name* returned in a child, or failing with AnalysisFailed."""
        if self._client is None:
            return defer.fail(AnalysisFailed("unavailable", "the sandbox is not running"))
        self._next += 1
        number = self._next
        d = defer.Deferred(lambda _: self._pending.pop(number, None))
        self._pending[number] = d
        self._client.sendString(json.dumps(
            {"id": number, "function": name, "path": str(path),
             "params": params or {}}).encode("utf-8"))
        return d

    def stop(self):
        if self._client is not None:
            self._client.transport.loseConnection()

    def _answered(self, answer):
        self.stats["analyses"] += 1
        self.stats["cpu"] += answer.get("cpu") or 0.0
        self.stats["peak_kb"] = max(self.stats["peak_kb"], answer.get("peak_kb") or 0)
        d = self._pending.pop(answer.get("id"), None)
        if d is None:
            return
        if "error" in answer:
            d.errback(AnalysisFailed(answer["error"], answer.get("reason", "")))
        else:
            d.callback(answer.get("result"))

    def _lost(self):
        self._client = None
        pending, self._pending = self._pending, {}
        for d in pending.values():
            d.errback(AnalysisFailed("unavailable", "the sandbox connection ended"))


class _Client(Int32StringReceiver):
    MAX_LENGTH = MAX_ANSWER + 4096

    def __init__(self, sandbox):
        self.sandbox = sandbox

    def connectionMade(self):
        self.sandbox._client = self

    def stringReceived(self, data):
        try:
            answer = json.loads(data)
        except ValueError:
            log.error("the sandbox sent an answer that is not JSON; ignored")
            return
        if isinstance(answer, dict):
            self.sandbox._answered(answer)

    def lengthLimitExceeded(self, length):
        log.error("the sandbox sent an answer of {length} bytes; closing", length=length)
        self.transport.loseConnection()

    def connectionLost(self, reason):
        if self.sandbox._client is self:
            self.sandbox._lost()


class _Zygote:
    """The zygote's loop: requests in, one child per request, answers out."""

    def __init__(self, control, functions, limits, workers):
        self.control = control
        self.functions = functions
        self.limits = limits
        self.workers = workers
        self.conn = None
        self.inbox = b""
        self.queue = []
        # pid -> {"id", "pipe", "data", "deadline"}
        self.children = {}

    def run(self):
        while True:
            poller = select.poll()
            poller.register(self.control, select.POLLIN)
            if self.conn is not None:
                poller.register(self.conn, select.POLLIN)
            pipes = {c["pipe"]: pid for pid, c in self.children.items()
                     if c["pipe"] is not None}
            for fd in pipes:
                poller.register(fd, select.POLLIN)
            now = time.monotonic()
            deadline = min((c["deadline"] for c in self.children.values()), default=None)
            timeout = None if deadline is None else max(0, int((deadline - now) * 1000) + 1)
            if len(pipes) < len(self.children):
                # A child that closed its pipe but has not ended yet.
                timeout = min(timeout, 20)
            for fd, _ in poller.poll(timeout):
                if fd == self.control.fileno():
                    if not self._accept():
                        return
                elif self.conn is not None and fd == self.conn.fileno():
                    self._read_requests()
                elif fd in pipes:
                    self._read_child(pipes[fd])
            self._expire()
            self._collect()
            self._spawn()

    def _accept(self):
        """A new conversation replaces the old; False when the storing
        process has gone."""
        received = zygote.receive(self.control, 4)
        if received is None:
            return False
        _, fds = received
        if not fds:
            return True
        for fd in fds[1:]:
            os.close(fd)
        self._drop_conversation()
        self.conn = socket.socket(fileno=fds[0])
        self.conn.setblocking(False)
        return True

    def _drop_conversation(self):
        if self.conn is not None:
            self.conn.close()
        self.conn, self.inbox, self.queue = None, b"", []
        for pid in list(self.children):
            os.kill(pid, signal.SIGKILL)
            self._reap(pid, answer=False)

    def _read_requests(self):
        try:
            data = self.conn.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop_conversation()
            return
        self.inbox += data
        while len(self.inbox) >= 4:
            (length,) = struct.unpack("!I", self.inbox[:4])
            if len(self.inbox) < 4 + length:
                break
            body, self.inbox = self.inbox[4:4 + length], self.inbox[4 + length:]
            try:
                self.queue.append(json.loads(body))
            except ValueError:
                continue

    def _send(self, answer):
        if self.conn is None:
            return
        data = json.dumps(answer).encode("utf-8")
        self.conn.setblocking(True)
        try:
            self.conn.sendall(struct.pack("!I", len(data)) + data)
        except OSError:
            self._drop_conversation()
            return
        if self.conn is not None:
            self.conn.setblocking(False)

    def _spawn(self):
        while self.queue and len(self.children) < self.workers:
            request = self.queue.pop(0)
            function = self.functions.get(request.get("function"))
            if function is None:
                self._send({"id": request.get("id"), "error": "error",
                            "reason": f"no function {request.get('function')!r}"})
                continue
            read, write = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(read)
                _child(function, request.get("path"), request.get("params") or {},
                       self.limits, write)
            os.close(write)
            self.children[pid] = {"id": request.get("id"), "pipe": read, "data": [],
                                  "size": 0, "started": time.monotonic(),
                                  "deadline": time.monotonic() + 3 * self.limits["seconds"]}

    def _read_child(self, pid):
        child = self.children[pid]
        try:
            data = os.read(child["pipe"], 65536)
        except OSError:
            data = b""
        if data and child["size"] + len(data) <= MAX_ANSWER:
            child["data"].append(data)
            child["size"] += len(data)
            return
        if data:
            os.kill(pid, signal.SIGKILL)
            child["data"] = [json.dumps({"error": "error", "reason":
                                         f"answer over {MAX_ANSWER} bytes"}).encode()]
        os.close(child["pipe"])
        child["pipe"] = None
        self._collect()

    def _collect(self):
        """Answer for each child that has closed its pipe and ended."""
        for pid, child in list(self.children.items()):
            if child["pipe"] is not None:
                continue
            ended, status, usage = os.wait4(pid, os.WNOHANG)
            if ended:
                self._reap(pid, (status, usage))

    def _expire(self):
        now = time.monotonic()
        for pid, child in list(self.children.items()):
            if now >= child["deadline"]:
                os.kill(pid, signal.SIGKILL)
                child["timeout"] = True
                self._reap(pid)

    def _reap(self, pid, ended=None, answer=True):
        """Answer for the child *pid*, *ended* (status, usage) if it has
        been waited for already, else waited for now (it was killed)."""
        child = self.children.pop(pid)
        if child["pipe"] is not None:
            os.close(child["pipe"])
        _, status, usage = (None, *ended) if ended else os.wait4(pid, 0)
        if not answer:
            return
        try:
            result = json.loads(b"".join(child["data"]))
        except ValueError:
            result = None
        if child.get("timeout"):
            result = {"error": "timeout", "reason":
                      f"no answer within {3 * self.limits['seconds']:g} s"}
        elif not isinstance(result, dict):
            if os.WIFSIGNALED(status):
                number = os.WTERMSIG(status)
                code = _SIGNALS.get(number, "crashed")
                result = {"error": code, "reason": f"ended by {signal.Signals(number).name}"}
            else:
                result = {"error": "crashed", "reason":
                          f"ended with exit code {os.waitstatus_to_exitcode(status)}"
                          " and no answer"}
        result["id"] = child["id"]
        result["peak_kb"] = usage.ru_maxrss
        result["cpu"] = usage.ru_utime + usage.ru_stime
        self._send(result)


def _child(function, path, params, limits, write):
    """One analysis, in a fork of the zygote: never returns."""
    try:
        die_with_parent()
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)
        os.closerange(3, write)
        os.closerange(write + 1, 65536)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        seconds = max(1, int(limits["seconds"]))
        resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds + 1))
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits["files"], limits["files"]))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits["file_size"], limits["file_size"]))
        space = _vm_size() + limits["memory"]
        resource.setrlimit(resource.RLIMIT_AS, (space, space))
        # A little room kept aside: MemoryError must still be answered.
        reserve = bytearray(1 << 20)
        try:
            answer = {"result": function(path, params)}
        except MemoryError:
            del reserve
            answer = {"error": "memory", "reason": "over the memory limit"}
        except Exception as e:
            answer = {"error": "error", "reason": f"{e.__class__.__name__}: {e}"[:1000]}
        try:
            data = json.dumps(answer).encode("utf-8")
        except (TypeError, ValueError) as e:
            data = json.dumps({"error": "error", "reason": f"answer not JSON: {e}"}).encode()
        view = memoryview(data)
        while view:
            view = view[os.write(write, view):]
        os._exit(0)
    except BaseException:
        os._exit(3)
