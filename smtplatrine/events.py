"""Structured events: one record per step of a session, sent to every output.

Every event is a flat dict with a dotted ``eventid`` (listed in ``EVENTS``
with the text the human log shows for it), the session's identity (session,
sensor, src_ip, src_port, dst_ip, dst_port) and an ISO 8601 ``timestamp``.
Values that came from the network are text with unprintable characters
escaped (see :func:`printable`), so neither a JSON reader, a terminal nor a
log format ever sees raw attacker bytes.
"""

import json
import os
import syslog
from datetime import datetime, timezone

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
    "smtplatrine.rcpt": (LogLevel.debug, "RCPT TO {rcpt!r}"),
    "smtplatrine.message.spooled": (
        LogLevel.debug, "message {message} of {size} bytes, acknowledged={acknowledged}"),
    "smtplatrine.message.stored": (
        LogLevel.info, "message {message} stored: {attachments} attachment(s),"
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
}

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


class JSONLinesOutput:
    """Append each event as one JSON object per line.

    Lines are kept and written out within a second (*clock* schedules
    that), so that a busy sensor does not pay a write per event; each
    batch is one write(2) to a file opened O_APPEND, so the server and its
    storing process, both appending, never interleave their lines.
    """

    def __init__(self, path, clock):
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        self._clock = clock
        self._lines = []
        self._flush = None

    def write(self, event):
        self._lines.append(json.dumps(event, sort_keys=True) + "\n")
        if self._flush is None:
            self._flush = self._clock.callLater(1, self._flush_now)

    def _flush_now(self):
        self._flush = None
        data, self._lines = "".join(self._lines).encode("ascii"), []
        while data:
            data = data[os.write(self._fd, data):]

    def close(self):
        if self._flush is not None:
            self._flush.cancel()
            self._flush_now()
        os.close(self._fd)


class SyslogOutput:
    """Send each event as a JSON line to the local syslog."""

    def __init__(self, facility):
        self._facility = getattr(syslog, "LOG_" + facility.upper())

    def write(self, event):
        syslog.syslog(self._facility | syslog.LOG_INFO,
                      json.dumps(event, sort_keys=True))

    def close(self):
        pass


class Events:
    """Stamp events with identity and time, and hand them to the outputs.

    Events at *log_level* or above also go to the human log.  One output
    failing is logged once and never disturbs the others.
    """

    def __init__(self, clock, outputs=(), log_level=LogLevel.debug):
        self._clock = clock
        self.outputs = list(outputs)
        self._log_level = log_level
        self._broken = set()

    def emit(self, eventid, identity, **fields):
        event = dict(identity, eventid=eventid,
                     timestamp=_timestamp(self._clock.seconds()), **fields)
        level, text = EVENTS[eventid]
        if level >= self._log_level:
            log.emit(level, "[{session}] " + text, **event)
        for output in self.outputs:
            try:
                output.write(event)
            except Exception:
                if output not in self._broken:
                    self._broken.add(output)
                    log.failure("event output {output!r} failed", output=output)
        return event

    def close(self):
        for output in self.outputs:
            output.close()


def make_events(config, clock):
    """The events with the outputs and the log level *config* asks for."""
    outputs = []
    if config.output_file.enabled:
        outputs.append(JSONLinesOutput(config.data_path(config.output_file.path), clock))
    if config.output_syslog.enabled:
        outputs.append(SyslogOutput(config.output_syslog.facility))
    return Events(clock, outputs, LogLevel.levelWithName(config.logger.level))
