"""Extension points, and the records that cross them.

An enricher learns something about an indicator of a stored message (an IP
address, an attachment's SHA-256, a domain) after the message's transaction
has committed.  An event output delivers every event (see
``smtplatrine.events``) somewhere: a file, syslog, a broker, a search
engine.  Both are plugins: objects providing :class:`IEnricher` or
:class:`IEventOutput` (and ``twisted.plugin.IPlugin``) at the top level of
a module in a ``twisted/plugins/`` directory on the Python path; see
README.rst, "Writing an enricher" and "Writing an output".

A plugin declares its own options as an attrs class of simple fields
(bool, int, float, str, tuple[str, ...]), read from its own section of the
configuration (``[output_NAME]``, ``[enricher_NAME]``) and validated at
start with the rest of it.

An enricher of attachments gets more than a hash if it asks: the stored
file (``Context.files``), a sandbox to open it in (``Context.sandbox``),
where the message showed it (:class:`Sighting`), and it may hand back the
files it found inside (``Result.files``), which become attachments of
their own.
"""

from pathlib import Path

import attrs
from attrs import validators as v
from twisted.logger import Logger
from zope.interface import Attribute, Interface

log = Logger()

# What an enricher may look at: a public IP address (the client's, or one
# of the message's Received chain), the SHA-256 of an attachment, or a
# domain (of the envelope sender, or a URL host).
KINDS = ("ip", "sha256", "domain")


def option(default, validator=None, allowed=None, required=False):
    """A field of a plugin's options class: its *default*, an attrs
    *validator*, the text that tells an operator what is *allowed* (for a
    bad value), and whether it is *required* (not empty) when the plugin
    is enabled."""
    metadata = {"required": required}
    if allowed is not None:
        metadata["allowed"] = allowed
    return attrs.field(default=default, validator=validator, metadata=metadata)


@attrs.frozen
class OutputOptions:
    """The options every output has; an output's options class derives
    from this one (and may change the default of ``enabled``)."""
    enabled: bool = False
    queue_size: int = option(10000, v.gt(0), "a whole number > 0")
    retry_max_delay: float = option(60.0, v.gt(0), "a number of seconds > 0")


def discover(interface, package=None):
    """Every plugin providing *interface* in *package* (``twisted.plugins``
    by default), in the order of their names; of two with one name the
    first found is kept, the other said in a warning."""
    from twisted.plugin import getPlugins
    found = {}
    for plugin in getPlugins(interface, package):
        if plugin.name in found:
            log.warn("two plugins are named {name}; {plugin!r} is ignored",
                     name=plugin.name, plugin=plugin)
            continue
        found[plugin.name] = plugin
    return [found[name] for name in sorted(found)]


@attrs.frozen
class Context:
    """What :meth:`IEnricher.configure` gets: the ``[meta]`` settings
    (:class:`smtplatrine.config.Meta`), the reactor (clock included), an
    HTTP client with treq's API (``treq.testing.StubTreq`` in tests), and
    the enricher's own options (an instance of its ``options`` class, read
    from ``[enricher_NAME]``; None when it declares none).

    *files* is the attachment store (:class:`smtplatrine.files.FileStore`:
    ``path(sha256)``), None when attachments are not kept on disk;
    *sandbox* runs functions on hostile files in processes with limits
    (:class:`smtplatrine.enrich.sandbox.Sandbox`), None where there is
    none."""
    settings: object
    reactor: object
    http: object
    options: object = None
    files: object = None
    sandbox: object = None


@attrs.frozen
class Sighting:
    """Where a message showed the *indicator* of *kind*: the message's id
    and *source* (``client``, ``received``, ``attachment``, ``member``,
    ``sender``, ``url``; ``queue`` for a lookup that waited in the queue).
    For a file, the row of ``honeypot_attachments`` (*attachment_id*, and
    *parent_id* for a member of another file), its name and declared type
    as the sender gave them (untrusted), and its *depth* (0 for a MIME
    part, 1 for a member of one, ...).  *body* is the message's text body,
    or its HTML body when it has no text, clipped to 64 KiB: where senders
    give the password of an archive."""
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
    and *sha1*.  *parent* is the index, in the same ``Result.files``, of
    the member that holds it (None: the looked-up file itself), *position*
    its place there.  *flags* say what kept it from being extracted, or
    what is odd about it."""
    name: str
    size: int | None
    sha256: str | None = None
    md5: str | None = None
    sha1: str | None = None
    parent: int | None = None
    position: int = 0
    flags: tuple = ()


@attrs.frozen
class OutputContext:
    """What :meth:`IEventOutput.configure` gets: its options (read from
    ``[output_NAME]``), the reactor, the sensor's name and the data
    directory (relative paths of its options are under it)."""
    options: object
    reactor: object
    sensor: str
    data_dir: Path


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


class ISpoolConsumer(Interface):
    """Hears of what the spool holds as soon as it is whole on disk: the
    server's handle on the storing process, which tells the pipeline."""

    def notify(kind, item):
        """The spool holds *kind* (``"message"`` or ``"session"``) *item*
        (its id), whole and durable.  What it misses, its scans find."""


class IStoredConsumer(Interface):
    """Hears of each message once its transaction is durable: the storing
    process (its enrichment and metrics), an import."""

    def stored(prepared):
        """The :class:`~smtplatrine.capture.Prepared` message was stored.
        It must not wait; should it raise, that is only logged."""


class IEnricher(Interface):
    """Looks indicators up with one provider.

    The plugin object is the enricher unconfigured; the service calls
    :meth:`configure` once at start and uses what it returns.  Lookups run
    after the commit, never in the SMTP path; the service caches results in
    the database, keeps the provider's quota, applies a timeout and
    isolates failures, so an enricher needs none of that itself.

    An enricher with options of its own declares them as ``options``, an
    attrs class (see :func:`option`); it gets them, read from
    ``[enricher_NAME]``, as ``context.options``.
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
    #   summary(data)
    #              flat fields (text, numbers, booleans) the enrichment
    #              event of a new result carries beside ``found``

    def configure(context):
        """The enricher ready to look up with *context* (a :class:`Context`),
        or None when it is off (say why in one warning).  Heavy imports
        and files are opened here, never at plugin import."""

    def lookup(kind, indicator):
        """A Deferred (or coroutine) firing with a :class:`Result` for
        *indicator* of *kind*, validated already; it may fail with
        :class:`RateLimited` or :class:`LookupFailed`.  With ``sightings``
        it is called with the :class:`Sighting` as a third argument."""


class IEventOutput(Interface):
    """Delivers events somewhere, in batches.

    The plugin object is the output unconfigured; the storing process calls
    :meth:`configure` once at start, when its section says ``enabled``,
    and uses what it returns.  The service gives it events through a
    bounded queue of its own, calls :meth:`send` with one batch at a time,
    waits for it (with a timeout), retries a failed batch with back-off and
    counts what the queue had to drop, so an output needs none of that
    itself; it must never block the reactor.
    """

    name = Attribute("Its section is [output_NAME]: lower case letters,"
                     " digits and _, at most 32.")
    options = Attribute("Its options: an attrs class deriving from"
                        " OutputOptions.")
    batch_size = Attribute("The most events one send gets.")
    flush_interval = Attribute("Seconds an event may wait for others to"
                               " fill a batch (0: send at once).")

    def configure(context):
        """The output ready to send with *context* (an
        :class:`OutputContext`), or None when it cannot run (say why in
        one line).  Files are opened (created) and heavy modules imported
        here, never at plugin import."""

    def send(events):
        """Deliver *events* (a list of flat dicts); a Deferred (or
        coroutine) that fires once they are delivered, with the number of
        them the receiver refused for good (None: none), or fails when
        they were not (they are sent again later; a connection is opened
        again then)."""

    def close():
        """Let go of connections and files (a Deferred, or None)."""
