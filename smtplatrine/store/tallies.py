"""The counts the overview and the pivot pages read, kept by the storing
side in the same transaction as the rows they count (so a page sums a few
thousand tally rows instead of grouping every stored message).

``honeypot_tallies`` holds one row per (kind, bucket, sensor, value): how
many times *value* was seen as *kind* in that bucket, and the first and
last time.  The plain counters (value '') are counted per hour, the
values per day (BUCKETS); a range is read in whole buckets.
"""

import email.utils
import json
import re
from collections import Counter
from datetime import datetime, timezone
from types import SimpleNamespace

from smtplatrine.capture import Identity, Metadata
from smtplatrine.store.values import text, utc

HOUR, DAY = 3600, 86400

# What is counted, and in which bucket: counters per hour, values per day.
BUCKETS = {
    # Counters (value ''): the activity over time.
    "connections": HOUR, "sessions": HOUR, "auth": HOUR, "messages": HOUR,
    "attachments": HOUR, "new_attachments": HOUR,
    # Values, per session: its client, HELO, and each AUTH attempt.
    "client": DAY, "client_auth": DAY, "helo": DAY,
    "username": DAY, "password": DAY, "credential": DAY,
    # Values, per message.
    "client_messages": DAY, "mail_from_domain": DAY, "from_domain": DAY,
    "recipient": DAY, "rcpt_domain": DAY, "mailer": DAY, "attachment_type": DAY,
    "attachment": DAY, "url": DAY, "url_host": DAY, "subject": DAY,
}
# The widest value kept (the column's width; longer ones are clipped).
WIDTH = 255
_DIGITS = re.compile(r"\d+")
_SPACE = re.compile(r"\s+")


def bucket(kind, seconds):
    """The bucket (epoch hours, at its start) that *seconds* falls in."""
    size = BUCKETS[kind]
    return int(seconds // size * size // HOUR)


def credential(mechanism, username, password):
    """The value a credential is counted under: a JSON list, each part clipped."""
    return json.dumps([mechanism or "", (username or "")[:100], (password or "")[:100]],
                      ensure_ascii=False)


def subject_template(subject):
    """A subject with its numbers and spacing made alike, so the copies of
    one run ("Invoice 1234", "Invoice 987") count as one."""
    return _SPACE.sub(" ", _DIGITS.sub("#", subject or "")).strip()


def domain(address):
    """The lowercased domain of an address (or of a From header), or ''."""
    _, parsed = email.utils.parseaddr(address or "")
    found = (parsed or address or "").rpartition("@")[2]
    return found.strip(" <>").lower() if "@" in (parsed or address or "") else ""


def write(cursor, dialect, sensor, counted):
    """Add *counted* ({(kind, value, seconds): n}, values already text; n
    below 0 takes away, and a row counted down to 0 goes) to the tallies
    of *sensor*, and the values to their totals (the sensor's and all
    sensors').  One statement per row, in a fixed order, so that
    sensors sharing a database lock rows alike and do not deadlock."""
    buckets, totals = {}, {}
    for (kind, value, seconds), n in counted.items():
        if not n:
            continue
        value = (value or "")[:WIDTH]
        _add(buckets, (kind, bucket(kind, seconds), value), n, seconds)
        if BUCKETS[kind] == DAY:
            for who in (sensor, ""):
                _add(totals, (kind, who, value), n, seconds)
    for table, key, rows in (
            ("honeypot_tallies", ["kind", "hour", "value"], buckets),
            ("honeypot_tally_totals", ["kind", "sensor", "value"], totals)):
        if not rows:
            continue
        columns = key + ["n", "first_seen", "last_seen"]
        extra = [] if "sensor" in key else ["sensor"]
        statement = dialect.upsert(table, columns + extra, key + extra,
                                   {"n": "add", "first_seen": "min", "last_seen": "max"})
        cursor.executemany(statement, [
            (*key_, n, utc(first), utc(last), *([sensor] if extra else []))
            for key_, (n, first, last) in sorted(rows.items())])
        emptied = [(*key_, *([sensor] if extra else []))
                   for key_, (n, _, _) in sorted(rows.items()) if n < 0]
        if emptied:
            where = " AND ".join(f"{c} = ?" for c in key + extra)
            cursor.executemany(dialect.sql(f"DELETE FROM {table} WHERE {where} AND n <= 0"),
                               emptied)


def _add(rows, key, n, seconds):
    count, first, last = rows.get(key, (0, seconds, seconds))
    rows[key] = (count + n, min(first, seconds), max(last, seconds))


def of_session(record):
    """The tallies of a finished session record (the spool's JSON)."""
    when = record["start"]
    client = text(record["src_ip"], 45)
    attempts = record.get("auth") or []
    counted = Counter({("connections", "", when): 1, ("client", client, when): 1})
    if record.get("helo"):
        counted["sessions", "", when] += 1
        counted["helo", text(record["helo"]), when] += 1
    for attempt in attempts:
        at = attempt.get("time", when)
        username, password = text(attempt.get("username")), text(attempt.get("password"))
        counted["auth", "", at] += 1
        counted["client_auth", client, at] += 1
        if username is not None:
            counted["username", username, at] += 1
        if password is not None:
            counted["password", password, at] += 1
        counted["credential", credential(attempt.get("mechanism"), username, password),
                at] += 1
    return counted


def of_message(metadata, parsed, new_hashes):
    """The tallies of a stored message; *new_hashes*: the attachment
    hashes no message carried before it."""
    when = metadata.received
    fields = parsed.fields
    counted = Counter({("messages", "", when): 1,
                       ("client_messages", text(metadata.identity.src_ip, 45), when): 1})
    for kind, value in (("mail_from_domain", domain(text(metadata.mail_from))),
                        ("from_domain", domain(fields.get("from"))),
                        ("mailer", fields.get("x_mailer") or fields.get("user_agent")),
                        ("subject", subject_template(fields.get("subject")))):
        if value:
            counted[kind, value, when] += 1
    for address in {text(r).lower() for r in metadata.rcpts}:
        counted["recipient", address[:320], when] += 1
        if rcpt_domain := domain(address):
            counted["rcpt_domain", rcpt_domain, when] += 1
    for attachment in parsed.attachments:
        counted["attachments", "", when] += 1
        counted["attachment", attachment.sha256, when] += 1
        counted["attachment_type", (attachment.content_type or "").lower(), when] += 1
    counted["new_attachments", "", when] += len(new_hashes)
    for url in {u.url for u in parsed.urls}:
        counted["url", url, when] += 1
    for host in {u.host.lower() for u in parsed.urls if u.host}:
        counted["url_host", host, when] += 1
    return counted


def _epoch(value):
    """A stored UTC time (text or datetime) as epoch seconds."""
    text = value if isinstance(value, str) else value.strftime("%Y-%m-%d %H:%M:%S.%f")
    return datetime.fromisoformat(text[:26]).replace(tzinfo=timezone.utc).timestamp()


def _grouped_rows(cursor, dialect, statement, args):
    """{first column: [the other columns]} of the rows of *statement*."""
    cursor.execute(dialect.sql(statement), args)
    found = {}
    for row in cursor.fetchall():
        found.setdefault(row[0], []).append(row[1:])
    return found


def _stored_messages(cursor, dialect, message_id=None):
    """(message id, sensor, metadata, parsed) of every stored message (or
    of one), oldest first, read back as :func:`of_message` takes them."""
    only, args = (" AND message_id = ?", [message_id]) if message_id else ("", [])
    recipients = _grouped_rows(cursor, dialect, "SELECT message_id, address FROM"
                               " honeypot_email_recipients WHERE kind = 'envelope'" + only,
                               args)
    attachments = _grouped_rows(cursor, dialect, "SELECT message_id, sha256, content_type"
                                " FROM honeypot_attachments WHERE parent_id IS NULL" + only
                                + " ORDER BY message_id, position", args)
    urls = _grouped_rows(cursor, dialect, "SELECT message_id, url, host FROM"
                         " honeypot_email_urls WHERE 1 = 1" + only, args)
    cursor.execute(dialect.sql(
        "SELECT message_id, sensor, client_ip, received, mail_from, header_from,"
        " header_x_mailer, header_user_agent, header_subject FROM honeypot_emails"
        " WHERE 1 = 1" + only + " ORDER BY received, message_id"), args)
    for row in cursor.fetchall():
        message_id, sensor, client, received, mail_from = row[:5]
        parsed = SimpleNamespace(
            fields=dict(zip(("from", "x_mailer", "user_agent", "subject"), row[5:])),
            attachments=[SimpleNamespace(sha256=d, content_type=t)
                         for d, t in attachments.get(message_id, [])],
            urls=[SimpleNamespace(url=u, host=h) for u, h in urls.get(message_id, [])])
        metadata = Metadata(message_id, Identity(sensor=sensor, src_ip=client),
                            received=_epoch(received), mail_from=mail_from,
                            rcpts=tuple(a for a, in recipients.get(message_id, [])))
        yield message_id, sensor, metadata, parsed


def of_stored(cursor, dialect, message_id):
    """(sensor, tallies) of a stored message as it reads now, without
    the new attachments it made (those it counts for good)."""
    for _, sensor, metadata, parsed in _stored_messages(cursor, dialect, message_id):
        return sensor, of_message(metadata, parsed, set())
    return None, Counter()


def backfill(cursor, dialect):
    """Count what was stored before the tallies existed (run once, by the
    upgrade that makes them): every finished session and every message,
    as the storing side would have."""
    credentials = _grouped_rows(cursor, dialect, "SELECT session_id, time, mechanism,"
                                " username, password FROM honeypot_credentials"
                                " ORDER BY session_id, position", [])
    counted = Batches(cursor, dialect)
    cursor.execute("SELECT session_id, sensor, client_ip, started, helo"
                   " FROM honeypot_sessions WHERE ended IS NOT NULL")
    for session_id, sensor, client, started, helo in cursor.fetchall():
        record = {"src_ip": client, "start": _epoch(started), "helo": helo, "auth": [
            {"time": _epoch(t), "mechanism": m, "username": u, "password": p}
            for t, m, u, p in credentials.get(session_id, [])]}
        counted.add(sensor, of_session(record))
    seen = set()
    for _, sensor, metadata, parsed in _stored_messages(cursor, dialect):
        new = {a.sha256 for a in parsed.attachments} - seen
        seen |= new
        counted.add(sensor, of_message(metadata, parsed, new))
    counted.flush()


class Batches:
    """Tallies gathered per sensor and written every so many (and by
    :meth:`flush`): those of many messages, added up, in a few statements;
    a large store's, never all in memory."""

    def __init__(self, cursor, dialect, size=50_000):
        self.cursor, self.dialect, self.size = cursor, dialect, size
        self.pending, self.count = {}, 0

    def add(self, sensor, counted):
        self.pending.setdefault(sensor, Counter()).update(counted)
        self.count += len(counted)
        if self.count >= self.size:
            self.flush()

    def flush(self):
        for sensor in sorted(self.pending):
            write(self.cursor, self.dialect, sensor, self.pending[sensor])
        self.pending, self.count = {}, 0
