"""What the HTTP outputs share: a treq client of their own, and a POST
whose answer is read within bounds."""

import attrs

from smtplatrine.events import printable
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
