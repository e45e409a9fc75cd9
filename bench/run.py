#!/usr/bin/env python3
"""smtplatrine benchmark harness.

HOW TO RUN
    python3 bench/run.py            # full run (a few minutes)
    python3 bench/run.py --quick    # smoke run: 1/10 of the messages, 1,000 idle conns
    python3 bench/run.py --skip-honeypot   # baselines only
    python3 bench/run.py --keep-tmp        # keep the temp dir (logs, spool) for inspection
    python3 bench/run.py --only stored     # one section only (repeatable): throughput,
                                           # idle, large, stored or load; combines with --quick

    Needs: Postfix's /usr/sbin/smtp-source and /usr/sbin/smtp-sink (Debian
    package "postfix"; the postfix daemon is NOT started), aiosmtpd, and for
    the honeypot a `twistd` that lists the `smtplatrine` plugin.  The repo root
    is put on PYTHONPATH for twistd so an uninstalled checkout is found too.
    Everything listens and connects on 127.0.0.1 only.  The stored section
    also wants MariaDB on 127.0.0.1:3306 (user root, empty password) and the
    python module MySQLdb; without them it skips the MariaDB line and says so.

WHAT IT MEASURES  (every figure is printed next to baselines from the same run)
    Servers, each on a free loopback port, each started fresh per section:
      honeypot   twistd -n smtplatrine (skipped with a clear line if twistd
                 does not know the plugin yet); in sections 1-3 with its
                 default database, SQLite under data_dir, so its pipeline
                 stores what it receives while it is measured
      aiosmtpd   bench/aiosmtpd_discard.py - accepts and discards
      smtp-sink  Postfix's smtp-sink - accepts and discards (C, event driven)

    1. Throughput: smtp-source at 1, 20 and 100 concurrent sessions with 1 KB
       and 1 MB payloads; several messages per session (smtp-source -d, i.e.
       "don't disconnect").  Prints msgs/s and MB/s per server, and the
       ratios honeypot/aiosmtpd and honeypot/smtp-sink.  A run that finishes
       in under 2 s is repeated once with more messages (full mode only) so
       the fast baselines are not measured over a few hundred milliseconds.
       After each run it checks how many messages the server really received
       (honeypot: messages stored in its database or still waiting in the
       spool, by message ID; smtp-sink: its -c counter; aiosmtpd: its
       handler counter).
    2. Idle connections: opens N (10,000; --quick 1,000) idle TCP connections,
       waits for the 220 banner on each, and reports the server's VmRSS
       growth per connection (honeypot and aiosmtpd).
    3. Large message: sends one 50 MB message (76-char lines) with smtplib
       and reports VmRSS growth and peak growth (VmHWM after - VmRSS before).
    4. Stored messages, end to end: two multipart/mixed messages (a short
       text part and a base64 attachment: ~1 KB with 300 bytes of binary,
       ~1.05 MB with 768 KB of binary) sent with smtp-source -F FILE, 20
       sessions, -d.  A fresh server per size and configuration:
         hp-spool-only  the SMTP engine alone: engine_backend = mysql on a
                        loopback port nobody listens on, retry_max_delay =
                        3600, so the pipeline only backs off and the spool
                        keeps every message
         hp-sqlite      the default SQLite database under data_dir
         hp-mariadb     a fresh database smtplatrine_bench_<random> on
                        127.0.0.1:3306 (mysql_auto_create_db creates it),
                        dropped when that server stops
         aiosmtpd, smtp-sink  the baselines, same message files and sessions
       msg/s and MB/s are messages acknowledged / wall time of smtp-source,
       as in section 1.  For hp-sqlite and hp-mariadb, "stored msg/s" is the
       rows in honeypot_emails / the time from smtp-source's start until no
       finished message (*.json, not empty) is left in spool/messages and
       the table holds every message sent (waited for at most 300 s, --quick
       120 s, then reported as incomplete).  The backlog (finished messages
       in spool/messages) is sampled every 0.25 s: its maximum and its value
       when smtp-source finished show whether it stays bounded.  Each server
       first gets a few untimed warm-up messages (stored before the timed run).
    5. Load: holds N idle connections (10,000; --quick 1,000) and M slow
       senders (1,000; --quick 100) at once, each with its banner read; a
       slow sender then trickles "NOOP\r\n" one byte every SLOW_EVERY (3) s,
       one sender after the other, never finishing its line within the
       test.  While all are held (LOAD_HOLD: 15 s, --quick 5 s) a sibling
       client runs a complete transaction with smtplib (EHLO, MAIL, RCPT,
       DATA, QUIT) every LOAD_HOLD / SIBLING_RUNS seconds; its slowest and
       median times are reported, and how many of the N + M connections
       the server still held at the end.  Also VmRSS growth per connection
       and the server's open file descriptors (/proc/PID/fd) before and
       while held.  Honeypot and aiosmtpd.
    6. Summary of the honeypot targets with PASS/MISS, for the sections run.
       Informational only: the exit code is 0 whatever the figures are.

SAFETY
    Every loop is bounded by a count and a deadline; every child process is
    started in its own session, is stopped (SIGTERM, then SIGKILL) when the
    harness ends, including on Ctrl-C / SIGTERM / exceptions, and runs under
    `timeout -k 5 3600` with PR_SET_PDEATHSIG so it also dies if the harness
    is killed outright.  The temp dir is removed at the end (unless --keep-tmp).

NOTES
    - The honeypot gets exactly server.ini + smtp.ini (hostname, data_dir,
      message_size_limit = 100 MB).  Only for the idle and load tests a third
      file, zz-bench-overrides.ini, raises [protection] max_connections to
      the connections held + 100 (the default 1000 would answer 421 to the
      rest); the output says so.
      In the stored section that file holds the [engine], [mysql] and
      [store] settings of each configuration.
    - A MariaDB database is dropped when its server stops; a harness killed
      with SIGKILL leaves its smtplatrine_bench_* database behind.
    - As root the honeypot drops privileges to nobody, so the temp dir is
      made 0755 (mkdtemp creates it 0700).
    - MB = 2^20 bytes of smtp-source payload; headers are not counted.  In
      the stored section MB/s counts the whole message file as sent (every
      line ending as CRLF), headers included.
    - Load generator and servers share the CPUs; on a small machine the
      absolute numbers move between runs, the side-by-side ratios less so.
"""

import argparse
import contextlib
import ctypes
import errno
import math
import os
import platform
import random
import re
import resource
import secrets
import selectors
import shutil
import signal
import smtplib
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

try:
    import MySQLdb
except ImportError:  # the stored section then skips MariaDB
    MySQLdb = None

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
SMTP_SOURCE = "/usr/sbin/smtp-source"
SMTP_SINK = "/usr/sbin/smtp-sink"
HOST = "127.0.0.1"

HELO_NAME = "bench.example.net"
MAIL_FROM = "sender@bench.example.net"
RCPT_TO = "rcpt@example.com"

KB, MB = 1024, 1024 * 1024
# (label, payload bytes, message count in full mode)
SIZES = [("1 KB", 1 * KB, 2000), ("1 MB", 1 * MB, 100)]
SESSIONS = [1, 20, 100]
# Options shared by every smtp-source run (plus -s/-m/-l per run).
# -d = "don't disconnect": each of the -s sessions sends messages until -m is used up.
SOURCE_OPTS = ["-d", "-M", HELO_NAME, "-f", MAIL_FROM, "-t", RCPT_TO]

MIN_WALL = 2.0          # a run shorter than this is repeated with more messages
TARGET_WALL = 3.0       # ... sized to take about this long
MAX_SCALE = 20          # ... but at most 20x the base count
MAX_RUN_BYTES = 512 * MB  # ... and at most this much payload per run
SOURCE_TIMEOUT = 180    # seconds per smtp-source run (quick: 60)
READY_TIMEOUT = 20      # seconds for a server to send its 220 banner
IDLE_WINDOW = 32        # connects in flight at once (twisted's default backlog is 50)
IDLE_DEADLINE = 120     # seconds to open all idle connections (quick: 30)
LARGE_SIZE = 50 * MB
LARGE_TIMEOUT = 300     # socket timeout for the 50 MB send
SETTLE = 1.0            # seconds to let a server settle before reading RSS

SECTIONS = ("throughput", "idle", "large", "stored", "load")

# Load section: connections held at once (full mode; --quick: a tenth).
LOAD_IDLE = 10_000
LOAD_SLOW = 1_000
SLOW_EVERY = 3.0        # seconds between two bytes of one slow sender
SLOW_LINE = b"NOOP\r\n"  # what a slow sender trickles, one byte at a time
LOAD_HOLD = 15.0        # seconds the load is held while the sibling is timed (quick: 5)
SIBLING_RUNS = 5        # sibling transactions while the load is held

# Stored section: (label, attachment bytes, message count in full mode)
STORED_SIZES = [("1 KB", 300, 3000), ("1 MB", 768 * KB, 200)]
STORED_SESSIONS = 20
STORED_CONFIGS = ("spool-only", "sqlite", "mariadb")
STORED_WARM_UP = 10     # untimed messages (5 sessions) sent to each server first
STORED_TIMEOUT = 300    # seconds from smtp-source's start until all is stored (quick: 120)
WARM_UP_TIMEOUT = 60    # seconds for the warm-up messages to be stored
SAMPLE_EVERY = 0.25     # seconds between backlog samples while smtp-source runs
DRAIN_POLL = 0.1        # seconds between drain checks once it has finished
DRAIN_GRACE = 5.0       # spool empty but rows missing this long: give up (quarantined?)
MARIADB = {"host": HOST, "port": 3306, "user": "root", "passwd": ""}
STORED_IDS = "SELECT message_id FROM honeypot_emails"  # the spool's message IDs

# Targets for the honeypot (printed in the summary, never asserted).
TARGET_1K_VS_AIO = 1.5
TARGET_1M_VS_SINK = 0.6
TARGET_IDLE_BYTES = 5 * KB
TARGET_LARGE_GROWTH = 10 * MB
TARGET_STORED_VS_AIO = 1.5
TARGET_SIBLING = 1.0    # seconds for the sibling's transaction under load


def say(*parts):
    print(*parts, flush=True)


# --------------------------------------------------------------------------
# Process limits and child processes
# --------------------------------------------------------------------------

def raise_nofile(wanted):
    """Raise RLIMIT_NOFILE to `wanted` if possible; return the soft limit in effect."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        with contextlib.suppress(ValueError, OSError):  # works only with CAP_SYS_RESOURCE
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            soft, hard = wanted, wanted
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


try:
    _LIBC = ctypes.CDLL(None, use_errno=True)
except OSError:
    _LIBC = None
PR_SET_PDEATHSIG = 1


def _child_setup():
    """preexec_fn: same (raised) fd limit as the harness; die with the harness."""
    resource.setrlimit(resource.RLIMIT_NOFILE, resource.getrlimit(resource.RLIMIT_NOFILE))
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


GUARD_SECONDS = 3600    # hard lifetime of every server process (timeout(1) wrapper)


def child_pids(pid):
    """Direct children of `pid` (from /proc)."""
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        pass
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(stat.parent.name))
    return kids


class Child:
    """A server subprocess, logging to a file; stop() is idempotent.

    The server runs under `timeout -k 5 GUARD_SECONDS`: servers that drop
    privileges (smtp-sink, the honeypot as root) lose PR_SET_PDEATHSIG, but
    timeout(1) keeps it, forwards our SIGTERM to the server, and bounds its
    lifetime even if the harness is SIGKILLed.  `server_pid` is the server
    itself (used for /proc/<pid>/status and for signals), `proc` the wrapper.
    """

    def __init__(self, argv, cwd, log_path, env=None):
        self.argv, self.cwd, self.log_path, self.env = argv, cwd, log_path, env
        self.proc = None
        self._server_pid = None
        self.guarded = shutil.which("timeout") is not None

    def start(self):
        guard = ["timeout", "-k", "5", str(GUARD_SECONDS)] if self.guarded else []
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                guard + self.argv, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=_child_setup)

    @property
    def server_pid(self):
        if not self.guarded:
            return self.proc.pid
        deadline = time.monotonic() + 5
        while self._server_pid is None and time.monotonic() < deadline and self.alive():
            kids = child_pids(self.proc.pid)
            if kids:
                self._server_pid = kids[0]
            else:
                time.sleep(0.01)
        if self._server_pid is None:
            raise RuntimeError("cannot find the server process under timeout(1)")
        return self._server_pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        if self.alive():
            os.kill(self.server_pid, sig)

    def stop(self):
        if not self.alive():
            return
        self.proc.terminate()  # timeout(1) forwards it to the server
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            if self._server_pid is not None:
                with contextlib.suppress(OSError):
                    os.kill(self._server_pid, signal.SIGKILL)
            self.proc.kill()
            self.proc.wait(timeout=10)


def log_tail(path, lines=12):
    try:
        text = Path(path).read_text(errors="replace").replace("\r", "\n")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def read_banner(port, timeout=2.0):
    """Connect, return the first line the server sends (b'' on failure)."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as s:
            data = b""
            deadline = time.monotonic() + timeout
            while b"\n" not in data and time.monotonic() < deadline:
                chunk = s.recv(512)
                if not chunk:
                    break
                data += chunk
            with contextlib.suppress(OSError):
                s.sendall(b"QUIT\r\n")
            return data.split(b"\n")[0]
    except OSError:
        return b""


def wait_ready(child, port, timeout=READY_TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            return False
        if read_banner(port, timeout=5.0).startswith(b"220"):
            return True
        time.sleep(0.1)
    return False


def open_fds(pid):
    """How many file descriptors the process has open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def proc_mem(pid):
    """VmRSS and VmHWM of a process, in bytes."""
    mem = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                mem[key] = int(rest.split()[0]) * 1024
    return mem


def helper_mems(pid):
    """VmRSS and VmHWM of the processes under server `pid` (the honeypot's
    disk worker and storing process), by pid: (name, mem)."""
    found, todo = {}, child_pids(pid)
    while todo:
        child = todo.pop()
        todo += child_pids(child)
        with contextlib.suppress(OSError):
            words = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            name = next((w.decode() for w in words if w.startswith(b"smtplatrine.")),
                        words[0].decode())
            found[child] = (name, proc_mem(child))
    return found


# --------------------------------------------------------------------------
# The three servers
# --------------------------------------------------------------------------

class Server:
    """Base class: start a fresh instance in its own temp dir, stop it, count messages."""

    name = "?"

    def __init__(self, tmp_root):
        self.tmp_root = Path(tmp_root)
        self.instances = 0
        self.child = None
        self.port = None
        self.workdir = None
        self.broken = False  # set once an instance failed to start; later sections skip it

    def argv(self):
        raise NotImplementedError

    def env(self):
        return None

    def prepare(self):
        """Write config files into self.workdir before starting."""

    def received(self):
        """Cumulative count of messages the server accepted, or None if unknown."""
        return None

    def log_files(self):
        return [self.workdir / "server.log"]

    def show_log_tail(self, lines=12):
        for path in self.log_files():
            tail = log_tail(path, lines)
            if tail:
                say(f"     --- last lines of {path}:")
                say("     " + tail.replace("\n", "\n     "))

    @contextlib.contextmanager
    def running(self):
        """Start a fresh instance; yield True if it became ready; always stop it."""
        self.instances += 1
        self.workdir = self.tmp_root / f"{self.name}-{self.instances}"
        self.workdir.mkdir(parents=True)
        self.port = free_port()
        self.prepare()
        self.child = Child(self.argv(), self.workdir, self.workdir / "server.log", self.env())
        try:
            self.child.start()
            ready = wait_ready(self.child, self.port)
            if not ready:
                self.broken = True
                say(f"  !! {self.name} did not send a 220 banner within {READY_TIMEOUT} s")
                self.show_log_tail()
            yield ready
        finally:
            self.child.stop()

    @property
    def pid(self):
        return self.child.server_pid


class Honeypot(Server):
    name = "honeypot"
    OVERRIDES_INI = "zz-bench-overrides.ini"  # read last (the loader reads *.ini sorted)

    def __init__(self, tmp_root):
        super().__init__(tmp_root)
        self.overrides = {}  # {section: {key: value}} written to OVERRIDES_INI if not empty

    def twistd(self):
        local = Path(sys.executable).parent / "twistd"
        return str(local) if local.exists() else (shutil.which("twistd") or "twistd")

    def env(self):
        env = dict(os.environ)
        paths = [str(REPO_DIR)] + ([str(REPO_DIR / "src")] if (REPO_DIR / "src").is_dir() else [])
        if env.get("PYTHONPATH"):
            paths.append(env["PYTHONPATH"])
        env["PYTHONPATH"] = os.pathsep.join(paths)
        return env

    def available(self):
        """True if `twistd --help` lists the smtplatrine plugin."""
        try:
            out = subprocess.run([self.twistd(), "--help"], env=self.env(), cwd=self.tmp_root,
                                 capture_output=True, text=True, timeout=60).stdout
        except (OSError, subprocess.TimeoutExpired):
            return False
        return re.search(r"^\s+smtplatrine\b", out, re.M) is not None

    def prepare(self):
        self.conf_dir = self.workdir / "conf"
        self.data_dir = self.workdir / "data"
        self.conf_dir.mkdir()
        (self.conf_dir / "server.ini").write_text(
            f"[server]\nhostname = mail.example.com\ndata_dir = {self.data_dir}\n")
        (self.conf_dir / "smtp.ini").write_text(
            "[smtp]\nmessage_size_limit = 104857600\n")
        # All the load comes from 127.0.0.1: no per-client limits or bans
        # (bench/per_client.py measures those).
        (self.conf_dir / "protection.ini").write_text(
            "[protection]\nmax_connections_per_client = 0\nmax_connection_rate = 0\n"
            "[smart_acl]\nenabled = false\n")
        if self.overrides:
            (self.conf_dir / self.OVERRIDES_INI).write_text("".join(
                f"[{section}]\n" + "".join(f"{k} = {v}\n" for k, v in items.items())
                for section, items in self.overrides.items()))

    def argv(self):
        return [self.twistd(), "-n", "--pidfile=", f"--logfile={self.workdir / 'twistd.log'}",
                "smtplatrine", "--config", str(self.conf_dir),
                "--listen", f"tcp:{self.port}:interface={HOST}"]

    def log_files(self):
        return [self.workdir / "server.log", self.workdir / "twistd.log"]

    def received(self):
        """Messages received: those waiting in the spool and those stored, by
        ID.  The spool is read first, so a message stored meanwhile is in
        both and counted once."""
        waiting = self.finished_ids()
        return len(waiting | self.stored_ids())

    def backlog(self):
        return len(self.finished_ids())

    def finished_ids(self):
        """IDs of the finished messages in the spool: those whose metadata
        file is written (files the spool creates ahead stay empty until
        used); the pipeline deletes both files once the message is stored."""
        try:
            entries = list(os.scandir(self.data_dir / "spool" / "messages"))
        except FileNotFoundError:
            return set()
        finished = set()
        for entry in entries:
            with contextlib.suppress(FileNotFoundError):  # stored since the listing
                if entry.name.endswith(".json") and entry.stat().st_size:
                    finished.add(entry.name[:-len(".json")])
        return finished

    def stored_ids(self):
        """IDs of the messages in honeypot_emails of its SQLite database (the
        default engine); empty while the table cannot be read."""
        # read-only: never create the database or its -wal/-shm files as root
        # under a honeypot that runs as nobody
        uri = f"{(self.data_dir / 'smtplatrine.sqlite').as_uri()}?mode=ro"
        try:
            with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=5)) as db:
                return {row[0] for row in db.execute(STORED_IDS)}
        except sqlite3.Error:
            return set()


def mariadb(database=None):
    """A connection to the benchmark's MariaDB, in autocommit mode so that
    every SELECT sees the latest commits."""
    db = MySQLdb.connect(connect_timeout=5, **MARIADB, **({"db": database} if database else {}))
    db.autocommit(True)
    return db


def mariadb_unavailable():
    """Why the MariaDB configuration cannot run ('' if it can)."""
    if MySQLdb is None:
        return "python module MySQLdb (mysqlclient) is not installed"
    try:
        mariadb().close()
    except MySQLdb.Error as e:
        return f"cannot connect to {MARIADB['host']}:{MARIADB['port']}: {e}"
    return ""


class StoringHoneypot(Honeypot):
    """The honeypot with its database configured for the stored section.

    config "spool-only": engine_backend = mysql on a loopback port nobody
    listens on and retry_max_delay = 3600, so the pipeline only backs off;
    "sqlite": the default database file; "mariadb": a fresh database per
    instance, created by the honeypot and dropped when the instance stops.
    """

    def __init__(self, tmp_root, config):
        super().__init__(tmp_root)
        self.config = config
        self.name = f"hp-{config}"
        self.database = None

    @property
    def stores(self):
        return self.config != "spool-only"

    def prepare(self):
        if self.config == "spool-only":
            self.overrides = {"engine": {"engine_backend": "mysql"},
                              "mysql": {"mysql_host": HOST, "mysql_port": free_port()},
                              "store": {"retry_max_delay": 3600}}
        elif self.config == "sqlite":
            self.overrides = {"engine": {"engine_backend": "sqlite"}}
        else:
            self.database = f"smtplatrine_bench_{secrets.token_hex(4)}"
            self.overrides = {"engine": {"engine_backend": "mysql"},
                              "mysql": {"mysql_host": MARIADB["host"],
                                        "mysql_port": MARIADB["port"],
                                        "mysql_username": MARIADB["user"],
                                        "mysql_password": MARIADB["passwd"],
                                        "mysql_database": self.database,
                                        "mysql_auto_create_db": "true"}}
        super().prepare()

    @contextlib.contextmanager
    def running(self):
        try:
            with super().running() as ready:
                yield ready
        finally:
            if self.database:
                self.drop_database()

    def drop_database(self):
        try:
            with contextlib.closing(mariadb()) as db:
                db.cursor().execute(f"DROP DATABASE IF EXISTS `{self.database}`")
        except MySQLdb.Error as e:
            say(f"  !! could not drop MariaDB database {self.database}: {e}")
        self.database = None

    def log_errors(self):
        """From its own log (data_dir/smtplatrine.log; twistd.log rotates at
        1 MB): the lines at level error or critical, and the exceptions that
        end tracebacks."""
        try:
            text = (self.data_dir / "smtplatrine.log").read_text(errors="replace")
        except FileNotFoundError:
            return [], []
        return (re.findall(r"^.*#(?:error|critical)\].*$", text, re.M),
                re.findall(r"^\s*([\w.]+(?:Error|Exception): .*)$", text, re.M))

    def stored_ids(self):
        if self.config == "spool-only":
            return set()
        if self.config == "sqlite":
            return super().stored_ids()
        try:
            with contextlib.closing(mariadb(self.database)) as db:
                cursor = db.cursor()
                cursor.execute(STORED_IDS)
                return {row[0] for row in cursor.fetchall()}
        except MySQLdb.Error:
            return set()


class Aiosmtpd(Server):
    name = "aiosmtpd"

    def argv(self):
        return [sys.executable, str(BENCH_DIR / "aiosmtpd_discard.py"), str(self.port)]

    def received(self):
        """Ask the server (SIGUSR1) to print its counter, then read it from the log."""
        log = Path(self.child.log_path)
        before = log.read_text().count("accepted")
        self.child.signal(signal.SIGUSR1)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            text = log.read_text()
            if text.count("accepted") > before:
                return int(re.findall(r"accepted (\d+)", text)[-1])
            time.sleep(0.05)
        return None


class SmtpSink(Server):
    name = "smtp-sink"

    def argv(self):
        # -c: running counters on stdout (used for the sanity check)
        # -m 512: allow up to 512 simultaneous sessions (default 256)
        # -u nobody: required when run as root; the backlog is the last argument
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        return [SMTP_SINK, "-c", "-m", "512", *user, f"{HOST}:{self.port}", "1024"]

    def received(self):
        text = Path(self.child.log_path).read_text(errors="replace")
        counts = re.findall(r"mesg=(\d+)", text)
        return int(counts[-1]) if counts else 0


# --------------------------------------------------------------------------
# 1. Throughput with smtp-source
# --------------------------------------------------------------------------

@dataclass
class Run:
    server: str
    size_label: str
    size: int
    sessions: int
    count: int
    wall: float = 0.0
    error: str = ""
    received: object = None  # int, or None if the server cannot tell

    @property
    def ok(self):
        return not self.error

    @property
    def msgs_per_s(self):
        return self.count / self.wall if self.ok and self.wall > 0 else None

    @property
    def mb_per_s(self):
        return self.count * self.size / MB / self.wall if self.ok and self.wall > 0 else None


def run_smtp_source(port, sessions, count, payload, timeout):
    """Run smtp-source once; return (wall seconds, error string or '').

    payload: its options for the message, ["-l", SIZE] or ["-F", FILE].
    """
    argv = [SMTP_SOURCE, *SOURCE_OPTS, "-s", str(sessions), "-m", str(count),
            *payload, f"{HOST}:{port}"]
    start = time.monotonic()
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return time.monotonic() - start, f"timeout after {timeout} s"
    wall = time.monotonic() - start
    if res.returncode != 0:
        msg = (res.stderr or res.stdout).strip().splitlines()
        return wall, f"exit {res.returncode}: {msg[-1] if msg else ''}"
    return wall, ""


def wait_received(server, expected, timeout=15.0):
    """Poll the server's message counter until it reaches `expected` or stops moving."""
    deadline = time.monotonic() + timeout
    last, last_change = server.received(), time.monotonic()
    while last is not None and last < expected and time.monotonic() < deadline:
        time.sleep(0.1)
        now = server.received()
        if now != last:
            last, last_change = now, time.monotonic()
        elif time.monotonic() - last_change > 2.0:
            break
    return last


def measure(server, size_label, size, sessions, count, opts, payload=None):
    """One timed smtp-source run plus the received-count sanity check.

    payload: smtp-source's message options (default: -l size).
    """
    before = server.received()
    run = Run(server.name, size_label, size, sessions, count)
    run.wall, run.error = run_smtp_source(server.port, sessions, count,
                                          payload or ["-l", str(size)], opts.source_timeout)
    if before is not None:
        after = wait_received(server, before + count)
        run.received = None if after is None else after - before
    return run


def scaled_count(run):
    """A larger count so a too-short run takes about TARGET_WALL seconds (bounded)."""
    want = math.ceil(run.count * TARGET_WALL / max(run.wall, 0.01))
    return max(run.count, min(want, run.count * MAX_SCALE, MAX_RUN_BYTES // run.size))


def measure_long_enough(server, size_label, size, sessions, count, opts, payload=None):
    """measure(); in full mode a run shorter than MIN_WALL is repeated once with more messages."""
    run = measure(server, size_label, size, sessions, count, opts, payload)
    if not opts.quick and run.ok and run.wall < MIN_WALL:
        bigger = scaled_count(run)
        if bigger > run.count:
            run = measure(server, size_label, size, sessions, bigger, opts, payload)
    return run


def throughput_matrix(server, opts):
    runs = []
    run_smtp_source(server.port, 5, 50, ["-l", str(KB)], opts.source_timeout)  # warm-up, untimed
    for size_label, size, base in SIZES:
        for sessions in SESSIONS:
            count = max(sessions, base // opts.divisor)
            run = measure_long_enough(server, size_label, size, sessions, count, opts)
            say("  " + describe_run(run))
            if not run.ok and not any(not r.ok for r in runs):
                server.show_log_tail()  # once per server, at its first failure
            runs.append(run)
    return runs


def describe_run(run):
    head = f"{run.server:<9} {run.size_label} x {run.sessions:>3} sessions {run.count:>6} msgs"
    if not run.ok:
        return f"{head}  FAILED ({run.error})"
    got = "?" if run.received is None else run.received
    flag = "" if run.received in (None, run.count) else "  <-- received != sent"
    return (f"{head} {run.wall:7.2f} s {run.msgs_per_s:9.1f} msg/s "
            f"{run.mb_per_s:8.2f} MB/s  received {got}{flag}")


# --------------------------------------------------------------------------
# 2. Idle connections
# --------------------------------------------------------------------------

def open_idle_connections(port, n, deadline_s):
    """Open up to n connections and read the banner on each.

    Returns (sockets, greeted, failed, first_refusal).  At most IDLE_WINDOW connections are
    waiting for their banner at any time, so the server's listen backlog is
    never overrun; the whole loop ends at the deadline regardless.
    """
    sel = selectors.DefaultSelector()
    socks, pending = [], {}
    started = greeted = failed = 0
    first_refusal = ""
    deadline = time.monotonic() + deadline_s
    try:
        while greeted + failed < n and time.monotonic() < deadline:
            while started < n and len(pending) < IDLE_WINDOW:
                started += 1
                s = socket.socket()
                s.setblocking(False)
                err = s.connect_ex((HOST, port))
                if err not in (0, errno.EINPROGRESS):
                    s.close()
                    failed += 1
                    continue
                socks.append(s)
                pending[s] = b""
                sel.register(s, selectors.EVENT_READ)
            for key, _ in sel.select(timeout=0.5):
                s = key.fileobj
                try:
                    data = s.recv(512)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                buf = pending[s] + data
                if data and b"\n" not in buf:
                    pending[s] = buf
                    continue
                sel.unregister(s)
                del pending[s]
                if buf.startswith(b"220"):
                    greeted += 1
                else:
                    failed += 1
                    first_refusal = first_refusal or (buf.decode("latin-1").strip()[:80] or "closed")
                    s.close()
    finally:
        sel.close()
    return socks, greeted, failed, first_refusal


@dataclass
class IdleResult:
    server: str
    wanted: int
    greeted: int = 0
    failed: int = 0
    seconds: float = 0.0
    refusal: str = ""
    rss_before: int = 0
    rss_after: int = 0
    error: str = ""

    @property
    def per_conn(self):
        return (self.rss_after - self.rss_before) / self.greeted if self.greeted else None


def warm_up_session(server):
    """One complete small SMTP transaction so lazily loaded code is resident.

    A failure is reported but not fatal: the measurement that follows still
    means something (and shows its own errors).
    """
    try:
        with smtplib.SMTP(HOST, server.port, local_hostname=HELO_NAME, timeout=30) as c:
            c.sendmail(MAIL_FROM, [RCPT_TO], b"Subject: warm-up\r\n\r\nhello\r\n")
    except (smtplib.SMTPException, OSError) as e:
        say(f"  ({server.name}: warm-up transaction failed: {e!r})")


def idle_test(server, n, opts):
    res = IdleResult(server.name, n)
    with server.running() as ready:
        if not ready:
            res.error = "server did not start"
            return res
        warm_up_session(server)
        time.sleep(SETTLE)
        res.rss_before = proc_mem(server.pid)["VmRSS"]
        start = time.monotonic()
        socks = []
        try:
            socks, res.greeted, res.failed, res.refusal = open_idle_connections(server.port, n, opts.idle_deadline)
            res.seconds = time.monotonic() - start
            time.sleep(SETTLE)
            if server.child.alive():
                res.rss_after = proc_mem(server.pid)["VmRSS"]
            else:
                res.error = "server died"
        finally:
            for s in socks:
                s.close()
    return res


def describe_idle(r):
    if r.error:
        return f"{r.server:<9} {r.error}"
    per = f"{r.per_conn:8.0f} B/conn" if r.per_conn is not None else "   n/a"
    refused = f"\n{'':<12}first refusal: {r.refusal!r}" if r.refusal else ""
    return (f"{r.server:<9} {r.greeted:>6}/{r.wanted} greeted ({r.failed} failed) in {r.seconds:5.1f} s  "
            f"VmRSS {r.rss_before / MB:7.1f} -> {r.rss_after / MB:7.1f} MB  {per}{refused}")


# --------------------------------------------------------------------------
# 3. One large message
# --------------------------------------------------------------------------

def large_message(size):
    """Headers plus a body of 76-character lines, CRLF terminated, about `size` bytes."""
    head = (f"From: <{MAIL_FROM}>\r\nTo: <{RCPT_TO}>\r\n"
            "Subject: 50 MB benchmark message\r\n\r\n").encode()
    line = (b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-large-msg-line"[:76]
            + b"\r\n")
    return head + line * (size // len(line))


@dataclass
class LargeResult:
    server: str
    size: int
    seconds: float = 0.0
    before: dict = None
    after: dict = None
    received: object = None
    error: str = ""
    helpers_before: dict = None
    helpers_after: dict = None

    @property
    def growth(self):
        return self.after["VmRSS"] - self.before["VmRSS"]

    @property
    def peak_growth(self):
        return self.after["VmHWM"] - self.before["VmRSS"]


def large_test(server, message):
    res = LargeResult(server.name, len(message))
    with server.running() as ready:
        if not ready:
            res.error = "server did not start"
            return res
        warm_up_session(server)
        time.sleep(SETTLE)
        count_before = server.received()
        res.before = proc_mem(server.pid)
        res.helpers_before = helper_mems(server.pid)
        start = time.monotonic()
        try:
            with smtplib.SMTP(HOST, server.port, local_hostname=HELO_NAME,
                              timeout=LARGE_TIMEOUT) as c:
                c.sendmail(MAIL_FROM, [RCPT_TO], message)
        except (smtplib.SMTPException, OSError) as e:
            res.error = f"send failed: {e!r}"
        res.seconds = time.monotonic() - start
        time.sleep(SETTLE)
        if not server.child.alive():
            res.error = res.error or "server died"
            return res
        if count_before is not None:
            after = wait_received(server, count_before + 1)
            res.received = None if after is None else after - count_before
        # Read once the message is stored: the storing process is done too.
        res.after = proc_mem(server.pid)
        res.helpers_after = helper_mems(server.pid)
    return res


def describe_large(r):
    if r.after is None:
        return f"{r.server:<9} {r.error}"
    b, a = r.before, r.after
    got = "?" if r.received is None else r.received
    err = f"  ({r.error})" if r.error else ""
    return (f"{r.server:<9} {r.size / MB:.1f} MB in {r.seconds:6.2f} s  "
            f"VmRSS {b['VmRSS'] / MB:7.1f} -> {a['VmRSS'] / MB:7.1f} MB (growth {r.growth / MB:+7.1f} MB)  "
            f"VmHWM {b['VmHWM'] / MB:7.1f} -> {a['VmHWM'] / MB:7.1f} MB "
            f"(peak growth {r.peak_growth / MB:+7.1f} MB)  received {got}{err}"
            + "".join(_describe_helper(pid, r) for pid in sorted(r.helpers_after or ())))


def _describe_helper(pid, r):
    """A line for one process under the server: its own RSS growth."""
    name, a = r.helpers_after[pid]
    if pid not in r.helpers_before:
        return f"\n            {name} (pid {pid}, started meanwhile): VmHWM {a['VmHWM'] / MB:.1f} MB"
    b = r.helpers_before[pid][1]
    return (f"\n            {name} (pid {pid}): VmRSS {b['VmRSS'] / MB:.1f} ->"
            f" {a['VmRSS'] / MB:.1f} MB (growth {(a['VmRSS'] - b['VmRSS']) / MB:+.1f} MB),"
            f" peak growth {(a['VmHWM'] - b['VmRSS']) / MB:+.1f} MB")


# --------------------------------------------------------------------------
# 4. Stored messages, end to end
# --------------------------------------------------------------------------

@dataclass
class MessageFile:
    """A pre-formatted message for smtp-source -F."""
    label: str
    path: Path
    size: int  # bytes sent: the file with every LF as CRLF

    @property
    def payload(self):
        return ["-F", str(self.path)]


def write_message_file(directory, label, attachment_bytes):
    """multipart/mixed: a short text part and `attachment_bytes` bytes of binary
    as a base64 attachment.  Written with LF line ends: smtp-source -F sends
    every line with CRLF (and dot-stuffs)."""
    msg = EmailMessage()
    msg["From"] = f"Accounts <{MAIL_FROM}>"
    msg["To"] = f"<{RCPT_TO}>"
    msg["Subject"] = f"Invoice attached ({label} benchmark message)"
    msg["Date"] = formatdate()
    msg["Message-ID"] = make_msgid(domain=HELO_NAME)
    msg.set_content("Hello,\n\nplease find this month's invoice attached.\n\nBest regards,\nAccounts\n")
    msg.add_attachment(random.Random(attachment_bytes).randbytes(attachment_bytes),
                       maintype="application", subtype="octet-stream", filename="invoice.bin")
    data = msg.as_bytes()
    path = Path(directory) / f"message-{label.replace(' ', '')}.eml"
    path.write_bytes(data)
    return MessageFile(label, path, len(data) + data.count(b"\n"))


@dataclass
class StoredRun(Run):
    """A Run against a storing honeypot, timed on until everything is stored;
    `received` is the rows it added to honeypot_emails."""
    stored_wall: float = None   # smtp-source start -> spool drained and every row there
    max_backlog: int = None     # most finished messages in the spool at one sample
    end_backlog: int = None     # ... when smtp-source finished
    incomplete: str = ""        # why stored_wall is missing

    @property
    def stored_per_s(self):
        return self.received / self.stored_wall if self.ok and self.stored_wall else None


class Background:
    """A thread that runs self._run() while the with-block runs; _run
    returns once self._stop is set."""

    def __init__(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join()


class BacklogSampler(Background):
    """While the with-block runs, a thread samples server.backlog() (the
    finished messages in the spool) every SAMPLE_EVERY seconds."""

    def __init__(self, server):
        super().__init__()
        self.server = server
        self.samples = []

    def _run(self):
        while True:
            self.samples.append(self.server.backlog())
            if self._stop.wait(SAMPLE_EVERY):
                return


def wait_stored(server, expected, deadline, samples):
    """Poll until no finished message is left in the spool and honeypot_emails
    holds `expected` rows.  Returns (monotonic time, rows, '') once it does,
    else (None, rows, why) at the deadline, when the server died, or when the
    spool stayed empty DRAIN_GRACE s with rows missing.  Every backlog seen
    is appended to `samples`."""
    empty_since = None
    while True:
        backlog = server.backlog()
        samples.append(backlog)
        rows = len(server.stored_ids()) if backlog == 0 else 0
        now = time.monotonic()
        if rows >= expected:
            return now, rows, ""
        empty_since = (empty_since or now) if backlog == 0 else None
        if now > deadline:
            why = "deadline reached"
        elif not server.child.alive():
            why = "server died"
        elif empty_since and now - empty_since > DRAIN_GRACE:
            why = "spool empty but rows missing (see spool/quarantine and the log)"
        else:
            time.sleep(DRAIN_POLL)
            continue
        return (None, len(server.stored_ids()),
                f"{why}; {backlog} finished message(s) left in the spool")


def measure_stored(server, msg, count, opts):
    """One smtp-source run against a storing honeypot, timed until it is all stored."""
    run = StoredRun(server.name, msg.label, msg.size, STORED_SESSIONS, count)
    base = len(server.stored_ids())
    start = time.monotonic()
    with BacklogSampler(server) as sampler:
        run.wall, run.error = run_smtp_source(server.port, STORED_SESSIONS, count,
                                              msg.payload, opts.source_timeout)
    run.end_backlog = server.backlog()
    samples = sampler.samples + [run.end_backlog]
    if run.ok:
        done, rows, run.incomplete = wait_stored(server, base + count,
                                                 start + opts.stored_timeout, samples)
        run.stored_wall = None if done is None else done - start
        run.received = rows - base
    run.max_backlog = max(samples)
    return run


def stored_run(server, msg, count, opts):
    """A few untimed warm-up messages (stored first, for a storing honeypot),
    then the timed run of `count` messages."""
    run_smtp_source(server.port, 5, STORED_WARM_UP, msg.payload, opts.source_timeout)
    if not (isinstance(server, StoringHoneypot) and server.stores):
        return measure_long_enough(server, msg.label, msg.size, STORED_SESSIONS, count, opts,
                                   msg.payload)
    done, _, why = wait_stored(server, STORED_WARM_UP, time.monotonic() + WARM_UP_TIMEOUT, [])
    if done is None:
        return StoredRun(server.name, msg.label, msg.size, STORED_SESSIONS, count,
                         error=f"warm-up messages not stored: {why}")
    return measure_stored(server, msg, count, opts)


def describe_stored(run):
    line = describe_run(run)
    if not isinstance(run, StoredRun) or not run.ok:
        return line
    stored = (f"{run.received} rows stored {run.stored_wall:.2f} s after the start = "
              f"{run.stored_per_s:.1f} stored msg/s" if run.stored_per_s is not None
              else f"INCOMPLETE: {run.received} rows ({run.incomplete})")
    return (f"{line}\n{'':<12}{stored}; spool backlog max {run.max_backlog}, "
            f"{run.end_backlog} when smtp-source finished")


# --------------------------------------------------------------------------
# 5. Load: idle connections and slow senders held, a sibling timed meanwhile
# --------------------------------------------------------------------------

class SlowSenders(Background):
    """While the with-block runs, a thread sends the next byte of SLOW_LINE
    on each socket in turn, so that each gets one every SLOW_EVERY seconds."""

    def __init__(self, socks):
        super().__init__()
        self.socks = socks
        self.sent = 0

    def _run(self):
        pause = SLOW_EVERY / max(len(self.socks), 1)
        position = 0
        while not self._stop.is_set():
            i = position % len(SLOW_LINE)
            byte = SLOW_LINE[i:i + 1]
            for s in self.socks:
                with contextlib.suppress(OSError):
                    s.send(byte)
                    self.sent += 1
                if self._stop.wait(pause):
                    return
            position += 1


def sibling_transaction(port):
    """Seconds for one complete SMTP transaction, or None if it failed."""
    start = time.monotonic()
    try:
        with smtplib.SMTP(HOST, port, local_hostname=HELO_NAME, timeout=30) as c:
            c.sendmail(MAIL_FROM, [RCPT_TO], b"Subject: sibling\r\n\r\nhello\r\n")
    except (smtplib.SMTPException, OSError):
        return None
    return time.monotonic() - start


def still_open(socks):
    """How many of `socks` the server has not closed (nothing to read)."""
    with selectors.DefaultSelector() as sel:
        for s in socks:
            sel.register(s, selectors.EVENT_READ)
        return len(socks) - len(sel.select(timeout=0))


@dataclass
class LoadResult:
    server: str
    idle: int
    slow: int
    greeted: int = 0
    held: int = 0
    refusal: str = ""
    rss_before: int = 0
    rss_after: int = 0
    fds_before: int = 0
    fds_after: int = 0
    bytes_trickled: int = 0
    siblings: list = None   # seconds per transaction, None for a failed one
    error: str = ""

    @property
    def wanted(self):
        return self.idle + self.slow

    @property
    def per_conn(self):
        return (self.rss_after - self.rss_before) / self.greeted if self.greeted else None

    @property
    def sibling_max(self):
        """Slowest sibling transaction; None if none ran or one failed."""
        ok = [t for t in self.siblings or [] if t is not None]
        return max(ok) if ok and len(ok) == len(self.siblings) else None

    @property
    def sibling_median(self):
        ok = sorted(t for t in self.siblings or [] if t is not None)
        return ok[len(ok) // 2] if ok else None


def load_test(server, idle, slow, opts):
    res = LoadResult(server.name, idle, slow, siblings=[])
    with server.running() as ready:
        if not ready:
            res.error = "server did not start"
            return res
        warm_up_session(server)
        time.sleep(SETTLE)
        res.rss_before = proc_mem(server.pid)["VmRSS"]
        res.fds_before = open_fds(server.pid)
        socks = []
        try:
            socks, res.greeted, _, res.refusal = open_idle_connections(
                server.port, res.wanted, opts.idle_deadline)
            open_socks = [s for s in socks if s.fileno() != -1]
            with SlowSenders(open_socks[:slow]) as senders:
                for _ in range(SIBLING_RUNS):
                    time.sleep(opts.load_hold / SIBLING_RUNS)
                    res.siblings.append(sibling_transaction(server.port))
                res.bytes_trickled = senders.sent
            if not server.child.alive():
                res.error = "server died"
                return res
            res.rss_after = proc_mem(server.pid)["VmRSS"]
            res.fds_after = open_fds(server.pid)
            res.held = still_open(open_socks)
        finally:
            for s in socks:
                s.close()
    return res


def describe_load(r):
    if r.error:
        return f"{r.server:<9} {r.error}"
    per = f"{r.per_conn:6.0f} B/conn" if r.per_conn is not None else "   n/a"
    failed = sum(t is None for t in r.siblings)
    refused = f"\n{'':<12}first refusal: {r.refusal!r}" if r.refusal else ""
    return (f"{r.server:<9} {r.held:>6}/{r.wanted} held ({r.idle} idle + {r.slow} slow, "
            f"{r.bytes_trickled} bytes trickled)  VmRSS {r.rss_before / MB:6.1f} -> "
            f"{r.rss_after / MB:6.1f} MB {per}  fds {r.fds_before} -> {r.fds_after}\n"
            f"{'':<12}sibling transaction: slowest {num(r.sibling_max, '.3f')} s, median "
            f"{num(r.sibling_median, '.3f')} s over {len(r.siblings)} runs"
            f"{f' ({failed} FAILED)' if failed else ''}{refused}")


# --------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------

def table(headers, rows, left=1):
    """Aligned text table: the first `left` columns left-aligned, the others right-aligned."""
    cells = [headers] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def fmt(row):
        return "  ".join(c.ljust(w) if i < left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(row, widths)))
    lines = [fmt(headers), "  ".join("-" * w for w in widths)]
    return "\n".join(lines + [fmt(r) for r in cells[1:]])


def num(value, fmt):
    return "-" if value is None else format(value, fmt)


def ratio(a, b):
    return a / b if a is not None and b else None


def throughput_table(runs, names):
    by_key = {(r.server, r.size_label, r.sessions): r for r in runs}
    headers = ["size x sessions"]
    for name in names:
        headers += [f"{name} msg/s", f"{name} MB/s"]
    headers += ["hp/aiosmtpd", "hp/smtp-sink"]
    rows = []
    for size_label, _, _ in SIZES:
        for sessions in SESSIONS:
            row = [f"{size_label} x {sessions}"]
            rates = {}
            for name in names:
                r = by_key.get((name, size_label, sessions))
                rates[name] = r.msgs_per_s if r else None
                row += [num(rates[name], ".1f"), num(r.mb_per_s if r else None, ".2f")]
            hp = rates.get("honeypot")
            row += [num(ratio(hp, rates.get("aiosmtpd")), ".2f"),
                    num(ratio(hp, rates.get("smtp-sink")), ".2f")]
            rows.append(row)
    return table(headers, rows)


def stored_table(runs):
    """One row per run of the stored section, in the order they ran."""
    aio = {r.size_label: r.msgs_per_s for r in runs if r.server == "aiosmtpd"}
    headers = ["size", "server", "msg/s", "MB/s", "stored msg/s", "backlog max",
               "backlog at end", "msg/s / aio", "stored / aio"]
    rows = []
    for r in runs:
        stored = r.stored_per_s if isinstance(r, StoredRun) else None
        if not isinstance(r, StoredRun):
            extra = ["-", "-", "-"]
        elif r.ok and stored is None:
            extra = ["incomplete", num(r.max_backlog, "d"), num(r.end_backlog, "d")]
        else:
            extra = [num(stored, ".1f"), num(r.max_backlog, "d"), num(r.end_backlog, "d")]
        rows.append([r.size_label, r.server, num(r.msgs_per_s, ".1f"), num(r.mb_per_s, ".2f"),
                     *extra, num(ratio(r.msgs_per_s, aio.get(r.size_label)), ".2f"),
                     num(ratio(stored, aio.get(r.size_label)), ".2f")])
    return table(headers, rows, left=2)


def first(results, name, good):
    """The first result of server `name` that satisfies `good`, or None."""
    return next((r for r in results if r.server == name and good(r)), None)


def attr(obj, name, scale=1):
    value = getattr(obj, name) if obj is not None else None
    return None if value is None else value / scale


def target_throughput(runs, size, label, field, unit, baseline, goal):
    """Honeypot against *baseline* at *size* x 20 sessions: (target, figure, ok)."""
    pick = lambda name: attr(first(runs, name, lambda r: r.size == size and r.sessions == 20), field)
    hp, base = pick("honeypot"), pick(baseline)
    r = ratio(hp, base)
    figure = f"honeypot {num(hp, '.2f')} {unit} vs {baseline} {num(base, '.2f')} {unit} = {num(r, '.2f')}x"
    target = f"{label} x 20 sessions >= {goal} x {baseline} {unit}"
    return target, figure, (None if r is None else r >= goal)


def target_idle(idle):
    pick = lambda name: attr(first(idle, name, lambda r: not r.error), "per_conn")
    hp, aio = pick("honeypot"), pick("aiosmtpd")
    figure = f"honeypot {num(hp, '.0f')} B/conn (aiosmtpd {num(aio, '.0f')} B/conn)"
    return "<= 5 KB RSS per idle connection", figure, (None if hp is None else hp <= TARGET_IDLE_BYTES)


def target_large(large):
    hp = first(large, "honeypot", lambda r: r.after)
    aio = first(large, "aiosmtpd", lambda r: r.after)
    peak = attr(hp, "peak_growth", MB)
    figure = (f"honeypot peak {num(peak, '+.1f')} MB, after {num(attr(hp, 'growth', MB), '+.1f')} MB "
              f"(aiosmtpd peak {num(attr(aio, 'peak_growth', MB), '+.1f')} MB)")
    helpers = hp.helpers_after if hp is not None else {}
    for pid, (name, after) in sorted(helpers.items()):
        if pid in hp.helpers_before and name == "smtplatrine.storer":
            before = hp.helpers_before[pid][1]
            figure += f"; storing process {pid} peak {(after['VmHWM'] - before['VmRSS']) / MB:+.1f} MB"
    return "50 MB message grows RSS < 10 MB (peak)", figure, (None if peak is None else peak < TARGET_LARGE_GROWTH / MB)


def target_stored(stored):
    size_label = STORED_SIZES[0][0]
    pick = lambda name, field: attr(first(stored, name, lambda r: r.size_label == size_label), field)
    hp, aio = pick("hp-sqlite", "stored_per_s"), pick("aiosmtpd", "msgs_per_s")
    r = ratio(hp, aio)
    figure = (f"hp-sqlite {num(hp, '.1f')} stored msg/s (spool backlog max "
              f"{num(pick('hp-sqlite', 'max_backlog'), '.0f')}) vs aiosmtpd {num(aio, '.1f')} msg/s "
              f"= {num(r, '.2f')}x")
    target = f"SQLite stored {size_label} >= {TARGET_STORED_VS_AIO} x aiosmtpd"
    return target, figure, (None if r is None else r >= TARGET_STORED_VS_AIO)


def target_load(load):
    hp = first(load, "honeypot", lambda r: not r.error)
    aio = first(load, "aiosmtpd", lambda r: not r.error)
    worst = attr(hp, "sibling_max")
    held = f"{hp.held}/{hp.wanted} held, fds {hp.fds_before} -> {hp.fds_after}" if hp else "n/a"
    figure = (f"honeypot slowest {num(worst, '.3f')} s ({held}; aiosmtpd slowest "
              f"{num(attr(aio, 'sibling_max'), '.3f')} s)")
    ok = None if worst is None else (worst < TARGET_SIBLING and hp.held == hp.wanted)
    return "sibling transaction < 1 s, all load held", figure, ok


def summary(sections, runs, idle, large, stored, load):
    """One line per honeypot target of the sections run: [PASS|MISS|n/a] target  figures.

    Each target_* returns (target, figure, ok); ok is None when there is no
    honeypot figure (not run, or the measurement failed).
    """
    targets = []
    if "throughput" in sections:
        targets += [
            target_throughput(runs, KB, "1 KB", "msgs_per_s", "msg/s", "aiosmtpd", TARGET_1K_VS_AIO),
            target_throughput(runs, MB, "1 MB", "mb_per_s", "MB/s", "smtp-sink", TARGET_1M_VS_SINK)]
    if "idle" in sections:
        targets.append(target_idle(idle))
    if "large" in sections:
        targets.append(target_large(large))
    if "stored" in sections:
        targets.append(target_stored(stored))
    if "load" in sections:
        targets.append(target_load(load))
    out = []
    for target, figure, ok in targets:
        status = "n/a " if ok is None else ("PASS" if ok else "MISS")
        out.append(f"  [{status}] {target:<45} {figure}")
    return "\n".join(out)


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------

def parse_args():
    p = argparse.ArgumentParser(description="smtplatrine benchmark (prints only, never asserts)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1/10 of the messages and of the connections held")
    p.add_argument("--skip-honeypot", action="store_true", help="run the baselines only")
    p.add_argument("--keep-tmp", action="store_true", help="do not delete the temp dir")
    p.add_argument("--only", action="append", choices=SECTIONS, metavar="SECTION",
                   help=f"run only this section; repeatable; one of: {', '.join(SECTIONS)}")
    opts = p.parse_args()
    opts.sections = opts.only or SECTIONS
    opts.divisor = 10 if opts.quick else 1
    opts.idle_conns = 1000 if opts.quick else 10000
    opts.source_timeout = 60 if opts.quick else SOURCE_TIMEOUT
    opts.idle_deadline = 30 if opts.quick else IDLE_DEADLINE
    opts.stored_timeout = 120 if opts.quick else STORED_TIMEOUT
    opts.load_idle = LOAD_IDLE // opts.divisor
    opts.load_slow = LOAD_SLOW // opts.divisor
    opts.load_hold = 5.0 if opts.quick else LOAD_HOLD
    return opts


def check_tools():
    missing = [t for t in (SMTP_SOURCE, SMTP_SINK) if not os.access(t, os.X_OK)]
    if missing:
        sys.exit(f"missing {', '.join(missing)} (install the Debian package 'postfix')")


def on_sigterm(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def print_header(opts, nofile):
    say("smtplatrine benchmark" + (" (--quick)" if opts.quick else ""))
    say(f"  host: {platform.node()}  {os.cpu_count()} CPUs  Python {platform.python_version()}  "
        f"RLIMIT_NOFILE {nofile}  (client and servers share the CPUs)")
    say(f"  load generator: smtp-source {' '.join(SOURCE_OPTS)} -s SESSIONS -m COUNT -l SIZE")
    say("    -d = keep the session open: COUNT messages spread over SESSIONS sessions, HELO, 1 rcpt")
    say("  MB = 2^20 bytes of payload (smtp-source -l); headers (~200 B/msg) not counted")


def section_throughput(servers, opts):
    say("\n== 1. Throughput (smtp-source) ==")
    runs = []
    for server in servers:
        with server.running() as ready:
            if ready:
                runs += guarded(server, throughput_matrix, server, opts) or []
    say("")
    say(table_or_none(runs, [s.name for s in servers]))
    return runs


def table_or_none(runs, names):
    return throughput_table(runs, names) if runs else "  (no throughput results)"


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


def with_room(server, n, func, *args):
    """Run func(*args); a honeypot gets room for n connections meanwhile."""
    if isinstance(server, Honeypot):
        # its default [protection] max_connections (1000) would answer 421 to the rest
        server.overrides = {"protection": {"max_connections": n + 100}}
        say(f"  (honeypot config for this test adds [protection] max_connections = {n + 100} "
            f"in {Honeypot.OVERRIDES_INI})")
    try:
        return guarded(server, func, *args)
    finally:
        if isinstance(server, Honeypot):
            server.overrides = {}


def section_idle(servers, n, opts):
    say(f"\n== 2. Idle connections ({n} per server, banner read on each) ==")
    results = []
    for server in usable(servers):
        r = with_room(server, n, idle_test, server, n, opts)
        if r:
            say("  " + describe_idle(r))
            results.append(r)
    return results


def section_large(servers):
    say(f"\n== 3. One {LARGE_SIZE // MB} MB message via smtplib (76-char lines) ==")
    message = large_message(LARGE_SIZE)
    results = []
    for server in usable(servers):
        r = guarded(server, large_test, server, message)
        if r:
            say("  " + describe_large(r))
            results.append(r)
    return results


def section_stored(honeypots, baselines, tmp, opts):
    say(f"\n== 4. Stored messages, end to end (smtp-source -F FILE, {STORED_SESSIONS} sessions) ==")
    messages = [write_message_file(tmp, label, n) for label, n, _ in STORED_SIZES]
    for msg in messages:
        say(f"  {msg.label}: {msg.path.name}, {msg.size} bytes sent per message "
            "(multipart/mixed: text part + base64 attachment)")
    if any(h.config == "mariadb" for h in honeypots):
        why = mariadb_unavailable()
        if why:
            say(f"  hp-mariadb: SKIPPED ({why})")
            honeypots = [h for h in honeypots if h.config != "mariadb"]
    runs = []
    for msg, (_, _, base) in zip(messages, STORED_SIZES):
        count = max(STORED_SESSIONS, base // opts.divisor)
        for server in usable(honeypots + baselines):
            with server.running() as ready:
                run = guarded(server, stored_run, server, msg, count, opts) if ready else None
                if run:
                    say("  " + describe_stored(run))
                    if not run.ok or getattr(run, "incomplete", ""):
                        server.show_log_tail()
                    if isinstance(server, StoringHoneypot):
                        errors, exceptions = server.log_errors()
                        if errors:
                            say(f"{'':<12}{len(errors)} error line(s) in its log, the first: "
                                f"{errors[0]}")
                        if exceptions:
                            say(f"{'':<12}{len(exceptions)} traceback(s), the first ends in: "
                                f"{exceptions[0]}")
                    runs.append(run)
    say("")
    say(stored_table(runs) if runs else "  (no stored-section results)")
    return runs


def section_load(servers, opts):
    idle, slow = opts.load_idle, opts.load_slow
    say(f"\n== 5. Load: {idle} idle connections and {slow} slow senders held, "
        f"a sibling transaction timed {SIBLING_RUNS} times in {opts.load_hold:.0f} s ==")
    results = []
    for server in usable(servers):
        r = with_room(server, idle + slow, load_test, server, idle, slow, opts)
        if r:
            say("  " + describe_load(r))
            results.append(r)
    return results


def main():
    opts = parse_args()
    check_tools()
    signal.signal(signal.SIGTERM, on_sigterm)
    nofile = raise_nofile(max(opts.idle_conns, opts.load_idle + opts.load_slow) + 1024)
    if nofile < opts.idle_conns + 256:
        opts.idle_conns = max(100, nofile - 256)
        say(f"NOTE: RLIMIT_NOFILE is only {nofile}; idle test reduced to {opts.idle_conns} connections")
    if nofile < opts.load_idle + opts.load_slow + 256:
        opts.load_idle = max(100, nofile - 256 - opts.load_slow)
        say(f"NOTE: RLIMIT_NOFILE is only {nofile}; load test reduced to {opts.load_idle} idle"
            " connections")
    print_header(opts, nofile)

    tmp = Path(tempfile.mkdtemp(prefix="smtplatrine-bench-"))
    tmp.chmod(0o755)  # the honeypot drops privileges (to 'nobody' as root) and must reach data_dir
    honeypot = Honeypot(tmp)
    storing = [StoringHoneypot(tmp, config) for config in STORED_CONFIGS]
    aiosmtpd, sink = Aiosmtpd(tmp), SmtpSink(tmp)
    try:
        if opts.skip_honeypot:
            say("  honeypot: SKIPPED (--skip-honeypot)")
            use_hp = False
        else:
            use_hp = honeypot.available()
            if not use_hp:
                say("  honeypot: SKIPPED - `twistd --help` does not list the 'smtplatrine' plugin "
                    "(not written/installed yet); running the baselines only")
        hp = [honeypot] if use_hp else []
        sections = opts.sections
        runs = section_throughput(hp + [aiosmtpd, sink], opts) if "throughput" in sections else []
        idle = section_idle(hp + [aiosmtpd], opts.idle_conns, opts) if "idle" in sections else []
        large = section_large(hp + [aiosmtpd]) if "large" in sections else []
        stored = (section_stored(storing if use_hp else [], [aiosmtpd, sink], tmp, opts)
                  if "stored" in sections else [])
        load = section_load(hp + [aiosmtpd], opts) if "load" in sections else []
        hp_runs = [r for r in runs if r.server == "honeypot"]
        if hp_runs:
            say(f"\n  honeypot received check: {sum(r.received or 0 for r in hp_runs)} "
                f"messages stored or spooled for {sum(r.count for r in hp_runs)} sent "
                "in the throughput runs (see 'received' per run above)")
        say("\n== Summary: honeypot targets (informational, exit code is 0 regardless) ==")
        say(summary(sections, runs, idle, large, stored, load))
    except KeyboardInterrupt:
        say("\ninterrupted - stopping servers")
        return 130
    finally:
        for server in (honeypot, *storing, aiosmtpd, sink):
            if server.child:
                server.child.stop()
        if opts.keep_tmp:
            say(f"\ntemp dir kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
