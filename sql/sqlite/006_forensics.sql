-- smtplatrine schema, version 6, SQLite: attachment forensics.
-- Needs only version 3.  honeypot_files and the honeypot_file_* tables are
-- per content (SHA-256), whichever messages carried it; the attachment
-- rows are per message.  Flags, properties, URLs and YARA rules are rows,
-- to search and join on.

-- A file found inside another attachment (an archive's member) is an
-- attachment of the message too: parent_id is the row it came out of,
-- disposition 'member', content_type '' (an archive declares none).
ALTER TABLE honeypot_attachments ADD COLUMN parent_id TEXT;
CREATE INDEX honeypot_attachments_parent ON honeypot_attachments (parent_id);

-- What the file really is: libmagic's MIME type and description, fuzzy
-- hashes (ssdeep, with its block size; TLSH), Shannon entropy (bits a
-- byte), and when it was analysed (UTC).
CREATE TABLE honeypot_files (
    sha256          TEXT PRIMARY KEY,
    size            INTEGER NOT NULL,
    mime            TEXT,
    magic           TEXT,
    ssdeep          TEXT,
    ssdeep_blocksize INTEGER,
    tlsh            TEXT,
    entropy         REAL,
    analysed        TEXT NOT NULL
);
CREATE INDEX honeypot_files_mime ON honeypot_files (mime);
CREATE INDEX honeypot_files_ssdeep_blocksize ON honeypot_files (ssdeep_blocksize);

-- The 7-character pieces of each ssdeep signature (as 42-bit integers) at
-- their block size: two files can score above 0 only if they share one,
-- so these find the candidates for "similar attachments".
CREATE TABLE honeypot_file_ngrams (
    blocksize       INTEGER NOT NULL,
    ngram           INTEGER NOT NULL,
    sha256          TEXT NOT NULL,
    PRIMARY KEY (blocksize, ngram, sha256)
);
CREATE INDEX honeypot_file_ngrams_sha256 ON honeypot_file_ngrams (sha256);

-- What an enricher found inside a file: idx in its list, parent_idx the
-- member holding it (NULL: the file itself), its name there, size and
-- hashes (member_sha256 NULL: listed, not extracted), and why not (flags).
CREATE TABLE honeypot_file_members (
    provider        TEXT NOT NULL,
    sha256          TEXT NOT NULL,
    idx             INTEGER NOT NULL,
    parent_idx      INTEGER,
    position        INTEGER NOT NULL,
    name            TEXT NOT NULL,
    size            INTEGER,
    member_sha256   TEXT,
    md5             TEXT,
    sha1            TEXT,
    flags           TEXT NOT NULL,
    PRIMARY KEY (provider, sha256, idx)
);
CREATE INDEX honeypot_file_members_member ON honeypot_file_members (member_sha256);

-- Flags of a file's content (macros, javascript, encrypted, ratio_limit...).
CREATE TABLE honeypot_file_flags (
    sha256          TEXT NOT NULL,
    provider        TEXT NOT NULL,
    flag            TEXT NOT NULL,
    PRIMARY KEY (sha256, provider, flag)
);
CREATE INDEX honeypot_file_flags_flag ON honeypot_file_flags (flag);

-- Values to pivot on: imphash, compile time, a shortcut's target, a form's
-- action host...
CREATE TABLE honeypot_file_properties (
    sha256          TEXT NOT NULL,
    provider        TEXT NOT NULL,
    name            TEXT NOT NULL,
    value           TEXT NOT NULL,
    PRIMARY KEY (sha256, provider, name, value)
);
CREATE INDEX honeypot_file_properties_value ON honeypot_file_properties (name, value);

-- URLs found in a file (macros, PDF actions, HTML links and forms, shortcuts).
CREATE TABLE honeypot_file_urls (
    sha256          TEXT NOT NULL,
    provider        TEXT NOT NULL,
    position        INTEGER NOT NULL,
    url             TEXT NOT NULL,
    host            TEXT,
    PRIMARY KEY (sha256, provider, position)
);
CREATE INDEX honeypot_file_urls_host ON honeypot_file_urls (host);

-- YARA rules that matched a file; tags separated by spaces.
CREATE TABLE honeypot_file_yara (
    sha256          TEXT NOT NULL,
    namespace       TEXT NOT NULL,
    rule            TEXT NOT NULL,
    tags            TEXT NOT NULL,
    PRIMARY KEY (sha256, namespace, rule)
);
CREATE INDEX honeypot_file_yara_rule ON honeypot_file_yara (rule);

-- Flags of one attachment row, from its name and declared type against
-- its content: type_mismatch, double_extension, rtl_override, padded_name.
CREATE TABLE honeypot_attachment_flags (
    attachment_id   TEXT NOT NULL,
    flag            TEXT NOT NULL,
    message_id      TEXT NOT NULL,
    PRIMARY KEY (attachment_id, flag)
);
CREATE INDEX honeypot_attachment_flags_flag ON honeypot_attachment_flags (flag);
CREATE INDEX honeypot_attachment_flags_message ON honeypot_attachment_flags (message_id);
