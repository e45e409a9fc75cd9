"""Parse one captured message into a record for the store.

:func:`parse` reads the raw bytes of a message, as hostile and malformed as
they come, and never raises: whatever it cannot read becomes a defect flag.
It is bounded by :class:`Limits` (bytes of a header block, MIME depth and
parts, encoded words, body characters, URLs, and a time budget checked as it
goes), and walks the MIME tree without recursion: it finds each multipart's
delimiter lines with one regular expression per boundary and reads each
part's header block itself, so a deep or wide message costs time in
proportion to its size, never stack.  It is CPU-bound: run it in a thread.

It reads a message as mail clients do: a UTF-8 byte order mark or an mbox
``From`` line before the first header field is skipped; any media type
made of RFC 2045 tokens is taken, and a multipart of an unknown subtype is
read as multipart/mixed; base64 ends at its padding; UTF-16 and UTF-32
without a byte order mark are little-endian.

A leaf part is body text (``body_text``, ``body_html``) when it is
text/plain or text/html, has no filename, is not ``Content-Disposition:
attachment`` and is not inside an attached message; every other leaf is an
:class:`Attachment`.  Attached messages (message/rfc822 and message/global,
however they are transfer-encoded) are walked into, and all their leaves
are attachments.  A file uuencoded in a text/plain part (``begin 644 name``
to ``end``) is an attachment of its own, and leaves the body text.

Every ``str`` it returns is valid UTF-8 without NUL, ready for SQLite and
MariaDB ``utf8mb4`` columns.

Defect flags (``Parsed.defects``, all listed in :data:`DEFECTS`; the
``email`` package is not used to parse, so all are this module's own):

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
    never set by :func:`parse`: :func:`unparsed` stands for a message whose
    parsing raised (a bug), so that it is stored all the same, with
    ``Parsed.error`` saying why.
"""

import binascii
import codecs
import functools
import hashlib
import html
import ipaddress
import re
import time
from datetime import timezone
from email.utils import parsedate_to_datetime
from urllib.parse import unquote_to_bytes

import attrs


@attrs.frozen
class Limits:
    """How much of a message :func:`parse` reads at most."""

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
    named it, never sanitised."""

    filename: str | None
    content_type: str
    disposition: str
    payload: bytes
    size: int
    md5: str
    sha1: str
    sha256: str


@attrs.frozen
class Parsed:
    """Everything :func:`parse` read from one message."""

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


def unparsed(reason):
    """The record of a message that could not be parsed, for *reason*: no
    field, body or part read, the defect ``parse_failed``."""
    return Parsed(fields=dict.fromkeys(_FIELD_KEYS.values()), headers=(), received=(),
                  body_text="", body_html="", urls=(), attachments=(), addresses=(),
                  defects=("parse_failed",), error=reason)


# The header fields kept in Parsed.fields: header name -> key.
_FIELD_KEYS = {
    name: name.replace("-", "_")
    for name in (
        "date", "to", "from", "cc", "reply-to", "subject", "message-id",
        "x-mailer", "user-agent", "organization", "content-type",
        "content-transfer-encoding",
    )
}


def parse(raw, limits=Limits()):
    """Read the message *raw* (bytes) into a :class:`Parsed`; never raises."""
    ctx = _Context(limits)
    block, start = _header_block(ctx, raw, _message_start(raw, 0))
    fields = _fields(ctx, block)
    headers = tuple(
        Header(ctx.clean(name), ctx.clean(_decode_words(ctx, value).strip()))
        for name, value in fields
    )
    received = tuple(
        _received(ctx.clean(value))
        for name, value in fields if name.lower() == "received"
    )
    addresses = _addresses(ctx, fields)
    texts = {"text/plain": [], "text/html": []}
    attachments = []
    for part, payload in _leaves(ctx, raw, _part(ctx, fields, 0, False), start):
        charset = part.params.get("charset") or "utf-8"
        files = ()
        if part.content_type == "text/plain" and part.filename is None:
            text, files = _uu_blocks(ctx, payload, part, charset)
            if part.is_body:
                payload = text
        if part.is_body:
            # No charset takes more than four bytes a character: decode no
            # more than the body could keep.
            cut = len(payload) > 4 * ctx.limits.body_chars
            if cut:
                ctx.flag("body_limit")
                payload = payload[:4 * ctx.limits.body_chars]
            texts[part.content_type].append(ctx.decode(payload, charset, final=not cut))
        else:
            attachments.append(_attachment(part, payload))
        attachments.extend(files)
    body_text = _join(ctx, texts["text/plain"])
    body_html = _join(ctx, texts["text/html"])
    urls = _urls(ctx, body_text, body_html)
    return Parsed(
        fields=_field_values(headers),
        headers=headers,
        received=received,
        body_text=body_text,
        body_html=body_html,
        urls=urls,
        attachments=tuple(attachments),
        addresses=addresses,
        defects=tuple(sorted(ctx.flags)),
    )


def _leaves(ctx, raw, top, start):
    """Yield (part, payload) for every leaf of the message, its transfer
    encoding undone; an attached message that is itself encoded (base64,
    say) is decoded and walked into like any other."""
    walks = [_Walker(ctx, raw).leaves(top, start)]
    while walks:
        item = next(walks[-1], None)
        if item is None:
            walks.pop()
            continue
        if ctx.out_of_time():
            return
        part, body = item
        if part.encoding in _UUENCODINGS:
            payload, name = _uudecode(ctx, body)
            if part.filename is None and name:
                part = attrs.evolve(part, filename=ctx.decode(name, "utf-8"))
        else:
            payload = _transfer_decode(ctx, body, part.encoding)
        if part.content_type in _MESSAGE_TYPES:
            walks.append(_Walker(ctx, payload).leaves(attrs.evolve(part, encoding=""), 0))
            continue
        yield part, payload


class _Context:
    """The limits, the defects found so far, and text decoding."""

    def __init__(self, limits):
        self.limits = limits
        self.flags = set()
        self.parts = 0  # MIME parts walked so far
        self._deadline = time.monotonic() + limits.seconds

    def flag(self, name):
        self.flags.add(name)

    def out_of_time(self):
        """Whether the time budget is spent (and flag it if so)."""
        if time.monotonic() < self._deadline:
            return False
        self.flag("time_limit")
        return True

    def decode(self, data, charset, final=True):
        """*data* as text in *charset*; undecodable bytes become U+FFFD.
        Not *final*: *data* was cut, and a character cut short is dropped."""
        codec = _codec(charset)
        if codec is None:
            self.flag("charset_unknown")
            codec = "utf-8"
        codec, data = _byte_order(codec, data)
        decoder = codecs.getincrementaldecoder(codec)
        try:
            text = decoder().decode(data, final)
        except UnicodeError:
            self.flag("decode_error")
            text = decoder("replace").decode(data, final)
        return self.clean(text)

    def clean(self, text):
        """*text* without NUL or lone surrogates (left by surrogateescape)."""
        if "\0" in text:
            self.flag("nul")
            text = text.replace("\0", "\ufffd")
        if _SURROGATE.search(text):
            self.flag("decode_error")
            text = _SURROGATE.sub("\ufffd", text)
        return text


_SURROGATE = re.compile("[\ud800-\udfff]")
_CHARSET = re.compile(r"[a-z0-9][a-z0-9_.:+-]{0,63}")
# Codecs that are no mail charsets and are slow or raise on hostile input.
_UNSAFE_CODECS = frozenset({"idna", "punycode", "unicode-escape", "raw-unicode-escape"})
# Mailers label GBK text GB2312; GBK is a superset.
_CODEC_ALIASES = {"gb2312": "gbk"}
# UTF-16 and UTF-32 without a byte order mark are little-endian, as mail
# clients and browsers read them (the WHATWG Encoding Standard); Python's
# own decoders of these labels refuse text without a mark.
_BYTE_ORDER_MARKS = {
    "utf-16": ((codecs.BOM_UTF16_BE, "utf-16-be"), (codecs.BOM_UTF16_LE, "utf-16-le")),
    "utf-32": ((codecs.BOM_UTF32_BE, "utf-32-be"), (codecs.BOM_UTF32_LE, "utf-32-le")),
}


def _byte_order(codec, data):
    """The codec of fixed byte order for *data* in *codec*, and *data*
    without its byte order mark."""
    marks = _BYTE_ORDER_MARKS.get(codec)
    if marks is None:
        return codec, data
    for mark, name in marks:
        if data.startswith(mark):
            return name, data[len(mark):]
    return marks[1][1], data


@functools.lru_cache(maxsize=256)
def _codec(charset):
    """The name of a safe Python text codec for *charset*, or None."""
    name = charset.strip().lower()
    if not _CHARSET.fullmatch(name):
        return None
    try:
        codec = codecs.lookup(name).name
        b"x".decode(codec, "replace")  # LookupError if it is no text codec
    except (LookupError, UnicodeError):
        return None
    if codec in _UNSAFE_CODECS:
        return None
    return _CODEC_ALIASES.get(codec, codec)


# Header blocks

# The lines of a header block: fields and their folded continuations.
_HEADER_LINES = re.compile(rb"(?:(?:[^\s:]+[ \t]*:|[ \t])[^\n]*(?:\n|\Z))*+")
_BLANK_LINE = re.compile(rb"\r?\n")
# Where an over-long header block ends: after an empty line, or before a
# line that may be a MIME delimiter.
_REST_OF_BLOCK = re.compile(rb"\n(?:\r?\n|(?=--))")
_FIELD = rb"^(%s)[ \t]*:([^\n]*(?:\n[ \t][^\n]*)*)"
_ANY_FIELD = re.compile(_FIELD % rb"[^\s:]+", re.M)
_MIME_FIELD = re.compile(_FIELD % rb"content-(?:type|disposition|transfer-encoding)", re.M | re.I)
_LINE_BREAK = re.compile(rb"\r*\n")


# An mbox "From " line, as forwarded .eml files often begin; not a field
# named "From" with space before its colon.
_FROM_LINE = re.compile(rb"From (?![ \t]*:)[^\n]*(?:\n|\Z)")


def _message_start(data, pos):
    """Where the header block of the message at *pos* begins: after a UTF-8
    byte order mark and an mbox From line, as mail clients skip them."""
    if data.startswith(codecs.BOM_UTF8, pos):
        pos += len(codecs.BOM_UTF8)
    line = _FROM_LINE.match(data, pos)
    return line.end() if line else pos


def _header_block(ctx, data, pos):
    """The header block at *pos* (whole lines, at most header_bytes), and
    where its body begins."""
    limit = min(len(data), pos + ctx.limits.header_bytes)
    end = _HEADER_LINES.match(data, pos, limit).end()
    if limit < len(data) and data.find(b"\n", end, limit) < 0:
        # The line at end runs past the limit: keep the whole lines before.
        ctx.flag("header_block_limit")
        whole = max(data.rfind(b"\n", pos, end) + 1, pos)
        rest = _REST_OF_BLOCK.search(data, max(end - 1, 0))
        return data[pos:whole], rest.end() if rest else len(data)
    blank = _BLANK_LINE.match(data, end)
    if blank:
        return data[pos:end], blank.end()
    if end < len(data):
        ctx.flag("header_separator_missing")
    return data[pos:end], end


def _fields(ctx, block):
    """Every field of a header block, as (name, unfolded value) strings;
    bytes that are not UTF-8 are kept as surrogate escapes."""
    if block[:1] in (b" ", b"\t"):
        ctx.flag("orphan_continuation")
    return _as_text(_ANY_FIELD.findall(block))


def _mime_fields(block):
    """The Content-* fields of a header block, as _fields gives them."""
    return _as_text(_MIME_FIELD.findall(block))


def _as_text(fields):
    return [
        (name.decode("utf-8", "surrogateescape"),
         _LINE_BREAK.sub(b"", value).rstrip(b"\r").decode("utf-8", "surrogateescape"))
        for name, value in fields
    ]


def _first(fields, name):
    """The value of the first field called *name* (lower case), or None."""
    for field, value in fields:
        if field.lower() == name:
            return value
    return None


def _field_values(headers):
    """The first value of each header in _FIELD_KEYS, by its key."""
    fields = dict.fromkeys(_FIELD_KEYS.values())
    for header in headers:
        key = _FIELD_KEYS.get(header.name.lower())
        if key and fields[key] is None:
            fields[key] = header.value
    return fields


# RFC 2047 encoded words

_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")


def _decode_words(ctx, text):
    """*text* with its RFC 2047 encoded words decoded; adjacent words in one
    charset are decoded together, so a character split across them survives."""
    if "=?" not in text:
        return text
    pieces = []  # text, or [charset, bytearray] of decoded words
    last = 0
    for count, word in enumerate(_ENCODED_WORD.finditer(text)):
        if count == ctx.limits.encoded_words:
            ctx.flag("encoded_word_limit")
            break
        gap = text[last:word.start()]
        if gap and not (count and gap.isspace()):
            pieces.append(gap)
        charset = word.group(1).partition("*")[0].lower()
        data = word.group(3).encode("utf-8", "surrogateescape")
        if word.group(2) in "bB":
            data = _base64(ctx, data)
        else:
            data = _quoted_printable(ctx, data, header=True)
        if pieces and isinstance(pieces[-1], list) and pieces[-1][0] == charset:
            pieces[-1][1] += data
        else:
            pieces.append([charset, bytearray(data)])
        last = word.end()
    pieces.append(text[last:])
    return "".join(
        piece if isinstance(piece, str) else ctx.decode(bytes(piece[1]), piece[0])
        for piece in pieces
    )


# Transfer encodings

_BASE64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_NOT_BASE64 = bytes(sorted(set(range(256)) - set(_BASE64_ALPHABET)))
_WHITESPACE = b"\r\n\t "
_BASE64_LAYOUT = b"=" + _WHITESPACE
_BAD_QUOTED_PRINTABLE = re.compile(rb"=(?![0-9A-Fa-f]{2}|\r?\n|\Z)")
_IDENTITY_ENCODINGS = ("", "7bit", "8bit", "binary")
# Up to the first "=" that pads a group of four base64 digits (after two or
# three of them); stray characters are skipped, as is an "=" in a place
# where it pads nothing.
_BASE64_PADDED = re.compile(
    rb"(?:{other}*{digit}{other}*{digit}{nopad}*{digit}{nopad}*{digit})*+"
    rb"{other}*{digit}{other}*{digit}{nopad}*(?:{digit}{nopad}*)?=+".replace(
        b"{digit}", rb"[A-Za-z0-9+/]").replace(
        b"{other}", rb"[^A-Za-z0-9+/]").replace(b"{nopad}", rb"[^A-Za-z0-9+/=]"))
# Base64 made of pieces padded one by one, and one such piece.
_BASE64_PIECES = re.compile(rb"(?:[A-Za-z0-9+/]{4}|[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)*+")
_BASE64_PIECE = re.compile(rb"(?:[A-Za-z0-9+/]{4})*+(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
# Space between characters of one line: text, not base64.
_BASE64_TEXT_IN_LINE = re.compile(rb"[^\s][ \t]+[^\s]")
_UUENCODINGS = frozenset({"x-uuencode", "uuencode", "x-uue", "uue"})
_UU_BEGIN = re.compile(rb"^begin[ \t]+[0-7]{3,4}[ \t]+([^\r\n]*?)[ \t]*\r?$", re.M)
# The line after a begin line that starts a uuencoded block.
_UU_DATA_LINE = re.compile(rb"[!-`][ -`]*\r?(?:\n|\Z)")
_UU_END = re.compile(rb"end[ \t]*")


def _transfer_decode(ctx, body, encoding):
    """The payload of a part from its body as sent."""
    if encoding == "base64":
        return _base64(ctx, body)
    if encoding == "quoted-printable":
        return _quoted_printable(ctx, body)
    if encoding not in _IDENTITY_ENCODINGS:
        ctx.flag("encoding_unknown")
    return body


def _base64(ctx, data):
    """Decode base64 leniently, up to the padding that ends it (RFC 2045
    6.8): what follows is decoded only if it is more base64 (pieces padded
    one by one); other text there (a footer a list server appended) is not."""
    end = _base64_padding_end(data)
    if end is None:
        return _base64_piece(ctx, data)
    first = _base64_piece(ctx, data[:end])
    rest = data[end:]
    if not rest.translate(None, _BASE64_LAYOUT):
        return first
    pieces = rest.translate(None, _WHITESPACE)
    stray = rest.translate(None, _BASE64_ALPHABET + _BASE64_LAYOUT)
    if stray or _BASE64_TEXT_IN_LINE.search(rest) or not _BASE64_PIECES.fullmatch(pieces):
        ctx.flag("base64_trailing_text")
        return first
    return first + b"".join(binascii.a2b_base64(piece.group())
                            for piece in _BASE64_PIECE.finditer(pieces) if piece.group())


def _base64_padding_end(data):
    """Where the padding that ends the first piece of base64 in *data* ends,
    or None if there is none."""
    first = data.find(b"=")
    if first < 0:
        return None
    if len(data[:first].translate(None, _NOT_BASE64)) % 4 in (2, 3):
        # The first "=" pads (as nearly always): found without the regex.
        end = first + 1
        while data.startswith(b"=", end):
            end += 1
        return end
    padding = _BASE64_PADDED.match(data)
    return padding.end() if padding else None


def _base64_piece(ctx, data):
    """Decode one piece of base64 leniently: skip stray characters, mend
    the padding."""
    digits = data.translate(None, _NOT_BASE64)
    stray = data.translate(None, _BASE64_ALPHABET + _BASE64_LAYOUT)
    tail = data.rstrip(b"\r\n\t ")
    text = tail.rstrip(b"=")
    padded = len(tail) - len(text) == -len(digits) % 4
    if stray or b"=" in text or not padded or len(digits) % 4 == 1:
        ctx.flag("base64_error")
    if len(digits) % 4 == 1:  # a lone last digit holds no whole byte
        digits = digits[:-1]
    return binascii.a2b_base64(digits + b"=" * (-len(digits) % 4))


def _uudecode(ctx, data):
    """The payload of a uuencoded body, and the file name of its begin line
    (bytes, or None)."""
    begin = _UU_BEGIN.search(data)
    if begin is None:
        ctx.flag("uuencode_error")
        return _uu_lines(ctx, data, 0)[0], None
    payload, _ = _uu_lines(ctx, data, begin.end())
    return payload, begin.group(1) or None


def _uu_blocks(ctx, payload, part, charset):
    """The text *payload* of *part* without its uuencoded blocks ("begin 644
    name" to "end", as old mailers put files in a text body), and those
    files as attachments."""
    kept, files, pos = [], [], 0
    while (begin := _UU_BEGIN.search(payload, pos)) is not None:
        if not _UU_DATA_LINE.match(payload, min(begin.end() + 1, len(payload))):
            kept.append(payload[pos:begin.end()])
            pos = begin.end()
            continue
        ctx.parts += 1
        if ctx.parts > ctx.limits.parts:
            ctx.flag("part_limit")
            break
        data, end = _uu_lines(ctx, payload, begin.end())
        kept.append(payload[pos:begin.start()])
        name = ctx.decode(begin.group(1), charset) if begin.group(1) else None
        files.append(_attachment(_Part(
            content_type="application/octet-stream", params={}, encoding="x-uuencode",
            disposition="attachment", filename=name, depth=part.depth,
            attached=part.attached), data))
        pos = end
    if not files:
        return payload, ()
    kept.append(payload[pos:])
    return b"".join(kept), files


def _uu_lines(ctx, data, pos):
    """Decode the uuencoded lines from *pos* to an "end" line (flagged if
    there is none) or the end of *data*; the bytes, and where they end.
    Short lines decode to their length in zeros (trailing spaces may have
    been stripped), but never to more bytes in all than were read."""
    decoded = []
    lines = size = 0
    start = pos
    while pos < len(data):
        newline = data.find(b"\n", pos)
        stop = len(data) if newline < 0 else newline + 1
        line = data[pos:stop].rstrip(b"\r\n")
        pos = stop
        if _UU_END.fullmatch(line):
            return b"".join(decoded), pos
        lines += 1
        if lines % 4096 == 0 and ctx.out_of_time():
            break
        if line:
            try:
                decoded.append(binascii.a2b_uu(line))
            except binascii.Error:
                ctx.flag("uuencode_error")
                decoded.append(_uu_lenient(line))
            size += len(decoded[-1])
            if size > pos - start:
                break
    ctx.flag("uuencode_error")
    return b"".join(decoded), pos


def _uu_lenient(line):
    """A uuencoded line whatever its characters: each taken modulo 64, and
    those past the length its first one says ignored."""
    length = (line[0] - 32) & 63
    values = [(c - 32) & 63 for c in line[1:1 + 4 * ((length + 2) // 3)]]
    values += [0] * (-len(values) % 4)
    data = bytearray()
    for i in range(0, len(values), 4):
        a, b, c, d = values[i:i + 4]
        data += bytes(((a << 2 | b >> 4) & 255, (b << 4 | c >> 2) & 255, (c << 6 | d) & 255))
    return bytes(data[:length])


def _quoted_printable(ctx, data, header=False):
    """Decode quoted-printable; an invalid escape is kept as written."""
    if _BAD_QUOTED_PRINTABLE.search(data):
        ctx.flag("quoted_printable_error")
    return binascii.a2b_qp(data, header=header)


# MIME parts

_MESSAGE_TYPES = ("message/rfc822", "message/global")
# type "/" subtype, each an RFC 2045 token: printable ASCII but tspecials.
_MIME_TYPE = re.compile(r"[!#$%&'*+.^_`{|}~0-9a-z-]+/[!#$%&'*+.^_`{|}~0-9a-z-]+")
_PARAMETER_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"?|[^";]+|;', re.S)
_EXTENDED_NAME = re.compile(r"([^*]+)\*(?:(\d{1,4})(\*)?)?")
_QUOTED_PAIR = re.compile(r'\\([\\"])')


@attrs.frozen
class _Part:
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
        return (
            self.content_type in ("text/plain", "text/html")
            and not self.attached
            and self.filename is None
            and self.disposition != "attachment"
        )


def _part(ctx, fields, depth, attached, default="text/plain"):
    """The _Part of an entity with header *fields*; *default* is its type
    when it declares none."""
    declared = _first(fields, "content-type")
    content_type, params = _parameters(ctx, declared)
    if not _MIME_TYPE.fullmatch(content_type):
        if declared is not None:
            ctx.flag("content_type_invalid")
        content_type = default
    disposition, disposition_params = _parameters(ctx, _first(fields, "content-disposition"))
    filename = disposition_params.get("filename") or params.get("name")
    if filename:
        filename = ctx.clean(_decode_words(ctx, filename))
    encoding = (_first(fields, "content-transfer-encoding") or "").strip().lower()
    return _Part(
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


def _attachment(part, payload):
    return Attachment(
        filename=part.filename,
        content_type=part.content_type,
        disposition=part.disposition,
        payload=payload,
        size=len(payload),
        md5=hashlib.md5(payload, usedforsecurity=False).hexdigest(),
        sha1=hashlib.sha1(payload, usedforsecurity=False).hexdigest(),
        sha256=hashlib.sha256(payload).hexdigest(),
    )


# The MIME walk

# RFC 2046 allows 70 characters; a longer boundary would make a costly pattern.
_MAX_BOUNDARY = 200


@functools.lru_cache(maxsize=64)
def _delimiter_pattern(boundary):
    """A delimiter line of *boundary*, with the newline before it; group 1
    is set on a close delimiter."""
    return re.compile(b"\n--" + re.escape(boundary) + rb"(--)?[ \t]*\r?(?=\n|\Z)")


class _Multipart:
    """A multipart being read, and a cache of where its next delimiter is,
    so that each byte is searched once per open multipart."""

    def __init__(self, part, boundary, start):
        self.part = part
        self.boundary = boundary
        self.pattern = _delimiter_pattern(boundary)
        self.start = start
        self.parts = 0
        self._hit = None
        self._searched = (-1, -1)

    @property
    def child_type(self):
        if self.part.content_type == "multipart/digest":
            return "message/rfc822"
        return "text/plain"

    def delimiter(self, data, pos, end):
        """The first delimiter line in data[pos:end], or None."""
        low, high = self._searched
        hit = self._hit
        if low > pos or (hit.start() < pos if hit else high < end):
            hit = self._hit = self.pattern.search(data, pos, end)
            self._searched = (pos, end)
        return hit if hit and hit.end() <= end else None


class _Walker:
    """The leaves of a MIME tree, read without recursion."""

    def __init__(self, ctx, data):
        self.ctx = ctx
        self.data = data
        self.open = []  # the multiparts being read, outermost first
        self.leaf = None  # (part, start) of the leaf being read

    def leaves(self, top, start):
        """Yield (part, body bytes) for every leaf, in MIME order."""
        ctx, data = self.ctx, self.data
        pos = self._enter(top, start)
        while self.open:
            if ctx.out_of_time():
                return
            found = self._next_delimiter(pos - 1)
            if found is None:
                break
            index, hit = found
            # The line break before a delimiter belongs to the delimiter.
            cut = hit.start() - data.endswith(b"\r", 0, hit.start())
            yield from self._end_leaf(cut)
            if index + 1 < len(self.open):
                ctx.flag("close_boundary_missing")
                yield from self._close(index + 1, cut)
            pos = min(hit.end() + 1, len(data))
            if hit.group(1):
                yield from self._close(index, cut)
                continue
            ctx.parts += 1
            if ctx.parts > ctx.limits.parts:
                ctx.flag("part_limit")
                return
            multipart = self.open[index]
            multipart.parts += 1
            block, pos = _header_block(ctx, data, pos)
            part = _part(ctx, _mime_fields(block), multipart.part.depth + 1,
                         multipart.part.attached, multipart.child_type)
            pos = self._enter(part, pos)
        yield from self._end_leaf(len(data))
        if self.open:
            ctx.flag("close_boundary_missing")
            yield from self._close(0, len(data))

    def _enter(self, part, start):
        """Begin reading *part*, whose body begins at *start*; return where
        its content begins (after the header of an attached message)."""
        ctx = self.ctx
        while part.content_type in _MESSAGE_TYPES and part.encoding in _IDENTITY_ENCODINGS:
            if part.depth >= ctx.limits.depth:
                ctx.flag("depth_limit")
                return start
            block, start = _header_block(ctx, self.data, _message_start(self.data, start))
            part = _part(ctx, _mime_fields(block), part.depth + 1, True)
        if part.content_type.startswith("multipart/"):
            boundary = part.params.get("boundary", "").encode("utf-8", "surrogateescape")
            if not 0 < len(boundary) <= _MAX_BOUNDARY:
                ctx.flag("boundary_missing")
                part = attrs.evolve(part, content_type="text/plain")
            elif part.depth >= ctx.limits.depth:
                ctx.flag("depth_limit")
                return start
            else:
                self._open_multipart(part, boundary, start)
                return start
        self.leaf = (part, start)
        return start

    def _open_multipart(self, part, boundary, start):
        """Begin reading the parts of a multipart."""
        if part.encoding not in _IDENTITY_ENCODINGS:
            self.ctx.flag("multipart_encoding_invalid")
        if any(other.boundary == boundary for other in self.open):
            self.ctx.flag("boundary_reused")
        self.open.append(_Multipart(part, boundary, start))

    def _next_delimiter(self, pos):
        """(index in self.open, match) of the first delimiter line after
        *pos*; the innermost multipart wins a line all of them could claim."""
        found = None
        end = len(self.data)
        for index, multipart in enumerate(self.open):
            hit = multipart.delimiter(self.data, pos, end)
            if hit:
                found = index, hit
                end = hit.end()
        return found

    def _end_leaf(self, end):
        """Yield the leaf being read, up to *end*, if there is one."""
        if self.leaf is not None:
            part, start = self.leaf
            self.leaf = None
            yield part, self.data[start:max(start, end)]

    def _close(self, index, end):
        """End the multiparts from *index* on; one that never had a part is
        read as text."""
        closed = self.open[index:]
        del self.open[index:]
        if closed and closed[-1].parts == 0:
            self.ctx.flag("boundary_missing")
            multipart = closed[-1]
            part = attrs.evolve(multipart.part, content_type="text/plain")
            yield part, self.data[multipart.start:max(multipart.start, end)]


def _join(ctx, texts):
    """The body texts of one kind, one after the other, cut at the limit."""
    text = "\n".join(text for text in texts if text)
    if len(text) > ctx.limits.body_chars:
        ctx.flag("body_limit")
        text = text[:ctx.limits.body_chars]
    return text


# Received fields

_RECEIVED_KEYWORDS = frozenset({"from", "by", "via", "with", "id", "for"})
_RECEIVED_TOKEN = re.compile(r"[()]|[^\s()]+")
_BRACKETED_IP = re.compile(r"\[(?:IPv6:)?([0-9A-Fa-f:.]+)\]", re.I)
_BARE_IP = re.compile(r"(?<![\w.:-])(?:IPv6:)?([0-9A-Fa-f:.]++)(?![\w.:-])", re.I)


def _received(value):
    """Read the clauses of a Received field value."""
    text, semicolon, date = value.rpartition(";")
    if not semicolon:
        text, date = value, ""
    clauses = _received_clauses(text)
    word = {key: first for key, (first, _) in clauses.items()}
    return Received(
        raw=value.strip(),
        from_host=word.get("from"),
        from_ip=_first_ip(clauses["from"][1]) if "from" in clauses else None,
        by_host=word.get("by"),
        protocol=word.get("with"),
        id=word.get("id"),
        for_=word["for"].strip("<>") if word.get("for") else None,
        date=_iso_date(date.strip()),
    )


def _received_clauses(text):
    """Each keyword of a Received value (outside comments) -> (the word after
    it, or None, and the text of its clause, comments included)."""
    marks = []  # [keyword, first word, keyword start, clause start]
    depth = 0
    for token in _RECEIVED_TOKEN.finditer(text):
        word = token.group()
        if word == "(":
            depth += 1
        elif word == ")":
            depth = max(depth - 1, 0)
        elif depth == 0 and word.lower() in _RECEIVED_KEYWORDS:
            marks.append([word.lower(), None, token.start(), token.end()])
        elif depth == 0 and marks and marks[-1][1] is None:
            marks[-1][1] = word.rstrip(";,") or None
    clauses = {}
    for index, (key, word, _, start) in enumerate(marks):
        end = marks[index + 1][2] if index + 1 < len(marks) else len(text)
        clauses.setdefault(key, (word, text[start:end]))
    return clauses


def _first_ip(text):
    """The first IP address literal in *text*, preferring a bracketed one."""
    for pattern in (_BRACKETED_IP, _BARE_IP):
        for candidate in pattern.finditer(text):
            try:
                return str(ipaddress.ip_address(candidate.group(1)))
            except ValueError:
                continue
    return None


def _iso_date(text):
    """An RFC 5322 date as ISO 8601 in UTC, or None."""
    if not text or len(text) > 200:
        return None
    try:
        when = parsedate_to_datetime(text)
        if when.tzinfo is None:  # "-0000": UTC, origin unknown
            when = when.replace(tzinfo=timezone.utc)
        return when.astimezone(timezone.utc).isoformat()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


# Addresses

_QUOTED_STRING = re.compile(r'"(?:[^"\\]|\\.)*"?', re.S)
_COMMENT_TOKEN = re.compile(r"[()]|[^()]+")
_ANGLE_ADDRESS = re.compile(r"<([^<>]*)>")
_ADDR_SPEC = re.compile(r"[^@\s]+@[^@\s]+")


def _addresses(ctx, fields):
    """(kind, address) for each address in the To and Cc fields."""
    found = {}
    for name, value in fields:
        kind = name.lower()
        if kind in ("to", "cc"):
            for address in _address_list(ctx.clean(value)):
                found.setdefault((kind, address), None)
    return tuple(found)


def _address_list(value):
    """The addr-specs of an address-list field value, lower-cased."""
    value = _strip_comments(_QUOTED_STRING.sub(" ", value))
    for item in value.split(","):
        angles = _ANGLE_ADDRESS.findall(item)
        for word in angles[-1:] if angles else item.split():
            address = word.rpartition(":")[2].strip().strip(";").lower()
            if _ADDR_SPEC.fullmatch(address):
                yield address


def _strip_comments(text):
    kept = []
    depth = 0
    for token in _COMMENT_TOKEN.finditer(text):
        piece = token.group()
        if piece == "(":
            depth += 1
        elif piece == ")":
            depth = max(depth - 1, 0)
        elif depth == 0:
            kept.append(piece)
    return "".join(kept)


# URLs

_TEXT_URL = re.compile(r"""(?:(?:https?|ftp)://|www\.)[^\s<>"'`]+""", re.I)
_URL_TRAILER = ".,;:!?)]}'\""
# Attributes whose value is a URL (or, for srcset and ping, several; for
# content, a meta refresh's "0; url=...").
_HTML_URL = re.compile(
    r"""(?<![\w:-])(href|src|background|action|formaction|poster|cite|longdesc|"""
    r"""lowsrc|dynsrc|codebase|data|xlink:href|srcset|ping|content)"""
    r"""\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""", re.I)
_CSS_URL = re.compile(
    r"""(?:url\(\s*(?:"([^"]*)"|'([^']*)'|([^)"'\s]*))\s*\)|@import\s+(?:"([^"]*)"|'([^']*)'))""",
    re.I)
_REFRESH_URL = re.compile(r"""url\s*=\s*['"]?([^'"\s]+)""", re.I)
_ABSOLUTE_URL = re.compile(r"\s*(?:https?|ftp)://", re.I)
_TAG = re.compile(r"<[^<>]*>")
# What a browser drops from a URL: tab and newline anywhere, and control
# characters and space at either end (the WHATWG URL Standard).
_URL_TAB_OR_NEWLINE = re.compile(r"[\t\n\r]")
_URL_ENDS = "".join(map(chr, range(0x21)))
_AUTHORITY = re.compile(r"(?:[a-z][a-z0-9+.-]*:)?//([^/?#\\\s]*)|(www\.[^/?#\\\s]*)", re.I)


def _urls(ctx, text, markup):
    """The distinct URLs of the body text and of the HTML (attributes, CSS,
    and its text)."""
    found = {}
    for source, urls in (("text", _text_urls(text)), ("html", _html_urls(markup))):
        for url in urls:
            if url in found:
                continue
            if len(found) == ctx.limits.urls:
                ctx.flag("url_limit")
                return tuple(found.values())
            if ctx.out_of_time():
                return tuple(found.values())
            found[url] = Url(url, _host(url), source)
    return tuple(found.values())


def _text_urls(text):
    """URLs written in plain text, without trailing punctuation."""
    for match in _TEXT_URL.finditer(text):
        yield match.group().rstrip(_URL_TRAILER)


def _html_urls(markup):
    """The URLs of HTML: in attributes (entities decoded), in CSS url() and
    @import, and written in its text; each as a browser would follow it."""
    for match in _HTML_URL.finditer(markup):
        name = match.group(1).lower()
        value = html.unescape(match.group(match.lastindex))
        if name == "srcset":
            values = [candidate.split()[0] for candidate in value.split(",")
                      if candidate.split()]
        elif name == "ping":
            values = value.split()
        elif name == "content":
            refresh = _REFRESH_URL.search(value)
            values = ([refresh.group(1)] if refresh
                      else [value] if _ABSOLUTE_URL.match(value) else [])
        else:
            values = [value]
        yield from filter(None, map(_as_followed, values))
    # Entities are decoded before CSS is read in an attribute; CSS in a
    # style element holds none that matter.
    for match in _CSS_URL.finditer(html.unescape(markup)):
        url = _as_followed(match.group(match.lastindex) or "")
        if url:
            yield url
    yield from _text_urls(html.unescape(_TAG.sub(" ", markup)))


def _as_followed(url):
    """*url* as a browser reads it from an attribute."""
    return _URL_TAB_OR_NEWLINE.sub("", url).strip(_URL_ENDS)


def _host(url):
    """The host of *url* in lower case, without userinfo or port."""
    match = _AUTHORITY.match(url)
    if match is None:
        return None
    authority = match.group(match.lastindex).rpartition("@")[2]
    if authority.startswith("["):
        host = authority[1:].partition("]")[0]
    else:
        host = authority.partition(":")[0]
    return host.lower() or None
