"""End to end: a message sent over TCP to ``twistd smtplatrine`` is
enriched from GeoIP files, a DNS server and the three HTTP APIs, all played
on 127.0.0.1 by ``tests.providers``."""

import base64
import hashlib
import json
import shutil
import subprocess
import sys

from tests.mariadb import mysql_sections
from tests.mmdb import asn_database, city_database, city_record
from tests.process import ROOT, environment, reachable_directory
from tests.test_e2e import HoneypotTestCase

ATTACHMENT = b"MZ\x90\x00 not really a program"
SHA256 = hashlib.sha256(ATTACHMENT).hexdigest()
# The message came through the sender's relay from 8.8.8.8: a public
# address, which an enricher may look up, unlike the loopback client.  The
# HTTP APIs and DNS asked are the local ones, so nothing leaves the machine.
MESSAGE = (
    b"Received: from origin.example.net (origin.example.net [8.8.8.8])\r\n"
    b"\tby relay.example.net with ESMTP; Mon, 2 Mar 2026 10:00:00 +0000\r\n"
    b"From: bot@spam.example.org\r\nTo: victim@example.org\r\nSubject: invoice\r\n"
    b"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"
    b"--b\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n"
    b"--b\r\nContent-Type: application/octet-stream\r\n"
    b"Content-Disposition: attachment; filename=\"invoice.exe\"\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\n"
    + base64.b64encode(ATTACHMENT) + b"\r\n--b--\r\n")


class EnrichmentTests(HoneypotTestCase):
    """With SQLite."""

    def database_sections(self):
        return {}

    def setUp(self):
        self.files = reachable_directory()
        self.addCleanup(shutil.rmtree, self.files, True)
        self.requests = self.files / "requests.jsonl"
        self.providers = subprocess.Popen(
            [sys.executable, "-m", "tests.providers", str(self.requests)], cwd=ROOT,
            env=environment(), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.addCleanup(self.providers.wait, 10)
        self.addCleanup(self.providers.stdin.close)
        ports = json.loads(self.providers.stdout.readline())
        city = city_database(self.files / "city.mmdb", {"8.8.8.0/24": city_record(
            "US", "United States", "NA", "North America", eu=False,
            location=(37.751, -97.822, 1000, "America/Chicago"))})
        asn = asn_database(self.files / "asn.mmdb", {"8.8.8.0/24": (15169, "GOOGLE")})
        for path in (city, asn):
            path.chmod(0o644)
        api = f"http://127.0.0.1:{ports['http']}"
        self.sections = {"meta": {
            "geoip_main_file": city, "geoip_asn_file": asn,
            "rdns_server": f"127.0.0.1:{ports['dns']}",
            "abuseipdb_enable": "true", "abuseipdb_key": "abuse-key",
            "abuseipdb_url": f"{api}/abuseipdb/api/v2",
            "vt_enable": "true", "vt_key": "vt-key", "vt_url": f"{api}/vt/api/v3",
            "otx_enable": "true", "otx_key": "otx-key", "otx_url": f"{api}/otx/api/v1"},
            **self.database_sections()}
        super().setUp()

    def results(self):
        return {(row["provider"], row["indicator"]): row for row in self.honeypot.query(
            "SELECT * FROM honeypot_enrichment")}

    def test_message_enriched(self):
        """GeoIP, ASN and reverse DNS rows for the message's public origin,
        and rows from each HTTP provider; loopback is never looked up."""
        client = self.smtp()
        client.sendmail("bot@spam.example.org", ["victim@example.org"], MESSAGE)
        client.quit()
        expected = {("geoip_city", "8.8.8.8"), ("geoip_asn", "8.8.8.8"),
                    ("rdns", "8.8.8.8"), ("abuseipdb", "8.8.8.8"), ("otx", "8.8.8.8"),
                    ("otx", SHA256), ("virustotal", SHA256), ("filetype", SHA256),
                    ("archive", SHA256), ("document", SHA256)}
        rows = self.honeypot.wait_for(
            lambda: (lambda r: r if expected <= set(r) else None)(self.results()))
        self.assertEqual(set(rows), expected)
        result = {key: json.loads(row["result"] or "null") for key, row in rows.items()}
        self.assertEqual(result["rdns", "8.8.8.8"], {"ptr": ["dns.google"]})
        self.assertEqual(result["geoip_asn", "8.8.8.8"],
                         {"asn": 15169, "organization": "GOOGLE"})
        self.assertEqual(
            {k: result["geoip_city", "8.8.8.8"][k] for k in ("country_code", "time_zone")},
            {"country_code": "US", "time_zone": "America/Chicago"})
        self.assertEqual(result["abuseipdb", "8.8.8.8"]["confidence_score"], 100)
        self.assertEqual(result["virustotal", SHA256]["malicious"], 2)
        self.assertEqual(result["otx", SHA256]["pulse_count"], 1)
        # Beside them, the local analysis: "MZ" and a few bytes are no program.
        self.assertEqual((result["filetype", SHA256]["mime"], result["archive", SHA256],
                          result["document", SHA256]), ("application/octet-stream", None, None))
        asked = [json.loads(line) for line in self.requests.read_text().splitlines()]
        self.assertEqual(sorted(uri for uri, _ in asked), sorted([
            "/abuseipdb/api/v2/check?ipAddress=8.8.8.8&maxAgeInDays=90",
            "/otx/api/v1/indicators/IPv4/8.8.8.8/general",
            f"/otx/api/v1/indicators/file/{SHA256}/general",
            f"/vt/api/v3/files/{SHA256}"]))
        self.assertNotIn("127.0.0.1", json.dumps(list(rows)))
        self.honeypot.wait_for(lambda: self.enrichment_events() == expected)

    def enrichment_events(self):
        """(provider, indicator) of the enrichment events written so far."""
        lines = (self.honeypot.data / "events.jsonl").read_text().splitlines()
        return {(e["provider"], e["indicator"]) for e in map(json.loads, lines)
                if e["eventid"] == "smtplatrine.enrichment"}

    def test_export(self):
        """``smtplatrine export`` lists each message's enrichment results,
        with where the message showed the indicator."""
        client = self.smtp()
        client.sendmail("bot@spam.example.org", ["victim@example.org"], MESSAGE)
        client.quit()
        self.honeypot.wait_for(lambda: len(self.results()) == 10)
        out = self.honeypot.directory / "export.jsonl"
        result = subprocess.run(
            [sys.executable, "-c", "from smtplatrine.cli import main; main()", "export",
             "--config", "etc", "--output", str(out), "--no-raw"],
            cwd=self.honeypot.directory, env=environment(), capture_output=True, timeout=30)
        self.assertEqual(result.returncode, 0, result.stderr)
        [record] = [json.loads(line) for line in out.read_text().splitlines()]
        self.assertEqual(sorted((e["provider"], e["source"]) for e in record["enrichment"]),
                         [("abuseipdb", "received"), ("archive", "attachment"),
                          ("document", "attachment"), ("filetype", "attachment"),
                          ("geoip_asn", "received"), ("geoip_city", "received"),
                          ("otx", "attachment"), ("otx", "received"), ("rdns", "received"),
                          ("virustotal", "attachment")])
        self.assertTrue(all(e["looked_up"].endswith("Z") for e in record["enrichment"]))


class MariaDBEnrichmentTests(EnrichmentTests):
    """The same with MariaDB, where sensors share cache, quotas and queue."""

    def database_sections(self):
        return mysql_sections(self)
