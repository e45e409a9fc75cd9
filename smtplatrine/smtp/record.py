"""What one connection leaves behind: the session record and its envelopes.

The record is written to the spool as JSON when the connection closes
(``spool/sessions/SESSION.json``); texts that came from the network are
kept as sent, non-UTF-8 bytes as ``\\udcXX`` surrogates (decode with
``surrogateescape`` to get the bytes back).
"""

import uuid

import attrs


def identity(transport, sensor):
    """The identity of a new connection on *transport*: a new session id,
    *sensor* and both ends' addresses."""
    peer, host = transport.getPeer(), transport.getHost()
    return {
        "session": str(uuid.uuid4()), "sensor": sensor,
        "src_ip": getattr(peer, "host", ""), "src_port": getattr(peer, "port", 0),
        "dst_ip": getattr(host, "host", ""), "dst_port": getattr(host, "port", 0),
    }


@attrs.define
class Envelope:
    mail_from: str | None
    params: dict
    time: float
    rcpts: list = attrs.Factory(list)
    message: str | None = None
    queue_id: str | None = None
    transport: str | None = None
    chunks: int = 0
    outcome: str | None = None


@attrs.define
class SessionRecord:
    identity: dict
    start: float
    end: float | None = None
    helo: str | None = None
    helo_command: str | None = None
    tls: dict | None = None
    auth: list = attrs.Factory(list)
    envelopes: list = attrs.Factory(list)
    transcript: list = attrs.Factory(list)
    flags: set = attrs.Factory(set)
    commands: int = 0
    unknown_commands: int = 0
    errors: int = 0
    messages: int = 0
    pregreet: bytes = b""
    close_reason: str | None = None

    def flag(self, name):
        self.flags.add(name)

    def note(self, time, direction, text, limit):
        """Add a line to the transcript; past *limit* lines only count."""
        if len(self.transcript) < limit:
            self.transcript.append([round(time, 6), direction, text[:1024]])
        else:
            self.flag("transcript_truncated")

    def to_json(self):
        record = attrs.asdict(self, recurse=True)
        identity = record.pop("identity")
        record["flags"] = sorted(self.flags)
        record["pregreet"] = self.pregreet.decode("utf-8", "surrogateescape")
        return dict(identity, **record)
