"""Exports, the block list and the live view as an analyst uses them: a
real ``twistd smtplatrine`` with its dashboard, mail sent over SMTP by the
test, headless Chromium.  What comes out is read back by independent
readers (stix2, json, csv, mailbox, unzip) and compared with what the test
sent (hashlib); a block list change made on the page is checked on a real
SMTP connection, against the refusal a real Postfix gives.
"""

import csv
import hashlib
import io
import json
import mailbox
import re
import smtplib
import socket
import subprocess
import time
import urllib.parse

from twisted.trial import unittest

from tests import test_web_e2e as web
from tests.process import banner, require

PDF = web.PDF
PHISH_URL = "http://phish.example.net/login?id=7"
# The refusal and greeting of Postfix (tests/test_acl_e2e.py).
BLOCKED = "127.0.0.3"
REFUSED = (f"554 5.7.1 <unknown[{BLOCKED}]>: Client host rejected: Access"
           f" denied\r\n").encode()
BANNER = b"220 mail.example.com ESMTP Postfix (Debian/GNU)\r\n"
MEMO = (b"From: ceo@corp.example\r\nTo: staff@corp.example\r\nSubject: Quarterly memo\r\n"
        b"\r\nFrom the desk of the CEO\r\n>From a quoted mail\r\nFromage, not a From_ line\r\n")
LIVE_SUBJECT = "<i>Live</i> 42"


class ExportsFixture(web.DashboardFixture):
    """The dashboard's fixture with mail of its own, and a block list
    reloaded every second."""

    @classmethod
    def send_mail(cls):
        phish = web.mail("Account notice", '"Bank" <service@bank-secure.example>',
                         f"Log in at {PHISH_URL} today.", attachment=("statement.pdf", PDF))
        cls.sent = {"phish": phish, "memo": MEMO}
        client = smtplib.SMTP("127.0.0.1", cls.honeypot.port, timeout=10)
        client.ehlo("spammer.example")
        for key in ("phish", "memo"):
            client.sendmail("bounce@spam-sender.example", ["victim@example.org"],
                            cls.sent[key])
        client.quit()
        assert cls.honeypot.wait_for(lambda: len(cls.honeypot.query(
            "SELECT message_id FROM honeypot_emails")) == 2 and cls.honeypot.drained())
        rows = cls.honeypot.query("SELECT message_id, header_subject FROM honeypot_emails")
        cls.ids = {("phish" if r["header_subject"] == "Account notice" else "memo"):
                   r["message_id"] for r in rows}

    def admin_password(self):
        return next(line.split("with password ")[1].split()[0]
                    for line in self.honeypot.output().splitlines()
                    if "created user admin with password" in line)

    def export_links(self):
        return {a.text: urllib.parse.urlsplit(a.get_attribute("href"))
                for a in self.find_all(".exports a")}

    def get(self, split):
        status, headers, body = self.http(f"{split.path}?{split.query}")
        self.assertEqual(status, 200, body[:300])
        return headers, body

    def greeting(self, source):
        with socket.create_connection(("127.0.0.1", self.honeypot.port), 5,
                                      source_address=(source, 0)) as s:
            return banner(s)


class ExportsTestsMixin(ExportsFixture):

    def test_exports_forensic(self):
        """The search page offers every export to the forensic role; each
        reads back as what the test sent: STIX through stix2 (saved by the
        browser), MISP, CSV, an mbox and an encrypted zip of .eml files
        byte for byte."""
        require("unzip")
        self.login("fred")
        self.open("/messages?q=" + urllib.parse.quote("from:spam-sender.example"))
        links = self.export_links()
        self.assertEqual(sorted(links), sorted(["JSON lines", "CSV", "STIX 2.1", "MISP event",
                                                "mbox", "zip of .eml (infected)"]))
        self.assertEqual(urllib.parse.parse_qs(links["CSV"].query),
                         {"q": ["from:spam-sender.example"]})
        self.shot("exports")
        pdf = hashlib.sha256(PDF).hexdigest()

        # STIX, as the browser saves it.
        import stix2
        self.find(".exports a[href*='messages.stix']").click()
        saved = self.honeypot.wait_for(lambda: [
            p for p in self.downloads.iterdir() if p.suffix == ".json"], timeout=web.WAIT)
        bundle = stix2.parse(saved[0].read_bytes(), allow_custom=False)
        patterns = {o.pattern for o in bundle.objects if o.type == "indicator"}
        self.assertEqual(patterns, {f"[url:value = '{PHISH_URL}']",
                                    f"[file:hashes.'SHA-256' = '{pdf}']"})
        by_id = {o.id: o for o in bundle.objects}
        observed = {(by_id[o.object_refs[0]].type, getattr(by_id[o.object_refs[0]], "value",
                                                           None)): o.number_observed
                    for o in bundle.objects if o.type == "observed-data"}
        self.assertEqual(observed[("ipv4-addr", "127.0.0.1")], 2)
        self.assertEqual(observed[("domain-name", "spam-sender.example")], 2)
        self.assertEqual(observed[("email-addr", "bounce@spam-sender.example")], 2)

        _, body = self.get(links["MISP event"])
        attributes = {(a["type"], a["value"]): a["to_ids"]
                      for a in json.loads(body)["Event"]["Attribute"]}
        self.assertEqual(attributes, {
            ("ip-src", "127.0.0.1"): False, ("domain", "spam-sender.example"): False,
            ("email-src", "bounce@spam-sender.example"): False, ("url", PHISH_URL): True,
            ("sha256", pdf): True})

        headers, body = self.get(links["CSV"])
        self.assertEqual(headers["Content-Type"], "text/csv; charset=utf-8")
        rows = list(csv.DictReader(io.StringIO(body.decode())))
        self.assertEqual(sorted(r["header_subject"] for r in rows),
                         ["Account notice", "Quarterly memo"])
        self.assertEqual({r["client_ip"] for r in rows}, {"127.0.0.1"})

        _, body = self.get(links["mbox"])
        path = self.scratch / "export.mbox"
        path.write_bytes(body)
        box = mailbox.mbox(str(path), create=False)
        got = sorted(hashlib.sha256(re.sub(rb"(?m)^>(>*From )", rb"\1",
                                           box.get_bytes(k))).hexdigest() for k in box.keys())
        box.close()
        self.assertEqual(got, sorted(hashlib.sha256(m).hexdigest()
                                     for m in self.sent.values()))

        headers, body = self.get(links["zip of .eml (infected)"])
        self.assertEqual(headers["Content-Type"], "application/zip")
        archive, out = self.scratch / "export.zip", self.scratch / "export-zip"
        archive.write_bytes(body)
        result = subprocess.run(["unzip", "-P", "infected", "-d", str(out), str(archive)],
                                capture_output=True, timeout=30)
        self.assertEqual(result.returncode, 0, result.stderr)
        for key, sent in self.sent.items():
            data = (out / f"{self.ids[key]}.eml").read_bytes()
            self.assertEqual(hashlib.sha256(data).hexdigest(), hashlib.sha256(sent).hexdigest())

    def test_exports_statistical(self):
        """The statistical role is offered no mbox or zip and gets 403 for
        them and for the downloads; its exports leave out bodies and URLs."""
        self.login("ana")
        self.open("/messages")
        links = self.export_links()
        self.assertEqual(sorted(links), ["CSV", "JSON lines", "MISP event", "STIX 2.1"])
        phish = self.ids["phish"]
        for path in ("/export/messages.mbox", "/export/messages.zip",
                     f"/messages/{phish}/raw", f"/messages/{phish}/zip"):
            self.assertEqual(self.http(path)[0], 403, path)
            self.assertEqual(self.http("/api" + path, self.tokens["statistical"])[0], 403, path)
        _, body = self.get(links["JSON lines"])
        records = [json.loads(line) for line in body.splitlines()]
        self.assertEqual(len(records), 2)
        self.assertFalse(any("body_text" in r or "urls" in r for r in records))
        _, body = self.get(links["MISP event"])
        self.assertNotIn("url", {a["type"] for a in json.loads(body)["Event"]["Attribute"]})
        self.assertNotIn(PHISH_URL.encode(), body)

    def test_block_list(self):
        """An admin blocks an address on the page: within the reload
        interval (1 s here) the sensor refuses it as Postfix would, its hits
        show on the page; removed, it is served again.  The statistical
        role reads the list and cannot change it."""
        self.assertEqual(self.greeting(BLOCKED), BANNER)
        self.login("admin", self.admin_password())
        self.submit(self.find("header nav a[href='/blocklist']"))
        self.find("form.filters input[name=entries]").send_keys(BLOCKED)
        self.find("form.filters input[name=reason]").send_keys("<b>e2e</b> spam run")
        self.submit(self.find("form.filters button[value=add]"))
        self.assertIn(f"Added {BLOCKED}/32.", self.visible(".notice").text)
        self.honeypot.wait_for(lambda: self.greeting(BLOCKED) == REFUSED, timeout=10)
        self.assertEqual(self.greeting("127.0.0.1"), BANNER)

        # The sensor writes the hits back at its next reload.
        self.honeypot.wait_for(lambda: self.honeypot.query(
            "SELECT tries FROM acl_blacklist_ip WHERE network = ? AND tries >= 1",
            f"{BLOCKED}/32"), timeout=10)
        self.open("/blocklist")
        row = next(r for r in self.find_all("table.list tbody tr")
                   if r.text.startswith(BLOCKED))
        cells = [td.text for td in row.find_elements("css selector", "td")]
        self.assertEqual(cells[:3], [f"{BLOCKED}/32", "address", "<b>e2e</b> spam run"])
        self.assertGreaterEqual(int(cells[5]), 1)
        self.shot("blocklist")

        admin_cookie = self.driver.get_cookie("smtplatrine_session")["value"]
        self.driver.delete_all_cookies()
        self.login("ana")
        self.open("/blocklist")
        self.assertEqual(self.find_all("form.filters input[name=entries]"), [])
        self.assertIn(f"{BLOCKED}/32", self.find("table.list").text)
        csrf = self.find("form.logout input[name=csrf]").get_attribute("value")
        data = urllib.parse.urlencode({"action": "remove", "entries": BLOCKED,
                                       "csrf": csrf}).encode()
        self.assertEqual(self.http("/blocklist", data=data)[0], 403)
        self.assertEqual(self.greeting(BLOCKED), REFUSED)

        self.driver.delete_all_cookies()
        self.open("/login")
        self.driver.add_cookie({"name": "smtplatrine_session", "value": admin_cookie})
        self.open("/blocklist")
        row = next(r for r in self.find_all("table.list tbody tr")
                   if r.text.startswith(BLOCKED))
        self.submit(row.find_element("css selector", "button[value=remove]"))
        self.assertIn(f"Removed {BLOCKED}/32.", self.visible(".notice").text)
        self.honeypot.wait_for(lambda: self.greeting(BLOCKED) == BANNER, timeout=10)

    def test_live(self):
        """A session sent while the Live page is open appears without a
        reload within two seconds of being stored, its subject as text, and
        then its transcript."""
        from selenium.webdriver.support.ui import WebDriverWait
        self.login("fred")
        self.submit(self.find("header nav a[href='/live']"))
        self.wait(lambda d: self.find("#live-state").text == "live")
        client = smtplib.SMTP("127.0.0.1", self.honeypot.port, timeout=10)
        client.ehlo("live-e2e.example")
        client.sendmail("live@sender.example", ["victim@example.org"],
                        web.mail(LIVE_SUBJECT, "live@sender.example", "hello"))
        client.quit()
        self.honeypot.wait_for(lambda: self.honeypot.query(
            "SELECT message_id FROM honeypot_emails WHERE header_subject = ?", LIVE_SUBJECT))
        stored = time.monotonic()
        WebDriverWait(self.driver, 3).until(lambda d: LIVE_SUBJECT in [
            a.text for a in self.find_all("table.live-messages td.subject a")])
        # Looked at once a second: it shows within two (three, for a loaded machine).
        self.assertLess(time.monotonic() - stored, 3.0)
        self.assertEqual(self.find_all("table.live-messages i"), [])
        link = self.find("table.live-messages td.subject a").get_attribute("href")
        self.assertRegex(urllib.parse.urlsplit(link).path, r"\A/messages/[0-9a-f-]{36}\Z")
        self.wait(lambda d: any("C: ehlo live-e2e.example" in pre.text
                                for pre in self.find_all("table.live-sessions pre")))
        row = next(r for r in self.find_all("table.live-sessions tbody tr")
                   if "live-e2e.example" in r.text)
        self.assertIn("127.0.0.1", row.text)
        self.shot("live")

    def test_streams_left_midway(self):
        """Clients that leave a live stream go without a trace (setUp
        checks the log) and make room: the streams a user may open are
        free again."""
        import urllib.request
        token = self.tokens["statistical"]

        def stream():
            request = urllib.request.Request(self.base + "/api/live/events",
                                             headers={"Authorization": f"Bearer {token}"})
            try:
                response = urllib.request.urlopen(request, timeout=web.WAIT)
            except urllib.error.HTTPError as e:
                return e.code, None
            self.assertEqual(response.fp.readline(), b"14\r\n")
            return response.status, response
        opened = [stream() for _ in range(4)]
        self.assertEqual([status for status, _ in opened], [200] * 4)
        self.assertEqual(stream()[0], 503)
        for _, response in opened:
            response.close()

        def admitted():
            status, response = stream()
            if response is not None:
                response.close()
            return status == 200
        self.honeypot.wait_for(admitted)


class SQLiteExportsTests(ExportsTestsMixin, unittest.TestCase):
    holder = None
    database_sections = staticmethod(lambda holder: {
        "protection": {"acl_reload_interval": 1}})


class MariaDBExportsTests(ExportsTestsMixin, unittest.TestCase):
    """The same over MariaDB (the live view follows its seq column there)."""
    holder = web._Holder()
    database_sections = staticmethod(lambda holder: {
        **web._mariadb(holder), "protection": {"acl_reload_interval": 1}})
