"""Creating and upgrading the tables: ``sql/DIALECT/NNN_name.sql`` files
applied in order, the versions applied kept in ``schema_version``."""

import re
from datetime import datetime, timezone

from smtplatrine.store.dialects import Rejected


def statements(text):
    """The statements of an SQL file: comments dropped, split at ``;``."""
    text = re.sub(r"--[^\n]*", "", text)
    return [s.strip() for s in text.split(";") if s.strip()]


def check(cursor, dialect, migrations):
    """Make sure, by reading only, that the schema is at least the newest
    of *migrations*; its version."""
    needed = migrations[-1][0]
    try:
        cursor.execute("SELECT MAX(version) FROM schema_version")
        current = cursor.fetchone()[0] or 0
    except Exception as e:
        if dialect.classify(e) is None:
            raise
        current = 0
    if current < needed:
        raise Rejected(
            f"the schema is at version {current}, this needs {needed}: start"
            f" twistd smtplatrine (or smtplatrine user list) once with a database"
            f" account that may create tables")
    return current


def upgrade(cursor, dialect, migrations, create):
    """Bring the schema to the newest of *migrations* (in one interaction);
    with *create* false only check that it is there."""
    dialect.lock(cursor)
    try:
        cursor.execute("CREATE TABLE IF NOT EXISTS schema_version"
                       " (version INTEGER NOT NULL PRIMARY KEY,"
                       " applied VARCHAR(32) NOT NULL)")
        cursor.execute("SELECT MAX(version) FROM schema_version")
        current = cursor.fetchone()[0] or 0
        pending = [m for m in migrations if m[0] > current]
        if pending and not create:
            raise Rejected(
                f"the schema is at version {current}, smtplatrine needs"
                f" {pending[-1][0]}: apply {', '.join(name for _, name, _ in pending)}"
                f" from sql/{dialect.name}/ or set mysql_auto_create_db = true")
        for version, _, text in pending:
            for statement in statements(text):
                cursor.execute(statement)
            cursor.execute(dialect.insert("schema_version", ["version", "applied"]),
                           (version, datetime.now(timezone.utc).isoformat()))
        return (pending[-1][0] if pending else current), [m[0] for m in pending]
    finally:
        dialect.unlock(cursor)
