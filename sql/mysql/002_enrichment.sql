-- smtplatrine schema, version 2, MySQL / MariaDB: enrichment.
-- Results are cached per (provider, indicator), negative ones too (found
-- = 0, result NULL); result is the provider's JSON as the enricher shaped it.
-- Quota, hold and queue times are epoch seconds.  Every sensor writing to
-- this database shares the cache, the quotas and the queue.

CREATE TABLE honeypot_enrichment (
    provider        VARCHAR(32) NOT NULL,
    indicator       VARCHAR(255) NOT NULL,
    kind            VARCHAR(16) NOT NULL,
    sensor          VARCHAR(64) NOT NULL,
    found           TINYINT(1) NOT NULL,
    result          MEDIUMTEXT,
    looked_up       DATETIME(6) NOT NULL,
    expires         DATETIME(6) NOT NULL,
    PRIMARY KEY (provider, indicator),
    KEY honeypot_enrichment_indicator (indicator)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- One row per provider and span ('minute', 'day'): lookups used in the
-- span numbered span_index (epoch seconds DIV span length).
CREATE TABLE honeypot_enrichment_quota (
    provider        VARCHAR(32) NOT NULL,
    span            VARCHAR(8) NOT NULL,
    span_index      BIGINT NOT NULL,
    used            INT NOT NULL,
    PRIMARY KEY (provider, span)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE honeypot_enrichment_hold (
    provider        VARCHAR(32) NOT NULL PRIMARY KEY,
    hold_until      DOUBLE NOT NULL,
    reason          VARCHAR(255) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE honeypot_enrichment_queue (
    provider        VARCHAR(32) NOT NULL,
    indicator       VARCHAR(255) NOT NULL,
    kind            VARCHAR(16) NOT NULL,
    sensor          VARCHAR(64) NOT NULL,
    message_id      CHAR(36),
    attempts        INT NOT NULL,
    not_before      DOUBLE NOT NULL,
    PRIMARY KEY (provider, indicator),
    KEY honeypot_enrichment_queue_due (not_before)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
