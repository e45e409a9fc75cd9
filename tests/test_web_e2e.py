"""The dashboard as an analyst uses it: a real ``twistd smtplatrine`` with
its dashboard process, mail sent to it over SMTP by the test, and headless
Chromium (selenium) logging in, searching and looking at hostile mail.

Hostile HTML points at a twisted.web server the test runs on 127.0.0.2
(tests/spy.py); not one request may reach it, and no script may run.
Screenshots of the main pages go to a temporary directory, or to
``$SMTPLATRINE_SCREENSHOTS`` (docs/screenshots/ for the README).
"""

import atexit
import base64
import contextlib
import hashlib
import json
import os
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from email.message import EmailMessage
from pathlib import Path

from twisted.trial import unittest

from smtplatrine.cli import main as cli_main
from tests.mariadb import shared_database
from tests.process import Honeypot, environment, free_port, require

SPY_HOST = "127.0.0.2"
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 8
HOSTILE_NAME = '<img src=x onerror=alert(1)>.pdf'
HOSTILE_SUBJECT = '<script>alert("subject")</script> Invoice 7731'
WAIT = 15


def hostile_html(spy):
    """An HTML body that tries every way to run a script or reach *spy*."""
    return f"""<html><head>
<meta http-equiv="refresh" content="0;url={spy}/meta-refresh">
<link rel="stylesheet" href="{spy}/stylesheet">
<link rel="prefetch" href="{spy}/prefetch">
<link rel="preload" as="image" href="{spy}/preload">
<style>@import url({spy}/css-import); body {{ background: url({spy}/css-url); }}</style>
<base href="{spy}/base/">
</head><body>
<h1 id="marker">Hostile newsletter</h1>
<script>document.getElementById('marker').textContent = 'EXECUTED';
fetch('{spy}/script'); top.location = '{spy}/top';</script>
<img src="{spy}/pixel.gif" width="1" height="1">
<img src="broken" onerror="document.body.textContent='EXECUTED'; fetch('{spy}/onerror')">
<p><a id="javascript-link" href="javascript:fetch('{spy}/javascript');document.body.textContent='EXECUTED'">claim your prize</a></p>
<p><a id="tracking-link" href="{spy}/link">unsubscribe</a></p>
<svg xmlns="http://www.w3.org/2000/svg" onload="document.body.textContent='EXECUTED'">
<script>fetch('{spy}/svg-script')</script><image href="{spy}/svg-image" width="5" height="5"/></svg>
<object data="{spy}/object" type="text/html"></object>
<embed src="{spy}/embed">
<iframe src="{spy}/iframe"></iframe>
<form action="{spy}/form" method="post"><input name="card" value="4111">
<button id="form-button" type="submit">Pay</button></form>
<video poster="{spy}/poster"></video><audio src="{spy}/audio" autoplay></audio>
<div style="background-image: url('{spy}/inline-style')">styled</div>
</body></html>"""


def mail(subject, sender, body="", html=None, attachment=None):
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "victim@example.org"
    message["Subject"] = subject
    message.set_content(body or "see the HTML part")
    if html is not None:
        message.add_alternative(html, subtype="html")
    if attachment is not None:
        message.add_attachment(attachment[1], maintype="application", subtype="pdf",
                               filename=attachment[0])
    return message.as_bytes(policy=message.policy.clone(linesep="\r\n"))


def chrome(downloads):
    """Headless Debian Chromium, saving downloads in *downloads*."""
    require("chromium")
    require("chromedriver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--disable-gpu",
                     "--disable-dev-shm-usage", "--no-first-run", "--window-size=1440,1000",
                     "--disable-default-apps", "--disable-extensions"):
        options.add_argument(argument)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads)})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(WAIT)
    return driver


class DashboardFixture:
    """One honeypot with its dashboard, one spy server and one browser for
    the tests of a class that a trial process runs (started by the first,
    stopped when the process exits: trial has no setUpClass); each test
    logs in as the role it needs."""

    database_sections = staticmethod(lambda testcase: {})
    started = None

    @classmethod
    def start(cls):
        """Start the class's fixture once; a failure fails every test."""
        if cls.started is None:
            cls.cleanups = []
            atexit.register(cls.stop)
            try:
                cls._start()
                cls.started = True
            except BaseException as e:
                cls.started = e
                cls.stop()
        if cls.started is not True:
            raise AssertionError(f"the dashboard fixture did not start: {cls.started!r}")

    @classmethod
    def _start(cls):
        cls.web_port, spy_port = free_port(), free_port(host=SPY_HOST)
        cls.base = f"http://127.0.0.1:{cls.web_port}"
        cls.spy = f"http://{SPY_HOST}:{spy_port}"
        cls.scratch = Path(tempfile.mkdtemp(prefix="smtplatrine-web-"))
        cls.cleanups.append(lambda: shutil.rmtree(cls.scratch, ignore_errors=True))
        cls.spy_log = cls.scratch / "spy.log"
        cls.spy_log.touch()
        spy = subprocess.Popen([sys.executable, "-m", "tests.spy", SPY_HOST, str(spy_port),
                                str(cls.spy_log)], env=environment(), stdout=subprocess.PIPE)
        cls.cleanups.append(lambda: (spy.kill(), spy.wait()))
        assert spy.stdout.readline().strip() == b"ready"
        sections = {"web": {"listen": f"tcp:{cls.web_port}:interface=127.0.0.1"}}
        sections.update(cls.database_sections(cls.holder))
        if cls.holder is not None:
            cls.cleanups.append(cls.holder.doCleanups)
        cls.honeypot = Honeypot(**sections)
        cls.cleanups.append(cls.honeypot.stop)
        cls.send_mail()
        cls.wait_web()
        cls.users = {}
        for name, role in (("ana", "statistical"), ("fred", "forensic")):
            cls.users[name] = f"{name}-password-1"
            with _stdin(cls.users[name] + "\n"):
                cls.cli("user", "add", name, "--role", role, "--password-stdin")
        cls.tokens = {role: cls.cli("token", "add", f"{role}-script", "--role", role).strip()
                      for role in ("statistical", "forensic")}
        cls.downloads = cls.scratch / "downloads"
        cls.downloads.mkdir()
        cls.driver = chrome(cls.downloads)
        cls.cleanups.append(cls.driver.quit)
        cls.shots = Path(os.environ.get("SMTPLATRINE_SCREENSHOTS") or cls.scratch / "shots")
        cls.shots.mkdir(parents=True, exist_ok=True)

    @classmethod
    def stop(cls):
        while cls.cleanups:
            with contextlib.suppress(Exception):
                cls.cleanups.pop()()

    @classmethod
    def cli(cls, *args):
        out = __import__("io").StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out.__class__()):
            cli_main([*args, "--config", str(cls.honeypot.directory / "etc")])
        return out.getvalue()

    @classmethod
    def send_mail(cls):
        """The messages and the session the tests look for."""
        cls.sent = {
            "paypal": mail("Your account is limited", '"PayPal Service" <service@paypa1.example.com>',
                           "Please verify your password today."),
            "invoice": mail(HOSTILE_SUBJECT, "billing@invoices.example",
                            "Your invoice is attached.", attachment=(HOSTILE_NAME, PDF)),
            "hostile": mail("Weekly newsletter", "news@letters.example",
                            html=hostile_html(cls.spy)),
        }
        client = smtplib.SMTP("127.0.0.1", cls.honeypot.port, timeout=10)
        client.ehlo("<b>bold-helo</b>")
        for key in ("paypal", "invoice", "hostile"):
            client.sendmail(f"{key}@sender.example", ["victim@example.org"], cls.sent[key])
        client.quit()
        # A session without message: a credential stuffer.
        with socket.create_connection(("127.0.0.1", cls.honeypot.port), 10) as s:
            s.recv(1000)
            plain = base64.b64encode(b"\0admin\0hunter2").decode()
            s.sendall(f"EHLO stuffer.example\r\nAUTH PLAIN {plain}\r\nQUIT\r\n".encode())
            while s.recv(1000):
                pass
        stored = cls.honeypot.wait_for(lambda: len(cls.honeypot.query(
            "SELECT message_id FROM honeypot_emails")) == 3 and cls.honeypot.drained())
        assert stored
        rows = cls.honeypot.query("SELECT message_id, header_subject FROM honeypot_emails")
        cls.ids = {}
        for key, subject in (("paypal", "Your account is limited"),
                             ("invoice", HOSTILE_SUBJECT), ("hostile", "Weekly newsletter")):
            cls.ids[key] = next(r["message_id"] for r in rows if r["header_subject"] == subject)
        cls.honeypot.wait_for(lambda: any(
            s["helo"] == "stuffer.example" for s in cls.honeypot.sessions()))

    @classmethod
    def wait_web(cls):
        """Until the dashboard answers its login page (its database open)."""
        def up():
            try:
                return urllib.request.urlopen(cls.base + "/login", timeout=2).status == 200
            except (OSError, urllib.error.HTTPError):
                return False
        cls.honeypot.wait_for(up, timeout=30)

    # Helpers

    def setUp(self):
        self.start()
        self.driver.delete_all_cookies()
        logged = len(self.honeypot.output())
        self.addCleanup(lambda: self.assertNotIn("Traceback", self.honeypot.output()[logged:]))

    def wait(self, condition, timeout=WAIT):
        from selenium.webdriver.support.ui import WebDriverWait
        return WebDriverWait(self.driver, timeout).until(condition)

    def find(self, selector):
        from selenium.webdriver.common.by import By
        return self.driver.find_element(By.CSS_SELECTOR, selector)

    def find_all(self, selector):
        from selenium.webdriver.common.by import By
        return self.driver.find_elements(By.CSS_SELECTOR, selector)

    def visible(self, selector):
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as EC
        return self.wait(EC.visibility_of_element_located((By.CSS_SELECTOR, selector)))

    def open(self, path):
        self.driver.get(self.base + path)
        return self.visible("body")

    def login(self, name, password=None):
        """Log in through the form; the page it lands on."""
        self.open("/login")
        self.visible("input[name=user]").send_keys(name)
        self.find("input[name=password]").send_keys(password or self.users[name])
        self.submit(self.find("form.login button"))
        return self.visible("main")

    def submit(self, element, keys=None):
        """Click *element* (or type *keys* into it) and wait for the next page."""
        from selenium.common.exceptions import WebDriverException
        if keys is None:
            element.click()
        else:
            element.send_keys(keys)

        def gone(driver):
            # chromedriver says "stale", or that the node is in no document.
            try:
                element.is_enabled()
                return False
            except WebDriverException:
                return True
        self.wait(gone)

    def shot(self, name):
        self.driver.save_screenshot(str(self.shots / f"{name}.png"))

    def http(self, path, token=None, cookie=True, data=None, headers=None):
        """(status, headers, body) of a request outside the browser, with
        the browser's session cookie or a Bearer *token*."""
        request = urllib.request.Request(self.base + path, data=data, headers=headers or {})
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        elif cookie and self.driver.get_cookie("smtplatrine_session"):
            request.add_header("Cookie", "smtplatrine_session="
                               + self.driver.get_cookie("smtplatrine_session")["value"])
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            with opener.open(request, timeout=WAIT) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    def subjects(self):
        return [a.text for a in self.find_all("table.list td.subject a")]

    def spied(self):
        return self.spy_log.read_text().splitlines()



class DashboardMixin(DashboardFixture):
    """The tests each database runs."""

    def test_first_admin(self):
        """At first start an admin is made, its password written once to
        the log; it logs in and adds a user who can then log in, and
        removes it."""
        [line] = [line for line in self.honeypot.output().splitlines()
                  if "created user admin with password" in line]
        password = line.split("with password ")[1].split()[0]
        self.assertIn("smtplatrine user passwd admin", line)
        self.login("admin", password)
        self.submit(self.find("header nav a[href='/users']"))
        self.visible("table.plain")
        self.assertEqual(sorted(td.text for td in self.find_all("table.plain tr td:first-child")),
                         ["admin", "ana", "fred"])
        self.shot("users")
        from selenium.webdriver.support.ui import Select
        self.find("form.filters input[name=name]").send_keys("zoe")
        Select(self.find("form.filters select[name=role]")).select_by_value("forensic")
        self.find("form.filters input[name=password]").send_keys("zoe-password-1")
        self.submit(self.find("form.filters button[value=add]"))
        self.assertEqual(self.visible(".notice").text, "Added zoe.")
        self.submit(self.find("form.logout button"))
        self.assertEqual(self.login("zoe", "zoe-password-1").find_element(
            "css selector", "h1").text, "Messages")
        self.login("admin", password)
        self.open("/users")
        row = next(r for r in self.find_all("table.plain tbody tr") if r.text.startswith("zoe"))
        self.submit(row.find_element("css selector", "button"))
        self.assertEqual(self.visible(".notice").text, "Removed zoe.")

    def test_statistical_limits(self):
        """The statistical role lists messages and sessions but sees no
        body, raw message, password or download, on pages and API alike."""
        self.login("ana")
        self.assertEqual(len(self.subjects()), 3)
        self.open(f"/messages/{self.ids['paypal']}")
        self.assertEqual(self.find("h1").text, "Your account is limited")
        self.assertNotIn("verify your password", self.find("main").text)
        self.assertEqual(self.find_all("iframe"), [])
        self.assertIn("need the forensic role", self.find(".note").text)
        for path in (f"/messages/{self.ids['paypal']}/raw", f"/messages/{self.ids['hostile']}/html",
                     f"/messages/{self.ids['paypal']}/zip", "/users"):
            self.open(path)
            self.assertEqual(self.find("h1").text, "Not allowed", path)
            self.assertEqual(self.http(path)[0], 403, path)
        token = self.tokens["statistical"]
        status, _, body = self.http(f"/api/messages/{self.ids['paypal']}", token)
        record = json.loads(body)
        self.assertEqual((status, record["header_subject"]), (200, "Your account is limited"))
        self.assertNotIn("body_text", record)
        self.assertNotIn("hunter2", self.http("/api/sessions", token)[2].decode())
        for path in (f"/api/messages/{self.ids['paypal']}/raw", "/api/users",
                     f"/api/messages/{self.ids['hostile']}/html"):
            self.assertEqual(self.http(path, token)[0], 403, path)
        self.assertEqual(self.http("/api/messages", cookie=False)[0], 401)
        self.assertEqual(self.http("/api/messages", token="slt_wrong")[0], 401)

    def test_search(self):
        """The search box finds the messages the test sent by words, fields
        and negation, the API gives the same, and a malformed query gets a
        message instead of an error page."""
        self.login("fred")
        self.shot("messages")
        cases = [("verify password", ["Your account is limited"]),
                 ("from:paypal", ["Your account is limited"]),
                 ("has:attachment", [HOSTILE_SUBJECT]),
                 ("filename:onerror", [HOSTILE_SUBJECT]),
                 ("-has:attachment -from:paypal", ["Weekly newsletter"]),
                 ("helo:<b>bold-helo</b> newsletter", ["Weekly newsletter"]),
                 ("invoice after:2000-01-01 ip:127.0.0.0/8", [HOSTILE_SUBJECT]),
                 ("subject:nothing-like-this", [])]
        for query, subjects in cases:
            box = self.find("form.search input[name=q]")
            box.clear()
            self.submit(box, query + "\n")
            self.visible("main h1")
            self.assertEqual(self.subjects(), subjects, query)
            api = json.loads(self.http("/api/messages?" + urllib.parse.urlencode({"q": query}),
                                       self.tokens["forensic"])[2])
            self.assertEqual([m["header_subject"] for m in api["messages"]], subjects, query)
            if query == "-has:attachment -from:paypal":
                self.shot("search")
        self.open("/messages?q=" + urllib.parse.quote('ip:nowhere "unclosed'))
        self.assertIn("ip:nowhere is not", self.find(".error").text)
        self.shot("search-error")
        status, _, body = self.http("/api/messages?q=ip%3Anowhere", self.tokens["forensic"])
        self.assertEqual(status, 400)
        self.assertIn("ip:nowhere is not", json.loads(body)["error"])


class MoreDashboardTestsMixin:
    """What the browser sees that does not depend on the database."""
    def test_login_wrong_password_logout(self):
        """A wrong password is refused with a message; the right one opens
        the messages; logging out ends the session."""
        self.login("fred", "not-the-password")
        self.assertEqual(self.visible(".error").text, "Wrong user name or password.")
        self.assertIn("/login", self.driver.current_url)
        self.shot("login")
        self.login("fred")
        self.assertEqual(self.find("h1").text, "Messages")
        self.assertEqual(self.find(".who .user").text, "fred")
        self.submit(self.find("form.logout button"))
        self.visible("form.login")
        self.open("/messages")
        self.visible("form.login")
        def failed():
            events = map(json.loads, (self.honeypot.data / "events.jsonl").read_text()
                         .splitlines())
            return [(e["user"], e["reason"], e["src_ip"]) for e in events
                    if e["eventid"] == "smtplatrine.web.login.failed"]
        # The outputs write within a second or so.
        self.assertIn(("fred", "wrong password", "127.0.0.1"),
                      self.honeypot.wait_for(failed))

    def test_forensic_downloads(self):
        """The forensic role downloads the raw message and the attachment as
        octet-stream with safe names, and as zips that unzip -P infected
        and 7z open, giving back the bytes sent; it may not manage users."""
        require("unzip")
        require("7z")
        self.login("fred")
        self.assertEqual(self.http("/users")[0], 403)
        invoice = self.ids["invoice"]
        status, headers, raw = self.http(f"/messages/{invoice}/raw")
        self.assertEqual(status, 200)
        self.assertEqual(headers["Content-Type"], "application/octet-stream")
        self.assertEqual(headers["Content-Disposition"], f'attachment; filename="{invoice}.eml"')
        self.assertEqual(headers["X-Content-Type-Options"], "nosniff")
        self.assertEqual(hashlib.sha256(raw).hexdigest(),
                         hashlib.sha256(self.sent["invoice"]).hexdigest())
        archive = self.scratch / "raw.zip"
        archive.write_bytes(self.http(f"/messages/{invoice}/zip")[2])
        out = self.scratch / "unzipped"
        result = subprocess.run(["unzip", "-P", "infected", "-d", str(out), str(archive)],
                                capture_output=True, timeout=30)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual((out / f"{invoice}.eml").read_bytes(), self.sent["invoice"])
        result = subprocess.run(["7z", "t", "-pinfected", str(archive)], capture_output=True,
                                timeout=30)
        self.assertIn(b"Everything is Ok", result.stdout)
        self.open(f"/messages/{invoice}")
        link = self.find("a[href$='/file']").get_attribute("href")
        status, headers, data = self.http(urllib.parse.urlsplit(link).path)
        self.assertEqual(data, PDF)
        name = headers["Content-Disposition"].split('filename="')[1].rstrip('"')
        self.assertRegex(name, r"\A[0-9a-f]{16}_[A-Za-z0-9._-]+\Z")
        self.assertEqual(headers["Content-Type"], "application/octet-stream")
        zipped = self.http(urllib.parse.urlsplit(link).path[:-len("file")] + "zip")[2]
        with zipfile.ZipFile(__import__("io").BytesIO(zipped)) as z:
            [member] = z.namelist()
            self.assertEqual(z.read(member, pwd=b"infected"), PDF)

    def test_post_without_csrf_refused(self):
        """A POST with the session cookie but without its CSRF token changes
        nothing: 403."""
        self.login("fred")
        data = urllib.parse.urlencode({"action": "remove", "name": "ana"}).encode()
        self.assertEqual(self.http("/logout", data=b"")[0], 403)
        self.open("/messages")
        self.assertEqual(self.find(".who .user").text, "fred")
        admin_pw = next(line.split("with password ")[1].split()[0]
                        for line in self.honeypot.output().splitlines()
                        if "created user admin with password" in line)
        self.login("admin", admin_pw)
        self.assertEqual(self.http("/users", data=data)[0], 403)
        self.assertEqual(self.http("/users", data=data + b"&csrf=forged")[0], 403)
        self.open("/users")
        self.assertIn("ana", [td.text for td in self.find_all("table.plain td:first-child")])

    def test_hostile_values_shown_as_text(self):
        """A subject, file name and HELO full of markup show as text; no
        alert opens."""
        from selenium.common.exceptions import NoAlertPresentException
        self.login("fred")
        self.assertIn(HOSTILE_SUBJECT, self.subjects())
        self.open(f"/messages/{self.ids['invoice']}")
        self.assertEqual(self.find("h1").text, HOSTILE_SUBJECT)
        self.assertEqual(self.find("#attachments + table td").text, HOSTILE_NAME)
        self.assertIn("<b>bold-helo</b>", self.find("#session + dl").text)
        self.shot("message")
        with self.assertRaises(NoAlertPresentException):
            self.driver.switch_to.alert.text

    def test_hostile_html_view(self):
        """The HTML body shows in a sandbox: no script runs, nothing is
        fetched from the host the mail names, not even when the analyst
        clicks its links and buttons; the page and the preview carry their
        security headers."""
        from selenium.webdriver.common.by import By
        self.login("fred")
        hostile = self.ids["hostile"]
        self.open(f"/messages/{hostile}")
        frame = self.visible("iframe.preview")
        self.assertEqual(frame.get_attribute("sandbox"), "")
        self.driver.switch_to.frame(frame)
        self.wait(lambda d: d.find_element(By.ID, "marker").text == "Hostile newsletter")
        self.driver.switch_to.default_content()
        self.driver.execute_script("arguments[0].scrollIntoView()",
                                   self.find("section:has(#html)"))
        self.shot("message-html")
        self.driver.switch_to.frame(frame)
        for link in ("javascript-link", "tracking-link", "form-button"):
            with contextlib.suppress(Exception):
                self.driver.find_element(By.ID, link).click()
        self.driver.switch_to.default_content()
        # Let whatever the clicks started end: the page loads again, and
        # the preview with it.
        self.open(f"/messages/{hostile}")
        self.driver.switch_to.frame(self.visible("iframe.preview"))
        self.wait(lambda d: d.find_element(By.ID, "marker").text == "Hostile newsletter")
        self.assertNotIn("EXECUTED", self.find("body").text)
        self.driver.switch_to.default_content()
        self.assertEqual(self.driver.title, "Weekly newsletter · smtplatrine")
        self.assertEqual(self.spied(), [])
        status, headers, _ = self.http(f"/messages/{hostile}/html")
        policy = headers["Content-Security-Policy"]
        self.assertIn("default-src 'none'", policy)
        self.assertIn("sandbox", policy)
        self.assertNotIn("script-src", policy)
        status, headers, _ = self.http("/messages")
        self.assertEqual((headers["X-Content-Type-Options"], headers["Referrer-Policy"]),
                         ("nosniff", "no-referrer"))
        self.assertIn("frame-ancestors 'none'", headers["Content-Security-Policy"])
        self.assertNotIn("'unsafe-inline'", headers["Content-Security-Policy"])
        self.assertIsNone(headers.get("Server"), "the dashboard names its web server")


    def test_sessions(self):
        """Sessions without a message are listed with their HELO; the
        forensic role reads the transcript and the password tried."""
        self.login("fred")
        self.submit(self.find("header nav a[href='/sessions']"))
        self.visible("table.list")
        row = next(r for r in self.find_all("table.list tbody tr")
                   if "stuffer.example" in r.text)
        self.shot("sessions")
        self.submit(row.find_element("css selector", "a"))
        self.visible("pre.transcript")
        self.assertIn("C: EHLO stuffer.example", self.find("pre.transcript").text)
        self.assertIn("hunter2", self.find("main").text)
        self.shot("session")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@contextlib.contextmanager
def _stdin(text):
    old, sys.stdin = sys.stdin, __import__("io").StringIO(text)
    try:
        yield
    finally:
        sys.stdin = old


class _Holder(unittest.TestCase):
    """Holds the cleanups of class-level fixtures that need a TestCase."""

    def runTest(self):
        pass


class SQLiteDashboardTests(MoreDashboardTestsMixin, DashboardMixin,
                           unittest.TestCase):
    holder = None


def _mariadb(holder):
    settings = shared_database(holder)
    return {"engine": {"engine_backend": "mysql"},
            "mysql": {"mysql_host": settings["host"], "mysql_port": settings["port"],
                      "mysql_database": settings["database"]}}


class MariaDBDashboardTests(DashboardMixin, unittest.TestCase):
    """The same dashboard over MariaDB."""
    holder = _Holder()
    database_sections = staticmethod(_mariadb)
