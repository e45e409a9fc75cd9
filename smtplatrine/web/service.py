"""The dashboard as a service: its listeners (bound while still root), its
database (read-only, opened and reopened until it works), and the first
admin when there is no user at all."""

import secrets

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from twisted.web import server

from smtplatrine import intel, tls
from smtplatrine.outputs import service as outputs
from smtplatrine.events import Events
from smtplatrine.layout import DataDir
from smtplatrine.store import dialects, users
from smtplatrine.store.database import Database
from smtplatrine.store.dialects import Rejected, Unavailable
from smtplatrine.web.site import Dashboard

log = Logger()


class WebService(Service):
    """Serves the dashboard of *config* on ``[web] listen``."""

    def __init__(self, config, reactor):
        self.config = config
        self.reactor = reactor
        self.ports = []
        self._reopen = None

    def bind(self):
        """Build the dashboard and listen (as root, for ports below 1024);
        SystemExit with one line for what cannot be."""
        config = self.config
        dialect = dialects.from_config(config)
        DataDir.of(config).make()
        self.reader = Database(dialect, readonly=True)
        self.writer = Database(dialect, create=False)
        # Its events (logins) go to the outputs of its own: the storing
        # process's are out of its reach (and absent on an analysis host).
        self.events = Events(self.reactor,
                             [outputs.configure(outputs.discover(), config, self.reactor)],
                             LogLevel.levelWithName(config.logger.level))
        self.dashboard = Dashboard(config, self.reader, self.writer, self.events, self.reactor)
        intel.prepare()
        site = server.Site(self.dashboard)
        site.displayTracebacks = False
        site.log = lambda request: None
        for description in config.web.listen:
            self._listen(description, site)

    def _listen(self, description, site):
        text = description
        if description.startswith("ssl:") and "privateKey=" not in description:
            cert, key = tls.self_signed(self.config.server.hostname,
                                        DataDir.of(self.config).tls)
            text = tls.endpoint_with_certificate(description, cert, key)
        try:
            endpoint = serverFromString(self.reactor, text)
        except Exception as e:
            raise SystemExit(f"smtplatrine: bad [web] listen endpoint {description!r}: {e};"
                             f" for example tcp:8025:interface=127.0.0.1") from None
        results = []
        endpoint.listen(site).addBoth(results.append)
        if not results or isinstance(results[0], Failure):
            error = results[0].value if results else "it did not answer at once"
            raise SystemExit(f"smtplatrine: the dashboard cannot listen on {description}:"
                             f" {error}; change [web] listen (or set [web] enabled ="
                             f" false)")
        self.ports.append(results[0])
        log.info("dashboard listening on {endpoint}", endpoint=description)

    def startService(self):
        super().startService()
        self._open()

    def _open(self, delay=1.0):
        """Open the database, again after *delay* seconds (doubling) while
        it cannot be (away, or its schema not made yet: the storing process
        makes it at first start)."""
        def opened(_):
            self.dashboard.unavailable = None
            return defer.Deferred.fromCoroutine(self._first_admin())

        def failed(failure):
            failure.trap(Unavailable, Rejected)
            # At first start the storing process is making the schema now.
            if delay >= 4 and self.dashboard.unavailable != str(failure.value):
                log.warn("dashboard: {db} cannot be read yet ({error}); trying again",
                         db=self.reader.dialect.describe(), error=str(failure.value))
            self.dashboard.unavailable = str(failure.value)
            self._reopen = self.reactor.callLater(
                delay, self._open, min(2 * delay, self.config.store.retry_max_delay))

        self._reopen = None
        d = defer.Deferred.fromCoroutine(self.reader.open())
        d.addCallbacks(opened, failed)
        d.addErrback(lambda f: log.failure("dashboard: cannot open the database", f))

    async def _first_admin(self):
        """With no user at all, make ``admin`` with a random password, said
        once in the log."""
        dialect = self.reader.dialect
        if await self.reader.run(users.count, dialect):
            return
        password = secrets.token_urlsafe(12)
        hashed = users.hash_password(password)
        try:
            added = await self.writer.run(users.add, dialect, "admin", "admin", hashed,
                                          self.reactor.seconds())
        except (Unavailable, Rejected) as e:
            log.error("dashboard: there is no user, and none can be made ({error}); add"
                      " one: smtplatrine user add NAME --role admin", error=str(e))
            return
        if added:
            log.warn("dashboard: first start: created user admin with password"
                     " {password} (said only now); change it with: smtplatrine user"
                     " passwd admin", password=password)

    def stopService(self):
        super().stopService()
        if self._reopen is not None and self._reopen.active():
            self._reopen.cancel()
        stopped = defer.gatherResults([defer.maybeDeferred(p.stopListening)
                                       for p in self.ports])

        def close(_):
            self.reader.close()
            self.writer.close()
            self.events.close()
        return stopped.addBoth(close)
