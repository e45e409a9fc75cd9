"""JSON over HTTP for the provider enrichers: bounded, and every way a
provider can answer turned into a result or a clear failure."""

import json
from email.utils import parsedate_to_datetime

from twisted.internet import defer

from smtplatrine.interfaces import LookupFailed, RateLimited

# A provider's answer larger than this is garbage to us.
MAX_BODY = 1024 * 1024


class _TooLarge(Exception):
    pass


def header(response, name):
    """The first value of the response header *name* as text, or None."""
    values = response.headers.getRawHeaders(name.encode("ascii"))
    return values[0].decode("latin-1") if values else None


def retry_after(response, now, default=60.0):
    """Seconds to wait by the Retry-After header (seconds or an HTTP date)."""
    value = header(response, "Retry-After")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - now)
        except (TypeError, ValueError, IndexError, OverflowError):
            pass
    return default


async def get_json(http, url, headers, now):
    """GET *url* and return ``(response, decoded JSON)``, or ``(response,
    None)`` for 404 (the provider knows nothing of it).  Raises
    RateLimited on 429, LookupFailed otherwise (transient for 5xx)."""
    try:
        response = await http.get(url, headers=headers)
    except defer.CancelledError:
        raise
    except Exception as e:
        raise LookupFailed(f"request failed: {e.__class__.__name__}: {e}",
                           transient=True) from None
    if response.code == 429:
        raise RateLimited(retry_after(response, now), "HTTP 429 Too Many Requests")
    chunks, size = [], [0]

    def collect(data):
        size[0] += len(data)
        if size[0] > MAX_BODY:
            raise _TooLarge()
        chunks.append(data)

    try:
        await _collect(response, collect)
    except _TooLarge:
        raise LookupFailed(f"answer over {MAX_BODY} bytes") from None
    if response.code == 404:
        return response, None
    if response.code >= 500:
        raise LookupFailed(f"HTTP {response.code}", transient=True)
    if response.code != 200:
        raise LookupFailed(f"HTTP {response.code}")
    try:
        return response, json.loads(b"".join(chunks))
    except ValueError:
        raise LookupFailed("the answer is not JSON") from None


def _collect(response, collector):
    import treq
    return treq.collect(response, collector)


def field(data, *path, kind=None):
    """``data[path[0]][path[1]]...`` or None where the path ends early or
    the value is not of *kind*: a provider's JSON is not trusted to have
    the documented shape."""
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    if kind is not None and (not isinstance(data, kind)
                             or isinstance(data, bool) and kind is not bool):
        return None
    return data
