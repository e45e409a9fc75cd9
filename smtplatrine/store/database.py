"""The database behind an adbapi pool: opened (created, upgraded) once, then
interactions that fail say whether to retry later (:class:`Unavailable`) or
never (:class:`Rejected`)."""

from twisted.internet import defer, threads
from twisted.logger import Logger

from smtplatrine.store import schema
from smtplatrine.store.dialects import Rejected, Unavailable

log = Logger()


class Database:
    """*dialect* says which database and how to reach it.  *grouped*: commits
    need not be durable one by one; ``dialect.sync()`` makes them so.
    *readonly*: never write, only check that the schema is recent enough
    (a MySQL account with SELECT only will do)."""

    def __init__(self, dialect, create=True, grouped=False, readonly=False):
        self.dialect = dialect
        self._create = create and not readonly
        self.readonly = readonly
        # Read now: after the privilege drop the package may be out of reach.
        self._migrations = dialect.migrations()
        self.pool = dialect.pool(grouped, readonly)
        self._open = False
        self._waiting = []

    async def open(self):
        """Create the database if allowed and bring its schema up to date
        (read-only: check it is)."""
        if self.readonly:
            version, applied = await self.run(schema.check, self.dialect,
                                              self._migrations), []
        else:
            try:
                await threads.deferToThread(self.dialect.prepare)
            except Exception as e:
                raise self._map(e) from None
            version, applied = await self.run(schema.upgrade, self.dialect,
                                              self._migrations, self._create)
        self.max_packet = await self.run(self.dialect.max_packet)
        if applied:
            log.info("database {db}: schema upgraded to version {version}",
                     db=self.dialect.describe(), version=version)
        self._open = True
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)
        return version

    def when_open(self):
        """A Deferred that fires once :meth:`open` has brought the schema
        up to date (at once if it has)."""
        if self._open:
            return defer.succeed(None)
        d = defer.Deferred()
        self._waiting.append(d)
        return d

    async def run(self, interaction, *args):
        """``interaction(cursor, *args)`` in one transaction.  A connection
        lost under it is retried once at once (adbapi reconnects but does
        not re-run); other failures raise Unavailable or Rejected."""
        for attempt in (1, 2):
            try:
                return await self.pool.runInteraction(interaction, *args)
            except (Unavailable, Rejected):
                raise
            except Exception as e:
                error = self._map(e)
                if isinstance(error, Rejected) or attempt == 2:
                    raise error from None

    def check_size(self, prepared):
        """Reject, before sending it, a message whose row the server would
        refuse: escaped, text and bytes may take twice their size."""
        parsed = prepared.parsed
        size = 2 * (len(prepared.raw or b"") + len(parsed.body_text.encode())
                    + len(parsed.body_html.encode())
                    + sum(len((v or "").encode()) for v in parsed.fields.values()))
        if size + 65536 > self.max_packet:
            raise Rejected(
                f"its row may take {size} bytes, over the server's limit of"
                f" {self.max_packet} (max_allowed_packet); raise it, or set"
                f" [store] raw_in_database = false")

    def _map(self, error):
        mapped = self.dialect.classify(error)
        if mapped is None:
            raise error
        return mapped

    def close(self):
        self.pool.close()
