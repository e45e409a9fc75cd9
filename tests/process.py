"""A real ``twistd -n smtplatrine`` on a loopback port, for end-to-end tests
and for the benchmark (bench/), which starts its servers with these too."""

import contextlib
import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

import MySQLdb
import MySQLdb.cursors

from smtplatrine.spool import free_space
from tests.ci import unavailable

ROOT = Path(__file__).resolve().parent.parent
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
GUARD = Path(__file__).resolve().parent / "guard.py"
GUARD_SECONDS = 3600    # the longest a server started here may live
# The honeypot's listeners: ports the system chooses, logged by twistd.
PLAIN_LISTENER, TLS_LISTENER = "tcp:0:interface=127.0.0.1", "ssl:0:interface=127.0.0.1"
UNKNOWN_DATABASE = 1049  # MariaDB's ER_BAD_DB_ERROR


def require(command):
    """Skip a test whose tool is missing, except in CI, where that fails."""
    if shutil.which(command) is None:
        raise unavailable(f"{command} is not installed (Debian package; see .ci/run)")


def require_root(what):
    """Skip a test of *what* unless it runs as root, except in CI, where
    that fails (``.ci/run`` runs as root)."""
    if os.geteuid() != 0:
        raise unavailable(f"{what} needs a test run as root")


class SmallFileSystem:
    """A tmpfs of *size* (say "64m") mounted on a new directory, ``path``,
    that :meth:`fill` fills (mounting needs root: see :func:`require_root`)."""

    def __init__(self, size):
        require_root("mounting a tmpfs")
        self.path = Path(tempfile.mkdtemp(prefix="smtplatrine-fs-"))
        self.path.chmod(0o755)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                        str(self.path)], check=True)
        self.filler = self.path / "filler"

    def fill(self, leave=0):
        """Write ``filler`` until at most *leave* bytes are free."""
        with open(self.filler, "ab", buffering=0) as f:
            for size in (1 << 20, 4096, 1):
                with contextlib.suppress(OSError):
                    while free_space(self.path) - size >= leave:
                        f.write(b"\0" * size)

    def empty(self):
        """Remove ``filler``: room again."""
        self.filler.unlink(missing_ok=True)

    def remove(self):
        subprocess.run(["umount", "-l", str(self.path)], check=False)
        self.path.rmdir()


def free_port(family=socket.AF_INET, host="127.0.0.1"):
    """A port that was free a moment ago, for a server that cannot say
    which port it bound (the benchmark's baselines); another process may
    take it meanwhile.  Servers of ours bind port 0 and say which port the
    system chose (:func:`logged_port`)."""
    with socket.socket(family) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def environment():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("LISTEN_FDS", None)
    return env


def banner(sock, limit=1000):
    """The first line the server sends on *sock*, its line end included, or
    what came before it closed; at most *limit* bytes.  (A server says
    nothing more before the client speaks.)"""
    received = b""
    while b"\n" not in received and len(received) < limit:
        chunk = sock.recv(limit)
        if not chunk:
            break
        received += chunk
    line, end, _ = received.partition(b"\n")
    return line + end


def wait_ready(process, port, timeout=30, output=lambda: "", name=None):
    """Return once 127.0.0.1:*port* greets with a 220 banner; RuntimeError,
    with *output()*, if *process* (*name*) ends first or *timeout* seconds
    pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name or Path(process.args[0]).name} exited: {output()}")
        try:
            with socket.create_connection(("127.0.0.1", port), 1) as s:
                if banner(s).startswith(b"220 "):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"nothing greeted on port {port} within {timeout} s: {output()}")


def refusing_port(testcase):
    """A port of 127.0.0.1 that refuses connections while *testcase* runs:
    bound by it and not listening, so that nothing else can take it."""
    closed = socket.socket()
    testcase.addCleanup(closed.close)
    closed.bind(("127.0.0.1", 0))
    return closed.getsockname()[1]


def logged_port(process, log, description, offset=0, timeout=30, name="twistd",
                what="listening"):
    """The port *process* says, in the file *log* past byte *offset*, that
    its endpoint *description* listens on ("WHAT on DESCRIPTION at
    HOST:PORT", as smtplatrine logs each listener, and the metrics port
    with *what* "serving /metrics"); RuntimeError, with the log, if it ends
    first or *timeout* seconds pass."""
    pattern = re.compile(rf"{re.escape(what)} on {re.escape(description)} at \S*:(\d+)$",
                         re.M)
    deadline = time.monotonic() + timeout
    while True:
        text = log.read_bytes()[offset:].decode(errors="replace") if log.exists() else ""
        found = pattern.search(text)
        if found:
            return int(found.group(1))
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited: {text}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not say where {description} listens within"
                               f" {timeout} s: {text}")
        time.sleep(0.05)


class ServerProcess(subprocess.Popen):
    """A server in the background that cannot outlive us: beside it runs
    tests/guard.py, which stops it once this process ends, even by SIGKILL,
    or after GUARD_SECONDS."""

    def __init__(self, args, **options):
        super().__init__(args, **options)
        self.guard = subprocess.Popen(
            [sys.executable, str(GUARD), str(os.getpid()), str(self.pid), str(GUARD_SECONDS)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True)

    def wait(self, timeout=None):
        returncode = super().wait(timeout)
        self.guard.wait()  # it ends with the server
        return returncode

    def stop(self, timeout=20):
        """SIGTERM, and SIGKILL if it has not ended within *timeout* seconds."""
        if self.poll() is None:
            self.terminate()
            try:
                self.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self.wait()


def children(pid):
    """The pids of *pid*'s child processes; none once it is gone."""
    found = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found += map(int, (task / "children").read_text().split())
    return found


def reachable_directory():
    """A new directory that the server can still reach once it runs as nobody
    (started as root, it drops privileges); the caller removes it."""
    directory = Path(tempfile.mkdtemp(prefix="smtplatrine-test-"))
    directory.chmod(0o755)
    return directory


def write_config(directory, sections):
    """Write ``{section: {key: value}}`` as one INI file in *directory*."""
    directory.mkdir(parents=True, exist_ok=True)
    text = "".join(
        f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in values.items())
        for name, values in sections.items())
    (directory / "test.ini").write_text(text)


class Honeypot:
    """twistd running the honeypot with extra config sections.

    It listens on a plain port (``self.port``) and an implicit TLS port
    (``self.tls_port``) of 127.0.0.1 that the system chose and twistd
    logged (new ones after each start).  It runs in *directory* if given (the
    caller's to remove), else in a temporary one that :meth:`stop` removes.
    Start-up waits until the readiness probe's session is stored, unless
    *storing* is false (a database out of reach on purpose).
    """

    def __init__(self, *, directory=None, storing=True, **sections):
        self.temporary = directory is None
        self.directory = reachable_directory() if self.temporary else Path(directory)
        self.data = self.directory / "data"
        self.port = self.tls_port = None
        sections.setdefault("server", {})
        # Enrichers would ask the machine's DNS resolvers: only on request.
        sections.setdefault("meta", {"meta_enable": "false"})
        sections["server"].setdefault("data_dir", self.data)
        self.data = Path(sections["server"]["data_dir"])
        # Every test client is 127.0.0.1: no per-client limits or smart bans
        # unless a test sets them (tests/test_acl*.py, bench/per_client.py).
        protection = sections["protection"] = dict(sections.get("protection", {}))
        protection.setdefault("max_connections_per_client", 0)
        protection.setdefault("max_connection_rate", 0)
        sections.setdefault("smart_acl", {"enabled": "false"})
        # The dashboard listens only for the tests that ask for it (test_web*).
        sections.setdefault("web", {"enabled": "false"})
        sections["server"].setdefault("listen", "")
        write_config(self.directory / "etc", sections)
        self.mysql = None
        if sections.get("engine", {}).get("engine_backend") == "mysql":
            mysql = sections["mysql"]
            self.mysql = dict(host=mysql["mysql_host"], port=int(mysql["mysql_port"]),
                              user="root", password="", database=mysql["mysql_database"])
        self.log = self.directory / "twistd.log"
        self.stdout = self.directory / "stdout.log"
        self.process = None
        self.ignored = set()
        try:
            self.start()
            # The readiness probe was a session too; tests see only their own.
            if storing:
                self.ignored = {r["session"] for r in self.wait_for(self.sessions)}
        except BaseException:
            self.stop()
            raise

    def start(self):
        """Start twistd (again, after :meth:`kill`, on the same data and
        new ports); return once it greets."""
        offset = self.log.stat().st_size if self.log.exists() else 0
        with open(self.stdout, "ab") as stdout:
            self.process = ServerProcess(
                TWISTD + ["-n", "--pidfile=", f"--logfile={self.log}", "smtplatrine",
                          "--config", str(self.directory / "etc"),
                          "--listen", PLAIN_LISTENER, "--listen", TLS_LISTENER],
                cwd=self.directory, env=environment(),
                stdout=stdout, stderr=subprocess.STDOUT)
        self.port, self.tls_port = (
            logged_port(self.process, self.log, listener, offset)
            for listener in (PLAIN_LISTENER, TLS_LISTENER))
        self.wait_ready()

    def kill(self):
        """SIGKILL: no shutdown, no flush, as in a crash."""
        self.process.kill()
        self.process.wait()

    def wait_ready(self, timeout=30):
        wait_ready(self.process, self.port, timeout, self.output, "twistd")

    def output(self):
        """What twistd logged and printed so far."""
        return "".join(path.read_text(errors="replace")
                       for path in (self.log, self.stdout) if path.exists())

    def rss_kb(self):
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

    def storer_pids(self):
        """The storing process's pids, (supervisor, worker); None for
        either that is not running.  (The zygotes of the sandbox and of
        the parse workers, forks of the supervisor too, are not its
        worker.)"""
        supervisor = _child(self.process.pid, b"smtplatrine.storing")
        return supervisor, _child(supervisor, b"smtplatrine.storing",
                                  skip=(b"smtplatrine-sbx", b"smtplatrine-par"))

    def sandbox_pid(self):
        """The pid of the storing process's sandbox, or None."""
        supervisor = _child(self.process.pid, b"smtplatrine.storing")
        return _child(supervisor, b"smtplatrine.storing", only=b"smtplatrine-sbx")

    def parse_worker_pids(self):
        """The pids of the storing process's parse workers (children of
        their zygote)."""
        supervisor = _child(self.process.pid, b"smtplatrine.storing")
        parsers = _child(supervisor, b"smtplatrine.storing", only=b"smtplatrine-par")
        return sorted(children(parsers)) if parsers else []

    def stop(self):
        if self.process:
            self.process.stop()
        if self.temporary:
            shutil.rmtree(self.directory, ignore_errors=True)

    def spooled(self, kind="messages"):
        """The ids of the finished messages (or session records, *kind*
        "sessions") waiting in the spool: those whose metadata is written;
        files made ahead stay empty until used."""
        spooled = set()
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.data / "spool" / kind):
                with contextlib.suppress(FileNotFoundError):  # stored meanwhile
                    if entry.name.endswith(".json") and entry.stat().st_size:
                        spooled.add(entry.name.removesuffix(".json"))
        return spooled

    def drained(self):
        """True once the spool holds nothing waiting to be stored."""
        return not self.spooled("messages") and not self.spooled("sessions")

    def query(self, statement, *args):
        """Rows from the sensor's database (SQLite, or the MySQL its
        configuration names) as dicts; none before it and its tables exist."""
        if self.mysql:
            try:
                connection = MySQLdb.connect(**self.mysql)
            except MySQLdb.OperationalError as e:
                if e.args[0] == UNKNOWN_DATABASE:  # twistd creates it on request
                    return []
                raise
            with closing(connection) as db:
                cursor = db.cursor(MySQLdb.cursors.DictCursor)
                try:
                    cursor.execute(statement.replace("?", "%s"), args)
                except MySQLdb.ProgrammingError:
                    return []
                return list(cursor.fetchall())
        path = self.data / "smtplatrine.sqlite"
        # Only once twistd holds the database open (its -wal and -shm files
        # exist): a reader that came first would create them as root, which
        # twistd, running as nobody, then could not write.
        if not path.with_name(path.name + "-wal").exists():
            return []
        try:
            with closing(sqlite3.connect(path.as_uri() + "?mode=ro", uri=True)) as db:
                db.row_factory = sqlite3.Row
                return [dict(row) for row in db.execute(statement, args)]
        except sqlite3.OperationalError:
            return []

    def messages(self, client=None):
        """Stored messages, once the spool has drained: [(metadata, raw)]
        with the spool's metadata keys, oldest first (raw from the row, or
        from the file under data/raw/ that it names); only those of
        *client*, an (address, port), if given."""
        self.wait_for(self.drained)
        found = []
        where, args = client_filter("e", client, "WHERE")
        for row in self.query("SELECT * FROM honeypot_emails e JOIN honeypot_sessions s"
                              " USING (session_id)" + where + " ORDER BY received", *args):
            rcpts = self.query("SELECT address FROM honeypot_email_recipients"
                               " WHERE message_id = ? AND kind = 'envelope'",
                               row["message_id"])
            found.append((dict(
                message=row["message_id"], queue_id=row["queue_id"],
                mail_from=row["mail_from"], rcpts=[r["address"] for r in rcpts],
                transport=row["transport"], acknowledged=bool(row["acknowledged"]),
                truncated=bool(row["truncated"]), flags=json.loads(row["session_flags"]),
                tls=_tls(row), size=row["size"], sha256=row["sha256"]),
                row["raw"] if row["raw_path"] is None
                else (self.data / "raw" / row["raw_path"]).read_bytes()))
        return found

    def sessions(self, client=None):
        """Stored records of closed sessions, with the spool's keys; only
        those of *client*, an (address, port), if given."""
        found = []
        where, args = client_filter("s", client, "AND")
        for row in self.query("SELECT * FROM honeypot_sessions s WHERE ended IS NOT NULL"
                              + where + " ORDER BY started", *args):
            if row["session_id"] in self.ignored:
                continue
            auth = self.query("SELECT * FROM honeypot_credentials WHERE session_id = ?"
                              " ORDER BY position", row["session_id"])
            found.append(dict(
                session=row["session_id"], sensor=row["sensor"], src_ip=row["client_ip"],
                helo=row["helo"], tls=_tls(row), messages=row["messages"],
                flags=json.loads(row["flags"]), envelopes=json.loads(row["envelopes"]),
                transcript=json.loads(row["transcript"]), auth=auth))
        return found

    def wait_for(self, predicate, timeout=10):
        """Poll until *predicate()* is true (session records are written on close)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = predicate()
            if result:
                return result
            time.sleep(0.05)
        tail = "\n".join(self.output().splitlines()[-40:])
        raise AssertionError(f"timed out waiting; twistd's log ends:\n{tail}")


def _child(pid, command, skip=None, only=None):
    """The first child of *pid* whose command line holds *command* (and
    whose name is not one of *skip*, or is *only*), or None."""
    if pid is None:
        return None
    for child in children(pid):
        with contextlib.suppress(OSError):
            name = Path(f"/proc/{child}/comm").read_bytes().strip()
            if (command in Path(f"/proc/{child}/cmdline").read_bytes()
                    and name not in (skip or ()) and (only is None or name == only)):
                return child
    return None


def client_filter(table, client, keyword):
    """SQL (after *keyword*) keeping the rows of *table* from *client*, an
    (address, port), all rows if it is None, and its arguments."""
    if client is None:
        return "", ()
    return f" {keyword} {table}.client_ip = ? AND {table}.client_port = ?", tuple(client)


def _tls(row):
    if row["tls_implicit"] is None:
        return None
    return {"implicit": bool(row["tls_implicit"]), "version": row["tls_version"],
            "cipher": row["tls_cipher"]}


def run_twistd(*args, cwd, timeout=30):
    """Run twistd with *args* to its end: (exit code, output)."""
    result = subprocess.run(TWISTD + ["-n", "--pidfile=", *args], cwd=cwd,
                            env=environment(), capture_output=True, timeout=timeout)
    return result.returncode, (result.stdout + result.stderr).decode(errors="replace")
