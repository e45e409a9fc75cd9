"""Properties of the parser over inputs hypothesis makes: arbitrary bytes,
and arbitrary MIME trees (multiparts of any subtype, attached messages
however encoded, text in many charsets, files in base64, quoted-printable
and uuencode, names in RFC 2231 and RFC 2047).

For any bytes, parse() returns within its limits, and every attachment it
lists is found again under the attachment store by its SHA-256.  For a
tree, what the generator put in is what comes out: every file, by its
SHA-256 (``hashlib`` of the bytes it encoded), with its name, and the body
texts, as Python's codecs encoded them.
"""

import base64
import binascii
import hashlib
import shutil
import tempfile
from pathlib import Path
from urllib.parse import quote

import attrs
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from smtplatrine.capture import Identity, Metadata
from smtplatrine.parse import Limits
from smtplatrine.pipeline import keep
from tests.test_parse import ParseTestCase

CHARSETS = ["utf-8", "utf-16", "utf-16-be", "utf-32", "iso-8859-1", "windows-1251",
            "koi8-r", "gb2312", "shift_jis", "iso-2022-jp", "utf-7"]
# Text of lines, without control characters (ESC would be a shift in
# ISO-2022-JP), digits or "-", so that no line of it is a uuencode begin
# line or a MIME delimiter.
TEXT = st.lists(st.characters(blacklist_categories=("Cs", "Nd", "Cc"),
                              blacklist_characters="-") | st.sampled_from(["\r\n", "\n", "\t"]),
                max_size=80).map("".join)
NAME = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters='"\\'),
               min_size=1, max_size=30)


@attrs.frozen
class Leaf:
    kind: str  # "plain", "html" or "file"
    data: bytes
    text: str | None  # what the data says, for text
    charset: str | None
    encoding: str
    filename: str | None
    name_style: str


@attrs.frozen
class Multipart:
    subtype: str
    children: tuple


@attrs.frozen
class Attached:
    kind: str  # message/rfc822 or message/global
    encoding: str
    from_line: bool
    message: object


@st.composite
def text_leaves(draw):
    kind = draw(st.sampled_from(["plain", "html"]))
    charset = draw(st.sampled_from(CHARSETS))
    text = "".join(c for c in draw(TEXT) if _encodable(c, charset))
    data = text.encode(charset)
    text = data.decode(charset)
    encoding = draw(st.sampled_from(["base64", "quoted-printable", "8bit"]))
    filename = draw(st.none() | NAME)
    return Leaf(kind, data, text, charset, encoding, filename,
                draw(st.sampled_from(["plain", "rfc2231", "rfc2047"])))


def _encodable(character, charset):
    try:
        character.encode(charset)
    except UnicodeError:
        return False
    return True


@st.composite
def file_leaves(draw):
    data = draw(st.binary(max_size=300))
    encoding = draw(st.sampled_from(["base64", "quoted-printable", "x-uuencode", "uue"]))
    filename = draw(st.none() | NAME)
    return Leaf("file", data, None, None, encoding, filename,
                draw(st.sampled_from(["plain", "rfc2231", "rfc2047"])))


def containers(children):
    return (st.builds(Multipart,
                      st.sampled_from(["mixed", "alternative", "related", "report", "x&y",
                                       "*", "signed"]),
                      st.lists(children, min_size=1, max_size=4).map(tuple))
            | st.builds(Attached, st.sampled_from(["message/rfc822", "message/global"]),
                        st.sampled_from(["7bit", "base64", "quoted-printable"]),
                        st.booleans(), children))


TREES = st.recursive(text_leaves() | file_leaves(), containers, max_leaves=8)


class Renderer:
    """A tree as the bytes of a message, and what a reader must find in it."""

    def __init__(self):
        self.boundaries = 0
        self.files = []  # (filename, sha256) of every attachment
        self.bodies = {"plain": [], "html": []}

    def message(self, tree):
        headers, body = self.entity(tree, attached=False)
        return b"From: a@example.com\r\nSubject: generated\r\nMIME-Version: 1.0\r\n" \
            + headers + b"\r\n" + body

    def entity(self, node, attached):
        """(header lines, body) of *node*."""
        if isinstance(node, Multipart):
            self.boundaries += 1
            boundary = b"=_part_%d_" % self.boundaries
            parts = [b"%s\r\n%s" % self.entity(child, attached) for child in node.children]
            for part in parts:
                assume(b"--" + boundary not in part)
            body = b"".join(b"--" + boundary + b"\r\n" + part + b"\r\n" for part in parts)
            return (b"Content-Type: multipart/" + node.subtype.encode()
                    + b'; boundary="' + boundary + b'"\r\n',
                    b"preamble\r\n" + body + b"--" + boundary + b"--\r\n")
        if isinstance(node, Attached):
            inner = self.message_of(node.message)
            if node.from_line:
                inner = b"From someone@example.com Mon Jan  1 00:00:00 2024\r\n" + inner
            return (b"Content-Type: " + node.kind.encode() + b"\r\nContent-Transfer-Encoding: "
                    + node.encoding.encode() + b"\r\n", _encode(inner, node.encoding))
        return self.leaf(node, attached)

    def message_of(self, tree):
        headers, body = self.entity(tree, attached=True)
        return b"Subject: inner\r\n" + headers + b"\r\n" + body

    def leaf(self, leaf, attached):
        if leaf.kind == "file":
            content_type = b"application/octet-stream"
        else:
            content_type = b"text/" + leaf.kind.encode() + b"; charset=" + leaf.charset.encode()
        headers = b"Content-Type: " + content_type + b"\r\n"
        if leaf.filename is not None:
            headers += b"Content-Disposition: attachment; " + _filename(leaf) + b"\r\n"
        headers += b"Content-Transfer-Encoding: " + leaf.encoding.encode() + b"\r\n"
        body = _encode(leaf.data, leaf.encoding)
        if leaf.kind == "file" or attached or leaf.filename is not None:
            name = leaf.filename
            if name is None and leaf.encoding in ("x-uuencode", "uue"):
                name = "data.bin"  # from its begin line
            self.files.append((name, hashlib.sha256(leaf.data).hexdigest()))
        else:
            self.bodies[leaf.kind].append(leaf.text)
        return headers, body


def _filename(leaf):
    if leaf.name_style == "rfc2231":
        return b"filename*=utf-8''" + quote(leaf.filename, safe="").encode()
    if leaf.name_style == "rfc2047":
        word = base64.b64encode(leaf.filename.encode()).decode()
        return f'filename="=?utf-8?B?{word}?="'.encode()
    assume(leaf.filename.isascii() and leaf.filename.isprintable())
    assume("=?" not in leaf.filename and "'" not in leaf.filename)
    return b'filename="' + leaf.filename.encode() + b'"'


def _encode(data, encoding):
    if encoding == "base64":
        return base64.encodebytes(data).replace(b"\n", b"\r\n")
    if encoding == "quoted-printable":
        # Line breaks of the data are encoded (=0D=0A); those left are soft.
        encoded = binascii.b2a_qp(data, istext=False)
        return encoded.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if encoding in ("x-uuencode", "uue"):
        lines = [binascii.b2a_uu(data[i:i + 45], backtick=True)
                 for i in range(0, len(data), 45)]
        return b"begin 644 data.bin\r\n" + b"".join(lines).replace(b"\n", b"\r\n") \
            + b"`\r\nend\r\n"
    return data


class PropertyTests(ParseTestCase):

    def setUp(self):
        self.store = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.store)

    def check_store(self, raw, parsed):
        """Every attachment listed is under the store by its SHA-256."""
        prepared = keep(raw, Metadata("x", Identity()), parsed, self.store, None)
        for attachment, path in zip(parsed.attachments, prepared.attachment_paths):
            self.assertEqual(path, f"{attachment.sha256[:2]}/{attachment.sha256}")
            data = (self.store / path).read_bytes()
            self.assertEqual(hashlib.sha256(data).hexdigest(), attachment.sha256)

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.binary(max_size=3000) | st.lists(st.sampled_from([
        b"\r\n", b"\n", b"Content-Type: multipart/x&y; boundary=b\r\n", b"--b\r\n", b"--b--",
        b"Content-Type: message/rfc822\r\n", b"Content-Type: message/global\r\n",
        b"Content-Transfer-Encoding: base64\r\n", b"Content-Transfer-Encoding: x-uuencode\r\n",
        b"Content-Transfer-Encoding: quoted-printable\r\n", b"begin 644 a b\r\n", b"M86)C\r\n",
        b"end\r\n", b"QUJD==\r\n", b"From x\r\n", b"\xef\xbb\xbf", b"charset=utf-16\r\n",
        b"Subject: =?utf-32?B?RAAAAA==?=\r\n", b'<a href="http://x/\r\n">', b"url(",
        b"Content-Type: text/plain\r\n", b"Content-Disposition: attachment; name=x\r\n",
    ]), max_size=40).map(b"".join), st.sampled_from([
        Limits(), Limits(depth=2, parts=3, encoded_words=2, body_chars=20, urls=2,
                         header_bytes=100)]))
    def test_any_bytes(self, raw, limits):
        """Whatever the bytes: parse returns within its limits, and every
        attachment it lists is in the store under its SHA-256."""
        parsed = self.parse(raw, limits)
        self.assertLessEqual(len(parsed.attachments), limits.parts + 1)
        self.assertLessEqual(len(parsed.body_text), limits.body_chars)
        self.assertLessEqual(len(parsed.body_html), limits.body_chars)
        self.assertLessEqual(len(parsed.urls), limits.urls)
        self.check_store(raw, parsed)

    @settings(max_examples=200, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(TREES)
    def test_mime_trees(self, tree):
        """Every file of a MIME tree is found, with its name, and the body
        texts read as written; nothing is flagged."""
        renderer = Renderer()
        raw = renderer.message(tree)
        parsed = self.parse(raw)
        self.assertEqual(sorted((a.filename or "", a.sha256) for a in parsed.attachments),
                         sorted((name or "", sha256) for name, sha256 in renderer.files))
        self.assertEqual(parsed.body_text, "\n".join(t for t in renderer.bodies["plain"] if t))
        self.assertEqual(parsed.body_html, "\n".join(t for t in renderer.bodies["html"] if t))
        self.assertEqual(parsed.defects, ())
        self.check_store(raw, parsed)
