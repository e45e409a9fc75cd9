"""The read side of the overview and the pivot pages: sums of the tallies
(store/tallies.py) over a :class:`~smtplatrine.store.queries.Scope`, and
for the rows of one page what the stored rows and the enrichment add.
Plain ``f(cursor, dialect, ...)`` functions, as in store/queries.py.

A range is read in whole buckets: the counters by the hour, the values
by the day (a range from 10:30 counts the values of that whole day).
"""

import ipaddress
import json
from datetime import datetime, timezone

from smtplatrine.store import queries, tallies
from smtplatrine.store.queries import Page, iso
from smtplatrine.store.records import address_parts

# The counters of the overview and their kinds.
COUNTERS = ("connections", "sessions", "messages", "auth", "attachments", "new_attachments")
# The top lists of the overview: name -> tally kind.
TOPS = {"helo": "helo", "client": "client", "mail_from_domain": "mail_from_domain",
        "from_domain": "from_domain", "rcpt_domain": "rcpt_domain", "mailer": "mailer",
        "attachment_type": "attachment_type", "username": "username",
        "password": "password"}
# What a campaign is grouped by: tally kind -> what the page calls it.
CAMPAIGN_KINDS = {"attachment": "same attachment", "url_host": "same URL host",
                  "subject": "same subject", "mail_from_domain": "same sender domain"}


def _hours(text):
    """Stored UTC text as epoch hours (fractional).  (No strptime: it
    imports a module at its first call, which may be out of reach after
    the privilege drop.)"""
    when = datetime.fromisoformat(text[:19]).replace(tzinfo=timezone.utc)
    return when.timestamp() / tallies.HOUR


def _bounds(scope, size):
    """([clause], [argument]) keeping the tally rows of buckets of *size*
    seconds that overlap *scope*."""
    step = size // tallies.HOUR
    clauses, args = [], []
    if scope.since is not None:
        clauses.append("hour >= ?")
        args.append(int(_hours(scope.since) // step * step))
    if scope.until is not None:
        clauses.append("hour < ?")
        args.append(int(-(-_hours(scope.until) // 1)))
    if scope.sensor is not None:
        clauses.append("sensor = ?")
        args.append(scope.sensor)
    return clauses, args


def _kinds(kinds, scope):
    """(WHERE text, arguments) for the tally rows of *kinds* in *scope*
    (kinds of one bucket size)."""
    clauses, args = _bounds(scope, tallies.BUCKETS[kinds[0]])
    marks = ", ".join("?" * len(kinds))
    return " AND ".join([f"kind IN ({marks})"] + clauses), list(kinds) + args


def counters(cursor, dialect, scope):
    """{counter: n} over *scope*, with ``clients`` (distinct client
    addresses) and ``credentials`` (distinct credentials tried)."""
    where, args = _kinds(COUNTERS, scope)
    cursor.execute(dialect.sql(f"SELECT kind, SUM(n) FROM honeypot_tallies WHERE {where}"
                               " GROUP BY kind"), args)
    found = {kind: 0 for kind in COUNTERS}
    found.update({kind: int(n) for kind, n in cursor.fetchall()})
    for name, kinds in (("clients", ("client", "client_messages")),
                        ("credentials", ("credential",))):
        where, args = _kinds(kinds, scope)
        cursor.execute(dialect.sql("SELECT COUNT(DISTINCT value) FROM honeypot_tallies"
                                   f" WHERE {where}"), args)
        found[name] = cursor.fetchone()[0]
    return found


def activity(cursor, dialect, scope, kinds=("connections", "messages", "auth")):
    """The counters *kinds* per hour of *scope*: [[hour (ISO), {kind: n}]],
    hours without any left out."""
    where, args = _kinds(kinds, scope)
    cursor.execute(dialect.sql(f"SELECT hour, kind, SUM(n) FROM honeypot_tallies WHERE {where}"
                               " GROUP BY hour, kind ORDER BY hour"), args)
    found = {}
    for hour, kind, n in cursor.fetchall():
        found.setdefault(hour, dict.fromkeys(kinds, 0))[kind] = int(n)
    return [[_iso_hour(hour), counts] for hour, counts in found.items()]


def _iso_hour(hour):
    return datetime.fromtimestamp(hour * tallies.HOUR, timezone.utc).strftime(
        "%Y-%m-%dT%H:00:00Z")


def top(cursor, dialect, scope, kind, limit=10):
    """The *limit* values most often seen as *kind* in *scope*:
    [{"value", "n"}], most first."""
    where, args = _kinds((kind,), scope)
    cursor.execute(dialect.sql(
        f"SELECT value, SUM(n) AS total FROM honeypot_tallies WHERE {where}"
        f" GROUP BY value ORDER BY total DESC, value LIMIT {int(limit)}"), args)
    return [{"value": value, "n": int(n)} for value, n in cursor.fetchall()]


def _top_joined(cursor, dialect, scope, kind, join, column, limit, label=None):
    """Top of what *column* of the table *join* (aliased j, joined on the
    tallied value v.value) says of the values of *kind*; *label*: a
    column to show beside it (any of the group's)."""
    where, args = _kinds((kind,), scope)
    shown = f", MAX({label})" if label else ""
    cursor.execute(dialect.sql(
        f"SELECT {column} AS found, SUM(v.total) AS total{shown} FROM"
        f" (SELECT value, SUM(n) AS total FROM honeypot_tallies WHERE {where}"
        f" GROUP BY value) v JOIN {join} WHERE {column} IS NOT NULL GROUP BY {column}"
        f" ORDER BY total DESC, found LIMIT {int(limit)}"),
        args)
    return [{"value": str(row[0]), "n": int(row[1]), **({"label": row[2]} if label else {})}
            for row in cursor.fetchall()]


def top_countries(cursor, dialect, scope, limit=10):
    """Countries (GeoIP) of the clients' sessions: [{"value": code, "n"}]."""
    return _top_joined(cursor, dialect, scope, "client",
                       "honeypot_enrichment j ON j.provider = 'geoip_city'"
                       " AND j.indicator = v.value",
                       dialect.json_value("j.result", "country_code"), limit)


def top_asns(cursor, dialect, scope, limit=10):
    """Autonomous systems of the clients' sessions: [{"value": number,
    "label": organisation, "n"}]."""
    return _top_joined(cursor, dialect, scope, "client",
                       "honeypot_enrichment j ON j.provider = 'geoip_asn'"
                       " AND j.indicator = v.value",
                       dialect.json_value("j.result", "asn"), limit,
                       dialect.json_value("j.result", "organization"))


def top_detected_types(cursor, dialect, scope, limit=10):
    """What the attachments' content is (libmagic), by times seen."""
    return _top_joined(cursor, dialect, scope, "attachment",
                       "honeypot_files j ON j.sha256 = v.value", "j.mime", limit)


def overview(cursor, dialect, scope, passwords):
    """Everything the overview shows for *scope*; the top passwords only
    if *passwords*."""
    found = {"counters": counters(cursor, dialect, scope),
             "activity": activity(cursor, dialect, scope),
             "top": {name: top(cursor, dialect, scope, kind) for name, kind in TOPS.items()
                     if passwords or name != "password"}}
    found["top"]["country"] = top_countries(cursor, dialect, scope)
    found["top"]["asn"] = top_asns(cursor, dialect, scope)
    found["top"]["detected_type"] = top_detected_types(cursor, dialect, scope)
    return found


def listing(cursor, dialect, scope, kinds, page=1, size=50):
    """The values of *kinds* (one bucket size) in *scope*, by the count of
    the first kind, most first: a Page of {"value", kind: n...,
    "first_seen", "last_seen"}."""
    where, args = _kinds(kinds, scope)
    sums = ", ".join(f"SUM(CASE WHEN kind = '{kind}' THEN n ELSE 0 END) AS {kind}"
                     for kind in kinds)
    number = max(1, page)
    cursor.execute(dialect.sql(
        f"SELECT value, {sums}, MIN(first_seen) AS first_seen, MAX(last_seen) AS last_seen"
        f" FROM honeypot_tallies WHERE {where} GROUP BY value"
        f" ORDER BY {kinds[0]} DESC, value LIMIT {int(size) + 1}"
        f" OFFSET {(number - 1) * int(size)}"), args)
    names = [d[0] for d in cursor.description]
    rows = []
    for row in cursor.fetchall():
        row = dict(zip(names, row))
        row.update({kind: int(row[kind]) for kind in kinds})
        row["first_seen"], row["last_seen"] = iso(row["first_seen"]), iso(row["last_seen"])
        rows.append(row)
    cursor.execute(dialect.sql(f"SELECT COUNT(*) FROM (SELECT DISTINCT value FROM"
                               f" honeypot_tallies WHERE {where} LIMIT"
                               f" {queries.COUNT_LIMIT + 1}) counted"), args)
    return Page(rows[:size], number, size, len(rows) > size, cursor.fetchone()[0])


def _in(values):
    return ", ".join("?" * len(values))


def _enrichment(cursor, dialect, indicators, providers):
    """{indicator: {provider: result}} of what *providers* found."""
    if not indicators:
        return {}
    cursor.execute(dialect.sql(
        f"SELECT indicator, provider, result FROM honeypot_enrichment WHERE indicator IN"
        f" ({_in(indicators)}) AND provider IN ({_in(providers)}) AND found <> 0"),
        list(indicators) + list(providers))
    found = {}
    for indicator, provider, result in cursor.fetchall():
        found.setdefault(indicator, {})[provider] = json.loads(result) if result else {}
    return found


def blocked(networks, address):
    """The entry of *networks* (texts) that holds *address*, or None."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    for network in networks:
        try:
            if ip in ipaddress.ip_network(network, strict=False):
                return network
        except ValueError:
            continue
    return None


def _networks(cursor, dialect):
    cursor.execute("SELECT network FROM acl_blacklist_ip WHERE expires IS NULL")
    return [row[0] for row in cursor.fetchall()]


def _describe_client(row, enrichment, networks):
    """Add what is known of the client address row["address"]."""
    found = enrichment.get(row["address"], {})
    city, asn = found.get("geoip_city", {}), found.get("geoip_asn", {})
    row.update(
        reverse_dns=(found.get("rdns", {}).get("ptr") or [None])[0],
        asn=asn.get("asn"), as_name=asn.get("organization"),
        country=city.get("country_code"), city=city.get("city"),
        abuseipdb=found.get("abuseipdb", {}).get("confidence_score"),
        blocked=blocked(networks, row["address"]))
    return row


_CLIENT_PROVIDERS = ("geoip_city", "geoip_asn", "rdns", "abuseipdb")


def clients(cursor, dialect, scope, page=1, size=50):
    """The client addresses of *scope*, by sessions: a Page of {address,
    reverse_dns, asn, as_name, country, city, first_seen, last_seen,
    sessions, messages, auth, abuseipdb, blocked}."""
    found = listing(cursor, dialect, scope, ("client", "client_messages", "client_auth"),
                    page, size)
    enrichment = _enrichment(cursor, dialect, [r["value"] for r in found.rows],
                             _CLIENT_PROVIDERS)
    networks = _networks(cursor, dialect)
    for row in found.rows:
        row["address"] = row.pop("value")
        row["sessions"], row["messages"] = row.pop("client"), row.pop("client_messages")
        row["auth"] = row.pop("client_auth")
        _describe_client(row, enrichment, networks)
    return found


def client(cursor, dialect, address):
    """What is known of one client address over all time (None if it
    never connected)."""
    cursor.execute(dialect.sql(
        "SELECT COUNT(*), MIN(started), MAX(started), SUM(auth_attempts)"
        " FROM honeypot_sessions WHERE client_ip = ?"), (address,))
    sessions, first, last, auth = cursor.fetchone()
    if not sessions:
        return None
    cursor.execute(dialect.sql("SELECT COUNT(*) FROM honeypot_emails WHERE client_ip = ?"),
                   (address,))
    row = {"address": address, "sessions": sessions, "messages": cursor.fetchone()[0],
           "auth": int(auth or 0), "first_seen": iso(first), "last_seen": iso(last)}
    return _describe_client(row, _enrichment(cursor, dialect, [address], _CLIENT_PROVIDERS),
                            _networks(cursor, dialect))


def credentials(cursor, dialect, scope, page=1, size=50, passwords=True):
    """The credentials tried in *scope*, most tried first: a Page of
    {mechanism, username, password (only with *passwords*), times,
    clients, first_seen, last_seen}."""
    found = listing(cursor, dialect, scope, ("credential",), page, size)
    rows = []
    for row in found.rows:
        mechanism, username, password = json.loads(row.pop("value"))
        rows.append(dict(row, mechanism=mechanism, username=username, password=password,
                         times=row.pop("credential")))
    usernames = sorted({r["username"] for r in rows})
    seen = {}
    if usernames:
        clauses, args = scope.where("time", "sensor")
        cursor.execute(dialect.sql(
            "SELECT mechanism, COALESCE(username, ''), COALESCE(password, ''),"
            " COUNT(DISTINCT client_ip) FROM honeypot_credentials WHERE"
            f" COALESCE(username, '') IN ({_in(usernames)})"
            + "".join(" AND " + c for c in clauses)
            + " GROUP BY mechanism, COALESCE(username, ''), COALESCE(password, '')"),
            usernames + args)
        for mechanism, username, password, count in cursor.fetchall():
            key = (mechanism, username[:100], password[:100])
            seen[key] = seen.get(key, 0) + count
    for row in rows:
        row["clients"] = seen.get((row["mechanism"], row["username"], row["password"]), 0)
        if not passwords:
            row.pop("password")
    return Page(rows, found.number, found.size, found.more, found.total)


def exchanges(cursor, dialect, scope, mechanism, username, password, limit=20):
    """The AUTH attempts behind one credential, newest first: [{time,
    client_ip, session_id, challenge, response, transcript}], transcript
    the lines of its session's AUTH exchanges as they were sent."""
    clauses, args = scope.where("c.time", "c.sensor")
    cursor.execute(dialect.sql(
        "SELECT c.time, c.client_ip, c.session_id, c.challenge, c.response, s.transcript"
        " FROM honeypot_credentials c JOIN honeypot_sessions s"
        " ON s.session_id = c.session_id WHERE c.mechanism = ?"
        " AND COALESCE(c.username, '') = ? AND COALESCE(c.password, '') = ?"
        + "".join(" AND " + c for c in clauses) + f" ORDER BY c.time DESC LIMIT {int(limit)}"),
        [mechanism, username, password] + args)
    found = queries._rows(cursor)
    for row in found:
        row["transcript"] = _auth_lines(row["transcript"] or [])
    return found


def _auth_lines(transcript):
    """The steps of a transcript that belong to AUTH: the command, the
    server's 334 challenges, the client's answers and the final reply."""
    lines, within = [], False
    for step in transcript:
        try:
            _, direction, text = step
        except (TypeError, ValueError):
            continue
        text = str(text)
        if direction == "C" and text[:5].upper() == "AUTH ":
            within = True
        if within:
            lines.append([direction, text.removesuffix("\r\n")])
            if direction == "S" and not text.startswith("334"):
                within = False
    return lines


def wordlist(cursor, dialect, scope, kind):
    """Every username, password or credential pair (*kind*: username,
    password, pair) tried in *scope*, most tried first: [text]."""
    tally = {"username": "username", "password": "password", "pair": "credential"}[kind]
    where, args = _kinds((tally,), scope)
    cursor.execute(dialect.sql(f"SELECT value, SUM(n) AS total FROM honeypot_tallies"
                               f" WHERE {where} GROUP BY value ORDER BY total DESC, value"),
                   args)
    values = [row[0] for row in cursor.fetchall()]
    if kind != "pair":
        return values
    return list(dict.fromkeys(f"{u}:{p}" for _, u, p in map(json.loads, values)))


def recipients(cursor, dialect, scope, page=1, size=50):
    """The envelope recipients of *scope*, most written to first: a Page
    of {address, user, tag, domain, times, first_seen, last_seen}."""
    found = listing(cursor, dialect, scope, ("recipient",), page, size)
    for row in found.rows:
        row["address"] = row.pop("value")
        row["times"] = row.pop("recipient")
        row["user"], row["tag"], row["domain"] = address_parts(row["address"])
    return found


def attachments(cursor, dialect, scope, page=1, size=50):
    """The attachments of *scope*, one row per SHA-256, most seen first: a
    Page of {sha256, times, first_seen, last_seen, names, content_types,
    size, detected, attachment_id (one to download), verdicts}."""
    found = listing(cursor, dialect, scope, ("attachment",), page, size)
    digests = [row["value"] for row in found.rows]
    details = {d: {"names": [], "content_types": [], "size": None, "attachment_id": None}
               for d in digests}
    if digests:
        cursor.execute(dialect.sql(
            "SELECT sha256, filename, content_type, size, attachment_id FROM"
            f" honeypot_attachments WHERE sha256 IN ({_in(digests)})"
            " ORDER BY sha256, attachment_id"), digests)
        for digest, name, kind, length, attachment_id in cursor.fetchall():
            entry = details[digest]
            if name and name not in entry["names"] and len(entry["names"]) < 10:
                entry["names"].append(name)
            if kind not in entry["content_types"] and len(entry["content_types"]) < 5:
                entry["content_types"].append(kind)
            entry["size"] = length
            entry["attachment_id"] = entry["attachment_id"] or attachment_id
        cursor.execute(dialect.sql(f"SELECT sha256, mime FROM honeypot_files"
                                   f" WHERE sha256 IN ({_in(digests)})"), digests)
        mimes = dict(cursor.fetchall())
    else:
        mimes = {}
    verdicts = _enrichment(cursor, dialect, digests, ("virustotal", "otx"))
    for row in found.rows:
        digest = row["sha256"] = row.pop("value")
        row["times"] = row.pop("attachment")
        row.update(details[digest], detected=mimes.get(digest), verdicts=verdicts.get(digest, {}))
    return found


def urls(cursor, dialect, scope, page=1, size=50):
    """The URLs of the bodies in *scope*, by the messages they came in: a
    Page of {url, messages, first_seen, last_seen}."""
    found = listing(cursor, dialect, scope, ("url",), page, size)
    for row in found.rows:
        row["url"], row["messages"] = row.pop("value"), row.pop("url")
    return found


def hosts(cursor, dialect, scope, limit=50):
    """The hosts of those URLs, by the messages they came in."""
    return [{"host": r["value"], "messages": r["n"]}
            for r in top(cursor, dialect, scope, "url_host", limit)]


def campaigns(cursor, dialect, scope, limit=100):
    """Messages of *scope* grouped by what they share (CAMPAIGN_KINDS),
    groups of two or more, largest first: [{by, value, messages,
    first_seen, last_seen}]."""
    found = []
    for kind in CAMPAIGN_KINDS:
        where, args = _kinds((kind,), scope)
        cursor.execute(dialect.sql(
            f"SELECT value, SUM(n) AS total, MIN(first_seen), MAX(last_seen)"
            f" FROM honeypot_tallies WHERE {where} GROUP BY value HAVING SUM(n) > 1"
            f" ORDER BY total DESC, value LIMIT {int(limit)}"), args)
        found += [{"by": kind, "value": value, "messages": int(n), "first_seen": iso(first),
                   "last_seen": iso(last)} for value, n, first, last in cursor.fetchall()]
    found.sort(key=lambda row: (-row["messages"], row["by"], row["value"]))
    return found[:limit]
