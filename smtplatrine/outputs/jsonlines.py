"""The JSON lines output: each event as one JSON object on a line of a file.

The file (``events.jsonl`` under ``data_dir`` by default) is created at
start, so that a shipper tailing it (Filebeat, Logstash's file input)
finds it at once, and opened for appending by the storing process alone,
each batch whole or not at all.  With ``field_names = tpot`` the server's end
is ``dest_ip`` and ``dest_port``, the names T-Pot's Logstash expects of
honeypots (its other names, ``timestamp``, ``src_ip`` and ``src_port``,
are ours too).
"""

import json
import os

import attrs
from attrs import validators as v
from twisted.plugin import IPlugin
from zope.interface import implementer

from smtplatrine.interfaces import IEventOutput, OutputOptions, option

FIELD_NAMES = {"smtplatrine": {}, "tpot": {"dst_ip": "dest_ip", "dst_port": "dest_port"}}


@attrs.frozen
class Options(OutputOptions):
    enabled: bool = True
    path: str = option("events.jsonl", required=True,
                       allowed="a file path (relative: under data_dir)")
    field_names: str = option("smtplatrine", v.in_(sorted(FIELD_NAMES)),
                              "smtplatrine or tpot")


@implementer(IPlugin, IEventOutput)
@attrs.frozen
class JSONLines:
    name = "jsonlines"
    options = Options
    batch_size = 1000
    # Lines are written out within a second, not one write per event.
    flush_interval = 1.0

    fd: int | None = None
    renames: dict = attrs.Factory(dict)

    def configure(self, context):
        path = context.data_dir / context.options.path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        return attrs.evolve(self, fd=fd, renames=FIELD_NAMES[context.options.field_names])

    def send(self, events):
        """Append *events* whole or not at all: a write that fails midway
        (a full disk) is cut back off, so that the runner's retry of the
        batch writes no line twice and leaves no half line behind."""
        data = "".join(
            json.dumps({self.renames.get(k, k): value for k, value in event.items()},
                       sort_keys=True) + "\n"
            for event in events).encode("ascii")
        start = os.fstat(self.fd).st_size
        try:
            while data:
                data = data[os.write(self.fd, data):]
        except OSError:
            os.ftruncate(self.fd, start)
            raise

    def close(self):
        os.close(self.fd)
