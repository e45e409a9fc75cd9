#!/usr/bin/env python3
"""Where capture spends its CPU: the honeypot storing into SQLite takes
smtp-source's messages while py-spy samples every one of its processes
(the SMTP process, the disk worker, the storing worker); each sample is put
in the stage its innermost known frame belongs to, and each stage is
printed in CPU microseconds per message.

    python3 bench/stages.py [--quick] [--case 1k|1k-conn|1m]... [--rate HZ] [--keep-tmp]

py-spy counts a thread that is runnable, or waiting on the disk, as
running, which on a busy machine is far more than its CPU: so each
process's samples only share out the CPU /proc counted for it over the
same time, and samples whose innermost frame waits are left out.
bench/README.md explains the stages.
"""

import argparse
import collections
import re
import signal
import subprocess
import sys
import tempfile
import shutil
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import procfs  # noqa: E402
from bench.clients import run_smtp_source  # noqa: E402
from bench.report import say, table  # noqa: E402
from bench.servers import StoringHoneypot  # noqa: E402
from bench.stored import MESSAGES, wait_stored, write_message_file  # noqa: E402
from smtplatrine.parsers import NAME  # noqa: E402

SESSIONS = 20
# name: (message, count, count with --quick, a new connection per message)
CASES = {"1k": ("1 KB", 3000, 600, False), "1k-conn": ("1 KB", 2000, 400, True),
         "1m": ("1 MB", 150, 30, False)}
WARM_UP = 20
STORED_TIMEOUT = 600

# (stage, process, where): a sample belongs to the first stage, from its
# innermost frame out, one of whose rules matches a frame ("function
# (file:line)" as py-spy writes it).  Rules are regular expressions.
STAGES = [
    # SMTP process
    ("accept", "smtp", r"(Port\.doRead|buildProtocol|connectionMade|admit) \("),
    ("transcript", "smtp", r"\bnote \(.*smtp/record\.py"),
    ("events", "smtp", r"(Events\.emit|StoringProcess\.write) \("),
    ("log lines", "smtp", r"logger/_(observer|file|json|format|global|filter)\.py"),
    ("spool write", "smtp", r"(SpoolFile\.\w+|_open_empty|Spool\.open|has_room) \("),
    ("spool sync (asking the disk worker)", "smtp",
     r"(DiskWorker\.\w+|GroupCommit\.\w+|Spool\.commit) \("),
    ("hand-off (notify, left)", "smtp",
     r"(StoringProcess\.(notify|lineReceived)|Spool\._announce|Spool\._committed|Backlog\.\w+) \("),
    ("session record", "smtp",
     r"(save_session|to_json|session_closed|connectionLost)"
     r" \(.*(spool|record|factory|protocol)\.py"),
    ("DATA framing", "smtp", r"smtp/framing\.py|_data_step|_bdat_step"),
    ("commands and replies", "smtp", r"smtp/(protocol|envelope|auth)\.py|persona\.py"),
    ("pipe to the storing process", "smtp", r"ProcessWriter|Child\.outReceived"),
    ("socket reads and writes", "smtp", r"Connection\.(doRead|writeSomeData)|doWrite"),
    ("reactor (the rest)", "smtp", r"."),
    # disk worker: one stage (its CPU as /proc counts it)
    ("spool sync (disk worker)", "disk", r"."),
    # parse workers (and their zygote)
    ("read", "parsers", r"(read_message|read_json|read_metadata) \("),
    ("hashes", "parsers", r"\bkeep \(.*pipeline\.py|hashlib|sha256|md5"),
    ("files (raw, attachments)", "parsers", r"smtplatrine/files\.py"),
    ("parse", "parsers", r"smtplatrine/parse/|parse_safely|email/"),
    ("indicators", "parsers", r"smtplatrine/enrich/"),
    ("answer to the storing worker", "parsers", r"(_answer|_without_payloads) \("),
    ("the rest (records, requests)", "parsers", r"."),
    # storing worker
    ("read", "storing", r"(read_message|read_json|read_metadata|SpoolReader\.\w+|_scan) \("),
    ("answers of the parse workers", "storing", r"smtplatrine/parsers\.py"),
    ("commit", "storing", r"\b(sync|commit) \(.*dialects\.py|_runInteraction \(.*adbapi\.py:445"),
    ("removal", "storing", r"\b_settle \(.*pipeline\.py|unlink"),
    ("inserts: tallies", "storing", r"store/tallies\.py"),
    ("inserts: attachment flags", "storing", r"forensics\.py"),
    ("inserts: enrichment cache", "storing", r"store/enrichment\.py"),
    ("inserts: message rows", "storing", r"smtplatrine/store/|adbapi|sqlite3"),
    ("events", "storing", r"smtplatrine/events\.py|smtplatrine/outputs/|announce \("),
    ("log lines", "storing", r"logger/_(observer|file|json|format|global|filter)\.py"),
    ("enrichment", "storing", r"smtplatrine/enrich/"),
    ("hand-off (lines in and out)", "storing", r"storing\.py"),
    ("waking the reactor from threads", "storing", r"callFromThread|ThreadWorker\.do"),
    ("reactor, threads (the rest)", "storing", r"."),
    # the enrichment's sandbox and its workers (their CPU as /proc counts
    # it; not sampled)
    ("attachment analysis", "sandbox", r"."),
]
_RULES = [(stage, process, re.compile(rule)) for stage, process, rule in STAGES]


# Innermost frames of a thread that waits (for work, the disk, a socket):
# py-spy counts as running a thread that is runnable, or in an uninterruptible
# wait, which on a loaded machine is far more than its CPU.
IDLE = re.compile(r"^(EPollReactor\.doPoll|PollReactor\.doPoll|Condition\.wait|Queue\.get|"
                  r"_worker \(concurrent/futures/thread\.py:81\)|syncfs|waitpid|select|"
                  r"_input_ended|Event\.wait|_read \(.*parsers\.py)")


def stage_of(frames, process):
    """The stage of a sample of *process* whose stack is *frames*
    (outermost first); None for a thread that waits."""
    if IDLE.search(frames[-1]):
        return None
    rules = [(stage, rule) for stage, owner, rule in _RULES if owner == process]
    for frame in reversed(frames):
        for stage, rule in rules[:-1]:
            if rule.search(frame):
                return stage
    # The process's last rule takes what no other did.
    return rules[-1][0]


def read_raw(path):
    """py-spy's raw output: [(frames, count)]."""
    samples = []
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            samples.append((stack.split(";"), int(count)))
    return samples


def _stat(pid):
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()


def processes(server):
    """{role: [pids]} of the honeypot's processes: the SMTP process, the
    disk worker, the storing worker (the last fork of the storing process),
    the parse workers (the children of its zygote, which is named
    smtplatrine-par, and the zygote) and the attachment sandbox (its other
    children, theirs too)."""
    found = {"smtp": [server.pid], "disk": [], "storing": [], "parsers": [], "sandbox": []}
    helpers = procfs.helper_memories(server.pid)
    found["disk"] = [pid for pid, (name, _) in helpers.items() if name == "smtplatrine.disk"]
    [supervisor] = [pid for pid in procfs.children(server.pid)
                    if helpers.get(pid, ("",))[0] == "smtplatrine.storing"]
    # The worker is forked last (field 22 of proc(5): the start time).
    forks = sorted(procfs.children(supervisor), key=lambda pid: int(_stat(pid)[19]))
    found["storing"] = forks[-1:]
    for pid in forks[:-1]:
        role = ("parsers" if Path(f"/proc/{pid}/comm").read_bytes().strip() == NAME
                else "sandbox")
        found[role] += [pid, *procfs.descendants(pid)]
    return found


def own_cpu(pids):
    """{pid: CPU seconds of it and of its children that ended (utime,
    stime, cutime, cstime)} of those of *pids* still running."""
    found = {}
    for pid in pids:
        try:
            fields = _stat(pid)
        except OSError:
            continue
        found[pid] = sum(int(f) for f in fields[11:15]) / procfs.CLOCK_TICKS
    return found


def cpu_since(before, pids):
    """CPU seconds *pids* used since *before* (:func:`own_cpu`), counting
    those that ran throughout."""
    after = own_cpu(pids)
    return sum(after[pid] - before[pid] for pid in after if pid in before)


def profile_case(tmp, name, opts):
    label, count, quick_count, per_connection = CASES[name]
    count = quick_count if opts.quick else count
    msg = write_message_file(tmp, label, MESSAGES[label])
    (tmp / name).mkdir()
    server = StoringHoneypot(tmp / name, "sqlite")
    with server.running() as ready:
        if not ready:
            return None
        run_smtp_source(server.port, 5, WARM_UP, ["-d", "-F", str(msg.path)], 120)
        if wait_stored(server, WARM_UP, time.monotonic() + 120, [])[0] is None:
            say(f"  {name}: warm-up messages not stored")
            return None
        roles = processes(server)
        spied = [(role, pid, tmp / f"{name}-{role}-{pid}.raw")
                 for role, pids in roles.items() if role != "sandbox" for pid in pids]
        cpu_before = {role: own_cpu(pids) for role, pids in roles.items()}
        spies = [subprocess.Popen(
            ["py-spy", "record", "--nonblocking", "-r", str(opts.rate), "-f", "raw",
             "-o", str(output), "-p", str(pid)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for role, pid, output in spied]
        time.sleep(1.0)  # py-spy attached
        start = time.monotonic()
        options = ["-F", str(msg.path)] if per_connection else ["-d", "-F", str(msg.path)]
        _, error = run_smtp_source(server.port, SESSIONS, count, options, STORED_TIMEOUT)
        done, _, why = wait_stored(server, WARM_UP + count, start + STORED_TIMEOUT, [])
        cpu = {role: cpu_since(cpu_before[role], pids) / count * 1e6
               for role, pids in roles.items()}
        for spy in spies:
            spy.send_signal(signal.SIGINT)
        for spy in spies:
            spy.wait(timeout=60)
        if error or done is None:
            say(f"  {name}: {error or why}")
            return None
    samples = collections.Counter()
    for role, _, output in spied:
        if output.exists():
            for frames, n in read_raw(output):
                stage = stage_of(frames, role)
                if stage:
                    samples[(role, stage)] += n
    # Each process's samples share out the CPU /proc counted for it.
    figures = {}
    for role in roles:
        total = sum(n for (owner, _), n in samples.items() if owner == role)
        for (owner, stage), n in samples.items():
            if owner == role:
                figures[(role, stage)] = cpu[role] * n / total
    if cpu.get("sandbox"):
        figures[("sandbox", "attachment analysis")] = cpu["sandbox"]
    return {"label": f"{label}{' 1/conn' if per_connection else ''}", "count": count,
            "figures": figures, "cpu": cpu, "samples": samples, "wall": done - start}


def report(results):
    roles = [("smtp", "SMTP process"), ("disk", "disk worker"),
             ("parsers", "parse workers"), ("storing", "storing worker"),
             ("sandbox", "attachment sandbox")]
    headers = ["stage", *[r["label"] for r in results]]
    rows = []
    for role, title in roles:
        rows.append([f"{title} (CPU /proc counted)",
                     *[f"{r['cpu'].get(role, 0):.0f}" for r in results]])
        for stage, owner, _ in STAGES:
            if owner == role and role not in ("disk", "sandbox") and any(
                    r["figures"].get((role, stage)) for r in results):
                rows.append([f"   {stage}",
                             *[f"{r['figures'].get((role, stage), 0):.0f}" for r in results]])
    rows.append(["all processes", *[f"{sum(r['cpu'].values()):.0f}" for r in results]])
    say(table(headers, rows, left=1))
    say("  (samples per process: " + "; ".join(
        f"{r['label']}: " + ", ".join(
            f"{role} {sum(n for (o, _), n in r['samples'].items() if o == role)}"
            for role, _ in roles[:4]) for r in results) + ")")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a fifth of the messages")
    p.add_argument("--case", action="append", choices=list(CASES),
                   help="repeatable; all by default")
    p.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    p.add_argument("--keep-tmp", action="store_true",
                   help="keep the temp dir (py-spy's raw samples, the servers' logs)")
    opts = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="smtplatrine-stages-"))
    tmp.chmod(0o755)
    say(f"CPU microseconds per message by stage (py-spy at {opts.rate} Hz, smtp-source"
        f" {SESSIONS} sessions, honeypot storing into SQLite)")
    try:
        results = [r for name in (opts.case or list(CASES))
                   if (r := profile_case(tmp, name, opts)) is not None]
    finally:
        if opts.keep_tmp:
            say(f"temp dir kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if results:
        report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
