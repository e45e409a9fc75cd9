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
from twisted.plugin import IPlugin
from zope.interface import implementer

from smtplatrine.interfaces import IEventOutput, option
from smtplatrine.outputs import http

PATH = "/services/collector/event"


@attrs.frozen
class Options(http.HTTPOptions):
    token: str = option("", required=True, allowed="the HEC token")
    index: str = ""
    source: str = "smtplatrine"
    sourcetype: str = "_json"


@implementer(IPlugin, IEventOutput)
@attrs.frozen
class Splunk(http.HTTPOutput):
    name = "splunk"
    options = Options

    fields: dict = attrs.Factory(dict)

    def configure(self, context):
        options = context.options
        fields = {"host": context.sensor, "source": options.source,
                  "sourcetype": options.sourcetype}
        if options.index:
            fields["index"] = options.index
        return self.configured(
            context, options.url.rstrip("/") + PATH,
            {"Authorization": f"Splunk {options.token}", "Content-Type": "application/json"},
            fields=fields)

    def body(self, events):
        """The HEC request's body for *events*: one JSON object each."""
        return "".join(
            json.dumps(dict(self.fields, time=round(http.event_time(event)[0].timestamp(), 6),
                            event=event), sort_keys=True)
            for event in events).encode("ascii")

    async def send(self, events):
        code, answer = await self.post(self.body(events))
        if code == 400:
            return len(events)
        if code != 200:
            raise http.HTTPError(code, answer)
