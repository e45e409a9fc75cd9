"""MaxMind databases (GeoIP2 or GeoLite2 City and ASN), read through geoip2.

Each file is opened once, when the service starts; a file that is missing or
unreadable leaves its lookups off, said in one warning.  Lookups are reads
of a memory-mapped file, quick enough for the connection path (country
ACLs) as well as for the enrichers.
"""

import ipaddress

from twisted.logger import Logger

log = Logger()


def open_database(path, key):
    """A geoip2 reader of the ``.mmdb`` file *path* (the option *key* of
    ``[meta]`` names it), or None when there is none to use."""
    if not path:
        return None
    import geoip2.database
    try:
        return geoip2.database.Reader(path)
    except (OSError, ValueError, RuntimeError) as e:
        log.warn("GeoIP database {path} cannot be used ({reason}); its lookups"
                 " are off: install it (geoipupdate) or change [meta] {key}",
                 path=path, reason=str(e), key=key)
        return None


def _address(ip):
    """*ip* as geoip2 wants it (an IPv4-mapped IPv6 address as IPv4), or
    None when it is no IP address."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    return str(getattr(address, "ipv4_mapped", None) or address)


def _lookup(reader, method, ip):
    import geoip2.errors
    address = _address(ip)
    if reader is None or address is None:
        return None
    try:
        return getattr(reader, method)(address)
    except (geoip2.errors.AddressNotFoundError, ValueError):
        return None


def country(reader, ip):
    """The ISO country code of *ip* in the City database *reader*, or None."""
    found = _lookup(reader, "city", ip)
    return found.country.iso_code if found else None


def city(reader, ip):
    """What the City database *reader* knows of *ip*, as a dict, or None."""
    found = _lookup(reader, "city", ip)
    if found is None:
        return None
    subdivision = found.subdivisions.most_specific
    return {
        "country_code": found.country.iso_code,
        "country_name": found.country.name,
        "continent_code": found.continent.code,
        "continent_name": found.continent.name,
        "eu_member": found.country.is_in_european_union,
        "city": found.city.name,
        "postal_code": found.postal.code,
        "subdivision_code": subdivision.iso_code,
        "subdivision_name": subdivision.name,
        "latitude": found.location.latitude,
        "longitude": found.location.longitude,
        "accuracy_radius": found.location.accuracy_radius,
        "time_zone": found.location.time_zone,
    }


def asn(reader, ip):
    """The autonomous system of *ip* in the ASN database *reader*, as a
    dict, or None."""
    found = _lookup(reader, "asn", ip)
    if found is None:
        return None
    return {"asn": found.autonomous_system_number,
            "organization": found.autonomous_system_organization}
