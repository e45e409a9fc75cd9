"""Section 4, stored messages end to end: real multipart messages through
smtp-source until every one is in the database, with the spool backlog and
the CPU each server spends per message, beside the discarding baselines."""

import random
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from bench.clients import (HELO_NAME, MAIL_FROM, RCPT_TO, Background, Run, describe_run,
                           measure_long_enough, run_smtp_source)
from bench.report import KB, attr, first, num, ratio, say, table
from bench.servers import StoringHoneypot, guarded, mariadb_unavailable, usable

# The messages: label and attachment bytes.
MESSAGES = {"1 KB": 300, "1 MB": 768 * KB}
# The cases: message, count in full mode, one message per connection.
CASES = [("1 KB", 3000, True), ("1 KB", 3000, False), ("1 MB", 200, False)]
STORED_SESSIONS = 20
STORED_CONFIGS = ("spool-only", "sqlite", "mariadb")
STORED_WARM_UP = 10     # untimed messages (5 sessions) sent to each server first
STORED_TIMEOUT = 300    # seconds from smtp-source's start until all is stored (quick: 120)
WARM_UP_TIMEOUT = 60    # seconds for the warm-up messages to be stored
SAMPLE_EVERY = 0.25     # seconds between backlog samples while smtp-source runs
DRAIN_POLL = 0.1        # seconds between drain checks once it has finished
DRAIN_GRACE = 5.0       # spool empty but rows missing this long: give up (quarantined?)
TARGET_STORED_VS_AIO = 1.5


@dataclass
class MessageFile:
    """A pre-formatted message for smtp-source -F."""
    label: str
    path: Path
    size: int  # bytes sent: the file with every LF as CRLF


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
    """A Run against a storing honeypot, timed (and its CPU counted) on
    until everything is stored; `received` is the rows it added to
    honeypot_emails."""
    stored_wall: float = None   # smtp-source start -> spool drained and every row there
    max_backlog: int = None     # most finished messages in the spool at one sample
    end_backlog: int = None     # ... when smtp-source finished
    incomplete: str = ""        # why stored_wall is missing

    @property
    def stored_per_s(self):
        return self.received / self.stored_wall if self.ok and self.stored_wall else None


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
        elif not server.alive():
            why = "server died"
        elif empty_since and now - empty_since > DRAIN_GRACE:
            why = "spool empty but rows missing (see spool/quarantine and the log)"
        else:
            time.sleep(DRAIN_POLL)
            continue
        return (None, len(server.stored_ids()),
                f"{why}; {backlog} finished message(s) left in the spool")


def measure_stored(server, run, opts):
    """Do `run` against a storing honeypot, timed until it is all stored."""
    base = len(server.stored_ids())
    cpu = server.cpu()
    start = time.monotonic()
    with BacklogSampler(server) as sampler:
        run.wall, run.error = run_smtp_source(server.port, run.sessions, run.count,
                                              run.options, opts.source_timeout)
    run.end_backlog = server.backlog()
    samples = sampler.samples + [run.end_backlog]
    if run.ok:
        done, rows, run.incomplete = wait_stored(server, base + run.count,
                                                 start + opts.stored_timeout, samples)
        if done is not None:
            run.stored_wall = done - start
            run.cpu = server.cpu() - cpu
        run.received = rows - base
    run.max_backlog = max(samples)
    return run


def stored_run(server, msg, count, one_per_connection, opts):
    """A few untimed warm-up messages (stored first, for a storing honeypot),
    then the timed run of `count` messages."""
    options = ("-F", str(msg.path)) if one_per_connection else ("-d", "-F", str(msg.path))
    label = f"{msg.label} 1/conn" if one_per_connection else msg.label
    run_smtp_source(server.port, 5, STORED_WARM_UP, ["-d", "-F", str(msg.path)],
                    opts.source_timeout)
    if not server.stores:
        return measure_long_enough(
            server, Run(server.name, label, msg.size, STORED_SESSIONS, count, options), opts)
    run = StoredRun(server.name, label, msg.size, STORED_SESSIONS, count, options)
    done, _, why = wait_stored(server, STORED_WARM_UP, time.monotonic() + WARM_UP_TIMEOUT, [])
    if done is None:
        run.error = f"warm-up messages not stored: {why}"
        return run
    return measure_stored(server, run, opts)


def describe(run):
    line = describe_run(run)
    if run.cpu_per_msg is not None:
        line += f"  CPU {run.cpu_per_msg:.0f} us/msg"
    if not isinstance(run, StoredRun) or not run.ok:
        return line
    stored = (f"{run.received} rows stored {run.stored_wall:.2f} s after the start = "
              f"{run.stored_per_s:.1f} stored msg/s" if run.stored_per_s is not None
              else f"INCOMPLETE: {run.received} rows ({run.incomplete})")
    return (f"{line}\n{'':<12}{stored}; spool backlog max {run.max_backlog}, "
            f"{run.end_backlog} when smtp-source finished")


def stored_table(runs):
    """One row per run of the stored section, in the order they ran."""
    aio = {r.size_label: r for r in runs if r.server == "aiosmtpd"}
    headers = ["size", "server", "msg/s", "MB/s", "stored msg/s", "backlog max",
               "backlog at end", "CPU us/msg", "msg/s / aio", "stored / aio", "CPU / aio"]
    rows = []
    for r in runs:
        stored = r.stored_per_s if isinstance(r, StoredRun) else None
        if not isinstance(r, StoredRun):
            extra = ["-", "-", "-"]
        elif r.ok and stored is None:
            extra = ["incomplete", num(r.max_backlog, "d"), num(r.end_backlog, "d")]
        else:
            extra = [num(stored, ".1f"), num(r.max_backlog, "d"), num(r.end_backlog, "d")]
        base = aio.get(r.size_label)
        rows.append([r.size_label, r.server, num(r.msgs_per_s, ".1f"), num(r.mb_per_s, ".2f"),
                     *extra, num(r.cpu_per_msg, ".0f"),
                     num(ratio(r.msgs_per_s, attr(base, "msgs_per_s")), ".2f"),
                     num(ratio(stored, attr(base, "msgs_per_s")), ".2f"),
                     num(ratio(r.cpu_per_msg, attr(base, "cpu_per_msg")), ".2f")])
    return table(headers, rows, left=2)


def sqlite_names(runs):
    """The names of the SQLite honeypots among *runs* (hp-sqlite, or one
    per --parse-workers: hp-sqlite-1w, ...)."""
    return [n for n in dict.fromkeys(r.server for r in runs) if n.startswith("hp-sqlite")]


def cpu_ratios(runs):
    """Each SQLite honeypot's CPU per stored message against aiosmtpd's per
    message, per case."""
    lines = []
    for hp in sqlite_names(runs):
        parts = []
        for label in dict.fromkeys(r.size_label for r in runs):
            pick = lambda name: attr(first(runs, name, lambda r: r.size_label == label),
                                     "cpu_per_msg")
            parts.append(f"{label} {num(ratio(pick(hp), pick('aiosmtpd')), '.2f')}x")
        lines.append(f"  CPU per stored message, {hp} / aiosmtpd: " + ", ".join(parts))
    return "\n".join(lines)


def section(honeypots, baselines, tmp, opts):
    say(f"\n== 4. Stored messages, end to end (smtp-source -F FILE, {STORED_SESSIONS} sessions) ==")
    messages = {label: write_message_file(tmp, label, n) for label, n in MESSAGES.items()}
    for msg in messages.values():
        say(f"  {msg.label}: {msg.path.name}, {msg.size} bytes sent per message "
            "(multipart/mixed: text part + base64 attachment)")
    say("  1/conn: a new connection per message (smtp-source without -d);"
        " the others many per connection (-d)")
    say("  CPU: user + system of every process of the server, from smtp-source's start"
        " until the last message is stored (discarding servers: acknowledged)")
    if any(h.config == "mariadb" for h in honeypots):
        why = mariadb_unavailable()
        if why:
            say(f"  hp-mariadb: SKIPPED ({why})")
            honeypots = [h for h in honeypots if h.config != "mariadb"]
    runs = []
    for label, base, one_per_connection in CASES:
        count = max(STORED_SESSIONS, base // opts.divisor)
        for server in usable(honeypots + baselines):
            with server.running() as ready:
                run = (guarded(server, stored_run, server, messages[label], count,
                               one_per_connection, opts) if ready else None)
                if run:
                    say("  " + describe(run))
                    if not run.ok or getattr(run, "incomplete", ""):
                        server.show_log_tail()
                    if isinstance(server, StoringHoneypot) and server.stores:
                        errors, exceptions = server.log_errors()
                        if errors:
                            say(f"{'':<12}{len(errors)} error line(s) in its log, the first: "
                                f"{errors[0]}")
                        if exceptions:
                            say(f"{'':<12}{len(exceptions)} traceback(s), the first ends in: "
                                f"{exceptions[0]}")
                    runs.append(run)
    say("")
    if runs:
        say(stored_table(runs))
        say(cpu_ratios(runs))
    else:
        say("  (no stored-section results)")
    return runs


def targets(stored):
    size_label = "1 KB"
    hp_name = (sqlite_names(stored) or ["hp-sqlite"])[-1]
    pick = lambda name, field: attr(first(stored, name, lambda r: r.size_label == size_label), field)
    hp, aio = pick(hp_name, "stored_per_s"), pick("aiosmtpd", "msgs_per_s")
    r = ratio(hp, aio)
    figure = (f"{hp_name} {num(hp, '.1f')} stored msg/s (spool backlog max "
              f"{num(pick(hp_name, 'max_backlog'), '.0f')}) vs aiosmtpd {num(aio, '.1f')} msg/s "
              f"= {num(r, '.2f')}x")
    target = f"SQLite stored {size_label} >= {TARGET_STORED_VS_AIO} x aiosmtpd"
    return [(target, figure, None if r is None else r >= TARGET_STORED_VS_AIO)]
