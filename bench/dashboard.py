#!/usr/bin/env python3
"""How fast the dashboard answers over 100,000 stored messages.

HOW TO RUN
    python3 bench/dashboard.py                 # SQLite and MariaDB, 100,000 messages
    python3 bench/dashboard.py --only sqlite   # one database (sqlite or mariadb)
    python3 bench/dashboard.py --messages 20000 --keep /tmp/dash-bench
    python3 bench/dashboard.py --keep /tmp/dash-bench --reuse   # measure again

    MariaDB: 127.0.0.1:3306 as root without a password, database
    smtplatrine_bench_dashboard (made, and dropped at the end unless --keep);
    or, with --buffer-pool 1G, a private mariadbd in the work directory
    whose buffer pool holds the tables, as an analysis host's would (the
    shared server's default 128 MB pool makes every large read a disk read).

WHAT IT DOES
    Fills the database through the store's own write path
    (store.records.save_message, 500 messages a transaction) with messages
    made from the corpus (tests/corpus.py): each corpus message is parsed
    once by the pipeline's prepare(), then given, per stored copy, its own
    id, session, time (over 30 days), client address (5,000 public ones),
    MAIL FROM (2,000 senders), HELO, recipients, subject, message hashes and,
    for a third of those with attachments, attachment hashes of their own.
    1% of the subjects say "zebrafish", 10% "pharmacy" (the free-text
    searches).  Raw messages are kept on disk ([store] raw_in_database =
    false), one file per corpus message, so that the database holds what the
    dashboard reads (headers, bodies, parts) without 100,000 copies of the
    raw bytes.

    Then starts ``twistd -n smtplatrine-web`` on it and times HTTP requests
    with a forensic API token, each 20 times (other values where it
    matters): the login page (the baseline: HTTP and twistd, no database),
    the messages page (page 1, and page 500), free-text searches (1% and
    10% of the messages match), from:, ip: and sha256: searches, a
    message view, the overview (30 days, one day) and each pivot page
    (clients, credentials, recipients, attachments, URLs, campaigns) over
    30 days (and 15 of the 30 days), and a client's page.  Prints median
    and worst wall time and the CPU per request (the dashboard's process,
    and a private MariaDB server's or the local one's) beside the issue's
    targets, and the dashboard's memory (VmRSS) before and after paging
    through 300 pages of messages.  On a shared machine the CPU time is
    the steadier figure: it is what the request costs, whatever else runs.
"""

import argparse
import hashlib
import ipaddress
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import attrs

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import procfs  # noqa: E402
from smtplatrine.config import MySQL as MySQLSettings  # noqa: E402
from smtplatrine.enrich.indicators import of_message  # noqa: E402
from smtplatrine.parse import Limits  # noqa: E402
from smtplatrine.files import keep  # noqa: E402
from smtplatrine.pipeline import prepare  # noqa: E402
from smtplatrine.store import dialects, schema, users  # noqa: E402
from smtplatrine.store.records import save_message, save_session  # noqa: E402
from tests.corpus import CORPUS  # noqa: E402

MYSQL_DB = "smtplatrine_bench_dashboard"
TARGETS = {"messages page": 0.3, "free text": 0.3, "indexed": 0.1, "view": 0.1,
           "overview": 1.0, "pivot": 0.3}
# Sessions for every message, and as many again four times over without
# a message: scanners and credential stuffers.
SESSIONS_PER_MESSAGE = 5
DAYS = 30
START = 1767225600.0  # 2026-01-01
# The attachment hashes a third of the copies get instead of the corpus's.
SHARED_HASHES = [hashlib.sha256(f"shared {i}".encode()).hexdigest() for i in range(300)]
SHARED = set(SHARED_HASHES)


def templates(directory):
    """Each corpus message parsed once, weighted so that small ones, as in
    real spam, are the most frequent: [(Prepared, raw path, weight)]."""
    found = []
    raw_dir = directory / "data" / "raw"
    for path in sorted(CORPUS.glob("*.eml")):
        raw = path.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        eml = directory / f"{uuid.uuid4()}.eml"
        eml.write_bytes(raw)
        eml.with_suffix(".json").write_text(json.dumps({
            "message": eml.stem, "session": eml.stem, "sensor": "bench", "src_ip": "192.0.2.1",
            "src_port": 1, "dst_ip": "192.0.2.2", "dst_port": 25, "received": START}))
        prepared = prepare(eml, Limits(), None, None)
        sha256 = hashlib.sha256(raw).hexdigest()
        found.append((prepared, keep(raw_dir, raw, sha256), 100_000 / (len(raw) + 5_000)))
    return found


def public_addresses(rng, count):
    found = set()
    while len(found) < count:
        address = ipaddress.IPv4Address(rng.randrange(1 << 24, 224 << 24))
        if address.is_global:
            found.add(str(address))
    return sorted(found)


def generate(base, count, seed=7):
    """*count* Prepared messages varied from the corpus *base*, and what
    the searches look for."""
    rng = random.Random(seed)
    ips = public_addresses(rng, 5000)
    domains = [f"{rng.choice(['mail', 'news', 'info', 'promo'])}{i}.example{i % 40}.com"
               for i in range(400)]
    senders = [f"{rng.choice(['noreply', 'billing', 'admin', 'support', 'x'])}{i}@"
               f"{domains[i % len(domains)]}" for i in range(2000)]
    helos = [f"host{i}.{domains[i % len(domains)]}" for i in range(1000)] + ["localhost", "[127.0.0.1]"]
    weights = [w for _, _, w in base]
    shared_hashes = SHARED_HASHES
    for i in range(count):
        prepared, raw_path, _ = rng.choices(base, weights)[0]
        parsed = prepared.parsed
        subject = (parsed.fields.get("subject") or "") + f" #{i % 9973}"
        if i % 100 == 7:
            subject += " zebrafish"
        if i % 10 == 3:
            subject += " pharmacy"
        attachments = parsed.attachments
        if attachments and i % 3 == 0:
            attachments = tuple(attrs.evolve(a, sha256=shared_hashes[(i // 3) % 300],
                                             md5=hashlib.md5(f"{i}".encode()).hexdigest())
                                for a in attachments)
        message = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        mail_from = senders[i % len(senders)]
        identity = attrs.evolve(
            prepared.metadata.identity,
            session=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            sensor=f"sensor-{i % 3}", src_ip=ips[rng.randrange(len(ips))],
            src_port=rng.randrange(1024, 65535))
        metadata = attrs.evolve(
            prepared.metadata, message=message, identity=identity, received=START + i * 26.0,
            session_start=START + i * 26.0 - 1, helo=rng.choice(helos),
            mail_from=mail_from, rcpts=(f"user{rng.randrange(5000)}@victim{rng.randrange(50)}.example",),
            sha256=hashlib.sha256(f"message {i}".encode()).hexdigest(),
            md5=hashlib.md5(f"message {i}".encode()).hexdigest(),
            tls={"version": "TLSv1.3", "cipher": "TLS_AES_256_GCM_SHA384"} if i % 4 == 0 else None)
        new_parsed = attrs.evolve(parsed, fields={**parsed.fields, "subject": subject},
                                  attachments=attachments)
        yield attrs.evolve(prepared, metadata=metadata, parsed=new_parsed, raw=None,
                           raw_path=raw_path,
                           indicators=tuple(of_message(metadata, new_parsed)))


def session_record(rng, session_id, sensor, ip, start, helo, credentials, messages=0):
    """A finished session as the SMTP side spools it; a third of them try
    AUTH one to three times."""
    attempts = []
    if rng.random() < 1 / 3:
        for i in range(rng.randint(1, 3)):
            username, password = rng.choice(credentials)
            attempts.append({"mechanism": rng.choice(["PLAIN", "LOGIN"]), "authzid": "",
                             "username": username, "password": password,
                             "challenge": None, "response": None, "time": start + 1 + i,
                             "accepted": False})
    return {"session": session_id, "sensor": sensor, "src_ip": ip,
            "src_port": rng.randrange(1024, 65535), "dst_ip": "192.0.2.2", "dst_port": 25,
            "start": start, "end": start + 3, "helo": helo, "tls": None,
            "transcript": [[0.0, "S", "220 mail.example.com ESMTP Postfix (Debian/GNU)"]],
            "flags": [], "commands": 3 + len(attempts), "unknown_commands": 0, "errors": 0,
            "messages": messages, "pregreet": "", "close_reason": "quit", "auth": attempts,
            "envelopes": []}


def sessions(count, messages, seed=11):
    """*count* session records: first one for each of *messages* (the
    metadata of generate's), then scanners' sessions without a message over
    the same 30 days, from 20,000 addresses."""
    rng = random.Random(seed)
    usernames = ["admin", "root", "info", "test", "postmaster", "user", "sales"] + [
        f"user{i}" for i in range(200)]
    passwords = ["123456", "password", "admin", "qwerty"] + [f"pass{i}!" for i in range(2000)]
    credentials = [(rng.choice(usernames), rng.choice(passwords)) for _ in range(5000)]
    for m in messages:
        yield session_record(rng, m.identity.session, m.identity.sensor, m.identity.src_ip,
                             m.session_start, m.helo, credentials, 1)
    ips = public_addresses(rng, 20_000)
    scanners = count - len(messages)
    for i in range(scanners):
        yield session_record(rng, str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                             f"sensor-{i % 3}", rng.choice(ips), START + i * DAYS * 86400 / scanners,
                             rng.choice(["localhost", "scanner.example", None, "ylmf-pc"]),
                             credentials)


def fill(dialect, base, count, reuse):
    """Store *count* messages and SESSIONS_PER_MESSAGE times as many
    sessions (with *reuse*, unless the database holds
    them already, from an earlier run with --keep); (seconds or None, a
    sample of what to search for, an API token)."""
    connection = dialect.connect(create=True)
    cursor = connection.cursor()
    schema.upgrade(cursor, dialect, dialect.migrations(), True)
    connection.commit()
    cursor.execute("SELECT COUNT(*) FROM honeypot_sessions WHERE ended IS NOT NULL")
    store = not (reuse and cursor.fetchone()[0] >= count * SESSIONS_PER_MESSAGE)
    started, sample, stored = time.monotonic(), [], []
    for n, prepared in enumerate(generate(base, count), 1):
        if store:
            save_message(cursor, dialect, prepared, time.time())
            stored.append(prepared.metadata)
        if n % 997 == 0:
            sample.append(prepared)
        if store and n % 500 == 0:
            connection.commit()
        if store and n % 10_000 == 0:
            say(f"  {n:,} stored ({n / (time.monotonic() - started):,.0f}/s)")
    if store:
        say(f"  and {count * SESSIONS_PER_MESSAGE:,} sessions")
        for n, record in enumerate(sessions(count * SESSIONS_PER_MESSAGE, stored), 1):
            save_session(cursor, dialect, record)
            if n % 1000 == 0:
                connection.commit()
            if n % 100_000 == 0:
                say(f"  {n:,} sessions stored")
    token = users.new_token()
    users.add_token(cursor, dialect, f"bench-{token[-8:]}", "forensic", token, time.time())
    connection.commit()
    connection.close()
    return (time.monotonic() - started) if store else None, sample, token


def say(text):
    print(text, flush=True)


def rss_kb(pid):
    return procfs.memory(pid)["VmRSS"] // 1024


def timed(url, token):
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()
        if response.status != 200:
            raise RuntimeError(f"{url}: {response.status}")
    return time.perf_counter() - started


def measure(base_url, token, sample, process, database_pid=None):
    """Each case's (median, worst, CPU) in seconds: CPU is the mean per
    request of the dashboard's process and of *database_pid* (a MariaDB
    server), steadier than wall time on a shared machine."""
    from urllib.parse import quote
    rows = []
    pids = [process.pid] + ([database_pid] if database_pid else [])

    def case(name, target, paths):
        if not paths:       # a small store without such messages
            return
        cpu = sum(procfs.cpu_seconds(pid) for pid in pids)
        times = [timed(base_url + path, token) for path in paths]
        cpu = (sum(procfs.cpu_seconds(pid) for pid in pids) - cpu) / len(paths)
        rows.append((name, target, statistics.median(times), max(times), cpu))

    case("login page (baseline)", None, ["/login"] * 20)
    case("messages page 1", TARGETS["messages page"], ["/messages"] * 20)
    case("messages page 500", TARGETS["messages page"], ["/messages?page=500"] * 20)
    case("free text, 1% match", TARGETS["free text"], ["/messages?q=zebrafish"] * 20)
    case("free text, 10% match", TARGETS["free text"], ["/messages?q=pharmacy"] * 20)
    case("from:DOMAIN", TARGETS["indexed"],
         [f"/messages?q=from:{quote(p.metadata.mail_from.split('@')[1])}" for p in sample[:20]])
    case("ip:ADDRESS", TARGETS["indexed"],
         [f"/messages?q=ip:{p.metadata.identity.src_ip}" for p in sample[:20]])
    # A third of the copies with attachments have hashes of their own (each
    # in some 70 messages), the others the corpus's (each in thousands).
    own = [p.parsed.attachments[0].sha256 for p in sample if p.parsed.attachments
           and p.parsed.attachments[0].sha256 in SHARED][:20]
    common = [p.parsed.attachments[0].sha256 for p in sample if p.parsed.attachments
              and p.parsed.attachments[0].sha256 not in SHARED][:20]
    case("sha256:ATTACHMENT (70)", TARGETS["indexed"], [f"/messages?q=sha256:{h}" for h in own])
    case("sha256:ATTACHMENT (1000s)", TARGETS["indexed"],
         [f"/messages?q=sha256:{h}" for h in common])
    case("sha256:MESSAGE", TARGETS["indexed"],
         [f"/messages?q=sha256:{p.metadata.sha256}" for p in sample[:20]])
    case("message view", TARGETS["view"],
         [f"/messages/{p.metadata.message}" for p in sample[:20]])
    case("message view (JSON)", TARGETS["view"],
         [f"/api/messages/{p.metadata.message}" for p in sample[:20]])
    # The 30 days the store holds (its first session starts a second before
    # 2026; read from the totals), then part of them.
    days = "since=2025-12-31&until=2026-02-01"
    case("overview, 30 days", TARGETS["overview"], [f"/overview?{days}"] * 20)
    case("overview, 30 days (JSON)", TARGETS["overview"], [f"/api/overview?{days}"] * 20)
    case("overview, one day", TARGETS["overview"],
         ["/overview?since=2026-01-15&until=2026-01-16"] * 20)
    for path in ("/clients", "/credentials", "/recipients", "/attachments", "/urls",
                 "/campaigns"):
        case(f"{path[1:]}, 30 days", TARGETS["pivot"], [f"{path}?{days}"] * 20)
    # Part of the stored range: summed from the day buckets.
    half = "since=2026-01-08&until=2026-01-23"
    case("overview, 15 of the 30 days", TARGETS["overview"], [f"/overview?{half}"] * 20)
    for path in ("/clients", "/credentials", "/recipients", "/attachments", "/campaigns"):
        case(f"{path[1:]}, 15 of 30 days", TARGETS["pivot"], [f"{path}?{half}"] * 20)
    case("clients, page 50", TARGETS["pivot"], [f"/clients?{days}&page=50"] * 20)
    case("clients, one sensor", TARGETS["pivot"], [f"/clients?{days}&sensor=sensor-1"] * 20)
    case("client page", TARGETS["pivot"],
         [f"/clients/{p.metadata.identity.src_ip}" for p in sample[:20]])
    before = rss_kb(process.pid)
    for page in range(1, 301):
        timed(f"{base_url}/messages?page={page}", token)
        if page == 20:
            warm = rss_kb(process.pid)
    after = rss_kb(process.pid)
    return rows, (before, warm, after)


def run_dashboard(directory, sections, port):
    etc = directory / "etc"
    etc.mkdir(exist_ok=True)
    sections = dict(sections, server={"data_dir": directory / "data"},
                    web={"listen": f"tcp:{port}:interface=127.0.0.1"})
    (etc / "bench.ini").write_text("".join(
        f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in values.items())
        for name, values in sections.items()))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    log = open(directory / "twistd.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n",
         "--pidfile=", "smtplatrine-web", "--config", str(etc)],
        cwd=directory, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=2):
                return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"the dashboard did not answer; see {directory / 'twistd.log'}")


def report(name, fill_seconds, count, rows, memory):
    if fill_seconds is None:
        say(f"\n{name}: {count:,} messages, stored by an earlier run")
    else:
        say(f"\n{name}: {count:,} messages stored in {fill_seconds:.0f} s"
            f" ({count / fill_seconds:,.0f}/s through save_message)")
    say(f"  {'request':30} {'median':>9} {'worst':>9} {'CPU':>9}  target")
    for label, target, median, worst, cpu in rows:
        verdict = "" if target is None else (
            f"< {target * 1000:.0f} ms: {'met' if median < target else 'MISSED'} (median),"
            f" {'met' if cpu < target else 'MISSED'} (CPU)")
        say(f"  {label:30} {median * 1000:7.1f}ms {worst * 1000:7.1f}ms"
            f" {cpu * 1000:7.1f}ms  {verdict}")
    before, warm, after = memory
    say(f"  memory while paging 300 pages: VmRSS {before / 1024:.1f} MB before,"
        f" {warm / 1024:.1f} MB after 20 pages, {after / 1024:.1f} MB after 300")


def arguments(description, prefix):
    """The options of the dashboard's benches, and the work directory."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--only", choices=["sqlite", "mariadb"], action="append")
    parser.add_argument("--keep", metavar="DIR", help="work (and keep everything) here")
    parser.add_argument("--reuse", action="store_true",
                        help="measure the databases an earlier --keep run filled")
    parser.add_argument("--buffer-pool", metavar="SIZE",
                        help="MariaDB: a private mariadbd of this machine's (in the work"
                             " directory) with innodb_buffer_pool_size = SIZE (1G),"
                             " instead of the server on 127.0.0.1:3306")
    options = parser.parse_args()
    directory = Path(options.keep or tempfile.mkdtemp(prefix=prefix))
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    return options, directory


def dashboards(options, directory, database=MYSQL_DB):
    """For each database *options* name (in MariaDB: *database*), filled (or, with --reuse, as an
    earlier run left it), a running dashboard on it: yields (dialect,
    (fill seconds, sample, API token), process, base URL, database pid),
    and stops it after; the work directory and the MariaDB database go at
    the end unless --keep."""
    say(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs (shared machine:"
        f" wall times vary)")
    base = templates(directory)
    try:
        for name in options.only or ["sqlite", "mariadb"]:
            if name == "sqlite":
                dialect = dialects.SQLite(directory / "data" / "smtplatrine.sqlite")
                sections = {}
            else:
                port = (private_mariadb(directory, options.buffer_pool)
                        if options.buffer_pool else 3306)
                dialect = dialects.MySQL(MySQLSettings(
                    mysql_host="127.0.0.1", mysql_port=port, mysql_database=database))
                sections = {"engine": {"engine_backend": "mysql"},
                            "mysql": {"mysql_host": "127.0.0.1", "mysql_port": port,
                                      "mysql_database": database}}
            say(f"\nfilling {dialect.describe()} with {options.messages:,} messages...")
            filled = fill(dialect, base, options.messages, options.reuse)
            subprocess.run(["chmod", "-R", "a+rwX", str(directory)], check=True)
            port = _free_port()
            process = run_dashboard(directory, sections, port)
            try:
                yield (dialect, filled, process, f"http://127.0.0.1:{port}",
                       mariadb_pid(directory, name, options.buffer_pool))
            finally:
                process.terminate()
                process.wait(30)
            if name == "mariadb" and not options.keep:
                connection = dialect.connect()
                connection.cursor().execute(f"DROP DATABASE {database}")
                connection.close()
    finally:
        if not options.keep:
            shutil.rmtree(directory, ignore_errors=True)


def main():
    options, directory = arguments(__doc__.split("\n")[0], "smtplatrine-dash-bench-")
    for dialect, (seconds, sample, token), process, url, database in dashboards(
            options, directory):
        rows, memory = measure(url, token, sample, process, database)
        report(dialect.describe(), seconds, options.messages, rows, memory)


def private_mariadb(directory, pool):
    """Start a mariadbd of our own on *directory*/mariadb (made if missing)
    with a buffer pool of *pool*; its port.  It ends with this process."""
    from tests.mariadb import SERVER_OPTIONS, _die_with_parent
    data = directory / "mariadb"
    options = [o for o in SERVER_OPTIONS if "buffer-pool" not in o]
    options.append(f"--innodb-buffer-pool-size={pool}")
    if not data.exists():
        subprocess.run(["mariadb-install-db", "--no-defaults", "--user=root",
                        "--auth-root-authentication-method=normal", "--skip-test-db",
                        f"--datadir={data}", *options], check=True, capture_output=True)
    port = _free_port()
    subprocess.Popen(
        ["mariadbd", "--no-defaults", "--user=root", f"--datadir={data}",
         f"--socket={directory / 'mariadbd.sock'}", f"--pid-file={directory / 'mariadbd.pid'}",
         "--bind-address=127.0.0.1", f"--port={port}", "--skip-name-resolve", *options],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        preexec_fn=_die_with_parent)
    import MySQLdb
    for _ in range(300):
        try:
            MySQLdb.connect(host="127.0.0.1", port=port, user="root").close()
            break
        except MySQLdb.OperationalError:
            time.sleep(0.1)
    say(f"private mariadbd on port {port}, innodb_buffer_pool_size = {pool}")
    return port


def mariadb_pid(directory, name, private):
    """The pid of the MariaDB server the dashboard reads, or None (SQLite,
    or a shared server this process cannot see)."""
    if name != "mariadb":
        return None
    path = directory / "mariadbd.pid" if private else Path("/run/mysqld/mysqld.pid")
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    main()
