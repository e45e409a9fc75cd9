"""How values go into columns: times as the UTC text both databases
take, network text with its undecodable bytes escaped, JSON sorted."""

import functools
import json
from datetime import datetime, timezone

TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


# A message's tallies write the same few times again and again.
@functools.lru_cache(maxsize=1024)
def utc(seconds):
    """Epoch *seconds* as the UTC text both databases take."""
    return datetime.fromtimestamp(seconds, timezone.utc).strftime(TIME_FORMAT)


def text(value, width=None):
    """Network text for a column: undecodable bytes escaped, maybe clipped."""
    if value is None:
        return None
    value = value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return value[:width] if width else value


def as_json(value):
    return json.dumps(value, sort_keys=True)
