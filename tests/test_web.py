"""The dashboard's parts on their own: login sessions and their expiry, the
login throttle, encrypted zips as unzip reads them, safe names; and
``twistd smtplatrine-web`` started alone."""

import contextlib
import io
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile

from twisted.internet.task import Clock
from twisted.trial import unittest

from smtplatrine.web.auth import Sessions, Throttle, allows
from smtplatrine.web.templates import defang, flag, known_of
from smtplatrine.web.views import safe_name
from smtplatrine.web.zipcrypto import encrypted_zip
from tests.process import (TWISTD, environment, free_port, reachable_directory,
                           require, write_config)


class SessionTests(unittest.TestCase):

    def setUp(self):
        self.clock = Clock()
        self.sessions = Sessions(self.clock, idle=60, lifetime=300)

    def test_idle_expiry(self):
        """A session unused for longer than the idle time is gone; each
        request starts the idle time again."""
        key, csrf = self.sessions.start("ana")
        self.clock.advance(59)
        self.assertEqual(self.sessions.find(key).csrf, csrf)
        self.clock.advance(59)
        self.assertIsNotNone(self.sessions.find(key))
        self.clock.advance(61)
        self.assertIsNone(self.sessions.find(key))

    def test_absolute_expiry(self):
        """However busy, a session ends at its lifetime."""
        key, _ = self.sessions.start("ana")
        for _ in range(10):
            self.clock.advance(30)
            self.assertIsNotNone(self.sessions.find(key))
        self.clock.advance(1)
        self.assertIsNone(self.sessions.find(key))

    def test_end_user(self):
        """Removing a user ends its sessions, not the others'."""
        ana, _ = self.sessions.start("ana")
        fred, _ = self.sessions.start("fred")
        self.sessions.end_user("ana")
        self.assertIsNone(self.sessions.find(ana))
        self.assertIsNotNone(self.sessions.find(fred))
        self.assertIsNone(self.sessions.find("made-up"))

    def test_roles(self):
        """admin may all, forensic what statistical may, not the reverse."""
        self.assertTrue(allows("admin", "forensic"))
        self.assertTrue(allows("forensic", "statistical"))
        self.assertFalse(allows("statistical", "forensic"))
        self.assertFalse(allows("forensic", "admin"))


class ThrottleTests(unittest.TestCase):

    def test_slows_down_after_free_failures(self):
        """Five failures are free; then each attempt waits 1, 2, 4 s... up
        to 30 s, for the address or the user name, until the window ends."""
        clock = Clock()
        throttle = Throttle(clock, free=5, window=900)
        keys = (("address", "192.0.2.7"), ("user", "admin"))
        delays = []
        for _ in range(12):
            delays.append(throttle.delay(*keys))
            throttle.failed(*keys)
        self.assertEqual(delays, [0, 0, 0, 0, 0, 1, 2, 4, 8, 16, 30, 30])
        self.assertEqual(throttle.delay(("address", "198.51.100.1"), ("user", "admin")), 30)
        self.assertEqual(throttle.delay(("address", "192.0.2.7"), ("user", "ana")), 30)
        self.assertEqual(throttle.delay(("address", "198.51.100.1"), ("user", "ana")), 0)
        clock.advance(901)
        self.assertEqual(throttle.delay(*keys), 0)


class DisplayTests(unittest.TestCase):

    def test_safe_name(self):
        """A sender's file name keeps only letters, digits, dot, dash and
        underscore, and never starts a hidden or parent path."""
        self.assertEqual(safe_name("../../etc/cron.d/x.pdf", "f"), "etc_cron.d_x.pdf")
        self.assertEqual(safe_name('<img src=x onerror=alert(1)>.pdf', "f"),
                         "img_src_x_onerror_alert_1_.pdf")
        self.assertEqual(safe_name("..", "fallback"), "fallback")
        self.assertEqual(safe_name(None, "fallback"), "fallback")

    def test_defang_and_flag(self):
        """URLs are shown defanged; country codes as flags, garbage as nothing."""
        self.assertEqual(defang("http://evil.test/a.php"), "hxxp[://]evil[.]test/a[.]php")
        self.assertEqual(flag("de"), "\U0001F1E9\U0001F1EA DE")
        self.assertEqual(flag("<b>"), "")

    def test_what_is_known_of_an_address(self):
        """The line beside an address says its country, AS and PTR names,
        as the enrichers store them (rdns: {"ptr": [...]})."""
        line = known_of({"geoip_city": {"country_code": "US", "city": "Mountain View"},
                         "geoip_asn": {"asn": 15169, "organization": "GOOGLE"},
                         "rdns": {"ptr": ["dns.google", "alt.dns.google"]}})
        self.assertEqual(line, "\U0001F1FA\U0001F1F8 US · Mountain View · AS15169 GOOGLE"
                               " · dns.google, alt.dns.google")
        self.assertEqual(known_of({}), "")


class ZipCryptoTests(unittest.TestCase):

    def test_read_back(self):
        """Python's zipfile reads what we write with the password, and
        refuses another password."""
        data = bytes(range(256)) * 300 + b"tail"
        archive = zipfile.ZipFile(io.BytesIO(encrypted_zip([("sample.exe", data)])))
        self.assertEqual(archive.namelist(), ["sample.exe"])
        self.assertEqual(archive.read("sample.exe", pwd=b"infected"), data)
        self.assertRaises(RuntimeError, archive.read, "sample.exe", pwd=b"wrong")

    def test_unzip_opens_it(self):
        """The real unzip opens it with -P infected (and says the password
        is wrong with another)."""
        require("unzip")
        directory = reachable_directory()
        self.addCleanup(subprocess.run, ["rm", "-rf", str(directory)])
        path = directory / "a.zip"
        data = b"MZ\x90\x00" + b"\x00" * 5000 + b"This program cannot be run in DOS mode"
        path.write_bytes(encrypted_zip([("sample.exe", data)]))
        bad = subprocess.run(["unzip", "-P", "nope", "-d", str(directory / "x"), str(path)],
                             capture_output=True, timeout=30)
        self.assertIn(b"incorrect password", bad.stdout + bad.stderr)
        good = subprocess.run(["unzip", "-P", "infected", "-d", str(directory / "y"),
                               str(path)], capture_output=True, timeout=30)
        self.assertEqual(good.returncode, 0, good.stderr)
        self.assertEqual((directory / "y" / "sample.exe").read_bytes(), data)


class StandaloneTests(unittest.TestCase):
    """``twistd -n smtplatrine-web --config DIR``."""

    def setUp(self):
        self.directory = reachable_directory()
        self.addCleanup(subprocess.run, ["rm", "-rf", str(self.directory)])

    def twistd(self, port):
        write_config(self.directory / "etc", {
            "server": {"data_dir": self.directory / "data"},
            "web": {"listen": f"tcp:{port}:interface=127.0.0.1"}})
        process = subprocess.Popen(
            TWISTD + ["-n", "--pidfile=", "smtplatrine-web", "--config",
                      str(self.directory / "etc")],
            cwd=self.directory, env=environment(), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT)
        self.addCleanup(lambda: (process.poll() is None and process.terminate(),
                                 process.wait(20)))
        return process

    def test_runs_alone(self):
        """It serves its login page from a database the CLI made (before
        any honeypot ran), as the unprivileged user."""
        from smtplatrine.cli import main
        write_config(self.directory / "etc", {"server": {"data_dir": self.directory / "data"}})
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            main(["token", "add", "t", "--role", "statistical", "--config",
                  str(self.directory / "etc")])
        (self.directory / "data").chmod(0o777)
        for path in (self.directory / "data").iterdir():
            path.chmod(0o666)
        port = free_port()
        self.twistd(port)
        deadline = 0
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/login",
                                            timeout=2) as response:
                    self.assertIn(b"Log in to the dashboard", response.read())
                    break
            except OSError:
                deadline += 1
                self.assertLess(deadline, 150, "the dashboard did not answer")
                time.sleep(0.1)

    def test_port_in_use(self):
        """A port that is taken stops start-up with one line saying what to do."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            process = self.twistd(taken.getsockname()[1])
            output = process.communicate(timeout=30)[0].decode()
        self.assertNotEqual(process.returncode, 0)
        self.assertIn("the dashboard cannot listen on tcp:", output)
        self.assertIn("change [web] listen", output)
        self.assertNotIn("Traceback", output)


class BoundaryTests(unittest.TestCase):

    def test_imports(self):
        """The dashboard imports neither the SMTP side, the spool, the
        pipeline, the parser, the storing process nor the enrichers."""
        result = subprocess.run(
            [sys.executable, "-c", "import sys, smtplatrine.web.process, smtplatrine.web.tap;"
             " print(' '.join(sorted(sys.modules)))"],
            capture_output=True, text=True, env=environment(), timeout=60)
        loaded = result.stdout.split()
        self.assertIn("smtplatrine.web.site", loaded)
        forbidden = [m for m in loaded if m.startswith((
            "smtplatrine.smtp", "smtplatrine.spool", "smtplatrine.pipeline",
            "smtplatrine.parse", "smtplatrine.storer", "smtplatrine.storing",
            "smtplatrine.enrich"))]
        self.assertEqual(forbidden, [])
