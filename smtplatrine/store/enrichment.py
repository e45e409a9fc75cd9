"""Enrichment state in the database, shared by every sensor that writes to
it: results cached per (provider, indicator), each provider's quota and
hold, and the durable queue of lookups that wait for quota.

Times of results are UTC text like the rest of the store; the quota, hold
and queue columns are epoch seconds, read and compared by the service only.
"""

import json
import uuid

from smtplatrine.store.records import as_json, text, utc

# The part of a message's body a Sighting carries.
BODY = 65536


class OverQuota(Exception):
    """The provider may not be asked now; ``at`` is when it may."""

    def __init__(self, at):
        super().__init__(at)
        self.at = at


def cached(cursor, dialect, provider, indicator, now):
    """True if a result for (provider, indicator) is still fresh at *now*."""
    cursor.execute(dialect.sql("SELECT 1 FROM honeypot_enrichment WHERE provider = ?"
                               " AND indicator = ? AND expires > ?"),
                   (provider, indicator, utc(now)))
    return cursor.fetchone() is not None


def save_result(cursor, dialect, provider, kind, indicator, sensor, data, now, ttl):
    """Keep *data* (None: nothing known) for *ttl* seconds from *now*."""
    columns = {"provider": provider, "indicator": indicator, "kind": kind,
               "sensor": sensor, "found": data is not None,
               "result": None if data is None else as_json(data),
               "looked_up": utc(now), "expires": utc(now + ttl)}
    cursor.execute(dialect.upsert(
        "honeypot_enrichment", list(columns), ["provider", "indicator"],
        {name: "new" for name in ("sensor", "found", "result", "looked_up", "expires")}),
        list(columns.values()))


def prepare_quota(cursor, dialect, provider):
    """Make the quota rows of *provider*, once, in a transaction of their
    own: :func:`take_quota` then only updates them, so that sensors taking
    quota at once wait for each other instead of deadlocking."""
    cursor.executemany(dialect.insert("honeypot_enrichment_quota",
                                      ["provider", "span", "span_index", "used"],
                                      ignore=True),
                       [(provider, "minute", 0, 0), (provider, "day", 0, 0)])


def take_quota(cursor, dialect, provider, per_minute, per_day, now):
    """Count one lookup of *provider* at *now*, or raise OverQuota (and
    count nothing) when a hold or a limit forbids it.  Its rows must have
    been made by :func:`prepare_quota`."""
    cursor.execute(dialect.sql("SELECT hold_until FROM honeypot_enrichment_hold"
                               " WHERE provider = ? AND hold_until > ?"), (provider, now))
    row = cursor.fetchone()
    if row is not None:
        raise OverQuota(float(row[0]))
    for span, seconds, limit in (("minute", 60, per_minute), ("day", 86400, per_day)):
        if not limit:
            continue
        index = int(now // seconds)
        # One conditional update: sensors sharing the database cannot both
        # take the last lookup.  A new period starts the count again.
        cursor.execute(dialect.sql(
            "UPDATE honeypot_enrichment_quota"
            " SET used = CASE WHEN span_index = ? THEN used + 1 ELSE 1 END,"
            " span_index = ?"
            " WHERE provider = ? AND span = ? AND (span_index <> ? OR used < ?)"),
            (index, index, provider, span, index, limit))
        if cursor.rowcount != 1:
            # Raising rolls back the count the other span may have taken.
            raise OverQuota(float((index + 1) * seconds))


def hold(cursor, dialect, provider, until, reason):
    """Ask *provider* nothing before *until* (a 429, a spent quota)."""
    cursor.execute(dialect.upsert(
        "honeypot_enrichment_hold", ["provider", "hold_until", "reason"], ["provider"],
        {"hold_until": "max", "reason": "new"}), (provider, until, reason[:255]))


def enqueue(cursor, dialect, provider, kind, indicator, sensor, message, attempts,
            not_before):
    """Keep the lookup for *not_before* (one per provider and indicator:
    queued again, it takes the new time)."""
    cursor.execute(dialect.upsert(
        "honeypot_enrichment_queue", ["provider", "indicator", "kind", "sensor",
                                      "message_id", "attempts", "not_before"],
        ["provider", "indicator"],
        {"sensor": "new", "message_id": "new", "attempts": "new", "not_before": "new"}),
        (provider, indicator, kind, sensor, message, attempts, not_before))


def claim_due(cursor, dialect, providers, now, lease, limit):
    """Lease up to *limit* lookups of *providers* due at *now* until
    *lease*: [(provider, kind, indicator, message, attempts)].  A leased
    lookup is due again at *lease* unless :func:`release` (or
    :func:`enqueue`) came first, so that a sensor that dies mid-lookup
    loses nothing; two sensors never lease the same one."""
    if not providers:
        return []
    marks = ", ".join("?" * len(providers))
    cursor.execute(dialect.sql(
        "SELECT provider, indicator, kind, message_id, attempts, not_before"
        f" FROM honeypot_enrichment_queue WHERE provider IN ({marks})"
        f" AND not_before <= ? ORDER BY not_before, provider, indicator"
        f" LIMIT {int(limit)}"),
        (*providers, now))
    claimed = []
    for provider, indicator, kind, message, attempts, not_before in cursor.fetchall():
        cursor.execute(dialect.sql(
            "UPDATE honeypot_enrichment_queue SET not_before = ? WHERE provider = ?"
            " AND indicator = ? AND not_before = ?"), (lease, provider, indicator, not_before))
        if cursor.rowcount == 1:
            claimed.append((provider, kind, indicator, message, attempts))
    return claimed


def release(cursor, dialect, provider, indicator, lease):
    """The leased lookup has ended: off the queue, unless it was queued
    again meanwhile."""
    cursor.execute(dialect.sql("DELETE FROM honeypot_enrichment_queue WHERE provider = ?"
                               " AND indicator = ? AND not_before = ?"),
                   (provider, indicator, lease))


def results(cursor, dialect, indicators):
    """The stored results of *indicators* (values), oldest provider first:
    [{provider, kind, indicator, found, result, looked_up}]."""
    if not indicators:
        return []
    marks = ", ".join("?" * len(indicators))
    cursor.execute(dialect.sql(
        "SELECT provider, kind, indicator, found, result, looked_up"
        f" FROM honeypot_enrichment WHERE indicator IN ({marks})"
        " ORDER BY kind, indicator, provider"), list(indicators))
    return [{"provider": provider, "kind": kind, "indicator": indicator,
             "found": bool(found), "result": json.loads(result) if result else None,
             "looked_up": looked_up}
            for provider, kind, indicator, found, result, looked_up in cursor.fetchall()]


def usage(cursor, dialect, now):
    """Lookups used at *now* in the current minute and day, by (provider,
    span), and the number of lookups waiting in the queue."""
    cursor.execute(dialect.sql("SELECT provider, span, span_index, used"
                               " FROM honeypot_enrichment_quota"))
    used = {}
    for provider, span, index, count in cursor.fetchall():
        seconds = 60 if span == "minute" else 86400
        used[(provider, span)] = count if index == int(now // seconds) else 0
    cursor.execute(dialect.sql("SELECT COUNT(*) FROM honeypot_enrichment_queue"))
    return used, cursor.fetchone()[0]


def stored(cursor, dialect, provider, indicator):
    """The stored result of *provider* for *indicator* and the files it
    found inside: ``(data or None, (Member, ...))``."""
    from smtplatrine.interfaces import Member
    cursor.execute(dialect.sql("SELECT result FROM honeypot_enrichment"
                               " WHERE provider = ? AND indicator = ?"),
                   (provider, indicator))
    row = cursor.fetchone()
    data = json.loads(row[0]) if row and row[0] else None
    cursor.execute(dialect.sql(
        "SELECT name, size, member_sha256, md5, sha1, parent_idx, position, flags"
        " FROM honeypot_file_members WHERE provider = ? AND sha256 = ? ORDER BY idx"),
        (provider, indicator))
    files = tuple(Member(name, size, sha256, md5, sha1, parent, position,
                         tuple(json.loads(flags)))
                  for name, size, sha256, md5, sha1, parent, position, flags
                  in cursor.fetchall())
    return data, files


def save_members(cursor, dialect, provider, sha256, files):
    """Keep the files *provider* found inside the file *sha256*, in
    place of those it found before."""
    cursor.execute(dialect.sql("DELETE FROM honeypot_file_members"
                               " WHERE provider = ? AND sha256 = ?"), (provider, sha256))
    if files:
        cursor.executemany(dialect.insert(
            "honeypot_file_members",
            ["provider", "sha256", "idx", "parent_idx", "position", "name", "size",
             "member_sha256", "md5", "sha1", "flags"]),
            [(provider, sha256, i, f.parent, f.position, text(f.name), f.size, f.sha256,
              f.md5, f.sha1, as_json(list(f.flags))) for i, f in enumerate(files)])


def member_id(parent_id, provider, index):
    """The attachment id of the *index*-th file *provider* found inside
    the attachment *parent_id*: the same each time."""
    return str(uuid.uuid5(uuid.UUID(parent_id), f"{provider}/{index}"))


def add_members(cursor, dialect, sighting, provider, files, sensor):
    """Make the extracted *files* (found by *provider* in the attachment
    of *sighting*) attachments of its message, linked to their parents;
    [(Sighting, position, row)] for each, row the new row's fields (None
    where it was there already)."""
    from smtplatrine.files import relative_path
    from smtplatrine.interfaces import Sighting
    message = sighting.message
    # One sensor at a time gives the message's attachments their positions.
    cursor.execute(dialect.sql("SELECT 1 FROM honeypot_emails WHERE message_id = ?"
                               + dialect.for_update), (message,))
    ids = [member_id(sighting.attachment_id, provider, i) for i in range(len(files))]
    cursor.execute(dialect.sql("SELECT attachment_id, position FROM honeypot_attachments"
                               " WHERE message_id = ?"), (message,))
    positions = dict(cursor.fetchall())
    following = max(positions.values(), default=-1) + 1
    levels, found = [], []
    for i, f in enumerate(files):
        # 1 for a file right inside the looked-up one, 2 inside that...
        levels.append(1 if f.parent is None else levels[f.parent] + 1)
        depth = sighting.depth + levels[i]
        if f.sha256 is None:
            continue
        parent = sighting.attachment_id if f.parent is None else ids[f.parent]
        row = None
        if ids[i] not in positions:
            positions[ids[i]], following = following, following + 1
            row = {"attachment_id": ids[i], "parent_id": parent, "sha256": f.sha256,
                   "size": f.size, "filename": f.name, "content_type": "",
                   "stored_path": relative_path(f.sha256)}
            cursor.execute(dialect.insert(
                "honeypot_attachments",
                ["attachment_id", "message_id", "position", "sensor", "filename",
                 "content_type", "disposition", "size", "md5", "sha1", "sha256",
                 "stored_path", "parent_id"]),
                (ids[i], message, positions[ids[i]], sensor, f.name, "", "member",
                 f.size, f.md5 or "", f.sha1 or "", f.sha256, row["stored_path"], parent))
        found.append((Sighting("sha256", f.sha256, message, "member",
                               attachment_id=ids[i], parent_id=parent, filename=f.name,
                               depth=depth, body=sighting.body),
                      positions[ids[i]], row))
    return found


def sighting(cursor, dialect, message, kind, indicator):
    """The Sighting of a queued lookup, read back from the stored message."""
    from smtplatrine.interfaces import Sighting
    if kind != "sha256" or message is None:
        return Sighting(kind, indicator, message, "queue")
    cursor.execute(dialect.sql(
        "SELECT attachment_id, parent_id, filename, content_type"
        " FROM honeypot_attachments WHERE message_id = ? AND sha256 = ?"
        " ORDER BY position LIMIT 1"), (message, indicator))
    row = cursor.fetchone()
    if row is None:
        return Sighting(kind, indicator, message, "queue")
    attachment, parent, filename, content_type = row
    depth, above = 0, parent
    while above is not None and depth < 64:
        depth += 1
        cursor.execute(dialect.sql("SELECT parent_id FROM honeypot_attachments"
                                   " WHERE attachment_id = ?"), (above,))
        above = (cursor.fetchone() or (None,))[0]
    cursor.execute(dialect.sql(
        "SELECT SUBSTR(body_text, 1, ?), SUBSTR(body_html, 1, ?) FROM honeypot_emails"
        " WHERE message_id = ?"), (BODY, BODY, message))
    text_body, html_body = cursor.fetchone() or ("", "")
    return Sighting(kind, indicator, message, "member" if parent else "attachment",
                    attachment_id=attachment, parent_id=parent, filename=filename,
                    content_type=content_type or None, depth=depth,
                    body=text_body or html_body or "")
