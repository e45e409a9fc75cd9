"""The read side of the overview and the pivot pages: sums of the tallies
(store/tallies.py) over a :class:`~smtplatrine.store.queries.Scope`, and
for the rows of one page what the stored rows and the enrichment add.
Plain ``f(cursor, dialect, ...)`` functions, as in store/queries.py.

Without a time range, or with one that holds everything stored, the
values are read from their totals; a narrower range is read in whole
buckets: the counters by the hour, the values by the day (a range from
10:30 counts the values of that whole day).
"""

import heapq
import ipaddress
import json
from datetime import datetime, timezone

from smtplatrine.store import queries, tallies
from smtplatrine.store.queries import Page, iso
from smtplatrine.store.records import address_parts

# The counters of the overview and their kinds.
COUNTERS = ("connections", "sessions", "messages", "auth", "attachments", "new_attachments")
# The top lists of the overview: name -> tally kind.
TOPS = {"helo": "helo", "mail_from_domain": "mail_from_domain",
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


def _whole(cursor, dialect, scope):
    """Whether *scope* holds all that is stored (no range, or one from
    before the first hour counted to after the last), so that the totals
    answer for it."""
    if scope.since is None and scope.until is None:
        return True
    hours = []
    for kind in ("connections", "messages"):
        for extreme in ("MIN", "MAX"):
            cursor.execute(dialect.sql(f"SELECT {extreme}(hour) FROM honeypot_tallies"
                                       " WHERE kind = ?"), (kind,))
            hours.append(cursor.fetchone()[0])
    hours = [h for h in hours if h is not None]
    if not hours:
        return True
    return ((scope.since is None or _hours(scope.since) <= min(hours))
            and (scope.until is None or _hours(scope.until) >= max(hours) + 1))


def _grouped(whole, scope, kind, values=None):
    """(SELECT, arguments) of the values of *kind* in *scope* as rows
    (value, n, first_seen, last_seen): from the totals if *whole*, else
    summed from the day buckets; only *values* if given."""
    only = f" AND value IN ({_in(values)})" if values else ""
    if whole:
        return (f"SELECT value, n, first_seen, last_seen FROM honeypot_tally_totals"
                f" WHERE kind = ? AND sensor = ?{only}",
                [kind, scope.sensor or ""] + list(values or []))
    where, args = _kinds((kind,), scope)
    return (f"SELECT value, SUM(n) AS n, MIN(first_seen) AS first_seen,"
            f" MAX(last_seen) AS last_seen FROM honeypot_tallies WHERE {where}{only}"
            f" GROUP BY value", args + list(values or []))


def counters(cursor, dialect, scope, whole=None, sessions=None):
    """{counter: n} over *scope*, with ``clients`` (distinct client
    addresses) and ``credentials`` (distinct credentials tried);
    *sessions*: :func:`client_sessions` of *scope*, if already read."""
    if whole is None:
        whole = _whole(cursor, dialect, scope)
    where, args = _kinds(COUNTERS, scope)
    cursor.execute(dialect.sql(f"SELECT kind, SUM(n) FROM honeypot_tallies WHERE {where}"
                               " GROUP BY kind"), args)
    found = {kind: 0 for kind in COUNTERS}
    found.update({kind: int(n) for kind, n in cursor.fetchall()})
    if sessions is None:
        sessions = client_sessions(cursor, dialect, scope, whole)
    messages, args = _grouped(whole, scope, "client_messages")
    cursor.execute(dialect.sql(f"SELECT value FROM ({messages}) m"), args)
    found["clients"] = len(sessions.keys() | {value for value, in cursor.fetchall()})
    tried, args = _grouped(whole, scope, "credential")
    cursor.execute(dialect.sql(f"SELECT COUNT(*) FROM ({tried}) tried"), args)
    found["credentials"] = cursor.fetchone()[0]
    return found


def client_sessions(cursor, dialect, scope, whole):
    """{client address: sessions} of every client of *scope*: read once,
    for the overview's counters and its three top lists of clients."""
    grouped, args = _grouped(whole, scope, "client")
    cursor.execute(dialect.sql(f"SELECT value, n FROM ({grouped}) g"), args)
    return {value: int(n) for value, n in cursor.fetchall()}


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


def top(cursor, dialect, scope, kind, limit=10, whole=None):
    """The *limit* values most often seen as *kind* in *scope*:
    [{"value", "n"}], most first."""
    if whole is None:
        whole = _whole(cursor, dialect, scope)
    grouped, args = _grouped(whole, scope, kind)
    cursor.execute(dialect.sql(f"SELECT value, n FROM ({grouped}) g"
                               f" ORDER BY n DESC, value LIMIT {int(limit)}"), args)
    return [{"value": value, "n": int(n)} for value, n in cursor.fetchall()]


def top_places(cursor, dialect, sessions, limit=10):
    """(countries, autonomous systems) of the clients of *sessions*
    (:func:`client_sessions`) by their sessions, as GeoIP found them:
    [{"value": country code, "n"}], [{"value": AS number, "label":
    organisation, "n"}], most first."""
    countries, systems, names = {}, {}, {}
    addresses = sorted(sessions)
    code, number = (dialect.json_value("result", "country_code"),
                    dialect.json_value("result", "asn"))
    name = dialect.json_value("result", "organization")
    for start in range(0, len(addresses), 500):
        chunk = addresses[start:start + 500]
        cursor.execute(dialect.sql(
            f"SELECT indicator, provider, {code}, {number}, {name} FROM honeypot_enrichment"
            f" WHERE provider IN ('geoip_city', 'geoip_asn') AND indicator IN ({_in(chunk)})"),
            chunk)
        for address, provider, country, asn, organisation in cursor.fetchall():
            n = sessions[address]
            if provider == "geoip_city" and country is not None:
                countries[str(country)] = countries.get(str(country), 0) + n
            elif provider == "geoip_asn" and asn is not None:
                systems[int(asn)] = systems.get(int(asn), 0) + n
                if organisation is not None:
                    names[int(asn)] = max(names.get(int(asn), ""), str(organisation))
    return ([{"value": c, "n": n} for c, n in _most(countries, limit)],
            [{"value": str(a), "n": n, "label": names.get(a)} for a, n in _most(systems, limit)])


def _most(counts, limit):
    """The *limit* (key, n) of *counts* with the largest n (ties by key)."""
    return heapq.nsmallest(limit, counts.items(), key=lambda item: (-item[1], item[0]))


def top_detected_types(cursor, dialect, scope, limit=10, whole=None):
    """What the attachments' content is (libmagic), by times seen."""
    if whole is None:
        whole = _whole(cursor, dialect, scope)
    grouped, args = _grouped(whole, scope, "attachment")
    cursor.execute(dialect.sql(
        f"SELECT j.mime AS found, SUM(v.n) AS total FROM ({grouped}) v"
        f" JOIN honeypot_files j ON j.sha256 = v.value WHERE j.mime IS NOT NULL"
        f" GROUP BY j.mime ORDER BY total DESC, found LIMIT {int(limit)}"), args)
    return [{"value": str(found), "n": int(n)} for found, n in cursor.fetchall()]


def overview(cursor, dialect, scope, passwords):
    """Everything the overview shows for *scope*; the top passwords only
    if *passwords*."""
    whole = _whole(cursor, dialect, scope)
    sessions = client_sessions(cursor, dialect, scope, whole)
    found = {"counters": counters(cursor, dialect, scope, whole, sessions),
             "activity": activity(cursor, dialect, scope),
             "top": {name: top(cursor, dialect, scope, kind, whole=whole)
                     for name, kind in TOPS.items() if passwords or name != "password"}}
    found["top"]["client"] = [{"value": a, "n": n} for a, n in _most(sessions, 10)]
    found["top"]["country"], found["top"]["asn"] = top_places(cursor, dialect, sessions)
    found["top"]["detected_type"] = top_detected_types(cursor, dialect, scope, whole=whole)
    return found


def listing(cursor, dialect, scope, kinds, page=1, size=50):
    """The values of *kinds* in *scope*, by the count of the first kind
    (those never seen as the first kind left out), most first: a Page of
    {"value", kind: n..., "first_seen", "last_seen"} (the times of the
    first kind)."""
    whole = _whole(cursor, dialect, scope)
    grouped, args = _grouped(whole, scope, kinds[0])
    number = max(1, page)
    # Summed from the day buckets, every value is grouped anyway: the
    # count rides along (a window) rather than grouping them all again.
    # From the totals the index gives the first rows, and the count below
    # stops at COUNT_LIMIT.
    counted = "NULL" if whole else "COUNT(*) OVER ()"
    cursor.execute(dialect.sql(
        f"SELECT value, n, first_seen, last_seen, {counted} FROM ({grouped}) g"
        f" ORDER BY n DESC, value LIMIT {int(size) + 1} OFFSET {(number - 1) * int(size)}"),
        args)
    fetched = cursor.fetchall()
    rows = [{"value": value, kinds[0]: int(n), "first_seen": iso(first),
             "last_seen": iso(last)} for value, n, first, last, _ in fetched]
    values = [row["value"] for row in rows]
    for kind in kinds[1:]:
        counts = {}
        if values:
            more, more_args = _grouped(whole, scope, kind, values)
            cursor.execute(dialect.sql(f"SELECT value, n FROM ({more}) g"), more_args)
            counts = {value: int(n) for value, n in cursor.fetchall()}
        for row in rows:
            row[kind] = counts.get(row["value"], 0)
    if fetched and not whole:
        total = int(fetched[0][4])
    else:
        cursor.execute(dialect.sql(f"SELECT COUNT(*) FROM (SELECT 1 FROM ({grouped}) g"
                                   f" LIMIT {queries.COUNT_LIMIT + 1}) counted"), args)
        total = cursor.fetchone()[0]
    return Page(rows[:size], number, size, len(rows) > size,
                min(total, queries.COUNT_LIMIT + 1))


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
        attempts = _attempts(cursor, dialect, scope, mechanism, username, password,
                             "c.client_ip")
        rows.append(dict(row, mechanism=mechanism, username=username, password=password,
                         times=row.pop("credential"),
                         clients=len({client for client, in attempts})))
        if not passwords:
            rows[-1].pop("password")
    return Page(rows, found.number, found.size, found.more, found.total)


def _attempts(cursor, dialect, scope, mechanism, username, password, columns, limit=None):
    """Rows of *columns* (of honeypot_credentials c joined to its session
    s) of the AUTH attempts in *scope* behind a credential as tallied
    (None kept as ''), newest first.  Found through the (username,
    password) index; compared exactly here, as MySQL's collation would
    take "Admin" for "admin"."""
    clauses, args = scope.where("c.time", "c.sensor")
    for column, value in (("c.username", username), ("c.password", password)):
        if value:
            clauses.append(f"{column} = ?")
            args.append(value)
        else:
            clauses.append(f"({column} IS NULL OR {column} = '')")
    cursor.execute(dialect.sql(
        f"SELECT c.mechanism, c.username, c.password, {columns} FROM honeypot_credentials c"
        f" JOIN honeypot_sessions s ON s.session_id = c.session_id"
        f" WHERE {' AND '.join(clauses)} ORDER BY c.time DESC"), args)
    found = []
    for row in cursor.fetchall():
        if (row[0], (row[1] or "")[:100], (row[2] or "")[:100]) == (mechanism, username,
                                                                    password):
            found.append(row[3:])
            if limit is not None and len(found) >= limit:
                break
    return found


def exchanges(cursor, dialect, scope, mechanism, username, password, limit=20):
    """The AUTH attempts behind one credential, newest first: [{time,
    client_ip, session_id, challenge, response, transcript}], transcript
    the lines of its session's AUTH exchanges as they were sent."""
    names = ["time", "client_ip", "session_id", "challenge", "response", "transcript"]
    rows = _attempts(cursor, dialect, scope, mechanism, username, password,
                     ", ".join(f"c.{n}" for n in names[:-1]) + ", s.transcript", limit)
    found = [queries._clean(dict(zip(names, row))) for row in rows]
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
    grouped, args = _grouped(_whole(cursor, dialect, scope), scope, tally)
    cursor.execute(dialect.sql(f"SELECT value FROM ({grouped}) g ORDER BY n DESC, value"),
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
        rows = []
        for digest in digests:
            # The names of its first 100 copies (a common file has thousands).
            cursor.execute(dialect.sql(
                "SELECT sha256, filename, content_type, size, attachment_id FROM"
                " honeypot_attachments WHERE sha256 = ? LIMIT 100"), (digest,))
            rows += cursor.fetchall()
        for digest, name, kind, length, attachment_id in rows:
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
    whole = _whole(cursor, dialect, scope)
    found = []
    for kind in CAMPAIGN_KINDS:
        grouped, args = _grouped(whole, scope, kind)
        cursor.execute(dialect.sql(
            f"SELECT value, n, first_seen, last_seen FROM ({grouped}) g WHERE n > 1"
            f" ORDER BY n DESC, value LIMIT {int(limit)}"), args)
        found += [{"by": kind, "value": value, "messages": int(n), "first_seen": iso(first),
                   "last_seen": iso(last)} for value, n, first, last in cursor.fetchall()]
    found.sort(key=lambda row: (-row["messages"], row["by"], row["value"]))
    return found[:limit]
