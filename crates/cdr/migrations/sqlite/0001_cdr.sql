-- Call detail records: one row per call attempt, written when it ends.
-- Times are milliseconds since the Unix epoch (UTC).
CREATE TABLE cdr (
    id               TEXT    NOT NULL PRIMARY KEY,
    call_id          TEXT    NOT NULL,
    node             TEXT    NOT NULL,
    caller_aor       TEXT    NOT NULL,
    caller_display   TEXT,
    callee_aor       TEXT    NOT NULL,
    request_uri      TEXT    NOT NULL,
    source_addr      TEXT    NOT NULL,
    source_transport TEXT    NOT NULL,
    start_ms         INTEGER NOT NULL,
    answer_ms        INTEGER,
    end_ms           INTEGER NOT NULL,
    duration_ms      INTEGER NOT NULL,
    status           INTEGER NOT NULL,
    reason           TEXT    NOT NULL,
    hangup_by        TEXT    NOT NULL,
    hangup_reason    TEXT    NOT NULL,
    relay            TEXT,
    from_caller_packets INTEGER,
    from_caller_bytes   INTEGER,
    from_caller_lost    INTEGER,
    from_callee_packets INTEGER,
    from_callee_bytes   INTEGER,
    from_callee_lost    INTEGER
);

CREATE INDEX cdr_start ON cdr (start_ms);
CREATE INDEX cdr_call_id ON cdr (call_id);
