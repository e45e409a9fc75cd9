"""Prometheus metrics of a sensor, served at ``/metrics`` on ``[metrics] listen``.

Every process of a sensor counts its own: the SMTP side from its events
(:class:`EventMetrics`), the storing process from its events and its state,
a dashboard started with it from its requests.  They keep their values in
a directory under ``data_dir`` (prometheus_client's multiprocess mode), so
counts survive a restart of the storing process, and the storing process,
which never talks to an attacker, serves the sum of all of them with what
it reads at each scrape (the spool, the outputs' queues, the quotas).

Label values are names from the code only (outcomes, reasons, mechanisms,
enrichers, outputs): never an address, a host name or anything else a
client chose, so that the number of series stays small whatever is sent.

prometheus_client is imported only when metrics are on, and only after
:func:`prepare` has named the directory (it reads that at import).
"""

import errno
import os
import shutil
import time

from twisted.logger import Logger

from smtplatrine.spool import finished_files

log = Logger()

DIRECTORY = "metrics"
_ENVIRONMENT = "PROMETHEUS_MULTIPROC_DIR"

# The label values allowed; anything else counts as "other".
CLOSE_REASONS = {"client", "too_many_errors", "forbidden_command", "bdat_syntax",
                 "session_deadline", "idle_timeout", "command_timeout", "slow_data"}
MECHANISMS = {"PLAIN", "LOGIN", "CRAM-MD5"}
_REFUSALS = {"acl_ip": "refused_acl", "acl_country": "refused_acl"}
_LOOKUPS = {"smtplatrine.enrichment.queued": "queued",
            "smtplatrine.enrichment.failed": "failed"}
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)


def prepare(config):
    """In the server, before any of its processes imports
    prometheus_client: make the shared directory anew, and name it in the
    environment the processes started from now on inherit.  Whether
    metrics are on."""
    if not config.metrics.listen:
        return False
    directory = config.data_path(DIRECTORY).resolve()
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ[_ENVIRONMENT] = str(directory)
    return True


class _Metrics:
    """The metrics this code counts, made once per process."""

    def __init__(self):
        from prometheus_client import Counter, Gauge, Histogram

        self.connections = Counter(
            "smtplatrine_connections", "Connections, by outcome: served, refused by"
            " the block list (refused_acl) or by a limit (refused_limit).", ["outcome"])
        self.open = Gauge("smtplatrine_open_connections", "SMTP sessions open now.",
                          multiprocess_mode="livesum")
        self.sessions = Counter("smtplatrine_sessions", "SMTP sessions ended, by why"
                                " they ended.", ["reason"])
        self.commands = Counter("smtplatrine_commands", "SMTP commands of ended"
                                " sessions.")
        self.auth = Counter("smtplatrine_auth_attempts", "AUTH attempts, by mechanism.",
                            ["mechanism"])
        self.accepted = Counter("smtplatrine_messages_accepted", "Messages the client"
                                " was told were accepted (250).")
        self.received = Counter("smtplatrine_received_bytes", "Bytes of the messages"
                                " received.")
        self.tls = Counter("smtplatrine_tls_handshakes", "TLS handshakes, by outcome:"
                           " completed or failed.", ["outcome"])
        self.bans = Counter("smtplatrine_bans", "Clients put on the block list by the"
                            " smart bans.")
        self.lost = Counter("smtplatrine_events_lost", "Events of the SMTP side that"
                            " could not reach the storing process and its outputs.")
        self.stored = Counter("smtplatrine_messages_stored", "Messages stored in the"
                              " database.")
        self.quarantined = Counter("smtplatrine_messages_quarantined", "Messages moved"
                                   " to the quarantine.")
        self.sessions_stored = Counter("smtplatrine_sessions_stored", "Session records"
                                       " stored in the database.")
        self.attachments = Counter("smtplatrine_attachments_stored", "Attachments of"
                                   " stored messages.")
        self.lookups = Counter("smtplatrine_enrichment_lookups", "Enrichment lookups,"
                               " by enricher and outcome: found, not_found, queued"
                               " (over quota) or failed.", ["provider", "outcome"])
        self.latency = Histogram("smtplatrine_storing_latency_seconds", "Seconds"
                                 " from the end of a message to its durable commit.",
                                 buckets=LATENCY_BUCKETS)


_made = None


def _metrics():
    global _made
    if _made is None:
        _made = _Metrics()
    return _made


class EventMetrics:
    """Counts events into the metrics: a sink of ``Events``."""

    def __init__(self):
        self.m = _metrics()

    def write(self, event):
        m, eventid = self.m, event["eventid"]
        if eventid == "smtplatrine.session.connect":
            m.connections.labels("served").inc()
            m.open.inc()
        elif eventid == "smtplatrine.acl.refused":
            m.connections.labels(_REFUSALS.get(event.get("reason"), "refused_limit")).inc()
        elif eventid == "smtplatrine.session.closed":
            m.open.dec()
            reason = event.get("reason")
            m.sessions.labels(reason if reason in CLOSE_REASONS else "other").inc()
            m.commands.inc(event.get("commands") or 0)
            if event.get("tls_failed"):
                m.tls.labels("failed").inc()
        elif eventid == "smtplatrine.session.tls":
            m.tls.labels("completed").inc()
        elif eventid == "smtplatrine.login.attempt":
            mechanism = event.get("mechanism")
            m.auth.labels(mechanism if mechanism in MECHANISMS else "other").inc()
        elif eventid == "smtplatrine.message.spooled":
            m.received.inc(event.get("size") or 0)
            if event.get("acknowledged"):
                m.accepted.inc()
        elif eventid == "smtplatrine.acl.banned":
            m.bans.inc()
        elif eventid == "smtplatrine.events.lost":
            m.lost.inc(event.get("count") or 0)
        elif eventid == "smtplatrine.message.stored":
            m.stored.inc()
        elif eventid == "smtplatrine.message.quarantined":
            m.quarantined.inc()
        elif eventid == "smtplatrine.session.stored":
            m.sessions_stored.inc()
        elif eventid == "smtplatrine.attachment.stored":
            m.attachments.inc()
        elif eventid.startswith("smtplatrine.enrichment"):
            outcome = _LOOKUPS.get(eventid) or ("found" if event.get("found")
                                                else "not_found")
            m.lookups.labels(str(event.get("provider")), outcome).inc()

    def stored(self, received, now):
        """A message that ended at *received* was durably stored at *now*."""
        self.m.latency.observe(max(0.0, now - received))

    def close(self):
        pass


def spool_backlog(spool_root, now):
    """({kind: finished items waiting in the spool}, age in seconds of the
    oldest) for *spool_root* at *now*."""
    counts, oldest = {"message": 0, "session": 0}, now
    for kind in counts:
        for _, stat in finished_files(spool_root / f"{kind}s"):
            counts[kind] += 1
            oldest = min(oldest, stat.st_mtime)
    return counts, now - oldest


class StateCollector:
    """What the storing process reads at each scrape: the spool under
    *spool_root*, the runners of *outputs*, and *quota* (a dict that
    :class:`QuotaWatch` keeps)."""

    def __init__(self, spool_root, outputs, quota):
        # Imported now: a scrape runs in a thread, after the privilege
        # drop, when the Python library may be out of reach.
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        self._counter, self._gauge = CounterMetricFamily, GaugeMetricFamily
        self._spool_root = spool_root
        self._outputs = outputs
        self._quota = quota

    def collect(self):
        CounterMetricFamily, GaugeMetricFamily = self._counter, self._gauge
        counts, age = spool_backlog(self._spool_root, time.time())
        backlog = GaugeMetricFamily("smtplatrine_spool_backlog", "Finished messages and"
                                    " session records in the spool, not yet stored.",
                                    labels=["kind"])
        for kind, count in counts.items():
            backlog.add_metric([kind], count)
        yield backlog
        yield GaugeMetricFamily("smtplatrine_spool_oldest_age_seconds", "Age of the"
                                " oldest item waiting in the spool.", value=age)
        families = {
            "queue": GaugeMetricFamily("smtplatrine_output_queue_length", "Events"
                                       " waiting for an output.", labels=["output"]),
            "up": GaugeMetricFamily("smtplatrine_output_up", "1 while an output"
                                    " delivers, 0 while it fails.", labels=["output"]),
            "delivered": CounterMetricFamily(
                "smtplatrine_output_delivered_events", "Events an output delivered.",
                labels=["output"]),
            "dropped": CounterMetricFamily(
                "smtplatrine_output_dropped_events", "Events an output dropped, its"
                " queue full.", labels=["output"]),
            "refused": CounterMetricFamily(
                "smtplatrine_output_refused_events", "Events an output's receiver"
                " refused for good.", labels=["output"]),
        }
        for runner in self._outputs.runners:
            families["queue"].add_metric([runner.name], runner.queued)
            families["up"].add_metric([runner.name], int(runner.up))
            for key in ("delivered", "dropped", "refused"):
                families[key].add_metric([runner.name], getattr(runner, key))
        yield from families.values()
        left = GaugeMetricFamily("smtplatrine_enrichment_quota_left", "Lookups an"
                                 " enricher may still make this minute or day (for"
                                 " those with a quota).", labels=["provider", "span"])
        for (provider, span), value in sorted(self._quota.get("left", {}).items()):
            left.add_metric([provider, span], value)
        yield left
        if "waiting" in self._quota:
            yield GaugeMetricFamily("smtplatrine_enrichment_queue_length", "Lookups"
                                    " waiting in the database's queue, for quota or"
                                    " a retry.", value=self._quota["waiting"])


def quota_left(used, enrichers):
    """{(provider, span): lookups left} of the *enrichers* with a quota,
    from *used* ({(provider, span): used now})."""
    left = {}
    for enricher in enrichers:
        for span, limit in (("minute", enricher.per_minute), ("day", enricher.per_day)):
            if limit:
                left[(enricher.name, span)] = max(0, limit - used.get((enricher.name, span), 0))
    return left


def _listen_error(listen, error):
    code = getattr(getattr(error, "socketError", error), "errno", None)
    why = {errno.EADDRINUSE: "the address is already in use",
           errno.EACCES: "permission denied"}.get(code, str(error))
    return (f"smtplatrine: cannot serve metrics on {listen}: {why}; change"
            f" [metrics] listen (or leave it empty)")


def listen(reactor, description, registry):
    """Serve *registry* at ``/metrics`` on the endpoint *description*;
    the listening port (bound now), or SystemExit saying why not."""
    from prometheus_client.twisted import MetricsResource
    from twisted.internet.endpoints import serverFromString
    from twisted.web.resource import Resource
    from twisted.web.server import Site

    class MetricsSite(Site):
        def log(self, request):
            """Scrapes are not logged."""

    root = Resource()
    root.putChild(b"metrics", MetricsResource(registry))
    try:
        endpoint = serverFromString(reactor, description)
    except Exception as e:
        raise SystemExit(_listen_error(description, e)) from None
    results = []
    endpoint.listen(MetricsSite(root)).addBoth(results.append)
    if not results or not hasattr(results[0], "getHost"):
        error = results[0].value if results else "it did not bind at once"
        raise SystemExit(_listen_error(description, error))
    host = results[0].getHost()
    log.info("metrics: serving /metrics on {endpoint} at {host}:{port}",
             endpoint=description, host=host.host, port=host.port)
    return results[0]


def registry(collector=None):
    """The registry the storing process serves: every process's values
    (from the shared directory) and *collector*."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    served = CollectorRegistry()
    MultiProcessCollector(served)
    if collector is not None:
        served.register(collector)
    return served


def process_ended(pid):
    """Forget the gauges of the ended process *pid* (counters stay)."""
    if os.environ.get(_ENVIRONMENT):
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(pid)


def expose(config, reactor):
    """The one call another process of smtplatrine (the dashboard) makes
    for its metrics (made with prometheus_client as usual, after this call)
    to be served.  Started by ``twistd smtplatrine``, it inherits the
    shared directory and its values join the sensor's ``/metrics``: nothing
    to serve.  Alone (``twistd smtplatrine-web``), it serves its own at
    ``[metrics] listen``.  The listening port, or None."""
    if not config.metrics.listen or os.environ.get(_ENVIRONMENT):
        return None
    from prometheus_client import REGISTRY
    return listen(reactor, config.metrics.listen, REGISTRY)
