-- smtplatrine schema, version 3, SQLite: the block list.
-- network is an address or network as Python's ipaddress writes it
-- (192.0.2.7/32, 2001:db8::/32).  A row with expires is a smart ban, gone
-- from the list at that time; without, it stays until removed.  tries
-- counts the connections refused, last_seen is the latest.

CREATE TABLE acl_blacklist_ip (
    network         TEXT PRIMARY KEY,
    added           TEXT NOT NULL,
    last_seen       TEXT,
    tries           INTEGER NOT NULL DEFAULT 0,
    expires         TEXT,
    reason          TEXT,
    sensor          TEXT
);
CREATE INDEX acl_blacklist_ip_expires ON acl_blacklist_ip (expires);

CREATE TABLE acl_blacklist_geo (
    country         TEXT PRIMARY KEY,
    added           TEXT NOT NULL,
    last_seen       TEXT,
    tries           INTEGER NOT NULL DEFAULT 0,
    reason          TEXT
);
