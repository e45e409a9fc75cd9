"""Receivers the outputs deliver to in the tests, on loopback: a syslog
collector (UDP, TCP, TLS, a local datagram socket), an hpfeeds broker, and
stand-ins for Elasticsearch's bulk API and Splunk's HTTP Event Collector.
Each keeps what it received, and can go down and come back on its port."""

import hashlib
import json
import os
import re
import socket
import struct

from twisted.internet import protocol, reactor, task
from twisted.web.resource import Resource
from twisted.web.server import Site

# RFC 5424 section 6: HEADER SP STRUCTURED-DATA [SP MSG].
RFC5424 = re.compile(
    rb"<(?P<pri>\d{1,3})>1 (?P<timestamp>\S+) (?P<hostname>[!-~]{1,255})"
    rb" (?P<app>[!-~]{1,48}) (?P<procid>[!-~]{1,128}) (?P<msgid>[!-~]{1,32})"
    rb" (?P<sd>-|\[.*?\])(?: (?P<msg>.*))?", re.S)


async def until(predicate, timeout=10.0):
    """Wait (the reactor running) until *predicate()* is true."""
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await task.deferLater(reactor, 0.02)
    raise AssertionError("timed out waiting")


class _Tracked(protocol.Protocol):
    def connectionMade(self):
        self.factory.connections.add(self)

    def connectionLost(self, reason):
        self.factory.connections.discard(self)


class Receiver(protocol.Factory):
    """Listens on a loopback port (TLS with *tls_options*); :meth:`down`
    closes the port and every connection, :meth:`up` listens again on the
    same port."""

    def __init__(self, tls_options=None):
        self.tls_options = tls_options
        self.connections = set()
        self.port = None
        self.number = 0

    def up(self):
        if self.tls_options is not None:
            self.port = reactor.listenSSL(self.number, self, self.tls_options,
                                          interface="127.0.0.1")
        else:
            self.port = reactor.listenTCP(self.number, self, interface="127.0.0.1")
        self.number = self.port.getHost().port
        return self

    async def down(self):
        if self.port is None:
            return
        port, self.port = self.port, None
        await port.stopListening()
        for connection in list(self.connections):
            connection.transport.abortConnection()
        await until(lambda: not self.connections)


class _OctetCounted(_Tracked):
    """RFC 6587 octet counting: ``LENGTH SP MESSAGE``, one after another."""

    buffer = b""

    def dataReceived(self, data):
        self.buffer += data
        while b" " in self.buffer:
            length, _, rest = self.buffer.partition(b" ")
            if len(rest) < int(length):
                return
            self.factory.messages.append(rest[:int(length)])
            self.buffer = rest[int(length):]


class SyslogCollector(Receiver):
    """A syslog collector over TCP or TLS; ``messages`` as received."""

    protocol = _OctetCounted

    def __init__(self, tls_options=None):
        super().__init__(tls_options)
        self.messages = []


class _Datagrams(protocol.DatagramProtocol):
    def __init__(self):
        self.messages = []

    def datagramReceived(self, data, address):
        self.messages.append(data)


def udp_collector():
    """A syslog collector over UDP on loopback: (its port, its messages)."""
    receiver = _Datagrams()
    port = reactor.listenUDP(0, receiver, interface="127.0.0.1")
    return port, receiver.messages


def unix_collector(path):
    """A datagram socket at *path*, as the local syslog daemon has; a
    non-blocking socket the test reads with :func:`read_datagrams`."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    return sock


def read_datagrams(sock):
    found = []
    while True:
        try:
            found.append(sock.recv(65536))
        except BlockingIOError:
            return found


# hpfeeds, as its protocol description has it: frames of a 32-bit length
# (the whole frame) and an opcode; strings with a one-byte length.
OP_ERROR, OP_INFO, OP_AUTH, OP_PUBLISH = 0, 1, 2, 3


def _frame(opcode, payload):
    return struct.pack(">IB", len(payload) + 5, opcode) + payload


def _strings(payload, count):
    found = []
    for _ in range(count):
        found.append(payload[1:1 + payload[0]].decode())
        payload = payload[1 + payload[0]:]
    return found, payload


class _BrokerSession(_Tracked):
    buffer = b""
    ident = None

    def connectionMade(self):
        super().connectionMade()
        self.nonce = os.urandom(4)
        self.transport.write(_frame(OP_INFO, b"\x0ftest-broker-one" + self.nonce))

    def dataReceived(self, data):
        self.buffer += data
        while len(self.buffer) >= 5:
            length, opcode = struct.unpack(">IB", self.buffer[:5])
            if len(self.buffer) < length:
                return
            payload, self.buffer = self.buffer[5:length], self.buffer[length:]
            if opcode == OP_AUTH:
                [ident], digest = _strings(payload, 1)
                secret = self.factory.secrets.get(ident)
                if secret is None or digest != hashlib.sha1(self.nonce + secret).digest():
                    self.fail(b"accessfail")
                    return
                self.ident = ident
            elif opcode == OP_PUBLISH:
                [ident, channel], body = _strings(payload, 2)
                if ident != self.ident:
                    self.fail(b"accessfail")
                    return
                self.factory.published.append((channel, json.loads(body)))

    def fail(self, error):
        self.factory.errors.append(error)
        self.transport.write(_frame(OP_ERROR, error))
        self.transport.loseConnection()


class Broker(Receiver):
    """A minimal hpfeeds broker: *secrets* by ident; ``published`` holds
    (channel, decoded JSON) of each publish of an authenticated client."""

    protocol = _BrokerSession

    def __init__(self, secrets):
        super().__init__()
        self.secrets = secrets
        self.published = []
        self.errors = []


class _Collector(Resource):
    isLeaf = True

    def __init__(self, answer):
        super().__init__()
        self.requests = []
        self.answer = answer

    def render_POST(self, request):
        body = request.content.read()
        self.requests.append((request.path, request.getHeader("authorization"), body))
        code, answer = self.answer(request.path, body)
        request.setResponseCode(code)
        request.setHeader("content-type", "application/json")
        return json.dumps(answer).encode()


class _Web(Receiver):
    """A web server of one resource, ``resource``, answering POSTs with
    *answer(path, body)*."""

    def __init__(self, answer):
        super().__init__()
        self.resource = _Collector(answer)
        self.site = Site(self.resource)

    def buildProtocol(self, addr):
        return self.site.buildProtocol(addr)


def bulk_documents(body):
    """(action, document) pairs of a bulk request's NDJSON body."""
    lines = [json.loads(line) for line in body.decode().splitlines()]
    return list(zip(lines[0::2], lines[1::2]))


class BulkAPI(_Web):
    """Elasticsearch's ``POST /_bulk`` as its documentation describes it:
    ``create`` of an existing id answers 409; a document whose ``rcpt`` is
    in ``conflicts`` 400 (a mapping conflict, each time); ``statuses`` (a
    list the test fills) says the status of the next others instead of 201
    (429: too many requests)."""

    def __init__(self):
        super().__init__(self._bulk)
        self.documents = {}
        self.conflicts = set()
        self.statuses = []

    def _bulk(self, path, body):
        items = []
        for action, document in bulk_documents(body):
            meta = action["create"]
            key = (meta["_index"], meta["_id"])
            if document.get("rcpt") in self.conflicts:
                status = 400
            else:
                status = self.statuses.pop(0) if self.statuses else 201
            if status == 201 and key in self.documents:
                status = 409
            if status == 201:
                self.documents[key] = document
            items.append({"create": {"_index": meta["_index"], "_id": meta["_id"],
                                     "status": status}})
        return 200, {"took": 1, "errors": any(i["create"]["status"] >= 300 for i in items),
                     "items": items}


def hec_events(body):
    """The JSON objects of an HEC request's body, one after another."""
    decoder, text, found = json.JSONDecoder(), body.decode(), []
    index = 0
    while index < len(text):
        item, index = decoder.raw_decode(text, index)
        found.append(item)
    return found


class EventCollector(_Web):
    """Splunk's HTTP Event Collector, ``/services/collector/event``, with
    one *token*; ``events`` holds the objects of accepted requests."""

    def __init__(self, token):
        super().__init__(self._event)
        self.token = token
        self.events = []

    def _event(self, path, body):
        if path != b"/services/collector/event":
            return 404, {"text": "The requested URL was not found on this server.",
                         "code": 404}
        if self.resource.requests[-1][1] != f"Splunk {self.token}":
            return 403, {"text": "Invalid token", "code": 4}
        try:
            found = hec_events(body)
        except ValueError:
            return 400, {"text": "Invalid data format", "code": 6}
        self.events.extend(found)
        return 200, {"text": "Success", "code": 0}




class WebHook(_Web):
    """A chat server's incoming webhook: ``resource.requests`` holds
    (path, Authorization, body) of each POST."""

    def __init__(self):
        super().__init__(lambda path, body: (200, {"ok": True}))
