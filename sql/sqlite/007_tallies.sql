-- smtplatrine schema, version 7, SQLite: the counts the overview and the
-- pivot pages read (see smtplatrine/store/tallies.py), kept by the storing
-- side with each message and session.  hour: the bucket's start in epoch
-- hours (counters per hour, values per day); value '' for the counters.

CREATE TABLE honeypot_tallies (
    kind            TEXT NOT NULL,
    hour            INTEGER NOT NULL,
    sensor          TEXT NOT NULL,
    value           TEXT NOT NULL,
    n               INTEGER NOT NULL,
    first_seen      TEXT NOT NULL,
    last_seen       TEXT NOT NULL,
    PRIMARY KEY (kind, hour, sensor, value)
) WITHOUT ROWID;
CREATE INDEX honeypot_tallies_value ON honeypot_tallies (kind, value, hour);

-- The same values over all time, per sensor and for all sensors (sensor
-- ''): what a page without a time range (or with one holding everything
-- stored) reads, most seen first from the index.
CREATE TABLE honeypot_tally_totals (
    kind            TEXT NOT NULL,
    sensor          TEXT NOT NULL,
    value           TEXT NOT NULL,
    n               INTEGER NOT NULL,
    first_seen      TEXT NOT NULL,
    last_seen       TEXT NOT NULL,
    PRIMARY KEY (kind, sensor, value)
) WITHOUT ROWID;
CREATE INDEX honeypot_tally_totals_n ON honeypot_tally_totals (kind, sensor, n);

-- The credentials page counts the clients that tried each pair.
CREATE INDEX honeypot_credentials_pair ON honeypot_credentials (username, password);
