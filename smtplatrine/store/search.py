"""The search language of the dashboard, its API and ``smtplatrine search``:
query text in, parameterised SQL for either database out.

    invoice "final notice" from:paypal.com -has:attachment larger:10k

Free words and ``"phrases"`` match the subject and the body text (the
full-text index: whole words, any case); ``field:value`` (``field:"two
words"``) narrows by one property (see FIELDS); ``-`` before a term negates
it; terms combine with AND.  A query that cannot be read raises
:class:`SearchError` with a message for the person who typed it.
"""

import ipaddress
import re
from datetime import datetime, timezone

import attrs

MAX_LENGTH = 1000
MAX_TERMS = 30

# Each field and what it matches, as the help and the errors say it.
FIELDS = {
    "from": "words of the From header or MAIL FROM (an address, a domain, a name)",
    "to": "a recipient address, or a recipients' domain",
    "subject": "words of the subject",
    "ip": "the client's or a Received hop's address, or a network (192.0.2.0/24)",
    "helo": "the HELO/EHLO name",
    "country": "the client's country code (GeoIP), such as CN",
    "asn": "the client's autonomous system (GeoIP), such as AS4134",
    "sensor": "the sensor's name",
    "has": "attachment or url",
    "filename": "part of an attachment's file name",
    "sha256": "the SHA-256 of the message or of an attachment",
    "md5": "the MD5 of the message or of an attachment",
    "url": "part of a link in the body",
    "domain": "a link's host, or a domain above it",
    "user": "a username tried with AUTH in the session",
    "password": "a password tried with AUTH in the session (forensic role)",
    "mailer": "the X-Mailer or User-Agent header, as it is",
    "type": "an attachment's declared or detected type, such as application/pdf",
    "is": "tls, auth or truncated",
    "before": "received before a date or time (2026-03-02, 2026-03-02T10:00)",
    "after": "received at or after a date or time",
    "larger": "larger than a size (10k, 2M)",
    "smaller": "smaller than a size",
}

_TOKEN = re.compile(r'(-?)(?:([A-Za-z][A-Za-z0-9_]*):)?(?:"([^"]*)("?)|(\S*))')
_WORD = re.compile(r"\w+")
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmg]?)b?", re.I)
_HEX = {"sha256": re.compile(r"[0-9a-f]{64}"), "md5": re.compile(r"[0-9a-f]{32}")}


class SearchError(ValueError):
    """The query cannot be read; str() says why, for the person who typed it."""


@attrs.frozen
class Term:
    """One term: *field* (None: free text), *value*, *negated*."""
    field: str | None
    value: str
    negated: bool = False


@attrs.frozen
class Search:
    """A parsed query: its *terms*, all of which must match."""
    terms: tuple

    def where(self, dialect):
        """([SQL clause on ``honeypot_emails m``], [argument]), with ``?``
        placeholders (the callers pass the statement through dialect.sql)."""
        clauses, args = [], []
        for term in self.terms:
            clause, more = _CLAUSES[term.field](dialect, term.value)
            if term.negated:
                clause = f"NOT COALESCE(({clause}), 0)"
            clauses.append(clause)
            args += more
        return clauses, args


def parse(text):
    """The :class:`Search` of the query *text*; SearchError if unreadable."""
    text = text.strip()
    if len(text) > MAX_LENGTH:
        raise SearchError(f"the query is {len(text)} characters long; at most"
                          f" {MAX_LENGTH} are read")
    terms, position = [], 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position >= len(text):
            break
        match = _TOKEN.match(text, position)
        negated, field, quoted, closed, plain = match.groups()
        position = match.end()
        if quoted is not None and not closed:
            raise SearchError(f'the quote opened in {match.group()!r} is not closed;'
                              f' close it with "')
        value = quoted if quoted is not None else plain
        if field is None and not value:
            raise SearchError("a - must be followed by the term it excludes")
        if field is not None:
            field = field.lower()
            if field not in FIELDS:
                raise SearchError(
                    f"{field}: is no search field; fields are"
                    f" {', '.join(f + ':' for f in FIELDS)} (put text in quotes to"
                    f" search for it as it is)")
            if not value:
                raise SearchError(f"{field}: needs a value: {field}:{_EXAMPLES[field]}")
            _check(field, value)
        elif not _WORD.search(value):
            raise SearchError(f"{value!r} has no letter or digit to search for")
        terms.append(Term(field, value, bool(negated)))
    if len(terms) > MAX_TERMS:
        raise SearchError(f"the query has {len(terms)} terms; at most {MAX_TERMS}")
    return Search(tuple(terms))


_EXAMPLES = {
    "from": "paypal.com", "to": "info@example.org", "subject": "invoice",
    "ip": "192.0.2.7", "helo": "localhost", "country": "CN", "asn": "AS4134",
    "sensor": "sensor-1", "has": "attachment", "filename": "invoice.pdf",
    "sha256": "<64 hex digits>", "md5": "<32 hex digits>", "url": "login.php",
    "domain": "example.com", "user": "admin", "password": "123456",
    "mailer": "Microsoft Outlook 16.0", "type": "application/pdf", "is": "tls",
    "before": "2026-03-02",
    "after": "2026-03-02", "larger": "10k", "smaller": "2M",
}


def _check(field, value):
    """Raise SearchError if *value* is no value for *field*."""
    checker = _CHECKS.get(field)
    if checker is None:
        if field in ("from", "subject") and not _WORD.search(value):
            raise SearchError(f"{field}:{value} has no letter or digit to search for")
        return
    try:
        checker(value)
    except (ValueError, TypeError):
        raise SearchError(f"{field}:{value} is not {FIELDS[field]}; for example"
                          f" {field}:{_EXAMPLES[field]}") from None


def moment(text):
    """A date or time (ISO 8601; UTC unless it says otherwise) as the UTC
    text the store keeps; ValueError if it is none."""
    when = datetime.fromisoformat(text.strip())
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")


def size(text):
    """A size such as 10k, 2M, 1.5G or 300 as bytes."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError(text)
    number, unit = match.groups()
    return int(float(number) * 1024 ** " kmg".index(unit.lower() or " "))


def _choice(*allowed):
    def check(value):
        if value.lower() not in allowed:
            raise ValueError(value)
    return check


def _hex(field):
    def check(value):
        if not _HEX[field].fullmatch(value.lower()):
            raise ValueError(value)
    return check


def _asn(value):
    return int(re.fullmatch(r"(?:as)?(\d{1,10})", value, re.I).group(1))


def _country(value):
    if not re.fullmatch(r"[A-Za-z]{2}", value):
        raise ValueError(value)


_CHECKS = {
    "ip": lambda v: ipaddress.ip_network(v, strict=False),
    "country": _country, "asn": _asn, "has": _choice("attachment", "url"),
    "sha256": _hex("sha256"), "md5": _hex("md5"), "is": _choice("tls", "auth", "truncated"),
    "before": moment, "after": moment, "larger": size, "smaller": size,
}


# SQL for each field: f(dialect, value) -> (clause on honeypot_emails m, args).

def _text(*columns):
    def clause(dialect, value):
        sql, args = dialect.text_match(columns, _WORD.findall(value.lower()))
        return f"m.message_id IN ({sql})", args
    return clause


def _to(dialect, value):
    value = value.lower()
    if "@" in value:
        return ("m.message_id IN (SELECT message_id FROM honeypot_email_recipients"
                " WHERE address = ?)", [value])
    return ("m.message_id IN (SELECT r.message_id FROM honeypot_email_recipients r"
            " JOIN honeypot_recipients a ON a.address = r.address WHERE a.domain = ?)",
            [value])


def _ip(dialect, value):
    """The messages whose client or a Received hop is in the network
    *value*, found through the address indexes as the text prefixes of its
    addresses (10.1.16.0/20 is 10.1.16. to 10.1.31.; 2001:db8::/32 is
    2001:db8:), or, for what cannot be read so, by comparing every address."""
    network = ipaddress.ip_network(value, strict=False)
    prefixes = _prefixes(network)
    if prefixes is not None:
        pieces = [dialect.prefix_match("{0}", prefix) for prefix in prefixes]
        clause = "(" + " OR ".join(piece for piece, _ in pieces) + ")"
        args = [arg for _, more in pieces for arg in more]
    elif network.num_addresses == 1:
        clause, args = "{0} = ?", [str(network.network_address)]
    else:
        low, high = network.network_address.packed, network.broadcast_address.packed
        clause = "LENGTH(inet6_aton({0})) = ? AND inet6_aton({0}) BETWEEN ? AND ?"
        args = [len(low), low, high]
    return _either(f"SELECT message_id FROM honeypot_emails WHERE {clause.format('client_ip')}",
                   f"SELECT message_id FROM honeypot_email_received WHERE"
                   f" {clause.format('from_ip')}", args)


def _either(first, second, args):
    """The messages either SELECT finds: a UNION that both databases read
    once (MariaDB runs ``IN (... UNION ...)`` again for each row, not
    ``IN (SELECT ... FROM (... UNION ...))``)."""
    return (f"m.message_id IN (SELECT message_id FROM ({first} UNION {second}) either)",
            args + args)


def _prefixes(network):
    """The text prefixes (at most 256) that the addresses of *network*
    start with as stored (Python's and Twisted's text form), or None when
    its text form does not allow that (a prefix under 8 bits; an IPv6
    prefix holding a zero group, which the text form may drop; a single
    address)."""
    if network.version == 4:
        bits, separator, form = 8, ".", str
    else:
        bits, separator, form = 16, ":", lambda group: f"{group:x}"
    width = network.max_prefixlen
    groups = -(-network.prefixlen // bits)
    count = 1 << (groups * bits - network.prefixlen)
    if not network.prefixlen >= 8 or groups * bits == width or count > 256:
        return None
    found = []
    for i in range(count):
        start = int(network.network_address) + (i << (width - groups * bits))
        parts = [(start >> (width - bits * (n + 1))) & ((1 << bits) - 1) for n in range(groups)]
        if network.version == 6 and 0 in parts:
            return None
        found.append(separator.join(form(part) for part in parts) + separator)
    return found


def _geo(provider, key, convert):
    def clause(dialect, value):
        return (f"m.client_ip IN (SELECT indicator FROM honeypot_enrichment WHERE"
                f" provider = '{provider}' AND {dialect.json_value('result', key)} = ?)",
                [convert(value)])
    return clause


def _has(dialect, value):
    table = {"attachment": "honeypot_attachments", "url": "honeypot_email_urls"}
    return (f"EXISTS (SELECT 1 FROM {table[value.lower()]} x"
            f" WHERE x.message_id = m.message_id)", [])


def _escaped(text):
    """*text* for LIKE ... ESCAPE '!', matched as it is."""
    return re.sub(r"([!%_])", r"!\1", text)


def _like(text):
    return f"%{_escaped(text)}%"


def _hash(field):
    def clause(dialect, value):
        value = value.lower()
        return _either(f"SELECT message_id FROM honeypot_emails WHERE {field} = ?",
                       f"SELECT message_id FROM honeypot_attachments WHERE {field} = ?",
                       [value])
    return clause


def _domain(dialect, value):
    value = value.lower().strip(".")
    return ("m.message_id IN (SELECT message_id FROM honeypot_email_urls"
            " WHERE host = ? OR host LIKE ? ESCAPE '!')", [value, "%." + _escaped(value)])


def _is(dialect, value):
    return {"tls": ("m.tls <> 0", []), "truncated": ("m.truncated <> 0", []),
            "auth": ("m.session_id IN (SELECT session_id FROM honeypot_credentials)",
                     [])}[value.lower()]


def _simple(clause, convert=str):
    return lambda dialect, value: (clause, [convert(value)])


def _mailer(dialect, value):
    return "(m.header_x_mailer = ? OR m.header_user_agent = ?)", [value, value]


def _type(dialect, value):
    value = value.lower()
    return _either("SELECT message_id FROM honeypot_attachments WHERE content_type = ?",
                   "SELECT a.message_id FROM honeypot_attachments a JOIN honeypot_files f"
                   " ON f.sha256 = a.sha256 WHERE f.mime = ?", [value])


def _helo(dialect, value):
    return f"m.helo = ?{dialect.nocase}", [value]


_CLAUSES = {
    None: _text("subject", "body"),
    "subject": _text("subject"),
    "from": _text("sender"),
    "to": _to,
    "ip": _ip,
    "helo": _helo,
    "country": _geo("geoip_city", "country_code", str.upper),
    "asn": _geo("geoip_asn", "asn", _asn),
    "sensor": _simple("m.sensor = ?"),
    "has": _has,
    "filename": _simple("m.message_id IN (SELECT message_id FROM honeypot_attachments"
                        " WHERE filename LIKE ? ESCAPE '!')", _like),
    "sha256": _hash("sha256"),
    "md5": _hash("md5"),
    "url": _simple("m.message_id IN (SELECT message_id FROM honeypot_email_urls"
                   " WHERE url LIKE ? ESCAPE '!')", _like),
    "domain": _domain,
    "user": _simple("m.session_id IN (SELECT session_id FROM honeypot_credentials"
                    " WHERE username = ?)"),
    "password": _simple("m.session_id IN (SELECT session_id FROM honeypot_credentials"
                        " WHERE password = ?)"),
    "mailer": _mailer,
    "type": _type,
    "is": _is,
    "before": _simple("m.received < ?", moment),
    "after": _simple("m.received >= ?", moment),
    "larger": _simple("m.size > ?", size),
    "smaller": _simple("m.size < ?", size),
}
