"""The export formats of ``smtplatrine export`` and of the dashboard, one
class each, written piece by piece so that no export holds more than one
page of rows: ``head()``, then ``item(row)`` for each row, then
``tail()``, each giving bytes.

Messages (the records of store.queries.export_page):

- ``jsonl``: one JSON object per message, with its session, headers,
  Received chain, URLs, attachments (and what the analysis found in
  them), recipients and enrichment results, the raw message in base64 as
  ``raw_base64`` if it was read;
- ``csv``: one row per message, its cells made safe to open in a
  spreadsheet (a text starting with = + - @, a tab or a carriage return is
  prefixed with ');
- ``mbox``: the raw messages as they were received, in an mboxrd file
  (From_ lines in them quoted with one more >).

Indicators (the rows of store.indicators.page): ``stix`` and ``misp``, see
smtplatrine.intel.
"""

import base64
import csv
import io
import json
import re
import time
from datetime import datetime
from pathlib import Path

from smtplatrine import intel
from smtplatrine.store import indicators, queries


def _json(value):
    """*value* as JSON text in UTF-8; text that was no valid UTF-8 (kept as
    surrogates) as \\udcNN escapes, which read back exactly."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True).encode(
        "utf-8", "backslashreplace")


class JSONLines:
    name, extension, content_type, source = "jsonl", "jsonl", "application/x-ndjson", "messages"

    def head(self):
        return b""

    def item(self, record):
        data = record.pop("raw", None)
        if data is not None:
            record["raw_base64"] = base64.b64encode(data).decode("ascii")
        return _json(record) + b"\n"

    def tail(self):
        return b""


# A cell a spreadsheet would read as a formula (or that hides one behind
# a tab or carriage return).
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def cell(value):
    """*value* for a CSV cell: None empty, text starting as a formula
    prefixed with ' (OWASP: CSV injection)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.startswith(_FORMULA):
        return "'" + value
    return value


class CSV:
    """One row per message; URLs only if *urls* (who may see them)."""
    name, extension, content_type, source = "csv", "csv", "text/csv; charset=utf-8", "messages"
    _COLUMNS = ["received", "message_id", "session_id", "sensor", "client_ip",
                "client_port", "helo", "tls", "mail_from", "recipients", "header_from",
                "header_to", "header_subject", "header_date", "header_message_id",
                "header_x_mailer", "size", "sha256", "attachment_names",
                "attachment_sha256", "defects"]

    def __init__(self, urls=True):
        self.columns = self._COLUMNS + (["urls"] if urls else [])

    def _line(self, cells):
        out = io.StringIO()
        csv.writer(out, lineterminator="\r\n").writerow([cell(c) for c in cells])
        return out.getvalue().encode("utf-8", "backslashreplace")

    def head(self):
        return self._line(self.columns)

    def item(self, record):
        record = dict(record)
        record["recipients"] = " ".join(r["address"] for r in record["recipients"]
                                        if r["kind"] == "envelope")
        attachments = record["attachments"]
        record["attachment_names"] = " | ".join(a["filename"] or "" for a in attachments)
        record["attachment_sha256"] = " ".join(a["sha256"] for a in attachments)
        record["defects"] = " ".join(record["defects"])
        record["urls"] = " ".join(u["url"] for u in record.get("urls", []))
        return self._line([record[c] for c in self.columns])

    def tail(self):
        return b""


# A line that an mbox reader would take for the start of a message, or
# one already quoted so (mboxrd quotes them all, and so reads back exactly).
_FROM_LINE = re.compile(rb"^(>*From )", re.MULTILINE)
_SENDER = re.compile(r"[!-~]{1,256}")


class Mbox:
    """The raw messages (a message whose raw bytes are not kept here is
    left out)."""
    name, extension, content_type, source = "mbox", "mbox", "application/mbox", "messages"
    raw = True

    def head(self):
        return b""

    def item(self, record):
        if record.get("raw") is None:
            return b""
        sender = record["mail_from"] or ""
        if not _SENDER.fullmatch(sender):
            sender = "MAILER-DAEMON"
        received = datetime.fromisoformat(record["received"].replace("Z", "+00:00"))
        data = _FROM_LINE.sub(rb">\1", record["raw"])
        if not data.endswith(b"\n"):
            data += b"\n"
        return (f"From {sender} {time.asctime(received.timetuple())}\n".encode("ascii")
                + data + b"\n")

    def tail(self):
        return b""


class Stix:
    """A STIX 2.1 bundle: see intel.stix_objects."""
    name, extension, content_type, source = "stix", "json", "application/json", "indicators"

    def __init__(self, sensor):
        self._identity = intel.identity(sensor)

    def head(self):
        return intel.bundle_head(self._identity).encode("utf-8")

    def item(self, row):
        pieces = [o.serialize(sort_keys=True) for o in intel.stix_objects(row, self._identity)]
        return ("".join(",\n" + p for p in pieces)).encode("utf-8", "backslashreplace")

    def tail(self):
        return b"\n]}\n"


class Misp:
    """A MISP event: see intel.misp_attribute."""
    name, extension, content_type, source = "misp", "json", "application/json", "indicators"

    def __init__(self, info, now):
        self._info, self._now = info, now
        self._first = True

    def head(self):
        return intel.event_head(self._info, self._now).encode("utf-8")

    def item(self, row):
        text = ("" if self._first else ",") + "\n" + json.dumps(
            intel.misp_attribute(row, self._now), ensure_ascii=False, sort_keys=True)
        self._first = False
        return text.encode("utf-8", "backslashreplace")

    def tail(self):
        return b"\n]}}\n"


FORMATS = ("jsonl", "csv", "mbox", "stix", "misp")


def make(name, sensor="smtplatrine", info="smtplatrine", now=None, urls=True):
    """The format *name* (one of FORMATS): *sensor* names the STIX identity,
    *info* the MISP event; *now* (epoch seconds) dates it."""
    now = time.time() if now is None else now
    return {"jsonl": JSONLines, "csv": lambda: CSV(urls), "mbox": Mbox,
            "stix": lambda: Stix(sensor), "misp": lambda: Misp(info, now)}[name]()


# Files the storing side keeps named by their SHA-256 (raw messages under
# data_dir/raw/, attachments): never a name a sender chose.
STORED = re.compile(r"[0-9a-f]{2}/[0-9a-f]{64}")


def with_raw_file(record, raw_dir):
    """*record*, its raw bytes read from *raw_dir* (``layout.DataDir.raw``)
    if they are kept there ([store] raw_in_database = false, or with
    SQLite a message over 1 MiB) and not in the database."""
    path = record.get("raw_path") or ""
    if record.get("raw") is None and STORED.fullmatch(path):
        try:
            record["raw"] = (Path(raw_dir) / path).read_bytes()
        except OSError:
            pass
    return record


# Indicators read at a time.
INDICATOR_PAGE = 500


def read_page(cursor, dialect, fmt, scope, search=None, position=None, raw=False,
              kinds=indicators.KINDS):
    """One page of the rows of *fmt* (messages, with their raw bytes if
    *raw* or the format needs them; or indicators of *kinds*) from
    *position* (None: the first): (rows, the position of the next page,
    None after the last).  ``f(cursor, dialect, ...)``, as the dashboard
    runs it page by page, and :func:`write` too."""
    if fmt.source == "messages":
        return queries.export_page(cursor, dialect, scope, search, position,
                                   raw or getattr(fmt, "raw", False))
    index, after = position or (0, None)
    found = indicators.page(cursor, dialect, kinds[index], scope, search, after,
                            INDICATOR_PAGE)
    if len(found) == INDICATOR_PAGE:
        return found, (index, found[-1]["value"])
    return found, ((index + 1, None) if index + 1 < len(kinds) else None)


def write(connection, dialect, fmt, scope, stream, search=None, raw=False, raw_dir=None):
    """Write the export *fmt* of what is in *scope* and matches *search* to
    the binary *stream* (raw messages kept as files read from *raw_dir*);
    how many rows."""
    cursor, position, count = connection.cursor(), None, 0
    raw = raw or getattr(fmt, "raw", False)
    stream.write(fmt.head())
    while True:
        rows, position = read_page(cursor, dialect, fmt, scope, search, position, raw)
        for row in rows:
            if raw:
                row = with_raw_file(row, raw_dir)
            stream.write(fmt.item(row))
        count += len(rows)
        if position is None:
            break
    stream.write(fmt.tail())
    return count
