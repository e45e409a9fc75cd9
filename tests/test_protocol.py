"""The SMTP session driven in memory: commands, limits, capture, errors."""

import base64
import errno
import hashlib
import hmac
import json
import re
import socket
from pathlib import Path

from OpenSSL import SSL
from twisted.trial import unittest

from smtplatrine import tls
from smtplatrine.testing import (HeldDisk, connect, make_config, make_factory, settle,
                                 spooled)

EHLO = b"EHLO client.example.org\r\n"
REPLY = re.compile(rb"\A(?:[2-5]\d\d-[^\r\n]*\r\n)*[2-5]\d\d [^\r\n]*\r\n\Z")


class SessionTestCase(unittest.TestCase):
    """Connects one session; ``send`` returns the replies to what it sent."""

    def setUp(self):
        self.connect()

    def connect(self, config=None, tls_options=object(), disk=None, **kw):
        """Connect a new session; *disk* is a LocalDisk class for its spool."""
        directory = Path(self.mktemp())
        self.factory = make_factory(directory, config, tls_options,
                                    disk and disk(directory))
        self.clock = self.factory.clock
        self.protocol, self.transport = connect(self.factory, **kw)
        self.banner = self.transport.value()
        self.transport.clear()

    def send(self, data):
        self.transport.clear()
        self.protocol.dataReceived(data)
        settle(self.clock)
        return self.transport.value()

    def spooled(self):
        """The messages in the spool: [(metadata, raw bytes)]."""
        return spooled(self.factory.spool.messages)

    def close(self):
        self.protocol.connectionLost(None)
        directory = self.factory.spool.root / "sessions"
        [path] = directory.glob("*.json")
        return json.loads(path.read_text())

    def transaction(self, body, sender=b"<a@b.example>", rcpts=(b"<c@d.example>",)):
        data = b"MAIL FROM:" + sender + b"\r\n"
        data += b"".join(b"RCPT TO:" + r + b"\r\n" for r in rcpts)
        return self.send(data + b"DATA\r\n" + body)


class GreetingTests(SessionTestCase):

    def test_banner(self):
        """The banner is Postfix's, with the configured host name."""
        self.assertEqual(self.banner,
                         b"220 mail.example.com ESMTP Postfix (Debian/GNU)\r\n")

    def test_ehlo_keywords(self):
        """EHLO lists Postfix's keywords in Postfix's order, in one write,
        with AUTH as Postfix with Dovecot SASL set up as its SASL_README
        shows lists it (variant E of tests/data/postfix_replies.json)."""
        self.assertEqual(self.send(EHLO), (
            b"250-mail.example.com\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n"
            b"250-VRFY\r\n250-ETRN\r\n250-STARTTLS\r\n"
            b"250-AUTH PLAIN LOGIN\r\n250-ENHANCEDSTATUSCODES\r\n"
            b"250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n"))
        self.assertEqual(len(self.transport.io.getvalue().split(b"\r\n")), 13)

    def test_features_off(self):
        """A feature turned off is neither advertised nor usable."""
        features = {"chunking": False, "starttls": False, "auth": False, "vrfy": False}
        self.connect(make_config(smtp_features=features))
        reply = self.send(EHLO)
        for keyword in (b"CHUNKING", b"STARTTLS", b"AUTH", b"VRFY"):
            self.assertNotIn(keyword, reply)
        self.assertEqual(self.send(b"STARTTLS\r\n"),
                         b"500 5.5.2 Error: command not recognized\r\n")
        self.assertEqual(self.send(b"AUTH PLAIN\r\n"),
                         b"503 5.5.1 Error: authentication not enabled\r\n")
        self.assertEqual(self.send(b"VRFY root\r\n"),
                         b"502 5.5.1 VRFY command is disabled\r\n")

    def test_helo(self):
        """HELO is answered with the host name alone."""
        self.assertEqual(self.send(b"HELO x\r\n"), b"250 mail.example.com\r\n")

    def test_helo_without_name(self):
        """HELO and EHLO without a name get Postfix's syntax replies."""
        self.assertEqual(self.send(b"HELO\r\n"), b"501 Syntax: HELO hostname\r\n")
        self.assertEqual(self.send(b"EHLO\r\n"), b"501 Syntax: EHLO hostname\r\n")

    def test_no_twisted_strings(self):
        """NOOP, RSET, VRFY, HELP and QUIT never answer with Twisted's texts."""
        reply = self.send(EHLO + b"NOOP\r\nRSET\r\nVRFY root\r\nHELP\r\nQUIT\r\n")
        self.assertEqual(reply.split(b"\r\n")[12:], [
            b"250 2.0.0 Ok", b"250 2.0.0 Ok", b"252 2.0.0 root",
            b"500 5.5.2 Error: command not recognized", b"221 2.0.0 Bye", b""])
        for text in (b"NO UCE", b"Delivery in progress", b"I remember nothing",
                     b"Command not implemented"):
            self.assertNotIn(text, reply)
        self.assertTrue(self.transport.disconnecting)

    def test_pregreet(self):
        """A client talking before a delayed banner is flagged and answered."""
        self.connect(make_config(smtp={"greet_delay": 2.0}))
        self.assertEqual(self.banner, b"")
        self.assertEqual(self.send(EHLO), b"")
        self.clock.advance(2)
        self.assertTrue(self.transport.value().startswith(b"220 "))
        self.assertIn(b"250 CHUNKING", self.transport.value())
        record = self.close()
        self.assertIn("pregreet", record["flags"])
        self.assertEqual(record["pregreet"], EHLO.decode())


class TransactionTests(SessionTestCase):

    def setUp(self):
        super().setUp()
        self.send(EHLO)

    def test_message_spooled(self):
        """A message is spooled byte-exact, dot-unstuffed, with its envelope."""
        reply = self.transaction(
            b"Subject: x\r\n\r\n..leading dot\r\nbody\r\n.\r\n",
            rcpts=(b"<c@d.example>", b"<e@f.example>"))
        [(meta, raw)] = self.spooled()
        self.assertEqual(raw, b"Subject: x\r\n\r\n.leading dot\r\nbody\r\n")
        self.assertEqual(reply.split(b"\r\n")[4],
                         b"250 2.0.0 Ok: queued as " + meta["queue_id"].encode())
        self.assertRegex(meta["queue_id"], r"\A[0-9A-F]{11}\Z")
        self.assertEqual(meta["mail_from"], "a@b.example")
        self.assertEqual(meta["rcpts"], ["c@d.example", "e@f.example"])
        self.assertEqual(meta["sha256"], hashlib.sha256(raw).hexdigest())
        self.assertEqual(meta["helo"], "client.example.org")
        self.assertEqual(meta["src_ip"], "192.0.2.7")
        self.assertTrue(meta["acknowledged"])

    def test_empty_message(self):
        """A DATA body that is only the final dot is an empty message."""
        reply = self.transaction(b".\r\n")
        self.assertIn(b"queued as", reply)
        self.assertEqual(self.spooled()[0][1], b"")

    def test_several_messages(self):
        """Each message of a session is captured on its own."""
        self.transaction(b"one\r\n.\r\n")
        self.transaction(b"two\r\n.\r\n", sender=b"<x@y.example>")
        raws = sorted(raw for _, raw in self.spooled())
        self.assertEqual(raws, [b"one\r\n", b"two\r\n"])
        record = self.close()
        self.assertEqual((len(record["envelopes"]), record["messages"]), (2, 2))

    def test_rset(self):
        """RSET forgets the transaction: MAIL may start again, RCPT may not."""
        self.send(b"MAIL FROM:<a@b>\r\n")
        self.assertEqual(self.send(b"RSET\r\n"), b"250 2.0.0 Ok\r\n")
        self.assertEqual(self.send(b"RCPT TO:<c@d>\r\n"),
                         b"503 5.5.1 Error: need MAIL command\r\n")
        self.assertEqual(self.send(b"MAIL FROM:<a@b>\r\n"), b"250 2.1.0 Ok\r\n")

    def test_nested_mail(self):
        """A second MAIL inside a transaction is refused."""
        self.send(b"MAIL FROM:<a@b>\r\n")
        self.assertEqual(self.send(b"MAIL FROM:<a@b>\r\n"),
                         b"503 5.5.1 Error: nested MAIL command\r\n")

    def test_order_enforced(self):
        """Compliant mode answers out-of-order commands with Postfix's 503/554."""
        self.assertEqual(self.send(b"RCPT TO:<a@b>\r\n"),
                         b"503 5.5.1 Error: need MAIL command\r\n")
        self.assertEqual(self.send(b"DATA\r\n"),
                         b"503 5.5.1 Error: need RCPT command\r\n")
        self.send(b"MAIL FROM:<a@b>\r\n")
        self.assertEqual(self.send(b"DATA\r\n"),
                         b"554 5.5.1 Error: no valid recipients\r\n")

    def test_helo_required(self):
        """With helo_required, MAIL wants HELO/EHLO first."""
        self.connect(make_config(smtp={"helo_required": True}))
        self.assertEqual(self.send(b"MAIL FROM:<a@b>\r\n"),
                         b"503 5.5.1 Error: send HELO/EHLO first\r\n")

    def test_lenient_order(self):
        """With smtp_compliant off, DATA without HELO, MAIL or RCPT is captured."""
        self.connect(make_config(smtp={"smtp_compliant": False}))
        reply = self.send(b"RCPT TO:<a@b>\r\nDATA\r\nhi\r\n.\r\n")
        self.assertIn(b"queued as", reply)
        [(meta, raw)] = self.spooled()
        self.assertEqual((meta["mail_from"], meta["rcpts"], raw),
                         (None, ["a@b"], b"hi\r\n"))

    def test_relay_probes_accepted(self):
        """Every sender and recipient form of nmap's smtp-open-relay is accepted."""
        forms = [
            (b"<>", b"<relaytest@nmap.scanme.org>"),
            (b"<antispam@[127.0.0.1]>", b"<relaytest@nmap.scanme.org>"),
            (b"<antispam@mail.example.com>", b"<relaytest%nmap.scanme.org@[127.0.0.1]>"),
            (b"<antispam@mail.example.com>", b'<"relaytest@nmap.scanme.org">'),
            (b"<antispam@mail.example.com>", b'<"relaytest%nmap.scanme.org">'),
            (b"<antispam@mail.example.com>", b"<relaytest@nmap.scanme.org@[127.0.0.1]>"),
            (b"<antispam@mail.example.com>", b'<"relaytest@nmap.scanme.org"@[127.0.0.1]>'),
            (b"<antispam@mail.example.com>", b"<nmap.scanme.org!relaytest>"),
            (b"<antispam@mail.example.com>", b"<@[127.0.0.1]:relaytest@nmap.scanme.org>"),
            (b"<antispam@mail.example.com>", b"<@mail.example.com:relaytest@nmap.scanme.org>"),
        ]
        for sender, rcpt in forms:
            reply = self.send(b"RSET\r\nMAIL FROM:" + sender + b"\r\nRCPT TO:" + rcpt + b"\r\n")
            self.assertEqual(reply, b"250 2.0.0 Ok\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n",
                             (sender, rcpt))

    def test_mail_syntax(self):
        """MAIL without FROM: and a broken address get Postfix's 501s."""
        self.assertEqual(self.send(b"MAIL x@y\r\n"),
                         b"501 5.5.4 Syntax: MAIL FROM:<address>\r\n")
        self.assertEqual(self.send(b"MAIL FROM:<a@b\r\n"),
                         b"501 5.1.7 Bad sender address syntax\r\n")

    def test_control_characters_in_addresses(self):
        """As a Postfix 3.7 answered: a space, tab or CR splits an address
        and is refused, other control characters are taken."""
        for blank in (b" ", b"\t", b"\r"):
            self.assertEqual(self.send(b"MAIL FROM:<a" + blank + b"b@x>\r\n"),
                             b"501 5.1.7 Bad sender address syntax\r\n")
        self.assertEqual(self.send(b"MAIL FROM:<a\x1b[31m\x01\x7fb@x>\r\n"
                                   b"RCPT TO:<c\rd@y>\r\nRCPT TO:<c\x0b\x0c\x1fd@y>\r\n"),
                         b"250 2.1.0 Ok\r\n501 5.1.3 Bad recipient address syntax\r\n"
                         b"250 2.1.5 Ok\r\n")

    def test_mail_parameters(self):
        """SIZE, BODY, SMTPUTF8 and DSN parameters are accepted; others are not."""
        ok = b"250 2.1.0 Ok\r\n"
        for params in (b"SIZE=1000", b"BODY=8BITMIME", b"SMTPUTF8", b"RET=HDRS ENVID=x"):
            self.assertEqual(self.send(b"RSET\r\nMAIL FROM:<a@b> " + params + b"\r\n"),
                             b"250 2.0.0 Ok\r\n" + ok, params)
        self.send(b"RSET\r\n")
        self.assertEqual(self.send(b"MAIL FROM:<a@b> FOO=BAR\r\n"),
                         b"555 5.5.4 Unsupported option: FOO=BAR\r\n")
        self.assertEqual(self.send(b"MAIL FROM:<a@b> SIZE=abc\r\n"),
                         b"501 5.5.4 Bad message size syntax\r\n")

    def test_dsn_parameter_edges(self):
        """RFC 3461: an ENVID is xtext, any of "!" to "~"; NOTIFY takes
        SUCCESS, FAILURE and DELAY together; an ORCPT's address is all
        that follows its first ";", and an xtext escape there that is no
        hexadecimal pair is refused (Postfix 3.7's replies)."""
        self.assertEqual(self.send(b"MAIL FROM:<a@b> ENVID=!x~\r\n"), b"250 2.1.0 Ok\r\n")
        self.assertEqual(self.send(b"RCPT TO:<c@d> NOTIFY=SUCCESS,FAILURE,DELAY\r\n"
                                   b"RCPT TO:<e@d> NOTIFY=FAILURE\r\n"),
                         b"250 2.1.5 Ok\r\n" * 2)
        self.assertEqual(self.send(b"RCPT TO:<f@d> ORCPT=rfc822;a+ZZ;b@d\r\n"),
                         b"501 5.5.4 Error: Bad ORCPT parameter syntax\r\n")

    def test_vrfy_address_syntax(self):
        """VRFY cuts its address as RCPT does: a quoted local part may hold
        a blank, an unquoted one may not, and unbalanced brackets are no
        address."""
        self.assertEqual(self.send(b'VRFY "john doe"@example.com\r\n'),
                         b'252 2.0.0 "john doe"@example.com\r\n')
        for arg in (b"john doe@example.com", b"<<a@example.com>", b"<a@example.com>>x"):
            self.assertEqual(self.send(b"VRFY " + arg + b"\r\n"),
                             b"501 5.1.3 Bad recipient address syntax\r\n", arg)

    def test_etrn_domain_quoted(self):
        """ETRN is refused for the domain named, which Postfix quotes
        without the "@" that may lead it, and as written otherwise."""
        self.assertEqual(self.send(b"ETRN @example.org\r\nETRN Xample.org\r\n"),
                         b"459 <example.org>: service unavailable\r\n"
                         b"459 <Xample.org>: service unavailable\r\n")

    def test_envelope_parameters_as_postfix(self):
        """RFC 6152: BODY=7BIT is taken as 8BITMIME is.  A SIZE past what
        an off_t holds exceeds the file system's limit; the largest one
        does not, but under a limit as large it cannot fit the spool
        (Postfix: 452, queue_minfree).  An address without angle brackets
        is taken as written.  RCPT takes NOTIFY and ORCPT, nothing else
        (nor those without DSN)."""
        self.assertEqual(self.send(b"MAIL FROM:<a@b> BODY=7BIT\r\nRSET\r\n"),
                         b"250 2.1.0 Ok\r\n250 2.0.0 Ok\r\n")
        self.assertEqual(self.send(b"MAIL FROM:Xavier@example.org\r\n"), b"250 2.1.0 Ok\r\n")
        self.assertEqual(self.send(b"RCPT TO:<c@d> FOO=BAR\r\n"),
                         b"555 5.5.4 Unsupported option: FOO=BAR\r\n")
        self.send(b"RCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\n")
        [(meta, _)] = self.spooled()
        self.assertEqual(meta["mail_from"], "Xavier@example.org")
        self.connect(make_config(smtp={"message_size_limit": 2**63 - 1}))
        self.send(EHLO)
        self.assertEqual(self.send(b"MAIL FROM:<a@b> SIZE=9223372036854775808\r\n"),
                         b"552 5.3.4 Message size exceeds file system imposed limit\r\n")
        self.assertEqual(self.send(b"MAIL FROM:<a@b> SIZE=9223372036854775807\r\n"),
                         b"452 4.3.1 Insufficient system storage\r\n")
        self.connect(make_config(smtp_features={"dsn": False}))
        self.send(EHLO + b"MAIL FROM:<a@b>\r\n")
        self.assertEqual(self.send(b"RCPT TO:<c@d> NOTIFY=NEVER\r\n"),
                         b"555 5.5.4 Unsupported option: NOTIFY=NEVER\r\n")

    def test_size_refused_at_mail(self):
        """SIZE= over the limit is refused at MAIL with 552."""
        self.assertEqual(self.send(b"MAIL FROM:<a@b> SIZE=10240001\r\n"),
                         b"552 5.3.4 Message size exceeds fixed limit\r\n")

    def test_size_at_limit(self):
        """SIZE= exactly at the limit is taken: RFC 1870 refuses only a size
        that exceeds it, and so did Postfix (probes mail_size_at_limit,
        mail_size_edges_D)."""
        self.connect(make_config(smtp={"message_size_limit": 1000}))
        self.send(EHLO)
        self.assertEqual(self.send(b"MAIL FROM:<a@b> SIZE=1000\r\n"), b"250 2.1.0 Ok\r\n")
        self.assertEqual(self.send(b"RSET\r\nMAIL FROM:<a@b> SIZE=1001\r\n"),
                         b"250 2.0.0 Ok\r\n552 5.3.4 Message size exceeds fixed limit\r\n")

    def test_message_at_limit(self):
        """A message of exactly the limit is queued whole, not truncated;
        one byte more is refused (RFC 1870; Postfix: probes data_at_limit_D,
        data_over_limit_D)."""
        self.connect(make_config(smtp={"message_size_limit": 1000}))
        self.send(EHLO)
        body = (b"x" * 98 + b"\r\n") * 10
        self.assertRegex(self.transaction(body + b".\r\n"),
                         rb"250 2\.0\.0 Ok: queued as \w+\r\n\Z")
        self.clock.advance(1)
        self.assertRegex(self.transaction(b"y" + body + b".\r\n"),
                         rb"552 5\.3\.4 Error: message file too big\r\n\Z")
        [(at_limit, raw), (over, cut)] = self.spooled()
        self.assertEqual((raw, at_limit["truncated"], at_limit["acknowledged"]),
                         (body, False, True))
        self.assertEqual((cut, over["truncated"], over["acknowledged"]),
                         ((b"y" + body)[:1000], True, False))
        self.assertEqual((at_limit["incomplete"], over["incomplete"]), (False, False))
        record = self.close()
        self.assertEqual([e["outcome"] for e in record["envelopes"]], ["queued", "too_big"])
        self.assertEqual([e["message"] for e in record["envelopes"]],
                         [at_limit["message"], over["message"]])
        self.assertEqual(record["messages"], 1)  # the one queued

    def test_oversized_data(self):
        """An oversized DATA is read to its end, answered 552 as Postfix
        does (probe data_over_limit_D), kept truncated."""
        self.connect(make_config(smtp={"message_size_limit": 1000}))
        self.send(EHLO)
        body = b"x" * 998 + b"\r\n"
        reply = self.transaction(body * 5 + b".\r\nNOOP\r\n")
        self.assertTrue(reply.endswith(
            b"552 5.3.4 Error: message file too big\r\n250 2.0.0 Ok\r\n"))
        [(meta, raw)] = self.spooled()
        self.assertEqual(raw, body[:1000])
        self.assertEqual((meta["truncated"], meta["acknowledged"]), (True, False))

    def test_recipient_limit(self):
        """Recipients past the limit get 452 and are not kept."""
        self.connect(make_config(smtp={"recipient_limit": 2}))
        self.send(EHLO + b"MAIL FROM:<a@b>\r\n")
        reply = self.send(b"RCPT TO:<1@x>\r\nRCPT TO:<2@x>\r\nRCPT TO:<3@x>\r\n"
                          b"DATA\r\nhi\r\n.\r\n")
        self.assertEqual(reply.split(b"\r\n")[2], b"452 4.5.3 Error: too many recipients")
        # RFC 5321 4.5.3.1.8: a recipient refused with 452 is no recipient.
        [(meta, _)] = self.spooled()
        self.assertEqual(meta["rcpts"], ["1@x", "2@x"])
        self.assertEqual(self.close()["envelopes"][0]["rcpts"], ["1@x", "2@x"])

    def test_recipient_overshoot(self):
        """As Postfix's smtpd_recipient_overshoot_limit (postconf(5), 1000):
        the first 1,000 refused recipients are no errors, the next ones are."""
        self.connect(make_config(smtp={"recipient_limit": 1}))
        self.send(EHLO + b"MAIL FROM:<a@b>\r\nRCPT TO:<0@x>\r\n")
        reply = self.send(b"RCPT TO:<1@x>\r\n" * 1000)
        self.assertEqual(reply, b"452 4.5.3 Error: too many recipients\r\n" * 1000)
        self.send(b"RCPT TO:<2@x>\r\n" * 2)
        self.assertEqual(self.close()["errors"], 2)

    def test_smuggling_variants(self):
        """DATA ends at a dot between bare LFs, as Postfix 3.7.11 ends it
        (tests/test_persona.py replays data_smuggling_*): what follows is
        commands, and the message keeps its bytes up to there, flagged."""
        reply = self.transaction(b"a\r\n\n.\nMAIL FROM:<x@y>\r\n")
        self.assertEqual(reply.count(b"250 2.1.0"), 2)
        [(meta, raw)] = self.spooled()
        self.assertEqual(raw, b"a\r\n\n")
        self.assertLessEqual({"smuggling", "bare_lf"}, set(meta["flags"]))

    def test_each_smuggling_variant_flagged(self):
        """Each variant of the end of data is flagged: those with a bare LF
        end the message there (NOOP after them is a command), a dot
        between CRs stays in it."""
        for variant, kept in ((b"a\n.\n", b"a\n"), (b"a\n.\r\n", b"a\n"),
                              (b"a\r\n.\n", b"a\r\n"),
                              (b"a\r.\rb\r\n.\r\n", b"a\r.\rb\r\n")):
            self.connect()
            self.send(EHLO)
            reply = self.transaction(variant + b"NOOP\r\n")
            self.assertTrue(reply.endswith(b"250 2.0.0 Ok\r\n"), variant)
            [(meta, raw)] = self.spooled()
            self.assertIn("smuggling", meta["flags"], variant)
            self.assertEqual(raw, kept)

    def test_smuggled_end_right_before_the_end(self):
        """A smuggling variant that the end of data follows at once is
        flagged, whether it came in one read or byte by byte."""
        for variant, kept in ((b"a\n.\r\n", b"a\n"), (b"a\r.\r\n", b"a\r.\r\n")):
            stream = b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n"
            stream += variant + b".\r\n"
            for reads in ([stream], [stream[i:i + 1] for i in range(len(stream))]):
                self.connect()
                self.send(EHLO)
                for data in reads:
                    self.send(data)
                [(meta, raw)] = self.spooled()
                self.assertEqual(raw, kept)
                self.assertIn("smuggling", meta["flags"], (variant, len(reads)))

    def test_metadata_of_the_envelope(self):
        """A spooled message's metadata holds the MAIL parameters, when its
        session began and its TLS (none here)."""
        self.clock.advance(5)
        self.send(b"MAIL FROM:<a@b.example> SIZE=100 BODY=8BITMIME\r\nRCPT TO:<c@d.example>\r\n"
                  b"DATA\r\nx\r\n.\r\n")
        [(meta, _)] = self.spooled()
        self.assertEqual((meta["mail_params"], meta["session_start"], meta["received"],
                          meta["tls"]),
                         ({"SIZE": "100", "BODY": "8BITMIME"}, 0.0, 5.0, None))

    def test_pipelining_after_data(self):
        """After the end of data the client may go on without waiting (RFC
        2920 3.1): the next MAIL behind it is no improper pipelining."""
        reply = self.send(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n")
        self.assertTrue(reply.endswith(b"354 End data with <CR><LF>.<CR><LF>\r\n"))
        reply = self.send(b"x\r\n.\r\nMAIL FROM:<e@f.example>\r\n")
        self.assertTrue(reply.endswith(b"250 2.1.0 Ok\r\n"))
        self.assertNotIn("improper_pipelining", self.close()["flags"])

    def test_spool_refuses_a_file(self):
        """A message file the spool cannot open gets Postfix's 451, and the
        record says why the envelope came to nothing."""
        def refuse(limit):
            raise OSError(errno.ENOSPC, "No space left on device")
        self.factory.spool.open = refuse
        reply = self.transaction(b"")
        self.assertTrue(reply.endswith(b"451 4.3.0 Error: queue file write error\r\n"))
        [envelope] = self.close()["envelopes"]
        self.assertEqual(envelope["outcome"], "spool_error")

    def test_dropped_mid_data(self):
        """A connection lost in DATA leaves an incomplete, unacknowledged
        message, and a session record that says so and when it ended."""
        reply = self.transaction(b"Subject: half\r\n")
        self.assertNotIn(b"queued", reply)
        self.clock.advance(3)
        record = self.close()
        [(meta, raw)] = self.spooled()
        self.assertEqual(raw, b"Subject: half\r\n")
        self.assertEqual((meta["incomplete"], meta["acknowledged"]), (True, False))
        self.assertIn("incomplete_message", record["flags"])
        self.assertEqual([e["outcome"] for e in record["envelopes"]], ["incomplete"])
        self.assertEqual((record["end"] - record["start"], record["close_reason"]),
                         (3, "client"))

    def test_long_line_in_data(self):
        """A 1 MB line in DATA is kept whole; command-like lines after it are data."""
        body = b"y" * 1000000 + b"\r\nQUIT\r\nRSET\r\n"
        reply = self.transaction(body + b".\r\n")
        self.assertNotIn(b"221", reply)
        [(meta, raw)] = self.spooled()
        self.assertEqual(raw, body)
        self.assertIn("long_line", meta["flags"])


class LocalRecipientTests(SessionTestCase):
    """Unknown users at the persona's own domains, refused as Postfix
    refuses them (tests/test_persona.py replays what it said), are kept."""

    def test_rejected_recipients_kept(self):
        """Refused recipients are in the session's envelope, as rejected,
        and their events say so; the accepted ones alone make the message."""
        self.send(EHLO)
        reply = self.send(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<nosuchuser>\r\n"
                          b"RCPT TO:<victim@[198.51.100.1]>\r\nRCPT TO:<root+x@localhost>\r\n"
                          b"RCPT TO:<c@d.example>\r\n")
        self.assertEqual([line[:9] for line in reply.split(b"\r\n")[:-1]],
                         [b"250 2.1.0", b"550 5.1.1", b"550 5.1.1", b"250 2.1.5", b"250 2.1.5"])
        self.assertIn(b"queued as", self.send(b"DATA\r\nhi\r\n.\r\n"))
        [(meta, _)] = self.spooled()
        self.assertEqual(meta["rcpts"], ["root+x@localhost", "c@d.example"])
        [envelope] = self.close()["envelopes"]
        self.assertEqual((envelope["rcpts"], envelope["rejected"]),
                         (["root+x@localhost", "c@d.example"],
                          ["nosuchuser", "victim@[198.51.100.1]"]))
        self.assertEqual([(e["rcpt"], e["accepted"]) for e in self.factory.output.events
                          if e["eventid"] == "smtplatrine.rcpt"],
                         [("nosuchuser", False), ("victim@[198.51.100.1]", False),
                          ("root+x@localhost", True), ("c@d.example", True)])

    def test_configured_users_and_domains(self):
        """local_users and local_domains replace Debian's: the users listed
        are known (in any case, with any +extension), no other one is at
        the domains listed, the host name or the server's literal."""
        self.connect(make_config(smtp={"local_users": ("alice",),
                                       "local_domains": ("corp.example",)}))
        self.send(b"MAIL FROM:<a@b.example>\r\n")
        for address, code in ((b"Alice+news@corp.example", b"250"), (b"root", b"550"),
                              (b"root@corp.example", b"550"), (b"alice@[198.51.100.1]", b"250"),
                              (b"bob@mail.example.com", b"550"), (b"root@localhost", b"250")):
            self.assertEqual(self.send(b"RCPT TO:<" + address + b">\r\n")[:3], code, address)

    def test_ipv6_literal(self):
        """On IPv6, the literal of the server's IPv6 address is local."""
        self.connect(peer=("2001:db8::7", 40000), server=("2001:db8::1", 25))
        self.send(b"MAIL FROM:<a@b.example>\r\n")
        self.assertEqual(self.send(b"RCPT TO:<nosuchuser@[IPv6:2001:db8:0::1]>\r\n")[:3],
                         b"550")
        self.assertEqual(self.send(b"RCPT TO:<nosuchuser@[IPv6:2001:db8::2]>\r\n")[:3],
                         b"250")


    def test_ipv4_literal_on_a_dual_stack_socket(self):
        """An IPv4 client of an IPv6 socket sees the server's IPv4 address,
        which the socket reports mapped (::ffff:198.51.100.1): that
        address's literal is local, another is not."""
        self.connect(peer=("::ffff:192.0.2.7", 40000), server=("::ffff:198.51.100.1", 25))
        self.send(b"MAIL FROM:<a@b.example>\r\n")
        self.assertEqual(self.send(b"RCPT TO:<nosuchuser@[198.51.100.1]>\r\n")[:3], b"550")
        self.assertEqual(self.send(b"RCPT TO:<nosuchuser@[198.51.100.2]>\r\n")[:3], b"250")


class LongLineFlagTests(SessionTestCase):

    def flags_for(self, *pieces):
        self.send(EHLO + b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n")
        for piece in pieces:
            self.send(piece)
        self.send(b"\r\n.\r\n")
        return self.spooled()[0][0]["flags"]

    def test_line_at_limit(self):
        """A line of exactly line_length_limit bytes is not flagged."""
        self.assertNotIn("long_line", self.flags_for(b"a\r\n" + b"x" * 2048))

    def test_line_over_limit_across_reads(self):
        """A line one byte over the limit, arriving in pieces, is flagged."""
        self.assertIn("long_line", self.flags_for(b"a\r\n" + b"x" * 1000, b"x" * 1000,
                                                  b"x" * 49))


class ChunkingTests(SessionTestCase):

    def setUp(self):
        super().setUp()
        self.send(EHLO + b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n")

    def test_bdat(self):
        """BDAT chunks are acknowledged with their size; LAST queues the message."""
        self.assertEqual(self.send(b"BDAT 5\r\nHello"), b"250 2.0.0 Ok: 5 bytes\r\n")
        reply = self.send(b"BDAT 10 LAST\r\n\r\n.world\r\n")
        self.assertRegex(reply, rb"\A250 2\.0\.0 Ok: 15 bytes queued as [0-9A-F]{11}\r\n\Z")
        [(meta, raw)] = self.spooled()
        self.assertEqual(raw, b"Hello\r\n.world\r\n")
        self.assertEqual(meta["transport"], "BDAT")

    def test_bdat_split_reads(self):
        """A chunk arriving in pieces, with the next command behind it, is exact."""
        self.send(b"BDAT 10 LAST\r\n0123")
        reply = self.send(b"456789NOOP\r\n")
        self.assertTrue(reply.endswith(b"\r\n250 2.0.0 Ok\r\n"))
        self.assertEqual(self.spooled()[0][1], b"0123456789")

    def test_bdat_without_transaction(self):
        """BDAT before MAIL reads its chunk, then answers 503."""
        self.send(b"RSET\r\n")
        reply = self.send(b"BDAT 4 LAST\r\nQUITNOOP\r\n")
        self.assertEqual(reply, b"503 5.5.1 Error: need RCPT command\r\n250 2.0.0 Ok\r\n")
        self.assertEqual(self.spooled(), [])

    def test_bdat_syntax(self):
        """A BDAT without a numeric size gets 521 and the session ends."""
        self.assertEqual(self.send(b"BDAT abc\r\n"),
                         b"521 5.5.4 Syntax: BDAT count [LAST]\r\n")
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.close()["close_reason"], "bdat_syntax")

    def test_bdat_syntax_edges(self):
        """RFC 3030: BDAT takes a size and LAST, nothing more; a size past
        what an off_t holds is no size to Postfix, the largest one is."""
        for arg in (b"5 LAST MORE", b"5 NOTLAST", b"9223372036854775808"):
            self.setUp()
            self.assertEqual(self.send(b"BDAT " + arg + b"\r\n"),
                             b"521 5.5.4 Syntax: BDAT count [LAST]\r\n", arg)
        self.setUp()
        self.assertEqual(self.send(b"BDAT 9223372036854775807\r\nxyz"), b"")
        self.assertFalse(self.transport.disconnecting)

    def test_chunks_counted(self):
        """The session record counts the chunks of each message."""
        self.send(b"BDAT 1\r\naBDAT 1\r\nbBDAT 1 LAST\r\nc")
        [envelope] = self.close()["envelopes"]
        self.assertEqual(envelope["chunks"], 3)

    def test_rset_between_chunks(self):
        """RSET between chunks discards the message begun (RFC 3030 section
        2: RSET clears all message data); the next one is only its own
        bytes (Postfix: probe bdat_rset_between_chunks)."""
        self.assertEqual(self.send(b"BDAT 5\r\nHello"), b"250 2.0.0 Ok: 5 bytes\r\n")
        self.assertEqual(self.send(b"RSET\r\n"), b"250 2.0.0 Ok\r\n")
        reply = self.send(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 7 LAST\r\nWorld\r\n")
        self.assertRegex(reply, rb"250 2\.0\.0 Ok: 7 bytes queued as \w+\r\n\Z")
        [(meta, raw)] = self.spooled()
        self.assertEqual((raw, meta["size"]), (b"World\r\n", 7))
        # Nothing of the discarded message is left in the spool.
        self.assertEqual([p.read_bytes() for p in self.factory.spool.messages.glob("*.eml")
                          if p.stat().st_size], [b"World\r\n"])

    def test_chunk_at_limit(self):
        """A BDAT message of exactly the limit is queued whole (Postfix:
        probe bdat_at_limit_D)."""
        self.connect(make_config(smtp={"message_size_limit": 1000}))
        body = (b"x" * 98 + b"\r\n") * 10
        reply = self.send(EHLO + b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n"
                          b"BDAT 600\r\n" + body[:600] + b"BDAT 400 LAST\r\n" + body[600:])
        self.assertRegex(reply, rb"250 2\.0\.0 Ok: 600 bytes\r\n"
                                rb"250 2\.0\.0 Ok: 1000 bytes queued as \w+\r\n\Z")
        [(meta, raw)] = self.spooled()
        self.assertEqual((raw, meta["truncated"], meta["acknowledged"]), (body, False, True))

    def test_chunk_over_limit_not_last(self):
        """A chunk, not the last, that takes the message over the limit is
        refused at once, and the message is not acknowledged (Postfix:
        probe bdat_chunk_over_limit_D)."""
        self.connect(make_config(smtp={"message_size_limit": 1000}))
        self.send(EHLO + b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n")
        self.assertEqual(self.send(b"BDAT 500\r\n" + b"x" * 500),
                         b"250 2.0.0 Ok: 500 bytes\r\n")
        self.assertEqual(self.send(b"BDAT 501\r\n" + b"y" * 501),
                         b"552 5.3.4 Chunk exceeds message size limit\r\n")
        self.assertEqual(self.send(b"BDAT 3 LAST\r\nzzz"),
                         b"551 5.0.0 Discarded 3 bytes after earlier error\r\n")
        [(meta, raw)] = self.spooled()
        self.assertEqual((raw, meta["truncated"], meta["acknowledged"]),
                         (b"x" * 500 + b"y" * 500, True, False))

    def test_data_after_bdat(self):
        """DATA in a BDAT transaction is refused."""
        self.send(b"BDAT 2\r\nab")
        self.assertEqual(self.send(b"DATA\r\n"), b"503 5.5.1 Error: DATA after BDAT\r\n")


class AuthTests(SessionTestCase):

    def setUp(self):
        super().setUp()
        self.send(EHLO)

    def attempts(self):
        return self.close()["auth"]

    def connect_cram(self):
        """A new session that offers CRAM-MD5 too; after EHLO."""
        self.connect(make_config(
            smtp_features={"auth_mechanisms": ("PLAIN", "LOGIN", "CRAM-MD5")}))
        self.send(EHLO)

    def test_plain_initial_response(self):
        """AUTH PLAIN with an initial response records user and password."""
        token = base64.b64encode(b"\0alice\0s3cret")
        reply = self.send(b"AUTH PLAIN " + token + b"\r\n")
        self.assertEqual(reply, b"535 5.7.8 Error: authentication failed:"
                                b" (reason unavailable)\r\n")
        [attempt] = self.attempts()
        self.assertEqual((attempt["mechanism"], attempt["username"], attempt["password"]),
                         ("PLAIN", "alice", "s3cret"))
        self.assertIn("smtplatrine.login.attempt", self.factory.output.ids())

    def test_plain_without_initial_response(self):
        """AUTH PLAIN alone gets an empty challenge, then takes the response."""
        self.assertEqual(self.send(b"AUTH PLAIN\r\n"), b"334 \r\n")
        self.send(base64.b64encode(b"admin\0bob\0pw") + b"\r\n")
        [attempt] = self.attempts()
        self.assertEqual((attempt["authzid"], attempt["username"], attempt["password"]),
                         ("admin", "bob", "pw"))

    def test_login(self):
        """AUTH LOGIN asks Username: and Password: in base64."""
        self.assertEqual(self.send(b"AUTH LOGIN\r\n"), b"334 VXNlcm5hbWU6\r\n")
        self.assertEqual(self.send(b"Ym9i\r\n"), b"334 UGFzc3dvcmQ6\r\n")
        self.send(b"aHVudGVyMg==\r\n")
        [attempt] = self.attempts()
        self.assertEqual((attempt["username"], attempt["password"]), ("bob", "hunter2"))

    def test_login_initial_response(self):
        """AUTH LOGIN with the username given at once asks only the password."""
        self.assertEqual(self.send(b"AUTH LOGIN Ym9i\r\n"), b"334 UGFzc3dvcmQ6\r\n")
        self.send(base64.b64encode(b"hunter2") + b"\r\n")
        [attempt] = self.attempts()
        self.assertEqual((attempt["mechanism"], attempt["username"], attempt["password"]),
                         ("LOGIN", "bob", "hunter2"))

    def test_login_empty_initial_response(self):
        """RFC 4954 4: an initial response of ``=`` is an empty one: the
        user name is empty, and the password is asked for."""
        self.assertEqual(self.send(b"AUTH LOGIN =\r\n"), b"334 UGFzc3dvcmQ6\r\n")
        self.send(base64.b64encode(b"hunter2") + b"\r\n")
        [attempt] = self.attempts()
        self.assertEqual((attempt["username"], attempt["password"]), ("", "hunter2"))

    def test_user_name_not_utf8_kept(self):
        """A user name in Latin-1 (not UTF-8) is captured byte for byte."""
        self.send(b"AUTH LOGIN\r\n")
        self.send(base64.b64encode("b\u00f6b".encode("latin-1")) + b"\r\n")
        self.send(base64.b64encode(b"pw") + b"\r\n")
        [attempt] = self.attempts()
        self.assertEqual(attempt["username"].encode("utf-8", "surrogateescape"), b"b\xf6b")

    def test_plain_malformed_kept(self):
        """RFC 4616: a PLAIN message is authzid NUL user NUL password; one
        without its two NULs names no user, and is kept whole."""
        self.send(b"AUTH PLAIN " + base64.b64encode(b"alice:s3cret") + b"\r\n")
        [attempt] = self.attempts()
        self.assertEqual((attempt["username"], attempt["response"]), (None, "alice:s3cret"))

    def test_outcome_recorded_as_answered(self):
        """Each attempt is recorded, and emitted, as accepted exactly when
        it was answered 235."""
        token = base64.b64encode(b"\0u\0p")
        for accept, answer in ((False, b"535 "), (True, b"235 ")):
            self.connect(make_config(smtp={"smtp_auth_accept": accept}))
            self.send(EHLO)
            self.assertTrue(self.send(b"AUTH PLAIN " + token + b"\r\n").startswith(answer))
            [event] = [e for e in self.factory.output.events
                       if e["eventid"] == "smtplatrine.login.attempt"]
            [attempt] = self.attempts()
            self.assertEqual((attempt["accepted"], event["accepted"]), (accept, accept))

    def test_attempt_time_and_event(self):
        """An attempt is recorded with the time it ended; its event carries
        the same fields (but the time, which the event has as its own),
        control characters in what the client sent escaped."""
        self.clock.advance(42)
        token = base64.b64encode(b"\0ad\x1bmin\0p\nw")
        self.send(b"AUTH PLAIN " + token + b"\r\n")
        [event] = [e for e in self.factory.output.events
                   if e["eventid"] == "smtplatrine.login.attempt"]
        [attempt] = self.attempts()
        self.assertEqual(attempt["time"], self.clock.seconds())
        self.assertEqual((attempt["username"], attempt["password"]), ("ad\x1bmin", "p\nw"))
        self.assertNotIn("time", event)
        self.assertEqual((event["mechanism"], event["username"], event["password"],
                          event["accepted"]),
                         ("PLAIN", "ad\\x1bmin", "p\\nw", False))

    def test_pipelining_after_auth(self):
        """Once AUTH is over, commands may be pipelined again (RFC 2920,
        after EHLO): a MAIL and its RCPTs in one write are no improper
        pipelining."""
        token = base64.b64encode(b"\0u\0p")
        self.send(b"AUTH PLAIN " + token + b"\r\n")
        self.assertEqual(self.send(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n"),
                         b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n")
        self.assertNotIn("improper_pipelining", self.close()["flags"])

    def test_cram_md5_challenges_differ(self):
        """RFC 2195: each challenge holds random digits, so that no two
        sessions get the same one, even in the same second."""
        challenges = set()
        for _ in range(40):
            self.connect_cram()
            challenges.add(self.send(b"AUTH CRAM-MD5\r\n"))
        self.assertEqual(len(challenges), 40)

    def test_cram_md5_user_name_with_space(self):
        """RFC 2195: the response is the user name, a space and 32 hex
        digits; a user name holding spaces is kept whole."""
        self.connect_cram()
        challenge = base64.b64decode(self.send(b"AUTH CRAM-MD5\r\n")[4:-2])
        digest = hmac.new(b"pw", challenge, "md5").hexdigest()
        self.send(base64.b64encode(b"tim o brien " + digest.encode()) + b"\r\n")
        [attempt] = self.attempts()
        self.assertEqual((attempt["username"], attempt["response"]), ("tim o brien", digest))

    def test_cram_md5(self):
        """CRAM-MD5 keeps the challenge and response for offline cracking."""
        self.connect_cram()
        challenge = base64.b64decode(self.send(b"AUTH CRAM-MD5\r\n")[4:-2])
        self.assertRegex(challenge, rb"\A<\d+\.\d+@mail\.example\.com>\Z")
        digest = hmac.new(b"tanstaaf", challenge, "md5").hexdigest()
        self.send(base64.b64encode(b"tim " + digest.encode()) + b"\r\n")
        [attempt] = self.attempts()
        self.assertEqual(attempt["challenge"], challenge.decode())
        self.assertEqual((attempt["username"], attempt["response"]), ("tim", digest))

    def test_accept(self):
        """With smtp_auth_accept every attempt succeeds, once per session."""
        self.connect(make_config(smtp={"smtp_auth_accept": True}))
        self.send(EHLO)
        token = base64.b64encode(b"\0u\0p")
        self.assertEqual(self.send(b"AUTH PLAIN " + token + b"\r\n"),
                         b"235 2.7.0 Authentication successful\r\n")
        self.assertEqual(self.send(b"AUTH PLAIN " + token + b"\r\n"),
                         b"503 5.5.1 Error: already authenticated\r\n")

    def test_bare_auth(self):
        """A bare AUTH gets the syntax reply, not a traceback."""
        self.assertEqual(self.send(b"AUTH\r\n"), b"501 5.5.4 Syntax: AUTH mechanism\r\n")

    def test_words_after_the_initial_response(self):
        """A word after the initial response is a syntax error, as Postfix
        answers it (smtpd_sasl_proto.c: two arguments at most), and no
        attempt is recorded."""
        token = base64.b64encode(b"\0user\0pass")
        self.assertEqual(self.send(b"AUTH PLAIN " + token + b" extra\r\n"),
                         b"501 5.5.4 Syntax: AUTH mechanism\r\n")
        self.assertEqual(self.protocol.record.auth, [])

    def test_cancel_and_bad_base64(self):
        """``*`` aborts an exchange; a response that is not base64 gets 501."""
        self.send(b"AUTH LOGIN\r\n")
        self.assertEqual(self.send(b"*\r\n"), b"501 5.7.0 Authentication aborted\r\n")
        self.send(b"AUTH LOGIN\r\n")
        self.assertEqual(self.send(b"%%%\r\n"), b"535 5.7.8 Error: authentication failed:"
                         b" Invalid base64 data in continued response\r\n")
        self.assertEqual(self.send(b"AUTH PLAIN !!!\r\n"), b"535 5.7.8 Error: authentication"
                         b" failed: Invalid base64 data in initial response\r\n")
        self.assertEqual(self.send(b"NOOP\r\n"), b"250 2.0.0 Ok\r\n")

    def test_unknown_mechanism(self):
        """A mechanism not offered is refused."""
        self.assertEqual(self.send(b"AUTH GSSAPI\r\n"),
                         b"535 5.7.8 Error: authentication failed:"
                         b" Invalid authentication mechanism\r\n")


class TLSTests(SessionTestCase):

    def test_starttls_discards_pipelined_plaintext(self):
        """Commands pipelined behind STARTTLS are dropped and the session reset."""
        self.send(EHLO)
        reply = self.send(b"STARTTLS\r\nMAIL FROM:<evil@x>\r\nRCPT TO:<a@b>\r\n")
        self.assertEqual(reply, b"220 2.0.0 Ready to start TLS\r\n")
        self.assertIsNotNone(self.transport.tls)
        # The transaction was forgotten: MAIL is the first of a new one.
        self.assertEqual(self.send(b"MAIL FROM:<a@b>\r\n"), b"250 2.1.0 Ok\r\n")
        self.assertNotIn(b"STARTTLS", self.send(b"RSET\r\n" + EHLO))
        self.assertEqual(self.send(b"STARTTLS\r\n"),
                         b"554 5.5.1 Error: TLS already active\r\n")
        self.assertIn("starttls_injection", self.close()["flags"])

    def test_starttls_forgets_what_came_before(self):
        """RFC 3207 4.2: after STARTTLS the server forgets what the client
        told it before: its greeting (none is recorded until the next)
        and its authentication (AUTH is taken again).  Its TLS is not the
        implicit kind."""
        self.connect(make_config(smtp={"smtp_auth_accept": True}))
        self.send(EHLO)
        token = base64.b64encode(b"\0u\0p")
        self.send(b"AUTH PLAIN " + token + b"\r\n")
        self.assertEqual(self.send(b"STARTTLS\r\n"), b"220 2.0.0 Ready to start TLS\r\n")
        self.send(EHLO)
        self.assertEqual(self.send(b"AUTH PLAIN " + token + b"\r\n"),
                         b"235 2.7.0 Authentication successful\r\n")
        self.assertEqual(self.close()["tls"], {"implicit": False})
        self.connect()
        self.send(EHLO + b"STARTTLS\r\n")
        self.assertIsNone(self.close()["helo"])

    def test_plaintext_waiting_in_the_socket(self):
        """Bytes the client sent after STARTTLS that wait unread in the
        socket are plaintext injection, unless they can begin a TLS
        handshake (a record starting 0x16, as a ClientHello does); none
        waiting is no injection either."""
        flagged = []
        for waiting in (b"MAIL FROM:<evil@x>\r\n", b"\x16\x03\x01", b""):
            self.connect()
            ours, theirs = socket.socketpair()
            self.addCleanup(ours.close)
            self.addCleanup(theirs.close)
            ours.setblocking(False)
            theirs.sendall(waiting)
            self.transport.getHandle = lambda: ours
            self.send(EHLO + b"STARTTLS\r\n")
            flagged.append("starttls_injection" in self.close()["flags"])
            self.assertEqual(ours.recv(100, socket.MSG_DONTWAIT) if waiting else b"", waiting)
        self.assertEqual(flagged, [True, False, False])

    def test_handshake_recorded(self):
        """Once the TLS handshake after STARTTLS is done, the session record
        and an event hold the version and cipher the client got (as the
        client sees them); a session whose handshake never ended is said
        to have failed TLS."""
        self.send(EHLO + b"STARTTLS\r\n")
        server = SSL.Connection(tls.context_factory(
            *tls.self_signed("mail.example.com", Path(self.mktemp()))).getContext(), None)
        server.set_accept_state()
        client = SSL.Connection(SSL.Context(SSL.TLS_CLIENT_METHOD), None)
        client.set_connect_state()
        for _ in range(10):
            for end in (client, server):
                try:
                    end.do_handshake()
                except SSL.WantReadError:
                    pass
            for source, sink in ((client, server), (server, client)):
                try:
                    sink.bio_write(source.bio_read(65536))
                except SSL.WantReadError:
                    pass
        self.transport.getHandle = lambda: server
        self.protocol.handshakeCompleted()
        got = {"version": client.get_protocol_version_name(),
               "cipher": client.get_cipher_name()}
        self.assertTrue(got["cipher"])
        self.assertEqual(self.close()["tls"], {"implicit": False, **got})
        events = {e["eventid"]: e for e in self.factory.output.events}
        self.assertEqual((events["smtplatrine.session.tls"]["tls_version"],
                          events["smtplatrine.session.tls"]["tls_cipher"],
                          events["smtplatrine.session.closed"]["tls_failed"]),
                         (got["version"], got["cipher"], False))
        self.connect()
        self.send(EHLO + b"STARTTLS\r\n")
        self.close()
        [closed] = [e for e in self.factory.output.events
                    if e["eventid"] == "smtplatrine.session.closed"]
        self.assertTrue(closed["tls_failed"])

    def test_starttls_with_argument(self):
        """STARTTLS takes no argument."""
        self.assertEqual(self.send(b"STARTTLS now\r\n"), b"501 5.5.4 Syntax: STARTTLS\r\n")


class PipeliningTests(SessionTestCase):

    def test_batch_in_order(self):
        """A pipelined batch is answered in order in one go."""
        self.send(EHLO)
        reply = self.send(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\n"
                          b"DATA\r\n")
        self.assertEqual(reply, (b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
                                       b"250 2.1.5 Ok\r\n354 End data with"
                                       b" <CR><LF>.<CR><LF>\r\n"))
        self.assertNotIn("improper_pipelining", self.close()["flags"])

    def test_order_kept_while_commit_waits(self):
        """Commands behind a message wait until its commit has been answered."""
        self.connect(disk=HeldDisk)
        reply = self.send(EHLO + b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"
                          b"hi\r\n.\r\nNOOP\r\nQUIT\r\n")
        self.assertTrue(reply.endswith(b"354 End data with <CR><LF>.<CR><LF>\r\n"))
        self.factory.spool._disk.syncs.pop().callback({})
        self.assertRegex(self.transport.value(),
                         rb"354 [^\r]*\r\n250 2\.0\.0 Ok: queued as \w+\r\n"
                         rb"250 2\.0\.0 Ok\r\n221 2\.0\.0 Bye\r\n\Z")

    def test_reading_paused_while_waiting(self):
        """While a reply waits, more than 64 KB read ahead pauses reading."""
        self.connect(make_config(smtp={"junk_command_limit": 20000}), disk=HeldDisk)
        self.send(EHLO + b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nhi\r\n.\r\n")
        self.send(b"NOOP\r\n" * 12000)
        self.assertEqual(self.transport.producerState, "paused")
        self.factory.spool._disk.syncs.pop().callback({})
        settle(self.clock)
        self.assertEqual(self.transport.producerState, "producing")
        self.assertEqual(self.transport.value().count(b"250 2.0.0 Ok\r\n"), 12000)

    def test_improper_pipelining_flagged(self):
        """Commands sent ahead of the EHLO reply are flagged."""
        self.send(EHLO + b"MAIL FROM:<a@b>\r\n")
        self.assertIn("improper_pipelining", self.close()["flags"])


class SpoolFailureTests(SessionTestCase):

    def fail_with(self, code):
        """The reply to a message whose sync fails with *code*."""
        return self.fail_with_error(OSError(code, "injected"))

    def fail_with_error(self, error):
        """The reply to a message whose sync fails with *error*."""
        self.connect(disk=HeldDisk)
        self.send(EHLO)
        self.transaction(b"x\r\n.\r\n")
        self.factory.spool._disk.syncs.pop().errback(error)
        return self.transport.value().split(b"\r\n")[-2] + b"\r\n"

    def test_disk_full(self):
        """A sync that a full disk refuses gets 451, never 250, and the
        message is removed, as Postfix's queue file (probe data_queue_full)."""
        self.assertEqual(self.fail_with(errno.ENOSPC),
                         b"451 4.3.0 Error: queue file write error\r\n")
        [envelope] = self.protocol.record.envelopes
        self.assertFalse((self.factory.spool.messages / f"{envelope.message}.eml").exists())
        self.assertEqual(envelope.outcome, "spool_error")

    def test_unexpected_failure(self):
        """A commit that fails with an error that is no OSError gets the
        same 451, and its message is removed."""
        self.assertEqual(self.fail_with_error(RuntimeError("unexpected")),
                         b"451 4.3.0 Error: queue file write error\r\n")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        [envelope] = self.protocol.record.envelopes
        self.assertEqual(envelope.outcome, "spool_error")
        self.assertEqual(list(self.factory.spool.messages.glob(f"{envelope.message}.*")), [])

    def test_dropped_mid_data_and_refused(self):
        """A message cut short by the client that the disk then refuses is
        removed, and the session record says so."""
        self.connect(disk=HeldDisk)
        self.send(EHLO)
        self.transaction(b"Subject: half\r\n")
        self.protocol.connectionLost(None)
        self.factory.spool._disk.syncs.pop().errback(OSError(errno.ENOSPC, "injected"))
        [envelope] = self.protocol.record.envelopes
        self.assertEqual(envelope.outcome, "spool_error")
        self.assertEqual(list(self.factory.spool.messages.glob(f"{envelope.message}.*")), [])

    def test_fsync_failure(self):
        """A failed fsync gets 451, never 250."""
        self.assertEqual(self.fail_with(errno.EIO),
                         b"451 4.3.0 Error: queue file write error\r\n")

    def test_file_too_big_for_disk(self):
        """A file the file system will not let grow gets Postfix's 552."""
        self.assertEqual(self.fail_with(errno.EFBIG),
                         b"552 5.3.4 Message size exceeds file system imposed limit\r\n")


class LimitTests(SessionTestCase):

    def test_error_limit(self):
        """Past the soft limit replies are delayed; at the hard limit, 421."""
        self.send(EHLO)
        reply = self.send(b"FOO\r\n" * 25)
        # Postfix answered ten at once, then one a second, 421 a second later.
        self.assertEqual(reply.count(b"500 5.5.2"), 10)
        self.clock.pump([1] * 10)
        self.assertEqual(self.transport.value().count(b"500 5.5.2"), 20)
        self.assertNotIn(b"421", self.transport.value())
        self.clock.advance(1)
        self.assertTrue(self.transport.value().endswith(
            b"421 4.7.0 mail.example.com Error: too many errors\r\n"))
        self.assertTrue(self.transport.disconnecting)

    def test_message_forgives_errors(self):
        """A queued message resets the error count, as in Postfix."""
        self.send(EHLO + b"FOO\r\n" * 9 + b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n")
        reply = self.send(b"DATA\r\nx\r\n.\r\nFOO\r\nNOOP\r\n")
        self.assertTrue(reply.endswith(
            b"queued as " + self.spooled()[0][0]["queue_id"].encode()
            + b"\r\n500 5.5.2 Error: command not recognized\r\n250 2.0.0 Ok\r\n"))

    def test_idle_timeout(self):
        """A silent client gets 421 after the timeout."""
        self.clock.advance(299)
        self.assertFalse(self.transport.disconnecting)
        self.clock.advance(1)
        self.assertEqual(self.transport.value(),
                         b"421 4.4.2 mail.example.com Error: timeout exceeded\r\n")
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.close()["close_reason"], "idle_timeout")

    def test_slow_command(self):
        """A command dribbled one byte every 10 s ends at the timeout, not
        before."""
        for _ in range(29):
            self.send(b"N")
            self.clock.advance(10)
            self.assertFalse(self.transport.disconnecting)
        self.send(b"N")
        self.clock.advance(10)
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.close()["close_reason"], "command_timeout")

    def test_session_deadline(self):
        """A busy session still ends at the total deadline."""
        self.connect(make_config(smtp={"session_deadline": 100}))
        for _ in range(11):
            self.send(b"NOOP\r\n")
            self.clock.advance(10)
        self.assertEqual(self.close()["close_reason"], "session_deadline")

    def test_slow_data(self):
        """DATA slower than min_data_rate is cut off."""
        self.send(EHLO + b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n")
        for _ in range(40):
            self.send(b"x" * 100)
            self.clock.advance(1)
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.close()["close_reason"], "slow_data")

    def test_data_at_the_minimum_rate(self):
        """A client that sends commands slowly, then DATA at exactly
        min_data_rate bytes a second, is not cut off: only slower DATA is."""
        self.send(EHLO)
        for _ in range(12):
            self.clock.advance(5)
            self.send(b"NOOP\r\n")
        self.send(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n")
        for _ in range(60):
            self.send(b"x" * 500)
            self.clock.advance(1)
        self.assertFalse(self.transport.disconnecting)
        self.assertIn(b"queued as", self.send(b"\r\n.\r\n"))

    def test_overlong_command(self):
        """A 100 KB command line is cut to the limit and the session goes on."""
        reply = self.send(b"NOOP " + b"A" * 100000 + b"\r\nNOOP\r\n")
        self.assertEqual(reply, b"250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n")
        self.assertIn("long_command", self.close()["flags"])

    def test_endless_line_is_bounded(self):
        """10 MB without a line end never grows the buffer past the limit."""
        for _ in range(160):
            self.protocol.dataReceived(b"B" * 65536)
            self.assertLessEqual(self.protocol._framer.pending, 65536 + 2048)
        self.assertEqual(self.transport.value(), b"")

    def test_hostile_verbs(self):
        """NUL ends a command, bad UTF-8 gets 500, and the session goes on."""
        reply = self.send(b"NO\0OP\r\nNOOP\0x\r\nHELO \xff\xfe\r\nHELO \x1b[31m\r\n\r\n"
                          b"NOOP\0\xff\r\n")
        # As a Postfix 3.7 answered: the UTF-8 check sees past the NUL.
        self.assertEqual(reply.split(b"\r\n"), [
            b"500 5.5.2 Error: command not recognized", b"250 2.0.0 Ok",
            b"500 5.5.2 Error: bad UTF-8 syntax", b"250 mail.example.com",
            b"500 5.5.2 Error: bad syntax", b"500 5.5.2 Error: bad UTF-8 syntax", b""])

    def test_forbidden_commands(self):
        """HTTP and lines not starting with a letter end the session, as in Postfix."""
        for line in (b"GET / HTTP/1.0\r\n", b"\x16\x03\x01\x02\0\r\n", b".\r\n"):
            self.connect()
            self.assertEqual(self.send(line),
                             b"221 2.7.0 Error: I can break rules, too. Goodbye.\r\n")
            self.assertTrue(self.transport.disconnecting)

    def test_global_connection_limit(self):
        """A connection over max_connections gets 421 and is closed."""
        self.connect(make_config(protection={"max_connections": 1}))
        _, transport = connect(self.factory)
        self.assertEqual(transport.value(),
                         b"421 4.7.0 mail.example.com Error: too many connections\r\n")
        self.assertTrue(transport.disconnecting)


class RecordTests(SessionTestCase):

    def test_session_record(self):
        """The session record holds identity, transcript, envelopes and counters."""
        self.send(EHLO)
        self.transaction(b"x\r\n.\r\n")
        self.send(b"QUIT\r\n")
        record = self.close()
        self.assertEqual((record["src_ip"], record["src_port"], record["dst_port"]),
                         ("192.0.2.7", 40000, 25))
        self.assertEqual(record["helo"], "client.example.org")
        self.assertEqual(record["transcript"][0][1:], ["S", "220 mail.example.com ESMTP"
                                                           " Postfix (Debian/GNU)"])
        self.assertEqual(record["transcript"][1][1:], ["C", "EHLO client.example.org"])
        self.assertEqual(record["envelopes"][0]["outcome"], "queued")
        self.assertEqual(record["messages"], 1)

    def test_events(self):
        """Every step emits an event carrying session, sensor and client IP."""
        self.send(EHLO)
        self.transaction(b"x\r\n.\r\n")
        self.close()
        self.assertEqual(self.factory.output.ids(), [
            "smtplatrine.session.connect", "smtplatrine.session.helo",
            "smtplatrine.mail", "smtplatrine.rcpt", "smtplatrine.message.spooled",
            "smtplatrine.session.closed"])
        for event in self.factory.output.events:
            self.assertEqual(event["session"], self.protocol.identity.session)
            self.assertEqual((event["sensor"], event["src_ip"]),
                             ("smtplatrine", "192.0.2.7"))
            self.assertIn("timestamp", event)

    def test_event_fields(self):
        """The events carry what the client said and what became of it: the
        greeting's verb and name, the sender, each recipient and whether
        it was taken, the message spooled (its id, queue id, size and
        SHA-256 as written), and at the end how long the session lasted,
        its messages and commands and why it ended (the client left)."""
        self.send(EHLO)
        self.send(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n"
                  b"RCPT TO:<nosuchuser>\r\nDATA\r\nx\r\n.\r\n")
        self.clock.advance(7)
        self.close()
        [(metadata, _)] = self.spooled()
        fields = [{k: v for k, v in event.items()
                   if k not in ("session", "sensor", "src_ip", "src_port", "dst_ip",
                                "dst_port", "timestamp")}
                  for event in self.factory.output.events[1:]]
        self.assertEqual(fields, [
            {"eventid": "smtplatrine.session.helo", "command": "EHLO",
             "helo": "client.example.org"},
            {"eventid": "smtplatrine.mail", "mail_from": "a@b.example"},
            {"eventid": "smtplatrine.rcpt", "rcpt": "c@d.example", "accepted": True},
            {"eventid": "smtplatrine.rcpt", "rcpt": "nosuchuser", "accepted": False},
            {"eventid": "smtplatrine.message.spooled", "message": metadata["message"],
             "queue_id": metadata["queue_id"], "size": 3,
             "sha256": hashlib.sha256(b"x\r\n").hexdigest(), "acknowledged": True,
             "truncated": False},
            {"eventid": "smtplatrine.session.closed", "duration": 7.0, "messages": 1,
             "commands": 5, "reason": "client", "tls_failed": False,
             "envelopes_dropped": 0, "recipients_dropped": 0}])

    def test_transcript_bounded(self):
        """The transcript keeps transcript_limit lines and flags the rest."""
        self.connect(make_config(smtp={"transcript_limit": 10}))
        self.send(b"NOOP\r\n" * 20)
        record = self.close()
        self.assertEqual(len(record["transcript"]), 10)
        self.assertIn("transcript_truncated", record["flags"])

    def test_envelopes_bounded_by_count(self):
        """Past envelope_limit envelopes the record only counts them; each
        message still keeps its whole envelope."""
        self.connect(make_config(smtp={"envelope_limit": 2}))
        self.send(EHLO)
        for n in range(3):
            self.send(b"MAIL FROM:<a%d@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\nRSET\r\n" % n)
        self.transaction(b"x\r\n.\r\n")
        [(metadata, _)] = self.spooled()
        self.assertEqual(metadata["rcpts"], ["c@d.example"])
        record = self.close()
        self.assertEqual([e["mail_from"] for e in record["envelopes"]], ["a0@b", "a1@b"])
        self.assertEqual((record["envelopes_dropped"], record["recipients_dropped"]), (2, 3))
        self.assertIn("envelopes_truncated", record["flags"])

    def test_envelopes_bounded_by_bytes(self):
        """Past envelope_bytes_limit bytes of addresses recipients are only
        counted, but the message is spooled with all of them."""
        self.connect(make_config(smtp={"envelope_bytes_limit": 20}))
        self.send(EHLO)
        self.transaction(b"x\r\n.\r\n", rcpts=[b"<%d@example.org>" % n for n in range(3)])
        [(metadata, _)] = self.spooled()
        self.assertEqual(metadata["rcpts"], ["0@example.org", "1@example.org",
                                             "2@example.org"])
        record = self.close()
        # a@b.example (11 bytes) and one recipient (13 bytes) are over 20.
        self.assertEqual(record["envelopes"][0]["rcpts"], [])
        self.assertEqual(record["recipients_dropped"], 3)


class FlowTests(SessionTestCase):
    """Reading and answering as the transport and the reactor allow."""

    def setUp(self):
        self.connect(make_config(smtp={"junk_command_limit": 100000}))

    def test_full_write_buffer_stops_answers(self):
        """While the transport's write buffer is full nothing is answered;
        past 64 KB unanswered reading pauses; once it drains all is answered."""
        self.protocol.pauseProducing()
        self.assertEqual(self.send(b"NOOP\r\n" * 1000), b"")
        self.assertEqual(self.transport.producerState, "producing")
        self.send(b"NOOP\r\n" * 11000)
        self.assertEqual(self.transport.producerState, "paused")
        self.protocol.resumeProducing()
        settle(self.clock)
        self.assertEqual(self.transport.value(), b"250 2.0.0 Ok\r\n" * 12000)
        self.assertEqual(self.transport.producerState, "producing")

    def test_commands_per_turn(self):
        """One read of many commands is answered a share per reactor turn,
        reading paused meanwhile."""
        self.protocol.dataReceived(b"NOOP\r\n" * 100)
        share = len(self.transport.value())
        self.assertLess(share, len(b"250 2.0.0 Ok\r\n" * 100))
        self.assertEqual(self.transport.producerState, "paused")
        settle(self.clock)
        self.assertEqual(self.transport.value(), b"250 2.0.0 Ok\r\n" * 100)
        self.assertEqual(self.transport.producerState, "producing")

    def test_acknowledged_only_if_answered(self):
        """A message whose client is gone before its commit ends is kept
        as never acknowledged."""
        self.connect(disk=HeldDisk)
        self.send(EHLO)
        self.transaction(b"x\r\n.\r\n")
        self.protocol.connectionLost(None)
        self.factory.spool._disk.syncs.pop().callback({})
        [(metadata, raw)] = self.spooled()
        self.assertEqual((metadata["acknowledged"], raw), (False, b"x\r\n"))
        [spooled] = [e for e in self.factory.output.events
                     if e["eventid"] == "smtplatrine.message.spooled"]
        self.assertFalse(spooled["acknowledged"])

    def test_plaintext_during_starttls_sleep(self):
        """What arrives while the 220 to STARTTLS waits out the error sleep
        is dropped when TLS starts, flagged, and never run."""
        self.send(EHLO + b"FOO\r\n" * 10)
        self.assertEqual(self.send(b"STARTTLS\r\n"), b"")
        self.protocol.dataReceived(b"EHLO injected\r\nMAIL FROM:<injected@x>\r\n")
        self.clock.advance(1)
        self.assertEqual(self.transport.value(), b"220 2.0.0 Ready to start TLS\r\n")
        self.assertIsNotNone(self.transport.tls)
        record = self.close()
        self.assertIn("starttls_injection", record["flags"])
        self.assertNotIn("injected", json.dumps(record))
