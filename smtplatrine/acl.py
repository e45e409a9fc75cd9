"""The gate at connect time: the block list, per-client limits, smart bans.

Everything is decided in memory, synchronously, as a connection arrives: the
block list (addresses, networks, countries) is a copy of the database's,
reloaded now and then by the service (see :meth:`Guard.replace`); hits and
bans are written back in batches (:meth:`Guard.take_hits`,
:meth:`Guard.take_bans`).  A client is an IPv4 address or an IPv6 prefix.
"""

import ipaddress

import attrs

from smtplatrine import geoip

# Why :meth:`Guard.admit` refuses a connection.
ACL_IP, ACL_COUNTRY = "acl_ip", "acl_country"
CLIENT_LIMIT, CLIENT_RATE = "client_limit", "client_rate"
# Session ends that say the client does not speak SMTP to us.
_MISMATCH_ENDS = frozenset({"forbidden_command", "too_many_errors"})
_HTTP = (b"GET ", b"HEAD ", b"POST ", b"PUT ", b"OPTIONS ", b"CONNECT ", b"PRI * ")


def mismatch(first_bytes, close_reason):
    """True if a session did not speak SMTP: its first bytes are TLS, HTTP
    or binary (an SMTP command starts with a letter), or it ended in an
    error storm or on a forbidden command."""
    start = first_bytes.lstrip(b" \t\r\n")
    return (close_reason in _MISMATCH_ENDS or start.upper().startswith(_HTTP)
            or (bool(start) and not start[:1].isalpha()))


def address(ip):
    """*ip* as an ipaddress object (IPv4-mapped IPv6 as IPv4), or None."""
    try:
        found = ipaddress.ip_address(ip)
    except ValueError:
        return None
    return getattr(found, "ipv4_mapped", None) or found


def network(text):
    """An ACL entry as a network (a bare address is a /32 or /128; an
    IPv4-mapped IPv6 network the IPv4 network, as clients are seen); raises
    ValueError, saying why, for text that is none or has host bits set."""
    try:
        found = ipaddress.ip_network(text.strip())
    except ValueError as e:
        raise ValueError(f"{text!r} is not an IP address or network ({e})") from None
    mapped = getattr(found.network_address, "ipv4_mapped", None)
    if mapped is not None and found.prefixlen >= 96:
        return ipaddress.ip_network(f"{mapped}/{found.prefixlen - 96}")
    return found


def country(text):
    """An ACL entry as a country code (two letters, upper case), or None."""
    text = text.strip()
    return text.upper() if len(text) == 2 and text.isascii() and text.isalpha() else None


def entry(text):
    """A block list entry typed by a person: ("country", code) or ("ip",
    network text); ValueError saying what to give instead."""
    code = country(text)
    if code is not None:
        return "country", code
    try:
        return "ip", str(network(text))
    except ValueError as e:
        raise ValueError(f"{e}; give an address, a network such as 192.0.2.0/24 or"
                         f" 2001:db8::/32, or a two-letter country code") from None


def client_network(ip, ipv6_prefix):
    """The network that counts as one client: the address, or for IPv6 its
    prefix of *ipv6_prefix* bits."""
    found = address(ip)
    if found is None:
        return None
    bits = 32 if found.version == 4 else ipv6_prefix
    return ipaddress.ip_network(f"{found}/{bits}", strict=False)


@attrs.frozen
class Refusal:
    """Why a connection is refused: *reason* (ACL_IP, ACL_COUNTRY,
    CLIENT_LIMIT, CLIENT_RATE), the block list *entry* or the limit it hit,
    and the Ban this connection earned, if any."""
    reason: str
    entry: str
    ban: "Ban | None" = None


@attrs.frozen
class Ban:
    """A client put on the block list for flooding or not speaking SMTP."""
    network: str
    seconds: float
    reason: str
    time: float


class _Windows:
    """Per-client counts in fixed windows of *length* seconds.  Clients
    whose window has ended are forgotten whenever the table has doubled, so
    that many clients cost memory only while they are active."""

    def __init__(self, length):
        self.length = length
        self._counts = {}
        self._purge_at = 1024

    def add(self, key, now, name, n=1):
        """Add *n* to the count *name* of *key*; the count in this window."""
        start, counts = self._counts.get(key, (None, None))
        if start is None or now >= start + self.length:
            if len(self._counts) >= self._purge_at:
                self._purge(now)
            start, counts = now, {}
            self._counts[key] = (start, counts)
        counts[name] = counts.get(name, 0) + n
        return counts[name]

    def __len__(self):
        return len(self._counts)

    def _purge(self, now):
        self._counts = {key: value for key, value in self._counts.items()
                        if now < value[0] + self.length}
        self._purge_at = max(1024, 2 * len(self._counts))


class Guard:
    """Decides, for each new connection, whether it may talk to us.

    *protection* and *smart* are the ``[protection]`` and ``[smart_acl]``
    settings; *reader* the GeoIP City database (None: no country ACL).
    """

    def __init__(self, protection, smart, clock, reader=None):
        self.protection = protection
        self.smart = smart
        self.clock = clock
        self.reader = reader
        self._networks = {}     # prefix length -> {network address int: text}
        self._countries = frozenset()
        self._open = {}         # client -> connections open now
        self._rate = _Windows(protection.rate_window)
        self._flood = _Windows(smart.window)
        self._hits = {}         # ("ip", network) or ("geo", code) -> [tries, last]
        self._bans = []         # Ban, not yet written to the database

    def replace(self, networks, countries):
        """Take the block list: network texts and country codes.  Bans not
        yet written back stay in force."""
        table = {}
        for text in [*networks, *(ban.network for ban in self._bans)]:
            found = network(text)
            table.setdefault((found.version, found.prefixlen), {})[
                int(found.network_address)] = text
        self._networks = table
        self._countries = frozenset(countries)

    def blocked(self, ip):
        """("ip", network) or ("geo", country) of the entry *ip* is on, or None."""
        found = address(ip)
        if found is None:
            return None
        value = int(found)
        for (version, length), entries in self._networks.items():
            if version == found.version:
                shift = found.max_prefixlen - length
                text = entries.get(value >> shift << shift)
                if text is not None:
                    return "ip", text
        if self._countries and self.reader is not None:
            code = geoip.country(self.reader, str(found))
            if code in self._countries:
                return "geo", code
        return None

    def admit(self, ip):
        """None if *ip* may connect (it then counts as open until
        :meth:`closed`), else the Refusal."""
        now = self.clock.seconds()
        entry = self.blocked(ip)
        if entry is not None:
            hit = self._hits.setdefault(entry, [0, now])
            hit[0] += 1
            hit[1] = now
            return Refusal(ACL_IP if entry[0] == "ip" else ACL_COUNTRY, entry[1])
        client = client_network(ip, self.protection.client_ipv6_prefix)
        if client is None:          # not an IP connection (a Unix socket)
            return None
        smart = self.smart
        connections = self._flood.add(client, now, "connections")
        if smart.enabled and smart.max_connections and connections > smart.max_connections:
            return Refusal(ACL_IP, str(client), self._ban(client, "connection_flood", now))
        rate = self.protection.max_connection_rate
        if rate and self._rate.add(client, now, "connections") > rate:
            return Refusal(CLIENT_RATE, str(rate))
        limit = self.protection.max_connections_per_client
        if limit and self._open.get(client, 0) >= limit:
            return Refusal(CLIENT_LIMIT, str(limit))
        self._open[client] = self._open.get(client, 0) + 1
        return None

    def closed(self, ip, messages=0, mismatch=False):
        """A connection :meth:`admit` let in has ended; the Ban it earned
        (too many messages or sessions that were not SMTP), or None."""
        client = client_network(ip, self.protection.client_ipv6_prefix)
        if client is None:
            return None
        left = self._open.get(client, 0) - 1
        if left > 0:
            self._open[client] = left
        else:
            self._open.pop(client, None)
        smart = self.smart
        if not smart.enabled:
            return None
        now = self.clock.seconds()
        if messages and smart.max_messages and self._flood.add(
                client, now, "messages", messages) > smart.max_messages:
            return self._ban(client, "message_flood", now)
        if mismatch and smart.max_mismatches and self._flood.add(
                client, now, "mismatches") >= smart.max_mismatches:
            return self._ban(client, "protocol_mismatch", now)
        return None

    def _ban(self, client, reason, now):
        ban = Ban(network=str(client), seconds=self.smart.ban_time, reason=reason,
                  time=now)
        self._bans.append(ban)
        self._networks.setdefault((client.version, client.prefixlen), {})[
            int(client.network_address)] = ban.network
        return ban

    def take_hits(self):
        """The block list hits since the last call: {(kind, entry): [tries, last]}."""
        hits, self._hits = self._hits, {}
        return hits

    def take_bans(self):
        """The bans since the last call, to be written to the database."""
        bans, self._bans = self._bans, []
        return bans

    def restore(self, hits, bans):
        """Put back hits and bans whose write failed, to try again."""
        for key, (tries, last) in hits.items():
            hit = self._hits.setdefault(key, [0, last])
            hit[0] += tries
            hit[1] = max(hit[1], last)
        self._bans[:0] = bans
