"""Creating and upgrading the tables: ``sql/DIALECT/NNN_name.sql`` files
applied in order, the versions applied kept in ``schema_version``."""

import re
from datetime import datetime, timezone

from smtplatrine.store import tallies
from smtplatrine.store.dialects import Rejected

# What a version needs done in Python after its statements: 007 counts
# what was stored before it.
_AFTER = {7: tallies.backfill}


def statements(text):
    """The statements of an SQL file: comments dropped, split at ``;``."""
    text = re.sub(r"--[^\n]*", "", text)
    return [s.strip() for s in text.split(";") if s.strip()]


def check(cursor, dialect, migrations):
    """Make sure, by reading only, that every one of *migrations* has been
    applied; the newest version."""
    try:
        cursor.execute("SELECT version FROM schema_version")
        applied = {row[0] for row in cursor.fetchall()}
    except Exception as e:
        if dialect.classify(e) is None:
            raise
        applied = set()
    missing = [name for version, name, _ in migrations if version not in applied]
    if missing:
        raise Rejected(
            f"the schema is at version {max(applied, default=0)} and lacks"
            f" {', '.join(missing)}: start twistd smtplatrine (or smtplatrine user"
            f" list) once with a database account that may create tables")
    return max(applied)


def upgrade(cursor, dialect, migrations, create):
    """Apply the *migrations* not applied yet (in one interaction); with
    *create* false only check that there are none.  The newest version and
    the versions applied now."""
    dialect.lock(cursor)
    try:
        cursor.execute("CREATE TABLE IF NOT EXISTS schema_version"
                       " (version INTEGER NOT NULL PRIMARY KEY,"
                       " applied VARCHAR(32) NOT NULL)")
        cursor.execute("SELECT version FROM schema_version")
        applied = {row[0] for row in cursor.fetchall()}
        # Every file not applied yet, in order, also one numbered below the
        # newest applied (files from branches merged in another order).
        pending = [m for m in migrations if m[0] not in applied]
        if pending and not create:
            raise Rejected(
                f"the schema is at version {max(applied, default=0)}, smtplatrine"
                f" needs {', '.join(name for _, name, _ in pending)}: apply them"
                f" from sql/{dialect.name}/ or set mysql_auto_create_db = true")
        for version, _, text in pending:
            for statement in statements(text):
                cursor.execute(statement)
            if version in _AFTER:
                _AFTER[version](cursor, dialect)
            cursor.execute(dialect.insert("schema_version", ["version", "applied"]),
                           (version, datetime.now(timezone.utc).isoformat()))
        return max(applied | {m[0] for m in pending}, default=0), [m[0] for m in pending]
    finally:
        dialect.unlock(cursor)
