#!/usr/bin/env python3
"""smtplatrine benchmark harness.

HOW TO RUN
    python3 bench/run.py            # full run (a few minutes)
    python3 bench/run.py --quick    # smoke run: 1/10 of the messages, 1,000 idle conns
    python3 bench/run.py --skip-honeypot   # baselines only
    python3 bench/run.py --keep-tmp        # keep the temp dir (logs, spool) for inspection

    Needs: Postfix's /usr/sbin/smtp-source and /usr/sbin/smtp-sink (Debian
    package "postfix"; the postfix daemon is NOT started), aiosmtpd, and for
    the honeypot a `twistd` that lists the `smtplatrine` plugin.  The repo root
    is put on PYTHONPATH for twistd so an uninstalled checkout is found too.
    Everything listens and connects on 127.0.0.1 only.

WHAT IT MEASURES  (every figure is printed next to baselines from the same run)
    Servers, each on a free loopback port, each started fresh per section:
      honeypot   twistd -n smtplatrine (skipped with a clear line if twistd
                 does not know the plugin yet)
      aiosmtpd   bench/aiosmtpd_discard.py - accepts and discards
      smtp-sink  Postfix's smtp-sink - accepts and discards (C, event driven)

    1. Throughput: smtp-source at 1, 20 and 100 concurrent sessions with 1 KB
       and 1 MB payloads; several messages per session (smtp-source -d, i.e.
       "don't disconnect").  Prints msgs/s and MB/s per server, and the
       ratios honeypot/aiosmtpd and honeypot/smtp-sink.  A run that finishes
       in under 2 s is repeated once with more messages (full mode only) so
       the fast baselines are not measured over a few hundred milliseconds.
       After each run it checks how many messages the server really received
       (honeypot: finished messages spooled; smtp-sink: its -c counter; aiosmtpd:
       its handler counter).
    2. Idle connections: opens N (10,000; --quick 1,000) idle TCP connections,
       waits for the 220 banner on each, and reports the server's VmRSS
       growth per connection (honeypot and aiosmtpd).
    3. Large message: sends one 50 MB message (76-char lines) with smtplib
       and reports VmRSS growth and peak growth (VmHWM after - VmRSS before).
    4. Summary of the honeypot targets with PASS/MISS.  Informational only:
       the exit code is 0 whatever the figures are.

SAFETY
    Every loop is bounded by a count and a deadline; every child process is
    started in its own session, is stopped (SIGTERM, then SIGKILL) when the
    harness ends, including on Ctrl-C / SIGTERM / exceptions, and runs under
    `timeout -k 5 3600` with PR_SET_PDEATHSIG so it also dies if the harness
    is killed outright.  The temp dir is removed at the end (unless --keep-tmp).

NOTES
    - The honeypot gets exactly server.ini + smtp.ini (hostname, data_dir,
      message_size_limit = 100 MB).  Only for the idle test a third file,
      zz-bench-overrides.ini, raises [protection] max_connections to N + 100
      (the default 1000 would answer 421 to the rest); the output says so.
    - As root the honeypot drops privileges to nobody, so the temp dir is
      made 0755 (mkdtemp creates it 0700).
    - MB = 2^20 bytes of smtp-source payload; headers are not counted.
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
import re
import resource
import selectors
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

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

# Targets for the honeypot (printed in the summary, never asserted).
TARGET_1K_VS_AIO = 1.5
TARGET_1M_VS_SINK = 0.6
TARGET_IDLE_BYTES = 5 * KB
TARGET_LARGE_GROWTH = 10 * MB


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


def proc_mem(pid):
    """VmRSS and VmHWM of a process, in bytes."""
    mem = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                mem[key] = int(rest.split()[0]) * 1024
    return mem


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
        """Finished messages: those whose metadata file is written (files
        the spool creates ahead stay empty until used)."""
        spool = self.data_dir / "spool" / "messages"
        try:
            return sum(1 for e in os.scandir(spool)
                       if e.name.endswith(".json") and e.stat().st_size)
        except FileNotFoundError:
            return 0


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


def run_smtp_source(port, sessions, count, size, timeout):
    """Run smtp-source once; return (wall seconds, error string or '')."""
    argv = [SMTP_SOURCE, *SOURCE_OPTS, "-s", str(sessions), "-m", str(count),
            "-l", str(size), f"{HOST}:{port}"]
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


def measure(server, size_label, size, sessions, count, opts):
    """One timed smtp-source run plus the received-count sanity check."""
    before = server.received()
    run = Run(server.name, size_label, size, sessions, count)
    run.wall, run.error = run_smtp_source(server.port, sessions, count, size, opts.source_timeout)
    if before is not None:
        after = wait_received(server, before + count)
        run.received = None if after is None else after - before
    return run


def scaled_count(run):
    """A larger count so a too-short run takes about TARGET_WALL seconds (bounded)."""
    want = math.ceil(run.count * TARGET_WALL / max(run.wall, 0.01))
    return max(run.count, min(want, run.count * MAX_SCALE, MAX_RUN_BYTES // run.size))


def throughput_matrix(server, opts):
    runs = []
    run_smtp_source(server.port, 5, 50, 1 * KB, opts.source_timeout)  # warm-up, untimed
    for size_label, size, base in SIZES:
        for sessions in SESSIONS:
            count = max(sessions, base // opts.divisor)
            run = measure(server, size_label, size, sessions, count, opts)
            if not opts.quick and run.ok and run.wall < MIN_WALL:
                bigger = scaled_count(run)
                if bigger > run.count:
                    run = measure(server, size_label, size, sessions, bigger, opts)
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
        res.after = proc_mem(server.pid)
        if count_before is not None:
            after = wait_received(server, count_before + 1)
            res.received = None if after is None else after - count_before
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
            f"(peak growth {r.peak_growth / MB:+7.1f} MB)  received {got}{err}")


# --------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------

def table(headers, rows):
    """Aligned text table: first column left-aligned, the others right-aligned."""
    cells = [headers] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def fmt(row):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
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
    return "50 MB message grows RSS < 10 MB (peak)", figure, (None if peak is None else peak < TARGET_LARGE_GROWTH / MB)


def summary(runs, idle, large):
    """One line per honeypot target: [PASS|MISS|n/a] target  measured figures.

    Each target_* returns (target, figure, ok); ok is None when there is no
    honeypot figure (not run, or the measurement failed).
    """
    out = []
    for target, figure, ok in (
            target_throughput(runs, KB, "1 KB", "msgs_per_s", "msg/s", "aiosmtpd", TARGET_1K_VS_AIO),
            target_throughput(runs, MB, "1 MB", "mb_per_s", "MB/s", "smtp-sink", TARGET_1M_VS_SINK),
            target_idle(idle), target_large(large)):
        status = "n/a " if ok is None else ("PASS" if ok else "MISS")
        out.append(f"  [{status}] {target:<45} {figure}")
    return "\n".join(out)


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------

def parse_args():
    p = argparse.ArgumentParser(description="smtplatrine benchmark (prints only, never asserts)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1/10 of the messages, 1,000 idle connections")
    p.add_argument("--skip-honeypot", action="store_true", help="run the baselines only")
    p.add_argument("--keep-tmp", action="store_true", help="do not delete the temp dir")
    opts = p.parse_args()
    opts.divisor = 10 if opts.quick else 1
    opts.idle_conns = 1000 if opts.quick else 10000
    opts.source_timeout = 60 if opts.quick else SOURCE_TIMEOUT
    opts.idle_deadline = 30 if opts.quick else IDLE_DEADLINE
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


def section_idle(servers, n, opts):
    say(f"\n== 2. Idle connections ({n} per server, banner read on each) ==")
    results = []
    for server in usable(servers):
        if isinstance(server, Honeypot):
            # its default [protection] max_connections (1000) would answer 421 to the rest
            server.overrides = {"protection": {"max_connections": n + 100}}
            say(f"  (honeypot config for this test adds [protection] max_connections = {n + 100} "
                f"in {Honeypot.OVERRIDES_INI})")
        try:
            r = guarded(server, idle_test, server, n, opts)
        finally:
            if isinstance(server, Honeypot):
                server.overrides = {}
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


def main():
    opts = parse_args()
    check_tools()
    signal.signal(signal.SIGTERM, on_sigterm)
    nofile = raise_nofile(opts.idle_conns + 1024)
    if nofile < opts.idle_conns + 256:
        opts.idle_conns = max(100, nofile - 256)
        say(f"NOTE: RLIMIT_NOFILE is only {nofile}; idle test reduced to {opts.idle_conns} connections")
    print_header(opts, nofile)

    tmp = Path(tempfile.mkdtemp(prefix="smtplatrine-bench-"))
    tmp.chmod(0o755)  # the honeypot drops privileges (to 'nobody' as root) and must reach data_dir
    honeypot = Honeypot(tmp)
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
        runs = section_throughput(hp + [aiosmtpd, sink], opts)
        idle = section_idle(hp + [aiosmtpd], opts.idle_conns, opts)
        large = section_large(hp + [aiosmtpd])
        if any(r.server == "honeypot" for r in runs):
            say(f"\n  honeypot spool check: {sum(r.received or 0 for r in runs if r.server == 'honeypot')} "
                f"finished messages for {sum(r.count for r in runs if r.server == 'honeypot')} sent "
                "in the throughput runs (see 'received' per run above)")
        say("\n== Summary: honeypot targets (informational, exit code is 0 regardless) ==")
        say(summary(runs, idle, large))
    except KeyboardInterrupt:
        say("\ninterrupted - stopping servers")
        return 130
    finally:
        for server in (honeypot, aiosmtpd, sink):
            if server.child:
                server.child.stop()
        if opts.keep_tmp:
            say(f"\ntemp dir kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
