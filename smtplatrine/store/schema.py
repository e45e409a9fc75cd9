"""Creating and upgrading the tables: ``sql/DIALECT/NNN_name.sql`` files
applied in order, the versions applied kept in ``schema_version``."""

import re
from datetime import datetime, timezone

from smtplatrine.store.dialects import Rejected


def statements(text):
    """The statements of an SQL file: comments dropped, split at ``;``."""
    text = re.sub(r"--[^\n]*", "", text)
    return [s.strip() for s in text.split(";") if s.strip()]


def upgrade(cursor, dialect, migrations, create):
    """Apply those of *migrations* not applied yet (in one interaction), in
    order: numbers are handed out ahead, so a database may have 6 and not
    yet 5; with *create* false only check that none is missing."""
    dialect.lock(cursor)
    try:
        cursor.execute("CREATE TABLE IF NOT EXISTS schema_version"
                       " (version INTEGER NOT NULL PRIMARY KEY,"
                       " applied VARCHAR(32) NOT NULL)")
        cursor.execute("SELECT version FROM schema_version")
        applied = {row[0] for row in cursor.fetchall()}
        current = max(applied, default=0)
        pending = [m for m in migrations if m[0] not in applied]
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
        return max([current] + [m[0] for m in pending]), [m[0] for m in pending]
    finally:
        dialect.unlock(cursor)
