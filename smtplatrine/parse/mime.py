"""MIME entities (RFC 2045, 2046, 2183, 2231): what a part's header says.

:func:`read_part` reads the Content-Type, Content-Disposition and
Content-Transfer-Encoding of one entity into a :class:`Part`: its media
type (any ``type/subtype`` of RFC 2045 tokens; anything else is
``content_type_invalid`` and read as the default), its parameters (RFC 2231
continuations and charsets decoded, quoted strings unquoted), its transfer
encoding, and the file name the sender gave it (RFC 2047 decoded, never
sanitised).  :func:`attachment` makes the record of a leaf that is no body
text, with its digests.
"""

import hashlib
import re
from urllib.parse import unquote_to_bytes

import attrs

from smtplatrine.parse.headers import QUOTED_STRING, decode_words, first_value
from smtplatrine.parse.records import Attachment, payload_chunks

MESSAGE_TYPES = ("message/rfc822", "message/global")
# type "/" subtype, each an RFC 2045 token: printable ASCII but tspecials.
_TOKEN = r"[!#$%&'*+.^_`{|}~0-9a-z-]+"
_MIME_TYPE = re.compile(_TOKEN + "/" + _TOKEN)
_PARAMETER_TOKEN = re.compile(QUOTED_STRING.pattern + r'|[^";]+|;', re.S)
_EXTENDED_NAME = re.compile(r"([^*]+)\*(?:(\d{1,4})(\*)?)?")
_QUOTED_PAIR = re.compile(r'\\([\\"])')


@attrs.frozen
class Part:
    """What is read from the header block of one MIME entity."""

    content_type: str
    params: dict
    encoding: str
    disposition: str
    filename: str | None
    depth: int
    attached: bool  # inside a message/rfc822

    @property
    def is_body(self):
        """Whether it is body text rather than an attachment."""
        return (
            self.content_type in ("text/plain", "text/html")
            and not self.attached
            and self.filename is None
            and self.disposition != "attachment"
        )


def read_part(ctx, fields, depth, attached, default="text/plain"):
    """The Part of an entity with header *fields*; *default* is its type
    when it declares none."""
    declared = first_value(fields, "content-type")
    content_type, params = _parameters(ctx, declared)
    if not _MIME_TYPE.fullmatch(content_type):
        if declared is not None:
            ctx.flag("content_type_invalid")
        content_type = default
    disposition, disposition_params = _parameters(ctx, first_value(fields, "content-disposition"))
    filename = disposition_params.get("filename") or params.get("name")
    if filename:
        filename = ctx.clean(decode_words(ctx, filename))
    encoding = (first_value(fields, "content-transfer-encoding") or "").strip().lower()
    return Part(
        content_type=content_type,
        params=params,
        encoding=encoding,
        disposition="attachment" if disposition == "attachment" else "inline",
        filename=filename or None,
        depth=depth,
        attached=attached,
    )


def _parameters(ctx, value):
    """The lower-cased value before the first ";" of a MIME header field,
    and its parameters, RFC 2231 continuations and charsets decoded."""
    segments = [[]]
    for token in _PARAMETER_TOKEN.findall(value or ""):
        if token == ";":
            segments.append([])
        else:
            segments[-1].append(token)
    head, *rest = ("".join(segment) for segment in segments)
    params, sections = {}, {}
    for segment in rest:
        name, equals, text = segment.partition("=")
        name = name.strip().lower()
        if not (name and equals):
            continue
        text = text.strip()
        if text.startswith('"'):
            text = _QUOTED_PAIR.sub(r"\1", text[1:].removesuffix('"'))
        extended = _EXTENDED_NAME.fullmatch(name)
        if extended:
            number, star = extended.group(2, 3)
            sections.setdefault(extended.group(1), []).append(
                (int(number or 0), number is None or bool(star), text))
        else:
            params.setdefault(name, text)
    for name, pieces in sections.items():
        params[name] = _join_sections(ctx, pieces)
    return head.strip().lower(), params


def _join_sections(ctx, pieces):
    """An RFC 2231 value from its (number, encoded, text) sections."""
    pieces.sort(key=lambda piece: piece[0])
    charset = "utf-8"
    data = bytearray()
    for index, (_, encoded, text) in enumerate(pieces):
        raw = text.encode("utf-8", "surrogateescape")
        if encoded:
            if index == 0 and raw.count(b"'") >= 2:
                name, _, raw = raw.split(b"'", 2)
                charset = name.decode("ascii", "replace") or charset
            raw = unquote_to_bytes(raw)
        data += raw
    return ctx.decode(bytes(data), charset)


def attachment(part, payload):
    """The record of the leaf *part*, whose payload is *payload*."""
    size = 0
    md5, sha1 = hashlib.md5(usedforsecurity=False), hashlib.sha1(usedforsecurity=False)
    sha256 = hashlib.sha256()
    for chunk in payload_chunks(payload):
        size += len(chunk)
        for digest in (md5, sha1, sha256):
            digest.update(chunk)
    return Attachment(
        filename=part.filename,
        content_type=part.content_type,
        disposition=part.disposition,
        payload=payload,
        size=size,
        md5=md5.hexdigest(),
        sha1=sha1.hexdigest(),
        sha256=sha256.hexdigest(),
    )
