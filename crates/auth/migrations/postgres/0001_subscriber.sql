-- Subscribers: digest HA1 values only, never the password.
CREATE TABLE subscriber (
    username   VARCHAR(64)  NOT NULL,
    domain     VARCHAR(253) NOT NULL,
    ha1_md5    VARCHAR(32)  NOT NULL,
    ha1_sha256 VARCHAR(64)  NOT NULL,
    created_at BIGINT       NOT NULL,
    updated_at BIGINT       NOT NULL,
    PRIMARY KEY (username, domain)
);

CREATE INDEX subscriber_domain ON subscriber (domain);
