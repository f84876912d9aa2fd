-- ozg-gateway cluster store, schema version 1 (PostgreSQL). Applied by
-- store::postgres::migrate under an advisory lock, in one transaction.
CREATE TABLE submissions (
    id           TEXT PRIMARY KEY,
    portal       TEXT NOT NULL,
    leistung     TEXT NOT NULL,
    destination  TEXT NOT NULL,
    received_at  TEXT NOT NULL,
    response     TEXT NOT NULL
);
CREATE TABLE deliveries (
    message_id      TEXT PRIMARY KEY,
    submission_id   TEXT NOT NULL REFERENCES submissions(id),
    target          TEXT NOT NULL,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    created_at_ms   BIGINT NOT NULL,
    last_error      TEXT,
    last_class      TEXT,
    receipt         TEXT,
    updated_at      TEXT NOT NULL,
    updated_ms      BIGINT NOT NULL DEFAULT 0,
    offered_ms      BIGINT,
    -- The sealed envelope (already encrypted for the target); NULL once retention removed it.
    envelope        BYTEA,
    envelope_crc32  BIGINT
);
CREATE INDEX deliveries_by_submission ON deliveries(submission_id);
CREATE INDEX deliveries_due ON deliveries(target, state, next_attempt_at);
CREATE INDEX deliveries_boxed ON deliveries(target, message_id)
    WHERE state = 'in_flight' AND offered_ms IS NOT NULL;
CREATE TABLE idempotency (
    portal        TEXT NOT NULL,
    key           TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    submission_id TEXT NOT NULL,
    PRIMARY KEY (portal, key)
);
CREATE TABLE audit (
    seq           BIGINT PRIMARY KEY,
    submission_id TEXT,
    record        TEXT NOT NULL,
    hash          TEXT NOT NULL
);
CREATE INDEX audit_by_submission ON audit(submission_id);
-- The chain's head: one row, locked by every appender (FOR UPDATE), so the
-- instances of a cluster write one chain, in one order.
CREATE TABLE audit_head (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    seq   BIGINT NOT NULL,
    hash  TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, repeat('0', 64));
CREATE TABLE audit_checkpoints (
    seq        BIGINT PRIMARY KEY,
    head       TEXT NOT NULL,
    ts         TEXT NOT NULL,
    jws        TEXT NOT NULL,
    first_seq  BIGINT,
    root       TEXT
);
-- The outbox: deliveries committed but not yet confirmed by the broker.
-- `ticket` is the delivery's attempt count when the message was wanted: a
-- queue message takes its delivery only while that count is unchanged, so a
-- duplicate (a republish after a crash) is recognised and dropped.
CREATE TABLE outbox (
    message_id  TEXT PRIMARY KEY REFERENCES deliveries(message_id),
    target      TEXT NOT NULL,
    ticket      INTEGER NOT NULL DEFAULT 0,
    -- When the delivery is due (ms): the relay publishes a message due
    -- later to the wait queue of the longest delay that does not overshoot.
    due_ms      BIGINT NOT NULL DEFAULT 0,
    created_ms  BIGINT NOT NULL,
    -- Until when a relay holds the row (ms); 0 when none does.
    lease_ms    BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX outbox_oldest ON outbox(created_ms);
