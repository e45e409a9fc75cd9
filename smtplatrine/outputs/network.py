"""What the network outputs share: addresses, TLS, and a stream
connection opened when needed and opened again once lost."""

import re
from pathlib import Path

from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Factory, Protocol
from zope.interface import implementer

# Seconds a connection may take to open (TLS handshake included).
CONNECT_TIMEOUT = 10.0

# What an HTTP output's URL option may be.
URL = r"https?://[^\s?#]+"

_ADDRESS = re.compile(r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9._-]+))"
                      r"(?::(?P<port>[0-9]{1,5}))?")


def host_port(text, default_port):
    """(host, port) of ``HOST[:PORT]`` or ``[IPv6][:PORT]``."""
    match = _ADDRESS.fullmatch(text)
    port = int(match["port"] or default_port) if match else 0
    if not match or not 0 < port < 65536:
        raise ValueError(f"{text!r} is not HOST:PORT or [IPv6]:PORT")
    return match["v6"] or match["host"], port


def trust_root(ca_file):
    """The CAs of the PEM file *ca_file* as a trust root; None (the
    system's CAs) when it is empty."""
    if not ca_file:
        return None
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding
    from twisted.internet import ssl

    certificates = x509.load_pem_x509_certificates(Path(ca_file).read_bytes())
    return ssl.trustRootFromCertificates([
        ssl.Certificate.loadPEM(c.public_bytes(Encoding.PEM)) for c in certificates])


def tls_options(hostname, ca_file="", certificate="", private_key=""):
    """Client TLS options that check the server's certificate for
    *hostname* against the CAs of the PEM file *ca_file* (empty: the
    system's), with the client certificate *certificate* and its
    *private_key* (PEM files) when given."""
    from twisted.internet import ssl

    trust = trust_root(ca_file)
    client = None
    if certificate:
        client = ssl.PrivateCertificate.loadPEM(
            Path(certificate).read_bytes() + b"\n"
            + Path(private_key or certificate).read_bytes())
    return ssl.optionsForClientTLS(hostname, trustRoot=trust, clientCertificate=client)


@implementer(IHandshakeListener)
class StreamProtocol(Protocol):
    """A client connection; ``ready`` fires with it once it can be
    written to (after the TLS handshake, with TLS), or fails."""

    def __init__(self, tls=False):
        self.ready = defer.Deferred()
        self._tls = tls

    def connectionMade(self):
        if not self._tls:
            self.ready.callback(self)

    def handshakeCompleted(self):
        if not self.ready.called:
            self.ready.callback(self)

    def dataReceived(self, data):
        """What the peer says is not listened to."""

    def connectionLost(self, reason):
        self.connected = 0
        if not self.ready.called:
            self.ready.errback(reason)


class Connection:
    """One stream connection to *host* and *port* (TLS with *tls*, client
    TLS options), opened on demand by :meth:`protocol` and again after it
    was lost.  *make* builds the protocol (a :class:`StreamProtocol`)."""

    def __init__(self, reactor, host, port, make, tls=None):
        endpoint = HostnameEndpoint(reactor, host, port, timeout=CONNECT_TIMEOUT)
        self._endpoint = wrapClientTLS(tls, endpoint) if tls is not None else endpoint
        self._make = make
        self._reactor = reactor
        self._protocol = None

    async def protocol(self):
        """The connected protocol, connected now if it was not."""
        if self._protocol is not None and self._protocol.connected:
            return self._protocol
        self._protocol = None
        connecting = self._endpoint.connect(Factory.forProtocol(self._make))
        protocol = await connecting.addTimeout(CONNECT_TIMEOUT, self._reactor)
        ready = protocol.ready.addTimeout(CONNECT_TIMEOUT, self._reactor)
        try:
            await ready
        except Exception:
            if protocol.connected:
                protocol.transport.abortConnection()
            raise
        self._protocol = protocol
        return protocol

    def close(self):
        if self._protocol is not None and self._protocol.connected:
            self._protocol.transport.loseConnection()
