"""MaxMind databases (GeoIP2 or GeoLite2 City and ASN), read through geoip2;
and, where there is none, the offline country and AS data that the
geoip2fast package ships.

Each file is opened once, when the service starts; a file that is missing or
unreadable leaves its lookups off, said in one warning.  Lookups are reads
of a memory-mapped file, quick enough for the connection path (country
ACLs) as well as for the enrichers.  The offline data (about 120 MB in
memory) serves the enrichers only.
"""

import functools
import ipaddress
import re

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


# The offline data: country and AS organisation, IPv4 and IPv6.
OFFLINE_FILE = "geoip2fast-asn-ipv6.dat.gz"


@functools.lru_cache(maxsize=1)
def offline():
    """geoip2fast's reader of the data it ships (loaded once), and what
    that data is (``MAXMIND:GeoLite2-CountryASN-...-YYYYMMDD``)."""
    from geoip2fast import GeoIP2Fast
    reader = GeoIP2Fast(geoip2fast_data_file=OFFLINE_FILE, verbose=False)
    return reader, reader.get_database_info().get("source_info", "")


def offline_source():
    """The offline data named for an analyst: its package, version and date."""
    from importlib.metadata import version
    info = offline()[1]
    date = re.search(r"(\d{4})(\d{2})(\d{2})$", info)
    when = f"{date[1]}-{date[2]}-{date[3]}" if date else "unknown date"
    return f"geoip2fast {version('geoip2fast')} ({info.split(':')[-1] or 'GeoLite2'}, {when})"


def _offline_lookup(ip):
    address = _address(ip)
    if address is None:
        return None
    found = offline()[0].lookup(address)
    code = getattr(found, "country_code", "") or ""
    if getattr(found, "is_private", False) or not re.fullmatch(r"[A-Z]{2}", code):
        return None
    return found


def offline_country(ip):
    """The country (code and name) of *ip* in the offline data, or None."""
    found = _offline_lookup(ip)
    if found is None:
        return None
    return {"country_code": found.country_code, "country_name": found.country_name or None,
            "source": offline_source()}


def offline_asn(ip):
    """The AS organisation and network of *ip* in the offline data (which
    has no AS number), or None."""
    found = _offline_lookup(ip)
    if found is None or not found.asn_name:
        return None
    return {"asn": None, "organization": found.asn_name, "network": found.asn_cidr or None,
            "source": offline_source()}
