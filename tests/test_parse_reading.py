"""The parser reads what a mail client reads, and a sender cannot hide a
message or an attachment from it.

Expected values come from independent readings: files encoded here by the
``uuencode`` tool (sharutils) or Python's ``base64`` and ``binascii`` and
hashed with ``hashlib`` (as ``sha256sum`` would), Python's ``email``
package where it reads right, and values decoded by hand.
"""

import base64
import binascii
import codecs
import email
import email.policy
import encodings
import encodings.aliases
import hashlib
import pkgutil
import random
import subprocess
import tempfile
from pathlib import Path

from smtplatrine.parse import Limits
from smtplatrine.parse.text import Context, _codec
from smtplatrine.parse.transfer import uudecode
from tests.process import require
from tests.test_parse import ParseTestCase, multipart


def email_reading(raw):
    """The message as Python's ``email`` package reads it."""
    return email.message_from_bytes(raw, policy=email.policy.default)


def charset_labels():
    """Every charset label whose codec the parser can reach: the names and
    aliases of Python's encodings, with - for _ too."""
    names = set(encodings.aliases.aliases) | set(encodings.aliases.aliases.values())
    names |= {m.name for m in pkgutil.iter_modules(encodings.__path__)}
    names |= {"utf16", "u16", "utf32", "u32", "UTF-16", "UTF-32"}
    labels = names | {name.replace("_", "-") for name in names}
    return sorted(label for label in labels if _codec(label) is not None)


# Bytes that trouble decoders: odd lengths, byte order marks alone or
# followed by too little, shift sequences cut short, lone surrogates.
HOSTILE = [b"", b"a", b"ab", b"abc", b"abcd", b"\xff", b"\xfe\xff", b"\xff\xfe",
           b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff", b"\xff\xfeabc", b"\x1b$B", b"\x1b(",
           b"+AAA", b"+", b"~{", b"\x00" * 5, bytes(range(256)), b"\xd8\x00\xdc",
           b"\x00\xd8", b"\xed\xa0\x80"]
SAMPLE = "Grüße, мир, 日本語 € ok"


class CodecTests(ParseTestCase):

    def test_utf16_and_utf32_without_byte_order_mark(self):
        """UTF-16 and UTF-32 under every label, without a byte order mark,
        read as little-endian, in an encoded word and a body; Python's
        email reads them so too."""
        for label, word, body in [
                # RABlAA== is 44 00 65 00, "De" in UTF-16LE (base64 by hand).
                ("utf-16", "RABlAA==", b"D\x00e\x00"), ("utf16", "RABlAA==", b"D\x00e\x00"),
                ("u16", "RABlAA==", b"D\x00e\x00"), ("UTF-16", "RABlAA==", b"D\x00e\x00"),
                # RAAAAGUAAAA= is 44 00 00 00 65 00 00 00, "De" in UTF-32LE.
                ("utf-32", "RAAAAGUAAAA=", b"D\x00\x00\x00e\x00\x00\x00"),
                ("utf32", "RAAAAGUAAAA=", b"D\x00\x00\x00e\x00\x00\x00"),
                ("u32", "RAAAAGUAAAA=", b"D\x00\x00\x00e\x00\x00\x00")]:
            raw = (f"Subject: =?{label}?B?{word}?=\r\nContent-Type: text/plain;"
                   f" charset={label}\r\n\r\n").encode() + body
            parsed = self.parse(raw)
            self.assertEqual((parsed.fields["subject"], parsed.body_text, parsed.defects),
                             ("De", "De", ()), label)
            reading = email_reading(raw)
            self.assertEqual((reading["subject"], reading.get_content()), ("De", "De"), label)

    def test_byte_order_marks(self):
        """A byte order mark says the order and is no character."""
        cases = [(b"\xfe\xff\x00D\x00e", "utf-16"), (b"\xff\xfeD\x00e\x00", "utf-16"),
                 (b"\x00\x00\xfe\xff\x00\x00\x00D", "utf-32"),
                 (b"\xff\xfe\x00\x00D\x00\x00\x00", "utf-32")]
        for body, label in cases:
            raw = (b"Content-Type: text/plain; charset=" + label.encode()
                   + b"\r\nContent-Transfer-Encoding: base64\r\n\r\n" + base64.b64encode(body))
            self.assertEqual(self.parse(raw).body_text, body.decode(label), body)

    def test_every_reachable_codec(self):
        """Every charset label the parser has a codec for, in an encoded
        word (B and Q), an RFC 2231 file name and a body, whole or cut at
        the body limit: text Python's codec wrote reads back, and hostile
        bytes never raise."""
        labels = charset_labels()
        self.assertGreater(len(labels), 300)
        for label in labels:
            sample = "".join(c for c in SAMPLE if _encodable(c, label))
            encoded = sample.encode(label)
            parsed = self.parse(_word_and_body(label, encoded))
            self.assertEqual((parsed.fields["subject"], parsed.body_text), (sample, sample),
                             label)
            self.assertEqual(self.parse(_named(label, encoded)).attachments[0].filename,
                             sample or None, label)
            for data in HOSTILE:
                raw = _word_and_body(label, data)
                self.parse(raw)
                self.parse(raw, Limits(body_chars=1))
                self.parse(_named(label, data))
                quoted = "".join(f"={byte:02X}" for byte in data)
                self.parse(f"Subject: =?{label}?Q?{quoted}?=\r\n\r\n".encode())


def _encodable(character, label):
    try:
        character.encode(label)
    except UnicodeError:
        return False
    return True


def _named(label, data):
    """A part whose file name is *data* in *label*, as RFC 2231 writes it."""
    quoted = "".join(f"%{byte:02X}" for byte in data)
    return (f"Content-Type: application/octet-stream\r\nContent-Disposition: attachment;"
            f" filename*={label}''{quoted}\r\n\r\nx").encode()


def _word_and_body(label, data):
    word = base64.b64encode(data).decode()
    return (f"Subject: =?{label}?B?{word}?=\r\nContent-Type: text/plain; charset={label}\r\n"
            f"Content-Transfer-Encoding: base64\r\n\r\n{word}\r\n").encode()


class UuencodeTests(ParseTestCase):
    """Files encoded with the ``uuencode`` tool of sharutils."""

    def setUp(self):
        require("uuencode")
        directory = Path(tempfile.mkdtemp())
        self.addCleanup(subprocess.run, ["rm", "-rf", str(directory)])
        self.file = random.Random(11).randbytes(3000) + bytes(range(256))
        (directory / "payload.bin").write_bytes(self.file)
        self.sha256 = hashlib.sha256(self.file).hexdigest()
        encoded = subprocess.run(["uuencode", "payload.bin", "invoice 2024.exe"],
                                 cwd=directory, capture_output=True, check=True).stdout
        self.assertTrue(encoded.startswith(b"begin 644 invoice 2024.exe\n"))
        self.encoded = encoded.replace(b"\n", b"\r\n")

    def test_transfer_encodings(self):
        """x-uuencode, uuencode, x-uue and uue parts are decoded, named by
        their begin line unless they name themselves; Python's email
        decodes them to the same bytes."""
        for encoding in (b"x-uuencode", b"uuencode", b"x-uue", b"uue", b"X-UUENCODE"):
            raw = multipart([
                b"\r\nsee attached",
                b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: "
                + encoding + b"\r\n\r\n" + self.encoded,
                b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: "
                + encoding + b"\r\nContent-Disposition: attachment; filename=real.exe\r\n\r\n"
                + self.encoded])
            parsed = self.parse(raw)
            self.assertAttachments(parsed, [
                ("invoice 2024.exe", "application/octet-stream", "inline", len(self.file),
                 self.sha256),
                ("real.exe", "application/octet-stream", "attachment", len(self.file),
                 self.sha256)])
            self.assertEqual((parsed.body_text, parsed.defects), ("see attached", ()))
            if encoding.lower() != b"uue":  # which email does not know
                parts = [p for p in email_reading(raw).walk() if not p.is_multipart()]
                self.assertEqual(parts[1].get_payload(decode=True), self.file)

    def test_part_without_begin_line(self):
        """A part declared uuencoded whose begin line was cut off is still
        decoded from its first line (sharutils' uudecode would refuse it,
        which would hide the file), unnamed, and flagged."""
        lines = self.encoded.split(b"\r\n", 1)[1]
        raw = multipart([b"\r\nsee attached",
                         b"Content-Type: application/octet-stream\r\n"
                         b"Content-Transfer-Encoding: x-uuencode\r\n\r\n" + lines])
        parsed = self.parse(raw)
        self.assertAttachments(parsed, [
            (None, "application/octet-stream", "inline", len(self.file), self.sha256)])
        self.assertEqual(parsed.defects, ("uuencode_error",))

    def test_part_without_begin_line_starting_with_an_empty_line(self):
        """The same with bare line feeds, and an empty line first."""
        lines = self.encoded.replace(b"\r\n", b"\n").split(b"\n", 1)[1]
        raw = (b"Content-Type: application/octet-stream\n"
               b"Content-Transfer-Encoding: x-uuencode\n\n\n" + lines)
        parsed = self.parse(raw)
        self.assertAttachments(parsed, [
            (None, "application/octet-stream", "inline", len(self.file), self.sha256)])
        self.assertEqual(parsed.defects, ("uuencode_error",))

    def test_time_budget_spent(self):
        """With its time budget spent, a block of 10,000 lines is decoded
        only to the first reading of the clock: 4,095 lines."""
        directory = Path(tempfile.mkdtemp())
        self.addCleanup(subprocess.run, ["rm", "-rf", str(directory)])
        large = random.Random(12).randbytes(450_000)
        (directory / "large.bin").write_bytes(large)
        encoded = subprocess.run(["uuencode", "large.bin", "large.bin"], cwd=directory,
                                 capture_output=True, check=True).stdout
        block = encoded.split(b"\n", 1)[1]  # its begin line cut off
        self.assertEqual(block.count(b"\n"), 10_000 + 2)
        ctx = Context(Limits(seconds=0))
        payload, name = uudecode(ctx, block)
        self.assertEqual((payload, name), (large[:4095 * 45], None))
        self.assertEqual(ctx.flags, {"uuencode_error", "time_limit"})

    def test_block_in_text_body(self):
        """A begin ... end block in a text/plain body is an attachment named
        by its begin line, and leaves the body text."""
        raw = (b"Subject: your invoice\r\nContent-Type: text/plain\r\n\r\n"
               b"Hello,\r\nthe invoice:\r\n\r\n" + self.encoded + b"\r\nRegards\r\n")
        parsed = self.parse(raw)
        self.assertAttachments(parsed, [
            ("invoice 2024.exe", "application/octet-stream", "attachment", len(self.file),
             self.sha256)])
        self.assertEqual(parsed.body_text, "Hello,\r\nthe invoice:\r\n\r\n\r\nRegards\r\n")
        self.assertEqual(parsed.defects, ())

    def test_blocks_in_an_attached_message(self):
        """The text of an attached message keeps its bytes as an attachment,
        and each of its blocks is an attachment too."""
        inner = (b"Subject: fwd\r\n\r\nfirst\r\n" + self.encoded + b"between\r\n"
                 + self.encoded.replace(b"invoice 2024.exe", b"second.scr") + b"last\r\n")
        parsed = self.parse(multipart([b"\r\nouter", b"Content-Type: message/rfc822\r\n\r\n"
                                       + inner]))
        text = inner.split(b"\r\n\r\n", 1)[1]
        self.assertAttachments(parsed, [
            (None, "text/plain", "inline", len(text), hashlib.sha256(text).hexdigest()),
            ("invoice 2024.exe", "application/octet-stream", "attachment", len(self.file),
             self.sha256),
            ("second.scr", "application/octet-stream", "attachment", len(self.file),
             self.sha256)])
        self.assertEqual(parsed.body_text, "outer")

    def test_no_block(self):
        """Prose that begins like a block, but is followed by no uuencoded
        line, stays text."""
        raw = b"Content-Type: text/plain\r\n\r\nbegin 644 is the mode\r\nof the file\r\nend\r\n"
        parsed = self.parse(raw)
        self.assertEqual((parsed.attachments, parsed.body_text),
                         ((), "begin 644 is the mode\r\nof the file\r\nend\r\n"))

    def test_missing_end_line(self):
        """A block without its end line is decoded to the end of the part,
        and flagged."""
        cut = self.encoded[:self.encoded.index(b"\r\n`\r\nend")]
        parsed = self.parse(b"Content-Type: text/plain\r\n\r\nhi\r\n" + cut)
        [attachment] = parsed.attachments
        self.assertEqual(attachment.payload, self.file)
        self.assertEqual((parsed.body_text, parsed.defects), ("hi\r\n", ("uuencode_error",)))

    def test_characters_taken_modulo_64(self):
        """Lines written with characters outside the uuencode alphabet (each
        64 above its own, as some encoders write them) are flagged and
        read as sharutils' uudecode reads them, each modulo 64; a line
        shorter than its length says ends in zeros, as Python's binascii
        reads one."""
        def shifted(line):
            return bytes(c + 64 if 33 <= c <= 62 else c for c in line)

        head, *lines = self.encoded.split(b"\r\n")
        encoded = b"\r\n".join([head, *map(shifted, lines[:-3]), *lines[-3:]])
        directory = Path(tempfile.mkdtemp())
        self.addCleanup(subprocess.run, ["rm", "-rf", str(directory)])
        (directory / "in.uu").write_bytes(encoded.replace(b"\r\n", b"\n"))
        expected = subprocess.run(["uudecode", "-o", "/dev/stdout", "in.uu"], cwd=directory,
                                  capture_output=True, check=True).stdout
        self.assertTrue(expected == self.file)
        part = (b"Content-Type: application/octet-stream\r\n"
                b"Content-Transfer-Encoding: x-uuencode\r\n\r\n")
        parsed = self.parse(part + encoded)
        self.assertEqual([a.sha256 for a in parsed.attachments],
                         [hashlib.sha256(expected).hexdigest()])
        self.assertEqual(parsed.defects, ("uuencode_error",))
        short = binascii.b2a_uu(b"abc").rstrip(b"\n")[:-1]
        parsed = self.parse(part + b"begin 644 a\r\n" + shifted(short) + b"\r\nend\r\n")
        self.assertEqual([a.payload for a in parsed.attachments], [binascii.a2b_uu(short)])

    def test_tab_at_the_end_of_a_line(self):
        """A tab after a line's characters is out of place: flagged, and
        the line read as far as its length says, as sharutils' uudecode
        reads it (to the same file)."""
        lines = self.encoded.split(b"\r\n")
        lines[2] += b"\t"
        directory = Path(tempfile.mkdtemp())
        self.addCleanup(subprocess.run, ["rm", "-rf", str(directory)])
        (directory / "in.uu").write_bytes(b"\n".join(lines))
        expected = subprocess.run(["uudecode", "-o", "/dev/stdout", "in.uu"], cwd=directory,
                                  capture_output=True, check=True).stdout
        parsed = self.parse(b"Content-Type: text/plain\r\n\r\n" + b"\r\n".join(lines))
        self.assertEqual([a.payload for a in parsed.attachments], [expected])
        self.assertEqual(parsed.defects, ("uuencode_error",))

    def test_blocks_count_as_parts(self):
        """Blocks are bounded by Limits.parts like other parts."""
        block = b"begin 644 a\r\n" + binascii.b2a_uu(b"x").replace(b"\n", b"\r\n") + b"end\r\n"
        parsed = self.parse(b"Content-Type: text/plain\r\n\r\n" + block * 50,
                            Limits(parts=10))
        self.assertEqual(len(parsed.attachments), 10)
        self.assertEqual(parsed.defects, ("part_limit",))


class UuencodeBoundsTests(ParseTestCase):

    def test_short_lines_do_not_swell(self):
        """Lines that say 45 bytes but hold none (an "M" alone) decode to
        no more bytes than were read, in a part and in blocks of a text."""
        raw = (b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding:"
               b" x-uuencode\r\n\r\nbegin 644 a\r\n" + b"M\r\n" * 500_000)
        parsed = self.parse(raw)
        self.assertLessEqual(parsed.attachments[0].size, len(raw))
        self.assertEqual(parsed.defects, ("uuencode_error",))
        raw = b"Content-Type: text/plain\r\n\r\n" + b"begin 644 a\r\nM\r\n" * 200_000
        parsed = self.parse(raw)
        self.assertLessEqual(sum(a.size for a in parsed.attachments), len(raw))
        self.assertEqual(len(parsed.attachments), 1000)

    def test_swelling_after_real_lines(self):
        """Short lines after a thousand real ones (the bound counts from the
        block's start) swell no more than lines alone do."""
        real = b"".join(binascii.b2a_uu(bytes(range(i % 200, i % 200 + 45))) for i in range(1000))
        raw = (b"Content-Type: text/plain\r\n\r\nbegin 644 a\r\n" + real.replace(b"\n", b"\r\n")
               + b"M\r\n" * 200_000 + b"end\r\n")
        [attachment] = self.parse(raw).attachments
        self.assertLessEqual(attachment.size, len(raw))
        self.assertEqual(attachment.payload[:45_000],
                         b"".join(bytes(range(i % 200, i % 200 + 45)) for i in range(1000)))

    def test_as_many_bytes_as_were_read(self):
        """A block that decodes to exactly as many bytes as were read is
        within the bound and decoded to its end: a 45-byte line (62 bytes
        with its line break, after the begin line's), then six lines that
        say 5 bytes and hold none (2 bytes each), then another full line."""
        full = [binascii.b2a_uu(b"a" * 45).rstrip(b"\n"), binascii.b2a_uu(b"b" * 45).rstrip(b"\n")]
        lines = [full[0], *[b"%"] * 6, full[1]]
        raw = (b"Content-Type: text/plain\n\nbegin 644 a\n" + b"\n".join(lines) + b"\nend\n")
        [attachment] = self.parse(raw).attachments
        self.assertEqual(attachment.payload, b"".join(map(binascii.a2b_uu, lines)))
        self.assertEqual(attachment.payload, b"a" * 45 + bytes(30) + b"b" * 45)

    def test_long_garbage_line(self):
        """A 10 MB line of characters out of place decodes to what its
        length character says."""
        raw = (b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding:"
               b" x-uuencode\r\n\r\nbegin 644 a\r\nM" + b"z" * 10_000_000)
        [attachment] = self.parse(raw).attachments
        # "z" is 122: (122 - 32) % 64 = 26 in every place; "M" says 45 bytes.
        self.assertEqual(attachment.payload, bytes([26 << 2 | 26 >> 4, (26 << 4 | 26 >> 2) & 255,
                                                    (26 << 6 | 26) & 255]) * 15)


class MediaTypeTests(ParseTestCase):

    def test_token_characters(self):
        """Types with RFC 2045 token characters are read; an unknown
        multipart subtype is mixed, its attachments found as Python's email
        finds them."""
        for content_type in (b"multipart/x&y", b"multipart/*", b"multipart/x~y.z+w",
                             b"Multipart/Report_v2"):
            raw = multipart([b"\r\ntext", b"Content-Type: application/zip; name=a.zip\r\n"
                             b"Content-Transfer-Encoding: base64\r\n\r\nUEsDBA=="]
                            ).replace(b"multipart/mixed", content_type)
            parsed = self.parse(raw)
            # UEsDBA== is 50 4B 03 04, a zip's first bytes.
            self.assertAttachments(parsed, [
                ("a.zip", "application/zip", "inline", 4,
                 hashlib.sha256(b"PK\x03\x04").hexdigest())])
            self.assertEqual((parsed.body_text, parsed.defects), ("text", ()))
            found = [p.get_payload(decode=True) for p in email_reading(raw).walk()
                     if p.get_filename()]
            self.assertEqual(found, [b"PK\x03\x04"])

    def test_token_leaf_types(self):
        """A leaf's type keeps its token characters."""
        raw = multipart([b"Content-Type: application/x-my&app~1\r\n\r\ndata"])
        self.assertEqual(self.parse(raw).attachments[0].content_type, "application/x-my&app~1")

    def test_tspecials_are_no_type(self):
        """A type with a character RFC 2045 forbids is still invalid."""
        parsed = self.parse(b"Content-Type: text/pl@in\r\n\r\nhello")
        self.assertEqual((parsed.body_text, parsed.defects),
                         ("hello", ("content_type_invalid",)))


ZIP = base64.b64encode(b"PK\x03\x04 zipped").decode()


class AttachedMessageTests(ParseTestCase):

    def inner(self, subject=b"inner"):
        return (b"Subject: " + subject + b"\r\nContent-Type: multipart/mixed; boundary=in\r\n\r\n"
                b"--in\r\nContent-Type: text/plain\r\n\r\ninner text\r\n"
                b"--in\r\nContent-Type: application/zip; name=\"x.zip\"\r\n"
                b"Content-Transfer-Encoding: base64\r\n\r\n" + ZIP.encode() + b"\r\n--in--\r\n")

    def assertInner(self, parsed):
        self.assertEqual([(a.filename, a.content_type, a.payload) for a in parsed.attachments],
                         [(None, "text/plain", b"inner text"),
                          ("x.zip", "application/zip", b"PK\x03\x04 zipped")])

    def test_mbox_from_line(self):
        """An attached message that begins with an mbox From line is read
        as a message, as Python's email reads it."""
        raw = multipart([b"\r\nouter", b"Content-Type: message/rfc822\r\n\r\n"
                         b"From someone@example.com Mon Jan  1 00:00:00 2024\r\n"
                         + self.inner()])
        parsed = self.parse(raw)
        self.assertInner(parsed)
        self.assertEqual(parsed.defects, ())
        attached = [p for p in email_reading(raw).walk()
                    if p.get_content_type() == "message/rfc822"][0].get_payload()[0]
        self.assertEqual(attached["subject"], "inner")

    def test_top_level_from_line(self):
        """A message saved with its mbox From line reads the same."""
        parsed = self.parse(b"From someone@example.com Mon Jan  1 00:00:00 2024\r\n"
                            + self.inner(b"top"))
        self.assertEqual((parsed.fields["subject"], parsed.body_text, parsed.defects),
                         ("top", "inner text", ()))

    def test_from_field_with_space_before_colon(self):
        """"From  :" is a From field, not an mbox line (Python's email
        drops it)."""
        parsed = self.parse(b"From  : a@example.com\r\nSubject: s\r\n\r\nbody")
        self.assertEqual((parsed.fields["from"], parsed.fields["subject"]),
                         ("a@example.com", "s"))
        self.assertNotIn("From", email_reading(b"From  : a@example.com\r\n\r\nbody"))

    def test_message_global(self):
        """message/global (RFC 6532) is walked into as message/rfc822 is."""
        parsed = self.parse(multipart([b"\r\nouter", b"Content-Type: message/global\r\n\r\n"
                                       + self.inner()]))
        self.assertInner(parsed)

    def test_encoded_attached_message(self):
        """An attached message in base64 or quoted-printable is decoded and
        walked into: its attachments are found."""
        for encoding, body in [(b"base64", base64.encodebytes(self.inner())),
                               (b"quoted-printable", binascii.b2a_qp(self.inner()))]:
            parsed = self.parse(multipart([
                b"\r\nouter", b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: "
                + encoding + b"\r\n\r\n" + body]))
            self.assertInner(parsed)
            self.assertEqual(parsed.body_text, "outer")

    def test_encoded_attached_messages_bounded(self):
        """Nested encoded attached messages stop at Limits.depth."""
        message = b"Subject: bottom\r\n\r\nbottom"
        for _ in range(34):
            message = (b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64"
                       b"\r\n\r\n" + base64.encodebytes(message))
        parsed = self.parse(message)
        self.assertEqual((parsed.attachments, parsed.defects), ((), ("depth_limit",)))
        parsed = self.parse(message, Limits(depth=35))
        self.assertEqual([a.payload for a in parsed.attachments], [b"bottom"])

    def test_utf8_byte_order_mark(self):
        """A UTF-8 byte order mark before the first field is skipped."""
        parsed = self.parse(b"\xef\xbb\xbfFrom: a@example.com\r\nSubject: s\r\n\r\nbody")
        self.assertEqual([h.name for h in parsed.headers], ["From", "Subject"])
        self.assertEqual(parsed.fields["from"], "a@example.com")
        parsed = self.parse(multipart([b"Content-Type: message/rfc822\r\n\r\n\xef\xbb\xbf"
                                       + self.inner()]))
        self.assertInner(parsed)


class Base64PaddingTests(ParseTestCase):

    def setUp(self):
        self.file = random.Random(5).randbytes(1000)  # 1000 bytes: padded with "="
        self.encoded = base64.encodebytes(self.file).replace(b"\n", b"\r\n")
        self.assertTrue(self.encoded.endswith(b"=\r\n"))

    def test_footer_after_padding(self):
        """A footer a list server appended after the padding is not
        decoded; the file is whole, as Python's email decodes it."""
        footer = (b"_______________________________________________\r\n"
                  b"Spam-list mailing list\r\nhttps://lists.example/listinfo\r\n")
        raw = multipart([b"Content-Type: application/pdf; name=a.pdf\r\n"
                         b"Content-Transfer-Encoding: base64\r\n\r\n" + self.encoded + footer])
        parsed = self.parse(raw)
        self.assertAttachments(parsed, [("a.pdf", "application/pdf", "inline", 1000,
                                         hashlib.sha256(self.file).hexdigest())])
        self.assertEqual(parsed.defects, ("base64_trailing_text",))
        [part] = [p for p in email_reading(raw).walk() if p.get_filename()]
        self.assertEqual(part.get_payload(decode=True), self.file)

    def test_footer_in_a_text_body(self):
        """Base64 text with a footer: the text, and no garbage after it."""
        raw = (b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64"
               b"\r\n\r\n" + base64.encodebytes("héllo!".encode()) + b"-- \r\nfooter text\r\n")
        parsed = self.parse(raw)
        self.assertEqual((parsed.body_text, parsed.defects),
                         ("héllo!", ("base64_trailing_text",)))

    def test_separately_padded_pieces(self):
        """Base64 made of pieces padded one by one is decoded piece by piece."""
        pieces = [b"first piece", b"2nd!", b"and the third one"]
        body = b"\r\n".join(base64.b64encode(piece) for piece in pieces)
        self.assertEqual(body.count(b"="), 4)  # each piece padded
        raw = (b"Content-Type: application/octet-stream\r\n"
               b"Content-Transfer-Encoding: base64\r\n\r\n" + body + b"\r\n")
        parsed = self.parse(raw)
        self.assertEqual((parsed.attachments[0].payload, parsed.defects),
                         (b"".join(pieces), ()))
        # On one line too.
        raw = raw.replace(b"\r\n" + base64.b64encode(pieces[1]), base64.b64encode(pieces[1]))
        self.assertEqual(self.parse(raw).attachments[0].payload, b"".join(pieces))
        # Pieces each padded with one "=": "SGk=WW8=".
        raw = (b"Content-Type: application/octet-stream\r\n"
               b"Content-Transfer-Encoding: base64\r\n\r\nSGk=WW8=\r\n")
        parsed = self.parse(raw)
        self.assertEqual((parsed.attachments[0].payload, parsed.defects), (b"HiYo", ()))

    def footer_reading(self, encoded, footer):
        """The payload and defects of a base64 attachment *encoded*
        followed by *footer*."""
        parsed = self.parse(b"Content-Type: application/octet-stream\r\n"
                            b"Content-Transfer-Encoding: base64\r\n\r\n" + encoded + footer)
        return parsed.attachments[0].payload, parsed.defects

    def test_footer_of_base64_letters(self):
        """A footer made only of base64 letters is text, not base64, when it
        is not padded piece by piece ("Unsubscribe", "XX") or has words
        ("Sent from my iPhone", 16 letters: four groups of four); glued
        to the padding it is still not part of the file."""
        trailing = (self.file, ("base64_trailing_text",))
        for footer in (b"Unsubscribe\r\n", b"\r\nXX\r\n", b"\r\nSent from my iPhone\r\n"):
            self.assertEqual(self.footer_reading(self.encoded, footer), trailing, footer)
        for data in (self.file, self.file + b"!"):  # padded with "==", then with "="
            self.assertEqual(
                self.footer_reading(base64.b64encode(data), b"Sent from my iPhone\r\n"),
                (data, ("base64_trailing_text",)))

    def test_equals_signs_that_pad_nothing(self):
        """RFC 2045 6.8: "=" only pads the last group, after two or three
        digits; one anywhere else pads nothing and is skipped as any
        character outside the alphabet, and flagged.  One before the
        first digit, or alone, or one put between whole groups to stop a
        decoder early (a stray "*" further on), hides no data."""
        error = ("base64_error",)
        both = ("base64_error", "base64_trailing_text")
        footer = b"-- \r\nfooter text\r\n"
        self.assertEqual(self.footer_reading(b"=" + self.encoded, footer), (self.file, both))
        self.assertEqual(self.footer_reading(b"=\r\n" + self.encoded, b""), (self.file, error))
        self.assertEqual(self.footer_reading(b"=", b"\r\n"), (b"", error))
        unpadded = base64.encodebytes(self.file[:999]).replace(b"\n", b"\r\n")
        line = unpadded.index(b"\r\n")  # 76 digits: 19 whole groups
        hidden = unpadded[:line] + b"=" + unpadded[line:].replace(b"A", b"A*", 1)
        self.assertEqual(self.footer_reading(hidden, b""), (self.file[:999], error))
        # Two "=" after five digits pad nothing, even with a digit after them.
        self.assertEqual(self.footer_reading(b"QUJDR==X", b""),
                         (base64.b64decode(b"QUJDRX=="), error))

    def test_padding_too_long_over_a_line_break(self):
        """More "=" after the padding, on the next line, is padding too
        long, flagged as "SGk==" is; the file is whole."""
        self.assertEqual(self.footer_reading(self.encoded, b"=\r\n"),
                         (self.file, ("base64_error",)))
        self.assertEqual(self.footer_reading(self.encoded, b"\r\n\r\n"), (self.file, ()))

    def test_stray_character_in_padded_base64(self):
        """A character outside the alphabet in otherwise well padded base64
        is skipped and flagged."""
        encoded = self.encoded[:40] + b"*" + self.encoded[40:]
        self.assertEqual(self.footer_reading(encoded, b""), (self.file, ("base64_error",)))

    def test_unpadded_still_lenient(self):
        """Without padding, stray characters are skipped as before."""
        parsed = self.parse(b"Content-Type: application/octet-stream\r\n"
                            b"Content-Transfer-Encoding: base64\r\n\r\n"
                            + self.encoded.replace(b"=", b"") + b"!\r\n")
        self.assertEqual(parsed.attachments[0].payload, self.file)
        self.assertEqual(parsed.defects, ("base64_error",))


class HTMLURLTests(ParseTestCase):

    def urls(self, markup):
        raw = b"Content-Type: text/html\r\n\r\n" + markup.encode()
        return [(u.url, u.host, u.source) for u in self.parse(raw).urls]

    def test_beacon_attributes(self):
        """background, action, formaction, poster, srcset, ping, data and
        a meta refresh, as well as href and src."""
        self.assertEqual(self.urls(
            '<body background="http://a.example/bg.gif"><form action=https://b.example/post>'
            "<button formaction='//c.example/f'></button></form>"
            '<video poster="http://d.example/p.jpg"></video>'
            '<img srcset="http://e.example/1x.png 1x, http://e.example/2x.png 2x">'
            '<a href="http://f.example/" ping="http://g.example/p1 http://g.example/p2">'
            '<object data="http://h.example/o.swf"></object>'
            '<meta http-equiv="refresh" content="0; URL=\'http://i.example/go\'">'
            '<meta name="description" content="not a URL">'), [
            ("http://a.example/bg.gif", "a.example", "html"),
            ("https://b.example/post", "b.example", "html"),
            ("//c.example/f", "c.example", "html"),
            ("http://d.example/p.jpg", "d.example", "html"),
            ("http://e.example/1x.png", "e.example", "html"),
            ("http://e.example/2x.png", "e.example", "html"),
            ("http://f.example/", "f.example", "html"),
            ("http://g.example/p1", "g.example", "html"),
            ("http://g.example/p2", "g.example", "html"),
            ("http://h.example/o.swf", "h.example", "html"),
            ("http://i.example/go", "i.example", "html")])

    def test_css_urls(self):
        """url() in style attributes and elements, and @import."""
        self.assertEqual(self.urls(
            "<style>@import 'http://a.example/x.css'; body{background:url(http://b.example/t.gif)}"
            "</style><div style=\"background-image: url('https://c.example/p.png')\">"
            '<td style="background:URL( &quot;http://d.example/q&quot; )">'), [
            ("http://a.example/x.css", "a.example", "html"),
            ("http://b.example/t.gif", "b.example", "html"),
            ("https://c.example/p.png", "c.example", "html"),
            ("http://d.example/q", "d.example", "html")])

    def test_urls_in_html_text(self):
        """URLs written in the HTML's text, entities decoded."""
        self.assertEqual(self.urls(
            "<p>Visit http://a.example/x?a=1&amp;b=2 or <b>www.b.example</b>.</p>"), [
            ("http://a.example/x?a=1&b=2", "a.example", "html"),
            ("www.b.example", "www.b.example", "html")])

    def test_wrapped_attribute_as_followed(self):
        """Line breaks and tabs inside an attribute, and spaces and control
        characters around it, are dropped, as a browser does."""
        self.assertEqual(self.urls(
            '<a href=" http://evil.\r\nexample/pa\r\nth?q=\t1\x01 ">x</a>'),
            [("http://evil.example/path?q=1", "evil.example", "html")])

    def test_many_unclosed_tags(self):
        """900,000 "<" without ">" are read (quickly), and the URL after them found."""
        parsed = self.parse(b"Content-Type: text/html\r\n\r\n" + b"<" * 900_000
                            + b" http://x.example/")
        self.assertEqual([u.url for u in parsed.urls], ["http://x.example/"])
