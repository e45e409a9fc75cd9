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
