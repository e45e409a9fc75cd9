"""Users and API tokens of the dashboard, managed with ``smtplatrine user``
and ``smtplatrine token`` before the first start, on SQLite and MariaDB."""

import base64
import contextlib
import hashlib
import io
import sys
import tempfile
from pathlib import Path

from twisted.trial import unittest

from smtplatrine.cli import main as cli_main
from smtplatrine.store import dialects, users
from tests.mariadb import shared_database
from tests.process import write_config


class PasswordTests(unittest.TestCase):

    def test_scrypt(self):
        """A password hash is salted scrypt: two hashes of one password
        differ, each accepts it and refuses another, and it is the value
        hashlib.scrypt gives for its salt and parameters."""
        first, second = users.hash_password("correct horse"), users.hash_password("correct horse")
        self.assertNotEqual(first, second)
        self.assertTrue(users.password_matches(first, "correct horse"))
        self.assertFalse(users.password_matches(first, "correct horsE"))
        self.assertFalse(users.password_matches("garbage", "x"))
        kind, n, r, p, salt, digest = first.split("$")
        self.assertEqual((kind, n, r, p), ("scrypt", "32768", "8", "1"))
        self.assertEqual(base64.b64decode(digest), hashlib.scrypt(
            b"correct horse", salt=base64.b64decode(salt), n=32768, r=8, p=1,
            maxmem=64 << 20, dklen=32))


class CommandTestsMixin:

    def cli(self, *args, stdin=""):
        """Run ``smtplatrine ARGS`` in this process: (exit status, output)."""
        out = io.StringIO()
        code = 0
        old_stdin, sys.stdin = sys.stdin, io.StringIO(stdin)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                cli_main([*args, "--config", str(self.etc)])
        except SystemExit as e:
            code = e.code
            out.write(str(e.code))
        finally:
            sys.stdin = old_stdin
        return code, out.getvalue()

    def test_users_before_first_start(self):
        """Users are added, listed, given a new password and removed before
        the honeypot ever ran; the stored hash accepts only the password given."""
        self.assertEqual(self.cli("user", "add", "ana", "--role", "forensic",
                                  "--password-stdin", stdin="s3cret-pass\n")[0], 0)
        code, out = self.cli("user", "add", "ana", "--role", "admin", "--password-stdin",
                             stdin="other-pass\n")
        self.assertIn("user ana exists", out)
        code, out = self.cli("user", "list")
        self.assertEqual(out.split("\t")[:2], ["ana", "forensic"])
        connection = self.dialect.connect()
        role, stored = users.find(connection.cursor(), self.dialect, "ana")
        self.assertTrue(users.password_matches(stored, "s3cret-pass"))
        self.cli("user", "passwd", "ana", "--password-stdin", stdin="new-pass-42\n")
        connection.commit()
        role, stored = users.find(connection.cursor(), self.dialect, "ana")
        self.assertTrue(users.password_matches(stored, "new-pass-42"))
        code, out = self.cli("user", "passwd", "ana", "--password-stdin", stdin="short\n")
        self.assertIn("at least 8 characters", out)
        self.assertEqual(self.cli("user", "remove", "ana")[0], 0)
        self.assertIn("no user ana", self.cli("user", "remove", "ana")[1])
        connection.close()

    def test_tokens(self):
        """A token is printed once and found by its hash; removed, it is gone."""
        code, out = self.cli("token", "add", "siem", "--role", "statistical")
        token = out.splitlines()[0]
        self.assertTrue(token.startswith("slt_"))
        connection = self.dialect.connect()
        self.assertEqual(users.find_token(connection.cursor(), self.dialect, token),
                         ("siem", "statistical"))
        self.assertNotIn(token, self.cli("token", "list")[1])
        self.cli("token", "remove", "siem")
        connection.commit()
        self.assertIsNone(users.find_token(connection.cursor(), self.dialect, token))
        connection.close()


class SQLiteCommandTests(CommandTestsMixin, unittest.TestCase):
    def setUp(self):
        directory = Path(tempfile.mkdtemp())
        self.etc = directory / "etc"
        write_config(self.etc, {"server": {"data_dir": directory / "data"}})
        self.dialect = dialects.SQLite(directory / "data" / "smtplatrine.sqlite")


class MariaDBCommandTests(CommandTestsMixin, unittest.TestCase):
    def setUp(self):
        settings = shared_database(self)
        self.etc = Path(tempfile.mkdtemp()) / "etc"
        write_config(self.etc, {
            "engine": {"engine_backend": "mysql"},
            "mysql": {"mysql_host": settings["host"], "mysql_port": settings["port"],
                      "mysql_database": settings["database"]}})
        from smtplatrine.config import load
        self.dialect = dialects.from_config(load(self.etc))
