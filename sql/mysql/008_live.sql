-- smtplatrine schema, version 8, MySQL / MariaDB: a number for each stored
-- session and message, in the order they were written, which the
-- dashboard's live view follows (SQLite's rowid does the same there).
ALTER TABLE honeypot_sessions ADD COLUMN seq BIGINT NOT NULL AUTO_INCREMENT,
    ADD UNIQUE KEY honeypot_sessions_seq (seq);
ALTER TABLE honeypot_emails ADD COLUMN seq BIGINT NOT NULL AUTO_INCREMENT,
    ADD UNIQUE KEY honeypot_emails_seq (seq);
