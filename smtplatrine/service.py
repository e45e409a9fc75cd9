"""The running honeypot: data directory, TLS, spool, outputs, listeners.

Everything that needs root happens in ``privilegedStartService``: binding
the ports, then handing the data directory to the unprivileged user and
becoming that user, before the reactor runs.
"""

import errno
import os
import pwd
import signal
import syslog
import time
from pathlib import Path

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.logger import (FilteringLogObserver, LogLevel,
                            LogLevelFilterPredicate, Logger, formatEvent,
                            formatEventAsClassicLogText, globalLogPublisher,
                            textFileLogObserver)
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure

from smtplatrine import acl, child, geoip, metrics, safety, storer, tls
from smtplatrine.blocklist import BlockList
from smtplatrine.disk import DiskWorker
from smtplatrine.capture import Identity
from smtplatrine.events import Events
from smtplatrine.layout import DataDir
from smtplatrine.persona import PERSONAS
from smtplatrine.privileges import drop_privileges, load_codecs, unprivileged_ids
from smtplatrine.smtp.factory import HoneypotFactory
from smtplatrine.spool import Spool
from smtplatrine.store import dialects
from smtplatrine.store.database import Database

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


class HoneypotService(Service):
    """Runs one sensor with *config*, listening on *listen* endpoint strings."""

    def __init__(self, config, listen, reactor):
        self.config = config
        self.listen = listen
        self.reactor = reactor
        self.ports = []
        self.observers = []

    def privilegedStartService(self):
        config = self.config
        safety.check(config)
        ids = unprivileged_ids(config.non_privileged.user, config.non_privileged.group)
        data_dir = DataDir.of(config)
        data_dir.make()
        self._start_logging()
        cert, key, tls_options = self._tls(data_dir.tls)
        spool_dir = data_dir.spool
        self.disk = DiskWorker(self.reactor, spool_dir, ids)
        self.disk.spawn()
        spool = Spool(spool_dir, self.disk, self.reactor)
        spool.recover(config.server.sensor_name)
        data_dir.make_stores()
        counting = metrics.prepare(config)
        self._prepare_storing(spool, ids)
        self.events = Events(self.reactor, [self.storer, *([metrics.EventMetrics()]
                                                          if counting else [])],
                             LogLevel.levelWithName(config.logger.level))
        self.reactor.addSystemEventTrigger("after", "shutdown", self._after_shutdown)
        self.factory = HoneypotFactory(
            config, PERSONAS[config.smtp.persona], self.reactor, spool,
            self.events, tls_options, self._guard())
        for description in self.listen:
            self._listen(description, cert, key, tls_options)
        for process in self.children:
            process.spawn()
        if ids is not None:
            become(ids, *data_dir.owned)
        super().privilegedStartService()

    def _guard(self):
        """The gate of the listeners, and what keeps its block list current."""
        config = self.config
        # A missing file matters only once a country is on the list (the
        # block list says so then); the enrichers report it themselves.
        path = config.meta.geoip_main_file
        reader = (geoip.open_database(path, "geoip_main_file")
                  if config.meta.geoip_enable and Path(path).exists() else None)
        guard = acl.Guard(config.protection, config.smart_acl, self.reactor, reader)
        self.blocklist = BlockList(guard, self.database, config.server.sensor_name,
                                   self.reactor, config.protection.acl_reload_interval)
        return guard

    def _prepare_storing(self, spool, ids):
        """The storing process (started once the listeners are), fed by
        *spool*; and the database of the block list (the storing process
        creates and upgrades the schema)."""
        config = self.config
        dialect = dialects.from_config(config)
        self.database = Database(dialect, create=False)
        self.storer = storer.StoringProcess(self.reactor, config, ids, self._events_lost)
        spool.ready = self.storer
        self.children = [self.storer]
        if config.web.enabled:
            self.children.append(child.ChildProcess(
                self.reactor, config, ids, "smtplatrine.web.process", "the dashboard",
                " (the SMTP side goes on)"))

    def _events_lost(self, count):
        """Say that *count* events could not reach the outputs (to them too)."""
        self.events.emit("smtplatrine.events.lost",
                         Identity(sensor=self.config.server.sensor_name), count=count, reason="the storing process did not take them"
                         " in time (busy, or starting again)")

    def _open_database(self, delay=1.0):
        """Open the block list's database, trying again after *delay*
        seconds, doubling, while it is away or has no schema yet (the
        storing process says why)."""
        def failed(_):
            self._reopen = self.reactor.callLater(
                delay, self._open_database, min(2 * delay, self.config.store.retry_max_delay))

        self._reopen = None
        defer.Deferred.fromCoroutine(self.database.open()).addErrback(failed)

    def _tls(self, directory):
        """The certificate and key paths, and the TLS options (None when
        STARTTLS is off)."""
        server = self.config.server
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
        return cert, key, options if self.config.smtp_features.starttls else None

    def _listen(self, description, cert, key, tls_options):
        """Listen on *description*; ``tls:ENDPOINT`` wraps any endpoint
        (``tls:systemd:...``) in implicit TLS, as ``ssl:`` does for TCP."""
        factory = self.factory
        endpoint_text = tls.endpoint_with_certificate(description, cert, key)
        if description.startswith("tls:"):
            endpoint_text = description[len("tls:"):]
            factory = TLSMemoryBIOFactory(
                tls_options or tls.context_factory(cert, key), False, factory)
        try:
            endpoint = serverFromString(self.reactor, endpoint_text)
        except Exception as e:
            raise SystemExit(
                f"smtplatrine: bad endpoint {description!r}: {e}; examples:"
                f" tcp:2525, tcp:25:interface=192.0.2.1, ssl:465") from None
        results = []
        d = endpoint.listen(factory)
        d.addBoth(results.append)
        if not results:
            d.addCallback(self._listening, description)
            d.addErrback(self._late_failure, description)
        elif isinstance(results[0], Failure):
            raise SystemExit(_listen_error(description, results[0].value))
        else:
            self._listening(results[0], description)

    def _listening(self, port, description):
        """Keep *port*, and say where it listens (the port the system chose
        for ``tcp:0``, or the one systemd handed over)."""
        self.ports.append(port)
        log.info("listening on {endpoint} at {address}", endpoint=description,
                 address=address_of(port))

    def _late_failure(self, failure, description):
        log.critical(_listen_error(description, failure.value))
        self.reactor.stop()

    def _start_logging(self):
        settings = self.config.logger
        level = LogLevel.levelWithName(settings.level)
        if settings.file:
            stream = _LogFile(self.config.data_path(settings.file))
            self.observers.append(textFileLogObserver(stream))
        if settings.syslog:
            self.observers.append(_SyslogObserver(settings.syslog_facility))
        self.observers = [
            FilteringLogObserver(o, [LogLevelFilterPredicate(level)])
            for o in self.observers]
        for observer in self.observers:
            globalLogPublisher.addObserver(observer)

    def _after_shutdown(self):
        """After the last session has ended: let the disk worker finish
        its work and end, and stop logging to the human log (the event
        outputs run in the storing process)."""
        self.disk.stop()
        for observer in self.observers:
            globalLogPublisher.removeObserver(observer)

    def startService(self):
        super().startService()
        for process in self.children:
            process.configure()
        self._open_database()
        self.blocklist.start()
        # SIGHUP: reload the block list now (smtplatrine acl add|remove).
        self._sighup = signal.signal(
            signal.SIGHUP, lambda *_: self.reactor.callFromThread(self.blocklist.sync))

    def stopService(self):
        super().stopService()
        signal.signal(signal.SIGHUP, self._sighup)
        self.blocklist.stop()
        if self._reopen is not None and self._reopen.active():
            self._reopen.cancel()
        self.database.close()
        stopped = defer.gatherResults([defer.maybeDeferred(port.stopListening)
                                       for port in self.ports])
        return stopped.addCallback(lambda _: defer.gatherResults(
            [process.stop() for process in self.children]))
