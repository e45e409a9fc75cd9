"""Metrics from events, the spool's backlog, the quotas: label values are
names from the code, never what a client sent."""

import os
import time
from pathlib import Path

import urllib.request

import attrs
from prometheus_client import REGISTRY
from twisted.internet import reactor, threads
from twisted.trial import unittest

from smtplatrine import metrics
from smtplatrine.metrics import EventMetrics, quota_left, spool_backlog
from smtplatrine.testing import make_config
from tests.process import free_port


def value(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


class EventMetricsTests(unittest.TestCase):

    def setUp(self):
        self.metrics = EventMetrics()

    def moved(self, events, name, **labels):
        before = value(name, **labels)
        for event in events:
            self.metrics.write(event)
        return value(name, **labels) - before

    def test_refusals_by_kind(self):
        """A block-list refusal counts as refused_acl; a limit as refused_limit."""
        refused = [{"eventid": "smtplatrine.acl.refused", "reason": reason}
                   for reason in ("acl_ip", "acl_country", "client_limit", "busy")]
        self.assertEqual(self.moved(refused[:2], "smtplatrine_connections_total",
                                    outcome="refused_acl"), 2)
        self.assertEqual(self.moved(refused[2:], "smtplatrine_connections_total",
                                    outcome="refused_limit"), 2)

    def test_client_values_never_labels(self):
        """A mechanism or a reason that is not one of ours counts as other:
        no series is made of what a client chose."""
        attempt = {"eventid": "smtplatrine.login.attempt", "mechanism": "X-\u00e9vil"}
        self.assertEqual(self.moved([attempt], "smtplatrine_auth_attempts_total",
                                    mechanism="other"), 1)
        closed = {"eventid": "smtplatrine.session.closed", "reason": "zzz", "commands": 3}
        self.assertEqual(self.moved([{"eventid": "smtplatrine.session.connect"}, closed],
                                    "smtplatrine_sessions_total", reason="other"), 1)
        names = {sample.labels.get("mechanism") for metric in REGISTRY.collect()
                 for sample in metric.samples}
        self.assertNotIn("X-\u00e9vil", names)

    def test_lookups(self):
        """Enrichment events count lookups by enricher and outcome."""
        for eventid, found, outcome in (
                ("smtplatrine.enrichment", True, "found"),
                ("smtplatrine.enrichment", False, "not_found"),
                ("smtplatrine.enrichment.failed", None, "failed"),
                ("smtplatrine.enrichment.queued", None, "queued")):
            event = {"eventid": eventid, "provider": "rdns", "found": found}
            self.assertEqual(self.moved([event], "smtplatrine_enrichment_lookups_total",
                                        provider="rdns", outcome=outcome), 1)


class SpoolBacklogTests(unittest.TestCase):

    def test_finished_items_and_oldest(self):
        """Finished messages and sessions count; empty files made ahead do
        not; the age is the oldest finished one's."""
        root = Path(self.mktemp())
        for kind in ("messages", "sessions"):
            (root / kind).mkdir(parents=True)
        now = time.time()
        (root / "messages" / "a.json").write_text("{}")
        os.utime(root / "messages" / "a.json", (now - 90, now - 90))
        (root / "messages" / "a.eml").write_text("x")
        (root / "messages" / "ahead.json").write_text("")
        (root / "sessions" / "s.json").write_text("{}")
        counts, age = spool_backlog(root, now)
        self.assertEqual(counts, {"message": 1, "session": 1})
        self.assertAlmostEqual(age, 90, delta=1)


@attrs.frozen
class _Enricher:
    name: str
    per_minute: int
    per_day: int


class QuotaTests(unittest.TestCase):

    def test_left(self):
        """What is left of each quota; enrichers without one are not listed."""
        used = {("vt", "minute"): 3, ("vt", "day"): 600, ("otx", "day"): 10}
        self.assertEqual(quota_left(used, [_Enricher("vt", 4, 500), _Enricher("otx", 0, 1000),
                                           _Enricher("rdns", 0, 0)]),
                         {("vt", "minute"): 1, ("vt", "day"): 0, ("otx", "day"): 990})


class ExposeTests(unittest.TestCase):

    def test_alone_serves_its_own(self):
        """A process alone (twistd smtplatrine-web) serves its metrics at
        [metrics] listen with one call; scrapes are plain HTTP GETs."""
        self.patch(os, "environ", {k: v for k, v in os.environ.items()
                                   if k != "PROMETHEUS_MULTIPROC_DIR"})
        port_number = free_port()
        config = make_config(metrics={"listen": f"tcp:{port_number}:interface=127.0.0.1"})
        port = metrics.expose(config, reactor)
        self.addCleanup(port.stopListening)
        EventMetrics().write({"eventid": "smtplatrine.session.connect"})

        def get():
            url = f"http://127.0.0.1:{port_number}/metrics"
            with urllib.request.urlopen(url, timeout=10) as answer:
                return answer.read().decode()
        d = threads.deferToThread(get)
        d.addCallback(lambda text: self.assertIn("smtplatrine_connections_total{"
                                                 'outcome="served"}', text))
        return d

    def test_child_of_the_server_serves_nothing(self):
        """Started by twistd smtplatrine (the shared directory inherited),
        a process serves nothing: its values join the sensor's /metrics."""
        self.patch(os, "environ", dict(os.environ, PROMETHEUS_MULTIPROC_DIR="/nonexistent"))
        config = make_config(metrics={"listen": f"tcp:{free_port()}:interface=127.0.0.1"})
        self.assertIsNone(metrics.expose(config, reactor))
        self.assertIsNone(metrics.expose(make_config(), reactor))
