"""The MariaDB fixtures of tests/mariadb.py."""

import os
import socket

import MySQLdb
from twisted.trial import unittest

from tests import mariadb
from tests.process import refusing_port


class Cleanups:
    """Stands in for a test case whose cleanups this test runs itself."""

    def __init__(self):
        self.pending = []

    def addCleanup(self, function, *args):
        self.pending.append((function, args))

    def run(self):
        while self.pending:
            function, args = self.pending.pop()
            function(*args)


def query(settings, *statements):
    """Run *statements* in one committed transaction; the last one's rows."""
    with MySQLdb.connect(**settings, connect_timeout=5) as connection:
        cursor = connection.cursor()
        for statement in statements:
            cursor.execute(statement)
        connection.commit()
        return cursor.fetchall()


def databases():
    with MySQLdb.connect(host=mariadb.HOST, port=mariadb.PORT, user="root",
                         password="", connect_timeout=5) as connection:
        cursor = connection.cursor()
        cursor.execute("SHOW DATABASES")
        return {name for name, in cursor.fetchall()}


class SharedDatabaseTests(unittest.TestCase):

    def test_usable_then_dropped(self):
        """A shared database takes utf8mb4 text and is dropped at cleanup."""
        cleanups = Cleanups()
        self.addCleanup(cleanups.run)
        settings = mariadb.shared_database(cleanups)
        self.assertEqual({**settings, "database": None},
                         {"host": "127.0.0.1", "port": 3306, "user": "root",
                          "password": "", "database": None})
        self.assertTrue(settings["database"].startswith("smtplatrine_test_"))
        rows = query(settings, "CREATE TABLE t (s TEXT)", "INSERT INTO t VALUES ('é✉')",
                     "SELECT s FROM t")
        self.assertEqual(rows, (("é✉",),))
        self.assertIn(settings["database"], databases())
        cleanups.run()
        self.assertNotIn(settings["database"], databases())

    def test_each_call_is_a_new_database(self):
        """Each call gives a new, empty database."""
        first, second = mariadb.shared_database(self), mariadb.shared_database(self)
        self.assertNotEqual(first["database"], second["database"])
        self.assertEqual(query(first, "SHOW TABLES"), ())

    def unreachable(self, ci):
        """What shared_database raises, with *ci* as CI (None: unset), when
        MariaDB's port refuses connections."""
        self.patch(mariadb, "PORT", refusing_port(self))
        environ = dict(os.environ)
        environ.pop("CI", None)
        if ci:
            environ["CI"] = ci
        self.patch(os, "environ", environ)
        with self.assertRaises(Exception) as raised:
            mariadb.shared_database(self)
        return raised.exception

    def test_unreachable_skips(self):
        """Outside CI an unreachable MariaDB skips, saying how to start it."""
        error = self.unreachable(None)
        self.assertIsInstance(error, unittest.SkipTest)
        self.assertIn("MariaDB not reachable at 127.0.0.1:", str(error))
        self.assertIn("start-stop-daemon", str(error))

    def test_unreachable_fails_in_ci(self):
        """Under CI an unreachable MariaDB fails the test."""
        error = self.unreachable("true")
        self.assertNotIsInstance(error, unittest.SkipTest)
        self.assertIn("MariaDB not reachable at 127.0.0.1:", str(error))


class PrivateMariaDBTests(unittest.TestCase):

    def setUp(self):
        self.server = mariadb.PrivateMariaDB(self)
        self.server.start()
        self.settings = self.server.create_database("app")
        query(self.settings, "CREATE TABLE t (n INT) ENGINE=InnoDB",
              "INSERT INTO t VALUES (1), (2)")

    def assertDown(self):
        with self.assertRaises(MySQLdb.OperationalError) as raised:
            query(self.settings, "SELECT 1")
        self.assertIn(raised.exception.args[0], (2002, 2003))

    def test_settings(self):
        """The private server is root without a password on its own port, utf8mb4."""
        self.assertEqual(self.settings,
                         {"host": "127.0.0.1", "port": self.server.port, "user": "root",
                          "password": "", "database": "app"})
        self.assertNotEqual(self.server.port, 3306)
        self.assertEqual(query(self.settings, "SELECT @@character_set_server"),
                         (("utf8mb4",),))

    def test_rows_survive_stop_and_start(self):
        """Stopped, it refuses connections; started again, its rows are there."""
        self.server.stop()
        self.assertDown()
        self.server.start()
        self.assertEqual(query(self.settings, "SELECT n FROM t ORDER BY n"), ((1,), (2,)))

    def test_rows_survive_kill_and_start(self):
        """Killed, it refuses connections; started again, committed rows are there."""
        query(self.settings, "INSERT INTO t VALUES (3)")
        self.server.kill()
        self.assertDown()
        self.server.start()
        self.assertEqual(query(self.settings, "SELECT n FROM t ORDER BY n"),
                         ((1,), (2,), (3,)))

    def test_cleanup_kills_and_removes(self):
        """Cleanup kills the server and removes its directory."""
        process = self.server.process
        self.server.cleanup()
        self.assertIsNotNone(process.poll())
        self.assertFalse(self.server.directory.exists())
        self.assertDown()

    def test_start_failure_shows_log(self):
        """A start that fails (its port taken) says so with the server's log."""
        self.server.stop()
        with socket.socket() as taken:
            # The stopped server's port may be in TIME_WAIT.
            taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            taken.bind((mariadb.HOST, self.server.port))
            taken.listen()
            with self.assertRaises(RuntimeError) as raised:
                self.server.start()
        self.assertIn("mariadbd exited", str(raised.exception))
        self.assertIn(str(self.server.port), str(raised.exception))
        self.server.start()
        self.assertEqual(query(self.settings, "SELECT COUNT(*) FROM t"), ((2,),))


class PrivateMariaDBPortTests(unittest.TestCase):

    def test_port_taken_before_first_start(self):
        """A port another process took before the first start is traded
        for a new one; the server is then its own on that one."""
        server = mariadb.PrivateMariaDB(self)
        with socket.socket() as taken:
            taken.bind((mariadb.HOST, server.port))
            taken.listen()
            port = server.port
            server.start()
        self.assertNotEqual(server.port, port)
        self.assertEqual(query(server.create_database("app"), "SELECT 1"), ((1,),))
