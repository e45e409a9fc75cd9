"""Extension points, and the records that cross them.

An enricher learns something about an indicator of a stored message (an IP
address, an attachment's SHA-256, a domain) after the message's transaction
has committed.  Enrichers are plugins: objects providing :class:`IEnricher`
(and ``twisted.plugin.IPlugin``) at the top level of a module in a
``twisted/plugins/`` directory on the Python path; see README.rst,
"Writing an enricher".

An enricher of attachments gets more than a hash if it asks: the stored
file (``Context.files``), a sandbox to open it in (``Context.sandbox``),
where the message showed it (:class:`Sighting`), and it may hand back the
files it found inside (``Result.files``), which become attachments of
their own.
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
    HTTP client with treq's API (``treq.testing.StubTreq`` in tests).

    *files* is the attachment store (:class:`smtplatrine.files.FileStore`:
    ``path(sha256)``), None when attachments are not kept on disk;
    *sandbox* runs functions on hostile files in processes with limits
    (:class:`smtplatrine.enrich.sandbox.Sandbox`), None where there is
    none; *sections* holds the settings of each plugin's own section,
    ``[enricher_NAME]`` (see :attr:`IEnricher.settings`)."""
    settings: object
    reactor: object
    http: object
    files: object = None
    sandbox: object = None
    sections: dict = attrs.field(factory=dict)


@attrs.frozen
class Sighting:
    """Where a message showed the *indicator* of *kind*: the message's id
    and *source* (``client``, ``received``, ``attachment``, ``member``,
    ``sender``, ``url``; ``queue`` for a lookup that waited in the queue).  For a file, the row of ``honeypot_attachments``
    (*attachment_id*, and *parent_id* for a member of another file), its
    name and declared type as the sender gave them (untrusted), and its
    *depth* (0 for a MIME part, 1 for a member of one, ...).  *body* is
    the message's text body, or its HTML body when it has no text,
    clipped to 64 KiB: where senders give the password of an archive."""
    kind: str
    indicator: str
    message: str
    source: str
    attachment_id: str | None = None
    parent_id: str | None = None
    filename: str | None = None
    content_type: str | None = None
    depth: int = 0
    body: str = ""


@attrs.frozen
class Member:
    """A file found inside another: its *name* there (untrusted text,
    never a path), *size*, and *sha256* once it has been written to the
    attachment store (None: listed only, not extracted), with its *md5*
    and *sha1*.  *parent* is the
    index, in the same ``Result.files``, of the member that holds it (None:
    the looked-up file itself), *position* its place there.  *flags* say
    what kept it from being extracted, or what is odd about it."""
    name: str
    size: int | None
    sha256: str | None = None
    md5: str | None = None
    sha1: str | None = None
    parent: int | None = None
    position: int = 0
    flags: tuple = ()


@attrs.frozen
class Result:
    """What a lookup learnt: *data* a JSON-ready dict, or None for "nothing
    known" (cached too).  *hold* > 0 says the provider must not be asked
    again for that many seconds (its quota for now is spent).  *ttl*, if
    given, replaces the enricher's cache time for this result (0: look
    again at the next sighting).  *files*: the :class:`Member` files found
    inside the looked-up one; the service records them with the result,
    adds them to each message that carries the file as attachments of
    their own, and has every other enricher look at them."""
    data: dict | None
    hold: float = 0.0
    ttl: float | None = None
    files: tuple = ()


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

    # Optional attributes, read with getattr(enricher, name, default):
    #   settings   an attrs class: the keys and defaults of the plugin's
    #              own section [enricher_NAME], read from the configuration
    #              directory and handed over as context.sections[section]
    #   sightings  True: lookup(kind, indicator, sighting) gets the
    #              Sighting of the message that asked
    #   timeout    seconds a lookup may take, instead of [meta] meta_timeout
    #   save(cursor, dialect, kind, indicator, data)
    #              called with each new result, in the transaction that
    #              stores it: keep what was learnt in tables of one's own
    #              (a DB-API cursor; dialect.sql() turns ? into the driver's
    #              placeholder)
    #   sighted(cursor, dialect, sighting, data)
    #              called for every sighting once its result is known, new
    #              or cached, in a transaction: what depends on the message
    #              (the attachment's name, say) rather than on the indicator

    def configure(context):
        """The enricher ready to look up with *context* (a :class:`Context`),
        or None when it is off (say why in one warning).  Heavy imports
        and files are opened here, never at plugin import."""

    def lookup(kind, indicator):
        """A Deferred (or coroutine) firing with a :class:`Result` for
        *indicator* of *kind*, validated already; it may fail with
        :class:`RateLimited` or :class:`LookupFailed`.  With ``sightings``
        it is called with the :class:`Sighting` as a third argument."""
