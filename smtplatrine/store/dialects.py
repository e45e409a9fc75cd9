"""What differs between SQLite and MySQL/MariaDB: connecting, the few SQL
forms that are not standard, and which errors are worth retrying.

Statements elsewhere are written once with ``?`` placeholders;
:meth:`Dialect.sql` turns them into the driver's style.
"""

import functools
import importlib
import ipaddress
import os
import pkgutil
import sqlite3
from importlib.resources import files
from pathlib import Path

from twisted.enterprise import adbapi

# MySQL's operational errors say "not now" (server gone or unreachable, lost
# connection, deadlock, lock wait, bad credentials being fixed) except these,
# which say "never" for this data: packet over max_allowed_packet, result
# string too long.
_MYSQL_NEVER = {1153, 1301}


# How large a reading connection's temporary tables grow in memory before
# MariaDB moves them to disk (16 MB by default).  Summing a range of the
# tallies groups one row per distinct value, each some 1 KB (the value
# column's full width): 25,000 client addresses in 15 days filled 16 MB,
# and the page took 6.8 s instead of 0.7.  Only as much as a query uses is
# taken, for as long as it runs.
READ_TEMPORARY = 128 * 2**20

class _Connection(adbapi.Connection):
    """adbapi's connection, except that a rollback on a connection the
    server dropped closes it quietly (the next interaction opens another),
    instead of logging a traceback: the pipeline reports an outage once."""

    def rollback(self):
        try:
            self._connection.rollback()
        except Exception:
            self._pool.disconnect(self._connection)


def _pool(*args, **kwargs):
    pool = adbapi.ConnectionPool(*args, cp_noisy=False, **kwargs)
    pool.connectionFactory = _Connection
    return pool


class Unavailable(Exception):
    """The database cannot be reached now; try again later."""


class Rejected(Exception):
    """The database will never take this data; the message says why."""


def inet6_aton(text):
    """MySQL's INET6_ATON for SQLite: the address *text* as 4 or 16 bytes
    (None when it is none), so that a network is a range of them."""
    try:
        return ipaddress.ip_address(text).packed
    except (TypeError, ValueError):
        return None


class _Dialect:
    name = ""
    placeholder = "?"
    # Appended to a SELECT to lock its rows until the commit (SQLite has
    # one writer at a time anyway).
    for_update = ""

    def sql(self, statement):
        return statement.replace("?", self.placeholder)

    def sync(self):
        """Make every transaction committed so far durable (blocking; run
        it in a thread).  Here each commit already is."""

    def migrations(self):
        """The schema files of this dialect, [(version, name, text)] in order."""
        folder = files("smtplatrine.sql") / self.name
        return sorted((int(f.name.split("_")[0]), f.name, f.read_text(encoding="utf-8"))
                      for f in folder.iterdir() if f.name.endswith(".sql"))

    def insert(self, table, columns, ignore=False):
        names = ", ".join(columns)
        marks = ", ".join("?" * len(columns))
        verb = self._insert_ignore if ignore else "INSERT"
        return self.sql(f"{verb} INTO {table} ({names}) VALUES ({marks})")

    def _update(self, column, how):
        new = self._new_value.format(column)
        return {"new": new, "add": f"{column} + {new}",
                "max": f"{self._greatest}({column}, {new})",
                "min": f"{self._least}({column}, {new})"}[how]

    def upsert(self, table, columns, key, updates):
        """INSERT that, when *key* exists, applies *updates*: column ->
        ``"new"`` (take the new value), ``"add"`` (add it), ``"max"`` or
        ``"min"``."""
        clauses = ", ".join(f"{c} = {self._update(c, how)}" for c, how in updates.items())
        return self.insert(table, columns) + self._on_conflict(key) + clauses


class SQLite(_Dialect):
    name = "sqlite"
    # Text compared without regard to case, as MySQL's collation does.
    nocase = " COLLATE NOCASE"
    _insert_ignore = "INSERT OR IGNORE"
    _new_value, _greatest, _least = "excluded.{}", "MAX", "MIN"

    def __init__(self, path):
        self.path = Path(path)

    def pool(self, grouped=False, readonly=False):
        """The connection; *grouped*: its commits are made durable in groups,
        by :meth:`sync`, rather than one by one.  *readonly*: connections
        that can only read (several, since WAL lets readers work at once)."""
        if readonly:
            return _pool("sqlite3", self._uri("ro"), uri=True, check_same_thread=False,
                         timeout=30, cp_min=1, cp_max=3, cp_openfun=self._functions)
        setup = functools.partial(self._setup, synchronous="NORMAL" if grouped else "FULL")
        return _pool("sqlite3", str(self.path), check_same_thread=False, timeout=30,
                     cp_min=1, cp_max=1, cp_openfun=setup)

    @staticmethod
    def json_value(column, key):
        """SQL for the value of *key* in the JSON object of *column*."""
        return f"json_extract({column}, '$.{key}')"

    @staticmethod
    def prefix_match(column, prefix):
        """SQL (and its arguments) for text of *column* that starts with
        *prefix*, which an index on it finds: a range, in byte order."""
        return f"({column} >= ? AND {column} < ?)", [prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)]

    def _uri(self, mode):
        return self.path.resolve().as_uri() + "?mode=" + mode

    def connect(self, create=False, readonly=False):
        """A plain DB-API connection (for the command line tools); with
        *create*, the file (and its directory) is made if missing; with
        *readonly*, it cannot write."""
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        mode = "ro" if readonly else "rwc" if create else "rw"
        connection = sqlite3.connect(self._uri(mode), uri=True, timeout=30)
        if readonly:
            self._functions(connection)
        else:
            self._setup(connection)
        return connection

    @classmethod
    def _setup(cls, connection, synchronous="FULL"):
        # WAL lets readers (export, analysts) work while we write.  FULL syncs
        # the log at each commit; NORMAL only at checkpoints (and sync()).
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(f"PRAGMA synchronous={synchronous}")
        cls._functions(connection)

    @staticmethod
    def _functions(connection):
        """What MySQL has and the searches use."""
        connection.create_function("inet6_aton", 1, inet6_aton, deterministic=True)

    def index_text(self, cursor, message_id, subject, sender, body, replace=False):
        """Add a message's text to the full-text index (*replace*: instead
        of what it had, which stays in the contentless index, under a
        number that no longer leads to the message)."""
        if replace:
            cursor.execute("DELETE FROM honeypot_email_text_ids WHERE message_id = ?",
                           (message_id,))
        cursor.execute("INSERT INTO honeypot_email_text_ids (message_id) VALUES (?)",
                       (message_id,))
        cursor.execute("INSERT INTO honeypot_email_text (rowid, subject, sender, body)"
                       " VALUES (?, ?, ?, ?)", (cursor.lastrowid, subject, sender, body))

    @staticmethod
    def text_match(columns, words):
        """SQL selecting the message_id of the messages whose *columns*
        hold the phrase *words* (a list of words), and its arguments."""
        phrase = '"' + " ".join(words) + '"'
        return ("SELECT k.message_id FROM honeypot_email_text t"
                " JOIN honeypot_email_text_ids k ON k.doc = t.rowid"
                " WHERE honeypot_email_text MATCH ?",
                ["{" + " ".join(columns) + "} : " + phrase])

    def sync(self):
        """fsync(2) the write-ahead log: with it, every transaction
        committed before is durable.  No log: all is in the database file,
        which a checkpoint syncs."""
        try:
            fd = os.open(f"{self.path}-wal", os.O_RDONLY)
        except FileNotFoundError:
            return
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _on_conflict(self, key):
        return f" ON CONFLICT ({', '.join(key)}) DO UPDATE SET "

    def prepare(self):
        """Nothing to create: the file appears on first connection."""

    def lock(self, cursor):
        """SQLite serialises writers by itself."""

    unlock = lock

    @staticmethod
    def max_packet(cursor):
        """SQLite's default SQLITE_MAX_LENGTH."""
        return 1_000_000_000

    @staticmethod
    def classify(error):
        if isinstance(error, sqlite3.OperationalError):
            return Unavailable(f"SQLite: {error}")
        if isinstance(error, sqlite3.Error):
            return Rejected(f"SQLite: {error}")
        return None

    def describe(self):
        return f"SQLite {self.path}"


# Words in nearly every sender or link, which InnoDB's index finds slowly.
_EVERYWHERE = {"com", "net", "org", "www", "http", "https", "html", "mail"}


class MySQL(_Dialect):
    name = "mysql"
    nocase = ""
    placeholder = "%s"
    for_update = " FOR UPDATE"
    _insert_ignore = "INSERT IGNORE"
    _new_value, _greatest, _least = "VALUES({})", "GREATEST", "LEAST"

    def __init__(self, settings):
        # MySQLdb imports its modules as it first connects, when, after the
        # privilege drop, the library may be out of reach: import them now.
        import MySQLdb
        for module in pkgutil.walk_packages(MySQLdb.__path__, "MySQLdb."):
            importlib.import_module(module.name)
        self.settings = settings

    def _connect_args(self, database=True):
        s = self.settings
        args = dict(user=s.mysql_username, password=s.mysql_password,
                    charset="utf8mb4", binary_prefix=True, connect_timeout=10)
        if s.mysql_socket:
            args["unix_socket"] = s.mysql_socket
        else:
            args.update(host=s.mysql_host, port=s.mysql_port)
        if database:
            args["database"] = s.mysql_database
        return args

    def pool(self, grouped=False, readonly=False):
        """The connections; InnoDB makes each commit durable, *grouped* or
        not.  *readonly*: the account needs no more than SELECT (and the
        connections group in memory, :data:`READ_TEMPORARY`)."""
        return _pool("MySQLdb", cp_min=1, cp_max=self.settings.mysql_connections,
                     cp_reconnect=True, cp_openfun=functools.partial(self._setup,
                                                                     reading=readonly),
                     **self._connect_args())

    def connect(self, create=False, readonly=False):
        """A plain DB-API connection (for the command line tools); with
        *create*, the database is made if missing and mysql_auto_create_db
        allows.  *readonly*: the account needs no more than SELECT."""
        import MySQLdb
        if create:
            self.prepare()
        connection = MySQLdb.connect(**self._connect_args())
        self._setup(connection, reading=readonly)
        return connection

    @staticmethod
    def _setup(connection, reading=False):
        cursor = connection.cursor()
        cursor.execute("SET time_zone = '+00:00'")
        cursor.execute("SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'")
        if reading:
            cursor.execute("SET SESSION tmp_table_size = %s, max_heap_table_size = %s",
                           (READ_TEMPORARY, READ_TEMPORARY))
        cursor.close()

    def _on_conflict(self, key):
        return " ON DUPLICATE KEY UPDATE "

    @staticmethod
    def json_value(column, key):
        """SQL for the value of *key* in the JSON object of *column*."""
        return f"JSON_VALUE({column}, '$.{key}')"

    @staticmethod
    def prefix_match(column, prefix):
        """SQL (and its arguments) for text of *column* that starts with
        *prefix* (no % or _ in it), which an index on it finds."""
        return f"{column} LIKE ?", [prefix + "%"]

    def index_text(self, cursor, message_id, subject, sender, body, replace=False):
        """Add a message's text to the full-text index (*replace*: instead
        of what it had)."""
        if replace:
            cursor.execute("DELETE FROM honeypot_email_text WHERE message_id = %s",
                           (message_id,))
        cursor.execute(self.insert("honeypot_email_text",
                                   ["message_id", "subject", "sender", "body"]),
                       (message_id, subject, sender, body))

    @staticmethod
    def text_match(columns, words):
        """SQL selecting the message_id of the messages whose *columns*
        hold the phrase *words* (a list of words), and its arguments.
        InnoDB finds each word (three letters or more) faster than the
        phrase, and a word in every address (com, net) slowly; a LIKE on
        what it found keeps them all, in order."""
        indexed = [w for w in words if len(w) >= 3]
        indexed = [w for w in indexed if w not in _EVERYWHERE] or indexed
        pattern = "%" + "%".join(words) + "%"
        clauses, args = [], []
        if indexed:
            clauses.append(f"MATCH({', '.join(columns)}) AGAINST (? IN BOOLEAN MODE)")
            args.append(" ".join("+" + w for w in indexed))
        if len(words) > len(indexed) or len(words) > 1:
            clauses.append("(" + " OR ".join(f"{c} LIKE ?" for c in columns) + ")")
            args += [pattern] * len(columns)
        return (f"SELECT message_id FROM honeypot_email_text WHERE {' AND '.join(clauses)}",
                args)

    def prepare(self):
        """Create the database when asked to (blocking; run in a thread)."""
        if not self.settings.mysql_auto_create_db:
            return
        import MySQLdb
        connection = MySQLdb.connect(**self._connect_args(database=False))
        try:
            connection.cursor().execute(
                f"CREATE DATABASE IF NOT EXISTS `{self.settings.mysql_database}`"
                " CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        finally:
            connection.close()

    def lock(self, cursor):
        """Let one sensor at a time upgrade the schema."""
        cursor.execute("SELECT GET_LOCK('smtplatrine_schema', 60)")

    def unlock(self, cursor):
        cursor.execute("SELECT RELEASE_LOCK('smtplatrine_schema')")

    @staticmethod
    def max_packet(cursor):
        cursor.execute("SELECT @@max_allowed_packet")
        return cursor.fetchone()[0]

    @staticmethod
    def classify(error):
        import MySQLdb
        if not isinstance(error, MySQLdb.MySQLError):
            return None
        code = error.args[0] if error.args else None
        if isinstance(error, MySQLdb.OperationalError) and code not in _MYSQL_NEVER:
            return Unavailable(f"MySQL error {code}: {error.args[-1]}")
        return Rejected(f"MySQL error {code}: {error.args[-1]}")

    def describe(self):
        s = self.settings
        where = s.mysql_socket or f"{s.mysql_host}:{s.mysql_port}"
        return f"MySQL {s.mysql_username}@{where}/{s.mysql_database}"


def from_config(config):
    """The dialect *config* asks for; SystemExit with one line if its
    driver is missing."""
    if config.engine.engine_backend == "mysql":
        try:
            return MySQL(config.mysql)
        except ImportError as e:
            raise SystemExit(f"smtplatrine: engine_backend = mysql needs {e.name}:"
                             f" pip install 'smtplatrine[mysql]'") from None
    return SQLite(config.data_path(config.sqlite.sqlite_path))
