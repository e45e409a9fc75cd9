"""The ``smtplatrine`` command: tools for analysts beside ``twistd smtplatrine``.

    smtplatrine export [--config DIR] [--since TIME] [--until TIME]
                       [--sensor NAME] [--no-raw] [--output FILE]
    smtplatrine acl add [--config DIR] [--reason TEXT] ENTRY...
    smtplatrine acl remove [--config DIR] ENTRY...
    smtplatrine acl list [--config DIR]
    smtplatrine search [--config DIR] [--since TIME] [--until TIME]
                       [--sensor NAME] [--page N] [--json] QUERY...

An ACL ENTRY is an IPv4 or IPv6 address or network (192.0.2.7,
2001:db8::/32) or a country code (CN).  A running sensor applies changes
within [protection] acl_reload_interval, or at once on SIGHUP.
"""

import argparse
import json
import sys
import time
from contextlib import nullcontext

from smtplatrine import acl
from smtplatrine import config as config_module
from smtplatrine import export
from smtplatrine.events import printable
from smtplatrine.store import acl as acl_store
from smtplatrine.store import dialects, queries, schema, search


def _time(text):
    """ISO 8601 (a date, or a date and time; UTC unless it says otherwise)."""
    try:
        return search.moment(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time such as 2026-11-28 or"
            f" 2026-11-28T10:00:00Z") from None


def _entry(text):
    """An ACL entry: ("country", code) or ("ip", network text)."""
    code = acl.country(text)
    if code is not None:
        return "country", code
    try:
        return "ip", str(acl.network(text))
    except ValueError as e:
        raise argparse.ArgumentTypeError(
            f"{e}; give an address, a network such as 192.0.2.0/24 or"
            f" 2001:db8::/32, or a two-letter country code") from None


def _parser():
    parser = argparse.ArgumentParser(
        prog="smtplatrine", description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("export", help="stored messages as JSON lines")
    p.add_argument("--config", metavar="DIR", help="configuration directory (etc/)")
    p.add_argument("--since", type=_time, metavar="TIME", help="received at or after")
    p.add_argument("--until", type=_time, metavar="TIME", help="received before")
    p.add_argument("--sensor", metavar="NAME", help="only this sensor's messages")
    p.add_argument("--no-raw", dest="raw", action="store_false",
                   help="leave out the raw message (raw_base64)")
    p.add_argument("--output", metavar="FILE", help="write here instead of stdout")
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
    return parser


def _export(options, connection, dialect):
    records = export.messages(
        connection, dialect, queries.Scope(options.since, options.until, options.sensor),
        options.raw)
    with (open(options.output, "w", encoding="utf-8") if options.output
          else nullcontext(sys.stdout)) as stream:
        count = export.write(stream, records)
    print(f"smtplatrine: exported {count} message(s)", file=sys.stderr)


def _search(options, connection, dialect):
    try:
        query = search.parse(" ".join(options.query))
    except search.SearchError as e:
        sys.exit(f"smtplatrine: search: {e}")
    scope = queries.Scope(options.since, options.until, options.sensor)
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
    schema.upgrade(cursor, dialect, dialect.migrations(),
                   config.mysql.mysql_auto_create_db or dialect.name == "sqlite")
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


def main(argv=None):
    options = _parser().parse_args(argv)
    try:
        config = config_module.load(options.config)
    except config_module.ConfigError as e:
        sys.exit(f"smtplatrine: {e}")
    dialect = dialects.from_config(config)
    try:
        if options.command == "export":
            _export(options, dialect.connect(readonly=True), dialect)
        elif options.command == "search":
            _search(options, dialect.connect(readonly=True), dialect)
        else:
            _acl(options, dialect.connect(create=True), dialect, config)
    except dialects.Rejected as e:
        sys.exit(f"smtplatrine: {dialect.describe()}: {e}")
    except Exception as e:
        if dialect.classify(e) is None:
            raise
        sys.exit(f"smtplatrine: cannot use {dialect.describe()}: {e};"
                 f" check etc/database.ini (--config DIR)")
