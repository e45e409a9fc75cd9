"""What the HTTP outputs share: a treq client of their own, and a POST
whose answer is read within bounds."""

from datetime import datetime, timezone

import attrs
from attrs import validators as v

from smtplatrine.events import printable
from smtplatrine.interfaces import OutputOptions, option
from smtplatrine.outputs import network

# An answer larger than this is not read further.
MAX_ANSWER = 4 * 1024 * 1024


class HTTPError(Exception):
    """The server answered a status that is not success."""

    def __init__(self, code, answer):
        super().__init__(f"HTTP {code}: {printable(answer[:200])}")
        self.code = code


@attrs.frozen
class Client:
    """A treq client and the pool of its connections."""
    treq: object
    pool: object

    def close(self):
        return self.pool.closeCachedConnections()


def client(reactor, ca_file=""):
    """A :class:`Client` with a connection of its own (one output's
    slowness never holds up another's), trusting the CAs of *ca_file*
    (empty: the system's) for https."""
    import treq.client
    from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool

    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = 1
    policy = BrowserLikePolicyForHTTPS(trustRoot=network.trust_root(ca_file))
    return Client(treq.client.HTTPClient(Agent(
        reactor, contextFactory=policy, pool=pool,
        connectTimeout=network.CONNECT_TIMEOUT)), pool)


async def post(client, url, body, headers):
    """POST *body* to *url* with *client*: the status code and the answer
    (its first ``MAX_ANSWER`` bytes)."""
    import treq

    response = await client.treq.post(url, data=body, headers=headers)
    chunks, size = [], [0]

    def collect(data):
        if size[0] < MAX_ANSWER:
            chunks.append(data[:MAX_ANSWER - size[0]])
        size[0] += len(data)

    await treq.collect(response, collect)
    return response.code, b"".join(chunks)


def event_time(event):
    """The time of *event* (its ``timestamp``; now if it has none), and
    that as text."""
    try:
        return datetime.fromisoformat(event["timestamp"]), event["timestamp"]
    except (KeyError, TypeError, ValueError):
        now = datetime.now(timezone.utc)
        return now, now.isoformat().replace("+00:00", "Z")


@attrs.frozen
class HTTPOptions(OutputOptions):
    """The options of an output that posts batches of events."""
    url: str = option("", v.or_(v.in_([""]), v.matches_re(network.URL)),
                      "an http:// or https:// URL", required=True)
    ca_file: str = ""
    batch_size: int = option(500, v.gt(0), "a whole number > 0")
    flush_interval: float = option(5.0, v.ge(0), "a number of seconds >= 0")


@attrs.frozen
class HTTPOutput:
    """An output that posts batches of events to ``url`` with ``headers``
    (its IEventOutput attributes; ``configured`` sets them)."""
    batch_size: int = 500
    flush_interval: float = 5.0
    url: str = ""
    headers: dict = attrs.Factory(dict)
    http: object = None

    def configured(self, context, url, headers, **fields):
        """This output configured from *context*'s HTTPOptions, posting to
        *url* with *headers*, with its own *fields*."""
        options = context.options
        return attrs.evolve(self, batch_size=options.batch_size,
                            flush_interval=options.flush_interval, url=url,
                            headers=headers, http=client(context.reactor, options.ca_file),
                            **fields)

    def post(self, body):
        """POST *body*: the status code and the answer."""
        return post(self.http, self.url, body, self.headers)

    def close(self):
        return self.http.close()
