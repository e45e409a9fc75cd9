-- smtplatrine schema, version 2, SQLite: enrichment.
-- Results are cached per (provider, indicator), negative ones too (found
-- = 0, result NULL); result is the provider's JSON as the enricher shaped it.
-- Quota, hold and queue times are epoch seconds.

CREATE TABLE honeypot_enrichment (
    provider        TEXT NOT NULL,
    indicator       TEXT NOT NULL,
    kind            TEXT NOT NULL,
    sensor          TEXT NOT NULL,
    found           INTEGER NOT NULL,
    result          TEXT,
    looked_up       TEXT NOT NULL,
    expires         TEXT NOT NULL,
    PRIMARY KEY (provider, indicator)
);
CREATE INDEX honeypot_enrichment_indicator ON honeypot_enrichment (indicator);

-- One row per provider and span ('minute', 'day'): lookups used in the
-- span numbered span_index (epoch seconds // span length).
CREATE TABLE honeypot_enrichment_quota (
    provider        TEXT NOT NULL,
    span            TEXT NOT NULL,
    span_index      INTEGER NOT NULL,
    used            INTEGER NOT NULL,
    PRIMARY KEY (provider, span)
);

CREATE TABLE honeypot_enrichment_hold (
    provider        TEXT PRIMARY KEY,
    hold_until      REAL NOT NULL,
    reason          TEXT NOT NULL
);

CREATE TABLE honeypot_enrichment_queue (
    provider        TEXT NOT NULL,
    indicator       TEXT NOT NULL,
    kind            TEXT NOT NULL,
    sensor          TEXT NOT NULL,
    message_id      TEXT,
    attempts        INTEGER NOT NULL,
    not_before      REAL NOT NULL,
    PRIMARY KEY (provider, indicator)
);
CREATE INDEX honeypot_enrichment_queue_due ON honeypot_enrichment_queue (not_before);
