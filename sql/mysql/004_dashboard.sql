-- smtplatrine schema, version 4, MySQL / MariaDB: what the dashboard reads.
-- Users of the dashboard and API tokens (passwords and tokens as hashes
-- only); each message's indicators, so that its enrichment is a join; a
-- full-text index of subjects, senders and bodies; and indexes for the
-- searches of the dashboard.  The dashboard itself needs only SELECT (and
-- INSERT, UPDATE, DELETE on web_users to manage users from its pages).

CREATE TABLE web_users (
    name            VARCHAR(64) NOT NULL PRIMARY KEY,
    role            VARCHAR(16) NOT NULL,
    password_hash   VARCHAR(255) NOT NULL,
    created         DATETIME(6) NOT NULL,
    changed         DATETIME(6) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- token_hash: the SHA-256 of the token (the token itself is shown once).
CREATE TABLE web_tokens (
    name            VARCHAR(64) NOT NULL PRIMARY KEY,
    token_hash      CHAR(64) NOT NULL,
    role            VARCHAR(16) NOT NULL,
    created         DATETIME(6) NOT NULL,
    UNIQUE KEY web_tokens_hash (token_hash)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- The indicators the enrichers look up (see smtplatrine/enrich/indicators.py),
-- written with the message: kind ip, sha256 or domain; source client,
-- received, attachment, sender or url.
CREATE TABLE honeypot_email_indicators (
    message_id      CHAR(36) NOT NULL,
    kind            VARCHAR(16) NOT NULL,
    indicator       VARCHAR(255) NOT NULL,
    source          VARCHAR(16) NOT NULL,
    sensor          VARCHAR(64) NOT NULL,
    PRIMARY KEY (message_id, kind, indicator),
    KEY honeypot_email_indicators_indicator (indicator)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- The full-text index.  sender: the From header and MAIL FROM; body: the
-- text body and the text of the HTML body.  InnoDB indexes words of three
-- letters or more (innodb_ft_min_token_size); without a stop word list, so
-- that "com" of example.com is found.
SET SESSION innodb_ft_enable_stopword = OFF;
CREATE TABLE honeypot_email_text (
    message_id      CHAR(36) NOT NULL PRIMARY KEY,
    subject         MEDIUMTEXT NOT NULL,
    sender          MEDIUMTEXT NOT NULL,
    body            LONGTEXT NOT NULL,
    FULLTEXT KEY honeypot_email_text_words (subject, body),
    FULLTEXT KEY honeypot_email_text_subject (subject),
    FULLTEXT KEY honeypot_email_text_sender (sender)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

ALTER TABLE honeypot_emails ADD COLUMN md5 CHAR(32) NULL,
    ADD KEY honeypot_emails_md5 (md5),
    ADD KEY honeypot_emails_received_at (received),
    ADD KEY honeypot_emails_helo (helo(191));
ALTER TABLE honeypot_attachments ADD KEY honeypot_attachments_md5 (md5);
ALTER TABLE honeypot_sessions ADD KEY honeypot_sessions_started_at (started);

-- Messages stored before: their indicators as SQL finds them (the enrichers
-- looked up only the valid ones, so the join shows the same results), and
-- their text (the HTML body with its markup).
INSERT IGNORE INTO honeypot_email_indicators
    SELECT message_id, 'ip', client_ip, 'client', sensor FROM honeypot_emails;
INSERT IGNORE INTO honeypot_email_indicators
    SELECT message_id, 'ip', from_ip, 'received', sensor FROM honeypot_email_received
    WHERE from_ip IS NOT NULL;
INSERT IGNORE INTO honeypot_email_indicators
    SELECT message_id, 'sha256', sha256, 'attachment', sensor FROM honeypot_attachments;
INSERT IGNORE INTO honeypot_email_indicators
    SELECT message_id, 'domain', LEFT(LOWER(SUBSTRING_INDEX(mail_from, '@', -1)), 255),
           'sender', sensor FROM honeypot_emails WHERE LOCATE('@', mail_from) > 0;
INSERT IGNORE INTO honeypot_email_indicators
    SELECT message_id, 'domain', LOWER(host), 'url', sensor FROM honeypot_email_urls
    WHERE host IS NOT NULL;
INSERT INTO honeypot_email_text (message_id, subject, sender, body)
    SELECT message_id, COALESCE(header_subject, ''),
           CONCAT(COALESCE(header_from, ''), ' ', COALESCE(mail_from, '')),
           CONCAT(body_text, ' ', body_html)
    FROM honeypot_emails;
