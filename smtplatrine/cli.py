"""The ``smtplatrine`` command: tools for analysts beside ``twistd smtplatrine``.

    smtplatrine export [--config DIR] [--since TIME] [--until TIME]
                       [--sensor NAME] [--format FORMAT] [--no-raw]
                       [--output FILE] [QUERY...]
    smtplatrine import [--config DIR] PATH...
    smtplatrine reparse [--config DIR] [--since TIME] [--defect NAME]
    smtplatrine acl add [--config DIR] [--reason TEXT] ENTRY...
    smtplatrine acl remove [--config DIR] ENTRY...
    smtplatrine acl list [--config DIR]
    smtplatrine similar [--config DIR] [--limit N] SHA256
    smtplatrine search [--config DIR] [--since TIME] [--until TIME]
                       [--sensor NAME] [--page N] [--json] QUERY...
    smtplatrine user add [--config DIR] NAME --role ROLE [--password-stdin]
    smtplatrine user passwd [--config DIR] NAME [--password-stdin]
    smtplatrine user remove|list [--config DIR] [NAME]
    smtplatrine token add [--config DIR] NAME --role ROLE
    smtplatrine token remove|list [--config DIR] [NAME]

import stores the messages of .eml files, directories of them, mbox files
and Maildirs as if the sensor had received them; reparse reads stored (and
quarantined) messages again with this version's parser.  Both show a
progress bar on a terminal and end with a summary.

export writes the stored messages matching QUERY (the search language;
none: all) as JSON lines (the default), CSV or mbox, or their indicators
as a STIX 2.1 bundle or a MISP event (README: Exports).

A ROLE is statistical, forensic or admin (README: Users and roles).

An ACL ENTRY is an IPv4 or IPv6 address or network (192.0.2.7,
2001:db8::/32) or a country code (CN).  A running sensor applies changes
within [protection] acl_reload_interval, or at once on SIGHUP.

``similar`` lists the stored files like the one of SHA256 (ssdeep score,
TLSH distance), with the names they were sent under.
"""

import argparse
import getpass
import json
import sys
import time
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path

from smtplatrine import acl
from smtplatrine import config as config_module
from smtplatrine import export, mailfiles
from smtplatrine.layout import DataDir
from smtplatrine.enrich import indicators
from smtplatrine.events import printable
from smtplatrine.parse import DEFECTS
from smtplatrine.store import acl as acl_store
from smtplatrine.store import dialects, forensics, queries, schema, search, users
from smtplatrine.store.records import utc


def _time(text):
    """ISO 8601 (a date, or a date and time; UTC unless it says otherwise),
    as epoch seconds."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time such as 2026-11-28 or"
            f" 2026-11-28T10:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _defect(text):
    if text not in DEFECTS:
        raise argparse.ArgumentTypeError(
            f"{text!r} is no defect; the defects are {', '.join(sorted(DEFECTS))}")
    return text


def _entry(text):
    """An ACL entry: ("country", code) or ("ip", network text)."""
    try:
        return acl.entry(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _parser():
    parser = argparse.ArgumentParser(
        prog="smtplatrine", description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("export", help="stored messages (JSON lines, CSV, mbox) or"
                                           " their indicators (STIX, MISP)")
    p.add_argument("--config", metavar="DIR", help="configuration directory (etc/)")
    p.add_argument("--since", type=_time, metavar="TIME", help="received at or after")
    p.add_argument("--until", type=_time, metavar="TIME", help="received before")
    p.add_argument("--sensor", metavar="NAME", help="only this sensor's messages")
    p.add_argument("--format", choices=export.FORMATS, default="jsonl",
                   help="jsonl (default), csv, mbox, stix (STIX 2.1 bundle of the"
                        " indicators) or misp (MISP event of the indicators)")
    p.add_argument("--no-raw", dest="raw", action="store_false",
                   help="jsonl: leave out the raw message (raw_base64)")
    p.add_argument("--output", metavar="FILE", help="write here instead of stdout")
    p.add_argument("query", nargs="*", metavar="QUERY",
                   help="only the messages this search finds, e.g. from:paypal.com")
    p = commands.add_parser("search", help="stored messages matching a query (README:"
                                           " Search)")
    p.add_argument("--config", metavar="DIR", help="configuration directory (etc/)")
    p.add_argument("--since", type=_time, metavar="TIME", help="received at or after")
    p.add_argument("--until", type=_time, metavar="TIME", help="received before")
    p.add_argument("--sensor", metavar="NAME", help="only this sensor's messages")
    p.add_argument("--page", type=int, default=1, metavar="N", help="page N of 100 (1)")
    p.add_argument("--json", action="store_true", help="JSON lines instead of columns")
    p.add_argument("query", nargs="+", metavar="QUERY",
                   help="e.g. invoice from:paypal.com -has:attachment")
    p = commands.add_parser(
        "import", help="store messages from .eml files, directories, mbox files, Maildirs")
    p.add_argument("--config", metavar="DIR", help="configuration directory (etc/)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="a file or directory")
    p = commands.add_parser(
        "reparse", help="read stored and quarantined messages again, with this parser")
    p.add_argument("--config", metavar="DIR", help="configuration directory (etc/)")
    p.add_argument("--since", type=_time, metavar="TIME", help="received at or after")
    p.add_argument("--defect", type=_defect, metavar="NAME",
                   help="only messages with this defect (not the quarantined)")
    p = commands.add_parser("acl", help="the block list: add, remove, list")
    actions = p.add_subparsers(dest="action", required=True)
    for action, text in [("add", "block addresses, networks or countries"),
                         ("remove", "unblock them"), ("list", "show the block list")]:
        a = actions.add_parser(action, help=text)
        a.add_argument("--config", metavar="DIR", help="configuration directory (etc/)")
        if action != "list":
            a.add_argument("entries", nargs="+", type=_entry, metavar="ENTRY",
                           help="192.0.2.7, 192.0.2.0/24, 2001:db8::/32 or CN")
        if action == "add":
            a.add_argument("--reason", help="kept with the entries")
    p = commands.add_parser("similar", help="files like an attachment (fuzzy hashes)")
    p.add_argument("--config", metavar="DIR", help="configuration directory (etc/)")
    p.add_argument("--limit", type=int, default=50, metavar="N", help="at most N (50)")
    p.add_argument("sha256", type=_sha256, metavar="SHA256", help="an attachment's SHA-256")
    for noun, text in [("user", "the dashboard's users: add, passwd, remove, list"),
                       ("token", "API tokens for scripts: add, remove, list")]:
        p = commands.add_parser(noun, help=text)
        actions = p.add_subparsers(dest="action", required=True)
        for action in (["add", "passwd", "remove", "list"] if noun == "user"
                       else ["add", "remove", "list"]):
            a = actions.add_parser(action)
            a.add_argument("--config", metavar="DIR", help="configuration directory (etc/)")
            if action != "list":
                a.add_argument("name", type=_name, metavar="NAME")
            if action == "add":
                a.add_argument("--role", required=True, choices=users.ROLES)
            if noun == "user" and action in ("add", "passwd"):
                a.add_argument("--password-stdin", action="store_true",
                               help="read the password from the first line of standard"
                                    " input (default: ask on the terminal)")
    return parser


def _sha256(text):
    value = indicators.sha256(text.strip())
    if value is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a SHA-256 (64 hex digits)")
    return value


def _similar(options, connection, dialect):
    cursor = connection.cursor()
    found = forensics.similar(cursor, dialect, options.sha256, options.limit)
    names = forensics.file_names(cursor, dialect, [f["sha256"] for f in found])
    print("sha256\tssdeep_score\ttlsh_distance\tmime\tsize\tnames")
    for f in found:
        print("\t".join(printable(str(v if v is not None else "-")) for v in (
            f["sha256"], f["ssdeep_score"], f["tlsh_distance"], f["mime"], f["size"],
            " | ".join(names.get(f["sha256"], [])))))
    print(f"smtplatrine: {len(found)} similar file(s)", file=sys.stderr)


def _name(text):
    try:
        return users.check_name(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _password(options):
    """The new password, from standard input or asked twice on the terminal."""
    if options.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"New password for {options.name}: ")
        if getpass.getpass("Again: ") != password:
            sys.exit("smtplatrine: the passwords differ; nothing changed")
    try:
        return users.check_password(password)
    except ValueError as e:
        sys.exit(f"smtplatrine: {e}; nothing changed")


def _users(options, connection, dialect, config):
    """smtplatrine user|token ACTION: one transaction, one line said."""
    cursor = connection.cursor()
    _upgrade(cursor, dialect, config)
    now, name = time.time(), getattr(options, "name", None)
    if options.action == "list":
        rows = (users.listing if options.command == "user" else users.tokens)(cursor, dialect)
        for row in rows:
            print("\t".join(str(value) for value in row.values()))
        connection.commit()
        return
    if options.command == "user" and options.action in ("add", "passwd"):
        # Hashed before the transaction starts: it takes a while, on purpose.
        hashed = users.hash_password(_password(options))
    if (options.command, options.action) == ("user", "add"):
        done = users.add(cursor, dialect, name, options.role, hashed, now)
        said = f"added user {name} ({options.role})" if done else f"user {name} exists"
    elif options.action == "passwd":
        done = users.change(cursor, dialect, name, now, password_hash=hashed)
        said = f"changed the password of {name}" if done else f"no user {name}"
    elif options.command == "user":
        done = users.remove(cursor, dialect, name)
        said = f"removed user {name}" if done else f"no user {name}"
    elif options.action == "add":
        token = users.new_token()
        done = users.add_token(cursor, dialect, name, options.role, token, now)
        said = f"token {name} exists" if not done else (
            f"added token {name} ({options.role}); send it as 'Authorization: Bearer"
            f" TOKEN'; it is shown only now")
        if done:
            print(token)
    else:
        done = users.remove_token(cursor, dialect, name)
        said = f"removed token {name}" if done else f"no token {name}"
    connection.commit()
    if not done:
        sys.exit(f"smtplatrine: {said}; nothing changed")
    print(f"smtplatrine: {said}", file=sys.stderr)


def _upgrade(cursor, dialect, config):
    """Create or upgrade the schema where the configuration allows, so that
    the tools work before the first start too."""
    schema.upgrade(cursor, dialect, dialect.migrations(),
                   config.mysql.mysql_auto_create_db or dialect.name == "sqlite")


def _export(options, connection, dialect, config):
    text = " ".join(options.query)
    try:
        query = search.parse(text) if text else None
    except search.SearchError as e:
        sys.exit(f"smtplatrine: export: {e}")
    since, until = (None if t is None else utc(t) for t in (options.since, options.until))
    fmt = export.make(options.format, config.server.sensor_name,
                      f"smtplatrine: {text or 'everything'}")
    with (open(options.output, "wb") if options.output
          else nullcontext(sys.stdout.buffer)) as stream:
        count = export.write(connection, dialect, fmt,
                             queries.Scope(since, until, options.sensor), stream, query,
                             options.raw and options.format == "jsonl",
                             DataDir.of(config).raw)
    noun = "message(s)" if fmt.source == "messages" else "indicator(s)"
    print(f"smtplatrine: exported {count} {noun}", file=sys.stderr)


def _search(options, connection, dialect):
    try:
        query = search.parse(" ".join(options.query))
    except search.SearchError as e:
        sys.exit(f"smtplatrine: search: {e}")
    since, until = (None if t is None else utc(t) for t in (options.since, options.until))
    scope = queries.Scope(since, until, options.sensor)
    page = queries.messages(connection.cursor(), dialect, scope, query, options.page, 100)
    for row in page.rows:
        if options.json:
            print(json.dumps(row, ensure_ascii=False, sort_keys=True))
        else:
            print("\t".join(printable(str(row[name] if row[name] is not None else "-"))
                            for name in ("received", "message_id", "sensor", "client_ip",
                                         "mail_from", "header_subject")))
    total = f"more than {queries.COUNT_LIMIT}" if page.capped else str(page.total)
    print(f"smtplatrine: {total} message(s) match; page {page.number} shows"
          f" {len(page.rows)}{' (--page for more)' if page.more else ''}", file=sys.stderr)


def _acl(options, connection, dialect, config):
    cursor = connection.cursor()
    _upgrade(cursor, dialect, config)
    if options.action == "list":
        for row in acl_store.entries(cursor, dialect):
            print("\t".join(printable(str(row[name] if row[name] is not None else "-"))
                            for name in ("kind", "entry", "added", "last_seen", "tries",
                                         "expires", "reason", "sensor")))
        connection.commit()
        return
    networks = [e for kind, e in options.entries if kind == "ip"]
    countries = [e for kind, e in options.entries if kind == "country"]
    if options.action == "add":
        done = acl_store.add(cursor, dialect, networks, countries, time.time(),
                             options.reason)
    else:
        done = acl_store.remove(cursor, dialect, networks, countries)
    connection.commit()
    verb = "added" if options.action == "add" else "removed"
    print(f"smtplatrine: {verb} {len(done)} entr{'y' if len(done) == 1 else 'ies'}"
          f"{': ' + ' '.join(done) if done else ''}; a running sensor applies"
          f" this at its next reload ([protection] acl_reload_interval) or at once"
          f" on SIGHUP", file=sys.stderr)


class Progress:
    """A progress bar on *stream*, if it is a terminal, redrawn at most
    five times a second: the share done, messages so far, and the rate."""

    def __init__(self, stream):
        self._stream = stream
        self._shown = stream.isatty()
        self._start = self._last = time.monotonic()
        self._drawn = False

    def __call__(self, done, total, count):
        now = time.monotonic()
        if not self._shown or now - self._last < 0.2:
            return
        self._last = now
        share = min(done / total, 1.0) if total else 1.0
        bar = "#" * int(share * 30)
        rate = count / max(now - self._start, 1e-9)
        self._stream.write(f"\r[{bar:<30}] {share:4.0%}  {count:,} messages"
                           f"  {rate:,.0f}/s ")
        self._stream.flush()
        self._drawn = True

    def close(self):
        if self._drawn:
            self._stream.write("\r" + " " * 70 + "\r")
            self._stream.flush()


def _log_warnings():
    """Warnings and errors of the storing side (a message stored unparsed,
    an enricher that cannot start) to stderr, as lines."""
    from twisted.logger import (FilteringLogObserver, LogLevel,
                                LogLevelFilterPredicate, globalLogBeginner,
                                textFileLogObserver)
    globalLogBeginner.beginLoggingTo([FilteringLogObserver(
        textFileLogObserver(sys.stderr), [LogLevelFilterPredicate(LogLevel.warn)])],
        redirectStandardIO=False)


def _report(summary, seconds, what):
    """The summary of an import or reparse, on stderr; the exit status."""
    for where, reason in summary.unreadable:
        print(f"smtplatrine: cannot read {printable(str(where))}: {printable(reason)}",
              file=sys.stderr)
    for where, reason in summary.refused:
        print(f"smtplatrine: the database refused {printable(str(where))}:"
              f" {printable(reason)}", file=sys.stderr)
    rate = summary.read / seconds if seconds else 0
    if what == "import":
        line = (f"imported {summary.read:,} message(s) from {summary.files:,} file(s)"
                f" in {seconds:.1f} s ({rate:,.0f}/s): {summary.stored:,} new,"
                f" {summary.known:,} already stored")
        if summary.skipped:
            line += f", {summary.skipped:,} file(s) skipped as no mail"
    else:
        line = (f"read {summary.read:,} message(s) again in {seconds:.1f} s"
                f" ({rate:,.0f}/s): {summary.changed:,} read differently now,"
                f" {summary.stored:,} quarantined stored")
    line += (f", {summary.unparsed:,} stored unparsed (parse_failed),"
             f" {len(summary.refused):,} refused, {len(summary.unreadable):,} unreadable")
    print(f"smtplatrine: {line}", file=sys.stderr)
    return 1 if summary.refused or summary.unreadable else 0


def _store_run(options, config, dialect):
    """Run import or reparse on a reactor; the exit status."""
    from twisted.internet import defer, task

    from smtplatrine import batch

    if options.command == "import":
        try:
            found = mailfiles.find(options.paths)
        except OSError as e:
            sys.exit(f"smtplatrine: {e.filename}: {e.strerror}")
    Path(config.server.data_dir).mkdir(parents=True, exist_ok=True)
    _log_warnings()
    progress = Progress(sys.stderr)
    started = time.monotonic()
    outcome = {}

    async def run(reactor):
        try:
            if options.command == "import":
                outcome["summary"] = await batch.import_files(config, reactor, found, progress)
            else:
                outcome["summary"] = await batch.reparse(config, reactor, options.since,
                                                         options.defect, progress)
        except (dialects.Unavailable, dialects.Rejected) as e:
            outcome["error"] = (f"cannot use {dialect.describe()}: {e}; check"
                                f" etc/database.ini (--config DIR)")
        except SystemExit as e:
            outcome["error"] = str(e.code).removeprefix("smtplatrine: ")

    try:
        task.react(lambda reactor: defer.Deferred.fromCoroutine(run(reactor)))
    except SystemExit as e:
        if e.code:
            raise
    finally:
        progress.close()
    if "error" in outcome:
        sys.exit(f"smtplatrine: {outcome['error']}")
    return _report(outcome["summary"], time.monotonic() - started, options.command)


def main(argv=None):
    options = _parser().parse_args(argv)
    try:
        config = config_module.load(options.config)
    except config_module.ConfigError as e:
        sys.exit(f"smtplatrine: {e}")
    dialect = dialects.from_config(config)
    try:
        if options.command == "export":
            _export(options, dialect.connect(readonly=True), dialect, config)
        elif options.command == "similar":
            _similar(options, dialect.connect(readonly=True), dialect)
        elif options.command == "search":
            _search(options, dialect.connect(readonly=True), dialect)
        elif options.command in ("user", "token"):
            _users(options, dialect.connect(create=True), dialect, config)
        elif options.command in ("import", "reparse"):
            sys.exit(_store_run(options, config, dialect))
        else:
            _acl(options, dialect.connect(create=True), dialect, config)
    except dialects.Rejected as e:
        sys.exit(f"smtplatrine: {dialect.describe()}: {e}")
    except Exception as e:
        if dialect.classify(e) is None:
            raise
        sys.exit(f"smtplatrine: cannot use {dialect.describe()}: {e};"
                 f" check etc/database.ini (--config DIR)")
