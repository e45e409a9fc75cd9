"""The ``smtplatrine`` command: tools for analysts beside ``twistd smtplatrine``.

    smtplatrine export [--config DIR] [--since TIME] [--until TIME]
                       [--sensor NAME] [--no-raw] [--output FILE]
"""

import argparse
import sys
from contextlib import nullcontext
from datetime import datetime, timezone

from smtplatrine import config as config_module
from smtplatrine import export
from smtplatrine.store import dialects
from smtplatrine.store.records import utc


def _time(text):
    """ISO 8601 (a date, or a date and time; UTC unless it says otherwise)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time such as 2026-11-28 or"
            f" 2026-11-28T10:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return utc(moment.timestamp())


def _parser():
    parser = argparse.ArgumentParser(prog="smtplatrine", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("export", help="stored messages as JSON lines")
    p.add_argument("--config", metavar="DIR", help="configuration directory (etc/)")
    p.add_argument("--since", type=_time, metavar="TIME", help="received at or after")
    p.add_argument("--until", type=_time, metavar="TIME", help="received before")
    p.add_argument("--sensor", metavar="NAME", help="only this sensor's messages")
    p.add_argument("--no-raw", dest="raw", action="store_false",
                   help="leave out the raw message (raw_base64)")
    p.add_argument("--output", metavar="FILE", help="write here instead of stdout")
    return parser


def main(argv=None):
    options = _parser().parse_args(argv)
    try:
        config = config_module.load(options.config)
    except config_module.ConfigError as e:
        sys.exit(f"smtplatrine: {e}")
    dialect = dialects.from_config(config)
    try:
        connection = dialect.connect()
        records = export.messages(connection, dialect, options.since, options.until,
                                  options.sensor, options.raw)
        with (open(options.output, "w", encoding="utf-8") if options.output
              else nullcontext(sys.stdout)) as stream:
            count = export.write(stream, records)
    except Exception as e:
        if dialect.classify(e) is None:
            raise
        sys.exit(f"smtplatrine: cannot read {dialect.describe()}: {e};"
                 f" check etc/database.ini (--config DIR)")
    print(f"smtplatrine: exported {count} message(s)", file=sys.stderr)
