"""What :func:`~smtplatrine.parse.parse` returns, and what bounds it.

:class:`Parsed` holds one message as read (with its :class:`Header`,
:class:`Received`, :class:`Url` and :class:`Attachment` records);
:class:`Limits` says how much of a message is read at most; :func:`unparsed`
stands for a message whose parsing raised.

Defect flags (``Parsed.defects``, all listed in :data:`DEFECTS`; the
``email`` package is not used to parse, so all are the parser's own):

``header_block_limit``
    a header block was longer than ``Limits.header_bytes``; the lines that
    fit are read, the rest of the block is skipped.
``header_separator_missing``
    a line that is no header field ended a header block without the empty
    line; the body begins at that line.
``orphan_continuation``
    a header block began with a folded (indented) line; it was ignored.
``content_type_invalid``
    a Content-Type that is no ``type/subtype``; the part is read as
    ``text/plain`` (``message/rfc822`` in a ``multipart/digest``).
``boundary_missing``
    a multipart without a usable boundary parameter (none, empty, or longer
    than 200 characters), or none of whose delimiter lines came; its body
    is read as ``text/plain``.
``close_boundary_missing``
    a multipart ended (at the end of the message, or at a delimiter of an
    enclosing one) without its close delimiter.
``boundary_reused``
    a multipart nested in another with the same boundary; each delimiter
    line is taken to belong to the innermost.
``multipart_encoding_invalid``
    a multipart with a Content-Transfer-Encoding other than 7bit, 8bit or
    binary (its parts are read as they are).
``depth_limit``, ``part_limit``
    a multipart or attached message nested deeper than ``Limits.depth`` was
    skipped; parts after the first ``Limits.parts`` were not read.
``encoding_unknown``
    a Content-Transfer-Encoding other than base64, quoted-printable,
    x-uuencode (``uuencode``, ``x-uue``, ``uue``), 7bit, 8bit or binary;
    the payload is kept as it came.
``base64_error``, ``quoted_printable_error``, ``uuencode_error``
    a payload or encoded word that was not valid (for uuencode: no
    ``begin`` line, no ``end`` line, or characters out of place); what
    could be decoded is kept.
``base64_trailing_text``
    text that is no base64 followed the padding that ends a base64 payload
    (a footer a list server appended); it is not decoded.
``charset_unknown``
    a charset Python has no safe codec for; the text was read as UTF-8.
``decode_error``
    bytes that were not valid in their charset (or 8-bit bytes in a header
    that are not UTF-8) were replaced with U+FFFD.
``nul``
    NUL characters were replaced with U+FFFD.
``encoded_word_limit``, ``body_limit``, ``url_limit``
    a header value had more than ``Limits.encoded_words`` encoded words (the
    rest is kept undecoded); body text or HTML was cut at
    ``Limits.body_chars``; URLs after the first ``Limits.urls`` were dropped.
``time_limit``
    ``Limits.seconds`` ran out; the record holds what was read by then.
``parse_failed``
    never set by :func:`~smtplatrine.parse.parse`: :func:`unparsed` stands
    for a message whose parsing raised (a bug), so that it is stored all the
    same, with ``Parsed.error`` saying why.
"""

import attrs


@attrs.frozen
class Limits:
    """How much of a message :func:`~smtplatrine.parse.parse` reads at most."""

    header_bytes: int = 256 * 1024  # of one header block
    depth: int = 32  # levels of nested multiparts and attached messages
    parts: int = 1000  # MIME parts walked
    encoded_words: int = 1000  # RFC 2047 words decoded in one header value
    body_chars: int = 1_000_000  # kept of body_text, and of body_html
    urls: int = 1000  # distinct URLs kept
    seconds: float = 10.0  # for the whole parse, checked as it goes


@attrs.frozen
class Header:
    """A header field; ``value`` is unfolded and RFC 2047 decoded."""

    name: str
    value: str


@attrs.frozen
class Received:
    """A Received field and the clauses read from it (None where absent)."""

    raw: str
    from_host: str | None
    from_ip: str | None
    by_host: str | None
    protocol: str | None
    id: str | None
    for_: str | None
    date: str | None


@attrs.frozen
class Url:
    """A URL found in the body text (``source`` "text") or HTML ("html")."""

    url: str
    host: str | None
    source: str


@attrs.frozen
class Attachment:
    """A leaf part that is not body text; ``filename`` is as the sender
    named it, never sanitised; ``payload`` is bytes-like (a view of the
    message, when it was sent as it is) or, when large and base64,
    :class:`Streamed` (read it with :func:`payload_chunks`)."""

    filename: str | None
    content_type: str
    disposition: str
    payload: object
    size: int
    md5: str
    sha1: str
    sha256: str


@attrs.frozen(eq=False)
class Streamed:
    """A large payload left encoded where it is in the message, decoded a
    chunk at a time each time it is read (*read*: a callable giving those
    chunks), so that it is never whole in memory."""

    read: object


def payload_chunks(payload):
    """The bytes of an attachment's *payload*, a chunk at a time."""
    return payload.read() if isinstance(payload, Streamed) else (payload,)


@attrs.frozen
class Parsed:
    """Everything :func:`~smtplatrine.parse.parse` read from one message."""

    fields: dict
    headers: tuple
    received: tuple
    body_text: str
    body_html: str
    urls: tuple
    attachments: tuple
    addresses: tuple
    defects: tuple
    error: str | None = None  # why parsing failed (see unparsed)


DEFECTS = frozenset({
    "header_block_limit", "header_separator_missing", "orphan_continuation",
    "content_type_invalid", "boundary_missing", "close_boundary_missing",
    "boundary_reused", "multipart_encoding_invalid", "depth_limit", "part_limit",
    "encoding_unknown", "base64_error", "quoted_printable_error", "uuencode_error",
    "base64_trailing_text", "charset_unknown", "decode_error", "nul",
    "encoded_word_limit", "body_limit", "url_limit", "time_limit", "parse_failed",
})


# The header fields kept in Parsed.fields: header name -> key.
FIELD_KEYS = {
    name: name.replace("-", "_")
    for name in (
        "date", "to", "from", "cc", "reply-to", "subject", "message-id",
        "x-mailer", "user-agent", "organization", "content-type",
        "content-transfer-encoding",
    )
}


def unparsed(reason):
    """The record of a message that could not be parsed, for *reason*: no
    field, body or part read, the defect ``parse_failed``."""
    return Parsed(fields=dict.fromkeys(FIELD_KEYS.values()), headers=(), received=(),
                  body_text="", body_html="", urls=(), attachments=(), addresses=(),
                  defects=("parse_failed",), error=reason)
