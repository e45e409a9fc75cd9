"""Text helpers for the analysers: URLs and hosts out of untrusted text."""

import re
from urllib.parse import urlsplit

_URL = re.compile(r"""(?i)\b(?:https?|ftp)://[^\s"'<>\\`{}|^]{1,2000}""")


def urls(text, limit=50):
    """The distinct URLs in *text*, at most *limit*."""
    found = []
    for match in _URL.finditer(text):
        url = match.group(0).rstrip(".,;:!?)]")
        if url not in found:
            found.append(url)
            if len(found) >= limit:
                break
    return found


def host(url):
    """The host of *url* (lower case), or None."""
    try:
        return (urlsplit(url).hostname or None) if url else None
    except ValueError:
        return None
