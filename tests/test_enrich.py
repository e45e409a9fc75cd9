"""The enrichers and the enrichment service: plugins found and verified,
each provider's documented answers (and its failures) through StubTreq,
GeoIP from small .mmdb files, reverse DNS from a fake resolver, and quotas,
holds, timeouts and the queue with a Clock over a real SQLite database."""

import base64
import hashlib
from pathlib import Path

import attrs
from treq.testing import StubTreq
from twisted.internet import defer, reactor, task
from twisted.internet.task import Clock
from twisted.names import dns, error
from twisted.plugin import IPlugin
from twisted.trial import unittest
from zope.interface import implementer
from zope.interface.verify import verifyObject

from smtplatrine.config import Meta, load
from smtplatrine.enrich import indicators
from smtplatrine.enrich.geoip import GeoIPASN, GeoIPCity
from smtplatrine.enrich.providers import OTX, AbuseIPDB, VirusTotal
from smtplatrine.enrich.rdns import ReverseDNS
from smtplatrine.enrich.service import EnrichmentService, configure, discover
from smtplatrine.events import Events
from smtplatrine.interfaces import (Context, IEnricher, LookupFailed, Member,
                                    RateLimited, Result)
from smtplatrine.store import dialects, enrichment, records
from smtplatrine.store.database import Database
from smtplatrine.testing import ListOutput
from tests import providers
from tests.mmdb import asn_database, city_database, city_record
from tests.readme import install_example
from tests.test_store import prepared

ROOT = Path(__file__).resolve().parent.parent
# 2026-01-01 00:00:00 UTC.
MIDNIGHT = 1767225600.0
BUILT_IN = ["abuseipdb", "geoip_asn", "geoip_city", "otx", "rdns", "virustotal"]


def settings(**changes):
    """[meta] with the three HTTP providers on, and *changes*."""
    return attrs.evolve(Meta(), **{
        "abuseipdb_enable": True, "abuseipdb_key": "abuse-key", "vt_enable": True,
        "vt_key": "vt-key", "otx_enable": True, "otx_key": "otx-key", **changes})


def http_enricher(plugin, resource, clock=None, **changes):
    """*plugin* configured against *resource* behind StubTreq."""
    stub = StubTreq(resource)
    return plugin.configure(Context(settings(**changes), clock or Clock(), stub)), stub


def message(directory, attachments=(), received=("8.8.8.8",), message_id=None,
            **metadata):
    """A stored message (as the pipeline hands it on) with *attachments*
    (bytes) and a Received line per address of *received*."""
    lines = [f"Received: from relay{i}.example.net (relay{i}.example.net [{ip}])\r\n"
             f"\tby mx.example.com with ESMTP; Mon, 2 Mar 2026 10:00:00 +0000\r\n"
             for i, ip in enumerate(received)]
    parts = [f"--b\r\nContent-Type: application/octet-stream\r\n"
             f"Content-Disposition: attachment; filename=\"f{i}.bin\"\r\n"
             f"Content-Transfer-Encoding: base64\r\n\r\n"
             f"{base64.b64encode(data).decode()}\r\n" for i, data in enumerate(attachments)]
    raw = ("".join(lines) + "From: a@example.net\r\nSubject: x\r\n"
           "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"
           "--b\r\nContent-Type: text/plain\r\n\r\nsee http://bit.ly/x\r\n"
           + "".join(parts) + "--b--\r\n").encode()
    message_id = message_id or "00000000-0000-4000-8000-%012d" % len(list(
        Path(directory).glob("*.eml")))
    metadata.setdefault("src_ip", "127.0.0.1")
    return prepared(directory, message_id, raw, **metadata)


@implementer(IPlugin, IEnricher)
@attrs.frozen
class Recorder:
    """Answers with *answer* (or raises it, or calls it) and notes each
    lookup."""
    name: str = "recorder"
    kinds: tuple = ("ip", "sha256", "domain")
    answer: object = Result({"seen": True})
    ttl: float = 3600.0
    negative_ttl: float = 60.0
    per_minute: int = 0
    per_day: int = 0
    seen: list = attrs.field(factory=list)

    def configure(self, context):
        return self

    def lookup(self, kind, indicator):
        self.seen.append((kind, indicator))
        if isinstance(self.answer, Exception):
            raise self.answer
        if callable(self.answer):
            return self.answer()
        return defer.succeed(self.answer)


class IndicatorTests(unittest.TestCase):

    def test_public_ip(self):
        """Only global unicast addresses pass; IPv4-mapped ones become IPv4."""
        for bogon in ("10.1.2.3", "127.0.0.1", "192.168.0.1", "172.16.0.1",
                      "100.64.0.1", "169.254.1.1", "192.0.2.1", "198.51.100.1",
                      "203.0.113.1", "0.0.0.0", "224.0.0.1", "255.255.255.255",
                      "::1", "fe80::1", "fc00::1", "2001:db8::1", "::ffff:10.0.0.1",
                      "8.8.8.8 ", "8.8.8.8/32", "x"):
            self.assertIsNone(indicators.public_ip(bogon), bogon)
        self.assertEqual(indicators.public_ip("::ffff:8.8.8.8"), "8.8.8.8")
        self.assertEqual(indicators.public_ip("2606:4700:4700::1111"),
                         "2606:4700:4700::1111")

    def test_domain_and_hash(self):
        """Domains are lower-cased DNS names; hashes 64 hex digits; anything
        that would bend a URL is refused."""
        self.assertEqual(indicators.domain("Mail.Example.COM."), "mail.example.com")
        for bad in ("localhost", "1.2.3.4", "a..b", "-a.com", "a_b.com", "a.com/x",
                    "a.com?q", "é.com", "x" * 64 + ".com", ""):
            self.assertIsNone(indicators.domain(bad), bad)
        digest = hashlib.sha256(b"x").hexdigest()
        self.assertEqual(indicators.sha256(digest.upper()), digest)
        self.assertIsNone(indicators.sha256(digest[:-1] + "/"))

    def test_collect(self):
        """Each indicator once, with where it was found; the three nearest
        public Received hops; at most PER_KIND of a kind, however many URLs
        a message lists."""
        found = indicators.collect(
            "8.8.8.8", ["10.0.0.1", "8.8.8.8", "1.1.1.1", "9.9.9.9", "4.4.4.4"], [],
            "bot@Spam.Example.org", [f"h{i}.example.com" for i in range(50)])
        self.assertEqual(found[:5], [
            indicators.Indicator("ip", "8.8.8.8", "client"),
            indicators.Indicator("ip", "1.1.1.1", "received"),
            indicators.Indicator("ip", "9.9.9.9", "received"),
            indicators.Indicator("domain", "spam.example.org", "sender"),
            indicators.Indicator("domain", "h0.example.com", "url")])
        self.assertEqual(len([i for i in found if i.kind == "domain"]),
                         indicators.PER_KIND)


class DiscoveryTests(unittest.TestCase):

    def test_built_in(self):
        """getPlugins finds the six built-in enrichers, each an IEnricher."""
        plugins = discover()
        self.assertEqual([p.name for p in plugins if p.name in BUILT_IN], BUILT_IN)
        for plugin in plugins:
            self.assertTrue(verifyObject(IEnricher, plugin))

    def test_configured_are_enrichers(self):
        """Configured, every built-in enricher still provides IEnricher; the
        HTTP ones without a key are off."""
        directory = Path(self.mktemp())
        directory.mkdir()
        files = {"geoip_main_file": str(city_database(directory / "c.mmdb", {})),
                 "geoip_asn_file": str(asn_database(directory / "a.mmdb", {}))}
        enrichers = configure(discover(), Context(settings(**files), Clock(), StubTreq(None)))
        self.assertEqual(sorted(e.name for e in enrichers if e.name in BUILT_IN), BUILT_IN)
        for enricher in enrichers:
            self.assertTrue(verifyObject(IEnricher, enricher))
        off = configure(discover(), Context(Meta(geoip_main_file="/nonexistent",
                                                 geoip_asn_file="/nonexistent"),
                                            Clock(), None))
        self.assertEqual([e.name for e in off if e.name in BUILT_IN],
                         ["geoip_asn", "geoip_city", "rdns"])

    @defer.inlineCallbacks
    def test_readme_example(self):
        """The guide's example enricher, dropped into a twisted/plugins
        directory on the path, is found, gets its options from its section
        and flags shortener URLs end to end."""
        install_example(self, "shortener.py")
        [example] = [p for p in discover() if p.name == "shortener"]
        self.assertTrue(verifyObject(IEnricher, example))
        directory = Path(self.mktemp())
        directory.mkdir()
        (directory / "local.ini").write_text("[enricher_shortener]\nalso = example.net\n")
        loaded = load(directory)
        context = Context(settings(), Clock(), None)
        harness = yield Harness.start(self, configure([example], context, loaded))
        yield harness.service.submit(message(harness.tmp))
        rows = yield harness.results("bit.ly", "example.net")
        # example.net is no shortener but for the option.
        self.assertEqual([(r["provider"], r["indicator"], r["result"]) for r in rows], [
            ("shortener", "bit.ly", {"shortener": True}),
            ("shortener", "example.net", {"shortener": True})])


class GeoIPTests(unittest.TestCase):

    def setUp(self):
        directory = Path(self.mktemp())
        directory.mkdir()
        self.files = {
            "geoip_main_file": str(city_database(directory / "city.mmdb", {
                "8.8.8.0/24": city_record(
                    "US", "United States", "NA", "North America", eu=False,
                    city="Mountain View", postal="94043", subdivision=("CA", "California"),
                    location=(37.386, -122.0838, 1000, "America/Los_Angeles"))})),
            "geoip_asn_file": str(asn_database(directory / "asn.mmdb", {
                "8.8.8.0/24": (15169, "GOOGLE")}))}

    def test_city_and_asn(self):
        """The City and ASN enrichers read every field from their files."""
        context = Context(settings(**self.files), Clock(), None)
        city = self.successResultOf(GeoIPCity().configure(context).lookup("ip", "8.8.8.8"))
        asn = self.successResultOf(GeoIPASN().configure(context).lookup("ip", "8.8.8.8"))
        self.assertEqual(city.data, {
            "country_code": "US", "country_name": "United States",
            "continent_code": "NA", "continent_name": "North America",
            "eu_member": False, "city": "Mountain View", "postal_code": "94043",
            "subdivision_code": "CA", "subdivision_name": "California",
            "latitude": 37.386, "longitude": -122.0838, "accuracy_radius": 1000,
            "time_zone": "America/Los_Angeles"})
        self.assertEqual(asn.data, {"asn": 15169, "organization": "GOOGLE"})
        unknown = self.successResultOf(GeoIPASN().configure(context).lookup("ip", "1.1.1.1"))
        self.assertIsNone(unknown.data)

    def test_missing_file(self):
        """Where a MaxMind file is missing, its enricher answers from the
        offline data geoip2fast ships (Google's 8.8.8.8 is in the US, its
        AS organisation GOOGLE); a file that is there takes precedence."""
        context = Context(settings(geoip_main_file="/nonexistent/City.mmdb",
                                   geoip_asn_file=self.files["geoip_asn_file"]), Clock(), None)
        city = self.successResultOf(GeoIPCity().configure(context).lookup("ip", "8.8.8.8"))
        self.assertEqual((city.data["country_code"], city.data["country_name"]),
                         ("US", "United States"))
        self.assertRegex(city.data["source"], r"^geoip2fast [0-9.]+ \(.*GeoLite2.*, 20\d\d-")
        asn = self.successResultOf(GeoIPASN().configure(context).lookup("ip", "8.8.8.8"))
        self.assertEqual(asn.data, {"asn": 15169, "organization": "GOOGLE"})
        offline = Context(settings(geoip_asn_file=""), Clock(), None)
        asn = self.successResultOf(GeoIPASN().configure(offline).lookup("ip", "8.8.8.8"))
        self.assertEqual((asn.data["asn"], asn.data["organization"]), (None, "GOOGLE"))
        nothing = self.successResultOf(GeoIPCity().configure(context).lookup("ip", "10.1.2.3"))
        self.assertIsNone(nothing.data)


class FakeResolver:
    """Answers lookupPointer from *answers*: name -> PTR names or an error."""

    def __init__(self, answers):
        self.answers = answers
        self.asked = []

    def lookupPointer(self, name, timeout=None):
        self.asked.append((name, timeout))
        answer = self.answers.get(name)
        if isinstance(answer, Exception):
            return defer.fail(answer)
        if answer is None:
            return defer.fail(error.DomainError(name))
        return defer.succeed(([dns.RRHeader(name, dns.PTR, payload=dns.Record_PTR(n))
                               for n in answer], [], []))


class ReverseDNSTests(unittest.TestCase):

    def enricher(self, answers):
        resolver = FakeResolver(answers)
        return ReverseDNS(resolver=resolver, timeout=3.0), resolver

    def test_ptr(self):
        """The PTR names of the address's in-addr.arpa and ip6.arpa names,
        asked with the configured timeout."""
        # RFC 3596: the 32 nibbles of the full address, reversed.
        ip6 = ".".join(reversed("26064700470000000000000000001111")) + ".ip6.arpa"
        enricher, resolver = self.enricher({"8.8.8.8.in-addr.arpa": [b"dns.google"],
                                            ip6: [b"one.one.one.one"]})
        v4 = self.successResultOf(defer.ensureDeferred(enricher.lookup("ip", "8.8.8.8")))
        v6 = self.successResultOf(defer.ensureDeferred(
            enricher.lookup("ip", "2606:4700:4700::1111")))
        self.assertEqual((v4.data, v6.data), ({"ptr": ["dns.google"]},
                                              {"ptr": ["one.one.one.one"]}))
        self.assertEqual(resolver.asked[0], ("8.8.8.8.in-addr.arpa", (3.0,)))

    def test_nxdomain_and_failure(self):
        """NXDOMAIN is "nothing known"; a resolver timeout is a transient
        failure; a control character in a PTR name is escaped."""
        enricher, _ = self.enricher({
            "1.1.1.1.in-addr.arpa": error.DNSQueryTimeoutError("1.1.1.1"),
            "9.9.9.9.in-addr.arpa": [b"evil\nname"]})
        nothing = self.successResultOf(defer.ensureDeferred(enricher.lookup("ip", "8.8.8.8")))
        self.assertIsNone(nothing.data)
        failure = self.failureResultOf(defer.ensureDeferred(enricher.lookup("ip", "1.1.1.1")),
                                       LookupFailed)
        self.assertTrue(failure.value.transient)
        escaped = self.successResultOf(defer.ensureDeferred(enricher.lookup("ip", "9.9.9.9")))
        self.assertEqual(escaped.data, {"ptr": ["evil\\nname"]})


class HTTPProviderTests(unittest.TestCase):

    def lookup(self, plugin, resource, kind, indicator, clock=None):
        enricher, stub = http_enricher(plugin, resource, clock)
        d = defer.ensureDeferred(enricher.lookup(kind, indicator))
        stub.flush()
        return d

    def test_abuseipdb(self):
        """AbuseIPDB's documented /check answer gives every field; the key
        goes in the Key header and the address in ipAddress."""
        resource = providers.Canned(200, providers.ABUSEIPDB_CHECK,
                                    {"X-RateLimit-Remaining": "999"})
        result = self.successResultOf(self.lookup(AbuseIPDB(), resource, "ip", "8.8.8.8"))
        self.assertEqual(result, Result({
            "confidence_score": 100, "usage_type": "Data Center/Web Hosting/Transit",
            "isp": "Tencent Cloud Computing (Beijing) Co. Ltd", "domain": "tencent.com",
            "country_code": "CN", "total_reports": 1, "distinct_users": 1,
            "last_reported": "2018-12-20T20:55:14+00:00", "tor": False,
            "whitelisted": False}))
        [(uri, headers)] = resource.requests
        self.assertEqual(uri, "/api/v2/check?ipAddress=8.8.8.8&maxAgeInDays=90")
        self.assertEqual((headers["key"], headers["accept"]),
                         ("abuse-key", "application/json"))

    def test_wrong_types_read_as_none(self):
        """A field of another type than documented (a number as text, a
        boolean for a count) is None, not an error."""
        answer = {"data": dict(providers.ABUSEIPDB_CHECK["data"],
                               abuseConfidenceScore="100", totalReports=True)}
        result = self.successResultOf(self.lookup(
            AbuseIPDB(), providers.Canned(200, answer), "ip", "8.8.8.8"))
        self.assertEqual((result.data["confidence_score"], result.data["total_reports"],
                          result.data["isp"]),
                         (None, None, "Tencent Cloud Computing (Beijing) Co. Ltd"))

    def test_abuseipdb_quota_spent(self):
        """X-RateLimit-Remaining: 0 holds AbuseIPDB until X-RateLimit-Reset."""
        clock = Clock()
        clock.advance(MIDNIGHT)
        resource = providers.Canned(200, providers.ABUSEIPDB_CHECK, {
            "X-RateLimit-Limit": "1000", "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(int(MIDNIGHT + 3600))})
        result = self.successResultOf(self.lookup(AbuseIPDB(), resource, "ip", "8.8.8.8",
                                                  clock))
        self.assertEqual(result.hold, 3600)

    def test_429_retry_after(self):
        """A 429 with Retry-After (seconds or an HTTP date) is RateLimited
        for that long."""
        clock = Clock()
        clock.advance(MIDNIGHT)
        for value, seconds in (("29", 29), ("Thu, 01 Jan 2026 00:02:00 GMT", 120)):
            resource = providers.Canned(429, providers.ABUSEIPDB_429, {"Retry-After": value})
            failure = self.failureResultOf(
                self.lookup(AbuseIPDB(), resource, "ip", "8.8.8.8", clock), RateLimited)
            self.assertEqual(failure.value.seconds, seconds)

    def test_server_error_and_garbage(self):
        """A 5xx is a transient failure; a body that is not JSON, JSON
        without the documented object, or an endless answer, a failure not
        worth retrying."""
        cases = [(providers.Canned(503, b"<html>down</html>"), True, "HTTP 503"),
                 (providers.Canned(200, b"{\"data\": "), False, "not JSON"),
                 (providers.Canned(200, ["data"]), False, "no data object"),
                 (providers.Canned(200, b"[" + b"0," * 600_000 + b"0]"), False,
                  "answer over 1048576 bytes")]
        for resource, transient, reason in cases:
            failure = self.failureResultOf(
                self.lookup(AbuseIPDB(), resource, "ip", "8.8.8.8"), LookupFailed)
            self.assertEqual(failure.value.transient, transient)
            self.assertIn(reason, str(failure.value))

    def test_virustotal(self):
        """VirusTotal's documented file object gives counts, detection and
        file names, type, first seen and the permalink, asked with GET and
        the x-apikey header; its NotFoundError is "nothing known"."""
        digest = hashlib.sha256(b"MZ").hexdigest()
        resource = providers.Canned(200, providers.virustotal_file(digest))
        result = self.successResultOf(self.lookup(VirusTotal(), resource, "sha256", digest))
        self.assertEqual(result.data, {
            "malicious": 2, "suspicious": 1, "undetected": 60, "harmless": 0,
            "detection_names": ["HEUR:Trojan.Win32.Generic", "Win32/Agent.ABC"],
            "names": ["invoice.exe", "invoice.pdf.exe"], "type": "Win32 EXE",
            "first_seen": 1577836800,
            "permalink": f"https://www.virustotal.com/gui/file/{digest}"})
        [(uri, headers)] = resource.requests
        self.assertEqual((uri, headers["x-apikey"]), (f"/api/v3/files/{digest}", "vt-key"))
        missing = providers.Canned(404, providers.VIRUSTOTAL_NOT_FOUND)
        self.assertIsNone(self.successResultOf(
            self.lookup(VirusTotal(), missing, "sha256", digest)).data)

    def test_otx(self):
        """OTX's general section gives the pulses, asked under IPv4, IPv6 or
        file with the X-OTX-API-KEY header."""
        resource = providers.Canned(200, providers.otx_general("8.8.8.8", "IPv4"))
        digest = hashlib.sha256(b"x").hexdigest()
        for kind, indicator in (("ip", "8.8.8.8"), ("ip", "2606:4700:4700::1111"),
                                ("sha256", digest)):
            result = self.successResultOf(self.lookup(OTX(), resource, kind, indicator))
            self.assertEqual(result.data, {"pulse_count": 1, "pulses": [{
                "id": "5d0a3e8c2a1e9a5b7c3e4f10", "name": "SMTP spam sources",
                "tags": ["spam", "smtp"], "created": "2019-06-19T13:50:36.123000"}]})
        self.assertEqual([uri for uri, _ in resource.requests], [
            "/api/v1/indicators/IPv4/8.8.8.8/general",
            "/api/v1/indicators/IPv6/2606:4700:4700::1111/general",
            f"/api/v1/indicators/file/{digest}/general"])
        self.assertEqual(resource.requests[0][1]["x-otx-api-key"], "otx-key")

    def test_no_key(self):
        """An HTTP enricher enabled without its key is off."""
        context = Context(settings(vt_key=""), Clock(), None)
        self.assertIsNone(VirusTotal().configure(context))


class Harness:
    """An enrichment service over a fresh SQLite database, on a Clock."""

    @classmethod
    @defer.inlineCallbacks
    def start(cls, testcase, enrichers, database_path=None, **options):
        self = cls()
        self.tmp = Path(testcase.mktemp())
        self.tmp.mkdir()
        self.clock = Clock()
        self.clock.advance(MIDNIGHT)
        self.output = ListOutput()
        self.path = database_path or self.tmp / "db.sqlite"
        self.database = Database(dialects.SQLite(self.path))
        testcase.addCleanup(self.database.close)
        yield defer.Deferred.fromCoroutine(self.database.open())
        options.setdefault("timeout", 20.0)
        self.service = EnrichmentService(self.clock, self.database,
                                         Events(self.clock, [self.output]),
                                         enrichers, "sensor-a", **options)
        return self

    def results(self, *indicators):
        return self.database.run(enrichment.results, self.database.dialect, indicators)

    def events(self, eventid):
        return [e for e in self.output.events if e["eventid"] == eventid]

    def queued(self):
        return self.database.run(_queued, self.database.dialect)


def _queued(cursor, dialect):
    cursor.execute("SELECT provider, indicator, attempts, not_before"
                   " FROM honeypot_enrichment_queue ORDER BY indicator")
    return [tuple(row) for row in cursor.fetchall()]


class ServiceTests(unittest.TestCase):

    @defer.inlineCallbacks
    def test_result_stored_cached_and_emitted(self):
        """A result is stored and emitted once; the next message with the
        same indicator is answered from the cache, not the provider."""
        recorder = Recorder(kinds=("ip",))
        harness = yield Harness.start(self, [recorder])
        yield harness.service.submit(message(harness.tmp))
        yield harness.service.submit(message(harness.tmp))
        self.assertEqual(recorder.seen, [("ip", "8.8.8.8")])
        rows = yield harness.results("8.8.8.8")
        self.assertEqual([(r["provider"], r["found"], r["result"]) for r in rows],
                         [("recorder", True, {"seen": True})])
        [event] = harness.events("smtplatrine.enrichment")
        # Flat: the result itself is in the database, not in the event.
        self.assertEqual((event["provider"], event["indicator"], event["found"],
                          event["sensor"], "result" in event),
                         ("recorder", "8.8.8.8", True, "sensor-a", False))

    @defer.inlineCallbacks
    def test_private_addresses_never_looked_up(self):
        """The loopback client and private Received hops are never sent
        out; the public hop is."""
        recorder = Recorder(kinds=("ip",))
        harness = yield Harness.start(self, [recorder])
        yield harness.service.submit(message(
            harness.tmp, received=("10.0.0.1", "192.168.1.1", "9.9.9.9", "192.0.2.1"),
            src_ip="::ffff:127.0.0.1"))
        self.assertEqual(recorder.seen, [("ip", "9.9.9.9")])

    @defer.inlineCallbacks
    def test_virustotal_quota_and_queue(self):
        """With VirusTotal's 4 lookups a minute, six attachments make four
        requests; the other two wait in the queue and run the next minute."""
        files = [b"file %d" % i for i in range(6)]
        resource = providers.Canned(404, providers.VIRUSTOTAL_NOT_FOUND)
        enricher, stub = http_enricher(VirusTotal(), resource)
        harness = yield Harness.start(self, [enricher])
        yield harness.service.submit(message(harness.tmp, files))
        self.assertEqual(len(resource.requests), 4)
        queued = yield harness.queued()
        self.assertEqual(sorted(q[1] for q in queued), sorted(
            hashlib.sha256(f).hexdigest() for f in files if
            f"/api/v3/files/{hashlib.sha256(f).hexdigest()}" not in
            [uri for uri, _ in resource.requests]))
        self.assertEqual({q[3] for q in queued}, {MIDNIGHT + 60})
        yield harness.service.drain()
        self.assertEqual(len(resource.requests), 4)
        harness.clock.advance(60)
        yield harness.service.drain()
        self.assertEqual(len(resource.requests), 6)
        self.assertEqual((yield harness.queued()), [])
        rows = yield harness.results(*(hashlib.sha256(f).hexdigest() for f in files))
        self.assertEqual([r["found"] for r in rows], [False] * 6)

    @defer.inlineCallbacks
    def test_429_holds_and_survives_restart(self):
        """A 429 with Retry-After holds the provider and queues the lookup;
        a new service on the same database runs it once the hold ends."""
        resource = providers.Canned(429, providers.ABUSEIPDB_429, {"Retry-After": "120"})
        enricher, _ = http_enricher(AbuseIPDB(), resource)
        harness = yield Harness.start(self, [enricher])
        yield harness.service.submit(message(harness.tmp))
        self.assertEqual((yield harness.queued()), [("abuseipdb", "8.8.8.8", 0,
                                                     MIDNIGHT + 120)])
        [event] = harness.events("smtplatrine.enrichment.queued")
        self.assertEqual(event["reason"], "HTTP 429 Too Many Requests")

        answer = providers.Canned(200, providers.ABUSEIPDB_CHECK)
        enricher, _ = http_enricher(AbuseIPDB(), answer)
        restarted = yield Harness.start(self, [enricher], database_path=harness.path)
        restarted.clock.advance(119)
        yield restarted.service.drain()
        self.assertEqual(answer.requests, [])
        restarted.clock.advance(1)
        yield restarted.service.drain()
        self.assertEqual(len(answer.requests), 1)
        [row] = yield restarted.results("8.8.8.8")
        self.assertEqual(row["result"]["confidence_score"], 100)

    @defer.inlineCallbacks
    def test_hang_times_out_and_retries(self):
        """A provider that never answers fails after the timeout, once, with
        its reason; the lookup is tried again later; the other enricher's
        result is stored meanwhile."""
        hanging = providers.Canned(hang=True)
        enricher, _ = http_enricher(OTX(), hanging)
        recorder = Recorder(kinds=("ip",))
        harness = yield Harness.start(self, [enricher, recorder], retry_delay=30.0)
        done = harness.service.submit(message(harness.tmp))
        while not hanging.requests:
            yield a_moment()
        harness.clock.advance(20)
        yield done
        [event] = harness.events("smtplatrine.enrichment.failed")
        self.assertEqual((event["provider"], event["reason"], event["retry"]),
                         ("otx", "no answer within 20 s", True))
        self.assertEqual((yield harness.queued()), [("otx", "8.8.8.8", 1, MIDNIGHT + 50)])
        rows = yield harness.results("8.8.8.8")
        self.assertEqual([r["provider"] for r in rows], ["recorder"])

    @defer.inlineCallbacks
    def test_retries_back_off_then_give_up(self):
        """A lookup that keeps timing out is tried three times in all, 30
        and then 60 seconds after each failure, and then left."""
        hanging = providers.Canned(hang=True)
        enricher, _ = http_enricher(OTX(), hanging)
        harness = yield Harness.start(self, [enricher], retry_delay=30.0)

        @defer.inlineCallbacks
        def hang_until_timeout(d):
            asked = len(hanging.requests)
            while len(hanging.requests) == asked:
                yield a_moment()
            harness.clock.advance(20)
            yield d

        yield hang_until_timeout(harness.service.submit(message(harness.tmp)))
        self.assertEqual((yield harness.queued()), [("otx", "8.8.8.8", 1, MIDNIGHT + 50)])
        harness.clock.advance(30)
        yield hang_until_timeout(harness.service.drain())
        self.assertEqual((yield harness.queued()), [("otx", "8.8.8.8", 2, MIDNIGHT + 130)])
        harness.clock.advance(60)
        yield hang_until_timeout(harness.service.drain())
        self.assertEqual((yield harness.queued()), [])
        self.assertEqual([e["retry"] for e in harness.events("smtplatrine.enrichment.failed")],
                         [True, True, False])
        self.assertEqual(len(hanging.requests), 3)

    @defer.inlineCallbacks
    def test_broken_enrichers_isolated(self):
        """An enricher that raises, one that returns garbage and one whose
        result is no JSON each fail once with their reason, and the
        others' results are stored."""
        broken = [Recorder(name="raises", answer=ValueError("bug")),
                  Recorder(name="garbage", answer=lambda: defer.succeed("junk")),
                  Recorder(name="unjson", answer=Result({"x": object()}))]
        good = Recorder(kinds=("ip",))
        harness = yield Harness.start(self, [*broken, good])
        yield harness.service.submit(message(harness.tmp, received=()))
        failed = [e for e in harness.events("smtplatrine.enrichment.failed")
                  if e["indicator"] == "example.net"]
        self.assertEqual(sorted((e["provider"], e["reason"]) for e in failed), [
            ("garbage", "the enricher returned 'junk', not a Result"),
            ("raises", "the enricher raised ValueError('bug')"),
            ("unjson", "the result cannot be stored as JSON: Object of type object"
                       " is not JSON serializable")])
        rows = yield harness.results("bit.ly", "example.net")
        self.assertEqual(rows, [])
        self.assertEqual(good.seen, [])
        yield harness.service.submit(message(harness.tmp))
        rows = yield harness.results("8.8.8.8")
        self.assertEqual([r["provider"] for r in rows], ["recorder"])


def a_moment():
    """Let the real reactor run the database's thread callbacks once."""
    return task.deferLater(reactor, 0.01, lambda: None)


@implementer(IPlugin, IEnricher)
@attrs.frozen
class Unpacker(Recorder):
    """Finds *inside* (Members) in every file, asks for sightings, and
    notes each sighting its ``sighted`` is called with."""
    name: str = "unpacker"
    kinds: tuple = ("sha256",)
    inside: tuple = ()
    sightings = True
    sighted_with: list = attrs.field(factory=list)

    def lookup(self, kind, indicator, sighting=None):
        self.seen.append((kind, indicator, sighting))
        files = self.inside if indicator == self.inside_of else ()
        return defer.succeed(Result({"files": len(files)}, files=files))

    @property
    def inside_of(self):
        return hashlib.sha256(b"archive").hexdigest()

    def sighted(self, cursor, dialect, sighting, data):
        self.sighted_with.append((sighting.message, sighting.indicator, data))


def member(name, data, parent=None, position=0):
    return Member(name, len(data), hashlib.sha256(data).hexdigest(),
                  hashlib.md5(data).hexdigest(), hashlib.sha1(data).hexdigest(),
                  parent, position)


class FileEnricherTests(unittest.TestCase):
    """Enrichers of attachments: sightings, ``sighted``, and the files
    they find inside, which become attachments of the message."""

    @defer.inlineCallbacks
    def start(self, enrichers):
        harness = yield Harness.start(self, enrichers)

        def stored(prepared):
            return defer.Deferred.fromCoroutine(harness.database.run(
                records.save_message, harness.database.dialect, prepared, MIDNIGHT))
        harness.store = stored
        return harness

    def attachments(self, harness):
        def rows(cursor):
            cursor.execute("SELECT message_id, position, filename, disposition, sha256,"
                           " attachment_id, parent_id FROM honeypot_attachments"
                           " ORDER BY message_id, position")
            return [tuple(row) for row in cursor.fetchall()]
        return defer.Deferred.fromCoroutine(harness.database.run(rows))

    @defer.inlineCallbacks
    def test_members_become_attachments(self):
        """The files found inside an attachment become its message's
        attachments, linked to their parents; every other enricher looks
        at them, the one that found them does not; a second message with
        the same attachment gets them too, from the database."""
        inside = (member("inner.zip", b"inner"), member("doc.txt", b"doc", parent=0),
                  member("listed.bin", b"", position=1))
        inside = (*inside[:2], attrs.evolve(inside[2], sha256=None))
        unpacker = Unpacker(inside=inside)
        recorder = Recorder(kinds=("sha256",))
        harness = yield self.start([unpacker, recorder])
        first = message(harness.tmp, [b"archive"])
        second = message(harness.tmp, [b"archive"])
        for sent in (first, second):
            yield harness.store(sent)
            yield harness.service.submit(sent)
        rows = yield self.attachments(harness)
        for sent in (first, second):
            mine = [r for r in rows if r[0] == sent.metadata.message]
            ids = {r[5]: r[2] for r in mine}
            self.assertEqual([(r[1], r[2], r[3], ids.get(r[6])) for r in mine], [
                (0, "f0.bin", "attachment", None), (1, "inner.zip", "member", "f0.bin"),
                (2, "doc.txt", "member", "inner.zip")])
        self.assertEqual(sorted(i for _, i in recorder.seen), sorted([
            hashlib.sha256(b"archive").hexdigest(), hashlib.sha256(b"inner").hexdigest(),
            hashlib.sha256(b"doc").hexdigest()]))
        self.assertEqual([i for _, i, _ in unpacker.seen],
                         [hashlib.sha256(b"archive").hexdigest()])
        self.assertEqual([m for m, _, _ in unpacker.sighted_with],
                         [first.metadata.message, second.metadata.message])
        stored = [e for e in harness.events("smtplatrine.attachment.stored")]
        self.assertEqual(sorted(e["filename"] for e in stored),
                         ["doc.txt", "doc.txt", "inner.zip", "inner.zip"])

    @defer.inlineCallbacks
    def test_sighting(self):
        """An enricher that asks gets where the message showed the file:
        its name, declared type, row and the message's body."""
        unpacker = Unpacker()
        harness = yield self.start([unpacker])
        prepared = message(harness.tmp, [b"file"])
        yield harness.store(prepared)
        yield harness.service.submit(prepared)
        [(_, _, sighting)] = unpacker.seen
        self.assertEqual((sighting.filename, sighting.content_type, sighting.source,
                          sighting.depth, sighting.body.strip(), sighting.attachment_id),
                         ("f0.bin", "application/octet-stream", "attachment", 0,
                          "see http://bit.ly/x",
                          records.attachment_id(prepared.metadata.message, 0)))

    @defer.inlineCallbacks
    def test_quota_sees_the_first_files(self):
        """A provider with a quota sees a message's first 20 files only;
        one without sees all of them."""
        inside = tuple(member(f"m{i}.txt", b"m%d" % i, position=i) for i in range(30))
        unpacker = Unpacker(inside=inside)
        free = Recorder(name="free", kinds=("sha256",))
        quota = Recorder(name="quota", kinds=("sha256",), per_day=1000)
        harness = yield self.start([unpacker, free, quota])
        prepared = message(harness.tmp, [b"archive"])
        yield harness.store(prepared)
        yield harness.service.submit(prepared)
        self.assertEqual(len(free.seen), 31)
        self.assertEqual(len(quota.seen), indicators.PER_KIND)

    @defer.inlineCallbacks
    def test_queued_lookup_keeps_its_sighting(self):
        """A lookup that waited in the queue gets the sighting back from the
        stored message."""
        unpacker = Unpacker(per_minute=1)
        harness = yield self.start([unpacker])
        prepared = message(harness.tmp, [b"one", b"two"])
        yield harness.store(prepared)
        yield harness.service.submit(prepared)
        self.assertEqual(len(unpacker.seen), 1)
        harness.clock.advance(60)
        yield harness.service.drain()
        [_, (_, _, later)] = unpacker.seen
        self.assertEqual((later.filename, later.source, later.body.strip()),
                         ("f1.bin", "attachment", "see http://bit.ly/x"))

    @defer.inlineCallbacks
    def test_summary_in_the_event(self):
        """An enricher's summary adds flat fields to its enrichment event;
        what would override the event's own fields, or is not flat, is
        left out, and attacker text is escaped."""
        @implementer(IPlugin, IEnricher)
        @attrs.frozen
        class Summarised(Recorder):
            def summary(self, data):
                return {"verdict": "bad\nline", "score": 7, "provider": "x",
                        "format": "y", "nested": {"a": 1}}
        harness = yield self.start([Summarised(kinds=("sha256",))])
        prepared = message(harness.tmp, [b"file"])
        yield harness.store(prepared)
        yield harness.service.submit(prepared)
        [event] = harness.events("smtplatrine.enrichment")
        self.assertEqual((event["verdict"], event["score"], event["provider"]),
                         ("bad\\nline", 7, "recorder"))
        self.assertNotIn("format", event)
        self.assertNotIn("nested", event)
