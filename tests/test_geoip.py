"""GeoIP lookups against small .mmdb files written by the tests."""

from pathlib import Path

from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from smtplatrine import geoip
from tests.mmdb import asn_database, city_database, city_record


class GeoIPTests(unittest.TestCase):

    def setUp(self):
        directory = Path(self.mktemp())
        directory.mkdir()
        self.city = geoip.open_database(str(city_database(directory / "city.mmdb", {
            "198.51.100.0/24 2001:db8::/32": city_record(
                "DE", "Germany", city="Berlin", postal="10115",
                subdivision=("BE", "Land Berlin"),
                location=(52.52, 13.405, 20, "Europe/Berlin")),
            "203.0.113.0/24": city_record("US", "United States", "NA",
                                          "North America", eu=False),
        })), "geoip_main_file")
        self.asn = geoip.open_database(str(asn_database(directory / "asn.mmdb", {
            "198.51.100.0/24": (64500, "Example Transit"),
        })), "geoip_asn_file")

    def test_country(self):
        """An IPv4, an IPv6 and an IPv4-mapped address get their country."""
        self.assertEqual(geoip.country(self.city, "198.51.100.9"), "DE")
        self.assertEqual(geoip.country(self.city, "2001:db8::25"), "DE")
        self.assertEqual(geoip.country(self.city, "::ffff:203.0.113.4"), "US")

    def test_unknown_addresses(self):
        """An address outside the file, or no address at all, gives None."""
        self.assertIsNone(geoip.country(self.city, "192.0.2.1"))
        self.assertIsNone(geoip.country(self.city, "not-an-ip"))
        self.assertIsNone(geoip.city(None, "198.51.100.9"))

    def test_city(self):
        """Every City field the store keeps is read."""
        self.assertEqual(geoip.city(self.city, "198.51.100.9"), {
            "country_code": "DE", "country_name": "Germany",
            "continent_code": "EU", "continent_name": "Europe", "eu_member": True,
            "city": "Berlin", "postal_code": "10115", "subdivision_code": "BE",
            "subdivision_name": "Land Berlin", "latitude": 52.52,
            "longitude": 13.405, "accuracy_radius": 20,
            "time_zone": "Europe/Berlin"})

    def test_asn(self):
        """The ASN file gives number and organisation."""
        self.assertEqual(geoip.asn(self.asn, "198.51.100.200"),
                         {"asn": 64500, "organization": "Example Transit"})
        self.assertIsNone(geoip.asn(self.asn, "203.0.113.4"))

    def test_missing_file(self):
        """A missing file is one warning naming the option, and no lookups."""
        seen = []
        globalLogPublisher.addObserver(seen.append)
        self.addCleanup(globalLogPublisher.removeObserver, seen.append)
        self.assertIsNone(geoip.open_database("/nonexistent/City.mmdb",
                                              "geoip_main_file"))
        warnings = [e for e in seen if e.get("key") == "geoip_main_file"]
        self.assertEqual(len(warnings), 1)
        self.assertEqual(warnings[0]["path"], "/nonexistent/City.mmdb")
