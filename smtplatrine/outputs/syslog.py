"""The syslog output: each event as a syslog message whose text is the
event in JSON.

To the local syslog (``transport = unix``, the socket ``/dev/log``) in the
form the C library's syslog(3) sends, which rsyslog, syslog-ng and
journald read; to a remote collector in RFC 5424's form, over UDP (RFC
5426: one message per datagram, no delivery guarantee), TCP (RFC 6587,
octet counting) or TLS (RFC 5425).  The severity is the event's level in
the catalogue; the MSGID its ``eventid``.
"""

import json
import os
import socket
import time

import attrs
from attrs import validators as v
from twisted.internet import threads
from twisted.logger import LogLevel
from twisted.plugin import IPlugin
from zope.interface import implementer

from smtplatrine.config import facility
from smtplatrine.events import EVENTS
from smtplatrine.interfaces import IEventOutput, OutputOptions, option
from smtplatrine.outputs import network

FACILITY_CODES = {"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5,
                  "lpr": 6, "news": 7, "uucp": 8, "cron": 9, "authpriv": 10,
                  **{f"local{i}": 16 + i for i in range(8)}}
SEVERITIES = {LogLevel.debug: 7, LogLevel.info: 6, LogLevel.warn: 4,
              LogLevel.error: 3, LogLevel.critical: 2}
DEFAULT_PORTS = {"udp": 514, "tcp": 514, "tls": 6514}
_MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()


@attrs.frozen
class Options(OutputOptions):
    transport: str = option("unix", v.in_(["unix", "udp", "tcp", "tls"]),
                            "unix, udp, tcp or tls")
    address: str = option("/dev/log", required=True,
                          allowed="a socket path (unix), or HOST:PORT or [IPv6]:PORT")
    facility: str = facility("local0")
    app_name: str = option("smtplatrine", v.matches_re(r"[!-~]{1,48}"),
                           "1 to 48 printable ASCII characters without spaces")
    ca_file: str = ""
    certificate: str = ""
    private_key: str = ""


def _token(text, length):
    """*text* as an RFC 5424 header field: printable ASCII, no spaces, at
    most *length* characters; ``-`` when nothing is left."""
    kept = "".join(c if "!" <= c <= "~" else "_" for c in str(text or ""))[:length]
    return kept or "-"


def _priority(code, event):
    level = EVENTS.get(event.get("eventid"), (LogLevel.info,))[0]
    return code * 8 + SEVERITIES[level]


def rfc5424(event, code, hostname, app_name, procid):
    """The RFC 5424 message of *event* (no structured data; the message
    is the event's JSON, which is ASCII)."""
    header = (f"<{_priority(code, event)}>1 {_token(event.get('timestamp'), 64)}"
              f" {_token(hostname, 255)} {app_name} {procid}"
              f" {_token(event.get('eventid'), 32)} -")
    return f"{header} {json.dumps(event, sort_keys=True)}".encode("ascii")


def local(event, code, app_name, procid, now):
    """The message of *event* as syslog(3) sends it to the local socket."""
    t = time.localtime(now)
    stamp = f"{_MONTHS[t.tm_mon - 1]} {t.tm_mday:2d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
    return (f"<{_priority(code, event)}>{stamp} {app_name}[{procid}]:"
            f" {json.dumps(event, sort_keys=True)}").encode("ascii")


class _Datagrams:
    """A connected, non-blocking datagram socket, made again after an
    error (the collector or the syslog daemon was restarted)."""

    def __init__(self, reactor, transport, address):
        self._reactor = reactor
        self._transport = transport
        self._address = address
        self._socket = None

    async def _open(self):
        if self._transport == "unix":
            family, target = socket.AF_UNIX, self._address
        else:
            host, port = network.host_port(self._address, DEFAULT_PORTS["udp"])
            found = await threads.deferToThreadPool(
                self._reactor, self._reactor.getThreadPool(), socket.getaddrinfo,
                host, port, type=socket.SOCK_DGRAM)
            family, _, _, _, target = found[0]
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setblocking(False)
        try:
            sock.connect(target)
        except OSError:
            sock.close()
            raise
        return sock

    async def send(self, messages):
        if self._socket is None:
            self._socket = await self._open()
        try:
            for message in messages:
                self._socket.send(message)
        except OSError:
            self.close()
            raise

    def close(self):
        if self._socket is not None:
            self._socket.close()
            self._socket = None


class _Stream:
    """A TCP or TLS connection; messages framed by octet counting."""

    def __init__(self, reactor, transport, address, options):
        host, port = network.host_port(address, DEFAULT_PORTS[transport])
        tls = None
        if transport == "tls":
            tls = network.tls_options(host, options.ca_file, options.certificate,
                                      options.private_key)
        self._connection = network.Connection(
            reactor, host, port, lambda: network.StreamProtocol(tls is not None), tls)

    async def send(self, messages):
        protocol = await self._connection.protocol()
        protocol.transport.writeSequence(
            [b"%d %s" % (len(message), message) for message in messages])

    def close(self):
        self._connection.close()


@implementer(IPlugin, IEventOutput)
@attrs.frozen
class Syslog:
    name = "syslog"
    options = Options
    batch_size = 100
    flush_interval = 0.0

    channel: object = None
    format: object = None

    def configure(self, context):
        options = context.options
        code, app = FACILITY_CODES[options.facility], options.app_name
        if options.transport in ("unix", "udp"):
            channel = _Datagrams(context.reactor, options.transport, options.address)
            if options.transport == "udp":
                network.host_port(options.address, DEFAULT_PORTS["udp"])
        else:
            channel = _Stream(context.reactor, options.transport, options.address, options)
        if options.transport == "unix":
            def format(event):
                return local(event, code, app, os.getpid(), context.reactor.seconds())
        else:
            def format(event):
                return rfc5424(event, code, context.sensor, app, os.getpid())
        return attrs.evolve(self, channel=channel, format=format)

    def send(self, events):
        return self.channel.send([self.format(event) for event in events])

    def close(self):
        self.channel.close()
