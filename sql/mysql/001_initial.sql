-- smtplatrine schema, version 1, MySQL / MariaDB.
-- Times are UTC DATETIME(6); JSON columns hold text.  IP columns are wide
-- enough for IPv6; the raw message is a byte-exact LONGBLOB.
-- Every row carries the sensor that wrote it.

CREATE TABLE honeypot_sessions (
    session_id      CHAR(36) NOT NULL PRIMARY KEY,
    sensor          VARCHAR(64) NOT NULL,
    client_ip       VARCHAR(45) NOT NULL,
    client_port     INT NOT NULL,
    server_ip       VARCHAR(45) NOT NULL,
    server_port     INT NOT NULL,
    started         DATETIME(6) NOT NULL,
    ended           DATETIME(6) NULL,
    helo            TEXT NULL,
    tls_implicit    BOOLEAN NULL,
    tls_version     VARCHAR(32) NULL,
    tls_cipher      VARCHAR(128) NULL,
    auth_attempts   INT NOT NULL DEFAULT 0,
    commands        INT NULL,
    unknown_commands INT NULL,
    errors          INT NULL,
    messages        INT NULL,
    close_reason    VARCHAR(64) NULL,
    pregreet        TEXT NULL,
    flags           TEXT NOT NULL,
    transcript      LONGTEXT NULL,
    envelopes       LONGTEXT NULL,
    KEY honeypot_sessions_client (client_ip),
    KEY honeypot_sessions_started (sensor, started)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE honeypot_credentials (
    session_id      CHAR(36) NOT NULL,
    position        INT NOT NULL,
    sensor          VARCHAR(64) NOT NULL,
    time            DATETIME(6) NOT NULL,
    client_ip       VARCHAR(45) NOT NULL,
    mechanism       VARCHAR(16) NOT NULL,
    authzid         TEXT NULL,
    username        TEXT NULL,
    password        TEXT NULL,
    challenge       TEXT NULL,
    response        TEXT NULL,
    accepted        BOOLEAN NOT NULL,
    PRIMARY KEY (session_id, position),
    KEY honeypot_credentials_username (username(191))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE honeypot_emails (
    message_id      CHAR(36) NOT NULL PRIMARY KEY,
    session_id      CHAR(36) NOT NULL,
    sensor          VARCHAR(64) NOT NULL,
    queue_id        VARCHAR(16) NULL,
    received        DATETIME(6) NOT NULL,
    stored          DATETIME(6) NOT NULL,
    client_ip       VARCHAR(45) NOT NULL,
    client_port     INT NOT NULL,
    server_ip       VARCHAR(45) NOT NULL,
    server_port     INT NOT NULL,
    helo            TEXT NULL,
    tls             BOOLEAN NOT NULL,
    transport       VARCHAR(8) NULL,
    mail_from       TEXT NULL,
    mail_params     TEXT NOT NULL,
    acknowledged    BOOLEAN NOT NULL,
    truncated       BOOLEAN NOT NULL,
    incomplete      BOOLEAN NOT NULL,
    recovered       BOOLEAN NOT NULL,
    size            BIGINT NOT NULL,
    sha256          CHAR(64) NOT NULL,
    raw             LONGBLOB NULL,
    raw_path        VARCHAR(255) NULL,
    header_date     MEDIUMTEXT NULL,
    header_to       MEDIUMTEXT NULL,
    header_from     MEDIUMTEXT NULL,
    header_cc       MEDIUMTEXT NULL,
    header_reply_to MEDIUMTEXT NULL,
    header_subject  MEDIUMTEXT NULL,
    header_message_id MEDIUMTEXT NULL,
    header_x_mailer MEDIUMTEXT NULL,
    header_user_agent MEDIUMTEXT NULL,
    header_organization MEDIUMTEXT NULL,
    header_content_type MEDIUMTEXT NULL,
    header_content_transfer_encoding MEDIUMTEXT NULL,
    body_text       LONGTEXT NOT NULL,
    body_html       LONGTEXT NOT NULL,
    session_flags   TEXT NOT NULL,
    defects         TEXT NOT NULL,
    KEY honeypot_emails_received (sensor, received),
    KEY honeypot_emails_client (client_ip),
    KEY honeypot_emails_sha256 (sha256),
    KEY honeypot_emails_session (session_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE honeypot_email_headers (
    message_id      CHAR(36) NOT NULL,
    position        INT NOT NULL,
    sensor          VARCHAR(64) NOT NULL,
    name            VARCHAR(255) NOT NULL,
    value           MEDIUMTEXT NOT NULL,
    PRIMARY KEY (message_id, position),
    KEY honeypot_email_headers_name (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE honeypot_email_received (
    message_id      CHAR(36) NOT NULL,
    position        INT NOT NULL,
    sensor          VARCHAR(64) NOT NULL,
    from_host       TEXT NULL,
    from_ip         VARCHAR(45) NULL,
    by_host         TEXT NULL,
    protocol        TEXT NULL,
    received_id     TEXT NULL,
    for_address     TEXT NULL,
    date            VARCHAR(32) NULL,
    raw             MEDIUMTEXT NOT NULL,
    PRIMARY KEY (message_id, position),
    KEY honeypot_email_received_ip (from_ip)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE honeypot_email_urls (
    message_id      CHAR(36) NOT NULL,
    position        INT NOT NULL,
    sensor          VARCHAR(64) NOT NULL,
    url             TEXT NOT NULL,
    host            VARCHAR(255) NULL,
    source          VARCHAR(8) NOT NULL,
    PRIMARY KEY (message_id, position),
    KEY honeypot_email_urls_host (host)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE honeypot_attachments (
    attachment_id   CHAR(36) NOT NULL PRIMARY KEY,
    message_id      CHAR(36) NOT NULL,
    position        INT NOT NULL,
    sensor          VARCHAR(64) NOT NULL,
    filename        TEXT NULL,
    content_type    VARCHAR(255) NOT NULL,
    disposition     VARCHAR(16) NOT NULL,
    size            BIGINT NOT NULL,
    md5             CHAR(32) NOT NULL,
    sha1            CHAR(40) NOT NULL,
    sha256          CHAR(64) NOT NULL,
    stored_path     VARCHAR(255) NULL,
    UNIQUE KEY honeypot_attachments_position (message_id, position),
    KEY honeypot_attachments_sha256 (sha256)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE honeypot_recipients (
    address         VARCHAR(320) COLLATE utf8mb4_bin NOT NULL PRIMARY KEY,
    username        TEXT NOT NULL,
    tag             TEXT NULL,
    domain          VARCHAR(255) NOT NULL,
    sensor          VARCHAR(64) NOT NULL,
    seen            INT NOT NULL,
    first_seen      DATETIME(6) NOT NULL,
    last_seen       DATETIME(6) NOT NULL,
    KEY honeypot_recipients_domain (domain)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE honeypot_email_recipients (
    message_id      CHAR(36) NOT NULL,
    address         VARCHAR(320) COLLATE utf8mb4_bin NOT NULL,
    kind            VARCHAR(8) NOT NULL,
    sensor          VARCHAR(64) NOT NULL,
    PRIMARY KEY (message_id, address, kind),
    KEY honeypot_email_recipients_address (address)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
