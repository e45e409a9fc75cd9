"""The dashboard's users and API tokens: ``web_users`` and ``web_tokens``.

Passwords are kept only as salted scrypt hashes (``hashlib.scrypt``, 32 MiB
and about 0.1 s each), tokens only as their SHA-256 (a token is 256 random
bits: nothing to guess, so a fast hash is enough).  Hashing is not done
inside an interaction: the callers hash first, then store.
"""

import base64
import functools
import hashlib
import hmac
import re
import secrets

from smtplatrine.store.queries import iso
from smtplatrine.store.records import utc

ROLES = ("statistical", "forensic", "admin")
MIN_PASSWORD = 8
_NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")
_SCRYPT = {"n": 2 ** 15, "r": 8, "p": 1}
_TOKEN_PREFIX = "slt_"


def check_name(name):
    """*name* if it may name a user or token, else ValueError saying why."""
    if not _NAME.fullmatch(name or ""):
        raise ValueError(f"{name!r} cannot name a user or token: use 1 to 64 letters,"
                         f" digits and . _ @ -")
    return name


def check_password(password):
    """*password* if it is long enough, else ValueError saying why."""
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"a password needs at least {MIN_PASSWORD} characters")
    return password


def hash_password(password):
    """A new salted scrypt hash of *password*, as text."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, maxmem=64 << 20,
                            dklen=32, **_SCRYPT)
    return "$".join(["scrypt", str(_SCRYPT["n"]), str(_SCRYPT["r"]), str(_SCRYPT["p"]),
                     base64.b64encode(salt).decode(), base64.b64encode(digest).decode()])


def password_matches(stored, password):
    """True if *password* is the one *stored* (a :func:`hash_password`) hashes."""
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        expected = base64.b64decode(digest)
        found = hashlib.scrypt(password.encode("utf-8"), salt=base64.b64decode(salt),
                               n=int(n), r=int(r), p=int(p), maxmem=64 << 20,
                               dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return kind == "scrypt" and hmac.compare_digest(found, expected)


@functools.cache
def decoy():
    """A hash to check against when there is no such user, so that a wrong
    name takes as long as a wrong password."""
    return hash_password(secrets.token_urlsafe())


def new_token():
    """A new API token (shown once; only its hash is kept)."""
    return _TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token):
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def count(cursor, dialect):
    cursor.execute("SELECT COUNT(*) FROM web_users")
    return cursor.fetchone()[0]


def add(cursor, dialect, name, role, password_hash, now):
    """Add user *name*; False if there is one of that name already."""
    cursor.execute(dialect.sql("SELECT 1 FROM web_users WHERE name = ?"), (name,))
    if cursor.fetchone():
        return False
    cursor.execute(dialect.insert("web_users", ["name", "role", "password_hash", "created",
                                                "changed"]),
                   (name, role, password_hash, utc(now), utc(now)))
    return True


def change(cursor, dialect, name, now, password_hash=None, role=None):
    """Give user *name* a new password hash and/or role; False if no such user."""
    sets, args = ["changed = ?"], [utc(now)]
    if password_hash is not None:
        sets.append("password_hash = ?")
        args.append(password_hash)
    if role is not None:
        sets.append("role = ?")
        args.append(role)
    cursor.execute(dialect.sql(f"UPDATE web_users SET {', '.join(sets)} WHERE name = ?"),
                   (*args, name))
    return cursor.rowcount == 1


def remove(cursor, dialect, name):
    """Remove user *name*; False if there was none."""
    cursor.execute(dialect.sql("DELETE FROM web_users WHERE name = ?"), (name,))
    return cursor.rowcount == 1


def listing(cursor, dialect):
    """Every user: [{name, role, created, changed}], by name."""
    cursor.execute("SELECT name, role, created, changed FROM web_users ORDER BY name")
    return [{"name": name, "role": role, "created": iso(created), "changed": iso(changed)}
            for name, role, created, changed in cursor.fetchall()]


def find(cursor, dialect, name):
    """(role, password hash) of user *name*, or None."""
    cursor.execute(dialect.sql("SELECT role, password_hash FROM web_users WHERE name = ?"),
                   (name,))
    row = cursor.fetchone()
    return tuple(row) if row else None


def add_token(cursor, dialect, name, role, token, now):
    """Keep the hash of *token* as *name* with *role*; False if *name* is taken."""
    cursor.execute(dialect.sql("SELECT 1 FROM web_tokens WHERE name = ?"), (name,))
    if cursor.fetchone():
        return False
    cursor.execute(dialect.insert("web_tokens", ["name", "token_hash", "role", "created"]),
                   (name, token_hash(token), role, utc(now)))
    return True


def remove_token(cursor, dialect, name):
    """Remove token *name*; False if there was none."""
    cursor.execute(dialect.sql("DELETE FROM web_tokens WHERE name = ?"), (name,))
    return cursor.rowcount == 1


def tokens(cursor, dialect):
    """Every token: [{name, role, created}] (never the token), by name."""
    cursor.execute("SELECT name, role, created FROM web_tokens ORDER BY name")
    return [{"name": name, "role": role, "created": iso(created)}
            for name, role, created in cursor.fetchall()]


def find_token(cursor, dialect, token):
    """(name, role) of *token*, or None."""
    if not token.startswith(_TOKEN_PREFIX) or len(token) > 100:
        return None
    cursor.execute(dialect.sql("SELECT name, role FROM web_tokens WHERE token_hash = ?"),
                   (token_hash(token),))
    row = cursor.fetchone()
    return tuple(row) if row else None
