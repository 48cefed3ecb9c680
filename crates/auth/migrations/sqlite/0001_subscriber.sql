-- Subscribers: digest HA1 values only, never the password.
CREATE TABLE subscriber (
    username   TEXT    NOT NULL,
    domain     TEXT    NOT NULL,
    ha1_md5    TEXT    NOT NULL,
    ha1_sha256 TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (username, domain)
) WITHOUT ROWID;

CREATE INDEX subscriber_domain ON subscriber (domain);
