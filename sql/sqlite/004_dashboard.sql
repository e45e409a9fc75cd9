-- smtplatrine schema, version 4, SQLite: what the dashboard reads.
-- Users of the dashboard and API tokens (passwords and tokens as hashes
-- only); each message's indicators, so that its enrichment is a join; a
-- full-text index of subjects, senders and bodies; and indexes for the
-- searches of the dashboard.

CREATE TABLE web_users (
    name            TEXT PRIMARY KEY,
    role            TEXT NOT NULL,
    password_hash   TEXT NOT NULL,
    created         TEXT NOT NULL,
    changed         TEXT NOT NULL
);

-- token_hash: the SHA-256 of the token (the token itself is shown once).
CREATE TABLE web_tokens (
    name            TEXT PRIMARY KEY,
    token_hash      TEXT NOT NULL UNIQUE,
    role            TEXT NOT NULL,
    created         TEXT NOT NULL
);

-- The indicators the enrichers look up (see smtplatrine/enrich/indicators.py),
-- written with the message: kind ip, sha256 or domain; source client,
-- received, attachment, sender or url.
CREATE TABLE honeypot_email_indicators (
    message_id      TEXT NOT NULL,
    kind            TEXT NOT NULL,
    indicator       TEXT NOT NULL,
    source          TEXT NOT NULL,
    sensor          TEXT NOT NULL,
    PRIMARY KEY (message_id, kind, indicator)
);
CREATE INDEX honeypot_email_indicators_indicator ON honeypot_email_indicators (indicator);

-- The full-text index: contentless FTS5 (the text stays in honeypot_emails),
-- its rows numbered by honeypot_email_text_ids.  sender: the From header and
-- MAIL FROM; body: the text body and the text of the HTML body.
CREATE TABLE honeypot_email_text_ids (
    doc             INTEGER PRIMARY KEY,
    message_id      TEXT NOT NULL UNIQUE
);
CREATE VIRTUAL TABLE honeypot_email_text USING fts5(
    subject, sender, body, content='', tokenize='unicode61 remove_diacritics 2');

ALTER TABLE honeypot_emails ADD COLUMN md5 TEXT;
CREATE INDEX honeypot_emails_md5 ON honeypot_emails (md5);
CREATE INDEX honeypot_emails_received_at ON honeypot_emails (received);
CREATE INDEX honeypot_emails_helo ON honeypot_emails (helo COLLATE NOCASE);
CREATE INDEX honeypot_attachments_md5 ON honeypot_attachments (md5);
CREATE INDEX honeypot_sessions_started_at ON honeypot_sessions (started);

-- Messages stored before: their indicators as SQL finds them (the enrichers
-- looked up only the valid ones, so the join shows the same results), and
-- their text (the HTML body with its markup).
INSERT OR IGNORE INTO honeypot_email_indicators
    SELECT message_id, 'ip', client_ip, 'client', sensor FROM honeypot_emails;
INSERT OR IGNORE INTO honeypot_email_indicators
    SELECT message_id, 'ip', from_ip, 'received', sensor FROM honeypot_email_received
    WHERE from_ip IS NOT NULL;
INSERT OR IGNORE INTO honeypot_email_indicators
    SELECT message_id, 'sha256', sha256, 'attachment', sensor FROM honeypot_attachments;
INSERT OR IGNORE INTO honeypot_email_indicators
    SELECT message_id, 'domain', LOWER(SUBSTR(mail_from, INSTR(mail_from, '@') + 1)),
           'sender', sensor FROM honeypot_emails WHERE INSTR(mail_from, '@') > 0;
INSERT OR IGNORE INTO honeypot_email_indicators
    SELECT message_id, 'domain', LOWER(host), 'url', sensor FROM honeypot_email_urls
    WHERE host IS NOT NULL;
INSERT INTO honeypot_email_text_ids (message_id) SELECT message_id FROM honeypot_emails;
INSERT INTO honeypot_email_text (rowid, subject, sender, body)
    SELECT k.doc, COALESCE(m.header_subject, ''),
           COALESCE(m.header_from, '') || ' ' || COALESCE(m.mail_from, ''),
           m.body_text || ' ' || m.body_html
    FROM honeypot_email_text_ids k JOIN honeypot_emails m USING (message_id);
