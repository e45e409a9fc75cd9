"""Small MaxMind databases written by the tests (with mmdb-writer), in the
record layout of GeoLite2 City and ASN."""

from mmdb_writer import MMDBWriter, MmdbF64, MmdbU32
from netaddr import IPSet


def _write(path, database_type, records):
    writer = MMDBWriter(ip_version=6, database_type=database_type, ipv4_compatible=True)
    for networks, record in records.items():
        writer.insert_network(IPSet(networks.split()), record)
    writer.to_db_file(str(path))
    return path


def city_record(country, name, continent="EU", continent_name="Europe", eu=True,
                city=None, postal=None, subdivision=None, location=None):
    """A City record; *subdivision* is (code, name), *location* is
    (latitude, longitude, accuracy radius, time zone)."""
    record = {"country": {"iso_code": country, "names": {"en": name},
                          "is_in_european_union": eu},
              "continent": {"code": continent, "names": {"en": continent_name}}}
    if city:
        record["city"] = {"names": {"en": city}}
    if postal:
        record["postal"] = {"code": postal}
    if subdivision:
        record["subdivisions"] = [{"iso_code": subdivision[0],
                                   "names": {"en": subdivision[1]}}]
    if location:
        latitude, longitude, radius, zone = location
        record["location"] = {"latitude": MmdbF64(latitude),
                              "longitude": MmdbF64(longitude),
                              "accuracy_radius": MmdbU32(radius), "time_zone": zone}
    return record


def city_database(path, records):
    """Write a GeoLite2-City file: ``{"192.0.2.0/24 2001:db8::/32": record}``."""
    return _write(path, "GeoLite2-City", records)


def asn_database(path, records):
    """Write a GeoLite2-ASN file: ``{"192.0.2.0/24": (number, organisation)}``."""
    return _write(path, "GeoLite2-ASN", {
        networks: {"autonomous_system_number": MmdbU32(number),
                   "autonomous_system_organization": organisation}
        for networks, (number, organisation) in records.items()})
