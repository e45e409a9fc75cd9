"""The listening side: one factory shared by every listener of a sensor."""

from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger

from smtplatrine.persona import wire
from smtplatrine.smtp.protocol import SMTPSession

log = Logger()


class _Busy(Protocol):
    """Answers a connection over the global limit with 421 and closes it."""

    def connectionMade(self):
        lines = self.factory.persona.reply(
            "busy", hostname=self.factory.config.server.hostname)
        self.transport.write(wire(lines).encode("ascii"))
        self.transport.loseConnection()


class HoneypotFactory(Factory):
    """Builds sessions; knows the configuration, the spool and the outputs.

    *tls_options* is the server's TLS context factory, or None when STARTTLS
    is off.
    """

    noisy = False

    def __init__(self, config, persona, clock, spool, events, tls_options):
        self.config = config
        self.persona = persona
        self.clock = clock
        self.spool = spool
        self.events = events
        self.tls_options = tls_options
        self.active = 0

    def buildProtocol(self, addr):
        if self.active >= self.config.protection.max_connections:
            protocol = _Busy()
        else:
            self.active += 1
            protocol = SMTPSession()
        protocol.factory = self
        return protocol

    def session_closed(self, session):
        """Keep the record of a finished session."""
        self.active -= 1
        self.spool.save_session(session.record.to_json()).addErrback(
            lambda f: log.failure("spool: cannot save session {session}", f,
                                  session=session.identity["session"]))
