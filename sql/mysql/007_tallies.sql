-- smtplatrine schema, version 7, MySQL / MariaDB: the counts the overview
-- and the pivot pages read (see smtplatrine/store/tallies.py), kept by the
-- storing side with each message and session.  hour: the bucket's start in
-- epoch hours (counters per hour, values per day); value '' for the
-- counters, compared byte for byte (a password's case matters).

CREATE TABLE honeypot_tallies (
    kind            VARCHAR(32) NOT NULL,
    hour            INT NOT NULL,
    sensor          VARCHAR(64) NOT NULL,
    value           VARCHAR(255) COLLATE utf8mb4_bin NOT NULL,
    n               BIGINT NOT NULL,
    first_seen      DATETIME(6) NOT NULL,
    last_seen       DATETIME(6) NOT NULL,
    PRIMARY KEY (kind, hour, sensor, value),
    KEY honeypot_tallies_value (kind, value, hour)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- The same values over all time, per sensor and for all sensors (sensor
-- ''): what a page without a time range (or with one holding everything
-- stored) reads, most seen first from the index.
CREATE TABLE honeypot_tally_totals (
    kind            VARCHAR(32) NOT NULL,
    sensor          VARCHAR(64) NOT NULL,
    value           VARCHAR(255) COLLATE utf8mb4_bin NOT NULL,
    n               BIGINT NOT NULL,
    first_seen      DATETIME(6) NOT NULL,
    last_seen       DATETIME(6) NOT NULL,
    PRIMARY KEY (kind, sensor, value),
    KEY honeypot_tally_totals_n (kind, sensor, n)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- The credentials page counts the clients that tried each pair.
CREATE INDEX honeypot_credentials_pair ON honeypot_credentials (username(100), password(100));
