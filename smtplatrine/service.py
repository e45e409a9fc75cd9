"""The services of the SMTP side, which ``twistd smtplatrine`` runs as
children of one :class:`InOrder` (see :mod:`smtplatrine.tap`): the human
log, the disk worker, the storing process (and the dashboard), the block
list, one listener per endpoint, and the privilege drop.

What needs root happens in ``privilegedStartService``, child after child:
the log file opened, the children spawned (each drops its privileges
itself), the ports bound; then the data directory is handed to the
unprivileged user and the server becomes that user, before the reactor
runs.
"""

import errno
import os
import pwd
import signal
import syslog
import time
from pathlib import Path

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService, Service
from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.logger import (FilteringLogObserver, LogLevel,
                            LogLevelFilterPredicate, Logger, formatEvent,
                            formatEventAsClassicLogText, globalLogPublisher,
                            textFileLogObserver)
from twisted.protocols.tls import TLSMemoryBIOFactory

from smtplatrine import acl, geoip, tls
from smtplatrine.privileges import drop_privileges, load_codecs

log = Logger()


def _listen_error(description, error):
    """One line for an operator whose listener cannot start."""
    code = getattr(getattr(error, "socketError", error), "errno", None)
    if code == errno.EADDRINUSE:
        why = "the address is already in use (another mail server?); free it" \
              " or choose another with --listen"
    elif code == errno.EACCES:
        why = "permission denied; ports below 1024 need root or systemd socket" \
              " activation (or use --listen tcp:2525)"
    else:
        why = str(error)
    return f"smtplatrine: cannot listen on {description}: {why}"


def address_of(port):
    """Where a listening *port* is: ``host:port`` (``[host]:port`` for
    IPv6), or the path of a Unix socket."""
    host = port.getHost()
    if not hasattr(host, "port"):
        return os.fsdecode(host.name)
    return f"[{host.host}]:{host.port}" if ":" in host.host else f"{host.host}:{host.port}"


def become(ids, data_dir, *others):
    """Give *data_dir* (and the directories *others*) to the user and group
    *ids*, then become them."""
    uid, gid = ids
    load_codecs()
    for top in (data_dir, *others):
        for root, dirs, files in os.walk(top):
            for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
                os.chown(name, uid, gid)
    drop_privileges(uid, gid)
    if not os.access(data_dir, os.R_OK | os.W_OK | os.X_OK):
        name = pwd.getpwuid(uid).pw_name
        raise SystemExit(f"smtplatrine: {name} cannot reach data_dir {data_dir}"
                         f" (a parent directory is closed to it); choose a"
                         f" data_dir that {name} can reach, or another user")
    log.info("running as uid {uid}, gid {gid}", uid=uid, gid=gid)


class _LogFile:
    """The human log file: each entry appended in one write(2).  Entries
    the disk refuses (full, say) are counted, and the count is written
    first once it takes them again."""

    def __init__(self, path):
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        self._lost = 0

    def write(self, text):
        if self._lost:
            text = formatEventAsClassicLogText({
                "log_format": "{lost} log entries could not be written",
                "lost": self._lost, "log_time": time.time(),
                "log_level": LogLevel.warn, "log_namespace": __name__}) + text
        data = text.encode("utf-8", "backslashreplace")
        try:
            written = os.write(self._fd, data)
        except OSError:
            written = 0
        self._lost = 0 if written == len(data) else self._lost + 1

    def flush(self):
        pass


class _SyslogObserver:
    def __init__(self, facility):
        self._facility = getattr(syslog, "LOG_" + facility.upper())

    def __call__(self, event):
        text = formatEvent(event)
        if text:
            syslog.syslog(self._facility | syslog.LOG_INFO, text)


class InOrder(MultiService):
    """Starts its children in the order they were added and stops them in
    the reverse order, each once the one after it has stopped."""

    def stopService(self):
        Service.stopService(self)

        async def stop():
            for child in reversed(list(self)):
                await defer.maybeDeferred(child.stopService)

        return defer.Deferred.fromCoroutine(stop())


def _after_shutdown(reactor, f):
    """Call *f* once the reactor has shut down: after the sessions still
    open, which end after the services, when the reactor closes their
    connections."""
    reactor.addSystemEventTrigger("after", "shutdown", f)


class HumanLog(Service):
    """The human log of *config* (a file, syslog), at its level."""

    def __init__(self, config, reactor):
        self._config = config
        self._reactor = reactor
        self._observers = []

    def privilegedStartService(self):
        settings = self._config.logger
        level = LogLevel.levelWithName(settings.level)
        observers = []
        if settings.file:
            observers.append(textFileLogObserver(_LogFile(self._config.data_path(settings.file))))
        if settings.syslog:
            observers.append(_SyslogObserver(settings.syslog_facility))
        self._observers = [FilteringLogObserver(o, [LogLevelFilterPredicate(level)])
                           for o in observers]
        for observer in self._observers:
            globalLogPublisher.addObserver(observer)
        super().privilegedStartService()

    def stopService(self):
        super().stopService()
        _after_shutdown(self._reactor, self._stop)

    def _stop(self):
        for observer in self._observers:
            globalLogPublisher.removeObserver(observer)


class DiskService(Service):
    """The spool's *disk* worker, started once the spool has recovered
    what a crash left unfinished (as made by *sensor*)."""

    def __init__(self, reactor, spool, disk, sensor):
        self._reactor = reactor
        self._spool, self._disk, self._sensor = spool, disk, sensor

    def privilegedStartService(self):
        self._disk.spawn()
        self._spool.recover(self._sensor)
        super().privilegedStartService()

    def stopService(self):
        """The worker ends once the sessions still open have written what
        they hold (see :func:`_after_shutdown`)."""
        super().stopService()
        _after_shutdown(self._reactor, self._disk.stop)


class ChildrenService(Service):
    """The child processes *children* (the storing process, the
    dashboard): spawned as root, configured once the server runs as the
    unprivileged user, stopped together."""

    def __init__(self, children):
        self._children = children

    def privilegedStartService(self):
        for process in self._children:
            process.spawn()
        super().privilegedStartService()

    def startService(self):
        super().startService()
        for process in self._children:
            process.configure()

    def stopService(self):
        super().stopService()
        return defer.gatherResults([process.stop() for process in self._children])


class BlockListService(Service):
    """Keeps *blocklist* current from *database* (opened again with
    back-off while it is away or has no schema yet: the storing process
    makes it), and now on SIGHUP (``smtplatrine acl add|remove``)."""

    def __init__(self, reactor, blocklist, database, max_delay):
        self._reactor = reactor
        self._blocklist, self._database, self._max_delay = blocklist, database, max_delay
        self._reopen = None
        self._sighup = None

    def startService(self):
        super().startService()
        self._open_database()
        self._blocklist.start()
        self._sighup = signal.signal(
            signal.SIGHUP, lambda *_: self._reactor.callFromThread(self._blocklist.sync))

    def _open_database(self, delay=1.0):
        def failed(_):
            self._reopen = self._reactor.callLater(
                delay, self._open_database, min(2 * delay, self._max_delay))

        self._reopen = None
        defer.Deferred.fromCoroutine(self._database.open()).addErrback(failed)

    def stopService(self):
        super().stopService()
        signal.signal(signal.SIGHUP, self._sighup)
        self._blocklist.stop()
        if self._reopen is not None and self._reopen.active():
            self._reopen.cancel()
        self._database.close()


class Listener(StreamServerEndpointService):
    """Listens on the endpoint *description* (parsed as *text*), as root;
    what keeps it from listening is one line for the operator."""

    _raiseSynchronously = True

    def __init__(self, description, endpoint, factory):
        super().__init__(endpoint, factory)
        self.description = description

    def privilegedStartService(self):
        try:
            super().privilegedStartService()
        except Exception as e:
            raise SystemExit(_listen_error(self.description, e)) from None
        self._waitingForPort.addCallback(self._listening)

    def _listening(self, port):
        """Say where it listens (the port the system chose for ``tcp:0``,
        or the one systemd handed over)."""
        log.info("listening on {endpoint} at {address}", endpoint=self.description,
                 address=address_of(port))
        return port


def listener(reactor, description, factory, cert, key, tls_options):
    """The :class:`Listener` of *description*; ``tls:ENDPOINT`` wraps any
    endpoint (``tls:systemd:...``) in implicit TLS, as ``ssl:`` does for
    TCP.  A bad endpoint is one line for the operator."""
    text = tls.endpoint_with_certificate(description, cert, key)
    if description.startswith("tls:"):
        text = description[len("tls:"):]
        factory = TLSMemoryBIOFactory(
            tls_options or tls.context_factory(cert, key), False, factory)
    try:
        endpoint = serverFromString(reactor, text)
    except Exception as e:
        raise SystemExit(
            f"smtplatrine: bad endpoint {description!r}: {e}; examples:"
            f" tcp:2525, tcp:25:interface=192.0.2.1, ssl:465") from None
    return Listener(description, endpoint, factory)


class PrivilegeDrop(Service):
    """Hands the directories *owned* to the user and group *ids* and
    becomes them: the last thing done as root."""

    def __init__(self, ids, owned):
        self._ids, self._owned = ids, owned

    def privilegedStartService(self):
        become(self._ids, *self._owned)
        super().privilegedStartService()


def tls_options(config, directory):
    """The certificate and key paths of *config* (made in *directory* if
    none is set), and the TLS options (None when STARTTLS is off)."""
    server = config.server
    if server.tls_certificate:
        cert, key = Path(server.tls_certificate), Path(server.tls_private_key)
    else:
        cert, key = tls.self_signed(server.hostname, directory)
    try:
        options = tls.context_factory(cert, key)
    except Exception as e:
        raise SystemExit(
            f"smtplatrine: cannot use TLS certificate {cert} with key {key}:"
            f" {e}; fix [server] tls_certificate and tls_private_key") from None
    return cert, key, options if config.smtp_features.starttls else None


def guard(config, reactor):
    """The gate of the listeners."""
    # A missing file matters only once a country is on the list (the
    # block list says so then); the enrichers report it themselves.
    path = config.meta.geoip_main_file
    reader = (geoip.open_database(path, "geoip_main_file")
              if config.meta.geoip_enable and Path(path).exists() else None)
    return acl.Guard(config.protection, config.smart_acl, reactor, reader)
