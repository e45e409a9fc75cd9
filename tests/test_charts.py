"""The overview's SVG charts: well-formed, escaped, and readable with no
data point, one, and a million."""

import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone

from twisted.trial import unittest
from twisted.web.template import flattenString

from smtplatrine.web import charts

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = '<script>alert(1)</script>"&'


def hours(start, count, n=1):
    """*count* hourly points of *n* from the ISO hour *start*."""
    first = datetime.fromisoformat(start).replace(tzinfo=timezone.utc)
    return [[(first + timedelta(hours=i)).strftime("%Y-%m-%dT%H:00:00Z"), {"a": n, "b": 2 * n}]
            for i in range(count)]


class ChartTests(unittest.TestCase):

    def render(self, tag):
        """The chart as markup, and parsed (it must be well-formed XML)."""
        markup = self.successResultOf(flattenString(None, tag)).decode("utf-8")
        return markup, ET.fromstring(markup)

    def texts(self, root):
        return [t.text for t in root.iter(SVG + "text")]

    def test_bars_empty(self):
        """No row: a chart that says so."""
        _, root = self.render(charts.bars("Top", []))
        self.assertEqual(self.texts(root), ["Nothing in this range."])

    def test_bars_one_and_escaped(self):
        """A label of markup is text, its link the one given."""
        markup, root = self.render(charts.bars("Top", [(HOSTILE, 1_000_000, "/messages?q=x")]))
        self.assertNotIn("<script>", markup)
        self.assertEqual(self.texts(root), [HOSTILE, "1,000,000"])
        [link] = root.iter(SVG + "a")
        self.assertEqual(link.get("href"), "/messages?q=x")
        self.assertEqual(root.find(f"{SVG}a/{SVG}title").text, f"{HOSTILE}: 1,000,000")

    def test_bars_a_million(self):
        """A million rows: the first MAX_BARS, longest bar for the largest."""
        rows = [(f"value {i}", 1_000_000 - i, None) for i in range(1_000_000)]
        _, root = self.render(charts.bars("Top", rows))
        widths = [float(r.get("width")) for r in root.iter(SVG + "rect")]
        self.assertEqual(len(widths), 15)
        self.assertEqual(widths, sorted(widths, reverse=True))

    def test_timeline_empty(self):
        _, root = self.render(charts.timeline("Activity", [], ("a", "b"), ("A", "B")))
        self.assertIn("Nothing in this range.", self.texts(root))

    def test_timeline_one_point(self):
        """One hour: a dot per series (no line of one point), its date."""
        _, root = self.render(charts.timeline("Activity", hours("2026-03-02T10", 1),
                                              ("a", "b"), ("A", "B")))
        self.assertEqual(len(list(root.iter(SVG + "circle"))), 2)
        self.assertIn("2026-03-02 10:00", self.texts(root))
        self.assertIn("per hour", self.texts(root))

    def test_timeline_by_day(self):
        """Ten days of hours are drawn as ten days, each the sum of its hours."""
        step, found = charts.columns(hours("2026-03-01T00", 240), ("a", "b"))
        self.assertEqual((step, len(found)), (24, 10))
        self.assertEqual(found[0][1], {"a": 24, "b": 48})

    def test_timeline_a_million(self):
        """A million hours (114 years) fit in at most MAX_COLUMNS columns
        that together hold every point."""
        points = hours("1950-01-01T00", 1_000_000)
        step, found = charts.columns(points, ("a", "b"))
        self.assertLessEqual(len(found), charts.MAX_COLUMNS)
        self.assertEqual(sum(c["a"] for _, c in found), 1_000_000)
        _, root = self.render(charts.timeline("Activity", points, ("a", "b"), ("A", "B")))
        self.assertEqual(len(list(root.iter(SVG + "polyline"))), 2)
        self.assertIn(f"per {step // 24} days", self.texts(root))
