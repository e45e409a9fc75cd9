"""The attachment store: every file kept once, under its SHA-256.

``attachments/AB/ABCDEF...`` under ``smtp_attachments_path``: the MIME
parts the pipeline stores and the members the analysis finds inside them.
A name an attacker chose is never part of a path.
"""

import hashlib
import os
import re
from pathlib import Path

_SHA256 = re.compile(r"[0-9a-f]{64}")


def relative_path(sha256):
    """Where the file of *sha256* lives, relative to the store."""
    return os.path.join(sha256[:2], sha256)


def keep(directory, data, sha256=None, sync=True):
    """Keep the bytes-like *data* once under *directory* by its SHA-256;
    its relative path (see :func:`keep_chunks`)."""
    return keep_chunks(directory, (data,), sha256 or hashlib.sha256(data).hexdigest(), sync)


def keep_chunks(directory, chunks, sha256, sync=True):
    """Keep the file of *sha256*, whose bytes are *chunks* (bytes-like,
    written one after the other), once under *directory*; its relative
    path.  Written to a temporary name, (with *sync*) flushed to disk,
    then renamed: a reader never sees half a file.  Written by root (an
    operator's ``smtplatrine import``), the file and its folder go to the
    owner of *directory*: the sensor's user, which must add files beside
    them."""
    relative = relative_path(sha256)
    path = os.path.join(directory, relative)
    if not os.path.exists(path):
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.{id(chunks)}.tmp"
        with open(tmp, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        if os.geteuid() == 0:
            owner = os.stat(directory)
            for name in (folder, tmp):
                os.chown(name, owner.st_uid, owner.st_gid)
        os.replace(tmp, path)
    return relative


class FileStore:
    """The store under *directory*, as enrichers see it."""

    def __init__(self, directory):
        self.directory = Path(directory)

    def path(self, sha256):
        """The stored file of *sha256* (a hex digest), or None if there is
        none."""
        if not _SHA256.fullmatch(sha256 or ""):
            return None
        path = self.directory / relative_path(sha256)
        return path if path.is_file() else None
