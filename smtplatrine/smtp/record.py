"""What one connection leaves behind: the session record and its envelopes.

The record is written to the spool as JSON when the connection closes
(``spool/sessions/SESSION.json``); texts that came from the network are
kept as sent, non-UTF-8 bytes as ``\\udcXX`` surrogates (decode with
``surrogateescape`` to get the bytes back).
"""

import attrs

from smtplatrine.capture import Identity


@attrs.define
class Envelope:
    mail_from: str | None
    params: dict
    time: float
    rcpts: list = attrs.Factory(list)
    # Recipients refused (an unknown local user), kept all the same.
    rejected: list = attrs.Factory(list)
    message: str | None = None
    queue_id: str | None = None
    transport: str | None = None
    chunks: int = 0
    outcome: str | None = None


def _params_size(params):
    return sum(len(key) + len(value or "") for key, value in params.items())


@attrs.define
class SessionRecord:
    identity: Identity
    start: float
    end: float | None = None
    helo: str | None = None
    helo_command: str | None = None
    tls: dict | None = None
    auth: list = attrs.Factory(list)
    envelopes: list = attrs.Factory(list)
    # Envelopes and recipients past the bounds of keep_envelope: only counted.
    envelopes_dropped: int = 0
    recipients_dropped: int = 0
    transcript: list = attrs.Factory(list)
    flags: set = attrs.Factory(set)
    commands: int = 0
    unknown_commands: int = 0
    errors: int = 0
    messages: int = 0
    pregreet: bytes = b""
    close_reason: str | None = None
    # The envelope that recipients are kept in, and the bytes kept so far.
    _open: Envelope | None = None
    _envelope_bytes: int = 0

    def flag(self, name):
        self.flags.add(name)

    def note(self, time, direction, text, limit):
        """Add a line to the transcript; past *limit* lines only count."""
        if len(self.transcript) < limit:
            self.transcript.append([round(time, 6), direction, text[:1024]])
        else:
            self.flag("transcript_truncated")

    def keep_envelope(self, envelope, limit, byte_limit):
        """Keep *envelope* while fewer than *limit* are kept and their
        addresses and parameters take at most *byte_limit* bytes; past
        either bound it is only counted (``envelopes_truncated``)."""
        size = len(envelope.mail_from or "") + _params_size(envelope.params)
        if len(self.envelopes) < limit and self._envelope_bytes + size <= byte_limit:
            self._envelope_bytes += size
            self.envelopes.append(envelope)
            self._open = envelope
        else:
            self._open = None
            self.envelopes_dropped += 1
            self.flag("envelopes_truncated")

    def keep_recipient(self, envelope, address, byte_limit, rejected=False):
        """Add *address* to *envelope* (to its ``rejected`` if it was) if
        that was kept and the bytes bound allows; else only count it."""
        if envelope is self._open and self._envelope_bytes + len(address) <= byte_limit:
            self._envelope_bytes += len(address)
            (envelope.rejected if rejected else envelope.rcpts).append(address)
        else:
            self.recipients_dropped += 1
            self.flag("envelopes_truncated")

    def to_json(self):
        record = attrs.asdict(self, recurse=True,
                              filter=lambda field, _: not field.name.startswith("_"))
        identity = record.pop("identity")
        record["flags"] = sorted(self.flags)
        record["pregreet"] = self.pregreet.decode("utf-8", "surrogateescape")
        return dict(identity, **record)
