#!/usr/bin/env python3
"""smtplatrine benchmark: the honeypot beside aiosmtpd and smtp-sink, in one
run; the manual is bench/README.md.

    python3 bench/run.py [--quick] [--only SECTION]... [--skip-honeypot] [--keep-tmp]
"""

import argparse
import contextlib
import os
import platform
import resource
import shutil
import signal
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import flood, idle, large, load, stored, throughput  # noqa: E402
from bench.clients import SMTP_SOURCE, SOURCE_OPTS  # noqa: E402
from bench.report import say, verdicts  # noqa: E402
from bench.servers import SMTP_SINK, Aiosmtpd, Honeypot, SmtpSink, StoringHoneypot  # noqa: E402

SECTIONS = ("throughput", "idle", "large", "stored", "load", "flood")
SOURCE_TIMEOUT = 180    # seconds per smtp-source run (quick: 60)


def parse_args():
    p = argparse.ArgumentParser(description="smtplatrine benchmark (prints only, never asserts)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1/10 of the messages and of the connections held")
    p.add_argument("--skip-honeypot", action="store_true", help="run the baselines only")
    p.add_argument("--keep-tmp", action="store_true", help="do not delete the temp dir")
    p.add_argument("--parse-workers", action="append", type=int, metavar="N",
                   help="stored section: the SQLite honeypot once with each N as"
                   " [store] parse_workers (repeatable) instead of once with auto")
    p.add_argument("--only", action="append", choices=SECTIONS, metavar="SECTION",
                   help=f"run only this section; repeatable; one of: {', '.join(SECTIONS)}")
    opts = p.parse_args()
    opts.sections = opts.only or SECTIONS
    opts.divisor = 10 if opts.quick else 1
    opts.idle_conns = 1000 if opts.quick else 10000
    opts.source_timeout = 60 if opts.quick else SOURCE_TIMEOUT
    opts.idle_deadline = 30 if opts.quick else idle.IDLE_DEADLINE
    opts.stored_timeout = 120 if opts.quick else stored.STORED_TIMEOUT
    opts.load_idle = load.LOAD_IDLE // opts.divisor
    opts.load_slow = load.LOAD_SLOW // opts.divisor
    opts.load_hold = 5.0 if opts.quick else load.LOAD_HOLD
    return opts


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


def check_tools():
    missing = [t for t in (SMTP_SOURCE, SMTP_SINK) if not os.access(t, os.X_OK)]
    if missing:
        sys.exit(f"missing {', '.join(missing)} (install the Debian package 'postfix')")
    try:
        import aiosmtpd  # noqa: F401
    except ImportError:
        sys.exit("missing aiosmtpd (python3 -m pip install aiosmtpd)")


def on_sigterm(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def print_header(opts, nofile):
    say("smtplatrine benchmark" + (" (--quick)" if opts.quick else ""))
    say(f"  host: {platform.node()}  {os.cpu_count()} CPUs  Python {platform.python_version()}  "
        f"RLIMIT_NOFILE {nofile}  (client and servers share the CPUs)")
    say(f"  load generator: smtp-source -d {' '.join(SOURCE_OPTS)} -s SESSIONS -m COUNT -l SIZE")
    say("    -d = keep the session open: COUNT messages spread over SESSIONS sessions, HELO, 1 rcpt")
    say("  MB = 2^20 bytes of payload (smtp-source -l); headers (~200 B/msg) not counted")


def summary(sections, results):
    """One line per honeypot target of the sections run."""
    modules = {"throughput": throughput, "idle": idle, "large": large, "stored": stored,
               "load": load, "flood": flood}
    return verdicts([t for name in SECTIONS if name in sections
                     for t in modules[name].targets(results[name])])


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
    storing = [StoringHoneypot(tmp, config, workers)
               for config in stored.STORED_CONFIGS
               for workers in (opts.parse_workers if config == "sqlite" and opts.parse_workers
                               else [None])]
    aiosmtpd, sink = Aiosmtpd(tmp), SmtpSink(tmp)
    try:
        if opts.skip_honeypot:
            say("  honeypot: SKIPPED (--skip-honeypot)")
        hp = [] if opts.skip_honeypot else [honeypot]
        sections = opts.sections
        results = {name: [] for name in SECTIONS}
        if "throughput" in sections:
            results["throughput"] = throughput.section(hp + [aiosmtpd, sink], opts)
        if "idle" in sections:
            results["idle"] = idle.section(hp + [aiosmtpd], opts.idle_conns, opts)
        if "large" in sections:
            results["large"] = large.section(hp + [aiosmtpd])
        if "stored" in sections:
            results["stored"] = stored.section([] if opts.skip_honeypot else storing,
                                               [aiosmtpd, sink], tmp, opts)
        if "load" in sections:
            results["load"] = load.section(hp + [aiosmtpd], opts)
        if "flood" in sections and not opts.skip_honeypot:
            results["flood"] = flood.section(tmp, opts)
        say("\n== Summary: honeypot targets (informational, exit code is 0 regardless) ==")
        say(summary(sections, results))
    except KeyboardInterrupt:
        say("\ninterrupted - stopping servers")
        return 130
    finally:
        for server in (honeypot, *storing, aiosmtpd, sink):
            server.stop()
        if opts.keep_tmp:
            say(f"\ntemp dir kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
