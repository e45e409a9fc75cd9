"""The hpfeeds output: each event published, as JSON, to a channel of an
hpfeeds broker (the feeds honeypot research groups share).

hpfeeds frames are a 32-bit length (the whole frame), an opcode byte and
the payload; strings in a payload carry a one-byte length.  The broker
opens with INFO (its name, a nonce); the client answers AUTH (its ident,
SHA-1 of nonce + secret) and then sends PUBLISH (ident, channel, payload)
frames.  The broker acknowledges nothing: it answers a refusal (a wrong
secret, a channel the ident may not publish to) with ERROR and closes, and
that error fails the next batch, so the refusal is reported and retried.
"""

import hashlib
import json
import struct

import attrs
from attrs import validators as v
from twisted.plugin import IPlugin
from zope.interface import implementer

from smtplatrine.events import printable
from smtplatrine.interfaces import IEventOutput, OutputOptions, option
from smtplatrine.outputs import network

OP_ERROR, OP_INFO, OP_AUTH, OP_PUBLISH = 0, 1, 2, 3
# The largest frame taken from a broker (INFO and ERROR are small).
MAX_FRAME = 65536
_PRINTABLE = "printable ASCII characters without spaces, at most 255"


@attrs.frozen
class Options(OutputOptions):
    address: str = option("", required=True, allowed="HOST:PORT or [IPv6]:PORT"
                          " (port 10000 if none)")
    ident: str = option("", v.matches_re(r"[!-~]{0,255}"), _PRINTABLE, required=True)
    secret: str = option("", required=True, allowed="the ident's secret")
    channel: str = option("smtplatrine.events", v.matches_re(r"[!-~]{1,255}"), _PRINTABLE)
    tls: bool = False
    ca_file: str = ""


def frame(opcode, payload):
    return struct.pack("!IB", 5 + len(payload), opcode) + payload


def string(text):
    data = text.encode("utf-8")
    return bytes([len(data)]) + data


class BrokerError(Exception):
    """The broker said no (its ERROR frame)."""


class _Client(network.StreamProtocol):
    """Authenticates on the broker's INFO; ready once AUTH is sent."""

    def __init__(self, ident, secret):
        super().__init__(tls=True)  # ready only after INFO, TLS or not
        self._ident, self._secret = ident, secret
        self._buffer = b""
        self.error = None

    def dataReceived(self, data):
        self._buffer += data
        while len(self._buffer) >= 5:
            length, opcode = struct.unpack("!IB", self._buffer[:5])
            if not 5 <= length <= MAX_FRAME:
                self.error = f"a frame of {length} bytes"
                self.transport.abortConnection()
                return
            if len(self._buffer) < length:
                return
            payload, self._buffer = self._buffer[5:length], self._buffer[length:]
            if opcode == OP_INFO and not self.ready.called and payload:
                nonce = payload[1 + payload[0]:]
                digest = hashlib.sha1(nonce + self._secret.encode("utf-8")).digest()
                self.transport.write(frame(OP_AUTH, string(self._ident) + digest))
                self.ready.callback(self)
            elif opcode == OP_ERROR:
                self.error = printable(payload[:200])
                self.transport.loseConnection()

    def handshakeCompleted(self):
        """Ready only after the broker's INFO."""

    def connectionLost(self, reason):
        if self.error and not self.ready.called:
            reason = BrokerError(self.error)
        super().connectionLost(reason)


@implementer(IPlugin, IEventOutput)
@attrs.frozen
class HPFeeds:
    name = "hpfeeds"
    options = Options
    batch_size = 100
    flush_interval = 0.0

    connection: object = None
    ident: str = ""
    channel: str = ""
    # The last client connection made (a list of at most one).
    clients: list = attrs.Factory(list)

    def configure(self, context):
        options = context.options
        host, port = network.host_port(options.address, 10000)
        tls = network.tls_options(host, options.ca_file) if options.tls else None
        clients = []

        def make():
            clients[:] = [_Client(options.ident, options.secret)]
            return clients[0]

        return attrs.evolve(self, connection=network.Connection(
            context.reactor, host, port, make, tls), ident=options.ident,
            channel=options.channel, clients=clients)

    async def send(self, events):
        # A refusal that came after the last batch: say so, and retry.
        if self.clients and self.clients[0].error:
            error, self.clients[0].error = self.clients[0].error, None
            raise BrokerError(f"the broker said {error!r}")
        client = await self.connection.protocol()
        head = string(self.ident) + string(self.channel)
        client.transport.writeSequence([
            frame(OP_PUBLISH, head + json.dumps(event, sort_keys=True).encode("ascii"))
            for event in events])

    def close(self):
        self.connection.close()
