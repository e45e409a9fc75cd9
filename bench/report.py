"""What the benchmark prints: its lines, aligned tables, figures that may be
missing, and the targets' verdicts."""

KB, MB = 1024, 1024 * 1024


def say(*parts):
    print(*parts, flush=True)


def table(headers, rows, left=1):
    """Aligned text table: the first `left` columns left-aligned, the others right-aligned."""
    cells = [headers] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def fmt(row):
        return "  ".join(c.ljust(w) if i < left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(row, widths)))
    lines = [fmt(headers), "  ".join("-" * w for w in widths)]
    return "\n".join(lines + [fmt(r) for r in cells[1:]])


def num(value, fmt):
    return "-" if value is None else format(value, fmt)


def ratio(a, b):
    return a / b if a is not None and b else None


def first(results, name, good):
    """The first result of server `name` that satisfies `good`, or None."""
    return next((r for r in results if r.server == name and good(r)), None)


def attr(obj, name, scale=1):
    value = getattr(obj, name) if obj is not None else None
    return None if value is None else value / scale


def verdicts(targets):
    """One line per (target, figure, ok): [PASS|MISS|n/a] target  figure;
    ok is None when there is no honeypot figure (not run, or it failed)."""
    out = []
    for target, figure, ok in targets:
        status = "n/a " if ok is None else ("PASS" if ok else "MISS")
        out.append(f"  [{status}] {target:<45} {figure}")
    return "\n".join(out)
