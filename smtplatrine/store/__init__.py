"""The forensic store: parsed messages and sessions in SQLite or MySQL."""
