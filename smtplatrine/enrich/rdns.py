"""Reverse DNS of an IP address through twisted.names, never blocking."""

import ipaddress

import attrs
from twisted.internet import defer
from twisted.plugin import IPlugin
from zope.interface import implementer

from smtplatrine.enrich.base import Enricher, cache_times
from smtplatrine.events import printable
from smtplatrine.interfaces import IEnricher, LookupFailed, Result

# The PTR names kept of one answer, which the address's owner chooses.
MAX_NAMES = 10


@implementer(IPlugin, IEnricher)
@attrs.frozen
class ReverseDNS(Enricher):
    """The PTR names of an IP address; nothing known on NXDOMAIN."""
    name = "rdns"
    kinds = ("ip",)
    resolver: object = None
    timeout: float = 5.0

    def configure(self, context):
        settings = context.settings
        if not settings.rdns_enable:
            return None
        from twisted.names import client
        if settings.rdns_server:
            host, _, port = settings.rdns_server.rpartition(":")
            resolver = client.Resolver(servers=[(host.strip("[]"), int(port))],
                                       reactor=context.reactor)
        else:
            resolver = client.Resolver(resolv="/etc/resolv.conf", reactor=context.reactor)
        return attrs.evolve(self, resolver=resolver, timeout=settings.rdns_timeout,
                            **cache_times(settings))

    async def lookup(self, kind, indicator):
        from twisted.names import dns, error
        name = ipaddress.ip_address(indicator).reverse_pointer
        try:
            answers, _, _ = await self.resolver.lookupPointer(name, timeout=(self.timeout,))
        except (error.DomainError, error.AuthoritativeDomainError):
            return Result(None)
        except defer.CancelledError:
            raise
        except Exception as e:
            raise LookupFailed(f"DNS: {e.__class__.__name__}", transient=True) from None
        names = [printable(rr.payload.name.name)[:255] for rr in answers
                 if rr.type == dns.PTR][:MAX_NAMES]
        return Result({"ptr": names} if names else None)
