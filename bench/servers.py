"""The servers under test, each started fresh for a measurement on a free
port of 127.0.0.1: the honeypot (twistd, started as the end-to-end tests
start it), aiosmtpd discarding, and Postfix's smtp-sink discarding."""

import contextlib
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import MySQLdb

from bench import procfs
from bench.report import say
from tests import process

HOST = "127.0.0.1"
SMTP_SINK = "/usr/sbin/smtp-sink"
AIOSMTPD = Path(__file__).resolve().parent / "aiosmtpd_discard.py"
READY_TIMEOUT = 20      # seconds for a server to send its 220 banner
MESSAGE_SIZE_LIMIT = 100 * 1024 * 1024  # the honeypot's and aiosmtpd's: room for 50 MB
MARIADB = {"host": HOST, "port": 3306, "user": "root", "passwd": ""}
STORED_IDS = "SELECT message_id FROM honeypot_emails"  # the spool's message IDs


def log_tail(path, lines=12):
    try:
        text = Path(path).read_text(errors="replace").replace("\r", "\n")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class Server:
    """A server under test: started fresh in a directory of its own by
    running(), which always stops it; its pid, CPU time and message count."""

    name = "?"
    stores = False  # keeps what it receives in a database

    def __init__(self, tmp_root):
        self.tmp_root = Path(tmp_root)
        self.instances = 0
        self.port = None
        self.workdir = None
        self.broken = False  # set once an instance failed to start; later sections skip it

    def start(self, room):
        """Start in self.workdir, listening on self.port; RuntimeError if it does not greet."""
        raise NotImplementedError

    def stop(self):
        raise NotImplementedError

    @property
    def pid(self):
        raise NotImplementedError

    def alive(self):
        raise NotImplementedError

    def received(self):
        """Cumulative count of messages the server accepted, or None if unknown."""
        return None

    def log_files(self):
        return [self.workdir / "server.log"]

    def cpu(self):
        """CPU seconds (user and system) of all its processes so far."""
        return procfs.cpu_seconds(self.pid)

    def show_log_tail(self, lines=12):
        for path in self.log_files():
            tail = log_tail(path, lines)
            if tail:
                say(f"     --- last lines of {path}:")
                say("     " + tail.replace("\n", "\n     "))

    @contextlib.contextmanager
    def running(self, room=None):
        """Start a fresh instance (with room for `room` connections at once);
        yield True if it became ready; always stop it."""
        self.instances += 1
        self.workdir = self.tmp_root / f"{self.name}-{self.instances}"
        self.workdir.mkdir(parents=True)
        try:
            try:
                self.start(room)
                ready = True
            except (RuntimeError, AssertionError) as e:  # see tests.process.Honeypot
                ready, self.broken = False, True
                say(f"  !! {self.name} did not start: {str(e).splitlines()[0][:200]}")
                self.show_log_tail()
            yield ready
        finally:
            self.stop()


def guarded(server, func, *args):
    """Run one server's test; an unexpected error is reported and the run goes on."""
    try:
        return func(*args)
    except Exception as e:  # noqa: BLE001 - report and continue with the next server
        say(f"  !! {server.name}: {func.__name__} failed: {e!r}")
        server.show_log_tail()
        return None


def usable(servers):
    """Servers that have not failed to start earlier (reported once, then skipped)."""
    for server in servers:
        if server.broken:
            say(f"  {server.name}: skipped (failed to start earlier, see the log tail above)")
    return [s for s in servers if not s.broken]


def each(servers, test, describe, *args):
    """test(server, *args) on every usable server, describe(result) printed
    for each: the results."""
    results = []
    for server in usable(servers):
        result = guarded(server, test, server, *args)
        if result:
            say("  " + describe(result))
            results.append(result)
    return results


class Honeypot(Server):
    """twistd smtplatrine with its defaults (SQLite under data_dir, enrichers
    on) but room for a 50 MB message and no per-client limits or bans: all
    the load comes from 127.0.0.1 (bench/per_client.py measures those)."""

    name = "honeypot"
    stores = True
    twistd = None

    def sections(self):
        return {"smtp": {"message_size_limit": MESSAGE_SIZE_LIMIT}, "meta": {}}

    def start(self, room):
        sections = self.sections()
        if room:
            # its default max_connections (1000) would answer 421 to the rest
            sections["protection"] = {"max_connections": room + 100}
            say(f"  (honeypot config for this test adds [protection] max_connections = {room + 100})")
        self.twistd = process.Honeypot(directory=self.workdir, storing=self.stores, **sections)
        self.port = self.twistd.port

    def stop(self):
        if self.twistd:
            self.twistd.stop()
            self.twistd = None

    @property
    def pid(self):
        return self.twistd.process.pid

    def alive(self):
        return self.twistd is not None and self.twistd.process.poll() is None

    def log_files(self):
        return [self.workdir / "stdout.log", self.workdir / "twistd.log"]

    def received(self):
        """Messages received: those waiting in the spool and those stored, by
        ID.  The spool is read first, so a message stored meanwhile is in
        both and counted once."""
        waiting = self.twistd.spooled()
        return len(waiting | self.stored_ids())

    def backlog(self):
        """Finished messages waiting in the spool."""
        return len(self.twistd.spooled())

    def stored_ids(self):
        """IDs of the messages in honeypot_emails; empty while the table cannot be read."""
        return {row["message_id"] for row in self.twistd.query(STORED_IDS)}


def mariadb_unavailable():
    """Why the MariaDB configuration cannot run ('' if it can)."""
    try:
        MySQLdb.connect(connect_timeout=5, **MARIADB).close()
    except MySQLdb.Error as e:
        return f"cannot connect to {MARIADB['host']}:{MARIADB['port']}: {e}"
    return ""


class StoringHoneypot(Honeypot):
    """The honeypot with its database configured for the stored section.

    config "spool-only": engine_backend = mysql on a loopback port nobody
    listens on and retry_max_delay = 3600, so the pipeline only backs off
    (and in_flow_delay = 0: the backlog only grows, and must not slow it);
    "sqlite": the default database file; "mariadb": a fresh database per
    instance, created by the honeypot and dropped when the instance stops.
    *parse_workers*, if given, sets ``[store] parse_workers`` (default: auto)
    and names it ``hp-CONFIG-Nw``.
    """

    def __init__(self, tmp_root, config, parse_workers=None):
        super().__init__(tmp_root)
        self.config = config
        self.parse_workers = parse_workers
        self.name = f"hp-{config}" + (f"-{parse_workers}w" if parse_workers else "")
        self.stores = config != "spool-only"
        self.database = None

    def sections(self):
        sections = super().sections()
        if self.config == "spool-only":
            sections["smtp"] = dict(sections["smtp"], in_flow_delay=0)
            sections.update(engine={"engine_backend": "mysql"},
                            mysql={"mysql_host": HOST, "mysql_port": process.free_port(),
                                   "mysql_database": "smtplatrine"},  # never reached
                            store={"retry_max_delay": 3600})
        elif self.config == "sqlite":
            sections.update(engine={"engine_backend": "sqlite"})
        else:
            self.database = f"smtplatrine_bench_{secrets.token_hex(4)}"
            sections.update(engine={"engine_backend": "mysql"},
                            mysql={"mysql_host": MARIADB["host"], "mysql_port": MARIADB["port"],
                                   "mysql_username": MARIADB["user"],
                                   "mysql_password": MARIADB["passwd"],
                                   "mysql_database": self.database,
                                   "mysql_auto_create_db": "true"})
        if self.parse_workers:
            sections["store"] = dict(sections.get("store", {}),
                                     parse_workers=self.parse_workers)
        return sections

    def stop(self):
        super().stop()
        if self.database:
            self.drop_database()

    def drop_database(self):
        try:
            with contextlib.closing(MySQLdb.connect(connect_timeout=5, **MARIADB)) as db:
                db.cursor().execute(f"DROP DATABASE IF EXISTS `{self.database}`")
        except MySQLdb.Error as e:
            say(f"  !! could not drop MariaDB database {self.database}: {e}")
        self.database = None

    def log_errors(self):
        """From its own log (data_dir/smtplatrine.log; twistd.log rotates at
        1 MB): the lines at level error or critical, and the exceptions that
        end tracebacks."""
        try:
            text = (self.twistd.data / "smtplatrine.log").read_text(errors="replace")
        except FileNotFoundError:
            return [], []
        return (re.findall(r"^.*#(?:error|critical)\].*$", text, re.M),
                re.findall(r"^\s*([\w.]+(?:Error|Exception): .*)$", text, re.M))

    def stored_ids(self):
        return super().stored_ids() if self.stores else set()


class Baseline(Server):
    """A discarding server: its command runs in the background, logging to
    server.log, stopped (and guarded) as the honeypot is."""

    process = None

    def argv(self):
        raise NotImplementedError

    def start(self, room):
        self.port = process.free_port()
        with open(self.workdir / "server.log", "ab") as log:
            self.process = process.ServerProcess(
                self.argv(), cwd=self.workdir, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT)
        process.wait_ready(self.process, self.port, READY_TIMEOUT)

    def stop(self):
        if self.process:
            self.process.stop(10)
            self.process = None

    @property
    def pid(self):
        return self.process.pid

    def alive(self):
        return self.process is not None and self.process.poll() is None


class Aiosmtpd(Baseline):
    name = "aiosmtpd"

    def argv(self):
        return [sys.executable, str(AIOSMTPD), str(self.port), str(MESSAGE_SIZE_LIMIT)]

    def received(self):
        """Ask the server (SIGUSR1) to print its counter, then read it from the log."""
        log = self.workdir / "server.log"
        before = log.read_text().count("accepted")
        self.process.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            text = log.read_text()
            if text.count("accepted") > before:
                return int(re.findall(r"accepted (\d+)", text)[-1])
            time.sleep(0.05)
        return None


class SmtpSink(Baseline):
    name = "smtp-sink"

    def argv(self):
        # -c: running counters on stdout (used for the sanity check)
        # -m 512: allow up to 512 simultaneous sessions (default 256)
        # -u nobody: required when run as root; the backlog is the last argument
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        return [SMTP_SINK, "-c", "-m", "512", *user, f"{HOST}:{self.port}", "1024"]

    def received(self):
        text = (self.workdir / "server.log").read_text(errors="replace")
        counts = re.findall(r"mesg=(\d+)", text)
        return int(counts[-1]) if counts else 0
