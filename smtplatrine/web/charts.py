"""Charts drawn on the server as inline SVG (no script, nothing fetched),
with ``twisted.web.template`` tags so that every label is escaped.  Each
stays readable from no data point to a million: bars show the top rows
they are given (at most MAX_BARS), the timeline sums its points into at
most MAX_COLUMNS columns."""

from datetime import datetime, timedelta, timezone

from twisted.web.template import Tag

MAX_BARS = 15
MAX_COLUMNS = 240
# One colour per series of the timeline (presentation attributes: the
# page's policy allows no inline style).
COLOURS = ("#2f6fb3", "#c2571a", "#6b8e23", "#8e44ad")
_SVG = "http://www.w3.org/2000/svg"


def _svg(width, height, label, *children):
    return Tag("svg")(Tag("title")(label), *children, xmlns=_SVG, role="img",
                      viewBox=f"0 0 {width} {height}", width=str(width),
                      height=str(height), class_="chart", **{"aria-label": label})


def _text(x, y, content, anchor="start", kind="label"):
    return Tag("text")(content, x=f"{x:.1f}", y=f"{y:.1f}", class_=kind,
                       **{"text-anchor": anchor})


def number(n):
    """A count as the charts write it: 1,234,567."""
    return f"{n:,}"


def clip(text, width=38):
    """*text* cut to *width* characters, with … if it was longer."""
    text = "" if text is None else str(text)
    return text if len(text) <= width else text[:width - 1] + "…"


def bars(label, items, width=520):
    """A horizontal bar chart of *items*: [(text, n, href or None)], in
    the order given (most first); an empty one says so."""
    items = list(items)[:MAX_BARS]
    row, left, right = 20, 190, 70
    if not items:
        return _svg(width, row + 8, label, _text(4, row - 4, "Nothing in this range.",
                                                 kind="empty"))
    top = max(n for _, n, _ in items) or 1
    span = width - left - right
    children = []
    for i, (text, n, href) in enumerate(items):
        y = i * row
        length = max(1.0, span * n / top) if n else 0
        bar = [Tag("title")(f"{text}: {number(n)}"),
               _text(left - 6, y + 14, clip(text, 30), "end"),
               Tag("rect")(x=str(left), y=str(y + 3), width=f"{length:.1f}",
                           height=str(row - 6), fill=COLOURS[0], class_="bar"),
               _text(left + length + 4, y + 14, number(n), kind="value")]
        children.append(Tag("a")(*bar, href=href) if href else Tag("g")(*bar))
    return _svg(width, row * len(items) + 4, label, *children)


def _step(first, last):
    """The column width in hours for points from hour *first* to *last*:
    an hour up to three days, then a day, then as many days as keep the
    columns at most MAX_COLUMNS."""
    span = last - first + 1
    if span <= 72:
        return 1
    days = -(-span // 24)
    return 24 * max(1, -(-days // MAX_COLUMNS))


def _hour(iso):
    """Epoch hours of an ISO time (fromisoformat: strptime imports a module
    at its first call, which may be out of reach after the privilege drop)."""
    return int(datetime.fromisoformat(iso[:13] + ":00:00+00:00").timestamp() // 3600)


def _day(hour, step):
    when = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(hours=hour)
    return when.strftime("%Y-%m-%d %H:00" if step < 24 else "%Y-%m-%d")


def columns(points, kinds):
    """*points* ([[ISO hour, {kind: n}]], in order) summed into columns:
    (step in hours, [(first hour of the column, {kind: n})])."""
    if not points:
        return 1, []
    hours = [_hour(iso) for iso, _ in points]
    step = _step(hours[0], hours[-1])
    start = hours[0] // step * step
    found = {}
    for hour, (_, counts) in zip(hours, points):
        column = found.setdefault((hour - start) // step, dict.fromkeys(kinds, 0))
        for kind in kinds:
            column[kind] += counts.get(kind, 0)
    count = (hours[-1] - start) // step + 1
    return step, [(start + i * step, found.get(i, dict.fromkeys(kinds, 0)))
                  for i in range(count)]


def timeline(label, points, kinds, names, width=1060, height=220):
    """Lines of the counters *kinds* (shown as *names*) over time, with a
    legend; *points* as :func:`columns` takes them."""
    step, found = columns(points, kinds)
    left, right, top_, bottom = 60, 10, 24, 36
    plot_w, plot_h = width - left - right, height - top_ - bottom
    children = [_text(left, 14, f"per {'hour' if step == 1 else 'day' if step == 24 else f'{step // 24} days'}",
                      kind="muted")]
    x = left + 110
    for i, kind in enumerate(kinds):
        children += [Tag("rect")(x=str(x), y="5", width="12", height="10",
                                 fill=COLOURS[i % len(COLOURS)]),
                     _text(x + 16, 14, names[i], kind="legend")]
        x += 28 + 8 * len(names[i])
    if not found:
        children.append(_text(left + plot_w / 2, top_ + plot_h / 2,
                              "Nothing in this range.", "middle", "empty"))
        return _svg(width, height, label, *children)
    peak = max(max(c.values()) for _, c in found) or 1
    for fraction in (0, 0.5, 1):
        y = top_ + plot_h * (1 - fraction)
        children += [Tag("line")(x1=str(left), x2=str(width - right), y1=f"{y:.1f}",
                                 y2=f"{y:.1f}", stroke="#ddd"),
                     _text(left - 6, y + 4, number(round(peak * fraction)), "end", "axis")]
    slot = plot_w / len(found)

    def at(i, n):
        return left + slot * (i + 0.5), top_ + plot_h * (1 - n / peak)
    for j, kind in enumerate(kinds):
        colour = COLOURS[j % len(COLOURS)]
        spots = [at(i, counts[kind]) for i, (_, counts) in enumerate(found)]
        if len(spots) == 1:
            # Smaller for each series, so that equal counts stay visible.
            children.append(Tag("circle")(cx=f"{spots[0][0]:.1f}", cy=f"{spots[0][1]:.1f}",
                                          r=str(7 - 2 * j), fill=colour))
        else:
            children.append(Tag("polyline")(
                points=" ".join(f"{x:.1f},{y:.1f}" for x, y in spots), fill="none",
                stroke=colour, **{"stroke-width": "2", "stroke-linejoin": "round"}))
    marks = sorted({0, len(found) // 2, len(found) - 1})
    for i in marks:
        children.append(_text(at(i, 0)[0], height - 14, _day(found[i][0], step),
                              "middle" if 0 < i < len(found) - 1 or len(found) == 1
                              else ("start" if i == 0 else "end"), "axis"))
    for i, (hour, counts) in enumerate(found):
        tip = _day(hour, step) + ": " + ", ".join(
            f"{names[j]} {number(counts[k])}" for j, k in enumerate(kinds))
        children.append(Tag("rect")(Tag("title")(tip), x=f"{left + slot * i:.1f}",
                                    y=str(top_), width=f"{slot:.2f}", height=str(plot_h),
                                    fill="transparent", class_="hover"))
    return _svg(width, height, label, *children)
