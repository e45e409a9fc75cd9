"""Header blocks and fields (RFC 5322), and RFC 2047 encoded words.

A header block is read as whole lines, fields and their folded
continuations, up to ``Limits.header_bytes``; it ends at the empty line, or
at the first line that is no field (``header_separator_missing``: the body
begins there).  A message may begin with a UTF-8 byte order mark and an
mbox ``From`` line, as forwarded ``.eml`` files do; both are skipped.
Field values are unfolded and kept as text, bytes that are not UTF-8 as
surrogate escapes until :meth:`~smtplatrine.parse.text.Context.clean`
replaces them.

Also here, for the readers of structured fields (Received, address lists,
MIME parameters): RFC 5322 quoted strings and comments.
"""

import codecs
import re

from smtplatrine.parse.records import FIELD_KEYS
from smtplatrine.parse.transfer import decode_base64, decode_quoted_printable

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


def message_start(data, pos):
    """Where the header block of the message at *pos* begins: after a UTF-8
    byte order mark and an mbox From line, as mail clients skip them."""
    if data[pos:pos + len(codecs.BOM_UTF8)] == codecs.BOM_UTF8:
        pos += len(codecs.BOM_UTF8)
    line = _FROM_LINE.match(data, pos)
    return line.end() if line else pos


def header_block(ctx, data, pos):
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


def read_fields(ctx, block):
    """Every field of a header block, as (name, unfolded value) strings;
    bytes that are not UTF-8 are kept as surrogate escapes."""
    if block[:1] in (b" ", b"\t"):
        ctx.flag("orphan_continuation")
    return _as_text(_ANY_FIELD.findall(block))


def mime_fields(block):
    """The Content-* fields of a header block, as read_fields gives them."""
    return _as_text(_MIME_FIELD.findall(block))


def _as_text(fields):
    return [
        (name.decode("utf-8", "surrogateescape"),
         _LINE_BREAK.sub(b"", value).rstrip(b"\r").decode("utf-8", "surrogateescape"))
        for name, value in fields
    ]


def first_value(fields, name):
    """The value of the first field called *name* (lower case), or None."""
    for field, value in fields:
        if field.lower() == name:
            return value
    return None


def field_values(headers):
    """The first value of each header in FIELD_KEYS, by its key."""
    fields = dict.fromkeys(FIELD_KEYS.values())
    for header in headers:
        key = FIELD_KEYS.get(header.name.lower())
        if key and fields[key] is None:
            fields[key] = header.value
    return fields


# An RFC 5322 quoted string, its closing quote optional.
QUOTED_STRING = re.compile(r'"(?:[^"\\]|\\.)*"?', re.S)
_PARENTHESIS = re.compile(r"[()]")


def uncommented(text):
    """(start, end) of each run of *text* outside RFC 5322 comments (which
    nest); a ")" that closes nothing is dropped, and a "(" that is never
    closed comments out the rest."""
    depth = last = 0
    for parenthesis in _PARENTHESIS.finditer(text):
        at = parenthesis.start()
        if depth == 0 and last < at:
            yield last, at
        depth = depth + 1 if text[at] == "(" else max(depth - 1, 0)
        last = at + 1
    if depth == 0 and last < len(text):
        yield last, len(text)


# RFC 2047 encoded words

_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")


def decode_words(ctx, text):
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
            data = decode_base64(ctx, data)
        else:
            data = decode_quoted_printable(ctx, data, header=True)
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
