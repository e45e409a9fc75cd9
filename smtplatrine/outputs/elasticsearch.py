"""The Elasticsearch output: events indexed in batches through the bulk
API of Elasticsearch or OpenSearch.

Each event becomes a document of the index its date names (``index`` is a
strftime pattern, applied to the event's UTC timestamp), with the event's
fields and ``@timestamp``.  A document's id is the SHA-256 of its JSON and
it is sent with ``create``, so a batch sent again after a timeout or a
partial refusal indexes nothing twice (the documents already there answer
409).  A 429 or a server error of any document retries the batch; a
document refused otherwise (a mapping conflict) is counted as refused.
"""

import base64
import hashlib
import json
import re
from datetime import datetime, timezone

import attrs
from twisted.plugin import IPlugin
from zope.interface import implementer

from smtplatrine.interfaces import IEventOutput, option
from smtplatrine.outputs import http

_INDEX_CHARS = re.compile(r"[a-z0-9][a-z0-9._+-]{0,254}")


def _index_pattern(instance, attribute, value):
    sample = datetime(2026, 12, 31, 23, 0, 0, tzinfo=timezone.utc)
    try:
        name = sample.strftime(value)
    except ValueError:
        name = ""
    if not _INDEX_CHARS.fullmatch(name) or name in (".", ".."):
        raise ValueError(value)


@attrs.frozen
class Options(http.HTTPOptions):
    index: str = option("smtplatrine-%Y.%m.%d", _index_pattern,
                        "an index name: lower case letters, digits, . _ + -, and the"
                        " date as strftime codes (%Y, %m, %d)")
    username: str = ""
    password: str = ""
    api_key: str = ""


class BulkRetry(Exception):
    """Some documents were refused for now (429, server errors)."""


@implementer(IPlugin, IEventOutput)
@attrs.frozen
class Elasticsearch(http.HTTPOutput):
    name = "elasticsearch"
    options = Options

    index: str = ""

    def configure(self, context):
        options = context.options
        headers = {"Content-Type": "application/x-ndjson"}
        if options.api_key:
            headers["Authorization"] = f"ApiKey {options.api_key}"
        elif options.username:
            pair = f"{options.username}:{options.password}".encode("utf-8")
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        return self.configured(context, options.url.rstrip("/") + "/_bulk", headers,
                               index=options.index)

    def bulk(self, events):
        """The bulk request's body for *events*."""
        lines = []
        for event in events:
            when, stamp = http.event_time(event)
            document = json.dumps(dict(event, **{"@timestamp": stamp}), sort_keys=True)
            lines.append(json.dumps({"create": {
                "_index": when.astimezone(timezone.utc).strftime(self.index),
                "_id": hashlib.sha256(document.encode("ascii")).hexdigest()}}))
            lines.append(document)
        return ("\n".join(lines) + "\n").encode("ascii")

    async def send(self, events):
        code, answer = await self.post(self.bulk(events))
        if code != 200:
            raise http.HTTPError(code, answer)
        try:
            result = json.loads(answer)
            statuses = [next(iter(item.values()))["status"] for item in result["items"]]
        except (ValueError, KeyError, TypeError, AttributeError, StopIteration):
            raise http.HTTPError(code, b"an answer that is not a bulk result: " + answer)
        again = sum(1 for s in statuses if s == 429 or s >= 500)
        if again:
            raise BulkRetry(f"{again} of {len(events)} documents refused for now")
        return sum(1 for s in statuses if s >= 300 and s != 409)
