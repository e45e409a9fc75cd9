"""The URLs of the body text and HTML, as a reader's client would follow them.

In text: ``http``, ``https`` and ``ftp`` URLs and ``www.`` names, without
the punctuation that ends a sentence.  In HTML: every attribute that holds
a URL (``href``, ``src``, ``action``, ``srcset``, ``ping``, a meta
refresh's ``content``, ...), with entities decoded; CSS ``url()`` and
``@import``; and URLs written in its text.  Each is taken as a browser
reads it (tabs and newlines dropped, control characters and space trimmed,
the WHATWG URL Standard), with its host.  At most ``Limits.urls`` distinct
URLs are kept (``url_limit``).
"""

import html
import re

from smtplatrine.parse.records import Url

_TEXT_URL = re.compile(r"""(?:(?:https?|ftp)://|www\.)[^\s<>"'`]+""", re.I)
_URL_TRAILER = ".,;:!?)]}'\""
# Attributes whose value is a URL (or, for srcset and ping, several; for
# content, a meta refresh's "0; url=...").
_HTML_URL = re.compile(
    r"""(?<![\w:-])(href|src|background|action|formaction|poster|cite|longdesc|"""
    r"""lowsrc|dynsrc|codebase|data|xlink:href|srcset|ping|content)"""
    r"""\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""", re.I)
_CSS_URL = re.compile(
    r"""(?:url\(\s*(?:"([^"]*)"|'([^']*)'|([^)"'\s]*))\s*\)|@import\s+(?:"([^"]*)"|'([^']*)'))""",
    re.I)
_REFRESH_URL = re.compile(r"""url\s*=\s*['"]?([^'"\s]+)""", re.I)
_ABSOLUTE_URL = re.compile(r"\s*(?:https?|ftp)://", re.I)
_TAG = re.compile(r"<[^<>]*>")
# What a browser drops from a URL: tab and newline anywhere, and control
# characters and space at either end (the WHATWG URL Standard).
_URL_TAB_OR_NEWLINE = re.compile(r"[\t\n\r]")
_URL_ENDS = "".join(map(chr, range(0x21)))
_AUTHORITY = re.compile(r"(?:[a-z][a-z0-9+.-]*:)?//([^/?#\\\s]*)|(www\.[^/?#\\\s]*)", re.I)


def find_urls(ctx, text, markup):
    """The distinct URLs of the body text and of the HTML (attributes, CSS,
    and its text)."""
    found = {}
    for source, urls in (("text", _text_urls(text)), ("html", _html_urls(markup))):
        for url in urls:
            if url in found:
                continue
            if len(found) == ctx.limits.urls:
                ctx.flag("url_limit")
                return tuple(found.values())
            if ctx.out_of_time():
                return tuple(found.values())
            found[url] = Url(url, _host(url), source)
    return tuple(found.values())


def _text_urls(text):
    """URLs written in plain text, without trailing punctuation."""
    for match in _TEXT_URL.finditer(text):
        yield match.group().rstrip(_URL_TRAILER)


def _html_urls(markup):
    """The URLs of HTML: in attributes (entities decoded), in CSS url() and
    @import, and written in its text; each as a browser would follow it."""
    for match in _HTML_URL.finditer(markup):
        name = match.group(1).lower()
        value = html.unescape(match.group(match.lastindex))
        if name == "srcset":
            values = [candidate.split()[0] for candidate in value.split(",")
                      if candidate.split()]
        elif name == "ping":
            values = value.split()
        elif name == "content":
            refresh = _REFRESH_URL.search(value)
            values = ([refresh.group(1)] if refresh
                      else [value] if _ABSOLUTE_URL.match(value) else [])
        else:
            values = [value]
        yield from filter(None, map(_as_followed, values))
    # Entities are decoded before CSS is read in an attribute; CSS in a
    # style element holds none that matter.
    for match in _CSS_URL.finditer(html.unescape(markup)):
        url = _as_followed(match.group(match.lastindex) or "")
        if url:
            yield url
    yield from _text_urls(html.unescape(_TAG.sub(" ", markup)))


def _as_followed(url):
    """*url* as a browser reads it from an attribute."""
    return _URL_TAB_OR_NEWLINE.sub("", url).strip(_URL_ENDS)


def _host(url):
    """The host of *url* in lower case, without userinfo or port."""
    match = _AUTHORITY.match(url)
    if match is None:
        return None
    authority = match.group(match.lastindex).rpartition("@")[2]
    if authority.startswith("["):
        host = authority[1:].partition("]")[0]
    else:
        host = authority.partition(":")[0]
    return host.lower() or None
