"""``smtplatrine acl`` against a running twistd: a change applies on SIGHUP,
on SQLite and on MariaDB."""

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from twisted.trial import unittest

from tests.mariadb import mysql_sections
from tests.process import Honeypot, banner, environment, write_config

REJECTED = b"554 5.7.1 <unknown[127.0.0.1]>: Client host rejected: Access denied\r\n"
BANNER = b"220 mail.example.com ESMTP Postfix (Debian/GNU)\r\n"


def smtplatrine(*args):
    """Run the ``smtplatrine`` command: (exit code, stdout, stderr)."""
    result = subprocess.run(
        [sys.executable, "-c", "from smtplatrine.cli import main; main()", *args],
        env=environment(), capture_output=True, text=True, timeout=60)
    return result.returncode, result.stdout, result.stderr


class ACLCommandTestsMixin:
    """``sections`` are the database sections of the honeypot's configuration."""

    def setUp(self):
        # A reload every hour: only SIGHUP can make a change apply in time.
        self.honeypot = Honeypot(protection={"acl_reload_interval": 3600},
                                 **self.sections())
        self.addCleanup(self.honeypot.stop)
        self.config = str(self.honeypot.directory / "etc")

    def greeting(self):
        with socket.create_connection(("127.0.0.1", self.honeypot.port), 5) as s:
            return banner(s)

    def acl(self, *args):
        code, out, err = smtplatrine("acl", *args, "--config", self.config)
        self.assertEqual(code, 0, err)
        return out, err

    def hup_until(self, expected):
        """Send SIGHUP, then wait for the greeting to become *expected*."""
        self.honeypot.process.send_signal(signal.SIGHUP)
        self.honeypot.wait_for(lambda: self.greeting() == expected)

    def listed(self):
        out, _ = self.acl("list")
        return [line.split("\t") for line in out.splitlines()]

    def test_add_hup_remove(self):
        """An address added is refused after SIGHUP, its tries are counted,
        and once removed it is served again after the next SIGHUP."""
        self.assertEqual(self.greeting(), BANNER)
        _, err = self.acl("add", "127.0.0.1", "CN", "--reason", "test")
        self.assertIn("added 2 entries: 127.0.0.1/32 CN", err)
        self.hup_until(REJECTED)
        self.honeypot.process.send_signal(signal.SIGHUP)
        self.honeypot.wait_for(lambda: int(self.listed()[0][4]) >= 1)
        [address, country] = self.listed()
        self.assertEqual((country[:2], address[:2], address[6]),
                         (["country", "CN"], ["ip", "127.0.0.1/32"], "test"))
        _, err = self.acl("remove", "127.0.0.1/32")
        self.assertIn("removed 1 entry: 127.0.0.1/32", err)
        self.hup_until(BANNER)
        self.assertNotIn("Traceback", self.honeypot.output())

    def test_bad_entry(self):
        """An entry that is no address, network or country is one clear line."""
        code, _, err = smtplatrine("acl", "add", "192.0.2.7/24", "--config", self.config)
        self.assertEqual(code, 2)
        self.assertIn("'192.0.2.7/24' is not an IP address or network"
                      " (192.0.2.7/24 has host bits set)", err)
        self.assertNotIn("Traceback", err)


class FirstStartTests(unittest.TestCase):

    def test_before_first_start(self):
        """The list can be filled before the sensor ever ran: the database
        is made, and the entries are there."""
        directory = Path(os.path.abspath(self.mktemp()))
        write_config(directory / "etc", {"server": {"data_dir": directory / "data"}})
        config = str(directory / "etc")
        code, _, err = smtplatrine("acl", "add", "192.0.2.0/24", "--config", config)
        self.assertEqual(code, 0, err)
        code, out, _ = smtplatrine("acl", "list", "--config", config)
        self.assertEqual([line.split("\t")[:2] for line in out.splitlines()],
                         [["ip", "192.0.2.0/24"]])


class SQLiteACLCommandTests(ACLCommandTestsMixin, unittest.TestCase):
    def sections(self):
        return {}


class MariaDBACLCommandTests(ACLCommandTestsMixin, unittest.TestCase):
    def sections(self):
        return mysql_sections(self)


class SmartBanTests(unittest.TestCase):

    def test_http_client_banned(self):
        """A client that keeps speaking HTTP is banned: refused from then on,
        the ban in the block list with its reason, a warning in the log."""
        honeypot = Honeypot(smart_acl={"enabled": "true", "max_mismatches": 2})
        self.addCleanup(honeypot.stop)
        for _ in range(2):
            with socket.create_connection(("127.0.0.1", honeypot.port), 5) as s:
                self.assertEqual(s.recv(200), BANNER)
                s.sendall(b"GET / HTTP/1.1\r\nHost: mail.example.com\r\n\r\n")
                self.assertEqual(s.recv(200), b"221 2.7.0 Error: I can break rules,"
                                              b" too. Goodbye.\r\n")
        with socket.create_connection(("127.0.0.1", honeypot.port), 5) as s:
            self.assertEqual(s.recv(200), REJECTED)
        honeypot.process.send_signal(signal.SIGHUP)
        config = str(honeypot.directory / "etc")

        def ban():
            out = smtplatrine("acl", "list", "--config", config)[1]
            return [line.split("\t") for line in out.splitlines()]
        [row] = honeypot.wait_for(ban)
        self.assertEqual((row[1], row[6], row[7]),
                         ("127.0.0.1/32", "protocol_mismatch", "smtplatrine"))
        self.assertIn("banned 127.0.0.1/32 for 3600s: protocol_mismatch", honeypot.output())
