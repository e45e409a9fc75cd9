"""MariaDB for tests: a fresh database on the machine's server, or a private
``mariadbd`` that a test may stop, kill and start again."""

import ctypes
import random
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import MySQLdb

from tests.ci import unavailable
from tests.process import require

HOST = "127.0.0.1"
PORT = 3306
START_COMMAND = "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd"

# Shared by mariadb-install-db and mariadbd: a small redo log keeps a data
# directory at ~20 MB instead of ~110 MB; utf8mb4 as Debian's server has it.
SERVER_OPTIONS = [
    "--innodb-log-file-size=8M",
    "--innodb-buffer-pool-size=32M",
    "--character-set-server=utf8mb4",
    "--collation-server=utf8mb4_general_ci",
]


def _settings(port, database):
    """Keyword arguments for ``MySQLdb.connect`` as root over TCP."""
    return {"host": HOST, "port": port, "user": "root", "password": "",
            "database": database}


def _server(port, timeout):
    """A connection to the server on *port*, in no database."""
    return MySQLdb.connect(host=HOST, port=port, user="root", password="",
                           connect_timeout=timeout)


def shared_database(testcase):
    """Settings of a new, empty database on the machine's MariaDB, dropped
    when *testcase* cleans up.

    Skips the test if the server is unreachable, except in CI (CI=true),
    where that fails it.
    """
    name = f"smtplatrine_test_{secrets.token_hex(6)}"
    try:
        connection = _server(PORT, 5)
    except MySQLdb.OperationalError as e:
        raise unavailable(f"MariaDB not reachable at {HOST}:{PORT}: {e};"
                          f" start it with {START_COMMAND}") from None
    with connection:
        connection.cursor().execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    testcase.addCleanup(_drop, name)
    return _settings(PORT, name)


def _drop(name):
    with _server(PORT, 5) as connection:
        cursor = connection.cursor()
        # A connection left inside a transaction would block DROP for a year.
        cursor.execute("SET SESSION lock_wait_timeout = 10")
        cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")


def _unused_port():
    """A port free now, below the kernel's ephemeral range, so that no
    outgoing connection or port-0 bind takes it while a stopped server is
    down (mariadbd can neither bind port 0 and say which nor take a bound
    socket; only a process that picks this very port could take it)."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    while True:
        port = random.randrange(10000, low)
        with socket.socket() as s:
            try:
                s.bind((HOST, port))
            except OSError:
                continue
            return port


def _die_with_parent():
    """In the child: be killed when the thread that started it dies."""
    PR_SET_PDEATHSIG = 1
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL):
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")


class PortTaken(RuntimeError):
    """mariadbd could not bind its port: another process has it."""


class PrivateMariaDB:
    """A ``mariadbd`` of the test's own, on its own port of 127.0.0.1, with
    root and an empty password.

    The data directory is made on construction; ``start()`` after ``stop()``
    or ``kill()`` serves the same data on the same port. *testcase* cleans up:
    the server is killed and its directory removed. The server also dies with
    the thread that started it, so call ``start()`` from the main thread.
    """

    def __init__(self, testcase, timeout=30):
        require("mariadbd")
        require("mariadb-install-db")
        self.timeout = timeout
        self.process = None
        self.directory = Path(tempfile.mkdtemp(prefix="smtplatrine-mariadb-"))
        testcase.addCleanup(self.cleanup)
        self.data = self.directory / "data"
        self.log = self.directory / "mariadbd.log"
        self.port = _unused_port()
        self.started = False
        result = subprocess.run(
            ["mariadb-install-db", "--no-defaults", "--user=root",
             "--auth-root-authentication-method=normal", "--skip-test-db",
             f"--datadir={self.data}", f"--tmpdir={self.directory}", *SERVER_OPTIONS],
            capture_output=True, timeout=120)
        if result.returncode:
            raise RuntimeError("mariadb-install-db failed:\n"
                               + (result.stdout + result.stderr).decode(errors="replace"))

    def settings(self, database):
        """Keyword arguments for ``MySQLdb.connect`` to *database* here."""
        return _settings(self.port, database)

    def create_database(self, name):
        """Create database *name* on the running server; its settings."""
        with _server(self.port, 5) as connection:
            connection.cursor().execute(f"CREATE DATABASE `{name}`")
        return self.settings(name)

    def start(self):
        """Start the server; return once it accepts a connection as root.
        At the first start a port that another process took since it was
        chosen is traded for a new one; later starts keep the port."""
        for attempt in range(5):
            try:
                return self._start()
            except PortTaken:
                if self.started or attempt == 4:
                    raise
                self.port = _unused_port()

    def _start(self):
        if self.process is not None:
            raise RuntimeError("mariadbd is already running")
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                ["mariadbd", "--no-defaults", "--user=root",
                 f"--datadir={self.data}", f"--tmpdir={self.directory}",
                 f"--socket={self.directory / 'mariadbd.sock'}",
                 f"--pid-file={self.directory / 'mariadbd.pid'}",
                 f"--bind-address={HOST}", f"--port={self.port}",
                 "--skip-name-resolve", *SERVER_OPTIONS],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code, self.process = self.process.returncode, None
                tail = self.tail()
                error = PortTaken if "Address already in use" in tail else RuntimeError
                raise error(f"mariadbd exited with code {code}:\n{tail}")
            if self._answers():
                self.started = True
                return
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"mariadbd did not answer within {self.timeout} s:\n{self.tail()}")

    def _answers(self):
        """True once this server (not another on its port) takes a connection."""
        try:
            with _server(self.port, 1) as connection:
                cursor = connection.cursor()
                cursor.execute("SELECT @@datadir")
                return Path(cursor.fetchone()[0]) == self.data
        except MySQLdb.OperationalError:
            return False

    def stop(self):
        """Shut the server down cleanly; its port is closed on return."""
        self.process.terminate()
        try:
            self.process.wait(self.timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(f"mariadbd did not shut down within {self.timeout} s:\n"
                               + self.tail())
        self.process = None

    def kill(self):
        """Kill the server at once, as a crash would."""
        self.process.kill()
        self.process.wait()
        self.process = None

    def cleanup(self):
        """Kill the server if it runs and remove its directory."""
        if self.process is not None:
            self.kill()
        shutil.rmtree(self.directory, ignore_errors=True)

    def tail(self, lines=20):
        """The last *lines* of the server's log."""
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def mysql_sections(testcase):
    """The configuration sections of a honeypot storing into a new
    database of :func:`shared_database`."""
    settings = shared_database(testcase)
    return {"engine": {"engine_backend": "mysql"},
            "mysql": {"mysql_host": settings["host"], "mysql_port": settings["port"],
                      "mysql_database": settings["database"]}}
