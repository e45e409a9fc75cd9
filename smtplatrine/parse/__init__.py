"""Parse one captured message into a record for the store.

:func:`parse` reads the raw bytes of a message, as hostile and malformed as
they come, and never raises: whatever it cannot read becomes a defect flag
(all listed, with what each means, in :mod:`smtplatrine.parse.records`).
It is bounded by :class:`Limits` (bytes of a header block, MIME depth and
parts, encoded words, body characters, URLs, and a time budget checked as
it goes), and walks the MIME tree without recursion, so a deep or wide
message costs time in proportion to its size, never stack.  It is
CPU-bound: run it in a thread.

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

Its modules, each importing only those listed after it:

``walk``       the MIME walk: every leaf and its payload, uuencoded files
``mime``       a MIME entity's type, parameters, encoding and file name
``received``   the clauses of Received fields
``addresses``  the addresses of To and Cc
``urls``       the URLs of the body text and HTML
``headers``    header blocks and fields, RFC 2047 encoded words, RFC 5322
               quoted strings and comments
``transfer``   base64, quoted-printable and uuencode
``text``       charsets and codecs, and the context of one parse
``records``    what parse returns, its limits, the defect flags
"""

from smtplatrine.parse.addresses import read_addresses
from smtplatrine.parse.headers import (decode_words, field_values, header_block, message_start,
                                       read_fields)
from smtplatrine.parse.mime import attachment, read_part
from smtplatrine.parse.received import read_received
from smtplatrine.parse.records import (DEFECTS, Attachment, Header, Limits, Parsed, Received,
                                       Streamed, Url, payload_chunks, unparsed)
from smtplatrine.parse.text import Context
from smtplatrine.parse.urls import find_urls
from smtplatrine.parse.walk import leaves, uu_blocks

__all__ = ["DEFECTS", "Attachment", "Header", "Limits", "Parsed", "Received", "Streamed", "Url",
           "parse", "payload_chunks", "unparsed"]


def parse(raw, limits=Limits()):
    """Read the message *raw* (bytes, or an mmap of a file) into a
    :class:`Parsed`; never raises."""
    ctx = Context(limits)
    block, start = header_block(ctx, raw, message_start(raw, 0))
    fields = read_fields(ctx, block)
    headers = tuple(
        Header(ctx.clean(name), ctx.clean(decode_words(ctx, value).strip()))
        for name, value in fields
    )
    received = tuple(
        read_received(ctx.clean(value))
        for name, value in fields if name.lower() == "received"
    )
    addresses = read_addresses(ctx, fields)
    texts = {"text/plain": [], "text/html": []}
    attachments = []
    for part, payload in leaves(ctx, raw, read_part(ctx, fields, 0, False), start):
        charset = part.params.get("charset") or "utf-8"
        files = ()
        if part.content_type == "text/plain" and part.filename is None:
            text, files = uu_blocks(ctx, payload, part, charset)
            if part.is_body:
                payload = text
        if part.is_body:
            # No charset takes more than four bytes a character: decode no
            # more than the body could keep.
            cut = len(payload) > 4 * ctx.limits.body_chars
            if cut:
                ctx.flag("body_limit")
                payload = payload[:4 * ctx.limits.body_chars]
            texts[part.content_type].append(ctx.decode(bytes(payload), charset, final=not cut))
        else:
            attachments.append(attachment(part, payload))
        attachments.extend(files)
    body_text = _join(ctx, texts["text/plain"])
    body_html = _join(ctx, texts["text/html"])
    urls = find_urls(ctx, body_text, body_html)
    return Parsed(
        fields=field_values(headers),
        headers=headers,
        received=received,
        body_text=body_text,
        body_html=body_html,
        urls=urls,
        attachments=tuple(attachments),
        addresses=addresses,
        defects=tuple(sorted(ctx.flags)),
    )


def _join(ctx, texts):
    """The body texts of one kind, one after the other, cut at the limit."""
    text = "\n".join(text for text in texts if text)
    if len(text) > ctx.limits.body_chars:
        ctx.flag("body_limit")
        text = text[:ctx.limits.body_chars]
    return text
