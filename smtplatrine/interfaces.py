"""Extension points, and the records that cross them.

An enricher learns something about an indicator of a stored message (an IP
address, an attachment's SHA-256, a domain) after the message's transaction
has committed.  Enrichers are plugins: objects providing :class:`IEnricher`
(and ``twisted.plugin.IPlugin``) at the top level of a module in a
``twisted/plugins/`` directory on the Python path; see README.rst,
"Writing an enricher".
"""

import attrs
from zope.interface import Attribute, Interface

# What an enricher may look at: a public IP address (the client's, or one
# of the message's Received chain), the SHA-256 of an attachment, or a
# domain (of the envelope sender, or a URL host).
KINDS = ("ip", "sha256", "domain")


@attrs.frozen
class Context:
    """What :meth:`IEnricher.configure` gets: the ``[meta]`` settings
    (:class:`smtplatrine.config.Meta`), the reactor (clock included) and an
    HTTP client with treq's API (``treq.testing.StubTreq`` in tests)."""
    settings: object
    reactor: object
    http: object


@attrs.frozen
class Result:
    """What a lookup learnt: *data* a JSON-ready dict, or None for "nothing
    known" (cached too).  *hold* > 0 says the provider must not be asked
    again for that many seconds (its quota for now is spent)."""
    data: dict | None
    hold: float = 0.0


class RateLimited(Exception):
    """The provider refused for now (HTTP 429); ask again in ``seconds``."""

    def __init__(self, seconds, reason="rate limited"):
        super().__init__(reason)
        self.seconds = seconds


class LookupFailed(Exception):
    """The lookup failed for the reason given; *transient* failures (a
    timeout, a server error) are tried again later, others are not."""

    def __init__(self, reason, transient=False):
        super().__init__(reason)
        self.transient = transient


class IEnricher(Interface):
    """Looks indicators up with one provider.

    The plugin object is the enricher unconfigured; the service calls
    :meth:`configure` once at start and uses what it returns.  Lookups run
    after the commit, never in the SMTP path; the service caches results in
    the database, keeps the provider's quota, applies a timeout and
    isolates failures, so an enricher needs none of that itself.
    """

    name = Attribute("The provider's key in the database and in events:"
                     " lower case letters, digits and _, at most 32.")
    kinds = Attribute("The indicator kinds it looks at, a subset of KINDS.")
    ttl = Attribute("Seconds a result stays cached.")
    negative_ttl = Attribute("Seconds a \"nothing known\" result stays cached.")
    per_minute = Attribute("Lookups allowed per minute, 0 for no limit; the"
                           " count is shared by all sensors of a database.")
    per_day = Attribute("Lookups allowed per UTC day, 0 for no limit.")

    def configure(context):
        """The enricher ready to look up with *context* (a :class:`Context`),
        or None when it is off (say why in one warning).  Heavy imports
        and files are opened here, never at plugin import."""

    def lookup(kind, indicator):
        """A Deferred (or coroutine) firing with a :class:`Result` for
        *indicator* of *kind*, validated already; it may fail with
        :class:`RateLimited` or :class:`LookupFailed`."""
