-- Version 6: RFC 3161 time-stamp tokens of audit checkpoints, kept beside
-- them (a checkpoint is stamped once its TSA answered; later if it was down).
CREATE TABLE audit_stamps (
    seq         BIGINT PRIMARY KEY REFERENCES audit_checkpoints(seq),
    token       BYTEA NOT NULL,
    stamped_at  BIGINT NOT NULL
);
