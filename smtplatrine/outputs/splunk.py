"""The Splunk output: events sent in batches to Splunk's HTTP Event
Collector (HEC), ``/services/collector/event``, with the collector's token.

Each event goes as the ``event`` of one HEC object, with its time, the
sensor as ``host``, and the ``source``, ``sourcetype`` and ``index`` of
the options.  A 400 (the collector will never take this batch) counts the
batch as refused; anything else that is not success (a bad token, a busy
collector) fails it, and it is sent again after back-off.
"""

import json

import attrs
from attrs import validators as v
from twisted.plugin import IPlugin
from zope.interface import implementer

from smtplatrine.interfaces import IEventOutput, OutputOptions, option
from smtplatrine.outputs import http, network
from smtplatrine.outputs.elasticsearch import date

PATH = "/services/collector/event"


@attrs.frozen
class Options(OutputOptions):
    url: str = option("", v.or_(v.in_([""]), v.matches_re(network.URL)),
                      "an http:// or https:// URL (the collector's, without"
                      " /services/...)", required=True)
    token: str = option("", required=True, allowed="the HEC token")
    index: str = ""
    source: str = "smtplatrine"
    sourcetype: str = "_json"
    ca_file: str = ""
    batch_size: int = option(500, v.gt(0), "a whole number > 0")
    flush_interval: float = option(5.0, v.ge(0), "a number of seconds >= 0")


@implementer(IPlugin, IEventOutput)
@attrs.frozen
class Splunk:
    name = "splunk"
    options = Options

    batch_size: int = 500
    flush_interval: float = 5.0
    url: str = ""
    fields: dict = attrs.Factory(dict)
    headers: dict = attrs.Factory(dict)
    http: object = None

    def configure(self, context):
        options = context.options
        fields = {"host": context.sensor, "source": options.source,
                  "sourcetype": options.sourcetype}
        if options.index:
            fields["index"] = options.index
        return attrs.evolve(
            self, batch_size=options.batch_size, flush_interval=options.flush_interval,
            url=options.url.rstrip("/") + PATH, fields=fields,
            headers={"Authorization": f"Splunk {options.token}",
                     "Content-Type": "application/json"},
            http=http.client(context.reactor, options.ca_file))

    def body(self, events):
        """The HEC request's body for *events*: one JSON object each."""
        return "".join(
            json.dumps(dict(self.fields, time=round(date(event)[0].timestamp(), 6),
                            event=event), sort_keys=True)
            for event in events).encode("ascii")

    async def send(self, events):
        code, answer = await http.post(self.http, self.url, self.body(events), self.headers)
        if code == 400:
            return len(events)
        if code != 200:
            raise http.HTTPError(code, answer)

    def close(self):
        return self.http.close()
