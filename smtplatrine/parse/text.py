"""Text from the bytes of a message, and the state of one parse.

A :class:`Context` goes with one :func:`~smtplatrine.parse.parse`: its
:class:`~smtplatrine.parse.records.Limits`, the defect flags found so far,
the count of MIME parts and the time budget, and the one way text is
decoded.  Every ``str`` the parser returns comes through
:meth:`Context.decode` or :meth:`Context.clean`: valid UTF-8 without NUL or
lone surrogates, ready for SQLite and MariaDB ``utf8mb4`` columns.

A charset is read as mail clients read it: a label Python knows names its
codec, but none that is no mail charset and slow or unsafe on hostile
input (``idna``, ``punycode``, the escape codecs); GB2312 is read as GBK,
its superset; UTF-16 and UTF-32 without a byte order mark are
little-endian.  An unknown charset is read as UTF-8 (``charset_unknown``),
bytes not valid in their charset become U+FFFD (``decode_error``).
"""

import codecs
import functools
import re
import time


class Context:
    """The limits, the defects found so far, and text decoding."""

    def __init__(self, limits):
        self.limits = limits
        self.flags = set()
        self.parts = 0  # MIME parts walked so far
        self._deadline = time.monotonic() + limits.seconds

    def flag(self, name):
        self.flags.add(name)

    def out_of_time(self):
        """Whether the time budget is spent (and flag it if so)."""
        if time.monotonic() < self._deadline:
            return False
        self.flag("time_limit")
        return True

    def decode(self, data, charset, final=True):
        """*data* as text in *charset*; undecodable bytes become U+FFFD.
        Not *final*: *data* was cut, and a character cut short is dropped."""
        codec = _codec(charset)
        if codec is None:
            self.flag("charset_unknown")
            codec = "utf-8"
        codec, data = _byte_order(codec, data)
        decoder = codecs.getincrementaldecoder(codec)
        try:
            text = decoder().decode(data, final)
        except UnicodeError:
            self.flag("decode_error")
            text = decoder("replace").decode(data, final)
        return self.clean(text)

    def clean(self, text):
        """*text* without NUL or lone surrogates (left by surrogateescape)."""
        if "\0" in text:
            self.flag("nul")
            text = text.replace("\0", "\ufffd")
        if _SURROGATE.search(text):
            self.flag("decode_error")
            text = _SURROGATE.sub("\ufffd", text)
        return text


_SURROGATE = re.compile("[\ud800-\udfff]")
_CHARSET = re.compile(r"[a-z0-9][a-z0-9_.:+-]{0,63}")
# Codecs that are no mail charsets and are slow or raise on hostile input.
_UNSAFE_CODECS = frozenset({"idna", "punycode", "unicode-escape", "raw-unicode-escape"})
# Mailers label GBK text GB2312; GBK is a superset.
_CODEC_ALIASES = {"gb2312": "gbk"}
# UTF-16 and UTF-32 without a byte order mark are little-endian, as mail
# clients and browsers read them (the WHATWG Encoding Standard); Python's
# own decoders of these labels refuse text without a mark.
_BYTE_ORDER_MARKS = {
    "utf-16": ((codecs.BOM_UTF16_BE, "utf-16-be"), (codecs.BOM_UTF16_LE, "utf-16-le")),
    "utf-32": ((codecs.BOM_UTF32_BE, "utf-32-be"), (codecs.BOM_UTF32_LE, "utf-32-le")),
}


def _byte_order(codec, data):
    """The codec of fixed byte order for *data* in *codec*, and *data*
    without its byte order mark."""
    marks = _BYTE_ORDER_MARKS.get(codec)
    if marks is None:
        return codec, data
    for mark, name in marks:
        if data.startswith(mark):
            return name, data[len(mark):]
    return marks[1][1], data


@functools.lru_cache(maxsize=256)
def _codec(charset):
    """The name of a safe Python text codec for *charset*, or None."""
    name = charset.strip().lower()
    if not _CHARSET.fullmatch(name):
        return None
    try:
        codec = codecs.lookup(name).name
        b"x".decode(codec, "replace")  # LookupError if it is no text codec
    except (LookupError, UnicodeError):
        return None
    if codec in _UNSAFE_CODECS:
        return None
    return _CODEC_ALIASES.get(codec, codec)
