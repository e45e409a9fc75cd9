"""Child processes of the server (disk worker, storing, dashboard): how
the server starts one, talks to it and stops it (:class:`Child`); for
the storing process and the dashboard, how the server hands over the
configuration and logs what the child logs (:class:`ChildProcess`), and
what the child does to take its configuration, send its log back and keep
a worker running (:func:`main`).

A child is ``python -m MODULE [UID GID]``, started before the server drops
its privileges.  It gets the pickled configuration on file descriptor 3,
prepares everything it needs as root, drops its privileges, then runs its
worker in a fork, started again with back-off each time it dies.  Its log
events come back as JSON lines on its output, and the server logs them as
its own; closing its input asks it to end.
"""

import ctypes
import os
import pickle
import select
import signal
import sys
import time

from twisted.internet import defer, protocol, stdio
from twisted.logger import (FilteringLogObserver, Logger, LogLevel,
                            LogLevelFilterPredicate, eventFromJSON,
                            globalLogBeginner, globalLogPublisher,
                            jsonFileLogObserver)

from smtplatrine import privileges
from smtplatrine.events import printable

log = Logger()

# Exit status of a child that can never start with this configuration.
FATAL = 3
_PR_SET_PDEATHSIG = 1


class Child(protocol.ProcessProtocol):
    """A child process of the server: ``python -m`` *module* *args*,
    started by :meth:`spawn` before the server drops its privileges (the
    child drops them itself), told what to do on its input, heard line by
    line on its output (:meth:`lineReceived`), and asked to end by closing
    its input (:meth:`stop`).  *fds* are more of its file descriptors, as
    ``spawnProcess``'s ``childFDs`` names them."""

    # Seconds it may take to end once asked, before it is killed (None: no limit).
    STOP_SECONDS = None

    def __init__(self, reactor, module, args=(), fds=None):
        self._reactor = reactor
        self._module, self._args, self._fds = module, [str(a) for a in args], fds or {}
        self._buffer = b""
        self._stopping = False
        self._kill = None
        self._ended = defer.Deferred()

    def spawn(self):
        """Start the process."""
        args = [sys.executable, "-m", self._module, *self._args]
        # The child imports our modules from wherever the server found them,
        # and takes none of the sockets systemd handed the server.
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        for name in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
            env.pop(name, None)
        self._reactor.spawnProcess(self, sys.executable, args, env=env,
                                   childFDs={0: "w", 1: "r", 2: 2, **self._fds})

    def outReceived(self, data):
        *lines, self._buffer = (self._buffer + data).split(b"\n")
        for line in lines:
            self.lineReceived(line)

    def lineReceived(self, line):
        """A line of the process's output."""
        raise NotImplementedError

    def processEnded(self, reason):
        self._ended.callback(None)
        if self._kill is not None and self._kill.active():
            self._kill.cancel()
        if not self._stopping:
            self.endedUnasked(reason)

    def endedUnasked(self, reason):
        """The process ended before :meth:`stop` asked it to, for *reason*."""

    def stop(self):
        """Let the process end (it ends at the end of its input, once its
        work is done); fires when it has, killing it after
        ``STOP_SECONDS``."""
        self._stopping = True
        if self._ended.called or self.transport is None:
            return defer.succeed(None)
        self.transport.closeStdin()
        if self.STOP_SECONDS is not None:
            self._kill = self._reactor.callLater(
                self.STOP_SECONDS, lambda: self.transport.signalProcess("KILL"))
        return self._ended


class ChildProcess(Child):
    """Runs ``python -m`` *module* (*name* in the log) for *config*, as
    *ids* (a (uid, gid), or None to stay who we are), with the program of
    :func:`main`.  The child starts its worker again when the worker ends
    unasked; should the child end itself, the server logs it (and stops,
    if it cannot ever start)."""

    STOP_SECONDS = 10

    def __init__(self, reactor, config, ids, module, name, consequence=""):
        super().__init__(reactor, module, ids or (), {3: "w"})
        self._config = pickle.dumps(config)
        self._name, self._consequence = name, consequence

    def configure(self):
        """Hand the process its configuration: it builds everything and
        starts (the server calls this once the data directory is the
        unprivileged user's)."""
        if not self._ended.called:
            self.transport.writeToChild(3, self._config)
            self.transport.closeChildFD(3)

    def lineReceived(self, line):
        """A log event of the process: logged as the server's own."""
        try:
            event = eventFromJSON(line.strip(b"\x1e").decode("utf-8"))
        except ValueError:
            log.warn("{name} printed {line}", name=self._name, line=printable(line))
            return
        globalLogPublisher(event)

    def endedUnasked(self, reason):
        if reason.value.exitCode == FATAL:
            log.critical("smtplatrine: {name} cannot start (see above); stopping",
                         name=self._name)
            self._reactor.stop()
        else:
            log.error("{name} ended ({reason}){consequence}", name=self._name,
                      reason=str(reason.value), consequence=self._consequence)


def ignore_group_signals():
    """Leave SIGTERM and SIGINT to the server: a signal to the whole
    process group must not end a child before its work is done (the
    server asks it to end by closing its input)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def take_configuration():
    """In the child: the configuration the server sends on file descriptor
    3 (None if the server ended before sending it), with the log going back
    to the server from then on and the signals of the process group
    ignored (the server asks the child to end by closing its input)."""
    chunks = []
    while chunk := os.read(3, 65536):
        chunks.append(chunk)
    os.close(3)
    if not chunks:
        return None
    config = pickle.loads(b"".join(chunks))
    level = LogLevel.levelWithName(config.logger.level)
    globalLogBeginner.beginLoggingTo([FilteringLogObserver(
        jsonFileLogObserver(sys.stdout), [LogLevelFilterPredicate(level)])],
        redirectStandardIO=False)
    ignore_group_signals()
    return config


def die_with_parent():
    """SIGKILL when the parent ends (a privilege drop clears this)."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _input_ended(seconds):
    """Wait up to *seconds* for the server to close our input; whether it
    did (what it sent meanwhile, the next worker's scan finds)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if select.select([0], [], [], left)[0]:
            try:
                if not os.read(0, 65536):
                    return True
            except BlockingIOError:
                pass
    return False


def supervise(work, name, max_delay, consequence="", ended=None):
    """Run ``work()`` in a fork of this process, and again, after 1 s
    doubling up to *max_delay*, each time it ends unasked (``ended(pid)``
    is told each time one ends).  A fork, not a new program: everything is
    loaded already, and the Python library may be out of reach now."""
    die_with_parent()
    if os.getppid() == 1:
        return
    delay = 0.0
    while True:
        started, parent = time.monotonic(), os.getpid()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                die_with_parent()
                if os.getppid() == parent:
                    work()
                code = 0
            except BaseException:
                log.failure("{name} failed", name=name)
            finally:
                sys.stdout.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        if ended is not None:
            ended(pid)
        if os.waitstatus_to_exitcode(status) == 0:
            return
        if time.monotonic() - started >= max_delay:
            delay = 0.0
        delay = min(max(1.0, delay * 2), max_delay)
        how = (f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status)
               else f"exit code {os.WEXITSTATUS(status)}")
        log.error("{name} {pid} ended ({how}){consequence}; starting it again in"
                  " {delay:.0f} s", name=name, pid=pid, how=how, delay=delay,
                  consequence=consequence)
        if _input_ended(delay):
            return


def main(argv, name, prepare, consequence="", ended=None):
    """The child's program: take the configuration, ``prepare(config,
    reactor, ids)`` its worker while root (bind, open files, import what it
    needs), become the user and group *argv* names (if any), then
    :func:`supervise` the worker.  The worker has ``start()``, ``stop()``
    and ``commands(ended)``: the protocol of the server's lines on standard
    input, which calls *ended* when the server closes it."""
    # poll(2) keeps no state in the kernel, so each fork of this process
    # gets a reactor of its own (a shared epoll set would not be).
    from twisted.internet import pollreactor
    pollreactor.install()
    from twisted.internet import reactor

    config = take_configuration()
    if config is None:
        return  # the server ended before it could start
    try:
        privileges.load_codecs()
        ids = (int(argv[0]), int(argv[1])) if argv else None
        worker = prepare(config, reactor, ids)
        if ids:
            privileges.drop_privileges(*ids)
    except SystemExit as e:
        log.critical("{message}", message=str(e))
        sys.exit(FATAL)
    except Exception:
        log.failure("smtplatrine: cannot prepare {name}", name=name)
        sys.exit(FATAL)
    supervise(lambda: _work(worker, reactor), name, config.store.retry_max_delay,
              consequence, ended)


def _work(worker, reactor):
    """The worker: run until the server closes our input."""
    stdio.StandardIO(worker.commands(reactor.stop), reactor=reactor)
    reactor.callWhenRunning(worker.start)
    reactor.addSystemEventTrigger("before", "shutdown", worker.stop)
    reactor.run(installSignalHandlers=False)
