-- smtplatrine schema, version 6, MySQL / MariaDB: attachment forensics.
-- Needs only version 3.  honeypot_files and the honeypot_file_* tables are
-- per content (SHA-256), whichever messages carried it; the attachment
-- rows are per message.  Flags, properties, URLs and YARA rules are rows,
-- to search and join on.

-- A file found inside another attachment (an archive's member) is an
-- attachment of the message too: parent_id is the row it came out of,
-- disposition 'member', content_type '' (an archive declares none).
ALTER TABLE honeypot_attachments ADD COLUMN parent_id CHAR(36) NULL,
    ADD KEY honeypot_attachments_parent (parent_id);

-- What the file really is: libmagic's MIME type and description, fuzzy
-- hashes (ssdeep, with its block size; TLSH), Shannon entropy (bits a
-- byte), and when it was analysed (UTC).
CREATE TABLE honeypot_files (
    sha256          CHAR(64) NOT NULL PRIMARY KEY,
    size            BIGINT NOT NULL,
    mime            VARCHAR(255) NULL,
    magic           TEXT NULL,
    ssdeep          VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NULL,
    ssdeep_blocksize BIGINT NULL,
    tlsh            VARCHAR(80) NULL,
    entropy         DOUBLE NULL,
    analysed        DATETIME(6) NOT NULL,
    KEY honeypot_files_mime (mime),
    KEY honeypot_files_ssdeep_blocksize (ssdeep_blocksize)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- The 7-character pieces of each ssdeep signature (as 42-bit integers) at
-- their block size: two files can score above 0 only if they share one,
-- so these find the candidates for "similar attachments".
CREATE TABLE honeypot_file_ngrams (
    blocksize       BIGINT NOT NULL,
    ngram           BIGINT NOT NULL,
    sha256          CHAR(64) NOT NULL,
    PRIMARY KEY (blocksize, ngram, sha256),
    KEY honeypot_file_ngrams_sha256 (sha256)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- What an enricher found inside a file: idx in its list, parent_idx the
-- member holding it (NULL: the file itself), its name there, size and
-- hashes (member_sha256 NULL: listed, not extracted), and why not (flags).
CREATE TABLE honeypot_file_members (
    provider        VARCHAR(32) NOT NULL,
    sha256          CHAR(64) NOT NULL,
    idx             INT NOT NULL,
    parent_idx      INT NULL,
    position        INT NOT NULL,
    name            TEXT NOT NULL,
    size            BIGINT NULL,
    member_sha256   CHAR(64) NULL,
    md5             CHAR(32) NULL,
    sha1            CHAR(40) NULL,
    flags           TEXT NOT NULL,
    PRIMARY KEY (provider, sha256, idx),
    KEY honeypot_file_members_member (member_sha256)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Flags of a file's content (macros, javascript, encrypted, ratio_limit...).
CREATE TABLE honeypot_file_flags (
    sha256          CHAR(64) NOT NULL,
    provider        VARCHAR(32) NOT NULL,
    flag            VARCHAR(64) NOT NULL,
    PRIMARY KEY (sha256, provider, flag),
    KEY honeypot_file_flags_flag (flag)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Values to pivot on: imphash, compile time, a shortcut's target, a form's
-- action host...
CREATE TABLE honeypot_file_properties (
    sha256          CHAR(64) NOT NULL,
    provider        VARCHAR(32) NOT NULL,
    name            VARCHAR(64) NOT NULL,
    value           VARCHAR(255) NOT NULL,
    PRIMARY KEY (sha256, provider, name, value),
    KEY honeypot_file_properties_value (name, value)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- URLs found in a file (macros, PDF actions, HTML links and forms, shortcuts).
CREATE TABLE honeypot_file_urls (
    sha256          CHAR(64) NOT NULL,
    provider        VARCHAR(32) NOT NULL,
    position        INT NOT NULL,
    url             TEXT NOT NULL,
    host            VARCHAR(255) NULL,
    PRIMARY KEY (sha256, provider, position),
    KEY honeypot_file_urls_host (host)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- YARA rules that matched a file; tags separated by spaces.
CREATE TABLE honeypot_file_yara (
    sha256          CHAR(64) NOT NULL,
    namespace       VARCHAR(128) NOT NULL,
    rule            VARCHAR(128) NOT NULL,
    tags            TEXT NOT NULL,
    PRIMARY KEY (sha256, namespace, rule),
    KEY honeypot_file_yara_rule (rule)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Flags of one attachment row, from its name and declared type against
-- its content: type_mismatch, double_extension, rtl_override, padded_name.
CREATE TABLE honeypot_attachment_flags (
    attachment_id   CHAR(36) NOT NULL,
    flag            VARCHAR(64) NOT NULL,
    message_id      CHAR(36) NOT NULL,
    PRIMARY KEY (attachment_id, flag),
    KEY honeypot_attachment_flags_flag (flag),
    KEY honeypot_attachment_flags_message (message_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
