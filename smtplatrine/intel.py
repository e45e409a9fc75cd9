"""What the honeypot saw, as a threat-intelligence platform imports it: a
STIX 2.1 bundle (made with the ``stix2`` library) and a MISP event (MISP's
core format), built one indicator row at a time (store.indicators).

Not every value seen is worth a detection rule, and an export must not
make a platform block what it should not:

- every value is an observation: STIX Observed Data (first and last seen,
  how many messages) of its Cyber-observable; in MISP an attribute with
  ``to_ids`` false;
- a public client address, a URL and an attachment's SHA-256 are also an
  indicator: a STIX Indicator with its pattern and a Sighting (first and
  last seen, count, by the honeypot); in MISP ``to_ids`` true.  Nothing but
  spam and attacks reaches a honeypot, so these are what it is for;
- MAIL FROM addresses and their domains stay observations: spam forges
  them at will (a "paypal.com" sender is rarely PayPal's), and a rule on
  them would block the innocent; so do loopback, private and other
  non-public client addresses (a test, a relay of one's own).
"""

import ipaddress
import json
import uuid
from datetime import datetime, timezone

import stix2

# Our namespace for the ids that must be the same in every export.
_NAMESPACE = uuid.UUID("6b1f0b5e-3c55-4a4e-9d53-6b7a61747269")

# kind: (MISP type, MISP category, what the comment calls it)
_MISP = {
    "ip": ("ip-src", "Network activity", "client address"),
    "email": ("email-src", "Payload delivery", "MAIL FROM address"),
    "domain": ("domain", "Network activity", "MAIL FROM domain"),
    "url": ("url", "Network activity", "URL in a body"),
    "sha256": ("sha256", "Payload delivery", "attachment"),
}


def _public(text):
    """True for a globally routed unicast address (as the enrichers judge)."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    address = getattr(address, "ipv4_mapped", None) or address
    return address.is_global and not address.is_multicast


def detection(row):
    """True if *row*'s value is worth a detection rule (see above)."""
    if row["kind"] == "ip":
        return _public(row["value"])
    return row["kind"] in ("url", "sha256")


def _seen(row):
    noun = "message" if row["count"] == 1 else "messages"
    text = (f"{_MISP[row['kind']][2]} in {row['count']} {noun} received by the honeypot"
            f" from {row['first_seen']} to {row['last_seen']}")
    if row.get("names"):
        text += "; sent as " + ", ".join(row["names"])
    return text


# STIX


def identity(sensor):
    """The honeypot as the STIX Identity that made and saw everything."""
    name = f"smtplatrine honeypot {sensor}"
    return stix2.Identity(id=f"identity--{uuid.uuid5(_NAMESPACE, name)}", name=name,
                          identity_class="system")


def bundle_head(author):
    """The start of a bundle, up to its first object, *author*."""
    return (f'{{"type": "bundle", "id": "bundle--{uuid.uuid4()}", "objects": [\n'
            f"{author.serialize(sort_keys=True)}")


def _literal(text):
    """*text* as a STIX pattern string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def stix_objects(row, author):
    """The STIX objects of one indicator row: its Cyber-observable and
    Observed Data, and if it is worth detecting, an Indicator and its
    Sighting."""
    kind, value = row["kind"], row["value"]
    if kind == "ip":
        try:
            version = ipaddress.ip_address(value).version
        except ValueError:      # not an IP connection (a Unix socket)
            return []
        observable = (stix2.IPv4Address if version == 4 else stix2.IPv6Address)(value=value)
        path = f"{observable.type}:value"
    elif kind == "email":
        observable, path = stix2.EmailAddress(value=value), "email-addr:value"
    elif kind == "domain":
        observable, path = stix2.DomainName(value=value), "domain-name:value"
    elif kind == "url":
        observable, path = stix2.URL(value=value), "url:value"
    else:
        observable, path = stix2.File(hashes={"SHA-256": value}), "file:hashes.'SHA-256'"
    common = {"created_by_ref": author.id}
    observed = stix2.ObservedData(first_observed=row["first_seen"],
                                  last_observed=row["last_seen"],
                                  number_observed=row["count"],
                                  object_refs=[observable.id], **common)
    found = [observable, observed]
    if detection(row):
        try:
            indicator = stix2.Indicator(
                name=f"{_MISP[kind][2]} {value}"[:300], description=_seen(row),
                pattern=f"[{path} = {_literal(value)}]", pattern_type="stix",
                valid_from=row["first_seen"], indicator_types=["malicious-activity"],
                **common)
        except stix2.exceptions.STIXError:
            # A value the pattern grammar cannot hold stays an observation.
            return found
        found += [indicator, stix2.Sighting(
            sighting_of_ref=indicator.id, first_seen=row["first_seen"],
            last_seen=row["last_seen"], count=row["count"],
            observed_data_refs=[observed.id], where_sighted_refs=[author.id], **common)]
    return found


def prepare():
    """Build one of every object once, so that what stix2 imports only at
    its first use is imported now (before a privilege drop puts the
    Python library out of reach)."""
    author = identity("prepare")
    for kind, value in (("ip", "192.0.2.1"), ("ip", "2001:db8::1"), ("email", "a@b.example"),
                        ("domain", "b.example"), ("url", "http://b.example/"),
                        ("sha256", "0" * 64)):
        row = {"kind": kind, "value": value, "first_seen": "2026-01-01T00:00:00Z",
               "last_seen": "2026-01-01T00:00:00Z", "count": 1}
        for found in stix_objects(row, author):
            found.serialize()


# MISP


def _misp_time(text):
    """An ISO time with Z as MISP writes first_seen: 2026-03-02T10:00:00.000000+00:00."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


def event_head(info, now):
    """The start of a MISP event (unpublished, for the organisation only)
    up to its first attribute."""
    event = {"uuid": str(uuid.uuid4()), "info": info,
             "date": datetime.fromtimestamp(now, timezone.utc).strftime("%Y-%m-%d"),
             "timestamp": str(int(now)), "published": False, "distribution": "0",
             "threat_level_id": "3", "analysis": "2",
             "Tag": [{"name": "smtplatrine"}]}
    text = json.dumps(event, sort_keys=True)
    return '{"Event": ' + text[:-1] + ', "Attribute": ['


def misp_attribute(row, now):
    """One MISP attribute of an indicator row."""
    kind_type, category, _ = _MISP[row["kind"]]
    return {"uuid": str(uuid.uuid4()), "type": kind_type, "category": category,
            "value": row["value"], "to_ids": detection(row),
            "first_seen": _misp_time(row["first_seen"]),
            "last_seen": _misp_time(row["last_seen"]),
            "comment": _seen(row)[:1000], "timestamp": str(int(now)),
            "distribution": "5", "disable_correlation": False}
