"""The MIME walk: every leaf of a message, in order, without recursion.

:func:`leaves` yields each leaf part with its payload, its transfer
encoding undone.  Each multipart's delimiter lines are found with one
regular expression per boundary, searched once over each byte while the
multipart is open, and each part's header block is read in place; attached
messages (message/rfc822 and message/global, however they are
transfer-encoded) are walked into, as mail clients show them.  A deep or
wide message costs time in proportion to its size, never stack; depth, the
number of parts and the time budget bound it (``depth_limit``,
``part_limit``, ``time_limit``).

A multipart is read as a mail client reads it: one of an unknown subtype
as multipart/mixed; one without a usable boundary, or whose delimiters
never came, as text (``boundary_missing``); a delimiter line is the
innermost multipart's when several could claim it (``boundary_reused``);
one left open ends where an enclosing one goes on, or at the end
(``close_boundary_missing``).

:func:`uu_blocks` finds the files that old mailers uuencoded into a text
body (``begin 644 name`` to ``end``): each is an attachment of its own.
"""

import functools
import re

import attrs

from smtplatrine.parse.headers import header_block, message_start, mime_fields
from smtplatrine.parse.mime import MESSAGE_TYPES, Part, attachment, read_part
from smtplatrine.parse.records import Streamed
from smtplatrine.parse.transfer import (IDENTITY_ENCODINGS, UU_BEGIN, UU_DATA_LINE, UUENCODINGS,
                                        base64_chunks, transfer_decode, uu_lines, uudecode)

# RFC 2046 allows 70 characters; a longer boundary would make a costly pattern.
_MAX_BOUNDARY = 200
# Base64 attachments longer than this are decoded as they are read (Streamed).
STREAMED = 4 * 2 ** 20


def leaves(ctx, raw, top, start):
    """Yield (part, payload) for every leaf of the message *raw* (bytes,
    or an mmap of them), its transfer encoding undone; an attached message
    that is itself encoded (base64, say) is decoded and walked into like
    any other.  A payload is bytes-like (one sent as it is, a memoryview
    of *raw*), so that a large message is not copied, or, for a large
    base64 attachment, :class:`~smtplatrine.parse.records.Streamed`."""
    walks = [_Walker(ctx, raw).leaves(top, start)]
    while walks:
        item = next(walks[-1], None)
        if item is None:
            walks.pop()
            continue
        if ctx.out_of_time():
            return
        part, body = item
        if part.encoding in UUENCODINGS:
            payload, name = uudecode(ctx, bytes(body))
            if part.filename is None and name:
                part = attrs.evolve(part, filename=ctx.decode(name, "utf-8"))
        elif _streamed(part, body):
            payload = Streamed(functools.partial(base64_chunks, ctx, body))
        else:
            payload = transfer_decode(ctx, body, part.encoding)
        if part.content_type in MESSAGE_TYPES:
            walks.append(_Walker(ctx, bytes(payload)).leaves(attrs.evolve(part, encoding=""), 0))
            continue
        yield part, payload


def _streamed(part, body):
    """Whether the leaf *part* is a large base64 attachment that nothing
    reads but its hashes and its file (no text, no attached message)."""
    return (part.encoding == "base64" and len(body) > STREAMED and not part.is_body
            and part.content_type not in (*MESSAGE_TYPES, "text/plain"))


def uu_blocks(ctx, payload, part, charset):
    """The text *payload* of *part* without its uuencoded blocks ("begin 644
    name" to "end", as old mailers put files in a text body), and those
    files as attachments."""
    if UU_BEGIN.search(payload) is None:
        return payload, ()
    payload = bytes(payload)
    kept, files, pos = [], [], 0
    while (begin := UU_BEGIN.search(payload, pos)) is not None:
        if not UU_DATA_LINE.match(payload, min(begin.end() + 1, len(payload))):
            kept.append(payload[pos:begin.end()])
            pos = begin.end()
            continue
        ctx.parts += 1
        if ctx.parts > ctx.limits.parts:
            ctx.flag("part_limit")
            break
        data, end = uu_lines(ctx, payload, begin.end())
        kept.append(payload[pos:begin.start()])
        name = ctx.decode(begin.group(1), charset) if begin.group(1) else None
        files.append(attachment(Part(
            content_type="application/octet-stream", params={}, encoding="x-uuencode",
            disposition="attachment", filename=name, depth=part.depth,
            attached=part.attached), data))
        pos = end
    if not files:
        return payload, ()
    kept.append(payload[pos:])
    return b"".join(kept), files


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
        self.view = memoryview(data)
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
            cut = hit.start() - (data[hit.start() - 1:hit.start()] == b"\r")
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
            block, pos = header_block(ctx, data, pos)
            part = read_part(ctx, mime_fields(block), multipart.part.depth + 1,
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
        while part.content_type in MESSAGE_TYPES and part.encoding in IDENTITY_ENCODINGS:
            if part.depth >= ctx.limits.depth:
                ctx.flag("depth_limit")
                return start
            block, start = header_block(ctx, self.data, message_start(self.data, start))
            part = read_part(ctx, mime_fields(block), part.depth + 1, True)
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
        if part.encoding not in IDENTITY_ENCODINGS:
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
            yield part, self.view[start:max(start, end)]

    def _close(self, index, end):
        """End the multiparts from *index* on; one that never had a part is
        read as text."""
        closed = self.open[index:]
        del self.open[index:]
        if closed and closed[-1].parts == 0:
            self.ctx.flag("boundary_missing")
            multipart = closed[-1]
            part = attrs.evolve(multipart.part, content_type="text/plain")
            yield part, self.view[multipart.start:max(multipart.start, end)]
