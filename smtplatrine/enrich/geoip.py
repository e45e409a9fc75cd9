"""GeoIP City and ASN from MaxMind ``.mmdb`` files (smtplatrine.geoip),
opened once at start; where a file is missing, countries and AS
organisations come from the offline data geoip2fast ships, said in one
line."""

from pathlib import Path

import attrs
from twisted.internet import defer
from twisted.logger import Logger
from twisted.plugin import IPlugin
from zope.interface import implementer

from smtplatrine import geoip
from smtplatrine.enrich.base import Enricher, cache_times
from smtplatrine.interfaces import IEnricher, Result

log = Logger()


@attrs.frozen
class _GeoIP(Enricher):
    kinds = ("ip",)
    reader: object = None

    def configure(self, context):
        settings = context.settings
        if not settings.geoip_enable:
            return None
        path = getattr(settings, self.option)
        reader = (geoip.open_database(path, self.option)
                  if path and Path(path).exists() else None)
        if reader is None:
            try:
                geoip.offline()
            except ImportError:
                log.warn("{name} is off: there is no MaxMind database at {path} and no"
                         " offline data (pip install geoip2fast, or geoipupdate)",
                         name=self.name, path=path)
                return None
            log.info("{name}: no MaxMind database at {path}; {what} from the offline"
                     " data of {source} (MaxMind files, when set in [meta] {option},"
                     " take precedence)", name=self.name, path=path, what=self.offline_what,
                     source=geoip.offline_source(), option=self.option)
        return attrs.evolve(self, reader=reader, **cache_times(settings))

    def lookup(self, kind, indicator):
        if self.reader is None:
            return defer.succeed(Result(self.offline(indicator)))
        return defer.succeed(Result(self.read(self.reader, indicator)))


@implementer(IPlugin, IEnricher)
@attrs.frozen
class GeoIPCity(_GeoIP):
    """Country, continent, EU membership, city, postal code, subdivision,
    location, accuracy radius and time zone of an IP address."""
    name = "geoip_city"
    option = "geoip_main_file"
    read = staticmethod(geoip.city)
    offline = staticmethod(geoip.offline_country)
    offline_what = "countries"


@implementer(IPlugin, IEnricher)
@attrs.frozen
class GeoIPASN(_GeoIP):
    """The autonomous system (number and organisation) of an IP address."""
    name = "geoip_asn"
    option = "geoip_asn_file"
    read = staticmethod(geoip.asn)
    offline = staticmethod(geoip.offline_asn)
    offline_what = "AS organisations"
