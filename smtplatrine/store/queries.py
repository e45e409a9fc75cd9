"""The read side of the store, shared by ``smtplatrine export``, the command
line and the dashboard: plain ``f(cursor, dialect, ...)`` functions that
return JSON-ready dicts (times as ISO 8601 with Z, JSON columns parsed,
flags as booleans).  None of them writes.

Lists take a :class:`Scope` (time range and sensor, which every page of the
dashboard filters by) and a page number, and return a :class:`Page`.
"""

import json

import attrs

from smtplatrine.store import forensics

# Counted exactly up to here; past it a list says "more than".
COUNT_LIMIT = 10_000

_JSON_COLUMNS = {"mail_params", "session_flags", "defects", "flags", "envelopes",
                 "transcript", "result", "geo"}
_BOOLEANS = {"tls", "acknowledged", "truncated", "incomplete", "recovered", "accepted",
             "found", "tls_implicit", "imported"}
_TIMES = {"received", "stored", "started", "ended", "time", "looked_up", "first_seen",
          "last_seen", "created", "changed"}

_MESSAGE_COLUMNS = [
    "message_id", "session_id", "sensor", "queue_id", "received", "stored", "client_ip",
    "client_port", "server_ip", "server_port", "helo", "tls", "transport", "mail_from",
    "mail_params", "acknowledged", "truncated", "incomplete", "recovered", "size",
    "sha256", "md5", "raw_path", "header_date", "header_to", "header_from", "header_cc",
    "header_reply_to", "header_subject", "header_message_id", "header_x_mailer",
    "header_user_agent", "header_organization", "header_content_type",
    "header_content_transfer_encoding", "body_text", "body_html", "session_flags",
    "defects", "imported", "import_file", "import_index", "parse_error"]
_SESSION_COLUMNS = [
    "session_id", "sensor", "client_ip", "client_port", "server_ip", "server_port",
    "started", "ended", "helo", "tls_implicit", "tls_version", "tls_cipher",
    "auth_attempts", "commands", "unknown_commands", "errors", "messages",
    "close_reason", "pregreet", "flags", "envelopes"]
_CHILDREN = {
    "headers": ("honeypot_email_headers", ["name", "value"]),
    "received_chain": ("honeypot_email_received",
                       ["from_host", "from_ip", "by_host", "protocol", "received_id",
                        "for_address", "date", "raw"]),
    "urls": ("honeypot_email_urls", ["url", "host", "source"]),
    "attachments": ("honeypot_attachments",
                    ["attachment_id", "parent_id", "filename", "content_type",
                     "disposition", "size", "md5", "sha1", "sha256", "stored_path"]),
}
_CREDENTIALS = ["time", "mechanism", "authzid", "username", "password", "challenge",
                "response", "accepted"]


@attrs.frozen
class Scope:
    """What every list is narrowed to: received (or started) at or after
    *since* and before *until* (UTC text as the store keeps it), on
    *sensor*; None: no bound."""
    since: str | None = None
    until: str | None = None
    sensor: str | None = None

    def where(self, time_column, sensor_column):
        """([clause], [argument]) keeping the rows in scope."""
        clauses, args = [], []
        for clause, value in ((f"{time_column} >= ?", self.since),
                              (f"{time_column} < ?", self.until),
                              (f"{sensor_column} = ?", self.sensor)):
            if value is not None:
                clauses.append(clause)
                args.append(value)
        return clauses, args


@attrs.frozen
class Page:
    """One page of a list: *rows*, page *number* (from 1) of *size* rows,
    whether *more* follow, and *total* rows (at most COUNT_LIMIT + 1:
    past COUNT_LIMIT, *capped*)."""
    rows: list
    number: int
    size: int
    more: bool
    total: int

    @property
    def capped(self):
        return self.total > COUNT_LIMIT

    def as_json(self, name):
        return {name: self.rows, "page": self.number, "per_page": self.size,
                "more": self.more, "total": min(self.total, COUNT_LIMIT),
                "total_capped": self.capped}


def iso(value):
    """A stored UTC time as ISO 8601 with Z (both databases' forms)."""
    if value is None:
        return None
    text = value if isinstance(value, str) else value.strftime("%Y-%m-%d %H:%M:%S.%f")
    return text.replace(" ", "T") + "Z"


def _rows(cursor):
    names = [d[0] for d in cursor.description]
    return [_clean(dict(zip(names, row))) for row in cursor.fetchall()]


def _clean(row):
    for name, value in row.items():
        if value is None:
            continue
        if name in _JSON_COLUMNS:
            row[name] = json.loads(value)
        elif name in _BOOLEANS:
            row[name] = bool(value)
        elif name in _TIMES:
            row[name] = iso(value)
    return row


def _where(clauses):
    return (" WHERE " + " AND ".join(clauses)) if clauses else ""


def _page(cursor, dialect, columns, table, alias, time_column, clauses, args, number,
          size):
    """SELECT *columns* FROM *table* (as *alias*) narrowed by *clauses*,
    newest first by *time_column*: page *number*.  The page's keys are
    found first, from the time index alone, and only its rows are read
    (a deep page does not read every row before it)."""
    number = max(1, number)
    where = _where(clauses)
    key = _key(dialect, alias)
    order = f"{alias}.{time_column} DESC, {alias}.{key} DESC"
    cursor.execute(dialect.sql(
        f"SELECT {columns} FROM {table} JOIN (SELECT {alias}.{key} AS page_key FROM {table}"
        f"{where} ORDER BY {order} LIMIT {int(size) + 1} OFFSET {(number - 1) * int(size)})"
        f" found ON found.page_key = {alias}.{key} ORDER BY {order}"), args)
    rows = _rows(cursor)
    cursor.execute(dialect.sql(f"SELECT COUNT(*) FROM (SELECT 1 FROM {table}{where}"
                               f" LIMIT {COUNT_LIMIT + 1}) counted"), args)
    total = cursor.fetchone()[0]
    return Page(rows[:size], number, size, len(rows) > size, total)


def _key(dialect, alias):
    """What orders rows of equal time, as the time indexes do: SQLite's
    indexes end with the rowid, InnoDB's with the primary key."""
    if dialect.name == "sqlite":
        return "rowid"
    return "message_id" if alias == "m" else "session_id"


def sensors(cursor, dialect):
    """The names of the sensors that stored something, sorted."""
    cursor.execute("SELECT DISTINCT sensor FROM honeypot_sessions ORDER BY sensor")
    return [row[0] for row in cursor.fetchall()]


def messages(cursor, dialect, scope, search=None, page=1, size=50):
    """Messages in *scope* matching *search* (a store.search.Search),
    newest first, as the dashboard's list shows them: a :class:`Page`."""
    clauses, args = scope.where("m.received", "m.sensor")
    if search is not None:
        more, more_args = search.where(dialect)
        clauses += more
        args += more_args
    columns = (
        "m.message_id, m.received, m.sensor, m.client_ip, m.mail_from,"
        " m.header_from, m.header_subject, m.size, m.tls, m.truncated, m.incomplete,"
        " m.defects,"
        " (SELECT COUNT(*) FROM honeypot_email_recipients r"
        "  WHERE r.message_id = m.message_id AND r.kind = 'envelope') AS recipients,"
        " (SELECT COUNT(*) FROM honeypot_attachments a"
        "  WHERE a.message_id = m.message_id) AS attachments,"
        " (SELECT s.auth_attempts FROM honeypot_sessions s"
        "  WHERE s.session_id = m.session_id) AS auth_attempts,"
        f" {_geo('m')}")
    found = _page(cursor, dialect, columns, "honeypot_emails m", "m", "received", clauses,
                  args, page, size)
    for row in _with_country(found.rows):
        row["defects"] = len(row["defects"])
        row["auth"] = bool(row.pop("auth_attempts"))
    return found


def _geo(alias):
    """A column: what GeoIP says of the client of the row *alias*."""
    return (f"(SELECT e.result FROM honeypot_enrichment e WHERE e.provider = 'geoip_city'"
            f" AND e.indicator = {alias}.client_ip) AS geo")


def _with_country(rows):
    """*rows*, their ``geo`` column turned into ``country`` (a code or None)."""
    for row in rows:
        row["country"] = (row.pop("geo") or {}).get("country_code")
    return rows


def message(cursor, dialect, message_id):
    """Everything stored about one message (but its raw bytes), or None:
    its columns, headers, Received chain, URLs, attachments, recipients,
    session (with credentials and transcript) and the enrichment results
    of its indicators."""
    cursor.execute(dialect.sql(f"SELECT {', '.join(_MESSAGE_COLUMNS)}"
                               f" FROM honeypot_emails WHERE message_id = ?"), (message_id,))
    found = _rows(cursor)
    if not found:
        return None
    record = found[0]
    _add_related(cursor, dialect, record)
    return record


def _add_related(cursor, dialect, record, transcript=True):
    sql, key = dialect.sql, (record["message_id"],)
    for name, (table, columns) in _CHILDREN.items():
        cursor.execute(sql(f"SELECT {', '.join(columns)} FROM {table}"
                           " WHERE message_id = ? ORDER BY position"), key)
        record[name] = _rows(cursor)
    cursor.execute(sql("SELECT address, kind FROM honeypot_email_recipients"
                       " WHERE message_id = ? ORDER BY kind, address"), key)
    record["recipients"] = _rows(cursor)
    _add_analysis(cursor, dialect, record)
    record["session"] = session(cursor, dialect, record["session_id"], transcript)
    cursor.execute(sql(
        "SELECT e.provider, i.kind, i.indicator, i.source, e.found, e.result, e.looked_up"
        " FROM honeypot_email_indicators i JOIN honeypot_enrichment e"
        " ON e.indicator = i.indicator WHERE i.message_id = ?"
        " ORDER BY i.kind, i.indicator, e.provider"), key)
    record["enrichment"] = _rows(cursor)


def _add_analysis(cursor, dialect, record):
    """Each attachment's flags (its name against its content) and what the
    analysis found in its file (type, fuzzy hashes, flags, URLs, YARA,
    members)."""
    flags = forensics.attachment_flags(cursor, dialect, record["message_id"])
    known = {}
    for attachment in record["attachments"]:
        attachment["flags"] = flags.get(attachment["attachment_id"], [])
        digest = attachment["sha256"]
        if digest not in known:
            known[digest] = forensics.file_analysis(cursor, dialect, digest)
        attachment["analysis"] = known[digest]


def raw(cursor, dialect, message_id):
    """(raw bytes or None, raw_path or None, sha256) of a message, or None."""
    cursor.execute(dialect.sql("SELECT raw, raw_path, sha256 FROM honeypot_emails"
                               " WHERE message_id = ?"), (message_id,))
    row = cursor.fetchone()
    if row is None:
        return None
    return (None if row[0] is None else bytes(row[0])), row[1], row[2]


def attachment(cursor, dialect, attachment_id):
    """One attachment's row (with its message_id), or None."""
    cursor.execute(dialect.sql(
        "SELECT attachment_id, message_id, filename, content_type, disposition, size,"
        " md5, sha1, sha256, stored_path FROM honeypot_attachments"
        " WHERE attachment_id = ?"), (attachment_id,))
    found = _rows(cursor)
    return found[0] if found else None


def sessions(cursor, dialect, scope, page=1, size=50, client=None):
    """SMTP sessions in *scope* (from *client*, an address, if given),
    newest first, with or without messages: a :class:`Page`."""
    clauses, args = scope.where("s.started", "s.sensor")
    if client is not None:
        clauses.append("s.client_ip = ?")
        args.append(client)
    columns = [c for c in _SESSION_COLUMNS if c != "envelopes"]
    columns = f"{', '.join('s.' + c for c in columns)}, {_geo('s')}"
    found = _page(cursor, dialect, columns, "honeypot_sessions s", "s", "started", clauses,
                  args, page, size)
    _with_country(found.rows)
    return found


def session(cursor, dialect, session_id, transcript=True):
    """One SMTP session (with its credentials, the ids of its messages and,
    if *transcript*, its transcript), or None."""
    columns = _SESSION_COLUMNS + (["transcript"] if transcript else [])
    cursor.execute(dialect.sql(f"SELECT {', '.join(columns)} FROM honeypot_sessions"
                               f" WHERE session_id = ?"), (session_id,))
    found = _rows(cursor)
    if not found:
        return None
    record = found[0]
    cursor.execute(dialect.sql(f"SELECT {', '.join(_CREDENTIALS)} FROM honeypot_credentials"
                               f" WHERE session_id = ? ORDER BY position"), (session_id,))
    record["credentials"] = _rows(cursor)
    cursor.execute(dialect.sql("SELECT message_id, received, header_subject FROM"
                               " honeypot_emails WHERE session_id = ? ORDER BY received"),
                   (session_id,))
    record["message_list"] = _rows(cursor)
    cursor.execute(dialect.sql("SELECT provider, result FROM honeypot_enrichment"
                               " WHERE indicator = ? ORDER BY provider"),
                   (record["client_ip"],))
    record["client_enrichment"] = {row["provider"]: row["result"] for row in _rows(cursor)}
    return record


def export_page(cursor, dialect, scope, search=None, after=None, with_raw=True, size=None):
    """The messages in *scope* matching *search* that follow *after* (None:
    from the first), oldest first, with everything :func:`message` gives
    (the session without its transcript) and, if *with_raw*, the raw bytes
    as ``raw``: (records, the *after* of the next page, or None at the
    end).  A page is *size* messages (by default 100, or 10 with the raw
    bytes, which may be large)."""
    size = size or (10 if with_raw else 100)
    clauses, args = scope.where("m.received", "m.sensor")
    if search is not None:
        more, more_args = search.where(dialect)
        clauses += more
        args += more_args
    if after is not None:
        clauses.append("(m.received > ? OR (m.received = ? AND m.message_id > ?))")
        args += [after[0], after[0], after[1]]
    columns = _MESSAGE_COLUMNS + (["raw"] if with_raw else [])
    cursor.execute(dialect.sql(
        f"SELECT {', '.join('m.' + c for c in columns)}, m.received AS page_received"
        f" FROM honeypot_emails m{_where(clauses)} ORDER BY m.received, m.message_id"
        f" LIMIT {int(size)}"), args)
    records = _rows(cursor)
    for record in records:
        key = (record.pop("page_received"), record["message_id"])
        if record.get("raw") is not None:
            record["raw"] = bytes(record["raw"])
        _add_related(cursor, dialect, record, transcript=False)
    return records, (key if len(records) == size else None)
