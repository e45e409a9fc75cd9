"""What a file really is: libmagic's type, hashes, fuzzy hashes, entropy."""

import hashlib
import math
from collections import Counter

from smtplatrine.forensics import preload

# Files larger than this are not fuzzy-hashed (ssdeep is pure Python here,
# about 5 MB a second).
FUZZY_LIMIT = 64 * 2**20
_MAGIC = {}


def prepare():
    """Load libmagic and the fuzzy hashing modules (before the sandbox forks)."""
    import magic
    preload("ppdeep", "tlsh")
    _MAGIC["mime"] = magic.Magic(mime=True)
    _MAGIC["text"] = magic.Magic()


def detect(data):
    """(MIME type, description) of *data* by libmagic."""
    if not _MAGIC:
        prepare()
    return (_MAGIC["mime"].from_buffer(data[:2**20]),
            _MAGIC["text"].from_buffer(data[:2**20])[:255])


def entropy(data):
    """Shannon entropy of *data* in bits a byte (8: random or encrypted)."""
    total = len(data)
    return -sum(c / total * math.log2(c / total) for c in Counter(data).values())


def hashes(data):
    """MD5, SHA-1 and SHA-256 of *data*."""
    return {"md5": hashlib.md5(data, usedforsecurity=False).hexdigest(),
            "sha1": hashlib.sha1(data, usedforsecurity=False).hexdigest(),
            "sha256": hashlib.sha256(data).hexdigest()}


def fuzzy(data):
    """(ssdeep, TLSH) of *data*; TLSH is None below its 50 bytes or for
    content too uniform to hash, both None over FUZZY_LIMIT."""
    import ppdeep
    import tlsh
    if len(data) > FUZZY_LIMIT:
        return None, None
    digest = tlsh.hash(data)
    return ppdeep.hash(data), (digest if digest and digest != "TNULL" else None)


def analyse(path, params):
    """The ``filetype`` analysis of the file at *path*."""
    with open(path, "rb") as f:
        data = f.read()
    mime, description = detect(data)
    ssdeep, tlsh_digest = fuzzy(data)
    return {"size": len(data), "mime": mime, "magic": description, "ssdeep": ssdeep,
            "tlsh": tlsh_digest, "entropy": round(entropy(data), 4)}
