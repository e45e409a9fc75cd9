"""The indicators of a stored message, validated: only public IP addresses,
well-formed SHA-256 digests and domain names ever reach an enricher (and a
provider's URL)."""

import ipaddress
import re

import attrs

# At most this many indicators of one kind per message: a message listing
# thousands of URLs must not spend a provider's quota for a day.
PER_KIND = 20
# Public addresses taken from the Received chain, first (nearest) hops
# first: the sender writes the lower ones, and could otherwise spend the
# quota on addresses of its choosing.
RECEIVED_HOPS = 3

_SHA256 = re.compile(r"[0-9a-f]{64}")
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


@attrs.frozen
class Indicator:
    """*value* of *kind* (``ip``, ``sha256``, ``domain``), found as
    *source* (``client``, ``received``, ``attachment``, ``sender``, ``url``)."""
    kind: str
    value: str
    source: str


def public_ip(text):
    """*text* as a normalised public IP address (an IPv4-mapped IPv6
    address as IPv4), or None for anything else: private, loopback,
    link-local, shared, documentation and other bogon ranges included."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    address = getattr(address, "ipv4_mapped", None) or address
    if not address.is_global or address.is_multicast:
        return None
    return str(address)


def sha256(text):
    """*text* as a lower-case SHA-256 hex digest, or None."""
    text = (text or "").lower()
    return text if _SHA256.fullmatch(text) else None


def domain(text):
    """*text* as a lower-case DNS name of two labels or more, or None (IP
    literals, underscores, over-long names and labels are refused)."""
    text = (text or "").lower().rstrip(".")
    labels = text.split(".")
    if (len(text) > 253 or len(labels) < 2 or labels[-1].isdigit()
            or not all(_LABEL.fullmatch(label) for label in labels)):
        return None
    return text


_VALIDATE = {"ip": public_ip, "sha256": sha256, "domain": domain}


def collect(client_ip, received_ips, sha256s, mail_from, url_hosts):
    """The distinct valid indicators of one message, at most PER_KIND of a
    kind (and RECEIVED_HOPS from the Received chain), in the order found."""
    candidates = [("ip", client_ip, "client")]
    hops = [ip for ip in map(public_ip, received_ips) if ip][:RECEIVED_HOPS]
    candidates += [("ip", ip, "received") for ip in hops]
    candidates += [("sha256", s, "attachment") for s in sha256s]
    candidates.append(("domain", (mail_from or "").rpartition("@")[2], "sender"))
    candidates += [("domain", host, "url") for host in url_hosts]
    found, counts = {}, {}
    for kind, raw, source in candidates:
        value = _VALIDATE[kind](raw) if raw else None
        if value is None or (kind, value) in found or counts.get(kind, 0) >= PER_KIND:
            continue
        counts[kind] = counts.get(kind, 0) + 1
        found[kind, value] = Indicator(kind, value, source)
    return list(found.values())


def of_message(metadata, parsed):
    """The indicators of a spooled message (its
    :class:`~smtplatrine.capture.Metadata`) once *parsed*."""
    return collect(metadata.identity.src_ip, [r.from_ip for r in parsed.received],
                   [a.sha256 for a in parsed.attachments], metadata.mail_from,
                   [u.host for u in parsed.urls])
