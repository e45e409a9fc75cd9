#!/usr/bin/env python3
"""How fast ``smtplatrine import`` fills a database.

HOW TO RUN
    python3 bench/importing.py              # corpus x40 and 5,000 small messages
    python3 bench/importing.py --quick      # corpus x5 and 1,000 small messages
    python3 bench/importing.py --copies 100 --small 20000

WHAT IT MEASURES
    Two mbox files made from the shared corpus (../shared/corpus/real-mail,
    see tests/corpus.py), each message given an X-Bench-Copy header so that
    every copy is a message of its own:
      corpus   the 11 corpus messages (2.6 MB; 1.5 MB the largest) repeated
               --copies times;
      small    the corpus messages under 15 KB, repeated to --small messages
               (what most captured spam looks like).
    For each, ``smtplatrine import`` (the real command, a subprocess, with
    enrichers off) into a fresh SQLite database, and into a fresh MariaDB
    database on 127.0.0.1:3306 (root, no password; skipped, saying so, if
    it does not answer).  Printed: messages/s and MB/s of wall time, and
    CPU seconds per message of the import process (user + system, steadier
    than wall time on a shared machine).
    Baselines, same messages, same run, in this process:
      email     Python's mailbox reading the mbox and the email package
                parsing each message and walking its parts (reading only,
                nothing stored);
      parse     smtplatrine's parse() alone (the parser's share of import).

    Everything stays on this machine; nothing is sent anywhere.  The
    temporary directory and the MariaDB databases are removed at the end.
"""

import argparse
import email
import email.policy
import mailbox
import os
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from smtplatrine.parse import parse  # noqa: E402
from tests.corpus import CORPUS  # noqa: E402


def make_mbox(path, messages, count):
    """Write *count* messages, cycling through *messages*, as an mbox."""
    size = 0
    with open(path, "wb") as f:
        for i in range(count):
            raw = messages[i % len(messages)].replace(b"\r\n", b"\n")
            raw = b"X-Bench-Copy: %d\n" % i + raw.replace(b"\nFrom ", b"\n>From ")
            f.write(b"From bench@example.net Mon Jan  1 00:00:00 2024\n"
                    + raw.removesuffix(b"\n") + b"\n\n")
            size += len(raw)
    return size


def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def baseline_email(mbox_path):
    started, used = time.monotonic(), cpu()
    count = 0
    for raw in (m.as_bytes() for m in mailbox.mbox(mbox_path)):
        message = email.message_from_bytes(raw, policy=email.policy.default)
        for part in message.walk():
            if not part.is_multipart():
                part.get_payload(decode=True)
        count += 1
    return count, time.monotonic() - started, cpu() - used


def baseline_parse(mbox_path):
    raws = [m.as_bytes() for m in mailbox.mbox(mbox_path)]
    started, used = time.monotonic(), cpu()
    for raw in raws:
        parse(raw)
    return len(raws), time.monotonic() - started, cpu() - used


def mariadb_database():
    """A new database on the local MariaDB, or None (and why) if it does
    not answer."""
    try:
        import MySQLdb
        connection = MySQLdb.connect(host="127.0.0.1", port=3306, user="root", password="",
                                     connect_timeout=5)
    except Exception as e:
        return None, str(e)
    name = f"smtplatrine_bench_{secrets.token_hex(4)}"
    with connection:
        connection.cursor().execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    return name, None


def drop_mariadb(name):
    import MySQLdb
    with MySQLdb.connect(host="127.0.0.1", port=3306, user="root", password="") as c:
        c.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")


def run_import(directory, mbox_path, engine):
    """Import *mbox_path* into a fresh database: (messages, wall s, CPU s)."""
    etc = directory / f"etc-{engine}-{mbox_path.stem}"
    data = directory / f"data-{engine}-{mbox_path.stem}"
    etc.mkdir()
    lines = [f"[server]\ndata_dir = {data}\n[meta]\nmeta_enable = false\n"
             "[smtp]\nmessage_size_limit = 104857600\n"]
    database = None
    if engine == "mariadb":
        database, why = mariadb_database()
        if database is None:
            print(f"  MariaDB on 127.0.0.1:3306 does not answer ({why}); skipped")
            return None
        lines.append(f"[engine]\nengine_backend = mysql\n[mysql]\nmysql_host = 127.0.0.1\n"
                     f"mysql_port = 3306\nmysql_database = {database}\n")
    (etc / "bench.ini").write_text("".join(lines))
    try:
        used, started = children_cpu(), time.monotonic()
        result = subprocess.run(
            [sys.executable, "-c", "from smtplatrine.cli import main; main()", "import",
             "--config", str(etc), str(mbox_path)],
            env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, timeout=3600)
        wall, used = time.monotonic() - started, children_cpu() - used
        if result.returncode:
            print("  import failed:", result.stderr.decode(errors="replace")[-2000:])
            return None
        summary = result.stderr.decode().strip().splitlines()[-1]
        count = int(summary.split("imported ")[1].split(" message")[0].replace(",", ""))
        return count, wall, used
    finally:
        if database is not None:
            drop_mariadb(database)


def line(label, count, size, wall, used):
    print(f"  {label:<22} {count:>7,} msgs  {count / wall:>8,.0f} msg/s"
          f"  {size / wall / 2**20:>7,.1f} MB/s  {used / count * 1000:>7.2f} ms CPU/msg")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages")
    parser.add_argument("--copies", type=int, help="copies of the corpus (default 40)")
    parser.add_argument("--small", type=int, help="small messages (default 5,000)")
    options = parser.parse_args()
    copies = options.copies or (5 if options.quick else 40)
    small_count = options.small or (1000 if options.quick else 5000)
    corpus = [p.read_bytes() for p in sorted(CORPUS.glob("*.eml"))]
    small = [raw for raw in corpus if len(raw) < 15000]
    directory = Path(tempfile.mkdtemp(prefix="smtplatrine-bench-import-"))
    try:
        print(f"smtplatrine import, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}"
              " (a shared machine moves wall times; CPU/msg moves less)")
        for name, messages, count in [("corpus", corpus, copies * len(corpus)),
                                      ("small", small, small_count)]:
            path = directory / f"{name}.mbox"
            size = make_mbox(path, messages, count)
            print(f"\n{name}: {count:,} messages, {size / 2**20:,.1f} MB")
            for label, baseline in [("email (read only)", baseline_email),
                                    ("parse() (read only)", baseline_parse)]:
                done, wall, used = baseline(path)
                line(label, done, size, wall, used)
            for engine in ("sqlite", "mariadb"):
                result = run_import(directory, path, engine)
                if result is not None:
                    line(f"import into {engine}", result[0], size, result[1], result[2])
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
