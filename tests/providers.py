"""The providers' HTTP APIs and a DNS server, played by the tests.

The answers have the shapes each provider documents (AbuseIPDB v2
``/check``, VirusTotal v3 ``/files/{id}`` and its error object, OTX
``/api/v1/indicators/{type}/{indicator}/general``).  :class:`Canned`
serves one answer and notes each request; unit tests put it behind
``treq.testing.StubTreq``.  Run as a program (``python -m tests.providers
LOG``) it serves all three APIs and PTR records on 127.0.0.1 for the
end-to-end tests, prints ``{"http": PORT, "dns": PORT}`` and ends when its
standard input closes.
"""

import json
import sys

from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

# docs.abuseipdb.com, "CHECK Endpoint", the example answer (IP changed).
ABUSEIPDB_CHECK = {"data": {
    "ipAddress": "8.8.8.8", "isPublic": True, "ipVersion": 4, "isWhitelisted": False,
    "abuseConfidenceScore": 100, "countryCode": "CN", "countryName": "China",
    "usageType": "Data Center/Web Hosting/Transit",
    "isp": "Tencent Cloud Computing (Beijing) Co. Ltd", "domain": "tencent.com",
    "hostnames": [], "isTor": False, "totalReports": 1, "numDistinctUsers": 1,
    "lastReportedAt": "2018-12-20T20:55:14+00:00"}}
# The same page, "429 Too Many Requests".
ABUSEIPDB_429 = {"errors": [{"detail": "Daily rate limit of 1000 requests exceeded for"
                                       " this endpoint. See headers for additional"
                                       " details.", "status": 429}]}


def virustotal_file(sha256):
    """docs.virustotal.com, "Files" object, trimmed to what we read."""
    return {"data": {"type": "file", "id": sha256,
                     "links": {"self": f"https://www.virustotal.com/api/v3/files/{sha256}"},
                     "attributes": {
                         "type_description": "Win32 EXE", "type_tag": "peexe",
                         "first_submission_date": 1577836800,
                         "names": ["invoice.exe", "invoice.pdf.exe"],
                         "meaningful_name": "invoice.exe",
                         "last_analysis_stats": {
                             "harmless": 0, "type-unsupported": 4, "suspicious": 1,
                             "confirmed-timeout": 0, "timeout": 0, "failure": 0,
                             "malicious": 2, "undetected": 60},
                         "last_analysis_results": {
                             "Kaspersky": {"category": "malicious", "engine_name": "Kaspersky",
                                           "method": "blacklist",
                                           "result": "HEUR:Trojan.Win32.Generic"},
                             "ESET-NOD32": {"category": "malicious",
                                            "engine_name": "ESET-NOD32",
                                            "method": "blacklist",
                                            "result": "Win32/Agent.ABC"},
                             "Avast": {"category": "undetected", "engine_name": "Avast",
                                       "method": "blacklist", "result": None}}}}}


# docs.virustotal.com, "Errors".
VIRUSTOTAL_NOT_FOUND = {"error": {"code": "NotFoundError",
                                  "message": "File \"x\" not found"}}
VIRUSTOTAL_429 = {"error": {"code": "QuotaExceededError",
                            "message": "Quota exceeded"}}


def otx_general(indicator, kind):
    """otx.alienvault.com/api, "indicators/{type}/{indicator}/general"."""
    return {"indicator": indicator, "type": kind, "type_title": kind,
            "sections": ["general", "reputation"], "reputation": 0,
            "pulse_info": {"count": 1, "references": [], "related": {}, "pulses": [{
                "id": "5d0a3e8c2a1e9a5b7c3e4f10", "name": "SMTP spam sources",
                "description": "", "tags": ["spam", "smtp"], "TLP": "white",
                "created": "2019-06-19T13:50:36.123000",
                "modified": "2019-07-19T00:00:00.000000",
                "author": {"username": "someone"}}]}}


class Canned(Resource):
    """Answers every request below it with *code*, *body* (JSON-encoded
    unless bytes; a callable gets the request path) and *headers*; with
    *hang* it never answers.  ``requests`` keeps (path with query,
    {header: value})."""
    isLeaf = True

    def __init__(self, code=200, body=None, headers=None, hang=False):
        super().__init__()
        self.code, self.body, self.headers, self.hang = code, body, headers or {}, hang
        self.requests = []

    def render_GET(self, request):
        self.requests.append((request.uri.decode(), {
            k.decode().lower(): v[0].decode()
            for k, v in request.requestHeaders.getAllRawHeaders()}))
        if self.hang:
            return NOT_DONE_YET
        request.setResponseCode(self.code)
        for name, value in self.headers.items():
            request.setHeader(name, value)
        body = self.body(request.path.decode()) if callable(self.body) else self.body
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        request.setHeader("Content-Type", "application/json")
        return body


def _serve(log_path):
    from twisted.internet import defer, reactor, stdio
    from twisted.names import dns, error, server
    from twisted.names.common import ResolverBase
    from twisted.protocols.basic import LineReceiver
    from twisted.web.server import Site

    class Logged(Canned):
        def render_GET(self, request):
            body = super().render_GET(request)
            with open(log_path, "a") as log:
                log.write(json.dumps(self.requests[-1]) + "\n")
            return body

    root = Resource()
    root.putChild(b"abuseipdb", Logged(200, ABUSEIPDB_CHECK))
    root.putChild(b"vt", Logged(200, lambda path: virustotal_file(path.rsplit("/", 1)[1])))
    root.putChild(b"otx", Logged(200, lambda path: otx_general(path.split("/")[-2], "IPv4")))

    class PTR(ResolverBase):
        """8.8.8.8 is dns.google; every other name does not exist."""
        def _lookup(self, name, cls, kind, timeout):
            if kind == dns.PTR and name == b"8.8.8.8.in-addr.arpa":
                return defer.succeed(([dns.RRHeader(
                    name, dns.PTR, auth=True, payload=dns.Record_PTR(b"dns.google"))], [], []))
            return defer.fail(error.AuthoritativeDomainError(name))

    factory = server.DNSServerFactory(authorities=[PTR()])
    dns_port = reactor.listenUDP(0, dns.DNSDatagramProtocol(factory), interface="127.0.0.1")
    http_port = reactor.listenTCP(0, Site(root), interface="127.0.0.1")

    class Stdin(LineReceiver):
        def connectionLost(self, reason):
            reactor.stop()

    stdio.StandardIO(Stdin())
    print(json.dumps({"http": http_port.getHost().port, "dns": dns_port.getHost().port}),
          flush=True)
    reactor.run()


if __name__ == "__main__":
    _serve(sys.argv[1])
