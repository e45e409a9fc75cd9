"""Rows for one message and one session, written in one transaction each.

Text that came from the network may hold bytes that are not UTF-8 (kept as
``\\udcXX`` surrogates in the spool); columns get them as ``\\xXX`` escapes,
JSON columns keep them exact as ``\\udcXX``.  Indexed columns are clipped
to their width, so no value an attacker chooses can fail a whole message.

Lines marked ``# pragma: no mutate`` hold only SQL text and table and
column names, left out of the mutation run with the lines that go on an
SQL statement (pyproject.toml, [tool.mutmut]; README.rst, "Mutation
testing").
"""

import html
import re
import uuid

from smtplatrine.capture import Identity

from smtplatrine.store import tallies
# Also imported from here by the modules that write.
from smtplatrine.store.values import TIME_FORMAT, as_json, text, utc  # noqa: F401

_FIELDS = ["date", "to", "from", "cc", "reply_to", "subject", "message_id",
           "x_mailer", "user_agent", "organization", "content_type",
           "content_transfer_encoding"]




def address_parts(address):
    """``user+tag@domain`` as (username, tag, domain); tag None without +."""
    local, _, domain = address.rpartition("@")
    if not local:
        local, domain = domain, ""
    username, plus, tag = local.partition("+")
    return username, (tag if plus else None), domain.lower()


def _identity(identity):
    return [identity.session, identity.sensor, text(identity.src_ip, 45),
            identity.src_port, text(identity.dst_ip, 45), identity.dst_port]


_SESSION_KEY = ["session_id", "sensor", "client_ip", "client_port", "server_ip",
                "server_port"]
_TLS = ["tls_implicit", "tls_version", "tls_cipher"]


def _tls(tls):
    """The TLS columns of a session (all None without TLS)."""
    return [tls.get("implicit"), tls.get("version"), tls.get("cipher")]


def save_message(cursor, dialect, prepared, now, counted=None):
    """Store *prepared* unless its message is already there; True if stored.
    Its tallies are written at once or, given *counted* (a
    :class:`~smtplatrine.store.tallies.Batches`), added there for the
    caller to write with those of other messages."""
    metadata, parsed = prepared.metadata, prepared.parsed
    message_id, identity = metadata.message, metadata.identity
    cursor.execute(dialect.sql("SELECT 1 FROM honeypot_emails WHERE message_id = ?"),  # pragma: no mutate
                   (message_id,))
    if cursor.fetchone():
        return False
    tls = metadata.tls or {}
    started = metadata.received if metadata.session_start is None else metadata.session_start
    cursor.execute(
        dialect.insert("honeypot_sessions", _SESSION_KEY + [  # pragma: no mutate
            "started", "helo", *_TLS, "flags"],  # pragma: no mutate
            ignore=True),
        _identity(identity) + [
            utc(started), text(metadata.helo), *_tls(tls), as_json(list(metadata.flags))])
    columns = {
        "message_id": message_id, "session_id": identity.session,
        "sensor": identity.sensor,
        "queue_id": metadata.queue_id, "received": utc(metadata.received),
        "stored": utc(now), "client_ip": text(identity.src_ip, 45),
        "client_port": identity.src_port, "server_ip": text(identity.dst_ip, 45),
        "server_port": identity.dst_port, "helo": text(metadata.helo),
        "tls": bool(tls), "transport": metadata.transport,
        "mail_from": text(metadata.mail_from),
        "mail_params": as_json(metadata.mail_params or {}),
        "acknowledged": metadata.acknowledged,
        "truncated": metadata.truncated,
        "incomplete": metadata.incomplete,
        "recovered": metadata.recovered,
        "size": metadata.size, "sha256": metadata.sha256, "md5": metadata.md5,
        "raw": prepared.raw, "raw_path": prepared.raw_path,
        "session_flags": as_json(list(metadata.flags)),
        "imported": metadata.imported,
        "import_file": text(metadata.import_file),
        "import_index": metadata.import_index,
        **_reading(parsed),
    }
    cursor.execute(dialect.insert("honeypot_emails", list(columns)),  # pragma: no mutate
                   list(columns.values()))
    new_hashes = _new_hashes(cursor, dialect, parsed.attachments)
    _save_parts(cursor, dialect, prepared)
    _save_search(cursor, dialect, prepared)
    _save_recipients(cursor, dialect, metadata, parsed, now)
    counts = tallies.of_message(metadata, parsed, new_hashes)
    if counted is None:
        tallies.write(cursor, dialect, metadata.identity.sensor, counts)
    else:
        counted.add(metadata.identity.sensor, counts)
    return True


def _new_hashes(cursor, dialect, attachments):
    """The SHA-256 of *attachments* that no stored attachment has."""
    found = set()
    for digest in sorted({a.sha256 for a in attachments}):
        cursor.execute(dialect.sql("SELECT 1 FROM honeypot_attachments WHERE sha256 = ?"  # pragma: no mutate
                                   " LIMIT 1"), (digest,))
        if cursor.fetchone() is None:
            found.add(digest)
    return found


def update_reading(cursor, dialect, prepared):
    """Replace what was read from the stored message *prepared* (its
    fields, bodies, defects, headers, Received chain, URLs, attachments and
    To and Cc recipients) with *prepared*'s reading; whether it reads
    differently now (False also if the message is not stored)."""
    metadata, parsed = prepared.metadata, prepared.parsed
    message_id = metadata.message
    columns = _reading(parsed)
    cursor.execute(dialect.sql("SELECT received FROM honeypot_emails WHERE message_id = ?"),  # pragma: no mutate
                   (message_id,))
    row = cursor.fetchone()
    if row is None:
        return False
    before = _compared(cursor, dialect, message_id, columns)
    sensor, counted = tallies.of_stored(cursor, dialect, message_id)
    cursor.execute(dialect.sql(  # pragma: no mutate
        f"UPDATE honeypot_emails SET {', '.join(f'{c} = ?' for c in columns)}"  # pragma: no mutate
        " WHERE message_id = ?"), [*columns.values(), message_id])
    for table in _PART_TABLES:
        cursor.execute(dialect.sql(f"DELETE FROM {table} WHERE message_id = ?"),  # pragma: no mutate
                       (message_id,))
    _save_parts(cursor, dialect, prepared)
    _save_search(cursor, dialect, prepared, replace=True)
    after = _compared(cursor, dialect, message_id, columns)
    seen = row[0] if isinstance(row[0], str) else row[0].strftime(TIME_FORMAT)
    _replace_recipients(cursor, dialect, message_id, metadata.identity.sensor, parsed, seen)
    # The tallies of the new reading instead of the old one's.
    counted.subtract(tallies.of_stored(cursor, dialect, message_id)[1])
    tallies.write(cursor, dialect, sensor, {k: -n for k, n in counted.items()})
    return before != after


# What is compared to tell whether a message reads differently, besides
# the columns of honeypot_emails.
_COMPARED = {"honeypot_email_headers": "name, value",
             "honeypot_email_urls": "url, source",
             "honeypot_attachments": "filename, content_type, disposition, sha256"}


def _compared(cursor, dialect, message_id, columns):
    """The stored reading of a message: its *columns* and rows."""
    cursor.execute(dialect.sql(f"SELECT {', '.join(columns)} FROM honeypot_emails"  # pragma: no mutate
                               " WHERE message_id = ?"), (message_id,))
    found = [tuple(cursor.fetchone())]
    for table, names in _COMPARED.items():
        cursor.execute(dialect.sql(f"SELECT {names} FROM {table} WHERE message_id = ?"  # pragma: no mutate
                                   " ORDER BY position"), (message_id,))
        found.append([tuple(row) for row in cursor.fetchall()])
    return found


def _replace_recipients(cursor, dialect, message_id, sensor, parsed, seen):
    """The To and Cc recipients of a message read again: an address it
    newly carries counts one message more, one it no longer carries one
    less (and goes when no message carries it)."""
    cursor.execute(dialect.sql("SELECT kind, address FROM honeypot_email_recipients"  # pragma: no mutate
                               " WHERE message_id = ?"), (message_id,))
    before = {(kind, address) for kind, address in cursor.fetchall()}
    envelope = sorted(pair for pair in before if pair[0] == "envelope")
    after = _recipient_kinds(envelope, parsed)
    old, new = {a for _, a in before}, {a for _, a in after}
    _count_addresses(cursor, dialect, sorted(new - old), sensor, seen)
    for address in sorted(old - new):
        cursor.execute(dialect.sql("UPDATE honeypot_recipients SET seen = seen - 1"  # pragma: no mutate
                                   " WHERE address = ?"), (address,))
        cursor.execute(dialect.sql("DELETE FROM honeypot_recipients"  # pragma: no mutate
                                   " WHERE address = ? AND seen <= 0"), (address,))
    cursor.execute(dialect.sql("DELETE FROM honeypot_email_recipients"  # pragma: no mutate
                               " WHERE message_id = ? AND kind <> 'envelope'"), (message_id,))
    _many(cursor, dialect, "honeypot_email_recipients",  # pragma: no mutate
          ["message_id", "address", "kind", "sensor"],  # pragma: no mutate
          [(message_id, address, kind, sensor) for kind, address in after
           if kind != "envelope"])


def _reading(parsed):
    """The columns of honeypot_emails that hold what was read from the
    message."""
    fields = parsed.fields
    return {
        **{f"header_{name}": fields.get(name) for name in _FIELDS},
        "body_text": parsed.body_text, "body_html": parsed.body_html,
        "defects": as_json(list(parsed.defects)), "parse_error": parsed.error,
    }


# The tables of what was read from a message, one row per item.
_PART_TABLES = ("honeypot_email_headers", "honeypot_email_received",
                "honeypot_email_urls", "honeypot_attachments")


def _save_parts(cursor, dialect, prepared):
    """The rows of the message's headers, Received chain, URLs and attachments."""
    metadata, parsed = prepared.metadata, prepared.parsed
    message_id, sensor = metadata.message, metadata.identity.sensor
    _many(cursor, dialect, "honeypot_email_headers",  # pragma: no mutate
          ["message_id", "position", "sensor", "name", "value"],  # pragma: no mutate
          [(message_id, i, sensor, h.name[:255], h.value)
           for i, h in enumerate(parsed.headers)])
    _many(cursor, dialect, "honeypot_email_received",  # pragma: no mutate
          ["message_id", "position", "sensor", "from_host", "from_ip", "by_host",  # pragma: no mutate
           "protocol", "received_id", "for_address", "date", "raw"],  # pragma: no mutate
          [(message_id, i, sensor, r.from_host, r.from_ip and r.from_ip[:45],
            r.by_host, r.protocol, r.id, r.for_, r.date and r.date[:32], r.raw)
           for i, r in enumerate(parsed.received)])
    _many(cursor, dialect, "honeypot_email_urls",  # pragma: no mutate
          ["message_id", "position", "sensor", "url", "host", "source"],  # pragma: no mutate
          [(message_id, i, sensor, u.url, u.host and u.host[:255], u.source)
           for i, u in enumerate(parsed.urls)])
    _many(cursor, dialect, "honeypot_attachments",  # pragma: no mutate
          ["attachment_id", "message_id", "position", "sensor", "filename",  # pragma: no mutate
           "content_type", "disposition", "size", "md5", "sha1", "sha256",  # pragma: no mutate
           "stored_path"],  # pragma: no mutate
          [(attachment_id(message_id, i), message_id, i, sensor, a.filename,
            a.content_type[:255], a.disposition, a.size, a.md5, a.sha1, a.sha256, path)
           for i, (a, path) in enumerate(zip(parsed.attachments,
                                             prepared.attachment_paths))])


def _save_search(cursor, dialect, prepared, replace=False):
    """The message's indicators and its words in the full-text index (with
    *replace*, instead of those it had)."""
    metadata, parsed = prepared.metadata, prepared.parsed
    message_id, fields = metadata.message, parsed.fields
    if replace:
        cursor.execute(dialect.sql("DELETE FROM honeypot_email_indicators"  # pragma: no mutate
                                   " WHERE message_id = ?"), (message_id,))
    _many(cursor, dialect, "honeypot_email_indicators",  # pragma: no mutate
          ["message_id", "kind", "indicator", "source", "sensor"],  # pragma: no mutate
          [(message_id, i.kind, i.value[:255], i.source, metadata.identity.sensor)
           for i in prepared.indicators])
    dialect.index_text(cursor, message_id, fields.get("subject") or "",
                       f"{fields.get('from') or ''} {text(metadata.mail_from) or ''}",
                       f"{parsed.body_text}\n{html_text(parsed.body_html)}", replace)


_TAG = re.compile(r"<!--.*?-->|<(script|style)\b.*?</\1\s*>|<[^>]*>", re.S | re.I)


def html_text(markup):
    """The words of an HTML body, for the full-text index."""
    return html.unescape(_TAG.sub(" ", markup))


def attachment_id(message_id, position):
    """The attachment's UUID: the same each time its message is stored."""
    return str(uuid.uuid5(uuid.UUID(message_id), str(position)))


def _recipient_kinds(envelope, parsed):
    """Distinct (kind, address) of the *envelope* pairs and the message's
    To and Cc, addresses clipped to their column."""
    kinds = list(envelope) + list(parsed.addresses)
    return list(dict.fromkeys((kind, address[:320]) for kind, address in kinds))


def _save_recipients(cursor, dialect, metadata, parsed, now):
    sensor = metadata.identity.sensor
    kinds = _recipient_kinds(
        [("envelope", text(r).lower()) for r in metadata.rcpts], parsed)
    _count_addresses(cursor, dialect, sorted({address for _, address in kinds}),
                     sensor, utc(metadata.received))
    _many(cursor, dialect, "honeypot_email_recipients",  # pragma: no mutate
          ["message_id", "address", "kind", "sensor"],  # pragma: no mutate
          [(metadata.message, address, kind, sensor) for kind, address in kinds])


def _count_addresses(cursor, dialect, addresses, sensor, seen):
    """Count one more message for each of *addresses*, seen at *seen*.
    One row per distinct address, in a fixed order (sorted), so that
    sensors sharing a database lock rows in the same order and do not
    deadlock."""
    statement = dialect.upsert(  # pragma: no mutate
        "honeypot_recipients",  # pragma: no mutate
        ["address", "username", "tag", "domain", "sensor", "seen", "first_seen",  # pragma: no mutate
         "last_seen"], ["address"],  # pragma: no mutate
        {"seen": "add", "first_seen": "min", "last_seen": "max"},  # pragma: no mutate
    )
    for address in addresses:
        username, tag, domain = address_parts(address)
        cursor.execute(statement, (address, username, tag, domain[:255], sensor, 1,
                                   seen, seen))


def _many(cursor, dialect, table, columns, rows, ignore=False):
    if rows:
        cursor.executemany(dialect.insert(table, columns, ignore), rows)


def save_session(cursor, dialect, record):
    """Store (or complete) the session *record* (a JSON object, see
    :mod:`smtplatrine.smtp.record`) and its AUTH attempts."""
    columns = {
        "started": utc(record["start"]),
        "ended": utc(record["end"]) if record.get("end") else None,
        "helo": text(record.get("helo")),
        **dict(zip(_TLS, _tls(record.get("tls") or {}))),
        "auth_attempts": len(record.get("auth", [])),
        "commands": record.get("commands"), "unknown_commands": record.get("unknown_commands"),
        "errors": record.get("errors"), "messages": record.get("messages"),
        "close_reason": record.get("close_reason"), "pregreet": text(record.get("pregreet")),
        "flags": as_json(record.get("flags", [])),
        "transcript": as_json(record.get("transcript", [])),
        "envelopes": as_json(record.get("envelopes", [])),
    }
    # Counted once: when the record first completes the session (a record
    # stored again after a crash, or a row a message made, counts no more).
    cursor.execute(dialect.sql("SELECT ended FROM honeypot_sessions WHERE session_id = ?"),  # pragma: no mutate
                   (record["session"],))
    before = cursor.fetchone()
    if columns["ended"] is not None and (before is None or before[0] is None):
        tallies.write(cursor, dialect, record["sensor"], tallies.of_session(record))
    cursor.execute(
        dialect.upsert("honeypot_sessions", _SESSION_KEY + list(columns), ["session_id"],  # pragma: no mutate
                       {name: "new" for name in columns}),
        _identity(Identity.from_json(record)) + list(columns.values()))
    _many(cursor, dialect, "honeypot_credentials",  # pragma: no mutate
          ["session_id", "position", "sensor", "time", "client_ip", "mechanism",  # pragma: no mutate
           "authzid", "username", "password", "challenge", "response", "accepted"],  # pragma: no mutate
          [(record["session"], i, record["sensor"], utc(a["time"]),
            text(record["src_ip"], 45), a["mechanism"], text(a.get("authzid")),
            text(a.get("username")), text(a.get("password")), text(a.get("challenge")),
            text(a.get("response")), bool(a.get("accepted")))
           for i, a in enumerate(record.get("auth", []))], ignore=True)
