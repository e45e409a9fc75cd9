"""The bytes of an SMTP connection cut into what a session reads.

A :class:`Framer` is fed what one connection sends (:meth:`Framer.feed`)
and gives it back as the session asks, in the mode the session is in:
command lines (:meth:`Framer.line`), a DATA body (:meth:`Framer.start_data`,
then :meth:`Framer.data`) or a BDAT chunk (:meth:`Framer.start_chunk`, then
:meth:`Framer.chunk`), the last two in :class:`Piece` pieces.  Only the
session's reply tells what the next bytes are (a refused DATA leaves them
commands), so the framer never changes mode by itself; it has no reactor,
transport or clock, and never raises.  What it finds amiss it reports as it
finds it, by name, to the ``flag`` callable it was given.

It reads as Postfix 3.7's smtpd does (``smtp_get`` with
``line_length_limit``, *limit* below):

- A command line ends at LF, and every CR before that LF is removed.  A
  line longer than *limit* is cut to it, and the rest of it, up to its LF,
  skipped; a line cut so keeps its CRs.  A line whose *limit* bytes end in
  a CR that its LF follows is whole: Postfix mends a CRLF that its bound
  split.  An unfinished line holds at most *limit* bytes.
- DATA ends at a line that is a dot alone, lines ending at LF with or
  without CR: CRLF "." CRLF, but also LF "." LF, CRLF "." LF and LF "."
  CRLF (the SMTP smuggling variants: Postfix 3.7.11 takes them), and with
  more CRs before the last LF (CRLF "." CR CR LF), as many as make a line
  of *limit* bytes (the mended CRLF again); what follows is commands.  A
  dot that begins a line after CRLF is removed (RFC 5321 4.5.2); after a
  bare LF it is kept, as are all other bytes: the message is kept as sent.
  A data piece holds what was read but for at most the few bytes that may
  begin the end of data (a line end, a dot and CRs), which the next piece
  begins with.
- A BDAT chunk is its size in bytes, taken as they come.
  :attr:`Framer.crlf_shortfall` is what Postfix adds to a chunked
  message's size, which it counts in lines ending in CRLF.

Flags (the session record's names):

``long_command``
    a command line longer than *limit*; it was cut.
``bare_lf``
    a command line, or a line of DATA, that ended at LF without CR.
``extra_cr``
    a command line, or the line that ended DATA, with more than one CR
    before its LF.
``smuggling``
    DATA ended at a dot between line ends of which one at least was a bare
    LF (``\\n.\\n``, ``\\n.\\r\\n``, ``\\r\\n.\\n``), or held a dot between
    CRs (``\\r.\\r``): an end of data that servers disagree on.
``long_line``
    a line of DATA longer than *limit* (it is kept whole).
"""

import attrs

# Bytes held back at the end of a data piece: enough for CRLF "." CR, the
# start of the end of data, split across reads.
_HOLD = 4


@attrs.frozen
class Piece:
    """Bytes of a message: a DATA piece (dot-unstuffed, without the line
    that ended DATA) or a BDAT chunk's; *end* on the last of its DATA or
    chunk."""

    body: bytes
    end: bool


def _end_of_data(buf, max_crs):
    """Where DATA ends in *buf*, at a line that is a dot and at most
    *max_crs* CRs: (the index of the LF before the dot, the index after
    the dot line's LF, the CRs before that LF), or None."""
    start = 0
    while (found := buf.find(b"\n.", start)) >= 0:
        run = buf[found + 2:found + 3 + max_crs]
        crs = len(run) - len(run.lstrip(b"\r"))
        if crs <= max_crs and run[crs:crs + 1] == b"\n":
            return found, found + 3 + crs, crs
        start = found + 1
    return None


def _partial_end(buf, max_crs):
    """Where a possible end of DATA starts at the end of *buf* (the line
    end before it, its dot and at most *max_crs* CRs), else len(buf)."""
    lf = buf.rfind(b"\n", max(len(buf) - (max_crs + 2), 0))
    if lf >= 0 and (lf == len(buf) - 1
                    or (buf[lf + 1:lf + 2] == b"." and not buf[lf + 2:].strip(b"\r"))):
        return lf - 1 if buf[lf - 1:lf] == b"\r" else lf
    if buf.endswith(b"\r"):
        return len(buf) - 1
    return len(buf)


class Framer:
    """One connection's input, cut into lines, DATA pieces and chunks.

    *line_length_limit* bounds command lines (and tells long DATA lines);
    *flag* is called with the name of each flag as it is found.
    ``body_read`` counts the bytes of the message body read since
    :meth:`start_message`, as sent (before unstuffing).
    """

    def __init__(self, line_length_limit, flag):
        self._limit = line_length_limit
        # The CRs of a line that ends DATA: a dot and these make a line of
        # *limit* bytes.
        self._max_crs = line_length_limit - 1
        self._flag = flag
        self._buffer = b""
        self._offset = 0
        # The kept start of an overlong command line whose rest is skipped.
        self._cut_line = None
        # DATA: the bytes held back, the two of the CRLF that stands before
        # the first line (so that its dot is unstuffed), the length of the
        # unfinished last line, and whether a long line was flagged (once
        # is enough: flags are the session's).
        self._carry = b""
        self._skip = 0
        self._line_length = 0
        self._long_line_flagged = False
        # BDAT: what the chunk still lacks; the message's bare LFs and its
        # last byte, for crlf_shortfall.
        self._chunk_left = 0
        self._bare_lf = 0
        self._last_byte = b""
        self.body_read = 0

    def feed(self, data):
        """Add *data*, as read from the connection."""
        if self._offset:
            self._buffer = self._buffer[self._offset:]
            self._offset = 0
        self._buffer += data

    @property
    def pending(self):
        """How many bytes were read and not taken yet."""
        return len(self._buffer) - self._offset

    @property
    def in_line(self):
        """Whether the start of a command line was read, and not its end."""
        return self.pending > 0 or self._cut_line is not None

    def clear(self):
        """Drop what was read and not taken (what STARTTLS makes void)."""
        self._buffer, self._offset = b"", 0

    # --- command lines -------------------------------------------------------

    def line(self):
        """The next command line, without its line end, or None until one
        has come whole."""
        end = self._buffer.find(b"\n", self._offset)
        if end < 0:
            if self._cut_line is None and self.pending > self._limit:
                self._cut_line = self._buffer[self._offset:self._offset + self._limit]
                self._flag("long_command")
            if self._cut_line is not None:
                self._buffer, self._offset = b"", 0
            return None
        line = self._buffer[self._offset:end + 1]
        self._offset = end + 1
        if self._cut_line is not None:
            line, self._cut_line = self._cut_line, None
        elif len(line) > self._limit and line[self._limit - 1:] != b"\r\n":
            line = line[:self._limit]
            self._flag("long_command")
        if line.endswith(b"\n"):
            text_end = len(line[:-1].rstrip(b"\r"))
            crs = len(line) - 1 - text_end
            if crs == 0:
                self._flag("bare_lf")
            elif crs > 1:
                self._flag("extra_cr")
            line = line[:text_end]
        return line

    # --- message bodies ------------------------------------------------------

    def start_message(self):
        """A new message begins: its DATA, or its first BDAT chunk."""
        self.body_read = 0
        self._line_length = 0
        self._bare_lf = 0
        self._last_byte = b""

    def start_data(self):
        """Read DATA from here on, until the line that ends it."""
        self._carry, self._skip = b"\r\n", 2

    def data(self):
        """The next piece of DATA, or None until more is read.  After the
        piece that ends it, what follows is read as commands again."""
        if not self.pending:
            return None
        new = self._buffer[self._offset:]
        self._buffer, self._offset = b"", 0
        self.body_read += len(new)
        buf = self._carry + new
        found = _end_of_data(buf, self._max_crs)
        if found is not None:
            end, after, crs = found
            if crs > 1:
                self._flag("extra_cr")
            if crs == 0 or buf[end - 1:end] != b"\r":
                self._flag("smuggling")
            piece, self._buffer, self._carry = buf[:end + 1], buf[after:], b""
        else:
            cut = max(len(buf) - _HOLD, 0)
            # Never split a CRLF: "\r\n." must be seen whole to unstuff it.
            if buf[cut - 2:cut] == b"\r\n":
                cut -= 2
            elif buf[cut - 1:cut] == b"\r":
                cut -= 1
            cut = max(min(cut, _partial_end(buf, self._max_crs)), 0)
            piece, self._carry = buf[:cut], buf[cut:]
        self._inspect(buf[:after] if found is not None else buf)
        return Piece(self._unstuff(piece), found is not None)

    def flush(self):
        """What DATA held back, unstuffed: the rest of a message whose
        connection ended before its end of data."""
        piece, self._carry = self._carry, b""
        return self._unstuff(piece)

    def _unstuff(self, piece):
        """*piece* without the dots that begin its lines, less the CRLF
        that stands before the first line.

        A piece never ends inside a CRLF, so lines are measured exactly.
        """
        piece = piece.replace(b"\r\n.", b"\r\n")
        if not self._long_line_flagged:
            lines = piece.split(b"\r\n")
            first = self._line_length + len(lines[0])
            longest = max(first, *map(len, lines[1:])) if len(lines) > 1 else first
            self._line_length = len(lines[-1]) if len(lines) > 1 else first
            if longest > self._limit:
                self._long_line_flagged = True
                self._flag("long_line")
        if self._skip:
            skipped = piece[:self._skip]
            piece = piece[len(skipped):]
            self._skip -= len(skipped)
        return piece

    def _inspect(self, buf):
        """Flag bare line feeds and dots between CRs in *buf*, DATA up to
        and with its end, if that is in it."""
        if buf.count(b"\n") != buf.count(b"\r\n"):
            self._flag("bare_lf")
        if b"\r.\r" in buf:
            self._flag("smuggling")

    def start_chunk(self, size):
        """Read a BDAT chunk of *size* bytes from here on."""
        self._chunk_left = size

    def chunk(self):
        """The next piece of the chunk, or None until more is read.  After
        the piece that ends it, what follows is read as commands again."""
        take = min(self._chunk_left, self.pending)
        if self._chunk_left and not take:
            return None
        chunk = self._buffer[self._offset:self._offset + take]
        self._offset += take
        self._chunk_left -= take
        self.body_read += take
        self._bare_lf += chunk.count(b"\n") - (self._last_byte + chunk).count(b"\r\n")
        self._last_byte = chunk[-1:] or self._last_byte
        return Piece(chunk, not self._chunk_left)

    @property
    def crlf_shortfall(self):
        """What the chunks of this message lack to have every line end in
        CRLF, as Postfix counts a chunked message's size: one byte for
        each bare LF, two for an unfinished last line."""
        return self._bare_lf + (2 if self._last_byte not in (b"", b"\n") else 0)
