"""Fakes shared by the tests: a session driven in memory, a list output,
the log events of a test."""

from pathlib import Path

import attrs
from twisted.internet import defer
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher

from smtplatrine import config as config_module
from smtplatrine.disk import LocalDisk
from smtplatrine.events import Events
from smtplatrine.persona import POSTFIX
from smtplatrine.smtp.factory import HoneypotFactory
from smtplatrine.spool import Spool, read_json


class HeldDisk(LocalDisk):
    """Disk work done at once, except syncs: they wait in ``syncs`` until
    the test fires them (``syncs.pop(0).callback({})``, or ``errback``)."""

    def __init__(self, root):
        super().__init__(root)
        self.syncs = []

    def request(self, **request):
        if request["op"] != "sync":
            return super().request(**request)
        d = defer.Deferred()
        self.syncs.append(d)
        return d


class ListOutput:
    """An event output that keeps the events in a list."""

    def __init__(self):
        self.events = []

    def write(self, event):
        self.events.append(event)

    def close(self):
        pass

    def ids(self):
        return [event["eventid"] for event in self.events]


def make_config(**sections):
    """The default configuration with some options changed, per section:
    ``make_config(smtp={"timeout": 5})``."""
    default = config_module.Config()
    return attrs.evolve(default, **{
        name: attrs.evolve(getattr(default, name), **values)
        for name, values in sections.items()})


def make_factory(spool_dir, config=None, tls_options=None, disk=None):
    """A factory over a spool in *spool_dir* (its disk work done at once
    unless *disk* is given), a Clock and a ListOutput."""
    clock = Clock()
    output = ListOutput()
    spool_dir = Path(spool_dir)
    config = config or make_config()
    factory = HoneypotFactory(
        config, POSTFIX, clock,
        Spool(spool_dir, disk or LocalDisk(spool_dir), clock, flow=config.smtp),
        Events(clock, [output]), tls_options)
    factory.output = output
    return factory


def spooled(directory):
    """The finished messages in a spool's *directory*: [(metadata, raw)],
    the metadata as the spool keeps it (a JSON object), in the order they
    were received."""
    found = []
    for path in directory.glob("*.json"):
        metadata = read_json(path)
        if metadata is not None:
            found.append((metadata, path.with_suffix(".eml").read_bytes()))
    return sorted(found, key=lambda item: item[0].get("received", 0))


class TLSStringTransport(StringTransport):
    """A StringTransport that notes when STARTTLS switched it to TLS."""

    tls = None

    def startTLS(self, context_factory):
        self.tls = context_factory


def settle(clock):
    """Run the calls *clock* has due now, and those they schedule for now
    (a session's commands past one reactor turn's share), until none is."""
    while any(call.getTime() <= clock.seconds() for call in clock.getDelayedCalls()):
        clock.advance(0)


def connect(factory, peer=("192.0.2.7", 40000), server=("198.51.100.1", 25)):
    """A session of *factory* connected to a StringTransport (IPv6 when
    the *peer* address is)."""
    kind = IPv6Address if ":" in peer[0] else IPv4Address
    transport = TLSStringTransport(
        peerAddress=kind("TCP", *peer), hostAddress=kind("TCP", *server))
    protocol = factory.buildProtocol(transport.getPeer())
    protocol.makeConnection(transport)
    return protocol, transport


def logged(testcase):
    """The log events published from now on, until *testcase* ends."""
    events = []
    globalLogPublisher.addObserver(events.append)
    testcase.addCleanup(globalLogPublisher.removeObserver, events.append)
    return events
