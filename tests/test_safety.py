"""The start-up safety check, and what is left of root after the drop."""

import os
import smtplib
import sys
from pathlib import Path

from twisted.trial import unittest

import smtplatrine
from smtplatrine import safety
from smtplatrine.testing import make_config
from tests.process import Honeypot, children, require_root, run_twistd, write_config

REMOTE_NO_PASSWORD = {"engine": {"engine_backend": "mysql"},
                      "mysql": {"mysql_host": "db.example.net"}}


class SafetyTests(unittest.TestCase):

    def problems(self, running_as_root=False, **sections):
        return safety.problems(make_config(**sections), running_as_root)

    def test_defaults_are_safe(self):
        """The default configuration passes, as root too."""
        self.assertEqual(self.problems(running_as_root=True), [])

    def test_remote_database_without_password(self):
        """A MySQL server beyond loopback without a password is refused."""
        [problem] = self.problems(**REMOTE_NO_PASSWORD)
        self.assertTrue(problem.startswith(
            "[mysql] mysql_host = db.example.net is not loopback and mysql_password"
            " is empty"), problem)

    def test_database_safe_forms(self):
        """Loopback (by name or address), a socket or a password are fine."""
        for mysql in ({"mysql_host": "localhost"}, {"mysql_host": "127.0.0.2"},
                      {"mysql_host": "::1"}, {"mysql_host": "db.example.net",
                                              "mysql_password": "s3cret"},
                      {"mysql_host": "192.0.2.1",
                       "mysql_socket": "/run/mysqld/mysqld.sock"}):
            self.assertEqual(self.problems(engine={"engine_backend": "mysql"},
                                           mysql=mysql), [], mysql)

    def test_sqlite_ignores_mysql_settings(self):
        """With SQLite the [mysql] section does not matter."""
        self.assertEqual(self.problems(mysql={"mysql_host": "db.example.net"}), [])

    def test_root_as_unprivileged_user(self):
        """Started as root, naming root (or group root) as the user to become is refused."""
        for user in ({"user": "root"}, {"group": "root"}):
            [problem] = self.problems(running_as_root=True, non_privileged=user)
            self.assertIn("would keep the process that talks to attackers root", problem)
        self.assertEqual(self.problems(non_privileged={"user": "root"}), [])

    def test_data_dir_over_code(self):
        """A data_dir or attachment directory holding smtplatrine's code or
        Python (which would be given to the unprivileged user) is refused."""
        code = Path(smtplatrine.__file__).resolve().parent.parent
        for sections in ({"server": {"data_dir": "/"}},
                         {"server": {"data_dir": str(code)}},
                         {"smtp": {"smtp_attachments_path": sys.prefix}}):
            [problem] = self.problems(**sections)
            self.assertIn("holds smtplatrine's code or Python", problem)
        self.assertEqual(self.problems(smtp={"smtp_attachments_path": sys.prefix,
                                             "smtp_attachments_store": False}), [])


class SafetyStartupTests(unittest.TestCase):

    def test_refused_in_one_line(self):
        """twistd stops with one line naming the unsafe setting, and nothing listens."""
        directory = Path(os.path.abspath(self.mktemp()))
        write_config(directory / "etc", dict(REMOTE_NO_PASSWORD,
                                             server={"data_dir": directory / "data"}))
        code, out = run_twistd("smtplatrine", "--config", str(directory / "etc"),
                               "--listen", "tcp:0:interface=127.0.0.1",
                               cwd=directory)
        self.assertNotEqual(code, 0)
        self.assertIn("smtplatrine: unsafe configuration: [mysql] mysql_host ="
                      " db.example.net is not loopback and mysql_password is empty", out)
        self.assertNotIn("listening on", out)
        self.assertNotIn("Traceback", out)


class CapabilityTests(unittest.TestCase):

    def setUp(self):
        require_root("the privilege drop")
        self.honeypot = Honeypot()
        self.addCleanup(self.honeypot.stop)

    def test_no_capabilities_left(self):
        """Started as root, every process of the server (the SMTP side, the
        disk worker, the storing process and its worker) keeps no
        capability in any set, not even the bounding set, and cannot gain
        privileges again."""
        with smtplib.SMTP("127.0.0.1", self.honeypot.port, timeout=20) as client:
            client.sendmail("a@example.org", ["b@example.net"], b"Subject: x\r\n\r\nx\r\n")
        # Stored: the storing process's worker runs, as every other does.
        self.assertEqual(len(self.honeypot.messages()), 1)
        pids, found = [], [self.honeypot.process.pid]
        while found:
            pids += found
            found = [child for pid in found for child in children(pid)]
        self.assertGreaterEqual(len(pids), 4)
        sets = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")
        for pid in pids:
            status = Path(f"/proc/{pid}/status").read_text()
            fields = dict(line.split(":\t", 1) for line in status.splitlines())
            self.assertEqual({name: int(fields[name], 16) for name in sets},
                             dict.fromkeys(sets, 0), fields["Name"])
            self.assertEqual(fields["NoNewPrivs"].strip(), "1", fields["Name"])
