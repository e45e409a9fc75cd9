"""The framer alone, over bytes hypothesis makes, read in any split.

A small reader drives a Framer as a session does: command lines until one
is ``DATA`` or ``BDAT N``, then the body, then commands again.  The lines
and the end of DATA are those Postfix's smtpd reads, written out here byte
by byte after its ``smtp_get`` (a dot is removed only after CRLF: after a
bare LF the message keeps it).  Whatever the bytes and however they are cut into reads, the reader
takes the same lines, bodies, chunks and flags, the framer never raises,
and nothing it gives or keeps is larger than its limits allow.  A DATA
body comes back as it was before RFC 5321 4.5.2 dot-stuffing; chunked
bodies are counted as Postfix counts them.  Limits far below the
configured minimum (512) make long lines and long runs of CRs cheap to
reach.
"""

import copy
import re

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from smtplatrine.smtp.framing import Framer
from tests.test_fuzz import unstuff

SETTINGS = settings(max_examples=500, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
LIMITS = st.one_of(st.integers(min_value=6, max_value=24), st.just(512))
TOKENS = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([b"DATA\r\n", b"data\n", b"BDAT 7\r\n", b"BDAT 0 LAST\r\n",
                     b"BDAT 3 LAST\r\n", b"NOOP\r\n", b"\r\n.\r\n", b"\r\n.\r\r\n",
                     b"\r\n.\n", b"\n.\n", b"\n.\r\n", b"\r.\r", b"\r\n.", b".", b"..", b"\r",
                     b"\n", b"\r\n", b"\r\r\r\n", b"\0"]),
    st.tuples(st.sampled_from([b"x", b"\r", b"."]), st.integers(0, 600)).map(
        lambda pair: pair[0] * pair[1]),
)
CUTS = st.lists(st.integers(min_value=0, max_value=2000), max_size=12)
BDAT = re.compile(rb"BDAT ([0-9]{1,3})( LAST)?", re.I)
LF, CR = 0x0A, 0x0D
# Bytes that make long lines, runs of CRs and ends of data, and no command.
FRAGMENTS = st.one_of(
    st.sampled_from([b"x", b".", b"\r", b"\n", b"\r\n", b"\r\n.", b"\r\n.\r\n",
                     b"\n.\r\n", b"\r.\r"]),
    st.tuples(st.sampled_from([b"x", b"\r"]), st.integers(0, 30)).map(
        lambda pair: pair[0] * pair[1]),
)
# Commands and what follows them, or a DATA body of those fragments.
STREAMS = st.one_of(
    st.lists(TOKENS, max_size=30).map(b"".join),
    st.lists(FRAGMENTS, max_size=40).map(lambda body: b"DATA\r\n" + b"".join(body)))
SMALL_LIMITS = st.integers(min_value=6, max_value=24)
# A line that ends DATA, as a record.
DOT_LINE = re.compile(rb"\.\r*\n")


def split(stream, cuts):
    """*stream* cut at the offsets *cuts* (in any order) into reads."""
    points = sorted({min(cut, len(stream)) for cut in cuts} | {0, len(stream)})
    return [stream[a:b] for a, b in zip(points, points[1:])]


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
        else:
            piece = framer.data() if self.mode == "data" else framer.chunk()
            if piece is None:
                return False
            kind, body, _ = self.events[-1]
            last = piece.end if kind == "data" else framer.crlf_shortfall
            self.events[-1] = (kind, body + piece.body, last)
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


def stuff(body):
    """*body* dot-stuffed as RFC 5321 4.5.2 says, line by line."""
    return b"\r\n".join(b"." + line if line.startswith(b".") else line
                        for line in body.split(b"\r\n"))


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
    after one that ended a line (at LF, with or without CR) is the end if
    it is a dot, CRs and an LF.  Postfix removes a leading dot from each
    line; this server only after CRLF (after a bare LF the bytes are kept).
    The body read, unstuffed so, and the bytes after the end (None if DATA
    did not end)."""
    body, i, line_start, after_crlf = b"", 0, True, True
    while i < len(stream):
        read = smtp_get(stream, i, limit)
        record, i = read if read is not None else (stream[i:], len(stream))
        if line_start and DOT_LINE.fullmatch(record):
            return body, stream[i:]
        if after_crlf and record.startswith(b"."):
            record = record[1:]
        body += record
        line_start, after_crlf = record.endswith(b"\n"), record.endswith(b"\r\n")
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
        events, _ = read([stream], 8)
        self.assertEqual(events, [("line", b"DATA"), ("data", b"", True),
                                  ("line", b"DATA"), ("data", b"\r" * 8 + b"\n", True)])


class SplitTests(unittest.TestCase):

    @SETTINGS
    @given(STREAMS, CUTS, LIMITS)
    def test_any_split_same_events(self, stream, cuts, limit):
        """However the bytes are cut into reads, the same events and flags come."""
        self.assertEqual(read(split(stream, cuts), limit), read([stream], limit))

    @SETTINGS
    @given(STREAMS, LIMITS)
    def test_byte_by_byte(self, stream, limit):
        """Read one byte at a time, the bytes give the same events and flags."""
        bytewise = [stream[i:i + 1] for i in range(len(stream))]
        self.assertEqual(read(bytewise, limit), read([stream], limit))


class DataTests(unittest.TestCase):

    def test_end_after_many_crs_split_before_its_lf(self):
        """A line of a dot and six CRs ends DATA (it is shorter than the
        limit), also when its LF comes in a later read; the message's
        bytes are all counted as read, as sent, that line included."""
        reader = Reader(512)
        for data in (b"DATA\r\nx\r\n.\r\r\r\r\r", b"\r\n", b"NOOP\r\n"):
            reader.feed(data)
        self.assertEqual(reader.events, [("line", b"DATA"), ("data", b"x\r\n", True),
                                         ("line", b"NOOP")])
        self.assertEqual(reader.framer.body_read, len(b"x\r\n.\r\r\r\r\r\r\n"))
        self.assertEqual(reader.flags, {"extra_cr"})

    def test_bare_lf_alone_is_no_smuggling(self):
        """A bare LF inside a line of DATA is flagged as such, and not as
        smuggling: no dot stands between line ends."""
        reader = Reader(512)
        reader.feed(b"DATA\r\nab\ncd\r\n.\r\n")
        self.assertEqual(reader.events[-1], ("data", b"ab\ncd\r\n", True))
        self.assertEqual(reader.flags, {"bare_lf"})

    @SETTINGS
    @given(st.lists(st.sampled_from([b"a", b".", b"\r\n", b"\r", b"\n", b"..", b"x" * 30]),
                    max_size=60).map(b"".join), CUTS, LIMITS)
    def test_pieces_are_the_unstuffed_body(self, body, cuts, limit):
        """DATA pieces put together are the body as it was before dot-stuffing."""
        body += b"\r\n"
        # A dot after a bare LF would end DATA, and RFC 5321 stuffs none.
        assume(not re.search(rb"(?<!\r)\n\.", body))
        stream = b"DATA\r\n" + stuff(body) + b".\r\nNOOP\r\n"
        events, _ = read(split(stream, cuts), limit)
        self.assertEqual(events, [("line", b"DATA"), ("data", body, True),
                                  ("line", b"NOOP")])

    @SETTINGS
    @given(STREAMS, CUTS, LIMITS)
    def test_bounded(self, stream, cuts, limit):
        """No line is longer than the limit, and what waits for the rest of
        a line or for the end of data is bounded."""
        reader = Reader(limit)
        for data in split(stream, cuts):
            reader.feed(data)
            if reader.mode == "command":
                self.assertLessEqual(reader.framer.pending, limit)
            elif reader.mode == "data":
                held = copy.deepcopy(reader.framer).flush()
                self.assertLessEqual(len(held), max(limit + 2, 6))
        for event in reader.close()[0]:
            if event[0] == "line":
                self.assertLessEqual(len(event[1]), limit)

    def test_smuggling_variants(self):
        """A dot between line ends of which one is a bare LF ends DATA, as
        in Postfix 3.7.11, and a dot between CRs does not; each is
        flagged."""
        for variant, end in ((b"\n.\n", b"\n"), (b"\n.\r\n", b"\n"), (b"\r\n.\n", b"\r\n")):
            events, flags = read([b"DATA\r\nhi" + variant + b"NOOP\r\n"], 512)
            self.assertEqual(events, [("line", b"DATA"), ("data", b"hi" + end, True),
                                      ("line", b"NOOP")])
            self.assertIn("smuggling", flags)
        events, flags = read([b"DATA\r\nhi\r.\rNOOP\r\n.\r\n"], 512)
        self.assertEqual(events, [("line", b"DATA"), ("data", b"hi\r.\rNOOP\r\n", True)])
        self.assertIn("smuggling", flags)

    def test_cr_cr_lf_ends_data(self):
        """A dot before CRs and an LF ends DATA; more than one CR is flagged."""
        events, flags = read([b"DATA\r\nhi\r\n.\r\r\nNOOP\r\n"], 512)
        self.assertEqual(events, [("line", b"DATA"), ("data", b"hi\r\n", True),
                                  ("line", b"NOOP")])
        self.assertEqual(flags, {"extra_cr"})

    def test_flush_gives_the_held_back_bytes(self):
        """A connection lost in DATA leaves what was held back in the
        message too, unstuffed."""
        events, _ = read([b"DATA\r\n..a\r\n.\r\r"], 512)
        self.assertEqual(events, [("line", b"DATA"), ("data", b".a\r\n\r\r", False)])

    def test_every_split_point(self):
        """However a stream is cut in two or three reads, it is read as
        whole: each end of data Postfix takes, dots to unstuff next to
        the cut, CRs before the end and a dot line that is no end."""
        for stream in (b"DATA\r\nhi\n.\nNOOP\r\n", b"DATA\r\n..a\r\n.b\r\n.\r\r\nNOOP\r\n",
                       b"DATA\r\nab\r\n.\r\r\r\r\r\r\r\r\nc\r\n.\r\nNOOP\r\n",
                       b"DATA\r\nx\r\n\r\n..\r\n\n.\r\nNOOP\r\n",
                       b"DATA\r\nhello\n.\r\r\r\nNOOP\r\n"):
            whole = read([stream], 8)
            for i in range(len(stream) + 1):
                for j in range(i, len(stream) + 1):
                    self.assertEqual(read([stream[:i], stream[i:j], stream[j:]], 8), whole,
                                     (stream, i, j))

    def test_bytes_after_the_end_not_inspected(self):
        """What follows the end of data is commands: a dot between CRs
        there is no smuggling in the message."""
        events, flags = read([b"DATA\r\nhi\r\n.\r\nNOOP\r.\r\n"], 512)
        self.assertEqual(events[1], ("data", b"hi\r\n", True))
        self.assertNotIn("smuggling", flags)

    def test_long_data_line_flagged(self):
        """A DATA line longer than the limit is kept whole and flagged."""
        events, flags = read([b"DATA\r\n", b"y" * 9, b"y\r\n.\r\n"], 8)
        self.assertEqual(events[1], ("data", b"y" * 10 + b"\r\n", True))
        self.assertEqual(flags, {"long_line"})


class LineTests(unittest.TestCase):

    def test_crs_removed(self):
        """Every CR before the LF goes; a bare LF and extra CRs are flagged."""
        events, flags = read([b"NOOP\r\nRSET\nQUIT\r\r\r\n"], 512)
        self.assertEqual(events, [("line", b"NOOP"), ("line", b"RSET"), ("line", b"QUIT")])
        self.assertEqual(flags, {"bare_lf", "extra_cr"})

    def test_long_line_cut(self):
        """A line past the limit is cut to it, CRs kept, the rest skipped."""
        events, flags = read([b"NOOP \r", b"\r\rxyz", b"zz\r\nRSET\r\n"], 8)
        self.assertEqual(events, [("line", b"NOOP \r\r\r"), ("line", b"RSET")])
        self.assertEqual(flags, {"long_command"})

    def test_unfinished_line_bounded(self):
        """10 MB without an LF keep no more than the limit."""
        framer = Framer(512, lambda flag: None)
        for _ in range(160):
            framer.feed(b"B" * 65536)
            self.assertIsNone(framer.line())
            self.assertEqual(framer.pending, 0)
        self.assertTrue(framer.in_line)
        framer.feed(b"\r\n")
        self.assertEqual(framer.line(), b"B" * 512)
        self.assertFalse(framer.in_line)


class ChunkTests(unittest.TestCase):

    @SETTINGS
    @given(st.lists(st.binary(max_size=30), min_size=1, max_size=6), CUTS)
    def test_chunks_counted_as_postfix(self, chunks, cuts):
        """Chunks come back as sent, and the shortfall is one byte for each
        bare LF and two for an unfinished last line."""
        stream = b"".join(b"BDAT %d%s\r\n" % (len(chunk), b" LAST" * (i == len(chunks) - 1))
                          + chunk for i, chunk in enumerate(chunks))
        events, _ = read(split(stream + b"NOOP\r\n", cuts), 512)
        taken = [event for event in events if event[0] == "chunk"]
        self.assertEqual([body for _, body, _ in taken], chunks)
        message = b"".join(chunks)
        shortfall = (len(re.findall(rb"(?<!\r)\n", message))
                     + (2 if message and not message.endswith(b"\n") else 0))
        self.assertEqual(taken[-1][2], shortfall)
        self.assertEqual(events[-1], ("line", b"NOOP"))

    def test_chunked_message_counted_across_reads(self):
        """A message in two chunks, each read a byte at a time: every byte
        counts as read (the data rate is measured on it), and the
        shortfall is one for the bare LF of the first chunk and two for the
        unfinished last line."""
        framer = Framer(512, lambda name: None)
        framer.start_message()
        for chunk in (b"ab\n", b"c\r\nd"):
            framer.start_chunk(len(chunk))
            for byte in chunk:
                framer.feed(bytes([byte]))
                framer.chunk()
        self.assertEqual((framer.body_read, framer.crlf_shortfall), (7, 3))
