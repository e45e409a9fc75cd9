"""GeoIP City and ASN from MaxMind ``.mmdb`` files (smtplatrine.geoip),
opened once at start; a file that is missing turns its enricher off with
one warning."""

import attrs
from twisted.internet import defer
from twisted.plugin import IPlugin
from zope.interface import implementer

from smtplatrine import geoip
from smtplatrine.enrich.base import Enricher, cache_times
from smtplatrine.interfaces import IEnricher, Result


@attrs.frozen
class _GeoIP(Enricher):
    kinds = ("ip",)
    reader: object = None

    def configure(self, context):
        settings = context.settings
        if not settings.geoip_enable:
            return None
        reader = geoip.open_database(getattr(settings, self.option), self.option)
        if reader is None:
            return None
        return attrs.evolve(self, reader=reader, **cache_times(settings))

    def lookup(self, kind, indicator):
        return defer.succeed(Result(self.read(self.reader, indicator)))


@implementer(IPlugin, IEnricher)
@attrs.frozen
class GeoIPCity(_GeoIP):
    """Country, continent, EU membership, city, postal code, subdivision,
    location, accuracy radius and time zone of an IP address."""
    name = "geoip_city"
    option = "geoip_main_file"
    read = staticmethod(geoip.city)


@implementer(IPlugin, IEnricher)
@attrs.frozen
class GeoIPASN(_GeoIP):
    """The autonomous system (number and organisation) of an IP address."""
    name = "geoip_asn"
    option = "geoip_asn_file"
    read = staticmethod(geoip.asn)
