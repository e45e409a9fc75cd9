"""The block list in the database: ``acl_blacklist_ip`` (addresses and
networks, and the smart bans, which expire) and ``acl_blacklist_geo``
(country codes).  Each function is one interaction: ``f(cursor, dialect, ...)``.
"""

from smtplatrine.store.records import utc

_IP, _GEO = "acl_blacklist_ip", "acl_blacklist_geo"


def add(cursor, dialect, networks, countries, now, reason=None):
    """Put *networks* (texts) and *countries* on the list, for good: an
    entry already there keeps its counters and loses any expiry.  The
    entries that were new."""
    added = []
    for table, key, entries in ((_IP, "network", networks), (_GEO, "country", countries)):
        for entry in entries:
            cursor.execute(dialect.sql(f"SELECT 1 FROM {table} WHERE {key} = ?"), (entry,))
            if cursor.fetchone():
                if table == _IP:
                    cursor.execute(dialect.sql(
                        f"UPDATE {_IP} SET expires = NULL WHERE network = ?"), (entry,))
                continue
            cursor.execute(dialect.insert(table, [key, "added", "reason"]),
                           (entry, utc(now), reason))
            added.append(entry)
    return added


def remove(cursor, dialect, networks, countries):
    """Take *networks* and *countries* off the list; the entries that were there."""
    removed = []
    for table, key, entries in ((_IP, "network", networks), (_GEO, "country", countries)):
        for entry in entries:
            cursor.execute(dialect.sql(f"DELETE FROM {table} WHERE {key} = ?"), (entry,))
            if cursor.rowcount:
                removed.append(entry)
    return removed


def entries(cursor, dialect):
    """Every entry, bans whose time is over included, as dicts."""
    cursor.execute(f"SELECT network, added, last_seen, tries, expires, reason, sensor"
                   f" FROM {_IP} ORDER BY network")
    rows = [dict(kind="ip", entry=r[0], added=r[1], last_seen=r[2], tries=r[3],
                 expires=r[4], reason=r[5], sensor=r[6]) for r in cursor.fetchall()]
    cursor.execute(f"SELECT country, added, last_seen, tries, reason FROM {_GEO}"
                   f" ORDER BY country")
    rows += [dict(kind="country", entry=r[0], added=r[1], last_seen=r[2], tries=r[3],
                  expires=None, reason=r[4], sensor=None) for r in cursor.fetchall()]
    return rows


def sync(cursor, dialect, hits, bans, sensor, now):
    """Write *hits* ({(kind, entry): [tries, last seen]}) and *bans*
    (acl.Ban), then read the list in force: (networks, countries)."""
    for (kind, entry), (tries, last) in sorted(hits.items()):
        table, key = (_IP, "network") if kind == "ip" else (_GEO, "country")
        cursor.execute(dialect.sql(
            f"UPDATE {table} SET tries = tries + ?, last_seen = ? WHERE {key} = ?"),
            (tries, utc(last), entry))
    for ban in bans:
        cursor.execute(
            dialect.upsert(_IP, ["network", "added", "expires", "reason", "sensor"],
                           ["network"], {"expires": "new", "reason": "new",
                                         "sensor": "new"}),
            (ban.network, utc(ban.time), utc(ban.time + ban.seconds), ban.reason, sensor))
    cursor.execute(dialect.sql(f"SELECT network FROM {_IP}"
                               f" WHERE expires IS NULL OR expires > ?"), (utc(now),))
    networks = [row[0] for row in cursor.fetchall()]
    cursor.execute(f"SELECT country FROM {_GEO}")
    return networks, [row[0] for row in cursor.fetchall()]
