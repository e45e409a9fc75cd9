"""The HTTP providers: AbuseIPDB, VirusTotal and OTX AlienVault.

Each asks one documented endpoint with a GET (nothing is ever uploaded),
for an indicator the service has validated (public IPs only), and keeps
the fields an analyst searches, read defensively: a field of the wrong
type is None, never an error.
"""

from urllib.parse import quote, urlencode

import attrs
from twisted.plugin import IPlugin
from zope.interface import implementer

from smtplatrine.enrich.base import HTTPEnricher
from smtplatrine.enrich.http import field, get_json, header
from smtplatrine.interfaces import IEnricher, LookupFailed, Result

# Lists kept of one answer (detection names, file names, pulses).
MAX_ITEMS = 20


def _texts(values):
    return [v[:255] for v in (values if isinstance(values, list) else [])
            if isinstance(v, str)][:MAX_ITEMS]


@implementer(IPlugin, IEnricher)
@attrs.frozen
class AbuseIPDB(HTTPEnricher):
    """AbuseIPDB v2 ``/check``: what others reported of an IP address."""
    name = "abuseipdb"
    prefix = "abuseipdb"
    kinds = ("ip",)
    max_age_days = 90

    async def lookup(self, kind, indicator):
        query = urlencode({"ipAddress": indicator, "maxAgeInDays": self.max_age_days})
        response, answer = await get_json(
            self.http, f"{self.url}/check?{query}",
            {"Key": [self.key], "Accept": ["application/json"]}, self.clock.seconds())
        data = field(answer, "data", kind=dict)
        if data is None:
            raise LookupFailed("the answer has no data object")
        result = {
            "confidence_score": field(data, "abuseConfidenceScore", kind=int),
            "usage_type": field(data, "usageType", kind=str),
            "isp": field(data, "isp", kind=str),
            "domain": field(data, "domain", kind=str),
            "country_code": field(data, "countryCode", kind=str),
            "total_reports": field(data, "totalReports", kind=int),
            "distinct_users": field(data, "numDistinctUsers", kind=int),
            "last_reported": field(data, "lastReportedAt", kind=str),
            "tor": field(data, "isTor", kind=bool),
            "whitelisted": field(data, "isWhitelisted", kind=bool),
        }
        return Result(result, hold=self._hold(response))

    def _hold(self, response):
        """Seconds until the daily quota comes back, when the answer says
        none is left (X-RateLimit-Remaining: 0, X-RateLimit-Reset: epoch)."""
        try:
            if int(header(response, "X-RateLimit-Remaining")) > 0:
                return 0.0
            return max(60.0, float(header(response, "X-RateLimit-Reset"))
                       - self.clock.seconds())
        except (TypeError, ValueError):
            return 0.0


@implementer(IPlugin, IEnricher)
@attrs.frozen
class VirusTotal(HTTPEnricher):
    """VirusTotal v3 file report by SHA-256 (never an upload)."""
    name = "virustotal"
    prefix = "vt"
    kinds = ("sha256",)

    async def lookup(self, kind, indicator):
        _, answer = await get_json(self.http, f"{self.url}/files/{quote(indicator)}",
                                   {"x-apikey": [self.key]}, self.clock.seconds())
        if answer is None:
            return Result(None)
        attributes = field(answer, "data", "attributes", kind=dict)
        if attributes is None:
            raise LookupFailed("the answer has no data.attributes object")
        stats = field(attributes, "last_analysis_stats", kind=dict) or {}
        engines = field(attributes, "last_analysis_results", kind=dict) or {}
        detections = sorted({field(r, "result", kind=str) for r in engines.values()
                             if field(r, "category") == "malicious"} - {None})
        return Result({
            "malicious": field(stats, "malicious", kind=int),
            "suspicious": field(stats, "suspicious", kind=int),
            "undetected": field(stats, "undetected", kind=int),
            "harmless": field(stats, "harmless", kind=int),
            "detection_names": _texts(detections),
            "names": _texts(field(attributes, "names")),
            "type": field(attributes, "type_description", kind=str),
            "first_seen": field(attributes, "first_submission_date", kind=int),
            "permalink": f"https://www.virustotal.com/gui/file/{indicator}",
        })


@implementer(IPlugin, IEnricher)
@attrs.frozen
class OTX(HTTPEnricher):
    """OTX AlienVault: the pulses that name an IP address or a file hash."""
    name = "otx"
    prefix = "otx"
    kinds = ("ip", "sha256")

    async def lookup(self, kind, indicator):
        section = "file" if kind == "sha256" else (
            "IPv6" if ":" in indicator else "IPv4")
        _, answer = await get_json(
            self.http, f"{self.url}/indicators/{section}/{quote(indicator, safe=':')}/general",
            {"X-OTX-API-KEY": [self.key]}, self.clock.seconds())
        if answer is None:
            return Result(None)
        info = field(answer, "pulse_info", kind=dict)
        if info is None:
            raise LookupFailed("the answer has no pulse_info object")
        pulses = [p for p in field(info, "pulses", kind=list) or []
                  if isinstance(p, dict)][:MAX_ITEMS]
        return Result({
            "pulse_count": field(info, "count", kind=int),
            "pulses": [{"id": field(p, "id", kind=str), "name": field(p, "name", kind=str),
                        "tags": _texts(field(p, "tags")),
                        "created": field(p, "created", kind=str)} for p in pulses],
        })
