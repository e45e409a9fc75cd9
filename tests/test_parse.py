"""The message parser: real spam, hostile messages, encodings, bounds.

Expected values for the corpus come from reading the files by hand, never
from the parser: attachments were extracted with ripmime and munpack (Debian
packages) and hashed with sha256sum; encoded words were decoded with
``base64 -d`` and ``iconv``, or read off the quoted-printable by hand.
ripmime keeps the line break before a delimiter in text attachments, which
RFC 2046 5.1.1 gives to the delimiter; for those munpack's files (one byte
shorter) are the reference.
"""

import base64
import email
import email.utils
import hashlib
import mmap
import os
import tempfile
import time

import attrs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from smtplatrine.parse import DEFECTS, Limits, parse, payload_chunks
from tests.corpus import corpus


def strings(parsed):
    """Every str in a Parsed record."""
    yield parsed.body_text
    yield parsed.body_html
    yield from (v for v in parsed.fields.values() if v is not None)
    for header in parsed.headers:
        yield from (header.name, header.value)
    for received in parsed.received:
        yield from (v for v in attrs.astuple(received) if v is not None)
    for url in parsed.urls:
        yield from (url.url, url.host or "", url.source)
    for attachment in parsed.attachments:
        yield from (attachment.filename or "", attachment.content_type, attachment.disposition)
    for kind, address in parsed.addresses:
        yield from (kind, address)
    yield from parsed.defects


class ParseTestCase(unittest.TestCase):

    def parse(self, raw, limits=Limits()):
        """parse(), checking that every string it returns fits a utf8mb4
        column and that its defects are the documented ones."""
        parsed = parse(raw, limits)
        for text in strings(parsed):
            text.encode("utf-8")  # no lone surrogate
            self.assertNotIn("\0", text)
        self.assertLessEqual(set(parsed.defects), DEFECTS)
        return parsed

    def assertAttachments(self, parsed, expected):
        """*expected*: (filename, content type, disposition, size, sha256)."""
        self.assertEqual(
            [(a.filename, a.content_type, a.disposition, a.size, a.sha256)
             for a in parsed.attachments], expected)
        for a in parsed.attachments:
            self.assertEqual(a.size, len(a.payload))
            self.assertEqual(a.sha256, hashlib.sha256(a.payload).hexdigest())
            self.assertEqual(a.md5, hashlib.md5(a.payload).hexdigest())
            self.assertEqual(a.sha1, hashlib.sha1(a.payload).hexdigest())


class CorpusSubjectTests(ParseTestCase):

    def test_utf8_base64_subject(self):
        """A UTF-8 B-encoded Subject and From display name are decoded."""
        parsed = self.parse(corpus("mail_test_1.eml"))
        # =?UTF-8?B?0L/QuNGB0YzQvNC+INGD0LLQtdC00L7QvC3QtQ==?= through base64 -d
        self.assertEqual(parsed.fields["subject"], "письмо уведом-е")
        # =?UTF-8?B?0YHQu9GD0LbQsdCwINCk0J3QoSDQlNCw0L3QuNC40Lsg0KHRg9Cy0L7RgNC+0LI=?=
        self.assertEqual(parsed.fields["from"], "служба ФНС Даниил Суворов <suvorov.s@nalg.ru>")

    def test_latin1_quoted_printable_subject(self):
        """An ISO-8859-1 Q-encoded Subject is decoded."""
        parsed = self.parse(corpus("mail_test_5.eml"))
        # =?ISO-8859-1?Q?Je=20pr=E9pare=20mon=20=E9t=E9=20z=E9ro=20complexe=20!?=
        # by hand: =20 is a space, =E9 is "é" in ISO-8859-1.
        self.assertEqual(parsed.fields["subject"], "Je prépare mon été zéro complexe !")

    def test_folded_subject_of_two_words(self):
        """A Subject folded over two encoded words reads as one text."""
        parsed = self.parse(corpus("mail_test_6.eml"))
        # "Subject:" then two folded lines: =?UTF-8?B?0JHRi9GB0YLRgNC10LUg0LLQutC7
        # 0LDQtNGL0LLQsNC50YLQtSDQsiDQt9C+?= and =?UTF-8?B?0LvQvtGC0L4h?=; each
        # through base64 -d, concatenated (the space between words goes).
        self.assertEqual(parsed.fields["subject"], "Быстрее вкладывайте в золото!")

    def test_gb2312_subject_split_over_words(self):
        """A GB2312-labelled Subject (really GBK) over two words is decoded whole."""
        parsed = self.parse(corpus("mail_test_9.eml"))
        # The two =?gb2312?B?...?= words through base64 -d | xxd; iconv -f GB2312
        # stops at 8C C2, a GBK-only character, while iconv -f GBK reads all.
        expected = bytes.fromhex(
            "ced2b0d1beb5cdb7c0adbdfcd0a9a3acc4e3c3c7bfb4bfb4d5e2b8f6cac7cab2"
            "c3b48cc2a3acd5e2d6d6b3a1bacfd7d4c8bbc9d9b2bbc1cbc4dac9e4").decode("gbk")
        self.assertEqual(parsed.fields["subject"], expected)
        self.assertTrue(expected.startswith("我把镜头拉近些，你们看看这个是什么"))
        self.assertNotIn("\ufffd", expected)
        self.assertEqual(parsed.defects, ())

    def test_plain_fields(self):
        """The top-level fields, first occurrence, as written."""
        parsed = self.parse(corpus("mail_test_7.eml"))
        self.assertEqual(parsed.fields, {
            "date": "Fri, 09 Jun 2017 17:56:00 +0200",
            "to": "serena.nicolini@fake.it",
            "from": "Mariachiara Geronazzo <geronazzo@voidstudicom.it>",
            "cc": None,  # the Cc in the body belongs to a quoted message
            "reply_to": None,
            "subject": "I: Ordine",
            "message_id": "<ed264cf8.1d2e138.18e5b8f.29@voidstudicom.it>",
            "x_mailer": "Outlook Connector for MDaemon 4.5.0",
            "user_agent": None,
            "organization": "Centro Studi Commercialisti s.r.l.",
            "content_type": "multipart/mixed; boundary=400816-18467-1497023776-0",
            "content_transfer_encoding": None,
        })
        self.assertEqual(parsed.headers[0].name, "Return-Path")
        self.assertEqual(parsed.headers[0].value, "<geronazzo@voidstudicom.it>")
        # awk '/^$/{exit} !/^[ \t]/' | wc -l: lines that begin a field.
        self.assertEqual(len(parsed.headers), 23)


class CorpusAttachmentTests(ParseTestCase):

    def test_related_and_mixed(self):
        """Inline images of a multipart/related and the attached PDF."""
        parsed = self.parse(corpus("mail_test_2.eml"))
        # ripmime and munpack agree on all three.
        self.assertAttachments(parsed, [
            ("intestazione.jpg", "image/jpeg", "inline", 9918,
             "9303dc647405c7e31331206a15e5f9519c0ae4b666f4a6d514efa6ff327dd9af"),
            ("logometeo.jpg", "image/jpeg", "inline", 7321,
             "dc306d2b9bade52e13a43094e3fd4ce4b5c6e91dd1f903fe75b8d83ad5554a80"),
            ("Bollettino.pdf", "application/octet-stream", "attachment", 1089942,
             "9e42a5f7d10c1b1225749d4ef2400f0639b5ed62e36a3ed67819947381f4e013"),
        ])
        self.assertIn("Ufficio Meteorologico", parsed.body_text)

    def test_zip_and_image(self):
        """An image without Content-Disposition is inline; the zip is attached."""
        parsed = self.parse(corpus("mail_test_4.eml"))
        self.assertAttachments(parsed, [
            ("img1.jpg", "image/jpeg", "inline", 5448,
             "3f12d4c9bf1d1f63094127bae9ddb5aa01207656cef0c176badbf1d39c3ab081"),
            ("Payment Invoice.zip", "application/x-zip-compressed", "attachment", 350899,
             "122ee2a3c58dd0145107c132a1dbcba569318d9d7a6c1b976d8bd94aad7b9f44"),
        ])

    def test_eight_bit_filename(self):
        """A raw UTF-8 filename is read as such."""
        parsed = self.parse(corpus("mail_test_1.eml"))
        # The name is written in raw UTF-8 in the file; ripmime saved it so.
        self.assertAttachments(parsed, [
            ("ФНС_РФ558.zip", "application/octet-stream", "attachment", 8932,
             "05bc3630ab05c2f0368fcaba0a5ae32eb954232917aeda816d5371597a11e001"),
        ])

    def test_rfc2231_continuations(self):
        """Filenames in RFC 2231 percent-encoded continuations are joined."""
        parsed = self.parse(corpus("mail_test_5.eml"))
        # filename*0*=utf-8''%6D%61...; filename*1*=...: the names ripmime wrote.
        self.assertAttachments(parsed, [
            ("mailingassets_d68799cd6301c7f5731a3c42946e528bcb78eb84.jpg", "image/jpeg",
             "inline", 137791,
             "8610da994dd131e5f90061e8396b1617bef0ceb51a1c91d48513e04f47f9b6bb"),
            ("mailingassets_a9ed45ff2645cff7fca702b289bc684b1bc72e2a.png", "image/png",
             "inline", 374,
             "d0f51fc7fb532c8b9254d24735e5deee2447a12eead113b5d508b185e10a1fbb"),
            ("mailingassets_0e4def97310df75c2fa6e0db8fe67b79d130b3c3.png", "image/png",
             "inline", 540,
             "8212926bca4b6a67b5e88f4438672f596dc1dd9d6ca56289c74ccbb8ada8b3d3"),
            ("mailingassets_228b182da05725833a4003dcbd8f6fe67956ad40.png", "image/png",
             "inline", 493,
             "9d3ea0954fc9027b8b573410908fb89f16d09ccd12f9a978d9ab4b64b7940f32"),
            ("mailingassets_4545af8d596bb510a1181c9a3be0460bc5718649.png", "image/png",
             "inline", 530,
             "1aa3b634663077bf320226a6a3eb4c7a10762ea81f5c17058d110e1a30a440a7"),
        ])

    def test_nameless_inline_images(self):
        """Images without a name are attachments with filename None."""
        parsed = self.parse(corpus("mail_test_6.eml"))
        # munpack's part2..part5 (part1 is the HTML body).
        self.assertAttachments(parsed, [
            (None, "image/png", "inline", 1546,
             "b7e966adf1591bfb4c3c9e3480788589dc9dc273a11672d627979a043fb62df4"),
            (None, "image/png", "inline", 118622,
             "51f394806c5e505ec591b3a4f37bd66faac611fee3a83b87e023671010792c03"),
            (None, "image/png", "inline", 1410,
             "b7b7d1ab40843291b02d2c07758b02ee7e4a838fedd6f36268bf5c958f3b2835"),
            (None, "image/png", "inline", 1532,
             "8a2575f125f149a57f8d0898ad317e068a0c950ccc5a59b0d21edbdd19375cab"),
        ])

    def test_named_text_parts_are_attachments(self):
        """text/html parts with a filename are attachments, in MIME order."""
        parsed = self.parse(corpus("mail_test_7.eml"))
        # Images and PDF: ripmime and munpack agree; the .htm files are
        # quoted-printable, munpack's sizes (see the module docstring).
        self.assertAttachments(parsed, [
            ("image001.jpg", "image/jpeg", "attachment", 2478,
             "8ff1257e22526025e1bb47f8b25416c39fa005cb839f02ca749ce00f0fc5ae13"),
            ("att24916.htm", "text/html", "attachment", 1392,
             "1437e88314e121093dba350d8f1e95d4c0baacfe055a82fd85f912a97386ce13"),
            ("image002.jpg", "image/jpeg", "attachment", 2057,
             "10646e7fd5c03fcba849b264cb4cc6f36dd4489021845b701a3fb5527f1ef30d"),
            ("att09558.htm", "text/html", "attachment", 3588,
             "99ba4934e7de72e1ff6556d5bf92653ba9dc35bff7b216e04426ff3e31469cac"),
            ("image003.jpg", "image/jpeg", "attachment", 1832,
             "c7a33a427be7d6e71faaf6ce7e9a78a81e00dec4b493b974efd2a89222acccdc"),
            ("att04803.htm", "text/html", "attachment", 4860,
             "ec8462e43192b857cee948419cc7fe93702f29de95897b44c9bb5d3a1165cc23"),
            ("20170609091403417.pdf", "application/pdf", "attachment", 34470,
             "b61eac892fdbb54d33cfae17857275d5dd3517a42661373273b1d2ab6209f6ed"),
            ("att18831.htm", "text/html", "attachment", 524,
             "877a205812441b1912b276abcca2ead1bf4e0ad23de203199943c9643ffe29ea"),
        ])
        self.assertTrue(parsed.body_text.startswith("Ciao sere mi puoi dire"))

    def test_quoted_printable_text_attachment(self):
        """A named text/plain part is an attachment, decoded from QP."""
        parsed = self.parse(corpus("mail_test_3.eml"))
        self.assertAttachments(parsed, [
            ("message.txt", "text/plain", "inline", 374,
             "79ee4469fd90848893abf3b47538255adb885e13a0756e07b789bf19530fdc0f"),
        ])
        # munpack's part1: "I am sending ... in the =\nattachment" unfolded.
        self.assertEqual(parsed.body_text, "I am sending you the bills of the goods we"
                         " delivered to you in the attachment\n")

    def test_crlf_line_ends(self):
        """With CRLF line ends (as captured), binary attachments are the same."""
        for name in ("mail_test_2.eml", "mail_test_4.eml", "mail_test_7.eml"):
            lf = self.parse(corpus(name))
            crlf = self.parse(corpus(name).replace(b"\n", b"\r\n"))
            self.assertEqual(crlf.fields, lf.fields)
            binary = [(a.filename, a.sha256) for a in lf.attachments
                      if a.content_type != "text/html"]
            self.assertEqual([(a.filename, a.sha256) for a in crlf.attachments
                              if a.content_type != "text/html"], binary)


class CorpusHeaderTests(ParseTestCase):

    def test_addresses_with_quoted_comma(self):
        """A display name with a comma in quotes splits nothing."""
        parsed = self.parse(corpus("mail_test_2.eml"))
        # To: echo@tu-berlin.de, "Porcile, M." <mporcile@server_mail.it>
        self.assertEqual(parsed.addresses, (("to", "echo@tu-berlin.de"),
                                            ("to", "mporcile@server_mail.it")))

    def test_folded_address_list(self):
        """A To folded over 21 lines gives its 21 addresses in order."""
        parsed = self.parse(corpus("mail_test_9.eml"))
        # sed -n 22,42p | grep -o '<[^>]*>'
        self.assertEqual(len(parsed.addresses), 21)
        self.assertEqual(parsed.addresses[:2], (("to", "webmaster@khaleejtimes.com"),
                                                ("to", "sales@dg-jh.com")))
        self.assertEqual(parsed.addresses[-1], ("to", "sale@taida-hk.net"))

    def test_received_chain(self):
        """Each Received is read in order: host, IP, by, with, id, for, date."""
        parsed = self.parse(corpus("mail_test_7.eml"))
        self.assertEqual(len(parsed.received), 4)
        qmail, relay, postfix, first = parsed.received
        # "(qmail 38014 invoked from network); 9 Jun 2017 16:07:18 -0000":
        # all in a comment, so only the date.
        self.assertEqual((qmail.from_host, qmail.from_ip, qmail.by_host, qmail.date),
                         (None, None, None, "2017-06-09T16:07:18+00:00"))
        # "from voidstudicom.it (host161-...telecomitalia.it [79.0.200.161])
        #  (Authenticated sender: ctrstdicomsmtp) by smtp.s2smtp.com (Postfix)
        #  with ESMTPA id 67A957337 for <serena.nicolini@fake.it>;
        #  Fri,  9 Jun 2017 18:07:16 +0200 (CEST)": 18:07:16 +0200 is 16:07:16 UTC.
        self.assertEqual(
            (postfix.from_host, postfix.from_ip, postfix.by_host, postfix.protocol,
             postfix.id, postfix.for_, postfix.date),
            ("voidstudicom.it", "79.0.200.161", "smtp.s2smtp.com", "ESMTPA",
             "67A957337", "serena.nicolini@fake.it", "2017-06-09T16:07:16+00:00"))
        self.assertTrue(postfix.raw.startswith("from voidstudicom.it (host161"))
        # "from smtp.s2smtp.com (55.56.95.227) by void....cloudapp.net with SMTP"
        self.assertEqual((relay.from_host, relay.from_ip, relay.protocol),
                         ("smtp.s2smtp.com", "55.56.95.227", "SMTP"))
        self.assertEqual((first.from_host, first.from_ip, first.id),
                         ("COMP02.CSC.local", None, "md50000234499.msg"))

    def test_received_ip_forms(self):
        """Bracketed with a port, inside an address, and IPv6 literals."""
        # mail_test_4: "from host86-187-174-57.range86-187.btcentralplus.com
        # ([86.187.174.57]:45321 helo=User) by localhost.localdomain.com with
        # esmtpa (Exim 4.87) (envelope-from <...>) id 1bakrE-000291-LF; ..."
        exim = self.parse(corpus("mail_test_4.eml")).received[4]
        self.assertEqual((exim.from_ip, exim.by_host, exim.protocol, exim.id),
                         ("86.187.174.57", "localhost.localdomain.com", "esmtpa",
                          "1bakrE-000291-LF"))
        # mail_test_9: "from unknown (HELO ljhw) (zyb@sgis.com.cn@[223.152.177.168])"
        magic = self.parse(corpus("mail_test_9.eml")).received[4]
        self.assertEqual((magic.from_host, magic.from_ip, magic.for_),
                         ("unknown", "223.152.177.168", "webmaster@khaleejtimes.com"))
        # mail_test_1: "from DM6PR06MB4475.namprd06.prod.outlook.com
        # (2603:10b6:207:3d::31) by ..."
        outlook = self.parse(corpus("mail_test_1.eml")).received[3]
        self.assertEqual(outlook.from_ip, "2603:10b6:207:3d::31")

    def test_urls_from_html_and_text(self):
        """href in a base64 GB2312 HTML body; plain URLs in a text body."""
        # base64 -d of mail_test_9's body: one <A href="http://go2buy.com.cn/">.
        parsed = self.parse(corpus("mail_test_9.eml"))
        self.assertEqual([(u.url, u.host, u.source) for u in parsed.urls],
                         [("http://go2buy.com.cn/", "go2buy.com.cn", "html")])
        # mail_test_8, line 27 of its text/plain part.
        parsed = self.parse(corpus("mail_test_8.eml"))
        self.assertEqual(
            (parsed.urls[0].url, parsed.urls[0].host, parsed.urls[0].source),
            ("http://www.moneytrack.top/l/lt10VX3615QP370UC/"
             "1222A1383JJ1979TG249B81339090GF3323432606", "www.moneytrack.top", "text"))


class CorpusMalformedTests(ParseTestCase):

    def test_reused_boundary(self):
        """A nested multipart with its parent's boundary: flagged, zip found."""
        parsed = self.parse(corpus("mail_malformed_1.eml"))
        # multipart/alternative inside multipart/mixed, both with boundary
        # "----=Part_0118260_79300441.9934604411926"; its close delimiter is
        # followed by the zip part. munpack stops at that close and misses
        # the zip; ripmime finds it.
        self.assertEqual(parsed.defects, ("boundary_reused",))
        self.assertEqual(parsed.fields["subject"], "immagine")
        self.assertEqual(parsed.addresses, (("to", "e.salvation.comprehei@virusnet.it"),))
        self.assertAttachments(parsed, [
            ("20160523_916527.jpg_.zip", "application/zip", "inline", 86908,
             "fc73e149982690c7482931085c71f5dfcb735ec016376324a89e306d1bf1342f"),
        ])
        self.assertEqual(parsed.body_text, "--Sent from my iPhone")  # munpack's part1
        # "by  (Postfix)": the by clause has no host.
        self.assertEqual((parsed.received[2].from_ip, parsed.received[2].by_host),
                         ("129.212.207.5", None))

    def test_delivery_status_notification(self):
        """A bounce: its report and returned headers are attachments."""
        parsed = self.parse(corpus("mail_malformed_2.eml"))
        # Well-formed per RFC 3462: the returned headers announce a
        # multipart/alternative whose body is, by design, not there (a parser
        # that reads message/rfc822-headers as a message finds no boundary);
        # here they are one leaf, so nothing is flagged.
        self.assertEqual(parsed.defects, ())
        self.assertEqual(parsed.fields["subject"], "Delivery failure (abh@netpar.com.br)")
        # Lines 32-38 and 42-59 of the file, less the last line break
        # (sed -n 32,38p | head -c -1 | sha256sum).
        self.assertAttachments(parsed, [
            ("DSN57BAC498.txt", "message/delivery-status", "attachment", 213,
             "63451f980b98912b8fb496cc7d5d4f1ae390c093cb27d5b54ab6b9a00afd8d44"),
            (None, "message/rfc822-headers", "inline", 826,
             "7efff0a702e27ad47f4c9036d7c90b4b1b16c30b7c29a04ff73dcbc79eec6ebf"),
        ])
        self.assertIn("User's mailbox quota exceeded", parsed.body_text)

    def test_missing_close_delimiter(self):
        """A multipart that ends with a delimiter instead of a close one."""
        parsed = self.parse(corpus("mail_test_1.eml"))
        # The last line is "--2NqJR3m2cLnhEraiqXA4Q9hqnmihx7b7", no "--" after it.
        self.assertEqual(parsed.defects, ("close_boundary_missing",))
        self.assertEqual(len(parsed.attachments), 1)

    def test_invalid_utf8_and_encoded_multipart(self):
        """A bad UTF-8 sequence and a quoted-printable multipart are flagged."""
        parsed = self.parse(corpus("mail_test_6.eml"))
        # Line 36: the multipart/related has Content-Transfer-Encoding:
        # quoted-printable. Line 214: "=D1=66.=D0=BA." where D1 66 is no UTF-8.
        self.assertEqual(parsed.defects, ("decode_error", "multipart_encoding_invalid"))
        self.assertIn("\ufffdf.к. в нем", parsed.body_html)
        self.assertEqual(parsed.fields["to"], "mvk2008_64@test.it")

    def test_undeclared_latin1_html(self):
        """8-bit ISO-8859-1 HTML without a charset is read with U+FFFD for it."""
        parsed = self.parse(corpus("mail_test_2.eml"))
        # The text/html part (line 125) is 8bit with no charset and holds
        # 0xEC ("ì" in ISO-8859-1); the text/plain part has it as =EC.
        self.assertEqual(parsed.defects, ("decode_error",))
        self.assertIn("marted\ufffd", parsed.body_html)
        self.assertIn("martedì", parsed.body_text)


def multipart(parts, boundary="b", headers=b"Subject: test\r\n"):
    """A multipart/mixed message of *parts* (bytes, each a header block and
    body)."""
    delimiter = b"--" + boundary.encode()
    return (headers + b'Content-Type: multipart/mixed; boundary="' + boundary.encode()
            + b'"\r\n\r\n' + b"".join(delimiter + b"\r\n" + part + b"\r\n" for part in parts)
            + delimiter + b"--\r\n")


def nested(levels):
    """*levels* multiparts, each holding "level N" as text and the next."""
    inner = b"Content-Type: text/plain\r\n\r\nbottom"
    for level in reversed(range(levels)):
        inner = (b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n' % level
                 + b"--b%d\r\n\r\nlevel %d\r\n--b%d\r\n" % (level, level, level)
                 + inner + b"\r\n--b%d--" % level)
    return b"Subject: deep\r\n" + inner + b"\r\n"


class HostileTests(ParseTestCase):

    def test_deep_nesting(self):
        """5,000 nested multiparts: the first 32 levels are read, then a flag."""
        parsed = self.parse(nested(5000))
        self.assertEqual(parsed.body_text.split("\n"), [f"level {i}" for i in range(32)])
        self.assertEqual(parsed.defects, ("depth_limit",))
        self.assertEqual(parsed.fields["subject"], "deep")

    def test_depth_limit_setting(self):
        """Limits.depth is the number of nested levels followed."""
        parsed = self.parse(nested(10), Limits(depth=3))
        self.assertEqual(parsed.body_text.split("\n"), ["level 0", "level 1", "level 2"])
        parsed = self.parse(nested(10), Limits(depth=10))
        self.assertEqual(parsed.body_text.split("\n")[-1], "bottom")
        self.assertEqual(parsed.defects, ())

    def test_nested_attached_messages(self):
        """5,000 nested message/rfc822: bounded by the same depth limit."""
        raw = b"Content-Type: message/rfc822\r\n\r\n" * 5000 + b"\r\nbottom\r\n"
        parsed = self.parse(raw)
        self.assertEqual(parsed.defects, ("depth_limit",))
        self.assertEqual(parsed.attachments, ())

    def test_many_empty_parts(self):
        """100,000 empty parts: the first Limits.parts are read, then a flag."""
        parsed = self.parse(multipart([b"Content-Type: image/gif\r\n"] * 100_000))
        self.assertEqual(len(parsed.attachments), 1000)
        self.assertEqual({(a.content_type, a.size) for a in parsed.attachments},
                         {("image/gif", 0)})
        self.assertEqual(parsed.defects, ("part_limit",))

    def test_many_encoded_words(self):
        """16,000 encoded words: 1,000 are decoded, the rest kept as written."""
        raw = b"Subject: " + b" ".join([b"=?utf-8?q?a?="] * 16_000) + b"\r\n\r\nbody"
        parsed = self.parse(raw)
        subject = parsed.fields["subject"]
        self.assertTrue(subject.startswith("a" * 1000 + " =?utf-8?q?a?= "))
        self.assertEqual(subject.count("=?utf-8?q?a?="), 15_000)
        self.assertEqual(parsed.defects, ("encoded_word_limit",))
        self.assertEqual(parsed.body_text, "body")

    def test_broken_base64(self):
        """Stray characters and missing padding: what decodes is kept."""
        # "SGVsbG8gd29ybGQ" is base64 of "Hello world" without its "=".
        raw = multipart([b"Content-Type: application/pdf\r\n"
                         b"Content-Transfer-Encoding: base64\r\n\r\nSGVs*bG8g\r\nd29y!bGQ"])
        parsed = self.parse(raw)
        self.assertEqual(parsed.attachments[0].payload, b"Hello world")
        self.assertEqual(parsed.defects, ("base64_error",))

    def test_base64_lone_digit(self):
        """A last group of one digit is dropped: it holds no whole byte."""
        raw = (b"Content-Type: application/octet-stream\r\n"
               b"Content-Transfer-Encoding: base64\r\n\r\nQUJDR")
        parsed = self.parse(raw)
        self.assertEqual(parsed.attachments[0].payload, b"ABC")
        self.assertEqual(parsed.defects, ("base64_error",))

    def test_base64_padding(self):
        """RFC 2045 6.8: the last group is padded with "=" to four digits;
        without it (or with too much) the payload decodes but is flagged."""
        flagged = ("base64_error",)
        for body, payload, defects in (
                (b"SGVsbG8gd29ybGQ=", b"Hello world", ()), (b"SGk=", b"Hi", ()),
                (b"SA==", b"H", ()), (b"SGVsbG8gd29ybGQ", b"Hello world", flagged),
                (b"SGk", b"Hi", flagged), (b"SA", b"H", flagged), (b"SGk==", b"Hi", flagged),
                # X is 23: 010010 000110 010111, two bytes and five bits left.
                (b"SGX", b"He", flagged)):
            parsed = self.parse(b"Content-Type: application/octet-stream\r\n"
                                b"Content-Transfer-Encoding: base64\r\n\r\n" + body + b"\r\n")
            self.assertEqual((parsed.attachments[0].payload, parsed.defects),
                             (payload, defects), body)

    def test_broken_quoted_printable(self):
        """Invalid escapes stay as written; valid ones are decoded."""
        raw = (b"Content-Type: text/plain; charset=iso-8859-1\r\n"
               b"Content-Transfer-Encoding: quoted-printable\r\n\r\ncaf=E9 =ZZ =\r\nend =4")
        parsed = self.parse(raw)
        self.assertEqual(parsed.body_text, "café =ZZ end =4")
        self.assertEqual(parsed.defects, ("quoted_printable_error",))

    def test_unknown_charset(self):
        """An unknown charset is read as UTF-8 and flagged."""
        raw = (b"Content-Type: text/plain; charset=x-klingon\r\n\r\n"
               + "héllo".encode() + b"\r\n")
        parsed = self.parse(raw)
        self.assertEqual(parsed.body_text, "héllo\r\n")
        self.assertEqual(parsed.defects, ("charset_unknown",))

    def test_codecs_that_are_no_charsets(self):
        """Python codecs that are no text charsets, or unsafe ones, are unknown."""
        for charset in ("zlib", "base64", "rot13", "punycode", "idna",
                        "unicode_escape", "undefined", "../../etc", "a b"):
            raw = b"Content-Type: text/plain; charset=" + charset.encode() + b"\r\n\r\nabc"
            parsed = self.parse(raw)
            self.assertEqual((parsed.body_text, parsed.defects), ("abc", ("charset_unknown",)),
                             charset)

    def test_long_body_line(self):
        """A 10 MB line without newline: body text cut at Limits.body_chars."""
        parsed = self.parse(b"Subject: long\r\n\r\n" + b"a" * 10_000_000)
        self.assertEqual(parsed.body_text, "a" * 1_000_000)
        self.assertEqual(parsed.defects, ("body_limit",))

    def test_long_header_line(self):
        """A 10 MB header line: the lines before it are kept, it is not."""
        parsed = self.parse(b"From: a@example.com\r\nSubject: " + b"a" * 10_000_000)
        self.assertEqual(parsed.fields["from"], "a@example.com")
        self.assertIsNone(parsed.fields["subject"])
        self.assertEqual(parsed.defects, ("header_block_limit",))

    def test_long_header_block(self):
        """A header block over Limits.header_bytes: the rest up to the body is skipped."""
        raw = (b"Subject: first\r\n" + b"X-Junk: 0123456789\r\n" * 20_000
               + b"\r\nthe body\r\n")
        parsed = self.parse(raw)
        self.assertEqual(parsed.fields["subject"], "first")
        self.assertEqual(len(parsed.headers), 1 + (256 * 1024 - 16) // 20)
        self.assertEqual(parsed.body_text, "the body\r\n")
        self.assertEqual(parsed.defects, ("header_block_limit",))

    def test_no_header_body_separator(self):
        """Headers run straight into the body: the body starts at that line."""
        raw = b"Subject: hi\r\nTo: a@example.com\r\nThis is the body: it has a colon\r\n"
        parsed = self.parse(raw)
        self.assertEqual(parsed.fields["subject"], "hi")
        self.assertEqual(parsed.fields["to"], "a@example.com")
        self.assertEqual(parsed.body_text, "This is the body: it has a colon\r\n")
        self.assertEqual(parsed.defects, ("header_separator_missing",))

    def test_only_headers(self):
        """A message of headers alone, without a final line break."""
        parsed = self.parse(b"Subject: hi\r\nTo: a@example.com")
        self.assertEqual((parsed.fields["subject"], parsed.fields["to"]),
                         ("hi", "a@example.com"))
        self.assertEqual((parsed.body_text, parsed.defects), ("", ()))

    def test_empty(self):
        """Nothing at all is an empty message, not an error."""
        parsed = self.parse(b"")
        self.assertEqual((parsed.headers, parsed.body_text, parsed.defects), ((), "", ()))

    def test_nul_and_eight_bit_headers(self):
        """NUL and bytes that are not UTF-8 become U+FFFD, each flagged."""
        raw = (b"Subject: a\x00b \xff\xfe ok\r\nX-\xe9t\xe9: caf\xc3\xa9\r\n"
               b"To: x\x00y@example.com\r\n\r\nbody\x00\r\n")
        parsed = self.parse(raw)
        self.assertEqual(parsed.fields["subject"], "a\ufffdb \ufffd\ufffd ok")
        self.assertEqual(parsed.headers[1], parsed.headers[1].__class__("X-\ufffdt\ufffd", "café"))
        self.assertEqual(parsed.addresses, (("to", "x\ufffdy@example.com"),))
        self.assertEqual(parsed.body_text, "body\ufffd\r\n")
        self.assertEqual(parsed.defects, ("decode_error", "nul"))

    def test_time_limit(self):
        """With no time at all, the header is read and the flag says so."""
        parsed = self.parse(corpus("mail_test_7.eml"), Limits(seconds=0))
        self.assertEqual(parsed.fields["subject"], "I: Ordine")
        self.assertEqual((parsed.attachments, parsed.body_text), ((), ""))
        self.assertEqual(parsed.defects, ("time_limit",))

    def test_body_limit_over_parts(self):
        """Body parts are joined, then cut at Limits.body_chars."""
        raw = multipart([b"\r\none", b"\r\ntwo", b"\r\nthree"])
        self.assertEqual(self.parse(raw).body_text, "one\ntwo\nthree")
        parsed = self.parse(raw, Limits(body_chars=6))
        self.assertEqual(parsed.body_text, "one\ntw")
        self.assertEqual(parsed.defects, ("body_limit",))

    def test_long_body_cut_inside_a_character(self):
        """A body far over the limit is decoded only as far as it could be
        kept; a character cut short there is no decode error."""
        # 1 + 30 * 2 bytes of UTF-8; Limits(body_chars=10) reads 40 bytes:
        # "a" and 19 whole "é", the 20th cut after its first byte.
        raw = b"Content-Type: text/plain; charset=utf-8\r\n\r\na" + "é".encode() * 30
        parsed = self.parse(raw, Limits(body_chars=10))
        self.assertEqual(parsed.body_text, "a" + "é" * 9)
        self.assertEqual(parsed.defects, ("body_limit",))

    def test_multipart_without_boundary(self):
        """A multipart without a boundary is read as text."""
        raw = b"Content-Type: multipart/mixed\r\n\r\n--x\r\nhello\r\n"
        parsed = self.parse(raw)
        self.assertEqual(parsed.body_text, "--x\r\nhello\r\n")
        self.assertEqual(parsed.defects, ("boundary_missing",))

    def test_boundary_never_found(self):
        """A multipart whose boundary never appears is read as text."""
        raw = b"Content-Type: multipart/mixed; boundary=nope\r\n\r\nhello\r\n--other\r\n"
        parsed = self.parse(raw)
        self.assertEqual(parsed.body_text, "hello\r\n--other\r\n")
        self.assertEqual(parsed.defects, ("boundary_missing", "close_boundary_missing"))

    def test_outer_delimiter_closes_inner(self):
        """A delimiter of the outer multipart ends an unclosed inner one."""
        inner = b'Content-Type: multipart/alternative; boundary="in"\r\n\r\n--in\r\n\r\nfirst'
        raw = multipart([inner, b"\r\nsecond"])
        parsed = self.parse(raw)
        self.assertEqual(parsed.body_text, "first\nsecond")
        self.assertEqual(parsed.defects, ("close_boundary_missing",))

    def test_boundary_prefix_is_no_delimiter(self):
        """A line that starts with the boundary but goes on is body text."""
        raw = multipart([b"\r\n--bb\r\n--b x\r\n-- b"])
        self.assertEqual(self.parse(raw).body_text, "--bb\r\n--b x\r\n-- b")

    def test_unknown_transfer_encoding(self):
        """An unknown Content-Transfer-Encoding leaves the payload as it came."""
        raw = (b"Content-Type: application/octet-stream\r\n"
               b"Content-Transfer-Encoding: x-gzip64\r\n\r\nH4sIAAAAAAAA\r\n")
        parsed = self.parse(raw)
        self.assertEqual(parsed.attachments[0].payload, b"H4sIAAAAAAAA\r\n")
        self.assertEqual(parsed.defects, ("encoding_unknown",))

    def test_invalid_content_type(self):
        """A Content-Type that is no type/subtype is read as text/plain."""
        parsed = self.parse(b"Content-Type: garbage\r\n\r\nhello")
        self.assertEqual(parsed.body_text, "hello")
        self.assertEqual(parsed.defects, ("content_type_invalid",))

    def test_orphan_continuation(self):
        """A folded line before any field is ignored."""
        parsed = self.parse(b" folded\r\nSubject: hi\r\n\r\nbody")
        self.assertEqual([h.name for h in parsed.headers], ["Subject"])
        self.assertEqual(parsed.defects, ("orphan_continuation",))

    def test_long_boundary(self):
        """A boundary over 200 characters is not used."""
        boundary = "x" * 201
        parsed = self.parse(multipart([b"\r\nhello"], boundary=boundary))
        self.assertIn("hello", parsed.body_text)
        self.assertEqual(parsed.defects, ("boundary_missing",))

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(st.one_of(
        st.binary(max_size=60),
        st.sampled_from([
            b"\r\n", b"\n", b"\r", b"\0", b"\xff", b"--b", b"--b--", b"--c", b": ", b" ",
            b"Content-Type: multipart/mixed; boundary=b\r\n",
            b"Content-Type: multipart/alternative; boundary=c\r\n",
            b"Content-Type: message/rfc822\r\n", b"Content-Type: text/html\r\n",
            b"Content-Transfer-Encoding: base64\r\n",
            b"Content-Transfer-Encoding: quoted-printable\r\n",
            b"Content-Disposition: attachment; filename*0*=x'y'%E2; filename*1=z\r\n",
            b"Subject: =?utf-8?B?4oK", b"=?iso-2022-jp?q?=1B$B?=", b"=?utf-7?q?+2AA-?=",
            b"To: a@b, (c (d) <e@f>\r\n", b'"', b"<", b">", b"(", b")", b";", b"=",
            b"Received: from x ([::1]) by y; Mon, 1 Jan 2024 00:00:00 +9999\r\n",
            b'<a href="http://[::1:80/', b"www.", b"&#0;", b"charset=utf-16",
        ])), max_size=60))
    def test_anything(self, pieces):
        """Whatever the bytes, parse returns and its strings fit the database,
        and reads a spooled file mapped into memory as it reads the bytes."""
        raw = b"".join(pieces)
        parsed = self.parse(raw)
        self.parse(raw, Limits(depth=2, parts=3, encoded_words=1,
                               body_chars=5, urls=1, header_bytes=40))
        if raw:
            self.assertEqual(parse(mapped(raw)), parsed)


def mapped(data):
    """*data* as the storing side reads a spooled message: a file mapped
    read-only."""
    with tempfile.TemporaryFile() as f:
        f.write(data)
        f.flush()
        return mmap.mmap(f.fileno(), len(data), access=mmap.ACCESS_READ)


class LargePartTests(ParseTestCase):
    """Large parts are decoded a mebibyte at a time (and a mapped message
    is never copied whole): what crosses a mebibyte reads as in one piece.
    Expected payloads come from Python's base64 module."""

    MIB = 2 ** 20

    def attached(self, body):
        """A message of *body*, a base64 part, mapped as spooled; its
        attachment and defects."""
        parsed = self.parse(mapped(multipart([
            b"\r\nsee attached",
            b"Content-Type: application/octet-stream\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" + body])))
        [attachment] = parsed.attachments
        return attachment, parsed.defects

    def test_large_base64(self):
        """Three and five mebibytes and a little, in 76-character lines as
        mail clients write them; the larger is decoded each time it is
        read, to the same bytes."""
        for size in (3 * self.MIB + 5, 5 * self.MIB + 5):
            payload = os.urandom(size)
            encoded = base64.encodebytes(payload).replace(b"\n", b"\r\n")
            attachment, defects = self.attached(encoded)
            self.assertEqual((attachment.size, attachment.sha256, defects),
                             (len(payload), hashlib.sha256(payload).hexdigest(), ()))
            self.assertEqual(b"".join(payload_chunks(attachment.payload)), payload)

    def test_stray_characters_at_a_chunk_edge(self):
        """A stray character on either side of the first mebibyte is
        skipped and flagged."""
        payload = os.urandom(2 * self.MIB)
        encoded = base64.b64encode(payload)
        for at in (self.MIB - 1, self.MIB, self.MIB + 1):
            attachment, defects = self.attached(encoded[:at] + b"*" + encoded[at:])
            self.assertEqual((attachment.sha256, defects),
                             (hashlib.sha256(payload).hexdigest(), ("base64_error",)), at)

    def test_padding_inside_a_large_part(self):
        """An "=" in the middle of a large part ends its first piece; a
        second piece, padded on its own, is decoded after it."""
        first, second = os.urandom(self.MIB + 1), os.urandom(self.MIB + 2)
        attachment, defects = self.attached(
            base64.b64encode(first) + b"\r\n" + base64.b64encode(second))
        self.assertEqual((attachment.sha256, defects),
                         (hashlib.sha256(first + second).hexdigest(), ()))

    def test_stray_characters_in_a_streamed_part(self):
        """A part large enough to be decoded as it is read is flagged as
        one decoded at once."""
        payload = os.urandom(5 * self.MIB)
        encoded = base64.b64encode(payload)
        attachment, defects = self.attached(encoded[:self.MIB] + b"*" + encoded[self.MIB:])
        self.assertEqual((attachment.sha256, defects),
                         (hashlib.sha256(payload).hexdigest(), ("base64_error",)))

    def test_what_is_streamed(self):
        """Only a large base64 part that is a file of its own is left to be
        decoded as it is read: text (which may hold uuencoded files),
        body text and attached messages are decoded whole, and read as
        such; so is a large quoted-printable part."""
        big = os.urandom(5 * self.MIB)
        encoded = base64.encodebytes(big).replace(b"\n", b"\r\n")
        # "cat", as sharutils' uuencode writes it.
        text = b"begin 644 a.txt\r\n#8V%T\r\n`\r\nend\r\n" + b"x" * (5 * self.MIB)
        inner = b"Subject: inner\r\nContent-Type: text/plain\r\n\r\n" + text
        parsed = self.parse(mapped(multipart([
            b"Content-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + base64.encodebytes(b"<p>" + b"h" * (5 * self.MIB)),
            b"Content-Type: text/plain\r\nContent-Disposition: attachment\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(inner),
            b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + base64.encodebytes(inner),
            b"Content-Type: application/zip\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + encoded,
            b"Content-Type: application/zip\r\n"
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\nA=3DB" + b"x" * (5 * self.MIB)])))
        self.assertEqual(parsed.body_html[:5], "<p>hh")
        self.assertEqual([(a.content_type, a.size) for a in parsed.attachments], [
            ("text/plain", len(inner)), ("application/octet-stream", 3),
            ("text/plain", len(text)), ("application/octet-stream", 3),
            ("application/zip", len(big)), ("application/zip", 3 + 5 * self.MIB)])
        self.assertEqual(bytes(parsed.attachments[1].payload), b"cat")
        self.assertEqual(parsed.attachments[4].sha256, hashlib.sha256(big).hexdigest())
        self.assertEqual(bytes(parsed.attachments[5].payload[:4]), b"A=Bx")

    def test_equals_at_the_start_of_a_large_piece(self):
        """An "=" before the digits of a piece over a mebibyte is flagged,
        however far its padding is."""
        payload = os.urandom(self.MIB + 1)
        attachment, defects = self.attached(b"=" + base64.b64encode(payload))
        self.assertEqual((attachment.sha256, defects),
                         (hashlib.sha256(payload).hexdigest(), ("base64_error",)))

    def test_equals_out_of_place_before_long_white_space(self):
        """"=" after four digits pads nothing: flagged, even when more than
        a mebibyte of line breaks follows."""
        attachment, defects = self.attached(b"QUJD=" + b"\r\n" * self.MIB)
        self.assertEqual((bytes(attachment.payload), defects), (b"ABC", ("base64_error",)))

    def test_missing_padding_at_the_end(self):
        payload = os.urandom(self.MIB + 1)  # 1 byte past whole groups: "=="
        encoded = base64.b64encode(payload)
        attachment, defects = self.attached(encoded.rstrip(b"="))
        self.assertEqual((attachment.sha256, defects),
                         (hashlib.sha256(payload).hexdigest(), ("base64_error",)))

    def test_long_white_space_after_the_padding(self):
        """More than a mebibyte of line breaks after the padding: the
        padding is still found, and nothing is flagged."""
        attachment, defects = self.attached(b"SGk=" + b"\r\n" * self.MIB)
        self.assertEqual((attachment.payload, defects), (b"Hi", ()))

    def test_large_text_body(self):
        """A text body larger than the body limit, mapped: cut at the
        limit, as from bytes."""
        raw = b"Subject: big\r\n\r\n" + b"x" * 75 + b"\r\n" * 1 + b"y" * (3 * self.MIB)
        limits = Limits(body_chars=self.MIB)
        parsed = parse(mapped(raw), limits)
        self.assertEqual((len(parsed.body_text), parsed.body_text[:3], parsed.defects),
                         (self.MIB, "xxx", ("body_limit",)))


class EncodingTests(ParseTestCase):

    def test_encoded_words_in_several_charsets(self):
        """UTF-8 B, ISO-8859-1 Q, ISO-2022-JP B and GB2312 B words."""
        # 4oKs: E2 82 AC, "€" in UTF-8. caf=E9: "café" in ISO-8859-1.
        # GyRCJEskWyRzGyhC: ESC $ B, 24 4B 24 5B 24 73 (JIS X 0208 row 4:
        # に ほ ん), ESC ( B. 1tA=: D6 D0, "中" in GB2312. (base64 by hand.)
        raw = (b"Subject: =?utf-8?B?4oKs?= =?ISO-8859-1?Q?caf=E9?=\r\n"
               b" =?iso-2022-jp?B?GyRCJEskWyRzGyhC?= =?gb2312?b?1tA=?= end\r\n\r\n")
        parsed = self.parse(raw)
        self.assertEqual(parsed.fields["subject"], "€caféにほん中 end")
        self.assertEqual(parsed.defects, ())

    def test_character_split_over_words(self):
        """A UTF-8 character split over two encoded words survives."""
        # E2 82 in the first word (4oI=), AC in the second (rA==).
        parsed = self.parse(b"Subject: =?utf-8?B?4oI=?= =?UTF-8?B?rA==?=\r\n\r\n")
        self.assertEqual(parsed.fields["subject"], "€")

    def test_encoded_word_spacing(self):
        """Space between words goes, space next to plain text stays, _ is a space."""
        parsed = self.parse(b"Subject: Re: =?utf-8?q?a_b?=  =?utf-8?q?c?= d\r\n\r\n")
        self.assertEqual(parsed.fields["subject"], "Re: a bc d")

    def test_eight_bit_bytes_in_an_encoded_word(self):
        """Raw 8-bit bytes inside an encoded word (as careless mailers write
        them) are read in the word's charset: E9 is "é" in ISO-8859-1."""
        parsed = self.parse(b"Subject: =?iso-8859-1?q?caf\xe9?= ok\r\n\r\n")
        self.assertEqual(parsed.fields["subject"], "caf\u00e9 ok")

    def test_rfc_2047_examples(self):
        """The examples of RFC 2047 section 8, in a Subject written without
        a space after its colon (RFC 5322 needs none)."""
        for encoded, shown in [
                ("(=?ISO-8859-1?Q?a?=)", "(a)"),
                ("(=?ISO-8859-1?Q?a?= b)", "(a b)"),
                ("(=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=)", "(ab)"),
                ("(=?ISO-8859-1?Q?a?=  =?ISO-8859-1?Q?b?=)", "(ab)"),
                ("(=?ISO-8859-1?Q?a?=\r\n    =?ISO-8859-1?Q?b?=)", "(ab)"),
                ("(=?ISO-8859-1?Q?a_b?=)", "(a b)"),
                ("(=?ISO-8859-1?Q?a?= =?ISO-8859-2?Q?_b?=)", "(a b)")]:
            parsed = self.parse(f"Subject:{encoded}\r\n\r\n".encode())
            self.assertEqual(parsed.fields["subject"], shown, encoded)

    def test_values_ending_in_x(self):
        """A value's last letters are its own: a Subject ending in "X", an
        attachment named REPORT.DOCX."""
        raw = multipart([b"Content-Type: application/octet-stream\r\n"
                         b"Content-Disposition: attachment; filename=REPORT.DOCX\r\n\r\nPK"],
                        headers=b"Subject: ROLEX\r\n")
        parsed = self.parse(raw)
        self.assertEqual((parsed.fields["subject"], parsed.attachments[0].filename),
                         ("ROLEX", "REPORT.DOCX"))

    def test_rfc2231_filename(self):
        """filename*=utf-8''%E2%82%AC.pdf is "€.pdf"."""
        raw = multipart([b"Content-Type: application/pdf\r\n"
                         b"Content-Disposition: attachment; filename*=utf-8''%E2%82%AC.pdf\r\n"
                         b"\r\n%PDF"])
        attachment, = self.parse(raw).attachments
        self.assertEqual((attachment.filename, attachment.disposition), ("€.pdf", "attachment"))

    def test_rfc2231_continuations_and_charset(self):
        """Sections are joined in number order; the charset is that of section 0."""
        raw = multipart([b"Content-Type: application/octet-stream;\r\n"
                         b" name*1=\"-2.txt\"; name*0*=iso-8859-1'fr'r%E9sum%E9\r\n\r\nx"])
        self.assertEqual(self.parse(raw).attachments[0].filename, "résumé-2.txt")

    def test_rfc2231_apostrophes(self):
        """Only the first section gives a charset and language (RFC 2231 3
        and 4.1): its value keeps any further apostrophe, and so do later
        sections, as Python's email (compat32) reads them too."""
        raw = multipart([b"Content-Type: application/octet-stream;\r\n"
                         b" name*0*=utf-8'en'it's; name*1*=%20o'k.txt\r\n\r\nx"])
        [part] = [p for p in email.message_from_bytes(raw).walk() if not p.is_multipart()]
        self.assertEqual(part.get_filename(), "it's o'k.txt")
        self.assertEqual(self.parse(raw).attachments[0].filename, "it's o'k.txt")

    def test_rfc2231_sections_in_utf8(self):
        """Sections that are not percent-encoded may hold UTF-8 (header
        values may, RFC 6532), and are read as such; a charset name that
        is no ASCII does not lose the name."""
        raw = multipart([b"Content-Type: application/octet-stream;\r\n"
                         b' name*0="caf\xc3\xa9"; name*1=".txt"\r\n\r\nx',
                         b"Content-Type: application/octet-stream;\r\n"
                         b" name*0*=\xff\xfe''invoice.pdf\r\n\r\nx"])
        self.assertEqual([a.filename for a in self.parse(raw).attachments],
                         ["caf\u00e9.txt", "invoice.pdf"])
        plain = self.parse(multipart([b"Content-Type: application/octet-stream;\r\n"
                                      b' name*0="caf\xc3\xa9"; name*1=".txt"\r\n\r\nx']))
        self.assertEqual(plain.defects, ())

    def test_encoded_word_filename(self):
        """An RFC 2047 word in a filename, as mailers write it, is decoded."""
        raw = multipart([b'Content-Type: application/zip; name="=?utf-8?B?0YTQsNC50Lsuemlw?="'
                         b"\r\n\r\nPK"])
        # 0YTQsNC50Lsuemlw: base64 -d gives "файл.zip".
        self.assertEqual(self.parse(raw).attachments[0].filename, "файл.zip")

    def test_path_traversal_filenames_verbatim(self):
        """Filenames are kept as the sender wrote them, traversal and all."""
        names = [b"../../etc/passwd", b"/etc/shadow", b"..\\\\..\\\\boot.ini", b"a\\x.exe"]
        raw = multipart([b'Content-Type: application/octet-stream; name="' + name
                         + b'"\r\n\r\nx' for name in names])
        self.assertEqual([a.filename for a in self.parse(raw).attachments],
                         ["../../etc/passwd", "/etc/shadow", "..\\..\\boot.ini", "a\\x.exe"])

    def test_body_charsets(self):
        """Bodies are decoded from their declared charset."""
        raw = multipart([
            b"Content-Type: text/plain; charset=windows-1251\r\n\r\n\xcf\xf0\xe8\xe2\xe5\xf2",
            b"Content-Type: text/plain; charset=\"ISO-2022-JP\"\r\n\r\n\x1b$B$K$[$s\x1b(B",
            b"Content-Type: text/html; charset=utf-16-le\r\n\r\n<\x00b\x00>\x00",
        ])
        parsed = self.parse(raw)
        # CF F0 E8 E2 E5 F2: "Привет" in the windows-1251 table.
        self.assertEqual(parsed.body_text, "Привет\nにほん")
        self.assertEqual(parsed.body_html, "<b>")
        self.assertEqual(parsed.defects, ())


class StructureTests(ParseTestCase):

    def test_attached_message(self):
        """The leaves of an attached message are attachments, bodies and all."""
        message = (b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n"
                   b"Content-Type: multipart/alternative; boundary=in\r\n\r\n"
                   b"--in\r\nContent-Type: text/plain\r\n\r\ninner text\r\n"
                   b"--in\r\nContent-Type: image/gif; name=\"i.gif\"\r\n\r\nGIF\r\n--in--")
        parsed = self.parse(multipart([b"\r\nouter text", message]))
        self.assertEqual(parsed.body_text, "outer text")
        self.assertEqual([(a.filename, a.content_type, a.payload) for a in parsed.attachments],
                         [(None, "text/plain", b"inner text"), ("i.gif", "image/gif", b"GIF")])
        self.assertEqual(parsed.fields["subject"], "test")

    def test_single_part_binary(self):
        """A message that is one application/octet-stream is one attachment."""
        raw = (b"Content-Type: application/octet-stream\r\n"
               b"Content-Transfer-Encoding: base64\r\n\r\nTVqQAA==\r\n")
        parsed = self.parse(raw)
        # TVqQAA== is base64 of 4D 5A 90 00, a DOS executable's first bytes.
        self.assertAttachments(parsed, [(None, "application/octet-stream", "inline", 4,
                                         hashlib.sha256(b"MZ\x90\x00").hexdigest())])
        self.assertEqual(parsed.body_text, "")

    def test_text_attachment_and_inline_image(self):
        """Disposition attachment makes text an attachment; images stay inline."""
        raw = multipart([
            b"Content-Type: text/plain\r\nContent-Disposition: attachment\r\n\r\nnotes",
            b"Content-Type: image/png\r\nContent-ID: <x>\r\n\r\nPNG",
            b"Content-Type: text/plain\r\n\r\nthe body",
        ])
        parsed = self.parse(raw)
        self.assertEqual([(a.filename, a.content_type, a.disposition) for a in parsed.attachments],
                         [(None, "text/plain", "attachment"), (None, "image/png", "inline")])
        self.assertEqual(parsed.body_text, "the body")

    def test_preamble_and_epilogue_ignored(self):
        """Text before the first and after the close delimiter is no part."""
        raw = (b"Content-Type: multipart/mixed; boundary=b\r\n\r\npreamble\r\n"
               b"--b\r\n\r\nbody\r\n--b--\r\nepilogue\r\n")
        parsed = self.parse(raw)
        self.assertEqual((parsed.body_text, parsed.defects), ("body", ()))

    def test_addresses(self):
        """To and Cc: groups, comments, quoted commas; lower case, no repeats per kind."""
        raw = (b'To: "Doe, John" <John@Example.COM>, jane@example.com (Jane),\r\n'
               b" friends: a@x.org, b@x.org;, john@example.com\r\n"
               b"Cc: John@example.com, =?utf-8?q?M=C3=BCller=2C_K?= <k@x.org>\r\n"
               b"Cc: undisclosed-recipients:;\r\n\r\n")
        self.assertEqual(self.parse(raw).addresses, (
            ("to", "john@example.com"), ("to", "jane@example.com"), ("to", "a@x.org"),
            ("to", "b@x.org"), ("cc", "john@example.com"), ("cc", "k@x.org")))

    def test_received_details(self):
        """An IPv6 literal, a date without a zone, a field without a date."""
        raw = (b"Received: from mail.example (mail.example [IPv6:2001:DB8::1])\r\n"
               b"\tby mx.example with ESMTPS id ABC for <V@Example.org>;"
               b" Wed, 31 Jan 2024 13:00:00 +0100\r\n"
               b"Received: from x.example by y.example; 31 Jan 2024 12:00:00 -0000\r\n"
               b"Received: by z.example with LMTP\r\n\r\n")
        first, second, third = self.parse(raw).received
        self.assertEqual(
            (first.from_host, first.from_ip, first.by_host, first.protocol, first.id,
             first.for_, first.date),
            ("mail.example", "2001:db8::1", "mx.example", "ESMTPS", "ABC", "V@Example.org",
             "2024-01-31T12:00:00+00:00"))
        self.assertEqual((second.from_ip, second.date), (None, "2024-01-31T12:00:00+00:00"))
        self.assertEqual((third.from_host, third.by_host, third.protocol, third.date),
                         (None, "z.example", "LMTP", None))
        self.assertEqual(third.raw, "by z.example with LMTP")

    def test_received_clauses_as_hops_write_them(self):
        """A word before the first keyword is no clause's, commas after
        words are no part of them, an IP in a later clause is not the
        from clause's, a bracketed literal wins over a bare one (after an
        invalid one), and the date is what follows the last ";" (one may
        stand in a comment before it)."""
        raw = (b"Received: qmail 4242 from a.example, (1.2.3.4 [999.0.0.1] [192.0.2.1])"
               b" by b.example, (helo=x;y) ([198.51.100.7]) with ESMTP id 42AX,"
               b" for <XY@example.org>; Mon, 2 Mar 2026 10:00:00 +0000\r\n"
               b"Received: from c.example by d.example ([198.51.100.8]);"
               b" Mon, 2 Mar 2026 10:00:00 +0000\r\n\r\n")
        first, second = self.parse(raw).received
        self.assertEqual(
            (first.from_host, first.from_ip, first.by_host, first.protocol, first.id,
             first.for_, first.date),
            ("a.example", "192.0.2.1", "b.example", "ESMTP", "42AX", "XY@example.org",
             "2026-03-02T10:00:00+00:00"))
        self.assertEqual((second.from_host, second.from_ip), ("c.example", None))

    def test_received_date_without_zone_is_utc(self):
        """A date whose zone is -0000 (RFC 5322 3.3: UTC, the origin's own
        unknown) is UTC whatever the local time zone."""
        before = os.environ.get("TZ")
        os.environ["TZ"] = "America/New_York"
        time.tzset()

        def restore():
            if before is None:
                del os.environ["TZ"]
            else:
                os.environ["TZ"] = before
            time.tzset()
        self.addCleanup(restore)
        received, = self.parse(b"Received: from x by y; 31 Jan 2024 12:00:00 -0000\r\n"
                               b"\r\n").received
        self.assertEqual(received.date, "2024-01-31T12:00:00+00:00")

    def test_comments_around_addresses(self):
        """RFC 5322 3.2.2: a comment may stand right before an address, and
        one never closed comments out the rest of the field."""
        parsed = self.parse(b"To: (boss)d@x.example, e@x.example (never closed f@y.example\r\n"
                            b"\r\n")
        self.assertEqual(tuple(parsed.addresses), (("to", "d@x.example"), ("to", "e@x.example")))

    def test_encoded_words_as_rfc_2047_and_2231_write_them(self):
        """A character split across adjacent words in one charset is joined
        (RFC 2047 6.2, the space between them ignored); a language after
        "*" is no part of the charset (RFC 2231 5); 8-bit bytes inside a
        word are kept; an unpadded B word or a bad Q escape is read all
        the same, and flagged."""
        subjects = [self.parse(b"Subject: " + value + b"\r\n\r\n") for value in (
            b"=?utf-8?q?caf=C3?= =?utf-8?q?=A9?=", b"=?UTF-8*EN?Q?caf=C3=A9?=",
            b"=?utf-8?q?caf\xc3\xa9?=", b"=?utf-8?b?w6k?=", b"=?utf-8?q?a=ZZb?=")]
        self.assertEqual([p.fields["subject"] for p in subjects],
                         ["caf\u00e9", "caf\u00e9", "caf\u00e9", "\u00e9", "a=ZZb"])
        self.assertEqual([p.defects for p in subjects[:3]], [(), (), ()])
        self.assertTrue(subjects[3].defects and subjects[4].defects)

    def test_encoded_word_cut_short(self):
        """An encoded word whose bytes end inside a character shows the
        character it has and U+FFFD for the one cut, and says so."""
        parsed = self.parse(b"Subject: =?utf-8?B?w6nD?=\r\n\r\n")
        self.assertEqual(parsed.fields["subject"], "\u00e9\ufffd")
        self.assertIn("decode_error", parsed.defects)

    def test_group_addresses(self):
        """RFC 5322 3.4: a group's addresses are the To's, its name and the
        ";" that ends it no part of them, with or without spaces."""
        parsed = self.parse(b"To: list:a@x.example,C@EXAMPLE.BOX;\r\n"
                            b"Cc: friends: d@y.example;\r\n\r\n")
        self.assertEqual(tuple(parsed.addresses), (
            ("to", "a@x.example"), ("to", "c@example.box"), ("cc", "d@y.example")))

    def test_url_host_of_an_ip_literal(self):
        """RFC 3986 3.2.2: the host of an IP literal is the address within
        the brackets, without the port or the user."""
        parsed = self.parse(b"Content-Type: text/plain\r\n\r\n"
                            b"see http://[2001:DB8::1]:8080/x and https://u@[::1]/y\r\n")
        self.assertEqual([u.host for u in parsed.urls], ["2001:db8::1", "::1"])

    def test_nested_comments(self):
        """Comments nest (RFC 5322 3.2.2): words inside are skipped in To and Received alike."""
        to = "(sales (team) <decoy@x.example>) alice@example.com (Alice (A.) ), bob@example.org"
        raw = (b"To: " + to.encode() + b"\r\n"
               b"Received: from relay.example (helo (unverified) by decoy.example [192.0.2.7])\r\n"
               b"\tby mx.example.net (Postfix (3.7)) with ESMTP id 4Abc;"
               b" Wed, 31 Jan 2024 13:00:00 +0100\r\n\r\n")
        parsed = self.parse(raw)
        # Python's own address parser, which also reads nested comments.
        self.assertEqual(parsed.addresses,
                         tuple(("to", address) for _, address in email.utils.getaddresses([to])))
        hop, = parsed.received
        self.assertEqual(
            (hop.from_host, hop.from_ip, hop.by_host, hop.protocol, hop.id, hop.date),
            ("relay.example", "192.0.2.7", "mx.example.net", "ESMTP", "4Abc",
             "2024-01-31T12:00:00+00:00"))

    def test_urls(self):
        """Text URLs and www. hosts, href/src unescaped, distinct, in order."""
        raw = multipart([
            b"\r\nSee http://User:pw@Evil.Example:8080/a?b=1, www.Shop.example/x.\r\n"
            b"(ftp://files.example/f) again http://User:pw@Evil.Example:8080/a?b=1",
            b"Content-Type: text/html\r\n\r\n<a HREF='https://x.example/?a=1&amp;b=2'>"
            b"<img src=//cdn.example/i.png> <a data-href=\"http://no.example/\">"
            b'<a href="mailto:a@b">',
        ])
        parsed = self.parse(raw)
        self.assertEqual([(u.url, u.host, u.source) for u in parsed.urls], [
            ("http://User:pw@Evil.Example:8080/a?b=1", "evil.example", "text"),
            ("www.Shop.example/x", "www.shop.example", "text"),
            ("ftp://files.example/f", "files.example", "text"),
            ("https://x.example/?a=1&b=2", "x.example", "html"),
            ("//cdn.example/i.png", "cdn.example", "html"),
            ("mailto:a@b", None, "html"),
        ])
        parsed = self.parse(raw, Limits(urls=2))
        self.assertEqual(len(parsed.urls), 2)
        self.assertEqual(parsed.defects, ("url_limit",))
