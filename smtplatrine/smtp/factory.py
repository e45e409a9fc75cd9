"""The listening side: one factory shared by every listener of a sensor."""

from twisted.internet.protocol import Factory, Protocol

from smtplatrine import acl
from smtplatrine.capture import Identity
from smtplatrine.persona import wire
from smtplatrine.smtp.envelope import LocalRecipients
from smtplatrine.smtp.protocol import ABORT_AFTER, SMTPSession

# Refusals past the global limit; the others come from acl.Guard.
BUSY = "busy"


class _Refused(Protocol):
    """A connection refused at the gate: an event, the persona's reply (or
    nothing, for a block list hit with acl_action = close) and a close,
    an abort if the close cannot finish (a TLS port that gets no hello)."""

    def __init__(self, refusal):
        self.refusal = refusal
        self._abort = None

    def connectionMade(self):
        factory, refusal = self.factory, self.refusal
        config = factory.config
        session = Identity.of(self.transport, config.server.sensor_name)
        factory.events.emit("smtplatrine.acl.refused", session,
                            reason=refusal.reason, entry=refusal.entry)
        if refusal.ban is not None:
            factory.ban_event(session, refusal.ban)
        if refusal.reason == BUSY:
            key = "busy"
        elif refusal.reason in (acl.CLIENT_LIMIT, acl.CLIENT_RATE):
            key = "busy_client"
        else:
            key = "client_rejected" if config.protection.acl_action == "reject" else None
        if key is not None:
            lines = factory.persona.reply(key, hostname=config.server.hostname,
                                          arg=session.src_ip)
            self.transport.write(wire(lines).encode("ascii"))
        self.transport.loseConnection()
        self._abort = factory.clock.callLater(ABORT_AFTER, self._abort_now)

    def _abort_now(self):
        self.transport.abortConnection()

    def connectionLost(self, reason):
        if self._abort is not None and self._abort.active():
            self._abort.cancel()


class HoneypotFactory(Factory):
    """Builds sessions; knows the configuration, the spool and the outputs.

    *tls_options* is the server's TLS context factory, or None when STARTTLS
    is off.  *guard* (an acl.Guard) admits or refuses each connection; by
    default one with the configured limits and an empty block list.
    """

    noisy = False

    def __init__(self, config, persona, clock, spool, events, tls_options, guard=None):
        self.config = config
        self.persona = persona
        self.clock = clock
        self.spool = spool
        self.events = events
        self.tls_options = tls_options
        self.guard = guard or acl.Guard(config.protection, config.smart_acl, clock)
        self.local = LocalRecipients.from_config(config.server.hostname, config.smtp)
        self.active = 0

    def buildProtocol(self, addr):
        ip = getattr(addr, "host", "")
        if self.active >= self.config.protection.max_connections:
            refusal = acl.Refusal(BUSY, str(self.config.protection.max_connections))
        else:
            refusal = self.guard.admit(ip)
        if refusal is not None:
            protocol = _Refused(refusal)
        else:
            self.active += 1
            protocol = SMTPSession()
        protocol.factory = self
        return protocol

    def ban_event(self, session, ban):
        self.events.emit("smtplatrine.acl.banned", session, network=ban.network,
                         seconds=ban.seconds, reason=ban.reason)

    def session_closed(self, session):
        """Keep the record of a finished session."""
        self.active -= 1
        record = session.record
        ban = self.guard.closed(session.identity.src_ip, record.messages,
                                acl.mismatch(session.first_bytes, record.close_reason))
        if ban is not None:
            record.flag("banned")
            self.ban_event(session.identity, ban)
        self.spool.save_session(record.to_json())
