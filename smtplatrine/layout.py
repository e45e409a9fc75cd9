"""The data directory's layout, in one place::

    DATA_DIR/                    [server] data_dir
      spool/                     the hand-off from the SMTP side to storing
        messages/ID.eml, ID.json   a message and its record (smtplatrine.spool)
        sessions/SID.json          the record of a closed connection
        quarantine/ID.eml, ID.json, ID.reason   what cannot be stored, and why
      raw/                       raw messages under their SHA-256 (unless
                                 [store] raw_in_database)
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


@attrs.frozen
class DataDir:
    """The directories of a sensor: *root* (the data directory) and
    *attachments*; whether attachments and raw messages are kept there
    (else they are not kept on disk, or the raw messages are in the
    database)."""
    root: Path
    attachments: Path
    keep_attachments: bool
    keep_raw: bool

    @classmethod
    def of(cls, config):
        """The directories *config* says."""
        return cls(Path(config.server.data_dir),
                   config.data_path(config.smtp.smtp_attachments_path),
                   config.smtp.smtp_attachments_store, not config.store.raw_in_database)

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
        """Where new attachments and raw messages go: (attachments, raw),
        None for what is not kept on disk."""
        return (self.attachments if self.keep_attachments else None,
                self.raw if self.keep_raw else None)

    @property
    def owned(self):
        """The directories the unprivileged user must own (their trees)."""
        return [self.root, *filter(None, self.stores)]

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
        for directory in filter(None, self.stores):
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise SystemExit(f"smtplatrine: cannot create {directory}:"
                                 f" {e.strerror}; check smtp_attachments_path"
                                 f" in [smtp]") from None
        return self.stores
