"""Arbitrary input in memory: nothing raises, every reply is well formed."""

import re
import sys
import tempfile

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from smtplatrine.testing import connect, make_config, make_factory, settle, spooled

# One reply (RFC 5321 4.2.1): every line but the last "NNN-", the last
# "NNN ", all with the same code, and no control character in the text.
REPLY = re.compile(rb"(?:([2-5]\d\d)-[^\x00-\x1f\x7f]*\r\n(?=\1[- ]))*"
                   rb"[2-5]\d\d [^\x00-\x1f\x7f]*\r\n")
VERBS = [b"HELO x", b"EHLO x", b"MAIL FROM:<a@b>", b"RCPT TO:<c@d>", b"DATA",
         b"BDAT 3", b"BDAT 2 LAST", b"RSET", b"NOOP", b"QUIT", b"VRFY a",
         b"AUTH PLAIN", b"AUTH LOGIN", b"AUTH CRAM-MD5", b"STARTTLS", b".", b"*",
         b"AUTH PLAIN AGEAYg==", b"dXNlcg==", b"VRFY \x1b[31m\xff", b"ETRN %s%n{0}"]
# Commands that take a number, given any characters str.isdigit takes, as UTF-8.
DIGITS = [c for c in map(chr, range(sys.maxunicode + 1)) if c.isdigit()]
NUMBERS = st.tuples(
    st.sampled_from([b"BDAT ", b"MAIL FROM:<a@b> SIZE="]),
    st.text(st.sampled_from(DIGITS), min_size=1, max_size=25),
).map(lambda pair: pair[0] + pair[1].encode() + b"\r\n")
chunks = st.lists(st.one_of(
    st.binary(max_size=300),
    st.sampled_from(VERBS).map(lambda verb: verb + b"\r\n"),
    NUMBERS,
    st.sampled_from([b"\r\n", b"\n", b"\r", b"\r\n.\r\n", b"\n.\n", b"\0",
                     b"\x1b[2J", b"\xff\xfe", b"A" * 600]),
), max_size=40)
# A line that is a dot before CRs and an LF, as Postfix takes the end of DATA.
END_OF_DATA = re.compile(rb"(\r\n)(?=\.\r*\n)")
SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def unstuff(message):
    """RFC 5321 4.5.2, line by line: a leading dot of a line is removed."""
    lines = message.split(b"\r\n")
    return b"\r\n".join(line[1:] if line.startswith(b".") else line
                        for line in lines)


class FuzzTests(unittest.TestCase):

    @SETTINGS
    @given(chunks, st.booleans(), st.booleans())
    def test_any_bytes(self, data, compliant, accept_auth):
        """Whatever arrives, nothing raises and only well-formed replies leave."""
        config = make_config(smtp={"smtp_compliant": compliant,
                                   "smtp_auth_accept": accept_auth,
                                   "line_length_limit": 512})
        with tempfile.TemporaryDirectory() as directory:
            factory = make_factory(directory, config, object())
            protocol, transport = connect(factory)
            for chunk in data:
                protocol.dataReceived(chunk)
                settle(factory.clock)
            factory.clock.advance(400)
            protocol.connectionLost(None)
        out = transport.value()
        self.assertEqual(REPLY.sub(b"", out), b"", out)

    @SETTINGS
    @given(st.lists(st.sampled_from([b"a", b".", b"\r\n", b"\r", b"\n", b"..", b"x" * 70]),
                    max_size=60).map(b"".join),
           st.lists(st.integers(min_value=1, max_value=50), max_size=20))
    def test_data_split_anywhere(self, body, cuts):
        """A DATA body split at any points is spooled exactly, dot-unstuffed."""
        body += b"\r\n"
        # What ends DATA is stuffed: a dot alone before CRs and LF.  After
        # a bare LF such a dot ends DATA too, and RFC 5321 stuffs none.
        assume(not re.search(rb"(?<!\r)\n\.\r*\n", b"\r\n" + body))
        body = END_OF_DATA.sub(rb"\1.", b"\r\n" + body)[2:]
        with tempfile.TemporaryDirectory() as directory:
            factory = make_factory(directory)
            protocol, transport = connect(factory)
            stream = b"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n" + body + b".\r\n"
            position = 0
            for cut in cuts:
                protocol.dataReceived(stream[position:position + cut])
                settle(factory.clock)
                position += cut
            protocol.dataReceived(stream[position:])
            settle(factory.clock)
            self.assertIn(b"queued as", transport.value())
            [(_, raw)] = spooled(factory.spool.messages)
        self.assertEqual(raw, unstuff(body))
