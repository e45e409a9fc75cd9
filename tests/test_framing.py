"""The framer alone: it reads as Postfix's smtpd does.

A small reader drives a Framer as a session does: command lines until one
is ``DATA``, then the body, then commands again.  The lines and the end of
DATA are those Postfix's smtpd reads, written out here byte by byte after
its ``smtp_get`` (but for the bare LF, which ends no line here).  Limits
far below the configured minimum (512) make long lines and long runs of
CRs cheap to reach.
"""

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from smtplatrine.smtp.framing import Framer

SETTINGS = settings(max_examples=500, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
BDAT = re.compile(rb"BDAT ([0-9]{1,3})( LAST)?", re.I)

LF, CR = 0x0A, 0x0D
# Bytes that make long lines and runs of CRs, and no command.
FRAGMENTS = st.one_of(
    st.sampled_from([b"x", b".", b"\r", b"\n", b"\r\n", b"\r\n.", b"\r\n.\r\n"]),
    st.tuples(st.sampled_from([b"x", b"\r"]), st.integers(0, 30)).map(
        lambda pair: pair[0] * pair[1]),
)
SMALL_LIMITS = st.integers(min_value=6, max_value=24)
# A line that ends DATA, as a record.
DOT_LINE = re.compile(rb"\.\r+\n")


class Reader:
    """Takes from a Framer what a session would: ``events`` holds
    ("line", bytes), ("data", body, ended) and ("chunk", body, shortfall)
    in order, ``flags`` the flags reported."""

    def __init__(self, limit):
        self.flags = set()
        self.framer = Framer(limit, self.flags.add)
        self.events = []
        self.mode = "command"
        self.chunked = False

    def feed(self, data):
        self.framer.feed(data)
        while self.step():
            pass

    def step(self):
        """Take one line or piece; False when the framer has none."""
        framer = self.framer
        if self.mode == "command":
            line = framer.line()
            if line is None:
                return False
            self.events.append(("line", line))
            self.command(line)
        elif self.mode == "data":
            piece = framer.data()
            if piece is None:
                return False
            _, body, _ = self.events[-1]
            self.events[-1] = ("data", body + piece.body, piece.end)
            if piece.end:
                self.mode = "command"
        else:
            piece = framer.chunk()
            if piece is None:
                return False
            _, body, _ = self.events[-1]
            self.events[-1] = ("chunk", body + piece.body, framer.crlf_shortfall)
            if piece.end:
                self.mode = "command"
        return True

    def command(self, line):
        """Switch modes as a session that accepts DATA and BDAT would."""
        bdat = BDAT.fullmatch(line)
        if line.upper() == b"DATA":
            self.framer.start_message()
            self.framer.start_data()
            self.mode = "data"
            self.events.append(("data", b"", False))
        elif bdat:
            if not self.chunked:
                self.framer.start_message()
            self.chunked = not bdat[2]
            self.framer.start_chunk(int(bdat[1]))
            self.mode = "chunk"
            self.events.append(("chunk", b"", 0))

    def close(self):
        """The connection ends: what an unfinished DATA held back."""
        if self.mode == "data":
            _, body, _ = self.events[-1]
            self.events[-1] = ("data", body + self.framer.flush(), False)
        return self.events, self.flags


def read(reads, limit):
    reader = Reader(limit)
    for data in reads:
        reader.feed(data)
    return reader.close()


def smtp_get(stream, i, limit):
    """One record as Postfix's smtp_get reads it from *stream* at *i*: at
    most *limit* bytes, up to and with an LF, and the LF after a CR that
    the bound split it from; (record, where the next begins).  None when
    the stream ends first."""
    record = bytearray()
    while len(record) < limit and i < len(stream):
        record.append(stream[i])
        i += 1
        if record[-1] == LF:
            return bytes(record), i
    if i == len(stream):
        return None
    if record[-1] == CR and stream[i] == LF:
        return bytes(record) + b"\n", i + 1
    return bytes(record), i


def postfix_lines(stream, limit):
    """The command lines Postfix reads in *stream*, and the flags they
    raise: each record without its LF and the CRs before it; a record
    without LF is cut, and the rest of its line skipped."""
    lines, flags, i = [], set(), 0
    while (read := smtp_get(stream, i, limit)) is not None:
        record, i = read
        if record.endswith(b"\n"):
            text = record[:-1].rstrip(b"\r")
            crs = len(record) - 1 - len(text)
            if crs != 1:
                flags.add("extra_cr" if crs else "bare_lf")
            lines.append(text)
            continue
        flags.add("long_command")
        end = stream.find(b"\n", i)
        if end < 0:
            break
        lines.append(record)
        i = end + 1
    return lines, flags


def postfix_data(stream, limit):
    """DATA as Postfix reads it from *stream*, records by smtp_get: a record
    after one that ended a line loses a leading dot, and is the end if it
    is a dot, CRs and an LF.  (Postfix also ends DATA at a dot and bare LF,
    and takes a bare LF for the end of a line; this server does not: only
    CRLF ends one.)  The body read, unstuffed, and the bytes after the end
    (None if DATA did not end)."""
    body, i, line_start = b"", 0, True
    while i < len(stream):
        read = smtp_get(stream, i, limit)
        record, i = read if read is not None else (stream[i:], len(stream))
        if line_start and DOT_LINE.fullmatch(record):
            return body, stream[i:]
        if line_start and record.startswith(b"."):
            record = record[1:]
        body += record
        line_start = record.endswith(b"\r\n")
    return body, None


class PostfixTests(unittest.TestCase):
    """The framer reads as Postfix's smtpd does, written out byte by byte."""

    @SETTINGS
    @given(st.lists(FRAGMENTS, max_size=40).map(b"".join), SMALL_LIMITS)
    def test_lines_as_postfix(self, stream, limit):
        """Command lines, cut and mended where Postfix cuts and mends them."""
        flags = set()
        framer = Framer(limit, flags.add)
        framer.feed(stream)
        lines = list(iter(framer.line, None))
        self.assertEqual((lines, flags), postfix_lines(stream, limit))

    @SETTINGS
    @given(st.lists(FRAGMENTS, max_size=40).map(b"".join), SMALL_LIMITS)
    def test_data_as_postfix(self, stream, limit):
        """DATA ends where Postfix ends it, and loses the dots Postfix removes."""
        body, rest = postfix_data(stream, limit)
        expected = [("line", b"DATA"), ("data", body, rest is not None)]
        if rest is not None:
            expected += [("line", line) for line in postfix_lines(rest, limit)[0]]
        events, _ = read([b"DATA\r\n", stream], limit)
        self.assertEqual(events, expected)

    def test_crlf_split_by_the_limit_mended(self):
        """A line whose limit falls between its CR and LF is whole; between
        two CRs, it is cut with its CRs (Postfix 3.7 answered so)."""
        events, flags = read([b"RSET   \r\nRSET   \r\r\n"], 8)
        self.assertEqual(events, [("line", b"RSET   "), ("line", b"RSET   \r")])
        self.assertEqual(flags, {"long_command"})

    def test_data_end_as_long_as_a_line(self):
        """A dot and CRs end DATA if they make a line of the limit, as Postfix."""
        stream = b"DATA\r\n." + b"\r" * 7 + b"\nDATA\r\n." + b"\r" * 8 + b"\n.\r\n"
        events, flags = read([stream], 8)
        self.assertEqual(events, [("line", b"DATA"), ("data", b"", True),
                                  ("line", b"DATA"), ("data", b"\r" * 8 + b"\n", True)])
