"""Transfer encodings: base64, quoted-printable and uuencode undone.

Each decoder reads what a mail client would and flags what is not valid,
keeping what could be decoded (``base64_error``,
``quoted_printable_error``, ``uuencode_error``).  Base64 ends at the padding
that ends it (RFC 2045 6.8): stray characters before are skipped, and what
follows is decoded only if it is more base64 padded piece by piece; text
there, a footer a list server appended, is not (``base64_trailing_text``).
An invalid quoted-printable escape is kept as written.  A uuencoded body is
read from its ``begin`` line to its ``end`` line, a line of characters out
of place as far as its length says, and never to more bytes than were
read.  An encoding none of these (nor 7bit, 8bit, binary) is
``encoding_unknown``, its payload kept as it came.

The same base64 and quoted-printable decoders serve RFC 2047 encoded words
(:func:`~smtplatrine.parse.headers.decode_words`).
"""

import binascii
import re

_BASE64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_NOT_BASE64 = bytes(sorted(set(range(256)) - set(_BASE64_ALPHABET)))
_WHITESPACE = b"\r\n\t "
_BASE64_LAYOUT = b"=" + _WHITESPACE
_BAD_QUOTED_PRINTABLE = re.compile(rb"=(?![0-9A-Fa-f]{2}|\r?\n|\Z)")
IDENTITY_ENCODINGS = ("", "7bit", "8bit", "binary")
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
_EQUALS_RUN = re.compile(b"=*")
# Base64 is read a mebibyte at a time (a large part is never copied whole).
_CHUNK = 1 << 20
# Space between characters of one line: text, not base64.
_BASE64_TEXT_IN_LINE = re.compile(rb"[^\s][ \t]+[^\s]")
UUENCODINGS = frozenset({"x-uuencode", "uuencode", "x-uue", "uue"})
UU_BEGIN = re.compile(rb"^begin[ \t]+[0-7]{3,4}[ \t]+([^\r\n]*?)[ \t]*\r?$", re.M)
# The line after a begin line that starts a uuencoded block.
UU_DATA_LINE = re.compile(rb"[!-`][ -`]*\r?(?:\n|\Z)")
_UU_END = re.compile(rb"end[ \t]*")


def transfer_decode(ctx, body, encoding):
    """The payload of a part from its body as sent."""
    if encoding == "base64":
        return decode_base64(ctx, body)
    if encoding == "quoted-printable":
        return decode_quoted_printable(ctx, body)
    if encoding not in IDENTITY_ENCODINGS:
        ctx.flag("encoding_unknown")
    return body


def decode_base64(ctx, data):
    """Decode base64 leniently, up to the padding that ends it (RFC 2045
    6.8): what follows is decoded only if it is more base64 (pieces padded
    one by one); other text there (a footer a list server appended) is not.
    *data* is bytes-like; so is what it returns (a bytearray)."""
    decoded = bytearray()
    for chunk in base64_chunks(ctx, data):
        decoded += chunk
    return decoded


def base64_chunks(ctx, data):
    """:func:`decode_base64`, a chunk of bytes at a time (its flags set
    once the last is read), so that a large payload need never be whole."""
    end = _base64_padding_end(data)
    if end is None:
        yield from _base64_piece(ctx, data)
        return
    yield from _base64_piece(ctx, memoryview(data)[:end])
    rest = bytes(memoryview(data)[end:])
    pieces = rest.translate(None, _WHITESPACE)
    if not pieces:
        return
    if not pieces.translate(None, b"="):
        ctx.flag("base64_error")  # padding too long, if on the next line
        return
    if _BASE64_TEXT_IN_LINE.search(rest) or not _BASE64_PIECES.fullmatch(pieces):
        ctx.flag("base64_trailing_text")
        return
    yield from (binascii.a2b_base64(piece.group())
                for piece in _BASE64_PIECE.finditer(pieces) if piece.group())


def _base64_padding_end(data):
    """Where the padding that ends the first piece of base64 in *data* ends,
    or None if there is none."""
    first = _find(data, b"=")
    if first < 0:
        return None
    if _digits(memoryview(data)[:first]) % 4 in (2, 3):
        # The first "=" pads (as nearly always): found without the regex.
        return _EQUALS_RUN.match(data, first).end()
    padding = _BASE64_PADDED.match(data)
    return padding.end() if padding else None


def _base64_piece(ctx, data):
    """Decode one piece of base64 leniently, a chunk at a time: skip stray
    characters, mend the padding."""
    digits, stray, first_equals = b"", False, -1
    for start, chunk in _chunks(data):
        stray = stray or bool(chunk.translate(None, _BASE64_ALPHABET + _BASE64_LAYOUT))
        if first_equals < 0 and (found := chunk.find(b"=")) >= 0:
            first_equals = start + found
        digits += chunk.translate(None, _NOT_BASE64)
        whole = len(digits) - len(digits) % 4
        yield binascii.a2b_base64(digits[:whole])
        digits = digits[whole:]
    # The digits left over are as many, modulo 4, as there are in all.
    view = memoryview(data)
    tail = _stripped_end(view, b"\r\n\t ", len(view))
    text = _stripped_end(view, b"=", tail)
    if stray or 0 <= first_equals < text or tail - text != -len(digits) % 4 or len(digits) == 1:
        ctx.flag("base64_error")
    if len(digits) == 1:  # a lone last digit holds no whole byte
        digits = b""
    yield binascii.a2b_base64(digits + b"=" * (-len(digits) % 4))


def _chunks(data):
    """The bytes-like *data* as bytes, a chunk at a time: (where each
    begins, the chunk)."""
    view = memoryview(data)
    return ((start, bytes(view[start:start + _CHUNK])) for start in range(0, len(view), _CHUNK))


def _find(data, byte):
    """Where *byte* is first in the bytes-like *data*, or -1."""
    return next((start + found for start, chunk in _chunks(data)
                 if (found := chunk.find(byte)) >= 0), -1)


def _digits(data):
    """How many base64 digits *data* holds."""
    return sum(len(chunk.translate(None, _NOT_BASE64)) for _, chunk in _chunks(data))


def _stripped_end(view, chars, end):
    """Where view[:end] ends once the bytes *chars* are stripped from its end."""
    while end:
        start = max(0, end - _CHUNK)
        kept = len(bytes(view[start:end]).rstrip(chars))
        if kept:
            return start + kept
        end = start
    return 0


def uudecode(ctx, data):
    """The payload of a uuencoded body, and the file name of its begin line
    (bytes, or None)."""
    begin = UU_BEGIN.search(data)
    if begin is None:
        ctx.flag("uuencode_error")
        return uu_lines(ctx, data, 0)[0], None
    payload, _ = uu_lines(ctx, data, begin.end())
    return payload, begin.group(1) or None


def uu_lines(ctx, data, pos):
    """Decode the uuencoded lines from *pos* to an "end" line (flagged if
    there is none) or the end of *data*; the bytes, and where they end.
    Short lines decode to their length in zeros (trailing spaces may have
    been stripped), but never to more bytes in all than were read.  The
    time budget is read every 4,096 lines: once spent, what was decoded
    before is kept."""
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


def decode_quoted_printable(ctx, data, header=False):
    """Decode quoted-printable; an invalid escape is kept as written."""
    if _BAD_QUOTED_PRINTABLE.search(data):
        ctx.flag("quoted_printable_error")
    return binascii.a2b_qp(data, header=header)
