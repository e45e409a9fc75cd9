"""Messages kept in files, for ``smtplatrine import``: ``.eml`` files,
directories of them, mbox files and Maildirs.

:func:`find` turns the paths an analyst names into the files to read, and
:func:`messages` reads them one message at a time, so that an mbox of any
size costs the memory of its largest message (each cut at a limit, as the
SMTP side cuts what it receives).  A file that begins with an mbox
``From`` line is an mbox (one message or many); any other named file is
one message.  In a directory (walked without following links) a Maildir's
``cur`` and ``new`` are read, and every other file that begins like mail
(a ``From`` line or a header field) is; the rest is skipped and counted.
"""

import calendar
import contextlib
import os
import re
from email.utils import parsedate_tz
from pathlib import Path

import attrs

_BOM = b"\xef\xbb\xbf"
# The start of a message: a header field (names as mailers write them).
_HEADER_FIELD = re.compile(rb"[A-Za-z0-9-]+[ \t]*:")
_SNIFF = 4096


@attrs.frozen
class Message:
    """One message found in a file.

    ``index`` is its number in an mbox (from 1; None for a file of one
    message); ``sender`` and ``date`` are those of its mbox ``From`` line
    (epoch seconds, None if absent or unreadable); ``mtime`` is that of the
    file; ``done`` the bytes of all files read up to its end.
    """

    raw: bytes
    path: Path
    index: int | None
    sender: str | None
    date: float | None
    mtime: float
    truncated: bool
    done: int


@attrs.frozen
class Found:
    """The files to read (path, whether an mbox) and the files skipped in
    directories for not looking like mail."""

    files: tuple
    skipped: tuple

    @property
    def size(self):
        total = 0
        for path, _ in self.files:
            try:
                total += path.stat().st_size
            except OSError:
                pass
        return total


def find(paths):
    """The files that *paths* (files and directories) name.  A path that
    does not exist raises FileNotFoundError."""
    files, skipped = [], []
    for path in map(Path, paths):
        path = path.absolute()
        if path.is_dir():
            _walk(path, files, skipped)
        elif path.exists():
            files.append((path, _looks_like(path) == "mbox"))
        else:
            raise FileNotFoundError(2, "no such file or directory", str(path))
    return Found(tuple(files), tuple(skipped))


def _walk(top, files, skipped):
    for root, dirs, names in os.walk(top):
        dirs.sort()
        root = Path(root)
        if _is_maildir(root):
            # Maildir++ folders (.Spam) are Maildirs below it; tmp holds
            # messages still being delivered.
            dirs[:] = [d for d in dirs if d not in ("cur", "new", "tmp")]
            for sub in ("new", "cur"):
                for entry in sorted(os.scandir(root / sub), key=lambda e: e.name):
                    if entry.is_file(follow_symlinks=False) and not entry.name.startswith("."):
                        files.append((Path(entry.path), False))
            continue
        for name in sorted(names):
            path = root / name
            if name.startswith(".") or not path.is_file() or path.is_symlink():
                continue
            kind = _looks_like(path)
            if kind is None:
                skipped.append(path)
            else:
                files.append((path, kind == "mbox"))


def _is_maildir(path):
    return all((path / sub).is_dir() for sub in ("cur", "new", "tmp"))


def _looks_like(path):
    """"mbox", "message" or None (no mail), from the start of the file."""
    try:
        with open(path, "rb") as f:
            start = f.read(_SNIFF)
    except OSError:
        return "message"  # reading it says why
    start = start.removeprefix(_BOM)
    if start.startswith(b"From ") and not re.match(rb"From[ \t]*:", start):
        return "mbox"
    return "message" if _HEADER_FIELD.match(start) else None


def messages(files, limit):
    """Yield a :class:`Message` for each message in *files* (as :func:`find`
    gives them), each cut at *limit* bytes.  An unreadable file yields its
    OSError (to be reported) and the others go on."""
    before = 0  # bytes of the files read so far
    for path, mbox in files:
        try:
            for message in _mbox(path, limit) if mbox else [_single(path, limit)]:
                yield attrs.evolve(message, done=before + message.done)
        except OSError as e:
            yield e
        with contextlib.suppress(OSError):
            before += path.stat().st_size


def _single(path, limit):
    with open(path, "rb") as f:
        raw = f.read(limit + 1)
        size = os.fstat(f.fileno()).st_size
        mtime = os.fstat(f.fileno()).st_mtime
    return Message(raw[:limit], path, None, None, None, mtime, len(raw) > limit, size)


def _mbox(path, limit):
    """The messages of an mbox: each begins at a ``From`` line that begins
    the file or follows an empty line; the empty line before it is the
    mbox's, not the message's.  ``>From`` lines are kept as written."""
    with open(path, "rb") as f:
        mtime = os.fstat(f.fileno()).st_mtime
        index, envelope, lines, size, done = 0, None, [], 0, 0
        previous_empty = True
        for line in f:
            if not done:
                line = line.removeprefix(_BOM)
            if line.startswith(b"From ") and previous_empty and not re.match(
                    rb"From[ \t]*:", line):
                if envelope is not None:
                    yield _mbox_message(path, index, envelope, lines, size, limit, mtime, done)
                index += 1
                envelope, lines, size = line, [], 0
            elif envelope is not None:
                if size <= limit:
                    lines.append(line)
                size += len(line)
            previous_empty = line in (b"\n", b"\r\n")
            done += len(line)
        if envelope is not None:
            yield _mbox_message(path, index, envelope, lines, size, limit, mtime, done)


def _mbox_message(path, index, envelope, lines, size, limit, mtime, done):
    if lines and lines[-1] in (b"\n", b"\r\n") and size <= limit:
        size -= len(lines.pop())
    raw = b"".join(lines)
    sender, date = _from_line(envelope)
    return Message(raw[:limit], path, index, sender, date, mtime, size > limit, done)


def _from_line(line):
    """The sender and the date (epoch seconds) of an mbox ``From`` line."""
    words = line[5:].decode("utf-8", "surrogateescape").split(None, 1)
    if not words:
        return None, None
    date = parsedate_tz(words[1]) if len(words) > 1 else None
    seconds = None
    if date is not None:
        try:
            seconds = calendar.timegm(date[:9]) - (date[9] or 0)
        except (OverflowError, ValueError):
            seconds = None
    return words[0], seconds
