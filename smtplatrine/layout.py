"""The data directory's layout, in one place::

    DATA_DIR/                    [server] data_dir
      spool/                     the hand-off from the SMTP side to storing
        messages/ID.eml, ID.json   a message and its record (smtplatrine.spool)
        sessions/SID.json          the record of a closed connection
        quarantine/ID.eml, ID.json, ID.reason   what cannot be stored, and why
      raw/                       raw messages under their SHA-256 (unless
                                 [store] raw_in_database; with SQLite
                                 those over 1 MiB even so)
      attachments/               attachments under their SHA-256
                                 ([smtp] smtp_attachments_path, if stored)
      tls/                       the self-signed certificate, if none is set

Paths the configuration gives (the SQLite file, the human log, the event
outputs' files) are relative to the data directory (``config.data_path``).
"""

from pathlib import Path

import attrs

# Inside the spool.
MESSAGES, SESSIONS, QUARANTINE = "messages", "sessions", "quarantine"

# With SQLite, a raw message over this many bytes is kept under raw/ even
# with [store] raw_in_database: to write a blob into a row (and raw is not
# its last column) SQLite holds it in memory twice over, some 100 MB more
# for a 50 MB message, where a file costs no more than the message.
SQLITE_INLINE_RAW = 2**20


@attrs.frozen
class RawStore:
    """Where raw messages go: under *directory*, by their SHA-256, but for
    those of *inline* bytes or fewer, which go in the database (None: none
    do)."""
    directory: Path
    inline: int | None = None

    def on_disk(self, size):
        """Whether a raw message of *size* bytes goes under :attr:`directory`."""
        return self.inline is None or size > self.inline


@attrs.frozen
class DataDir:
    """The directories of a sensor: *root* (the data directory) and
    *attachments*; whether attachments are kept there (else nowhere on
    disk), and which raw messages: all, those over *raw_inline* bytes
    (the smaller ones go in the database) or, with *keep_raw* false, none
    (all are in the database)."""
    root: Path
    attachments: Path
    keep_attachments: bool
    keep_raw: bool
    raw_inline: int | None = None

    @classmethod
    def of(cls, config):
        """The directories *config* says."""
        in_database = config.store.raw_in_database
        sqlite = config.engine.engine_backend != "mysql"
        return cls(Path(config.server.data_dir),
                   config.data_path(config.smtp.smtp_attachments_path),
                   config.smtp.smtp_attachments_store, not in_database or sqlite,
                   SQLITE_INLINE_RAW if in_database else None)

    @property
    def spool(self):
        return self.root / "spool"

    @property
    def quarantine(self):
        return self.spool / QUARANTINE

    @property
    def raw(self):
        return self.root / "raw"

    @property
    def tls(self):
        return self.root / "tls"

    @property
    def stores(self):
        """Where new attachments and raw messages go: (the attachments'
        directory, a :class:`RawStore`), None for what is not kept on disk."""
        return (self.attachments if self.keep_attachments else None,
                RawStore(self.raw, self.raw_inline) if self.keep_raw else None)

    @property
    def _store_directories(self):
        attachments, raw = self.stores
        return [d for d in (attachments, raw and raw.directory) if d]

    @property
    def owned(self):
        """The directories the unprivileged user must own (their trees)."""
        return [self.root, *self._store_directories]

    def make(self):
        """Make the data directory; one line for the operator if it
        cannot be made."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SystemExit(f"smtplatrine: cannot create data_dir {self.root}:"
                             f" {e.strerror}; set [server] data_dir") from None

    def make_stores(self):
        """Make the directories of :attr:`stores`, as :meth:`make` does;
        those directories."""
        for directory in self._store_directories:
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise SystemExit(f"smtplatrine: cannot create {directory}:"
                                 f" {e.strerror}; check smtp_attachments_path"
                                 f" in [smtp]") from None
        return self.stores
