-- Call detail records: one row per call attempt, written when it ends.
-- Times are milliseconds since the Unix epoch (UTC).
CREATE TABLE cdr (
    id               CHAR(36) NOT NULL PRIMARY KEY,
    call_id          TEXT     NOT NULL,
    node             TEXT     NOT NULL,
    caller_aor       TEXT     NOT NULL,
    caller_display   TEXT,
    callee_aor       TEXT     NOT NULL,
    request_uri      TEXT     NOT NULL,
    source_addr      TEXT     NOT NULL,
    source_transport TEXT     NOT NULL,
    start_ms         BIGINT   NOT NULL,
    answer_ms        BIGINT,
    end_ms           BIGINT   NOT NULL,
    duration_ms      BIGINT   NOT NULL,
    status           BIGINT   NOT NULL,
    reason           TEXT     NOT NULL,
    hangup_by        TEXT     NOT NULL,
    hangup_reason    TEXT     NOT NULL,
    relay            TEXT,
    from_caller_packets BIGINT,
    from_caller_bytes   BIGINT,
    from_caller_lost    BIGINT,
    from_callee_packets BIGINT,
    from_callee_bytes   BIGINT,
    from_callee_lost    BIGINT
);

CREATE INDEX cdr_start ON cdr (start_ms);
CREATE INDEX cdr_call_id ON cdr (call_id);
