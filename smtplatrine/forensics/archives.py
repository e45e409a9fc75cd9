"""What is inside an archive: zip, 7z, rar, tar (and gzip, bzip2, xz),
cab, iso/img and cpio through libarchive or py7zr, and TNEF
(``winmail.dat``) through tnefparse, recursively.

Every member is listed (name, size, hashes); each one that fits the bounds
is written to the attachment store under its SHA-256 (never under its
name), and opened in turn when it is an archive itself.  The bounds hold
for the whole tree of one attachment: members, bytes expanded, expansion
ratio, depth; each one reached is a flag, and what lies past it is left
alone.  Encrypted members are tried with the passwords the message offers.
"""

import bz2
import contextlib
import gzip
import hashlib
import io
import lzma
import struct

from smtplatrine.files import keep
from smtplatrine.forensics import preload
from smtplatrine.forensics.filetype import detect

# Signatures: (offset, bytes) -> format.
_SIGNATURES = [
    (0, b"PK\x03\x04", "zip"), (0, b"PK\x05\x06", "zip"), (0, b"PK\x07\x08", "zip"),
    (0, b"7z\xbc\xaf\x27\x1c", "7z"), (0, b"Rar!\x1a\x07", "rar"),
    (0, b"MSCF\x00\x00\x00\x00", "cab"), (0x8001, b"CD001", "iso"),
    (0x8801, b"CD001", "iso"), (0x9001, b"CD001", "iso"), (257, b"ustar", "tar"),
    (0, b"\x1f\x8b", "gzip"), (0, b"BZh", "bzip2"), (0, b"\xfd7zXZ\x00", "xz"),
    (0, b"\x78\x9f\x3e\x22", "tnef"), (0, b"070701", "cpio"), (0, b"070707", "cpio"),
    (0, b"\xc7\x71", "cpio"),
]
# Zips that are documents, not containers: their parts are not members.
_DOCUMENT_PARTS = (b"[Content_Types].xml", b"mimetypeapplication/vnd.oasis")
_CHUNK = 65536


def sniff(head):
    """The archive format of a file starting with *head* (64 KiB), or None."""
    for offset, magic, name in _SIGNATURES:
        if head[offset:offset + len(magic)] == magic:
            if name == "zip" and any(part in head[:4096] for part in _DOCUMENT_PARTS):
                return None
            return name
    return None


class _Stop(Exception):
    """A bound of the whole tree is reached: stop reading."""


class _TooLarge(Exception):
    """One member is over the bound of a member."""


class _Walk:
    """One attachment's tree, within *limits*, members written under *store*."""

    def __init__(self, store, limits, passwords, root_size):
        self.store = store
        self.limits = limits
        self.passwords = passwords
        self.root_size = max(root_size, 1)
        self.members = []
        self.flags = set()
        self.expanded = 0
        self.password = None
        self.formats = []

    def allowance(self):
        """Bytes the next member may expand to."""
        ratio_room = max(self.limits["max_ratio"] * self.root_size, 2**20) - self.expanded
        return min(self.limits["max_member_bytes"],
                   self.limits["max_bytes"] - self.expanded, ratio_room)

    def count(self, size):
        """*size* more bytes expanded; _Stop past a bound of the tree."""
        self.expanded += size
        if self.expanded > self.limits["max_bytes"]:
            self.flags.add("expanded_limit")
            raise _Stop()
        if self.expanded > max(self.limits["max_ratio"] * self.root_size, 2**20):
            self.flags.add("ratio_limit")
            raise _Stop()

    def add(self, name, size, parent, position, data=None, flags=()):
        """List a member (extracted when *data* is given); its index."""
        if len(self.members) >= self.limits["max_members"]:
            self.flags.add("member_limit")
            raise _Stop()
        member = {"name": name[:1024], "size": size, "parent": parent,
                  "position": position, "flags": sorted(flags), "sha256": None,
                  "md5": None, "sha1": None, "mime": None}
        if data is not None:
            digests = {"md5": hashlib.md5(data, usedforsecurity=False).hexdigest(),
                       "sha1": hashlib.sha1(data, usedforsecurity=False).hexdigest(),
                       "sha256": hashlib.sha256(data).hexdigest()}
            member.update(digests)
            member["size"] = len(data)
            member["mime"] = detect(data)[0]
            keep(self.store, data, digests["sha256"], sync=False)
        self.members.append(member)
        return len(self.members) - 1

    def open(self, data, parent, depth, fmt=None, name="data"):
        """List (and extract) the members of the archive *data*."""
        fmt = fmt or sniff(data[:0x9010])
        if fmt is None:
            return
        if depth >= self.limits["max_depth"]:
            self.flags.add("depth_limit")
            return
        self.formats.append(fmt)
        reader = {"7z": self._sevenzip, "tnef": self._tnef, "gzip": self._single,
                  "bzip2": self._single, "xz": self._single}.get(fmt, self._libarchive)
        reader(data, parent, depth, fmt, name)

    def _extracted(self, name, size, parent, position, depth, data, flags=()):
        index = self.add(name, size, parent, position, data, flags)
        if data is not None:
            self.open(data, index, depth + 1, name=name)

    # libarchive: zip, rar, cab, iso, tar, cpio

    def _libarchive(self, data, parent, depth, fmt, name):
        import libarchive.exception
        password = None
        try:
            if self._probe(data, None) is not None:
                self.flags.add("encrypted")
                for attempt in self.passwords:
                    if self._probe(data, attempt):
                        password = attempt
                        self.password = self.password or attempt
                        self.flags.add("password_found")
                        break
            import libarchive
            with libarchive.memory_reader(data, passphrase=password) as archive:
                for position, entry in enumerate(archive):
                    if entry.isreg:
                        self._entry(entry, position, parent, depth, _encrypted(entry),
                                    len(data))
        except libarchive.exception.ArchiveError:
            self.flags.add("unreadable")

    @staticmethod
    def _probe(data, password):
        """None when the archive has no encrypted member, else whether
        *password* opens the first one."""
        import libarchive
        import libarchive.exception
        with libarchive.memory_reader(data, passphrase=password) as archive:
            for entry in archive:
                if entry.isreg and _encrypted(entry):
                    try:
                        for _ in entry.get_blocks():
                            break
                    except libarchive.exception.ArchiveError:
                        return False
                    return True
        return None

    def _entry(self, entry, position, parent, depth, is_encrypted, container):
        import libarchive.exception
        name = entry.pathname or f"member{position}"
        if isinstance(name, bytes):
            # Not UTF-8 (a zip from a Russian Windows, in CP866, say): kept
            # exact, as the rest of the store keeps network text.
            name = name.decode("utf-8", "surrogateescape")
        declared = entry.size
        flags = {"encrypted"} if is_encrypted else set()
        if declared is not None and declared > max(
                self.limits["max_ratio"] * container, 2**20):
            self.flags.add("ratio_limit")
            self._extracted(name, declared, parent, position, depth, None,
                            flags | {"ratio_limit"})
            return
        if declared is not None and declared > self.limits["max_member_bytes"]:
            self._extracted(name, declared, parent, position, depth, None,
                            flags | {"too_large"})
            return
        chunks, size, allowance = [], 0, self.allowance()
        try:
            for block in entry.get_blocks(_CHUNK):
                size += len(block)
                if size > allowance:
                    raise _TooLarge()
                chunks.append(block)
        except _TooLarge:
            self.count(size)
            self._extracted(name, declared, parent, position, depth, None,
                            flags | {"too_large"})
            return
        except libarchive.exception.ArchiveError as e:
            flags.add("unreadable" if "assphrase" not in str(e) else "no_password")
            self._extracted(name, declared, parent, position, depth, None, flags)
            return
        self.count(size)
        self._extracted(name, declared, parent, position, depth, b"".join(chunks), flags)

    # py7zr: 7z, with its AES encryption

    def _sevenzip(self, data, parent, depth, fmt, name):
        import py7zr
        for attempt in [None, *self.passwords]:
            try:
                with py7zr.SevenZipFile(io.BytesIO(data), password=attempt) as archive:
                    if archive.needs_password():
                        self.flags.add("encrypted")
                        if attempt is None:
                            continue
                    if self._sevenzip_members(archive, parent, depth, attempt):
                        if attempt is not None:
                            self.password = self.password or attempt
                            self.flags.add("password_found")
                        return
            except py7zr.exceptions.PasswordRequired:
                self.flags.add("encrypted")
            except (_Stop, MemoryError):
                raise
            except Exception:
                if attempt is None:
                    self.flags.add("unreadable")
                    return
        # No password opened it: list what its headers show.
        try:
            with py7zr.SevenZipFile(io.BytesIO(data)) as archive:
                for position, info in enumerate(archive.list()):
                    if not info.is_directory:
                        self.add(info.filename, info.uncompressed, parent, position,
                                 flags={"encrypted", "no_password"})
        except (_Stop, MemoryError):
            raise
        except Exception:
            pass

    def _sevenzip_members(self, archive, parent, depth, password):
        """Extract every member; False when *password* is wrong."""
        import py7zr
        infos = [i for i in archive.list() if not i.is_directory]
        big = {i.filename for i in infos if (i.uncompressed or 0) > self.allowance()}
        targets = [i.filename for i in infos if i.filename not in big]
        factory = _Collector(self.allowance())
        try:
            if targets:
                archive.extract(targets=targets, factory=factory)
        except (py7zr.exceptions.CrcError, lzma.LZMAError) as e:
            if password is not None or "assword" in str(e):
                return False
            self.flags.add("unreadable")
        except _TooLarge:
            self.flags.add("too_large")
        except Exception:
            if password is not None:
                return False
            self.flags.add("unreadable")
        for position, info in enumerate(infos):
            flags = {"encrypted"} if password else set()
            product = factory.products.get(info.filename)
            if info.filename in big or product is None:
                self._extracted(info.filename, info.uncompressed, parent, position, depth,
                                None, flags | {"too_large" if info.filename in big
                                               else "unreadable"})
                continue
            data = bytes(product.buffer)
            self.count(len(data))
            self._extracted(info.filename, info.uncompressed, parent, position, depth,
                            data, flags)
        return True

    # gzip, bzip2, xz around a single file

    def _single(self, data, parent, depth, fmt, name):
        opener = {"gzip": gzip.GzipFile, "bzip2": bz2.BZ2File, "xz": lzma.LZMAFile}[fmt]
        inner = _gzip_name(data) if fmt == "gzip" else None
        inner = inner or _strip_suffix(name, fmt)
        allowance = self.allowance()
        try:
            with opener(fileobj=io.BytesIO(data)) as stream:
                content = stream.read(allowance + 1)
        except (OSError, EOFError, lzma.LZMAError):
            self._extracted(inner, None, parent, 0, depth, None, {"unreadable"})
            return
        if len(content) > allowance:
            self.count(len(content))
            self._extracted(inner, None, parent, 0, depth, None, {"too_large"})
            return
        self.count(len(content))
        self._extracted(inner, None, parent, 0, depth, content)

    # TNEF: winmail.dat

    def _tnef(self, data, parent, depth, fmt, name):
        from tnefparse import TNEF
        try:
            tnef = TNEF(data)
        except Exception:
            self.flags.add("unreadable")
            return
        for position, attachment in enumerate(tnef.attachments):
            try:
                filename = attachment.long_filename() or attachment.name
            except Exception:
                filename = None
            if isinstance(filename, bytes):
                filename = filename.decode("latin-1")
            content = attachment.data or b""
            if len(content) > self.allowance():
                self.count(len(content))
                self._extracted(filename or f"attachment{position}", len(content), parent,
                                position, depth, None, {"too_large"})
                continue
            self.count(len(content))
            self._extracted((filename or f"attachment{position}").rstrip("\x00"),
                            len(content), parent, position, depth, content)


def _encrypted(entry):
    """Whether libarchive says *entry*'s data is encrypted."""
    import ctypes

    import libarchive.ffi as ffi
    function = ffi.libarchive.archive_entry_is_data_encrypted
    function.argtypes, function.restype = [ctypes.c_void_p], ctypes.c_int
    return function(entry._entry_p) == 1


class _Collector:
    """py7zr's writer factory: members kept in memory, up to *limit* each."""

    def __init__(self, limit):
        self.limit = limit
        self.products = {}

    def create(self, filename):
        product = self.products[filename] = _Buffer(self.limit)
        return product


class _Buffer:
    def __init__(self, limit):
        self.limit = limit
        self.buffer = bytearray()

    def write(self, data):
        if len(self.buffer) + len(data) > self.limit:
            raise _TooLarge()
        self.buffer += data
        return len(data)

    def read(self, size=None):
        return bytes(self.buffer)

    def seek(self, offset, whence=0):
        return 0

    def flush(self):
        pass

    def size(self):
        return len(self.buffer)

    def close(self):
        pass


def _gzip_name(data):
    """The file name a gzip header carries (FNAME), or None."""
    if len(data) < 10 or not data[3] & 0x08:
        return None
    offset = 10
    if data[3] & 0x04:
        if len(data) < 12:
            return None
        offset += 2 + struct.unpack("<H", data[10:12])[0]
    end = data.find(b"\x00", offset, offset + 1024)
    return data[offset:end].decode("latin-1") if end > offset else None


_SUFFIXES = {"gzip": {".gz": "", ".tgz": ".tar", ".gzip": ""},
             "bzip2": {".bz2": "", ".tbz": ".tar", ".tbz2": ".tar"},
             "xz": {".xz": "", ".txz": ".tar"}}


def _strip_suffix(name, fmt):
    """The name of what the compressed file *name* holds (``x.tgz``:
    ``x.tar``)."""
    for suffix, replacement in _SUFFIXES[fmt].items():
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[:-len(suffix)] + replacement
    return name


def prepare():
    """Import the archive libraries (before the sandbox forks)."""
    preload("libarchive", "py7zr", "psutil", "resource", "multivolumefile", "pyppmd",
            "bcj", "inflate64", "brotli", "Cryptodome.Cipher", "Cryptodome.Hash",
            "Cryptodome.Protocol", "Cryptodome.Util", "tnefparse")
    with contextlib.suppress(ImportError):
        preload("backports.zstd")


def analyse(path, params):
    """The ``archive`` analysis of the file at *path*: None when it is no
    archive, else a summary and the members (``files``).  *params*: the
    attachment store (``store``), ``limits`` (``max_members``,
    ``max_bytes``, ``max_member_bytes``, ``max_ratio``, ``max_depth``),
    the ``passwords`` to try and the ``depth`` the attachment is at."""
    with open(path, "rb") as f:
        data = f.read()
    fmt = sniff(data[:0x9010])
    if fmt is None:
        return None
    limits = dict(params["limits"])
    limits["max_depth"] -= params.get("depth", 0)
    walk = _Walk(params["store"], limits, params.get("passwords", []), len(data))
    if limits["max_depth"] <= 0:
        walk.flags.add("depth_limit")
    else:
        try:
            walk.open(data, None, 0, fmt, params.get("name") or "data")
        except _Stop:
            pass
    extracted = [m for m in walk.members if m["sha256"]]
    return {"format": fmt, "formats": sorted(set(walk.formats)),
            "members": len(walk.members), "extracted": len(extracted),
            "expanded_bytes": walk.expanded, "password": walk.password,
            "flags": sorted(walk.flags), "files": walk.members}
