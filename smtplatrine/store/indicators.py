"""The indicators of a set of stored messages, counted: client addresses,
MAIL FROM addresses and their domains, URLs and attachment hashes, each
with when it was first and last seen and in how many messages.  What
``smtplatrine export --format stix|misp`` and the dashboard's exports
share (see smtplatrine.intel).

Read in pages in the order of the value (a page starts after the last
value of the one before), so that an export of millions of messages
holds one page at a time.
"""

from smtplatrine.store.queries import iso

# Each kind: (value column, tables joined to honeypot_emails m, condition).
_KINDS = {
    "ip": ("m.client_ip", "", ""),
    "email": ("m.mail_from", "", "m.mail_from <> ''"),
    "domain": ("i.indicator", " JOIN honeypot_email_indicators i"
                              " ON i.message_id = m.message_id",
               "i.kind = 'domain' AND i.source = 'sender'"),
    "url": ("u.url", " JOIN honeypot_email_urls u ON u.message_id = m.message_id", ""),
    "sha256": ("a.sha256", " JOIN honeypot_attachments a ON a.message_id = m.message_id",
               ""),
}
# The kinds in the order an export lists them; url only for who may see URLs.
KINDS = tuple(_KINDS)


def page(cursor, dialect, kind, scope, search=None, after=None, size=500):
    """The indicators of *kind* of the messages in *scope* matching
    *search*, whose value sorts after *after*: at most *size* dicts of
    kind, value, first_seen, last_seen, count (messages) and, for a
    sha256, the file names it was sent under (a few)."""
    column, joins, condition = _KINDS[kind]
    clauses, args = scope.where("m.received", "m.sensor")
    if search is not None:
        more, more_args = search.where(dialect)
        clauses += more
        args += more_args
    if condition:
        clauses.append(condition)
    if after is not None:
        clauses.append(f"{column} > ?")
        args.append(after)
    names = (", MIN(a.filename), MAX(a.filename), MIN(a.content_type)"
             if kind == "sha256" else "")
    cursor.execute(dialect.sql(
        f"SELECT {column}, MIN(m.received), MAX(m.received),"
        f" COUNT(DISTINCT m.message_id){names}"
        f" FROM honeypot_emails m{joins} WHERE {' AND '.join(clauses) or '1 = 1'}"
        f" GROUP BY {column} ORDER BY {column} LIMIT {int(size)}"), args)
    found = []
    for row in cursor.fetchall():
        record = {"kind": kind, "value": row[0], "first_seen": iso(row[1]),
                  "last_seen": iso(row[2]), "count": row[3]}
        if kind == "sha256":
            record["names"] = sorted({n for n in row[4:6] if n})
            record["content_type"] = row[6]
        found.append(record)
    return found
