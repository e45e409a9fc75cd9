"""What the dashboard's live view reads: the sessions and messages stored
since it last looked, found by their number in the order they were
written (SQLite's rowid; the ``seq`` column on MySQL, schema version 8),
so that each look reads an index, not the tables."""

import json

from smtplatrine.store.queries import iso

_SEQUENCE = {"sqlite": "rowid", "mysql": "seq"}
_SESSION = ("session_id", "sensor", "client_ip", "started", "ended", "helo",
            "auth_attempts", "messages", "close_reason")
_MESSAGE = ("message_id", "session_id", "sensor", "received", "client_ip", "mail_from",
            "header_subject", "size")
_TIMES = {"started", "ended", "received"}


def _dicts(cursor):
    names = [d[0] for d in cursor.description]
    rows = [dict(zip(names, row)) for row in cursor.fetchall()]
    for row in rows:
        for name in _TIMES & row.keys():
            row[name] = iso(row[name])
        if "transcript" in row:
            row["transcript"] = json.loads(row["transcript"] or "[]")
    return rows


def newest(cursor, dialect):
    """(number of the newest session, of the newest message); 0 for none."""
    found = []
    for table in ("honeypot_sessions", "honeypot_emails"):
        cursor.execute(f"SELECT MAX({_SEQUENCE[dialect.name]}) FROM {table}")
        found.append(cursor.fetchone()[0] or 0)
    return tuple(found)


def since(cursor, dialect, after_session, after_message, limit=200):
    """The sessions and messages numbered above *after_session* and
    *after_message*, oldest first, at most *limit* of each, each with its
    number as ``seq``: (sessions, messages)."""
    sequence = _SEQUENCE[dialect.name]
    found = []
    for table, columns, after in (("honeypot_sessions", _SESSION, after_session),
                                  ("honeypot_emails", _MESSAGE, after_message)):
        cursor.execute(dialect.sql(
            f"SELECT {sequence} AS seq, {', '.join(columns)} FROM {table}"
            f" WHERE {sequence} > ? ORDER BY {sequence} LIMIT {int(limit)}"), (after,))
        found.append(_dicts(cursor))
    return tuple(found)


def ended(cursor, dialect, session_ids):
    """Those of the sessions *session_ids* that have ended, with their
    transcript as stored."""
    if not session_ids:
        return []
    marks = ", ".join("?" * len(session_ids))
    cursor.execute(dialect.sql(
        f"SELECT {', '.join(_SESSION)}, transcript FROM honeypot_sessions"
        f" WHERE session_id IN ({marks}) AND ended IS NOT NULL"), list(session_ids))
    return _dicts(cursor)
