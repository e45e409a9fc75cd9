-- smtplatrine schema, version 5, SQLite: imported messages and parse
-- failures.
-- imported is 1 for a message taken from a file by `smtplatrine import`
-- (import_file: the file, as an absolute path; import_index: its number in
-- an mbox, from 1, NULL for a file of one message).  parse_error says why a
-- message flagged parse_failed in defects could not be read into rows.

ALTER TABLE honeypot_emails ADD COLUMN imported INTEGER NOT NULL DEFAULT 0;
ALTER TABLE honeypot_emails ADD COLUMN import_file TEXT;
ALTER TABLE honeypot_emails ADD COLUMN import_index INTEGER;
ALTER TABLE honeypot_emails ADD COLUMN parse_error TEXT;
