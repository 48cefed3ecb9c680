-- Subscribers: digest HA1 values only, never the password.
-- utf8mb4_bin: usernames are case-sensitive (MySQL's default collation is not).
CREATE TABLE subscriber (
    username   VARCHAR(64)  CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    domain     VARCHAR(253) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    ha1_md5    CHAR(32)     CHARACTER SET ascii NOT NULL,
    ha1_sha256 CHAR(64)     CHARACTER SET ascii NOT NULL,
    created_at BIGINT       NOT NULL,
    updated_at BIGINT       NOT NULL,
    PRIMARY KEY (username, domain),
    KEY subscriber_domain (domain)
) ENGINE = InnoDB;
