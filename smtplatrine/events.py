"""Structured events: one record per step of a session, sent to every output.

Every event is a flat dict with a dotted ``eventid`` (listed in ``EVENTS``
with the text the human log shows for it), the session's identity (session,
sensor, src_ip, src_port, dst_ip, dst_port) and an ISO 8601 ``timestamp``.
Flat: its values are text, numbers, booleans or null, never lists or
objects; large text stays on disk and in the database, and events carry
ids and hashes.  Values that came from the network are text with
unprintable characters escaped (see :func:`printable`), so neither a JSON
reader, a terminal nor a log format ever sees raw attacker bytes.

The SMTP side hands its events to the storing process, which runs the
outputs (``smtplatrine.outputs``) for its own events and for those.
"""

from datetime import datetime, timezone

from twisted.internet import defer
from twisted.logger import Logger, LogLevel

log = Logger()

# Each event and how the human log shows it: its level and its text.  The
# steps inside a session are debug (set [logger] level = debug to see them);
# a message shows once, when it is stored.
EVENTS = {
    "smtplatrine.session.connect": (
        LogLevel.info, "connection from {src_ip}:{src_port} to {dst_ip}:{dst_port}"),
    "smtplatrine.session.tls": (
        LogLevel.debug, "TLS established: {tls_version} {tls_cipher}"),
    "smtplatrine.session.helo": (LogLevel.debug, "{command} {helo}"),
    "smtplatrine.login.attempt": (
        LogLevel.info, "AUTH {mechanism} username={username!r} accepted={accepted}"),
    "smtplatrine.mail": (LogLevel.debug, "MAIL FROM {mail_from!r}"),
    "smtplatrine.rcpt": (LogLevel.debug, "RCPT TO {rcpt!r} accepted={accepted}"),
    "smtplatrine.message.spooled": (
        LogLevel.debug, "message {message} of {size} bytes, acknowledged={acknowledged}"),
    "smtplatrine.message.stored": (
        LogLevel.info, "message {message} stored: {attachments} attachment(s),"
                       " {urls} URL(s), {defects} defect(s)"),
    "smtplatrine.message.parse_failed": (
        LogLevel.warn, "message {message} stored unparsed (defect parse_failed): {reason}"),
    "smtplatrine.message.reparsed": (
        LogLevel.debug, "message {message} read again: {attachments} attachment(s),"
                        " {urls} URL(s), {defects} defect(s)"),
    "smtplatrine.attachment.stored": (
        LogLevel.debug, "attachment {sha256} ({size} bytes, {content_type})"),
    "smtplatrine.message.quarantined": (
        LogLevel.warn, "message {message} quarantined: {reason}"),
    "smtplatrine.session.stored": (LogLevel.debug, "session stored"),
    "smtplatrine.acl.refused": (
        LogLevel.debug, "refused {src_ip}: {reason} ({entry})"),
    "smtplatrine.acl.banned": (
        LogLevel.warn, "banned {network} for {seconds:.0f}s: {reason}"),
    "smtplatrine.enrichment": (
        LogLevel.info, "{provider} on {kind} {indicator}: found={found}"),
    "smtplatrine.enrichment.queued": (
        LogLevel.info, "{provider} on {kind} {indicator} waits until {until:.0f}:"
                       " {reason}"),
    "smtplatrine.enrichment.failed": (
        LogLevel.warn, "{provider} on {kind} {indicator} failed: {reason}"),
    "smtplatrine.web.login": (
        LogLevel.info, "dashboard: {user} ({role}) logged in from {src_ip}"),
    "smtplatrine.web.login.failed": (
        LogLevel.warn, "dashboard: login failed for {user!r} from {src_ip}: {reason}"
                       " (after waiting {delayed:.0f} s)"),
    "smtplatrine.session.closed": (
        LogLevel.info, "closed after {duration:.1f}s, {messages} message(s)"),
    "smtplatrine.events.lost": (
        LogLevel.warn, "{count} event(s) could not reach the outputs: {reason}"),
}

# What a value of a flat event may be.
FLAT = (str, int, float, bool, type(None))

_ESCAPES = {i: f"\\x{i:02x}" for i in [*range(0x20), 0x7F, *range(0x80, 0xA0)]}
_ESCAPES.update({ord("\\"): "\\\\", ord("\r"): "\\r", ord("\n"): "\\n",
                 ord("\t"): "\\t"})
# Bytes that are not UTF-8 arrive as surrogates (surrogateescape).
_ESCAPES.update({0xDC00 + i: f"\\x{i:02x}" for i in range(0x80, 0x100)})


def printable(value):
    """Attacker text or bytes as one line of text: controls escaped."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "surrogateescape")
    return value.translate(_ESCAPES)


def _timestamp(seconds):
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(
        timespec="microseconds").replace("+00:00", "Z")


class Events:
    """Stamp events with identity and time, and hand them to the *sinks*.

    A sink has ``write(event)``, which must not block, and ``close()``: the
    outputs, the metrics, the hand-over to the storing process.  Events at
    *log_level* or above also go to the human log.  One sink failing is
    logged once and never disturbs the others.
    """

    def __init__(self, clock, sinks=(), log_level=LogLevel.debug):
        self._clock = clock
        self.sinks = list(sinks)
        self._log_level = log_level
        self._broken = set()

    def emit(self, eventid, identity, **fields):
        """The event *eventid* (of the catalogue) of the session *identity*
        (a :class:`smtplatrine.capture.Identity`) with *fields* (flat
        values), stamped and handed on."""
        level, text = EVENTS[eventid]
        for key, value in fields.items():
            if not isinstance(value, FLAT):
                raise TypeError(f"{eventid}: {key} is a {type(value).__name__};"
                                f" events are flat")
        event = dict(identity.to_json(), eventid=eventid,
                     timestamp=_timestamp(self._clock.seconds()), **fields)
        if level >= self._log_level:
            log.emit(level, "[{session}] " + text, **event)
        for sink in self.sinks:
            try:
                sink.write(event)
            except Exception:
                if sink not in self._broken:
                    self._broken.add(sink)
                    log.failure("event sink {sink!r} failed", sink=sink)
        return event

    def close(self):
        """Close every sink; a Deferred that fires when they are closed."""
        return defer.gatherResults([defer.maybeDeferred(sink.close)
                                    for sink in self.sinks], consumeErrors=True)
