"""What crosses from the SMTP side to storing: who a session is
(:class:`Identity`), the metadata of a spooled message (:class:`Metadata`)
and a message made ready for the database (:class:`Prepared`).

The SMTP side writes them, the spool keeps the metadata as one flat JSON
object beside the message (``ID.json``, see :mod:`smtplatrine.spool`), and
the pipeline, the store, the enrichers and the events read them.  Texts
that came from the network are kept as sent, bytes that are not UTF-8 as
``\\udcXX`` surrogates.
"""

import uuid

import attrs


@attrs.frozen
class Identity:
    """Whom an event or a record is of: the session's id, the sensor, and
    both ends of the connection.  What is of no session (a lost event, a
    lookup from the queue) has only the sensor."""
    session: str | None = None
    sensor: str | None = None
    src_ip: str | None = None
    src_port: int | None = None
    dst_ip: str | None = None
    dst_port: int | None = None

    @classmethod
    def of(cls, transport, sensor):
        """The identity of a new connection on *transport*: a new session
        id, *sensor* and both ends' addresses."""
        peer, host = transport.getPeer(), transport.getHost()
        return cls(str(uuid.uuid4()), sensor,
                   getattr(peer, "host", ""), getattr(peer, "port", 0),
                   getattr(host, "host", ""), getattr(host, "port", 0))

    @classmethod
    def from_json(cls, record):
        """The identity in the JSON object *record* (a session's record, a
        message's metadata)."""
        return cls(**{name: record.get(name) for name in _IDENTITY})

    def to_json(self):
        return attrs.asdict(self)


_IDENTITY = [field.name for field in attrs.fields(Identity)]


@attrs.frozen
class Metadata:
    """A spooled message's metadata: its id, its session's *identity*, its
    envelope and what the session had said by then (HELO, TLS, flags).

    What became of it: *acknowledged* (its client got the 250),
    *truncated* (over the size limit), *incomplete* (the connection
    dropped mid-DATA), *recovered* (a restart found it unfinished);
    *size*, *sha256* (and, once prepared, *md5*) of the bytes kept.  An
    imported message (``smtplatrine import``) says where it came from."""
    message: str
    identity: Identity
    received: float | None = None
    session_start: float | None = None
    queue_id: str | None = None
    transport: str | None = None
    mail_from: str | None = None
    mail_params: dict = attrs.Factory(dict)
    rcpts: tuple = ()
    helo: str | None = None
    tls: dict | None = None
    flags: tuple = ()
    acknowledged: bool = False
    truncated: bool = False
    incomplete: bool = False
    recovered: bool = False
    size: int | None = None
    sha256: str | None = None
    md5: str | None = None
    imported: bool = False
    import_file: str | None = None
    import_index: int | None = None

    def to_json(self):
        """The metadata as one flat JSON object (the identity's fields
        beside the others)."""
        record = attrs.asdict(self, recurse=False)
        del record["identity"]
        record.update(rcpts=list(self.rcpts), flags=list(self.flags))
        return dict(self.identity.to_json(), **record)

    @classmethod
    def from_json(cls, record):
        """The metadata in the JSON object *record*; fields it lacks take
        their defaults, fields it has more are ignored."""
        found = {name: record[name] for name in _METADATA if name in record}
        found["rcpts"] = tuple(found.get("rcpts", ()))
        found["flags"] = tuple(found.get("flags", ()))
        return cls(identity=Identity.from_json(record), **found)


_METADATA = [field.name for field in attrs.fields(Metadata) if field.name != "identity"]


@attrs.frozen
class Prepared:
    """A spooled message made ready for the database: its *metadata*, what
    was read from it (*parsed*, a :class:`smtplatrine.parse.Parsed`), the
    raw bytes (None: kept on disk at *raw_path*), where its attachments
    were written (None each: not kept), and its indicators
    (:class:`smtplatrine.enrich.indicators.Indicator`)."""
    metadata: Metadata
    parsed: object
    raw: bytes | None
    raw_path: str | None
    attachment_paths: tuple
    indicators: tuple = ()
