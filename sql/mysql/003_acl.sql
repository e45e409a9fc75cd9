-- smtplatrine schema, version 3, MySQL / MariaDB: the block list.
-- network is an address or network as Python's ipaddress writes it
-- (192.0.2.7/32, 2001:db8::/32).  A row with expires is a smart ban, gone
-- from the list at that time; without, it stays until removed.  tries
-- counts the connections refused, last_seen is the latest.

CREATE TABLE acl_blacklist_ip (
    network         VARCHAR(49) NOT NULL PRIMARY KEY,
    added           DATETIME(6) NOT NULL,
    last_seen       DATETIME(6) NULL,
    tries           BIGINT NOT NULL DEFAULT 0,
    expires         DATETIME(6) NULL,
    reason          VARCHAR(255) NULL,
    sensor          VARCHAR(64) NULL,
    KEY acl_blacklist_ip_expires (expires)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE acl_blacklist_geo (
    country         CHAR(2) NOT NULL PRIMARY KEY,
    added           DATETIME(6) NOT NULL,
    last_seen       DATETIME(6) NULL,
    tries           BIGINT NOT NULL DEFAULT 0,
    reason          VARCHAR(255) NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
