-- smtplatrine schema, version 5, MySQL / MariaDB: imported messages and
-- parse failures.
-- imported is 1 for a message taken from a file by `smtplatrine import`
-- (import_file: the file, as an absolute path; import_index: its number in
-- an mbox, from 1, NULL for a file of one message).  parse_error says why a
-- message flagged parse_failed in defects could not be read into rows.

ALTER TABLE honeypot_emails
    ADD COLUMN imported BOOLEAN NOT NULL DEFAULT FALSE,
    ADD COLUMN import_file TEXT NULL,
    ADD COLUMN import_index BIGINT NULL,
    ADD COLUMN parse_error TEXT NULL;
