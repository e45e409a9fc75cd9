"""Section 1, throughput: smtp-source at 1, 20 and 100 sessions with 1 KB
and 1 MB messages, many per connection, against every server."""

from bench.clients import Run, describe_run, measure_long_enough, run_smtp_source
from bench.report import KB, MB, attr, first, num, ratio, say, table
from bench.servers import guarded

# (label, payload bytes, message count in full mode)
SIZES = [("1 KB", 1 * KB, 2000), ("1 MB", 1 * MB, 100)]
SESSIONS = [1, 20, 100]
TARGET_1K_VS_AIO = 1.5
TARGET_1M_VS_SINK = 0.6


def matrix(server, opts):
    runs = []
    # warm-up, untimed
    run_smtp_source(server.port, 5, 50, ["-d", "-l", str(KB)], opts.source_timeout)
    for size_label, size, base in SIZES:
        for sessions in SESSIONS:
            count = max(sessions, base // opts.divisor)
            run = measure_long_enough(
                server, Run(server.name, size_label, size, sessions, count, ("-d", "-l", str(size))),
                opts)
            say("  " + describe_run(run))
            if not run.ok and not any(not r.ok for r in runs):
                server.show_log_tail()  # once per server, at its first failure
            runs.append(run)
    return runs


def section(servers, opts):
    say("\n== 1. Throughput (smtp-source) ==")
    runs = []
    for server in servers:
        with server.running() as ready:
            if ready:
                runs += guarded(server, matrix, server, opts) or []
    say("")
    say(throughput_table(runs, [s.name for s in servers]) if runs
        else "  (no throughput results)")
    hp_runs = [r for r in runs if r.server == "honeypot"]
    if hp_runs:
        say(f"\n  honeypot received check: {sum(r.received or 0 for r in hp_runs)} "
            f"messages stored or spooled for {sum(r.count for r in hp_runs)} sent "
            "in the throughput runs (see 'received' per run above)")
    return runs


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


def target(runs, size, label, field, unit, baseline, goal):
    """Honeypot against *baseline* at *size* x 20 sessions: (target, figure, ok)."""
    pick = lambda name: attr(first(runs, name, lambda r: r.size == size and r.sessions == 20), field)
    hp, base = pick("honeypot"), pick(baseline)
    r = ratio(hp, base)
    figure = f"honeypot {num(hp, '.2f')} {unit} vs {baseline} {num(base, '.2f')} {unit} = {num(r, '.2f')}x"
    target = f"{label} x 20 sessions >= {goal} x {baseline} {unit}"
    return target, figure, (None if r is None else r >= goal)


def targets(runs):
    return [target(runs, KB, "1 KB", "msgs_per_s", "msg/s", "aiosmtpd", TARGET_1K_VS_AIO),
            target(runs, MB, "1 MB", "mb_per_s", "MB/s", "smtp-sink", TARGET_1M_VS_SINK)]
