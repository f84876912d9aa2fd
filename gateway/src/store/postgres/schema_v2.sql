-- ozg-gateway cluster store, schema version 2: deferred chaining of the audit log.
-- A transaction no longer locks the chain's head to append its records: it
-- inserts them here, in its own transaction, with no lock shared between
-- writers. The chainer (one instance at a time, under an advisory lock)
-- places the committed ones in the one chain in batches, in the order of
-- `id`, moving them to `audit` (see store::postgres::audit).
CREATE TABLE audit_pending (
    id            BIGSERIAL PRIMARY KEY,
    ts            TEXT NOT NULL,
    event         TEXT NOT NULL,
    submission_id TEXT,
    message_id    TEXT,
    target        TEXT,
    -- The record's `detail` (JSON), or NULL.
    detail        TEXT
);
-- Sealed envelopes are encrypted: compressing them only costs CPU.
ALTER TABLE deliveries ALTER COLUMN envelope SET STORAGE EXTERNAL;
