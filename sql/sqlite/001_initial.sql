-- smtplatrine schema, version 1, SQLite.
-- Times are UTC text 'YYYY-MM-DD HH:MM:SS.ffffff'; JSON columns hold text.
-- Every row carries the sensor that wrote it.

CREATE TABLE honeypot_sessions (
    session_id      TEXT PRIMARY KEY,
    sensor          TEXT NOT NULL,
    client_ip       TEXT NOT NULL,
    client_port     INTEGER NOT NULL,
    server_ip       TEXT NOT NULL,
    server_port     INTEGER NOT NULL,
    started         TEXT NOT NULL,
    ended           TEXT,
    helo            TEXT,
    tls_implicit    INTEGER,
    tls_version     TEXT,
    tls_cipher      TEXT,
    auth_attempts   INTEGER NOT NULL DEFAULT 0,
    commands        INTEGER,
    unknown_commands INTEGER,
    errors          INTEGER,
    messages        INTEGER,
    close_reason    TEXT,
    pregreet        TEXT,
    flags           TEXT NOT NULL DEFAULT '[]',
    transcript      TEXT,
    envelopes       TEXT
);
CREATE INDEX honeypot_sessions_client ON honeypot_sessions (client_ip);
CREATE INDEX honeypot_sessions_started ON honeypot_sessions (sensor, started);

CREATE TABLE honeypot_credentials (
    session_id      TEXT NOT NULL,
    position        INTEGER NOT NULL,
    sensor          TEXT NOT NULL,
    time            TEXT NOT NULL,
    client_ip       TEXT NOT NULL,
    mechanism       TEXT NOT NULL,
    authzid         TEXT,
    username        TEXT,
    password        TEXT,
    challenge       TEXT,
    response        TEXT,
    accepted        INTEGER NOT NULL,
    PRIMARY KEY (session_id, position)
);
CREATE INDEX honeypot_credentials_username ON honeypot_credentials (username);

CREATE TABLE honeypot_emails (
    message_id      TEXT PRIMARY KEY,
    session_id      TEXT NOT NULL,
    sensor          TEXT NOT NULL,
    queue_id        TEXT,
    received        TEXT NOT NULL,
    stored          TEXT NOT NULL,
    client_ip       TEXT NOT NULL,
    client_port     INTEGER NOT NULL,
    server_ip       TEXT NOT NULL,
    server_port     INTEGER NOT NULL,
    helo            TEXT,
    tls             INTEGER NOT NULL,
    transport       TEXT,
    mail_from       TEXT,
    mail_params     TEXT NOT NULL DEFAULT '{}',
    acknowledged    INTEGER NOT NULL,
    truncated       INTEGER NOT NULL,
    incomplete      INTEGER NOT NULL,
    recovered       INTEGER NOT NULL,
    size            INTEGER NOT NULL,
    sha256          TEXT NOT NULL,
    raw             BLOB,
    raw_path        TEXT,
    header_date     TEXT,
    header_to       TEXT,
    header_from     TEXT,
    header_cc       TEXT,
    header_reply_to TEXT,
    header_subject  TEXT,
    header_message_id TEXT,
    header_x_mailer TEXT,
    header_user_agent TEXT,
    header_organization TEXT,
    header_content_type TEXT,
    header_content_transfer_encoding TEXT,
    body_text       TEXT NOT NULL,
    body_html       TEXT NOT NULL,
    session_flags   TEXT NOT NULL DEFAULT '[]',
    defects         TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX honeypot_emails_received ON honeypot_emails (sensor, received);
CREATE INDEX honeypot_emails_client ON honeypot_emails (client_ip);
CREATE INDEX honeypot_emails_sha256 ON honeypot_emails (sha256);
CREATE INDEX honeypot_emails_session ON honeypot_emails (session_id);

CREATE TABLE honeypot_email_headers (
    message_id      TEXT NOT NULL,
    position        INTEGER NOT NULL,
    sensor          TEXT NOT NULL,
    name            TEXT NOT NULL,
    value           TEXT NOT NULL,
    PRIMARY KEY (message_id, position)
);
CREATE INDEX honeypot_email_headers_name ON honeypot_email_headers (name);

CREATE TABLE honeypot_email_received (
    message_id      TEXT NOT NULL,
    position        INTEGER NOT NULL,
    sensor          TEXT NOT NULL,
    from_host       TEXT,
    from_ip         TEXT,
    by_host         TEXT,
    protocol        TEXT,
    received_id     TEXT,
    for_address     TEXT,
    date            TEXT,
    raw             TEXT NOT NULL,
    PRIMARY KEY (message_id, position)
);
CREATE INDEX honeypot_email_received_ip ON honeypot_email_received (from_ip);

CREATE TABLE honeypot_email_urls (
    message_id      TEXT NOT NULL,
    position        INTEGER NOT NULL,
    sensor          TEXT NOT NULL,
    url             TEXT NOT NULL,
    host            TEXT,
    source          TEXT NOT NULL,
    PRIMARY KEY (message_id, position)
);
CREATE INDEX honeypot_email_urls_host ON honeypot_email_urls (host);

CREATE TABLE honeypot_attachments (
    attachment_id   TEXT PRIMARY KEY,
    message_id      TEXT NOT NULL,
    position        INTEGER NOT NULL,
    sensor          TEXT NOT NULL,
    filename        TEXT,
    content_type    TEXT NOT NULL,
    disposition     TEXT NOT NULL,
    size            INTEGER NOT NULL,
    md5             TEXT NOT NULL,
    sha1            TEXT NOT NULL,
    sha256          TEXT NOT NULL,
    stored_path     TEXT,
    UNIQUE (message_id, position)
);
CREATE INDEX honeypot_attachments_sha256 ON honeypot_attachments (sha256);

CREATE TABLE honeypot_recipients (
    address         TEXT PRIMARY KEY,
    username        TEXT NOT NULL,
    tag             TEXT,
    domain          TEXT NOT NULL,
    sensor          TEXT NOT NULL,
    seen            INTEGER NOT NULL,
    first_seen      TEXT NOT NULL,
    last_seen       TEXT NOT NULL
);
CREATE INDEX honeypot_recipients_domain ON honeypot_recipients (domain);

CREATE TABLE honeypot_email_recipients (
    message_id      TEXT NOT NULL,
    address         TEXT NOT NULL,
    kind            TEXT NOT NULL,
    sensor          TEXT NOT NULL,
    PRIMARY KEY (message_id, address, kind)
);
CREATE INDEX honeypot_email_recipients_address ON honeypot_email_recipients (address);
