"""The overview and the pivot pages in headless Chromium, over a real
``twistd smtplatrine`` that the test sent mail and AUTH attempts to from
two loopback addresses: counts and top entries are what was sent, the
statistical role sees no password, body URL or download, and the block
button refuses the next SMTP connection of its client.

Screenshots go where tests/test_web_e2e.py puts them
(``$SMTPLATRINE_SCREENSHOTS``: docs/screenshots/ for the README).
"""

import base64
import hashlib
import signal
import smtplib
import socket
import urllib.parse
from email.message import EmailMessage

from twisted.trial import unittest

from tests.process import banner
from tests.test_web_e2e import PDF, DashboardFixture

SENDER, STUFFER, BLOCKED, OTHER = "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"
CREDENTIALS = [("admin", "hunter2"), ("admin", "hunter2"), ("root", "toor")]
PDF_SHA256 = hashlib.sha256(PDF).hexdigest()
BANNER = b"220 mail.example.com ESMTP Postfix (Debian/GNU)\r\n"
REJECTED = (f"554 5.7.1 <unknown[{BLOCKED}]>: Client host rejected: Access denied\r\n"
            .encode())


def mail(number, attachment):
    message = EmailMessage()
    message["From"] = "Billing <billing@invoices.example>"
    message["To"] = "ceo+urgent@victim.example"
    message["Subject"] = f"Invoice {number}"
    message["X-Mailer"] = "<b>BulkMailer</b> 3"
    message.set_content(f"Pay invoice {number} at http://evil.example/pay?id={number} now.")
    if attachment:
        message.add_attachment(PDF, maintype="application", subtype="pdf",
                               filename=f"invoice-{number}.pdf")
    return message.as_bytes(policy=message.policy.clone(linesep="\r\n"))


class PivotPagesTests(DashboardFixture, unittest.TestCase):
    holder = None

    @classmethod
    def send_mail(cls):
        """Three messages from SENDER (two with the same PDF), then three
        AUTH attempts from STUFFER."""
        client = smtplib.SMTP("127.0.0.1", cls.honeypot.port, timeout=10,
                              source_address=(SENDER, 0))
        client.ehlo("sender.example")
        for number, attachment in ((101, True), (102, True), (103, False)):
            client.sendmail("bounce@invoices.example",
                            ["ceo+urgent@victim.example", "cfo@victim.example"],
                            mail(number, attachment))
        client.quit()
        with socket.create_connection(("127.0.0.1", cls.honeypot.port), 10,
                                      source_address=(STUFFER, 0)) as s:
            s.recv(1000)
            lines = ["EHLO stuffer.example"]
            for username, password in CREDENTIALS:
                plain = base64.b64encode(f"\0{username}\0{password}".encode()).decode()
                lines.append(f"AUTH PLAIN {plain}")
            s.sendall(("\r\n".join(lines + ["QUIT"]) + "\r\n").encode())
            while s.recv(1000):
                pass
        assert cls.honeypot.wait_for(lambda: len(cls.honeypot.query(
            "SELECT message_id FROM honeypot_emails")) == 3 and any(
            s["src_ip"] == STUFFER for s in cls.honeypot.sessions())
            and cls.honeypot.drained())

    def admin(self):
        [line] = [line for line in self.honeypot.output().splitlines()
                  if "created user admin with password" in line]
        return self.login("admin", line.split("with password ")[1].split()[0])

    def cells(self, row):
        return [td.text for td in row.find_elements("css selector", "td")]

    def row_of(self, text):
        return next(r for r in self.find_all("table.list tbody tr") if text in r.text)

    def test_overview(self):
        """The counters and the top lists of the overview, drawn as SVG;
        the statistical role sees no top passwords."""
        self.login("ana")
        self.open("/overview")
        figures = {card.find_element("css selector", ".caption").text:
                   card.find_element("css selector", ".figure").text
                   for card in self.find_all(".card")}
        self.assertEqual((figures["Messages"], figures["AUTH attempts"],
                          figures["Attachments"], figures["New attachments"],
                          figures["Credentials tried"]), ("3", "3", "2", "1", "2"))
        titles = [h.text for h in self.find_all(".chart-box h2")]
        self.assertIn("Top usernames", titles)
        self.assertNotIn("Top passwords", titles)
        charts = {box.find_element("css selector", "h2").text: box
                  for box in self.find_all(".chart-box")}
        usernames = [t.text for t in charts["Top usernames"].find_elements(
            "css selector", "text")]
        self.assertEqual(usernames[:4], ["admin", "2", "root", "1"])
        helos = [t.text for t in charts["Top HELO names"].find_elements("css selector", "text")]
        self.assertIn("stuffer.example", helos)
        mailers = [t.text for t in charts["Top X-Mailer / User-Agent"].find_elements(
            "css selector", "text")]
        self.assertEqual(mailers, ["<b>BulkMailer</b> 3", "3"])
        self.assertNotIn("hunter2", self.driver.page_source)
        self.assertEqual(len(self.find_all(".chart-wide svg polyline"))
                         + len(self.find_all(".chart-wide svg circle")), 3)
        self.shot("overview")
        self.login("fred")
        self.open("/overview")
        charts = {box.find_element("css selector", "h2").text: box
                  for box in self.find_all(".chart-box")}
        passwords = [t.text for t in charts["Top passwords"].find_elements(
            "css selector", "text")]
        self.assertEqual(passwords[:4], ["hunter2", "2", "toor", "1"])

    def test_clients_and_search_link(self):
        """Each client with its sessions, messages and AUTH attempts; its
        messages count links to the search that lists them."""
        self.login("ana")
        self.open("/clients")
        sender, stuffer = self.row_of(SENDER), self.row_of(STUFFER)
        self.assertEqual(self.cells(sender)[7:10], ["1", "3", "0"])
        self.assertEqual(self.cells(stuffer)[7:10], ["1", "0", "3"])
        self.shot("clients")
        self.submit(sender.find_elements("css selector", "td")[8].find_element(
            "css selector", "a"))
        self.assertEqual(sorted(self.subjects()), ["Invoice 101", "Invoice 102",
                                                   "Invoice 103"])

    def test_credentials(self):
        """Credentials by times tried; passwords and wordlists for the
        forensic role only, and not in the statistical role's JSON."""
        self.login("ana")
        self.open("/credentials")
        self.assertNotIn("hunter2", self.driver.page_source)
        self.assertEqual(self.cells(self.row_of("admin"))[:3], ["PLAIN", "admin", "2"])
        status, _, body = self.http("/api/credentials")
        self.assertEqual(status, 200)
        self.assertNotIn(b"hunter2", body)
        self.assertEqual(self.http("/credentials/wordlist/password")[0], 403)
        self.login("fred")
        self.open("/credentials")
        self.assertEqual(self.cells(self.row_of("hunter2"))[:5],
                         ["PLAIN", "admin", "hunter2", "raw exchange", "2"])
        self.shot("credentials")
        status, headers, body = self.http("/credentials/wordlist/pair")
        self.assertEqual((status, body), (200, b"admin:hunter2\nroot:toor\n"))
        self.assertIn("attachment", headers["Content-Disposition"])
        self.submit(self.row_of("hunter2").find_element("link text", "raw exchange"))
        sent = [td.text for td in self.find_all("table.list tbody td:last-child")]
        plain = base64.b64encode(b"\0admin\0hunter2").decode()
        self.assertEqual(len(sent), 2)
        self.assertIn(f"C: AUTH PLAIN {plain}", sent[0])

    def test_recipients_attachments_campaigns(self):
        """Recipients split into user, tag and domain; the PDF one row of
        two messages, downloadable by the forensic role only; the invoice
        run a campaign."""
        self.login("ana")
        self.open("/recipients")
        self.assertEqual(self.cells(self.row_of("ceo+urgent@"))[:5],
                         ["ceo+urgent@victim.example", "ceo", "urgent", "victim.example", "3"])
        self.shot("recipients")
        self.open("/attachments")
        row = self.row_of("invoice-101.pdf")
        self.assertEqual(row.find_element("css selector", "td").get_attribute("title"),
                         PDF_SHA256)
        self.assertEqual(self.cells(row)[5], "2")
        self.assertEqual(self.find_all("a[href$='/file']"), [])
        self.login("fred")
        self.open("/attachments")
        link = self.find("a[href$='/file']").get_attribute("href")
        status, _, body = self.http(link[len(self.base):])
        self.assertEqual((status, hashlib.sha256(body).hexdigest()), (200, PDF_SHA256))
        self.shot("attachments")
        self.open("/campaigns")
        subject = self.row_of("Invoice #")
        self.assertEqual(self.cells(subject)[:3], ["same subject", "Invoice #", "3"])
        self.shot("campaigns")

    def test_urls_defanged(self):
        """URLs are shown defanged and never as a link; the statistical
        role may not see them."""
        self.login("ana")
        self.assertEqual(self.http("/urls")[0], 403)
        self.login("fred")
        self.open("/urls")
        shown = [c.text for c in self.find_all("table.list td code")]
        self.assertIn("hxxp[://]evil[.]example/pay?id=101", shown)
        hosts = {urllib.parse.urlsplit(a.get_attribute("href") or "").hostname
                 for a in self.find_all("a")}
        self.assertEqual(hosts, {"127.0.0.1", None})
        self.shot("urls")

    def test_block_client(self):
        """The admin's block button puts a client on the block list; after
        the honeypot reloads it, that client's next SMTP connection is
        refused and another's is served."""
        def greeting(source):
            with socket.create_connection(("127.0.0.1", self.honeypot.port), 5,
                                          source_address=(source, 0)) as s:
                return banner(s)
        self.assertEqual(greeting(BLOCKED), BANNER)
        self.honeypot.wait_for(lambda: any(s["src_ip"] == BLOCKED
                                           for s in self.honeypot.sessions()))
        self.login("ana")
        self.open(f"/clients/{BLOCKED}")
        self.assertEqual(self.find_all("#block"), [])
        self.admin()
        self.open(f"/clients/{BLOCKED}")
        self.shot("client")
        self.submit(self.find("#block button"))
        self.assertIn(f"blocked by {BLOCKED}/32", self.visible("dl.facts").text)
        self.honeypot.process.send_signal(signal.SIGHUP)
        self.honeypot.wait_for(lambda: greeting(BLOCKED) == REJECTED)
        self.assertEqual(greeting(OTHER), BANNER)
