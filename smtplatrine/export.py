"""``smtplatrine export``: stored messages as JSON lines, one per message,
with their session, headers, Received chain, URLs, attachments (with the
members found inside them, and what the analysis found), recipients and
enrichment results, for SIEM ingestion and scripts."""

import base64
import json

from smtplatrine.enrich import indicators
from smtplatrine.store import enrichment, forensics

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
_JSON_COLUMNS = {"mail_params", "session_flags", "defects", "flags", "envelopes"}
_BOOLEANS = {"tls", "acknowledged", "truncated", "incomplete", "recovered", "accepted",
             "imported"}


def _iso(value):
    """A stored UTC time as ISO 8601 with Z (both databases' forms)."""
    if value is None:
        return None
    text = value if isinstance(value, str) else value.strftime("%Y-%m-%d %H:%M:%S.%f")
    return text.replace(" ", "T") + "Z"


def _rows(cursor):
    names = [d[0] for d in cursor.description]
    for row in cursor.fetchall():
        yield dict(zip(names, row))


def _clean(row):
    for name, value in row.items():
        if name in _JSON_COLUMNS and value is not None:
            row[name] = json.loads(value)
        elif name in _BOOLEANS and value is not None:
            row[name] = bool(value)
        elif name in {"received", "stored", "started", "ended", "time"}:
            row[name] = _iso(value)
    return row


def messages(connection, dialect, since=None, until=None, sensor=None, raw=True):
    """Each stored message matching the filters, as one JSON-ready dict."""
    sql, where, args = dialect.sql, [], []
    for clause, value in (("received >= ?", since), ("received < ?", until),
                          ("sensor = ?", sensor)):
        if value is not None:
            where.append(clause)
            args.append(value)
    query = "SELECT * FROM honeypot_emails"
    if where:
        query += " WHERE " + " AND ".join(where)
    outer = connection.cursor()
    outer.execute(sql(query + " ORDER BY received, message_id"), args)
    names = [d[0] for d in outer.description]
    cursor = connection.cursor()
    while batch := outer.fetchmany(100):
        for row in batch:
            message = _clean(dict(zip(names, row)))
            data = message.pop("raw")
            if raw and data is not None:
                message["raw_base64"] = base64.b64encode(bytes(data)).decode("ascii")
            _add_related(cursor, sql, message)
            _add_analysis(cursor, dialect, message)
            _add_enrichment(cursor, dialect, message)
            yield message


def _add_related(cursor, sql, message):
    key = (message["message_id"],)
    for name, (table, columns) in _CHILDREN.items():
        cursor.execute(sql(f"SELECT {', '.join(columns)} FROM {table}"
                           " WHERE message_id = ? ORDER BY position"), key)
        message[name] = list(_rows(cursor))
    cursor.execute(sql("SELECT address, kind FROM honeypot_email_recipients"
                       " WHERE message_id = ? ORDER BY kind, address"), key)
    message["recipients"] = list(_rows(cursor))
    cursor.execute(sql("SELECT * FROM honeypot_sessions WHERE session_id = ?"),
                   (message["session_id"],))
    session = next(_rows(cursor), None)
    if session is not None:
        session.pop("transcript")
        cursor.execute(sql("SELECT time, mechanism, authzid, username, password,"
                           " challenge, response, accepted FROM honeypot_credentials"
                           " WHERE session_id = ? ORDER BY position"),
                       (message["session_id"],))
        session["credentials"] = [_clean(r) for r in _rows(cursor)]
        message["session"] = _clean(session)


def _add_analysis(cursor, dialect, message):
    """Each attachment's flags (from its name against its content) and what
    the analysis found in its file (type, fuzzy hashes, flags, URLs, YARA,
    members)."""
    flags = forensics.attachment_flags(cursor, dialect, message["message_id"])
    known = {}
    for attachment in message["attachments"]:
        attachment["flags"] = flags.get(attachment["attachment_id"], [])
        digest = attachment["sha256"]
        if digest not in known:
            known[digest] = forensics.file_analysis(cursor, dialect, digest)
        attachment["analysis"] = known[digest]


def _add_enrichment(cursor, dialect, message):
    """What the enrichers stored about the message's indicators, each with
    where the message showed it (``source``)."""
    found = indicators.collect(
        message["client_ip"], [r["from_ip"] for r in message["received_chain"]],
        [a["sha256"] for a in message["attachments"]], message["mail_from"],
        [u["host"] for u in message["urls"]])
    sources = {i.value: i.source for i in found}
    message["enrichment"] = [
        dict(row, source=sources[row["indicator"]], looked_up=_iso(row["looked_up"]))
        for row in enrichment.results(cursor, dialect, list(sources))]


def write(stream, records):
    """Write *records* as JSON lines; how many."""
    count = 0
    for record in records:
        stream.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
        count += 1
    return count
